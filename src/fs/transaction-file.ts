import { FileNode, OpenFile, SYSFS_SIZE } from './nodes'

/** A node like dev/iommu: every open() starts its own session (a new iommufd context there). */
export class TransactionFile implements FileNode {
  readonly kind = 'file'

  constructor(private readonly start: () => OpenFile, readonly mode = 0o666) {}

  size(): number {
    return SYSFS_SIZE
  }

  open(): OpenFile {
    return this.start()
  }
}
