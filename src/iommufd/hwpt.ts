import { MockDevice, MockPageSizes, MockPagetable, mockPageSizes } from '../hw/mock/mock'
import { IommuKind, IommuUnit } from '../hw/unit'
import { GuestSte, describeSte, validateGuestSte } from '../hw/smmuv3/ste'
import { VtdS1 } from '../hw/vtd/s1'
import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'
import { hex, mustBeZero, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { driverFor } from './driver'
import { Ioas, MapFlag, ULONG_MAX, checkFirstDomain } from './ioas'
import { IommufdObject } from './objects'
import type { Device } from './device'
import { Viommu } from './viommu'
import { dirtyTrackingChanged, readAndClearDirty } from './host'
import type { MockNestedData } from './selftest'
import { clearDirty, readDirty } from './dirty'
import type { Fault } from './eventq'

/** IOMMU_HWPT_DATA_SELFTEST: the mock's nested data; its IOTLB has 4 slots. */
export const HWPT_DATA_SELFTEST = 0xdead
export const MOCK_IOTLB_NUM = 4

/** IOMMU_HWPT_ALLOC flags. */
export const HwptAllocFlag = { NEST_PARENT: 1 << 0, DIRTY_TRACKING: 1 << 1, FAULT_ID_VALID: 1 << 2, PASID: 1 << 3 } as const

/** iommu_hwpt_data_type. */
export const HwptDataType = { NONE: 0, VTD_S1: 1, ARM_SMMUV3: 2, AMD_GUEST: 3 } as const

/** A hardware ID a domain holds on one unit (VT-d domain ID, SMMU ASID or VMID), shared by its devices there. */
interface UnitTag {
  readonly id: number
  refs: number
}

/** HWPT_ALLOC flags by name: "NEST_PARENT|DIRTY_TRACKING" ("" for none). */
export function allocFlagNames(flags: number): string {
  return Object.entries(HwptAllocFlag)
    .filter(([, bit]) => flags & bit)
    .map(([name]) => name)
    .join('|')
}

/** What both HWPT kinds share: the devices attached and their per-unit hardware IDs. */
export abstract class Hwpt extends IommufdObject {
  readonly devices = new Set<Device>()
  readonly tags = new Map<IommuUnit, UnitTag>()
  /** The fault queue its devices' page requests go to (FAULT_ID_VALID), which it holds a reference on. */
  fault: Fault | undefined
  /** Allocated with IOMMU_HWPT_ALLOC_PASID: it may be attached to a PASID (the kernel's pasid_compat). */
  pasidCompat = false

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

  /**
   * `home`: the unit the driver built the domain for (HWPT_ALLOC's dev_id, an
   * auto domain's first device), as an SMMUv3 domain is finalised on one SMMU;
   * `mockPages`: a mock domain's page sizes (its page-table format).
   */
  constructor(readonly home: IommuUnit, readonly ioas: Ioas, readonly flags: number, readonly auto: boolean, readonly mockPages?: MockPageSizes) {
    super(home.kind)
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
    return [
      ['type', 'hwpt_paging'],
      ['users', String(this.users)],
      ['ioas', String(this.ioas.id)],
      ['driver', this.kind],
      ['auto_domain', this.auto ? '1' : '0'],
      ['flags', allocFlagNames(this.flags) || '0'],
      ['dirty_tracking', this.dirtyTrackingEnabled ? 'enabled' : 'disabled'],
      ...this.attachedLines(),
    ]
  }
}

export type NestedData = { kind: 'arm-smmu-v3'; ste: GuestSte } | { kind: 'intel-vtd'; s1: VtdS1 } | MockNestedData

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
    } else if (this.data.kind === 'mock') {
      lines.push(['iotlb', this.data.iotlb.map((v) => `0x${v.toString(16)}`).join(' ')])
    } else {
      const s1 = this.data.s1
      const names = ['SRE', 'EAFE', 'WPE'].filter((_, i) => s1.flags & (1n << BigInt(i)))
      lines.push(['s1.flags', names.join('|') || '0'], ['s1.pgtbl_addr', `0x${s1.pgtblAddr.toString(16)}`], ['s1.addr_width', String(s1.addrWidth)])
    }
    return [...lines, ...this.attachedLines()]
  }
}

// ---- handlers (IOMMU_HWPT_ALLOC, dirty tracking), as the kernel's hw_pagetable.c ----

/**
 * Driver data behind a user pointer (HWPT_ALLOC's data_uptr), copied only when
 * the driver asks, with the kernel's rules: a type mismatch or a length outside
 * [minimum, struct size] is EINVAL.
 */
export interface VendorData {
  readonly type: number
  readonly len: number
  armSte(): [bigint, bigint]
  vtdS1(): VtdS1
  /** The mock's iommu_hwpt_selftest (pagetable_type is 0 when data_len stops before it). */
  selftest(): { iotlb: number; pagetableType: number }
}

export interface HwptAllocArgs {
  flags: number
  devId: number
  ptId: number
  reserved: number
  data: VendorData
  faultId: number
}

export const DirtyTrackingFlag = { ENABLE: 1 } as const
export const DirtyBitmapFlag = { NO_CLEAR: 1 } as const

export function hwptAlloc(ctx: IommufdContext, a: HwptAllocArgs): number {
  mustBeZero(a.reserved, '__reserved')
  if ((a.data.type === HwptDataType.NONE) !== (a.data.len === 0)) {
    throw new ErrnoError('EINVAL', `data_type=${a.data.type} with data_len=${a.data.len}: data needs a type and a type needs data`)
  }
  const dev = ctx.device(a.devId)
  const pt = ctx.objects.find(a.ptId)
  if (!pt) throw new ErrnoError('EINVAL', `pt_id=${a.ptId}: no such object`)
  let hwpt: Hwpt
  if (pt instanceof Ioas) hwpt = planPaging(ctx, dev, pt, a)
  else if (pt instanceof HwptPaging) hwpt = planNestedOnParent(dev, pt, a)
  else if (pt instanceof Viommu) hwpt = planNestedOnViommu(dev, pt, a)
  else throw new ErrnoError('EINVAL', `pt_id=${a.ptId}: is a ${pt.type} object; expected an IOAS, a nest-parent HWPT or a vIOMMU`)
  // its reference on the fault queue is taken once it exists (commitHwpt)
  if (a.flags & HwptAllocFlag.FAULT_ID_VALID) hwpt.fault = ctx.objects.get<Fault>(a.faultId, 'fault_id', 'fault')
  hwpt.pasidCompat = (a.flags & HwptAllocFlag.PASID) !== 0
  return ctx.commitHwpt(hwpt)
}

function planPaging(ctx: IommufdContext, dev: Device, ioas: Ioas, a: HwptAllocArgs): HwptPaging {
  const all = HwptAllocFlag.NEST_PARENT | HwptAllocFlag.DIRTY_TRACKING | HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID
  unknownFlags(a.flags, all)
  const unit = dev.pci.unit
  if (a.flags & HwptAllocFlag.DIRTY_TRACKING && !driverFor(unit).dirtyCapable(dev.pci)) {
    throw new ErrnoError('EOPNOTSUPP', `flags=DIRTY_TRACKING: ${unit.kind === 'mock' ? dev.pci.bdf : unit.name} cannot track dirty pages`)
  }
  if (a.flags & HwptAllocFlag.FAULT_ID_VALID && a.flags & HwptAllocFlag.NEST_PARENT) throw new ErrnoError('EOPNOTSUPP', 'flags: FAULT_ID_VALID and NEST_PARENT exclude each other')
  const mockPages = unit.kind === 'mock' ? mockPagingData(dev, a.data) : undefined
  if (unit.kind !== 'mock' && a.data.type !== HwptDataType.NONE) throw new ErrnoError('EOPNOTSUPP', `data_type=${a.data.type}: a paging HWPT takes no driver data`)
  driverFor(unit).checkPaging(unit, a.flags)
  fallible('page table allocation')
  checkFirstDomain(ctx, ioas)
  // the new domain is filled from the IOAS (iopt_table_add_domain): a VT-d nest parent takes no read-only entry (ERRATA_772415_SPR17)
  const readOnly = a.flags & HwptAllocFlag.NEST_PARENT && unit.kind === 'intel-vtd' ? ioas.areas.find((m) => !(m.flags & MapFlag.WRITEABLE)) : undefined
  if (readOnly) throw new ErrnoError('EINVAL', `flags=NEST_PARENT: IOAS ${ioas.id} maps ${hex(readOnly.iova)} read-only, which a VT-d nest parent cannot hold (ERRATA_772415_SPR17)`)
  return new HwptPaging(unit, ioas, a.flags, false, mockPages)
}

/** The mock's paging data: none, or SELFTEST data naming the page-table format (the iotlb word is unused here). */
function mockPagingData(dev: Device, data: VendorData): MockPageSizes {
  const flags = (dev.pci as Partial<MockDevice>).flags ?? 0
  if (data.type === HwptDataType.NONE) return mockPageSizes(MockPagetable.DEFAULT, flags)!
  if (data.type !== HWPT_DATA_SELFTEST) throw new ErrnoError('EOPNOTSUPP', `data_type=${data.type}: the mock IOMMU takes SELFTEST (0xdead) or none`)
  const type = data.selftest().pagetableType
  const sizes = mockPageSizes(type, flags)
  if (!sizes) throw new ErrnoError('EOPNOTSUPP', `pagetable_type=${type}: expected DEFAULT (0), HUGE (1) or AMDV1 (2)`)
  return sizes
}

function planNestedOnParent(dev: Device, parent: HwptPaging, a: HwptAllocArgs): HwptNested {
  unknownFlags(a.flags, HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID)
  if (a.data.len === 0) throw new ErrnoError('EOPNOTSUPP', `data_len=0: a nested HWPT needs driver data (data_type and data)`)
  const unit = dev.pci.unit
  if (unit.kind === 'arm-smmu-v3') throw new ErrnoError('EOPNOTSUPP', `pt_id=${parent.id}: an SMMUv3 nested HWPT is allocated on a vIOMMU, not on its parent`)
  if (parent.auto || !parent.nestParent || parent.kind !== unit.kind) {
    throw new ErrnoError('EINVAL', `pt_id=${parent.id}: not a NEST_PARENT HWPT of ${unit.kind}${parent.auto ? ' (auto domains never are)' : ''}`)
  }
  if (unit.kind === 'mock') {
    if (a.data.type !== HWPT_DATA_SELFTEST) throw new ErrnoError('EOPNOTSUPP', `data_type=${a.data.type}: the mock IOMMU takes SELFTEST (0xdead)`)
    return new HwptNested(parent, undefined, { kind: 'mock', iotlb: new Array<number>(MOCK_IOTLB_NUM).fill(a.data.selftest().iotlb) })
  }
  if (!unit.supportsNesting) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: nesting unsupported`)
  if (a.data.type !== HwptDataType.VTD_S1) throw new ErrnoError('EOPNOTSUPP', `data_type=${a.data.type}: ${unit.name} takes VTD_S1 (1)`)
  return new HwptNested(parent, undefined, { kind: 'intel-vtd', s1: a.data.vtdS1() })
}

function planNestedOnViommu(dev: Device, viommu: Viommu, a: HwptAllocArgs): HwptNested {
  if (dev.pci.unit !== viommu.unit) throw new ErrnoError('EINVAL', `dev_id=${dev.id}: behind ${dev.pci.unit.name}, vIOMMU ${viommu.id} is on ${viommu.unit.name}`)
  unknownFlags(a.flags, HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID)
  if (a.data.len === 0) throw new ErrnoError('EOPNOTSUPP', `data_len=0: a nested HWPT needs driver data (data_type and data)`)
  if (viommu.mock) {
    // the mock vIOMMU's alloc_domain_nested: SELFTEST data, its IOTLB words, PASID allowed
    if (a.data.type !== HWPT_DATA_SELFTEST) throw new ErrnoError('EOPNOTSUPP', `data_type=${a.data.type}: the mock IOMMU takes SELFTEST (0xdead)`)
    return new HwptNested(viommu.parent, viommu, { kind: 'mock', iotlb: new Array<number>(MOCK_IOTLB_NUM).fill(a.data.selftest().iotlb) })
  }
  if (a.flags & HwptAllocFlag.PASID) throw new ErrnoError('EOPNOTSUPP', 'flags=PASID: an SMMUv3 nested HWPT takes no flags')
  const ste = validateGuestSte(a.data.armSte())
  return new HwptNested(viommu.parent, viommu, { kind: 'arm-smmu-v3', ste })
}

/** IOMMU_HWPT_SET_DIRTY_TRACKING; the kernel does not look at __reserved. */
export function setDirtyTracking(ctx: IommufdContext, flags: number, hwptId: number): void {
  unknownFlags(flags, DirtyTrackingFlag.ENABLE)
  const hwpt = ctx.paging(hwptId)
  if (!(hwpt.flags & HwptAllocFlag.DIRTY_TRACKING)) throw new ErrnoError('EOPNOTSUPP', `hwpt_id=${hwptId}: allocated without DIRTY_TRACKING`)
  const enable = (flags & DirtyTrackingFlag.ENABLE) !== 0
  // enabling first reads and clears every dirty bit, so tracking starts clean (iopt_clear_dirty_data)
  if (enable) readAndClearDirty(hwpt, 0n, ULONG_MAX, false, () => {})
  if (enable) clearDirty(hwpt)
  const changed = hwpt.dirtyTrackingEnabled !== enable
  hwpt.dirtyTrackingEnabled = enable
  if (changed) dirtyTrackingChanged(hwpt)
}

/**
 * The dirty bitmap of [iova, iova+length) at page_size granularity, with the
 * kernel's checks: bit (addr - iova) / page_size for every page a dirty leaf
 * covers (SMMUv3 stage 1, VT-d second stage), in the mappings that follow
 * one another from iova (the first hole ends the read, as in the kernel,
 * where the error it returns is dropped). Without NO_CLEAR the leaves are
 * cleaned and the range invalidated.
 */
export function dirtyBitmap(ctx: IommufdContext, hwptId: number, flags: number, reserved: number, iova: bigint, length: bigint, pageSize: bigint): Buffer {
  unknownFlags(flags, DirtyBitmapFlag.NO_CLEAR)
  mustBeZero(reserved, '__reserved')
  const hwpt = ctx.paging(hwptId)
  if (iova + length - 1n > ULONG_MAX || iova + length - 1n < iova) throw new ErrnoError('EOVERFLOW', 'iova + length overflows')
  const align = hwpt.ioas.alignment
  // iommufd_check_iova_range masks with page_size - 1, which is alignment only for a power of two
  const mask = pageSize - 1n
  if (pageSize === 0n || iova & mask || (iova + length) & mask || iova % align || (iova + length) % align) {
    throw new ErrnoError('EINVAL', `iova/length/page_size: must be aligned to page_size and the IOVA alignment ${hex(align)}`)
  }
  if (!(hwpt.flags & HwptAllocFlag.DIRTY_TRACKING)) throw new ErrnoError('EOPNOTSUPP', `hwpt_id=${hwptId}: no dirty tracking`)
  // each bit covers the lowest set bit of page_size (iova_bitmap_alloc: pgshift = __ffs(page_size))
  const bit = pageSize & -pageSize
  const bitmap = Buffer.alloc(Number(((length - 1n) / bit / 64n + 1n) * 8n))
  const mark = (from: bigint, to: bigint): void => {
    for (let i = from / bit; i * bit < to; i++) bitmap[Number(i >> 3n)] |= 1 << Number(i & 7n)
  }
  const keep = (flags & DirtyBitmapFlag.NO_CLEAR) !== 0
  // the mock's dirty bits are the ones IOMMU_TEST_CMD DIRTY marked
  if (hwpt.kind === 'mock') readDirty(hwpt, iova, length, keep, mark)
  else readAndClearDirty(hwpt, iova, length, keep, mark)
  return bitmap
}
