import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { PACKAGE_ROOT, run } from '../helpers/cli'

describe('the npm package', () => {
  it('ships the library, its types, the header, the shim (source and build), docs and examples; no tests or benches', async function () {
    this.timeout(60000)
    const r = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PACKAGE_ROOT })
    assert.equal(r.code, 0, r.stderr)
    const files: string[] = (JSON.parse(r.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path)
    for (const want of [
      'LICENSE',
      'README.md',
      'package.json',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'dist/include/iommufd.h',
      'dist/ioctl-shim/libiommufs-shim.so',
      'ioctl-shim/iommufs-shim.c',
      'sysfs-schema/topologies/default.yaml',
      'docs/record-replay.md',
      'examples/c/nested-smmuv3.c',
      'examples/api/model.ts',
    ]) {
      assert.ok(files.includes(want), `missing ${want}`)
    }
    assert.deepEqual(files.filter((f) => /^(dist\/)?(test|bench)\/|\.map$|Testing\//.test(f)), [])
  })

  it('package.json: library entry with types, linux only, engines, MIT matching LICENSE', async () => {
    const pkg = JSON.parse(await fsp.readFile(path.join(PACKAGE_ROOT, 'package.json'), 'utf8'))
    assert.deepEqual(pkg.exports['.'], { types: './dist/src/index.d.ts', default: './dist/src/index.js' })
    assert.equal(pkg.types, 'dist/src/index.d.ts')
    assert.deepEqual(pkg.os, ['linux'])
    assert.ok(pkg.engines.node)
    assert.match(pkg.scripts.prepare, /^tsc -p \. && make/)
    assert.equal(pkg.license, 'MIT')
    assert.match(await fsp.readFile(path.join(PACKAGE_ROOT, 'LICENSE'), 'utf8'), /^MIT License\n/)
  })

  it('the API documentation builds from the source comments with no warning (typedoc)', async function () {
    this.timeout(120000)
    const r = await run('npx', ['typedoc', '--emit', 'none'], { cwd: PACKAGE_ROOT })
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.doesNotMatch(r.stdout, /warning/)
  })
})
