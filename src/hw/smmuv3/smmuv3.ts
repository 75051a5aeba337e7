import { ErrnoError } from '../../util/errno'
import { IdPool } from '../id-pool'
import { DebugFile, IommuUnit, ReservedRegion } from '../unit'
import { CERROR, CerrorName, reservedEncoding } from './commands'
import { HostCommandQueue } from './cmdq'
import { RegisterFile } from '../registers'
import { wordBytes } from './build'
import { CacheSizes, DEFAULT_CACHE_SIZES, Smmuv3Caches } from './caches'
import { Smmuv3Dma } from './dma'
import { describeEvent, encodeEvent } from './events'
import { Smmuv3EventQueue } from './eventq'
import { sanitizerFiles } from './sanitizer'
import { Smmuv3Stalls } from './stall'
import { StreamTable } from './walk'
import { PS_BITS } from './cd'
import { dumpCdTable } from './cd-dump'
import { STE0, STE_CFG } from './ste'
import { get } from '../bits'

/** IIDR values of the Arm parts with errata against nesting (the kernel's IIDR_IMPLEMENTER_ARM, IIDR_PRODUCTID_ARM_MMU_*). */
const IIDR_IMPLEMENTER_ARM = 0x43bn
const IIDR_PRODUCT_MMU_600 = 0x483n
const IIDR_PRODUCT_MMU_700 = 0x487n

/** What the host driver has installed in a stream's STE. */
export interface PhysicalSte {
  readonly config: 'abort' | 'bypass' | 's1-translate' | 's2-translate' | 'nested'
  readonly vmid?: number
  readonly asid?: number
  /** The guest's STE words merged in, for a nested STE. */
  readonly guest?: readonly [bigint, bigint]
  readonly ats: boolean
  /** The master stalls (IOPF enabled): the stage-1 CD gets S = 1. */
  readonly stall?: boolean
}

/** V = 1, Config = abort: what Linux writes for a stream no domain owns. */
const ABORT_STE: readonly bigint[] = [1n, 0n, 0n, 0n, 0n, 0n, 0n, 0n]

/** The kernel reserves this IOVA window for MSI doorbells behind an SMMU (MSI_IOVA_BASE, 1 MiB). */
const MSI_WINDOW: ReservedRegion = { start: 0x8000000n, last: 0x80fffffn, type: 'msi' }

/** An ARM SMMUv3 instance: identification registers plus the state the host driver keeps. */
export class Smmuv3 extends IommuUnit {
  /** The names property() answers, for schema validation. */
  static readonly properties: readonly string[] = ['address', 'nesting', 'dirty_tracking']

  /** VMIDs for stage-2 configurations and vIOMMUs; 0 is left unused. */
  readonly vmids: IdPool
  readonly asids: IdPool
  /** Installed STEs by StreamID; a stream not here has the kernel's default domain. */
  readonly streams = new Map<number, PhysicalSte>()
  /** The host driver's command queue, where converted guest invalidations end up. */
  readonly cmdq: HostCommandQueue
  /** A command error armed by fault injection: the next guest command consumed fails with it. */
  private injected: CerrorName | undefined
  /** TLB, config caches and the endpoints' ATCs. */
  readonly caches: Smmuv3Caches
  private table: StreamTable | undefined
  private engine: Smmuv3Dma | undefined
  /** The event queue (IDR1.EVTQS entries, as Linux caps it), filled by faulting DMA. */
  readonly eventq: Smmuv3EventQueue
  /** Transactions held by stalling faults (at most IDR5.STALL_MAX). */
  readonly stalls: Smmuv3Stalls

  constructor(base: bigint, registers: RegisterFile, cacheSizes: CacheSizes = DEFAULT_CACHE_SIZES) {
    super('arm-smmu-v3', Smmuv3.nameFor(base), base, registers)
    this.caches = new Smmuv3Caches(cacheSizes)
    this.vmids = new IdPool(1, registers.flag('IDR0.VMID16') ? 1 << 16 : 1 << 8)
    this.asids = new IdPool(1, registers.flag('IDR0.ASID16') ? 1 << 16 : 1 << 8)
    this.eventq = new Smmuv3EventQueue(this.name, () => this.memory, Number(registers.field('IDR1.EVTQS')))
    this.stalls = new Smmuv3Stalls(Math.max(Number(registers.field('IDR5.STALL_MAX')), 1))
    this.cmdq = new HostCommandQueue(this.name, Math.min(Math.max(Number(registers.field('IDR1.CMDQS')), 1), 19), (c) => {
      // CERROR_ILL on a reserved encoding: Linux's arm_smmu_cmdq_skip_err turns it into a CMD_SYNC, so it acts on nothing
      if (reservedEncoding(c)) return
      this.caches.invalidate(c)
      this.stalls.command(() => this.dma, c)
    })
  }

  /**
   * The stream table, allocated on first use as Linux sizes it: 2-level with
   * SPLIT 8 when IDR0.ST_LEVEL allows, else linear, for IDR1.SIDSIZE bits.
   */
  get strtab(): StreamTable {
    if (!this.table) {
      const log2size = Number(this.registers.field('IDR1.SIDSIZE'))
      const twoLevel = this.registers.field('IDR0.ST_LEVEL') === 1n && log2size > 8
      const split = twoLevel ? 8 : 0
      const base = twoLevel ? this.memory.alloc(8 << (log2size - split)) : this.memory.alloc(64 * 2 ** log2size)
      this.table = { base, log2size, split }
      // as the driver's probe does: every stream starts with an abort STE (disable_bypass)
      for (const d of this.devices) this.writeSte(d.streamId, ABORT_STE)
    }
    return this.table
  }

  /** Writes a StreamID's STE into the stream table (an L2 table is allocated for it if needed); returns its address. */
  writeSte(sid: number, words: readonly bigint[]): bigint {
    const addr = this.steAddr(sid, true)!
    this.memory.write(addr, wordBytes(words))
    return addr
  }

  /** Where a StreamID's STE is, its L2 table allocated if missing (the driver writes it word by word). */
  steAddress(sid: number): bigint {
    return this.steAddr(sid, true)!
  }

  /** Where a StreamID's STE is; with `make`, its L2 table is allocated if missing (else undefined). */
  private steAddr(sid: number, make: boolean): bigint | undefined {
    const t = this.strtab
    if (!t.split) return t.base + BigInt(sid) * 64n
    const l1 = t.base + BigInt(sid >> t.split) * 8n
    let desc = this.memory.read64(l1) as bigint
    if (!desc) {
      if (!make) return undefined
      desc = this.memory.alloc(64 << t.split) | BigInt(t.split + 1)
      this.memory.write64(l1, desc)
    }
    return (desc & ~0x3fn & ((1n << 52n) - 1n)) + BigInt(sid & ((1 << t.split) - 1)) * 64n
  }

  /** The valid CDs behind each installed stage-1 STE, as the SMMU reads them (cd_table). */
  private cdTables(): string {
    const out: string[] = []
    for (const sid of [...this.streams.keys()].sort((a, b) => a - b)) {
      const addr = this.steAddr(sid, false)
      const w = addr === undefined ? undefined : [this.memory.read64(addr), this.memory.read64(addr + 8n)]
      if (!w || typeof w[0] !== 'bigint' || typeof w[1] !== 'bigint' || get(w[0], STE0.CFG) !== STE_CFG.S1_TRANS) continue
      out.push(...dumpCdTable(this.memory, sid, [w[0], w[1]]))
    }
    return out.map((l) => `${l}\n`).join('')
  }

  /** The transaction path: walks, caches, sanitizer, over the machine's memory. */
  get dma(): Smmuv3Dma {
    if (!this.engine) {
      const r = this.registers
      this.engine = new Smmuv3Dma(
        this.memory,
        { s1: r.flag('IDR0.S1P'), s2: r.flag('IDR0.S2P'), httu: Number(r.field('IDR0.HTTU')), oasBits: PS_BITS[Number(r.field('IDR5.OAS'))] ?? 48, ssidBits: Number(r.field('IDR1.SSIDSIZE')), stallModel: Number(r.field('IDR0.STALL_MODEL')) },
        this.caches,
        () => this.strtab,
      )
      this.engine.history.sink = (e) => this.eventq.write(e)
      this.engine.walker.stags = this.stalls
    }
    return this.engine
  }

  /** Arms a one-shot command error (CERROR_ILL, _ABT or _ATC_INV_SYNC). */
  inject(error: CerrorName | undefined): void {
    this.injected = error
  }

  /** The armed error if it applies to a command of this kind, disarming it. */
  takeInjection(isSync: boolean): CerrorName | undefined {
    const e = this.injected
    if (!e || (e === 'ATC_INV_SYNC') !== isSync) return undefined
    this.injected = undefined
    return e
  }

  get armedInjection(): CerrorName | undefined {
    return this.injected
  }

  /** Stage-1 input address bits (VAX extends 48 to 52). */
  get iovaBits(): number {
    return this.registers.field('IDR5.VAX') === 1n ? 52 : 48
  }

  /** Vendor data for a vIOMMU needs S2FWB (or a CANWBS device), as the kernel checks. */
  get supportsViommu(): boolean {
    return this.supportsNesting && this.registers.flag('IDR3.FWB')
  }

  /** Hardware dirty-state updates on coherent tables, as the driver requires (arm_smmu_dbm_capable). */
  get dirtyTracking(): boolean {
    return this.registers.field('IDR0.HTTU') === 2n && this.registers.flag('IDR0.COHACC')
  }

  /** The kernel's device name for an SMMUv3 at `base`. */
  static nameFor(base: bigint): string {
    return `smmu3.0x${base.toString(16).padStart(16, '0')}`
  }

  /**
   * The kernel enables nesting only when both stages are implemented, and
   * not on the Arm parts whose errata break it (arm_smmu_device_iidr_probe):
   * MMU-600 before r2 (1209401), MMU-700 before r1p1 (2268618, 2812531).
   */
  get supportsNesting(): boolean {
    return this.registers.flag('IDR0.S1P') && this.registers.flag('IDR0.S2P') && !this.nestingErratum
  }

  private get nestingErratum(): boolean {
    const r = this.registers
    if (r.field('IIDR.IMPLEMENTER') !== IIDR_IMPLEMENTER_ARM) return false
    const variant = r.field('IIDR.VARIANT')
    switch (r.field('IIDR.PRODUCTID')) {
      case IIDR_PRODUCT_MMU_600:
        return variant < 2n
      case IIDR_PRODUCT_MMU_700:
        return variant < 1n || r.field('IIDR.REVISION') < 1n
      default:
        return false
    }
  }

  reservedRegions(): readonly ReservedRegion[] {
    return [MSI_WINDOW]
  }

  property(name: string): bigint | undefined {
    return this.commonProperty(name)
  }

  debugFiles(): Record<string, DebugFile> {
    const stream_table = (): string => {
        const rows = [...this.streams].sort(([a], [b]) => a - b)
        const lines = rows.map(([sid, ste]) => {
          const parts = [`sid=0x${sid.toString(16)}`, `config=${ste.config}`]
          if (ste.vmid !== undefined) parts.push(`vmid=${ste.vmid}`)
          if (ste.asid !== undefined) parts.push(`asid=${ste.asid}`)
          if (ste.guest) parts.push(`guest_ste=0x${ste.guest[0].toString(16).padStart(16, '0')},0x${ste.guest[1].toString(16).padStart(16, '0')}`)
          parts.push(`ats=${ste.ats ? 1 : 0}`)
          // the words the SMMU reads, as the driver's last write left them
          const addr = this.steAddr(sid, false)
          const words = addr === undefined ? [] : Array.from({ length: 8 }, (_, i) => this.memory.read64(addr + BigInt(i * 8)))
          const raw = words.map((w) => (typeof w === 'bigint' ? `0x${w.toString(16).padStart(16, '0')}` : '?')).join(',')
          return `${parts.join(' ')}\n  ste=${raw}`
        })
        return `${this.name}: ${rows.length} installed STE${rows.length === 1 ? '' : 's'}\n${lines.map((l) => `${l}\n`).join('')}`
    }
    return {
      stream_table: { show: stream_table },
      vmids_used: { show: () => `${this.vmids.inUse}\n` },
      cd_table: { show: () => this.cdTables() },
      cmdq: { show: () => this.cmdq.dump(), json: () => this.cmdq.json() },
      tlb: { show: () => this.caches.dumpTlb(), json: () => this.caches.tlbJson() },
      walk_cache: { show: () => this.caches.dumpWalk(), json: () => this.caches.walkJson() },
      config_cache: { show: () => this.caches.dumpConfig(), json: () => this.caches.configJson() },
      atc: { show: () => this.caches.dumpAtc(), json: () => this.caches.atcJson() },
      events: {
        show: () =>
          this.dma.events
            .map((e) => `${encodeEvent(e).map((w) => w.toString(16).padStart(16, '0')).join(' ')}  ${describeEvent(e)}\n`)
            .join(''),
      },
      eventq: { show: () => this.eventq.dump(), json: () => this.eventq.json() },
      eventq_irq: { show: () => `${this.eventq.irq}\n`, store: (text) => this.eventq.setIrq(text) },
      stalled: {
        show: () => `${this.stalls.size} held (STALL_MAX ${this.stalls.max}), ${this.stalls.resumed} retried, ${this.stalls.terminated} terminated\n${this.stalls.list().map((t) => `sid=0x${t.sid.toString(16)} stag=0x${t.stag.toString(16)} ${describeEvent(t.event)}\n`).join('')}`,
      },
      ...sanitizerFiles(this.dma.sanitizer),
      inject_cerror: {
        show: () => `${this.injected ?? 'none'}\n`,
        store: (text) => {
          const t = text.trim().toUpperCase().replace(/^CERROR_/, '')
          if (t === 'NONE' || t === '0') return this.inject(undefined)
          const byNumber = Object.entries(CERROR).find(([, v]) => String(v) === t)?.[0]
          const name = (byNumber ?? t) as CerrorName
          if (!(name in CERROR) || name === 'NONE') throw new ErrnoError('EINVAL', `inject_cerror: "${text}" is not ILL, ABT, ATC_INV_SYNC or none`)
          this.inject(name)
        },
      },
    }
  }
}
