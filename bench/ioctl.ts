/**
 * Round-trip time of one cheap ioctl, IOMMU_IOAS_IOVA_RANGES, three ways in
 * one run:
 *   shim:       a C program's real ioctl() under `iommufs exec` (dist/bench/ioctl-loop)
 *   frame:      the same struct as a binary frame, written and read back on
 *               dev/iommu from Node (synchronous fs calls; the server is another process)
 *   in-process: dispatch() on a World, no FUSE and no frame codec
 * Measured calls run in alternating chunks so all three see the same machine
 * state. Prints the medians, p99s and ratios.
 *
 *   make bench        (node dist/bench/ioctl.js; needs `make build` for the shim and the C loop)
 */
import { execFile } from 'node:child_process'
import { closeSync, existsSync, openSync, promises as fsp, readSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'
import { SHIM_PATH } from '../src/cli/exec'
import { World } from '../src/iommufd/world'
import { dispatch } from '../src/uapi/dispatch'
import { decodeReply, encodeRequest } from '../src/uapi/frame'
import { ioctlByName } from '../src/uapi/ioctls'
import { decode, encode } from '../src/uapi/layout'
import { loadTopology } from '../src/topology/topology'
import { DEFAULT_TOPOLOGY, PACKAGE_ROOT } from '../src/util/paths'

const execFileP = promisify(execFile)

const WARMUP = 200
const ITERATIONS = 2000
const CHUNKS = 10
const CHUNK = ITERATIONS / CHUNKS
const CLI = path.join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')
const LOOP = path.join(PACKAGE_ROOT, 'dist', 'bench', 'ioctl-loop')
/** Where the ranges "live" for the Node clients (an out buffer: only its address travels). */
const RANGES_AT = 0x7f0000010000n

const RANGES = ioctlByName('IOAS_IOVA_RANGES')!
const ALLOC = ioctlByName('IOAS_ALLOC')!

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

const rel = (p: string): string => (p.startsWith(process.cwd() + path.sep) ? path.relative(process.cwd(), p) : p)
const shellWords = (words: string[]): string => words.map((w) => (/^[\w./:=@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ')

const rangesStruct = (ioasId: number): Buffer => encode(RANGES.layout, { size: BigInt(RANGES.layout.size), ioas_id: BigInt(ioasId), num_iovas: 4n, allowed_iovas: RANGES_AT })

/** A frame client of dev/iommu: write at 0, read the reply at the request's length. */
class FrameClient {
  private readonly fd: number
  private readonly buf = Buffer.alloc(1 << 16)
  constructor(file: string) {
    this.fd = openSync(file, 'r+')
  }
  call(req: Buffer): number {
    writeSync(this.fd, req, 0, req.length, 0)
    return readSync(this.fd, this.buf, 0, this.buf.length, req.length)
  }
  reply(n: number): ReturnType<typeof decodeReply> {
    return decodeReply(this.buf.subarray(0, n))
  }
  close(): void {
    closeSync(this.fd)
  }
}

let interrupted = false

async function main(): Promise<number> {
  process.stdout.write(`$ ${shellWords([process.argv0, ...process.argv.slice(1).map(rel)])}\n`)
  for (const f of [SHIM_PATH, LOOP]) if (!existsSync(f)) throw new Error(`${rel(f)} is not built (make build)`)

  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-bench-'))
  const mountArgs = [CLI, 'mount', dir, '--topology', DEFAULT_TOPOLOGY, '--daemon']
  process.stdout.write(`mount: ${shellWords(['node', ...mountArgs.map(rel)])}\n`)
  let mounted = false
  let client: FrameClient | undefined
  try {
    const { stdout } = await execFileP(process.execPath, mountArgs)
    mounted = true
    process.stdout.write(`server pid ${stdout.trim()}\n`)

    // frame client: its own context and IOAS
    client = new FrameClient(path.join(dir, 'dev/iommu'))
    const alloc = encodeRequest({ cmd: ALLOC.cmd, target: 0, struct: encode(ALLOC.layout, { size: BigInt(ALLOC.layout.size) }), buffers: new Map() })
    const allocReply = client.reply(client.call(alloc))
    if (allocReply.errno) throw new Error(`IOAS_ALLOC frame: ${allocReply.errnoName} ${allocReply.message}`)
    const frameIoas = Number(decode(ALLOC.layout, allocReply.struct).out_ioas_id)
    const frameReq = encodeRequest({ cmd: RANGES.cmd, target: 0, struct: rangesStruct(frameIoas), buffers: new Map() })
    const check = client.reply(client.call(frameReq))
    if (check.errno || check.buffers.length !== 1) throw new Error(`IOAS_IOVA_RANGES frame: ${check.errnoName} ${check.message}`)

    // in-process: the same dispatcher on a World of the same machine
    const world = new World(loadTopology(DEFAULT_TOPOLOGY))
    const ctx = world.open()
    const env = { ctx }
    const ioasId = ctx.ioasAlloc(0)
    const inReq = { cmd: RANGES.cmd, struct: rangesStruct(ioasId), buffers: new Map<bigint, Buffer | 'fault'>(), mayRetry: false }
    const inCheck = dispatch(env, inReq)
    if (inCheck.errno) throw new Error(`in-process IOAS_IOVA_RANGES: ${inCheck.errno} ${inCheck.message}`)

    const shimArgs = [CLI, 'exec', '--mount', dir, '--', LOOP, String(CHUNK), String(WARMUP / CHUNKS)]
    process.stdout.write(`shim: ${shellWords(['node', ...shimArgs.map(rel)])} (once per chunk)\n`)
    process.stdout.write(
      `${RANGES.name} (0x${RANGES.cmd.toString(16)}), ${RANGES.layout.size}-byte struct, 4-range out buffer: ` +
        `${WARMUP} warm-up + ${ITERATIONS} measured calls each, in ${CHUNKS} alternating chunks\n`,
    )

    const shim: number[] = []
    const frame: number[] = []
    const inproc: number[] = []
    for (let i = 0; i < WARMUP; i++) {
      client.call(frameReq)
      dispatch(env, inReq)
    }
    for (let c = 0; c < CHUNKS && !interrupted; c++) {
      const { stdout: out } = await execFileP(process.execPath, shimArgs, { maxBuffer: 1 << 24 })
      const m = /^ranges=1 ns=([\d,]+)$/m.exec(out)
      if (!m) throw new Error(`ioctl-loop printed: ${out.slice(0, 200)}`)
      shim.push(...m[1].split(',').map((ns) => Number(ns) / 1000))
      for (let i = 0; i < CHUNK; i++) {
        const t0 = process.hrtime.bigint()
        client.call(frameReq)
        frame.push(Number(process.hrtime.bigint() - t0) / 1000)
      }
      for (let i = 0; i < CHUNK; i++) {
        const t0 = process.hrtime.bigint()
        dispatch(env, inReq)
        inproc.push(Number(process.hrtime.bigint() - t0) / 1000)
      }
      await new Promise((r) => setImmediate(r)) // lets a Ctrl-C be handled between chunks
    }
    if (interrupted) throw new Error('interrupted')

    const targets = [
      { name: 'shim:       ioctl() in C under iommufs exec', samples: shim },
      { name: 'frame:      pwrite+pread on dev/iommu from Node', samples: frame },
      { name: 'in-process: dispatch() on a World', samples: inproc },
    ]
    const width = Math.max(...targets.map((t) => t.name.length))
    process.stdout.write(`${'target'.padEnd(width)}  ${'median µs'.padStart(10)}  ${'p99 µs'.padStart(10)}\n`)
    const med = targets.map((t) => {
      const sorted = [...t.samples].sort((a, b) => a - b)
      const median = quantile(sorted, 0.5)
      process.stdout.write(`${t.name.padEnd(width)}  ${median.toFixed(2).padStart(10)}  ${quantile(sorted, 0.99).toFixed(2).padStart(10)}\n`)
      return median
    })
    process.stdout.write(`ratio shim/frame (median):       ${(med[0] / med[1]).toFixed(2)}x\n`)
    process.stdout.write(`ratio frame/in-process (median): ${(med[1] / med[2]).toFixed(1)}x\n`)
    process.stdout.write(`ratio shim/in-process (median):  ${(med[0] / med[2]).toFixed(1)}x\n`)
    return 0
  } finally {
    client?.close()
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
    process.stderr.write(`ioctl bench: ${e instanceof Error ? e.message : String(e)}\n`)
    process.exit(interrupted ? 130 : 1)
  },
)
