import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import * as sinon from 'sinon'
import { startServer, Server } from '../../src/cli/server'
import { TreeOps } from '../../src/fs/ops'
import { eventually, iommufsMountPoints, lazyUnmount, makeTempDir, ServerProcess, spawnServer, waitExit } from '../helpers/cli'
import { sh } from '../helpers/mount'

const MODEL = 'sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3/model'

/** fuse.iommufs mounts on `dir` in /proc/mounts as the kernel sees it (not this process's view through a cache). */
async function inProcMounts(dir: string): Promise<number> {
  const text = await fsp.readFile('/proc/mounts', 'utf8')
  return text.split('\n').filter((l) => l.split(' ')[1] === dir && l.split(' ')[2] === 'fuse.iommufs').length
}

/** The sessions below the root: sysfs at sys/, debugfs at sys/kernel/debug (libfuse3 backend). */
const NESTED = ['sys', 'sys/kernel/debug']
async function nestedMounts(dir: string): Promise<number[]> {
  return Promise.all(NESTED.map((n) => inProcMounts(`${dir}/${n}`)))
}

describe('server lifecycle', () => {
  let dir: string
  let servers: ServerProcess[]
  beforeEach(async () => {
    dir = await makeTempDir()
    servers = []
  })
  afterEach(async () => {
    for (const s of servers) await s.stop()
    await lazyUnmount(dir)
    await fsp.rmdir(dir)
  })
  const serve = async (): Promise<ServerProcess> => {
    const s = await spawnServer(dir)
    servers.push(s)
    return s
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: unmounts and exits 0`, async () => {
      const srv = await serve()
      assert.equal(await inProcMounts(dir), 1)
      assert.deepEqual(await nestedMounts(dir), [1, 1])
      assert.equal((await sh(`cat ${dir}/${MODEL}`)).stdout, '2\n')
      srv.child.kill(signal)
      const exit = await waitExit(srv.exited, 5000)
      assert.deepEqual(exit, { code: 0, signal: null })
      assert.equal(await inProcMounts(dir), 0)
      assert.deepEqual(await nestedMounts(dir), [0, 0])
      assert.deepEqual(await fsp.readdir(dir), [])
    })
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} under load (4 busy clients): unmounts and exits 0`, async () => {
      const srv = await serve()
      // two readers (feature and dynamic files, the trace), two transaction loops
      const loops = [
        `cat ${dir}/${MODEL} >/dev/null; echo started; while :; do cat ${dir}/${MODEL} ${dir}/sys/class/iommu/dmar0/intel-iommu/domains_used; done`,
        `cat ${dir}/sys/kernel/debug/iommufd/trace >/dev/null; echo started; while :; do cat ${dir}/sys/kernel/debug/iommufd/trace; done`,
        `exec 3<>${dir}/dev/iommu; echo IOAS_ALLOC >&3; read -u 3 r; echo started; while :; do echo IOAS_ALLOC >&3; read -u 3 r; done`,
        `exec 3<>${dir}/dev/iommu; echo CONTEXT >&3; read -u 3 r; echo started; while :; do echo CONTEXT >&3; read -u 3 r; done`,
      ]
      // each client says "started" once its first request was answered
      const clients = loops.map((l) => spawn('bash', ['-c', l], { stdio: ['ignore', 'pipe', 'ignore'] }))
      try {
        await Promise.all(clients.map((c) => new Promise((resolve) => c.stdout!.once('data', resolve))))
        srv.child.kill(signal)
        const exit = await waitExit(srv.exited, 5000)
        assert.deepEqual(exit, { code: 0, signal: null })
        assert.equal(await inProcMounts(dir), 0)
        assert.deepEqual(await nestedMounts(dir), [0, 0])
      } finally {
        for (const c of clients) c.kill('SIGKILL')
      }
    })
  }

  it('kill -9 leaves a stale mount; the next iommufs mount recovers it and serves', async () => {
    const first = await serve()
    first.child.kill('SIGKILL')
    assert.deepEqual(await waitExit(first.exited, 5000), { code: null, signal: 'SIGKILL' })

    assert.equal(await inProcMounts(dir), 1, 'the mount outlives its server')
    assert.deepEqual(await nestedMounts(dir), [1, 1], 'so do the sessions below it')
    const stale = await sh(`cat ${dir}/${MODEL}`)
    assert.equal(stale.code, 1)
    assert.match(stale.stderr, /: Transport endpoint is not connected\n$/)

    const second = await serve()
    assert.notEqual(second.pid, first.pid)
    const r = await sh(`cat ${dir}/${MODEL} && head -n 1 ${dir}/sys/kernel/debug/iommufd/server`)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `2\npid ${second.pid}\n`)
    assert.equal(await inProcMounts(dir), 1, 'the stale mount was replaced, not stacked')
    assert.deepEqual(await nestedMounts(dir), [1, 1], 'and the sessions below it')
  })

  it('an unmount from outside (umount -l) makes the server exit', async () => {
    const srv = await serve()
    const u = await sh(`umount -l ${dir}`)
    assert.equal(u.code, 0, u.stderr)
    const exit = await waitExit(srv.exited, 5000)
    assert.deepEqual(exit, { code: 0, signal: null })
    assert.deepEqual([await inProcMounts(dir), ...(await nestedMounts(dir))], [0, 0, 0])
  })

  it('an unmount of the sysfs session alone (umount -l DIR/sys) ends the whole mount: the server unmounts the rest and exits', async () => {
    const srv = await serve()
    const u = await sh(`umount -l ${dir}/sys`)
    assert.equal(u.code, 0, u.stderr)
    const exit = await waitExit(srv.exited, 5000)
    assert.deepEqual(exit, { code: 0, signal: null })
    assert.deepEqual([await inProcMounts(dir), ...(await nestedMounts(dir))], [0, 0, 0])
  })
})

describe('a handler that throws (in-process mount)', () => {
  let dir: string
  let server: Server | undefined
  let stub: sinon.SinonStub | undefined

  beforeEach(async () => {
    dir = await makeTempDir()
  })
  afterEach(async () => {
    stub?.restore()
    stub = undefined
    try {
      await server?.stop()
    } finally {
      server = undefined
      await lazyUnmount(dir)
      await fsp.rmdir(dir)
    }
  })

  // Only asynchronous access from here on: this process serves the mount.
  it('answers EIO for that call, traces a "bug" line, and keeps serving', async () => {
    const broken = `/${MODEL}`
    const open = TreeOps.prototype.open
    stub = sinon.stub(TreeOps.prototype, 'open').callsFake(function (this: TreeOps, p: string, flags: number) {
      if (p === broken) throw new TypeError('injected fault')
      return open.call(this, p, flags)
    })
    server = await startServer({ dir })
    assert.ok((await iommufsMountPoints()).includes(dir))

    const r = await sh(`cat ${dir}${broken}`)
    assert.equal(r.code, 1)
    assert.equal(r.stderr.replace(/'/g, ''), `cat: ${dir}${broken}: Input/output error\n`)

    const bugs = server.trace.recent().filter((l) => / bug: /.test(l))
    assert.equal(bugs.length, 1, server.trace.recent().join('\n'))
    assert.match(bugs[0], new RegExp(`bug: open ${broken.replace(/\./g, '\\.')}: TypeError: injected fault`))

    const ok = await sh(`cat ${dir}/sys/class/iommu/dmar0/intel-vtd/model ${dir}/sys/class/iommu/smmu3.0x0000000009060000/arm-smmu-v3/model`)
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(ok.stdout, '1\n2\n')
    assert.ok(stub.calledWith(broken))

    stub.restore()
    stub = undefined
    assert.equal((await sh(`cat ${dir}${broken}`)).stdout, '2\n', 'the same file reads once the fault is gone')
    const srv = server
    await eventually(async () => srv.ops.openHandles === 0, 'every descriptor released')
  })

  it('a read that throws is EIO too, and the descriptor is still released', async () => {
    const broken = '/sys/class/iommu/dmar0/intel-iommu/cap'
    const open = TreeOps.prototype.open
    const read = TreeOps.prototype.read
    const brokenHandles = new Set<number>()
    const stubs = [
      sinon.stub(TreeOps.prototype, 'open').callsFake(function (this: TreeOps, p: string, flags: number) {
        const fh = open.call(this, p, flags)
        if (p === broken) brokenHandles.add(fh)
        return fh
      }),
      sinon.stub(TreeOps.prototype, 'read').callsFake(function (this: TreeOps, fh: number, pos: number, len: number) {
        if (brokenHandles.has(fh)) throw new RangeError('injected read fault')
        return read.call(this, fh, pos, len)
      }),
    ]
    try {
      server = await startServer({ dir })
      const srv = server
      const r = await sh(`cat ${dir}${broken}`)
      assert.equal(r.code, 1)
      assert.match(r.stderr, /: Input\/output error\n$/)
      // sysfs is read with no OPEN: the server takes the text through descriptors of its own, more than one
      assert.ok(brokenHandles.size >= 1)
      const bugs = srv.trace.recent().filter((l) => / bug: /.test(l))
      assert.deepEqual(bugs.map((l) => l.includes(`bug: read ${broken}: RangeError: injected read fault`)), [true], srv.trace.recent().join('\n'))
      assert.equal((await sh(`cat ${dir}/sys/class/iommu/dmar0/intel-vtd/model`)).stdout, '1\n')
      // release reaches the server after cat has exited
      await eventually(async () => srv.ops.openHandles === 0, 'every descriptor released')
    } finally {
      for (const s of stubs) s.restore()
    }
  })
})
