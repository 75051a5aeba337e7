/**
 * Close semantics: the kernel destroys an iommufd context (and a VFIO cdev
 * close unbinds its device) before close() returns. FUSE delivers a close to
 * the server after close() has returned, so the shim asks first (RELEASE) on
 * a descriptor's last close, and a shell can do the same, or wait for the state.
 */
import { strict as assert } from 'node:assert'
import { closeSync, open, promises as fsp, write } from 'node:fs'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { startServer, Server } from '../../src/cli/server'
import { iommufs, lazyUnmount, makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const CLOSE_SYNC = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'close-sync')

describe('close semantics', function () {
  this.timeout(60000)

  it('through the shim, the last close() of an iommufd or a VFIO cdev has taken effect when it returns (regression: re-binding right after a close raced the server)', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', CLOSE_SYNC, '300'])
      assert.equal(r.stdout, ['rebind-after-close', 'gone-after-close', 'dup-keeps-context', 'last-dup-closes', 'fork-shares', 'close-range', 'dup2-over'].map((c) => `${c}: ok\n`).join(''), r.stderr)
      assert.equal(r.code, 0)
    })
  })

  it('RELEASE on a descriptor does what its close will, before answering; the descriptor then answers EBADF and its close changes nothing more', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `set -e; cd ${m.dir}
exec 3<>dev/iommu 4<>dev/vfio/devices/vfio0
echo CONTEXT >&3; read -r -u 3 r; id=\${r#ok id=}; id=\${id%% *}
echo "DEVICE_BIND iommufd=$id" >&4; read -r -u 4 r; echo "bind $r"
echo RELEASE >&4; read -r -u 4 r; echo "release-vfio $r"
grep -c device sys/kernel/debug/iommufd/$id/objects || true
echo IOAS_ALLOC >&4; read -r -u 4 r; echo "after $r"
echo RELEASE >&3; read -r -u 3 r; echo "release-iommu $r"
[ -e sys/kernel/debug/iommufd/$id ] && echo present || echo gone
exec 3>&- 4>&-
exec 5<>dev/iommu 6<>dev/vfio/devices/vfio0
echo CONTEXT >&5; read -r -u 5 r; id=\${r#ok id=}; id=\${id%% *}
echo "DEVICE_BIND iommufd=$id" >&6; read -r -u 6 r; echo "rebind $r"`,
      )
      assert.equal(r.code, 0, r.stderr)
      assert.deepEqual(r.stdout.split('\n').slice(0, -1), [
        'bind ok out_devid=1',
        'release-vfio ok',
        '0',
        'after err EBADF vfio0: released (RELEASE was answered); open the file again',
        'release-iommu ok',
        'gone',
        'rebind ok out_devid=1',
      ])
    })
  })

  it('an unmount first serves what the kernel queued before it: a close() made just before is its RELEASE (regression: iommufs run lost the closes of a command that had just exited)', async () => {
    const dir = await makeTempDir()
    let server: Server | undefined
    try {
      server = await startServer({ dir })
      // asynchronous open and write: the server runs on this thread and must answer them
      const fd = await promisify(open)(path.join(dir, 'dev/iommu'), 'r+')
      await promisify(write)(fd, 'IOAS_ALLOC\n')
      const id = /ctx(\d+): IOAS_ALLOC -> ok/.exec(server.trace.recent().join('\n'))?.[1]
      assert.ok(id, server.trace.recent().join('\n'))
      // the RELEASE is queued when close() returns; the unmount follows before the loop polls again
      const trace = server.trace
      closeSync(fd)
      const stopping = server.stop()
      server = undefined
      await stopping
      const lines = trace.recent()
      assert.ok(lines.some((l) => l.endsWith(`ctx${id}: closed: all objects destroyed`)), lines.join('\n'))
    } finally {
      await server?.stop()
      await lazyUnmount(dir)
      await fsp.rmdir(dir)
    }
  })
})
