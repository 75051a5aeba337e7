/**
 * The IOAS world as an outside client checks it against the kernel: a C
 * program (test/c/conform-ioas.c) that declares its own structs from the
 * uAPI and names, for each check, the kernel's exact errno or out value. Run
 * under the shim and with real ioctl()s (exec --namespace), every check it
 * names must print "NAME: ok", and the two runs print the same.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { iommufs, makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const SRC = path.join(PACKAGE_ROOT, 'test', 'c', 'conform-ioas.c')

/** Every check the program names (expect("NAME", ...) / expect_u64("NAME", ...)), each once. */
async function checkNames(): Promise<string[]> {
  const src = await fsp.readFile(SRC, 'utf8')
  const names = [...src.matchAll(/\bexpect(?:_u64)?\("([a-z0-9_]+)"/g)].map((m) => m[1])
  assert.equal(new Set(names).size, names.length, 'each check has its own name')
  return names
}

describe('IOAS conformance: the uAPI as an outside client checks it', function () {
  let dir: string
  let bin: string
  let want: string[]
  before(async () => {
    dir = await makeTempDir()
    bin = path.join(dir, 'conform-ioas')
    const cc = await sh(`gcc -Wall -Wextra -Werror -o ${bin} ${SRC}`)
    assert.equal(cc.code, 0, cc.stderr)
    want = (await checkNames()).map((n) => `${n}: ok`).sort()
    assert.ok(want.length > 250, `${want.length} checks`)
  })
  after(() => fsp.rm(dir, { recursive: true, force: true }))

  it('every check answers as the kernel does, under the shim and with real ioctl()s (exec --namespace), the same in both', async () => {
    await withMount(async (m) => {
      const shim = await iommufs(['exec', '--mount', m.dir, '--', bin])
      assert.equal(shim.code, 0, shim.stdout + shim.stderr)
      const lines = shim.stdout.trim().split('\n')
      assert.deepEqual([...lines].sort(), want)
      const ns = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', bin])
      assert.equal(ns.code, 0, ns.stdout + ns.stderr)
      assert.deepEqual(ns.stdout.trim().split('\n'), lines)
    })
  })
})
