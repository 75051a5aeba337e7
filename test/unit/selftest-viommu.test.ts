/**
 * The mock vIOMMU in-process (through the dispatcher, as frames carry it):
 * VIOMMU_ALLOC with and without data, its mmap region (IOMMUFS_MMAP/MUNMAP,
 * as the shim forwards mmap), nested HWPTs and vDEVICEs on it, invalidation
 * of device caches through it, HW_QUEUE_ALLOC, PASID attach/replace/detach
 * with the mock's PASID-1024 fault, and a fault queue's descriptor holding
 * its object. Every errno path in the kernel's order.
 */
import { strict as assert } from 'node:assert'
import { IoctlReply } from '../../src/uapi/dispatch'
import { StructValue, encode } from '../../src/uapi/layout'
import { TEST_CMD_UNION, iommu_viommu_selftest } from '../../src/uapi/structs'
import { decodeReply, encodeRequest } from '../../src/uapi/frame'
import { IommuBench, ioctlOf, smmuNestSetup, structBytes } from '../helpers/iommufd'
import { MockDevFlag } from '../../src/hw/mock/mock'
import { readMaps } from '../../src/memory/pages'

const SELFTEST = 0xdeadbeefn
const PAGE = 4096n
const APERTURE = 1n << 24n
const DATA = 0x5000n
const Op = { MOCK_DOMAIN_FLAGS: 12, MOCK_DOMAIN_REPLACE: 10, DEV_CHECK_CACHE: 16, TRIGGER_IOPF: 15, PASID_ATTACH: 18, PASID_REPLACE: 19, PASID_DETACH: 20, PASID_CHECK_HWPT: 21 }

function cmd(t: IommuBench, op: number, id: number, member?: keyof typeof TEST_CMD_UNION, values: StructValue = {}): IoctlReply {
  const raw = Buffer.alloc(48)
  if (member) encode(TEST_CMD_UNION[member], values).copy(raw)
  const payload = Array.from({ length: 6 }, (_, i) => raw.readBigUInt64LE(i * 8))
  return t.ioctl('IOMMU_TEST_CMD', { op: BigInt(op), id: BigInt(id), payload })
}

/** A mock device (PASID-capable) on a fresh IOAS, and a nest parent for it. */
function setup(t: IommuBench): { ioas: number; stdev: number; idev: number; parent: number } {
  const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  const r = cmd(t, Op.MOCK_DOMAIN_FLAGS, ioas, 'mock_domain_flags', { dev_flags: 4n })
  assert.equal(r.errno, undefined, r.message)
  const words = t.out('IOMMU_TEST_CMD', r).payload as bigint[]
  const stdev = Number(words[0] & 0xffffffffn)
  const idev = Number(words[1] & 0xffffffffn)
  const parent = t.id(`HWPT_ALLOC dev_id=${idev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
  return { ioas, stdev, idev, parent }
}

function viommuAlloc(t: IommuBench, dev: number, hwpt: number, type = SELFTEST, data?: Buffer | 'fault', len = data && data !== 'fault' ? data.length : 24): IoctlReply {
  const buffers = new Map<bigint, Buffer | 'fault'>()
  if (data) buffers.set(DATA, data)
  return t.ioctl('IOMMU_VIOMMU_ALLOC', { type, dev_id: BigInt(dev), hwpt_id: BigInt(hwpt), data_len: data ? BigInt(len) : 0n, data_uptr: data ? DATA : 0n }, { buffers })
}

function mmap(t: IommuBench, offset: bigint, length: bigint, flags = 1n): IoctlReply {
  return t.ioctl('IOMMUFS_MMAP', { flags, offset, length, addr: 0x7000_0000n })
}

/** A file this process maps from offset 0 for at least `bytes`: its device and inode as /proc/self/maps shows them. */
function ownFileMapping(bytes: number): { major: bigint; minor: bigint; ino: bigint } {
  const v = readMaps(process.pid)!.find((m) => m.inode !== 0n && m.offset === 0n && m.end - m.start >= BigInt(bytes))
  if (!v) throw new Error('this process maps no file from offset 0')
  const [major, minor] = v.dev.split(':').map((x) => BigInt(`0x${x}`))
  return { major, minor, ino: v.inode }
}

function hwQueue(t: IommuBench, viommu: number, index: number, iova: bigint, length: bigint, type = SELFTEST): IoctlReply {
  return t.ioctl('IOMMU_HW_QUEUE_ALLOC', { viommu_id: BigInt(viommu), type, index: BigInt(index), nesting_parent_iova: iova, length })
}

function nestedOn(t: IommuBench, dev: number, pt: number, flags = 0n, dataType = 0xdeadn): IoctlReply {
  const data = Buffer.alloc(4)
  data.writeUInt32LE(0xbadbeef)
  return t.ioctl('IOMMU_HWPT_ALLOC', { flags, dev_id: BigInt(dev), pt_id: BigInt(pt), data_type: dataType, data_len: 4n, data_uptr: DATA }, { buffers: new Map([[DATA, data]]) })
}

function pasid(t: IommuBench, op: number, stdev: number, p: number, pt = 0): IoctlReply {
  return cmd(t, op, stdev, op === Op.PASID_CHECK_HWPT ? 'pasid_check' : 'pasid_attach', op === Op.PASID_CHECK_HWPT ? { pasid: BigInt(p), hwpt_id: BigInt(pt) } : { pasid: BigInt(p), pt_id: BigInt(pt) })
}

describe('the mock vIOMMU (SELFTEST type)', () => {
  let t: IommuBench
  let s: ReturnType<typeof setup>
  beforeEach(() => {
    t = new IommuBench()
    s = setup(t)
  })

  it('VIOMMU_ALLOC checks in the kernel order: flags and DEFAULT EOPNOTSUPP, the device ENOENT, another type EOPNOTSUPP, hwpt ENOENT, a non-parent EINVAL', () => {
    assert.equal(t.ioctl('IOMMU_VIOMMU_ALLOC', { flags: 1n, type: SELFTEST, dev_id: BigInt(s.idev), hwpt_id: BigInt(s.parent) }).errno, 'EOPNOTSUPP')
    assert.equal(viommuAlloc(t, s.idev, s.parent, 0n).errno, 'EOPNOTSUPP')
    assert.equal(viommuAlloc(t, 99, s.parent).errno, 'ENOENT')
    assert.equal(viommuAlloc(t, s.idev, 0, 0xdeadn).errno, 'EOPNOTSUPP')
    assert.equal(viommuAlloc(t, s.idev, 0).errno, 'ENOENT')
    const plain = t.id(`HWPT_ALLOC dev_id=${s.idev} pt_id=${s.ioas}`, 'out_hwpt_id')
    assert.equal(viommuAlloc(t, s.idev, plain).errno, 'EINVAL')
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent)).out_viommu_id)
    assert.equal(t.describe(v).get('viommu_type'), 'SELFTEST')
    assert.equal(t.describe(v).get('mmap'), '-')
    t.err(`VCMDQ_ALLOC viommu_id=${v} log2size=4`, 'EOPNOTSUPP')
    t.err(`DESTROY id=${s.parent}`, 'EBUSY')
    t.ok(`DESTROY id=${v}`)
    t.ok(`DESTROY id=${s.parent}`)
  })

  it('data: in_data comes back as out_data with a 2-page region; short data EINVAL, a nonzero tail E2BIG, a bad pointer EFAULT; data_len bounds the write-back', () => {
    const inData = (v: number, extra = 0): Buffer => {
      const b = Buffer.alloc(24 + extra)
      b.writeUInt32LE(v)
      return b
    }
    assert.equal(viommuAlloc(t, s.idev, s.parent, SELFTEST, inData(1), 7).errno, 'EINVAL')
    const tail = inData(1, 8)
    tail[30] = 1
    assert.equal(viommuAlloc(t, s.idev, s.parent, SELFTEST, tail).errno, 'E2BIG')
    assert.equal(viommuAlloc(t, s.idev, s.parent, SELFTEST, 'fault').errno, 'EFAULT')
    const r = viommuAlloc(t, s.idev, s.parent, SELFTEST, inData(0xbeef, 8))
    assert.equal(r.errno, undefined, r.message)
    const back = r.written.get(DATA)!
    assert.equal(back.length, 24, 'no more than the struct, though data_len is 32')
    assert.deepEqual([back.readUInt32LE(4), back.readBigUInt64LE(8), back.readBigUInt64LE(16)], [0xbeef, PAGE, 2n * PAGE])
    const short = viommuAlloc(t, s.idev, s.parent, SELFTEST, inData(0x1234).subarray(0, 16))
    assert.equal(short.written.get(DATA)!.length, 16, 'only data_len bytes are written')
    assert.equal(short.written.get(DATA)!.readBigUInt64LE(8), 3n * PAGE, 'the next free offset')
    assert.equal(iommu_viommu_selftest.size, 24)
  })

  it('mmap of the region: the exact offset and length or ENXIO, MAP_SHARED or EINVAL, no PROT_EXEC (EPERM); while mapped the vIOMMU is EBUSY', () => {
    const data = Buffer.alloc(24)
    data.writeUInt32LE(0xbeef)
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent, SELFTEST, data)).out_viommu_id)
    assert.equal(mmap(t, PAGE + PAGE, 2n * PAGE).errno, 'ENXIO')
    assert.equal(mmap(t, PAGE + 2n * PAGE, 2n * PAGE).errno, 'ENXIO')
    assert.equal(mmap(t, PAGE, PAGE).errno, 'ENXIO')
    assert.equal(mmap(t, PAGE, 4n * PAGE).errno, 'ENXIO')
    assert.equal(mmap(t, PAGE, 2n * PAGE, 0n).errno, 'EINVAL')
    assert.equal(mmap(t, PAGE, 2n * PAGE, 3n).errno, 'EPERM')
    assert.equal(mmap(t, PAGE, 100n).errno, 'EINVAL')
    const m = mmap(t, PAGE, 2n * PAGE)
    assert.equal(m.errno, undefined, m.message)
    const page = m.written.get(0x7000_0000n)!
    assert.deepEqual([page.length, page.readUInt32LE(0), page.readUInt32LE(4)], [8192, 0xbeef, 0])
    assert.match(t.describe(v).get('mmap')!, /offset=0x1000 length=0x2000 mapped=1/)
    t.err(`DESTROY id=${v}`, 'EBUSY')
    assert.equal(t.ioctl('IOMMUFS_MUNMAP', { offset: PAGE }).errno, undefined)
    assert.equal(t.ioctl('IOMMUFS_MUNMAP', { offset: PAGE }).errno, 'EINVAL', 'not mapped any more')
    t.ok(`DESTROY id=${v}`)
    assert.equal(mmap(t, PAGE, 2n * PAGE).errno, 'ENXIO', 'the region went with its vIOMMU')
  })

  it('a mapping of the file itself (FILE, exec --namespace): its pages are READs of the region, and it holds the vIOMMU while /proc/PID/maps shows it', () => {
    // a file this process maps from offset 0 past the region's end (node or a library): /proc shows it there
    const own = ownFileMapping(Number(3n * PAGE))
    const file = (ino: bigint, flags = 5n, pid = BigInt(process.pid)): IoctlReply =>
      t.ioctl('IOMMUFS_MMAP', { flags, offset: PAGE, length: 2n * PAGE, addr: 0n, pid, dev_major: own.major, dev_minor: own.minor, ino })
    const data = Buffer.alloc(24)
    data.writeUInt32LE(0xbeef)
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent, SELFTEST, data)).out_viommu_id)
    assert.equal(file(own.ino, 4n).errno, 'EINVAL', 'not MAP_SHARED')
    assert.equal(file(own.ino, 5n, 0n).errno, 'EINVAL', 'no pid')
    assert.equal(t.ioctl('IOMMUFS_MMAP', { flags: 1n, offset: PAGE, length: 2n * PAGE, addr: 0x7000_0000n, pid: 1n }).errno, 'EOPNOTSUPP', 'pid without FILE')
    assert.equal(t.session.read(Number(PAGE), 8).length, 0, 'nothing mapped yet: a READ there is past the reply')
    // a file this process does not map: the mapping is gone as soon as anyone looks
    assert.equal(file(own.ino + 1000003n).errno, undefined)
    assert.deepEqual([...t.session.read(Number(PAGE), 8)], [0xef, 0xbe, 0, 0, 0, 0, 0, 0], 'the page a fault reads')
    assert.equal(t.world.mappedFileEnd(), 3n * PAGE, 'dev/iommu reaches the region')
    t.ok(`DESTROY id=${v}`)
    assert.equal(t.world.mappedFileEnd(), 0n)
    const w = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent, SELFTEST, data)).out_viommu_id)
    assert.equal(file(own.ino).errno, undefined)
    t.err(`DESTROY id=${w}`, 'EBUSY')
    assert.match(t.describe(w).get('mmap')!, /mapped=1/)
  })

  it('closing the file lets a live mapping go: everything is destroyed', () => {
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent, SELFTEST, Buffer.alloc(24))).out_viommu_id)
    assert.equal(mmap(t, PAGE, 2n * PAGE).errno, undefined)
    assert.equal(t.describe(v).get('users'), '1')
    t.close()
    assert.equal(t.world.contexts.size, 0)
  })

  it('nested HWPTs on it: SELFTEST data (else EOPNOTSUPP), flags PASID and FAULT_ID_VALID only; attaching needs a vDEVICE (ENOENT)', () => {
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent)).out_viommu_id)
    assert.equal(nestedOn(t, s.idev, v, 0n, 0xdeaen).errno, 'EOPNOTSUPP')
    assert.equal(nestedOn(t, s.idev, v, 1n << 31n).errno, 'EOPNOTSUPP')
    assert.equal(nestedOn(t, s.idev, v, 4n).errno, 'ENOENT', 'FAULT_ID_VALID with no fault queue')
    const nested = Number(t.out('IOMMU_HWPT_ALLOC', nestedOn(t, s.idev, v, 8n)).out_hwpt_id)
    assert.equal(t.describe(nested).get('iotlb'), '0xbadbeef 0xbadbeef 0xbadbeef 0xbadbeef')
    const replace = (pt: number): IoctlReply => cmd(t, Op.MOCK_DOMAIN_REPLACE, s.stdev, 'mock_domain_replace', { pt_id: BigInt(pt) })
    assert.equal(replace(nested).errno, 'ENOENT')
    t.ok(`VDEVICE_ALLOC viommu_id=${v} dev_id=${s.idev} virt_id=0x99`)
    assert.equal(replace(nested).errno, undefined)
    t.err(`DESTROY id=${nested}`, 'EBUSY')
    t.err(`DESTROY id=${v}`, 'EBUSY')
  })

  it('invalidation through it clears device cache words by vDEVICE, with partial counts; every error case', () => {
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent)).out_viommu_id)
    t.ok(`VDEVICE_ALLOC viommu_id=${v} dev_id=${s.idev} virt_id=0x99`)
    const inv = (entries: [number, number, number][], type = SELFTEST, len = 12, uptr = DATA): IoctlReply => {
      const raw = Buffer.alloc(entries.length * Math.max(len, 12))
      entries.forEach(([f, vd, c], i) => {
        raw.writeUInt32LE(f, i * len)
        raw.writeUInt32LE(vd, i * len + 4)
        raw.writeUInt32LE(c, i * len + 8)
      })
      return t.ioctl('IOMMU_HWPT_INVALIDATE', { hwpt_id: BigInt(v), data_uptr: uptr, data_type: type, entry_len: BigInt(len), entry_num: BigInt(entries.length) }, { buffers: new Map([[DATA, raw]]) })
    }
    const num = (r: IoctlReply): number => Number(t.out('IOMMU_HWPT_INVALIDATE', r).entry_num)
    const cache = (slot: number, value: number): string | undefined => cmd(t, Op.DEV_CHECK_CACHE, s.idev, 'check_dev_cache', { id: BigInt(slot), cache: BigInt(value) }).errno
    assert.equal(num(inv([])), 0)
    assert.equal(inv([[0, 0x99, 0]], 0xdadbeefn).errno, 'EINVAL')
    assert.equal(inv([[0, 0x99, 0]], SELFTEST, 13).errno, 'EINVAL')
    assert.equal(inv([[0, 0x99, 0]], SELFTEST, 1).errno, 'EINVAL')
    assert.equal(inv([[0xffffffff, 0x99, 0]]).errno, 'EOPNOTSUPP')
    assert.equal(inv([[0, 0x99, 0]], SELFTEST, 12, 0n).errno, 'EINVAL')
    assert.equal(inv([[0, 0x99, 4]]).errno, 'EINVAL')
    assert.equal(inv([[0, 0x9, 0]]).errno, 'EINVAL')
    const partial = inv([
      [0, 0x99, 0],
      [0xffffffff, 0x99, 1],
    ])
    assert.deepEqual([partial.errno, num(partial)], ['EOPNOTSUPP', 1])
    assert.deepEqual([cache(0, 0), cache(1, 0xbaddad)], [undefined, undefined])
    assert.equal(num(inv([[0, 0x99, 1]])), 1)
    assert.equal(cache(1, 0), undefined)
    assert.equal(num(inv([[1, 0x99, 0]])), 1)
    assert.deepEqual([2, 3].map((i) => cache(i, 0)), [undefined, undefined])
  })

  it('HW_QUEUE_ALLOC: EOPNOTSUPP, EINVAL, EOVERFLOW, ENOENT, ERANGE, EIO, EINVAL, EEXIST in the kernel order; a queue owns its IOVA and its predecessor', () => {
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent)).out_viommu_id)
    assert.equal(hwQueue(t, v, 0, APERTURE, PAGE, 0n).errno, 'EOPNOTSUPP')
    assert.equal(t.ioctl('IOMMU_HW_QUEUE_ALLOC', { flags: 1n, viommu_id: BigInt(v), type: SELFTEST, nesting_parent_iova: APERTURE, length: PAGE }).errno, 'EOPNOTSUPP')
    assert.equal(hwQueue(t, v, 0, APERTURE, 0n).errno, 'EINVAL')
    assert.equal(hwQueue(t, v, 0, (1n << 64n) - 1n, PAGE).errno, 'EOVERFLOW')
    assert.equal(hwQueue(t, 99, 0, APERTURE, PAGE).errno, 'ENOENT')
    // the range fits, but its span of whole pages does not (iommufd_hw_queue_alloc_phys)
    assert.equal(hwQueue(t, v, 0, 0n, (1n << 64n) - 1n).errno, 'ERANGE')
    assert.equal(hwQueue(t, v, 0, 0x800n, (1n << 64n) - 0x800n).errno, 'ERANGE')
    assert.equal(hwQueue(t, v, 0, APERTURE, PAGE).errno, 'ENOENT', 'nothing mapped there')
    assert.equal(hwQueue(t, v, 0, APERTURE, PAGE, 1n).errno, 'EOPNOTSUPP', 'TEGRA241_CMDQV is not the mock type')
    t.ok(`IOAS_MAP ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x10000 length=0x1000 iova=${APERTURE}`)
    t.ok(`IOAS_MAP ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x11000 length=0x1000 iova=${APERTURE + PAGE}`)
    assert.equal(hwQueue(t, v, 1, APERTURE, PAGE).errno, 'EIO')
    assert.equal(hwQueue(t, v, 2, APERTURE, PAGE).errno, 'EINVAL')
    const q0 = Number(t.out('IOMMU_HW_QUEUE_ALLOC', hwQueue(t, v, 0, APERTURE, PAGE)).out_hw_queue_id)
    assert.equal(hwQueue(t, v, 0, APERTURE, PAGE).errno, 'EEXIST')
    t.err(`IOAS_UNMAP ioas_id=${s.ioas} iova=${APERTURE} length=0x1000`, 'EBUSY')
    t.err(`IOAS_UNMAP ioas_id=${s.ioas} iova=0 length=${(1n << 64n) - 1n}`, 'EBUSY')
    t.ok(`IOAS_UNMAP ioas_id=${s.ioas} iova=${APERTURE + PAGE} length=0x1000`)
    const q1 = Number(t.out('IOMMU_HW_QUEUE_ALLOC', hwQueue(t, v, 1, APERTURE + PAGE / 2n, PAGE / 2n)).out_hw_queue_id)
    assert.equal(t.describe(q1).get('depends_on'), String(q0))
    t.err(`DESTROY id=${q0}`, 'EBUSY')
    t.err(`DESTROY id=${v}`, 'EBUSY')
    t.ok(`DESTROY id=${q1}`)
    t.ok(`DESTROY id=${q0}`)
    t.ok(`IOAS_UNMAP ioas_id=${s.ioas} iova=${APERTURE} length=0x1000`)
    t.ok(`DESTROY id=${v}`)
  })

  it('HW_QUEUE_ALLOC: memory not physically contiguous is EFAULT; an SMMUv3 vIOMMU has no queue type (EOPNOTSUPP)', () => {
    const v = Number(t.out('IOMMU_VIOMMU_ALLOC', viommuAlloc(t, s.idev, s.parent)).out_viommu_id)
    t.ok(`IOAS_MAP ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x10000 length=0x1000 iova=${APERTURE}`)
    t.ok(`IOAS_MAP ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x30000 length=0x1000 iova=${APERTURE + PAGE}`)
    assert.equal(hwQueue(t, v, 0, APERTURE, 2n * PAGE).errno, 'EFAULT')
    const smmu = new IommuBench()
    const n = smmuNestSetup(smmu)
    assert.equal(hwQueue(smmu, n.viommu, 0, 0n, PAGE).errno, 'EOPNOTSUPP')
  })
})

describe('PASID attach on a mock device (PASID_ATTACH/REPLACE/DETACH/CHECK_HWPT)', () => {
  let t: IommuBench
  let s: ReturnType<typeof setup>
  let s2: number
  beforeEach(() => {
    t = new IommuBench()
    s = setup(t)
    s2 = t.id(`HWPT_ALLOC dev_id=${s.idev} pt_id=${s.ioas} flags=PASID`, 'out_hwpt_id')
  })
  const replaceRid = (pt: number): string | undefined => cmd(t, Op.MOCK_DOMAIN_REPLACE, s.stdev, 'mock_domain_replace', { pt_id: BigInt(pt) }).errno

  it('a PASID needs a PASID-compatible domain, and so does the RID while PASIDs are attached; an IOAS is EINVAL; attach twice EBUSY', () => {
    assert.equal(pasid(t, Op.PASID_DETACH, s.stdev, 100).errno, undefined, 'detaching nothing is no error')
    assert.equal(replaceRid(s.parent), undefined)
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 100, s2).errno, 'EINVAL', 'the RID domain is not PASID-compatible')
    assert.equal(replaceRid(s2), undefined)
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 100, s.parent).errno, 'EINVAL')
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 100, s.ioas).errno, 'EINVAL')
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 100, 99).errno, 'ENOENT')
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 1 << 20, s2).errno, 'EINVAL', 'beyond the 20-bit PASID space')
    const r = pasid(t, Op.PASID_ATTACH, s.stdev, 100, s2)
    assert.equal(r.errno, undefined, r.message)
    assert.equal(pasid(t, Op.PASID_CHECK_HWPT, s.stdev, 100, s2).errno, undefined)
    assert.equal(pasid(t, Op.PASID_CHECK_HWPT, s.stdev, 100, 0).errno, 'EINVAL')
    assert.equal(t.describe(s.idev).get('pasids'), `100:${s2}`)
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 100, s2).errno, 'EBUSY')
    assert.equal(replaceRid(s.parent), 'EINVAL', 'the RID cannot leave PASID-compatible domains now')
    t.err(`DESTROY id=${s2}`, 'EBUSY')
    assert.equal(pasid(t, Op.PASID_DETACH, s.stdev, 100).errno, undefined)
    assert.equal(pasid(t, Op.PASID_CHECK_HWPT, s.stdev, 100, 0).errno, undefined)
  })

  it('a device without PASID support refuses every PASID attach (EINVAL), a PASID-compatible domain included', () => {
    const r = cmd(t, Op.MOCK_DOMAIN_FLAGS, s.ioas, 'mock_domain_flags', { dev_flags: 0n })
    const stdev = Number((t.out('IOMMU_TEST_CMD', r).payload as bigint[])[0] & 0xffffffffn)
    assert.equal(pasid(t, Op.PASID_ATTACH, stdev, 100, s2).errno, 'EINVAL')
  })

  it('dirty tracking on a PASID\'s domain: SET_DIRTY_TRACKING on and off; a NO_DIRTY device\'s PASID attach of it is EINVAL', () => {
    const dirty = t.id(`HWPT_ALLOC dev_id=${s.idev} pt_id=${s.ioas} flags=PASID|DIRTY_TRACKING`, 'out_hwpt_id')
    const device = (devFlags: bigint, pt: number): number => Number((t.out('IOMMU_TEST_CMD', cmd(t, Op.MOCK_DOMAIN_FLAGS, pt, 'mock_domain_flags', { dev_flags: devFlags })).payload as bigint[])[0] & 0xffffffffn)
    const capable = device(BigInt(MockDevFlag.PASID), dirty)
    assert.equal(pasid(t, Op.PASID_ATTACH, capable, 100, dirty).errno, undefined)
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${dirty} flags=ENABLE`)
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${dirty} flags=0`)
    assert.equal(pasid(t, Op.PASID_DETACH, capable, 100).errno, undefined)
    // its RID on a PASID-compatible domain that does not track dirty pages, so only the dirty check refuses
    const noDirty = device(BigInt(MockDevFlag.PASID | MockDevFlag.NO_DIRTY), s2)
    const r = pasid(t, Op.PASID_ATTACH, noDirty, 100, dirty)
    assert.equal(r.errno, 'EINVAL')
    assert.match(r.message, /cannot track dirty pages/)
    assert.equal(pasid(t, Op.PASID_CHECK_HWPT, noDirty, 100, 0).errno, undefined, 'nothing attached')
  })

  it('REPLACE needs an attached PASID (EINVAL) and leaves the old domain on failure; PASID 1024 fails its second non-blocking set with ENOMEM', () => {
    assert.equal(replaceRid(s2), undefined)
    assert.equal(pasid(t, Op.PASID_REPLACE, s.stdev, 200, s2).errno, 'EINVAL')
    const nested = Number(t.out('IOMMU_HWPT_ALLOC', nestedOn(t, s.idev, s.parent, 8n)).out_hwpt_id)
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 200, s2).errno, undefined)
    assert.equal(pasid(t, Op.PASID_REPLACE, s.stdev, 200, s.ioas).errno, 'EINVAL')
    assert.equal(pasid(t, Op.PASID_REPLACE, s.stdev, 200, nested).errno, undefined)
    assert.equal(pasid(t, Op.PASID_CHECK_HWPT, s.stdev, 200, nested).errno, undefined)
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 1024, s2).errno, undefined)
    assert.equal(pasid(t, Op.PASID_REPLACE, s.stdev, 1024, nested).errno, 'ENOMEM')
    assert.equal(pasid(t, Op.PASID_CHECK_HWPT, s.stdev, 1024, s2).errno, undefined, 'the old domain stays')
    assert.equal(pasid(t, Op.PASID_DETACH, s.stdev, 1024).errno, undefined)
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 1024, s2).errno, undefined, 'detaching disarmed it')
  })

  it('a page request on a PASID goes to the fault queue of that PASID\'s domain', () => {
    assert.equal(replaceRid(s2), undefined)
    const fa = t.ioctl('IOMMU_FAULT_QUEUE_ALLOC', {})
    const fault = Number(t.out('IOMMU_FAULT_QUEUE_ALLOC', fa).out_fault_id)
    const data = Buffer.alloc(4)
    const iopf = Number(
      t.out(
        'IOMMU_HWPT_ALLOC',
        t.ioctl('IOMMU_HWPT_ALLOC', { flags: 12n, dev_id: BigInt(s.idev), pt_id: BigInt(s.parent), data_type: 0xdeadn, data_len: 4n, data_uptr: DATA, fault_id: BigInt(fault) }, { buffers: new Map([[DATA, data]]) }),
      ).out_hwpt_id,
    )
    assert.equal(pasid(t, Op.PASID_ATTACH, s.stdev, 2048, iopf).errno, undefined)
    assert.equal(cmd(t, Op.TRIGGER_IOPF, 0, 'trigger_iopf', { dev_id: BigInt(s.idev), pasid: 2048n, grpid: 2n, perm: 1n, addr: 0x1000n }).errno, undefined)
    const q = t.ctx.objects.find(fault) as unknown as { read(len: number): Buffer }
    const rec = q.read(40)
    assert.deepEqual([rec.readUInt32LE(0), rec.readUInt32LE(8)], [3, 2048])
  })
})

/** FAULT_QUEUE_ALLOC as a frame on the bench's own file (the shim's way): its out_fault_id. */
function faultAllocFrame(t: IommuBench): number {
  const io = ioctlOf('IOMMU_FAULT_QUEUE_ALLOC')
  t.session.write(0, encodeRequest({ cmd: io.cmd, target: 0, struct: structBytes(io, {}), buffers: new Map() }))
  const r = decodeReply(t.session.read(0, 1 << 20))
  assert.equal(r.errno, 0)
  return r.struct.readUInt32LE(8)
}

describe('a fault queue\'s descriptor', () => {
  it('a frame that hands it out holds the queue: DESTROY is EBUSY until QUEUE_CLOSE; a handle with no open descriptor is EBADFD', () => {
    const t = new IommuBench()
    const id = faultAllocFrame(t)
    assert.equal(t.describe(id).get('fd_open'), '1')
    t.err(`DESTROY id=${id}`, 'EBUSY')
    t.err('QUEUE_CLOSE handle=99', 'EBADFD')
    t.err('QUEUE_CLOSE', 'EINVAL')
    t.ok(`QUEUE_CLOSE handle=${id}`)
    t.err(`QUEUE_CLOSE handle=${id}`, 'EBADFD')
    t.ok(`DESTROY id=${id}`)
  })

  it('a text request hands out no descriptor: nothing holds the queue', () => {
    const t = new IommuBench()
    const text = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
    assert.equal(t.describe(text).get('fd_open'), '0')
    t.ok(`DESTROY id=${text}`)
  })

  it('is let go when the file closes', () => {
    const t = new IommuBench()
    faultAllocFrame(t)
    t.close()
    assert.equal(t.world.contexts.size, 0)
  })
})
