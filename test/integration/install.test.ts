import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { pythonModule } from '../../src/cli/python'
import { iommufs, makeTempDir, PACKAGE_ROOT, run } from '../helpers/cli'

const NO_PYC = { PYTHONDONTWRITEBYTECODE: '1' }

describe('C and Python users', () => {
  it('make install PREFIX=DIR: headers, shim, command, pkg-config; a C example builds with pkg-config and runs under the installed iommufs', async function () {
    this.timeout(180000)
    const prefix = await makeTempDir()
    try {
      const inst = await run('make', ['--no-print-directory', '-C', PACKAGE_ROOT, 'install', `PREFIX=${prefix}`])
      assert.equal(inst.code, 0, inst.stdout + inst.stderr)
      for (const f of ['include/iommufs/iommufd.h', 'include/iommufs/iommufs-frames.h', 'lib/libiommufs-shim.so', 'bin/iommufs', 'lib/pkgconfig/iommufs.pc', 'lib/iommufs/python/iommufs.py']) {
        await fsp.access(path.join(prefix, f))
      }
      const env = { PKG_CONFIG_PATH: path.join(prefix, 'lib', 'pkgconfig') }
      const flags = await run('pkg-config', ['--cflags', '--libs', 'iommufs'], { env })
      assert.equal(flags.code, 0, flags.stderr)
      assert.equal(flags.stdout.trim(), `-I${prefix}/include/iommufs`)
      const shim = await run('pkg-config', ['--variable=shim', 'iommufs'], { env })
      assert.equal(shim.stdout.trim(), `${prefix}/lib/libiommufs-shim.so`)

      const bin = path.join(prefix, 'nested-smmuv3')
      const cc = await run('bash', ['-c', `gcc -O2 -Wall -Wextra $(pkg-config --cflags --libs iommufs) -o ${bin} ${PACKAGE_ROOT}/examples/c/nested-smmuv3.c`], { env })
      assert.equal(cc.code, 0, cc.stderr)
      const r = await run(path.join(prefix, 'bin', 'iommufs'), ['run', '--', bin], { cwd: prefix })
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^IOMMU_VDEVICE_ALLOC: ok out_vdevice_id=\d+ virt_id=0x10$/m)

      const py = await run(path.join(prefix, 'bin', 'iommufs'), ['run', '--', 'python3', '-c', 'import iommufs; print(iommufs.Iommufd().request("IOAS_ALLOC"))'], {
        env: { ...NO_PYC, PYTHONPATH: (await run('pkg-config', ['--variable=pythondir', 'iommufs'], { env })).stdout.trim() },
      })
      assert.equal(py.stdout, 'ok out_ioas_id=1\n', py.stderr)
    } finally {
      await fsp.rm(prefix, { recursive: true, force: true })
    }
  })

  it('python/iommufs.py is what `iommufs header --python` generates from the struct table', async () => {
    const r = await iommufs(['header', '--python'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, pythonModule())
    assert.equal(await fsp.readFile(path.join(PACKAGE_ROOT, 'python', 'iommufs.py'), 'utf8'), r.stdout, 'python/iommufs.py is stale: make python')
  })

  it('examples/python/iommufs_demo.py: the generated module issues real ioctls under iommufs run', async () => {
    const r = await iommufs(['run', '--', 'python3', path.join(PACKAGE_ROOT, 'examples', 'python', 'iommufs_demo.py')], { env: NO_PYC })
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.deepEqual(r.stdout.split('\n'), [
      'VFIO_DEVICE_BIND_IOMMUFD: ok out_devid=1',
      'IOMMU_IOAS_ALLOC: ok out_ioas_id=2',
      'IOMMU_HWPT_ALLOC: ok out_hwpt_id=3',
      'IOMMU_GET_HW_INFO: ok out_data_type=ARM_SMMUV3 idr0=0xc4d76bb',
      'IOMMU_DESTROY id=99: err ENOENT',
      'CONTEXT: ok id=1 path=/sys/kernel/debug/iommufd/1',
      '',
    ])
  })

  it('the generated module refuses a field the struct does not have', async () => {
    const r = await run('python3', ['-c', `import sys; sys.path.insert(0, ${JSON.stringify(path.join(PACKAGE_ROOT, 'python'))}); import iommufs; iommufs.iommu_ioas_alloc(nope=1)`], { env: NO_PYC })
    assert.equal(r.code, 1)
    assert.match(r.stderr, /AttributeError: iommu_ioas_alloc has no field nope\n$/)
  })
})
