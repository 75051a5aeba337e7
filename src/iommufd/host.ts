import * as smmu from './smmu-host'
import * as vtd from './vtd-host'
import { releaseWindows } from './host-memory'
import type { Area, Ioas } from './ioas'
import type { HwptPaging } from './hwpt'

/** IOAS_MAP/COPY inserted an area: every domain table built for the IOAS maps it. */
export function areaMapped(ioas: Ioas, area: Area): void {
  smmu.areaMapped(ioas, area)
  vtd.areaMapped(ioas, area)
}

/** IOAS_UNMAP: each driver clears its tables and invalidates, then the memory is let go. */
export function areasUnmapped(ioas: Ioas, areas: readonly Area[]): void {
  smmu.areasUnmapped(ioas, areas)
  vtd.areasUnmapped(ioas, areas)
  releaseWindows(areas)
}

/** A paging HWPT is destroyed: the drivers free the tables they built for it. */
export function hwptDestroyed(h: HwptPaging): void {
  smmu.hwptDestroyed(h)
  vtd.hwptDestroyed(h)
}

/** GET_DIRTY_BITMAP's walk over whichever table the domain has (SMMUv3 stage 1, VT-d second stage). */
export function readAndClearDirty(h: HwptPaging, iova: bigint, length: bigint, keep: boolean, mark: (from: bigint, to: bigint) => void): void {
  smmu.readAndClearDirty(h, iova, length, keep, mark)
  vtd.readAndClearDirty(h, iova, length, keep, mark)
}

/** After HWPT_SET_DIRTY_TRACKING changed the domain's state: VT-d rewrites SSADE in its PASID entries. */
export function dirtyTrackingChanged(h: HwptPaging): void {
  vtd.dirtyTrackingChanged(h)
}
