import { hex } from '../bits'

/** SMMUv3 event numbers (§7.3) this model raises. */
export const EVENT_IDS = {
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
} as const
export type EventName = keyof typeof EVENT_IDS

/** Event CLASS: what the faulting access was for. */
export const EVENT_CLASS = { CD: 0, TT: 1, IN: 2 } as const
export type EventClass = keyof typeof EVENT_CLASS

/** One event record, by field (§7.3). */
export interface SmmuEvent {
  readonly name: EventName
  readonly sid: number
  readonly ssid?: number
  /** Transaction attributes (post-STE): privileged, instruction, read. */
  readonly pnu?: boolean
  readonly ind?: boolean
  readonly rnw?: boolean
  readonly s2?: boolean
  readonly cls?: EventClass
  /** For CLASS = TT permission faults: the descriptor access was a read. */
  readonly ttrnw?: boolean
  readonly input?: bigint
  readonly ipa?: bigint
  readonly fetch?: bigint
  /** Why, in words (the record's IMPDEF reason, spelled out). */
  readonly reason: string
  /** False when the fault configuration says terminate silently (R = 0). */
  readonly recorded: boolean
  /** The transaction is held (CD.S / STE.S2S): it waits for CMD_RESUME or CMD_STALL_TERM under this STAG. */
  readonly stall?: boolean
  readonly stag?: number
}

const M52 = (1n << 52n) - 1n

/**
 * Records of configuration errors and structure fetch aborts (§7.3.3-7.3.11)
 * name the stream, the substream and a fetch address only: their other bits
 * are RES0, whatever the transaction was.
 */
const STREAM_ONLY: ReadonlySet<EventName> = new Set<EventName>(['C_BAD_STREAMID', 'F_STE_FETCH', 'C_BAD_STE', 'F_STREAM_DISABLED', 'C_BAD_SUBSTREAMID', 'F_CD_FETCH', 'C_BAD_CD'])

/** The 32-byte record as four little-endian 64-bit words. */
export function encodeEvent(e: SmmuEvent): [bigint, bigint, bigint, bigint] {
  // F_STREAM_DISABLED has no SubstreamID field; C_BAD_SUBSTREAMID's is always valid, with no SSV bit
  const ssid = e.ssid === undefined || e.name === 'F_STREAM_DISABLED' ? 0n : (e.name === 'C_BAD_SUBSTREAMID' ? 0n : 1n << 11n) | (BigInt(e.ssid) << 12n)
  const w0 = BigInt(EVENT_IDS[e.name]) | ssid | (BigInt(e.sid) << 32n)
  if (STREAM_ONLY.has(e.name)) return [w0, 0n, 0n, e.fetch !== undefined ? e.fetch & M52 & ~7n : 0n]
  const w1 =
    (e.pnu ? 1n << 33n : 0n) |
    (e.ind ? 1n << 34n : 0n) |
    (e.rnw ? 1n << 35n : 0n) |
    (e.s2 ? 1n << 39n : 0n) |
    (e.cls !== undefined ? BigInt(EVENT_CLASS[e.cls]) << 40n : 0n) |
    (e.ttrnw ? 1n << 44n : 0n) |
    (e.stall ? (1n << 31n) | BigInt(e.stag ?? 0) : 0n)
  const w2 = e.input ?? 0n
  const w3 = e.fetch !== undefined ? e.fetch & M52 & ~7n : e.ipa !== undefined ? e.ipa & M52 & ~0xfffn : 0n
  return [w0, w1, w2, w3]
}

/** "F_TRANSLATION sid=0x8 ssid=0x1 input=0x1000 s2=0 class=IN rnw=1 ...": the decoded record. */
export function describeEvent(e: SmmuEvent): string {
  const parts: string[] = [`${e.name}(0x${EVENT_IDS[e.name].toString(16).padStart(2, '0')})`, `sid=${hex(e.sid)}`]
  if (e.ssid !== undefined) parts.push(`ssid=${hex(e.ssid)}`)
  if (e.input !== undefined) parts.push(`input=${hex(e.input)}`)
  if (e.s2 !== undefined) parts.push(`s2=${e.s2 ? 1 : 0}`)
  if (e.cls !== undefined) parts.push(`class=${e.cls}`)
  if (e.rnw !== undefined) parts.push(`rnw=${e.rnw ? 1 : 0}`, `pnu=${e.pnu ? 1 : 0}`, `ind=${e.ind ? 1 : 0}`)
  if (e.ttrnw !== undefined) parts.push(`ttrnw=${e.ttrnw ? 1 : 0}`)
  if (e.ipa !== undefined) parts.push(`ipa=${hex(e.ipa)}`)
  if (e.fetch !== undefined) parts.push(`fetch=${hex(e.fetch)}`)
  if (e.stall) parts.push('stall=1', `stag=${hex(e.stag ?? 0)}`)
  if (!e.recorded) parts.push('recorded=0')
  parts.push(`reason="${e.reason}"`)
  return parts.join(' ')
}
