import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import type { IommuUnit } from '../hw/unit'
import { Vtd } from '../hw/vtd/vtd'
import { TdpImporter, Vm } from '../kvm/vm'
import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'
import { mustBeZero, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { HwptAllocFlag, HwptPaging } from './hwpt'
import { Ioas } from './ioas'
import { smmuAllocKvm } from './smmu-kvm'
import { vtdAllocKvm } from './vtd-kvm'

/**
 * IOMMU_HWPT_ALLOC's data type for a KVM-owned stage 2 (an iommufs
 * extension): the RFC's IOMMU_HWPT_DATA_KVM was 3, which mainline gave to
 * AMD_GUEST, so this number is outside the kernel's small sequential enum.
 * The data is the RFC's struct iommu_hwpt_kvm_info { __aligned_u64 fd; }.
 */
export const HWPT_DATA_IOMMUFS_KVM = 0x6b766d

/**
 * A paging HWPT whose table KVM owns (the RFC's IOMMUFD_OBJ_HWPT_KVM): no
 * IOAS (an empty one of its own stands in, so IOAS maps never reach it), a
 * stage-2 domain usable as a nest parent, whose vendor driver is registered
 * with KVM as the table's importer for as long as it lives.
 */
export class HwptKvm extends HwptPaging {
  private importer: TdpImporter | undefined

  constructor(home: IommuUnit, readonly vm: Vm, flags: number, private readonly unregister: (imp: TdpImporter) => void) {
    super(home, new Ioas(), flags | HwptAllocFlag.NEST_PARENT, false)
  }

  register(imp: TdpImporter): void {
    this.importer = imp
  }

  override describe(): [string, string][] {
    return [
      ['type', 'hwpt_paging'],
      ['users', String(this.users)],
      ['kvm', `${this.vm.name}`],
      ['kvm.tdp_fd', String(this.vm.tdp)],
      ['kvm.stage2', `${this.vm.stage2.format} root 0x${this.vm.stage2.root.toString(16)}`],
      ['driver', this.kind],
      ['auto_domain', '0'],
      ['flags', 'NEST_PARENT'],
      ['importer', this.importer?.name ?? '-'],
      ...this.attachedLines(),
    ]
  }

  override teardown(): void {
    if (this.importer) this.unregister(this.importer)
    this.importer = undefined
  }
}

export interface KvmHwptArgs {
  readonly flags: number
  readonly devId: number
  readonly reserved: number
  readonly dataLen: number
  readonly dataUptr: bigint
  /** Reads iommu_hwpt_kvm_info.fd from data_uptr (after the length checks). */
  readonly fd: () => bigint
}

/**
 * IOMMU_HWPT_ALLOC with IOMMUFS_KVM data: the RFC's checks (data_len is
 * exactly the struct, data_uptr is given, pt_id is ignored), then the
 * vendor driver's domain_alloc_kvm, which registers its importer with KVM.
 */
export function hwptAllocKvm(ctx: IommufdContext, a: KvmHwptArgs): number {
  mustBeZero(a.reserved, '__reserved')
  unknownFlags(a.flags, HwptAllocFlag.NEST_PARENT | HwptAllocFlag.DIRTY_TRACKING | HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID)
  if (a.flags & ~HwptAllocFlag.NEST_PARENT) throw new ErrnoError('EOPNOTSUPP', `flags=0x${a.flags.toString(16)}: a KVM stage 2 takes NEST_PARENT only (KVM logs its own dirty pages; IOPF through KVM is not modelled)`)
  if (a.dataLen !== 8) throw new ErrnoError('EINVAL', `data_len=${a.dataLen}: iommu_hwpt_kvm_info is 8 bytes`)
  if (a.dataUptr === 0n) throw new ErrnoError('EINVAL', 'data_uptr=0: iommu_hwpt_kvm_info is needed')
  const dev = ctx.device(a.devId)
  const kvm = ctx.world.kvm
  const vm = kvm.tdp(a.fd())
  const unit = dev.pci.unit
  fallible('page table allocation')
  const hwpt = new HwptKvm(unit, vm, a.flags, (imp) => kvm.unregisterImporter(vm, imp))
  let imp: TdpImporter
  if (unit instanceof Smmuv3) imp = smmuAllocKvm(unit, hwpt, vm)
  else if (unit instanceof Vtd) imp = vtdAllocKvm(unit, hwpt, vm)
  else throw new ErrnoError('EOPNOTSUPP', `dev_id=${a.devId}: the ${unit.kind} IOMMU cannot walk a KVM stage 2`)
  const id = ctx.commitHwpt(hwpt)
  hwpt.register(imp)
  kvm.registerImporter(vm, imp)
  return id
}
