import { Poll } from '../util/poll'
import * as path from 'node:path'
import { ErrnoError } from '../util/errno'
import { TraceLog } from '../util/trace'
import { taskFailNth } from '../util/fail-nth'
import { Access, Caller, DirNode, FileNode, FsNode, OpenFile } from './nodes'

/** Model work for a request is the caller's thread's: its fail-nth (sys/kernel/debug/iommufd/fail-nth) counts the steps. */
function asCaller<T>(caller: Caller | undefined, f: () => T): T {
  return taskFailNth.as(caller?.tid ?? 0, f)
}

export interface Stat {
  mode: number
  size: number
  nlink: number
  uid: number
  gid: number
  /** Times in milliseconds since the epoch (fractions carry the nanoseconds a caller set). */
  atimeMs: number
  mtimeMs: number
  ctimeMs: number
}

/** What root changed of an entry: its owner and its times (the rest of its attributes come from the model). */
interface Meta {
  uid: number
  gid: number
  atimeMs: number
  mtimeMs: number
  ctimeMs: number
}

/** A time setattr/utimens may carry: milliseconds, or 'now'. */
export type TimeSet = number | 'now'

const S_IFDIR = 0o040000
const S_IFREG = 0o100000
const S_IFLNK = 0o120000
const O_ACCMODE = 3

/** A link's target as readlink answers it: relative to the link's directory, so it resolves inside the mount. */
function relativeTarget(linkPath: string, target: string): string {
  return path.posix.relative(path.posix.dirname(linkPath), target)
}

/**
 * Which real filesystem a path stands for, so that changing the tree answers
 * root as that filesystem does (measured on Linux 6.18, see README "Changing
 * the tree"): sysfs and debugfs refuse mkdir, ln, ln -s, mv, rm and rmdir
 * (EPERM) and creating a file (EACCES), and allow touch of an existing entry;
 * chmod, chown and chgrp are kept in sysfs and refused in debugfs. dev/ stands
 * for devtmpfs, which lets root chmod, chown and touch; its nodes are the ones
 * the model serves, so it is not reshaped: structure changes there answer as
 * in sysfs. Times are kept everywhere as touch, chmod, chown and writes to
 * sysfs attributes change them.
 */
export type FsKind = 'sysfs' | 'debugfs' | 'devtmpfs'

export function fsKindOf(p: string): FsKind {
  const norm = path.posix.normalize(`/${p}`)
  if (norm === '/dev' || norm.startsWith('/dev/')) return 'devtmpfs'
  if (norm === '/sys/kernel/debug' || norm.startsWith('/sys/kernel/debug/')) return 'debugfs'
  return 'sysfs'
}

/**
 * A debugfs text file says size 0, as debugfs and procfs files do, whatever
 * it holds (a reader such as fs.readFile then reads to the end; with 4096,
 * the size sysfs attributes say, it stopped there and cut the trace).
 */
function textInDebugfs(node: FileNode, p: string): boolean {
  return node.snapshot === true && !node.constant && fsKindOf(p) === 'debugfs'
}

/**
 * The file operations of a mounted tree, independent of any FUSE binding.
 * Every method either returns its result or throws ErrnoError; the binding
 * turns anything else into EIO.
 */
export class TreeOps {
  private readonly handles = new Map<number, OpenFile>()
  private nextHandle = 1
  /** Modes set with chmod; only stat shows them (root's access does not depend on them). */
  private readonly modes = new WeakMap<FsNode, number>()
  /** Owners and times root set (chown, touch) or a write changed; every other entry has root's and the mount's. */
  private readonly metas = new WeakMap<FsNode, Meta>()
  /** Open handles on sysfs attributes: a write there moves the file's mtime and ctime, as kernfs does. */
  private readonly sysfsHandles = new Map<number, FsNode>()
  /** Every entry's times until something changes them: when the tree was mounted. */
  private readonly bornMs = Date.now()

  constructor(private readonly root: DirNode, readonly trace: TraceLog) {}

  private meta(node: FsNode): Meta {
    let m = this.metas.get(node)
    if (!m) {
      m = { uid: 0, gid: 0, atimeMs: this.bornMs, mtimeMs: this.bornMs, ctimeMs: this.bornMs }
      this.metas.set(node, m)
    }
    return m
  }

  resolve(p: string): FsNode {
    let node: FsNode = this.root
    for (const name of p.split('/')) {
      if (name === '') continue
      if (node.kind !== 'dir') throw new ErrnoError('ENOTDIR', `${p}: not a directory`)
      const next: FsNode | undefined = node.child(name)
      if (!next) throw new ErrnoError('ENOENT', `${p}: no such entry`)
      node = next
    }
    return node
  }

  getattr(p: string): Stat {
    const node = this.resolve(p)
    const m = this.metas.get(node) ?? { uid: 0, gid: 0, atimeMs: this.bornMs, mtimeMs: this.bornMs, ctimeMs: this.bornMs }
    switch (node.kind) {
      case 'dir':
        return { mode: S_IFDIR | (this.modes.get(node) ?? 0o755), size: 0, nlink: 2, ...m }
      case 'link':
        return { mode: S_IFLNK | 0o777, size: relativeTarget(p, node.target).length, nlink: 1, ...m }
      case 'file':
        return { mode: S_IFREG | (this.modes.get(node) ?? node.mode), size: textInDebugfs(node, p) ? 0 : node.size(), nlink: 1, ...m }
    }
  }

  readdir(p: string): string[] {
    const node = this.resolve(p)
    if (node.kind !== 'dir') throw new ErrnoError('ENOTDIR', `${p}: not a directory`)
    return node.names()
  }

  readlink(p: string): string {
    const node = this.resolve(p)
    if (node.kind !== 'link') throw new ErrnoError('EINVAL', `${p}: not a symlink`)
    return relativeTarget(p, node.target)
  }

  open(p: string, flags: number, caller?: Caller): number {
    const node = this.resolve(p)
    if (node.kind === 'dir') throw new ErrnoError('EISDIR', `${p}: is a directory`)
    if (node.kind !== 'file') throw new ErrnoError('ELOOP', `${p}: symlink`)
    const access: Access = ['read', 'write', 'readwrite'][flags & O_ACCMODE] as Access
    if (access !== 'write' && !(node.mode & 0o444)) throw new ErrnoError('EACCES', `${p}: write-only`)
    if (access !== 'read' && !(node.mode & 0o222)) {
      // sysfs refuses the open (kernfs: no write method); debugfs lets root open a file without
      // one for writing, and each write is EINVAL (the VFS: the file cannot write)
      if (fsKindOf(p) !== 'debugfs') throw new ErrnoError('EACCES', `${p}: read-only`)
      const fh = this.allocHandle()
      const of = asCaller(caller, () => node.open('read', caller))
      this.handles.set(fh, {
        ...of,
        write: () => {
          throw new ErrnoError('EINVAL', `${p}: a read-only debugfs file has no write`)
        },
      })
      return fh
    }
    const fh = this.allocHandle()
    this.handles.set(fh, asCaller(caller, () => node.open(access, caller)))
    if (access !== 'read' && fsKindOf(p) === 'sysfs') this.sysfsHandles.set(fh, node)
    return fh
  }

  /** `>` truncates before writing; sysfs files have nothing to truncate. */
  truncate(p: string): void {
    const node = this.resolve(p)
    if (node.kind !== 'file') throw new ErrnoError('EISDIR', `${p}: not a file`)
    // root truncates a read-only debugfs file as it opens it (its size is 0 already)
    if (!(node.mode & 0o222) && fsKindOf(p) !== 'debugfs') throw new ErrnoError('EACCES', `${p}: read-only`)
  }

  // ---- changing the tree: each answers as the filesystem the path stands for (fsKindOf) ----

  /** Refuses a change of the tree's shape at `p` with what the filesystem answers root. */
  private reshape(p: string, what: string, errno: 'EPERM' | 'EACCES' = 'EPERM'): never {
    const kind = fsKindOf(p)
    const why = kind === 'devtmpfs' ? 'holds the nodes the model serves' : 'is shaped by the kernel alone'
    throw new ErrnoError(errno, `${p}: ${what}: ${kind} ${why}`)
  }

  mkdir(p: string): never {
    return this.reshape(p, 'mkdir')
  }

  /** O_CREAT of a name that does not exist (touch, > of a new name). */
  create(p: string): never {
    return this.reshape(p, 'create', 'EACCES')
  }

  symlink(p: string): never {
    return this.reshape(p, 'symlink')
  }

  link(p: string): never {
    return this.reshape(p, 'link')
  }

  unlink(p: string): never {
    this.resolve(p)
    return this.reshape(p, 'unlink')
  }

  rmdir(p: string): never {
    this.resolve(p)
    return this.reshape(p, 'rmdir')
  }

  rename(from: string, to: string): never {
    this.resolve(from)
    return this.reshape(from, `rename to ${to}`)
  }

  /** sysfs and devtmpfs keep the mode root sets; debugfs refuses (a locked-down kernel's debugfs_setattr). */
  chmod(p: string, mode: number): void {
    const node = this.resolve(p)
    if (fsKindOf(p) === 'debugfs') throw new ErrnoError('EPERM', `${p}: chmod: debugfs keeps the modes it was made with`)
    this.modes.set(node, mode & 0o7777)
    this.meta(node).ctimeMs = Date.now()
  }

  /** chown/chgrp (-1 leaves that ID): sysfs and devtmpfs keep the owner root sets, debugfs refuses as it refuses chmod. */
  chown(p: string, uid: number, gid: number): void {
    const node = this.resolve(p)
    if (fsKindOf(p) === 'debugfs') throw new ErrnoError('EPERM', `${p}: chown: debugfs keeps the owners it was made with`)
    const m = this.meta(node)
    if (uid !== -1 && uid !== 0xffffffff) m.uid = uid
    if (gid !== -1 && gid !== 0xffffffff) m.gid = gid
    m.ctimeMs = Date.now()
  }

  /** touch: every part of the tree keeps the times root sets (undefined leaves one), and the change time moves. */
  utimens(p: string, atime?: TimeSet, mtime?: TimeSet): void {
    const node = this.resolve(p)
    const m = this.meta(node)
    const now = Date.now()
    if (atime !== undefined) m.atimeMs = atime === 'now' ? now : atime
    if (mtime !== undefined) m.mtimeMs = mtime === 'now' ? now : mtime
    m.ctimeMs = now
  }

  read(fh: number, pos: number, len: number, caller?: Caller): Buffer | Promise<Buffer> {
    const h = this.handle(fh)
    return asCaller(caller, () => h.read(pos, len, caller))
  }

  write(fh: number, pos: number, data: Buffer, caller?: Caller): number {
    const h = this.handle(fh)
    const n = asCaller(caller, () => h.write(pos, data, caller))
    const attr = this.sysfsHandles.get(fh)
    if (attr) {
      const m = this.meta(attr)
      m.mtimeMs = m.ctimeMs = Date.now()
    }
    return n
  }

  /** What read() answers `caller` until fh's next write, when the file can say (OpenFile.replyOf). */
  replyOf(fh: number, caller?: Caller): { reply: Buffer; base: number } | undefined {
    return this.handles.get(fh)?.replyOf?.(caller)
  }

  /** The binding read fh's reply (replyOf) to `caller` up to its end. */
  replyRead(fh: number, caller: Caller): void {
    this.handles.get(fh)?.replyRead?.(caller)
  }

  /** A real ioctl(): ENOTTY on files that take none. */
  ioctl(fh: number, cmd: number, arg: bigint, caller: Caller): number {
    const h = this.handle(fh)
    if (!h.ioctl) throw new ErrnoError('ENOTTY', `ioctl 0x${cmd.toString(16)}: this file takes no ioctls`)
    return asCaller(caller, () => h.ioctl!(cmd, arg, caller))
  }

  /** For poll(): whether a read answers at once, and a way to hear when it will. */
  readable(fh: number): boolean {
    return this.handle(fh).readable?.() ?? true
  }

  /** For poll(): the bits that say a write would not block. */
  writeReadiness(fh: number): number {
    return this.handle(fh).pollWrite ?? Poll.OUT | Poll.WRNORM
  }

  whenReadable(fh: number, fn: () => void): () => void {
    const h = this.handle(fh)
    if (!h.whenReadable) {
      fn()
      return () => {}
    }
    return h.whenReadable(fn)
  }

  release(fh: number): void {
    const h = this.handles.get(fh)
    this.handles.delete(fh)
    this.sysfsHandles.delete(fh)
    h?.release()
  }

  get openHandles(): number {
    return this.handles.size
  }

  private handle(fh: number): OpenFile {
    const h = this.handles.get(fh)
    if (!h) throw new ErrnoError('EBADF', `no open file ${fh}`)
    return h
  }

  private allocHandle(): number {
    // fuse-native carries fh as a nonzero uint32
    do {
      this.nextHandle = this.nextHandle >= 0xffffffff ? 1 : this.nextHandle + 1
    } while (this.handles.has(this.nextHandle))
    return this.nextHandle
  }
}
