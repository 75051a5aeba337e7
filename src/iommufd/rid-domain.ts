import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { driverFor } from './driver'
import { World } from './world'

/**
 * The domain on a device's RID when iommufd has none attached there: the
 * driver's blocked domain (what a bound device has until it attaches, and
 * after it detaches) or its identity domain. Linux gives a device the
 * identity domain as its default domain (iommu.passthrough=1, or
 * `identity` in the group's sysfs type) while the kernel, not iommufd,
 * owns its DMA; this control lets a user see what the driver then does,
 * for example with PASIDs in use.
 */

/** `hwpt N` (iommufd's), `identity` or `blocked`. */
export function ridDomain(world: World, pci: PciDevice): string {
  const dev = world.ownerOf(pci)?.bound.get(pci)
  if (dev?.hwpt) return `hwpt ${dev.hwpt.id}`
  return driverFor(pci.unit).ridIdentity?.(pci) ? 'identity' : 'blocked'
}

/** Puts the driver's `identity` or `blocked` domain on the RID; EBUSY while an iommufd HWPT is attached there. */
export function setRidDomain(world: World, pci: PciDevice, text: string): void {
  const want = text.trim()
  if (want !== 'identity' && want !== 'blocked') throw new ErrnoError('EINVAL', `rid_domain: "${want}" is not identity or blocked`)
  const driver = driverFor(pci.unit)
  if (!driver.attachIdentity) throw new ErrnoError('EOPNOTSUPP', `rid_domain: the identity domain of ${pci.unit.name} (${pci.unit.kind}) is not modelled`)
  const dev = world.ownerOf(pci)?.bound.get(pci)
  if (dev?.hwpt) throw new ErrnoError('EBUSY', `rid_domain: ${pci.bdf}'s RID is attached to HWPT ${dev.hwpt.id}; detach it first`)
  if (want === ridDomain(world, pci)) return
  if (want === 'identity') driver.attachIdentity(pci)
  else driver.program(pci, undefined)
}
