import { PhysicalMemory } from '../memory/physical'
import { Descriptor, Drain, P_IOTLB_GRAN, devIotlbPasid, devIotlbSpan, iotlbInv, pasidCacheInv, pasidIotlb, psiMask } from '../hw/vtd/qi'
import { SS, VtdPageTable, levelShift } from '../hw/vtd/pgtable'
import { PGTT } from '../hw/vtd/walk'
import { Vtd } from '../hw/vtd/vtd'
import { PciDevice } from '../hw/unit'
import { Hwpt, HwptAllocFlag, HwptNested, HwptPaging } from './hwpt'
import { window } from './host-memory'
import type { Area, Ioas } from './ioas'
import { MapFlag } from './ioas'
import { pasidUnits, pasidUsers } from './pasid-domains'

/**
 * What the Linux VT-d driver builds in memory in scalable mode: the page
 * table of a paging domain (first stage for a plain domain when the unit
 * has ECAP.FLTS and no dirty tracking is asked for; second stage for a nest
 * parent or a dirty-tracking domain), each attached requester's context
 * entry, PASID directory and RID_PASID (PASID 0) table entry, and the
 * invalidation descriptors it queues when they change, in the kernel's
 * order (one batch, then a wait descriptor).
 */

const tables = new WeakMap<HwptPaging, VtdPageTable>()
/** Each requester's PASID directory; PASID tables (64 entries each) are made behind it as PASIDs are set. */
const pasidDirs = new WeakMap<PciDevice, bigint>()

/** The PASID Linux uses for requests without PASID (IOMMU_NO_PASID). */
const RID_PASID = 0

/** The VT-d units translating through `h`: its RID attachments' and its PASID attachments'. */
export function vtdsOf(h: HwptPaging): Vtd[] {
  return [...new Set([...h.units(), ...pasidUnits(h)])].filter((u): u is Vtd => u instanceof Vtd)
}

/** First stage for a plain domain where the unit has it; second stage for a nest parent or dirty tracking. */
export function usesFirstStage(h: HwptPaging, unit: Vtd): boolean {
  return !h.nestParent && !(h.flags & HwptAllocFlag.DIRTY_TRACKING) && unit.registers.flag('ECAP.FLTS')
}

/** First-stage levels: 5 only when the unit has FL5LP and a 57-bit MGAW. */
function fsLevels(unit: Vtd): number {
  return unit.iovaBits >= 57 && unit.registers.flag('CAP.FL5LP') ? 5 : 4
}

/** Second-stage AW (levels - 2): the largest SAGAW width that fits MGAW. */
export function ssAw(unit: Vtd): number {
  const sagaw = Number(unit.registers.field('CAP.SAGAW'))
  for (const aw of [3, 2, 1]) if (sagaw & (1 << aw) && 30 + 9 * aw <= Math.max(unit.iovaBits, 39)) return aw
  return 2
}

/** Domains whose table was adopted rather than built: destroying the domain leaves the table to its owner. */
const adopted = new WeakSet<HwptPaging>()

/** A domain whose second-stage table someone else owns (KVM's EPT): never built from an IOAS. */
export function adoptVtdTable(h: HwptPaging, table: VtdPageTable): void {
  tables.set(h, table)
  adopted.add(h)
}

/**
 * The largest leaf level the driver maps with (its iommu_superpage + 1):
 * 2M always and 1G with CAP.FL1GP at the first stage; at the second stage
 * the highest size CAP.SLLPS offers.
 */
function largestLeaf(unit: Vtd, first: boolean): number {
  if (first) return unit.registers.flag('CAP.FL1GP') ? 3 : 2
  const sllps = Number(unit.registers.field('CAP.SLLPS'))
  return sllps & 2 ? 3 : sllps & 1 ? 2 : 1
}

/** The domain's table, built on first use from every mapping of its IOAS. */
export function vtdDomainTable(h: HwptPaging, unit: Vtd): VtdPageTable {
  let t = tables.get(h)
  if (!t) {
    const first = usesFirstStage(h, unit)
    t = new VtdPageTable(unit.memory, { format: first ? 'first' : 'second', levels: first ? fsLevels(unit) : ssAw(unit) + 2, largest: largestLeaf(unit, first) })
    tables.set(h, t)
    for (const a of h.ioas.areas) mapInto(t, a)
  }
  return t
}

function mapInto(t: VtdPageTable, a: Area): void {
  t.map(a.iova, window(t.mem as PhysicalMemory, a), a.length, { read: (a.flags & MapFlag.READABLE) !== 0, write: (a.flags & MapFlag.WRITEABLE) !== 0 })
}

export function areaMapped(ioas: Ioas, area: Area): void {
  for (const h of ioas.hwpts) {
    const t = tables.get(h)
    if (t) mapInto(t, area)
  }
}

/** The driver's info->ats_supported: the unit's device TLBs (ECAP.DT) and the function's PCI ATS capability. */
export function devAts(unit: Vtd, dev: PciDevice): boolean {
  return unit.registers.flag('ECAP.DT') && dev.ats
}

/** The draining Linux asks of each IOTLB invalidation on `unit`: what its CAP.DRD and CAP.DWD offer. */
function iotlbDrain(unit: Vtd): Drain {
  return { read: unit.registers.flag('CAP.DRD'), write: unit.registers.flag('CAP.DWD') }
}

/** Requesters with ATS (the context's DTE) that translate through `h` on `unit`, directly or nested. */
function atsRequesters(h: HwptPaging, unit: Vtd): PciDevice[] {
  const devs = [...h.devices, ...[...h.children].flatMap((c) => [...c.devices])]
  return devs.map((d) => d.pci).filter((p) => p.unit === unit && devAts(unit, p))
}

/** Requesters attached to `h` by their RID on `unit`. */
function ridRequesters(h: HwptPaging, unit: Vtd): PciDevice[] {
  return [...h.devices].map((d) => d.pci).filter((p) => p.unit === unit)
}

/**
 * cache_tag_flush_range for one range of a domain: P_IOTLB by (DID, PASID)
 * for a first-stage domain; IOTLB PSI (DSI without CAP.PSI or past MAMV) by
 * DID for a second-stage one, and for a nest parent also with each nested
 * domain's DID plus a full device-TLB flush; then the device TLBs. `ih`
 * (leaves only) when no table page was freed, so the paging-structure
 * caches may keep their entries.
 */
export function flushRange(h: HwptPaging, unit: Vtd, iova: bigint, length: bigint, ih: boolean): Descriptor[] {
  const out: Descriptor[] = []
  const { base, am } = psiMask(iova, (length + 0xfffn) >> 12n)
  const psi = unit.registers.flag('CAP.PSI') && am <= Number(unit.registers.field('CAP.MAMV'))
  const own = h.tags.get(unit)
  const tagged = pasidUsers(h, unit)
  if (usesFirstStage(h, unit)) {
    // one IOTLB tag per (DID, PASID) on the unit, RID_PASID's first
    const pasids = new Set([...(ridRequesters(h, unit).length ? [RID_PASID] : []), ...tagged.map(([, p]) => p)])
    if (own) for (const p of pasids) out.push(pasidIotlb(own.id, p, P_IOTLB_GRAN.PSI_PASID, base, am, ih))
  } else {
    const drain = iotlbDrain(unit)
    const ss = (did: number): Descriptor => (psi ? iotlbInv(drain, 3, did, base, am, ih) : iotlbInv(drain, 2, did))
    if (own) out.push(ss(own.id))
    for (const c of h.children) {
      const tag = c.tags.get(unit)
      if (tag) out.push(ss(tag.id))
    }
  }
  const nestedDevs = new Set([...h.children].flatMap((c) => [...c.devices].map((d) => d.pci)))
  for (const p of atsRequesters(h, unit)) out.push(nestedDevs.has(p) ? devIotlbSpan(p.streamId, 0n) : devIotlbSpan(p.streamId, base, psi ? am : undefined))
  for (const [d, p] of tagged) {
    if (devAts(unit, d)) out.push(devIotlbPasid(d.streamId, p, am ? base | ((1n << BigInt(11 + am)) - 1n) : base, am > 0))
  }
  return out
}

/** IOAS_UNMAP: each domain table drops the areas (freeing tables they cover whole), then the driver flushes each range. */
export function areasUnmapped(ioas: Ioas, areas: readonly Area[]): void {
  for (const h of ioas.hwpts) {
    const t = tables.get(h)
    if (!t) continue
    const freed = areas.map((a) => t.unmap(a.iova, a.length).tablesFreed)
    for (const unit of vtdsOf(h)) {
      const descs = areas.flatMap((a, i) => flushRange(h, unit, a.iova, a.length, freed[i] === 0))
      if (descs.length) unit.qi.submit(descs)
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

function bytes(words: readonly bigint[]): Buffer {
  const b = Buffer.alloc(words.length * 8)
  words.forEach((w, i) => b.writeBigUInt64LE(w, i * 8))
  return b
}

/** The RID_PASID entry Linux writes for `hwpt` (pasid_pte_config_* in intel/pasid.c). */
function pasidEntryWords(unit: Vtd, hwpt: Hwpt, did: number): bigint[] {
  const w = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]
  const pwsnp = 1n << 23n
  const paging = hwpt.paging
  const ssade = paging.dirtyTrackingEnabled ? 1n << 9n : 0n
  // KVM's table is the CPU's too: the RFC forces snooping on it (PGSNP), nested domains included
  const pgsnp = adopted.has(paging) ? 1n << 24n : 0n
  if (hwpt instanceof HwptNested && hwpt.data.kind === 'intel-vtd') {
    const parent = vtdDomainTable(paging, unit)
    const s1 = hwpt.data.s1
    w[0] = 1n | (BigInt(ssAw(unit)) << 2n) | (BigInt(PGTT.NESTED) << 6n) | ssade | parent.root
    w[1] = BigInt(did) | pwsnp | pgsnp
    const sre = s1.flags & 1n ? 1n : 0n
    const eafe = s1.flags & 2n ? 1n << 7n : 0n
    const wpe = s1.flags & 4n && sre ? 1n << 4n : 0n
    w[2] = (s1.pgtblAddr & ~0xfffn) | (s1.addrWidth === 57 ? 1n << 2n : 0n) | sre | wpe | eafe
    return w
  }
  const t = vtdDomainTable(paging, unit)
  if (t.opts.format === 'first') {
    w[0] = 1n | (BigInt(PGTT.FIRST) << 6n)
    w[1] = BigInt(did) | pwsnp
    w[2] = t.root | (t.opts.levels === 5 ? 1n << 2n : 0n)
  } else {
    w[0] = 1n | (BigInt(t.opts.levels - 2) << 2n) | (BigInt(PGTT.SECOND) << 6n) | ssade | t.root
    w[1] = BigInt(did) | pgsnp
  }
  return w
}

/**
 * The requester's PASID directory, made on first use as intel_pasid_alloc_table
 * sizes it (at least a page; one 8-byte entry per 64 PASIDs the unit's PSS
 * allows) with its context entry (P, PASIDE, DTE, PDTS, RID_PASID).
 */
function pasidDirectory(unit: Vtd, dev: PciDevice): bigint {
  let dir = pasidDirs.get(dev)
  if (dir !== undefined) return dir
  const pasidBits = unit.registers.flag('ECAP.PASID') ? Number(unit.registers.field('ECAP.PSS')) + 1 : 0
  const entries = Math.max(512, 2 ** Math.max(pasidBits - 6, 0))
  const ctxAddr = unit.contextEntryAddr(dev.streamId)
  dir = unit.memory.alloc(entries * 8)
  pasidDirs.set(dev, dir)
  const dte = devAts(unit, dev) ? 4n : 0n
  const paside = pasidBits ? 8n : 0n
  const pdts = BigInt(Math.log2(entries) - 7) << 9n
  unit.memory.write(ctxAddr, bytes([dir | pdts | paside | dte | 1n, BigInt(RID_PASID), 0n, 0n]))
  return dir
}

/** The address of the PASID's 64-byte entry; its table (64 entries) is allocated behind the directory entry when `make`. */
function pasidEntryAddr(unit: Vtd, dev: PciDevice, pasid: number, make: boolean): bigint | undefined {
  if (!make && !pasidDirs.has(dev)) return undefined
  const de = pasidDirectory(unit, dev) + BigInt(pasid >> 6) * 8n
  const read = unit.memory.read64(de)
  let table = typeof read === 'bigint' ? read : 0n
  if (!(table & 1n)) {
    if (!make) return undefined
    table = unit.memory.alloc(0x1000) | 1n
    unit.memory.write64(de, table)
  }
  return (table & ~0xfffn) + BigInt(pasid & 63) * 64n
}

/**
 * Programs a requester's entry for `pasid` (RID_PASID by default) for `hwpt`
 * (none: tears it down). A fresh entry needs no flush (caching mode off);
 * replacing or clearing a present one flushes with the old DID, as
 * intel_pasid_flush_present and intel_pasid_tear_down_entry do: PASID cache
 * for that PASID, IOTLB (P_IOTLB of (DID, PASID) for first-stage and
 * pass-through entries, DSI otherwise), then the device TLB (with the PASID
 * for any but RID_PASID).
 */
export function installPasidEntry(unit: Vtd, dev: PciDevice, hwpt: Hwpt | undefined, pasid = RID_PASID): void {
  const mem = unit.memory
  const sid = dev.streamId
  const entry = pasidEntryAddr(unit, dev, pasid, hwpt !== undefined)
  if (entry === undefined) return
  const old = mem.read(entry, 64) as Buffer
  const oldW0 = old.readBigUInt64LE(0)
  const present = (oldW0 & 1n) !== 0n
  const words = hwpt ? pasidEntryWords(unit, hwpt, hwpt.tags.get(unit)!.id) : [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]
  mem.write(entry, bytes(words))
  const cm = unit.registers.flag('CAP.CM')
  if (!present && !cm) return
  const did = present ? Number(old.readBigUInt64LE(8) & 0xffffn) : Number(words[1] & 0xffffn)
  const pgtt = Number(((present ? oldW0 : words[0]) >> 6n) & 7n)
  const descs: Descriptor[] = [pasidCacheInv(1, did, pasid)]
  descs.push(pgtt === PGTT.FIRST || pgtt === PGTT.PT ? pasidIotlb(did, pasid, P_IOTLB_GRAN.NONG_PASID, 0n, 0, false) : iotlbInv(iotlbDrain(unit), 2, did))
  if (devAts(unit, dev)) descs.push(pasid === RID_PASID ? devIotlbSpan(sid, 0n) : devIotlbPasid(sid, pasid, (1n << 63n) - 1n - 0xfffn, true))
  unit.qi.submit(descs)
}

/**
 * set_dirty_tracking on a second-stage domain: every RID_PASID entry
 * translating through it (directly or under a nested domain) is rewritten
 * with SSADE as `h.dirtyTrackingEnabled` says, each followed by the PASID
 * cache, IOTLB and device-TLB flush (intel_pasid_setup_dirty_tracking).
 */
export function dirtyTrackingChanged(h: HwptPaging): void {
  if (!tables.has(h)) return
  for (const d of h.devices) if (d.pci.unit instanceof Vtd) installPasidEntry(d.pci.unit, d.pci, h)
  for (const c of h.children) for (const d of c.devices) if (d.pci.unit instanceof Vtd) installPasidEntry(d.pci.unit, d.pci, c)
}

/**
 * The second stage's read_and_clear_dirty: a leaf with D set is reported for
 * its span inside the range (`mark` gets byte offsets from `iova`); unless
 * `keep`, D is cleared, and the range is flushed (IOTLB PSI with the DIDs)
 * so later writes set D again.
 */
export function readAndClearDirty(h: HwptPaging, iova: bigint, length: bigint, keep: boolean, mark: (from: bigint, to: bigint) => void): void {
  const t = tables.get(h)
  if (!t || t.opts.format !== 'second') return
  const end = iova + length
  let cleaned = false
  for (const a of h.ioas.contiguousFrom(iova, end - 1n)) {
    const lo = a.iova > iova ? a.iova : iova
    const hi = a.iova + a.length < end ? a.iova + a.length : end
    for (let va = lo & ~0xfffn; va < hi; ) {
      const leaf = t.find(va)
      // a large leaf is reported for its whole span inside the request
      const size = 1n << levelShift(leaf?.level ?? 1)
      const base = va & ~(size - 1n)
      va = base + size
      if (!leaf || !(leaf.desc & SS.D)) continue
      mark((base > iova ? base : iova) - iova, (va < end ? va : end) - iova)
      if (!keep) {
        t.writeDesc(leaf.slot, leaf.desc & ~SS.D)
        cleaned = true
      }
    }
  }
  if (!cleaned) return
  for (const unit of vtdsOf(h)) unit.qi.submit(flushRange(h, unit, iova < 1n << 63n ? iova : 0n, end - iova > 1n << 52n ? 1n << 52n : end - iova, true))
}
