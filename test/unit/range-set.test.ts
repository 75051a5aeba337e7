/**
 * The range set behind an IOAS's free and reserved IOVAs, and the IOAS's
 * IOVA rules on top of the interval structures, each against a brute-force
 * model over plain lists: random adds, removals and first-fit searches; then
 * random IOAS_MAP (placed and fixed), IOAS_UNMAP, ADD_RESERVED and
 * IOAS_ALLOW_IOVAS, whose every result (IOVA or errno) and every IOVA_RANGES
 * answer must be the model's.
 */
import { strict as assert } from 'node:assert'
import { rng } from '../helpers/rng'
import { RangeSet, subtractSorted } from '../../src/util/range-set'
import { Ioas, MapFlag, PAGE_SIZE, ULONG_MAX } from '../../src/iommufd/ioas'
import { ErrnoError } from '../../src/util/errno'

interface R {
  start: bigint
  last: bigint
}

/** A set of small addresses as a bitmap: the brute-force model. */
class Bits {
  readonly on = new Set<bigint>()
  add(s: bigint, l: bigint): void {
    for (let a = s; a <= l; a++) this.on.add(a)
  }
  remove(s: bigint, l: bigint): void {
    for (let a = s; a <= l; a++) this.on.delete(a)
  }
  ranges(): R[] {
    const out: R[] = []
    for (const a of [...this.on].sort((x, y) => (x < y ? -1 : 1))) {
      const last = out[out.length - 1]
      if (last && last.last + 1n === a) last.last = a
      else out.push({ start: a, last: a })
    }
    return out
  }
  fit(length: bigint, align: bigint, lo: bigint, hi: bigint): bigint | undefined {
    for (let s = ((lo + align - 1n) / align) * align; s + length - 1n <= hi; s += align) {
      let ok = true
      for (let a = s; a < s + length && ok; a++) ok = this.on.has(a)
      if (ok) return s
    }
    return undefined
  }
}

describe('RangeSet', () => {
  for (const seed of [7, 8, 99]) {
    it(`agrees with a bitmap over 2000 random adds, removals and first fits (seed ${seed})`, () => {
      const r = rng(seed)
      const set = new RangeSet()
      const bits = new Bits()
      for (let op = 0; op < 2000; op++) {
        const s = BigInt(r(600))
        const l = s + BigInt(r(20))
        const k = r(10)
        if (k < 4) {
          set.add(s, l)
          bits.add(s, l)
        } else if (k < 7) {
          set.remove(s, l)
          bits.remove(s, l)
        } else {
          const length = BigInt(1 + r(8))
          const align = [1n, 2n, 4n, 8n][r(4)]
          const hi = s + BigInt(r(300))
          assert.equal(set.firstFit(length, align, s, hi), bits.fit(length, align, s, hi), `fit ${length}/${align} in ${s}-${hi}`)
        }
        assert.deepEqual(set.ranges(), bits.ranges())
      }
    })
  }

  it('subtractSorted: overlapping holes, holes past either end, the top of the u64 space', () => {
    const max = (1n << 64n) - 1n
    assert.deepEqual(
      subtractSorted(
        [
          { start: 0n, last: 99n },
          { start: 200n, last: 299n },
        ],
        [
          { start: 10n, last: 50n },
          { start: 20n, last: 30n },
          { start: 90n, last: 210n },
        ],
      ),
      [
        { start: 0n, last: 9n },
        { start: 51n, last: 89n },
        { start: 211n, last: 299n },
      ],
    )
    assert.deepEqual(subtractSorted([{ start: 0n, last: max }], [{ start: 0x1000n, last: max }]), [{ start: 0n, last: 0xfffn }])
    assert.deepEqual(subtractSorted([{ start: 5n, last: 9n }], [{ start: 0n, last: max }]), [])
  })
})

/**
 * The kernel's IOVA rules over lists, in pages (1 page = PAGE_SIZE bytes):
 * placed maps take the lowest aligned free IOVA inside the allowed ranges
 * (all when none) and the window [1 page, ULONG_MAX - 1 page], outside every
 * reserved range and mapping.
 */
class Model {
  areas: R[] = []
  reserved: R[] = []
  allowed: R[] = []
  private hit(list: R[], s: bigint, l: bigint): R | undefined {
    return list.find((x) => x.start <= l && s <= x.last)
  }
  map(fixed: bigint | undefined, length: bigint): bigint | string {
    if (fixed !== undefined) {
      const l = fixed + length - 1n
      if (this.hit(this.reserved, fixed, l)) return 'EINVAL'
      if (this.hit(this.areas, fixed, l)) return 'EEXIST'
      this.areas.push({ start: fixed, last: l })
      return fixed
    }
    const align = 1n << BigInt(Math.min(63, (length * PAGE_SIZE - 1n).toString(2).length))
    const pages = align / PAGE_SIZE > 0n ? align / PAGE_SIZE : 1n
    const spans = this.allowed.length ? this.allowed : [{ start: 0n, last: 1n << 40n }]
    let best: bigint | undefined
    for (const sp of spans) {
      for (let s = ((sp.start > 1n ? sp.start : 1n) + pages - 1n) / pages * pages; s + length - 1n <= sp.last; s += pages) {
        const l = s + length - 1n
        if (!this.hit(this.reserved, s, l) && !this.hit(this.areas, s, l)) {
          if (best === undefined || s < best) best = s
          break
        }
      }
    }
    if (best === undefined) return 'ENOSPC'
    this.areas.push({ start: best, last: best + length - 1n })
    return best
  }
  reserve(s: bigint, l: bigint): string | undefined {
    if (this.hit(this.areas, s, l) || this.hit(this.allowed, s, l)) return 'EADDRINUSE'
    this.reserved.push({ start: s, last: l })
    return undefined
  }
  allow(ranges: R[]): string | undefined {
    for (let i = 0; i < ranges.length; i++) if (this.hit(ranges.slice(0, i), ranges[i].start, ranges[i].last)) return 'EINVAL'
    if (ranges.some((r) => this.hit(this.reserved, r.start, r.last))) return 'EADDRINUSE'
    this.allowed = [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1))
    return undefined
  }
  unmap(s: bigint, l: bigint): string | bigint {
    const hit = this.areas.filter((a) => a.start <= l && s <= a.last)
    if (hit.some((a) => a.start < s || a.last > l)) return 'ENOENT'
    this.areas = this.areas.filter((a) => !hit.includes(a))
    return hit.reduce((n, a) => n + a.last - a.start + 1n, 0n)
  }
  /** The holes between reserved ranges over the whole IOVA space, in pages: allowed ranges do not narrow them. */
  iovaRanges(): R[] {
    const top = (ULONG_MAX + 1n) / PAGE_SIZE - 1n
    const out: R[] = []
    let from = 0n
    for (const r of [...this.reserved].sort((a, b) => (a.start < b.start ? -1 : 1))) {
      if (r.start > from) out.push({ start: from, last: r.start - 1n })
      if (r.last + 1n > from) from = r.last + 1n
    }
    if (from <= top) out.push({ start: from, last: top })
    return out
  }
}

const errnoOf = (fn: () => unknown): unknown => {
  try {
    return fn()
  } catch (e) {
    if (e instanceof ErrnoError) return e.errno
    throw e
  }
}

describe('IOAS ranges in the interval structures: the kernel\'s rules, against lists', () => {
  for (const seed of [3, 17, 2024]) {
    it(`random maps, unmaps, reservations and allowed ranges give the model's results (seed ${seed})`, () => {
      const r = rng(seed)
      const ioas = new Ioas()
      const model = new Model()
      const P = PAGE_SIZE
      const flags = MapFlag.READABLE | MapFlag.WRITEABLE
      const place = (fixed: bigint | undefined, pages: bigint): unknown =>
        errnoOf(() => {
          const a = ioas.planMap({ flags: flags | (fixed !== undefined ? MapFlag.FIXED_IOVA : 0), length: pages * P, iova: (fixed ?? 0n) * P, userVa: 0x7000_0000_0000n })
          ioas.insert(a)
          return a.iova / P
        })
      for (let op = 0; op < 600; op++) {
        const k = r(20)
        const s = BigInt(r(300))
        const len = BigInt(1 + r(6))
        if (k < 7) {
          assert.equal(place(undefined, len), model.map(undefined, len), `op ${op}: map ${len} pages`)
        } else if (k < 10) {
          assert.equal(place(s, len), model.map(s, len), `op ${op}: map ${len} pages at ${s}`)
        } else if (k < 14) {
          const got = errnoOf(() => ioas.unmapRange(s * P, (s + len * 4n) * P - 1n))
          const want = model.unmap(s, s + len * 4n - 1n)
          assert.equal(typeof got === 'bigint' ? got / P : got, want, `op ${op}: unmap at ${s}`)
        } else if (k < 17) {
          assert.equal(errnoOf(() => ioas.reserve({ start: s * P, last: (s + len) * P - 1n })), model.reserve(s, s + len - 1n), `op ${op}: reserve ${s}+${len}`)
        } else if (k < 19) {
          const n = r(6)
          const ranges: R[] = []
          for (let i = 0; i < n; i++) {
            const a = BigInt(r(400))
            ranges.push({ start: a, last: a + BigInt(1 + r(60)) })
          }
          const toBytes = ranges.map((x) => ({ start: x.start * P, last: (x.last + 1n) * P - 1n }))
          assert.equal(errnoOf(() => ioas.setAllowed(toBytes)), model.allow(ranges), `op ${op}: allow ${JSON.stringify(ranges.map((x) => [Number(x.start), Number(x.last)]))}`)
        } else {
          const got = ioas.ranges().map((x) => ({ start: x.start / P, last: (x.last + 1n) / P - 1n }))
          assert.deepEqual(got, model.iovaRanges(), `op ${op}: IOVA_RANGES`)
        }
        assert.deepEqual(
          ioas.areas.map((a) => ({ start: a.iova / P, last: (a.iova + a.length) / P - 1n })),
          [...model.areas].sort((a, b) => (a.start < b.start ? -1 : 1)),
          `op ${op}: the mappings`,
        )
      }
    })
  }

  it('the allocation window: page 0 and the last page are never handed out', () => {
    const ioas = new Ioas()
    ioas.setAllowed([
      { start: 0n, last: 0x1fffn },
      { start: ULONG_MAX - 0x1fffn, last: ULONG_MAX },
    ])
    const map = (): bigint => {
      const a = ioas.planMap({ flags: MapFlag.READABLE, length: 0x1000n, iova: 0n, userVa: 0x1000n })
      ioas.insert(a)
      return a.iova
    }
    assert.equal(map(), 0x1000n)
    assert.equal(map(), ULONG_MAX - 0x1fffn)
    assert.equal(errnoOf(map), 'ENOSPC')
  })
})
