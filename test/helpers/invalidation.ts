/**
 * In-process helpers for the invalidation tests (issue 4): a dev/iommu
 * session on the default machine driven by text lines, the SMMUv3 and VT-d
 * nesting setups, raw ring requests through dispatch(), the debug tree's
 * files by path, and a dump of everything a request could change.
 *
 *   const t = new InvSession()
 *   const a = armNest(t)                       // vIOMMU with vDEVICE virt_id 0x10 -> StreamID 0x8
 *   t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} cmd=TLBI_NH_ALL`)
 *   t.smmu().cmdq.recent(2)                    // what reached the physical queue
 */
import { strict as assert } from 'node:assert'
import { debugTree } from '../../src/fs/debug-tree'
import { DirNode, FsNode } from '../../src/fs/nodes'
import { Command } from '../../src/hw/smmuv3/commands'
import { Smmuv3 } from '../../src/hw/smmuv3/smmuv3'
import { Vtd } from '../../src/hw/vtd/vtd'
import { Vcmdq } from '../../src/iommufd/vcmdq'
import { Viommu } from '../../src/iommufd/viommu'
import { World } from '../../src/iommufd/world'
import { IoctlReply, dispatch } from '../../src/uapi/dispatch'
import { ioctlByName } from '../../src/uapi/ioctls'
import { StructValue, encode } from '../../src/uapi/layout'
import { IommuSession } from '../../src/uapi/session'
import { DMAR0, Fields, SMMU0, U64_MAX, parseOk, renderTree } from './iommufd'
import { loadTopology } from '../../src/topology/topology'
import { ErrnoError } from '../../src/util/errno'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'

export { DMAR0, Fields, SMMU0, U64_MAX, parseOk }
/** CMD_SYNC as the host driver closes a batch (CS = SEV). */
export const HOST_SYNC_WORDS: Command = [0x2046n, 0n]

/** A dev/iommu open on a fresh default machine. */
export class InvSession {
  readonly world = new World(loadTopology(DEFAULT_TOPOLOGY))
  readonly session = new IommuSession(this.world)
  /** Commands the host driver issued during setup (its CFGIs on attach), not counted by issued(). */
  issuedBase = 0

  /** Commands the physical queue took since setup. */
  issued(): number {
    return this.smmu().cmdq.issued - this.issuedBase
  }

  get ctx(): IommuSession['ctx'] {
    return this.session.ctx
  }

  send(line: string): string {
    this.session.write(0, Buffer.from(`${line}\n`))
    const r = this.session.read(0, 1 << 20).toString('utf8')
    assert.ok(r.endsWith('\n') && r.indexOf('\n') === r.length - 1, `one reply line expected for ${line}: ${JSON.stringify(r)}`)
    return r.slice(0, -1)
  }

  ok(line: string): Fields {
    return parseOk(this.send(line))
  }

  id(line: string, key: string): number {
    const v = this.ok(line)[key]
    assert.ok(v !== undefined, `${line}: no ${key} in the reply`)
    return Number(v)
  }

  /** Everything a request can change: the whole debug tree (contexts, objects, queues, injection state) but the trace. */
  dump(): string {
    const out: string[] = []
    renderTree(debugTree(this.world), '', out)
    return out.join('\n')
  }

  /**
   * A line that must fail with `errno`; returns the message and what was
   * written back ("entry_num=2"). With `unchanged` (the default) the dump must
   * be the same before and after.
   */
  err(line: string, errno: string, message?: RegExp, unchanged = true): { message: string; written: string } {
    const before = this.dump()
    const r = this.send(line)
    const m = /^err (\S+) (.*?)(?: \(written back: (.*)\))?$/.exec(r)
    assert.ok(m, `expected err ${errno} for ${line}, got: ${r}`)
    assert.equal(m[1], errno, `${line} -> ${r}`)
    if (message) assert.match(m[2], message, `${line} -> ${r}`)
    if (unchanged) assert.equal(this.dump(), before, `${line} failed with ${errno} but changed the state`)
    return { message: m[2], written: m[3] ?? '' }
  }

  smmu(name = SMMU0): Smmuv3 {
    const u = this.world.machine.unit(name)
    assert.ok(u instanceof Smmuv3)
    return u
  }

  vtd(name = DMAR0): Vtd {
    const u = this.world.machine.unit(name)
    assert.ok(u instanceof Vtd)
    return u
  }

  /** A file of the debug tree by path below sys/kernel/debug/iommufd/ ("iommu/dmar0/fault_status", "1/6.vcmdq/prod"). */
  node(p: string): FsNode {
    let n: FsNode = debugTree(this.world)
    for (const part of p.split('/').filter(Boolean)) {
      assert.equal(n.kind, 'dir', `${p}: ${part}'s parent is not a directory`)
      const c: FsNode | undefined = (n as DirNode).child(part)
      assert.ok(c, `${p}: no ${part}`)
      n = c
    }
    return n
  }

  read(p: string): string {
    const n = this.node(p)
    assert.equal(n.kind, 'file')
    return n.open('read').read(0, 1 << 22).toString('latin1')
  }

  /** Writes `data` at `pos`; an ErrnoError comes back as its name. */
  write(p: string, data: Buffer | string, pos = 0): number | string {
    const n = this.node(p)
    assert.equal(n.kind, 'file')
    try {
      return n.open('write').write(pos, typeof data === 'string' ? Buffer.from(data) : data)
    } catch (e) {
      if (e instanceof ErrnoError) return e.errno
      throw e
    }
  }

  trace(): readonly string[] {
    return this.world.trace.recent()
  }
}

/** The SMMUv3 nesting setup: 0000:00:01.0 (StreamID 0x8), IOAS, NEST_PARENT HWPT, attach, vIOMMU, vDEVICE virt_id 0x10. */
export function armNest(t: InvSession): { dev: number; ioas: number; parent: number; viommu: number; vdevice: number; vmid: number } {
  const dev = t.id('DEVICE_BIND pci=0000:00:01.0', 'out_devid')
  const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
  t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${parent}`)
  const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${parent}`, 'out_viommu_id')
  const vdevice = t.id(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x10`, 'out_vdevice_id')
  const v = t.ctx.objects.find(viommu)
  assert.ok(v instanceof Viommu)
  t.issuedBase = t.smmu().cmdq.issued
  return { dev, ioas, parent, viommu, vdevice, vmid: v.vmid }
}

/** The VT-d nesting setup: 0000:02:00.0 and 0000:02:01.0, IOAS, NEST_PARENT HWPT, a nested HWPT on it, both attached. */
export function vtdNest(t: InvSession): { devA: number; devB: number; ioas: number; parent: number; nested: number } {
  const devA = t.id('DEVICE_BIND pci=0000:02:00.0', 'out_devid')
  const devB = t.id('DEVICE_BIND pci=0000:02:01.0', 'out_devid')
  const ioas = t.id('IOAS_ALLOC', 'out_ioas_id')
  const parent = t.id(`HWPT_ALLOC dev_id=${devA} pt_id=${ioas} flags=NEST_PARENT`, 'out_hwpt_id')
  const nested = t.id(`HWPT_ALLOC dev_id=${devA} pt_id=${parent} pgtbl_addr=0x1000 addr_width=48`, 'out_hwpt_id')
  t.ok(`DEVICE_ATTACH dev_id=${devA} pt_id=${nested}`)
  t.ok(`DEVICE_ATTACH dev_id=${devB} pt_id=${nested}`)
  return { devA, devB, ioas, parent, nested }
}

export function vcmdqOf(t: InvSession, id: number): Vcmdq {
  const q = t.ctx.objects.find(id)
  assert.ok(q instanceof Vcmdq)
  return q
}

/** Commands as the 16-byte little-endian entries a queue holds. */
export function cmdBytes(...cmds: Command[]): Buffer {
  const b = Buffer.alloc(cmds.length * 16)
  cmds.forEach((c, i) => {
    b.writeBigUInt64LE(c[0], i * 16)
    b.writeBigUInt64LE(c[1], i * 16 + 8)
  })
  return b
}

/** "0x...,0x..." words of commands, for data= in text. */
export function cmdWords(...cmds: Command[]): string {
  return cmds.flatMap((c) => c.map((w) => `0x${w.toString(16)}`)).join(',')
}

/** The last `n` commands of the physical queue, as word pairs. */
export function recent(t: InvSession, n: number): Command[] {
  return t.smmu().cmdq.recent(n).map((r) => r.cmd)
}

const Q_ADDR = 0x7f0000000000n
const CONS_ADDR = 0x7f0100000000n

export interface RingCall {
  hwptId: number
  bits: number
  queue: Buffer
  cons: number
  prod: number
  entryLen?: number
  entryNum?: number
  dataType?: number
  reserved?: number
}

/** HWPT_INVALIDATE_RING through dispatch(), as a program's bytes; returns the reply and the CONS written back (if any). */
export function ringCall(t: InvSession, c: RingCall): { reply: IoctlReply; cons?: number } {
  const io = ioctlByName('HWPT_INVALIDATE_RING')!
  const values: StructValue = {
    size: BigInt(io.layout.size),
    hwpt_id: BigInt(c.hwptId),
    q_uptr: Q_ADDR,
    q_cons_uptr: CONS_ADDR,
    q_prod: BigInt(c.prod),
    q_index_bits: BigInt(c.bits),
    q_entry_num: BigInt(c.entryNum ?? 2 ** c.bits),
    q_entry_len: BigInt(c.entryLen ?? 16),
    data_type: BigInt(c.dataType ?? 1),
    __reserved: BigInt(c.reserved ?? 0),
  }
  const cons = Buffer.alloc(4)
  cons.writeUInt32LE(c.cons >>> 0)
  const reply = dispatch({ ctx: t.ctx }, { cmd: io.cmd, struct: encode(io.layout, values), buffers: new Map([[Q_ADDR, c.queue], [CONS_ADDR, cons]]) })
  const w = reply.written.get(CONS_ADDR)
  return { reply, cons: w?.readUInt32LE(0) }
}
