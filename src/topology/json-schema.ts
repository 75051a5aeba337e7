/**
 * The JSON Schema of topology files, generated from the register schema
 * (sysfs-schema/registers/*.yaml), so that an editor can complete register
 * and field names and show their documentation. The repository keeps the
 * output as sysfs-schema/topology.schema.json; a test checks it is current.
 */
import { FieldDef, RegisterDef, registerModel } from '../hw/registers'
import { DEFAULT_CACHE_SIZES } from '../hw/smmuv3/caches'
import { DEFAULT_VTD_CACHE_SIZES } from '../hw/vtd/caches'
import { IommuKind } from '../hw/unit'

type Schema = Record<string, unknown>

const KINDS: readonly IommuKind[] = ['arm-smmu-v3', 'intel-vtd']
/** An integer as YAML writes it, or the same in a string ("0x1f"). */
const INTEGER_TEXT = '^(0x[0-9a-fA-F]+|[0-9]+)$'

function integer(max: bigint, description?: string): Schema {
  // JSON numbers stop being exact above 2^53: wider maxima are left to iommufs's own check
  const bound = max <= BigInt(Number.MAX_SAFE_INTEGER) ? { maximum: Number(max) } : {}
  return { anyOf: [{ type: 'integer', minimum: 0, ...bound }, { type: 'string', pattern: INTEGER_TEXT }], ...(description ? { description } : {}) }
}

function fieldSchema(f: FieldDef): Schema {
  const max = (1n << BigInt(f.hi - f.lo + 1)) - 1n
  const bits = f.hi === f.lo ? `bit ${f.lo}` : `bits ${f.hi}:${f.lo}`
  const base = integer(max, `${f.doc} (${f.register} ${bits})`)
  if (!f.values.size) return base
  const names = [...f.values].map(([v, n]) => `${v} = ${n}`).join(', ')
  return { anyOf: [...(base.anyOf as Schema[]), { type: 'string', enum: [...f.values.values()] }], description: `${base.description as string}; ${names}` }
}

function registerSchema(definitions: Definitions, kind: IommuKind, r: RegisterDef): Schema {
  const fields = [...r.fields.values()]
  const byName = { additionalProperties: false, ...caseless(definitions, `${kind}.${r.name}`, fields.map((f) => [f.name, fieldSchema(f)])) }
  return {
    description: `${r.doc} A ${r.width}-bit word, or its fields by name (fields not named are 0).`,
    anyOf: [...(integer((1n << BigInt(r.width)) - 1n).anyOf as Schema[]), { type: 'object', ...byName }],
  }
}

/** A regular expression matching `name` in any case (JSON Schema patterns have no case flag). */
function anyCase(name: string): string {
  return `^${[...name].map((c) => (c.toLowerCase() !== c.toUpperCase() ? `[${c.toUpperCase()}${c.toLowerCase()}]` : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('')}$`
}

/** Each register's and field's schema, once; properties refer to them. */
type Definitions = Record<string, Schema>

/**
 * Names iommufs matches in any case: properties offer them for completion,
 * patterns accept any case; both refer to one definition under `prefix`.
 */
function caseless(definitions: Definitions, prefix: string, entries: [string, Schema][]): { properties: Schema; patternProperties: Schema } {
  const ref = (n: string): Schema => {
    definitions[`${prefix}.${n}`] = entries.find(([k]) => k === n)![1]
    return { $ref: `#/definitions/${prefix}.${n}` }
  }
  return { properties: Object.fromEntries(entries.map(([n]) => [n, ref(n)])), patternProperties: Object.fromEntries(entries.map(([n]) => [anyCase(n), ref(n)])) }
}

function registersSchema(definitions: Definitions, kind: IommuKind): Schema {
  const model = registerModel(kind)
  const names = [...model.registers.keys()]
  return {
    type: 'object',
    description: `The ${kind} identification registers, all required (names may be written in any case).`,
    additionalProperties: false,
    ...caseless(definitions, kind, names.map((n) => [n, registerSchema(definitions, kind, model.registers.get(n)!)])),
  }
}

const DEVICE: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['bdf'],
  properties: {
    bdf: { type: 'string', pattern: '^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\\.[0-7]$', description: 'PCI address dddd:bb:dd.f' },
    stream_id: { ...integer(0xffffffffn), description: 'SMMUv3 only: the StreamID (below 2^IDR1.SIDSIZE). VT-d devices are named by their requester ID.' },
    vendor: { ...integer(0xffffn), description: 'PCI vendor ID (default 0x1af4)' },
    device: { ...integer(0xffffn), description: 'PCI device ID (default 0x1041)' },
    group: { ...integer(0xffffn), description: 'IOMMU group number (default: the first free one); a group stays behind one IOMMU' },
    pasid: { ...integer(20n), description: "PCI PASID capability: Max PASID Width in bits, 0 = no PASID (default: the IOMMU's own width; at most IDR1.SSIDSIZE on SMMUv3, ECAP.PSS + 1 on VT-d)" },
    ats: { type: 'boolean', description: 'PCI ATS capability (default true): without it the driver never enables ATS for the function (no STE.EATS, no ATC_INV) and it sends no translation requests' },
  },
}

/** The schema, as an object ready for JSON.stringify. */
/** A unit kind's cache sizes: each name optional, 1..2^20 entries, as the topology loader reads them. */
function cacheSizes(defaults: object): Schema {
  const sizes = Object.entries(defaults as Record<string, number>).map(([k, v]) => [k, { type: 'integer', minimum: 1, maximum: 1 << 20, description: `default ${v}` }])
  return { type: 'object', additionalProperties: false, properties: Object.fromEntries(sizes) }
}

export function topologyJsonSchema(): Schema {
  const definitions: Definitions = {}
  const registers = Object.fromEntries(KINDS.map((k) => [k, registersSchema(definitions, k)]))
  return {
    $schema: 'https://json-schema.org/draft-07/schema#',
    $id: 'https://iommufs.invalid/topology.schema.json',
    title: 'iommufs topology',
    description: 'A machine for iommufs: its IOMMUs, their identification registers and the PCI devices behind them (docs/topology.md). Generated from sysfs-schema/registers by `iommufs topology schema`.',
    type: 'object',
    additionalProperties: false,
    required: ['iommus'],
    properties: {
      iommus: {
        type: 'array',
        minItems: 1,
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['kind'],
          properties: {
            kind: { enum: [...KINDS, 'mock'] },
            name: { type: 'string', description: "mock only: the selftest's mock IOMMU's name (it has no base, registers or devices)" },
            base: { ...integer((1n << 64n) - 1n), description: 'MMIO base address, 4 KiB aligned, unique' },
            registers: { type: 'object' },
            devices: { type: 'array', items: DEVICE },
            caches: { type: 'object', description: 'cache sizes in entries, each optional (docs/dma.md); the names depend on the kind' },
          },
          allOf: KINDS.map((k) => ({ if: { properties: { kind: { const: k } } }, then: { required: ['base', 'registers', 'devices'], properties: { registers: registers[k], caches: cacheSizes(k === 'arm-smmu-v3' ? DEFAULT_CACHE_SIZES : DEFAULT_VTD_CACHE_SIZES) } } })),
        },
      },
    },
    definitions,
  }
}
