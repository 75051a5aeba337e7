import { Abort, isAbort } from '../../memory/backing'
import { MemoryPort } from '../../memory/physical'
import { hi32, lo32 } from '../bits'

/**
 * The VMSAv8-64 translation table format both SMMUv3 stages use: descriptor
 * bits, the level geometry of a granule, and a writer that builds tables the
 * way Linux's io-pgtable-arm does (largest aligned block first).
 */
export const D = {
  VALID: 1n << 0n,
  /** At levels 0-2: 1 = table, 0 = block. At level 3: 1 = page (0 is invalid). */
  TABLE: 1n << 1n,
  ATTR_SHIFT: 2n,
  /** Stage 1: AP[1], unprivileged access allowed. Stage 2: S2AP[0], read. */
  AP1: 1n << 6n,
  /** Stage 1: AP[2], read-only. Stage 2: S2AP[1], write. */
  AP2: 1n << 7n,
  SH_INNER: 3n << 8n,
  AF: 1n << 10n,
  NG: 1n << 11n,
  DBM: 1n << 51n,
  PXN: 1n << 53n,
  UXN: 1n << 54n,
  PXN_TABLE: 1n << 59n,
  XN_TABLE: 1n << 60n,
  /** APTable[0]: no unprivileged access below. */
  AP_TABLE_NO_EL0: 1n << 61n,
  /** APTable[1]: read-only below. */
  AP_TABLE_RO: 1n << 62n,
} as const
/** Stage-2 XN[1:0]. */
export const S2_XN = 3n << 53n
/** Linux's stage-2 MemAttr for normal write-back memory. */
export const S2_MEMATTR_WB = 0xfn << 2n
/** The same with FEAT_S2FWB in use (IO_PGTABLE_QUIRK_ARM_S2FWB): MemAttr 0b0110 forces write-back. */
export const S2_MEMATTR_FWB_WB = 0x6n << 2n
/** Linux's stage-1 AttrIndx for normal write-back memory (MAIR index 1). */
export const S1_ATTR_WB = 1n << 2n

export type Stage = 1 | 2
export type GranuleShift = 12 | 14 | 16

/** Where a table walk starts and how many bits each level resolves. */
export class Geometry {
  readonly bpl: number
  readonly levels: number
  readonly startLevel: number
  /** Per level 0..3, as bigints, computed once: walks use them on every descriptor. */
  private readonly shiftN: bigint[]
  private readonly sizeN: bigint[]
  private readonly indexMask: bigint[]
  private readonly leafMask: bigint[]
  private readonly tableMask: bigint
  /** The same per level as numbers (2^shift, index mask, address masks split in 32-bit halves), for walks in plain numbers. */
  readonly sizeNum: readonly number[]
  readonly indexMaskNum: readonly number[]
  readonly leafLo: readonly number[]
  readonly leafHi: readonly number[]
  readonly tableLo: number
  readonly tableHi: number
  /** 2^ias: input addresses are below it. */
  readonly inputLimit: bigint
  private static readonly known = new Map<number, Geometry>()

  /** The geometry for these parameters, made once (walks decode one from every CD and STE). */
  static of(granule: GranuleShift, ias: number, startLevel?: number): Geometry {
    const key = granule * 10_000 + ias * 10 + (startLevel ?? 9)
    let g = Geometry.known.get(key)
    if (!g) Geometry.known.set(key, (g = new Geometry(granule, ias, startLevel)))
    return g
  }

  constructor(readonly granule: GranuleShift, readonly ias: number, startLevel?: number) {
    this.bpl = granule - 3
    this.startLevel = startLevel ?? 4 - Math.ceil((ias - granule) / this.bpl)
    this.levels = 4 - this.startLevel
    const levels = [0, 1, 2, 3]
    this.shiftN = levels.map((l) => BigInt(this.shift(l)))
    this.sizeN = levels.map((l) => 1n << BigInt(this.shift(l)))
    this.indexMask = levels.map((l) => (l === this.startLevel ? 1n << BigInt(Math.max(this.ias - this.shift(l), 0)) : 1n << BigInt(this.bpl)) - 1n)
    const oa = (1n << 48n) - 1n
    this.leafMask = levels.map((l) => oa & ~((1n << BigInt(this.shift(l))) - 1n))
    this.tableMask = oa & ~((1n << BigInt(granule)) - 1n)
    this.sizeNum = levels.map((l) => 2 ** this.shift(l))
    this.indexMaskNum = this.indexMask.map(Number)
    this.leafLo = this.leafMask.map(lo32)
    this.leafHi = this.leafMask.map(hi32)
    this.tableLo = lo32(this.tableMask)
    this.tableHi = hi32(this.tableMask)
    this.inputLimit = 1n << BigInt(ias)
  }

  /** index() for an input address below 2^53. */
  indexNum(addr: number, level: number): number {
    // an exact power-of-two division, then the low bits (an index is below 2^31)
    return Math.floor(addr / this.sizeNum[level]) & this.indexMaskNum[level]
  }

  /** address() of a descriptor given as 32-bit halves; a number (at most 52 bits). */
  addressNum(hi: number, lo: number, level: number, leaf: boolean): number {
    const a = (hi & (leaf ? this.leafHi[level] : this.tableHi)) * 0x1_0000_0000 + ((lo & (leaf ? this.leafLo[level] : this.tableLo)) >>> 0)
    return this.granule === 16 ? a + ((lo >>> 12) & 0xf) * 2 ** 48 : a
  }

  /**
   * A stage-2 geometry as Linux picks it: where the natural start level
   * would need a tiny top table, concatenate up to 16 tables one level down
   * (4K with a 40/42-bit IPA, 16K with 48 or 40 bits).
   */
  static stage2(granule: GranuleShift, ias: number): Geometry {
    const natural = Geometry.of(granule, ias)
    const start = natural.startLevel
    const concat = (granule === 12 && start === 0 && (ias === 40 || ias === 42)) || (granule === 14 && ((start === 0 && ias === 48) || (start === 1 && ias === 40)))
    return concat ? Geometry.of(granule, ias, start + 1) : natural
  }

  /** The lowest input bit level `l` resolves (an entry there maps 2^shift bytes). */
  shift(level: number): number {
    return (4 - level) * this.bpl + 3
  }

  /** Bytes one entry at `level` maps. */
  size(level: number): bigint {
    return this.sizeN[level]
  }

  /** Entries in a table at `level` (the start level may be smaller or concatenated). */
  entries(level: number): bigint {
    return this.indexMask[level] + 1n
  }

  index(addr: bigint, level: number): bigint {
    return (addr >> this.shiftN[level]) & this.indexMask[level]
  }

  /** Whether a block (not a page) may end a walk at `level` for this granule (48-bit output). */
  blockAllowed(level: number): boolean {
    if (this.granule === 12) return level === 1 || level === 2
    return level === 2
  }

  /** The output/next-table address field of a descriptor: bits [47:granule] (and [51:48] for 64K). */
  address(desc: bigint, level: number, leaf: boolean): bigint {
    let a = desc & (leaf ? this.leafMask[level] : this.tableMask)
    if (this.granule === 16) a |= ((desc >> 12n) & 0xfn) << 48n
    return a
  }

  /** The table size in bytes at `level`. */
  tableBytes(level: number): bigint {
    return this.entries(level) * 8n
  }
}

/** The permissions a mapping is made with (IOMMU_READ/WRITE/NOEXEC/PRIV). */
export interface Prot {
  readonly read: boolean
  readonly write: boolean
  /** IOMMU_NOEXEC: execute never (XN). iommufd never asks for it, so its mappings are executable. */
  readonly noexec?: boolean
  /** Only privileged accesses (stage 1: AP[1] = 0). */
  readonly priv?: boolean
}

/** What an unmap removed: the levels of the leaves it cleared, and the spans of the tables it freed. */
export interface Unmapped {
  readonly levels: Set<number>
  readonly walks: { iova: bigint; size: bigint }[]
}

/** Memory a table writer may allocate table pages from (and give them back to). */
export interface TableMemory extends MemoryPort {
  alloc(bytes: bigint, align: bigint): bigint
  free?(addr: bigint, bytes: bigint): void
}

export interface TableOptions {
  readonly stage: Stage
  readonly geometry: Geometry
  /** Stage 1 with the HD quirk: writable leaves get DBM (born writable-dirty). */
  readonly dirtyBitModifier?: boolean
  /** Stage 1: non-global leaves (nG), as Linux writes them. Default true. */
  readonly nonGlobal?: boolean
  /** Stage 2 with the S2FWB quirk (a nest parent on an SMMU with IDR3.FWB): leaves use the FWB MemAttr and STE.S2FWB is set. */
  readonly s2fwb?: boolean
}

/**
 * A page table in `mem`, written as io-pgtable-arm writes one. Addresses in
 * the tables are those of `mem` (physical for the host, IPAs for a guest's
 * tables). map()/unmap() throw on misuse: they are the driver's or a test's.
 */
export class PageTable {
  readonly root: bigint

  constructor(readonly mem: TableMemory, readonly opts: TableOptions, root?: bigint) {
    const g = opts.geometry
    const bytes = g.tableBytes(g.startLevel)
    const align = bytes > 1n << BigInt(g.granule) ? bytes : 1n << BigInt(g.granule)
    this.root = root ?? mem.alloc(bytes, align)
  }

  /** The leaf bits for `prot` at this stage. */
  leafBits(prot: Prot): bigint {
    const noexec = prot.noexec ?? false
    if (this.opts.stage === 2) {
      let d = D.AF | D.SH_INNER | (this.opts.s2fwb ? S2_MEMATTR_FWB_WB : S2_MEMATTR_WB)
      if (prot.read) d |= D.AP1
      if (prot.write) d |= D.AP2
      if (noexec) d |= S2_XN
      return d
    }
    let d = D.AF | D.SH_INNER | S1_ATTR_WB
    if (this.opts.nonGlobal ?? true) d |= D.NG
    if (!prot.priv) d |= D.AP1
    if (!prot.write) d |= D.AP2
    else if (this.opts.dirtyBitModifier) d |= D.DBM
    if (noexec) d |= D.UXN | D.PXN
    return d
  }

  /** Maps [iova, iova+size) to pa with the largest aligned blocks. */
  map(iova: bigint, pa: bigint, size: bigint, prot: Prot): void {
    const g = this.opts.geometry
    const page = 1n << BigInt(g.granule)
    if ((iova | pa | size) & (page - 1n)) throw new Error(`map 0x${iova.toString(16)}: not aligned to the ${page} byte granule`)
    const bits = this.leafBits(prot)
    let done = 0n
    while (done < size) {
      const va = iova + done
      const out = pa + done
      let level = 3
      for (let l = g.startLevel; l < 3; l++) {
        const s = g.size(l)
        if (g.blockAllowed(l) && ((va | out) & (s - 1n)) === 0n && size - done >= s) {
          level = l
          break
        }
      }
      const slot = this.slot(va, level, true)
      this.writeDesc(slot, out | bits | D.VALID | (level === 3 ? D.TABLE : 0n))
      done += g.size(level)
    }
  }

  /**
   * Removes [iova, iova+size) as io-pgtable-arm does: an entry the range
   * covers whole is cleared (a table under it freed with everything below,
   * its span recorded in `walks`: the driver flushes those with leaf = 0); a
   * table covered in part is descended into and kept; a block covered in
   * part is split first.
   */
  unmap(iova: bigint, size: bigint): Unmapped {
    const out: Unmapped = { levels: new Set(), walks: [] }
    const g = this.opts.geometry
    this.clear(this.root, g.startLevel, 0n, iova, iova + size, out)
    return out
  }

  private clear(table: bigint, level: number, base: bigint, lo: bigint, hi: bigint, out: Unmapped): void {
    const g = this.opts.geometry
    const s = g.size(level)
    for (let i = lo > base ? (lo - base) / s : 0n; i < g.entries(level); i++) {
      const start = base + i * s
      if (start >= hi) break
      const slot = table + i * 8n
      let desc = this.readDesc(slot)
      if (!(desc & D.VALID)) continue
      const isTable = level < 3 && (desc & D.TABLE) !== 0n
      if (lo <= start && start + s <= hi) {
        this.writeDesc(slot, 0n)
        if (!isTable) out.levels.add(level)
        else {
          this.freeTable(g.address(desc, level, false), level + 1)
          out.walks.push({ iova: start, size: s })
        }
        continue
      }
      if (!isTable) desc = this.split(slot, level, desc)
      this.clear(g.address(desc, level, false), level + 1, start, lo, hi, out)
    }
  }

  /** Gives a table and every table below it back to memory. */
  private freeTable(table: bigint, level: number): void {
    const g = this.opts.geometry
    if (level < 3) {
      for (let i = 0n; i < g.entries(level); i++) {
        const d = this.readDesc(table + i * 8n)
        if (d & D.VALID && d & D.TABLE) this.freeTable(g.address(d, level, false), level + 1)
      }
    }
    this.mem.free?.(table, g.tableBytes(level))
  }

  /** Frees every table page, the root too (the domain is gone). */
  destroy(): void {
    this.freeTable(this.root, this.opts.geometry.startLevel)
  }

  /** The descriptor address and value of the leaf mapping `va`, if any. */
  find(va: bigint): { slot: bigint; level: number; desc: bigint } | undefined {
    const g = this.opts.geometry
    let table = this.root
    for (let level = g.startLevel; level <= 3; level++) {
      const slot = table + g.index(va, level) * 8n
      const desc = this.readDesc(slot)
      if (!(desc & D.VALID)) return undefined
      if (level === 3 || !(desc & D.TABLE)) return { slot, level, desc }
      table = g.address(desc, level, false)
    }
    return undefined
  }

  /** The descriptor slot for `va` at `level`, creating tables on the way when asked. */
  slot(va: bigint, level: number, create: boolean): bigint {
    const g = this.opts.geometry
    let table = this.root
    for (let l = g.startLevel; l < level; l++) {
      const slot = table + g.index(va, l) * 8n
      const desc = this.readDesc(slot)
      if (desc & D.VALID && desc & D.TABLE) {
        table = g.address(desc, l, false)
        continue
      }
      if (desc & D.VALID) throw new Error(`0x${va.toString(16)}: a block at level ${l} is in the way`)
      if (!create) throw new Error(`0x${va.toString(16)}: no table at level ${l}`)
      const bytes = 1n << BigInt(g.granule)
      const next = this.mem.alloc(bytes, bytes)
      this.writeDesc(slot, next | D.TABLE | D.VALID)
      table = next
    }
    return table + g.index(va, level) * 8n
  }

  /** Replaces a block by a table of the next level with the same mapping; returns the table descriptor. */
  private split(slot: bigint, level: number, desc: bigint): bigint {
    const g = this.opts.geometry
    const bytes = 1n << BigInt(g.granule)
    const table = this.mem.alloc(bytes, bytes)
    const out = g.address(desc, level, true)
    const attrs = desc & ~(((1n << 48n) - 1n) & ~0xfffn) & ~D.TABLE
    const child = level + 1
    for (let i = 0n; i < g.entries(child); i++) {
      this.writeDesc(table + i * 8n, (out + i * g.size(child)) | attrs | (child === 3 ? D.TABLE : 0n))
    }
    this.writeDesc(slot, table | D.TABLE | D.VALID)
    return table | D.TABLE | D.VALID
  }

  readDesc(addr: bigint): bigint {
    const v = this.mem.read64(addr)
    if (isAbort(v)) throw new Error(`table read at 0x${addr.toString(16)}: ${(v as Abort).abort}`)
    return v
  }

  writeDesc(addr: bigint, v: bigint): void {
    const r = this.mem.write64(addr, v)
    if (r) throw new Error(`table write at 0x${addr.toString(16)}: ${r.abort}`)
  }
}
