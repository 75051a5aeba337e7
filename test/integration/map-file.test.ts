/**
 * A program's own memory and descriptors reach the model under the shim as
 * with real ioctl()s: IOAS_MAP_FILE of a memfd and of a regular file (DMA
 * reads what the program wrote, the program reads what the device wrote),
 * EINVAL past the end of the file and after an ftruncate, EBADF for a closed
 * descriptor, EFAULT for IOAS_MAP of an address the program has unmapped,
 * EINVAL (and no wait) for a file of the mount itself, EFAULT for IOAS_MAP
 * of a mapping of one, and an external abort (no wait) for a DMA into a
 * pinned page the program has since mapped one over; VFIO_IOMMU_MAP_DMA
 * of the program's memory reaches it as IOAS_MAP does.
 */
import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import { iommufs } from '../helpers/cli'
import { withMount } from '../helpers/mount'
import { PACKAGE_ROOT } from '../../src/util/paths'

const MAP_FILE = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'map-file')

const EXPECTED = [
  'bind: ok',
  'ioas: ok',
  'attach: ok',
  'memfd: ok',
  'memfd read: ok "in the memfd"',
  'memfd write: ok "from the device"',
  'eof: EINVAL',
  'trunc: EINVAL',
  'badfd: EBADF',
  'shm: ok',
  'shm read: ok "in a shm file"',
  'disk: EINVAL',
  'unmapped: EFAULT',
  'prot_none: EFAULT',
  'read_only writable: EFAULT',
  'read_only: ok',
  'own: EINVAL',
  'own_mmap: EFAULT',
  'pin: ok',
  'pinned read: ok "pinned"',
  'remapped read: abort',
  'map_dma: ok',
  'map_dma read: ok "type1"',
  'map_dma unmapped: EFAULT',
  '',
].join('\n')

describe('a program\'s memfd, file and memory through IOAS_MAP_FILE and IOAS_MAP', function () {
  this.timeout(60000)

  it('under the shim: each result as the kernel gives it', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', MAP_FILE])
      assert.equal(r.stdout, EXPECTED, r.stderr)
      assert.equal(r.code, 0)
    })
  })

  it('with real ioctl() (exec --namespace): the same', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', MAP_FILE])
      assert.equal(r.stdout, EXPECTED, r.stderr)
      assert.equal(r.code, 0)
    })
  })
})
