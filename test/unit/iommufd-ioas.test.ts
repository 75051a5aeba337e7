/**
 * IOAS commands in-process (reference §3.2-§3.9, §3.1 for IOAS destroy):
 * every success path with its out fields and every errno the reference
 * names, each failure checked to change nothing.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench, U64_MAX, u64s } from '../helpers/iommufd'

const RW = 'READABLE|WRITEABLE'

describe('iommufd IOAS_ALLOC and object IDs', () => {
  it('IOAS_ALLOC returns out_ioas_id 1 in a fresh context, then 2', () => {
    const t = new IommuBench()
    assert.deepEqual(t.ok('IOAS_ALLOC'), { out_ioas_id: '1' })
    assert.deepEqual(t.ok('ioas_alloc flags=0'), { out_ioas_id: '2' })
    assert.equal(t.objects(), '1:ioas 2:ioas')
  })

  it('IOAS_ALLOC with any flag bit is EOPNOTSUPP (§3.2)', () => {
    const t = new IommuBench()
    t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err('IOAS_ALLOC flags=1', 'EOPNOTSUPP', /flags=0x1/)
    t.err('IOAS_ALLOC flags=0x80000000', 'EOPNOTSUPP')
  })

  it('IDs are lowest-free from 1 and reused right after DESTROY (§1.4)', () => {
    const t = new IommuBench()
    assert.deepEqual([1, 2, 3].map(() => t.id('IOAS_ALLOC', 'out_ioas_id')), [1, 2, 3])
    t.ok('DESTROY id=2')
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 2)
    t.ok('DESTROY id=3')
    t.ok('DESTROY id=1')
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 3)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 4)
  })

  it('a failed request leaves no ID behind: the next allocation takes the ID it would have taken', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=77`, 'EINVAL')
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 2)
  })
})

describe('iommufd DESTROY of IOAS-related objects', () => {
  it('DESTROY of an unknown ID or ID 0 is ENOENT (§3.1)', () => {
    const t = new IommuBench()
    t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err('DESTROY id=2', 'ENOENT', /id=2/)
    t.err('DESTROY id=0', 'ENOENT')
  })

  it('DESTROY of an IOAS used by a HWPT is EBUSY; after the HWPT goes it succeeds', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    t.err(`DESTROY id=${ioas}`, 'EBUSY', /ioas/)
    t.ok(`DESTROY id=${hwpt}`)
    t.ok(`DESTROY id=${ioas}`)
    assert.equal(t.objects(), '1:device')
  })

  it('DESTROY of an IOAS used by an auto domain is EBUSY', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    t.err(`DESTROY id=${ioas}`, 'EBUSY')
  })

  it('DESTROY twice: the second is ENOENT', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DESTROY id=${ioas}`)
    t.err(`DESTROY id=${ioas}`, 'ENOENT')
  })
})

describe('iommufd IOAS_ALLOW_IOVAS (§3.3)', () => {
  it('sets the allowed list, sorted, which steers allocation; IOAS_IOVA_RANGES still reports the holes between reserved ranges', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.deepEqual(t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x200000,0x2fffff,0x100000,0x1fffff`), {})
    assert.equal(t.describe(ioas).get('allowed_iovas'), '0x100000-0x1fffff 0x200000-0x2fffff')
    // the kernel's IOVA_RANGES walks the reserved ranges alone: the allowed list never narrows it
    assert.deepEqual(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`), {
      num_iovas: '1',
      out_iova_alignment: '0x1',
      allowed_iovas: '0x0,0xffffffffffffffff',
    })
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x7f0000000000 length=0x1000`).iova, '0x100000')
  })

  it('replaces the whole list; an empty list allows everything again', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x100000,0x1fffff`)
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x400000,0x4fffff`)
    assert.equal(t.describe(ioas).get('allowed_iovas'), '0x400000-0x4fffff')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} num_iovas=0`)
    assert.equal(t.describe(ioas).get('allowed_iovas'), 'all')
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x7f0000000000 length=0x1000`).iova, '0x1000')
  })

  it('start >= last is EINVAL naming the range', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x100000,0x1fffff`)
    t.err(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x300000,0x300000`, 'EINVAL', /allowed_iovas\[0\]/)
    t.err(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x0,0xfff,0x5000,0x4000`, 'EINVAL', /allowed_iovas\[1\]/)
  })

  it('overlapping ranges are EINVAL', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x1000,0x4fff,0x4000,0x8fff`, 'EINVAL', /overlaps/)
    assert.equal(t.describe(ioas).get('allowed_iovas'), 'all')
  })

  it('__reserved != 0 is EOPNOTSUPP, before the IOAS lookup', () => {
    const t = new IommuBench()
    t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err('IOAS_ALLOW_IOVAS ioas_id=1 __reserved=1 allowed_iovas=0x1000,0x1fff', 'EOPNOTSUPP', /__reserved/)
    t.err('IOAS_ALLOW_IOVAS ioas_id=9 __reserved=1 allowed_iovas=0x1000,0x1fff', 'EOPNOTSUPP')
  })

  it('an unknown IOAS is ENOENT, also when the ID is another object type', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    t.err('IOAS_ALLOW_IOVAS ioas_id=5 allowed_iovas=0x1000,0x1fff', 'ENOENT')
    t.err(`IOAS_ALLOW_IOVAS ioas_id=${dev} allowed_iovas=0x1000,0x1fff`, 'ENOENT')
  })

  it('a list that covers IOVAs an attached device reserves is refused (EADDRINUSE)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    t.err(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x7000000,0x8ffffff`, 'EADDRINUSE', /0x8000000-0x80fffff/)
  })

  it('an unreadable array is EFAULT', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const r = t.ioctl('IOAS_ALLOW_IOVAS', { ioas_id: BigInt(ioas), num_iovas: 1n, allowed_iovas: 0x5000n }, { buffers: new Map([[0x5000n, 'fault']]) })
    assert.equal(r.errno, 'EFAULT')
  })
})

describe('iommufd IOAS_IOVA_RANGES (§3.5)', () => {
  it('a fresh IOAS reports the full range and alignment 1', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.deepEqual(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`), { num_iovas: '1', out_iova_alignment: '0x1', allowed_iovas: '0x0,0xffffffffffffffff' })
  })

  it('after an SMMUv3 device attaches: the MSI window 0x8000000-0x80fffff is cut out and the 48-bit aperture ends the range', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.deepEqual(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`), {
      num_iovas: '2',
      out_iova_alignment: '0x1000',
      allowed_iovas: '0x0,0x7ffffff,0x8100000,0xffffffffffff',
    })
  })

  it('after a VT-d device attaches: the interrupt window 0xfee00000-0xfeefffff is cut out, 48-bit aperture', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.equal(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`).allowed_iovas, '0x0,0xfedfffff,0xfef00000,0xffffffffffff')
  })

  it('an attached device narrows IOVA_RANGES to the holes between its reserved ranges, whatever the allowed list', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x100000,0x1fffff`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.equal(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`).allowed_iovas, '0x0,0x7ffffff,0x8100000,0xffffffffffff')
  })

  it('a device attached to an SMMUv3 nested HWPT (vIOMMU path) still narrows the parent\'s IOAS', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} data_type=ARM_SMMUV3 data.ste=0x9,0x0`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
    assert.equal(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`).allowed_iovas, '0x0,0x7ffffff,0x8100000,0xffffffffffff')
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x1000 length=0x1000 iova=0x8000000`, 'EINVAL', /reserved/)
  })

  it('a device attached to a VT-d nested HWPT still narrows the parent\'s IOAS', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data.pgtbl_addr=0x1000 data.addr_width=48`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
    assert.equal(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`).allowed_iovas, '0x0,0xfedfffff,0xfef00000,0xffffffffffff')
  })

  it('the ranges widen again when the last device detaches', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    assert.deepEqual(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`), { num_iovas: '1', out_iova_alignment: '0x1', allowed_iovas: '0x0,0xffffffffffffffff' })
  })

  it('a too small array: EMSGSIZE, num_iovas written back with the total, what fits is filled', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    const msg = t.err(`IOAS_IOVA_RANGES ioas_id=${ioas} num_iovas=1`, 'EMSGSIZE')
    assert.match(msg, /written back: num_iovas=2 out_iova_alignment=0x1000/)
    const r = t.ioctl('IOAS_IOVA_RANGES', { ioas_id: BigInt(ioas), num_iovas: 1n, allowed_iovas: 0x9000n })
    assert.equal(r.errno, 'EMSGSIZE')
    const out = t.out('IOAS_IOVA_RANGES', r)
    assert.equal(out.num_iovas, 2n)
    assert.equal(out.out_iova_alignment, 0x1000n)
    assert.deepEqual(r.written.get(0x9000n), u64s(0n, 0x7ffffffn))
  })

  it('num_iovas=0 is a pure count query: EMSGSIZE with num_iovas=1 on a fresh IOAS', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const r = t.ioctl('IOAS_IOVA_RANGES', { ioas_id: BigInt(ioas), num_iovas: 0n, allowed_iovas: 0n })
    assert.equal(r.errno, 'EMSGSIZE')
    assert.equal(t.out('IOAS_IOVA_RANGES', r).num_iovas, 1n)
    assert.equal(r.written.size, 0)
  })

  it('__reserved != 0 is EOPNOTSUPP; an unknown IOAS is ENOENT', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`IOAS_IOVA_RANGES ioas_id=${ioas} __reserved=1`, 'EOPNOTSUPP')
    t.err(`IOAS_IOVA_RANGES ioas_id=${ioas + 1}`, 'ENOENT')
  })
})

describe('iommufd IOAS_MAP (§3.6, rows in check order)', () => {
  /** An IOAS with a paging HWPT on an SMMUv3 device attached: alignment 4 KiB, MSI window and aperture reserved. */
  function attached(): { t: IommuBench; ioas: number } {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    return { t, ioas }
  }

  it('a fixed mapping is recorded with its user address and permissions', () => {
    const { t, ioas } = attached()
    assert.deepEqual(t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|${RW} user_va=0x7f0000000000 length=0x4000 iova=0x100000`), { iova: '0x100000' })
    const d = t.describe(ioas)
    assert.equal(d.get('mappings'), '1')
    assert.equal(d.get('map0'), 'iova=0x100000 length=0x4000 user_va=0x7f0000000000 rw')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x7f0000100000 length=0x1000 iova=0x200000`)
    assert.equal(t.describe(ioas).get('map1'), 'iova=0x200000 length=0x1000 user_va=0x7f0000100000 r-')
  })

  it('an allocated IOVA is never 0, and is aligned like the user address', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const first = t.ok(`IOAS_MAP ioas_id=${ioas} flags=${RW} user_va=0x1000 length=0x1000`).iova
    assert.equal(first, '0x1000')
    const second = BigInt(t.ok(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x7f0000200000 length=0x200000`).iova)
    assert.equal(second % 0x200000n, 0n)
    assert.notEqual(second, 0n)
  })

  it('an allocated IOVA keeps the user address\'s offset in its page, after aligning the hole up (iopt_alloc_iova)', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    // alignment min(length 0x100, lowest bit 0x10) = 0x10: PAGE_SIZE aligned up, then | 0x10
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=${RW} user_va=0x7f0000000010 length=0x100`).iova, '0x1010')
    // the next hole starts at 0x1110: aligned up to 0x1110, | 0x30 = 0x1130
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=${RW} user_va=0x7f0000000030 length=0x10`).iova, '0x1130')
  })

  it('an allocated IOVA is aligned to at most a huge page (2 MiB), however aligned the user address and long the length', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=${RW} user_va=0x40000000 length=0x800000`).iova, '0x200000')
  })

  it('an allocated IOVA stays inside the allowed list', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x40000000,0x4fffffff`)
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=${RW} user_va=0x1000 length=0x1000`).iova, '0x40000000')
  })

  it('row 1: unknown flags or __reserved != 0 -> EOPNOTSUPP (even with every later row also failing)', () => {
    const t = new IommuBench()
    t.err('IOAS_MAP ioas_id=99 flags=0x8 user_va=0 length=0xffffffffffffffff iova=0xffffffffffffffff', 'EOPNOTSUPP', /flags/)
    t.err('IOAS_MAP ioas_id=99 flags=0 __reserved=1 user_va=0 length=0xffffffffffffffff', 'EOPNOTSUPP', /__reserved/)
  })

  it('row 2: iova or length >= ULONG_MAX -> EOVERFLOW (before the R/W and IOAS checks)', () => {
    const t = new IommuBench()
    t.err('IOAS_MAP ioas_id=99 flags=FIXED_IOVA user_va=0x1000 length=0x1000 iova=0xffffffffffffffff', 'EOVERFLOW', /iova/)
    t.err('IOAS_MAP ioas_id=99 flags=0 user_va=0x1000 length=0xffffffffffffffff', 'EOVERFLOW', /length/)
  })

  it('row 3: neither READABLE nor WRITEABLE -> EINVAL (before the IOAS lookup)', () => {
    const t = new IommuBench()
    t.err('IOAS_MAP ioas_id=99 flags=FIXED_IOVA user_va=0x1000 length=0 iova=0x1000', 'EINVAL', /READABLE or WRITEABLE/)
  })

  it('row 4: an unknown IOAS -> ENOENT (before the length checks)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    t.err('IOAS_MAP ioas_id=99 flags=READABLE user_va=0x1000 length=0', 'ENOENT', /ioas_id=99/)
    t.err(`IOAS_MAP ioas_id=${dev} flags=READABLE user_va=0x1000 length=0x1000`, 'ENOENT')
  })

  it('row 5: length 0, or iova/length not aligned to iova_alignment -> EINVAL', () => {
    const { t, ioas } = attached()
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x1000 length=0`, 'EINVAL', /length=0/)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x1000 length=0x800`, 'EINVAL', /length=0x800/)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x100800`, 'EINVAL', /iova=0x100800/)
  })

  it('row 5 with the user address also unusable: the length check comes first (EINVAL, not EFAULT)', () => {
    const { t, ioas } = attached()
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0 length=0`, 'EINVAL', /length/)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0 length=0x800`, 'EINVAL', /length/)
  })

  it('before any domain exists the alignment is 1 byte: an odd length maps', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x801 iova=0x10001`).iova, '0x10001')
  })

  it('row 6: iova + length - 1 overflows -> EOVERFLOW (before the reserved-region check)', () => {
    const { t, ioas } = attached()
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x2000 iova=0xfffffffffffff000`, 'EOVERFLOW')
  })

  it('row 7: a fixed range that hits a reserved region -> EINVAL (MSI window, beyond the aperture)', () => {
    const { t, ioas } = attached()
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x2000 iova=0x80ff000`, 'EINVAL', /reserved/)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x1000000000000`, 'EINVAL', /reserved/)
  })

  it('row 8: a fixed range overlapping a mapping -> EEXIST', () => {
    const { t, ioas } = attached()
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x4000 iova=0x100000`)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x103000`, 'EEXIST', /0x100000/)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x2000 iova=0xff000`, 'EEXIST')
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x104000`).iova, '0x104000')
  })

  it('row 9: automatic allocation with no hole -> ENOSPC', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x10000,0x17fff`)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x1000 length=0x4000`)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x1000 length=0x8000`, 'ENOSPC')
  })

  it('row 10: user pages that cannot be pinned (user_va 0) -> EFAULT, last', () => {
    const { t, ioas } = attached()
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0 length=0x1000`, 'EFAULT', /user_va/)
  })

  it('row 10 needs a domain to fill: with none nothing is pinned and user_va 0 maps', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE user_va=0 length=0x1000 iova=0x10000`).iova, '0x10000')
  })

  it('VT-d erratum 772415: a read-only mapping into an IOAS under a VT-d NEST_PARENT HWPT is EINVAL (§6.1)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.err(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x1000 length=0x1000`, 'EINVAL', /ERRATA_772415/)
    assert.equal(t.ok(`IOAS_MAP ioas_id=${ioas} flags=READABLE|WRITEABLE user_va=0x1000 length=0x1000`).iova, '0x1000')
  })
})

describe('iommufd IOAS_MAP_FILE (§3.16): the file\'s end is checked when a domain pins its pages', () => {
  let dir: string
  let file: string
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'map-file-'))
    file = path.join(dir, 'ram')
    fs.writeFileSync(file, Buffer.alloc(0x2000))
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('with no domain nothing is pinned: a range past the end maps, and the first attach is EINVAL', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE path=${file} start=0x1000 length=0x2000 iova=0x100000`)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`, 'EINVAL', /beyond the end of the file \(0x2000 bytes\)/)
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x2000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
  })

  it('with a domain the pages are pinned at once: a range past the end is EINVAL', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    t.err(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE path=${file} start=0x1000 length=0x2000 iova=0x100000`, 'EINVAL', /beyond the end of the file/)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE path=${file} start=0x1000 length=0x1000 iova=0x100000`)
  })
})

describe('iommufd IOAS_UNMAP (§3.7)', () => {
  function mapped(): { t: IommuBench; ioas: number } {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|${RW} user_va=0x10000 length=0x2000 iova=0x100000`)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|${RW} user_va=0x20000 length=0x1000 iova=0x200000`)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|${RW} user_va=0x30000 length=0x3000 iova=0x300000`)
    return { t, ioas }
  }

  it('unmaps a whole area and writes back the bytes unmapped', () => {
    const { t, ioas } = mapped()
    assert.deepEqual(t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x2000`), { length: '0x2000' })
    assert.equal(t.describe(ioas).get('mappings'), '2')
  })

  it('a range covering several whole areas and the holes between them unmaps them all', () => {
    const { t, ioas } = mapped()
    assert.equal(t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x203000`).length, '0x6000')
    assert.equal(t.describe(ioas).get('mappings'), '0')
  })

  it('cutting an area is ENOENT: areas are unmapped whole', () => {
    const { t, ioas } = mapped()
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x1000`, 'ENOENT', /partly/)
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0x101000 length=0x1000`, 'ENOENT', /partly/)
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x201000`, 'ENOENT', /0x300000/)
  })

  it('nothing mapped in the range is ENOENT', () => {
    const { t, ioas } = mapped()
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0x400000 length=0x1000`, 'ENOENT', /nothing is mapped/)
  })

  it('iova=0 length=U64_MAX unmaps everything and writes back the total', () => {
    const { t, ioas } = mapped()
    assert.equal(t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0 length=${U64_MAX}`).length, '0x6000')
    assert.equal(t.describe(ioas).get('mappings'), '0')
    assert.equal(t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0 length=0xffffffffffffffff`).length, '0x0')
  })

  it('iova or length >= ULONG_MAX (other than unmap-all) is EOVERFLOW; length 0 is EINVAL; unknown IOAS is ENOENT', () => {
    const { t, ioas } = mapped()
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0xffffffffffffffff length=0x1000`, 'EOVERFLOW')
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0x1000 length=0xffffffffffffffff`, 'EOVERFLOW')
    t.err(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0`, 'EINVAL')
    t.err(`IOAS_UNMAP ioas_id=${ioas + 1} iova=0 length=0xffffffffffffffff`, 'ENOENT')
  })
})

describe('iommufd IOAS_COPY (§3.4)', () => {
  function two(): { t: IommuBench; src: number; dst: number } {
    const t = new IommuBench()
    const src = t.id('IOAS_ALLOC', 'out_ioas_id')
    const dst = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP ioas_id=${src} flags=FIXED_IOVA|${RW} user_va=0x7f0000000000 length=0x4000 iova=0x100000`)
    return { t, src, dst }
  }

  it('copies an exact mapping to a fixed IOVA in another IOAS, sharing the user pages', () => {
    const { t, src, dst } = two()
    assert.deepEqual(t.ok(`IOAS_COPY flags=FIXED_IOVA|READABLE dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 dst_iova=0x900000 src_iova=0x100000`), { dst_iova: '0x900000' })
    assert.equal(t.describe(dst).get('map0'), 'iova=0x900000 length=0x4000 user_va=0x7f0000000000 r-')
    assert.equal(t.describe(src).get('mappings'), '1')
  })

  it('without FIXED_IOVA the destination IOVA is allocated and written back (never 0)', () => {
    const { t, src, dst } = two()
    const iova = BigInt(t.ok(`IOAS_COPY flags=${RW} dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 src_iova=0x100000`).dst_iova)
    assert.ok(iova >= 0x1000n)
    assert.equal(t.describe(dst).get('mappings'), '1')
  })

  it('errors: flags EOPNOTSUPP, addresses EOVERFLOW, no R/W EINVAL, IOAS ENOENT, source hole ENOENT, overlap EEXIST', () => {
    const { t, src, dst } = two()
    t.err(`IOAS_COPY flags=0x10 dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 src_iova=0x100000`, 'EOPNOTSUPP')
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 src_iova=0xffffffffffffffff`, 'EOVERFLOW')
    t.err(`IOAS_COPY flags=FIXED_IOVA dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 src_iova=0x100000`, 'EINVAL')
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=${dst} src_ioas_id=9 length=0x4000 src_iova=0x100000`, 'ENOENT')
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=9 src_ioas_id=${src} length=0x4000 src_iova=0x100000`, 'ENOENT')
    // the source range is checked before the destination is looked up
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=9 src_ioas_id=${src} length=0 src_iova=0x100000`, 'EINVAL', /length=0/)
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=9 src_ioas_id=${src} length=0x2000 src_iova=0xfffffffffffff000`, 'EOVERFLOW', /src_iova/)
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=${dst} src_ioas_id=${src} length=0x8000 src_iova=0x100000`, 'ENOENT')
    t.err(`IOAS_COPY flags=READABLE dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 src_iova=0x200000`, 'ENOENT')
    t.ok(`IOAS_MAP ioas_id=${dst} flags=FIXED_IOVA|READABLE user_va=0x1000 length=0x1000 iova=0x900000`)
    t.err(`IOAS_COPY flags=FIXED_IOVA|READABLE dst_ioas_id=${dst} src_ioas_id=${src} length=0x4000 dst_iova=0x8ff000 src_iova=0x100000`, 'EEXIST')
  })
})

describe('iommufd OPTION (§3.8)', () => {
  it('RLIMIT_MODE: GET 0 on a fresh context; SET 1 with no object; GET 1', () => {
    const t = new IommuBench()
    assert.deepEqual(t.ok('OPTION option_id=RLIMIT_MODE op=GET'), { val64: '0' })
    assert.deepEqual(t.ok('OPTION option_id=RLIMIT_MODE op=SET val64=1'), { val64: '1' })
    assert.deepEqual(t.ok('OPTION option_id=0 op=1'), { val64: '1' })
  })

  it('RLIMIT_MODE: SET while an object exists is EBUSY; val64 other than 0/1 EINVAL; object_id != 0 EOPNOTSUPP', () => {
    const t = new IommuBench()
    t.err('OPTION option_id=RLIMIT_MODE op=SET val64=2', 'EINVAL', /val64=2/)
    t.err('OPTION option_id=RLIMIT_MODE op=GET object_id=1', 'EOPNOTSUPP', /object_id/)
    t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err('OPTION option_id=RLIMIT_MODE op=SET val64=1', 'EBUSY')
    assert.equal(t.ok('OPTION option_id=RLIMIT_MODE op=GET').val64, '0')
  })

  it('HUGE_PAGES: GET 1 by default, SET 0, GET 0', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.equal(t.ok(`OPTION option_id=HUGE_PAGES op=GET object_id=${ioas}`).val64, '1')
    t.ok(`OPTION option_id=HUGE_PAGES op=SET object_id=${ioas} val64=0`)
    assert.equal(t.ok(`OPTION option_id=HUGE_PAGES op=GET object_id=${ioas}`).val64, '0')
    assert.equal(t.describe(ioas).get('huge_pages'), '0')
  })

  it('HUGE_PAGES: unknown IOAS ENOENT; val64 2 EINVAL', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err(`OPTION option_id=HUGE_PAGES op=GET object_id=${ioas + 1}`, 'ENOENT')
    t.err(`OPTION option_id=HUGE_PAGES op=SET object_id=${ioas} val64=2`, 'EINVAL')
    // the IOAS is looked up before op is read
    t.err(`OPTION option_id=HUGE_PAGES op=2 object_id=${ioas + 1}`, 'ENOENT')
    t.err(`OPTION option_id=HUGE_PAGES op=2 object_id=${ioas}`, 'EOPNOTSUPP', /op=2/)
  })

  it('unknown option, unknown op or __reserved != 0: EOPNOTSUPP', () => {
    const t = new IommuBench()
    t.err('OPTION option_id=2 op=GET', 'EOPNOTSUPP', /option_id=2/)
    t.err('OPTION option_id=RLIMIT_MODE op=2', 'EOPNOTSUPP', /op=2/)
    t.err('OPTION option_id=RLIMIT_MODE op=GET __reserved=1', 'EOPNOTSUPP')
  })

  it('only val64 is written back, and only on success', () => {
    const t = new IommuBench()
    const ok = t.ioctl('OPTION', { option_id: 0n, op: 1n, object_id: 0n, val64: 77n })
    assert.equal(ok.errno, undefined)
    assert.equal(t.out('OPTION', ok).val64, 0n)
    const bad = t.ioctl('OPTION', { option_id: 0n, op: 0n, object_id: 0n, val64: 5n })
    assert.equal(bad.errno, 'EINVAL')
    assert.equal(bad.struct, undefined)
  })
})

describe('iommufd VFIO_IOAS (§3.9)', () => {
  it('GET with no compat IOAS is ENODEV; SET then GET returns it; CLEAR then GET is ENODEV again', () => {
    const t = new IommuBench()
    t.err('VFIO_IOAS op=GET', 'ENODEV')
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err('VFIO_IOAS op=GET', 'ENODEV')
    assert.deepEqual(t.ok(`VFIO_IOAS op=SET ioas_id=${ioas}`), { ioas_id: String(ioas) })
    assert.deepEqual(t.ok('VFIO_IOAS op=GET'), { ioas_id: String(ioas) })
    t.ok('VFIO_IOAS op=CLEAR')
    t.err('VFIO_IOAS op=GET', 'ENODEV')
  })

  it('SET of an unknown IOAS is ENOENT; unknown op or __reserved EOPNOTSUPP', () => {
    const t = new IommuBench()
    t.err('VFIO_IOAS op=SET ioas_id=4', 'ENOENT')
    t.err('VFIO_IOAS op=3', 'EOPNOTSUPP')
    t.err('VFIO_IOAS op=GET __reserved=1', 'EOPNOTSUPP')
  })

  it('destroying the compat IOAS clears it', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`VFIO_IOAS op=SET ioas_id=${ioas}`)
    t.ok(`DESTROY id=${ioas}`)
    t.err('VFIO_IOAS op=GET', 'ENODEV')
  })
})

describe('iommufd IOAS_CHANGE_PROCESS (§3.19)', () => {
  it('succeeds with no mappings; __reserved != 0 is EOPNOTSUPP', () => {
    const t = new IommuBench()
    t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.deepEqual(t.ok('IOAS_CHANGE_PROCESS'), {})
    t.err('IOAS_CHANGE_PROCESS __reserved=1', 'EOPNOTSUPP')
  })

  it('a mapping not made with MAP_FILE makes it EINVAL, and nothing changes', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=READABLE user_va=0x1000 length=0x1000`)
    t.err('IOAS_CHANGE_PROCESS', 'EINVAL', /IOAS_MAP_FILE/)
  })
})
