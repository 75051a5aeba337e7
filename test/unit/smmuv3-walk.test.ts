/**
 * SMMUv3 translation over real tables in memory (walk.ts): stream table,
 * STE configs, CD tables, VMSAv8-64 walks at every granule, nesting, HTTU,
 * and each fault class with its event record.
 */
import { strict as assert } from 'node:assert'
import { DATA_PA, SmmuRig } from '../helpers/smmu-rig'
import { D, Geometry, PageTable } from '../../src/hw/smmuv3/pgtable'
import { s1Cd, wordBytes } from '../../src/hw/smmuv3/build'
import { encodeEvent } from '../../src/hw/smmuv3/events'
import { PERM } from '../../src/hw/smmuv3/walk'

const RW = { read: true, write: true }
const RO = { read: true, write: false }

describe('SMMUv3 walk: stage 1', () => {
  let rig: SmmuRig
  beforeEach(() => (rig = new SmmuRig()))
  afterEach(() => rig.close())

  /** SID 8: an S1 STE with one CD (ASID 5) over a 48-bit 4K table. */
  function s1(opts: { granule?: 12 | 14 | 16; ias?: number; dbm?: boolean; ha?: boolean; hd?: boolean } = {}) {
    const pt = rig.table(1, opts.granule ?? 12, opts.ias ?? 48, { dbm: opts.dbm })
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root, granule: opts.granule, ias: opts.ias, ha: opts.ha, hd: opts.hd })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    return { pt, cd }
  }

  for (const [granule, levels] of [
    [12, [0, 1, 2, 3]],
    [14, [0, 1, 2, 3]],
    [16, [1, 2, 3]],
  ] as const) {
    it(`reads through a ${1 << granule}-byte granule table: ${levels.length} levels, the data from the file`, () => {
      const { pt } = s1({ granule })
      const page = 1n << BigInt(granule)
      pt.map(0x4000_0000n, DATA_PA + page, page, RW)
      rig.fill(DATA_PA + page + 0x10n, Buffer.from('hello dma'))
      const r = rig.read(8, 0x4000_0010n, 9)
      assert.equal(r.event, undefined)
      assert.equal(r.data!.toString(), 'hello dma')
      const walk = r.pieces[0].steps.filter((s) => s.what === 's1')
      assert.deepEqual(walk.map((s) => s.level), levels)
      assert.equal(walk[0].table, pt.root)
      assert.equal(r.pieces[0].out, DATA_PA + page + 0x10n)
      assert.deepEqual(r.pieces[0].steps.slice(0, 2).map((s) => s.what), ['ste', 'cd'])
    })
  }

  it('a 2 MiB block ends the walk at level 2; the leaf covers the whole block', () => {
    const { pt } = s1()
    pt.map(0x20_0000n, DATA_PA + 0x20_0000n, 0x20_0000n, RW)
    const r = rig.read(8, 0x3f_fff8n, 8)
    assert.deepEqual(r.pieces[0].steps.filter((s) => s.what === 's1').map((s) => s.level), [0, 1, 2])
    assert.equal(r.pieces[0].out, DATA_PA + 0x3f_fff8n)
  })

  it('writes land in the file, and a request across a page boundary is cut into two translations', () => {
    const { pt } = s1()
    pt.map(0x1000n, DATA_PA + 0x5000n, 0x1000n, RW)
    pt.map(0x2000n, DATA_PA + 0x9000n, 0x1000n, RW)
    const r = rig.write(8, 0xffcn, Buffer.from('z'))
    assert.equal(r.event?.name, 'F_TRANSLATION')
    const w = rig.write(8, 0x1ffcn, Buffer.from('abcdefgh'))
    assert.equal(w.event, undefined)
    assert.deepEqual(w.pieces.map((p) => [p.out, p.len]), [[DATA_PA + 0x5ffcn, 4], [DATA_PA + 0x9000n, 4]])
    assert.equal(rig.bytes(DATA_PA + 0x5ffcn, 4).toString(), 'abcd')
    assert.equal(rig.bytes(DATA_PA + 0x9000n, 4).toString(), 'efgh')
  })

  it('an invalid descriptor is F_TRANSLATION (S2=0, CLASS=IN) with the input address in the record', () => {
    s1()
    const r = rig.read(8, 0x7000n)
    assert.equal(r.event?.name, 'F_TRANSLATION')
    assert.equal(r.event?.s2, false)
    assert.equal(r.event?.cls, 'IN')
    const words = encodeEvent(r.event!)
    assert.equal(words[0], 0x10n | (8n << 32n))
    assert.equal(words[2], 0x7000n)
    assert.equal((words[1] >> 35n) & 1n, 1n, 'RnW = read')
  })

  it('an address beyond T0SZ is F_TRANSLATION without reading any table', () => {
    s1({ ias: 39 })
    const r = rig.read(8, 1n << 40n)
    assert.equal(r.event?.name, 'F_TRANSLATION')
    assert.equal(r.pieces.length, 0)
  })

  it('a write to a read-only page is F_PERMISSION; a read of it works', () => {
    const { pt } = s1()
    pt.map(0x1000n, DATA_PA, 0x1000n, RO)
    assert.equal(rig.read(8, 0x1000n).event, undefined)
    const w = rig.write(8, 0x1000n, Buffer.from('x'))
    assert.equal(w.event?.name, 'F_PERMISSION')
    assert.equal(w.event?.rnw, false)
  })

  it('a privileged-only page refuses unprivileged reads; XN refuses instruction fetches', () => {
    const { pt } = s1()
    pt.map(0x1000n, DATA_PA, 0x1000n, { read: true, write: true, priv: true, noexec: true })
    assert.equal(rig.read(8, 0x1000n).event?.name, 'F_PERMISSION')
    assert.equal(rig.read(8, 0x1000n, 8, { priv: true }).event, undefined)
    assert.equal(rig.read(8, 0x1000n, 8, { priv: true, exec: true }).event?.name, 'F_PERMISSION')
  })

  it('APTable read-only restricts every leaf below', () => {
    const { pt } = s1()
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const l0 = pt.root
    pt.writeDesc(l0, pt.readDesc(l0) | D.AP_TABLE_RO)
    assert.equal(rig.write(8, 0x1000n, Buffer.from('x')).event?.name, 'F_PERMISSION')
  })

  it('AF = 0 without HA is F_ACCESS; with HA the walk sets AF in memory', () => {
    const { pt } = s1()
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const leaf = pt.find(0x1000n)!
    pt.writeDesc(leaf.slot, leaf.desc & ~D.AF)
    assert.equal(rig.read(8, 0x1000n).event?.name, 'F_ACCESS')
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root, ha: true })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    rig.caches.invalidate([0x03n | (8n << 32n), 0n])
    const r = rig.read(8, 0x1000n)
    assert.equal(r.event, undefined)
    assert.equal(pt.readDesc(leaf.slot) & D.AF, D.AF)
    assert.equal(r.pieces[0].steps.at(-1)!.updated, D.AF)
  })

  it('a writable-clean page (DBM, AP[2]=1) becomes dirty on a write with HD; without HD it is F_PERMISSION', () => {
    const { pt } = s1({ dbm: true, ha: true, hd: true })
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const leaf = pt.find(0x1000n)!
    assert.equal(leaf.desc & (D.AP2 | D.DBM), D.DBM, 'Linux maps writable pages writable-dirty')
    pt.writeDesc(leaf.slot, leaf.desc | D.AP2)
    assert.equal(rig.write(8, 0x1000n, Buffer.from('d')).event, undefined)
    assert.equal(pt.readDesc(leaf.slot) & D.AP2, 0n, 'AP[2] cleared: dirty')
    // the same without HD
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 6, ttb0: pt.root, ha: true })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    rig.caches.invalidate([0x03n | (8n << 32n), 0n])
    pt.writeDesc(leaf.slot, pt.readDesc(leaf.slot) | D.AP2)
    assert.equal(rig.write(8, 0x1000n, Buffer.from('d')).event?.name, 'F_PERMISSION')
  })

  it('an output address beyond the IPS is F_ADDR_SIZE', () => {
    const pt = rig.table(1)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 1, ttb0: pt.root, ipsBits: 40 })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    pt.map(0x1000n, 1n << 41n, 0x1000n, RW)
    assert.equal(rig.read(8, 0x1000n).event?.name, 'F_ADDR_SIZE')
  })

  it('a table pointer to memory that is not there is F_WALK_EABT with the fetch address', () => {
    const { pt } = s1()
    pt.writeDesc(pt.root, 0x7700_0000n | D.TABLE | D.VALID)
    const r = rig.read(8, 0x1000n)
    assert.equal(r.event?.name, 'F_WALK_EABT')
    assert.equal(r.event?.fetch, 0x7700_0000n)
    assert.equal(r.event?.cls, 'TT')
  })

  it('data where no memory is behind the output is an external abort, not an event', () => {
    const { pt } = s1()
    pt.map(0x1000n, 0x6000_0000n, 0x1000n, RW)
    const r = rig.read(8, 0x1000n)
    assert.equal(r.event, undefined)
    assert.match(r.abort!, /no memory at physical address 0x60000000/)
  })

  it('TTB1 translates the top of the address space when EPD1 = 0; with EPD1 = 1 it is F_TRANSLATION', () => {
    const { pt, cd } = s1()
    const top = rig.table(1)
    top.map(0xffff_ffff_ffff_0000n & ((1n << 48n) - 1n), DATA_PA, 0x1000n, RW)
    assert.equal(rig.read(8, 0xffff_ffff_ffff_0000n).event?.name, 'F_TRANSLATION')
    const words = (rig.mem.read(cd, 64) as Buffer)
    let w0 = words.readBigUInt64LE(0)
    w0 &= ~(1n << 30n) // EPD1 = 0
    w0 |= 16n << 16n // T1SZ = 16
    w0 |= 2n << 22n // TG1 = 4K
    rig.put(cd, [w0])
    rig.put(cd + 16n, [top.root])
    rig.caches.invalidate([0x05n | (8n << 32n), 0n])
    const r = rig.read(8, 0xffff_ffff_ffff_0008n)
    assert.equal(r.event, undefined)
    assert.equal(r.pieces[0].out, DATA_PA + 8n)
    void pt
  })
})

describe('SMMUv3 walk: configuration', () => {
  let rig: SmmuRig
  afterEach(() => rig.close())

  it('STE.V = 0 is C_BAD_STE; Config = abort terminates without an event', () => {
    rig = new SmmuRig()
    const r = rig.read(9, 0x1000n)
    assert.equal(r.event?.name, 'C_BAD_STE')
    assert.equal(rig.dma.events.at(-1)?.name, 'C_BAD_STE')
    rig.ste(9, { config: 'abort' })
    const n = rig.dma.events.length
    assert.equal(rig.read(9, 0x1000n).event?.recorded, false)
    assert.equal(rig.dma.events.length, n)
  })

  it('a walk decodes the STE and CD it reads now: rewritten in place (no CFGI, no caches), the next walk takes the new words', () => {
    rig = new SmmuRig()
    const pt = rig.table(1)
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root })
    rig.ste(8, { config: 's1', ctxPtr: cd })
    const txn = { sid: 8, addr: 0x1000n, write: false }
    const first = rig.dma.walker.translate(txn, rig.strtab)
    assert.ok(first.ok && first.asid === 5)
    rig.cd(cd, { asid: 6, ttb0: pt.root })
    const second = rig.dma.walker.translate(txn, rig.strtab)
    assert.ok(second.ok && second.asid === 6)
    rig.ste(8, { config: 'bypass' })
    const third = rig.dma.walker.translate({ ...txn, addr: 0x5000n }, rig.strtab)
    assert.ok(third.ok && third.kind === 'bypass' && third.out === 0x5000n)
    rig.ste(8, { config: 's1', ctxPtr: cd })
    const fourth = rig.dma.walker.translate(txn, rig.strtab)
    assert.ok(fourth.ok && fourth.kind === 'S1' && fourth.out === DATA_PA && fourth.asid === 6)
  })

  it('a StreamID beyond the linear table is C_BAD_STREAMID', () => {
    rig = new SmmuRig({ strtab: { log2size: 4 } })
    assert.equal(rig.read(0x10, 0n).event?.name, 'C_BAD_STREAMID')
  })

  it('bypass passes the address through', () => {
    rig = new SmmuRig()
    rig.ste(3, { config: 'bypass' })
    rig.fill(DATA_PA + 0x40n, Buffer.from('raw'))
    assert.equal(rig.read(3, DATA_PA + 0x40n, 3).data!.toString(), 'raw')
  })

  it('a 2-level stream table: the L1STD, then the STE; an empty L1STD is C_BAD_STREAMID', () => {
    rig = new SmmuRig({ strtab: { log2size: 16, split: 8 } })
    rig.ste(0x1234, { config: 'bypass' })
    const r = rig.read(0x1234, DATA_PA)
    assert.equal(r.event, undefined)
    assert.deepEqual(r.pieces[0].steps.map((s) => s.what), ['l1std', 'ste'])
    assert.equal(rig.read(0x2234, DATA_PA).event?.name, 'C_BAD_STREAMID')
  })

  it('S2 config: an STE that needs an unimplemented stage is C_BAD_STE', () => {
    rig = new SmmuRig({ features: { s2: false } })
    const pt = rig.table(2)
    rig.ste(1, { config: 's2', s2: { vmid: 1, ttb: pt.root, geometry: pt.opts.geometry } })
    const r = rig.read(1, 0n)
    assert.equal(r.event?.name, 'C_BAD_STE')
    assert.match(r.event!.reason, /S2P = 0/)
  })

  it('CD.V = 0 is C_BAD_CD; an SSID with S1CDMax = 0 is C_BAD_SUBSTREAMID; no SSID with S1DSS = 0 is F_STREAM_DISABLED', () => {
    rig = new SmmuRig()
    const cd = rig.cdTable(0)
    rig.ste(8, { config: 's1', ctxPtr: cd })
    assert.equal(rig.read(8, 0n).event?.name, 'C_BAD_CD')
    assert.equal(rig.read(8, 0n, 8, { ssid: 1 }).event?.name, 'C_BAD_SUBSTREAMID')
    const table = rig.cdTable(4)
    rig.ste(9, { config: 's1', ctxPtr: table, cdMax: 4, s1dss: 0 })
    assert.equal(rig.read(9, 0n).event?.name, 'F_STREAM_DISABLED')
    assert.equal(rig.read(9, 0n, 8, { ssid: 16 }).event?.name, 'C_BAD_SUBSTREAMID')
  })

  it('substreams: a linear CD table picks CD[ssid]; S1DSS = bypass lets non-PASID traffic through', () => {
    rig = new SmmuRig()
    const table = rig.cdTable(4)
    const a = rig.table(1)
    const b = rig.table(1)
    a.map(0x1000n, DATA_PA + 0x1000n, 0x1000n, RW)
    b.map(0x1000n, DATA_PA + 0x2000n, 0x1000n, RW)
    rig.cd(table + 64n * 1n, { asid: 1, ttb0: a.root })
    rig.cd(table + 64n * 2n, { asid: 2, ttb0: b.root })
    rig.ste(8, { config: 's1', ctxPtr: table, cdMax: 4, s1dss: 1 })
    assert.equal(rig.read(8, 0x1000n, 8, { ssid: 1 }).pieces[0].out, DATA_PA + 0x1000n)
    assert.equal(rig.read(8, 0x1000n, 8, { ssid: 2 }).pieces[0].out, DATA_PA + 0x2000n)
    assert.equal(rig.read(8, DATA_PA).pieces[0].out, DATA_PA)
  })

  it('a 2-level CD table (64 KiB leaves): L1CD then CD; an invalid L1CD is C_BAD_SUBSTREAMID', () => {
    rig = new SmmuRig()
    const l1 = rig.mem.alloc(8 * 16)
    const leaf = rig.mem.alloc(64 * 1024, 64n * 1024n)
    const pt = rig.table(1)
    pt.map(0x1000n, DATA_PA, 0x1000n, RW)
    rig.put(l1 + 8n, [leaf | 1n])
    rig.cd(leaf + 64n * 5n, { asid: 7, ttb0: pt.root })
    rig.ste(8, { config: 's1', ctxPtr: l1, cdMax: 14, cdFmt: 2, s1dss: 1 })
    const r = rig.read(8, 0x1000n, 8, { ssid: 1024 + 5 })
    assert.equal(r.event, undefined)
    assert.deepEqual(r.pieces[0].steps.slice(0, 3).map((s) => s.what), ['ste', 'l1cd', 'cd'])
    assert.equal(rig.read(8, 0x1000n, 8, { ssid: 2048 }).event?.name, 'C_BAD_SUBSTREAMID')
  })
})

describe('SMMUv3 walk: stage 2 and nesting', () => {
  let rig: SmmuRig
  beforeEach(() => (rig = new SmmuRig()))
  afterEach(() => rig.close())

  /** Guest RAM: IPA 0x4000_0000.. maps to DATA_PA.. through a 4K stage-2 table. */
  function nested(granule: 12 | 14 | 16 = 12) {
    const s2 = rig.table(2, granule, 48)
    s2.map(0x4000_0000n, DATA_PA, 0x40_0000n, RW)
    // the guest's tables live in guest RAM: an allocator over IPAs, writing through stage 2's view
    let next = 0x4010_0000n
    const guestMem = {
      alloc: (bytes: bigint, align: bigint) => {
        const at = ((next + align - 1n) / align) * align
        next = at + bytes
        return at
      },
      read: (a: bigint, n: number) => rig.mem.read(a - 0x4000_0000n + DATA_PA, n),
      write: (a: bigint, d: Buffer) => rig.mem.write(a - 0x4000_0000n + DATA_PA, d),
      read64: (a: bigint) => rig.mem.read64(a - 0x4000_0000n + DATA_PA),
      write64: (a: bigint, v: bigint) => rig.mem.write64(a - 0x4000_0000n + DATA_PA, v),
    }
    return { s2, guestMem }
  }

  it('S2-only: an IPA walk; faults are S2=1 CLASS=IN with the IPA', () => {
    const { s2 } = nested()
    rig.ste(4, { config: 's2', s2: { vmid: 3, ttb: s2.root, geometry: s2.opts.geometry } })
    rig.fill(DATA_PA + 0x10n, Buffer.from('ipa'))
    assert.equal(rig.read(4, 0x4000_0010n, 3).data!.toString(), 'ipa')
    const f = rig.read(4, 0x9000_0000n)
    assert.equal(f.event?.name, 'F_TRANSLATION')
    assert.equal(f.event?.s2, true)
    assert.equal(f.event?.ipa, 0x9000_0000n)
  })

  it('S2AP: a read-only stage-2 page refuses a write', () => {
    const s2 = rig.table(2)
    s2.map(0x1000n, DATA_PA, 0x1000n, RO)
    rig.ste(4, { config: 's2', s2: { vmid: 3, ttb: s2.root, geometry: s2.opts.geometry } })
    assert.equal(rig.write(4, 0x1000n, Buffer.from('x')).event?.name, 'F_PERMISSION')
    assert.equal(rig.write(4, 0x1000n, Buffer.from('x')).event?.s2, true)
  })

  it('a stage-2 start level that does not fit S2T0SZ is C_BAD_STE', () => {
    const s2 = rig.table(2)
    rig.ste(4, { config: 's2', s2: { vmid: 3, ttb: s2.root, geometry: new Geometry(12, 48, 2) } })
    assert.equal(rig.read(4, 0n).event?.name, 'C_BAD_STE')
  })

  for (const granule of [12, 14, 16] as const) {
    it(`nested (${1 << granule}-byte stage 2): the CD and every stage-1 table access go through stage 2`, () => {
      const { s2, guestMem } = nested(granule)
      const s1 = new PageTable(guestMem, { stage: 1, geometry: new Geometry(12, 48) })
      s1.map(0x1000n, 0x4020_0000n, 0x1000n, RW)
      const cdIpa = guestMem.alloc(64n, 64n)
      guestMem.write(cdIpa, wordBytes(s1Cd({ asid: 9, ttb0: s1.root })))
      rig.ste(0x10, { config: 'nested', ctxPtr: cdIpa, s2: { vmid: 2, ttb: s2.root, geometry: s2.opts.geometry } })
      rig.fill(DATA_PA + 0x20_0000n, Buffer.from('nested!'))
      const r = rig.read(0x10, 0x1000n, 7)
      assert.equal(r.event, undefined)
      assert.equal(r.data!.toString(), 'nested!')
      const kinds = r.pieces[0].steps.map((s) => s.what)
      // STE, then S2 walk of the CD IPA, the CD, then (S2 walk, S1 descriptor) x 4, then the S2 walk of the output
      assert.equal(kinds.filter((k) => k === 's1').length, 4)
      const s2starts = r.pieces[0].steps.filter((s) => s.what === 's2' && s.level === s2.opts.geometry.startLevel)
      assert.equal(s2starts.length, 6, 'stage 2 walks: the CD, four stage-1 tables, the output')
      assert.equal(kinds[0], 'ste')
      assert.equal(kinds[kinds.indexOf('cd') - 1], 's2')
      assert.equal(r.pieces[0].perms & PERM.UW, PERM.UW)
    })
  }

  it('nested faults: CD IPA unmapped in stage 2 is S2 CLASS=CD; a stage-1 table IPA unmapped is S2 CLASS=TT; a CD in no memory is F_CD_FETCH', () => {
    const { s2, guestMem } = nested()
    rig.ste(0x10, { config: 'nested', ctxPtr: 0x7000_0000n, s2: { vmid: 2, ttb: s2.root, geometry: s2.opts.geometry } })
    const a = rig.read(0x10, 0x1000n)
    assert.equal(a.event?.name, 'F_TRANSLATION')
    assert.equal(a.event?.s2, true)
    assert.equal(a.event?.cls, 'CD')
    assert.equal(a.event?.ipa, 0x7000_0000n)
    const cdIpa = guestMem.alloc(64n, 64n)
    guestMem.write(cdIpa, wordBytes(s1Cd({ asid: 9, ttb0: 0x7100_0000n })))
    rig.ste(0x11, { config: 'nested', ctxPtr: cdIpa, s2: { vmid: 2, ttb: s2.root, geometry: s2.opts.geometry } })
    const b = rig.read(0x11, 0x1000n)
    assert.equal(b.event?.cls, 'TT')
    assert.equal(b.event?.s2, true)
    // stage 2 maps the CD page to physical memory that is not there
    s2.map(0x7000_0000n, 0x6000_0000n, 0x1000n, RW)
    rig.ste(0x12, { config: 'nested', ctxPtr: 0x7000_0000n, s2: { vmid: 2, ttb: s2.root, geometry: s2.opts.geometry } })
    const c = rig.read(0x12, 0x1000n)
    assert.equal(c.event?.name, 'F_CD_FETCH')
    assert.equal(c.event?.fetch, 0x6000_0000n)
  })
})
