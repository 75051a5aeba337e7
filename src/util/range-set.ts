import { IntervalTree } from './interval-tree'

/** An inclusive u64 range. */
export interface Range {
  readonly start: bigint
  readonly last: bigint
}

/**
 * A set of u64 addresses kept as its maximal ranges (touching ones merged),
 * in an interval tree: adding or taking out a range costs O((k + 1) log n)
 * for the k ranges it touches, and the first aligned room of a length is
 * found in O(log n).
 */
export class RangeSet {
  private readonly tree = new IntervalTree<Range>()

  get size(): number {
    return this.tree.size
  }

  /** Adds [start, last], merging it with every range it overlaps or touches. */
  add(start: bigint, last: bigint): void {
    if (start > last) return
    const lo = start > 0n ? start - 1n : start
    const hi = last + 1n
    for (const r of this.tree.overlapping(lo, hi)) {
      if (r.start < start) start = r.start
      if (r.last > last) last = r.last
      this.tree.remove(r.start)
    }
    this.tree.insert(start, last, { start, last })
  }

  /** Takes [start, last] out; ranges it cuts keep their parts outside. */
  remove(start: bigint, last: bigint): void {
    if (start > last) return
    for (const r of this.tree.overlapping(start, last)) {
      this.tree.remove(r.start)
      if (r.start < start) this.tree.insert(r.start, start - 1n, { start: r.start, last: start - 1n })
      if (r.last > last) this.tree.insert(last + 1n, r.last, { start: last + 1n, last: r.last })
    }
  }

  /** The first range (by start) overlapping [start, last]. */
  firstOverlapping(start: bigint, last: bigint): Range | undefined {
    return this.tree.firstOverlapping(start, last)
  }

  overlapping(start: bigint, last: bigint): Range[] {
    return this.tree.overlapping(start, last)
  }

  /** The lowest a in [lo, hi] (a range's start aligned up to `align`, `offset` OR-ed in) with [a, a + length - 1] inside [lo, hi] and inside the set. */
  firstFit(length: bigint, align: bigint, lo: bigint, hi: bigint, offset = 0n): bigint | undefined {
    return this.tree.firstFit(length, align, lo, hi, offset)
  }

  /** Every range, by start. */
  ranges(): Range[] {
    return this.tree.values()
  }

  clear(): void {
    this.tree.clear()
  }
}

/**
 * `ranges` less `holes`, both sorted by start (ranges disjoint, holes may
 * overlap each other): one merge walk, O(n + m).
 */
export function subtractSorted(ranges: readonly Range[], holes: readonly Range[]): Range[] {
  const out: Range[] = []
  let h = 0
  for (const r of ranges) {
    let from = r.start
    // holes wholly before this range cannot touch any later one either
    while (h < holes.length && holes[h].last < r.start) h++
    for (let i = h; i < holes.length && holes[i].start <= r.last; i++) {
      const x = holes[i]
      if (x.last < from) continue
      if (x.start > from) out.push({ start: from, last: x.start - 1n })
      if (x.last >= r.last) {
        from = r.last + 1n
        break
      }
      from = x.last + 1n
    }
    if (from <= r.last) out.push({ start: from, last: r.last })
  }
  return out
}
