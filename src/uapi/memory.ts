import { ErrnoError } from '../util/errno'

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
    for (const [base, b] of this.supplied) {
      if (b === 'fault' || addr === 0n || addr < base || addr + len > base + BigInt(b.length)) continue
      return b.subarray(Number(addr - base), Number(addr - base + len))
    }
    throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot read ${len} bytes there`)
  }

  write(addr: bigint, data: Buffer, field: string): void {
    if (data.length === 0) return
    if (addr === 0n || this.supplied.get(addr) === 'fault') throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot write there`)
    this.written.set(addr, Buffer.from(data))
  }
}
