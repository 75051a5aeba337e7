import { hex } from '../hw/bits'
import { describeEvent, encodeEvent } from '../hw/smmuv3/events'
import { describeFinding } from '../hw/smmuv3/sanitizer'
import { describePerms, describeStep } from '../hw/smmuv3/walk'
import { describeFault, encodeFault } from '../hw/vtd/faults'
import { describeVtdStep } from '../hw/vtd/walk'
import { DeviceDma, DeviceDmaResult, checkDmaLength } from '../iommufd/dma'
import { ErrnoError } from '../util/errno'

/**
 * The DMA port's text protocol (a file per device in the debug tree):
 *
 *   read iova=ADDR len=N [pasid=N] [priv] [exec] [ats]
 *   write iova=ADDR data=HEXBYTES [pasid=N] [priv] [ats]
 *   translate iova=ADDR [pasid=N] [priv] [exec]        (an ATS translation request)
 *
 * The reply's first line is its status: ok, fault (SMMUv3: the event record,
 * decoded and as four words; VT-d: the fault record, decoded and as two), abort (no memory answered), stopped (the sanitizer in
 * strict mode); then one `walk` line per descriptor read, one `out` line per
 * translation used, the data read in hex, and any sanitizer findings.
 */

const FLAGS = ['priv', 'exec', 'ats'] as const

function num(key: string, v: string): bigint {
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(v)) throw new ErrnoError('EINVAL', `${key}=${v}: not a number`)
  return BigInt(v)
}

export function parseDmaRequest(line: string): DeviceDma {
  const [verb, ...tokens] = line.trim().split(/\s+/)
  const op = verb?.toLowerCase()
  if (op !== 'read' && op !== 'write' && op !== 'translate') throw new ErrnoError('EINVAL', `"${verb ?? ''}": expected read, write or translate`)
  const seen = new Map<string, string>()
  for (const tok of tokens) {
    const eq = tok.indexOf('=')
    const key = (eq < 0 ? tok : tok.slice(0, eq)).toLowerCase()
    if (seen.has(key)) throw new ErrnoError('EINVAL', `${key}: given twice`)
    const allowed = op === 'write' ? ['iova', 'data', 'pasid', 'priv', 'ats'] : op === 'read' ? ['iova', 'len', 'pasid', 'priv', 'exec', 'ats'] : ['iova', 'pasid', 'priv', 'exec']
    if (!allowed.includes(key)) throw new ErrnoError('EINVAL', `${key}: not a field of ${op} (fields: ${allowed.join(', ')})`)
    if ((FLAGS as readonly string[]).includes(key) && eq >= 0 && !/^[01]$/.test(tok.slice(eq + 1))) throw new ErrnoError('EINVAL', `${key}: a flag (bare, or =0/=1)`)
    seen.set(key, eq < 0 ? '1' : tok.slice(eq + 1))
  }
  const iova = seen.get('iova')
  if (iova === undefined) throw new ErrnoError('EINVAL', 'iova: missing')
  const flag = (k: string): boolean => seen.get(k) === '1'
  const pasid = seen.has('pasid') ? num('pasid', seen.get('pasid')!) : undefined
  if (pasid !== undefined && pasid >= 1n << 20n) throw new ErrnoError('EINVAL', `pasid=${pasid}: PASIDs have 20 bits`)
  const base = { iova: num('iova', iova), pasid: pasid === undefined ? undefined : Number(pasid), priv: flag('priv'), exec: flag('exec'), ats: flag('ats') }
  if (base.iova >= 1n << 64n) throw new ErrnoError('EINVAL', `iova=${iova}: does not fit 64 bits`)
  if (op === 'write') {
    const raw = seen.get('data')
    if (raw === undefined) throw new ErrnoError('EINVAL', 'data: missing (hex bytes, e.g. data=00ff10)')
    const hexText = raw.replace(/^0x/i, '')
    if (!/^([0-9a-f]{2})+$/i.test(hexText)) throw new ErrnoError('EINVAL', 'data: an even number of hex digits')
    checkDmaLength(hexText.length / 2, `data: ${hexText.length / 2} bytes`)
    const data = Buffer.from(hexText, 'hex')
    return { op, ...base, len: data.length, data }
  }
  if (op === 'translate') return { op, ...base, len: 0, ats: true }
  const len = seen.get('len')
  if (len === undefined) throw new ErrnoError('EINVAL', 'len: missing')
  const n = num('len', len)
  if (n === 0n) throw new ErrnoError('EINVAL', 'len: must be at least 1')
  checkDmaLength(n, `len=${len}`)
  return { op, ...base, len: Number(n) }
}

/** `result dma=N`: the id of a held request to ask about, or undefined when the line is not such a query. */
export function parseResultQuery(line: string): number | undefined {
  const [verb, ...tokens] = line.trim().split(/\s+/)
  if (verb?.toLowerCase() !== 'result') return undefined
  const m = tokens.length === 1 ? /^dma=(0x[0-9a-f]+|[0-9]+)$/i.exec(tokens[0]) : null
  if (!m) throw new ErrnoError('EINVAL', 'result: takes dma=N (the id a pending reply named)')
  return Number(BigInt(m[1]))
}

/** The answer to `result dma=N`: "pending dma=N ..." while held, else "done dma=N" and the request's whole reply. */
export function formatResult(id: number, e: { request: DeviceDma; waiting: string; result?: DeviceDmaResult } | undefined): string {
  if (!e) throw new ErrnoError('ENOENT', `dma=${id}: no held request by that id (never held, or its result was dropped)`)
  if (!e.result) return `pending dma=${id} ${e.waiting}\n`
  return `done dma=${id}\n${formatDmaReply(e.request, e.result)}`
}

export function formatDmaReply(r: DeviceDma, res: DeviceDmaResult): string {
  const head = `${r.op} sid=${hex(res.sid)} pasid=${r.pasid ?? 'none'} iova=${hex(r.iova)} len=${r.len}`
  const lines: string[] = []
  const words = (ws: readonly bigint[]): string => ws.map((w) => w.toString(16).padStart(16, '0')).join(' ')
  if (res.pending !== undefined) lines.push(`pending dma=${res.pending} ${res.waiting ?? ''}`.trimEnd())
  if (res.pending !== undefined && res.arch === 'intel-vtd' && res.fault) lines.push(`fault ${describeFault(res.fault)}`)
  else if (res.arch === 'arm-smmu-v3' && res.event) lines.push(`fault ${describeEvent(res.event)}`, `event ${words(encodeEvent(res.event))}`)
  else if (res.arch === 'intel-vtd' && res.fault) lines.push(`fault ${describeFault(res.fault)}`, `frcd ${words(encodeFault(res.fault))}`)
  else if (res.abort) lines.push(`abort ${res.abort}`)
  else if (res.stopped) lines.push(`stopped ${describeFinding(res.stopped)}`)
  else lines.push(`ok ${head}`)
  if (!lines[0].startsWith('ok')) lines.push(`request ${head}`)
  const step = (x: Parameters<typeof describeStep>[0] | Parameters<typeof describeVtdStep>[0]): string =>
    `walk ${res.arch === 'intel-vtd' ? describeVtdStep(x as Parameters<typeof describeVtdStep>[0]) : describeStep(x as Parameters<typeof describeStep>[0])}`
  const via = (source: string): string => (res.arch === 'intel-vtd' ? ({ tlb: 'iotlb', atc: 'dev_tlb' } as Record<string, string>)[source] ?? source : source)
  for (const p of res.pieces) {
    for (const s of p.steps) lines.push(step(s))
    lines.push(`out iova=${hex(p.addr)} pa=${hex(p.out)} len=${p.len} perms=${describePerms(p.perms)} via=${via(p.source)}`)
  }
  for (const s of res.faultSteps ?? []) lines.push(step(s))
  if (res.ats) lines.push(`ats pa=${hex(res.ats.out)} size=${hex(res.ats.size)} perms=${describePerms(res.ats.perms)}`)
  if (res.data?.length && r.op === 'read') lines.push(`data ${res.data.toString('hex')}`)
  for (const f of res.findings) lines.push(describeFinding(f))
  return lines.map((l) => `${l}\n`).join('')
}
