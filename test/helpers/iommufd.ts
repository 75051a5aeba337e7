/**
 * In-process helpers for the iommufd model: a world on the default machine,
 * a dev/iommu session driven by text lines or by ioctl structs, and a dump of
 * everything a request could change, so a test can check that a failing
 * request changed nothing.
 *
 *   const t = new IommuBench()
 *   const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
 *   t.err('IOAS_ALLOC flags=1', 'EOPNOTSUPP')   // also asserts the dump is unchanged
 */
import { strict as assert } from 'node:assert'
import { FallibleStep, failNth } from '../../src/util/fail-nth'
import { debugTree } from '../../src/fs/debug-tree'
import { FsNode } from '../../src/fs/nodes'
import { Machine } from '../../src/hw/machine'
import { Smmuv3 } from '../../src/hw/smmuv3/smmuv3'
import { PciDevice } from '../../src/hw/unit'
import { Vtd } from '../../src/hw/vtd/vtd'
import { IommufdContext } from '../../src/iommufd/context'
import { World } from '../../src/iommufd/world'
import { IoctlReply, dispatch } from '../../src/uapi/dispatch'
import { Ioctl, ioctlByName } from '../../src/uapi/ioctls'
import { StructValue, decode, encode } from '../../src/uapi/layout'
import { IommuSession, VfioDeviceSession } from '../../src/uapi/session'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'

/** The default machine's devices, by role. */
export const DEV = {
  /** smmu3.0x0000000009050000, StreamID 0x8 */
  smmu0a: '0000:00:01.0',
  /** smmu3.0x0000000009050000, StreamID 0x10 */
  smmu0b: '0000:00:02.0',
  /** smmu3.0x0000000009060000, StreamID 0x100 */
  smmu1a: '0000:01:00.0',
  /** smmu3.0x0000000009060000, StreamID 0x108 */
  smmu1b: '0000:01:01.0',
  /** dmar0 */
  vtdA: '0000:02:00.0',
  /** dmar0 */
  vtdB: '0000:02:01.0',
} as const

export const SMMU0 = 'smmu3.0x0000000009050000'
export const SMMU1 = 'smmu3.0x0000000009060000'
export const DMAR0 = 'dmar0'
export const U64_MAX = (1n << 64n) - 1n

/** The fields of an `ok k=v ...` reply line. */
export type Fields = Record<string, string>

export function parseOk(line: string): Fields {
  assert.match(line, /^ok( |$)/, `expected an ok reply, got: ${line}`)
  const out: Fields = {}
  for (const tok of line.split(' ').slice(1)) {
    const eq = tok.indexOf('=')
    out[tok.slice(0, eq)] = tok.slice(eq + 1)
  }
  return out
}

/**
 * Every readable file under a debug-tree node, rendered: "== path" then its
 * bytes (latin1, so binary files such as a vCMDQ ring compare exactly).
 * `trace` and `trace.json` (which grow with every request) are left out.
 */
export function renderTree(node: FsNode, at: string, out: string[]): void {
  if (node.kind === 'dir') {
    for (const name of node.names()) {
      if (at === '' && (name === 'trace' || name === 'trace.json')) continue
      renderTree(node.child(name)!, `${at}/${name}`, out)
    }
  } else if (node.kind === 'file') {
    // write-only files (a vCMDQ's `cmd`) have nothing to show; reading an event queue would consume it
    if (node.mode & 0o444 && !at.endsWith('/queue')) out.push(`== ${at}\n${node.open('read').read(0, 1 << 22).toString('latin1')}`)
  } else {
    out.push(`== ${at} -> ${node.target}`)
  }
}

/**
 * Everything a request can change, as text: the whole debug tree (every live
 * context's `objects` summary, `graph.dot` and each object's describe() lines;
 * each IOMMU's programmed stream/PASID table and VMIDs), plus the state the
 * tree does not show: device ownership, compat IOAS, RLIMIT mode, ID pools.
 */
export function dumpWorld(world: World): string {
  const out: string[] = []
  renderTree(debugTree(world), '', out)
  for (const ctx of world.contexts.values()) {
    out.push(`== ctx ${ctx.id}: vfio_ioas=${ctx.vfioIoas?.id ?? '-'} rlimit_mode=${ctx.rlimitMode} tombstones=${ctx.objects.tombstones().join(',')}`)
  }
  for (const d of world.machine.devices) out.push(`== owner ${d.bdf}: ${world.ownerOf(d)?.id ?? '-'}`)
  for (const u of world.machine.units) {
    if (u instanceof Smmuv3) out.push(`== ${u.name}: vmids=${u.vmids.inUse} asids=${u.asids.inUse}`)
    if (u instanceof Vtd) out.push(`== ${u.name}: domains_used=${u.domainsUsed}`)
  }
  return out.join('\n')
}

export function defaultMachine(): Machine {
  return loadTopology(DEFAULT_TOPOLOGY)
}

/** A dev/iommu open on a world (the default machine unless given), driven in-process. */
export class IommuBench {
  readonly world: World
  readonly session: IommuSession

  constructor(world?: World) {
    this.world = world ?? new World(defaultMachine())
    this.session = new IommuSession(this.world)
  }

  get ctx(): IommufdContext {
    return this.session.ctx
  }

  /** Another open of dev/iommu on the same world (a second context). */
  open(): IommuBench {
    return new IommuBench(this.world)
  }

  dump(): string {
    return dumpWorld(this.world)
  }

  /** Writes one text line and returns the reply line (without newline). */
  send(line: string): string {
    this.session.write(0, Buffer.from(`${line}\n`))
    const r = this.session.read(0, 1 << 20).toString('utf8')
    assert.ok(r.endsWith('\n') && r.indexOf('\n') === r.length - 1, `one reply line expected for ${line}: ${JSON.stringify(r)}`)
    return r.slice(0, -1)
  }

  /** Sends a line that must succeed; returns its fields. */
  ok(line: string): Fields {
    return parseOk(this.send(line))
  }

  /** Sends a line that must succeed and returns the decimal field `key`. */
  id(line: string, key: string): number {
    const v = this.ok(line)[key]
    assert.ok(v !== undefined, `${line}: no ${key} in the reply`)
    return Number(v)
  }

  /**
   * Sends a line that must fail with `errno`, and asserts that it changed
   * nothing (the dump before and after are equal). Returns the message.
   */
  err(line: string, errno: string, message?: RegExp): string {
    const before = this.dump()
    const r = this.send(line)
    const m = /^err (\S+) (.*)$/.exec(r)
    assert.ok(m, `expected err ${errno} for ${line}, got: ${r}`)
    assert.equal(m[1], errno, `${line} -> ${r}`)
    if (message) assert.match(m[2], message, `${line} -> ${r}`)
    assert.equal(this.dump(), before, `${line} failed with ${errno} but changed the state`)
    return m[2]
  }

  /**
   * One ioctl through the dispatcher, as a program issues it: `values` fill
   * the struct (size defaults to the struct's size), `struct` overrides the
   * bytes entirely. A failing call is checked to change nothing, unless
   * `failureHasEffect` (the kernel's few failures that leave a trace, as
   * TRIGGER_VEVENT's ENOMEM, which queues a LOST_EVENTS header).
   */
  ioctl(name: string, values: StructValue, opts: { struct?: Buffer; buffers?: Map<bigint, Buffer | 'fault'>; device?: string; failureHasEffect?: boolean } = {}): IoctlReply {
    const io = ioctlOf(name)
    const struct = opts.struct ?? structBytes(io, values)
    const before = this.dump()
    const reply = dispatch({ ctx: this.ctx }, { cmd: io.cmd, struct, buffers: opts.buffers ?? new Map(), device: opts.device ? this.pci(opts.device) : undefined })
    if (reply.errno && !opts.failureHasEffect) assert.equal(this.dump(), before, `${name} failed with ${reply.errno} but changed the state`)
    return reply
  }

  /** Decodes the struct a reply wrote back (zero-extended to the full layout). */
  out(name: string, reply: IoctlReply): StructValue {
    const L = ioctlOf(name).layout
    assert.ok(reply.struct, `${name}: nothing written back (${reply.errno} ${reply.message})`)
    const full = Buffer.alloc(Math.max(L.size, reply.struct.length))
    reply.struct.copy(full)
    return decode(L, full)
  }

  pci(bdf: string): PciDevice {
    const d = this.world.machine.device(bdf)
    assert.ok(d, `no device ${bdf}`)
    return d
  }

  /** DEVICE_BIND pci=<bdf> -> dev_id. */
  bind(bdf: string): number {
    return this.id(`DEVICE_BIND pci=${bdf}`, 'out_devid')
  }

  /** A dev/vfio/devices/vfio<N> open for `bdf`, bound to this context through its own file. */
  vfioBind(bdf: string): { session: VfioDeviceSession; devId: number } {
    const session = new VfioDeviceSession(this.world, this.pci(bdf))
    session.write(0, Buffer.from(`DEVICE_BIND iommufd=${this.ctx.id}\n`))
    const devId = Number(parseOk(session.read(0, 4096).toString('utf8').trim()).out_devid)
    return { session, devId }
  }

  /** The describe() lines of object `id`, as a map. */
  describe(id: number): Map<string, string> {
    const o = this.ctx.objects.find(id)
    assert.ok(o, `no object ${id}`)
    return new Map(o.describe())
  }

  /** IDs and types of the live objects, "1:device 2:ioas ...". */
  objects(): string {
    return this.ctx.objects
      .objects()
      .map((o) => `${o.id}:${o.type}`)
      .join(' ')
  }

  /** A debug file of a physical IOMMU (stream_table, pasid_table). */
  hw(unit: string, file: string): string {
    const u = this.world.machine.unit(unit)
    assert.ok(u, `no unit ${unit}`)
    const f = u.debugFiles()[file]
    assert.ok(f, `${unit} has no debug file ${file}`)
    return f.show()
  }

  smmu(name: string): Smmuv3 {
    const u = this.world.machine.unit(name)
    assert.ok(u instanceof Smmuv3, `${name} is not an SMMUv3`)
    return u
  }

  vtd(name: string = DMAR0): Vtd {
    const u = this.world.machine.unit(name)
    assert.ok(u instanceof Vtd, `${name} is not a VT-d unit`)
    return u
  }

  /** Closes this dev/iommu (destroys the context). */
  close(): void {
    this.session.release()
  }
}

export function ioctlOf(name: string): Ioctl {
  const io = ioctlByName(name)
  assert.ok(io, `no ioctl ${name}`)
  return io
}

/** The struct bytes of `values` with `size` (or `argsz`) set to the struct's size unless given. */
export function structBytes(io: Ioctl, values: StructValue): Buffer {
  const sizeField = io.layout.fields[0].name
  return encode(io.layout, { [sizeField]: BigInt(io.layout.size), ...values })
}

/** Little-endian u64 words as a buffer. */
export function u64s(...words: bigint[]): Buffer {
  const b = Buffer.alloc(words.length * 8)
  words.forEach((w, i) => b.writeBigUInt64LE(w, i * 8))
  return b
}

/**
 * The standard SMMUv3 nesting setup on `bdf` in `t`: bind, IOAS, NEST_PARENT
 * HWPT, attach to it, vIOMMU. Returns the IDs.
 */
export function smmuNestSetup(t: IommuBench, bdf: string = DEV.smmu0a): { dev: number; ioas: number; parent: number; viommu: number } {
  const dev = t.bind(bdf)
  const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
  t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent}`)
  const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
  return { dev, ioas, parent, viommu }
}

/** STE words: V=1 and the given Config (0 abort, 4 bypass, 5 S1 translate). */
export function ste(cfg: number, word1 = 0n, extra0 = 0n): string {
  return `0x${(1n | (BigInt(cfg) << 1n) | extra0).toString(16)},0x${word1.toString(16)}`
}

/** Runs `f` with a fault injected at its first step, its second, ... until the step that fails is `step`; what `f` returned then. */
export function failingAt<T>(step: FallibleStep, f: () => T): T {
  for (let n = 1; ; n++) {
    failNth.arm(n)
    let fired: FallibleStep | undefined
    let r: T
    try {
      r = f()
    } finally {
      fired = failNth.disarm().fired
    }
    if (fired === step) return r
    if (fired === undefined) throw new Error(`${step}: no such step`)
  }
}
