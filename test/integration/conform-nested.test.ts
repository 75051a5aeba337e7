/**
 * The nested / vIOMMU uAPI as an outside client sees it: test/c/conform-nested.c,
 * written from the kernel's uAPI facts with its own struct layouts, finds an
 * SMMUv3 and a VT-d device through sysfs (BDF/iommu, BDF/vfio-dev), binds them
 * and checks every answer's value or errno. Compiled here; run under the shim
 * and under exec --namespace (real ioctls, descriptors installed by the
 * supervisor), which must answer alike.
 */
import { strict as assert } from 'node:assert'
import { conformProgram } from '../helpers/conform'

/** How many checks the program makes on the default topology (two devices behind one SMMU, one behind the other, a VT-d one). */
const CHECKS = 397

/** A few checks named here so that a section silently skipped shows. */
const SAMPLES = [
  'smmu_hw_info_idr0_raw: ok',
  'vtd_hw_info_flags_errata: ok',
  'viommu_parent_of_other_smmu: ok',
  'ste_cfg_nested: ok',
  'vdevice_duplicate_virt_id: ok',
  'inv_smmu_sync_second_entry_num: ok',
  'veventq_lost_events_sequence: ok',
  'vdevice_tombstone_id_not_reused: ok',
  'inv_vtd_unaligned_third_entry_num: ok',
  'vtd_map_read_only_under_nest_parent: ok',
  'auto_domain_per_smmu: ok',
  'veventq_sequence_gap: ok',
  'fault_pread_offset: ok',
  'fault_poll_no_wrnorm: ok',
]

describe('nested / vIOMMU uAPI conformance (test/c/conform-nested.c)', function () {
  conformProgram('nested', 'every check answers as the kernel does, through the shim and with real ioctls under exec --namespace', (lines) => {
    const checks = [...lines]
    assert.equal(checks.pop(), 'conform-nested: all ok')
    assert.deepEqual(
      checks.filter((l) => !l.endsWith(': ok')),
      [],
    )
    assert.equal(checks.length, CHECKS)
    for (const s of SAMPLES) assert.ok(checks.includes(s), `no "${s}"`)
  })
})
