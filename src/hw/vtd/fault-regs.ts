import { ErrnoError } from '../../util/errno'
import { VtdFault, describeFault, encodeFault } from './faults'

/** FSTS bits of primary fault logging: PFO (overflow, write 1 to clear), PPF (pending, read-only), FRI [15:8]. */
export const FSTS_PFO = 1 << 0
export const FSTS_PPF = 1 << 1
export const FSTS_PRO = 1 << 7

/** One fault-recording register as the driver reads it. */
export interface FaultRecord {
  readonly index: number
  readonly lo: bigint
  readonly hi: bigint
  readonly fault: VtdFault
}

/**
 * A VT-d unit's primary fault logging (VT-d spec 7.2.1): CAP.NFR + 1
 * fault-recording registers at CAP.FRO * 16, written round-robin. A fault
 * is recorded only when PFO is clear and the next register's F bit is
 * clear; otherwise PFO is set and the fault is lost. PPF is set while any
 * F bit is; FRI names the register of the first pending fault.
 *
 * `irq`: while enabled, the driver's fault handler (dmar_fault) runs as soon
 * as a fault is recorded; masked, records stay until it is enabled again.
 */
export class VtdFaultRecording {
  readonly count: number
  readonly offset: number
  private readonly regs: ({ lo: bigint; hi: bigint; fault: VtdFault } | undefined)[]
  /** The register hardware writes next. */
  private next = 0
  private pfo = false
  private fri = 0
  irq: 'enabled' | 'masked' = 'enabled'
  recorded = 0
  lost = 0
  /** The driver's handler for one record (set by the host driver model). */
  handler: ((r: FaultRecord) => void) | undefined
  /** The driver's look at FSTS before it walks the records. */
  onStatus: ((fsts: number) => void) | undefined

  constructor(readonly owner: string, nfr: number, fro: number) {
    this.count = nfr + 1
    this.offset = fro * 16
    this.regs = new Array(this.count).fill(undefined)
  }

  private valid(i: number): boolean {
    return this.regs[i] !== undefined
  }

  /** PFO, PPF and FRI as FSTS shows them. */
  get status(): number {
    const ppf = this.regs.some((r) => r !== undefined)
    return (this.pfo ? FSTS_PFO : 0) | (ppf ? FSTS_PPF | (this.fri << 8) : 0)
  }

  /** Hardware records a fault; false when it was lost (PFO set, or the next register still valid). */
  record(f: VtdFault): boolean {
    if (this.pfo || this.valid(this.next)) {
      this.pfo = true
      this.lost++
      return false
    }
    const wasPending = (this.status & FSTS_PPF) !== 0
    const [lo, hi] = encodeFault(f)
    this.regs[this.next] = { lo, hi, fault: f }
    if (!wasPending) this.fri = this.next
    this.next = (this.next + 1) % this.count
    this.recorded++
    if (this.irq === 'enabled') this.service()
    return true
  }

  /** Software writes FSTS: 1 clears PFO (PPF is read-only: it follows the F bits). */
  writeStatus(value: number): void {
    if (value & FSTS_PFO) this.pfo = false
  }

  /** Software writes 1 to F of register `i`. */
  clear(i: number): void {
    this.regs[i] = undefined
  }

  /**
   * The driver's fault handler (dmar_fault): from FRI, each register with F
   * set goes to the handler and is cleared; then PFO | PPF | PRO are written
   * to FSTS. Returns the records handled.
   */
  service(): number {
    const fsts = this.status
    this.onStatus?.(fsts)
    let n = 0
    if (fsts & FSTS_PPF) {
      for (let i = this.fri; ; i = (i + 1) % this.count) {
        const r = this.regs[i]
        if (!r) break
        this.clear(i)
        n++
        this.handler?.({ index: i, lo: r.lo, hi: r.hi, fault: r.fault })
      }
    }
    this.writeStatus(FSTS_PFO | FSTS_PPF | FSTS_PRO)
    return n
  }

  /** The registers: FSTS's fault bits, then every fault-recording register, raw and decoded. */
  dump(): string {
    const s = this.status
    const head = [
      `Fault recording on IOMMU: ${this.owner}`,
      ` Registers: ${this.count} at 0x${this.offset.toString(16)}\tFSTS: PFO=${s & FSTS_PFO ? 1 : 0} PPF=${s & FSTS_PPF ? 1 : 0} FRI=${s & FSTS_PPF ? this.fri : '-'}`,
      ` irq: ${this.irq}\trecorded: ${this.recorded}\tlost: ${this.lost}`,
      'Index\tFRCD[63:0]\t\tFRCD[127:64]\t\tfault',
    ]
    const rows = this.regs.map((r, i) => `${String(i).padStart(5)}\t${(r?.lo ?? 0n).toString(16).padStart(16, '0')}\t${(r?.hi ?? 0n).toString(16).padStart(16, '0')}\t${r ? describeFault(r.fault) : '-'}`)
    return [...head, ...rows].join('\n') + '\n'
  }

  json(): unknown {
    const s = this.status
    return {
      iommu: this.owner,
      registers: this.count,
      offset: this.offset,
      pfo: s & FSTS_PFO ? 1 : 0,
      ppf: s & FSTS_PPF ? 1 : 0,
      fri: s & FSTS_PPF ? this.fri : null,
      irq: this.irq,
      recorded: this.recorded,
      lost: this.lost,
      frcd: this.regs.map((r, i) => ({ index: i, lo: `0x${(r?.lo ?? 0n).toString(16)}`, hi: `0x${(r?.hi ?? 0n).toString(16)}`, fault: r ? describeFault(r.fault) : null })),
    }
  }

  /** The fault_irq file: "enabled" (services what waits) or "masked". */
  setIrq(text: string): void {
    const t = text.trim().toLowerCase()
    if (t !== 'enabled' && t !== 'masked') throw new ErrnoError('EINVAL', `fault_irq: "${text}" is not enabled or masked`)
    this.irq = t
    if (t === 'enabled') this.service()
  }
}
