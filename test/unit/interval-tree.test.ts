/**
 * The interval tree behind IOAS mappings, against a plain sorted list doing
 * the same operations by brute force: random inserts, removals, overlap
 * queries and first-fit hole searches (with alignment and windows).
 */
import { strict as assert } from 'node:assert'
import { rng } from '../helpers/rng'
import { IntervalTree } from '../../src/util/interval-tree'

interface Iv {
  start: bigint
  last: bigint
}

function naiveHole(list: Iv[], length: bigint, align: bigint, lo: bigint, hi: bigint): bigint | undefined {
  for (let s = ((lo + align - 1n) / align) * align; s + length - 1n <= hi; s += align) {
    if (!list.some((iv) => iv.start <= s + length - 1n && s <= iv.last)) return s
  }
  return undefined
}

describe('IntervalTree', () => {
  for (const seed of [1, 2, 3, 42, 1234]) {
    it(`agrees with a brute-force list over 3000 random operations (seed ${seed})`, () => {
      const r = rng(seed)
      const tree = new IntervalTree<Iv>()
      let list: Iv[] = []
      for (let op = 0; op < 3000; op++) {
        const k = r(10)
        if (k < 5) {
          const start = BigInt(r(2000))
          const iv = { start, last: start + BigInt(r(8)) }
          if (!list.some((o) => o.start <= iv.last && iv.start <= o.last)) {
            tree.insert(iv.start, iv.last, iv)
            list.push(iv)
          }
        } else if (k < 7 && list.length) {
          const victim = list[r(list.length)]
          assert.equal(tree.remove(victim.start), victim)
          list = list.filter((o) => o !== victim)
        } else if (k < 9) {
          const lo = BigInt(r(2000))
          const hi = lo + BigInt(r(50))
          const want = list.filter((o) => o.start <= hi && lo <= o.last).sort((a, b) => Number(a.start - b.start))
          assert.deepEqual(tree.overlapping(lo, hi), want)
          assert.equal(tree.firstOverlapping(lo, hi), want[0])
        } else {
          const length = BigInt(1 + r(6))
          const align = [1n, 2n, 4n, 8n][r(4)]
          const lo = BigInt(r(1500))
          const hi = lo + BigInt(r(600))
          assert.equal(tree.firstHole(length, align, lo, hi), naiveHole(list, length, align, lo, hi), `hole of ${length} aligned ${align} in ${lo}-${hi}`)
        }
        assert.equal(tree.size, list.length)
      }
      assert.deepEqual(tree.values(), [...list].sort((a, b) => Number(a.start - b.start)))
    })
  }

  it('works at the ends of the u64 space', () => {
    const max = (1n << 64n) - 1n
    const tree = new IntervalTree<string>()
    tree.insert(max - 0xfffn, max, 'top')
    tree.insert(0n, 0xfffn, 'bottom')
    assert.equal(tree.firstHole(0x1000n, 0x1000n, 0n, max), 0x1000n)
    assert.equal(tree.firstHole(0x1000n, 0x1000n, max - 0x1fffn, max), max - 0x1fffn)
    assert.equal(tree.firstHole(0x1000n, 0x1000n, max - 0xfffn, max), undefined)
    assert.deepEqual(tree.overlapping(max, max), ['top'])
  })
})
