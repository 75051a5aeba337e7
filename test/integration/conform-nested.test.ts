/**
 * The nested / vIOMMU uAPI as an outside client sees it: test/c/conform-nested.c,
 * written from the kernel's uAPI facts with its own struct layouts, finds an
 * SMMUv3 and a VT-d device through sysfs (BDF/iommu, BDF/vfio-dev), binds them
 * and checks every answer's value or errno. Compiled here; run under the shim
 * and under exec --namespace (real ioctls, descriptors installed by the
 * supervisor), which must answer alike.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { iommufs, makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const SRC = path.join(PACKAGE_ROOT, 'test', 'c', 'conform-nested.c')

/** How many checks the program makes on the default topology (two devices behind one SMMU, one behind the other, a VT-d one). */
const CHECKS = 390

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
]

function assertConforms(stdout: string): void {
  const lines = stdout.trim().split('\n')
  assert.equal(lines.pop(), 'conform-nested: all ok')
  assert.deepEqual(
    lines.filter((l) => !l.endsWith(': ok')),
    [],
  )
  assert.equal(lines.length, CHECKS)
  for (const s of SAMPLES) assert.ok(lines.includes(s), `no "${s}"`)
}

describe('nested / vIOMMU uAPI conformance (test/c/conform-nested.c)', function () {
  let dir: string
  let bin: string
  before(async () => {
    dir = await makeTempDir()
    bin = path.join(dir, 'conform-nested')
    const cc = await sh(`gcc -Wall -Wextra -Werror -o ${bin} ${SRC}`)
    assert.equal(cc.code, 0, cc.stderr)
  })
  after(() => fsp.rm(dir, { recursive: true, force: true }))

  it('every check answers as the kernel does, through the shim and with real ioctls under exec --namespace', async () => {
    await withMount(async (m) => {
      const shim = await iommufs(['exec', '--mount', m.dir, '--', bin])
      assert.equal(shim.code, 0, shim.stdout + shim.stderr)
      assertConforms(shim.stdout)
      const ns = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', bin])
      assert.equal(ns.code, 0, ns.stdout + ns.stderr)
      assert.equal(ns.stdout, shim.stdout)
    })
  })
})
