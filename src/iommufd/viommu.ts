import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { HwptNested, HwptPaging } from './hwpt'
import { IommufdObject } from './objects'
import { Vdevice } from './vdevice'

/** iommu_viommu_type. */
export const ViommuType = { DEFAULT: 0, ARM_SMMUV3: 1, TEGRA241_CMDQV: 2 } as const

/** A virtual IOMMU on one physical SMMU: its VMID and its vSID -> pSID map. */
export class Viommu extends IommufdObject {
  readonly type = 'viommu'
  /** vDEVICEs by virtual ID. */
  readonly vdevices = new Map<bigint, Vdevice>()
  readonly nested = new Set<HwptNested>()

  constructor(readonly unit: Smmuv3, readonly parent: HwptPaging, readonly vmid: number) {
    super()
  }

  /** The physical StreamID behind a virtual one, if a vDEVICE maps it. */
  physicalSid(vsid: bigint): number | undefined {
    return this.vdevices.get(vsid)?.device.pci.streamId
  }

  describe(): [string, string][] {
    return [
      ['type', 'viommu'],
      ['users', String(this.users)],
      ['viommu_type', 'ARM_SMMUV3'],
      ['iommu', this.unit.name],
      ['parent', String(this.parent.id)],
      ['vmid', String(this.vmid)],
      ['vsid_map', [...this.vdevices].map(([v, d]) => `0x${v.toString(16)}->0x${d.device.pci.streamId.toString(16)}`).join(' ') || '-'],
    ]
  }
}
