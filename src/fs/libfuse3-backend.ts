/**
 * The default backend: libfuse3's low-level API through a small addon
 * (native/fuse3) that reads the sessions' fds on Node's main loop and calls
 * a session's handler synchronously for each request, in the order the kernel
 * queued them (SESSIONS: the tree is mounted as a machine mounts sysfs and
 * debugfs). Paths become inode numbers here; everything above sees paths.
 *
 * Caching per file kind:
 * - sysfs (a session without OPEN): every file read through the page cache.
 *   Constant ones with their exact size and day-long attribute and entry
 *   timeouts (no request at all); ones the model changes with attribute
 *   timeout 0, their text handed over with every GETATTR (exact size, an
 *   mtime that moves with the text), so each read() revalidates them.
 * - elsewhere, constant files in a directory whose entries never change:
 *   kernel page cache (keep_cache), the exact size, day-long timeouts; a
 *   re-read costs OPEN and RELEASE. Everything else: direct_io (every read
 *   reaches the model, also a re-read of one descriptor at offset 0) and
 *   attribute timeout 0.
 * - entries of directories computed on every look (contexts, objects):
 *   entry timeout 0, so a context's directory disappears at the moment it closes.
 */
import { Poll } from '../util/poll'
import * as path from 'node:path'
import { ErrnoError, ERRNO, errnoName } from '../util/errno'
import { PACKAGE_ROOT } from '../util/paths'
import { useDescriptorDevice } from '../util/own-mounts'
import { readStatus, tgidIn } from '../util/proc-status'
import { ProcessBacking } from '../memory/backing'
import { BackendOptions, Mounted, ROOT_FSNAME, errnoOf } from './fuse-common'
import { Caller, FsNode, ProcessMemory, StaticDir } from './nodes'
import { Stat, TimeSet, TreeOps } from './ops'

/** What native/fuse3 exports (all reply functions return libfuse's result, 0 or -errno). */
interface Fuse3Addon {
  /** Mounts on a worker thread; the handler hears OP.MOUNTED (0 or an errno), then OP.INIT. `flags`: MOUNT_*. */
  mount(dir: string, options: string, handler: Handler, receiver: object, startSeconds: number, flags: number): object
  /** With `detach` false the mount is left for the detach of the one above it; closing the session ends its connection. */
  unmount(session: object, detach: boolean): void
  replyErr(id: number, errno: number): number
  /** `meta`: [uid, gid, atimeMs, mtimeMs, ctimeMs]; without it, root's and the mount's time. */
  /** `text` (MOUNT_NO_OPEN sessions): the file's text, kept by the addon, which then reports its length and an mtime that moves when it changes; null: none now. */
  replyEntry(id: number, ino: number, mode: number, nlink: number, size: number, attrTimeout: number, entryTimeout: number, meta?: number[], text?: Buffer | null): number
  replyAttr(id: number, ino: number, mode: number, nlink: number, size: number, attrTimeout: number, meta?: number[], text?: Buffer | null): number
  replyOpen(id: number, fh: number, flags: number): number
  replyBuf(id: number, data: Buffer | string): number
  /** With `reply`: the writing thread `tid`'s reads of fh are answered from it (past `base` from its start) until fh's next write. */
  replyWrite(id: number, count: number, fh?: number, tid?: number, reply?: Buffer, base?: number): number
  replyDir(id: number, size: number, off: number, names: string[], inos: number[], modes: number[]): number
  replyIoctl(id: number, result: number, data?: Buffer): number
  replyPoll(id: number, revents: number): number
  onInterrupt(id: number): void
  notifyPoll(pollId: number, keep?: boolean): number
  dropPoll(pollId: number): void
  setSnapshot(session: object, ino: number, kind: number): number
  invalInode(session: object, ino: number): number
  invalEntry(session: object, parent: number, name: string): number
  /** Without mayFault, -EAGAIN when a page is not present (a write: or is a file's): reaching it could fault. */
  vmRead(pid: number, addr: bigint, len: number, mayFault: boolean): Buffer | number
  vmWrite(pid: number, addr: bigint, data: Buffer, mayFault: boolean): number
  /** [major, minor] of the file behind /proc/PID/fd/FD, with no request to any FUSE server; -errno. */
  descriptorDevice(pid: number, fd: number): [number, number] | number
}

/** Returns what OP.RENDER asks for (the text, or a positive errno; `a` = 1: no trace line for a failure); nothing for the rest. */
type Handler = (op: number, id: number, ino: number, a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown) => Buffer | number | void

/** Operation codes, as native/fuse3/fuse3.c numbers them. */
const OP = {
  INIT: 0, LOOKUP: 1, FORGET: 2, GETATTR: 3, READLINK: 4, OPEN: 5, READ: 6, WRITE: 7,
  RELEASE: 8, READDIR: 9, SETATTR: 10, IOCTL: 11, POLL: 12, INTERRUPT: 13, ENDED: 14,
  MKDIR: 15, CREATE: 16, UNLINK: 17, RMDIR: 18, RENAME: 19, SYMLINK: 20, LINK: 21, RENDER: 22, MOUNTED: 23,
} as const
const OP_NAMES = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k.toLowerCase()]))

const O_RDONLY = 0
const O_WRONLY = 1
const OPEN_DIRECT_IO = 1
const OPEN_KEEP_CACHE = 2
const OPEN_NONSEEKABLE = 4
const OPEN_NOFLUSH = 8
/** How the addon serves a snapshot file's read-only opens (setSnapshot). */
const SNAP_NONE = 0
const SNAP_DIRECT = 1
const SNAP_CACHED = 2
/** The session answers ENOSYS to OPEN: its files are read from the page cache with no request. */
const MOUNT_NO_OPEN = 1
const FATTR_MODE = 1 << 0
const FATTR_UID = 1 << 1
const FATTR_GID = 1 << 2
const FATTR_SIZE = 1 << 3
const FATTR_ATIME = 1 << 4
const FATTR_MTIME = 1 << 5
const FATTR_ATIME_NOW = 1 << 7
const FATTR_MTIME_NOW = 1 << 8
const S_IFMT = 0o170000

/** Larger transaction replies are not copied into the addon; their reads go through JS. */
const KEPT_REPLY_MAX = 64 << 10

/** How long the kernel may keep what never changes (a day). */
const FOREVER = 86400

export const ADDON_PATH = path.join(PACKAGE_ROOT, 'dist', 'native', 'fuse3.node')

let addon: Fuse3Addon | undefined
function loadAddon(): Fuse3Addon {
  if (addon) return addon
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(ADDON_PATH) as Fuse3Addon
  } catch (e) {
    throw new Error(`the libfuse3 binding is not usable (${ADDON_PATH}: ${(e as Error).message.split('\n')[0]}): run make build, or mount with --backend fuse-native`)
  }
  return addon
}

/**
 * The caller's memory through process_vm_readv/writev (root, same pid
 * namespace). A page the process has not faulted in is reached only once its
 * maps show no file of this mount there: faulting one in would send this
 * server a FUSE read it could never answer while it waits (EFAULT instead).
 */
export function processMemory(): ProcessMemory {
  const a = loadAddon()
  const notPresent = -ERRNO.EAGAIN
  const efault = -ERRNO.EFAULT
  return {
    read: (pid, addr, len) => {
      const r = a.vmRead(pid, addr, len, false)
      return r !== notPresent ? r : ProcessBacking.servedFileIn(pid, addr, BigInt(len)) ? efault : a.vmRead(pid, addr, len, true)
    },
    write: (pid, addr, data) => {
      const r = a.vmWrite(pid, addr, data, false)
      return r !== notPresent ? r : ProcessBacking.servedFileIn(pid, addr, BigInt(data.length)) ? efault : a.vmWrite(pid, addr, data, true)
    },
  }
}

interface Inode {
  readonly ino: number
  readonly path: string
  /** S_IFMT of what the kernel was told: a path that comes back as another type gets a new number. */
  readonly type: number
  /** Its path cannot go away (every directory above it has fixed entries). */
  readonly stable: boolean
  /** The addon was told whether it serves this inode's read-only opens (stable paths only). */
  told?: boolean
  lookups: number
}

/** Inode numbers for paths, held while the kernel remembers them (lookup counts, FORGET). */
class InodeTable {
  private readonly byIno = new Map<number, Inode>()
  private readonly byPath = new Map<string, Inode>()
  private next = 2

  /** `root`: the tree path the session's root (inode 1) stands for. */
  constructor(root: string) {
    const r: Inode = { ino: 1, path: root, type: 0o040000, stable: true, lookups: 1 }
    this.byIno.set(1, r)
    this.byPath.set(root, r)
  }

  get(ino: number): Inode {
    const n = this.byIno.get(ino)
    if (!n) throw new ErrnoError('ESTALE', `inode ${ino} is not known`)
    return n
  }

  known(p: string): number {
    return this.byPath.get(p)?.ino ?? 0
  }

  /** The inode for a looked-up path, one more lookup counted. */
  lookup(p: string, type: number, stable: boolean): Inode {
    let n = this.byPath.get(p)
    if (n && n.type !== type) {
      this.byPath.delete(p)
      n = undefined
    }
    if (!n) {
      n = { ino: this.next++, path: p, type, stable, lookups: 0 }
      this.byIno.set(n.ino, n)
      this.byPath.set(p, n)
    }
    n.lookups++
    return n
  }

  /** Whether the inode was dropped. */
  forget(ino: number, count: number): boolean {
    const n = this.byIno.get(ino)
    if (!n || ino === 1) return false
    n.lookups -= count
    if (n.lookups > 0) return false
    this.byIno.delete(ino)
    if (this.byPath.get(n.path) === n) this.byPath.delete(n.path)
    return true
  }
}

/**
 * Thread ids (what FUSE reports) to process ids; bounded, rebuilt when full.
 * An entry is read again after TGID_TTL_MS: Linux hands out ids in a cycle,
 * so a thread id comes back for another process only after pid_max others,
 * never within that time, and a KVM memslot or a context's opener is never
 * taken for another process's.
 */
const tgids = new Map<number, { tgid: number; at: number }>()
const MAX_TGIDS = 4096
const TGID_TTL_MS = 1000

/** The process a thread belongs to: replies are kept per process (and within it per thread until read), so a program's I/O threads share them. */
function tgidOf(tid: number): number {
  const now = performance.now()
  const known = tgids.get(tid)
  if (known && now - known.at < TGID_TTL_MS) return known.tgid
  const status = readStatus(tid)
  // gone already, or another pid namespace: the thread stands for itself
  const tgid = (status !== undefined ? tgidIn(status) : undefined) ?? tid
  if (tgids.size >= MAX_TGIDS) tgids.clear()
  tgids.set(tid, { tgid, at: now })
  return tgid
}

/** A caller for one request; what it registers to do on an interrupt runs if one comes. */
class RequestCaller implements Caller {
  cancels?: (() => void)[]
  readonly pid: number
  /** `tid`: the thread FUSE names; `pid` is its process. */
  constructor(readonly tid: number, readonly memory: ProcessMemory | undefined) {
    this.pid = tid ? tgidOf(tid) : 0
  }
  onCancel(fn: () => void): void {
    ;(this.cancels ??= []).push(fn)
  }
}

const childPath = (parent: string, name: string): string => (parent === '/' ? `/${name}` : `${parent}/${name}`)

/**
 * The tree as a machine mounts it: one FUSE session per filesystem, each
 * rooted at a directory of the one tree, all served by this process.
 * - the root (the device nodes of dev/, and sys/ as a mount point);
 * - sysfs at sys/: every file is a read-only attribute, so the session answers
 *   ENOSYS to OPEN and the kernel reads its files from the page cache with no
 *   request (a value the model changes is revalidated by a GETATTR per read);
 * - debugfs at sys/kernel/debug: files with per-open state (trace_pipe, queue
 *   registers, control files), so opens reach the server.
 */
export const SESSIONS: readonly { root: string; fsname: string; noOpen: boolean }[] = [
  { root: '/', fsname: ROOT_FSNAME, noOpen: false },
  { root: '/sys', fsname: 'sysfs', noOpen: true },
  { root: '/sys/kernel/debug', fsname: 'debugfs', noOpen: false },
]

/** What a session shows at the root of a session below it: an empty directory, as a mount point is. */
const MOUNT_POINT = new StaticDir()

interface SessionSpec {
  root: string
  fsname: string
  noOpen: boolean
}

/** A session's mounting and its end, as the handler hears them. */
interface SessionEvents {
  mounted(err: number): void
  ready(): void
  ended(): void
}

/** Shared by a mount's sessions: requests answered later and pending polls (both keyed by numbers unique across sessions). */
interface Shared {
  readonly a: Fuse3Addon
  readonly ops: TreeOps
  readonly memory: ProcessMemory
  /** Requests answered later (a read that waits), with what to do if the caller is interrupted. */
  readonly waiting: Map<number, RequestCaller>
  /** Each open file's pending poll handle, so a newer poll replaces it. */
  readonly polls: Map<number, { id: number; cancel: () => void }>
}

/**
 * The request handler of one session rooted at `spec.root`; `cuts` are the
 * roots of the sessions mounted inside it (shown as empty directories).
 * `session()` is the addon's handle once mounted.
 */
function sessionHandler(sh: Shared, spec: SessionSpec, cuts: readonly string[], session: () => object | undefined, ev: SessionEvents): Handler {
  const { a, ops, memory, waiting, polls } = sh
  const inodes = new InodeTable(spec.root)

  const fail = (id: number, op: number, p: string, e: unknown): void => {
    a.replyErr(id, errnoOf(ops.trace, OP_NAMES[op], p, e))
  }
  const resolve = (p: string): FsNode => (cuts.includes(p) ? MOUNT_POINT : ops.resolve(p))
  const attrOf = (node: FsNode, p: string): Stat => {
    const s = ops.getattr(p)
    // a file the kernel caches has its exact size; the rest say what sysfs says
    return { ...s, size: node.kind === 'file' && node.constant ? node.size() : s.size }
  }
  const metaOf = (s: Stat): number[] => [s.uid, s.gid, s.atimeMs, s.mtimeMs, s.ctimeMs]
  const cached = (node: FsNode, stable: boolean): boolean => stable && (node.kind !== 'file' || node.constant === true)
  /**
   * In a session without opens, an attribute's text goes with its attributes:
   * null when it cannot be taken now (its read takes it again and says why),
   * undefined for anything else.
   */
  const textFor = (node: FsNode, p: string): Buffer | null | undefined => {
    if (!spec.noOpen || node.kind !== 'file' || !node.snapshot) return undefined
    const t = takeText(p)
    return typeof t === 'number' ? null : t
  }
  /**
   * The text of a snapshot file: an open, a read of all of it at offset 0 and
   * a release, as any read-only open would do; a Buffer, or a positive errno
   * (traced when `trace`).
   */
  const takeText = (p: string, trace = false): Buffer | number => {
    let op = 'open'
    try {
      const fh = ops.open(p, O_RDONLY)
      try {
        op = 'read'
        const data = ops.read(fh, 0, Number.MAX_SAFE_INTEGER)
        if (data instanceof Promise) {
          data.catch(() => {})
          throw new Error(`${p}: a snapshot file's read waits`)
        }
        return data
      } finally {
        ops.release(fh)
      }
    } catch (e) {
      return trace ? errnoOf(ops.trace, op, p, e) : ERRNO.EIO
    }
  }

  /** A write with no descriptor behind it (sysfs, opened without OPEN): EACCES for a read-only attribute, as before. */
  const writeWhole = (p: string, data: Buffer, pos: number, caller: RequestCaller): number => {
    const fh = ops.open(p, O_WRONLY, caller)
    try {
      return ops.write(fh, pos, data, caller)
    } finally {
      ops.release(fh)
    }
  }

  const lookup = (id: number, parent: number, name: string): void => {
    const dirNode = inodes.get(parent)
    const p = childPath(dirNode.path, name)
    if (cuts.includes(dirNode.path)) throw new ErrnoError('ENOENT', `${p}: no such entry`)
    const node = resolve(p)
    const stat = attrOf(node, p)
    const stable = dirNode.stable && resolve(dirNode.path) instanceof StaticDir
    const n = inodes.lookup(p, stat.mode & S_IFMT, stable)
    const s = session()
    if (stable && !n.told && !spec.noOpen) {
      n.told = true
      // a snapshot file's read-only opens are served by the addon, which asks for the text alone (render)
      if (s && node.kind === 'file' && node.snapshot && node.mode & 0o444) a.setSnapshot(s, n.ino, node.constant ? SNAP_CACHED : SNAP_DIRECT)
    }
    const text = textFor(node, p)
    const ttl = cached(node, stable) && !(spec.noOpen && node.kind === 'file' && !text) ? FOREVER : 0
    a.replyEntry(id, n.ino, stat.mode, stat.nlink, text?.length ?? stat.size, ttl, stable ? FOREVER : 0, metaOf(stat), text)
  }

  /** The text of a snapshot inode the addon serves (OP.RENDER): a Buffer, or a positive errno (traced unless `quiet`). */
  const render = (ino: number, quiet: boolean): Buffer | number => {
    let p = `ino ${ino}`
    try {
      p = inodes.get(ino).path
    } catch (e) {
      return errnoOf(ops.trace, 'open', p, e)
    }
    return takeText(p, !quiet)
  }

  const getattr = (id: number, ino: number): void => {
    const n = inodes.get(ino)
    const node = resolve(n.path)
    const stat = attrOf(node, n.path)
    // without opens, a value the model changes is revalidated at every read (attributes never cached)
    const text = textFor(node, n.path)
    const ttl = cached(node, n.stable) && !(spec.noOpen && node.kind === 'file' && !text) ? FOREVER : 0
    a.replyAttr(id, ino, stat.mode, stat.nlink, text?.length ?? stat.size, ttl, metaOf(stat), text)
  }

  const open = (id: number, ino: number, flags: number, pid: number): void => {
    const n = inodes.get(ino)
    const fh = ops.open(n.path, flags, new RequestCaller(pid, memory))
    const node = resolve(n.path)
    const keep = node.kind === 'file' && node.constant === true && n.stable
    const stream = node.kind === 'file' && node.stream === true ? OPEN_NONSEEKABLE : 0
    if (a.replyOpen(id, fh, (keep ? OPEN_KEEP_CACHE : OPEN_DIRECT_IO) | OPEN_NOFLUSH | stream) !== 0) ops.release(fh) // the opener was interrupted
  }

  const read = (id: number, ino: number, fh: number, size: number, off: number, pid: number): void => {
    const caller = new RequestCaller(pid, memory)
    const r = ops.read(fh, off, size, caller)
    if (!(r instanceof Promise)) {
      a.replyBuf(id, r)
      return
    }
    // answered later: an interrupt (the caller got a signal) ends the wait with EINTR
    waiting.set(id, caller)
    a.onInterrupt(id)
    r.then(
      (data) => waiting.delete(id) && a.replyBuf(id, data),
      (e: unknown) => waiting.delete(id) && fail(id, OP.READ, inodes.get(ino).path, e),
    )
  }

  const interrupt = (id: number): void => {
    const caller = waiting.get(id)
    if (!caller) return
    waiting.delete(id)
    for (const fn of caller.cancels ?? []) fn()
    a.replyErr(id, ERRNO.EINTR)
  }

  const readdir = (id: number, ino: number, size: number, off: number): void => {
    const n = inodes.get(ino)
    const names = ['.', '..', ...(cuts.includes(n.path) ? [] : ops.readdir(n.path))]
    const inos = names.map((name, i) => (i < 2 ? ino : inodes.known(childPath(n.path, name)) || 0xffffffff))
    a.replyDir(id, size, off, names, inos, names.map(() => 0))
  }

  /**
   * truncate (before a write), chmod, chown/chgrp and touch; TreeOps decides
   * each, the size first as it changes nothing. `ownerTimes`: [uid, gid, atimeMs, mtimeMs].
   */
  const setattr = (id: number, ino: number, toSet: number, mode: number, ownerTimes: number[]): void => {
    const n = inodes.get(ino)
    const [uid, gid, atimeMs, mtimeMs] = ownerTimes
    if (toSet & FATTR_SIZE) ops.truncate(n.path)
    if (toSet & FATTR_MODE) ops.chmod(n.path, mode)
    if (toSet & (FATTR_UID | FATTR_GID)) ops.chown(n.path, toSet & FATTR_UID ? uid : -1, toSet & FATTR_GID ? gid : -1)
    if (toSet & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
      const time = (set: number, now: number, ms: number): TimeSet | undefined => (toSet & now ? 'now' : toSet & set ? ms : undefined)
      ops.utimens(n.path, time(FATTR_ATIME, FATTR_ATIME_NOW, atimeMs), time(FATTR_MTIME, FATTR_MTIME_NOW, mtimeMs))
    }
    getattr(id, ino)
  }

  /** A change of the tree's shape at parent/name; TreeOps answers (today: always a refusal, as sysfs gives). */
  const reshape = (op: number, parent: number, name: string, other?: unknown): void => {
    const p = childPath(inodes.get(parent).path, name)
    switch (op) {
      case OP.MKDIR:
        return ops.mkdir(p)
      case OP.CREATE:
        return ops.create(p)
      case OP.UNLINK:
        return ops.unlink(p)
      case OP.RMDIR:
        return ops.rmdir(p)
      case OP.SYMLINK:
        return ops.symlink(p)
      case OP.LINK:
        return ops.link(p)
      default: {
        const [newParent, newName] = other as [number, string]
        return ops.rename(p, childPath(inodes.get(newParent).path, newName))
      }
    }
  }

  const ioctl = (id: number, fh: number, cmd: number, arg: bigint, pid: number): void => {
    const result = ops.ioctl(fh, cmd, arg, new RequestCaller(pid, memory))
    a.replyIoctl(id, result)
  }

  const poll = (id: number, fh: number, pollId: number): void => {
    const old = polls.get(fh)
    if (old && pollId) {
      old.cancel()
      a.dropPoll(old.id)
      polls.delete(fh)
    }
    const ready = ops.readable(fh)
    if (!ready && pollId) {
      const cancel = ops.whenReadable(fh, () => {
        polls.delete(fh)
        a.notifyPoll(pollId)
      })
      polls.set(fh, { id: pollId, cancel })
    } else if (pollId) a.dropPoll(pollId)
    a.replyPoll(id, (ready ? Poll.IN | Poll.RDNORM : 0) | ops.writeReadiness(fh))
  }

  const release = (id: number, fh: number): void => {
    const p = polls.get(fh)
    if (p) {
      p.cancel()
      a.dropPoll(p.id)
      polls.delete(fh)
    }
    ops.release(fh)
    a.replyErr(id, 0)
  }

  return (op, id, ino, x, y, z, w, v) => {
    try {
      switch (op) {
        case OP.LOOKUP:
          return lookup(id, ino, x as string)
        case OP.GETATTR:
          return getattr(id, ino)
        case OP.OPEN:
          return open(id, ino, x as number, y as number)
        case OP.READ:
          return read(id, ino, x as number, y as number, z as number, w as number)
        case OP.WRITE: {
          const caller = new RequestCaller(w as number, memory)
          // a session without opens (sysfs): the write is a whole open, write and release of the attribute
          if (spec.noOpen) return a.replyWrite(id, writeWhole(inodes.get(ino).path, y as Buffer, z as number, caller))
          // the thread whose kept reply (the descriptor's last) the addon answered to its end, if any: mostly this one
          if (v) ops.replyRead(x as number, v === w ? caller : new RequestCaller(v as number, memory))
          const n = ops.write(x as number, z as number, y as Buffer, caller)
          // a transaction's reply goes along, so the writer's read of it needs no trip through JS
          const kept = caller.tid ? ops.replyOf(x as number, caller) : undefined
          if (kept && kept.reply.length <= KEPT_REPLY_MAX) a.replyWrite(id, n, x as number, caller.tid, kept.reply, kept.base)
          else a.replyWrite(id, n)
          return
        }
        case OP.RELEASE:
          return release(id, x as number)
        case OP.FORGET: {
          const s = session()
          if (inodes.forget(ino, x as number) && s) a.setSnapshot(s, ino, SNAP_NONE)
          return
        }
        case OP.RENDER:
          return render(ino, x === 1)
        case OP.READLINK:
          a.replyBuf(id, ops.readlink(inodes.get(ino).path))
          return
        case OP.READDIR:
          return readdir(id, ino, x as number, y as number)
        case OP.SETATTR:
          return setattr(id, ino, x as number, w as number, v as number[])
        case OP.MKDIR:
        case OP.CREATE:
        case OP.UNLINK:
        case OP.RMDIR:
        case OP.SYMLINK:
        case OP.LINK:
          return reshape(op, ino, x as string)
        case OP.RENAME:
          return reshape(op, ino, x as string, [y, z])
        case OP.IOCTL:
          return ioctl(id, x as number, y as number, z as bigint, v as number)
        case OP.POLL:
          return poll(id, x as number, y as number)
        case OP.INTERRUPT:
          return interrupt(id)
        case OP.MOUNTED:
          return ev.mounted(x as number)
        case OP.INIT:
          return ev.ready()
        case OP.ENDED:
          return ev.ended()
      }
    } catch (e) {
      if (!id) return
      let p = `ino ${ino}`
      try {
        p = inodes.get(ino).path
      } catch {
        // the path is only for the trace line
      }
      fail(id, op, p, e)
    }
  }
}

/**
 * Mounts the tree on `dir` as SESSIONS says, one session after the other
 * (each inside the one before): resolves once every session has answered the
 * kernel's INIT. unmount() detaches the root lazily, which takes the sessions
 * below with it, and ends every connection.
 */
export async function mountLibfuse3(dir: string, ops: TreeOps, opts: BackendOptions = {}): Promise<Mounted> {
  const a = loadAddon()
  useDescriptorDevice((pid, fd) => {
    const d = a.descriptorDevice(pid, fd)
    return typeof d === 'number' ? undefined : `${d[0]}:${d[1]}`
  })
  const shared: Shared = { a, ops, memory: processMemory(), waiting: new Map(), polls: new Map() }
  const start = Math.floor(Date.now() / 1000)
  /** Mounted sessions, the root first. */
  const live: object[] = []
  let over = false

  const unmountAll = (): void => {
    if (over) return
    over = true
    for (const [, p] of shared.polls) p.cancel()
    // the root's lazy detach takes every mount below it; the others' connections end when their fds close
    live.forEach((s, i) => a.unmount(s, i === 0))
    live.length = 0
  }

  for (const spec of SESSIONS) {
    const cuts = SESSIONS.filter((o) => o.root !== spec.root && o.root.startsWith(spec.root === '/' ? '/' : `${spec.root}/`)).map((o) => o.root)
    let handle: object | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        const where = path.join(dir, spec.root)
        const handler = sessionHandler(shared, spec, cuts, () => handle, {
          mounted: (err) => {
            if (err) reject(new Error(`cannot mount ${where}: fuse_session_mount: ${errnoName(err) ?? `errno ${err}`}`))
          },
          ready: resolve,
          ended: () => {
            // a session went away from outside (umount, an aborted connection): the tree is one, so all go
            if (over) return
            unmountAll()
            opts.onEnded?.()
          },
        })
        try {
          handle = a.mount(where, `fsname=${spec.fsname},subtype=iommufs`, handler, {}, start, spec.noOpen ? MOUNT_NO_OPEN : 0)
        } catch (e) {
          reject(new Error(`cannot mount ${where}: ${(e as Error).message}`))
        }
      })
    } catch (e) {
      if (handle) a.unmount(handle, live.length === 0)
      unmountAll()
      throw e
    }
    live.push(handle!)
  }

  let unmounting: Promise<void> | undefined
  return {
    unmount: () =>
      (unmounting ??= new Promise<void>((res) => {
        unmountAll()
        res()
      })),
  }
}
