import { D, Geometry, PageTable } from '../hw/smmuv3/pgtable'
import { ADDR_MASK, SS, VtdPageTable, levelIndex } from '../hw/vtd/pgtable'
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
  /** Writes the leaves of [gpa, gpa+size) -> pa that are not present; returns how many it wrote. */
  map(gpa: bigint, pa: bigint, size: bigint, prot: Stage2Prot): number
  /** Clears every leaf of the range; true if any was present. */
  zap(gpa: bigint, size: bigint): boolean
  /** Rewrites the rights of present leaves; true if any lost a right. */
  protect(gpa: bigint, size: bigint, prot: Stage2Prot): boolean
  leaf(gpa: bigint): Stage2Leaf | undefined
  /** Gives the table's pages back to host memory. */
  free(): void
}

const PAGE = 0x1000n
/** A last-level table maps 2 MiB (512 4K leaves) in both formats. */
const CHUNK = 0x20_0000n

/**
 * Calls `fn` with the slot of every 4K leaf of [gpa, gpa+size), finding each
 * last-level table once (`l1` gives it for an address, or undefined when
 * there is none and none is to be made): a range costs one table walk per
 * 2 MiB and one word per page.
 */
function eachLeafSlot(gpa: bigint, size: bigint, l1: (va: bigint) => bigint | undefined, fn: (slot: bigint, va: bigint) => void): void {
  const end = gpa + size
  for (let va = gpa; va < end; ) {
    const next = (va & ~(CHUNK - 1n)) + CHUNK
    const stop = next < end ? next : end
    const table = l1(va)
    if (table !== undefined) for (let a = va; a < stop; a += PAGE) fn(table + ((a >> 12n) & 511n) * 8n, a)
    va = stop
  }
}

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

  /** The level-3 table covering `va`, made on the way when `create` (KVM writes 4K leaves only, so no block is ever in the way). */
  private level3(va: bigint, create: boolean): bigint | undefined {
    const g = this.table.opts.geometry
    let table = this.table.root
    for (let l = g.startLevel; l < 3; l++) {
      const d = this.table.readDesc(table + g.index(va, l) * 8n)
      if (!(d & D.VALID)) return create ? this.table.slot(va, 3, true) - g.index(va, 3) * 8n : undefined
      table = g.address(d, l, false)
    }
    return table
  }

  map(gpa: bigint, pa: bigint, size: bigint, prot: Stage2Prot): number {
    const bits = this.table.leafBits({ ...prot, noexec: true }) | D.TABLE | D.VALID
    let n = 0
    eachLeafSlot(gpa, size, (va) => this.level3(va, true), (slot, va) => {
      if (this.table.readDesc(slot) & D.VALID) return
      this.table.writeDesc(slot, (pa + va - gpa) | bits)
      n++
    })
    return n
  }

  zap(gpa: bigint, size: bigint): boolean {
    let present = false
    eachLeafSlot(gpa, size, (va) => this.level3(va, false), (slot) => {
      if (!(this.table.readDesc(slot) & D.VALID)) return
      present = true
      this.table.writeDesc(slot, 0n)
    })
    return present
  }

  protect(gpa: bigint, size: bigint, prot: Stage2Prot): boolean {
    let lost = false
    eachLeafSlot(gpa, size, (va) => this.level3(va, false), (slot) => {
      const d = this.table.readDesc(slot)
      if (!(d & D.VALID)) return
      const old = this.rights(d)
      lost ||= (old.read && !prot.read) || (old.write && !prot.write)
      this.table.writeDesc(slot, (d & ~(D.AP1 | D.AP2)) | (prot.read ? D.AP1 : 0n) | (prot.write ? D.AP2 : 0n))
    })
    return lost
  }

  private rights(desc: bigint): Stage2Prot {
    return { read: (desc & D.AP1) !== 0n, write: (desc & D.AP2) !== 0n }
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

  /** The level-1 (4K leaf) table covering `va`, made on the way when `create` (entries R|W|X, as KVM's non-leaf EPT entries). */
  private level1(va: bigint, create: boolean): bigint | undefined {
    let table = this.table.root
    for (let level = 4; level > 1; level--) {
      const slot = table + levelIndex(va, level) * 8n
      let d = this.read(slot)
      if (!(d & (SS.R | SS.W))) {
        if (!create) return undefined
        d = this.ram.alloc(PAGE, PAGE) | SS.R | SS.W | EPT_X
        this.table.writeDesc(slot, d)
      }
      table = d & ADDR_MASK
    }
    return table
  }

  private read(slot: bigint): bigint {
    const v = this.ram.read64(slot)
    if (typeof v !== 'bigint') throw new Error(`EPT at 0x${slot.toString(16)}: ${v.abort}`)
    return v
  }

  map(gpa: bigint, pa: bigint, size: bigint, prot: Stage2Prot): number {
    let n = 0
    eachLeafSlot(gpa, size, (va) => this.level1(va, true), (slot, va) => {
      if (this.read(slot) & SPTE_MMU_PRESENT) return
      this.table.writeDesc(slot, this.table.leafEntry(pa + va - gpa, prot))
      n++
    })
    return n
  }

  zap(gpa: bigint, size: bigint): boolean {
    let present = false
    eachLeafSlot(gpa, size, (va) => this.level1(va, false), (slot) => {
      if (!(this.read(slot) & SPTE_MMU_PRESENT)) return
      present = true
      this.table.writeDesc(slot, 0n)
    })
    return present
  }

  protect(gpa: bigint, size: bigint, prot: Stage2Prot): boolean {
    let lost = false
    eachLeafSlot(gpa, size, (va) => this.level1(va, false), (slot) => {
      const d = this.read(slot)
      if (!(d & SPTE_MMU_PRESENT)) return
      lost ||= (d & SS.R && !prot.read) || (d & SS.W && !prot.write) ? true : false
      this.table.writeDesc(slot, (d & ~(SS.R | SS.W)) | (prot.read ? SS.R : 0n) | (prot.write ? SS.W : 0n))
    })
    return lost
  }

  leaf(gpa: bigint): Stage2Leaf | undefined {
    const l = this.table.find(gpa)
    if (!l) return undefined
    return { gpa: gpa & ~(PAGE - 1n), pa: l.desc & ((1n << 52n) - 1n) & ~0xfffn, prot: { read: (l.desc & SS.R) !== 0n, write: (l.desc & SS.W) !== 0n }, desc: l.desc }
  }
}
