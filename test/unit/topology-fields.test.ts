import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { parse } from 'yaml'
import { Model } from '../../src/index'
import { topologyJsonSchema } from '../../src/topology/json-schema'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY, SCHEMA_DIR } from '../../src/util/paths'
import { run } from '../helpers/cli'
import { tempDataDir } from '../helpers/data'

/** The default machine's first SMMUv3, with every register written by field name. */
const SMMU_BY_FIELDS = `iommus:
  - kind: arm-smmu-v3
    base: 0x09050000
    registers:
      idr0: { S2P: 1, S1P: 1, TTF: AArch64, COHACC: 1, BTM: 1, HTTU: 2, HYP: 1, ATS: 1, ASID16: 1, MSI: 1, SEV: 1, PRI: 1, VMID16: 1, CD2L: 1, TTENDIAN: little, TERM_MODEL: 1, ST_LEVEL: 1 }
      idr1: { SIDSIZE: 16, SSIDSIZE: 20, PRIQS: 8, EVTQS: 8, CMDQS: 8 }
      IDR2: 0
      Idr3: { fwb: 1, RIL: 1, BBML: 1 }
      IDR4: 0
      IDR5: { OAS: 5, GRAN4K: 1, GRAN16K: 1, GRAN64K: 1, STALL_MAX: 0x80 }
      IIDR: { IMPLEMENTER: 0x43b, REVISION: 1, VARIANT: 1, PRODUCTID: 0x487 }
      AIDR: { ARCH_MINOR_REV: 2 }
    devices:
      - { bdf: "0000:00:01.0", stream_id: 0x8 }
`

async function withTopology<T>(text: string, fn: (file: string) => T | Promise<T>): Promise<T> {
  const data = await tempDataDir()
  try {
    return await fn(await data.write('t.yaml', text))
  } finally {
    await data.cleanup()
  }
}

describe('topologies by register field name', () => {
  it('fields by name (any case, value names allowed) give the same words as the whole words', async () => {
    const words = await withTopology(SMMU_BY_FIELDS, (f) => loadTopology(f).units[0].registers.entries())
    assert.deepEqual(words, loadTopology(DEFAULT_TOPOLOGY).units[0].registers.entries())
  })

  for (const [what, from, to, why] of [
    ['an unknown field', 'ATS: 1,', 'S3P: 1,', 'iommus[0].registers.idr0.S3P: expected a field of arm-smmu-v3 IDR0 (S2P, S1P, TTF, COHACC, BTM, HTTU, HYP, ATS, ASID16, MSI, SEV, PRI, VMID16, CD2L, TTENDIAN, STALL_MODEL, TERM_MODEL, ST_LEVEL), got "S3P"'],
    ['a value too wide for its field', 'HTTU: 2,', 'HTTU: 4,', 'iommus[0].registers.idr0.HTTU: expected an integer in [0, 0x3], got 4'],
    ['an unknown value name', 'TTF: AArch64,', 'TTF: AArch65,', 'iommus[0].registers.idr0.TTF: expected a value of IDR0.TTF: a number or one of "AArch32", "AArch64", "AArch32 and AArch64", got "AArch65"'],
    ['a name for a field without value names', 'ATS: 1,', 'ATS: yes,', 'iommus[0].registers.idr0.ATS: expected an integer (IDR0.ATS has no value names), got "yes"'],
    ['a register given twice', 'IDR2: 0', 'IDR2: 0\n      idr2: 0', 'iommus[0].registers.idr2: expected IDR2 given once (register names ignore case), got 0'],
  ] as const) {
    it(`refuses ${what}, naming register and field`, async () => {
      await withTopology(SMMU_BY_FIELDS.replace(from, to), (f) => assert.throws(() => loadTopology(f), { message: `${f}: ${why}` }))
    })
  }

  it('a device\'s pasid: its width within the unit\'s (the unit\'s without it); wider than IDR1.SSIDSIZE is refused, naming the field', async () => {
    const withPasid = (v: string): string => SMMU_BY_FIELDS.replace('stream_id: 0x8 }', `stream_id: 0x8${v} }`)
    assert.equal(await withTopology(withPasid(''), (f) => loadTopology(f).devices[0].pasidBits), 20)
    assert.equal(await withTopology(withPasid(', pasid: 5'), (f) => loadTopology(f).devices[0].pasidBits), 5)
    const narrow = withPasid(', pasid: 20').replace('SSIDSIZE: 20', 'SSIDSIZE: 16')
    await withTopology(narrow, (f) =>
      assert.throws(() => loadTopology(f), { message: `${f}: iommus[0].devices[0].pasid: expected PASID bits at most 16, what smmu3.0x0000000009050000 takes (IDR1.SSIDSIZE=16), got 0x14` }),
    )
    const m = Model.load({ topology: DEFAULT_TOPOLOGY }).openContext()
    assert.match(m.request('DEVICE_BIND pci=0000:01:01.0'), /^ok /)
    assert.match(m.request('GET_HW_INFO dev_id=1'), / out_max_pasid_log2=0 /)
  })

  it('a device\'s ats: true without the key, false or true as given; anything else is refused, naming the field', async () => {
    const withAts = (v: string): string => SMMU_BY_FIELDS.replace('stream_id: 0x8 }', `stream_id: 0x8${v} }`)
    assert.equal(await withTopology(withAts(''), (f) => loadTopology(f).devices[0].ats), true)
    assert.equal(await withTopology(withAts(', ats: false'), (f) => loadTopology(f).devices[0].ats), false)
    assert.equal(await withTopology(withAts(', ats: true'), (f) => loadTopology(f).devices[0].ats), true)
    await withTopology(withAts(', ats: 1'), (f) => assert.throws(() => loadTopology(f), { message: `${f}: iommus[0].devices[0].ats: expected true or false, got 1` }))
  })

  it('a machine without PASID and one without nesting (docs/topology.md) behave so', () => {
    const noPasid = Model.load({ topology: path.join(SCHEMA_DIR, 'topologies', 'no-pasid.yaml') }).openContext()
    for (const pci of ['0000:00:01.0', '0000:02:00.0']) assert.match(noPasid.request(`DEVICE_BIND pci=${pci}`), /^ok /)
    for (const dev of [1, 2]) assert.match(noPasid.request(`GET_HW_INFO dev_id=${dev}`), / out_max_pasid_log2=0 /)
    const model = Model.load({ topology: path.join(SCHEMA_DIR, 'topologies', 'no-nesting.yaml') })
    const noNest = model.openContext()
    for (const pci of ['0000:00:01.0', '0000:02:00.0']) assert.match(noNest.request(`DEVICE_BIND pci=${pci}`), /^ok /)
    assert.equal(noNest.request('IOAS_ALLOC'), 'ok out_ioas_id=3')
    for (const dev of [1, 2]) assert.match(noNest.request(`HWPT_ALLOC dev_id=${dev} pt_id=3 flags=NEST_PARENT`), /^err EOPNOTSUPP flags=NEST_PARENT: /)
    assert.equal(noNest.request('HWPT_ALLOC dev_id=1 pt_id=3'), 'ok out_hwpt_id=4')
    assert.equal(model.list('/sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3').includes('ssid_bits'), false)
  })

  // arm_smmu_device_iidr_probe: Arm errata 1209401 (MMU-600 before r2) and 2268618/2812531 (MMU-700 before r1p1) turn nesting off
  for (const [iidr, part, nests] of [
    ['PRODUCTID: 0x483, VARIANT: 1', 'MMU-600 r1p0', false],
    ['PRODUCTID: 0x483, VARIANT: 2', 'MMU-600 r2p0', true],
    ['PRODUCTID: 0x487, VARIANT: 1, REVISION: 0', 'MMU-700 r1p0', false],
    ['PRODUCTID: 0x487, VARIANT: 0, REVISION: 1', 'MMU-700 r0p1', false],
    ['PRODUCTID: 0x487, VARIANT: 1, REVISION: 1', 'MMU-700 r1p1', true],
  ] as const) {
    it(`an Arm ${part} ${nests ? 'nests' : 'has nesting turned off, as the kernel does for its errata'}`, async () => {
      const text = SMMU_BY_FIELDS.replace(/IIDR: \{[^}]*\}/, `IIDR: { IMPLEMENTER: 0x43b, ${iidr} }`)
      await withTopology(text, (file) => {
        const ctx = Model.load({ topology: file }).openContext()
        assert.match(ctx.request('DEVICE_BIND pci=0000:00:01.0'), /^ok /)
        assert.equal(ctx.request('IOAS_ALLOC'), 'ok out_ioas_id=2')
        const reply = ctx.request('HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT')
        if (nests) assert.equal(reply, 'ok out_hwpt_id=3')
        else assert.match(reply, /^err EOPNOTSUPP flags=NEST_PARENT: /)
      })
    })
  }
})

describe('the JSON Schema of topology files', () => {
  it('sysfs-schema/topology.schema.json is what `iommufs topology schema` generates', async () => {
    const file = await fsp.readFile(path.join(SCHEMA_DIR, 'topology.schema.json'), 'utf8')
    assert.equal(file, `${JSON.stringify(topologyJsonSchema(), null, 2)}\n`, 'stale: node dist/src/cli/main.js topology schema > sysfs-schema/topology.schema.json')
  })

  it('accepts every shipped topology and the field form, and refuses an unknown field (python3 jsonschema)', async function () {
    this.timeout(30000)
    if ((await run('python3', ['-c', 'import jsonschema'])).code !== 0) this.skip()
    const docs: Record<string, unknown> = {}
    for (const t of ['default', 'large', 'no-pasid', 'no-nesting']) docs[t] = parse(await fsp.readFile(path.join(SCHEMA_DIR, 'topologies', `${t}.yaml`), 'utf8'))
    docs.fields = parse(SMMU_BY_FIELDS)
    docs.bad = parse(SMMU_BY_FIELDS.replace('ATS: 1,', 'S3P: 1,'))
    const script = `import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
for name, doc in json.load(sys.stdin).items():
    errs = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
    print(name, "ok" if not errs else "invalid")`
    const r = await run('python3', ['-c', script, path.join(SCHEMA_DIR, 'topology.schema.json')], { input: JSON.stringify(docs) })
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'default ok\nlarge ok\nno-pasid ok\nno-nesting ok\nfields ok\nbad invalid\n')
  })
})
