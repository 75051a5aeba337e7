import { strict as assert } from 'node:assert'
import { RingIndex } from '../../src/hw/ring'

/**
 * The queue index arithmetic of SMMUv3 queues and the ring invalidation form:
 * `bits` index bits, the wrap flag at bit `bits`.
 */
describe('RingIndex', () => {
  it('refuses index bits outside 1..31', () => {
    for (const bad of [0, 32, -1, 1.5, NaN]) assert.throws(() => new RingIndex(bad), RangeError, String(bad))
    assert.equal(new RingIndex(31).size, 2 ** 31)
    assert.equal(new RingIndex(31).mask, 2 ** 32 - 1)
  })

  it('prints indexes as 8 hex digits', () => {
    assert.equal(RingIndex.hex(0x11), '0x00000011')
    assert.equal(RingIndex.hex(0x7f00000f), '0x7f00000f')
  })

  for (let bits = 1; bits <= 20; bits++) {
    describe(`${bits} index bit${bits === 1 ? '' : 's'}`, () => {
      const r = new RingIndex(bits)
      const size = 2 ** bits
      const wrap = size
      /** Positions worth checking: both ends of both laps and the middle. */
      const spots = [...new Set([0, 1, size >> 1, size - 1, wrap, wrap + 1, wrap + (size >> 1), 2 * size - 1])]

      it(`has ${size} slots, the wrap flag at 0x${wrap.toString(16)}, mask 0x${(2 * size - 1).toString(16)}`, () => {
        assert.equal(r.size, size)
        assert.equal(r.wrapBit, wrap)
        assert.equal(r.mask, 2 * size - 1)
      })

      it('empty: PROD == CONS, at every index and either wrap flag', () => {
        for (const p of spots) {
          assert.equal(r.empty(p, p), true, `0x${p.toString(16)}`)
          assert.equal(r.full(p, p), false, `0x${p.toString(16)}`)
          assert.equal(r.count(p, p), 0, `0x${p.toString(16)}`)
        }
      })

      it('full: the same index with the other wrap flag', () => {
        for (const cons of spots) {
          const prod = cons ^ wrap
          assert.equal(r.full(prod, cons), true, `prod 0x${prod.toString(16)} cons 0x${cons.toString(16)}`)
          assert.equal(r.empty(prod, cons), false)
          assert.equal(r.count(prod, cons), size)
          assert.equal(r.index(prod), r.index(cons))
          assert.notEqual(r.wrap(prod), r.wrap(cons))
        }
        // one short of full is neither full nor empty
        if (size > 1) {
          assert.equal(r.full(wrap - 1, 0), false)
          assert.equal(r.count(wrap - 1, 0), size - 1)
          assert.equal(r.full(0, 1), false)
          assert.equal(r.count(0, 1), 2 * size - 1) // PROD behind CONS: an inconsistent pair (> size)
        }
      })

      it('next() counts through both laps, toggling the wrap flag at the end of each', () => {
        assert.equal(r.next(size - 1), wrap, 'the last slot of lap 0 moves to slot 0 with the wrap flag set')
        assert.equal(r.next(2 * size - 1), 0, 'the last slot of lap 1 moves to slot 0 with the wrap flag clear')
        let v = 0
        let bad = ''
        for (let i = 1; i <= 2 * size && !bad; i++) {
          v = r.next(v)
          const wantIndex = i % size
          const wantWrap = Math.floor(i / size) % 2 === 1
          if (r.index(v) !== wantIndex || r.wrap(v) !== wantWrap || !r.valid(v)) bad = `step ${i}: 0x${v.toString(16)}`
        }
        assert.equal(bad, '')
        assert.equal(v, 0, 'two laps come back to 0')
      })

      it('count(prod, cons) is the number of entries from CONS to PROD, across the wrap', () => {
        for (const cons of spots) {
          for (const k of [0, 1, size >> 1, size - 1, size]) {
            const prod = (cons + k) % (2 * size)
            assert.equal(r.count(prod, cons), k, `cons 0x${cons.toString(16)} + ${k}`)
          }
        }
      })

      it('valid() takes the index bits and the wrap flag, and nothing above', () => {
        assert.equal(r.valid(0), true)
        assert.equal(r.valid(2 * size - 1), true)
        assert.equal(r.valid(wrap), true)
        for (let b = bits + 1; b <= 31; b++) {
          assert.equal(r.valid(2 ** b), false, `bit ${b}`)
          assert.equal(r.valid(2 ** b + 1), false, `bit ${b} + 1`)
        }
        assert.equal(r.valid(2 * size), false)
        assert.equal(r.valid(0x7f000000 | 1), false, 'CONS.ERR bits are not index bits')
        assert.equal(r.valid(-1), false)
        assert.equal(r.valid(0.5), false)
      })
    })
  }
})
