/**
 * `iommufs run [--topology FILE] [--sanitize MODE] [--record FILE] [--keep] -- CMD ARGS...`:
 * one command for a test suite. Mounts a fresh machine in a temporary
 * directory, runs CMD under the ioctl shim with IOMMUFS_MOUNT naming the
 * mount, passes CMD's exit status through and always unmounts.
 */
import { promises as fsp } from 'node:fs'
import { constants as osConstants, tmpdir } from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { detach } from '../fs/fuse-binding'
import { checkProgram, spawnUnderShim } from './exec'
import { startServer } from './server'
import { UsageError } from './usage'

export const RUN_HELP = `usage: iommufs run [--topology FILE] [--sanitize off|report|strict] [--record FILE] [--keep] -- CMD [ARGS...]

Mounts a fresh machine in a new temporary directory, runs CMD there under the
ioctl shim (as iommufs exec does), then unmounts and removes the directory,
also when CMD crashes or is killed, or when run gets Ctrl-C (SIGINT), SIGTERM
or SIGHUP (passed on to CMD first). Exits with CMD's status (128 + N when CMD
died of signal N).

  --topology FILE   the machine (default: sysfs-schema/topologies/default.yaml)
  --sanitize MODE   off (default), report or strict: what DMA sanitizer findings
                    do to the run. This build has no DMA sanitizer yet: the mode
                    is accepted and written into the recording, and nothing is
                    checked (a note on stderr says so when MODE is not off).
  --record FILE     write every request of every context, with its reply, as a
                    bash script that iommufs replay runs (docs/record-replay.md)
  --keep            after CMD ends, keep serving the mount until Ctrl-C/SIGTERM

Environment given to CMD: IOMMUFS_MOUNT, the mount's absolute path (open
$IOMMUFS_MOUNT/dev/iommu, read $IOMMUFS_MOUNT/sys/...), and LD_PRELOAD with the
shim, so /dev/iommu and /dev/vfio/devices/vfio<N> reach the mount.
`

export const SANITIZE_MODES = ['off', 'report', 'strict'] as const
export type SanitizeMode = (typeof SANITIZE_MODES)[number]

/** How long CMD may take to end after a passed-on signal before it is killed. */
const KILL_GRACE_MS = 5000

interface RunArgs {
  topology?: string
  sanitize: SanitizeMode
  record?: string
  keep: boolean
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
      options: { topology: { type: 'string' }, sanitize: { type: 'string' }, record: { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
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
  const sanitize = (values.sanitize ?? 'off') as SanitizeMode
  if (!SANITIZE_MODES.includes(sanitize)) throw new UsageError(`--sanitize ${sanitize}: expected one of ${SANITIZE_MODES.join(', ')}`)
  return {
    topology: values.topology as string | undefined,
    sanitize,
    record: values.record as string | undefined,
    keep: values.keep === true,
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

export async function runCommand(argv: string[]): Promise<number> {
  const opts = parseRunArgs(argv)
  if (opts === 'help') {
    process.stdout.write(RUN_HELP)
    return 0
  }
  const program = checkProgram(opts.cmd)
  if (opts.sanitize !== 'off') process.stderr.write(`iommufs: --sanitize ${opts.sanitize}: this build has no DMA sanitizer; nothing is checked\n`)

  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-run-'))
  // signals that come while mounting are handled once CMD runs; until then they only end the wait
  const early = nextSignal(SIGNALS)
  let server: Awaited<ReturnType<typeof startServer>> | undefined
  try {
    server = await startServer({ dir, topology: opts.topology, record: opts.record, sanitizer: opts.sanitize })
    early.off()
    if (early.caught) return 128 + osConstants.signals[early.caught]
    const child = spawnUnderShim(server.dir, program, opts.cmd, opts.args)
    const sig = nextSignal(SIGNALS)
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
    sig.off()
    if (opts.keep) {
      const wait = nextSignal(SIGNALS)
      process.stderr.write(`iommufs: CMD exited with status ${code}; ${server.dir} stays mounted until Ctrl-C or SIGTERM\n`)
      await wait.signal
      wait.off()
    }
    return code
  } finally {
    early.off()
    if (server) await server.stop().catch(() => detach(dir))
    await fsp.rmdir(dir).catch(() => {})
  }
}
