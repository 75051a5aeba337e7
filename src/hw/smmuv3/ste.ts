import { ErrnoError } from '../../util/errno'
import { Bits, bits, get, hex, maskOf, set } from '../bits'

/** Stream table entry fields (words 0 and 1), each named once. */
export const STE0 = {
  V: bits('V', 0),
  CFG: bits('CFG', 3, 1),
  S1FMT: bits('S1FMT', 5, 4),
  S1CTXPTR: bits('S1CTXPTR', 51, 6),
  S1CDMAX: bits('S1CDMAX', 63, 59),
} as const

export const STE1 = {
  S1DSS: bits('S1DSS', 1, 0),
  S1CIR: bits('S1CIR', 3, 2),
  S1COR: bits('S1COR', 5, 4),
  S1CSH: bits('S1CSH', 7, 6),
  MEV: bits('MEV', 19),
  S1STALLD: bits('S1STALLD', 27),
  EATS: bits('EATS', 29, 28),
} as const

/**
 * Word-1 fields only the host driver writes (a guest's STE never carries
 * them): stage-2 forced write-back, the StreamWorld, and the shareability
 * override of bypassed traffic (SHCFG = 1, incoming, with IDR1.ATTR_TYPES_OVR).
 */
export const STE1_HOST = {
  S2FWB: bits('S2FWB', 25),
  STRW: bits('STRW', 31, 30),
  SHCFG: bits('SHCFG', 45, 44),
} as const

/** Stage-2 fields (words 2 and 3). */
export const STE2 = {
  S2VMID: bits('S2VMID', 15, 0),
  S2T0SZ: bits('S2T0SZ', 37, 32),
  S2SL0: bits('S2SL0', 39, 38),
  S2IR0: bits('S2IR0', 41, 40),
  S2OR0: bits('S2OR0', 43, 42),
  S2SH0: bits('S2SH0', 45, 44),
  S2TG: bits('S2TG', 47, 46),
  S2PS: bits('S2PS', 50, 48),
  S2AA64: bits('S2AA64', 51),
  S2ENDI: bits('S2ENDI', 52),
  S2AFFD: bits('S2AFFD', 53),
  S2PTW: bits('S2PTW', 54),
  S2HD: bits('S2HD', 55),
  S2HA: bits('S2HA', 56),
  S2S: bits('S2S', 57),
  S2R: bits('S2R', 58),
} as const

export const STE3 = {
  S2TTB: bits('S2TTB', 51, 4),
} as const

/** A 2-level stream table's L1 descriptor. */
export const L1STD = {
  SPAN: bits('SPAN', 4, 0),
  L2PTR: bits('L2PTR', 51, 6),
} as const

/** STE.Config values. */
export const STE_CFG = { ABORT: 0n, BYPASS: 4n, S1_TRANS: 5n, S2_TRANS: 6n, NESTED: 7n } as const
export const CFG_NAMES = new Map<bigint, string>([
  [0n, 'abort'],
  [4n, 'bypass'],
  [5n, 's1-translate'],
  [6n, 's2-translate'],
  [7n, 'nested'],
])
/** STE.EATS values. */
const EATS_ABT = 0n
const EATS_TRANS = 1n

/** The guest may set only these: the fields a vSMMU owns. */
const GUEST_WORD0: readonly Bits[] = [STE0.V, STE0.CFG, STE0.S1FMT, STE0.S1CTXPTR, STE0.S1CDMAX]
const GUEST_WORD1: readonly Bits[] = [STE1.S1DSS, STE1.S1CIR, STE1.S1COR, STE1.S1CSH, STE1.S1STALLD, STE1.EATS]
export const GUEST_STE_MASK: readonly [bigint, bigint] = [maskOf(GUEST_WORD0), maskOf(GUEST_WORD1)]

/** A guest STE as the host keeps it after validation (EATS taken out). */
export interface GuestSte {
  readonly words: readonly [bigint, bigint]
  readonly config: 'abort' | 'bypass' | 's1-translate'
  readonly ats: boolean
}

/**
 * Validates the two guest STE words a nested HWPT is made from, as the
 * kernel's vSMMU does: V=0 becomes an abort STE, only guest-owned bits may
 * be set, Config must be abort, bypass or S1 translate, EATS abort or full.
 */
export function validateGuestSte(words: readonly [bigint, bigint]): GuestSte {
  const w0 = words[0]
  let w1 = words[1]
  if (get(w0, STE0.V) === 0n) return { words: [0n, 0n], config: 'abort', ats: false }
  const bad0 = w0 & ~GUEST_STE_MASK[0]
  const bad1 = w1 & ~GUEST_STE_MASK[1]
  if (bad0) throw new ErrnoError('EIO', `ste[0]: bits ${hex(bad0)} are not guest-settable (allowed mask ${hex(GUEST_STE_MASK[0])})`)
  if (bad1) throw new ErrnoError('EIO', `ste[1]: bits ${hex(bad1)} are not guest-settable (allowed mask ${hex(GUEST_STE_MASK[1])})`)
  const cfg = get(w0, STE0.CFG)
  if (cfg !== STE_CFG.ABORT && cfg !== STE_CFG.BYPASS && cfg !== STE_CFG.S1_TRANS) {
    throw new ErrnoError('EIO', `ste[0].CFG=${cfg} (${CFG_NAMES.get(cfg) ?? 'reserved'}): only abort (0), bypass (4) and s1-translate (5) are allowed`)
  }
  const eats = get(w1, STE1.EATS)
  if (eats !== EATS_ABT && eats !== EATS_TRANS) throw new ErrnoError('EIO', `ste[1].EATS=${eats}: only 0 (abort) and 1 (translate) are allowed`)
  w1 = set(w1, STE1.EATS, 0n)
  const config = cfg === STE_CFG.S1_TRANS ? 's1-translate' : cfg === STE_CFG.BYPASS ? 'bypass' : 'abort'
  return { words: [w0, w1], config, ats: config === 's1-translate' && eats === EATS_TRANS }
}

/** Field names and values of STE words, for the debug tree. */
export function describeSte(words: readonly [bigint, bigint]): [string, string][] {
  const out: [string, string][] = []
  for (const f of Object.values(STE0)) {
    const v = get(words[0], f)
    out.push([`ste.${f.name}`, f === STE0.CFG ? `${v} (${CFG_NAMES.get(v) ?? 'reserved'})` : f === STE0.S1CTXPTR ? hex(v << 6n) : `${v}`])
  }
  for (const f of Object.values(STE1)) out.push([`ste.${f.name}`, `${get(words[1], f)}`])
  return out
}
