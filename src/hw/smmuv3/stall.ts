import { HeldTransfer, joinResults } from '../dma-transfer'
import { Command, field, opcodeOf, OP } from './commands'
import type { DmaRequest, DmaResult, Smmuv3Dma } from './dma'
import { SmmuEvent } from './events'
import type { StagSource } from './walk'

/** CMD_RESUME's action (Linux CMDQ_RESUME_0_RESP_*). */
export const ResumeAction = { TERM: 0, RETRY: 1, ABORT: 2 } as const

/** A transaction the SMMU holds after a stalling fault, until CMD_RESUME or CMD_STALL_TERM. */
export interface Stalled extends HeldTransfer<DmaRequest, DmaResult> {
  readonly sid: number
  readonly stag: number
  /** The stall event (Stall = 1, STAG). */
  readonly event: SmmuEvent
}

/** A request's outcome, with the stall that now holds it, if it stalled. */
export type StallingResult = DmaResult & { readonly stalled?: Stalled }

/**
 * The stall model (SMMUv3 §3.12.2, §5.5): a transaction that takes a
 * translation-related fault under CD.S / STE.S2S is held, not terminated;
 * its event carries Stall = 1 and a STAG. CMD_RESUME (StreamID, STAG) with
 * RETRY runs it again from the faulting address (it may stall again, under a
 * new STAG); TERM or ABORT, and CMD_STALL_TERM, end it with the fault. At
 * most IDR5.STALL_MAX transactions are held at once: past that a fault
 * terminates as without S (the memory a stuck device can pin is bounded).
 */
export class Smmuv3Stalls implements StagSource {
  private readonly held = new Map<string, Stalled>()
  private reserved = 0
  private nextStag = 0
  /** Called for each new stall (the host driver's event handler: IOPF). */
  onStall: ((s: Stalled) => void) | undefined
  resumed = 0
  terminated = 0

  constructor(readonly max: number) {}

  private static key(sid: number, stag: number): string {
    return `${sid}:${stag}`
  }

  get size(): number {
    return this.held.size
  }

  list(): Stalled[] {
    return [...this.held.values()]
  }

  find(sid: number, stag: number): Stalled | undefined {
    return this.held.get(Smmuv3Stalls.key(sid, stag))
  }

  /** A STAG for a new stall of `sid`, unless STALL_MAX transactions are held already. */
  take(sid: number): number | undefined {
    if (this.held.size + this.reserved >= this.max) return undefined
    for (let i = 0; i < 0x10000; i++) {
      const stag = (this.nextStag + i) & 0xffff
      if (!this.held.has(Smmuv3Stalls.key(sid, stag))) {
        this.nextStag = (stag + 1) & 0xffff
        this.reserved++
        return stag
      }
    }
    return undefined
  }

  /** Issues `req` through `dma`; a stall is held (and reported), continuing `before`. */
  access(dma: Smmuv3Dma, req: DmaRequest, before?: DmaResult, settle?: (r: DmaResult) => void): StallingResult {
    const r = joinResults(before, dma.access(req))
    const e = r.event
    // the walker reserved the STAG it put in the event
    if (!e?.stall || e.stag === undefined) return r
    this.reserved--
    const done = Number(e.input! - req.addr)
    const rest: DmaRequest = { ...req, addr: e.input!, len: req.len - done, data: req.data?.subarray(done) }
    const s: Stalled = { sid: req.sid, stag: e.stag, event: e, rest, before: { ...r, event: undefined, faultSteps: undefined }, settle }
    this.held.set(Smmuv3Stalls.key(s.sid, s.stag), s)
    this.onStall?.(s)
    return { ...r, stalled: s }
  }

  /** The SMMU consuming a command: CMD_RESUME and CMD_STALL_TERM act on held transactions (others are no-ops here). */
  command(dma: () => Smmuv3Dma, cmd: Command): void {
    const op = opcodeOf(cmd)
    if (op === OP.RESUME) {
      const s = this.find(Number(field(cmd, 'sid')), Number(field(cmd, 'stag')))
      // no transaction matches: a no-op (§4.7.2)
      if (s) this.resume(dma(), s, Number(field(cmd, 'action')) === ResumeAction.RETRY)
    } else if (op === OP.STALL_TERM) {
      const sid = Number(field(cmd, 'sid'))
      for (const s of this.list()) if (s.sid === sid) this.resume(dma(), s, false)
    }
  }

  private resume(dma: Smmuv3Dma, s: Stalled, retry: boolean): void {
    this.held.delete(Smmuv3Stalls.key(s.sid, s.stag))
    if (!retry) {
      this.terminated++
      s.settle?.({ ...s.before, event: s.event })
      return
    }
    this.resumed++
    const r = this.access(dma, s.rest, s.before, s.settle)
    if (!r.stalled) s.settle?.(r)
  }
}
