import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { IoctlReply, IoctlRequest } from './dispatch'
import { Ioctl, ioctlByName } from './ioctls'
import { FieldSpec, StructLayout, StructValue, decode, encode, scalarWidth } from './layout'
import { NAMES, lookupName } from './names'
import { STRUCTS } from './structs'

/**
 * The text encoding of ioctls, for shells:
 *   request := NAME { SP key=value }        reply := "ok" { SP key=value } | "err" SP ERRNO SP message
 * Keys are uAPI field names. A user pointer's buffer is given by the pointer's
 * name without _uptr/_ptr (allowed_iovas=..., data=...) as comma-separated
 * 0x words (u64, little endian), or for driver data field by field
 * (data.ste=w0,w1; data.pgtbl_addr=...; unprefixed where the command has no
 * field of that name). Each request becomes the exact struct bytes and
 * buffers a program would pass, and goes through the same dispatcher.
 */

/** Where text buffers pretend to live: one 16 MiB slot per pointer field. */
const BUFFER_BASE = 0x7f1000000000n
const BUFFER_STRIDE = 0x1000000n
/** Capacities a text request gets for output buffers when it names none. */
const DEFAULT_RANGES = 16n
const DEFAULT_HW_INFO_LEN = 64n

export interface DeviceResolver {
  byPci(bdf: string): PciDevice | undefined
  byDevId(id: number): PciDevice | undefined
}

export interface ParsedText extends IoctlRequest {
  readonly ioctl: Ioctl
}

function textKey(f: FieldSpec): string {
  return f.name.replace(/_(uptr|ptr)$/, '')
}

function bad(key: string, why: string): never {
  throw new ErrnoError('EINVAL', `${key}: ${why}`)
}

function parseNumber(key: string, token: string, f?: FieldSpec): bigint {
  if (/^-?[0-9]+$/.test(token)) return BigInt(token)
  if (/^0x[0-9a-f]+$/i.test(token)) return BigInt(token)
  const set = f?.names ? NAMES[f.names] : undefined
  if (set) {
    let v = 0n
    for (const part of token.split('|')) {
      const one = /^(0x[0-9a-f]+|[0-9]+)$/i.test(part) ? BigInt(part) : lookupName(set, part)
      if (one === undefined) bad(key, `"${part}" is not one of ${Object.keys(set.values).join(', ')}`)
      if (set.kind === 'enum' && token.includes('|')) bad(key, 'an enum takes one value')
      v |= one
    }
    return v
  }
  return bad(key, `"${token}" is not a number (decimal or 0x hex)`)
}

function checkRange(key: string, v: bigint, f: FieldSpec): bigint {
  const bitsN = BigInt(scalarWidth(f.type) * 8)
  const ok = f.type === 's32' ? v >= -(1n << 31n) && v < 1n << 31n : v >= 0n && v < 1n << bitsN
  if (!ok) bad(key, `${v} does not fit ${f.type}`)
  return v
}

function parseField(key: string, value: string, f: FieldSpec): bigint | bigint[] {
  const parts = value.split(',')
  if (f.count === 1) {
    if (parts.length !== 1) bad(key, 'takes one value')
    return checkRange(key, parseNumber(key, value, f), f)
  }
  if (parts.length > f.count) bad(key, `takes at most ${f.count} values`)
  const vals = parts.map((p) => checkRange(key, parseNumber(key, p, f), f))
  return [...vals, ...Array<bigint>(f.count - vals.length).fill(0n)]
}

function words(key: string, value: string): Buffer {
  const list = value.split(',').map((w) => parseNumber(key, w))
  const buf = Buffer.alloc(list.length * 8)
  list.forEach((w, i) => {
    if (w < 0n || w >= 1n << 64n) bad(key, `${w} does not fit u64`)
    buf.writeBigUInt64LE(w, i * 8)
  })
  return buf
}

function vendorLayouts(f: FieldSpec): StructLayout[] {
  return Object.values(f.pointer?.vendor?.layouts ?? {}).map((n) => STRUCTS.get(n)!)
}

/** Parses one request line into the struct bytes and buffers of the ioctl it names. */
export function parseText(line: string, devices: DeviceResolver): ParsedText {
  const [name, ...tokens] = line.trim().split(/\s+/)
  const ioctl = ioctlByName(name)
  if (!ioctl) throw new ErrnoError('ENOTTY', `"${name}": unknown command`)
  const L = ioctl.layout
  const sizeField = L.fields[0].name
  const values: StructValue = { [sizeField]: BigInt(L.size) }
  const given = new Set<string>()
  const payload = new Map<FieldSpec, Buffer>()
  const vendorFields = new Map<FieldSpec, Map<string, string>>()
  let device: PciDevice | undefined
  const pointers = L.fields.filter((f) => f.pointer)

  for (const tok of tokens) {
    const eq = tok.indexOf('=')
    if (eq <= 0) bad(tok, 'expected key=value')
    const key = tok.slice(0, eq)
    const value = tok.slice(eq + 1)
    if (given.has(key)) bad(key, 'given twice')
    given.add(key)
    const f = L.fields.find((x) => x.name === key)
    const ptr = pointers.find((p) => textKey(p) === key && p.pointer!.flow !== 'out')
    if (ptr) {
      payload.set(ptr, words(key, value))
    } else if (f) {
      values[key] = parseField(key, value, f)
    } else if (ioctl.family === 'vfio' && (key === 'pci' || key === 'dev_id')) {
      device = key === 'pci' ? devices.byPci(value.toLowerCase()) : devices.byDevId(Number(parseNumber(key, value)))
      if (!device) throw new ErrnoError(key === 'pci' ? 'ENODEV' : 'ENOENT', `${key}=${value}: no such ${key === 'pci' ? 'PCI device' : 'bound device'}`)
    } else {
      const sub = key.startsWith('data.') ? key.slice(5) : key
      const owner = pointers.find((p) => vendorLayouts(p).some((vl) => vl.fields.some((vf) => vf.name === sub)))
      if (!owner) bad(key, `not a field of ${ioctl.name} (fields: ${L.fields.map((x) => (x.pointer ? textKey(x) : x.name)).join(', ')})`)
      if (!vendorFields.has(owner)) vendorFields.set(owner, new Map())
      vendorFields.get(owner)!.set(sub, value)
    }
  }

  // driver data given field by field: pick the struct by data_type (or by which struct has the fields)
  for (const [p, fields] of vendorFields) {
    const v = p.pointer!.vendor!
    const typeField = L.field(v.typeField)
    let type = given.has(v.typeField) ? Number(values[v.typeField] as bigint) : undefined
    if (type === undefined) {
      const match = Object.entries(v.layouts).filter(([, ln]) => [...fields.keys()].every((k) => STRUCTS.get(ln)!.fields.some((vf) => vf.name === k)))
      if (match.length !== 1) bad(typeField.name, `needed to tell which driver struct ${[...fields.keys()].join(', ')} belong to`)
      type = Number(match[0][0])
      values[v.typeField] = BigInt(type)
    }
    const vl = STRUCTS.get(v.layouts[type] ?? '')
    if (!vl) bad(typeField.name, `${type} has no driver struct here`)
    const sv: StructValue = {}
    for (const [k, val] of fields) {
      const vf = vl.fields.find((x) => x.name === k)
      if (!vf) bad(`data.${k}`, `not a field of ${vl.name}`)
      sv[k] = parseField(`data.${k}`, val, vf)
    }
    if (payload.has(p)) bad(textKey(p), 'given both as words and field by field')
    payload.set(p, encode(vl, sv))
  }

  // lay the buffers out and fill in the counts they imply
  const buffers = new Map<bigint, Buffer>()
  pointers.forEach((p, i) => {
    const addr = BUFFER_BASE + BigInt(i) * BUFFER_STRIDE
    const data = payload.get(p)
    if (data) {
      values[p.name] = addr
      buffers.set(addr, data)
      if (p.name === 'allowed_iovas' && !given.has('num_iovas')) {
        if (data.length % 16) bad('allowed_iovas', 'takes start,last pairs')
        values.num_iovas = BigInt(data.length / 16)
      }
      if (p.name === 'data_uptr' && L.fields.some((x) => x.name === 'data_len') && !given.has('data_len')) values.data_len = BigInt(data.length)
    } else if (p.pointer!.flow === 'out' && !given.has(p.name)) {
      values[p.name] = addr
      if (p.name === 'allowed_iovas' && !given.has('num_iovas')) values.num_iovas = DEFAULT_RANGES
      if (ioctl.short === 'GET_HW_INFO' && !given.has('data_len')) values.data_len = DEFAULT_HW_INFO_LEN
    }
  })

  const full = encode(L, values)
  const size = Number(values[sizeField] as bigint)
  const struct = Buffer.alloc(size)
  full.copy(struct, 0, 0, Math.min(size, full.length))
  return { ioctl, cmd: ioctl.cmd, struct, buffers, device }
}

function show(f: FieldSpec, v: bigint | bigint[]): string {
  const one = (x: bigint): string => (f.show === 'hex' ? `0x${x.toString(16)}` : x.toString(10))
  return Array.isArray(v) ? v.map(one).join(',') : one(v)
}

function fieldsOf(L: StructLayout, s: StructValue, dirs: string[]): string[] {
  return L.fields.filter((f) => dirs.includes(f.dir) && !f.pointer && f.dir !== 'reserved').map((f) => `${f.name}=${show(f, s[f.name])}`)
}

/** What a reply says beyond the struct: the out buffers, decoded. */
function outBuffers(reply: IoctlReply, full: StructValue): string[] {
  const L = reply.ioctl!.layout
  const out: string[] = []
  for (const p of L.fields.filter((f) => f.pointer && f.pointer.flow !== 'in')) {
    const data = reply.written.get(full[p.name] as bigint)
    if (!data) continue
    const v = p.pointer!.vendor
    if (p.pointer!.element) {
      const el = STRUCTS.get(p.pointer!.element)!
      const n = Math.min(data.length / el.size, Number(full.num_iovas ?? 0n))
      const ws: string[] = []
      for (let i = 0; i < n; i++) for (const w of Object.values(decode(el, data.subarray(i * el.size, (i + 1) * el.size)))) ws.push(`0x${(w as bigint).toString(16)}`)
      out.push(`${p.name}=${ws.join(',')}`)
    } else if (v) {
      const vl = STRUCTS.get(v.layouts[Number(full[v.typeField] as bigint)] ?? '')
      if (vl && data.length >= vl.size) out.push(...fieldsOf(vl, decode(vl, data), ['out', 'inout']))
    } else {
      const ws = Array.from({ length: data.length / 8 }, (_, i) => `0x${data.readBigUInt64LE(i * 8).toString(16)}`)
      out.push(`${textKey(p)}=${ws.join(',')}`)
    }
  }
  return out
}

/** One reply line (without newline). */
export function formatReply(reply: IoctlReply): string {
  if (reply.errno) {
    const wrote = reply.out && reply.ioctl ? Object.keys(reply.out).map((k) => `${k}=${show(reply.ioctl!.layout.field(k), reply.out![k])}`) : []
    return `err ${reply.errno} ${reply.message}${wrote.length ? ` (written back: ${wrote.join(' ')})` : ''}`
  }
  const L = reply.ioctl!.layout
  const full = { ...reply.req!, ...reply.out! }
  return ['ok', ...fieldsOf(L, full, ['out', 'inout']), ...outBuffers(reply, full)].join(' ')
}
