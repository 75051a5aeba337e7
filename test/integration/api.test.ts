import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { Model, mount, withMount } from '../../src/index'
import { iommufsMountPoints, PACKAGE_ROOT, run } from '../helpers/cli'

describe('the library API (src/index.ts)', () => {
  it('examples/api/model.ts runs without FUSE and prints each step', async () => {
    const r = await run(process.execPath, [path.join(PACKAGE_ROOT, 'dist', 'examples', 'api', 'model.js')])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.stdout.split('\n').slice(0, 8), [
      'machine: 3 IOMMUs, 6 devices',
      'smmu model attribute: 2',
      'bind: ok out_devid=1',
      'ioas: ok out_ioas_id=2',
      'nest parent: ok out_hwpt_id=3',
      'hw info: type=2 idr0=0xc4d76bb',
      'destroy 99: ENOENT id=99: no such object',
      'context 1: 3 objects',
    ])
    assert.match(r.stdout, /^after close: contexts \[\]$/m)
  })

  it('struct requests: out buffers by field name, errors by errno, bad names refused', () => {
    const model = Model.load()
    const ctx = model.openContext()
    assert.equal(ctx.id, 1)
    assert.equal(ctx.debugPath, '/sys/kernel/debug/iommufd/1')
    const ioas = ctx.ioctl('IOMMU_IOAS_ALLOC')
    assert.deepEqual([ioas.errno, ioas.fields.out_ioas_id], [undefined, 1n])
    const ranges = ctx.ioctl('IOAS_IOVA_RANGES', { ioas_id: 1, num_iovas: 2 })
    assert.equal(ranges.errno, undefined, ranges.message)
    assert.equal(ranges.fields.num_iovas, 1n)
    assert.equal(ranges.buffers.allowed_iovas.readBigUInt64LE(8), (1n << 64n) - 1n)
    const range = Buffer.alloc(16)
    range.writeBigUInt64LE(0x1000n, 0)
    range.writeBigUInt64LE(0xfffffn, 8)
    const allow = ctx.ioctl('IOAS_ALLOW_IOVAS', { ioas_id: 1 }, { allowed_iovas: range })
    assert.equal(allow.errno, undefined, allow.message)
    assert.equal(ctx.ioctl('IOAS_ALLOW_IOVAS', { ioas_id: 1 }, { allowed_iovas: Buffer.alloc(16) }).message, 'allowed_iovas[0]: start 0x0 must be below last 0x0')
    assert.equal(ctx.ioctl('IOAS_ALLOC', { flags: 1 }).errno, 'EOPNOTSUPP')
    assert.throws(() => ctx.ioctl('FROB'), { message: 'FROB: not an ioctl iommufs knows' })
    assert.throws(() => ctx.ioctl('IOAS_ALLOC', { nope: 1 }), /nope/)
    assert.throws(() => model.openDevice('0000:99:00.0'), /^Error: 0000:99:00.0: no such PCI device/)
    ctx.close()
    assert.throws(() => ctx.request('IOAS_ALLOC'), { message: 'the node is closed' })
    assert.deepEqual(model.list('/sys/kernel/debug/iommufd').filter((n) => /^\d+$/.test(n)), [])
  })

  it('JSON views beside the text ones: objects.json, the physical queues, trace.json with time and sequence', async () => {
    const model = Model.load()
    const ctx = model.openContext()
    const dev = model.openDevice('0000:00:01.0')
    assert.equal(dev.request(`DEVICE_BIND iommufd=${ctx.id}`), 'ok out_devid=1')
    assert.equal(ctx.request('IOAS_ALLOC'), 'ok out_ioas_id=2')
    assert.equal(ctx.request('HWPT_ALLOC dev_id=1 pt_id=2'), 'ok out_hwpt_id=3')
    const objs = JSON.parse(await model.read(`${ctx.debugPath}/objects.json`))
    assert.equal(objs.context, 1)
    assert.deepEqual(objs.objects.map((o: { id: number; type: string; users: number }) => [o.id, o.type, o.users]), [[1, 'device', 0], [2, 'ioas', 1], [3, 'hwpt_paging', 0]])
    assert.equal(objs.objects[0].info.stream_id, '0x8')
    assert.equal(objs.objects[2].info.ioas, '2')
    assert.ok(model.list(ctx.debugPath).includes('objects.json'))

    const cmdq = JSON.parse(await model.read('/sys/kernel/debug/iommufd/iommu/smmu3.0x0000000009050000/cmdq.json'))
    assert.deepEqual([cmdq.iommu, cmdq.entries, cmdq.commands.length], ['smmu3.0x0000000009050000', 256, cmdq.issued])
    const qi = JSON.parse(await model.read('/sys/kernel/debug/iommufd/iommu/dmar0/invalidation_queue.json'))
    assert.deepEqual([qi.iommu, qi.head, qi.tail, qi.descriptors], ['dmar0', 0, 0, []])

    const trace = JSON.parse(await model.read('/sys/kernel/debug/iommufd/trace.json')) as { seq: number; time: number; uptime: number; tag: string; message: string }[]
    const last = trace[trace.length - 1]
    assert.deepEqual([last.tag, last.message], ['ctx1', 'HWPT_ALLOC dev_id=1 pt_id=2 -> ok out_hwpt_id=3'])
    assert.ok(Math.abs(last.time - Date.now()) < 60000 && last.uptime >= 0)
    assert.deepEqual(trace.map((t) => t.seq), trace.map((_, i) => trace[0].seq + i))
    const text = (await model.read('/sys/kernel/debug/iommufd/trace')).trimEnd().split('\n')
    assert.equal(text[text.length - 1], `[${String(last.seq).padStart(6)}] ${last.uptime.toFixed(6).padStart(12)} ctx1: HWPT_ALLOC dev_id=1 pt_id=2 -> ok out_hwpt_id=3`)
    ctx.close()
    dev.close()
  })

  it('mount(): a fresh temporary mount served in-process, read asynchronously; stop() unmounts and removes it', async () => {
    const m = await mount()
    try {
      assert.ok((await iommufsMountPoints()).includes(m.dir))
      assert.equal(await fsp.readFile(path.join(m.dir, 'sys/class/iommu/dmar0/intel-vtd/model'), 'utf8'), '1\n')
      assert.equal(m.machine.devices[1].vfio, '/dev/vfio/devices/vfio1')
    } finally {
      await m.stop()
    }
    assert.equal((await iommufsMountPoints()).includes(m.dir), false)
    await assert.rejects(fsp.stat(m.dir), { code: 'ENOENT' })
    // withMount unmounts when the callback throws
    let dir = ''
    await assert.rejects(
      withMount(async (w) => {
        dir = w.dir
        throw new Error('inside')
      }),
      { message: 'inside' },
    )
    assert.equal((await iommufsMountPoints()).includes(dir), false)
  })
})
