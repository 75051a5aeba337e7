/**
 * Event queues a context hands to userspace as files (the kernel's
 * eventq.c): records are queued by the model and read whole from the
 * queue's descriptor; responses are written back to it. The fault queue
 * (IOMMU_FAULT_QUEUE_ALLOC, page requests of IOPF-capable HWPTs) and the
 * vEVENTQ (veventq.ts) are both built on it.
 */
import { Poll } from '../util/poll'
import { ErrnoError } from '../util/errno'
import { FallibleStep, fallible, succeeds } from '../util/fail-nth'
import { LIMITS } from '../util/limits'
import { hex, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { IommufdObject, MmioFile, objectFilePath } from './objects'

/**
 * A fallible step of a queue file's read or write, after `done` units went
 * through: false (stop there) when it fails then, its error when it fails
 * first, as the kernel's read and write return what they did or the error.
 */
function stepDone(step: FallibleStep, done: number): boolean {
  if (done) return succeeds(step)
  fallible(step)
  return true
}

/**
 * A FIFO of records (the kernel's deliver list): the model queues, a read
 * takes whole records, oldest first. Fixed-size records (`recordSize`) are
 * read by take(); records of any size by takeFitting(). Readers waiting in
 * poll() hear of each record queued.
 */
export class RecordQueue {
  private readonly records: Buffer[] = []
  private readonly waiters = new Set<() => void>()

  constructor(readonly recordSize: number) {}

  push(record: Buffer): void {
    this.records.push(record)
    for (const fn of [...this.waiters]) {
      this.waiters.delete(fn)
      fn()
    }
  }

  get length(): number {
    return this.records.length
  }

  /** Bytes queued. */
  get bytes(): number {
    return this.records.reduce((n, r) => n + r.length, 0)
  }

  /** The newest record, if any. */
  last(): Buffer | undefined {
    return this.records[this.records.length - 1]
  }

  /** Removes the newest record. */
  dropLast(): void {
    this.records.pop()
  }

  /** The records, oldest first (for the decoded views). */
  peek(): readonly Buffer[] {
    return this.records
  }

  /** Whole records that fit in `len` bytes (removed); a buffer too small for one is EINVAL, an empty queue reads 0 bytes. */
  take(len: number): Buffer {
    if (!this.records.length) return Buffer.alloc(0)
    const n = Math.floor(len / this.recordSize)
    if (n === 0) throw new ErrnoError('EINVAL', `a read of ${len} bytes cannot hold one ${this.recordSize}-byte record`)
    return Buffer.concat(this.records.splice(0, n))
  }

  /**
   * Whole records, oldest first, up to the first that does not fit in `len`
   * bytes (removed); `taken` sees each. Each is a copy to the reader: one that
   * fails stays queued, with the rest, and the read is EFAULT if it is the first.
   */
  takeFitting(len: number, taken?: (r: Buffer) => void): Buffer {
    let used = 0
    let n = 0
    for (; n < this.records.length && used + this.records[n].length <= len; n++) {
      if (!stepDone('copy to user', n)) break
      used += this.records[n].length
    }
    const out = this.records.splice(0, n)
    if (taken) out.forEach(taken)
    return Buffer.concat(out, used)
  }

  /** For poll(): calls `fn` once when a record is queued; returns the cancel. */
  whenPushed(fn: () => void): () => void {
    this.waiters.add(fn)
    return () => this.waiters.delete(fn)
  }

  /** The readiness hooks of a queue's file: readable while a record waits. */
  pollHooks(): Pick<MmioFile, 'readable' | 'whenReadable'> {
    return { readable: () => this.records.length > 0, whenReadable: (fn) => this.whenPushed(fn) }
  }
}

/**
 * An event queue object userspace may hold a descriptor for (a fault queue, a
 * vEVENTQ). While the descriptor is open it holds a user, as the kernel's
 * file holds the object: DESTROY is EBUSY until its last close.
 */
export abstract class QueueObject extends IommufdObject {
  fdOpen = false

  override handOut(tid: number | undefined): void {
    if (this.fdOpen) return
    this.fdOpen = true
    this.users++
    super.handOut(tid)
  }

  /** An open of the queue's file: the descriptor's last close when it is the descriptor's. */
  descriptorOpened(tid: number | undefined): (() => void) | undefined {
    return this.claimDescriptor(tid) ? () => this.closeFd() : undefined
  }

  /** That descriptor's last close (or its process's end). */
  closeFd(): void {
    if (!this.fdOpen) return
    this.fdOpen = false
    this.users--
  }
}

/** struct iommu_hwpt_pgfault flags. */
export const PgfaultFlag = { PASID_VALID: 1 << 0, LAST_PAGE: 1 << 1 } as const
/**
 * A page request's flags as its driver reports them (iommu_fault_page_request):
 * the uAPI's two and RESPONSE_NEEDS_PASID (VT-d), which the record carries
 * too, as iommufd copies them whole.
 */
export const FaultFlag = { ...PgfaultFlag, RESPONSE_NEEDS_PASID: 1 << 2 } as const
/** struct iommu_hwpt_pgfault perm (iommu_hwpt_pgfault_perm). */
export const PgfaultPerm = { READ: 1 << 0, WRITE: 1 << 1, EXEC: 1 << 2, PRIV: 1 << 3 } as const
/** iommufd_page_response_code. */
export const PageResponseCode = { SUCCESS: 0, INVALID: 1 } as const
/** sizeof(struct iommu_hwpt_pgfault), sizeof(struct iommu_hwpt_page_response). */
export const PGFAULT_SIZE = 40
export const PAGE_RESPONSE_SIZE = 8

/** One page request group as the IOMMU driver hands it over (iopf_group; the model's groups hold one fault, LAST_PAGE). */
export interface PageRequest {
  readonly devId: number
  readonly pasid: number
  /** FaultFlag bits. */
  readonly flags: number
  readonly grpid: number
  readonly perm: number
  readonly addr: bigint
  /** Where the response goes: the driver's page_response (CMD_RESUME, a page group response). None for the mock. */
  readonly respond?: (code: number) => void
  /** The attachment it came through (detaching answers its groups). */
  readonly device?: object
  readonly hwpt?: object
}

/** The iommu_hwpt_pgfault record of `r`, with its cookie. */
function pgfault(r: PageRequest, cookie: number): Buffer {
  const rec = Buffer.alloc(PGFAULT_SIZE)
  rec.writeUInt32LE(r.flags, 0)
  rec.writeUInt32LE(r.devId, 4)
  rec.writeUInt32LE(r.pasid, 8)
  rec.writeUInt32LE(r.grpid, 12)
  rec.writeUInt32LE(r.perm, 16)
  rec.writeBigUInt64LE(r.addr, 24)
  rec.writeUInt32LE(0, 32)
  rec.writeUInt32LE(cookie, 36)
  return rec
}

const PERM_NAMES = ['R', 'W', 'X', 'PRIV'] as const

/** "dev_id=1 pasid=none grpid=0x3 perm=W addr=0x5000": a group, decoded. */
export function describePageRequest(r: PageRequest): string {
  const perm = PERM_NAMES.filter((_, i) => r.perm & (1 << i)).join('|') || '0'
  return `dev_id=${r.devId} pasid=${r.flags & FaultFlag.PASID_VALID ? hex(r.pasid) : 'none'} grpid=${hex(r.grpid)} perm=${perm} addr=${hex(r.addr)}`
}

/**
 * A fault queue (the kernel's iommufd_fault): page request groups wait on the
 * deliver list until read; a read moves each group it returns to the
 * response table under a cookie (the lowest free one from 1, as the
 * kernel's xarray allocates); a response by cookie answers the group and
 * frees the cookie. At most LIMITS.faultGroups groups are held: past that
 * a new group is answered INVALID at once (the device sees its request fail).
 */
export class Fault extends QueueObject {
  readonly type = 'fault'
  private readonly deliver: PageRequest[] = []
  /** Groups read but not yet answered, by cookie. */
  readonly awaiting = new Map<number, PageRequest>()
  responded = 0
  /** Groups answered INVALID at once because the queue was full. */
  dropped = 0
  private readonly waiters = new Set<() => void>()

  get queued(): number {
    return this.deliver.length
  }

  /** A group from a device attached to an HWPT using this queue; false when the queue is full (it was answered INVALID). */
  report(r: PageRequest): boolean {
    if (this.deliver.length + this.awaiting.size >= LIMITS.faultGroups.max) {
      this.dropped++
      r.respond?.(PageResponseCode.INVALID)
      return false
    }
    this.deliver.push(r)
    for (const fn of [...this.waiters]) {
      this.waiters.delete(fn)
      fn()
    }
    return true
  }

  /** For poll(): calls `fn` once when a group is queued; returns the cancel. */
  whenQueued(fn: () => void): () => void {
    this.waiters.add(fn)
    return () => this.waiters.delete(fn)
  }

  /**
   * read(): `len` a multiple of 40 (else ESPIPE); whole groups, oldest first,
   * as many as fit (none fitting is EINVAL). A group whose cookie cannot be allocated or whose copy to
   * the reader fails stays queued, with the rest; the read is that step's
   * error if it is the first.
   */
  read(len: number): Buffer {
    if (len % PGFAULT_SIZE) throw new ErrnoError('ESPIPE', `a read of ${len} bytes: the count must be a multiple of ${PGFAULT_SIZE} (struct iommu_hwpt_pgfault)`)
    // a group always holds one fault here: only a read of 0 bytes cannot fit the first
    if (this.deliver.length && len < PGFAULT_SIZE) throw new ErrnoError('EINVAL', `a read of ${len} bytes cannot hold the oldest fault group`)
    const out: Buffer[] = []
    while (this.deliver.length && (out.length + 1) * PGFAULT_SIZE <= len) {
      if (!stepDone('ID insertion', out.length)) break
      if (!stepDone('copy to user', out.length)) break
      const r = this.deliver.shift()!
      let cookie = 1
      while (this.awaiting.has(cookie)) cookie++
      this.awaiting.set(cookie, r)
      out.push(pgfault(r, cookie))
    }
    return Buffer.concat(out)
  }

  /**
   * write(): 8-byte iommu_hwpt_page_response records (else ESPIPE), answered
   * in order; a bad code or a cookie no group awaits is EINVAL and stops
   * there. The bytes answered before it are the result, or the error if none.
   */
  write(data: Buffer): number {
    if (data.length % PAGE_RESPONSE_SIZE) throw new ErrnoError('ESPIPE', `a write of ${data.length} bytes: responses are ${PAGE_RESPONSE_SIZE}-byte records (struct iommu_hwpt_page_response)`)
    let off = 0
    for (; off < data.length; off += PAGE_RESPONSE_SIZE) {
      if (!stepDone('copy from user', off)) break
      const cookie = data.readUInt32LE(off)
      const code = data.readUInt32LE(off + 4)
      const bad =
        code !== PageResponseCode.SUCCESS && code !== PageResponseCode.INVALID
          ? `code=${code}: SUCCESS (0) or INVALID (1)`
          : !this.awaiting.has(cookie)
            ? `cookie=${cookie}: no page request awaits it (unknown, not read yet, or answered)`
            : undefined
      if (bad) {
        if (off === 0) throw new ErrnoError('EINVAL', bad)
        break
      }
      const r = this.awaiting.get(cookie)!
      this.awaiting.delete(cookie)
      this.responded++
      r.respond?.(code)
    }
    return off
  }

  /** Answers INVALID every group (queued or awaiting) that `match` selects: a detach, or the queue's end. */
  autoRespond(match: (r: PageRequest) => boolean = () => true): number {
    let n = 0
    for (let i = this.deliver.length - 1; i >= 0; i--) {
      const r = this.deliver[i]
      if (!match(r)) continue
      this.deliver.splice(i, 1)
      r.respond?.(PageResponseCode.INVALID)
      n++
    }
    for (const [cookie, r] of [...this.awaiting]) {
      if (!match(r)) continue
      this.awaiting.delete(cookie)
      r.respond?.(PageResponseCode.INVALID)
      n++
    }
    return n
  }

  override teardown(): void {
    this.autoRespond()
  }

  override files(): Record<string, MmioFile> {
    return {
      // no file position, as the kernel's anonymous file: pread, pwrite and lseek are ESPIPE
      queue: { mode: 0o600, stream: true, holdsContext: true, descriptorOpened: (tid) => this.descriptorOpened(tid), size: () => this.deliver.length * PGFAULT_SIZE, read: (_pos, len) => this.read(len), write: (_pos, data) => this.write(data), readable: () => this.deliver.length > 0, whenReadable: (fn) => this.whenQueued(fn), pollWrite: Poll.OUT /* iommufd_eventq_fops_poll: always POLLOUT, never POLLWRNORM */ },
    }
  }

  describe(): [string, string][] {
    return [
      ['type', 'fault'],
      ['users', String(this.users)],
      ['queued', String(this.deliver.length)],
      ['awaiting_response', [...this.awaiting.keys()].map((c) => hex(c)).join(' ') || '-'],
      ['responded', String(this.responded)],
      ['fd_open', this.fdOpen ? '1' : '0'],
      ['dropped', String(this.dropped)],
      ...this.deliver.map((r, i): [string, string] => [`queued.${i}`, describePageRequest(r)]),
      ...[...this.awaiting].map(([c, r]): [string, string] => [`cookie.${c}`, describePageRequest(r)]),
    ]
  }
}

/** Where a queue's descriptor opens, relative to the mount root (the shim opens it for the caller). */
export function queuePath(ctx: IommufdContext, obj: IommufdObject): string {
  return objectFilePath(ctx.id, obj, 'queue')
}

/** QUEUE_CLOSE: the last close of a queue's descriptor (EBADFD if `handle` is no queue with one open). */
export function closeQueueFd(ctx: IommufdContext, handle: number): void {
  const q = ctx.objects.find(handle)
  if (!(q instanceof QueueObject) || !q.fdOpen) throw new ErrnoError('EBADFD', `handle=${handle}: no event queue with an open descriptor`)
  q.closeFd()
}

/** IOMMU_FAULT_QUEUE_ALLOC: a fault queue; returns it (its descriptor is the queue file). */
export function faultAlloc(ctx: IommufdContext, flags: number): Fault {
  unknownFlags(flags, 0)
  return ctx.objects.insert(new Fault())
}
