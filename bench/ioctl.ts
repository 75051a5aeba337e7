/**
 * Round-trip time of one cheap ioctl, IOMMU_IOAS_IOVA_RANGES, three ways in
 * one run (then a mixed workload, below):
 *   shim:       a C program's real ioctl() under `iommufs exec` (dist/bench/ioctl-loop)
 *   frame:      the same struct as a binary frame, written and read back on
 *               dev/iommu from Node (synchronous fs calls; the server is another process)
 *   in-process: dispatch() on a World, no FUSE and no frame codec
 * Measured calls run in alternating chunks so all three see the same machine
 * state. Prints the medians, p99s and ratios.
 *
 * Mixed workload: 10,000 rounds of IOAS_MAP, IOAS_COPY, IOMMU_TEST_CMD
 * ACCESS_RW (64 bytes read through a selftest access: the shim's path asks
 * for that memory with a RETRY) and IOAS_UNMAP, through the shim
 * (dist/bench/ioctl-mixed) and in-process; prints both rates and their ratio.
 *
 *   make bench        (node dist/bench/ioctl.js; needs `make build` for the shim and the C loop)
 */
import { existsSync, readSync, writeSync } from 'node:fs'
import * as path from 'node:path'
import { SHIM_PATH } from '../src/cli/exec'
import { ioasAlloc } from '../src/iommufd/ioas'
import { World } from '../src/iommufd/world'
import { dispatch } from '../src/uapi/dispatch'
import { decodeReply, encodeRequest } from '../src/uapi/frame'
import { ioctlByName } from '../src/uapi/ioctls'
import { StructValue, decode, encode } from '../src/uapi/layout'
import { TEST_CMD_UNION } from '../src/uapi/structs'
import { TestOp } from '../src/iommufd/selftest'
import { loadTopology } from '../src/topology/topology'
import { DEFAULT_TOPOLOGY, PACKAGE_ROOT } from '../src/util/paths'
import { CLI, execFileP, interrupted, printLatencyTable, rel, runBench, shellWords, throwIfInterrupted, withBenchMount, withDevIommu, yieldToSignals } from './common'

const WARMUP = 200
const ITERATIONS = 2000
const CHUNKS = 10
const CHUNK = ITERATIONS / CHUNKS
const LOOP = path.join(PACKAGE_ROOT, 'dist', 'bench', 'ioctl-loop')
const MIXED = path.join(PACKAGE_ROOT, 'dist', 'bench', 'ioctl-mixed')
const MIXED_ROUNDS = 10000
/** A round is four ioctls: map, copy, access_rw, unmap. */
const MIXED_OPS = 4
/** Where the ranges "live" for the Node clients (an out buffer: only its address travels). */
const RANGES_AT = 0x7f0000010000n

const RANGES = ioctlByName('IOAS_IOVA_RANGES')!
const ALLOC = ioctlByName('IOAS_ALLOC')!

const rangesStruct = (ioasId: number): Buffer => encode(RANGES.layout, { size: BigInt(RANGES.layout.size), ioas_id: BigInt(ioasId), num_iovas: 4n, allowed_iovas: RANGES_AT })

/** A frame client of an open dev/iommu descriptor: write at 0, read the reply at the request's length. */
class FrameClient {
  private readonly buf = Buffer.alloc(1 << 16)
  constructor(private readonly fd: number) {}
  call(req: Buffer): number {
    writeSync(this.fd, req, 0, req.length, 0)
    return readSync(this.fd, this.buf, 0, this.buf.length, req.length)
  }
  reply(n: number): ReturnType<typeof decodeReply> {
    return decodeReply(this.buf.subarray(0, n))
  }
}

async function main(): Promise<number> {
  for (const f of [SHIM_PATH, LOOP, MIXED]) if (!existsSync(f)) throw new Error(`${rel(f)} is not built (make build)`)
  return withBenchMount(async (dir) => {
    const rc = await withDevIommu(dir, (fd) => measure(dir, new FrameClient(fd)))
    return rc || mixed(dir)
  })
}

/** The mixed workload in-process: the same four ioctls per round through dispatch(), the user memory handed over as a frame would. */
function mixedInProcess(rounds: number): number {
  const world = new World(loadTopology(DEFAULT_TOPOLOGY))
  const env = { ctx: world.open() }
  const VA = 0x7f0000100000n
  const OUT = 0x7f0000200000n
  const page = Buffer.alloc(4096, 0x5a)
  const call = (name: string, values: StructValue, buffers = new Map<bigint, Buffer | 'fault'>()): StructValue => {
    const io = ioctlByName(name)!
    const r = dispatch(env, { cmd: io.cmd, struct: encode(io.layout, { [io.layout.fields[0].name]: BigInt(io.layout.size), ...values }), buffers })
    if (r.errno) throw new Error(`in-process ${name}: ${r.errno} ${r.message}`)
    return decode(io.layout, r.struct!)
  }
  const ioas = call('IOAS_ALLOC', {}).out_ioas_id as bigint
  const test = (member: keyof typeof TEST_CMD_UNION, op: number, id: bigint, values: StructValue, buffers?: Map<bigint, Buffer | 'fault'>): StructValue => {
    const raw = Buffer.alloc(48)
    encode(TEST_CMD_UNION[member], values).copy(raw)
    const out = call('IOMMU_TEST_CMD', { op: BigInt(op), id, payload: Array.from({ length: 6 }, (_, i) => raw.readBigUInt64LE(i * 8)) }, buffers)
    const back = Buffer.alloc(48)
    ;(out.payload as bigint[]).forEach((w, i) => back.writeBigUInt64LE(w, i * 8))
    return decode(TEST_CMD_UNION[member], back)
  }
  const access = test('create_access', TestOp.CREATE_ACCESS, ioas, {}).out_access_fd as bigint
  const memory = new Map<bigint, Buffer | 'fault'>([[VA, page]])
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < rounds; i++) {
    const iova = call('IOAS_MAP', { flags: 6n, ioas_id: ioas, user_va: VA, length: 4096n }).iova as bigint
    const dst = call('IOAS_COPY', { flags: 4n, dst_ioas_id: ioas, src_ioas_id: ioas, length: 4096n, src_iova: iova }).dst_iova as bigint
    test('access_rw', TestOp.ACCESS_RW, access, { iova: dst, length: 64n, uptr: OUT }, memory)
    if (call('IOAS_UNMAP', { ioas_id: ioas, iova: 0n, length: (1n << 64n) - 1n }).length !== 8192n) throw new Error('in-process IOAS_UNMAP: wrong length')
  }
  return Number(process.hrtime.bigint() - t0)
}

/** Both mixed runs, one after the other in this run; prints the rates and their ratio. */
async function mixed(dir: string): Promise<number> {
  const args = [CLI, 'exec', '--mount', dir, '--', MIXED, String(MIXED_ROUNDS)]
  process.stdout.write(`\nmixed workload: ${MIXED_ROUNDS} rounds of IOAS_MAP, IOAS_COPY, ACCESS_RW (64 bytes), IOAS_UNMAP\n`)
  process.stdout.write(`shim: ${shellWords(['node', ...args.map(rel)])}\n`)
  const { stdout } = await execFileP(process.execPath, args, { maxBuffer: 1 << 20 })
  const m = /^rounds=(\d+) ns=(\d+)$/m.exec(stdout)
  if (!m) throw new Error(`ioctl-mixed printed: ${stdout.slice(0, 200)}`)
  throwIfInterrupted()
  const shimNs = Number(m[2])
  const inNs = mixedInProcess(MIXED_ROUNDS)
  const rate = (ns: number): number => (MIXED_ROUNDS * MIXED_OPS) / (ns / 1e9)
  process.stdout.write(`shim:       ${rate(shimNs).toFixed(0)} ioctls/s (${(shimNs / MIXED_ROUNDS / 1000).toFixed(1)} us per round)\n`)
  process.stdout.write(`in-process: ${rate(inNs).toFixed(0)} ioctls/s (${(inNs / MIXED_ROUNDS / 1000).toFixed(1)} us per round)\n`)
  process.stdout.write(`ratio in-process/shim (rate): ${(rate(inNs) / rate(shimNs)).toFixed(1)}x\n`)
  return 0
}

/** Sets up the three clients of the mount on `dir` (`client` on its dev/iommu), runs them in alternating chunks and prints the table and ratios. */
async function measure(dir: string, client: FrameClient): Promise<number> {
  // frame client: its own context and IOAS
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
  const ioasId = ioasAlloc(ctx, 0)
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
  for (let c = 0; c < CHUNKS && !interrupted(); c++) {
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
    await yieldToSignals() // lets a Ctrl-C be handled between chunks
  }
  throwIfInterrupted()

  const targets = [
    { name: 'shim:       ioctl() in C under iommufs exec', samples: shim },
    { name: 'frame:      pwrite+pread on dev/iommu from Node', samples: frame },
    { name: 'in-process: dispatch() on a World', samples: inproc },
  ]
  const med = printLatencyTable(targets, 2)
  process.stdout.write(`ratio shim/frame (median):       ${(med[0] / med[1]).toFixed(2)}x\n`)
  process.stdout.write(`ratio frame/in-process (median): ${(med[1] / med[2]).toFixed(1)}x\n`)
  process.stdout.write(`ratio shim/in-process (median):  ${(med[0] / med[2]).toFixed(1)}x\n`)
  return 0
}

runBench('ioctl bench', main)
