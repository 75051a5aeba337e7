/**
 * The sysfs and debugfs trees and the VFIO cdev nodes as an outside client
 * checks them against the kernel: a shell script (test/shell/conform-sysfs.sh:
 * ls, cat, stat, readlink on the mount) and a C program (test/c/conform-vfio.c,
 * its structs written from include/uapi/linux/vfio.h) run under the shim and
 * with real ioctl()s (exec --namespace). Every check they name must print
 * "NAME: ok".
 */
import { strict as assert } from 'node:assert'
import { conformProgram, conformSuite } from '../helpers/conform'

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
  conformProgram('vfio', 'every check answers as the kernel does, under the shim and with real ioctl()s (exec --namespace), the same in both', (lines, src) => {
    // every N("...") check, for each of the two nodes the program opens
    const each = [...src.matchAll(/\bN\("([a-z0-9_]+)"\)/g)].map((x) => x[1])
    assert.equal(new Set(each).size, each.length, 'each check has its own name')
    const names = ['smmu', 'vtd'].flatMap((t) => each.map((n) => `${t}_${n}`))
    assert.ok(names.length > 100, `${names.length} checks`)
    assert.deepEqual([...lines].sort(), names.map((n) => `${n}: ok`).sort())
  })
})
