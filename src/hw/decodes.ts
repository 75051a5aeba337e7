import { MemoryPort, exactNumber } from '../memory/physical'

/**
 * Structures a walk decodes (SMMUv3 STEs and CDs, VT-d context and PASID
 * entries) by physical address, with the 32-bit halves of the words they were
 * decoded from and `extra`, anything else the decode depended on. A walk that
 * finds the same words in table RAM again takes the decode: it is a function
 * of those words, so nothing a walk sees changes. This is no architectural
 * cache: the words are compared on every read. Bounded: past MAX addresses it
 * starts again.
 */
export class Decodes<T> {
  static readonly MAX = 1024
  private readonly byAddr = new Map<number, { readonly halves: readonly number[]; readonly extra: number; readonly value: T }>()

  /** `count`: the 32-bit halves each structure is decoded from. */
  constructor(private readonly count: number) {}

  /** The decode of the words at `addr` if they are table RAM and unchanged since keep(). */
  find(mem: MemoryPort, addr: bigint, extra: number): T | undefined {
    if (this.byAddr.size === 0) return undefined
    const pa = exactNumber(addr)
    const known = this.byAddr.get(pa)
    if (!known || known.extra !== extra || pa % 4 !== 0 || (pa % 4096) + this.count * 4 > 4096) return undefined
    const page = mem.ramWords?.(pa)
    if (!page) return undefined
    const at = (pa % 4096) / 4
    const h = known.halves
    for (let i = 0; i < this.count; i++) if (page.u32[at + i] !== h[i]) return undefined
    return known.value
  }

  /** Remembers the decode of the words read at `addr` (`halves`: their 32-bit halves, low first) and returns it. */
  keep(addr: bigint, extra: number, halves: readonly number[], value: T): T {
    const pa = exactNumber(addr)
    if (pa < 0 || halves.length !== this.count) return value
    if (this.byAddr.size >= Decodes.MAX) this.byAddr.clear()
    this.byAddr.set(pa, { halves, extra, value })
    return value
  }
}
