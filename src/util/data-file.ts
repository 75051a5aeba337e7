import { readFileSync } from 'node:fs'
import { parse } from 'yaml'

/** A mistake in a schema or topology file: names the file, the key and what was expected. */
export class DataError extends Error {
  constructor(readonly file: string, readonly key: string, readonly expected: string, got?: string) {
    super(`${file}: ${key || '(top level)'}: expected ${expected}${got === undefined ? '' : `, got ${got}`}`)
    this.name = 'DataError'
  }
}

/** The most of a wrong string value a message repeats. */
const MAX_SHOWN = 60

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing'
  // addresses and register words are written in hex; say them back that way
  if (typeof v === 'bigint') return v > 9n ? `0x${v.toString(16)}` : `${v}`
  // a long string (a whole file that is not YAML mappings) is cut: the message stays one short line
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_SHOWN ? `${v.slice(0, MAX_SHOWN)}...` : v)
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  return String(v)
}

/**
 * A typed view of one value in a parsed data file, remembering where it came
 * from so that every complaint can say which file and key are wrong.
 * Integers are BigInt (64-bit register words do not fit a double).
 */
export class DataNode {
  constructor(readonly file: string, readonly key: string, readonly value: unknown) {}

  static load(file: string): DataNode {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (e) {
      throw new DataError(file, '', 'a readable file', (e as NodeJS.ErrnoException).code ?? String(e))
    }
    let value: unknown
    try {
      value = parse(text, { intAsBigInt: true, uniqueKeys: true })
    } catch (e) {
      const msg = e instanceof Error ? e.message.split('\n')[0] : String(e)
      throw new DataError(file, '', 'valid YAML', msg)
    }
    return new DataNode(file, '', value)
  }

  fail(expected: string): never {
    throw new DataError(this.file, this.key, expected, describe(this.value))
  }

  private childKey(k: string | number): string {
    if (typeof k === 'number') return `${this.key}[${k}]`
    return this.key ? `${this.key}.${k}` : k
  }

  isMapping(): boolean {
    return typeof this.value === 'object' && this.value !== null && !Array.isArray(this.value)
  }

  private mapping(): Record<string, unknown> {
    if (!this.isMapping()) this.fail('a mapping')
    return this.value as Record<string, unknown>
  }

  /** Rejects keys outside `allowed`, so that a typo never passes silently. */
  only(allowed: readonly string[]): this {
    for (const k of Object.keys(this.mapping())) {
      if (!allowed.includes(k)) {
        throw new DataError(this.file, this.childKey(k), `one of the keys ${allowed.join(', ')}`, `unknown key "${k}"`)
      }
    }
    return this
  }

  has(k: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.mapping(), k)
  }

  get(k: string): DataNode {
    const m = this.mapping()
    if (!Object.prototype.hasOwnProperty.call(m, k)) {
      throw new DataError(this.file, this.childKey(k), 'a value (the key is required)', 'nothing')
    }
    return new DataNode(this.file, this.childKey(k), m[k])
  }

  opt(k: string): DataNode | undefined {
    return this.has(k) ? this.get(k) : undefined
  }

  entries(): [string, DataNode][] {
    return Object.entries(this.mapping()).map(([k, v]) => [k, new DataNode(this.file, this.childKey(k), v)])
  }

  list(): DataNode[] {
    if (!Array.isArray(this.value)) this.fail('a list')
    return this.value.map((v, i) => new DataNode(this.file, this.childKey(i), v))
  }

  str(): string {
    if (typeof this.value === 'string') return this.value
    if (typeof this.value === 'bigint' || typeof this.value === 'number') return String(this.value)
    return this.fail('a string')
  }

  bool(): boolean {
    if (typeof this.value === 'boolean') return this.value
    return this.fail('true or false')
  }

  int(min?: bigint, max?: bigint): bigint {
    let v: bigint
    if (typeof this.value === 'bigint') v = this.value
    else if (typeof this.value === 'string' && /^(0x[0-9a-f]+|[0-9]+)$/i.test(this.value)) v = BigInt(this.value)
    else this.fail('an integer')
    const range = `an integer in [${min ?? '-inf'}, ${max === undefined ? 'inf' : `0x${max.toString(16)}`}]`
    if ((min !== undefined && v < min) || (max !== undefined && v > max)) this.fail(range)
    return v
  }

  num(min: number, max: number): number {
    return Number(this.int(BigInt(min), BigInt(max)))
  }
}
