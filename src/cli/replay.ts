/**
 * `iommufs replay FILE [--mount DIR]`: checks a recording, then runs it with
 * bash against a fresh mount of the recorded topology (or against DIR).
 */
import { spawn } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import { constants as osConstants, tmpdir } from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { detach } from '../fs/fuse-binding'
import { parseRecording } from '../uapi/record'
import { iommufsMounts } from './mount-point'
import { startServer } from './server'
import { UsageError } from './usage'

export const REPLAY_HELP = `usage: iommufs replay FILE [--mount DIR]

Replays a recording (iommufs run/mount --record FILE): opens the nodes and
sends the requests in the recorded order, and compares every reply with the
recorded one. The first reply that differs is printed (line, request,
expected reply, actual reply) and the replay exits 1; exit 0 when all match.

Without --mount, the recording's topology is mounted fresh in a temporary
directory and unmounted afterwards. With --mount DIR, DIR must be a mount
nobody has used since it started (object and context IDs are compared too).
A recording that is not well formed is refused with its line number (exit 2)
before anything runs.
`

export async function replayCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>
  let positionals: string[]
  try {
    ;({ values, positionals } = parseArgs({ args: argv, options: { mount: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true }))
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0])
  }
  if (values.help) {
    process.stdout.write(REPLAY_HELP)
    return 0
  }
  if (positionals.length !== 1) throw new UsageError(`expected 1 argument, got ${positionals.length} (see iommufs replay --help)`)
  const file = path.resolve(positionals[0])
  let text: string
  try {
    text = await fsp.readFile(file, 'utf8')
  } catch (e) {
    throw new UsageError(`${positionals[0]}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`)
  }
  let rec
  try {
    rec = parseRecording(positionals[0], text)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }

  if (values.mount !== undefined) {
    const mount = path.resolve(values.mount as string)
    if (!(await iommufsMounts()).includes(mount)) throw new UsageError(`${mount} is not an iommufs mount`)
    return runScript(file, mount)
  }
  const dir = await fsp.mkdtemp(path.join(tmpdir(), 'iommufs-replay-'))
  let server: Awaited<ReturnType<typeof startServer>> | undefined
  try {
    server = await startServer({ dir, topology: rec.meta.get('topology') })
    return await runScript(file, server.dir)
  } finally {
    if (server) await server.stop().catch(() => detach(dir))
    await fsp.rmdir(dir).catch(() => {})
  }
}

/** bash FILE MOUNT, asynchronously (this process may be serving MOUNT); its status. */
function runScript(file: string, mount: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('bash', [file, mount], { stdio: 'inherit' })
    child.on('error', (e) => {
      process.stderr.write(`iommufs: bash: ${e.message}\n`)
      resolve(127)
    })
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? osConstants.signals[signal] : 0)))
  })
}
