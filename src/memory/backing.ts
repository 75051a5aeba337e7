import * as fs from 'node:fs'
import { servedDevices } from '../util/own-mounts'
import { CPU_PAGE, PageKey, devName, fileKey, readMaps } from './pages'

/** Why a memory access could not complete: the architecture's external abort, with the cause. */
export interface Abort {
  readonly abort: string
}

export function isAbort(v: unknown): v is Abort {
  return typeof v === 'object' && v !== null && 'abort' in v
}

/**
 * What sits behind a range of addresses a DMA can reach: offsets are the
 * backing's own (a process's virtual address, a file offset). A failed access
 * is an Abort, never an exception: DMA faults are results.
 */
export interface Backing {
  /** "pid 1234", "file /tmp/guest.img", "none". */
  readonly label: string
  read(offset: bigint, len: number): Buffer | Abort
  write(offset: bigint, data: Buffer): Abort | undefined
  /** One more mapping uses it. */
  hold(): void
  /** One mapping fewer; the last lets go of what the backing holds (an open file), and later accesses abort. */
  release(): void
  /** The size of the CPU page holding byte `offset`: a huge page's for hugetlb memory, else 4 KiB. */
  pageSizeAt(offset: bigint): bigint
}

/** Where ProcessBacking.pinProblem found a range unpinnable, and why. */
export interface PinProblem {
  readonly at: bigint
  /** A file of this server's own mount is mapped there (else nothing is, or `denied`). */
  readonly served: boolean
  /** Mapped, but without the access the pin needs (PROT_NONE, or read-only for a writable pin). */
  readonly denied?: PinAccess
}

/** The access a pin needs, as pin_user_pages checks the mapping's protection: FOLL_WRITE for a writable mapping. */
export type PinAccess = 'read' | 'write'

export function describePinProblem(p: PinProblem): string {
  const at = `0x${p.at.toString(16)}`
  if (p.denied) return `${at} is mapped without ${p.denied} permission`
  return p.served ? `${at} maps a file of this iommufs mount, which the server cannot read (it would wait on itself)` : `nothing mapped at ${at}`
}

/** /proc/PID/maps' "major:minor" (hex) as mountinfo writes it (decimal). */
const decimalDev = (dev: string): string => dev.split(':').map((x) => parseInt(x, 16)).join(':')

const HUGETLBFS_MAGIC = 0x958458f6
const TMPFS_MAGIC = 0x01021994

/** A backing IOAS_MAP_FILE maps: a file, or a selftest DMA-BUF; its size bounds the mapping. */
export interface SizedBacking extends Backing {
  size(): bigint
}

/** Where a mapping's bytes are: a backing, from an offset in it. */
export interface MemoryRef {
  readonly backing: Backing
  readonly offset: bigint
}

/** No memory: a text IOAS_MAP of a bare user_va. Every access is an external abort. */
export class NoBacking implements Backing {
  readonly label = 'none'

  read(): Abort {
    return { abort: 'no memory behind this mapping' }
  }

  write(): Abort {
    return { abort: 'no memory behind this mapping' }
  }

  hold(): void {}

  release(): void {}

  pageSizeAt(): bigint {
    return CPU_PAGE
  }
}

/** The bytes of an open file descriptor by position; `what` names it in aborts. */
abstract class FdBacking implements Backing {
  protected fd: number | undefined
  private refs = 1

  protected constructor(readonly label: string, fd: number) {
    this.fd = fd
  }

  protected abstract gone(): string

  abstract pageSizeAt(offset: bigint): bigint

  read(offset: bigint, len: number): Buffer | Abort {
    if (this.fd === undefined) return { abort: `${this.label}: released` }
    const out = Buffer.alloc(len)
    try {
      const n = fs.readSync(this.fd, out, 0, len, offset)
      if (n < len) return { abort: `${this.label}: ${this.gone()} at 0x${(offset + BigInt(n)).toString(16)}` }
      return out
    } catch (e) {
      return { abort: `${this.label}: ${(e as NodeJS.ErrnoException).code ?? 'error'} reading 0x${offset.toString(16)}` }
    }
  }

  write(offset: bigint, data: Buffer): Abort | undefined {
    if (this.fd === undefined) return { abort: `${this.label}: released` }
    try {
      const n = fs.writeSync(this.fd, data, 0, data.length, Number(offset))
      if (n < data.length) return { abort: `${this.label}: ${this.gone()} at 0x${(offset + BigInt(n)).toString(16)}` }
      return undefined
    } catch (e) {
      return { abort: `${this.label}: ${(e as NodeJS.ErrnoException).code ?? 'error'} writing 0x${offset.toString(16)}` }
    }
  }

  hold(): void {
    this.refs++
  }

  release(): void {
    if (--this.refs > 0) return
    if (this.fd !== undefined) fs.closeSync(this.fd)
    this.fd = undefined
  }

  /** Still open (some mapping holds it). */
  get open(): boolean {
    return this.fd !== undefined
  }
}

/**
 * A mapped file (IOAS_MAP_FILE), held open while mapped as the kernel holds
 * the file. A DMA beyond the file's current end (it was truncated after the
 * map) is an external abort, as a bus error would be.
 */
export class FileBacking extends FdBacking {
  /** The file's identity (device, inode), taken at open: a page's key stays valid after release. */
  private readonly dev: string
  private readonly inode: bigint

  /**
   * `pinsAnyFile`: named by a text path= (an extension), so any regular file
   * pins; a program's descriptor pins as memfd_pin_folios does.
   */
  private constructor(label: string, fd: number, private readonly pinsAnyFile: boolean) {
    super(label, fd)
    const st = fs.fstatSync(fd, { bigint: true })
    this.dev = devName(st.dev)
    this.inode = st.ino
  }

  /** The key of the file's byte at `offset`: the same for every mapping of the file (src/memory/pages.ts). */
  key(offset: bigint): PageKey {
    return fileKey(this.dev, this.inode, offset)
  }

  /** Opens `path` read-write (read-only if `writable` is false); throws the open's error. */
  static open(path: string, writable = true, pinsAnyFile = false): FileBacking {
    return new FileBacking(`file ${path}`, fs.openSync(path, writable ? 'r+' : 'r'), pinsAnyFile)
  }

  /**
   * Why bytes [offset, offset + length) cannot be pinned, as memfd_pin_folios
   * refuses them (EINVAL): past the file's end, or a file whose pages are not
   * shmem's or hugetlbfs's (a file on a disk filesystem). Undefined if they can.
   */
  pinRefusal(offset: bigint, length: bigint): string | undefined {
    const size = this.size()
    if (offset + length > size) return `beyond the end of the file (0x${size.toString(16)} bytes)`
    if (this.pinsAnyFile || this.fd === undefined) return undefined
    const type = fs.statfsSync(`/proc/self/fd/${this.fd}`).type
    if (type !== TMPFS_MAGIC && type !== HUGETLBFS_MAGIC) return 'not a memfd, shmem or hugetlbfs file (only their pages pin)'
    return undefined
  }

  /** A write past the file's current end aborts as a read there does; the write would grow the file back (a hole up to it). */
  override write(offset: bigint, data: Buffer): Abort | undefined {
    const end = this.size()
    if (this.fd !== undefined && offset + BigInt(data.length) > end) return { abort: `${this.label}: ${this.gone()} at 0x${(offset > end ? offset : end).toString(16)}` }
    return super.write(offset, data)
  }

  /** The file's size now. */
  size(): bigint {
    return this.fd === undefined ? 0n : BigInt(fs.fstatSync(this.fd).size)
  }

  /** A hugetlbfs file (a MFD_HUGETLB memfd too) is made of its filesystem's block size. */
  pageSizeAt(): bigint {
    if (this.fd === undefined) return CPU_PAGE
    try {
      const st = fs.statfsSync(`/proc/self/fd/${this.fd}`)
      return st.type === HUGETLBFS_MAGIC ? BigInt(st.bsize) : CPU_PAGE
    } catch {
      return CPU_PAGE // not a file statfs can tell of
    }
  }

  protected gone(): string {
    return 'beyond the end of the file'
  }
}

/** The longest range a pin checks through the page map (512 entries, one 4 KiB read); longer ones read the maps once. */
const PAGE_MAP_CHECK_BYTES = 512n * CPU_PAGE

/** /proc/kpageflags, opened once (null: it cannot be, as without root). */
let kpageflags: number | null | undefined
const PAGEMAP_PFN_MASK = (1n << 55n) - 1n
const KPF_SWAPBACKED = 14n
const KPF_HUGE = 17n

/**
 * Whether a page a pagemap entry marks as a file's or shared (bit 61) is
 * shared memory or hugetlb (its frame's KPF_SWAPBACKED or KPF_HUGE): shmem
 * and hugetlbfs have no page_mkwrite and are never this mount's, so writing
 * one waits on no file. A VMM's memfd guest memory is such memory. Without
 * the frame number (hidden from a process lacking CAP_SYS_ADMIN): no.
 */
function frameIsMemory(entry: bigint): boolean {
  const pfn = entry & PAGEMAP_PFN_MASK
  if (!pfn) return false
  if (kpageflags === undefined) {
    try {
      kpageflags = fs.openSync('/proc/kpageflags', 'r')
    } catch {
      kpageflags = null
    }
  }
  if (kpageflags === null) return false
  const flags = Buffer.alloc(8)
  try {
    if (fs.readSync(kpageflags, flags, 0, 8, Number(pfn * 8n)) !== 8) return false
  } catch {
    return false
  }
  const f = flags.readBigUInt64LE(0)
  return ((f >> KPF_SWAPBACKED) & 1n) === 1n || ((f >> KPF_HUGE) & 1n) === 1n
}

/**
 * The memory of a live process, by virtual address (/proc/PID/mem, as
 * process_vm_readv would reach it; the server runs as root). Opened once, at
 * map time, so a recycled PID never reaches another process. Once the process
 * has exited every DMA is an external abort: the model holds no pinned pages.
 */
export class ProcessBacking extends FdBacking {
  /** The process's page map, opened with its memory: which pages are present, seen without faulting any in. */
  private pagemap: number | undefined

  private constructor(readonly pid: number, fd: number) {
    super(`pid ${pid}`, fd)
    try {
      this.pagemap = fs.openSync(`/proc/${pid}/pagemap`, 'r')
    } catch {
      this.pagemap = undefined // then the maps are read for every access
    }
  }

  static open(pid: number): ProcessBacking {
    return new ProcessBacking(pid, fs.openSync(`/proc/${pid}/mem`, 'r+'))
  }

  /** open(), or undefined when the process is gone (or its memory cannot be opened). */
  static openLive(pid: number): ProcessBacking | undefined {
    try {
      return ProcessBacking.open(pid)
    } catch {
      return undefined
    }
  }

  /**
   * Whether reaching [va, va+len) could fault in a page of a file of this
   * mount, which would send this server a FUSE read it could never answer
   * while it waits: the program may have mapped one over a pinned range. A
   * present page (for a write, one that is no file's) is reached without a
   * fault; only otherwise are the maps read.
   */
  private reachesServedFile(va: bigint, len: number, write: boolean): boolean {
    return len > 0 && !this.allPresent(va, len, write) && ProcessBacking.servedFileIn(this.pid, va, BigInt(len))
  }

  /** Whether process `pid` maps a file of this mount somewhere in [va, va+len) (one read of its maps). */
  static servedFileIn(pid: number, va: bigint, len: bigint): boolean {
    const p = ProcessBacking.pinProblem(pid, va, len)
    return p !== undefined && p !== 'gone' && p.served
  }

  /** Every page of [va, va+len) present (bit 63 of its pagemap entry), and for a write no file page (bit 61) but shared memory. */
  private allPresent(va: bigint, len: number, write: boolean): boolean {
    if (this.pagemap === undefined) return false
    const first = va / CPU_PAGE
    const count = Number((va + BigInt(len) - 1n) / CPU_PAGE - first) + 1
    const entries = Buffer.alloc(count * 8)
    try {
      if (fs.readSync(this.pagemap, entries, 0, entries.length, Number(first * 8n)) !== entries.length) return false
    } catch {
      return false
    }
    for (let i = 0; i < count; i++) {
      const top = entries[i * 8 + 7]
      if (!(top & 0x80) || (write && top & 0x20 && !frameIsMemory(entries.readBigUInt64LE(i * 8)))) return false
    }
    return true
  }

  override read(offset: bigint, len: number): Buffer | Abort {
    if (this.reachesServedFile(offset, len, false)) return { abort: `${this.label}: a file of this mount is mapped at 0x${offset.toString(16)}; its pages cannot be read` }
    return super.read(offset, len)
  }

  override write(offset: bigint, data: Buffer): Abort | undefined {
    if (this.reachesServedFile(offset, data.length, true)) return { abort: `${this.label}: a file of this mount is mapped at 0x${offset.toString(16)}; its pages cannot be written` }
    return super.write(offset, data)
  }

  override release(): void {
    super.release()
    if (!this.open && this.pagemap !== undefined) {
      fs.closeSync(this.pagemap)
      this.pagemap = undefined
    }
  }

  protected gone(): string {
    return 'not mapped (or the process has exited)'
  }

  /**
   * pinProblem for this process, from its page map first: a range whose
   * pages are all present, none a file's but shared memory's, is mapped and
   * holds no file of this mount, with no maps read (a map of memory the
   * program has used costs one pread). A longer range, or any other page,
   * reads the maps.
   */
  pinProblemIn(va: bigint, len: bigint, need?: PinAccess): PinProblem | 'gone' | undefined {
    if (len > 0n && len <= PAGE_MAP_CHECK_BYTES && this.allPresent(va, Number(len), true)) return undefined
    return ProcessBacking.pinProblem(this.pid, va, len, need)
  }

  /**
   * What stops process `pid` having [va, va+len) pinned, from one read of its
   * maps: the first address it maps nothing at, or the first it maps from a
   * file of this server's own mount (reading that would fault the page in
   * through FUSE, a request only this server, then waiting, could answer).
   * With `need`, also the first it maps without that access (pin_user_pages'
   * check_vma_flags: EFAULT). Undefined when nothing does; 'gone' when the
   * process has no maps.
   */
  static pinProblem(pid: number, va: bigint, len: bigint, need?: PinAccess): PinProblem | 'gone' | undefined {
    const maps = readMaps(pid, { from: va, to: va + len })
    if (!maps) return 'gone'
    const own = servedDevices()
    const end = va + len
    let at = va
    for (const v of maps) {
      if (at >= end) return undefined
      if (v.end <= at) continue
      if (v.start > at) return { at, served: false }
      if (own.size && v.inode !== 0n && own.has(decimalDev(v.dev))) return { at, served: true }
      if (need && !(need === 'write' ? v.writable : v.readable)) return { at, served: false, denied: need }
      at = v.end
    }
    return at < end ? { at, served: false } : undefined
  }

  /** The KernelPageSize of the mapping holding `va` (/proc/PID/smaps); 4 KiB if it cannot be told. */
  pageSizeAt(va: bigint): bigint {
    let text: string
    try {
      text = fs.readFileSync(`/proc/${this.pid}/smaps`, 'utf8')
    } catch {
      return CPU_PAGE
    }
    let inside = false
    for (const line of text.split('\n')) {
      const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line)
      if (range) inside = BigInt(`0x${range[1]}`) <= va && va < BigInt(`0x${range[2]}`)
      else if (inside && line.startsWith('KernelPageSize:')) return BigInt(/(\d+)/.exec(line)![1]) * 1024n
    }
    return CPU_PAGE
  }

  /**
   * Why [va, va+len) cannot be pinned now, or undefined if it can: the
   * process has exited (its mm is gone: /proc/PID/mem reads nothing), or it
   * no longer maps all of it.
   */
  unpinnable(va: bigint, len: bigint, need?: PinAccess): string | undefined {
    if (this.fd === undefined) return `${this.label}: released`
    // the maps first: a byte of a file this server serves must not be read
    const p = ProcessBacking.pinProblem(this.pid, va, len, need)
    if (p !== 'gone' && p?.served) return describePinProblem(p)
    if (p !== 'gone' && p?.denied) return `process ${this.pid}: ${describePinProblem(p)}`
    try {
      if (fs.readSync(this.fd, Buffer.alloc(1), 0, 1, va) === 0) return `process ${this.pid}, which mapped it, has exited`
    } catch {
      // EIO: not mapped there; the maps say where
    }
    return p === 'gone' ? `process ${this.pid}, which mapped it, has exited` : p && `process ${this.pid}: ${describePinProblem(p)}`
  }

  /** unpinnable() for a process whose memory was never opened (the map pinned nothing). */
  static unpinnableIn(pid: number, va: bigint, len: bigint, need?: PinAccess): string | undefined {
    const p = ProcessBacking.pinProblem(pid, va, len, need)
    return p === 'gone' ? `process ${pid}, which mapped it, has exited` : p && `process ${pid}: ${describePinProblem(p)}`
  }
}
