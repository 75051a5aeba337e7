/**
 * DEVICE_BIND / DEVICE_ATTACH / DEVICE_DETACH (reference §9, §8 auto
 * domains, §5.2 and §6.2 attach rules) in-process, with the hardware state
 * the host driver programs, each failure checked to change nothing.
 */
import { strict as assert } from 'node:assert'
import * as sinon from 'sinon'
import { DEV, IommuBench, SMMU0, smmuNestSetup, ste } from '../helpers/iommufd'

describe('iommufd DEVICE_BIND', () => {
  it('binds a device: out_devid, a device object naming its IOMMU and StreamID', () => {
    const t = new IommuBench()
    assert.deepEqual(t.ok(`DEVICE_BIND pci=${DEV.smmu0b}`), { out_devid: '1' })
    const d = t.describe(1)
    assert.equal(d.get('type'), 'device')
    assert.equal(d.get('pci'), DEV.smmu0b)
    assert.equal(d.get('iommu'), SMMU0)
    assert.equal(d.get('stream_id'), '0x10')
    assert.equal(d.get('attached'), '-')
  })

  it('an unknown PCI address is ENODEV; binding twice is EBUSY', () => {
    const t = new IommuBench()
    t.err('DEVICE_BIND pci=0000:09:00.0', 'ENODEV', /0000:09:00.0/)
    t.bind(DEV.vtdA)
    t.err(`DEVICE_BIND pci=${DEV.vtdA}`, 'EBUSY')
  })

  it('VFIO device commands with no device named are ENOTTY on an iommufd, as the kernel\'s has none (before any size rule)', () => {
    const t = new IommuBench()
    t.err('DEVICE_BIND', 'ENOTTY', /VFIO_DEVICE_BIND_IOMMUFD: not an iommufd command; send it to a dev\/vfio\/devices\/vfio<N> node, or name the device/)
    t.err('DEVICE_GET_INFO argsz=1', 'ENOTTY', /not an iommufd command/)
    t.err('DEVICE_FEATURE argsz=1', 'ENOTTY', /not an iommufd command/)
  })
})

describe('iommufd DEVICE_ATTACH to an IOAS: auto domains (§8)', () => {
  it('creates an auto HWPT_PAGING and reports its ID in pt_id; the device entry is programmed', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.deepEqual(t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`), { pt_id: '3' })
    const h = t.describe(3)
    assert.equal(h.get('type'), 'hwpt_paging')
    assert.equal(h.get('auto_domain'), '1')
    assert.equal(h.get('ioas'), String(ioas))
    assert.equal(h.get('devices'), `${dev} (${DEV.smmu0a})`)
    assert.equal(t.describe(dev).get('attached'), '3 (hwpt_paging)')
    assert.match(t.hw(SMMU0, 'stream_table'), /sid=0x8 config=s1-translate asid=\d+/)
  })

  it('a second device of the same driver reuses the auto domain; it is destroyed when the last detaches', () => {
    const t = new IommuBench()
    const a = t.bind(DEV.vtdA)
    const b = t.bind(DEV.vtdB)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const h = t.id(`DEVICE_ATTACH dev_id=${a} pt_id=${ioas}`, 'pt_id')
    assert.equal(t.id(`DEVICE_ATTACH dev_id=${b} pt_id=${ioas}`, 'pt_id'), h)
    assert.equal(t.describe(h).get('users'), '2')
    assert.equal(t.vtd().domainsUsed, 1)
    t.err(`DESTROY id=${h}`, 'EBUSY', /2 users/)
    t.ok(`DEVICE_DETACH dev_id=${a}`)
    assert.equal(t.describe(h).get('devices'), `${b} (${DEV.vtdB})`)
    t.ok(`DEVICE_DETACH dev_id=${b}`)
    assert.equal(t.objects(), '1:device 2:device 3:ioas')
    assert.equal(t.vtd().domainsUsed, 0)
    assert.equal(t.describe(ioas).get('users'), '0')
    t.ok(`DESTROY id=${ioas}`)
  })

  it('an auto domain is never a manual HWPT: attaching to the IOAS ignores a manual HWPT on it', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const manual = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    const auto = t.id(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'pt_id')
    assert.notEqual(auto, manual)
    assert.equal(t.describe(auto).get('auto_domain'), '1')
  })

  it('attach again to the same target is a no-op returning the same HWPT', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const h = t.id(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'pt_id')
    const before = t.dump()
    assert.equal(t.id(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'pt_id'), h)
    assert.equal(t.dump(), before)
  })

  it('an IOAS mapping inside the MSI window refuses the attach (EADDRINUSE)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x8000000`)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'EADDRINUSE', /0x8000000/)
  })

  it('an allowed list covering the MSI window refuses the attach (EADDRINUSE)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x0,0xfffffff`)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'EADDRINUSE', /allows/)
  })

  it('fault injection: no free VT-d domain ID -> ENOSPC, and no auto HWPT is left behind', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const stub = sinon.stub(t.vtd().domainIds, 'alloc').returns(undefined)
    try {
      t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'ENOSPC', /domain ID/)
      assert.equal(stub.callCount, 1)
    } finally {
      stub.restore()
    }
    assert.equal(t.objects(), '1:device 2:ioas')
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 3)
  })
})

describe('iommufd DEVICE_ATTACH: HWPTs and replace (§9)', () => {
  it('attach to a paging HWPT reports that HWPT', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    assert.deepEqual(t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${h}`), { pt_id: String(h) })
    assert.match(t.hw('dmar0', 'pasid_table'), /rid=02:00.0 pasid=0 \(RID_PASID\) pgtt=first-stage did=2/)
  })

  it('replace: attaching elsewhere without detaching moves the device; the old auto domain goes away', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas1 = t.id('IOAS_ALLOC', 'out_ioas_id')
    const ioas2 = t.id('IOAS_ALLOC', 'out_ioas_id')
    const auto1 = t.id(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas1}`, 'pt_id')
    const auto2 = t.id(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas2}`, 'pt_id')
    assert.deepEqual([auto1, auto2], [4, 5])
    assert.equal(t.ctx.objects.find(auto1), undefined)
    assert.equal(t.describe(auto2).get('ioas'), String(ioas2))
    assert.equal(t.objects(), `1:device 2:ioas 3:ioas ${auto2}:hwpt_paging`)
    assert.equal(t.vtd().domainsUsed, 1)
    const manual = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas1}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${manual}`)
    assert.equal(t.describe(dev).get('attached'), `${manual} (hwpt_paging)`)
    assert.equal(t.ctx.objects.find(auto2), undefined)
    assert.equal(t.vtd().domainsUsed, 1)
  })

  it('a missing pt_id is ENOENT; a vIOMMU, a device or a vDEVICE is EINVAL', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const vd = t.id(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`, 'out_vdevice_id')
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=99`, 'ENOENT', /pt_id=99/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${s.viommu}`, 'EINVAL', /viommu/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${s.dev}`, 'EINVAL', /device/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${vd}`, 'EINVAL', /vdevice/)
  })

  it('an SMMUv3 device on a VT-d HWPT (and back) is EINVAL', () => {
    const t = new IommuBench()
    const smmu = t.bind(DEV.smmu0a)
    const vtd = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const vh = t.id(`HWPT_ALLOC dev_id=${vtd} pt_id=${ioas}`, 'out_hwpt_id')
    const sh = t.id(`HWPT_ALLOC dev_id=${smmu} pt_id=${ioas}`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${smmu} pt_id=${vh}`, 'EINVAL', /intel-vtd/)
    t.err(`DEVICE_ATTACH dev_id=${vtd} pt_id=${sh}`, 'EINVAL', /arm-smmu-v3/)
  })

  it('an SMMUv3 HWPT holds devices behind the SMMU it was built for only: EINVAL for the other SMMU, its RID and its PASIDs alike', () => {
    const t = new IommuBench()
    const a = t.bind(DEV.smmu0a)
    const other = t.bind(DEV.smmu1a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const h = t.id(`HWPT_ALLOC dev_id=${a} pt_id=${ioas} flags=PASID`, 'out_hwpt_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${a} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${other} pt_id=${h}`, 'EINVAL', new RegExp(`pt_id=${h}: built for ${SMMU0}, it cannot hold ${DEV.smmu1a}`))
    t.err(`DEVICE_ATTACH dev_id=${other} pt_id=${parent}`, 'EINVAL', /built for/)
    // a PASID domain of the other SMMU, on a device of the first
    const h1 = t.id(`HWPT_ALLOC dev_id=${other} pt_id=${ioas} flags=PASID`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${a} pt_id=${h1} flags=PASID pasid=1`, 'EINVAL', /built for smmu3.0x0000000009060000/)
    assert.equal(t.ok(`DEVICE_ATTACH dev_id=${a} pt_id=${h} flags=PASID pasid=1`).pt_id, String(h))
  })

  it('devices behind two SMMUs on one IOAS get an auto domain each; a second device behind the first SMMU reuses its own', () => {
    const t = new IommuBench()
    const a = t.bind(DEV.smmu0a)
    const other = t.bind(DEV.smmu1a)
    const b = t.bind(DEV.smmu0b)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const h0 = t.id(`DEVICE_ATTACH dev_id=${a} pt_id=${ioas}`, 'pt_id')
    const h1 = t.id(`DEVICE_ATTACH dev_id=${other} pt_id=${ioas}`, 'pt_id')
    assert.notEqual(h1, h0)
    assert.equal(t.describe(h1).get('auto_domain'), '1')
    assert.equal(t.id(`DEVICE_ATTACH dev_id=${b} pt_id=${ioas}`, 'pt_id'), h0)
    assert.equal(t.describe(ioas).get('users'), '2')
  })

  it('a dev_id that is not a bound device is ENOENT; PASID attach to an IOAS is EINVAL, and on a device without a PASID capability; unknown flags EINVAL', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`DEVICE_ATTACH dev_id=9 pt_id=${ioas}`, 'ENOENT', /dev_id=9/)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas} flags=PASID pasid=1`, 'EINVAL', /automatic domain/)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas} flags=0x2`, 'EINVAL')
    // 0000:01:01.0 has no PASID capability (pasid: 0 in the default topology)
    const smmu = t.bind(DEV.smmu1b)
    const h = t.id(`HWPT_ALLOC dev_id=${smmu} pt_id=${ioas} flags=PASID`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${smmu} pt_id=${h} flags=PASID pasid=1`, 'EINVAL', /not PASID-capable/)
    assert.equal(t.describe(smmu).get('pasids'), '-')
    assert.equal(t.describe(smmu).get('pasid_bits'), '0')
  })

  it('DEVICE_DETACH of a device that is not attached succeeds and changes nothing', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const before = t.dump()
    assert.deepEqual(t.ok(`DEVICE_DETACH dev_id=${dev}`), {})
    assert.equal(t.dump(), before)
  })
})

describe('iommufd DEVICE_ATTACH to nested HWPTs (§5.2, §6.2)', () => {
  it('SMMUv3 S1-translate without a vDEVICE is ENOENT; with one, a NESTED STE with the vIOMMU VMID', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const nested = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5, 1n << 28n)}`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${nested}`, 'ENOENT', /vDEVICE/)
    t.ok(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`)
    assert.deepEqual(t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${nested}`), { pt_id: String(nested) })
    const vmid = t.describe(s.viommu).get('vmid')
    assert.match(t.hw(SMMU0, 'stream_table'), new RegExp(`sid=0x8 config=nested vmid=${vmid} guest_ste=0x000000000000000b,0x0000000000000000 ats=1`))
    // the parent's own S2 VMID was released when the device moved to the nested domain
    assert.equal(t.smmu(SMMU0).vmids.inUse, 1)
  })

  it('SMMUv3 abort and bypass nested domains attach without a vDEVICE', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const abort = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=0x0,0x0`, 'out_hwpt_id')
    const bypass = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(4)}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${abort}`)
    assert.match(t.hw(SMMU0, 'stream_table'), /sid=0x8 config=abort ats=0/)
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${bypass}`)
    assert.match(t.hw(SMMU0, 'stream_table'), new RegExp(`sid=0x8 config=s2-translate vmid=${t.describe(s.viommu).get('vmid')} ats=0`))
  })

  it('a vDEVICE in another vIOMMU does not count: ENOENT', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const other = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${s.dev} hwpt_id=${s.parent}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${other} dev_id=${s.dev} virt_id=0x10`)
    const nested = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${nested}`, 'ENOENT')
  })

  it('an SMMUv3 nested HWPT of one SMMU cannot hold a device of the other: EINVAL', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const nested = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(4)}`, 'out_hwpt_id')
    const other = t.bind(DEV.smmu1a)
    t.err(`DEVICE_ATTACH dev_id=${other} pt_id=${nested}`, 'EINVAL', /vIOMMU is on/)
  })

  it('VT-d nested: addr_width 57 without CAP.FL5LP is EINVAL at attach; 48 attaches as a nested PASID entry', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const n57 = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data.pgtbl_addr=0x1000 data.addr_width=57`, 'out_hwpt_id')
    const n48 = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data.pgtbl_addr=0x2000 data.addr_width=48`, 'out_hwpt_id')
    const n39 = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data.pgtbl_addr=0x3000 data.addr_width=39`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${n57}`, 'EINVAL', /addr_width=57/)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${n39}`, 'EINVAL', /addr_width=39/)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${n48}`)
    assert.match(t.hw('dmar0', 'pasid_table'), /rid=02:00.0 pasid=0 \(RID_PASID\) pgtt=nested did=\d+ flptr=0x2000 addr_width=48/)
    assert.equal(t.vtd().domainsUsed, 1)
    assert.equal(t.describe(n48).get('devices'), `${dev} (${DEV.vtdA})`)
  })
})
