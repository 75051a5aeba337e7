/**
 * `iommufs run [--topology FILE] [--sanitize MODE] [--record FILE] [--keep] [--namespace] -- CMD ARGS...`:
 * one command for a test suite. Mounts a fresh machine in a temporary
 * directory, runs CMD under the ioctl shim (or in exec's namespace) with
 * IOMMUFS_MOUNT naming the mount, passes CMD's exit status through and
 * always unmounts.
 */
import { promises as fsp } from 'node:fs'
import { constants as osConstants, tmpdir } from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { detach } from '../fs/fuse-binding'
import { checkProgram, findProgram, spawnInNamespace, spawnUnderShim } from './exec'
import { startServer } from './server'
import { UsageError } from './usage'
import { Machine } from '../hw/machine'
import { SANITIZER_MODES, SanitizerMode } from '../hw/smmuv3/sanitizer'
import { Smmuv3 } from '../hw/smmuv3/smmuv3'
import { Vtd } from '../hw/vtd/vtd'

const SANITIZE_MODES = SANITIZER_MODES
type SanitizeMode = SanitizerMode
/** run's exit status when --sanitize strict found anything (CMD's own status is then only printed). */
export const SANITIZER_EXIT = 86

export const RUN_HELP = `usage: iommufs run [--topology FILE] [--sanitize off|report|strict] [--record FILE] [--keep] [--namespace] -- CMD [ARGS...]

Mounts a fresh machine in a new temporary directory, runs CMD there under the
ioctl shim (as iommufs exec does), then unmounts and removes the directory,
also when CMD crashes or is killed, or when run gets Ctrl-C (SIGINT), SIGTERM
or SIGHUP (passed on to CMD first). Exits with CMD's status (128 + N when CMD
died of signal N).

  --topology FILE   the machine (default: sysfs-schema/topologies/default.yaml)
  --sanitize MODE   the stale-TLB sanitizer on every SMMU (docs/dma.md): report
                    (default): findings are printed on stderr after CMD ends;
                    strict: a DMA with a finding stops, and any finding makes
                    the run exit ${SANITIZER_EXIT} after printing them; off: no checks
  --record FILE     write every request of every context, with its reply, as a
                    bash script that iommufs replay runs (docs/record-replay.md)
  --keep            after CMD ends, keep serving the mount until Ctrl-C/SIGTERM
  --namespace       no shim: run CMD (root only) as iommufs exec --namespace
                    does, where /dev/iommu and the sysfs paths are the mount's
                    and its real ioctl()s reach the model (static binaries too)

Environment given to CMD: IOMMUFS_MOUNT, the mount's absolute path (open
$IOMMUFS_MOUNT/dev/iommu, read $IOMMUFS_MOUNT/sys/...), and, without
--namespace, LD_PRELOAD with the shim, so /dev/iommu and
/dev/vfio/devices/vfio<N> reach the mount.
`


/** How long CMD may take to end after a passed-on signal before it is killed. */
const KILL_GRACE_MS = 5000

interface RunArgs {
  topology?: string
  sanitize: SanitizeMode
  record?: string
  keep: boolean
  namespace: boolean
  cmd: string
  args: string[]
}

function parseRunArgs(argv: string[]): RunArgs | 'help' {
  const dash = argv.indexOf('--')
  const own = dash < 0 ? argv : argv.slice(0, dash)
  let values: Record<string, string | boolean | undefined>
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({
      args: own,
      options: { topology: { type: 'string' }, sanitize: { type: 'string' }, record: { type: 'string' }, keep: { type: 'boolean' }, namespace: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }))
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0])
  }
  if (values.help) return 'help'
  const cmd = dash < 0 ? positionals : argv.slice(dash + 1)
  if (dash >= 0 && positionals.length) throw new UsageError(`${positionals[0]}: unexpected before -- (see iommufs run --help)`)
  if (!cmd.length) throw new UsageError('no CMD given (usage: iommufs run [options] -- CMD [ARGS...])')
  const sanitize = (values.sanitize ?? 'report') as SanitizeMode
  if (!SANITIZE_MODES.includes(sanitize)) throw new UsageError(`--sanitize ${sanitize}: expected one of ${SANITIZE_MODES.join(', ')}`)
  return {
    topology: values.topology as string | undefined,
    sanitize,
    record: values.record as string | undefined,
    keep: values.keep === true,
    namespace: values.namespace === true,
    cmd: cmd[0],
    args: cmd.slice(1),
  }
}

/** Catches the first of `signals` (they no longer kill this process) until `off()`. */
function nextSignal(signals: readonly NodeJS.Signals[]): { signal: Promise<NodeJS.Signals>; caught?: NodeJS.Signals; off(): void } {
  let handler: ((s: NodeJS.Signals) => void) | undefined
  const r: { signal: Promise<NodeJS.Signals>; caught?: NodeJS.Signals; off(): void } = {
    signal: new Promise<NodeJS.Signals>((resolve) => (handler = (s) => resolve((r.caught ??= s)))),
    off: () => signals.forEach((s) => process.off(s, handler!)),
  }
  for (const s of signals) process.on(s, handler!)
  return r
}

const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP']

/** Prints every SMMU's and VT-d unit's sanitizer findings on stderr (nothing when there are none); returns how many. */
function reportFindings(m: Machine): number {
  let total = 0
  for (const u of m.units) {
    if (!(u instanceof Smmuv3 || u instanceof Vtd) || !u.dma.sanitizer.count) continue
    total += u.dma.sanitizer.count
    process.stderr.write(`iommufs: ${u.name} ${u.dma.sanitizer.dumpText()}`)
  }
  return total
}

export async function runCommand(argv: string[]): Promise<number> {
  const opts = parseRunArgs(argv)
  if (opts === 'help') {
    process.stdout.write(RUN_HELP)
    return 0
  }
  const program = opts.namespace ? findProgram(opts.cmd) : checkProgram(opts.cmd)

  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-run-'))
  // signals that come while mounting are handled once CMD runs; until then they only end the wait
  const early = nextSignal(SIGNALS)
  let sig: ReturnType<typeof nextSignal> | undefined
  let server: Awaited<ReturnType<typeof startServer>> | undefined
  try {
    server = await startServer({ dir, topology: opts.topology, record: opts.record, sanitizer: opts.sanitize })
    // CMD's signals are caught before the early ones are let go: between the two
    // the default action would kill run (and leave the mount) if the machine is slow
    sig = nextSignal(SIGNALS)
    early.off()
    if (early.caught) return 128 + osConstants.signals[early.caught]
    const child = (opts.namespace ? spawnInNamespace : spawnUnderShim)(server.dir, program, opts.cmd, opts.args)
    const code = await Promise.race([
      child.exited,
      sig.signal.then(async (s) => {
        child.kill(s)
        const timer = setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS)
        const c = await child.exited
        clearTimeout(timer)
        return c
      }),
    ])
    // the same hand-over for --keep's wait
    const wait = opts.keep ? nextSignal(SIGNALS) : undefined
    sig.off()
    const found = reportFindings(server.machine)
    if (found && opts.sanitize === 'strict') {
      process.stderr.write(`iommufs: --sanitize strict: ${found} finding${found === 1 ? '' : 's'}; CMD exited with status ${code}, run exits ${SANITIZER_EXIT}\n`)
    }
    if (wait) {
      process.stderr.write(`iommufs: CMD exited with status ${code}; ${server.dir} stays mounted until Ctrl-C or SIGTERM\n`)
      await wait.signal
      wait.off()
    }
    return found && opts.sanitize === 'strict' ? SANITIZER_EXIT : code
  } finally {
    early.off()
    sig?.off()
    if (server) await server.stop().catch(() => detach(dir))
    await fsp.rmdir(dir).catch(() => {})
  }
}
