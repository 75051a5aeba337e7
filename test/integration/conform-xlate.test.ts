import { conformSuite } from '../helpers/conform'

/** Translation, caches, invalidation, event/fault records and dirty tracking checked from outside against the architectures. */
describe('test/shell/conform-xlate.sh', () => {
  conformSuite('xlate', 'SMMUv3 and VT-d walks, stale entries until the right invalidation, records, dirty bits', [
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
  ])
})
