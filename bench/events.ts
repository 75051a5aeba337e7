/**
 * Events from a faulting DMA to a program reading the vEVENTQ descriptor,
 * in one run on one mount (dist/bench/events-loop does the work in C):
 *   1. events per second: one thread makes the device fault through its DMA
 *      port, the program poll()s and read()s the queue until it has them all;
 *   2. the latency from the fault (the DMA request written) to poll()
 *      waking, against the latency of a plain transaction (IOAS_IOVA_RANGES
 *      on dev/iommu) on the same mount, and of the faulting DMA request alone.
 *
 *   make bench        (node dist/bench/events.js [N] [K])
 */
import * as path from 'node:path'
import { PACKAGE_ROOT } from '../src/util/paths'
import { execFileP, median, quantile, rel, runBench, shellWords, withBenchMount } from './common'

const LOOP = path.join(PACKAGE_ROOT, 'dist', 'bench', 'events-loop')

async function main(): Promise<number> {
  const n = Number(process.argv[2] ?? 5000)
  const k = Number(process.argv[3] ?? 200)
  await withBenchMount(async (dir) => {
    const args = [dir, String(n), String(k)]
    process.stdout.write(`run: ${shellWords([rel(LOOP), ...args])}\n`)
    const { stdout } = await execFileP(LOOP, args, { maxBuffer: 1 << 24 })
    const field = (name: string): string => {
      const m = new RegExp(`^${name}: (.*)$`, 'm').exec(stdout)
      if (!m) throw new Error(`events-loop printed no ${name}: ${stdout.slice(0, 300)}`)
      return m[1]
    }
    const samples = (name: string): number[] => field(name).trim().split(' ').map(Number)
    console.log(`events: ${field('events')}`)
    console.log(`faulting DMA -> program reading the vEVENTQ: ${Number(field('events_per_s')).toFixed(0)} events/s`)
    const wake = samples('wake_us')
    const plain = samples('plain_us')
    const dma = samples('dma_us')
    const row = (label: string, s: number[]): string => `${label.padEnd(44)} median ${median(s).toFixed(1).padStart(7)} us   p90 ${quantile(s, 0.9).toFixed(1).padStart(7)} us`
    console.log(row('fault -> poll() wake-up', wake))
    console.log(row('plain transaction (IOAS_IOVA_RANGES)', plain))
    console.log(row('faulting DMA request alone (port round trip)', dma))
    console.log(`ratio fault->wake-up / plain transaction (medians): ${(median(wake) / median(plain)).toFixed(2)}x`)
  })
  return 0
}

runBench('bench/events', main)
