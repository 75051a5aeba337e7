import { RingIndex } from '../ring'
import { Command, describeCommand } from './commands'

/**
 * The host's SMMUv3 command queue, as the host driver fills it: commands go
 * in at PROD and the hardware consumes them at once, so PROD == CONS after
 * each batch. Old entries stay in the ring until overwritten, for inspection.
 */
export class HostCommandQueue {
  readonly ring: RingIndex
  private readonly slots: (Command | undefined)[]
  /** Who issued each slot's command, where not the host driver on its own behalf (KVM's importer hook). */
  private readonly sources: (string | undefined)[]
  prod = 0
  cons = 0
  /** Commands issued since the queue was created. */
  issued = 0

  /** `consume` is the hardware acting on each command (cache invalidation), in queue order. */
  constructor(readonly owner: string, log2size: number, private readonly consume?: (cmd: Command) => void) {
    this.ring = new RingIndex(log2size)
    this.slots = new Array<Command | undefined>(this.ring.size)
    this.sources = new Array<string | undefined>(this.ring.size)
  }

  /** Writes a batch at PROD and lets the hardware consume it; `source` names who asked for it, when not the driver itself. */
  issue(cmds: readonly Command[], source?: string): void {
    for (const c of cmds) {
      this.slots[this.ring.index(this.prod)] = c
      this.sources[this.ring.index(this.prod)] = source
      this.prod = this.ring.next(this.prod)
      this.issued++
      this.consume?.(c)
    }
    this.cons = this.prod
  }

  /** The last `n` commands, oldest first, with their slot index. */
  recent(n = this.ring.size): { index: number; cmd: Command }[] {
    const out: { index: number; cmd: Command }[] = []
    const count = Math.min(n, this.issued, this.ring.size)
    let pos = (this.prod - count + this.ring.size * 2) % (this.ring.size * 2)
    for (let i = 0; i < count; i++) {
      const index = this.ring.index(pos)
      out.push({ index, cmd: this.slots[index]! })
      pos = this.ring.next(pos)
    }
    return out
  }

  /** The queue as plain data (cmdq.json): registers and the recent commands, words as hex strings. */
  json(): unknown {
    return {
      iommu: this.owner,
      entries: this.ring.size,
      prod: this.prod,
      cons: this.cons,
      issued: this.issued,
      commands: this.recent().map(({ index, cmd }) => ({
        index,
        qw0: `0x${cmd[0].toString(16)}`,
        qw1: `0x${cmd[1].toString(16)}`,
        command: describeCommand(cmd),
        ...(this.sources[index] ? { source: this.sources[index] } : {}),
      })),
    }
  }

  /** In the style of the VT-d invalidation_queue debugfs file: raw words and the decoded command. */
  dump(): string {
    const head = [
      `Command queue on IOMMU: ${this.owner}`,
      ` Entries: ${this.ring.size}\tPROD: ${RingIndex.hex(this.prod)}\tCONS: ${RingIndex.hex(this.cons)}\tIssued: ${this.issued}`,
      'Index\tqw0\t\t\tqw1\t\t\tcommand',
    ]
    const rows = this.recent().map(
      ({ index, cmd }) =>
        `${String(index).padStart(5)}\t${cmd[0].toString(16).padStart(16, '0')}\t${cmd[1].toString(16).padStart(16, '0')}\t${describeCommand(cmd)}${this.sources[index] ? `\t[${this.sources[index]}]` : ''}`,
    )
    return [...head, ...rows].join('\n') + '\n'
  }
}
