import { IommuOption, OptionOp } from '../iommufd/context'
import { HwInfoFlag } from '../iommufd/device'
import { VfioIoasOp } from '../iommufd/vfio-compat'
import { HwCap, HwInfoType } from '../iommufd/driver'
import { DirtyBitmapFlag, DirtyTrackingFlag, HwptAllocFlag, HwptDataType } from '../iommufd/hwpt'
import { MapFlag } from '../iommufd/ioas'
import { InvalidateDataType, VtdInvFlag } from '../iommufd/invalidate'
import { ViommuType } from '../iommufd/viommu'
import { HwQueueType } from '../iommufd/hw-queue'
import { DmaFlag, DmaStatus } from '../iommufd/dma'
import { MmapFlag } from '../iommufd/mmap'
import { TestOp } from '../iommufd/selftest'
import { VeventqFlag, VeventqType } from '../iommufd/veventq'
import { PageResponseCode, PgfaultFlag, PgfaultPerm } from '../iommufd/eventq'
import { HWPT_DATA_IOMMUFS_KVM } from '../iommufd/kvm-hwpt'
import { VTD_S1_FLAGS } from '../hw/vtd/s1'

/** Symbolic names a text request may use for a field's values (flags combine with |). */
export interface NameSet {
  readonly kind: 'enum' | 'flags'
  readonly values: Readonly<Record<string, number | bigint>>
}

const e = (values: Record<string, number | bigint>): NameSet => ({ kind: 'enum', values })
const f = (values: Record<string, number | bigint>): NameSet => ({ kind: 'flags', values })

/** VFIO_DEVICE_ATTACH_PASID / VFIO_DEVICE_DETACH_PASID. */
export const VfioAttachFlag = { PASID: 1 } as const
/** VFIO_DEVICE_BIND_FLAG_TOKEN. */
export const VfioBindFlag = { TOKEN: 1 } as const

export const NAMES: Readonly<Record<string, NameSet>> = {
  ioas_map_flags: f(MapFlag),
  iommufs_dma_flags: f(DmaFlag),
  iommufs_dma_status: e(DmaStatus),
  iommufs_mmap_flags: f(MmapFlag),
  iommufd_hwpt_alloc_flags: f(HwptAllocFlag),
  iommu_hwpt_data_type: e({ ...HwptDataType, IOMMUFS_KVM: HWPT_DATA_IOMMUFS_KVM }),
  iommu_hw_info_type: e(HwInfoType),
  iommufd_hw_capabilities: f(HwCap),
  iommufd_hw_info_flags: f(HwInfoFlag),
  iommu_viommu_type: e(ViommuType),
  iommu_veventq_type: e(VeventqType),
  iommu_veventq_flag: f(VeventqFlag),
  iommu_hw_queue_type: e(HwQueueType),
  iommufd_option: e(IommuOption),
  iommufd_option_ops: e(OptionOp),
  iommufd_vfio_ioas_op: e(VfioIoasOp),
  iommufd_hwpt_set_dirty_tracking_flags: f(DirtyTrackingFlag),
  iommufd_hwpt_get_dirty_bitmap_flags: f(DirtyBitmapFlag),
  iommu_hwpt_vtd_s1_flags: f(VTD_S1_FLAGS),
  vfio_device_attach_flags: f(VfioAttachFlag),
  iommu_hwpt_invalidate_data_type: e(InvalidateDataType),
  iommu_test_op: e(TestOp),
  iommu_hwpt_vtd_s1_invalidate_flags: f(VtdInvFlag),
  iommu_hwpt_pgfault_flags: f(PgfaultFlag),
  iommu_hwpt_pgfault_perm: f(PgfaultPerm),
  iommufd_page_response_code: e(PageResponseCode),
}

/**
 * The value of one name: "NEST_PARENT", or any spelling that ends in it
 * after an IOMMU_/VFIO_ prefix ("IOMMU_HWPT_ALLOC_NEST_PARENT"), any case.
 */
export function lookupName(set: NameSet, token: string): bigint | undefined {
  const t = token.toUpperCase()
  for (const [name, v] of Object.entries(set.values)) {
    if (t === name || ((t.startsWith('IOMMU_') || t.startsWith('VFIO_')) && t.endsWith(`_${name}`))) return BigInt(v)
  }
  return undefined
}
