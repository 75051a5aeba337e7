/**
 * IOMMU_TEST_CMD and VFIO type1 compat through the shim, as the kernel's
 * selftest drives them: a C program (test/c/selftest-ops.c, compiled here
 * against the generated header) on a real mount. Return values of integer
 * ioctls, descriptors handed out by CREATE_ACCESS, ACCESS_RW through the
 * caller's memory, pins released at close(), a fault queue's descriptor
 * (read a page request, write its response), GET_INFO never past argsz,
 * a DMA-BUF whose descriptor is the ioctl's return value (mapped, revoked:
 * ENODEV, restored).
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { iommufs, makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const SRC = path.join(PACKAGE_ROOT, 'test', 'c', 'selftest-ops.c')
const VIOMMU_SRC = path.join(PACKAGE_ROOT, 'test', 'c', 'viommu-ops.c')
const DIRTY_SRC = path.join(PACKAGE_ROOT, 'test', 'c', 'mock-dirty.c')
const NR_HUGEPAGES = '/proc/sys/vm/nr_hugepages'
const HEADER_DIR = path.join(PACKAGE_ROOT, 'dist', 'include')

/** What test/c/selftest-ops.c prints, as the kernel with CONFIG_IOMMUFD_TEST answers. */
const SELFTEST_OPS = [
  'api_version: ok ret=0',
  'check_extension_v2: ok ret=1',
  'check_extension_vaddr: ok ret=0',
  'unknown_op: err EOPNOTSUPP',
  'mock_domain: ok ret=0',
  'ids: stdev=2 idev=3 hwpt=4',
  'map: ok ret=0',
  'refs_1: ok ret=0',
  'check_map: ok ret=0',
  'create_access: ok ret=0',
  'access_fd_is_open: yes',
  'rw_read: ok ret=0',
  'rw_read_matches: yes',
  'rw_write: ok ret=0',
  'rw_write_landed: yes',
  'access_pages: ok ret=0',
  'access_pages_wrong_uptr: err EBADE',
  'refs_still_1: ok ret=0',
  'refs_0_after_close: ok ret=0',
  'fault_alloc: ok ret=0',
  'iopf_hwpt: ok ret=0',
  'replace_to_iopf: ok ret=0',
  'trigger_iopf: ok ret=0',
  'fault_read: bytes=40 flags=3 dev_id=3 pasid=1 grpid=2 perm=3 addr=0xdeadbeaf',
  'fault_respond_bad_cookie: err EINVAL',
  'fault_respond: ok ret=8',
  'destroy_fault_in_use: err EBUSY',
  'destroy_fault_fd_open: err EBUSY',
  'destroy_fault: ok ret=0',
  'dmabuf_get: a descriptor',
  'dmabuf_map_empty: err EINVAL',
  'dmabuf_map_past_end: err EINVAL',
  'dmabuf_map_one_more: err EINVAL',
  'dmabuf_map_one_more_no_domain: err EINVAL',
  'dmabuf_map: ok ret=0',
  'dmabuf_revoke: ok ret=0',
  'hwpt_alloc_while_revoked: ok ret=0',
  'dmabuf_map_revoked: err ENODEV',
  'dmabuf_unrevoke: ok ret=0',
  'dmabuf_map_again: ok ret=0',
  'dmabuf_revoke_not_dmabuf: err EINVAL',
  'dmabuf_revoke_closed: err EBADF',
  'dmabuf_get_empty: err EINVAL',
  'dmabuf_get_too_big: err EINVAL',
  'change_process_memfd: ok ret=0',
  'dmabuf_map_for_change_process: ok ret=0',
  'change_process_dmabuf: err EINVAL',
  'set_iommu: ok ret=0',
  'get_info_60: ok ret=0',
  'get_info_60: argsz=72 cap_offset=0 next=40 untouched_past_argsz=yes',
]

/** What test/c/viommu-ops.c prints, as the kernel's mock vIOMMU answers. */
const VIOMMU_OPS = [
  'mock_domain_pasid: ok ret=0',
  'parent: ok ret=0',
  'viommu_with_data: ok ret=0',
  'viommu_data: out_data=0xbeef offset=0x1000 length=0x2000',
  'mmap_offset_plus_page: err ENXIO',
  'mmap_offset_plus_2_pages: err ENXIO',
  'mmap_half: err ENXIO',
  'mmap_double: err ENXIO',
  'mmap_private: err EINVAL',
  'mmap: mapped first_word=0xbeef',
  'msync_written: ok ret=0',
  'mmap_after_msync: first_word=0xbeef second_word=0x1234',
  'destroy_viommu_mapped: err EBUSY',
  'destroy_viommu_unmapped: ok ret=0',
  'viommu: ok ret=0',
  'hw_queue_default: err EOPNOTSUPP',
  'hw_queue_unmapped: err ENOENT',
  'map: ok ret=0',
  'hw_queue_index_1_first: err EIO',
  'hw_queue_0: ok ret=0',
  'hw_queue_1: ok ret=0',
  'unmap_owned: err EBUSY',
  'destroy_queue_0_first: err EBUSY',
  'destroy_queue_1: ok ret=0',
  'destroy_queue_0: ok ret=0',
  'unmap: ok ret=0',
  's2_pasid: ok ret=0',
  'rid_to_s2: ok ret=0',
  'fault_alloc: ok ret=0',
  'iopf_hwpt: ok ret=0',
  'pasid_attach_ioas: err EINVAL',
  'pasid_attach_parent: err EINVAL',
  'pasid_1024_attach: ok ret=0',
  'pasid_1024_attach_again: err EBUSY',
  'pasid_1024_replace: err ENOMEM',
  'pasid_1024_still_s2: ok ret=0',
  'pasid_1024_detach: ok ret=0',
  'pasid_2048_attach_iopf: ok ret=0',
  'trigger_iopf_pasid: ok ret=0',
  'fault_read: bytes=40 flags=3 pasid=2048',
  'destroy_iopf_attached: err EBUSY',
  'pasid_2048_detach: ok ret=0',
  'pasid_2048_detached: ok ret=0',
  'destroy_iopf: ok ret=0',
  'destroy_fault: ok ret=0',
  'veventq_alloc: ok ret=0',
  'destroy_veventq_fd_open: err EBUSY',
  'destroy_viommu_veventq_open: err EBUSY',
  'mmap_veventq_shared: err ENODEV',
  'destroy_viommu_veventq_closed: err EBUSY',
  'destroy_veventq: ok ret=0',
  'destroy_viommu: ok ret=0',
  'mmap_vfio_shared: err ENODEV',
]

describe('IOMMU_TEST_CMD and VFIO compat through the shim', function () {
  let dir: string
  let bin: string
  let viommuBin: string
  let dirtyBin: string
  before(async () => {
    dir = await makeTempDir()
    bin = path.join(dir, 'selftest-ops')
    viommuBin = path.join(dir, 'viommu-ops')
    dirtyBin = path.join(dir, 'mock-dirty')
    for (const [out, src] of [
      [bin, SRC],
      [viommuBin, VIOMMU_SRC],
      [dirtyBin, DIRTY_SRC],
    ]) {
      const cc = await sh(`gcc -Wall -Wextra -Werror -I${HEADER_DIR} -o ${out} ${src}`)
      assert.equal(cc.code, 0, cc.stderr)
    }
  })
  after(() => fsp.rm(dir, { recursive: true, force: true }))

  it('answers each check as the kernel with CONFIG_IOMMUFD_TEST does', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', bin])
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.trim().split('\n')
      assert.deepEqual(lines, SELFTEST_OPS)
      // the server reads the sender's memory itself: no frame took a RETRY round trip, not even ACCESS_RW's reads of the mapped pages
      const trace = await m.cat('sys/kernel/debug/iommufd/trace')
      assert.match(trace, /frame IOMMU_TEST_CMD -> ok/)
      assert.doesNotMatch(trace, /-> retry/)
    })
  })

  it('the same checks with real ioctl()s under exec --namespace: accesses, fault queues and DMA-BUFs are real descriptors the supervisor installs', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', bin])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(r.stdout.trim().split('\n'), SELFTEST_OPS)
      // the access's file was installed and released: its pins went at close (refs_0_after_close), and the trace has the real ioctls
      const trace = await m.cat('sys/kernel/debug/iommufd/trace')
      assert.match(trace, /ioctl IOMMU_TEST_CMD -> ok/)
    })
  })

  it('the mock vIOMMU: mmap of its region (ENXIO, EINVAL, EBUSY while mapped), HW queues owning their IOVA, PASIDs with the fault of PASID 1024', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', viommuBin])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(r.stdout.trim().split('\n'), VIOMMU_OPS)
    })
  })

  it('the same under exec --namespace: the supervisor checks each mmap, the kernel maps dev/iommu itself (pages read from the region, written back as no request) and the munmap is seen in /proc', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', viommuBin])
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(r.stdout.trim().split('\n'), VIOMMU_OPS)
      const trace = await m.cat('sys/kernel/debug/iommufd/trace')
      assert.match(trace, /frame IOMMUFS_MMAP -> ENXIO offset=0x2000 length=0x2000: the region is offset 0x1000 length 0x2000/)
      assert.match(trace, /frame IOMMUFS_MMAP -> EINVAL flags: an iommufd region is mapped MAP_SHARED/)
    })
  })

  it('mock dirty bits by PTE: a 1 MiB PTE over hugetlb memory reads as 512 bits; pagetable_type picks the format, HUGE_IOVA devices too', async () => {
    // the program maps 4 MiB of hugetlb memory: reserve two 2 MiB pages if the machine has none free, as the kernel selftest's runner does
    const before = (await fsp.readFile(NR_HUGEPAGES, 'utf8')).trim()
    const free = Number(/^HugePages_Free:\s+(\d+)/m.exec(await fsp.readFile('/proc/meminfo', 'utf8'))?.[1] ?? 0)
    if (free < 2) await fsp.writeFile(NR_HUGEPAGES, String(Number(before) + 2 - free))
    try {
      await withMount(async (m) => {
        const r = await iommufs(['exec', '--mount', m.dir, '--', dirtyBin])
        assert.equal(r.code, 0, r.stdout + r.stderr)
        assert.deepEqual(r.stdout.trim().split('\n'), [
          'type_unknown: err EOPNOTSUPP',
          'data_len_3: err EINVAL',
          'data_len_9: err EINVAL',
          'type_amdv1: ok',
          'type_huge: ok',
          // pages 1 and 1027 (2 KiB each) lie in the PTEs of MiB 0 and MiB 2
          'huge_on_hugetlb: marked=2 read=[0..1535] 1024 again=0',
          'type_default_len_4: ok',
          'default_on_hugetlb: marked=2 read=[1..1027] 2 again=0',
          // PAGE_SIZE PTEs: pages 0-1 and 1026-1027
          'huge_pages_off: marked=2 read=[0..1027] 4 again=0',
          'huge_on_4k: marked=2 read=[0..1027] 4 again=0',
          'huge_iova_device: marked=2 read=[0..1535] 1024 again=0',
        ])
      })
    } finally {
      if (free < 2) await fsp.writeFile(NR_HUGEPAGES, before)
    }
  })
})
