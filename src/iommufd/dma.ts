import { hex } from '../hw/bits'
import { DmaResult } from '../hw/smmuv3/dma'
import { describeEvent } from '../hw/smmuv3/events'
import { Finding, describeFinding, findingJson } from '../hw/smmuv3/sanitizer'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { VtdDmaResult } from '../hw/vtd/dma'
import { describeFault } from '../hw/vtd/faults'
import { Vtd } from '../hw/vtd/vtd'
import { driverFor } from './driver'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { World } from './world'
import { HeldDmas, smmuStalled, vtdPageRequest } from './iopf'
import { describePageRequest, encodePageRequest } from '../hw/vtd/prq'

/**
 * The DMA request length limit (LIMITS.dmaLength), for every way a request
 * comes in (port text, IOMMUFS_DMA), checked before its data is read or held.
 * `field` names what the caller gave, as the caller wrote it.
 */
export function checkDmaLength(bytes: number | bigint, field: string): void {
  const { max, errno } = LIMITS.dmaLength
  if (bytes > max) throw new ErrnoError(errno, `${field}: at most ${max} bytes per request`)
}

/** IOMMUFS_DMA flags. */
export const DmaFlag = { WRITE: 1 << 0, PASID: 1 << 1, PRIV: 1 << 2, EXEC: 1 << 3, ATS: 1 << 4, TRANSLATE: 1 << 5 } as const
/** IOMMUFS_DMA out_status. */
export const DmaStatus = { OK: 0, FAULT: 1, ABORT: 2, STOPPED: 3, PENDING: 4 } as const

/** A device's DMA request, by PCI address (the typed in-process API of the DMA port). */
export interface DeviceDma {
  readonly op: 'read' | 'write' | 'translate'
  readonly iova: bigint
  readonly len: number
  readonly data?: Buffer
  readonly pasid?: number
  readonly priv?: boolean
  readonly exec?: boolean
  /** The endpoint goes through its ATC (ATS); `translate` always does. */
  readonly ats?: boolean
}

/** The result in the unit's own terms: an SMMUv3 event record, or a VT-d fault record. */
export type DeviceDmaResult = {
  readonly unit: string
  readonly sid: number
  /** Held by a stall or a page request: the id `result dma=N` answers for, once it ends. */
  readonly pending?: number
  /** What holds it: the stall (StreamID, STAG) or the page request (descriptor). */
  readonly waiting?: string
} & (({ readonly arch: 'arm-smmu-v3'; readonly fault?: undefined } & DmaResult) | ({ readonly arch: 'intel-vtd'; readonly event?: undefined } & VtdDmaResult))

/**
 * Issues a DMA from the device at `bdf` through its IOMMU. A translation
 * fault is a result (with its event record), never an error; errors are
 * for requests that cannot be made: an unknown device (ENODEV), a request
 * over 1 MiB (E2BIG), malformed fields (EINVAL).
 */
export function deviceDma(world: World, bdf: string, r: DeviceDma): DeviceDmaResult {
  const pci = world.machine.device(bdf)
  if (!pci) throw new ErrnoError('ENODEV', `${bdf}: no such PCI device`)
  checkDmaLength(r.len, `len=${r.len}`)
  if (r.op === 'write' && (r.data?.length ?? 0) !== r.len) throw new ErrnoError('EINVAL', `data: ${r.data?.length ?? 0} bytes, len=${r.len}`)
  if (r.op !== 'translate' && r.len <= 0) throw new ErrnoError('EINVAL', 'len: must be at least 1')
  if (r.iova < 0n || r.iova + BigInt(Math.max(r.len, 1)) - 1n >= 1n << 64n) throw new ErrnoError('EINVAL', `iova=${hex(r.iova)}: the request does not fit 64 bits`)
  const unit = pci.unit
  if (!(unit instanceof Vtd) && !(unit instanceof Smmuv3)) throw new ErrnoError('EOPNOTSUPP', `${bdf}: DMA through ${unit.kind} is not modelled`)
  // the function's PASID capability, within what its IOMMU takes, bounds the PASIDs it can send
  const width = driverFor(unit).maxPasidLog2(pci)
  if (r.pasid !== undefined && !(r.pasid >= 0 && r.pasid < 2 ** width)) throw new ErrnoError('EINVAL', `pasid=${r.pasid}: ${bdf} sends PASIDs of ${width} bits (its PASID capability within ${unit.name}'s)`)
  // a function without the PCI ATS capability has no ATC and cannot ask for a translation
  if (!pci.ats && (r.op === 'translate' || r.ats)) throw new ErrnoError('EINVAL', `${r.op === 'translate' ? 'translate' : 'ats'}: ${bdf} has no ATS capability (topology: ats: false); it sends no translation requests`)
  if (unit instanceof Vtd) return vtdDma(world, unit, pci.streamId, r)
  unit.dma.clock = () => world.trace.count
  unit.stalls.onStall = (s) => smmuStalled(world, unit, s)
  const sid = pci.streamId
  return held(world, bdf, r, (settle) => {
    const res = unit.stalls.access(unit.dma, { sid, ssid: r.pasid, ...access(r) }, undefined, (end) => settle({ ...end, arch: 'arm-smmu-v3', unit: unit.name, sid }))
    if (res.event) world.trace.emit(unit.name, `event ${describeEvent(res.event)}`)
    traceFindings(world, unit.name, res.findings)
    return { result: { ...res, arch: 'arm-smmu-v3', unit: unit.name, sid }, waiting: res.stalled && `stalled sid=${hex(sid)} stag=${hex(res.stalled.stag)}` }
  })
}

const heldDmas = new WeakMap<World, HeldDmas<DeviceDma, DeviceDmaResult>>()

/** The world's held DMA requests. */
export function heldDmasOf(world: World): HeldDmas<DeviceDma, DeviceDmaResult> {
  let h = heldDmas.get(world)
  if (!h) heldDmas.set(world, (h = new HeldDmas()))
  return h
}

/**
 * Runs a request that the hardware may hold: when `go` says it is held
 * (`waiting`), the result says pending under a new id, and the final result
 * is kept when `settle` is called; a request answered while it was being
 * held (nobody handles its fault) comes back finished.
 */
function held(world: World, bdf: string, r: DeviceDma, go: (settle: (end: DeviceDmaResult) => void) => { result: DeviceDmaResult; waiting?: string }): DeviceDmaResult {
  const book = heldDmasOf(world)
  const id = book.reserve()
  let early: DeviceDmaResult | undefined
  let holding = false
  const settle = (end: DeviceDmaResult): void => {
    if (!holding) early = end
    else {
      book.finish(id, end)
      world.trace.emit(`dma ${bdf}`, `dma=${id} ended: ${end.abort ? `abort ${end.abort}` : end.event || end.fault ? 'fault' : 'ok'}`)
    }
  }
  const { result, waiting } = go(settle)
  if (!waiting) return result
  if (early) return early
  holding = true
  book.hold(id, bdf, r, waiting)
  return { ...result, pending: id, waiting }
}

function vtdDma(world: World, unit: Vtd, sid: number, r: DeviceDma): DeviceDmaResult {
  unit.dma.clock = () => world.trace.count
  unit.prq.onRequest = (h) => vtdPageRequest(world, unit, h)
  const bdf = unit.devices.find((d) => d.streamId === sid)?.bdf ?? String(sid)
  return held(world, bdf, r, (settle) => {
    const res = unit.prq.access(unit.dma, { sid, pasid: r.pasid, ...access(r) }, undefined, (end) => settle({ ...end, arch: 'intel-vtd', unit: unit.name, sid }))
    if (res.fault && !res.held) world.trace.emit(unit.name, `fault ${describeFault(res.fault)}`)
    traceFindings(world, unit.name, res.findings)
    return { result: { ...res, arch: 'intel-vtd', unit: unit.name, sid }, waiting: res.held && `${describePageRequest(res.held.request)} prq=${encodePageRequest(res.held.request).map((w) => w.toString(16).padStart(16, '0')).join(' ')}` }
  })
}

/** The access a port request makes, in either unit's terms (a translate is an ATS request of length 0). */
function access(r: DeviceDma): { addr: bigint; len: number; write: boolean; data?: Buffer; priv?: boolean; exec?: boolean; ats?: boolean } {
  return { addr: r.iova, len: r.op === 'translate' ? 0 : r.len, write: r.op === 'write', data: r.data, priv: r.priv, exec: r.exec, ats: r.op === 'translate' || r.ats }
}

function traceFindings(world: World, tag: string, findings: readonly Finding[]): void {
  for (const f of findings) {
    world.trace.emit(tag, `sanitizer ${describeFinding(f)}`)
    world.trace.emit(tag, `sanitizer.json ${findingJson(f)}`)
  }
}
