import { PointerSpec, StructLayout, StructValue, struct } from './layout'
import { VfioBindFlag } from './names'

/** The u64 count of bytes a pointer field's buffer spans, from the decoded struct. */
const n = (s: StructValue, f: string): bigint => s[f] as bigint

/** A buffer of `field` elements of `unit` bytes each (the text codec fills `field` in from the data given). */
const counted = (field: string, unit: number, textDefault?: bigint): Pick<PointerSpec, 'length' | 'count'> => ({
  length: (s) => n(s, field) * BigInt(unit),
  count: { field, unit, textDefault },
})

export const iommu_iova_range = struct('iommu_iova_range', [
  ['start', { type: 'u64' }],
  ['last', { type: 'u64' }],
])

// ---- iommufd commands (include/uapi/linux/iommufd.h) ----

export const iommu_destroy = struct('iommu_destroy', [
  ['size', { type: 'u32' }],
  ['id', { type: 'u32' }],
])

export const iommu_ioas_alloc = struct('iommu_ioas_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['out_ioas_id', { type: 'u32' }],
])

export const iommu_ioas_allow_iovas = struct('iommu_ioas_allow_iovas', [
  ['size', { type: 'u32' }],
  ['ioas_id', { type: 'u32' }],
  ['num_iovas', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
  ['allowed_iovas', { type: 'u64', pointer: { ...counted('num_iovas', 16), flow: 'in', element: 'iommu_iova_range' } }],
])

export const iommu_ioas_copy = struct('iommu_ioas_copy', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'ioas_map_flags' }],
  ['dst_ioas_id', { type: 'u32' }],
  ['src_ioas_id', { type: 'u32' }],
  ['length', { type: 'u64' }],
  ['dst_iova', { type: 'u64', dir: 'inout' }],
  ['src_iova', { type: 'u64' }],
])

export const iommu_ioas_iova_ranges = struct('iommu_ioas_iova_ranges', [
  ['size', { type: 'u32' }],
  ['ioas_id', { type: 'u32' }],
  ['num_iovas', { type: 'u32', dir: 'inout' }],
  ['__reserved', { type: 'u32' }],
  ['allowed_iovas', { type: 'u64', pointer: { ...counted('num_iovas', 16, 16n), flow: 'out', element: 'iommu_iova_range' } }],
  ['out_iova_alignment', { type: 'u64' }],
])

export const iommu_ioas_map = struct('iommu_ioas_map', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'ioas_map_flags' }],
  ['ioas_id', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
  ['user_va', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['iova', { type: 'u64', dir: 'inout' }],
])

export const iommu_ioas_unmap = struct('iommu_ioas_unmap', [
  ['size', { type: 'u32' }],
  ['ioas_id', { type: 'u32' }],
  ['iova', { type: 'u64' }],
  ['length', { type: 'u64', dir: 'inout' }],
])

export const iommu_option = struct('iommu_option', [
  ['size', { type: 'u32' }],
  ['option_id', { type: 'u32', names: 'iommufd_option' }],
  ['op', { type: 'u16', names: 'iommufd_option_ops' }],
  ['__reserved', { type: 'u16' }],
  ['object_id', { type: 'u32' }],
  ['val64', { type: 'u64', dir: 'inout', show: 'dec' }],
])

export const iommu_vfio_ioas = struct('iommu_vfio_ioas', [
  ['size', { type: 'u32' }],
  ['ioas_id', { type: 'u32', dir: 'inout' }],
  ['op', { type: 'u16', names: 'iommufd_vfio_ioas_op' }],
  ['__reserved', { type: 'u16' }],
])

export const iommu_hwpt_alloc = struct('iommu_hwpt_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommufd_hwpt_alloc_flags' }],
  ['dev_id', { type: 'u32' }],
  ['pt_id', { type: 'u32' }],
  ['out_hwpt_id', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
  ['data_type', { type: 'u32', names: 'iommu_hwpt_data_type' }],
  ['data_len', { type: 'u32' }],
  [
    'data_uptr',
    {
      type: 'u64',
      pointer: { ...counted('data_len', 1), flow: 'in', vendor: { typeField: 'data_type', layouts: { 1: 'iommu_hwpt_vtd_s1', 2: 'iommu_hwpt_arm_smmuv3', 0xdead: 'iommu_hwpt_selftest', 0x6b766d: 'iommu_hwpt_kvm_info' } } },
    },
  ],
  ['fault_id', { type: 'u32' }],
  ['__reserved2', { type: 'u32', dir: 'in' }],
])

export const iommu_hw_info = struct('iommu_hw_info', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommufd_hw_info_flags' }],
  ['dev_id', { type: 'u32' }],
  ['data_len', { type: 'u32', dir: 'inout' }],
  [
    'data_uptr',
    {
      type: 'u64',
      // room for any driver's blob when a text request names no length
      pointer: { ...counted('data_len', 1, 64n), flow: 'out', vendor: { typeField: 'out_data_type', layouts: { 1: 'iommu_hw_info_vtd', 2: 'iommu_hw_info_arm_smmuv3', 0xfeedbeef: 'iommu_test_hw_info' } } },
    },
  ],
  // a union: in_data_type going in, out_data_type coming back
  ['out_data_type', { type: 'u32', dir: 'inout', names: 'iommu_hw_info_type', alias: 'in_data_type' }],
  ['out_max_pasid_log2', { type: 'u8' }],
  ['__reserved', { type: 'u8', count: 3 }],
  ['out_capabilities', { type: 'u64' }],
])

export const iommu_hwpt_set_dirty_tracking = struct('iommu_hwpt_set_dirty_tracking', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommufd_hwpt_set_dirty_tracking_flags' }],
  ['hwpt_id', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
])

export const iommu_hwpt_get_dirty_bitmap = struct('iommu_hwpt_get_dirty_bitmap', [
  ['size', { type: 'u32' }],
  ['hwpt_id', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommufd_hwpt_get_dirty_bitmap_flags' }],
  ['__reserved', { type: 'u32' }],
  ['iova', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['page_size', { type: 'u64' }],
  [
    'data',
    {
      type: 'u64',
      pointer: {
        length: (s) => (n(s, 'page_size') ? ((n(s, 'length') / n(s, 'page_size') + 63n) / 64n) * 8n : 0n),
        flow: 'out',
      },
    },
  ],
])

export const iommu_hwpt_invalidate = struct('iommu_hwpt_invalidate', [
  ['size', { type: 'u32' }],
  ['hwpt_id', { type: 'u32' }],
  [
    'data_uptr',
    {
      type: 'u64',
      pointer: {
        length: (s) => n(s, 'entry_len') * n(s, 'entry_num'),
        flow: 'in',
        vendor: {
          typeField: 'data_type',
          layouts: { 0: 'iommu_hwpt_vtd_s1_invalidate', 1: 'iommu_viommu_arm_smmuv3_invalidate', 0xdeadbeef: 'iommu_hwpt_invalidate_selftest' },
          array: true,
        },
      },
    },
  ],
  ['data_type', { type: 'u32', names: 'iommu_hwpt_invalidate_data_type' }],
  ['entry_len', { type: 'u32' }],
  ['entry_num', { type: 'u32', dir: 'inout' }],
  ['__reserved', { type: 'u32' }],
])

export const iommu_fault_alloc = struct('iommu_fault_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['out_fault_id', { type: 'u32' }],
  ['out_fault_fd', { type: 'u32' }],
])

export const iommu_ioas_map_file = struct('iommu_ioas_map_file', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'ioas_map_flags' }],
  ['ioas_id', { type: 'u32' }],
  ['fd', { type: 's32' }],
  ['start', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['iova', { type: 'u64', dir: 'inout' }],
])

export const iommu_viommu_alloc = struct('iommu_viommu_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['type', { type: 'u32', names: 'iommu_viommu_type' }],
  ['dev_id', { type: 'u32' }],
  ['hwpt_id', { type: 'u32' }],
  ['out_viommu_id', { type: 'u32' }],
  ['data_len', { type: 'u32' }],
  ['__reserved', { type: 'u32', dir: 'in' }],
  ['data_uptr', { type: 'u64', pointer: { ...counted('data_len', 1), flow: 'inout', vendor: { typeField: 'type', layouts: { 0xdeadbeef: 'iommu_viommu_selftest' } } } }],
])

export const iommu_vdevice_alloc = struct('iommu_vdevice_alloc', [
  ['size', { type: 'u32' }],
  ['viommu_id', { type: 'u32' }],
  ['dev_id', { type: 'u32' }],
  ['out_vdevice_id', { type: 'u32' }],
  ['virt_id', { type: 'u64' }],
])

export const iommu_ioas_change_process = struct('iommu_ioas_change_process', [
  ['size', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
])

export const iommu_veventq_alloc = struct('iommu_veventq_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['viommu_id', { type: 'u32' }],
  ['type', { type: 'u32', names: 'iommu_veventq_type' }],
  ['veventq_depth', { type: 'u32' }],
  ['out_veventq_id', { type: 'u32' }],
  ['out_veventq_fd', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
])

export const iommu_hw_queue_alloc = struct('iommu_hw_queue_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['viommu_id', { type: 'u32' }],
  ['type', { type: 'u32', names: 'iommu_hw_queue_type' }],
  ['index', { type: 'u32' }],
  ['out_hw_queue_id', { type: 'u32' }],
  ['nesting_parent_iova', { type: 'u64' }],
  ['length', { type: 'u64' }],
])

// ---- the selftest's IOMMU_TEST_CMD (drivers/iommu/iommufd/iommufd_test.h) ----

/** Each op's member of the command's 48-byte union, by op name (offsets relative to the union). */
export const iommu_test_add_reserved = struct('iommu_test_add_reserved', [
  ['start', { type: 'u64' }],
  ['length', { type: 'u64' }],
])
export const iommu_test_mock_domain = struct('iommu_test_mock_domain', [
  ['out_stdev_id', { type: 'u32' }],
  ['out_hwpt_id', { type: 'u32' }],
  ['out_idev_id', { type: 'u32' }],
  ['dev_flags', { type: 'u32' }],
])
export const iommu_test_mock_domain_replace = struct('iommu_test_mock_domain_replace', [['pt_id', { type: 'u32', dir: 'inout' }]])
export const iommu_test_check_map = struct('iommu_test_check_map', [
  ['iova', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['uptr', { type: 'u64' }],
])
export const iommu_test_check_refs = struct('iommu_test_check_refs', [
  ['length', { type: 'u64' }],
  ['uptr', { type: 'u64' }],
  ['refs', { type: 'u32' }],
])
export const iommu_test_create_access = struct('iommu_test_create_access', [
  ['out_access_fd', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
])
export const iommu_test_destroy_access_pages = struct('iommu_test_destroy_access_pages', [['access_pages_id', { type: 'u32' }]])
export const iommu_test_access_pages = struct('iommu_test_access_pages', [
  ['flags', { type: 'u32', show: 'hex' }],
  ['out_access_pages_id', { type: 'u32' }],
  ['iova', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['uptr', { type: 'u64' }],
])
export const iommu_test_access_rw = struct('iommu_test_access_rw', [
  ['iova', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['uptr', { type: 'u64' }],
  ['flags', { type: 'u32', show: 'hex' }],
])
export const iommu_test_memory_limit = struct('iommu_test_memory_limit', [['limit', { type: 'u32' }]])
export const iommu_test_access_replace_ioas = struct('iommu_test_access_replace_ioas', [['ioas_id', { type: 'u32' }]])
export const iommu_test_dirty = struct('iommu_test_dirty', [
  ['flags', { type: 'u32', show: 'hex' }],
  ['iova', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['page_size', { type: 'u64' }],
  ['uptr', { type: 'u64' }],
  ['out_nr_dirty', { type: 'u64' }],
])
export const iommu_test_check_iotlb = struct('iommu_test_check_iotlb', [
  ['id', { type: 'u32' }],
  ['iotlb', { type: 'u32', show: 'hex' }],
])
export const iommu_test_trigger_iopf = struct('iommu_test_trigger_iopf', [
  ['dev_id', { type: 'u32' }],
  ['pasid', { type: 'u32' }],
  ['grpid', { type: 'u32' }],
  ['perm', { type: 'u32' }],
  ['addr', { type: 'u64' }],
])
export const iommu_test_check_dev_cache = struct('iommu_test_check_dev_cache', [
  ['id', { type: 'u32' }],
  ['cache', { type: 'u32', show: 'hex' }],
])
export const iommu_test_trigger_vevent = struct('iommu_test_trigger_vevent', [['dev_id', { type: 'u32' }]])
export const iommu_test_pasid_attach = struct('iommu_test_pasid_attach', [
  ['pasid', { type: 'u32' }],
  ['pt_id', { type: 'u32', dir: 'inout' }],
])
export const iommu_test_pasid_check = struct('iommu_test_pasid_check', [
  ['pasid', { type: 'u32' }],
  ['hwpt_id', { type: 'u32' }],
])
export const iommu_test_dmabuf_get = struct('iommu_test_dmabuf_get', [
  ['length', { type: 'u32', show: 'hex' }],
  ['open_flags', { type: 'u32', show: 'hex' }],
])
export const iommu_test_dmabuf_revoke = struct('iommu_test_dmabuf_revoke', [
  ['dmabuf_fd', { type: 's32' }],
  ['revoked', { type: 'u32' }],
])

/** The union members, by C member name, as iommufd_test.h names them. */
export const TEST_CMD_UNION: Readonly<Record<string, StructLayout>> = {
  add_reserved: iommu_test_add_reserved,
  mock_domain: iommu_test_mock_domain,
  mock_domain_flags: iommu_test_mock_domain,
  mock_domain_replace: iommu_test_mock_domain_replace,
  check_map: iommu_test_check_map,
  check_refs: iommu_test_check_refs,
  create_access: iommu_test_create_access,
  destroy_access_pages: iommu_test_destroy_access_pages,
  access_pages: iommu_test_access_pages,
  access_rw: iommu_test_access_rw,
  memory_limit: iommu_test_memory_limit,
  access_replace_ioas: iommu_test_access_replace_ioas,
  dirty: iommu_test_dirty,
  check_iotlb: iommu_test_check_iotlb,
  trigger_iopf: iommu_test_trigger_iopf,
  check_dev_cache: iommu_test_check_dev_cache,
  trigger_vevent: iommu_test_trigger_vevent,
  pasid_attach: iommu_test_pasid_attach,
  pasid_replace: iommu_test_pasid_attach,
  pasid_detach: iommu_test_pasid_attach,
  pasid_check: iommu_test_pasid_check,
  dmabuf_get: iommu_test_dmabuf_get,
  dmabuf_revoke: iommu_test_dmabuf_revoke,
}

/** size, op, id, the 48-byte union (6 words, decoded per op) and `last`, which marks the minimum size. */
export const iommu_test_cmd = struct('iommu_test_cmd', [
  ['size', { type: 'u32' }],
  ['op', { type: 'u32', names: 'iommu_test_op' }],
  ['id', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
  ['payload', { type: 'u64', count: 6, dir: 'inout', union: TEST_CMD_UNION }],
  ['last', { type: 'u32' }],
])

export const iommu_test_hw_info = struct('iommu_test_hw_info', [
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['test_reg', { type: 'u32', dir: 'out', show: 'hex' }],
])

/** The KVM RFC's HWPT data (iommufs extension data type IOMMUFS_KVM): an exported KVM stage 2 by its KVM_CREATE_TDP_FD number. */
export const iommu_hwpt_kvm_info = struct('iommu_hwpt_kvm_info', [['fd', { type: 'u64' }]])

export const iommu_hwpt_selftest = struct('iommu_hwpt_selftest', [
  ['iotlb', { type: 'u32', show: 'hex' }],
  ['pagetable_type', { type: 'u32' }],
])

export const iommu_hwpt_invalidate_selftest = struct('iommu_hwpt_invalidate_selftest', [
  ['flags', { type: 'u32', show: 'hex' }],
  ['iotlb_id', { type: 'u32' }],
])

/** The mock vIOMMU's data (IOMMU_VIOMMU_TYPE_SELFTEST): in_data comes back as out_data, with its mmap region. */
export const iommu_viommu_selftest = struct('iommu_viommu_selftest', [
  ['in_data', { type: 'u32', show: 'hex' }],
  ['out_data', { type: 'u32', dir: 'out', show: 'hex' }],
  ['out_mmap_offset', { type: 'u64', dir: 'out' }],
  ['out_mmap_length', { type: 'u64', dir: 'out' }],
])

/** The mock vIOMMU's invalidation entry (IOMMU_VIOMMU_INVALIDATE_DATA_SELFTEST): a device cache word of a vDEVICE. */
export const iommu_viommu_invalidate_selftest = struct('iommu_viommu_invalidate_selftest', [
  ['flags', { type: 'u32', show: 'hex' }],
  ['vdev_id', { type: 'u32' }],
  ['cache_id', { type: 'u32' }],
])

// ---- iommufs extensions (private command numbers, docs/extensions.md) ----

/**
 * mmap of an iommufd region: the kernel's checks run on offset, length and
 * flags (MAP_SHARED 1, PROT_EXEC 2). The shim forwards it with the region's
 * bytes written at addr, where it has made the mapping. With FILE 4 (exec
 * --namespace's supervisor) the program's kernel maps the file itself once
 * this succeeds: addr is 0, and the mapping lives while /proc/pid/maps shows
 * the file (dev_major:dev_minor, ino) there.
 */
export const iommufs_mmap = struct('iommufs_mmap', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommufs_mmap_flags' }],
  ['offset', { type: 'u64' }],
  ['length', { type: 'u64' }],
  ['addr', { type: 'u64', pointer: { length: (s) => n(s, 'length'), flow: 'out' } }],
  ['pid', { type: 'u32' }],
  ['dev_major', { type: 'u32' }],
  ['dev_minor', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
  ['ino', { type: 'u64' }],
])

/** munmap of a mapping IOMMUFS_MMAP made: its owner may be destroyed again. */
export const iommufs_munmap = struct('iommufs_munmap', [
  ['size', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
  ['offset', { type: 'u64' }],
])

/** The ring invalidation form proposed with the first HWPT_INVALIDATE drafts, plus data_type. */
export const iommufs_hwpt_invalidate_ring = struct('iommufs_hwpt_invalidate_ring', [
  ['size', { type: 'u32' }],
  ['hwpt_id', { type: 'u32' }],
  [
    'q_uptr',
    {
      type: 'u64',
      pointer: {
        length: (s) => n(s, 'q_entry_num') * n(s, 'q_entry_len'),
        flow: 'in',
        vendor: { typeField: 'data_type', layouts: { 0: 'iommu_hwpt_vtd_s1_invalidate', 1: 'iommu_viommu_arm_smmuv3_invalidate' }, array: true },
      },
    },
  ],
  ['q_cons_uptr', { type: 'u64', pointer: { length: () => 4n, flow: 'inout', word32: true } }],
  ['q_prod', { type: 'u32', show: 'hex' }],
  ['q_index_bits', { type: 'u32' }],
  ['q_entry_num', { type: 'u32' }],
  ['q_entry_len', { type: 'u32' }],
  ['data_type', { type: 'u32', names: 'iommu_hwpt_invalidate_data_type' }],
  ['__reserved', { type: 'u32' }],
])

export const iommufs_vcmdq_alloc = struct('iommufs_vcmdq_alloc', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['viommu_id', { type: 'u32' }],
  ['log2size', { type: 'u32' }],
  ['out_vcmdq_id', { type: 'u32' }],
  ['__reserved', { type: 'u32' }],
])

// ---- driver data behind data_uptr ----

/** iommufs extension: one DMA by a bound device (docs/extensions.md). */
export const iommufs_dma = struct('iommufs_dma', [
  ['size', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommufs_dma_flags' }],
  ['dev_id', { type: 'u32' }],
  ['pasid', { type: 'u32' }],
  ['iova', { type: 'u64' }],
  ['length', { type: 'u32' }],
  ['out_status', { type: 'u32', dir: 'out', names: 'iommufs_dma_status' }],
  ['in_data_uptr', { type: 'u64', pointer: { length: (s) => (n(s, 'flags') & 1n ? n(s, 'length') : 0n), flow: 'in' } }],
  ['out_data_uptr', { type: 'u64', pointer: { length: (s) => (n(s, 'flags') & 33n ? 0n : n(s, 'length')), flow: 'out' } }],
  ['out_addr', { type: 'u64', dir: 'out' }],
  ['out_perms', { type: 'u32', dir: 'out', show: 'hex' }],
  ['out_findings', { type: 'u32', dir: 'out' }],
  ['out_event', { type: 'u64', count: 4, dir: 'out' }],
])

export const iommu_hwpt_arm_smmuv3 = struct('iommu_hwpt_arm_smmuv3', [['ste', { type: 'u64', count: 2 }]])

/** What a vEVENTQ read returns: each record is this header, then the type's payload (none for LOST_EVENTS). */
export const iommufd_vevent_header = struct('iommufd_vevent_header', [
  ['flags', { type: 'u32', show: 'hex', names: 'iommu_veventq_flag' }],
  ['sequence', { type: 'u32' }],
])
export const iommu_vevent_arm_smmuv3 = struct('iommu_vevent_arm_smmuv3', [['evt', { type: 'u64', count: 4 }]])

/** What a fault queue read returns, one record per fault (src/iommufd/eventq.ts writes them). */
export const iommu_hwpt_pgfault = struct('iommu_hwpt_pgfault', [
  ['flags', { type: 'u32', show: 'hex', names: 'iommu_hwpt_pgfault_flags' }],
  ['dev_id', { type: 'u32' }],
  ['pasid', { type: 'u32' }],
  ['grpid', { type: 'u32' }],
  ['perm', { type: 'u32', show: 'hex', names: 'iommu_hwpt_pgfault_perm' }],
  ['__reserved', { type: 'u32' }],
  ['addr', { type: 'u64' }],
  ['length', { type: 'u32' }],
  ['cookie', { type: 'u32' }],
])
/** What a fault queue write takes, one record per answered group. */
export const iommu_hwpt_page_response = struct('iommu_hwpt_page_response', [
  ['cookie', { type: 'u32' }],
  ['code', { type: 'u32', names: 'iommufd_page_response_code' }],
])

export const iommu_hwpt_vtd_s1 = struct('iommu_hwpt_vtd_s1', [
  ['flags', { type: 'u64', names: 'iommu_hwpt_vtd_s1_flags' }],
  ['pgtbl_addr', { type: 'u64' }],
  ['addr_width', { type: 'u32' }],
  ['__reserved', { type: 'u32', dir: 'in' }],
])

export const iommu_hw_info_arm_smmuv3 = struct('iommu_hw_info_arm_smmuv3', [
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['__reserved', { type: 'u32' }],
  ['idr', { type: 'u32', count: 6, dir: 'out', show: 'hex' }],
  ['iidr', { type: 'u32', dir: 'out', show: 'hex' }],
  ['aidr', { type: 'u32', dir: 'out', show: 'hex' }],
])

export const iommu_hw_info_vtd = struct('iommu_hw_info_vtd', [
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['__reserved', { type: 'u32' }],
  ['cap_reg', { type: 'u64', dir: 'out' }],
  ['ecap_reg', { type: 'u64', dir: 'out' }],
])

export const iommu_hwpt_vtd_s1_invalidate = struct('iommu_hwpt_vtd_s1_invalidate', [
  ['addr', { type: 'u64' }],
  ['npages', { type: 'u64' }],
  ['flags', { type: 'u32', show: 'hex', names: 'iommu_hwpt_vtd_s1_invalidate_flags' }],
  ['__reserved', { type: 'u32' }],
])

export const iommu_viommu_arm_smmuv3_invalidate = struct('iommu_viommu_arm_smmuv3_invalidate', [['cmd', { type: 'u64', count: 2 }]])

// ---- VFIO cdev (include/uapi/linux/vfio.h) ----

export const vfio_device_bind_iommufd = struct('vfio_device_bind_iommufd', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['iommufd', { type: 's32' }],
  ['out_devid', { type: 'u32' }],
  // the VF token, a 16-byte UUID read only with flags=TOKEN
  ['token_uuid_ptr', { type: 'u64', pointer: { length: (s) => (n(s, 'flags') & BigInt(VfioBindFlag.TOKEN) ? 16n : 0n), flow: 'in' } }],
])

export const vfio_device_attach_iommufd_pt = struct('vfio_device_attach_iommufd_pt', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'vfio_device_attach_flags' }],
  ['pt_id', { type: 'u32', dir: 'inout' }],
  ['pasid', { type: 'u32' }],
])

export const vfio_device_detach_iommufd_pt = struct('vfio_device_detach_iommufd_pt', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex', names: 'vfio_device_attach_flags' }],
  ['pasid', { type: 'u32' }],
])

export const vfio_region_info = struct('vfio_region_info', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['index', { type: 'u32' }],
  ['cap_offset', { type: 'u32', dir: 'out' }],
  ['size', { type: 'u64', dir: 'out', show: 'hex' }],
  ['offset', { type: 'u64', dir: 'out', show: 'hex' }],
])

export const vfio_irq_info = struct('vfio_irq_info', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['index', { type: 'u32' }],
  ['count', { type: 'u32', dir: 'out' }],
])

export const vfio_device_feature = struct('vfio_device_feature', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
])

export const vfio_device_info = struct('vfio_device_info', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['num_regions', { type: 'u32', dir: 'out' }],
  ['num_irqs', { type: 'u32', dir: 'out' }],
  ['cap_offset', { type: 'u32', dir: 'out' }],
  ['pad', { type: 'u32', dir: 'reserved' }],
])

// ---- VFIO type1 on the iommufd node (include/uapi/linux/vfio.h, the kernel's vfio_compat.c) ----

/** The integer argument of VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION and VFIO_SET_IOMMU, and their return value. */
export const vfio_compat_arg = struct('vfio_compat_arg', [
  ['arg', { type: 'u64', show: 'dec' }],
  ['ret', { type: 's32', dir: 'out' }],
])

export const vfio_iommu_type1_info = struct('vfio_iommu_type1_info', [
  ['argsz', { type: 'u32', dir: 'inout' }],
  ['flags', { type: 'u32', dir: 'out', show: 'hex' }],
  ['iova_pgsizes', { type: 'u64', dir: 'out' }],
  ['cap_offset', { type: 'u32', dir: 'out' }],
  ['pad', { type: 'u32', dir: 'reserved' }],
])

export const vfio_iommu_type1_dma_map = struct('vfio_iommu_type1_dma_map', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['vaddr', { type: 'u64' }],
  ['iova', { type: 'u64' }],
  ['size', { type: 'u64' }],
])

export const vfio_iommu_type1_dma_unmap = struct('vfio_iommu_type1_dma_unmap', [
  ['argsz', { type: 'u32' }],
  ['flags', { type: 'u32', show: 'hex' }],
  ['iova', { type: 'u64' }],
  ['size', { type: 'u64', dir: 'inout' }],
])

/** Every layout by struct name. */
export const STRUCTS: ReadonlyMap<string, StructLayout> = new Map(
  [
    iommu_iova_range,
    iommu_destroy,
    iommu_ioas_alloc,
    iommu_ioas_allow_iovas,
    iommu_ioas_copy,
    iommu_ioas_iova_ranges,
    iommu_ioas_map,
    iommu_ioas_unmap,
    iommu_option,
    iommu_vfio_ioas,
    iommu_hwpt_alloc,
    iommu_hw_info,
    iommu_hwpt_set_dirty_tracking,
    iommu_hwpt_get_dirty_bitmap,
    iommu_hwpt_invalidate,
    iommu_fault_alloc,
    iommu_ioas_map_file,
    iommu_viommu_alloc,
    iommu_vdevice_alloc,
    iommu_ioas_change_process,
    iommu_veventq_alloc,
    iommu_hw_queue_alloc,
    iommu_test_cmd,
    iommufs_hwpt_invalidate_ring,
    iommufs_vcmdq_alloc,
    iommufs_dma,
    iommufs_mmap,
    iommufs_munmap,
    iommu_hwpt_arm_smmuv3,
    iommufd_vevent_header,
    iommu_vevent_arm_smmuv3,
    iommu_hwpt_pgfault,
    iommu_hwpt_page_response,
    iommu_hwpt_vtd_s1,
    iommu_hw_info_arm_smmuv3,
    iommu_hw_info_vtd,
    iommu_hwpt_vtd_s1_invalidate,
    iommu_viommu_arm_smmuv3_invalidate,
    iommu_test_hw_info,
    iommu_hwpt_selftest,
    iommu_hwpt_kvm_info,
    iommu_hwpt_invalidate_selftest,
    iommu_viommu_selftest,
    iommu_viommu_invalidate_selftest,
    ...new Set(Object.values(TEST_CMD_UNION)),
    vfio_device_bind_iommufd,
    vfio_device_attach_iommufd_pt,
    vfio_device_detach_iommufd_pt,
    vfio_device_info,
    vfio_device_feature,
    vfio_region_info,
    vfio_irq_info,
    vfio_compat_arg,
    vfio_iommu_type1_info,
    vfio_iommu_type1_dma_map,
    vfio_iommu_type1_dma_unmap,
  ].map((l) => [l.name, l]),
)
