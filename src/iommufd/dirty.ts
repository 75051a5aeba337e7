import { MOCK_PAGE_SIZE } from '../hw/mock/mock'
import type { HwptPaging } from './hwpt'
import type { Area } from './ioas'

/**
 * Dirty bits of mock paging domains (the selftest's DIRTY op sets them), by
 * 2 KiB IOVA page. SMMUv3 domains keep theirs in their page tables.
 */
const dirtyPages = new WeakMap<HwptPaging, Set<bigint>>()

export function dirtySet(hwpt: HwptPaging): Set<bigint> {
  let s = dirtyPages.get(hwpt)
  if (!s) dirtyPages.set(hwpt, (s = new Set()))
  return s
}

/**
 * Marks the mock PTE that maps `iova` (inside `area`) dirty: every 2 KiB page
 * it covers, so a read reports and cleans the whole PTE, as one dirty bit.
 */
export function markDirtyPte(hwpt: HwptPaging, area: Area, iova: bigint): void {
  const size = pteSize(hwpt, area, iova)
  const set = dirtySet(hwpt)
  for (let p = (iova - (iova % size)) / MOCK_PAGE_SIZE, n = size / MOCK_PAGE_SIZE; n > 0n; p++, n--) set.add(p)
}

/**
 * The size of the PTE the core would have written for `iova`: the domain's
 * huge page where it has one, huge pages are on in the IOAS, the aligned block
 * lies inside the one mapping and its memory is one huge CPU page at the same
 * alignment (physically contiguous, so iommu_map picks the huge size); else
 * the domain's smallest page.
 */
function pteSize(hwpt: HwptPaging, area: Area, iova: bigint): bigint {
  const sizes = hwpt.mockPages ?? { smallest: MOCK_PAGE_SIZE }
  const huge = sizes.huge
  if (!huge || !hwpt.ioas.hugePages || !area.memory) return sizes.smallest
  const block = iova - (iova % huge)
  if (block < area.iova || block + huge > area.iova + area.length) return sizes.smallest
  const at = area.memory.offset + (block - area.iova)
  return at % huge === 0n && area.memory.backing.pageSizeAt(at) >= huge ? huge : sizes.smallest
}

/**
 * The mock's dirty pages in [iova, iova + length), up to the first hole in
 * the mappings from iova: each marked (offsets from iova), and cleaned
 * unless `noClear`.
 */
export function readDirty(hwpt: HwptPaging, iova: bigint, length: bigint, noClear: boolean, mark: (from: bigint, to: bigint) => void): void {
  const dirty = hwpt.kind === 'mock' ? dirtyPages.get(hwpt) : undefined
  if (!dirty?.size) return
  const reached = hwpt.ioas.contiguousFrom(iova, iova + length - 1n)
  const end = reached.length ? reached[reached.length - 1].iova + reached[reached.length - 1].length : iova
  for (const page of [...dirty]) {
    const at = page * MOCK_PAGE_SIZE
    if (at < iova || at >= iova + length || at >= end) continue
    mark(at - iova, at + MOCK_PAGE_SIZE < iova + length ? at + MOCK_PAGE_SIZE - iova : length)
    if (!noClear) dirty.delete(page)
  }
}

/** Cleans every page (dirty tracking being enabled starts clean). */
export function clearDirty(hwpt: HwptPaging): void {
  dirtyPages.delete(hwpt)
}

/** Forgets the dirty bits of pages no longer mapped (`mapped` says which IOVAs still are). */
export function dropDirty(hwpts: Iterable<HwptPaging>, mapped: (iova: bigint) => boolean): void {
  for (const h of hwpts) {
    const d = dirtyPages.get(h)
    if (!d) continue
    for (const p of [...d]) if (!mapped(p * MOCK_PAGE_SIZE)) d.delete(p)
  }
}
