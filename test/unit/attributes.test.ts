import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { SUBJECT_DIRS } from '../../src/fs/sysfs-tree'
import { abiDocument, deviceOwner, groupOwner, loadSchema, renderAttribute } from '../../src/topology/attributes'
import { loadTopology } from '../../src/topology/topology'
import { DataError } from '../../src/util/data-file'
import { SCHEMA_DIR } from '../../src/util/paths'
import { changedKeys, edit, renderUnit, tempDataDir } from '../helpers/data'

const ATTRIBUTES = path.join(SCHEMA_DIR, 'attributes')

describe('attribute schema and rendering', () => {
  const schema = loadSchema()
  const machine = loadTopology(path.join(SCHEMA_DIR, 'topologies', 'default.yaml'))
  const [smmu0, smmu1, dmar0] = machine.units

  it('loads one group per schema file, each for a known subject', () => {
    assert.deepEqual(
      schema.groups.map((g) => [path.basename(g.file), g.subject, g.directory]),
      [
        ['arm-smmu-v3.yaml', 'arm-smmu-v3', 'arm-smmu-v3'],
        ['intel-iommu.yaml', 'intel-vtd', 'intel-iommu'],
        ['intel-vtd.yaml', 'intel-vtd', 'intel-vtd'],
        ['iommu-group.yaml', 'iommu-group', '.'],
        ['pci-device.yaml', 'pci-device', '.'],
      ],
    )
    // every file is read-only but an IOMMU group's type, which the kernel takes writes of (0644)
    for (const g of schema.groups) for (const a of g.attributes) assert.equal(a.mode, g.subject === 'iommu-group' && a.name === 'type' ? 0o644 : 0o444, `${g.file} ${a.name}`)
  })

  describe('the default machine', () => {
    const s0 = renderUnit(schema, smmu0)
    const v0 = renderUnit(schema, dmar0)

    it('SMMUv3 feature files', () => {
      assert.equal(s0.get('arm-smmu-v3/model'), '2')
      assert.equal(s0.get('arm-smmu-v3/asid_bits'), '16')
      assert.equal(s0.get('arm-smmu-v3/vmid_bits'), '16')
      assert.equal(s0.get('arm-smmu-v3/ssid_bits'), '20')
      assert.equal(s0.get('arm-smmu-v3/sid_bits'), '16')
      assert.equal(s0.get('arm-smmu-v3/input_bits'), '48')
      assert.equal(s0.get('arm-smmu-v3/output_bits'), '48')
      assert.equal(s0.get('arm-smmu-v3/httu'), 'access+dirty')
      assert.equal(s0.get('arm-smmu-v3/btm'), 'enabled')
      assert.equal(s0.get('arm-smmu-v3/stall'), 'enabled')
      assert.equal(s0.get('arm-smmu-v3/pgtable_format'), 'aarch64')
      assert.equal(s0.get('arm-smmu-v3/s1'), '1')
      assert.equal(s0.get('arm-smmu-v3/s2'), '1')
      assert.equal(s0.get('arm-smmu-v3/nesting'), '1')
      assert.equal(s0.get('arm-smmu-v3/idr0'), '0x0c4d76bb')
      assert.equal(s0.get('arm-smmu-v3/idr5'), '0x00800075')
      assert.equal(s0.get('arm-smmu-v3/aidr'), '0x00000002')
    })

    it('every SMMUv3 attribute of the schema is present (the default has PASIDs)', () => {
      const names = schema.groupsFor('arm-smmu-v3').flatMap((g) => g.attributes.map((a) => `${g.directory}/${a.name}`))
      assert.deepEqual([...s0.keys()], names)
      assert.deepEqual(renderUnit(schema, smmu1), s0, 'both SMMUs share their register words')
    })

    it('VT-d model and decoded features', () => {
      assert.equal(v0.get('intel-vtd/model'), '1')
      assert.equal(v0.get('intel-vtd/address_width'), '48')
      assert.equal(v0.get('intel-vtd/sagaw'), '48')
      assert.equal(v0.get('intel-vtd/second_stage_large_pages'), '2M 1G')
      assert.equal(v0.get('intel-vtd/nested'), '1')
      assert.equal(v0.get('intel-vtd/pasid_bits'), '20')
      assert.equal(v0.get('intel-vtd/first_stage_5level'), '0')
    })

    it('intel-iommu files in the kernel format (%llx without 0x, major:minor, decimal)', () => {
      assert.equal(v0.get('intel-iommu/address'), 'fed90000')
      assert.equal(v0.get('intel-iommu/cap'), '9ff078c226f0466')
      assert.equal(v0.get('intel-iommu/ecap'), '1ef9ea4f050df')
      assert.equal(v0.get('intel-iommu/version'), '1:0')
      assert.equal(v0.get('intel-iommu/domains_supported'), '65536')
      assert.equal(v0.get('intel-iommu/domains_used'), '0')
    })

    it('domains_supported is 2^(4+2*ND) for every ND', () => {
      for (let nd = 0n; nd <= 6n; nd++) {
        const text = renderUnit(schema, dmar0, dmar0.registers.withField('CAP.ND', nd)).get('intel-iommu/domains_supported')
        assert.equal(text, String(2 ** (4 + 2 * Number(nd))), `ND=${nd}`)
      }
    })

    it('device and group files', () => {
      const find = (subject: 'pci-device' | 'iommu-group', name: string) => schema.groupsFor(subject)[0].attributes.find((a) => a.name === name)!
      const dev = machine.devices[0]
      assert.equal(renderAttribute(find('pci-device', 'vendor'), deviceOwner(dev)), '0x15b3')
      assert.equal(renderAttribute(find('pci-device', 'device'), deviceOwner(dev)), '0x101e')
      assert.equal(renderAttribute(find('iommu-group', 'type'), groupOwner(dev.group)), 'DMA')
      assert.equal(renderAttribute(find('iommu-group', 'reserved_regions'), groupOwner(dev.group)), '0x0000000008000000 0x00000000080fffff msi')
      const vtdGroup = machine.devices[4].group
      assert.equal(renderAttribute(find('iommu-group', 'reserved_regions'), groupOwner(vtdGroup)), '0x00000000fee00000 0x00000000feefffff msi')
    })
  })

  describe('changing one register field changes exactly the files that depend on it', () => {
    const cases: [string, 'smmu' | 'vtd', string, (v: bigint) => bigint, string[]][] = [
      ['IDR0.HTTU 2 -> 1', 'smmu', 'IDR0.HTTU', () => 1n, ['arm-smmu-v3/httu', 'arm-smmu-v3/idr0']],
      ['IDR1.SSIDSIZE 20 -> 0', 'smmu', 'IDR1.SSIDSIZE', () => 0n, ['arm-smmu-v3/idr1', 'arm-smmu-v3/ssid_bits']],
      ['IDR0.S1P 1 -> 0', 'smmu', 'IDR0.S1P', () => 0n, ['arm-smmu-v3/idr0', 'arm-smmu-v3/nesting', 'arm-smmu-v3/s1']],
      ['IDR0.ASID16 1 -> 0', 'smmu', 'IDR0.ASID16', () => 0n, ['arm-smmu-v3/asid_bits', 'arm-smmu-v3/idr0']],
      ['IDR5.OAS 5 -> 6', 'smmu', 'IDR5.OAS', () => 6n, ['arm-smmu-v3/idr5', 'arm-smmu-v3/output_bits']],
      ['IIDR.PRODUCTID (no decoded file)', 'smmu', 'IIDR.PRODUCTID', (v) => v ^ 1n, ['arm-smmu-v3/iidr']],
      ['CAP.ND 6 -> 2', 'vtd', 'CAP.ND', () => 2n, ['intel-iommu/cap', 'intel-iommu/domains_supported']],
      ['ECAP.NEST 1 -> 0', 'vtd', 'ECAP.NEST', () => 0n, ['intel-iommu/ecap', 'intel-vtd/nested']],
      ['ECAP.PASID 1 -> 0', 'vtd', 'ECAP.PASID', () => 0n, ['intel-iommu/ecap', 'intel-vtd/pasid_bits']],
      ['VER.MIN 0 -> 1', 'vtd', 'VER.MIN', () => 1n, ['intel-iommu/version']],
      // dirty tracking follows the drivers' rules: VT-d needs SMPWC as well as SLADS; HTTU alone says nothing of it here
      ['ECAP.SMPWC 1 -> 0', 'vtd', 'ECAP.SMPWC', () => 0n, ['intel-iommu/ecap', 'intel-vtd/dirty_tracking']],
      ['ECAP.SMTS 1 -> 0', 'vtd', 'ECAP.SMTS', () => 0n, ['intel-iommu/ecap', 'intel-vtd/dirty_tracking', 'intel-vtd/nested', 'intel-vtd/scalable_mode']],
    ]
    for (const [what, which, ref, to, expected] of cases) {
      it(what, () => {
        const unit = which === 'smmu' ? smmu0 : dmar0
        const before = renderUnit(schema, unit)
        const value = to(unit.registers.field(ref))
        assert.notEqual(value, unit.registers.field(ref), 'the case must change the field')
        const after = renderUnit(schema, unit, unit.registers.withField(ref, value))
        assert.deepEqual(changedKeys(before, after), expected)
      })
    }

    it('SSIDSIZE 0 removes ssid_bits rather than printing 0', () => {
      const after = renderUnit(schema, smmu0, smmu0.registers.withField('IDR1.SSIDSIZE', 0n))
      assert.equal(after.has('arm-smmu-v3/ssid_bits'), false)
      assert.equal(after.get('arm-smmu-v3/idr1'), '0x01084010')
    })

    it('every register field shows in its raw register file', () => {
      const rawFile: Record<string, string> = { CAP: 'intel-iommu/cap', ECAP: 'intel-iommu/ecap', VER: 'intel-iommu/version' }
      for (const unit of [smmu0, dmar0]) {
        const before = renderUnit(schema, unit)
        for (const reg of unit.registers.model.registers.values()) {
          for (const f of reg.fields.values()) {
            const ref = `${reg.name}.${f.name}`
            const after = renderUnit(schema, unit, unit.registers.withField(ref, unit.registers.field(ref) === 0n ? 1n : 0n))
            const raw = rawFile[reg.name] ?? `arm-smmu-v3/${reg.name.toLowerCase()}`
            assert.ok(changedKeys(before, after).includes(raw), `${ref} -> ${raw}`)
          }
        }
      }
    })
  })

  describe('ABI document', () => {
    const abi = abiDocument(schema, (s) => SUBJECT_DIRS[s], 'November 2026', '0.1.0')
    const entry = (what: string): string => {
      const start = abi.indexOf(`What:\t\t${what}\n`)
      assert.ok(start >= 0, `no entry for ${what}`)
      const end = abi.indexOf('\nWhat:', start + 1)
      return abi.slice(start, end < 0 ? undefined : end)
    }

    it('documents ssid_bits, with the meaning of its absence', () => {
      const e = entry('/sys/class/iommu/<iommu>/arm-smmu-v3/ssid_bits')
      assert.ok(e.includes('\t\t(RO) Number of SubstreamID (PASID) bits.\n'), e)
      assert.ok(e.includes('\t\tSource: IDR1.SSIDSIZE (bits 10:6), in decimal.\n'), e)
      assert.ok(e.includes('\t\tPresent only when IDR1.SSIDSIZE (bits 10:6) is nonzero; when absent: 0, SubstreamIDs (PASIDs) are not supported.\n'), e)
    })

    it('has one entry per attribute, under its subject directory', () => {
      const whats = abi.split('\n').filter((l) => l.startsWith('What:'))
      const expected = schema.groups.flatMap((g) =>
        g.attributes.map((a) => `What:\t\t${SUBJECT_DIRS[g.subject]}${g.directory === '.' ? '' : `/${g.directory}`}/${a.name}`),
      )
      assert.deepEqual(whats, expected)
      assert.ok(whats.includes('What:\t\t/sys/class/iommu/<iommu>/intel-iommu/cap'))
      assert.ok(whats.includes('What:\t\t/sys/bus/pci/devices/<bdf>/vendor'))
    })
  })

  describe('schema errors name the file, the key and what was expected', () => {
    let data: Awaited<ReturnType<typeof tempDataDir>>
    const original = new Map<string, string>()
    before(async () => {
      data = await tempDataDir()
      for (const f of await fsp.readdir(ATTRIBUTES)) original.set(f, await fsp.readFile(path.join(ATTRIBUTES, f), 'utf8'))
    })
    after(async () => data.cleanup())

    /** A schema dir holding the real group files, `name` changed by `change` and `extra` added. */
    async function schemaDir(id: string, name: string, change: (t: string) => string, extra: Record<string, string> = {}): Promise<string> {
      const dir = path.join(data.dir, id)
      await fsp.mkdir(dir)
      for (const [f, text] of original) await fsp.writeFile(path.join(dir, f), f === name ? change(text) : text)
      for (const [f, text] of Object.entries(extra)) await fsp.writeFile(path.join(dir, f), text)
      return dir
    }

    function errorOf(dir: string): string {
      try {
        loadSchema(dir)
      } catch (e) {
        assert.ok(e instanceof DataError, `expected a DataError, got ${String(e)}`)
        return e.message
      }
      throw new Error(`${dir} loaded without error`)
    }

    it('an unchanged copy loads, with the same attributes', async () => {
      const copy = loadSchema(await schemaDir('copy', '', (t) => t))
      assert.deepEqual(
        copy.groups.map((g) => g.attributes.map((a) => a.name)),
        schema.groups.map((g) => g.attributes.map((a) => a.name)),
      )
    })

    const CASES: [string, string, (t: string) => string, (f: string) => string][] = [
      [
        'unknown field reference',
        'arm-smmu-v3.yaml',
        (t) => edit(t, 'field: IDR0.BTM\n', 'field: IDR0.BTMX\n'),
        (f) => `${f}: attributes.btm.field: expected a field "REG.FIELD" of arm-smmu-v3 (see arm-smmu-v3.yaml), got "IDR0.BTMX"`,
      ],
      [
        'unknown field in a template',
        'intel-iommu.yaml',
        (t) => edit(t, '{VER.MIN}', '{VER.MINOR}'),
        (f) => `${f}: attributes.version.template: expected a field "REG.FIELD" of intel-vtd (see intel-vtd.yaml), got "VER.MINOR"`,
      ],
      [
        'unknown register',
        'arm-smmu-v3.yaml',
        (t) => edit(t, 'register: IDR2,', 'register: IDR7,'),
        (f) => `${f}: attributes.idr2.register: expected a register of arm-smmu-v3, got "IDR7"`,
      ],
      [
        'two value kinds',
        'arm-smmu-v3.yaml',
        (t) => edit(t, '    const: "2"\n', '    const: "2"\n    field: IDR0.S1P\n'),
        (f) => `${f}: attributes.model: expected exactly one of const, register, field, all, template, property, got a mapping`,
      ],
      [
        'present_if without absent_means',
        'arm-smmu-v3.yaml',
        (t) => edit(t, '    absent_means: "0, SubstreamIDs (PASIDs) are not supported"\n', ''),
        (f) => `${f}: attributes.ssid_bits.present_if: expected an "absent_means" beside it, documenting the default, got "IDR1.SSIDSIZE"`,
      ],
      [
        'unknown property',
        'intel-iommu.yaml',
        (t) => edit(t, 'property: domains_used', 'property: domains_free'),
        (f) => `${f}: attributes.domains_used.property: expected one of the properties address, domains_used, nesting, dirty_tracking, got "domains_free"`,
      ],
      [
        'bad format',
        'intel-iommu.yaml',
        (t) => edit(t, 'property: address\n    format: "%llx"', 'property: address\n    format: "%x"'),
        (f) => `${f}: attributes.address.format: expected one of %d %llx 0x%04x 0x%08x 0x%016llx %s, got "%x"`,
      ],
      [
        'unknown key in an attribute',
        'pci-device.yaml',
        (t) => edit(t, '    property: vendor\n', '    property: vendor\n    units: hex\n'),
        (f) =>
          `${f}: attributes.vendor.units: expected one of the keys const, register, field, all, template, property, map, flag, bitnames, add, format, mode, doc, present_if, absent_means, got unknown key "units"`,
      ],
      [
        'a writable mode on a group property the model does not take writes of',
        'iommu-group.yaml',
        (t) => edit(t, '    property: reserved_regions\n', '    property: reserved_regions\n    mode: "0644"\n'),
        (f) => `${f}: attributes.reserved_regions.mode: expected "0444" (feature files are read-only), got "0644"`,
      ],
      [
        'a writable mode',
        'pci-device.yaml',
        (t) => edit(t, '    property: vendor\n', '    property: vendor\n    mode: "0644"\n'),
        (f) => `${f}: attributes.vendor.mode: expected "0444" (feature files are read-only), got "0644"`,
      ],
    ]
    CASES.forEach(([what, file, change, expected], i) => {
      it(what, async () => {
        const dir = await schemaDir(`case${i}`, file, change)
        assert.equal(errorOf(dir), expected(path.join(dir, file)))
      })
    })

    it('duplicate attribute (the same file name twice for one subject directory)', async () => {
      const more = 'subject: arm-smmu-v3\ndirectory: arm-smmu-v3\ndoc: More SMMUv3 files.\nattributes:\n  httu:\n    field: IDR0.HTTU\n    doc: Again.\n'
      const dir = await schemaDir('dup', '', (t) => t, { 'zz-more.yaml': more })
      assert.equal(errorOf(dir), `${path.join(dir, 'zz-more.yaml')}: attributes.httu: expected a name not already defined in ${path.join(dir, 'arm-smmu-v3.yaml')}, got httu`)
    })
  })

  it('an attribute absent by present_if has no rendering, not an empty one', () => {
    const ssid = schema.groupsFor('arm-smmu-v3')[0].attributes.find((a) => a.name === 'ssid_bits')!
    const owner = { registers: smmu0.registers.withField('IDR1.SSIDSIZE', 0n), property: () => undefined }
    assert.equal(renderAttribute(ssid, owner), undefined)
    assert.equal(renderAttribute(ssid, { ...owner, registers: smmu0.registers }), '20')
  })
})
