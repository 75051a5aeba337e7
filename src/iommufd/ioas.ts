import { ErrnoError } from '../util/errno'
import { IntervalTree } from '../util/interval-tree'
import { RangeSet, subtractSorted } from '../util/range-set'
import { fallible } from '../util/fail-nth'
import { LIMITS } from '../util/limits'
import { hex, mustBeZero, unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { IommufdObject } from './objects'
import type { HwptPaging } from './hwpt'
import { FileBacking, MemoryRef, PinAccess, ProcessBacking, SizedBacking, describePinProblem } from '../memory/backing'
import { CPU_PAGE, PageKey, PageResolver } from '../memory/pages'
import { PinnedPages, PinnedStretch, changeProcess, checkPinLimits, npinned, ownerFor } from './pages'
import { areaMapped, areasUnmapped } from './host'
import { dropDirty } from './dirty'

export const ULONG_MAX = (1n << 64n) - 1n
export const PAGE_SIZE = 4096n

/** An inclusive IOVA range. */
export interface IovaRange {
  readonly start: bigint
  readonly last: bigint
}

/** IOMMU_IOAS_MAP flags. */
export const MapFlag = { FIXED_IOVA: 1 << 0, WRITEABLE: 1 << 1, READABLE: 1 << 2 } as const
const MAP_FLAGS = MapFlag.FIXED_IOVA | MapFlag.WRITEABLE | MapFlag.READABLE

/** A mapping: IOVA range -> user address. No memory is touched; the user address is recorded. */
export interface Area {
  readonly iova: bigint
  readonly length: bigint
  readonly userVa: bigint
  readonly flags: number
  /** What DMA through the mapping reaches; none (an external abort) when absent. */
  readonly memory?: MemoryRef
  /**
   * The pinned user pages behind it (the kernel's iopt_pages): one per
   * IOAS_MAP, shared by the copies made of it, so a page is pinned once.
   */
  readonly pages: PinnedPages
}

/** Why a file mapping's pages cannot be pinned (memfd_pin_folios: EINVAL), or undefined: anything else pins as far as its file goes. */
function filePinRefusal(a: Area): string | undefined {
  const b = a.memory?.backing
  return a.pages.file && b instanceof FileBacking ? b.pinRefusal(a.memory!.offset, a.length) : undefined
}

/** The process whose memory a mapping reaches (by user address), if it is known. */
function sourcePid(a: Area): number | undefined {
  const b = a.memory?.backing
  return b instanceof ProcessBacking ? b.pid : undefined
}

/** The key of the byte `off` bytes into area `a` (its file's byte, or its process's): what the kernel would find as the struct page. */
export function areaKey(a: Area, off: bigint, r: PageResolver): PageKey {
  const b = a.memory?.backing
  if (b instanceof FileBacking) return b.key(a.memory!.offset + off)
  return r.ofProcess(sourcePid(a), a.userVa + off)
}

/** Whether bytes [lo, hi] of area `a` (offsets into it) reach the CPU page whose first byte is `page`. */
export function areaTouches(a: Area, lo: bigint, hi: bigint, page: PageKey, r: PageResolver): boolean {
  const b = a.memory?.backing
  const overlaps = (start: bigint): boolean => start <= page.at + CPU_PAGE - 1n && page.at <= start + (hi - lo)
  if (b instanceof FileBacking) return b.key(0n).space === page.space && overlaps(a.memory!.offset + lo)
  return r.addressesOf(sourcePid(a), page).some((va) => va <= a.userVa + hi && a.userVa + lo <= va + CPU_PAGE - 1n)
}

/** The smallest page a domain maps: a mock domain's own (2 KiB in its default format), else PAGE_SIZE. */
export function domainPageSize(h: HwptPaging): bigint {
  return h.mockPages?.smallest ?? PAGE_SIZE
}

const byStart = (a: IovaRange, b: IovaRange): number => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0)

/** Subtracts `holes` from `ranges` (disjoint ranges; all inclusive; sorted result). */
export function subtract(ranges: readonly IovaRange[], holes: readonly IovaRange[]): IovaRange[] {
  return subtractSorted([...ranges].sort(byStart), [...holes].sort(byStart))
}

/** Where IOVAs are handed out: the kernel keeps page 0 and the last page out of every allocation. */
const ALLOC_FIRST = PAGE_SIZE
const ALLOC_LAST = ULONG_MAX - PAGE_SIZE
/** The most an allocated IOVA is aligned: a transparent huge page (x86-64), as iopt_alloc_iova caps it. */
const ALLOC_MAX_ALIGN = 2n << 20n

/** Two lists of ranges are the same, range by range. */
function sameRanges(a: readonly IovaRange[], b: readonly IovaRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.start === b[i].start && r.last === b[i].last)
}

function lowestSetBit(v: bigint): bigint {
  return v === 0n ? 1n << 63n : v & -v
}

function roundUpPow2(v: bigint): bigint {
  let p = 1n
  while (p < v) p <<= 1n
  return p
}

export interface MapRequest {
  flags: number
  length: bigint
  iova: bigint
  userVa: bigint
  memory?: MemoryRef
  /** The pages a copy maps again; a new IOAS_MAP gets its own. */
  pages?: PinnedPages
}

/** An in-kernel user of an IOAS (the selftest's access, an emulated device): its alignment, its pins, and the unmap it must hear of. */
export interface IoasAccess {
  readonly alignment: bigint
  /** The IOVA ranges it holds pinned. */
  pinned(): IovaRange[]
  /** [iova, last] is being unmapped: drop every pin in it. */
  unmapped(iova: bigint, last: bigint): void
  /** Its pins lock their areas (the kernel's internal accesses, a HW queue's): unmapping them is EBUSY. */
  readonly locksAreas?: boolean
}

/** An I/O address space: the areas mapped into it and the IOVA rules devices impose on it. */
export class Ioas extends IommufdObject {
  readonly type = 'ioas'
  /** The mappings by IOVA: lookups and overlap checks in O(log n). */
  private readonly tree = new IntervalTree<Area>()
  /** IOAS_ALLOW_IOVAS' ranges (empty: every IOVA is allowed), by IOVA, with their index in the request. */
  private readonly allowedTree = new IntervalTree<IovaRange>()
  /** Ranges reserved by IOMMU_TEST_CMD's ADD_RESERVED, for the IOAS's lifetime. */
  private readonly userReserved: IovaRange[] = []
  /** What the attached devices reserve (regions, space past each aperture), as last seen. */
  private deviceReserved: IovaRange[] = []
  /** Every reserved IOVA (user's and devices'), merged. */
  private readonly reservedSet = new RangeSet()
  /**
   * Where a new mapping may go: allowed (or any), inside the allocation
   * window, neither reserved nor mapped. Kept up to date by every change, so
   * an IOVA is found in O(log n) however many ranges and mappings there are.
   */
  private readonly free = new RangeSet()

  constructor() {
    super()
    this.free.add(ALLOC_FIRST, ALLOC_LAST)
  }

  /** IOAS_ALLOW_IOVAS' ranges by IOVA, or undefined when none were set (every IOVA is allowed). */
  get allowed(): IovaRange[] | undefined {
    return this.allowedTree.size ? this.allowedTree.values() : undefined
  }
  hugePages = true
  /** Paging HWPTs built on this IOAS (they hold a reference on it). */
  readonly hwpts = new Set<HwptPaging>()
  readonly accesses = new Set<IoasAccess>()

  /** Every mapping, by IOVA (a copy: O(n), for listings). */
  get areas(): readonly Area[] {
    return this.tree.values()
  }

  get mappingCount(): number {
    return this.tree.size
  }

  /** The first mapping overlapping [start, last], by IOVA. */
  firstArea(start: bigint, last: bigint): Area | undefined {
    return this.tree.firstOverlapping(start, last)
  }

  /** The IOVA alignment: PAGE_SIZE with huge pages off, else 1, raised to each domain's smallest page. */
  get alignment(): bigint {
    return this.alignmentWith(this.hugePages)
  }

  private alignmentWith(hugePages: boolean): bigint {
    let a = hugePages ? 1n : PAGE_SIZE
    for (const h of this.hwpts) {
      const p = domainPageSize(h)
      if (p > a) a = p
    }
    for (const x of this.accesses) if (x.alignment > a) a = x.alignment
    return a
  }

  /** Adds an access, if the mappings suit its alignment (EADDRINUSE otherwise, as iopt_add_access). */
  addAccess(x: IoasAccess): void {
    const align = x.alignment > this.alignment ? x.alignment : this.alignment
    const bad = this.areas.find((a) => (a.iova | a.length | (a.userVa % PAGE_SIZE)) & (align - 1n))
    if (bad) throw new ErrnoError('EADDRINUSE', `the mapping at ${hex(bad.iova)} is not aligned to ${hex(align)}`)
    this.accesses.add(x)
  }

  /**
   * OPTION HUGE_PAGES: turning them off raises the alignment to PAGE_SIZE,
   * refused while a domain holds mappings (EINVAL) or when a mapping is not
   * aligned (EADDRINUSE), as iopt_disable_large_pages does.
   */
  setHugePages(on: boolean): void {
    if (on || !this.hugePages) {
      this.hugePages = on
      return
    }
    if (this.hwpts.size && this.areas.length) throw new ErrnoError('EINVAL', `IOAS ${this.id} has mappings in a domain: huge pages cannot be turned off now`)
    const align = this.alignmentWith(false)
    const bad = this.areas.find((a) => (a.iova | a.length | (a.userVa % PAGE_SIZE)) & (align - 1n))
    if (bad) throw new ErrnoError('EADDRINUSE', `the mapping at ${hex(bad.iova)} is not aligned to ${hex(align)}`)
    this.hugePages = false
  }

  /** ADD_RESERVED: a range no mapping or allowed range may touch. */
  reserve(range: IovaRange): void {
    this.syncDeviceReserved()
    const area = this.tree.firstOverlapping(range.start, range.last)
    if (area) throw new ErrnoError('EADDRINUSE', `${hex(range.start)}-${hex(range.last)}: the mapping at ${hex(area.iova)} is there`)
    const allowed = this.allowedTree.firstOverlapping(range.start, range.last)
    if (allowed) throw new ErrnoError('EADDRINUSE', `${hex(range.start)}-${hex(range.last)}: overlaps the allowed range ${hex(allowed.start)}-${hex(allowed.last)}`)
    this.userReserved.push(range)
    this.reservedSet.add(range.start, range.last)
    this.free.remove(range.start, range.last)
  }

  /**
   * The devices' reserved ranges follow the domains built on this IOAS and
   * the units under them; they are compared with what was last seen (a few
   * ranges) and, when they changed (an attach or detach), the reserved and
   * free sets are rebuilt.
   */
  private syncDeviceReserved(): void {
    const now: IovaRange[] = []
    for (const h of this.hwpts) {
      for (const unit of h.units()) {
        for (const r of unit.reservedRegions()) now.push({ start: r.start, last: r.last })
        if (unit.iovaBits < 64) now.push({ start: 1n << BigInt(unit.iovaBits), last: ULONG_MAX })
      }
    }
    if (sameRanges(now, this.deviceReserved)) return
    this.deviceReserved = now
    this.reservedSet.clear()
    for (const r of [...this.userReserved, ...now]) this.reservedSet.add(r.start, r.last)
    this.rebuildFree()
  }

  /** free = (allowed or all) within the allocation window, less reserved, less mapped. */
  private rebuildFree(): void {
    this.free.clear()
    const allowed = this.allowed ?? [{ start: 0n, last: ULONG_MAX }]
    const window = subtractSorted(allowed, [
      { start: 0n, last: ALLOC_FIRST - 1n },
      { start: ALLOC_LAST + 1n, last: ULONG_MAX },
    ])
    const usable = subtractSorted(window, this.reservedSet.ranges())
    const mapped = this.tree.values().map((a) => ({ start: a.iova, last: a.iova + a.length - 1n }))
    for (const r of subtractSorted(usable, mapped)) this.free.add(r.start, r.last)
  }

  /** [start, last] was unmapped: what of it is allowed, in the window and not reserved is free again. */
  private freeUp(start: bigint, last: bigint): void {
    const lo = start > ALLOC_FIRST ? start : ALLOC_FIRST
    const hi = last < ALLOC_LAST ? last : ALLOC_LAST
    if (lo > hi) return
    const allowed = this.allowedTree.size ? this.allowedTree.overlapping(lo, hi) : [{ start: lo, last: hi }]
    const clipped = allowed.map((r) => ({ start: r.start > lo ? r.start : lo, last: r.last < hi ? r.last : hi }))
    for (const r of subtractSorted(clipped, this.reservedSet.overlapping(lo, hi))) this.free.add(r.start, r.last)
  }

  /** IOVA ranges no attached device may use: reserved windows and space beyond each aperture (merged, by IOVA). */
  reserved(): IovaRange[] {
    this.syncDeviceReserved()
    return this.reservedSet.ranges()
  }

  /**
   * The usable IOVA ranges, as IOMMU_IOAS_IOVA_RANGES reports them: the
   * holes between reserved ranges. IOAS_ALLOW_IOVAS' list only steers
   * allocation (the kernel walks reserved_itree alone here).
   */
  ranges(): IovaRange[] {
    return subtractSorted([{ start: 0n, last: ULONG_MAX }], this.reserved())
  }

  /** IOAS_ALLOW_IOVAS: each range checked in the request's order, as the kernel builds its tree; then none may cover a reserved IOVA. */
  setAllowed(ranges: IovaRange[]): void {
    ranges.forEach((r, i) => {
      if (r.start >= r.last) throw new ErrnoError('EINVAL', `allowed_iovas[${i}]: start ${hex(r.start)} must be below last ${hex(r.last)}`)
    })
    const next = new IntervalTree<IovaRange & { index: number }>()
    ranges.forEach((r, i) => {
      const clash = next.firstOverlapping(r.start, r.last)
      if (clash) throw new ErrnoError('EINVAL', `allowed_iovas[${clash.index}] overlaps allowed_iovas[${i}]`)
      next.insert(r.start, r.last, { start: r.start, last: r.last, index: i })
    })
    this.syncDeviceReserved()
    ranges.forEach((r, i) => {
      const res = this.reservedSet.firstOverlapping(r.start, r.last)
      if (res) throw new ErrnoError('EADDRINUSE', `allowed_iovas[${i}] covers reserved IOVAs ${hex(res.start)}-${hex(res.last)}`)
    })
    this.allowedTree.clear()
    for (const r of next.values()) this.allowedTree.insert(r.start, r.last, { start: r.start, last: r.last })
    this.rebuildFree()
  }

  /** Validates and places a mapping; returns it without inserting (the caller commits). */
  planMap(req: MapRequest, what = 'iova'): Area {
    const { max, errno } = LIMITS.mappings
    if (this.tree.size >= max) throw new ErrnoError(errno, `ioas ${this.id} holds ${max} mappings, the most iommufs keeps in one IOAS`)
    const align = this.alignment
    const pages = req.pages ?? new PinnedPages(false)
    if (req.length === 0n) throw new ErrnoError('EINVAL', 'length=0: nothing to map')
    if (req.length % align) throw new ErrnoError('EINVAL', `length=${hex(req.length)}: not a multiple of the IOVA alignment ${hex(align)}`)
    const fixed = (req.flags & MapFlag.FIXED_IOVA) !== 0
    const iova = fixed ? this.checkFixed(req.iova, req.length, what) : this.allocIova(req.length, req.userVa)
    // then the area is made (iopt_insert_area): pages mapped read-only stay so, and the page offset must suit the alignment
    if (req.flags & MapFlag.WRITEABLE && !pages.writable) throw new ErrnoError('EPERM', `${what}: the pages were mapped without WRITEABLE; a writable mapping of them is refused`)
    if ((req.userVa % PAGE_SIZE) % align) throw new ErrnoError('EINVAL', `user_va=${hex(req.userVa)}: its offset in the page is not aligned to the IOVA alignment ${hex(align)}`)
    return { iova, length: req.length, userVa: req.userVa, flags: req.flags & ~MapFlag.FIXED_IOVA, memory: req.memory, pages }
  }

  /** A fixed IOVA range's checks in iopt_check_iova's order; returns `iova`. */
  private checkFixed(iova: bigint, length: bigint, what: string): bigint {
    if (iova % this.alignment) throw new ErrnoError('EINVAL', `${what}=${hex(iova)}: not aligned to ${hex(this.alignment)}`)
    const last = iova + length - 1n
    if (last > ULONG_MAX) throw new ErrnoError('EOVERFLOW', `${what}=${hex(iova)} + length overflows`)
    this.syncDeviceReserved()
    const res = this.reservedSet.firstOverlapping(iova, last)
    if (res) throw new ErrnoError('EINVAL', `${what}=${hex(iova)}: range hits reserved IOVAs ${hex(res.start)}-${hex(res.last)}`)
    const clash = this.firstArea(iova, last)
    if (clash) throw new ErrnoError('EEXIST', `${what}=${hex(iova)}: overlaps the mapping at ${hex(clash.iova)}`)
    return iova
  }

  insert(area: Area): void {
    fallible('mapping allocation')
    const last = area.iova + area.length - 1n
    this.tree.insert(area.iova, last, area)
    this.free.remove(area.iova, last)
    areaMapped(this, area)
  }

  /** Takes one area out of the tree; its IOVAs become free again. */
  private removeArea(a: Area): void {
    this.tree.remove(a.iova)
    this.freeUp(a.iova, a.iova + a.length - 1n)
  }

  /**
   * First fit in [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] within the usable ranges,
   * aligned like the user address (up to the length's power of two, at most
   * a huge page) so huge pages stay possible, and at the user address's
   * offset in its page, as iopt_alloc_iova places it.
   */
  private allocIova(length: bigint, userVa: bigint): bigint {
    // the kernel refuses what its power-of-two rounding could not hold
    if (length >= ULONG_MAX / 2n) throw new ErrnoError('EOVERFLOW', `length=${hex(length)}: too long to place`)
    let want = lowestSetBit(userVa) < roundUpPow2(length) ? lowestSetBit(userVa) : roundUpPow2(length)
    if (want > ALLOC_MAX_ALIGN) want = ALLOC_MAX_ALIGN
    const align = want > this.alignment ? want : this.alignment
    this.syncDeviceReserved()
    const start = this.free.firstFit(length, align, ALLOC_FIRST, ALLOC_LAST, userVa % PAGE_SIZE)
    if (start === undefined) throw new ErrnoError('ENOSPC', `no free IOVA hole of ${hex(length)} bytes`)
    return start
  }

  /** The areas fully inside [iova, last]; ENOENT if any area is cut or none is inside. */
  areasIn(iova: bigint, last: bigint): Area[] {
    const hit = this.tree.overlapping(iova, last)
    const cut = hit.find((a) => a.iova < iova || a.iova + a.length - 1n > last)
    if (cut) throw new ErrnoError('ENOENT', `the mapping at ${hex(cut.iova)} (${hex(cut.length)} bytes) is only partly inside the range; mappings are unmapped whole`)
    if (!hit.length) throw new ErrnoError('ENOENT', `nothing is mapped in ${hex(iova)}-${hex(last)}`)
    return hit
  }

  /**
   * The areas reaching into [iova, last] one after another from iova, up to
   * the first hole (iopt_for_each_contig_area): none if nothing is at iova.
   */
  contiguousFrom(iova: bigint, last: bigint): Area[] {
    const out: Area[] = []
    for (let at = iova; at <= last; ) {
      const a = this.tree.firstOverlapping(at, at)
      if (!a) break
      out.push(a)
      at = a.iova + a.length
    }
    return out
  }

  /**
   * The pieces of the areas covering [iova, last] exactly, for a copy: any
   * sub-range of an area will do, but a hole anywhere is ENOENT.
   */
  slices(iova: bigint, last: bigint): Area[] {
    const out: Area[] = []
    for (let expect = iova; ; ) {
      const a = this.tree.firstOverlapping(expect, expect)
      if (!a) throw new ErrnoError('ENOENT', `src_iova: nothing is mapped at ${hex(expect)} in ${hex(iova)}-${hex(last)}`)
      const aLast = a.iova + a.length - 1n
      const end = aLast < last ? aLast : last
      const memory = a.memory && { backing: a.memory.backing, offset: a.memory.offset + (expect - a.iova) }
      out.push({ iova: expect, length: end - expect + 1n, userVa: a.userVa + (expect - a.iova), flags: a.flags, pages: a.pages, memory })
      if (end === last) return out
      expect = end + 1n
    }
  }

  /** Unmaps the areas inside [iova, last]: ENOENT if one is cut; nothing there unmaps 0 bytes. */
  unmapRange(iova: bigint, last: bigint): bigint {
    const hit = this.tree.overlapping(iova, last)
    const cut = hit.find((a) => a.iova < iova || a.iova + a.length - 1n > last)
    if (cut) throw new ErrnoError('ENOENT', `the mapping at ${hex(cut.iova)} (${hex(cut.length)} bytes) is only partly inside the range`)
    this.checkUnlocked(hit)
    return this.removeAreas(hit)
  }

  /** Splits the area holding `at` so that `at` ends a piece (iopt_cut_iova); EINVAL off the IOVA alignment. */
  cut(at: bigint): void {
    const a = this.tree.firstOverlapping(at, at)
    if (!a || at === a.iova || at === a.iova + a.length - 1n) return
    const start = at + 1n
    const align = this.alignment
    if (start % align || (a.userVa + (start - a.iova)) % align) throw new ErrnoError('EINVAL', `cannot split the mapping at ${hex(a.iova)} at ${hex(start)}: not aligned to ${hex(align)}`)
    const left = start - a.iova
    // each piece reaches the memory the area did: two holds, then the area's own goes with it
    a.memory?.backing.hold()
    a.memory?.backing.hold()
    const memory = a.memory && { backing: a.memory.backing, offset: a.memory.offset + left }
    areasUnmapped(this, [a])
    this.removeArea(a)
    this.insert({ ...a, length: left })
    this.insert({ ...a, iova: start, length: a.length - left, userVa: a.userVa + left, memory })
  }


  /** EBUSY if a locking access (a HW queue) pins any of `areas`, as iopt_unmap_iova_range refuses a locked area. */
  checkUnlocked(areas: readonly Area[]): void {
    for (const x of this.accesses) {
      if (!x.locksAreas) continue
      for (const r of x.pinned()) {
        const a = areas.find((m) => m.iova <= r.last && r.start <= m.iova + m.length - 1n)
        if (a) throw new ErrnoError('EBUSY', `the mapping at ${hex(a.iova)} is pinned by a HW queue; destroy the queue first`)
      }
    }
  }

  removeAreas(areas: Area[]): bigint {
    for (const a of areas) for (const x of this.accesses) x.unmapped(a.iova, a.iova + a.length - 1n)
    areasUnmapped(this, areas)
    // all of them (unmap of the whole space): drop the tree at once rather than one removal per area
    if (areas.length === this.tree.size) {
      this.tree.clear()
      this.rebuildFree()
    } else for (const a of areas) this.removeArea(a)
    // an unmap drops the domains' PTEs, and their dirty bits with them
    dropDirty(this.hwpts, (iova) => this.tree.firstOverlapping(iova, iova) !== undefined)
    return areas.reduce((n, a) => n + a.length, 0n)
  }

  /**
   * What of each area is pinned, as offsets [lo, hi] into it: all of it with
   * a domain to fill, else what each access pinned.
   */
  pinnedStretches(): { area: Area; lo: bigint; hi: bigint }[] {
    const out: { area: Area; lo: bigint; hi: bigint }[] = []
    const held = [...this.accesses].flatMap((x) => x.pinned())
    for (const a of this.areas) {
      const last = a.iova + a.length - 1n
      if (this.hwpts.size) {
        out.push({ area: a, lo: 0n, hi: a.length - 1n })
        continue
      }
      for (const r of held) {
        const from = r.start > a.iova ? r.start : a.iova
        const to = r.last < last ? r.last : last
        if (from <= to) out.push({ area: a, lo: from - a.iova, hi: to - a.iova })
      }
    }
    return out
  }

  /**
   * A first domain pins every area from the process that mapped it
   * (iopt_fill_domain): EFAULT once that process has exited (its mm is gone)
   * or no longer maps the range. File pages need no process, but must lie
   * inside a file whose pages pin (memfd_pin_folios: EINVAL otherwise).
   */
  checkPinnable(): void {
    if (this.hwpts.size) return
    for (const a of this.areas) {
      const refusal = filePinRefusal(a)
      if (refusal) throw new ErrnoError('EINVAL', `the mapping at ${hex(a.iova)} cannot be pinned for the domain: ${refusal}`)
      const pid = a.pages.file ? undefined : a.pages.owner?.pid
      if (pid === undefined) continue
      const need = pinAccess(a.flags)
      const b = a.memory?.backing
      const why = b instanceof ProcessBacking ? b.unpinnable(a.userVa, a.length, need) : ProcessBacking.unpinnableIn(pid, a.userVa, a.length, need)
      if (why) throw new ErrnoError('EFAULT', `the mapping at ${hex(a.iova)} cannot be pinned for the domain: ${why}`)
    }
  }

  describe(): [string, string][] {
    return [
      ['type', 'ioas'],
      ['users', String(this.users)],
      ['hwpts', [...this.hwpts].map((h) => h.id).join(' ') || '-'],
      ['iova_alignment', hex(this.alignment)],
      ['allowed_iovas', this.allowed?.map((r) => `${hex(r.start)}-${hex(r.last)}`).join(' ') ?? 'all'],
      ['iova_ranges', this.ranges().map((r) => `${hex(r.start)}-${hex(r.last)}`).join(' ')],
      ['huge_pages', this.hugePages ? '1' : '0'],
      ['mappings', String(this.tree.size)],
      ...this.areas.map((a, i): [string, string] => [
        `map${i}`,
        `iova=${hex(a.iova)} length=${hex(a.length)} user_va=${hex(a.userVa)} ${a.flags & MapFlag.READABLE ? 'r' : '-'}${a.flags & MapFlag.WRITEABLE ? 'w' : '-'}`,
      ]),
    ]
  }
}

export { MAP_FLAGS }

// ---- handlers (IOMMU_IOAS_*, the IOAS half of IOMMU_OPTION), as the kernel's ioas.c ----

export interface MapArgs {
  flags: number
  ioasId: number
  reserved: number
  userVa: bigint
  length: bigint
  iova: bigint
}

export interface CopyArgs {
  flags: number
  dstIoasId: number
  srcIoasId: number
  length: bigint
  dstIova: bigint
  srcIova: bigint
}

export function ioasAlloc(ctx: IommufdContext, flags: number): number {
  unknownFlags(flags, 0)
  return ctx.objects.insert(new Ioas()).id
}

export function ioasAllowIovas(ctx: IommufdContext, ioasId: number, reserved: number, ranges: () => IovaRange[]): void {
  mustBeZero(reserved, '__reserved')
  const ioas = ctx.ioas(ioasId)
  ioas.setAllowed(ranges())
}

export function ioasIovaRanges(ctx: IommufdContext, ioasId: number, reserved: number): { ranges: IovaRange[]; alignment: bigint } {
  mustBeZero(reserved, '__reserved')
  const ioas = ctx.ioas(ioasId)
  return { ranges: ioas.ranges(), alignment: ioas.alignment }
}

function checkMapArgs(flags: number, addrs: [string, bigint][]): void {
  unknownFlags(flags, MAP_FLAGS)
  for (const [name, v] of addrs) if (v >= ULONG_MAX) throw new ErrnoError('EOVERFLOW', `${name}=${hex(v)}: too large`)
  if (!(flags & (MapFlag.READABLE | MapFlag.WRITEABLE))) throw new ErrnoError('EINVAL', `flags=${hex(flags)}: needs READABLE or WRITEABLE`)
}

/** iopt_alloc_pages: no length, or one whose page count could overflow, is EINVAL. */
export function checkPagesLength(length: bigint): void {
  if (length === 0n) throw new ErrnoError('EINVAL', 'length=0: nothing to map')
  if (length > ULONG_MAX - PAGE_SIZE) throw new ErrnoError('EINVAL', `length=${hex(length)}: too long for a set of pages`)
}

/** VT-d erratum: read-only mappings are refused in an IOAS under a VT-d nest parent. */
function checkReadOnly(ioas: Ioas, flags: number): void {
  if (flags & MapFlag.WRITEABLE) return
  const parent = [...ioas.hwpts].find((h) => h.nestParent && h.kind === 'intel-vtd')
  if (parent) throw new ErrnoError('EINVAL', `flags: read-only mappings are refused under VT-d nest parent HWPT ${parent.id} (ERRATA_772415_SPR17)`)
}

/** The access pinning a mapping's pages needs: FOLL_WRITE for a WRITEABLE one. */
function pinAccess(mapFlags: number): PinAccess {
  return mapFlags & MapFlag.WRITEABLE ? 'write' : 'read'
}

/**
 * Pins [va, va+length) of a live process for IOAS_MAP: EFAULT where it has
 * nothing mapped, or (`need`) maps it without that access (as pin_user_pages
 * fails), else its memory from `va`.
 */
export function pinProcessPages(pid: number, va: bigint, length: bigint, need?: PinAccess): MemoryRef {
  const backing = ProcessBacking.openLive(pid)
  const p = backing ? backing.pinProblemIn(va, length, need) : 'gone'
  if (backing && !p) return { backing, offset: va }
  backing?.release()
  throw new ErrnoError('EFAULT', `user_va=${hex(va)}: ${describePinProblem(!p || p === 'gone' ? { at: va, served: false } : p)} in the caller (pid ${pid})`)
}

/** The CPU pages of each set of pages the IOASes pin (npinned), each page once however many areas, domains and accesses hold it. */
export function pinnedStretchesOf(ioases: Iterable<Ioas>): PinnedStretch[] {
  const out: PinnedStretch[] = []
  for (const ioas of ioases) {
    for (const { area: a, lo, hi } of ioas.pinnedStretches()) out.push(stretchOf(a, lo, hi))
  }
  return out
}

/** Bytes [lo, hi] of area `a` as CPU pages of its set of pages (user address or file offset). */
function stretchOf(a: Area, lo = 0n, hi = a.length - 1n): PinnedStretch {
  const base = a.pages.file && a.memory ? a.memory.offset : a.userVa
  return { pages: a.pages, first: (base + lo) / PAGE_SIZE, last: (base + hi) / PAGE_SIZE }
}

/**
 * Refuses (ENOMEM) pins that `areas`, pinned whole, would add past a memory
 * lock limit, before anything changes. Only sets charged to a user or an mm
 * are counted, so mappings made with CAP_IPC_LOCK cost nothing here.
 */
function checkNewPins(world: { ioases(): Iterable<Ioas> }, areas: readonly Area[]): void {
  const charged = areas.filter((a) => a.pages.owner && a.pages.owner.mode !== 'none')
  if (!charged.length) return
  const current = pinnedStretchesOf(world.ioases())
  checkPinLimits(npinned(current), npinned([...current, ...charged.map((a) => stretchOf(a))]))
}

/**
 * What pinning `areas` whole refuses, before anything changes: file pages
 * memfd_pin_folios will not take (EINVAL, `at` naming the area), then pins
 * past a memory lock limit (ENOMEM).
 */
export function checkPins(world: { ioases(): Iterable<Ioas> }, areas: readonly Area[], at: (a: Area) => string): void {
  for (const a of areas) {
    const refusal = filePinRefusal(a)
    if (refusal) throw new ErrnoError('EINVAL', `${at(a)}: ${refusal}`)
  }
  checkNewPins(world, areas)
}

/** The checks a first domain of `ioas` makes as it pins every area (iopt_table_add_domain): EFAULT, EINVAL, then ENOMEM. */
export function checkFirstDomain(ctx: IommufdContext, ioas: Ioas): void {
  ioas.checkPinnable()
  if (!ioas.hwpts.size) checkNewPins(ctx.world, ioas.areas)
}

/**
 * IOMMU_IOAS_MAP. `caller` is the mapping process when it is known (a real
 * ioctl, a shim frame): DMA reaches its memory and its pins are charged to
 * it; otherwise DMA finds no memory.
 */
export function ioasMap(ctx: IommufdContext, a: MapArgs, caller?: number): bigint {
  unknownFlags(a.flags, MAP_FLAGS)
  mustBeZero(a.reserved, '__reserved')
  checkMapArgs(a.flags, [['iova', a.iova], ['length', a.length]])
  return mapUserPages(ctx, ctx.ioas(a.ioasId), a, caller, { va: 'user_va', length: 'length' })
}

/**
 * iopt_map_user_pages, for IOAS_MAP and VFIO_IOMMU_MAP_DMA alike: the user
 * range reaches the memory of `caller` (when known), pinned and charged to
 * it; `names` are the struct's fields for messages.
 */
export function mapUserPages(ctx: IommufdContext, ioas: Ioas, m: { flags: number; length: bigint; iova: bigint; userVa: bigint }, caller: number | undefined, names: { va: string; length: string }): bigint {
  // iopt_alloc_user_pages: the end of the user range must be an address, then the pages' length checked
  if (m.userVa + m.length > ULONG_MAX) throw new ErrnoError('EOVERFLOW', `${names.va} + ${names.length} overflows`)
  checkPagesLength(m.length)
  const area = ioas.planMap({ ...m, pages: new PinnedPages(false, ownerFor(caller, ctx.rlimitMode === 1n), (m.flags & MapFlag.WRITEABLE) !== 0) })
  checkReadOnly(ioas, m.flags)
  // pinning the user pages is the kernel's last step (§3.6): EFAULT comes after every other check, and only with a domain to fill
  if (m.userVa === 0n && ioas.hwpts.size) throw new ErrnoError('EFAULT', `${names.va}=0: cannot pin pages at address 0`)
  // the kernel pins at map time only to fill the IOAS's domains: with none, unmapped memory is not yet an error
  let memory: MemoryRef | undefined
  try {
    memory = caller ? pinProcessPages(caller, m.userVa, m.length, pinAccess(m.flags)) : undefined
  } catch (e) {
    if (ioas.hwpts.size || !(e instanceof ErrnoError) || e.errno !== 'EFAULT') throw e
  }
  if (ioas.hwpts.size) checkNewPins(ctx.world, [area])
  ioas.insert(memory ? { ...area, memory } : area)
  return area.iova
}

export interface MapFileArgs {
  flags: number
  ioasId: number
  length: bigint
  iova: bigint
  /** File offset of the first byte. */
  start: bigint
}

/**
 * IOMMU_IOAS_MAP_FILE: the mapping reaches the file from `start`, which must
 * lie inside it with `length` (EINVAL otherwise): a DMA-BUF at once, a file
 * once a domain pins it (at map or at the first attach). The file is held
 * open while mapped; `open` opens the caller's file (EBADF when there is none).
 */
export function ioasMapFile(ctx: IommufdContext, a: MapFileArgs, open: (writable: boolean) => SizedBacking, caller?: number): bigint {
  unknownFlags(a.flags, MAP_FLAGS)
  checkMapArgs(a.flags, [['iova', a.iova], ['length', a.length]])
  const ioas = ctx.ioas(a.ioasId)
  // iopt_map_file_pages: the file range, then the descriptor, then the pages, then the IOVA
  if (a.length === 0n) throw new ErrnoError('EINVAL', 'length=0: nothing to map')
  if (a.start + a.length - 1n > ULONG_MAX) throw new ErrnoError('EOVERFLOW', 'start + length overflows')
  const writable = (a.flags & MapFlag.WRITEABLE) !== 0
  const file = open(writable)
  try {
    checkPagesLength(a.length)
    const size = file.size()
    // a DMA-BUF's size is checked at once; a file's pages are pinned (EINVAL past its end) only to fill a domain
    const dmabuf = !(file instanceof FileBacking)
    if (dmabuf && a.start + a.length > size) throw new ErrnoError('EINVAL', `start=${hex(a.start)} length=${hex(a.length)}: beyond the end of the file (${hex(size)} bytes)`)
    const area = ioas.planMap({ flags: a.flags, length: a.length, iova: a.iova, userVa: a.start, pages: new PinnedPages(true, ownerFor(caller, ctx.rlimitMode === 1n), writable, dmabuf) })
    checkReadOnly(ioas, a.flags)
    const mapped = { ...area, memory: { backing: file, offset: a.start } }
    if (ioas.hwpts.size) checkPins(ctx.world, [mapped], () => `start=${hex(a.start)} length=${hex(a.length)}`)
    ioas.insert(mapped)
    return area.iova
  } catch (e) {
    file.release()
    throw e
  }
}

export function ioasUnmap(ctx: IommufdContext, ioasId: number, iova: bigint, length: bigint): bigint {
  const ioas = ctx.ioas(ioasId)
  if (iova === 0n && length === ULONG_MAX) {
    ioas.checkUnlocked(ioas.areas)
    return ioas.removeAreas([...ioas.areas])
  }
  if (iova >= ULONG_MAX || length >= ULONG_MAX) throw new ErrnoError('EOVERFLOW', `${iova >= ULONG_MAX ? 'iova' : 'length'} too large`)
  if (length === 0n) throw new ErrnoError('EINVAL', 'length=0')
  const last = iova + length - 1n
  if (last > ULONG_MAX) throw new ErrnoError('EOVERFLOW', 'iova + length overflows')
  const hit = ioas.areasIn(iova, last)
  ioas.checkUnlocked(hit)
  return ioas.removeAreas(hit)
}

export function ioasCopy(ctx: IommufdContext, a: CopyArgs): bigint {
  checkMapArgs(a.flags, [
    ['dst_iova', a.dstIova],
    ['src_iova', a.srcIova],
    ['length', a.length],
  ])
  // the source is looked up and sliced before the destination is looked up, as iommufd_ioas_copy does
  const src = ctx.ioas(a.srcIoasId, 'src_ioas_id')
  if (a.length === 0n) throw new ErrnoError('EINVAL', 'length=0')
  if (a.srcIova + a.length - 1n > ULONG_MAX) throw new ErrnoError('EOVERFLOW', 'src_iova + length overflows')
  // any sub-range of the source areas, cut where they are cut; each piece keeps its pages and reaches its memory
  const pieces = src.slices(a.srcIova, a.srcIova + a.length - 1n)
  const dst = ctx.ioas(a.dstIoasId, 'dst_ioas_id')
  const whole = dst.planMap({ flags: a.flags, length: a.length, iova: a.dstIova, userVa: pieces[0].userVa, pages: pieces[0].pages }, 'dst_iova')
  const planned = pieces.map((p) => {
    const iova = whole.iova + (p.iova - a.srcIova)
    return dst.planMap({ flags: a.flags | MapFlag.FIXED_IOVA, length: p.length, iova, userVa: p.userVa, pages: p.pages, memory: p.memory }, 'dst_iova')
  })
  checkReadOnly(dst, a.flags)
  // the destination's domains pin the pieces (iopt_fill_domains) as a map would
  if (dst.hwpts.size) checkPins(ctx.world, planned, (p) => `dst_iova=${hex(p.iova)}: cannot be pinned for the domain`)
  for (const p of planned) {
    p.memory?.backing.hold()
    dst.insert({ ...p, flags: a.flags & ~MapFlag.FIXED_IOVA })
  }
  return whole.iova
}

/**
 * IOMMU_IOAS_CHANGE_PROCESS: the pins of every IOAS of the context move to
 * the calling process `caller` (its mm and user are charged, the old ones
 * relieved). Every area must be file pages (EINVAL: user pages belong to the
 * mm that mapped them); a charge past the caller's RLIMIT_MEMLOCK is ENOMEM.
 * Either way a refusal changes nothing.
 */
export function ioasChangeProcess(ctx: IommufdContext, reserved: number, caller?: number): void {
  mustBeZero(reserved, '__reserved')
  const ioases = ctx.objects.objects().filter((o): o is Ioas => o instanceof Ioas)
  for (const ioas of ioases) {
    const user = ioas.areas.find((a) => !a.pages.file || a.pages.dmabuf)
    if (user) throw new ErrnoError('EINVAL', `IOAS ${ioas.id}: the mapping at ${hex(user.iova)} is ${user.pages.file ? "a DMA-BUF's" : 'of IOAS_MAP'}; only IOAS_MAP_FILE mappings of files can change process`)
  }
  const all = npinned(pinnedStretchesOf(ctx.world.ioases()))
  const mine = new Map<PinnedPages, bigint>()
  for (const ioas of ioases) for (const a of ioas.areas) mine.set(a.pages, all.get(a.pages) ?? 0n)
  changeProcess(mine, caller, all)
}

/** IOMMU_OPTION HUGE_PAGES on an IOAS: GET, or SET to 0 or 1. */
export function ioasOption(ioas: Ioas, set: boolean, val64: bigint): bigint {
  if (!set) return ioas.hugePages ? 1n : 0n
  if (val64 > 1n) throw new ErrnoError('EINVAL', `val64=${val64}: expected 0 or 1`)
  ioas.setHugePages(val64 === 1n)
  return val64
}
