/**
 * poll() on the queue files, at the file layer: a vEVENTQ's and a fault
 * queue's open file is readable exactly while a record waits, and a waiter
 * registered with whenReadable hears of the next record once.
 */
import { strict as assert } from 'node:assert'
import { IommuBench } from '../helpers/iommufd'
import { debugTree } from '../../src/fs/debug-tree'
import { DirNode, FileNode, OpenFile } from '../../src/fs/nodes'
import { Fault } from '../../src/iommufd/eventq'
import { Veventq } from '../../src/iommufd/veventq'

function openQueue(t: IommuBench, id: number): { node: FileNode; file: OpenFile } {
  let n = debugTree(t.world) as DirNode
  const o = t.ctx.objects.find(id)!
  for (const part of [String(t.ctx.id), `${o.id}.${o.type}`]) n = n.child(part) as DirNode
  const node = n.child('queue') as FileNode
  return { node, file: node.open('readwrite') }
}

describe('queue files answer poll()', () => {
  it('a fault queue: readable while a page request waits; a waiter is called once', () => {
    const t = new IommuBench()
    const id = t.id('FAULT_QUEUE_ALLOC', 'out_fault_id')
    const fault = t.ctx.objects.find(id) as Fault
    const { file } = openQueue(t, id)
    assert.equal(file.readable!(), false)
    let woken = 0
    file.whenReadable!(() => woken++)
    fault.report({ devId: 1, pasid: 0, flags: 2, grpid: 1, perm: 1, addr: 0x1000n })
    fault.report({ devId: 1, pasid: 0, flags: 2, grpid: 2, perm: 1, addr: 0x2000n })
    assert.equal(woken, 1)
    assert.equal(file.readable!(), true)
    assert.equal((file.read(0, 80) as Buffer).length, 80)
    assert.equal(file.readable!(), false)
    // a cancelled waiter hears nothing
    const cancel = file.whenReadable!(() => woken++)
    cancel()
    fault.report({ devId: 1, pasid: 0, flags: 2, grpid: 3, perm: 1, addr: 0x3000n })
    assert.equal(woken, 1)
  })

  it('a vEVENTQ: readable while a record waits; its file is a stream (no position)', () => {
    const t = new IommuBench()
    const dev = t.bind('0000:00:01.0')
    const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
    const s2 = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${s2}`, 'out_viommu_id')
    const id = t.id(`VEVENTQ_ALLOC viommu_id=${viommu} type=SELFTEST veventq_depth=4`, 'out_veventq_id')
    const q = t.ctx.objects.find(id) as Veventq
    const { node, file } = openQueue(t, id)
    assert.equal(node.stream, true)
    assert.equal(file.readable!(), false)
    let woken = 0
    file.whenReadable!(() => woken++)
    q.report(Buffer.from([1, 0, 0, 0]))
    assert.equal(woken, 1)
    assert.equal(file.readable!(), true)
    assert.equal((file.read(0, 4096) as Buffer).toString('hex'), '000000000000000001000000')
    assert.equal(file.readable!(), false)
  })
})
