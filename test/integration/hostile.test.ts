/**
 * What a hostile user of a mount can do to the others: each case is an
 * attack that once held the server, crashed it or left state behind, run
 * through a real mount; afterwards the mount still answers and the trace has
 * no handler bug.
 */
import { strict as assert } from 'node:assert'
import { sh, withMount, TestMount } from '../helpers/mount'

/** The mount answers a new context, and no handler bug reached the trace. */
async function stillWell(m: TestMount): Promise<void> {
  const r = await sh(`exec 3<>${m.path('dev/iommu')}; echo IOAS_ALLOC >&3; read -r -u 3 r; echo "$r"`)
  assert.equal(r.stdout, 'ok out_ioas_id=1\n', r.stderr)
  assert.doesNotMatch(await m.cat('sys/kernel/debug/iommufd/trace'), / bug: /)
}

describe('hostile users', function () {
  this.timeout(60000)

  it('one write of more than 64 request lines is E2BIG and runs none of them, on dev/iommu and a DMA port (regression: a 1 MiB write of CONTEXT lines held every user for 0.8 s)', async () => {
    await withMount(async (m) => {
      const r = await sh(`cd ${m.dir}
exec 3<>dev/iommu
echo CONTEXT >&3; read -r -u 3 r; ctx=\${r##*path=/}
lines() { for i in $(seq $2); do echo "$1"; done; }   # cat sends them in one write
lines IOAS_ALLOC 65 | cat >&3 && echo wrote
grep -c ioas "$ctx/objects" || true
lines IOAS_ALLOC 64 | cat >&3 && echo wrote 64
grep -c ioas "$ctx/objects"
exec 4<>sys/kernel/debug/iommufd/dma/0000:00:01.0
lines 'translate iova=0x1000' 65 | cat >&4 && echo wrote
read -r -u 4 r; echo "dma: $r"`)
      assert.equal(
        r.stdout,
        '0\nwrote 64\n64\ndma: err E2BIG more than 64 request lines in one write; send them in several writes\n',
      )
      assert.equal(r.stderr, 'cat: write error: Argument list too long\ncat: write error: Argument list too long\n')
      await stillWell(m)
    })
  })
})
