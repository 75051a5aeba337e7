import { isAbort } from '../../memory/backing'
import { MemoryPort } from '../../memory/physical'

/**
 * The two VT-d page-table formats: first stage (x86-64 paging, 4 or 5
 * levels) and second stage (3 to 5 levels, R/W/X with no present bit), and
 * a writer that builds 4K leaves the way the Linux driver writes them.
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

/** Memory a table writer can take zeroed pages from. */
export interface TableMemory extends MemoryPort {
  alloc(bytes: bigint, align: bigint): bigint
}

export interface Prot {
  readonly read: boolean
  readonly write: boolean
}

export interface VtdTableOptions {
  readonly format: VtdFormat
  readonly levels: number
}

/** A leaf found by find(): the slot holding it, its value and level. */
export interface Leaf {
  readonly slot: bigint
  readonly desc: bigint
  readonly level: number
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

  /** Linux's leaf: first stage P|U|A (+ RW|D when writable); second stage R (+ W). */
  leafEntry(pa: bigint, prot: Prot): bigint {
    if (this.opts.format === 'first') return pa | FS.P | FS.US | FS.A | (prot.write ? FS.RW | FS.D : 0n)
    return pa | (prot.read ? SS.R : 0n) | (prot.write ? SS.W : 0n)
  }

  private present(desc: bigint): boolean {
    return this.opts.format === 'first' ? (desc & FS.P) !== 0n : (desc & (SS.R | SS.W)) !== 0n
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

  /** The level-1 slot for `iova`, allocating tables on the way when `create`. */
  private slot(iova: bigint, create: boolean): bigint | undefined {
    let table = this.root
    for (let level = this.opts.levels; level > 1; level--) {
      const slot = table + levelIndex(iova, level) * 8n
      let d = this.read(slot)
      if (!this.present(d)) {
        if (!create) return undefined
        d = this.tableEntry(this.mem.alloc(0x1000n, 0x1000n))
        this.writeDesc(slot, d)
      }
      table = d & ADDR_MASK
    }
    return table + levelIndex(iova, 1) * 8n
  }

  /** Maps [iova, iova+length) to pa in 4K leaves. */
  map(iova: bigint, pa: bigint, length: bigint, prot: Prot): void {
    for (let off = 0n; off < length; off += 0x1000n) this.writeDesc(this.slot(iova + off, true)!, this.leafEntry(pa + off, prot))
  }

  /** Clears the leaves of [iova, iova+length); returns the levels of the leaves removed. */
  unmap(iova: bigint, length: bigint): Set<number> {
    const levels = new Set<number>()
    for (let off = 0n; off < length; off += 0x1000n) {
      const s = this.slot(iova + off, false)
      if (s === undefined) continue
      if (this.present(this.read(s))) levels.add(1)
      this.writeDesc(s, 0n)
    }
    return levels
  }

  find(iova: bigint): Leaf | undefined {
    const s = this.slot(iova, false)
    if (s === undefined) return undefined
    const desc = this.read(s)
    return this.present(desc) ? { slot: s, desc, level: 1 } : undefined
  }
}
