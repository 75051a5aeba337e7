import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

/** Translation, caches, invalidation, event/fault records and dirty tracking checked from outside against the architectures. */
describe('test/shell/conform-xlate.sh', () => {
  const script = path.join(PACKAGE_ROOT, 'test', 'shell', 'conform-xlate.sh')

  it('every check passes on a real mount: SMMUv3 and VT-d walks, stale entries until the right invalidation, records, dirty bits', async () => {
    await withMount(async (m) => {
      const r = await sh(`bash ${script} ${m.dir}`)
      assert.equal(r.stderr, '')
      const lines = r.stdout.trim().split('\n')
      assert.deepEqual(lines.filter((l) => !l.endsWith(': ok') && !l.startsWith('#')), [])
      assert.equal(lines[lines.length - 1], `# ${lines.length - 1} checks, 0 failed`)
      assert.equal(r.code, 0)
      for (const want of [
        'smmu.s2.leaf.xn: ok',
        'smmu.s2.ste.s2fwb: ok',
        'smmu.stale.leaf: ok',
        'smmu.walk.leaf.keeps.table: ok',
        'smmu.range.reserved.drops.nothing: ok',
        'smmu.vcmdq.range.reserved: ok',
        'smmu.bad.substream.s1cdmax0: ok',
        'vtd.p_iotlb.am.aligned: ok',
        'vtd.ih1.keeps.pde: ok',
        'vtd.dirty.ssade.sets.ad: ok',
      ]) {
        assert.ok(lines.includes(want), `missing: ${want}\n${r.stdout}`)
      }
    })
  })

  it('exits 2 naming the setup step on a directory that is not a mount', async () => {
    const dir = await makeTempDir()
    try {
      const r = await sh(`bash ${script} ${dir}`)
      assert.equal(r.code, 2)
      assert.match(r.stdout, /^setup: FAIL got open dev\/iommu want success$/m)
    } finally {
      await fsp.rmdir(dir)
    }
  })
})
