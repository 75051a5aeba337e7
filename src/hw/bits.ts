/** A named bit field of a 64-bit word in memory (STE words, commands, descriptors). */
export interface Bits {
  readonly name: string
  readonly hi: number
  readonly lo: number
}

export function bits(name: string, hi: number, lo = hi): Bits {
  return { name, hi, lo }
}

export function mask(f: Bits): bigint {
  return ((1n << BigInt(f.hi - f.lo + 1)) - 1n) << BigInt(f.lo)
}

export function get(word: bigint, f: Bits): bigint {
  return (word & mask(f)) >> BigInt(f.lo)
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
