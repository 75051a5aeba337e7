import { createWriteStream } from 'node:fs'
import * as path from 'node:path'
import { Backend, mountTree, Mounted } from '../fs/fuse-binding'
import { TreeOps } from '../fs/ops'
import { debugTree } from '../fs/debug-tree'
import { AttributeFile } from '../fs/nodes'
import { buildSysfsTree, dirAt } from '../fs/sysfs-tree'
import { TransactionFile } from '../fs/transaction-file'
import { World } from '../iommufd/world'
import { IommuSession, VfioDeviceSession } from '../uapi/session'
import { Machine } from '../hw/machine'
import { SanitizerMode } from '../hw/smmuv3/sanitizer'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { loadSchema } from '../topology/attributes'
import { loadTopology } from '../topology/topology'
import { DEFAULT_TOPOLOGY } from '../util/paths'
import { TraceLog } from '../util/trace'
import { Recording } from '../uapi/record'
import { prepareMountPoint } from './mount-point'
import { UsageError } from './usage'

export interface ServerOptions {
  dir: string
  topology?: string
  /** Mount over a directory that has content. */
  force?: boolean
  /** Append trace lines to this file as well. */
  log?: string
  /** Write every request and reply to this file as a replayable script (src/uapi/record.ts). */
  record?: string
  /** What DMA sanitizer findings do; written into the recording (no sanitizer exists yet). */
  sanitize?: string
  /** Echo trace lines here (the foreground server's stderr); `tag` says what emitted the line ('bug' for a handler bug). */
  echo?: (line: string, tag: string) => void
  /** The FUSE backend (default libfuse3). */
  backend?: Backend
  /** Called when the mount goes away from outside (umount, an aborted connection). */
  onEnded?: () => void
  /** The stale-TLB sanitizer's starting mode on every SMMU (default report). */
  sanitizer?: SanitizerMode
}

export interface Server {
  readonly dir: string
  readonly machine: Machine
  readonly world: World
  readonly ops: TreeOps
  readonly trace: TraceLog
  readonly notes: string[]
  stop(): Promise<void>
}

/** Loads the schema and topology, builds the tree and mounts it. Throws with a readable message. */
export async function startServer(opts: ServerOptions): Promise<Server> {
  const dir = path.resolve(opts.dir)
  const topology = opts.topology ?? DEFAULT_TOPOLOGY
  const schema = loadSchema()
  const machine = loadTopology(topology)
  const state = await prepareMountPoint(dir)
  if (state.hasContent && !opts.force) throw new UsageError(`mount point ${dir} is not empty (use --force to mount over it)`)

  const log = opts.log ? createWriteStream(opts.log, { flags: 'a' }) : undefined
  const trace = new TraceLog(undefined, (line, tag) => {
    opts.echo?.(line, tag)
    log?.write(`${line}\n`)
  })
  const recording = opts.record ? new Recording(opts.record, { topology: path.resolve(topology), sanitize: opts.sanitize ?? 'off' }) : undefined
  const world = new World(machine, trace)
  if (opts.sanitizer) for (const u of machine.units) if (u instanceof Smmuv3) u.dma.sanitizer.mode = opts.sanitizer
  const root = buildSysfsTree(machine, schema)
  // who serves this mount: `iommufs unmount` reads the pid here
  const server = new AttributeFile(() => `pid ${process.pid}\ntopology ${path.resolve(topology)}\n`)
  dirAt(root, '/sys/kernel/debug').add('iommufd', debugTree(world, [['server', server]]))
  dirAt(root, '/dev').add('iommu', new TransactionFile((caller) => new IommuSession(world, caller?.pid, recording)))
  const vfio = dirAt(root, '/dev/vfio/devices')
  for (const d of machine.devices) vfio.add(`vfio${d.vfioIndex}`, new TransactionFile(() => new VfioDeviceSession(world, d, recording)))
  const ops = new TreeOps(root, trace)
  const mounted: Mounted = await mountTree(dir, ops, { nonEmpty: state.hasAnyEntry, backend: opts.backend, onEnded: opts.onEnded })
  const notes = state.recoveredStale ? [`recovered a stale mount on ${dir}`] : []
  let stopping: Promise<void> | undefined
  return {
    dir,
    machine,
    world,
    ops,
    trace,
    notes,
    stop: () =>
      (stopping ??= mounted.unmount().finally(() => {
        log?.end()
        recording?.end()
      })),
  }
}
