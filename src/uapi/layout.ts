/**
 * Struct layouts as C lays them out on x86-64/arm64: each field at its natural
 * alignment, the size rounded to the largest alignment. A layout is declared
 * once, by field list, and every codec works from it.
 */
export type Scalar = 'u8' | 'u16' | 'u32' | 's32' | 'u64'

const WIDTH: Record<Scalar, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 }

/** in: userspace sets it; out: the kernel writes it; inout: both; reserved: must be 0. */
export type Dir = 'in' | 'out' | 'inout' | 'reserved'

/** How a value is printed in a text reply. */
export type Show = 'dec' | 'hex'

/** A user pointer field: where its buffer's length comes from and which way the data flows. */
export interface PointerSpec {
  /** Bytes the buffer spans, computed from the decoded struct. */
  readonly length: (s: StructValue) => bigint
  /** When the length is a count field times an element size: which field, the size, and the count a text request gets when it gives none. */
  readonly count?: { readonly field: string; readonly unit: number; readonly textDefault?: bigint }
  readonly flow: 'in' | 'out' | 'inout'
  /** Text words of this buffer are u32 instead of u64. */
  readonly word32?: boolean
  /** Layout of one element, for text encoding of arrays of structs. */
  readonly element?: string
  /** A driver struct chosen by a type field: struct name by type value. */
  readonly vendor?: { readonly typeField: string; readonly layouts: Readonly<Record<number, string>>; readonly array?: boolean }
}

export interface FieldSpec {
  readonly name: string
  readonly type: Scalar
  /** > 1 for arrays such as idr[6]. */
  readonly count: number
  readonly offset: number
  readonly dir: Dir
  readonly show: Show
  /** Name of the enum or flag set whose names the text codec accepts. */
  readonly names?: string
  readonly pointer?: PointerSpec
  /** Another name the field goes by in a union (in_data_type for out_data_type). */
  readonly alias?: string
  /** The field is a C union of these structs (by member name); the words are its raw bytes. */
  readonly union?: Readonly<Record<string, StructLayout>>
}

export interface StructLayout {
  readonly name: string
  readonly size: number
  readonly fields: readonly FieldSpec[]
  field(name: string): FieldSpec
  /** offsetofend(field): the first byte after it. */
  endOf(name: string): number
}

/**
 * Whether the kernel ever copies the struct back: some field is out or in/out.
 * One with none (IOMMU_DESTROY's) is only read, so it may lie in read-only memory.
 */
export function writtenBack(layout: StructLayout): boolean {
  return layout.fields.some((f) => f.dir === 'out' || f.dir === 'inout')
}

export type FieldValue = bigint | bigint[]
export type StructValue = Record<string, FieldValue>

export interface FieldDecl {
  type: Scalar
  count?: number
  dir?: Dir
  show?: Show
  names?: string
  pointer?: PointerSpec
  alias?: string
  union?: Readonly<Record<string, StructLayout>>
}

export function struct(name: string, decls: [string, FieldDecl][]): StructLayout {
  let offset = 0
  let align = 1
  const fields: FieldSpec[] = decls.map(([fname, d]) => {
    const w = WIDTH[d.type]
    offset = Math.ceil(offset / w) * w
    align = Math.max(align, w)
    const f: FieldSpec = {
      name: fname,
      type: d.type,
      count: d.count ?? 1,
      offset,
      dir: d.dir ?? (fname.startsWith('__reserved') ? 'reserved' : fname.startsWith('out_') ? 'out' : 'in'),
      show: d.show ?? (d.type === 'u64' || d.pointer ? 'hex' : 'dec'),
      names: d.names,
      pointer: d.pointer,
      alias: d.alias,
      union: d.union,
    }
    offset += w * f.count
    return f
  })
  const size = Math.ceil(offset / align) * align
  const byName = new Map(fields.map((f) => [f.name, f]))
  return {
    name,
    size,
    fields,
    field(n) {
      const f = byName.get(n)
      if (!f) throw new Error(`${name} has no field ${n}`)
      return f
    },
    endOf(n) {
      const f = this.field(n)
      return f.offset + WIDTH[f.type] * f.count
    },
  }
}

/** BigInts of the values most fields hold (0, small IDs and counts): shared, so decoding them allocates nothing. */
const SMALL = Array.from({ length: 1024 }, (_, i) => BigInt(i))
const small = (v: number): bigint => (v < SMALL.length ? SMALL[v] : BigInt(v))
const U32_MAX = 0xffffffffn

function readScalar(buf: Buffer, off: number, t: Scalar): bigint {
  switch (t) {
    case 'u8':
      return small(buf.readUInt8(off))
    case 'u16':
      return small(buf.readUInt16LE(off))
    case 'u32':
      return small(buf.readUInt32LE(off))
    case 's32': {
      const v = buf.readInt32LE(off)
      return v >= 0 ? small(v) : BigInt(v)
    }
    case 'u64': {
      // two halves: a u64 that fits in 32 bits (most do) needs no BigInt arithmetic
      const hi = buf.readUInt32LE(off + 4)
      return hi === 0 ? small(buf.readUInt32LE(off)) : buf.readBigUInt64LE(off)
    }
  }
}

function writeScalar(buf: Buffer, off: number, t: Scalar, v: bigint): void {
  const w = WIDTH[t]
  if (t === 's32') {
    buf.writeInt32LE(Number(BigInt.asIntN(32, v)), off)
    return
  }
  if (t === 'u64') {
    if (v >= 0n && v <= U32_MAX) {
      buf.writeUInt32LE(Number(v), off)
      buf.writeUInt32LE(0, off + 4)
    } else buf.writeBigUInt64LE(BigInt.asUintN(64, v), off)
    return
  }
  buf.writeUIntLE(Number(BigInt.asUintN(w * 8, v)), off, w)
}

/** Decodes `buf` (at least layout.size bytes) into field values by name. */
export function decode(layout: StructLayout, buf: Buffer): StructValue {
  const out: StructValue = {}
  for (const f of layout.fields) {
    const w = WIDTH[f.type]
    if (f.count === 1) out[f.name] = readScalar(buf, f.offset, f.type)
    else out[f.name] = Array.from({ length: f.count }, (_, i) => readScalar(buf, f.offset + i * w, f.type))
  }
  return out
}

/** Writes the given fields into `buf` (others untouched). */
export function encodeInto(layout: StructLayout, buf: Buffer, values: StructValue): void {
  for (const name in values) {
    const v = values[name]
    const f = layout.field(name)
    const w = WIDTH[f.type]
    if (Array.isArray(v)) v.slice(0, f.count).forEach((x, i) => writeScalar(buf, f.offset + i * w, f.type, x))
    else writeScalar(buf, f.offset, f.type, v)
  }
}

export function encode(layout: StructLayout, values: StructValue): Buffer {
  const buf = Buffer.alloc(layout.size)
  encodeInto(layout, buf, values)
  return buf
}

export function scalarWidth(t: Scalar): number {
  return WIDTH[t]
}
