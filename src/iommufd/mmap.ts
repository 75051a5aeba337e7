/**
 * Regions of an iommufd file that a program may mmap (the kernel's
 * iommufd_viommu_alloc_mmap and iommufd_fops_mmap in main.c): a driver
 * registers a region for an object and hands out its offset; mmap must name
 * that offset and length exactly; while a mapping lives, the object holds a
 * user and cannot be destroyed (EBUSY).
 */
import { ErrnoError } from '../util/errno'
import { hex } from './checks'
import { PAGE_SIZE, ULONG_MAX } from './ioas'
import type { IommufdObject } from './objects'

export interface MmapRegion {
  readonly offset: bigint
  readonly length: bigint
  readonly owner: IommufdObject
  /** What a mapping shows: the driver's page contents when it was mapped. */
  readonly data: Buffer
  /** Live mappings of it (each holds a user of `owner`). */
  maps: number
}

/** mmap flags the shim passes (struct iommufs_mmap): MAP_SHARED and PROT_EXEC. */
export const MmapFlag = { SHARED: 1, EXEC: 2 } as const

export class MmapRegions {
  private readonly regions: MmapRegion[] = []

  /** The lowest free page-aligned range from PAGE_SIZE up (mtree_alloc_range). */
  add(owner: IommufdObject, data: Buffer): MmapRegion {
    const length = BigInt(data.length)
    let offset = PAGE_SIZE
    for (const r of [...this.regions].sort((a, b) => (a.offset < b.offset ? -1 : 1))) {
      if (offset + length <= r.offset) break
      if (r.offset + r.length > offset) offset = r.offset + r.length
    }
    if (offset + length - 1n > ULONG_MAX) throw new ErrnoError('ENOSPC', 'no free mmap offset')
    const region: MmapRegion = { offset, length, owner, data, maps: 0 }
    this.regions.push(region)
    return region
  }

  /** The owner is going: its regions go too (a live mapping kept it from being destroyed). */
  removeOwner(owner: IommufdObject): void {
    for (let i = this.regions.length - 1; i >= 0; i--) if (this.regions[i].owner === owner) this.regions.splice(i, 1)
  }

  /** mmap(offset, length): the kernel's checks in order; the mapping takes a user of the owner. */
  map(offset: bigint, length: bigint, flags: number): MmapRegion {
    if (length === 0n || length % PAGE_SIZE) throw new ErrnoError('EINVAL', `length=${hex(length)}: not a multiple of ${hex(PAGE_SIZE)}`)
    if (!(flags & MmapFlag.SHARED)) throw new ErrnoError('EINVAL', 'flags: an iommufd region is mapped MAP_SHARED')
    if (flags & MmapFlag.EXEC) throw new ErrnoError('EPERM', 'flags: PROT_EXEC is refused')
    const r = this.regions.find((x) => x.offset <= offset && offset < x.offset + x.length)
    if (!r) throw new ErrnoError('ENXIO', `offset=${hex(offset)}: no region there`)
    if (r.offset !== offset || r.length !== length) {
      throw new ErrnoError('ENXIO', `offset=${hex(offset)} length=${hex(length)}: the region is offset ${hex(r.offset)} length ${hex(r.length)}, mapped whole only`)
    }
    r.maps++
    r.owner.users++
    return r
  }

  /** munmap of a mapping made by map(); a region already gone is nothing to undo. */
  unmap(offset: bigint): void {
    const r = this.regions.find((x) => x.offset === offset)
    if (!r || r.maps === 0) throw new ErrnoError('EINVAL', `offset=${hex(offset)}: not mapped`)
    r.maps--
    r.owner.users--
  }

  /** The file is closing: mappings no longer keep their owners (the process lets them go with it). */
  dropMappings(): void {
    for (const r of this.regions) {
      r.owner.users -= r.maps
      r.maps = 0
    }
  }

  list(): readonly MmapRegion[] {
    return this.regions
  }
}
