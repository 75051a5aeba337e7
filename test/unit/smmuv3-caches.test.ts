/**
 * SMMUv3 caches (caches.ts): what every invalidation command drops, entry
 * kind by entry kind, as SPEC 4.3-4.5 state it; LRU capacity; and the
 * sanitizer's findings, positive and negative (sanitizer.ts, dma.ts).
 */
import { strict as assert } from 'node:assert'
import { DATA_PA, SmmuRig } from '../helpers/smmu-rig'
import { Smmuv3Caches, TlbEntry, cdKey } from '../../src/hw/smmuv3/caches'
import { parseCommand } from '../../src/hw/smmuv3/commands'
import { ContextConfig, StreamConfig } from '../../src/hw/smmuv3/walk'
import { findingJson } from '../../src/hw/smmuv3/sanitizer'

const RW = { read: true, write: true }

function tlb(kind: TlbEntry['kind'], vmid: number, asid: number | undefined, base: bigint, extra: Partial<TlbEntry> = {}): TlbEntry {
  return { kind, vmid, asid, base, size: 0x1000n, level: 3, granule: 12, out: 0x9000n, perms: 63, since: 0, sid: 8, steps: [], ...extra }
}

/** One of each kind of cached entry, by name. */
function filled(): { c: Smmuv3Caches; names: () => string[] } {
  const c = new Smmuv3Caches()
  const entries: Record<string, TlbEntry> = {
    's1.v1.a5.0x1000': tlb('S1', 1, 5, 0x1000n),
    's1.v1.a6.0x1000': tlb('S1', 1, 6, 0x1000n),
    's1.v1.global.0x2000': tlb('S1', 1, undefined, 0x2000n),
    's1.v1.a5.2M@0x200000': tlb('S1', 1, 5, 0x20_0000n, { size: 0x20_0000n, level: 2 }),
    's12.v2.a5.0x1000': tlb('S12', 2, 5, 0x1000n),
    's2.v2.0x1000': tlb('S2', 2, undefined, 0x1000n),
    's2.v3.0x1000': tlb('S2', 3, undefined, 0x1000n),
  }
  for (const e of Object.values(entries)) c.fill(e)
  const stream = {} as StreamConfig
  const context = {} as ContextConfig
  c.ste.set(8, { sid: 8, stream, steps: [], since: 0 })
  c.ste.set(9, { sid: 9, stream, steps: [], since: 0 })
  c.ste.set(0x20, { sid: 0x20, stream, steps: [], since: 0 })
  c.cd.set(cdKey(8, 0), { sid: 8, ssid: 0, context, steps: [], since: 0 })
  c.cd.set(cdKey(8, 1), { sid: 8, ssid: 1, context, steps: [], since: 0 })
  c.cd.set(cdKey(9, 0), { sid: 9, ssid: 0, context, steps: [], since: 0 })
  c.atcFill({ sid: 8, base: 0x1000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  c.atcFill({ sid: 8, ssid: 1, base: 0x1000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  c.atcFill({ sid: 8, ssid: 1, base: 0x8000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  c.atcFill({ sid: 9, base: 0x1000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  // walk caches: level-2 table descriptors (2 MiB spans) and a level-1 one (1 GiB), 4K granule
  const walk = { granule: 12, next: 0x7000_0000, tableBits: 0, steps: [], base: 0n }
  c.fillWalk({ ...walk, kind: 'S1', vmid: 1, asid: 5, level: 2, size: 0x20_0000n })
  c.fillWalk({ ...walk, kind: 'S1', vmid: 1, asid: 5, level: 1, size: 0x4000_0000n })
  c.fillWalk({ ...walk, kind: 'S1', vmid: 1, asid: 6, level: 2, size: 0x20_0000n })
  c.fillWalk({ ...walk, kind: 'S2', vmid: 2, level: 2, size: 0x20_0000n })
  c.fillWalk({ ...walk, kind: 'S2', vmid: 3, level: 2, size: 0x20_0000n })
  const names = (): string[] => [
    ...Object.entries(entries)
      .filter(([, e]) => c.lookup(e.kind === 'S2', e.vmid, e.asid, e.base) === e)
      .map(([n]) => n),
    ...[...c.ste.values()].map((e) => `ste.${e.sid}`),
    ...[...c.cd.values()].map((e) => `cd.${e.sid}.${e.ssid}`),
    ...[...c.atc.values()].map((e) => `atc.${e.sid}.${e.ssid ?? '-'}.0x${e.base.toString(16)}`),
    ...[...c.walk.values()].map((e) => `walk.${e.kind.toLowerCase()}.v${e.vmid}${e.asid === undefined ? '' : `.a${e.asid}`}.L${e.level}`),
  ]
  return { c, names }
}

/** Command -> the entries it must drop (everything else stays). */
const EFFECTS: [string, string[]][] = [
  ['TLBI_NH_ALL vmid=1', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000', 's1.v1.global.0x2000', 's1.v1.a5.2M@0x200000', 'walk.s1.v1.a5.L2', 'walk.s1.v1.a5.L1', 'walk.s1.v1.a6.L2']],
  ['TLBI_NH_ALL vmid=2', ['s12.v2.a5.0x1000']],
  ['TLBI_NH_ASID vmid=1 asid=5', ['s1.v1.a5.0x1000', 's1.v1.a5.2M@0x200000', 'walk.s1.v1.a5.L2', 'walk.s1.v1.a5.L1']],
  ['TLBI_NH_VA vmid=1 asid=5 addr=0x1000 leaf', ['s1.v1.a5.0x1000']],
  ['TLBI_NH_VA vmid=1 asid=6 addr=0x2000 leaf', ['s1.v1.global.0x2000']],
  // Leaf = 0: the walk-cache entries on the address's path too (the 1 GiB one; the 2 MiB one covers 0-0x1fffff)
  ['TLBI_NH_VA vmid=1 asid=5 addr=0x3ff000', ['s1.v1.a5.2M@0x200000', 'walk.s1.v1.a5.L1']],
  ['TLBI_NH_VA vmid=1 asid=5 addr=0x1000', ['s1.v1.a5.0x1000', 'walk.s1.v1.a5.L2', 'walk.s1.v1.a5.L1']],
  ['TLBI_NH_VA vmid=2 asid=5 addr=0x1000', ['s12.v2.a5.0x1000']],
  ['TLBI_NH_VAA vmid=1 addr=0x1000 leaf', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000']],
  // range form: TG=4K, NUM=1 SCALE=0 -> 2 pages from 0x1000
  ['TLBI_NH_VAA vmid=1 addr=0x1000 tg=1 num=1', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000', 's1.v1.global.0x2000', 'walk.s1.v1.a5.L2', 'walk.s1.v1.a5.L1', 'walk.s1.v1.a6.L2']],
  ['TLBI_NH_VAA vmid=1 addr=0x1000 tg=1 num=1 leaf', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000', 's1.v1.global.0x2000']],
  // a range of another granule (64K) reaches none of the 4K-granule entries
  ['TLBI_NH_VAA vmid=1 addr=0x0 tg=3 num=1', []],
  // TTL=3 only reaches level-3 leaves: the 2 MiB block stays
  ['TLBI_NH_VAA vmid=1 addr=0x0 tg=1 num=31 scale=10 ttl=3', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000', 's1.v1.global.0x2000', 'walk.s1.v1.a5.L2', 'walk.s1.v1.a5.L1', 'walk.s1.v1.a6.L2']],
  // TTL=2: level-2 leaves, and the walk-cache entries above level 2 (level 1); level-2 table descriptors stay
  ['TLBI_NH_VAA vmid=1 addr=0x0 tg=1 num=31 scale=10 ttl=2', ['s1.v1.a5.2M@0x200000', 'walk.s1.v1.a5.L1']],
  ['TLBI_NH_VAA vmid=1 addr=0x0 tg=1 num=31 scale=10 ttl=3 leaf', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000', 's1.v1.global.0x2000']],
  ['TLBI_S2_IPA vmid=2 addr=0x1000 leaf', ['s2.v2.0x1000']],
  ['TLBI_S2_IPA vmid=2 addr=0x1000', ['s2.v2.0x1000', 'walk.s2.v2.L2']],
  ['TLBI_S12_VMALL vmid=2', ['s12.v2.a5.0x1000', 's2.v2.0x1000', 'walk.s2.v2.L2']],
  ['TLBI_NSNH_ALL', ['s1.v1.a5.0x1000', 's1.v1.a6.0x1000', 's1.v1.global.0x2000', 's1.v1.a5.2M@0x200000', 's12.v2.a5.0x1000', 's2.v2.0x1000', 's2.v3.0x1000', 'walk.s1.v1.a5.L2', 'walk.s1.v1.a5.L1', 'walk.s1.v1.a6.L2', 'walk.s2.v2.L2', 'walk.s2.v3.L2']],
  ['TLBI_EL2_ALL', []],
  ['TLBI_EL2_VAA addr=0x1000', []],
  ['CFGI_STE sid=8', ['ste.8', 'cd.8.0', 'cd.8.1']],
  ['CFGI_ALL sid=8 range=1', ['ste.8', 'ste.9', 'cd.8.0', 'cd.8.1', 'cd.9.0']],
  ['CFGI_ALL range=31', ['ste.8', 'ste.9', 'ste.32', 'cd.8.0', 'cd.8.1', 'cd.9.0']],
  ['CFGI_CD sid=8 ssid=1 leaf', ['cd.8.1']],
  ['CFGI_CD sid=8', ['cd.8.0']],
  ['CFGI_CD_ALL sid=8', ['cd.8.0', 'cd.8.1']],
  ['ATC_INV sid=8 addr=0x1000', ['atc.8.-.0x1000', 'atc.8.1.0x1000']],
  ['ATC_INV sid=8 ssv ssid=1 addr=0x1000', ['atc.8.1.0x1000']],
  ['ATC_INV sid=8 ssv ssid=1 size=52', ['atc.8.1.0x1000', 'atc.8.1.0x8000']],
  ['ATC_INV sid=8 ssv ssid=1 addr=0x0 size=3', ['atc.8.1.0x1000']],
  ['SYNC', []],
  ['PREFETCH_CFG sid=8', []],
]

describe('SMMUv3 invalidation effects: every command against every cached entry kind', () => {
  for (const [text, dropped] of EFFECTS) {
    it(`${text} drops ${dropped.length ? dropped.join(', ') : 'nothing'}`, () => {
      const { c, names } = filled()
      const before = names()
      const n = c.invalidate(parseCommand(text))
      const after = names()
      assert.deepEqual(before.filter((x) => !after.includes(x)).sort(), [...dropped].sort())
      assert.equal(n, dropped.length)
    })
  }

  it('the TLB forgets its least recently used entry past its capacity', () => {
    const c = new Smmuv3Caches({ tlb: 2, ste: 1, cd: 1, atc: 1, walk: 1 })
    c.fill(tlb('S1', 1, 1, 0x1000n))
    c.fill(tlb('S1', 1, 1, 0x2000n))
    assert.ok(c.lookup(false, 1, 1, 0x1000n))
    c.fill(tlb('S1', 1, 1, 0x3000n))
    assert.equal(c.lookup(false, 1, 1, 0x2000n), undefined)
    assert.ok(c.lookup(false, 1, 1, 0x1000n))
    assert.ok(c.lookup(false, 1, 1, 0x3000n))
  })
})

describe('SMMUv3 TLB through DMA', () => {
  let rig: SmmuRig
  beforeEach(() => (rig = new SmmuRig()))
  afterEach(() => rig.close())

  /** StreamID 8: an S1 STE, a CD with ASID 5, and page 0x1000 mapped read-write to DATA_PA. */
  function streamWithS1Page(): void {
    const pt = rig.table(1)
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root })
    rig.ste(8, { config: 's1', ctxPtr: cd })
  }

  it('a second access hits the TLB (no walk steps), tagged VMID/ASID as the STE and CD say', () => {
    streamWithS1Page()
    assert.equal(rig.read(8, 0x1000n).pieces[0].source, 'walk')
    const again = rig.read(8, 0x1008n)
    assert.equal(again.pieces[0].source, 'tlb')
    assert.equal(again.pieces[0].out, DATA_PA + 8n)
    assert.match(rig.caches.dumpTlb(), /^S1 {2}vmid=0 asid=5 addr=0x1000 size=0x1000 level=3 granule=4096 out=0x8000000000 priv:rwx user:rwx since=\d+$/m)
  })

  it('tlb.json, config_cache.json and atc.json hold the same entries as plain data', () => {
    streamWithS1Page()
    rig.read(8, 0x1000n)
    const tlb = rig.caches.tlbJson() as { entries: Record<string, unknown>[]; misses: number }
    assert.equal(tlb.entries.length, 1)
    const { since, ...entry } = tlb.entries[0]
    assert.equal(typeof since, 'number')
    assert.deepEqual(entry, { stage: 'S1', vmid: 0, asid: 5, addr: '0x1000', size: '0x1000', level: 3, granule: 4096, out: '0x8000000000', perms: 'priv:rwx user:rwx' })
    const config = rig.caches.configJson() as { ste: { entries: { sid: string; config: string }[] }; cd: { entries: { sid: string; ssid: string; asid: number }[] } }
    assert.deepEqual(config.ste.entries.map((e) => [e.sid, e.config]), [['0x8', 's1']])
    assert.deepEqual(config.cd.entries.map((e) => [e.sid, e.ssid, e.asid]), [['0x8', '0x0', 5]])
    assert.deepEqual((rig.caches.atcJson() as { entries: unknown[] }).entries, [])
    // what the debug tree serves: JSON.stringify must not meet a bigint
    assert.doesNotThrow(() => JSON.stringify([tlb, config, rig.caches.atcJson()]))
  })
})

describe('SMMUv3 sanitizer', () => {
  let rig: SmmuRig
  beforeEach(() => (rig = new SmmuRig()))
  afterEach(() => rig.close())

  function s1(eats = 0) {
    const pt = rig.table(1)
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root })
    rig.ste(8, { config: 's1', ctxPtr: cd, eats })
    rig.fill(DATA_PA, Buffer.from('old!'))
    rig.fill(DATA_PA + 0x3000n, Buffer.from('new!'))
    return { pt, cd }
  }

  it('a PTE changed without a TLBI: report mode serves the stale translation and records the finding', () => {
    const { pt } = s1()
    assert.equal(rig.read(8, 0x1000n, 4).data!.toString(), 'old!')
    const leaf = pt.find(0x1000n)!
    pt.map(0x1000n, DATA_PA + 0x3000n, 0x1000n, RW)
    const r = rig.read(8, 0x1000n, 4)
    assert.equal(r.data!.toString(), 'old!', 'the hardware uses its TLB')
    assert.equal(r.findings.length, 1)
    const f = r.findings[0]
    assert.equal(f.cache, 'TLB')
    assert.equal(f.cached.out, DATA_PA)
    assert.equal(f.now.out, DATA_PA + 0x3000n)
    assert.deepEqual(f.changed, { what: 's1', level: 3, addr: leaf.slot, old: leaf.desc, now: pt.find(0x1000n)!.desc })
    assert.equal(f.command, 'TLBI_NH_VA vmid=0 asid=5 addr=0x1000 leaf')
    assert.equal(JSON.parse(findingJson(f)).command, f.command)
    // the named command is enough
    rig.caches.invalidate(parseCommand(f.command))
    const fixed = rig.read(8, 0x1000n, 4)
    assert.equal(fixed.data!.toString(), 'new!')
    assert.equal(fixed.findings.length, 0)
    assert.equal(rig.dma.sanitizer.count, 1)
  })

  it('strict mode stops the DMA with the finding; off mode neither checks nor records', () => {
    const { pt } = s1()
    rig.read(8, 0x1000n, 4)
    pt.unmap(0x1000n, 0x1000n)
    rig.dma.sanitizer.mode = 'strict'
    const r = rig.read(8, 0x1000n, 4)
    assert.equal(r.stopped?.now.fault?.name, 'F_TRANSLATION')
    assert.deepEqual(r.data, Buffer.alloc(0))
    rig.dma.sanitizer.mode = 'off'
    const n = rig.dma.sanitizer.count
    assert.equal(rig.read(8, 0x1000n, 4).data!.toString(), 'old!')
    assert.equal(rig.dma.sanitizer.count, n)
  })

  it('a CD changed without CFGI_CD is a CD finding; CFGI_CD alone then leaves the old ASID\'s TLB entry (a TLB finding)', () => {
    const { cd } = s1()
    rig.read(8, 0x1000n, 4)
    const other = rig.table(1)
    other.map(0x1000n, DATA_PA + 0x3000n, 0x1000n, RW)
    rig.cd(cd, { asid: 5, ttb0: other.root })
    const a = rig.read(8, 0x1000n, 4)
    assert.deepEqual(a.findings.map((f) => [f.cache, f.command]), [
      ['CD', 'CFGI_CD sid=0x8 ssid=0x0 leaf'],
      ['TLB', 'TLBI_NH_VA vmid=0 asid=5 addr=0x1000 leaf'],
    ])
    rig.caches.invalidate(parseCommand('CFGI_CD sid=0x8 ssid=0 leaf'))
    assert.deepEqual(rig.read(8, 0x1000n, 4).findings.map((f) => f.cache), ['TLB'])
    rig.caches.invalidate(parseCommand('TLBI_NH_ASID vmid=0 asid=5'))
    const c = rig.read(8, 0x1000n, 4)
    assert.deepEqual(c.findings, [])
    assert.equal(c.data!.toString(), 'new!')
  })

  it('an STE changed without CFGI_STE is an STE finding', () => {
    s1()
    rig.read(8, 0x1000n, 4)
    rig.ste(8, { config: 'bypass' })
    const r = rig.read(8, 0x1000n, 4)
    assert.equal(r.findings[0].cache, 'STE')
    assert.equal(r.findings[0].command, 'CFGI_STE sid=0x8')
  })

  it('a TLBI without the ATC_INV leaves the ATC stale: an ATC finding naming ATC_INV', () => {
    const { pt } = s1(1)
    assert.equal(rig.read(8, 0x1000n, 4, { ats: true }).data!.toString(), 'old!')
    pt.map(0x1000n, DATA_PA + 0x3000n, 0x1000n, RW)
    rig.caches.invalidate(parseCommand('TLBI_NH_VA vmid=0 asid=5 addr=0x1000 leaf'))
    const r = rig.read(8, 0x1000n, 4, { ats: true })
    assert.equal(r.pieces[0].source, 'atc')
    assert.equal(r.data!.toString(), 'old!')
    assert.deepEqual(r.findings.map((f) => [f.cache, f.command]), [['ATC', 'ATC_INV sid=0x8 addr=0x1000 size=0']])
    rig.caches.invalidate(parseCommand('ATC_INV sid=0x8 addr=0x1000 size=0'))
    const ok = rig.read(8, 0x1000n, 4, { ats: true })
    assert.equal(ok.data!.toString(), 'new!')
    assert.deepEqual(ok.findings, [])
  })

  it('an ATS request on a stream with EATS = 0 is F_BAD_ATS_TREQ', () => {
    s1(0)
    assert.equal(rig.read(8, 0x1000n, 4, { ats: true }).event?.name, 'F_BAD_ATS_TREQ')
  })

  it('negative: the right sequence (change, TLBI, CFGI, ATC_INV) gives zero findings over many DMAs', () => {
    const { pt, cd } = s1(1)
    for (let i = 0; i < 4; i++) {
      rig.read(8, 0x1000n, 4)
      rig.read(8, 0x1000n, 4, { ats: true })
      pt.map(0x1000n, DATA_PA + (i % 2 ? 0n : 0x3000n), 0x1000n, RW)
      for (const c of ['TLBI_NH_VA vmid=0 asid=5 addr=0x1000 leaf', 'SYNC', 'ATC_INV sid=8 addr=0x1000', 'SYNC']) rig.caches.invalidate(parseCommand(c))
    }
    rig.cd(cd, { asid: 6, ttb0: pt.root })
    rig.caches.invalidate(parseCommand('CFGI_CD sid=8 leaf'))
    rig.caches.invalidate(parseCommand('TLBI_NH_ASID vmid=0 asid=5'))
    rig.read(8, 0x1000n, 4)
    rig.read(8, 0x1000n, 4)
    assert.equal(rig.dma.sanitizer.count, 0)
  })

  it('negative: hardware AF and dirty updates are not findings', () => {
    const pt = rig.table(1, 12, 48, { dbm: true })
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root, ha: true, hd: true })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    const leaf = pt.find(0x1000n)!
    pt.writeDesc(leaf.slot, (leaf.desc | (1n << 7n)) & ~(1n << 10n))
    rig.read(8, 0x1000n, 4)
    rig.write(8, 0x1000n, Buffer.from('w'))
    rig.write(8, 0x1000n, Buffer.from('w'))
    rig.read(8, 0x1000n, 4)
    assert.equal(rig.dma.sanitizer.count, 0)
  })
})

describe('SMMUv3 walk caches through DMA', () => {
  let rig: SmmuRig
  beforeEach(() => (rig = new SmmuRig()))
  afterEach(() => rig.close())

  /** StreamID 8: S1, ASID 5, pages 0x1000 and 0x2000 mapped (4K granule, levels 0-3). */
  function s1Pages(): ReturnType<SmmuRig['table']> {
    const pt = rig.table(1)
    pt.map(0x1000n, DATA_PA, 0x2000n, RW)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    rig.fill(DATA_PA + 0x1000n, Buffer.from('two!'))
    return pt
  }
  const levels = (r: ReturnType<SmmuRig['read']>): number[] => r.pieces[0]?.steps.filter((s) => s.what === 's1').map((s) => s.level) ?? []

  it('the first walk leaves the level 0/1/2 table descriptors (one miss); a TLB miss in the same 2M resumes at level 3 (one hit)', () => {
    s1Pages()
    assert.deepEqual(levels(rig.read(8, 0x1000n)), [0, 1, 2, 3])
    const r = rig.read(8, 0x2000n, 4)
    assert.deepEqual(levels(r), [3])
    assert.equal(r.data!.toString(), 'two!')
    const dump = rig.caches.dumpWalk().replace(/next=0x[0-9a-f]+/g, 'next=T').replace(/since=\d+/g, 'since=N')
    assert.equal(
      dump,
      'walk cache: 3/256 entries, 1 hits, 1 misses\n' +
        'S1 vmid=0 asid=5 addr=0x0 size=0x8000000000 level=0 granule=4096 next=T since=N\n' +
        'S1 vmid=0 asid=5 addr=0x0 size=0x40000000 level=1 granule=4096 next=T since=N\n' +
        'S1 vmid=0 asid=5 addr=0x0 size=0x200000 level=2 granule=4096 next=T since=N\n',
    )
    assert.deepEqual((rig.caches.walkJson() as { hits: number; entries: { level: number }[] }).entries.map((e) => e.level), [0, 1, 2])
    assert.equal(rig.dma.sanitizer.count, 0)
  })

  it('a table unhooked and invalidated with Leaf = 1: the walk resumes from the stale entry (a WALK finding naming the Leaf = 0 TLBI); the Leaf = 0 TLBI fixes it', () => {
    const pt = s1Pages()
    rig.read(8, 0x1000n)
    const slot = pt.slot(0x1000n, 2, false)
    const old = pt.readDesc(slot)
    pt.writeDesc(slot, 0n)
    assert.equal(rig.caches.invalidate(parseCommand('TLBI_NH_VA vmid=0 asid=5 addr=0x1000 leaf')), 1)
    const r = rig.read(8, 0x1000n, 4)
    assert.equal(r.event, undefined, 'the hardware walks from its walk cache')
    assert.deepEqual(levels(r), [3])
    assert.equal(r.findings.length, 1)
    const f = r.findings[0]
    assert.equal(f.cache, 'WALK')
    assert.equal(f.now.fault?.name, 'F_TRANSLATION')
    assert.deepEqual(f.changed, { what: 's1', level: 2, addr: slot, old, now: 0n })
    assert.equal(f.command, 'TLBI_NH_VA vmid=0 asid=5 addr=0x1000')
    assert.equal(rig.caches.invalidate(parseCommand(f.command)), 4)
    const fixed = rig.read(8, 0x1000n, 4)
    assert.equal(fixed.event?.name, 'F_TRANSLATION')
    assert.equal(fixed.findings.length, 0)
    assert.equal(rig.dma.sanitizer.count, 1)
  })

  it('strict mode stops a DMA that resumed from a stale walk-cache entry', () => {
    const pt = s1Pages()
    rig.read(8, 0x1000n)
    pt.writeDesc(pt.slot(0x1000n, 2, false), 0n)
    rig.caches.invalidate(parseCommand('TLBI_NH_VA vmid=0 asid=5 addr=0x1000 leaf'))
    rig.dma.sanitizer.mode = 'strict'
    const r = rig.read(8, 0x1000n, 4)
    assert.equal(r.stopped?.cache, 'WALK')
    assert.deepEqual(r.data, Buffer.alloc(0))
  })
})
