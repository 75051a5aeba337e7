import { IommufdObject } from './objects'
import type { Device } from './device'
import type { Viommu } from './viommu'

/** A device's virtual ID in a vIOMMU (the vSID of an SMMUv3 guest). */
export class Vdevice extends IommufdObject {
  readonly type = 'vdevice'

  constructor(readonly viommu: Viommu, readonly device: Device, readonly virtId: bigint) {
    super()
  }

  describe(): [string, string][] {
    return [
      ['type', 'vdevice'],
      ['users', String(this.users)],
      ['viommu', String(this.viommu.id)],
      ['device', `${this.device.id} (${this.device.pci.bdf})`],
      ['virt_id', `0x${this.virtId.toString(16)}`],
      ['phys_id', `0x${this.device.pci.streamId.toString(16)}`],
    ]
  }
}
