import { ErrnoError, OutcomeError } from '../util/errno'
import { fallible } from '../util/fail-nth'

/** A buffer a handler must see before it can run (not named by the struct's pointer fields). */
export interface MemoryNeed {
  readonly addr: bigint
  readonly len: number
  readonly field: string
}

/** Thrown by reads the caller can still supply: the dispatcher turns it into a RETRY frame. */
export class MissingMemory extends OutcomeError {
  constructor(readonly needs: readonly MemoryNeed[]) {
    super(`user memory needed: ${needs.map((n) => `${n.field}@0x${n.addr.toString(16)}+${n.len}`).join(', ')}`)
  }
}

/**
 * The caller's memory as far as one ioctl can see it: the buffers its user
 * pointers name (sent along with the struct) and the ones it writes back.
 * A pointer the caller could not supply reads as EFAULT, as copy_from_user does.
 */
export class UserMemory {
  readonly written = new Map<bigint, Buffer>()

  /** `canAsk`: a buffer not supplied may still be asked for (frames from the shim), so reads of it throw MissingMemory. */
  constructor(private readonly supplied: ReadonlyMap<bigint, Buffer | 'fault'>, private readonly canAsk = false) {}

  protected lookup(addr: bigint, len: bigint): Buffer | 'fault' | undefined {
    for (const [base, b] of this.supplied) {
      if (b === 'fault') {
        if (base === addr) return 'fault'
        continue
      }
      if (addr === 0n || addr < base || addr + len > base + BigInt(b.length)) continue
      return b.subarray(Number(addr - base), Number(addr - base + len))
    }
    return undefined
  }

  /** Asks for every buffer of `needs` not supplied yet, all at once (before a handler changes anything). */
  need(needs: readonly MemoryNeed[]): void {
    if (!this.canAsk) return
    const missing = needs.filter((n) => n.len > 0 && n.addr !== 0n && this.lookup(n.addr, BigInt(n.len)) === undefined)
    if (missing.length) throw new MissingMemory(missing)
  }

  /** `len` bytes at `addr`, from whichever supplied buffer holds them all. */
  read(addr: bigint, len: bigint, field: string): Buffer {
    if (len === 0n) return Buffer.alloc(0)
    fallible('copy from user')
    const b = this.lookup(addr, len)
    if (b instanceof Buffer) return b
    if (b === undefined && this.canAsk && addr !== 0n) throw new MissingMemory([{ addr, len: Number(len), field }])
    throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot read ${len} bytes there`)
  }

  write(addr: bigint, data: Buffer, field: string): void {
    if (data.length === 0) return
    fallible('copy to user')
    if (addr === 0n || this.supplied.get(addr) === 'fault') throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot write there`)
    this.written.set(addr, Buffer.from(data))
  }
}

/** Another process's memory, as root reaches it (process_vm_readv/writev); failures are negative errnos. */
export interface ProcessMemory {
  read(pid: number, addr: bigint, len: number): Buffer | number
  write(pid: number, addr: bigint, data: Buffer): number
}

/** `len` bytes at `addr` of process `pid`, as copy_from_user reads them: EFAULT, naming `field`, where it cannot. */
function readProcess(mem: ProcessMemory, pid: number, addr: bigint, len: bigint, field: string): Buffer {
  fallible('copy from user')
  const r = addr === 0n ? -14 : mem.read(pid, addr, Number(len))
  if (typeof r === 'number') throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot read ${len} bytes there`)
  return r
}

/**
 * The memory of the process that made a real ioctl(): pointers are followed
 * into it and out-buffers written there at once, as copy_from_user and
 * copy_to_user do. A page the process cannot supply is EFAULT.
 */
export class PidMemory extends UserMemory {
  constructor(private readonly mem: ProcessMemory, readonly pid: number) {
    super(new Map())
  }

  override read(addr: bigint, len: bigint, field: string): Buffer {
    return len === 0n ? Buffer.alloc(0) : readProcess(this.mem, this.pid, addr, len, field)
  }

  override write(addr: bigint, data: Buffer, field: string): void {
    if (data.length === 0) return
    fallible('copy to user')
    if (addr === 0n || this.mem.write(this.pid, addr, data) !== 0) throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot write there`)
    this.written.set(addr, Buffer.from(data))
  }
}

/**
 * A shim frame's memory when the server can reach the sender's process: the
 * buffers the frame carries, and anything else read from the process at once
 * (process_vm_readv), as a real ioctl() is served, instead of a RETRY round
 * trip to the shim. Writes go back in the reply, which the shim applies.
 */
export class FrameMemory extends UserMemory {
  constructor(supplied: ReadonlyMap<bigint, Buffer | 'fault'>, private readonly mem: ProcessMemory, readonly pid: number) {
    super(supplied)
  }

  override read(addr: bigint, len: bigint, field: string): Buffer {
    return len === 0n || this.lookup(addr, len) !== undefined ? super.read(addr, len, field) : readProcess(this.mem, this.pid, addr, len, field)
  }
}
