/**
 * What the host driver model does for DMA under nesting (smmu-host.ts): the
 * guest's tables live in a file mapped with IOAS_MAP_FILE, the nest parent's
 * stage 2 is the IOAS, and an IOAS_UNMAP on the parent issues S2_IPA and
 * NH_ALL for every VMID that translates through it, then CMD_SYNC, so the
 * next DMA faults at stage 2 and no stale entry is left (zero findings).
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench, SMMU0 } from '../helpers/iommufd'
import { FileBacking } from '../../src/memory/backing'
import { Region } from '../../src/memory/region'
import { s1Cd, wordBytes } from '../../src/hw/smmuv3/build'
import { Geometry, PageTable } from '../../src/hw/smmuv3/pgtable'
import { deviceDma } from '../../src/iommufd/dma'
import { pinProcessPages } from '../../src/iommufd/ioas'
import { ErrnoError } from '../../src/util/errno'

const GUEST = 0x4000_0000n

/** A 2 MiB guest RAM file with the guest's stage 1 in it: CD at IPA 0x40000000, tables after it, VA 0x1000 -> IPA 0x40100000. */
function guestRam(file: string): void {
  fs.writeFileSync(file, Buffer.alloc(0x20_0000))
  const ram = FileBacking.open(file)
  const region = new Region(ram, GUEST, 0x10_0000n, GUEST + 0x1000n)
  const s1 = new PageTable(region, { stage: 1, geometry: new Geometry(12, 48) })
  s1.map(0x1000n, GUEST + 0x10_0000n, 0x1000n, { read: true, write: true })
  region.write(GUEST, wordBytes(s1Cd({ asid: 1, ttb0: s1.root })))
  ram.write(0x10_0000n, Buffer.from('guest data'))
  ram.release()
}

/** How many of this process's descriptors are open on `file`. */
function openFds(file: string): number {
  return fs.readdirSync(`/proc/${process.pid}/fd`).filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/${process.pid}/fd/${fd}`) === file
    } catch {
      return false
    }
  }).length
}

describe('host driver under nesting: DMA, IOAS_UNMAP of guest RAM, the kernel\'s invalidation', () => {
  let dir: string
  let file: string
  let t: IommuBench
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dma-host-'))
    file = path.join(dir, 'guest')
    guestRam(file)
    t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x100000 iova=0x40000000`)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0x100000 length=0x100000 iova=0x40100000`)
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent}`)
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x10`)
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} data_type=ARM_SMMUV3 data.ste=0x${(GUEST | 0xbn).toString(16)},0x0`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('reads guest data through the nested translation, then after the unmap faults at stage 2 with zero findings', () => {
    const read = () => deviceDma(t.world, DEV.smmu0a, { op: 'read', iova: 0x1000n, len: 10 })
    const a = read()
    assert.equal(a.data?.toString(), 'guest data')
    assert.equal(read().pieces[0].source, 'tlb')
    t.ok('IOAS_UNMAP ioas_id=2 iova=0x40100000 length=0x100000')
    const cmds = t
      .hw(SMMU0, 'cmdq')
      .split('\n')
      .filter((l) => /^ +\d+\t/.test(l))
      .map((l) => l.split('\t')[3])
    // the nested attach's STE: S2 -> nested changes Config (word 0) and the S1 fields (word 1) but not the VMID
    // (word 2: the vIOMMU's is the parent's, arm_vsmmu_init), an update in two steps, then PREFETCH_CFG; the
    // guest's STE has EATS = 0, so ATS goes off (arm_smmu_attach_commit: the whole ATC); the VMID stayed in use
    // (the nested domain counts as its user), so no TLBI_S12_VMALL; then S2_IPA (256 pages, leaves at level 3)
    // and NH_ALL for that one VMID, then the sync; no ATC_INV
    assert.deepEqual(cmds.slice(-10), [
      ...Array.from({ length: 2 }, () => ['CFGI_STE sid=0x8 leaf=1', 'SYNC cs=2']).flat(),
      'PREFETCH_CFG sid=0x8',
      'ATC_INV sid=0x8 size=52',
      'SYNC cs=2',
      'TLBI_S2_IPA vmid=1 scale=8 leaf=1 ttl=3 tg=1 addr=0x40100000',
      'TLBI_NH_ALL vmid=1',
      'SYNC cs=2',
    ])
    const b = read()
    assert.equal(b.event?.name, 'F_TRANSLATION')
    assert.equal(b.event?.s2, true)
    assert.equal(b.event?.cls, 'IN')
    assert.equal(b.event?.ipa, 0x4010_0000n)
    assert.equal(b.findings.length, 0)
    assert.match(t.hw(SMMU0, 'findings'), /^sanitizer: mode=report findings=0$/m)
  })

  it('the file is held while mapped and let go when the last mapping of it goes', () => {
    const fds = (): number => openFds(file)
    assert.equal(fds(), 2)
    t.ok('IOAS_UNMAP ioas_id=2 iova=0x40100000 length=0x100000')
    assert.equal(fds(), 1)
    t.ok('IOAS_UNMAP ioas_id=2 iova=0x40000000 length=0x100000')
    assert.equal(fds(), 0)
  })

  it('closing the context lets the files go too, and the windows onto them', () => {
    const windows = (): string => t.world.machine.memory.dump()
    assert.match(windows(), /file /)
    t.world.close(t.ctx)
    assert.equal(windows(), '')
    assert.equal(openFds(file), 0)
  })
})

describe('host driver: ATS under nesting', () => {
  let dir: string
  let t: IommuBench
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('a guest STE with EATS = 1: translation requests fill the ATC; the unmap\'s ATC_INV (everything, for a nest parent) empties it', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dma-ats-'))
    const file = path.join(dir, 'guest')
    guestRam(file)
    t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    t.ok('IOAS_ALLOC')
    t.ok(`IOAS_MAP_FILE ioas_id=2 flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x200000 iova=0x40000000`)
    t.ok(`HWPT_ALLOC dev_id=${dev} pt_id=2 flags=NEST_PARENT`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=3`)
    t.ok(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=3`)
    t.ok(`VDEVICE_ALLOC viommu_id=4 dev_id=${dev} virt_id=0x10`)
    t.ok(`HWPT_ALLOC dev_id=${dev} pt_id=4 data_type=ARM_SMMUV3 data.ste=0x${(GUEST | 0xbn).toString(16)},0x${(1n << 28n).toString(16)}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=6`)
    const tr = deviceDma(t.world, DEV.smmu0a, { op: 'translate', iova: 0x1000n, len: 0 })
    assert.equal(tr.event, undefined)
    assert.equal(tr.ats?.size, 0x1000n)
    assert.match(t.hw(SMMU0, 'atc'), /^ATC: 1\/64\nsid=0x8 pasid=none addr=0x1000 size=0x1000 out=0x[0-9a-f]+ priv:rwx user:rwx since=\d+$/m)
    t.ok('IOAS_UNMAP ioas_id=2 iova=0x40000000 length=0x200000')
    const cmds = t.hw(SMMU0, 'cmdq').split('\n').filter((l) => /^ +\d+\t/.test(l)).map((l) => l.split('\t')[3])
    assert.deepEqual(cmds.slice(-2), ['ATC_INV sid=0x8 size=52', 'SYNC cs=2'])
    assert.match(t.hw(SMMU0, 'atc'), /^ATC: 0\/64\n$/)
  })
})

describe('pinning a caller\'s pages (a real ioctl IOAS_MAP)', () => {
  it('EFAULT where the caller has nothing mapped; its memory from user_va where it has', () => {
    assert.throws(() => pinProcessPages(process.pid, 0x1000n, 0x1000n), (e: unknown) => e instanceof ErrnoError && e.errno === 'EFAULT' && /nothing mapped at 0x1000/.test(e.message))
    const first = fs.readFileSync(`/proc/${process.pid}/maps`, 'utf8').split('\n')[0]
    const start = BigInt(`0x${first.split('-')[0]}`)
    const ref = pinProcessPages(process.pid, start, 0x1000n)
    assert.equal(ref.offset, start)
    assert.deepEqual(ref.backing.read(start, 4), Buffer.from([0x7f, 0x45, 0x4c, 0x46]))
    ref.backing.release()
  })
})
