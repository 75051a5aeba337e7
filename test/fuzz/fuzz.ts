/**
 * The iommufs fuzzer: random and mutated requests, from a seed, against
 *   text   the text codec + dispatcher, in-process (IommuSession lines)
 *   frame  the frame codec + dispatcher, in-process (mutated binary frames)
 *   ioctl  the dispatcher alone (random struct bytes and buffers)
 *   mount  a real mount: lines and frames written to dev/iommu, replies read back
 *   shim   a C program issuing random ioctl()s through the shim (test/c/fuzz-shim.c)
 *   namespace  the same program's ioctl()s as real ones, under exec --namespace's supervisor (as root only)
 * After every input: the reply is one well-formed line or frame, no handler
 * bug reached the trace, and a refused request left the whole world's dump
 * (the mount's view of the context, for the mount) unchanged. A failure
 * prints the seed, the target and the input number, which reproduce it.
 *
 *   node dist/test/fuzz/fuzz.js [--seed N] [--inputs N] [--mount-inputs N] [--shim-inputs N] [--seconds S]
 *
 * Bounded by count and by time (whichever comes first, per target).
 */
import { strict as assert } from 'node:assert'
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, writeSync } from 'node:fs'
import * as path from 'node:path'
import { World } from '../../src/iommufd/world'
import { dispatch } from '../../src/uapi/dispatch'
import { decodeReply, encodeRequest, FRAME_HEADER, FRAME_MAGIC, FrameKind, looksLikeFrame } from '../../src/uapi/frame'
import { IOCTLS, Ioctl } from '../../src/uapi/ioctls'
import { FieldSpec, StructValue, encode } from '../../src/uapi/layout'
import { NAMES } from '../../src/uapi/names'
import { IommuSession } from '../../src/uapi/session'
import { ErrnoError, errnoName } from '../../src/util/errno'
import { iommufs, PACKAGE_ROOT } from '../helpers/cli'
import { defaultMachine, dumpWorld } from '../helpers/iommufd'
import { startMount, TestMount } from '../helpers/mount'

// ---- a seeded generator ----

export class Rng {
  private s: bigint
  constructor(seed: number) {
    this.s = BigInt(seed >>> 0) * 0x9e3779b97f4a7c15n + 1n
  }
  /** splitmix64 */
  next(): bigint {
    this.s = (this.s + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn
    let z = this.s
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn
    return z ^ (z >> 31n)
  }
  int(n: number): number {
    return Number(this.next() % BigInt(n))
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]
  }
  chance(p: number): boolean {
    return this.int(1000) < p * 1000
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }
}

/** Values that sit on edges: zero, one, limits, powers of two, small IDs, all ones. */
function edgyNumber(r: Rng, bits: number): bigint {
  const max = (1n << BigInt(bits)) - 1n
  switch (r.int(8)) {
    case 0:
      return 0n
    case 1:
      return BigInt(1 + r.int(8))
    case 2:
      return max
    case 3:
      return 1n << BigInt(r.int(bits))
    case 4:
      return (1n << BigInt(r.int(bits))) - 1n
    case 5:
      return BigInt(r.int(0x10000)) * 0x1000n & max
    default:
      return r.next() & max
  }
}

const SETUP_LINES = [
  'DEVICE_BIND pci=0000:00:01.0',
  'DEVICE_BIND pci=0000:02:00.0',
  'IOAS_ALLOC',
  'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT',
  'DEVICE_ATTACH dev_id=1 pt_id=3',
  'VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3',
  'VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10',
  'IOAS_MAP ioas_id=2 user_va=0x100000 length=0x2000 flags=READABLE|WRITEABLE',
]

function textValue(r: Rng, f: FieldSpec | undefined): string {
  const set = f?.names ? NAMES[f.names] : undefined
  if (set && r.chance(0.4)) {
    const names = Object.keys(set.values)
    return r.chance(0.8) ? r.pick(names) : `${r.pick(names)}|${r.pick(names)}`
  }
  const bits = f ? (f.type === 'u64' ? 64 : f.type === 'u8' ? 8 : f.type === 'u16' ? 16 : 32) : 64
  const v = edgyNumber(r, bits + (r.chance(0.05) ? 1 : 0))
  switch (r.int(6)) {
    case 0:
      return v.toString(10)
    case 1:
      return `-${v}`
    case 2:
      return Array.from({ length: 1 + r.int(4) }, () => `0x${edgyNumber(r, 64).toString(16)}`).join(',')
    default:
      return `0x${v.toString(16)}`
  }
}

/** A text line: mostly a known command with plausible fields, sometimes garbage. */
export function randomLine(r: Rng): string {
  if (r.chance(0.05)) return r.bytes(r.int(80)).toString('latin1').replace(/\n/g, ' ')
  if (r.chance(0.1)) return r.pick(SETUP_LINES)
  if (r.chance(0.03)) return r.pick(['CONTEXT', 'CONTEXT x', 'RELEASE now', '# comment', '', 'IOAS_ALLOC size=0xffffffff', 'IOAS_ALLOC ' + 'x'.repeat(5000)])
  const io = r.pick(IOCTLS)
  const name = r.pick([io.name, io.short, io.short.toLowerCase(), `${io.short}_X`])
  const fields = io.layout.fields
  const parts = [name]
  for (let i = r.int(5); i > 0; i--) {
    const f = r.chance(0.85) ? r.pick(fields) : undefined
    const key = f ? f.name.replace(/_(uptr|ptr)$/, r.chance(0.5) ? '' : '$&') : r.pick(['pci', 'dev_id', 'cmd', 'entry', 'data.ste', 'bogus', '=', 'size'])
    const value = key === 'pci' ? r.pick(['0000:00:01.0', '0000:02:01.0', '0000:ff:00.0', 'x']) : key === 'cmd' ? r.pick(['TLBI_NH_ALL', 'CFGI_CD,sid=0x10,ssid=0', 'SYNC', 'ATC_INV,sid=0x10,size=1', 'BOGUS']) : textValue(r, f)
    parts.push(r.chance(0.03) ? key : `${key}=${value}`)
  }
  return parts.join(' ')
}

/** A frame: a valid request for a random ioctl with random fields and buffers, then maybe mutated. */
export function randomFrame(r: Rng): Buffer {
  const io = r.pick(IOCTLS)
  const values: StructValue = {}
  for (const f of io.layout.fields) {
    if (r.chance(0.5)) continue
    const bits = f.type === 'u64' ? 64 : f.type === 'u8' ? 8 : f.type === 'u16' ? 16 : 32
    values[f.name] = f.count > 1 ? Array.from({ length: f.count }, () => edgyNumber(r, bits)) : edgyNumber(r, bits)
  }
  if (r.chance(0.7)) values[io.layout.fields[0].name] = BigInt(r.chance(0.8) ? io.layout.size : r.int(io.layout.size + 16))
  const buffers = new Map<bigint, Buffer | 'fault'>()
  for (const f of io.layout.fields.filter((x) => x.pointer)) {
    if (!r.chance(0.6)) continue
    const addr = 0x7f0000000000n + BigInt(r.int(16)) * 0x10000n
    values[f.name] = addr
    buffers.set(addr, r.chance(0.1) ? 'fault' : r.bytes(r.int(256)))
  }
  let frame = encodeRequest({ cmd: io.cmd, target: r.chance(0.1) ? r.int(8) : 0, struct: encode(io.layout, values), buffers })
  if (r.chance(0.4)) frame = mutate(r, frame)
  return frame
}

/** Bit flips, byte sets, truncation or extension, keeping the magic most of the time. */
function mutate(r: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b)
  for (let i = 1 + r.int(4); i > 0; i--) {
    const at = r.chance(0.5) ? r.int(Math.min(out.length, FRAME_HEADER)) : r.int(out.length)
    if (at < 4 && r.chance(0.8)) continue
    if (r.chance(0.5)) out[at] ^= 1 << r.int(8)
    else out[at] = r.int(256)
  }
  if (r.chance(0.1)) return out.subarray(0, r.int(out.length))
  if (r.chance(0.1)) return Buffer.concat([out, r.bytes(r.int(64))])
  return out
}

// ---- checks ----

const LINE_REPLY = /^(ok( [a-z_0-9.]+=\S*)*|err E[A-Z0-9]+ [^\n]*)$/

export function checkLineReply(reply: string): boolean {
  return reply.endsWith('\n') && reply.indexOf('\n') === reply.length - 1 && LINE_REPLY.test(reply.slice(0, -1))
}

/** One well-formed REPLY or RETRY frame filling `buf` exactly; returns whether it refused. */
export function checkFrameReply(buf: Buffer): { refused: boolean } {
  assert.ok(buf.length >= FRAME_HEADER, `reply of ${buf.length} bytes: shorter than a frame header`)
  assert.equal(buf.readUInt32LE(8), buf.length, 'reply total_len is not the reply length')
  const d = decodeReply(buf)
  assert.ok(d.kind === FrameKind.REPLY || d.kind === FrameKind.RETRY, `reply kind ${d.kind}`)
  if (d.kind === FrameKind.REPLY && d.errno) assert.ok(errnoName(d.errno), `reply errno ${d.errno} has no name`)
  return { refused: d.kind === FrameKind.REPLY && d.errno !== 0 }
}

/**
 * The replies to one write: a write may carry several requests (a frame
 * followed by more bytes), each answered by one frame or one line, in order.
 * Returns whether every one of them refused (only then must nothing change).
 */
export function checkReplies(buf: Buffer): { refused: boolean; count: number } {
  let refused = true
  let count = 0
  for (let off = 0; off < buf.length; count++) {
    const rest = buf.subarray(off)
    if (rest.length >= 4 && rest.readUInt32LE(0) === FRAME_MAGIC) {
      assert.ok(rest.length >= FRAME_HEADER, 'a reply frame cut short')
      const len = rest.readUInt32LE(8)
      assert.ok(len >= FRAME_HEADER && len <= rest.length, `reply frame total_len ${len} with ${rest.length} bytes left`)
      refused &&= checkFrameReply(rest.subarray(0, len)).refused
      off += len
    } else {
      const nl = rest.indexOf(0x0a)
      assert.ok(nl >= 0, `reply bytes without a newline: ${JSON.stringify(rest.subarray(0, 100).toString('latin1'))}`)
      const line = rest.subarray(0, nl + 1).toString('utf8')
      if (!checkLineReply(line)) throw new Found(`malformed reply line ${show(line)}`)
      refused &&= line.startsWith('err ')
      off += nl + 1
    }
  }
  return { refused, count }
}

export interface FuzzFailure {
  target: string
  seed: number
  input: number
  what: string
  request: string
}

class Found extends Error {}

/** An in-process world, its sessions and the dump of its state. */
class Harness {
  world = new World(defaultMachine())
  session = new IommuSession(this.world)
  private dump = dumpWorld(this.world)
  private bugs = 0

  /** Checks the state after an input: unchanged when refused, no handler bug. */
  after(refused: boolean): void {
    const bugs = this.world.trace.recent().filter((l) => / bug: /.test(l)).length
    if (bugs !== this.bugs) throw new Found(`a handler bug reached the trace: ${this.world.trace.recent().filter((l) => / bug: /.test(l)).pop()}`)
    const now = dumpWorld(this.world)
    if (refused && now !== this.dump) throw new Found('a refused request changed the world')
    this.dump = now
  }

  /** A new open of dev/iommu in place of the current one (which may hold a partial frame). */
  renew(): void {
    this.session.release()
    this.session = new IommuSession(this.world)
    this.dump = dumpWorld(this.world)
  }

  /** A fresh world once this one has grown (keeps dumps small) or its context was released. */
  maybeReset(r: Rng): void {
    const ctx = this.session.ctx
    // small worlds keep the dump (taken after every input) cheap
    if (this.world.contexts.has(ctx.id) && ctx.objects.size < 24 && !r.chance(0.004)) return
    this.world = new World(defaultMachine())
    this.session = new IommuSession(this.world)
    this.dump = dumpWorld(this.world)
    this.bugs = 0
  }
}

/** Whether `b` leaves a frame waiting for more bytes (its header, or its total_len, is not all there). */
function incompleteFrame(b: Buffer): boolean {
  let off = 0
  // a write may hold a frame, then more: only the last piece can be left waiting
  while (off < b.length) {
    const rest = b.subarray(off)
    if (!looksLikeFrame(rest)) {
      const nl = rest.indexOf(0x0a)
      if (nl < 0) return true
      off += nl + 1
      continue
    }
    if (rest.length < FRAME_HEADER) return true
    const total = rest.readUInt32LE(8)
    if (total < FRAME_HEADER || total > rest.length) return true
    off += total
  }
  return false
}

function show(x: string | Buffer): string {
  return typeof x === 'string' ? JSON.stringify(x.slice(0, 300)) : x.subarray(0, 200).toString('hex')
}

/** Runs `count` inputs (or until `deadline`) against one in-process target. */
export function fuzzInProcess(target: 'text' | 'frame' | 'ioctl', seed: number, count: number, deadline: number): number {
  const r = new Rng(seed)
  const h = new Harness()
  let n = 0
  for (; n < count && (n % 256 || Date.now() < deadline); n++) {
    h.maybeReset(r)
    let req: string | Buffer = ''
    try {
      if (target === 'text') {
        req = randomLine(r)
        let reply: string
        try {
          h.session.write(0, Buffer.from(`${req}\n`))
          reply = h.session.read(0, 1 << 20).toString('utf8')
        } catch (e) {
          if (!(e instanceof ErrnoError)) throw e
          h.after(true)
          continue
        }
        // a blank or comment line has no reply: the previous one is still there, and nothing ran
        if (!req.trim() || req.trim().startsWith('#')) {
          h.after(true)
          continue
        }
        if (!checkLineReply(reply)) throw new Found(`malformed reply ${show(reply)}`)
        h.after(reply.startsWith('err '))
      } else if (target === 'frame') {
        req = randomFrame(r)
        let written = false
        try {
          h.session.write(0, req)
          written = true
        } catch (e) {
          if (!(e instanceof ErrnoError)) throw e
        }
        const reply = written ? h.session.read(0, 1 << 26) : Buffer.alloc(0)
        const refused = reply.length ? checkReplies(reply).refused : true
        h.after(refused)
        // an incomplete frame waits for the rest: drop it with a fresh session
        if (!written || incompleteFrame(req)) h.renew()
      } else {
        const io = r.pick(IOCTLS)
        const struct = r.chance(0.5) ? r.bytes(r.int(io.layout.size + 24)) : randomFrameStruct(r, io)
        const buffers = new Map<bigint, Buffer | 'fault'>()
        for (let i = r.int(3); i > 0; i--) buffers.set(BigInt(r.int(4)) * 0x1000n, r.chance(0.2) ? 'fault' : r.bytes(r.int(128)))
        req = struct
        const reply = dispatch({ ctx: h.session.ctx, contextById: (id) => h.world.contexts.get(id) }, { cmd: io.cmd, struct, buffers })
        h.after(reply.errno !== undefined || reply.needs !== undefined)
      }
    } catch (e) {
      const what = e instanceof Found ? e.message : `threw ${e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 3).join(' | ') : String(e)}`
      throw Object.assign(new Error(`fuzz ${target} seed=${seed} input=${n}: ${what}; request ${show(req)}`), { failure: { target, seed, input: n, what, request: show(req) } })
    }
  }
  return n
}

function randomFrameStruct(r: Rng, io: Ioctl): Buffer {
  const b = r.bytes(io.layout.size)
  b.writeUInt32LE(r.chance(0.8) ? io.layout.size : r.int(io.layout.size * 2 + 1), 0)
  return b
}

// ---- through a real mount ----

/** What the mount shows of context `ctx`: every file of its debug directory. */
function mountView(m: TestMount, ctx: string): string {
  const out: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const p = path.join(dir, name)
      if (statSync(p).isDirectory()) walk(p)
      // a queue file is its descriptor: a read takes records (and wants whole ones), so it is no view
      else if (name !== 'queue' && statSync(p).mode & 0o444) out.push(`== ${name}\n${readFileSync(p, 'latin1')}`)
    }
  }
  walk(m.path(`sys/kernel/debug/iommufd/${ctx}`))
  return out.join('')
}

export async function fuzzMount(seed: number, count: number, deadline: number): Promise<number> {
  const r = new Rng(seed)
  const m = await startMount()
  let n = 0
  let req: string | Buffer = ''
  try {
    const open = (): { fd: number; ctx: string } => {
      const fd = openSync(m.path('dev/iommu'), 'r+')
      writeSync(fd, Buffer.from('CONTEXT\n'), 0, 8, 0)
      const b = Buffer.alloc(256)
      const ctx = /^ok id=(\d+)/.exec(b.subarray(0, readSync(fd, b, 0, b.length, 0)).toString())![1]
      return { fd, ctx }
    }
    let cur = open()
    let view = mountView(m, cur.ctx)
    const buf = Buffer.alloc(1 << 20)
    for (; n < count && (n % 64 || Date.now() < deadline); n++) {
      const text = r.chance(0.6)
      req = text ? randomLine(r) : randomFrame(r)
      if (text && (/RELEASE/i.test(req as string) || !(req as string).trim() || (req as string).trim().startsWith('#'))) continue
      const data = text ? Buffer.from(`${req}\n`) : (req as Buffer)
      let refused = true
      let reply: Buffer | undefined
      try {
        writeSync(cur.fd, data, 0, data.length, 0)
        reply = buf.subarray(0, readSync(cur.fd, buf, 0, buf.length, 0))
      } catch (e) {
        if (!(e instanceof Error && 'code' in e)) throw e
      }
      const incomplete = !text && incompleteFrame(req as Buffer)
      if (reply?.length) {
        if (text) {
          if (!checkLineReply(reply.toString('utf8'))) throw new Found(`malformed reply ${show(reply.toString('utf8'))}`)
          refused = reply.toString('utf8').startsWith('err ')
        } else refused = checkReplies(reply).refused
      }
      const now = mountView(m, cur.ctx)
      if (refused && now !== view) throw new Found('a refused request changed what the mount shows of the context')
      view = now
      // a half-sent frame stays pending on the descriptor, and a grown context makes views slow: start afresh
      if (incomplete || view.length > 64 << 10 || r.chance(0.002)) {
        closeSync(cur.fd)
        cur = open()
        view = mountView(m, cur.ctx)
      }
    }
    closeSync(cur.fd)
    // the server is alive and serving
    assert.equal(readFileSync(m.path('sys/class/iommu/dmar0/intel-vtd/model'), 'utf8'), '1\n')
  } catch (e) {
    const what = e instanceof Found ? e.message : e instanceof Error ? e.message : String(e)
    throw new Error(`fuzz mount seed=${seed} input=${n}: ${what}; request ${show(req)}`)
  } finally {
    await m.stop()
  }
  return n
}

// ---- through the shim ----

export const FUZZ_SHIM = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'fuzz-shim')

/** `namespace`: the program runs under exec --namespace, its ioctl()s real ones (and its descriptor-making ones the supervisor's). */
export async function fuzzShim(seed: number, count: number, seconds: number, namespace = false): Promise<number> {
  const m = await startMount()
  try {
    const r = await iommufs(['exec', '--mount', m.dir, ...(namespace ? ['--namespace'] : []), '--', FUZZ_SHIM, String(seed), String(count), String(Math.max(1, Math.ceil(seconds)))])
    if (r.code !== 0) throw new Error(`fuzz ${namespace ? 'namespace' : 'shim'} seed=${seed}: exit ${r.code}: ${(r.stdout + r.stderr).trim().split('\n').slice(-5).join(' | ')}`)
    const done = /^inputs (\d+)$/m.exec(r.stdout)
    assert.ok(done, `fuzz-shim printed no count: ${r.stdout}`)
    assert.equal(readFileSync(m.path('sys/class/iommu/dmar0/intel-vtd/model'), 'utf8'), '1\n')
    return Number(done[1])
  } finally {
    await m.stop()
  }
}

// ---- command line ----

interface Options {
  /** Only this target (text, frame, ioctl, mount, shim, namespace), to run targets as parallel processes. */
  only?: string
  seed: number
  inputs: number
  mountInputs: number
  shimInputs: number
  seconds: number
}

function parseArgs(argv: string[]): Options {
  const o: Options = { seed: 1, inputs: 30000, mountInputs: 2000, shimInputs: 2000, seconds: 60 }
  const keys: Record<string, Exclude<keyof Options, 'only'>> = { '--seed': 'seed', '--inputs': 'inputs', '--mount-inputs': 'mountInputs', '--shim-inputs': 'shimInputs', '--seconds': 'seconds' }
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--only' && ['text', 'frame', 'ioctl', 'mount', 'shim', 'namespace'].includes(argv[i + 1])) {
      o.only = argv[i + 1]
      continue
    }
    const k = keys[argv[i]]
    const v = Number(argv[i + 1])
    if (!k || !Number.isFinite(v) || v < 0) throw new Error(`usage: fuzz [--only TARGET] [--seed N] [--inputs N] [--mount-inputs N] [--shim-inputs N] [--seconds S] (bad ${argv[i]} ${argv[i + 1] ?? ''})`)
    o[k] = v
  }
  return o
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2))
  const started = Date.now()
  // the time budget is shared: half in-process, a quarter each for the mount and the shim
  const share = (f: number): number => started + o.seconds * 1000 * f
  const runs = (t: string): boolean => !o.only || o.only === t
  const inProcess = (['text', 'frame', 'ioctl'] as const).filter(runs)
  const per = Math.ceil(o.inputs / Math.max(1, inProcess.length))
  const t0 = Date.now()
  let total = 0
  for (const [i, target] of (['text', 'frame', 'ioctl'] as const).entries()) {
    if (!runs(target)) continue
    const n = fuzzInProcess(target, o.seed + i, per, o.only ? share(1) : share((i + 1) / 6))
    total += n
    process.stdout.write(`${target}: ${n} inputs\n`)
  }
  process.stdout.write(`in-process: ${total} inputs in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`)
  const t1 = Date.now()
  const mn = o.mountInputs && runs('mount') ? await fuzzMount(o.seed + 3, o.mountInputs, o.only ? share(1) : share(0.75)) : 0
  process.stdout.write(`mount: ${mn} inputs in ${((Date.now() - t1) / 1000).toFixed(1)} s\n`)
  const t2 = Date.now()
  const sn = o.shimInputs && runs('shim') ? await fuzzShim(o.seed + 4, o.shimInputs, Math.max(1, (share(o.only ? 1 : 0.9) - Date.now()) / 1000)) : 0
  process.stdout.write(`shim: ${sn} ioctls in ${((Date.now() - t2) / 1000).toFixed(1)} s\n`)
  // half as many as real ioctl()s: each descriptor-making one and each TEST_CMD visits the supervisor
  const t3 = Date.now()
  const nn = o.shimInputs && runs('namespace') && process.getuid?.() === 0 ? await fuzzShim(o.seed + 5, Math.ceil(o.shimInputs / 2), Math.max(1, (share(1) - Date.now()) / 1000), true) : 0
  process.stdout.write(`namespace: ${nn} ioctls in ${((Date.now() - t3) / 1000).toFixed(1)} s\n`)
  process.stdout.write(`seed ${o.seed}: no failure\n`)
  return 0
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
      process.exit(1)
    },
  )
}
