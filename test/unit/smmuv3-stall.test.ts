/**
 * The SMMUv3 stall model over hand-built tables: CD.S / STE.S1STALLD legality
 * against IDR0.STALL_MODEL (§5.5), a stalling fault's event (Stall, STAG),
 * CMD_RESUME retry and abort, CMD_STALL_TERM, ATS never stalling, and the
 * STALL_MAX bound.
 */
import { strict as assert } from 'node:assert'
import { DATA_PA, SmmuRig } from '../helpers/smmu-rig'
import { Smmuv3Stalls } from '../../src/hw/smmuv3/stall'
import { parseCommand } from '../../src/hw/smmuv3/commands'
import { encodeEvent } from '../../src/hw/smmuv3/events'
import { DmaResult } from '../../src/hw/smmuv3/dma'

const RW = { read: true, write: true }

describe('SMMUv3 stall model', () => {
  let rig: SmmuRig
  let stalls: Smmuv3Stalls
  afterEach(() => rig.close())

  /** SID 8: stage 1 over a 4K table, the CD's S bit as given, on an SMMU with `stallModel`. */
  function setup(stallModel: number, stall: boolean, s1stalld = false, max = 4) {
    rig = new SmmuRig({ features: { stallModel } })
    stalls = new Smmuv3Stalls(max)
    rig.dma.walker.stags = stalls
    const pt = rig.table(1)
    const cd = rig.cdTable(0)
    rig.cd(cd, { asid: 5, ttb0: pt.root, stall })
    const steAddr = rig.ste(8, { config: 's1', ctxPtr: cd })
    if (s1stalld) {
      const w1 = rig.mem.read64(steAddr + 8n) as bigint
      rig.put(steAddr + 8n, [w1 | (1n << 27n)])
    }
    return pt
  }

  it('legality (§5.5): CD.S = 1 without stalls, CD.S = 1 under S1STALLD, CD.S = 0 when stalls are forced are C_BAD_CD; S1STALLD without stall-and-terminate is C_BAD_STE', () => {
    setup(1, true)
    assert.match(rig.read(8, 0x1000n).event?.reason ?? '', /CD.S = 1: this SMMU does not stall/)
    rig.close()
    setup(0, true, true)
    assert.match(rig.read(8, 0x1000n).event?.reason ?? '', /S1STALLD = 1/)
    rig.close()
    setup(2, false)
    assert.equal(rig.read(8, 0x1000n).event?.name, 'C_BAD_CD')
    rig.close()
    setup(1, false, true)
    assert.equal(rig.read(8, 0x1000n).event?.name, 'C_BAD_STE')
  })

  it('a miss under CD.S = 1 stalls: Stall = 1 and STAG in the record; RESUME retry after the fix completes the request, data and all', () => {
    const pt = setup(0, true)
    rig.fill(DATA_PA + 0x10n, Buffer.from('stalled!'))
    let end: DmaResult | undefined
    const r = stalls.access(rig.dma, { sid: 8, addr: 0x4000_0010n, len: 8, write: false }, undefined, (e) => (end = e))
    assert.equal(r.event?.name, 'F_TRANSLATION')
    assert.deepEqual([r.event?.stall, r.event?.stag, r.event?.recorded], [true, 0, true])
    assert.equal(encodeEvent(r.event!)[1], (1n << 35n) | (2n << 40n) | (1n << 31n) | 0n, 'RnW, CLASS = IN, Stall, STAG 0')
    assert.equal(stalls.size, 1)
    pt.map(0x4000_0000n, DATA_PA, 0x1000n, RW)
    stalls.command(() => rig.dma, parseCommand('RESUME sid=8 stag=0 action=1'))
    assert.equal(end?.data?.toString(), 'stalled!')
    assert.equal(end?.event, undefined)
    assert.equal(stalls.size, 0)
    // a RESUME for no held transaction is a no-op
    stalls.command(() => rig.dma, parseCommand('RESUME sid=8 stag=0 action=1'))
    assert.equal(stalls.resumed, 1)
  })

  it('RESUME abort and STALL_TERM end held transactions with their fault; ATS requests never stall; past STALL_MAX a fault terminates', () => {
    setup(0, true, false, 2)
    const ends: DmaResult[] = []
    const go = (addr: bigint): DmaResult => stalls.access(rig.dma, { sid: 8, addr, len: 4, write: true, data: Buffer.alloc(4) }, undefined, (e) => ends.push(e))
    assert.equal(go(0x1000n).event?.stag, 0)
    assert.equal(go(0x2000n).event?.stag, 1)
    const third = go(0x3000n)
    assert.equal(third.event?.stall, undefined, 'STALL_MAX 2 held: terminated')
    stalls.command(() => rig.dma, parseCommand('RESUME sid=8 stag=0 action=2'))
    assert.equal(ends.length, 1)
    assert.equal(ends[0].event?.input, 0x1000n)
    stalls.command(() => rig.dma, parseCommand('STALL_TERM sid=8'))
    assert.equal(ends.length, 2)
    assert.equal(stalls.size, 0)
    assert.equal(stalls.terminated, 2)
    const ats = rig.read(8, 0x5000n, 8, { ats: true })
    assert.equal(ats.event?.name, 'F_TRANSLATION')
    assert.equal(ats.event?.stall, undefined)
  })
})
