/**
 * SMMUv3 PASID attach through VFIO_DEVICE_ATTACH_IOMMUFD_PT flags=PASID, as
 * the Linux driver does it: the master's CD table (linear or 2-level by its
 * SSID bits), the STE's S1CDMax/S1Fmt/S1DSS, the PASID's CD and CFGI_CD for
 * its SSID, teardown with TLBI by ASID, DMA with the SSID, the sanitizer.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, IommuBench, SMMU0 } from '../helpers/iommufd'
import { DeviceDma, deviceDma } from '../../src/iommufd/dma'
import { formatDmaReply } from '../../src/uapi/dma-text'
import { World } from '../../src/iommufd/world'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'
import { parseCommand } from '../../src/hw/smmuv3/commands'
import { ridDomain, setRidDomain } from '../../src/iommufd/rid-domain'

function dma(t: IommuBench, r: Partial<DeviceDma> & { op: DeviceDma['op']; iova: bigint }, bdf: string = DEV.smmu0a): string {
  const req: DeviceDma = { len: 0, ...r }
  return formatDmaReply(req, deviceDma(t.world, bdf, req))
}

/** The host command queue's commands, oldest first. */
function cmdq(t: IommuBench): string[] {
  return t
    .hw(SMMU0, 'cmdq')
    .split('\n')
    .filter((l) => /^ +\d+\t/.test(l))
    .map((l) => l.split('\t').pop()!)
}

/** Runs `fn` and returns the commands it sent. */
function sent(t: IommuBench, fn: () => void): string[] {
  const before = cmdq(t).length
  fn()
  return cmdq(t).slice(before)
}

const SYNC = 'SYNC cs=2'
/**
 * The entry writer's CFGI_CD + SYNC pairs for one CD write: 2 for a CD made
 * or cleared (the other words, then word 0; or word 0, then the rest), 3 for
 * one replaced (V cleared, the rest, word 0).
 */
function cfgiCd(ssid: string | undefined, times: number): string[] {
  return Array.from({ length: times }, () => [ssid ? `CFGI_CD ssid=${ssid} sid=0x8 leaf=1` : 'CFGI_CD sid=0x8 leaf=1', SYNC]).flat()
}
/**
 * arm_smmu_write_ste for stream 0x8: `steps` CFGI_STE + SYNC pairs (1 when
 * one word's used bits change and no other needs its unused bits set first,
 * 2 for a hitless change with such a word, 3 for a breaking one), then
 * PREFETCH_CFG.
 */
function cfgiSte(steps: number): string[] {
  return [...Array.from({ length: steps }, () => ['CFGI_STE sid=0x8 leaf=1', SYNC]).flat(), 'PREFETCH_CFG sid=0x8']
}
/** The device's ATC entries of SSID 5 (ATS is on for a stage-1 master). */
const ATC5 = 'ATC_INV ssv=1 ssid=0x5 sid=0x8 size=52'

/** Each test: a fresh machine (the default one unless `machine` gives a topology's text), 0000:00:01.0 bound, two IOASes over one file and a PASID-capable HWPT on each. */
function pasidEach(machine?: (text: string) => string): { t: IommuBench; dev: number; ioas: number; rid: number; other: number; dir: string } {
  const s = {} as { t: IommuBench; dev: number; ioas: number; rid: number; other: number; dir: string }
  beforeEach(() => {
    s.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smmu-pasid-'))
    const file = path.join(s.dir, 'mem')
    const mem = Buffer.alloc(0x2000)
    mem.write('rid data', 0)
    mem.write('pasid 5!', 0x1000)
    fs.writeFileSync(file, mem)
    let world: World | undefined
    if (machine) {
      const topo = path.join(s.dir, 't.yaml')
      fs.writeFileSync(topo, machine(fs.readFileSync(DEFAULT_TOPOLOGY, 'utf8')))
      world = new World(loadTopology(topo))
    }
    const t = (s.t = new IommuBench(world))
    s.dev = t.bind(DEV.smmu0a)
    s.ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const ioas2 = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${s.ioas} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x1000 iova=0x100000`)
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas2} flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0x1000 length=0x1000 iova=0x100000`)
    s.rid = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${s.ioas} flags=PASID`, 'out_hwpt_id')
    s.other = t.id(`HWPT_ALLOC dev_id=${s.dev} pt_id=${ioas2} flags=PASID`, 'out_hwpt_id')
  })
  afterEach(() => {
    s.t.close()
    fs.rmSync(s.dir, { recursive: true, force: true })
  })
  return s
}

describe('SMMUv3 PASID attach: CD table, CFGI_CD by SSID, DMA with a SubstreamID, teardown', () => {
  const s = pasidEach()

  it('a 20-bit device gets a 2-level CD table (S1Fmt 2, S1CDMax 20, S1DSS SSID0); PASID 5 writes its CD with CFGI_CD ssid=5 (twice: the entry writer\'s two steps); each SSID reads its own domain', () => {
    const { t, dev, rid, other } = s
    assert.deepEqual(
      sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)),
      // the leaf of SSIDs 0..1023 (its L1 descriptor may be cached invalid), CD 0, the STE (abort -> S1: words 1-2, then word 0), then ATS enabled (the whole ATC flushed first)
      ['CFGI_CD sid=0x8', SYNC, ...cfgiCd(undefined, 2), ...cfgiSte(2), 'ATC_INV sid=0x8 size=52', SYNC],
    )
    assert.deepEqual(sent(t, () => assert.equal(t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`).pt_id, String(other))), [...cfgiCd('0x5', 2), ATC5, SYNC])
    assert.equal(t.describe(dev).get('pasids'), `5:${other}`)
    assert.equal(t.describe(dev).get('pasid_bits'), '20')
    const cds = t.hw(SMMU0, 'cd_table').split('\n')
    assert.match(cds[0], /^sid=0x8 ctx=0x[0-9a-f]+ s1cdmax=20 s1fmt=2 s1dss=ssid0$/)
    assert.match(cds[1], /^ {2}ssid=0x0 cd=0x[0-9a-f]+ asid=1 ttb0=0x[0-9a-f]+ t0sz=16 s=0$/)
    assert.match(cds[2], /^ {2}ssid=0x5 cd=0x[0-9a-f]+ asid=2 ttb0=0x[0-9a-f]+ t0sz=16 s=0$/)
    const r = dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    assert.match(r, /^ok read sid=0x8 pasid=5 /)
    assert.match(r, /^walk l1cd /m)
    assert.match(r, /^data 7061736964203521$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8 }), /^data 7269642064617461$/m)
    // SSID 0 is the RID's: with S1DSS = SSID0 a transaction naming it is refused
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 0 }), /^fault F_STREAM_DISABLED\(0x06\) /)
    const cc = t.hw(SMMU0, 'config_cache')
    assert.match(cc, /^CD {2}sid=0x8 ssid=0x5 asid=2 /m)
    assert.match(cc, /^CD {2}sid=0x8 ssid=0x0 asid=1 /m)
  })

  it('S1STALLD: set while no CD stalls; a PASID domain with a fault queue clears it first (one step), its CD has S = 1 and translates; its detach sets it again', () => {
    const { t, dev, rid } = s
    const word1 = (): string => /^sid=0x8 .*\n {2}ste=0x[0-9a-f]{16},(0x[0-9a-f]{16}),/m.exec(t.hw(SMMU0, 'stream_table'))![1]
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    // S1DSS SSID0, CD fetches WB/ISH, S1STALLD (IDR0.STALL_MODEL = 0, the master does not stall), EATS = 1
    assert.equal(word1(), '0x00000000180000d6')
    const fault = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
    const ioas3 = t.id('IOAS_ALLOC', 'out_ioas_id')
    t.ok(`IOAS_MAP_FILE ioas_id=${ioas3} flags=FIXED_IOVA|READABLE|WRITEABLE path=${path.join(s.dir, 'mem')} start=0x1000 length=0x1000 iova=0x100000`)
    const stalling = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas3} flags=PASID|FAULT_ID_VALID fault_id=${fault}`, 'out_hwpt_id')
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${stalling} flags=PASID pasid=5`)), [...cfgiSte(1), ...cfgiCd('0x5', 2), ATC5, SYNC])
    assert.equal(word1(), '0x00000000100000d6')
    assert.match(t.hw(SMMU0, 'cd_table'), /^ {2}ssid=0x5 cd=0x[0-9a-f]+ asid=2 .* s=1$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_DETACH dev_id=${dev} flags=PASID pasid=5`)), [...cfgiCd('0x5', 2), ATC5, SYNC, ...cfgiSte(1), 'TLBI_NH_ASID asid=2', SYNC])
    assert.equal(word1(), '0x00000000180000d6')
    assert.match(t.hw(SMMU0, 'findings'), /^sanitizer: mode=report findings=0$/m)
  })

  it('detach clears the CD, sends CFGI_CD ssid=5, ATC_INV with SSV for SSID 5, and TLBI by the ASID that leaves; the PASID then faults, with zero findings', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)
    dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    // through the endpoint's ATC: a translation request with the PASID fills an entry tagged with it
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5, ats: true }), /^data 7061736964203521$/m)
    assert.match(t.hw(SMMU0, 'atc'), /^sid=0x8 pasid=5 addr=0x100000 /m)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_DETACH dev_id=${dev} flags=PASID pasid=5`)), [...cfgiCd('0x5', 2), ATC5, SYNC, 'TLBI_NH_ASID asid=2', SYNC])
    assert.doesNotMatch(t.hw(SMMU0, 'atc'), /pasid=5 /)
    assert.equal(t.describe(dev).get('pasids'), '-')
    assert.doesNotMatch(t.hw(SMMU0, 'cd_table'), /ssid=0x5/)
    assert.doesNotMatch(t.hw(SMMU0, 'tlb'), /asid=2 /)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^fault C_BAD_CD\(0x0a\) sid=0x8 ssid=0x5 .*reason="CD.V = 0"$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8 }), /^data 7269642064617461$/m)
    assert.match(t.hw(SMMU0, 'findings'), /findings=0\n/)
  })

  it('a second attach of PASID 5 replaces its domain: the CD is rewritten in three steps (V cleared first), then the old ASID is flushed', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid} flags=PASID pasid=5`)), [...cfgiCd('0x5', 3), ATC5, SYNC, 'TLBI_NH_ASID asid=2', SYNC])
    assert.match(t.hw(SMMU0, 'cd_table'), /^ {2}ssid=0x5 cd=0x[0-9a-f]+ asid=1 /m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7269642064617461$/m)
    assert.match(t.hw(SMMU0, 'findings'), /findings=0\n/)
  })

  it('a PASID past 1023 gets its own 64 KiB leaf: its L1 descriptor, CFGI_CD (leaf=0) for it, then the CD; the walk reads L1 entry 0x48', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    const high = 0x12345
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=${high}`)), ['CFGI_CD ssid=0x12345 sid=0x8', SYNC, ...cfgiCd('0x12345', 2), 'ATC_INV ssv=1 ssid=0x12345 sid=0x8 size=52', SYNC])
    const ctx = BigInt(/ctx=(0x[0-9a-f]+)/.exec(t.hw(SMMU0, 'cd_table'))![1])
    const r = dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: high })
    const l1 = /^walk l1cd table=(0x[0-9a-f]+) addr=(0x[0-9a-f]+) desc=(0x[0-9a-f]+)$/m.exec(r)
    assert.ok(l1, r)
    assert.equal(BigInt(l1[2]), ctx + 0x48n * 8n)
    const leaf = BigInt(l1[3]) & ~0xfffn
    assert.match(r, new RegExp(`^walk cd table=0x[0-9a-f]+ addr=0x${(leaf + 0x345n * 64n).toString(16)} `, 'm'))
    assert.match(r, /^data 7061736964203521$/m)
    assert.match(t.hw(SMMU0, 'cd_table'), /^ {2}ssid=0x12345 cd=0x[0-9a-f]+ asid=2 /m)
  })

  it('on a blocked RID the STE becomes a CD table with S1DSS = terminate and ATS on; the last PASID out puts the abort STE back, ATS off', () => {
    const { t, dev, other } = s
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)), [
      'CFGI_CD ssid=0x5 sid=0x8',
      SYNC,
      ...cfgiCd('0x5', 2),
      ...cfgiSte(2),
      'ATC_INV sid=0x8 size=52',
      SYNC,
    ])
    assert.match(t.hw(SMMU0, 'cd_table'), /^sid=0x8 ctx=0x[0-9a-f]+ s1cdmax=20 s1fmt=2 s1dss=terminate$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8 }), /^fault F_STREAM_DISABLED\(0x06\) sid=0x8 /)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_DETACH dev_id=${dev} flags=PASID pasid=5`)), [
      ...cfgiCd('0x5', 2),
      ATC5,
      SYNC,
      // S1 -> abort: word 0 (Config), then word 1 cleared
      ...cfgiSte(2),
      'ATC_INV sid=0x8 size=52',
      SYNC,
      'TLBI_NH_ASID asid=1',
      SYNC,
    ])
    assert.equal(t.hw(SMMU0, 'cd_table'), '')
    assert.match(t.hw(SMMU0, 'stream_table'), /^sid=0x8 config=abort ats=0$/m)
  })

  it('the RID detached while PASID 5 stays: a CD-table STE with S1DSS = terminate, CD 0 cleared after it, the RID\'s ASID flushed; PASID 5 keeps translating', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)
    // only S1DSS changes (one step); ATS stays on for the PASIDs: the RID's translation changed, so the whole ATC goes before CD 0
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_DETACH dev_id=${dev}`)), [...cfgiSte(1), 'ATC_INV sid=0x8 size=52', SYNC, ...cfgiCd(undefined, 2), 'TLBI_NH_ASID asid=1', SYNC])
    const cds = t.hw(SMMU0, 'cd_table')
    assert.match(cds, /s1dss=terminate\n {2}ssid=0x5 /)
    assert.doesNotMatch(cds, /ssid=0x0 /)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8 }), /^fault F_STREAM_DISABLED\(0x06\) /)
    assert.match(t.hw(SMMU0, 'findings'), /findings=0\n/)
  })

  it('IOAS_UNMAP of a domain on the RID and on two PASIDs flushes their ATCs on one list, the latest attach first (arm_smmu_atc_inv_domain), then one CMD_SYNC', () => {
    const { t, dev, ioas, rid } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid} flags=PASID pasid=5`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid} flags=PASID pasid=7`)
    const cmds = sent(t, () => t.ok(`IOAS_UNMAP ioas_id=${ioas} iova=0x100000 length=0x1000`))
    const atc = cmds.slice(cmds.findIndex((c) => c.startsWith('ATC_INV')))
    assert.deepEqual(atc, ['ATC_INV ssv=1 ssid=0x7 sid=0x8 addr=0x100000', 'ATC_INV sid=0x8 addr=0x100000', 'ATC_INV ssv=1 ssid=0x5 sid=0x8 addr=0x100000', SYNC])
  })

  it('IOAS_UNMAP under PASID 5\'s domain sends TLBI_NH_VA by its ASID; the next DMA faults, with zero findings', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)
    dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    const cmds = sent(t, () => t.ok(`IOAS_UNMAP ioas_id=${t.describe(other).get('ioas')} iova=0x100000 length=0x1000`))
    assert.match(cmds[0], /^TLBI_NH_VA asid=2 .*addr=0x100000/)
    // the ATC flush that follows is for SSID 5 only (the RID's domain is another)
    assert.deepEqual(cmds.slice(-2), ['ATC_INV ssv=1 ssid=0x5 sid=0x8 addr=0x100000', SYNC])
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^fault F_TRANSLATION\(0x10\) /)
    assert.match(t.hw(SMMU0, 'findings'), /findings=0\n/)
  })

  it('sanitizer: CD 5 rewritten without CFGI_CD is a finding naming CFGI_CD sid=0x8 ssid=0x5; the CFGI_CD (and TLBI of the ASID) leave none', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    const cds = t.hw(SMMU0, 'cd_table')
    const cd5 = BigInt(/ssid=0x5 cd=(0x[0-9a-f]+)/.exec(cds)![1])
    const ridTtb = BigInt(/ssid=0x0 cd=0x[0-9a-f]+ asid=1 ttb0=(0x[0-9a-f]+)/.exec(cds)![1])
    // behind the driver's back: CD 5's TTB0 now names the RID domain's table
    t.smmu(SMMU0).memory.write64(cd5 + 8n, ridTtb)
    const r = dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    assert.match(r, /^finding 1: CD; sid=0x8; ssid=0x5; .*changed: cd level=0 addr=0x[0-9a-f]+ old=0x[0-9a-f]+ new=0x[0-9a-f]+; fix: CFGI_CD sid=0x8 ssid=0x5 leaf$/m)
    // the cached translation of ASID 2 is stale too: the CD no longer leads to it
    assert.match(r, /^finding 2: TLB; sid=0x8; ssid=0x5; .*fix: TLBI_NH_VA vmid=0 asid=2 addr=0x100000 leaf$/m)
    assert.match(t.hw(SMMU0, 'findings'), /findings=2\n/)
    t.smmu(SMMU0).cmdq.issue(['CFGI_CD sid=0x8 ssid=0x5 leaf', 'TLBI_NH_ASID asid=2', 'SYNC'].map(parseCommand))
    const clean = dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 })
    assert.doesNotMatch(clean, /^finding/m)
    assert.match(clean, /^data 7269642064617461$/m)
    assert.match(t.hw(SMMU0, 'findings'), /findings=2\n/)
  })

  it('flags=PASID pasid=0 is the RID (IOMMU_NO_PASID), each detach ending only its own attach, as VFIO keeps them apart; a device without PASIDs takes it too', () => {
    const { t, dev, rid, other } = s
    assert.equal(t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid} flags=PASID pasid=0`).pt_id, String(rid))
    assert.equal(t.describe(dev).get('attached'), `${rid} (hwpt_paging)`)
    assert.equal(t.describe(dev).get('pasids'), '-')
    // a second PASID-0 attach replaces; a plain attach is a new attach of an attached RID (EBUSY); a plain detach leaves it
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=0`)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`, 'EBUSY', /attached as pasid=0/)
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    assert.equal(t.describe(dev).get('attached'), `${other} (hwpt_paging)`)
    t.ok(`DEVICE_DETACH dev_id=${dev} flags=PASID pasid=0`)
    assert.equal(t.describe(dev).get('attached'), '-')
    // the other way round: a plain attach, then PASID 0 is EBUSY and its detach leaves the RID
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=0`, 'EBUSY', /pasid=0 is the RID/)
    t.ok(`DEVICE_DETACH dev_id=${dev} flags=PASID pasid=0`)
    assert.equal(t.describe(dev).get('attached'), `${rid} (hwpt_paging)`)
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    const plain = t.bind(DEV.smmu1b)
    t.ok(`DEVICE_ATTACH dev_id=${plain} pt_id=${s.ioas} flags=PASID pasid=0`)
    assert.match(t.describe(plain).get('attached')!, /^\d+ \(hwpt_paging\)$/)
  })

  it('errnos: PASID past 20 bits, a device without a PASID capability, a nest parent for a PASID, a DMA port PASID past the device\'s width', () => {
    const { t, dev, ioas, other } = s
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=0x100000`, 'EINVAL', /pasid=1048576: 0000:00:01.0 takes PASIDs 1\.\.1048575/)
    t.err(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT|PASID`, 'EOPNOTSUPP', /NEST_PARENT\|PASID/)
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent} flags=PASID pasid=5`, 'EINVAL', /not allocated with flags=PASID/)
    // the RID under a nest parent (a stage-2 STE, no CD table): no PASID may join it
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent}`)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`, 'EINVAL', /not PASID-compatible/)
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    const plain = t.bind(DEV.smmu1b)
    const h = t.id(`HWPT_ALLOC dev_id=${plain} pt_id=${ioas} flags=PASID`, 'out_hwpt_id')
    t.err(`DEVICE_ATTACH dev_id=${plain} pt_id=${h} flags=PASID pasid=1`, 'EINVAL', /not PASID-capable/)
    assert.match(t.send(`GET_HW_INFO dev_id=${plain}`), / out_max_pasid_log2=0 /)
    assert.match(t.send(`GET_HW_INFO dev_id=${dev}`), / out_max_pasid_log2=20 /)
    assert.throws(() => dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 1 }, DEV.smmu1b), /pasid=1: 0000:01:01.0 sends PASIDs of 0 bits/)
    assert.throws(() => dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 0x100000 }), /pasid=1048576: 0000:00:01.0 sends PASIDs of 20 bits/)
    assert.equal(t.describe(dev).get('pasids'), '-')
  })
})

describe('SMMUv3 PASIDs without 2-level CD tables (IDR0.CD2L = 0): a linear table of at most 2^10 CDs', () => {
  // IDR0 of the default machine without CD2L (bit 19)
  const s = pasidEach((text) => text.replace('IDR0: 0x0c4d76bb', 'IDR0: 0x0c4576bb'))

  it('S1Fmt 0, S1CDMax 10; PASID 1023 attaches with one CFGI_CD; PASID 1024 is ENOMEM (beyond the table), changing nothing', () => {
    const { t, dev, rid, other } = s
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${rid}`)
    assert.match(t.hw(SMMU0, 'cd_table'), /^sid=0x8 ctx=0x[0-9a-f]+ s1cdmax=10 s1fmt=0 s1dss=ssid0$/m)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=1023`)), [...cfgiCd('0x3ff', 2), 'ATC_INV ssv=1 ssid=0x3ff sid=0x8 size=52', SYNC])
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 1023 }), /^data 7061736964203521$/m)
    t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=1024`, 'ENOMEM', /pasid=1024: beyond 0000:00:01.0's CD table \(2\^10 CDs/)
  })
})

describe('a device narrower than its unit (topology pasid: 8 on a VT-d function)', () => {
  it('GET_HW_INFO says 8; PASID 255 attaches, 256 is EINVAL, and its DMA port refuses PASID 256', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'narrow-pasid-'))
    const topo = path.join(dir, 't.yaml')
    fs.writeFileSync(topo, fs.readFileSync(DEFAULT_TOPOLOGY, 'utf8').replace('"0000:02:01.0", vendor: 0x8086, device: 0x0d58 }', '"0000:02:01.0", vendor: 0x8086, device: 0x0d58, pasid: 8 }'))
    const t = new IommuBench(new World(loadTopology(topo)))
    try {
      const dev = t.bind(DEV.vtdB)
      assert.match(t.send(`GET_HW_INFO dev_id=${dev}`), / out_max_pasid_log2=8 /)
      const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
      const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=PASID`, 'out_hwpt_id')
      t.err(`DEVICE_ATTACH dev_id=${dev} pt_id=${h} flags=PASID pasid=256`, 'EINVAL', /pasid=256: 0000:02:01.0 takes PASIDs 1\.\.255/)
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${h} flags=PASID pasid=255`)
      assert.equal(t.describe(dev).get('pasids'), `255:${h}`)
      assert.equal(t.describe(dev).get('pasid_bits'), '8')
      assert.throws(() => dma(t, { op: 'read', iova: 0x1000n, len: 4, pasid: 256 }, DEV.vtdB), /pasid=256: 0000:02:01.0 sends PASIDs of 8 bits/)
    } finally {
      t.close()
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('an SMMUv3 device without ATS (topology ats: false)', () => {
  const s = pasidEach((text) => text.replace('stream_id: 0x8, vendor: 0x15b3, device: 0x101e }', 'stream_id: 0x8, vendor: 0x15b3, device: 0x101e, ats: false }'))

  it('GET_HW_INFO has PCI_ATS_NOT_SUPPORTED; PASIDs on a blocked RID get a CD-table STE with EATS = 0 and no ATC_INV, in and out', () => {
    const { t, dev, other } = s
    assert.match(t.send(`GET_HW_INFO dev_id=${dev}`), / out_capabilities=0x9 /)
    assert.equal(t.describe(dev).get('ats'), 'no')
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${other} flags=PASID pasid=5`)), ['CFGI_CD ssid=0x5 sid=0x8', SYNC, ...cfgiCd('0x5', 2), ...cfgiSte(2)])
    // word 1: S1DSS terminate, CD fetches WB/ISH, S1STALLD (the SMMU can stall, this master does not), EATS = 0
    assert.match(t.hw(SMMU0, 'stream_table'), /^sid=0x8 config=abort ats=0\n {2}ste=0x[0-9a-f]{16},0x00000000080000d4,/m)
    assert.throws(() => dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5, ats: true }), /ats: 0000:00:01\.0 has no ATS capability/)
    assert.match(dma(t, { op: 'read', iova: 0x10_0000n, len: 8, pasid: 5 }), /^data 7061736964203521$/m)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_DETACH dev_id=${dev} flags=PASID pasid=5`)), [...cfgiCd('0x5', 2), ...cfgiSte(2), 'TLBI_NH_ASID asid=1', SYNC])
  })

  it('a nested guest STE asking for ATS (EATS = 1) gets none', () => {
    const { t, dev, ioas } = s
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent}`)
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x10`)
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} data_type=ARM_SMMUV3 data.ste=0xb,0x10000000`, 'out_hwpt_id')
    // S2 -> nested keeps the VMID (the vIOMMU's is the parent's), so no flush; no ATC_INV (ATS never on)
    assert.deepEqual(sent(t, () => t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)), cfgiSte(2))
    assert.match(t.hw(SMMU0, 'stream_table'), /^sid=0x8 config=nested vmid=1 guest_ste=0x000000000000000b,0x0000000000000000 ats=0\n {2}ste=0x[0-9a-f]{16},0x0000000002080000,/m)
  })
})

describe('rid_domain: the driver\'s own domain on a RID', () => {
  it('refuses a word other than identity or blocked (EINVAL), a RID a HWPT holds (EBUSY) and a VT-d device (EOPNOTSUPP), changing nothing', () => {
    const t = new IommuBench()
    try {
      const pci = t.world.machine.device(DEV.smmu0a)!
      assert.throws(() => setRidDomain(t.world, pci, 'passthrough'), { errno: 'EINVAL', message: /rid_domain: "passthrough" is not identity or blocked/ })
      const dev = t.bind(DEV.smmu0a)
      const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
      const h = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas}`, 'out_hwpt_id')
      t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${h}`)
      const before = t.hw(SMMU0, 'stream_table')
      assert.throws(() => setRidDomain(t.world, pci, 'identity'), { errno: 'EBUSY', message: new RegExp(`attached to HWPT ${h}; detach it first`) })
      assert.equal(t.hw(SMMU0, 'stream_table'), before)
      assert.equal(ridDomain(t.world, pci), `hwpt ${h}`)
      t.ok(`DEVICE_DETACH dev_id=${dev}`)
      assert.equal(ridDomain(t.world, pci), 'blocked')
      setRidDomain(t.world, pci, 'identity')
      assert.equal(ridDomain(t.world, pci), 'identity')
      assert.match(t.hw(SMMU0, 'stream_table'), /^sid=0x8 config=bypass ats=0\n {2}ste=0x0000000000000009,0x0000000000000000,/m)
      assert.throws(() => setRidDomain(t.world, t.world.machine.device(DEV.vtdA)!, 'identity'), { errno: 'EOPNOTSUPP' })
    } finally {
      t.close()
    }
  })
})
