/**
 * IOPF through a mounted iommufs: examples/iopf.sh (bash: dd reads the page
 * request record from the fault queue file, printf writes the response) on
 * an SMMUv3 and a VT-d device, and test/c/iopf (the kernel's fault-queue
 * uAPI through the shim: the queue descriptor, read/write sizes and errnos).
 */
import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import { iommufs, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

describe('IOPF through the mount', () => {
  it('examples/iopf.sh: pending DMA, the record by dd, map, SUCCESS by printf, the DMA done; bad responses refused; INVALID and close end it with its fault', async () => {
    await withMount(async (m) => {
      const r = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'iopf.sh')} ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      // SMMUv3: the stall event (Stall = 1, STAG 0) and the record; VT-d: the page request descriptor
      assert.match(r.stdout, /^pending dma=1 stalled sid=0x8 stag=0x0\nfault F_TRANSLATION\(0x10\) sid=0x8 input=0x101000 s2=0 class=IN rnw=1 pnu=0 ind=0 stall=1 stag=0x0 /m)
      assert.match(r.stdout, /^event 0000000800000010 0000020880000000 0000000000101000 0000000000000000$/m)
      assert.match(r.stdout, /^pending dma=4 PAGE_REQ rid=02:00.0 pasid=none addr=0x101000 r-- lpig=1 prgi=0 prq=0000000002000001 0000000000101005 0000000000000000 0000000000000000$/m)
      assert.equal(r.stdout.match(/^record: flags=2 dev_id=1 pasid=0 grpid=0 perm=1 addr=0x101000 length=0 cookie=1$/gm)?.length, 2)
      assert.equal(r.stdout.match(/^data 70616765206f6e653a2068656c6c6f$/gm)?.length, 2, 'both retried reads reach page one')
      assert.match(r.stdout, /^queued.0: dev_id=1 pasid=none grpid=0x2 perm=R addr=0x103000$/m)
      assert.equal(r.stdout.match(/^done dma=\d+\nfault /gm)?.length, 4, 'INVALID and the close, on each unit')
    })
  })

  it('test/c/iopf: the fault queue descriptor under the shim, PENDING, ESPIPE / EINVAL, the response retries the DMA; closing the queue leaves a DMA pending, closing the iommufd ends it', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'iopf')])
      assert.equal(r.code, 0, r.stderr + r.stdout)
      assert.deepEqual(r.stdout.trim().split('\n'), [
        'bind: ok out_devid=1',
        'ioas: ok',
        'fault_queue: ok fd_is_open=yes',
        'hwpt: ok',
        'attach: ok',
        'dma: ok status=4 dma_id=1 stall=1',
        'read_39: err ESPIPE',
        'read_0_pending: err EINVAL',
        'read: bytes=40 flags=2 dev_id=1 pasid=0 grpid=0 perm=1 addr=0x200000 length=0 cookie=1',
        'read_empty: ok ret=0',
        'read_0_empty: ok ret=0',
        'write_7: err ESPIPE',
        'write_bad_code: err EINVAL',
        'write_unknown_cookie: err EINVAL',
        'map: ok',
        'respond: ok ret=8',
        'respond_again: err EINVAL',
        // the retried translation succeeds and the read reaches the program's own page (the shim's frames carry its memory)
        'result: done dma=1 / ok read sid=0x8 pasid=none iova=0x200000 len=8',
        // closing the queue's descriptor leaves a held DMA pending; the HWPT's end (device and iommufd closed) answers it INVALID
        'dma2: ok status=4 dma_id=2',
        'close_queue: ok ret=0',
        'result: pending dma=2 stalled sid=0x8 stag=0x1 / ',
        'close_device: ok ret=0',
        'close_iommufd: ok ret=0',
        'result: done dma=2 / fault F_TRANSLATION(0x10) sid=0x8 input=0x300000 s2=0 class=IN rnw=1 pnu=0 ind=0 stall=1 stag=0x1 reason="stage 1 level 3: invalid descriptor"',
      ])
    })
  })
})
