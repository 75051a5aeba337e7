import { ProcessMemory } from '../uapi/memory'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'

export type { ProcessMemory }

/**
 * The filesystem as the model presents it: directories, files and symlinks.
 * Knows nothing of FUSE; the ops module turns it into file operations.
 */
export type FsNode = DirNode | FileNode | LinkNode

export interface DirNode {
  readonly kind: 'dir'
  /** The names in this directory now, in listing order. */
  names(): string[]
  child(name: string): FsNode | undefined
}

export interface FileNode {
  readonly kind: 'file'
  /** Permission bits, as sysfs shows them (0444, 0644, 0200...). */
  readonly mode: number
  /** What stat reports; sysfs attributes say 4096 whatever their length, constant ones their exact length. */
  size(): number
  /** `caller`: who opens, when the binding can tell. */
  open(access: Access, caller?: Caller): OpenFile
  /** The content never changes while mounted, so the kernel may cache it (with the exact size). */
  readonly constant?: boolean
  /**
   * Every open is only a snapshot of one text, taken at each read of offset 0,
   * with no other state and no effect: a binding may serve read-only opens
   * itself and ask for the text alone (an open, a read at 0, a release).
   */
  readonly snapshot?: boolean
  /** No file position: opened non-seekable (pread and lseek answer ESPIPE), as an event queue's descriptor. */
  readonly stream?: boolean
}

export interface LinkNode {
  readonly kind: 'link'
  /** Absolute path inside the mount; readlink answers it relative to the link. */
  readonly target: string
}

export type Access = 'read' | 'write' | 'readwrite'

/** Who makes a request, as far as the FUSE binding can tell. */
export interface Caller {
  /** The requesting process (thread group) id; 0 when the binding cannot tell. */
  readonly pid: number
  /** The requesting thread, as the kernel reports it (0 when unknown); its memory is the process's. */
  readonly tid: number
  /** What to do if the caller stops waiting (a signal interrupted it); only reads that wait register this. */
  onCancel(fn: () => void): void
  /** The caller's memory, for ioctl arguments; absent when the binding cannot reach it. */
  readonly memory?: ProcessMemory
}

/** One open() of a file: all its per-descriptor state lives here. */
export interface OpenFile {
  /** The bytes at `pos`; a promise when the read waits for data (trace_pipe). */
  read(pos: number, len: number, caller?: Caller): Buffer | Promise<Buffer>
  write(pos: number, data: Buffer, caller?: Caller): number
  release(): void
  /** For poll(): whether a read would answer at once; absent = always. */
  readable?(): boolean
  /** Calls `fn` once when a read would answer at once; returns the cancel. */
  whenReadable?(fn: () => void): () => void
  /**
   * What read() answers `caller` from now until the descriptor's next write
   * (a transaction's reply): `reply`, with reads at or past `base` starting at
   * its beginning. A binding may then answer that caller's reads itself.
   */
  replyOf?(caller?: Caller): { reply: Buffer; base: number }
  /** The binding answered `caller`'s reads of the reply replyOf gave it, up to its end (the file cannot see those reads). */
  replyRead?(caller: Caller): void
  /** The poll() bits that say a write would not block (Poll); absent = POLLOUT|POLLWRNORM, a file with no poll op's. */
  readonly pollWrite?: number
  /** A real ioctl() on the descriptor: its argument is read from and written to the caller's memory. Returns ioctl()'s value. */
  ioctl?(cmd: number, arg: bigint, caller: Caller): number
}

/** A directory whose entries are fixed once built. */
export class StaticDir implements DirNode {
  readonly kind = 'dir'
  private readonly entries = new Map<string, FsNode>()

  add(name: string, node: FsNode): this {
    if (this.entries.has(name)) throw new Error(`duplicate entry ${name}`)
    this.entries.set(name, node)
    return this
  }

  /** The sub-directory `name`, made on first use. */
  dir(name: string): StaticDir {
    const existing = this.entries.get(name)
    if (existing instanceof StaticDir) return existing
    if (existing) throw new Error(`${name} is not a directory`)
    const d = new StaticDir()
    this.entries.set(name, d)
    return d
  }

  names(): string[] {
    return [...this.entries.keys()]
  }

  child(name: string): FsNode | undefined {
    return this.entries.get(name)
  }
}

/** A directory whose entries are computed on every look (contexts, objects): a listing and a lookup by name. */
export class LiveDir implements DirNode {
  readonly kind = 'dir'

  constructor(
    private readonly list: () => string[],
    private readonly lookup: (name: string) => FsNode | undefined,
  ) {}

  names(): string[] {
    return this.list()
  }

  child(name: string): FsNode | undefined {
    return this.lookup(name)
  }
}

export const SYSFS_SIZE = 4096

/**
 * A sysfs-style attribute: `show` renders the whole value; the text is taken
 * once per open and again whenever the descriptor reads offset 0, so a reader
 * using small chunks never sees a torn value and `pread(fd, 0)` sees the current one.
 * `store`, when given, receives each write without its trailing newline.
 */
export class AttributeFile implements FileNode {
  readonly kind = 'file'
  readonly mode: number
  readonly snapshot = true

  /** `constant`: `show` always renders the same text (a feature file of the topology). */
  constructor(private readonly show: () => string, private readonly store?: (text: string) => void, mode?: number, readonly constant = false) {
    this.mode = mode ?? (store ? 0o644 : 0o444)
  }

  size(): number {
    return this.constant ? Buffer.byteLength(this.show()) : SYSFS_SIZE
  }

  open(): OpenFile {
    let snapshot: Buffer | undefined
    return {
      read: (pos, len) => {
        if (pos === 0 || !snapshot) snapshot = Buffer.from(this.show())
        return snapshot.subarray(Math.min(pos, snapshot.length), Math.min(pos + len, snapshot.length))
      },
      write: (pos, data) => {
        if (!this.store) throw new ErrnoError('EACCES', 'read-only attribute')
        if (pos !== 0) throw new ErrnoError('EINVAL', 'attributes are written whole, at offset 0')
        if (data.length > LIMITS.attributeWrite.max) throw new ErrnoError(LIMITS.attributeWrite.errno, `attribute writes are at most ${LIMITS.attributeWrite.max} bytes`)
        this.store(data.toString('utf8').replace(/\n$/, ''))
        return data.length
      },
      release: () => {},
    }
  }
}

export function symlink(target: string): LinkNode {
  return { kind: 'link', target }
}
