import * as path from 'node:path'
import { DataError, DataNode } from '../util/data-file'
import { SCHEMA_DIR } from '../util/paths'
import { get as extractField, mask as fieldMask, set as depositField } from './bits'

/** One named bit field of a register, as in QEMU's FIELD(reg, name, shift, length). */
export interface FieldDef {
  readonly register: string
  readonly name: string
  readonly lo: number
  readonly hi: number
  readonly doc: string
  /** Names of the encoded values, where the architecture gives them. */
  readonly values: ReadonlyMap<bigint, string>
}

export interface RegisterDef {
  readonly name: string
  readonly offset: number
  readonly width: 32 | 64
  readonly doc: string
  readonly fields: ReadonlyMap<string, FieldDef>
}

/** The register layout of one IOMMU architecture, loaded from sysfs-schema/registers/. */
export interface RegisterModel {
  readonly model: string
  readonly file: string
  readonly registers: ReadonlyMap<string, RegisterDef>
}

/** A register field is a named bit range like any other: the bit helpers apply. */
export { mask as fieldMask, get as extractField, set as depositField } from './bits'

export function describeBits(f: FieldDef): string {
  return f.hi === f.lo ? `bit ${f.lo}` : `bits ${f.hi}:${f.lo}`
}

function parseBits(node: DataNode, width: number): [number, number] {
  const m = /^(\d+)(?::(\d+))?$/.exec(node.str())
  if (!m) node.fail('"hi:lo" or a bit number')
  const hi = Number(m[1])
  const lo = m[2] === undefined ? hi : Number(m[2])
  if (lo > hi || hi >= width) node.fail(`a bit range inside a ${width}-bit register, hi >= lo`)
  return [lo, hi]
}

function loadModel(file: string): RegisterModel {
  const root = DataNode.load(file).only(['model', 'registers'])
  const model = root.get('model').str()
  const registers = new Map<string, RegisterDef>()
  for (const [name, reg] of root.get('registers').entries()) {
    reg.only(['offset', 'width', 'doc', 'fields'])
    const width = reg.get('width').num(32, 64)
    if (width !== 32 && width !== 64) reg.get('width').fail('32 or 64')
    const fields = new Map<string, FieldDef>()
    let used = 0n
    for (const [fname, fnode] of reg.get('fields').entries()) {
      fnode.only(['bits', 'doc', 'values'])
      const [lo, hi] = parseBits(fnode.get('bits'), width)
      const values = new Map<bigint, string>()
      for (const [k, v] of fnode.opt('values')?.entries() ?? []) {
        if (!/^\d+$/.test(k)) throw new DataError(file, v.key, 'a numeric value as key', JSON.stringify(k))
        values.set(BigInt(k), v.str())
      }
      const f: FieldDef = { register: name, name: fname, lo, hi, doc: fnode.get('doc').str(), values }
      if (used & fieldMask(f)) fnode.get('bits').fail('bits not used by another field of this register')
      used |= fieldMask(f)
      fields.set(fname, f)
    }
    registers.set(name, { name, offset: reg.get('offset').num(0, 0xffff), width: width as 32 | 64, doc: reg.get('doc').str(), fields })
  }
  return { model, file, registers }
}

const cache = new Map<string, RegisterModel>()

/** The register model of an architecture (`arm-smmu-v3`, `intel-vtd`), loaded once. */
export function registerModel(model: string): RegisterModel {
  let m = cache.get(model)
  if (!m) {
    m = loadModel(path.join(SCHEMA_DIR, 'registers', `${model}.yaml`))
    if (m.model !== model) throw new DataError(m.file, 'model', `"${model}"`, JSON.stringify(m.model))
    cache.set(model, m)
  }
  return m
}

/** Resolves "REG.FIELD" against a model; undefined when either part is unknown. */
export function lookupField(model: RegisterModel, ref: string): FieldDef | undefined {
  const [reg, field, extra] = ref.split('.')
  if (extra !== undefined || field === undefined) return undefined
  return model.registers.get(reg)?.fields.get(field)
}

/**
 * The register words of one IOMMU instance. Immutable: a changed word makes a
 * new RegisterFile, so views computed from an old one never see half an update.
 */
export class RegisterFile {
  constructor(readonly model: RegisterModel, private readonly words: ReadonlyMap<string, bigint>) {
    for (const [name, def] of model.registers) {
      const w = words.get(name)
      if (w === undefined) throw new Error(`register ${name} missing`)
      if (w < 0n || w >> BigInt(def.width) !== 0n) throw new Error(`register ${name} wider than ${def.width} bits`)
    }
  }

  word(register: string): bigint {
    const w = this.words.get(register)
    if (w === undefined) throw new Error(`${this.model.model} has no register ${register}`)
    return w
  }

  fieldDef(ref: string): FieldDef {
    const f = lookupField(this.model, ref)
    if (!f) throw new Error(`${this.model.model} has no field ${ref}`)
    return f
  }

  /** Field values read so far: the words never change, and features are read on every request. */
  private readonly fieldValues = new Map<string, bigint>()

  /** The value of a field named "REG.FIELD". */
  field(ref: string): bigint {
    let v = this.fieldValues.get(ref)
    if (v === undefined) {
      const f = this.fieldDef(ref)
      v = extractField(this.word(f.register), f)
      this.fieldValues.set(ref, v)
    }
    return v
  }

  flag(ref: string): boolean {
    return this.field(ref) !== 0n
  }

  /** A copy with one field changed. */
  withField(ref: string, value: bigint): RegisterFile {
    const f = this.fieldDef(ref)
    const words = new Map(this.words)
    words.set(f.register, depositField(this.word(f.register), f, value))
    return new RegisterFile(this.model, words)
  }

  entries(): [string, bigint][] {
    return [...this.model.registers.keys()].map((name) => [name, this.word(name)])
  }
}
