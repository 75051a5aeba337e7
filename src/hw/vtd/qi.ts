import { bits, get, set } from '../bits'

/** A 256-bit invalidation descriptor (scalable mode uses all four qwords). */
export type Descriptor = readonly [bigint, bigint, bigint, bigint]

/** Descriptor types (qw0 bits 3:0). */
export const DESC_TYPE = { CC: 1, IOTLB: 2, DEV_IOTLB: 3, IEC: 4, WAIT: 5, P_IOTLB: 6, PC: 7, DEV_IOTLB_PASID: 8, PGRP_RESP: 9 } as const
const TYPE_NAMES = new Map(Object.entries(DESC_TYPE).map(([k, v]) => [v, k]))

/** Descriptor fields, each named once (word, bits). */
const Q = {
  type: bits('TYPE', 3, 0),
  // PASID-based IOTLB (type 6)
  pGran: bits('G', 5, 4),
  pDid: bits('DID', 31, 16),
  pPasid: bits('PASID', 51, 32),
  pAm: bits('AM', 5, 0),
  pIh: bits('IH', 6),
  addr: bits('ADDR', 63, 12),
  // IOTLB (type 2): drain reads / writes first, as Linux asks when CAP.DRD / CAP.DWD
  iDw: bits('DW', 6),
  iDr: bits('DR', 7),
  // device TLB (type 3)
  dPfsidLo: bits('PFSID_LO', 15, 12),
  dQdep: bits('QDEP', 20, 16),
  dSid: bits('SID', 47, 32),
  dPfsidHi: bits('PFSID_HI', 63, 52),
  dSize: bits('S', 0),
  // context cache (type 1)
  cSid: bits('SID', 47, 32),
  cFm: bits('FM', 49, 48),
  // PASID-based device TLB (type 8)
  pdSid: bits('SID', 31, 16),
  pdS: bits('S', 11),
  // wait (type 5)
  wIf: bits('IF', 4),
  wSw: bits('SW', 5),
  wFn: bits('FN', 6),
  wData: bits('STATUS_DATA', 63, 32),
  // page group response (type 9): PASID present, response code, requester ID, PASID; PRG index and LPIG in qw1
  gPasidP: bits('PP', 4),
  gCode: bits('RESP_CODE', 15, 12),
  gRid: bits('RID', 31, 16),
  gIdx: bits('PRGI', 11, 3),
  gLpig: bits('LPIG', 2),
}

/** Page group response codes: Success, Invalid Request (Response Failure is 0xF). */
export const PGRP_RESP = { SUCCESS: 0, INVALID: 1, FAILURE: 0xf } as const

/** The fields of a page group response descriptor. */
export interface PageGroupResponse {
  readonly rid: number
  readonly pasid?: number
  readonly prgIndex: number
  readonly code: number
  readonly lpig: boolean
}

/** A page group response descriptor (what the driver's page_response queues). */
export function pageGroupResponse(r: PageGroupResponse): Descriptor {
  let qw0 = set(set(set(0n, Q.type, BigInt(DESC_TYPE.PGRP_RESP)), Q.gCode, BigInt(r.code)), Q.gRid, BigInt(r.rid))
  if (r.pasid !== undefined) qw0 = set(set(qw0, Q.gPasidP, 1n), Q.pPasid, BigInt(r.pasid))
  const qw1 = set(set(0n, Q.gIdx, BigInt(r.prgIndex)), Q.gLpig, r.lpig ? 1n : 0n)
  return [qw0, qw1, 0n, 0n]
}

export function decodePageGroupResponse(d: Descriptor): PageGroupResponse {
  const pp = get(d[0], Q.gPasidP) === 1n
  return {
    rid: Number(get(d[0], Q.gRid)),
    pasid: pp ? Number(get(d[0], Q.pPasid)) : undefined,
    prgIndex: Number(get(d[1], Q.gIdx)),
    code: Number(get(d[0], Q.gCode)),
    lpig: get(d[1], Q.gLpig) === 1n,
  }
}

/** PASID-IOTLB granularity: all mappings of the PASID, or page-selective within it. */
export const P_IOTLB_GRAN = { NONG_PASID: 2, PSI_PASID: 3 } as const
/** Status the hardware writes when a wait descriptor completes; the driver marks an aborted batch QI_ABORT. */
export const QI_DONE = 2
export const QI_ABORT = 3
/** Invalidation queue length the kernel allocates (entries). */
export const QI_LENGTH = 256

export function pasidIotlb(did: number, pasid: number, gran: number, addr: bigint, am: number, ih: boolean): Descriptor {
  let qw0 = set(0n, Q.type, BigInt(DESC_TYPE.P_IOTLB))
  qw0 = set(set(set(qw0, Q.pGran, BigInt(gran)), Q.pDid, BigInt(did)), Q.pPasid, BigInt(pasid))
  const qw1 = set(set(set(0n, Q.addr, addr >> 12n), Q.pAm, BigInt(am)), Q.pIh, ih ? 1n : 0n)
  return [qw0, qw1, 0n, 0n]
}

export function devIotlb(sid: number, pfsid: number, qdep: number, addr: bigint, sizeBit: boolean): Descriptor {
  let qw0 = set(0n, Q.type, BigInt(DESC_TYPE.DEV_IOTLB))
  qw0 = set(set(set(set(qw0, Q.dPfsidLo, BigInt(pfsid & 0xf)), Q.dQdep, BigInt(qdep)), Q.dSid, BigInt(sid)), Q.dPfsidHi, BigInt(pfsid >> 4))
  const qw1 = set(set(0n, Q.addr, addr >> 12n), Q.dSize, sizeBit ? 1n : 0n)
  return [qw0, qw1, 0n, 0n]
}

/**
 * The address mask of a page-selective invalidation of `npages` 4K pages at
 * `addr`: the smallest aligned power-of-two block of pages covering the range
 * (the driver's calculate_psi_aligned_address), and the block's base.
 */
export function psiMask(addr: bigint, npages: bigint): { base: bigint; am: number } {
  let am = 0
  while (1n << BigInt(am) < npages && am < 63) am++
  // widen until the aligned block covers the whole range
  while (am < 52 && addr >> BigInt(12 + am) !== (addr + npages * 4096n - 1n) >> BigInt(12 + am)) am++
  return { base: (addr >> BigInt(12 + am)) << BigInt(12 + am), am }
}

/** Context-cache invalidation: G 1 = global, 2 = domain (DID), 3 = device (SID, FM). */
export function contextCacheInv(g: 1 | 2 | 3, did = 0, sid = 0, fm = 0): Descriptor {
  let qw0 = set(set(0n, Q.type, BigInt(DESC_TYPE.CC)), Q.pGran, BigInt(g))
  qw0 = set(set(set(qw0, Q.pDid, BigInt(did)), Q.cSid, BigInt(sid)), Q.cFm, BigInt(fm))
  return [qw0, 0n, 0n, 0n]
}

/** Which draining an IOTLB invalidation asks for (qi_flush_iotlb: whatever CAP.DRD / CAP.DWD offer). */
export interface Drain {
  readonly read: boolean
  readonly write: boolean
}

/** IOTLB invalidation: G 1 = global, 2 = domain (DSI), 3 = page-selective (PSI) within the DID. */
export function iotlbInv(drain: Drain, g: 1 | 2 | 3, did: number, addr = 0n, am = 0, ih = false): Descriptor {
  let qw0 = set(set(set(0n, Q.type, BigInt(DESC_TYPE.IOTLB)), Q.pGran, BigInt(g)), Q.pDid, BigInt(did))
  qw0 = set(set(qw0, Q.iDr, drain.read ? 1n : 0n), Q.iDw, drain.write ? 1n : 0n)
  const qw1 = g === 3 ? set(set(set(0n, Q.addr, addr >> 12n), Q.pAm, BigInt(am)), Q.pIh, ih ? 1n : 0n) : 0n
  return [qw0, qw1, 0n, 0n]
}

/** PASID-cache invalidation: G 0 = all PASIDs of the DID, 1 = one PASID, 3 = global. */
export function pasidCacheInv(g: 0 | 1 | 3, did: number, pasid = 0): Descriptor {
  const qw0 = set(set(set(set(0n, Q.type, BigInt(DESC_TYPE.PC)), Q.pGran, BigInt(g)), Q.pDid, BigInt(did)), Q.pPasid, BigInt(pasid))
  return [qw0, 0n, 0n, 0n]
}

/** PASID-based device-TLB invalidation (ATS with a PASID prefix). */
export function devIotlbPasid(sid: number, pasid: number, addr: bigint, sizeBit: boolean): Descriptor {
  const qw0 = set(set(set(0n, Q.type, BigInt(DESC_TYPE.DEV_IOTLB_PASID)), Q.pdSid, BigInt(sid)), Q.pPasid, BigInt(pasid))
  const qw1 = set(set(0n, Q.addr, addr >> 12n), Q.pdS, sizeBit ? 1n : 0n)
  return [qw0, qw1, 0n, 0n]
}

/** The fields of a descriptor the caches act on. */
export interface DecodedDescriptor {
  readonly type: number
  readonly g: number
  readonly did: number
  readonly pasid: number
  readonly sid: number
  readonly fm: number
  readonly addr: bigint
  readonly am: number
  readonly ih: boolean
  readonly s: boolean
}

export function decodeDescriptor(d: Descriptor): DecodedDescriptor {
  const type = Number(get(d[0], Q.type))
  const sid = type === DESC_TYPE.DEV_IOTLB_PASID ? get(d[0], Q.pdSid) : type === DESC_TYPE.DEV_IOTLB ? get(d[0], Q.dSid) : get(d[0], Q.cSid)
  return {
    type,
    g: Number(get(d[0], Q.pGran)),
    did: Number(get(d[0], Q.pDid)),
    pasid: Number(get(d[0], Q.pPasid)),
    sid: Number(sid),
    fm: Number(get(d[0], Q.cFm)),
    addr: get(d[1], Q.addr) << 12n,
    am: Number(get(d[1], Q.pAm)),
    ih: get(d[1], Q.pIh) === 1n,
    s: (type === DESC_TYPE.DEV_IOTLB_PASID ? get(d[1], Q.pdS) : get(d[1], Q.dSize)) === 1n,
  }
}

/**
 * A device-TLB invalidation of the aligned block of 2^am pages at `base`, or
 * of everything (`am` undefined): the size is the run of 1 bits above bit 11
 * of ADDR, with S = 1.
 */
export function devIotlbSpan(sid: number, base: bigint, am?: number): Descriptor {
  if (am === undefined) return devIotlb(sid, sid, 0, (1n << 63n) - 1n - 0xfffn, true)
  return devIotlb(sid, sid, 0, am ? base | ((1n << BigInt(11 + am)) - 1n) : base, am > 0)
}

export function waitDesc(statusAddr: bigint): Descriptor {
  const qw0 = set(set(set(0n, Q.type, BigInt(DESC_TYPE.WAIT)), Q.wSw, 1n), Q.wData, BigInt(QI_DONE))
  return [qw0, statusAddr, 0n, 0n]
}

function hex(v: bigint): string {
  return `0x${v.toString(16)}`
}

export function bdfOf(sid: number): string {
  return `${(sid >> 8).toString(16).padStart(2, '0')}:${((sid >> 3) & 0x1f).toString(16).padStart(2, '0')}.${sid & 7}`
}

/** "P_IOTLB did=1 pasid=0 gran=PSI addr=0x1000 am=0 ih=1" */
export function describeDescriptor(d: Descriptor): string {
  const type = Number(get(d[0], Q.type))
  const name = TYPE_NAMES.get(type as never) ?? `TYPE_${type}`
  switch (type) {
    case DESC_TYPE.P_IOTLB: {
      const g = Number(get(d[0], Q.pGran))
      const gran = g === P_IOTLB_GRAN.PSI_PASID ? 'page-selective' : g === P_IOTLB_GRAN.NONG_PASID ? 'all-in-pasid' : `reserved(${g})`
      const base = `${name} did=${get(d[0], Q.pDid)} pasid=${get(d[0], Q.pPasid)} gran=${gran}`
      return g === P_IOTLB_GRAN.PSI_PASID ? `${base} addr=${hex(get(d[1], Q.addr) << 12n)} am=${get(d[1], Q.pAm)} ih=${get(d[1], Q.pIh)}` : base
    }
    case DESC_TYPE.DEV_IOTLB: {
      return `${name} sid=${bdfOf(Number(get(d[0], Q.dSid)))} qdep=${get(d[0], Q.dQdep)} addr=${hex(get(d[1], Q.addr) << 12n)} s=${get(d[1], Q.dSize)}`
    }
    case DESC_TYPE.CC: {
      const q = decodeDescriptor(d)
      return q.g === 1 ? `${name} gran=global` : q.g === 2 ? `${name} gran=domain did=${q.did}` : `${name} gran=device did=${q.did} sid=${bdfOf(q.sid)} fm=${q.fm}`
    }
    case DESC_TYPE.IOTLB: {
      const q = decodeDescriptor(d)
      return q.g === 1 ? `${name} gran=global` : q.g === 2 ? `${name} gran=domain did=${q.did}` : `${name} gran=page-selective did=${q.did} addr=${hex(q.addr)} am=${q.am} ih=${q.ih ? 1 : 0}`
    }
    case DESC_TYPE.PC: {
      const q = decodeDescriptor(d)
      return q.g === 3 ? `${name} gran=global` : q.g === 0 ? `${name} gran=all-in-domain did=${q.did}` : `${name} gran=pasid did=${q.did} pasid=${q.pasid}`
    }
    case DESC_TYPE.DEV_IOTLB_PASID: {
      const q = decodeDescriptor(d)
      return `${name} sid=${bdfOf(q.sid)} pasid=${q.pasid} addr=${hex(q.addr)} s=${q.s ? 1 : 0}`
    }
    case DESC_TYPE.PGRP_RESP: {
      const g = decodePageGroupResponse(d)
      return `${name} rid=${bdfOf(g.rid)} pasid=${g.pasid ?? 'none'} prgi=${g.prgIndex} lpig=${g.lpig ? 1 : 0} code=${g.code}`
    }
    case DESC_TYPE.WAIT:
      return `${name} sw=${get(d[0], Q.wSw)} if=${get(d[0], Q.wIf)} fn=${get(d[0], Q.wFn)} status_data=${get(d[0], Q.wData)} status_addr=${hex(d[1])}`
    default:
      return name
  }
}

/** VT-d fault status register bits the invalidation queue can raise. */
export const FSTS = { IQE: 1 << 4, ICE: 1 << 5, ITE: 1 << 6 } as const
export type QiErrorName = keyof typeof FSTS

/**
 * The host's VT-d invalidation queue: the driver writes descriptors at the
 * tail and a wait descriptor after each batch; the hardware consumes them at
 * once (head = tail). Entries stay until overwritten, for inspection.
 */
export class InvalidationQueue {
  private readonly slots: (Descriptor | undefined)[] = new Array<Descriptor | undefined>(QI_LENGTH)
  private readonly status: number[] = new Array<number>(QI_LENGTH).fill(0)
  /** Who submitted each slot's descriptor, where not the host driver on its own behalf (KVM's importer hook). */
  private readonly sources: (string | undefined)[] = new Array<string | undefined>(QI_LENGTH)
  head = 0
  tail = 0
  submitted = 0
  /** Physical address the model pretends the queue and status words live at. */
  readonly base: bigint

  /** `consume` is the hardware acting on each descriptor it completes (the caches dropping entries). */
  constructor(readonly owner: string, base: bigint, private readonly consume: (d: Descriptor) => void = () => {}) {
    this.base = base
  }

  /**
   * Appends descriptors plus a wait descriptor and completes them, or, when
   * the hardware reports `error` (IQE, ICE, ITE), aborts the batch: its
   * status words say QI_ABORT.
   */
  submit(descs: readonly Descriptor[], error?: QiErrorName, source?: string): void {
    const waitIndex = (this.tail + descs.length) % QI_LENGTH
    for (const d of [...descs, waitDesc(this.base + 0x10000n + BigInt(waitIndex * 4))]) {
      this.slots[this.tail] = d
      this.sources[this.tail] = source
      this.status[this.tail] = error ? QI_ABORT : QI_DONE
      // an aborted batch invalidated nothing
      if (!error) this.consume(d)
      this.tail = (this.tail + 1) % QI_LENGTH
      this.submitted++
    }
    this.head = this.tail
  }

  /** The queue as plain data (invalidation_queue.json): head, tail and the held descriptors, words as hex strings. */
  json(): unknown {
    const count = Math.min(this.submitted, QI_LENGTH)
    const descriptors = Array.from({ length: count }, (_, i) => {
      const index = (this.tail - count + i + QI_LENGTH) % QI_LENGTH
      const d = this.slots[index]!
      const source = this.sources[index]
      return { index, words: d.map((w) => `0x${w.toString(16)}`), status: this.status[index], decoded: describeDescriptor(d), ...(source ? { source } : {}) }
    })
    return { iommu: this.owner, base: `0x${this.base.toString(16)}`, head: this.head, tail: this.tail, submitted: this.submitted, descriptors }
  }

  /** In the kernel's invalidation_queue debugfs format (256-bit descriptors), plus a decoded column. */
  dump(): string {
    const lines = [
      `Invalidation queue on IOMMU: ${this.owner}`,
      ` Base: 0x${this.base.toString(16)}\tHead: ${this.head}\tTail: ${this.tail}`,
      'Index\t\tqw0\t\t\tqw1\t\t\tqw2\t\t\tqw3\t\t\tstatus\t\tdecoded',
    ]
    const count = Math.min(this.submitted, QI_LENGTH)
    for (let i = 0; i < count; i++) {
      const idx = (this.tail - count + i + QI_LENGTH) % QI_LENGTH
      const d = this.slots[idx]!
      const words = d.map((w) => w.toString(16).padStart(16, '0')).join('\t')
      const source = this.sources[idx] ? `\t[${this.sources[idx]}]` : ''
      lines.push(`${String(idx).padStart(5)}\t${words}\t${this.status[idx].toString(16).padStart(8, '0')}\t${describeDescriptor(d)}${source}`)
    }
    return lines.join('\n') + '\n'
  }
}
