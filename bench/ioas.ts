/**
 * The cost of IOMMU_IOAS_MAP as an IOAS fills up, in one run: three IOASes
 * are grown to 100, 10,000 and 100,000 mappings (4 KiB each, IOVAs chosen by
 * the server), then SAMPLES more maps are timed on each, in alternating
 * chunks, each unmapped again so the sizes stay put. The ratio to the cost at 100 mappings is the point
 * (target: at most 1.5 at 100,000). Also printed: the server's heap per
 * mapping, measured across the growth from 10,000 to 100,000 mappings after
 * a full garbage collection.
 *
 * A fourth IOAS has many ranges: 1,024 allowed ranges (the most one
 * IOAS_ALLOW_IOVAS takes) of 64 KiB, 1 MiB apart, 9,216 reserved ranges
 * (ADD_RESERVED) in the gaps between them, and 10,000 mappings filling the
 * first 625 allowed ranges. Its placed maps (the IOVA found past every full
 * range) and fixed maps (checked against every reserved range) are timed in
 * the same rounds, against the cost at 100 mappings with no ranges.
 *
 * In-process, through the server's own request path (IommuSession text
 * lines: parse, dispatch, reply), without FUSE, whose round trip would hide
 * the model's cost.
 *
 *   make bench        (node dist/bench/ioas.js)
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { World } from '../src/iommufd/world'
import { Ioas } from '../src/iommufd/ioas'
import { IommuSession } from '../src/uapi/session'
import { loadTopology } from '../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../src/util/paths'
import { median, runBench, throwIfInterrupted, yieldToSignals } from './common'

const SIZES = [100, 10_000, 100_000]
const SAMPLES = 3000
const WARMUP = 1000
const CHUNK = 250
const TARGET_RATIO = 1.5
/** The many-ranges IOAS: allowed ranges (one IOAS_ALLOW_IOVAS' most), reserved ranges per gap, mappings. */
const ALLOWED = 1024
const RESERVED_PER_GAP = 9
const RANGES_MAPPINGS = 10_000
const ALLOWED_BASE = 0x1_0000_0000n
const ALLOWED_STRIDE = 0x10_0000n
const ALLOWED_LEN = 0x1_0000n

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function heapAfterGc(): number {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}

runBench('bench/ioas', async () => {
  const session = new IommuSession(new World(loadTopology(DEFAULT_TOPOLOGY)))
  const send = (line: string): string => {
    session.write(0, Buffer.from(`${line}\n`))
    return session.read(0, 4096).toString('utf8')
  }
  const mapOne = (ioas: string): string => {
    const r = send(`IOAS_MAP ioas_id=${ioas} user_va=0x100000 length=0x1000 flags=READABLE|WRITEABLE`)
    const iova = /^ok iova=(0x[0-9a-f]+)/.exec(r)
    if (!iova) throw new Error(`IOAS_MAP failed: ${r.trim()}`)
    return iova[1]
  }
  const unmap = (ioas: string, iova: string): void => {
    const r = send(`IOAS_UNMAP ioas_id=${ioas} iova=${iova} length=0x1000`)
    if (!r.startsWith('ok')) throw new Error(`IOAS_UNMAP failed: ${r.trim()}`)
  }

  // one IOAS per size, grown to it; the heap is read around the growth of the largest from 10,000 on
  const targets: { size: number; ioas: string; samples: number[] }[] = []
  let heapAt10k = 0
  let heapAtEnd = 0
  for (const size of SIZES) {
    const ioas = /out_ioas_id=(\d+)/.exec(send('IOAS_ALLOC'))![1]
    for (let n = 1; n <= size; n++) {
      mapOne(ioas)
      if (size === SIZES[SIZES.length - 1] && n === 10_000) heapAt10k = heapAfterGc()
      if (n % 5000 === 0) {
        await yieldToSignals()
        throwIfInterrupted()
      }
    }
    targets.push({ size, ioas, samples: [] })
  }
  heapAtEnd = heapAfterGc()

  // the many-ranges IOAS: reserved ranges in the gaps (ADD_RESERVED's rule), then the allowed ranges, then the mappings
  const ranged = /out_ioas_id=(\d+)/.exec(send('IOAS_ALLOC'))![1]
  const ioasObj = session.ctx.objects.find(Number(ranged)) as Ioas
  for (let i = 0; i < ALLOWED; i++) {
    for (let k = 0; k < RESERVED_PER_GAP; k++) {
      const start = ALLOWED_BASE + BigInt(i) * ALLOWED_STRIDE + ALLOWED_LEN + 0x1_0000n * BigInt(k + 1)
      ioasObj.reserve({ start, last: start + 0xfffn })
    }
  }
  // through the IOAS itself: the text line of 1,024 ranges is longer than a request line may be
  ioasObj.setAllowed(
    Array.from({ length: ALLOWED }, (_, i) => {
      const start = ALLOWED_BASE + BigInt(i) * ALLOWED_STRIDE
      return { start, last: start + ALLOWED_LEN - 1n }
    }),
  )
  for (let n = 1; n <= RANGES_MAPPINGS; n++) mapOne(ranged)
  // a fixed map lands in the last allowed range, which the placed ones never reach
  const fixedIova = `0x${(ALLOWED_BASE + BigInt(ALLOWED - 1) * ALLOWED_STRIDE).toString(16)}`
  const mapFixed = (): void => {
    const r = send(`IOAS_MAP ioas_id=${ranged} user_va=0x100000 iova=${fixedIova} length=0x1000 flags=FIXED_IOVA|READABLE|WRITEABLE`)
    if (!r.startsWith('ok')) throw new Error(`IOAS_MAP fixed failed: ${r.trim()}`)
  }
  const rangedPlaced: number[] = []
  const rangedFixed: number[] = []

  // warm up, then time maps in alternating chunks, so every size sees the same machine state;
  // each timed map is unmapped again, so the sizes stay put
  for (let round = 0; round < WARMUP / CHUNK + SAMPLES / CHUNK; round++) {
    for (const t of targets) {
      for (let i = 0; i < CHUNK; i++) {
        const t0 = process.hrtime.bigint()
        const iova = mapOne(t.ioas)
        const us = Number(process.hrtime.bigint() - t0) / 1000
        if (round >= WARMUP / CHUNK) t.samples.push(us)
        unmap(t.ioas, iova)
      }
    }
    for (let i = 0; i < CHUNK; i++) {
      let t0 = process.hrtime.bigint()
      const iova = mapOne(ranged)
      const placed = Number(process.hrtime.bigint() - t0) / 1000
      unmap(ranged, iova)
      t0 = process.hrtime.bigint()
      mapFixed()
      const fixed = Number(process.hrtime.bigint() - t0) / 1000
      unmap(ranged, fixedIova)
      if (round >= WARMUP / CHUNK) {
        rangedPlaced.push(placed)
        rangedFixed.push(fixed)
      }
    }
    await yieldToSignals()
    throwIfInterrupted()
  }

  const base = median(targets[0].samples)
  process.stdout.write(`${'mappings'.padStart(9)}  ${'median µs/map'.padStart(14)}  ${'ratio to 100'.padStart(12)}\n`)
  for (const t of targets) {
    const m = median(t.samples)
    process.stdout.write(`${String(t.size).padStart(9)}  ${m.toFixed(2).padStart(14)}  ${(m / base).toFixed(2).padStart(12)}\n`)
  }
  const last = SIZES[SIZES.length - 1]
  const perMapping = (heapAtEnd - heapAt10k) / (last - 10_000)
  process.stdout.write(`server heap per mapping: ${perMapping.toFixed(0)} bytes (growth from 10,000 to ${last} mappings)\n`)
  const rp = median(rangedPlaced)
  const rf = median(rangedFixed)
  process.stdout.write(
    `${ALLOWED} allowed + ${ALLOWED * RESERVED_PER_GAP} reserved ranges, ${RANGES_MAPPINGS} mappings: placed map ${rp.toFixed(2)} µs (ratio to 100: ${(rp / base).toFixed(2)}), fixed map ${rf.toFixed(2)} µs (ratio to 100: ${(rf / base).toFixed(2)})\n`,
  )
  const ratio = median(targets[targets.length - 1].samples) / base
  process.stdout.write(`cost at ${last} / cost at ${SIZES[0]}: ${ratio.toFixed(2)} (target <= ${TARGET_RATIO}): ${ratio <= TARGET_RATIO ? 'met' : 'NOT met'}\n`)
  return 0
})
