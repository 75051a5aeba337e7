#!/usr/bin/env node
import { spawn } from 'node:child_process'
import { promises as fsp, readFileSync } from 'node:fs'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { BACKENDS, Backend, detach } from '../fs/fuse-binding'
import { SUBJECT_DIRS } from '../fs/sysfs-tree'
import { abiDocument, loadSchema } from '../topology/attributes'
import { SANITIZER_MODES, SanitizerMode } from '../hw/smmuv3/sanitizer'
import { topologyJsonSchema } from '../topology/json-schema'
import { describeMachine, loadTopology } from '../topology/topology'
import { DataError } from '../util/data-file'
import { PACKAGE_ROOT } from '../util/paths'
import { EXEC_HELP, execCommand } from './exec'
import { GRAPH_HELP, graphCommand } from './graph'
import { REPLAY_HELP, replayCommand } from './replay'
import { RUN_HELP, runCommand } from './run'
import { HEADER_HELP, headerCommand } from './header'
import { iommufsMounts } from './mount-point'
import { startServer } from './server'
import { UsageError } from './usage'

const VERSION: string = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version


const HELP: Record<string, string> = {
  main: `usage: iommufs <command> [options]

Mounts a FUSE filesystem modelling ARM SMMUv3 and Intel VT-d IOMMUs: sysfs
feature files, an iommufd-like /dev/iommu node and a debug tree.

commands:
  mount DIR [--topology FILE] [--daemon] [--force] [--log FILE] [--backend NAME] [--sanitizer MODE] [--record FILE] [-v]
  unmount DIR
  topology check FILE | topology schema
  schema --abi
  exec [--mount DIR] -- PROGRAM [ARGS...]
  run [--topology FILE] [--sanitize off|report|strict] [--record FILE] [--keep] -- CMD [ARGS...]
  replay FILE [--mount DIR]
  graph [--mount DIR] [--context N] | --topology [FILE] | FILE.dot  [-o FILE.svg]
  header

'iommufs <command> --help' describes a command; 'iommufs --version' prints
the version. Bad arguments exit 2.
`,
  mount: `usage: iommufs mount DIR [--topology FILE] [--daemon] [--force] [--log FILE] [--backend NAME] [--sanitizer MODE] [--record FILE] [-v]

Mounts the model on DIR and serves it in the foreground until Ctrl-C
(SIGINT) or SIGTERM, which unmount and exit 0. A stale mount left by a
killed server is recovered first.

  --topology FILE  machine description (default: sysfs-schema/topologies/default.yaml)
  --daemon         return once the mount answers; prints the server's pid
  --force          mount even if DIR has content
  --log FILE       append the trace (handler bugs, requests) to FILE
  --backend NAME   libfuse3 (default) or fuse-native (the fallback for a
                   machine without libfuse3: no kernel caching, poll,
                   interrupts, real ioctl() or per-caller replies)
  --sanitizer MODE the stale-TLB sanitizer on every SMMU and VT-d unit: off, report (default)
                   or strict; changeable later in sys/kernel/debug/iommufd/iommu/<unit>/sanitizer
  --record FILE    write every request and reply as a replayable script
                   (iommufs replay FILE; docs/record-replay.md)
  -v, --verbose    print every trace line (requests, replies) on stderr; without
                   it the foreground server prints only handler bugs
`,
  unmount: `usage: iommufs unmount DIR

Stops the server of the iommufs mount on DIR and unmounts it (or detaches a
stale mount whose server is gone).
`,
  topology: `usage: iommufs topology check FILE
       iommufs topology schema

check: validates a topology file and prints the machine it describes. A
mistake is reported with the file, the key and what was expected; exit
status 1. schema: prints the JSON Schema of topology files, generated from
the register schema (also in sysfs-schema/topology.schema.json), for editors.
The format: docs/topology.md.
`,
  schema: `usage: iommufs schema --abi

Prints the documentation of every attribute in sysfs-schema/, in the style of
the kernel's Documentation/ABI.
`,
  exec: EXEC_HELP,
  run: RUN_HELP,
  replay: REPLAY_HELP,
  graph: GRAPH_HELP,
  header: HEADER_HELP,
}

interface Parsed {
  values: Record<string, string | boolean | undefined>
  positionals: string[]
}

function parse(args: string[], options: Record<string, { type: 'string' | 'boolean'; short?: string }>, positionals: number, help: string): Parsed {
  let parsed: Parsed
  try {
    parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true })
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0])
  }
  if (parsed.values.help) {
    process.stdout.write(HELP[help])
    process.exit(0)
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument${positionals === 1 ? '' : 's'}, got ${parsed.positionals.length} (see iommufs ${help} --help)`)
  }
  return parsed
}

async function mountCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(
    args,
    { topology: { type: 'string' }, daemon: { type: 'boolean' }, force: { type: 'boolean' }, log: { type: 'string' }, backend: { type: 'string' }, sanitizer: { type: 'string' }, record: { type: 'string' }, verbose: { type: 'boolean', short: 'v' } },
    1,
    'mount',
  )
  const dir = positionals[0]
  const backend = values.backend as string | undefined
  if (backend !== undefined && !(BACKENDS as readonly string[]).includes(backend)) {
    throw new UsageError(`--backend ${backend}: expected one of ${BACKENDS.join(', ')}`)
  }
  const sanitizer = values.sanitizer as string | undefined
  if (sanitizer !== undefined && !(SANITIZER_MODES as readonly string[]).includes(sanitizer)) throw new UsageError(`--sanitizer ${sanitizer}: expected ${SANITIZER_MODES.join(', ')}`)
  if (values.daemon) return daemonize(args.filter((a) => a !== '--daemon'))
  const quietAfterReady = process.env.IOMMUFS_READY_LINE === '1'

  const server = await startServer({
    dir,
    topology: values.topology as string | undefined,
    force: values.force === true,
    log: values.log as string | undefined,
    sanitizer: sanitizer as SanitizerMode | undefined,
    record: values.record as string | undefined,
    // handler bugs always reach stderr; requests and replies only with -v (a session makes thousands)
    echo: quietAfterReady ? undefined : (line, tag) => (values.verbose || tag === 'bug') && process.stderr.write(`${line}\n`),
    backend: backend as Backend | undefined,
    // unmounted from outside: nothing left to serve
    onEnded: () => process.exit(0),
  })
  let exiting = false
  const shutdown = (why: string): void => {
    if (exiting) return
    exiting = true
    if (!quietAfterReady) process.stderr.write(`iommufs: ${why}, unmounting ${server.dir}\n`)
    // leave within a second even if the unmount hangs
    setTimeout(() => process.exit(0), 900).unref()
    server.stop().then(
      () => process.exit(0),
      () => detach(server.dir).finally(() => process.exit(0)),
    )
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  // someone ran fusermount -u or umount on us: nothing left to serve
  setInterval(() => {
    iommufsMounts().then((m) => {
      if (!m.includes(server.dir) && !exiting) {
        exiting = true
        process.exit(0)
      }
    }, () => {})
  }, 1000)

  const m = server.machine
  if (quietAfterReady) {
    process.stdout.write(`READY ${process.pid}\n`)
    process.stdout.on('error', () => {})
    process.stderr.on('error', () => {})
  } else {
    for (const n of server.notes) process.stderr.write(`iommufs: ${n}\n`)
    process.stdout.write(`iommufs: mounted ${server.dir} (${m.units.length} IOMMUs, ${m.devices.length} devices); Ctrl-C to unmount\n`)
  }
  return new Promise<number>(() => {}) // serve until a signal
}

/** Runs the mount in a detached child and returns once it answers. */
function daemonize(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [__filename, 'mount', ...args], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, IOMMUFS_READY_LINE: '1' },
    })
    let out = ''
    let err = ''
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /^READY (\d+)\n/.exec(out)
      if (!m) return
      process.stdout.write(`${m[1]}\n`)
      child.stdout!.destroy()
      child.stderr!.destroy()
      child.unref()
      resolve(0)
    })
    child.on('exit', (code) => {
      process.stderr.write(err || `iommufs: server exited with status ${code}\n`)
      resolve(code || 1)
    })
  })
}

async function unmountCommand(args: string[]): Promise<number> {
  const dir = path.resolve(parse(args, {}, 1, 'unmount').positionals[0])
  if (!(await iommufsMounts()).includes(dir)) throw new UsageError(`${dir} is not an iommufs mount`)
  let pid: number | undefined
  try {
    const info = await fsp.readFile(path.join(dir, 'sys/kernel/debug/iommufd/server'), 'utf8')
    pid = Number(/^pid (\d+)$/m.exec(info)?.[1])
  } catch {
    pid = undefined // stale: nobody serves it
  }
  if (pid) {
    try {
      process.kill(pid, 'SIGTERM')
    } catch {
      pid = undefined
    }
  }
  for (let i = 0; pid && i < 60; i++) {
    if (!(await iommufsMounts()).includes(dir)) return 0
    await new Promise((r) => setTimeout(r, 50))
  }
  await detach(dir)
  return 0
}

async function topologyCommand(args: string[]): Promise<number> {
  if (args[0] === 'schema') {
    parse(args.slice(1), {}, 0, 'topology')
    process.stdout.write(`${JSON.stringify(topologyJsonSchema(), null, 2)}\n`)
    return 0
  }
  const { positionals } = parse(args, {}, 2, 'topology')
  if (positionals[0] !== 'check') throw new UsageError(`unknown topology command "${positionals[0]}" (expected: check or schema)`)
  const file = positionals[1]
  const machine = loadTopology(file)
  loadSchema()
  process.stdout.write(`${file}: ${describeMachine(machine)}`)
  return 0
}

async function schemaCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { abi: { type: 'boolean' } }, 0, 'schema')
  if (!values.abi) throw new UsageError('nothing to print (expected --abi)')
  process.stdout.write(abiDocument(loadSchema(), (s) => SUBJECT_DIRS[s], 'November 2026', VERSION))
  return 0
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  mount: mountCommand,
  unmount: unmountCommand,
  topology: topologyCommand,
  schema: schemaCommand,
  exec: execCommand,
  run: runCommand,
  replay: replayCommand,
  graph: graphCommand,
  header: headerCommand,
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === undefined) throw new UsageError('missing command (see iommufs --help)')
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP.main)
    return 0
  }
  if (cmd === '--version') {
    process.stdout.write(`iommufs ${VERSION}\n`)
    return 0
  }
  const run = COMMANDS[cmd]
  if (!run) throw new UsageError(`unknown command "${cmd}" (see iommufs --help)`)
  return run(rest)
}

main(process.argv.slice(2)).then(
  // a pipe takes stdout asynchronously: exit once what was written has gone (a 64 KiB schema would be cut)
  (code) => process.stdout.write('', () => process.exit(code)),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`iommufs: ${e.message}\n`)
      process.exit(2)
    }
    process.stderr.write(`iommufs: ${e instanceof DataError || e instanceof Error ? e.message : String(e)}\n`)
    process.exit(1)
  },
)
