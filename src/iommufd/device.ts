import { MockPagetable, isMockDevice, mockPageSizes } from '../hw/mock/mock'
import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { hex, mustBeZero, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { HwInfo, HwInfoType, driverFor } from './driver'
import { Hwpt, HwptAllocFlag, HwptNested, HwptPaging } from './hwpt'
import { Ioas, ULONG_MAX, checkFirstDomain } from './ioas'
import { IommufdObject } from './objects'
import type { Vdevice } from './vdevice'

/** A PCI device bound to a context (VFIO_DEVICE_BIND_IOMMUFD). */
export class Device extends IommufdObject {
  readonly type = 'device'
  hwpt: Hwpt | undefined
  vdevice: Vdevice | undefined
  /** What each PASID is attached to (the RID's attachment is `hwpt`). */
  readonly pasids = new Map<number, Hwpt>()
  /**
   * VFIO attached the RID as PASID 0 (its pasids IDA holds 0), not through
   * a plain attach (vdev->iommufd_attached): which VFIO detach ends it.
   */
  ridAsPasid0 = false

  constructor(readonly pci: PciDevice) {
    super()
  }

  describe(): [string, string][] {
    return [
      ['type', 'device'],
      ['users', String(this.users)],
      ['pci', this.pci.bdf],
      ['iommu', this.pci.unit.name],
      [this.pci.unit.kind === 'arm-smmu-v3' ? 'stream_id' : 'rid', `0x${this.pci.streamId.toString(16)}`],
      ['attached', this.hwpt ? `${this.hwpt.id} (${this.hwpt.type})` : '-'],
      ['vdevice', this.vdevice ? String(this.vdevice.id) : '-'],
      ['pasid_bits', String(driverFor(this.pci.unit).maxPasidLog2(this.pci))],
      ['ats', this.pci.ats ? 'yes' : 'no'],
      ['pasids', [...this.pasids].map(([p, h]) => `${p}:${h.id}`).join(' ') || '-'],
    ]
  }
}

// ---- handlers (VFIO cdev bind/attach/detach, IOMMU_GET_HW_INFO), as the kernel's device.c ----

export const HwInfoFlag = { INPUT_TYPE: 1 } as const

/** VFIO_DEVICE_BIND_IOMMUFD: one context at a time may own a PCI function. */
export function bind(ctx: IommufdContext, pci: PciDevice): number {
  const owner = ctx.world.ownerOf(pci)
  if (owner) throw new ErrnoError('EBUSY', `${pci.bdf}: already bound to context ${owner.id}`)
  const dev = ctx.objects.insert(new Device(pci))
  ctx.bound.set(pci, dev)
  ctx.world.setOwner(pci, ctx)
  return dev.id
}

/** Attaches or replaces; returns the HWPT actually attached (an auto domain for an IOAS). */
export function attach(ctx: IommufdContext, devId: number, ptId: number): number {
  const dev = ctx.device(devId)
  const pt = ctx.objects.find(ptId)
  if (!pt) throw new ErrnoError('ENOENT', `pt_id=${ptId}: no such object`)
  if (pt instanceof Ioas) {
    // the first auto domain that can hold the device (iommufd_device_auto_get_domain skips those that refuse it with EINVAL)
    const reuse = [...pt.hwpts].find((h) => h.auto && domainMismatch(dev, h) === undefined)
    if (reuse) return attachTo(ctx, dev, reuse)
    checkAttach(dev, pt)
    checkFirstDomain(ctx, pt)
    const auto = new HwptPaging(dev.pci.unit, pt, 0, true, isMockDevice(dev.pci) ? mockPageSizes(MockPagetable.DEFAULT, dev.pci.flags) : undefined)
    ctx.commitHwpt(auto)
    try {
      return attachTo(ctx, dev, auto)
    } catch (e) {
      // a failed attach leaves no auto domain behind (no half-made object, no leaked ID)
      ctx.destroyObject(auto)
      throw e
    }
  }
  if (!(pt instanceof Hwpt)) throw new ErrnoError('EINVAL', `pt_id=${ptId}: is a ${pt.type} object; expected an IOAS or a HWPT`)
  return attachTo(ctx, dev, pt)
}

/** The checks attaching `dev` to a domain over `ioas` makes: the device's reserved IOVAs must be free. */
function checkAttach(dev: Device, ioas: Ioas): void {
  const unit = dev.pci.unit
  const holes = [...unit.reservedRegions(), ...(unit.iovaBits < 64 ? [{ start: 1n << BigInt(unit.iovaBits), last: ULONG_MAX }] : [])]
  for (const h of holes) {
    const hit = ioas.firstArea(h.start, h.last)
    if (hit) throw new ErrnoError('EADDRINUSE', `IOAS ${ioas.id} maps ${hex(hit.iova)}, which ${unit.name} reserves (${hex(h.start)}-${hex(h.last)})`)
    const allowed = ioas.allowed?.findIndex((r) => r.start <= h.last && h.start <= r.last) ?? -1
    if (allowed >= 0) throw new ErrnoError('EADDRINUSE', `IOAS ${ioas.id} allows ${hex(ioas.allowed![allowed].start)}-${hex(ioas.allowed![allowed].last)}, which ${unit.name} reserves`)
  }
}

function attachTo(ctx: IommufdContext, dev: Device, hwpt: Hwpt): number {
  if (dev.hwpt === hwpt) return hwpt.id
  checkDomainFits(dev, hwpt)
  // with PASIDs attached, the RID's domain must be PASID-compatible too (iommufd_hwpt_pasid_compat)
  if (dev.pasids.size && !hwpt.pasidCompat) {
    throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: ${dev.pci.bdf} has PASIDs attached (${[...dev.pasids.keys()].join(' ')}); its RID needs a domain allocated with flags=PASID`)
  }
  if (hwpt instanceof HwptNested) driverFor(dev.pci.unit).checkNestedAttach(dev.pci, hwpt, dev.vdevice !== undefined && dev.vdevice.viommu === hwpt.viommu)
  checkDomainFeatures(dev, hwpt)
  checkAttach(dev, hwpt.paging.ioas)
  const driver = driverFor(dev.pci.unit)
  const old = dev.hwpt
  driver.acquire(dev.pci, hwpt)
  driver.program(dev.pci, hwpt)
  hwpt.devices.add(dev)
  hwpt.users++
  dev.hwpt = hwpt
  if (old) dropDomain(ctx, dev, old)
  return hwpt.id
}

/** The device no longer uses `hwpt`: release its hardware ID there; an auto domain dies with its last device. */
function dropDomain(ctx: IommufdContext, dev: Device, hwpt: Hwpt): void {
  // its page requests through that domain, queued or read, are answered INVALID (iommufd_auto_response_faults)
  hwpt.fault?.autoRespond((r) => r.device === dev && r.hwpt === hwpt)
  hwpt.devices.delete(dev)
  hwpt.users--
  driverFor(dev.pci.unit).release(dev.pci, hwpt)
  if (hwpt instanceof HwptPaging && hwpt.auto && hwpt.devices.size === 0) ctx.destroyObject(hwpt)
}

export function detach(ctx: IommufdContext, devId: number): void {
  const dev = ctx.device(devId)
  const hwpt = dev.hwpt
  dev.ridAsPasid0 = false
  if (!hwpt) return
  dev.hwpt = undefined
  driverFor(dev.pci.unit).program(dev.pci, undefined)
  dropDomain(ctx, dev, hwpt)
}

/** The domain a PASID attach names: a HWPT (an IOAS's automatic domain is never PASID-compatible: EINVAL). */
function pasidTarget(ctx: IommufdContext, ptId: number): Hwpt {
  const pt = ctx.objects.find(ptId)
  if (!pt) throw new ErrnoError('ENOENT', `pt_id=${ptId}: no such object`)
  if (pt instanceof Ioas) throw new ErrnoError('EINVAL', `pt_id=${ptId}: an IOAS's automatic domain is not PASID-compatible; attach a HWPT allocated with flags=PASID`)
  if (!(pt instanceof Hwpt)) throw new ErrnoError('EINVAL', `pt_id=${ptId}: is a ${pt.type} object; expected a HWPT`)
  return pt
}

/** Why `hwpt` cannot hold `dev`: another driver's domain (the core's owner check), or one its driver built for another unit. */
function domainMismatch(dev: Device, hwpt: Hwpt): string | undefined {
  const unit = dev.pci.unit
  if (hwpt.kind !== unit.kind) return `a ${hwpt.kind} domain cannot hold ${dev.pci.bdf} (behind ${unit.name})`
  // a nested domain's own attach checks its vIOMMU's unit (checkNestedAttach)
  if (hwpt instanceof HwptPaging && hwpt.home !== unit && !driverFor(unit).sharesDomains) return `built for ${hwpt.home.name}, it cannot hold ${dev.pci.bdf} (behind ${unit.name})`
  return undefined
}

function checkDomainFits(dev: Device, hwpt: Hwpt): void {
  const why = domainMismatch(dev, hwpt)
  if (why) throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: ${why}`)
}

/**
 * The driver's refusals of what the domain asks of the device (the RID's
 * attach and a PASID's alike): dirty tracking (EINVAL), page faults (ENODEV).
 */
function checkDomainFeatures(dev: Device, hwpt: Hwpt): void {
  if (hwpt.paging.flags & HwptAllocFlag.DIRTY_TRACKING && !driverFor(dev.pci.unit).dirtyCapable(dev.pci)) {
    throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: a dirty-tracking domain cannot hold ${dev.pci.bdf}, which cannot track dirty pages`)
  }
  const iopf = hwpt.fault && driverFor(dev.pci.unit).iopfRefusal?.(dev.pci)
  if (iopf) throw new ErrnoError('ENODEV', `pt_id=${hwpt.id}: has fault queue ${hwpt.fault!.id}, but ${iopf}`)
}

/** The checks every PASID attach or replace makes of the device and the domain, in the kernel's order. */
function checkPasidAttach(dev: Device, pasid: number, hwpt: Hwpt): void {
  const width = driverFor(dev.pci.unit).maxPasidLog2(dev.pci)
  if (!width) throw new ErrnoError('EINVAL', `${dev.pci.bdf}: not PASID-capable`)
  if (pasid === 0 || pasid >= 2 ** width) throw new ErrnoError('EINVAL', `pasid=${pasid}: ${dev.pci.bdf} takes PASIDs 1..${2 ** width - 1}`)
  checkDomainFits(dev, hwpt)
  if (!hwpt.pasidCompat) throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: not allocated with flags=PASID`)
  if (dev.hwpt && !dev.hwpt.pasidCompat) throw new ErrnoError('EINVAL', `${dev.pci.bdf}: its RID is attached to HWPT ${dev.hwpt.id}, which is not PASID-compatible`)
  if (hwpt instanceof HwptNested) driverFor(dev.pci.unit).checkNestedAttach(dev.pci, hwpt, dev.vdevice !== undefined && dev.vdevice.viommu === hwpt.viommu)
  checkDomainFeatures(dev, hwpt)
  driverFor(dev.pci.unit).checkPasid?.(dev.pci, pasid, hwpt, dev.hwpt)
}

/** IOMMU_NO_PASID: iommufd_device_attach/replace/detach with PASID 0 act on the RID. */
export const NO_PASID = 0

/** Attaches a PASID of the device (iommufd_device_attach with a PASID): EBUSY if it is attached already. */
export function pasidAttach(ctx: IommufdContext, devId: number, pasid: number, ptId: number): number {
  const dev = ctx.device(devId)
  if (pasid === NO_PASID) {
    if (dev.hwpt) throw new ErrnoError('EBUSY', `pasid=0 is the RID, which is attached to HWPT ${dev.hwpt.id}; replace it instead`)
    return attach(ctx, devId, ptId)
  }
  const hwpt = pasidTarget(ctx, ptId)
  checkPasidAttach(dev, pasid, hwpt)
  const cur = dev.pasids.get(pasid)
  if (cur) throw new ErrnoError('EBUSY', `pasid=${pasid}: attached to HWPT ${cur.id}; replace it instead`)
  driverFor(dev.pci.unit).setPasid?.(dev.pci, pasid, hwpt)
  dev.pasids.set(pasid, hwpt)
  hwpt.users++
  return hwpt.id
}

/** Replaces a PASID's domain; a driver failure leaves the old one (the core rolls back). */
export function pasidReplace(ctx: IommufdContext, devId: number, pasid: number, ptId: number): number {
  const dev = ctx.device(devId)
  if (pasid === NO_PASID) {
    if (!dev.hwpt) throw new ErrnoError('EINVAL', 'pasid=0 is the RID, which is not attached; attach it first')
    return attach(ctx, devId, ptId)
  }
  const hwpt = pasidTarget(ctx, ptId)
  const old = dev.pasids.get(pasid)
  if (!old) throw new ErrnoError('EINVAL', `pasid=${pasid}: not attached; attach it first`)
  checkPasidAttach(dev, pasid, hwpt)
  if (old === hwpt) return hwpt.id
  const driver = driverFor(dev.pci.unit)
  try {
    driver.setPasid?.(dev.pci, pasid, hwpt)
  } catch (e) {
    // the core puts the old domain back, which the driver sees as another set
    driver.setPasid?.(dev.pci, pasid, old)
    throw e
  }
  dev.pasids.set(pasid, hwpt)
  hwpt.users++
  old.users--
  return hwpt.id
}

/** Detaches a PASID (to the blocking domain); nothing attached is no error. */
export function pasidDetach(ctx: IommufdContext, devId: number, pasid: number): void {
  const dev = ctx.device(devId)
  if (pasid === NO_PASID) return detach(ctx, devId)
  const old = dev.pasids.get(pasid)
  if (!old) return
  driverFor(dev.pci.unit).setPasid?.(dev.pci, pasid, undefined)
  dev.pasids.delete(pasid)
  old.users--
}

/** The device's VFIO file closed: detach, and destroy its vDEVICE, whose ID stays reserved until close. */
export function unbind(ctx: IommufdContext, dev: Device): void {
  for (const pasid of [...dev.pasids.keys()]) pasidDetach(ctx, dev.id, pasid)
  if (dev.vdevice) {
    const vd = dev.vdevice
    ctx.unlinkVdevice(vd)
    ctx.objects.tombstone(vd)
  }
  detach(ctx, dev.id)
  driverFor(dev.pci.unit).forget(dev.pci)
  ctx.objects.remove(dev)
  ctx.bound.delete(dev.pci)
  ctx.world.setOwner(dev.pci, undefined)
}

/** IOMMU_GET_HW_INFO: the unit's info struct, its PASID width and capabilities. */
export function hwInfo(ctx: IommufdContext, flags: number, devId: number, inType: number, reserved: bigint): { info: HwInfo; maxPasidLog2: number; capabilities: bigint } {
  unknownFlags(flags, HwInfoFlag.INPUT_TYPE)
  mustBeZero(reserved, '__reserved')
  const dev = ctx.device(devId)
  const unit = dev.pci.unit
  const driver = driverFor(unit)
  const info = driver.hwInfo(unit)
  if (flags & HwInfoFlag.INPUT_TYPE && inType !== HwInfoType.NONE && inType !== info.type) {
    throw new ErrnoError('EOPNOTSUPP', `in_data_type=${inType}: ${unit.name} reports type ${info.type}`)
  }
  return { info, maxPasidLog2: driver.maxPasidLog2(dev.pci), capabilities: driver.capabilities(dev.pci) }
}
