/**
 * What each VT-d invalidation descriptor drops, against every kind of cached
 * entry (translation.md §4.5-4.6): one row per descriptor, one column per
 * entry, dropped (x) or kept (.).
 */
import { strict as assert } from 'node:assert'
import { IotlbEntry, VtdCaches } from '../../src/hw/vtd/caches'
import { Descriptor, P_IOTLB_GRAN, contextCacheInv, devIotlb, devIotlbPasid, iotlbInv, pasidCacheInv, pasidIotlb } from '../../src/hw/vtd/qi'
import { ContextConfig, PasidConfig } from '../../src/hw/vtd/walk'

const SID = 0x200
const ctx = { words: [1n, 0n] } as unknown as ContextConfig
const pc = { words: [1n] } as unknown as PasidConfig
/** Draining changes no cache: the rows hold for any DR / DW. */
const NO_DRAIN = { read: false, write: false }

/** Fills one entry of each kind; their names are the table's columns. */
function filled(): VtdCaches {
  const c = new VtdCaches({ iotlb: 64, pasid: 64, context: 64, devtlb: 64, pde: 64 })
  c.context.set(SID, { sid: SID, did: 3, ctx, steps: [], since: 0 })
  c.context.set(0x208, { sid: 0x208, did: 4, ctx, steps: [], since: 0 })
  c.pasid.set(VtdCaches.pasidKey(SID, 1), { sid: SID, pasid: 1, did: 3, pc, steps: [], since: 0 })
  c.pasid.set(VtdCaches.pasidKey(SID, 2), { sid: SID, pasid: 2, did: 4, pc, steps: [], since: 0 })
  const tlb = { size: 0x1000n, out: 0x8000_0000n, perms: 63, since: 0, sid: SID, steps: [], global: false }
  c.fill({ ...tlb, kind: 'first', did: 3, pasid: 1, base: 0x1000n })
  c.fill({ ...tlb, kind: 'first', did: 3, pasid: 1, base: 0x5000n, global: true })
  c.fill({ ...tlb, kind: 'first', did: 3, pasid: 2, base: 0x1000n })
  c.fill({ ...tlb, kind: 'nested', did: 3, pasid: 0, base: 0x1000n })
  c.fill({ ...tlb, kind: 'second', did: 3, base: 0x1000n })
  c.fill({ ...tlb, kind: 'second', did: 3, base: 0x9000n })
  c.fill({ ...tlb, kind: 'first', did: 4, pasid: 1, base: 0x1000n })
  c.devTlbFill({ sid: SID, base: 0x1000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  c.devTlbFill({ sid: SID, pasid: 1, base: 0x1000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  c.devTlbFill({ sid: SID, pasid: 1, base: 0x4000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  c.devTlbFill({ sid: 0x208, base: 0x1000n, size: 0x1000n, out: 0n, perms: 63, since: 0 })
  // paging-structure entries: level-2 table pointers (2M spans)
  const pde = { level: 2, size: 0x20_0000n, next: 0x7000_0000n, rw: true, us: true, xd: false, steps: [] }
  c.fillPde({ ...pde, kind: 'first', did: 3, pasid: 1, base: 0n })
  c.fillPde({ ...pde, kind: 'first', did: 3, pasid: 2, base: 0n })
  c.fillPde({ ...pde, kind: 'nested', did: 3, pasid: 0, base: 0n })
  c.fillPde({ ...pde, kind: 'second', did: 3, base: 0n })
  c.fillPde({ ...pde, kind: 'second', did: 3, base: 0x4000_0000n })
  return c
}

const COLUMNS = [
  'ctx sid=02:00.0 did=3',
  'ctx sid=02:01.0 did=4',
  'pc did=3 pasid=1',
  'pc did=4 pasid=2',
  'fs did=3 pasid=1 0x1000',
  'fs did=3 pasid=1 0x5000 global',
  'fs did=3 pasid=2 0x1000',
  'nested did=3 pasid=0 0x1000',
  'ss did=3 0x1000',
  'ss did=3 0x9000',
  'fs did=4 pasid=1 0x1000',
  'devtlb 02:00.0 0x1000',
  'devtlb 02:00.0 pasid=1 0x1000',
  'devtlb 02:00.0 pasid=1 0x4000',
  'devtlb 02:01.0 0x1000',
  'pde fs did=3 pasid=1 [0, 2M)',
  'pde fs did=3 pasid=2 [0, 2M)',
  'pde nested did=3 pasid=0 [0, 2M)',
  'pde ss did=3 [0, 2M)',
  'pde ss did=3 [1G, 1G+2M)',
]

function present(c: VtdCaches): boolean[] {
  const has = (did: number, pasid: number | undefined, addr: bigint, global?: boolean): boolean => {
    const e = c.lookup(did, pasid, addr)
    return e !== undefined && (global === undefined || e.global === global)
  }
  return [
    c.context.map.has(SID),
    c.context.map.has(0x208),
    c.pasid.map.has(VtdCaches.pasidKey(SID, 1)),
    c.pasid.map.has(VtdCaches.pasidKey(SID, 2)),
    has(3, 1, 0x1000n),
    has(3, 1, 0x5000n, true),
    has(3, 2, 0x1000n),
    has(3, 0, 0x1000n),
    has(3, undefined, 0x1000n),
    has(3, undefined, 0x9000n),
    has(4, 1, 0x1000n),
    c.devTlbLookup(SID, undefined, 0x1000n) !== undefined,
    c.devTlbLookup(SID, 1, 0x1000n) !== undefined,
    c.devTlbLookup(SID, 1, 0x4000n) !== undefined,
    c.devTlbLookup(0x208, undefined, 0x1000n) !== undefined,
    c.pde.map.has('first/3/1/2/0'),
    c.pde.map.has('first/3/2/2/0'),
    c.pde.map.has('nested/3/0/2/0'),
    c.pde.map.has('second/3/-/2/0'),
    c.pde.map.has('second/3/-/2/512'),
  ]
}

/** A row: context (2 columns), PASID cache (2), IOTLB (7), device TLB (4), paging-structure caches (5). */
function row(ctxCols: string, pcCols: string, tlbCols: string, devCols: string, pdeCols = '.....'): string {
  assert.deepEqual([ctxCols.length, pcCols.length, tlbCols.length, devCols.length, pdeCols.length], [2, 2, 7, 4, 5])
  return ctxCols + pcCols + tlbCols + devCols + pdeCols
}

const TABLE: [string, Descriptor, string][] = [
  ['CC global', contextCacheInv(1), row('xx', '..', '.......', '....')],
  ['CC domain did=3', contextCacheInv(2, 3), row('x.', '..', '.......', '....')],
  ['CC device did=4 sid=02:01.0', contextCacheInv(3, 4, 0x208), row('.x', '..', '.......', '....')],
  ['CC device sid=02:00.0 fm=3 (the functions of device 02:00, not 02:01)', contextCacheInv(3, 3, SID, 3), row('x.', '..', '.......', '....')],
  ['PC global', pasidCacheInv(3, 0), row('..', 'xx', '.......', '....')],
  ['PC all-in-domain did=3', pasidCacheInv(0, 3), row('..', 'x.', '.......', '....')],
  ['PC did=3 pasid=1', pasidCacheInv(1, 3, 1), row('..', 'x.', '.......', '....')],
  ['PC did=3 pasid=2 (the entry has did 4)', pasidCacheInv(1, 3, 2), row('..', '..', '.......', '....')],
  ['IOTLB global', iotlbInv(NO_DRAIN, 1, 0), row('..', '..', 'xxxxxxx', '....', 'xxxxx')],
  ['IOTLB DSI did=3: second-stage and nested entries, not first-stage', iotlbInv(NO_DRAIN, 2, 3), row('..', '..', '...xxx.', '....', '..xxx')],
  ['IOTLB PSI did=3 0x1000 am=0: second-stage in range, nested of the DID', iotlbInv(NO_DRAIN, 3, 3, 0x1000n, 0), row('..', '..', '...xx..', '....', '..xx.')],
  ['IOTLB PSI did=3 0x1000 am=0 ih=1: leaves only, the paging-structure entries stay', iotlbInv(NO_DRAIN, 3, 3, 0x1000n, 0, true), row('..', '..', '...xx..', '....')],
  ['IOTLB PSI did=3 0x40000000 am=0: the second-stage table pointer over it', iotlbInv(NO_DRAIN, 3, 3, 0x4000_0000n, 0), row('..', '..', '...x...', '....', '..x.x')],
  ['IOTLB PSI did=3 0x8000 am=1', iotlbInv(NO_DRAIN, 3, 3, 0x8000n, 1), row('..', '..', '...x.x.', '....', '..xx.')],
  ['P_IOTLB did=3 pasid=1 all non-global (and every paging-structure entry of the PASID)', pasidIotlb(3, 1, P_IOTLB_GRAN.NONG_PASID, 0n, 0, false), row('..', '..', 'x......', '....', 'x....')],
  ['P_IOTLB did=3 pasid=1 0x1000 am=0 ih=1: leaves only', pasidIotlb(3, 1, P_IOTLB_GRAN.PSI_PASID, 0x1000n, 0, true), row('..', '..', 'x......', '....')],
  ['P_IOTLB did=3 pasid=1 0x1000 am=0 ih=0: the table pointer over it too', pasidIotlb(3, 1, P_IOTLB_GRAN.PSI_PASID, 0x1000n, 0, false), row('..', '..', 'x......', '....', 'x....')],
  ['P_IOTLB did=3 pasid=1 0x4000 am=2 (a global entry too)', pasidIotlb(3, 1, P_IOTLB_GRAN.PSI_PASID, 0x4000n, 2, false), row('..', '..', '.x.....', '....', 'x....')],
  ['P_IOTLB did=3 pasid=0 (the nested entry)', pasidIotlb(3, 0, P_IOTLB_GRAN.NONG_PASID, 0n, 0, false), row('..', '..', '...x...', '....', '..x..')],
  ['DEV_IOTLB 02:00.0 0x1000 s=0: every PASID of the function', devIotlb(SID, SID, 0, 0x1000n, false), row('..', '..', '.......', 'xx..')],
  ['DEV_IOTLB 02:00.0 0x5000 s=1 (16K at 0x4000)', devIotlb(SID, SID, 0, 0x5000n, true), row('..', '..', '.......', '..x.')],
  ['DEV_IOTLB_PASID 02:00.0 pasid=1 0x1000', devIotlbPasid(SID, 1, 0x1000n, false), row('..', '..', '.......', '.x..')],
]

describe('VT-d invalidation descriptors against cached entries (dropped x, kept .)', () => {
  for (const [name, desc, expect] of TABLE) {
    it(name, () => {
      assert.equal(expect.length, COLUMNS.length, `row ${name} has ${expect.length} columns`)
      const c = filled()
      assert.ok(present(c).every(Boolean), 'every entry is cached before')
      c.apply(desc)
      const got = present(c).map((p) => (p ? '.' : 'x')).join('')
      const diff = COLUMNS.filter((_, i) => got[i] !== expect[i]).map((col) => `${col}: ${got[COLUMNS.indexOf(col)] === 'x' ? 'dropped' : 'kept'}`)
      assert.equal(got, expect, diff.join(', '))
    })
  }
})

describe('VT-d caches as plain data (iotlb.json, config_cache.json, dev_tlb.json)', () => {
  it('the same entries as the text views, addresses as hex strings', () => {
    const c = filled()
    const iotlb = c.iotlbJson() as { entries: Record<string, unknown>[] }
    assert.equal(iotlb.entries.length, 7)
    assert.deepEqual(iotlb.entries.find((e) => e.iova === '0x5000'), { did: 3, pasid: 1, kind: 'first', iova: '0x5000', size: '0x1000', pa: '0x80000000', perms: iotlb.entries[0].perms, global: true, since: 0 })
    const config = c.configJson() as { context: { entries: { sid: string; did: number }[] }; pasid: { entries: { pasid: number; did: number }[] } }
    assert.deepEqual(config.context.entries.map((e) => [e.sid, e.did]), [['0x200', 3], ['0x208', 4]])
    assert.deepEqual(config.pasid.entries.map((e) => [e.pasid, e.did]), [[1, 3], [2, 4]])
    const dev = c.devTlbJson() as { entries: { sid: string; pasid: number | null; iova: string }[] }
    assert.deepEqual(dev.entries.map((e) => [e.sid, e.pasid, e.iova]), [['0x200', null, '0x1000'], ['0x200', 1, '0x1000'], ['0x200', 1, '0x4000'], ['0x208', null, '0x1000']])
    assert.doesNotThrow(() => JSON.stringify([iotlb, config, dev]))
  })
})

describe('VT-d cache replacement: least recently used first', () => {
  const entry = (base: bigint, size = 0x1000n): IotlbEntry => ({ kind: 'first', did: 3, pasid: 1, base, size, out: 0x8000_0000n, perms: 63, global: false, since: 0, sid: SID, steps: [] })
  const order = (c: VtdCaches): string[] => (c.iotlbJson() as { entries: { iova: string }[] }).entries.map((e) => e.iova)

  it('a hit makes an entry the newest; a fill past capacity drops the oldest; a refill of the same address moves it last', () => {
    const c = new VtdCaches({ iotlb: 3, pasid: 2, context: 2, devtlb: 2, pde: 2 })
    for (const a of [0x1000n, 0x2000n, 0x3000n]) c.fill(entry(a))
    assert.deepEqual(order(c), ['0x1000', '0x2000', '0x3000'])
    assert.equal(c.lookup(3, 1, 0x1008n)?.base, 0x1000n)
    assert.deepEqual(order(c), ['0x2000', '0x3000', '0x1000'])
    c.fill(entry(0x4000n))
    assert.deepEqual(order(c), ['0x3000', '0x1000', '0x4000'])
    assert.equal(c.lookup(3, 1, 0x2000n), undefined)
    c.fill(entry(0x3000n))
    assert.deepEqual(order(c), ['0x1000', '0x4000', '0x3000'])
    assert.equal(order(c).length, 3)
    // a lookup that reads an entry under one of its probe addresses counts as a use, covering or not
    c.fill(entry(0x20_0000n))
    assert.deepEqual(order(c), ['0x4000', '0x3000', '0x200000'])
    assert.equal(c.lookup(3, 1, 0x20_1000n), undefined)
    c.lookup(3, 1, 0x4000n)
    assert.deepEqual(order(c), ['0x3000', '0x200000', '0x4000'])
    // dropped entries leave the index too: the address misses, a fill takes it again
    assert.equal(c.apply(pasidIotlb(3, 1, P_IOTLB_GRAN.PSI_PASID, 0x4000n, 0, true)), 1)
    assert.equal(c.lookup(3, 1, 0x4000n), undefined)
    c.fill(entry(0x4000n))
    assert.deepEqual(order(c), ['0x3000', '0x200000', '0x4000'])
  })

  it('the context and PASID caches: get() refreshes, set() past capacity evicts the least recently used', () => {
    const c = new VtdCaches({ iotlb: 2, pasid: 2, context: 2, devtlb: 2, pde: 2 })
    c.context.set(1, { sid: 1, did: 1, ctx, steps: [], since: 0 })
    c.context.set(2, { sid: 2, did: 2, ctx, steps: [], since: 0 })
    assert.equal(c.context.get(1)?.did, 1)
    c.context.set(3, { sid: 3, did: 3, ctx, steps: [], since: 0 })
    assert.deepEqual([c.context.map.has(1), c.context.map.has(2), c.context.map.has(3)], [true, false, true])
    const config = (): { context: { entries: { sid: string; did: number }[] }; pasid: { entries: { pasid: number; did: number }[] } } => c.configJson() as never
    assert.deepEqual(config().context.entries.map((e) => e.sid), ['0x1', '0x3'])
    c.pasid.set(VtdCaches.pasidKey(SID, 1), { sid: SID, pasid: 1, did: 3, pc, steps: [], since: 0 })
    c.pasid.set(VtdCaches.pasidKey(SID, 2), { sid: SID, pasid: 2, did: 3, pc, steps: [], since: 0 })
    c.pasid.set(VtdCaches.pasidKey(SID, 1), { sid: SID, pasid: 1, did: 4, pc, steps: [], since: 0 })
    c.pasid.set(VtdCaches.pasidKey(SID, 3), { sid: SID, pasid: 3, did: 3, pc, steps: [], since: 0 })
    assert.deepEqual(config().pasid.entries.map((e) => [e.pasid, e.did]), [[1, 4], [3, 3]])
  })
})
