/**
 * IOMMU_VEVENTQ_ALLOC and what reaches it, in-process: the allocation's
 * rules, every SMMUv3 event a nested device's DMA can cause forwarded byte
 * for byte with the vSID in place of the StreamID (and the ones the driver
 * keeps to itself), overflow and LOST_EVENTS, the read rules, sequence
 * wrap, TRIGGER_VEVENT into a SELFTEST queue, and the memory bound.
 */
import { Viommu } from '../../src/iommufd/viommu'
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench, SMMU0, failingAt } from '../helpers/iommufd'
import { FileBacking } from '../../src/memory/backing'
import { Region } from '../../src/memory/region'
import { s1Cd, wordBytes } from '../../src/hw/smmuv3/build'
import { deviceDma } from '../../src/iommufd/dma'
import { Veventq } from '../../src/iommufd/veventq'
import { TEST_CMD_UNION } from '../../src/uapi/structs'
import { encode } from '../../src/uapi/layout'
import { LIMITS } from '../../src/util/limits'
import { ErrnoError } from '../../src/util/errno'

const GUEST = 0x4000_0000n
const VSID = 0x42n
/** Page descriptor bits: nG, AF, inner shareable, AP[1] (user), AttrIndx 1, page. */
const PAGE = 0x800n | 0x400n | 0x300n | 0x40n | 0x4n | 3n
const RO = 0x80n
const AF = 0x400n

/**
 * Guest RAM with a CD table of two CDs at IPA 0x40000000 (CD0 valid, CD1
 * zero) and CD0's tables: VA 0x1000 RW, 0x2000 read-only, 0x3000 AF = 0,
 * 0x4000 -> an output beyond CD0's 40-bit IPS, 0x6000 -> an IPA stage 2
 * does not map; 0x5000 is unmapped.
 */
function guestRam(file: string): void {
  fs.writeFileSync(file, Buffer.alloc(0x20_0000))
  const ram = FileBacking.open(file)
  const region = new Region(ram, GUEST, 0x20_0000n, GUEST)
  const put = (ipa: bigint, v: bigint): void => void region.write(ipa, wordBytes([v]))
  region.write(GUEST, wordBytes(s1Cd({ asid: 1, ttb0: GUEST + 0x1000n, ipsBits: 40 })))
  put(GUEST + 0x1000n, GUEST + 0x2000n + 3n)
  put(GUEST + 0x2000n, GUEST + 0x3000n + 3n)
  put(GUEST + 0x3000n, GUEST + 0x4000n + 3n)
  const l3 = (va: bigint, v: bigint): void => put(GUEST + 0x4000n + (va >> 12n) * 8n, v)
  l3(0x1000n, GUEST + 0x10000n + PAGE)
  l3(0x2000n, GUEST + 0x11000n + (PAGE | RO))
  l3(0x3000n, GUEST + 0x12000n + (PAGE & ~AF))
  l3(0x4000n, (1n << 40n) + PAGE)
  l3(0x6000n, 0x5000_0000n + PAGE)
  ram.release()
}

/** The record a vEVENTQ read returns, built from the spec's field positions (SMMUv3 §7.3). */
function record(seq: number, f: { id: number; ssid?: number; ssv?: boolean; rnw?: boolean; s2?: boolean; cls?: number; input?: bigint; ipa?: bigint }): Buffer {
  const b = Buffer.alloc(40)
  b.writeUInt32LE(0, 0)
  b.writeUInt32LE(seq, 4)
  const w0 = BigInt(f.id) | (f.ssid !== undefined ? (f.ssv === false ? 0n : 1n << 11n) | (BigInt(f.ssid) << 12n) : 0n) | (VSID << 32n)
  const w1 = (f.rnw ? 1n << 35n : 0n) | (f.s2 ? 1n << 39n : 0n) | (BigInt(f.cls ?? 0) << 40n)
  ;[w0, w1, f.input ?? 0n, f.ipa ?? 0n].forEach((w, k) => b.writeBigUInt64LE(w, 8 + k * 8))
  return b
}

describe('vEVENTQ', () => {
  let dir: string
  let file: string
  let t: IommuBench
  let dev: number
  let viommu: number
  const dma = (iova: bigint, o: { write?: boolean; pasid?: number } = {}) =>
    deviceDma(t.world, DEV.smmu0a, o.write ? { op: 'write', iova, len: 4, data: Buffer.from('abcd'), pasid: o.pasid } : { op: 'read', iova, len: 4, pasid: o.pasid })
  /** A nested HWPT from guest STE words, attached. */
  const nest = (ste0: bigint, ste1 = 0n): void => {
    const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} data_type=ARM_SMMUV3 data.ste=0x${ste0.toString(16)},0x${ste1.toString(16)}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${h}`)
  }
  const queue = (id: number): Veventq => t.ctx.objects.find(id) as Veventq

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'veventq-'))
    file = path.join(dir, 'guest')
    guestRam(file)
    t = new IommuBench()
    dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x200000 iova=0x40000000`)
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent}`)
    viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x${VSID.toString(16)}`)
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('ALLOC: the kernel\'s checks and errnos in its order; one per vIOMMU and type; the reply names the queue file', () => {
    t.err(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=4 flags=1`, 'EOPNOTSUPP', /flags/)
    t.err(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=4 __reserved=1`, 'EOPNOTSUPP', /__reserved/)
    t.err(`VEVENTQ_ALLOC viommu_id=${viommu} type=DEFAULT veventq_depth=4`, 'EOPNOTSUPP', /type=DEFAULT/)
    t.err(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=0`, 'EINVAL', /veventq_depth=0/)
    // the kernel's VEVENTQ_MAX_DEPTH is 2^19, checked before the vIOMMU is looked up
    t.err('VEVENTQ_ALLOC viommu_id=999 type=ARM_SMMUV3 veventq_depth=0x80001', 'EINVAL', /veventq_depth=524289: must be 1 to 524288/)
    t.err('VEVENTQ_ALLOC viommu_id=999 type=ARM_SMMUV3 veventq_depth=4', 'ENOENT', /viommu_id=999/)
    t.err(`VEVENTQ_ALLOC viommu_id=${dev} type=ARM_SMMUV3 veventq_depth=4`, 'ENOENT', /viommu_id/)
    const r = t.ok(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=4`)
    assert.equal(r.out_veventq_fd, r.out_veventq_id)
    assert.equal(r.path, `sys/kernel/debug/iommufd/${t.ctx.id}/${r.out_veventq_id}.veventq/queue`)
    t.err(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=8`, 'EEXIST', /already has vEVENTQ/)
    // an unknown nonzero type is accepted (the core checks no other value); 2^19 is the deepest
    const other = t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=0x77 veventq_depth=0x80000`, 'out_veventq_id')
    assert.equal(queue(other).describe().find(([k]) => k === 'veventq_type')![1], '0x77')
    // the queues hold the vIOMMU
    t.err(`DESTROY id=${viommu}`, 'EBUSY', /users/)
    t.ok(`DESTROY id=${other}`)
    t.ok(`DESTROY id=${r.out_veventq_id}`)
    // the type is free again
    t.ok(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=4`)
  })

  it('every event a nested device\'s DMA can cause reaches the vEVENTQ byte for byte, StreamID replaced by the vSID', () => {
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=64`, 'out_veventq_id'))
    // STE: S1 translate, CD table at GUEST, S1CDMax = 0
    nest(GUEST | 0xbn)
    const expected: Buffer[] = []
    let seq = 0
    const expect = (f: Parameters<typeof record>[1]) => expected.push(record(seq++, f))
    assert.equal(dma(0x1000n).data?.length, 4)
    dma(0x5000n)
    expect({ id: 0x10, rnw: true, cls: 2, input: 0x5000n }) // F_TRANSLATION, CLASS = IN
    dma(0x2000n, { write: true })
    expect({ id: 0x13, rnw: false, cls: 2, input: 0x2000n }) // F_PERMISSION
    dma(0x3000n)
    expect({ id: 0x12, rnw: true, cls: 2, input: 0x3000n }) // F_ACCESS
    dma(0x4000n)
    expect({ id: 0x11, rnw: true, cls: 2, input: 0x4000n }) // F_ADDR_SIZE
    dma(0x1000n, { pasid: 1 })
    // configuration events carry the stream fields only (the rest is RES0, §7.3); C_BAD_SUBSTREAMID has no SSV bit
    expect({ id: 0x08, ssid: 1, ssv: false }) // C_BAD_SUBSTREAMID
    // STE: S1CDMax = 1 (two CDs), S1DSS = terminate
    nest(GUEST | 0xbn | (1n << 59n))
    dma(0x1000n)
    expect({ id: 0x06 }) // F_STREAM_DISABLED
    dma(0x1000n, { pasid: 1 })
    expect({ id: 0x0a, ssid: 1 }) // C_BAD_CD: CD1 has V = 0
    const got = q.read(4096)
    assert.equal(got.toString('hex'), Buffer.concat(expected).toString('hex'))
    // the physical records carried the physical StreamID
    assert.match(t.hw(SMMU0, 'eventq'), /recorded: 7\tlost: 0/)
    assert.equal(t.world.trace.recent().filter((l) => / -> vEVENTQ \d+ of vIOMMU \d+ vsid=0x42/.test(l)).length, 7)
  })

  it('what the driver keeps: a stage-2 fault (S2 = 1) is logged, not forwarded; without a vEVENTQ every event is logged', () => {
    nest(GUEST | 0xbn)
    dma(0x1000n, { pasid: 1 })
    assert.match(t.world.trace.recent().join('\n'), /eventq: event 0x8 received: 0x0000000800001008 .*logged: vIOMMU \d+ has no ARM_SMMUV3 vEVENTQ/)
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=4`, 'out_veventq_id'))
    dma(0x6000n)
    assert.match(t.world.trace.recent().join('\n'), /logged: a stage-2 fault/)
    assert.equal(q.queue.length, 0)
    // a device that is not nested: its events are only logged
    const other = t.bind(DEV.smmu0b)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`DEVICE_ATTACH dev_id=${other} pt_id=${ioas}`)
    deviceDma(t.world, DEV.smmu0b, { op: 'read', iova: 0x1000n, len: 4 })
    assert.match(t.world.trace.recent().join('\n'), /sid=0x10 .*logged: the master has no vSID \(no nested domain attached through a vDEVICE\)/)
    assert.equal(q.queue.length, 0)
  })

  it('the vSID is the one the nested attach found (arm_smmu_attach_prepare_vmaster): kept after its vDEVICE is destroyed, and a new vDEVICE counts from the next attach', () => {
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=8`, 'out_veventq_id'))
    nest(GUEST | 0xbn)
    const vsids = (): string[] => t.world.trace.recent().flatMap((l) => / -> vEVENTQ \d+ of vIOMMU \d+ (vsid=0x[0-9a-f]+)/.exec(l)?.[1] ?? [])
    dma(0x1000n, { pasid: 1 })
    assert.deepEqual(vsids(), ['vsid=0x42'])
    t.ok(`DESTROY id=${(t.ctx.objects.find(viommu) as Viommu).vdevices.get(VSID)!.id}`)
    dma(0x1000n, { pasid: 1 })
    assert.deepEqual(vsids(), ['vsid=0x42', 'vsid=0x42'])
    t.ok(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x77`)
    dma(0x1000n, { pasid: 1 })
    assert.deepEqual(vsids(), ['vsid=0x42', 'vsid=0x42', 'vsid=0x42'])
    nest(GUEST | 0xbn)
    dma(0x1000n, { pasid: 1 })
    assert.deepEqual(vsids(), ['vsid=0x42', 'vsid=0x42', 'vsid=0x42', 'vsid=0x77'])
    assert.equal(q.queue.length, 4)
  })

  it('overflow: depth real events, then one LOST_EVENTS header at the tail renumbered per loss; the next event that fits replaces it', () => {
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=2`, 'out_veventq_id'))
    nest(GUEST | 0xbn)
    for (let i = 0; i < 5; i++) dma(0x5000n)
    const hdr = (r: Buffer, off: number) => [r.readUInt32LE(off), r.readUInt32LE(off + 4)]
    assert.deepEqual(q.queue.peek().map((r) => hdr(r, 0)), [[0, 0], [0, 1], [1, 4]], 'two events, then LOST_EVENTS with sequence 4 (2 and 3 were used by earlier losses)')
    assert.match(q.files().events.read(0, 4096).toString(), /^seq=0 event=0x10 vsid=0x42 .*\nseq=1 event=0x10 .*\nseq=4 LOST_EVENTS\n$/)
    // reading one record frees a slot: the next event replaces the header (a gap 1 -> 6 says what was lost)
    assert.equal(q.read(40).length, 40)
    dma(0x5000n)
    assert.deepEqual(q.queue.peek().map((r) => hdr(r, 0)), [[0, 1], [0, 5]])
    // full again: a header; reading everything takes it too (8 bytes, no payload)
    dma(0x5000n)
    const all = q.read(4096)
    assert.equal(all.length, 40 + 40 + 8)
    assert.deepEqual(hdr(all, 80), [1, 6])
    assert.equal(q.read(4096).length, 0)
    // after the header was read, the next loss queues it again
    for (let i = 0; i < 3; i++) dma(0x5000n)
    assert.deepEqual(q.queue.peek().map((r) => hdr(r, 0)), [[0, 7], [0, 8], [1, 9]])
  })

  it('read(): whole records in order, stopping at the first that does not fit; less than a header, or an oldest event that does not fit, is EINVAL and takes nothing', () => {
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=1`, 'out_veventq_id'))
    nest(GUEST | 0xbn)
    assert.equal(q.read(4096).length, 0, 'empty: 0')
    assert.equal(q.read(8).length, 0, 'empty, a header\'s room: 0')
    assert.throws(() => q.read(7), (e: ErrnoError) => e.errno === 'EINVAL' && /less than one 8-byte vEVENT header/.test(e.message))
    assert.throws(() => q.read(0), (e: ErrnoError) => e.errno === 'EINVAL')
    dma(0x5000n)
    dma(0x5000n)
    assert.throws(() => q.read(39), (e: ErrnoError) => e.errno === 'EINVAL' && /the oldest vEVENT takes 40/.test(e.message))
    assert.throws(() => q.read(7), (e: ErrnoError) => e.errno === 'EINVAL')
    assert.equal(q.queue.length, 2, 'nothing taken')
    // 47 bytes: the event; the 8-byte header behind it does not fit in the 7 left
    assert.equal(q.read(47).length, 40)
    assert.equal(q.read(8).length, 8, 'a LOST_EVENTS header needs 8 bytes')
    assert.equal(q.queue.length, 0)
  })

  it('sequence numbers wrap from INT_MAX to 0', () => {
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=8`, 'out_veventq_id'))
    nest(GUEST | 0xbn)
    ;(q as unknown as { sequence: number }).sequence = 0x7fffffff
    dma(0x5000n)
    dma(0x5000n)
    const r = q.read(4096)
    assert.deepEqual([r.readUInt32LE(4), r.readUInt32LE(44)], [0x7fffffff, 0])
  })

  it('memory is bounded whatever the depth: beyond LIMITS.veventqEvents an event is lost, as when the kernel cannot allocate one', () => {
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=ARM_SMMUV3 veventq_depth=0x80000`, 'out_veventq_id'))
    const payload = Buffer.alloc(32)
    for (let i = 0; i < LIMITS.veventqEvents.max + 3; i++) q.report(payload)
    assert.equal(q.queue.length, LIMITS.veventqEvents.max + 1)
    assert.equal(q.queue.last()!.readUInt32LE(0), 1)
    assert.equal(q.lost, 3)
  })

  it('TRIGGER_VEVENT: a SELFTEST event {virt_id} into the vIOMMU\'s SELFTEST queue; ENOENT when not attached through the vIOMMU, EOPNOTSUPP without the queue', () => {
    const trigger = (id: number, failureHasEffect = false) => {
      const payload = Buffer.alloc(48)
      encode(TEST_CMD_UNION.trigger_vevent, { dev_id: BigInt(id) }).copy(payload)
      return t.ioctl('IOMMU_TEST_CMD', { op: 17n, id: 0n, payload: Array.from({ length: 6 }, (_, i) => payload.readBigUInt64LE(i * 8)) }, { failureHasEffect })
    }
    assert.equal(trigger(dev).errno, 'ENOENT')
    nest(GUEST | 0xbn)
    assert.equal(trigger(dev).errno, 'EOPNOTSUPP')
    const q = queue(t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=SELFTEST veventq_depth=2`, 'out_veventq_id'))
    assert.equal(trigger(dev).errno, undefined)
    const r = q.read(4096)
    assert.equal(r.toString('hex'), '00000000' + '00000000' + '42000000')
    assert.equal(trigger(999).errno, 'ENOENT')
    // fail-nth at the event's allocation (GFP_ATOMIC in the kernel): ENOMEM, and the queue says an event was lost
    const failed = failingAt('atomic allocation', () => trigger(dev, true))
    assert.equal(failed.errno, 'ENOMEM')
    assert.equal(q.read(4096).toString('hex'), '01000000' + '01000000')
    assert.equal(q.lost, 1)
    assert.equal(trigger(dev).errno, undefined)
    assert.equal(q.read(4096).toString('hex'), '00000000' + '02000000' + '42000000')
  })
})
