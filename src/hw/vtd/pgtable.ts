import { isAbort } from '../../memory/backing'
import { MemoryPort } from '../../memory/physical'

/**
 * The two VT-d page-table formats: first stage (x86-64 paging, 4 or 5
 * levels) and second stage (3 to 5 levels, R/W/X with no present bit), and
 * a writer that builds leaves (4K, and 2M/1G where the mapping allows) and
 * frees tables the way the Linux driver does.
 * Levels count down: the leaf table is level 1, the root level `levels`.
 */
export const FS = {
  P: 1n << 0n,
  RW: 1n << 1n,
  US: 1n << 2n,
  A: 1n << 5n,
  D: 1n << 6n,
  PS: 1n << 7n,
  G: 1n << 8n,
  XD: 1n << 63n,
} as const

export const SS = {
  R: 1n << 0n,
  W: 1n << 1n,
  X: 1n << 2n,
  PS: 1n << 7n,
  A: 1n << 8n,
  D: 1n << 9n,
  SNP: 1n << 11n,
} as const

/** Next-table or frame address bits 51:12. */
export const ADDR_MASK = ((1n << 52n) - 1n) & ~0xfffn

export type VtdFormat = 'first' | 'second'

/** Bits of input address resolved below `level` (level 1 = 4K pages). */
export function levelShift(level: number): bigint {
  return BigInt(12 + 9 * (level - 1))
}

export function levelIndex(addr: bigint, level: number): bigint {
  return (addr >> levelShift(level)) & 0x1ffn
}

/** Memory a table writer can take zeroed pages from (and give them back to). */
export interface TableMemory extends MemoryPort {
  alloc(bytes: bigint, align: bigint): bigint
  free?(addr: bigint, bytes: bigint): void
}

export interface Prot {
  readonly read: boolean
  readonly write: boolean
}

export interface VtdTableOptions {
  readonly format: VtdFormat
  readonly levels: number
  /** The largest leaf: level 1 (4K pages only, the default), 2 (2M) or 3 (1G). */
  readonly largest?: number
}

/** A leaf found by find(): the slot holding it, its value and level. */
export interface Leaf {
  readonly slot: bigint
  readonly desc: bigint
  readonly level: number
}

/** What an unmap removed: the levels of the leaves it cleared, and the table pages it freed. */
export interface Unmapped {
  readonly levels: Set<number>
  tablesFreed: number
}

export class VtdPageTable {
  readonly root: bigint

  constructor(readonly mem: TableMemory, readonly opts: VtdTableOptions) {
    if (opts.levels < 3 || opts.levels > 5) throw new Error(`levels=${opts.levels}: 3, 4 or 5`)
    this.root = mem.alloc(0x1000n, 0x1000n)
  }

  private tableEntry(next: bigint): bigint {
    return this.opts.format === 'first' ? next | FS.P | FS.RW | FS.US | FS.A : next | SS.R | SS.W
  }

  /** Linux's leaf: first stage P|U|A (+ RW|D when writable); second stage R (+ W); PS above level 1. */
  leafEntry(pa: bigint, prot: Prot, level = 1): bigint {
    const ps = level > 1 ? FS.PS : 0n
    if (this.opts.format === 'first') return pa | FS.P | FS.US | FS.A | ps | (prot.write ? FS.RW | FS.D : 0n)
    return pa | ps | (prot.read ? SS.R : 0n) | (prot.write ? SS.W : 0n)
  }

  private present(desc: bigint): boolean {
    return this.opts.format === 'first' ? (desc & FS.P) !== 0n : (desc & (SS.R | SS.W)) !== 0n
  }

  /** A present entry at `level` that maps memory rather than naming a table (PS is bit 7 in both formats). */
  private isLeaf(desc: bigint, level: number): boolean {
    return level === 1 || (desc & FS.PS) !== 0n
  }

  private read(slot: bigint): bigint {
    const v = this.mem.read64(slot)
    if (isAbort(v)) throw new Error(`page table at 0x${slot.toString(16)}: ${v.abort}`)
    return v
  }

  writeDesc(slot: bigint, value: bigint): void {
    const r = this.mem.write64(slot, value)
    if (r) throw new Error(`page table at 0x${slot.toString(16)}: ${r.abort}`)
  }

  /** The slot for `iova` at `level`, allocating tables on the way when `create`. */
  private slot(iova: bigint, level: number, create: boolean): bigint | undefined {
    let table = this.root
    for (let l = this.opts.levels; l > level; l--) {
      const slot = table + levelIndex(iova, l) * 8n
      let d = this.read(slot)
      if (!this.present(d)) {
        if (!create) return undefined
        d = this.tableEntry(this.mem.alloc(0x1000n, 0x1000n))
        this.writeDesc(slot, d)
      } else if (this.isLeaf(d, l)) throw new Error(`0x${iova.toString(16)}: a level ${l} leaf is in the way`)
      table = d & ADDR_MASK
    }
    return table + levelIndex(iova, level) * 8n
  }

  /** Maps [iova, iova+length) to pa, each piece with the largest leaf alignment and length allow (up to opts.largest). */
  map(iova: bigint, pa: bigint, length: bigint, prot: Prot): void {
    const largest = this.opts.largest ?? 1
    let off = 0n
    while (off < length) {
      let level = largest
      while (level > 1 && (((iova + off) | (pa + off)) & ((1n << levelShift(level)) - 1n) || length - off < 1n << levelShift(level))) level--
      this.writeDesc(this.slot(iova + off, level, true)!, this.leafEntry(pa + off, prot, level))
      off += 1n << levelShift(level)
    }
  }

  /**
   * Clears [iova, iova+length) as the Linux driver does (dma_pte_clear_level):
   * an entry the range covers whole is cleared, and a table under it freed
   * with everything below; a table the range covers in part is descended
   * into and kept, even if it ends up empty. A large leaf the range covers in
   * part is split first.
   */
  unmap(iova: bigint, length: bigint): Unmapped {
    const out: Unmapped = { levels: new Set(), tablesFreed: 0 }
    this.clear(this.root, this.opts.levels, 0n, iova, iova + length, out)
    return out
  }

  private clear(table: bigint, level: number, base: bigint, lo: bigint, hi: bigint, out: Unmapped): void {
    const size = 1n << levelShift(level)
    const first = lo > base ? (lo - base) / size : 0n
    for (let i = first; i < 512n; i++) {
      const start = base + i * size
      if (start >= hi) break
      const slot = table + i * 8n
      let d = this.read(slot)
      if (!this.present(d)) continue
      const whole = lo <= start && start + size <= hi
      if (whole) {
        this.writeDesc(slot, 0n)
        if (this.isLeaf(d, level)) out.levels.add(level)
        else out.tablesFreed += this.freeTable(d & ADDR_MASK, level - 1)
        continue
      }
      if (this.isLeaf(d, level)) d = this.split(slot, d, level)
      this.clear(d & ADDR_MASK, level - 1, start, lo, hi, out)
    }
  }

  /** Replaces a large leaf by a table of next-level leaves mapping the same memory. */
  private split(slot: bigint, d: bigint, level: number): bigint {
    const table = this.mem.alloc(0x1000n, 0x1000n)
    const child = level - 1
    const attrs = d & ~ADDR_MASK & ~FS.PS
    const pa = d & ADDR_MASK
    for (let i = 0n; i < 512n; i++) this.writeDesc(table + i * 8n, (pa + (i << levelShift(child))) | attrs | (child > 1 ? FS.PS : 0n))
    const t = this.tableEntry(table)
    this.writeDesc(slot, t)
    return t
  }

  /** Gives a table and every table below it back to memory; returns how many pages. */
  private freeTable(table: bigint, level: number): number {
    let n = 1
    if (level > 1) {
      for (let i = 0n; i < 512n; i++) {
        const d = this.read(table + i * 8n)
        if (this.present(d) && !this.isLeaf(d, level)) n += this.freeTable(d & ADDR_MASK, level - 1)
      }
    }
    this.mem.free?.(table, 0x1000n)
    return n
  }

  /** Frees every table page, the root too (the domain is gone); returns how many. */
  destroy(): number {
    return this.freeTable(this.root, this.opts.levels)
  }

  find(iova: bigint): Leaf | undefined {
    let table = this.root
    for (let level = this.opts.levels; level >= 1; level--) {
      const slot = table + levelIndex(iova, level) * 8n
      const desc = this.read(slot)
      if (!this.present(desc)) return undefined
      if (this.isLeaf(desc, level)) return { slot, desc, level }
      table = desc & ADDR_MASK
    }
    return undefined
  }
}
