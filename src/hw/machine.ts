import { PhysicalMemory } from '../memory/physical'
import { MockIommu } from './mock/mock'
import { IommuGroup, IommuUnit, PciDevice } from './unit'

/**
 * The whole modelled platform: IOMMU instances, their devices and IOMMU
 * groups, plus the selftest's mock IOMMU, which is always there (as with
 * CONFIG_IOMMUFD_TEST) but has no PCI devices and no feature files.
 */
export class Machine {
  private readonly unitsByName: Map<string, IommuUnit>
  private readonly devicesByBdf: Map<string, PciDevice>
  /** Host physical memory: every unit's tables and the windows onto mapped memory. */
  readonly memory = new PhysicalMemory()

  constructor(readonly units: readonly IommuUnit[], readonly groups: readonly IommuGroup[], readonly mock: MockIommu = new MockIommu()) {
    for (const u of units) u.memory = this.memory
    this.unitsByName = new Map(units.map((u) => [u.name, u]))
    this.devicesByBdf = new Map(units.flatMap((u) => u.devices.map((d) => [d.bdf, d] as const)))
  }

  get devices(): PciDevice[] {
    return [...this.devicesByBdf.values()]
  }

  unit(name: string): IommuUnit | undefined {
    return this.unitsByName.get(name)
  }

  device(bdf: string): PciDevice | undefined {
    return this.devicesByBdf.get(bdf)
  }
}
