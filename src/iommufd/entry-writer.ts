/**
 * The Linux SMMUv3 driver's entry writer (arm_smmu_write_entry), shared by
 * its STEs and CDs: an entry of 64-bit words the SMMU may read at any time
 * (atomically only word by word) goes from `cur` to `target` without a
 * moment it could read a mix of both.
 */

const ALL = (1n << 64n) - 1n

export interface EntryKind {
  /** The bits the SMMU reads in an entry with these words (get_used). */
  used(e: readonly bigint[]): bigint[]
  /** Bits used by both entries that may change in any order (get_update_safe); none if absent. */
  safe?(cur: readonly bigint[], target: readonly bigint[]): bigint[]
}

/** Each word the driver stores, and the invalidation (+ CMD_SYNC) after each step that stored something. */
export interface EntrySink {
  store(i: number, v: bigint): void
  sync(): void
}

/**
 * arm_smmu_entry_qword_diff: the words whose used bits still differ from
 * the target once every bit the current entry ignores has its new value
 * (`update`, returned alongside).
 */
function qwordDiff(kind: EntryKind, cur: readonly bigint[], target: readonly bigint[]): { diff: number[]; update: bigint[] } {
  const curUsed = kind.used(cur)
  const targetUsed = kind.used(target)
  const safe = kind.safe?.(cur, target)
  const update: bigint[] = []
  const diff: number[] = []
  cur.forEach((w, i) => {
    // safe bits count only where both entries use them; elsewhere the unused rule orders them
    const held = curUsed[i] & ~((safe?.[i] ?? 0n) & targetUsed[i] & curUsed[i])
    update.push((w & held) | (target[i] & ~held & ALL))
    if ((update[i] & targetUsed[i]) !== target[i]) diff.push(i)
  })
  return { diff, update }
}

/**
 * One word changing in a way that matters: the ignored bits first, then
 * that word, then the bits now unused. More than one: V cleared (word 0),
 * the other words, then word 0. Each step that stores anything syncs.
 */
export function writeEntry(kind: EntryKind, cur: bigint[], target: readonly bigint[], sink: EntrySink): void {
  const set = (from: readonly bigint[], start: number, len: number): void => {
    let changed = false
    for (let i = start; i < start + len; i++) {
      if (cur[i] === from[i]) continue
      cur[i] = from[i]
      sink.store(i, from[i])
      changed = true
    }
    if (changed) sink.sync()
  }
  const { diff, update } = qwordDiff(kind, cur, target)
  const n = cur.length
  if (diff.length === 1) {
    const critical = diff[0]
    update[critical] = cur[critical]
    set(update, 0, n)
    set(target, critical, 1)
    set(target, 0, n)
  } else if (diff.length > 1) {
    update[0] = 0n
    set(update, 0, 1)
    set(target, 1, n - 1)
    set(target, 0, 1)
  } else set(target, 0, n)
}
