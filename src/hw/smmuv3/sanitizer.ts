import { MemoryPort } from '../../memory/physical'
import { isAbort } from '../../memory/backing'
import { hex } from '../bits'
import { ErrnoError } from '../../util/errno'
import { describePerms } from './walk'

/** off: no second walk. report: the DMA uses the cache, the finding is kept. strict: the DMA fails with it. */
export type SanitizerMode = 'off' | 'report' | 'strict'
export const SANITIZER_MODES: readonly SanitizerMode[] = ['off', 'report', 'strict']

/** A descriptor whose value changed since a cache entry was filled from it. */
export interface ChangedDescriptor {
  readonly what: string
  readonly level: number
  readonly addr: bigint
  readonly old: bigint
  readonly now: bigint | 'abort'
}

/** A DMA served from a cache entry (of either architecture) the tables no longer agree with. */
export interface Finding {
  readonly seq: number
  /** SMMUv3: TLB, STE, CD, ATC, WALK (a walk cache). VT-d: IOTLB, CONTEXT, PASID, DEV_TLB, PDE (a paging-structure cache). */
  readonly cache: 'TLB' | 'STE' | 'CD' | 'ATC' | 'WALK' | 'IOTLB' | 'CONTEXT' | 'PASID' | 'DEV_TLB' | 'PDE'
  readonly sid: number
  readonly ssid?: number
  readonly addr: bigint
  readonly cached: { readonly out?: bigint; readonly perms?: number; readonly since: number; readonly summary: string }
  readonly now: { readonly out?: bigint; readonly perms?: number; readonly fault?: { readonly name: string }; readonly summary: string }
  readonly changed?: ChangedDescriptor
  /** The narrowest command that would have dropped the entry. */
  readonly command: string
  /** When it was found (the unit's clock). */
  readonly at: number
}

/** The first descriptor a cache entry was built from whose value has changed since. */
export function changedDescriptor(mem: MemoryPort, steps: readonly { readonly what: string; readonly level: number; readonly addr: bigint; readonly desc: bigint }[]): ChangedDescriptor | undefined {
  for (const s of steps) {
    const now = mem.read64(s.addr)
    const v = isAbort(now) ? 'abort' : now
    if (v !== s.desc) return { what: s.what, level: s.level, addr: s.addr, old: s.desc, now: v }
  }
  return undefined
}

/** A walk's result as the sanitizer compares it: an output and rights, or a fault (its name and description). */
export type WalkOutcome = { readonly ok: true; readonly out: bigint; readonly perms: number } | { readonly ok: false; readonly name: string; readonly summary: string }

function outcomeSummary(o: WalkOutcome): string {
  return o.ok ? `out=${hex(o.out)} ${describePerms(o.perms)}` : o.summary
}

/**
 * A walk that resumed from a cached table pointer (an SMMU walk cache, a
 * VT-d paging-structure cache) against a fresh walk from the root: a finding
 * when they differ (another output, fewer rights, a fault on one side only
 * or another fault), naming `entry`, the descriptor that changed on its path
 * and `command`.
 */
export function resumedWalkFinding(
  sanitizer: Sanitizer,
  mem: MemoryPort,
  txn: { readonly sid: number; readonly ssid?: number; readonly addr: bigint },
  cache: 'WALK' | 'PDE',
  e: { readonly since: number; readonly steps: readonly { readonly what: string; readonly level: number; readonly addr: bigint; readonly desc: bigint }[] },
  entry: string,
  used: WalkOutcome,
  fresh: WalkOutcome,
  command: string,
  at: number,
): Finding | undefined {
  if (used.ok && fresh.ok && fresh.out === used.out && (used.perms & ~fresh.perms) === 0) return undefined
  if (!used.ok && !fresh.ok && used.name === fresh.name) return undefined
  return sanitizer.record({
    cache,
    sid: txn.sid,
    ssid: txn.ssid,
    addr: txn.addr,
    cached: { out: used.ok ? used.out : undefined, perms: used.ok ? used.perms : undefined, since: e.since, summary: `${entry} gave ${outcomeSummary(used)}` },
    now: fresh.ok ? { out: fresh.out, perms: fresh.perms, summary: outcomeSummary(fresh) } : { fault: { name: fresh.name }, summary: fresh.summary },
    changed: changedDescriptor(mem, e.steps),
    command,
    at,
  })
}

export function describeFinding(f: Finding): string {
  const parts = [
    `finding ${f.seq}: ${f.cache}`,
    `sid=${hex(f.sid)}`,
    `ssid=${f.ssid === undefined ? 'none' : hex(f.ssid)}`,
    `iova=${hex(f.addr)}`,
    `cached: ${f.cached.summary} since=${f.cached.since}`,
    `now: ${f.now.summary}`,
  ]
  if (f.changed) parts.push(`changed: ${f.changed.what} level=${f.changed.level} addr=${hex(f.changed.addr)} old=${hex(f.changed.old, 16)} new=${f.changed.now === 'abort' ? 'abort' : hex(f.changed.now, 16)}`)
  parts.push(`fix: ${f.command}`)
  return parts.join('; ')
}

/** One JSON object per finding (bigints as 0x strings). */
export function findingJson(f: Finding): string {
  return JSON.stringify({
    seq: f.seq,
    cache: f.cache,
    sid: f.sid,
    ssid: f.ssid ?? null,
    iova: hex(f.addr),
    cached: { out: f.cached.out !== undefined ? hex(f.cached.out) : null, perms: f.cached.perms !== undefined ? describePerms(f.cached.perms) : null, since: f.cached.since, summary: f.cached.summary },
    now: {
      out: f.now.out !== undefined ? hex(f.now.out) : null,
      perms: f.now.perms !== undefined ? describePerms(f.now.perms) : null,
      fault: f.now.fault ? f.now.fault.name : null,
      summary: f.now.summary,
    },
    changed: f.changed ? { what: f.changed.what, level: f.changed.level, addr: hex(f.changed.addr), old: hex(f.changed.old), new: f.changed.now === 'abort' ? 'abort' : hex(f.changed.now) } : null,
    command: f.command,
    at: f.at,
  })
}

/** The findings of one unit: a bounded list, a running count, a mode. */
export class Sanitizer {
  mode: SanitizerMode = 'report'
  count = 0
  private readonly kept: Finding[] = []

  constructor(private readonly capacity = 256) {}

  record(f: Omit<Finding, 'seq'>): Finding {
    const finding = { ...f, seq: ++this.count }
    this.kept.push(finding)
    if (this.kept.length > this.capacity) this.kept.shift()
    return finding
  }

  get findings(): readonly Finding[] {
    return this.kept
  }

  clear(): void {
    this.kept.length = 0
    this.count = 0
  }

  dumpText(): string {
    return `sanitizer: mode=${this.mode} findings=${this.count}\n${this.kept.map((f) => `${describeFinding(f)}\n`).join('')}`
  }

  dumpJson(): string {
    return this.kept.map((f) => `${findingJson(f)}\n`).join('')
  }
}

/** The debug files of a unit's sanitizer: its mode (writable), the findings as text and as JSON lines. */
export function sanitizerFiles(s: Sanitizer): Record<'sanitizer' | 'findings' | 'findings.json', { show(): string; store?(text: string): void }> {
  return {
    sanitizer: {
      show: () => `${s.mode} findings=${s.count}\n`,
      store: (text) => {
        const mode = text.trim() as SanitizerMode
        if (!SANITIZER_MODES.includes(mode)) throw new ErrnoError('EINVAL', `sanitizer: "${text.trim()}" is not off, report or strict`)
        s.mode = mode
      },
    },
    findings: { show: () => s.dumpText() },
    'findings.json': { show: () => s.dumpJson() },
  }
}
