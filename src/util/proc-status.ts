import * as fs from 'node:fs'

/** What the kernel knows of a process when it charges pinned pages to it (current->group_leader, current_user(), capable()). */
export interface ProcessCreds {
  /** The thread group (process) ID: threads share one mm. */
  readonly tgid: number
  /** The real user ID: its user_struct is what IOPT_PAGES_ACCOUNT_USER charges. */
  readonly uid: number
  /** CAP_IPC_LOCK in the effective set: pins are then charged to nobody's limit. */
  readonly ipcLock: boolean
  /** RLIMIT_MEMLOCK's soft limit in bytes (undefined: unlimited). */
  readonly memlock: bigint | undefined
  /** VmLck: the bytes the process's mm has locked by itself (mlock). */
  readonly vmLck: bigint
}

const CAP_IPC_LOCK = 14n

/** /proc/PID/`name` of a live process (or thread); undefined once it is gone. */
function readProc(pid: number, name: string): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/${name}`, 'utf8')
  } catch {
    return undefined
  }
}

export const readStatus = (pid: number): string | undefined => readProc(pid, 'status')

/** The thread group (process) a /proc/PID/status text names. */
export const tgidIn = (status: string): number | undefined => {
  const m = /^Tgid:\s*(\d+)$/m.exec(status)
  return m ? Number(m[1]) : undefined
}

/** When thread `tid` started (field 22 of /proc/TID/stat, in clock ticks since boot): a TID the kernel gives out again starts later. Undefined once it is gone. */
export function threadStart(tid: number): string | undefined {
  const stat = readProc(tid, 'stat')
  return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

/** /proc/PID/status and /proc/PID/limits of a live process (or thread); undefined once it is gone. */
export function processCreds(pid: number): ProcessCreds | undefined {
  const status = readStatus(pid)
  const limits = status === undefined ? undefined : readProc(pid, 'limits')
  if (status === undefined || limits === undefined) return undefined
  const field = (name: string): string => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? ''
  const memlock = /^Max locked memory\s+(\S+)/m.exec(limits)?.[1]
  return {
    tgid: tgidIn(status) ?? pid,
    uid: Number(field('Uid').split(/\s+/)[0]),
    ipcLock: ((BigInt(`0x${field('CapEff') || '0'}`) >> CAP_IPC_LOCK) & 1n) === 1n,
    memlock: memlock === undefined || memlock === 'unlimited' ? undefined : BigInt(memlock),
    vmLck: BigInt(/^(\d+)/.exec(field('VmLck'))?.[1] ?? '0') * 1024n,
  }
}
