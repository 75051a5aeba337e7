/**
 * The tables the host drivers build: VT-d large leaves (2M/1G where the
 * mapping allows, as the Linux driver maps them), the walk and the caches
 * over them, dirty reports per leaf span; table pages freed when an unmap
 * covers them whole (and the invalidation that then may not keep the
 * paging-structure caches: IH = 0 on VT-d, leaf = 0 on SMMUv3) and when a
 * HWPT is destroyed, so a long run's table memory does not grow.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench, SMMU0, ioctlOf, structBytes } from '../helpers/iommufd'
import { DeviceDma, deviceDma } from '../../src/iommufd/dma'
import { formatDmaReply } from '../../src/uapi/dma-text'
import { P_IOTLB_GRAN, pasidCacheInv, pasidIotlb } from '../../src/hw/vtd/qi'
import { World } from '../../src/iommufd/world'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'

function dma(t: IommuBench, r: Partial<DeviceDma> & { op: DeviceDma['op']; iova: bigint }, bdf: string = DEV.vtdA): string {
  const req: DeviceDma = { len: 0, ...r }
  return formatDmaReply(req, deviceDma(t.world, bdf, req))
}

function queue(t: IommuBench, unit: string, file: string): string[] {
  return t
    .hw(unit, file)
    .split('\n')
    .filter((l) => /^ +\d+\t/.test(l))
    .map((l) => l.split('\t').pop()!.replace(/ status_addr=\S+/, ''))
}

/** Each test: a `size`-byte file of guest memory, a fresh machine, the VT-d device bound and an IOAS (`setup` adds to the file). */
function vtdEach(size: number, setup?: (file: string) => void): { t: IommuBench; file: string; dev: number; ioas: number } {
  const s = {} as { t: IommuBench; file: string; dev: number; ioas: number; dir: string }
  beforeEach(() => {
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-tables-'))
    s.file = path.join(s.dir, 'mem')
    fs.writeFileSync(s.file, Buffer.alloc(size))
    setup?.(s.file)
    s.t = new IommuBench()
    s.dev = s.t.bind(DEV.vtdA)
    s.ioas = s.t.id('IOAS_ALLOC', 'out_ioas_id')
  })
  afterEach(() => {
    s.t.close()
    fs.rmSync(s.dir, { recursive: true, force: true })
  })
  return s
}

describe('host tables: VT-d large leaves, freed tables and their invalidation', () => {
  const s = vtdEach(0x60_0000, (file) => {
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.from('second 2M'), 0, 9, 0x20_0000 + 0x1234)
    fs.closeSync(fd)
  })
  let t: IommuBench
  let file: string
  let dev: number
  let ioas: number
  beforeEach(() => ({ t, file, dev, ioas } = s))

  it('a 2M-aligned 4M mapping is two 2M first-stage leaves (PS): a 3-level walk, one IOTLB entry of 0x200000 serving every page of it', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x400000 iova=0x200000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    const r = dma(t, { op: 'read', iova: 0x40_1234n, len: 9 })
    assert.deepEqual(
      r.split('\n').filter((l) => /^walk fs /.test(l)).map((l) => l.split(' ')[2]),
      ['level=4', 'level=3', 'level=2'],
    )
    // P|RW|U/S|A|D|PS
    assert.match(r, /^walk fs level=2 .* desc=0x00000080[0-9a-f]{2}[02468ace]000e7$/m)
    assert.match(r, /^data 7365636f6e6420324d$/m)
    assert.match(t.hw('dmar0', 'iotlb'), /^did=2 pasid=0x0 first iova=0x400000 size=0x200000 pa=0x80[0-9a-f]+ priv:rwx user:rwx since=\d+$/m)
    assert.match(dma(t, { op: 'read', iova: 0x5f_f000n, len: 1 }), /via=iotlb/)
    assert.match(t.hw('dmar0', 'iotlb'), /^dmar0: iotlb 1\/\d+ hits=1 misses=1$/m)
  })

  it('an unaligned mapping keeps 4K leaves; its unmap frees the level-1 table it covers whole and flushes with IH = 0; a partial one keeps its tables and sends IH = 1', () => {
    const mem = t.vtd().memory
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x202000 iova=0x1ff000`)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x2000 iova=0x1000000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.deepEqual(
      dma(t, { op: 'read', iova: 0x20_0000n, len: 1 }).split('\n').filter((l) => /^walk fs /.test(l)).map((l) => l.split(' ')[2]),
      ['level=4', 'level=3', 'level=2', 'level=1'],
    )
    const pages = mem.ramPages
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x1000000 length=0x2000`)
    assert.equal(mem.ramPages, pages)
    assert.deepEqual(queue(t, 'dmar0', 'invalidation_queue').slice(-3, -1), ['P_IOTLB did=2 pasid=0 gran=page-selective addr=0x1000000 am=1 ih=1', 'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x1000000 s=1'])
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x1ff000 length=0x202000`)
    // the level-1 table of [0x200000, 0x400000) is gone; the two it shares a part of stay
    assert.equal(mem.ramPages, pages - 1)
    assert.match(queue(t, 'dmar0', 'invalidation_queue').at(-3)!, /^P_IOTLB did=2 pasid=0 gran=page-selective addr=0x0 am=11 ih=0$/)
    assert.match(dma(t, { op: 'read', iova: 0x20_0000n, len: 1 }), /^fault FR=0x71 /)
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n$/)
  })

  it('a dirty 2M second-stage leaf is reported for all its 512 pages, then cleaned', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x200000 iova=0x200000`)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${hwpt} flags=ENABLE`)
    const w = dma(t, { op: 'write', iova: 0x30_0000n, len: 2, data: Buffer.from('hi') })
    assert.match(w, /^walk ss level=2 .* updated=0x300$/m)
    const bitmap = (): Buffer => {
      const r = t.ioctl('HWPT_GET_DIRTY_BITMAP', { hwpt_id: BigInt(hwpt), iova: 0x20_0000n, length: 0x20_0000n, page_size: 0x1000n, data: 0x9000n })
      assert.equal(r.errno, undefined, r.message)
      return r.written.get(0x9000n)!
    }
    assert.deepEqual(bitmap(), Buffer.alloc(64, 0xff))
    assert.deepEqual(bitmap(), Buffer.alloc(64))
  })

  it('GET_DIRTY_BITMAP as iommufd_check_iova_range and iova_bitmap read page_size: masks of page_size - 1, bits of its lowest set bit; the first hole ends the read, uncleaned after it', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x4000 iova=0x10000`)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x4000 iova=0x20000`)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${hwpt} flags=ENABLE`)
    for (const iova of [0x11000n, 0x21000n]) assert.match(dma(t, { op: 'write', iova, len: 1, data: Buffer.from('x') }), /^ok write /m)
    const read = (iova: bigint, length: bigint, pageSize: bigint): Buffer | string => {
      const r = t.ioctl('HWPT_GET_DIRTY_BITMAP', { hwpt_id: BigInt(hwpt), iova, length, page_size: pageSize, data: 0x9000n })
      return r.errno ?? r.written.get(0x9000n)!
    }
    // 0x3000: 0x10000 & 0x2fff is 0, so it passes; each bit is 0x1000 (its lowest set bit)
    assert.deepEqual(read(0x10000n, 0x4000n, 0x3000n), Buffer.from([0x02, 0, 0, 0, 0, 0, 0, 0]))
    // 0x13000 & 0x2fff is 0x1000: EINVAL, though 0x13000 is a multiple of 0x3000
    assert.equal(read(0x13000n, 0x3000n, 0x3000n), 'EINVAL')
    // from 0x10000 over the hole at 0x14000: nothing past it is read, and its dirty bit stays
    assert.deepEqual(read(0x10000n, 0x14000n, 0x1000n), Buffer.alloc(8))
    assert.deepEqual(read(0x20000n, 0x4000n, 0x1000n), Buffer.from([0x02, 0, 0, 0, 0, 0, 0, 0]))
  })

  it('GET_DIRTY_BITMAP sets bits in the caller\'s bitmap and clears none (iova_bitmap_set); a bitmap it cannot reach loses the bits and the ioctl still answers 0', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x4000 iova=0x10000`)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    t.ok(`HWPT_SET_DIRTY_TRACKING hwpt_id=${hwpt} flags=ENABLE`)
    const get = (buffers: Map<bigint, Buffer | 'fault'>) => t.ioctl('HWPT_GET_DIRTY_BITMAP', { hwpt_id: BigInt(hwpt), iova: 0x10000n, length: 0x4000n, page_size: 0x1000n, data: 0x9000n }, { buffers })
    assert.match(dma(t, { op: 'write', iova: 0x11000n, len: 1, data: Buffer.from('x') }), /^ok write /m)
    // bit 3 was set by the caller and stays; bit 1 is the dirty page's
    const r = get(new Map([[0x9000n, Buffer.from([0x08, 0, 0, 0, 0, 0, 0, 0])]]))
    assert.equal(r.errno, undefined, r.message)
    assert.deepEqual(r.written.get(0x9000n), Buffer.from([0x0a, 0, 0, 0, 0, 0, 0, 0]))
    assert.match(dma(t, { op: 'write', iova: 0x12000n, len: 1, data: Buffer.from('y') }), /^ok write /m)
    const lost = get(new Map([[0x9000n, 'fault']]))
    assert.equal(lost.errno, undefined, lost.message)
    assert.equal(lost.written.size, 0)
    // the read cleaned the page anyway: its bit does not come back
    assert.deepEqual(get(new Map([[0x9000n, Buffer.alloc(8)]])).written.get(0x9000n), Buffer.alloc(8))
  })

  it('attach, map, DMA, unmap, detach and destroy a hundred times: the host table memory comes back each time and does not grow', () => {
    const mem = t.vtd().memory
    const spans: number[] = []
    const before = mem.ramPages
    for (let i = 0; i < 100; i++) {
      t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x3000 iova=${0x10_0000 * (i + 1)}`)
      const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${h}`)
      assert.match(dma(t, { op: 'read', iova: BigInt(0x10_0000 * (i + 1)), len: 1 }), /^ok read /)
      t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=${0x10_0000 * (i + 1)} length=0x3000`)
      t.ok(`DEVICE_DETACH dev_id=${dev}`)
      t.ok(`DESTROY id=${h}`)
      spans.push(mem.ramSpan)
    }
    // the root and context tables, the device's PASID directory (32 pages: 2^14 entries for the unit's
    // 20 PASID bits) and RID_PASID's table stay; every domain table page went back
    assert.equal(mem.ramPages, before + 35)
    assert.equal(new Set(spans).size, 1)
  })
})

describe('host tables: SMMUv3 frees a table an unmap covers whole, flushing its span with leaf = 0 first', () => {
  let dir: string
  let file: string
  let t: IommuBench
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'host-tables-'))
    file = path.join(dir, 'mem')
    fs.writeFileSync(file, Buffer.alloc(0x40_0000))
    t = new IommuBench()
  })
  afterEach(() => {
    t.close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('4K pages filling [0x200000, 0x400000): the unmap frees that level-3 table (TLBI_NH_VA ttl=0 over its 2M, SYNC), then the leaves (leaf ttl=3)', () => {
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x202000 iova=0x1ff000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.match(dma(t, { op: 'read', iova: 0x20_0000n, len: 1 }, DEV.smmu0a), /^ok read /)
    const mem = t.smmu(SMMU0).memory
    const pages = mem.ramPages
    const before = queue(t, SMMU0, 'cmdq').length
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x1ff000 length=0x202000`)
    assert.equal(mem.ramPages, pages - 1)
    const cmds = queue(t, SMMU0, 'cmdq').slice(before)
    // each flush is followed by the device's ATC over the same span (ATS is on for a stage-1 domain)
    assert.deepEqual(cmds, [
      'TLBI_NH_VA asid=1 scale=9 tg=1 addr=0x200000',
      'SYNC cs=2',
      'ATC_INV sid=0x8 size=9 addr=0x200000',
      'SYNC cs=2',
      'TLBI_NH_VA asid=1 scale=1 leaf=1 ttl=3 tg=1 addr=0x1ff000',
      'TLBI_NH_VA asid=1 scale=9 leaf=1 ttl=3 tg=1 addr=0x201000',
      'SYNC cs=2',
      'ATC_INV sid=0x8 size=11', // the 2^11-page span holding the range, its address rounded down to it: 0
      'SYNC cs=2',
    ])
  })
})

describe('VT-d paging-structure caches over the host tables', () => {
  const s = vtdEach(0x40_0000)
  let t: IommuBench
  let file: string
  let dev: number
  let ioas: number
  beforeEach(() => ({ t, file, dev, ioas } = s))

  const fsSteps = (r: string): string[] => r.split('\n').filter((l) => /^walk (fs|ss) /.test(l)).map((l) => l.split(' ').slice(1, 3).join(' '))

  it('first stage: the first walk fills the level 4/3/2 pointers (one miss); a DMA to another page of the 2M resumes at level 1 (one hit)', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x3000 iova=0x100000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.deepEqual(fsSteps(dma(t, { op: 'read', iova: 0x10_0000n, len: 1 })), ['fs level=4', 'fs level=3', 'fs level=2', 'fs level=1'])
    assert.deepEqual(fsSteps(dma(t, { op: 'read', iova: 0x10_1000n, len: 1 })), ['fs level=1'])
    const view = t.hw('dmar0', 'walk_cache').replace(/next=0x[0-9a-f]+/g, 'next=T').replace(/since=\d+/g, 'since=N')
    assert.equal(
      view,
      'dmar0: paging-structure caches 3/256 hits=1 misses=1\n' +
        'did=2 pasid=0x0 first level=4 iova=0x0 size=0x8000000000 next=T rw user since=N\n' +
        'did=2 pasid=0x0 first level=3 iova=0x0 size=0x40000000 next=T rw user since=N\n' +
        'did=2 pasid=0x0 first level=2 iova=0x0 size=0x200000 next=T rw user since=N\n',
    )
    const json = t.vtd().debugFiles().walk_cache.json!() as { hits: number; entries: { level: number }[] }
    assert.deepEqual([json.hits, json.entries.map((e) => e.level)], [1, [4, 3, 2]])
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n$/)
  })

  it('second stage (a DIRTY_TRACKING domain): the pointers are tagged by DID alone; a partial unmap (IH = 1) keeps them, the walk resumes and faults as a fresh one would: no finding', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x3000 iova=0x100000`)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    assert.deepEqual(fsSteps(dma(t, { op: 'read', iova: 0x10_0000n, len: 1 })), ['ss level=4', 'ss level=3', 'ss level=2', 'ss level=1'])
    assert.match(t.hw('dmar0', 'walk_cache'), /^did=2 pasid=- second level=2 iova=0x0 size=0x200000 next=0x[0-9a-f]+ rw since=\d+$/m)
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x3000`)
    assert.match(t.hw('dmar0', 'invalidation_queue'), /\tIOTLB gran=page-selective did=2 addr=0x100000 am=2 ih=1\n/)
    const r = dma(t, { op: 'read', iova: 0x10_1000n, len: 1 })
    assert.match(r, /^fault FR=0x86 /)
    assert.deepEqual(fsSteps(r), ['ss level=1'])
    assert.match(t.hw('dmar0', 'walk_cache'), /^dmar0: paging-structure caches 3\/256 hits=1 misses=1$/m)
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n$/)
  })

  it('an unmap that frees a table sends IH = 0: the pointers to it go, the next walk starts at the root, no finding', () => {
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x202000 iova=0x1ff000`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
    assert.match(dma(t, { op: 'read', iova: 0x20_0000n, len: 1 }), /^ok read /)
    assert.match(t.hw('dmar0', 'walk_cache'), /^did=2 pasid=0x0 first level=2 iova=0x200000 /m)
    t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x1ff000 length=0x202000`)
    assert.doesNotMatch(t.hw('dmar0', 'walk_cache'), /level=2 iova=0x200000 /)
    assert.deepEqual(fsSteps(dma(t, { op: 'read', iova: 0x20_0000n, len: 1 })), ['fs level=4', 'fs level=3', 'fs level=2'])
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n$/)
  })
})

describe('VT-d PASIDs other than RID_PASID: the directory walk, PASID-tagged caches and their invalidation', () => {
  const s = vtdEach(0x4000)
  let t: IommuBench
  beforeEach(() => {
    t = s.t
    t.ok(`IOAS_MAP_FILE ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${s.file} start=0 length=0x2000 iova=0x100000`)
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${s.ioas}`)
  })

  /** PASID 0x41 (directory entry 1, table entry 1): the RID_PASID entry's tables under DID 7, written where the driver would put it. */
  function pasid41(): { entry: bigint; words: bigint[] } {
    const vtd = t.vtd()
    const mem = vtd.memory
    const dir = (mem.read64(vtd.contextEntryAddr(0x200)) as bigint) & ~0xfffn
    const rid = mem.read((mem.read64(dir) as bigint) & ~0xfffn, 64) as Buffer
    const words = Array.from({ length: 8 }, (_, i) => rid.readBigUInt64LE(i * 8))
    words[1] = (words[1] & ~0xffffn) | 7n
    const table = mem.alloc(0x1000)
    mem.write64(dir + 8n, table | 1n)
    const entry = table + 64n
    const b = Buffer.alloc(64)
    words.forEach((w, i) => b.writeBigUInt64LE(w, i * 8))
    mem.write(entry, b)
    return { entry, words }
  }

  it('a request with PASID 0x41 reads directory entry 1 and its table entry; IOTLB and paging-structure entries are tagged (DID 7, PASID 0x41) beside RID_PASID\'s', () => {
    pasid41()
    dma(t, { op: 'read', iova: 0x10_0000n, len: 1 })
    const r = dma(t, { op: 'read', iova: 0x10_0000n, len: 1, pasid: 0x41 })
    assert.match(r, /^ok read sid=0x200 pasid=65 iova=0x100000 len=1\n/)
    const dirStep = r.split('\n').find((l) => l.startsWith('walk pasiddir '))!
    const [, table, addr] = /table=(0x[0-9a-f]+) addr=(0x[0-9a-f]+)/.exec(dirStep)!
    assert.equal(BigInt(addr) - BigInt(table), 8n)
    assert.match(r, /^walk pasid word=1 table=0x[0-9a-f]+ addr=0x[0-9a-f]+048 desc=0x0000000000800007$/m)
    const iotlb = t.hw('dmar0', 'iotlb')
    assert.match(iotlb, /^did=2 pasid=0x0 first iova=0x100000 /m)
    assert.match(iotlb, /^did=7 pasid=0x41 first iova=0x100000 /m)
    assert.equal((t.hw('dmar0', 'walk_cache').match(/^did=7 pasid=0x41 first /gm) ?? []).length, 3)
    assert.match(t.hw('dmar0', 'config_cache'), /^pasid sid=0x200 pasid=0x41 did=7 pgtt=1 /m)
  })

  it('P_IOTLB by (DID 7, PASID 0x41) and PC by PASID drop that PASID\'s entries only; RID_PASID keeps hitting', () => {
    pasid41()
    dma(t, { op: 'read', iova: 0x10_0000n, len: 1 })
    dma(t, { op: 'read', iova: 0x10_0000n, len: 1, pasid: 0x41 })
    const vtd = t.vtd()
    vtd.qi.submit([pasidCacheInv(1, 7, 0x41), pasidIotlb(7, 0x41, P_IOTLB_GRAN.NONG_PASID, 0n, 0, false)])
    assert.doesNotMatch(t.hw('dmar0', 'iotlb'), /pasid=0x41/)
    assert.doesNotMatch(t.hw('dmar0', 'walk_cache'), /pasid=0x41/)
    assert.doesNotMatch(t.hw('dmar0', 'config_cache'), /pasid=0x41/)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 1 }), /via=iotlb/)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 1, pasid: 0x41 }), /via=walk/)
  })

  it('PASID 0x41\'s entry changed without the PASID-cache flush: a finding naming PC did=7 pasid=65; with it, none', () => {
    const { entry, words } = pasid41()
    dma(t, { op: 'read', iova: 0x10_0000n, len: 1, pasid: 0x41 })
    t.vtd().memory.write64(entry + 8n, (words[1] & ~0xffffn) | 8n)
    const r = dma(t, { op: 'read', iova: 0x10_0000n, len: 1, pasid: 0x41 })
    assert.match(r, /^finding 1: PASID; sid=0x200; ssid=0x41; iova=0x100000; .*changed: pasid level=1 .* old=0x0000000000800007 new=0x0000000000800008; fix: PC did=7 pasid=65$/m)
    t.vtd().qi.submit([pasidCacheInv(1, 7, 0x41), pasidIotlb(7, 0x41, P_IOTLB_GRAN.NONG_PASID, 0n, 0, false)])
    assert.doesNotMatch(dma(t, { op: 'read', iova: 0x10_0000n, len: 1, pasid: 0x41 }), /finding/)
    assert.match(t.hw('dmar0', 'iotlb'), /^did=8 pasid=0x41 first iova=0x100000 /m)
    assert.match(t.hw('dmar0', 'findings'), /findings=1\n/)
  })
})

describe('VT-d PASID attach through VFIO_DEVICE_ATTACH_IOMMUFD_PT: the PASID\'s entry, DMA with it, teardown', () => {
  const s = vtdEach(0x4000, (file) => {
    const fd = fs.openSync(file, 'r+')
    fs.writeSync(fd, Buffer.from('rid data'), 0, 8, 0)
    fs.writeSync(fd, Buffer.from('pasid 5!'), 0, 8, 0x1000)
    fs.closeSync(fd)
  })
  let t: IommuBench
  let rid: number
  let other: number
  beforeEach(() => {
    t = s.t
    const ioas2 = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${s.file} start=0 length=0x1000 iova=0x100000`)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas2} flags=FIXED_IOVA|READABLE|WRITEABLE path=${s.file} start=0x1000 length=0x1000 iova=0x100000`)
    rid = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.ioas} flags=PASID`, 'out_hwpt_id')
    other = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${ioas2} flags=PASID`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${rid}`)
  })

  it('PASID 5 translates through its own domain (DID 3) while PASID 0 keeps its own (DID 2)', () => {
    assert.equal(t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=PASID pasid=5`).pt_id, String(other))
    assert.equal(t.describe(s.dev).get('pasids'), `5:${other}`)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8 }), /^data 7269642064617461$/m)
    const iotlb = t.hw('dmar0', 'iotlb')
    assert.match(iotlb, /^did=3 pasid=0x5 first iova=0x100000 /m)
    assert.match(iotlb, /^did=2 pasid=0x0 first iova=0x100000 /m)
  })

  it('an IOAS_UNMAP under PASID 5\'s domain flushes P_IOTLB (DID 3, PASID 5) page-selective and the device TLB with PASID 5', () => {
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=PASID pasid=5`)
    dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    const before = queue(t, 'dmar0', 'invalidation_queue').length
    t.ok(`IOAS_UNMAP ioas_id=${t.describe(other).get('ioas')} iova=0x100000 length=0x1000`)
    assert.deepEqual(queue(t, 'dmar0', 'invalidation_queue').slice(before), [
      'P_IOTLB did=3 pasid=5 gran=page-selective addr=0x100000 am=0 ih=1',
      'DEV_IOTLB_PASID sid=02:00.0 pasid=5 addr=0x100000 s=0',
      'WAIT sw=1 if=0 fn=0 status_data=2',
    ])
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^fault /m)
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n/)
  })

  it('detach flushes PC, P_IOTLB (DID 3, PASID 5) and the device TLB with PASID 5; the PASID then faults, with zero findings', () => {
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=PASID pasid=5`)
    dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    const before = queue(t, 'dmar0', 'invalidation_queue').length
    t.ok(`DEVICE_DETACH dev_id=${s.dev} flags=PASID pasid=5`)
    assert.deepEqual(queue(t, 'dmar0', 'invalidation_queue').slice(before), [
      'PC gran=pasid did=3 pasid=5',
      'P_IOTLB did=3 pasid=5 gran=all-in-pasid',
      'DEV_IOTLB_PASID sid=02:00.0 pasid=5 addr=0x7ffffffffffff000 s=1',
      'WAIT sw=1 if=0 fn=0 status_data=2',
    ])
    assert.doesNotMatch(t.hw('dmar0', 'iotlb'), /pasid=0x5 /)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^fault FR=0x59 /m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8 }), /^data 7269642064617461$/m)
    assert.match(t.hw('dmar0', 'findings'), /findings=0\n/)
  })

  it('a second attach of PASID 5 replaces its domain: the old DID is flushed for PASID 5', () => {
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=PASID pasid=5`)
    const before = queue(t, 'dmar0', 'invalidation_queue').length
    t.ok(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${rid} flags=PASID pasid=5`)
    assert.deepEqual(queue(t, 'dmar0', 'invalidation_queue').slice(before), [
      'PC gran=pasid did=3 pasid=5',
      'P_IOTLB did=3 pasid=5 gran=all-in-pasid',
      'DEV_IOTLB_PASID sid=02:00.0 pasid=5 addr=0x7ffffffffffff000 s=1',
      'WAIT sw=1 if=0 fn=0 status_data=2',
    ])
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7269642064617461$/m)
  })

  it('as frames: the 16-byte struct attaches PASID 7 and writes pt_id back; a 12-byte one (argsz=12) is EINVAL and changes nothing', () => {
    const attach = (argsz: number, struct?: Buffer) =>
      t.ioctl('VFIO_DEVICE_ATTACH_IOMMUFD_PT', { argsz: BigInt(argsz), flags: 1n, pt_id: BigInt(other), pasid: 7n }, { device: DEV.vtdA, struct })
    const short = attach(12, structBytes(ioctlOf('VFIO_DEVICE_ATTACH_IOMMUFD_PT'), { argsz: 12n, flags: 1n, pt_id: BigInt(other), pasid: 7n }).subarray(0, 12))
    assert.equal(short.errno, 'EINVAL')
    assert.match(short.message ?? '', /argsz=12/)
    const ok = attach(16)
    assert.equal(ok.errno, undefined, ok.message)
    assert.equal(t.out('VFIO_DEVICE_ATTACH_IOMMUFD_PT', ok).pt_id, BigInt(other))
    assert.equal(t.describe(s.dev).get('pasids'), `7:${other}`)
    const detach = t.ioctl('VFIO_DEVICE_DETACH_IOMMUFD_PT', { argsz: 12n, flags: 1n, pasid: 7n }, { device: DEV.vtdA })
    assert.equal(detach.errno, undefined, detach.message)
    assert.equal(t.describe(s.dev).get('pasids'), '-')
  })

  it('errnos: PASID 0 (the attached RID: EBUSY) and past PSS, an IOAS, a domain without flags=PASID, short argsz, unknown flags', () => {
    const plain = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.ioas}`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=PASID pasid=0`, 'EBUSY', /pasid=0 is the RID, which is attached/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=PASID pasid=0x100000`, 'EINVAL', /pasid=1048576/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${s.ioas} flags=PASID pasid=5`, 'EINVAL', /automatic domain/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${plain} flags=PASID pasid=5`, 'EINVAL', /flags=PASID/)
    t.err(`DEVICE_ATTACH argsz=12 dev_id=${s.dev} pt_id=${other} flags=PASID pasid=5`, 'EINVAL', /argsz=12/)
    t.err(`DEVICE_ATTACH dev_id=${s.dev} pt_id=${other} flags=0x2`, 'EINVAL', /flags=0x2/)
    t.err(`DEVICE_DETACH argsz=8 dev_id=${s.dev} flags=PASID pasid=5`, 'EINVAL', /argsz=8/)
    assert.equal(t.describe(s.dev).get('pasids'), '-')
    t.ok(`DEVICE_DETACH dev_id=${s.dev} flags=PASID pasid=5`)
  })
})

describe('a VT-d function without ATS (topology ats: false)', () => {
  it('GET_HW_INFO has PCI_ATS_NOT_SUPPORTED, its context entry has no DTE, and an unmap flushes the IOTLB without a DEV_IOTLB', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vtd-no-ats-'))
    const topo = path.join(dir, 't.yaml')
    const file = path.join(dir, 'mem')
    fs.writeFileSync(file, Buffer.alloc(0x2000))
    fs.writeFileSync(topo, fs.readFileSync(DEFAULT_TOPOLOGY, 'utf8').replace('"0000:02:00.0", vendor: 0x8086, device: 0x0d58 }', '"0000:02:00.0", vendor: 0x8086, device: 0x0d58, ats: false }'))
    const t = new IommuBench(new World(loadTopology(topo)))
    try {
      const dev = t.bind(DEV.vtdA)
      assert.match(t.send(`GET_HW_INFO dev_id=${dev}`), / out_capabilities=0x9 /)
      const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
      t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x2000 iova=0x1000000`)
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${ioas}`)
      const vtd = t.vtd()
      const ctx = vtd.memory.read64(vtd.contextEntryAddr(vtd.devices[0].streamId))
      assert.equal(typeof ctx === 'bigint' && ctx & 4n, 0n, 'context entry DTE')
      const before = queue(t, 'dmar0', 'invalidation_queue').length
      t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x1000000 length=0x2000`)
      assert.deepEqual(queue(t, 'dmar0', 'invalidation_queue').slice(before), ['P_IOTLB did=2 pasid=0 gran=page-selective addr=0x1000000 am=1 ih=1', 'WAIT sw=1 if=0 fn=0 status_data=2'])
      assert.throws(() => dma(t, { op: 'translate', iova: 0x1000000n }), /translate: 0000:02:00\.0 has no ATS capability/)
    } finally {
      t.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
