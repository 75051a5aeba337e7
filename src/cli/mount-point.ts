import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { ROOT_FSNAME, detach } from '../fs/fuse-binding'
import { UsageError } from './usage'

/** A placeholder git keeps in an otherwise empty mount point; it does not count as content. */
const PLACEHOLDERS = new Set(['.gitkeep'])

export interface MountPointState {
  /** The directory has entries other than a placeholder (FUSE needs "nonempty" for any entry). */
  hasContent: boolean
  hasAnyEntry: boolean
  /** A dead server's mount was found and detached. */
  recoveredStale: boolean
}

/**
 * iommufs mount points, as /proc/self/mounts spells them (octal escapes
 * decoded): mounts of type fuse.iommufs named iommufs. The sessions a mount
 * has below its root (sysfs at sys/, debugfs at sys/kernel/debug) are part of
 * it and not listed.
 */
export async function iommufsMounts(): Promise<string[]> {
  const text = await fsp.readFile('/proc/self/mounts', 'utf8')
  return text
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'fuse.iommufs' && f[0] === ROOT_FSNAME)
    .map((f) => f[1].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
}

/**
 * Checks a directory before mounting: recovers a stale mount left by a killed
 * server ("Transport endpoint is not connected"), refuses a live one, and
 * reports whether it has content.
 */
export async function prepareMountPoint(dir: string): Promise<MountPointState> {
  let recoveredStale = false
  try {
    await fsp.stat(dir)
    // a dead server's cached attributes still answer stat; a listing always asks the server
    if ((await iommufsMounts()).includes(path.resolve(dir))) await fsp.readdir(dir)
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code !== 'ENOTCONN' && code !== 'ECONNABORTED') {
      throw new UsageError(code === 'ENOENT' ? `mount point ${dir} does not exist` : `cannot use ${dir}: ${(e as Error).message}`)
    }
    await detach(dir)
    recoveredStale = true
  }
  if ((await iommufsMounts()).includes(path.resolve(dir))) throw new UsageError(`${dir} is already an iommufs mount (iommufs unmount ${dir})`)
  const st = await fsp.stat(dir)
  if (!st.isDirectory()) throw new UsageError(`mount point ${dir} is not a directory`)
  const entries = await fsp.readdir(dir)
  return { hasAnyEntry: entries.length > 0, hasContent: entries.some((e) => !PLACEHOLDERS.has(e)), recoveredStale }
}
