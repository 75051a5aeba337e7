/**
 * The VFIO compatibility side of iommufd, as the kernel's vfio_compat.c:
 * IOMMU_VFIO_IOAS, and VFIO type1 on the iommufd node: legacy VFIO
 * users (DPDK, older QEMU) map and unmap through the context's compat IOAS,
 * the one IOMMU_VFIO_IOAS SET names. Checks run in the kernel's order:
 * argsz and flags (EINVAL) first, then the compat IOAS (ENODEV).
 */
import { ErrnoError } from '../util/errno'
import { mustBeZero } from './checks'
import type { IommufdContext } from './context'
import { Ioas, IovaRange, MapFlag, PAGE_SIZE, ULONG_MAX, mapUserPages, subtract } from './ioas'

export const VFIO_API_VERSION = 0
/** VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU arguments. */
export const VfioExtension = { TYPE1: 1, TYPE1v2: 3, DMA_CC_IOMMU: 4, TYPE1_NESTING: 6, NOIOMMU: 8, UNMAP_ALL: 9, UPDATE_VADDR: 10 } as const
export const VfioDmaMapFlag = { READ: 1, WRITE: 2 } as const
export const VfioDmaUnmapFlag = { GET_DIRTY_BITMAP: 1, ALL: 2, VADDR: 4 } as const
export const VfioInfoFlag = { PGSIZES: 1, CAPS: 2 } as const
export const VfioInfoCap = { IOVA_RANGE: 1, DMA_AVAIL: 3 } as const

/** sizeof(struct vfio_iommu_type1_info): the capability chain starts after it. */
export const VFIO_INFO_SIZE = 24
/** The page sizes SMMUv3 and VT-d domains map (4 KiB, 2 MiB, 1 GiB). */
const HW_PGSIZES = (1n << 12n) | (1n << 21n) | (1n << 30n)
const PAGE_MASK = ULONG_MAX ^ (PAGE_SIZE - 1n)

export const VfioIoasOp = { GET: 0, SET: 1, CLEAR: 2 } as const

/** IOMMU_VFIO_IOAS: which IOAS the VFIO type1 commands act on. */
export function vfioIoasOp(ctx: IommufdContext, ioasId: number, op: number, reserved: number): number {
  mustBeZero(reserved, '__reserved')
  switch (op) {
    case VfioIoasOp.GET:
      if (!ctx.vfioIoas) throw new ErrnoError('ENODEV', 'no compatibility IOAS is set')
      return ctx.vfioIoas.id
    case VfioIoasOp.SET:
      ctx.vfioIoas = ctx.ioas(ioasId)
      return ioasId
    case VfioIoasOp.CLEAR:
      ctx.vfioIoas = undefined
      return ioasId
    default:
      throw new ErrnoError('EOPNOTSUPP', `op=${op}: expected GET (0), SET (1) or CLEAR (2)`)
  }
}

function compatIoas(ctx: IommufdContext): Ioas {
  if (!ctx.vfioIoas) throw new ErrnoError('ENODEV', 'no compat IOAS: set one with IOMMU_VFIO_IOAS first')
  return ctx.vfioIoas
}

/** VFIO_CHECK_EXTENSION: 1 for what the compat layer does, 0 for the rest. */
export function checkExtension(ctx: IommufdContext, type: bigint): number {
  switch (type) {
    case BigInt(VfioExtension.TYPE1):
    case BigInt(VfioExtension.TYPE1v2):
    case BigInt(VfioExtension.UNMAP_ALL):
      return 1
    case BigInt(VfioExtension.DMA_CC_IOMMU):
      // every domain iommufs models enforces cache coherency
      compatIoas(ctx)
      return 1
    default:
      return 0
  }
}

/** VFIO_SET_IOMMU: TYPE1 (v0) turns huge pages off so any range can be unmapped; v2 leaves them. */
export function setIommu(ctx: IommufdContext, type: bigint): void {
  if (type !== BigInt(VfioExtension.TYPE1) && type !== BigInt(VfioExtension.TYPE1v2)) throw new ErrnoError('EINVAL', `type=${type}: expected TYPE1 (1) or TYPE1v2 (3)`)
  const ioas = compatIoas(ctx)
  if (type === BigInt(VfioExtension.TYPE1)) ioas.setHugePages(false)
}

/** iova_pgsizes: what every domain of the IOAS maps, in CPU pages, at least the IOVA alignment. */
function pageSizes(ioas: Ioas): bigint {
  let bitmap = ULONG_MAX
  for (const h of ioas.hwpts) bitmap &= h.mockPages ? h.mockPages.smallest | (h.mockPages.huge ?? 0n) : HW_PGSIZES
  if (bitmap & (PAGE_SIZE - 1n)) bitmap = (bitmap & PAGE_MASK) | PAGE_SIZE
  return bitmap > ioas.alignment ? bitmap : ioas.alignment
}

export interface InfoResult {
  flags: number
  iovaPgsizes: bigint
  /** The argsz to report: the whole chain's size. */
  argsz: number
  capOffset: number
  /** What the kernel writes past the struct (offsets from the struct's start), all within argsz. */
  caps: { offset: number; data: Buffer }[]
}

/**
 * VFIO_IOMMU_GET_INFO: the capability chain DMA_AVAIL then IOVA_RANGE,
 * each written only where the caller's argsz holds it whole, as the kernel
 * fills it; the `next` link only once argsz reaches the next cap.
 */
export function getInfo(ctx: IommufdContext, argsz: number): InfoResult {
  const ioas = compatIoas(ctx)
  const holes: IovaRange[] = subtract([{ start: 0n, last: ULONG_MAX }], ioas.reserved())
  const dmaAvail = Buffer.alloc(12)
  dmaAvail.writeUInt16LE(VfioInfoCap.DMA_AVAIL, 0)
  dmaAvail.writeUInt16LE(1, 2)
  dmaAvail.writeUInt32LE(0xffffffff, 8)
  const iova = Buffer.alloc(16 + 16 * holes.length)
  iova.writeUInt16LE(VfioInfoCap.IOVA_RANGE, 0)
  iova.writeUInt16LE(1, 2)
  iova.writeUInt32LE(holes.length, 8)
  holes.forEach((h, i) => {
    iova.writeBigUInt64LE(h.start, 16 + 16 * i)
    iova.writeBigUInt64LE(h.last, 24 + 16 * i)
  })
  const total = VFIO_INFO_SIZE + 16 + iova.length
  const caps: { offset: number; data: Buffer }[] = []
  // DMA_AVAIL at 24 when its 12 bytes fit
  if (argsz - VFIO_INFO_SIZE >= dmaAvail.length) caps.push({ offset: VFIO_INFO_SIZE, data: dmaAvail })
  // IOVA_RANGE at 40: each range when it fits whole, then the header when all counted ranges do
  const iovaOff = VFIO_INFO_SIZE + 16
  if (argsz > iovaOff) {
    const avail = argsz - iovaOff
    for (let i = 0; i < holes.length; i++) if (avail >= 16 + 16 * (i + 1)) caps.push({ offset: iovaOff + 16 + 16 * i, data: iova.subarray(16 + 16 * i, 32 + 16 * i) })
    if (avail >= iova.length) caps.push({ offset: iovaOff, data: iova.subarray(0, 16) })
  }
  // DMA_AVAIL's next link, once argsz reaches the IOVA_RANGE cap
  if (argsz >= iovaOff) {
    const next = Buffer.alloc(4)
    next.writeUInt32LE(iovaOff)
    caps.push({ offset: VFIO_INFO_SIZE + 4, data: next })
  }
  return { flags: VfioInfoFlag.PGSIZES | VfioInfoFlag.CAPS, iovaPgsizes: pageSizes(ioas), argsz: total, capOffset: argsz >= total ? VFIO_INFO_SIZE : 0, caps: mergeWrites(caps) }
}

/** Overlapping writes in order, as one buffer per contiguous run (later writes win). */
function mergeWrites(writes: { offset: number; data: Buffer }[]): { offset: number; data: Buffer }[] {
  if (!writes.length) return []
  const lo = Math.min(...writes.map((w) => w.offset))
  const hi = Math.max(...writes.map((w) => w.offset + w.data.length))
  const buf = Buffer.alloc(hi - lo)
  const touched = new Uint8Array(hi - lo)
  for (const w of writes) {
    w.data.copy(buf, w.offset - lo)
    touched.fill(1, w.offset - lo, w.offset - lo + w.data.length)
  }
  const out: { offset: number; data: Buffer }[] = []
  for (let i = 0; i < touched.length; ) {
    if (!touched[i]) {
      i++
      continue
    }
    let j = i
    while (j < touched.length && touched[j]) j++
    out.push({ offset: lo + i, data: Buffer.from(buf.subarray(i, j)) })
    i = j
  }
  return out
}

export interface DmaMapArgs {
  argszOk: boolean
  flags: number
  vaddr: bigint
  iova: bigint
  size: bigint
}

/** VFIO_IOMMU_MAP_DMA: a fixed-IOVA map in the compat IOAS, of the caller's memory as IOAS_MAP maps it. */
export function mapDma(ctx: IommufdContext, a: DmaMapArgs, caller?: number): void {
  const known = VfioDmaMapFlag.READ | VfioDmaMapFlag.WRITE
  if (!a.argszOk || a.flags & ~known) throw new ErrnoError('EINVAL', a.argszOk ? `flags=0x${a.flags.toString(16)}: only READ and WRITE are defined` : 'argsz: shorter than vfio_iommu_type1_dma_map')
  const ioas = compatIoas(ctx)
  const flags = MapFlag.FIXED_IOVA | (a.flags & VfioDmaMapFlag.READ ? MapFlag.READABLE : 0) | (a.flags & VfioDmaMapFlag.WRITE ? MapFlag.WRITEABLE : 0)
  mapUserPages(ctx, ioas, { flags, length: a.size, iova: a.iova, userVa: a.vaddr }, caller, { va: 'vaddr', length: 'size' })
}

export interface DmaUnmapArgs {
  argszOk: boolean
  flags: number
  iova: bigint
  size: bigint
}

/** An unmap refused where vfio_compat.c still writes `size` back: nothing was unmapped. */
export class UnmapFailed extends ErrnoError {
  constructor(e: ErrnoError) {
    super(e.errno, e.message)
  }
}

/**
 * VFIO_IOMMU_UNMAP_DMA: returns the bytes unmapped. Unmapping nothing
 * succeeds. Under TYPE1 (v0, huge pages off) the range's ends are cut
 * first, so any page-aligned sub-range of a mapping can go; v2 unmaps only
 * whole mappings (ENOENT).
 */
export function unmapDma(ctx: IommufdContext, a: DmaUnmapArgs): bigint {
  if (!a.argszOk || a.flags & ~VfioDmaUnmapFlag.ALL) throw new ErrnoError('EINVAL', a.argszOk ? `flags=0x${a.flags.toString(16)}: only ALL is supported` : 'argsz: shorter than vfio_iommu_type1_dma_unmap')
  const ioas = compatIoas(ctx)
  if (a.flags & VfioDmaUnmapFlag.ALL) {
    if (a.iova !== 0n || a.size !== 0n) throw new ErrnoError('EINVAL', 'flags=ALL: iova and size must be 0')
    return ioas.unmapRange(0n, ULONG_MAX)
  }
  if (a.size === 0n) throw new UnmapFailed(new ErrnoError('EINVAL', 'size=0'))
  const last = a.iova + a.size - 1n
  if (last > ULONG_MAX) throw new UnmapFailed(new ErrnoError('EOVERFLOW', 'iova + size overflows'))
  if (!ioas.hugePages) {
    ioas.cut(last)
    if (a.iova) ioas.cut(a.iova - 1n)
  }
  try {
    return ioas.unmapRange(a.iova, last)
  } catch (e) {
    throw e instanceof ErrnoError ? new UnmapFailed(e) : e
  }
}
