/**
 * The sysfs and debugfs trees and the VFIO cdev nodes as an outside client
 * checks them against the kernel: a shell script (test/shell/conform-sysfs.sh:
 * ls, cat, stat, readlink on the mount) and a C program (test/c/conform-vfio.c,
 * its structs written from include/uapi/linux/vfio.h) run under the shim and
 * with real ioctl()s (exec --namespace). Every check they name must print
 * "NAME: ok".
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { iommufs, makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { conformSuite } from '../helpers/conform'
import { sh, withMount } from '../helpers/mount'

describe('test/shell/conform-sysfs.sh', () => {
  conformSuite('sysfs', 'intel-iommu formats, arm-smmu-v3 files against the IDRs, links, groups, modes and write errnos', [
    'dmar0.intel-iommu.files: ok',
    'dmar0.intel-iommu.cap.hw_info: ok',
    'dmar0.intel-iommu.domains_used.attach: ok',
    'smmu3.0x0000000009050000.httu: ok',
    'group.0.type.mode: ok',
    'group.0.type.write.identity: ok',
    'group.4.reserved_regions.iova_ranges: ok',
    'group.5.type.write.dma-fq: ok',
    'debugfs.readonly.write: ok',
  ])
})

describe('VFIO cdev conformance: test/c/conform-vfio.c', function () {
  const SRC = path.join(PACKAGE_ROOT, 'test', 'c', 'conform-vfio.c')
  let dir: string
  let bin: string
  let names: string[]
  before(async () => {
    dir = await makeTempDir()
    bin = path.join(dir, 'conform-vfio')
    const cc = await sh(`gcc -Wall -Wextra -Werror -o ${bin} ${SRC}`)
    assert.equal(cc.code, 0, cc.stderr)
    // every N("...") check, for each of the two nodes the program opens
    const src = await fsp.readFile(SRC, 'utf8')
    const each = [...src.matchAll(/\bN\("([a-z0-9_]+)"\)/g)].map((x) => x[1])
    assert.equal(new Set(each).size, each.length, 'each check has its own name')
    names = ['smmu', 'vtd'].flatMap((t) => each.map((n) => `${t}_${n}`))
    assert.ok(names.length > 100, `${names.length} checks`)
  })
  after(() => fsp.rm(dir, { recursive: true, force: true }))

  it('every check answers as the kernel does, under the shim and with real ioctl()s (exec --namespace), the same in both', async () => {
    await withMount(async (m) => {
      const ns = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', bin])
      assert.equal(ns.code, 0, ns.stdout + ns.stderr)
      const nsLines = ns.stdout.trim().split('\n')
      assert.deepEqual([...nsLines].sort(), names.map((n) => `${n}: ok`).sort())
      const shim = await iommufs(['exec', '--mount', m.dir, '--', bin])
      assert.equal(shim.code, 0, shim.stdout + shim.stderr)
      assert.deepEqual(shim.stdout.trim().split('\n'), nsLines)
    })
  })
})
