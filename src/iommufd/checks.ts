import { ErrnoError } from '../util/errno'

/** The field checks every handler shares, with the kernel's errnos. */

export function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`
}

/** A reserved field must be 0 (EOPNOTSUPP, as the kernel answers). */
export function mustBeZero(value: bigint | number, field: string): void {
  if (BigInt(value) !== 0n) throw new ErrnoError('EOPNOTSUPP', `${field}=${hex(value)}: must be 0`)
}

/** Flag bits beyond `known` are EOPNOTSUPP. */
export function unknownFlags(flags: number, known: number, field = 'flags'): void {
  if (flags & ~known) throw new ErrnoError('EOPNOTSUPP', `${field}=${hex(flags)}: unknown bits ${hex(flags & ~known)}`)
}
