import { World } from '../iommufd/world'
import { kvmRequest } from '../uapi/kvm-text'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { linePortFile } from './line-port'
import { AttributeFile, DirNode, FileNode, LiveDir, OpenFile, SYSFS_SIZE, StaticDir } from './nodes'

/**
 * dev/kvm (an iommufs extension, docs/kvm.md): every open is a KVM user
 * whose VMs live until it closes (or, exported, until the last IOMMU domain
 * importing them goes). A request line is written, its reply line read back
 * on the same descriptor; a failed request fails the write with its errno.
 */
export function kvmNode(world: World): FileNode {
  return {
    kind: 'file',
    mode: 0o666,
    size: () => SYSFS_SIZE,
    open: (): OpenFile => {
      const kvm = world.kvm
      const session = kvm.open()
      const tag = `kvm fd ${session.id}`
      const { max, errno } = LIMITS.line
      return {
        ...linePortFile({
          trace: world.trace,
          tag,
          tooLong: (pending) => (pending.length > max && pending.indexOf('\n') < 0 ? new ErrnoError(errno, `request line over ${max} bytes`) : undefined),
          answer: (line, caller) => `${kvmRequest(kvm, session, line, caller?.pid ?? 0)}\n`,
          shown: (line) => line,
          tracePid: true,
        }),
        release: () => {
          kvm.close(session)
          world.trace.emit(tag, 'closed')
        },
      }
    },
  }
}

/** sys/kernel/debug/kvm/: a directory per VM (info, stage2, drop_invalidate), as KVM's debugfs has one per VM. */
export function kvmDebugDir(world: World): DirNode {
  return new LiveDir(
    () => [...world.kvm.vms.values()].map((v) => v.name),
    (name) => {
      const vm = [...world.kvm.vms.values()].find((v) => v.name === name)
      if (!vm) return undefined
      const d = new StaticDir()
      for (const [file, f] of Object.entries(vm.debugFiles())) {
        const store = f.store?.bind(f)
        d.add(file, new AttributeFile(() => f.show(), store && ((text: string) => store(text))))
      }
      return d
    },
  )
}
