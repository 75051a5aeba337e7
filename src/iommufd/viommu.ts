import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { ErrnoError } from '../util/errno'
import { hex, unknownFlags } from './checks'
import type { IommufdContext } from './context'
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

// ---- handlers (IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC), as the kernel's viommu.c ----

export function viommuAlloc(ctx: IommufdContext, flags: number, type: number, devId: number, hwptId: number): number {
  unknownFlags(flags, 0)
  if (type === ViommuType.DEFAULT) throw new ErrnoError('EOPNOTSUPP', 'type=DEFAULT (0): a vIOMMU type is required')
  const dev = ctx.device(devId)
  const unit = dev.pci.unit
  if (!(unit instanceof Smmuv3) || type !== ViommuType.ARM_SMMUV3) {
    throw new ErrnoError('EOPNOTSUPP', `type=${type}: ${unit.name} (${unit.kind}) has no such vIOMMU type${unit instanceof Smmuv3 ? ' (ARM_SMMUV3 is 1)' : ''}`)
  }
  if (!unit.supportsViommu) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: a vIOMMU needs nesting (IDR0.S1P, IDR0.S2P) and S2FWB (IDR3.FWB)`)
  const parent = ctx.paging(hwptId)
  if (!parent.nestParent) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: not allocated with NEST_PARENT`)
  if (parent.kind !== unit.kind) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: a ${parent.kind} domain cannot be the stage 2 of ${unit.name}`)
  const vmid = unit.vmids.alloc()
  if (vmid === undefined) throw new ErrnoError('ENOSPC', `${unit.name}: no free VMID`)
  let v: Viommu
  try {
    v = ctx.objects.insert(new Viommu(unit, parent, vmid))
  } catch (e) {
    // the VMID goes back with the failed allocation (the fail-nth sweep found it kept)
    unit.vmids.free(vmid)
    throw e
  }
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
