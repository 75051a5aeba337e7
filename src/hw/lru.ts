/** An entry of an Lru: its key, its value, its neighbours in recency order. */
export interface LruNode<K, V> {
  readonly key: K
  v: V
  older: LruNode<K, V> | undefined
  newer: LruNode<K, V> | undefined
}

/**
 * The caches' replacement (SMMUv3 and VT-d alike): a map that forgets its
 * least recently used entry past `capacity`: get()
 * and set() make an entry the newest. Entries are kept on a list from the
 * oldest to the newest (values() and dropIf() go that way), so a use moves
 * one node instead of re-inserting the key.
 */
export class Lru<K, V> {
  readonly map = new Map<K, LruNode<K, V>>()
  private oldest: LruNode<K, V> | undefined
  private newest: LruNode<K, V> | undefined

  constructor(readonly capacity: number, private readonly evicted?: (v: V) => void) {}

  get(k: K): V | undefined {
    const n = this.map.get(k)
    if (n === undefined) return undefined
    this.touch(n)
    return n.v
  }

  /** Makes a node set() returned the newest (a use found through another index). */
  touch(n: LruNode<K, V>): void {
    if (n === this.newest) return
    this.unlink(n)
    this.append(n)
  }

  set(k: K, v: V): LruNode<K, V> {
    const had = this.map.get(k)
    if (had) {
      had.v = v
      this.touch(had)
      return had
    }
    const n: LruNode<K, V> = { key: k, v, older: undefined, newer: undefined }
    this.map.set(k, n)
    this.append(n)
    if (this.map.size > this.capacity) this.remove(this.oldest!)
    return n
  }

  /** Deletes every entry `pred` holds for, oldest first; returns how many. */
  dropIf(pred: (v: V) => boolean): number {
    let count = 0
    for (let n = this.oldest; n; ) {
      const next = n.newer
      if (pred(n.v)) {
        this.remove(n)
        count++
      }
      n = next
    }
    return count
  }

  clear(): void {
    this.dropIf(() => true)
  }

  /** The values, oldest first. */
  *values(): IterableIterator<V> {
    for (let n = this.oldest; n; n = n.newer) yield n.v
  }

  get size(): number {
    return this.map.size
  }

  private remove(n: LruNode<K, V>): void {
    this.unlink(n)
    this.map.delete(n.key)
    this.evicted?.(n.v)
  }

  private unlink(n: LruNode<K, V>): void {
    if (n.older) n.older.newer = n.newer
    else this.oldest = n.newer
    if (n.newer) n.newer.older = n.older
    else this.newest = n.older
    n.older = n.newer = undefined
  }

  private append(n: LruNode<K, V>): void {
    n.older = this.newest
    if (this.newest) this.newest.newer = n
    else this.oldest = n
    this.newest = n
  }
}
