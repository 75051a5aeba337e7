import { IommuUnit, PciDevice } from '../hw/unit'
import { PhysicalSte, Smmuv3 } from '../hw/smmuv3/smmuv3'

import { checkNestedAttach } from '../hw/vtd/s1'
import { Vtd } from '../hw/vtd/vtd'
import { MOCK_PASID_RESERVED, MOCK_PASID_WIDTH, MockDevFlag, isMockDevice } from '../hw/mock/mock'
import { ErrnoError } from '../util/errno'
import { Hwpt, HwptAllocFlag, HwptNested, HwptPaging, allocFlagNames } from './hwpt'
import { RidAttach, atsSupported, installSte, setRidSte, setSsid, ssidFits, pagingAts, tagFreed, vmasters, vmidFreed } from './smmu-host'
import { masterSsidBits } from './smmu-cd'
import { devAts, installPasidEntry, usesFirstStage } from './vtd-host'
import { pasidDomain, pasidsInUse, setPasidDomain } from './pasid-domains'

/** iommu_hw_info_type. */
export const HwInfoType = { NONE: 0, INTEL_VTD: 1, ARM_SMMUV3: 2, TEGRA241_CMDQV: 3, AMD: 4, SELFTEST: 0xfeedbeef } as const
/** The mock's hw_info register value (IOMMU_HW_INFO_SELFTEST_REGVAL). */
export const SELFTEST_REGVAL = 0xdeadbeef
/** iommufd_hw_capabilities. */
export const HwCap = { DIRTY_TRACKING: 1n << 0n, PCI_PASID_EXEC: 1n << 1n, PCI_PASID_PRIV: 1n << 2n, PCI_ATS_NOT_SUPPORTED: 1n << 3n } as const
/** The VT-d hw-info flag the kernel always sets: read-only mappings refused on a nest parent. */
export const VTD_ERRATA_772415_SPR17 = 1

export type HwInfo =
  | { type: typeof HwInfoType.ARM_SMMUV3; flags: number; idr: bigint[]; iidr: bigint; aidr: bigint }
  | { type: typeof HwInfoType.INTEL_VTD; flags: number; cap_reg: bigint; ecap_reg: bigint }
  | { type: typeof HwInfoType.SELFTEST; flags: number; test_reg: number }

/**
 * The per-vendor half of the model: what the SMMUv3 and VT-d drivers report
 * and check, and how they program their hardware when a device attaches.
 */
export interface Driver {
  hwInfo(unit: IommuUnit): HwInfo
  /** GET_HW_INFO's out_capabilities and out_max_pasid_log2 for a device. */
  capabilities(dev: PciDevice): bigint
  maxPasidLog2(dev: PciDevice): number
  /** Refuses a paging domain the hardware cannot build (flags already checked by the core). */
  checkPaging(unit: IommuUnit, flags: number): void
  /** The paging domain was made (committed) and ends (destroyed): an ID it holds for its whole life. */
  made?(hwpt: HwptPaging): void
  ended?(hwpt: HwptPaging): void
  /** Takes the hardware ID `hwpt` holds on the device's unit (shared by its devices there). */
  acquire(dev: PciDevice, hwpt: Hwpt): void
  release(dev: PciDevice, hwpt: Hwpt): void
  /** Writes the device's translation entry for `hwpt` (acquired), or a blocking entry. */
  program(dev: PciDevice, hwpt: Hwpt | undefined): void
  /**
   * The driver's identity domain on the RID (its attach_dev for
   * IOMMU_DOMAIN_IDENTITY), where the model has one; `ridIdentity` says
   * whether the RID has it now.
   */
  attachIdentity?(dev: PciDevice): void
  ridIdentity?(dev: PciDevice): boolean
  /** The device left iommufd: its entry goes back to the kernel's default domain. */
  forget(dev: PciDevice): void
  /** Attach-time checks a nested HWPT makes of a device; throws without changing anything. */
  checkNestedAttach(dev: PciDevice, hwpt: HwptNested, hasVdevice: boolean): void
  /** A domain with dirty tracking can be built for (and attached to) this device. */
  dirtyCapable(dev: PciDevice): boolean
  /** iommu_ops.user_pasid_table: a guest owns the PASID table, so a fault at any PASID of a nested RID is that domain's. */
  readonly userPasidTable?: boolean
  /** Why a domain with a fault queue cannot take this device's page faults (ENODEV), if it cannot. */
  iopfRefusal?(dev: PciDevice): string | undefined
  /** Sets a PASID's domain (undefined: blocking); a driver may refuse (the mock's PASID 1024). */
  setPasid?(dev: PciDevice, pasid: number, hwpt: Hwpt | undefined): void
  /** The driver's own refusals of a PASID attach (after the core's checks), with nothing changed. */
  checkPasid?(dev: PciDevice, pasid: number, hwpt: Hwpt, rid: Hwpt | undefined): void
  /**
   * Its paging domains may hold devices behind other units of its kind, as
   * intel-iommu's do; an SMMUv3 domain is finalised on one SMMU and refuses
   * the others' devices (arm_smmu_attach_dev, arm_smmu_set_pasid: EINVAL).
   */
  readonly sharesDomains: boolean
}

function takeTag(hwpt: Hwpt, unit: IommuUnit, alloc: () => number | undefined): void {
  let tag = hwpt.tags.get(unit)
  if (!tag) {
    const id = alloc()
    if (id === undefined) throw new ErrnoError('ENOSPC', `${unit.name}: no free hardware domain ID`)
    tag = { id, refs: 0 }
    hwpt.tags.set(unit, tag)
  }
  tag.refs++
}

function dropTag(hwpt: Hwpt, unit: IommuUnit, free: (id: number) => void): void {
  const tag = hwpt.tags.get(unit)
  if (!tag) return
  if (--tag.refs === 0) {
    free(tag.id)
    hwpt.tags.delete(unit)
  }
}

/** The domain whose ASID or VMID an SMMUv3 stream uses: a nested domain's streams use its vIOMMU's VMID, the parent's, and count as its users. */
function taggedDomain(hwpt: Hwpt): HwptPaging | undefined {
  return hwpt instanceof HwptPaging ? hwpt : (hwpt as HwptNested).viommu?.parent
}

/** Why an SMMU's CD tables may be narrower than its SSIDSIZE. */
function cdTableNote(smmu: Smmuv3): string {
  return smmu.registers.flag('IDR0.CD2L') ? 'the device\'s PASID width' : 'linear, at most 2^10, without IDR0.CD2L'
}

const smmuDriver: Driver = {
  userPasidTable: true,
  sharesDomains: false,
  hwInfo(unit) {
    const r = unit.registers
    return {
      type: HwInfoType.ARM_SMMUV3,
      flags: 0,
      idr: ['IDR0', 'IDR1', 'IDR2', 'IDR3', 'IDR4', 'IDR5'].map((n) => r.word(n)),
      iidr: r.word('IIDR'),
      aidr: r.word('AIDR'),
    }
  },
  capabilities(dev) {
    const { unit } = dev
    // IOMMU_CAP_PCI_ATS_SUPPORTED is arm_smmu_ats_supported: the SMMU's IDR0.ATS and the function's ATS capability
    return (unit.dirtyTracking ? HwCap.DIRTY_TRACKING : 0n) | (atsSupported(unit as Smmuv3, dev) ? 0n : HwCap.PCI_ATS_NOT_SUPPORTED)
  },
  // dev_iommu_get_max_pasids: the PCI capability's width within the SMMU's SSIDSIZE
  maxPasidLog2({ unit, pasidBits }) {
    return Math.min(pasidBits, Number(unit.registers.field('IDR1.SSIDSIZE')))
  },
  checkPaging(unit, allFlags) {
    const smmu = unit as Smmuv3
    // arm_smmu_domain_alloc_paging_flags takes these combinations only (FAULT_ID_VALID is the core's):
    // a nest parent is a stage-2 domain alone; dirty tracking and PASID ask for a stage-1 one
    const { NEST_PARENT, DIRTY_TRACKING, PASID } = HwptAllocFlag
    const flags = allFlags & ~HwptAllocFlag.FAULT_ID_VALID
    if (flags === NEST_PARENT) {
      if (!smmu.supportsNesting) throw new ErrnoError('EOPNOTSUPP', `flags=NEST_PARENT: ${unit.name} does not nest (IDR0.S1P and IDR0.S2P, and no IIDR erratum against it)`)
      if (smmu.vmids.full) throw new ErrnoError('ENOSPC', `${unit.name}: no free VMID for the stage 2`)
    } else if (flags === PASID || flags === DIRTY_TRACKING || flags === (DIRTY_TRACKING | PASID)) {
      if (!smmu.registers.flag('IDR0.S1P')) throw new ErrnoError('EOPNOTSUPP', `flags: ${unit.name} lacks stage 1 (IDR0.S1P), which dirty tracking and PASID need`)
    } else if (flags !== 0) {
      throw new ErrnoError('EOPNOTSUPP', `flags=${allocFlagNames(flags)}: an SMMUv3 nest parent takes no other flag (it is a stage-2 domain); dirty tracking and PASID go on stage-1 domains`)
    }
  },
  // arm_smmu_domain_finalise_s2: a nest parent's VMID is allocated with the domain and freed with it (no
  // flush then); its vIOMMUs and their nested domains use it (arm_vsmmu_init: vsmmu->vmid = s2_parent->s2_cfg.vmid)
  made(hwpt) {
    const smmu = hwpt.home as Smmuv3
    const id = hwpt.nestParent ? smmu.vmids.alloc() : undefined
    if (id !== undefined) hwpt.tags.set(smmu, { id, refs: 0 })
  },
  ended(hwpt) {
    const smmu = hwpt.home as Smmuv3
    const tag = hwpt.nestParent ? hwpt.tags.get(smmu) : undefined
    if (!tag) return
    smmu.vmids.free(tag.id)
    hwpt.tags.delete(smmu)
  },
  acquire(dev, hwpt) {
    const smmu = dev.unit as Smmuv3
    const domain = taggedDomain(hwpt)
    if (domain) takeTag(domain, smmu, () => (domain.nestParent ? smmu.vmids.alloc() : smmu.asids.alloc()))
  },
  release(dev, hwpt) {
    const smmu = dev.unit as Smmuv3
    const domain = taggedDomain(hwpt)
    const tag = domain?.tags.get(smmu)
    if (!domain || !tag) return
    if (domain.nestParent) {
      // arm_smmu_install_old_domain_invs: a VMID no stream uses any more is flushed at once; the ID stays the domain's
      if (--tag.refs === 0) vmidFreed(smmu, tag.id)
      return
    }
    // a stage-1 domain's ASID goes when its last stream leaves, as the domain itself does here: flushed first
    dropTag(domain, smmu, (id) => (tagFreed(smmu, id), smmu.asids.free(id)))
  },
  program(dev, hwpt) {
    const smmu = dev.unit as Smmuv3
    const set = (ste: PhysicalSte, how: RidAttach, domain?: HwptPaging): void => setRidSte(smmu, dev, ste, domain, how)
    // arm_smmu_attach_commit_vmaster: a nested attach records the vSID its vDEVICE has now; any other attach, none
    const vdev = hwpt instanceof HwptNested ? [...(hwpt.viommu?.vdevices.values() ?? [])].find((v) => v.device.pci === dev) : undefined
    if (vdev) vmasters.set(dev, { viommu: vdev.viommu, vsid: vdev.virtId })
    else vmasters.delete(dev)
    // blocked: with PASIDs in use the STE keeps the CD table, and ATS for them (cd_needs_ats)
    if (!hwpt) return set({ config: 'abort', ats: pasidsInUse(dev).length > 0 && atsSupported(smmu, dev) }, 'ste')
    if (hwpt instanceof HwptPaging) {
      const id = hwpt.tags.get(smmu)!.id
      const stall = hwpt.fault !== undefined
      // arm_smmu_make_s2_domain_ste / arm_smmu_make_cdtable_ste with the attach's ats_enabled
      const ats = pagingAts(smmu, dev, stall)
      return set(hwpt.nestParent ? { config: 's2-translate', vmid: id, ats } : { config: 's1-translate', asid: id, ats, stall }, 'paging', hwpt)
    }
    const nested = hwpt as HwptNested
    if (nested.data.kind !== 'arm-smmu-v3' || !nested.viommu) throw new Error('SMMUv3 nested HWPT without a vIOMMU')
    const ste = nested.data.ste
    const vmid = nested.viommu.vmid
    const parent = nested.viommu.parent
    // the guest's EATS asks for ATS; the driver gives it only where arm_smmu_ats_supported
    if (ste.config === 's1-translate') set({ config: 'nested', vmid, guest: ste.words, ats: ste.ats && atsSupported(smmu, dev) }, 'nested', parent)
    // a bypass guest STE is the parent's stage-2 STE; the kernel takes the guest's EATS only with S1 translate, so no ATS
    else if (ste.config === 'bypass') set({ config: 's2-translate', vmid, ats: false }, 'nested', parent)
    else set({ config: 'abort', ats: false }, 'nested')
  },
  // arm_smmu_attach_dev_identity: a bypass STE, or with PASIDs in use the CD table with S1DSS = bypass and ATS for them
  attachIdentity(dev) {
    const smmu = dev.unit as Smmuv3
    vmasters.delete(dev)
    setRidSte(smmu, dev, { config: 'bypass', ats: pasidsInUse(dev).length > 0 && atsSupported(smmu, dev) }, undefined, 'ste')
  },
  ridIdentity(dev) {
    return (dev.unit as Smmuv3).streams.get(dev.streamId)?.config === 'bypass'
  },
  // arm_smmu_s1_set_dev_pasid / arm_smmu_blocking_set_dev_pasid, then the old domain's ASID goes if it was its last stream
  setPasid(dev, pasid, hwpt) {
    const smmu = dev.unit as Smmuv3
    if (hwpt) smmuDriver.acquire(dev, hwpt)
    const old = setPasidDomain(dev, pasid, hwpt)
    setSsid(smmu, dev, pasid, hwpt as HwptPaging | undefined, hwpt ? hwpt.tags.get(smmu)!.id : 0)
    if (old) smmuDriver.release(dev, old)
  },
  // iommu_attach_device_pasid and arm_smmu_set_pasid, in their order
  checkPasid(dev, pasid, hwpt, rid) {
    const smmu = dev.unit as Smmuv3
    if (!(hwpt instanceof HwptPaging)) throw new ErrnoError('EOPNOTSUPP', `pt_id=${hwpt.id}: an SMMUv3 nested domain cannot be set on a PASID (no set_dev_pasid)`)
    if (hwpt.nestParent) throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: a nest parent is a stage-2 domain; a PASID takes a stage-1 one`)
    if (rid && !(rid instanceof HwptPaging && !rid.nestParent)) {
      throw new ErrnoError('EINVAL', `${dev.bdf}: its RID is attached to HWPT ${rid.id}, whose STE has no CD table (a PASID needs the RID stage-1 or blocked)`)
    }
    if (!ssidFits(smmu, dev, pasid)) throw new ErrnoError('ENOMEM', `pasid=${pasid}: beyond ${dev.bdf}'s CD table (2^${masterSsidBits(smmu, dev)} CDs: ${cdTableNote(smmu)})`)
  },
  forget(dev) {
    const smmu = dev.unit as Smmuv3
    smmu.streams.delete(dev.streamId)
    vmasters.delete(dev)
    // back to the kernel's own domain, which the model does not translate: an abort STE
    installSte(smmu, dev, { config: 'abort', ats: false }, undefined)
  },
  dirtyCapable(dev) {
    return dev.unit.dirtyTracking
  },
  checkNestedAttach(dev, hwpt, hasVdevice) {
    if (hwpt.data.kind !== 'arm-smmu-v3') throw new ErrnoError('EINVAL', 'not an SMMUv3 nested HWPT')
    if (hwpt.viommu && hwpt.viommu.unit !== dev.unit) throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: its vIOMMU is on ${hwpt.viommu.unit.name}, the device is behind ${dev.unit.name}`)
    if (hwpt.data.ste.config === 's1-translate' && !hasVdevice) {
      throw new ErrnoError('ENOENT', `pt_id=${hwpt.id}: an S1-translate STE needs a vDEVICE (vSID) for ${dev.bdf} in vIOMMU ${hwpt.viommu?.id}`)
    }
  },
}

/** Whether each VT-d device's RID domain has a fault queue (its PASIDs' are in pasid-domains). */
const ridFaults = new WeakMap<PciDevice, boolean>()

/**
 * IOPF on VT-d is PCIe PRI: the endpoint makes page requests while one of
 * its domains, the RID's or a PASID's, has a fault queue (the driver's
 * iopf_refcount), else its misses are recorded faults.
 */
function refreshPri(dev: PciDevice): void {
  const vtd = dev.unit as Vtd
  const on = ridFaults.get(dev) === true || pasidsInUse(dev).some((p) => pasidDomain(dev, p)?.fault !== undefined)
  if (on) vtd.prq.enabled.add(dev.streamId)
  else vtd.prq.enabled.delete(dev.streamId)
}

const vtdDriver: Driver = {
  sharesDomains: true,
  hwInfo(unit) {
    return { type: HwInfoType.INTEL_VTD, flags: VTD_ERRATA_772415_SPR17, cap_reg: unit.registers.word('CAP'), ecap_reg: unit.registers.word('ECAP') }
  },
  // the unit's device-TLB support (ECAP.DT) and the function's ATS capability
  capabilities({ unit, ats }) {
    return (unit.dirtyTracking ? HwCap.DIRTY_TRACKING : 0n) | (unit.registers.flag('ECAP.DT') && ats ? 0n : HwCap.PCI_ATS_NOT_SUPPORTED)
  },
  maxPasidLog2({ unit, pasidBits }) {
    return unit.registers.flag('ECAP.PASID') ? Math.min(pasidBits, Number(unit.registers.field('ECAP.PSS')) + 1) : 0
  },
  checkPaging(unit, flags) {
    const vtd = unit as Vtd
    // intel_iommu_domain_alloc_paging_flags asks nothing of the unit for PASID (attaching one does)
    if (flags & HwptAllocFlag.NEST_PARENT && !vtd.supportsNesting) throw new ErrnoError('EOPNOTSUPP', `flags=NEST_PARENT: ${unit.name} lacks nesting (ECAP.NEST with scalable mode)`)
  },
  acquire(dev, hwpt) {
    const vtd = dev.unit as Vtd
    takeTag(hwpt, vtd, () => vtd.domainIds.alloc())
  },
  release(dev, hwpt) {
    const vtd = dev.unit as Vtd
    dropTag(hwpt, vtd, (id) => vtd.domainIds.free(id))
  },
  program(dev, hwpt) {
    const vtd = dev.unit as Vtd
    ridFaults.set(dev, hwpt?.fault !== undefined)
    refreshPri(dev)
    installPasidEntry(vtd, dev, hwpt)
    if (!hwpt) return void vtd.pasidEntries.delete(dev.streamId)
    const did = hwpt.tags.get(vtd)!.id
    if (hwpt instanceof HwptNested && hwpt.data.kind === 'intel-vtd') {
      vtd.pasidEntries.set(dev.streamId, { pgtt: 'nested', did, flptr: hwpt.data.s1.pgtblAddr, addrWidth: hwpt.data.s1.addrWidth })
    } else vtd.pasidEntries.set(dev.streamId, { pgtt: usesFirstStage(hwpt.paging, vtd) ? 'first-stage' : 'second-stage', did })
  },
  // intel_iommu_set_dev_pasid: the domain's DID on the unit, the PASID's entry, then the old DID goes
  setPasid(dev, pasid, hwpt) {
    const old = pasidDomain(dev, pasid)
    if (hwpt) vtdDriver.acquire(dev, hwpt)
    installPasidEntry(dev.unit as Vtd, dev, hwpt, pasid)
    setPasidDomain(dev, pasid, hwpt)
    refreshPri(dev)
    if (old) vtdDriver.release(dev, old)
  },
  forget(dev) {
    installPasidEntry(dev.unit as Vtd, dev, undefined)
    ;(dev.unit as Vtd).pasidEntries.delete(dev.streamId)
  },
  dirtyCapable(dev) {
    return dev.unit.dirtyTracking
  },
  // intel_iommu_enable_iopf: page requests need PRI, which needs ATS and the unit's ECAP.PRS and ECAP.PDS
  iopfRefusal(dev) {
    const ecap = dev.unit.registers
    if (!devAts(dev.unit as Vtd, dev)) return `${dev.bdf} has no ATS here, so no PRI: it makes no page requests`
    const missing = ['ECAP.PRS', 'ECAP.PDS'].filter((f) => !ecap.flag(f))
    return missing.length ? `${dev.unit.name} lacks ${missing.join(' and ')}, so ${dev.bdf} makes no page requests` : undefined
  },
  checkNestedAttach(dev, hwpt) {
    if (hwpt.data.kind !== 'intel-vtd') throw new ErrnoError('EINVAL', 'not a VT-d nested HWPT')
    checkNestedAttach(dev.unit as Vtd, hwpt.data.s1)
  },
}

/** The selftest's mock driver: no hardware IDs, no tables; a device flag takes dirty tracking away. */
const mockDriver: Driver = {
  sharesDomains: true,
  hwInfo() {
    return { type: HwInfoType.SELFTEST, flags: 0, test_reg: SELFTEST_REGVAL }
  },
  capabilities(dev) {
    return mockDriver.dirtyCapable(dev) ? HwCap.DIRTY_TRACKING : 0n
  },
  maxPasidLog2(dev) {
    return isMockDevice(dev) && dev.flags & MockDevFlag.PASID ? MOCK_PASID_WIDTH : 0
  },
  checkPaging(_unit, flags) {
    if (flags & ~(HwptAllocFlag.NEST_PARENT | HwptAllocFlag.DIRTY_TRACKING | HwptAllocFlag.PASID)) {
      throw new ErrnoError('EOPNOTSUPP', `flags=0x${flags.toString(16)}: the mock IOMMU builds NEST_PARENT, DIRTY_TRACKING and PASID domains only`)
    }
  },
  acquire() {},
  release() {},
  program() {},
  forget() {},
  // the mock's attach: a nested domain of a vIOMMU needs the device's vDEVICE there (iommufd_viommu_get_vdev_id)
  checkNestedAttach(dev, hwpt, hasVdevice) {
    if (hwpt.viommu && !hasVdevice) throw new ErrnoError('ENOENT', `pt_id=${hwpt.id}: ${dev.bdf} has no vDEVICE in vIOMMU ${hwpt.viommu.id}`)
  },
  dirtyCapable(dev) {
    return !(isMockDevice(dev) && dev.flags & MockDevFlag.NO_DIRTY)
  },
  // PASID 1024 fails every second non-blocking set, so the core's rollback is exercised; blocking disarms it
  setPasid(dev, pasid, hwpt) {
    if (!isMockDevice(dev) || pasid !== MOCK_PASID_RESERVED) return
    if (!hwpt) {
      dev.pasidFaultArmed = false
      return
    }
    if (dev.pasidFaultArmed) {
      dev.pasidFaultArmed = false
      throw new ErrnoError('ENOMEM', `pasid=${pasid}: the mock driver fails this set (its injected fault for PASID ${MOCK_PASID_RESERVED})`)
    }
    dev.pasidFaultArmed = true
  },
}

export function driverFor(unit: IommuUnit): Driver {
  return unit.kind === 'arm-smmu-v3' ? smmuDriver : unit.kind === 'intel-vtd' ? vtdDriver : mockDriver
}

