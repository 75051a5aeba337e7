import { Geometry, PageTable } from '../hw/smmuv3/pgtable'
import { SS, VtdPageTable } from '../hw/vtd/pgtable'
import { Abort } from '../memory/backing'
import { MemoryPort, PhysicalMemory } from '../memory/physical'

/**
 * KVM's stage-2 (TDP) table in the host's physical memory, in the format the
 * CPU's second stage uses: on arm64 the VMSAv8-64 stage-2 format (the one
 * SMMUv3 walks with STE.S2TTB), on x86 EPT, whose entries a VT-d unit can
 * walk as a second-stage table (the RFC moved KVM's own present bit from 11,
 * VT-d's SNP, to 59 for that). Leaves are 4K pages.
 */
export type Stage2Format = 'arm64' | 'ept'

export interface Stage2Prot {
  readonly read: boolean
  readonly write: boolean
}

/** One leaf as KVM wrote it. */
export interface Stage2Leaf {
  readonly gpa: bigint
  readonly pa: bigint
  readonly prot: Stage2Prot
  readonly desc: bigint
}

/** Host memory as KVM's table writer sees it: every page it takes is remembered, so a destroyed VM gives them all back. */
class TableRam implements MemoryPort {
  private readonly taken: [bigint, bigint][] = []

  constructor(private readonly mem: PhysicalMemory) {}

  alloc(bytes: bigint, align: bigint): bigint {
    const pa = this.mem.alloc(bytes, align)
    this.taken.push([pa, bytes])
    return pa
  }

  /** Frees every table page (the VM is gone; nothing walks them any more). */
  freeAll(): void {
    for (const [pa, bytes] of this.taken.splice(0)) this.mem.free(pa, bytes)
  }

  read(addr: bigint, len: number): Buffer | Abort {
    return this.mem.read(addr, len)
  }

  write(addr: bigint, data: Buffer): Abort | undefined {
    return this.mem.write(addr, data)
  }

  read64(addr: bigint): bigint | Abort {
    return this.mem.read64(addr)
  }

  write64(addr: bigint, value: bigint): Abort | undefined {
    return this.mem.write64(addr, value)
  }
}

/** The table operations KVM needs; each reports whether a present leaf lost rights (what hardware may have cached). */
export interface Stage2 {
  readonly format: Stage2Format
  readonly root: bigint
  /** Input (guest-physical) address bits. */
  readonly ipaBits: number
  map(gpa: bigint, pa: bigint, size: bigint, prot: Stage2Prot): void
  /** Clears every leaf of the range; true if any was present. */
  zap(gpa: bigint, size: bigint): boolean
  /** Rewrites the rights of present leaves; true if any lost a right. */
  protect(gpa: bigint, size: bigint, prot: Stage2Prot): boolean
  leaf(gpa: bigint): Stage2Leaf | undefined
  /** Gives the table's pages back to host memory. */
  free(): void
}

const PAGE = 0x1000n

/** KVM's arm64 stage 2: a concatenated start level where the architecture wants it (40-bit IPA: two L1 tables). */
export class ArmStage2 implements Stage2 {
  readonly format = 'arm64'
  readonly table: PageTable
  private readonly ram: TableRam

  constructor(mem: PhysicalMemory, readonly ipaBits: number) {
    this.ram = new TableRam(mem)
    this.table = new PageTable(this.ram, { stage: 2, geometry: Geometry.stage2(12, ipaBits) })
  }

  free(): void {
    this.ram.freeAll()
  }

  get root(): bigint {
    return this.table.root
  }

  map(gpa: bigint, pa: bigint, size: bigint, prot: Stage2Prot): void {
    for (let off = 0n; off < size; off += PAGE) this.table.writeDesc(this.table.slot(gpa + off, 3, true), (pa + off) | this.table.leafBits(prot) | 3n)
  }

  zap(gpa: bigint, size: bigint): boolean {
    return this.table.unmap(gpa, size).levels.size > 0
  }

  protect(gpa: bigint, size: bigint, prot: Stage2Prot): boolean {
    let lost = false
    for (let off = 0n; off < size; off += PAGE) {
      const l = this.table.find(gpa + off)
      if (!l) continue
      const old = this.rights(l.desc)
      lost ||= (old.read && !prot.read) || (old.write && !prot.write)
      this.table.writeDesc(l.slot, (l.desc & ~(3n << 6n)) | (prot.read ? 1n << 6n : 0n) | (prot.write ? 1n << 7n : 0n))
    }
    return lost
  }

  private rights(desc: bigint): Stage2Prot {
    return { read: (desc & (1n << 6n)) !== 0n, write: (desc & (1n << 7n)) !== 0n }
  }

  leaf(gpa: bigint): Stage2Leaf | undefined {
    const l = this.table.find(gpa)
    if (!l) return undefined
    return { gpa: gpa & ~(PAGE - 1n), pa: this.table.opts.geometry.address(l.desc, l.level, true), prot: this.rights(l.desc), desc: l.desc }
  }
}

/** EPT leaf bits KVM sets beyond R/W: X, memory type WB (EMT 6), accessed, and the RFC's present bit 59. */
const EPT_X = 1n << 2n
const EPT_EMT_WB = 6n << 3n
const EPT_A = 1n << 8n
export const SPTE_MMU_PRESENT = 1n << 59n

/** KVM's EPT: 4 levels, 48-bit GPA; VT-d reads it as a second-stage table with AW = 2. */
class EptTable extends VtdPageTable {
  override leafEntry(pa: bigint, prot: Stage2Prot): bigint {
    return pa | (prot.read ? SS.R : 0n) | (prot.write ? SS.W : 0n) | EPT_X | EPT_EMT_WB | EPT_A | SPTE_MMU_PRESENT
  }
}

export class EptStage2 implements Stage2 {
  readonly format = 'ept'
  readonly ipaBits = 48
  readonly table: VtdPageTable
  private readonly ram: TableRam

  constructor(mem: PhysicalMemory) {
    this.ram = new TableRam(mem)
    this.table = new EptTable(this.ram, { format: 'second', levels: 4 })
  }

  free(): void {
    this.ram.freeAll()
  }

  get root(): bigint {
    return this.table.root
  }

  map(gpa: bigint, pa: bigint, size: bigint, prot: Stage2Prot): void {
    this.table.map(gpa, pa, size, prot)
  }

  zap(gpa: bigint, size: bigint): boolean {
    return this.table.unmap(gpa, size).levels.size > 0
  }

  protect(gpa: bigint, size: bigint, prot: Stage2Prot): boolean {
    let lost = false
    for (let off = 0n; off < size; off += PAGE) {
      const l = this.table.find(gpa + off)
      if (!l) continue
      lost ||= (l.desc & SS.R && !prot.read) || (l.desc & SS.W && !prot.write) ? true : false
      // a leaf with neither right is not present to VT-d; KVM keeps its own bit 59
      this.table.writeDesc(l.slot, (l.desc & ~(SS.R | SS.W)) | (prot.read ? SS.R : 0n) | (prot.write ? SS.W : 0n))
    }
    return lost
  }

  leaf(gpa: bigint): Stage2Leaf | undefined {
    const l = this.table.find(gpa)
    if (!l) return undefined
    return { gpa: gpa & ~(PAGE - 1n), pa: l.desc & ((1n << 52n) - 1n) & ~0xfffn, prot: { read: (l.desc & SS.R) !== 0n, write: (l.desc & SS.W) !== 0n }, desc: l.desc }
  }
}
