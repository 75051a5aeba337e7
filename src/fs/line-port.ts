import { ErrnoError } from '../util/errno'
import { LIMITS } from '../util/limits'
import { TraceLog } from '../util/trace'
import { Caller, OpenFile } from './nodes'

/** What one request-line port answers, and how it says so. */
export interface LinePort {
  readonly trace: TraceLog
  /** The trace lines' tag. */
  readonly tag: string
  /** The refusal of what is buffered so far when it can no longer become a line, if any. */
  tooLong(pending: string): ErrnoError | undefined
  /** The reply to one request line (ending in a newline); an ErrnoError refuses it. */
  answer(line: string, caller?: Caller): string
  /** The request as the trace shows it. */
  shown(line: string): string
  /** Whether trace lines name the requesting process. */
  readonly tracePid: boolean
}

/**
 * One open of a request-line port (dev/kvm, a device's DMA port): written
 * bytes are cut into lines, and each line but blank ones and comments is
 * answered; the reply is read back on the same descriptor, from the end of
 * the write that asked. A refused line fails its write with the errno, and
 * the reply "err ERRNO message" is read from where that write began (a failed
 * write does not move the file position). A bug is EIO and a trace line.
 */
export function linePortFile(port: LinePort): Omit<OpenFile, 'release'> {
  let pending = ''
  let reply = Buffer.alloc(0)
  let replyBase = 0
  const fail = (pos: number, e: ErrnoError, line: string): never => {
    reply = Buffer.from(`err ${e.errno} ${e.message}\n`)
    replyBase = pos
    pending = ''
    port.trace.emit(port.tag, `${port.shown(line)} -> err ${e.errno} ${e.message}`)
    throw e
  }
  return {
    read: (pos, len) => {
      const off = pos >= replyBase ? pos - replyBase : pos
      return reply.subarray(Math.min(off, reply.length), Math.min(off + len, reply.length))
    },
    write: (pos, data, caller) => {
      pending += data.toString('latin1')
      const refused = port.tooLong(pending)
      if (refused) fail(pos, refused, pending.slice(0, 60))
      // all of a write's lines are answered before any other user's request: bound how many, before any runs
      const max = LIMITS.requestsPerWrite.max
      for (let nl = pending.length > max ? pending.indexOf('\n') : -1, n = 0; nl >= 0; nl = pending.indexOf('\n', nl + 1)) {
        if (++n > max) fail(pos, new ErrnoError(LIMITS.requestsPerWrite.errno, `more than ${max} request lines in one write; send them in several writes`), pending.slice(0, 60))
      }
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        const line = pending.slice(0, nl).trim()
        pending = pending.slice(nl + 1)
        if (!line || line.startsWith('#')) continue
        replyBase = pos + data.length
        try {
          reply = Buffer.from(port.answer(line, caller))
        } catch (e) {
          if (e instanceof ErrnoError) fail(pos, e, line)
          port.trace.emit('bug', `${port.tag}: ${e instanceof Error ? e.stack?.split('\n').slice(0, 3).join(' | ') : String(e)}`)
          fail(pos, new ErrnoError('EIO', 'internal error in iommufs (the trace has the details)'), line)
        }
        const first = reply.indexOf(10)
        port.trace.emit(port.tag, `${port.shown(line)} -> ${reply.toString('utf8', 0, first < 0 ? reply.length : first)}`, port.tracePid ? caller?.pid || undefined : undefined)
      }
      return data.length
    },
  }
}
