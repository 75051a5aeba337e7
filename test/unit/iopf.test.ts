/**
 * IOPF through the model, without FUSE: a DMA that misses on a HWPT with a
 * fault queue is held (SMMUv3 stall, VT-d page request), its group is read
 * from the queue, the user maps the page and answers; SUCCESS retries and
 * completes the DMA, INVALID fails it; detach and destroy answer INVALID.
 */
import { strict as assert } from 'node:assert'
import { inspect } from 'node:util'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, DMAR0, IommuBench, SMMU0, smmuNestSetup } from '../helpers/iommufd'
import { s1Cd, wordBytes } from '../../src/hw/smmuv3/build'
import { Geometry, PageTable } from '../../src/hw/smmuv3/pgtable'
import { FileBacking } from '../../src/memory/backing'
import { Region } from '../../src/memory/region'
import { deviceDma, heldDmasOf } from '../../src/iommufd/dma'
import { Fault, FaultFlag, PAGE_RESPONSE_SIZE, PGFAULT_SIZE, PgfaultFlag, PgfaultPerm } from '../../src/iommufd/eventq'
import { iommu_hwpt_page_response, iommu_hwpt_pgfault } from '../../src/uapi/structs'
import { decode } from '../../src/uapi/layout'
import { LIMITS } from '../../src/util/limits'
import { failNth } from '../../src/util/fail-nth'
import { World } from '../../src/iommufd/world'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'

/** An assert.throws check: an ErrnoError with this errno and message. */
function errno(name: string, message: RegExp): (e: Error & { errno?: string }) => boolean {
  return (e) => e.errno === name && message.test(e.message)
}

function response(cookie: number, code: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeUInt32LE(cookie, 0)
  b.writeUInt32LE(code, 4)
  return b
}

for (const [arch, bdf, unit] of [
  ['SMMUv3 stall', DEV.smmu0a, SMMU0],
  ['VT-d page request', DEV.vtdA, DMAR0],
] as const) {
  describe(`IOPF: ${arch}`, () => {
    let dir: string
    let file: string
    let t: IommuBench
    let dev: number
    let ioas: number
    let fault: Fault
    let hwpt: number
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopf-'))
      file = path.join(dir, 'ram')
      fs.writeFileSync(file, Buffer.concat([Buffer.from('page zero'), Buffer.alloc(0x1000 - 9), Buffer.from('page one'), Buffer.alloc(0x1000 - 8)]))
      t = new IommuBench()
      dev = t.bind(bdf)
      ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
      const faultId = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
      fault = t.ctx.objects.find(faultId) as Fault
      hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=FAULT_ID_VALID fault_id=${faultId}`, 'out_hwpt_id')
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
      t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x1000 iova=0x100000`)
    })
    afterEach(() => {
      t.close()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    it('a miss is held and queued; the user maps the page and answers SUCCESS; the DMA completes', () => {
      const r = deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8 })
      assert.equal(typeof r.pending, 'number', JSON.stringify(r.waiting))
      assert.equal(fault.queued, 1)
      const rec = fault.read(40)
      assert.equal(rec.length, 40)
      const grpid = rec.readUInt32LE(12)
      assert.deepEqual([rec.readUInt32LE(0), rec.readUInt32LE(4), rec.readUInt32LE(8), rec.readUInt32LE(16), rec.readBigUInt64LE(24), rec.readUInt32LE(32), rec.readUInt32LE(36)], [2, dev, 0, 1, unit === DMAR0 ? 0x101000n : 0x101000n, 0, 1])
      assert.equal(heldDmasOf(t.world).get(r.pending!)?.result, undefined)
      t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0x1000 length=0x1000 iova=0x101000`)
      assert.equal(fault.write(response(1, 0)), 8)
      const done = heldDmasOf(t.world).get(r.pending!)?.result
      assert.equal(done?.data?.toString(), 'page one')
      assert.equal(fault.awaiting.size, 0)
      if (unit === SMMU0) assert.match(t.hw(unit, 'cmdq'), new RegExp(`RESUME sid=0x8 action=1${grpid ? ` stag=0x${grpid.toString(16)}` : ''}`))
      else assert.match(t.hw(unit, 'invalidation_queue'), /PGRP_RESP rid=02:00.0 pasid=none prgi=0 lpig=1 code=0/)
    })

    it('INVALID fails the DMA with its fault', () => {
      const r = deviceDma(t.world, bdf, { op: 'write', iova: 0x102000n, len: 4, data: Buffer.from('abcd') })
      fault.read(40)
      assert.equal(fault.write(response(1, 1)), 8)
      const done = heldDmasOf(t.world).get(r.pending!)?.result
      assert.ok(done && (done.event || done.fault), 'ended in its fault')
    })

    it('a read whose cookie or copy fails keeps the group queued (ENOMEM, EFAULT); a response whose copy fails answers nothing (EFAULT)', () => {
      deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8 })
      const failing = <T>(n: number, f: () => T, name: string, step: RegExp): void => {
        failNth.arm(n)
        try {
          assert.throws(f, errno(name, step))
        } finally {
          failNth.disarm()
        }
      }
      failing(1, () => fault.read(40), 'ENOMEM', /ID insertion/)
      failing(2, () => fault.read(40), 'EFAULT', /copy to user/)
      assert.deepEqual([fault.queued, fault.awaiting.size], [1, 0], 'still queued, no cookie taken')
      assert.equal(fault.read(40).length, 40)
      failing(1, () => fault.write(response(1, 0)), 'EFAULT', /copy from user/)
      assert.equal(fault.awaiting.size, 1, 'still awaiting its answer')
      assert.equal(fault.write(response(1, 0)), 8)
    })

    it('bad responses: ESPIPE for sizes, EINVAL for a bad code or an unknown/answered cookie; nothing changes', () => {
      deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8 })
      assert.throws(() => fault.read(39), errno('ESPIPE', /multiple of 40/))
      assert.throws(() => fault.read(0), errno('EINVAL', /0 bytes cannot hold the oldest fault group/))
      // the record is the header's struct iommu_hwpt_pgfault, and a response its struct iommu_hwpt_page_response
      const rec = decode(iommu_hwpt_pgfault, fault.read(40))
      assert.deepEqual([rec.flags, rec.perm, rec.addr, rec.cookie], [BigInt(PgfaultFlag.LAST_PAGE), BigInt(PgfaultPerm.READ), 0x101000n, 1n])
      assert.deepEqual([iommu_hwpt_pgfault.size, iommu_hwpt_page_response.size], [PGFAULT_SIZE, PAGE_RESPONSE_SIZE])
      assert.throws(() => fault.write(Buffer.alloc(7)), errno('ESPIPE', /8-byte records/))
      assert.throws(() => fault.write(response(1, 2)), errno('EINVAL', /code=2/))
      assert.throws(() => fault.write(response(5, 0)), errno('EINVAL', /cookie=5/))
      assert.equal(fault.awaiting.size, 1)
      assert.equal(fault.write(response(1, 1)), 8)
      assert.throws(() => fault.write(response(1, 1)), errno('EINVAL', /cookie=1: no page request awaits it/))
    })

    it('replacing the HWPT answers the device\'s groups INVALID; the new domain (no fault queue) aborts a miss at once', () => {
      const r = deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8 })
      const plain = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${plain}`)
      assert.equal(fault.queued, 0)
      const done = heldDmasOf(t.world).get(r.pending!)?.result
      assert.ok(done && (done.event || done.fault), 'ended in its fault')
      const after = deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8 })
      assert.equal(after.pending, undefined)
      assert.ok(after.event || after.fault)
    })

    it('detach answers pending groups INVALID; the DMA ends', () => {
      const r = deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8 })
      const r2 = deviceDma(t.world, bdf, { op: 'read', iova: 0x103000n, len: 8 })
      fault.read(40)
      assert.equal(fault.queued, 1)
      t.ok(`DEVICE_DETACH dev_id=${dev}`)
      assert.equal(fault.queued, 0)
      assert.equal(fault.awaiting.size, 0)
      assert.ok(heldDmasOf(t.world).get(r.pending!)?.result)
      assert.ok(heldDmasOf(t.world).get(r2.pending!)?.result)
    })
  })
}

/**
 * A bench with `bdf` bound, a page mapped at 0x100000 of an IOAS, a fault
 * queue, and two PASID-capable HWPTs over the IOAS: one with the queue, one
 * without. `run` gets them; the bench and its file go afterwards.
 */
function withPasidDomains(bdf: string, run: (s: { t: IommuBench; dev: number; fault: Fault; withQueue: number; plain: number }) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopf-pasid-'))
  const t = new IommuBench()
  try {
    fs.writeFileSync(path.join(dir, 'ram'), Buffer.alloc(0x1000))
    const dev = t.bind(bdf)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${path.join(dir, 'ram')} start=0 length=0x1000 iova=0x100000`)
    const faultId = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
    const fault = t.ctx.objects.find(faultId) as Fault
    const withQueue = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=FAULT_ID_VALID|PASID fault_id=${faultId}`, 'out_hwpt_id')
    const plain = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=PASID`, 'out_hwpt_id')
    run({ t, dev, fault, withQueue, plain })
  } finally {
    t.close()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

describe('IOPF at a PASID (find_fault_handler)', () => {
  for (const bdf of [DEV.smmu0a, DEV.vtdA]) {
    it(`${bdf}: a miss at PASID 1 goes to the fault queue of PASID 1's domain, not the RID's; the record says PASID_VALID (VT-d also RESPONSE_NEEDS_PASID)`, () => {
      withPasidDomains(bdf, ({ t, dev, fault, withQueue, plain }) => {
        t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${plain}`)
        t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${withQueue} flags=PASID pasid=1`)
        const r = deviceDma(t.world, bdf, { op: 'read', iova: 0x101000n, len: 8, pasid: 1 })
        assert.equal(typeof r.pending, 'number', inspect(r))
        const rec = fault.read(40)
        const flags = PgfaultFlag.PASID_VALID | PgfaultFlag.LAST_PAGE | (bdf === DEV.vtdA ? FaultFlag.RESPONSE_NEEDS_PASID : 0)
        assert.deepEqual([rec.readUInt32LE(0), rec.readUInt32LE(4), rec.readUInt32LE(8)], [flags, dev, 1])
        assert.equal(fault.write(response(1, 1)), 8)
        assert.ok(heldDmasOf(t.world).get(r.pending!)?.result, 'INVALID ended the DMA')
      })
    })
  }

  it("VT-d, PRI on for the RID's queue: a miss at PASID 2, whose domain has none, is a page request answered INVALID at once; the RID's queue gets nothing", () => {
    withPasidDomains(DEV.vtdA, ({ t, dev, fault, withQueue, plain }) => {
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${withQueue}`)
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${plain} flags=PASID pasid=2`)
      const r = deviceDma(t.world, DEV.vtdA, { op: 'read', iova: 0x101000n, len: 8, pasid: 2 })
      assert.equal(r.pending, undefined, inspect(r))
      assert.equal(fault.queued, 0)
      assert.match(t.hw(DMAR0, 'invalidation_queue'), /PGRP_RESP rid=02:00.0 pasid=2 prgi=\d+ lpig=1 code=1/)
    })
  })
})

describe('IOPF: a VT-d function makes page requests only with PRI (intel_iommu_enable_iopf: ENODEV)', () => {
  // each topology: the default one with one change, and the words the refusal names
  for (const [what, change, message] of [
    ['a function without ATS', (y: string) => y.replace('"0000:02:00.0", vendor: 0x8086, device: 0x0d58 }', '"0000:02:00.0", vendor: 0x8086, device: 0x0d58, ats: false }'), /0000:02:00\.0 has no ATS here, so no PRI/],
    ['a unit without ECAP.PDS', (y: string) => y.replace('ECAP: 0x0001ef9ea4f050df', 'ECAP: 0x0001eb9ea4f050df'), /dmar0 lacks ECAP\.PDS, so 0000:02:00\.0 makes no page requests/],
  ] as const) {
    it(`${what}: attaching a HWPT with a fault queue is ENODEV and changes nothing; one without attaches`, () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopf-pri-'))
      const topo = path.join(dir, 't.yaml')
      const text = change(fs.readFileSync(DEFAULT_TOPOLOGY, 'utf8'))
      assert.notEqual(text, fs.readFileSync(DEFAULT_TOPOLOGY, 'utf8'))
      fs.writeFileSync(topo, text)
      const t = new IommuBench(new World(loadTopology(topo)))
      try {
        const dev = t.bind(DEV.vtdA)
        const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
        const faultId = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
        const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=FAULT_ID_VALID fault_id=${faultId}`, 'out_hwpt_id')
        t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`, 'ENODEV', message)
        assert.equal(t.describe(hwpt).get('devices'), '-')
        t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
      } finally {
        t.close()
        fs.rmSync(dir, { recursive: true, force: true })
      }
    })
  }
})

describe('IOPF: the fault queue\'s bound', () => {
  it('past LIMITS.faultGroups a new group is answered INVALID at once and counted; the queue keeps what it had', () => {
    const f = new Fault()
    const codes: number[] = []
    const group = { devId: 1, pasid: 0, flags: 2, grpid: 0, perm: 1, addr: 0n, respond: (c: number) => codes.push(c) }
    let woken = 0
    f.whenQueued(() => woken++)
    for (let i = 0; i < LIMITS.faultGroups.max; i++) assert.equal(f.report(group), true)
    assert.equal(woken, 1, 'a waiter hears the first group once')
    assert.equal(f.read(40).length, 40, 'a read group still counts until answered')
    assert.equal(f.report(group), false)
    assert.deepEqual(codes, [1])
    assert.equal(f.dropped, 1)
    assert.equal(f.queued, LIMITS.faultGroups.max - 1)
    f.teardown()
    assert.equal(codes.length, 1 + LIMITS.faultGroups.max, 'destroying the queue answers every group INVALID')
    assert.ok(codes.every((c) => c === 1))
  })
})

describe('IOPF: a nested SMMUv3 HWPT whose guest CD stalls', () => {
  it('the guest\'s CD.S = 1 stalls a stage-1 miss; the group names the nested HWPT\'s device; the guest maps the page, SUCCESS completes the DMA', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iopf-nested-'))
    const file = path.join(dir, 'guest')
    const GUEST = 0x4000_0000n
    fs.writeFileSync(file, Buffer.alloc(0x20_0000))
    const ram = FileBacking.open(file)
    const region = new Region(ram, GUEST, 0x10_0000n, GUEST + 0x1000n)
    const s1 = new PageTable(region, { stage: 1, geometry: new Geometry(12, 48) })
    region.write(GUEST, wordBytes(s1Cd({ asid: 1, ttb0: s1.root, stall: true })))
    ram.write(0x10_0000n, Buffer.from('guest page'))
    const t = new IommuBench()
    try {
      const { dev, ioas, viommu } = smmuNestSetup(t)
      t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x200000 iova=0x40000000`)
      t.ok(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x10`)
      const faultId = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
      const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} flags=FAULT_ID_VALID fault_id=${faultId} data_type=ARM_SMMUV3 data.ste=0x${(GUEST | 0xbn).toString(16)},0x0`, 'out_hwpt_id')
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
      const r = deviceDma(t.world, DEV.smmu0a, { op: 'read', iova: 0x1000n, len: 10 })
      assert.equal(typeof r.pending, 'number')
      const fault = t.ctx.objects.find(faultId) as Fault
      const rec = fault.read(40)
      assert.deepEqual([rec.readUInt32LE(4), rec.readBigUInt64LE(24), rec.readUInt32LE(36)], [dev, 0x1000n, 1])
      // the guest maps VA 0x1000 (its own table, in its RAM) and answers
      s1.map(0x1000n, GUEST + 0x10_0000n, 0x1000n, { read: true, write: true })
      assert.equal(fault.write(response(1, 0)), 8)
      assert.equal(heldDmasOf(t.world).get(r.pending!)?.result?.data?.toString(), 'guest page')
    } finally {
      t.close()
      ram.release()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
