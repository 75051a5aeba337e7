/**
 * Real ioctl() on dev/iommu and dev/vfio/devices/vfio<N> (FUSE_IOCTL, the
 * libfuse3 backend): a static C program with no shim, the C examples in
 * `iommufs exec --namespace`, and a caller whose memory cannot be read.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import * as sinon from 'sinon'
import { startServer, Server } from '../../src/cli/server'
import { ADDON_PATH } from '../../src/fs/libfuse3-backend'
import { iommufs, lazyUnmount, makeTempDir, PACKAGE_ROOT, run } from '../helpers/cli'
import { TestMount, withMount } from '../helpers/mount'

const REAL_IOCTL = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'real-ioctl')
const C_DIR = path.join(PACKAGE_ROOT, 'dist', 'examples', 'c')

const COMMON = `IOAS_ALLOC: ok out_ioas_id=1
IOAS_ALLOC arg=8: EFAULT
IOAS_ALLOC read-only struct: EFAULT
ioctl _IO(';', 0x7f): ENOTTY
IOAS_ALLOC again: ok out_ioas_id=2
IOAS_ALLOW_IOVAS: ok
IOAS_IOVA_RANGES: ok num_iovas=1 start=0x0 last=0xffffffffffffffff
IOAS_IOVA_RANGES allowed_iovas=16: EFAULT
IOAS_ALLOW_IOVAS from a mount file's page: EFAULT
IOAS_IOVA_RANGES into a mount file's page: EFAULT
IOAS_ALLOW_IOVAS from that page, read: EINVAL
VFIO_DEVICE_BIND_IOMMUFD: ok out_devid=3
VFIO_DEVICE_ATTACH_IOMMUFD_PT: ok pt_id=4
IOAS_MAP of 2 pages: ok iova=0x100000
`
const HWPT = "IOAS_UNMAP: ok\nIOMMU_HWPT_ALLOC, its size 24, at a mapping's end: ok out_hwpt_id=5\n"
// FUSE cannot install a descriptor in the caller, nor stand in for /proc/self/status; exec --namespace's supervisor can
const DIRECT = `${COMMON}/proc/self/status VmPin:\t       0 kB\n${HWPT}IOMMU_TEST_CMD DMABUF_GET: EOPNOTSUPP\n`
const SUPERVISED = `${COMMON}/proc/self/status VmPin:\t       8 kB\n${HWPT}IOMMU_TEST_CMD DMABUF_GET: ok, a descriptor above the node's (yes), close-on-exec yes
IOAS_MAP_FILE of it: ok iova=0x100000
`

const nsExec = (m: TestMount, program: string, args: string[] = []) => iommufs(['exec', '--mount', m.dir, '--namespace', '--', program, ...args])

describe('real ioctl() through FUSE_IOCTL (no shim)', () => {
  it('a static program on the mount paths: IDs, arrays in and out; bad pointers EFAULT and unknown numbers ENOTTY change nothing', async () => {
    await withMount(async (m) => {
      const r = await run(REAL_IOCTL, [m.path('dev/iommu'), m.path('dev/vfio/devices/vfio0')])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(r.stdout, DIRECT)
      const trace = await m.cat('sys/kernel/debug/iommufd/trace')
      assert.match(trace, /ctx1: ioctl IOMMU_IOAS_ALLOC -> ok\n/)
      assert.match(trace, /vfio0: ioctl VFIO_DEVICE_BIND_IOMMUFD -> ok\n/)
    })
  })

  it('exec --namespace: the same program opens /dev/iommu and /dev/vfio/devices/vfio0 themselves, reads the model\'s pins in /proc/self/status, and is handed a DMA-BUF descriptor', async () => {
    await withMount(async (m) => {
      const r = await nsExec(m, REAL_IOCTL)
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(r.stdout, SUPERVISED)
    })
  })

  it('exec --namespace: a static program is handed fault queue descriptors that hold their queue until the last reference goes; its status comes back', async () => {
    await withMount(async (m) => {
      const r = await nsExec(m, path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'ns-descriptors'))
      assert.equal(r.code, 3, r.stdout + r.stderr)
      assert.equal(
        r.stdout,
        `IOMMU_FAULT_QUEUE_ALLOC: ok out_fault_id=1, a descriptor above the node's: yes, close-on-exec: yes
read of the queue: 0
IOMMU_DESTROY of the queue while its descriptor is open: EBUSY
IOMMU_DESTROY of the queue once it is closed: ok
IOMMU_FAULT_QUEUE_ALLOC again: ok out_fault_id=1
IOMMU_DESTROY while a child holds the descriptor: EBUSY
IOMMU_DESTROY once the child is gone: ok
IOMMU_FAULT_QUEUE_ALLOC from a second thread: ok, a descriptor: yes
IOMMU_FAULT_QUEUE_ALLOC on /dev/null: ENOTTY
IOMMU_FAULT_QUEUE_ALLOC arg=8: EFAULT
IOMMU_FAULT_QUEUE_ALLOC into a read-only struct: EFAULT
IOMMU_FAULT_QUEUE_ALLOC after it: ok out_fault_id=2
IOMMU_FAULT_QUEUE_ALLOC flags=1: EOPNOTSUPP
IOMMU_TEST_CMD DMABUF_REVOKE of /dev/null: EINVAL
`,
      )
      assert.equal(r.stderr, '')
    })
  })

  it('exec --namespace: every C example passes with real ioctls and prints what it prints under the shim', async () => {
    await withMount(async (m) => {
      // events: its vEVENTQ's descriptor is installed by the supervisor, and its child reads the model's debugfs
      for (const e of ['nested-smmuv3', 'nested-vtd', 'errors', 'fds', 'threads', 'dma', 'events']) {
        const ns = await nsExec(m, path.join(C_DIR, e))
        const shim = await iommufs(['exec', '--mount', m.dir, '--', path.join(C_DIR, e)])
        assert.equal(ns.code, 0, `${e}: ${ns.stdout}${ns.stderr}`)
        assert.equal(shim.code, 0, `${e}: ${shim.stdout}${shim.stderr}`)
        assert.equal(ns.stdout, shim.stdout, e)
      }
    })
  })

  it('exec --namespace changes nothing outside: /dev/iommu does not appear on the machine; inside, /sys/class has the mount\'s iommu and vfio-dev and the machine\'s other classes', async () => {
    await withMount(async (m) => {
      const inside = await nsExec(m, 'sh', ['-c', 'test -e /dev/iommu && ls /sys/class/iommu /sys/class/vfio-dev && test -e /sys/class/vfio-dev/vfio4/device && ls /sys/class | grep -c .'])
      assert.equal(inside.code, 0, inside.stderr)
      const machineClasses = (await run('sh', ['-c', 'ls /sys/class; for c in iommu vfio-dev; do [ -e /sys/class/$c ] || echo $c; done'])).stdout.split('\n').filter(Boolean).length
      assert.equal(
        inside.stdout,
        `/sys/class/iommu:\ndmar0\nsmmu3.0x0000000009050000\nsmmu3.0x0000000009060000\n\n/sys/class/vfio-dev:\nvfio0\nvfio1\nvfio2\nvfio3\nvfio4\nvfio5\n${machineClasses}\n`,
      )
      const outside = await run('sh', ['-c', 'ls /sys/class/iommu; test -e /dev/iommu; echo $?'])
      assert.ok(!outside.stdout.includes('dmar0'), outside.stdout)
      assert.match(outside.stdout, /(^|\n)1\n$/, 'no /dev/iommu outside')
    })
  })
})

describe('real ioctl() from a process the server cannot read (in-process mount, injected fault)', () => {
  it('EFAULT at once with a trace line naming the process, and the mount keeps serving', async () => {
    const dir = await makeTempDir()
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const addon = require(ADDON_PATH) as { vmRead: (...a: unknown[]) => unknown }
    const stub = sinon.stub(addon, 'vmRead').returns(-1 /* EPERM */)
    let server: Server | undefined
    try {
      server = await startServer({ dir })
      const nodes = [path.join(dir, 'dev/iommu'), path.join(dir, 'dev/vfio/devices/vfio0')]
      const r = await run(REAL_IOCTL, nodes)
      assert.equal(r.code, 1)
      assert.equal(r.stdout, 'IOAS_ALLOC: err EFAULT\n')
      const lines = server.trace.recent().filter((l) => l.includes('cannot read the memory'))
      assert.equal(lines.length, 1, server.trace.recent().join('\n'))
      assert.match(lines[0], /ctx\d+: ioctl IOMMU_IOAS_ALLOC: cannot read the memory of process \d+ \(errno 1\)$/)
      stub.restore()
      assert.equal((await run(REAL_IOCTL, nodes)).stdout, DIRECT)
    } finally {
      stub.restore()
      await server?.stop()
      await lazyUnmount(dir)
      await fsp.rmdir(dir)
    }
  })
})
