import * as fs from 'node:fs'

/**
 * Which physical page a byte lives in, as far as the model can tell without
 * pinning anything: a byte of a shared file mapping (a memfd, a MAP_SHARED
 * file, shared anonymous memory, which the kernel backs with a shmem inode) is
 * the file's byte, whoever maps it and at whatever address; any other byte is
 * known by its user address alone. Two bytes with the same key are the same
 * memory, as two equal struct page pointers are in the kernel's checks.
 */
export interface PageKey {
  /** "va", or "file <major:minor> <inode>". */
  readonly space: string
  /** The byte's address in that space (a user address, a file offset). */
  readonly at: bigint
}

export const CPU_PAGE = 4096n

export function sameKey(a: PageKey, b: PageKey): boolean {
  return a.space === b.space && a.at === b.at
}

/** The key of the first byte of the CPU page holding `k`. */
export function pageOf(k: PageKey): PageKey {
  return { space: k.space, at: k.at - (k.at % CPU_PAGE) }
}

/** One line of /proc/PID/maps. */
export interface Vma {
  readonly start: bigint
  readonly end: bigint
  readonly shared: boolean
  /** Its protection's r and w bits (PROT_NONE has neither). */
  readonly readable: boolean
  readonly writable: boolean
  /** The file offset of `start`. */
  readonly offset: bigint
  /** "major:minor", in hex as maps prints it. */
  readonly dev: string
  readonly inode: bigint
}

/** One line of /proc/PID/maps. */
function vmaOf(line: string): Vma {
  const [range, perms, offset, dev, inode] = line.split(/\s+/)
  const [lo, hi] = range.split('-')
  return { start: BigInt(`0x${lo}`), end: BigInt(`0x${hi}`), shared: perms[3] === 's', readable: perms[0] === 'r', writable: perms[1] === 'w', offset: BigInt(`0x${offset}`), dev, inode: BigInt(inode) }
}

const U64_MAX = (1n << 64n) - 1n

/** An address as 16 hex digits: maps prints at least 8, and padded ones compare as strings in address order. */
const hex16 = (a: string): string => a.padStart(16, '0')

/**
 * The process's mappings, in address order; undefined once it has exited.
 * With `span`, only those overlapping [span.from, span.to): the other lines
 * are passed over by comparing their addresses as text (a pin checks a few
 * pages against a hundred mappings, and each parsed line costs five BigInts).
 */
export function readMaps(pid: number, span?: { from: bigint; to: bigint }): Vma[] | undefined {
  let text: string
  try {
    text = fs.readFileSync(`/proc/${pid}/maps`, 'utf8')
  } catch {
    return undefined
  }
  const lines = text.split('\n').filter(Boolean)
  if (!span) return lines.map(vmaOf)
  const from = hex16(span.from.toString(16))
  const to = span.to > U64_MAX ? 'g' : hex16(span.to.toString(16)) // past every address
  const out: Vma[] = []
  for (const line of lines) {
    const dash = line.indexOf('-')
    if (hex16(line.slice(dash + 1, line.indexOf(' ', dash))) <= from) continue
    if (hex16(line.slice(0, dash)) >= to) break
    out.push(vmaOf(line))
  }
  return out
}

/** The key of byte `offset` of the file on device `dev` ("major:minor" hex) with inode `inode`. */
export function fileKey(dev: string, inode: bigint, offset: bigint): PageKey {
  return { space: `file ${dev} ${inode}`, at: offset }
}

/** A device as /proc/PID/maps prints it: "major:minor" in hex, two digits at least. */
export function mapsDevName(major: bigint | number, minor: bigint | number): string {
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`
}

/** The maps-style "major:minor" of a stat's st_dev (glibc's dev_t split). */
export function devName(dev: bigint): string {
  return mapsDevName(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn), (dev & 0xffn) | ((dev >> 12n) & ~0xffn))
}

/**
 * Resolves user addresses to page keys, reading each process's maps once:
 * one resolver serves one request, so a check over many pages costs one read.
 */
export class PageResolver {
  private readonly maps = new Map<number, Vma[] | undefined>()

  /** The key of the byte at `va` in process `pid` (unknown process: the address itself). */
  ofProcess(pid: number | undefined, va: bigint): PageKey {
    const vma = pid ? this.vmaAt(pid, va) : undefined
    if (vma && vma.shared && vma.inode !== 0n) return fileKey(vma.dev, vma.inode, vma.offset + (va - vma.start))
    return { space: 'va', at: va }
  }

  /**
   * Where process `pid` (unknown: none, addresses stand for themselves) has
   * the byte `k`: its address, if `k` is a user address there, or each
   * address its shared mappings of `k`'s file show it at.
   */
  addressesOf(pid: number | undefined, k: PageKey): bigint[] {
    if (k.space === 'va') return sameKey(this.ofProcess(pid, k.at), k) ? [k.at] : []
    if (!pid) return []
    this.vmaAt(pid, 0n)
    const out: bigint[] = []
    for (const v of this.maps.get(pid) ?? []) {
      if (!v.shared || v.inode === 0n || fileKey(v.dev, v.inode, 0n).space !== k.space) continue
      if (k.at >= v.offset && k.at - v.offset < v.end - v.start) out.push(v.start + (k.at - v.offset))
    }
    return out
  }

  private vmaAt(pid: number, va: bigint): Vma | undefined {
    if (!this.maps.has(pid)) this.maps.set(pid, readMaps(pid))
    return this.maps.get(pid)?.find((v) => v.start <= va && va < v.end)
  }
}
