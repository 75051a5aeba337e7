/**
 * `iommufs exec [--mount DIR] [--namespace] -- PROGRAM ARGS...`: runs an
 * unmodified program so that its open("/dev/iommu") and ioctl() calls reach
 * the model on an iommufs mount: with the ioctl shim preloaded, or in a
 * private mount namespace where the real paths are the mount's.
 */
import { ChildProcess, spawn } from 'node:child_process'
import { accessSync, closeSync, constants as fsConstants, existsSync, openSync, readSync, statSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import * as path from 'node:path'
import { PACKAGE_ROOT } from '../util/paths'
import { iommufsMounts } from './mount-point'
import { UsageError } from './usage'

export const EXEC_HELP = `usage: iommufs exec [--mount DIR] [--namespace] -- PROGRAM [ARGS...]

Runs PROGRAM with the ioctl shim preloaded (LD_PRELOAD): its opens of
/dev/iommu and /dev/vfio/devices/vfio<N> go to the mount's nodes and its
ioctl() calls on them are answered by the model, as the kernel would answer
them. Other files and descriptors are untouched. Exits with PROGRAM's status.

  --mount DIR   the iommufs mount (default: the only one; among several, the
                one containing the current directory, else the only one
                below it; the choice is named on stderr)
  --namespace   no shim: run PROGRAM (root only) in a private mount namespace
                where /dev/iommu, /dev/vfio/devices/*, /sys/class/iommu,
                /sys/class/vfio-dev, /sys/bus/pci/devices,
                /sys/kernel/iommu_groups and /sys/kernel/debug are the
                mount's (the rest of /dev and /sys/class is the machine's). Its real ioctl() calls reach the model (libfuse3
                backend), so static binaries and raw syscalls work too;
                nothing outside it changes. The descriptors an ioctl returns
                (fault queues, vEVENTQs, the selftest's accesses and
                DMA-BUFs) are installed by a supervisor through seccomp, so
                PROGRAM runs as its child; it also checks each mmap() of
                /dev/iommu as the kernel does.

Environment given to PROGRAM: IOMMUFS_MOUNT (the mount, absolute) and,
without --namespace, LD_PRELOAD (the shim appended). IOMMUFS_SHIM_TRACE=1
makes the shim print each forwarded ioctl and the server's message on
stderr. Without --namespace a statically linked PROGRAM is refused:
LD_PRELOAD cannot reach it.
`

/** The shim `make` builds. */
export const SHIM_PATH = path.join(PACKAGE_ROOT, 'dist', 'ioctl-shim', 'libiommufs-shim.so')
/** --namespace's supervisor (ioctl-shim/ns-exec.c): installs the descriptors an ioctl returns, which FUSE cannot. */
export const NS_EXEC_PATH = path.join(PACKAGE_ROOT, 'dist', 'ioctl-shim', 'iommufs-ns-exec')

/** A refusal: one line on stderr, exit status 2. */
export class ExecError extends UsageError {}

interface ExecArgs {
  mount?: string
  namespace: boolean
  program: string
  args: string[]
}

function parseExecArgs(argv: string[]): ExecArgs | 'help' {
  let mount: string | undefined
  let namespace = false
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') return 'help'
    if (a === '--') {
      if (i + 1 >= argv.length) throw new ExecError('no PROGRAM after -- (see iommufs exec --help)')
      return { mount, namespace, program: argv[i + 1], args: argv.slice(i + 2) }
    }
    if (a === '--namespace') {
      namespace = true
      continue
    }
    if (a === '--mount' || a.startsWith('--mount=')) {
      const v = a === '--mount' ? argv[++i] : a.slice('--mount='.length)
      if (v === undefined || v === '') throw new ExecError('--mount needs a directory')
      mount = v
      continue
    }
    if (a.startsWith('-')) throw new ExecError(`unknown option ${a} (see iommufs exec --help)`)
    return { mount, namespace, program: a, args: argv.slice(i + 1) }
  }
  throw new ExecError('no PROGRAM given (usage: iommufs exec [--mount DIR] [--namespace] -- PROGRAM [ARGS...])')
}

/** PROGRAM as execvp would find it: a name with a slash is a path, else the first executable in PATH. */
export function resolveProgram(program: string, envPath = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'): string | undefined {
  const executable = (p: string): boolean => {
    try {
      accessSync(p, fsConstants.X_OK)
      return statSync(p).isFile()
    } catch {
      return false
    }
  }
  if (program.includes('/')) return executable(program) ? path.resolve(program) : undefined
  for (const dir of envPath.split(':')) {
    const p = path.join(dir || '.', program)
    if (executable(p)) return path.resolve(p)
  }
  return undefined
}

const PT_INTERP = 3

/**
 * 'static' for an ELF file without a PT_INTERP program header (no dynamic
 * loader, so LD_PRELOAD is never read), 'dynamic' for one with it, 'other'
 * for anything else (a script: its interpreter is what runs).
 */
export function elfLinkage(file: string): 'static' | 'dynamic' | 'other' {
  const fd = openSync(file, 'r')
  try {
    const read = (pos: number, len: number): Buffer => {
      const b = Buffer.alloc(len)
      const n = readSync(fd, b, 0, len, pos)
      return b.subarray(0, n)
    }
    const ident = read(0, 64)
    if (ident.length < 52 || ident.readUInt32BE(0) !== 0x7f454c46) return 'other'
    const is64 = ident[4] === 2
    const le = ident[5] !== 2
    const u16 = (b: Buffer, o: number): number => (le ? b.readUInt16LE(o) : b.readUInt16BE(o))
    const u32 = (b: Buffer, o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o))
    const u64 = (b: Buffer, o: number): number => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o))
    const phoff = is64 ? u64(ident, 32) : u32(ident, 28)
    const phentsize = u16(ident, is64 ? 54 : 42)
    const phnum = u16(ident, is64 ? 56 : 44)
    if (!phentsize || !phnum) return 'static'
    const ph = read(phoff, phentsize * phnum)
    for (let i = 0; i + 4 <= ph.length && i < phnum * phentsize; i += phentsize) if (u32(ph, i) === PT_INTERP) return 'dynamic'
    return 'static'
  } finally {
    closeSync(fd)
  }
}

/**
 * Runs inside `unshare --mount --propagation private` as `sh -c SCRIPT
 * iommufs-ns MOUNT SUPERVISOR PROGRAM ARGS...`, and ends as the supervisor
 * running PROGRAM. The machine's /dev lacks /dev/iommu and
 * /dev/vfio, and files made there would show outside, so a new /dev is built
 * on a tmpfs: the old one's nodes and links copied (cp -a makes device nodes),
 * its directories bound, the mount's nodes bound in; then it is moved over
 * /dev. The sysfs directories exist on every machine and are bound over
 * (debugfs too: the program reads the model's, as the shim redirects it);
 * /sys/class is built the same way as /dev, since the machine may have no
 * vfio-dev class to bind over.
 */
const NAMESPACE_SCRIPT = `set -e
M=$1; S=$2; shift 2
stage=$(mktemp -d /run/iommufs-dev.XXXXXX)
mount -t tmpfs -o mode=755 iommufs-dev "$stage"
for e in /dev/* /dev/.[!.]*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  if [ -d "$e" ] && [ ! -L "$e" ]; then
    mkdir "$stage/\${e#/dev/}"
    mount --rbind "$e" "$stage/\${e#/dev/}"
  else
    cp -a "$e" "$stage/"
  fi
done
: > "$stage/iommu"
mount --bind "$M/dev/iommu" "$stage/iommu"
mkdir -p "$stage/vfio/devices"
for d in "$M"/dev/vfio/devices/*; do
  : > "$stage/vfio/devices/\${d##*/}"
  mount --bind "$d" "$stage/vfio/devices/\${d##*/}"
done
mount --move "$stage" /dev
rmdir "$stage"
for s in bus/pci/devices kernel/iommu_groups kernel/debug; do
  mount --bind "$M/sys/$s" "/sys/$s"
done
classes=$(mktemp -d /run/iommufs-class.XXXXXX)
mount -t tmpfs -o mode=755 iommufs-class "$classes"
for e in /sys/class/*; do
  [ -e "$e" ] || continue
  mkdir "$classes/\${e##*/}"
  mount --rbind "$e" "$classes/\${e##*/}"
done
for c in iommu vfio-dev; do
  mkdir -p "$classes/$c"
  mount --bind "$M/sys/class/$c" "$classes/$c"
done
mount --move "$classes" /sys/class
rmdir "$classes"
exec "$S" "$M" "$@"
`

/** Whether `dir` is `root` or inside it. */
function within(dir: string, root: string): boolean {
  const rel = path.relative(root, dir)
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))
}

/**
 * The mount to use without --mount, and why: the only one there is; else the
 * one the current directory is in (the innermost); else the only one below
 * the current directory; else the reason there is none.
 */
export function chooseMount(mounts: readonly string[], cwd = process.cwd()): { mount: string; why: string } | { error: string } {
  if (mounts.length === 1) return { mount: mounts[0], why: 'the only iommufs mount' }
  if (!mounts.length) return { error: 'no iommufs mount found in /proc/self/mounts (mount one, or name it with --mount DIR)' }
  const around = mounts.filter((m) => within(cwd, m)).sort((a, b) => b.length - a.length)
  if (around.length) return { mount: around[0], why: 'the current directory is in it' }
  const below = mounts.filter((m) => within(m, cwd))
  if (below.length === 1) return { mount: below[0], why: 'the only one under the current directory' }
  return { error: `${mounts.length} iommufs mounts (${mounts.join(', ')}), ${below.length ? `${below.length} of them` : 'none'} under the current directory: name one with --mount DIR` }
}

async function defaultMount(): Promise<string> {
  const chosen = chooseMount(await iommufsMounts())
  if ('error' in chosen) throw new ExecError(chosen.error)
  process.stderr.write(`iommufs: using ${chosen.mount} (${chosen.why})\n`)
  return chosen.mount
}

/** PROGRAM resolved as execvp would, or a refusal naming it. */
export function findProgram(name: string): string {
  const program = resolveProgram(name)
  if (!program) throw new ExecError(`${name}: no such executable${name.includes('/') ? '' : ' in PATH'}`)
  return program
}

/** PROGRAM resolved as execvp would, and checked for the shim: the shim is built and can reach it. Returns its path. */
export function checkProgram(name: string): string {
  const program = findProgram(name)
  if (!existsSync(SHIM_PATH)) throw new ExecError(`the ioctl shim is not built (${SHIM_PATH}): run make shim`)
  if (elfLinkage(program) === 'static') {
    throw new ExecError(`${name}: statically linked (no ELF interpreter): LD_PRELOAD cannot reach it, so the ioctl shim cannot either (use --namespace)`)
  }
  return program
}

/** A started program: `exited` resolves with its status (128 + signal when killed). */
export interface ShimChild {
  readonly pid: number
  kill(sig: NodeJS.Signals): void
  readonly exited: Promise<number>
}

function watch(child: ChildProcess, argv0: string): ShimChild {
  const exited = new Promise<number>((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`iommufs: ${argv0}: ${e.message}\n`)
      resolve(127)
    })
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? osConstants.signals[signal] : 0)))
  })
  return { pid: child.pid ?? -1, kill: (sig) => void child.kill(sig), exited }
}

/** Starts `program` (a path from checkProgram) with the shim preloaded, reaching `mount`. */
export function spawnUnderShim(mount: string, program: string, argv0: string, args: readonly string[]): ShimChild {
  const preload = process.env.LD_PRELOAD ? `${process.env.LD_PRELOAD}:${SHIM_PATH}` : SHIM_PATH
  return watch(spawn(program, args, { argv0, stdio: 'inherit', env: { ...process.env, LD_PRELOAD: preload, IOMMUFS_MOUNT: mount } }), argv0)
}

/**
 * Starts `program` (a path from findProgram) in a private mount namespace
 * where the real device and sysfs paths are `mount`'s, under the supervisor
 * that installs the descriptors its ioctls return (root only).
 */
export function spawnInNamespace(mount: string, program: string, argv0: string, args: readonly string[]): ShimChild {
  if (process.getuid?.() !== 0) throw new ExecError('--namespace needs root (it makes a mount namespace and bind mounts)')
  if (!existsSync(NS_EXEC_PATH)) throw new ExecError(`the namespace supervisor is not built (${NS_EXEC_PATH}): run make supervisor`)
  const ns = spawn('unshare', ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', NAMESPACE_SCRIPT, 'iommufs-ns', mount, NS_EXEC_PATH, program, ...args], {
    stdio: 'inherit',
    env: { ...process.env, IOMMUFS_MOUNT: mount },
  })
  return watch(ns, argv0)
}

async function run(argv: string[]): Promise<number> {
  const parsed = parseExecArgs(argv)
  if (parsed === 'help') {
    process.stdout.write(EXEC_HELP)
    return 0
  }
  const mount = parsed.mount !== undefined ? path.resolve(parsed.mount) : await defaultMount()
  if (!(await iommufsMounts()).includes(mount)) throw new ExecError(`${mount} is not an iommufs mount`)
  const child = parsed.namespace
    ? spawnInNamespace(mount, findProgram(parsed.program), parsed.program, parsed.args)
    : spawnUnderShim(mount, checkProgram(parsed.program), parsed.program, parsed.args)
  // like a shell: the program gets the terminal's signals; we report how it ended
  const forward = (sig: NodeJS.Signals): void => child.kill(sig)
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT']
  for (const s of signals) process.on(s, forward)
  try {
    return await child.exited
  } finally {
    for (const s of signals) process.off(s, forward)
  }
}

/** The command: its own errors are one line and exit status 2. */
export async function execCommand(argv: string[]): Promise<number> {
  try {
    return await run(argv)
  } catch (e) {
    if (!(e instanceof ExecError)) throw e
    process.stderr.write(`iommufs: ${e.message}\n`)
    return 2
  }
}
