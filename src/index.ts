/**
 * iommufs as a library: the IOMMU model in-process, without FUSE, or mounted
 * programmatically.
 *
 * ```ts
 * import { Model } from 'iommufs'
 *
 * const model = Model.load()                        // the default machine
 * const ctx = model.openContext()                   // an open of /dev/iommu
 * ctx.request('IOAS_ALLOC')                         // 'ok out_ioas_id=1'
 * const r = ctx.ioctl('IOAS_ALLOC')                 // the same as a struct request
 * r.fields.out_ioas_id                              // 2n
 * await model.read(`${ctx.debugPath}/objects`)      // the debug view
 * ctx.close()                                       // destroys the context's objects
 * ```
 *
 * @packageDocumentation
 */
import { promises as fsp } from 'node:fs'
import { tmpdir } from 'node:os'
import * as path from 'node:path'
import { detach } from './fs/fuse-binding'
import { buildTree, ModelTree } from './fs/model-tree'
import { startServer } from './cli/server'
import { Machine } from './hw/machine'
import { FrameKind, decodeReply, encodeRequest } from './uapi/frame'
import { ioctlByName } from './uapi/ioctls'
import { FieldValue, StructValue, decode, encode } from './uapi/layout'
import { ErrnoError } from './util/errno'

export type { StructValue, FieldValue }
export { DEFAULT_TOPOLOGY } from './util/paths'

/** What a machine has, as plain data. */
export interface MachineInfo {
  readonly iommus: readonly { readonly name: string; readonly kind: 'arm-smmu-v3' | 'intel-vtd' | 'mock'; readonly base: bigint }[]
  /** Each PCI function: behind which IOMMU, its IOMMU group and its VFIO cdev node. */
  readonly devices: readonly { readonly bdf: string; readonly iommu: string; readonly group: number; readonly vfio: string }[]
}

function machineInfo(m: Machine): MachineInfo {
  return {
    iommus: m.units.map((u) => ({ name: u.name, kind: u.kind, base: u.base })),
    devices: m.devices.map((d) => ({ bdf: d.bdf, iommu: d.unit.name, group: d.group.id, vfio: `/dev/vfio/devices/vfio${d.vfioIndex}` })),
  }
}

/** Options for building a machine. */
export interface ModelOptions {
  /** Topology file (YAML, docs/topology.md). Default: the package's `sysfs-schema/topologies/default.yaml`. */
  topology?: string
  /** Write every request and reply to this file as a replayable script (docs/record-replay.md). */
  record?: string
}

/** A field value as the API accepts it: numbers are converted to bigint. */
export type FieldInput = bigint | number | readonly (bigint | number)[]

/** The answer to a struct request. */
export interface IoctlResult {
  /** The errno name (`'ENOENT'`...) when the request failed, else undefined. */
  readonly errno?: string
  /** The reason given with an errno ('' on success). */
  readonly message: string
  /** The struct as written back, decoded by field name (empty when nothing was written back). */
  readonly fields: StructValue
  /** Output buffers the request wrote, by pointer field name (`data_uptr`, `allowed_iovas`...). */
  readonly buffers: Readonly<Record<string, Buffer>>
}

/** Where struct requests pretend their buffers live: one 16 MiB slot per pointer field. */
const BUFFER_BASE = 0x7f2000000000n
const BUFFER_STRIDE = 0x1000000n
/** More than any reply can hold (16 MiB of buffers plus the struct and message). */
const MAX_REPLY = 1 << 26

/** Flags for open(2): read only, read/write. */
const O_RDONLY = 0
const O_RDWR = 2

/**
 * An open transaction node (`/dev/iommu` or `/dev/vfio/devices/vfioN`):
 * requests go in as text lines or structs, as a program would send them.
 */
export class OpenNode {
  private closed = false

  /** @internal */
  constructor(private readonly tree: ModelTree, private readonly fh: number) {}

  /** Sends one text request (docs/text-protocol.md) and returns its reply line, e.g. `'ok out_ioas_id=1'`. */
  request(line: string): string {
    if (line.includes('\n')) throw new Error('request: one line, without a newline')
    return this.exchange(Buffer.from(`${line}\n`)).toString('utf8').replace(/\n$/, '')
  }

  /**
   * Sends a struct request. `name` is the ioctl's name with or without
   * `IOMMU_` (`'IOAS_ALLOC'`, `'IOMMU_HWPT_ALLOC'`, `'DEVICE_BIND'`); `fields`
   * sets struct fields by name (`size` defaults to the struct's size);
   * `buffers` gives the data behind pointer fields by field name. An output
   * pointer gets a buffer of the length its count field says.
   */
  ioctl(name: string, fields: Readonly<Record<string, FieldInput>> = {}, buffers: Readonly<Record<string, Buffer>> = {}): IoctlResult {
    const ioctl = ioctlByName(name)
    if (!ioctl) throw new Error(`${name}: not an ioctl iommufs knows`)
    const L = ioctl.layout
    const values: StructValue = { [L.fields[0].name]: BigInt(L.size) }
    for (const [k, v] of Object.entries(fields)) {
      L.field(k) // throws for a field the struct does not have
      values[k] = typeof v === 'object' ? v.map((x) => BigInt(x)) : BigInt(v)
    }
    const sent = new Map<bigint, Buffer>()
    const names = new Map<bigint, string>()
    L.fields.forEach((f, i) => {
      if (!f.pointer || f.name in fields) return
      const addr = BUFFER_BASE + BigInt(i) * BUFFER_STRIDE
      const data = buffers[f.name]
      if (data) {
        sent.set(addr, data)
        const c = f.pointer.count
        if (c && !(c.field in fields)) values[c.field] = BigInt(Math.floor(data.length / c.unit))
      } else if (f.pointer.flow === 'in') return
      values[f.name] = addr
      names.set(addr, f.name)
    })
    for (const k of Object.keys(buffers)) if (!L.fields.some((f) => f.pointer && f.name === k)) throw new Error(`${k}: not a pointer field of ${L.name}`)
    const full = encode(L, values)
    const size = Number(values[L.fields[0].name])
    const struct = Buffer.alloc(size)
    full.copy(struct, 0, 0, Math.min(size, full.length))
    const reply = decodeReply(this.exchange(encodeRequest({ cmd: ioctl.cmd, target: 0, struct, buffers: sent })))
    if (reply.kind !== FrameKind.REPLY) throw new Error(`${ioctl.name}: pointer fields ${reply.buffers.map((b) => names.get(b.addr) ?? `0x${b.addr.toString(16)}`).join(', ')} need their buffers`)
    const back = Buffer.alloc(L.size)
    reply.struct.copy(back, 0, 0, Math.min(reply.struct.length, L.size))
    const out: Record<string, Buffer> = {}
    for (const b of reply.buffers) if (b.data) out[names.get(b.addr) ?? `0x${b.addr.toString(16)}`] = b.data
    return { errno: reply.errno ? reply.errnoName : undefined, message: reply.message, fields: reply.struct.length ? decode(L, back) : {}, buffers: out }
  }

  /** Closes the node; closing a context destroys its objects. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.tree.ops.release(this.fh)
  }

  private exchange(data: Buffer): Buffer {
    if (this.closed) throw new Error('the node is closed')
    try {
      this.tree.ops.write(this.fh, 0, data)
    } catch (e) {
      if (e instanceof ErrnoError) throw new Error(`${e.errno}: ${e.message}`)
      throw e
    }
    const r = this.tree.ops.read(this.fh, 0, MAX_REPLY)
    if (!(r instanceof Buffer)) throw new Error('a transaction node answered asynchronously')
    return r
  }
}

/** An open of `/dev/iommu`: one iommufd context. */
export class Context extends OpenNode {
  /** The context's ID, as `CONTEXT` answers it. */
  readonly id: number
  /** Its debug directory, `/sys/kernel/debug/iommufd/<id>` (objects, graph.dot, one file per object). */
  readonly debugPath: string

  /** @internal */
  constructor(tree: ModelTree, fh: number) {
    super(tree, fh)
    const m = /^ok id=(\d+) path=(\S+)$/.exec(this.request('CONTEXT'))
    if (!m) throw new Error('CONTEXT gave no context ID')
    this.id = Number(m[1])
    this.debugPath = m[2]
  }
}

/**
 * A machine built from a topology, with its sysfs tree, `/dev/iommu`, the
 * VFIO device nodes and the debug tree, used in-process: nothing is mounted.
 */
export class Model {
  private constructor(private readonly tree: ModelTree) {}

  /** Builds the machine a topology file describes. Throws an Error naming the file, key and what was expected. */
  static load(opts: ModelOptions = {}): Model {
    return new Model(buildTree(opts))
  }

  /** The topology file (absolute). */
  get topology(): string {
    return this.tree.topology
  }

  /** The IOMMUs and devices. */
  get machine(): MachineInfo {
    return machineInfo(this.tree.machine)
  }

  /** Opens `/dev/iommu`: a new iommufd context. */
  openContext(): Context {
    return new Context(this.tree, this.tree.ops.open('/dev/iommu', O_RDWR))
  }

  /** Opens the VFIO cdev node of the device at `bdf` (`'0000:00:01.0'`). */
  openDevice(bdf: string): OpenNode {
    const m = this.tree.machine
    const d = m.device(bdf.toLowerCase())
    if (!d) throw new Error(`${bdf}: no such PCI device (${m.devices.map((x) => x.bdf).join(', ')})`)
    return new OpenNode(this.tree, this.tree.ops.open(`/dev/vfio/devices/vfio${d.vfioIndex}`, O_RDWR))
  }

  /** Reads a file of the tree: a sysfs attribute, or a debug view such as `/sys/kernel/debug/iommufd/1/objects`. */
  async read(file: string): Promise<string> {
    const fh = this.tree.ops.open(file, O_RDONLY)
    try {
      const parts: Buffer[] = []
      for (let pos = 0; ; ) {
        const b = await this.tree.ops.read(fh, pos, 1 << 16)
        if (!b.length) break
        parts.push(b)
        pos += b.length
      }
      return Buffer.concat(parts).toString('utf8')
    } finally {
      this.tree.ops.release(fh)
    }
  }

  /** The names in a directory of the tree. */
  list(dir: string): string[] {
    return this.tree.ops.readdir(dir)
  }

  /** The trace lines still held (requests, replies, handler bugs), oldest first. */
  trace(): readonly string[] {
    return this.tree.trace.recent()
  }

  /** Ends the recording, if any. Open nodes stay usable; nothing else needs closing. */
  close(): void {
    this.tree.close()
  }
}

/** Options for {@link mount}. */
export interface MountOptions extends ModelOptions {
  /** The mount point; default: a new temporary directory, removed by `stop()`. */
  dir?: string
  /** Mount over a directory that has content. */
  force?: boolean
}

/** A mounted machine. Its files must be used with asynchronous I/O: this process serves them. */
export interface Mount {
  /** The mount point (absolute). */
  readonly dir: string
  readonly machine: MachineInfo
  /** Unmounts (and removes the directory when `mount` made it). Idempotent. */
  stop(): Promise<void>
}

/**
 * Mounts a machine with FUSE, served by this process. Use the mount's files
 * only with asynchronous calls (`fs.promises`, child processes): a
 * synchronous call from this process would wait for itself.
 */
export async function mount(opts: MountOptions = {}): Promise<Mount> {
  const made = opts.dir === undefined ? await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-')) : undefined
  const dir = path.resolve(opts.dir ?? made!)
  let server
  try {
    server = await startServer({ dir, topology: opts.topology, record: opts.record, force: opts.force })
  } catch (e) {
    if (made) await fsp.rmdir(made).catch(() => {})
    throw e
  }
  let stopping: Promise<void> | undefined
  const s = server
  return {
    dir,
    machine: machineInfo(s.machine),
    stop: () =>
      (stopping ??= (async () => {
        await s.stop().catch(() => detach(dir))
        if (made) await fsp.rmdir(made).catch(() => {})
      })()),
  }
}

/** Runs `fn` with a fresh mount and unmounts it afterwards, whatever `fn` does. */
export async function withMount<T>(fn: (m: Mount) => Promise<T>, opts: MountOptions = {}): Promise<T> {
  const m = await mount(opts)
  try {
    return await fn(m)
  } finally {
    await m.stop()
  }
}
