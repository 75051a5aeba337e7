import { get, hex } from '../bits'
import { MemoryPort } from '../../memory/physical'
import { CD0, CD1, L1CD } from './cd'
import { STE0, STE1 } from './ste'

const S1DSS_NAMES = ['terminate', 'bypass', 'ssid0', 'reserved']

/**
 * The valid CDs behind a stage-1 STE, read from memory as the SMMU would
 * find them (linear, or 2-level with 4 KiB or 64 KiB leaves): a header line
 * with S1CDMax, S1Fmt and S1DSS, then one line per valid CD.
 */
export function dumpCdTable(mem: MemoryPort, sid: number, ste: readonly bigint[]): string[] {
  const cdMax = Number(get(ste[0], STE0.S1CDMAX))
  const fmt = cdMax === 0 ? 0 : Number(get(ste[0], STE0.S1FMT)) % 3
  const base = get(ste[0], STE0.S1CTXPTR) << 6n
  const out = [`sid=${hex(sid)} ctx=${hex(base)} s1cdmax=${cdMax} s1fmt=${fmt} s1dss=${S1DSS_NAMES[Number(get(ste[1], STE1.S1DSS))]}`]
  const cd = (ssid: number, addr: bigint): void => {
    const w0 = mem.read64(addr)
    const w1 = mem.read64(addr + 8n)
    if (typeof w0 !== 'bigint' || typeof w1 !== 'bigint' || !get(w0, CD0.V)) return
    out.push(`  ssid=${hex(ssid)} cd=${hex(addr)} asid=${get(w0, CD0.ASID)} ttb0=${hex(get(w1, CD1.TTB0) << 4n)} t0sz=${get(w0, CD0.T0SZ)} s=${get(w0, CD0.S)}`)
  }
  if (fmt === 0) {
    for (let ssid = 0; ssid < 2 ** Math.min(cdMax, 10); ssid++) cd(ssid, base + BigInt(ssid) * 64n)
    return out
  }
  const split = fmt === 1 ? 6 : 10
  for (let i = 0; i < 2 ** Math.max(cdMax - split, 0); i++) {
    const l1 = mem.read64(base + BigInt(i) * 8n)
    if (typeof l1 !== 'bigint' || !get(l1, L1CD.V)) continue
    const leaf = get(l1, L1CD.L2PTR) << 12n
    for (let j = 0; j < 2 ** split; j++) cd((i << split) | j, leaf + BigInt(j) * 64n)
  }
  return out
}
