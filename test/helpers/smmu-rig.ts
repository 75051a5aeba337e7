/**
 * An SMMUv3 on a physical address space, with the structures a test writes
 * itself: a stream table, CDs and page tables in table RAM, data in a window
 * onto a temporary file. Everything is real memory the walk reads.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { FileBacking } from '../../src/memory/backing'
import { PhysicalMemory } from '../../src/memory/physical'
import { wordBytes, s1Cd, steWords, SteOptions, S1CdOptions } from '../../src/hw/smmuv3/build'
import { Smmuv3Caches, CacheSizes } from '../../src/hw/smmuv3/caches'
import { DmaRequest, DmaResult, Smmuv3Dma } from '../../src/hw/smmuv3/dma'
import { Geometry, GranuleShift, PageTable, Stage } from '../../src/hw/smmuv3/pgtable'
import { Features, StreamTable } from '../../src/hw/smmuv3/walk'

export const DATA_PA = 0x80_0000_0000n
export const DATA_SIZE = 0x40_0000n

export class SmmuRig {
  readonly mem = new PhysicalMemory()
  readonly strtab: StreamTable
  readonly caches: Smmuv3Caches
  readonly dma: Smmuv3Dma
  readonly file: string
  readonly data: FileBacking
  private readonly dir: string

  constructor(opts: { features?: Partial<Features>; strtab?: Partial<StreamTable>; cacheSizes?: CacheSizes } = {}) {
    const log2size = opts.strtab?.log2size ?? 8
    const split = opts.strtab?.split ?? 0
    const base = split ? this.mem.alloc(8 << (log2size - split)) : this.mem.alloc(64 << log2size)
    this.strtab = { base, log2size, split }
    this.caches = new Smmuv3Caches(opts.cacheSizes)
    const features: Features = { s1: true, s2: true, httu: 2, oasBits: 48, ssidBits: 16, ...opts.features }
    this.dma = new Smmuv3Dma(this.mem, features, this.caches, () => this.strtab)
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'smmu-rig-'))
    this.file = path.join(this.dir, 'ram')
    fs.writeFileSync(this.file, Buffer.alloc(Number(DATA_SIZE)))
    this.data = FileBacking.open(this.file)
    this.mem.mapAt(DATA_PA, DATA_SIZE, this.data)
  }

  close(): void {
    this.data.release()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }

  /** Writes 64-bit words at a physical address. */
  put(pa: bigint, words: readonly bigint[]): void {
    const r = this.mem.write(pa, wordBytes(words))
    if (r) throw new Error(r.abort)
  }

  /** Installs an STE in the stream table (allocating an L2 table for a 2-level one). */
  ste(sid: number, o: SteOptions): bigint {
    let addr: bigint
    if (!this.strtab.split) addr = this.strtab.base + BigInt(sid) * 64n
    else {
      const l1 = this.strtab.base + BigInt(sid >> this.strtab.split) * 8n
      let desc = this.mem.read64(l1) as bigint
      if (!desc) {
        const l2 = this.mem.alloc(64 << this.strtab.split)
        desc = l2 | BigInt(this.strtab.split + 1)
        this.put(l1, [desc])
      }
      addr = (desc & ~0x3fn) + BigInt(sid & ((1 << this.strtab.split) - 1)) * 64n
    }
    this.put(addr, steWords(o))
    return addr
  }

  /** A linear CD table of 2^cdMax CDs in table RAM. */
  cdTable(cdMax: number): bigint {
    return this.mem.alloc(64 << cdMax, 64n << BigInt(cdMax))
  }

  cd(addr: bigint, o: S1CdOptions): void {
    this.put(addr, s1Cd(o))
  }

  /** A page table in table RAM. */
  table(stage: Stage, granule: GranuleShift = 12, ias = 48, opts: { dbm?: boolean; startLevel?: number } = {}): PageTable {
    const geometry = opts.startLevel !== undefined ? new Geometry(granule, ias, opts.startLevel) : stage === 2 ? Geometry.stage2(granule, ias) : new Geometry(granule, ias)
    return new PageTable(this.mem, { stage, geometry, dirtyBitModifier: opts.dbm })
  }

  /** Bytes of the data file at a physical address in the data window. */
  bytes(pa: bigint, len: number): Buffer {
    const b = Buffer.alloc(len)
    const fd = fs.openSync(this.file, 'r')
    fs.readSync(fd, b, 0, len, Number(pa - DATA_PA))
    fs.closeSync(fd)
    return b
  }

  fill(pa: bigint, data: Buffer): void {
    const fd = fs.openSync(this.file, 'r+')
    fs.writeSync(fd, data, 0, data.length, Number(pa - DATA_PA))
    fs.closeSync(fd)
  }

  read(sid: number, addr: bigint, len = 8, extra: Partial<DmaRequest> = {}): DmaResult {
    return this.dma.access({ sid, addr, len, write: false, ...extra })
  }

  write(sid: number, addr: bigint, data: Buffer, extra: Partial<DmaRequest> = {}): DmaResult {
    return this.dma.access({ sid, addr, len: data.length, write: true, data, ...extra })
  }
}
