import { HOST_SYNC, parseCommand } from '../hw/smmuv3/commands'
import { steWords } from '../hw/smmuv3/build'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { PciDevice } from '../hw/unit'
import { hex } from '../hw/bits'
import { EntryKind, writeEntry } from './entry-writer'

/**
 * A master's context descriptor table as the Linux SMMUv3 driver lays it
 * out (arm_smmu_alloc_cd_tables, arm_smmu_alloc_cd_ptr): S1CDMax is the
 * master's SSID bits; linear while 2^S1CDMax CDs fit one 64 KiB leaf (or
 * the SMMU has no 2-level CD tables), else 2-level with 64 KiB leaves
 * (S1Fmt = 2, CTXDESC_SPLIT = 10) made when an SSID first needs one.
 */

/** CDs per 64 KiB leaf, and the most SSID bits a linear table holds. */
const CTXDESC_SPLIT = 10
const L2_ENTRIES = 1 << CTXDESC_SPLIT
const CD_BYTES = 64

/** STE.S1DSS: what a transaction without an SSID does while the STE points at a CD table. */
export const S1DSS = { TERMINATE: 0, BYPASS: 1, SSID0: 2 } as const

export interface CdTable {
  readonly base: bigint
  readonly cdMax: number
  /** STE.S1Fmt: 0 linear, 2 two-level with 64 KiB leaves. */
  readonly fmt: 0 | 2
  /** Leaf tables by L1 index (two-level only). */
  readonly leaves: Map<number, bigint>
}

const tables = new WeakMap<PciDevice, CdTable>()

/** master->ssid_bits: the device's PASID width within IDR1.SSIDSIZE, at most 10 without IDR0.CD2L. */
export function masterSsidBits(smmu: Smmuv3, dev: PciDevice): number {
  const bits = Math.min(dev.pasidBits, Number(smmu.registers.field('IDR1.SSIDSIZE')))
  return smmu.registers.flag('IDR0.CD2L') ? bits : Math.min(bits, CTXDESC_SPLIT)
}

/** The master's CD table, allocated on first use. */
export function cdTableOf(smmu: Smmuv3, dev: PciDevice): CdTable {
  let t = tables.get(dev)
  if (t) return t
  const cdMax = masterSsidBits(smmu, dev)
  const count = 2 ** cdMax
  t =
    count <= L2_ENTRIES
      ? { base: smmu.memory.alloc(count * CD_BYTES), cdMax, fmt: 0, leaves: new Map() }
      : { base: smmu.memory.alloc((count / L2_ENTRIES) * 8), cdMax, fmt: 2, leaves: new Map() }
  tables.set(dev, t)
  return t
}

/**
 * The address of CD[ssid] (arm_smmu_alloc_cd_ptr): a missing leaf is
 * allocated, its L1 descriptor written (V | L2Ptr) and, since an invalid
 * L1CD may be cached, CFGI_CD (leaf = 0) + CMD_SYNC go out. Undefined when
 * the SSID is beyond the table (the driver's NULL: ENOMEM).
 */
export function cdSlot(smmu: Smmuv3, dev: PciDevice, ssid: number): bigint | undefined {
  const t = cdTableOf(smmu, dev)
  if (ssid >= 2 ** t.cdMax) return undefined
  if (t.fmt === 0) return t.base + BigInt(ssid * CD_BYTES)
  const idx = ssid >> CTXDESC_SPLIT
  let leaf = t.leaves.get(idx)
  if (leaf === undefined) {
    leaf = smmu.memory.alloc(L2_ENTRIES * CD_BYTES)
    t.leaves.set(idx, leaf)
    smmu.memory.write64(t.base + BigInt(idx) * 8n, leaf | 1n)
    smmu.cmdq.issue([parseCommand(`CFGI_CD sid=${dev.streamId} ssid=${hex(ssid)}`), HOST_SYNC])
  }
  return leaf + BigInt((ssid & (L2_ENTRIES - 1)) * CD_BYTES)
}

/**
 * Writes CD[ssid] (zeros: clears it) as arm_smmu_write_cd_entry does, through
 * the driver's entry writer: each step that changes the CD is followed by
 * CFGI_CD for that SSID and a CMD_SYNC. A clear of a CD never made is nothing.
 */
export function writeCd(smmu: Smmuv3, dev: PciDevice, ssid: number, words: readonly bigint[] | undefined): void {
  const t = tables.get(dev)
  if (!words && !t) return
  const addr = words ? cdSlot(smmu, dev, ssid) : clearSlot(t!, ssid)
  if (addr === undefined) return
  const cur = Array.from({ length: 8 }, (_, i) => smmu.memory.read64(addr + BigInt(i * 8)))
  if (!cur.every((w): w is bigint => typeof w === 'bigint')) return
  const sync = [parseCommand(`CFGI_CD sid=${dev.streamId} ssid=${hex(ssid)} leaf`), HOST_SYNC]
  writeEntry(CD_ENTRY, cur, words ?? new Array<bigint>(8).fill(0n), { store: (i, v) => smmu.memory.write64(addr + BigInt(i * 8), v), sync: () => smmu.cmdq.issue(sync) })
}

const ALL = (1n << 64n) - 1n
const CD_V = 1n << 31n

/** arm_smmu_get_cd_used: an invalid CD uses only V; a valid one every bit (the host's CDs never set EPD0). */
export const CD_ENTRY: EntryKind = {
  used: (e) => e.map((_, i) => (e[0] & CD_V ? ALL : i === 0 ? CD_V : 0n)),
}

/** Where CD[ssid] is, without making a leaf: undefined when there is none to clear. */
function clearSlot(t: CdTable, ssid: number): bigint | undefined {
  if (ssid >= 2 ** t.cdMax) return undefined
  if (t.fmt === 0) return t.base + BigInt(ssid * CD_BYTES)
  const leaf = t.leaves.get(ssid >> CTXDESC_SPLIT)
  return leaf === undefined ? undefined : leaf + BigInt((ssid & (L2_ENTRIES - 1)) * CD_BYTES)
}

/**
 * arm_smmu_make_cdtable_ste: stage 1 through the master's CD table, with
 * `s1dss` for traffic without an SSID, and S1STALLD when the SMMU has
 * ARM_SMMU_FEAT_STALLS without STALL_FORCE (IDR0.STALL_MODEL = 0) and the
 * master does not stall (`stall`: a CD of it has S = 1).
 */
export function cdTableSte(smmu: Smmuv3, dev: PciDevice, s1dss: number, ats: boolean, stall: boolean): bigint[] {
  const t = cdTableOf(smmu, dev)
  // with IDR1.ATTR_TYPES_OVR, traffic S1DSS bypasses keeps its incoming shareability
  const shcfgIncoming = s1dss === S1DSS.BYPASS && smmu.registers.flag('IDR1.ATTR_TYPES_OVR')
  const s1stalld = smmu.registers.field('IDR0.STALL_MODEL') === 0n && !stall
  return steWords({ config: 's1', ctxPtr: t.base, cdMax: t.cdMax, cdFmt: t.fmt, s1dss, s1stalld, eats: ats ? 1 : 0, shcfgIncoming })
}
