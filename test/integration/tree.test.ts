import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { loadSchema } from '../../src/topology/attributes'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'
import { makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const SMMU0 = 'sys/class/iommu/smmu3.0x0000000009050000'
const SMMU1 = 'sys/class/iommu/smmu3.0x0000000009060000'
const DMAR0 = 'sys/class/iommu/dmar0'

describe('the mounted feature tree (default machine)', () => {
  const machine = loadTopology(DEFAULT_TOPOLOGY)

  it('cat of the model files: 2 for SMMUv3, 1 for VT-d', async () => {
    await withMount(async (m) => {
      const r = await sh(`cat ${m.path(`${SMMU0}/arm-smmu-v3/model`)} ${m.path(`${SMMU1}/arm-smmu-v3/model`)} ${m.path(`${DMAR0}/intel-vtd/model`)}`)
      assert.equal(r.stderr, '')
      assert.equal(r.code, 0)
      assert.equal(r.stdout, '2\n2\n1\n')
    })
  })

  it('ls of arm-smmu-v3/ lists exactly the schema attributes', async () => {
    const expected = loadSchema()
      .groupsFor('arm-smmu-v3')
      .flatMap((g) => g.attributes.map((a) => a.name))
      .sort()
    await withMount(async (m) => {
      const r = await sh(`ls ${m.path(`${SMMU0}/arm-smmu-v3`)}`)
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(r.stdout.split('\n').filter(Boolean), expected)
    })
  })

  it('ls of an IOMMU, a PCI device and a group directory', async () => {
    await withMount(async (m) => {
      const r = await sh(`cd ${m.dir} && ls ${DMAR0} && echo -- && ls sys/bus/pci/devices/0000:00:01.0 && echo -- && ls sys/kernel/iommu_groups/0 && echo -- && ls sys/class/iommu`)
      assert.equal(r.code, 0, r.stderr)
      assert.equal(
        r.stdout,
        'devices\nintel-iommu\nintel-vtd\n--\ndevice\niommu\niommu_group\nvendor\nvfio-dev\n--\ndevices\nreserved_regions\ntype\n--\ndmar0\nsmmu3.0x0000000009050000\nsmmu3.0x0000000009060000\n',
      )
    })
  })

  it('readlink -f of devices/<bdf>, iommu and iommu_group resolve inside the mount', async () => {
    await withMount(async (m) => {
      for (const d of machine.devices) {
        const r = await sh(
          `readlink -f ${m.path(`sys/class/iommu/${d.unit.name}/devices/${d.bdf}`)} ${m.path(`sys/bus/pci/devices/${d.bdf}/iommu`)} ${m.path(`sys/bus/pci/devices/${d.bdf}/iommu_group`)} ${m.path(`sys/kernel/iommu_groups/${d.group.id}/devices/${d.bdf}`)}`,
        )
        assert.equal(r.code, 0, r.stderr)
        assert.deepEqual(r.stdout.split('\n').filter(Boolean), [
          m.path(`sys/bus/pci/devices/${d.bdf}`),
          m.path(`sys/class/iommu/${d.unit.name}`),
          m.path(`sys/kernel/iommu_groups/${d.group.id}`),
          m.path(`sys/bus/pci/devices/${d.bdf}`),
        ])
      }
      // readlink without -f: the relative target, as sysfs answers it
      const r = await sh(`readlink ${m.path('sys/bus/pci/devices/0000:00:01.0/iommu')}`)
      assert.equal(r.stdout, '../../../../class/iommu/smmu3.0x0000000009050000\n')
    })
  })

  it('each PCI device names its VFIO cdev in vfio-dev/ (as vfio registers it), and sys/class/vfio-dev/vfioN leads back to the device', async () => {
    await withMount(async (m) => {
      for (const d of machine.devices) {
        const node = `dev/vfio/devices/vfio${d.vfioIndex}`
        const r = await sh(`ls ${m.path(`sys/bus/pci/devices/${d.bdf}/vfio-dev`)} && readlink -f ${m.path(`sys/class/vfio-dev/vfio${d.vfioIndex}/device`)} && test -f ${m.path(node)}`)
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, `vfio${d.vfioIndex}\n${m.path(`sys/bus/pci/devices/${d.bdf}`)}\n`)
      }
      const r = await sh(`readlink ${m.path('sys/class/vfio-dev/vfio4')}`)
      assert.equal(r.stdout, '../../bus/pci/devices/0000:02:00.0/vfio-dev/vfio4\n')
    })
  })

  it('find and grep -r over the whole tree succeed', async () => {
    await withMount(async (m) => {
      const f = await sh(`find ${m.dir}`)
      assert.equal(f.code, 0, f.stderr)
      assert.equal(f.stderr, '')
      const found = f.stdout.split('\n')
      assert.ok(found.includes(m.path(`${DMAR0}/intel-iommu/version`)))
      assert.ok(found.includes(m.path('sys/kernel/iommu_groups/5/reserved_regions')))
      assert.ok(found.includes(m.path('sys/bus/pci/devices/0000:02:01.0/iommu_group')))
      // trace_pipe waits for the next line, as tracefs's does: grep -r on a real debugfs skips it too
      const g = await sh(`grep -r --exclude=trace_pipe . ${m.dir}`)
      assert.equal(g.code, 0, g.stderr)
      assert.equal(g.stderr, '')
      const lines = g.stdout.split('\n')
      assert.ok(lines.includes(`${m.path(`${DMAR0}/intel-iommu/version`)}:1:0`))
      assert.ok(lines.includes(`${m.path(`${SMMU1}/arm-smmu-v3/ssid_bits`)}:20`))
      assert.ok(lines.includes(`${m.path('sys/kernel/iommu_groups/4/reserved_regions')}:0x00000000fee00000 0x00000000feefffff msi`))
    })
  })

  it('stat of an attribute says mode 444, a regular file, and its exact size (the kernel caches every sysfs file; one the model changes is revalidated per read)', async () => {
    await withMount(async (m) => {
      const r = await sh(`stat -c '%a %s %F' ${m.path(`${SMMU0}/arm-smmu-v3/httu`)} ${m.path(`${DMAR0}/intel-iommu/cap`)} ${m.path(`${DMAR0}/intel-iommu/domains_used`)}`)
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, '444 13 regular file\n444 16 regular file\n444 2 regular file\n')
      const d = await sh(`stat -c '%a %F' ${m.path(SMMU0)} ${m.path('sys/bus/pci/devices/0000:00:01.0/iommu')}`)
      assert.equal(d.stdout, '755 directory\n777 symbolic link\n')
    })
  })

  it('echo 1 > attribute fails with Permission denied, even as root, and changes nothing', async () => {
    await withMount(async (m) => {
      const f = m.path(`${SMMU0}/arm-smmu-v3/asid_bits`)
      const w = await sh(`echo 1 > ${f}`)
      assert.equal(w.code, 1)
      assert.match(w.stderr, new RegExp(`${f.replace(/\./g, '\\.')}: Permission denied\n$`))
      const a = await sh(`echo 1 >> ${f}`)
      assert.equal(a.code, 1)
      assert.match(a.stderr, /: Permission denied\n$/)
      const r = await sh(`cat ${f}`)
      assert.equal(r.stdout, '16\n')
    })
  })

  it('creating or removing files is refused', async () => {
    await withMount(async (m) => {
      const t = await sh(`touch ${m.path(`${SMMU0}/arm-smmu-v3/new`)}`)
      assert.equal(t.code, 1)
      assert.match(t.stderr, /Permission denied\n$/)
      const r = await sh(`rm -f ${m.path(`${SMMU0}/arm-smmu-v3/model`)}`)
      assert.equal(r.code, 1)
      assert.match(r.stderr, /Operation not permitted\n$/)
      assert.equal((await sh(`cat ${m.path(`${SMMU0}/arm-smmu-v3/model`)}`)).stdout, '2\n')
    })
  })

  it('an unknown path is "No such file or directory"', async () => {
    await withMount(async (m) => {
      for (const p of ['sys/class/iommu/dmar7/intel-vtd/model', `${SMMU0}/arm-smmu-v3/pasid_bits`, 'sys/bus/pci/devices/0000:00:09.0']) {
        const r = await sh(`cat ${m.path(p)}`)
        assert.equal(r.code, 1, p)
        // coreutils quotes names with ':' ('...'), so compare without the quotes
        assert.equal(r.stderr.replace(/'/g, ''), `cat: ${m.path(p)}: No such file or directory\n`)
      }
      const r = await sh(`cat ${m.path(`${SMMU0}/arm-smmu-v3/model/x`)}`)
      assert.equal(r.stderr, `cat: ${m.path(`${SMMU0}/arm-smmu-v3/model/x`)}: Not a directory\n`)
    })
  })

  it('reading with dd bs=1 gives the whole value, one byte per read', async () => {
    await withMount(async (m) => {
      const f = m.path('sys/kernel/iommu_groups/0/reserved_regions')
      const r = await sh(`dd if=${f} bs=1`) // the data on stdout, the record counts on stderr
      assert.equal(r.code, 0, r.stderr)
      const value = '0x0000000008000000 0x00000000080fffff msi\n'
      assert.equal(r.stdout, value)
      assert.match(r.stderr, new RegExp(`^${value.length}\\+0 records in\n`))
    })
  })

  describe('a program re-reading one descriptor', () => {
    let bin: string
    let work: string
    before(async () => {
      work = await makeTempDir()
      bin = path.join(work, 'pread2')
      const src = `#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
/* pread2 FILE: reads offset 0 twice on one fd, prints each read between [ ] */
int main(int argc, char **argv) {
  char buf[8192];
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) { perror("open"); return 1; }
  for (int i = 0; i < 2; i++) {
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    if (n < 0) { perror("pread"); return 1; }
    printf("[%.*s]", (int)n, buf);
  }
  return close(fd) ? 1 : 0;
}
`
      const r = await sh(`gcc -O1 -o ${bin} -x c -`, { input: src })
      assert.equal(r.code, 0, `gcc: ${r.stderr}`)
    })
    after(async () => fsp.rm(work, { recursive: true, force: true }))

    it('pread(fd, 0) twice gets the whole value both times', async () => {
      await withMount(async (m) => {
        const r = await sh(`${bin} ${m.path(`${DMAR0}/intel-iommu/cap`)} && ${bin} ${m.path(`${SMMU0}/arm-smmu-v3/model`)}`)
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, '[9ff078c226f0466\n][9ff078c226f0466\n][2\n][2\n]')
      })
    })
  })

  it('the debug tree names the server pid', async () => {
    await withMount(async (m) => {
      const r = await sh(`head -n 1 ${m.path('sys/kernel/debug/iommufd/server')}`)
      assert.equal(r.stdout, `pid ${m.pid}\n`)
    })
  })

  describe('test/shell/tree.sh', () => {
    const script = path.join(PACKAGE_ROOT, 'test', 'shell', 'tree.sh')

    it('passes on a real mount', async () => {
      await withMount(async (m) => {
        const r = await sh(`bash ${script} ${m.dir}`)
        assert.equal(r.code, 0, r.stdout + r.stderr)
        const lines = r.stdout.trim().split('\n')
        assert.equal(lines.pop(), `1..${lines.filter((l) => /^(not )?ok /.test(l)).length}`, 'the TAP plan comes last')
        const checks = lines.filter((l) => !l.startsWith('#'))
        assert.ok(checks.length > 50, `${checks.length} checks`)
        assert.deepEqual(checks.filter((l) => !l.startsWith('ok ')), [])
        assert.equal(lines[lines.length - 1], `# ${checks.length} checks passed`)
      })
    })

    it('fails on a directory that is not a mount', async () => {
      const dir = await makeTempDir()
      try {
        const r = await sh(`bash ${script} ${dir}`)
        assert.equal(r.code, 1)
        assert.equal(r.stdout, 'not ok 1 - mount point is a fuse.iommufs mount\n1..1\n')
      } finally {
        await fsp.rmdir(dir)
      }
    })
  })
})
