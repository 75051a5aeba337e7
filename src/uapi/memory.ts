import { ErrnoError } from '../util/errno'

/**
 * The caller's memory as far as one ioctl can see it: the buffers its user
 * pointers name (sent along with the struct) and the ones it writes back.
 * A pointer the caller could not supply reads as EFAULT, as copy_from_user does.
 */
export class UserMemory {
  readonly written = new Map<bigint, Buffer>()

  constructor(private readonly supplied: ReadonlyMap<bigint, Buffer | 'fault'>) {}

  read(addr: bigint, len: bigint, field: string): Buffer {
    if (len === 0n) return Buffer.alloc(0)
    const b = this.supplied.get(addr)
    if (addr === 0n || b === undefined || b === 'fault' || BigInt(b.length) < len) {
      throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot read ${len} bytes there`)
    }
    return b.subarray(0, Number(len))
  }

  write(addr: bigint, data: Buffer, field: string): void {
    if (data.length === 0) return
    if (addr === 0n || this.supplied.get(addr) === 'fault') throw new ErrnoError('EFAULT', `${field}=0x${addr.toString(16)}: cannot write there`)
    this.written.set(addr, Buffer.from(data))
  }
}
