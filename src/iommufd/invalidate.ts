import { CERROR, CerrorName, Command, HOST_SYNC, OP, describeCommand, field, opcodeName, opcodeOf, reservedEncoding, withField } from '../hw/smmuv3/commands'
import { MOCK_DEV_CACHE_NUM, MockDevice } from '../hw/mock/mock'
import { RingIndex } from '../hw/ring'
import { Descriptor, P_IOTLB_GRAN, devIotlbSpan, pasidIotlb, psiMask } from '../hw/vtd/qi'
import { Vtd } from '../hw/vtd/vtd'
import { ErrnoError, ErrnoName } from '../util/errno'
import { LIMITS } from '../util/limits'
import type { IommufdContext } from './context'
import { HwptNested, MOCK_IOTLB_NUM } from './hwpt'
import { hex } from './checks'
import type { MockNestedData } from './selftest'
import { ULONG_MAX } from './ioas'
import { Viommu } from './viommu'
import { devAts } from './vtd-host'

/** iommu_hwpt_invalidate_data_type. */
export const InvalidateDataType = { VTD_S1: 0, ARM_SMMUV3: 1, SELFTEST: 0xdeadbeef } as const
/** The selftest mock's entry flag: invalidate every IOTLB slot. */
export const INVALIDATE_SELFTEST_ALL = 1
/** iommu_hwpt_vtd_s1_invalidate_flags. */
export const VtdInvFlag = { LEAF: 1 } as const
/** The host driver issues at most this many commands before a CMD_SYNC (one CMDQ batch minus the sync). */
export const CMDQ_BATCH = 63

/** An invalidation that failed after `handled` entries (entry_num is written back as that). */
export class PartialError extends ErrnoError {
  constructor(errno: ErrnoName, message: string, readonly handled: number) {
    super(errno, message)
  }
}

/** A VT-d stage-1 invalidation entry (iommu_hwpt_vtd_s1_invalidate). */
export interface VtdInvEntry {
  readonly addr: bigint
  readonly npages: bigint
  readonly flags: number
  readonly reserved: number
}

/**
 * The user's entry array, copied with each driver's rules when it asks
 * (the kernel's iommu_user_data_array): ARM copies all commands at once,
 * VT-d one entry at a time.
 */
export interface EntryArray {
  readonly type: number
  readonly entryLen: number
  readonly entryNum: number
  armCommands(): Command[]
  vtdEntry(index: number): VtdInvEntry
  /** Entry `index`'s entry_len bytes as the user wrote them. */
  rawEntry(index: number): Buffer
}

/** A guest command the vIOMMU refused, with the CMDQ error a guest queue shows for it. */
class CommandError extends ErrnoError {
  constructor(readonly cerror: CerrorName, message: string) {
    super('EIO', message)
  }
}

/**
 * Turns a guest command into what the host issues, as the kernel's vSMMU
 * does: TLBIs get the vIOMMU's VMID, NSNH_ALL becomes NH_ALL, SID-carrying
 * commands have the vSID replaced by the physical StreamID. Returns 'sync'
 * for a CMD_SYNC where the caller allows one.
 */
export function convertCommand(viommu: Viommu, cmd: Command, syncAllowed: boolean): Command | 'sync' {
  const op = opcodeOf(cmd)
  const vmid = BigInt(viommu.vmid)
  switch (op) {
    case OP.TLBI_NSNH_ALL:
      return withField([BigInt(OP.TLBI_NH_ALL), 0n], 'vmid', vmid)
    case OP.TLBI_NH_ALL:
    case OP.TLBI_NH_ASID:
    case OP.TLBI_NH_VA:
    case OP.TLBI_NH_VAA:
      return withField(cmd, 'vmid', vmid)
    case OP.ATC_INV:
    case OP.CFGI_CD:
    case OP.CFGI_CD_ALL: {
      const vsid = field(cmd, 'sid')
      const psid = viommu.physicalSid(vsid)
      if (psid === undefined) throw new CommandError('ILL', `vSID 0x${vsid.toString(16)} has no vDEVICE in vIOMMU ${viommu.id}`)
      return withField(cmd, 'sid', BigInt(psid))
    }
    case OP.SYNC:
      if (syncAllowed) return 'sync'
      throw new CommandError('ILL', 'not accepted through the ioctl (the VMM completes syncs itself)')
    default:
      throw new CommandError('ILL', `opcode 0x${op.toString(16)} (${opcodeName(op)}) is not accepted through a vIOMMU`)
  }
}

/** HWPT_INVALIDATE on a vIOMMU (array form), with the kernel's batching and its entry_num quirk. */
export function armInvalidate(viommu: Viommu, arr: EntryArray): number {
  if (arr.type !== InvalidateDataType.ARM_SMMUV3) throw new PartialError('EINVAL', `data_type=${arr.type}: a vIOMMU takes ARM_SMMUV3 (1)`, 0)
  if (arr.entryNum === 0) throw new PartialError('EINVAL', 'entry_num=0: the SMMUv3 driver refuses an empty array', 0)
  const cmds = arr.armCommands()
  const smmu = viommu.smmu
  let batch: Command[] = []
  let batchStart = 0
  for (let i = 0; i < cmds.length; i++) {
    const injected = smmu.takeInjection(false)
    try {
      if (injected) throw new CommandError(injected, `injected CERROR_${injected}`)
      batch.push(convertCommand(viommu, cmds[i], false) as Command)
    } catch (e) {
      if (!(e instanceof CommandError)) throw e
      // converted commands of this batch are counted as handled but never issued (kernel quirk)
      throw new PartialError('EIO', `entry ${i} (${describeCommand(cmds[i])}): ${e.message}`, i)
    }
    if (batch.length === CMDQ_BATCH || i === cmds.length - 1) {
      if (smmu.takeInjection(true)) throw new PartialError('ETIMEDOUT', `entries ${batchStart}-${i}: CMD_SYNC timed out (injected CERROR_ATC_INV_SYNC)`, i)
      smmu.cmdq.issue([...batch, HOST_SYNC])
      batch = []
      batchStart = i + 1
    }
  }
  return cmds.length
}

export interface RingResult {
  /** Final CONS: index with wrap flag, plus ERR in bits 30:24 on a command error. */
  readonly cons: number
  readonly error?: { readonly cerror: CerrorName; readonly index: number; readonly message: string }
  /** An entry that could not be read (E2BIG tail, EFAULT): CONS names it, without ERR bits. */
  readonly fault?: ErrnoError
}

/**
 * Consumes a guest SMMUv3 command queue from CONS to PROD, as the hardware
 * would: commands go out in batches closed by CMD_SYNC (the guest's own
 * CMD_SYNC closes a batch too); an illegal command stops consumption with
 * CONS on it and CERROR_ILL in CONS.ERR.
 */
export function consumeGuestQueue(viommu: Viommu, ring: RingIndex, read: (index: number) => Command, cons: number, prod: number): RingResult {
  const smmu = viommu.smmu
  let batch: Command[] = []
  const flush = (): void => {
    if (batch.length) smmu.cmdq.issue([...batch, HOST_SYNC])
    batch = []
  }
  for (; cons !== prod; cons = ring.next(cons)) {
    let cmd: Command
    try {
      cmd = read(ring.index(cons))
    } catch (e) {
      // a malformed entry stops consumption like a refused command: what came before is issued
      if (!(e instanceof ErrnoError)) throw e
      flush()
      return { cons, fault: e }
    }
    const isSync = opcodeOf(cmd) === OP.SYNC
    let conv: Command | 'sync'
    try {
      const injected = smmu.takeInjection(isSync)
      if (injected) throw new CommandError(injected, `injected CERROR_${injected}`)
      const reserved = reservedEncoding(cmd)
      if (reserved) throw new CommandError('ILL', reserved)
      conv = convertCommand(viommu, cmd, true)
    } catch (e) {
      if (!(e instanceof CommandError)) throw e
      flush()
      return { cons: cons | (CERROR[e.cerror] << 24), error: { cerror: e.cerror, index: ring.index(cons), message: `${describeCommand(cmd)}: ${e.message}` } }
    }
    if (conv === 'sync') flush()
    else {
      batch.push(conv)
      if (batch.length === CMDQ_BATCH) flush()
    }
  }
  flush()
  return { cons }
}

/** The descriptors the VT-d driver issues for one stage-1 invalidation of `hwpt` on `unit`. */
function vtdDescriptors(unit: Vtd, hwpt: HwptNested, e: VtdInvEntry): Descriptor[] {
  const tag = hwpt.tags.get(unit)
  if (!tag) return []
  const all = e.npages === ULONG_MAX && e.addr === 0n
  const m = all ? { base: 0n, am: 0 } : psiMask(e.addr, e.npages)
  const am = m.am
  const psi = !all && am <= Number(unit.registers.field('CAP.MAMV'))
  const base = psi ? m.base : 0n
  const leaf = (e.flags & VtdInvFlag.LEAF) !== 0
  const out: Descriptor[] = [pasidIotlb(tag.id, 0, psi ? P_IOTLB_GRAN.PSI_PASID : P_IOTLB_GRAN.NONG_PASID, base, psi ? am : 0, leaf)]
  // each device with ATS on (the unit's ECAP.DT and the function's capability)
  for (const dev of hwpt.devices) {
    if (dev.pci.unit === unit && devAts(unit, dev.pci)) out.push(devIotlbSpan(dev.pci.streamId, base, psi ? am : undefined))
  }
  return out
}

/** Validates one VT-d entry as the driver does. */
function checkVtdEntry(e: VtdInvEntry, i: number): void {
  if (e.flags & ~VtdInvFlag.LEAF || e.reserved) {
    throw new PartialError('EOPNOTSUPP', `entry ${i}: ${e.reserved ? `__reserved=${e.reserved}` : `flags=0x${e.flags.toString(16)}`} must be 0 or LEAF`, i)
  }
  if (e.addr % 4096n) throw new PartialError('EINVAL', `entry ${i}: addr=0x${e.addr.toString(16)} is not 4 KiB aligned`, i)
  if (e.npages === ULONG_MAX && e.addr !== 0n) throw new PartialError('EINVAL', `entry ${i}: npages=U64_MAX ("all") needs addr=0`, i)
}

/** Invalidates a VT-d nested HWPT for one entry; the queue may report an injected error. */
export function vtdInvalidateOne(hwpt: HwptNested, e: VtdInvEntry, i: number): void {
  checkVtdEntry(e, i)
  for (const unit of hwpt.tags.keys()) {
    const vtd = unit as Vtd
    const descs = vtdDescriptors(vtd, hwpt, e)
    if (!descs.length) continue
    const error = vtd.takeInjection()
    vtd.qi.submit(descs, error)
    if (error) throw new PartialError('EIO', `entry ${i}: ${vtd.name}'s invalidation queue reported ${error} (FSTS 0x${vtd.fsts.toString(16)})`, i)
  }
}

/** HWPT_INVALIDATE on a VT-d nested HWPT (array form). */
export function vtdInvalidate(hwpt: HwptNested, arr: EntryArray): number {
  if (arr.type !== InvalidateDataType.VTD_S1) throw new PartialError('EINVAL', `data_type=${arr.type}: a VT-d nested HWPT takes VTD_S1 (0)`, 0)
  for (let i = 0; i < arr.entryNum; i++) {
    let e: VtdInvEntry
    try {
      e = arr.vtdEntry(i)
    } catch (err) {
      if (err instanceof ErrnoError) throw new PartialError(err.errno, `entry ${i}: ${err.message}`, i)
      throw err
    }
    vtdInvalidateOne(hwpt, e, i)
  }
  return arr.entryNum
}

// ---- handlers (IOMMU_HWPT_INVALIDATE and the ring form) ----

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

/** IOMMU_HWPT_INVALIDATE (array form): returns the number of entries handled; errors carry it too. */
export function hwptInvalidate(ctx: IommufdContext, hwptId: number, reserved: number, dataUptr: bigint, arr: EntryArray): number {
  if (reserved) throw new PartialError('EOPNOTSUPP', `__reserved=${reserved}: must be 0`, 0)
  if (arr.entryNum && (dataUptr === 0n || arr.entryLen === 0)) throw new PartialError('EINVAL', `entry_num=${arr.entryNum} needs data_uptr and entry_len`, 0)
  // the caps bound a call's work: with no entries there is none (and entry_len is not looked at)
  if (arr.entryNum && (arr.entryLen > 4096 || arr.entryNum > 1 << 19)) throw new PartialError('EINVAL', `${arr.entryLen > 4096 ? `entry_len=${arr.entryLen} is above 4096` : `entry_num=${arr.entryNum} is above 524288`}`, 0)
  if (arr.entryNum > LIMITS.invalidateEntries.max) throw new PartialError(LIMITS.invalidateEntries.errno, `entry_num=${arr.entryNum}: iommufs takes at most ${LIMITS.invalidateEntries.max} entries per call`, 0)
  const target = ctx.objects.find(hwptId)
  if (!target) throw new PartialError('ENOENT', `hwpt_id=${hwptId}: no such object`, 0)
  if (target instanceof Viommu) return target.mock ? mockViommuInvalidate(target, arr) : armInvalidate(target, arr)
  if (target instanceof HwptNested && target.data.kind === 'mock') return mockInvalidate(target as HwptNested & { data: MockNestedData }, arr)
  if (target instanceof HwptNested) {
    if (target.data.kind !== 'intel-vtd') throw new PartialError('EOPNOTSUPP', `hwpt_id=${hwptId}: an SMMUv3 nested HWPT is invalidated through its vIOMMU (${target.viommu?.id})`, 0)
    return vtdInvalidate(target, arr)
  }
  throw new PartialError('EINVAL', `hwpt_id=${hwptId}: is a ${target.type} object; invalidate a vIOMMU (SMMUv3) or a nested HWPT (VT-d)`, 0)
}

/** The ring form: consumes entries from CONS to PROD; see RingOutcome. */
export function hwptInvalidateRing(ctx: IommufdContext, a: RingArgs): RingOutcome {
  if (a.reserved) throw new ErrnoError('EOPNOTSUPP', `__reserved=${a.reserved}: must be 0`)
  if (!Number.isInteger(a.indexBits) || a.indexBits < 1 || a.indexBits > 31) throw new ErrnoError('EINVAL', `q_index_bits=${a.indexBits}: must be 1..31`)
  const ring = new RingIndex(a.indexBits)
  if (ring.size > LIMITS.ringEntries.max) throw new ErrnoError(LIMITS.ringEntries.errno, `q_index_bits=${a.indexBits}: iommufs takes rings of at most ${LIMITS.ringEntries.max} entries`)
  if (a.entryNum !== ring.size) throw new ErrnoError('EINVAL', `q_entry_num=${a.entryNum}: a ring with q_index_bits=${a.indexBits} has ${ring.size} entries`)
  if (a.entryLen === 0 || a.entryLen % 8) throw new ErrnoError('EINVAL', `q_entry_len=${a.entryLen}: must be a nonzero multiple of 8`)
  if (a.entryLen > 4096) throw new ErrnoError('EINVAL', `q_entry_len=${a.entryLen}: above 4096`)
  if (!ring.valid(a.prod)) throw new ErrnoError('EINVAL', `q_prod=0x${a.prod.toString(16)}: beyond the index bits and wrap flag (mask 0x${ring.mask.toString(16)})`)
  const cons = a.cons & ~CONS_ERR_BITS
  if (!ring.valid(cons)) throw new ErrnoError('EINVAL', `q_cons=0x${a.cons.toString(16)}: beyond the index bits and wrap flag (mask 0x${ring.mask.toString(16)})`)
  if (ring.count(a.prod, cons) > ring.size) throw new ErrnoError('EINVAL', `q_prod=0x${a.prod.toString(16)}, q_cons=0x${cons.toString(16)}: more than ${ring.size} entries apart`)
  const target = ctx.objects.find(a.hwptId)
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

/** The mock driver's nested-domain invalidation: each entry clears one IOTLB slot, or all. */
export function mockInvalidate(hwpt: HwptNested & { data: MockNestedData }, arr: EntryArray): number {
  if (arr.type !== InvalidateDataType.SELFTEST) throw new PartialError('EINVAL', `data_type=${hex(arr.type)}: the mock takes SELFTEST (${hex(InvalidateDataType.SELFTEST)})`, 0)
  let done = 0
  for (let i = 0; i < arr.entryNum; i++) {
    let raw: Buffer
    try {
      if (arr.entryLen !== 8) throw new ErrnoError('EINVAL', `entry_len=${arr.entryLen}: iommu_hwpt_invalidate_selftest is 8 bytes`)
      raw = arr.rawEntry(i)
    } catch (e) {
      if (e instanceof ErrnoError) throw new PartialError(e.errno, e.message, done)
      throw e
    }
    const flags = raw.readUInt32LE(0)
    const slot = raw.readUInt32LE(4)
    if (flags & ~INVALIDATE_SELFTEST_ALL) throw new PartialError('EOPNOTSUPP', `entry ${i}: flags=${hex(flags)}: only ALL (1) is defined`, done)
    if (slot >= MOCK_IOTLB_NUM) throw new PartialError('EINVAL', `entry ${i}: iotlb_id=${slot}: slots are 0..${MOCK_IOTLB_NUM - 1}`, done)
    if (flags & INVALIDATE_SELFTEST_ALL) hwpt.data.iotlb.fill(0)
    else hwpt.data.iotlb[slot] = 0
    done++
  }
  return done
}

/** sizeof(struct iommu_viommu_invalidate_selftest): flags, vdev_id, cache_id. */
const MOCK_VIOMMU_INV_ENTRY = 12

/**
 * The mock vIOMMU's invalidation: each entry clears a device cache word (or
 * all four) of the device whose vDEVICE has vdev_id. A zero-length array of
 * the right type only checks the type.
 */
export function mockViommuInvalidate(viommu: Viommu, arr: EntryArray): number {
  if (arr.entryNum === 0 && arr.type === InvalidateDataType.SELFTEST) return 0
  if (arr.type !== InvalidateDataType.SELFTEST) throw new PartialError('EINVAL', `data_type=${hex(arr.type)}: the mock vIOMMU takes SELFTEST (${hex(InvalidateDataType.SELFTEST)})`, 0)
  if (arr.entryLen !== MOCK_VIOMMU_INV_ENTRY) throw new PartialError('EINVAL', `entry_len=${arr.entryLen}: iommu_viommu_invalidate_selftest is ${MOCK_VIOMMU_INV_ENTRY} bytes`, 0)
  // the whole array is copied before any entry acts, as iommu_copy_struct_from_full_user_array does
  let raws: Buffer[]
  try {
    raws = Array.from({ length: arr.entryNum }, (_, i) => arr.rawEntry(i))
  } catch (e) {
    if (e instanceof ErrnoError) throw new PartialError(e.errno, e.message, 0)
    throw e
  }
  let done = 0
  for (const raw of raws) {
    const flags = raw.readUInt32LE(0)
    const vdevId = raw.readUInt32LE(4)
    const slot = raw.readUInt32LE(8)
    if (flags & ~INVALIDATE_SELFTEST_ALL) throw new PartialError('EOPNOTSUPP', `entry ${done}: flags=${hex(flags)}: only ALL (1) is defined`, done)
    if (slot >= MOCK_DEV_CACHE_NUM) throw new PartialError('EINVAL', `entry ${done}: cache_id=${slot}: slots are 0..${MOCK_DEV_CACHE_NUM - 1}`, done)
    const cache = (viommu.vdevices.get(BigInt(vdevId))?.device.pci as Partial<MockDevice> | undefined)?.cache
    if (!cache) throw new PartialError('EINVAL', `entry ${done}: vdev_id=${hex(vdevId)}: no vDEVICE with that virtual ID in vIOMMU ${viommu.id}`, done)
    if (flags & INVALIDATE_SELFTEST_ALL) cache.fill(0)
    else cache[slot] = 0
    done++
  }
  return done
}
