import { isAbort } from '../../memory/backing'
import { MemoryPort, halvesAre, wordsAre } from '../../memory/physical'
import { halvesOf, hex } from '../bits'
import { FaultHistory, TransferPiece, Translated, transfer } from '../dma-transfer'
import { AtcEntry, Smmuv3Caches, TlbEntry, cdKey } from './caches'
import { SmmuEvent, describeEvent } from './events'
import { Finding, Sanitizer, changedDescriptor } from './sanitizer'
import { staleWalk } from './stale-walk'
import { ContextConfig, Features, PERM_ALL, Smmuv3Walker, Step, StreamConfig, StreamTable, Transaction, Translation, describePerms, permFor } from './walk'

/** A device's request: a read or write of `len` bytes, or (ats) a translation request only. */
export interface DmaRequest {
  readonly sid: number
  readonly ssid?: number
  readonly addr: bigint
  readonly len: number
  readonly write: boolean
  readonly data?: Buffer
  readonly priv?: boolean
  readonly exec?: boolean
  /** The endpoint uses its ATC (ATS): translated requests, translation requests on a miss. */
  readonly ats?: boolean
}

/** One translated piece of a request (a request is cut where translations end). */
export type Piece = TransferPiece<Step>

export interface DmaResult {
  readonly pieces: Piece[]
  /** Read data (as far as it got). */
  readonly data?: Buffer
  /** The transaction ended in this fault (its event record). */
  readonly event?: SmmuEvent
  /** The memory behind the output address did not answer (external abort). */
  readonly abort?: string
  /** Findings this request raised; in strict mode the first one stopped it. */
  readonly findings: Finding[]
  readonly stopped?: Finding
  /** The descriptors the failing translation read (with event or stopped). */
  readonly faultSteps?: readonly Step[]
  /** An ATS translation request's answer. */
  readonly ats?: { readonly out: bigint; readonly size: bigint; readonly perms: number }
}

/** `out` is the output address of the transaction's own address. */
/** What a request needs of a translation, whichever cache or walk gave it. */
interface Span {
  readonly base: bigint
  readonly size: bigint
  readonly perms: number
}

/** `stream`: the configuration the translation went through (none for an ATC hit: the endpoint knows only the translation). */
type Outcome = { ok: true; t: Span; stream?: StreamConfig; out: bigint; source: 'walk' | 'tlb' | 'atc'; steps: Step[] } | { ok: false; event: SmmuEvent; steps: Step[] } | { ok: false; stopped: Finding; steps: Step[] }

/**
 * An SMMUv3's transaction path: config caches, TLB, walk on a miss, the
 * endpoints' ATCs, and the sanitizer's second look on every hit. Memory is
 * the host physical address space; the unit supplies the stream table.
 */
export class Smmuv3Dma {
  readonly walker: Smmuv3Walker
  readonly sanitizer = new Sanitizer()
  /** Recorded events (each also written to the unit's event queue). */
  readonly history = new FaultHistory<SmmuEvent>()
  private ticks = 0
  /** What "when" means for cache entries and findings (the trace sequence, when a world sets it). */
  clock: (() => number) | undefined

  constructor(readonly mem: MemoryPort, features: Features, readonly caches: Smmuv3Caches, private readonly strtab: () => StreamTable) {
    this.walker = new Smmuv3Walker(mem, features)
    this.walker.walkCache = caches
    caches.clock = () => this.tick()
  }

  private tick(): number {
    return this.clock ? this.clock() : ++this.ticks
  }

  /** Reads or writes through the SMMU, one translation at a time; a fault or abort ends it. */
  access(req: DmaRequest): DmaResult {
    const findings: Finding[] = []
    const r = transfer<DmaRequest, Step, SmmuEvent>(this.mem, req, findings, this.translateAt, this.recordEvent)
    // an SMMU's fault is its event record
    return r.fault ? { pieces: r.pieces, data: r.data, findings, event: r.fault, faultSteps: r.faultSteps } : r
  }

  /** One address of a request (made once per unit, not per request: the hit path allocates less). */
  private readonly translateAt = (req: DmaRequest, addr: bigint, findings: Finding[]): Translated<Step, SmmuEvent> => {
    // a request is a transaction at its own address: no copy for the first (often only) one
    const txn: Transaction = addr === req.addr ? req : { sid: req.sid, ssid: req.ssid, addr, write: req.write, priv: req.priv, exec: req.exec, ats: req.ats }
    const got = req.ats ? this.viaAtc(txn, findings) : this.translate(txn, findings)
    return got.ok || 'stopped' in got ? got : { ok: false, fault: got.event, steps: got.steps }
  }

  private readonly recordEvent = (e: SmmuEvent): void => this.history.record(e)

  /** Recorded events, newest last. */
  get events(): readonly SmmuEvent[] {
    return this.history.list
  }

  /** One translation through the caches; fills them on a miss. */
  translate(txn: Transaction, findings: Finding[]): Outcome {
    const steps: Step[] = []
    const caches = this.caches
    // configuration: the STE
    let stream: StreamConfig
    const steHit = caches.ste.get(txn.sid)
    if (steHit) {
      stream = steHit.stream
      if (this.sanitizer.mode !== 'off') {
        const f = this.checkConfig(txn, 'STE', steHit.steps, stream.ste, steHit.halves, steHit.since, () => `CFGI_STE sid=${hex(txn.sid)}`)
        if (f) {
          findings.push(f)
          if (this.sanitizer.mode === 'strict') return { ok: false, stopped: f, steps }
        }
      }
    } else {
      try {
        stream = this.walker.stream(txn, this.strtab(), steps)
      } catch (e) {
        return this.faultOf(e, steps)
      }
      caches.ste.set(txn.sid, { sid: txn.sid, stream, steps: [...steps], since: this.tick(), halves: halvesOf(stream.ste) })
    }
    // configuration: the CD, under the SubstreamID the STE selects
    let ctx: ContextConfig | undefined
    const cdIndex = stream.config === 's1' || stream.config === 'nested' ? (txn.ssid ?? (stream.cdMax === 0 || stream.s1dss === 2 ? 0 : undefined)) : undefined
    const key = cdIndex === undefined ? -1 : cdKey(txn.sid, cdIndex)
    // SubstreamID 0 under S1DSS = substream 0 is refused by the walk (F_STREAM_DISABLED): never a hit
    const cdHit = cdIndex !== undefined && (txn.ssid === undefined || txn.ssid !== 0 || stream.s1dss !== 2) ? caches.cd.get(key) : undefined
    if (cdHit) {
      ctx = cdHit.context
      if (this.sanitizer.mode !== 'off') {
        const f = this.checkConfig(txn, 'CD', cdHit.steps, cdHit.context.cd, cdHit.halves, cdHit.since, () => `CFGI_CD sid=${hex(txn.sid)} ssid=${hex(cdIndex!)} leaf`)
        if (f) {
          findings.push(f)
          if (this.sanitizer.mode === 'strict') return { ok: false, stopped: f, steps }
        }
      }
    } else if (stream.config === 's1' || stream.config === 'nested') {
      const before = steps.length
      try {
        ctx = this.walker.context(txn, stream, steps)
      } catch (e) {
        return this.faultOf(e, steps)
      }
      if (ctx && cdIndex !== undefined) caches.cd.set(key, { sid: txn.sid, ssid: cdIndex, context: ctx, steps: steps.slice(before), since: this.tick(), halves: halvesOf(ctx.cd) })
    }
    // the TLB
    const stage2 = stream.config === 's2' || (stream.config === 'nested' && !ctx)
    const tlbUsed = stream.config !== 'bypass' && stream.config !== 'abort' && (stage2 || ctx !== undefined)
    if (tlbUsed) {
      const hit = caches.lookup(stage2, stream.vmid, ctx?.asid, txn.addr)
      if (hit && hit.perms & permFor(txn)) {
        caches.hits++
        if (this.sanitizer.mode !== 'off') {
          const f = this.checkTlb(txn, hit)
          if (f) {
            findings.push(f)
            if (this.sanitizer.mode === 'strict') return { ok: false, stopped: f, steps }
          }
        }
        return { ok: true, t: hit, stream, out: hit.out + (txn.addr - hit.base), source: 'tlb', steps }
      }
      caches.misses++
    }
    let t: Translation
    const look = this.sanitizer.mode !== 'off'
    try {
      t = this.walker.translateWith(txn, stream, ctx, steps)
    } catch (e) {
      // a walk resumed from a stale walk-cache entry may fault where the tables now translate
      const used = look ? this.walker.walkUsed : undefined
      const out = this.faultOf(e, steps)
      const stale = used && !out.ok && 'event' in out && this.stopFor(findings, staleWalk(this.sanitizer, this.mem, txn, used, out, this.freshWalk(txn), this.tick()), steps)
      return stale || out
    }
    const used = look ? this.walker.walkUsed : undefined
    const stale = used && this.stopFor(findings, staleWalk(this.sanitizer, this.mem, txn, used, { ok: true, t }, this.freshWalk(txn), this.tick()), steps)
    if (stale) return stale
    if (t.kind !== 'bypass') {
      caches.fill({
        kind: t.kind,
        vmid: t.vmid,
        asid: t.asid,
        base: t.base,
        size: t.size,
        level: t.level,
        granule: t.granule,
        out: t.out - (txn.addr - t.base),
        perms: t.perms,
        since: this.tick(),
        sid: txn.sid,
        ssid: txn.ssid,
        steps: steps.filter((s) => s.what === 's1' || s.what === 's2'),
      })
    }
    return { ok: true, t, stream, out: t.out, source: 'walk', steps }
  }

  /** Keeps a finding; in strict mode the outcome that stops the request with it. */
  private stopFor(findings: Finding[], f: Finding | undefined, steps: Step[]): Outcome | undefined {
    if (!f) return undefined
    findings.push(f)
    return this.sanitizer.mode === 'strict' ? { ok: false, stopped: f, steps } : undefined
  }

  private faultOf(e: unknown, steps: Step[]): Outcome {
    if (e instanceof Error && 'event' in e) return { ok: false, event: (e as Error & { event: SmmuEvent }).event, steps }
    throw e
  }

  /** A second look at a config cache hit: have the words of the STE/CD (or the L1 descriptor to it) changed? */
  private checkConfig(txn: Transaction, cache: 'STE' | 'CD', steps: readonly Step[], cached: readonly bigint[], halves: readonly number[] | undefined, since: number, command: () => string): Finding | undefined {
    const whole = cache === 'STE' ? 'ste' : 'cd'
    const l1 = cache === 'STE' ? 'l1std' : 'l1cd'
    for (const s of steps) {
      if (s.what !== whole && s.what !== l1) continue
      const words = s.what === whole ? cached : [s.desc]
      // the common case, compared in place; a difference is then found and described below
      if (s.what === whole && halves ? halvesAre(this.mem, s.addr, halves) : wordsAre(this.mem, s.addr, words)) continue
      const now = this.mem.read(s.addr, words.length * 8)
      const nowWords = isAbort(now) ? undefined : words.map((_, k) => now.readBigUInt64LE(k * 8))
      const i = nowWords ? words.findIndex((w, k) => w !== nowWords[k]) : 0
      if (i < 0) continue
      return this.sanitizer.record({
        cache,
        sid: txn.sid,
        ssid: txn.ssid,
        addr: txn.addr,
        cached: { since, summary: `${s.what} word ${i} = ${hex(words[i], 16)}` },
        now: { summary: nowWords ? `${s.what} word ${i} = ${hex(nowWords[i], 16)}` : 'abort' },
        changed: { what: s.what, level: 0, addr: s.addr + BigInt(i * 8), old: words[i], now: nowWords ? nowWords[i] : 'abort' },
        command: command(),
        at: this.tick(),
      })
    }
    return undefined
  }

  /** A second look at a TLB hit: walk afresh (no caches, no updates) and compare. */
  private checkTlb(txn: Transaction, e: TlbEntry): Finding | undefined {
    const fresh = this.freshWalk(txn)
    const cachedOut = e.out + (txn.addr - e.base)
    if (fresh.ok) {
      const nowOut = fresh.t.out
      if (nowOut === cachedOut && (e.perms & ~fresh.t.perms) === 0) return undefined
    }
    const command =
      e.kind === 'S2'
        ? `TLBI_S2_IPA vmid=${e.vmid} addr=${hex(e.base)} leaf`
        : e.asid === undefined
          ? `TLBI_NH_VAA vmid=${e.vmid} addr=${hex(e.base)} leaf`
          : `TLBI_NH_VA vmid=${e.vmid} asid=${e.asid} addr=${hex(e.base)} leaf`
    return this.sanitizer.record({
      cache: 'TLB',
      sid: txn.sid,
      ssid: txn.ssid,
      addr: txn.addr,
      cached: { out: cachedOut, perms: e.perms, since: e.since, summary: `${e.kind} out=${hex(cachedOut)} ${describePerms(e.perms)}` },
      now: fresh.ok ? { out: fresh.t.out, perms: fresh.t.perms, summary: `out=${hex(fresh.t.out)} ${describePerms(fresh.t.perms)}` } : { fault: fresh.event, summary: describeEvent(fresh.event) },
      changed: changedDescriptor(this.mem, e.steps),
      command,
      at: this.tick(),
    })
  }

  private freshWalk(txn: Transaction): { ok: true; t: Translation & { out: bigint } } | { ok: false; event: SmmuEvent } {
    this.walker.dryRun = true
    try {
      const r = this.walker.translate(txn, this.strtab())
      return r.ok ? { ok: true, t: r } : { ok: false, event: r.event }
    } finally {
      this.walker.dryRun = false
    }
  }

  /** A request through the endpoint's ATC: a hit is used as is; a miss is an ATS translation request that fills it. */
  private viaAtc(txn: Transaction, findings: Finding[]): Outcome {
    const hit = this.caches.atcLookup(txn.sid, txn.ssid, txn.addr)
    if (hit && hit.perms & permFor(txn)) {
      if (this.sanitizer.mode !== 'off') {
        const f = this.checkAtc(txn, hit)
        if (f) {
          findings.push(f)
          if (this.sanitizer.mode === 'strict') return { ok: false, stopped: f, steps: [] }
        }
      }
      const out = hit.out + (txn.addr - hit.base)
      return { ok: true, t: hit, source: 'atc', steps: [], out }
    }
    const r = this.translate(txn, findings)
    if (!r.ok) return r
    if (r.stream && r.stream.eats === 0) {
      const event: SmmuEvent = { name: 'F_BAD_ATS_TREQ', sid: txn.sid, ssid: txn.ssid, input: txn.addr, rnw: !txn.write, reason: 'an ATS translation request while STE.EATS = 0', recorded: true }
      return { ok: false, event, steps: r.steps }
    }
    const base = txn.addr & ~0xfffn
    const entry: AtcEntry = { sid: txn.sid, ssid: txn.ssid, base, size: 0x1000n, out: r.out - (txn.addr - base), perms: r.t.perms, since: this.tick() }
    this.caches.atcFill(entry)
    return r
  }

  private checkAtc(txn: Transaction, e: AtcEntry): Finding | undefined {
    const fresh = this.freshWalk(txn)
    const cachedOut = e.out + (txn.addr - e.base)
    if (fresh.ok && fresh.t.out === cachedOut && (e.perms & ~fresh.t.perms) === 0) return undefined
    const ssv = txn.ssid !== undefined ? ` ssv ssid=${hex(txn.ssid)}` : ''
    return this.sanitizer.record({
      cache: 'ATC',
      sid: txn.sid,
      ssid: txn.ssid,
      addr: txn.addr,
      cached: { out: cachedOut, perms: e.perms, since: e.since, summary: `ATC out=${hex(cachedOut)} ${describePerms(e.perms)}` },
      now: fresh.ok ? { out: fresh.t.out, perms: fresh.t.perms, summary: `out=${hex(fresh.t.out)} ${describePerms(fresh.t.perms)}` } : { fault: fresh.event, summary: describeEvent(fresh.event) },
      command: `ATC_INV sid=${hex(txn.sid)}${ssv} addr=${hex(e.base)} size=0`,
      at: this.tick(),
    })
  }
}

export { PERM_ALL }
