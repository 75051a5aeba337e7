import { IommuUnit, ReservedRegion } from '../unit'
import { RegisterFile } from '../registers'

/** The kernel reserves this IOVA window for MSI doorbells behind an SMMU (MSI_IOVA_BASE, 1 MiB). */
const MSI_WINDOW: ReservedRegion = { start: 0x8000000n, last: 0x80fffffn, type: 'msi' }

/** An ARM SMMUv3 instance: identification registers plus the state the host driver keeps. */
export class Smmuv3 extends IommuUnit {
  /** The names property() answers, for schema validation. */
  static readonly properties: readonly string[] = ['address']

  constructor(base: bigint, registers: RegisterFile) {
    super('arm-smmu-v3', Smmuv3.nameFor(base), base, registers)
  }

  /** The kernel's device name for an SMMUv3 at `base`. */
  static nameFor(base: bigint): string {
    return `smmu3.0x${base.toString(16).padStart(16, '0')}`
  }

  /** The kernel enables nesting only when both stages are implemented. */
  get supportsNesting(): boolean {
    return this.registers.flag('IDR0.S1P') && this.registers.flag('IDR0.S2P')
  }

  reservedRegions(): readonly ReservedRegion[] {
    return [MSI_WINDOW]
  }

  property(name: string): bigint | undefined {
    if (name === 'address') return this.base
    return undefined
  }
}
