import { Access, Caller, FileNode, OpenFile, SYSFS_SIZE } from './nodes'

/** A node like dev/iommu: every open() starts its own session (a new iommufd context there). */
export class TransactionFile implements FileNode {
  readonly kind = 'file'

  /** `reach`: a size the file must have beyond SYSFS_SIZE (the pages a mapping of it reads). */
  constructor(private readonly start: (caller?: Caller) => OpenFile, readonly mode = 0o666, private readonly reach = (): number => 0) {}

  size(): number {
    return Math.max(SYSFS_SIZE, this.reach())
  }

  open(_access: Access, caller?: Caller): OpenFile {
    return this.start(caller)
  }
}
