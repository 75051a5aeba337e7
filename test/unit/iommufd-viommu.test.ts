/**
 * VIOMMU_ALLOC, VDEVICE_ALLOC (reference §3.17, §3.18, §7.1, §7.2) and the
 * lifetime rules of §8 in-process, each failure checked to change nothing.
 */
import { strict as assert } from 'node:assert'
import * as sinon from 'sinon'
import { DEV, IommuBench, SMMU0, SMMU1, smmuNestSetup, ste } from '../helpers/iommufd'

describe('iommufd VIOMMU_ALLOC (§3.17, §7.1)', () => {
  it('an ARM_SMMUV3 vIOMMU on a NEST_PARENT HWPT: VMID on the device\'s SMMU, a reference on the parent', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const d = t.describe(s.viommu)
    assert.equal(d.get('type'), 'viommu')
    assert.equal(d.get('viommu_type'), 'ARM_SMMUV3')
    assert.equal(d.get('iommu'), SMMU0)
    assert.equal(d.get('parent'), String(s.parent))
    assert.equal(d.get('vsid_map'), '-')
    // arm_vsmmu_init: the vIOMMU's VMID is its stage 2's, which the parent holds from its allocation
    assert.equal(d.get('vmid'), '1')
    assert.equal(t.smmu(SMMU0).vmids.inUse, 1)
    assert.equal(t.describe(s.parent).get('users'), '2')
  })

  it('a NEST_PARENT HWPT is the stage 2 of vIOMMUs on the SMMU it was built for only (arm_vsmmu_init: EINVAL); its vIOMMUs share its VMID', () => {
    const t = new IommuBench()
    const d0 = t.bind(DEV.smmu0a)
    const d1 = t.bind(DEV.smmu1a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${d0} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const v0 = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${d0} hwpt_id=${parent}`, 'out_viommu_id')
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${d1} hwpt_id=${parent}`, 'EINVAL', new RegExp(`hwpt_id=${parent}: its stage 2 was built for ${SMMU0}.*the vIOMMU is on ${SMMU1}`))
    assert.equal(t.smmu(SMMU1).vmids.inUse, 0)
    // the other SMMU takes a parent built for it
    const parent1 = t.id(`HWPT_ALLOC dev_id=${d1} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const v1 = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${d1} hwpt_id=${parent1}`, 'out_viommu_id')
    assert.equal(t.describe(v0).get('iommu'), SMMU0)
    assert.equal(t.describe(v1).get('iommu'), SMMU1)
    assert.equal(t.describe(v1).get('parent'), String(parent1))
    assert.equal(t.smmu(SMMU0).vmids.inUse, 1)
    assert.equal(t.smmu(SMMU1).vmids.inUse, 1)
    assert.equal(t.describe(parent).get('users'), '1')
    // a second vIOMMU on the same parent has the same VMID, the parent's (the kernel's FIXME plans one per vIOMMU)
    const v2 = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${d0} hwpt_id=${parent}`, 'out_viommu_id')
    assert.equal(t.describe(v2).get('vmid'), t.describe(v0).get('vmid'))
    assert.equal(t.smmu(SMMU0).vmids.inUse, 1)
    assert.equal(t.describe(parent).get('users'), '2')
  })

  it('DESTROY of a vIOMMU drops its reference on the parent; the VMID goes with the parent', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.ok(`DESTROY id=${s.viommu}`)
    assert.equal(t.smmu(SMMU0).vmids.inUse, 1)
    assert.equal(t.describe(s.parent).get('users'), '1')
    t.ok(`DEVICE_DETACH dev_id=${s.dev}`)
    assert.equal(t.smmu(SMMU0).vmids.inUse, 1, 'a parent with no stream keeps its VMID')
    t.ok(`DESTROY id=${s.parent}`)
    assert.equal(t.smmu(SMMU0).vmids.inUse, 0)
  })

  it('flags != 0 or type DEFAULT (0): EOPNOTSUPP, before the device lookup', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`VIOMMU_ALLOC type=0 dev_id=99 hwpt_id=${s.parent}`, 'EOPNOTSUPP', /DEFAULT/)
    t.err(`VIOMMU_ALLOC flags=1 type=ARM_SMMUV3 dev_id=99 hwpt_id=${s.parent}`, 'EOPNOTSUPP')
  })

  it('an unknown device is ENOENT; a type the SMMU driver does not offer (TEGRA241_CMDQV) is EOPNOTSUPP', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=99 hwpt_id=${s.parent}`, 'ENOENT', /dev_id=99/)
    t.err(`VIOMMU_ALLOC type=TEGRA241_CMDQV dev_id=${s.dev} hwpt_id=${s.parent}`, 'EOPNOTSUPP')
  })

  it('hwpt_id that is not a HWPT_PAGING (missing, an IOAS, a vIOMMU) is ENOENT', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${s.dev} hwpt_id=99`, 'ENOENT', /hwpt_id=99/)
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${s.dev} hwpt_id=${s.ioas}`, 'ENOENT')
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${s.dev} hwpt_id=${s.viommu}`, 'ENOENT')
  })

  it('a HWPT without NEST_PARENT (manual or auto) is EINVAL', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const dev2 = t.bind(DEV.smmu0b)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const plain = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${plain}`, 'EINVAL', /NEST_PARENT/)
    const auto = t.id(`DEVICE_ATTACH dev_id=${dev2} pt_id=${ioas}`, 'pt_id')
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${auto}`, 'EINVAL', /NEST_PARENT/)
  })

  it('a VT-d NEST_PARENT HWPT cannot be the stage 2 of an SMMU vIOMMU: EINVAL', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const vtd = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const vtdParent = t.id(`HWPT_ALLOC dev_id=${vtd} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${vtdParent}`, 'EINVAL', /intel-vtd/)
  })

  it('fault injection: no free VMID on the SMMU -> HWPT_ALLOC NEST_PARENT is ENOSPC and nothing changes (the stage 2 takes the VMID; VIOMMU_ALLOC takes none)', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const pool = t.smmu(SMMU0).vmids
    const stub = sinon.stub(pool, 'full').get(() => true)
    try {
      const objects = t.objects()
      t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.ioas} flags=NEST_PARENT`, 'ENOSPC', /no free VMID/)
      assert.equal(t.objects(), objects)
      assert.equal(t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${s.dev} hwpt_id=${s.parent}`, 'out_viommu_id'), s.viommu + 1)
    } finally {
      stub.restore()
    }
    assert.equal(pool.inUse, 1)
  })
})

describe('iommufd VDEVICE_ALLOC (§3.18, §7.2)', () => {
  it('maps the vSID to the device\'s StreamID in the vIOMMU', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    assert.deepEqual(t.ok(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`), { out_vdevice_id: String(s.viommu + 1) })
    const vd = t.describe(s.viommu + 1)
    assert.equal(vd.get('type'), 'vdevice')
    assert.equal(vd.get('virt_id'), '0x10')
    assert.equal(vd.get('phys_id'), '0x8')
    assert.equal(t.describe(s.viommu).get('vsid_map'), '0x10->0x8')
    assert.equal(t.describe(s.viommu).get('users'), '1')
    assert.equal(t.describe(s.dev).get('vdevice'), String(s.viommu + 1))
  })

  it('a second vDEVICE for the same device is EEXIST, in the same vIOMMU or another', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.ok(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`)
    t.err(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x20`, 'EEXIST', /dev_id/)
    const v2 = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${s.dev} hwpt_id=${s.parent}`, 'out_viommu_id')
    t.err(`VDEVICE_ALLOC viommu_id=${v2} dev_id=${s.dev} virt_id=0x30`, 'EEXIST')
  })

  it('a duplicate virt_id in one vIOMMU is EEXIST; the same virt_id in another vIOMMU is allowed', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const b = t.bind(DEV.smmu0b)
    t.ok(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`)
    t.err(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${b} virt_id=0x10`, 'EEXIST', /virt_id=0x10/)
    const other = t.bind(DEV.smmu1a)
    const parent1 = t.id(`HWPT_ALLOC dev_id=${other} pt_id=${s.ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const v1 = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${other} hwpt_id=${parent1}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${v1} dev_id=${other} virt_id=0x10`)
    assert.equal(t.describe(v1).get('vsid_map'), '0x10->0x100')
    // and in a second vIOMMU on the same SMMU
    const v2 = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${b} hwpt_id=${s.parent}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${v2} dev_id=${b} virt_id=0x10`)
    assert.equal(t.describe(v2).get('vsid_map'), '0x10->0x10')
  })

  it('a device behind another SMMU than the vIOMMU is EINVAL', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const other = t.bind(DEV.smmu1a)
    t.err(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${other} virt_id=0x10`, 'EINVAL', /smmu3.0x0000000009060000/)
  })

  it('an unknown vIOMMU or device is ENOENT (typed lookups)', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`VDEVICE_ALLOC viommu_id=99 dev_id=${s.dev} virt_id=0x10`, 'ENOENT', /viommu_id=99/)
    t.err(`VDEVICE_ALLOC viommu_id=${s.parent} dev_id=${s.dev} virt_id=0x10`, 'ENOENT')
    t.err(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=99 virt_id=0x10`, 'ENOENT')
    t.err(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.ioas} virt_id=0x10`, 'ENOENT')
  })

  it('DESTROY of the vDEVICE frees the device and the virt_id for reuse', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const vd = t.id(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`, 'out_vdevice_id')
    t.ok(`DESTROY id=${vd}`)
    assert.equal(t.describe(s.viommu).get('vsid_map'), '-')
    assert.equal(t.id(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`, 'out_vdevice_id'), vd)
  })
})

describe('iommufd lifetime (§8, §7.2, §10.11)', () => {
  it('DESTROY of a bound device is EBUSY', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    t.err(`DESTROY id=${dev}`, 'EBUSY', /unbinding/)
  })

  it('the parent is busy while a vIOMMU uses it; the vIOMMU while a vDEVICE or a nested HWPT uses it', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.ok(`DEVICE_DETACH dev_id=${s.dev}`)
    const vd = t.id(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`, 'out_vdevice_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'out_hwpt_id')
    t.err(`DESTROY id=${s.parent}`, 'EBUSY', /hwpt_paging/)
    t.err(`DESTROY id=${s.viommu}`, 'EBUSY', /2 users/)
    t.ok(`DESTROY id=${vd}`)
    t.err(`DESTROY id=${s.viommu}`, 'EBUSY', /1 user\b/)
    t.ok(`DESTROY id=${nested}`)
    t.ok(`DESTROY id=${s.viommu}`)
    t.ok(`DESTROY id=${s.parent}`)
    t.ok(`DESTROY id=${s.ioas}`)
    assert.equal(t.objects(), '1:device')
  })

  it('a HWPT with a device attached is EBUSY; after DEVICE_DETACH it can be destroyed', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    t.err(`DESTROY id=${hwpt}`, 'EBUSY')
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    t.ok(`DESTROY id=${hwpt}`)
  })

  it('a VT-d parent is busy while a nested HWPT is built on it', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data.pgtbl_addr=0x1000 data.addr_width=48`, 'out_hwpt_id')
    t.err(`DESTROY id=${parent}`, 'EBUSY')
    t.ok(`DESTROY id=${nested}`)
    t.ok(`DESTROY id=${parent}`)
  })

  it('unbinding a device (closing its VFIO file) destroys its vDEVICE; the vDEVICE ID is a tombstone: ENOENT and not reused', () => {
    const t = new IommuBench()
    const { session, devId } = t.vfioBind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${devId} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${devId} hwpt_id=${parent}`, 'out_viommu_id')
    const vd = t.id(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${devId} virt_id=0x10`, 'out_vdevice_id')
    assert.deepEqual([devId, ioas, parent, viommu, vd], [1, 2, 3, 4, 5])
    session.release()
    assert.equal(t.objects(), '2:ioas 3:hwpt_paging 4:viommu')
    assert.deepEqual(t.ctx.objects.tombstones(), [vd])
    t.err(`DESTROY id=${vd}`, 'ENOENT')
    t.err(`VDEVICE_ALLOC viommu_id=${vd} dev_id=1 virt_id=0x10`, 'ENOENT')
    assert.equal(t.describe(viommu).get('vsid_map'), '-')
    // the vIOMMU is no longer held by the vDEVICE
    assert.equal(t.describe(viommu).get('users'), '0')
    // the device's ID is free again (lowest free), the tombstone is skipped
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 6)
    assert.deepEqual(t.ctx.objects.tombstones(), [5])
    // the device can be bound again and gets a fresh vDEVICE
    const again = t.bind(DEV.smmu0a)
    assert.equal(again, 7)
    assert.equal(t.id(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${again} virt_id=0x10`, 'out_vdevice_id'), 8)
  })

  it('closing the context frees the tombstone with everything else', () => {
    const t = new IommuBench()
    const { session, devId } = t.vfioBind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${devId} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${devId} hwpt_id=${parent}`, 'out_viommu_id')
    t.id(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${devId} virt_id=0x10`, 'out_vdevice_id')
    session.release()
    const id = t.ctx.id
    t.close()
    assert.equal(t.world.contexts.has(id), false)
    assert.deepEqual(t.ctx.objects.objects(), [])
    assert.equal(t.smmu(SMMU0).vmids.inUse, 0)
    // a new context starts from ID 1 again
    assert.equal(t.open().id('IOAS_ALLOC', 'out_ioas_id'), 1)
  })

  it('closing the context with everything still in use destroys it all, leaves first, and unbinds the devices', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.id(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`, 'out_vdevice_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${nested}`)
    const vtd = t.bind(DEV.vtdA)
    t.ok(`DEVICE_ATTACH dev_id=${vtd} pt_id=${s.ioas}`)
    assert.equal(t.vtd().domainsUsed, 1)
    t.close()
    assert.deepEqual(t.ctx.objects.objects(), [])
    assert.equal(t.smmu(SMMU0).vmids.inUse, 0)
    assert.equal(t.vtd().domainsUsed, 0)
    assert.equal(t.smmu(SMMU0).streams.size, 0)
    assert.equal(t.world.ownerOf(t.pci(DEV.smmu0a)), undefined)
    // the devices can be bound by another context
    const u = t.open()
    assert.equal(u.bind(DEV.smmu0a), 1)
  })
})

describe('iommufd contexts are isolated', () => {
  it('an ID of one context is ENOENT in the other', () => {
    const a = new IommuBench()
    const b = a.open()
    a.id('IOAS_ALLOC', 'out_ioas_id')
    a.id('IOAS_ALLOC', 'out_ioas_id')
    assert.equal(b.id('IOAS_ALLOC', 'out_ioas_id'), 1)
    b.err('IOAS_IOVA_RANGES ioas_id=2', 'ENOENT')
    b.err('DESTROY id=2', 'ENOENT')
    assert.equal(a.objects(), '1:ioas 2:ioas')
  })

  it('a device bound in one context cannot be bound in another (EBUSY) and is unknown there (ENOENT)', () => {
    const a = new IommuBench()
    const b = a.open()
    const dev = a.bind(DEV.smmu0a)
    b.err(`DEVICE_BIND pci=${DEV.smmu0a}`, 'EBUSY', new RegExp(`context ${a.ctx.id}`))
    b.err(`GET_HW_INFO dev_id=${dev}`, 'ENOENT')
    b.err(`DEVICE_ATTACH dev_id=${dev} pt_id=1`, 'ENOENT')
  })

  it('closing one context leaves the other intact', () => {
    const a = new IommuBench()
    const b = a.open()
    a.bind(DEV.vtdA)
    const ioas = b.id('IOAS_ALLOC', 'out_ioas_id')
    const dev = b.bind(DEV.vtdB)
    b.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    a.close()
    assert.equal(b.objects(), '1:ioas 2:device 3:hwpt_paging')
    assert.equal(b.vtd().domainsUsed, 1)
  })
})
