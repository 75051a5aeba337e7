/**
 * 64-bit words as 32-bit halves (the walk's arithmetic): exact at the edges
 * (bit 63, bit 31/32, 52-bit addresses), and the same answers as the bigint
 * forms they stand in for.
 */
import { strict as assert } from 'node:assert'
import { bits, get, getN, hi32, join64, lo32, num64, pow2 } from '../../src/hw/bits'
import { D, Geometry } from '../../src/hw/smmuv3/pgtable'
import { s1Perms, s2Perms } from '../../src/hw/smmuv3/walk'

const EDGES = [0n, 1n, 0xffff_ffffn, 0x1_0000_0000n, 1n << 63n, (1n << 64n) - 1n, 0x000f_ffff_ffff_f000n, 0x8000_0000_8000_0000n, 0x0123_4567_89ab_cdefn]

describe('64-bit words as 32-bit halves', () => {
  it('lo32/hi32 split and join64 puts back every edge value', () => {
    assert.equal(lo32(1n << 63n), 0)
    assert.equal(hi32(1n << 63n), 0x8000_0000)
    assert.equal(lo32((1n << 64n) - 1n), 0xffff_ffff)
    assert.equal(hi32((1n << 64n) - 1n), 0xffff_ffff)
    for (const v of EDGES) assert.equal(join64(hi32(v), lo32(v)), v)
    // halves that went through signed 32-bit operations still join right
    assert.equal(join64(0x8000_0000 | 0, 0xffff_ffff | 0), 0x8000_0000_ffff_ffffn)
  })

  it('pow2 gives 2^n exactly from 0 to 63', () => {
    assert.equal(pow2(0), 1)
    assert.equal(pow2(31), 0x8000_0000)
    assert.equal(pow2(52), 0x10_0000_0000_0000)
    assert.equal(BigInt(pow2(63)), 1n << 63n)
  })

  it('num64 is exact up to 52-bit addresses and beyond to 2^53 - 1', () => {
    assert.equal(num64(0x000f_ffff, 0xffff_f000), 0xf_ffff_ffff_f000)
    assert.equal(num64(0x001f_ffff, 0xffff_ffff), Number.MAX_SAFE_INTEGER)
    assert.equal(num64(0, 0x8000_0000 | 0), 0x8000_0000)
  })

  it('getN agrees with get for fields below, across and above bit 32, and at bit 63', () => {
    const fields = [bits('b0', 0), bits('low', 11, 4), bits('b31', 31), bits('b32', 32), bits('across', 51, 6), bits('addr', 51, 12), bits('top', 63, 60), bits('b63', 63), bits('hi53', 63, 11), bits('hiword', 63, 32), bits('loword', 31, 0), bits('lo31', 30, 0), bits('span63', 63, 31)]
    for (const f of fields) for (const v of EDGES) assert.equal(getN(hi32(v), lo32(v), f), Number(get(v, f)), `${f.name} of 0x${v.toString(16)}`)
    assert.throws(() => getN(0, 0, bits('wide', 63, 0)), /wider than a number/)
  })
})

describe('the walk in numbers matches its bigint definitions', () => {
  it('Geometry index and address in numbers equal the bigint forms, 52-bit addresses included', () => {
    for (const g of [Geometry.of(12, 48), Geometry.of(16, 52), Geometry.stage2(12, 40), Geometry.of(14, 47)]) {
      for (const a of [0n, 0xfffn, 0x1234_5678_9000n, (1n << BigInt(g.ias)) - 1n]) {
        for (let l = g.startLevel; l <= 3; l++) assert.equal(g.indexNum(Number(a), l), Number(g.index(a, l)), `index ${a} level ${l} granule ${g.granule}`)
      }
      for (const d of [0x000f_ffff_ffff_f003n, 0xffff_ffff_ffff_ffffn, 0x0000_8000_4020_0743n, (1n << 63n) | 0x1000n | 3n]) {
        for (let l = g.startLevel; l <= 3; l++) {
          for (const leaf of [true, false]) assert.equal(g.addressNum(hi32(d), lo32(d), l, leaf), Number(g.address(d, l, leaf)), `address 0x${d.toString(16)} level ${l} leaf ${leaf}`)
        }
      }
    }
    // the 64K granule's bits [51:48] of an address come from descriptor bits [15:12]
    assert.equal(Geometry.of(16, 52).addressNum(0, 0xf003, 3, true), 0xf * 2 ** 48)
  })

  it('permissions from the upper half: UXN/PXN (bits 54/53), table bits 59..62, DBM stays out', () => {
    const base = D.VALID | D.TABLE | D.AF | D.AP1
    assert.equal(s1Perms(base, 0n, 0n, 0n), 63)
    assert.equal(s1Perms(base | D.UXN | D.PXN, 0n, 0n, 0n), 1 | 2 | 8 | 16)
    assert.equal(s1Perms(base, D.AP_TABLE_RO, 0n, 0n), 1 | 4 | 8 | 32)
    assert.equal(s1Perms(base, D.AP_TABLE_NO_EL0, 0n, 0n), 1 | 2 | 4)
    assert.equal(s1Perms(base, 0n, D.XN_TABLE, 0n), 1 | 2 | 8 | 16)
    assert.equal(s1Perms(base, 0n, 0n, D.PXN_TABLE), 1 | 2 | 8 | 16 | 32)
    assert.equal(s1Perms(base | D.DBM | (1n << 63n), 0n, 0n, 0n), 63)
    assert.equal(s2Perms(D.AP1 | D.AP2), 63)
    assert.equal(s2Perms(D.AP1 | (1n << 54n)), 1 | 8)
    assert.equal(s2Perms(D.AP2), 2 | 16)
  })
})
