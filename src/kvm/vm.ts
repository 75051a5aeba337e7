import { hex } from '../hw/bits'
import { DebugFile } from '../hw/unit'
import { Backing } from '../memory/backing'
import { PhysicalMemory } from '../memory/physical'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { ArmStage2, EptStage2, Stage2, Stage2Format, Stage2Prot } from './stage2'

/**
 * The RFC's kvm_tdp_importer_ops: whoever walks KVM's exported stage 2 (an
 * IOMMU driver's domain) is told, synchronously, of every change it may have
 * cached, and invalidates its hardware itself. `start` 0 with `size` all
 * ones means everything. Returns what it did, for the trace.
 */
export interface TdpImporter {
  readonly name: string
  invalidate(start: bigint, size: bigint): string
}

/** start 0 / size -1 (all ones): every mapping, as the RFC spells it. */
export const ALL = (1n << 64n) - 1n

/** A guest-physical range backed by memory (a memslot), pre-faulted into the stage 2. */
export interface Memslot {
  readonly gpa: bigint
  readonly size: bigint
  /** Where the window onto the backing sits in host physical memory. */
  readonly pa: bigint
  readonly backing: Backing
  readonly offset: bigint
  prot: Stage2Prot
}

const PAGE = 0x1000n

export function protText(p: Stage2Prot): string {
  return `${p.read ? 'r' : '-'}${p.write ? 'w' : '-'}`
}

/**
 * One VM's memory view: memslots, the stage-2 table KVM keeps for them in
 * host physical memory, and the importers of that table (at most one export,
 * of address space 0, as the RFC allows). Every change that removes or
 * narrows a present leaf notifies each importer before it returns, unless
 * fault injection drops the notification (a broken hook).
 */
export class Vm {
  readonly stage2: Stage2
  readonly memslots: Memslot[] = []
  readonly importers = new Set<TdpImporter>()
  /** The handle KVM_CREATE_TDP_FD gave out for address space 0, if exported. */
  tdp: number | undefined
  /** Notifications fault injection will drop (the broken-hook switch). */
  dropNotifications = 0
  /** The opener closed it: it goes when the last importer lets go. */
  closed = false

  constructor(readonly id: number, readonly mem: PhysicalMemory, format: Stage2Format, ipaBits: number, private readonly trace: (msg: string) => void) {
    this.stage2 = format === 'arm64' ? new ArmStage2(mem, ipaBits) : new EptStage2(mem)
  }

  get name(): string {
    return `vm${this.id}`
  }

  /** A request's range: aligned, inside the IPA space, and no more pages than one request may touch. */
  checkRange(gpa: bigint, size: bigint): void {
    if (gpa % PAGE) throw new ErrnoError('EINVAL', `gpa=${hex(gpa)}: not 4K-aligned`)
    if (size === 0n || size % PAGE) throw new ErrnoError('EINVAL', `size=${hex(size)}: a nonzero multiple of 4K`)
    const { max, errno } = LIMITS.kvmRange
    if (size > BigInt(max)) throw new ErrnoError(errno, `size=${hex(size)}: at most ${hex(max)} bytes in one request`)
    if (gpa + size > 1n << BigInt(this.stage2.ipaBits)) throw new ErrnoError('EINVAL', `gpa=${hex(gpa)} size=${hex(size)}: beyond the VM's ${this.stage2.ipaBits}-bit guest-physical space`)
  }

  /** The memslots overlapping [gpa, gpa+size). */
  overlapping(gpa: bigint, size: bigint): Memslot[] {
    return this.memslots.filter((s) => s.gpa < gpa + size && gpa < s.gpa + s.size)
  }

  /** A new memslot may go at [gpa, gpa+size). */
  checkFree(gpa: bigint, size: bigint): void {
    this.checkRange(gpa, size)
    const clash = this.overlapping(gpa, size)[0]
    if (clash) throw new ErrnoError('EEXIST', `gpa=${hex(gpa)} size=${hex(size)}: overlaps the memslot at ${hex(clash.gpa)}`)
  }

  /** Adds a memslot and faults all of it in (a new range: nothing was cached, nothing to tell). */
  map(gpa: bigint, size: bigint, backing: Backing, offset: bigint, prot: Stage2Prot): Memslot {
    this.checkFree(gpa, size)
    const pa = this.mem.map(size, backing, offset)
    const slot: Memslot = { gpa, size, pa, backing, offset, prot }
    this.stage2.map(gpa, pa, size, prot)
    this.memslots.push(slot)
    this.memslots.sort((a, b) => (a.gpa < b.gpa ? -1 : 1))
    this.trace(`${this.name}: map gpa=${hex(gpa)} size=${hex(size)} ${protText(prot)} -> ${backing.label} +${hex(offset)} (pa ${hex(pa)})`)
    return slot
  }

  /** Removes whole memslots: zap, notify, then the memory goes (KVM deletes a memslot the same way). */
  unmap(gpa: bigint, size: bigint): number {
    this.checkRange(gpa, size)
    const slots = this.overlapping(gpa, size)
    if (!slots.length) throw new ErrnoError('ENOENT', `gpa=${hex(gpa)} size=${hex(size)}: no memslot there`)
    const partial = slots.find((s) => s.gpa < gpa || s.gpa + s.size > gpa + size)
    if (partial) throw new ErrnoError('EINVAL', `gpa=${hex(gpa)} size=${hex(size)}: cuts the memslot at ${hex(partial.gpa)} (size ${hex(partial.size)}); unmap whole memslots`)
    for (const s of slots) {
      const present = this.stage2.zap(s.gpa, s.size)
      this.trace(`${this.name}: unmap gpa=${hex(s.gpa)} size=${hex(s.size)}`)
      if (present) this.notify(s.gpa, s.size)
      this.release(s)
    }
    return slots.length
  }

  private release(s: Memslot): void {
    this.mem.unmap(s.pa)
    s.backing.release()
    this.memslots.splice(this.memslots.indexOf(s), 1)
  }

  /** Clears the leaves of a range (an MMU-notifier invalidation, a memslot move); the memslots stay, PREFAULT brings them back. */
  zap(gpa: bigint, size: bigint): boolean {
    this.checkRange(gpa, size)
    const present = this.stage2.zap(gpa, size)
    this.trace(`${this.name}: zap gpa=${hex(gpa)} size=${hex(size)}${present ? '' : ' (nothing was mapped)'}`)
    if (present) this.notify(gpa, size)
    return present
  }

  /** Changes the rights of the memslots' leaves in a range (write-protect for dirty logging); only a narrowing is notified. */
  protect(gpa: bigint, size: bigint, prot: Stage2Prot): void {
    this.checkRange(gpa, size)
    const slots = this.overlapping(gpa, size)
    if (!slots.length) throw new ErrnoError('ENOENT', `gpa=${hex(gpa)} size=${hex(size)}: no memslot there`)
    for (const s of slots) if (s.gpa >= gpa && s.gpa + s.size <= gpa + size) s.prot = prot
    const lost = this.stage2.protect(gpa, size, prot)
    this.trace(`${this.name}: protect gpa=${hex(gpa)} size=${hex(size)} ${protText(prot)}${lost ? '' : ' (no right removed)'}`)
    if (lost) this.notify(gpa, size)
  }

  /** Faults the memslots' pages of a range back in (KVM_PRE_FAULT_MEMORY); nothing valid changes, nothing to tell. */
  prefault(gpa: bigint, size: bigint): number {
    this.checkRange(gpa, size)
    let pages = 0
    for (const s of this.overlapping(gpa, size)) {
      const lo = s.gpa > gpa ? s.gpa : gpa
      const hi = s.gpa + s.size < gpa + size ? s.gpa + s.size : gpa + size
      pages += this.stage2.map(lo, s.pa + (lo - s.gpa), hi - lo, s.prot)
    }
    this.trace(`${this.name}: prefault gpa=${hex(gpa)} size=${hex(size)}: ${pages} page${pages === 1 ? '' : 's'} faulted in`)
    return pages
  }

  /** Tells every importer, synchronously, unless fault injection drops it. */
  notify(start: bigint, size: bigint): void {
    const range = size === ALL ? 'all' : `gpa=${hex(start)} size=${hex(size)}`
    if (!this.importers.size) return
    if (this.dropNotifications > 0) {
      this.dropNotifications--
      this.trace(`${this.name}: invalidate ${range} DROPPED by fault injection (drop_invalidate, ${this.dropNotifications} left)`)
      return
    }
    for (const imp of this.importers) this.trace(`${this.name}: invalidate ${range} -> ${imp.name}: ${imp.invalidate(start, size)}`)
  }

  /** Lets everything go (the last reference ended). */
  destroy(): void {
    for (const s of [...this.memslots]) this.release(s)
    this.stage2.free()
  }

  describe(): string {
    const lines = [
      `vm: ${this.id}`,
      `pgtable: ${this.stage2.format === 'arm64' ? `arm64 (VMSAv8-64 stage 2, 4K granule, ${this.stage2.ipaBits}-bit IPA)` : 'ept (4-level, 48-bit GPA; a VT-d second-stage table)'}`,
      `root: ${hex(this.stage2.root)}`,
      `tdp_fd: ${this.tdp ?? '-'}`,
      `importers: ${[...this.importers].map((i) => i.name).join(', ') || '-'}`,
      `drop_invalidate: ${this.dropNotifications}`,
      `state: ${this.closed ? 'closed (kept by its importers)' : 'open'}`,
      `memslots: ${this.memslots.length}`,
      ...this.memslots.map((s) => `  gpa=${hex(s.gpa)} size=${hex(s.size)} ${protText(s.prot)} pa=${hex(s.pa)} ${s.backing.label} +${hex(s.offset)}`),
    ]
    return lines.map((l) => `${l}\n`).join('')
  }

  /** Every present leaf, merged into runs of contiguous guest and host pages with the same rights. */
  dumpStage2(): string {
    const out: string[] = [`${this.name} stage 2 (${this.stage2.format}) root ${hex(this.stage2.root)}`]
    for (const s of this.memslots) {
      let run: { gpa: bigint; pa: bigint; n: bigint; prot: string } | undefined
      const flush = (): void => {
        if (run) out.push(`gpa ${hex(run.gpa)}-${hex(run.gpa + run.n * PAGE - 1n)} -> pa ${hex(run.pa)} ${run.prot}`)
        run = undefined
      }
      for (let a = s.gpa; a < s.gpa + s.size; a += PAGE) {
        const l = this.stage2.leaf(a)
        if (!l) {
          flush()
          continue
        }
        const p = protText(l.prot)
        if (run && run.prot === p && run.pa + run.n * PAGE === l.pa) run.n++
        else {
          flush()
          run = { gpa: a, pa: l.pa, n: 1n, prot: p }
        }
      }
      flush()
    }
    return out.map((l) => `${l}\n`).join('')
  }

  debugFiles(): Record<string, DebugFile> {
    return {
      info: { show: () => this.describe() },
      stage2: { show: () => this.dumpStage2() },
      drop_invalidate: {
        show: () => `${this.dropNotifications}\n`,
        store: (text) => {
          const t = text.trim()
          if (!/^[0-9]+$/.test(t) || Number(t) > 1_000_000) throw new ErrnoError('EINVAL', `drop_invalidate: "${text}" is not a count (0 to 1000000 notifications to drop)`)
          this.dropNotifications = Number(t)
          this.trace(`${this.name}: drop_invalidate armed: the next ${t} notification${t === '1' ? '' : 's'} will be dropped`)
        },
      },
    }
  }
}
