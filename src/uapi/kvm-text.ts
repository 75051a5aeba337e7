import { pathIsServedHere } from '../util/own-mounts'
import { hex } from '../hw/bits'
import { Kvm, KvmSession } from '../kvm/kvm'
import { Stage2Prot } from '../kvm/stage2'
import { Backing, FileBacking, ProcessBacking, describePinProblem } from '../memory/backing'
import { ErrnoError } from '../util/errno'

/**
 * dev/kvm's text protocol (an iommufs extension; docs/kvm.md), one request
 * a line, one reply a line ("ok key=value ..." or "err ERRNO message"):
 *
 *   CREATE_VM [pgtable=arm64|ept] [ipa_bits=N]
 *   MAP vm=N gpa=A size=S (path=FILE [offset=O] | userspace_addr=VA) [perm=rw|r]
 *   UNMAP vm=N gpa=A size=S          whole memslots
 *   ZAP vm=N gpa=A size=S            clear the leaves; the memslots stay
 *   PROTECT vm=N gpa=A size=S perm=r|rw
 *   PREFAULT vm=N gpa=A size=S       fault the memslots' pages back in
 *   CREATE_TDP_FD vm=N [as_id=0] [mode=0] [pad=0]
 *   INFO vm=N
 *
 * Names take an optional KVM_ prefix, any case.
 */

const FIELDS: Record<string, { required: string[]; optional: string[] }> = {
  CREATE_VM: { required: [], optional: ['pgtable', 'ipa_bits'] },
  MAP: { required: ['vm', 'gpa', 'size'], optional: ['path', 'offset', 'userspace_addr', 'perm'] },
  UNMAP: { required: ['vm', 'gpa', 'size'], optional: [] },
  ZAP: { required: ['vm', 'gpa', 'size'], optional: [] },
  PROTECT: { required: ['vm', 'gpa', 'size', 'perm'], optional: [] },
  PREFAULT: { required: ['vm', 'gpa', 'size'], optional: [] },
  CREATE_TDP_FD: { required: ['vm'], optional: ['as_id', 'mode', 'pad'] },
  INFO: { required: ['vm'], optional: [] },
}

const U64 = (1n << 64n) - 1n

function num(key: string, v: string): bigint {
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(v)) throw new ErrnoError('EINVAL', `${key}=${v}: not a number`)
  const n = BigInt(v)
  if (n > U64) throw new ErrnoError('EINVAL', `${key}=${v}: does not fit 64 bits`)
  return n
}

function small(key: string, v: string, max: number): number {
  const n = num(key, v)
  if (n > BigInt(max)) throw new ErrnoError('EINVAL', `${key}=${v}: at most ${max}`)
  return Number(n)
}

function perm(v: string): Stage2Prot {
  const p = v.toLowerCase()
  if (p === 'rw' || p === 'wr') return { read: true, write: true }
  if (p === 'r') return { read: true, write: false }
  throw new ErrnoError('EINVAL', `perm=${v}: r or rw`)
}

/** The request's name and its key=value fields, checked against what the name takes. */
export function parseKvmLine(line: string): { name: string; f: Map<string, string> } {
  const [verb, ...tokens] = line.trim().split(/\s+/)
  const name = (verb ?? '').toUpperCase().replace(/^KVM_/, '')
  const spec = FIELDS[name]
  if (!spec) throw new ErrnoError('ENOTTY', `"${verb ?? ''}": not a dev/kvm request (${Object.keys(FIELDS).join(', ')})`)
  const f = new Map<string, string>()
  for (const tok of tokens) {
    const eq = tok.indexOf('=')
    if (eq <= 0) throw new ErrnoError('EINVAL', `"${tok}": expected key=value`)
    const key = tok.slice(0, eq).toLowerCase()
    if (![...spec.required, ...spec.optional].includes(key)) throw new ErrnoError('EINVAL', `${key}: not a field of ${name} (fields: ${[...spec.required, ...spec.optional].join(', ') || 'none'})`)
    if (f.has(key)) throw new ErrnoError('EINVAL', `${key}: given twice`)
    f.set(key, tok.slice(eq + 1))
  }
  for (const r of spec.required) if (!f.has(r)) throw new ErrnoError('EINVAL', `${r}: missing`)
  return { name, f }
}

/** Opens what a MAP names, after every check that needs nothing opened; the caller releases it if the map fails. */
function openBacking(f: Map<string, string>, size: bigint, pid: number): { backing: Backing; offset: bigint } {
  const path = f.get('path')
  const uva = f.get('userspace_addr')
  if ((path === undefined) === (uva === undefined)) throw new ErrnoError('EINVAL', 'path/userspace_addr: give exactly one (a file, or the caller\'s memory)')
  if (uva !== undefined) {
    if (f.has('offset')) throw new ErrnoError('EINVAL', 'offset: only with path=')
    const va = num('userspace_addr', uva)
    if (va % 0x1000n) throw new ErrnoError('EINVAL', `userspace_addr=${uva}: not 4K-aligned`)
    if (!pid) throw new ErrnoError('EINVAL', 'userspace_addr: the caller\'s process is unknown (the libfuse3 backend reports it)')
    const p = ProcessBacking.pinProblem(pid, va, size)
    if (p === 'gone') throw new ErrnoError('EFAULT', `userspace_addr=${uva}: cannot read process ${pid}'s mappings`)
    if (p) throw new ErrnoError('EFAULT', `userspace_addr=${uva}: ${describePinProblem(p)} in process ${pid}`)
    return { backing: ProcessBacking.open(pid), offset: va }
  }
  const offset = num('offset', f.get('offset') ?? '0')
  if (offset % 0x1000n) throw new ErrnoError('EINVAL', `offset=${hex(offset)}: not 4K-aligned`)
  // this server answers for its own mount's files: opening one would wait on itself
  if (pathIsServedHere(path!)) throw new ErrnoError('EINVAL', `path=${path}: a file of this iommufs mount cannot back guest memory`)
  let file: FileBacking
  try {
    file = FileBacking.open(path!)
  } catch (e) {
    throw new ErrnoError('EBADF', `path=${path}: ${(e as NodeJS.ErrnoException).code ?? 'cannot open'}`)
  }
  const fileSize = file.size()
  if (offset + size > fileSize) {
    file.release()
    throw new ErrnoError('EINVAL', `size=${hex(size)}: offset + size is beyond the end of ${path} (${hex(fileSize)} bytes)`)
  }
  return { backing: file, offset }
}

/** Runs one request line for the opener `s` (`pid`: who wrote it); returns the reply line without its newline. */
export function kvmRequest(kvm: Kvm, s: KvmSession, line: string, pid: number): string {
  const { name, f } = parseKvmLine(line)
  if (name === 'CREATE_VM') {
    const pg = (f.get('pgtable') ?? 'arm64').toLowerCase()
    if (pg !== 'arm64' && pg !== 'ept') throw new ErrnoError('EINVAL', `pgtable=${f.get('pgtable')}: arm64 (VMSAv8-64 stage 2, for SMMUv3) or ept (for VT-d)`)
    const ipaBits = f.has('ipa_bits') ? small('ipa_bits', f.get('ipa_bits')!, 64) : pg === 'arm64' ? 40 : 48
    const vm = kvm.createVm(s, { format: pg, ipaBits })
    return `ok vm=${vm.id} pgtable=${pg} ipa_bits=${vm.stage2.ipaBits} root=${hex(vm.stage2.root)} path=/sys/kernel/debug/kvm/${vm.name}`
  }
  const vm = kvm.vm(s, small('vm', f.get('vm')!, 0x7fffffff))
  if (name === 'CREATE_TDP_FD') {
    const fd = kvm.createTdp(vm, { asId: small('as_id', f.get('as_id') ?? '0', 0xffffffff), mode: small('mode', f.get('mode') ?? '0', 0xffffffff), pad: small('pad', f.get('pad') ?? '0', 0xffffffff) })
    return `ok fd=${fd}`
  }
  if (name === 'INFO') {
    return `ok vm=${vm.id} pgtable=${vm.stage2.format} ipa_bits=${vm.stage2.ipaBits} root=${hex(vm.stage2.root)} memslots=${vm.memslots.length} tdp_fd=${vm.tdp ?? '-'} importers=${vm.importers.size} drop_invalidate=${vm.dropNotifications}`
  }
  const gpa = num('gpa', f.get('gpa')!)
  const size = num('size', f.get('size')!)
  switch (name) {
    case 'MAP': {
      const prot = perm(f.get('perm') ?? 'rw')
      // every check that needs nothing opened comes first
      kvm.checkMap(vm, size)
      vm.checkFree(gpa, size)
      const { backing, offset } = openBacking(f, size, pid)
      try {
        kvm.map(vm, gpa, size, backing, offset, prot)
      } catch (e) {
        backing.release()
        throw e
      }
      const slot = vm.memslots.find((m) => m.gpa === gpa)!
      return `ok vm=${vm.id} gpa=${hex(gpa)} size=${hex(size)} pa=${hex(slot.pa)} perm=${prot.write ? 'rw' : 'r'}`
    }
    case 'UNMAP':
      return `ok memslots=${vm.unmap(gpa, size)}`
    case 'ZAP':
      return `ok zapped=${vm.zap(gpa, size) ? 1 : 0}`
    case 'PROTECT':
      vm.protect(gpa, size, perm(f.get('perm')!))
      return 'ok'
    default:
      return `ok pages=${vm.prefault(gpa, size)}`
  }
}
