/**
 * What the Linux host drivers do with the records their units write: the
 * SMMUv3 driver's event-queue thread (arm_smmu_evtq_thread, handle_event)
 * forwards a nested device's event to its vIOMMU's vEVENTQ and logs the
 * rest; the VT-d driver's fault handler (dmar_fault) logs each fault. The
 * log is the trace.
 */
import { hex } from '../hw/bits'
import { EventRecord } from '../hw/smmuv3/eventq'
import { describeEvent } from '../hw/smmuv3/events'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { FaultRecord } from '../hw/vtd/fault-regs'
import { FAULT_REASONS } from '../hw/vtd/faults'
import { bdfOf } from '../hw/vtd/qi'
import { Vtd } from '../hw/vtd/vtd'
import { vmasters } from './smmu-host'
import { VeventqType, veventqOf } from './veventq'
import type { World } from './world'

/** Event IDs the SMMUv3 driver handles (arm_smmu_handle_event); others are only logged. */
const HANDLED = new Set([0x04, 0x06, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x13])
/** evt[1] bits: Stall (31) and S2 (39). */
const STALL = 1n << 31n
const S2 = 1n << 39n

/** Sets each unit's driver handlers; called once per world. */
export function installHostHandlers(world: World): void {
  for (const unit of world.machine.units) {
    if (unit instanceof Smmuv3) {
      unit.eventq.handler = (r) => smmuEvent(world, unit, r)
      unit.eventq.onOverflow = () => world.trace.emit(unit.name, 'eventq: EVTQ overflow detected -- events lost')
    } else if (unit instanceof Vtd) {
      unit.faultRegs.handler = (r) => vtdFault(world, unit, r)
      unit.faultRegs.onStatus = (fsts) => {
        if (fsts) world.trace.emit(unit.name, `dmar_fault: handling fault status reg ${hex(fsts)}`)
      }
    }
  }
}

/** Forwards the record to the master's vIOMMU, or says why not (it is then logged). */
function forward(world: World, unit: Smmuv3, r: EventRecord): string | undefined {
  const [w0, w1] = r.words
  const id = Number(w0 & 0xffn)
  if (!HANDLED.has(id)) return 'not an event the driver handles'
  const sid = Number(w0 >> 32n)
  const pci = unit.devices.find((d) => d.streamId === sid)
  if (!pci) return 'no master with this StreamID'
  if (w1 & STALL) return 'a stall (page fault path)'
  const vmaster = vmasters.get(pci)
  if (!vmaster) return 'the master has no vSID (no nested domain attached through a vDEVICE)'
  if (w1 & S2) return 'a stage-2 fault (the hypervisor\'s)'
  const viommu = vmaster.viommu
  const q = veventqOf(viommu, VeventqType.ARM_SMMUV3)
  if (!q) return `vIOMMU ${viommu.id} has no ARM_SMMUV3 vEVENTQ`
  const payload = Buffer.alloc(32)
  // the guest sees its own StreamID: the vSID recorded at attach replaces evt[0][63:32]
  const vsid = BigInt.asUintN(32, vmaster.vsid)
  r.words.forEach((w, k) => payload.writeBigUInt64LE(k === 0 ? (w & 0xffffffffn) | (vsid << 32n) : w, k * 8))
  const got = q.report(payload)
  world.trace.emit(unit.name, `eventq: event ${hex(id)} sid=${hex(sid)} -> vEVENTQ ${q.id} of vIOMMU ${viommu.id} vsid=${hex(vsid)} sequence=${got.sequence}${got.lost ? ' LOST_EVENTS (queue full)' : ''}`)
  return undefined
}

function smmuEvent(world: World, unit: Smmuv3, r: EventRecord): void {
  const why = forward(world, unit, r)
  if (why === undefined) return
  const words = r.words.map((w) => `0x${w.toString(16).padStart(16, '0')}`).join(' ')
  world.trace.emit(unit.name, `eventq: event ${hex(Number(r.words[0] & 0xffn))} received: ${words} (${describeEvent(r.event)}); logged: ${why}`)
}

/** dmar_fault_do_one's line: "[DMA Read NO_PASID] Request device [02:00.0] fault addr 0x... [fault reason 0x71] ...". */
function vtdFault(world: World, unit: Vtd, r: FaultRecord): void {
  const f = r.fault
  const kind = f.write ? 'DMA Write' : 'DMA Read'
  const pasid = f.pasid === undefined ? 'NO_PASID' : `PASID ${hex(f.pasid)}`
  world.trace.emit(unit.name, `dmar_fault: FRCD${r.index} [${kind} ${pasid}] Request device [${bdfOf(f.sid)}] fault addr ${hex(f.addr & ~0xfffn)} [fault reason ${hex(f.reason)}] ${FAULT_REASONS[f.reason] ?? 'unknown'}`)
}
