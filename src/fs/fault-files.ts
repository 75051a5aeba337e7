/**
 * The kernel's fault-injection files, so that iommufd_fail_nth runs
 * unmodified under the shim (`iommufs exec`): sys/kernel/debug/failslab/ and
 * fail_page_alloc/ hold the switches that test sets, and
 * sys/kernel/debug/iommufd/fail-nth is what the shim opens for a program's
 * /proc/self/task/TID/fail-nth. Each thread reads and writes its own count.
 */
import { ErrnoError } from '../util/errno'
import { faultSwitches, taskFailNth } from '../util/fail-nth'
import { AttributeFile, FileNode, OpenFile, StaticDir } from './nodes'

/** A written number as kstrtoul reads it (base 0: decimal, 0x hex, 0 octal; one trailing newline). */
function kernelNumber(text: string, field: string, max: bigint): bigint {
  const t = text.replace(/\n$/, '')
  const m = /^(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(t)
  if (!m) throw new ErrnoError('EINVAL', `${field}: ${JSON.stringify(t)} is not a number`)
  const v = /^0[0-7]+$/.test(t) ? BigInt(`0o${t.slice(1)}`) : BigInt(t)
  if (v > max) throw new ErrnoError('ERANGE', `${field}: ${t} is above ${max}`)
  return v
}

/** A written boolean as kstrtobool reads it: y, Y, 1, on / n, N, 0, off. */
function kernelBool(text: string, field: string): boolean {
  const t = text.toLowerCase()
  if (t.startsWith('y') || t.startsWith('1') || t.startsWith('on')) return true
  if (t.startsWith('n') || t.startsWith('0') || t.startsWith('of')) return false
  throw new ErrnoError('EINVAL', `${field}: ${JSON.stringify(text)} is not Y or N`)
}

const ULONG_MAX = (1n << 64n) - 1n
const UINT_MAX = 0xffff_ffffn

function boolFile(get: () => boolean, set: (v: boolean) => void, field: string): AttributeFile {
  return new AttributeFile(
    () => (get() ? 'Y\n' : 'N\n'),
    (text) => set(kernelBool(text, field)),
    0o600,
  )
}

function verboseFile(s: { verbose: bigint }, field: string): AttributeFile {
  return new AttributeFile(
    () => `${s.verbose}\n`,
    (text) => {
      s.verbose = kernelNumber(text, field, ULONG_MAX)
    },
    0o600,
  )
}

/** sys/kernel/debug/failslab/: whether sleeping allocations (all of iommufd's) may be failed. */
export function failslabDir(): StaticDir {
  const s = faultSwitches.failslab
  return new StaticDir()
    .add('ignore-gfp-wait', boolFile(() => s.ignoreGfpWait, (v) => (s.ignoreGfpWait = v), 'failslab/ignore-gfp-wait'))
    .add('verbose', verboseFile(s, 'failslab/verbose'))
}

/** sys/kernel/debug/fail_page_alloc/: the same for page allocations (the IO page tables). */
export function failPageAllocDir(): StaticDir {
  const s = faultSwitches.failPageAlloc
  return new StaticDir()
    .add('ignore-gfp-wait', boolFile(() => s.ignoreGfpWait, (v) => (s.ignoreGfpWait = v), 'fail_page_alloc/ignore-gfp-wait'))
    .add('ignore-gfp-highmem', boolFile(() => s.ignoreGfpHighmem, (v) => (s.ignoreGfpHighmem = v), 'fail_page_alloc/ignore-gfp-highmem'))
    .add('verbose', verboseFile(s, 'fail_page_alloc/verbose'))
}

/** The calling thread's fail-nth: write N and its Nth counted step from then on fails; read what is left ("0" once it fired). */
export function failNthFile(): FileNode {
  return {
    kind: 'file',
    mode: 0o644,
    size: () => 0, // as a /proc file
    open: (): OpenFile => ({
      read: (pos, len, caller) => {
        const text = Buffer.from(`${taskFailNth.get(caller?.tid ?? 0)}\n`)
        return text.subarray(Math.min(pos, text.length), Math.min(pos + len, text.length))
      },
      write: (_pos, data, caller) => {
        if (!caller?.tid) throw new ErrnoError('EINVAL', 'fail-nth: the transport does not say which thread writes')
        taskFailNth.set(caller.tid, Number(kernelNumber(data.toString('utf8'), 'fail-nth', UINT_MAX)))
        return data.length
      },
      release: () => {},
    }),
  }
}
