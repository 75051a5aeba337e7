import { Command, HOST_SYNC, describeCommand, parseCommand } from '../hw/smmuv3/commands'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { ArmStage2 } from '../kvm/stage2'
import { ALL, TdpImporter, Vm } from '../kvm/vm'
import { ErrnoError } from '../util/errno'
import type { HwptPaging } from './hwpt'
import { adoptTable, atcInvDomain, parentVmids, smmusOf, unmapCommands } from './smmu-host'

/**
 * The SMMUv3 driver's side of a KVM-owned stage 2, registered with KVM
 * itself as the RFC's review asked (as SVA hooks the mm): the domain's STEs
 * point at KVM's table, and KVM's notification becomes the nest parent's
 * invalidation on every SMMU the domain reaches, issued directly: TLBI_S2_IPA
 * by VMID over the range (TLBI_S12_VMALL for everything), TLBI_NH_ALL for
 * the combined entries, CMD_SYNC, then ATC_INV and CMD_SYNC for ATS streams.
 */
export function smmuAllocKvm(unit: Smmuv3, hwpt: HwptPaging, vm: Vm): TdpImporter {
  if (!(vm.stage2 instanceof ArmStage2)) throw new ErrnoError('EINVAL', `fd=${vm.tdp}: ${vm.name}'s stage 2 is ${vm.stage2.format}; ${unit.name} walks VMSAv8-64 stage-2 tables (CREATE_VM pgtable=arm64)`)
  if (!unit.registers.flag('IDR0.S2P')) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: no stage 2 (IDR0.S2P)`)
  if (!unit.registers.flag('IDR5.GRAN4K')) throw new ErrnoError('EOPNOTSUPP', `${unit.name}: no 4K granule (IDR5.GRAN4K); KVM's stage 2 uses 4K`)
  adoptTable(hwpt, vm.stage2.table)
  const source = `kvm ${vm.name}`
  return {
    get name() {
      return `SMMUv3 driver, hwpt ${hwpt.id}`
    },
    invalidate(start, size) {
      const done: string[] = []
      for (const smmu of smmusOf(hwpt)) {
        const cmds = size === ALL || size > 1n << 52n ? wholeCommands(hwpt, smmu) : unmapCommands(hwpt, smmu, start, size, new Set())
        smmu.cmdq.issue(cmds, source)
        done.push(`${smmu.name}: ${cmds.map(describeCommand).join('; ')}`)
      }
      return done.join(' | ') || `nothing to invalidate (hwpt ${hwpt.id} reaches no SMMU yet)`
    },
  }
}

/** Everything of the domain's VMIDs: TLBI_S12_VMALL each, CMD_SYNC, then the whole ATC of each ATS device on the parent. */
function wholeCommands(h: HwptPaging, smmu: Smmuv3): Command[] {
  const out = [...parentVmids(h, smmu).map((v) => parseCommand(`TLBI_S12_VMALL vmid=${v}`)), HOST_SYNC]
  // arm_smmu_atc_inv_domain over everything: the parent's ATS devices only
  const atc = atcInvDomain(h, smmu)
  if (atc.length) out.push(...atc.map(parseCommand), HOST_SYNC)
  return out
}
