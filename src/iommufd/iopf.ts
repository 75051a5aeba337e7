/**
 * IOPF, the host driver's half (the kernel's io-pgfault.c with each vendor
 * driver's fault path): a stalled SMMUv3 transaction or a VT-d page request
 * becomes a page request group in the fault queue of the HWPT its device is
 * attached to; the user's response goes back as the hardware wants it
 * (CMD_RESUME, a page group response descriptor). A device whose HWPT has no
 * fault queue gets its request answered at once with a failure, as Linux
 * answers a fault nobody handles.
 */
import { PciDevice } from '../hw/unit'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { Stalled, ResumeAction } from '../hw/smmuv3/stall'
import { parseCommand } from '../hw/smmuv3/commands'
import { Vtd } from '../hw/vtd/vtd'
import { HeldRequest } from '../hw/vtd/prq'
import { pageGroupResponse } from '../hw/vtd/qi'
import { LIMITS } from '../util/limits'
import { Device } from './device'
import { FaultFlag, PageRequest, PageResponseCode, PgfaultPerm, describePageRequest } from './eventq'
import { driverFor } from './driver'
import { Hwpt, HwptNested } from './hwpt'
import { hex } from './checks'
import type { World } from './world'

function permOf(read: boolean, write: boolean, exec: boolean, priv: boolean): number {
  return (read ? PgfaultPerm.READ : 0) | (write ? PgfaultPerm.WRITE : 0) | (exec ? PgfaultPerm.EXEC : 0) | (priv ? PgfaultPerm.PRIV : 0)
}

/** The device object bound for `pci`, in whichever context owns it. */
function boundDevice(world: World, pci: PciDevice): Device | undefined {
  return world.ownerOf(pci)?.deviceOf(pci)
}

/**
 * The domain a group is for (find_fault_handler): with a PASID, the domain
 * attached there, else the RID's when it is nested and the driver lets the
 * guest own the PASID table (SMMUv3's CD table); without one, the RID's.
 */
function faultDomain(dev: Device, group: Pick<PageRequest, 'flags' | 'pasid'>): Hwpt | undefined {
  if (!(group.flags & FaultFlag.PASID_VALID)) return dev.hwpt
  const at = dev.pasids.get(group.pasid)
  if (at) return at
  return driverFor(dev.pci.unit).userPasidTable && dev.hwpt instanceof HwptNested ? dev.hwpt : undefined
}

/** Hands a group to the fault queue of its domain, or answers it INVALID when there is none. */
function deliver(world: World, tag: string, dev: Device | undefined, group: Omit<PageRequest, 'devId' | 'device' | 'hwpt'>): void {
  const hwpt = dev && faultDomain(dev, group)
  const fault = hwpt?.fault
  if (!dev || !hwpt || !fault) {
    const whose = group.flags & FaultFlag.PASID_VALID ? `PASID ${hex(group.pasid)}` : 'RID'
    world.trace.emit(tag, `iopf: ${dev ? `device ${dev.id}'s ${whose} has ${hwpt ? 'a domain with no fault queue' : 'no domain'}` : 'no bound device'}: answered INVALID`)
    group.respond?.(PageResponseCode.INVALID)
    return
  }
  const r: PageRequest = { ...group, devId: dev.id, device: dev, hwpt }
  if (fault.report(r)) world.trace.emit(tag, `iopf: fault ${fault.id} queued ${describePageRequest(r)}`)
  else world.trace.emit(tag, `iopf: fault ${fault.id} is full (${LIMITS.faultGroups.max} groups): answered INVALID`)
}

/** arm_smmu_handle_event for a Stall = 1 event: one page request, grpid = STAG; the response is CMD_RESUME. */
export function smmuStalled(world: World, smmu: Smmuv3, s: Stalled): void {
  const pci = smmu.devices.find((d) => d.streamId === s.sid)
  const e = s.event
  deliver(world, smmu.name, pci && boundDevice(world, pci), {
    pasid: e.ssid ?? 0,
    flags: FaultFlag.LAST_PAGE | (e.ssid !== undefined ? FaultFlag.PASID_VALID : 0),
    grpid: s.stag,
    perm: permOf(e.rnw ?? false, !(e.rnw ?? false), e.ind ?? false, e.pnu ?? false),
    addr: e.input ?? 0n,
    respond: (code) => {
      const action = code === PageResponseCode.SUCCESS ? ResumeAction.RETRY : ResumeAction.ABORT
      smmu.cmdq.issue([parseCommand(`RESUME sid=${s.sid} stag=${s.stag} action=${action}`)])
    },
  })
}

/** The VT-d page request handler: one request (LPIG) per group, grpid = PRG index; the response is a page group response descriptor. */
export function vtdPageRequest(world: World, vtd: Vtd, h: HeldRequest): void {
  const p = h.request
  const pci = vtd.devices.find((d) => d.streamId === p.rid)
  deliver(world, vtd.name, pci && boundDevice(world, pci), {
    pasid: p.pasid ?? 0,
    // prq.c: a request with a PASID wants it back in the response
    flags: (p.lpig ? FaultFlag.LAST_PAGE : 0) | (p.pasid !== undefined ? FaultFlag.PASID_VALID | FaultFlag.RESPONSE_NEEDS_PASID : 0),
    grpid: p.prgIndex,
    perm: permOf(p.read, p.write, p.exec, p.priv),
    addr: p.addr,
    respond: (code) => vtd.qi.submit([pageGroupResponse({ rid: p.rid, pasid: p.pasid, prgIndex: p.prgIndex, code, lpig: p.lpig })]),
  })
}

/** A DMA request that was held (stall, page request): how it ended, once it has. */
export interface HeldDma<Q, R> {
  readonly id: number
  readonly bdf: string
  readonly request: Q
  /** The stall / page request that holds it now, in words. */
  waiting: string
  result?: R
}

/**
 * The DMA requests that were held, by id: pending until the hardware lets
 * them go, then kept (the last LIMITS.dmaResults) for `result dma=N`.
 */
export class HeldDmas<Q, R> {
  private readonly entries = new Map<number, HeldDma<Q, R>>()
  private nextId = 1

  /** An id for a request that may be held. */
  reserve(): number {
    return this.nextId++
  }

  hold(id: number, bdf: string, request: Q, waiting: string): void {
    this.entries.set(id, { id, bdf, request, waiting })
    this.trim()
  }

  /** The request ended; an id never held (it ended before anyone asked) is ignored. */
  finish(id: number, result: R): void {
    const e = this.entries.get(id)
    if (e) e.result = result
  }

  get(id: number): HeldDma<Q, R> | undefined {
    return this.entries.get(id)
  }

  list(): HeldDma<Q, R>[] {
    return [...this.entries.values()]
  }

  /** Finished entries beyond the limit go, oldest first; pending ones stay (the hardware bounds them). */
  private trim(): void {
    let finished = [...this.entries.values()].filter((e) => e.result !== undefined).length
    for (const e of this.entries.values()) {
      if (finished <= LIMITS.dmaResults.max) break
      if (e.result === undefined) continue
      this.entries.delete(e.id)
      finished--
    }
  }
}

