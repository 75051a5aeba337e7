/**
 * The one module the server mounts through: it picks a FUSE backend and
 * mounts a TreeOps with it. Nothing above knows which backend serves.
 */
import { BackendOptions, Mounted } from './fuse-common'
import { TreeOps } from './ops'
import { noteServedMounts, registerServedDir, unregisterServedDir } from '../util/own-mounts'

export type { Mounted } from './fuse-common'
export { ROOT_FSNAME } from './fuse-common'
export { detach } from './unmount'

/** libfuse3: per-file caching, poll, interrupts, ioctl, callers. fuse-native: the fallback for machines without libfuse3. */
export const BACKENDS = ['libfuse3', 'fuse-native'] as const
export type Backend = (typeof BACKENDS)[number]
export const DEFAULT_BACKEND: Backend = 'libfuse3'

export interface MountOptions extends BackendOptions {
  backend?: Backend
}

export async function mountTree(dir: string, ops: TreeOps, opts: MountOptions = {}): Promise<Mounted> {
  // the model refuses to open files here: this process answers for them (src/util/own-mounts.ts)
  registerServedDir(dir)
  try {
    // each backend is loaded only when used: a machine may lack the other's library
    const m = (opts.backend ?? DEFAULT_BACKEND) === 'fuse-native' ? await (await import('./fuse-native-backend')).mountFuseNative(dir, ops, opts) : await (await import('./libfuse3-backend')).mountLibfuse3(dir, ops, opts)
    noteServedMounts()
    return {
      unmount: async () => {
        await m.unmount()
        unregisterServedDir(dir)
      },
    }
  } catch (e) {
    unregisterServedDir(dir)
    throw e
  }
}
