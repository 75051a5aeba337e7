import { hex } from '../hw/bits'
import { Backing } from '../memory/backing'
import { PhysicalMemory } from '../memory/physical'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { TraceLog } from '../util/trace'
import { Stage2Format, Stage2Prot } from './stage2'
import { TdpImporter, Vm } from './vm'

/** What one open of dev/kvm owns: its VMs (closing it closes them). */
export class KvmSession {
  readonly vms = new Set<Vm>()

  constructor(readonly id: number) {}
}

export interface CreateVmOptions {
  readonly format: Stage2Format
  /** arm64 only: the IPA size (KVM_VM_TYPE_ARM_IPA_SIZE); KVM's default is 40. */
  readonly ipaBits: number
}

/** KVM_CREATE_TDP_FD's struct kvm_create_tdp_fd inputs. */
export interface TdpRequest {
  readonly asId: number
  readonly mode: number
  readonly pad: number
}

/** KVM_ADDRESS_SPACE_NUM on x86 (normal and SMM); only 0 can be exported, as in the RFC. */
const ADDRESS_SPACES = 2

/**
 * KVM as iommufs models it: VMs with a stage-2 table in the host's physical
 * memory, and the RFC's export of that table (KVM_CREATE_TDP_FD) to IOMMU
 * drivers, which register as importers. An iommufs extension: the kernel has
 * no such export.
 */
export class Kvm {
  readonly vms = new Map<number, Vm>()
  private nextVm = 1
  private nextSession = 1
  private nextTdp = 1

  constructor(readonly mem: PhysicalMemory, private readonly trace: TraceLog) {}

  private emit(msg: string): void {
    this.trace.emit('kvm', msg)
  }

  open(): KvmSession {
    return new KvmSession(this.nextSession++)
  }

  /** The opener's VM by ID (another opener's VM is not there for it: a VM fd is per process). */
  vm(s: KvmSession, id: number): Vm {
    const vm = this.vms.get(id)
    if (!vm || !s.vms.has(vm)) throw new ErrnoError('ENOENT', `vm=${id}: no VM with that ID on this dev/kvm descriptor`)
    return vm
  }

  createVm(s: KvmSession, o: CreateVmOptions): Vm {
    const { max, errno } = LIMITS.kvmVms
    const live = [...this.vms.values()].filter((v) => !v.closed).length
    if (live >= max) throw new ErrnoError(errno, `${max} VMs exist, the most iommufs serves at once`)
    if (o.format === 'arm64' && (o.ipaBits < 32 || o.ipaBits > 48)) throw new ErrnoError('EINVAL', `ipa_bits=${o.ipaBits}: 32 to 48`)
    if (o.format === 'ept' && o.ipaBits !== 48) throw new ErrnoError('EINVAL', `ipa_bits=${o.ipaBits}: EPT tables here are 4-level, 48 bits`)
    const vm = new Vm(this.nextVm++, this.mem, o.format, o.ipaBits, (m) => this.emit(m))
    this.vms.set(vm.id, vm)
    s.vms.add(vm)
    this.emit(`${vm.name}: created (${o.format}, ${vm.stage2.ipaBits}-bit, stage 2 root ${hex(vm.stage2.root)})`)
    return vm
  }

  /** The memslot checks that need no VM change: size bound and count, before anything is opened. */
  checkMap(vm: Vm, size: bigint): void {
    const big = LIMITS.kvmRange
    if (size > BigInt(big.max)) throw new ErrnoError(big.errno, `size=${hex(size)}: at most ${hex(big.max)} bytes per memslot`)
    const n = LIMITS.kvmMemslots
    if (vm.memslots.length >= n.max) throw new ErrnoError(n.errno, `vm=${vm.id}: already has ${n.max} memslots, the most one VM may`)
  }

  map(vm: Vm, gpa: bigint, size: bigint, backing: Backing, offset: bigint, prot: Stage2Prot): void {
    this.checkMap(vm, size)
    vm.map(gpa, size, backing, offset, prot)
  }

  /** KVM_CREATE_TDP_FD: exports address space 0's table once; the handle names it to IOMMU_HWPT_ALLOC. */
  createTdp(vm: Vm, r: TdpRequest): number {
    if (r.asId >= ADDRESS_SPACES) throw new ErrnoError('EINVAL', `as_id=${r.asId}: KVM has ${ADDRESS_SPACES} address spaces`)
    if (r.asId !== 0) throw new ErrnoError('EINVAL', `as_id=${r.asId}: only address space 0 (not SMM) can be exported`)
    if (r.mode !== 0) throw new ErrnoError('EINVAL', `mode=${r.mode}: must be 0`)
    if (r.pad !== 0) throw new ErrnoError('EINVAL', `pad=${r.pad}: must be 0`)
    if (vm.tdp !== undefined) throw new ErrnoError('EEXIST', `as_id=0: ${vm.name}'s stage 2 is already exported (fd=${vm.tdp})`)
    vm.tdp = this.nextTdp++
    this.emit(`${vm.name}: stage 2 exported as fd=${vm.tdp}`)
    return vm.tdp
  }

  /** kvm_tdp_fd_get: the VM behind an exported handle. */
  tdp(fd: bigint): Vm {
    const vm = [...this.vms.values()].find((v) => v.tdp !== undefined && BigInt(v.tdp) === fd)
    if (!vm) throw new ErrnoError('EBADF', `fd=${fd}: no exported KVM stage 2 with that number (KVM_CREATE_TDP_FD on dev/kvm gives one)`)
    return vm
  }

  registerImporter(vm: Vm, imp: TdpImporter): void {
    vm.importers.add(imp)
    this.emit(`${vm.name}: importer registered: ${imp.name}`)
  }

  unregisterImporter(vm: Vm, imp: TdpImporter): void {
    vm.importers.delete(imp)
    this.emit(`${vm.name}: importer unregistered: ${imp.name}`)
    if (vm.closed && !vm.importers.size) this.destroy(vm)
  }

  /** Closing dev/kvm: its VMs go, except those an importer still holds (the TDP fd's reference). */
  close(s: KvmSession): void {
    for (const vm of s.vms) {
      vm.closed = true
      if (vm.importers.size) this.emit(`${vm.name}: closed; kept while ${vm.importers.size} importer${vm.importers.size === 1 ? '' : 's'} hold${vm.importers.size === 1 ? 's' : ''} its stage 2`)
      else this.destroy(vm)
    }
    s.vms.clear()
  }

  private destroy(vm: Vm): void {
    vm.destroy()
    this.vms.delete(vm.id)
    this.emit(`${vm.name}: destroyed`)
  }
}
