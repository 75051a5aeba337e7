/**
 * Transaction-node details: union field aliases in text, a VFIO device node
 * addressing only its own device, replies per caller, and the trace ring.
 */
import { strict as assert } from 'node:assert'
import { debugTree } from '../../src/fs/debug-tree'
import { Smmuv3 } from '../../src/hw/smmuv3/smmuv3'
import { Vtd } from '../../src/hw/vtd/vtd'
import { Requester, VfioDeviceSession } from '../../src/uapi/session'
import { TraceLog } from '../../src/util/trace'
import { DEV, IommuBench, parseOk } from '../helpers/iommufd'

function vfioSend(s: VfioDeviceSession, line: string): string {
  s.write(0, Buffer.from(`${line}\n`))
  return s.read(0, 4096).toString('utf8').trimEnd()
}

describe('text requests name union fields either way', () => {
  it('GET_HW_INFO takes in_data_type as well as out_data_type', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev} flags=INPUT_TYPE in_data_type=ARM_SMMUV3`).out_data_type, '2')
    const before = t.dump()
    assert.match(t.send(`GET_HW_INFO dev_id=${dev} flags=INPUT_TYPE in_data_type=INTEL_VTD`), /^err EOPNOTSUPP in_data_type=1: /)
    assert.match(t.send(`GET_HW_INFO dev_id=${dev} in_data_type=2 out_data_type=2`), /^err EINVAL out_data_type: given twice/)
    assert.equal(t.dump(), before)
  })
})

describe('a dev/vfio/devices/vfio<N> file addresses its own device only', () => {
  it('refuses pci= naming another device, binds nothing, and stays unbound', () => {
    const t = new IommuBench()
    const own = t.world.machine.device(DEV.smmu0a)!
    const file = new VfioDeviceSession(t.world, own)
    const before = t.dump()
    assert.match(vfioSend(file, `DEVICE_BIND pci=${DEV.smmu0b} iommufd=${t.ctx.id}`), /^err EINVAL 0000:00:02\.0: this file is vfio0 \(0000:00:01\.0\)/)
    assert.equal(t.dump(), before)
    // its own device binds, into the named context
    assert.equal(parseOk(vfioSend(file, `DEVICE_BIND pci=${DEV.smmu0a} iommufd=${t.ctx.id}`)).out_devid, '1')
    assert.equal(t.world.ownerOf(own), t.ctx)
    file.release()
    assert.equal(t.world.ownerOf(own), undefined)
  })
})

describe('replies per caller on one descriptor', () => {
  it('each process reads its own; a thread its own until a read reaches its end, then its process latest', () => {
    const s = new IommuBench().session
    const [a1, a2, b1, c1] = [{ pid: 10, tid: 10 }, { pid: 10, tid: 11 }, { pid: 20, tid: 20 }, { pid: 30, tid: 30 }]
    const send = (who: Requester, line: string): number => s.write(0, Buffer.from(`${line}\n`), who)
    const get = (who: Requester, len = 4096): string => s.read(0, len, who).toString('utf8').trimEnd()
    send(a1, 'IOAS_ALLOC')
    send(a2, 'IOAS_ALLOC')
    send(b1, 'IOAS_ALLOC')
    assert.deepEqual([get(a1), get(a2), get(b1)], ['ok out_ioas_id=1', 'ok out_ioas_id=2', 'ok out_ioas_id=3'])
    // a read short of the end leaves a1's reply its own; the next one reaches the end, and then a1 reads a2's
    send(a1, 'IOAS_ALLOC')
    send(a2, 'IOAS_ALLOC')
    assert.equal(get(a1, 5), 'ok ou')
    assert.equal(get(a1), 'ok out_ioas_id=4')
    assert.equal(get(a1), 'ok out_ioas_id=5')
    // a process that wrote nothing reads the latest, and marks nothing read: a2's reply stays a2's
    send(a1, 'IOAS_ALLOC')
    send(a2, 'IOAS_ALLOC')
    assert.equal(get(c1), 'ok out_ioas_id=7')
    send(a1, 'IOAS_ALLOC')
    assert.deepEqual([get(a2), get(a1), get(b1)], ['ok out_ioas_id=7', 'ok out_ioas_id=8', 'ok out_ioas_id=3'])
  })

  it('replyRead (the binding answered the reads itself) ends the reply as a read to its end does', () => {
    const s = new IommuBench().session
    const [a1, a2] = [{ pid: 10, tid: 10 }, { pid: 10, tid: 11 }]
    const send = (who: Requester): number => s.write(0, Buffer.from('IOAS_ALLOC\n'), who)
    send(a1)
    s.replyRead({ pid: 10, tid: 11 }) // not a1's thread: changes nothing
    send(a2)
    assert.equal(s.read(0, 4096, a1).toString('utf8'), 'ok out_ioas_id=1\n')
    send(a1)
    s.replyRead(a1)
    send(a2)
    assert.equal(s.read(0, 4096, a1).toString('utf8'), 'ok out_ioas_id=4\n')
  })
})

describe('the trace ring', () => {
  it('keeps the last `capacity` lines in order across wraps, numbered from 1', () => {
    const seen: string[] = []
    const log = new TraceLog(3, (l) => seen.push(l))
    for (let i = 1; i <= 7; i++) log.emit('t', `line ${i}`)
    assert.deepEqual(
      log.recent().map((l) => l.replace(/^\[\s*(\d+)\]\s+\d+\.\d{6} t: /, '$1 ')),
      ['5 line 5', '6 line 6', '7 line 7'],
    )
    assert.equal(log.count, 7)
    assert.equal(seen.length, 7)
    // since() across the wrap: only what is still held, oldest first
    const tail = (seq: number): string[] => log.since(seq).map((l) => l.replace(/^\[\s*(\d+)\]\s+\d+\.\d{6} t: /, '$1 '))
    assert.deepEqual(tail(0), ['5 line 5', '6 line 6', '7 line 7'])
    assert.deepEqual(tail(5), ['6 line 6', '7 line 7'])
    assert.deepEqual(tail(6), ['7 line 7'])
    assert.deepEqual(tail(7), [])
    log.emit('t', 'line 8')
    assert.deepEqual(tail(6), ['7 line 7', '8 line 8'])
  })
})

describe('invalidation targets', () => {
  it('an SMMUv3 nested HWPT is EOPNOTSUPP in the ring form as in the array form (invalidate its vIOMMU)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} ste=0x1,0`, 'out_hwpt_id')
    const before = t.dump()
    assert.match(t.send(`HWPT_INVALIDATE hwpt_id=${nested} cmd=TLBI_NH_ALL`), /^err EOPNOTSUPP hwpt_id=\d+: an SMMUv3 nested HWPT is invalidated through its vIOMMU/)
    assert.match(t.send(`HWPT_INVALIDATE_RING hwpt_id=${nested} cmd=TLBI_NH_ALL`), /^err EOPNOTSUPP hwpt_id=\d+: an SMMUv3 nested HWPT is invalidated through its vIOMMU/)
    assert.equal(t.dump(), before)
  })

  it('an injected VT-d queue error aborts the batch: its status words read QI_ABORT (3)', () => {
    const t = new IommuBench()
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data.pgtbl_addr=0x1000 data.addr_width=48`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
    const vtd = t.world.machine.unit('dmar0')!
    vtd.debugFiles().inject_qi_error.store!('ICE')
    assert.match(t.send(`HWPT_INVALIDATE hwpt_id=${nested} entry=all`), /^err EIO entry 0: dmar0's invalidation queue reported ICE/)
    const rows = vtd.debugFiles().invalidation_queue.show().split('\n').filter((l) => /^\s+\d+\t/.test(l))
    assert.ok(rows.length >= 2)
    for (const r of rows) assert.equal(r.split('\t')[5], '00000003')
  })
})

describe('dirty tracking follows the drivers\' rules', () => {
  it('SMMUv3 needs HTTU access+dirty on coherent tables: without IDR0.COHACC, DIRTY_TRACKING is EOPNOTSUPP and not a capability', () => {
    const t = new IommuBench()
    const smmu = t.world.machine.unit('smmu3.0x0000000009050000') as Smmuv3
    const dev = t.bind(DEV.smmu0a)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev}`).out_capabilities, '0x1')
    Object.defineProperty(smmu, 'registers', { value: smmu.registers.withField('IDR0.COHACC', 0n) })
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev}`).out_capabilities, '0x0')
    const before = t.dump()
    assert.match(t.send(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`), /^err EOPNOTSUPP flags=DIRTY_TRACKING: smmu3\.0x0000000009050000 cannot track dirty pages/)
    assert.equal(t.dump(), before)
  })

  it('VT-d needs scalable mode, SLADS and SMPWC: without ECAP.SMPWC, DIRTY_TRACKING is EOPNOTSUPP', () => {
    const t = new IommuBench()
    const vtd = t.world.machine.unit('dmar0') as Vtd
    const dev = t.bind(DEV.vtdA)
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    Object.defineProperty(vtd, 'registers', { value: vtd.registers.withField('ECAP.SMPWC', 0n) })
    assert.equal(t.ok(`GET_HW_INFO dev_id=${dev}`).out_capabilities, '0x0')
    assert.match(t.send(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=DIRTY_TRACKING`), /^err EOPNOTSUPP flags=DIRTY_TRACKING: dmar0 cannot track dirty pages/)
  })
})

describe('trace_pipe reads', () => {
  const pipe = (world: IommuBench['world']) => {
    const node = debugTree(world).child('trace_pipe')
    assert.ok(node && node.kind === 'file')
    return node.open('read')
  }

  it('hand out whole lines that fit, in order, none lost or repeated', async () => {
    const t = new IommuBench()
    const f = pipe(t.world)
    for (let i = 1; i <= 3; i++) t.world.trace.emit('test', `line ${i}`)
    const first = (await f.read(0, 45)).toString()
    assert.match(first, /^\[\s+\d+\]\s+\d+\.\d{6} test: line 1\n$/)
    const rest = (await f.read(0, 4096)).toString()
    assert.deepEqual(rest.trim().split('\n').map((l) => l.replace(/^\[\s*\d+\]\s+\d+\.\d{6} /, '')), ['test: line 2', 'test: line 3'])
    f.release()
  })

  it('a read with nothing new waits for the next line; release ends a wait with EOF', async () => {
    const t = new IommuBench()
    const f = pipe(t.world)
    const waiting = f.read(0, 4096)
    assert.ok(waiting instanceof Promise)
    t.world.trace.emit('test', 'late')
    assert.match((await waiting).toString(), /test: late\n$/)
    const second = f.read(0, 4096)
    f.release()
    assert.equal((await second).length, 0)
  })
})
