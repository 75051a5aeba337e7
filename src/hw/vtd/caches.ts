import { hex, pageOf } from '../bits'
import { Lru, LruNode } from '../lru'
import { describePerms } from '../smmuv3/walk'
import { ContextConfig, PasidConfig, PdeCache, PdeEntry, VtdStep } from './walk'
import { levelShift } from './pgtable'
import { DESC_TYPE, Descriptor, decodeDescriptor } from './qi'

/**
 * The caches of a VT-d unit, tagged as the hardware tags them: the context
 * cache by requester ID, the PASID cache by (DID, PASID) per requester, the
 * IOTLB by (DID, PASID, address) for first-stage and nested translations and
 * (DID, address) for second-stage-only ones, and the endpoints' device TLBs
 * (ATS) by (requester, PASID), and the paging-structure caches (table
 * pointers, first-stage and nested ones by (DID, PASID, address above their
 * level), second-stage-only ones by (DID, address)). LRU, sizes from the
 * topology. `apply` drops what one invalidation descriptor reaches: an IOTLB
 * or P_IOTLB invalidation drops the paging-structure entries in its scope
 * too, unless it is page-selective with IH = 1 (leaves only).
 */

export interface VtdCacheSizes {
  readonly iotlb: number
  readonly pasid: number
  readonly context: number
  readonly devtlb: number
  /** Paging-structure caches (table pointers of both stages). */
  readonly pde: number
}

export const DEFAULT_VTD_CACHE_SIZES: VtdCacheSizes = { iotlb: 2048, pasid: 256, context: 256, devtlb: 64, pde: 256 }

export interface ContextEntry {
  readonly sid: number
  /** The DID of the PASID entry the context led to (domain-selective context invalidation). */
  readonly did: number
  readonly ctx: ContextConfig
  readonly steps: readonly VtdStep[]
  readonly since: number
  /** Each step's descriptor as 32-bit halves, low first (the sanitizer compares them with memory in place). */
  readonly halves?: readonly number[]
}

export interface PasidCacheEntry {
  readonly sid: number
  readonly pasid: number
  readonly did: number
  readonly pc: PasidConfig
  readonly steps: readonly VtdStep[]
  readonly since: number
  /** Each step's descriptor as 32-bit halves, low first. */
  readonly halves?: readonly number[]
}

export interface IotlbEntry {
  readonly kind: 'first' | 'second' | 'nested'
  readonly did: number
  /** Undefined for a second-stage-only translation (tagged by DID and address alone). */
  readonly pasid?: number
  readonly base: bigint
  readonly size: bigint
  readonly out: bigint
  readonly perms: number
  readonly global: boolean
  readonly since: number
  readonly sid: number
  readonly steps: readonly VtdStep[]
}

export interface DevTlbEntry {
  readonly sid: number
  readonly pasid?: number
  readonly base: bigint
  readonly size: bigint
  readonly out: bigint
  readonly perms: number
  readonly since: number
}

/** The IOTLB spans a lookup tries, in pages: 4K, 2M, 1G. */
const SPAN_PAGES = [1, 512, 512 * 512]

/** An IOTLB entry's tags as one number: DID (16 bits), PASID (20 bits) or none. */
function tlbTag(did: number, pasid: number | undefined): number {
  return did * 0x20_0000 + (pasid ?? 0x10_0000)
}

/** A paging-structure entry's accumulated rights: first stage R/W, U/S, XD; second stage R, W. */
function pdePerms(e: PdeEntry): string {
  return e.kind === 'second' ? `${e.us ? 'r' : '-'}${e.rw ? 'w' : '-'}` : `${e.rw ? 'rw' : 'ro'} ${e.us ? 'user' : 'supervisor'}${e.xd ? ' xd' : ''}`
}

function inRange(base: bigint, size: bigint, lo: bigint, hi: bigint): boolean {
  return base < hi && lo < base + size
}

/** The span a device-TLB descriptor's ADDR + S encode: S = 0 one page; S = 1 the lowest 0 bit from bit 12 gives the size. */
export function devTlbSpan(addr: bigint, s: boolean): { lo: bigint; hi: bigint } {
  if (!s) return { lo: addr & ~0xfffn, hi: (addr & ~0xfffn) + 0x1000n }
  let bit = 12n
  while (bit < 63n && (addr >> bit) & 1n) bit++
  if (bit >= 63n) return { lo: 0n, hi: 1n << 64n }
  const size = 1n << (bit + 1n)
  const lo = addr & ~(size - 1n)
  return { lo, hi: lo + size }
}

export class VtdCaches implements PdeCache {
  readonly context: Lru<number, ContextEntry>
  readonly pasid: Lru<number, PasidCacheEntry>
  readonly iotlb: Lru<string, IotlbEntry>
  readonly devtlb: Lru<string, DevTlbEntry>
  readonly pde: Lru<string, PdeEntry>
  hits = 0
  misses = 0
  pdeHits = 0
  pdeMisses = 0
  /** The fill clock of paging-structure entries (the unit's clock when it has one). */
  clock: () => number = () => ++this.ticks
  private ticks = 0

  /** IOTLB entries by tag (DID, PASID) and base page number: lookups without building keys. */
  private readonly index = new Map<number, Map<number, { readonly node: LruNode<string, IotlbEntry>; readonly pages: number }>>()

  constructor(readonly sizes: VtdCacheSizes = DEFAULT_VTD_CACHE_SIZES) {
    this.context = new Lru(sizes.context)
    this.pasid = new Lru(sizes.pasid)
    this.iotlb = new Lru(sizes.iotlb, (e) => this.unindex(e))
    this.devtlb = new Lru(sizes.devtlb)
    this.pde = new Lru(sizes.pde)
  }

  private static pdeKey(kind: PdeEntry['kind'], did: number, pasid: number | undefined, level: number, addr: bigint): string {
    return `${kind}/${did}/${pasid ?? '-'}/${level}/${addr >> levelShift(level)}`
  }

  lookupPde(kind: PdeEntry['kind'], did: number, pasid: number | undefined, addr: bigint, top: number): PdeEntry | undefined {
    for (let level = 2; level <= top; level++) {
      const e = this.pde.get(VtdCaches.pdeKey(kind, did, pasid, level, addr))
      if (e) {
        this.pdeHits++
        return e
      }
    }
    this.pdeMisses++
    return undefined
  }

  fillPde(e: Omit<PdeEntry, 'since'>): void {
    this.pde.set(VtdCaches.pdeKey(e.kind, e.did, e.pasid, e.level, e.base), { ...e, since: this.clock() })
  }

  /** The PASID cache's key: requester ID and PASID (20 bits). */
  static pasidKey(sid: number, pasid: number): number {
    return sid * 0x10_0000 + pasid
  }

  private static tlbKey(did: number, pasid: number | undefined, page: bigint): string {
    return `${did}/${pasid ?? '-'}/${page}`
  }

  lookup(did: number, pasid: number | undefined, addr: bigint): IotlbEntry | undefined {
    // entries are keyed by their base; an address tries the bases of a 4K, a 2M and a 1G span around it
    const byBase = this.index.get(tlbTag(did, pasid))
    if (!byBase) return undefined
    const page = pageOf(addr)
    for (let i = 0; i < SPAN_PAGES.length; i++) {
      const at = page - (page % SPAN_PAGES[i])
      const slot = byBase.get(at)
      if (slot === undefined) continue
      // a use, whether or not the entry covers the address
      this.iotlb.touch(slot.node)
      if (page - at < slot.pages) return slot.node.v
    }
    return undefined
  }

  fill(e: IotlbEntry): void {
    const node = this.iotlb.set(VtdCaches.tlbKey(e.did, e.pasid, e.base), e)
    const tag = tlbTag(e.did, e.pasid)
    let byBase = this.index.get(tag)
    if (!byBase) this.index.set(tag, (byBase = new Map()))
    byBase.set(pageOf(e.base), { node, pages: Number(e.size >> 12n) })
  }

  private unindex(e: IotlbEntry): void {
    const byBase = this.index.get(tlbTag(e.did, e.pasid))
    if (byBase?.get(pageOf(e.base))?.node.v === e) byBase.delete(pageOf(e.base))
  }

  devTlbLookup(sid: number, pasid: number | undefined, addr: bigint): DevTlbEntry | undefined {
    const e = this.devtlb.get(`${sid}/${pasid ?? '-'}/${addr & ~0xfffn}`)
    return e && addr >= e.base && addr < e.base + e.size ? e : undefined
  }

  devTlbFill(e: DevTlbEntry): void {
    this.devtlb.set(`${e.sid}/${e.pasid ?? '-'}/${e.base}`, e)
  }

  /** Drops what one descriptor reaches; returns how many entries went. */
  apply(d: Descriptor): number {
    const q = decodeDescriptor(d)
    switch (q.type) {
      case DESC_TYPE.CC: {
        // global, domain (DID), device (SID [+ FM]): the context cache only
        if (q.g === 1) return this.context.dropIf(() => true)
        if (q.g === 2) return this.context.dropIf((e) => e.did === q.did)
        if (q.g === 3) {
          // FM: which low function bits of the SID are ignored
          const fm = [0, 4, 6, 7][q.fm]
          return this.context.dropIf((e) => (e.sid & ~fm) === (q.sid & ~fm))
        }
        return 0
      }
      case DESC_TYPE.IOTLB: {
        if (q.g === 1) return this.iotlb.dropIf(() => true) + this.pde.dropIf(() => true)
        // second-stage-only entries of the DID (in range for PSI), and the nested entries tagged with it;
        // first-stage-only entries are PASID-tagged and left to P_IOTLB
        const reach = (e: { did: number; kind: string }): boolean => e.did === q.did && (e.kind === 'second' || e.kind === 'nested')
        if (q.g === 2) return this.iotlb.dropIf(reach) + this.pde.dropIf(reach)
        if (q.g === 3) {
          const lo = q.addr & ~((1n << BigInt(12 + q.am)) - 1n)
          const hi = lo + (1n << BigInt(12 + q.am))
          const inScope = (e: { did: number; kind: string; base: bigint; size: bigint }): boolean => reach(e) && (e.kind === 'nested' || inRange(e.base, e.size, lo, hi))
          return this.iotlb.dropIf(inScope) + (q.ih ? 0 : this.pde.dropIf(inScope))
        }
        return 0
      }
      case DESC_TYPE.P_IOTLB: {
        const reach = (e: { did: number; pasid?: number; kind: string }): boolean => e.did === q.did && e.pasid === q.pasid && e.kind !== 'second'
        // global applies to leaves: the PASID's paging-structure entries all go
        if (q.g === 2) return this.iotlb.dropIf((e) => reach(e) && !e.global) + this.pde.dropIf(reach)
        if (q.g === 3) {
          const lo = q.addr & ~((1n << BigInt(12 + q.am)) - 1n)
          const hi = lo + (1n << BigInt(12 + q.am))
          const inScope = (e: { did: number; pasid?: number; kind: string; base: bigint; size: bigint }): boolean => reach(e) && inRange(e.base, e.size, lo, hi)
          return this.iotlb.dropIf(inScope) + (q.ih ? 0 : this.pde.dropIf(inScope))
        }
        return 0
      }
      case DESC_TYPE.PC: {
        if (q.g === 3) return this.pasid.dropIf(() => true)
        if (q.g === 0) return this.pasid.dropIf((e) => e.did === q.did)
        if (q.g === 1) return this.pasid.dropIf((e) => e.did === q.did && e.pasid === q.pasid)
        return 0
      }
      case DESC_TYPE.DEV_IOTLB: {
        // an ATS invalidation without a PASID prefix reaches every entry of the function in the span
        const { lo, hi } = devTlbSpan(q.addr, q.s)
        return this.devtlb.dropIf((e) => e.sid === q.sid && inRange(e.base, e.size, lo, hi))
      }
      case DESC_TYPE.DEV_IOTLB_PASID: {
        const { lo, hi } = devTlbSpan(q.addr, q.s)
        return this.devtlb.dropIf((e) => e.sid === q.sid && e.pasid === q.pasid && inRange(e.base, e.size, lo, hi))
      }
      default:
        return 0
    }
  }

  dumpIotlb(name: string): string {
    const rows = [...this.iotlb.values()].map(
      (e) => `did=${e.did} pasid=${e.pasid === undefined ? '-' : hex(e.pasid)} ${e.kind} iova=${hex(e.base)} size=${hex(e.size)} pa=${hex(e.out)} ${describePerms(e.perms)}${e.global ? ' global' : ''} since=${e.since}`,
    )
    return `${name}: iotlb ${rows.length}/${this.sizes.iotlb} hits=${this.hits} misses=${this.misses}\n${rows.map((r) => `${r}\n`).join('')}`
  }

  dumpPde(name: string): string {
    const rows = [...this.pde.values()].map(
      (e) => `did=${e.did} pasid=${e.pasid === undefined ? '-' : hex(e.pasid)} ${e.kind} level=${e.level} iova=${hex(e.base)} size=${hex(e.size)} next=${hex(e.next)} ${pdePerms(e)} since=${e.since}`,
    )
    return `${name}: paging-structure caches ${rows.length}/${this.pde.capacity} hits=${this.pdeHits} misses=${this.pdeMisses}\n${rows.map((r) => `${r}\n`).join('')}`
  }

  pdeJson(): unknown {
    const entries = [...this.pde.values()].map((e) => ({ did: e.did, pasid: e.pasid === undefined ? null : e.pasid, kind: e.kind, level: e.level, iova: hex(e.base), size: hex(e.size), next: hex(e.next), perms: pdePerms(e), since: e.since }))
    return { capacity: this.pde.capacity, hits: this.pdeHits, misses: this.pdeMisses, entries }
  }

  dumpConfig(name: string): string {
    const ctx = [...this.context.values()].map((e) => `context sid=${hex(e.sid)} did=${e.did} lo=${hex(e.ctx.words[0], 16)} hi=${hex(e.ctx.words[1], 16)} since=${e.since}`)
    const pc = [...this.pasid.values()].map((e) => `pasid sid=${hex(e.sid)} pasid=${hex(e.pasid)} did=${e.did} pgtt=${e.pc.pgtt} w0=${hex(e.pc.words[0], 16)} since=${e.since}`)
    return `${name}: context ${ctx.length}/${this.sizes.context} pasid ${pc.length}/${this.sizes.pasid}\n${[...ctx, ...pc].map((r) => `${r}\n`).join('')}`
  }

  dumpDevTlb(name: string): string {
    const rows = [...this.devtlb.values()].map((e) => `sid=${hex(e.sid)} pasid=${e.pasid === undefined ? '-' : hex(e.pasid)} iova=${hex(e.base)} size=${hex(e.size)} pa=${hex(e.out)} ${describePerms(e.perms)} since=${e.since}`)
    return `${name}: dev_tlb ${rows.length}/${this.sizes.devtlb}\n${rows.map((r) => `${r}\n`).join('')}`
  }

  /** The caches as plain data (iotlb.json, config_cache.json, dev_tlb.json): addresses as hex strings. */
  iotlbJson(): unknown {
    const entries = [...this.iotlb.values()].map((e) => ({
      did: e.did,
      pasid: e.pasid === undefined ? null : e.pasid,
      kind: e.kind,
      iova: hex(e.base),
      size: hex(e.size),
      pa: hex(e.out),
      perms: describePerms(e.perms),
      global: e.global,
      since: e.since,
    }))
    return { capacity: this.sizes.iotlb, hits: this.hits, misses: this.misses, entries }
  }

  configJson(): unknown {
    return {
      context: { capacity: this.sizes.context, entries: [...this.context.values()].map((e) => ({ sid: hex(e.sid), did: e.did, lo: hex(e.ctx.words[0], 16), hi: hex(e.ctx.words[1], 16), since: e.since })) },
      pasid: { capacity: this.sizes.pasid, entries: [...this.pasid.values()].map((e) => ({ sid: hex(e.sid), pasid: e.pasid, did: e.did, pgtt: e.pc.pgtt, w0: hex(e.pc.words[0], 16), since: e.since })) },
    }
  }

  devTlbJson(): unknown {
    const entries = [...this.devtlb.values()].map((e) => ({ sid: hex(e.sid), pasid: e.pasid === undefined ? null : e.pasid, iova: hex(e.base), size: hex(e.size), pa: hex(e.out), perms: describePerms(e.perms), since: e.since }))
    return { capacity: this.sizes.devtlb, entries }
  }
}
