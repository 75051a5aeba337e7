import { CERROR, CONS_ERR_MASK, Command, describeCommand, parseCommand } from '../hw/smmuv3/commands'
import { RingIndex } from '../hw/ring'
import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'
import { LIMITS } from '../util/limits'
import { unknownFlags } from './checks'
import type { IommufdContext } from './context'
import { consumeGuestQueue } from './invalidate'
import { IommufdObject, MmioFile } from './objects'
import { Viommu } from './viommu'

/** SMMU_GERROR / GERRORN: the command queue error bit. */
export const GERROR_CMDQ_ERR = 1 << 0
const ENTRY = 16

function text(v: string): MmioFile['read'] {
  return (pos, len) => Buffer.from(`${v}\n`).subarray(pos, pos + len)
}

function parseRegister(data: Buffer, name: string): number {
  const t = data.toString('utf8').trim()
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(t)) throw new ErrnoError('EINVAL', `${name}: "${t}" is not a number`)
  const v = Number(t)
  if (v > 0xffffffff) throw new ErrnoError('EINVAL', `${name}: ${t} does not fit 32 bits`)
  return v
}

/**
 * A software command queue of a vIOMMU: the guest's SMMUv3 command queue
 * with host-backed PROD/CONS. Writing PROD is the doorbell: commands from
 * CONS to PROD are consumed at once (vSIDs fixed up, VMID filled in, issued
 * to the physical SMMU). An illegal command halts the queue as hardware does:
 * CONS stays on it with CONS.ERR set and GERROR.CMDQ_ERR toggled; writing
 * GERRORN to match GERROR acknowledges, and consumption resumes at CONS.
 */
export class Vcmdq extends IommufdObject {
  readonly type = 'vcmdq'
  readonly ring: RingIndex
  readonly mem: Buffer
  prod = 0
  /** Index and wrap flag; ERR lives in `err`. */
  private consIdx = 0
  private err = 0
  gerror = 0
  gerrorn = 0
  lastError = ''

  /** `onEvent` receives halts and resumes (the trace: an injected error firing here shows there). */
  constructor(readonly viommu: Viommu, readonly log2size: number, private readonly onEvent: (message: string) => void = () => {}) {
    super()
    this.ring = new RingIndex(log2size)
    this.mem = Buffer.alloc(this.ring.size * ENTRY)
  }

  get cons(): number {
    return this.consIdx | (this.err << 24)
  }

  get halted(): boolean {
    return ((this.gerror ^ this.gerrorn) & GERROR_CMDQ_ERR) !== 0
  }

  private read(index: number): Command {
    return [this.mem.readBigUInt64LE(index * ENTRY), this.mem.readBigUInt64LE(index * ENTRY + 8)]
  }

  private consume(): void {
    if (this.halted) return
    const r = consumeGuestQueue(this.viommu, this.ring, (i) => this.read(i), this.consIdx, this.prod)
    this.consIdx = r.cons & ~CONS_ERR_MASK
    if (r.error) {
      this.err = CERROR[r.error.cerror]
      this.gerror ^= GERROR_CMDQ_ERR
      this.lastError = `CERROR_${r.error.cerror} at index ${r.error.index}: ${r.error.message}`
      this.onEvent(`vcmdq ${this.id} halted: ${this.lastError}`)
    }
  }

  writeProd(written: number): void {
    // SMMU_CMDQ_PROD: bits above the wrap flag are RES0; a value there has no effect (IHI 0070 §6.3.27)
    const v = written & this.ring.mask
    if (this.ring.count(v, this.consIdx) > this.ring.size) throw new ErrnoError('EINVAL', `prod=0x${v.toString(16)}: more than ${this.ring.size} entries ahead of CONS 0x${this.consIdx.toString(16)}`)
    this.prod = v
    this.consume()
  }

  writeGerrorn(v: number): void {
    if (v & ~GERROR_CMDQ_ERR) throw new ErrnoError('EINVAL', `gerrorn=0x${v.toString(16)}: only CMDQ_ERR (bit 0) is modelled`)
    const wasHalted = this.halted
    this.gerrorn = v
    if (wasHalted && !this.halted) {
      this.onEvent(`vcmdq ${this.id}: GERRORN acknowledged, resuming at CONS ${RingIndex.hex(this.consIdx)}`)
      this.err = 0
      this.consume()
    }
  }

  /** Encodes commands, writes them at PROD and rings the doorbell (the `cmd` helper file). */
  enqueue(cmds: Command[]): void {
    let prod = this.prod
    for (const c of cmds) {
      if (this.ring.full(prod, this.consIdx)) throw new ErrnoError('ENOSPC', `the queue is full (PROD 0x${prod.toString(16)}, CONS 0x${this.consIdx.toString(16)})`)
      this.mem.writeBigUInt64LE(c[0], this.ring.index(prod) * ENTRY)
      this.mem.writeBigUInt64LE(c[1], this.ring.index(prod) * ENTRY + 8)
      prod = this.ring.next(prod)
    }
    this.writeProd(prod)
  }

  /** Every slot: raw words, decoded, and whether it is consumed or pending. */
  entries(): string {
    const pending = new Set<number>()
    for (let p = this.consIdx, n = 0; p !== this.prod && n <= this.ring.size; p = this.ring.next(p), n++) pending.add(this.ring.index(p))
    const halt = this.halted ? this.ring.index(this.consIdx) : -1
    const rows = []
    for (let i = 0; i < this.ring.size; i++) {
      const c = this.read(i)
      if (c[0] === 0n && c[1] === 0n && !pending.has(i)) continue
      const state = i === halt ? 'ERROR' : pending.has(i) ? 'pending' : 'consumed'
      rows.push(`${String(i).padStart(5)}  ${c[0].toString(16).padStart(16, '0')} ${c[1].toString(16).padStart(16, '0')}  ${state.padEnd(8)}  ${describeCommand(c)}`)
    }
    return `vcmdq ${this.id}: ${this.ring.size} entries, PROD ${RingIndex.hex(this.prod)}, CONS ${RingIndex.hex(this.cons)}${this.halted ? ' (halted: GERROR.CMDQ_ERR active)' : ''}\n${rows.join('\n')}${rows.length ? '\n' : ''}`
  }

  /** The register files, in the context's debug directory. */
  override files(): Record<string, MmioFile> {
    const hex = RingIndex.hex
    return {
      ring: {
        mode: 0o644,
        size: () => this.mem.length,
        read: (pos, len) => Buffer.from(this.mem.subarray(pos, pos + len)),
        write: (pos, data) => {
          if (pos + data.length > this.mem.length) throw new ErrnoError('EFBIG', `ring: bytes ${pos}..${pos + data.length - 1} run past the ${this.mem.length}-byte queue`)
          data.copy(this.mem, pos)
          return data.length
        },
      },
      prod: { mode: 0o644, size: () => 4096, read: (p, l) => text(hex(this.prod))(p, l), write: (_p, d) => (this.writeProd(parseRegister(d, 'prod')), d.length) },
      cons: { mode: 0o444, size: () => 4096, read: (p, l) => text(hex(this.cons))(p, l) },
      gerror: { mode: 0o444, size: () => 4096, read: (p, l) => text(hex(this.gerror))(p, l) },
      gerrorn: { mode: 0o644, size: () => 4096, read: (p, l) => text(hex(this.gerrorn))(p, l), write: (_p, d) => (this.writeGerrorn(parseRegister(d, 'gerrorn')), d.length) },
      cmd: {
        mode: 0o200,
        size: () => 4096,
        read: () => {
          throw new ErrnoError('EACCES', 'cmd is write-only')
        },
        write: (_p, d) => {
          const cmds = d
            .toString('utf8')
            .split('\n')
            .map((l) => l.trim())
            .filter((l) => l && !l.startsWith('#'))
            .map(parseCommand)
          this.enqueue(cmds)
          return d.length
        },
      },
      entries: { mode: 0o444, size: () => 4096, read: (p, l) => Buffer.from(this.entries()).subarray(p, p + l) },
    }
  }

  describe(): [string, string][] {
    return [
      ['type', 'vcmdq'],
      ['users', String(this.users)],
      ['viommu', String(this.viommu.id)],
      ['entries', String(this.ring.size)],
      ['prod', RingIndex.hex(this.prod)],
      ['cons', RingIndex.hex(this.cons)],
      ['gerror', RingIndex.hex(this.gerror)],
      ['gerrorn', RingIndex.hex(this.gerrorn)],
      ['halted', this.halted ? '1' : '0'],
      ['last_error', this.lastError || '-'],
    ]
  }
}

/** IOMMUFS_VCMDQ_ALLOC: a software command queue for a vIOMMU, 2^log2size entries. */
export function vcmdqAlloc(ctx: IommufdContext, flags: number, viommuId: number, log2size: number): number {
  unknownFlags(flags, 0)
  const viommu = ctx.objects.get<Viommu>(viommuId, 'viommu_id', 'viommu')
  if (viommu.mock) throw new ErrnoError('EOPNOTSUPP', `viommu_id=${viommuId}: a mock vIOMMU has no command queue`)
  const cmdqs = Math.min(Number(viommu.unit.registers.field('IDR1.CMDQS')), 19)
  // one doorbell consumes the whole queue at most: the queue is bounded like an invalidation ring
  const max = Math.min(cmdqs, Math.log2(LIMITS.ringEntries.max))
  if (log2size < 1 || log2size > max) {
    throw new ErrnoError('EINVAL', `log2size=${log2size}: ${viommu.unit.name} takes 1..${cmdqs} (IDR1.CMDQS)${max < cmdqs ? `, iommufs at most ${max} (${LIMITS.ringEntries.max} entries)` : ''}`)
  }
  fallible('queue allocation')
  const q = ctx.objects.insert(new Vcmdq(viommu, log2size, (m) => ctx.world.trace.emit(`ctx${ctx.id}`, m)))
  viommu.users++
  return q.id
}
