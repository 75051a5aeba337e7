import { MemoryPort } from '../../memory/physical'
import { hex } from '../bits'
import { SmmuEvent, describeEvent } from './events'
import { Finding, Sanitizer, WalkOutcome, resumedWalkFinding } from './sanitizer'
import { Transaction, WalkEntry } from './walk'

type Result = { ok: true; t: { readonly out: bigint; readonly perms: number } } | { ok: false; event: SmmuEvent }

function outcome(r: Result): WalkOutcome {
  return r.ok ? { ok: true, out: r.t.out, perms: r.t.perms } : { ok: false, name: r.event.name, summary: describeEvent(r.event) }
}

/**
 * The sanitizer's look at a walk that resumed from a walk-cache entry; the
 * narrowest command that drops the entry is a TLBI by address with Leaf = 0
 * (TLBI_NH_VA by VMID and ASID for stage 1, TLBI_S2_IPA by VMID for stage 2).
 */
export function staleWalk(sanitizer: Sanitizer, mem: MemoryPort, txn: Transaction, e: WalkEntry, used: Result, fresh: Result, at: number): Finding | undefined {
  const command = e.kind === 'S2' ? `TLBI_S2_IPA vmid=${e.vmid} addr=${hex(e.base)}` : `TLBI_NH_VA vmid=${e.vmid} asid=${e.asid} addr=${hex(txn.addr & ~0xfffn)}`
  const entry = `${e.kind} level=${e.level} addr=${hex(e.base)} next=${hex(e.next)}`
  return resumedWalkFinding(sanitizer, mem, txn, 'WALK', e, entry, outcome(used), outcome(fresh), command, at)
}
