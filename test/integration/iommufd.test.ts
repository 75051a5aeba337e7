/**
 * dev/iommu on a real mount: the same requests as text lines from bash and
 * as binary frames from Node give the same IDs, out fields and errnos;
 * contexts are isolated; closing destroys; the debug tree shows a context's
 * objects and graph.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { decodeReply, encodeRequest, FrameKind } from '../../src/uapi/frame'
import { ioctlByName } from '../../src/uapi/ioctls'
import { StructLayout, StructValue, decode, encode } from '../../src/uapi/layout'
import { STRUCTS } from '../../src/uapi/structs'
import { loadTopology } from '../../src/topology/topology'
import { DEFAULT_TOPOLOGY } from '../../src/util/paths'
import { eventually, PACKAGE_ROOT } from '../helpers/cli'
import { sh, TestMount, withMount } from '../helpers/mount'

const machine = loadTopology(DEFAULT_TOPOLOGY)
const SMMU_DEV = '0000:00:01.0'
const VTD_DEV = '0000:02:00.0'
const DOMAINS_USED = 'sys/class/iommu/dmar0/intel-iommu/domains_used'
const U64_MAX = (1n << 64n) - 1n

/** Where the frame client's user buffers live (any addresses will do; the reply names them). */
const IN_ADDR = 0x7e0000000000n
const OUT_ADDR = 0x7e0001000000n

/** One request, from which both its text line and its frame are made. */
interface Step {
  name: string
  /** Struct fields (size/argsz is filled in). */
  f?: Record<string, bigint>
  /** A VFIO command's device: `pci=` in text, the frame's target (vfio index + 1). */
  pci?: string
  /** An input buffer: [pointer field, text key, bytes]. */
  in?: [string, string, Buffer]
  /** An output pointer field: text lets the codec place it, the frame points it at OUT_ADDR. */
  out?: string
}

function words(b: Buffer): string {
  return Array.from({ length: b.length / 8 }, (_, i) => `0x${b.readBigUInt64LE(i * 8).toString(16)}`).join(',')
}

function u64s(...w: bigint[]): Buffer {
  const b = Buffer.alloc(w.length * 8)
  w.forEach((x, i) => b.writeBigUInt64LE(x, i * 8))
  return b
}

function textLine(s: Step): string {
  const parts = [s.name]
  if (s.pci) parts.push(`pci=${s.pci}`)
  for (const [k, v] of Object.entries(s.f ?? {})) parts.push(`${k}=0x${v.toString(16)}`)
  if (s.in) parts.push(`${s.in[1]}=${words(s.in[2])}`)
  return parts.join(' ')
}

function frameOf(s: Step): Buffer {
  const io = ioctlByName(s.name)!
  const values: StructValue = { [io.layout.fields[0].name]: BigInt(io.layout.size), ...s.f }
  const buffers = new Map<bigint, Buffer>()
  if (s.in) {
    values[s.in[0]] = IN_ADDR
    buffers.set(IN_ADDR, s.in[2])
  }
  if (s.out) values[s.out] = OUT_ADDR
  const target = s.pci ? machine.device(s.pci)!.vfioIndex + 1 : 0
  return encodeRequest({ cmd: io.cmd, target, struct: encode(io.layout, values), buffers })
}

/** A result both ways can be brought to: errno (or ok), message, every out value as decimal lists. */
interface Result {
  errno: string
  message: string
  fields: Record<string, string>
}

const norm = (v: string): string =>
  v
    .split(',')
    .map((x) => BigInt(x).toString())
    .join(',')

function fromText(line: string): Result {
  const err = /^err (\S+) (.*?)(?: \(written back: (.*)\))?$/.exec(line)
  const kv = (s: string): Record<string, string> => Object.fromEntries(s.split(' ').filter(Boolean).map((t) => [t.slice(0, t.indexOf('=')), norm(t.slice(t.indexOf('=') + 1))]))
  if (err) return { errno: err[1], message: err[2], fields: kv(err[3] ?? '') }
  assert.match(line, /^ok( |$)/, line)
  return { errno: 'ok', message: '', fields: kv(line.slice(2)) }
}

function outFields(L: StructLayout, v: StructValue): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of L.fields) {
    if (f.pointer || (f.dir !== 'out' && f.dir !== 'inout')) continue
    const x = v[f.name]
    out[f.name] = Array.isArray(x) ? x.map(String).join(',') : String(x)
  }
  return out
}

/** The frame reply as a Result: the struct's out fields, the out buffer decoded as the text codec shows it. */
function fromFrame(s: Step, reply: Buffer, textFields: Record<string, string>): Result {
  const r = decodeReply(reply)
  assert.equal(r.kind, FrameKind.REPLY, `${s.name}: expected a REPLY frame`)
  const io = ioctlByName(s.name)!
  const full = Buffer.alloc(io.layout.size)
  r.struct.copy(full)
  const v = decode(io.layout, full)
  const fields = outFields(io.layout, v)
  const buf = r.buffers.find((b) => b.addr === OUT_ADDR)?.data
  if (buf && s.out === 'allowed_iovas') {
    const n = Math.min(Number(v.num_iovas), buf.length / 16)
    fields.allowed_iovas = norm(words(buf.subarray(0, n * 16)))
  }
  if (buf && s.out === 'data_uptr') {
    const vl = STRUCTS.get(Number(v.out_data_type) === 2 ? 'iommu_hw_info_arm_smmuv3' : 'iommu_hw_info_vtd')!
    Object.assign(fields, outFields(vl, decode(vl, buf)))
  }
  if (r.errno) {
    // an error writes back only some fields (num_iovas with EMSGSIZE): compare those the text reply names
    assert.equal(r.struct.length > 0, Object.keys(textFields).length > 0, `${s.name}: struct written back with the error in one form only`)
    return { errno: r.errnoName ?? String(r.errno), message: r.message, fields: Object.fromEntries(Object.keys(textFields).map((k) => [k, fields[k]])) }
  }
  return { errno: 'ok', message: '', fields }
}

const ste = (cfg: number): Buffer => u64s(1n | (BigInt(cfg) << 1n), 0n)
const vtdS1 = (width: number): Buffer => {
  const b = Buffer.alloc(24)
  b.writeBigUInt64LE(0x12345000n, 8)
  b.writeUInt32LE(width, 16)
  return b
}

/** A whole nesting session with its failures, on both SMMUv3 and VT-d. */
const STEPS: Step[] = [
  { name: 'DEVICE_BIND', pci: SMMU_DEV },
  { name: 'DEVICE_BIND', pci: VTD_DEV },
  { name: 'DEVICE_BIND', pci: VTD_DEV },
  { name: 'IOAS_ALLOC' },
  { name: 'IOAS_ALLOC', f: { flags: 1n } },
  { name: 'GET_HW_INFO', f: { dev_id: 1n, data_len: 64n }, out: 'data_uptr' },
  { name: 'GET_HW_INFO', f: { dev_id: 2n, data_len: 64n }, out: 'data_uptr' },
  { name: 'GET_HW_INFO', f: { dev_id: 1n, flags: 1n, out_data_type: 1n, data_len: 64n }, out: 'data_uptr' },
  { name: 'IOAS_IOVA_RANGES', f: { ioas_id: 3n, num_iovas: 4n }, out: 'allowed_iovas' },
  { name: 'HWPT_ALLOC', f: { dev_id: 1n, pt_id: 99n } },
  { name: 'HWPT_ALLOC', f: { dev_id: 1n, pt_id: 3n, flags: 1n } },
  { name: 'DEVICE_ATTACH', pci: SMMU_DEV, f: { pt_id: 4n } },
  { name: 'IOAS_IOVA_RANGES', f: { ioas_id: 3n, num_iovas: 4n }, out: 'allowed_iovas' },
  { name: 'IOAS_IOVA_RANGES', f: { ioas_id: 3n, num_iovas: 1n }, out: 'allowed_iovas' },
  { name: 'IOAS_MAP', f: { ioas_id: 3n, flags: 7n, user_va: 0x7f0000000000n, length: 0x4000n, iova: 0x100000n } },
  { name: 'IOAS_MAP', f: { ioas_id: 3n, flags: 7n, user_va: 0x7f0000000000n, length: 0x1000n, iova: 0x8000000n } },
  { name: 'IOAS_MAP', f: { ioas_id: 3n, flags: 6n, user_va: 0x7f0000200000n, length: 0x200000n } },
  { name: 'IOAS_ALLOC' },
  { name: 'IOAS_ALLOW_IOVAS', f: { ioas_id: 5n, num_iovas: 1n }, in: ['allowed_iovas', 'allowed_iovas', u64s(0x40000000n, 0x4fffffffn)] },
  { name: 'IOAS_COPY', f: { flags: 6n, dst_ioas_id: 5n, src_ioas_id: 3n, length: 0x4000n, src_iova: 0x100000n } },
  { name: 'VIOMMU_ALLOC', f: { type: 0n, dev_id: 1n, hwpt_id: 4n } },
  { name: 'VIOMMU_ALLOC', f: { type: 1n, dev_id: 1n, hwpt_id: 4n } },
  { name: 'VDEVICE_ALLOC', f: { viommu_id: 6n, dev_id: 1n, virt_id: 0x10n } },
  { name: 'VDEVICE_ALLOC', f: { viommu_id: 6n, dev_id: 1n, virt_id: 0x20n } },
  { name: 'HWPT_ALLOC', f: { dev_id: 1n, pt_id: 6n, data_type: 2n, data_len: 16n }, in: ['data_uptr', 'data', ste(6)] },
  { name: 'HWPT_ALLOC', f: { dev_id: 1n, pt_id: 6n, data_type: 2n, data_len: 16n }, in: ['data_uptr', 'data', ste(5)] },
  { name: 'DEVICE_ATTACH', pci: SMMU_DEV, f: { pt_id: 8n } },
  { name: 'HWPT_ALLOC', f: { dev_id: 2n, pt_id: 3n, flags: 1n } },
  { name: 'HWPT_ALLOC', f: { dev_id: 2n, pt_id: 9n, data_type: 1n, data_len: 24n }, in: ['data_uptr', 'data', vtdS1(57)] },
  { name: 'DEVICE_ATTACH', pci: VTD_DEV, f: { pt_id: 10n } },
  { name: 'HWPT_ALLOC', f: { dev_id: 2n, pt_id: 9n, data_type: 1n, data_len: 24n }, in: ['data_uptr', 'data', vtdS1(48)] },
  { name: 'DEVICE_ATTACH', pci: VTD_DEV, f: { pt_id: 11n } },
  { name: 'DESTROY', f: { id: 6n } },
  { name: 'DESTROY', f: { id: 1n } },
  { name: 'DESTROY', f: { id: 99n } },
  { name: 'IOAS_UNMAP', f: { ioas_id: 3n, iova: 0x100000n, length: 0x1000n } },
  { name: 'IOAS_UNMAP', f: { ioas_id: 3n, iova: 0n, length: U64_MAX } },
  { name: 'VFIO_IOAS', f: { op: 0n } },
  { name: 'OPTION', f: { option_id: 1n, op: 1n, object_id: 3n } },
  { name: 'DEVICE_DETACH', pci: VTD_DEV },
  { name: 'DESTROY', f: { id: 11n } },
]

/** Sends `lines` on one dev/iommu from bash (exec 3<>; echo >&3; read -u 3) and returns the reply lines. */
async function bashSession(m: TestMount, lines: string[]): Promise<string[]> {
  const script = ['set -e', `cd ${m.dir}`, 'exec 3<>dev/iommu', 'while IFS= read -r line; do echo "$line" >&3; IFS= read -r -u 3 reply; echo "$reply"; done', 'exec 3>&-'].join('\n')
  const r = await sh(script, { input: `${lines.join('\n')}\n` })
  assert.equal(r.code, 0, r.stderr)
  const out = r.stdout.split('\n').slice(0, -1)
  assert.equal(out.length, lines.length, r.stdout)
  return out
}

/**
 * What the mount shows of a context and the hardware under it: every file of
 * its debug directory and of sys/kernel/debug/iommufd/iommu/, and domains_used.
 */
async function snapshot(m: TestMount, ctx: string): Promise<string> {
  const out: string[] = []
  const files = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(m.path(dir), { withFileTypes: true })) {
      const p = `${dir}/${e.name}`
      if (e.isDirectory()) await files(p)
      else out.push(`== ${p}\n${await fsp.readFile(m.path(p), 'utf8')}`)
    }
  }
  await files(`sys/kernel/debug/iommufd/${ctx}`)
  await files('sys/kernel/debug/iommufd/iommu')
  out.push(`== domains_used ${await fsp.readFile(m.path(DOMAINS_USED), 'utf8')}`)
  return out.join('')
}

/**
 * Sends the steps as frames on one dev/iommu. Around the steps `failing` names
 * (those that failed as text) the mount's view of the context is compared:
 * a failing request changes nothing.
 */
async function frameSession(m: TestMount, steps: Step[], failing: ReadonlySet<number>): Promise<Buffer[]> {
  const fh = await fsp.open(m.path('dev/iommu'), 'r+')
  try {
    // text and frames mix on one descriptor: CONTEXT tells which debug directory is ours
    const ctxLine = Buffer.from('CONTEXT\n')
    await fh.write(ctxLine, 0, ctxLine.length, 0)
    const cbuf = Buffer.alloc(4096)
    const ctx = /^ok id=(\d+) /.exec(cbuf.subarray(0, (await fh.read(cbuf, 0, cbuf.length, 0)).bytesRead).toString())![1]
    const replies: Buffer[] = []
    for (const [i, s] of steps.entries()) {
      const before = failing.has(i) ? await snapshot(m, ctx) : ''
      const req = frameOf(s)
      assert.equal((await fh.write(req, 0, req.length, 0)).bytesWritten, req.length)
      const buf = Buffer.alloc(1 << 16)
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
      const reply = buf.subarray(0, bytesRead)
      replies.push(reply)
      if (failing.has(i)) assert.equal(await snapshot(m, ctx), before, `${textLine(s)} failed but changed what the mount shows`)
    }
    return replies
  } finally {
    await fh.close()
  }
}

/** Runs a bash script on the mount; fails the test on a nonzero exit. */
async function bash(m: TestMount, script: string): Promise<string> {
  const r = await sh(`set -e\ncd ${m.dir}\n${script}`)
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
  return r.stdout
}

/** The `key=value` fields of reply line `n` (1-based) of `out`, "ok ..." lines only. */
function okLine(out: string, prefix: string): Record<string, string> {
  const line = out.split('\n').find((l) => l.startsWith(`${prefix} ok`))
  assert.ok(line, `no "${prefix} ok" line in:\n${out}`)
  return Object.fromEntries(
    line
      .slice(prefix.length + 4)
      .split(' ')
      .filter(Boolean)
      .map((t) => [t.slice(0, t.indexOf('=')), t.slice(t.indexOf('=') + 1)]),
  )
}

describe('dev/iommu on a real mount', () => {
  it('the same requests as text from bash and as frames from Node give identical IDs, out fields and errnos', async () => {
    await withMount(async (m) => {
      const lines = STEPS.map(textLine)
      const texts = await bashSession(m, lines)
      const frames = await frameSession(m, STEPS, new Set(texts.flatMap((t, i) => (t.startsWith('err') ? [i] : []))))
      const results = STEPS.map((s, i) => {
        const t = fromText(texts[i])
        return { line: lines[i], text: t, frame: fromFrame(s, frames[i], t.fields) }
      })
      // the two sessions are different contexts: a message naming a context number may differ in that number only
      const ctxFree = (x: Result): Result => ({ ...x, message: x.message.replace(/context \d+/g, 'context N') })
      for (const r of results) assert.deepEqual(ctxFree(r.frame), ctxFree(r.text), `${r.line}\n  text:  ${JSON.stringify(r.text)}\n  frame: ${JSON.stringify(r.frame)}`)
      // and the results are the ones the reference asks for
      const summary = results.map((r) => `${r.text.errno}${r.text.fields.out_ioas_id ?? r.text.fields.out_hwpt_id ?? r.text.fields.out_devid ?? r.text.fields.out_viommu_id ?? r.text.fields.out_vdevice_id ?? ''}`)
      assert.deepEqual(summary, [
        'ok1', 'ok2', 'EBUSY', 'ok3', 'EOPNOTSUPP', 'ok', 'ok', 'EOPNOTSUPP', 'ok', 'EINVAL', 'ok4', 'ok', 'ok', 'EMSGSIZE', 'ok', 'EINVAL', 'ok',
        'ok5', 'ok', 'ok', 'EOPNOTSUPP', 'ok6', 'ok7', 'EEXIST', 'EIO', 'ok8', 'ok', 'ok9', 'ok10', 'EINVAL', 'ok11', 'ok', 'EBUSY', 'EBUSY', 'ENOENT',
        'ENOENT', 'ok', 'ENODEV', 'ok', 'ok', 'ok',
      ])
      const f = (i: number): Record<string, string> => results[i].text.fields
      assert.equal(f(5).idr, norm('0xc4d76bb,0x1084510,0x0,0xd00,0x0,0x800075'))
      assert.equal(f(5).out_max_pasid_log2, '20')
      assert.equal(f(6).flags, '1')
      assert.equal(f(6).cap_reg, BigInt('0x9ff078c226f0466').toString())
      assert.equal(f(8).allowed_iovas, norm('0x0,0xffffffffffffffff'))
      assert.equal(f(11).pt_id, '4')
      assert.equal(f(12).allowed_iovas, norm('0x0,0x7ffffff,0x8100000,0xffffffffffff'))
      assert.equal(f(12).out_iova_alignment, '4096')
      assert.deepEqual(f(13), { num_iovas: '2', out_iova_alignment: '4096', allowed_iovas: norm('0x0,0x7ffffff') })
      assert.equal(f(14).iova, String(0x100000))
      assert.equal(BigInt(f(16).iova) % 0x200000n, 0n)
      assert.equal(f(19).dst_iova, String(0x40000000))
      assert.equal(f(26).pt_id, '8')
      assert.equal(f(31).pt_id, '11')
      assert.equal(f(36).length, String(0x4000 + 0x200000))
      assert.equal(f(38).val64, '1')
    })
  })

  it('two contexts are isolated: an ID of one is ENOENT in the other, a bound device is EBUSY there', async () => {
    await withMount(async (m) => {
      const out = await bash(
        m,
        `exec 3<>dev/iommu 4<>dev/iommu
r() { echo "$2" >&$1; IFS= read -r -u $1 reply; echo "$3 $reply"; }
r 3 CONTEXT a-ctx
r 4 CONTEXT b-ctx
r 3 IOAS_ALLOC a-ioas1
r 3 IOAS_ALLOC a-ioas2
r 3 "DEVICE_BIND pci=${SMMU_DEV}" a-bind
r 4 "IOAS_IOVA_RANGES ioas_id=2" b-ranges
r 4 "DESTROY id=1" b-destroy
r 4 "DEVICE_BIND pci=${SMMU_DEV}" b-bind
r 4 "GET_HW_INFO dev_id=3" b-hwinfo
r 4 IOAS_ALLOC b-ioas
r 3 "IOAS_IOVA_RANGES ioas_id=2" a-ranges
cat sys/kernel/debug/iommufd/*/objects`,
      )
      const a = okLine(out, 'a-ctx')
      const b = okLine(out, 'b-ctx')
      assert.notEqual(a.id, b.id)
      assert.equal(a.path, `/sys/kernel/debug/iommufd/${a.id}`)
      assert.deepEqual(okLine(out, 'a-ioas2'), { out_ioas_id: '2' })
      assert.match(out, /^b-ranges err ENOENT ioas_id=2: /m)
      assert.match(out, /^b-destroy err ENOENT /m)
      assert.match(out, new RegExp(`^b-bind err EBUSY ${SMMU_DEV}: already bound to context ${a.id}$`, 'm'))
      assert.match(out, /^b-hwinfo err ENOENT dev_id=3: /m)
      assert.deepEqual(okLine(out, 'b-ioas'), { out_ioas_id: '1' })
      assert.equal(okLine(out, 'a-ranges').num_iovas, '1')
      assert.match(out, new RegExp(`context ${a.id}: 3 objects\\n`))
      assert.match(out, new RegExp(`context ${b.id}: 1 objects\\n`))
    })
  })

  it('closing the fd destroys the context: its debug directory disappears and domains_used returns to 0', async () => {
    await withMount(async (m) => {
      const before = (await fsp.readFile(m.path(DOMAINS_USED), 'utf8')).trim()
      const out = await bash(
        m,
        `exec 3<>dev/iommu
r() { echo "$1" >&3; IFS= read -r -u 3 reply; echo "$2 $reply"; }
r CONTEXT ctx
r "DEVICE_BIND pci=${VTD_DEV}" bind
r IOAS_ALLOC ioas
r "DEVICE_ATTACH dev_id=1 pt_id=2" attach
echo "domains_used $(cat ${DOMAINS_USED})"
echo "dir $(ls sys/kernel/debug/iommufd/$(echo "$(r CONTEXT x)" | sed 's/.* id=\\([0-9]*\\).*/\\1/') | tr '\\n' ' ')"
exec 3>&-`,
      )
      const ctx = okLine(out, 'ctx').id
      assert.equal(before, '0')
      assert.match(out, /^domains_used 1$/m)
      assert.match(out, /^dir 1\.device 2\.ioas 3\.hwpt_paging graph\.dot objects objects\.json $/m)
      // release comes after close() returns: wait for it (a safety net, not a measurement)
      await eventually(async () => !(await fsp.readdir(m.path('sys/kernel/debug/iommufd'))).includes(ctx), `context ${ctx} to go away`)
      assert.equal((await fsp.readFile(m.path(DOMAINS_USED), 'utf8')).trim(), '0')
      await assert.rejects(fsp.readdir(m.path(`sys/kernel/debug/iommufd/${ctx}`)), { code: 'ENOENT' })
      // the device is free for a new context
      const again = await bash(m, `exec 3<>dev/iommu; echo "DEVICE_BIND pci=${VTD_DEV}" >&3; IFS= read -r -u 3 reply; echo "$reply"`)
      assert.equal(again, 'ok out_devid=1\n')
    })
  })

  it('CONTEXT names the debug directory; it lists the objects with their types; graph.dot is Graphviz naming them', async () => {
    await withMount(async (m) => {
      const out = await bash(
        m,
        `exec 3<>dev/iommu
r() { echo "$1" >&3; IFS= read -r -u 3 reply; echo "$2 $reply"; }
r CONTEXT ctx
dir=".$(echo "$(r CONTEXT x)" | sed 's/.* path=//')"
r "DEVICE_BIND pci=${SMMU_DEV}" bind
r IOAS_ALLOC ioas
r "HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT" parent
r "DEVICE_ATTACH dev_id=1 pt_id=3" attach
r "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3" viommu
r "VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10" vdevice
r "HWPT_ALLOC dev_id=1 pt_id=4 data_type=ARM_SMMUV3 data.ste=0xb,0" nested
r "DEVICE_ATTACH dev_id=1 pt_id=6" attach-nested
echo "== ls"; ls "$dir"
echo "== objects"; cat "$dir/objects"
echo "== viommu"; cat "$dir/4.viommu"
echo "== nested"; cat "$dir/6.hwpt_nested"
echo "== graph"; cat "$dir/graph.dot"
exec 3>&-`,
      )
      const ctx = okLine(out, 'ctx')
      assert.equal(ctx.path, `/sys/kernel/debug/iommufd/${ctx.id}`)
      const section = (name: string): string => out.split(`== ${name}\n`)[1].split(/^== /m)[0]
      assert.equal(section('ls'), '1.device\n2.ioas\n3.hwpt_paging\n4.viommu\n5.vdevice\n6.hwpt_nested\ngraph.dot\nobjects\nobjects.json\n')
      const rows = section('objects').split('\n')
      assert.equal(rows[0], `context ${ctx.id}: 6 objects`)
      assert.deepEqual(
        rows.slice(1, 7).map((r) => r.trim().split(/\s+/).slice(0, 2).join(' ')),
        ['1 device', '2 ioas', '3 hwpt_paging', '4 viommu', '5 vdevice', '6 hwpt_nested'],
      )
      assert.match(section('viommu'), /^vsid_map: 0x10->0x8$/m)
      assert.match(section('viommu'), /^vmid: \d+$/m)
      assert.match(section('nested'), /^ste\.config: s1-translate$/m)
      assert.match(section('nested'), /^ste\.CFG: 5 \(s1-translate\)$/m)
      const dot = section('graph').trimEnd().split('\n')
      assert.equal(dot[0], `digraph context${ctx.id} {`)
      assert.equal(dot[dot.length - 1], '}')
      const body = dot.slice(1, -1).filter((l) => l.trim() !== '')
      for (const l of body) {
        assert.match(l, /^ {2}(label=.*;|node \[.*\]; edge \[.*\];|o\d+ \[label="[^"]*", style=filled, fillcolor="#[0-9a-f]{6}"\];|"[^"]+" \[shape=ellipse, .*\];|o\d+ -> o\d+ \[label="[a-z]+"\];|o\d+ -> "[^"]+" \[style=dashed, label="[a-z]+"\];)$/, l)
      }
      // the labels carry what the picture must show: IDs, the StreamID, the vSID -> pSID map
      assert.ok(body.includes('  o4 [label="4: viommu\\nVMID 1\\nvSID 0x10 -> pSID 0x8", style=filled, fillcolor="#eadcf3"];'), body.join('\n'))
      assert.ok(body.some((l) => l.startsWith('  o1 [label="1: device\\n0000:00:01.0\\nStreamID 0x8"')), body.join('\n'))
      const nodes = body.filter((l) => /^ {2}o\d+ \[/.test(l)).map((l) => /^ {2}o(\d+)/.exec(l)![1])
      assert.deepEqual(nodes, ['1', '2', '3', '4', '5', '6'])
      for (const [from, to, label] of [
        [3, 2, 'ioas'],
        [4, 3, 'parent'],
        [5, 4, 'viommu'],
        [5, 1, 'device'],
        [6, 4, 'viommu'],
        [1, 6, 'attached'],
      ]) {
        assert.ok(body.includes(`  o${from} -> o${to} [label="${label}"];`), `no edge o${from} -> o${to} (${label}) in:\n${body.join('\n')}`)
      }
    })
  })

  it('a line longer than 4096 bytes is refused with EMSGSIZE: as a reply, or as the write\'s error when no newline comes within the limit', async () => {
    await withMount(async (m) => {
      const out = await bash(
        m,
        `exec 3<>dev/iommu
long=$(printf 'x%.0s' $(seq 5000))
echo "IOAS_ALLOC $long" >&3; IFS= read -r -u 3 reply; echo "a $reply"
if echo "IOAS_ALLOC $long$long" >&3 2>/dev/null; then IFS= read -r -u 3 reply; echo "b $reply"; else echo "b refused"; fi
echo IOAS_ALLOC >&3; IFS= read -r -u 3 reply; echo "c $reply"`,
      )
      const [a, b, c] = out.split('\n')
      assert.equal(a, 'a err EMSGSIZE request line longer than 4096 bytes')
      // how the kernel splits a 10 KB write depends on FUSE's max_write: either way the line is refused
      assert.ok(b === 'b refused' || b === 'b err EMSGSIZE request line longer than 4096 bytes', b)
      assert.equal(c, 'c ok out_ioas_id=1')
    })
  })

  it('closing a device\'s vfio<N> file unbinds it: its vDEVICE becomes a tombstone, ENOENT, ID not reused', async () => {
    await withMount(async (m) => {
      const vfio = machine.device(SMMU_DEV)!.vfioIndex
      const out = await bash(
        m,
        `exec 3<>dev/iommu 5<>dev/vfio/devices/vfio${vfio}
r() { echo "$2" >&$1; IFS= read -r -u $1 reply; echo "$3 $reply"; }
id=$(r 3 CONTEXT x | sed 's/.* id=\\([0-9]*\\).*/\\1/')
r 5 "DEVICE_BIND iommufd=$id" bind
r 3 IOAS_ALLOC ioas
r 3 "HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT" parent
r 3 "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3" viommu
r 3 "VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10" vdevice
exec 5>&-
until grep -q tombstone sys/kernel/debug/iommufd/$id/objects; do :; done   # the unbind lands when the server handles RELEASE
r 3 "DESTROY id=5" destroy-vdevice
r 3 IOAS_ALLOC ioas-a
r 3 IOAS_ALLOC ioas-b
r 3 "DESTROY id=4" destroy-viommu
cat sys/kernel/debug/iommufd/$id/objects
exec 3>&-`,
      )
      assert.deepEqual(okLine(out, 'bind'), { out_devid: '1' })
      assert.deepEqual(okLine(out, 'vdevice'), { out_vdevice_id: '5' })
      assert.match(out, /^destroy-vdevice err ENOENT id=5: /m)
      assert.deepEqual(okLine(out, 'ioas-a'), { out_ioas_id: '1' })
      assert.deepEqual(okLine(out, 'ioas-b'), { out_ioas_id: '6' })
      assert.match(out, /^destroy-viommu ok$/m)
      assert.match(out, /^ {3}5 {2}\(tombstone: /m)
    })
  })
})

describe('examples/nested-*.sh against a real mount', () => {
  const EXAMPLES = path.join(PACKAGE_ROOT, 'examples')

  it('nested-smmuv3.sh: the whole SMMUv3 nesting setup, exit 0, the debug tree shows vSID 0x10 -> pSID 0x8 and a nested STE', async () => {
    await withMount(async (m) => {
      const r = await sh(`${EXAMPLES}/nested-smmuv3.sh ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      assert.doesNotMatch(r.stdout, /^< err/m)
      const replies = r.stdout.split('\n').filter((l) => l.startsWith('< '))
      assert.deepEqual(replies.map((l) => l.split(' ').slice(0, 3).join(' ')), [
        '< ok id=1',
        '< ok out_devid=1',
        '< ok data_len=40',
        '< ok out_ioas_id=2',
        '< ok iova=0x40000000',
        '< ok out_hwpt_id=3',
        '< ok pt_id=3',
        '< ok out_viommu_id=4',
        '< ok out_vdevice_id=5',
        '< ok out_hwpt_id=6',
        '< ok pt_id=6',
      ])
      assert.match(r.stdout, /^context 1: 6 objects$/m)
      assert.match(r.stdout, /^ {3}5 {2}vdevice {6}users=0 {2}viommu=4 virt_id=0x10$/m)
      assert.match(r.stdout, /^vsid_map: 0x10->0x8$/m)
      const vmid = /^vmid: (\d+)$/m.exec(r.stdout)![1]
      assert.match(r.stdout, /^ste\.config: s1-translate$/m)
      assert.match(r.stdout, /^ste\.S1CTXPTR: 0x40001000$/m)
      assert.match(r.stdout, new RegExp(`^sid=0x8 config=nested vmid=${vmid} guest_ste=0x000000004000100b,0x0000000000000000 ats=0$`, 'm'))
      // the script closed its descriptor: its context goes away
      await eventually(async () => !(await fsp.readdir(m.path('sys/kernel/debug/iommufd'))).includes('1'), 'context 1 to go away')
    })
  })

  it('nested-vtd.sh: the whole VT-d nesting setup, exit 0, a nested PASID entry and one domain in use', async () => {
    await withMount(async (m) => {
      const r = await sh(`${EXAMPLES}/nested-vtd.sh ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      assert.doesNotMatch(r.stdout, /^< err/m)
      assert.match(r.stdout, /^domains in use on dmar0 before: 0$/m)
      assert.match(r.stdout, /^< ok data_len=24 out_data_type=1 .* flags=0x1 cap_reg=0x9ff078c226f0466 ecap_reg=0x1ef9ea4f050df$/m)
      assert.match(r.stdout, /^< ok out_hwpt_id=4$/m)
      assert.match(r.stdout, /^ {3}4 {2}hwpt_nested {2}users=1 {2}parent=3$/m)
      assert.match(r.stdout, /^s1\.pgtbl_addr: 0x40002000$/m)
      assert.match(r.stdout, /^s1\.addr_width: 48$/m)
      assert.match(r.stdout, /^rid=02:00\.0 pasid=0 \(RID_PASID\) pgtt=nested did=\d+ flptr=0x40002000 addr_width=48$/m)
      assert.match(r.stdout, /intel-iommu\/domains_used\n1\n$/)
      await eventually(async () => (await fsp.readFile(m.path(DOMAINS_USED), 'utf8')) === '0\n', 'domains_used to return to 0')
    })
  })

  it('a script stops with status 1 at the first err reply (the device is already bound elsewhere)', async () => {
    await withMount(async (m) => {
      // fd 7 holds context 1 (with the device bound) for as long as the script runs
      const r = await sh(`cd ${m.dir}; exec 7<>dev/iommu; echo "DEVICE_BIND pci=${SMMU_DEV}" >&7; read -u 7 reply; ${EXAMPLES}/nested-smmuv3.sh ${m.dir}; rc=$?; exec 7>&-; exit $rc`)
      assert.equal(r.code, 1)
      assert.match(r.stdout, new RegExp(`^< err EBUSY ${SMMU_DEV}: already bound to context 1$`, 'm'))
      assert.equal(r.stderr, `nested-smmuv3.sh: request failed: DEVICE_BIND pci=${SMMU_DEV}\n`)
      assert.doesNotMatch(r.stdout, /IOAS_ALLOC/)
    })
  })

  it('without a mount: a one-line error and status 2', async () => {
    const r = await sh(`${EXAMPLES}/nested-vtd.sh /nonexistent-iommufs`)
    assert.equal(r.code, 2)
    assert.equal(r.stderr, 'nested-vtd.sh: /nonexistent-iommufs/dev/iommu not found; is iommufs mounted there? (make mount)\n')
  })
})
