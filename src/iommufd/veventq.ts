/**
 * The vEVENTQ (IOMMU_VEVENTQ_ALLOC; the kernel's eventq.c and driver.c): a
 * vIOMMU's queue of events for its guest. Each record is an 8-byte header
 * (flags, sequence) and the type's payload; a full queue drops the event
 * and leaves one LOST_EVENTS header at its tail instead.
 */
import { ErrnoError } from '../util/errno'
import { succeeds } from '../util/fail-nth'
import { LIMITS } from '../util/limits'
import { hex } from './checks'
import type { IommufdContext } from './context'
import { QueueObject, RecordQueue } from './eventq'
import { IommufdObject, MmioFile } from './objects'

/** iommu_veventq_type (SELFTEST is the selftest's IOMMU_VEVENTQ_TYPE_SELFTEST). */
export const VeventqType = { DEFAULT: 0, ARM_SMMUV3: 1, TEGRA241_CMDQV: 2, SELFTEST: 0xbeefbeef } as const
/** iommu_veventq_flag. */
export const VeventqFlag = { LOST_EVENTS: 1 << 0 } as const
/** sizeof(struct iommufd_vevent_header). */
export const VEVENT_HEADER_SIZE = 8
/** Sequence numbers wrap after INT_MAX. */
const SEQ_MASK = 0x7fffffff

const TYPE_NAMES: Readonly<Record<number, string>> = { 1: 'ARM_SMMUV3', 2: 'TEGRA241_CMDQV', [VeventqType.SELFTEST]: 'SELFTEST' }

/** The vEVENTQs of each vIOMMU, by type (whatever kind of vIOMMU object it is). */
const queues = new WeakMap<IommufdObject, Map<number, Veventq>>()

/** The vIOMMU's vEVENTQ of `type`, if it has one. */
export function veventqOf(viommu: IommufdObject, type: number): Veventq | undefined {
  return queues.get(viommu)?.get(type)
}

/** A record's words in the decoded view: the header, then the payload. */
function describeRecord(r: Buffer, type: number): string {
  const flags = r.readUInt32LE(0)
  const seq = r.readUInt32LE(4)
  if (flags & VeventqFlag.LOST_EVENTS) return `seq=${seq} LOST_EVENTS`
  const p = r.subarray(VEVENT_HEADER_SIZE)
  if (type === VeventqType.ARM_SMMUV3 && p.length === 32) {
    const w = [0, 8, 16, 24].map((o) => p.readBigUInt64LE(o))
    const id = Number(w[0] & 0xffn)
    const vsid = Number(w[0] >> 32n)
    return `seq=${seq} event=${hex(id)} vsid=${hex(vsid)} evt=${w.map((x) => `0x${x.toString(16).padStart(16, '0')}`).join(',')}`
  }
  if (type === VeventqType.SELFTEST && p.length === 4) return `seq=${seq} virt_id=${hex(p.readUInt32LE(0))}`
  return `seq=${seq} data=${p.toString('hex')}`
}

/** One vIOMMU's event queue of one type. */
export class Veventq extends QueueObject {
  readonly type = 'veventq'
  readonly queue = new RecordQueue(0)
  /** Real events held (a LOST_EVENTS header is not one). */
  private held = 0
  private sequence = 0
  /** The LOST_EVENTS header while it sits at the tail. */
  private lostHeader: Buffer | undefined
  reported = 0
  lost = 0

  constructor(readonly viommu: IommufdObject, readonly veventqType: number, readonly depth: number) {
    super()
  }

  /** The most real events held: the depth, or less where iommufs bounds memory (a loss, as the kernel's failed allocation). */
  get capacity(): number {
    return Math.min(this.depth, LIMITS.veventqEvents.max)
  }

  /**
   * iommufd_viommu_report_event: queues the payload, or a LOST_EVENTS header
   * when the queue is full. Returns the record's sequence. `inCallersTask`: the
   * report runs in a command's task (TRIGGER_VEVENT), where fail-nth can fail
   * the record's allocation: the header is queued and the command is ENOMEM.
   */
  report(payload: Buffer, inCallersTask = false): { sequence: number; lost: boolean } {
    // the header at the tail goes: replaced by this event, or moved behind it with a new number
    if (this.lostHeader && this.queue.last() === this.lostHeader) this.queue.dropLast()
    this.lostHeader = undefined
    const failed = this.held < this.capacity && inCallersTask && !succeeds('atomic allocation')
    const full = this.held >= this.capacity || failed
    const rec = Buffer.alloc(VEVENT_HEADER_SIZE + (full ? 0 : payload.length))
    const sequence = this.sequence
    rec.writeUInt32LE(full ? VeventqFlag.LOST_EVENTS : 0, 0)
    rec.writeUInt32LE(sequence, 4)
    this.sequence = (this.sequence + 1) & SEQ_MASK
    if (full) {
      this.lostHeader = rec
      this.lost++
    } else {
      payload.copy(rec, VEVENT_HEADER_SIZE)
      this.held++
      this.reported++
    }
    this.queue.push(rec)
    if (failed) throw new ErrnoError('ENOMEM', `vEVENTQ ${this.id}: the event's allocation failed (fault injected); a LOST_EVENTS header is queued`)
    return { sequence, lost: full }
  }

  /**
   * read(): whole records, oldest first, stopping at the first that does not
   * fit. As iommufd_veventq_fops_read: fewer bytes than a header, or an oldest
   * record that does not fit (a LOST_EVENTS header is a header alone), is EINVAL.
   */
  read(len: number): Buffer {
    if (len < VEVENT_HEADER_SIZE) throw new ErrnoError('EINVAL', `a read of ${len} bytes: less than one ${VEVENT_HEADER_SIZE}-byte vEVENT header`)
    const oldest = this.queue.peek()[0]
    if (oldest && oldest.length > len) throw new ErrnoError('EINVAL', `a read of ${len} bytes: the oldest vEVENT takes ${oldest.length}`)
    return this.queue.takeFitting(len, (r) => {
      if (r === this.lostHeader) this.lostHeader = undefined
      else this.held--
    })
  }

  override files(): Record<string, MmioFile> {
    return {
      // opened read-write as the kernel's descriptor is; there is no write op, so a write is EINVAL
      queue: {
        mode: 0o600,
        stream: true,
        holdsContext: true,
        descriptorOpened: (tid) => this.descriptorOpened(tid),
        // the kernel's vEVENTQ poll reports EPOLLIN only (the fault queue's also EPOLLOUT)
        pollWrite: 0,
        size: () => 0,
        read: (_pos, len) => this.read(len),
        write: () => {
          throw new ErrnoError('EINVAL', 'a vEVENTQ is only read')
        },
        ...this.queue.pollHooks(),
      },
      // the records waiting, decoded (reading this takes nothing)
      events: {
        mode: 0o444,
        size: () => 4096,
        read: (pos, len) => {
          const text = Buffer.from(this.queue.peek().map((r) => `${describeRecord(r, this.veventqType)}\n`).join(''))
          return text.subarray(Math.min(pos, text.length), Math.min(pos + len, text.length))
        },
      },
    }
  }

  override teardown(): void {
    const m = queues.get(this.viommu)
    m?.delete(this.veventqType)
    if (m && !m.size) queues.delete(this.viommu)
    this.viommu.users--
  }

  describe(): [string, string][] {
    return [
      ['type', 'veventq'],
      ['users', String(this.users)],
      ['viommu', String(this.viommu.id)],
      ['veventq_type', TYPE_NAMES[this.veventqType] ?? hex(this.veventqType)],
      ['depth', String(this.depth)],
      ['queued', String(this.queue.length)],
      ['next_sequence', String(this.sequence)],
      ['reported', String(this.reported)],
      ['lost', String(this.lost)],
      ['fd_open', this.fdOpen ? '1' : '0'],
    ]
  }
}

/** The kernel's bound on veventq_depth (iommufd_veventq_alloc): above it, EINVAL. */
export const VEVENTQ_MAX_DEPTH = 1 << 19

/** IOMMU_VEVENTQ_ALLOC: checks in the kernel's order; one queue per vIOMMU and type. */
export function veventqAlloc(ctx: IommufdContext, a: { flags: number; viommuId: number; type: number; depth: number; reserved: number }): Veventq {
  if (a.flags) throw new ErrnoError('EOPNOTSUPP', `flags=${hex(a.flags)}: no flags are defined`)
  if (a.reserved) throw new ErrnoError('EOPNOTSUPP', `__reserved=${hex(a.reserved)}: must be 0`)
  if (a.type === VeventqType.DEFAULT) throw new ErrnoError('EOPNOTSUPP', 'type=DEFAULT (0): a vEVENTQ type is required (ARM_SMMUV3 is 1)')
  if (!a.depth || a.depth > VEVENTQ_MAX_DEPTH) throw new ErrnoError('EINVAL', `veventq_depth=${a.depth}: must be 1 to ${VEVENTQ_MAX_DEPTH}`)
  const viommu = ctx.objects.get<IommufdObject>(a.viommuId, 'viommu_id', 'viommu')
  const have = veventqOf(viommu, a.type)
  if (have) throw new ErrnoError('EEXIST', `type=${TYPE_NAMES[a.type] ?? hex(a.type)}: vIOMMU ${a.viommuId} already has vEVENTQ ${have.id} of that type`)
  const q = ctx.objects.insert(new Veventq(viommu, a.type, a.depth))
  let m = queues.get(viommu)
  if (!m) queues.set(viommu, (m = new Map()))
  m.set(a.type, q)
  viommu.users++
  return q
}
