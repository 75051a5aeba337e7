import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import {
  FieldDef,
  RegisterFile,
  RegisterModel,
  depositField,
  describeBits,
  extractField,
  fieldMask,
  lookupField,
  registerModel,
} from '../../src/hw/registers'
import { loadTopology } from '../../src/topology/topology'
import { SCHEMA_DIR } from '../../src/util/paths'

const MODELS = ['arm-smmu-v3', 'intel-vtd'] as const

function allFields(m: RegisterModel): FieldDef[] {
  return [...m.registers.values()].flatMap((r) => [...r.fields.values()])
}

/** A deterministic sequence of 64-bit words (xorshift64), so failures reproduce. */
function* words(n: number): Generator<bigint> {
  let x = 0x9e3779b97f4a7c15n
  for (let i = 0; i < n; i++) {
    x ^= (x << 13n) & 0xffffffffffffffffn
    x ^= x >> 7n
    x ^= (x << 17n) & 0xffffffffffffffffn
    yield x
  }
}

const ones = (bits: number): bigint => (1n << BigInt(bits)) - 1n

describe('register models (sysfs-schema/registers)', () => {
  it('loads the SMMUv3 identification registers at their architected offsets', () => {
    const m = registerModel('arm-smmu-v3')
    assert.equal(m.model, 'arm-smmu-v3')
    assert.equal(m.file, path.join(SCHEMA_DIR, 'registers', 'arm-smmu-v3.yaml'))
    assert.deepEqual(
      [...m.registers.values()].map((r) => [r.name, r.offset, r.width]),
      [
        ['IDR0', 0x00, 32],
        ['IDR1', 0x04, 32],
        ['IDR2', 0x08, 32],
        ['IDR3', 0x0c, 32],
        ['IDR4', 0x10, 32],
        ['IDR5', 0x14, 32],
        ['IIDR', 0x18, 32],
        ['AIDR', 0x1c, 32],
      ],
    )
  })

  it('loads the VT-d VER, CAP and ECAP registers', () => {
    const m = registerModel('intel-vtd')
    assert.deepEqual(
      [...m.registers.values()].map((r) => [r.name, r.offset, r.width]),
      [
        ['VER', 0x00, 32],
        ['CAP', 0x08, 64],
        ['ECAP', 0x10, 64],
      ],
    )
  })

  it('returns the same model object on every call (loaded once)', () => {
    assert.equal(registerModel('intel-vtd'), registerModel('intel-vtd'))
  })

  it('decodes single bits and ranges as the schema writes them', () => {
    const smmu = registerModel('arm-smmu-v3')
    const vtd = registerModel('intel-vtd')
    const bits = (m: RegisterModel, ref: string): [number, number] => {
      const f = lookupField(m, ref)
      assert.ok(f, ref)
      return [f.hi, f.lo]
    }
    assert.deepEqual(bits(smmu, 'IDR0.S1P'), [1, 1])
    assert.deepEqual(bits(smmu, 'IDR0.HTTU'), [7, 6])
    assert.deepEqual(bits(smmu, 'IDR1.SSIDSIZE'), [10, 6])
    assert.deepEqual(bits(smmu, 'IDR5.STALL_MAX'), [31, 16])
    assert.deepEqual(bits(vtd, 'CAP.ND'), [2, 0])
    assert.deepEqual(bits(vtd, 'CAP.ESRTPS'), [63, 63])
    assert.deepEqual(bits(vtd, 'ECAP.PSS'), [39, 35])
    assert.equal(describeBits(lookupField(smmu, 'IDR0.S1P')!), 'bit 1')
    assert.equal(describeBits(lookupField(smmu, 'IDR0.HTTU')!), 'bits 7:6')
  })

  it('names the encoded values the architecture gives', () => {
    const httu = lookupField(registerModel('arm-smmu-v3'), 'IDR0.HTTU')!
    assert.deepEqual([...httu.values], [
      [0n, 'none'],
      [1n, 'access flag'],
      [2n, 'access flag and dirty state'],
    ])
  })

  for (const name of MODELS) {
    it(`${name}: every field's bit range lies inside its register and no two fields overlap`, () => {
      const m = registerModel(name)
      let count = 0
      for (const reg of m.registers.values()) {
        let used = 0n
        for (const f of reg.fields.values()) {
          count++
          assert.equal(f.register, reg.name)
          assert.ok(f.lo >= 0 && f.lo <= f.hi && f.hi < reg.width, `${reg.name}.${f.name} ${f.hi}:${f.lo} in ${reg.width} bits`)
          const mask = fieldMask(f)
          assert.equal(mask, ones(f.hi - f.lo + 1) << BigInt(f.lo), `${reg.name}.${f.name} mask`)
          assert.equal(used & mask, 0n, `${reg.name}.${f.name} overlaps another field`)
          used |= mask
          assert.ok(f.doc.length > 0, `${reg.name}.${f.name} has a doc`)
        }
      }
      assert.equal(count, allFields(m).length)
      assert.ok(count > 0)
    })

    it(`${name}: extract and deposit round-trip every field and leave the other bits alone`, () => {
      const m = registerModel(name)
      for (const f of allFields(m)) {
        const width = f.hi - f.lo + 1
        const regWidth = m.registers.get(f.register)!.width
        assert.equal(depositField(0n, f, ones(width)), fieldMask(f), `${f.name}: all ones`)
        assert.equal(extractField(ones(regWidth), f), ones(width), `${f.name}: extract all ones`)
        for (const w of words(16)) {
          const word = w & ones(regWidth)
          const value = (w >> 7n) & ones(width)
          const out = depositField(word, f, value)
          assert.equal(extractField(out, f), value, `${f.register}.${f.name}: value back`)
          assert.equal(out & ~fieldMask(f), word & ~fieldMask(f), `${f.register}.${f.name}: other bits kept`)
          // a value wider than the field is cut to the field
          assert.equal(extractField(depositField(word, f, value | (1n << BigInt(width))), f), value)
        }
      }
    })
  }

  it('resolves "REG.FIELD" references and nothing else', () => {
    const m = registerModel('arm-smmu-v3')
    assert.equal(lookupField(m, 'IDR0.S1P')?.lo, 1)
    assert.equal(lookupField(m, 'IDR0'), undefined)
    assert.equal(lookupField(m, 'IDR0.S1P.X'), undefined)
    assert.equal(lookupField(m, 'IDR9.S1P'), undefined)
    assert.equal(lookupField(m, 'IDR0.S3P'), undefined)
  })
})

describe('RegisterFile', () => {
  const machine = loadTopology(path.join(SCHEMA_DIR, 'topologies', 'default.yaml'))
  const smmu = machine.units[0].registers
  const vtd = machine.units[2].registers

  it('extracts the default SMMUv3 fields from the topology words', () => {
    assert.equal(smmu.word('IDR1'), 0x01084510n)
    assert.equal(smmu.field('IDR1.SIDSIZE'), 16n)
    assert.equal(smmu.field('IDR1.SSIDSIZE'), 20n)
    assert.equal(smmu.field('IDR0.HTTU'), 2n)
    assert.equal(smmu.field('IDR0.TTF'), 2n)
    assert.equal(smmu.field('IDR5.OAS'), 5n)
    assert.equal(smmu.field('IDR5.VAX'), 0n)
    assert.equal(smmu.flag('IDR0.S1P'), true)
    assert.equal(smmu.flag('IDR0.S2P'), true)
    assert.equal(smmu.flag('IDR0.HYP'), true)
    assert.equal(smmu.flag('IDR3.HAD'), false)
    assert.equal(smmu.field('IDR0.TTENDIAN'), 2n)
    assert.equal(smmu.field('IDR0.ST_LEVEL'), 1n)
  })

  it('extracts the default VT-d fields, including bits above 32', () => {
    assert.equal(vtd.field('CAP.ND'), 6n)
    assert.equal(vtd.field('CAP.MGAW'), 47n)
    assert.equal(vtd.field('CAP.SAGAW'), 4n)
    assert.equal(vtd.field('CAP.FL1GP'), 1n)
    assert.equal(vtd.field('ECAP.PSS'), 19n)
    assert.equal(vtd.field('ECAP.SMTS'), 1n)
    assert.equal(vtd.field('VER.MAX'), 1n)
    assert.equal(vtd.field('VER.MIN'), 0n)
  })

  it('withField changes one field of a copy and nothing else', () => {
    const changed = smmu.withField('IDR0.HTTU', 1n)
    assert.equal(changed.field('IDR0.HTTU'), 1n)
    assert.equal(changed.word('IDR0'), (0x0c4d76bbn & ~0xc0n) | 0x40n)
    assert.equal(smmu.field('IDR0.HTTU'), 2n, 'the original is untouched')
    for (const [name, word] of smmu.entries()) if (name !== 'IDR0') assert.equal(changed.word(name), word, name)
  })

  it('refuses a missing register, a word too wide and unknown names', () => {
    const m = registerModel('arm-smmu-v3')
    const words = new Map(smmu.entries())
    words.delete('IDR3')
    assert.throws(() => new RegisterFile(m, words), { message: 'register IDR3 missing' })
    words.set('IDR3', 1n << 32n)
    assert.throws(() => new RegisterFile(m, words), { message: 'register IDR3 wider than 32 bits' })
    assert.throws(() => smmu.field('IDR0.NOPE'), { message: 'arm-smmu-v3 has no field IDR0.NOPE' })
    assert.throws(() => smmu.word('CAP'), { message: 'arm-smmu-v3 has no register CAP' })
  })
})
