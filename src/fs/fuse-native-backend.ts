/**
 * The fallback backend, fuse-native (libfuse2's high-level API, a thread per
 * request handed to JS): it mounts a TreeOps on a directory and turns every
 * callback into a call that can neither throw nor hang. It cannot set caching
 * per file, has no poll, interrupt or ioctl, and does not say who calls.
 */
import Fuse = require('fuse-native')
import { BackendOptions, Mounted, ROOT_FSNAME, errnoOf as errnoFor } from './fuse-common'
import { detach } from './unmount'
import { Caller } from './nodes'
import { TreeOps, Stat, TimeSet } from './ops'

/**
 * Kernel caching, chosen per what the tree holds (fuse-native can only set
 * these for the whole mount):
 * - direct_io: every read reaches the model. Attribute values, replies and
 *   debug files change, and a re-read of one descriptor must see the current value.
 * - attr_timeout=0: attributes are never cached, so stat of an entry that has
 *   gone (a closed context, a destroyed object) asks the server and gets ENOENT.
 * - entry_timeout=1: a name's lookup is remembered for a second. Path walks
 *   of the static tree then cost no request per component, and nothing goes
 *   stale: opens and stats still reach the server, which resolves the path.
 * - negative_timeout=0: a missing name is never remembered, so new contexts
 *   and objects appear at once.
 */
/** UTIME_NOW and UTIME_OMIT as fuse-native converts them to milliseconds (tv_sec 0, tv_nsec 2^30 - 1 or - 2). */
const UTIME_SPECIAL_MS = 1073
const KERNEL_OPTIONS = ['direct_io', 'attr_timeout=0', 'entry_timeout=1', 'negative_timeout=0']

class IommufsFuse extends Fuse {
  constructor(mnt: string, ops: Fuse.FuseOps, private readonly extra: string[]) {
    // no per-request timer: every handler answers at once, except reads that wait on purpose (trace_pipe)
    super(mnt, ops, { fsname: ROOT_FSNAME, subtype: 'iommufs', force: false, mkdir: false, timeout: false })
  }

  override _fuseOptions(): string {
    const base = super._fuseOptions()
    const extra = [...KERNEL_OPTIONS, ...this.extra].join(',')
    return base ? `${base},${extra}` : `-o${extra}`
  }
}

/**
 * How long a read that waits (trace_pipe) may wait here before it ends with
 * EOF: interrupts never reach a fuse-native server, so a waiting reader could
 * not be killed otherwise.
 */
export const WAIT_LIMIT_MS = 1000

/** A caller with no pid whose wait is cancelled after WAIT_LIMIT_MS. */
function boundedWait(): Caller & { start(): void; stop(): void } {
  const cancels: (() => void)[] = []
  let timer: NodeJS.Timeout | undefined
  return {
    pid: 0,
    tid: 0,
    onCancel: (fn) => void cancels.push(fn),
    start: () => {
      timer = setTimeout(() => cancels.forEach((fn) => fn()), WAIT_LIMIT_MS)
    },
    stop: () => clearTimeout(timer),
  }
}

Fuse.unmount = (mnt, cb) => {
  detach(mnt).then(() => cb(null), (e: Error) => cb(e))
}

export function mountFuseNative(dir: string, ops: TreeOps, opts: BackendOptions = {}): Promise<Mounted> {
  const toStat = (s: Stat): Fuse.FuseStat => ({
    mode: s.mode,
    size: s.size,
    nlink: s.nlink,
    uid: s.uid,
    gid: s.gid,
    atime: new Date(s.atimeMs),
    mtime: new Date(s.mtimeMs),
    ctime: new Date(s.ctimeMs),
  })
  /**
   * fuse-native hands utimens milliseconds, the atime in both arguments (its
   * binding passes tv[0] twice), and UTIME_NOW/UTIME_OMIT as 1073 ms
   * (tv_sec 0, the special tv_nsec): that is "now" here.
   */
  const nativeTime = (ms: number): TimeSet => (ms === UTIME_SPECIAL_MS ? 'now' : ms)

  const errnoOf = (op: string, p: string, e: unknown): number => -errnoFor(ops.trace, op, p, e)
  /** Runs one operation, its failure turned into a negative errno. */
  const run = <T>(op: string, p: string, fn: () => T): T | number => {
    try {
      return fn()
    } catch (e) {
      return errnoOf(op, p, e)
    }
  }
  const reply = <T>(op: string, p: string, cb: (err: number, v?: T) => void, fn: () => T): void => {
    const r = run(op, p, fn)
    if (typeof r === 'number' && r < 0) cb(r)
    else cb(0, r as T)
  }

  const fuseOps: Fuse.FuseOps = {
    getattr: (p, cb) => reply('getattr', p, cb, () => toStat(ops.getattr(p))),
    readdir: (p, cb) => reply('readdir', p, cb, () => ops.readdir(p)),
    readlink: (p, cb) => reply('readlink', p, cb, () => ops.readlink(p)),
    open: (p, flags, cb) => reply('open', p, cb, () => ops.open(p, flags)),
    read: (p, fh, buf, len, pos, cb) => {
      // libfuse's buffer stays valid until cb, also for a read that waits
      const caller = boundedWait()
      const r = run('read', p, () => ops.read(fh, pos, len, caller))
      if (typeof r === 'number') cb(r)
      else if (r instanceof Promise) {
        caller.start()
        r.then((data) => cb(data.copy(buf, 0)), (e: unknown) => cb(errnoOf('read', p, e))).finally(() => caller.stop())
      } else cb(r.copy(buf, 0))
    },
    write: (p, fh, buf, len, pos, cb) => {
      // buf is libfuse's memory and is gone after cb: copy it first
      const data = Buffer.from(buf.subarray(0, len))
      cb(run('write', p, () => ops.write(fh, pos, data)))
    },
    truncate: (p, _size, cb) => reply('truncate', p, cb, () => ops.truncate(p)),
    ftruncate: (p, _fh, _size, cb) => reply('ftruncate', p, cb, () => ops.truncate(p)),
    release: (p, fh, cb) => reply('release', p, cb, () => ops.release(fh)),
    // changes to the tree: TreeOps decides, per filesystem, as the kernel's would
    create: (p, _mode, cb) => reply('create', p, cb, () => ops.create(p)),
    mknod: (p, _mode, _dev, cb) => reply('mknod', p, cb, () => ops.create(p)),
    mkdir: (p, _mode, cb) => reply('mkdir', p, cb, () => ops.mkdir(p)),
    unlink: (p, cb) => reply('unlink', p, cb, () => ops.unlink(p)),
    rmdir: (p, cb) => reply('rmdir', p, cb, () => ops.rmdir(p)),
    rename: (p, dest, cb) => reply('rename', p, cb, () => ops.rename(p, dest)),
    symlink: (_target, p, cb) => reply('symlink', p, cb, () => ops.symlink(p)),
    link: (_src, p, cb) => reply('link', p, cb, () => ops.link(p)),
    chmod: (p, mode, cb) => reply('chmod', p, cb, () => ops.chmod(p, mode)),
    chown: (p, uid, gid, cb) => reply('chown', p, cb, () => ops.chown(p, uid, gid)),
    utimens: (p, atime, mtime, cb) => reply('utimens', p, cb, () => ops.utimens(p, nativeTime(atime), nativeTime(mtime))),
  }

  const fuse = new IommufsFuse(dir, fuseOps, opts.nonEmpty ? ['nonempty'] : [])
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) return reject(new Error(`cannot mount ${dir}: ${err.message}`))
      resolve({
        unmount: () => new Promise<void>((res, rej) => fuse.unmount((e) => (e ? rej(e) : res()))),
      })
    })
  })
}
