import { ErrnoError } from '../../util/errno'
import { Bits, bits, get, hex, set } from '../bits'

/** A 16-byte SMMUv3 command: two 64-bit words. */
export type Command = readonly [bigint, bigint]

/** Command fields, each named once: word and bit range. `address` fields keep byte addresses in place. */
interface CmdField {
  readonly key: string
  readonly word: 0 | 1
  readonly bits: Bits
  readonly address?: boolean
}

const F = {
  op: { key: 'op', word: 0, bits: bits('OP', 7, 0) },
  ssv: { key: 'ssv', word: 0, bits: bits('SSV', 11) },
  ssid: { key: 'ssid', word: 0, bits: bits('SSID', 31, 12) },
  sid: { key: 'sid', word: 0, bits: bits('SID', 63, 32) },
  vmid: { key: 'vmid', word: 0, bits: bits('VMID', 47, 32) },
  asid: { key: 'asid', word: 0, bits: bits('ASID', 63, 48) },
  num: { key: 'num', word: 0, bits: bits('NUM', 16, 12) },
  scale: { key: 'scale', word: 0, bits: bits('SCALE', 24, 20) },
  global: { key: 'global', word: 0, bits: bits('GLOBAL', 9) },
  cs: { key: 'cs', word: 0, bits: bits('CS', 13, 12) },
  msh: { key: 'msh', word: 0, bits: bits('MSH', 23, 22) },
  msiattr: { key: 'msiattr', word: 0, bits: bits('MSIATTR', 27, 24) },
  msidata: { key: 'msidata', word: 0, bits: bits('MSIDATA', 63, 32) },
  leaf: { key: 'leaf', word: 1, bits: bits('LEAF', 0) },
  ttl: { key: 'ttl', word: 1, bits: bits('TTL', 9, 8) },
  tg: { key: 'tg', word: 1, bits: bits('TG', 11, 10) },
  addr: { key: 'addr', word: 1, bits: bits('ADDR', 63, 12), address: true },
  range: { key: 'range', word: 1, bits: bits('RANGE', 4, 0) },
  size: { key: 'size', word: 1, bits: bits('SIZE', 5, 0) },
  msiaddr: { key: 'msiaddr', word: 1, bits: bits('MSIADDR', 51, 2), address: true },
  resp: { key: 'resp', word: 1, bits: bits('RESP', 13, 12) },
  // CMD_RESUME's action sits in word 0 (Linux CMDQ_RESUME_0_RESP: TERM 0, RETRY 1, ABORT 2)
  action: { key: 'action', word: 0, bits: bits('ACTION', 13, 12) },
  grpid: { key: 'grpid', word: 1, bits: bits('GRPID', 8, 0) },
  stag: { key: 'stag', word: 1, bits: bits('STAG', 15, 0) },
} as const satisfies Record<string, CmdField>

export interface Opcode {
  readonly name: string
  readonly code: number
  readonly fields: readonly CmdField[]
}

const TLBI_RANGE = [F.num, F.scale, F.leaf, F.ttl, F.tg, F.addr]

/** The SMMUv3 command set (opcode, name, fields). */
export const OPCODES: readonly Opcode[] = [
  { name: 'PREFETCH_CFG', code: 0x01, fields: [F.ssv, F.ssid, F.sid] },
  { name: 'PREFETCH_ADDR', code: 0x02, fields: [F.ssv, F.ssid, F.sid, F.addr] },
  { name: 'CFGI_STE', code: 0x03, fields: [F.sid, F.leaf] },
  { name: 'CFGI_ALL', code: 0x04, fields: [F.sid, F.range] },
  { name: 'CFGI_CD', code: 0x05, fields: [F.ssid, F.sid, F.leaf] },
  { name: 'CFGI_CD_ALL', code: 0x06, fields: [F.sid] },
  { name: 'TLBI_NH_ALL', code: 0x10, fields: [F.vmid] },
  { name: 'TLBI_NH_ASID', code: 0x11, fields: [F.vmid, F.asid] },
  { name: 'TLBI_NH_VA', code: 0x12, fields: [F.vmid, F.asid, ...TLBI_RANGE] },
  { name: 'TLBI_NH_VAA', code: 0x13, fields: [F.vmid, ...TLBI_RANGE] },
  { name: 'TLBI_EL3_ALL', code: 0x18, fields: [] },
  { name: 'TLBI_EL3_VA', code: 0x1a, fields: TLBI_RANGE },
  { name: 'TLBI_EL2_ALL', code: 0x20, fields: [] },
  { name: 'TLBI_EL2_ASID', code: 0x21, fields: [F.asid] },
  { name: 'TLBI_EL2_VA', code: 0x22, fields: [F.asid, ...TLBI_RANGE] },
  { name: 'TLBI_EL2_VAA', code: 0x23, fields: TLBI_RANGE },
  { name: 'TLBI_S12_VMALL', code: 0x28, fields: [F.vmid] },
  { name: 'TLBI_S2_IPA', code: 0x2a, fields: [F.vmid, ...TLBI_RANGE] },
  { name: 'TLBI_NSNH_ALL', code: 0x30, fields: [] },
  { name: 'ATC_INV', code: 0x40, fields: [F.ssv, F.global, F.ssid, F.sid, F.size, F.addr] },
  { name: 'PRI_RESP', code: 0x41, fields: [F.ssv, F.ssid, F.sid, F.grpid, F.resp] },
  { name: 'RESUME', code: 0x44, fields: [F.sid, F.action, F.stag] },
  { name: 'STALL_TERM', code: 0x45, fields: [F.sid] },
  { name: 'SYNC', code: 0x46, fields: [F.cs, F.msh, F.msiattr, F.msidata, F.msiaddr] },
]

const BY_CODE = new Map(OPCODES.map((o) => [o.code, o]))

export const OP = Object.fromEntries(OPCODES.map((o) => [o.name, o.code])) as Readonly<Record<string, number>>

export function opcodeOf(cmd: Command): number {
  return Number(get(cmd[0], F.op.bits))
}

export function opcodeName(code: number): string {
  return BY_CODE.get(code)?.name ?? `UNKNOWN_0x${code.toString(16).padStart(2, '0')}`
}

export function field(cmd: Command, key: keyof typeof F): bigint {
  const f: CmdField = F[key]
  const v = get(cmd[f.word], f.bits)
  return f.address ? v << BigInt(f.bits.lo) : v
}

/** Opcodes whose command carries the range fields (TG, TTL, NUM, SCALE). */
const RANGED: ReadonlySet<number> = new Set(OPCODES.filter((o) => o.fields.includes(F.tg)).map((o) => o.code))

/**
 * Why the SMMU refuses `cmd` with CERROR_ILL though its opcode is known
 * (§4.4.1.1), or undefined: a range TLBI of one granule (TG != 0, NUM = 0,
 * SCALE = 0) without a level hint is reserved. TTL 1 with the 16KB granule
 * is reserved without IDR5.DS (not modelled) and counts as TTL 0.
 */
export function reservedEncoding(cmd: Command): string | undefined {
  if (!RANGED.has(opcodeOf(cmd))) return undefined
  const tg = field(cmd, 'tg')
  if (tg === 0n || field(cmd, 'num') !== 0n || field(cmd, 'scale') !== 0n) return undefined
  const ttl = field(cmd, 'ttl')
  if (ttl === 0n || (tg === 2n && ttl === 1n)) return `TG=${tg} with NUM=0, SCALE=0 and TTL=${ttl} is a reserved range encoding`
  return undefined
}

export function withField(cmd: Command, key: keyof typeof F, value: bigint): Command {
  const f: CmdField = F[key]
  const v = f.address ? value >> BigInt(f.bits.lo) : value
  return f.word === 0 ? [set(cmd[0], f.bits, v), cmd[1]] : [cmd[0], set(cmd[1], f.bits, v)]
}

/** "TLBI_NH_VA vmid=1 asid=1 addr=0x1000 leaf=1": the opcode and its nonzero fields. */
export function describeCommand(cmd: Command): string {
  const op = BY_CODE.get(opcodeOf(cmd))
  if (!op) return opcodeName(opcodeOf(cmd))
  const parts = op.fields
    .map((f) => [f, f.address ? get(cmd[f.word], f.bits) << BigInt(f.bits.lo) : get(cmd[f.word], f.bits)] as const)
    .filter(([, v]) => v !== 0n)
    .map(([f, v]) => `${f.key}=${f.address || f.key === 'sid' || f.key === 'ssid' || f.key === 'msidata' ? hex(v) : v}`)
  return [op.name, ...parts].join(' ')
}

/**
 * Encodes a symbolic command: the name (CMD_ prefix optional) then fields as
 * key=value or a bare key for a one-bit field, separated by commas or spaces,
 * e.g. "TLBI_NH_VA,asid=1,addr=0x1000,leaf" or "ATC_INV sid=0x10 size=52".
 */
export function parseCommand(text: string): Command {
  const [name, ...rest] = text.trim().split(/[\s,]+/)
  const upper = (name ?? '').toUpperCase().replace(/^CMD_/, '')
  const op = OPCODES.find((o) => o.name === upper || (upper === 'CMD_SYNC' && o.name === 'SYNC'))
  if (!op) throw new ErrnoError('EINVAL', `cmd "${name}": not an SMMUv3 command (${OPCODES.map((o) => o.name).join(', ')})`)
  let cmd: Command = [BigInt(op.code), 0n]
  for (const tok of rest) {
    if (!tok) continue
    const [key, value] = tok.includes('=') ? tok.split('=', 2) : [tok, '1']
    const f = op.fields.find((x) => x.key === key.toLowerCase())
    if (!f) throw new ErrnoError('EINVAL', `cmd ${op.name}: no field "${key}" (fields: ${op.fields.map((x) => x.key).join(', ') || 'none'})`)
    if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(value)) throw new ErrnoError('EINVAL', `cmd ${op.name}: ${key}="${value}" is not a number`)
    const v = BigInt(value)
    const width = BigInt(f.bits.hi - f.bits.lo + 1)
    if (f.address) {
      if (v & ((1n << BigInt(f.bits.lo)) - 1n)) throw new ErrnoError('EINVAL', `cmd ${op.name}: ${key}=${value} must be aligned to ${1n << BigInt(f.bits.lo)}`)
      if (v >> (BigInt(f.bits.lo) + width)) throw new ErrnoError('EINVAL', `cmd ${op.name}: ${key}=${value} is too large`)
    } else if (v >> width) throw new ErrnoError('EINVAL', `cmd ${op.name}: ${key}=${value} does not fit ${width} bits`)
    cmd = withField(cmd, f.key as keyof typeof F, v)
  }
  return cmd
}

/** CMD_SYNC as the host driver appends it to a batch (no interrupt: CS = SEV). */
export const HOST_SYNC: Command = withField([BigInt(0x46), 0n], 'cs', 2n)

/** CMDQ_CONS.ERR codes. */
export const CERROR = { NONE: 0, ILL: 1, ABT: 2, ATC_INV_SYNC: 3 } as const
export type CerrorName = keyof typeof CERROR
export const CONS_ERR_SHIFT = 24
export const CONS_ERR_MASK = 0x7f << CONS_ERR_SHIFT
