/**
 * The entry writer against the Linux driver's own KUnit table
 * (arm-smmu-v3-test.c): for each STE and CD transition, the number of
 * syncs, whether V was cleared on the way (a breaking update), that every
 * sync of a hitless update leaves an entry the SMMU reads as the old or
 * the new one, and that the entry ends as the target. The entries are made
 * as the kernel's test makes them: an SMMU with STALLS and ATTR_TYPES_OVR,
 * a 2-level CD table at 0xf0f0f0f0f0f0 with S1CDMax 0x1f.
 */
import { strict as assert } from 'node:assert'
import { set } from '../../src/hw/bits'
import { s1Cd, steWords } from '../../src/hw/smmuv3/build'
import { Geometry } from '../../src/hw/smmuv3/pgtable'
import { STE2, STE3 } from '../../src/hw/smmuv3/ste'
import { EntryKind, writeEntry } from '../../src/iommufd/entry-writer'
import { CD_ENTRY, S1DSS } from '../../src/iommufd/smmu-cd'
import { STE_ENTRY } from '../../src/iommufd/smmu-ste'

const FAKE_CDTAB = 0xf0f0f0f0f0f0n
const ATS = 1
const STALL = 2

/** arm_smmu_make_cdtable_ste: S1STALLD unless the master stalls (the SMMU has STALLS), SHCFG for S1DSS bypass (ATTR_TYPES_OVR). */
function cdtableSte(s1dss: number, ctx: bigint, feat: number): bigint[] {
  return steWords({ config: 's1', ctxPtr: ctx, cdMax: 0x1f, cdFmt: 2, s1dss, s1stalld: !(feat & STALL), eats: feat & ATS ? 1 : 0, shcfgIncoming: s1dss === S1DSS.BYPASS })
}

/** arm_smmu_make_s2_domain_ste with the kernel test's VTTBR and VTCR fields, SHCFG (ATTR_TYPES_OVR), S2S for a stalling master. */
function s2Ste(feat: number): bigint[] {
  const w = steWords({ config: 's2', s2: { vmid: 0, ttb: 0n, geometry: Geometry.stage2(12, 48) }, eats: feat & ATS ? 1 : 0, shcfgIncoming: true })
  let w2 = w[2] & set(0n, STE2.S2VMID, 0xffffn)
  for (const [f, v] of [
    [STE2.S2T0SZ, 4n],
    [STE2.S2SL0, 3n],
    [STE2.S2IR0, 2n],
    [STE2.S2OR0, 1n],
    [STE2.S2SH0, 3n],
    [STE2.S2TG, 2n],
    [STE2.S2PS, 1n],
    [STE2.S2AA64, 1n],
    [STE2.S2PTW, 1n],
    [STE2.S2R, 1n],
  ] as const)
    w2 = set(w2, f, v)
  if (feat & STALL) w2 = set(w2, STE2.S2S, 1n)
  w[2] = w2
  w[3] = set(0n, STE3.S2TTB, 0xdaedbeefdeadbeefn >> 4n)
  return w
}

const ABORT = steWords({ config: 'abort' })
const BYPASS = steWords({ config: 'bypass', shcfgIncoming: true })

/** Writes `cur` into `target`, checking what arm_smmu_test_writer_record_syncs checks at each sync. */
function transition(kind: EntryKind, cur: readonly bigint[], target: readonly bigint[]): { syncs: number; breaking: boolean } {
  const entry = [...cur]
  let syncs = 0
  let breaking = false
  const matches = (ref: readonly bigint[]): boolean => {
    const used = kind.used(entry)
    return entry.every((w, i) => (w & used[i]) === (ref[i] & used[i]))
  }
  writeEntry(kind, entry, target, {
    store: () => {},
    sync: () => {
      syncs++
      if (!entry[0]) breaking = true
      else assert.ok(matches(cur) || matches(target), `after sync ${syncs} the entry is neither the old nor the new one`)
    },
  })
  assert.deepEqual(entry, [...target])
  return { syncs, breaking }
}

describe('SMMUv3 entry writer: the kernel\'s KUnit transitions', () => {
  const ste = (cur: bigint[], target: bigint[]): { syncs: number; breaking: boolean } => transition(STE_ENTRY, cur, target)
  const cases: [string, () => bigint[], () => bigint[], number, boolean?][] = [
    ['bypass -> abort', () => BYPASS, () => ABORT, 2],
    ['abort -> bypass', () => ABORT, () => BYPASS, 2],
    ['cdtable -> abort', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), () => ABORT, 2],
    ['abort -> cdtable', () => ABORT, () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 2],
    ['cdtable -> bypass', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), () => BYPASS, 3],
    ['bypass -> cdtable', () => BYPASS, () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 3],
    ['cdtable S1DSS SSID0 -> bypass', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), () => cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS), 1],
    ['cdtable S1DSS bypass -> SSID0', () => cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS), () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 1],
    ['S1DSS bypass -> STE bypass', () => cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS), () => BYPASS, 2],
    ['STE bypass -> S1DSS bypass', () => BYPASS, () => cdtableSte(S1DSS.BYPASS, FAKE_CDTAB, ATS), 2],
    ['s2 -> abort', () => s2Ste(ATS), () => ABORT, 2],
    ['abort -> s2', () => ABORT, () => s2Ste(ATS), 2],
    ['s2 -> bypass', () => s2Ste(ATS), () => BYPASS, 2],
    ['bypass -> s2', () => BYPASS, () => s2Ste(ATS), 2],
    ['s1 -> s2', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), () => s2Ste(ATS), 3],
    ['s2 -> s1', () => s2Ste(ATS), () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 3],
    ['s1 -> s2, stalling master', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, STALL), () => s2Ste(STALL), 3],
    ['s2 -> s1, stalling master', () => s2Ste(STALL), () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, STALL), 3],
    // S1STALLD alone (the master starts or stops stalling): a word-1 change the SMMU reads either way
    ['cdtable S1STALLD set -> clear', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, STALL), 1],
    ['cdtable S1STALLD clear -> set', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, STALL), () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), 1],
    // the CD table pointer and S1DSS together: V must be cleared first
    ['non-hitless', () => cdtableSte(S1DSS.SSID0, FAKE_CDTAB, ATS), () => cdtableSte(S1DSS.BYPASS, 0x4b4b4b4b4bn, ATS), 3, true],
  ]
  for (const [name, cur, target, syncs, breaking] of cases) {
    it(`STE ${name}: ${syncs} sync${syncs === 1 ? '' : 's'}, ${breaking ? 'V cleared first' : 'hitless'}`, () => {
      assert.deepEqual(ste(cur(), target()), { syncs, breaking: breaking ?? false })
    })
  }

  const cd = (asid: number): bigint[] => s1Cd({ asid, ttb0: 0xdaedbeefdeadbeefn & 0xf_ffff_ffff_fff0n, ias: 60 })
  it('CD made and cleared: 2 syncs each, V clear on the way (the entry is 0 in word 0)', () => {
    const zero = new Array<bigint>(8).fill(0n)
    assert.deepEqual(transition(CD_ENTRY, zero, cd(1997)), { syncs: 2, breaking: true })
    assert.deepEqual(transition(CD_ENTRY, cd(1997), zero), { syncs: 2, breaking: true })
  })

  it('CD ASID changed: 1 sync, hitless', () => {
    assert.deepEqual(transition(CD_ENTRY, cd(778), cd(1997)), { syncs: 1, breaking: false })
    assert.deepEqual(transition(CD_ENTRY, cd(1997), cd(778)), { syncs: 1, breaking: false })
  })
})
