/**
 * IOMMU_HW_QUEUE_ALLOC (the kernel's viommu.c iommufd_hw_queue_alloc_ioctl):
 * a queue a vIOMMU's hardware reads from guest memory at an IOVA of the
 * nesting parent's IOAS. The core pins that range through an internal access
 * that locks its areas (unmapping them is EBUSY while the queue lives) and
 * checks the pages are physically contiguous; the driver then takes the queue
 * at its index. Only the selftest mock's vIOMMU has a queue type here.
 */
import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'
import { hex, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { Ioas, IoasAccess, IovaRange, PAGE_SIZE, ULONG_MAX } from './ioas'
import { IommufdObject } from './objects'
import { Viommu } from './viommu'

/** iommu_hw_queue_type, with the mock's IOMMU_HW_QUEUE_TYPE_SELFTEST. */
export const HwQueueType = { DEFAULT: 0, TEGRA241_CMDQV: 1, SELFTEST: 0xdeadbeef } as const
/** IOMMU_TEST_HW_QUEUE_MAX: the mock vIOMMU's queue indexes are 0 and 1. */
export const MOCK_HW_QUEUE_MAX = 2

/** The core's internal access a queue pins its memory through. */
class QueueAccess implements IoasAccess {
  readonly alignment = PAGE_SIZE
  readonly locksAreas = true

  constructor(readonly range: IovaRange) {}

  pinned(): IovaRange[] {
    return [this.range]
  }

  // its areas cannot be unmapped while it lives (checkUnlocked), so nothing is ever revoked
  unmapped(): void {}
}

export class HwQueue extends IommufdObject {
  readonly type = 'hw_queue'

  constructor(
    readonly viommu: Viommu,
    readonly queueType: number,
    readonly index: number,
    readonly base: bigint,
    readonly length: bigint,
    private readonly ioas: Ioas,
    private readonly access: QueueAccess,
    /** The queue of index - 1, which cannot be destroyed before this one. */
    readonly prev: HwQueue | undefined,
  ) {
    super()
  }

  override teardown(): void {
    const slots = this.viommu.mock?.hwQueues
    if (slots && slots[this.index] === this) slots[this.index] = undefined
    if (this.prev) this.prev.users--
    this.viommu.users--
    this.ioas.accesses.delete(this.access)
  }

  describe(): [string, string][] {
    return [
      ['type', 'hw_queue'],
      ['users', String(this.users)],
      ['viommu', String(this.viommu.id)],
      ['queue_type', this.queueType === HwQueueType.SELFTEST ? 'SELFTEST' : hex(this.queueType)],
      ['index', String(this.index)],
      ['nesting_parent_iova', hex(this.base)],
      ['length', hex(this.length)],
      ['depends_on', this.prev ? String(this.prev.id) : '-'],
    ]
  }
}

export interface HwQueueArgs {
  flags: number
  viommuId: number
  type: number
  index: number
  iova: bigint
  length: bigint
}

/** Pins [iova, last] of the IOAS: every byte mapped (ENOENT), and the memory behind it one contiguous run (EFAULT). */
function pinContiguous(ioas: Ioas, iova: bigint, last: bigint): void {
  let pieces: ReturnType<Ioas['slices']>
  try {
    pieces = ioas.slices(iova, last)
  } catch (e) {
    if (e instanceof ErrnoError) throw new ErrnoError(e.errno, `nesting_parent_iova=${hex(iova)} length=${hex(last - iova + 1n)}: not all mapped in IOAS ${ioas.id}`)
    throw e
  }
  for (let i = 1; i < pieces.length; i++) {
    const a = pieces[i - 1]
    const b = pieces[i]
    const contiguous = a.memory && b.memory ? a.memory.backing === b.memory.backing && a.memory.offset + a.length === b.memory.offset : a.userVa + a.length === b.userVa
    if (!contiguous) throw new ErrnoError('EFAULT', `nesting_parent_iova: the memory at ${hex(b.iova)} does not follow that at ${hex(a.iova)} physically`)
  }
}

export function hwQueueAlloc(ctx: IommufdContext, a: HwQueueArgs): number {
  unknownFlags(a.flags, 0)
  if (a.type === HwQueueType.DEFAULT) throw new ErrnoError('EOPNOTSUPP', 'type=DEFAULT (0): a HW queue type is required')
  if (a.length === 0n) throw new ErrnoError('EINVAL', 'length=0')
  const last = a.iova + a.length - 1n
  if (last > ULONG_MAX) throw new ErrnoError('EOVERFLOW', `nesting_parent_iova=${hex(a.iova)} + length overflows`)
  const viommu = ctx.objects.get<Viommu>(a.viommuId, 'viommu_id', 'viommu')
  const slots = viommu.mock?.hwQueues
  if (!slots || a.type !== HwQueueType.SELFTEST) {
    throw new ErrnoError('EOPNOTSUPP', `type=${hex(a.type)}: vIOMMU ${viommu.id} (${viommu.unit.name}) has no such HW queue type${slots ? ' (SELFTEST is 0xdeadbeef)' : ''}`)
  }
  const id = ctx.objects.reserve()
  // iommufd_hw_queue_alloc_phys: the page-rounded span from the IOVA's page must fit a u64
  const offset = a.iova % PAGE_SIZE
  if (offset + a.length + PAGE_SIZE - 1n > ULONG_MAX) {
    ctx.objects.release(id)
    throw new ErrnoError('ERANGE', `nesting_parent_iova=${hex(a.iova)} length=${hex(a.length)}: its pages' span overflows`)
  }
  const ioas = viommu.parent.ioas
  const access = new QueueAccess({ start: a.iova, last })
  let attached = false
  try {
    fallible('queue allocation')
    ioas.addAccess(access)
    attached = true
    pinContiguous(ioas, a.iova, last)
    // the mock driver's hw_queue_init_phys
    if (a.index >= MOCK_HW_QUEUE_MAX) throw new ErrnoError('EINVAL', `index=${a.index}: the mock vIOMMU has queues 0..${MOCK_HW_QUEUE_MAX - 1}`)
    if (slots[a.index]) throw new ErrnoError('EEXIST', `index=${a.index}: HW queue ${slots[a.index]!.id} has it`)
    const prev = a.index ? slots[a.index - 1] : undefined
    if (a.index && !prev) throw new ErrnoError('EIO', `index=${a.index}: queue ${a.index - 1} must be allocated first`)
    const q = ctx.objects.fill(id, new HwQueue(viommu, a.type, a.index, a.iova, a.length, ioas, access, prev))
    slots[a.index] = q
    if (prev) prev.users++
    viommu.users++
    return q.id
  } catch (e) {
    if (attached) ioas.accesses.delete(access)
    ctx.objects.release(id)
    throw e
  }
}
