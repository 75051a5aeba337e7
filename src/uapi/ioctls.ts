import { IommufdContext } from '../iommufd/context'
import * as device from '../iommufd/device'
import * as hwpt from '../iommufd/hwpt'
import * as ioas from '../iommufd/ioas'
import * as invalidate from '../iommufd/invalidate'
import * as vcmdq from '../iommufd/vcmdq'
import { VfioIoasOp, vfioIoasOp } from '../iommufd/vfio-compat'
import * as vfioPci from '../iommufd/vfio-pci'
import * as viommu from '../iommufd/viommu'
import { hwQueueAlloc } from '../iommufd/hw-queue'
import { mustBeZero } from '../iommufd/checks'
import { EntryArray, PartialError, VtdInvEntry } from '../iommufd/invalidate'
import { Command } from '../hw/smmuv3/commands'
import { HwInfoType } from '../iommufd/driver'
import { HWPT_DATA_SELFTEST, HwptDataType, VendorData } from '../iommufd/hwpt'
import { IovaRange } from '../iommufd/ioas'
import { PciDevice } from '../hw/unit'
import { FileBacking, SizedBacking } from '../memory/backing'
import { dmabufAt } from '../iommufd/dmabuf'
import { MmapFlag } from '../iommufd/mmap'
import type { IommufdObject } from '../iommufd/objects'
import { readlinkSync } from 'node:fs'
import { DmaFlag, DmaStatus, checkDmaLength, deviceDma } from '../iommufd/dma'
import { encodeEvent } from '../hw/smmuv3/events'
import { encodeFault } from '../hw/vtd/faults'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { fdIsServedHere, pathIsServedHere } from '../util/own-mounts'
import { StructLayout, StructValue, decode, encode, writtenBack } from './layout'
import { UserMemory } from './memory'
import { VfioAttachFlag, VfioBindFlag } from './names'
import * as S from './structs'
import { testCmd, undoTestCmd } from './test-cmd'
import * as VC from '../iommufd/vfio-compat'
import * as eventq from '../iommufd/eventq'
import * as veventq from '../iommufd/veventq'
import { HWPT_DATA_IOMMUFS_KVM, hwptAllocKvm } from '../iommufd/kvm-hwpt'

/** An error whose ioctl still writes fields back (EMSGSIZE's num_iovas, INVALIDATE's entry_num). */
export class IoctlError extends ErrnoError {
  constructor(inner: ErrnoError, readonly out: StructValue) {
    super(inner.errno, inner.message)
  }
}

export interface Call {
  /** The context the command acts in (absent on a VFIO device file not yet bound). */
  readonly ctx?: IommufdContext
  readonly req: StructValue
  readonly mem: UserMemory
  /** The device a VFIO cdev command addresses. */
  readonly device?: PciDevice
  /** Resolves the `iommufd` field of VFIO_DEVICE_BIND_IOMMUFD (a context ID here). */
  readonly contextById?: (id: number) => IommufdContext | undefined
  /** Files named by path for fd fields (text `path=`). */
  readonly files?: ReadonlyMap<number, string>
  /** The ioctl's raw argument (the struct's address), when the caller sent it. */
  readonly arg?: bigint
  /** The caller's descriptors the frame named: fd number -> handle (a context ID, an access). */
  readonly fds?: ReadonlyMap<number, number>
  /** Descriptors the caller must be given (CREATE_ACCESS): pushed by the handler. */
  readonly newFds?: NewFd[]
  /** A real ioctl() through the mount (exec --namespace): no descriptor can be installed in the caller. */
  readonly noDescriptors?: boolean
  /** On a VFIO cdev file: whether BIND_IOMMUFD granted it access (DispatchEnv.vfioAccess). */
  readonly vfioAccess?: boolean
  /**
   * The process whose addresses and descriptor numbers the struct holds, when
   * the server knows it (a real ioctl's caller; a frame's writer when the
   * frame says its addresses are the writer's own, as the shim's do).
   */
  readonly owner?: number
}

/**
 * A descriptor the kernel would install: the shim makes one for `handle`
 * (opening `path` under the mount, or a placeholder the server knows by
 * handle) and writes its number at `offset` in the struct.
 */
export interface NewFd {
  readonly handle: number
  /** Where in the struct the descriptor's number goes; NEWFD_RETVAL: it is the ioctl's return value. */
  readonly offset: number
  /** The file the descriptor opens, relative to the mount root (else the writer keeps a placeholder). */
  readonly path?: string
  /** The object that file belongs to: told who opens it for the caller (IommufdObject.handOut). */
  readonly object?: IommufdObject
}

export const NEWFD_RETVAL = 0xffffffff

/** A command that returns a descriptor, made by a real ioctl() with no supervisor: FUSE cannot install one. Checked first, so nothing is left behind. */
export function needsDescriptors(c: Call, what: string): void {
  if (c.noDescriptors) throw new ErrnoError('EOPNOTSUPP', `${what}: a real ioctl() through FUSE cannot be handed its descriptor; run the program under the shim (iommufs exec) or iommufs exec --namespace`)
}

/** Where descriptor `fd` of process `pid` leads, read from /proc without opening it; EBADF, naming `field`, when it is not open. */
export function descriptorTarget(pid: number, fd: number, field: string): string {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`)
  } catch {
    throw new ErrnoError('EBADF', `${field}=${fd}: not an open descriptor of the caller`)
  }
}

export interface Ioctl {
  /** The kernel's name, e.g. IOMMU_IOAS_ALLOC. */
  readonly name: string
  /** The text protocol's short name, e.g. IOAS_ALLOC. */
  readonly short: string
  readonly cmd: number
  readonly layout: StructLayout
  /** offsetofend of the last field of the first version: smaller sizes are EINVAL. */
  readonly minSize: number
  /**
   * iommufd zero-extends and refuses nonzero tails (E2BIG); VFIO reads its
   * minimum and ignores the rest; 'arg' takes an integer, not a struct, and
   * answers with the ioctl's return value (the layout's `ret`).
   */
  readonly family: 'iommufd' | 'vfio' | 'arg'
  /**
   * The kernel reads the struct with copy_struct_from_user: every byte past
   * it up to `size` must be zero (E2BIG). All of iommufd's commands; of
   * VFIO's, only BIND_IOMMUFD (the others read their minimum and ignore argsz).
   */
  readonly zeroTail: boolean
  readonly handler: (call: Call) => StructValue
  /** Whether a call copies its struct back, where the request decides (else the layout's out fields do). */
  readonly copiesBack?: (struct: Buffer) => boolean
}

/** Whether the kernel writes this call's struct back (so it may not lie in read-only memory). */
export function copiesBack(io: Ioctl, struct: Buffer): boolean {
  return io.copiesBack ? io.copiesBack(struct) : writtenBack(io.layout)
}

/** VFIO_DEVICE_BIND_IOMMUFD, in vfio_df_ioctl_bind_iommufd's order. */
function vfioBind(c: Call): StructValue {
  vfioFlags(c, VfioBindFlag.TOKEN)
  const fd = Number(c.req.iommufd as bigint)
  if (fd < 0) throw new ErrnoError('EINVAL', `iommufd=${fd}: not a descriptor`)
  const pci = requireDevice(c)
  // a file binds once; vfio_df_open: a cdev opens its device once
  if (c.vfioAccess) throw new ErrnoError('EINVAL', `${pci.bdf}: this file is bound already`)
  if (u(c.req, 'flags') & VfioBindFlag.TOKEN) {
    // vfio_pci_core_match_token_uuid: the token is read, and only a PF with SR-IOV or a VF takes one (none here has SR-IOV)
    c.mem.read(b(c.req, 'token_uuid_ptr'), 16n, 'token_uuid_ptr')
    throw new ErrnoError('EINVAL', `flags=TOKEN: ${pci.bdf} is not an SR-IOV PF or VF, so it takes no VF token`)
  }
  const ctx = bindContext(c)
  const owner = c.vfioAccess === false ? ctx.world.ownerOf(pci) : undefined
  if (owner) throw new ErrnoError('EINVAL', `${pci.bdf}: bound through another open of its node (context ${owner.id}); a VFIO cdev device opens once`)
  return { out_devid: BigInt(device.bind(ctx, pci)) }
}

/** The context VFIO_DEVICE_BIND_IOMMUFD binds into: the one its iommufd descriptor names, else the node's own. */
function bindContext(c: Call): IommufdContext {
  let ctx = c.ctx
  if (c.contextById) {
    const fd = Number(c.req.iommufd as bigint)
    // the shim names every iommufd its program holds: another number is another file (EBADFD) or none (EBADF)
    if (c.fds?.size && c.owner && !c.fds.has(fd)) {
      descriptorTarget(c.owner, fd, 'iommufd')
      throw new ErrnoError('EBADFD', `iommufd=${fd}: not an iommufd`)
    }
    const named = c.contextById(fd)
    if (!named) throw new ErrnoError('EBADF', `iommufd=${c.req.iommufd}: not an iommufd context`)
    ctx = named
  }
  if (!ctx) throw new ErrnoError('EBADF', 'iommufd: no context to bind to')
  return ctx
}

function ctxOf(c: Call): IommufdContext {
  if (!c.ctx) throw new ErrnoError('EINVAL', 'this device file is not bound to an iommufd (VFIO_DEVICE_BIND_IOMMUFD first)')
  return c.ctx
}

const u = (s: StructValue, f: string): number => Number(s[f] as bigint)
const b = (s: StructValue, f: string): bigint => s[f] as bigint

const IOMMUFD_TYPE = 0x3b
const iommufdCmd = (nr: number): number => (IOMMUFD_TYPE << 8) | nr
/** VFIO ioctls are _IO(VFIO_TYPE, VFIO_BASE + n) with the same type character. */
const vfioCmd = (n: number): number => (IOMMUFD_TYPE << 8) | (100 + n)

/** iommu_copy_struct_from_user: the driver's struct behind data_uptr, with its length rules. */
function vendorData(call: Call): VendorData {
  const type = u(call.req, 'data_type')
  const len = u(call.req, 'data_len')
  const copy = (want: number, layout: StructLayout, min: number): StructValue => {
    if (type !== want) throw new ErrnoError('EINVAL', `data_type=${type}: the driver expects ${want} (${layout.name})`)
    if (len < min || len > layout.size) throw new ErrnoError('EINVAL', `data_len=${len}: ${layout.name} takes ${min === layout.size ? min : `${min} to ${layout.size}`} bytes`)
    const bytes = Buffer.alloc(layout.size)
    call.mem.read(b(call.req, 'data_uptr'), BigInt(len), 'data_uptr').copy(bytes)
    return decode(layout, bytes)
  }
  return {
    type,
    len,
    armSte: () => {
      const s = copy(HwptDataType.ARM_SMMUV3, S.iommu_hwpt_arm_smmuv3, S.iommu_hwpt_arm_smmuv3.size)
      const [w0, w1] = s.ste as bigint[]
      return [w0, w1]
    },
    vtdS1: () => {
      const s = copy(HwptDataType.VTD_S1, S.iommu_hwpt_vtd_s1, S.iommu_hwpt_vtd_s1.size)
      return { flags: b(s, 'flags'), pgtblAddr: b(s, 'pgtbl_addr'), addrWidth: u(s, 'addr_width'), reserved: u(s, '__reserved') }
    },
    selftest: () => {
      const s = copy(HWPT_DATA_SELFTEST, S.iommu_hwpt_selftest, S.iommu_hwpt_selftest.endOf('iotlb'))
      return { iotlb: u(s, 'iotlb'), pagetableType: u(s, 'pagetable_type') }
    },
  }
}

/**
 * VIOMMU_ALLOC's driver data: the vIOMMU type is the data type, with the
 * core's copy rules (iommu_copy_struct_from_user/to_user): shorter than the
 * struct's minimum is EINVAL, a longer one needs zeros past it (E2BIG), and
 * only data_len bytes are written back.
 */
function viommuData(call: Call): viommu.ViommuData {
  const len = u(call.req, 'data_len')
  const uptr = b(call.req, 'data_uptr')
  const L = S.iommu_viommu_selftest
  return {
    len,
    selftestIn: () => {
      const min = L.endOf('out_data')
      if (len < min) throw new ErrnoError('EINVAL', `data_len=${len}: iommu_viommu_selftest takes at least ${min} bytes`)
      const raw = call.mem.read(uptr, BigInt(len), 'data_uptr')
      if (raw.length > L.size && raw.subarray(L.size).some((x) => x !== 0)) throw new ErrnoError('E2BIG', `data_len=${len}: bytes past the ${L.size}-byte struct are nonzero`)
      const full = Buffer.alloc(L.size)
      raw.copy(full, 0, 0, Math.min(raw.length, L.size))
      return u(decode(L, full), 'in_data')
    },
    selftestOut: (o) => {
      const out = encode(L, { in_data: BigInt(o.inData), out_data: BigInt(o.inData), out_mmap_offset: o.offset, out_mmap_length: o.length })
      call.mem.write(uptr, out.subarray(0, Math.min(len, L.size)), 'data_uptr')
    },
  }
}

/** HWPT_ALLOC of a KVM stage 2 (extension): pt_id is ignored, as in the RFC. */
function kvmHwptAlloc(c: Call): number {
  return hwptAllocKvm(ctxOf(c), {
    flags: u(c.req, 'flags'),
    devId: u(c.req, 'dev_id'),
    reserved: u(c.req, '__reserved'),
    dataLen: u(c.req, 'data_len'),
    dataUptr: b(c.req, 'data_uptr'),
    fd: () => b(decode(S.iommu_hwpt_kvm_info, c.mem.read(b(c.req, 'data_uptr'), BigInt(S.iommu_hwpt_kvm_info.size), 'data_uptr')), 'fd'),
  })
}

/** An ARM command entry of `len` bytes: zero-extended if shorter, E2BIG if longer with a nonzero tail. */
function copyArmEntry(bytes: Buffer, index: number): Command {
  const L = S.iommu_viommu_arm_smmuv3_invalidate
  if (bytes.length > L.size && bytes.subarray(L.size).some((x) => x !== 0)) throw new ErrnoError('E2BIG', `entry ${index}: bytes past the 16-byte command are nonzero`)
  const full = Buffer.alloc(L.size)
  bytes.copy(full, 0, 0, Math.min(bytes.length, L.size))
  const [w0, w1] = decode(L, full).cmd as bigint[]
  return [w0, w1]
}

/** A VT-d entry: exactly the struct's size, else EINVAL (driver data is stricter than the main struct). */
function copyVtdEntry(bytes: Buffer, index: number): VtdInvEntry {
  const L = S.iommu_hwpt_vtd_s1_invalidate
  if (bytes.length !== L.size) throw new ErrnoError('EINVAL', `entry ${index}: entry_len=${bytes.length}, iommu_hwpt_vtd_s1_invalidate is ${L.size} bytes`)
  const e = decode(L, bytes)
  return { addr: b(e, 'addr'), npages: b(e, 'npages'), flags: u(e, 'flags'), reserved: u(e, '__reserved') }
}

function entryArray(call: Call): EntryArray {
  const r = call.req
  const addr = b(r, 'data_uptr')
  const len = u(r, 'entry_len')
  const num = u(r, 'entry_num')
  return {
    type: u(r, 'data_type'),
    entryLen: len,
    entryNum: num,
    armCommands: () => {
      const raw = call.mem.read(addr, BigInt(len) * BigInt(num), 'data_uptr')
      return Array.from({ length: num }, (_, i) => copyArmEntry(raw.subarray(i * len, (i + 1) * len), i))
    },
    vtdEntry: (i) => copyVtdEntry(call.mem.read(addr + BigInt(i * len), BigInt(len), 'data_uptr'), i),
    rawEntry: (i) => call.mem.read(addr + BigInt(i * len), BigInt(len), 'data_uptr'),
  }
}

function hwptInvalidate(call: Call): StructValue {
  const r = call.req
  try {
    const handled = invalidate.hwptInvalidate(ctxOf(call), u(r, 'hwpt_id'), u(r, '__reserved'), b(r, 'data_uptr'), entryArray(call))
    return { entry_num: BigInt(handled) }
  } catch (e) {
    // entry_num is always written back: the driver's count, or 0 before it ran
    if (e instanceof ErrnoError) throw new IoctlError(e, { entry_num: BigInt(e instanceof PartialError ? e.handled : 0) })
    throw e
  }
}

function hwptInvalidateRing(call: Call): StructValue {
  const r = call.req
  const q = b(r, 'q_uptr')
  const len = u(r, 'q_entry_len')
  const consAddr = b(r, 'q_cons_uptr')
  const cons = call.mem.read(consAddr, 4n, 'q_cons_uptr').readUInt32LE(0)
  const entry = (i: number): Buffer => call.mem.read(q + BigInt(i * len), BigInt(len), 'q_uptr')
  const outcome = invalidate.hwptInvalidateRing(ctxOf(call), {
    hwptId: u(r, 'hwpt_id'),
    reserved: u(r, '__reserved'),
    dataType: u(r, 'data_type'),
    indexBits: u(r, 'q_index_bits'),
    entryNum: u(r, 'q_entry_num'),
    entryLen: len,
    prod: u(r, 'q_prod'),
    cons,
    armEntry: (i) => copyArmEntry(entry(i), i),
    vtdEntry: (i) => copyVtdEntry(entry(i), i),
  })
  const out = Buffer.alloc(4)
  out.writeUInt32LE(outcome.cons >>> 0)
  call.mem.write(consAddr, out, 'q_cons_uptr')
  if (outcome.error) throw new IoctlError(outcome.error, {})
  return {}
}

function readRanges(call: Call): IovaRange[] {
  const count = u(call.req, 'num_iovas')
  const { max, errno } = LIMITS.allowedIovas
  if (count > max) throw new ErrnoError(errno, `num_iovas=${count}: iommufs takes at most ${max} ranges`)
  const L = S.iommu_iova_range
  const raw = call.mem.read(b(call.req, 'allowed_iovas'), BigInt(count) * BigInt(L.size), 'allowed_iovas')
  // read at the layout's offsets: the generic decode per range costs more than the whole check
  const [start, last] = [L.field('start').offset, L.field('last').offset]
  return Array.from({ length: count }, (_, i) => ({ start: raw.readBigUInt64LE(i * L.size + start), last: raw.readBigUInt64LE(i * L.size + last) }))
}

function ioasIovaRanges(call: Call): StructValue {
  const { ranges, alignment } = ioas.ioasIovaRanges(ctxOf(call), u(call.req, 'ioas_id'), u(call.req, '__reserved'))
  const capacity = u(call.req, 'num_iovas')
  const fit = ranges.slice(0, capacity)
  const L = S.iommu_iova_range
  const data = Buffer.allocUnsafe(fit.length * L.size).fill(0)
  const [start, last] = [L.field('start').offset, L.field('last').offset]
  fit.forEach((r, i) => {
    data.writeBigUInt64LE(r.start, i * L.size + start)
    data.writeBigUInt64LE(r.last, i * L.size + last)
  })
  call.mem.write(b(call.req, 'allowed_iovas'), data, 'allowed_iovas')
  const out = { num_iovas: BigInt(ranges.length), out_iova_alignment: alignment }
  if (ranges.length > capacity) throw new IoctlError(new ErrnoError('EMSGSIZE', `num_iovas=${capacity}: ${ranges.length} ranges do not fit`), out)
  return out
}

function hwInfo(call: Call): StructValue {
  const r = call.req
  const reservedBytes = (r.__reserved as bigint[]).reduce((a, x) => (a << 8n) | x, 0n)
  const { info, maxPasidLog2, capabilities } = device.hwInfo(ctxOf(call), u(r, 'flags'), u(r, 'dev_id'), u(r, 'out_data_type'), reservedBytes)
  const { type, ...fields } = info
  const layout = type === HwInfoType.ARM_SMMUV3 ? S.iommu_hw_info_arm_smmuv3 : type === HwInfoType.SELFTEST ? S.iommu_test_hw_info : S.iommu_hw_info_vtd
  const blob = encode(layout, {
    ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, Array.isArray(v) ? v : BigInt(v)])),
  })
  // the user's buffer gets min(its length, the blob) and zeros after
  const userLen = u(r, 'data_len')
  const user = Buffer.alloc(userLen)
  blob.copy(user, 0, 0, Math.min(userLen, blob.length))
  call.mem.write(b(r, 'data_uptr'), user, 'data_uptr')
  return { data_len: BigInt(blob.length), out_data_type: BigInt(type), out_max_pasid_log2: BigInt(maxPasidLog2), out_capabilities: capabilities }
}

function requireDevice(call: Call): PciDevice {
  if (!call.device) throw new ErrnoError('EINVAL', 'no device: send VFIO commands to a dev/vfio/devices/vfio<N> node, or name the device (pci= or dev_id=)')
  return call.device
}

/** The ID the addressed device is bound as in the context (EINVAL when it is not bound there). */
function boundDevice(call: Call): number {
  const pci = requireDevice(call)
  const dev = ctxOf(call).deviceOf(pci)
  if (!dev) throw new ErrnoError('EINVAL', `${pci.bdf}: not bound to context ${ctxOf(call).id} (VFIO_DEVICE_BIND_IOMMUFD first)`)
  return dev.id
}

function vfioFlags(call: Call, known: number): void {
  const flags = u(call.req, 'flags')
  if (flags & ~known) throw new ErrnoError('EINVAL', `flags=0x${flags.toString(16)}: unknown bits`)
}

/**
 * ATTACH/DETACH flags as vfio_df_ioctl_attach_pt checks them: unknown bits
 * EINVAL; with PASID the struct must reach `pasid` (argsz, EINVAL). Returns
 * the PASID, or undefined for the RID form.
 */
function pasidOf(call: Call, layout: StructLayout): number | undefined {
  vfioFlags(call, VfioAttachFlag.PASID)
  if (!(u(call.req, 'flags') & VfioAttachFlag.PASID)) return undefined
  const end = layout.endOf('pasid')
  const argsz = u(call.req, 'argsz')
  if (argsz < end) throw new ErrnoError('EINVAL', `argsz=${argsz}: flags=PASID needs ${end} bytes (through pasid)`)
  return u(call.req, 'pasid')
}

/**
 * IOMMUFS_DMA: one DMA by a bound device through its IOMMU. A fault, an
 * abort or a stop by the sanitizer is a result (out_status, out_event), not
 * an error; errors are the DMA port's (EINVAL, E2BIG, EOPNOTSUPP).
 */
function dmaIoctl(c: Call): StructValue {
  const r = c.req
  const flags = u(r, 'flags')
  const known = Object.values(DmaFlag).reduce((a, f) => a | f, 0)
  if (flags & ~known) throw new ErrnoError('EOPNOTSUPP', `flags=0x${flags.toString(16)}: unknown bits 0x${(flags & ~known).toString(16)}`)
  const dev = ctxOf(c).device(u(r, 'dev_id'))
  const write = (flags & DmaFlag.WRITE) !== 0
  const translate = (flags & DmaFlag.TRANSLATE) !== 0
  if (write && translate) throw new ErrnoError('EINVAL', 'flags: WRITE and TRANSLATE exclude each other')
  const len = u(r, 'length')
  if (!translate) checkDmaLength(len, `length=${len}`)
  const data = write ? c.mem.read(b(r, 'in_data_uptr'), BigInt(len), 'in_data_uptr') : undefined
  const res = deviceDma(ctxOf(c).world, dev.pci.bdf, {
    op: translate ? 'translate' : write ? 'write' : 'read',
    iova: b(r, 'iova'),
    len: translate ? 0 : len,
    data,
    pasid: flags & DmaFlag.PASID ? u(r, 'pasid') : undefined,
    priv: (flags & DmaFlag.PRIV) !== 0,
    exec: (flags & DmaFlag.EXEC) !== 0,
    ats: (flags & DmaFlag.ATS) !== 0,
  })
  if (!write && !translate && res.data) {
    const out = Buffer.alloc(len)
    res.data.copy(out)
    c.mem.write(b(r, 'out_data_uptr'), out, 'out_data_uptr')
  }
  const event = res.arch === 'arm-smmu-v3' ? (res.event ? encodeEvent(res.event) : undefined) : res.fault ? [...encodeFault(res.fault), 0n, 0n] : undefined
  const status = res.pending !== undefined ? DmaStatus.PENDING : event ? DmaStatus.FAULT : res.abort ? DmaStatus.ABORT : res.stopped ? DmaStatus.STOPPED : DmaStatus.OK
  const first = res.ats ?? res.pieces[0]
  return {
    out_status: BigInt(status),
    // PENDING: the id `result dma=N` on the device's port answers for
    out_addr: res.pending !== undefined ? BigInt(res.pending) : (first?.out ?? 0n),
    out_perms: BigInt(first?.perms ?? 0),
    out_findings: BigInt(res.findings.length),
    // SMMUv3: the 32-byte event record; VT-d: the 16-byte fault record, then zeros
    out_event: event ?? [0n, 0n, 0n, 0n],
  }
}

function ioctl(name: string, nr: number, layout: StructLayout, lastOriginal: string, handler: (c: Call) => StructValue): Ioctl {
  return { name, short: name.replace(/^IOMMU_/, ''), cmd: iommufdCmd(nr), layout, minSize: layout.endOf(lastOriginal), family: 'iommufd', zeroTail: true, handler }
}

function vfio(name: string, short: string, n: number, layout: StructLayout, minField: string, handler: (c: Call) => StructValue): Ioctl {
  return { name, short, cmd: vfioCmd(n), layout, minSize: layout.endOf(minField), family: 'vfio', zeroTail: false, handler }
}

/** A VFIO container ioctl taking an integer argument and returning a value. */
function vfioArg(name: string, n: number, handler: (c: Call, arg: bigint) => number): Ioctl {
  return {
    name,
    short: name.replace(/^VFIO_/, ''),
    cmd: vfioCmd(n),
    layout: S.vfio_compat_arg,
    minSize: 0,
    family: 'arg',
    zeroTail: false,
    handler: (c) => ({ ret: BigInt(handler(c, b(c.req, 'arg'))) }),
  }
}

const FEATURE = { MASK: 0xffff, GET: 1 << 16, SET: 1 << 17, PROBE: 1 << 18 } as const

/** VFIO_DEVICE_FEATURE (vfio_ioctl_device_feature): the flag rules, then ENOTTY, as vfio-pci without migration or DMA logging answers every feature. */
function vfioDeviceFeature(c: Call): StructValue {
  requireDevice(c)
  const flags = u(c.req, 'flags')
  if (flags & ~(FEATURE.MASK | FEATURE.GET | FEATURE.SET | FEATURE.PROBE)) throw new ErrnoError('EINVAL', `flags=0x${flags.toString(16)}: unknown bits`)
  if (!(flags & FEATURE.PROBE) && flags & FEATURE.SET && flags & FEATURE.GET) throw new ErrnoError('EINVAL', `flags=0x${flags.toString(16)}: GET and SET together need PROBE`)
  throw new ErrnoError('ENOTTY', `flags=0x${flags.toString(16)}: feature ${flags & FEATURE.MASK} is not supported by this device`)
}

function vfioGetInfo(c: Call): StructValue {
  const argsz = u(c.req, 'argsz')
  const info = VC.getInfo(ctxOf(c), argsz)
  for (const w of info.caps) {
    if (c.arg === undefined) throw new ErrnoError('EFAULT', 'the capability chain needs the struct address (send the ARG entry)')
    c.mem.write(c.arg + BigInt(w.offset), w.data, 'caps')
  }
  return { argsz: BigInt(info.argsz), flags: BigInt(info.flags), iova_pgsizes: info.iovaPgsizes, cap_offset: BigInt(info.capOffset) }
}

/** The ioctl table: number, struct, minimum size and handler, as the kernel's iommufd_ioctl_ops. */
export const IOCTLS: readonly Ioctl[] = [
  ioctl('IOMMU_DESTROY', 0x80, S.iommu_destroy, 'id', (c) => (ctxOf(c).destroy(u(c.req, 'id')), {})),
  ioctl('IOMMU_IOAS_ALLOC', 0x81, S.iommu_ioas_alloc, 'out_ioas_id', (c) => ({ out_ioas_id: BigInt(ioas.ioasAlloc(ctxOf(c), u(c.req, 'flags'))) })),
  ioctl('IOMMU_IOAS_ALLOW_IOVAS', 0x82, S.iommu_ioas_allow_iovas, 'allowed_iovas', (c) => {
    ioas.ioasAllowIovas(ctxOf(c), u(c.req, 'ioas_id'), u(c.req, '__reserved'), () => readRanges(c))
    return {}
  }),
  ioctl('IOMMU_IOAS_COPY', 0x83, S.iommu_ioas_copy, 'src_iova', (c) => ({
    dst_iova: ioas.ioasCopy(ctxOf(c), {
      flags: u(c.req, 'flags'),
      dstIoasId: u(c.req, 'dst_ioas_id'),
      srcIoasId: u(c.req, 'src_ioas_id'),
      length: b(c.req, 'length'),
      dstIova: b(c.req, 'dst_iova'),
      srcIova: b(c.req, 'src_iova'),
    }),
  })),
  ioctl('IOMMU_IOAS_IOVA_RANGES', 0x84, S.iommu_ioas_iova_ranges, 'out_iova_alignment', ioasIovaRanges),
  ioctl('IOMMU_IOAS_MAP', 0x85, S.iommu_ioas_map, 'iova', (c) => ({
    iova: ioas.ioasMap(
      ctxOf(c),
      {
        flags: u(c.req, 'flags'),
        ioasId: u(c.req, 'ioas_id'),
        reserved: u(c.req, '__reserved'),
        userVa: b(c.req, 'user_va'),
        length: b(c.req, 'length'),
        iova: b(c.req, 'iova'),
      },
      // a known caller (a real ioctl, a shim frame): DMA reaches that process's memory
      c.owner,
    ),
  })),
  ioctl('IOMMU_IOAS_UNMAP', 0x86, S.iommu_ioas_unmap, 'length', (c) => ({ length: ioas.ioasUnmap(ctxOf(c), u(c.req, 'ioas_id'), b(c.req, 'iova'), b(c.req, 'length')) })),
  ioctl('IOMMU_OPTION', 0x87, S.iommu_option, 'val64', (c) => ({
    val64: ctxOf(c).option(u(c.req, 'option_id'), u(c.req, 'op'), u(c.req, '__reserved'), u(c.req, 'object_id'), b(c.req, 'val64')),
  })),
  {
    ...ioctl('IOMMU_VFIO_IOAS', 0x88, S.iommu_vfio_ioas, '__reserved', (c) => ({
      ioas_id: BigInt(vfioIoasOp(ctxOf(c), u(c.req, 'ioas_id'), u(c.req, 'op'), u(c.req, '__reserved'))),
    })),
    // only GET answers with the struct; SET and CLEAR take a const one
    copiesBack: (struct) => struct.length < S.iommu_vfio_ioas.endOf('op') || struct.readUInt16LE(S.iommu_vfio_ioas.field('op').offset) === VfioIoasOp.GET,
  },
  ioctl('IOMMU_HWPT_ALLOC', 0x89, S.iommu_hwpt_alloc, '__reserved', (c) => ({
    out_hwpt_id: BigInt(
      u(c.req, 'data_type') === HWPT_DATA_IOMMUFS_KVM ? kvmHwptAlloc(c) : hwpt.hwptAlloc(ctxOf(c), {
        flags: u(c.req, 'flags'),
        devId: u(c.req, 'dev_id'),
        ptId: u(c.req, 'pt_id'),
        reserved: u(c.req, '__reserved'),
        data: vendorData(c),
        faultId: u(c.req, 'fault_id'),
      }),
    ),
  })),
  // the kernel's IOCTL_OP entry names __reserved: min size 32 (§2)
  ioctl('IOMMU_GET_HW_INFO', 0x8a, S.iommu_hw_info, '__reserved', hwInfo),
  ioctl('IOMMU_HWPT_SET_DIRTY_TRACKING', 0x8b, S.iommu_hwpt_set_dirty_tracking, '__reserved', (c) => {
    hwpt.setDirtyTracking(ctxOf(c), u(c.req, 'flags'), u(c.req, 'hwpt_id'))
    return {}
  }),
  ioctl('IOMMU_HWPT_GET_DIRTY_BITMAP', 0x8c, S.iommu_hwpt_get_dirty_bitmap, 'data', (c) => {
    const r = c.req
    const bitmap = hwpt.dirtyBitmap(ctxOf(c), u(r, 'hwpt_id'), u(r, 'flags'), u(r, '__reserved'), b(r, 'iova'), b(r, 'length'), b(r, 'page_size'))
    // iova_bitmap_set only sets bits, in the user pages it can pin; bits for pages it cannot pin are lost and the ioctl still answers 0
    const data = b(r, 'data')
    const had = orEfault(() => c.mem.read(data, BigInt(bitmap.length), 'data'))
    if (had) for (let i = 0; i < bitmap.length; i++) bitmap[i] |= had[i]
    orEfault(() => c.mem.write(data, bitmap, 'data'))
    return {}
  }),
  ioctl('IOMMU_HWPT_INVALIDATE', 0x8d, S.iommu_hwpt_invalidate, '__reserved', hwptInvalidate),
  ioctl('IOMMU_FAULT_QUEUE_ALLOC', 0x8e, S.iommu_fault_alloc, 'out_fault_fd', (c) => {
    const ctx = ctxOf(c)
    needsDescriptors(c, 'FAULT_QUEUE_ALLOC')
    const f = eventq.faultAlloc(ctx, u(c.req, 'flags'))
    // the descriptor is the queue's file on the mount: reads take page requests, writes answer them
    c.newFds?.push({ handle: f.id, offset: S.iommu_fault_alloc.field('out_fault_fd').offset, path: eventq.queuePath(ctx, f), object: f })
    return { out_fault_id: BigInt(f.id), out_fault_fd: BigInt(f.id) }
  }),
  ioctl('IOMMU_IOAS_MAP_FILE', 0x8f, S.iommu_ioas_map_file, 'iova', (c) => {
    const fd = Number(c.req.fd as bigint)
    // a text path=, else the caller's own descriptor, reopened as root through /proc (a memfd too)
    const path = c.files?.get(fd) ?? (c.owner && fd >= 0 ? `/proc/${c.owner}/fd/${fd}` : undefined)
    const open = (writable: boolean): SizedBacking => {
      if (path === undefined) throw new ErrnoError('EBADF', `fd=${fd}: the caller's file descriptors are not visible to the model; name the file with path= (text), or run the program under the shim`)
      // a file this server answers for would wait on itself: only a DMA-BUF's is memory (the model's own)
      const text = c.files?.has(fd) === true
      if (text ? pathIsServedHere(path) : fdIsServedHere(c.owner!, fd)) {
        const named = text ? `path=${path}` : `fd=${fd}`
        const d = dmabufAt(ctxOf(c).world, text ? path : descriptorTarget(c.owner!, fd, 'fd'))
        if (!d) throw new ErrnoError('EINVAL', `${named}: a file of this iommufs mount cannot back a mapping (only a DMA-BUF's can)`)
        if (d.revoked) throw new ErrnoError('ENODEV', `${named}: DMA-BUF ${d.id} is revoked`)
        return d
      }
      try {
        return FileBacking.open(path, writable, text)
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? 'cannot open'
        if (c.files?.has(fd)) throw new ErrnoError('EBADF', `path=${path}: ${code}`)
        // no such descriptor is EBADF (fget); one that cannot back memory (a socket, a directory) is EINVAL
        if (code === 'ENOENT') throw new ErrnoError('EBADF', `fd=${fd}: not an open descriptor of the caller`)
        throw new ErrnoError('EINVAL', `fd=${fd}: cannot map it (${code})`)
      }
    }
    return { iova: ioas.ioasMapFile(ctxOf(c), { flags: u(c.req, 'flags'), ioasId: u(c.req, 'ioas_id'), start: b(c.req, 'start'), length: b(c.req, 'length'), iova: b(c.req, 'iova') }, open, c.owner) }
  }),
  ioctl('IOMMU_VIOMMU_ALLOC', 0x90, S.iommu_viommu_alloc, 'out_viommu_id', (c) => ({
    out_viommu_id: BigInt(viommu.viommuAlloc(ctxOf(c), u(c.req, 'flags'), u(c.req, 'type'), u(c.req, 'dev_id'), u(c.req, 'hwpt_id'), viommuData(c))),
  })),
  ioctl('IOMMU_VDEVICE_ALLOC', 0x91, S.iommu_vdevice_alloc, 'virt_id', (c) => ({
    out_vdevice_id: BigInt(viommu.vdeviceAlloc(ctxOf(c), u(c.req, 'viommu_id'), u(c.req, 'dev_id'), b(c.req, 'virt_id'))),
  })),
  ioctl('IOMMU_IOAS_CHANGE_PROCESS', 0x92, S.iommu_ioas_change_process, '__reserved', (c) => (ioas.ioasChangeProcess(ctxOf(c), u(c.req, '__reserved'), c.owner), {})),
  ioctl('IOMMU_VEVENTQ_ALLOC', 0x93, S.iommu_veventq_alloc, 'out_veventq_fd', (c) => {
    const ctx = ctxOf(c)
    needsDescriptors(c, 'VEVENTQ_ALLOC')
    const q = veventq.veventqAlloc(ctx, { flags: u(c.req, 'flags'), viommuId: u(c.req, 'viommu_id'), type: u(c.req, 'type'), depth: u(c.req, 'veventq_depth'), reserved: u(c.req, '__reserved') })
    // the descriptor is the queue's file on the mount: reads take whole records, poll() waits for one
    c.newFds?.push({ handle: q.id, offset: S.iommu_veventq_alloc.field('out_veventq_fd').offset, path: eventq.queuePath(ctx, q), object: q })
    return { out_veventq_id: BigInt(q.id), out_veventq_fd: BigInt(q.id) }
  }),
  ioctl('IOMMU_HW_QUEUE_ALLOC', 0x94, S.iommu_hw_queue_alloc, 'length', (c) => ({
    out_hw_queue_id: BigInt(
      hwQueueAlloc(ctxOf(c), {
        flags: u(c.req, 'flags'),
        viommuId: u(c.req, 'viommu_id'),
        type: u(c.req, 'type'),
        index: u(c.req, 'index'),
        iova: b(c.req, 'nesting_parent_iova'),
        length: b(c.req, 'length'),
      }),
    ),
  })),
  // the selftest's command: the kernel has it only with CONFIG_IOMMUFD_TEST (docs/extensions.md)
  { ...ioctl('IOMMU_TEST_CMD', 0xa0, S.iommu_test_cmd, 'last', testCmd), short: 'TEST_CMD' },

  // iommufs extensions, in a range the kernel does not use (docs/extensions.md)
  { ...ioctl('IOMMUFS_HWPT_INVALIDATE_RING', 0xc0, S.iommufs_hwpt_invalidate_ring, '__reserved', hwptInvalidateRing), short: 'HWPT_INVALIDATE_RING' },
  {
    ...ioctl('IOMMUFS_VCMDQ_ALLOC', 0xc1, S.iommufs_vcmdq_alloc, 'out_vcmdq_id', (c) => ({
      out_vcmdq_id: BigInt(vcmdq.vcmdqAlloc(ctxOf(c), u(c.req, 'flags'), u(c.req, 'viommu_id'), u(c.req, 'log2size'))),
    })),
    short: 'VCMDQ_ALLOC',
  },
  { ...ioctl('IOMMUFS_DMA', 0xc2, S.iommufs_dma, 'out_event', dmaIoctl), short: 'DMA' },
  {
    ...ioctl('IOMMUFS_MMAP', 0xc3, S.iommufs_mmap, 'addr', (c) => {
      const ctx = ctxOf(c)
      const flags = u(c.req, 'flags')
      mustBeZero(u(c.req, '__reserved'), '__reserved')
      if (flags & MmapFlag.FILE) {
        if (!u(c.req, 'pid')) throw new ErrnoError('EINVAL', 'pid: FILE names the process that maps the file')
        const file = { pid: u(c.req, 'pid'), devMajor: u(c.req, 'dev_major'), devMinor: u(c.req, 'dev_minor'), ino: b(c.req, 'ino') }
        ctx.mmaps.map(b(c.req, 'offset'), b(c.req, 'length'), flags, file)
        return {}
      }
      for (const f of ['pid', 'dev_major', 'dev_minor', 'ino'] as const) mustBeZero(b(c.req, f), f)
      const region = ctx.mmaps.map(b(c.req, 'offset'), b(c.req, 'length'), flags)
      try {
        c.mem.write(b(c.req, 'addr'), region.data, 'addr')
      } catch (e) {
        ctx.mmaps.unmap(region.offset)
        throw e
      }
      return {}
    }),
    short: 'MMAP',
  },
  { ...ioctl('IOMMUFS_MUNMAP', 0xc4, S.iommufs_munmap, 'offset', (c) => {
      mustBeZero(u(c.req, '__reserved'), '__reserved')
      ctxOf(c).mmaps.unmap(b(c.req, 'offset'))
      return {}
    }), short: 'MUNMAP' },

  // VFIO type1 on the iommufd node itself (vfio_compat.c)
  vfioArg('VFIO_GET_API_VERSION', 0, () => VC.VFIO_API_VERSION),
  vfioArg('VFIO_CHECK_EXTENSION', 1, (c, arg) => VC.checkExtension(ctxOf(c), arg)),
  vfioArg('VFIO_SET_IOMMU', 2, (c, arg) => (VC.setIommu(ctxOf(c), arg), 0)),
  vfio('VFIO_IOMMU_GET_INFO', 'IOMMU_GET_INFO', 12, S.vfio_iommu_type1_info, 'iova_pgsizes', vfioGetInfo),
  vfio('VFIO_IOMMU_MAP_DMA', 'IOMMU_MAP_DMA', 13, S.vfio_iommu_type1_dma_map, 'size', (c) => {
    VC.mapDma(ctxOf(c), { argszOk: true, flags: u(c.req, 'flags'), vaddr: b(c.req, 'vaddr'), iova: b(c.req, 'iova'), size: b(c.req, 'size') }, c.owner)
    return {}
  }),
  vfio('VFIO_IOMMU_UNMAP_DMA', 'IOMMU_UNMAP_DMA', 14, S.vfio_iommu_type1_dma_unmap, 'size', (c) => {
    try {
      return { size: VC.unmapDma(ctxOf(c), { argszOk: true, flags: u(c.req, 'flags'), iova: b(c.req, 'iova'), size: b(c.req, 'size') }) }
    } catch (e) {
      // the kernel writes the bytes unmapped (none) back whatever iopt_unmap_iova answered
      throw e instanceof VC.UnmapFailed ? new IoctlError(e, { size: 0n }) : e
    }
  }),

  vfio('VFIO_DEVICE_GET_INFO', 'DEVICE_GET_INFO', 7, S.vfio_device_info, 'num_irqs', (c) => {
    requireDevice(c)
    return { flags: BigInt(vfioPci.DEVICE_FLAGS), num_regions: BigInt(vfioPci.NUM_REGIONS), num_irqs: BigInt(vfioPci.NUM_IRQS), cap_offset: 0n }
  }),
  vfio('VFIO_DEVICE_GET_REGION_INFO', 'DEVICE_GET_REGION_INFO', 8, S.vfio_region_info, 'offset', (c) => {
    requireDevice(c)
    const r = vfioPci.regionInfo(u(c.req, 'index'))
    return { flags: BigInt(r.flags), cap_offset: 0n, size: r.size, offset: r.offset }
  }),
  vfio('VFIO_DEVICE_GET_IRQ_INFO', 'DEVICE_GET_IRQ_INFO', 9, S.vfio_irq_info, 'count', (c) => {
    requireDevice(c)
    const r = vfioPci.irqInfo(u(c.req, 'index'))
    return { flags: BigInt(r.flags), count: BigInt(r.count) }
  }),
  vfioArg('VFIO_DEVICE_RESET', 11, (c) => {
    // a function GET_INFO says can be reset (FLAGS_RESET): the model has no device state to lose
    requireDevice(c)
    return 0
  }),
  vfio('VFIO_DEVICE_FEATURE', 'DEVICE_FEATURE', 17, S.vfio_device_feature, 'flags', vfioDeviceFeature),
  {
    ...vfio('VFIO_DEVICE_BIND_IOMMUFD', 'DEVICE_BIND', 18, S.vfio_device_bind_iommufd, 'out_devid', vfioBind),
    // vfio_df_ioctl_bind_iommufd reads the struct with copy_struct_from_user
    zeroTail: true,
  },
  vfio('VFIO_DEVICE_ATTACH_IOMMUFD_PT', 'DEVICE_ATTACH', 19, S.vfio_device_attach_iommufd_pt, 'pt_id', (c) => {
    const pasid = pasidOf(c, S.vfio_device_attach_iommufd_pt)
    const devId = boundDevice(c)
    const ptId = u(c.req, 'pt_id')
    const dev = ctxOf(c).device(devId)
    if (pasid === undefined) {
      // vfio_iommufd_physical_attach_ioas: a RID VFIO attached as PASID 0 is not iommufd_attached, so this is a new attach
      if (dev.ridAsPasid0) throw new ErrnoError('EBUSY', `the RID is attached as pasid=0 (HWPT ${dev.hwpt?.id}); detach it with flags=PASID pasid=0`)
      return { pt_id: BigInt(device.attach(ctxOf(c), devId, ptId)) }
    }
    // vfio_iommufd_physical_pasid_attach_ioas: a PASID in the device's IDA is replaced; PASID 0 is the RID
    const attached = pasid === device.NO_PASID ? dev.ridAsPasid0 : dev.pasids.has(pasid)
    const id = (attached ? device.pasidReplace : device.pasidAttach)(ctxOf(c), devId, pasid, ptId)
    if (pasid === device.NO_PASID) dev.ridAsPasid0 = true
    return { pt_id: BigInt(id) }
  }),
  vfio('VFIO_DEVICE_DETACH_IOMMUFD_PT', 'DEVICE_DETACH', 20, S.vfio_device_detach_iommufd_pt, 'flags', (c) => {
    const pasid = pasidOf(c, S.vfio_device_detach_iommufd_pt)
    const dev = ctxOf(c).device(boundDevice(c))
    // each detach ends only what its own attach made: a plain detach leaves a RID attached as PASID 0, and the reverse
    const made = pasid === undefined ? !dev.ridAsPasid0 : pasid !== device.NO_PASID || dev.ridAsPasid0
    if (made && pasid === undefined) device.detach(ctxOf(c), dev.id)
    else if (made) device.pasidDetach(ctxOf(c), dev.id, pasid!)
    return {}
  }),
]

/** What `f` returns, or undefined where it fails to reach the caller's memory (EFAULT). */
function orEfault<T>(f: () => T): T | undefined {
  try {
    return f()
  } catch (e) {
    if (e instanceof ErrnoError && e.errno === 'EFAULT') return undefined
    throw e
  }
}

/** Undo: the object whose ID the reply carries in `field` is destroyed again (iommufd_object_abort_and_destroy). */
const destroyOut =
  (field: string) =>
  (c: Call, out: StructValue): void => {
    const ctx = ctxOf(c)
    const obj = ctx.objects.find(Number(out[field] as bigint))
    if (obj) ctx.destroyObject(obj)
  }

/**
 * What the kernel takes back when copying the struct to the caller fails
 * (EFAULT), by command: an object it made is destroyed before it is ever
 * seen (main.c, ioas.c, hwpt.c, viommu.c, eventq.c), a bind or attach of a
 * VFIO cdev is undone (vfio/device_cdev.c), and some selftest ops are taken
 * back by the mock (undoTestCmd). A command not named here keeps
 * its effect and answers EFAULT: IOAS_MAP keeps its mapping, IOAS_UNMAP has
 * unmapped, OPTION SET has set, HWPT_INVALIDATE has invalidated.
 */
export const UNDO_ON_COPY_OUT: ReadonlyMap<string, (c: Call, out: StructValue) => void> = new Map([
  ['IOMMU_IOAS_ALLOC', destroyOut('out_ioas_id')],
  ['IOMMU_HWPT_ALLOC', destroyOut('out_hwpt_id')],
  ['IOMMU_FAULT_QUEUE_ALLOC', destroyOut('out_fault_id')],
  ['IOMMU_VIOMMU_ALLOC', destroyOut('out_viommu_id')],
  ['IOMMU_VDEVICE_ALLOC', destroyOut('out_vdevice_id')],
  ['IOMMU_VEVENTQ_ALLOC', destroyOut('out_veventq_id')],
  ['IOMMUFS_VCMDQ_ALLOC', destroyOut('out_vcmdq_id')],
  [
    'VFIO_DEVICE_BIND_IOMMUFD',
    (c, out) => {
      // the context the bind went into: a device node's own is not known until the bind succeeds
      const ctx = bindContext(c)
      const dev = ctx.objects.find(Number(out.out_devid as bigint))
      if (dev instanceof device.Device) device.unbind(ctx, dev)
    },
  ],
  [
    'VFIO_DEVICE_ATTACH_IOMMUFD_PT',
    // vfio_df_ioctl_attach_pt's out_detach: the PASID's detach for a PASID attach, else the RID's
    (c) => (u(c.req, 'flags') & VfioAttachFlag.PASID ? device.pasidDetach(ctxOf(c), boundDevice(c), u(c.req, 'pasid')) : device.detach(ctxOf(c), boundDevice(c))),
  ],
  // the mock's own: a mock device, an access or pinned pages it made (test-cmd.ts)
  ['IOMMU_TEST_CMD', (c, out) => undoTestCmd(c, out)],
])

const BY_CMD = new Map(IOCTLS.map((i) => [i.cmd, i]))

export function ioctlByCmd(cmd: number): Ioctl | undefined {
  return BY_CMD.get(cmd)
}

/** IOAS_ALLOC, ioas_alloc, IOMMU_IOAS_ALLOC, DEVICE_BIND... */
export function ioctlByName(name: string): Ioctl | undefined {
  const n = name.toUpperCase()
  return IOCTLS.find((i) => i.name === n || i.short === n || `IOMMU_${i.short}` === n)
}
