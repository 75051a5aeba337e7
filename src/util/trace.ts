import { LIMITS } from './limits'

/** A line cut to the trace's line limit, marked so a reader knows. */
function clip(line: string): string {
  const max = LIMITS.traceLineLength.max
  return line.length > max ? `${line.slice(0, max - 3)}...` : line
}

/** One trace event. */
export interface TraceRecord {
  readonly seq: number
  /** Wall-clock time, ms since the epoch. */
  readonly time: number
  /** Seconds since the trace began (the mount started), to the microsecond. */
  readonly uptime: number
  /** The requesting process, when the transport knows it. */
  readonly pid?: number
  readonly tag: string
  readonly message: string
}

/** `[   seq]     0.001234 [pid N ]tag: message`: the sequence number, the time since the trace began, who asked, what happened. */
export function formatTrace(r: TraceRecord): string {
  return clip(`[${r.seq.toString().padStart(6)}] ${r.uptime.toFixed(6).padStart(12)} ${r.pid === undefined ? '' : `pid ${r.pid} `}${r.tag}: ${r.message}`)
}

/**
 * The live trace: one line per notable event (a handler bug, a request, an
 * injected fault). Kept in a bounded ring for the debug tree's trace files,
 * offered to listeners as it happens (trace_pipe), and optionally echoed to a
 * stream (the server's stderr).
 */
export class TraceLog {
  private readonly ring: TraceRecord[] = []
  /** performance.now() when the trace began: a double, so a line's uptime needs no BigInt arithmetic. */
  private readonly start = performance.now()
  /** Where the next line goes once the ring is full. */
  private next = 0
  private seq = 0
  private readonly listeners = new Set<() => void>()

  constructor(private readonly capacity: number = LIMITS.traceLines.max, private readonly echo?: (line: string, tag: string) => void) {}

  emit(tag: string, message: string, pid?: number): void {
    // every request emits a line: no spread, no formatting unless someone echoes, no copy of an empty listener set
    const uptime = Math.floor((performance.now() - this.start) * 1000) / 1e6
    const rec: TraceRecord = pid === undefined ? { seq: ++this.seq, time: Date.now(), uptime, tag, message: clip(message) } : { seq: ++this.seq, time: Date.now(), uptime, pid, tag, message: clip(message) }
    if (this.ring.length < this.capacity) this.ring.push(rec)
    else {
      this.ring[this.next] = rec
      this.next = (this.next + 1) % this.capacity
    }
    if (this.echo) this.echo(formatTrace(rec), tag)
    if (this.listeners.size) for (const l of [...this.listeners]) l()
  }

  /** The lines still held, oldest first. */
  recent(): readonly string[] {
    return this.records().map(formatTrace)
  }

  /** The events still held, oldest first (trace.json). */
  records(): readonly TraceRecord[] {
    return this.ring.length < this.capacity ? this.ring : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)]
  }

  /** The lines numbered above `seq` that are still held, oldest first. */
  since(seq: number): readonly string[] {
    return this.recordsSince(seq).map(formatTrace)
  }

  private recordsSince(seq: number): readonly TraceRecord[] {
    const n = Math.max(0, Math.min(this.seq - seq, this.ring.length))
    if (this.ring.length < this.capacity) return this.ring.slice(this.ring.length - n)
    // the newest n lines end just before `next`, wrapping round the ring
    const start = (this.next - n + this.capacity) % this.capacity
    return start + n <= this.capacity ? this.ring.slice(start, start + n) : [...this.ring.slice(start), ...this.ring.slice(0, (start + n) % this.capacity)]
  }

  /** Calls `listener` after every line until the returned function is called. */
  onEmit(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** The number of the last line emitted (0 before any). */
  get count(): number {
    return this.seq
  }
}
