/**
 * Regions of an iommufd file that a program may mmap (the kernel's
 * iommufd_viommu_alloc_mmap and iommufd_fops_mmap in main.c): a driver
 * registers a region for an object and hands out its offset; mmap must name
 * that offset and length exactly; while a mapping lives, the object holds a
 * user and cannot be destroyed (EBUSY).
 *
 * Two kinds of mapping: the shim's (an anonymous mapping it fills, and whose
 * munmap it reports), and the file's own (under `exec --namespace` the
 * program's kernel maps the FUSE file: its pages are READs of the region's
 * offsets, and no munmap is heard, so the mapping lives while /proc shows it).
 */
import { ErrnoError } from '../util/errno'
import { mapsDevName, readMaps } from '../memory/pages'
import { hex } from './checks'
import { PAGE_SIZE, ULONG_MAX } from './ioas'
import type { IommufdObject } from './objects'

/** A mapping of the iommufd file itself: the process that made it, and the file as /proc/PID/maps names it. */
export interface FileMapping {
  readonly pid: number
  readonly devMajor: number
  readonly devMinor: number
  readonly ino: bigint
}

/** Whether `m.pid` still maps some of [offset, offset + length) of the file (false once it has exited). */
function stillMapped(m: FileMapping, offset: bigint, length: bigint): boolean {
  const dev = mapsDevName(m.devMajor, m.devMinor)
  return (readMaps(m.pid) ?? []).some((v) => v.dev === dev && v.inode === m.ino && v.offset < offset + length && v.offset + (v.end - v.start) > offset)
}

export interface MmapRegion {
  readonly offset: bigint
  readonly length: bigint
  readonly owner: IommufdObject
  /** What a mapping shows: the driver's page contents when it was mapped. */
  readonly data: Buffer
  /** Live mappings of it (each holds a user of `owner`). */
  maps: number
  /** Those of them the kernel made of the file itself. */
  readonly fileMaps: FileMapping[]
}

/** mmap flags (struct iommufs_mmap): MAP_SHARED, PROT_EXEC, and FILE: the kernel maps the file itself (no addr). */
export const MmapFlag = { SHARED: 1, EXEC: 2, FILE: 4 } as const
const KNOWN_FLAGS = MmapFlag.SHARED | MmapFlag.EXEC | MmapFlag.FILE

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
    const region: MmapRegion = { offset, length, owner, data, maps: 0, fileMaps: [] }
    this.regions.push(region)
    return region
  }

  /** The owner is going: its regions go too (a live mapping kept it from being destroyed). */
  removeOwner(owner: IommufdObject): void {
    for (let i = this.regions.length - 1; i >= 0; i--) if (this.regions[i].owner === owner) this.regions.splice(i, 1)
  }

  /** mmap(offset, length): the kernel's checks in order; the mapping takes a user of the owner. `file`: the kernel maps the file itself (MmapFlag.FILE). */
  map(offset: bigint, length: bigint, flags: number, file?: FileMapping): MmapRegion {
    if (flags & ~KNOWN_FLAGS) throw new ErrnoError('EINVAL', `flags=${hex(flags)}: unknown bits`)
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
    if (file) r.fileMaps.push(file)
    return r
  }

  /** Forgets the file's own mappings that are gone (their munmap is not heard): /proc no longer shows them. */
  prune(): void {
    for (const r of this.regions) {
      for (let i = r.fileMaps.length - 1; i >= 0; i--) {
        if (stillMapped(r.fileMaps[i], r.offset, r.length)) continue
        r.fileMaps.splice(i, 1)
        r.maps--
        r.owner.users--
      }
    }
  }

  /** A READ of the file at `pos` from a mapping of it: the region's bytes there, or undefined when no mapped region holds pos. */
  fileBytes(pos: bigint, len: number): Buffer | undefined {
    const r = this.regions.find((x) => x.fileMaps.length && x.offset <= pos && pos < x.offset + x.length)
    if (!r) return undefined
    const at = Number(pos - r.offset)
    return r.data.subarray(at, Math.min(r.data.length, at + len))
  }

  /** Where the highest region the file's own mappings show ends (0 with none): the file's size must reach it, or its pages fault (SIGBUS). */
  fileEnd(): bigint {
    return this.regions.reduce((m, r) => (r.fileMaps.length && r.offset + r.length > m ? r.offset + r.length : m), 0n)
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
      r.fileMaps.length = 0
    }
  }

  list(): readonly MmapRegion[] {
    return this.regions
  }
}
