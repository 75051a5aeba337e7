import { PhysicalMemory } from '../memory/physical'
import { s1Cd, steWords } from '../hw/smmuv3/build'
import { Command, HOST_SYNC, parseCommand } from '../hw/smmuv3/commands'
import { D, Geometry, PageTable } from '../hw/smmuv3/pgtable'
import { PhysicalSte, Smmuv3 } from '../hw/smmuv3/smmuv3'
import { GUEST_STE_MASK, STE0, STE1, STE_CFG } from '../hw/smmuv3/ste'
import { PciDevice } from '../hw/unit'
import { get, hex, mask, set } from '../hw/bits'
import { HwptAllocFlag, HwptPaging } from './hwpt'
import type { Viommu } from './viommu'
import type { Area, Ioas } from './ioas'
import { MapFlag } from './ioas'
import { window } from './host-memory'
import { S1DSS, cdTableSte, masterSsidBits, writeCd } from './smmu-cd'
import { readSte, writeSte } from './smmu-ste'
import { nextAttachSeq, pasidDomain, pasidUnits, pasidUsers, pasidsInUse } from './pasid-domains'


/**
 * Each master's vIOMMU and vSID as its nested attach found them
 * (arm_smmu_attach_prepare_vmaster): events are forwarded under that vSID
 * until the next attach replaces it, whatever becomes of the vDEVICE. A
 * nested attach without a vDEVICE (abort or bypass guest STE), and every
 * other attach, leaves none.
 */
export const vmasters = new WeakMap<PciDevice, { readonly viommu: Viommu; readonly vsid: bigint }>()

/**
 * What the Linux SMMUv3 driver builds in memory for iommufd's domains: the
 * io-pgtable of a paging HWPT (stage 1 for a plain domain, stage 2 for a
 * nest parent), the CD and STE of each attached stream, and the commands it
 * issues when they change (CFGI on attach, TLBI + ATC_INV on unmap), in the
 * kernel's order. Memory is the machine's host physical address space; a
 * mapping reaches its backing through a window placed when it is first
 * mapped into a domain (the model's pinning).
 */

const tables = new WeakMap<HwptPaging, PageTable>()
const IAS = 48

/** The SMMUs translating through `hwpt`: its RID attachments' and its PASID attachments'. */
export function smmusOf(hwpt: HwptPaging): Smmuv3[] {
  return [...new Set([...hwpt.units(), ...pasidUnits(hwpt)])].filter((u): u is Smmuv3 => u.kind === 'arm-smmu-v3')
}

/** Domains whose table was adopted rather than built: destroying the domain leaves the table to its owner. */
const adopted = new WeakSet<HwptPaging>()

/** A domain whose table someone else owns (KVM's stage 2): the driver points its STEs at it and never builds one. */
export function adoptTable(hwpt: HwptPaging, table: PageTable): void {
  tables.set(hwpt, table)
  adopted.add(hwpt)
}

/**
 * The domain's page table, built on first use (arm_smmu_domain_finalise, on
 * `smmu`) from every mapping of its IOAS: a nest parent is stage 2, with the
 * S2FWB quirk where the SMMU has IDR3.FWB.
 */
export function domainTable(hwpt: HwptPaging, smmu: Smmuv3): PageTable {
  let t = tables.get(hwpt)
  if (!t) {
    const mem = smmu.memory
    const stage = hwpt.nestParent ? 2 : 1
    const geometry = stage === 2 ? Geometry.stage2(12, IAS) : new Geometry(12, IAS)
    const s2fwb = stage === 2 && smmu.registers.flag('IDR3.FWB')
    t = new PageTable(mem, { stage, geometry, dirtyBitModifier: (hwpt.flags & HwptAllocFlag.DIRTY_TRACKING) !== 0, s2fwb })
    tables.set(hwpt, t)
    for (const a of hwpt.ioas.areas) mapInto(t, mem, a)
  }
  return t
}

function mapInto(t: PageTable, mem: PhysicalMemory, a: Area): void {
  t.map(a.iova, window(mem, a), a.length, { read: (a.flags & MapFlag.READABLE) !== 0, write: (a.flags & MapFlag.WRITEABLE) !== 0 })
}

/** IOAS_MAP/COPY inserted an area: every SMMUv3 domain table of the IOAS maps it. */
export function areaMapped(ioas: Ioas, area: Area): void {
  for (const h of ioas.hwpts) {
    const t = tables.get(h)
    if (t) mapInto(t, t.mem as PhysicalMemory, area)
  }
}

/**
 * IOAS_UNMAP removes areas: each domain table drops them and the driver
 * invalidates (arm_smmu_tlb_inv_range_domain); host.ts then lets the
 * windows go.
 */
export function areasUnmapped(ioas: Ioas, areas: readonly Area[]): void {
  for (const h of ioas.hwpts) {
    const t = tables.get(h)
    if (!t) continue
    const gone = areas.map((a) => t.unmap(a.iova, a.length))
    for (const smmu of smmusOf(h)) {
      areas.forEach((a, i) => {
        // a freed table first (io_pgtable_tlb_flush_walk: leaf = 0 over its span), then the leaves
        for (const w of gone[i].walks) smmu.cmdq.issue(unmapCommands(h, smmu, w.iova, w.size, new Set()))
        if (gone[i].levels.size) smmu.cmdq.issue(unmapCommands(h, smmu, a.iova, a.length, gone[i].levels))
      })
    }
  }
}

/** The HWPT is destroyed (nothing is attached to it any more): its table pages go back to the host's memory. */
export function hwptDestroyed(h: HwptPaging): void {
  const t = tables.get(h)
  if (!t) return
  // a table someone else owns (KVM's) outlives the domain that walked it
  if (!adopted.has(h)) t.destroy()
  tables.delete(h)
}

/**
 * A stage-1 domain lets its ASID go on `smmu`: the driver flushes everything
 * tagged with it first (io-pgtable's flush-all, arm_smmu_tlb_inv_context),
 * so a later domain given the same ASID finds none of this one's
 * translations cached.
 */
export function tagFreed(smmu: Smmuv3, id: number): void {
  smmu.cmdq.issue([parseCommand(`TLBI_NH_ASID vmid=0 asid=${id}`), HOST_SYNC])
}

/**
 * A VMID goes (a nest parent's last stream left, or a vIOMMU is destroyed):
 * flushed first, as arm_smmu_tlb_inv_vmid does on both paths, so the next
 * owner of the VMID finds nothing of this one's cached.
 */
export function vmidFreed(smmu: Smmuv3, vmid: number): void {
  smmu.cmdq.issue([parseCommand(`TLBI_S12_VMALL vmid=${vmid}`), HOST_SYNC])
}

/** VMIDs whose TLB entries come from a nest parent: its one VMID on this unit, which its vIOMMUs share. */
export function parentVmids(h: HwptPaging, smmu: Smmuv3): number[] {
  const own = h.tags.get(smmu)
  return own ? [own.id] : []
}

/**
 * The RID's entry on its domain's device list (arm_smmu_master_domain): a
 * paging domain attached directly, or the nest parent under a nested one
 * (nested_ats_flush: the guest's STE enabled ATS). `seq` orders the list
 * as list_add does, the latest attach first.
 */
interface RidEntry {
  readonly domain: HwptPaging
  readonly nestedFlush: boolean
  readonly seq: number
}
const ridEntries = new WeakMap<Smmuv3, Map<number, RidEntry>>()

function ridEntriesOf(smmu: Smmuv3): Map<number, RidEntry> {
  let m = ridEntries.get(smmu)
  if (!m) ridEntries.set(smmu, (m = new Map()))
  return m
}

/**
 * arm_smmu_atc_inv_domain: the ATC_INVs for the domain's device list, the
 * latest attach first, each stream whose STE has ATS enabled. A RID attached
 * directly gets the range (SSV clear), a PASID the domain serves the range
 * with SSV and its SSID, and a RID under a nested domain on this parent whose
 * guest enabled ATS its whole ATC (`size=52`, nested_ats_flush).
 */
export function atcInvDomain(h: HwptPaging, smmu: Smmuv3, range = 'size=52'): string[] {
  const rids = [...ridEntriesOf(smmu)].filter(([, e]) => e.domain === h).map(([sid, e]) => ({ sid, seq: e.seq, what: e.nestedFlush ? 'size=52' : range }))
  const ssids = pasidUsers(h, smmu).map(([d, ssid, seq]) => ({ sid: d.streamId, seq, what: `ssv ssid=${hex(ssid)} ${range}` }))
  return [...rids, ...ssids]
    .filter((e) => smmu.streams.get(e.sid)?.ats)
    .sort((a, b) => b.seq - a.seq)
    .map((e) => `ATC_INV sid=${e.sid} ${e.what}`)
}

/**
 * The range as Linux encodes it (__arm_smmu_tlb_inv_range): with RIL, NUM/SCALE
 * chunks of 4K pages, a leaf invalidation with the TTL of the leaves removed
 * (all at one level) or else a non-leaf one (TTL 0, with the page count
 * bumped off the reserved NUM=0/SCALE=0 form); without RIL, one command per
 * page, or the whole context (`whole`) past 512 pages.
 */
function tlbiRange(smmu: Smmuv3, base: string, iova: bigint, size: bigint, whole: string, levels: Set<number>): string[] {
  let pages = size >> 12n
  if (!smmu.registers.flag('IDR3.RIL')) {
    if (pages > 512n) return [whole]
    return Array.from({ length: Number(pages) }, (_, i) => `${base} addr=${hex(iova + BigInt(i) * 0x1000n)} leaf`)
  }
  const leaf = levels.size === 1
  const kind = leaf ? `leaf ttl=${[...levels][0]}` : 'ttl=0'
  if (!leaf && (pages & 31n) === 1n) pages++
  const out: string[] = []
  let addr = iova
  while (pages > 0n) {
    let scale = 0n
    while (!((pages >> scale) & 1n)) scale++
    const num = (pages >> scale) & 31n
    if (num === 0n) {
      scale += 5n
      continue
    }
    out.push(`${base} addr=${hex(addr)} ${kind} tg=1 num=${num - 1n} scale=${scale}`)
    addr += num << (scale + 12n)
    pages -= num << scale
  }
  return out
}

export function unmapCommands(h: HwptPaging, smmu: Smmuv3, iova: bigint, size: bigint, levels: Set<number>): Command[] {
  const tag = h.tags.get(smmu)
  const cmds: string[] = []
  if (!h.nestParent) {
    if (tag) cmds.push(...tlbiRange(smmu, `TLBI_NH_VA vmid=0 asid=${tag.id}`, iova, size, `TLBI_NH_ASID vmid=0 asid=${tag.id}`, levels))
  } else {
    for (const vmid of parentVmids(h, smmu)) {
      cmds.push(...tlbiRange(smmu, `TLBI_S2_IPA vmid=${vmid}`, iova, size, `TLBI_S12_VMALL vmid=${vmid}`, levels))
      // cached stage 1+2 entries are not reached by S2_IPA: the kernel adds NH_ALL
      cmds.push(`TLBI_NH_ALL vmid=${vmid}`)
    }
  }
  const out: Command[] = [...cmds.map(parseCommand), HOST_SYNC]
  const atc = atcInvDomain(h, smmu, atcRange(iova, size))
  if (atc.length) out.push(...atc.map(parseCommand), HOST_SYNC)
  return out
}

/**
 * The smallest aligned power-of-two span of 4K pages covering the range, as
 * arm_smmu_atc_inv_to_cmd encodes it: Size = log2 of the span in pages, and
 * the address rounded down to the span (0x5000 + 12K is 0x4000, size 2).
 */
function atcRange(iova: bigint, size: bigint): string {
  const first = iova >> 12n
  const last = (iova + size - 1n) >> 12n
  let x = first ^ last
  let n = 0n
  while (x) {
    n++
    x >>= 1n
  }
  return `addr=${hex((first >> n) << (n + 12n))} size=${n}`
}

/**
 * io-pgtable-arm's read_and_clear_dirty on a stage-1 domain: a leaf is dirty
 * when (pte & (AP_RDONLY | DBM)) == DBM; its whole span inside the range is
 * reported (`mark` gets byte offsets from `iova`); unless `keep`, it is made
 * writable-clean again (AP[2] set), and the driver then invalidates the range
 * so later writes dirty it again. Domains without a table here (VT-d, or no
 * device ever attached) read clean.
 */
export function readAndClearDirty(h: HwptPaging, iova: bigint, length: bigint, keep: boolean, mark: (from: bigint, to: bigint) => void): void {
  const t = tables.get(h)
  if (!t || t.opts.stage !== 1) return
  const end = iova + length
  let cleaned = false
  for (const a of h.ioas.contiguousFrom(iova, end - 1n)) {
    const lo = a.iova > iova ? a.iova : iova
    const hi = a.iova + a.length < end ? a.iova + a.length : end
    for (let va = lo; va < hi; ) {
      const leaf = t.find(va)
      const size = leaf ? t.opts.geometry.size(leaf.level) : 0x1000n
      const base = va & ~(size - 1n)
      if (leaf && (leaf.desc & (D.AP2 | D.DBM)) === D.DBM) {
        mark((base > iova ? base : iova) - iova, (base + size < end ? base + size : end) - iova)
        if (!keep) {
          t.writeDesc(leaf.slot, leaf.desc | D.AP2)
          cleaned = true
        }
      }
      va = base + size
    }
  }
  if (cleaned) for (const smmu of smmusOf(h)) smmu.cmdq.issue(unmapCommands(h, smmu, iova, length, new Set()))
}

/** Streams whose STE points at their CD table (the driver's cd_table.in_ste). */
const cdInSte = new WeakSet<PciDevice>()

/** The CD Linux writes for a stage-1 domain (arm_smmu_make_s1_cd), for any SSID. */
function domainCd(smmu: Smmuv3, domain: HwptPaging, asid: number, stall: boolean): bigint[] {
  const hd = (domain.flags & HwptAllocFlag.DIRTY_TRACKING) !== 0
  return s1Cd({ asid, ttb0: domainTable(domain, smmu).root, ha: hd, hd, stall })
}

/**
 * How the RID's domain reached the driver: arm_smmu_attach_dev (a paging
 * domain, stage 1 or 2), arm_smmu_attach_dev_nested, or
 * arm_smmu_attach_dev_ste (the blocked and identity domains). Each clears
 * CD 0 at its own point, or not at all.
 */
export type RidAttach = 'paging' | 'nested' | 'ste'

/**
 * The master stalls (the model's master->stall_enabled): a CD of its table
 * has S = 1, the RID's stage-1 domain or a PASID's domain having a fault
 * queue. S1STALLD must then be clear, or the SMMU rejects those CDs.
 */
function masterStalls(dev: PciDevice, ste: PhysicalSte): boolean {
  return (ste.config === 's1-translate' && (ste.stall ?? false)) || pasidsInUse(dev).some((p) => pasidDomain(dev, p)?.fault !== undefined)
}

/**
 * The STE words the driver makes for what `ste` says: with PASIDs in use, a
 * blocked (abort) or identity (bypass) RID keeps the CD table with S1DSS =
 * terminate or bypass (arm_smmu_attach_dev_ste); a stage-1 domain points at
 * the CD table with S1DSS = SSID0; the rest as arm_smmu_make_*_ste.
 */
function targetSte(smmu: Smmuv3, dev: PciDevice, ste: PhysicalSte, domain: HwptPaging | undefined): bigint[] {
  // ARM_SMMU_FEAT_ATTR_TYPES_OVR: bypassed and stage-2 traffic keeps its incoming shareability
  const ovr = smmu.registers.flag('IDR1.ATTR_TYPES_OVR')
  if (ste.config === 'abort' || ste.config === 'bypass') {
    const identity = ste.config === 'bypass'
    if (pasidsInUse(dev).length) return cdTableSte(smmu, dev, identity ? S1DSS.BYPASS : S1DSS.TERMINATE, ste.ats, masterStalls(dev, ste))
    return identity ? steWords({ config: 'bypass', shcfgIncoming: ovr }) : steWords({ config: 'abort' })
  }
  if (!domain) return steWords({ config: 'abort' })
  if (ste.config === 's1-translate') return cdTableSte(smmu, dev, S1DSS.SSID0, ste.ats, masterStalls(dev, ste))
  const t = domainTable(domain, smmu)
  const s2 = { vmid: ste.vmid ?? 0, ttb: t.root, geometry: t.opts.geometry, fwb: t.opts.s2fwb }
  const eats = ste.ats ? 1 : 0
  const words = steWords({ config: 's2', s2, eats, shcfgIncoming: ovr })
  if (ste.config !== 'nested' || !ste.guest) return words
  // arm_smmu_make_nested_cd_table_ste: the stage-2 STE with Config nested and the guest's stage-1 fields
  // (S1ContextPtr is an IPA; its EATS was taken out at validation), and MEV (merged events, DoS mitigation)
  words[0] = set(set(0n, STE0.V, 1n), STE0.CFG, STE_CFG.NESTED) | (ste.guest[0] & GUEST_STE_MASK[0] & ~mask(STE0.CFG))
  words[1] |= (ste.guest[1] & GUEST_STE_MASK[1]) | mask(STE1.MEV)
  return words
}

/**
 * A CD-table STE whose S1STALLD no longer fits the master (a PASID's domain
 * with a fault queue came or went) is written again; any other STE, or one
 * already right, is left alone.
 */
function refreshSte(smmu: Smmuv3, dev: PciDevice): void {
  const rid = smmu.streams.get(dev.streamId)
  if (!rid || !cdInSte.has(dev)) return
  const domain = ridEntriesOf(smmu).get(dev.streamId)?.domain
  const words = targetSte(smmu, dev, rid, domain)
  const cur = readSte(smmu, dev.streamId)
  if (words.some((w, i) => w !== cur[i])) installSte(smmu, dev, rid, domain)
}

/** arm_smmu_install_ste_for_dev: the stream's STE through the entry writer; cd_table.in_ste follows its Config. */
export function installSte(smmu: Smmuv3, dev: PciDevice, ste: PhysicalSte, domain: HwptPaging | undefined): void {
  const words = targetSte(smmu, dev, ste, domain)
  writeSte(smmu, dev.streamId, words)
  if (get(words[0], STE0.CFG) === STE_CFG.S1_TRANS) cdInSte.add(dev)
  else cdInSte.delete(dev)
}

/**
 * arm_smmu_attach_commit for the RID: the whole ATC is flushed when ATS
 * comes on (arm_smmu_enable_ats), stays on (the translation changed) or
 * goes off.
 */
function commitRidAts(smmu: Smmuv3, dev: PciDevice, was: boolean, now: boolean): void {
  if (was || now) smmu.cmdq.issue([parseCommand(`ATC_INV sid=${dev.streamId} size=52`), HOST_SYNC])
}

/**
 * The RID's new STE as the driver installs it for `how`, each with its
 * kernel order: arm_smmu_attach_dev writes CD 0 before a stage-1 STE, and
 * clears it after a stage-2 STE, before the commit; arm_smmu_attach_dev_ste
 * (blocked, identity) clears CD 0 after the commit; a nested attach leaves
 * it. A clear of a CD that is not valid writes nothing.
 */
export function setRidSte(smmu: Smmuv3, dev: PciDevice, ste: PhysicalSte, domain: HwptPaging | undefined, how: RidAttach): void {
  const was = smmu.streams.get(dev.streamId)?.ats ?? false
  smmu.streams.set(dev.streamId, ste)
  // arm_smmu_attach_prepare: a paging domain, or a nested one's parent, lists the master
  if (domain && how !== 'ste') ridEntriesOf(smmu).set(dev.streamId, { domain, nestedFlush: how === 'nested' && ste.config === 'nested' && ste.ats, seq: nextAttachSeq() })
  else ridEntriesOf(smmu).delete(dev.streamId)
  const stage1 = ste.config === 's1-translate' && domain !== undefined
  if (stage1) writeCd(smmu, dev, 0, domainCd(smmu, domain, ste.asid ?? 0, ste.stall ?? false))
  installSte(smmu, dev, ste, domain)
  if (how === 'paging' && !stage1) writeCd(smmu, dev, 0, undefined)
  commitRidAts(smmu, dev, was, ste.ats)
  if (how === 'ste') writeCd(smmu, dev, 0, undefined)
}

/**
 * arm_smmu_ats_supported: the SMMU has ATS (IDR0.ATS) and the function has
 * the PCI ATS capability (the topology's per-device `ats`).
 */
export function atsSupported(smmu: Smmuv3, dev: PciDevice): boolean {
  return smmu.registers.flag('IDR0.ATS') && dev.ats
}

/** ATS for a paging domain's STE (stage 1 or 2) when the device and SMMU have it, except for a stalling master. */
export function pagingAts(smmu: Smmuv3, dev: PciDevice, stall: boolean): boolean {
  return atsSupported(smmu, dev) && !stall
}

/**
 * Sets SSID `ssid` (not 0) of the stream to a stage-1 `domain` whose ASID
 * is `asid`, or clears it (undefined), as arm_smmu_set_pasid and
 * arm_smmu_blocking_set_dev_pasid do: the CD (its leaf made first if the
 * table is 2-level) and CFGI_CD for that SSID; on the way in a blocked or
 * identity RID's STE becomes a CD-table STE (arm_smmu_update_ste: S1DSS =
 * terminate or bypass) with ATS on when the device has it; on the way out,
 * with ATS, ATC_INV for that SSID, and when the last SSID leaves a blocked
 * or identity RID, the RID's domain is attached again (an abort or bypass
 * STE, ATS off). The caller records the PASID's domain first.
 */
export function setSsid(smmu: Smmuv3, dev: PciDevice, ssid: number, domain: HwptPaging | undefined, asid: number): void {
  const sid = dev.streamId
  const rid = smmu.streams.get(sid)
  const ridConfig = rid?.config === 'bypass' ? 'bypass' : 'abort'
  if (domain) {
    // a stalling domain makes the master stall: S1STALLD goes first (one step), before a CD with S = 1
    refreshSte(smmu, dev)
    writeCd(smmu, dev, ssid, domainCd(smmu, domain, asid, domain.fault !== undefined))
    const ats = atsSupported(smmu, dev)
    if (!cdInSte.has(dev)) {
      // arm_smmu_update_ste, then arm_smmu_attach_commit for this SSID
      const was = rid?.ats ?? false
      smmu.streams.set(sid, { config: ridConfig, ats })
      installSte(smmu, dev, { config: ridConfig, ats }, undefined)
      if (ats && was) smmu.cmdq.issue(atcInvSsid(sid, ssid))
      else commitRidAts(smmu, dev, was, ats)
      return
    }
    // ATS was on already: the SSID's translation changed, its ATC entries go (arm_smmu_attach_commit)
    if (smmu.streams.get(sid)?.ats) smmu.cmdq.issue(atcInvSsid(sid, ssid))
    return
  }
  writeCd(smmu, dev, ssid, undefined)
  if (rid?.ats) smmu.cmdq.issue(atcInvSsid(sid, ssid))
  // the last stalling domain left: S1STALLD back (one step)
  if (pasidsInUse(dev).length || rid?.config === 's1-translate') refreshSte(smmu, dev)
  // the last SSID out of a blocked or identity RID: that domain's attach_dev again, ATS off
  if (!pasidsInUse(dev).length && rid?.config !== 's1-translate') setRidSte(smmu, dev, { config: ridConfig, ats: false }, undefined, 'ste')
}

/** arm_smmu_atc_inv_master for one SSID: all of its ATC entries (SSV), then a sync. */
function atcInvSsid(sid: number, ssid: number): Command[] {
  return [parseCommand(`ATC_INV sid=${sid} ssv ssid=${hex(ssid)} size=52`), HOST_SYNC]
}

/** The SSID has a place in the master's CD table (else arm_smmu_alloc_cd_ptr fails: ENOMEM). */
export function ssidFits(smmu: Smmuv3, dev: PciDevice, ssid: number): boolean {
  return ssid < 2 ** masterSsidBits(smmu, dev)
}
