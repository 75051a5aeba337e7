import { IommufdContext } from '../iommufd/context'
import { PciDevice } from '../hw/unit'
import { ErrnoError, ErrnoName } from '../util/errno'
import { LIMITS } from '../util/limits'
import { fallible } from '../util/fail-nth'
import { Call, IOCTLS, IoctlError, Ioctl, NewFd, UNDO_ON_COPY_OUT, ioctlByCmd } from './ioctls'
import { StructValue, decode, encodeInto } from './layout'
import { MissingMemory, UserMemory } from './memory'

/** No single user buffer may exceed this (16 MiB); larger requests are refused with ENOMEM. */
export const MAX_USER_BUFFER = LIMITS.userBuffer.max
const MAX_USER_BUFFER_N = BigInt(MAX_USER_BUFFER)

/**
 * A struct larger than any frame can carry: its tail could never be read, so
 * it is refused as the kernel refuses a tail it cannot read (EFAULT), before
 * anything of that size is allocated or scanned.
 */
export function oversizedStruct(sizeName: string, size: number): ErrnoError | undefined {
  const { max, errno } = LIMITS.structSize
  return size > max ? new ErrnoError(errno, `${sizeName}=${size}: iommufs carries at most ${max} struct bytes; the tail past them cannot be read`) : undefined
}

const ZEROS = Buffer.alloc(64 << 10)

/** True when every byte is 0, compared natively a chunk at a time (a 16 MiB tail takes about a millisecond). */
function allZero(b: Buffer): boolean {
  for (let off = 0; off < b.length; off += ZEROS.length) {
    const chunk = b.subarray(off, off + ZEROS.length)
    if (!chunk.equals(ZEROS.subarray(0, chunk.length))) return false
  }
  return true
}

export interface IoctlRequest {
  readonly cmd: number
  /** The caller's struct: at least its first u32 (size or argsz), normally that many bytes. */
  readonly struct: Buffer
  /** Buffers the struct's pointers name, by address; 'fault' marks one the caller cannot read. */
  readonly buffers: ReadonlyMap<bigint, Buffer | 'fault'>
  /** For VFIO cdev commands: the device addressed. */
  readonly device?: PciDevice
  /** When true, a pointer whose buffer was not sent is asked for (retry) instead of faulting. */
  readonly mayRetry?: boolean
  /** The caller's memory itself (a real ioctl): pointers are followed there instead of into `buffers`. */
  readonly memory?: UserMemory
  /** Files the caller names by path (text `path=`), by the fd number the struct carries. */
  readonly files?: ReadonlyMap<number, string>
  /** The ioctl's raw argument: the struct's address, or the integer of an 'arg' ioctl. */
  readonly arg?: bigint
  /** The process whose addresses and descriptors the struct names, when known (see Call.owner). */
  readonly owner?: number
}

/** A buffer the caller must send before the ioctl can run. */
export interface BufferNeed {
  readonly addr: bigint
  readonly len: number
  readonly field: string
}

export interface IoctlReply {
  readonly ioctl?: Ioctl
  /** undefined = success. */
  readonly errno?: ErrnoName
  readonly message: string
  /** The decoded request (zero-extended), when it got that far. */
  readonly req?: StructValue
  /** The fields the kernel wrote back, by name. */
  readonly out?: StructValue
  /** The struct bytes written back (min(size, struct size)), when anything is. */
  readonly struct?: Buffer
  readonly written: ReadonlyMap<bigint, Buffer>
  readonly needs?: readonly BufferNeed[]
  /** The ioctl's return value when it is not 0 on success (VFIO_CHECK_EXTENSION). */
  readonly retval?: number
  /** Descriptors to give the caller (CREATE_ACCESS's access file). */
  readonly newFds?: readonly NewFd[]
}

export interface DispatchEnv {
  readonly ctx?: IommufdContext
  /** The caller's descriptors a frame named: fd number -> handle. */
  readonly fds?: ReadonlyMap<number, number>
  readonly contextById?: (id: number) => IommufdContext | undefined
  /** A real ioctl() (exec --namespace): descriptors cannot be installed in the caller. */
  readonly noDescriptors?: boolean
  /**
   * Set on a VFIO cdev file (dev/vfio/devices/vfioN): whether BIND_IOMMUFD has
   * granted it access. Until then every other command is EINVAL, an unknown
   * number included (vfio_device_fops_unl_ioctl checks access first).
   */
  readonly vfioAccess?: boolean
}

function fail(errno: ErrnoName, message: string, extra: Partial<IoctlReply> = {}): IoctlReply {
  return { errno, message, written: new Map(), ...extra }
}

/** The numbers of the VFIO device commands and of iommufs' own, which a VFIO cdev file answers. */
const DEVICE_COMMANDS = new Set(IOCTLS.filter((i) => i.name.startsWith('VFIO_DEVICE_')).map((i) => i.cmd))
const IOMMUFS_COMMANDS = new Set(IOCTLS.filter((i) => i.name.startsWith('IOMMUFS_')).map((i) => i.cmd))

/**
 * The command a number names where it is sent, or the reply refusing it
 * before anything is read. A VFIO cdev file answers the VFIO device commands
 * (and iommufs' own), not iommufd's or the VFIO container's, whose numbers
 * reach vfio-pci there and are ENOTTY; until BIND_IOMMUFD it answers only
 * that, every other number EINVAL (vfio_device_fops_unl_ioctl checks access
 * first). An iommufd answers a VFIO device command only for a device the
 * request names (pci=, a frame's target): the kernel's iommufd has none (ENOTTY).
 */
export function commandFor(env: DispatchEnv, cmd: number, device: PciDevice | undefined): Ioctl | IoctlReply {
  let ioctl = ioctlByCmd(cmd)
  if (ioctl && env.vfioAccess !== undefined && !DEVICE_COMMANDS.has(cmd) && !IOMMUFS_COMMANDS.has(cmd)) ioctl = undefined
  if (env.vfioAccess === false && ioctl?.short !== 'DEVICE_BIND') {
    return fail('EINVAL', `ioctl 0x${cmd.toString(16)}: this device file is not bound to an iommufd (VFIO_DEVICE_BIND_IOMMUFD first)`, { ioctl })
  }
  if (!ioctl) return fail('ENOTTY', `ioctl 0x${cmd.toString(16)}: not an iommufd or VFIO cdev command`)
  if (env.vfioAccess === undefined && DEVICE_COMMANDS.has(cmd) && !device) {
    return fail('ENOTTY', `${ioctl.name}: not an iommufd command; send it to a dev/vfio/devices/vfio<N> node, or name the device (pci= or dev_id=)`)
  }
  return ioctl
}

/**
 * Runs one ioctl as the kernel does: look the number up, apply the size rules
 * (below minimum: EINVAL; short: zero-filled; long with a nonzero tail: E2BIG),
 * fetch the user buffers, run the handler and write the struct back.
 * Bugs (anything but an ErrnoError) are left to the caller.
 */
export function dispatch(env: DispatchEnv, r: IoctlRequest): IoctlReply {
  const ioctl = commandFor(env, r.cmd, r.device)
  if ('written' in ioctl) return ioctl
  const L = ioctl.layout
  if (ioctl.family === 'arg') return dispatchArg(env, ioctl, r)
  const sizeName = ioctl.family === 'vfio' ? 'argsz' : 'size'
  if (r.struct.length < 4) return fail('EFAULT', `${sizeName}: the struct's first u32 is missing`, { ioctl })
  const size = r.struct.readUInt32LE(0)
  if (size < ioctl.minSize) return fail('EINVAL', `${sizeName}=${size}: ${ioctl.name} needs at least ${ioctl.minSize}`, { ioctl })
  const have = Math.min(size, r.struct.length)
  if (have < Math.min(size, L.size)) return fail('EFAULT', `${sizeName}=${size}: only ${r.struct.length} bytes of the struct were sent`, { ioctl })
  if (ioctl.zeroTail && size > L.size) {
    // copy_struct_from_user walks the tail: a nonzero byte is E2BIG, a byte it cannot read (the sender sent
    // no more: it could not, or past what a frame carries) EFAULT, whichever comes first
    if (!allZero(r.struct.subarray(L.size, have))) {
      return fail('E2BIG', `${sizeName}=${size}: bytes past the ${L.size}-byte ${L.name} must be zero`, { ioctl })
    }
    if (have < size) {
      const tooBig = oversizedStruct(sizeName, size)
      return fail('EFAULT', tooBig ? tooBig.message : `${sizeName}=${size}: the struct's tail past ${have} bytes cannot be read`, { ioctl })
    }
  }
  // from Node's pool (every request makes one): Buffer.alloc would give each its own backing store
  const full = Buffer.allocUnsafe(L.size).fill(0)
  r.struct.copy(full, 0, 0, Math.min(have, L.size))
  const req = decode(L, full)

  const needs: BufferNeed[] = []
  for (const f of L.fields) {
    if (!f.pointer) continue
    const len = f.pointer.length(req)
    if (len > MAX_USER_BUFFER_N) return fail(LIMITS.userBuffer.errno, `${f.name}: a ${len}-byte buffer is more than iommufs accepts (${MAX_USER_BUFFER})`, { ioctl, req })
    const addr = req[f.name] as bigint
    if (f.pointer.flow !== 'out' && len > 0n && addr !== 0n && !r.buffers.has(addr)) needs.push({ addr, len: Number(len), field: f.name })
  }
  if (needs.length && r.mayRetry) return { ioctl, message: 'retry with these buffers', req, needs, written: new Map() }

  const mem = r.memory ?? new UserMemory(r.buffers, r.mayRetry === true)
  const writeBack = (out: StructValue): Buffer => {
    encodeInto(L, full, out)
    // `full` is this request's own copy: handed out whole when the caller's struct is at least as large
    return size >= L.size ? full : Buffer.from(full.subarray(0, size))
  }
  try {
    const newFds: NewFd[] = []
    const call: Call = { ctx: env.ctx, req, mem, device: r.device, contextById: env.contextById, files: r.files, arg: r.arg, fds: env.fds, newFds, noDescriptors: env.noDescriptors, owner: r.owner, vfioAccess: env.vfioAccess }
    const out = ioctl.handler(call)
    copyOut(ioctl, call, out)
    return { ioctl, message: '', req, out, struct: writeBack(out), written: mem.written, newFds }
  } catch (e) {
    if (e instanceof MissingMemory) {
      if (e.needs.some((n) => n.len > MAX_USER_BUFFER)) return fail('ENOMEM', `${e.needs[0].field}: more than iommufs accepts in one buffer (${MAX_USER_BUFFER})`, { ioctl, req })
      return { ioctl, message: 'retry with these buffers', req, needs: e.needs, written: new Map() }
    }
    if (e instanceof IoctlError) return fail(e.errno, e.message, { ioctl, req, out: e.out, struct: writeBack(e.out), written: mem.written })
    if (e instanceof ErrnoError) return fail(e.errno, e.message, { ioctl, req })
    throw e
  }
}

/**
 * The struct's copy back to the caller, a fallible step when the command
 * writes anything back: on failure the kernel's undo for that command runs
 * (UNDO_ON_COPY_OUT) and the ioctl answers EFAULT.
 */
function copyOut(ioctl: Ioctl, call: Call, out: StructValue): void {
  if (!Object.keys(out).length) return
  try {
    fallible('copy to user')
  } catch (e) {
    UNDO_ON_COPY_OUT.get(ioctl.name)?.(call, out)
    throw e
  }
}

/** An ioctl whose argument is an integer (the frame's ARG entry, or a text request's `arg`): no struct, a return value. */
function dispatchArg(env: DispatchEnv, ioctl: Ioctl, r: IoctlRequest): IoctlReply {
  const full = Buffer.alloc(ioctl.layout.size)
  r.struct.copy(full, 0, 0, Math.min(r.struct.length, full.length))
  const req = { ...decode(ioctl.layout, full), ...(r.arg !== undefined ? { arg: r.arg } : {}) }
  try {
    const out = ioctl.handler({ ctx: env.ctx, req, mem: new UserMemory(new Map()), device: r.device, contextById: env.contextById, arg: r.arg })
    return { ioctl, message: '', req, out, written: new Map(), retval: Number(out.ret ?? 0n) }
  } catch (e) {
    if (e instanceof ErrnoError) return fail(e.errno, e.message, { ioctl, req })
    throw e
  }
}
