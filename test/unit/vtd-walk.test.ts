/**
 * VT-d DMA through the model: the scalable-mode walk over the entries the
 * host driver model writes (vtd-host.ts), first stage for a plain paging
 * domain, nested first stage over a nest parent's second stage with the
 * guest's tables in a file, the fault reasons, and the sanitizer.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench } from '../helpers/iommufd'
import { FileBacking } from '../../src/memory/backing'
import { Region } from '../../src/memory/region'
import { FS, VtdPageTable } from '../../src/hw/vtd/pgtable'
import { DeviceDma, deviceDma } from '../../src/iommufd/dma'
import { formatDmaReply } from '../../src/uapi/dma-text'
import { P_IOTLB_GRAN, devIotlbSpan, pasidCacheInv, pasidIotlb } from '../../src/hw/vtd/qi'

const GUEST = 0x4000_0000n

/** A 2 MiB guest RAM file: a first-stage table at GPA 0x40000000, VA 0x1000 -> GPA 0x40100000 (user, writable). */
function guestRam(file: string): { leaf: bigint } {
  fs.writeFileSync(file, Buffer.alloc(0x20_0000))
  const ram = FileBacking.open(file)
  const region = new Region(ram, GUEST, 0x10_0000n)
  const fsTable = new VtdPageTable(region, { format: 'first', levels: 4 })
  assert.equal(fsTable.root, GUEST)
  fsTable.map(0x1000n, GUEST + 0x10_0000n, 0x1000n, { read: true, write: true })
  ram.write(0x10_0000n, Buffer.from('guest page A'))
  ram.write(0x10_1000n, Buffer.from('guest page B'))
  const leaf = fsTable.find(0x1000n)!.slot
  ram.release()
  return { leaf }
}

function dma(t: IommuBench, r: Partial<DeviceDma> & { op: DeviceDma['op']; iova: bigint }, bdf = DEV.vtdA): string {
  const req: DeviceDma = { len: 0, ...r }
  return formatDmaReply(req, deviceDma(t.world, bdf, req))
}

function put64(file: string, off: bigint, v: bigint): void {
  const b = Buffer.alloc(8)
  b.writeBigUInt64LE(v)
  const fd = fs.openSync(file, 'r+')
  fs.writeSync(fd, b, 0, 8, Number(off))
  fs.closeSync(fd)
}

describe('VT-d DMA: a plain paging domain (first stage, as the driver builds it)', () => {
  let dir: string
  let file: string
  let t: IommuBench
  let dev: number
  let ioas: number
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vtd-walk-'))
    file = path.join(dir, 'mem')
    fs.writeFileSync(file, Buffer.alloc(0x10000))
    fs.writeFileSync(file, Buffer.from('hello vtd'))
    fs.truncateSync(file, 0x10000)
    t = new IommuBench()
    dev = t.bind(DEV.vtdA)
    ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x8000 iova=0x100000`)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE path=${file} start=0x8000 length=0x8000 iova=0x200000`)
    const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${h}`)
  })
  afterEach(() => {
    t.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('walks root, context, PASID directory, PASID entry (PGTT=1) and four first-stage levels; the second DMA hits the IOTLB', () => {
    const first = dma(t, { op: 'read', iova: 0x100000n, len: 9 })
    const kinds = first.split('\n').filter((l) => l.startsWith('walk ')).map((l) => l.split(' ').slice(1, 3).join(' '))
    assert.deepEqual(kinds, ['root table=0x1000000000', 'context word=0', 'context word=1', 'pasiddir table=0x1000002000', 'pasid word=0', 'pasid word=1', 'pasid word=2', 'fs level=4', 'fs level=3', 'fs level=2', 'fs level=1'])
    assert.match(first, /^ok read sid=0x200 pasid=none iova=0x100000 len=9\n/)
    // PGTT=1 in bits 8:6, P; DID 2 (Linux keeps 0 and 1) and PWSNP
    assert.match(first, /^walk pasid word=0 table=0x[0-9a-f]+ addr=0x[0-9a-f]+ desc=0x0000000000000041$/m)
    assert.match(first, /^walk pasid word=1 table=0x[0-9a-f]+ addr=0x[0-9a-f]+ desc=0x0000000000800002$/m)
    // Linux's leaf: P|RW|U/S|A|D
    assert.match(first, /^walk fs level=1 table=0x[0-9a-f]+ addr=0x[0-9a-f]+ desc=0x0000008000000067$/m)
    assert.match(first, /^data 68656c6c6f20767464$/m)
    const second = dma(t, { op: 'read', iova: 0x100000n, len: 9 })
    assert.equal(second, 'ok read sid=0x200 pasid=none iova=0x100000 len=9\nout iova=0x100000 pa=0x8000000000 len=9 perms=priv:rwx user:rwx via=iotlb\ndata 68656c6c6f20767464\n')
    assert.match(t.hw('dmar0', 'iotlb'), /^did=2 pasid=0x0 first iova=0x100000 size=0x1000 pa=0x8000000000 priv:rwx user:rwx since=\d+$/m)
    assert.match(t.hw('dmar0', 'findings'), /^sanitizer: mode=report findings=0$/m)
  })

  it('fault reasons: read-only write 0x85, supervisor without SRE 0x5d, execute without ERE 0x5c, PASID not present 0x59, unmapped 0x71, non-canonical 0x80', () => {
    const head = (r: Partial<DeviceDma> & { op: DeviceDma['op']; iova: bigint }): string => dma(t, r).split('\n').slice(0, 2).join('\n')
    assert.equal(head({ op: 'write', iova: 0x200000n, len: 1, data: Buffer.from('x') }), 'fault FR=0x85 (no write permission) sid=02:00.0 pasid=none addr=0x200000 DMA Write recorded=1 reason="a write, R/W = 0 on the walk (level 1)"\nfrcd 0000000000200000 8000008500000200')
    assert.match(head({ op: 'read', iova: 0x100000n, len: 1, priv: true }), /^fault FR=0x5d \(supervisor request while SRE = 0\)/)
    assert.match(head({ op: 'read', iova: 0x100000n, len: 1, exec: true }), /^fault FR=0x5c /)
    assert.equal(head({ op: 'read', iova: 0x100000n, len: 1, pasid: 5 }), 'fault FR=0x59 (PASID table entry not present) sid=02:00.0 pasid=0x5 addr=0x100000 DMA Read recorded=1 reason="PASID 0x5: entry not present"\nfrcd 0000000000100000 c000055980000200')
    assert.match(head({ op: 'read', iova: 0x300000n, len: 1 }), /^fault FR=0x71 \(first-stage entry not present\)/)
    assert.match(head({ op: 'read', iova: 0x8000_0000_0000n, len: 1 }), /^fault FR=0x80 \(non-canonical first-stage input address\)/)
    // recorded faults are listed with their 128-bit records
    assert.equal(t.hw('dmar0', 'faults').split('\n').filter(Boolean).length, 6)
  })

  it('IOAS_UNMAP queues P_IOTLB (DID 2, PASID 0, the range) and the device-TLB flush, then a wait; the next DMA faults with no finding', () => {
    dma(t, { op: 'read', iova: 0x100000n, len: 4 })
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x8000`)
    const q = t.hw('dmar0', 'invalidation_queue').split('\n').filter((l) => /^ +\d+\t/.test(l)).map((l) => l.split('\t').pop())
    assert.deepEqual(q, ['P_IOTLB did=2 pasid=0 gran=page-selective addr=0x100000 am=3 ih=1', 'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x103000 s=1', 'WAIT sw=1 if=0 fn=0 status_data=2 status_addr=0x100010008'])
    assert.match(dma(t, { op: 'read', iova: 0x100000n, len: 4 }), /^fault FR=0x71 /)
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n$/)
  })

  it('a changed PASID entry without the PASID-cache flush is a finding naming PC did=2 pasid=0; strict mode stops the DMA', () => {
    dma(t, { op: 'read', iova: 0x100000n, len: 4 })
    const vtd = t.vtd()
    const ctx = vtd.contextEntryAddr(0x200)
    const dirPtr = (vtd.memory.read64(ctx) as bigint) & ~0xfffn
    const table = (vtd.memory.read64(dirPtr) as bigint) & ~0xfffn
    // DID 2 -> 7 in the RID_PASID entry, behind the driver's back
    vtd.memory.write64(table + 8n, (1n << 23n) | 7n)
    const r = dma(t, { op: 'read', iova: 0x100000n, len: 4 })
    assert.match(r, /^finding 1: PASID; sid=0x200; ssid=none; iova=0x100000; cached: pasid word 1 = 0x0000000000800002 since=\d+; now: pasid word 1 = 0x0000000000800007; changed: pasid level=1 addr=0x[0-9a-f]+ old=0x0000000000800002 new=0x0000000000800007; fix: PC did=2 pasid=0$/m)
    vtd.debugFiles().sanitizer.store!('strict')
    assert.match(dma(t, { op: 'read', iova: 0x100000n, len: 4 }), /^stopped finding 2: PASID; /)
    vtd.qi.submit([pasidCacheInv(1, 2, 0)])
    assert.match(dma(t, { op: 'read', iova: 0x100000n, len: 4 }), /^ok read /)
  })

  it('ATS: a translation request fills the device TLB; a PTE change with P_IOTLB but no device-TLB flush is a finding naming DEV_IOTLB', () => {
    const tr = dma(t, { op: 'translate', iova: 0x100000n })
    assert.match(tr, /^ok translate .*\n(?:walk .*\n)*out iova=0x100000 pa=0x8000000000 len=1 perms=priv:rwx user:rwx via=walk\nats pa=0x8000000000 size=0x1000/)
    assert.match(dma(t, { op: 'read', iova: 0x100000n, len: 2, ats: true }), /via=dev_tlb\ndata 6865\n$/)
    assert.match(t.hw('dmar0', 'dev_tlb'), /^sid=0x200 pasid=- iova=0x100000 size=0x1000 pa=0x8000000000 priv:rwx user:rwx since=\d+$/m)
    // the host leaf moves to the next page; only the IOTLB is flushed
    const slot = BigInt(/^walk fs level=1 table=0x[0-9a-f]+ addr=(0x[0-9a-f]+)/m.exec(tr)![1])
    const vtd = t.vtd()
    vtd.memory.write64(slot, 0x8000001067n)
    vtd.qi.submit([pasidIotlb(2, 0, P_IOTLB_GRAN.PSI_PASID, 0x100000n, 0, false)])
    const stale = dma(t, { op: 'read', iova: 0x100000n, len: 2, ats: true })
    assert.match(stale, /^finding 1: DEV_TLB; sid=0x200; ssid=none; iova=0x100000; cached: dev_tlb out=0x8000000000 .*; now: out=0x8000001000 .*; fix: DEV_IOTLB sid=02:00.0 addr=0x100000 s=0$/m)
    vtd.qi.submit([devIotlbSpan(0x200, 0x100000n, 0)])
    assert.doesNotMatch(dma(t, { op: 'read', iova: 0x100000n, len: 2, ats: true }), /finding/)
    assert.match(t.hw('dmar0', 'findings'), /findings=1\n/)
  })
})

describe('VT-d DMA under nesting: the guest first stage in a file, every table read through the nest parent', () => {
  let dir: string
  let file: string
  let t: IommuBench
  let nested: number
  let leaf: bigint
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vtd-nest-'))
    file = path.join(dir, 'guest')
    leaf = guestRam(file).leaf
    t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x200000 iova=0x40000000`)
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 data.pgtbl_addr=0x40000000 data.addr_width=48`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
  })
  afterEach(() => {
    t.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('PGTT=3: each first-stage level is preceded by its second-stage walk (a 2M leaf: the host maps the 2M-aligned guest RAM with one); the output GPA goes through the second stage too', () => {
    const r = dma(t, { op: 'read', iova: 0x1000n, len: 12 })
    assert.match(r, /^ok read sid=0x200 pasid=none iova=0x1000 len=12\n/)
    const walk = r.split('\n').filter((l) => /^walk (fs|ss) /.test(l)).map((l) => l.split(' ').slice(1, 3).join(' '))
    const ss = ['ss level=4', 'ss level=3', 'ss level=2']
    assert.deepEqual(walk, [...ss, 'fs level=4', ...ss, 'fs level=3', ...ss, 'fs level=2', ...ss, 'fs level=1', ...ss])
    // R|W|PS at the 2M-aligned window of the file
    assert.match(r, /^walk ss level=2 .* desc=0x00000080[0-9a-f]{3}00083$/m)
    assert.match(r, /^walk pasid word=0 .* desc=0x00000010[0-9a-f]{5}0c9$/m)
    assert.match(r, /^data 677565737420706167652041$/m)
  })

  it('a PTE changed without invalidation: the finding names P_IOTLB with the nested DID; HWPT_INVALIDATE fixes it with zero new findings', () => {
    assert.match(dma(t, { op: 'read', iova: 0x1000n, len: 12 }), /^data 677565737420706167652041$/m)
    put64(file, leaf - GUEST, (GUEST + 0x10_1000n) | FS.P | FS.RW | FS.US | FS.A | FS.D)
    const stale = dma(t, { op: 'read', iova: 0x1000n, len: 12 })
    assert.match(stale, /^data 677565737420706167652041$/m)
    const did = t.vtd().pasidEntries.get(0x200)!.did
    assert.match(stale, new RegExp(`^finding 1: IOTLB; sid=0x200; ssid=none; iova=0x1000; cached: nested did=${did} out=0x8000100000 .*changed: fs level=1 addr=0x[0-9a-f]+ old=0x0000000040100067 new=0x0000000040101067; fix: P_IOTLB did=${did} pasid=0 addr=0x1000 am=0 ih=1$`, 'm'))
    t.ok(`HWPT_INVALIDATE hwpt_id=${nested} data=0x1000,0x1,0x1 data_type=VTD_S1 entry_len=24 entry_num=1`)
    const after = dma(t, { op: 'read', iova: 0x1000n, len: 12 })
    assert.match(after, /^data 677565737420706167652042$/m)
    assert.doesNotMatch(after, /finding/)
    assert.match(t.hw('dmar0', 'findings'), /findings=1\n/)
  })

  it('a first-stage table outside the nest parent: 0x76, the entry GPA unreadable through the second stage', () => {
    // level-3 table pointer of the guest moved to a GPA the IOAS does not map
    put64(file, 0n, 0x9000_0000n | FS.P | FS.RW | FS.US | FS.A)
    assert.match(dma(t, { op: 'read', iova: 0x1000n, len: 4 }), /^fault FR=0x76 \(first-stage entry not readable through second stage \(nested\)\) sid=02:00.0 .*second stage/)
  })
})

describe('VT-d dirty tracking: a DIRTY_TRACKING domain is second stage; SSADE follows SET_DIRTY_TRACKING; GET_DIRTY_BITMAP reads and clears D', () => {
  let dir: string
  let t: IommuBench
  let hwpt: number
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vtd-dirty-'))
    const file = path.join(dir, 'mem')
    fs.writeFileSync(file, Buffer.alloc(0x10000))
    t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x10000 iova=0x100000`)
    hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
  })
  afterEach(() => {
    t.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  const bitmap = (flags = 0n): Buffer => {
    const r = t.ioctl('HWPT_GET_DIRTY_BITMAP', { hwpt_id: BigInt(hwpt), flags, iova: 0x100000n, length: 0x10000n, page_size: 0x1000n, data: 0x6000n })
    assert.equal(r.errno, undefined, r.message)
    return r.written.get(0x6000n)!
  }

  it('writes before enabling leave D clear; after ENABLE a write sets D, the bitmap reports it (NO_CLEAR keeps it), a clearing read flushes the IOTLB and the next write dirties again', () => {
    const write = (iova: bigint): string => dma(t, { op: 'write', iova, len: 2, data: Buffer.from('hi') })
    assert.match(dma(t, { op: 'read', iova: 0x100000n, len: 1 }), /^walk pasid word=0 .* desc=0x[0-9a-f]{13}089$/m)
    assert.match(write(0x103000n), /^ok write /)
    assert.deepEqual(bitmap(), Buffer.alloc(8))
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${hwpt} flags=ENABLE`)
    // the PASID entry now has SSADE (bit 9): PGTT=2, AW=2, P
    const q = t.hw('dmar0', 'invalidation_queue')
    assert.match(q, /\tPC gran=pasid did=2 pasid=0\n.*\tIOTLB gran=domain did=2\n.*\tDEV_IOTLB sid=02:00.0 qdep=0 addr=0x7ffffffffffff000 s=1\n/s)
    const w = write(0x105000n)
    assert.match(w, /^ok write /)
    assert.match(w, /^walk pasid word=0 .* desc=0x[0-9a-f]{13}289$/m)
    assert.match(w, /^walk ss level=1 .* updated=0x300$/m)
    assert.deepEqual(bitmap(1n), Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0]))
    assert.deepEqual(bitmap(), Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0]))
    assert.deepEqual(bitmap(), Buffer.alloc(8))
    assert.match(t.hw('dmar0', 'invalidation_queue'), /\tIOTLB gran=page-selective did=2 addr=0x100000 am=4 ih=1\n/)
    assert.match(write(0x105000n), /via=walk/)
    assert.deepEqual(bitmap(), Buffer.from([0x20, 0, 0, 0, 0, 0, 0, 0]))
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n$/)
  })
})
