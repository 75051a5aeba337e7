import * as path from 'node:path'
import { Backend, mountTree, Mounted } from '../fs/fuse-binding'
import { buildTree, TreeOptions } from '../fs/model-tree'
import { TreeOps } from '../fs/ops'
import { World } from '../iommufd/world'
import { Machine } from '../hw/machine'
import { TraceLog } from '../util/trace'
import { prepareMountPoint } from './mount-point'
import { UsageError } from './usage'

export interface ServerOptions extends TreeOptions {
  dir: string
  /** Mount over a directory that has content. */
  force?: boolean
  /** The FUSE backend (default libfuse3). */
  backend?: Backend
  /** Called when the mount goes away from outside (umount, an aborted connection). */
  onEnded?: () => void
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
  // a bad topology is reported before the mount point is looked at
  const tree = buildTree(opts)
  let mounted: Mounted
  let state
  try {
    state = await prepareMountPoint(dir)
    if (state.hasContent && !opts.force) throw new UsageError(`mount point ${dir} is not empty (use --force to mount over it)`)
    mounted = await mountTree(dir, tree.ops, { nonEmpty: state.hasAnyEntry, backend: opts.backend, onEnded: opts.onEnded })
  } catch (e) {
    tree.close()
    throw e
  }
  const notes = state.recoveredStale ? [`recovered a stale mount on ${dir}`] : []
  let stopping: Promise<void> | undefined
  return {
    dir,
    machine: tree.machine,
    world: tree.world,
    ops: tree.ops,
    trace: tree.trace,
    notes,
    stop: () => (stopping ??= mounted.unmount().finally(() => tree.close())),
  }
}
