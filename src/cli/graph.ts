/**
 * `iommufs graph`: renders a context's object graph (its graph.dot) or a
 * topology to SVG with Graphviz compiled to WebAssembly (@viz-js/viz), so no
 * system Graphviz is needed.
 */
import { promises as fsp } from 'node:fs'
import { createRequire } from 'node:module'
import * as path from 'node:path'
import { parseArgs } from 'node:util'
import { Machine } from '../hw/machine'
import { loadTopology } from '../topology/topology'
import { DEFAULT_TOPOLOGY } from '../util/paths'
import { iommufsMounts } from './mount-point'
import { UsageError } from './usage'

export const GRAPH_HELP = `usage: iommufs graph [--mount DIR] [--context N] [-o FILE.svg]
       iommufs graph --topology [FILE] [-o FILE.svg]
       iommufs graph FILE.dot [-o FILE.svg]

Renders to SVG (stdout, or -o FILE) without a system Graphviz:
  --mount DIR, --context N   the object graph of context N on the mount (its
                             graph.dot): the objects with their IDs, their
                             references, VMIDs, StreamIDs and vSID -> pSID maps,
                             and the physical IOMMUs. Default: the only mount,
                             the lowest live context.
  --topology [FILE]          the machine: each IOMMU with its devices and groups
                             (default: sysfs-schema/topologies/default.yaml)
  FILE.dot                   any Graphviz file
`

/** A topology as Graphviz: one cluster per IOMMU, a box per device with its group and VFIO node. */
export function topologyDot(m: Machine): string {
  const lines = ['digraph topology {', '  fontname="Helvetica";', '  node [shape=box, fontname="Helvetica", style=filled, fillcolor="#dbe9f6"];']
  m.units.forEach((u, i) => {
    const features = u.supportsNesting ? 'nesting' : 'no nesting'
    lines.push(`  subgraph cluster_${i} {`, `    label="${u.name}\\n${u.kind}\\nbase 0x${u.base.toString(16)}, ${features}"; style=rounded; bgcolor="#f4f4f4"; margin=16;`)
    for (const d of u.devices) {
      const id = u.kind === 'arm-smmu-v3' ? `StreamID 0x${d.streamId.toString(16)}` : `RID 0x${d.streamId.toString(16).padStart(4, '0')}`
      lines.push(`    "${d.bdf}" [label="${d.bdf}\\n${id}\\ngroup ${d.group.id}, vfio${d.vfioIndex}"];`)
    }
    lines.push('  }')
  })
  lines.push('}')
  return `${lines.join('\n')}\n`
}

/** The part of @viz-js/viz used here (its own typings need the DOM library, which a Node program does not load). */
interface Viz {
  render(dot: string, opts: { format: 'svg' }): { status: 'success' | 'failure'; output: string; errors: { message: string }[] }
}

/** SVG of a Graphviz text. */
export async function renderSvg(dot: string): Promise<string> {
  const { instance } = createRequire(__filename)('@viz-js/viz') as { instance(): Promise<Viz> }
  const viz = await instance()
  const r = viz.render(dot, { format: 'svg' })
  if (r.status !== 'success') throw new UsageError(`Graphviz: ${r.errors.map((e) => e.message).join('; ')}`)
  return r.output
}

async function contextDot(mountArg: string | undefined, context: string | undefined): Promise<string> {
  const mounts = await iommufsMounts()
  let mount: string
  if (mountArg !== undefined) {
    mount = path.resolve(mountArg)
    if (!mounts.includes(mount)) throw new UsageError(`${mount} is not an iommufs mount`)
  } else if (mounts.length === 1) mount = mounts[0]
  else throw new UsageError(`${mounts.length} iommufs mounts: name one with --mount DIR`)
  const debug = path.join(mount, 'sys/kernel/debug/iommufd')
  let ctx = context
  if (ctx === undefined) {
    const live = (await fsp.readdir(debug)).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b)
    if (!live.length) throw new UsageError(`no live context on ${mount} (open dev/iommu first)`)
    ctx = String(live[0])
  }
  if (!/^\d+$/.test(ctx)) throw new UsageError(`--context ${ctx}: expected a context ID`)
  try {
    return await fsp.readFile(path.join(debug, ctx, 'graph.dot'), 'utf8')
  } catch {
    throw new UsageError(`no context ${ctx} on ${mount}`)
  }
}

export async function graphCommand(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>
  let positionals: string[]
  // --topology takes an optional FILE: a following word that is not an option
  const args = [...argv]
  const t = args.indexOf('--topology')
  const topology = t >= 0 ? (args[t + 1] !== undefined && !args[t + 1].startsWith('-') ? args.splice(t, 2)[1] : (args.splice(t, 1), DEFAULT_TOPOLOGY)) : undefined
  try {
    ;({ values, positionals } = parseArgs({
      args,
      options: { mount: { type: 'string' }, context: { type: 'string' }, output: { type: 'string', short: 'o' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    }))
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0])
  }
  if (values.help) {
    process.stdout.write(GRAPH_HELP)
    return 0
  }
  if (positionals.length > 1) throw new UsageError(`expected at most 1 argument, got ${positionals.length} (see iommufs graph --help)`)
  const sources = [topology !== undefined, positionals.length === 1, values.mount !== undefined || values.context !== undefined].filter(Boolean).length
  if (sources > 1) throw new UsageError('give one of --mount/--context, --topology or a .dot file')
  let dot: string
  if (topology !== undefined) dot = topologyDot(loadTopology(topology))
  else if (positionals.length) {
    try {
      dot = await fsp.readFile(positionals[0], 'utf8')
    } catch (e) {
      throw new UsageError(`${positionals[0]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  } else dot = await contextDot(values.mount as string | undefined, values.context as string | undefined)
  const svg = await renderSvg(dot)
  if (values.output) await fsp.writeFile(values.output as string, svg)
  else process.stdout.write(svg)
  return 0
}
