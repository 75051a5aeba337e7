import { set } from '../bits'
import { CD0, CD1, LINUX_MAIR, PS_BITS } from './cd'
import { Geometry, GranuleShift } from './pgtable'
import { STE0, STE1, STE1_HOST, STE2, STE3, STE_CFG } from './ste'

/**
 * STE and CD words as the Linux driver writes them (arm_smmu_make_*_ste,
 * arm_smmu_make_s1_cd), for the host driver model and for tests that build
 * their own structures.
 */

/** The encoding of an address size (IPS, S2PS): the smallest that holds `bits`. */
export function psEncoding(bits: number): bigint {
  const i = PS_BITS.findIndex((b) => b >= bits)
  return BigInt(i < 0 ? PS_BITS.length - 1 : i)
}

export interface S1CdOptions {
  readonly asid: number
  readonly ttb0: bigint
  readonly granule?: GranuleShift
  /** VA bits (64 - T0SZ). */
  readonly ias?: number
  readonly ipsBits?: number
  readonly ha?: boolean
  readonly hd?: boolean
  /** CD.S: stall on a stage-1 fault (a master with IOPF enabled). */
  readonly stall?: boolean
}

const TG0 = { 12: 0n, 16: 1n, 14: 2n } as const
const S2TG = { 12: 0n, 16: 1n, 14: 2n } as const

export function s1Cd(o: S1CdOptions): bigint[] {
  let w0 = 0n
  w0 = set(w0, CD0.T0SZ, BigInt(64 - (o.ias ?? 48)))
  w0 = set(w0, CD0.TG0, TG0[o.granule ?? 12])
  w0 = set(w0, CD0.EPD1, 1n)
  w0 = set(w0, CD0.V, 1n)
  w0 = set(w0, CD0.IPS, psEncoding(o.ipsBits ?? 48))
  w0 = set(w0, CD0.AA64, 1n)
  w0 = set(w0, CD0.R, 1n)
  w0 = set(w0, CD0.A, 1n)
  w0 = set(w0, CD0.ASET, 1n)
  w0 = set(w0, CD0.ASID, BigInt(o.asid))
  if (o.ha || o.hd) w0 = set(w0, CD0.HA, 1n)
  if (o.hd) w0 = set(w0, CD0.HD, 1n)
  if (o.stall) w0 = set(w0, CD0.S, 1n)
  // IR0/OR0 write-back, SH0 inner shareable
  w0 |= (1n << 8n) | (1n << 10n) | (3n << 12n)
  return [w0, set(0n, CD1.TTB0, o.ttb0 >> 4n), 0n, LINUX_MAIR, 0n, 0n, 0n, 0n]
}

export interface S2Options {
  readonly vmid: number
  readonly ttb: bigint
  readonly geometry: Geometry
  readonly psBits?: number
  readonly ha?: boolean
  readonly hd?: boolean
  /** STE.S2FWB: the table's leaves use the forced-write-back MemAttr encoding. */
  readonly fwb?: boolean
}

export interface SteOptions {
  readonly config: 'abort' | 'bypass' | 's1' | 's2' | 'nested'
  readonly ctxPtr?: bigint
  readonly cdMax?: number
  /** 0 linear, 1 2-level 4K leaves, 2 2-level 64K leaves. */
  readonly cdFmt?: number
  readonly s1dss?: number
  /** STE.S1STALLD: stage-1 faults never stall (a master that does not stall, on an SMMU that could). */
  readonly s1stalld?: boolean
  readonly eats?: number
  /** STE.SHCFG = incoming: the driver's override of bypassed or stage-2 traffic when IDR1.ATTR_TYPES_OVR is set. */
  readonly shcfgIncoming?: boolean
  readonly s2?: S2Options
}

export function steWords(o: SteOptions): bigint[] {
  const cfg = { abort: STE_CFG.ABORT, bypass: STE_CFG.BYPASS, s1: STE_CFG.S1_TRANS, s2: STE_CFG.S2_TRANS, nested: STE_CFG.NESTED }[o.config]
  let w0 = set(set(0n, STE0.V, 1n), STE0.CFG, cfg)
  let w1 = 0n
  let w2 = 0n
  let w3 = 0n
  if (o.config === 's1' || o.config === 'nested') {
    w0 = set(w0, STE0.S1CTXPTR, (o.ctxPtr ?? 0n) >> 6n)
    w0 = set(w0, STE0.S1CDMAX, BigInt(o.cdMax ?? 0))
    w0 = set(w0, STE0.S1FMT, BigInt(o.cdFmt ?? 0))
    w1 = set(w1, STE1.S1DSS, BigInt(o.s1dss ?? 0))
    // CD fetches write-back, inner shareable
    w1 = set(set(set(w1, STE1.S1CIR, 1n), STE1.S1COR, 1n), STE1.S1CSH, 3n)
    if (o.s1stalld) w1 = set(w1, STE1.S1STALLD, 1n)
  }
  w1 = set(w1, STE1.EATS, BigInt(o.eats ?? 0))
  if (o.shcfgIncoming) w1 = set(w1, STE1_HOST.SHCFG, 1n)
  if (o.s2) {
    const g = o.s2.geometry
    const sl = g.granule === 12 ? 2 - g.startLevel : 3 - g.startLevel
    if (o.s2.fwb) w1 = set(w1, STE1_HOST.S2FWB, 1n)
    w2 = set(w2, STE2.S2VMID, BigInt(o.s2.vmid))
    w2 = set(w2, STE2.S2T0SZ, BigInt(64 - g.ias))
    w2 = set(w2, STE2.S2SL0, BigInt(sl))
    w2 = set(w2, STE2.S2TG, S2TG[g.granule])
    w2 = set(w2, STE2.S2PS, psEncoding(o.s2.psBits ?? 48))
    w2 = set(w2, STE2.S2AA64, 1n)
    w2 = set(w2, STE2.S2PTW, 1n)
    w2 = set(w2, STE2.S2R, 1n)
    if (o.s2.ha || o.s2.hd) w2 = set(w2, STE2.S2HA, 1n)
    if (o.s2.hd) w2 = set(w2, STE2.S2HD, 1n)
    // walks write-back, inner shareable
    w2 = set(set(set(w2, STE2.S2IR0, 1n), STE2.S2OR0, 1n), STE2.S2SH0, 3n)
    w3 = set(w3, STE3.S2TTB, o.s2.ttb >> 4n)
  }
  return [w0, w1, w2, w3, 0n, 0n, 0n, 0n]
}

/** Little-endian bytes of 64-bit words. */
export function wordBytes(words: readonly bigint[]): Buffer {
  const b = Buffer.alloc(words.length * 8)
  words.forEach((w, i) => b.writeBigUInt64LE(w, i * 8))
  return b
}
