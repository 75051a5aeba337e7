import { ErrnoError } from '../../util/errno'
import { IdPool } from '../id-pool'
import { DebugFile, IommuUnit, ReservedRegion } from '../unit'
import { FSTS, InvalidationQueue, QiErrorName, bdfOf } from './qi'
import { RegisterFile } from '../registers'
import { DEFAULT_VTD_CACHE_SIZES, VtdCacheSizes, VtdCaches } from './caches'
import { VtdDma } from './dma'
import { describeFault, encodeFault } from './faults'
import { FSTS_PFO, FSTS_PPF, VtdFaultRecording } from './fault-regs'
import { sanitizerFiles } from '../smmuv3/sanitizer'
import { ADDR_MASK } from './pgtable'
import { VtdPrq } from './prq'

/** What the host driver has programmed for a requester ID (its RID_PASID entry). */
export interface PasidEntry {
  readonly pgtt: 'first-stage' | 'second-stage' | 'nested'
  readonly did: number
  /** Guest first-stage table pointer, for a nested entry. */
  readonly flptr?: bigint
  readonly addrWidth?: number
}

/** The interrupt address range, reserved behind every VT-d unit. */
const INTERRUPT_WINDOW: ReservedRegion = { start: 0xfee00000n, last: 0xfeefffffn, type: 'msi' }

/** An Intel VT-d remapping unit: CAP/ECAP/VER plus its domain-ID space. */
export class Vtd extends IommuUnit {
  /** The names property() answers, for schema validation. */
  static readonly properties: readonly string[] = ['address', 'domains_used', 'nesting', 'dirty_tracking']

  /** Domain IDs: Linux reserves 0 (the architecture's) and 1 (FLPT_DEFAULT_DID), so the first handed out is 2. */
  readonly domainIds: IdPool
  readonly pasidEntries = new Map<number, PasidEntry>()
  /** The host driver's invalidation queue. */
  readonly qi: InvalidationQueue
  /** Fault status register (the invalidation-queue bits IQE, ICE, ITE); write 1 to clear. */
  fsts = 0
  /** A queue error armed by fault injection: the next invalidation submitted reports it. */
  private injected: QiErrorName | undefined
  /** Context cache, PASID cache, IOTLB and the endpoints' device TLBs. */
  readonly caches: VtdCaches
  /** RTADDR: the scalable-mode root table, allocated on first use. */
  private rootTable: bigint | undefined
  private engine: VtdDma | undefined
  /** Primary fault logging: the fault-recording registers (CAP.NFR + 1 at CAP.FRO * 16), filled by faulting DMA. */
  readonly faultRegs: VtdFaultRecording
  /** Page requests from PRI endpoints, held until their page group response. */
  readonly prq = new VtdPrq()

  constructor(index: number, base: bigint, registers: RegisterFile, cacheSizes: VtdCacheSizes = DEFAULT_VTD_CACHE_SIZES) {
    super('intel-vtd', `dmar${index}`, base, registers)
    this.domainIds = new IdPool(2, 2 ** (4 + 2 * Number(registers.field('CAP.ND'))))
    this.caches = new VtdCaches(cacheSizes)
    this.faultRegs = new VtdFaultRecording(`dmar${index}`, Number(registers.field('CAP.NFR')), Number(registers.field('CAP.FRO')))
    this.qi = new InvalidationQueue(this.name, 0x100000000n + BigInt(index) * 0x100000n, (d) => {
      this.caches.apply(d)
      this.prq.descriptor(() => this.dma, d)
    })
  }

  /** The root table (RTADDR with SMT), 256 root entries of 16 bytes. */
  get root(): bigint {
    this.rootTable ??= this.memory.alloc(0x1000)
    return this.rootTable
  }

  /** Address of a requester's 32-byte scalable-mode context entry; the context table is allocated on first use. */
  contextEntryAddr(sid: number): bigint {
    const devfn = sid & 0xff
    const slot = this.root + BigInt(sid >> 8) * 16n + (devfn >= 128 ? 8n : 0n)
    let re = this.memory.read64(slot) as bigint
    if (!(re & 1n)) {
      re = this.memory.alloc(0x1000) | 1n
      this.memory.write64(slot, re)
    }
    return (re & ADDR_MASK) + BigInt(devfn & 0x7f) * 32n
  }

  /** The transaction path over the machine's memory. */
  get dma(): VtdDma {
    if (!this.engine) {
      this.engine = new VtdDma(this.memory, { slads: this.registers.flag('ECAP.SLADS'), mgaw: this.iovaBits }, this.caches, () => this.root)
      this.engine.history.sink = (f) => this.faultRegs.record(f)
    }
    return this.engine
  }

  inject(error: QiErrorName | undefined): void {
    this.injected = error
  }

  /** The armed queue error, disarming it; the hardware latches it in FSTS. */
  takeInjection(): QiErrorName | undefined {
    const e = this.injected
    this.injected = undefined
    if (e) this.fsts |= FSTS[e]
    return e
  }

  get iovaBits(): number {
    return Number(this.registers.field('CAP.MGAW')) + 1
  }

  /** Second-stage A/D bits in scalable mode, with scalable-mode page-walk coherency. */
  get dirtyTracking(): boolean {
    const r = this.registers
    return r.flag('ECAP.SMTS') && r.flag('ECAP.SLADS') && r.flag('ECAP.SMPWC')
  }

  /** cap_ndoms: 2^(4 + 2*ND). */
  get domainsSupported(): number {
    return 2 ** (4 + 2 * Number(this.registers.field('CAP.ND')))
  }

  get domainsUsed(): number {
    return this.domainIds.inUse
  }

  /** Nesting needs scalable mode and ECAP.NEST, as the kernel checks. */
  get supportsNesting(): boolean {
    return this.registers.flag('ECAP.SMTS') && this.registers.flag('ECAP.NEST')
  }

  reservedRegions(): readonly ReservedRegion[] {
    return [INTERRUPT_WINDOW]
  }

  property(name: string): bigint | undefined {
    if (name === 'domains_used') return BigInt(this.domainsUsed)
    return this.commonProperty(name)
  }

  debugFiles(): Record<string, DebugFile> {
    const pasid_table = (): string => {
        const rows = [...this.pasidEntries].sort(([a], [b]) => a - b)
        const lines = rows.map(([rid, e]) => {
          const parts = [`rid=${bdfOf(rid)}`, 'pasid=0 (RID_PASID)', `pgtt=${e.pgtt}`, `did=${e.did}`]
          if (e.flptr !== undefined) parts.push(`flptr=0x${e.flptr.toString(16)}`, `addr_width=${e.addrWidth}`)
          return parts.join(' ')
        })
        return `${this.name}: ${rows.length} PASID entr${rows.length === 1 ? 'y' : 'ies'}\n${lines.map((l) => `${l}\n`).join('')}`
    }
    const names = (bitsSet: number): string => (Object.entries({ PFO: FSTS_PFO, PPF: FSTS_PPF, ...FSTS }).filter(([, b]) => bitsSet & b).map(([n]) => n).join(' ') || '-')
    return {
      pasid_table: { show: pasid_table },
      invalidation_queue: { show: () => this.qi.dump(), json: () => this.qi.json() },
      page_requests: { show: () => this.prq.dump() },
      iotlb: { show: () => this.caches.dumpIotlb(this.name), json: () => this.caches.iotlbJson() },
      config_cache: { show: () => this.caches.dumpConfig(this.name), json: () => this.caches.configJson() },
      dev_tlb: { show: () => this.caches.dumpDevTlb(this.name), json: () => this.caches.devTlbJson() },
      walk_cache: { show: () => this.caches.dumpPde(this.name), json: () => this.caches.pdeJson() },
      faults: {
        show: () =>
          this.dma.faults
            .map((f) => `${encodeFault(f).map((w) => w.toString(16).padStart(16, '0')).join(' ')}  ${describeFault(f)}\n`)
            .join(''),
      },
      fault_regs: { show: () => this.faultRegs.dump(), json: () => this.faultRegs.json() },
      fault_irq: { show: () => `${this.faultRegs.irq}\n`, store: (text) => this.faultRegs.setIrq(text) },
      ...sanitizerFiles(this.dma.sanitizer),
      fault_status: {
        show: () => {
          const v = this.fsts | this.faultRegs.status
          return `0x${v.toString(16).padStart(8, '0')} ${names(v)}\n`
        },
        store: (text) => {
          const t = text.trim()
          const v = /^(0x[0-9a-f]+|[0-9]+)$/i.test(t) ? Number(t) : undefined
          if (v === undefined) throw new ErrnoError('EINVAL', `fault_status: "${text}" is not a number (bits to clear)`)
          this.fsts &= ~v
          this.faultRegs.writeStatus(v)
        },
      },
      inject_qi_error: {
        show: () => `${this.injected ?? 'none'}\n`,
        store: (text) => {
          const t = text.trim().toUpperCase()
          if (t === 'NONE') return this.inject(undefined)
          if (!(t in FSTS)) throw new ErrnoError('EINVAL', `inject_qi_error: "${text}" is not IQE, ICE, ITE or none`)
          this.inject(t as QiErrorName)
        },
      },
    }
  }
}
