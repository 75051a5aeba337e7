import * as smmu from './smmu-host'
import * as vtd from './vtd-host'
import { releaseWindows } from './host-memory'
import type { Area, Ioas } from './ioas'

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
