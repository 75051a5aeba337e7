import { Access, Caller, FileNode, OpenFile, SYSFS_SIZE } from './nodes'

/** A node like dev/iommu: every open() starts its own session (a new iommufd context there). */
export class TransactionFile implements FileNode {
  readonly kind = 'file'

  constructor(private readonly start: (caller?: Caller) => OpenFile, readonly mode = 0o666) {}

  size(): number {
    return SYSFS_SIZE
  }

  open(_access: Access, caller?: Caller): OpenFile {
    return this.start(caller)
  }
}
