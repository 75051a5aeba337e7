import { IommuUnit, PciDevice } from '../hw/unit'
import type { Hwpt } from './hwpt'

/**
 * What the host drivers set each PASID (other than the RID's) of a device
 * to, and the reverse: the (device, PASID) pairs a domain serves, which the
 * drivers tag their invalidations with (VT-d's cache tags, SMMUv3's
 * master_domain entries with an SSID).
 */

const byDevice = new WeakMap<PciDevice, Map<number, Hwpt>>()
/** Each domain's (device, PASID) pairs, with the attach sequence number of each. */
const byDomain = new WeakMap<Hwpt, Map<PciDevice, Map<number, number>>>()

let attachSeq = 0

/**
 * The next number of one sequence shared by every attach to a domain (a RID's
 * or a PASID's): the SMMUv3 driver keeps one device list per domain, the
 * latest attach first, and its ATC invalidations walk it in that order.
 */
export function nextAttachSeq(): number {
  return ++attachSeq
}

/** The domain `dev`'s `pasid` is set to, if any. */
export function pasidDomain(dev: PciDevice, pasid: number): Hwpt | undefined {
  return byDevice.get(dev)?.get(pasid)
}

/** The PASIDs of `dev` set to a domain. */
export function pasidsInUse(dev: PciDevice): number[] {
  return [...(byDevice.get(dev)?.keys() ?? [])]
}

/** Records that `dev`'s `pasid` now uses `hwpt` (undefined: none); returns the domain it used before. */
export function setPasidDomain(dev: PciDevice, pasid: number, hwpt: Hwpt | undefined): Hwpt | undefined {
  let mine = byDevice.get(dev)
  if (!mine) byDevice.set(dev, (mine = new Map()))
  const old = mine.get(pasid)
  if (old) byDomain.get(old)?.get(dev)?.delete(pasid)
  if (!hwpt) {
    mine.delete(pasid)
    return old
  }
  mine.set(pasid, hwpt)
  let devs = byDomain.get(hwpt)
  if (!devs) byDomain.set(hwpt, (devs = new Map()))
  let seqs = devs.get(dev)
  if (!seqs) devs.set(dev, (seqs = new Map()))
  seqs.set(pasid, nextAttachSeq())
  return old
}

/** (device, PASID) pairs `h` serves on `unit`, the RIDs' attachments not included. */
export function pasidUsers(h: Hwpt, unit: IommuUnit): [device: PciDevice, pasid: number, seq: number][] {
  return [...(byDomain.get(h) ?? [])].filter(([d]) => d.unit === unit).flatMap(([d, seqs]) => [...seqs].map(([p, seq]): [PciDevice, number, number] => [d, p, seq]))
}

/** Units where `h` serves at least one PASID. */
export function pasidUnits(h: Hwpt): IommuUnit[] {
  return [...(byDomain.get(h) ?? [])].filter(([, set]) => set.size).map(([d]) => d.unit)
}
