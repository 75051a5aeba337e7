/**
 * Low-level helpers behind test/helpers/mount.ts: running programs, the iommufs
 * command line, and a mount server in a child process on a given directory.
 * Everything here is asynchronous: the test process may itself serve a mount.
 */
import { ChildProcess, spawn } from 'node:child_process'
import { constants as osConstants, tmpdir } from 'node:os'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { PACKAGE_ROOT } from '../../src/util/paths'

export { PACKAGE_ROOT }
/** The compiled command line, `iommufs`. */
export const CLI = path.join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')
/** Temp mount points of this test run (the pid keeps concurrent runs out of each other's sweep). */
export const TEMP_PREFIX = `iommufs-test-${process.pid}-`

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

export interface RunOptions {
  cwd?: string
  input?: string
  env?: NodeJS.ProcessEnv
}

/** Runs a program to completion; `code` is 128 + signal number when it was killed. C locale for stable messages. */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: { ...process.env, LC_ALL: 'C', ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.stdin.on('error', () => {}) // the program may exit without reading its input
    child.stdin.end(opts.input ?? '')
    child.on('error', reject)
    child.on('close', (code, signal) => {
      resolve({ code: code ?? 128 + (signal ? osConstants.signals[signal] : 0), stdout, stderr })
    })
  })
}

/** `iommufs ARGS...` through node. */
export function iommufs(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], opts)
}

/** A fresh, empty directory under the system temp dir, named so the root hook recognises it. */
export function makeTempDir(): Promise<string> {
  return fsp.mkdtemp(path.join(tmpdir(), TEMP_PREFIX))
}

/** Mount points of type fuse.iommufs (the CLI's own reading of /proc/self/mounts). */
export { iommufsMounts as iommufsMountPoints } from '../../src/cli/mount-point'
import { iommufsMounts as iommufsMountPoints } from '../../src/cli/mount-point'

export async function isMounted(dir: string): Promise<boolean> {
  return (await iommufsMountPoints()).includes(dir)
}

/** Lazily detaches `dir` (root); the last resort when a server did not unmount. */
export async function lazyUnmount(dir: string): Promise<void> {
  if (!(await isMounted(dir))) return
  const r = await run('umount', ['-l', dir])
  if (r.code !== 0 && (await isMounted(dir))) throw new Error(`umount -l ${dir}: ${r.stderr.trim()}`)
}

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

/** Resolves with the exit of `child`, or undefined after `ms`. */
export function waitExit(exited: Promise<Exit>, ms: number): Promise<Exit | undefined> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))
  return Promise.race([exited, timeout]).finally(() => clearTimeout(timer))
}

/** A foreground `iommufs mount` running as a child of the test process. */
export interface ServerProcess {
  readonly dir: string
  readonly pid: number
  readonly child: ChildProcess
  /** Resolves when the server has exited (it is never rejected). */
  readonly exited: Promise<Exit>
  /** What the server wrote on stderr so far. */
  stderr(): string
  /** SIGTERM, wait; SIGKILL if it lingers; `umount -l` if the mount is still there. Idempotent. */
  stop(): Promise<void>
}

/** How long a server may take to answer READY or to exit; generous, and never asserted. */
const START_LIMIT_MS = 15000
const EXIT_LIMIT_MS = 5000

/**
 * Starts `iommufs mount DIR ARGS...` with IOMMUFS_READY_LINE=1 and resolves
 * once it printed "READY <pid>"; rejects with its stderr if it exits first.
 */
export function spawnServer(dir: string, args: readonly string[] = [], env: Record<string, string> = {}): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'mount', dir, ...args], {
    env: { ...process.env, ...env, IOMMUFS_READY_LINE: '1', LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  const exited = new Promise<Exit>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }))
    child.on('error', () => resolve({ code: null, signal: null }))
  })
  // keep draining both pipes for the server's whole life, so it never blocks on them
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))

  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        if (!(await waitExit(exited, EXIT_LIMIT_MS))) {
          child.kill('SIGKILL')
          await waitExit(exited, EXIT_LIMIT_MS)
        }
      }
      await lazyUnmount(dir)
    })())
  const server: ServerProcess = { dir, pid: child.pid ?? -1, child, exited, stderr: () => err, stop }

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      void stop().finally(() => reject(new Error(`iommufs mount ${dir}: no READY line within ${START_LIMIT_MS} ms; stderr: ${err.trim()}`)))
    }, START_LIMIT_MS)
    const onData = (): void => {
      const m = /^READY (\d+)$/m.exec(out)
      if (!m) return
      cleanup()
      if (Number(m[1]) !== child.pid) {
        void stop().finally(() => reject(new Error(`READY line names pid ${m[1]}, the server is ${child.pid}`)))
        return
      }
      resolve(server)
    }
    // 'close' comes after the pipes drained, so stderr holds the whole reason
    const onExit = (): void => {
      cleanup()
      void lazyUnmount(dir)
        .catch(() => {})
        .finally(() => reject(new Error(err.trim() || `iommufs mount ${dir} exited with status ${child.exitCode}`)))
    }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.stdout!.off('data', onData)
      child.off('close', onExit)
    }
    child.stdout!.on('data', onData)
    child.on('close', onExit)
  })
}

/** Whether `pid` names a live process (a zombie counts as dead). */
export async function isAlive(pid: number): Promise<boolean> {
  try {
    const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

/** Polls `cond` until it holds; rejects after `ms` (a safety net, never a measurement). */
export async function eventually(cond: () => Promise<boolean>, what: string, ms = EXIT_LIMIT_MS): Promise<void> {
  for (const end = Date.now() + ms; ; ) {
    if (await cond()) return
    if (Date.now() > end) throw new Error(`gave up waiting: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
