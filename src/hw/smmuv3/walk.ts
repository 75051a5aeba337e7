import { isAbort } from '../../memory/backing'
import { OutcomeError } from '../../util/errno'
import { Halves, MemoryPort, loadHalves } from '../../memory/physical'
import { Decodes } from '../decodes'
import { Bits, get, getN, hex, hi32, join64, lo32, pow2 } from '../bits'
import { CD0, CD1, CD2, L1CD, PS_BITS, S2TG_SHIFT, TG0_SHIFT, TG1_SHIFT } from './cd'
import { EventClass, EventName, SmmuEvent } from './events'
import { D, Geometry, GranuleShift } from './pgtable'
import { L1STD, STE0, STE1, STE2, STE3 } from './ste'

/**
 * The SMMUv3 translation of one transaction, as the architecture defines it
 * (§3.3, §5, §7.3.22): stream table -> STE -> (CD, through stage 2 when
 * nested) -> stage-1 walk (each table access through stage 2 when nested) ->
 * stage-2 walk; access flag and dirty-state updates; the one event a failing
 * transaction records. It reads memory only: caching is tlb.ts's job.
 */

/** Allowed accesses, as bits: privileged R/W/X, then unprivileged R/W/X. */
export const PERM = { PR: 1, PW: 2, PX: 4, UR: 8, UW: 16, UX: 32 } as const
export const PERM_ALL = 63

export function describePerms(p: number): string {
  const one = (r: number, w: number, x: number): string => `${p & r ? 'r' : '-'}${p & w ? 'w' : '-'}${p & x ? 'x' : '-'}`
  return `priv:${one(PERM.PR, PERM.PW, PERM.PX)} user:${one(PERM.UR, PERM.UW, PERM.UX)}`
}

/** The access a transaction makes. */
export interface Access {
  readonly write: boolean
  readonly exec?: boolean
  readonly priv?: boolean
}

export function permFor(a: Access): number {
  if (a.priv) return a.exec ? PERM.PX : a.write ? PERM.PW : PERM.PR
  return a.exec ? PERM.UX : a.write ? PERM.UW : PERM.UR
}

export interface Transaction extends Access {
  readonly sid: number
  readonly ssid?: number
  readonly addr: bigint
  /** An ATS translation request: it never stalls (§5.5). */
  readonly ats?: boolean
}

/** One memory read of the walk, for the user to see. */
export interface Step {
  readonly what: 'l1std' | 'ste' | 'l1cd' | 'cd' | 's1' | 's2'
  readonly level: number
  /** The table (or structure) base, in the address space that names it. */
  readonly table: bigint
  /** The physical address read. */
  readonly addr: bigint
  readonly desc: bigint
  /** Bits the walk set in the descriptor (AF, dirty), if any. */
  readonly updated?: bigint
}

export function describeStep(s: Step): string {
  const lvl = s.what === 's1' || s.what === 's2' ? ` level=${s.level}` : ''
  const upd = s.updated !== undefined ? ` updated=${hex(s.updated)}` : ''
  return `${s.what}${lvl} table=${hex(s.table)} addr=${hex(s.addr)} desc=${hex(s.desc, 16)}${upd}`
}

/** How the stream table is programmed (SMMU_STRTAB_BASE / _BASE_CFG). */
export interface StreamTable {
  readonly base: bigint
  readonly log2size: number
  /** 0 = linear; otherwise the 2-level SPLIT (6, 8 or 10). */
  readonly split: number
}

/** What the SMMU implements (from its ID registers). */
export interface Features {
  readonly s1: boolean
  readonly s2: boolean
  /** IDR0.HTTU: 0 none, 1 AF, 2 AF and dirty. */
  readonly httu: number
  readonly oasBits: number
  readonly ssidBits: number
  /** IDR0.STALL_MODEL: 0 stall and terminate, 1 terminate only, 2 stall forced (absent: 1). */
  readonly stallModel?: number
}

/** Where a stalling fault gets its STAG: undefined when no more transactions can be held (it terminates instead). */
export interface StagSource {
  take(sid: number): number | undefined
}

/** The faults the A/R/S fault configuration applies to (§5.5); every other one terminates. */
const STALLABLE: ReadonlySet<EventName> = new Set(['F_TRANSLATION', 'F_ADDR_SIZE', 'F_ACCESS', 'F_PERMISSION'])

/** One stage's translation regime, decoded from an STE or CD. */
export interface Regime {
  readonly stage: 1 | 2
  readonly geometry: Geometry
  readonly ttb: bigint
  /** The same as a number (at most 52 bits): walks run in numbers. */
  readonly ttbNum: number
  readonly oasBits: number
  readonly ha: boolean
  readonly hd: boolean
  readonly affd: boolean
  readonly record: boolean
  /** CD.S / STE.S2S: a translation-related fault stalls the transaction. */
  readonly stall: boolean
  /** Stage 1 only: the input region is TTB1's (addresses counted down from 2^64). */
  readonly upper?: boolean
}

export interface StreamConfig {
  readonly steAddr: bigint
  readonly ste: readonly bigint[]
  readonly config: 'abort' | 'bypass' | 's1' | 's2' | 'nested'
  readonly vmid: number
  readonly s2?: Regime
  readonly cdMax: number
  readonly cdFmt: number
  readonly ctxPtr: bigint
  readonly s1dss: number
  readonly eats: number
  readonly s1stalld: boolean
}

export interface ContextConfig {
  readonly cdAddr: bigint
  readonly cd: readonly bigint[]
  readonly asid: number
  readonly tt0?: Regime
  readonly tt1?: Regime
  readonly t0sz: number
  readonly t1sz: number
  /** CD.S. */
  readonly stall: boolean
}

/** A stage's successful result. */
export interface StageOk {
  readonly out: bigint
  readonly level: number
  /** Bytes the leaf maps. */
  readonly size: bigint
  readonly perms: number
  readonly global: boolean
}

export type Fault = { readonly event: SmmuEvent; readonly steps: Step[] }

/** What a walk-cache entry is tagged with: stage-1 entries by VMID and ASID, stage-2 entries by VMID. */
export interface WalkTag {
  readonly kind: 'S1' | 'S2'
  readonly vmid: number
  readonly asid?: number
}

/**
 * A walk-cache entry: a table descriptor read at `level` for input addresses
 * [base, base+size), with the hierarchical attributes gathered down to it
 * (stage 1), so a walk may resume in `next` at level + 1.
 */
export interface WalkEntry extends WalkTag {
  readonly level: number
  readonly granule: number
  readonly base: bigint
  readonly size: bigint
  /** The next table (an IPA for a nested stage 1, read through stage 2). */
  readonly next: number
  /** APTable/XNTable/PXNTable so far (upper-half bit positions). */
  readonly tableBits: number
  readonly since: number
  /** The descriptors of this stage from its root down to this entry (the sanitizer compares them). */
  readonly steps: readonly Step[]
}

/** Where walks find and leave walk-cache entries. */
export interface WalkCache {
  /** The deepest entry covering `input` for the tags and granule, at or below `start`'s level, counting a hit or a miss. */
  lookupWalk(tag: WalkTag, granule: number, input: number, start: number): WalkEntry | undefined
  fillWalk(e: Omit<WalkEntry, 'since'>): void
}

/** A finished translation: where the access goes and everything a cache would tag it with. */
export interface Translation {
  readonly kind: 'bypass' | 'S1' | 'S2' | 'S12'
  readonly out: bigint
  /** The input region this result covers (aligned), for caching. */
  readonly base: bigint
  readonly size: bigint
  readonly level: number
  /** Granule shift of the tables the leaf came from. */
  readonly granule: number
  readonly perms: number
  readonly vmid: number
  readonly asid?: number
  readonly global: boolean
  readonly steps: Step[]
  readonly stream: StreamConfig
  readonly context?: ContextConfig
}

/** A Translation made in one literal (one object shape: spreads here cost more than the walk). */
function translation(
  kind: Translation['kind'],
  stream: StreamConfig,
  context: ContextConfig | undefined,
  steps: Step[],
  out: bigint,
  base: bigint,
  size: bigint,
  level: number,
  granule: number,
  perms: number,
  asid: number | undefined,
  global: boolean,
): Translation & { ok: true } {
  return { ok: true, kind, out, base, size, level, granule, perms, vmid: stream.vmid, asid, global, steps, stream, context }
}

export type WalkResult = ({ ok: true } & Translation) | ({ ok: false } & Fault)

function rangeOf(v: number, lo: number, hi: number): boolean {
  return v >= lo && v <= hi
}

class WalkFault extends OutcomeError {
  constructor(readonly event: SmmuEvent) {
    super(event.name)
  }
}

/** Walks one transaction through the tables in `mem`. */
export class Smmuv3Walker {
  /** Walk without writing back AF/dirty updates or using walk caches (the sanitizer's second look must not change memory). */
  dryRun = false
  /** The walk caches translations resume from (none: every walk starts at the root). */
  walkCache: WalkCache | undefined
  /** The walk-cache entry the last translateWith() resumed from, if any. */
  walkUsed: WalkEntry | undefined
  /** walkStage()'s result, and the descriptor it read last as halves. */
  private rOut = 0
  private rLevel = 0
  private rPerms = 0
  private rGlobal = false
  private readonly d: Halves = { lo: 0, hi: 0 }
  /** readWords()'s words as 32-bit halves. */
  private halves: readonly number[] = []
  /** STAGs for stalled transactions (none: no transaction stalls). */
  stags: StagSource | undefined
  /** STEs and CDs decoded before, reused while memory still holds the same words. */
  private readonly steDecodes = new Decodes<StreamConfig>(16)
  private readonly cdDecodes = new Decodes<ContextConfig>(16)

  constructor(readonly mem: MemoryPort, readonly features: Features) {}

  private get stallModel(): number {
    return this.features.stallModel ?? 1
  }

  translate(txn: Transaction, strtab: StreamTable): WalkResult {
    const steps: Step[] = []
    try {
      const stream = this.stream(txn, strtab, steps)
      return this.translateWith(txn, stream, undefined, steps)
    } catch (e) {
      if (e instanceof WalkFault) return { ok: false, event: e.event, steps }
      throw e
    }
  }

  /** The translation given a decoded stream (and context, if already known): the cache-hit path of config caches. */
  translateWith(txn: Transaction, stream: StreamConfig, known: ContextConfig | undefined, steps: Step[]): Translation & { ok: true } {
    this.walkUsed = undefined
    if (stream.config === 'abort') throw this.fault(txn, 'C_BAD_STE', 'STE.Config = abort: terminated without an event', { recorded: false })
    if (txn.ssid !== undefined && (stream.config === 'bypass' || stream.config === 's2')) throw this.fault(txn, 'C_BAD_SUBSTREAMID', 'a SubstreamID on a stream with stage 1 disabled')
    const bypass = (): Translation & { ok: true } => translation('bypass', stream, undefined, steps, txn.addr, txn.addr & ~0xfffn, 0x1000n, 3, 12, PERM_ALL, undefined, true)
    const s2only = (): Translation & { ok: true } => {
      const r = this.stage(stream.s2!, txn.addr, txn, txn, 'IN', steps, undefined, { kind: 'S2', vmid: stream.vmid })
      return translation('S2', stream, undefined, steps, r.out, txn.addr & ~(r.size - 1n), r.size, r.level, stream.s2!.geometry.granule, r.perms, undefined, true)
    }
    if (stream.config === 'bypass') return bypass()
    if (stream.config === 's2') return s2only()
    const ctx = known ?? this.context(txn, stream, steps)
    // S1DSS = bypass: stage 1 is skipped for a transaction without a SubstreamID
    if (!ctx) return stream.config === 's1' ? bypass() : s2only()
    const regime = this.s1Regime(txn, ctx)
    const s1 = this.stage(regime, txn.addr, txn, txn, 'IN', steps, stream.config === 'nested' ? stream.s2 : undefined, regime.upper ? undefined : { kind: 'S1', vmid: stream.vmid, asid: ctx.asid })
    let out = s1.out
    let size = s1.size
    let perms = s1.perms
    let level = s1.level
    if (stream.config === 'nested') {
      const s2 = this.stage(stream.s2!, s1.out, txn, txn, 'IN', steps, undefined, { kind: 'S2', vmid: stream.vmid })
      out = s2.out
      if (s2.size < size) {
        size = s2.size
        level = s2.level
      }
      perms &= s2.perms
    }
    const kind = stream.config === 'nested' ? 'S12' : 'S1'
    return translation(kind, stream, ctx, steps, out, txn.addr & ~(size - 1n), size, level, regime.geometry.granule, perms, s1.global ? undefined : ctx.asid, s1.global)
  }

  /** The STE for the transaction's StreamID, decoded and checked. */
  stream(txn: Transaction, strtab: StreamTable, steps: Step[]): StreamConfig {
    const sid = BigInt(txn.sid)
    let steAddr: bigint
    if (!strtab.split) {
      if (txn.sid >= pow2(strtab.log2size)) throw this.fault(txn, 'C_BAD_STREAMID', `StreamID ${hex(txn.sid)} is beyond the stream table (2^${strtab.log2size} entries)`)
      steAddr = strtab.base + sid * 64n
    } else {
      if (txn.sid >= pow2(strtab.log2size)) throw this.fault(txn, 'C_BAD_STREAMID', `StreamID ${hex(txn.sid)} is beyond the stream table (2^${strtab.log2size} entries)`)
      const l1Addr = strtab.base + (sid >> BigInt(strtab.split)) * 8n
      const l1 = this.read(l1Addr, txn, 'F_STE_FETCH', 'reading the L1STD')
      steps.push({ what: 'l1std', level: 1, table: strtab.base, addr: l1Addr, desc: l1 })
      const span = Number(get(l1, L1STD.SPAN))
      if (span === 0 || span > strtab.split + 1) throw this.fault(txn, 'C_BAD_STREAMID', `L1STD.Span=${span} (0 is invalid, at most SPLIT+1=${strtab.split + 1})`)
      const index = sid & ((1n << BigInt(strtab.split)) - 1n)
      if (index >= 1n << BigInt(span - 1)) throw this.fault(txn, 'C_BAD_STREAMID', `StreamID ${hex(txn.sid)}: L2 index ${index} is beyond the span (${1 << (span - 1)} STEs)`)
      steAddr = (get(l1, L1STD.L2PTR) << 6n) + index * 64n
    }
    const known = this.steDecodes.find(this.mem, steAddr, 0)
    if (known) {
      steps.push({ what: 'ste', level: 0, table: strtab.base, addr: steAddr, desc: known.ste[0] })
      return known
    }
    const ste = this.readWords(steAddr, 8, txn, 'F_STE_FETCH', 'reading the STE')
    steps.push({ what: 'ste', level: 0, table: strtab.base, addr: steAddr, desc: ste[0] })
    return this.steDecodes.keep(steAddr, 0, this.halves, this.decodeSte(txn, steAddr, ste, this.halves))
  }

  /** `h`: the same words as 32-bit halves (low first), decoded without BigInts. */
  private decodeSte(txn: Transaction, steAddr: bigint, ste: bigint[], h: readonly number[]): StreamConfig {
    const bad = (why: string): WalkFault => this.fault(txn, 'C_BAD_STE', why)
    const fieldOf = (w: number, f: Bits): number => getN(h[2 * w + 1], h[2 * w], f)
    if (!fieldOf(0, STE0.V)) throw bad('STE.V = 0')
    const cfgBits = fieldOf(0, STE0.CFG)
    const cdMax = fieldOf(0, STE0.S1CDMAX)
    // one literal per result (a spread of shared fields costs more than the walk)
    const config = (config: StreamConfig['config'], s2?: Regime): StreamConfig => ({
      steAddr,
      ste,
      config,
      vmid: fieldOf(2, STE2.S2VMID),
      s2,
      cdMax,
      cdFmt: fieldOf(0, STE0.S1FMT),
      ctxPtr: BigInt(fieldOf(0, STE0.S1CTXPTR) * 64),
      s1dss: fieldOf(1, STE1.S1DSS),
      eats: fieldOf(1, STE1.EATS),
      s1stalld: fieldOf(1, STE1.S1STALLD) === 1,
    })
    if (cfgBits < 4) return config('abort')
    if (cfgBits === 4) return config('bypass')
    const s1 = (cfgBits & 1) === 1
    const s2on = (cfgBits & 2) === 2
    if (s1 && !this.features.s1) throw bad('STE.Config enables stage 1, which this SMMU does not implement (IDR0.S1P = 0)')
    if (s2on && !this.features.s2) throw bad('STE.Config enables stage 2, which this SMMU does not implement (IDR0.S2P = 0)')
    if (s1 && this.stallModel !== 0 && fieldOf(1, STE1.S1STALLD)) throw bad(`STE.S1STALLD = 1 while IDR0.STALL_MODEL=${this.stallModel}`)
    if (s1 && cdMax > this.features.ssidBits) throw bad(`STE.S1CDMax=${cdMax} exceeds IDR1.SSIDSIZE=${this.features.ssidBits}`)
    const s2 = s2on ? this.decodeS2(h, bad) : undefined
    return config(s1 && s2on ? 'nested' : s1 ? 's1' : 's2', s2)
  }

  private decodeS2(h: readonly number[], bad: (why: string) => WalkFault): Regime {
    const fieldOf = (w: number, f: Bits): number => getN(h[2 * w + 1], h[2 * w], f)
    if (!fieldOf(2, STE2.S2AA64)) throw bad('STE.S2AA64 = 0: only VMSAv8-64 tables are supported')
    if (fieldOf(2, STE2.S2ENDI)) throw bad('STE.S2ENDI = 1: big-endian tables are not supported')
    const s2s = fieldOf(2, STE2.S2S) === 1
    if (s2s && this.stallModel === 1) throw bad('STE.S2S = 1: this SMMU does not stall (IDR0.STALL_MODEL=1)')
    if (!s2s && this.stallModel === 2) throw bad('STE.S2S = 0: this SMMU forces stalls (IDR0.STALL_MODEL=2)')
    const tg = S2TG_SHIFT[fieldOf(2, STE2.S2TG)] as GranuleShift | undefined
    if (!tg) throw bad('STE.S2TG = 3 is reserved')
    const t0sz = fieldOf(2, STE2.S2T0SZ)
    const ias = 64 - t0sz
    if (!rangeOf(t0sz, tg === 16 ? 12 : 16, 39)) throw bad(`STE.S2T0SZ=${t0sz} is outside ${tg === 16 ? 12 : 16}..39`)
    const sl0 = fieldOf(2, STE2.S2SL0)
    if (sl0 === 3) throw bad('STE.S2SL0 = 3 is reserved')
    const start = tg === 12 ? 2 - sl0 : 3 - sl0
    const geometry = Geometry.of(tg, ias, start)
    const topBits = ias - geometry.shift(start)
    if (topBits < 1 || topBits > geometry.bpl + 4) throw bad(`STE.S2SL0=${sl0} does not fit S2T0SZ=${t0sz} (start level ${start} would need ${topBits > 0 ? 2 ** Math.max(topBits - geometry.bpl, 0) : 0} concatenated tables)`)
    const ha = fieldOf(2, STE2.S2HA) === 1
    const hd = fieldOf(2, STE2.S2HD) === 1
    if ((ha && this.features.httu < 1) || (hd && this.features.httu < 2)) throw bad(`STE.S2HA/S2HD set beyond IDR0.HTTU=${this.features.httu}`)
    const oasBits = Math.min(PS_BITS[fieldOf(2, STE2.S2PS)], this.features.oasBits)
    const ttb = fieldOf(3, STE3.S2TTB) * 16
    if (ttb >= pow2(oasBits)) throw bad(`STE.S2TTB=${hex(ttb)} is beyond the ${oasBits}-bit output size`)
    return { stage: 2, geometry, ttb: BigInt(ttb), ttbNum: ttb, oasBits, ha, hd: ha && hd, affd: fieldOf(2, STE2.S2AFFD) === 1, record: fieldOf(2, STE2.S2R) === 1, stall: s2s }
  }

  /** The CD for the transaction (undefined: stage 1 bypassed by S1DSS). */
  context(txn: Transaction, stream: StreamConfig, steps: Step[]): ContextConfig | undefined {
    let ssid = txn.ssid
    if (stream.cdMax === 0) {
      if (ssid !== undefined) throw this.fault(txn, 'C_BAD_SUBSTREAMID', 'a SubstreamID with STE.S1CDMax = 0 (substreams disabled)')
      ssid = 0
    } else if (ssid === undefined) {
      if (stream.s1dss === 1) return undefined
      if (stream.s1dss !== 2) throw this.fault(txn, 'F_STREAM_DISABLED', 'no SubstreamID and STE.S1DSS = terminate')
      ssid = 0
    } else {
      if (ssid >= pow2(stream.cdMax)) throw this.fault(txn, 'C_BAD_SUBSTREAMID', `SubstreamID ${hex(ssid)} is at or beyond 2^S1CDMax (${2 ** stream.cdMax})`)
      if (ssid === 0 && stream.s1dss === 2) throw this.fault(txn, 'F_STREAM_DISABLED', 'SubstreamID 0 with STE.S1DSS = substream 0 (reserved for non-substream traffic)')
    }
    const nested = stream.config === 'nested'
    const fmt = stream.cdFmt === 3 ? 0 : stream.cdFmt
    const id = BigInt(ssid)
    let cdAddr: bigint
    if (stream.cdMax === 0 || fmt === 0) cdAddr = stream.ctxPtr + id * 64n
    else {
      const split = fmt === 1 ? 6n : 10n
      const l1Ipa = stream.ctxPtr + (id >> split) * 8n
      const l1Pa = nested ? this.stage(stream.s2!, l1Ipa, txn, { write: false }, 'CD', steps).out : l1Ipa
      const l1 = this.read(l1Pa, txn, 'F_CD_FETCH', 'reading the L1CD')
      steps.push({ what: 'l1cd', level: 1, table: stream.ctxPtr, addr: l1Pa, desc: l1 })
      if (!get(l1, L1CD.V)) throw this.fault(txn, 'C_BAD_SUBSTREAMID', `L1CD for SubstreamID ${hex(ssid)} is invalid (V = 0)`)
      cdAddr = (get(l1, L1CD.L2PTR) << 12n) + (id & ((1n << split) - 1n)) * 64n
    }
    const cdPa = nested ? this.stage(stream.s2!, cdAddr, txn, { write: false }, 'CD', steps).out : cdAddr
    const stalld = stream.s1stalld ? 1 : 0
    const known = this.cdDecodes.find(this.mem, cdPa, stalld)
    if (known) {
      steps.push({ what: 'cd', level: 0, table: stream.ctxPtr, addr: cdPa, desc: known.cd[0] })
      return known
    }
    const cd = this.readWords(cdPa, 8, txn, 'F_CD_FETCH', 'reading the CD')
    steps.push({ what: 'cd', level: 0, table: stream.ctxPtr, addr: cdPa, desc: cd[0] })
    return this.cdDecodes.keep(cdPa, stalld, this.halves, this.decodeCd(txn, cdPa, cd, this.halves, stream.s1stalld))
  }

  private decodeCd(txn: Transaction, cdAddr: bigint, cd: bigint[], h: readonly number[], s1stalld: boolean): ContextConfig {
    const bad = (why: string): WalkFault => this.fault(txn, 'C_BAD_CD', why)
    const fieldOf = (w: number, f: Bits): number => getN(h[2 * w + 1], h[2 * w], f)
    if (!fieldOf(0, CD0.V)) throw bad('CD.V = 0')
    if (!fieldOf(0, CD0.AA64)) throw bad('CD.AA64 = 0: only VMSAv8-64 tables are supported')
    if (!fieldOf(0, CD0.A)) throw bad('CD.A = 0: terminated transactions must abort')
    const stall = fieldOf(0, CD0.S) === 1
    if (stall && this.stallModel === 1) throw bad('CD.S = 1: this SMMU does not stall (IDR0.STALL_MODEL=1)')
    if (stall && s1stalld) throw bad('CD.S = 1 through an STE with S1STALLD = 1')
    if (!stall && this.stallModel === 2) throw bad('CD.S = 0: this SMMU forces stalls (IDR0.STALL_MODEL=2)')
    if (fieldOf(0, CD0.ENDI)) throw bad('CD.ENDI = 1: big-endian tables are not supported')
    const ha = fieldOf(0, CD0.HA) === 1
    const hd = fieldOf(0, CD0.HD) === 1
    if ((ha && this.features.httu < 1) || (hd && this.features.httu < 2)) throw bad(`CD.HA/HD set beyond IDR0.HTTU=${this.features.httu}`)
    const oasBits = Math.min(PS_BITS[fieldOf(0, CD0.IPS)], this.features.oasBits)
    const affd = fieldOf(0, CD0.AFFD) === 1
    const record = fieldOf(0, CD0.R) === 1
    const regime = (geometry: Geometry, ttb: number, upper?: boolean): Regime => ({ stage: 1, geometry, ttb: BigInt(ttb), ttbNum: ttb, oasBits, ha, hd: ha && hd, affd, record, stall, upper })
    const t0sz = fieldOf(0, CD0.T0SZ)
    const t1sz = fieldOf(0, CD0.T1SZ)
    let tt0: Regime | undefined
    let tt1: Regime | undefined
    if (!fieldOf(0, CD0.EPD0)) {
      const tg = TG0_SHIFT[fieldOf(0, CD0.TG0)] as GranuleShift | undefined
      if (!tg) throw bad('CD.TG0 = 3 is reserved')
      if (!rangeOf(t0sz, 16, 39)) throw bad(`CD.T0SZ=${t0sz} is outside 16..39`)
      const ttb = fieldOf(1, CD1.TTB0) * 16
      if (ttb >= pow2(oasBits)) throw bad(`CD.TTB0=${hex(ttb)} is beyond the ${oasBits}-bit output size`)
      tt0 = regime(Geometry.of(tg, 64 - t0sz), ttb)
    }
    if (!fieldOf(0, CD0.EPD1)) {
      const tg = TG1_SHIFT[fieldOf(0, CD0.TG1)] as GranuleShift | undefined
      if (!tg) throw bad('CD.TG1 = 0 is reserved')
      if (!rangeOf(t1sz, 16, 39)) throw bad(`CD.T1SZ=${t1sz} is outside 16..39`)
      const ttb = fieldOf(2, CD2.TTB1) * 16
      if (ttb >= pow2(oasBits)) throw bad(`CD.TTB1=${hex(ttb)} is beyond the ${oasBits}-bit output size`)
      tt1 = regime(Geometry.of(tg, 64 - t1sz), ttb, true)
    }
    return { cdAddr, cd, asid: fieldOf(0, CD0.ASID), tt0, tt1, t0sz, t1sz, stall }
  }

  /** TTB0 for the low region, TTB1 for the high one; elsewhere, or a disabled one, is a translation fault. */
  private s1Regime(txn: Transaction, ctx: ContextConfig): Regime {
    const a = txn.addr
    // TTB0's geometry has 64 - T0SZ input bits: a comparison instead of a shift
    if (ctx.tt0 ? a >= 0n && a < ctx.tt0.geometry.inputLimit : a >> BigInt(64 - ctx.t0sz) === 0n) {
      if (ctx.tt0) return ctx.tt0
      throw this.fault(txn, 'F_TRANSLATION', 'CD.EPD0 = 1: no walks through TTB0', { cls: 'IN', s2: false, ...this.stallOf(txn, 'F_TRANSLATION', ctx.stall) })
    }
    if (a >> BigInt(64 - ctx.t1sz) === (1n << BigInt(ctx.t1sz)) - 1n) {
      if (ctx.tt1) return ctx.tt1
      throw this.fault(txn, 'F_TRANSLATION', `${hex(a)} is in the TTB1 region and CD.EPD1 = 1`, { cls: 'IN', s2: false, ...this.stallOf(txn, 'F_TRANSLATION', ctx.stall) })
    }
    throw this.fault(txn, 'F_TRANSLATION', `${hex(a)} is outside both input ranges (T0SZ=${ctx.t0sz}, T1SZ=${ctx.t1sz})`, { cls: 'IN', s2: false, ...this.stallOf(txn, 'F_TRANSLATION', ctx.stall) })
  }

  /**
   * One stage's walk of `addr`. `s2` translates each table access when this
   * is a nested stage 1. `cls` is what a stage-2 fault here reports.
   */
  stage(r: Regime, addr: bigint, txn: Transaction, access: Access, cls: EventClass, steps: Step[], s2?: Regime, tag?: WalkTag): StageOk {
    const g = r.geometry
    const input = r.upper ? addr & (g.inputLimit - 1n) : addr
    if (!r.upper && (input < 0n || input >= g.inputLimit)) throw this.stageFault(r, addr, txn, access, cls, 'F_TRANSLATION', `${hex(addr)} is beyond the ${g.ias}-bit input range of stage ${r.stage}`)
    // below 2^52 now: the walk itself runs in plain numbers
    this.walkStage(r, Number(input), addr, txn, access, cls, steps, s2, tag)
    return { out: BigInt(this.rOut), level: this.rLevel, size: g.size(this.rLevel), perms: this.rPerms, global: this.rGlobal }
  }

  /** Stage 2 of one table access of a nested stage 1: the physical address of `ipa`. */
  private tableAccess(s2: Regime, ipa: number, txn: Transaction, access: Access, steps: Step[]): number {
    if (ipa >= pow2(s2.geometry.ias)) throw this.stageFault(s2, BigInt(ipa), txn, access, 'TT', 'F_TRANSLATION', `${hex(ipa)} is beyond the ${s2.geometry.ias}-bit input range of stage 2`)
    this.walkStage(s2, ipa, undefined, txn, access, 'TT', steps)
    return this.rOut
  }

  private stageFault(r: Regime, addr: bigint, txn: Transaction, access: Access, cls: EventClass, name: EventName, why: string, extra: Partial<SmmuEvent> = {}): WalkFault {
    const s2fault = r.stage === 2
    return this.fault(txn, name, why, { s2: s2fault, cls: s2fault ? cls : extra.cls ?? 'IN', ipa: s2fault ? addr : undefined, rnw: !access.write, recorded: r.record, ...extra, ...this.stallOf(txn, name, r.stall) })
  }

  /**
   * The stall fields of a fault (§5.5): a translation-related fault under
   * S = 1 holds the transaction, is always recorded and carries a STAG. An
   * ATS translation request never stalls; neither does a dry run, nor a
   * transaction the SMMU has no room left to hold (it terminates).
   */
  private stallOf(txn: Transaction, name: EventName, stall: boolean): Partial<SmmuEvent> {
    if (!stall || txn.ats || this.dryRun || !STALLABLE.has(name)) return {}
    const stag = this.stags?.take(txn.sid)
    return stag === undefined ? {} : { stall: true, stag, recorded: true }
  }

  /**
   * The walk of an input address below 2^53 (`addr`: the same as given, for
   * fault records), descriptors as 32-bit halves. The result is left in
   * rOut/rLevel/rPerms/rGlobal: a nested walk makes no object per table access.
   * With `tag` (a translation's own stage, not a nested table access) the
   * walk resumes below the deepest walk-cache entry for the address and
   * leaves an entry for each table descriptor it reads.
   */
  private walkStage(r: Regime, input: number, addr: bigint | undefined, txn: Transaction, access: Access, cls: EventClass, steps: Step[], s2?: Regime, tag?: WalkTag): void {
    const g = r.geometry
    const oasLimit = pow2(r.oasBits)
    const what = r.stage === 1 ? 's1' : 's2'
    const cache = tag && !this.dryRun ? this.walkCache : undefined
    const hit = cache?.lookupWalk(tag!, g.granule, input, g.startLevel)
    if (hit) this.walkUsed = hit
    let table = hit ? hit.next : r.ttbNum
    // APTable, XNTable, PXNTable gathered from the table descriptors (stage 1), as bits of the upper half
    let tableBits = hit ? hit.tableBits : 0
    const trail: Step[] | undefined = cache ? (hit ? [...hit.steps] : []) : undefined
    for (let level = hit ? hit.level + 1 : g.startLevel; level <= 3; level++) {
      const slotIpa = table + g.indexNum(input, level) * 8
      const slot = s2 ? this.tableAccess(s2, slotIpa, txn, READ, steps) : slotIpa
      const abort = loadHalves(this.mem, slot, this.d)
      if (abort) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_WALK_EABT', `stage ${r.stage} level ${level} descriptor at ${hex(slot)}: ${abort.abort}`, { cls: 'TT', s2: false, ipa: undefined, fetch: BigInt(slot), recorded: true })
      const hi = this.d.hi
      const readLo = this.d.lo
      let lo = readLo
      // a dry run's steps are not looked at: none are made
      const step = this.dryRun ? undefined : new DescStep(what, level, table, slot, hi, lo)
      if (step) steps.push(step)
      if (!(lo & DL.VALID)) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_TRANSLATION', `stage ${r.stage} level ${level}: invalid descriptor`)
      const isTable = level < 3 && (lo & DL.TABLE) !== 0
      if (level === 3 && !(lo & DL.TABLE)) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_TRANSLATION', `stage ${r.stage} level 3: a block descriptor is invalid at the last level`)
      if (!isTable && level < 3 && !g.blockAllowed(level)) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_TRANSLATION', `stage ${r.stage} level ${level}: no blocks at this level with a ${1 << g.granule}-byte granule`)
      const next = g.addressNum(hi, lo, level, !isTable)
      if (next >= oasLimit) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_ADDR_SIZE', `stage ${r.stage} level ${level}: address ${hex(next)} is beyond the ${r.oasBits}-bit output size`)
      if (isTable) {
        if (r.stage === 1) tableBits |= hi & TABLE_ATTRS_HI
        table = next
        if (cache && trail && step) {
          trail.push(step)
          const size = g.sizeNum[level]
          cache.fillWalk({ ...tag!, level, granule: g.granule, base: BigInt(Math.floor(input / size) * size), size: BigInt(size), next, tableBits, steps: trail.slice() })
        }
        continue
      }
      // the leaf: access flag, then permissions (with a dirty-state update where allowed)
      let update = 0
      if (!(lo & DL.AF)) {
        if (r.ha) update |= DL.AF
        else if (!r.affd) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_ACCESS', `stage ${r.stage} level ${level}: AF = 0 and hardware access-flag update is off`)
      }
      let perms = r.stage === 1 ? s1PermsOf(hi, lo, tableBits) : s2PermsOf(hi, lo)
      const want = permFor(access)
      if (!(perms & want) && access.write && hi & DH.DBM && r.hd && !(r.stage === 1 && tableBits & DH.AP_TABLE_RO)) {
        // writable-clean -> writable-dirty (§3.13): S1 clears AP[2], S2 sets S2AP[1]
        const dirty = (r.stage === 1 ? lo & ~DL.AP2 : lo | DL.AP2) >>> 0
        const after = r.stage === 1 ? s1PermsOf(hi, dirty, tableBits) : s2PermsOf(hi, dirty)
        if (after & want) {
          update |= DL.AF
          lo = dirty
          perms = after
        }
      }
      if (!(perms & want)) {
        throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_PERMISSION', `stage ${r.stage} level ${level}: a ${access.priv ? 'privileged' : 'unprivileged'} ${access.exec ? 'instruction fetch' : access.write ? 'write' : 'read'} is not allowed (${describePerms(perms)})`)
      }
      if (update || lo !== readLo) {
        const newLo = (lo | update) >>> 0
        if (s2) this.tableAccess(s2, slotIpa, txn, WRITE, steps)
        const w = this.dryRun ? undefined : this.mem.write64(BigInt(slot), join64(hi, newLo))
        if (w) throw this.stageFault(r, addr ?? BigInt(input), txn, access, cls, 'F_WALK_EABT', `stage ${r.stage} level ${level}: updating the descriptor at ${hex(slot)}: ${w.abort}`, { cls: 'TT', s2: false, ipa: undefined, fetch: BigInt(slot), recorded: true })
        step?.update(newLo)
      }
      // the offset in the leaf (exact: a power-of-two size, integer division)
      const size = g.sizeNum[level]
      this.rOut = next + (input - Math.floor(input / size) * size)
      this.rLevel = level
      this.rPerms = perms
      this.rGlobal = r.stage === 2 || !(lo & DL.NG)
      return
    }
    throw new Error('unreachable: the walk ends at level 3')
  }

  private read(addr: bigint, txn: Transaction, name: EventName, what: string): bigint {
    const v = this.mem.read64(addr)
    if (isAbort(v)) throw this.fault(txn, name, `${what} at ${hex(addr)}: ${v.abort}`, { fetch: addr })
    return v
  }

  /** `n` words at `addr`; their 32-bit halves (low first) are left in `halves` for decoding. */
  private readWords(addr: bigint, n: number, txn: Transaction, name: EventName, what: string): bigint[] {
    const pa = addr < ADDR_LIMIT ? Number(addr) : -1
    const page = pa >= 0 && (pa & 7) === 0 && (pa & 4095) + n * 8 <= 4096 ? this.mem.ramWords?.(pa) : undefined
    const words: bigint[] = []
    const halves: number[] = []
    if (page) {
      const at = (pa & 4095) >>> 3
      for (let i = 0; i < n; i++) {
        words.push(page.u64[at + i])
        halves.push(page.u32[2 * (at + i)], page.u32[2 * (at + i) + 1])
      }
    } else {
      const b = this.mem.read(addr, n * 8)
      if (isAbort(b)) throw this.fault(txn, name, `${what} at ${hex(addr)}: ${b.abort}`, { fetch: addr })
      for (let i = 0; i < n; i++) {
        words.push(b.readBigUInt64LE(i * 8))
        halves.push(b.readUInt32LE(i * 8), b.readUInt32LE(i * 8 + 4))
      }
    }
    this.halves = halves
    return words
  }

  private fault(txn: Transaction, name: EventName, reason: string, extra: Partial<SmmuEvent> = {}): WalkFault {
    return new WalkFault({
      name,
      sid: txn.sid,
      ssid: txn.ssid,
      input: txn.addr,
      pnu: txn.priv ?? false,
      ind: txn.exec ?? false,
      rnw: !txn.write,
      recorded: true,
      ...extra,
      reason,
    })
  }
}

/** Descriptor bits in the lower and upper 32-bit halves (from D: one source of truth for their positions). */
const DL = { VALID: lo32(D.VALID), TABLE: lo32(D.TABLE), AP1: lo32(D.AP1), AP2: lo32(D.AP2), AF: lo32(D.AF), NG: lo32(D.NG) } as const
const DH = {
  DBM: hi32(D.DBM),
  PXN: hi32(D.PXN),
  UXN: hi32(D.UXN),
  PXN_TABLE: hi32(D.PXN_TABLE),
  XN_TABLE: hi32(D.XN_TABLE),
  AP_TABLE_NO_EL0: hi32(D.AP_TABLE_NO_EL0),
  AP_TABLE_RO: hi32(D.AP_TABLE_RO),
} as const
/** The hierarchical attributes a table descriptor passes down. */
const TABLE_ATTRS_HI = DH.PXN_TABLE | DH.XN_TABLE | DH.AP_TABLE_NO_EL0 | DH.AP_TABLE_RO
/** Stage-2 XN[1]: no execution at any privilege. */
const S2_XN1_HI = hi32(1n << 54n)
const READ: Access = { write: false }
/** Addresses from here on are beyond any output size (52 bits at most): never table RAM. */
const ADDR_LIMIT = 1n << 52n
const WRITE: Access = { write: true }

/** A table walk's descriptor read, kept as numbers; the bigints are made only when someone looks. */
class DescStep implements Step {
  updated?: bigint

  constructor(
    readonly what: 's1' | 's2',
    readonly level: number,
    private readonly tableAt: number,
    private readonly at: number,
    private readonly hi: number,
    private lo: number,
  ) {}

  get table(): bigint {
    return BigInt(this.tableAt)
  }

  get addr(): bigint {
    return BigInt(this.at)
  }

  get desc(): bigint {
    return join64(this.hi, this.lo)
  }

  /** The walk wrote the descriptor back with a new lower half (AF, dirty state). */
  update(lo: number): void {
    this.updated = join64(0, (this.lo ^ lo) >>> 0)
    this.lo = lo
  }
}

/** Stage-1 permissions of a leaf (hi:lo) under the APTable/XNTable/PXNTable bits `table` (upper-half positions). */
function s1PermsOf(hi: number, lo: number, table: number): number {
  const ro = (lo & DL.AP2) !== 0 || (table & DH.AP_TABLE_RO) !== 0
  const user = (lo & DL.AP1) !== 0 && !(table & DH.AP_TABLE_NO_EL0)
  const uxn = (hi & DH.UXN) !== 0 || (table & DH.XN_TABLE) !== 0
  const pxn = (hi & DH.PXN) !== 0 || (table & (DH.PXN_TABLE | DH.XN_TABLE)) !== 0
  let p = PERM.PR
  if (!ro) p |= PERM.PW
  if (!pxn) p |= PERM.PX
  if (user) {
    p |= PERM.UR
    if (!ro) p |= PERM.UW
    if (!uxn) p |= PERM.UX
  }
  return p
}

/** Stage-2 permissions of a leaf (hi:lo): S2AP read/write, XN[1] for execution at any privilege. */
function s2PermsOf(hi: number, lo: number): number {
  const r = (lo & DL.AP1) !== 0
  const w = (lo & DL.AP2) !== 0
  const x = r && !(hi & S2_XN1_HI)
  return (r ? PERM.PR | PERM.UR : 0) | (w ? PERM.PW | PERM.UW : 0) | (x ? PERM.PX | PERM.UX : 0)
}

/** Stage-1 permissions of a leaf under the hierarchical APTable/XNTable/PXNTable bits. */
export function s1Perms(desc: bigint, apTable: bigint, xnTable: bigint, pxnTable: bigint): number {
  const table = hi32(apTable & (D.AP_TABLE_RO | D.AP_TABLE_NO_EL0)) | (xnTable !== 0n ? DH.XN_TABLE : 0) | (pxnTable !== 0n ? DH.PXN_TABLE : 0)
  return s1PermsOf(hi32(desc), lo32(desc), table)
}

/** Stage-2 permissions of a leaf: S2AP read/write, XN[1] for execution at any privilege. */
export function s2Perms(desc: bigint): number {
  return s2PermsOf(hi32(desc), lo32(desc))
}
