import { NoBacking } from '../memory/backing'
import { PhysicalMemory } from '../memory/physical'
import type { Area } from './ioas'

/**
 * Where the host drivers' tables find a mapping's memory: a window of the
 * machine's physical address space onto the area's backing, placed when a
 * domain first needs it (the model's pinning) and shared by every domain and
 * unit that maps the area.
 */
const windows = new WeakMap<Area, { mem: PhysicalMemory; pa: bigint }>()

export function window(mem: PhysicalMemory, area: Area): bigint {
  let w = windows.get(area)
  if (!w) {
    w = { mem, pa: mem.map(area.length, area.memory?.backing ?? new NoBacking(), area.memory?.offset ?? 0n) }
    windows.set(area, w)
  }
  return w.pa
}

/** After the drivers invalidated: the windows go and the backings are let go. */
export function releaseWindows(areas: readonly Area[]): void {
  for (const a of areas) {
    const w = windows.get(a)
    if (w) {
      w.mem.unmap(w.pa)
      windows.delete(a)
    }
    a.memory?.backing.release()
  }
}
