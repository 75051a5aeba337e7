import { PciDevice } from '../hw/unit'
import { Hwpt } from './hwpt'
import { IommufdObject } from './objects'
import type { Vdevice } from './vdevice'

/** A PCI device bound to a context (VFIO_DEVICE_BIND_IOMMUFD). */
export class Device extends IommufdObject {
  readonly type = 'device'
  hwpt: Hwpt | undefined
  vdevice: Vdevice | undefined

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
    ]
  }
}
