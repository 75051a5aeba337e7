import { MemoryPort } from '../../memory/physical'
import { hex } from '../bits'
import { Finding, Sanitizer, changedDescriptor } from '../smmuv3/sanitizer'
import { describePerms } from '../smmuv3/walk'
import { VtdFault, describeFault } from './faults'
import { PdeEntry, VtdTranslation, VtdTxn } from './walk'

type Result = { ok: true; t: VtdTranslation } | { ok: false; fault: VtdFault }

function summary(r: Result): string {
  return r.ok ? `out=${hex(r.t.out)} ${describePerms(r.t.perms)}` : describeFault(r.fault)
}

/**
 * The sanitizer's look at a walk that resumed from a paging-structure cache
 * entry: when a fresh walk from the root gives another result (another
 * output, fewer rights, or a fault where the cached path translated, or
 * the other way round), a finding names the table pointer, the descriptor
 * that changed, and the narrowest invalidation that drops the entry: a
 * page-selective one with IH = 0 (P_IOTLB by DID and PASID for a first-stage
 * or nested entry, IOTLB by DID for a second-stage one).
 */
export function stalePde(sanitizer: Sanitizer, mem: MemoryPort, txn: VtdTxn, e: PdeEntry, used: Result, fresh: Result, at: number): Finding | undefined {
  if (used.ok && fresh.ok && fresh.t.out === used.t.out && (used.t.perms & ~fresh.t.perms) === 0) return undefined
  if (!used.ok && !fresh.ok && used.fault.reason === fresh.fault.reason) return undefined
  const page = txn.addr & ~0xfffn
  const command = e.kind === 'second' ? `IOTLB did=${e.did} addr=${hex(page)} am=0 ih=0` : `P_IOTLB did=${e.did} pasid=${e.pasid} addr=${hex(page)} am=0 ih=0`
  return sanitizer.record({
    cache: 'PDE',
    sid: txn.sid,
    ssid: txn.pasid,
    addr: txn.addr,
    cached: {
      out: used.ok ? used.t.out : undefined,
      perms: used.ok ? used.t.perms : undefined,
      since: e.since,
      summary: `${e.kind} level=${e.level} iova=${hex(e.base)} next=${hex(e.next)} gave ${summary(used)}`,
    },
    now: fresh.ok ? { out: fresh.t.out, perms: fresh.t.perms, summary: summary(fresh) } : { fault: { name: hex(fresh.fault.reason) }, summary: summary(fresh) },
    changed: changedDescriptor(mem, e.steps),
    command,
    at,
  })
}
