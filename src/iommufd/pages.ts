/**
 * Pinned pages and who is charged for them, as the kernel's iopt_pages keep
 * it (io_pagetable/pages.c): every IOAS_MAP and IOAS_MAP_FILE makes one set
 * of pages, shared by the copies made of it; the process that made it (its
 * mm, its user) is charged for each page pinned, in the account mode chosen
 * then. The model pins nothing, so the charges are its own figures: shown in
 * the debug tree, and added to VmPin and VmLck in the /proc/PID/status the
 * shim shows programs.
 */
import { ErrnoError } from '../util/errno'
import { processCreds, tgidIn } from '../util/proc-status'

/** IOPT_PAGES_ACCOUNT_*: what a pin is charged to besides the mm's pinned_vm. */
export type AccountMode = 'none' | 'user' | 'mm'

/** The kernel's source_mm/source_task/source_user of a set of pages, by process and user ID. */
export interface PinOwner {
  /** The charged process (thread group). */
  readonly pid: number
  readonly uid: number
  readonly mode: AccountMode
}

/** One IOAS_MAP's or MAP_FILE's pages (the kernel's iopt_pages). */
export class PinnedPages {
  /**
   * `file`: made by IOAS_MAP_FILE (the kernel's IOPT_ADDRESS_FILE, or a
   * DMA-BUF's when `dmabuf`); `owner`: undefined when the mapping process is
   * not known (a text request); `writable`: mapped WRITEABLE when made, so a
   * copy of them may write (iopt_insert_area: EPERM otherwise).
   */
  constructor(
    readonly file: boolean,
    public owner?: PinOwner,
    readonly writable = true,
    readonly dmabuf = false,
  ) {}
}

const PAGE = 4096n

/**
 * The owner new pages of process `pid` get (iopt_alloc_pages): no charge with
 * CAP_IPC_LOCK, else its user's, or its mm's when the context's RLIMIT_MODE
 * is 1. Undefined for an unknown or vanished process.
 */
export function ownerFor(pid: number | undefined, rlimitMm: boolean): PinOwner | undefined {
  const c = pid ? processCreds(pid) : undefined
  if (!c) return undefined
  return { pid: c.tgid, uid: c.uid, mode: c.ipcLock ? 'none' : rlimitMm ? 'mm' : 'user' }
}

/** A pinned stretch of a set of pages: CPU page numbers in its own space (user address or file offset), inclusive. */
export interface PinnedStretch {
  readonly pages: PinnedPages
  readonly first: bigint
  readonly last: bigint
}

/** How many CPU pages each set of pages has pinned (npinned): stretches merged, each page once. */
export function npinned(stretches: Iterable<PinnedStretch>): Map<PinnedPages, bigint> {
  const by = new Map<PinnedPages, [bigint, bigint][]>()
  for (const s of stretches) {
    const l = by.get(s.pages) ?? []
    l.push([s.first, s.last])
    by.set(s.pages, l)
  }
  const out = new Map<PinnedPages, bigint>()
  for (const [pages, l] of by) {
    l.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    let n = 0n
    let end = -1n
    for (const [f, t] of l) {
      const from = f > end ? f : end + 1n
      if (t >= from) n += t - from + 1n
      if (t > end) end = t
    }
    out.set(pages, n)
  }
  return out
}

/** The charges the model's pins make, as the kernel's counters would hold them. */
export interface Charges {
  /** By process: its mm's pinned_vm and locked_vm, in pages. */
  readonly mm: Map<number, { pinned: bigint; locked: bigint }>
  /** By user: its user_struct's locked_vm, in pages. */
  readonly user: Map<number, bigint>
}

export function charges(counts: Map<PinnedPages, bigint>): Charges {
  const mm = new Map<number, { pinned: bigint; locked: bigint }>()
  const user = new Map<number, bigint>()
  for (const [pages, n] of counts) {
    const o = pages.owner
    if (!o || n === 0n) continue
    const m = mm.get(o.pid) ?? { pinned: 0n, locked: 0n }
    m.pinned += n
    if (o.mode === 'mm') m.locked += n
    mm.set(o.pid, m)
    if (o.mode === 'user') user.set(o.uid, (user.get(o.uid) ?? 0n) + n)
  }
  return { mm, user }
}

/**
 * The pin accounting's refusal (incr_user_locked_vm, __account_locked_vm):
 * a set of pages that `after` pins more of than `before` is charged to its
 * owner, and a user's or an mm's locked pages may not then pass the
 * RLIMIT_MEMLOCK of the process that mapped them (ENOMEM). An mm's count
 * includes the process's own VmLck. Pages charged to no one pass.
 */
export function checkPinLimits(before: Map<PinnedPages, bigint>, after: Map<PinnedPages, bigint>): void {
  const now = charges(after)
  for (const [pages, n] of after) {
    const o = pages.owner
    if (!o || o.mode === 'none' || n <= (before.get(pages) ?? 0n)) continue
    const c = processCreds(o.pid)
    if (c?.memlock === undefined) continue
    const limit = c.memlock / PAGE
    const have = o.mode === 'user' ? (now.user.get(o.uid) ?? 0n) : (now.mm.get(o.pid)?.locked ?? 0n) + c.vmLck / PAGE
    if (have > limit) throw new ErrnoError('ENOMEM', `${o.mode === 'user' ? `user ${o.uid}` : `process ${o.pid}`} would lock ${have} pages, above RLIMIT_MEMLOCK (${limit} pages) of process ${o.pid}`)
  }
}

const kB = (pages: bigint): bigint => (pages * PAGE) / 1024n

/** The debug tree's `pinned` file: one line per charged process and per charged user. */
export function describeCharges(c: Charges): string {
  const procs = [...c.mm].sort((a, b) => a[0] - b[0]).map(([pid, m]) => `pid ${pid}: pinned_vm=${m.pinned} locked_vm=${m.locked} (VmPin ${kB(m.pinned)} kB, VmLck ${kB(m.locked)} kB)\n`)
  const users = [...c.user].sort((a, b) => a[0] - b[0]).map(([uid, n]) => `uid ${uid}: locked_vm=${n}\n`)
  return procs.join('') + users.join('')
}

/**
 * A process's /proc/PID/status text as the kernel would show it if the
 * model's pins were real: its VmPin and VmLck (field, tab, the kB right-aligned
 * in 8) grow by what its thread group is charged.
 */
export function statusWithCharges(status: string, c: Charges): string {
  const tgid = tgidIn(status)
  const m = tgid === undefined ? undefined : c.mm.get(tgid)
  if (!m) return status
  const grow = (text: string, field: string, pages: bigint): string =>
    text.replace(new RegExp(`^${field}:\\s*(\\d+) kB$`, 'm'), (_, had: string) => `${field}:\t${String(BigInt(had) + kB(pages)).padStart(8)} kB`)
  return grow(grow(status, 'VmPin', m.pinned), 'VmLck', m.locked)
}

/** Whether moving `pages` to the caller changes a charge (need_charge_update). */
function moves(pages: PinnedPages, to: PinOwner): boolean {
  const o = pages.owner
  if (!o) return true
  if (o.mode === 'none') return false
  if (o.mode === 'mm') return o.pid !== to.pid
  return o.uid !== to.uid || o.pid !== to.pid
}

/**
 * IOAS_CHANGE_PROCESS' charge and move: every set of file pages of the
 * context (`counts`, each with its npinned) becomes the caller's (`pid`).
 * The pins that change hands are charged to the caller first, in each set's
 * mode: a user's or mm's locked pages may not pass RLIMIT_MEMLOCK (ENOMEM,
 * and nothing changes; CAP_IPC_LOCK lifts neither). Pages charged to no one
 * stay where their pinned_vm is. All of `counts` must be file pages (the
 * caller checks that first).
 */
export function changeProcess(counts: Map<PinnedPages, bigint>, pid: number | undefined, all: Map<PinnedPages, bigint>): void {
  const c = pid ? processCreds(pid) : undefined
  // a request that names no process (text) is checked but moves nothing
  if (!c) return
  const now = charges(all)
  const want = { user: 0n, mm: 0n }
  for (const [pages, n] of counts) {
    const mode = pages.owner?.mode ?? 'user'
    if (mode !== 'none' && moves(pages, { pid: c.tgid, uid: c.uid, mode })) want[mode] += n
  }
  const limit = c.memlock === undefined ? undefined : c.memlock / PAGE
  if (want.user && limit !== undefined) {
    const have = now.user.get(c.uid) ?? 0n
    if (have + want.user > limit) throw new ErrnoError('ENOMEM', `user ${c.uid} would lock ${have + want.user} pages, above RLIMIT_MEMLOCK (${limit} pages)`)
  }
  // __account_locked_vm with bypass_rlim false: CAP_IPC_LOCK lifts nothing here
  if (want.mm && limit !== undefined) {
    const have = (now.mm.get(c.tgid)?.locked ?? 0n) + c.vmLck / PAGE
    if (have + want.mm > limit) throw new ErrnoError('ENOMEM', `process ${c.tgid} would lock ${have + want.mm} pages, above RLIMIT_MEMLOCK (${limit} pages)`)
  }
  // pages charged to no one (made with CAP_IPC_LOCK) keep their pinned_vm where it is: need_charge_update is false for them
  for (const pages of counts.keys()) {
    if (pages.owner?.mode === 'none') continue
    pages.owner = { pid: c.tgid, uid: c.uid, mode: pages.owner?.mode ?? (c.ipcLock ? 'none' : 'user') }
  }
}
