/**
 * What the benchmarks in bench/ share: a mount of the default topology served
 * by a separate process (`iommufs mount --daemon`), the Ctrl-C handling and
 * exit codes, quantiles and the output formatting.
 */
import { execFile } from 'node:child_process'
import { closeSync, openSync, promises as fsp } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { DEFAULT_TOPOLOGY, PACKAGE_ROOT } from '../src/util/paths'

export const execFileP = promisify(execFile)

/** The iommufs command line, as built (dist/src/cli/main.js). */
export const CLI = path.join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')

// ---- formatting ----

/** `p` relative to the working directory when it lies below it, else `p` as given. */
export const rel = (p: string): string => (p.startsWith(process.cwd() + path.sep) ? path.relative(process.cwd(), p) : p)

/** `words` as one shell command line, quoting the words that need it. */
export const shellWords = (words: string[]): string => words.map((w) => (/^[\w./:=@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ')

// ---- statistics ----

/** Nearest-rank quantile of sorted samples. */
export function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/** Median of unsorted values: the middle one, or the mean of the two middle ones. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/**
 * Prints a `target  median µs  p99 µs` table (nearest-rank quantiles, `digits`
 * decimals) and returns each target's median.
 */
export function printLatencyTable(targets: readonly { name: string; samples: number[] }[], digits: number): number[] {
  const width = Math.max(...targets.map((t) => t.name.length))
  process.stdout.write(`${'target'.padEnd(width)}  ${'median µs'.padStart(10)}  ${'p99 µs'.padStart(10)}\n`)
  return targets.map((t) => {
    const sorted = [...t.samples].sort((a, b) => a - b)
    const med = quantile(sorted, 0.5)
    process.stdout.write(`${t.name.padEnd(width)}  ${med.toFixed(digits).padStart(10)}  ${quantile(sorted, 0.99).toFixed(digits).padStart(10)}\n`)
    return med
  })
}

// ---- Ctrl-C and exit codes ----

let interruptedFlag = false

/** Whether SIGINT or SIGTERM has arrived (handled by runBench). */
export function interrupted(): boolean {
  return interruptedFlag
}

/** Lets a pending SIGINT/SIGTERM be handled; call between chunks of synchronous work. */
export function yieldToSignals(): Promise<void> {
  return new Promise((r) => setImmediate(r))
}

/** Throws `interrupted` once a signal has arrived, so the caller unwinds through its cleanup. */
export function throwIfInterrupted(): void {
  if (interruptedFlag) throw new Error('interrupted')
}

/**
 * Runs a benchmark's `main`: turns SIGINT/SIGTERM into the interrupted() flag,
 * prints the command line (`$ node dist/bench/NAME.js ...`), and exits with
 * main's code, or, when it throws, prints `LABEL: message` and exits 130 if
 * interrupted, 1 otherwise.
 */
export function runBench(label: string, main: () => Promise<number>): void {
  process.on('SIGINT', () => (interruptedFlag = true))
  process.on('SIGTERM', () => (interruptedFlag = true))
  const run = async (): Promise<number> => {
    process.stdout.write(`$ ${shellWords([process.argv0, ...process.argv.slice(1).map(rel)])}\n`)
    return main()
  }
  run().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${label}: ${e instanceof Error ? e.message : String(e)}\n`)
      process.exit(interruptedFlag ? 130 : 1)
    },
  )
}

// ---- the mount ----

/**
 * Mounts the default topology on a fresh temporary directory with
 * `iommufs mount DIR --daemon` (printing the mount command line and the
 * server's pid), runs `fn(dir)`, and always unmounts (falling back to
 * `umount -l`) and removes the directory, whether fn returns or throws.
 */
export async function withBenchMount<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-bench-'))
  const mountArgs = [CLI, 'mount', dir, '--topology', DEFAULT_TOPOLOGY, '--daemon']
  process.stdout.write(`mount: ${shellWords(['node', ...mountArgs.map(rel)])}\n`)
  let mounted = false
  try {
    const { stdout } = await execFileP(process.execPath, mountArgs)
    mounted = true
    process.stdout.write(`server pid ${stdout.trim()}\n`)
    return await fn(dir)
  } finally {
    if (mounted) await unmount(dir)
    await fsp.rmdir(dir).catch((e: Error) => process.stderr.write(`cannot remove ${dir}: ${e.message}\n`))
  }
}

/** `iommufs unmount DIR`, or when that fails a lazy `umount -l DIR`. */
async function unmount(dir: string): Promise<void> {
  try {
    await execFileP(process.execPath, [CLI, 'unmount', dir])
  } catch (e) {
    process.stderr.write(`iommufs unmount failed (${(e as Error).message.trim()}); detaching\n`)
    await execFileP('umount', ['-l', dir]).catch(() => {})
  }
}

/** Opens DIR/dev/iommu read-write, runs `fn(fd)`, and always closes the descriptor. */
export async function withDevIommu<T>(dir: string, fn: (fd: number) => Promise<T>): Promise<T> {
  const fd = openSync(path.join(dir, 'dev', 'iommu'), 'r+')
  try {
    return await fn(fd)
  } finally {
    closeSync(fd)
  }
}
