/**
 * SMMUv3 guest invalidation throughput, in commands per second, measured in
 * one run:
 *
 *   (1) in process: dispatch() of one HWPT_INVALIDATE_RING request consuming
 *       a full 4096-entry ring (12 index bits), no FUSE;
 *   (2) through the mount: the same request as one binary frame, written to
 *       dev/iommu with write(fd, frame, pos 0) and the reply read with
 *       pread(fd, 0);
 *   (3) through the mount: 4096 single-entry HWPT_INVALIDATE frames;
 *   (4) baseline: a loop that only reads the same 4096 entries (two u64
 *       each) from the buffer;
 *
 * and the ratios (1)/(4) and (2)/(1). The commands are accepted ones
 * (TLBI_NH_VA, ATC_INV with the vDEVICE's vSID), so every one reaches the
 * physical command queue.
 *
 *   make bench        (node dist/bench/invalidate.js [--rounds N])
 *
 * The server is a separate process (`iommufs mount --daemon`), so this process
 * uses synchronous fs calls on the mount. It always unmounts.
 */
import { readSync, writeSync } from 'node:fs'
import { World } from '../src/iommufd/world'
import { loadTopology } from '../src/topology/topology'
import { dispatch } from '../src/uapi/dispatch'
import { decodeReply, encodeRequest } from '../src/uapi/frame'
import { Ioctl, ioctlByName } from '../src/uapi/ioctls'
import { StructValue, encode } from '../src/uapi/layout'
import { IommuSession } from '../src/uapi/session'
import { DEFAULT_TOPOLOGY } from '../src/util/paths'
import { interrupted, median, runBench, throwIfInterrupted, withBenchMount, withDevIommu, yieldToSignals } from './common'

const INDEX_BITS = 12
const ENTRIES = 1 << INDEX_BITS
const ENTRY_LEN = 16
const Q_ADDR = 0x7f0000000000n
const CONS_ADDR = 0x7f0100000000n
const ARM_SMMUV3 = 1n

/** The nesting setup every target gets: vIOMMU 4 with vDEVICE virt_id 0x10 on 0000:00:01.0. */
const SETUP: [string, string][] = [
  ['DEVICE_BIND pci=0000:00:01.0', 'ok out_devid=1'],
  ['IOAS_ALLOC', 'ok out_ioas_id=2'],
  ['HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT', 'ok out_hwpt_id=3'],
  ['DEVICE_ATTACH dev_id=1 pt_id=3', 'ok pt_id=3'],
  ['VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3', 'ok out_viommu_id=4'],
  ['VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10', 'ok out_vdevice_id=5'],
]
const VIOMMU = 4n

function ioctl(name: string): Ioctl {
  const io = ioctlByName(name)
  if (!io) throw new Error(`no ioctl ${name}`)
  return io
}
const RING = ioctl('HWPT_INVALIDATE_RING')
const ARRAY = ioctl('HWPT_INVALIDATE')

/** 4096 commands: even slots TLBI_NH_VA asid=1 addr=slot*4K (leaf), odd slots ATC_INV for vSID 0x10. */
function makeQueue(): Buffer {
  const q = Buffer.alloc(ENTRIES * ENTRY_LEN)
  for (let i = 0; i < ENTRIES; i++) {
    const w0 = i % 2 === 0 ? 0x12n | (1n << 48n) : 0x40n | (0x10n << 32n)
    const w1 = i % 2 === 0 ? (BigInt(i) << 12n) | 1n : 0n
    q.writeBigUInt64LE(w0, i * ENTRY_LEN)
    q.writeBigUInt64LE(w1, i * ENTRY_LEN + 8)
  }
  return q
}

/** The full ring: CONS 0 to PROD 0x1000 (slot 0 with the wrap flag): every entry once. */
function ringStruct(): Buffer {
  const v: StructValue = {
    size: BigInt(RING.layout.size),
    hwpt_id: VIOMMU,
    q_uptr: Q_ADDR,
    q_cons_uptr: CONS_ADDR,
    q_prod: BigInt(ENTRIES),
    q_index_bits: BigInt(INDEX_BITS),
    q_entry_num: BigInt(ENTRIES),
    q_entry_len: BigInt(ENTRY_LEN),
    data_type: ARM_SMMUV3,
  }
  return encode(RING.layout, v)
}

function arrayStruct(): Buffer {
  return encode(ARRAY.layout, { size: BigInt(ARRAY.layout.size), hwpt_id: VIOMMU, data_uptr: Q_ADDR, data_type: ARM_SMMUV3, entry_len: BigInt(ENTRY_LEN), entry_num: 1n })
}

const zeroCons = (): Buffer => Buffer.alloc(4)

function expectCons(cons: number | undefined, what: string): void {
  if (cons !== ENTRIES) throw new Error(`${what}: CONS came back as ${cons}, expected 0x${ENTRIES.toString(16)}`)
}

// ---- (1) in process ----

function inProcess(queue: Buffer): () => void {
  const world = new World(loadTopology(DEFAULT_TOPOLOGY))
  const s = new IommuSession(world)
  for (const [line, want] of SETUP) {
    s.write(0, Buffer.from(`${line}\n`))
    const got = s.read(0, 4096).toString('utf8').trim()
    if (got !== want) throw new Error(`in-process setup: ${line} -> ${got}`)
  }
  const struct = ringStruct()
  return () => {
    const r = dispatch({ ctx: s.ctx }, { cmd: RING.cmd, struct, buffers: new Map([[Q_ADDR, queue], [CONS_ADDR, zeroCons()]]) })
    if (r.errno) throw new Error(`in-process ring: ${r.errno} ${r.message}`)
    expectCons(r.written.get(CONS_ADDR)?.readUInt32LE(0), 'in-process ring')
  }
}

// ---- (2), (3) through the mount ----

const replyBuf = Buffer.alloc(1 << 20)

function exchange(fd: number, data: Buffer): Buffer {
  const n = writeSync(fd, data, 0, data.length, 0)
  if (n !== data.length) throw new Error(`short write: ${n} of ${data.length}`)
  const got = readSync(fd, replyBuf, 0, replyBuf.length, 0)
  return replyBuf.subarray(0, got)
}

function mountSetup(fd: number): void {
  for (const [line, want] of SETUP) {
    const got = exchange(fd, Buffer.from(`${line}\n`)).toString('utf8').trim()
    if (got !== want) throw new Error(`mount setup: ${line} -> ${got}`)
  }
}

function mountRing(fd: number, queue: Buffer): () => void {
  const frame = encodeRequest({ cmd: RING.cmd, target: 0, struct: ringStruct(), buffers: new Map([[Q_ADDR, queue], [CONS_ADDR, zeroCons()]]) })
  return () => {
    const r = decodeReply(exchange(fd, frame))
    if (r.errno) throw new Error(`mount ring: ${r.errnoName} ${r.message}`)
    expectCons(r.buffers.find((b) => b.addr === CONS_ADDR)?.data?.readUInt32LE(0), 'mount ring')
  }
}

function mountSingles(fd: number, queue: Buffer): () => void {
  const struct = arrayStruct()
  const frames = Array.from({ length: ENTRIES }, (_, i) =>
    encodeRequest({ cmd: ARRAY.cmd, target: 0, struct, buffers: new Map([[Q_ADDR, queue.subarray(i * ENTRY_LEN, (i + 1) * ENTRY_LEN)]]) }),
  )
  return () => {
    for (const f of frames) {
      const r = decodeReply(exchange(fd, f))
      if (r.errno) throw new Error(`mount single: ${r.errnoName} ${r.message}`)
    }
  }
}

// ---- (4) baseline ----

let sink = 0n
function baseline(queue: Buffer): () => void {
  return () => {
    let x = 0n
    for (let i = 0; i < ENTRIES; i++) x ^= queue.readBigUInt64LE(i * ENTRY_LEN) ^ queue.readBigUInt64LE(i * ENTRY_LEN + 8)
    sink ^= x
  }
}

// ---- measuring ----

interface Target {
  readonly name: string
  readonly run: () => void
  /** Iterations per round: each runs 4096 commands. */
  readonly reps: number
  readonly rates: number[]
}

/** Commands per second of one round of `t`. */
function round(t: Target): number {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < t.reps; i++) t.run()
  const ns = Number(process.hrtime.bigint() - t0)
  return (t.reps * ENTRIES) / (ns / 1e9)
}

const fmt = (v: number): string => Math.round(v).toLocaleString('en-US')

async function main(): Promise<number> {
  const ri = process.argv.indexOf('--rounds')
  const rounds = ri > 0 ? Number(process.argv[ri + 1]) : 7
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds takes a positive integer')
  const queue = makeQueue()

  return withBenchMount((dir) => withDevIommu(dir, (fd) => measure(fd, queue, rounds)))
}

/** Sets up the mount's context on `fd`, runs `rounds` interleaved rounds of the four targets and prints the table and ratios. */
async function measure(fd: number, queue: Buffer, rounds: number): Promise<number> {
  mountSetup(fd)

  const targets: Target[] = [
    { name: '(1) in-process ring, 4096 entries', run: inProcess(queue), reps: 20, rates: [] },
    { name: '(2) mount, one 4096-entry ring frame', run: mountRing(fd, queue), reps: 10, rates: [] },
    { name: '(3) mount, 4096 single-entry frames', run: mountSingles(fd, queue), reps: 1, rates: [] },
    { name: '(4) baseline: read 4096 entries', run: baseline(queue), reps: 2000, rates: [] },
  ]
  process.stdout.write(`${ENTRIES} SMMUv3 commands (TLBI_NH_VA / ATC_INV vSID 0x10) per iteration; ${rounds} rounds, targets interleaved; median of the rounds\n`)
  for (const t of targets) round(t) // warm-up
  for (let r = 0; r < rounds && !interrupted(); r++) {
    for (const t of targets) t.rates.push(round(t))
    await yieldToSignals() // lets a Ctrl-C be handled between rounds
  }
  throwIfInterrupted()

  const width = Math.max(...targets.map((t) => t.name.length))
  process.stdout.write(`${'target'.padEnd(width)}  ${'commands/s'.padStart(14)}  ${'min'.padStart(14)}  ${'max'.padStart(14)}\n`)
  const med = targets.map((t) => {
    const m = median(t.rates)
    process.stdout.write(`${t.name.padEnd(width)}  ${fmt(m).padStart(14)}  ${fmt(Math.min(...t.rates)).padStart(14)}  ${fmt(Math.max(...t.rates)).padStart(14)}\n`)
    return m
  })
  process.stdout.write(`ratio (1)/(4) in-process ring / baseline read: ${(med[0] / med[3]).toFixed(3)}\n`)
  process.stdout.write(`ratio (2)/(1) mount ring / in-process ring:    ${(med[1] / med[0]).toFixed(3)}\n`)
  process.stdout.write(`ratio (2)/(3) one ring frame / single frames:  ${(med[1] / med[2]).toFixed(1)}\n`)
  if (sink === 0x5a5a5a5an) process.stdout.write('\n') // keeps the baseline's reads observable
  return 0
}

runBench('invalidate', main)
