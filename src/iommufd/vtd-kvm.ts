import { describeDescriptor } from '../hw/vtd/qi'
import { Vtd } from '../hw/vtd/vtd'
import { EptStage2 } from '../kvm/stage2'
import { ALL, TdpImporter, Vm } from '../kvm/vm'
import { ErrnoError } from '../util/errno'
import type { HwptPaging } from './hwpt'
import { adoptVtdTable, flushRange, ssAw, vtdsOf } from './vtd-host'

/**
 * The VT-d driver's side of a KVM-owned stage 2 (the RFC's VT-d part,
 * registered with KVM directly): the domain's PASID entries point at KVM's
 * EPT as a second-stage table (AW 2, 4 levels), and KVM's notification
 * becomes, on every unit the domain reaches, an IOTLB page-selective
 * invalidation by the domain's DID (and each nested domain's DID; DSI for
 * everything or past MAMV) plus the device-TLB flush, then a wait descriptor.
 */
export function vtdAllocKvm(unit: Vtd, hwpt: HwptPaging, vm: Vm): TdpImporter {
  if (!(vm.stage2 instanceof EptStage2)) throw new ErrnoError('EINVAL', `fd=${vm.tdp}: ${vm.name}'s stage 2 is ${vm.stage2.format}; ${unit.name} walks second-stage (EPT-compatible) tables (CREATE_VM pgtable=ept)`)
  if (!unit.registers.flag('ECAP.SMTS') || !unit.registers.flag('ECAP.SLTS')) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: no scalable-mode second stage (ECAP.SMTS, ECAP.SLTS)`)
  if (ssAw(unit) !== 2) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: its second stage is ${ssAw(unit) + 2}-level (SAGAW/MGAW); KVM's EPT is 4-level`)
  adoptVtdTable(hwpt, vm.stage2.table)
  const source = `kvm ${vm.name}`
  return {
    get name() {
      return `VT-d driver, hwpt ${hwpt.id}`
    },
    invalidate(start, size) {
      const done: string[] = []
      const all = size === ALL || size > 1n << 52n
      for (const u of vtdsOf(hwpt)) {
        // KVM clears or narrows leaves and keeps its tables: a leaf-only (IH = 1) flush
        const descs = flushRange(hwpt, u, all ? 0n : start, all ? 1n << 52n : size, true)
        u.qi.submit(descs, undefined, source)
        done.push(`${u.name}: ${[...descs.map(describeDescriptor), 'WAIT'].join('; ')}`)
      }
      return done.join(' | ') || `nothing to invalidate (hwpt ${hwpt.id} reaches no VT-d unit yet)`
    },
  }
}
