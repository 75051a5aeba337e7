import { Abort, isAbort } from '../memory/backing'
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

/**
 * Moves a request's bytes one translation at a time (SMMUv3 and VT-d alike):
 * `translate` answers for each address; a fault, a stop or an abort ends the request.
 */
export function transfer<S, F>(mem: MemoryPort, req: TransferRequest, findings: Finding[], translate: (addr: bigint) => Translated<S, F>, onFault: (f: F) => void): TransferResult<S, F> {
  const pieces: TransferPiece<S>[] = []
  const chunks: Buffer[] = []
  const data = (): Buffer | undefined => (req.write ? undefined : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))
  let done = 0
  // an ATS request of length 0 is a translation request alone
  const len = req.ats && req.len === 0 ? 1 : req.len
  while (done < len) {
    const addr = req.addr + BigInt(done)
    const got = translate(addr)
    if (!got.ok) {
      if ('stopped' in got) return { pieces, data: data(), findings, stopped: got.stopped, faultSteps: got.steps }
      onFault(got.fault)
      return { pieces, data: data(), findings, fault: got.fault, faultSteps: got.steps }
    }
    const t = got.t
    const n = Math.min(len - done, Number(t.base + t.size - addr))
    pieces.push({ addr, len: n, out: got.out, perms: t.perms, source: got.source, steps: got.steps })
    if (req.ats && !req.len) return { pieces, findings, ats: { out: got.out, size: t.size, perms: t.perms } }
    const r = move(mem, got.out, req, done, n, chunks)
    if (r) return { pieces, data: data(), findings, abort: r.abort }
    done += n
  }
  return { pieces, data: data(), findings }
}

/** Moves `n` bytes at the output address. */
function move(mem: MemoryPort, out: bigint, req: TransferRequest, done: number, n: number, chunks: Buffer[]): Abort | undefined {
  if (req.write) return mem.write(out, (req.data ?? Buffer.alloc(req.len)).subarray(done, done + n))
  const b = mem.read(out, n)
  if (isAbort(b)) return b
  chunks.push(b)
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
