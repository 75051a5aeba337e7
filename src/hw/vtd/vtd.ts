import { IommuUnit, ReservedRegion } from '../unit'
import { RegisterFile } from '../registers'

/** The interrupt address range, reserved behind every VT-d unit. */
const INTERRUPT_WINDOW: ReservedRegion = { start: 0xfee00000n, last: 0xfeefffffn, type: 'msi' }

/** An Intel VT-d remapping unit: CAP/ECAP/VER plus its domain-ID space. */
export class Vtd extends IommuUnit {
  /** The names property() answers, for schema validation. */
  static readonly properties: readonly string[] = ['address', 'domains_used']

  private readonly domainIds = new Set<number>()

  constructor(index: number, base: bigint, registers: RegisterFile) {
    super('intel-vtd', `dmar${index}`, base, registers)
  }

  /** cap_ndoms: 2^(4 + 2*ND). */
  get domainsSupported(): number {
    return 2 ** (4 + 2 * Number(this.registers.field('CAP.ND')))
  }

  get domainsUsed(): number {
    return this.domainIds.size
  }

  /** Nesting needs scalable mode and ECAP.NEST, as the kernel checks. */
  get supportsNesting(): boolean {
    return this.registers.flag('ECAP.SMTS') && this.registers.flag('ECAP.NEST')
  }

  /** Allocates the lowest free domain ID (0 is reserved by the architecture). */
  allocDomainId(): number | undefined {
    for (let id = 1; id < this.domainsSupported; id++) {
      if (!this.domainIds.has(id)) {
        this.domainIds.add(id)
        return id
      }
    }
    return undefined
  }

  freeDomainId(id: number): void {
    this.domainIds.delete(id)
  }

  reservedRegions(): readonly ReservedRegion[] {
    return [INTERRUPT_WINDOW]
  }

  property(name: string): bigint | undefined {
    if (name === 'address') return this.base
    if (name === 'domains_used') return BigInt(this.domainsUsed)
    return undefined
  }
}
