import { FileNode, OpenFile, SYSFS_SIZE } from './nodes'

/** What a transaction node does with one open: write requests, read replies, close. */
export interface Transactions {
  write(pos: number, data: Buffer): number
  read(pos: number, len: number): Buffer
  release(): void
}

/** A node like dev/iommu: every open() starts its own session (a new iommufd context there). */
export class TransactionFile implements FileNode {
  readonly kind = 'file'

  constructor(private readonly start: () => Transactions, readonly mode = 0o666) {}

  size(): number {
    return SYSFS_SIZE
  }

  open(): OpenFile {
    const s = this.start()
    return { read: (pos, len) => s.read(pos, len), write: (pos, data) => s.write(pos, data), release: () => s.release() }
  }
}
