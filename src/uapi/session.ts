import { IommufdContext } from '../iommufd/context'
import { Device, unbind } from '../iommufd/device'
import { World } from '../iommufd/world'
import { closeAccess } from '../iommufd/selftest'
import { closeQueueFd } from '../iommufd/eventq'
import { PciDevice } from '../hw/unit'
import { CPU_PAGE } from '../memory/pages'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { DispatchEnv, IoctlReply, MAX_USER_BUFFER, commandFor, dispatch } from './dispatch'
import { decodeRequest, encodeError, encodeReply, frameLength, looksLikeFrame } from './frame'
import { copiesBack, descriptorTarget, ioctlByCmd } from './ioctls'
import { FrameMemory, PidMemory, ProcessMemory } from './memory'
import { RecordedSession, RequestRecorder } from './record'
import { DeviceResolver, formatReply, formatRequest, parseTextCached } from './text'

/** A text line longer than this is refused (EMSGSIZE) rather than buffered without end. */
export const MAX_LINE = LIMITS.line.max

/** Where a context's debug directory is, relative to the mount root. */
export function contextPath(id: number): string {
  return `/sys/kernel/debug/iommufd/${id}`
}

/** Who writes or reads, as the transport reports it: the process id (0 = unknown). */
export interface Requester {
  readonly pid: number
  /** The requesting thread, when the transport names it (its memory and descriptors are the process's). */
  readonly tid?: number
  /** A way into the requester's memory, when the transport has one. */
  readonly memory?: ProcessMemory
}

/** The maker of a real ioctl(): its process, its thread, and a way into its memory. */
export interface IoctlCaller extends Requester {
  readonly tid: number
}

/** Which process opened each live context (real ioctls name a context by the caller's descriptor). */
const openers = new WeakMap<IommufdContext, number>()

/** A reply, and the file offset just past the write that produced it (reads from there start at its beginning). */
interface Reply {
  reply: Buffer
  replyBase: number
}

/** One calling process's state on a descriptor: its unfinished request bytes and its replies. */
interface CallerState extends Reply {
  /** Bytes written but not yet a whole line or frame, as written (joined once there is something to parse). */
  pending: Buffer[]
  pendingLen: number
  /** The total length of the frame being received, once its header is in: nothing is parsed before it is whole. */
  frameTotal: number
  /** The thread whose write produced `reply` (0: unknown), and whether a read of this process has reached its end. */
  replyTid: number
  replyRead: boolean
  /** Replies of other threads, superseded by a later write of this process before any read reached their end. */
  unread?: Map<number, Reply>
}

/**
 * Refuses a write carrying more requests than one write may (E2BIG), before
 * any runs: the server answers a write's requests in one go, and every other
 * user waits meanwhile. Counts as the write loop cuts: whole frames, then lines.
 */
function tooManyRequests(buf: Buffer): void {
  const max = LIMITS.requestsPerWrite.max
  // each request takes a byte at least: the usual write (one line or frame) is not walked twice
  if (buf.length <= max) return
  for (let at = 0, n = 0; at < buf.length; ) {
    const rest = at ? buf.subarray(at) : buf
    const total = looksLikeFrame(rest) ? frameEnd(rest) : buf.indexOf(0x0a, at) + 1 - at
    if (total === undefined || total <= 0 || rest.length < total) return
    if (++n > max) throw new ErrnoError(LIMITS.requestsPerWrite.errno, `more than ${max} requests (lines or frames) in one write; send them in several writes`)
    at += total
  }
}

/** A frame's length, or undefined while incomplete or when its header is bad (the write loop refuses that one). */
function frameEnd(buf: Buffer): number | undefined {
  try {
    return frameLength(buf)
  } catch {
    return undefined
  }
}

/** Chunks a struct's tail is read in when the whole of it cannot be. */
const TAIL_CHUNK = 64 << 10

/**
 * The `len` bytes at `addr` of process `who`, or as many as it can supply from
 * the start (copy_struct_from_user checks a tail up to its first fault), or
 * the errno when not even the first page can be read.
 */
function readablePrefix(mem: ProcessMemory, who: number, addr: bigint, len: number): Buffer | number {
  const whole = mem.read(who, addr, len)
  if (typeof whole !== 'number') return whole
  const parts: Buffer[] = []
  let got = 0
  // aligned chunks while they read, then the failing chunk page by page, to the first page that fails
  for (let step = BigInt(TAIL_CHUNK); got < len; ) {
    const at = addr + BigInt(got)
    const n = Math.min(len - got, Number(step - (at % step)))
    const part = mem.read(who, at, n)
    if (typeof part === 'number') {
      if (step === CPU_PAGE) break
      step = CPU_PAGE
      continue
    }
    parts.push(part)
    got += n
  }
  return got ? Buffer.concat(parts, got) : whole
}

/** What is left of a write once its last line is taken. */
const NOTHING = Buffer.alloc(0)

/** Bytes of unfinished frames and lines each world's sessions hold between writes (LIMITS.pendingBytes bounds the sum). */
const heldBytes = new WeakMap<World, { n: number }>()

/** Callers remembered per descriptor; the one heard from longest ago is dropped beyond this. */
const MAX_CALLERS = 256
/** Unread replies kept per process for its threads; the oldest is dropped beyond this. */
const MAX_UNREAD = 64

/**
 * One open file of a transaction node: requests are written, replies read
 * back on the same descriptor. Text lines and binary frames may be mixed;
 * each write's replies replace the previous ones. Reads at any offset past
 * the last write start at the reply's beginning, so both read() after
 * write() and pread(fd, 0) see the whole reply.
 *
 * Replies are kept per calling process: processes sharing the descriptor
 * after fork() each read the replies to their own requests. Within a process
 * a thread reads its own reply until a read has reached that reply's end, and
 * after that the process's latest: two threads in transactions at once never
 * read each other's, and a program whose I/O threads take turns (one writes,
 * another reads) reads what was written last. A caller that has written
 * nothing reads the latest reply.
 */
export abstract class Session {
  private readonly callers = new Map<number, CallerState>()
  private latest: CallerState = { pending: [], pendingLen: 0, frameTotal: 0, reply: Buffer.alloc(0), replyBase: 0, replyTid: 0, replyRead: true }
  /** Where this open's requests are recorded (iommufs run/mount --record). */
  protected rec?: RecordedSession

  constructor(protected readonly world: World) {}

  /** `fds` maps a frame's caller descriptors to context IDs (for VFIO_DEVICE_BIND_IOMMUFD). */
  protected abstract env(fds?: ReadonlyMap<number, number>): DispatchEnv
  /** The device a VFIO command addresses, from a frame's target (N+1 = vfioN) or the node itself. */
  protected abstract frameDevice(target: number): PciDevice | undefined
  protected abstract get label(): string
  /** Text requests this node answers itself (CONTEXT on dev/iommu); `name` is the line's first word in upper case. */
  protected special(_line: string, _name: string): string | undefined {
    return undefined
  }
  protected afterReply(_reply: IoctlReply): void {}
  /** A frame's reply hands the caller descriptors, which thread `opener` (the shim, exec's supervisor) opens for it: what they hold. */
  protected handedFds(_reply: IoctlReply, _opener: number | undefined): void {}
  /** What closing the file does (destroy the context, unbind the device); runs once. */
  protected abstract teardown(): void
  private released = false

  /**
   * The file's last close, or a RELEASE request before it: FUSE delivers the
   * close after close() has returned, so a client that must see the effect at
   * once (the ioctl shim, a script) asks first and the later close finds
   * nothing left to do.
   */
  release(): void {
    if (this.released) return
    this.released = true
    for (const st of this.callers.values()) this.setPending(st, [], 0)
    this.teardown()
  }

  /** What all of this world's sessions hold between writes. */
  private get held(): { n: number } {
    let h = heldBytes.get(this.world)
    if (!h) heldBytes.set(this.world, (h = { n: 0 }))
    return h
  }

  /** Sets what `st` holds until its next write, counted against LIMITS.pendingBytes. */
  private setPending(st: CallerState, parts: Buffer[], len: number): void {
    this.held.n += len - st.pendingLen
    st.pending = parts
    st.pendingLen = len
  }

  /** Refuses to hold `more` bytes past the limit: what `st` holds is dropped (its unfinished frame with it), ENOMEM. */
  private mayHold(st: CallerState, more: number): void {
    const max = LIMITS.pendingBytes.max
    if (this.held.n + more <= max) return
    this.setPending(st, [], 0)
    st.frameTotal = 0
    const e = new ErrnoError(LIMITS.pendingBytes.errno, `unfinished frames of all users hold ${this.held.n} bytes; ${more} more would pass ${max}: this frame is dropped, send it again later`)
    this.world.trace.emit(this.label, `refused write: ${e.errno} ${e.message}`)
    throw e
  }

  /** The caller heard from last: its state is already last in `callers`, so it is found without reordering. */
  private lastCaller?: { pid: number; st: CallerState }

  /** The state of the caller `pid` (0: the one state of an unknown caller), made on its first write. */
  private stateFor(pid: number): CallerState {
    if (this.lastCaller?.pid === pid) return this.lastCaller.st
    let st = this.callers.get(pid)
    if (st) {
      // most recently heard from last, so the first key is the one to drop
      this.callers.delete(pid)
    } else {
      st = { pending: [], pendingLen: 0, frameTotal: 0, reply: this.latest.reply, replyBase: this.latest.replyBase, replyTid: 0, replyRead: true }
      if (this.callers.size >= MAX_CALLERS) {
        const oldest = this.callers.keys().next().value as number
        this.setPending(this.callers.get(oldest)!, [], 0)
        this.callers.delete(oldest)
      }
    }
    this.callers.set(pid, st)
    this.lastCaller = { pid, st }
    return st
  }

  write(pos: number, data: Buffer, caller?: Requester): number {
    if (this.mappedWrite(pos, caller)) return data.length
    const st = this.stateFor(caller?.pid ?? 0)
    let buf = data
    // a write with nothing pending (most are: one whole line or frame) is parsed as it came
    if (st.pending.length || data.length < st.frameTotal) {
      // a large frame arrives in many writes: keep its pieces and join them once, not on every write
      if (st.pendingLen + data.length < st.frameTotal) {
        this.mayHold(st, data.length)
        st.pending.push(data)
        this.setPending(st, st.pending, st.pendingLen + data.length)
        return data.length
      }
      buf = st.pending.length ? Buffer.concat([...st.pending, data], st.pendingLen + data.length) : data
      this.setPending(st, [], 0)
    }
    st.frameTotal = 0
    const replies: Buffer[] = []
    try {
      tooManyRequests(buf)
      for (;;) {
        if (!buf.length) break
        if (looksLikeFrame(buf)) {
          const total = frameLength(buf)
          if (total === undefined || buf.length < total) {
            st.frameTotal = total ?? 0
            break
          }
          const frame = buf.subarray(0, total)
          buf = buf.subarray(total)
          replies.push(this.handleFrame(frame, caller))
          continue
        }
        const nl = buf.indexOf(0x0a)
        if (nl < 0) {
          if (buf.length > MAX_LINE) throw new ErrnoError(LIMITS.line.errno, `request line longer than ${MAX_LINE} bytes`)
          break
        }
        const line = buf.toString('utf8', 0, nl)
        buf = nl + 1 === buf.length ? NOTHING : buf.subarray(nl + 1)
        const r = nl > MAX_LINE ? `err ${LIMITS.line.errno} request line longer than ${MAX_LINE} bytes` : this.handleLine(line, caller?.pid)
        if (r !== undefined) replies.push(Buffer.from(`${r}\n`))
      }
    } catch (e) {
      buf = Buffer.alloc(0)
      st.frameTotal = 0
      if (!(e instanceof ErrnoError)) throw e
      this.world.trace.emit(this.label, `refused write: ${e.errno} ${e.message}`)
      throw e
    }
    if (buf.length) {
      this.mayHold(st, buf.length)
      this.setPending(st, [buf], buf.length)
    }
    if (replies.length) {
      const tid = caller?.tid ?? 0
      // another thread's reply nobody has read yet stays its thread's; this thread's new reply replaces its own
      if (!st.replyRead && st.replyTid && st.replyTid !== tid) {
        st.unread ??= new Map()
        if (st.unread.size >= MAX_UNREAD) st.unread.delete(st.unread.keys().next().value as number)
        st.unread.set(st.replyTid, { reply: st.reply, replyBase: st.replyBase })
      }
      st.unread?.delete(tid)
      st.reply = replies.length === 1 ? replies[0] : Buffer.concat(replies)
      st.replyBase = pos + data.length
      st.replyTid = tid
      st.replyRead = false
      this.latest = st
    }
    return data.length
  }

  /** A READ of pages a mapping of the file shows, when pos lies in one. */
  protected mappedRead(_pos: number, _len: number): Buffer | undefined {
    return undefined
  }
  /** Whether a WRITE is the kernel writing back such pages (not a request). */
  protected mappedWrite(_pos: number, _caller?: Requester): boolean {
    return false
  }

  read(pos: number, len: number, caller?: Requester): Buffer {
    const mapped = this.mappedRead(pos, len)
    if (mapped) return mapped
    const own = this.callers.get(caller?.pid ?? 0)
    const tid = caller?.tid ?? 0
    const r = own?.unread?.get(tid) ?? own ?? this.latest
    const off = pos >= r.replyBase ? pos - r.replyBase : pos
    const end = Math.min(off + len, r.reply.length)
    // a read reaching the end of its process's reply marks it read (another process reading it changes nothing)
    if (own && end === r.reply.length) {
      if (r === own) own.replyRead = true
      else own.unread!.delete(tid)
    }
    return r.reply.subarray(Math.min(off, r.reply.length), end)
  }

  /** What read() answers `caller` (which has just written) until the next write: the reply, and the offset from which reads start at its beginning. */
  replyOf(caller?: Requester): { reply: Buffer; base: number } {
    const st = this.callers.get(caller?.pid ?? 0) ?? this.latest
    return { reply: st.reply, base: st.replyBase }
  }

  /** The binding answered `caller`'s reads of the reply replyOf gave it, up to its end. */
  replyRead(caller: Requester): void {
    const st = this.callers.get(caller.pid)
    if (st && st.replyTid === (caller.tid ?? 0)) st.replyRead = true
  }

  /** The environment of a real ioctl (VFIO resolves the caller's iommufd descriptor). */
  protected ioctlEnv(_caller: IoctlCaller): DispatchEnv {
    return this.env()
  }

  /**
   * A real ioctl(): the struct at `arg` and every buffer it points to are
   * read from and written to the caller's memory, in one round trip, through
   * the same dispatcher as frames and text. The struct is probed for writing
   * before anything runs, so a struct the caller cannot write changes nothing;
   * one the kernel never writes back (IOMMU_DESTROY's) is only read, so it may
   * lie in read-only memory.
   */
  ioctl(cmd: number, arg: bigint, caller: IoctlCaller): number {
    if (this.released) throw new ErrnoError('EBADF', `${this.label}: released (RELEASE was answered); open the file again`)
    const env = this.ioctlEnv(caller)
    // a number this file does not take is refused before the caller's memory is read, as the kernel does
    const io = commandFor(env, cmd, this.frameDevice(0))
    if ('written' in io) throw new ErrnoError(io.errno ?? 'ENOTTY', io.message)
    if (io.family === 'arg') {
      // VFIO_CHECK_EXTENSION and friends: `arg` is an integer, the answer the return value
      const r = dispatch(env, { cmd, struct: Buffer.alloc(0), buffers: new Map(), device: this.frameDevice(0), arg })
      if (r.errno) throw new ErrnoError(r.errno, r.message)
      return r.retval ?? 0
    }
    const mem = caller.memory
    if (!mem) throw new ErrnoError('ENOTTY', `${io.name}: this mount cannot reach the caller's memory (run the program under the shim)`)
    const who = caller.tid || caller.pid
    const fault = (what: string, r: number): ErrnoError => {
      // a bad address is the caller's mistake; anything else (EPERM, ESRCH) is worth a trace line
      if (r !== -14) this.world.trace.emit(this.label, `ioctl ${io.name}: cannot ${what} the memory of process ${who} (errno ${-r})`)
      return new ErrnoError('EFAULT', `arg=0x${arg.toString(16)}: cannot ${what} the ${io.layout.name} there`)
    }
    // one read takes the whole struct when the caller's is no larger than ours (the usual case), but
    // not past the page its size is on: no page the kernel would leave alone is read (or faulted in)
    const head = mem.read(who, arg, Math.max(4, Math.min(io.layout.size, Number(CPU_PAGE - (arg % CPU_PAGE)))))
    if (typeof head === 'number') throw fault('read', head)
    const size = head.readUInt32LE(0)
    // a struct read with copy_struct_from_user (iommufd's, VFIO BIND's) must be zero past its end; other VFIO commands ignore argsz beyond it
    // (16 MiB at most, as the shim sends: the dispatcher says EFAULT for a tail past what it got)
    const want = io.zeroTail ? Math.min(size, MAX_USER_BUFFER) : Math.min(size, io.layout.size)
    const struct = want <= head.length ? head.subarray(0, Math.max(want, 4)) : readablePrefix(mem, who, arg, want)
    if (typeof struct === 'number') throw fault('read', struct)
    const back = copiesBack(io, struct)
    const probe = back ? mem.write(who, arg, struct.subarray(0, Math.min(size, io.layout.size, struct.length))) : 0
    if (probe !== 0) throw fault('write', probe)
    // a recording needs the buffers the handler read: note them on the way
    const seen = new Map<bigint, Buffer | 'fault'>()
    const reads: ProcessMemory = this.rec
      ? {
          read: (pid, addr, len) => {
            const r = mem.read(pid, addr, len)
            seen.set(addr, typeof r === 'number' ? 'fault' : r)
            return r
          },
          write: (pid, addr, data) => mem.write(pid, addr, data),
        }
      : mem
    let reply: IoctlReply
    try {
      reply = dispatch({ ...env, noDescriptors: true }, { cmd, struct, buffers: new Map(), device: this.frameDevice(0), memory: new PidMemory(reads, who), arg, owner: who })
    } catch (e) {
      throw e instanceof ErrnoError ? e : this.bug(`ioctl ${io.name}`, e)
    }
    this.afterReply(reply)
    this.world.trace.emit(this.label, `ioctl ${io.name} -> ${reply.errno ?? 'ok'}${reply.message ? ` ${reply.message}` : ''}`, caller.pid || undefined)
    if (this.rec) {
      // a VFIO bind names its iommufd by the caller's descriptor: the recording names the context it bound to
      const bound = reply.ioctl?.short === 'DEVICE_BIND' && !reply.errno ? this.env().ctx : undefined
      const fds = bound && reply.req ? new Map([[Number(BigInt.asIntN(32, reply.req.iommufd as bigint)), bound.id]]) : undefined
      this.rec.request(formatRequest(io, { cmd, struct, buffers: seen }, fds), formatReply(reply))
    }
    if (reply.struct && back) {
      const r = mem.write(who, arg, reply.struct)
      if (r !== 0) throw fault('write', r)
    }
    if (reply.errno) throw new ErrnoError(reply.errno, reply.message)
    return reply.retval ?? 0
  }

  private bug(where: string, e: unknown): ErrnoError {
    const what = e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 3).join(' | ') : String(e)
    this.world.trace.emit('bug', `${this.label} ${where}: ${what}`)
    return new ErrnoError('EIO', 'internal error in iommufs (the trace has the details); nothing was changed that the reply does not say')
  }

  /** `pid`: the requesting process, when the transport says (it goes into the trace line). */
  private handleLine(raw: string, pid?: number): string | undefined {
    const line = raw.trim()
    if (!line || line.startsWith('#')) return undefined
    let out: string
    try {
      if (this.released) throw new ErrnoError('EBADF', `${this.label}: released (RELEASE was answered); open the file again`)
      // the first word, once: every request passes the checks for the lines a node answers itself
      const sp = line.search(/\s/)
      const name = (sp < 0 ? line : line.slice(0, sp)).toUpperCase()
      out = this.releaseRequest(line, name) ?? this.special(line, name) ?? this.textRequest(line)
    } catch (e) {
      const err = e instanceof ErrnoError ? e : this.bug(line.split(' ')[0], e)
      out = `err ${err.errno} ${err.message}`
    }
    this.world.trace.emit(this.label, `${line} -> ${out}`, pid || undefined)
    this.rec?.request(line, out)
    return out
  }

  /** RELEASE (or IOMMUFS_RELEASE): does now what the file's close would, and answers once it is done. */
  private releaseRequest(line: string, name: string): string | undefined {
    if (name !== 'RELEASE' && name !== 'IOMMUFS_RELEASE') return undefined
    const rest = line.split(/\s+/).slice(1)
    if (rest.length) throw new ErrnoError('EINVAL', `${rest[0]}: RELEASE takes no arguments`)
    this.release()
    return 'ok'
  }

  /** How text names devices; made once, as most lines are parsed already and never ask. */
  private readonly resolver: DeviceResolver = {
    byPci: (bdf) => this.world.machine.device(bdf),
    byDevId: (id) => {
      const o = this.env().ctx?.objects.find(id)
      return o instanceof Device ? o.pci : undefined
    },
  }

  private textRequest(line: string): string {
    const parsed = parseTextCached(line, this.resolver)
    const own = this.frameDevice(0)
    if (own && parsed.device && parsed.device !== own) {
      throw new ErrnoError('EINVAL', `${parsed.device.bdf}: this file is vfio${own.vfioIndex} (${own.bdf}); a device node addresses its own device only`)
    }
    // a literal, not a spread: this runs on every text request
    const reply = dispatch(this.env(), { cmd: parsed.cmd, struct: parsed.struct, buffers: parsed.buffers, device: parsed.device ?? own, mayRetry: false, memory: parsed.memory, files: parsed.files, arg: parsed.arg })
    this.afterReply(reply)
    return formatReply(reply)
  }

  /** `caller`: the writer, when the transport names it; a frame marked OWN reaches its memory and descriptors. */
  private handleFrame(frame: Buffer, caller?: Requester): Buffer {
    const pid = caller?.pid
    let cmd = 0
    try {
      if (this.released) throw new ErrnoError('EBADF', `${this.label}: released (RELEASE was answered); open the file again`)
      const req = decodeRequest(frame)
      cmd = req.cmd
      const device = this.frameDevice(req.target)
      if (req.target && !device) throw new ErrnoError('ENODEV', `frame target=${req.target}: no /dev/vfio/devices/vfio${req.target - 1}`)
      // a struct in read-only memory (the sender's probe failed): fine for one the kernel only reads, else EFAULT with nothing done
      const io = req.readOnly ? ioctlByCmd(cmd) : undefined
      if (io && io.family !== 'arg' && copiesBack(io, req.struct)) throw new ErrnoError('EFAULT', `${io.name}: the ${io.layout.name} is in memory the sender cannot write; its out fields could not be written back`)
      const owner = req.own ? caller?.tid || caller?.pid || undefined : undefined
      // the sender's memory reached directly spares a RETRY round trip for each buffer the frame did not carry
      // (a recording keeps the round trip: the retried frame carries the bytes it records)
      const memory = owner && caller?.memory && !this.rec ? new FrameMemory(req.buffers, caller.memory, owner) : undefined
      const reply = dispatch(this.env(req.fds), { cmd, struct: req.struct, buffers: req.buffers, device, mayRetry: !memory, memory, arg: req.arg, owner })
      this.afterReply(reply)
      if (!reply.errno && !reply.needs && reply.newFds?.length) this.handedFds(reply, caller?.tid)
      const name = reply.ioctl?.name ?? `0x${cmd.toString(16)}`
      this.world.trace.emit(this.label, `frame ${name} -> ${reply.needs ? 'retry' : reply.errno ?? 'ok'}${reply.message ? ` ${reply.message}` : ''}`, pid || undefined)
      // a recording holds the frame in its text form; a device node's own device goes without pci=
      if (this.rec && reply.ioctl && !reply.needs) {
        this.rec.request(formatRequest(reply.ioctl, { ...req, device: this.frameDevice(0) ? undefined : device }, req.fds), formatReply(reply))
      }
      return encodeReply(cmd, req.readOnly ? { ...reply, struct: undefined } : reply)
    } catch (e) {
      const err = e instanceof ErrnoError ? e : this.bug(`frame ${ioctlByCmd(cmd)?.name ?? cmd}`, e)
      return encodeError(cmd, err)
    }
  }
}

/** An open of dev/iommu: a new iommufd context, destroyed when the last descriptor closes. */
export class IommuSession extends Session {
  readonly ctx: IommufdContext

  /** `opener`: the process that opened the file, when the transport says; `recorder`: where its requests are recorded. */
  constructor(world: World, opener?: number, recorder?: RequestRecorder) {
    super(world)
    this.ctx = world.open()
    this.rec = recorder?.open('dev/iommu')
    if (opener) openers.set(this.ctx, opener)
    world.trace.emit(this.label, 'opened')
  }

  protected get label(): string {
    return `ctx${this.ctx.id}`
  }

  protected env(fds?: ReadonlyMap<number, number>): DispatchEnv {
    return { ctx: this.ctx, fds }
  }

  protected frameDevice(target: number): PciDevice | undefined {
    return target ? this.world.machine.devices.find((d) => d.vfioIndex === target - 1) : undefined
  }

  /** exec --namespace: the program's kernel maps the file itself, and its pages are READs of a region's offsets. */
  protected override mappedRead(pos: number, len: number): Buffer | undefined {
    return pos >= CPU_PAGE ? this.ctx.mmaps.fileBytes(BigInt(pos), len) : undefined
  }

  /** Such pages written back by the kernel (no process: pid 0) are not requests; a mapping shows the region as it was mapped. */
  protected override mappedWrite(pos: number, caller?: Requester): boolean {
    return caller?.pid === 0 && pos >= CPU_PAGE
  }

  protected override special(line: string, n: string): string | undefined {
    // the rest of the line is split only for a request this node answers (every request passes here)
    const rest = (): string[] => line.split(/\s+/).slice(1)
    if (n === 'ACCESS_CLOSE' || n === 'IOMMUFS_ACCESS_CLOSE') return this.closeAccess(rest())
    if (n === 'QUEUE_CLOSE' || n === 'IOMMUFS_QUEUE_CLOSE') return this.closeQueue(rest())
    if (n !== 'CONTEXT' && n !== 'IOMMUFS_CONTEXT') return undefined
    const args = rest()
    if (args.length) throw new ErrnoError('EINVAL', `${args[0]}: CONTEXT takes no arguments`)
    return `ok id=${this.ctx.id} path=${contextPath(this.ctx.id)}`
  }

  /** ACCESS_CLOSE handle=N: the shim's close() of a selftest access descriptor (the kernel's release of that file). */
  private closeAccess(args: string[]): string {
    const m = args.length === 1 ? /^handle=(\d+)$/.exec(args[0]) : null
    if (!m) throw new ErrnoError('EINVAL', 'usage: ACCESS_CLOSE handle=N')
    closeAccess(this.ctx, Number(m[1]))
    return 'ok'
  }

  /** An event queue's descriptor holds the queue until its last close (its file's release, or QUEUE_CLOSE), as the kernel's file does. */
  protected override handedFds(reply: IoctlReply, opener: number | undefined): void {
    for (const f of reply.newFds ?? []) f.object?.handOut(opener)
  }

  /** QUEUE_CLOSE handle=N: the shim's last close() of an event queue's descriptor. */
  private closeQueue(args: string[]): string {
    const m = args.length === 1 ? /^handle=(\d+)$/.exec(args[0]) : null
    if (!m) throw new ErrnoError('EINVAL', 'usage: QUEUE_CLOSE handle=N')
    closeQueueFd(this.ctx, Number(m[1]))
    return 'ok'
  }

  protected teardown(): void {
    this.rec?.close()
    if (this.ctx.fileClosed()) this.world.trace.emit(this.label, 'closed: all objects destroyed')
    else this.world.trace.emit(this.label, 'closed: a queue file is open; the context stays until its last one closes')
  }
}

/**
 * An open of dev/vfio/devices/vfioN: VFIO cdev commands for that device.
 * VFIO_DEVICE_BIND_IOMMUFD's iommufd field names a context by ID; closing
 * the file unbinds the device, as closing a VFIO cdev does.
 */
export class VfioDeviceSession extends Session {
  private bound: IommufdContext | undefined

  constructor(world: World, readonly device: PciDevice, recorder?: RequestRecorder) {
    super(world)
    this.rec = recorder?.open(`dev/vfio/devices/vfio${device.vfioIndex}`)
  }

  protected get label(): string {
    return `vfio${this.device.vfioIndex}`
  }

  protected env(fds?: ReadonlyMap<number, number>): DispatchEnv {
    return { ctx: this.bound, fds, contextById: (id) => this.world.contexts.get(fds?.get(id) ?? id), vfioAccess: this.bound !== undefined }
  }

  protected frameDevice(): PciDevice | undefined {
    return this.device
  }

  /**
   * VFIO_DEVICE_BIND_IOMMUFD's `iommufd` is a descriptor of the caller: it
   * must be open on dev/iommu, and it names the context that process opened.
   * The kernel does not tell a server which open a descriptor is, so a
   * process with several contexts open is asked to use the shim.
   */
  protected override ioctlEnv(caller: IoctlCaller): DispatchEnv {
    return {
      ...this.env(),
      contextById: (fd) => {
        const target = descriptorTarget(caller.tid || caller.pid, fd, 'iommufd')
        if (!target.endsWith('/dev/iommu')) throw new ErrnoError('EBADFD', `iommufd=${fd}: ${target} is not an iommufd`)
        const mine = [...this.world.contexts.values()].filter((c) => openers.get(c) === caller.pid)
        if (mine.length > 1) throw new ErrnoError('EINVAL', `iommufd=${fd}: this process has ${mine.length} iommufd contexts open, which a real ioctl cannot tell apart (use the shim)`)
        return mine[0]
      },
    }
  }

  protected override afterReply(reply: IoctlReply): void {
    if (reply.ioctl?.short === 'DEVICE_BIND' && !reply.errno) this.bound = this.world.ownerOf(this.device)
  }

  protected teardown(): void {
    this.rec?.close()
    const ctx = this.bound
    if (!ctx || this.world.ownerOf(this.device) !== ctx) return
    const dev = ctx.deviceOf(this.device)
    if (dev) unbind(ctx, dev)
    this.world.trace.emit(this.label, `closed: ${this.device.bdf} unbound from context ${ctx.id}`)
  }
}
