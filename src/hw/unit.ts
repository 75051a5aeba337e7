import { PhysicalMemory } from '../memory/physical'
import { ErrnoError } from '../util/errno'
import { RegisterFile } from './registers'

export type IommuKind = 'arm-smmu-v3' | 'intel-vtd' | 'mock'

/** An IOVA window the platform reserves (the MSI doorbell, for example). */
export interface ReservedRegion {
  readonly start: bigint
  readonly last: bigint
  readonly type: 'msi' | 'direct' | 'direct-relaxable' | 'reserved'
}

/** A PCI function behind an IOMMU. */
export interface PciDevice {
  readonly bdf: string
  readonly vendor: number
  readonly device: number
  readonly unit: IommuUnit
  /** SMMUv3 StreamID; for VT-d the PCI requester ID (bus << 8 | devfn). */
  readonly streamId: number
  readonly group: IommuGroup
  /** N of /dev/vfio/devices/vfio<N>. */
  readonly vfioIndex: number
  /** Max PASID Width of the function's PCI PASID capability (0: none). */
  readonly pasidBits: number
  /** The function has the PCI ATS capability (it may cache translations and send translation requests). */
  readonly ats: boolean
}

export interface IommuGroup {
  readonly id: number
  readonly devices: PciDevice[]
  /** The default domain's type (/sys/kernel/iommu_groups/N/type). */
  type: 'DMA' | 'DMA-FQ' | 'identity'
}

/**
 * A write to a group's `type` (iommu_group_store_type): a word it does not
 * know is EINVAL; DMA-FQ over DMA only turns the flush queue on; any other
 * change needs the group without a driver, and every function here is bound
 * to vfio-pci (it has a VFIO cdev), so it is EPERM.
 */
export function storeGroupType(g: IommuGroup, text: string): void {
  const want = text.trim()
  if (!['identity', 'DMA', 'DMA-FQ', 'auto'].includes(want)) throw new ErrnoError('EINVAL', `type: "${want}" is not one of identity, DMA, DMA-FQ, auto`)
  if (want === 'DMA-FQ' && g.type === 'DMA') {
    g.type = 'DMA-FQ'
    return
  }
  throw new ErrnoError('EPERM', `type: group ${g.id}'s devices are bound to a driver (vfio-pci); the default domain changes only without one`)
}

/** A debug file of a unit: a text dump, writable where `store` is given. */
export interface DebugFile {
  show(): string
  /** The same state as plain data, for the file's `.json` twin. */
  json?(): unknown
  store?(text: string): void
}

/** What every IOMMU instance has: a name, a base address, its ID registers and devices. */
export abstract class IommuUnit {
  readonly devices: PciDevice[] = []
  /** The host physical address space the unit reaches (the machine shares one among its units). */
  memory = new PhysicalMemory()

  constructor(readonly kind: IommuKind, readonly name: string, readonly base: bigint, private regs: RegisterFile) {}

  get registers(): RegisterFile {
    return this.regs
  }

  /** IOVA bits a domain on this unit translates; addresses above are outside its aperture. */
  abstract readonly iovaBits: number

  /** The unit can track dirty pages in a paging domain (the driver's rule, in the subclass). */
  abstract readonly dirtyTracking: boolean

  /** The driver supports nested (stage 1 over stage 2) domains on this unit. */
  abstract readonly supportsNesting: boolean

  /** Properties every unit answers: the base address and its derived capabilities (0/1). */
  protected commonProperty(name: string): bigint | undefined {
    if (name === 'address') return this.base
    if (name === 'nesting') return this.supportsNesting ? 1n : 0n
    if (name === 'dirty_tracking') return this.dirtyTracking ? 1n : 0n
    return undefined
  }

  /** The platform's reserved IOVA windows behind this IOMMU, in address order. */
  abstract reservedRegions(): readonly ReservedRegion[]

  /** Live counters and properties shown in the feature tree (by schema name). */
  abstract property(name: string): bigint | undefined

  /** Text dumps of the hardware state the host driver programmed (and fault injection), by file name. */
  abstract debugFiles(): Record<string, DebugFile>
}
