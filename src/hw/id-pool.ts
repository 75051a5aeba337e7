/** Lowest-free allocation of small hardware IDs (VMIDs, ASIDs, domain IDs) in [first, limit). */
export class IdPool {
  private readonly used = new Set<number>()

  constructor(private readonly first: number, private readonly limit: number) {}

  alloc(): number | undefined {
    for (let id = this.first; id < this.limit; id++) {
      if (!this.used.has(id)) {
        this.used.add(id)
        return id
      }
    }
    return undefined
  }

  free(id: number): void {
    this.used.delete(id)
  }

  /** Whether alloc() would find an ID. */
  get full(): boolean {
    return this.used.size >= this.limit - this.first
  }

  get inUse(): number {
    return this.used.size
  }
}
