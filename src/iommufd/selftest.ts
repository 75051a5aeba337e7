/**
 * IOMMU_TEST_CMD: the kernel selftest's test interface (drivers/iommu/iommufd/
 * selftest.c), served on every iommufd context. The kernel builds it only with
 * CONFIG_IOMMUFD_TEST; iommufs always does (docs/extensions.md). The ops act
 * on the caller's own context and on the mock IOMMU only: a mock op given the
 * ID of an SMMUv3 or VT-d object answers as the kernel does for a non-mock
 * object (ENOENT or EINVAL) and changes nothing.
 */
import { MOCK_DEV_FLAGS, MOCK_PAGE_SIZE, MockDevice, MockIommu } from '../hw/mock/mock'
import { ErrnoError } from '../util/errno'
import type { IommufdContext } from './context'
import { Device, attach, bind, unbind } from './device'
import { HwptNested, HwptPaging, MOCK_IOTLB_NUM } from './hwpt'
import { markDirtyPage } from './dirty'
import { Area, Ioas, PAGE_SIZE, ULONG_MAX } from './ioas'
import { IommufdObject } from './objects'

/** IOMMU_TEST_OP_*. */
export const TestOp = {
  ADD_RESERVED: 1,
  MOCK_DOMAIN: 2,
  MD_CHECK_MAP: 3,
  MD_CHECK_REFS: 4,
  CREATE_ACCESS: 5,
  DESTROY_ACCESS_PAGES: 6,
  ACCESS_PAGES: 7,
  ACCESS_RW: 8,
  SET_TEMP_MEMORY_LIMIT: 9,
  MOCK_DOMAIN_REPLACE: 10,
  ACCESS_REPLACE_IOAS: 11,
  MOCK_DOMAIN_FLAGS: 12,
  DIRTY: 13,
  MD_CHECK_IOTLB: 14,
  TRIGGER_IOPF: 15,
  DEV_CHECK_CACHE: 16,
} as const

/** The batch memory limit may not go below sizeof(unsigned long) + sizeof(u32). */
const MIN_MEMORY_LIMIT = 12

const hex = (v: bigint | number): string => `0x${v.toString(16)}`

/** The selftest object ("stdev"): owns a mock device; destroying it detaches, unbinds and removes the device. */
export class SelftestDevice extends IommufdObject {
  readonly type = 'selftest'
  device: Device | undefined

  constructor(readonly mock: MockDevice, private readonly ctx: IommufdContext) {
    super()
  }

  override teardown(): void {
    if (this.device && this.ctx.deviceOf(this.mock) === this.device) unbind(this.ctx, this.device)
    this.device = undefined
    ;(this.mock.unit as MockIommu).destroyDevice(this.mock)
  }

  describe(): [string, string][] {
    return [
      ['type', 'selftest'],
      ['users', String(this.users)],
      ['mock_device', this.mock.bdf],
      ['flags', hex(this.mock.flags)],
      ['device', this.device ? String(this.device.id) : '-'],
    ]
  }
}

/** A mock nested domain's state: its 4 IOTLB words. */
export interface MockNestedData {
  readonly kind: 'mock'
  readonly iotlb: number[]
}

/** Module-wide, as the kernel's iommufd_test_memory_limit is: accepted and remembered, it bounds nothing here. */
let memoryLimit = 65536

export function testMemoryLimit(): number {
  return memoryLimit
}

export function setTestMemoryLimit(limit: number): void {
  if (limit < MIN_MEMORY_LIMIT) throw new ErrnoError('EINVAL', `limit=${limit}: below ${MIN_MEMORY_LIMIT}`)
  memoryLimit = limit
}

function ioasOf(ctx: IommufdContext, id: number): Ioas {
  return ctx.objects.get<Ioas>(id, 'id', 'ioas')
}

/** ADD_RESERVED: reserves [start, start + length - 1] in an IOAS. */
export function addReserved(ctx: IommufdContext, ioasId: number, start: bigint, length: bigint): void {
  if (length === 0n) throw new ErrnoError('EINVAL', 'length=0')
  const last = start + length - 1n
  if (last > ULONG_MAX) throw new ErrnoError('EOVERFLOW', `start=${hex(start)} + length overflows`)
  ioasOf(ctx, ioasId).reserve({ start, last })
}

export interface MockDomainResult {
  stdevId: number
  hwptId: number
  idevId: number
}

/** MOCK_DOMAIN(_FLAGS): a selftest object, then a new mock device bound (idev), then attached to `ptId`. */
export function mockDomain(ctx: IommufdContext, ptId: number, devFlags: number): MockDomainResult {
  const mock = ctx.world.machine.mock
  // the kernel reserves the selftest object's ID first, so stdev < idev < hwpt
  const placeholder = ctx.objects.reserve()
  try {
    if (devFlags & ~MOCK_DEV_FLAGS) throw new ErrnoError('EINVAL', `dev_flags=${hex(devFlags)}: unknown bits ${hex(devFlags & ~MOCK_DEV_FLAGS)}`)
    const dev = mock.createDevice(devFlags)
    if (!dev) throw new ErrnoError('ENOSPC', 'no free mock device ID')
    const sobj = new SelftestDevice(dev, ctx)
    let idevId: number
    try {
      idevId = bind(ctx, dev)
    } catch (e) {
      mock.destroyDevice(dev)
      throw e
    }
    sobj.device = ctx.objects.get<Device>(idevId, 'idev', 'device')
    let hwptId: number
    try {
      hwptId = attach(ctx, idevId, ptId)
    } catch (e) {
      sobj.teardown()
      throw e
    }
    ctx.objects.fill(placeholder, sobj)
    return { stdevId: sobj.id, hwptId, idevId }
  } catch (e) {
    ctx.objects.release(placeholder)
    throw e
  }
}

function selftestDevice(ctx: IommufdContext, id: number): SelftestDevice {
  return ctx.objects.get<SelftestDevice>(id, 'id', 'selftest')
}

/** MOCK_DOMAIN_REPLACE: moves the stdev's device to `ptId`; returns the HWPT it ends up on. */
export function mockDomainReplace(ctx: IommufdContext, stdevId: number, ptId: number): number {
  const sobj = selftestDevice(ctx, stdevId)
  if (!sobj.device) throw new ErrnoError('EINVAL', `id=${stdevId}: its device is gone`)
  return attach(ctx, sobj.device.id, ptId)
}

/** A mock paging domain by ID: ENOENT if it is not a paging HWPT, EINVAL if it is not the mock's. */
function mockPaging(ctx: IommufdContext, id: number): HwptPaging {
  const hwpt = ctx.objects.get<HwptPaging>(id, 'id', 'hwpt_paging')
  if (hwpt.kind !== 'mock') throw new ErrnoError('EINVAL', `id=${id}: a ${hwpt.kind} domain, not a mock one`)
  return hwpt
}

function mockNested(ctx: IommufdContext, id: number): HwptNested & { data: MockNestedData } {
  const hwpt = ctx.objects.get<HwptNested>(id, 'id', 'hwpt_nested')
  if (hwpt.data.kind !== 'mock') throw new ErrnoError('EINVAL', `id=${id}: a ${hwpt.kind} nested domain, not a mock one`)
  return hwpt as HwptNested & { data: MockNestedData }
}

/** The area of `ioas` holding `iova`, if any. */
function areaAt(ioas: Ioas, iova: bigint): Area | undefined {
  return ioas.areas.find((a) => a.iova <= iova && iova < a.iova + a.length)
}

/**
 * MD_CHECK_MAP: every mock page of [iova, iova + length) must translate to
 * the same memory as the user address at the same offset. A page's physical
 * identity here is (mapping, user address): the model pins nothing.
 */
export function checkMap(ctx: IommufdContext, hwptId: number, iova: bigint, length: bigint, uptr: bigint): void {
  if (iova % MOCK_PAGE_SIZE || length % MOCK_PAGE_SIZE || uptr % MOCK_PAGE_SIZE || uptr + length > ULONG_MAX) {
    throw new ErrnoError('EINVAL', `iova=${hex(iova)} length=${hex(length)} uptr=${hex(uptr)}: each must be a multiple of ${MOCK_PAGE_SIZE}`)
  }
  const hwpt = mockPaging(ctx, hwptId)
  if (uptr === 0n && length) throw new ErrnoError('EFAULT', 'uptr=0')
  for (let off = 0n; off < length; off += MOCK_PAGE_SIZE) {
    const a = areaAt(hwpt.ioas, iova + off)
    if (!a || a.userVa + (iova + off - a.iova) !== uptr + off) {
      throw new ErrnoError('EINVAL', `iova ${hex(iova + off)}: ${a ? `maps ${hex(a.userVa + (iova + off - a.iova))}` : 'not mapped'}, expected ${hex(uptr + off)}`)
    }
  }
}

/**
 * How many pins each CPU page of the world carries: one per distinct pinned
 * set of pages (an IOAS_MAP and the copies made of it share one) that covers
 * it, as the kernel pins an iopt_pages once whatever number of domains use it.
 */
export function pinCount(ctx: IommufdContext, page: bigint): number {
  const pinners = new Set<object>()
  for (const c of ctx.world.contexts.values()) {
    for (const o of c.objects.objects()) {
      if (!(o instanceof Ioas) || o.hwpts.size === 0) continue
      for (const a of o.areas) {
        if (a.userVa < page + PAGE_SIZE && page < a.userVa + a.length) pinners.add(a.pages)
      }
    }
  }
  return pinners.size
}

/** MD_CHECK_REFS: each CPU page of [uptr, uptr + length) must carry `refs` pins (EIO otherwise). */
export function checkRefs(ctx: IommufdContext, length: bigint, uptr: bigint, refs: number): void {
  if (length % PAGE_SIZE || uptr % PAGE_SIZE || uptr + length > ULONG_MAX) throw new ErrnoError('EINVAL', `length=${hex(length)} uptr=${hex(uptr)}: must be multiples of ${PAGE_SIZE}`)
  if (uptr === 0n && length) throw new ErrnoError('EFAULT', 'uptr=0')
  for (let p = uptr; p < uptr + length; p += PAGE_SIZE) {
    const n = pinCount(ctx, p)
    if (n !== refs) throw new ErrnoError('EIO', `page ${hex(p)}: ${n} pins, expected ${refs}`)
  }
}

/** MD_CHECK_IOTLB: slot `slot` of a mock nested domain must hold `value`. */
export function checkIotlb(ctx: IommufdContext, hwptId: number, slot: number, value: number): void {
  const hwpt = mockNested(ctx, hwptId)
  if (slot >= MOCK_IOTLB_NUM) throw new ErrnoError('EINVAL', `id=${slot}: slots are 0..${MOCK_IOTLB_NUM - 1}`)
  if (hwpt.data.iotlb[slot] !== value) throw new ErrnoError('EINVAL', `iotlb[${slot}]=${hex(hwpt.data.iotlb[slot])}, expected ${hex(value)}`)
}

/** DEV_CHECK_CACHE: cache word `slot` of the mock device bound as `idevId` must hold `value`. */
export function checkDevCache(ctx: IommufdContext, idevId: number, slot: number, value: number): void {
  const dev = ctx.objects.get<Device>(idevId, 'id', 'device')
  const mock = dev.pci as Partial<MockDevice>
  if (!mock.cache) throw new ErrnoError('EINVAL', `id=${idevId}: ${dev.pci.bdf} is not a mock device`)
  if (slot >= mock.cache.length) throw new ErrnoError('EINVAL', `id=${slot}: slots are 0..${mock.cache.length - 1}`)
  if (mock.cache[slot] !== value) throw new ErrnoError('EINVAL', `cache[${slot}]=${hex(mock.cache[slot])}, expected ${hex(value)}`)
}

export interface DirtyArgs {
  hwptId: number
  iova: bigint
  length: bigint
  pageSize: bigint
  uptr: bigint
  /** Reads the caller's bitmap of `bytes` bytes. */
  bitmap(bytes: number): Buffer
}

/** The most bits DIRTY takes (16 MiB of bitmap). */
const MAX_DIRTY_BITS = BigInt(16 << 20) * 8n

/** DIRTY: marks the mapped mock PTE at iova + i * page_size dirty for every set bit i; returns how many it marked. */
export function markDirty(ctx: IommufdContext, a: DirtyArgs): number {
  if (!a.pageSize || !a.length || a.iova % a.pageSize || a.length % a.pageSize || !a.uptr) {
    throw new ErrnoError('EINVAL', 'page_size, length and uptr must be nonzero; iova and length multiples of page_size')
  }
  const max = a.length / a.pageSize
  if (max > MAX_DIRTY_BITS) throw new ErrnoError('EOVERFLOW', `length/page_size=${max}: more bits than ${MAX_DIRTY_BITS}`)
  const hwpt = mockPaging(ctx, a.hwptId)
  if (!hwpt.dirtyTrackingEnabled) throw new ErrnoError('EINVAL', `id=${a.hwptId}: dirty tracking is not enabled`)
  const bits = a.bitmap(Number((max + 7n) / 8n))
  let count = 0
  for (let i = 0; i < Number(max); i++) {
    if (!(bits[i >> 3] & (1 << (i & 7)))) continue
    const cur = a.iova + BigInt(i) * a.pageSize
    if (!areaAt(hwpt.ioas, cur)) continue
    markDirtyPage(hwpt, cur)
    count++
  }
  return count
}

