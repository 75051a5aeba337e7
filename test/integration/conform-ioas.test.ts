/**
 * The IOAS world as an outside client checks it against the kernel: a C
 * program (test/c/conform-ioas.c) that declares its own structs from the
 * uAPI and names, for each check, the kernel's exact errno or out value. Run
 * under the shim and with real ioctl()s (exec --namespace), every check it
 * names must print "NAME: ok", and the two runs print the same.
 */
import { strict as assert } from 'node:assert'
import { conformProgram } from '../helpers/conform'

describe('IOAS conformance: the uAPI as an outside client checks it', function () {
  conformProgram('ioas', 'every check answers as the kernel does, under the shim and with real ioctl()s (exec --namespace), the same in both', (lines, src) => {
    // every check the program names (expect("NAME", ...) / expect_u64("NAME", ...)), each once
    const names = [...src.matchAll(/\bexpect(?:_u64)?\("([a-z0-9_]+)"/g)].map((m) => m[1])
    assert.equal(new Set(names).size, names.length, 'each check has its own name')
    const want = names.map((n) => `${n}: ok`).sort()
    assert.ok(want.length > 250, `${want.length} checks`)
    assert.deepEqual([...lines].sort(), want)
  })
})
