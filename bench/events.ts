/**
 * Events from a faulting DMA to a program reading the vEVENTQ descriptor,
 * in one run on one mount (dist/bench/events-loop does the work in C):
 *   0. for scale, the same in-process (no FUSE): faulting DMAs into the
 *      vEVENTQ, read in batches;
 *   1. events per second: one thread makes the device fault through its DMA
 *      port, the program poll()s and read()s the queue until it has them all;
 *   2. the latency from the fault (the DMA request written) to poll()
 *      waking, against the latency of a plain transaction (IOAS_IOVA_RANGES
 *      on dev/iommu) on the same mount, and of the faulting DMA request alone.
 *
 *   make bench        (node dist/bench/events.js [N] [K])
 */
import * as path from 'node:path'
import { deviceDma } from '../src/iommufd/dma'
import { Veventq } from '../src/iommufd/veventq'
import { World } from '../src/iommufd/world'
import { loadTopology } from '../src/topology/topology'
import { IommuSession } from '../src/uapi/session'
import { DEFAULT_TOPOLOGY, PACKAGE_ROOT } from '../src/util/paths'
import { execFileP, median, quantile, rel, runBench, shellWords, throwIfInterrupted, withBenchMount, yieldToSignals } from './common'

const LOOP = path.join(PACKAGE_ROOT, 'dist', 'bench', 'events-loop')

/** The same nested setup in-process (no FUSE): faulting DMAs into the vEVENTQ, read in batches; records per second. */
function inProcess(n: number): number {
  const world = new World(loadTopology(DEFAULT_TOPOLOGY))
  const s = new IommuSession(world)
  const send = (line: string): string => {
    s.write(0, Buffer.from(`${line}\n`))
    const r = s.read(0, 4096).toString()
    if (!r.startsWith('ok')) throw new Error(`${line}: ${r}`)
    return r
  }
  for (const l of SETUP) send(l)
  const id = Number(/out_veventq_id=(\d+)/.exec(send('VEVENTQ_ALLOC viommu_id=4 type=ARM_SMMUV3 veventq_depth=65536'))![1])
  const q = s.ctx.objects.find(id) as Veventq
  let got = 0
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) {
    deviceDma(world, '0000:00:01.0', { op: 'read', iova: 0x1000n, len: 4, pasid: 1 })
    if (i % 64 === 63 || i === n - 1) got += q.read(1 << 16).length / 40
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  if (got !== n) throw new Error(`in-process: ${got} records for ${n} faults`)
  return n / secs
}

/** A nested device (vSID 0x42) behind the first SMMUv3 whose guest STE allows no PASID: a DMA with one faults. */
const SETUP = [
  'DEVICE_BIND pci=0000:00:01.0',
  'IOAS_ALLOC',
  'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT',
  'DEVICE_ATTACH dev_id=1 pt_id=3',
  'VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3',
  'VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x42',
  'HWPT_ALLOC dev_id=1 pt_id=4 data_type=ARM_SMMUV3 data.ste=0x4000000b,0x0',
  'DEVICE_ATTACH dev_id=1 pt_id=6',
]

async function main(): Promise<number> {
  const n = Number(process.argv[2] ?? 5000)
  const k = Number(process.argv[3] ?? 200)
  console.log(`in-process (no FUSE), faulting DMA -> vEVENTQ record read: ${inProcess(50_000).toFixed(0)} events/s`)
  await yieldToSignals()
  throwIfInterrupted()
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
