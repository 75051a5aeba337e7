/**
 * A short pass of the fuzzer (test/fuzz/fuzz.ts) on every target: the text
 * and frame codecs and the dispatcher in-process, a real mount, and random
 * ioctl()s through the shim and as real ones under exec --namespace. Fixed seeds, so a failure reproduces with
 * `node dist/test/fuzz/fuzz.js --seed N`. `make fuzz` runs a longer pass.
 */
import { strict as assert } from 'node:assert'
import { fuzzInProcess, fuzzMount, fuzzShim } from '../fuzz/fuzz'

const FAR = Number.MAX_SAFE_INTEGER

describe('fuzzer, short pass', function () {
  this.timeout(120000)

  for (const [i, target] of (['text', 'frame', 'ioctl'] as const).entries()) {
    it(`${target}: 1500 inputs in-process, each reply well formed, no handler bug, refusals change nothing`, () => {
      assert.equal(fuzzInProcess(target, 100 + i, 1500, FAR), 1500)
    })
  }

  it('mount: 300 lines and frames on dev/iommu through FUSE; refusals leave the context as the mount shows it', async () => {
    assert.equal(await fuzzMount(103, 300, FAR), 300)
  })

  it('shim: 500 random ioctl()s from a C program; each returns 0 or -1 with an errno, failures change nothing', async () => {
    assert.equal(await fuzzShim(104, 500, 60), 500)
  })

  it('namespace: the same program\'s 500 ioctl()s as real ones under exec --namespace\'s supervisor', async () => {
    assert.equal(await fuzzShim(105, 500, 60, true), 500)
  })
})
