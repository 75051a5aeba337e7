import { World } from '../iommufd/world'
import { kvmRequest } from '../uapi/kvm-text'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
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
      let pending = ''
      let reply = Buffer.alloc(0)
      let replyBase = 0
      const fail = (pos: number, e: ErrnoError, line: string): never => {
        reply = Buffer.from(`err ${e.errno} ${e.message}\n`)
        replyBase = pos
        pending = ''
        world.trace.emit(tag, `${line} -> err ${e.errno} ${e.message}`)
        throw e
      }
      return {
        read: (pos, len) => {
          const off = pos >= replyBase ? pos - replyBase : pos
          return reply.subarray(Math.min(off, reply.length), Math.min(off + len, reply.length))
        },
        write: (pos, data, caller) => {
          pending += data.toString('latin1')
          const { max, errno } = LIMITS.line
          if (pending.length > max && pending.indexOf('\n') < 0) fail(pos, new ErrnoError(errno, `request line over ${max} bytes`), pending.slice(0, 60))
          for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
            const line = pending.slice(0, nl).trim()
            pending = pending.slice(nl + 1)
            if (!line || line.startsWith('#')) continue
            replyBase = pos + data.length
            try {
              const out = kvmRequest(kvm, session, line, caller?.pid ?? 0)
              reply = Buffer.from(`${out}\n`)
              world.trace.emit(tag, `${line} -> ${out}`, caller?.pid || undefined)
            } catch (e) {
              if (e instanceof ErrnoError) fail(pos, e, line)
              world.trace.emit('bug', `${tag}: ${e instanceof Error ? e.stack?.split('\n').slice(0, 3).join(' | ') : String(e)}`)
              fail(pos, new ErrnoError('EIO', 'internal error in iommufs (the trace has the details)'), line)
            }
          }
          return data.length
        },
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
