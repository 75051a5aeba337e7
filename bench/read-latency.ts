/**
 * Read latency of one iommufs attribute against a real sysfs file, measured
 * in the same run: open + read to EOF (64 KiB reads until 0) + close.
 *
 *   make bench        (node dist/bench/read-latency.js)
 *
 * The server is a separate process (`iommufs mount --daemon`), so this process
 * may use synchronous fs calls on the mount. It always unmounts.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs'
import * as path from 'node:path'
import { interrupted, printLatencyTable, runBench, throwIfInterrupted, withBenchMount, yieldToSignals } from './common'

const WARMUP = 200
const ITERATIONS = 2000
/** Measured iterations run in alternating chunks, so both targets see the same machine state. */
const CHUNK = 100
const ATTRIBUTE = 'sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3/model'
const SYSFS_CANDIDATES = ['/sys/kernel/mm/transparent_hugepage/enabled', '/sys/devices/system/cpu/online', '/sys/kernel/profiling']

const buf = Buffer.alloc(64 * 1024)

/** One open + read-to-EOF + close, in microseconds. */
function once(file: string): number {
  const t0 = process.hrtime.bigint()
  const fd = openSync(file, 'r')
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd)
  }
  return Number(process.hrtime.bigint() - t0) / 1000
}

async function main(): Promise<number> {
  const sysfs = SYSFS_CANDIDATES.find((f) => existsSync(f))
  if (!sysfs) throw new Error(`none of ${SYSFS_CANDIDATES.join(', ')} exists on this machine`)

  return withBenchMount(async (dir) => {
    const attr = path.join(dir, ATTRIBUTE)
    const value = readFileSync(attr, 'utf8')
    if (value !== '2\n') throw new Error(`${attr} reads ${JSON.stringify(value)}, expected "2\\n"`)

    process.stdout.write(`${WARMUP} warm-up + ${ITERATIONS} measured iterations each of open + read(64 KiB) until 0 + close\n`)
    const targets = [
      { name: `iommufs ${ATTRIBUTE}`, file: attr, samples: [] as number[] },
      { name: `sysfs   ${sysfs}`, file: sysfs, samples: [] as number[] },
    ]
    for (const t of targets) for (let i = 0; i < WARMUP; i++) once(t.file)
    for (let done = 0; done < ITERATIONS && !interrupted(); done += CHUNK) {
      for (const t of targets) for (let i = 0; i < CHUNK; i++) t.samples.push(once(t.file))
      await yieldToSignals() // lets a Ctrl-C be handled between chunks
    }
    throwIfInterrupted()

    const medians = printLatencyTable(targets, 1)
    process.stdout.write(`ratio iommufs/sysfs (median): ${(medians[0] / medians[1]).toFixed(1)}x\n`)
    return 0
  })
}

runBench('read-latency', main)
