/** What both FUSE backends share: how a failure becomes an errno, and what a mount returns. */
import { ErrnoError, ERRNO } from '../util/errno'
import { TraceLog } from '../util/trace'

/** The source every backend gives the mount at the mount point (/proc/mounts' first field); sessions mounted below it name their own. */
export const ROOT_FSNAME = 'iommufs'

export interface Mounted {
  unmount(): Promise<void>
}

export interface BackendOptions {
  /** The mount point has entries (mount over them). */
  nonEmpty?: boolean
  /** Called when the mount went away without unmount() (umount from outside, an aborted connection). */
  onEnded?: () => void
}

/** An ErrnoError becomes its (positive) errno; anything else is a bug: EIO plus a trace line. */
export function errnoOf(trace: TraceLog, op: string, p: string, e: unknown): number {
  if (e instanceof ErrnoError) return e.code
  trace.emit('bug', `${op} ${p}: ${e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 3).join(' | ') : String(e)}`)
  return ERRNO.EIO
}
