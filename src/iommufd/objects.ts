import { ErrnoError } from '../util/errno'
import { fallible } from '../util/fail-nth'
import { LIMITS } from '../util/limits'

export type ObjectType = 'ioas' | 'hwpt_paging' | 'hwpt_nested' | 'device' | 'viommu' | 'vdevice' | 'vcmdq' | 'hw_queue' | 'selftest' | 'access' | 'fault' | 'veventq'

/** A file of an object that behaves like a device register or memory (MMIO). */
export interface MmioFile {
  readonly mode: number
  size(): number
  read(pos: number, len: number): Buffer
  write?(pos: number, data: Buffer): number
  /** For poll(): whether a read would return data now; absent = always. */
  readable?(): boolean
  /** For poll(): calls `fn` once when a read would return data; returns the cancel. */
  whenReadable?(fn: () => void): () => void
  /** The poll() bits that say a write would not block (absent: POLLOUT|POLLWRNORM); a queue with no write op has none. */
  readonly pollWrite?: number
  /** A queue's descriptor: no file position (pread and lseek answer ESPIPE), as the kernel's anon-inode queues. */
  readonly stream?: boolean
  /** An open of it holds the object's context, as the kernel's queue file holds its iommufd (IommufdContext.hold). */
  readonly holdsContext?: boolean
  /** An open by thread `tid`: when it is the descriptor the object handed out, what its last close does. */
  descriptorOpened?(tid: number | undefined): (() => void) | undefined
}

/** The debug tree's directory of contexts, relative to the mount root. */
const CONTEXTS_DIR = 'sys/kernel/debug/iommufd'

/** Where an object's file is, relative to the mount root: the debug tree's `<ctx>/<id>.<type>/<file>`. */
export function objectFilePath(ctxId: number, obj: IommufdObject, file: string): string {
  return `${CONTEXTS_DIR}/${ctxId}/${obj.id}.${obj.type}/${file}`
}

/** The ID of the object whose `file` a path names, as objectFilePath makes it for a `type` object of context `ctxId` (from the mount root or any directory above it). */
export function objectIdAt(target: string, ctxId: number, type: string, file: string): number | undefined {
  const m = new RegExp(`(?:^|/)${CONTEXTS_DIR}/${ctxId}/(\\d+)\\.${type}/${file}$`).exec(target)
  return m ? Number(m[1]) : undefined
}

/**
 * An object in a context's ID table. `users` counts the references other
 * objects (and attached devices) hold; DESTROY needs it at zero, as the
 * kernel needs the table's reference to be the only one.
 */
export abstract class IommufdObject {
  id = 0
  users = 0
  abstract readonly type: ObjectType

  /** Key/value lines for the debug tree, in display order. */
  abstract describe(): [string, string][]

  /** Register-like files the object exposes in the debug tree (a directory), if any. */
  files?(): Record<string, MmioFile>

  /** What destroying the object undoes beyond its table slot (a selftest object unbinds its mock device). */
  teardown?(): void

  /** Holds an ID but is no uAPI object (the kernel's access): lookups by ID see nothing there. */
  readonly hidden?: boolean

  /** The thread that opens the object's descriptor file for the caller it was handed to (the shim, exec's supervisor). */
  private handedTo?: number

  /** A reply handed the caller a descriptor for the object; thread `tid` opens its file for it. */
  handOut(tid: number | undefined): void {
    this.handedTo = tid
  }

  /**
   * An open of the object's descriptor file by `tid`: whether it is the
   * descriptor handed out (once). Its release, which FUSE sends at the last
   * close and before the closer's next request, is then that descriptor's.
   */
  claimDescriptor(tid: number | undefined): boolean {
    if (tid === undefined || tid !== this.handedTo) return false
    this.handedTo = undefined
    return true
  }

  /** Short label for listings and graphs. */
  label(): string {
    return `${this.type} ${this.id}`
  }
}

/**
 * IDs are the lowest free one, as xarray ALLOC1 does (the kernel's range is
 * [1, 2^31 - 1]; a context holds at most LIMITS.objects of them here).
 */
export class ObjectTable {
  private readonly slots = new Map<number, IommufdObject | 'tombstone' | 'reserved'>()
  /** No ID below this is free: the search for the lowest free ID starts here. */
  private lowestFree = 1

  /** ENOSPC (the limit's errno) when the table is full; checked before anything is made. */
  checkRoom(): void {
    const { max, errno } = LIMITS.objects
    if (this.slots.size >= max) throw new ErrnoError(errno, `no free object ID: this context holds ${max} objects, the most it may`)
  }

  private takeId(): number {
    this.checkRoom()
    fallible('object allocation')
    fallible('ID insertion')
    let id = this.lowestFree
    while (this.slots.has(id)) id++
    this.lowestFree = id + 1
    return id
  }

  insert<T extends IommufdObject>(obj: T): T {
    const id = this.takeId()
    obj.id = id
    this.slots.set(id, obj)
    return obj
  }

  /** Takes an ID before the object exists (the kernel allocates the ID first); lookups see nothing there. */
  reserve(): number {
    const id = this.takeId()
    this.slots.set(id, 'reserved')
    return id
  }

  /** Puts `obj` at a reserved ID. */
  fill<T extends IommufdObject>(id: number, obj: T): T {
    obj.id = id
    this.slots.set(id, obj)
    return obj
  }

  /** Gives back a reserved ID that was never filled. */
  release(id: number): void {
    if (this.slots.get(id) !== 'reserved') return
    this.slots.delete(id)
    if (id < this.lowestFree) this.lowestFree = id
  }

  /** A typed lookup: a missing ID and one of another type look the same (ENOENT). */
  get<T extends IommufdObject>(id: number, field: string, ...types: ObjectType[]): T {
    const o = this.slots.get(id)
    if (!o || typeof o === 'string' || o.hidden || (types.length > 0 && !types.includes(o.type))) {
      const what = types.length ? types.join(' or ') : 'object'
      throw new ErrnoError('ENOENT', `${field}=${id}: no ${what} with that ID`)
    }
    return o as T
  }

  find(id: number): IommufdObject | undefined {
    const o = this.slots.get(id)
    return typeof o === 'string' || o?.hidden ? undefined : o
  }

  /** An object by ID even if hidden (the selftest's accesses, addressed through their own files). */
  findAny(id: number): IommufdObject | undefined {
    const o = this.slots.get(id)
    return typeof o === 'string' ? undefined : o
  }

  remove(obj: IommufdObject): void {
    this.slots.delete(obj.id)
    if (obj.id < this.lowestFree) this.lowestFree = obj.id
  }

  /** Keeps the ID reserved (lookups give ENOENT) until the context closes. */
  tombstone(obj: IommufdObject): void {
    this.slots.set(obj.id, 'tombstone')
  }

  objects(): IommufdObject[] {
    return [...this.slots.values()].filter((o): o is IommufdObject => typeof o !== 'string').sort((a, b) => a.id - b.id)
  }

  tombstones(): number[] {
    return [...this.slots].filter(([, o]) => o === 'tombstone').map(([id]) => id)
  }

  get size(): number {
    return this.slots.size
  }
}
