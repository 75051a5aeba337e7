import { ErrnoError } from '../../util/errno'
import { hex } from '../bits'
import { RingIndex } from '../ring'
import { PhysicalMemory } from '../../memory/physical'
import { SmmuEvent, describeEvent, encodeEvent } from './events'

/** Bytes of one event record (SMMUv3 §7.3). */
export const EVENT_SIZE = 32
/** EVENTQ_PROD.OVFLG and EVENTQ_CONS.OVACKFLG (bit 31 of each register). */
const OVF = 0x80000000
/** Linux caps the event queue at 2^17 entries (Q_MAX_SZ_SHIFT 22 less the 32-byte entry). */
export const EVTQ_MAX_SHIFT = 17

/** The four record words as the driver reads them, and the event as written, for the decoded view. */
export interface EventRecord {
  readonly words: readonly [bigint, bigint, bigint, bigint]
  readonly event: SmmuEvent
}

/**
 * An SMMUv3's event queue (§7.2, §7.4): a ring of 32-byte records in memory
 * the SMMU writes at EVENTQ_PROD and the driver consumes at EVENTQ_CONS.
 * When the ring is full a new record is lost and, unless an overflow is
 * already unacknowledged (PROD.OVFLG != CONS.OVACKFLG), PROD.OVFLG toggles.
 *
 * `irq`: while enabled, the driver's interrupt thread drains the queue as
 * soon as a record is written (what Linux does); masked, records stay until
 * it is enabled again, so overflow can be seen.
 */
export class Smmuv3EventQueue {
  readonly ring: RingIndex
  private base: bigint | undefined
  private readonly written: (SmmuEvent | undefined)[]
  /** EVENTQ_PROD: wrap + index, OVFLG at bit 31. */
  prod = 0
  /** EVENTQ_CONS: wrap + index, OVACKFLG at bit 31. */
  cons = 0
  irq: 'enabled' | 'masked' = 'enabled'
  /** Records written, and records lost to a full queue, since reset. */
  recorded = 0
  lost = 0
  /** The driver's handler for one record (set by the host driver model). */
  handler: ((r: EventRecord) => void) | undefined
  /** The driver noticed an overflow (PROD.OVFLG changed since it last looked). */
  onOverflow: (() => void) | undefined
  private seenOvf = 0

  /** `memory`: the unit's memory as it is when used (a machine replaces it after construction). */
  constructor(readonly owner: string, private readonly mem: () => PhysicalMemory, log2size: number) {
    this.ring = new RingIndex(Math.min(Math.max(log2size, 1), EVTQ_MAX_SHIFT))
    this.written = new Array<SmmuEvent | undefined>(this.ring.size)
  }

  /** EVENTQ_BASE: the ring's memory, allocated when the first record needs it. */
  private get addr(): bigint {
    this.base ??= this.mem().alloc(this.ring.size * EVENT_SIZE)
    return this.base
  }

  private idx(v: number): number {
    return this.ring.index(v & ~OVF)
  }

  private ptr(v: number): number {
    return v & ~OVF
  }

  get overflowed(): boolean {
    return (this.prod & OVF) !== (this.cons & OVF)
  }

  get pending(): number {
    return this.ring.count(this.ptr(this.prod), this.ptr(this.cons))
  }

  /** The SMMU writes a record; false when the full queue lost it. */
  write(e: SmmuEvent): boolean {
    if (this.ring.full(this.ptr(this.prod), this.ptr(this.cons))) {
      this.lost++
      if (!this.overflowed) this.prod ^= OVF
      return false
    }
    const i = this.idx(this.prod)
    const words = encodeEvent(e)
    const b = Buffer.alloc(EVENT_SIZE)
    words.forEach((w, k) => b.writeBigUInt64LE(w, k * 8))
    this.mem().write(this.addr + BigInt(i * EVENT_SIZE), b)
    this.written[i] = e
    this.prod = (this.prod & OVF) | this.ring.next(this.ptr(this.prod))
    this.recorded++
    if (this.irq === 'enabled') this.drain()
    return true
  }

  /** The record words at ring slot `i`, as in memory. */
  private wordsAt(i: number): [bigint, bigint, bigint, bigint] {
    const b = this.mem().read(this.addr + BigInt(i * EVENT_SIZE), EVENT_SIZE) as Buffer
    return [0, 1, 2, 3].map((k) => b.readBigUInt64LE(k * 8)) as [bigint, bigint, bigint, bigint]
  }

  /**
   * The driver's interrupt thread (arm_smmu_evtq_thread): notes an overflow,
   * hands every record from CONS to PROD to the handler, then moves CONS up
   * and acknowledges the overflow. Returns the records consumed.
   */
  drain(): number {
    let n = 0
    if ((this.prod & OVF) !== this.seenOvf) {
      this.seenOvf = this.prod & OVF
      this.onOverflow?.()
    }
    while (!this.ring.empty(this.ptr(this.prod), this.ptr(this.cons))) {
      const i = this.idx(this.cons)
      const event = this.written[i]!
      this.cons = (this.cons & OVF) | this.ring.next(this.ptr(this.cons))
      n++
      this.handler?.({ words: this.wordsAt(i), event })
    }
    this.cons = (this.prod & OVF) | this.ptr(this.cons)
    return n
  }

  /** The registers, then each record between CONS and PROD: raw words and decoded. */
  dump(): string {
    const head = [
      `Event queue on IOMMU: ${this.owner}`,
      ` Entries: ${this.ring.size}\tBASE: ${this.base === undefined ? '-' : hex(this.base)}\tPROD: ${RingIndex.hex(this.prod)}\tCONS: ${RingIndex.hex(this.cons)}\tOVFLG: ${this.prod & OVF ? 1 : 0}\tOVACKFLG: ${this.cons & OVF ? 1 : 0}`,
      ` irq: ${this.irq}\tpending: ${this.pending}\trecorded: ${this.recorded}\tlost: ${this.lost}${this.overflowed ? '\toverflow: unacknowledged' : ''}`,
      'Index\tevt0\t\t\tevt1\t\t\tevt2\t\t\tevt3\t\t\tevent',
    ]
    const rows: string[] = []
    for (let p = this.ptr(this.cons), k = 0; k < this.pending; p = this.ring.next(p), k++) {
      const i = this.ring.index(p)
      rows.push(`${String(i).padStart(5)}\t${this.wordsAt(i).map((w) => w.toString(16).padStart(16, '0')).join('\t')}\t${describeEvent(this.written[i]!)}`)
    }
    return [...head, ...rows].join('\n') + '\n'
  }

  json(): unknown {
    const records: unknown[] = []
    for (let p = this.ptr(this.cons), k = 0; k < this.pending; p = this.ring.next(p), k++) {
      const i = this.ring.index(p)
      records.push({ index: i, words: this.wordsAt(i).map((w) => `0x${w.toString(16)}`), event: describeEvent(this.written[i]!) })
    }
    return { iommu: this.owner, entries: this.ring.size, prod: this.prod, cons: this.cons, ovflg: this.prod & OVF ? 1 : 0, ovackflg: this.cons & OVF ? 1 : 0, irq: this.irq, recorded: this.recorded, lost: this.lost, records }
  }

  /** The eventq_irq file: "enabled" (drains what waits) or "masked". */
  setIrq(text: string): void {
    const t = text.trim().toLowerCase()
    if (t !== 'enabled' && t !== 'masked') throw new ErrnoError('EINVAL', `eventq_irq: "${text}" is not enabled or masked`)
    this.irq = t
    if (t === 'enabled') this.drain()
  }
}
