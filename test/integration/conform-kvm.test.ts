import { conformSuite } from '../helpers/conform'

/** The KVM-shared stage 2, HW queue allocation and a vCMDQ's registers checked from outside against the RFC, the uAPI and the SMMU queue rules. */
describe('test/shell/conform-kvm.sh', () => {
  conformSuite('kvm', 'KVM zaps reach the IOMMU at once, HW queue errnos in order, vCMDQ wrap, errors and recovery', [
    'kvm.smmu.zap.cmds: ok',
    'kvm.smmu.zap3.cmds: ok',
    'kvm.smmu.drop.finding: ok',
    'kvm.vtd.zap.iotlb: ok',
    'kvm.vm.kept.by.importer: ok',
    'hwq.order.overflow.before.viommu: ok',
    'hwq.mock.not.contiguous: ok',
    'hwq.mock.destroy.ascending: ok',
    'vcmdq.full.cons: ok',
    'vcmdq.prod.res0.cons: ok',
    'vcmdq.vsid.unknown.cons: ok',
    'vcmdq.atc_inv_sync.cons: ok',
  ])
})
