/**
 * The uAPI surface in-process: struct layouts and the ioctl table against
 * the reference (§2, §3, §5, §6, §9), the kernel's size rules (§1.2), ENOTTY,
 * the text codec's errors, line and frame limits, frames through a session,
 * and a handler bug becoming EIO. Failures are checked to change nothing.
 */
import { strict as assert } from 'node:assert'
import * as sinon from 'sinon'
import * as ioas from '../../src/iommufd/ioas'
import { dispatch } from '../../src/uapi/dispatch'
import { FrameKind, MAX_FRAME, decodeReply, encodeRequest } from '../../src/uapi/frame'
import { ioctlByCmd, ioctlByName } from '../../src/uapi/ioctls'
import { STRUCTS } from '../../src/uapi/structs'
import { ErrnoError } from '../../src/util/errno'
import { DEV, IommuBench, ioctlOf, structBytes, u64s } from '../helpers/iommufd'

/** size, then [field, offset] pairs, as the reference's tables give them. */
const LAYOUTS: Record<string, [number, [string, number][]]> = {
  iommu_destroy: [8, [['size', 0], ['id', 4]]],
  iommu_ioas_alloc: [12, [['size', 0], ['flags', 4], ['out_ioas_id', 8]]],
  iommu_ioas_allow_iovas: [24, [['size', 0], ['ioas_id', 4], ['num_iovas', 8], ['__reserved', 12], ['allowed_iovas', 16]]],
  iommu_ioas_copy: [40, [['size', 0], ['flags', 4], ['dst_ioas_id', 8], ['src_ioas_id', 12], ['length', 16], ['dst_iova', 24], ['src_iova', 32]]],
  iommu_ioas_iova_ranges: [32, [['size', 0], ['ioas_id', 4], ['num_iovas', 8], ['__reserved', 12], ['allowed_iovas', 16], ['out_iova_alignment', 24]]],
  iommu_ioas_map: [40, [['size', 0], ['flags', 4], ['ioas_id', 8], ['__reserved', 12], ['user_va', 16], ['length', 24], ['iova', 32]]],
  iommu_ioas_unmap: [24, [['size', 0], ['ioas_id', 4], ['iova', 8], ['length', 16]]],
  iommu_option: [24, [['size', 0], ['option_id', 4], ['op', 8], ['__reserved', 10], ['object_id', 12], ['val64', 16]]],
  iommu_vfio_ioas: [12, [['size', 0], ['ioas_id', 4], ['op', 8], ['__reserved', 10]]],
  iommu_hwpt_alloc: [48, [['size', 0], ['flags', 4], ['dev_id', 8], ['pt_id', 12], ['out_hwpt_id', 16], ['__reserved', 20], ['data_type', 24], ['data_len', 28], ['data_uptr', 32], ['fault_id', 40], ['__reserved2', 44]]],
  iommu_hw_info: [40, [['size', 0], ['flags', 4], ['dev_id', 8], ['data_len', 12], ['data_uptr', 16], ['out_data_type', 24], ['out_max_pasid_log2', 28], ['__reserved', 29], ['out_capabilities', 32]]],
  iommu_hwpt_set_dirty_tracking: [16, [['size', 0], ['flags', 4], ['hwpt_id', 8], ['__reserved', 12]]],
  iommu_hwpt_get_dirty_bitmap: [48, [['size', 0], ['hwpt_id', 4], ['flags', 8], ['__reserved', 12], ['iova', 16], ['length', 24], ['page_size', 32], ['data', 40]]],
  iommu_hwpt_invalidate: [32, [['size', 0], ['hwpt_id', 4], ['data_uptr', 8], ['data_type', 16], ['entry_len', 20], ['entry_num', 24], ['__reserved', 28]]],
  iommu_fault_alloc: [16, [['size', 0], ['flags', 4], ['out_fault_id', 8], ['out_fault_fd', 12]]],
  iommu_ioas_map_file: [40, [['size', 0], ['flags', 4], ['ioas_id', 8], ['fd', 12], ['start', 16], ['length', 24], ['iova', 32]]],
  iommu_viommu_alloc: [40, [['size', 0], ['flags', 4], ['type', 8], ['dev_id', 12], ['hwpt_id', 16], ['out_viommu_id', 20], ['data_len', 24], ['__reserved', 28], ['data_uptr', 32]]],
  iommu_vdevice_alloc: [24, [['size', 0], ['viommu_id', 4], ['dev_id', 8], ['out_vdevice_id', 12], ['virt_id', 16]]],
  iommu_ioas_change_process: [8, [['size', 0], ['__reserved', 4]]],
  iommu_veventq_alloc: [32, [['size', 0], ['flags', 4], ['viommu_id', 8], ['type', 12], ['veventq_depth', 16], ['out_veventq_id', 20], ['out_veventq_fd', 24], ['__reserved', 28]]],
  iommu_hw_queue_alloc: [40, [['size', 0], ['flags', 4], ['viommu_id', 8], ['type', 12], ['index', 16], ['out_hw_queue_id', 20], ['nesting_parent_iova', 24], ['length', 32]]],
  iommu_hw_info_arm_smmuv3: [40, [['flags', 0], ['__reserved', 4], ['idr', 8], ['iidr', 32], ['aidr', 36]]],
  iommu_hwpt_arm_smmuv3: [16, [['ste', 0]]],
  iommu_hw_info_vtd: [24, [['flags', 0], ['__reserved', 4], ['cap_reg', 8], ['ecap_reg', 16]]],
  iommu_hwpt_vtd_s1: [24, [['flags', 0], ['pgtbl_addr', 8], ['addr_width', 16], ['__reserved', 20]]],
  iommu_hwpt_vtd_s1_invalidate: [24, [['addr', 0], ['npages', 8], ['flags', 16], ['__reserved', 20]]],
  iommu_viommu_arm_smmuv3_invalidate: [16, [['cmd', 0]]],
  vfio_device_bind_iommufd: [24, [['argsz', 0], ['flags', 4], ['iommufd', 8], ['out_devid', 12], ['token_uuid_ptr', 16]]],
  vfio_device_attach_iommufd_pt: [16, [['argsz', 0], ['flags', 4], ['pt_id', 8], ['pasid', 12]]],
  vfio_device_detach_iommufd_pt: [12, [['argsz', 0], ['flags', 4], ['pasid', 8]]],
}

/** name, cmd, min size (§2 and §9). */
const TABLE: [string, number, number][] = [
  ['IOMMU_DESTROY', 0x3b80, 8],
  ['IOMMU_IOAS_ALLOC', 0x3b81, 12],
  ['IOMMU_IOAS_ALLOW_IOVAS', 0x3b82, 24],
  ['IOMMU_IOAS_COPY', 0x3b83, 40],
  ['IOMMU_IOAS_IOVA_RANGES', 0x3b84, 32],
  ['IOMMU_IOAS_MAP', 0x3b85, 40],
  ['IOMMU_IOAS_UNMAP', 0x3b86, 24],
  ['IOMMU_OPTION', 0x3b87, 24],
  ['IOMMU_VFIO_IOAS', 0x3b88, 12],
  ['IOMMU_HWPT_ALLOC', 0x3b89, 24],
  ['IOMMU_GET_HW_INFO', 0x3b8a, 32],
  ['IOMMU_HWPT_SET_DIRTY_TRACKING', 0x3b8b, 16],
  ['IOMMU_HWPT_GET_DIRTY_BITMAP', 0x3b8c, 48],
  ['IOMMU_HWPT_INVALIDATE', 0x3b8d, 32],
  ['IOMMU_FAULT_QUEUE_ALLOC', 0x3b8e, 16],
  ['IOMMU_IOAS_MAP_FILE', 0x3b8f, 40],
  ['IOMMU_VIOMMU_ALLOC', 0x3b90, 24],
  ['IOMMU_VDEVICE_ALLOC', 0x3b91, 24],
  ['IOMMU_IOAS_CHANGE_PROCESS', 0x3b92, 8],
  ['IOMMU_VEVENTQ_ALLOC', 0x3b93, 28],
  ['IOMMU_HW_QUEUE_ALLOC', 0x3b94, 40],
  ['VFIO_DEVICE_BIND_IOMMUFD', 0x3b76, 16],
  ['VFIO_DEVICE_ATTACH_IOMMUFD_PT', 0x3b77, 12],
  ['VFIO_DEVICE_DETACH_IOMMUFD_PT', 0x3b78, 8],
]

describe('uAPI layouts and the ioctl table match the reference', () => {
  for (const [name, [size, fields]] of Object.entries(LAYOUTS)) {
    it(`${name}: ${size} bytes, fields at the reference's offsets`, () => {
      const L = STRUCTS.get(name)
      assert.ok(L, `no layout ${name}`)
      assert.equal(L.size, size)
      assert.deepEqual(
        L.fields.map((f) => [f.name, f.offset]),
        fields,
      )
    })
  }

  it('every ioctl: its number and minimum size (§2, §9)', () => {
    assert.deepEqual(
      TABLE.map(([name]) => {
        const io = ioctlByName(name)
        return [name, io?.cmd, io?.minSize]
      }),
      TABLE,
    )
  })
})

describe('uAPI size rules (§1.2) through the one dispatcher', () => {
  it('size below the minimum is EINVAL', () => {
    const t = new IommuBench()
    assert.equal(t.ioctl('IOAS_ALLOC', { size: 8n }).errno, 'EINVAL')
    assert.equal(t.ioctl('HWPT_ALLOC', { size: 20n }).errno, 'EINVAL')
    assert.equal(t.ioctl('GET_HW_INFO', { size: 28n }).errno, 'EINVAL')
    assert.equal(t.ioctl('VIOMMU_ALLOC', { size: 20n }).errno, 'EINVAL')
    t.err('IOAS_ALLOC size=11', 'EINVAL', /size=11/)
    assert.equal(t.objects(), '')
  })

  it('a shorter struct (down to the minimum) is zero-filled and written back at its own size', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const r = t.ioctl('HWPT_ALLOC', { dev_id: BigInt(dev), pt_id: BigInt(ioas) }, { struct: structBytes(ioctlOf('HWPT_ALLOC'), { size: 24n, dev_id: BigInt(dev), pt_id: BigInt(ioas) }).subarray(0, 24) })
    assert.equal(r.errno, undefined)
    assert.equal(r.struct!.length, 24)
    assert.equal(r.struct!.readUInt32LE(16), 3)
    assert.equal(t.describe(3).get('type'), 'hwpt_paging')
  })

  it('a longer struct with a zero tail works (written back at the kernel size); a nonzero tail is E2BIG', () => {
    const t = new IommuBench()
    const ok = Buffer.alloc(16)
    ok.writeUInt32LE(16, 0)
    const r = t.ioctl('IOAS_ALLOC', {}, { struct: ok })
    assert.equal(r.errno, undefined)
    assert.equal(r.struct!.length, 12)
    assert.equal(r.struct!.readUInt32LE(8), 1)
    const bad = Buffer.from(ok)
    bad[15] = 1
    assert.equal(t.ioctl('IOAS_ALLOC', {}, { struct: bad }).errno, 'E2BIG')
    // a text request with a larger size sends zeros past the struct
    assert.equal(t.id('IOAS_ALLOC size=16', 'out_ioas_id'), 2)
  })

  it('VFIO commands read their minimum and ignore the rest (no E2BIG)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const s = Buffer.alloc(32, 0xee)
    structBytes(ioctlOf('DEVICE_ATTACH'), { argsz: 32n, flags: 0n, pt_id: BigInt(ioas) }).copy(s, 0, 0, 12)
    const r = t.ioctl('DEVICE_ATTACH', {}, { struct: s, device: DEV.vtdA })
    assert.equal(r.errno, undefined, r.message)
    assert.equal(t.out('DEVICE_ATTACH', r).pt_id, 3n)
    assert.equal(t.describe(dev).get('attached'), '3 (hwpt_paging)')
  })

  it('a user buffer above 16 MiB is ENOMEM (docs/frames.md), before anything runs', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    // 2^20 ranges of 16 bytes are exactly 16 MiB: accepted; one more is refused
    assert.equal(t.ioctl('IOAS_IOVA_RANGES', { ioas_id: BigInt(ioas), num_iovas: 0x100000n, allowed_iovas: 0x1000n }).errno, undefined)
    const r = t.ioctl('IOAS_IOVA_RANGES', { ioas_id: BigInt(ioas), num_iovas: 0x100001n, allowed_iovas: 0x1000n })
    assert.equal(r.errno, 'ENOMEM')
    assert.match(r.message, /allowed_iovas/)
  })

  it('an unknown ioctl number is ENOTTY: past the table, below it, or with size/direction bits set', () => {
    const t = new IommuBench()
    const before = t.dump()
    for (const cmd of [0x3b95, 0x3b7f, 0x3b9f, 0xc00c3b81, 0x3c81]) {
      const r = dispatch({ ctx: t.ctx }, { cmd, struct: Buffer.from([12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), buffers: new Map() })
      assert.equal(r.errno, 'ENOTTY', `cmd 0x${cmd.toString(16)}`)
      assert.equal(ioctlByCmd(cmd), undefined)
    }
    assert.equal(t.dump(), before)
  })
})

describe('text protocol errors (DESIGN.md)', () => {
  it('an unknown command is ENOTTY naming it', () => {
    const t = new IommuBench()
    t.err('IOAS_FROB ioas_id=1', 'ENOTTY', /IOAS_FROB/)
  })

  it('names in any case, with or without the IOMMU_ prefix', () => {
    const t = new IommuBench()
    assert.equal(t.id('ioas_alloc', 'out_ioas_id'), 1)
    assert.equal(t.id('IOMMU_IOAS_ALLOC', 'out_ioas_id'), 2)
    assert.equal(t.id('Iommu_Ioas_Alloc', 'out_ioas_id'), 3)
  })

  it('an unknown key is EINVAL naming the key (and listing the fields)', () => {
    const t = new IommuBench()
    t.err('IOAS_ALLOC colour=blue', 'EINVAL', /^colour: not a field of IOMMU_IOAS_ALLOC \(fields: size, flags, out_ioas_id\)/)
  })

  it('a malformed value is EINVAL naming the key', () => {
    const t = new IommuBench()
    t.id('IOAS_ALLOC', 'out_ioas_id')
    t.err('IOAS_IOVA_RANGES ioas_id=one', 'EINVAL', /^ioas_id: "one" is not a number/)
    t.err('IOAS_IOVA_RANGES ioas_id=0x100000000', 'EINVAL', /^ioas_id: 4294967296 does not fit u32/)
    t.err('IOAS_MAP ioas_id=1 flags=READABLE|SHINY user_va=0x1000 length=0x1000', 'EINVAL', /^flags: "SHINY" is not one of FIXED_IOVA, WRITEABLE, READABLE/)
    t.err('IOAS_IOVA_RANGES ioas_id', 'EINVAL', /^ioas_id: expected key=value/)
    t.err('IOAS_IOVA_RANGES ioas_id=1 ioas_id=1', 'EINVAL', /given twice/)
    t.err('IOAS_ALLOW_IOVAS ioas_id=1 allowed_iovas=0x1000', 'EINVAL', /start,last pairs/)
  })

  it('blank lines and # comments get no reply', () => {
    const t = new IommuBench()
    t.session.write(0, Buffer.from('\n# a comment\n   \nIOAS_ALLOC\n'))
    assert.equal(t.session.read(0, 4096).toString(), 'ok out_ioas_id=1\n')
  })

  it('several lines in one write get one reply line each, in order', () => {
    const t = new IommuBench()
    t.session.write(0, Buffer.from('IOAS_ALLOC\nIOAS_ALLOC flags=1\nIOAS_ALLOC\n'))
    const replies = t.session.read(0, 4096).toString().split('\n')
    assert.equal(replies[0], 'ok out_ioas_id=1')
    assert.match(replies[1], /^err EOPNOTSUPP /)
    assert.equal(replies[2], 'ok out_ioas_id=2')
  })

  it('CONTEXT answers the context ID and its debug directory', () => {
    const t = new IommuBench()
    assert.deepEqual(t.ok('CONTEXT'), { id: String(t.ctx.id), path: `/sys/kernel/debug/iommufd/${t.ctx.id}` })
    t.err('CONTEXT now', 'EINVAL', /CONTEXT takes no arguments/)
  })

  it('a line longer than 4096 bytes is refused with EMSGSIZE and nothing runs', () => {
    const t = new IommuBench()
    const before = t.dump()
    t.session.write(0, Buffer.from(`IOAS_ALLOC ${'#'.repeat(5000)}\n`))
    assert.match(t.session.read(0, 4096).toString(), /^err EMSGSIZE request line longer than 4096 bytes\n$/)
    assert.equal(t.dump(), before)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
  })

  it('a line that grows past 4096 bytes without a newline makes the write fail (EMSGSIZE), not buffer without end', () => {
    const t = new IommuBench()
    const before = t.dump()
    t.session.write(0, Buffer.from('IOAS_ALLOC '))
    assert.throws(
      () => t.session.write(11, Buffer.alloc(4200, 0x41)),
      (e: unknown) => e instanceof ErrnoError && e.errno === 'EMSGSIZE',
    )
    assert.equal(t.dump(), before)
    // what was pending is dropped: the next line stands alone
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
  })

  it('a line of exactly 4096 bytes is still parsed', () => {
    const t = new IommuBench()
    const line = `IOAS_ALLOC flags=${'0'.repeat(4096 - 'IOAS_ALLOC flags='.length)}`
    assert.equal(line.length, 4096)
    assert.equal(t.id(line, 'out_ioas_id'), 1)
  })
})

describe('binary frames through a dev/iommu session (docs/frames.md)', () => {
  function frame(t: IommuBench, name: string, values: Record<string, bigint>, buffers = new Map<bigint, Buffer | 'fault'>(), target = 0): ReturnType<typeof decodeReply> {
    const io = ioctlOf(name)
    t.session.write(0, encodeRequest({ cmd: io.cmd, target, struct: structBytes(io, values), buffers }))
    return decodeReply(t.session.read(0, 1 << 20))
  }

  it('IOAS_ALLOC: a REPLY with errno 0 and out_ioas_id at offset 8', () => {
    const t = new IommuBench()
    const r = frame(t, 'IOAS_ALLOC', {})
    assert.equal(r.kind, FrameKind.REPLY)
    assert.equal(r.cmd, 0x3b81)
    assert.equal(r.errno, 0)
    assert.equal(r.struct.length, 12)
    assert.equal(r.struct.readUInt32LE(8), 1)
  })

  it('DEVICE_BIND on dev/iommu addresses the device by target N+1', () => {
    const t = new IommuBench()
    const pci = t.pci(DEV.vtdA)
    const r = frame(t, 'DEVICE_BIND', {}, new Map(), pci.vfioIndex + 1)
    assert.equal(r.errno, 0, r.message)
    assert.equal(r.struct.readUInt32LE(12), 1)
    assert.equal(t.describe(1).get('pci'), DEV.vtdA)
  })

  it('a failing request: errno and message, no struct, nothing changed', () => {
    const t = new IommuBench()
    const before = t.dump()
    const r = frame(t, 'IOAS_ALLOC', { flags: 1n })
    assert.equal(r.errnoName, 'EOPNOTSUPP')
    assert.match(r.message, /flags=0x1/)
    assert.equal(r.struct.length, 0)
    assert.equal(t.dump(), before)
  })

  it('input buffers not sent: a RETRY naming them; resent with them: done', () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const before = t.dump()
    const retry = frame(t, 'IOAS_ALLOW_IOVAS', { ioas_id: BigInt(ioas), num_iovas: 1n, allowed_iovas: 0x7000n })
    assert.equal(retry.kind, FrameKind.RETRY)
    assert.deepEqual(retry.buffers, [{ addr: 0x7000n, len: 16 }])
    assert.equal(t.dump(), before)
    const done = frame(t, 'IOAS_ALLOW_IOVAS', { ioas_id: BigInt(ioas), num_iovas: 1n, allowed_iovas: 0x7000n }, new Map([[0x7000n, u64s(0x10000n, 0x1ffffn)]]))
    assert.equal(done.kind, FrameKind.REPLY)
    assert.equal(done.errno, 0)
    assert.equal(t.describe(ioas).get('allowed_iovas'), '0x10000-0x1ffff')
  })

  it('IOVA_RANGES EMSGSIZE: errno 90 with the struct (num_iovas) and the ranges that fit', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    const before = t.dump()
    const r = frame(t, 'IOAS_IOVA_RANGES', { ioas_id: BigInt(ioas), num_iovas: 1n, allowed_iovas: 0x8000n })
    assert.equal(t.dump(), before)
    assert.equal(r.errno, 90)
    assert.equal(r.struct.readUInt32LE(8), 2)
    assert.deepEqual(r.buffers, [{ addr: 0x8000n, len: 16, data: u64s(0n, 0x7ffffffn) }])
  })

  it('a frame whose total_len is above the limit is refused (EMSGSIZE) and nothing of it is kept', () => {
    const t = new IommuBench()
    const io = ioctlOf('IOAS_ALLOC')
    const f = encodeRequest({ cmd: io.cmd, target: 0, struct: structBytes(io, {}), buffers: new Map() })
    f.writeUInt32LE(MAX_FRAME + 8, 8)
    const before = t.dump()
    assert.throws(
      () => t.session.write(0, f),
      (e: unknown) => e instanceof ErrnoError && e.errno === 'EMSGSIZE',
    )
    assert.equal(t.dump(), before)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
  })

  it('text and frames mixed on one descriptor share the context', () => {
    const t = new IommuBench()
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
    assert.equal(frame(t, 'IOAS_ALLOC', {}).struct.readUInt32LE(8), 2)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 3)
  })
})

describe('a bug in a handler', () => {
  it('answers EIO, changes nothing, and the session keeps serving', () => {
    const t = new IommuBench()
    t.id('IOAS_ALLOC', 'out_ioas_id')
    const stub = sinon.stub(ioas, 'ioasAlloc').throws(new TypeError('boom'))
    try {
      t.err('IOAS_ALLOC', 'EIO', /internal error/)
      assert.equal(stub.callCount, 1)
    } finally {
      stub.restore()
    }
    assert.match(t.world.trace.recent().join('\n'), /bug: ctx\d+ IOAS_ALLOC: TypeError: boom/)
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 2)
  })
})
