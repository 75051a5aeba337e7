/**
 * The live trace: one line per notable event (a handler bug, a request, an
 * injected fault). Kept in a bounded ring for the debug tree's trace file and
 * optionally echoed to a stream (the server's stderr).
 */
export class TraceLog {
  private readonly ring: string[] = []
  /** Where the next line goes once the ring is full. */
  private next = 0
  private seq = 0

  constructor(private readonly capacity = 4096, private readonly echo?: (line: string) => void) {}

  emit(tag: string, message: string): void {
    const line = `[${(++this.seq).toString().padStart(6)}] ${tag}: ${message}`
    if (this.ring.length < this.capacity) this.ring.push(line)
    else {
      this.ring[this.next] = line
      this.next = (this.next + 1) % this.capacity
    }
    this.echo?.(line)
  }

  /** The lines still held, oldest first. */
  recent(): readonly string[] {
    return this.ring.length < this.capacity ? this.ring : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)]
  }

  get count(): number {
    return this.seq
  }
}
