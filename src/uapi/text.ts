import { parseCommand } from '../hw/smmuv3/commands'
import { InvalidateDataType } from '../iommufd/invalidate'
import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { IoctlReply, IoctlRequest, oversizedStruct } from './dispatch'
import { Ioctl, ioctlByName } from './ioctls'
import { FieldSpec, FieldValue, StructLayout, StructValue, decode, encode, scalarWidth } from './layout'
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

/** Repeatable keys giving invalidation entries symbolically: SMMUv3 commands and VT-d entries. */
const ENTRY_KEYS = { cmd: InvalidateDataType.ARM_SMMUV3, entry: InvalidateDataType.VTD_S1 } as const
/** Ring size a text ring request gets when it names none. */
const DEFAULT_RING_BITS = 4n

/** "addr=0x1000,npages=4,leaf" or "all" -> an iommu_hwpt_vtd_s1_invalidate. */
function vtdEntry(text: string): Buffer {
  const L = STRUCTS.get('iommu_hwpt_vtd_s1_invalidate')!
  if (text.trim().toLowerCase() === 'all') return encode(L, { addr: 0n, npages: (1n << 64n) - 1n })
  const v: StructValue = {}
  for (const tok of text.split(/[\s,]+/).filter(Boolean)) {
    const [k, val] = tok.includes('=') ? tok.split('=', 2) : [tok, '1']
    if (k.toLowerCase() === 'leaf') {
      v.flags = ((v.flags as bigint | undefined) ?? 0n) | 1n
      continue
    }
    const f = L.fields.find((x) => x.name === k)
    if (!f) bad(`entry ${k}`, 'not a field of iommu_hwpt_vtd_s1_invalidate (addr, npages, flags, __reserved) or "leaf"/"all"')
    v[k] = parseField(`entry ${k}`, val, f) as bigint
  }
  return encode(L, v)
}

/** Where text buffers pretend to live: one 16 MiB slot per pointer field. */
const BUFFER_BASE = 0x7f1000000000n
const BUFFER_STRIDE = 0x1000000n

export interface DeviceResolver {
  byPci(bdf: string): PciDevice | undefined
  byDevId(id: number): PciDevice | undefined
}

export interface ParsedText extends IoctlRequest {
  readonly ioctl: Ioctl
}

const textKeys = new WeakMap<FieldSpec, string>()

function textKey(f: FieldSpec): string {
  let k = textKeys.get(f)
  if (k === undefined) textKeys.set(f, (k = f.name.replace(/_(uptr|ptr)$/, '')))
  return k
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

function words(key: string, value: string, word32 = false): Buffer {
  const list = value.split(',').map((w) => parseNumber(key, w))
  const size = word32 ? 4 : 8
  const buf = Buffer.alloc(list.length * size)
  list.forEach((w, i) => {
    if (w < 0n || w >= 1n << BigInt(size * 8)) bad(key, `${w} does not fit u${size * 8}`)
    if (word32) buf.writeUInt32LE(Number(w), i * 4)
    else buf.writeBigUInt64LE(w, i * 8)
  })
  return buf
}

function vendorLayouts(f: FieldSpec): StructLayout[] {
  return Object.values(f.pointer?.vendor?.layouts ?? {}).map((n) => STRUCTS.get(n)!)
}

/** The fd number a text `path=` file stands for in the struct. */
const PATH_FD = -1

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
  const entries: { type: number; data: Buffer }[] = []
  const arrayPtr = pointers.find((p) => p.pointer!.vendor?.array)
  const files = new Map<number, string>()
  /** Bytes past the kernel's struct, as a program built against a newer header sends them. */
  let tail: Buffer | undefined

  for (const tok of tokens) {
    const eq = tok.indexOf('=')
    if (eq <= 0) bad(tok, 'expected key=value')
    const key = tok.slice(0, eq)
    const value = tok.slice(eq + 1)
    if (key === 'tail') {
      if (tail) bad(key, 'given twice')
      tail = words(key, value)
      continue
    }
    if (arrayPtr && (key === 'cmd' || key === 'entry')) {
      entries.push({ type: ENTRY_KEYS[key], data: key === 'cmd' ? encodeCommand(parseCommand(value)) : vtdEntry(value) })
      continue
    }
    if (given.has(key)) bad(key, 'given twice')
    given.add(key)
    if (key === 'path' && L.fields.some((x) => x.name === 'fd')) {
      // an extension for shells: the file by path instead of a descriptor number
      files.set(PATH_FD, value)
      continue
    }
    const f = L.fields.find((x) => x.name === key || x.alias === key)
    const ptr = pointers.find((p) => textKey(p) === key && p.pointer!.flow !== 'out')
    const anyPtr = pointers.find((p) => textKey(p) === key || p.name === key)
    if (anyPtr && value.startsWith('@')) {
      // a bare address with no data behind it: what a program passes when its pointer is bad
      values[anyPtr.name] = parseNumber(key, value.slice(1))
      given.add(anyPtr.name)
    } else if (ptr) {
      payload.set(ptr, words(key, value, ptr.pointer!.word32))
    } else if (f) {
      const other = key === f.name ? f.alias : f.name
      if (other && given.has(other)) bad(key, `${f.name} and ${f.alias} are one field`)
      given.add(f.name)
      values[f.name] = parseField(key, value, f)
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

  if (entries.length) placeEntries(arrayPtr!, entries, values, given, payload, pointers.find((x) => x.name === 'q_cons_uptr'))

  // lay the buffers out and fill in the counts they imply
  const buffers = new Map<bigint, Buffer>()
  pointers.forEach((p, i) => {
    const addr = BUFFER_BASE + BigInt(i) * BUFFER_STRIDE
    const data = payload.get(p)
    if (data) {
      values[p.name] = addr
      buffers.set(addr, data)
      const c = p.pointer!.count
      if (c && !given.has(c.field)) {
        if (data.length % c.unit) {
          const el = p.pointer!.element ? STRUCTS.get(p.pointer!.element)! : undefined
          bad(textKey(p), el ? `takes ${el.fields.map((f) => f.name).join(',')} pairs (whole ${el.name} entries)` : `takes whole ${c.unit}-byte elements`)
        }
        values[c.field] = BigInt(data.length / c.unit)
      }
    } else if (p.pointer!.flow === 'out' && !given.has(p.name)) {
      values[p.name] = addr
      const c = p.pointer!.count
      if (c?.textDefault !== undefined && !given.has(c.field)) values[c.field] = c.textDefault
    }
  })

  if (files.size) {
    if (given.has('fd')) bad('path', 'path= and fd= name the same file; give one')
    values.fd = BigInt(PATH_FD)
  }
  const full = encode(L, values)
  const size = Number(values[sizeField] as bigint)
  // a struct read whole (copy_struct_from_user) is bounded; other VFIO commands read their minimum and ignore argsz beyond it
  const tooBig = ioctl.zeroTail ? oversizedStruct(sizeField, size) : undefined
  if (tooBig) throw tooBig
  const struct = Buffer.alloc(ioctl.zeroTail ? size : Math.min(size, L.size))
  full.copy(struct, 0, 0, Math.min(size, full.length))
  if (tail) {
    if (size <= L.size) bad('tail', `bytes past the ${L.size}-byte ${L.name} need ${sizeField} > ${L.size}`)
    tail.copy(struct, L.size, 0, Math.min(tail.length, size - L.size))
  }
  return { ioctl, cmd: ioctl.cmd, struct, buffers, device, files }
}

/** Parsed iommufd text requests by line: the same line always gives the same struct and buffers. */
const parsedLines = new Map<string, ParsedText>()
const PARSED_LINES = 256
/** Longer lines (entry lists) are parsed every time rather than kept. */
const PARSED_LINE_LENGTH = 512

/** A request whose bytes the caller may change without touching `p`. */
function copyParsed(p: ParsedText): ParsedText {
  const buffers = new Map<bigint, Buffer>()
  for (const [a, b] of p.buffers) buffers.set(a, Buffer.from(b as Buffer))
  return { ioctl: p.ioctl, cmd: p.cmd, struct: Buffer.from(p.struct), buffers, device: p.device, files: p.files }
}

/**
 * parseText, remembering what iommufd lines parse to: a program repeats the
 * same few requests, and parsing is a fair share of a text transaction.
 * VFIO lines (which name devices the model binds) and path= lines are parsed each time.
 */
export function parseTextCached(line: string, devices: DeviceResolver): ParsedText {
  const hit = parsedLines.get(line)
  if (hit) return copyParsed(hit)
  const p = parseText(line, devices)
  if (line.length <= PARSED_LINE_LENGTH && p.ioctl.family === 'iommufd' && !p.files?.size && !p.device) {
    if (parsedLines.size >= PARSED_LINES) parsedLines.delete(parsedLines.keys().next().value as string)
    parsedLines.set(line, copyParsed(p))
  }
  return p
}

function encodeCommand(c: readonly [bigint, bigint]): Buffer {
  const b = Buffer.alloc(16)
  b.writeBigUInt64LE(c[0], 0)
  b.writeBigUInt64LE(c[1], 8)
  return b
}

/**
 * Symbolic entries become the entry array: for HWPT_INVALIDATE in order
 * (entry_len, entry_num and data_type follow unless given); for the ring form
 * into the slots from CONS on, with PROD after the last one.
 */
function placeEntries(p: FieldSpec, entries: { type: number; data: Buffer }[], values: StructValue, given: Set<string>, payload: Map<FieldSpec, Buffer>, consPtr?: FieldSpec): void {
  const type = entries[0].type
  if (entries.some((e) => e.type !== type)) bad('cmd/entry', 'SMMUv3 commands (cmd=) and VT-d entries (entry=) do not mix')
  if (given.has('data_type') && Number(values.data_type as bigint) !== type) bad('data_type', `disagrees with the ${type === 1 ? 'cmd=' : 'entry='} entries`)
  values.data_type = BigInt(type)
  const natural = entries[0].data.length
  if (p.name === 'data_uptr') {
    const len = given.has('entry_len') ? Number(values.entry_len as bigint) : natural
    if (!given.has('entry_len')) values.entry_len = BigInt(len)
    if (!given.has('entry_num')) values.entry_num = BigInt(entries.length)
    // entries above the buffer limit are not built (entry_len=0x987a4322 made a 5 GB buffer): the dispatcher refuses the size (ENOMEM)
    if (len * entries.length > LIMITS.userBuffer.max) return
    payload.set(p, Buffer.concat(entries.map((e) => { const b = Buffer.alloc(len); e.data.copy(b, 0, 0, Math.min(len, e.data.length)); return b })))
    return
  }
  const bitsN = given.has('q_index_bits') ? (values.q_index_bits as bigint) : DEFAULT_RING_BITS
  values.q_index_bits = bitsN
  // index bits outside 1..31 get no implied entry count: the handler refuses them (EINVAL)
  const implied = bitsN >= 1n && bitsN <= 31n ? 2 ** Number(bitsN) : 0
  const slots = given.has('q_entry_num') ? Number(values.q_entry_num as bigint) : implied
  values.q_entry_num = BigInt(slots)
  const len = given.has('q_entry_len') ? Number(values.q_entry_len as bigint) : natural
  values.q_entry_len = BigInt(len)
  const size = 2 ** Number(bitsN)
  // the entries are placed from CONS; without q_cons= that is 0, and a CONS word of 0 is sent
  if (consPtr && !payload.has(consPtr)) payload.set(consPtr, Buffer.alloc(4))
  const consBuf = consPtr && payload.get(consPtr)
  let pos = consBuf ? consBuf.readUInt32LE(0) & (size * 2 - 1) : 0
  // a queue above the dispatcher's buffer limit is not built: the request is refused (ENOMEM) before it is read
  if (slots * len > LIMITS.userBuffer.max) return
  const ring = Buffer.alloc(Math.max(slots, 0) * len)
  for (const e of entries) {
    const at = (pos % size) * len
    if (at + len <= ring.length) e.data.copy(ring, at, 0, Math.min(len, e.data.length))
    pos = (pos + 1) % (size * 2)
  }
  if (!given.has('q_prod')) values.q_prod = BigInt(pos)
  payload.set(p, ring)
}

function showOne(f: FieldSpec, x: bigint): string {
  return f.show === 'hex' ? `0x${x.toString(16)}` : x.toString(10)
}

function show(f: FieldSpec, v: bigint | bigint[]): string {
  return Array.isArray(v) ? v.map((x) => showOne(f, x)).join(',') : showOne(f, v)
}

/** Each byte's two hex digits, and with no leading zero (a number's toString(16) costs about 150 ns). */
const BYTE_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
const LEAD_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16))

/** `0x` and the hex digits of the little-endian field of `width` bytes at `at`, a byte at a time from the top. */
function hexAt(data: Buffer, at: number, width: number): string {
  let i = at + width - 1
  while (i > at && data[i] === 0) i--
  let s = `0x${LEAD_HEX[data[i]]}`
  while (i > at) s += BYTE_HEX[data[--i]]
  return s
}

/** Each layout's plain fields the kernel writes back, and its pointers it writes through, in order (computed once per layout). */
const outFields = new WeakMap<StructLayout, { plain: FieldSpec[]; pointers: FieldSpec[] }>()

function outFieldsOf(L: StructLayout): { plain: FieldSpec[]; pointers: FieldSpec[] } {
  let fs = outFields.get(L)
  if (!fs) {
    fs = { plain: L.fields.filter((f) => (f.dir === 'out' || f.dir === 'inout') && !f.pointer), pointers: L.fields.filter((f) => f.pointer && f.pointer.flow !== 'in') }
    outFields.set(L, fs)
  }
  return fs
}

/** A field's value in a reply: what the kernel wrote back, else what the caller sent. */
type Value = (name: string) => FieldValue | undefined

/** `name=value` of each plain field the kernel writes back, onto `into`. */
function fieldsOf(L: StructLayout, value: Value, into: string[]): void {
  for (const f of outFieldsOf(L).plain) into.push(`${f.name}=${show(f, value(f.name)!)}`)
}

/** What a reply says beyond the struct: the out buffers, decoded, onto `into`. */
function outBuffers(reply: IoctlReply, value: Value, into: string[]): void {
  for (const p of outFieldsOf(reply.ioctl!.layout).pointers) {
    const data = reply.written.get(value(p.name) as bigint)
    if (!data) continue
    const v = p.pointer!.vendor
    if (p.pointer!.element) {
      const el = STRUCTS.get(p.pointer!.element)!
      const n = Math.min(data.length / el.size, Number((value('num_iovas') as bigint | undefined) ?? 0n))
      const ws: string[] = []
      // fields read at their offsets (the generic decode per element is slow for a thousand ranges)
      for (let i = 0; i < n; i++) for (const f of el.fields) ws.push(hexAt(data, i * el.size + f.offset, scalarWidth(f.type)))
      into.push(`${p.name}=${ws.join(',')}`)
    } else if (v) {
      const vl = STRUCTS.get(v.layouts[Number(value(v.typeField) as bigint)] ?? '')
      if (vl && data.length >= vl.size) {
        const d = decode(vl, data)
        fieldsOf(vl, (n) => d[n], into)
      }
    } else if (p.pointer!.word32) {
      const ws = Array.from({ length: data.length / 4 }, (_, i) => `0x${data.readUInt32LE(i * 4).toString(16)}`)
      into.push(`${textKey(p)}=${ws.join(',')}`)
    } else {
      const ws = Array.from({ length: data.length / 8 }, (_, i) => `0x${data.readBigUInt64LE(i * 8).toString(16)}`)
      into.push(`${textKey(p)}=${ws.join(',')}`)
    }
  }
}

/** One reply line (without newline). */
export function formatReply(reply: IoctlReply): string {
  // every text request ends here: fields are looked up in what was written back, then in the request, with no merged copy
  const req = reply.req
  const out = reply.out
  const value: Value = (n) => out?.[n] ?? req?.[n]
  if (reply.errno) {
    const wrote = out && reply.ioctl ? Object.keys(out).map((k) => `${k}=${show(reply.ioctl!.layout.field(k), out[k])}`) : []
    if (req && reply.ioctl) outBuffers(reply, value, wrote)
    return `err ${reply.errno} ${reply.message}${wrote.length ? ` (written back: ${wrote.join(' ')})` : ''}`
  }
  const words = ['ok']
  fieldsOf(reply.ioctl!.layout, value, words)
  outBuffers(reply, value, words)
  // a queue's descriptor is its file: the reply names it, for cat and read
  for (const f of reply.newFds ?? []) if (f.path) words.push(`path=${f.path}`)
  return words.join(' ')
}

/** u64 (or u32) words of a buffer, as a text request gives them; a u64 buffer's odd tail is zero-padded. */
function wordList(data: Buffer, word32: boolean): string {
  const size = word32 ? 4 : 8
  const padded = data.length % size ? Buffer.concat([data, Buffer.alloc(size - (data.length % size))]) : data
  return Array.from({ length: padded.length / size }, (_, i) => `0x${(word32 ? BigInt(padded.readUInt32LE(i * 4)) : padded.readBigUInt64LE(i * 8)).toString(16)}`).join(',')
}

/**
 * The text request that carries the same struct and buffers as a binary
 * request (the inverse of parseText, for recordings): every nonzero field by
 * name, a size that differs from the struct's (with any nonzero bytes past
 * the struct as tail=), each input buffer as words, a
 * pointer with no data (or one the caller could not read) as its address, and
 * `pci=` for a VFIO command addressed to another node. `fds` turns a caller's
 * iommufd descriptor (VFIO_DEVICE_BIND_IOMMUFD's iommufd) into its context ID.
 */
export function formatRequest(ioctl: Ioctl, r: IoctlRequest, fds?: ReadonlyMap<number, number>): string {
  const L = ioctl.layout
  const full = Buffer.alloc(L.size)
  r.struct.copy(full, 0, 0, Math.min(r.struct.length, L.size))
  const v = decode(L, full)
  const size = r.struct.length >= 4 ? r.struct.readUInt32LE(0) : 0
  const out: string[] = [ioctl.short]
  // an output buffer's count is always said: a text request without it gets a default
  const counts = new Set(L.fields.filter((f) => f.pointer?.flow === 'out' && f.pointer.count?.textDefault !== undefined).map((f) => f.pointer!.count!.field))
  if (r.device && ioctl.family === 'vfio') out.push(`pci=${r.device.bdf}`)
  for (const f of L.fields) {
    const val = v[f.name]
    if (f === L.fields[0]) {
      if (size !== L.size) out.push(`${f.name}=${size}`)
      const tail = r.struct.subarray(L.size, Math.max(L.size, Math.min(size, r.struct.length)))
      if (tail.some((x) => x !== 0)) out.push(`tail=${wordList(tail, false)}`)
      continue
    }
    if (f.pointer) {
      const addr = val as bigint
      const data = r.buffers.get(addr)
      if (f.pointer.flow === 'out' ? addr !== 0n : addr === 0n) continue
      if (data instanceof Buffer && f.pointer.flow !== 'out') out.push(`${textKey(f)}=${wordList(data, f.pointer.word32 === true)}`)
      else out.push(`${textKey(f)}=@0x${addr.toString(16)}`)
      continue
    }
    if (f.name === 'iommufd' && fds) {
      const ctx = fds.get(Number(BigInt.asIntN(32, val as bigint)))
      if (ctx !== undefined) {
        out.push(`iommufd=${ctx}`)
        continue
      }
    }
    const zero = Array.isArray(val) ? val.every((x) => x === 0n) : val === 0n
    if (!zero || counts.has(f.name)) out.push(`${f.name}=${show(f, f.type === 's32' && !Array.isArray(val) ? BigInt.asIntN(32, val) : val)}`)
  }
  return out.join(' ')
}
