/**
 * IOMMU_TEST_CMD and the mock IOMMU in-process (through the dispatcher, as
 * frames carry them): every op, its errno paths in the kernel's order, the
 * mock's constants, pin counting, dirty bits, and that mock ops cannot touch
 * SMMUv3/VT-d objects. Also the core rules the selftest exposed: IOAS_COPY
 * of any sub-range, HUGE_PAGES=0 alignment, VT-d domain IDs from 2.
 */
import { strict as assert } from 'node:assert'
import { IoctlReply, dispatch } from '../../src/uapi/dispatch'
import { StructValue, decode, encode } from '../../src/uapi/layout'
import { TEST_CMD_UNION } from '../../src/uapi/structs'
import { DEV, IommuBench, U64_MAX, dumpWorld, failingAt } from '../helpers/iommufd'
import { failNth } from '../../src/util/fail-nth'

const MIB = 1n << 20n
const APERTURE_START = 16n * MIB
const APERTURE_LAST = (1n << 31n) - 1n
const Op = { ADD_RESERVED: 1, MOCK_DOMAIN: 2, MD_CHECK_MAP: 3, MD_CHECK_REFS: 4, SET_TEMP_MEMORY_LIMIT: 9, MOCK_DOMAIN_REPLACE: 10, MOCK_DOMAIN_FLAGS: 12, DIRTY: 13, MD_CHECK_IOTLB: 14, DEV_CHECK_CACHE: 16 }
const BUF = 0x7f0000000000n

/** A test command: `member` names the union member `values` fill. */
function cmd(t: IommuBench, op: number, id: number, member?: keyof typeof TEST_CMD_UNION, values: StructValue = {}, buffers = new Map<bigint, Buffer | 'fault'>()): IoctlReply {
  const raw = Buffer.alloc(48)
  if (member) encode(TEST_CMD_UNION[member], values).copy(raw)
  const payload = Array.from({ length: 6 }, (_, i) => raw.readBigUInt64LE(i * 8))
  return t.ioctl('IOMMU_TEST_CMD', { op: BigInt(op), id: BigInt(id), payload }, { buffers })
}

/** The union member of a reply, decoded. */
function member(t: IommuBench, reply: IoctlReply, name: keyof typeof TEST_CMD_UNION): StructValue {
  const words = t.out('IOMMU_TEST_CMD', reply).payload as bigint[]
  const raw = Buffer.alloc(48)
  words.forEach((w, i) => raw.writeBigUInt64LE(w, i * 8))
  return decode(TEST_CMD_UNION[name], raw)
}

function mockDomain(t: IommuBench, ptId: number, flags = 0): { stdev: number; hwpt: number; idev: number } {
  const r = flags ? cmd(t, Op.MOCK_DOMAIN_FLAGS, ptId, 'mock_domain_flags', { dev_flags: BigInt(flags) }) : cmd(t, Op.MOCK_DOMAIN, ptId)
  assert.equal(r.errno, undefined, r.message)
  const m = member(t, r, 'mock_domain')
  return { stdev: Number(m.out_stdev_id), hwpt: Number(m.out_hwpt_id), idev: Number(m.out_idev_id) }
}

describe('IOMMU_TEST_CMD: the mock IOMMU', () => {
  let t: IommuBench
  let ioas: number
  beforeEach(() => {
    t = new IommuBench()
    ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  })

  it('is 0x3ba0 with a 72-byte struct whose minimum size ends at last (68); an unknown op is EOPNOTSUPP', () => {
    const r = t.ioctl('IOMMU_TEST_CMD', { op: 99n })
    assert.equal(r.ioctl?.cmd, 0x3ba0)
    assert.equal(r.ioctl?.layout.size, 72)
    assert.equal(r.ioctl?.minSize, 68)
    assert.equal(r.errno, 'EOPNOTSUPP')
    assert.equal(t.ioctl('IOMMU_TEST_CMD', { size: 64n, op: 1n }).errno, 'EINVAL')
  })

  it('MOCK_DOMAIN: stdev, idev and auto HWPT IDs in that order; the IOAS takes the aperture and 2 KiB alignment', () => {
    const d = mockDomain(t, ioas)
    assert.deepEqual([d.stdev, d.idev, d.hwpt], [ioas + 1, ioas + 2, ioas + 3])
    assert.equal(t.objects(), `1:ioas 2:selftest 3:device 4:hwpt_paging`)
    const r = t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`)
    assert.equal(r.num_iovas, '1')
    assert.equal(r.allowed_iovas, `0x${APERTURE_START.toString(16)},0x${APERTURE_LAST.toString(16)}`)
    assert.equal(r.out_iova_alignment, '0x800')
    const info = t.ok(`GET_HW_INFO dev_id=${d.idev}`)
    assert.equal(info.out_data_type, String(0xfeedbeef))
    assert.equal(info.out_capabilities, '0x1')
  })

  it('MOCK_DOMAIN errors: unknown device flags EINVAL, a missing pt ENOENT; nothing is left behind', () => {
    assert.equal(cmd(t, Op.MOCK_DOMAIN_FLAGS, ioas, 'mock_domain_flags', { dev_flags: 8n }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.MOCK_DOMAIN, 99).errno, 'ENOENT')
    assert.equal(t.objects(), '1:ioas')
    assert.equal(t.world.machine.mock.devices.length, 0)
  })

  it('destroying the selftest object unbinds and removes its device; the auto domain goes with it', () => {
    const d = mockDomain(t, ioas)
    assert.equal(t.err(`DESTROY id=${ioas}`, 'EBUSY'), `id=${ioas}: ioas still has 1 user`)
    t.ok(`DESTROY id=${d.stdev}`)
    assert.equal(t.objects(), '1:ioas')
    assert.equal(t.world.machine.mock.devices.length, 0)
    t.ok(`DESTROY id=${ioas}`)
  })

  it('MOCK_DOMAIN_REPLACE moves the device to a HWPT and back to the IOAS (a new auto domain)', () => {
    const d = mockDomain(t, ioas)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${d.idev} pt_id=${ioas}`, 'out_hwpt_id')
    let r = cmd(t, Op.MOCK_DOMAIN_REPLACE, d.stdev, 'mock_domain_replace', { pt_id: BigInt(hwpt) })
    assert.equal(member(t, r, 'mock_domain_replace').pt_id, BigInt(hwpt))
    assert.equal(t.ctx.objects.find(d.hwpt), undefined, 'the replaced auto domain is freed')
    r = cmd(t, Op.MOCK_DOMAIN_REPLACE, d.stdev, 'mock_domain_replace', { pt_id: BigInt(ioas) })
    assert.notEqual(member(t, r, 'mock_domain_replace').pt_id, BigInt(hwpt))
    assert.equal(cmd(t, Op.MOCK_DOMAIN_REPLACE, d.idev, 'mock_domain_replace', { pt_id: BigInt(ioas) }).errno, 'ENOENT')
  })

  it('ADD_RESERVED: length 0 EINVAL, overflow EOVERFLOW, over a mapping EADDRINUSE; the range leaves IOVA_RANGES and refuses maps', () => {
    assert.equal(cmd(t, Op.ADD_RESERVED, ioas, 'add_reserved', { start: 0x1000n, length: 0n }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.ADD_RESERVED, ioas, 'add_reserved', { start: U64_MAX, length: 2n }).errno, 'EOVERFLOW')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x100000 length=0x1000 user_va=${BUF}`)
    assert.equal(cmd(t, Op.ADD_RESERVED, ioas, 'add_reserved', { start: 0x100000n, length: 0x1000n }).errno, 'EADDRINUSE')
    assert.equal(cmd(t, Op.ADD_RESERVED, ioas, 'add_reserved', { start: 0x200000n, length: 0x1000n }).errno, undefined)
    assert.match(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`).allowed_iovas, /^0x0,0x1fffff,0x201000,0xffffffffffffffff$/)
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x200000 length=0x1000 user_va=${BUF}`, 'EINVAL', /reserved/)
    t.err(`IOAS_ALLOW_IOVAS ioas_id=${ioas} allowed_iovas=0x200000,0x2fffff`, 'EADDRINUSE')
  })

  it('MD_CHECK_MAP compares each 2 KiB page with the user address; misalignment and mismatch are EINVAL', () => {
    const d = mockDomain(t, ioas)
    const iova = APERTURE_START
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE iova=${iova} length=0x4000 user_va=${BUF}`)
    assert.equal(cmd(t, Op.MD_CHECK_MAP, d.hwpt, 'check_map', { iova, length: 0x4000n, uptr: BUF }).errno, undefined)
    assert.equal(cmd(t, Op.MD_CHECK_MAP, d.hwpt, 'check_map', { iova: iova + 0x800n, length: 0x800n, uptr: BUF + 0x800n }).errno, undefined)
    assert.equal(cmd(t, Op.MD_CHECK_MAP, d.hwpt, 'check_map', { iova, length: 0x800n, uptr: BUF + 0x800n }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.MD_CHECK_MAP, d.hwpt, 'check_map', { iova: iova + 1n, length: 0x800n, uptr: BUF }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.MD_CHECK_MAP, d.hwpt, 'check_map', { iova: iova + 0x4000n, length: 0x800n, uptr: BUF + 0x4000n }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.MD_CHECK_MAP, ioas, 'check_map', { iova, length: 0x800n, uptr: BUF }).errno, 'ENOENT')
  })

  it('MD_CHECK_REFS counts one pin per mapping in an IOAS with a domain; copies share it; a mismatch is EIO', () => {
    const refs = (n: number, len = 0x4000n): string | undefined => cmd(t, Op.MD_CHECK_REFS, 0, 'check_refs', { length: len, uptr: BUF, refs: BigInt(n) }).errno
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=${APERTURE_START} length=0x4000 user_va=${BUF}`)
    assert.equal(refs(0), undefined, 'no domain: nothing pinned')
    const d = mockDomain(t, ioas)
    assert.equal(refs(1), undefined)
    assert.equal(refs(0), 'EIO')
    const other = t.id('IOAS_ALLOC', 'out_ioas_id')
    mockDomain(t, other)
    t.ok(`IOAS_COPY src_ioas_id=${ioas} dst_ioas_id=${other} src_iova=${APERTURE_START} length=0x4000 flags=READABLE`)
    assert.equal(refs(1), undefined, 'a copy shares the pages')
    t.ok(`IOAS_MAP ioas_id=${other} flags=READABLE length=0x1000 user_va=${BUF}`)
    assert.equal(refs(2, 0x1000n), undefined, 'a second IOAS_MAP pins again')
    assert.equal(cmd(t, Op.MD_CHECK_REFS, 0, 'check_refs', { length: 0x800n, uptr: BUF, refs: 0n }).errno, 'EINVAL')
    t.ok(`DESTROY id=${d.stdev}`)
  })

  it('SET_TEMP_MEMORY_LIMIT refuses less than 12', () => {
    assert.equal(cmd(t, Op.SET_TEMP_MEMORY_LIMIT, 0, 'memory_limit', { limit: 11n }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.SET_TEMP_MEMORY_LIMIT, 0, 'memory_limit', { limit: 65536n }).errno, undefined)
  })

  it('nested SELFTEST domains: data errors, the 4 IOTLB slots, invalidation with partial counts', () => {
    const d = mockDomain(t, ioas)
    const parent = t.id(`HWPT_ALLOC dev_id=${d.idev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const data = Buffer.alloc(4)
    data.writeUInt32LE(0xbadbeef)
    const nested = (len: number, type = 0xdead, ptr = 0x5000n): IoctlReply =>
      t.ioctl('IOMMU_HWPT_ALLOC', { dev_id: BigInt(d.idev), pt_id: BigInt(parent), data_type: BigInt(type), data_len: BigInt(len), data_uptr: ptr }, { buffers: new Map([[0x5000n, data]]) })
    assert.equal(nested(4, 0xdeae).errno, 'EOPNOTSUPP')
    assert.equal(nested(3).errno, 'EINVAL')
    assert.equal(nested(4, 0xdead, 0n).errno, 'EFAULT')
    const r = nested(4)
    const id = Number(t.out('IOMMU_HWPT_ALLOC', r).out_hwpt_id)
    const iotlb = (slot: number, v: number): string | undefined => cmd(t, Op.MD_CHECK_IOTLB, id, 'check_iotlb', { id: BigInt(slot), iotlb: BigInt(v) }).errno
    for (let i = 0; i < 4; i++) assert.equal(iotlb(i, 0xbadbeef), undefined)
    assert.equal(iotlb(4, 0xbadbeef), 'EINVAL')
    assert.equal(cmd(t, Op.MD_CHECK_IOTLB, parent, 'check_iotlb', { id: 0n, iotlb: 0n }).errno, 'ENOENT')
    const entries = Buffer.alloc(16)
    entries.writeUInt32LE(0, 0) // flags
    entries.writeUInt32LE(1, 4) // slot 1
    entries.writeUInt32LE(0xff, 8) // bad flags
    // entry 0 is done before entry 1 fails: a partial success, so the state changes (not t.ioctl, which forbids that)
    const io = t.ioctl('IOMMU_HWPT_INVALIDATE', { hwpt_id: 0n }).ioctl!
    const inv = dispatch({ ctx: t.ctx }, { cmd: io.cmd, struct: encode(io.layout, { size: BigInt(io.layout.size), hwpt_id: BigInt(id), data_uptr: 0x6000n, data_type: 0xdeadbeefn, entry_len: 8n, entry_num: 2n }), buffers: new Map([[0x6000n, entries]]) })
    assert.equal(inv.errno, 'EOPNOTSUPP')
    assert.equal(t.out('IOMMU_HWPT_INVALIDATE', inv).entry_num, 1n)
    assert.equal(iotlb(1, 0), undefined)
    assert.equal(iotlb(0, 0xbadbeef), undefined)
    const bad = t.ioctl('IOMMU_HWPT_INVALIDATE', { hwpt_id: BigInt(id), data_uptr: 0x6000n, data_type: 0xdeadbeefn, entry_len: 9n, entry_num: 1n }, { buffers: new Map([[0x6000n, entries]]) })
    assert.equal(bad.errno, 'EINVAL')
  })

  it('dirty tracking: NO_DIRTY devices refuse it (alloc EOPNOTSUPP, attach EINVAL); DIRTY marks mapped pages; the bitmap reads and clears them', () => {
    const plain = mockDomain(t, ioas, 1)
    t.err(`HWPT_ALLOC dev_id=${plain.idev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'EOPNOTSUPP')
    assert.equal(t.ok(`GET_HW_INFO dev_id=${plain.idev}`).out_capabilities, '0x0')
    const d = mockDomain(t, ioas)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${d.idev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    assert.equal(cmd(t, Op.MOCK_DOMAIN_REPLACE, plain.stdev, 'mock_domain_replace', { pt_id: BigInt(hwpt) }).errno, 'EINVAL')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE iova=${APERTURE_START} length=0x4000 user_va=${BUF}`)
    const bits = Buffer.from([0b1000_0101])
    const dirty = (): IoctlReply => cmd(t, Op.DIRTY, hwpt, 'dirty', { iova: APERTURE_START, length: 0x4000n, page_size: 0x800n, uptr: 0x9000n }, new Map([[0x9000n, bits]]))
    assert.equal(dirty().errno, 'EINVAL', 'tracking off')
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${hwpt} flags=ENABLE`)
    assert.equal(member(t, dirty(), 'dirty').out_nr_dirty, 3n)
    assert.equal(cmd(t, Op.DIRTY, hwpt, 'dirty', { iova: APERTURE_START, length: 0x4000n, page_size: 0x800n, uptr: 0n }).errno, 'EINVAL')
    const read = (flags = 0n): Buffer => {
      const r = t.ioctl('IOMMU_HWPT_GET_DIRTY_BITMAP', { hwpt_id: BigInt(hwpt), flags, iova: APERTURE_START, length: 0x4000n, page_size: 0x800n, data: 0xa000n })
      assert.equal(r.errno, undefined, r.message)
      return r.written.get(0xa000n)!
    }
    assert.equal(read(1n)[0], 0b1000_0101, 'NO_CLEAR')
    assert.equal(read()[0], 0b1000_0101)
    assert.equal(read()[0], 0, 'read once, then clean')
  })

  it('mock ops leave SMMUv3 and VT-d objects alone: their domains are EINVAL, their IOAS may get a reserved range', () => {
    const dev = t.bind(DEV.vtdA)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    assert.equal(cmd(t, Op.MD_CHECK_MAP, hwpt, 'check_map', { iova: 0n, length: 0x800n, uptr: BUF }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.DEV_CHECK_CACHE, dev, 'check_dev_cache', { id: 0n, cache: 0xbaddadn }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.MOCK_DOMAIN_REPLACE, dev, 'mock_domain_replace', { pt_id: BigInt(ioas) }).errno, 'ENOENT')
    // a mock device cannot join a VT-d domain
    assert.equal(cmd(t, Op.MOCK_DOMAIN, hwpt).errno, 'EINVAL')
    assert.equal(t.ctx.deviceOf(t.pci(DEV.vtdA))?.hwpt, undefined)
  })

  it('accesses: pins need NEEDS_PIN_PAGES, ENOMEM above 16 MiB, EBADFD for a non-access, EPERM for a write to a read-only map, ENOENT for a hole; an unmap revokes items; the IOAS is busy meanwhile', () => {
    const create = (flags: bigint): number => Number(member(t, cmd(t, 5, ioas, 'create_access', { flags }), 'create_access').out_access_fd)
    const plain = create(0n)
    const pin = create(1n)
    assert.equal(cmd(t, 5, ioas, 'create_access', { flags: 2n }).errno, 'EOPNOTSUPP')
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x100000 length=0x4000 user_va=${BUF}`)
    const pages = (handle: number, values: StructValue): IoctlReply => cmd(t, 7, handle, 'access_pages', values)
    assert.equal(pages(plain, { iova: 0x100000n, length: 0x1000n }).errno, 'EOPNOTSUPP')
    assert.equal(pages(pin, { iova: 0x100000n, length: (16n << 20n) + 1n }).errno, 'ENOMEM')
    assert.equal(pages(ioas, { iova: 0x100000n, length: 0x1000n }).errno, 'EBADFD')
    assert.equal(pages(pin, { iova: 0x100000n, length: 0x1000n, flags: 1n }).errno, 'EPERM')
    assert.equal(pages(pin, { iova: 0x103000n, length: 0x2000n }).errno, 'ENOENT')
    const item = member(t, pages(pin, { iova: 0x101000n, length: 0x1000n, uptr: BUF + 0x1000n }), 'access_pages').out_access_pages_id
    assert.equal(cmd(t, Op.MD_CHECK_REFS, 0, 'check_refs', { length: 0x1000n, uptr: BUF + 0x1000n, refs: 1n }).errno, undefined)
    assert.equal(cmd(t, Op.MD_CHECK_REFS, 0, 'check_refs', { length: 0x1000n, uptr: BUF, refs: 0n }).errno, undefined)
    t.err(`DESTROY id=${ioas}`, 'EBUSY')
    t.err(`DESTROY id=${pin}`, 'ENOENT')
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x4000`)
    assert.equal(cmd(t, 6, pin, 'destroy_access_pages', { access_pages_id: item }).errno, 'ENOENT')
    assert.equal(cmd(t, Op.MD_CHECK_REFS, 0, 'check_refs', { length: 0x1000n, uptr: BUF + 0x1000n, refs: 0n }).errno, undefined)
    t.ok(`ACCESS_CLOSE handle=${pin}`)
    t.ok(`ACCESS_CLOSE handle=${plain}`)
    t.ok(`DESTROY id=${ioas}`)
  })

  it('a failed copy back to the caller takes MOCK_DOMAIN, CREATE_ACCESS and ACCESS_PAGES back, as the kernel\'s mock does: EFAULT and the world as before', () => {
    /** `run` with its copy of the struct to the caller failed (the earlier steps fail cleanly on the way there). */
    const copyOutFailed = (run: () => IoctlReply): IoctlReply => {
      for (let n = 1; ; n++) {
        failNth.arm(n)
        const r = run()
        const fired = failNth.disarm().fired
        if (fired === 'copy to user') return r
        assert.notEqual(fired, undefined, 'the command has a copy to the caller')
      }
    }
    const check = (what: string, run: () => IoctlReply): void => {
      const before = dumpWorld(t.world)
      assert.equal(copyOutFailed(run).errno, 'EFAULT', what)
      assert.equal(dumpWorld(t.world), before, what)
    }
    check('MOCK_DOMAIN', () => cmd(t, Op.MOCK_DOMAIN, ioas))
    check('CREATE_ACCESS', () => cmd(t, 5, ioas, 'create_access', { flags: 1n }))
    const pin = Number(member(t, cmd(t, 5, ioas, 'create_access', { flags: 1n }), 'create_access').out_access_fd)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x100000 length=0x1000 user_va=${BUF}`)
    check('ACCESS_PAGES', () => cmd(t, 7, pin, 'access_pages', { iova: 0x100000n, length: 0x1000n, uptr: BUF }))
    assert.equal(cmd(t, Op.MD_CHECK_REFS, 0, 'check_refs', { length: 0x1000n, uptr: BUF, refs: 0n }).errno, undefined, 'nothing stays pinned')
  })

  it('ACCESS_RW reads and writes the user memory behind the IOVAs (the frame carries it), across areas', () => {
    const access = Number(member(t, cmd(t, 5, ioas, 'create_access', {}), 'create_access').out_access_fd)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE iova=0x100000 length=0x1000 user_va=${BUF}`)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x101000 length=0x1000 user_va=${BUF + 0x10000n}`)
    const a = Buffer.alloc(0x1000, 1)
    const b = Buffer.alloc(0x1000, 2)
    const mem = new Map<bigint, Buffer | 'fault'>([[BUF, a], [BUF + 0x10000n, b], [0x5000n, Buffer.alloc(8, 9)]])
    const r = cmd(t, 8, access, 'access_rw', { iova: 0x100ffcn, length: 8n, uptr: 0x9000n }, mem)
    assert.equal(r.errno, undefined, r.message)
    assert.deepEqual([...r.written.get(0x9000n)!], [1, 1, 1, 1, 2, 2, 2, 2])
    const w = cmd(t, 8, access, 'access_rw', { iova: 0x100ff8n, length: 8n, uptr: 0x5000n, flags: 1n }, mem)
    assert.equal(w.errno, undefined, w.message)
    assert.deepEqual([...w.written.get(BUF + 0xff8n)!], [9, 9, 9, 9, 9, 9, 9, 9])
    assert.equal(cmd(t, 8, access, 'access_rw', { iova: 0x101000n, length: 8n, uptr: 0x5000n, flags: 1n }, mem).errno, 'EPERM')
    assert.equal(cmd(t, 8, access, 'access_rw', { iova: 0x100000n, length: 0n, uptr: 0x5000n }, mem).errno, 'EINVAL')
    assert.equal(cmd(t, 8, access, 'access_rw', { iova: 0x100000n, length: 8n, uptr: 0x5000n, flags: 2n }, mem).errno, 'EOPNOTSUPP')
  })

  it('fault queues: FAULT_ID_VALID needs one (ENOENT), TRIGGER_IOPF queues a 40-byte page request, reads take whole records (a count not a multiple of 40 is ESPIPE), a response needs a read cookie', () => {
    const d = mockDomain(t, ioas)
    const fa = t.ioctl('IOMMU_FAULT_QUEUE_ALLOC', {})
    assert.equal(fa.newFds?.[0].path, `sys/kernel/debug/iommufd/${t.ctx.id}/${ioas + 4}.fault/queue`)
    const faultId = Number(t.out('IOMMU_FAULT_QUEUE_ALLOC', fa).out_fault_id)
    assert.equal(t.ioctl('IOMMU_FAULT_QUEUE_ALLOC', { flags: 1n }).errno, 'EOPNOTSUPP')
    const parent = t.id(`HWPT_ALLOC dev_id=${d.idev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const data = Buffer.alloc(4)
    const nested = (faultIdValue: number): IoctlReply =>
      t.ioctl('IOMMU_HWPT_ALLOC', { flags: 4n, dev_id: BigInt(d.idev), pt_id: BigInt(parent), data_type: 0xdeadn, data_len: 4n, data_uptr: 0x5000n, fault_id: BigInt(faultIdValue) }, { buffers: new Map([[0x5000n, data]]) })
    assert.equal(nested(99).errno, 'ENOENT')
    const iopf = Number(t.out('IOMMU_HWPT_ALLOC', nested(faultId)).out_hwpt_id)
    t.err(`DESTROY id=${faultId}`, 'EBUSY')
    const trigger = (): IoctlReply => cmd(t, 15, 0, 'trigger_iopf', { dev_id: BigInt(d.idev), pasid: 0n, grpid: 7n, perm: 1n, addr: 0x1000n })
    assert.equal(trigger().errno, undefined, 'not attached to the IOPF HWPT: nothing is queued')
    const rep = cmd(t, Op.MOCK_DOMAIN_REPLACE, d.stdev, 'mock_domain_replace', { pt_id: BigInt(iopf) })
    assert.equal(rep.errno, undefined, rep.message)
    assert.equal(trigger().errno, undefined)
    assert.equal(trigger().errno, undefined)
    const fault = t.ctx.objects.find(faultId) as unknown as { read(len: number): Buffer; write(b: Buffer): number }
    assert.throws(() => fault.read(39), /multiple of 40/)
    assert.throws(() => fault.read(0), /a read of 0 bytes cannot hold the oldest fault group/, 'a count of 0 cannot hold the first group')
    const rec = fault.read(120)
    assert.equal(rec.length, 80, 'two whole records')
    assert.deepEqual([rec.readUInt32LE(0), rec.readUInt32LE(4), rec.readUInt32LE(12), rec.readUInt32LE(36), rec.readUInt32LE(76)], [2, d.idev, 7, 1, 2])
    assert.equal(fault.read(40).length, 0, 'empty')
    const resp = Buffer.alloc(8)
    resp.writeUInt32LE(3)
    assert.throws(() => fault.write(resp), /cookie=3: no page request awaits it/)
    resp.writeUInt32LE(2)
    assert.equal(fault.write(resp), 8)
    assert.equal(cmd(t, 15, ioas, 'trigger_iopf', { dev_id: BigInt(ioas) }).errno, 'ENOENT')
    // fail-nth at the request's group allocation: the kernel aborts it at the device; the command succeeds, nothing is queued
    assert.equal(failingAt('object allocation', trigger).errno, undefined)
    assert.equal(fault.read(40).length, 0)
    assert.equal(trigger().errno, undefined)
    assert.equal(fault.read(40).length, 40)
  })

  it('DEV_CHECK_CACHE: the 4 cache words start at 0xbaddad', () => {
    const d = mockDomain(t, ioas)
    assert.equal(cmd(t, Op.DEV_CHECK_CACHE, d.idev, 'check_dev_cache', { id: 3n, cache: 0xbaddadn }).errno, undefined)
    assert.equal(cmd(t, Op.DEV_CHECK_CACHE, d.idev, 'check_dev_cache', { id: 3n, cache: 0n }).errno, 'EINVAL')
    assert.equal(cmd(t, Op.DEV_CHECK_CACHE, d.idev, 'check_dev_cache', { id: 4n, cache: 0xbaddadn }).errno, 'EINVAL')
  })
})

describe('core rules the selftest exposes', () => {
  let t: IommuBench
  let ioas: number
  beforeEach(() => {
    t = new IommuBench()
    ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  })

  it('IOAS_COPY takes any sub-range of the areas; a hole anywhere is ENOENT', () => {
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x100000 length=0x3000 user_va=${BUF}`)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=0x103000 length=0x1000 user_va=${BUF + 0x10000n}`)
    const dst = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_COPY src_ioas_id=${ioas} dst_ioas_id=${dst} src_iova=0x101ff1 length=0x1800 dst_iova=0x500000 flags=FIXED_IOVA|READABLE`)
    const d = t.describe(dst)
    assert.equal(d.get('mappings'), '2')
    assert.match(d.get('map0')!, /^iova=0x500000 length=0x100f user_va=0x7f0000001ff1 r-$/)
    assert.match(d.get('map1')!, /^iova=0x50100f length=0x7f1 user_va=0x7f0000010000 r-$/)
    t.err(`IOAS_COPY src_ioas_id=${ioas} dst_ioas_id=${dst} src_iova=0xff000 length=0x2000 flags=READABLE`, 'ENOENT')
    t.err(`IOAS_COPY src_ioas_id=${ioas} dst_ioas_id=${dst} src_iova=0x103800 length=0x1000 flags=READABLE`, 'ENOENT')
  })

  it('OPTION HUGE_PAGES=0 raises the alignment to PAGE_SIZE: misaligned maps EINVAL, misaligned areas EADDRINUSE, areas in a domain EINVAL', () => {
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=${APERTURE_START} length=0x1000 user_va=${BUF}`)
    t.ok(`OPTION option_id=HUGE_PAGES op=SET object_id=${ioas} val64=0`)
    assert.equal(t.ok(`IOAS_IOVA_RANGES ioas_id=${ioas}`).out_iova_alignment, '0x1000')
    t.err(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=${APERTURE_START + 0x1000n} length=0x1000 user_va=${BUF + 0x800n}`, 'EINVAL', /user_va/)
    t.ok(`OPTION option_id=HUGE_PAGES op=SET object_id=${ioas} val64=1`)
    t.ok(`IOAS_MAP ioas_id=${ioas} flags=FIXED_IOVA|READABLE iova=${APERTURE_START + 0x1000n} length=0x1000 user_va=${BUF + 0x800n}`)
    t.err(`OPTION option_id=HUGE_PAGES op=SET object_id=${ioas} val64=0`, 'EADDRINUSE')
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=${APERTURE_START + 0x1000n} length=0x1000`)
    mockDomain(t, ioas)
    t.err(`OPTION option_id=HUGE_PAGES op=SET object_id=${ioas} val64=0`, 'EINVAL')
  })

  it('VT-d hands out domain IDs from 2 (Linux reserves 0 and 1)', () => {
    const dev = t.bind(DEV.vtdA)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    assert.match(t.hw('dmar0', 'pasid_table'), /pgtt=first-stage did=2/)
  })
})

describe('VFIO type1 compat on dev/iommu', () => {
  let t: IommuBench
  let ioas: number
  const vfio = (name: string, values: StructValue): IoctlReply => t.ioctl(name, values)
  beforeEach(() => {
    t = new IommuBench()
    ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  })

  it('GET_API_VERSION is 0, CHECK_EXTENSION says 1 for TYPE1, TYPE1v2 and UNMAP_ALL, 0 for the rest', () => {
    assert.equal(t.ok('VFIO_GET_API_VERSION').ret, '0')
    assert.equal(t.ok('VFIO_CHECK_EXTENSION arg=3').ret, '1')
    assert.equal(t.ok('VFIO_CHECK_EXTENSION arg=1').ret, '1')
    assert.equal(t.ok('VFIO_CHECK_EXTENSION arg=9').ret, '1')
    assert.equal(t.ok('VFIO_CHECK_EXTENSION arg=10').ret, '0')
    assert.equal(t.ok('VFIO_CHECK_EXTENSION arg=6').ret, '0')
    t.err('VFIO_CHECK_EXTENSION arg=4', 'ENODEV')
  })

  it('argsz and flags are EINVAL before the missing compat IOAS is ENODEV', () => {
    assert.equal(vfio('VFIO_IOMMU_UNMAP_DMA', { argsz: 1n }).errno, 'EINVAL')
    assert.equal(vfio('VFIO_IOMMU_UNMAP_DMA', { flags: 1n << 31n }).errno, 'EINVAL')
    assert.equal(vfio('VFIO_IOMMU_UNMAP_DMA', { iova: APERTURE_START, size: 0x1000n }).errno, 'ENODEV')
    assert.equal(vfio('VFIO_IOMMU_MAP_DMA', { argsz: 1n }).errno, 'EINVAL')
    assert.equal(vfio('VFIO_IOMMU_MAP_DMA', { flags: 1n << 31n }).errno, 'EINVAL')
    assert.equal(vfio('VFIO_IOMMU_MAP_DMA', { flags: 3n, vaddr: BUF, iova: APERTURE_START, size: 0x1000n }).errno, 'ENODEV')
    assert.equal(vfio('VFIO_IOMMU_GET_INFO', { argsz: 1n }).errno, 'EINVAL')
    assert.equal(vfio('VFIO_IOMMU_GET_INFO', {}).errno, 'ENODEV')
    t.err('VFIO_SET_IOMMU arg=3', 'ENODEV')
    t.err('VFIO_SET_IOMMU arg=2', 'EINVAL')
  })

  it('GET_INFO: flags PGSIZES|CAPS; the chain DMA_AVAIL (next 40) then IOVA_RANGE; argsz grows to 72; nothing is written past argsz', () => {
    mockDomain(t, ioas)
    t.ok(`VFIO_IOAS ioas_id=${ioas} op=SET`)
    t.ok('VFIO_SET_IOMMU arg=3')
    const at = 0x10000n
    const info = (argsz: number): IoctlReply => dispatchAt(t, argsz, at)
    const small = info(24)
    const s = t.out('VFIO_IOMMU_GET_INFO', small)
    assert.deepEqual([s.argsz, s.flags, s.iova_pgsizes, s.cap_offset], [72n, 3n, 0x1000n, 0n])
    assert.equal(small.written.size, 0)
    const full = info(72)
    assert.equal(t.out('VFIO_IOMMU_GET_INFO', full).cap_offset, 24n)
    const chain = Buffer.alloc(48)
    for (const [addr, data] of full.written) data.copy(chain, Number(addr - at) - 24)
    assert.equal(chain.toString('hex'), [
      '03000100', '28000000', 'ffffffff', '00000000', // DMA_AVAIL, next=40, avail=U32_MAX
      '01000100', '00000000', '01000000', '00000000', // IOVA_RANGE, next=0, nr_iovas=1
      '0000000100000000', 'ffffff7f00000000', // [16 MiB, 2 GiB - 1]
    ].join(''))
    for (let argsz = 24; argsz <= 72; argsz++) {
      for (const [addr, data] of info(argsz).written) assert.ok(Number(addr - at) + data.length <= argsz, `argsz=${argsz}: wrote past it`)
    }
    assert.equal([...info(39).written].length, 1, 'argsz 39: DMA_AVAIL without its next link')
  })

  it('MAP_DMA of vaddr 0 maps while no domain is there to fill (nothing is pinned yet), and is EFAULT once one is', () => {
    t.ok(`VFIO_IOAS ioas_id=${ioas} op=SET`)
    t.ok('VFIO_SET_IOMMU arg=3')
    const map0 = (iova: bigint): IoctlReply => vfio('VFIO_IOMMU_MAP_DMA', { flags: 3n, vaddr: 0n, iova, size: 0x1000n })
    assert.equal(map0(APERTURE_START).errno, undefined)
    assert.equal(t.describe(ioas).get('mappings'), '1')
    assert.equal(t.out('VFIO_IOMMU_UNMAP_DMA', vfio('VFIO_IOMMU_UNMAP_DMA', { flags: 2n })).size, 0x1000n)
    mockDomain(t, ioas)
    assert.equal(map0(APERTURE_START).errno, 'EFAULT')
    assert.equal(t.describe(ioas).get('mappings'), '0')
  })

  it('MAP_DMA / UNMAP_DMA: FLAG_ALL needs iova = size = 0; unmapping nothing succeeds; v2 unmaps whole mappings only, v0 any page range', () => {
    mockDomain(t, ioas)
    t.ok(`VFIO_IOAS ioas_id=${ioas} op=SET`)
    t.ok('VFIO_SET_IOMMU arg=3')
    const map = (iova: bigint, size: bigint): IoctlReply => vfio('VFIO_IOMMU_MAP_DMA', { flags: 3n, vaddr: BUF, iova, size })
    const unmap = (iova: bigint, size: bigint, flags = 0n): IoctlReply => vfio('VFIO_IOMMU_UNMAP_DMA', { flags, iova, size })
    assert.equal(map(APERTURE_START, 0x4000n).errno, undefined)
    // a refused unmap still writes back the bytes unmapped (none), as vfio_compat.c does; FLAG_ALL's own refusal writes nothing
    const partly = unmap(APERTURE_START, 0x1000n)
    assert.equal(partly.errno, 'ENOENT')
    assert.equal(t.out('VFIO_IOMMU_UNMAP_DMA', partly).size, 0n)
    assert.equal(unmap(APERTURE_START, 0x4000n, 2n).errno, 'EINVAL')
    assert.equal(unmap(APERTURE_START, 0x4000n, 2n).struct, undefined)
    assert.equal(t.out('VFIO_IOMMU_UNMAP_DMA', unmap(0n, 0n, 2n)).size, 0x4000n)
    assert.equal(t.out('VFIO_IOMMU_UNMAP_DMA', unmap(APERTURE_START, 0x4000n)).size, 0n)
    t.ok('VFIO_SET_IOMMU arg=1')
    assert.equal(t.ok(`OPTION option_id=HUGE_PAGES op=GET object_id=${ioas}`).val64, '0')
    assert.equal(map(APERTURE_START, 0x4000n).errno, undefined)
    assert.equal(t.out('VFIO_IOMMU_UNMAP_DMA', unmap(APERTURE_START + 0x1000n, 0x1000n)).size, 0x1000n)
    assert.equal(t.describe(ioas).get('mappings'), '2')
  })
})

/** GET_INFO with `argsz` at struct address `at` (the frame's ARG entry). */
function dispatchAt(t: IommuBench, argsz: number, at: bigint): IoctlReply {
  const io = t.ioctl('VFIO_IOMMU_GET_INFO', { argsz: BigInt(argsz) }).ioctl!
  const struct = encode(io.layout, { argsz: BigInt(argsz) }).subarray(0, Math.min(argsz, io.layout.size))
  return dispatchRaw(t, io.cmd, struct, at)
}

function dispatchRaw(t: IommuBench, cmd: number, struct: Buffer, arg: bigint): IoctlReply {
  return dispatch({ ctx: t.ctx }, { cmd, struct, buffers: new Map(), arg })
}
