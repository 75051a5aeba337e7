/**
 * Queue index arithmetic shared by SMMUv3 queues and the ring invalidation
 * form: an index has `bits` index bits and, just above them, a wrap flag that
 * toggles each time the index runs off the end. Empty: PROD == CONS.
 * Full: same index, different wrap flags.
 */
export class RingIndex {
  readonly size: number
  readonly wrapBit: number
  /** Index bits plus the wrap flag. */
  readonly mask: number

  constructor(readonly bits: number) {
    if (!Number.isInteger(bits) || bits < 1 || bits > 31) throw new RangeError(`index bits ${bits} outside 1..31`)
    this.size = 2 ** bits
    this.wrapBit = this.size
    this.mask = this.size * 2 - 1
  }

  /** True when `v` uses no bit above the wrap flag. */
  valid(v: number): boolean {
    return v >= 0 && v <= this.mask && Number.isInteger(v)
  }

  index(v: number): number {
    return v % this.size
  }

  wrap(v: number): boolean {
    return (v & this.wrapBit) !== 0
  }

  /** The next position: index + 1, toggling the wrap flag when it passes the end. */
  next(v: number): number {
    return (v + 1) % (this.size * 2)
  }

  /** Entries from CONS up to PROD (0..size); more than size means the pair is inconsistent. */
  count(prod: number, cons: number): number {
    return (prod - cons + this.size * 2) % (this.size * 2)
  }

  empty(prod: number, cons: number): boolean {
    return prod === cons
  }

  full(prod: number, cons: number): boolean {
    return this.index(prod) === this.index(cons) && this.wrap(prod) !== this.wrap(cons)
  }

  /** Hex as SMMU registers are printed, e.g. 0x00000011. */
  static hex(v: number): string {
    return `0x${(v >>> 0).toString(16).padStart(8, '0')}`
  }
}
