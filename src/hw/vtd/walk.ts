import { isAbort } from '../../memory/backing'
import { Halves, MemoryPort, loadHalves } from '../../memory/physical'
import { Decodes } from '../decodes'
import { hex, hi32, join64, lo32, pageOf, pageOffset } from '../bits'
import { PERM, PERM_ALL, permFor } from '../smmuv3/walk'
import { VtdFault, VtdFaultError } from './faults'
import { ADDR_MASK, FS, SS, levelIndex, levelShift } from './pgtable'

/**
 * The scalable-mode walk of a VT-d unit: root entry -> scalable-mode context
 * entry -> PASID directory -> PASID table entry -> first-stage and/or
 * second-stage tables, as the PASID entry's PGTT selects. Every first-stage
 * table access is translated by the second stage under nesting. The walk
 * sets A/D bits (first stage always, second stage with SSADE) unless it is
 * a dry run (the sanitizer's second look).
 */

/** PASID-entry PGTT values. */
export const PGTT = { FIRST: 1, SECOND: 2, NESTED: 3, PT: 4 } as const
export const PGTT_NAMES: Readonly<Record<number, string>> = { 1: 'first-stage', 2: 'second-stage', 3: 'nested', 4: 'pass-through' }

/** A descriptor the walk read. Structures (root/context/PASID) give the word index as `level`. */
export interface VtdStep {
  readonly what: 'root' | 'context' | 'pasiddir' | 'pasid' | 'fs' | 'ss'
  readonly level: number
  readonly table: bigint
  readonly addr: bigint
  desc: bigint
  updated?: bigint
}

export function describeVtdStep(s: VtdStep): string {
  const where = s.what === 'fs' || s.what === 'ss' ? ` level=${s.level}` : s.what === 'context' || s.what === 'pasid' ? ` word=${s.level}` : ''
  const upd = s.updated !== undefined ? ` updated=${hex(s.updated)}` : ''
  return `${s.what}${where} table=${hex(s.table)} addr=${hex(s.addr)} desc=${hex(s.desc, 16)}${upd}`
}

/** One request: requester ID, optional PASID, the access. */
export interface VtdTxn {
  readonly sid: number
  readonly pasid?: number
  readonly addr: bigint
  readonly write: boolean
  readonly priv?: boolean
  readonly exec?: boolean
  /** An ATS translation request (needs the context's DTE). */
  readonly ats?: boolean
  /** The endpoint has PRI enabled: a translation request it cannot get is a page request, not a fault. */
  readonly pri?: boolean
}

/**
 * Faults a translation request answers with R = W = 0 (not present, no
 * permission, at either stage), which a PRI endpoint turns into a page
 * request; configuration errors stay faults.
 */
export const PAGE_REQUESTABLE: ReadonlySet<number> = new Set([0x71, 0x75, 0x76, 0x77, 0x81, 0x82, 0x85, 0x86])

export interface ContextConfig {
  readonly words: readonly [bigint, bigint]
  readonly fpd: boolean
  readonly dte: boolean
  readonly paside: boolean
  /** PASID directory entries: 2^(PDTS+7). */
  readonly dirEntries: number
  readonly dir: bigint
  readonly ridPasid: number
}

export interface PasidConfig {
  readonly words: readonly bigint[]
  readonly pasid: number
  readonly did: number
  readonly pgtt: number
  readonly fpd: boolean
  readonly ssLevels: number
  readonly ssade: boolean
  readonly ssptr: bigint
  readonly sre: boolean
  readonly ere: boolean
  readonly wpe: boolean
  readonly fsLevels: number
  readonly fsptr: bigint
}

export interface VtdTranslation {
  readonly kind: 'first' | 'second' | 'nested' | 'pt'
  readonly did: number
  readonly pasid: number
  /** Output address of the request's own address. */
  readonly out: bigint
  /** The translated span: [base, base+size) of input addresses. */
  readonly base: bigint
  readonly size: bigint
  readonly perms: number
  readonly global: boolean
}

export interface VtdFeatures {
  /** ECAP.SLADS: second-stage A/D when the PASID entry sets SSADE. */
  readonly slads: boolean
  /** CAP.MGAW + 1. */
  readonly mgaw: number
}

/**
 * A paging-structure cache entry: a table pointer read at `level` (2..5) for
 * input addresses [base, base+size), with the permissions accumulated down
 * to it, so a walk may resume in `next` at level - 1. First-stage and nested
 * entries are tagged (DID, PASID), second-stage-only ones (DID) alone.
 */
export interface PdeEntry {
  readonly kind: 'first' | 'second' | 'nested'
  readonly did: number
  readonly pasid?: number
  readonly level: number
  readonly base: bigint
  readonly size: bigint
  /** The next table (a GPA under nesting, read through the second stage). */
  readonly next: bigint
  /** First stage: R/W, U/S, XD so far; second stage: R, W so far (in rw/us: R = us, W = rw). */
  readonly rw: boolean
  readonly us: boolean
  readonly xd: boolean
  readonly since: number
  /** The descriptors of this stage read from its root down to this entry (the sanitizer compares them). */
  readonly steps: readonly VtdStep[]
}

/** Where a walk finds and leaves paging-structure cache entries. */
export interface PdeCache {
  /** The deepest entry at or below `top` covering `addr` for the tags, counting a hit or a miss. */
  lookupPde(kind: PdeEntry['kind'], did: number, pasid: number | undefined, addr: bigint, top: number): PdeEntry | undefined
  fillPde(e: Omit<PdeEntry, 'since'>): void
}

/** The second stage's verdict on one address. */
interface SsResult {
  readonly out: bigint
  readonly size: bigint
  readonly r: boolean
  readonly w: boolean
}

/** Why a second-stage walk failed: memory, no permission (or not present), or beyond the width. */
class SsMiss {
  constructor(readonly kind: 'abort' | 'perm' | 'range', readonly detail: string) {}
}

const ALL_USER_PRIV_READ = PERM.PR | PERM.UR | PERM.PX | PERM.UX
const ALL_WRITE = PERM.PW | PERM.UW

export class VtdWalker {
  /** A second look (the sanitizer): read only, no A/D updates, no paging-structure caches. */
  dryRun = false
  /** The paging-structure cache entry the last translateWith() resumed from, if any. */
  pdeUsed: PdeEntry | undefined
  /** The first-stage descriptor read last, as halves. */
  private readonly d: Halves = { lo: 0, hi: 0 }
  /** Context and PASID entries decoded before, reused while memory still holds the same words. */
  private readonly contextDecodes = new Decodes<ContextConfig>(4)
  private readonly pasidDecodes = new Decodes<PasidConfig>(16)

  constructor(readonly mem: MemoryPort, readonly features: VtdFeatures, readonly pdes?: PdeCache) {}

  /** The paging-structure caches, unless this is a dry run. */
  private get walkCache(): PdeCache | undefined {
    return this.dryRun ? undefined : this.pdes
  }

  private fault(txn: VtdTxn, reason: number, detail: string, fpd: boolean): never {
    const pageRequest = txn.ats === true && txn.pri === true && PAGE_REQUESTABLE.has(reason)
    const f: VtdFault = { reason, sid: txn.sid, pasid: txn.pasid, addr: txn.addr, write: txn.write, priv: txn.priv, exec: txn.exec, detail, recorded: !fpd && !pageRequest, ...(pageRequest ? { pageRequest } : {}) }
    throw new VtdFaultError(f)
  }

  private read(txn: VtdTxn, addr: bigint, reason: number, fpd: boolean): bigint {
    const v = this.mem.read64(addr)
    if (isAbort(v)) this.fault(txn, reason, `reading ${hex(addr)}: ${v.abort}`, fpd)
    return v
  }

  /** Root entry and scalable-mode context entry of the requester. */
  context(txn: VtdTxn, rootTable: bigint | undefined, steps: VtdStep[]): ContextConfig {
    if (rootTable === undefined) this.fault(txn, 0x30, 'no root table programmed', false)
    const bus = BigInt(txn.sid >> 8)
    const devfn = txn.sid & 0xff
    const rootAddr = rootTable + bus * 16n + (devfn >= 128 ? 8n : 0n)
    const root = this.read(txn, rootAddr, 0x38, false)
    steps.push({ what: 'root', level: 0, table: rootTable, addr: rootAddr, desc: root })
    if (!(root & 1n)) this.fault(txn, 0x39, `root entry ${bus} (${devfn >= 128 ? 'upper' : 'lower'}) not present`, false)
    const ctp = root & ADDR_MASK
    const ctxAddr = ctp + BigInt(devfn & 0x7f) * 32n
    const known = this.contextDecodes.find(this.mem, ctxAddr, 0)
    if (known) {
      steps.push({ what: 'context', level: 0, table: ctp, addr: ctxAddr, desc: known.words[0] }, { what: 'context', level: 1, table: ctp, addr: ctxAddr + 8n, desc: known.words[1] })
      return known
    }
    const lo = this.read(txn, ctxAddr, 0x40, false)
    const hi = this.read(txn, ctxAddr + 8n, 0x40, false)
    steps.push({ what: 'context', level: 0, table: ctp, addr: ctxAddr, desc: lo }, { what: 'context', level: 1, table: ctp, addr: ctxAddr + 8n, desc: hi })
    if (!(lo & 1n)) this.fault(txn, 0x41, `context entry ${hex(devfn)} not present`, false)
    return this.contextDecodes.keep(ctxAddr, 0, [lo32(lo), hi32(lo), lo32(hi), hi32(hi)], {
      words: [lo, hi],
      fpd: (lo & 2n) !== 0n,
      dte: (lo & 4n) !== 0n,
      paside: (lo & 8n) !== 0n,
      dirEntries: 2 ** (Number((lo >> 9n) & 7n) + 7),
      dir: lo & ADDR_MASK,
      ridPasid: Number(hi & 0xfffffn),
    })
  }

  /** The PASID directory and table entry for the request's PASID (RID_PASID without one). */
  pasidEntry(txn: VtdTxn, ctx: ContextConfig, steps: VtdStep[]): PasidConfig {
    let fpd = ctx.fpd
    if (txn.ats && !ctx.dte) this.fault(txn, 0x44, 'a translation request while the context entry has DTE = 0', fpd)
    if (txn.pasid !== undefined && !ctx.paside) this.fault(txn, 0x45, 'a request with PASID while the context entry has PASIDE = 0', fpd)
    const pasid = txn.pasid ?? ctx.ridPasid
    const dirIndex = pasid >> 6
    if (dirIndex >= ctx.dirEntries) this.fault(txn, 0x46, `PASID ${hex(pasid)} is beyond the ${ctx.dirEntries}-entry PASID directory`, fpd)
    const dirAddr = ctx.dir + BigInt(dirIndex) * 8n
    const de = this.read(txn, dirAddr, 0x50, fpd)
    steps.push({ what: 'pasiddir', level: 0, table: ctx.dir, addr: dirAddr, desc: de })
    if (!(de & 1n)) this.fault(txn, 0x51, `PASID directory entry ${dirIndex} not present`, fpd)
    fpd ||= (de & 2n) !== 0n
    const table = de & ADDR_MASK
    const at = table + BigInt(pasid & 0x3f) * 64n
    // the decode depends on the words, the PASID and the FPD gathered so far
    const extra = pasid * 2 + (fpd ? 1 : 0)
    const known = this.pasidDecodes.find(this.mem, at, extra)
    if (known) {
      for (let i = 0; i < 3; i++) steps.push({ what: 'pasid', level: i, table, addr: at + BigInt(i * 8), desc: known.words[i] })
      return known
    }
    const b = this.mem.read(at, 64)
    if (isAbort(b)) this.fault(txn, 0x58, `reading the PASID entry at ${hex(at)}: ${b.abort}`, fpd)
    const words = Array.from({ length: 8 }, (_, i) => b.readBigUInt64LE(i * 8))
    for (let i = 0; i < 3; i++) steps.push({ what: 'pasid', level: i, table, addr: at + BigInt(i * 8), desc: words[i] })
    const [w0, w1, w2] = words
    if (!(w0 & 1n)) this.fault(txn, 0x59, `PASID ${hex(pasid)}: entry not present`, fpd)
    fpd ||= (w0 & 2n) !== 0n
    const pgtt = Number((w0 >> 6n) & 7n)
    if (pgtt < 1 || pgtt > 4) this.fault(txn, 0x5b, `PASID ${hex(pasid)}: PGTT=${pgtt} is reserved`, fpd)
    const aw = Number((w0 >> 2n) & 7n)
    if ((pgtt === PGTT.SECOND || pgtt === PGTT.NESTED) && (aw < 1 || aw > 3)) this.fault(txn, 0x5b, `PASID ${hex(pasid)}: AW=${aw} is reserved`, fpd)
    const halves = Array.from({ length: 16 }, (_, i) => b.readUInt32LE(i * 4))
    return this.pasidDecodes.keep(at, extra, halves, {
      words,
      pasid,
      did: Number(w1 & 0xffffn),
      pgtt,
      fpd,
      ssLevels: aw + 2,
      ssade: (w0 & (1n << 9n)) !== 0n,
      ssptr: w0 & ADDR_MASK,
      sre: (w2 & 1n) !== 0n,
      ere: (w2 & 2n) !== 0n,
      wpe: (w2 & (1n << 4n)) !== 0n,
      fsLevels: (w2 >> 2n) & 3n ? 5 : 4,
      fsptr: w2 & ADDR_MASK,
    })
  }

  /** Checks the PASID entry makes for every request (SRE, ERE), whether its translation is cached or not. */
  checkRequest(txn: VtdTxn, pc: PasidConfig): void {
    if (pc.pgtt === PGTT.PT || pc.pgtt === PGTT.SECOND) return
    if (txn.priv && !pc.sre) this.fault(txn, 0x5d, 'a supervisor request while the PASID entry has SRE = 0', pc.fpd)
    if (txn.exec && !pc.ere) this.fault(txn, 0x5c, 'an execute request while the PASID entry has ERE = 0', pc.fpd)
  }

  /** The whole walk, for the sanitizer's second look: a translation or a fault. */
  translate(txn: VtdTxn, rootTable: bigint | undefined): { ok: true; t: VtdTranslation } | { ok: false; fault: VtdFault } {
    const steps: VtdStep[] = []
    try {
      const ctx = this.context(txn, rootTable, steps)
      const pc = this.pasidEntry(txn, ctx, steps)
      this.checkRequest(txn, pc)
      return { ok: true, t: this.translateWith(txn, pc, steps) }
    } catch (e) {
      if (e instanceof VtdFaultError) return { ok: false, fault: e.fault }
      throw e
    }
  }

  /** Translates through the tables the PASID entry names. */
  translateWith(txn: VtdTxn, pc: PasidConfig, steps: VtdStep[]): VtdTranslation {
    this.pdeUsed = undefined
    // one literal per result: a spread of shared fields costs more than the walk
    const result = (kind: VtdTranslation['kind'], out: bigint, size: bigint, perms: number, global: boolean): VtdTranslation => ({ did: pc.did, pasid: pc.pasid, kind, out, base: txn.addr & ~(size - 1n), size, perms, global })
    if (pc.pgtt === PGTT.PT) return result('pt', txn.addr, 0x1000n, PERM_ALL, false)
    if (pc.pgtt === PGTT.SECOND) {
      const r = this.ssFinal(txn, txn.addr, pc, steps, true)
      return result('second', r.out, r.size, ssPerms(r), false)
    }
    const nested = pc.pgtt === PGTT.NESTED
    const fs = this.firstStage(txn, pc, steps, nested)
    if (!nested) return result('first', fs.out, fs.size, fs.perms, fs.global)
    const r = this.ssFinal(txn, fs.out, pc, steps)
    return result('nested', r.out, r.size < fs.size ? r.size : fs.size, fs.perms & ssPerms(r), fs.global)
  }

  /** The second stage for the request's (or the first stage's output) address; a miss is 0x78/0x83/0x85/0x86. */
  private ssFinal(txn: VtdTxn, addr: bigint, pc: PasidConfig, steps: VtdStep[], cached = false): SsResult {
    try {
      return this.secondStage(addr, pc, txn.write, steps, cached)
    } catch (e) {
      if (!(e instanceof SsMiss)) throw e
      const reason = e.kind === 'abort' ? 0x78 : e.kind === 'range' ? 0x83 : txn.write ? 0x85 : 0x86
      this.fault(txn, reason, `second stage: ${e.detail}`, pc.fpd)
    }
  }

  /** A second-stage walk; `cached`: a second-stage-only translation, which the paging-structure caches serve. */
  private secondStage(addr: bigint, pc: PasidConfig, write: boolean, steps: VtdStep[], cached = false): SsResult {
    const width = BigInt(Math.min(12 + 9 * pc.ssLevels, this.features.mgaw))
    if (addr >> width) throw new SsMiss('range', `${hex(addr)} is beyond the ${width}-bit second stage`)
    const pdes = cached ? this.walkCache : undefined
    const hit = pdes?.lookupPde('second', pc.did, undefined, addr, pc.ssLevels)
    let table = hit ? hit.next : pc.ssptr
    let r = hit ? hit.us : true
    let w = hit ? hit.rw : true
    const trail: VtdStep[] = hit ? [...hit.steps] : []
    if (hit) this.pdeUsed = hit
    for (let level = hit ? hit.level - 1 : pc.ssLevels; level >= 1; level--) {
      const slot = table + levelIndex(addr, level) * 8n
      const v = this.mem.read64(slot)
      if (isAbort(v)) throw new SsMiss('abort', `level ${level} entry at ${hex(slot)}: ${v.abort}`)
      const step: VtdStep = { what: 'ss', level, table, addr: slot, desc: v }
      steps.push(step)
      if (!(v & (SS.R | SS.W))) throw new SsMiss('perm', `level ${level} entry at ${hex(slot)} is not present (R = W = 0)`)
      r &&= (v & SS.R) !== 0n
      w &&= (v & SS.W) !== 0n
      const leaf = level === 1 || (level <= 3 && (v & SS.PS) !== 0n)
      if (!leaf) {
        table = v & ADDR_MASK
        if (pdes) {
          trail.push(step)
          pdes.fillPde({ kind: 'second', did: pc.did, level, base: addr & ~((1n << levelShift(level)) - 1n), size: 1n << levelShift(level), next: table, rw: w, us: r, xd: false, steps: trail.slice() })
        }
        continue
      }
      if (write ? !w : !r) throw new SsMiss('perm', `level ${level}: ${write ? 'write' : 'read'} not allowed (${r ? 'R' : '-'}${w ? 'W' : '-'})`)
      if (pc.ssade && this.features.slads) this.update(step, (v & SS.A ? 0n : SS.A) | (write && !(v & SS.D) ? SS.D : 0n))
      const size = 1n << levelShift(level)
      return { out: (v & ADDR_MASK & ~(size - 1n)) | (addr & (size - 1n)), size, r, w }
    }
    throw new Error('unreachable')
  }

  /** Writes A/D bits into a descriptor (not on a dry run). */
  private update(step: VtdStep, bitsToSet: bigint): void {
    if (!bitsToSet || this.dryRun) return
    const r = this.mem.write64(step.addr, step.desc | bitsToSet)
    if (r) return
    step.updated = bitsToSet
    step.desc |= bitsToSet
  }

  /**
   * The first stage; under nesting every table address is a GPA, read
   * through the second stage. Descriptors are read as 32-bit halves and
   * addresses kept as numbers (at most 52 bits); the input address by its
   * page number and page offset, which are exact whatever its width.
   */
  private firstStage(txn: VtdTxn, pc: PasidConfig, steps: VtdStep[], nested: boolean): { out: bigint; size: bigint; perms: number; global: boolean } {
    const width = pc.fsLevels === 5 ? 57 : 48
    const canon = CANONICAL[width]
    const a = txn.addr
    if (!((a >= 0n && a < canon.low) || (a >= canon.high && a < TWO64))) this.fault(txn, 0x80, `${hex(a)} is not canonical for ${width}-bit first stage`, pc.fpd)
    const page = pageOf(a)
    const pdes = this.walkCache
    const kind = nested ? 'nested' : 'first'
    const hit = pdes?.lookupPde(kind, pc.did, pc.pasid, a, pc.fsLevels)
    let table = Number(hit ? hit.next : pc.fsptr)
    let rw = hit ? hit.rw : true
    let us = hit ? hit.us : true
    let xd = hit ? hit.xd : false
    const trail: VtdStep[] = hit ? [...hit.steps] : []
    if (hit) this.pdeUsed = hit
    const d = this.d
    for (let level = hit ? hit.level - 1 : pc.fsLevels; level >= 1; level--) {
      const gpa = table + (Math.floor(page / LEVEL_PAGES[level]) % 512) * 8
      let slot = gpa
      if (nested) {
        try {
          slot = Number(this.secondStage(BigInt(gpa), pc, false, steps).out)
        } catch (e) {
          if (!(e instanceof SsMiss)) throw e
          this.fault(txn, level === pc.fsLevels ? 0x75 : 0x76, `first-stage level ${level} table ${hex(table)} through second stage: ${e.detail}`, pc.fpd)
        }
      }
      const abort = loadHalves(this.mem, slot, d)
      if (abort) this.fault(txn, 0x70, `reading ${hex(slot)}: ${abort.abort}`, pc.fpd)
      const lo = d.lo
      const hi = d.hi
      // a dry run's steps are not looked at: none are made
      const step: VtdStep | undefined = this.dryRun ? undefined : { what: 'fs', level, table: BigInt(table), addr: BigInt(slot), desc: join64(hi, lo) }
      if (step) steps.push(step)
      if (!(lo & FL.P)) this.fault(txn, 0x71, `first-stage level ${level} entry at ${hex(slot)} not present`, pc.fpd)
      if (level >= 4 && lo & FL.PS) this.fault(txn, 0x72, `first-stage level ${level} entry at ${hex(slot)} has PS set`, pc.fpd)
      rw &&= (lo & FL.RW) !== 0
      us &&= (lo & FL.US) !== 0
      xd ||= (hi & FL_XD_HI) !== 0
      const leaf = level === 1 || (lo & FL.PS) !== 0
      if (leaf) {
        if (!txn.priv && !us) this.fault(txn, 0x81, `a user request, U/S = 0 on the walk (level ${level})`, pc.fpd)
        if (txn.exec && xd) this.fault(txn, 0x82, `an execute request, XD = 1 on the walk (level ${level})`, pc.fpd)
        if (txn.write && !rw && (!txn.priv || pc.wpe)) this.fault(txn, 0x85, `a write, R/W = 0 on the walk (level ${level})`, pc.fpd)
      }
      const set = (lo & FL.A ? 0 : FL.A) | (leaf && txn.write && !(lo & FL.D) ? FL.D : 0)
      if (set && step) {
        if (nested) {
          try {
            this.secondStage(BigInt(gpa), pc, true, steps)
          } catch (e) {
            if (!(e instanceof SsMiss)) throw e
            this.fault(txn, 0x77, `first-stage A/D update at GPA ${hex(gpa)} through second stage: ${e.detail}`, pc.fpd)
          }
        }
        this.update(step, BigInt(set))
      }
      // bits 51:12 of the descriptor
      const next = (hi & FL_ADDR_HI) * 0x1_0000_0000 + ((lo & FL_ADDR_LO) >>> 0)
      if (!leaf) {
        table = next
        if (pdes && step) {
          trail.push(step)
          pdes.fillPde({ kind, did: pc.did, pasid: pc.pasid, level, base: a & ~((1n << levelShift(level)) - 1n), size: 1n << levelShift(level), next: BigInt(table), rw, us, xd, steps: trail.slice() })
        }
        continue
      }
      const pages = LEVEL_PAGES[level]
      const perms = PERM.PR | (!pc.wpe || rw ? PERM.PW : 0) | (xd ? 0 : PERM.PX) | (us ? PERM.UR | (rw ? PERM.UW : 0) | (xd ? 0 : PERM.UX) : 0)
      // the leaf's frame, and the input's offset in it (exact: a power-of-two span of at most 1G)
      const out = next - (next % (pages * 4096)) + (page % pages) * 4096 + pageOffset(a)
      return { out: BigInt(out), size: LEVEL_SIZE[level], perms, global: (lo & FL.G) !== 0 }
    }
    throw new Error('unreachable')
  }
}

/** First-stage descriptor bits in the low half, XD in the high one, the address bits 51:12 in both (from FS and ADDR_MASK: one source of truth). */
const FL = { P: lo32(FS.P), RW: lo32(FS.RW), US: lo32(FS.US), A: lo32(FS.A), D: lo32(FS.D), PS: lo32(FS.PS), G: lo32(FS.G) } as const
const FL_XD_HI = hi32(FS.XD)
const FL_ADDR_LO = lo32(ADDR_MASK)
const FL_ADDR_HI = hi32(ADDR_MASK)
/** 4K pages an entry at each level maps (index 1..5), and the same in bytes as bigints. */
const LEVEL_PAGES = [0, 1, 2 ** 9, 2 ** 18, 2 ** 27, 2 ** 36]
const LEVEL_SIZE = LEVEL_PAGES.map((p) => BigInt(p) << 12n)
const TWO64 = 1n << 64n
/** A canonical first-stage input of `width` bits: below 2^(width-1), or from 2^64 - 2^(width-1) up. */
const CANONICAL: Readonly<Record<number, { readonly low: bigint; readonly high: bigint }>> = {
  48: { low: 1n << 47n, high: TWO64 - (1n << 47n) },
  57: { low: 1n << 56n, high: TWO64 - (1n << 56n) },
}

function ssPerms(r: SsResult): number {
  return (r.r ? ALL_USER_PRIV_READ : 0) | (r.w ? ALL_WRITE : 0)
}

export { permFor }
