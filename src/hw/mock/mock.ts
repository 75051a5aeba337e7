import { IdPool } from '../id-pool'
import { RegisterFile } from '../registers'
import { DebugFile, IommuGroup, IommuUnit, PciDevice, ReservedRegion } from '../unit'

/**
 * The kernel selftest's mock IOMMU (drivers/iommu/iommufd/selftest.c): a
 * third hardware kind with no registers, whose devices are made on demand by
 * IOMMU_TEST_CMD. Its constants are the selftest's (iommufd_test.h).
 */
export const MOCK_APERTURE_START = 1n << 24n
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n
/** The mock domain's page size (MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2). */
export const MOCK_PAGE_SIZE = 2048n
export const MOCK_HUGE_PAGE_SIZE = 512n * MOCK_PAGE_SIZE
export const MOCK_PASID_WIDTH = 20
/** Device cache words start at this value (DEV_CHECK_CACHE). */
export const MOCK_DEV_CACHE_DEFAULT = 0xbaddad
export const MOCK_DEV_CACHE_NUM = 4
/** The PASID whose second non-blocking attach fails with ENOMEM (the replace-rollback test). */
export const MOCK_PASID_RESERVED = 1024

/** MOCK_FLAGS_DEVICE_*: NO_DIRTY, HUGE_IOVA (older kernels), PASID. */
export const MockDevFlag = { NO_DIRTY: 1 << 0, HUGE_IOVA: 1 << 1, PASID: 1 << 2 } as const
export const MOCK_DEV_FLAGS = MockDevFlag.NO_DIRTY | MockDevFlag.HUGE_IOVA | MockDevFlag.PASID

/** MOCK_IOMMUPT_*: the page-table formats a mock paging HWPT asks for (iommu_hwpt_selftest.pagetable_type). */
export const MockPagetable = { DEFAULT: 0, HUGE: 1, AMDV1: 2 } as const

/** The page sizes a mock paging domain maps with: its smallest, and its huge one when it has one. */
export interface MockPageSizes {
  readonly smallest: bigint
  readonly huge?: bigint
}

/**
 * A mock domain's page sizes. DEFAULT maps 2 KiB pages, and also 1 MiB ones for
 * a HUGE_IOVA device (older kernels); HUGE maps 1 MiB pages and PAGE_SIZE ones
 * (its pgsize_bitmap must hold PAGE_SIZE); AMDV1 is the real format, 4 KiB and
 * up (modelled at 4 KiB). Undefined: no such format.
 */
export function mockPageSizes(pagetableType: number, devFlags: number): MockPageSizes | undefined {
  switch (pagetableType) {
    case MockPagetable.DEFAULT:
      return devFlags & MockDevFlag.HUGE_IOVA ? { smallest: MOCK_PAGE_SIZE, huge: MOCK_HUGE_PAGE_SIZE } : { smallest: MOCK_PAGE_SIZE }
    case MockPagetable.HUGE:
      return { smallest: 4096n, huge: MOCK_HUGE_PAGE_SIZE }
    case MockPagetable.AMDV1:
      return { smallest: 4096n }
  }
  return undefined
}

/** A mock device (iommufd_mockN) on the mock bus. */
export interface MockDevice extends PciDevice {
  readonly mockId: number
  readonly flags: number
  /** The 4 device cache words DEV_CHECK_CACHE reads and vIOMMU invalidation clears. */
  readonly cache: number[]
  /** PASID 1024's injected failure is armed (see MOCK_PASID_RESERVED). */
  pasidFaultArmed: boolean
}

export function isMockDevice(d: PciDevice): d is MockDevice {
  return (d as Partial<MockDevice>).mockId !== undefined
}

const NO_REGISTERS = new RegisterFile({ model: 'mock', file: '(none)', registers: new Map() }, new Map())

/** The mock IOMMU instance: its aperture and the devices currently on its bus. */
export class MockIommu extends IommuUnit {
  readonly iovaBits = 31
  readonly dirtyTracking = true
  readonly supportsNesting = true
  private readonly ids = new IdPool(0, 1 << 16)

  constructor(name = 'iommufd_selftest_iommu', base = 0n) {
    super('mock', name, base, NO_REGISTERS)
  }

  /** Below the aperture is reserved; above it, iovaBits says so. */
  reservedRegions(): readonly ReservedRegion[] {
    return [{ start: 0n, last: MOCK_APERTURE_START - 1n, type: 'reserved' }]
  }

  /** A new device with `flags` (MockDevFlag); undefined when the ID space is full. */
  createDevice(flags: number): MockDevice | undefined {
    const id = this.ids.alloc()
    if (id === undefined) return undefined
    const group: IommuGroup = { id: -1 - id, devices: [], type: 'DMA' }
    const dev: MockDevice = {
      bdf: `iommufd_mock${id}`,
      vendor: 0,
      device: 0,
      unit: this,
      streamId: id,
      group,
      vfioIndex: -1,
      pasidBits: flags & MockDevFlag.PASID ? MOCK_PASID_WIDTH : 0,
      ats: false,
      mockId: id,
      flags,
      cache: new Array<number>(MOCK_DEV_CACHE_NUM).fill(MOCK_DEV_CACHE_DEFAULT),
      pasidFaultArmed: false,
    }
    group.devices.push(dev)
    this.devices.push(dev)
    return dev
  }

  destroyDevice(dev: MockDevice): void {
    const i = this.devices.indexOf(dev)
    if (i >= 0) this.devices.splice(i, 1)
    this.ids.free(dev.mockId)
  }

  property(name: string): bigint | undefined {
    return this.commonProperty(name)
  }

  debugFiles(): Record<string, DebugFile> {
    return {
      devices: { show: () => this.devices.map((d) => `${d.bdf} flags=0x${(d as MockDevice).flags.toString(16)}\n`).join('') },
    }
  }
}
