/**
 * The kernel's fail-nth protocol under the shim, as iommufd_fail_nth uses it:
 * a program sets failslab/ and fail_page_alloc/ignore-gfp-wait through opendir("/sys/kernel/debug/")
 * and openat, writes N to its /proc/self/task/TID/fail-nth (the mount's
 * sys/kernel/debug/iommufd/fail-nth), and the Nth counted step of its own
 * requests fails with that step's errno; reading back gives 0 once it fired.
 * With ignore-gfp-wait Y only the copies from and to the caller count, as in
 * the kernel, where iommufd's allocations all sleep. Every failed run leaves
 * nothing behind (no handler bug, no pinned page). More scenarios take the
 * objects of a mock device, of a VFIO device on an SMMUv3 and of one on VT-d,
 * VFIO type1 compatibility with a DMA-BUF, and events, the same way.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { iommufs } from '../helpers/cli'
import { TestMount, withMount } from '../helpers/mount'
import { PACKAGE_ROOT } from '../../src/util/paths'

const FAIL_NTH = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'fail-nth')

const EVERY_STEP = [
  '1: IOAS_ALLOC ENOMEM, left 0',
  '2: IOAS_ALLOC ENOMEM, left 0',
  '3: IOAS_ALLOC EFAULT, left 0',
  '4: IOAS_ALLOW_IOVAS EFAULT, left 0',
  '5: IOAS_IOVA_RANGES EFAULT, left 0',
  '6: IOAS_IOVA_RANGES EFAULT, left 0',
  '7: MOCK_DOMAIN ENOMEM, left 0',
  '8: MOCK_DOMAIN ENOMEM, left 0',
  '9: MOCK_DOMAIN ENOMEM, left 0',
  '10: MOCK_DOMAIN ENOMEM, left 0',
  '11: MOCK_DOMAIN ENOMEM, left 0',
  '12: MOCK_DOMAIN ENOMEM, left 0',
  '13: MOCK_DOMAIN EFAULT, left 0',
  '14: IOAS_MAP ENOMEM, left 0',
  '15: IOAS_MAP EFAULT, left 0',
  '16: IOAS_MAP_FILE ENOMEM, left 0',
  '17: IOAS_MAP_FILE EFAULT, left 0',
  '18: IOAS_COPY ENOMEM, left 0',
  '19: IOAS_COPY EFAULT, left 0',
  '20: CREATE_ACCESS ENOMEM, left 0',
  '21: CREATE_ACCESS ENOMEM, left 0',
  '22: CREATE_ACCESS EFAULT, left 0',
  '23: IOAS_UNMAP EFAULT, left 0',
  '24: through, left 1',
  '',
].join('\n')

const COPIES_ONLY = [
  '1: IOAS_ALLOC EFAULT, left 0',
  '2: IOAS_ALLOW_IOVAS EFAULT, left 0',
  '3: IOAS_IOVA_RANGES EFAULT, left 0',
  '4: IOAS_IOVA_RANGES EFAULT, left 0',
  '5: MOCK_DOMAIN EFAULT, left 0',
  '6: IOAS_MAP EFAULT, left 0',
  '7: IOAS_MAP_FILE EFAULT, left 0',
  '8: IOAS_COPY EFAULT, left 0',
  '9: CREATE_ACCESS EFAULT, left 0',
  '10: IOAS_UNMAP EFAULT, left 0',
  '11: through, left 1',
  '',
].join('\n')

const DEVICE_EVERY_STEP = [
  '1: MOCK_DOMAIN_FLAGS ENOMEM, left 0',
  '2: MOCK_DOMAIN_FLAGS ENOMEM, left 0',
  '3: MOCK_DOMAIN_FLAGS ENOMEM, left 0',
  '4: MOCK_DOMAIN_FLAGS ENOMEM, left 0',
  '5: MOCK_DOMAIN_FLAGS ENOMEM, left 0',
  '6: MOCK_DOMAIN_FLAGS ENOMEM, left 0',
  '7: MOCK_DOMAIN_FLAGS EFAULT, left 0',
  '8: GET_HW_INFO EFAULT, left 0',
  '9: GET_HW_INFO EFAULT, left 0',
  '10: HWPT_ALLOC ENOMEM, left 0',
  '11: HWPT_ALLOC ENOMEM, left 0',
  '12: HWPT_ALLOC ENOMEM, left 0',
  '13: HWPT_ALLOC EFAULT, left 0',
  '14: MOCK_DOMAIN_REPLACE ioas ENOMEM, left 0',
  '15: MOCK_DOMAIN_REPLACE ioas ENOMEM, left 0',
  '16: MOCK_DOMAIN_REPLACE ioas EFAULT, left 0',
  '17: MOCK_DOMAIN_REPLACE hwpt EFAULT, left 0',
  '18: HWPT_ALLOC parent ENOMEM, left 0',
  '19: HWPT_ALLOC parent ENOMEM, left 0',
  '20: HWPT_ALLOC parent ENOMEM, left 0',
  '21: HWPT_ALLOC parent EFAULT, left 0',
  '22: VIOMMU_ALLOC ENOMEM, left 0',
  '23: VIOMMU_ALLOC ENOMEM, left 0',
  '24: VIOMMU_ALLOC EFAULT, left 0',
  '25: VDEVICE_ALLOC ENOMEM, left 0',
  '26: VDEVICE_ALLOC ENOMEM, left 0',
  '27: VDEVICE_ALLOC EFAULT, left 0',
  '28: HW_QUEUE_ALLOC ENOMEM, left 0',
  '29: HW_QUEUE_ALLOC ENOMEM, left 0',
  '30: HW_QUEUE_ALLOC ENOMEM, left 0',
  '31: HW_QUEUE_ALLOC EFAULT, left 0',
  '32: FAULT_QUEUE_ALLOC ENOMEM, left 0',
  '33: FAULT_QUEUE_ALLOC ENOMEM, left 0',
  '34: FAULT_QUEUE_ALLOC EFAULT, left 0',
  '35: HWPT_ALLOC iopf EFAULT, left 0',
  '36: HWPT_ALLOC iopf ENOMEM, left 0',
  '37: HWPT_ALLOC iopf ENOMEM, left 0',
  '38: HWPT_ALLOC iopf EFAULT, left 0',
  '39: VEVENTQ_ALLOC ENOMEM, left 0',
  '40: VEVENTQ_ALLOC ENOMEM, left 0',
  '41: VEVENTQ_ALLOC EFAULT, left 0',
  '42: PASID_ATTACH EFAULT, left 0',
  '43: PASID_REPLACE EFAULT, left 0',
  '44: through, left 1',
  '',
].join('\n')

const VFIO_EVERY_STEP = [
  '1: VFIO_DEVICE_BIND_IOMMUFD ENOMEM, left 0',
  '2: VFIO_DEVICE_BIND_IOMMUFD ENOMEM, left 0',
  '3: VFIO_DEVICE_BIND_IOMMUFD EFAULT, left 0',
  '4: HWPT_ALLOC parent ENOMEM, left 0',
  '5: HWPT_ALLOC parent ENOMEM, left 0',
  '6: HWPT_ALLOC parent ENOMEM, left 0',
  '7: HWPT_ALLOC parent EFAULT, left 0',
  '8: VFIO_DEVICE_ATTACH parent EFAULT, left 0',
  '9: VIOMMU_ALLOC ENOMEM, left 0',
  '10: VIOMMU_ALLOC ENOMEM, left 0',
  '11: VIOMMU_ALLOC EFAULT, left 0',
  '12: VDEVICE_ALLOC ENOMEM, left 0',
  '13: VDEVICE_ALLOC ENOMEM, left 0',
  '14: VDEVICE_ALLOC EFAULT, left 0',
  '15: HWPT_ALLOC nested EFAULT, left 0',
  '16: HWPT_ALLOC nested ENOMEM, left 0',
  '17: HWPT_ALLOC nested ENOMEM, left 0',
  '18: HWPT_ALLOC nested EFAULT, left 0',
  '19: VFIO_DEVICE_ATTACH nested EFAULT, left 0',
  '20: HWPT_INVALIDATE EFAULT, left 0',
  '21: HWPT_INVALIDATE EFAULT, left 0',
  '22: VEVENTQ_ALLOC ENOMEM, left 0',
  '23: VEVENTQ_ALLOC ENOMEM, left 0',
  '24: VEVENTQ_ALLOC EFAULT, left 0',
  '25: through, left 1',
  '',
].join('\n')

const VTD_EVERY_STEP = [
  '1: VFIO_DEVICE_BIND_IOMMUFD ENOMEM, left 0',
  '2: VFIO_DEVICE_BIND_IOMMUFD ENOMEM, left 0',
  '3: VFIO_DEVICE_BIND_IOMMUFD EFAULT, left 0',
  '4: HWPT_ALLOC parent ENOMEM, left 0',
  '5: HWPT_ALLOC parent ENOMEM, left 0',
  '6: HWPT_ALLOC parent ENOMEM, left 0',
  '7: HWPT_ALLOC parent EFAULT, left 0',
  '8: HWPT_ALLOC nested EFAULT, left 0',
  '9: HWPT_ALLOC nested ENOMEM, left 0',
  '10: HWPT_ALLOC nested ENOMEM, left 0',
  '11: HWPT_ALLOC nested EFAULT, left 0',
  '12: VFIO_DEVICE_ATTACH nested EFAULT, left 0',
  '13: HWPT_INVALIDATE EFAULT, left 0',
  '14: HWPT_INVALIDATE EFAULT, left 0',
  '15: GET_HW_INFO EFAULT, left 0',
  '16: GET_HW_INFO EFAULT, left 0',
  '17: through, left 1',
  '',
].join('\n')

const COMPAT_EVERY_STEP = [
  '1: IOMMU_VFIO_IOAS EFAULT, left 0',
  '2: VFIO_IOMMU_MAP_DMA ENOMEM, left 0',
  '3: VFIO_IOMMU_GET_INFO EFAULT, left 0',
  '4: VFIO_IOMMU_GET_INFO EFAULT, left 0',
  '5: VFIO_IOMMU_GET_INFO EFAULT, left 0',
  '6: VFIO_IOMMU_UNMAP_DMA EFAULT, left 0',
  '7: DMABUF_GET ENOMEM, left 0',
  '8: IOAS_MAP_FILE dmabuf ENOMEM, left 0',
  '9: IOAS_MAP_FILE dmabuf EFAULT, left 0',
  '10: through, left 1',
  '',
].join('\n')

const EVENTS_EVERY_STEP = [
  '1: FAULT_QUEUE_ALLOC ENOMEM, left 0',
  '2: FAULT_QUEUE_ALLOC ENOMEM, left 0',
  '3: FAULT_QUEUE_ALLOC EFAULT, left 0',
  '4: HWPT_ALLOC parent ENOMEM, left 0',
  '5: HWPT_ALLOC parent ENOMEM, left 0',
  '6: HWPT_ALLOC parent ENOMEM, left 0',
  '7: HWPT_ALLOC parent EFAULT, left 0',
  '8: HWPT_ALLOC iopf EFAULT, left 0',
  '9: HWPT_ALLOC iopf ENOMEM, left 0',
  '10: HWPT_ALLOC iopf ENOMEM, left 0',
  '11: HWPT_ALLOC iopf EFAULT, left 0',
  '12: MOCK_DOMAIN_REPLACE EFAULT, left 0',
  // TRIGGER_IOPF's group allocation: the kernel aborts the request at the device, the command succeeds, nothing is queued
  '13: read fault ENODATA, left 0',
  '14: read fault ENOMEM, left 0',
  '15: read fault EFAULT, left 0',
  '16: write response EFAULT, left 0',
  '17: VIOMMU_ALLOC ENOMEM, left 0',
  '18: VIOMMU_ALLOC ENOMEM, left 0',
  '19: VIOMMU_ALLOC EFAULT, left 0',
  '20: VDEVICE_ALLOC ENOMEM, left 0',
  '21: VDEVICE_ALLOC ENOMEM, left 0',
  '22: VDEVICE_ALLOC EFAULT, left 0',
  '23: HWPT_ALLOC nested EFAULT, left 0',
  '24: HWPT_ALLOC nested ENOMEM, left 0',
  '25: HWPT_ALLOC nested ENOMEM, left 0',
  '26: HWPT_ALLOC nested EFAULT, left 0',
  '27: MOCK_DOMAIN_REPLACE nested EFAULT, left 0',
  '28: VEVENTQ_ALLOC ENOMEM, left 0',
  '29: VEVENTQ_ALLOC ENOMEM, left 0',
  '30: VEVENTQ_ALLOC EFAULT, left 0',
  // the vEVENT's allocation (GFP_ATOMIC in the kernel): ENOMEM, and a LOST_EVENTS header is queued
  '31: TRIGGER_VEVENT ENOMEM, left 0',
  '32: read vevent EFAULT, left 0',
  '33: through, left 1',
  '',
].join('\n')

/** The same with ignore-gfp-wait Y: the copies, and the vEVENT's atomic allocation, which that switch does not spare. */
const EVENTS_WITHOUT_SLEEPING_ALLOCATIONS = [
  '1: FAULT_QUEUE_ALLOC EFAULT, left 0',
  '2: HWPT_ALLOC parent EFAULT, left 0',
  '3: HWPT_ALLOC iopf EFAULT, left 0',
  '4: HWPT_ALLOC iopf EFAULT, left 0',
  '5: MOCK_DOMAIN_REPLACE EFAULT, left 0',
  '6: read fault EFAULT, left 0',
  '7: write response EFAULT, left 0',
  '8: VIOMMU_ALLOC EFAULT, left 0',
  '9: VDEVICE_ALLOC EFAULT, left 0',
  '10: HWPT_ALLOC nested EFAULT, left 0',
  '11: HWPT_ALLOC nested EFAULT, left 0',
  '12: MOCK_DOMAIN_REPLACE nested EFAULT, left 0',
  '13: VEVENTQ_ALLOC EFAULT, left 0',
  '14: TRIGGER_VEVENT ENOMEM, left 0',
  '15: read vevent EFAULT, left 0',
  '16: through, left 1',
  '',
].join('\n')

/** Runs test/c/fail-nth with `args` under the shim: its lines must be `expected`, and no handler bug in the trace, which it returns. */
async function sweep(m: TestMount, args: string[], expected: string): Promise<string> {
  const r = await iommufs(['exec', '--mount', m.dir, '--', FAIL_NTH, ...args])
  assert.equal(r.stdout, expected, r.stderr)
  assert.equal(r.code, 0)
  const trace = await m.cat('sys/kernel/debug/iommufd/trace')
  assert.doesNotMatch(trace, / bug: /)
  return trace
}

describe('fail-nth under the shim (iommufd_fail_nth\'s protocol)', function () {
  this.timeout(60000)

  it('ignore-gfp-wait N: each step fails in turn with its errno, and every failure is clean', async () => {
    await withMount(async (m) => {
      const trace = await sweep(m, ['N'], EVERY_STEP)
      assert.equal(await fsp.readFile(m.path('sys/kernel/debug/failslab/ignore-gfp-wait'), 'utf8'), 'N\n')
      assert.match(trace, /IOMMU_TEST_CMD -> ENOMEM object allocation failed \(fail-nth of thread \d+\)/)
      assert.equal(await fsp.readFile(m.path('sys/kernel/debug/iommufd/pinned'), 'utf8'), '')
    })
  })

  it('the device scenario (vIOMMU, vDEVICE, HW queue, fault queue, IOPF domain, vEVENTQ, PASIDs): every failure is clean', async () => {
    await withMount(async (m) => {
      // a nested HWPT whose allocation failed took no reference on its fault queue, so every context closed
      const trace = await sweep(m, ['N', 'device'], DEVICE_EVERY_STEP)
      assert.equal((trace.match(/: closed: all objects destroyed\n/g) ?? []).length, 45)
    })
  })

  it('a VFIO device nested on an SMMUv3 (bind, nest parent, vIOMMU, vDEVICE, nested STE, invalidation, vEVENTQ): every failure is clean', async () => {
    await withMount(async (m) => {
      // a bind whose copy-out fails is undone and answers EFAULT (the undo looked for the node's context, which a bind has not set yet: EINVAL, still bound)
      await sweep(m, ['N', 'vfio'], VFIO_EVERY_STEP)
    })
  })

  it('a VFIO device nested on VT-d (bind, nest parent, nested first stage, invalidation, hw_info): every failure is clean', async () => {
    await withMount(async (m) => {
      await sweep(m, ['N', 'vtd'], VTD_EVERY_STEP)
    })
  })

  it('VFIO type1 compatibility and a selftest DMA-BUF mapped and revoked: every failure is clean, no buffer left', async () => {
    await withMount(async (m) => {
      await sweep(m, ['N', 'compat'], COMPAT_EVERY_STEP)
      assert.equal((await fsp.readdir(m.path('sys/kernel/debug/iommufd/dmabuf'))).length, 0)
    })
  })

  it('events (a page request read and answered, a vEVENT read): every failure on the way is clean, the queue files\' reads and writes included; with ignore-gfp-wait Y only the copies and the vEVENT\'s atomic allocation fail', async () => {
    await withMount(async (m) => {
      await sweep(m, ['N', 'events'], EVENTS_EVERY_STEP)
      await sweep(m, ['Y', 'events'], EVENTS_WITHOUT_SLEEPING_ALLOCATIONS)
    })
  })

  it('ignore-gfp-wait Y (the kernel\'s default): only the copies from and to the caller fail', async () => {
    await withMount(async (m) => {
      await sweep(m, ['Y'], COPIES_ONLY)
    })
  })

  it('bad values are refused with the kernel\'s errnos and change nothing', async () => {
    await withMount(async (m) => {
      const wait = m.path('sys/kernel/debug/failslab/ignore-gfp-wait')
      await fsp.writeFile(wait, 'y\n')
      await assert.rejects(fsp.writeFile(wait, 'maybe\n'), { code: 'EINVAL' })
      assert.equal(await fsp.readFile(wait, 'utf8'), 'Y\n')
      await assert.rejects(fsp.writeFile(m.path('sys/kernel/debug/iommufd/fail-nth'), '0x100000000\n'), { code: 'ERANGE' })
      await assert.rejects(fsp.writeFile(m.path('sys/kernel/debug/iommufd/fail-nth'), 'ten\n'), { code: 'EINVAL' })
      assert.equal(await fsp.readFile(m.path('sys/kernel/debug/iommufd/fail-nth'), 'utf8'), '0\n')
    })
  })
})
