/**
 * The cost of IOMMU_IOAS_MAP as an IOAS fills up, in one run: three IOASes
 * are grown to 100, 10,000 and 100,000 mappings (4 KiB each, IOVAs chosen by
 * the server), then SAMPLES more maps are timed on each, in alternating
 * chunks, each unmapped again so the sizes stay put. The ratio to the cost at 100 mappings is the point
 * (target: at most 1.5 at 100,000). Also printed: the server's heap per
 * mapping, measured across the growth from 10,000 to 100,000 mappings after
 * a full garbage collection.
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
import { IommuSession } from '../src/uapi/session'
import { loadTopology } from '../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../src/util/paths'
import { median, runBench, throwIfInterrupted, yieldToSignals } from './common'

const SIZES = [100, 10_000, 100_000]
const SAMPLES = 3000
const WARMUP = 1000
const CHUNK = 250
const TARGET_RATIO = 1.5

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
  const ratio = median(targets[targets.length - 1].samples) / base
  process.stdout.write(`cost at ${last} / cost at ${SIZES[0]}: ${ratio.toFixed(2)} (target <= ${TARGET_RATIO}): ${ratio <= TARGET_RATIO ? 'met' : 'NOT met'}\n`)
  return 0
})
