import { ErrnoError, ErrnoName } from './errno'
import { threadStart } from './proc-status'

/**
 * One fault-injection counter for every fallible step of the model, after the
 * kernel's fail_nth (tools/testing/selftests/iommu/iommufd_fail_nth.c): when
 * armed with N, the Nth step consulted from then on fails as that step fails
 * in the kernel (an allocation with ENOMEM, a user copy with EFAULT). A test
 * runs a command with N = 1, 2, 3, ... until no step fails, and checks each
 * time that the command failed cleanly. Off (N = 0) it costs one comparison.
 */
export type FallibleStep =
  | 'object allocation'
  | 'ID insertion'
  | 'page table allocation'
  | 'mapping allocation'
  | 'queue allocation'
  | 'atomic allocation'
  | 'copy from user'
  | 'copy to user'

const ERRNO_OF: Record<FallibleStep, ErrnoName> = {
  'object allocation': 'ENOMEM',
  'ID insertion': 'ENOMEM',
  'page table allocation': 'ENOMEM',
  'mapping allocation': 'ENOMEM',
  'queue allocation': 'ENOMEM',
  'atomic allocation': 'ENOMEM',
  'copy from user': 'EFAULT',
  'copy to user': 'EFAULT',
}

/**
 * The kernel's switches for which steps a task's fail-nth counts (debugfs
 * failslab/ and fail_page_alloc/), machine-wide as there. With
 * ignore-gfp-wait Y (the kernel's default) sleeping allocations, which are
 * all iommufd makes, are never failed; iommufd_fail_nth sets it to N. Copies
 * from and to the caller always count (fail_usercopy has no such switch).
 */
export const faultSwitches = {
  failslab: { ignoreGfpWait: true, verbose: 2n },
  failPageAlloc: { ignoreGfpWait: true, ignoreGfpHighmem: true, verbose: 2n },
}

/** Whether a task's fail-nth counts `step` now (the global counter of the unit tests counts every step). */
function counts(step: FallibleStep): boolean {
  // an atomic allocation (GFP_ATOMIC) cannot sleep to reclaim, so ignore-gfp-wait does not spare it
  if (step === 'copy from user' || step === 'copy to user' || step === 'atomic allocation') return true
  // page tables come from the page allocator, everything else from slab
  return step === 'page table allocation' ? !faultSwitches.failPageAlloc.ignoreGfpWait : !faultSwitches.failslab.ignoreGfpWait
}

let armed = 0
let seen = 0
let fired: FallibleStep | undefined

const MAX_ARMED_TASKS = 1024

/** Each task's fail-nth (/proc/PID/task/TID/fail-nth): its nth counted step from now fails; absent = 0, off. */
const taskNth = new Map<number, { left: number; started: string }>()
/** The thread whose request the model is serving (0: none, or unknown). */
let task = 0

/** Every fallible step calls this first; it throws when the armed point is reached. */
export function fallible(step: FallibleStep): void {
  if (armed && ++seen === armed) {
    fired = step
    throw new ErrnoError(ERRNO_OF[step], `${step} failed (fault injected at point ${seen})`)
  }
  const armedTask = task && taskNth.size ? taskNth.get(task) : undefined
  if (armedTask === undefined || !counts(step)) return
  // as the kernel's should_fail: the count goes down at each step, and the step that takes it to 0 fails
  if (armedTask.left > 1) {
    armedTask.left--
    return
  }
  taskNth.delete(task)
  throw new ErrnoError(ERRNO_OF[step], `${step} failed (fail-nth of thread ${task})`)
}

/** A step whose failure the kernel absorbs (it carries on without what it tried to get): false where fallible() would throw. */
export function succeeds(step: FallibleStep): boolean {
  try {
    fallible(step)
    return true
  } catch (e) {
    if (e instanceof ErrnoError) return false
    throw e
  }
}

/**
 * Fail-nth per task, as /proc/PID/task/TID/fail-nth: a thread writes N and
 * the Nth step of its own requests from then on fails; reading shows what is
 * left, 0 once it fired (iommufd_fail_nth's sweep).
 */
/** Thread `tid`'s armed count, unless that thread is gone: a count belongs to a thread, not to its number, which the kernel gives out again. */
function armedThread(tid: number): { left: number } | undefined {
  const a = taskNth.get(tid)
  if (a && threadStart(tid) !== a.started) {
    taskNth.delete(tid)
    return undefined
  }
  return a
}

export const taskFailNth = {
  get(tid: number): number {
    return armedThread(tid)?.left ?? 0
  },
  set(tid: number, n: number): void {
    taskNth.delete(tid)
    const started = threadStart(tid)
    if (!n || started === undefined) return
    // threads that exit armed leave their counts behind until their numbers are used again: the oldest go first
    if (taskNth.size >= MAX_ARMED_TASKS) taskNth.delete(taskNth.keys().next().value as number)
    taskNth.set(tid, { left: n, started })
  },
  /** Runs `f` as thread `tid` (a request's caller, 0 when unknown), whose fail-nth its steps count against. */
  as<T>(tid: number, f: () => T): T {
    if (taskNth.size) armedThread(tid)
    const was = task
    task = tid
    try {
      return f()
    } finally {
      task = was
    }
  },
}

export const failNth = {
  /** From now on, the `n`th fallible step fails (n >= 1). */
  arm(n: number): void {
    armed = n
    seen = 0
    fired = undefined
  },
  /** Stops injecting; returns how many steps were consulted and which one failed, if any. */
  disarm(): { seen: number; fired?: FallibleStep } {
    const r = { seen, fired }
    armed = 0
    seen = 0
    fired = undefined
    return r
  },
}
