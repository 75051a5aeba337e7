import { MockIommu } from '../hw/mock/mock'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { ErrnoError } from '../util/errno'
import { hex, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import type { HwQueue } from './hw-queue'
import { HwptNested, HwptPaging } from './hwpt'
import { PAGE_SIZE } from './ioas'
import type { MmapRegion } from './mmap'
import { IommufdObject } from './objects'
import { Vdevice } from './vdevice'

/** iommu_viommu_type (SELFTEST is the mock's, IOMMU_VIOMMU_TYPE_SELFTEST). */
export const ViommuType = { DEFAULT: 0, ARM_SMMUV3: 1, TEGRA241_CMDQV: 2, SELFTEST: 0xdeadbeef } as const

/** The mock driver's vIOMMU state: its 2-page mmap region (when given data) and its HW queues by index. */
export interface MockViommuState {
  region: MmapRegion | undefined
  readonly hwQueues: (HwQueue | undefined)[]
}

/**
 * A virtual IOMMU on one physical IOMMU: an SMMUv3 one has its VMID and its
 * vSID -> pSID map; the selftest mock's has `mock` (no VMID).
 */
export class Viommu extends IommufdObject {
  readonly type = 'viommu'
  /** vDEVICEs by virtual ID. */
  readonly vdevices = new Map<bigint, Vdevice>()
  readonly nested = new Set<HwptNested>()

  constructor(
    readonly unit: Smmuv3 | MockIommu,
    readonly parent: HwptPaging,
    readonly mock?: MockViommuState,
  ) {
    super()
  }

  /** Its stage 2's VMID, as arm_vsmmu_init takes it: the nest parent holds it from its allocation (0 on the mock). */
  get vmid(): number {
    return this.parent.tags.get(this.unit)?.id ?? 0
  }

  /** The SMMU behind an SMMUv3 vIOMMU (callers reach here only for one). */
  get smmu(): Smmuv3 {
    if (!(this.unit instanceof Smmuv3)) throw new Error(`vIOMMU ${this.id} is on ${this.unit.name}, not an SMMUv3`)
    return this.unit
  }

  /** The physical StreamID behind a virtual one, if a vDEVICE maps it. */
  physicalSid(vsid: bigint): number | undefined {
    return this.vdevices.get(vsid)?.device.pci.streamId
  }

  describe(): [string, string][] {
    if (this.mock) {
      return [
        ['type', 'viommu'],
        ['users', String(this.users)],
        ['viommu_type', 'SELFTEST'],
        ['iommu', this.unit.name],
        ['parent', String(this.parent.id)],
        ['mmap', this.mock.region ? `offset=${hex(this.mock.region.offset)} length=${hex(this.mock.region.length)} mapped=${this.mock.region.maps}` : '-'],
        ['hw_queues', this.mock.hwQueues.map((q, i) => (q ? `${i}:${q.id}` : '')).filter(Boolean).join(' ') || '-'],
        ['vdevices', [...this.vdevices].map(([v, d]) => `${hex(v)}->${d.device.id}`).join(' ') || '-'],
      ]
    }
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

// ---- handlers (IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC), as the kernel's viommu.c ----

/** The driver data of VIOMMU_ALLOC (data_type is the vIOMMU type), read only when a driver asks. */
export interface ViommuData {
  readonly len: number
  /** The mock's iommu_viommu_selftest: its in_data (the core's copy rules: EINVAL, E2BIG, EFAULT). */
  selftestIn(): number
  /** Writes back out_data and the mmap offset and length (as much of them as data_len holds). */
  selftestOut(out: { inData: number; offset: bigint; length: bigint }): void
}

const NO_DATA: ViommuData = {
  len: 0,
  selftestIn: () => 0,
  selftestOut: () => {},
}

/** The mock vIOMMU's region: 2 zeroed pages, in_data in the first word. */
export const MOCK_VIOMMU_MMAP_PAGES = 2n

export function viommuAlloc(ctx: IommufdContext, flags: number, type: number, devId: number, hwptId: number, data: ViommuData = NO_DATA): number {
  unknownFlags(flags, 0)
  if (type === ViommuType.DEFAULT) throw new ErrnoError('EOPNOTSUPP', 'type=DEFAULT (0): a vIOMMU type is required')
  const dev = ctx.device(devId)
  const unit = dev.pci.unit
  if (unit instanceof MockIommu) {
    if (type !== ViommuType.SELFTEST) throw new ErrnoError('EOPNOTSUPP', `type=${hex(type)}: the mock IOMMU has only SELFTEST (0xdeadbeef)`)
    const parent = mockParent(ctx, hwptId)
    return mockViommuAlloc(ctx, unit, parent, data)
  }
  if (!(unit instanceof Smmuv3) || type !== ViommuType.ARM_SMMUV3) {
    throw new ErrnoError('EOPNOTSUPP', `type=${type}: ${unit.name} (${unit.kind}) has no such vIOMMU type${unit instanceof Smmuv3 ? ' (ARM_SMMUV3 is 1)' : ''}`)
  }
  if (!unit.supportsViommu) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: a vIOMMU needs nesting (IDR0.S1P, IDR0.S2P) and S2FWB (IDR3.FWB)`)
  const parent = ctx.paging(hwptId)
  if (!parent.nestParent) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: not allocated with NEST_PARENT`)
  // arm_vsmmu_init: the S2 must be the one this SMMU finalised (s2_parent->smmu)
  if (parent.home !== unit) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: its stage 2 was built for ${parent.home.name} (${parent.kind}), the vIOMMU is on ${unit.name}`)
  const v = ctx.objects.insert(new Viommu(unit, parent))
  parent.viommus.add(v)
  parent.users++
  return v.id
}

function mockParent(ctx: IommufdContext, hwptId: number): HwptPaging {
  const parent = ctx.paging(hwptId)
  if (!parent.nestParent) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: not allocated with NEST_PARENT`)
  if (parent.kind !== 'mock') throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: a ${parent.kind} domain cannot be the parent of a mock vIOMMU`)
  return parent
}

/**
 * The mock driver's viommu_init: with data, 2 zeroed pages become an mmap
 * region of the file, in_data goes in their first word and back as out_data,
 * with the region's offset and length.
 */
function mockViommuAlloc(ctx: IommufdContext, unit: MockIommu, parent: HwptPaging, data: ViommuData): number {
  const inData = data.len ? data.selftestIn() : undefined
  const id = ctx.objects.reserve()
  const v = new Viommu(unit, parent, { region: undefined, hwQueues: [] })
  try {
    if (inData !== undefined) {
      const page = Buffer.alloc(Number(MOCK_VIOMMU_MMAP_PAGES * PAGE_SIZE))
      page.writeUInt32LE(inData, 0)
      v.mock!.region = ctx.mmaps.add(v, page)
      data.selftestOut({ inData, offset: v.mock!.region.offset, length: v.mock!.region.length })
    }
  } catch (e) {
    ctx.mmaps.removeOwner(v)
    ctx.objects.release(id)
    throw e
  }
  ctx.objects.fill(id, v)
  parent.viommus.add(v)
  parent.users++
  return v.id
}

export function vdeviceAlloc(ctx: IommufdContext, viommuId: number, devId: number, virtId: bigint): number {
  const viommu = ctx.objects.get<Viommu>(viommuId, 'viommu_id', 'viommu')
  const dev = ctx.device(devId)
  if (dev.pci.unit !== viommu.unit) throw new ErrnoError('EINVAL', `dev_id=${devId}: behind ${dev.pci.unit.name}, vIOMMU ${viommuId} is on ${viommu.unit.name}`)
  if (dev.vdevice) throw new ErrnoError('EEXIST', `dev_id=${devId}: already has vDEVICE ${dev.vdevice.id}`)
  const taken = viommu.vdevices.get(virtId)
  if (taken) throw new ErrnoError('EEXIST', `virt_id=${hex(virtId)}: already used by vDEVICE ${taken.id} in vIOMMU ${viommuId}`)
  const vd = ctx.objects.insert(new Vdevice(viommu, dev, virtId))
  viommu.vdevices.set(virtId, vd)
  viommu.users++
  dev.vdevice = vd
  return vd.id
}
