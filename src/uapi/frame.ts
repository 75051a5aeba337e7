import { ERRNO, ErrnoError, errnoName } from '../util/errno'
import { FRAME_HEADER, LIMITS } from '../util/limits'
import { BufferNeed, IoctlReply } from './dispatch'

/**
 * Binary frames: an ioctl as a program issues it. Layout in docs/frames.md.
 * All integers little endian; sections padded to 8 bytes.
 */
export const FRAME_MAGIC = 0x464d4f49 // "IOMF"
export const FRAME_VERSION = 1
export { FRAME_HEADER }
/** A frame may not exceed this; a larger total_len is refused (EMSGSIZE) before anything is buffered. */
export const MAX_FRAME = LIMITS.frame.max

export const FrameKind = { REQUEST: 1, REPLY: 2, RETRY: 3 } as const
/**
 * Buffer entry flags in a request: FAULT = the caller cannot read that memory
 * (no data follows); FD = not memory but a file descriptor of the caller's:
 * `addr` is the fd number and the 4 data bytes the iommufd context ID it is open on.
 */
export const BufferFlag = { FAULT: 1, FD: 2, ARG: 4, OWN: 8, READONLY: 16 } as const
/** A REPLY entry with this flag is no memory write: `addr` is the ioctl's return value (VFIO_CHECK_EXTENSION's 1). */
export const ReplyFlag = { RETVAL: 4, NEWFD: 8 } as const

const pad8 = (n: number): number => (n + 7) & ~7

export interface RequestFrame {
  readonly cmd: number
  /** 0, or N + 1 to address /dev/vfio/devices/vfioN (VFIO commands sent to dev/iommu). */
  readonly target: number
  readonly struct: Buffer
  readonly buffers: Map<bigint, Buffer | 'fault'>
  /** The caller's iommufd descriptors: fd number -> context ID. */
  readonly fds: Map<number, number>
  /** The ioctl's raw argument (an ARG entry: the struct's address, or an integer). */
  readonly arg?: bigint
  /** The ARG entry said OWN: the struct's addresses and descriptor numbers are the writing process's own. */
  readonly own?: boolean
  /** The ARG entry said READONLY: the sender cannot write the struct back (it lies in read-only memory). */
  readonly readOnly?: boolean
}

/** True when `buf` starts with (a prefix of) the frame magic. */
export function looksLikeFrame(buf: Buffer): boolean {
  // every write passes here: the magic's bytes compared in place, nothing allocated
  for (let i = 0; i < 4 && i < buf.length; i++) if (buf[i] !== ((FRAME_MAGIC >>> (8 * i)) & 0xff)) return false
  return true
}

/** The whole frame's length once its header is in, else undefined. Throws on a bad header. */
export function frameLength(buf: Buffer): number | undefined {
  if (buf.length < FRAME_HEADER) return undefined
  const version = buf.readUInt16LE(4)
  if (version !== FRAME_VERSION) throw new ErrnoError('EPROTO', `frame version ${version}: iommufs speaks ${FRAME_VERSION}`)
  const total = buf.readUInt32LE(8)
  if (total < FRAME_HEADER) throw new ErrnoError('EINVAL', `frame total_len=${total}: shorter than the header`)
  if (total > MAX_FRAME) throw new ErrnoError(LIMITS.frame.errno, `frame total_len=${total}: larger than ${MAX_FRAME}`)
  return total
}

export function decodeRequest(buf: Buffer): RequestFrame {
  const kind = buf.readUInt16LE(6)
  if (kind !== FrameKind.REQUEST) throw new ErrnoError('EINVAL', `frame kind=${kind}: expected REQUEST (1)`)
  const cmd = buf.readUInt32LE(12)
  const target = buf.readUInt32LE(16)
  const structLen = buf.readUInt32LE(20)
  const nbuf = buf.readUInt32LE(24)
  let off = FRAME_HEADER
  const need = (n: number, what: string): void => {
    if (off + n > buf.length) throw new ErrnoError('EINVAL', `frame: ${what} runs past total_len`)
  }
  need(structLen, 'struct')
  const struct = Buffer.from(buf.subarray(off, off + structLen))
  off += pad8(structLen)
  const buffers = new Map<bigint, Buffer | 'fault'>()
  const fds = new Map<number, number>()
  let arg: bigint | undefined
  let own = false
  let readOnly = false
  for (let i = 0; i < nbuf; i++) {
    need(16, `buffer ${i} header`)
    const addr = buf.readBigUInt64LE(off)
    const len = buf.readUInt32LE(off + 8)
    const flags = buf.readUInt32LE(off + 12)
    off += 16
    if (flags & BufferFlag.FAULT) {
      buffers.set(addr, 'fault')
      continue
    }
    if (flags & BufferFlag.ARG) {
      arg = addr
      own = (flags & BufferFlag.OWN) !== 0
      readOnly = (flags & BufferFlag.READONLY) !== 0
      continue
    }
    need(len, `buffer ${i} data`)
    if (flags & BufferFlag.FD) {
      if (len !== 4) throw new ErrnoError('EINVAL', `frame: fd entry ${i} must carry 4 bytes (a context ID)`)
      fds.set(Number(addr), buf.readUInt32LE(off))
    } else buffers.set(addr, Buffer.from(buf.subarray(off, off + len)))
    off += pad8(len)
  }
  return { cmd, target, struct, buffers, fds, arg, own, readOnly }
}

interface Entry {
  addr: bigint
  len: number
  flags: number
  data?: Buffer
}

function build(kind: number, cmd: number, word16: number, struct: Buffer, entries: Entry[], msg = ''): Buffer {
  const text = Buffer.from(msg, 'utf8')
  const total = FRAME_HEADER + pad8(struct.length) + entries.reduce((n, e) => n + 16 + pad8(e.data?.length ?? 0), 0) + text.length
  const out = Buffer.alloc(total)
  out.writeUInt32LE(FRAME_MAGIC, 0)
  out.writeUInt16LE(FRAME_VERSION, 4)
  out.writeUInt16LE(kind, 6)
  out.writeUInt32LE(total, 8)
  out.writeUInt32LE(cmd, 12)
  out.writeUInt32LE(word16, 16)
  out.writeUInt32LE(struct.length, 20)
  out.writeUInt32LE(entries.length, 24)
  out.writeUInt32LE(text.length, 28)
  let off = FRAME_HEADER
  struct.copy(out, off)
  off += pad8(struct.length)
  for (const e of entries) {
    out.writeBigUInt64LE(e.addr, off)
    out.writeUInt32LE(e.len, off + 8)
    out.writeUInt32LE(e.flags, off + 12)
    off += 16
    if (e.data) {
      e.data.copy(out, off)
      off += pad8(e.data.length)
    }
  }
  text.copy(out, off)
  return out
}

export function encodeRequest(f: Omit<RequestFrame, 'fds'> & { fds?: Map<number, number> }): Buffer {
  const entries: Entry[] = [...f.buffers].map(([addr, b]) => (b === 'fault' ? { addr, len: 0, flags: BufferFlag.FAULT } : { addr, len: b.length, flags: 0, data: b }))
  for (const [fd, ctx] of f.fds ?? []) {
    const data = Buffer.alloc(4)
    data.writeUInt32LE(ctx)
    entries.push({ addr: BigInt(fd), len: 4, flags: BufferFlag.FD, data })
  }
  return build(FrameKind.REQUEST, f.cmd, f.target, f.struct, entries)
}

/** REPLY: errno (0 = success), the struct written back, the out buffers, the message. RETRY: the buffers to send. */
export function encodeReply(cmd: number, reply: IoctlReply): Buffer {
  if (reply.needs) return encodeRetry(cmd, reply.needs)
  const errno = reply.errno ? ERRNO[reply.errno] : 0
  const entries: Entry[] = [...reply.written].map(([addr, data]) => ({ addr, len: data.length, flags: 0, data }))
  if (reply.retval) entries.push({ addr: BigInt(reply.retval), len: 0, flags: ReplyFlag.RETVAL, data: Buffer.alloc(0) })
  for (const f of reply.newFds ?? []) {
    const data = Buffer.concat([Buffer.alloc(4), Buffer.from(f.path ?? '', 'utf8')])
    data.writeUInt32LE(f.offset)
    entries.push({ addr: BigInt(f.handle), len: data.length, flags: ReplyFlag.NEWFD, data })
  }
  return build(FrameKind.REPLY, cmd, errno, reply.struct ?? Buffer.alloc(0), entries, reply.message)
}

export function encodeRetry(cmd: number, needs: readonly BufferNeed[]): Buffer {
  return build(FrameKind.RETRY, cmd, 0, Buffer.alloc(0), needs.map((n) => ({ addr: n.addr, len: n.len, flags: 0 })))
}

/** A refusal before any ioctl ran (bad frame): a REPLY with only an errno and message. */
export function encodeError(cmd: number, e: ErrnoError): Buffer {
  return build(FrameKind.REPLY, cmd, ERRNO[e.errno], Buffer.alloc(0), [], e.message)
}

export interface DecodedReply {
  readonly kind: number
  readonly cmd: number
  readonly errno: number
  readonly errnoName?: string
  readonly struct: Buffer
  readonly buffers: { addr: bigint; len: number; data?: Buffer }[]
  readonly message: string
}

/** For clients (tests, benchmarks): reads a REPLY or RETRY frame. */
export function decodeReply(buf: Buffer): DecodedReply {
  const kind = buf.readUInt16LE(6)
  const cmd = buf.readUInt32LE(12)
  const errno = buf.readUInt32LE(16)
  const structLen = buf.readUInt32LE(20)
  const nbuf = buf.readUInt32LE(24)
  const msgLen = buf.readUInt32LE(28)
  let off = FRAME_HEADER
  const struct = Buffer.from(buf.subarray(off, off + structLen))
  off += pad8(structLen)
  const buffers: { addr: bigint; len: number; data?: Buffer }[] = []
  for (let i = 0; i < nbuf; i++) {
    const addr = buf.readBigUInt64LE(off)
    const len = buf.readUInt32LE(off + 8)
    off += 16
    if (kind === FrameKind.REPLY) {
      buffers.push({ addr, len, data: Buffer.from(buf.subarray(off, off + len)) })
      off += pad8(len)
    } else buffers.push({ addr, len })
  }
  return { kind, cmd, errno, errnoName: errnoName(errno), struct, buffers, message: buf.subarray(off, off + msgLen).toString('utf8') }
}
