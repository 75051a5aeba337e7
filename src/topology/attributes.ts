import { readdirSync } from 'node:fs'
import * as path from 'node:path'
import { DataError, DataNode } from '../util/data-file'
import { SCHEMA_DIR } from '../util/paths'
import { FieldDef, RegisterFile, RegisterModel, describeBits, extractField, lookupField, registerModel } from '../hw/registers'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { Vtd } from '../hw/vtd/vtd'
import { IommuGroup, IommuUnit, PciDevice, storeGroupType } from '../hw/unit'

/** What an attribute can be read from: register words and named properties. */
export interface AttributeOwner {
  readonly registers?: RegisterFile
  property(name: string): bigint | string | undefined
  /** Takes a write to a writable property attribute (mode 0644); throws its errno. */
  store?(name: string, text: string): void
}

/** The kinds of thing attributes hang off, with what each can provide. */
const SUBJECTS = {
  'arm-smmu-v3': { registers: 'arm-smmu-v3', properties: Smmuv3.properties, writable: [] },
  'intel-vtd': { registers: 'intel-vtd', properties: Vtd.properties, writable: [] },
  'pci-device': { registers: undefined, properties: ['vendor', 'device'], writable: [] },
  'iommu-group': { registers: undefined, properties: ['type', 'reserved_regions'], writable: ['type'] },
} as const satisfies Record<string, { registers: string | undefined; properties: readonly string[]; writable: readonly string[] }>

export type Subject = keyof typeof SUBJECTS

const FORMATS = ['%d', '%llx', '0x%04x', '0x%08x', '0x%016llx', '%s'] as const
type Format = (typeof FORMATS)[number]

type Value =
  | { kind: 'const'; text: string }
  | { kind: 'register'; register: string; format: Format }
  | { kind: 'field'; field: FieldDef; map?: Map<bigint, string>; flag?: [string, string]; bitnames?: Map<number, string>; add: bigint }
  | { kind: 'all'; fields: FieldDef[]; flag: [string, string] }
  | { kind: 'template'; parts: (string | FieldDef)[] }
  | { kind: 'property'; name: string; format: Format }

export interface AttributeDef {
  readonly name: string
  readonly mode: number
  readonly doc: string
  readonly value: Value
  /** The file exists only while this field is nonzero. */
  readonly presentIf?: FieldDef
  /** What an absent file means (required with presentIf). */
  readonly absentMeans?: string
}

export interface AttributeGroup {
  readonly file: string
  readonly subject: Subject
  /** Directory below the subject's own ('.' = the subject's directory itself). */
  readonly directory: string
  readonly doc: string
  readonly attributes: readonly AttributeDef[]
}

export interface Schema {
  readonly groups: readonly AttributeGroup[]
  groupsFor(subject: Subject): AttributeGroup[]
}

function format(v: bigint | string, f: Format): string {
  if (typeof v === 'string') return v
  switch (f) {
    case '%d':
    case '%s':
      return v.toString(10)
    case '%llx':
      return v.toString(16)
    case '0x%04x':
      return `0x${v.toString(16).padStart(4, '0')}`
    case '0x%08x':
      return `0x${v.toString(16).padStart(8, '0')}`
    case '0x%016llx':
      return `0x${v.toString(16).padStart(16, '0')}`
  }
}

function parseField(node: DataNode, model: RegisterModel | undefined): FieldDef {
  const ref = node.str()
  const f = model && lookupField(model, ref)
  if (!f) node.fail(model ? `a field "REG.FIELD" of ${model.model} (see ${path.basename(model.file)})` : 'no register field (this subject has no registers)')
  return f
}

function parseFormat(node: DataNode | undefined, fallback: Format): Format {
  if (!node) return fallback
  const f = node.str() as Format
  if (!FORMATS.includes(f)) node.fail(`one of ${FORMATS.join(' ')}`)
  return f
}

function parseFlag(node: DataNode): [string, string] {
  const l = node.list()
  if (l.length !== 2) node.fail('a list [text when 0, text when 1]')
  return [l[0].str(), l[1].str()]
}

const VALUE_KEYS = ['const', 'register', 'field', 'all', 'template', 'property']

function parseValue(a: DataNode, model: RegisterModel | undefined, properties: readonly string[]): Value {
  const kinds = VALUE_KEYS.filter((k) => a.has(k))
  if (kinds.length !== 1) a.fail(`exactly one of ${VALUE_KEYS.join(', ')}`)
  const onlyWith = (allowed: string[]): void => {
    for (const k of ['map', 'flag', 'bitnames', 'add', 'format']) {
      if (a.has(k) && !allowed.includes(k)) a.get(k).fail(`no "${k}" with "${kinds[0]}"`)
    }
  }
  switch (kinds[0]) {
    case 'const':
      onlyWith([])
      return { kind: 'const', text: a.get('const').str() }
    case 'register': {
      onlyWith(['format'])
      const r = a.get('register')
      const def = model?.registers.get(r.str())
      if (!def) return r.fail(model ? `a register of ${model.model}` : 'no register (this subject has no registers)')
      return { kind: 'register', register: def.name, format: parseFormat(a.opt('format'), def.width === 64 ? '%llx' : '0x%08x') }
    }
    case 'field': {
      onlyWith(['map', 'flag', 'bitnames', 'add'])
      const field = parseField(a.get('field'), model)
      const renderers = ['map', 'flag', 'bitnames'].filter((k) => a.has(k))
      if (renderers.length > 1) a.fail('at most one of map, flag, bitnames')
      const v: Value = { kind: 'field', field, add: a.has('add') ? a.get('add').int(-64n, 64n) : 0n }
      if (a.has('map')) v.map = new Map(a.get('map').entries().map(([k, n]) => [BigInt(k), n.str()]))
      if (a.has('flag')) v.flag = parseFlag(a.get('flag'))
      if (a.has('bitnames')) v.bitnames = new Map(a.get('bitnames').entries().map(([k, n]) => [Number(k), n.str()]))
      return v
    }
    case 'all': {
      onlyWith(['flag'])
      return { kind: 'all', fields: a.get('all').list().map((n) => parseField(n, model)), flag: parseFlag(a.get('flag')) }
    }
    case 'template': {
      onlyWith([])
      const t = a.get('template')
      const parts: (string | FieldDef)[] = []
      for (const piece of t.str().split(/(\{[^}]*\})/)) {
        if (!piece.startsWith('{')) parts.push(piece)
        else parts.push(parseField(new DataNode(t.file, t.key, piece.slice(1, -1)), model))
      }
      return { kind: 'template', parts }
    }
    default: {
      onlyWith(['format'])
      const p = a.get('property')
      if (!properties.includes(p.str())) p.fail(`one of the properties ${properties.join(', ')}`)
      return { kind: 'property', name: p.str(), format: parseFormat(a.opt('format'), '%d') }
    }
  }
}

function loadGroup(file: string): AttributeGroup {
  const root = DataNode.load(file).only(['subject', 'directory', 'doc', 'attributes'])
  const subjectNode = root.get('subject')
  const subject = subjectNode.str() as Subject
  if (!Object.prototype.hasOwnProperty.call(SUBJECTS, subject)) subjectNode.fail(`one of ${Object.keys(SUBJECTS).join(', ')}`)
  const spec = SUBJECTS[subject]
  const model = spec.registers ? registerModel(spec.registers) : undefined
  const directory = root.get('directory').str()
  if (directory !== '.' && !/^[a-z0-9_-]+$/.test(directory)) root.get('directory').fail('"." or one path component')
  const attributes: AttributeDef[] = []
  for (const [name, a] of root.get('attributes').entries()) {
    if (!/^[a-z0-9_]+$/.test(name)) throw new DataError(file, a.key, 'an attribute name of a-z, 0-9 and _', JSON.stringify(name))
    a.only([...VALUE_KEYS, 'map', 'flag', 'bitnames', 'add', 'format', 'mode', 'doc', 'present_if', 'absent_means'])
    const modeNode = a.opt('mode')
    const mode = modeNode ? parseInt(modeNode.str(), 8) : 0o444
    // a property the model takes writes of (an IOMMU group's type) may be 0644; feature files are read-only
    const writable = spec.writable as readonly string[]
    const property = a.opt('property')?.str()
    const modes = property !== undefined && writable.includes(property) ? ['0444', '0644'] : ['0444']
    if (modeNode && !modes.includes(modeNode.str())) modeNode.fail(modes.length > 1 ? `one of ${modes.map((m) => `"${m}"`).join(', ')}` : '"0444" (feature files are read-only)')
    const presentIf = a.has('present_if') ? parseField(a.get('present_if'), model) : undefined
    if (presentIf && !a.has('absent_means')) a.get('present_if').fail('an "absent_means" beside it, documenting the default')
    if (!presentIf && a.has('absent_means')) a.get('absent_means').fail('no "absent_means" without "present_if"')
    attributes.push({
      name,
      mode,
      doc: a.get('doc').str().trim(),
      value: parseValue(a, model, spec.properties),
      presentIf,
      absentMeans: a.opt('absent_means')?.str(),
    })
  }
  return { file, subject, directory, doc: root.get('doc').str().trim(), attributes }
}

/** Loads and validates every attribute group in sysfs-schema/attributes/. */
export function loadSchema(dir = path.join(SCHEMA_DIR, 'attributes')): Schema {
  const groups = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => loadGroup(path.join(dir, f)))
  const seen = new Map<string, string>()
  for (const g of groups) {
    for (const a of g.attributes) {
      const where = `${g.subject}/${g.directory}/${a.name}`
      const other = seen.get(where)
      if (other) throw new DataError(g.file, `attributes.${a.name}`, `a name not already defined in ${other}`, a.name)
      seen.set(where, g.file)
    }
  }
  return { groups, groupsFor: (s) => groups.filter((g) => g.subject === s) }
}

function renderField(v: Extract<Value, { kind: 'field' }>, raw: bigint): string {
  if (v.map) return v.map.get(raw) ?? `reserved (${raw})`
  if (v.flag) return v.flag[raw === 0n ? 0 : 1]
  if (v.bitnames) {
    const names = [...v.bitnames].filter(([bit]) => (raw >> BigInt(bit)) & 1n).map(([, n]) => n)
    return names.length ? names.join(' ') : 'none'
  }
  return (raw + v.add).toString(10)
}

/** The text of an attribute file (without its newline), or undefined when the file is absent. */
export function renderAttribute(a: AttributeDef, owner: AttributeOwner): string | undefined {
  const regs = owner.registers
  const field = (f: FieldDef): bigint => extractField(regs!.word(f.register), f)
  if (a.presentIf && field(a.presentIf) === 0n) return undefined
  const v = a.value
  switch (v.kind) {
    case 'const':
      return v.text
    case 'register':
      return format(regs!.word(v.register), v.format)
    case 'field':
      return renderField(v, field(v.field))
    case 'all':
      return v.flag[v.fields.every((f) => field(f) !== 0n) ? 1 : 0]
    case 'template':
      return v.parts.map((p) => (typeof p === 'string' ? p : field(p).toString(10))).join('')
    case 'property': {
      const p = owner.property(v.name)
      if (p === undefined) throw new Error(`property ${v.name} has no value`)
      return format(p, v.format)
    }
  }
}

function fieldName(f: FieldDef): string {
  return `${f.register}.${f.name} (${describeBits(f)})`
}

/** Where an attribute's value comes from, in words, for the ABI document. */
function describeSource(a: AttributeDef): string {
  const v = a.value
  switch (v.kind) {
    case 'const':
      return `Constant: ${v.text}.`
    case 'register':
      return `The whole ${v.register} register, printed as ${v.format}.`
    case 'field': {
      const src = fieldName(v.field)
      if (v.map) return `${src}: ${[...v.map].map(([k, t]) => `${k} -> "${t}"`).join(', ')}; other values -> "reserved (N)".`
      if (v.flag) return `${src}: 0 -> "${v.flag[0]}", 1 -> "${v.flag[1]}".`
      if (v.bitnames) return `${src}, each set bit named: ${[...v.bitnames].map(([b, n]) => `bit ${b} -> "${n}"`).join(', ')}; space separated, "none" when 0.`
      return v.add ? `${src} plus ${v.add}, in decimal.` : `${src}, in decimal.`
    }
    case 'all':
      return `"${v.flag[1]}" when all of ${v.fields.map(fieldName).join(', ')} are set, else "${v.flag[0]}".`
    case 'template':
      return `"${v.parts.map((p) => (typeof p === 'string' ? p : `<${p.register}.${p.name}>`)).join('')}", fields in decimal (${v.parts
        .filter((p): p is FieldDef => typeof p !== 'string')
        .map(fieldName)
        .join(', ')}).`
    case 'property':
      return `The ${v.name} of the ${'instance'}, printed as ${v.format}.`
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `\t\t${l}` : ''))
    .join('\n')
}

/** The schema as Documentation/ABI entries; `dirOf` gives each subject's directory pattern. */
export function abiDocument(schema: Schema, dirOf: (s: Subject) => string, date: string, version: string): string {
  const out: string[] = []
  for (const g of schema.groups) {
    for (const a of g.attributes) {
      const dir = g.directory === '.' ? dirOf(g.subject) : `${dirOf(g.subject)}/${g.directory}`
      const body = [`(${a.mode & 0o200 ? 'RW' : 'RO'}) ${a.doc}`, '', `Source: ${describeSource(a)}`]
      if (a.presentIf) body.push(`Present only when ${fieldName(a.presentIf)} is nonzero; when absent: ${a.absentMeans}.`)
      out.push(
        [`What:\t\t${dir}/${a.name}`, `Date:\t\t${date}`, `KernelVersion:\tiommufs ${version}`, 'Contact:\tiommufs', 'Description:', indent(body.join('\n')), ''].join('\n'),
      )
    }
  }
  return out.join('\n')
}

/** Owners for the things the tree shows attributes of. */
export function unitOwner(u: IommuUnit): AttributeOwner {
  return { registers: u.registers, property: (n) => u.property(n) }
}

export function deviceOwner(d: PciDevice): AttributeOwner {
  return { property: (n) => (n === 'vendor' ? BigInt(d.vendor) : n === 'device' ? BigInt(d.device) : undefined) }
}

export function groupOwner(g: IommuGroup): AttributeOwner {
  const regions = (): string =>
    (g.devices[0]?.unit.reservedRegions() ?? []).map((r) => `${format(r.start, '0x%016llx')} ${format(r.last, '0x%016llx')} ${r.type}`).join('\n')
  return {
    property: (n) => (n === 'type' ? g.type : n === 'reserved_regions' ? regions() : undefined),
    store: (n, text) => {
      if (n === 'type') storeGroupType(g, text)
    },
  }
}
