import { Abort, isAbort } from '../memory/backing'
import { pageOffset } from './bits'
import { MemoryPort } from '../memory/physical'
import type { Finding } from './smmuv3/sanitizer'

/** What moving a request's bytes needs of it, whichever unit translates it. */
/**
 * A unit's recorded faults, newest last: the last KEEP stay for the debug
 * tree, and each also goes to `sink` (the SMMU's event queue, the VT-d fault
 * registers). A fault the configuration says not to record goes nowhere.
 */
export class FaultHistory<F extends { readonly recorded: boolean }> {
  static readonly KEEP = 256
  readonly list: F[] = []
  sink: ((f: F) => void) | undefined

  record(f: F): void {
    if (!f.recorded) return
    this.list.push(f)
    if (this.list.length > FaultHistory.KEEP) this.list.shift()
    this.sink?.(f)
  }
}

export interface TransferRequest {
  readonly addr: bigint
  readonly len: number
  readonly write: boolean
  readonly data?: Buffer
  /** With len 0: a translation request alone (ATS). */
  readonly ats?: boolean
}

/** One translated piece of a request (a request is cut where translations end). */
export interface TransferPiece<S> {
  readonly addr: bigint
  readonly len: number
  readonly out: bigint
  readonly perms: number
  /** Where the translation came from. */
  readonly source: 'walk' | 'tlb' | 'atc'
  readonly steps: readonly S[]
}

/** A unit's answer for one address: its translation, a fault, or a strict-mode finding that stops the request. */
export type Translated<S, F> =
  | { ok: true; t: { readonly base: bigint; readonly size: bigint; readonly perms: number }; out: bigint; source: 'walk' | 'tlb' | 'atc'; steps: S[] }
  | { ok: false; fault: F; steps: S[] }
  | { ok: false; stopped: Finding; steps: S[] }

export interface TransferResult<S, F> {
  readonly pieces: TransferPiece<S>[]
  /** Read data (as far as it got). */
  readonly data?: Buffer
  readonly fault?: F
  /** The memory behind the output address did not answer (external abort). */
  readonly abort?: string
  readonly findings: Finding[]
  readonly stopped?: Finding
  /** The descriptors the failing translation read. */
  readonly faultSteps?: readonly S[]
  /** An ATS translation request's answer. */
  readonly ats?: { readonly out: bigint; readonly size: bigint; readonly perms: number }
}

/** A unit's answer for address `addr` of request `req`; findings go to `findings`. One function per unit, not one per request. */
export type Translator<R, S, F> = (req: R, addr: bigint, findings: Finding[]) => Translated<S, F>

/**
 * Moves a request's bytes one translation at a time (SMMUv3 and VT-d alike):
 * `translate` answers for each address; a fault, a stop or an abort ends the request.
 */
export function transfer<R extends TransferRequest, S, F>(mem: MemoryPort, req: R, findings: Finding[], translate: Translator<R, S, F>, onFault: (f: F) => void): TransferResult<S, F> {
  // nothing to move (an ATS request of length 0 is a translation request alone): the general path
  if (!(req.len > 0)) return transferFrom(mem, req, findings, translate, onFault, undefined)
  const tr = translate(req, req.addr, findings)
  if (tr.ok) {
    // the common case: one translation covers the whole request (no chunks to gather)
    const t = tr.t
    const len = req.len
    const n = len <= 4096 - pageOffset(req.addr) ? len : Math.min(len, Number(t.base + t.size - req.addr))
    if (n === len) {
      const pieces: TransferPiece<S>[] = [{ addr: req.addr, len, out: tr.out, perms: t.perms, source: tr.source, steps: tr.steps }]
      if (req.write) {
        const r = mem.write(tr.out, req.data ? req.data.subarray(0, len) : Buffer.alloc(len))
        return r ? { pieces, data: undefined, findings, abort: r.abort } : { pieces, data: undefined, findings }
      }
      const b = mem.read(tr.out, len)
      return isAbort(b) ? { pieces, data: Buffer.concat([]), findings, abort: b.abort } : { pieces, data: b, findings }
    }
  }
  return transferFrom(mem, req, findings, translate, onFault, tr)
}

/** The general path: `first` is the answer for the request's first address when already asked. */
function transferFrom<R extends TransferRequest, S, F>(mem: MemoryPort, req: R, findings: Finding[], translate: Translator<R, S, F>, onFault: (f: F) => void, first: Translated<S, F> | undefined): TransferResult<S, F> {
  const pieces: TransferPiece<S>[] = []
  // read data: the one chunk of a request one translation covers, or all of them
  const got: Chunks = { one: undefined, all: undefined }
  let done = 0
  // an ATS request of length 0 is a translation request alone
  const len = req.ats && req.len === 0 ? 1 : req.len
  while (done < len) {
    const addr = done === 0 ? req.addr : req.addr + BigInt(done)
    const tr = done === 0 && first ? first : translate(req, addr, findings)
    if (!tr.ok) {
      if ('stopped' in tr) return { pieces, data: dataOf(req, got), findings, stopped: tr.stopped, faultSteps: tr.steps }
      onFault(tr.fault)
      return { pieces, data: dataOf(req, got), findings, fault: tr.fault, faultSteps: tr.steps }
    }
    const t = tr.t
    // every translation covers at least the 4K page of its address: what fits there needs no BigInt sums
    const n = len - done <= 4096 - pageOffset(addr) ? len - done : Math.min(len - done, Number(t.base + t.size - addr))
    pieces.push({ addr, len: n, out: tr.out, perms: t.perms, source: tr.source, steps: tr.steps })
    if (req.ats && !req.len) return { pieces, findings, ats: { out: tr.out, size: t.size, perms: t.perms } }
    const r = move(mem, tr.out, req, done, n, got)
    if (r) return { pieces, data: dataOf(req, got), findings, abort: r.abort }
    done += n
  }
  return { pieces, data: dataOf(req, got), findings }
}

/** The chunks a read has gathered: `one` until a second arrives, then `all`. */
interface Chunks {
  one: Buffer | undefined
  all: Buffer[] | undefined
}

/** A read's data (empty when nothing was read); none for a write. */
function dataOf(req: TransferRequest, c: Chunks): Buffer | undefined {
  if (req.write) return undefined
  return c.all ? Buffer.concat(c.all) : (c.one ?? Buffer.concat([]))
}

/** Moves `n` bytes at the output address. */
function move(mem: MemoryPort, out: bigint, req: TransferRequest, done: number, n: number, c: Chunks): Abort | undefined {
  if (req.write) return mem.write(out, (req.data ?? Buffer.alloc(req.len)).subarray(done, done + n))
  const b = mem.read(out, n)
  if (isAbort(b)) return b
  if (c.all) c.all.push(b)
  else if (c.one) c.all = [c.one, b]
  else c.one = b
  return undefined
}

/** One request's result from two parts: what it did before it was held (stall, page request), then what the retry did. */
export function joinResults<T extends { readonly pieces: readonly unknown[]; readonly data?: Buffer; readonly findings: readonly unknown[] }>(a: T | undefined, b: T): T {
  if (!a) return b
  const data = a.data && b.data ? Buffer.concat([a.data, b.data]) : (b.data ?? a.data)
  return { ...b, pieces: [...a.pieces, ...b.pieces], data, findings: [...a.findings, ...b.findings] }
}

/** A request the hardware holds until software answers (a stall, a page request): what is left to move, what it did, who hears how it ends. */
export interface HeldTransfer<Q, R> {
  readonly rest: Q
  readonly before: R
  settle?: (r: R) => void
}
