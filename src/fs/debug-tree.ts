import { IommufdContext } from '../iommufd/context'
import { IommufdObject, MmioFile } from '../iommufd/objects'
import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { TraceLog } from '../util/trace'
import { World } from '../iommufd/world'
import { dmaPort } from './dma-file'
import { ridDomain, setRidDomain } from '../iommufd/rid-domain'
import { AttributeFile, DirNode, FileNode, FsNode, LiveDir, OpenFile, StaticDir, SYSFS_SIZE } from './nodes'
import { TestDmabuf, dmabufClosed, dmabufs } from '../iommufd/dmabuf'
import { statusWithCharges } from '../iommufd/pages'
import { readStatus } from '../util/proc-status'

/** key: value lines. */
function lines(pairs: [string, string][]): string {
  return pairs.map(([k, v]) => `${k}: ${v}\n`).join('')
}

/** A Graphviz string: quotes and backslashes escaped, `\n` kept as a line break. */
function dotText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** What a node of graph.dot shows under "id: type", and its fill colour, by object type. */
const GRAPH_DETAIL: Record<string, { keys: [string, (v: string) => string][]; fill: string }> = {
  device: { keys: [['pci', (v) => v], ['stream_id', (v) => `StreamID ${v}`], ['rid', (v) => `RID ${v}`]], fill: '#dbe9f6' },
  ioas: { keys: [['mappings', (v) => `${v} mapping${v === '1' ? '' : 's'}`]], fill: '#e8f3e0' },
  hwpt_paging: { keys: [['flags', (v) => (v === '0' ? '' : v)]], fill: '#fdf1d6' },
  hwpt_nested: { keys: [['ste.config', (v) => `STE ${v}`], ['pasid_entry', (v) => v]], fill: '#fde2cf' },
  viommu: { keys: [['vmid', (v) => `VMID ${v}`], ['vsid_map', (v) => (v === '-' ? '' : v.split(/[\s,]+/).map((m) => m.replace(/^(\S+)->(\S+)$/, 'vSID $1 -> pSID $2')).join('\n'))]], fill: '#eadcf3' },
  vdevice: { keys: [['virt_id', (v) => `vSID ${v}`], ['phys_id', (v) => `-> pSID ${v}`]], fill: '#f3dcea' },
}

/** Objects, their references and the physical IOMMUs they sit on, for Graphviz (`iommufs graph` renders it). */
function graph(ctx: IommufdContext): string {
  const nodes: string[] = []
  const edges: string[] = []
  const iommus = new Set<string>()
  for (const o of ctx.objects.objects()) {
    const info = new Map(o.describe())
    const style = GRAPH_DETAIL[o.type]
    const detail = (style?.keys ?? []).map(([k, f]) => (info.has(k) ? f(info.get(k)!) : '')).filter(Boolean)
    const fill = style ? `, style=filled, fillcolor="${style.fill}"` : ''
    nodes.push(`  o${o.id} [label="${dotText([`${o.id}: ${o.type}`, ...detail].join('\n'))}"${fill}];`)
    const ref = (key: string, label: string): void => {
      const v = info.get(key)
      const id = v && /^\d+/.exec(v)?.[0]
      if (id) edges.push(`  o${o.id} -> o${id} [label="${label}"];`)
    }
    ref('ioas', 'ioas')
    ref('parent', 'parent')
    ref('viommu', 'viommu')
    ref('device', 'device')
    ref('attached', 'attached')
    const unit = (o.type === 'device' || o.type === 'viommu') && info.get('iommu')
    if (unit) {
      iommus.add(unit)
      edges.push(`  o${o.id} -> "${dotText(unit)}" [style=dashed, label="${o.type === 'device' ? 'behind' : 'on'}"];`)
    }
  }
  for (const u of iommus) nodes.push(`  "${dotText(u)}" [shape=ellipse, style=filled, fillcolor="#eeeeee"];`)
  return `digraph context${ctx.id} {\n  label="iommufd context ${ctx.id}"; labelloc=t; fontname="Helvetica";\n  node [shape=box, fontname="Helvetica", margin="0.15,0.06"]; edge [fontname="Helvetica", fontsize=10];\n${[...nodes, ...edges].map((l) => `${l}\n`).join('')}}\n`
}

/** objects.json: the same objects as plain data, each with the fields of its own file. */
function objectsJson(ctx: IommufdContext): string {
  const objects = ctx.objects.objects().map((o) => ({ id: o.id, type: o.type, users: o.users, info: Object.fromEntries(o.describe()) }))
  return `${JSON.stringify({ context: ctx.id, objects, tombstones: ctx.objects.tombstones() }, null, 2)}\n`
}

function summary(ctx: IommufdContext): string {
  const objs = ctx.objects.objects()
  const rows = objs.map((o) => {
    const d = new Map(o.describe())
    const detail = ['ioas', 'kvm', 'parent', 'viommu', 'pci', 'attached', 'vmid', 'virt_id', 'ste.config'].filter((k) => d.has(k)).map((k) => `${k}=${d.get(k)}`)
    return `${String(o.id).padStart(4)}  ${o.type.padEnd(12)} users=${o.users}  ${detail.join(' ')}`
  })
  const tomb = ctx.objects.tombstones().map((id) => `${String(id).padStart(4)}  (tombstone: destroyed with its device; the ID returns when the context closes)`)
  return `context ${ctx.id}: ${objs.length} objects\n${[...rows, ...tomb].map((r) => `${r}\n`).join('')}`
}

/**
 * A register-like file: reads and writes go straight to the object, at any
 * offset; a queue's file also answers poll(), and holds the context while open.
 */
function mmio(f: MmioFile, ctx: IommufdContext): FileNode {
  return {
    kind: 'file',
    mode: f.mode,
    size: () => f.size(),
    stream: f.stream,
    open: (_access, caller) => {
      const release = f.holdsContext ? ctx.hold() : undefined
      const closeDescriptor = f.descriptorOpened?.(caller?.tid)
      return {
        read: (pos, len) => f.read(pos, len),
        write: (pos, data) => {
          if (!f.write) throw new ErrnoError('EACCES', 'read-only register')
          return f.write(pos, data)
        },
        release: () => {
          closeDescriptor?.()
          release?.()
        },
        readable: f.readable && (() => f.readable!()),
        whenReadable: f.whenReadable && ((fn) => f.whenReadable!(fn)),
        pollWrite: f.pollWrite,
      }
    },
  }
}

/** An object's entry: a file of key: value lines, or a directory when it has register files. */
function objectNode(o: IommufdObject, ctx: IommufdContext): FsNode {
  const info = new AttributeFile(() => lines(o.describe()))
  if (!o.files) return info
  const dir = new StaticDir().add('info', info)
  for (const [name, f] of Object.entries(o.files())) dir.add(name, mmio(f, ctx))
  return dir
}

/** An object's entry name: "<id>.<type>". */
const objectName = (o: IommufdObject): string => `${o.id}.${o.type}`

function contextDir(ctx: IommufdContext): FsNode {
  const fixed = new StaticDir()
    .add('objects', new AttributeFile(() => summary(ctx)))
    .add('objects.json', new AttributeFile(() => objectsJson(ctx)))
    .add('graph.dot', new AttributeFile(() => graph(ctx)))
  return new LiveDir(
    () => [...fixed.names(), ...ctx.objects.objects().map(objectName)],
    (name) => {
      const o = ctx.objects.findAny(Number(name.split('.')[0]))
      return fixed.child(name) ?? (o && objectName(o) === name ? objectNode(o, ctx) : undefined)
    },
  )
}

/** The most a trace_pipe read hands out at once. */
const PIPE_CHUNK = 64 * 1024

/**
 * trace_pipe: each open reads the lines emitted after it opened, as they
 * come; a read with nothing new waits for the next line, as tracefs does,
 * until the reader is interrupted (a signal: EINTR) or closes the file (EOF).
 * poll() says readable when a line is waiting.
 */
function tracePipe(trace: TraceLog): FileNode {
  let readers = 0
  return {
    kind: 'file',
    mode: 0o444,
    size: () => 0,
    open: () => {
      const max = LIMITS.tracePipeReaders.max
      // each line wakes every waiting reader: their number bounds what one request costs the server
      if (readers >= max) throw new ErrnoError(LIMITS.tracePipeReaders.errno, `trace_pipe: ${max} opens at once already; close one`)
      readers++
      let cursor = trace.count
      const ends = new Set<() => void>()
      /** Whole lines that fit in `len` (at least one, cut if it alone is longer); the cursor moves past them. */
      const take = (len: number): Buffer => {
        const lines = trace.since(cursor)
        const room = Math.min(len, PIPE_CHUNK)
        const out: Buffer[] = []
        let used = 0
        let k = 0
        for (; k < lines.length; k++) {
          const b = Buffer.from(`${lines[k]}\n`)
          if (k > 0 && used + b.length > room) break
          out.push(b)
          used += b.length
        }
        // lines the ring dropped before this reader got them are skipped
        cursor = trace.count - lines.length + k
        return Buffer.concat(out).subarray(0, room)
      }
      return {
        read: (_pos, len, caller) => {
          if (trace.count > cursor) return take(len)
          return new Promise<Buffer>((resolve) => {
            const finish = (data: () => Buffer): void => {
              off()
              ends.delete(end)
              resolve(data())
            }
            const off = trace.onEmit(() => finish(() => take(len)))
            // closing the file ends the wait with EOF; an interrupted reader takes nothing
            const end = (): void => finish(() => Buffer.alloc(0))
            ends.add(end)
            caller?.onCancel(end)
          })
        },
        write: () => {
          throw new ErrnoError('EACCES', 'trace_pipe is read-only')
        },
        release: () => {
          readers--
          for (const end of [...ends]) end()
        },
        readable: () => trace.count > cursor,
        whenReadable: (fn) => {
          const off = trace.onEmit(() => {
            off()
            fn()
          })
          return off
        },
      }
    },
  }
}

/**
 * sys/kernel/debug/iommufd/dmabuf/: a file per live selftest DMA-BUF, the
 * descriptor DMABUF_GET hands out (read: its length and state). Its last
 * close lets the buffer go, as the kernel's dma_buf release.
 */
function dmabufDir(world: World): DirNode {
  const file = (d: TestDmabuf): FileNode => ({
    kind: 'file',
    mode: 0o600,
    size: () => SYSFS_SIZE,
    open: (): OpenFile => {
      d.opens++
      let released = false
      return {
        read: (pos, len) => Buffer.from(`length=0x${d.data.length.toString(16)} revoked=${d.revoked ? 1 : 0}\n`).subarray(pos, pos + len),
        write: () => {
          throw new ErrnoError('EINVAL', `dmabuf ${d.id}: its descriptor takes no writes`)
        },
        release: () => {
          if (released) return
          released = true
          dmabufClosed(world, d)
        },
      }
    },
  })
  return new LiveDir(
    () => [...dmabufs(world).keys()].map(String),
    (name) => {
      const d = /^\d+$/.test(name) ? dmabufs(world).get(Number(name)) : undefined
      return d && file(d)
    },
  )
}

/**
 * proc/PID/status: a live process's /proc/PID/status with the model's pins in
 * VmPin and VmLck, as the kernel's would have them. The shim opens it for a
 * program's /proc/{self,PID}/status. Lists the processes charged now.
 */
function procStatusDir(world: World): DirNode {
  const status = (pid: number): FileNode =>
    new AttributeFile(() => {
      const text = readStatus(pid)
      if (text === undefined) throw new ErrnoError('ENOENT', `process ${pid} is gone`)
      return statusWithCharges(text, world.charges())
    })
  return new LiveDir(
    () => [...world.charges().mm.keys()].sort((a, b) => a - b).map(String),
    (name) => (/^[1-9]\d*$/.test(name) && readStatus(Number(name)) !== undefined ? new StaticDir().add('status', status(Number(name))) : undefined),
  )
}

/**
 * sys/kernel/debug/iommufd/: one directory per live context (named by its ID:
 * objects, graph), the physical IOMMUs' programmed state, the trace, and
 * whatever else the server adds.
 */
export function debugTree(world: World, extra: [string, FsNode][] = []): DirNode {
  const fixed = new StaticDir()
  fixed.add('trace', new AttributeFile(() => world.trace.recent().map((l) => `${l}\n`).join('')))
  fixed.add('trace.json', new AttributeFile(() => `${JSON.stringify(world.trace.records(), null, 1)}\n`))
  fixed.add('trace_pipe', tracePipe(world.trace))
  fixed.add('pinned', new AttributeFile(() => world.pinCharges()))
  fixed.add('proc', procStatusDir(world))
  const hw = fixed.dir('iommu')
  for (const unit of world.machine.units) {
    const d = hw.dir(unit.name)
    for (const [name, f] of Object.entries(unit.debugFiles())) {
      const json = f.json?.bind(f)
      if (json) d.add(`${name}.json`, new AttributeFile(() => `${JSON.stringify(json(), null, 2)}\n`))
      const store = f.store?.bind(f)
      d.add(
        name,
        new AttributeFile(
          () => f.show(),
          store &&
            ((text: string) => {
              store(text)
              world.trace.emit(unit.name, `${name} <- ${text}`)
            }),
        ),
      )
    }
  }
  // one DMA port per PCI device
  const dma = fixed.dir('dma')
  for (const d of world.machine.devices) dma.add(d.bdf, dmaPort(world, d.bdf))
  // the driver's own domain on each RID iommufd leaves unattached (blocked, or identity)
  const rid = fixed.dir('rid_domain')
  for (const d of world.machine.devices) {
    rid.add(
      d.bdf,
      new AttributeFile(
        () => `${ridDomain(world, d)}\n`,
        (text: string) => {
          setRidDomain(world, d, text)
          world.trace.emit(`rid ${d.bdf}`, `rid_domain <- ${text.trim()}`)
        },
      ),
    )
  }
  fixed.add('dmabuf', dmabufDir(world))
  for (const [name, node] of extra) fixed.add(name, node)
  return new LiveDir(
    () => [...fixed.names(), ...[...world.contexts.keys()].map(String)],
    (name) => {
      const ctx = /^\d+$/.test(name) ? world.contexts.get(Number(name)) : undefined
      return fixed.child(name) ?? (ctx && contextDir(ctx))
    },
  )
}
