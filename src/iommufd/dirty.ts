import type { HwptPaging } from './hwpt'

/**
 * Dirty bits of mock paging domains (the selftest's DIRTY op sets them), by
 * 2 KiB IOVA page. SMMUv3 domains keep theirs in their page tables.
 */
const MOCK_PAGE = 2048n
const dirtyPages = new WeakMap<HwptPaging, Set<bigint>>()

export function dirtySet(hwpt: HwptPaging): Set<bigint> {
  let s = dirtyPages.get(hwpt)
  if (!s) dirtyPages.set(hwpt, (s = new Set()))
  return s
}

/** Marks the mock page holding `iova` dirty. */
export function markDirtyPage(hwpt: HwptPaging, iova: bigint): void {
  dirtySet(hwpt).add(iova / MOCK_PAGE)
}

/**
 * The dirty bitmap over [iova, iova + length) in page_size bits: a bit is
 * set when a dirty mock page lies in its range; those pages are cleaned
 * unless `noClear`.
 */
export function readDirty(hwpt: HwptPaging, iova: bigint, length: bigint, pageSize: bigint, noClear: boolean): Buffer {
  const out = Buffer.alloc(Number(((length / pageSize + 63n) / 64n) * 8n))
  const dirty = hwpt.kind === 'mock' ? dirtyPages.get(hwpt) : undefined
  if (!dirty?.size) return out
  for (const page of [...dirty]) {
    const at = page * MOCK_PAGE
    if (at < iova || at >= iova + length) continue
    const first = (at - iova) / pageSize
    const last = (at + MOCK_PAGE - 1n - iova) / pageSize
    for (let b = first; b <= last && b < length / pageSize; b++) out[Number(b >> 3n)] |= 1 << Number(b & 7n)
    if (!noClear) dirty.delete(page)
  }
  return out
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
    for (const p of [...d]) if (!mapped(p * MOCK_PAGE)) d.delete(p)
  }
}
