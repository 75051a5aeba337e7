/**
 * IOMMU_TEST_CMD: the kernel selftest's test interface (drivers/iommu/iommufd/
 * selftest.c), served on every iommufd context. The kernel builds it only with
 * CONFIG_IOMMUFD_TEST; iommufs always does (docs/extensions.md). The ops act
 * on the caller's own context and on the mock IOMMU only: a mock op given the
 * ID of an SMMUv3 or VT-d object answers as the kernel does for a non-mock
 * object (ENOENT or EINVAL) and changes nothing.
 */
import { MOCK_DEV_FLAGS, MOCK_PAGE_SIZE, MockDevice, MockIommu, isMockDevice } from '../hw/mock/mock'
import { ErrnoError } from '../util/errno'
import { succeeds } from '../util/fail-nth'
import type { IommufdContext } from './context'
import { Device, attach, bind, pasidAttach, pasidDetach, pasidReplace, unbind } from './device'
import { Hwpt, HwptNested, HwptPaging, MOCK_IOTLB_NUM } from './hwpt'
import { markDirtyPte } from './dirty'
import { Area, Ioas, IoasAccess, IovaRange, MapFlag, PAGE_SIZE, ULONG_MAX, areaKey, areaTouches, checkPins } from './ioas'
import { PageKey, PageResolver, pageOf, sameKey } from '../memory/pages'
import { IommufdObject, MmioFile, objectFilePath, objectIdAt } from './objects'
import { VeventqType, veventqOf } from './veventq'
import { FaultFlag } from './eventq'

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
  TRIGGER_VEVENT: 17,
  PASID_ATTACH: 18,
  PASID_REPLACE: 19,
  PASID_DETACH: 20,
  PASID_CHECK_HWPT: 21,
  DMABUF_GET: 22,
  DMABUF_REVOKE: 23,
} as const

/** MOCK_FLAGS_ACCESS_CREATE_*, MOCK_FLAGS_ACCESS_* (ACCESS_PAGES) and MOCK_ACCESS_RW_*. */
export const AccessCreateFlag = { NEEDS_PIN_PAGES: 1 } as const
export const AccessPagesFlag = { WRITE: 1, SYZ: 1 << 16 } as const
export const AccessRwFlag = { WRITE: 1, SLOW_PATH: 1 << 2 } as const
/** ACCESS_PAGES and ACCESS_RW refuse more than 16 MiB (ENOMEM), as the kernel does. */
const MAX_ACCESS_LENGTH = 16n << 20n

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

/** A key as a message shows it. */
function keyText(k: PageKey): string {
  return k.space === 'va' ? `user address ${hex(k.at)}` : `${k.space} offset ${hex(k.at)}`
}

/**
 * MD_CHECK_MAP: every mock page of [iova, iova + length) must translate to
 * the same memory as the caller's (`owner`'s) address at the same offset: the
 * same file byte for a file mapping (MAP_FILE, or an IOAS_MAP of shared
 * memory), else the same user address (src/memory/pages.ts).
 */
export function checkMap(ctx: IommufdContext, hwptId: number, iova: bigint, length: bigint, uptr: bigint, owner?: number): void {
  if (iova % MOCK_PAGE_SIZE || length % MOCK_PAGE_SIZE || uptr % MOCK_PAGE_SIZE || uptr + length > ULONG_MAX) {
    throw new ErrnoError('EINVAL', `iova=${hex(iova)} length=${hex(length)} uptr=${hex(uptr)}: each must be a multiple of ${MOCK_PAGE_SIZE}`)
  }
  const hwpt = mockPaging(ctx, hwptId)
  if (uptr === 0n && length) throw new ErrnoError('EFAULT', 'uptr=0')
  const r = new PageResolver()
  for (let off = 0n; off < length; off += MOCK_PAGE_SIZE) {
    const a = areaAt(hwpt.ioas, iova + off)
    const want = r.ofProcess(owner, uptr + off)
    const got = a && areaKey(a, iova + off - a.iova, r)
    if (!got || !sameKey(got, want)) {
      throw new ErrnoError('EINVAL', `iova ${hex(iova + off)}: ${got ? `maps ${keyText(got)}` : 'not mapped'}, expected ${keyText(want)}`)
    }
  }
}

/**
 * How many pins each CPU page of the world carries: one per distinct pinned
 * set of pages (an IOAS_MAP and the copies made of it share one) that covers
 * it, as the kernel pins an iopt_pages once whatever number of domains and
 * accesses use it. A mapping is pinned whole in an IOAS with a domain, and
 * where an access pinned it.
 */
export function pinCount(ctx: IommufdContext, page: PageKey, r: PageResolver): number {
  const pinners = new Set<object>()
  for (const ioas of ctx.world.ioases()) {
    for (const { area, lo, hi } of ioas.pinnedStretches()) if (!pinners.has(area.pages) && areaTouches(area, lo, hi, page, r)) pinners.add(area.pages)
  }
  return pinners.size
}

/** MD_CHECK_REFS: each CPU page of the caller's [uptr, uptr + length) must carry `refs` pins (EIO otherwise). */
export function checkRefs(ctx: IommufdContext, length: bigint, uptr: bigint, refs: number, owner?: number): void {
  if (length % PAGE_SIZE || uptr % PAGE_SIZE || uptr + length > ULONG_MAX) throw new ErrnoError('EINVAL', `length=${hex(length)} uptr=${hex(uptr)}: must be multiples of ${PAGE_SIZE}`)
  if (uptr === 0n && length) throw new ErrnoError('EFAULT', 'uptr=0')
  const r = new PageResolver()
  for (let p = uptr; p < uptr + length; p += PAGE_SIZE) {
    const n = pinCount(ctx, pageOf(r.ofProcess(owner, p)), r)
    if (n !== refs) throw new ErrnoError('EIO', `page ${hex(p)}: ${n} pins, expected ${refs}`)
  }
}

export interface IopfArgs {
  devId: number
  pasid: number
  grpid: number
  perm: number
  addr: bigint
}

/**
 * TRIGGER_IOPF: the mock device raises a last-page page request (PASID-valid
 * unless pasid is 0); it lands in the fault queue of the HWPT it is attached
 * to, if that HWPT has one.
 */
export function triggerIopf(ctx: IommufdContext, a: IopfArgs): void {
  const dev = ctx.objects.get<Device>(a.devId, 'dev_id', 'device')
  if (!isMockDevice(dev.pci)) throw new ErrnoError('EINVAL', `dev_id=${a.devId}: ${dev.pci.bdf} is not a mock device`)
  // a PASID's own domain takes its requests; else the RID's (the mock keeps a user PASID table)
  const hwpt = (a.pasid !== 0 ? dev.pasids.get(a.pasid) : undefined) ?? dev.hwpt
  const fault = hwpt?.fault
  // the kernel allocates the request's group in the caller's task; when that fails it aborts the
  // request at the device: nothing is queued and the command still succeeds
  if (fault && succeeds('object allocation')) fault.report({ devId: a.devId, pasid: a.pasid, flags: FaultFlag.LAST_PAGE | (a.pasid !== 0 ? FaultFlag.PASID_VALID : 0), grpid: a.grpid, perm: a.perm, addr: a.addr })
}

/** The bound device of a selftest object (EINVAL once its device is gone). */
function stdevDevice(ctx: IommufdContext, stdevId: number): Device {
  const sobj = selftestDevice(ctx, stdevId)
  if (!sobj.device) throw new ErrnoError('EINVAL', `id=${stdevId}: its device is gone`)
  return sobj.device
}

/** PASID_ATTACH: attaches a PASID of the stdev's device; returns the HWPT attached. */
export function testPasidAttach(ctx: IommufdContext, stdevId: number, pasid: number, ptId: number): number {
  return pasidAttach(ctx, stdevDevice(ctx, stdevId).id, pasid, ptId)
}

/** PASID_REPLACE: replaces a PASID's domain; returns the HWPT attached. */
export function testPasidReplace(ctx: IommufdContext, stdevId: number, pasid: number, ptId: number): number {
  return pasidReplace(ctx, stdevDevice(ctx, stdevId).id, pasid, ptId)
}

/** PASID_DETACH: always succeeds, attached or not. */
export function testPasidDetach(ctx: IommufdContext, stdevId: number, pasid: number): void {
  pasidDetach(ctx, stdevDevice(ctx, stdevId).id, pasid)
}

/** PASID_CHECK_HWPT: the PASID must be attached to that HWPT's domain, or to nothing when hwpt_id is 0 (EINVAL otherwise). */
export function testPasidCheck(ctx: IommufdContext, stdevId: number, pasid: number, hwptId: number): void {
  const attached = stdevDevice(ctx, stdevId).pasids.get(pasid)
  const expected = hwptId ? ctx.objects.get<Hwpt>(hwptId, 'hwpt_id', 'hwpt_paging', 'hwpt_nested') : undefined
  if (attached !== expected) {
    throw new ErrnoError('EINVAL', `pasid=${pasid}: attached to ${attached ? `HWPT ${attached.id}` : 'nothing'}, expected ${expected ? `HWPT ${expected.id}` : 'nothing'}`)
  }
}

/**
 * TRIGGER_VEVENT: a device attached to a nested HWPT of a vIOMMU in which it
 * has a vDEVICE reports a SELFTEST event {virt_id} to that vIOMMU; without
 * such an attachment ENOENT, without a SELFTEST vEVENTQ EOPNOTSUPP (the
 * event goes nowhere), as the kernel's selftest answers.
 */
export function triggerVevent(ctx: IommufdContext, devId: number): void {
  const dev = ctx.objects.get<Device>(devId, 'dev_id', 'device')
  const viommu = dev.hwpt instanceof HwptNested ? dev.hwpt.viommu : undefined
  const vdev = dev.vdevice
  if (!viommu || !vdev || vdev.viommu !== viommu) throw new ErrnoError('ENOENT', `dev_id=${devId}: not attached through a vIOMMU with a vDEVICE`)
  const q = veventqOf(viommu, VeventqType.SELFTEST)
  if (!q) throw new ErrnoError('EOPNOTSUPP', `dev_id=${devId}: vIOMMU ${viommu.id} has no vEVENTQ of type SELFTEST (0xbeefbeef)`)
  const data = Buffer.alloc(4)
  data.writeUInt32LE(Number(BigInt.asUintN(32, vdev.virtId)))
  q.report(data, true)
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
    const area = areaAt(hwpt.ioas, cur)
    if (!area) continue
    markDirtyPte(hwpt, area, cur)
    count++
  }
  return count
}

/**
 * The selftest's access (an emulated device's view of an IOAS, reached
 * through its own file descriptor): it holds an object ID but is no uAPI
 * object, pins ranges as items, and loses the items an unmap covers.
 */
export class SelftestAccess extends IommufdObject implements IoasAccess {
  readonly type = 'access'
  override readonly hidden = true
  ioas: Ioas | undefined
  readonly items = new Map<number, IovaRange>()
  private nextItem = 0

  /** `close`: what its descriptor's last close does (closeAccess in its context). */
  constructor(
    readonly needsPin: boolean,
    private readonly close: () => void,
  ) {
    super()
  }

  /**
   * Its descriptor as a file, for a caller the writer cannot keep a
   * placeholder in (exec --namespace). The kernel's has only a release; this
   * one reads empty, so that walking the debug tree finds nothing to fail on.
   */
  override files(): Record<string, MmioFile> {
    const fd: MmioFile = {
      mode: 0o600,
      stream: true,
      holdsContext: true,
      size: () => 0,
      read: () => Buffer.alloc(0),
      write: () => {
        throw new ErrnoError('EINVAL', 'an access descriptor takes no write')
      },
      descriptorOpened: (tid) => (this.claimDescriptor(tid) ? this.close : undefined),
    }
    return { fd }
  }

  get alignment(): bigint {
    return this.needsPin ? PAGE_SIZE : 1n
  }

  pinned(): IovaRange[] {
    return [...this.items.values()]
  }

  unmapped(iova: bigint, last: bigint): void {
    for (const [id, r] of [...this.items]) if (r.start <= last && iova <= r.last) this.items.delete(id)
  }

  addItem(r: IovaRange): number {
    const id = this.nextItem++
    this.items.set(id, r)
    return id
  }

  attach(ioas: Ioas): void {
    ioas.addAccess(this)
    ioas.users++
    this.ioas = ioas
  }

  detach(): void {
    if (!this.ioas) return
    this.unmapped(0n, ULONG_MAX)
    this.ioas.accesses.delete(this)
    this.ioas.users--
    this.ioas = undefined
  }

  override teardown(): void {
    this.detach()
  }

  describe(): [string, string][] {
    return [
      ['type', 'access'],
      ['ioas', this.ioas ? String(this.ioas.id) : '-'],
      ['needs_pin_pages', this.needsPin ? '1' : '0'],
      ['items', [...this.items].map(([id, r]) => `${id}:${hex(r.start)}-${hex(r.last)}`).join(' ') || '-'],
    ]
  }
}

/** CREATE_ACCESS: an access attached to an IOAS; returns its handle (the shim gives the caller a descriptor for it). */
export function createAccess(ctx: IommufdContext, ioasId: number, flags: number): number {
  if (flags & ~AccessCreateFlag.NEEDS_PIN_PAGES) throw new ErrnoError('EOPNOTSUPP', `flags=${hex(flags)}: only NEEDS_PIN_PAGES (1) is defined`)
  const ioas = ioasOf(ctx, ioasId)
  const access: SelftestAccess = new SelftestAccess((flags & AccessCreateFlag.NEEDS_PIN_PAGES) !== 0, () => {
    if (ctx.objects.findAny(access.id) === access) closeAccess(ctx, access.id)
  })
  // made (which may fail) before it is attached: a failed allocation leaves the IOAS as it was
  const id = ctx.objects.insert(access).id
  access.attach(ioas)
  return id
}

/** Where an access's descriptor file is, relative to the mount root. */
export function accessPath(ctx: IommufdContext, access: SelftestAccess): string {
  return objectFilePath(ctx.id, access, 'fd')
}

/** The access a descriptor's target (a path) opens, if it is one of `ctx`'s. */
export function accessAt(ctx: IommufdContext, target: string): SelftestAccess | undefined {
  const id = objectIdAt(target, ctx.id, 'access', 'fd')
  const o = id === undefined ? undefined : ctx.objects.findAny(id)
  return o instanceof SelftestAccess ? o : undefined
}

/** An access by handle: EBADFD when the descriptor is not an access (as fget of another file is). */
export function accessOf(ctx: IommufdContext, handle: number): SelftestAccess {
  const o = ctx.objects.findAny(handle)
  if (!(o instanceof SelftestAccess)) throw new ErrnoError('EBADFD', `id=${handle}: not an access descriptor`)
  return o
}

/** Closing an access's descriptor: its pins go, then the access. */
export function closeAccess(ctx: IommufdContext, handle: number): void {
  const a = accessOf(ctx, handle)
  a.teardown()
  ctx.objects.remove(a)
}

/** ACCESS_REPLACE_IOAS: the access moves; its items are unmapped first, as the kernel's unmap callback does. */
export function accessReplaceIoas(ctx: IommufdContext, handle: number, ioasId: number): void {
  const a = accessOf(ctx, handle)
  const ioas = ioasOf(ctx, ioasId)
  if (a.ioas === ioas) return
  ioas.addAccess(a)
  ioas.accesses.delete(a)
  a.detach()
  a.attach(ioas)
}

/** The pieces of the access's IOAS covering [iova, iova + length) without a hole, each allowing the access. */
function contig(a: SelftestAccess, iova: bigint, length: bigint, write: boolean): Area[] {
  if (!length) throw new ErrnoError('EINVAL', 'length=0')
  const last = iova + length - 1n
  if (last > ULONG_MAX) throw new ErrnoError('EOVERFLOW', 'iova + length overflows')
  if (!a.ioas) throw new ErrnoError('ENOENT', 'the access has no IOAS')
  const pieces = a.ioas.slices(iova, last)
  const denied = pieces.find((p) => !(p.flags & (write ? MapFlag.WRITEABLE : MapFlag.READABLE)))
  if (denied) throw new ErrnoError('EPERM', `the mapping at ${hex(denied.iova)} is not ${write ? 'writeable' : 'readable'}`)
  return pieces
}

export interface AccessPagesArgs {
  handle: number
  flags: number
  iova: bigint
  length: bigint
  uptr: bigint
  /** The caller, whose address uptr is (when known). */
  owner?: number
}

/** ACCESS_PAGES: pins [iova, iova + length) through the access; returns the item ID. With uptr, each page must be that user page. */
export function accessPages(ctx: IommufdContext, p: AccessPagesArgs): number {
  if (p.length > MAX_ACCESS_LENGTH) throw new ErrnoError('ENOMEM', `length=${hex(p.length)}: above 16 MiB`)
  if (p.flags & ~(AccessPagesFlag.WRITE | AccessPagesFlag.SYZ)) throw new ErrnoError('EOPNOTSUPP', `flags=${hex(p.flags)}: only WRITE and SYZ are defined`)
  const a = accessOf(ctx, p.handle)
  if (!a.needsPin) throw new ErrnoError('EOPNOTSUPP', `id=${p.handle}: the access was created without NEEDS_PIN_PAGES`)
  const pieces = contig(a, p.iova, p.length, (p.flags & AccessPagesFlag.WRITE) !== 0)
  if (pieces.some((x) => x.iova % PAGE_SIZE !== x.userVa % PAGE_SIZE)) throw new ErrnoError('EINVAL', `iova=${hex(p.iova)}: not page-aligned with its user address`)
  if (p.uptr) {
    // the page under each IOVA page must be the caller's page at uptr, by identity (src/memory/pages.ts)
    const r = new PageResolver()
    const first = p.iova - (p.iova % PAGE_SIZE)
    const base = p.uptr - (p.iova % PAGE_SIZE)
    for (const x of pieces) {
      for (let io = x.iova - (x.iova % PAGE_SIZE); io < x.iova + x.length; io += PAGE_SIZE) {
        const at = io > x.iova ? io : x.iova
        const page = pageOf(areaKey(x, at - x.iova, r))
        const want = pageOf(r.ofProcess(p.owner, base + (io - first)))
        if (!sameKey(page, want)) throw new ErrnoError('EBADE', `iova ${hex(io)}: pinned ${keyText(page)}, uptr says ${keyText(want)}`)
      }
    }
  }
  // the pin is made and charged as a domain's would be (iopt_area_add_access)
  checkPins(ctx.world, pieces, (x) => `the mapping at ${hex(x.iova)} cannot be pinned`)
  return a.addItem({ start: p.iova, last: p.iova + p.length - 1n })
}

/** DESTROY_ACCESS_PAGES: unpins one item; ENOENT once an unmap revoked it. */
export function destroyAccessPages(ctx: IommufdContext, handle: number, item: number): void {
  const a = accessOf(ctx, handle)
  if (!a.items.delete(item)) throw new ErrnoError('ENOENT', `access_pages_id=${item}: no such item (an unmap may have revoked it)`)
}

export interface AccessRwArgs {
  handle: number
  iova: bigint
  length: bigint
  uptr: bigint
  flags: number
}

/** The caller's memory as ACCESS_RW needs it: ask for buffers up front, then read and write them. */
export interface AccessMemory {
  need(ranges: { addr: bigint; len: number }[]): void
  read(addr: bigint, len: number): Buffer
  write(addr: bigint, data: Buffer): void
}

/**
 * ACCESS_RW: copies between [iova, iova + length) and the caller's buffer
 * at uptr. The bytes behind the IOVAs are the mapping's user memory, which
 * the model reaches through the calling process (see docs/extensions.md).
 */
export function accessRw(ctx: IommufdContext, r: AccessRwArgs, mem: AccessMemory): void {
  if (r.length > MAX_ACCESS_LENGTH) throw new ErrnoError('ENOMEM', `length=${hex(r.length)}: above 16 MiB`)
  if (r.flags & ~(AccessRwFlag.WRITE | AccessRwFlag.SLOW_PATH | AccessPagesFlag.SYZ)) throw new ErrnoError('EOPNOTSUPP', `flags=${hex(r.flags)}: only WRITE, SLOW_PATH and SYZ are defined`)
  const a = accessOf(ctx, r.handle)
  const write = (r.flags & AccessRwFlag.WRITE) !== 0
  const pieces = contig(a, r.iova, r.length, write)
  const mapped = pieces.map((p) => ({ addr: p.userVa, len: Number(p.length) }))
  // everything the copy reads is asked for at once, before anything is written
  mem.need(write ? [{ addr: r.uptr, len: Number(r.length) }] : mapped)
  if (write) {
    const data = mem.read(r.uptr, Number(r.length))
    let off = 0
    for (const p of pieces) {
      mem.write(p.userVa, data.subarray(off, off + Number(p.length)))
      off += Number(p.length)
    }
  } else {
    mem.write(r.uptr, Buffer.concat(pieces.map((p) => mem.read(p.userVa, Number(p.length)))))
  }
}
