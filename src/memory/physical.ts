import { Abort, Backing, isAbort } from './backing'

/** Byte access to an address space, as a bus master sees it: an Abort where nothing answers. */
export interface MemoryPort {
  read(addr: bigint, len: number): Buffer | Abort
  write(addr: bigint, data: Buffer): Abort | undefined
  read64(addr: bigint): bigint | Abort
  write64(addr: bigint, value: bigint): Abort | undefined
  /** The table-RAM page holding `pa` (a number), if it is one, as typed views: walks read descriptors without BigInts or Buffer checks. */
  ramWords?(pa: number): RamWords | undefined
}

/** One page of table RAM as 32-bit and 64-bit words (host byte order: little-endian hosts only, see LITTLE_ENDIAN). */
export interface RamWords {
  readonly u32: Uint32Array
  readonly u64: BigUint64Array
}

/**
 * Whether memory at `addr` still holds `words` (64-bit, consecutive): false
 * when one differs or the memory does not answer. Table RAM is compared in
 * place, without copies.
 */
export function wordsAre(mem: MemoryPort, addr: bigint, words: readonly bigint[]): boolean {
  const pa = exactNumber(addr)
  const page = pa >= 0 && pa % 8 === 0 && (pa % 4096) + words.length * 8 <= 4096 ? mem.ramWords?.(pa) : undefined
  if (page) {
    const at = (pa % 4096) / 8
    for (let i = 0; i < words.length; i++) if (page.u64[at + i] !== words[i]) return false
    return true
  }
  const b = mem.read(addr, words.length * 8)
  if (isAbort(b)) return false
  for (let i = 0; i < words.length; i++) if (b.readBigUInt64LE(i * 8) !== words[i]) return false
  return true
}

/**
 * Whether table RAM at `addr` holds `count` 32-bit halves (low first) of
 * `halves` from `from` on; false too where `addr` is not table RAM.
 */
export function halvesAre(mem: MemoryPort, addr: bigint, halves: readonly number[], from = 0, count = halves.length): boolean {
  const pa = exactNumber(addr)
  const page = pa >= 0 && pa % 4 === 0 && (pa % 4096) + count * 4 <= 4096 ? mem.ramWords?.(pa) : undefined
  if (!page) return false
  const at = (pa % 4096) / 4
  for (let i = 0; i < count; i++) if (page.u32[at + i] !== halves[from + i]) return false
  return true
}

/** A 64-bit word as its 32-bit halves (each 0..2^32-1). */
export interface Halves {
  lo: number
  hi: number
}

/**
 * Reads the 64-bit word at `pa` (an integer below 2^53) into `out`, straight
 * from a table-RAM page where it is one: walks decode descriptors without BigInts.
 */
export function loadHalves(mem: MemoryPort, pa: number, out: Halves): Abort | undefined {
  const page = mem.ramWords?.(pa)
  // pa is an integer below 2^53: & takes its low bits exactly (and is no floating-point modulo)
  if (page && (pa & 7) === 0) {
    const i = (pa & 4095) >>> 2
    out.lo = page.u32[i]
    out.hi = page.u32[i + 1]
    return undefined
  }
  const v = mem.read64(BigInt(pa))
  if (isAbort(v)) return v
  out.lo = Number(v & 0xffff_ffffn)
  out.hi = Number((v >> 32n) & 0xffff_ffffn)
  return undefined
}

/** Typed views read the host's byte order; the model's memory is little-endian. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1

const PAGE = 4096n
const PAGE_SHIFT = 12n
/**
 * `addr` as a number when that is exact (0 <= addr < 2^53), else -1. One
 * conversion and no BigInt comparison: a BigInt of 2^53 or more never
 * converts to a number below 2^53.
 */
export function exactNumber(addr: bigint): number {
  const a = Number(addr)
  return a >= 0 && a <= Number.MAX_SAFE_INTEGER ? a : -1
}

/** A window of physical addresses onto a backing (what pinning a mapping gives the IOMMU). */
export interface Window {
  readonly pa: bigint
  readonly length: bigint
  readonly backing: Backing
  /** The backing's offset at `pa`. */
  readonly offset: bigint
}

/** Where the allocators start: table RAM low, windows high, so a dump tells them apart. */
const RAM_BASE = 0x10_0000_0000n
const WINDOW_BASE = 0x80_0000_0000n

/**
 * The host's physical address space: zeroed RAM pages the host driver takes
 * for the tables it builds (stream tables, CDs, page tables), and windows
 * onto the memory behind mappings. Anything else is an external abort.
 */
export class PhysicalMemory implements MemoryPort {
  /** Table RAM by page number (a number: faster keys than bigints). */
  private readonly pages = new Map<number, Buffer>()
  /** The same pages as word views (empty on a big-endian host). */
  private readonly words = new Map<number, RamWords>()
  /** Sorted by pa. */
  private readonly windows: Window[] = []
  private nextRam = RAM_BASE
  private nextWindow = WINDOW_BASE
  /** Page numbers given back by free(), reused by single-page allocations (most table pages), newest first. */
  private readonly freePages: number[] = []

  /** Zeroed RAM of `bytes` (rounded up to pages), aligned to `align` (at least a page). */
  alloc(bytes: number | bigint, align: bigint = PAGE): bigint {
    const a = align > PAGE ? align : PAGE
    if (a === PAGE && BigInt(bytes) <= PAGE && this.freePages.length) return this.place(this.freePages.pop()!)
    const pa = ((this.nextRam + a - 1n) / a) * a
    const n = (BigInt(bytes) + PAGE - 1n) / PAGE
    for (let i = 0n; i < n; i++) this.place(Number((pa >> PAGE_SHIFT) + i))
    this.nextRam = pa + n * PAGE
    return pa
  }

  /** A zeroed page of RAM at page number `pn`; returns its address. */
  private place(pn: number): bigint {
    const b = Buffer.alloc(Number(PAGE))
    this.pages.set(pn, b)
    if (LITTLE_ENDIAN) this.words.set(pn, { u32: new Uint32Array(b.buffer, b.byteOffset, b.length / 4), u64: new BigUint64Array(b.buffer, b.byteOffset, b.length / 8) })
    return BigInt(pn) << PAGE_SHIFT
  }

  /** Gives back RAM from alloc(); its addresses abort until a later alloc() takes the page again. */
  free(pa: bigint, bytes: number | bigint): void {
    const n = (BigInt(bytes) + PAGE - 1n) / PAGE
    for (let i = 0n; i < n; i++) {
      const pn = Number((pa >> PAGE_SHIFT) + i)
      if (!this.pages.delete(pn)) continue
      this.words.delete(pn)
      this.freePages.push(pn)
    }
  }

  /** Pages of table RAM in use. */
  get ramPages(): number {
    return this.pages.size
  }

  /** Pages of table RAM ever taken from the address space (in use or free for reuse): what a long run grows. */
  get ramSpan(): number {
    return this.pages.size + this.freePages.length
  }

  /** Places a window of `length` bytes onto `backing` from `offset`, aligned for block mappings. */
  map(length: bigint, backing: Backing, offset = 0n, align?: bigint): bigint {
    let a = align ?? 1n << 30n
    while (a > PAGE && a > length) a >>= 1n
    const pa = ((this.nextWindow + a - 1n) / a) * a
    this.nextWindow = pa + ((length + PAGE - 1n) / PAGE) * PAGE
    this.mapAt(pa, length, backing, offset)
    return pa
  }

  /** Places a window at a chosen address (a test's guest RAM); it must not overlap another. */
  mapAt(pa: bigint, length: bigint, backing: Backing, offset = 0n): void {
    if (this.windows.some((w) => pa < w.pa + w.length && w.pa < pa + length)) throw new Error(`window 0x${pa.toString(16)} overlaps another`)
    this.windows.push({ pa, length, backing, offset })
    this.windows.sort((x, y) => (x.pa < y.pa ? -1 : 1))
  }

  /** Removes the window at `pa` and returns it. */
  unmap(pa: bigint): Window | undefined {
    const i = this.windows.findIndex((w) => w.pa === pa)
    return i < 0 ? undefined : this.windows.splice(i, 1)[0]
  }

  private window(pa: bigint): Window | undefined {
    let lo = 0
    let hi = this.windows.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      const w = this.windows[mid]
      if (pa < w.pa) hi = mid - 1
      else if (pa >= w.pa + w.length) lo = mid + 1
      else return w
    }
    return undefined
  }

  ramWords(pa: number): RamWords | undefined {
    return this.words.get(Math.floor(pa / 4096))
  }

  read64(pa: bigint): bigint | Abort {
    const a = exactNumber(pa)
    if (a >= 0) {
      const words = this.words.get(Math.floor(a / 4096))
      if (words && a % 8 === 0) return words.u64[(a % 4096) / 8]
    }
    const page = this.pages.get(Number(pa >> PAGE_SHIFT))
    if (page && (pa & 7n) === 0n) return page.readBigUInt64LE(Number(pa & (PAGE - 1n)))
    const b = this.read(pa, 8)
    return isAbort(b) ? b : b.readBigUInt64LE(0)
  }

  write64(pa: bigint, value: bigint): Abort | undefined {
    const page = this.pages.get(Number(pa >> PAGE_SHIFT))
    if (page && (pa & 7n) === 0n) {
      page.writeBigUInt64LE(value, Number(pa & (PAGE - 1n)))
      return undefined
    }
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(value)
    return this.write(pa, b)
  }

  read(pa: bigint, len: number): Buffer | Abort {
    // an address below 2^53 is exact as a number: page and offset without BigInt arithmetic
    const a = exactNumber(pa)
    const page = a >= 0 ? this.pages.get(Math.floor(a / 4096)) : this.pages.get(Number(pa >> PAGE_SHIFT))
    const off = a >= 0 ? a % 4096 : Number(pa & (PAGE - 1n))
    // the common case: inside one page of RAM
    if (page && off + len <= 4096) {
      // a copy; small ones (a DMA's few bytes) by hand, cheaper than a subarray and Buffer.from
      const out = Buffer.allocUnsafe(len)
      if (len > 64) page.copy(out, 0, off, off + len)
      else for (let i = 0; i < len; i++) out[i] = page[off + i]
      return out
    }
    const out = Buffer.alloc(len)
    const bad = this.each(pa, len, (at, n, done) => {
      const page = this.pages.get(Number(at >> PAGE_SHIFT))
      if (page) {
        const off = Number(at & (PAGE - 1n))
        page.copy(out, done, off, off + n)
        return undefined
      }
      const w = this.window(at)!
      const got = w.backing.read(w.offset + (at - w.pa), n)
      if (isAbort(got)) return got
      got.copy(out, done)
      return undefined
    })
    return bad ?? out
  }

  write(pa: bigint, data: Buffer): Abort | undefined {
    return this.each(pa, data.length, (at, n, done) => {
      const page = this.pages.get(Number(at >> PAGE_SHIFT))
      if (page) {
        data.copy(page, Number(at & (PAGE - 1n)), done, done + n)
        return undefined
      }
      const w = this.window(at)!
      return w.backing.write(w.offset + (at - w.pa), data.subarray(done, done + n))
    })
  }

  /** Splits [pa, pa+len) into runs within one RAM page or one window; stops at the first abort. */
  private each(pa: bigint, len: number, fn: (at: bigint, n: number, done: number) => Abort | undefined): Abort | undefined {
    let done = 0
    while (done < len) {
      const at = pa + BigInt(done)
      let n: number
      if (this.pages.has(Number(at >> PAGE_SHIFT))) n = Math.min(len - done, Number(PAGE - (at & (PAGE - 1n))))
      else {
        const w = this.window(at)
        if (!w) return { abort: `no memory at physical address 0x${at.toString(16)}` }
        n = Math.min(len - done, Number(w.pa + w.length - at))
      }
      const r = fn(at, n, done)
      if (r) return r
      done += n
    }
    return undefined
  }

  /** The windows, for the debug tree. */
  dump(): string {
    return this.windows.map((w) => `0x${w.pa.toString(16)}-0x${(w.pa + w.length - 1n).toString(16)} ${w.backing.label} +0x${w.offset.toString(16)}\n`).join('')
  }
}
