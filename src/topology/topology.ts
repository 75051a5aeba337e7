import { DataError, DataNode } from '../util/data-file'
import { Machine } from '../hw/machine'
import { RegisterDef, RegisterFile, depositField, registerModel } from '../hw/registers'
import { DEFAULT_CACHE_SIZES } from '../hw/smmuv3/caches'
import { DEFAULT_VTD_CACHE_SIZES } from '../hw/vtd/caches'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { IommuGroup, IommuKind, IommuUnit, PciDevice } from '../hw/unit'
import { Vtd } from '../hw/vtd/vtd'
import { MockIommu } from '../hw/mock/mock'

const KINDS: readonly IommuKind[] = ['arm-smmu-v3', 'intel-vtd', 'mock']
const BDF = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/
/** Shown in a device's vendor/device files when the topology names none (a virtio network function). */
export const DEFAULT_PCI_ID = { vendor: 0x1af4, device: 0x1041 }

/** Names matched without regard to case (a topology may write idr0 or IDR0). */
function byUpper<T>(names: Iterable<[string, T]>): Map<string, T> {
  return new Map([...names].map(([k, v]) => [k.toUpperCase(), v]))
}

/** A register given field by field: each field named in the schema, each value a number or one of the field's value names. */
function fieldsWord(node: DataNode, def: RegisterDef, kind: IommuKind): bigint {
  const fields = byUpper(def.fields)
  let word = 0n
  for (const [name, value] of node.entries()) {
    const f = fields.get(name.toUpperCase())
    if (!f) throw new DataError(node.file, value.key, `a field of ${kind} ${def.name} (${[...def.fields.keys()].join(', ')})`, `"${name}"`)
    const width = BigInt(f.hi - f.lo + 1)
    let v: bigint
    if (typeof value.value === 'string' && !/^(0x[0-9a-f]+|[0-9]+)$/i.test(value.value)) {
      const named = [...f.values].find(([, n]) => n.toLowerCase() === String(value.value).toLowerCase())
      if (!named) return value.fail(f.values.size ? `a value of ${def.name}.${f.name}: a number or one of ${[...f.values.values()].map((n) => JSON.stringify(n)).join(', ')}` : `an integer (${def.name}.${f.name} has no value names)`)
      v = named[0]
    } else v = value.int(0n, (1n << width) - 1n)
    word = depositField(word, f, v)
  }
  return word
}

/**
 * The register words of one IOMMU: each register (any case) as a whole word,
 * or as a mapping of its fields (fields not named are 0).
 */
function loadRegisters(node: DataNode, kind: IommuKind): RegisterFile {
  const model = registerModel(kind)
  const regs = byUpper(model.registers)
  const words = new Map<string, bigint>()
  for (const [name, value] of node.entries()) {
    const def = regs.get(name.toUpperCase())
    if (!def) {
      throw new DataError(node.file, value.key, `a register of ${kind} (${[...model.registers.keys()].join(', ')})`, `"${name}"`)
    }
    if (words.has(def.name)) value.fail(`${def.name} given once (register names ignore case)`)
    words.set(def.name, value.isMapping() ? fieldsWord(value, def, kind) : value.int(0n, (1n << BigInt(def.width)) - 1n))
  }
  for (const name of model.registers.keys()) {
    if (!words.has(name)) node.get(name) // throws: names the missing register
  }
  return new RegisterFile(model, words)
}

/**
 * A unit's cache sizes (entries), each optional, 1..2^20: an SMMU's
 * `caches: { tlb: 4096, ste: 64, cd: 64, atc: 32, walk: 128 }`, a VT-d unit's
 * `caches: { iotlb: 4096, pasid: 64, context: 64, devtlb: 32, pde: 128 }`.
 */
function loadCacheSizes<T extends object>(spec: DataNode, defaults: T): T {
  if (!spec.has('caches')) return defaults
  const keys = Object.keys(defaults) as (keyof T & string)[]
  const node = spec.get('caches').only(keys)
  const out = { ...defaults }
  for (const k of keys) if (node.has(k)) (out as Record<string, number>)[k] = Number(node.get(k).int(1n, 1n << 20n))
  return out
}

/** bus << 8 | device << 3 | function: the PCI requester ID VT-d sees. */
function requesterId(bdf: string): number {
  const m = BDF.exec(bdf)!
  return (parseInt(m[2], 16) << 8) | (parseInt(m[3], 16) << 3) | parseInt(m[4], 16)
}

/**
 * Reads and validates a topology file and builds the machine it describes.
 * Any mistake throws a DataError naming the file, the key and what was expected.
 */
export function loadTopology(file: string): Machine {
  const root = DataNode.load(file).only(['iommus'])
  const units: IommuUnit[] = []
  const groups = new Map<number, IommuGroup>()
  const seenBdf = new Map<string, string>()
  const seenBase = new Map<bigint, string>()
  let vfioIndex = 0
  let vtdIndex = 0
  const iommus = root.get('iommus').list()
  if (iommus.length === 0) root.get('iommus').fail('at least one IOMMU')
  let mock: MockIommu | undefined

  for (const spec of iommus) {
    const kindNode = spec.get('kind')
    const kind = kindNode.str() as IommuKind
    if (!KINDS.includes(kind)) kindNode.fail(`one of ${KINDS.join(', ')}`)
    if (kind === 'mock') {
      // the selftest's mock IOMMU: a name at most; its devices come from IOMMU_TEST_CMD
      spec.only(['kind', 'name'])
      if (mock) kindNode.fail(`at most one mock IOMMU (${mock.name} is one)`)
      mock = new MockIommu(spec.has('name') ? spec.get('name').str() : undefined)
      continue
    }
    spec.only(['kind', 'base', 'registers', 'devices', 'caches'])
    const baseNode = spec.get('base')
    const base = baseNode.int(0n, (1n << 64n) - 1n)
    if (base % 0x1000n !== 0n) baseNode.fail('a 4 KiB aligned address')
    const other = seenBase.get(base)
    if (other) baseNode.fail(`an address not used by ${other}`)
    seenBase.set(base, spec.key)
    const regs = loadRegisters(spec.get('registers'), kind)
    const unit: IommuUnit = kind === 'arm-smmu-v3' ? new Smmuv3(base, regs, loadCacheSizes(spec, DEFAULT_CACHE_SIZES)) : new Vtd(vtdIndex++, base, regs, loadCacheSizes(spec, DEFAULT_VTD_CACHE_SIZES))
    const seenSid = new Map<number, string>()

    for (const dev of spec.get('devices').list()) {
      dev.only(['bdf', 'stream_id', 'vendor', 'device', 'group', 'pasid', 'ats'])
      const bdfNode = dev.get('bdf')
      const bdf = bdfNode.str().toLowerCase()
      if (!BDF.test(bdf)) bdfNode.fail('a PCI address "dddd:bb:dd.f"')
      const dup = seenBdf.get(bdf)
      if (dup) bdfNode.fail(`a PCI address not already used by ${dup}`)
      seenBdf.set(bdf, dev.key)

      let streamId: number
      if (kind === 'arm-smmu-v3') {
        const sidBits = Number(regs.field('IDR1.SIDSIZE'))
        const sidNode = dev.get('stream_id')
        streamId = Number(sidNode.int(0n, (1n << BigInt(sidBits)) - 1n))
        const clash = seenSid.get(streamId)
        if (clash) sidNode.fail(`a StreamID not already used by ${clash}`)
        seenSid.set(streamId, dev.key)
      } else {
        if (dev.has('stream_id')) dev.get('stream_id').fail('no stream_id (VT-d devices are named by their PCI requester ID)')
        streamId = requesterId(bdf)
      }

      const groupId = dev.has('group') ? dev.get('group').num(0, 0xffff) : firstFreeGroup(groups)
      let group = groups.get(groupId)
      if (!group) {
        group = { id: groupId, devices: [], type: 'DMA' }
        groups.set(groupId, group)
      } else if (group.devices[0].unit !== unit) {
        dev.get('group').fail(`a group whose devices are behind ${unit.name} (group ${groupId} is behind ${group.devices[0].unit.name})`)
      }
      const device: PciDevice = {
        bdf,
        vendor: dev.has('vendor') ? dev.get('vendor').num(0, 0xffff) : DEFAULT_PCI_ID.vendor,
        device: dev.has('device') ? dev.get('device').num(0, 0xffff) : DEFAULT_PCI_ID.device,
        unit,
        streamId,
        group,
        vfioIndex: vfioIndex++,
        pasidBits: pasidWidth(dev, unit),
        // the PCI ATS capability; without the key the function has one, and the unit decides (IDR0.ATS, ECAP.DT)
        ats: dev.has('ats') ? dev.get('ats').bool() : true,
      }
      group.devices.push(device)
      unit.devices.push(device)
    }
    units.push(unit)
  }
  return new Machine(units, [...groups.values()].sort((a, b) => a.id - b.id), mock)
}

/**
 * The device's PASID capability (Max PASID Width, 0 = none): at most what
 * the unit takes (SMMUv3 IDR1.SSIDSIZE, VT-d ECAP.PSS + 1 with ECAP.PASID);
 * without the key, the unit's width.
 */
function pasidWidth(dev: DataNode, unit: IommuUnit): number {
  const r = unit.registers
  const [limit, why] =
    unit instanceof Smmuv3
      ? [Number(r.field('IDR1.SSIDSIZE')), `IDR1.SSIDSIZE=${r.field('IDR1.SSIDSIZE')}`]
      : r.flag('ECAP.PASID')
        ? [Number(r.field('ECAP.PSS')) + 1, `ECAP.PSS=${r.field('ECAP.PSS')}, plus one`]
        : [0, 'ECAP.PASID=0']
  if (!dev.has('pasid')) return limit
  const node = dev.get('pasid')
  const v = Number(node.int(0n, 20n))
  if (v > limit) node.fail(`PASID bits at most ${limit}, what ${unit.name} takes (${why})`)
  return v
}

function firstFreeGroup(groups: Map<number, IommuGroup>): number {
  let id = 0
  while (groups.has(id)) id++
  return id
}

/** A human summary of a machine, as `iommufs topology check` prints it. */
export function describeMachine(m: Machine): string {
  const lines = [`${m.units.length} IOMMUs, ${m.devices.length} devices, ${m.groups.length} IOMMU groups`]
  for (const u of m.units) {
    const r = u.registers
    const features =
      u instanceof Smmuv3
        ? [r.flag('IDR0.S1P') && 'stage1', r.flag('IDR0.S2P') && 'stage2', u.supportsNesting && 'nesting', r.flag('IDR0.ATS') && 'ats']
        : u instanceof Vtd
          ? [r.flag('ECAP.SMTS') && 'scalable-mode', u.supportsNesting && 'nesting', r.flag('ECAP.PASID') && 'pasid', r.flag('ECAP.DT') && 'ats']
          : []
    lines.push(`${u.name}  ${u.kind}  base 0x${u.base.toString(16)}  ${features.filter(Boolean).join(' ')}  ${u.devices.length} devices`)
    for (const d of u.devices) {
      const id = u.kind === 'arm-smmu-v3' ? `StreamID 0x${d.streamId.toString(16)}` : `RID 0x${d.streamId.toString(16).padStart(4, '0')}`
      lines.push(`  ${d.bdf}  ${id}  group ${d.group.id}  vfio${d.vfioIndex}  [${hex4(d.vendor)}:${hex4(d.device)}]`)
    }
  }
  return lines.join('\n') + '\n'
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, '0')
}
