/**
 * HWPT_ALLOC (reference §3.10, §5.2, §6.2) and GET_HW_INFO (§3.11, §5.1,
 * §6.1) in-process, each failure checked to change nothing.
 */
import { strict as assert } from 'node:assert'
import { readFileSync } from 'node:fs'
import { World } from '../../src/iommufd/world'
import { loadSchema } from '../../src/topology/attributes'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY, SCHEMA_DIR } from '../../src/util/paths'
import * as path from 'node:path'
import { Model } from '../../src/index'
import { edit, renderUnit, tempDataDir } from '../helpers/data'
import { DEV, DMAR0, IommuBench, SMMU0, smmuNestSetup, ste } from '../helpers/iommufd'

describe('iommufd HWPT_ALLOC: common checks (§3.10)', () => {
  function setup(): { t: IommuBench; dev: number; ioas: number } {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    return { t, dev, ioas }
  }

  it('a paging HWPT on an IOAS: out_hwpt_id, type hwpt_paging, not an auto domain, holds the IOAS', () => {
    const { t, dev, ioas } = setup()
    assert.deepEqual(t.ok(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`), { out_hwpt_id: '3' })
    const d = t.describe(3)
    assert.equal(d.get('type'), 'hwpt_paging')
    assert.equal(d.get('ioas'), String(ioas))
    assert.equal(d.get('auto_domain'), '0')
    assert.equal(d.get('flags'), '0')
    assert.equal(t.describe(ioas).get('users'), '1')
  })

  it('NEST_PARENT and DIRTY_TRACKING are recorded in the HWPT; an SMMUv3 nest parent takes no other flag (a VT-d one tracks dirty pages)', () => {
    const { t, dev, ioas } = setup()
    const np = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    // arm_smmu_domain_alloc_paging_flags: no case for NEST_PARENT|DIRTY_TRACKING
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING|NEST_PARENT`, 'EOPNOTSUPP', /flags=NEST_PARENT\|DIRTY_TRACKING: an SMMUv3 nest parent takes no other flag/)
    const vtd = t.bind(DEV.vtdA)
    const dt = t.id(`HWPT_ALLOC dev_id=${vtd} pt_id=${ioas} flags=DIRTY_TRACKING|NEST_PARENT`, 'out_hwpt_id')
    assert.equal(t.describe(np).get('flags'), 'NEST_PARENT')
    assert.equal(t.describe(dt).get('flags'), 'NEST_PARENT|DIRTY_TRACKING')
    assert.equal(t.describe(ioas).get('users'), '2')
  })

  it('__reserved != 0 is EOPNOTSUPP before anything else; __reserved2 is not checked', () => {
    const { t, dev, ioas } = setup()
    t.err(`HWPT_ALLOC dev_id=99 pt_id=99 __reserved=1`, 'EOPNOTSUPP', /__reserved/)
    assert.equal(t.ok(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} __reserved2=7`).out_hwpt_id, '3')
  })

  it('data_type NONE with data_len != 0, or a type with data_len 0: EINVAL (before the device lookup)', () => {
    const { t, ioas } = setup()
    t.err(`HWPT_ALLOC dev_id=99 pt_id=${ioas} data_len=16`, 'EINVAL', /data_type=0 with data_len=16/)
    t.err(`HWPT_ALLOC dev_id=99 pt_id=${ioas} data_type=ARM_SMMUV3`, 'EINVAL', /data_len=0/)
  })

  it('an unknown dev_id is ENOENT', () => {
    const { t, ioas } = setup()
    t.err(`HWPT_ALLOC dev_id=99 pt_id=${ioas}`, 'ENOENT', /dev_id=99/)
    t.err(`HWPT_ALLOC dev_id=${ioas} pt_id=${ioas}`, 'ENOENT')
  })

  it('quirk §10.7: a pt_id that does not exist is EINVAL, not ENOENT (also ID 0)', () => {
    const { t, dev } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=99`, 'EINVAL', /pt_id=99/)
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=0`, 'EINVAL')
  })

  it('a pt_id of another object type (device, nested HWPT, vDEVICE) is EINVAL', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const vd = t.id(`VDEVICE_ALLOC viommu_id=${s.viommu} dev_id=${s.dev} virt_id=0x10`, 'out_vdevice_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'out_hwpt_id')
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.dev}`, 'EINVAL', /device/)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${nested} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EINVAL', /hwpt_nested/)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${vd}`, 'EINVAL', /vdevice/)
  })
})

describe('iommufd HWPT_ALLOC: paging on an IOAS', () => {
  function setup(bdf: string = DEV.smmu0a): { t: IommuBench; dev: number; ioas: number } {
    const t = new IommuBench()
    const dev = t.bind(bdf)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    return { t, dev, ioas }
  }

  it('flags outside NEST_PARENT|DIRTY_TRACKING|FAULT_ID_VALID|PASID are EOPNOTSUPP', () => {
    const { t, dev, ioas } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=0x10`, 'EOPNOTSUPP', /0x10/)
  })

  it('FAULT_ID_VALID with NEST_PARENT is EOPNOTSUPP; FAULT_ID_VALID alone names a fault object that does not exist: ENOENT', () => {
    const { t, dev, ioas } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=FAULT_ID_VALID|NEST_PARENT fault_id=1`, 'EOPNOTSUPP')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=FAULT_ID_VALID fault_id=5`, 'ENOENT', /fault_id=5/)
  })

  it('driver data on a paging domain is EOPNOTSUPP (ARM and VT-d)', () => {
    const a = setup()
    a.t.err(`HWPT_ALLOC dev_id=${a.dev} pt_id=${a.ioas} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EOPNOTSUPP', /paging/)
    const b = setup(DEV.vtdA)
    b.t.err(`HWPT_ALLOC dev_id=${b.dev} pt_id=${b.ioas} data_type=VTD_S1 data.pgtbl_addr=0x1000 data.addr_width=48`, 'EOPNOTSUPP')
  })

  it('VT-d paging HWPTs with NEST_PARENT and DIRTY_TRACKING (ECAP.NEST, ECAP.SLADS) succeed', () => {
    const { t, dev, ioas } = setup(DEV.vtdA)
    const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT|DIRTY_TRACKING`, 'out_hwpt_id')
    assert.equal(t.describe(h).get('driver'), 'intel-vtd')
  })
})

describe('iommufd HWPT_ALLOC: ARM SMMUv3 nested on a vIOMMU (§3.10, §5.2)', () => {
  it('S1-translate STE: a hwpt_nested on the vIOMMU, its fields decoded by name', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    // V=1 Cfg=5 S1Fmt=1 S1ContextPtr=0x80000000 S1CDMax=3; word1 S1DSS=2 S1CIR=1 S1STALLD EATS=1
    const w0 = 0x1bn | (1n << 4n) | 0x80000000n | (3n << 59n)
    const w1 = 2n | (1n << 2n) | (1n << 27n) | (1n << 28n)
    const id = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=0x${w0.toString(16)},0x${w1.toString(16)}`, 'out_hwpt_id')
    const d = t.describe(id)
    assert.equal(d.get('type'), 'hwpt_nested')
    assert.equal(d.get('viommu'), String(s.viommu))
    assert.equal(d.get('ste.config'), 's1-translate')
    assert.equal(d.get('ats'), '1')
    assert.equal(d.get('ste.CFG'), '5 (s1-translate)')
    assert.equal(d.get('ste.S1FMT'), '1')
    assert.equal(d.get('ste.S1CTXPTR'), '0x80000000')
    assert.equal(d.get('ste.S1CDMAX'), '3')
    assert.equal(d.get('ste.S1DSS'), '2')
    assert.equal(d.get('ste.S1STALLD'), '1')
    // EATS is taken out of the stored STE
    assert.equal(d.get('ste.EATS'), '0')
    assert.equal(t.describe(s.viommu).get('users'), '1')
  })

  it('V=0 is accepted whatever else is set: the STE is zeroed and becomes abort (§10.6)', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const id = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=0xfffffffffffffffe,0xffffffffffffffff`, 'out_hwpt_id')
    const d = t.describe(id)
    assert.equal(d.get('ste'), '0x0000000000000000 0x0000000000000000')
    assert.equal(d.get('ste.config'), 'abort')
  })

  it('bypass (Cfg 4) and abort (Cfg 0) STEs are accepted', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const byp = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(4)}`, 'out_hwpt_id')
    const abt = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(0)}`, 'out_hwpt_id')
    assert.equal(t.describe(byp).get('ste.config'), 'bypass')
    assert.equal(t.describe(abt).get('ste.config'), 'abort')
  })

  it('a bit outside the guest masks (word0 0xF80FFFFFFFFFFFFF, word1 0x380000FF) is EIO', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const pre = `HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3`
    t.err(`${pre} data.ste=${ste(5, 0n, 1n << 52n)}`, 'EIO', /ste\[0\].*0x10000000000000/)
    t.err(`${pre} data.ste=${ste(5, 0n, 1n << 58n)}`, 'EIO', /ste\[0\]/)
    t.err(`${pre} data.ste=${ste(5, 1n << 8n)}`, 'EIO', /ste\[1\].*0x100/)
    t.err(`${pre} data.ste=${ste(5, 1n << 19n)}`, 'EIO', /ste\[1\]/)
    t.err(`${pre} data.ste=${ste(5, 1n << 30n)}`, 'EIO', /ste\[1\]/)
  })

  it('Config 6 (S2 only), 7 (nested) and reserved values are EIO', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const pre = `HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3`
    t.err(`${pre} data.ste=${ste(6)}`, 'EIO', /CFG=6/)
    t.err(`${pre} data.ste=${ste(7)}`, 'EIO', /CFG=7/)
    t.err(`${pre} data.ste=${ste(1)}`, 'EIO', /CFG=1/)
  })

  it('EATS 2 (S1CHK) and 3 are EIO', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const pre = `HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3`
    t.err(`${pre} data.ste=${ste(5, 2n << 28n)}`, 'EIO', /EATS=2/)
    t.err(`${pre} data.ste=${ste(5, 3n << 28n)}`, 'EIO', /EATS=3/)
  })

  it('data_len 8 or 24 is EINVAL (the driver struct is exactly 16 bytes)', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data=0xb`, 'EINVAL', /data_len=8/)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=ARM_SMMUV3 data=0xb,0x0,0x0`, 'EINVAL', /data_len=24/)
  })

  it('data_type VTD_S1 (or AMD_GUEST) for an SMMUv3 vIOMMU is EINVAL', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=VTD_S1 data=0xb,0x0`, 'EINVAL', /data_type=1/)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} data_type=AMD_GUEST data=0xb,0x0`, 'EINVAL', /data_type=3/)
  })

  it('no driver data on the vIOMMU path (data_len 0) is EOPNOTSUPP', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu}`, 'EOPNOTSUPP', /data_len=0/)
  })

  it('any hwpt-alloc flag is EOPNOTSUPP (PASID included); unknown flags too', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} flags=PASID data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EOPNOTSUPP', /PASID/)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.viommu} flags=NEST_PARENT data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EOPNOTSUPP')
  })

  it('a device behind another IOMMU than the vIOMMU is EINVAL', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    const other = t.bind(DEV.smmu1a)
    const vtd = t.bind(DEV.vtdA)
    t.err(`HWPT_ALLOC dev_id=${other} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EINVAL', /smmu3.0x0000000009060000/)
    t.err(`HWPT_ALLOC dev_id=${vtd} pt_id=${s.viommu} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EINVAL', /dmar0/)
  })

  it('ARM nested on the parent HWPT (not the vIOMMU) is EOPNOTSUPP: ARM has no domain_alloc_nested', () => {
    const t = new IommuBench()
    const s = smmuNestSetup(t)
    t.err(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.parent} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EOPNOTSUPP', /vIOMMU/)
  })
})

describe('iommufd HWPT_ALLOC: VT-d nested on a NEST_PARENT HWPT (§3.10, §6.2)', () => {
  function setup(): { t: IommuBench; dev: number; ioas: number; parent: number } {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    return { t, dev, ioas, parent }
  }
  const S1 = 'data_type=VTD_S1 data.pgtbl_addr=0x12345000 data.addr_width=48'

  it('VTD_S1 data on the parent: a hwpt_nested with its first-stage table decoded', () => {
    const { t, dev, parent } = setup()
    const id = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} ${S1} data.flags=SRE|WPE`, 'out_hwpt_id')
    const d = t.describe(id)
    assert.equal(d.get('type'), 'hwpt_nested')
    assert.equal(d.get('parent'), String(parent))
    assert.equal(d.get('s1.pgtbl_addr'), '0x12345000')
    assert.equal(d.get('s1.addr_width'), '48')
    assert.equal(d.get('s1.flags'), 'SRE|WPE')
    assert.equal(t.describe(parent).get('users'), '1')
  })

  it('quirk §10.13: s1 flags and __reserved are not validated at alloc', () => {
    const { t, dev, parent } = setup()
    t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} ${S1} data.flags=0xf0 data.__reserved=5`, 'out_hwpt_id')
  })

  it('ARM data for a VT-d device is EOPNOTSUPP', () => {
    const { t, dev, parent } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=ARM_SMMUV3 data.ste=${ste(5)}`, 'EOPNOTSUPP', /VTD_S1/)
  })

  it('data_len 16 or 32 is EINVAL (exactly 24 bytes)', () => {
    const { t, dev, parent } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data=0x0,0x1000`, 'EINVAL', /data_len=16/)
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data=0x0,0x1000,0x30,0x0`, 'EINVAL', /data_len=32/)
  })

  it('no driver data is EOPNOTSUPP', () => {
    const { t, dev, parent } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${parent}`, 'EOPNOTSUPP')
  })

  it('a parent without NEST_PARENT, or an auto domain, is EINVAL', () => {
    const { t, dev, ioas } = setup()
    const plain = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${plain} ${S1}`, 'EINVAL', /NEST_PARENT/)
    const dev2 = t.bind(DEV.vtdB)
    const auto = t.id(`DEVICE_ATTACH dev_id=${dev2} pt_id=${ioas}`, 'pt_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${auto} ${S1}`, 'EINVAL', /auto/)
  })

  it('a parent of another driver (an SMMUv3 NEST_PARENT) is EINVAL', () => {
    const { t, dev, ioas } = setup()
    const smmuDev = t.bind(DEV.smmu0a)
    const armParent = t.id(`HWPT_ALLOC dev_id=${smmuDev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${armParent} ${S1}`, 'EINVAL')
  })

  it('flags other than FAULT_ID_VALID|PASID are EOPNOTSUPP', () => {
    const { t, dev, parent } = setup()
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} flags=NEST_PARENT ${S1}`, 'EOPNOTSUPP')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} flags=DIRTY_TRACKING ${S1}`, 'EOPNOTSUPP')
  })

  it('VIOMMU_ALLOC for a VT-d device is EOPNOTSUPP (VT-d has no vIOMMU type)', () => {
    const { t, dev, parent } = setup()
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'EOPNOTSUPP', /dmar0/)
  })
})

describe('iommufd GET_HW_INFO (§3.11)', () => {
  const schema = loadSchema()

  it('SMMUv3: idr[6], iidr and aidr are the feature tree words; type ARM_SMMUV3, 20 PASID bits, dirty tracking', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const r = t.ok(`GET_HW_INFO dev_id=${dev}`)
    const tree = renderUnit(schema, t.smmu(SMMU0))
    const word = (k: string): string => `0x${BigInt(tree.get(`arm-smmu-v3/${k}`)!.trim()).toString(16)}`
    assert.equal(r.idr, ['idr0', 'idr1', 'idr2', 'idr3', 'idr4', 'idr5'].map(word).join(','))
    assert.equal(r.idr, '0xc4d76bb,0x1084510,0x0,0xd00,0x0,0x800075')
    assert.equal(r.iidr, word('iidr'))
    assert.equal(r.aidr, word('aidr'))
    assert.equal(r.flags, '0x0')
    assert.equal(r.data_len, '40')
    assert.equal(r.out_data_type, '2')
    assert.equal(r.out_max_pasid_log2, '20')
    assert.equal(r.out_capabilities, '0x1')
  })

  it('VT-d: flags carries the errata bit (1), cap_reg and ecap_reg are the intel-iommu/cap and ecap words', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const r = t.ok(`GET_HW_INFO dev_id=${dev}`)
    const tree = renderUnit(schema, t.vtd(DMAR0))
    assert.equal(r.flags, '0x1')
    assert.equal(BigInt(r.cap_reg), BigInt(`0x${tree.get('intel-iommu/cap')!.trim()}`))
    assert.equal(BigInt(r.ecap_reg), BigInt(`0x${tree.get('intel-iommu/ecap')!.trim()}`))
    assert.equal(r.cap_reg, '0x9ff078c226f0466')
    assert.equal(r.ecap_reg, '0x1ef9ea4f050df')
    assert.equal(r.data_len, '24')
    assert.equal(r.out_data_type, '1')
    assert.equal(r.out_max_pasid_log2, '20')
    assert.equal(r.out_capabilities, '0x1')
  })

  it('data_len smaller than the blob: a prefix is copied and data_len reports the full length', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const r = t.ioctl('GET_HW_INFO', { dev_id: BigInt(dev), data_len: 12n, data_uptr: 0x4000n })
    assert.equal(r.errno, undefined)
    assert.equal(t.out('GET_HW_INFO', r).data_len, 40n)
    // flags 0, __reserved 0, idr[0]
    assert.deepEqual(r.written.get(0x4000n), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0xbb, 0x76, 0x4d, 0x0c]))
  })

  it('data_len larger than the blob: the blob then zeros; data_len reports 24 for VT-d', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const r = t.ioctl('GET_HW_INFO', { dev_id: BigInt(dev), data_len: 32n, data_uptr: 0x4000n })
    const buf = r.written.get(0x4000n)!
    assert.equal(buf.length, 32)
    assert.equal(buf.readUInt32LE(0), 1)
    assert.equal(buf.readBigUInt64LE(8), 0x09ff078c226f0466n)
    assert.equal(buf.readBigUInt64LE(16), 0x0001ef9ea4f050dfn)
    assert.deepEqual(buf.subarray(24), Buffer.alloc(8))
    assert.equal(t.out('GET_HW_INFO', r).data_len, 24n)
  })

  it('data_len 0 is a pure probe: type and length come back, nothing is written', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const r = t.ioctl('GET_HW_INFO', { dev_id: BigInt(dev), data_len: 0n, data_uptr: 0n })
    assert.equal(r.errno, undefined)
    assert.equal(r.written.size, 0)
    const out = t.out('GET_HW_INFO', r)
    assert.equal(out.data_len, 40n)
    assert.equal(out.out_data_type, 2n)
  })

  it('INPUT_TYPE: the matching type succeeds; a mismatching one is EOPNOTSUPP', () => {
    const t = new IommuBench()
    const smmu = t.bind(DEV.smmu0a)
    const vtd = t.bind(DEV.vtdA)
    assert.equal(t.ok(`GET_HW_INFO dev_id=${smmu} flags=INPUT_TYPE out_data_type=ARM_SMMUV3`).out_data_type, '2')
    t.err(`GET_HW_INFO dev_id=${smmu} flags=INPUT_TYPE out_data_type=INTEL_VTD`, 'EOPNOTSUPP', /in_data_type=1/)
    t.err(`GET_HW_INFO dev_id=${vtd} flags=INPUT_TYPE out_data_type=ARM_SMMUV3`, 'EOPNOTSUPP')
  })

  it('without INPUT_TYPE the type field is ignored', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev} out_data_type=INTEL_VTD`).out_data_type, '2')
  })

  it('unknown flags or a nonzero __reserved byte: EOPNOTSUPP; unknown device ENOENT', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    t.err(`GET_HW_INFO dev_id=${dev} flags=0x2`, 'EOPNOTSUPP')
    t.err(`GET_HW_INFO dev_id=${dev} __reserved=0,0,1`, 'EOPNOTSUPP', /__reserved/)
    t.err(`GET_HW_INFO dev_id=${dev + 1}`, 'ENOENT')
  })

  it('size 32 (the minimum): works, and out_capabilities (past offset 32) is not written back', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const r = t.ioctl('GET_HW_INFO', { size: 32n, dev_id: BigInt(dev), data_len: 0n })
    assert.equal(r.errno, undefined)
    assert.equal(r.struct!.length, 32)
    assert.equal(r.struct!.readUInt32LE(12), 40)
  })
})

describe('iommufd: hardware without a feature refuses what needs it (EOPNOTSUPP)', () => {
  const DEFAULT_YAML = readFileSync(DEFAULT_TOPOLOGY, 'utf8')
  let data: Awaited<ReturnType<typeof tempDataDir>>
  before(async () => {
    data = await tempDataDir()
  })
  after(async () => {
    await data.cleanup()
  })

  async function bench(name: string, from: string, to: string): Promise<IommuBench> {
    const file = await data.write(name, edit(DEFAULT_YAML, from, to))
    return new IommuBench(new World(loadTopology(file)))
  }

  it('SMMUv3 without HTTU dirty (IDR0.HTTU=0): DIRTY_TRACKING is EOPNOTSUPP, out_capabilities 0', async () => {
    const t = await bench('no-httu.yaml', 'IDR0: 0x0c4d76bb', 'IDR0: 0x0c4d763b')
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'EOPNOTSUPP', /dirty/)
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev}`).out_capabilities, '0x0')
  })

  it('SMMUv3 without S2P: NEST_PARENT is EOPNOTSUPP', async () => {
    const t = await bench('no-s2p.yaml', 'IDR0: 0x0c4d76bb', 'IDR0: 0x0c4d76ba')
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'EOPNOTSUPP', /S2P/)
  })

  it('SMMUv3 without S2FWB (IDR3.FWB=0): VIOMMU_ALLOC is EOPNOTSUPP (§5.1)', async () => {
    const t = await bench('no-fwb.yaml', 'IDR3: 0x00000d00', 'IDR3: 0x00000c00')
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.err(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'EOPNOTSUPP', /FWB/)
  })

  it('VT-d without ECAP.NEST: NEST_PARENT is EOPNOTSUPP', async () => {
    const t = await bench('no-nest.yaml', 'ECAP: 0x0001ef9ea4f050df', 'ECAP: 0x0001eb9ea0f050df')
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'EOPNOTSUPP', /nesting/)
  })

  it('VT-d without ECAP.SLADS: DIRTY_TRACKING is EOPNOTSUPP, out_capabilities 0', async () => {
    const t = await bench('no-slads.yaml', 'ECAP: 0x0001ef9ea4f050df', 'ECAP: 0x0001cb9ea4f050df')
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'EOPNOTSUPP')
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev}`).out_capabilities, '0x0')
  })
})

describe('iommufd HWPT_ALLOC: what each driver asks of the unit', () => {
  it('a VT-d nest parent on an IOAS already holding a read-only mapping is EINVAL (filling it fails: ERRATA_772415_SPR17)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x100000`)
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'EINVAL', /maps 0x100000 read-only, which a VT-d nest parent cannot hold/)
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x1000`)
    assert.match(t.send(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`), /^ok out_hwpt_id=/)
  })

  it('flags=PASID asks nothing of a unit without PASID support (attaching a PASID does)', () => {
    const ctx = Model.load({ topology: path.join(SCHEMA_DIR, 'topologies', 'no-pasid.yaml') }).openContext()
    assert.match(ctx.request('DEVICE_BIND pci=0000:00:01.0'), /^ok /)
    assert.match(ctx.request('DEVICE_BIND pci=0000:02:00.0'), /^ok /)
    assert.equal(ctx.request('IOAS_ALLOC'), 'ok out_ioas_id=3')
    assert.equal(ctx.request('HWPT_ALLOC dev_id=1 pt_id=3 flags=PASID'), 'ok out_hwpt_id=4')
    assert.equal(ctx.request('HWPT_ALLOC dev_id=2 pt_id=3 flags=PASID'), 'ok out_hwpt_id=5')
  })
})

describe('iommufd HWPT_SET_DIRTY_TRACKING and HWPT_GET_DIRTY_BITMAP (§3.12, §3.13)', () => {
  function setup(): { t: IommuBench; dirty: number; plain: number; ioas: number } {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const dirty = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    const plain = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    return { t, dirty, plain, ioas }
  }

  it('ENABLE on a DIRTY_TRACKING HWPT turns tracking on; flags 0 turns it off; __reserved is not looked at', () => {
    const { t, dirty } = setup()
    assert.deepEqual(t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${dirty} flags=ENABLE __reserved=1`), {})
    assert.equal(t.describe(dirty).get('dirty_tracking'), 'enabled')
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${dirty} flags=0`)
    assert.equal(t.describe(dirty).get('dirty_tracking'), 'disabled')
  })

  it('SET: unknown flags EOPNOTSUPP; not a HWPT_PAGING ENOENT; a HWPT without dirty ops EOPNOTSUPP', () => {
    const { t, dirty, plain, ioas } = setup()
    t.err(`HWPT_SET_DIRTY_TRACKING hwpt_id=${dirty} flags=0x2`, 'EOPNOTSUPP')
    t.err(`HWPT_SET_DIRTY_TRACKING hwpt_id=${ioas} flags=ENABLE`, 'ENOENT')
    t.err(`HWPT_SET_DIRTY_TRACKING hwpt_id=${plain} flags=ENABLE`, 'EOPNOTSUPP', /DIRTY_TRACKING/)
  })

  it('GET_DIRTY_BITMAP: a clean bitmap of one bit per page, written to the caller', () => {
    const { t, dirty } = setup()
    const r = t.ioctl('HWPT_GET_DIRTY_BITMAP', { hwpt_id: BigInt(dirty), iova: 0n, length: 0x80000n, page_size: 0x1000n, data: 0x6000n })
    assert.equal(r.errno, undefined, r.message)
    // 128 pages: two u64 words
    assert.deepEqual(r.written.get(0x6000n), Buffer.alloc(16))
  })

  it('GET_DIRTY_BITMAP: flags/__reserved EOPNOTSUPP; overflow EOVERFLOW; page_size 0 or misalignment EINVAL', () => {
    const { t, dirty } = setup()
    t.err(`HWPT_GET_DIRTY_BITMAP hwpt_id=${dirty} flags=0x2 iova=0 length=0x1000 page_size=0x1000`, 'EOPNOTSUPP')
    t.err(`HWPT_GET_DIRTY_BITMAP hwpt_id=${dirty} __reserved=1 iova=0 length=0x1000 page_size=0x1000`, 'EOPNOTSUPP')
    t.err(`HWPT_GET_DIRTY_BITMAP hwpt_id=${dirty} iova=0xfffffffffffff000 length=0x2000 page_size=0x1000`, 'EOVERFLOW')
    t.err(`HWPT_GET_DIRTY_BITMAP hwpt_id=${dirty} iova=0 length=0x1000 page_size=0`, 'EINVAL')
    t.err(`HWPT_GET_DIRTY_BITMAP hwpt_id=${dirty} iova=0x800 length=0x1000 page_size=0x1000`, 'EINVAL')
    t.err(`HWPT_GET_DIRTY_BITMAP hwpt_id=${dirty} iova=0 length=0x1800 page_size=0x1000`, 'EINVAL')
  })
})
