import { hex, pageOf } from '../bits'
import { Lru, LruNode } from '../lru'
import { Command, field, opcodeName, opcodeOf } from './commands'
import { ContextConfig, Step, StreamConfig, WalkCache, WalkEntry, WalkTag, describePerms } from './walk'

/**
 * An SMMUv3's caches, tagged as the architecture tags them (§2.1 of the
 * reference, SPEC 3.17): a TLB of leaf translations by {VMID, ASID or
 * global, address} and stage (stage-1, combined stage 1+2, stage-2 only),
 * configuration caches (STE by StreamID, CD by StreamID+SubstreamID), and
 * the ATCs of ATS-capable endpoints by {StreamID, PASID}, and the walk
 * caches (table descriptors: stage 1 by {VMID, ASID, address above their
 * level, granule}, stage 2 by {VMID, IPA above their level, granule}). Each
 * is LRU with a fixed capacity. invalidate() applies one command's scope,
 * no more, no less: a TLBI by address drops walk-cache entries only with
 * Leaf = 0, and with a TTL only those above the leaf level it names.
 */

export type TlbKind = 'S1' | 'S12' | 'S2'

export interface TlbEntry {
  readonly kind: TlbKind
  readonly vmid: number
  /** undefined: a global entry (nG = 0), matching every ASID. */
  readonly asid?: number
  /** Input address (VA, or IPA for S2) the entry starts at, aligned to size. */
  readonly base: bigint
  readonly size: bigint
  readonly level: number
  /** Granule shift of the tables the entry came from (range TLBI's TG matches it). */
  readonly granule: number
  readonly out: bigint
  readonly perms: number
  /** When it was filled (the unit's clock). */
  readonly since: number
  /** The transaction that filled it and the descriptors it was built from (the sanitizer compares them). */
  readonly sid: number
  readonly ssid?: number
  readonly steps: readonly Step[]
}

export interface SteEntry {
  readonly sid: number
  readonly stream: StreamConfig
  readonly steps: readonly Step[]
  readonly since: number
  /** The STE's words as 32-bit halves, low first (the sanitizer compares them with memory in place). */
  readonly halves?: readonly number[]
}

export interface CdEntry {
  readonly sid: number
  readonly ssid: number
  readonly context: ContextConfig
  readonly steps: readonly Step[]
  readonly since: number
  /** The CD's words as 32-bit halves, low first. */
  readonly halves?: readonly number[]
}

export interface AtcEntry {
  readonly sid: number
  /** undefined: a translation for requests without a PASID. */
  readonly ssid?: number
  readonly base: bigint
  readonly size: bigint
  readonly out: bigint
  readonly perms: number
  readonly since: number
}

export interface CacheSizes {
  readonly tlb: number
  readonly ste: number
  readonly cd: number
  readonly atc: number
  /** Walk caches (table descriptors of both stages). */
  readonly walk: number
}

export const DEFAULT_CACHE_SIZES: CacheSizes = { tlb: 2048, ste: 256, cd: 256, atc: 64, walk: 256 }

/** The CD cache's key: StreamID and SubstreamID. */
export function cdKey(sid: number, ssid: number): number {
  return sid * 2 ** 20 + ssid
}

function tlbKey(stage2: boolean, vmid: number, asid: number | undefined, base: bigint, size: bigint): string {
  return `${stage2 ? 2 : 1}/${vmid}/${asid ?? 'g'}/${base}/${size}`
}

/** A number naming a TLB entry's tags: stage-2-only or not, VMID, ASID (0x10000 = global). */
function tagOf(stage2: boolean, vmid: number, asid: number | undefined): number {
  return (stage2 ? 2 ** 34 : 0) + vmid * 2 ** 17 + (asid ?? 0x10000)
}

/** The address span a TLBI covers: one address (TG = 0), or the range form's (NUM+1) x 2^SCALE granules. */
export interface TlbiSpan {
  readonly start: bigint
  readonly end: bigint
  /** Only entries from tables of this granule (range form). */
  readonly granule?: number
  /** Only leaves at this level (TTL hint). */
  readonly ttl?: number
}

export function tlbiSpan(cmd: Command): TlbiSpan {
  const addr = field(cmd, 'addr')
  const tg = Number(field(cmd, 'tg'))
  const ttl = Number(field(cmd, 'ttl'))
  if (tg === 0) return { start: addr, end: addr + 1n }
  const granule = [0, 12, 14, 16][tg]
  const len = (field(cmd, 'num') + 1n) << (field(cmd, 'scale') + BigInt(granule))
  return { start: addr, end: addr + len, granule, ttl: ttl || undefined }
}

/** A walk-cache entry a Leaf = 0 TLBI reaches: its span meets the range, its granule is the range's, and it lies above the TTL level. */
function walkHit(e: WalkEntry, s: TlbiSpan): boolean {
  if (s.granule !== undefined && e.granule !== s.granule) return false
  if (s.ttl !== undefined && e.level >= s.ttl) return false
  return e.base < s.end && s.start < e.base + e.size
}

function walkKey(tag: WalkTag, granule: number, level: number, index: number): string {
  return `${tag.kind}/${tag.vmid}/${tag.asid ?? '-'}/${granule}/${level}/${index}`
}

function hits(e: { base: bigint; size: bigint; granule?: number; level?: number }, s: TlbiSpan): boolean {
  if (s.granule !== undefined && e.granule !== undefined && e.granule !== s.granule) return false
  if (s.ttl !== undefined && e.level !== undefined && e.level !== s.ttl) return false
  return e.base < s.end && s.start < e.base + e.size
}

export class Smmuv3Caches implements WalkCache {
  readonly tlb: Lru<string, TlbEntry>
  readonly walk: Lru<string, WalkEntry>
  walkHits = 0
  walkMisses = 0
  /** The fill clock of walk-cache entries (the unit's clock when it has one). */
  clock: () => number = () => ++this.ticks
  private ticks = 0
  /** tag -> (entry size in pages, first page number -> entry), sizes in the order first filled: lookups without building keys. */
  private readonly index = new Map<number, { readonly pages: number; readonly byBase: Map<number, LruNode<string, TlbEntry>> }[]>()
  readonly ste: Lru<number, SteEntry>
  readonly cd: Lru<number, CdEntry>
  readonly atc: Lru<string, AtcEntry>
  /** The leaf sizes present in the TLB (a lookup tries each). */
  private readonly sizes = new Set<bigint>()
  hits = 0
  misses = 0

  constructor(readonly sizesCfg: CacheSizes = DEFAULT_CACHE_SIZES) {
    this.tlb = new Lru(sizesCfg.tlb, (e) => this.unindex(e))
    this.ste = new Lru(sizesCfg.ste)
    this.cd = new Lru(sizesCfg.cd)
    this.atc = new Lru(sizesCfg.atc)
    this.walk = new Lru(sizesCfg.walk)
  }

  lookupWalk(tag: WalkTag, granule: number, input: number, start: number): WalkEntry | undefined {
    const bpl = granule - 3
    for (let level = 2; level >= start; level--) {
      // the input address above this level's descriptors (exact: a power-of-two division of an integer below 2^53)
      const index = Math.floor(input / 2 ** (granule + bpl * (3 - level)))
      const e = this.walk.get(walkKey(tag, granule, level, index))
      if (e) {
        this.walkHits++
        return e
      }
    }
    this.walkMisses++
    return undefined
  }

  fillWalk(e: Omit<WalkEntry, 'since'>): void {
    this.walk.set(walkKey(e, e.granule, e.level, Number(e.base / e.size)), { ...e, since: this.clock() })
  }

  /** A leaf for (VMID, ASID) covering `addr` (stage-1 or combined), or a stage-2 entry for an IPA. */
  lookup(stage2: boolean, vmid: number, asid: number | undefined, addr: bigint): TlbEntry | undefined {
    const page = pageOf(addr)
    const hit = (asid !== undefined ? this.find(tagOf(stage2, vmid, asid), page) : undefined) ?? this.find(tagOf(stage2, vmid, undefined), page)
    if (!hit) return undefined
    this.tlb.touch(hit)
    return hit.v
  }

  private find(tag: number, page: number): LruNode<string, TlbEntry> | undefined {
    const bySize = this.index.get(tag)
    if (!bySize) return undefined
    for (let i = 0; i < bySize.length; i++) {
      const e = bySize[i].byBase.get(page - (page % bySize[i].pages))
      if (e) return e
    }
    return undefined
  }

  fill(e: TlbEntry): void {
    this.sizes.add(e.size)
    const tag = tagOf(e.kind === 'S2', e.vmid, e.asid)
    const pages = Number(e.size >> 12n)
    let bySize = this.index.get(tag)
    if (!bySize) this.index.set(tag, (bySize = []))
    let byBase = bySize.find((s) => s.pages === pages)?.byBase
    if (!byBase) bySize.push({ pages, byBase: (byBase = new Map()) })
    // the same tags and address replace the old entry under the same key
    byBase.set(Number(e.base >> 12n), this.tlb.set(tlbKey(e.kind === 'S2', e.vmid, e.asid, e.base, e.size), e))
  }

  private unindex(e: TlbEntry): void {
    const tag = tagOf(e.kind === 'S2', e.vmid, e.asid)
    const pages = Number(e.size >> 12n)
    const byBase = this.index.get(tag)?.find((s) => s.pages === pages)?.byBase
    if (byBase?.get(Number(e.base >> 12n))?.v === e) byBase.delete(Number(e.base >> 12n))
  }

  atcLookup(sid: number, ssid: number | undefined, addr: bigint): AtcEntry | undefined {
    for (const e of this.atc.values()) if (e.sid === sid && e.ssid === ssid && addr >= e.base && addr < e.base + e.size) return this.atc.get(atcKey(e))
    return undefined
  }

  atcFill(e: AtcEntry): void {
    this.atc.set(atcKey(e), e)
  }

  /** Applies one command's invalidation scope (SPEC 4.3-4.5); returns the entries dropped. */
  invalidate(cmd: Command): number {
    const name = opcodeName(opcodeOf(cmd))
    const vmid = Number(field(cmd, 'vmid'))
    const asid = Number(field(cmd, 'asid'))
    const sid = Number(field(cmd, 'sid'))
    const s1 = (e: { kind: string; vmid: number }): boolean => e.kind !== 'S2' && e.vmid === vmid
    // Leaf = 1: last-level entries only; the walk caches keep theirs
    const walks = field(cmd, 'leaf') === 0n
    switch (name) {
      case 'TLBI_NH_ALL':
        return this.tlb.dropIf(s1) + this.walk.dropIf(s1)
      case 'TLBI_NH_ASID':
        return this.tlb.dropIf((e) => s1(e) && e.asid === asid) + this.walk.dropIf((e) => s1(e) && e.asid === asid)
      case 'TLBI_NH_VA': {
        const span = tlbiSpan(cmd)
        return this.tlb.dropIf((e) => s1(e) && (e.asid === asid || e.asid === undefined) && hits(e, span)) + (walks ? this.walk.dropIf((e) => s1(e) && e.asid === asid && walkHit(e, span)) : 0)
      }
      case 'TLBI_NH_VAA': {
        const span = tlbiSpan(cmd)
        return this.tlb.dropIf((e) => s1(e) && hits(e, span)) + (walks ? this.walk.dropIf((e) => s1(e) && walkHit(e, span)) : 0)
      }
      case 'TLBI_S2_IPA': {
        const span = tlbiSpan(cmd)
        const s2 = (e: { kind: string; vmid: number }): boolean => e.kind === 'S2' && e.vmid === vmid
        return this.tlb.dropIf((e) => s2(e) && hits(e, span)) + (walks ? this.walk.dropIf((e) => s2(e) && walkHit(e, span)) : 0)
      }
      case 'TLBI_S12_VMALL':
        return this.tlb.dropIf((e) => e.vmid === vmid) + this.walk.dropIf((e) => e.vmid === vmid)
      case 'TLBI_NSNH_ALL':
        return this.tlb.dropIf(() => true) + this.walk.dropIf(() => true)
      case 'CFGI_STE':
        return this.ste.dropIf((e) => e.sid === sid) + this.cd.dropIf((e) => e.sid === sid)
      case 'CFGI_ALL': {
        const range = Number(field(cmd, 'range'))
        if (range >= 31) return this.ste.dropIf(() => true) + this.cd.dropIf(() => true)
        const span = 2 ** (range + 1)
        const lo = sid - (sid % span)
        const inRange = (e: { sid: number }): boolean => e.sid >= lo && e.sid < lo + span
        return this.ste.dropIf(inRange) + this.cd.dropIf(inRange)
      }
      case 'CFGI_CD': {
        const ssid = Number(field(cmd, 'ssid'))
        return this.cd.dropIf((e) => e.sid === sid && e.ssid === ssid)
      }
      case 'CFGI_CD_ALL':
        return this.cd.dropIf((e) => e.sid === sid)
      case 'ATC_INV': {
        const size = field(cmd, 'size')
        const all = size >= 52n
        const span = 4096n << size
        const start = field(cmd, 'addr') & ~(span - 1n)
        const ssv = field(cmd, 'ssv') === 1n
        const ssid = Number(field(cmd, 'ssid'))
        return this.atc.dropIf((e) => e.sid === sid && (!ssv || e.ssid === ssid) && (all || (e.base < start + span && start < e.base + e.size)))
      }
      default:
        // EL2/EL3 regimes are never filled here; PREFETCH, PRI_RESP, RESUME, SYNC drop nothing
        return 0
    }
  }

  /** Text dumps for the debug tree, one entry a line. */
  dumpTlb(): string {
    const rows = [...this.tlb.values()].map(
      (e) =>
        `${e.kind.padEnd(3)} vmid=${e.vmid} asid=${e.asid ?? 'global'} addr=${hex(e.base)} size=${hex(e.size)} level=${e.level} granule=${1 << e.granule} out=${hex(e.out)} ${describePerms(e.perms)} since=${e.since}`,
    )
    return `TLB: ${this.tlb.size}/${this.tlb.capacity} entries, ${this.hits} hits, ${this.misses} misses\n${rows.map((r) => `${r}\n`).join('')}`
  }

  dumpWalk(): string {
    const rows = [...this.walk.values()].map(
      (e) => `${e.kind} vmid=${e.vmid} asid=${e.asid ?? '-'} addr=${hex(e.base)} size=${hex(e.size)} level=${e.level} granule=${1 << e.granule} next=${hex(e.next)} since=${e.since}`,
    )
    return `walk cache: ${this.walk.size}/${this.walk.capacity} entries, ${this.walkHits} hits, ${this.walkMisses} misses\n${rows.map((r) => `${r}\n`).join('')}`
  }

  walkJson(): unknown {
    const entries = [...this.walk.values()].map((e) => ({ stage: e.kind, vmid: e.vmid, asid: e.asid ?? null, addr: hex(e.base), size: hex(e.size), level: e.level, granule: 1 << e.granule, next: hex(e.next), since: e.since }))
    return { capacity: this.walk.capacity, hits: this.walkHits, misses: this.walkMisses, entries }
  }

  dumpConfig(): string {
    const ste = [...this.ste.values()].map((e) => `STE sid=${hex(e.sid)} config=${e.stream.config} vmid=${e.stream.vmid} addr=${hex(e.stream.steAddr)} since=${e.since}`)
    const cd = [...this.cd.values()].map((e) => `CD  sid=${hex(e.sid)} ssid=${hex(e.ssid)} asid=${e.context.asid} addr=${hex(e.context.cdAddr)} since=${e.since}`)
    return `STE cache: ${this.ste.size}/${this.ste.capacity}, CD cache: ${this.cd.size}/${this.cd.capacity}\n${[...ste, ...cd].map((r) => `${r}\n`).join('')}`
  }

  dumpAtc(): string {
    const rows = [...this.atc.values()].map((e) => `sid=${hex(e.sid)} pasid=${e.ssid ?? 'none'} addr=${hex(e.base)} size=${hex(e.size)} out=${hex(e.out)} ${describePerms(e.perms)} since=${e.since}`)
    return `ATC: ${this.atc.size}/${this.atc.capacity}\n${rows.map((r) => `${r}\n`).join('')}`
  }

  /** The caches as plain data (tlb.json, config_cache.json, atc.json): addresses as hex strings. */
  tlbJson(): unknown {
    const entries = [...this.tlb.values()].map((e) => ({
      stage: e.kind,
      vmid: e.vmid,
      asid: e.asid ?? 'global',
      addr: hex(e.base),
      size: hex(e.size),
      level: e.level,
      granule: 1 << e.granule,
      out: hex(e.out),
      perms: describePerms(e.perms),
      since: e.since,
    }))
    return { capacity: this.tlb.capacity, hits: this.hits, misses: this.misses, entries }
  }

  configJson(): unknown {
    return {
      ste: { capacity: this.ste.capacity, entries: [...this.ste.values()].map((e) => ({ sid: hex(e.sid), config: e.stream.config, vmid: e.stream.vmid, addr: hex(e.stream.steAddr), since: e.since })) },
      cd: { capacity: this.cd.capacity, entries: [...this.cd.values()].map((e) => ({ sid: hex(e.sid), ssid: hex(e.ssid), asid: e.context.asid, addr: hex(e.context.cdAddr), since: e.since })) },
    }
  }

  atcJson(): unknown {
    const entries = [...this.atc.values()].map((e) => ({ sid: hex(e.sid), pasid: e.ssid ?? null, addr: hex(e.base), size: hex(e.size), out: hex(e.out), perms: describePerms(e.perms), since: e.since }))
    return { capacity: this.atc.capacity, entries }
  }
}

function atcKey(e: { sid: number; ssid?: number; base: bigint; size: bigint }): string {
  return `${e.sid}/${e.ssid ?? '-'}/${e.base}/${e.size}`
}
