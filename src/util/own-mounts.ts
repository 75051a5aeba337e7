import { readFileSync } from 'node:fs'
import * as path from 'node:path'

/**
 * The directories this process serves over FUSE. The server answers its own
 * mounts' requests on one thread, so it must never open or stat a file there
 * itself: it would wait for an answer only it can give. A caller's descriptor
 * or path that leads back here is refused instead.
 */
const served = new Set<string>()

/** The devices ("major:minor", decimal) of the mounts under served directories, as last noted. */
let devices = new Set<string>()

/** Before mounting `dir`: from now on, paths under it are refused. */
export function registerServedDir(dir: string): void {
  served.add(path.resolve(dir))
}

/** Once `dir` (every session under it) is mounted: its mounts' devices are noted, so no check reads mountinfo again. */
export function noteServedMounts(): void {
  devices = new Set(served.size ? mounts('/proc/self/mountinfo').filter(([, , at]) => pathIsServedHere(at)).map(([, dev]) => dev) : [])
}

export function unregisterServedDir(dir: string): void {
  served.delete(path.resolve(dir))
  noteServedMounts()
}

/** Whether `p` (as written; symlinks are not followed, which would reach the mount) names a file under a served directory. */
export function pathIsServedHere(p: string): boolean {
  const abs = path.resolve(p)
  for (const d of served) if (abs === d || abs.startsWith(`${d}/`)) return true
  return false
}

/** mountinfo's octal escapes (\040 for a space) undone. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))

/** [mount ID, "major:minor", mount point] of each line of a mountinfo file. */
function mounts(file: string): [string, string, string][] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(' ')
      return [f[0], f[2], unescape(f[4])]
    })
}

/** The devices ("major:minor", decimal) of the served mounts. */
export function servedDevices(): ReadonlySet<string> {
  return devices
}

/** The device ("major:minor", decimal) of process `pid`'s descriptor `fd`, told without a request to this server; undefined if there is none. */
export type DescriptorDevice = (pid: number, fd: number) => string | undefined

/** A transport's way to tell a descriptor's device at once (the libfuse3 addon's statx); else fdinfo and mountinfo are read. */
let descriptorDevice: DescriptorDevice | undefined

export function useDescriptorDevice(f: DescriptorDevice): void {
  descriptorDevice = f
}

/**
 * Whether descriptor `fd` of process `pid` is a file of a served directory,
 * whatever path the process sees it by (a bind mount in another mount
 * namespace included): its mount's device is one of the served mounts'.
 * Read from /proc alone, never through the file.
 */
export function fdIsServedHere(pid: number, fd: number): boolean {
  if (!devices.size) return false
  if (descriptorDevice) {
    const dev = descriptorDevice(pid, fd)
    return dev !== undefined && devices.has(dev)
  }
  try {
    const mntId = /^mnt_id:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1]
    const dev = mounts(`/proc/${pid}/mountinfo`).find((m) => m[0] === mntId)?.[1]
    return dev !== undefined && servedDevices().has(dev)
  } catch {
    return false // no such descriptor or process: opening it fails on its own
  }
}
