/**
 * Real FUSE mounts for tests: each in a fresh temporary directory, served by
 * `iommufs mount` in a child process, always unmounted and removed.
 *
 *   await withMount(async (m) => {
 *     const r = await sh(`cat ${m.path('sys/class/iommu/dmar0/intel-vtd/model')}`)
 *   })
 */
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { makeTempDir, run, RunOptions, RunResult, spawnServer } from './cli'

export interface TestMount {
  /** The mount point (absolute). */
  dir: string
  /** The server's pid. */
  pid: number
  /** The absolute path of `p` inside the mount (`p` relative to the mount root, leading '/' allowed). */
  path(p: string): string
  /**
   * The whole text of a file of the mount, read by `cat` to its end: a
   * debug-tree file such as the trace says 4096 bytes in stat, as sysfs
   * attributes do, and fs.readFile stops there.
   */
  cat(p: string): Promise<string>
  /** Stops the server (SIGTERM, then SIGKILL and `umount -l` as last resorts) and removes the directory. Idempotent. */
  stop(): Promise<void>
}

export interface MountOptions {
  /** Topology file (default: the CLI's default machine). */
  topology?: string
  /** More arguments for `iommufs mount`. */
  args?: string[]
  /** More environment for the server. */
  env?: Record<string, string>
}

/** Mounts in a fresh temp dir; resolves once the server answered READY, rejects with its stderr if it exits. */
export async function startMount(opts: MountOptions = {}): Promise<TestMount> {
  const dir = await makeTempDir()
  const args = [...(opts.topology ? ['--topology', opts.topology] : []), ...(opts.args ?? [])]
  const srv = await spawnServer(dir, args, opts.env).catch(async (e: unknown) => {
    await fsp.rmdir(dir).catch(() => {})
    throw e
  })
  let stopping: Promise<void> | undefined
  return {
    dir,
    pid: srv.pid,
    path: (p) => path.join(dir, p),
    cat: async (p) => {
      const r = await run('cat', [path.join(dir, p)])
      if (r.code !== 0) throw new Error(`cat ${p}: ${r.stderr}`)
      return r.stdout
    },
    stop: () => (stopping ??= srv.stop().then(() => fsp.rmdir(dir))),
  }
}

/** Runs `fn` with a fresh mount and always stops it, whatever `fn` does. */
export async function withMount<T>(fn: (m: TestMount) => Promise<T>, opts?: MountOptions): Promise<T> {
  const m = await startMount(opts)
  try {
    return await fn(m)
  } finally {
    await m.stop()
  }
}

/** `bash -c CMD`, asynchronously, in the C locale; `env` is added to this process's environment. */
export function sh(cmd: string, opts: RunOptions = {}): Promise<RunResult> {
  return run('bash', ['-c', cmd], opts)
}
