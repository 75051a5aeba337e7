import { ErrnoError } from '../../util/errno'
import { Vtd } from './vtd'

/** Flags of a guest first-stage table (iommu_hwpt_vtd_s1.flags). */
export const VTD_S1_FLAGS = { SRE: 1n << 0n, EAFE: 1n << 1n, WPE: 1n << 2n } as const

/** A guest first-stage page table pointer and its options. */
export interface VtdS1 {
  readonly flags: bigint
  readonly pgtblAddr: bigint
  readonly addrWidth: number
  readonly reserved: number
}

/**
 * The checks the VT-d driver makes when a nested (first-stage over
 * second-stage) domain is attached on `unit`.
 */
export function checkNestedAttach(unit: Vtd, s1: VtdS1): void {
  const r = unit.registers
  if (!r.flag('ECAP.NEST')) throw new ErrnoError('ENODEV', `${unit.name}: ECAP.NEST is 0, nested translation unsupported`)
  const ok5 = s1.addrWidth === 57 && r.flag('CAP.FL5LP')
  if (s1.addrWidth !== 48 && !ok5) {
    throw new ErrnoError('EINVAL', `addr_width=${s1.addrWidth}: ${unit.name} takes 48${r.flag('CAP.FL5LP') ? ' or 57' : ''} (57 needs CAP.FL5LP)`)
  }
  if (s1.flags & VTD_S1_FLAGS.SRE && !r.flag('ECAP.SRS')) throw new ErrnoError('EINVAL', `flags=SRE: ${unit.name} lacks ECAP.SRS`)
  if (s1.flags & VTD_S1_FLAGS.EAFE && !r.flag('ECAP.EAFS')) throw new ErrnoError('EINVAL', `flags=EAFE: ${unit.name} lacks ECAP.EAFS`)
}
