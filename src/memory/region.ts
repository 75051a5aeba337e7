import { Abort, Backing, isAbort } from './backing'
import { MemoryPort } from './physical'

/**
 * A backing seen at addresses [base, base+length), with a bump allocator: the
 * memory a guest (or a test, or a shell user with printf into a file) builds
 * its tables in, addressed the way those tables address it (IPAs).
 */
export class Region implements MemoryPort {
  private next: bigint

  constructor(readonly backing: Backing, readonly base: bigint, readonly length: bigint, allocFrom?: bigint) {
    this.next = allocFrom ?? base
  }

  private out(addr: bigint, len: number): Abort | undefined {
    return addr < this.base || addr + BigInt(len) > this.base + this.length ? { abort: `0x${addr.toString(16)} is outside the region` } : undefined
  }

  read(addr: bigint, len: number): Buffer | Abort {
    return this.out(addr, len) ?? this.backing.read(addr - this.base, len)
  }

  write(addr: bigint, data: Buffer): Abort | undefined {
    return this.out(addr, data.length) ?? this.backing.write(addr - this.base, data)
  }

  read64(addr: bigint): bigint | Abort {
    const b = this.read(addr, 8)
    return isAbort(b) ? b : b.readBigUInt64LE(0)
  }

  write64(addr: bigint, value: bigint): Abort | undefined {
    const b = Buffer.alloc(8)
    b.writeBigUInt64LE(value)
    return this.write(addr, b)
  }

  /** Zeroed bytes, aligned; throws when the region is full. */
  alloc(bytes: bigint, align: bigint): bigint {
    const at = ((this.next + align - 1n) / align) * align
    if (at + bytes > this.base + this.length) throw new Error(`region full: 0x${bytes.toString(16)} bytes wanted`)
    const r = this.write(at, Buffer.alloc(Number(bytes)))
    if (r) throw new Error(r.abort)
    this.next = at + bytes
    return at
  }
}
