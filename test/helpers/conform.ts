import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { iommufs, makeTempDir, PACKAGE_ROOT } from './cli'
import { sh, withMount } from './mount'

/**
 * The two tests of an outside conformance check, test/shell/conform-NAME.sh:
 * on a real mount every line is "NAME: ok" (each of `wants` among them) and the
 * summary says 0 failed; on a directory that is not a mount it exits 2 naming
 * the setup step.
 */
export function conformSuite(name: string, title: string, wants: string[]): void {
  const script = path.join(PACKAGE_ROOT, 'test', 'shell', `conform-${name}.sh`)

  it(`every check passes on a real mount: ${title}`, async () => {
    await withMount(async (m) => {
      const r = await sh(`bash ${script} ${m.dir}`)
      assert.equal(r.stderr, '')
      const lines = r.stdout.trim().split('\n')
      assert.deepEqual(lines.filter((l) => !l.endsWith(': ok') && !l.startsWith('#')), [])
      assert.equal(lines[lines.length - 1], `# ${lines.length - 1} checks, 0 failed`)
      assert.equal(r.code, 0)
      for (const want of wants) assert.ok(lines.includes(want), `missing: ${want}\n${r.stdout}`)
    })
  })

  it('exits 2 naming the setup step on a directory that is not a mount', async () => {
    const dir = await makeTempDir()
    try {
      const r = await sh(`bash ${script} ${dir}`)
      assert.equal(r.code, 2)
      assert.match(r.stdout, /^setup: FAIL got open dev\/iommu want success$/m)
    } finally {
      await fsp.rmdir(dir)
    }
  })
}

/**
 * The test of an outside conformance program, test/c/conform-NAME.c: built
 * with gcc, then run on one mount under the shim and with real ioctl()s
 * (exec --namespace). Both runs exit 0 and print the same lines, which
 * `check` asserts.
 */
export function conformProgram(name: string, title: string, check: (lines: string[], src: string) => void): void {
  const src = path.join(PACKAGE_ROOT, 'test', 'c', `conform-${name}.c`)
  let dir: string
  let bin: string
  before(async () => {
    dir = await makeTempDir()
    bin = path.join(dir, `conform-${name}`)
    const cc = await sh(`gcc -Wall -Wextra -Werror -o ${bin} ${src}`)
    assert.equal(cc.code, 0, cc.stderr)
  })
  after(() => fsp.rm(dir, { recursive: true, force: true }))

  it(title, async () => {
    await withMount(async (m) => {
      const shim = await iommufs(['exec', '--mount', m.dir, '--', bin])
      assert.equal(shim.code, 0, shim.stdout + shim.stderr)
      check(shim.stdout.trim().split('\n'), await fsp.readFile(src, 'utf8'))
      const ns = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', bin])
      assert.equal(ns.code, 0, ns.stdout + ns.stderr)
      assert.equal(ns.stdout, shim.stdout)
    })
  })
}
