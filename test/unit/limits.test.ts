/**
 * Each limit of src/util/limits.ts: the request at the limit is served, the
 * one past it gets the limit's errno, a message naming the field, and changes
 * nothing. docs/limits.md is checked to be the same table.
 */
import { strict as assert } from 'node:assert'
import { readFileSync } from 'node:fs'
import * as path from 'node:path'
import * as sinon from 'sinon'
import { dmaPort } from '../../src/fs/dma-file'
import { AttributeFile } from '../../src/fs/nodes'
import { DmaFlag } from '../../src/iommufd/dma'
import { Ioas } from '../../src/iommufd/ioas'
import { World } from '../../src/iommufd/world'
import { parseDmaRequest } from '../../src/uapi/dma-text'
import { MAX_FRAME, decodeReply, encodeRequest } from '../../src/uapi/frame'
import { IOCTLS } from '../../src/uapi/ioctls'
import { IommuSession } from '../../src/uapi/session'
import { ErrnoError } from '../../src/util/errno'
import { LIMITS } from '../../src/util/limits'
import { TraceLog } from '../../src/util/trace'
import { PinnedPages } from '../../src/iommufd/pages'
import { DEV, IommuBench, SMMU0, defaultMachine, ioctlOf, smmuNestSetup, structBytes } from '../helpers/iommufd'

const ROOT = path.join(__dirname, '..', '..', '..')

/** Sends one frame on t's session and returns the decoded reply. */
function frame(t: IommuBench, name: string, values: Record<string, bigint>, buffers = new Map<bigint, Buffer | 'fault'>(), struct?: Buffer): ReturnType<typeof decodeReply> {
  const io = ioctlOf(name)
  const before = t.dump()
  t.session.write(0, encodeRequest({ cmd: io.cmd, target: 0, struct: struct ?? structBytes(io, values), buffers }))
  const r = decodeReply(t.session.read(0, 1 << 20))
  if (r.errno) assert.equal(t.dump(), before, `${name} failed with ${r.errnoName} but changed the state`)
  return r
}

function throwsErrno(fn: () => unknown, errno: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ErrnoError && e.errno === errno && message.test(e.message))
}

describe('limits', () => {
  it('docs/limits.md lists every limit of src/util/limits.ts with its value and errno, and nothing else', () => {
    const rows = readFileSync(path.join(ROOT, 'docs', 'limits.md'), 'utf8')
      .split('\n')
      .filter((l) => /^\| [^-|]/.test(l) && !l.startsWith('| limit '))
      .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()))
    const expected = Object.values(LIMITS).map((l) => [l.what, String(l.max), l.errno ?? '-'])
    assert.deepEqual(rows, expected)
  })

  it('the struct limit is the frame limit less the header: the largest struct a frame can carry', () => {
    assert.equal(LIMITS.structSize.max, MAX_FRAME - 32)
  })

  describe('a struct size (text size=, frame size)', () => {
    it('IOAS_ALLOC size=0xffffffff is EFAULT at once (regression: it allocated and scanned 4 GiB), and changes nothing', () => {
      const t = new IommuBench()
      t.err('IOAS_ALLOC size=0xffffffff', 'EFAULT', /^size=4294967295: iommufs carries at most 17825760 struct bytes/)
      t.err(`IOAS_ALLOC size=${LIMITS.structSize.max + 1}`, 'EFAULT', /size=17825761/)
      assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
    })

    it('the largest size a frame can carry is served in text (its tail is zero)', () => {
      const t = new IommuBench()
      assert.equal(t.ok(`IOAS_ALLOC size=${LIMITS.structSize.max}`).out_ioas_id, '1')
    })

    it('in a frame: a size above the limit is EFAULT before the tail is looked at; a nonzero tail within it is E2BIG', () => {
      const t = new IommuBench()
      const io = ioctlOf('IOAS_ALLOC')
      const huge = structBytes(io, { size: 0xffffffffn })
      assert.equal(frame(t, 'IOAS_ALLOC', {}, undefined, huge).errnoName, 'EFAULT')
      const big = Buffer.alloc(4 << 20)
      big.writeUInt32LE(big.length, 0)
      big[big.length - 1] = 1
      assert.equal(frame(t, 'IOAS_ALLOC', {}, undefined, big).errnoName, 'E2BIG')
      big[big.length - 1] = 0
      assert.equal(frame(t, 'IOAS_ALLOC', {}, undefined, big).errnoName, undefined)
    })

    it('in a frame: the tail is walked as copy_struct_from_user walks it: a nonzero byte sent is E2BIG, then bytes not sent (the sender could not read them) are EFAULT', () => {
      const t = new IommuBench()
      const short = Buffer.alloc(0x100)
      short.writeUInt32LE(0x10000, 0)
      assert.equal(frame(t, 'IOAS_ALLOC', {}, undefined, short).errnoName, 'EFAULT')
      short[0x80] = 1
      assert.equal(frame(t, 'IOAS_ALLOC', {}, undefined, short).errnoName, 'E2BIG')
      // past the limit too: the nonzero byte comes first
      short.writeUInt32LE(0xffffffff, 0)
      assert.equal(frame(t, 'IOAS_ALLOC', {}, undefined, short).errnoName, 'E2BIG')
      assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 1)
    })

    it("the shim's header agrees: it sends at most a user buffer's bytes of a struct, and probes no more than any struct's size for writing", () => {
      const header = readFileSync(path.join(ROOT, 'ioctl-shim', 'iommufs-shim.h'), 'utf8')
      const value = (name: string): number => {
        const m = new RegExp(`#define ${name} \\(?([0-9u* ]+)\\)?`).exec(header)
        assert.ok(m, name)
        return m[1].split('*').reduce((p, f) => p * parseInt(f, 10), 1)
      }
      assert.equal(value('IOMF_MAX_STRUCT'), LIMITS.userBuffer.max)
      const largest = Math.max(...IOCTLS.map((io) => io.layout.size))
      assert.ok(largest <= value('IOMF_MAX_WRITTEN_BACK'), `a ${largest}-byte struct is larger than IOMF_MAX_WRITTEN_BACK`)
    })

    it('VFIO commands ignore argsz past their struct: a huge argsz is not refused for its size; BIND walks its tail as iommufd does', () => {
      const t = new IommuBench()
      assert.match(t.send('DEVICE_BIND pci=0000:00:01.0 argsz=0xffffffff'), /^err EFAULT argsz=4294967295: iommufs carries at most/)
      assert.match(t.send('DEVICE_BIND pci=0000:00:01.0 argsz=32 tail=1'), /^err E2BIG argsz=32: bytes past the 24-byte vfio_device_bind_iommufd must be zero/)
      assert.match(t.send('DEVICE_BIND pci=0000:00:01.0 argsz=32'), /^ok out_devid=1/)
      assert.match(t.send('DEVICE_GET_INFO pci=0000:00:01.0 argsz=0xffffffff'), /^ok /)
    })
  })

  it(`contexts: ${LIMITS.contexts.max} opens of dev/iommu are served, the next is ENFILE; a close makes room`, () => {
    const world = new World(defaultMachine())
    const sessions = Array.from({ length: LIMITS.contexts.max }, () => new IommuSession(world))
    throwsErrno(() => new IommuSession(world), 'ENFILE', /1024 contexts are open/)
    assert.equal(world.contexts.size, LIMITS.contexts.max)
    sessions[0].release()
    assert.ok(new IommuSession(world).ctx.id > 0)
  })

  it(`objects: a context holds ${LIMITS.objects.max} IDs; the next allocation is ENOSPC and changes nothing; a destroy makes room with the lowest ID`, () => {
    const t = new IommuBench()
    for (let i = 0; i < LIMITS.objects.max; i++) t.ctx.objects.insert(new Ioas())
    // (the whole-world dump of 65536 objects is left out: the table's size and top ID say the same here)
    assert.match(t.send('IOAS_ALLOC'), /^err ENOSPC no free object ID: this context holds 65536 objects/)
    assert.equal(t.ctx.objects.size, LIMITS.objects.max)
    assert.equal(t.ctx.objects.find(LIMITS.objects.max + 1), undefined)
    t.ok('DESTROY id=77')
    assert.equal(t.id('IOAS_ALLOC', 'out_ioas_id'), 77)
  })

  it(`mappings: an IOAS holds ${LIMITS.mappings.max}; the next IOAS_MAP is ENOMEM and changes nothing; an unmap makes room`, function () {
    // a quarter of a million real maps: 10-17 s on a shared 2-core machine, so more than the suite's default
    this.timeout(60000)
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const o = t.ctx.objects.find(ioas) as Ioas
    // filled directly (the text path would take seconds): 4 KiB areas from 4 KiB up, where first fit puts them
    for (let i = 0; i < LIMITS.mappings.max; i++) o.insert({ iova: 0x1000n + BigInt(i) * 0x1000n, length: 0x1000n, userVa: 0x100000n, flags: 6, pages: new PinnedPages(false) })
    const map = `IOAS_MAP ioas_id=${ioas} user_va=0x100000 length=0x1000 flags=READABLE`
    assert.match(t.send(map), /^err ENOMEM ioas 1 holds 262144 mappings, the most iommufs keeps in one IOAS$/)
    assert.equal(o.mappingCount, LIMITS.mappings.max)
    assert.match(t.send(`IOAS_UNMAP ioas_id=${ioas} iova=0x200000 length=0x1000`), /^ok length=0x1000/)
    assert.equal(t.ok(map).iova, '0x200000')
    // unmapping everything at once is one step, not one per mapping
    assert.match(t.send(`IOAS_UNMAP ioas_id=${ioas} iova=0 length=0xffffffffffffffff`), /^ok length=0x40000000$/)
    assert.equal(o.mappingCount, 0)
  })

  it(`allowed IOVA ranges: ${LIMITS.allowedIovas.max} are accepted, more are ENOMEM before any is read (regression: the overlap check was n^2)`, () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const n = LIMITS.allowedIovas.max
    const ranges = Buffer.alloc(n * 16)
    // given in descending order, so the check must sort
    for (let i = 0; i < n; i++) {
      ranges.writeBigUInt64LE(BigInt(n - i) * 0x10000n, i * 16)
      ranges.writeBigUInt64LE(BigInt(n - i) * 0x10000n + 0xfffn, i * 16 + 8)
    }
    const args = (count: number): Record<string, bigint> => ({ ioas_id: BigInt(ioas), num_iovas: BigInt(count), allowed_iovas: 0x1000n })
    const tooMany = frame(t, 'IOAS_ALLOW_IOVAS', args(n + 1), new Map([[0x1000n, Buffer.alloc((n + 1) * 16)]]))
    assert.equal(tooMany.errnoName, 'ENOMEM')
    assert.match(tooMany.message, /num_iovas=1025: iommufs takes at most 1024 ranges/)
    // an overlap between two ranges far apart in the array is still found
    const overlapping = Buffer.from(ranges)
    overlapping.writeBigUInt64LE(BigInt(n) * 0x10000n + 0x800n, (n - 1) * 16)
    overlapping.writeBigUInt64LE(BigInt(n) * 0x10000n + 0x900n, (n - 1) * 16 + 8)
    const ov = frame(t, 'IOAS_ALLOW_IOVAS', args(n), new Map([[0x1000n, overlapping]]))
    assert.equal(ov.errnoName, 'EINVAL')
    assert.match(ov.message, /allowed_iovas\[0\] overlaps allowed_iovas\[1023\]/)
    assert.equal(frame(t, 'IOAS_ALLOW_IOVAS', args(n), new Map([[0x1000n, ranges]])).errnoName, undefined)
    assert.equal(t.describe(ioas).get('allowed_iovas')!.split(' ').length, n)
  })

  describe('invalidation', () => {
    it(`HWPT_INVALIDATE: ${LIMITS.invalidateEntries.max} entries are handled, more are EINVAL with entry_num=0 written back (regression: 2^19 entries held the server for seconds)`, () => {
      const t = new IommuBench()
      const { viommu } = smmuNestSetup(t)
      const n = LIMITS.invalidateEntries.max
      const cmds = Buffer.alloc((1 << 19) * 16)
      for (let i = 0; i < 1 << 19; i++) cmds.writeBigUInt64LE(0x10n, i * 16) // TLBI_NH_ALL
      const args = (count: number): Record<string, bigint> => ({ hwpt_id: BigInt(viommu), data_uptr: 0x1000n, data_type: 1n, entry_len: 16n, entry_num: BigInt(count) })
      for (const count of [n + 1, 1 << 19]) {
        const r = frame(t, 'HWPT_INVALIDATE', args(count), new Map([[0x1000n, cmds]]))
        assert.equal(r.errnoName, 'EINVAL')
        assert.match(r.message, new RegExp(`entry_num=${count}: iommufs takes at most 4096 entries per call`))
        assert.equal(r.struct.readUInt32LE(24), 0)
      }
      const ok = frame(t, 'HWPT_INVALIDATE', args(n), new Map([[0x1000n, cmds.subarray(0, n * 16)]]))
      assert.equal(ok.errnoName, undefined)
      assert.equal(ok.struct.readUInt32LE(24), n)
    })

    it(`the ring form and vCMDQs take at most ${LIMITS.ringEntries.max} entries (q_index_bits, log2size 12); 13 is EINVAL`, () => {
      const t = new IommuBench()
      const { viommu } = smmuNestSetup(t)
      t.err(`HWPT_INVALIDATE_RING hwpt_id=${viommu} q_index_bits=13 cmd=TLBI_NH_ALL`, 'EINVAL', /q_index_bits=13: iommufs takes rings of at most 4096 entries/)
      assert.deepEqual(t.ok(`HWPT_INVALIDATE_RING hwpt_id=${viommu} q_index_bits=12 cmd=TLBI_NH_ALL`), { q_cons: '0x1' })
      // an SMMU whose queue may have 2^19 entries (the default machine's have 2^8)
      const smmu = t.smmu(SMMU0)
      const regs = smmu.registers.withField('IDR1.CMDQS', 19n)
      const stub = sinon.stub(smmu, 'registers').get(() => regs)
      try {
        t.err(`VCMDQ_ALLOC viommu_id=${viommu} log2size=13`, 'EINVAL', /log2size=13: .* takes 1\.\.19 \(IDR1\.CMDQS\), iommufs at most 12 \(4096 entries\)/)
        assert.ok(t.id(`VCMDQ_ALLOC viommu_id=${viommu} log2size=12`, 'out_vcmdq_id') > 0)
      } finally {
        stub.restore()
      }
    })
  })

  it(`a user buffer above ${LIMITS.userBuffer.max} bytes is ENOMEM before it is asked for`, () => {
    const t = new IommuBench()
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const r = frame(t, 'IOAS_ALLOW_IOVAS', { ioas_id: BigInt(ioas), num_iovas: BigInt(LIMITS.userBuffer.max / 16 + 1), allowed_iovas: 0x1000n })
    assert.equal(r.errnoName, 'ENOMEM')
    assert.match(r.message, /allowed_iovas: a 16777232-byte buffer is more than iommufs accepts/)
  })

  it('a text HWPT_INVALIDATE whose entry_len makes the array larger than a user buffer is ENOMEM (regression: it built the 5 GB array, a handler bug)', () => {
    const t = new IommuBench()
    const { viommu } = smmuNestSetup(t)
    t.err(`HWPT_INVALIDATE hwpt_id=${viommu} entry_len=0x987a4322 cmd=TLBI_NH_ALL cmd=TLBI_NH_ALL`, 'ENOMEM', /data_uptr: a 5116298820-byte buffer is more than iommufs accepts/)
    assert.ok(!t.world.trace.recent().some((l) => / bug: /.test(l)))
  })

  it(`an attribute write above ${LIMITS.attributeWrite.max} bytes is E2BIG and not stored`, () => {
    const stored: string[] = []
    const f = new AttributeFile(() => '', (v) => stored.push(v)).open()
    throwsErrno(() => f.write(0, Buffer.alloc(LIMITS.attributeWrite.max + 1, 0x41)), 'E2BIG', /at most 4096 bytes/)
    assert.equal(f.write(0, Buffer.alloc(LIMITS.attributeWrite.max, 0x41)), LIMITS.attributeWrite.max)
    assert.equal(stored.length, 1)
  })

  describe(`a DMA request above ${LIMITS.dmaLength.max} bytes is E2BIG, on every way in`, () => {
    const max = LIMITS.dmaLength.max

    it('the port text: len= and data= at the limit parse, one byte more is E2BIG naming the field', () => {
      assert.equal(parseDmaRequest(`read iova=0 len=${max}`).len, max)
      throwsErrno(() => parseDmaRequest(`read iova=0 len=${max + 1}`), 'E2BIG', /^len=1048577: at most 1048576 bytes per request$/)
      assert.equal(parseDmaRequest(`write iova=0 data=${'ab'.repeat(max)}`).len, max)
      throwsErrno(() => parseDmaRequest(`write iova=0 data=${'ab'.repeat(max + 1)}`), 'E2BIG', /^data: 1048577 bytes: at most 1048576 bytes per request$/)
    })

    it('the port file: a line longer than the largest request is E2BIG, the reply says so, and the port still serves', () => {
      const t = new IommuBench()
      const f = dmaPort(t.world, DEV.smmu0a).open('readwrite')
      throwsErrno(() => f.write(0, Buffer.alloc(2 * max + 257, 0x61)), 'E2BIG', /^request line over 2097408 bytes \(data of at most 1048576 bytes in hex\)$/)
      assert.match((f.read(0, 4096) as Buffer).toString(), /^err E2BIG request line over 2097408 bytes/)
      throwsErrno(() => f.write(0, Buffer.from(`read iova=0 len=${max + 1}\n`)), 'E2BIG', /^len=1048577:/)
    })

    it('IOMMUFS_DMA: length above the limit is E2BIG before the data is read (regression: a write read `length` bytes first), and changes nothing', () => {
      const t = new IommuBench()
      const dev = BigInt(t.bind(DEV.smmu0a))
      const req = (length: number): Record<string, bigint> => ({ dev_id: dev, iova: 0x100000n, length: BigInt(length), flags: BigInt(DmaFlag.WRITE), in_data_uptr: 0x5000n })
      const unreadable = new Map<bigint, Buffer | 'fault'>([[0x5000n, 'fault']])
      const over = frame(t, 'IOMMUFS_DMA', req(max + 1), unreadable)
      assert.equal(over.errnoName, 'E2BIG')
      assert.match(over.message, /^length=1048577: at most 1048576 bytes per request$/)
      // at the limit the length passes and the unreadable data is what fails
      assert.equal(frame(t, 'IOMMUFS_DMA', req(max), unreadable).errnoName, 'EFAULT')
    })
  })

  describe(`a write carries at most ${LIMITS.requestsPerWrite.max} requests (regression: one 1 MiB write of CONTEXT lines held the server for 0.8 s)`, () => {
    const max = LIMITS.requestsPerWrite.max

    it('dev/iommu: that many lines and frames are all answered; one more line, blank or not, is E2BIG before any runs', () => {
      const t = new IommuBench()
      const alloc = encodeRequest({ cmd: ioctlOf('IOAS_ALLOC').cmd, target: 0, struct: structBytes(ioctlOf('IOAS_ALLOC'), {}), buffers: new Map() })
      t.session.write(0, Buffer.concat([Buffer.from('IOAS_ALLOC\n'.repeat(max - 2) + '\n'), alloc]))
      assert.equal(t.ctx.objects.size, max - 1)
      const before = t.dump()
      for (const extra of ['\n', '# note\n', 'IOAS_ALLOC\n']) {
        throwsErrno(() => t.session.write(0, Buffer.from('IOAS_ALLOC\n'.repeat(max) + extra)), 'E2BIG', /^more than 64 requests \(lines or frames\) in one write; send them in several writes$/)
        assert.equal(t.dump(), before)
      }
      // a partial line past the limit waits for its newline: it is not a request yet
      t.session.write(0, Buffer.from('IOAS_ALLOC\n'.repeat(max) + 'IOAS_AL'))
      assert.equal(t.ctx.objects.size, 2 * max - 1)
      t.session.write(0, Buffer.from('LOC\n'))
      assert.equal(t.ctx.objects.size, 2 * max)
    })

    it('a DMA port: that many lines are answered; one more is E2BIG before any runs, and the port still serves', () => {
      const t = new IommuBench()
      const f = dmaPort(t.world, DEV.smmu0a).open('readwrite')
      f.write(0, Buffer.from('translate iova=0x1000\n'.repeat(max)))
      const trace = t.world.trace.count
      throwsErrno(() => f.write(0, Buffer.from('translate iova=0x1000\n'.repeat(max + 1))), 'E2BIG', /^more than 64 request lines in one write/)
      assert.equal(t.world.trace.count, trace + 1, 'only the refusal is traced: no request ran')
      assert.match((f.read(0, 4096) as Buffer).toString(), /^err E2BIG more than 64 request lines/)
    })
  })

  it(`unfinished frames of all descriptors hold at most ${LIMITS.pendingBytes.max} bytes; the write past it is ENOMEM and drops its frame; a close gives the room back (regression: 20 descriptors each 16 MiB into a frame grew the server by 290 MiB, a user could hold 1024 x 256 of them)`, () => {
    const world = new World(defaultMachine())
    const frameStart = (): Buffer => {
      const b = Buffer.alloc(16 << 20)
      b.writeUInt32LE(0x464d4f49, 0) // "IOMF"
      b.writeUInt16LE(1, 4)
      b.writeUInt32LE(LIMITS.frame.max, 8)
      b.writeUInt32LE(ioctlOf('IOAS_ALLOC').cmd, 12)
      return b
    }
    const fits = Math.floor(LIMITS.pendingBytes.max / (16 << 20))
    const sessions = Array.from({ length: fits + 1 }, () => new IommuSession(world))
    for (const s of sessions.slice(0, fits)) assert.equal(s.write(0, frameStart()), 16 << 20)
    const last = sessions[fits]
    throwsErrno(() => last.write(0, frameStart()), 'ENOMEM', /^unfinished frames of all users hold 134217728 bytes; 16777216 more would pass 134217728: this frame is dropped/)
    sessions[0].release()
    assert.equal(last.write(0, frameStart()), 16 << 20, 'a closed descriptor\'s frame no longer counts')
    for (const s of sessions) s.release()
  })

  it(`the trace keeps the last ${LIMITS.traceLines.max} lines and cuts a line at ${LIMITS.traceLineLength.max} characters`, () => {
    const trace = new TraceLog()
    for (let i = 1; i <= LIMITS.traceLines.max + 10; i++) trace.emit('t', `line ${i}`)
    const lines = trace.recent()
    assert.equal(lines.length, LIMITS.traceLines.max)
    assert.match(lines[0], /t: line 11$/)
    trace.emit('t', 'x'.repeat(5000))
    const last = trace.recent()[LIMITS.traceLines.max - 1]
    assert.equal(last.length, LIMITS.traceLineLength.max)
    assert.ok(last.endsWith('xx...'))
  })
})
