import { IommuKind, IommuUnit } from '../hw/unit'
import { GuestSte, describeSte } from '../hw/smmuv3/ste'
import { VtdS1 } from '../hw/vtd/s1'
import { Ioas } from './ioas'
import { IommufdObject } from './objects'
import type { Device } from './device'
import type { Viommu } from './viommu'

/** IOMMU_HWPT_ALLOC flags. */
export const HwptAllocFlag = { NEST_PARENT: 1 << 0, DIRTY_TRACKING: 1 << 1, FAULT_ID_VALID: 1 << 2, PASID: 1 << 3 } as const

/** iommu_hwpt_data_type. */
export const HwptDataType = { NONE: 0, VTD_S1: 1, ARM_SMMUV3: 2, AMD_GUEST: 3 } as const

/** A hardware ID a domain holds on one unit (VT-d domain ID, SMMU ASID or VMID), shared by its devices there. */
interface UnitTag {
  readonly id: number
  refs: number
}

/** What both HWPT kinds share: the devices attached and their per-unit hardware IDs. */
export abstract class Hwpt extends IommufdObject {
  readonly devices = new Set<Device>()
  readonly tags = new Map<IommuUnit, UnitTag>()

  constructor(readonly kind: IommuKind) {
    super()
  }

  /** The paging domain whose IOAS this HWPT translates through. */
  abstract get paging(): HwptPaging

  protected attachedLines(): [string, string][] {
    return [
      ['devices', [...this.devices].map((d) => `${d.id} (${d.pci.bdf})`).join(' ') || '-'],
      ...[...this.tags].map(([u, t]): [string, string] => [`hw_id.${u.name}`, String(t.id)]),
    ]
  }
}

export class HwptPaging extends Hwpt {
  readonly type = 'hwpt_paging'
  dirtyTrackingEnabled = false
  /** Nested HWPTs and vIOMMUs built on this one. */
  readonly children = new Set<HwptNested>()
  readonly viommus = new Set<Viommu>()

  constructor(kind: IommuKind, readonly ioas: Ioas, readonly flags: number, readonly auto: boolean) {
    super(kind)
  }

  get paging(): HwptPaging {
    return this
  }

  get nestParent(): boolean {
    return (this.flags & HwptAllocFlag.NEST_PARENT) !== 0
  }

  /** Units whose devices translate through this domain, directly or under a nested HWPT. */
  units(): Set<IommuUnit> {
    const out = new Set<IommuUnit>()
    for (const d of this.devices) out.add(d.pci.unit)
    for (const c of this.children) for (const d of c.devices) out.add(d.pci.unit)
    // SMMUv3 nested HWPTs hang off the vIOMMUs built on this domain; their devices translate through it too
    for (const v of this.viommus) for (const c of v.nested) for (const d of c.devices) out.add(d.pci.unit)
    return out
  }

  describe(): [string, string][] {
    const flags = Object.entries(HwptAllocFlag)
      .filter(([, v]) => this.flags & v)
      .map(([k]) => k)
    return [
      ['type', 'hwpt_paging'],
      ['users', String(this.users)],
      ['ioas', String(this.ioas.id)],
      ['driver', this.kind],
      ['auto_domain', this.auto ? '1' : '0'],
      ['flags', flags.join('|') || '0'],
      ['dirty_tracking', this.dirtyTrackingEnabled ? 'enabled' : 'disabled'],
      ...this.attachedLines(),
    ]
  }
}

export type NestedData = { kind: 'arm-smmu-v3'; ste: GuestSte } | { kind: 'intel-vtd'; s1: VtdS1 }

export class HwptNested extends Hwpt {
  readonly type = 'hwpt_nested'

  constructor(
    readonly parentHwpt: HwptPaging,
    readonly viommu: Viommu | undefined,
    readonly data: NestedData,
  ) {
    super(data.kind)
  }

  get paging(): HwptPaging {
    return this.parentHwpt
  }

  describe(): [string, string][] {
    const lines: [string, string][] = [
      ['type', 'hwpt_nested'],
      ['users', String(this.users)],
      this.viommu ? ['viommu', String(this.viommu.id)] : ['parent', String(this.parentHwpt.id)],
      ['driver', this.kind],
    ]
    if (this.data.kind === 'arm-smmu-v3') {
      lines.push(['ste', this.data.ste.words.map((w) => `0x${w.toString(16).padStart(16, '0')}`).join(' ')], ['ste.config', this.data.ste.config], ['ats', this.data.ste.ats ? '1' : '0'])
      lines.push(...describeSte(this.data.ste.words))
    } else {
      const s1 = this.data.s1
      const names = ['SRE', 'EAFE', 'WPE'].filter((_, i) => s1.flags & (1n << BigInt(i)))
      lines.push(['s1.flags', names.join('|') || '0'], ['s1.pgtbl_addr', `0x${s1.pgtblAddr.toString(16)}`], ['s1.addr_width', String(s1.addrWidth)])
    }
    return [...lines, ...this.attachedLines()]
  }
}
