import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import { Smmuv3 } from '../../src/hw/smmuv3/smmuv3'
import { Vtd } from '../../src/hw/vtd/vtd'
import { describeMachine, loadTopology } from '../../src/topology/topology'
import { DataError } from '../../src/util/data-file'
import { SCHEMA_DIR } from '../../src/util/paths'
import { edit, tempDataDir } from '../helpers/data'

const TOPOLOGIES = path.join(SCHEMA_DIR, 'topologies')

describe('topology loading', () => {
  describe('default.yaml', () => {
    const m = loadTopology(path.join(TOPOLOGIES, 'default.yaml'))

    it('has 3 IOMMUs with kernel names and 6 devices', () => {
      assert.equal(m.units.length, 3)
      assert.equal(m.devices.length, 6)
      assert.deepEqual(
        m.units.map((u) => [u.name, u.kind, u.base]),
        [
          ['smmu3.0x0000000009050000', 'arm-smmu-v3', 0x09050000n],
          ['smmu3.0x0000000009060000', 'arm-smmu-v3', 0x09060000n],
          ['dmar0', 'intel-vtd', 0xfed90000n],
        ],
      )
      assert.ok(m.units[0] instanceof Smmuv3)
      assert.ok(m.units[2] instanceof Vtd)
    })

    it('gives SMMUv3 devices their StreamIDs and VT-d devices their requester IDs', () => {
      const ids = m.units.map((u) => u.devices.map((d) => [d.bdf, d.streamId]))
      assert.deepEqual(ids, [
        [
          ['0000:00:01.0', 0x8],
          ['0000:00:02.0', 0x10],
        ],
        [
          ['0000:01:00.0', 0x100],
          ['0000:01:01.0', 0x108],
        ],
        [
          ['0000:02:00.0', 0x200],
          ['0000:02:01.0', 0x208],
        ],
      ])
    })

    it('puts each device in its own IOMMU group and numbers vfio nodes in order', () => {
      assert.deepEqual(
        m.devices.map((d) => [d.bdf, d.group.id, d.vfioIndex]),
        m.devices.map((d, i) => [d.bdf, i, i]),
      )
      assert.deepEqual(
        m.groups.map((g) => g.devices.map((d) => d.bdf)),
        m.devices.map((d) => [d.bdf]),
      )
    })

    it('reads vendor and device IDs', () => {
      assert.deepEqual(
        m.devices.map((d) => [d.vendor, d.device]),
        [
          [0x15b3, 0x101e],
          [0x15b3, 0x101e],
          [0x8086, 0x1889],
          [0x8086, 0x1889],
          [0x8086, 0x0d58],
          [0x8086, 0x0d58],
        ],
      )
    })

    it('finds units and devices by name', () => {
      assert.equal(m.unit('dmar0'), m.units[2])
      assert.equal(m.unit('dmar1'), undefined)
      assert.equal(m.device('0000:01:01.0')?.unit, m.units[1])
      assert.equal(m.device('0000:09:00.0'), undefined)
    })

    it('describes the machine as `topology check` prints it', () => {
      const text = describeMachine(m)
      assert.equal(text.split('\n')[0], '3 IOMMUs, 6 devices, 6 IOMMU groups')
      assert.ok(text.includes('smmu3.0x0000000009050000  arm-smmu-v3  base 0x9050000  stage1 stage2 nesting ats  2 devices\n'), text)
      assert.ok(text.includes('  0000:02:01.0  RID 0x0208  group 5  vfio5  [8086:0d58]\n'), text)
    })
  })

  describe('large.yaml', () => {
    const m = loadTopology(path.join(TOPOLOGIES, 'large.yaml'))

    it('has at least 16 IOMMUs and 1024 devices, all distinct', () => {
      assert.ok(m.units.length >= 16, `${m.units.length} IOMMUs`)
      assert.ok(m.devices.length >= 1024, `${m.devices.length} devices`)
      assert.equal(new Set(m.units.map((u) => u.name)).size, m.units.length)
      assert.equal(m.units.reduce((n, u) => n + u.devices.length, 0), m.devices.length)
      assert.equal(new Set(m.devices.map((d) => d.vfioIndex)).size, m.devices.length)
    })

    it('has both kinds and distinct StreamIDs per SMMU', () => {
      assert.ok(m.units.some((u) => u.kind === 'arm-smmu-v3'))
      assert.ok(m.units.some((u) => u.kind === 'intel-vtd'))
      for (const u of m.units) assert.equal(new Set(u.devices.map((d) => d.streamId)).size, u.devices.length, u.name)
    })
  })

  describe('errors name the file, the key and what was expected', () => {
    /** A small valid topology; each case below changes one thing in it. */
    const GOOD = `iommus:
  - kind: arm-smmu-v3
    base: 0x09050000
    registers:
      IDR0: 0x0c4d76bb
      IDR1: 0x01084510
      IDR2: 0x0
      IDR3: 0x00000d00
      IDR4: 0x0
      IDR5: 0x00800075
      IIDR: 0x4831043b
      AIDR: 0x2
    devices:
      - { bdf: "0000:00:01.0", stream_id: 0x8 }
      - { bdf: "0000:00:02.0", stream_id: 0x10 }
  - kind: intel-vtd
    base: 0xfed90000
    registers:
      VER: 0x10
      CAP: 0x09ff078c226f0466
      ECAP: 0x0001ef9ea4f050df
    devices:
      - { bdf: "0000:02:00.0" }
`
    let data: Awaited<ReturnType<typeof tempDataDir>>
    before(async () => (data = await tempDataDir()))
    after(async () => data.cleanup())

    /** Writes `text`, loads it and returns the DataError message. */
    async function errorOf(name: string, text: string): Promise<{ file: string; message: string }> {
      const file = await data.write(name, text)
      try {
        loadTopology(file)
      } catch (e) {
        assert.ok(e instanceof DataError, `expected a DataError, got ${String(e)}`)
        return { file, message: e.message }
      }
      throw new Error(`${name} loaded without error`)
    }

    it('the unchanged base topology loads', async () => {
      const m = loadTopology(await data.write('good.yaml', GOOD))
      assert.equal(m.units.length, 2)
      assert.equal(m.devices.length, 3)
    })

    const CASES: [string, (t: string) => string, (f: string) => string][] = [
      ['unknown top-level key', (t) => `${t}machine: big\n`, (f) => `${f}: machine: expected one of the keys iommus, got unknown key "machine"`],
      [
        'missing register',
        (t) => edit(t, '      IDR3: 0x00000d00\n', ''),
        (f) => `${f}: iommus[0].registers.IDR3: expected a value (the key is required), got nothing`,
      ],
      [
        'unknown register',
        (t) => edit(t, 'IDR4: 0x0', 'IDR9: 0x0'),
        (f) => `${f}: iommus[0].registers.IDR9: expected a register of arm-smmu-v3 (IDR0, IDR1, IDR2, IDR3, IDR4, IDR5, IIDR, AIDR), got "IDR9"`,
      ],
      [
        'register word too wide',
        (t) => edit(t, 'IDR2: 0x0', 'IDR2: 0x100000000'),
        (f) => `${f}: iommus[0].registers.IDR2: expected an integer in [0, 0xffffffff], got 0x100000000`,
      ],
      [
        'bad bdf',
        (t) => edit(t, '"0000:00:02.0"', '"0000:00:20.0"'),
        (f) => `${f}: iommus[0].devices[1].bdf: expected a PCI address "dddd:bb:dd.f", got "0000:00:20.0"`,
      ],
      [
        'duplicate bdf',
        (t) => edit(t, '"0000:02:00.0"', '"0000:00:01.0"'),
        (f) => `${f}: iommus[1].devices[0].bdf: expected a PCI address not already used by iommus[0].devices[0], got "0000:00:01.0"`,
      ],
      [
        'duplicate StreamID',
        (t) => edit(t, 'stream_id: 0x10', 'stream_id: 0x8'),
        (f) => `${f}: iommus[0].devices[1].stream_id: expected a StreamID not already used by iommus[0].devices[0], got 8`,
      ],
      [
        'stream_id beyond SIDSIZE (16 bits)',
        (t) => edit(t, 'stream_id: 0x10', 'stream_id: 0x10000'),
        (f) => `${f}: iommus[0].devices[1].stream_id: expected an integer in [0, 0xffff], got 0x10000`,
      ],
      [
        'stream_id on a VT-d device',
        (t) => edit(t, '{ bdf: "0000:02:00.0" }', '{ bdf: "0000:02:00.0", stream_id: 0x1 }'),
        (f) => `${f}: iommus[1].devices[0].stream_id: expected no stream_id (VT-d devices are named by their PCI requester ID), got 1`,
      ],
      [
        'unknown kind',
        (t) => edit(t, 'kind: intel-vtd', 'kind: amd-vi'),
        (f) => `${f}: iommus[1].kind: expected one of arm-smmu-v3, intel-vtd, mock, got "amd-vi"`,
      ],
      [
        'unaligned base',
        (t) => edit(t, 'base: 0xfed90000', 'base: 0xfed90800'),
        (f) => `${f}: iommus[1].base: expected a 4 KiB aligned address, got 0xfed90800`,
      ],
      [
        'invalid YAML',
        (t) => edit(t, '      - { bdf: "0000:02:00.0" }\n', '      - { bdf: "0000:02:00.0"\n'),
        (f) => `${f}: (top level): expected valid YAML, got Flow map in block collection must be sufficiently indented and end with a } at line 24, column 1:`,
      ],
      ['empty iommus list', () => 'iommus: []\n', (f) => `${f}: iommus: expected at least one IOMMU, got a list`],
      [
        'unknown cache',
        (t) => edit(t, '    base: 0x09050000\n', '    base: 0x09050000\n    caches: { pwc: 8 }\n'),
        (f) => `${f}: iommus[0].caches.pwc: expected one of the keys tlb, ste, cd, atc, walk, got unknown key "pwc"`,
      ],
      [
        'cache size 0',
        (t) => edit(t, '    base: 0x09050000\n', '    base: 0x09050000\n    caches: { tlb: 0 }\n'),
        (f) => `${f}: iommus[0].caches.tlb: expected an integer in [1, 0x100000], got 0`,
      ],
    ]

    CASES.forEach(([what, change, expected], i) => {
      it(what, async () => {
        const { file, message } = await errorOf(`bad-${i}.yaml`, change(GOOD))
        assert.equal(message, expected(file))
      })
    })

    it('a VT-d unit\'s cache sizes come from `caches:` (iotlb, pasid, context, devtlb, pde), the rest keep their defaults', async () => {
      const m = loadTopology(await data.write('vtd-caches.yaml', edit(GOOD, '    base: 0xfed90000\n', '    base: 0xfed90000\n    caches: { iotlb: 8, devtlb: 3 }\n')))
      const vtd = m.unit('dmar0') as Vtd
      assert.deepEqual(vtd.caches.sizes, { iotlb: 8, pasid: 256, context: 256, devtlb: 3, pde: 256 })
      assert.equal(vtd.caches.iotlb.capacity, 8)
    })

    it('an SMMU\'s cache sizes come from `caches:`, the rest keep their defaults', async () => {
      const m = loadTopology(await data.write('caches.yaml', edit(GOOD, '    base: 0x09050000\n', '    base: 0x09050000\n    caches: { tlb: 16, atc: 2 }\n')))
      const smmu = m.units[0] as Smmuv3
      assert.deepEqual([smmu.caches.tlb.capacity, smmu.caches.ste.capacity, smmu.caches.cd.capacity, smmu.caches.atc.capacity], [16, 256, 256, 2])
    })

    it('a missing file is named too', async () => {
      const file = path.join(data.dir, 'absent.yaml')
      assert.throws(() => loadTopology(file), { name: 'DataError', message: `${file}: (top level): expected a readable file, got ENOENT` })
    })
  })
})
