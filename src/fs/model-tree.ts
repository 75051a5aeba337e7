import { createWriteStream } from 'node:fs'
import * as path from 'node:path'
import { Machine } from '../hw/machine'
import { SanitizerMode } from '../hw/smmuv3/sanitizer'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { Vtd } from '../hw/vtd/vtd'
import { World } from '../iommufd/world'
import { loadSchema } from '../topology/attributes'
import { loadTopology } from '../topology/topology'
import { Recording } from '../uapi/record'
import { IommuSession, VfioDeviceSession } from '../uapi/session'
import { DEFAULT_TOPOLOGY } from '../util/paths'
import { TraceLog } from '../util/trace'
import { failNthFile, failPageAllocDir, failslabDir } from './fault-files'
import { debugTree } from './debug-tree'
import { AttributeFile, Caller } from './nodes'
import { TreeOps } from './ops'
import { buildSysfsTree, dirAt } from './sysfs-tree'
import { TransactionFile } from './transaction-file'
import { kvmDebugDir, kvmNode } from './kvm-file'

export interface TreeOptions {
  /** Topology file (default: sysfs-schema/topologies/default.yaml). */
  topology?: string
  /** Append trace lines to this file as well. */
  log?: string
  /** Write every request and reply to this file as a replayable script (src/uapi/record.ts). */
  record?: string
  /** The stale-TLB sanitizer's starting mode on every SMMU and VT-d unit (default: report); written into the recording. */
  sanitizer?: SanitizerMode
  /** Echo trace lines here; `tag` says what emitted the line ('bug' for a handler bug). */
  echo?: (line: string, tag: string) => void
}

/** A machine and the whole tree over it, ready to be mounted or used in-process through `ops`. */
export interface ModelTree {
  readonly topology: string
  readonly machine: Machine
  readonly world: World
  readonly ops: TreeOps
  readonly trace: TraceLog
  /** Ends the log and the recording. */
  close(): void
}

/** Loads the schema and topology and builds the tree. Throws a DataError naming any mistake. */
export function buildTree(opts: TreeOptions = {}): ModelTree {
  const topology = path.resolve(opts.topology ?? DEFAULT_TOPOLOGY)
  const schema = loadSchema()
  const machine = loadTopology(topology)
  const log = opts.log ? createWriteStream(opts.log, { flags: 'a' }) : undefined
  // lines are formatted only when they go somewhere
  const echo = opts.echo
  const trace = new TraceLog(
    undefined,
    echo || log
      ? (line, tag) => {
          echo?.(line, tag)
          log?.write(`${line}\n`)
        }
      : undefined,
  )
  const recording = opts.record ? new Recording(opts.record, { topology, sanitizer: opts.sanitizer ?? 'report' }) : undefined
  const world = new World(machine, trace)
  if (opts.sanitizer) for (const u of machine.units) if (u instanceof Smmuv3 || u instanceof Vtd) u.dma.sanitizer.mode = opts.sanitizer
  const root = buildSysfsTree(machine, schema)
  // who serves this tree: `iommufs unmount` reads the pid here
  const server = new AttributeFile(() => `pid ${process.pid}\ntopology ${topology}\n`)
  dirAt(root, '/sys/kernel/debug').add('iommufd', debugTree(world, [['server', server], ['fail-nth', failNthFile()]]))
  // the fault-injection switches iommufd_fail_nth sets (the shim gives it these for the kernel's)
  dirAt(root, '/sys/kernel/debug').add('failslab', failslabDir()).add('fail_page_alloc', failPageAllocDir())
  const iommuSession = (caller?: Caller): IommuSession => new IommuSession(world, caller?.pid, recording)
  dirAt(root, '/dev').add('iommu', new TransactionFile(iommuSession, 0o666, () => Number(world.mappedFileEnd())))
  // KVM beside iommufd, for IOMMU domains that import a VM's stage 2 (docs/kvm.md)
  dirAt(root, '/dev').add('kvm', kvmNode(world))
  dirAt(root, '/sys/kernel/debug').add('kvm', kvmDebugDir(world))
  const vfio = dirAt(root, '/dev/vfio/devices')
  for (const d of machine.devices) vfio.add(`vfio${d.vfioIndex}`, new TransactionFile(() => new VfioDeviceSession(world, d, recording)))
  let closed = false
  return {
    topology,
    machine,
    world,
    ops: new TreeOps(root, trace),
    trace,
    close: () => {
      if (closed) return
      closed = true
      log?.end()
      recording?.end()
    },
  }
}
