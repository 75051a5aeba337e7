import { hex } from '../bits'
import { HeldTransfer, joinResults } from '../dma-transfer'
import type { VtdDma, VtdDmaRequest, VtdDmaResult } from './dma'
import { VtdFault } from './faults'
import { DESC_TYPE, Descriptor, PGRP_RESP, bdfOf, decodePageGroupResponse } from './qi'

/** Bytes of a page request descriptor. */
export const PRQ_DESC_SIZE = 32
/** Linux's page request queue: 2^PRQ_ORDER (4) pages of 32-byte descriptors. */
export const PRQ_ENTRIES = (16 * 4096) / PRQ_DESC_SIZE
/** A requester's PRG indexes: 9 bits, so at most this many groups outstanding per requester. */
const PRG_INDEXES = 512

/** A page request descriptor (type 1), by field. */
export interface PageRequest {
  readonly rid: number
  readonly pasid?: number
  /** The page (ADDR [63:12]). */
  readonly addr: bigint
  readonly read: boolean
  readonly write: boolean
  readonly exec: boolean
  readonly priv: boolean
  /** Last page in group. */
  readonly lpig: boolean
  readonly prgIndex: number
}

/**
 * qw0: type 1, PASID present b8, RID [31:16], PASID [51:32], EXR b52, PMR b53;
 * qw1: RDR b0, WRR b1, LPIG b2, PRG index [11:3], ADDR [63:12].
 */
export function encodePageRequest(p: PageRequest): [bigint, bigint, bigint, bigint] {
  let qw0 = 1n | (BigInt(p.rid & 0xffff) << 16n)
  if (p.pasid !== undefined) qw0 |= (1n << 8n) | (BigInt(p.pasid & 0xfffff) << 32n)
  if (p.exec) qw0 |= 1n << 52n
  if (p.priv) qw0 |= 1n << 53n
  const qw1 = (p.read ? 1n : 0n) | (p.write ? 2n : 0n) | (p.lpig ? 4n : 0n) | (BigInt(p.prgIndex & 0x1ff) << 3n) | (p.addr & ~0xfffn)
  return [qw0, qw1, 0n, 0n]
}

export function describePageRequest(p: PageRequest): string {
  const perm = `${p.read ? 'r' : '-'}${p.write ? 'w' : '-'}${p.exec ? 'x' : '-'}${p.priv ? ' priv' : ''}`
  return `PAGE_REQ rid=${bdfOf(p.rid)} pasid=${p.pasid ?? 'none'} addr=${hex(p.addr)} ${perm} lpig=${p.lpig ? 1 : 0} prgi=${p.prgIndex}`
}

/** An endpoint's request held while its page request waits for the page group response. */
export interface HeldRequest extends HeldTransfer<VtdDmaRequest, VtdDmaResult> {
  readonly request: PageRequest
  /** The failed translation behind it (not recorded: a translation request's R = W = 0). */
  readonly fault: VtdFault
}

export type PriResult = VtdDmaResult & { readonly held?: HeldRequest }

/**
 * Page requests (PCIe PRI) through a VT-d unit. An endpoint whose PRI the
 * host enabled translates through ATS; a translation it cannot get (R = W = 0)
 * becomes a page request in the page request queue, and the endpoint holds
 * the access until a page group response descriptor for its PRG index comes
 * through the invalidation queue: Success retries (from the faulting page),
 * anything else ends the access with that fault. With PRQ_ENTRIES requests
 * outstanding, or no free PRG index, a new one overflows (PRO) and the access
 * fails: memory held for slow responders is bounded.
 */
export class VtdPrq {
  /** Requester IDs whose PRI capability is enabled. */
  readonly enabled = new Set<number>()
  private readonly held = new Map<string, HeldRequest>()
  private readonly nextIndex = new Map<number, number>()
  /** Page requests written, newest last (the last PRQ_HISTORY, for the debug tree). */
  readonly history: PageRequest[] = []
  /** PRO: a request was lost to a full queue. */
  overflow = false
  requests = 0
  responses = 0
  /** The host driver's page request handler (IOPF). */
  onRequest: ((h: HeldRequest) => void) | undefined

  private static key(rid: number, pasid: number | undefined, prgIndex: number): string {
    return `${rid}:${pasid ?? '-'}:${prgIndex}`
  }

  list(): HeldRequest[] {
    return [...this.held.values()]
  }

  get size(): number {
    return this.held.size
  }

  /** A free PRG index of `rid`, round robin; undefined when all 512 are outstanding. */
  private index(rid: number, pasid: number | undefined): number | undefined {
    const start = this.nextIndex.get(rid) ?? 0
    for (let i = 0; i < PRG_INDEXES; i++) {
      const idx = (start + i) % PRG_INDEXES
      if (!this.held.has(VtdPrq.key(rid, pasid, idx))) {
        this.nextIndex.set(rid, (idx + 1) % PRG_INDEXES)
        return idx
      }
    }
    return undefined
  }

  /** The endpoint's access: through ATS with PRI when enabled; a failed translation is a page request. */
  access(dma: VtdDma, req: VtdDmaRequest, before?: VtdDmaResult, settle?: (r: VtdDmaResult) => void): PriResult {
    const pri = this.enabled.has(req.sid)
    const r = joinResults(before, dma.access(pri ? { ...req, ats: true, pri: true } : req))
    const f = r.fault
    if (!f?.pageRequest) return r
    const idx = this.held.size < PRQ_ENTRIES ? this.index(req.sid, req.pasid) : undefined
    if (idx === undefined) {
      this.overflow = true
      return r
    }
    const request: PageRequest = { rid: req.sid, pasid: req.pasid, addr: f.addr & ~0xfffn, read: !f.write, write: f.write, exec: f.exec ?? false, priv: f.priv ?? false, lpig: true, prgIndex: idx }
    const done = Number(f.addr - req.addr)
    const h: HeldRequest = { request, fault: f, rest: { ...req, addr: f.addr, len: req.len - done, data: req.data?.subarray(done) }, before: { ...r, fault: undefined, faultSteps: undefined }, settle }
    this.held.set(VtdPrq.key(request.rid, request.pasid, idx), h)
    this.requests++
    this.history.push(request)
    if (this.history.length > 256) this.history.shift()
    this.onRequest?.(h)
    return { ...r, held: h }
  }

  /** The unit consuming a descriptor: a page group response answers the group it names (no match: ignored). */
  descriptor(dma: () => VtdDma, d: Descriptor): void {
    if (Number(d[0] & 0xfn) !== DESC_TYPE.PGRP_RESP) return
    const g = decodePageGroupResponse(d)
    const key = VtdPrq.key(g.rid, g.pasid, g.prgIndex)
    const h = this.held.get(key)
    if (!h) return
    this.held.delete(key)
    this.responses++
    if (g.code !== PGRP_RESP.SUCCESS) return h.settle?.({ ...h.before, fault: h.fault })
    const r = this.access(dma(), h.rest, h.before, h.settle)
    if (!r.held) h.settle?.(r)
  }

  dump(): string {
    const head = `${this.held.size} outstanding, ${this.requests} requests, ${this.responses} responses, PRO=${this.overflow ? 1 : 0}, PRI enabled: ${[...this.enabled].map(bdfOf).join(' ') || '-'}\n`
    return head + this.history.map((p) => `${encodePageRequest(p).map((w) => w.toString(16).padStart(16, '0')).join(' ')}  ${describePageRequest(p)}\n`).join('')
  }
}
