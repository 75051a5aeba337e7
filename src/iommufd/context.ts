import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { validateGuestSte } from '../hw/smmuv3/ste'
import { VtdS1 } from '../hw/vtd/s1'
import { PciDevice } from '../hw/unit'
import { ErrnoError } from '../util/errno'
import { Device } from './device'
import { HwInfo, HwInfoType, driverFor } from './driver'
import { Hwpt, HwptAllocFlag, HwptDataType, HwptNested, HwptPaging } from './hwpt'
import { Area, Ioas, IovaRange, MAP_FLAGS, MapFlag, ULONG_MAX } from './ioas'
import { Command } from '../hw/smmuv3/commands'
import { RingIndex } from '../hw/ring'
import { EntryArray, InvalidateDataType, PartialError, VtdInvEntry, armInvalidate, consumeGuestQueue, vtdInvalidate, vtdInvalidateOne } from './invalidate'
import { IommufdObject, ObjectTable } from './objects'
import { Vcmdq } from './vcmdq'
import { Vdevice } from './vdevice'
import { Viommu, ViommuType } from './viommu'
import type { World } from './world'

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
}

export const IommuOption = { RLIMIT_MODE: 0, HUGE_PAGES: 1 } as const
export const OptionOp = { SET: 0, GET: 1 } as const
export const VfioIoasOp = { GET: 0, SET: 1, CLEAR: 2 } as const
export const HwInfoFlag = { INPUT_TYPE: 1 } as const
export const DirtyTrackingFlag = { ENABLE: 1 } as const
export const DirtyBitmapFlag = { NO_CLEAR: 1 } as const

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`
}

function mustBeZero(value: bigint | number, field: string): void {
  if (BigInt(value) !== 0n) throw new ErrnoError('EOPNOTSUPP', `${field}=${hex(value)}: must be 0`)
}

function unknownFlags(flags: number, known: number, field = 'flags'): void {
  if (flags & ~known) throw new ErrnoError('EOPNOTSUPP', `${field}=${hex(flags)}: unknown bits ${hex(flags & ~known)}`)
}

export interface MapArgs {
  flags: number
  ioasId: number
  reserved: number
  userVa: bigint
  length: bigint
  iova: bigint
}

export interface CopyArgs {
  flags: number
  dstIoasId: number
  srcIoasId: number
  length: bigint
  dstIova: bigint
  srcIova: bigint
}

/** The ring invalidation form: a queue of `entryNum` = 2^indexBits entries and its indexes. */
export interface RingArgs {
  hwptId: number
  reserved: number
  dataType: number
  indexBits: number
  entryNum: number
  entryLen: number
  prod: number
  cons: number
  /** Reads entry `index` with the vendor's copy rules. */
  armEntry(index: number): Command
  vtdEntry(index: number): VtdInvEntry
}

export interface RingOutcome {
  /** CONS to write back: PROD on success, else the failing entry (SMMUv3: ERR in bits 30:24). */
  readonly cons: number
  readonly error?: ErrnoError
}

/** CONS.ERR bits a caller may hand back unchanged after an error; ignored on input. */
const CONS_ERR_BITS = 0x7f000000

export interface HwptAllocArgs {
  flags: number
  devId: number
  ptId: number
  reserved: number
  data: VendorData
  faultId: number
}

/** One iommufd file: an object table and the operations of the uAPI on it. */
export class IommufdContext {
  readonly objects = new ObjectTable()
  /** The devices bound here, by PCI function (each is also in `objects`). */
  private readonly bound = new Map<PciDevice, Device>()
  vfioIoas: Ioas | undefined
  rlimitMode = 0n

  constructor(readonly id: number, readonly world: World) {}

  private ioas(id: number, field = 'ioas_id'): Ioas {
    return this.objects.get<Ioas>(id, field, 'ioas')
  }

  private device(id: number, field = 'dev_id'): Device {
    return this.objects.get<Device>(id, field, 'device')
  }

  // ---- IOAS ----

  ioasAlloc(flags: number): number {
    unknownFlags(flags, 0)
    return this.objects.insert(new Ioas()).id
  }

  ioasAllowIovas(ioasId: number, reserved: number, ranges: () => IovaRange[]): void {
    mustBeZero(reserved, '__reserved')
    const ioas = this.ioas(ioasId)
    ioas.setAllowed(ranges())
  }

  ioasIovaRanges(ioasId: number, reserved: number): { ranges: IovaRange[]; alignment: bigint } {
    mustBeZero(reserved, '__reserved')
    const ioas = this.ioas(ioasId)
    return { ranges: ioas.ranges(), alignment: ioas.alignment }
  }

  private checkMapArgs(flags: number, addrs: [string, bigint][]): void {
    unknownFlags(flags, MAP_FLAGS)
    for (const [name, v] of addrs) if (v >= ULONG_MAX) throw new ErrnoError('EOVERFLOW', `${name}=${hex(v)}: too large`)
    if (!(flags & (MapFlag.READABLE | MapFlag.WRITEABLE))) throw new ErrnoError('EINVAL', `flags=${hex(flags)}: needs READABLE or WRITEABLE`)
  }

  /** VT-d erratum: read-only mappings are refused in an IOAS under a VT-d nest parent. */
  private checkReadOnly(ioas: Ioas, flags: number): void {
    if (flags & MapFlag.WRITEABLE) return
    const parent = [...ioas.hwpts].find((h) => h.nestParent && h.kind === 'intel-vtd')
    if (parent) throw new ErrnoError('EINVAL', `flags: read-only mappings are refused under VT-d nest parent HWPT ${parent.id} (ERRATA_772415_SPR17)`)
  }

  ioasMap(a: MapArgs): bigint {
    unknownFlags(a.flags, MAP_FLAGS)
    mustBeZero(a.reserved, '__reserved')
    this.checkMapArgs(a.flags, [['iova', a.iova], ['length', a.length]])
    const ioas = this.ioas(a.ioasId)
    if (a.length !== 0n && a.userVa + a.length - 1n > ULONG_MAX) throw new ErrnoError('EOVERFLOW', 'user_va + length overflows')
    const area = ioas.planMap(a)
    this.checkReadOnly(ioas, a.flags)
    // pinning the user pages is the kernel's last step (§3.6): EFAULT comes after every other check
    if (a.userVa === 0n) throw new ErrnoError('EFAULT', 'user_va=0: cannot pin pages at address 0')
    ioas.insert(area)
    return area.iova
  }

  ioasUnmap(ioasId: number, iova: bigint, length: bigint): bigint {
    const ioas = this.ioas(ioasId)
    if (iova === 0n && length === ULONG_MAX) return ioas.removeAreas([...ioas.areas])
    if (iova >= ULONG_MAX || length >= ULONG_MAX) throw new ErrnoError('EOVERFLOW', `${iova >= ULONG_MAX ? 'iova' : 'length'} too large`)
    if (length === 0n) throw new ErrnoError('EINVAL', 'length=0')
    const last = iova + length - 1n
    if (last > ULONG_MAX) throw new ErrnoError('EOVERFLOW', 'iova + length overflows')
    return ioas.removeAreas(ioas.areasIn(iova, last))
  }

  ioasCopy(a: CopyArgs): bigint {
    this.checkMapArgs(a.flags, [
      ['dst_iova', a.dstIova],
      ['src_iova', a.srcIova],
      ['length', a.length],
    ])
    const src = this.ioas(a.srcIoasId, 'src_ioas_id')
    const dst = this.ioas(a.dstIoasId, 'dst_ioas_id')
    if (a.length === 0n) throw new ErrnoError('EINVAL', 'length=0')
    const areas = src.areasIn(a.srcIova, a.srcIova + a.length - 1n)
    let expect = a.srcIova
    for (const s of areas) {
      if (s.iova !== expect) throw new ErrnoError('ENOENT', `src_iova: hole at ${hex(expect)} in the source range`)
      expect = s.iova + s.length
    }
    if (expect !== a.srcIova + a.length) throw new ErrnoError('ENOENT', `src_iova: the source range ends inside a hole at ${hex(expect)}`)
    const area = dst.planMap({ flags: a.flags, length: a.length, iova: a.dstIova, userVa: areas[0].userVa }, 'dst_iova')
    this.checkReadOnly(dst, a.flags)
    dst.insert(area)
    return area.iova
  }

  ioasChangeProcess(reserved: number): void {
    mustBeZero(reserved, '__reserved')
    const mapped = this.objects.objects().find((o): o is Ioas => o instanceof Ioas && o.areas.length > 0)
    if (mapped) throw new ErrnoError('EINVAL', `IOAS ${mapped.id} has mappings made with IOAS_MAP; only IOAS_MAP_FILE mappings can change process`)
  }

  option(optionId: number, op: number, reserved: number, objectId: number, val64: bigint): bigint {
    mustBeZero(reserved, '__reserved')
    if (op !== OptionOp.SET && op !== OptionOp.GET) throw new ErrnoError('EOPNOTSUPP', `op=${op}: expected SET (0) or GET (1)`)
    if (optionId === IommuOption.RLIMIT_MODE) {
      if (objectId !== 0) throw new ErrnoError('EOPNOTSUPP', `object_id=${objectId}: RLIMIT_MODE takes 0`)
      if (op === OptionOp.GET) return this.rlimitMode
      if (this.objects.size) throw new ErrnoError('EBUSY', 'RLIMIT_MODE can only be set before any object exists')
      if (val64 > 1n) throw new ErrnoError('EINVAL', `val64=${val64}: expected 0 or 1`)
      this.rlimitMode = val64
      return val64
    }
    if (optionId === IommuOption.HUGE_PAGES) {
      const ioas = this.ioas(objectId, 'object_id')
      if (op === OptionOp.GET) return ioas.hugePages ? 1n : 0n
      if (val64 > 1n) throw new ErrnoError('EINVAL', `val64=${val64}: expected 0 or 1`)
      ioas.hugePages = val64 === 1n
      return val64
    }
    throw new ErrnoError('EOPNOTSUPP', `option_id=${optionId}: expected RLIMIT_MODE (0) or HUGE_PAGES (1)`)
  }

  vfioIoasOp(ioasId: number, op: number, reserved: number): number {
    mustBeZero(reserved, '__reserved')
    switch (op) {
      case VfioIoasOp.GET:
        if (!this.vfioIoas) throw new ErrnoError('ENODEV', 'no compatibility IOAS is set')
        return this.vfioIoas.id
      case VfioIoasOp.SET:
        this.vfioIoas = this.ioas(ioasId)
        return ioasId
      case VfioIoasOp.CLEAR:
        this.vfioIoas = undefined
        return ioasId
      default:
        throw new ErrnoError('EOPNOTSUPP', `op=${op}: expected GET (0), SET (1) or CLEAR (2)`)
    }
  }

  // ---- HWPT ----

  hwptAlloc(a: HwptAllocArgs): number {
    mustBeZero(a.reserved, '__reserved')
    if ((a.data.type === HwptDataType.NONE) !== (a.data.len === 0)) {
      throw new ErrnoError('EINVAL', `data_type=${a.data.type} with data_len=${a.data.len}: data needs a type and a type needs data`)
    }
    const dev = this.device(a.devId)
    const pt = this.objects.find(a.ptId)
    if (!pt) throw new ErrnoError('EINVAL', `pt_id=${a.ptId}: no such object`)
    let hwpt: Hwpt
    if (pt instanceof Ioas) hwpt = this.planPaging(dev, pt, a)
    else if (pt instanceof HwptPaging) hwpt = this.planNestedOnParent(dev, pt, a)
    else if (pt instanceof Viommu) hwpt = this.planNestedOnViommu(dev, pt, a)
    else throw new ErrnoError('EINVAL', `pt_id=${a.ptId}: is a ${pt.type} object; expected an IOAS, a nest-parent HWPT or a vIOMMU`)
    if (a.flags & HwptAllocFlag.FAULT_ID_VALID) throw new ErrnoError('ENOENT', `fault_id=${a.faultId}: no fault queue with that ID`)
    return this.commitHwpt(hwpt)
  }

  private planPaging(dev: Device, ioas: Ioas, a: HwptAllocArgs): HwptPaging {
    const all = HwptAllocFlag.NEST_PARENT | HwptAllocFlag.DIRTY_TRACKING | HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID
    unknownFlags(a.flags, all)
    const unit = dev.pci.unit
    if (a.flags & HwptAllocFlag.DIRTY_TRACKING && !unit.dirtyTracking) throw new ErrnoError('EOPNOTSUPP', `flags=DIRTY_TRACKING: ${unit.name} cannot track dirty pages`)
    if (a.flags & HwptAllocFlag.FAULT_ID_VALID && a.flags & HwptAllocFlag.NEST_PARENT) throw new ErrnoError('EOPNOTSUPP', 'flags: FAULT_ID_VALID and NEST_PARENT exclude each other')
    if (a.data.type !== HwptDataType.NONE) throw new ErrnoError('EOPNOTSUPP', `data_type=${a.data.type}: a paging HWPT takes no driver data`)
    driverFor(unit).checkPaging(unit, a.flags)
    return new HwptPaging(unit.kind, ioas, a.flags, false)
  }

  private planNestedOnParent(dev: Device, parent: HwptPaging, a: HwptAllocArgs): HwptNested {
    unknownFlags(a.flags, HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID)
    if (a.data.len === 0) throw new ErrnoError('EOPNOTSUPP', `data_len=0: a nested HWPT needs driver data (data_type and data)`)
    const unit = dev.pci.unit
    if (unit.kind === 'arm-smmu-v3') throw new ErrnoError('EOPNOTSUPP', `pt_id=${parent.id}: an SMMUv3 nested HWPT is allocated on a vIOMMU, not on its parent`)
    if (parent.auto || !parent.nestParent || parent.kind !== unit.kind) {
      throw new ErrnoError('EINVAL', `pt_id=${parent.id}: not a NEST_PARENT HWPT of ${unit.kind}${parent.auto ? ' (auto domains never are)' : ''}`)
    }
    if (!unit.supportsNesting) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: nesting unsupported`)
    if (a.flags & HwptAllocFlag.PASID && !unit.registers.flag('ECAP.PASID')) throw new ErrnoError('EOPNOTSUPP', `flags=PASID: ${unit.name} has no PASID support`)
    if (a.data.type !== HwptDataType.VTD_S1) throw new ErrnoError('EOPNOTSUPP', `data_type=${a.data.type}: ${unit.name} takes VTD_S1 (1)`)
    return new HwptNested(parent, undefined, { kind: 'intel-vtd', s1: a.data.vtdS1() })
  }

  private planNestedOnViommu(dev: Device, viommu: Viommu, a: HwptAllocArgs): HwptNested {
    if (dev.pci.unit !== viommu.unit) throw new ErrnoError('EINVAL', `dev_id=${dev.id}: behind ${dev.pci.unit.name}, vIOMMU ${viommu.id} is on ${viommu.unit.name}`)
    unknownFlags(a.flags, HwptAllocFlag.FAULT_ID_VALID | HwptAllocFlag.PASID)
    if (a.data.len === 0) throw new ErrnoError('EOPNOTSUPP', `data_len=0: a nested HWPT needs driver data (data_type and data)`)
    if (a.flags & HwptAllocFlag.PASID) throw new ErrnoError('EOPNOTSUPP', 'flags=PASID: an SMMUv3 nested HWPT takes no flags')
    const ste = validateGuestSte(a.data.armSte())
    return new HwptNested(viommu.parent, viommu, { kind: 'arm-smmu-v3', ste })
  }

  private commitHwpt(hwpt: Hwpt): number {
    this.objects.insert(hwpt)
    if (hwpt instanceof HwptPaging) {
      hwpt.ioas.hwpts.add(hwpt)
      hwpt.ioas.users++
    } else if (hwpt instanceof HwptNested) {
      if (hwpt.viommu) {
        hwpt.viommu.nested.add(hwpt)
        hwpt.viommu.users++
      } else {
        hwpt.parentHwpt.children.add(hwpt)
        hwpt.parentHwpt.users++
      }
    }
    return hwpt.id
  }

  hwInfo(flags: number, devId: number, inType: number, reserved: bigint): { info: HwInfo; maxPasidLog2: number; capabilities: bigint } {
    unknownFlags(flags, HwInfoFlag.INPUT_TYPE)
    mustBeZero(reserved, '__reserved')
    const dev = this.device(devId)
    const unit = dev.pci.unit
    const driver = driverFor(unit)
    const info = driver.hwInfo(unit)
    if (flags & HwInfoFlag.INPUT_TYPE && inType !== HwInfoType.NONE && inType !== info.type) {
      throw new ErrnoError('EOPNOTSUPP', `in_data_type=${inType}: ${unit.name} reports type ${info.type}`)
    }
    return { info, maxPasidLog2: driver.maxPasidLog2(unit), capabilities: driver.capabilities(unit) }
  }

  private paging(id: number, field = 'hwpt_id'): HwptPaging {
    return this.objects.get<HwptPaging>(id, field, 'hwpt_paging')
  }

  setDirtyTracking(flags: number, hwptId: number, reserved: number): void {
    unknownFlags(flags, DirtyTrackingFlag.ENABLE)
    mustBeZero(reserved, '__reserved')
    const hwpt = this.paging(hwptId)
    if (!(hwpt.flags & HwptAllocFlag.DIRTY_TRACKING)) throw new ErrnoError('EOPNOTSUPP', `hwpt_id=${hwptId}: allocated without DIRTY_TRACKING`)
    hwpt.dirtyTrackingEnabled = (flags & DirtyTrackingFlag.ENABLE) !== 0
  }

  /** No device does DMA here, so every page reads clean; the checks are the kernel's. */
  dirtyBitmap(hwptId: number, flags: number, reserved: number, iova: bigint, length: bigint, pageSize: bigint): bigint {
    unknownFlags(flags, DirtyBitmapFlag.NO_CLEAR)
    mustBeZero(reserved, '__reserved')
    const hwpt = this.paging(hwptId)
    if (iova + length - 1n > ULONG_MAX || iova + length - 1n < iova) throw new ErrnoError('EOVERFLOW', 'iova + length overflows')
    const align = hwpt.ioas.alignment
    if (pageSize === 0n || iova % pageSize || length % pageSize || iova % align || (iova + length) % align) {
      throw new ErrnoError('EINVAL', `iova/length/page_size: must be aligned to page_size and the IOVA alignment ${hex(align)}`)
    }
    if (!(hwpt.flags & HwptAllocFlag.DIRTY_TRACKING)) throw new ErrnoError('EOPNOTSUPP', `hwpt_id=${hwptId}: no dirty tracking`)
    return ((length / pageSize + 63n) / 64n) * 8n
  }

  // ---- invalidation ----

  /** IOMMU_HWPT_INVALIDATE (array form): returns the number of entries handled; errors carry it too. */
  hwptInvalidate(hwptId: number, reserved: number, dataUptr: bigint, arr: EntryArray): number {
    if (reserved) throw new PartialError('EOPNOTSUPP', `__reserved=${reserved}: must be 0`, 0)
    if (arr.entryNum && (dataUptr === 0n || arr.entryLen === 0)) throw new PartialError('EINVAL', `entry_num=${arr.entryNum} needs data_uptr and entry_len`, 0)
    if (arr.entryLen > 4096 || arr.entryNum > 1 << 19) throw new PartialError('EINVAL', `${arr.entryLen > 4096 ? `entry_len=${arr.entryLen} is above 4096` : `entry_num=${arr.entryNum} is above 524288`}`, 0)
    const target = this.objects.find(hwptId)
    if (!target) throw new PartialError('ENOENT', `hwpt_id=${hwptId}: no such object`, 0)
    if (target instanceof Viommu) return armInvalidate(target, arr)
    if (target instanceof HwptNested) {
      if (target.data.kind !== 'intel-vtd') throw new PartialError('EOPNOTSUPP', `hwpt_id=${hwptId}: an SMMUv3 nested HWPT is invalidated through its vIOMMU (${target.viommu?.id})`, 0)
      return vtdInvalidate(target, arr)
    }
    throw new PartialError('EINVAL', `hwpt_id=${hwptId}: is a ${target.type} object; invalidate a vIOMMU (SMMUv3) or a nested HWPT (VT-d)`, 0)
  }

  /** The ring form: consumes entries from CONS to PROD; see RingOutcome. */
  hwptInvalidateRing(a: RingArgs): RingOutcome {
    if (a.reserved) throw new ErrnoError('EOPNOTSUPP', `__reserved=${a.reserved}: must be 0`)
    if (!Number.isInteger(a.indexBits) || a.indexBits < 1 || a.indexBits > 31) throw new ErrnoError('EINVAL', `q_index_bits=${a.indexBits}: must be 1..31`)
    const ring = new RingIndex(a.indexBits)
    if (a.entryNum !== ring.size) throw new ErrnoError('EINVAL', `q_entry_num=${a.entryNum}: a ring with q_index_bits=${a.indexBits} has ${ring.size} entries`)
    if (a.entryLen === 0 || a.entryLen % 8) throw new ErrnoError('EINVAL', `q_entry_len=${a.entryLen}: must be a nonzero multiple of 8`)
    if (a.entryLen > 4096) throw new ErrnoError('EINVAL', `q_entry_len=${a.entryLen}: above 4096`)
    if (!ring.valid(a.prod)) throw new ErrnoError('EINVAL', `q_prod=0x${a.prod.toString(16)}: beyond the index bits and wrap flag (mask 0x${ring.mask.toString(16)})`)
    const cons = a.cons & ~CONS_ERR_BITS
    if (!ring.valid(cons)) throw new ErrnoError('EINVAL', `q_cons=0x${a.cons.toString(16)}: beyond the index bits and wrap flag (mask 0x${ring.mask.toString(16)})`)
    if (ring.count(a.prod, cons) > ring.size) throw new ErrnoError('EINVAL', `q_prod=0x${a.prod.toString(16)}, q_cons=0x${cons.toString(16)}: more than ${ring.size} entries apart`)
    const target = this.objects.find(a.hwptId)
    if (!target) throw new ErrnoError('ENOENT', `hwpt_id=${a.hwptId}: no such object`)
    if (target instanceof Viommu) {
      if (a.dataType !== InvalidateDataType.ARM_SMMUV3) throw new ErrnoError('EINVAL', `data_type=${a.dataType}: a vIOMMU takes ARM_SMMUV3 (1)`)
      const r = consumeGuestQueue(target, ring, (i) => a.armEntry(i), cons, a.prod)
      if (r.fault) return { cons: r.cons, error: r.fault }
      return r.error ? { cons: r.cons, error: new ErrnoError('EIO', `entry ${r.error.index}: ${r.error.message} (CONS.ERR=CERROR_${r.error.cerror})`) } : { cons: r.cons }
    }
    if (target instanceof HwptNested && target.data.kind !== 'intel-vtd') {
      throw new ErrnoError('EOPNOTSUPP', `hwpt_id=${a.hwptId}: an SMMUv3 nested HWPT is invalidated through its vIOMMU (${target.viommu?.id})`)
    }
    if (target instanceof HwptNested) {
      if (a.dataType !== InvalidateDataType.VTD_S1) throw new ErrnoError('EINVAL', `data_type=${a.dataType}: a VT-d nested HWPT takes VTD_S1 (0)`)
      let c = cons
      for (; c !== a.prod; c = ring.next(c)) {
        try {
          vtdInvalidateOne(target, a.vtdEntry(ring.index(c)), ring.index(c))
        } catch (e) {
          if (e instanceof ErrnoError) return { cons: c, error: e }
          throw e
        }
      }
      return { cons: c }
    }
    throw new ErrnoError('EINVAL', `hwpt_id=${a.hwptId}: is a ${target.type} object; invalidate a vIOMMU (SMMUv3) or a VT-d nested HWPT`)
  }

  /** A software command queue for a vIOMMU, 2^log2size entries. */
  vcmdqAlloc(flags: number, viommuId: number, log2size: number): number {
    unknownFlags(flags, 0)
    const viommu = this.objects.get<Viommu>(viommuId, 'viommu_id', 'viommu')
    const max = Math.min(Number(viommu.unit.registers.field('IDR1.CMDQS')), 19)
    if (log2size < 1 || log2size > max) throw new ErrnoError('EINVAL', `log2size=${log2size}: ${viommu.unit.name} takes 1..${max} (IDR1.CMDQS)`)
    const q = this.objects.insert(new Vcmdq(viommu, log2size, (m) => this.world.trace.emit(`ctx${this.id}`, m)))
    viommu.users++
    return q.id
  }

  // ---- vIOMMU and vDEVICE ----

  viommuAlloc(flags: number, type: number, devId: number, hwptId: number): number {
    unknownFlags(flags, 0)
    if (type === ViommuType.DEFAULT) throw new ErrnoError('EOPNOTSUPP', 'type=DEFAULT (0): a vIOMMU type is required')
    const dev = this.device(devId)
    const unit = dev.pci.unit
    if (!(unit instanceof Smmuv3) || type !== ViommuType.ARM_SMMUV3) {
      throw new ErrnoError('EOPNOTSUPP', `type=${type}: ${unit.name} (${unit.kind}) has no such vIOMMU type${unit instanceof Smmuv3 ? ' (ARM_SMMUV3 is 1)' : ''}`)
    }
    if (!unit.supportsViommu) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: a vIOMMU needs nesting (IDR0.S1P, IDR0.S2P) and S2FWB (IDR3.FWB)`)
    const parent = this.paging(hwptId)
    if (!parent.nestParent) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: not allocated with NEST_PARENT`)
    if (parent.kind !== unit.kind) throw new ErrnoError('EINVAL', `hwpt_id=${hwptId}: a ${parent.kind} domain cannot be the stage 2 of ${unit.name}`)
    const vmid = unit.vmids.alloc()
    if (vmid === undefined) throw new ErrnoError('ENOSPC', `${unit.name}: no free VMID`)
    const v = this.objects.insert(new Viommu(unit, parent, vmid))
    parent.viommus.add(v)
    parent.users++
    return v.id
  }

  vdeviceAlloc(viommuId: number, devId: number, virtId: bigint): number {
    const viommu = this.objects.get<Viommu>(viommuId, 'viommu_id', 'viommu')
    const dev = this.device(devId)
    if (dev.pci.unit !== viommu.unit) throw new ErrnoError('EINVAL', `dev_id=${devId}: behind ${dev.pci.unit.name}, vIOMMU ${viommuId} is on ${viommu.unit.name}`)
    if (dev.vdevice) throw new ErrnoError('EEXIST', `dev_id=${devId}: already has vDEVICE ${dev.vdevice.id}`)
    const taken = viommu.vdevices.get(virtId)
    if (taken) throw new ErrnoError('EEXIST', `virt_id=${hex(virtId)}: already used by vDEVICE ${taken.id} in vIOMMU ${viommuId}`)
    const vd = this.objects.insert(new Vdevice(viommu, dev, virtId))
    viommu.vdevices.set(virtId, vd)
    viommu.users++
    dev.vdevice = vd
    return vd.id
  }

  // ---- devices (the VFIO cdev side) ----

  bind(pci: PciDevice): number {
    const owner = this.world.ownerOf(pci)
    if (owner) throw new ErrnoError('EBUSY', `${pci.bdf}: already bound to context ${owner.id}`)
    const dev = this.objects.insert(new Device(pci))
    this.bound.set(pci, dev)
    this.world.setOwner(pci, this)
    return dev.id
  }

  /** The device object `pci` is bound as in this context, if it is. */
  deviceOf(pci: PciDevice): Device | undefined {
    return this.bound.get(pci)
  }

  /** Attaches or replaces; returns the HWPT actually attached (an auto domain for an IOAS). */
  attach(devId: number, ptId: number): number {
    const dev = this.device(devId)
    const pt = this.objects.find(ptId)
    if (!pt) throw new ErrnoError('ENOENT', `pt_id=${ptId}: no such object`)
    if (pt instanceof Ioas) {
      const reuse = [...pt.hwpts].find((h) => h.auto && h.kind === dev.pci.unit.kind)
      if (reuse) return this.attachTo(dev, reuse)
      this.checkAttach(dev, pt)
      const auto = new HwptPaging(dev.pci.unit.kind, pt, 0, true)
      this.commitHwpt(auto)
      try {
        return this.attachTo(dev, auto)
      } catch (e) {
        // a failed attach leaves no auto domain behind (no half-made object, no leaked ID)
        this.destroyObject(auto)
        throw e
      }
    }
    if (!(pt instanceof Hwpt)) throw new ErrnoError('EINVAL', `pt_id=${ptId}: is a ${pt.type} object; expected an IOAS or a HWPT`)
    return this.attachTo(dev, pt)
  }

  /** The checks attaching `dev` to a domain over `ioas` makes: the device's reserved IOVAs must be free. */
  private checkAttach(dev: Device, ioas: Ioas): void {
    const unit = dev.pci.unit
    const holes = [...unit.reservedRegions(), ...(unit.iovaBits < 64 ? [{ start: 1n << BigInt(unit.iovaBits), last: ULONG_MAX }] : [])]
    for (const h of holes) {
      const hit = ioas.areas.find((a: Area) => a.iova <= h.last && h.start <= a.iova + a.length - 1n)
      if (hit) throw new ErrnoError('EADDRINUSE', `IOAS ${ioas.id} maps ${hex(hit.iova)}, which ${unit.name} reserves (${hex(h.start)}-${hex(h.last)})`)
      const allowed = ioas.allowed?.findIndex((r) => r.start <= h.last && h.start <= r.last) ?? -1
      if (allowed >= 0) throw new ErrnoError('EADDRINUSE', `IOAS ${ioas.id} allows ${hex(ioas.allowed![allowed].start)}-${hex(ioas.allowed![allowed].last)}, which ${unit.name} reserves`)
    }
  }

  private attachTo(dev: Device, hwpt: Hwpt): number {
    if (dev.hwpt === hwpt) return hwpt.id
    if (hwpt.kind !== dev.pci.unit.kind) throw new ErrnoError('EINVAL', `pt_id=${hwpt.id}: a ${hwpt.kind} domain cannot hold ${dev.pci.bdf} (behind ${dev.pci.unit.name})`)
    if (hwpt instanceof HwptNested) driverFor(dev.pci.unit).checkNestedAttach(dev.pci, hwpt, dev.vdevice !== undefined && dev.vdevice.viommu === hwpt.viommu)
    this.checkAttach(dev, hwpt.paging.ioas)
    const driver = driverFor(dev.pci.unit)
    const old = dev.hwpt
    driver.acquire(dev.pci, hwpt)
    driver.program(dev.pci, hwpt)
    hwpt.devices.add(dev)
    hwpt.users++
    dev.hwpt = hwpt
    if (old) this.dropDomain(dev, old)
    return hwpt.id
  }

  /** The device no longer uses `hwpt`: release its hardware ID there; an auto domain dies with its last device. */
  private dropDomain(dev: Device, hwpt: Hwpt): void {
    hwpt.devices.delete(dev)
    hwpt.users--
    driverFor(dev.pci.unit).release(dev.pci, hwpt)
    if (hwpt instanceof HwptPaging && hwpt.auto && hwpt.devices.size === 0) this.destroyObject(hwpt)
  }

  detach(devId: number): void {
    const dev = this.device(devId)
    const hwpt = dev.hwpt
    if (!hwpt) return
    dev.hwpt = undefined
    driverFor(dev.pci.unit).program(dev.pci, undefined)
    this.dropDomain(dev, hwpt)
  }

  /** The device's VFIO file closed: detach, and destroy its vDEVICE, whose ID stays reserved until close. */
  unbind(dev: Device): void {
    if (dev.vdevice) {
      const vd = dev.vdevice
      this.unlinkVdevice(vd)
      this.objects.tombstone(vd)
    }
    this.detach(dev.id)
    driverFor(dev.pci.unit).forget(dev.pci)
    this.objects.remove(dev)
    this.bound.delete(dev.pci)
    this.world.setOwner(dev.pci, undefined)
  }

  // ---- destroy ----

  destroy(id: number): void {
    const obj = this.objects.find(id)
    if (!obj) throw new ErrnoError('ENOENT', `id=${id}: no such object`)
    if (obj instanceof Device) throw new ErrnoError('EBUSY', `id=${id}: a device is destroyed by unbinding it (closing its VFIO file)`)
    if (obj.users > 0) throw new ErrnoError('EBUSY', `id=${id}: ${obj.type} still has ${obj.users} user${obj.users === 1 ? '' : 's'}`)
    this.destroyObject(obj)
  }

  private unlinkVdevice(vd: Vdevice): void {
    vd.viommu.vdevices.delete(vd.virtId)
    vd.viommu.users--
    vd.device.vdevice = undefined
  }

  private destroyObject(obj: IommufdObject): void {
    if (obj instanceof HwptPaging) {
      obj.ioas.hwpts.delete(obj)
      obj.ioas.users--
    } else if (obj instanceof HwptNested) {
      if (obj.viommu) {
        obj.viommu.nested.delete(obj)
        obj.viommu.users--
      } else {
        obj.parentHwpt.children.delete(obj)
        obj.parentHwpt.users--
      }
    } else if (obj instanceof Viommu) {
      obj.parent.viommus.delete(obj)
      obj.parent.users--
      obj.unit.vmids.free(obj.vmid)
    } else if (obj instanceof Vdevice) {
      this.unlinkVdevice(obj)
    } else if (obj instanceof Vcmdq) {
      obj.viommu.users--
    } else if (obj instanceof Ioas && this.vfioIoas === obj) {
      this.vfioIoas = undefined
    }
    this.objects.remove(obj)
  }

  /** Closing the last file: unbind devices, then destroy everything, leaves first. */
  close(): void {
    for (const dev of [...this.bound.values()]) this.unbind(dev)
    // each pass destroys the objects nothing uses any more; that frees the next layer
    for (let left = this.objects.objects(); left.length; ) {
      const leaves = left.filter((o) => o.users === 0)
      if (!leaves.length) throw new Error(`context ${this.id}: objects reference each other: ${left.map((o) => o.label()).join(', ')}`)
      for (const o of leaves) if (o.users === 0) this.destroyObject(o)
      left = left.filter((o) => this.objects.find(o.id) === o)
    }
  }
}
