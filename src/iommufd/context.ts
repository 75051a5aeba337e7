import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { mustBeZero } from './checks'
import { Device, unbind } from './device'
import { QueueObject } from './eventq'
import { Hwpt, HwptNested, HwptPaging } from './hwpt'
import { hwptDestroyed } from './host'
import { Ioas, ioasOption } from './ioas'
import { MmapRegions } from './mmap'
import { driverFor } from './driver'
import { IommufdObject, ObjectTable } from './objects'
import { Vcmdq } from './vcmdq'
import { Vdevice } from './vdevice'
import { Viommu } from './viommu'
import type { World } from './world'

export const IommuOption = { RLIMIT_MODE: 0, HUGE_PAGES: 1 } as const
export const OptionOp = { SET: 0, GET: 1 } as const

/**
 * One iommufd file: its object table and the objects' lifetimes (as the
 * kernel's main.c). Each ioctl handler lives beside its object: ioas.ts,
 * hwpt.ts, device.ts, viommu.ts, vcmdq.ts, vfio-compat.ts.
 */
export class IommufdContext {
  readonly objects = new ObjectTable()
  /** The devices bound here, by PCI function (each is also in `objects`). */
  readonly bound = new Map<PciDevice, Device>()
  /** Regions of this file a program may mmap (a mock vIOMMU's pages). */
  readonly mmaps = new MmapRegions()
  /** The IOAS that VFIO compatibility commands act on (IOMMU_VFIO_IOAS). */
  vfioIoas: Ioas | undefined
  rlimitMode = 0n
  /** Open queue files (fault queue, vEVENTQ): each holds the context, as the kernel's queue file holds its iommufd. */
  private holds = 0
  /** Its iommufd file is closed: the context ends with the last held file. */
  private detached = false

  constructor(readonly id: number, readonly world: World) {}

  /** A queue file was opened: the context lives while it is open; call the result at its close. */
  hold(): () => void {
    this.holds++
    let done = false
    return () => {
      if (done) return
      done = true
      if (--this.holds === 0 && this.detached && this.world.contexts.get(this.id) === this) this.world.close(this)
    }
  }

  /** The iommufd file's last close: the context ends now (true), or with its last open queue file (false). */
  fileClosed(): boolean {
    if (this.holds > 0) {
      this.detached = true
      return false
    }
    this.world.close(this)
    return true
  }

  ioas(id: number, field = 'ioas_id'): Ioas {
    return this.objects.get<Ioas>(id, field, 'ioas')
  }

  device(id: number, field = 'dev_id'): Device {
    return this.objects.get<Device>(id, field, 'device')
  }

  paging(id: number, field = 'hwpt_id'): HwptPaging {
    return this.objects.get<HwptPaging>(id, field, 'hwpt_paging')
  }

  /** The device object `pci` is bound as in this context, if it is. */
  deviceOf(pci: PciDevice): Device | undefined {
    return this.bound.get(pci)
  }

  /** IOMMU_OPTION: RLIMIT_MODE is the context's; HUGE_PAGES belongs to an IOAS. */
  option(optionId: number, op: number, reserved: number, objectId: number, val64: bigint): bigint {
    mustBeZero(reserved, '__reserved')
    const knownOp = (): void => {
      if (op !== OptionOp.SET && op !== OptionOp.GET) throw new ErrnoError('EOPNOTSUPP', `op=${op}: expected SET (0) or GET (1)`)
    }
    if (optionId === IommuOption.RLIMIT_MODE) {
      if (objectId !== 0) throw new ErrnoError('EOPNOTSUPP', `object_id=${objectId}: RLIMIT_MODE takes 0`)
      knownOp()
      if (op === OptionOp.GET) return this.rlimitMode
      if (this.objects.size) throw new ErrnoError('EBUSY', 'RLIMIT_MODE can only be set before any object exists')
      if (val64 > 1n) throw new ErrnoError('EINVAL', `val64=${val64}: expected 0 or 1`)
      this.rlimitMode = val64
      return val64
    }
    if (optionId === IommuOption.HUGE_PAGES) {
      // the IOAS is looked up before op is read (a bad id is ENOENT whatever the op), as iommufd_ioas_option
      const ioas = this.ioas(objectId, 'object_id')
      knownOp()
      return ioasOption(ioas, op === OptionOp.SET, val64)
    }
    throw new ErrnoError('EOPNOTSUPP', `option_id=${optionId}: expected RLIMIT_MODE (0) or HUGE_PAGES (1)`)
  }

  /** Inserts a new HWPT, then takes its references on what it is built on: a failed insertion leaves everything as it was. */
  commitHwpt(hwpt: Hwpt): number {
    this.objects.insert(hwpt)
    if (hwpt.fault) hwpt.fault.users++
    if (hwpt instanceof HwptPaging) {
      hwpt.ioas.hwpts.add(hwpt)
      hwpt.ioas.users++
      driverFor(hwpt.home).made?.(hwpt)
    } else if (hwpt instanceof HwptNested) {
      if (hwpt.viommu) {
        hwpt.viommu.nested.add(hwpt)
        hwpt.viommu.users++
      } else {
        hwpt.parentHwpt.children.add(hwpt)
        hwpt.parentHwpt.users++
      }
    }
    return hwpt.id
  }

  /** IOMMU_DESTROY. */
  destroy(id: number): void {
    const obj = this.objects.find(id)
    if (!obj) throw new ErrnoError('ENOENT', `id=${id}: no such object`)
    if (obj instanceof Device) throw new ErrnoError('EBUSY', `id=${id}: a device is destroyed by unbinding it (closing its VFIO file)`)
    // a mapping the kernel made of the file itself ends unheard: look before refusing
    if (obj.users > 0) this.mmaps.prune()
    if (obj.users > 0) throw new ErrnoError('EBUSY', `id=${id}: ${obj.type} still has ${obj.users} user${obj.users === 1 ? '' : 's'}`)
    this.destroyObject(obj)
  }

  unlinkVdevice(vd: Vdevice): void {
    vd.viommu.vdevices.delete(vd.virtId)
    vd.viommu.users--
    vd.device.vdevice = undefined
  }

  /** Drops the references `obj` holds and removes it from the table. */
  destroyObject(obj: IommufdObject): void {
    if (obj instanceof HwptPaging) {
      obj.ioas.hwpts.delete(obj)
      obj.ioas.users--
      hwptDestroyed(obj)
      driverFor(obj.home).ended?.(obj)
    } else if (obj instanceof HwptNested) {
      if (obj.viommu) {
        obj.viommu.nested.delete(obj)
        obj.viommu.users--
      } else {
        obj.parentHwpt.children.delete(obj)
        obj.parentHwpt.users--
      }
    } else if (obj instanceof Viommu) {
      obj.parent.viommus.delete(obj)
      obj.parent.users--
      this.mmaps.removeOwner(obj)
    } else if (obj instanceof Vdevice) {
      this.unlinkVdevice(obj)
    } else if (obj instanceof Vcmdq) {
      obj.viommu.users--
    } else if (obj instanceof Ioas) {
      if (this.vfioIoas === obj) this.vfioIoas = undefined
      // the mappings go with it: their memory is let go (the kernel unpins, and drops the files)
      if (obj.areas.length) obj.removeAreas([...obj.areas])
    }
    if (obj instanceof Hwpt && obj.fault) obj.fault.users--
    obj.teardown?.()
    this.objects.remove(obj)
  }

  /** Closing the last file: unbind devices, then destroy everything, leaves first. */
  close(): void {
    // mappings die with the process that made them; they no longer hold their owners
    this.mmaps.dropMappings()
    // so do its descriptors of event queues
    for (const o of this.objects.objects()) if (o instanceof QueueObject) o.closeFd()
    for (const dev of [...this.bound.values()]) unbind(this, dev)
    // each pass destroys the objects nothing uses any more; that frees the next layer
    for (let left = this.objects.objects(); left.length; ) {
      const leaves = left.filter((o) => o.users === 0)
      if (!leaves.length) throw new Error(`context ${this.id}: objects reference each other: ${left.map((o) => o.label()).join(', ')}`)
      for (const o of leaves) if (o.users === 0) this.destroyObject(o)
      left = left.filter((o) => this.objects.find(o.id) === o)
    }
  }
}
