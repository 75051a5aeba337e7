/**
 * Read latency of one iommufs attribute against a real sysfs file, measured
 * in the same run: open + read to EOF (64 KiB reads until 0) + close.
 *
 *   make bench        (node dist/bench/read-latency.js)
 *
 * The server is a separate process (`iommufs mount --daemon`), so this process
 * may use synchronous fs calls on the mount. It always unmounts.
 */
import { execFile } from 'node:child_process'
import { closeSync, existsSync, openSync, promises as fsp, readFileSync, readSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { DEFAULT_TOPOLOGY, PACKAGE_ROOT } from '../src/util/paths'

const execFileP = promisify(execFile)

const WARMUP = 200
const ITERATIONS = 2000
/** Measured iterations run in alternating chunks, so both targets see the same machine state. */
const CHUNK = 100
const ATTRIBUTE = 'sys/class/iommu/smmu3.0x0000000009050000/arm-smmu-v3/model'
const SYSFS_CANDIDATES = ['/sys/kernel/mm/transparent_hugepage/enabled', '/sys/devices/system/cpu/online', '/sys/kernel/profiling']
const CLI = path.join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')

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

/** Nearest-rank quantile of sorted samples. */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

const rel = (p: string): string => (p.startsWith(process.cwd() + path.sep) ? path.relative(process.cwd(), p) : p)
const shellWords = (words: string[]): string => words.map((w) => (/^[\w./:=@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ')

let interrupted = false

async function main(): Promise<number> {
  process.stdout.write(`$ ${shellWords([process.argv0, ...process.argv.slice(1).map(rel)])}\n`)
  const sysfs = SYSFS_CANDIDATES.find((f) => existsSync(f))
  if (!sysfs) throw new Error(`none of ${SYSFS_CANDIDATES.join(', ')} exists on this machine`)

  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-bench-'))
  const mountArgs = [CLI, 'mount', dir, '--topology', DEFAULT_TOPOLOGY, '--daemon']
  process.stdout.write(`mount: ${shellWords(['node', ...mountArgs.map(rel)])}\n`)
  let mounted = false
  try {
    const { stdout } = await execFileP(process.execPath, mountArgs)
    mounted = true
    process.stdout.write(`server pid ${stdout.trim()}\n`)
    const attr = path.join(dir, ATTRIBUTE)
    const value = readFileSync(attr, 'utf8')
    if (value !== '2\n') throw new Error(`${attr} reads ${JSON.stringify(value)}, expected "2\\n"`)

    process.stdout.write(`${WARMUP} warm-up + ${ITERATIONS} measured iterations each of open + read(64 KiB) until 0 + close\n`)
    const targets = [
      { name: `iommufs ${ATTRIBUTE}`, file: attr, samples: [] as number[] },
      { name: `sysfs   ${sysfs}`, file: sysfs, samples: [] as number[] },
    ]
    for (const t of targets) for (let i = 0; i < WARMUP; i++) once(t.file)
    for (let done = 0; done < ITERATIONS && !interrupted; done += CHUNK) {
      for (const t of targets) for (let i = 0; i < CHUNK; i++) t.samples.push(once(t.file))
      await new Promise((r) => setImmediate(r)) // lets a Ctrl-C be handled between chunks
    }
    if (interrupted) throw new Error('interrupted')

    const width = Math.max(...targets.map((t) => t.name.length))
    process.stdout.write(`${'target'.padEnd(width)}  ${'median µs'.padStart(10)}  ${'p99 µs'.padStart(10)}\n`)
    const medians = targets.map((t) => {
      const sorted = [...t.samples].sort((a, b) => a - b)
      const median = quantile(sorted, 0.5)
      process.stdout.write(`${t.name.padEnd(width)}  ${median.toFixed(1).padStart(10)}  ${quantile(sorted, 0.99).toFixed(1).padStart(10)}\n`)
      return median
    })
    process.stdout.write(`ratio iommufs/sysfs (median): ${(medians[0] / medians[1]).toFixed(1)}x\n`)
    return 0
  } finally {
    if (mounted) {
      try {
        await execFileP(process.execPath, [CLI, 'unmount', dir])
      } catch (e) {
        process.stderr.write(`iommufs unmount failed (${(e as Error).message.trim()}); detaching\n`)
        await execFileP('umount', ['-l', dir]).catch(() => {})
      }
    }
    await fsp.rmdir(dir).catch((e: Error) => process.stderr.write(`cannot remove ${dir}: ${e.message}\n`))
  }
}

process.on('SIGINT', () => (interrupted = true))
process.on('SIGTERM', () => (interrupted = true))
main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`read-latency: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(interrupted ? 130 : 1)
  },
)
