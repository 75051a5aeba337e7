// The part of fuse-native 2.2.6's API that iommufs uses (the package ships no typings).
declare module 'fuse-native' {
  type Cb<T = void> = T extends void ? (err: number) => void : (err: number, value?: T) => void

  namespace Fuse {
  interface FuseStat {
    mode: number
    uid: number
    gid: number
    size: number
    nlink: number
    mtime: Date
    atime: Date
    ctime: Date
  }

  interface FuseOps {
    getattr?(path: string, cb: Cb<FuseStat>): void
    readdir?(path: string, cb: Cb<string[]>): void
    readlink?(path: string, cb: Cb<string>): void
    open?(path: string, flags: number, cb: Cb<number>): void
    read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void
    write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void
    truncate?(path: string, size: number, cb: Cb): void
    ftruncate?(path: string, fd: number, size: number, cb: Cb): void
    release?(path: string, fd: number, cb: Cb): void
    create?(path: string, mode: number, cb: Cb<number>): void
    mkdir?(path: string, mode: number, cb: Cb): void
    unlink?(path: string, cb: Cb): void
    rmdir?(path: string, cb: Cb): void
    mknod?(path: string, mode: number, dev: number, cb: Cb): void
    rename?(src: string, dest: string, cb: Cb): void
    symlink?(target: string, path: string, cb: Cb): void
    link?(src: string, path: string, cb: Cb): void
    chmod?(path: string, mode: number, cb: Cb): void
    chown?(path: string, uid: number, gid: number, cb: Cb): void
    utimens?(path: string, atime: number, mtime: number, cb: Cb): void
  }

  interface FuseOptions {
    force?: boolean
    mkdir?: boolean
    debug?: boolean
    fsname?: string
    subtype?: string
    timeout?: number | false
  }

  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.FuseOps, opts?: Fuse.FuseOptions)
    mount(cb: (err: Error | null) => void): void
    unmount(cb: (err: Error | null) => void): void
    _fuseOptions(): string
    static unmount(mnt: string, cb: (err: Error | null) => void): void
  }

  export = Fuse
}
