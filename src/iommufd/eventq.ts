/**
 * Event queues a context hands to userspace as files (the kernel's
 * eventq.c): records are queued by the model and read whole from the
 * queue's descriptor; responses are written back to it. The fault queue
 * (IOMMU_FAULT_QUEUE_ALLOC, page requests of IOPF-capable HWPTs) is built on
 * it; a vEVENTQ is meant to share the same machinery.
 */
import { ErrnoError } from '../util/errno'
import { hex, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { IommufdObject, MmioFile } from './objects'

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

  /** Whole records, oldest first, up to the first that does not fit in `len` bytes (removed); `taken` sees each. */
  takeFitting(len: number, taken?: (r: Buffer) => void): Buffer {
    let used = 0
    let n = 0
    for (; n < this.records.length && used + this.records[n].length <= len; n++) used += this.records[n].length
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

/** struct iommu_hwpt_pgfault flags. */
export const PgfaultFlag = { PASID_VALID: 1 << 0, LAST_PAGE: 1 << 1 } as const
/** iommufd_page_response_code. */
export const PageResponseCode = { SUCCESS: 0, INVALID: 1 } as const
/** sizeof(struct iommu_hwpt_pgfault), sizeof(struct iommu_hwpt_page_response). */
export const PGFAULT_SIZE = 40
export const PAGE_RESPONSE_SIZE = 8

export interface PageRequest {
  readonly devId: number
  readonly pasid: number
  readonly pasidValid: boolean
  readonly grpid: number
  readonly perm: number
  readonly addr: bigint
}

/**
 * A fault queue: page requests wait in it until read; each read one waits
 * for its response (by cookie) on a write.
 */
export class Fault extends IommufdObject {
  readonly type = 'fault'
  readonly queue = new RecordQueue(PGFAULT_SIZE)
  /** Requests read but not yet answered, by cookie. */
  readonly awaiting = new Map<number, PageRequest>()
  private readonly queued = new Map<number, PageRequest>()
  private nextCookie = 1
  responded = 0
  /** A descriptor for the queue is open: it holds a user, as the kernel's file holds the object (DESTROY is EBUSY). */
  fdOpen = false

  /** The caller was handed a descriptor for the queue. */
  openFd(): void {
    if (this.fdOpen) return
    this.fdOpen = true
    this.users++
  }

  /** That descriptor's last close (or its process's end). */
  closeFd(): void {
    if (!this.fdOpen) return
    this.fdOpen = false
    this.users--
  }

  /** A page request from a device attached to an HWPT using this queue. */
  report(r: PageRequest): void {
    const cookie = this.nextCookie++
    const rec = Buffer.alloc(PGFAULT_SIZE)
    rec.writeUInt32LE(PgfaultFlag.LAST_PAGE | (r.pasidValid ? PgfaultFlag.PASID_VALID : 0), 0)
    rec.writeUInt32LE(r.devId, 4)
    rec.writeUInt32LE(r.pasid, 8)
    rec.writeUInt32LE(r.grpid, 12)
    rec.writeUInt32LE(r.perm, 16)
    rec.writeBigUInt64LE(r.addr, 24)
    rec.writeUInt32LE(0, 32)
    rec.writeUInt32LE(cookie, 36)
    this.queue.push(rec)
    this.queued.set(cookie, r)
  }

  read(len: number): Buffer {
    const out = this.queue.take(len)
    for (let off = 0; off < out.length; off += PGFAULT_SIZE) {
      const cookie = out.readUInt32LE(off + 36)
      const r = this.queued.get(cookie)
      if (r) this.awaiting.set(cookie, r)
      this.queued.delete(cookie)
    }
    return out
  }

  /** Responses, whole records only; a cookie that awaits none is EINVAL (nothing after it is taken). */
  write(data: Buffer): number {
    if (data.length % PAGE_RESPONSE_SIZE) throw new ErrnoError('EINVAL', `${data.length} bytes: responses are ${PAGE_RESPONSE_SIZE}-byte records`)
    let off = 0
    for (; off < data.length; off += PAGE_RESPONSE_SIZE) {
      const cookie = data.readUInt32LE(off)
      const code = data.readUInt32LE(off + 4)
      if (!this.awaiting.has(cookie)) throw new ErrnoError('EINVAL', `cookie=${cookie}: no page request awaits it`)
      if (code > PageResponseCode.INVALID) throw new ErrnoError('EINVAL', `code=${code}: SUCCESS (0) or INVALID (1)`)
      this.awaiting.delete(cookie)
      this.responded++
    }
    return off
  }

  override files(): Record<string, MmioFile> {
    return {
      queue: { mode: 0o600, size: () => this.queue.length * PGFAULT_SIZE, read: (_pos, len) => this.read(len), write: (_pos, data) => this.write(data), ...this.queue.pollHooks() },
    }
  }

  describe(): [string, string][] {
    return [
      ['type', 'fault'],
      ['users', String(this.users)],
      ['queued', String(this.queue.length)],
      ['awaiting_response', [...this.awaiting.keys()].map((c) => hex(c)).join(' ') || '-'],
      ['responded', String(this.responded)],
      ['fd_open', this.fdOpen ? '1' : '0'],
    ]
  }
}

/** Where a queue's descriptor opens, relative to the mount root (the shim opens it for the caller). */
export function queuePath(ctx: IommufdContext, obj: IommufdObject): string {
  return `sys/kernel/debug/iommufd/${ctx.id}/${obj.id}.${obj.type}/queue`
}

/** QUEUE_CLOSE: the last close of a queue's descriptor (EBADFD if `handle` is no queue with one open). */
export function closeQueueFd(ctx: IommufdContext, handle: number): void {
  const q = ctx.objects.find(handle)
  if (!(q instanceof Fault) || !q.fdOpen) throw new ErrnoError('EBADFD', `handle=${handle}: no event queue with an open descriptor`)
  q.closeFd()
}

/** IOMMU_FAULT_QUEUE_ALLOC: a fault queue; returns it (its descriptor is the queue file). */
export function faultAlloc(ctx: IommufdContext, flags: number): Fault {
  unknownFlags(flags, 0)
  return ctx.objects.insert(new Fault())
}
