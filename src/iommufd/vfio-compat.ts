import { ErrnoError } from '../util/errno'
import { mustBeZero } from './checks'
import type { IommufdContext } from './context'

/** The VFIO compatibility side of iommufd, as the kernel's vfio_compat.c. */

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
