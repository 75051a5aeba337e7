import { ErrnoError, ErrnoName } from './errno'

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
  | 'copy from user'
  | 'copy to user'

const ERRNO_OF: Record<FallibleStep, ErrnoName> = {
  'object allocation': 'ENOMEM',
  'ID insertion': 'ENOMEM',
  'page table allocation': 'ENOMEM',
  'mapping allocation': 'ENOMEM',
  'queue allocation': 'ENOMEM',
  'copy from user': 'EFAULT',
  'copy to user': 'EFAULT',
}

let armed = 0
let seen = 0
let fired: FallibleStep | undefined

/** Every fallible step calls this first; it throws when the armed point is reached. */
export function fallible(step: FallibleStep): void {
  if (!armed) return
  if (++seen === armed) {
    fired = step
    throw new ErrnoError(ERRNO_OF[step], `${step} failed (fault injected at point ${seen})`)
  }
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
