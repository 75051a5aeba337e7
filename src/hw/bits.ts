import { exactNumber } from '../memory/physical'

/** A named bit field of a 64-bit word in memory (STE words, commands, descriptors). */
export interface Bits {
  readonly name: string
  readonly hi: number
  readonly lo: number
  /** The field's mask and shift as bigints, computed once (walks decode fields on every access). */
  readonly mask?: bigint
  readonly shift?: bigint
}

export function bits(name: string, hi: number, lo = hi): Bits {
  return { name, hi, lo, mask: ((1n << BigInt(hi - lo + 1)) - 1n) << BigInt(lo), shift: BigInt(lo) }
}

export function mask(f: Bits): bigint {
  return f.mask ?? ((1n << BigInt(f.hi - f.lo + 1)) - 1n) << BigInt(f.lo)
}

export function get(word: bigint, f: Bits): bigint {
  return (word & mask(f)) >> (f.shift ?? BigInt(f.lo))
}

export function set(word: bigint, f: Bits, value: bigint): bigint {
  return (word & ~mask(f)) | ((value << BigInt(f.lo)) & mask(f))
}

export function maskOf(fields: readonly Bits[]): bigint {
  return fields.reduce((m, f) => m | mask(f), 0n)
}

export function hex(v: bigint | number, width = 0): string {
  return `0x${v.toString(16).padStart(width, '0')}`
}

/*
 * A 64-bit word as two 32-bit halves (numbers, each 0..2^32-1): walks read
 * descriptors this way and decode them without allocating BigInts.
 */
const TWO32 = 0x1_0000_0000

/** Bits [31:0] of a 64-bit value. */
export function lo32(v: bigint): number {
  return Number(v & 0xffff_ffffn)
}

/** Bits [63:32] of a 64-bit value. */
export function hi32(v: bigint): number {
  return Number((v >> 32n) & 0xffff_ffffn)
}

/** 64-bit words as 32-bit halves, low first. */
export function halvesOf(words: readonly bigint[]): number[] {
  return words.flatMap((w) => [lo32(w), hi32(w)])
}

/** The 64-bit value of two halves. */
export function join64(hi: number, lo: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)
}

/** hi:lo as a number: exact while bits [63:53] are zero (physical addresses are at most 52 bits). */
export function num64(hi: number, lo: number): number {
  return (hi >>> 0) * TWO32 + (lo >>> 0)
}

const POW2 = Array.from({ length: 64 }, (_, i) => 2 ** i)

/** 2^n for n in 0..63, from a table (Math.pow with a variable exponent is slow). */
export function pow2(n: number): number {
  return POW2[n]
}

/** The low `n` bits of a 32-bit half, unsigned. */
function low(v: number, n: number): number {
  return n >= 32 ? v >>> 0 : (v & ((1 << n) - 1)) >>> 0
}

/** Field `f` of the word hi:lo as a number (fields are at most 53 bits wide: exact). */
export function getN(hi: number, lo: number, f: Bits): number {
  const width = f.hi - f.lo + 1
  if (width > 53) throw new Error(`field ${f.name} is wider than a number holds exactly`)
  if (f.lo >= 32) return low(hi >>> (f.lo - 32), width)
  const below = lo >>> f.lo
  if (f.hi < 32) return low(below, width)
  return low(hi, f.hi - 31) * POW2[32 - f.lo] + below
}

/** The 4K page number of an address (exact: at most 52 bits), without BigInt arithmetic where the address is exact as a number. */
export function pageOf(addr: bigint): number {
  const a = exactNumber(addr)
  return a >= 0 ? Math.floor(a / 4096) : Number(addr >> 12n)
}

/** The offset of an address in its 4K page. */
export function pageOffset(addr: bigint): number {
  const a = exactNumber(addr)
  return a >= 0 ? a % 4096 : Number(addr & 0xfffn)
}
