import { Bits, get, maskOf } from '../hw/bits'
import { HOST_SYNC, parseCommand } from '../hw/smmuv3/commands'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { STE0, STE1, STE1_HOST, STE2, STE3, STE_CFG } from '../hw/smmuv3/ste'
import { EntryKind, writeEntry } from './entry-writer'

/**
 * How the Linux SMMUv3 driver changes an STE (arm_smmu_write_ste): through
 * the entry writer, with the STE's used and update-safe bits, CFGI_STE
 * (leaf) + CMD_SYNC after each step, then PREFETCH_CFG for the stream.
 */

const S1DSS_BYPASS = 1n
const EATS_TRANS = 1n
const EATS_S1CHK = 2n

const m = (...f: Bits[]): bigint => maskOf(f)
const VTCR = m(STE2.S2T0SZ, STE2.S2SL0, STE2.S2IR0, STE2.S2OR0, STE2.S2SH0, STE2.S2TG, STE2.S2PS)

/** arm_smmu_get_ste_used: what the SMMU reads of an STE, by its V and Config. */
export function steUsed(e: readonly bigint[]): bigint[] {
  const used = e.map(() => 0n)
  used[0] = m(STE0.V)
  if (!get(e[0], STE0.V)) return used
  used[0] |= m(STE0.CFG)
  const cfg = get(e[0], STE0.CFG)
  if (cfg & 1n) {
    used[0] |= m(STE0.S1FMT, STE0.S1CTXPTR, STE0.S1CDMAX)
    used[1] |= m(STE1.S1DSS, STE1.S1CIR, STE1.S1COR, STE1.S1CSH, STE1.S1STALLD, STE1_HOST.STRW, STE1.EATS, STE1.MEV)
    used[2] |= m(STE2.S2VMID)
    if (get(e[1], STE1.S1DSS) === S1DSS_BYPASS) used[1] |= m(STE1_HOST.SHCFG)
  }
  if (cfg & 2n) {
    used[1] |= m(STE1_HOST.S2FWB, STE1.EATS, STE1_HOST.SHCFG, STE1.MEV)
    used[2] |= m(STE2.S2VMID, STE2.S2AA64, STE2.S2ENDI, STE2.S2PTW, STE2.S2S, STE2.S2R) | VTCR
    used[3] |= m(STE3.S2TTB)
  }
  if (cfg === STE_CFG.BYPASS) used[1] |= m(STE1_HOST.SHCFG)
  return used
}

/**
 * arm_smmu_get_ste_update_safe: EATS may go either way with the other
 * words (the attach sequence has the PCI ATS state right already), unless
 * S1CHK or S2S is involved; MEV only changes how faults are merged.
 */
export function steUpdateSafe(cur: readonly bigint[], target: readonly bigint[]): bigint[] {
  const safe = cur.map(() => 0n)
  const s1chk = get(cur[1], STE1.EATS) === EATS_S1CHK || get(target[1], STE1.EATS) === EATS_S1CHK
  if (!s1chk && !get(cur[2], STE2.S2S) && !get(target[2], STE2.S2S)) safe[1] |= EATS_TRANS << BigInt(STE1.EATS.lo)
  safe[1] |= m(STE1.MEV)
  return safe
}

export const STE_ENTRY: EntryKind = { used: steUsed, safe: steUpdateSafe }

/** Stream `sid`'s STE words as they are in memory. */
export function readSte(smmu: Smmuv3, sid: number): bigint[] {
  const addr = smmu.steAddress(sid)
  // the stream table is the driver's own allocation: a read cannot abort, but an abort reads as 0
  return Array.from({ length: 8 }, (_, i) => {
    const w = smmu.memory.read64(addr + BigInt(i * 8))
    return typeof w === 'bigint' ? w : 0n
  })
}

/** Changes stream `sid`'s STE to `target` as arm_smmu_write_ste does. */
export function writeSte(smmu: Smmuv3, sid: number, target: readonly bigint[]): void {
  const addr = smmu.steAddress(sid)
  const cur = readSte(smmu, sid)
  const cfgi = [parseCommand(`CFGI_STE sid=${sid} leaf`), HOST_SYNC]
  writeEntry(STE_ENTRY, cur, target, { store: (i, v) => smmu.memory.write64(addr + BigInt(i * 8), v), sync: () => smmu.cmdq.issue(cfgi) })
  // "likely that we'll want to use the new STE soon" (no ARM_SMMU_OPT_SKIP_PREFETCH here): no sync of its own
  smmu.cmdq.issue([parseCommand(`PREFETCH_CFG sid=${sid}`)])
}
