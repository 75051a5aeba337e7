import { OutcomeError } from '../../util/errno'
import { hex } from '../bits'
import { bdfOf } from './qi'

/** Scalable-mode fault reasons the walk raises (the FR field of a fault record). */
export const FAULT_REASONS: Readonly<Record<number, string>> = {
  0x38: 'root entry: access error',
  0x39: 'root entry not present',
  0x40: 'context entry: access error',
  0x41: 'context entry not present',
  0x44: 'translation request while context DTE = 0',
  0x45: 'request with PASID while context PASIDE = 0',
  0x46: 'PASID beyond the PASID directory',
  0x50: 'PASID directory entry: access error',
  0x51: 'PASID directory entry not present',
  0x58: 'PASID table entry: access error',
  0x59: 'PASID table entry not present',
  0x5b: 'PASID table entry invalid (PGTT)',
  0x5c: 'execute request while ERE = 0',
  0x5d: 'supervisor request while SRE = 0',
  0x70: 'first-stage entry: access error',
  0x71: 'first-stage entry not present',
  0x72: 'first-stage entry: reserved bit set',
  0x75: 'first-stage root (FSPTPTR) not readable through second stage (nested)',
  0x76: 'first-stage entry not readable through second stage (nested)',
  0x77: 'first-stage A/D update not writable through second stage (nested)',
  0x78: 'second-stage entry: access error',
  0x7b: 'invalid second-stage table pointer',
  0x80: 'non-canonical first-stage input address',
  0x81: 'user request hit U/S = 0',
  0x82: 'execute request hit XD = 1',
  0x83: 'input address beyond the maximum width',
  0x85: 'no write permission',
  0x86: 'no read permission',
}

/** A translation fault: what the unit records in a fault-recording register. */
export interface VtdFault {
  readonly reason: number
  /** Requester ID (bus:devfn). */
  readonly sid: number
  readonly pasid?: number
  readonly addr: bigint
  readonly write: boolean
  readonly priv?: boolean
  readonly exec?: boolean
  /** What went wrong, in words. */
  readonly detail: string
  /** false when FPD (fault processing disable) suppressed the record, or the endpoint asks for the page instead. */
  readonly recorded: boolean
  /** A PRI endpoint's translation request failed: it sends a page request (no fault record). */
  readonly pageRequest?: boolean
}

export class VtdFaultError extends OutcomeError {
  constructor(readonly fault: VtdFault) {
    super(`VT-d fault 0x${fault.reason.toString(16)}: ${fault.detail}`)
  }
}

/**
 * The 128-bit fault record (FRCD) as two little-endian qwords: FI [63:12],
 * SID [79:64], PP 95, FR [103:96], PV [123:104], T 126 (1 = read), F 127.
 */
export function encodeFault(f: VtdFault): [bigint, bigint] {
  const lo = f.addr & ~0xfffn & ((1n << 64n) - 1n)
  let hi = BigInt(f.sid & 0xffff)
  if (f.pasid !== undefined) hi |= (1n << 31n) | (BigInt(f.pasid & 0xfffff) << 40n)
  hi |= BigInt(f.reason & 0xff) << 32n
  if (!f.write) hi |= 1n << 62n
  hi |= 1n << 63n
  return [lo, hi]
}

/** "0x71 (first-stage entry not present) sid=02:00.0 pasid=none addr=0x1000 DMA Read: level 4 ..." */
export function describeFault(f: VtdFault): string {
  const name = FAULT_REASONS[f.reason] ?? 'unknown'
  return `FR=${hex(f.reason)} (${name}) sid=${bdfOf(f.sid)} pasid=${f.pasid === undefined ? 'none' : hex(f.pasid)} addr=${hex(f.addr)} ${f.write ? 'DMA Write' : 'DMA Read'}${f.priv ? ' priv' : ''}${f.exec ? ' exec' : ''} recorded=${f.recorded ? 1 : 0} reason="${f.detail}"`
}
