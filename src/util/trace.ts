/**
 * The live trace: one line per notable event (a handler bug, a request, an
 * injected fault). Kept in a bounded ring for the debug tree's trace files and
 * optionally echoed to a stream (the server's stderr).
 */
export class TraceLog {
  private lines: string[] = []
  private seq = 0
  private readonly listeners = new Set<(line: string) => void>()

  constructor(private readonly capacity = 4096, private readonly echo?: (line: string) => void) {}

  emit(tag: string, message: string): void {
    const line = `[${(++this.seq).toString().padStart(6)}] ${tag}: ${message}`
    this.lines.push(line)
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity)
    this.echo?.(line)
    for (const l of this.listeners) l(line)
  }

  /** The lines still held, oldest first. */
  recent(): readonly string[] {
    return this.lines
  }

  get count(): number {
    return this.seq
  }
}
