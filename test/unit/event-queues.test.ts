/**
 * The physical queues: an SMMUv3's event queue (a ring of 32-byte records,
 * PROD/CONS with wrap bits, OVFLG/OVACKFLG on overflow) and a VT-d unit's
 * fault-recording registers (CAP.NFR + 1 of them, PFO when they are full).
 * With the driver's interrupt masked the records stay, so overflow shows.
 */
import { strict as assert } from 'node:assert'
import { loadTopology } from '../../src/topology/topology'
import { Smmuv3 } from '../../src/hw/smmuv3/smmuv3'
import { SmmuEvent } from '../../src/hw/smmuv3/events'
import { Vtd } from '../../src/hw/vtd/vtd'
import { VtdFault } from '../../src/hw/vtd/faults'
import { FSTS_PFO, FSTS_PPF } from '../../src/hw/vtd/fault-regs'
import { isAbort } from '../../src/memory/backing'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'

const event = (n: number): SmmuEvent => ({ name: 'F_TRANSLATION', sid: 8, input: BigInt(n) << 12n, rnw: true, s2: false, cls: 'IN', reason: 'test', recorded: true })
const fault = (n: number): VtdFault => ({ reason: 0x71, sid: 0x200, addr: BigInt(n) << 12n, write: false, detail: 'test', recorded: true })

describe('physical event queues', () => {
  it('SMMUv3: IDR1.EVTQS entries; masked, records stay between CONS and PROD in the ring in memory, raw as written', () => {
    const smmu = loadTopology(DEFAULT_TOPOLOGY).units.find((u): u is Smmuv3 => u instanceof Smmuv3)!
    const q = smmu.eventq
    assert.equal(q.ring.size, 256)
    q.irq = 'masked'
    for (let i = 0; i < 3; i++) assert.equal(q.write(event(i)), true)
    assert.equal(q.prod, 3)
    assert.equal(q.cons, 0)
    const json = q.json() as { records: { index: number; words: string[]; event: string }[] }
    assert.equal(json.records[2].index, 2)
    assert.deepEqual(json.records[2].words, ['0x800000010', '0x20800000000', '0x2000', '0x0'])
    assert.match(json.records[2].event, /^F_TRANSLATION\(0x10\) sid=0x8 input=0x2000/)
    // the ring is memory: the third record's first word at BASE + 2 * 32
    const base = BigInt(/BASE: (0x[0-9a-f]+)/.exec(q.dump())![1])
    const w = smmu.memory.read64(base + 64n)
    assert.ok(!isAbort(w))
    assert.equal(w, 0x800000010n)
  })

  it('SMMUv3: a full ring loses the record and toggles OVFLG once; the driver drains, notes the overflow and acknowledges it', () => {
    const smmu = loadTopology(DEFAULT_TOPOLOGY).units.find((u): u is Smmuv3 => u instanceof Smmuv3)!
    const q = smmu.eventq
    const seen: bigint[] = []
    let overflows = 0
    q.handler = (r) => seen.push(r.words[2])
    q.onOverflow = () => overflows++
    q.irq = 'masked'
    for (let i = 0; i < 256; i++) assert.equal(q.write(event(i)), true)
    // full: PROD's index equals CONS's, wrap bits differ
    assert.equal(q.prod, 0x100)
    assert.equal(q.write(event(256)), false)
    assert.equal(q.write(event(257)), false)
    assert.equal(q.prod >>> 0, 0x80000100, 'OVFLG toggled once for both losses')
    assert.equal(q.lost, 2)
    assert.match(q.dump(), /OVFLG: 1\tOVACKFLG: 0/)
    q.setIrq('enabled')
    assert.equal(seen.length, 256)
    assert.equal(seen[255], 255n << 12n)
    assert.equal(overflows, 1)
    assert.equal(q.cons >>> 0, 0x80000100, 'CONS caught up, OVACKFLG = OVFLG')
    assert.equal(q.overflowed, false)
    // enabled: the next record goes straight to the driver
    assert.equal(q.write(event(300)), true)
    assert.equal(seen.length, 257)
    assert.equal(q.pending, 0)
    assert.throws(() => q.setIrq('sometimes'), /EINVAL|enabled or masked/)
  })

  it('VT-d: CAP.NFR + 1 registers at CAP.FRO * 16; PPF and FRI follow the F bits; a full set (or PFO) loses the fault and sets PFO', () => {
    const vtd = loadTopology(DEFAULT_TOPOLOGY).units.find((u): u is Vtd => u instanceof Vtd)!
    const r = vtd.faultRegs
    assert.equal(r.count, 8)
    assert.equal(r.offset, 0x220)
    r.irq = 'masked'
    assert.equal(r.status, 0)
    for (let i = 0; i < 8; i++) assert.equal(r.record(fault(i)), true)
    assert.equal(r.status, FSTS_PPF, 'PPF, FRI 0')
    assert.equal(r.record(fault(8)), false)
    assert.equal(r.status, FSTS_PPF | FSTS_PFO)
    assert.equal(r.lost, 1)
    // while PFO is set nothing is recorded, even with a register free
    r.clear(0)
    assert.equal(r.record(fault(9)), false)
    assert.equal(r.lost, 2)
    r.writeStatus(FSTS_PFO)
    assert.equal(r.record(fault(10)), true, 'PFO cleared: FRCD0 takes the fault')
    const handled: number[] = []
    let fsts = -1
    r.handler = (x) => handled.push(x.index)
    r.onStatus = (s) => (fsts = s)
    r.setIrq('enabled')
    assert.equal(fsts, FSTS_PPF, 'the driver read PPF with FRI = 0')
    assert.deepEqual(handled, [0, 1, 2, 3, 4, 5, 6, 7])
    assert.equal(r.status, 0, 'all F clear')
    // the next fault goes in the register after the last written one, and straight to the driver
    assert.equal(r.record(fault(11)), true)
    assert.deepEqual(handled.slice(-1), [1])
    assert.match(r.dump(), /recorded: 10\tlost: 2/)
  })

  it('VT-d: fault_status shows PFO and PPF with the queue bits; writing 1 to PFO clears it', () => {
    const vtd = loadTopology(DEFAULT_TOPOLOGY).units.find((u): u is Vtd => u instanceof Vtd)!
    vtd.faultRegs.irq = 'masked'
    for (let i = 0; i < 9; i++) vtd.faultRegs.record(fault(i))
    const file = vtd.debugFiles().fault_status
    assert.equal(file.show(), '0x00000003 PFO PPF\n')
    file.store!('0x1')
    assert.equal(file.show(), '0x00000002 PPF\n')
  })
})
