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
