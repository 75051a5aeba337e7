/**
 * Recordings: every request of every context on a mount, with the reply it
 * got, written as a bash script that replays them against a fresh mount and
 * stops at the first reply that differs. Format in docs/record-replay.md.
 */
import { closeSync, openSync, writeSync } from 'node:fs'

export const RECORDING_FORMAT = 1
/** The line that ends the preamble; everything after it is steps. */
export const STEPS_MARKER = '# ---- steps ----'

/** What a session tells the recording. */
export interface RecordedSession {
  /** One request (text as sent, or a frame in its text form) and its reply line. */
  request(text: string, reply: string): void
  close(): void
}

export interface RequestRecorder {
  /** A node was opened (`dev/iommu`, `dev/vfio/devices/vfio3`, relative to the mount). */
  open(node: string): RecordedSession
}

/** A single-quoted bash word. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}

function preamble(meta: Record<string, string>): string {
  return `#!/usr/bin/env bash
# iommufs recording, format ${RECORDING_FORMAT}: every request of every context, in the
# order the server answered them, each with the reply it got.
# Replay: iommufs replay FILE [--mount DIR], or: bash FILE MOUNT (a fresh mount).
${Object.entries(meta)
  .map(([k, v]) => `# ${k}: ${v}\n`)
  .join('')}set -u
cd "\${1:?usage: bash $0 MOUNT}" || exit 2
# open FD NODE / send FD REQUEST EXPECTED-REPLY / close FD
open() { eval "exec $1<>\\"\\$2\\"" || { echo "replay: line \${BASH_LINENO[0]}: cannot open $2" >&2; exit 1; }; }
close() { eval "exec $1>&-"; }
send() {
  local got=
  printf '%s\\n' "$2" >&"$1" 2>/dev/null && IFS= read -r -u "$1" got
  if [ "$got" != "$3" ]; then
    printf 'replay: line %s: divergence\\n  request:  %s\\n  expected: %s\\n  actual:   %s\\n' "\${BASH_LINENO[0]}" "$2" "$3" "\${got:-(no reply)}" >&2
    exit 1
  fi
}
${STEPS_MARKER}
`
}

/**
 * Writes a recording to `file` as requests happen (synchronously, so that a
 * server killed midway leaves every answered request on disk). Each open
 * node gets the lowest free descriptor number from 3.
 */
export class Recording implements RequestRecorder {
  private readonly fd: number
  private readonly used = new Set<number>()

  constructor(file: string, meta: Record<string, string> = {}) {
    this.fd = openSync(file, 'w')
    this.write(preamble(meta))
  }

  private write(text: string): void {
    writeSync(this.fd, text)
  }

  open(node: string): RecordedSession {
    let n = 3
    while (this.used.has(n)) n++
    this.used.add(n)
    this.write(`open ${n} ${node}\n`)
    let open = true
    return {
      request: (text, reply) => {
        if (open) this.write(`send ${n} ${shellQuote(text)} ${shellQuote(reply)}\n`)
      },
      close: () => {
        if (!open) return
        open = false
        this.used.delete(n)
        this.write(`close ${n}\n`)
      },
    }
  }

  end(): void {
    this.write('echo "replay: all replies matched" >&2\n')
    closeSync(this.fd)
  }
}

export interface RecordingStep {
  readonly line: number
  readonly op: 'open' | 'send' | 'close'
  readonly fd: number
  readonly node?: string
  readonly request?: string
  readonly reply?: string
}

export interface ParsedRecording {
  readonly meta: ReadonlyMap<string, string>
  readonly steps: readonly RecordingStep[]
}

/** A recording that cannot be replayed: names the line and what is wrong. */
export class RecordingError extends Error {
  constructor(readonly file: string, readonly line: number, why: string) {
    super(`${file}: line ${line}: ${why}`)
  }
}

/** Splits `rest` into single-quoted bash words ('\'' inside allowed). */
function quotedWords(rest: string): string[] | undefined {
  const words: string[] = []
  let i = 0
  while (i < rest.length) {
    if (rest[i] === ' ') {
      i++
      continue
    }
    let w = ''
    if (rest[i] !== "'") return undefined
    for (;;) {
      const end = rest.indexOf("'", i + 1)
      if (end < 0) return undefined
      w += rest.slice(i + 1, end)
      i = end + 1
      if (rest.startsWith("\\''", i)) {
        w += "'"
        i += 2
        continue
      }
      break
    }
    if (i < rest.length && rest[i] !== ' ') return undefined
    words.push(w)
  }
  return words
}

const NODE = /^dev\/(iommu|vfio\/devices\/vfio\d+)$/

/**
 * Checks a recording before it runs: the marker line, then only `open`,
 * `send`, `close`, comments and blank lines, each on a descriptor that is
 * open (or, for open, not); the closing echo line is allowed last.
 */
export function parseRecording(file: string, text: string): ParsedRecording {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  if (lines[0] !== '#!/usr/bin/env bash') throw new RecordingError(file, 1, 'not an iommufs recording (expected "#!/usr/bin/env bash")')
  const marker = lines.indexOf(STEPS_MARKER)
  if (marker < 0) throw new RecordingError(file, lines.length, `no "${STEPS_MARKER}" line: not an iommufs recording`)
  const meta = new Map<string, string>()
  for (const l of lines.slice(0, marker)) {
    const m = /^# (\w+): (.*)$/.exec(l)
    if (m) meta.set(m[1], m[2])
  }
  const open = new Set<number>()
  const steps: RecordingStep[] = []
  for (let i = marker + 1; i < lines.length; i++) {
    const n = i + 1
    const l = lines[i]
    if (!l.trim() || l.startsWith('#')) continue
    if (l === 'echo "replay: all replies matched" >&2' && i === lines.length - 1) continue
    const m = /^(open|send|close) (\d+)(?: (.*))?$/.exec(l)
    if (!m) throw new RecordingError(file, n, `expected "open FD NODE", "send FD 'REQUEST' 'REPLY'" or "close FD", got ${JSON.stringify(l.slice(0, 60))}`)
    const op = m[1] as RecordingStep['op']
    const fd = Number(m[2])
    const rest = m[3] ?? ''
    if (fd < 3 || fd > 1000) throw new RecordingError(file, n, `descriptor ${fd}: expected 3..1000`)
    if (op === 'open') {
      if (!NODE.test(rest)) throw new RecordingError(file, n, `open ${fd}: expected a node dev/iommu or dev/vfio/devices/vfioN, got ${JSON.stringify(rest)}`)
      if (open.has(fd)) throw new RecordingError(file, n, `open ${fd}: descriptor ${fd} is already open`)
      open.add(fd)
      steps.push({ line: n, op, fd, node: rest })
      continue
    }
    if (!open.has(fd)) throw new RecordingError(file, n, `${op} ${fd}: descriptor ${fd} is not open`)
    if (op === 'close') {
      if (rest) throw new RecordingError(file, n, `close ${fd}: takes nothing after the descriptor`)
      open.delete(fd)
      steps.push({ line: n, op, fd })
      continue
    }
    const words = quotedWords(rest)
    if (!words || words.length !== 2) throw new RecordingError(file, n, `send ${fd}: expected two single-quoted words, the request and the expected reply`)
    if (!/^(ok|err)( |$)/.test(words[1])) throw new RecordingError(file, n, `send ${fd}: the expected reply must start with "ok" or "err", got ${JSON.stringify(words[1].slice(0, 40))}`)
    steps.push({ line: n, op, fd, request: words[0], reply: words[1] })
  }
  return { meta, steps }
}
