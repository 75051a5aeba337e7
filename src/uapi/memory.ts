import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'

/**
 * The caller's memory as far as one ioctl can see it: the buffers its user
 * pointers name (sent along with the struct) and the ones it writes back.
 * A pointer the caller could not supply reads as EFAULT, as copy_from_user does.
 */
export class UserMemory {
  readonly written = new Map<bigint, Buffer>()

  constructor(private readonly supplied: ReadonlyMap<bigint, Buffer | 'fault'>) {}

  /** `len` bytes at `addr`, from whichever supplied buffer holds them all. */
  read(addr: bigint, len: bigint, field: string): Buffer {
    if (len === 0n) return Buffer.alloc(0)
    fallible('copy from user')
    for (const [base, b] of this.supplied) {
      if (b === 'fault' || addr === 0n || addr < base || addr + len > base + BigInt(b.length)) continue
      return b.subarray(Number(addr - base), Number(addr - base + len))
    }
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
    if (len === 0n) return Buffer.alloc(0)
    const r = addr === 0n ? -14 : this.mem.read(this.pid, addr, Number(len))
    if (typeof r === 'number') throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot read ${len} bytes there`)
    return r
  }

  override write(addr: bigint, data: Buffer, field: string): void {
    if (data.length === 0) return
    if (addr === 0n || this.mem.write(this.pid, addr, data) !== 0) throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot write there`)
    this.written.set(addr, Buffer.from(data))
  }
}
