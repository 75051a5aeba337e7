/**
 * Disjoint inclusive intervals [start, last] of u64 addresses with a value
 * each, in a treap ordered by start. Every node also knows its subtree's
 * lowest start, highest last, widest gap between neighbouring intervals and
 * longest interval, so lookups, overlap queries and first-fit searches (of a
 * hole between intervals, or of room inside one) skip whole subtrees:
 * O(log n) expected (plus the k intervals a query returns).
 * Priorities come from a fixed-seed generator, so a tree's shape is the same
 * on every run.
 */

interface Node<T> {
  start: bigint
  last: bigint
  value: T
  priority: number
  left?: Node<T>
  right?: Node<T>
  // subtree aggregates
  minStart: bigint
  maxLast: bigint
  /** The widest free stretch between two neighbouring intervals inside this subtree (0 when none). */
  maxGap: bigint
  /** The longest interval in this subtree (last - start + 1). */
  maxLen: bigint
  size: number
}

function update<T>(n: Node<T>): Node<T> {
  const l = n.left
  const r = n.right
  n.minStart = l ? l.minStart : n.start
  n.maxLast = r ? r.maxLast : n.last
  n.size = 1 + (l?.size ?? 0) + (r?.size ?? 0)
  let len = n.last - n.start + 1n
  if (l && l.maxLen > len) len = l.maxLen
  if (r && r.maxLen > len) len = r.maxLen
  n.maxLen = len
  let gap = 0n
  if (l) {
    gap = l.maxGap
    const g = n.start - l.maxLast - 1n
    if (g > gap) gap = g
  }
  if (r) {
    if (r.maxGap > gap) gap = r.maxGap
    const g = r.minStart - n.last - 1n
    if (g > gap) gap = g
  }
  n.maxGap = gap
  return n
}

/** Splits into (starts < key, starts >= key). */
function split<T>(n: Node<T> | undefined, key: bigint): [Node<T> | undefined, Node<T> | undefined] {
  if (!n) return [undefined, undefined]
  if (n.start < key) {
    const [a, b] = split(n.right, key)
    n.right = a
    return [update(n), b]
  }
  const [a, b] = split(n.left, key)
  n.left = b
  return [a, update(n)]
}

/** Joins two trees whose every start in `a` is below every start in `b`. */
function merge<T>(a: Node<T> | undefined, b: Node<T> | undefined): Node<T> | undefined {
  if (!a) return b
  if (!b) return a
  if (a.priority > b.priority) {
    a.right = merge(a.right, b)
    return update(a)
  }
  b.left = merge(a, b.left)
  return update(b)
}

/** A hole search: the lowest `align`-aligned start of `length` bytes inside [lo, hi] that overlaps no interval. */
interface HoleQuery {
  readonly length: bigint
  readonly align: bigint
  /** Bits OR-ed into the aligned start (a multiple of `align`, below the next power of two the caller cares about). */
  readonly offset: bigint
  readonly lo: bigint
  readonly hi: bigint
}

function alignUp(v: bigint, align: bigint): bigint {
  return ((v + align - 1n) / align) * align
}

/** The fit in the free stretch [from, to] (either may be out of [lo, hi]), if any. */
function fitIn(q: HoleQuery, from: bigint, to: bigint): bigint | undefined {
  const a = from > q.lo ? from : q.lo
  const b = to < q.hi ? to : q.hi
  if (a > b) return undefined
  const s = alignUp(a, q.align) | q.offset
  return s + q.length - 1n <= b ? s : undefined
}

export class IntervalTree<T> {
  private root: Node<T> | undefined
  private seed = 0x2545f491

  get size(): number {
    return this.root?.size ?? 0
  }

  private random(): number {
    // xorshift32: deterministic shapes, no Math.random
    let x = this.seed
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.seed = x >>> 0
    return this.seed
  }

  /** Adds [start, last]; the caller has checked that it overlaps nothing. */
  insert(start: bigint, last: bigint, value: T): void {
    const node: Node<T> = { start, last, value, priority: this.random(), minStart: start, maxLast: last, maxGap: 0n, maxLen: last - start + 1n, size: 1 }
    const [a, b] = split(this.root, start)
    this.root = merge(merge(a, node), b)
  }

  /** Removes the interval starting at `start`; returns its value. */
  remove(start: bigint): T | undefined {
    const [a, rest] = split(this.root, start)
    const [hit, b] = split(rest, start + 1n)
    this.root = merge(a, b)
    return hit?.value
  }

  /** The values of the intervals overlapping [lo, hi], by start. */
  overlapping(lo: bigint, hi: bigint, limit = Infinity): T[] {
    const out: T[] = []
    const walk = (n: Node<T> | undefined): void => {
      if (!n || out.length >= limit || n.maxLast < lo || n.minStart > hi) return
      walk(n.left)
      if (out.length < limit && n.start <= hi && n.last >= lo) out.push(n.value)
      walk(n.right)
    }
    walk(this.root)
    return out
  }

  /** The first interval (by start) overlapping [lo, hi]. */
  firstOverlapping(lo: bigint, hi: bigint): T | undefined {
    return this.overlapping(lo, hi, 1)[0]
  }

  /**
   * First fit: the lowest `align`-aligned address a in [lo, hi] such that
   * [a, a + length - 1] lies in [lo, hi] and overlaps no interval.
   */
  firstHole(length: bigint, align: bigint, lo: bigint, hi: bigint): bigint | undefined {
    const q: HoleQuery = { length, align, offset: 0n, lo, hi }
    // `from`/`to`: the free stretch around this subtree (just after the interval before it, just before the one after it)
    const find = (n: Node<T> | undefined, from: bigint, to: bigint): bigint | undefined => {
      if (!n) return fitIn(q, from, to)
      if (to < lo || from > hi) return undefined
      // no free stretch here is long enough, whatever the alignment
      const widest = [n.maxGap, n.minStart - from, to - n.maxLast].reduce((m, g) => (g > m ? g : m))
      if (widest < length) return undefined
      return find(n.left, from, n.start - 1n) ?? find(n.right, n.last + 1n, to)
    }
    return find(this.root, lo, hi)
  }

  /**
   * First fit inside the intervals themselves (the tree holds free space):
   * the lowest address a in [lo, hi], each interval's start aligned up to
   * `align` with `offset` OR-ed in, such that [a, a + length - 1] lies in
   * [lo, hi] and inside one interval.
   */
  firstFit(length: bigint, align: bigint, lo: bigint, hi: bigint, offset = 0n): bigint | undefined {
    const q: HoleQuery = { length, align, offset, lo, hi }
    const find = (n: Node<T> | undefined): bigint | undefined => {
      // no interval here is long enough, or none reaches into [lo, hi]
      if (!n || n.maxLen < length || n.maxLast < lo || n.minStart > hi) return undefined
      return find(n.left) ?? fitIn(q, n.start, n.last) ?? find(n.right)
    }
    return find(this.root)
  }

  /** Every value, by start. */
  values(): T[] {
    const out: T[] = []
    const walk = (n: Node<T> | undefined): void => {
      if (!n) return
      walk(n.left)
      out.push(n.value)
      walk(n.right)
    }
    walk(this.root)
    return out
  }

  clear(): void {
    this.root = undefined
  }
}
