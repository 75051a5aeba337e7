import { MemoryPort, halvesAre } from '../../memory/physical'
import { halvesOf, hex } from '../bits'
import { FaultHistory, TransferPiece, TransferResult, Translated, transfer } from '../dma-transfer'
import { Finding, Sanitizer, changedDescriptor } from '../smmuv3/sanitizer'
import { describePerms, permFor } from '../smmuv3/walk'
import { DevTlbEntry, IotlbEntry, VtdCaches } from './caches'
import { VtdFault, VtdFaultError, describeFault } from './faults'
import { bdfOf } from './qi'
import { stalePde } from './stale-pde'
import { ContextConfig, PGTT, PasidConfig, VtdFeatures, VtdStep, VtdTranslation, VtdTxn, VtdWalker } from './walk'

/** A device's request through a VT-d unit (len 0 with ats: a translation request alone). */
export interface VtdDmaRequest {
  readonly sid: number
  readonly pasid?: number
  readonly addr: bigint
  readonly len: number
  readonly write: boolean
  readonly data?: Buffer
  readonly priv?: boolean
  readonly exec?: boolean
  readonly ats?: boolean
  /** The endpoint has PRI enabled. */
  readonly pri?: boolean
}

export type VtdPiece = TransferPiece<VtdStep>

/** A request's outcome; `fault` is the fault record the request ended in. */
export type VtdDmaResult = TransferResult<VtdStep, VtdFault>

type Outcome = Translated<VtdStep, VtdFault>

/**
 * A VT-d unit's request path: context cache, PASID cache, IOTLB, the walk on
 * a miss, the endpoints' device TLBs, and the sanitizer's second look on
 * every hit. `root` is the root table the unit's RTADDR names.
 */
export class VtdDma {
  readonly walker: VtdWalker
  readonly sanitizer = new Sanitizer()
  /** Recorded faults (each also written to the unit's fault-recording registers). */
  readonly history = new FaultHistory<VtdFault>()
  private ticks = 0
  clock: (() => number) | undefined

  constructor(readonly mem: MemoryPort, features: VtdFeatures, readonly caches: VtdCaches, private readonly root: () => bigint | undefined) {
    this.walker = new VtdWalker(mem, features, caches)
    caches.clock = () => this.tick()
  }

  private tick(): number {
    return this.clock ? this.clock() : ++this.ticks
  }

  access(req: VtdDmaRequest): VtdDmaResult {
    return transfer<VtdDmaRequest, VtdStep, VtdFault>(this.mem, req, [], this.translateAt, this.recordFault)
  }

  /** One address of a request (made once per unit, not per request: the hit path allocates less). */
  private readonly translateAt = (req: VtdDmaRequest, addr: bigint, findings: Finding[]): Outcome => {
    // a request is a transaction at its own address: no copy for the first (often only) one
    const txn: VtdTxn = addr === req.addr ? req : { sid: req.sid, pasid: req.pasid, addr, write: req.write, priv: req.priv, exec: req.exec, ats: req.ats, pri: req.pri }
    return req.ats ? this.viaDevTlb(txn, findings) : this.translate(txn, findings)
  }

  private readonly recordFault = (f: VtdFault): void => this.history.record(f)

  /** Recorded faults, newest last. */
  get faults(): readonly VtdFault[] {
    return this.history.list
  }

  private check(findings: Finding[], f: Finding | undefined, steps: VtdStep[]): Outcome | undefined {
    if (!f) return undefined
    findings.push(f)
    return this.sanitizer.mode === 'strict' ? { ok: false, stopped: f, steps } : undefined
  }

  /** One translation through the caches; fills them on a miss. */
  translate(txn: VtdTxn, findings: Finding[]): Outcome {
    const steps: VtdStep[] = []
    const caches = this.caches
    const look = this.sanitizer.mode !== 'off'
    this.walker.pdeUsed = undefined
    try {
      let ctx: ContextConfig
      const ctxHit = caches.context.get(txn.sid)
      if (ctxHit) {
        ctx = ctxHit.ctx
        const stop = look && this.check(findings, this.checkConfig(txn, 'CONTEXT', ctxHit.steps, ctxHit.halves, ctxHit.since, () => `CC did=${ctxHit.did} sid=${bdfOf(txn.sid)}`), steps)
        if (stop) return stop
      } else ctx = this.walker.context(txn, this.root(), steps)
      const ctxSteps = ctxHit ? ctxHit.steps : steps.slice()
      const pasid = txn.pasid ?? ctx.ridPasid
      let pc: PasidConfig
      const key = VtdCaches.pasidKey(txn.sid, pasid)
      // a request with PASID needs PASIDE; the walk checks it, a cached entry must too
      const pcHit = txn.pasid !== undefined && !ctx.paside ? undefined : caches.pasid.get(key)
      if (pcHit) {
        pc = pcHit.pc
        if (txn.ats && !ctx.dte) this.walker.pasidEntry(txn, ctx, [])
        const stop = look && this.check(findings, this.checkConfig(txn, 'PASID', pcHit.steps, pcHit.halves, pcHit.since, () => `PC did=${pcHit.did} pasid=${pasid}`), steps)
        if (stop) return stop
      } else {
        const before = steps.length
        pc = this.walker.pasidEntry(txn, ctx, steps)
        const pcSteps = steps.slice(before)
        caches.pasid.set(key, { sid: txn.sid, pasid, did: pc.did, pc, steps: pcSteps, since: this.tick(), halves: halvesOf(pcSteps.map((s) => s.desc)) })
      }
      if (!ctxHit) caches.context.set(txn.sid, { sid: txn.sid, did: pc.did, ctx, steps: ctxSteps, since: this.tick(), halves: halvesOf(ctxSteps.map((s) => s.desc)) })
      this.walker.checkRequest(txn, pc)
      const tagPasid = pc.pgtt === PGTT.SECOND ? undefined : pc.pasid
      if (pc.pgtt !== PGTT.PT) {
        const hit = caches.lookup(pc.did, tagPasid, txn.addr)
        if (hit && hit.perms & permFor(txn)) {
          caches.hits++
          const stop = look && this.check(findings, this.checkTlb(txn, hit), steps)
          if (stop) return stop
          return { ok: true, t: hit, out: hit.out + (txn.addr - hit.base), source: 'tlb', steps }
        }
        caches.misses++
      }
      const t: VtdTranslation = this.walker.translateWith(txn, pc, steps)
      const pde = look ? this.walker.pdeUsed : undefined
      const stale = pde && this.check(findings, stalePde(this.sanitizer, this.mem, txn, pde, { ok: true, t }, this.fresh(txn), this.tick()), steps)
      if (stale) return stale
      if (t.kind !== 'pt') {
        caches.fill({
          kind: t.kind,
          did: t.did,
          pasid: tagPasid,
          base: t.base,
          size: t.size,
          out: t.out - (txn.addr - t.base),
          perms: t.perms,
          global: t.global,
          since: this.tick(),
          sid: txn.sid,
          steps: steps.filter((s) => s.what === 'fs' || s.what === 'ss'),
        })
      }
      return { ok: true, t, out: t.out, source: 'walk', steps }
    } catch (e) {
      if (!(e instanceof VtdFaultError)) throw e
      // a walk resumed from a stale table pointer may fault where the tables now translate
      const pde = look ? this.walker.pdeUsed : undefined
      const stale = pde && this.check(findings, stalePde(this.sanitizer, this.mem, txn, pde, { ok: false, fault: e.fault }, this.fresh(txn), this.tick()), steps)
      return stale || { ok: false, fault: e.fault, steps }
    }
  }

  /**
   * A config cache hit: have the words it was read from changed? Compared in
   * place first (`halves`); a difference, or memory other than table RAM, is
   * then found and described. `command`: the fix, formatted only for a finding.
   */
  private checkConfig(txn: VtdTxn, cache: 'CONTEXT' | 'PASID', steps: readonly VtdStep[], halves: readonly number[] | undefined, since: number, command: () => string): Finding | undefined {
    if (halves && steps.every((s, i) => halvesAre(this.mem, s.addr, halves, 2 * i, 2))) return undefined
    const changed = changedDescriptor(this.mem, steps)
    if (!changed) return undefined
    const now = changed.now === 'abort' ? 'abort' : hex(changed.now, 16)
    return this.sanitizer.record({
      cache,
      sid: txn.sid,
      ssid: txn.pasid,
      addr: txn.addr,
      cached: { since, summary: `${changed.what} word ${changed.level} = ${hex(changed.old, 16)}` },
      now: { summary: `${changed.what} word ${changed.level} = ${now}` },
      changed,
      command: command(),
      at: this.tick(),
    })
  }

  private fresh(txn: VtdTxn): { ok: true; t: VtdTranslation } | { ok: false; fault: VtdFault } {
    this.walker.dryRun = true
    try {
      return this.walker.translate(txn, this.root())
    } finally {
      this.walker.dryRun = false
    }
  }

  private checkTlb(txn: VtdTxn, e: IotlbEntry): Finding | undefined {
    const fresh = this.fresh(txn)
    const cachedOut = e.out + (txn.addr - e.base)
    if (fresh.ok && fresh.t.out === cachedOut && (e.perms & ~fresh.t.perms) === 0) return undefined
    const command = e.kind === 'second' ? `IOTLB did=${e.did} addr=${hex(e.base)} am=0 ih=1` : `P_IOTLB did=${e.did} pasid=${e.pasid} addr=${hex(e.base)} am=0 ih=1`
    return this.sanitizer.record({
      cache: 'IOTLB',
      sid: txn.sid,
      ssid: txn.pasid,
      addr: txn.addr,
      cached: { out: cachedOut, perms: e.perms, since: e.since, summary: `${e.kind} did=${e.did} out=${hex(cachedOut)} ${describePerms(e.perms)}` },
      now: fresh.ok ? { out: fresh.t.out, perms: fresh.t.perms, summary: `out=${hex(fresh.t.out)} ${describePerms(fresh.t.perms)}` } : { fault: { name: hex(fresh.fault.reason) }, summary: describeFault(fresh.fault) },
      changed: changedDescriptor(this.mem, e.steps),
      command,
      at: this.tick(),
    })
  }

  /** A request through the endpoint's device TLB: a hit is used as is, a miss is a translation request that fills it. */
  private viaDevTlb(txn: VtdTxn, findings: Finding[]): Outcome {
    const hit = this.caches.devTlbLookup(txn.sid, txn.pasid, txn.addr)
    if (hit && hit.perms & permFor(txn)) {
      const stop = this.sanitizer.mode !== 'off' && this.check(findings, this.checkDevTlb(txn, hit), [])
      if (stop) return stop
      return { ok: true, t: hit, out: hit.out + (txn.addr - hit.base), source: 'atc', steps: [] }
    }
    const r = this.translate(txn, findings)
    if (!r.ok) return r
    const base = txn.addr & ~0xfffn
    this.caches.devTlbFill({ sid: txn.sid, pasid: txn.pasid, base, size: 0x1000n, out: r.out - (txn.addr - base), perms: r.t.perms, since: this.tick() })
    return r
  }

  private checkDevTlb(txn: VtdTxn, e: DevTlbEntry): Finding | undefined {
    const fresh = this.fresh(txn)
    const cachedOut = e.out + (txn.addr - e.base)
    if (fresh.ok && fresh.t.out === cachedOut && (e.perms & ~fresh.t.perms) === 0) return undefined
    const bdf = bdfOf(txn.sid)
    const command = txn.pasid === undefined ? `DEV_IOTLB sid=${bdf} addr=${hex(e.base)} s=0` : `DEV_IOTLB_PASID sid=${bdf} pasid=${txn.pasid} addr=${hex(e.base)} s=0`
    return this.sanitizer.record({
      cache: 'DEV_TLB',
      sid: txn.sid,
      ssid: txn.pasid,
      addr: txn.addr,
      cached: { out: cachedOut, perms: e.perms, since: e.since, summary: `dev_tlb out=${hex(cachedOut)} ${describePerms(e.perms)}` },
      now: fresh.ok ? { out: fresh.t.out, perms: fresh.t.perms, summary: `out=${hex(fresh.t.out)} ${describePerms(fresh.t.perms)}` } : { fault: { name: hex(fresh.fault.reason) }, summary: describeFault(fresh.fault) },
      command,
      at: this.tick(),
    })
  }
}
