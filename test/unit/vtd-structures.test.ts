/**
 * The VT-d walk over hand-built structures in physical memory: 5-level first
 * stage with a 2M leaf, second stage only with SSADE (A/D set by the walk),
 * pass-through, the configuration faults (DTE, PASIDE, directory size, PGTT),
 * FPD, and the nested first-stage A/D write that the second stage forbids.
 */
import { strict as assert } from 'node:assert'
import { PhysicalMemory } from '../../src/memory/physical'
import { FS, SS, VtdPageTable } from '../../src/hw/vtd/pgtable'
import { PGTT, VtdStep, VtdTxn, VtdWalker } from '../../src/hw/vtd/walk'
import { PERM } from '../../src/hw/smmuv3/walk'

const SID = 0x208 // bus 2, devfn 8

interface Pasid {
  pgtt: number
  ss?: VtdPageTable
  fs?: VtdPageTable
  ssade?: boolean
  w2?: bigint
  fpd?: boolean
}

/** Root + context (lo flags given) + directory + one PASID-table entry for PASID `pasid`. */
function build(mem: PhysicalMemory, ctxFlags: bigint, pasid: number, e: Pasid): bigint {
  const root = mem.alloc(0x1000)
  const ctxTable = mem.alloc(0x1000)
  const dir = mem.alloc(0x1000)
  const table = mem.alloc(0x1000)
  mem.write64(root + 2n * 16n, ctxTable | 1n)
  mem.write64(ctxTable + 8n * 32n, dir | ctxFlags | 1n)
  mem.write64(ctxTable + 8n * 32n + 8n, 0n)
  mem.write64(dir + BigInt(pasid >> 6) * 8n, table | 1n)
  const at = table + BigInt(pasid & 0x3f) * 64n
  const ss = e.ss ? e.ss.root | (BigInt(e.ss.opts.levels - 2) << 2n) : 2n << 2n
  mem.write64(at, 1n | (e.fpd ? 2n : 0n) | (BigInt(e.pgtt) << 6n) | (e.ssade ? 1n << 9n : 0n) | ss)
  mem.write64(at + 8n, 5n)
  mem.write64(at + 16n, (e.fs ? e.fs.root | (e.fs.opts.levels === 5 ? 1n << 2n : 0n) : 0n) | (e.w2 ?? 0n))
  return root
}

function walk(w: VtdWalker, root: bigint, txn: Partial<VtdTxn> & { addr: bigint }): { ok: boolean; out?: bigint; perms?: number; reason?: number; recorded?: boolean; steps: VtdStep[] } {
  const full: VtdTxn = { sid: SID, write: false, ...txn }
  const r = w.translate(full, root)
  const steps: VtdStep[] = []
  return r.ok ? { ok: true, out: r.t.out, perms: r.t.perms, steps } : { ok: false, reason: r.fault.reason, recorded: r.fault.recorded, steps }
}

describe('VT-d walk over hand-built scalable-mode structures', () => {
  let mem: PhysicalMemory
  let w: VtdWalker
  beforeEach(() => {
    mem = new PhysicalMemory()
    w = new VtdWalker(mem, { slads: true, mgaw: 57 })
  })

  it('5-level first stage with a 2M leaf (PS at level 2): the offset inside the 2M page is kept', () => {
    const fs = new VtdPageTable(mem, { format: 'first', levels: 5 })
    fs.map(0x1_0000_0000_0000n, 0n, 0x1000n, { read: true, write: true })
    // turn the level-2 entry into a 2M leaf
    const l1 = fs.find(0x1_0000_0000_0000n)!
    const leafTable = l1.slot & ~0xfffn
    let table = fs.root
    let slot = 0n
    for (let level = 5; level >= 2; level--) {
      slot = table + ((0x1_0000_0000_0000n >> BigInt(12 + 9 * (level - 1))) & 0x1ffn) * 8n
      table = (mem.read64(slot) as bigint) & ~0xfffn
    }
    assert.equal(table, leafTable)
    mem.write64(slot, 0x4020_0000n | FS.P | FS.RW | FS.US | FS.A | FS.D | FS.PS)
    const root = build(mem, 0n, 0, { pgtt: PGTT.FIRST, fs })
    const r = walk(w, root, { addr: 0x1_0000_0012_3456n })
    assert.deepEqual([r.ok, r.out], [true, 0x4032_3456n])
    // 48-bit canonical would fault; 5 levels take 57 bits
    assert.equal(walk(w, root, { addr: 0x100_0000_0000_0000n }).reason, 0x80)
  })

  it('second stage only with SSADE: the walk sets A on a read, A and D on a write; without SSADE nothing changes', () => {
    const ss = new VtdPageTable(mem, { format: 'second', levels: 4 })
    ss.map(0x5000n, 0x9000_0000n, 0x1000n, { read: true, write: true })
    const root = build(mem, 0n, 0, { pgtt: PGTT.SECOND, ss, ssade: true })
    assert.equal(walk(w, root, { addr: 0x5008n }).out, 0x9000_0008n)
    assert.equal(ss.find(0x5000n)!.desc, 0x9000_0000n | SS.R | SS.W | SS.A)
    walk(w, root, { addr: 0x5008n, write: true })
    assert.equal(ss.find(0x5000n)!.desc, 0x9000_0000n | SS.R | SS.W | SS.A | SS.D)
    const mem2 = new PhysicalMemory()
    const ss2 = new VtdPageTable(mem2, { format: 'second', levels: 4 })
    ss2.map(0x5000n, 0x9000_0000n, 0x1000n, { read: true, write: true })
    const w2 = new VtdWalker(mem2, { slads: true, mgaw: 48 })
    walk(w2, build(mem2, 0n, 0, { pgtt: PGTT.SECOND, ss: ss2 }), { addr: 0x5000n, write: true })
    assert.equal(ss2.find(0x5000n)!.desc, 0x9000_0000n | SS.R | SS.W)
    // read-only second stage: a write is 0x85, an unmapped read 0x86
    const ro = new VtdPageTable(mem, { format: 'second', levels: 4 })
    ro.map(0x5000n, 0x9000_0000n, 0x1000n, { read: true, write: false })
    const root3 = build(mem, 0n, 0, { pgtt: PGTT.SECOND, ss: ro })
    assert.equal(walk(w, root3, { addr: 0x5000n, write: true }).reason, 0x85)
    assert.equal(walk(w, root3, { addr: 0x7000n }).reason, 0x86)
  })

  it('pass-through: output = input, every permission', () => {
    const root = build(mem, 0n, 0, { pgtt: PGTT.PT })
    const r = walk(w, root, { addr: 0xdead_b000n, write: true })
    assert.deepEqual([r.ok, r.out, r.perms], [true, 0xdead_b000n, 63])
  })

  it('configuration faults: DTE 0x44, PASIDE 0x45, directory size 0x46, PGTT 0x5b; FPD in the PASID entry suppresses the record', () => {
    const root = build(mem, 0n, 0, { pgtt: PGTT.PT })
    assert.equal(walk(w, root, { addr: 0n, ats: true }).reason, 0x44)
    assert.equal(walk(w, root, { addr: 0n, pasid: 1 }).reason, 0x45)
    const root2 = build(mem, 8n, 0, { pgtt: PGTT.PT })
    assert.equal(walk(w, root2, { addr: 0n, pasid: 128 * 64 }).reason, 0x46)
    assert.equal(walk(w, build(mem, 0n, 0, { pgtt: 6 }), { addr: 0n }).reason, 0x5b)
    const fs = new VtdPageTable(mem, { format: 'first', levels: 4 })
    const quiet = walk(w, build(mem, 0n, 0, { pgtt: PGTT.FIRST, fs, fpd: true }), { addr: 0x1000n })
    assert.deepEqual([quiet.reason, quiet.recorded], [0x71, false])
  })

  it('first-stage permissions: U/S 0x81 for a user request, XD 0x82 with ERE, a supervisor write honours R/W only with WPE', () => {
    const fs = new VtdPageTable(mem, { format: 'first', levels: 4 })
    fs.map(0x1000n, 0x8000n, 0x1000n, { read: true, write: false })
    const leaf = fs.find(0x1000n)!
    mem.write64(leaf.slot, (leaf.desc & ~FS.US) | FS.XD)
    const sre = 1n
    const ere = 2n
    const wpe = 1n << 4n
    const root = build(mem, 0n, 0, { pgtt: PGTT.FIRST, fs, w2: sre | ere })
    assert.equal(walk(w, root, { addr: 0x1000n }).reason, 0x81)
    assert.equal(walk(w, root, { addr: 0x1000n, priv: true, exec: true }).reason, 0x82)
    const sup = walk(w, root, { addr: 0x1000n, priv: true, write: true })
    assert.deepEqual([sup.ok, sup.perms], [true, PERM.PR | PERM.PW])
    const rootWpe = build(mem, 0n, 0, { pgtt: PGTT.FIRST, fs, w2: sre | ere | wpe })
    assert.equal(walk(w, rootWpe, { addr: 0x1000n, priv: true, write: true }).reason, 0x85)
  })

  it('nested: a first-stage A update needs second-stage W (0x77); the first-stage root outside the second stage is 0x75', () => {
    const ss = new VtdPageTable(mem, { format: 'second', levels: 4 })
    const gpaTables = mem.alloc(0x4000)
    ss.map(0x4000_0000n, gpaTables, 0x4000n, { read: true, write: false })
    ss.map(0x5000_0000n, 0x7000_0000n, 0x1000n, { read: true, write: true })
    // the guest's first stage at GPA 0x40000000, its tables read-only in the second stage, A clear on the leaf
    const entry = FS.P | FS.RW | FS.US | FS.A
    mem.write64(gpaTables, 0x4000_1000n | entry)
    mem.write64(gpaTables + 0x1000n, 0x4000_2000n | entry)
    mem.write64(gpaTables + 0x2000n, 0x4000_3000n | entry)
    mem.write64(gpaTables + 0x3000n + 8n, 0x5000_0000n | FS.P | FS.RW | FS.US)
    const root = build(mem, 0n, 0, { pgtt: PGTT.NESTED, ss, w2: 0x4000_0000n })
    assert.equal(walk(w, root, { addr: 0x1000n }).reason, 0x77)
    // with A preset, no update: the read goes through
    mem.write64(gpaTables + 0x3000n + 8n, 0x5000_0000n | FS.P | FS.RW | FS.US | FS.A | FS.D)
    assert.equal(walk(w, root, { addr: 0x1010n }).out, 0x7000_0010n)
    const lost = build(mem, 0n, 0, { pgtt: PGTT.NESTED, ss, w2: 0x6000_0000n })
    assert.equal(walk(w, lost, { addr: 0x1000n }).reason, 0x75)
  })
})
