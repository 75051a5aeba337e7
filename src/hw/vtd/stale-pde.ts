import { MemoryPort } from '../../memory/physical'
import { hex } from '../bits'
import { Finding, Sanitizer, WalkOutcome, resumedWalkFinding } from '../smmuv3/sanitizer'
import { VtdFault, describeFault } from './faults'
import { PdeEntry, VtdTranslation, VtdTxn } from './walk'

type Result = { ok: true; t: VtdTranslation } | { ok: false; fault: VtdFault }

function outcome(r: Result): WalkOutcome {
  return r.ok ? { ok: true, out: r.t.out, perms: r.t.perms } : { ok: false, name: hex(r.fault.reason), summary: describeFault(r.fault) }
}

/**
 * The sanitizer's look at a walk that resumed from a paging-structure cache
 * entry; the narrowest invalidation that drops the entry is page-selective
 * with IH = 0 (P_IOTLB by DID and PASID for a first-stage or nested entry,
 * IOTLB by DID for a second-stage one).
 */
export function stalePde(sanitizer: Sanitizer, mem: MemoryPort, txn: VtdTxn, e: PdeEntry, used: Result, fresh: Result, at: number): Finding | undefined {
  const page = hex(txn.addr & ~0xfffn)
  const command = e.kind === 'second' ? `IOTLB did=${e.did} addr=${page} am=0 ih=0` : `P_IOTLB did=${e.did} pasid=${e.pasid} addr=${page} am=0 ih=0`
  const entry = `${e.kind} level=${e.level} iova=${hex(e.base)} next=${hex(e.next)}`
  return resumedWalkFinding(sanitizer, mem, txn, 'PDE', e, entry, outcome(used), outcome(fresh), command, at)
}
