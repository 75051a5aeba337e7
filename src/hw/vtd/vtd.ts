import { IdPool } from '../id-pool'
import { IommuUnit, ReservedRegion } from '../unit'
import { RegisterFile } from '../registers'

/** What the host driver has programmed for a requester ID (its RID_PASID entry). */
export interface PasidEntry {
  readonly pgtt: 'second-stage' | 'nested'
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
  static readonly properties: readonly string[] = ['address', 'domains_used']

  /** Domain IDs; 0 is reserved by the architecture. */
  readonly domainIds: IdPool
  readonly pasidEntries = new Map<number, PasidEntry>()

  constructor(index: number, base: bigint, registers: RegisterFile) {
    super('intel-vtd', `dmar${index}`, base, registers)
    this.domainIds = new IdPool(1, 2 ** (4 + 2 * Number(registers.field('CAP.ND'))))
  }

  get iovaBits(): number {
    return Number(this.registers.field('CAP.MGAW')) + 1
  }

  get dirtyTracking(): boolean {
    return this.registers.flag('ECAP.SLADS')
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
    if (name === 'address') return this.base
    if (name === 'domains_used') return BigInt(this.domainsUsed)
    return undefined
  }

  debugFiles(): Record<string, () => string> {
    return {
      pasid_table: () => {
        const rows = [...this.pasidEntries].sort(([a], [b]) => a - b)
        const lines = rows.map(([rid, e]) => {
          const bdf = `${(rid >> 8).toString(16).padStart(2, '0')}:${((rid >> 3) & 0x1f).toString(16).padStart(2, '0')}.${rid & 7}`
          const parts = [`rid=${bdf}`, 'pasid=0 (RID_PASID)', `pgtt=${e.pgtt}`, `did=${e.did}`]
          if (e.flptr !== undefined) parts.push(`flptr=0x${e.flptr.toString(16)}`, `addr_width=${e.addrWidth}`)
          return parts.join(' ')
        })
        return `${this.name}: ${rows.length} PASID entr${rows.length === 1 ? 'y' : 'ies'}\n${lines.map((l) => `${l}\n`).join('')}`
      },
    }
  }
}
