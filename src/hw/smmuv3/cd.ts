import { bits } from '../bits'

/** Context descriptor fields (SMMUv3 §5.4), words 0..3. */
export const CD0 = {
  T0SZ: bits('T0SZ', 5, 0),
  TG0: bits('TG0', 7, 6),
  EPD0: bits('EPD0', 14),
  ENDI: bits('ENDI', 15),
  T1SZ: bits('T1SZ', 21, 16),
  TG1: bits('TG1', 23, 22),
  EPD1: bits('EPD1', 30),
  V: bits('V', 31),
  IPS: bits('IPS', 34, 32),
  AFFD: bits('AFFD', 35),
  AA64: bits('AA64', 41),
  HD: bits('HD', 42),
  HA: bits('HA', 43),
  S: bits('S', 44),
  R: bits('R', 45),
  A: bits('A', 46),
  ASET: bits('ASET', 47),
  ASID: bits('ASID', 63, 48),
} as const

export const CD1 = { TTB0: bits('TTB0', 51, 4) } as const
export const CD2 = { TTB1: bits('TTB1', 51, 4) } as const

/** An L1 CD table descriptor. */
export const L1CD = { V: bits('V', 0), L2PTR: bits('L2PTR', 51, 12) } as const

/** TG0 encodings -> granule shift; TG1 encodes differently. */
export const TG0_SHIFT: Readonly<Record<number, number>> = { 0: 12, 1: 16, 2: 14 }
export const TG1_SHIFT: Readonly<Record<number, number>> = { 1: 14, 2: 12, 3: 16 }
/** STE.S2TG encodings -> granule shift. */
export const S2TG_SHIFT: Readonly<Record<number, number>> = { 0: 12, 1: 16, 2: 14 }
/** IPS / S2PS / IDR5.OAS encodings -> address bits. */
export const PS_BITS = [32, 36, 40, 42, 44, 48, 52, 56] as const

/** Linux's MAIR: index 0 NC, 1 WB RWA, 2 Device-nGnRE, 3 inner NC outer WB. */
export const LINUX_MAIR = 0xf404ff44n
