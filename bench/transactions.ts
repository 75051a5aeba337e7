/**
 * Requests per second for a cheap request, IOMMU_IOAS_IOVA_RANGES, in one run:
 *   mount, text:       "IOAS_IOVA_RANGES ioas_id=N" written and its reply line read back on
 *                      one dev/iommu descriptor (pwrite + pread at offset 0)
 *   mount, frame:      the same ioctl as a binary frame, same descriptor pattern
 *   in-process, text:  the same line through IommuSession.write/read on a World, no FUSE
 *   in-process, frame: the same frame through IommuSession.write/read, no FUSE
 * The context is the same in all four: one SMMUv3 device attached to the IOAS,
 * so the reply carries two ranges. Measured requests run in alternating chunks
 * so every target sees the same machine state.
 *
 *   make bench        (node dist/bench/transactions.js)
 *
 * The server is a separate process (`iommufs mount --daemon`), so this process
 * may use synchronous fs calls on the mount. It always unmounts.
 */
import { readSync, writeSync } from 'node:fs'
import { World } from '../src/iommufd/world'
import { decodeReply, encodeRequest } from '../src/uapi/frame'
import { ioctlByName } from '../src/uapi/ioctls'
import { decode, encode } from '../src/uapi/layout'
import { IommuSession } from '../src/uapi/session'
import { loadTopology } from '../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../src/util/paths'
import { interrupted, runBench, throwIfInterrupted, withBenchMount, withDevIommu, yieldToSignals } from './common'

const WARMUP = 500
const ITERATIONS = 20000
const CHUNK = 500
const RANGES = ioctlByName('IOAS_IOVA_RANGES')!
/** The out buffer's address in the frame (only the address travels; the reply carries the data). */
const RANGES_AT = 0x7f0000010000n
const SETUP = ['DEVICE_BIND pci=0000:00:01.0', 'IOAS_ALLOC', 'DEVICE_ATTACH dev_id=1 pt_id=2']
const IOAS_ID = 2
const LINE = Buffer.from(`IOAS_IOVA_RANGES ioas_id=${IOAS_ID} num_iovas=4\n`)
const EXPECTED_LINE = 'ok num_iovas=2 out_iova_alignment=0x1000 allowed_iovas=0x0,0x7ffffff,0x8100000,0xffffffffffff\n'
const FRAME = encodeRequest({
  cmd: RANGES.cmd,
  target: 0,
  struct: encode(RANGES.layout, { size: BigInt(RANGES.layout.size), ioas_id: BigInt(IOAS_ID), num_iovas: 4n, allowed_iovas: RANGES_AT }),
  buffers: new Map(),
})

const buf = Buffer.alloc(64 * 1024)

/** One way to send a request and read its reply; returns the reply bytes (a view valid until the next call). */
interface Target {
  name: string
  send(req: Buffer): Buffer
  line: boolean
  ns: bigint
  count: number
}

function checkLine(name: string, reply: Buffer): void {
  if (reply.toString() !== EXPECTED_LINE) throw new Error(`${name}: unexpected reply ${JSON.stringify(reply.toString())}`)
}

function checkFrame(name: string, reply: Buffer): void {
  const r = decodeReply(reply)
  const out = decode(RANGES.layout, Buffer.concat([r.struct, Buffer.alloc(RANGES.layout.size)]).subarray(0, RANGES.layout.size))
  if (r.errno !== 0 || out.num_iovas !== 2n || r.buffers.length !== 1 || r.buffers[0].len !== 32) {
    throw new Error(`${name}: unexpected frame reply errno=${r.errno} num_iovas=${out.num_iovas} ${r.message}`)
  }
}

function mountSend(fd: number): (req: Buffer) => Buffer {
  return (req) => {
    writeSync(fd, req, 0, req.length, 0)
    const n = readSync(fd, buf, 0, buf.length, 0)
    return buf.subarray(0, n)
  }
}

function sessionSend(s: IommuSession): (req: Buffer) => Buffer {
  return (req) => {
    s.write(0, req)
    return s.read(0, buf.length)
  }
}

async function main(): Promise<number> {
  return withBenchMount((dir) => withDevIommu(dir, measure))
}

/** Sets up both contexts, runs the four targets in alternating chunks and prints the table and ratios; `fd` is the mount's dev/iommu. */
async function measure(fd: number): Promise<number> {
  const session = new IommuSession(new World(loadTopology(DEFAULT_TOPOLOGY)))
  const mount = mountSend(fd)
  const local = sessionSend(session)
  for (const l of SETUP) {
    for (const [name, send] of [['mount', mount], ['in-process', local]] as const) {
      const r = send(Buffer.from(`${l}\n`)).toString()
      if (!r.startsWith('ok')) throw new Error(`${name} setup: ${l} -> ${r.trim()}`)
    }
  }

  const targets: Target[] = [
    { name: 'mount, text line', send: mount, line: true, ns: 0n, count: 0 },
    { name: 'mount, binary frame', send: mount, line: false, ns: 0n, count: 0 },
    { name: 'in-process, text line', send: local, line: true, ns: 0n, count: 0 },
    { name: 'in-process, binary frame', send: local, line: false, ns: 0n, count: 0 },
  ]
  for (const t of targets) {
    const req = t.line ? LINE : FRAME
    const check = t.line ? checkLine : checkFrame
    check(t.name, t.send(req))
    for (let i = 0; i < WARMUP; i++) t.send(req)
  }

  process.stdout.write(`request: ${LINE.toString().trim()} (frame: ${FRAME.length} bytes); ${WARMUP} warm-up + ${ITERATIONS} measured each, in chunks of ${CHUNK}\n`)
  for (let done = 0; done < ITERATIONS && !interrupted(); done += CHUNK) {
    for (const t of targets) {
      const req = t.line ? LINE : FRAME
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < CHUNK; i++) t.send(req)
      t.ns += process.hrtime.bigint() - t0
      t.count += CHUNK
    }
    await yieldToSignals() // lets a Ctrl-C be handled between chunks
  }
  throwIfInterrupted()
  for (const t of targets) (t.line ? checkLine : checkFrame)(t.name, t.send(t.line ? LINE : FRAME))

  const rate = (t: Target): number => t.count / (Number(t.ns) / 1e9)
  const width = Math.max(...targets.map((t) => t.name.length))
  process.stdout.write(`${'target'.padEnd(width)}  ${'requests/s'.padStart(12)}  ${'µs/request'.padStart(11)}\n`)
  for (const t of targets) {
    process.stdout.write(`${t.name.padEnd(width)}  ${rate(t).toFixed(0).padStart(12)}  ${(1e6 / rate(t)).toFixed(2).padStart(11)}\n`)
  }
  const [mt, mf, lt, lf] = targets.map(rate)
  process.stdout.write(`ratio in-process/mount, text:   ${(lt / mt).toFixed(1)}x\n`)
  process.stdout.write(`ratio in-process/mount, frame:  ${(lf / mf).toFixed(1)}x\n`)
  process.stdout.write(`ratio frame/text through the mount: ${(mf / mt).toFixed(2)}x\n`)
  process.stdout.write(`ratio frame/text in-process:        ${(lf / lt).toFixed(2)}x\n`)
  return 0
}

runBench('transactions', main)
