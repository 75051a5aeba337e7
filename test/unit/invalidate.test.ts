import { strict as assert } from 'node:assert'
import { Command } from '../../src/hw/smmuv3/commands'
import { FSTS } from '../../src/hw/vtd/qi'
import {
  DMAR0,
  HOST_SYNC_WORDS,
  InvSession,
  SMMU0,
  U64_MAX,
  armNest,
  cmdBytes,
  cmdWords,
  recent,
  ringCall,
  vtdNest,
} from '../helpers/invalidation'

/** Invalidation (issue 4), in-process: HWPT_INVALIDATE array and ring forms, the vCMDQ, fault injection. */

const hex = (v: bigint | number): string => `0x${v.toString(16)}`
/** A command from its opcode, extra word-0 bits and word 1. */
const c = (op: number, w0 = 0n, w1 = 0n): Command => [BigInt(op) | w0, w1]
const VMID = (v: number | bigint): bigint => BigInt(v) << 32n
const ASID = (v: number | bigint): bigint => BigInt(v) << 48n
const SID = (v: number | bigint): bigint => BigInt(v) << 32n
const SSID = (v: number | bigint): bigint => BigInt(v) << 12n
const SSV = 1n << 11n
/** TLBI_NH_ASID for `asid`: distinct, accepted commands to track which slots were consumed. */
const asidCmd = (asid: number): Command => c(0x11, ASID(asid))
const physAsid = (asid: number, vmid: number): Command => [0x11n | VMID(vmid) | ASID(asid), 0n]
const SYNC: Command = [0x46n, 0n]
const CFGI_STE: Command = c(0x03, SID(0x10))

/** Rejected opcodes (§5.3), then opcodes outside the table, which are refused too. */
const REJECTED: [number, string][] = [
  [0x03, 'CFGI_STE'],
  [0x04, 'CFGI_ALL'],
  [0x01, 'PREFETCH_CFG'],
  [0x20, 'TLBI_EL2_ALL'],
  [0x21, 'TLBI_EL2_ASID'],
  [0x22, 'TLBI_EL2_VA'],
  [0x28, 'TLBI_S12_VMALL'],
  [0x2a, 'TLBI_S2_IPA'],
  [0x41, 'PRI_RESP'],
  [0x44, 'RESUME'],
  [0x46, 'CMD_SYNC'],
  [0x02, 'PREFETCH_ADDR'],
  [0x18, 'TLBI_EL3_ALL'],
  [0x23, 'TLBI_EL2_VAA'],
  [0x45, 'STALL_TERM'],
  [0x00, 'opcode 0'],
  [0xff, 'opcode 0xff'],
]

/** The physical VT-d invalidation queue's rows: index, the four qwords, status, decoded text. */
function qiRows(t: InvSession): { index: number; qw: bigint[]; status: number; decoded: string }[] {
  return t
    .vtd()
    .qi.dump()
    .split('\n')
    .filter((l) => /^ *\d+\t/.test(l))
    .map((l) => {
      const f = l.split('\t')
      return { index: Number(f[0]), qw: f.slice(1, 5).map((w) => BigInt(`0x${w}`)), status: Number(`0x${f[5]}`), decoded: f[6] }
    })
}

describe('HWPT_INVALIDATE on an SMMUv3 vIOMMU (array form)', () => {
  let t: InvSession
  let a: ReturnType<typeof armNest>
  beforeEach(() => {
    t = new InvSession()
    a = armNest(t)
  })

  it('the vIOMMU has its nest parent\'s VMID (1: arm_vsmmu_init) and maps vSID 0x10 to StreamID 0x8', () => {
    assert.equal(a.vmid, 1)
    assert.match(t.read(`${t.ctx.id}/${a.viommu}.viommu`), /^vsid_map: 0x10->0x8$/m)
  })

  it('TLBI_NSNH_ALL becomes TLBI_NH_ALL with the vIOMMU VMID and cmd[1] = 0, then CMD_SYNC', () => {
    const guest = c(0x30, VMID(0x1234) | ASID(0x5678) | SSV, 0xdead000n)
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${cmdWords(guest)} entry_len=16 entry_num=1 data_type=ARM_SMMUV3`), { entry_num: '1' })
    assert.deepEqual(recent(t, 2), [[0x10n | VMID(a.vmid), 0n], HOST_SYNC_WORDS])
    assert.equal(t.issued(), 2)
  })

  for (const [op, name] of [
    [0x10, 'TLBI_NH_ALL'],
    [0x11, 'TLBI_NH_ASID'],
    [0x12, 'TLBI_NH_VA'],
    [0x13, 'TLBI_NH_VAA'],
  ] as const) {
    it(`${name}: the VMID field [47:32] is overwritten, ASID [63:48] and every other bit kept`, () => {
      const rest = ASID(0xbeef) | SSID(0x3) | (0x5n << 20n)
      const w1 = 0xabc000n | 0x301n
      const guest = c(op, VMID(0x1234) | rest, w1)
      t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${cmdWords(guest)} entry_len=16 entry_num=1 data_type=ARM_SMMUV3`)
      assert.deepEqual(recent(t, 2), [[BigInt(op) | VMID(a.vmid) | rest, w1], HOST_SYNC_WORDS])
    })
  }

  for (const [op, name] of [
    [0x40, 'ATC_INV'],
    [0x05, 'CFGI_CD'],
    [0x06, 'CFGI_CD_ALL'],
  ] as const) {
    it(`${name}: the vSID [63:32] becomes the physical StreamID, every other bit kept`, () => {
      const rest = SSID(0x5) | SSV | (1n << 9n)
      const w1 = 0x2000n | 0x3n
      const guest = c(op, SID(0x10) | rest, w1)
      t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${cmdWords(guest)} entry_len=16 entry_num=1 data_type=ARM_SMMUV3`)
      assert.deepEqual(recent(t, 2), [[BigInt(op) | SID(0x8) | rest, w1], HOST_SYNC_WORDS])
    })
  }

  it('symbolic cmd= entries: ATC_INV sid=0x10 leaves as sid=0x8, the TLBI carries the vIOMMU\'s VMID, 1 (cmdq dump)', () => {
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} cmd=TLBI_NH_VA,asid=1,addr=0x1000,leaf cmd=ATC_INV,sid=0x10`), { entry_num: '2' })
    const dump = t.read(`iommu/${SMMU0}/cmdq`)
    // slots 0-4: the host driver's own STE write when the device attached to the nest parent (abort -> S2: words 1-3,
    // then word 0, each with CFGI_STE + CMD_SYNC, then PREFETCH_CFG), and ATS coming on with it (slots 5-6: the whole ATC)
    assert.match(dump, /^ Entries: 256\tPROD: 0x0000000a\tCONS: 0x0000000a\tIssued: 10$/m)
    assert.match(dump, /^ {4}0\t0000000800000003\t0000000000000001\tCFGI_STE sid=0x8 leaf=1$/m)
    assert.match(dump, /^ {4}2\t0000000800000003\t0000000000000001\tCFGI_STE sid=0x8 leaf=1$/m)
    assert.match(dump, /^ {4}4\t0000000800000001\t0000000000000000\tPREFETCH_CFG sid=0x8$/m)
    assert.match(dump, /^ {4}5\t0000000800000040\t0000000000000034\tATC_INV sid=0x8 size=52$/m)
    assert.match(dump, /^ {4}7\t0001000100000012\t0000000000001001\tTLBI_NH_VA vmid=1 asid=1 leaf=1 addr=0x1000$/m)
    assert.match(dump, /^ {4}8\t0000000800000040\t0000000000000000\tATC_INV sid=0x8$/m)
    assert.match(dump, /^ {4}9\t0000000000002046\t0000000000000000\tSYNC cs=2$/m)
  })

  for (const [n, syncs] of [
    [63, [63]],
    [64, [63, 1]],
    [126, [63, 63]],
  ] as const) {
    it(`${n} commands go out in batches of 63, each closed by CMD_SYNC (${syncs.length} sync${syncs.length > 1 ? 's' : ''})`, () => {
      const cmds = Array.from({ length: n }, (_, i) => `cmd=TLBI_NH_ASID,asid=${i}`).join(' ')
      assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} ${cmds}`), { entry_num: String(n) })
      const want: Command[] = []
      let i = 0
      for (const size of syncs) {
        for (let k = 0; k < size; k++) want.push(physAsid(i++, a.vmid))
        want.push(HOST_SYNC_WORDS)
      }
      assert.equal(t.issued(), want.length)
      assert.deepEqual(recent(t, want.length), want)
    })
  }

  for (const [op, name] of REJECTED) {
    it(`${name} (0x${op.toString(16)}) is refused: EIO, entry_num = its index, and the converted commands before it never reach the cmdq`, () => {
      const guest = c(op, SID(0x10))
      const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${cmdWords(asidCmd(1), c(0x40, SID(0x10)), guest)} entry_len=16 entry_num=3 data_type=ARM_SMMUV3`, 'EIO', /^entry 2 /)
      assert.equal(r.written, 'entry_num=2')
      assert.equal(t.issued(), 0)
    })
  }

  it('an unknown vSID is EIO at its index (ATC_INV 0x11, CFGI_CD with the physical SID 0x8, CFGI_CD_ALL 0)', () => {
    for (const bad of [c(0x40, SID(0x11)), c(0x05, SID(0x8)), c(0x06)]) {
      const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${cmdWords(asidCmd(1), bad)} entry_len=16 entry_num=2 data_type=ARM_SMMUV3`, 'EIO', /vSID 0x(11|8|0) has no vDEVICE/)
      assert.equal(r.written, 'entry_num=1')
    }
  })

  it('quirk: a failure in the second batch counts the unsent commands of that batch; only the first batch reached the cmdq', () => {
    const cmds = Array.from({ length: 70 }, (_, i) => `cmd=TLBI_NH_ASID,asid=${i}`).join(' ')
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} ${cmds} cmd=CFGI_STE,sid=0x10 cmd=TLBI_NH_ALL`, 'EIO', /^entry 70 \(CFGI_STE sid=0x10\)/, false)
    assert.equal(r.written, 'entry_num=70')
    assert.equal(t.issued(), 64)
    assert.deepEqual(recent(t, 2), [physAsid(62, a.vmid), HOST_SYNC_WORDS])
  })

  it('entry_num = 0 is EINVAL for SMMUv3 (and entry_num 0 is written back)', () => {
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} data_type=ARM_SMMUV3 entry_len=16 entry_num=0`, 'EINVAL', /entry_num=0/)
    assert.equal(r.written, 'entry_num=0')
  })

  it('8-byte entries are zero-extended to 16 (no minimum length)', () => {
    const words = [0x11n | ASID(7) | VMID(0x99), 0x40n | SID(0x10) | SSID(2)].map(hex).join(',')
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${words} entry_len=8 entry_num=2 data_type=ARM_SMMUV3`), { entry_num: '2' })
    assert.deepEqual(recent(t, 3), [physAsid(7, a.vmid), [0x40n | SID(0x8) | SSID(2), 0n], HOST_SYNC_WORDS])
  })

  it('24-byte entries: a zero tail is accepted, a nonzero tail is E2BIG with entry_num 0 (the array is copied whole first)', () => {
    const zero = `${cmdWords(asidCmd(1))},0x0,${cmdWords(asidCmd(2))},0x0`
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${zero} entry_len=24 entry_num=2 data_type=ARM_SMMUV3`), { entry_num: '2' })
    assert.deepEqual(recent(t, 3), [physAsid(1, a.vmid), physAsid(2, a.vmid), HOST_SYNC_WORDS])
    const tail = `${cmdWords(asidCmd(1))},0x0,${cmdWords(asidCmd(2))},0x1`
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${tail} entry_len=24 entry_num=2 data_type=ARM_SMMUV3`, 'E2BIG', /entry 1: bytes past the 16-byte command/)
    assert.equal(r.written, 'entry_num=0')
  })

  it('data_type VTD_S1 on a vIOMMU is EINVAL', () => {
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} data=${cmdWords(asidCmd(1))} entry_len=16 entry_num=1 data_type=VTD_S1`, 'EINVAL', /data_type=0/)
    assert.equal(r.written, 'entry_num=0')
  })

  it('targets: a paging HWPT or an IOAS is EINVAL, a missing ID ENOENT, an SMMUv3 nested HWPT EOPNOTSUPP', () => {
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${a.parent} cmd=TLBI_NH_ALL`, 'EINVAL', /hwpt_paging/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${a.ioas} cmd=TLBI_NH_ALL`, 'EINVAL', /ioas/).written, 'entry_num=0')
    assert.equal(t.err('HWPT_INVALIDATE hwpt_id=99 cmd=TLBI_NH_ALL', 'ENOENT', /hwpt_id=99/).written, 'entry_num=0')
    const nested = t.id(`HWPT_ALLOC dev_id=${a.dev} pt_id=${a.viommu} data.ste=0x9,0x0`, 'out_hwpt_id')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${nested} cmd=TLBI_NH_ALL`, 'EOPNOTSUPP', /through its vIOMMU/).written, 'entry_num=0')
  })

  it('__reserved is EOPNOTSUPP; entry_len above 4096 and entry_num above 524288 are EINVAL; entries without data EINVAL', () => {
    const v = a.viommu
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v} cmd=TLBI_NH_ALL __reserved=1`, 'EOPNOTSUPP', /__reserved=1/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v} data=0x10,0x0 entry_len=4097 entry_num=1 data_type=ARM_SMMUV3`, 'EINVAL', /entry_len=4097 is above 4096/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v} data=0x10,0x0 entry_len=16 entry_num=524289 data_type=ARM_SMMUV3`, 'EINVAL', /entry_num=524289 is above 524288/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v} entry_len=16 entry_num=1 data_type=ARM_SMMUV3`, 'EINVAL', /needs data_uptr/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v} data=0x10,0x0 entry_len=0 entry_num=1 data_type=ARM_SMMUV3`, 'EINVAL', /needs data_uptr and entry_len/).written, 'entry_num=0')
  })
})

describe('HWPT_INVALIDATE on a VT-d nested HWPT (array form)', () => {
  let t: InvSession
  let v: ReturnType<typeof vtdNest>
  beforeEach(() => {
    t = new InvSession()
    v = vtdNest(t)
  })

  it('"all": a P_IOTLB all-in-pasid descriptor, a device-TLB descriptor per ATS device, then a WAIT', () => {
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=all`), { entry_num: '1' })
    const rows = qiRows(t)
    assert.deepEqual(
      rows.map((r) => r.decoded),
      [
        'P_IOTLB did=2 pasid=0 gran=all-in-pasid',
        'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x7ffffffffffff000 s=1',
        'DEV_IOTLB sid=02:01.0 qdep=0 addr=0x7ffffffffffff000 s=1',
        'WAIT sw=1 if=0 fn=0 status_data=2 status_addr=0x10001000c',
      ],
    )
    assert.deepEqual(rows[0].qw, [0x20026n, 0n, 0n, 0n])
    assert.deepEqual(rows[1].qw, [0x0200020000000003n, 0x7ffffffffffff001n, 0n, 0n])
    assert.deepEqual(rows[2].qw, [0x0200020800008003n, 0x7ffffffffffff001n, 0n, 0n])
    assert.deepEqual(rows[3].qw, [0x200000025n, 0x10001000cn, 0n, 0n])
    assert.ok(rows.every((r) => r.status === 2))
    assert.match(t.read(`iommu/${DMAR0}/invalidation_queue`), /^ Base: 0x100000000\tHead: 4\tTail: 4$/m)
  })

  it('page-selective: addr/am of the aligned block (IH = LEAF), the device TLB sized to match; a WAIT after each entry', () => {
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=addr=0x3000,npages=4,leaf entry=addr=0x1000,npages=1 entry=addr=0x10000,npages=16`), { entry_num: '3' })
    const rows = qiRows(t)
    assert.equal(rows.length, 12)
    assert.deepEqual(
      rows.map((r) => r.decoded.replace(/ status_addr=\S+/, '')),
      [
        'P_IOTLB did=2 pasid=0 gran=page-selective addr=0x0 am=3 ih=1',
        'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x3000 s=1',
        'DEV_IOTLB sid=02:01.0 qdep=0 addr=0x3000 s=1',
        'WAIT sw=1 if=0 fn=0 status_data=2',
        'P_IOTLB did=2 pasid=0 gran=page-selective addr=0x1000 am=0 ih=0',
        'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x1000 s=0',
        'DEV_IOTLB sid=02:01.0 qdep=0 addr=0x1000 s=0',
        'WAIT sw=1 if=0 fn=0 status_data=2',
        'P_IOTLB did=2 pasid=0 gran=page-selective addr=0x10000 am=4 ih=0',
        'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x17000 s=1',
        'DEV_IOTLB sid=02:01.0 qdep=0 addr=0x17000 s=1',
        'WAIT sw=1 if=0 fn=0 status_data=2',
      ],
    )
    assert.deepEqual(rows[0].qw.slice(0, 2), [0x20036n, 0x43n])
    assert.deepEqual(rows[1].qw.slice(0, 2), [0x0200020000000003n, 0x3001n])
    assert.deepEqual(rows[8].qw.slice(0, 2), [0x20036n, 0x10004n])
  })

  it('entry_num = 0 succeeds (a probe) and changes nothing', () => {
    const before = t.dump()
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${v.nested} data_type=VTD_S1 entry_len=24 entry_num=0`), { entry_num: '0' })
    // the entry_len and entry_num caps apply only when there are entries
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${v.nested} data_type=VTD_S1 entry_len=8192 entry_num=0`), { entry_num: '0' })
    assert.equal(t.dump(), before)
  })

  it('flags beyond LEAF and __reserved are EOPNOTSUPP at the entry; the entries before it were issued', () => {
    for (const [bad, re] of [
      ['addr=0x1000,npages=1,flags=2', /entry 1: flags=0x2/],
      ['addr=0x1000,npages=1,flags=0x80000001', /entry 1: flags=0x80000001/],
      ['addr=0x1000,npages=1,__reserved=1', /entry 1: __reserved=1/],
    ] as const) {
      const before = t.vtd().qi.submitted
      const r = t.err(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=all entry=${bad}`, 'EOPNOTSUPP', re, false)
      assert.equal(r.written, 'entry_num=1')
      assert.equal(t.vtd().qi.submitted, before + 4, 'entry 0 (3 descriptors + WAIT) went out')
    }
  })

  it('an unaligned addr, or npages = U64_MAX with addr != 0, is EINVAL at the entry', () => {
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=addr=0x1001,npages=1`, 'EINVAL', /entry 0: addr=0x1001 is not 4 KiB aligned/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=addr=0x1000,npages=${U64_MAX}`, 'EINVAL', /entry 0: npages=U64_MAX/).written, 'entry_num=0')
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=addr=0x2000,npages=1 entry=addr=0x800,npages=1`, 'EINVAL', /entry 1: addr=0x800/, false)
    assert.equal(r.written, 'entry_num=1')
  })

  it('entry_len 16 or 32 is EINVAL (VT-d entries are exactly 24 bytes)', () => {
    for (const len of [16, 32]) {
      const r = t.err(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=all entry_len=${len}`, 'EINVAL', new RegExp(`entry_len=${len}, iommu_hwpt_vtd_s1_invalidate is 24 bytes`))
      assert.equal(r.written, 'entry_num=0')
    }
  })

  it('data_type ARM_SMMUV3 on a VT-d nested HWPT is EINVAL; the nest parent (paging) is EINVAL', () => {
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v.nested} data=0x0,${hex(U64_MAX)},0x0 entry_len=24 entry_num=1 data_type=ARM_SMMUV3`, 'EINVAL', /data_type=1/).written, 'entry_num=0')
    assert.equal(t.err(`HWPT_INVALIDATE hwpt_id=${v.parent} entry=all`, 'EINVAL', /hwpt_paging/).written, 'entry_num=0')
  })
})

describe('HWPT_INVALIDATE_RING (the draft ring form, docs/extensions.md)', () => {
  let t: InvSession
  let a: ReturnType<typeof armNest>
  /** 16 slots, slot i holds TLBI_NH_ASID asid=0x100+i. */
  const queue16 = (): Buffer => cmdBytes(...Array.from({ length: 16 }, (_, i) => asidCmd(0x100 + i)))
  beforeEach(() => {
    t = new InvSession()
    a = armNest(t)
  })

  it("the draft's example: 16 entries, CONS 0xf, PROD 0x11 consumes slots 0xf and 0x0 and ends with CONS 0x11", () => {
    const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: queue16(), cons: 0xf, prod: 0x11 })
    assert.equal(r.reply.errno, undefined, r.reply.message)
    assert.equal(r.cons, 0x11)
    assert.equal(t.issued(), 3)
    assert.deepEqual(recent(t, 3), [physAsid(0x10f, a.vmid), physAsid(0x100, a.vmid), HOST_SYNC_WORDS])
  })

  it('PROD 0x12 also consumes slot 0x1; CONS == PROD consumes nothing', () => {
    const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: queue16(), cons: 0xf, prod: 0x12 })
    assert.equal(r.cons, 0x12)
    assert.deepEqual(recent(t, 4), [physAsid(0x10f, a.vmid), physAsid(0x100, a.vmid), physAsid(0x101, a.vmid), HOST_SYNC_WORDS])
    const e = ringCall(t, { hwptId: a.viommu, bits: 4, queue: queue16(), cons: 0x12, prod: 0x12 })
    assert.equal(e.cons, 0x12)
    assert.equal(t.issued(), 4)
  })

  it('the whole ring (CONS 0x3 -> PROD 0x13, full) is consumed in slot order across the wrap', () => {
    const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: queue16(), cons: 0x3, prod: 0x13 })
    assert.equal(r.cons, 0x13)
    const order = [...Array.from({ length: 13 }, (_, i) => 3 + i), 0, 1, 2]
    assert.deepEqual(recent(t, 17), [...order.map((s) => physAsid(0x100 + s, a.vmid)), HOST_SYNC_WORDS])
  })

  it('in text: q_cons=0xf with three cmd= entries (slots 0xf, 0x0, 0x1) answers q_cons=0x12', () => {
    assert.deepEqual(t.ok(`HWPT_INVALIDATE_RING hwpt_id=${a.viommu} q_cons=0xf cmd=TLBI_NH_ASID,asid=1 cmd=TLBI_NH_ASID,asid=2 cmd=ATC_INV,sid=0x10`), { q_cons: '0x12' })
    assert.deepEqual(recent(t, 4), [physAsid(1, a.vmid), physAsid(2, a.vmid), [0x40n | SID(0x8), 0n], HOST_SYNC_WORDS])
    // without q_cons the entries start at slot 0 and CONS 0 is sent
    assert.deepEqual(t.ok(`HWPT_INVALIDATE_RING hwpt_id=${a.viommu} cmd=TLBI_NH_ALL cmd=TLBI_NH_ALL`), { q_cons: '0x2' })
  })

  it('a refused command in the middle: CONS on it with CERROR_ILL in bits 30:24, EIO, later entries not consumed', () => {
    const q = queue16()
    cmdBytes(CFGI_STE).copy(q, 0 * 16)
    const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: q, cons: 0xe, prod: 0x13 })
    assert.equal(r.reply.errno, 'EIO')
    assert.match(r.reply.message, /^entry 0: CFGI_STE .*CONS\.ERR=CERROR_ILL/)
    assert.equal(r.cons, 0x01000010)
    assert.equal(t.issued(), 3, 'slots 0xe and 0xf, then the sync; nothing from slot 0 on')
    assert.deepEqual(recent(t, 3), [physAsid(0x10e, a.vmid), physAsid(0x10f, a.vmid), HOST_SYNC_WORDS])
  })

  it('ERR bits in the CONS passed in are ignored', () => {
    const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: queue16(), cons: 0x7f00000f, prod: 0x11 })
    assert.equal(r.reply.errno, undefined, r.reply.message)
    assert.equal(r.cons, 0x11)
  })

  it('CMD_SYNC is allowed in the ring and closes a batch; an unknown vSID is CERROR_ILL', () => {
    const q = cmdBytes(asidCmd(1), SYNC, asidCmd(2), c(0x40, SID(0x12)), ...Array.from({ length: 12 }, () => asidCmd(9)))
    const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: q, cons: 0, prod: 4 })
    assert.equal(r.reply.errno, 'EIO')
    assert.match(r.reply.message, /vSID 0x12 has no vDEVICE/)
    assert.equal(r.cons, 0x01000003)
    assert.deepEqual(recent(t, 4), [physAsid(1, a.vmid), HOST_SYNC_WORDS, physAsid(2, a.vmid), HOST_SYNC_WORDS])
  })

  it('8-byte entries are zero-extended; a 24-byte entry with a nonzero tail stops the ring there (E2BIG, CONS on it)', () => {
    const q8 = Buffer.alloc(4 * 8)
    q8.writeBigUInt64LE(0x11n | ASID(5), 0)
    q8.writeBigUInt64LE(0x40n | SID(0x10), 8)
    const r8 = ringCall(t, { hwptId: a.viommu, bits: 2, queue: q8, cons: 0, prod: 2, entryLen: 8 })
    assert.equal(r8.cons, 2)
    assert.deepEqual(recent(t, 3), [physAsid(5, a.vmid), [0x40n | SID(0x8), 0n], HOST_SYNC_WORDS])
    const q24 = Buffer.alloc(4 * 24)
    q24.writeBigUInt64LE(0x11n | ASID(6), 0)
    q24.writeBigUInt64LE(0x11n | ASID(7), 24)
    q24.writeBigUInt64LE(1n, 24 + 16) // entry 1's tail
    const r24 = ringCall(t, { hwptId: a.viommu, bits: 2, queue: q24, cons: 0, prod: 3, entryLen: 24 })
    assert.equal(r24.reply.errno, 'E2BIG')
    assert.match(r24.reply.message, /entry 1: bytes past the 16-byte command are nonzero/)
    assert.equal(r24.cons, 1)
    assert.deepEqual(recent(t, 2), [physAsid(6, a.vmid), HOST_SYNC_WORDS])
  })

  describe('refused requests change nothing and write no CONS back', () => {
    const cases: [string, Partial<Parameters<typeof ringCall>[1]>, string, RegExp][] = [
      ['q_index_bits 0', { bits: 0, entryNum: 1 }, 'EINVAL', /q_index_bits=0: must be 1\.\.31/],
      ['q_index_bits 32', { bits: 32, entryNum: 16 }, 'EINVAL', /q_index_bits=32: must be 1\.\.31/],
      ['q_entry_num 8 with 4 index bits', { entryNum: 8 }, 'EINVAL', /q_entry_num=8: a ring with q_index_bits=4 has 16 entries/],
      ['q_entry_num 32 with 4 index bits', { entryNum: 32 }, 'EINVAL', /q_entry_num=32/],
      ['misaligned q_entry_len 12', { entryLen: 12 }, 'EINVAL', /q_entry_len=12: must be a nonzero multiple of 8/],
      ['q_entry_len 0', { entryLen: 0 }, 'EINVAL', /q_entry_len=0/],
      ['oversized q_entry_len 8192', { entryLen: 8192 }, 'EINVAL', /q_entry_len=8192: above 4096/],
      ['PROD beyond the index and wrap bits', { prod: 0x20 }, 'EINVAL', /q_prod=0x20: beyond/],
      ['CONS beyond the index and wrap bits', { cons: 0x20, prod: 0x1 }, 'EINVAL', /q_cons=0x20: beyond/],
      ['CONS with ERR bits and beyond', { cons: 0x7f000040, prod: 0x1 }, 'EINVAL', /q_cons=0x7f000040: beyond/],
      ['PROD more than 16 entries after CONS', { cons: 0, prod: 0x11 }, 'EINVAL', /more than 16 entries apart/],
      ['__reserved', { reserved: 1 }, 'EOPNOTSUPP', /__reserved=1/],
      ['data_type VTD_S1 on a vIOMMU', { dataType: 0 }, 'EINVAL', /data_type=0/],
      ['a missing hwpt_id', { hwptId: 99 }, 'ENOENT', /hwpt_id=99/],
    ]
    for (const [what, over, errno, re] of cases) {
      it(`${what}: ${errno}`, () => {
        const before = t.dump()
        const issued = t.issued()
        const len = over.entryLen ?? 16
        const num = over.entryNum ?? 16
        const r = ringCall(t, { hwptId: a.viommu, bits: 4, queue: Buffer.alloc(len * num), cons: 0, prod: 1, ...over })
        assert.equal(r.reply.errno, errno, r.reply.message)
        assert.match(r.reply.message, re)
        assert.equal(r.cons, undefined)
        assert.equal(t.dump(), before)
        assert.equal(t.issued(), issued)
      })
    }

    it('the nest parent (paging) as target: EINVAL', () => {
      const before = t.dump()
      const r = ringCall(t, { hwptId: a.parent, bits: 4, queue: queue16(), cons: 0, prod: 1 })
      assert.equal(r.reply.errno, 'EINVAL')
      assert.equal(r.cons, undefined)
      assert.equal(t.dump(), before)
    })

    it('in text: q_index_bits=32 and q_index_bits=0 are EINVAL (not an internal error)', () => {
      t.err(`HWPT_INVALIDATE_RING hwpt_id=${a.viommu} q_index_bits=32 cmd=TLBI_NH_ALL`, 'EINVAL', /q_index_bits=32/)
      t.err(`HWPT_INVALIDATE_RING hwpt_id=${a.viommu} q_index_bits=0 cmd=TLBI_NH_ALL`, 'EINVAL', /q_index_bits=0/)
      t.err(`HWPT_INVALIDATE_RING hwpt_id=${a.viommu} q_index_bits=24 cmd=TLBI_NH_ALL`, 'ENOMEM', /q_uptr/)
    })
  })

  it('VT-d: entries from CONS to PROD, CONS written back; a bad entry stops there with its errno', () => {
    const u = new InvSession()
    const v = vtdNest(u)
    assert.deepEqual(u.ok(`HWPT_INVALIDATE_RING hwpt_id=${v.nested} q_cons=0xe entry=all entry=addr=0x1000,npages=1 entry=all entry=all`), { q_cons: '0x12' })
    assert.equal(u.vtd().qi.submitted, 16)
    const r = u.err(`HWPT_INVALIDATE_RING hwpt_id=${v.nested} q_cons=0xe entry=all entry=all entry=addr=0x1001,npages=1 entry=all`, 'EINVAL', /entry 0: addr=0x1001/, false)
    assert.equal(r.written, 'q_cons=0x10')
    assert.equal(u.vtd().qi.submitted, 24, 'slots 0xe and 0xf went out, nothing after')
  })
})

describe('vCMDQ: a software SMMUv3 command queue per vIOMMU', () => {
  let t: InvSession
  let a: ReturnType<typeof armNest>
  let q: number
  let dir: string
  const ring = (slot: number, ...cmds: Command[]): number | string => t.write(`${dir}/ring`, cmdBytes(...cmds), slot * 16)
  beforeEach(() => {
    t = new InvSession()
    a = armNest(t)
    q = t.id(`VCMDQ_ALLOC viommu_id=${a.viommu} log2size=3`, 'out_vcmdq_id')
    dir = `${t.ctx.id}/${q}.vcmdq`
  })

  it('VCMDQ_ALLOC: log2size 1..IDR1.CMDQS (8), flags 0, a vIOMMU; the queue keeps its vIOMMU busy', () => {
    t.err(`VCMDQ_ALLOC viommu_id=${a.viommu} log2size=0`, 'EINVAL', /log2size=0: smmu3\.0x0000000009050000 takes 1\.\.8/)
    t.err(`VCMDQ_ALLOC viommu_id=${a.viommu} log2size=9`, 'EINVAL', /log2size=9/)
    t.err(`VCMDQ_ALLOC viommu_id=${a.viommu} log2size=3 flags=1`, 'EOPNOTSUPP', /flags=0x1/)
    t.err(`VCMDQ_ALLOC viommu_id=${a.parent} log2size=3`, 'ENOENT', /viommu_id/)
    t.err(`DESTROY id=${a.viommu}`, 'EBUSY', /viommu still has/)
    t.ok(`DESTROY id=${q}`)
    assert.equal(t.ctx.objects.find(q), undefined)
  })

  it('appears as <ctx>/<id>.vcmdq/ with the register files; ring is 2^log2size * 16 bytes', () => {
    const d = t.node(dir)
    assert.equal(d.kind, 'dir')
    assert.deepEqual(d.kind === 'dir' && d.names().sort(), ['cmd', 'cons', 'entries', 'gerror', 'gerrorn', 'info', 'prod', 'ring'])
    const modes = Object.fromEntries(['ring', 'prod', 'cons', 'gerror', 'gerrorn', 'cmd', 'entries'].map((f) => [f, (t.node(`${dir}/${f}`) as { mode: number }).mode.toString(8)]))
    assert.deepEqual(modes, { ring: '644', prod: '644', cons: '444', gerror: '444', gerrorn: '644', cmd: '200', entries: '444' })
    assert.equal(t.read(`${dir}/ring`).length, 128)
    assert.equal(t.read(`${dir}/prod`), '0x00000000\n')
    assert.equal(t.read(`${dir}/cons`), '0x00000000\n')
    assert.match(t.read(`${dir}/info`), /^entries: 8$/m)
  })

  it('writing PROD is the doorbell: CONS follows at once, vSIDs and VMID are fixed up', () => {
    assert.equal(ring(0, asidCmd(1), c(0x40, SID(0x10)), c(0x10, VMID(0x77))), 48)
    assert.equal(t.issued(), 0, 'nothing before the doorbell')
    assert.equal(t.write(`${dir}/prod`, '0x3\n'), 4)
    assert.equal(t.read(`${dir}/cons`), '0x00000003\n')
    assert.deepEqual(recent(t, 4), [physAsid(1, a.vmid), [0x40n | SID(0x8), 0n], [0x10n | VMID(a.vmid), 0n], HOST_SYNC_WORDS])
    assert.match(t.read(`${dir}/entries`), /^ {4}1 {2}0000001000000040 0000000000000000 {2}consumed {2}ATC_INV sid=0x10$/m)
  })

  it('an illegal command halts the queue; PROD writes consume nothing; fix + GERRORN ack resume at CONS', () => {
    ring(0, asidCmd(1), CFGI_STE, asidCmd(3))
    t.write(`${dir}/prod`, '3')
    assert.equal(t.read(`${dir}/cons`), '0x01000001\n', 'CONS on slot 1, ERR = CERROR_ILL')
    assert.equal(t.read(`${dir}/gerror`), '0x00000001\n')
    assert.equal(t.read(`${dir}/gerrorn`), '0x00000000\n')
    assert.deepEqual(recent(t, 2), [physAsid(1, a.vmid), HOST_SYNC_WORDS])
    const entries = t.read(`${dir}/entries`)
    assert.match(entries, /CONS 0x01000001 \(halted: GERROR\.CMDQ_ERR active\)/)
    assert.match(entries, /^ {4}1 {2}0000001000000003 0000000000000000 {2}ERROR {5}CFGI_STE sid=0x10$/m)
    assert.match(entries, /^ {4}2 .* pending {3}TLBI_NH_ASID asid=3$/m)
    assert.match(t.read(`${dir}/info`), /^halted: 1$/m)
    assert.match(t.read(`${dir}/info`), /^last_error: CERROR_ILL at index 1: CFGI_STE/m)

    // halted: more commands and doorbells consume nothing
    ring(3, asidCmd(4))
    t.write(`${dir}/prod`, '4')
    assert.equal(t.read(`${dir}/cons`), '0x01000001\n')
    assert.equal(t.issued(), 2)

    // the Linux driver's fix: overwrite the failing entry with CMD_SYNC, then acknowledge
    ring(1, SYNC)
    assert.equal(t.write(`${dir}/gerrorn`, '0x1'), 3)
    assert.equal(t.read(`${dir}/cons`), '0x00000004\n')
    assert.equal(t.read(`${dir}/gerrorn`), '0x00000001\n')
    assert.match(t.read(`${dir}/info`), /^halted: 0$/m)
    assert.deepEqual(recent(t, 3), [physAsid(3, a.vmid), physAsid(4, a.vmid), HOST_SYNC_WORDS])
    assert.equal(t.issued(), 5)
    assert.ok(t.trace().some((l) => /ctx\d+: vcmdq \d+ halted: CERROR_ILL at index 1/.test(l)))
    assert.ok(t.trace().some((l) => /vcmdq \d+: GERRORN acknowledged, resuming at CONS 0x00000001/.test(l)))
  })

  it('a second error toggles GERROR back to 0; acknowledging with 0 resumes', () => {
    ring(0, CFGI_STE)
    t.write(`${dir}/prod`, '1')
    t.write(`${dir}/gerrorn`, '1')
    assert.equal(t.read(`${dir}/cons`), '0x01000000\n', 'still illegal: halts again at once')
    assert.equal(t.read(`${dir}/gerror`), '0x00000000\n')
    ring(0, asidCmd(8))
    t.write(`${dir}/gerrorn`, '0')
    assert.equal(t.read(`${dir}/cons`), '0x00000001\n')
  })

  it('CMD_SYNC is legal on the queue and closes a batch', () => {
    ring(0, asidCmd(1), SYNC, asidCmd(2))
    t.write(`${dir}/prod`, '3')
    assert.equal(t.read(`${dir}/cons`), '0x00000003\n')
    assert.deepEqual(recent(t, 4), [physAsid(1, a.vmid), HOST_SYNC_WORDS, physAsid(2, a.vmid), HOST_SYNC_WORDS])
  })

  it('the queue wraps: CONS and PROD carry the wrap flag', () => {
    for (let i = 0; i < 6; i++) t.write(`${dir}/cmd`, `TLBI_NH_ASID asid=${i}`)
    ring(6, asidCmd(6), asidCmd(7))
    ring(0, asidCmd(8))
    t.write(`${dir}/prod`, '0x9')
    assert.equal(t.read(`${dir}/cons`), '0x00000009\n')
    assert.deepEqual(recent(t, 4), [physAsid(6, a.vmid), physAsid(7, a.vmid), physAsid(8, a.vmid), HOST_SYNC_WORDS])
  })

  it('the cmd helper encodes, writes at PROD and rings; a bad command is EINVAL and changes nothing; a full queue ENOSPC', () => {
    assert.equal(t.write(`${dir}/cmd`, 'TLBI_NH_ASID asid=3\n# a comment\nATC_INV sid=0x10 size=1\n'), 56)
    assert.equal(t.read(`${dir}/prod`), '0x00000002\n')
    assert.equal(t.read(`${dir}/cons`), '0x00000002\n')
    assert.deepEqual(recent(t, 3), [physAsid(3, a.vmid), [0x40n | SID(0x8), 1n], HOST_SYNC_WORDS])
    const before = t.dump()
    assert.equal(t.write(`${dir}/cmd`, 'TLBI_NH_ASID sid=3\n'), 'EINVAL')
    assert.equal(t.write(`${dir}/cmd`, 'NOT_A_COMMAND\n'), 'EINVAL')
    assert.equal(t.dump(), before)
    // halt it, then fill it: 8 entries from CONS
    t.write(`${dir}/cmd`, 'CFGI_STE sid=0x10')
    for (let i = 0; i < 7; i++) assert.equal(t.write(`${dir}/cmd`, 'TLBI_NH_ALL'), 11)
    assert.equal(t.read(`${dir}/prod`), '0x0000000a\n')
    assert.equal(t.write(`${dir}/cmd`, 'TLBI_NH_ALL'), 'ENOSPC')
  })

  it('ring writes past the end are EFBIG and change nothing; reads at any offset', () => {
    ring(7, asidCmd(7))
    const before = t.dump()
    assert.equal(t.write(`${dir}/ring`, Buffer.alloc(16, 0xff), 120), 'EFBIG')
    assert.equal(t.write(`${dir}/ring`, Buffer.alloc(1, 0xff), 128), 'EFBIG')
    assert.equal(t.dump(), before)
    const n = t.node(`${dir}/ring`)
    assert.ok(n.kind === 'file')
    assert.deepEqual(n.open('read').read(7 * 16, 64), cmdBytes(asidCmd(7)))
  })

  it('PROD bits above the wrap flag have no effect; more than 8 ahead of CONS, or not a number, is EINVAL; GERRORN takes only bit 0', () => {
    const before = t.dump()
    // SMMU_CMDQ_PROD bits [31:QS+1] are RES0: 0x10 and 0x80000000 on an 8-entry queue are PROD 0, CONS 0: empty
    assert.equal(t.write(`${dir}/prod`, '0x10'), 4)
    assert.equal(t.write(`${dir}/prod`, '0x80000000'), 10)
    assert.equal(t.dump(), before)
    assert.equal(t.write(`${dir}/prod`, '0x100000000'), 'EINVAL')
    assert.equal(t.write(`${dir}/prod`, 'ten'), 'EINVAL')
    assert.equal(t.write(`${dir}/gerrorn`, '0x2'), 'EINVAL')
    t.write(`${dir}/cmd`, 'TLBI_NH_ALL') // CONS 1
    const after = t.dump()
    assert.notEqual(after, before)
    assert.equal(t.write(`${dir}/prod`, '0xa'), 'EINVAL', 'PROD 0xa is 9 entries after CONS 0x1')
    assert.equal(t.dump(), after)
    assert.equal(t.write(`${dir}/prod`, '0x9'), 3, 'PROD 0x9 is a full queue')
    assert.equal(t.read(`${dir}/cons`), '0x01000001\n', 'slot 1 is empty: opcode 0 is illegal')
  })

  it('cons and gerror are read-only', () => {
    for (const f of ['cons', 'gerror', 'entries']) assert.equal(t.write(`${dir}/${f}`, '1'), 'EACCES', f)
  })
})

describe('fault injection', () => {
  let t: InvSession
  let a: ReturnType<typeof armNest>
  const inject = `iommu/${SMMU0}/inject_cerror`
  beforeEach(() => {
    t = new InvSession()
    a = armNest(t)
  })

  it('inject_cerror takes ILL, ABT, ATC_INV_SYNC, 1..3 or none; arming is in the trace', () => {
    assert.equal(t.read(inject), 'none\n')
    for (const [w, shown] of [
      ['ILL', 'ILL'],
      ['2', 'ABT'],
      ['CERROR_ATC_INV_SYNC', 'ATC_INV_SYNC'],
      ['none', 'none'],
      ['abt', 'ABT'],
      ['0', 'none'],
    ]) {
      t.write(inject, `${w}\n`)
      assert.equal(t.read(inject), `${shown}\n`, w)
    }
    assert.equal(t.write(inject, 'BOGUS'), 'EINVAL')
    assert.ok(t.trace().some((l) => l.endsWith(`${SMMU0}: inject_cerror <- ILL`)))
  })

  for (const code of ['ILL', 'ABT'] as const) {
    it(`${code}, array form: the next command fails (EIO, entry_num 0), once; the firing is in the trace`, () => {
      t.write(inject, code)
      const line = `HWPT_INVALIDATE hwpt_id=${a.viommu} cmd=TLBI_NH_ASID,asid=1 cmd=TLBI_NH_ASID,asid=2`
      const r = t.err(line, 'EIO', new RegExp(`^entry 0 .*injected CERROR_${code}`), false)
      assert.equal(r.written, 'entry_num=0')
      assert.equal(t.issued(), 0)
      assert.equal(t.read(inject), 'none\n')
      assert.ok(t.trace().some((l) => l.includes(`injected CERROR_${code}`)))
      assert.deepEqual(t.ok(line), { entry_num: '2' })
    })

    it(`${code}, ring form: CONS on the next command with ERR = ${code === 'ILL' ? 1 : 2}`, () => {
      t.write(inject, code)
      const r = ringCall(t, { hwptId: a.viommu, bits: 2, queue: cmdBytes(asidCmd(1), asidCmd(2), asidCmd(3), asidCmd(4)), cons: 1, prod: 3 })
      assert.equal(r.reply.errno, 'EIO')
      assert.equal(r.cons, ((code === 'ILL' ? 1 : 2) << 24) | 1)
      assert.equal(t.issued(), 0)
      const again = ringCall(t, { hwptId: a.viommu, bits: 2, queue: cmdBytes(asidCmd(1), asidCmd(2), asidCmd(3), asidCmd(4)), cons: 1, prod: 3 })
      assert.equal(again.cons, 3)
    })
  }

  it('ABT on a vCMDQ: the queue halts with ERR 2 and GERROR toggled; the firing is in the trace', () => {
    const q = t.id(`VCMDQ_ALLOC viommu_id=${a.viommu} log2size=2`, 'out_vcmdq_id')
    const dir = `${t.ctx.id}/${q}.vcmdq`
    t.write(inject, 'ABT')
    t.write(`${dir}/cmd`, 'TLBI_NH_ALL')
    assert.equal(t.read(`${dir}/cons`), '0x02000000\n')
    assert.equal(t.read(`${dir}/gerror`), '0x00000001\n')
    assert.ok(t.trace().some((l) => /vcmdq \d+ halted: CERROR_ABT at index 0: .*injected CERROR_ABT/.test(l)))
    // hardware retries an abort: acknowledging consumes the same command
    t.write(`${dir}/gerrorn`, '1')
    assert.equal(t.read(`${dir}/cons`), '0x00000001\n')
    assert.deepEqual(recent(t, 2), [[0x10n | VMID(a.vmid), 0n], HOST_SYNC_WORDS])
  })

  it('ATC_INV_SYNC, array form: the batch sync times out: ETIMEDOUT, entry_num = the batch\'s last entry, nothing issued', () => {
    t.write(inject, 'ATC_INV_SYNC')
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} cmd=ATC_INV,sid=0x10 cmd=TLBI_NH_ALL`, 'ETIMEDOUT', /CMD_SYNC timed out \(injected CERROR_ATC_INV_SYNC\)/, false)
    assert.equal(r.written, 'entry_num=1')
    assert.equal(t.issued(), 0)
    assert.equal(t.read(inject), 'none\n')
    assert.deepEqual(t.ok(`HWPT_INVALIDATE hwpt_id=${a.viommu} cmd=ATC_INV,sid=0x10 cmd=TLBI_NH_ALL`), { entry_num: '2' })
  })

  it('ATC_INV_SYNC with 64 commands: the first batch (0..62) times out, entry_num 62', () => {
    t.write(inject, 'ATC_INV_SYNC')
    const cmds = Array.from({ length: 64 }, (_, i) => `cmd=TLBI_NH_ASID,asid=${i}`).join(' ')
    const r = t.err(`HWPT_INVALIDATE hwpt_id=${a.viommu} ${cmds}`, 'ETIMEDOUT', /entries 0-62/, false)
    assert.equal(r.written, 'entry_num=62')
    assert.equal(t.issued(), 0)
  })

  it('ATC_INV_SYNC, ring form and vCMDQ: commands pass, the next CMD_SYNC fails with ERR 3 and CONS stays on it', () => {
    t.write(inject, 'ATC_INV_SYNC')
    const r = ringCall(t, { hwptId: a.viommu, bits: 2, queue: cmdBytes(c(0x40, SID(0x10)), SYNC, asidCmd(3), asidCmd(4)), cons: 0, prod: 3 })
    assert.equal(r.reply.errno, 'EIO')
    assert.equal(r.cons, 0x03000001)
    assert.deepEqual(recent(t, 2), [[0x40n | SID(0x8), 0n], HOST_SYNC_WORDS])
    assert.equal(t.issued(), 2)

    const q = t.id(`VCMDQ_ALLOC viommu_id=${a.viommu} log2size=2`, 'out_vcmdq_id')
    const dir = `${t.ctx.id}/${q}.vcmdq`
    t.write(inject, '3')
    t.write(`${dir}/cmd`, 'TLBI_NH_ALL\nSYNC\nTLBI_NH_ASID asid=9')
    assert.equal(t.read(`${dir}/cons`), '0x03000001\n')
    assert.equal(t.read(`${dir}/gerror`), '0x00000001\n')
    assert.ok(t.trace().some((l) => /vcmdq \d+ halted: CERROR_ATC_INV_SYNC at index 1/.test(l)))
  })

  for (const code of ['IQE', 'ICE', 'ITE'] as const) {
    it(`VT-d ${code}: EIO at the entry, FSTS 0x${FSTS[code].toString(16)} latched until written back to fault_status; one-shot`, () => {
      const u = new InvSession()
      const v = vtdNest(u)
      const dmar = `iommu/${DMAR0}`
      assert.equal(u.read(`${dmar}/inject_qi_error`), 'none\n')
      u.write(`${dmar}/inject_qi_error`, code)
      assert.equal(u.read(`${dmar}/inject_qi_error`), `${code}\n`)
      const r = u.err(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=all entry=all`, 'EIO', new RegExp(`^entry 0: dmar0's invalidation queue reported ${code}`), false)
      assert.equal(r.written, 'entry_num=0')
      assert.equal(u.read(`${dmar}/fault_status`), `0x${FSTS[code].toString(16).padStart(8, '0')} ${code}\n`)
      assert.equal(u.read(`${dmar}/inject_qi_error`), 'none\n')
      assert.ok(u.trace().some((l) => l.endsWith(`dmar0: inject_qi_error <- ${code}`)))
      assert.ok(u.trace().some((l) => l.includes(`reported ${code}`)))
      // one-shot: the same request now succeeds; FSTS stays latched until cleared
      assert.deepEqual(u.ok(`HWPT_INVALIDATE hwpt_id=${v.nested} entry=all entry=all`), { entry_num: '2' })
      assert.equal(u.read(`${dmar}/fault_status`), `0x${FSTS[code].toString(16).padStart(8, '0')} ${code}\n`)
      u.write(`${dmar}/fault_status`, `0x${FSTS[code].toString(16)}`)
      assert.equal(u.read(`${dmar}/fault_status`), '0x00000000 -\n')
    })
  }

  it('VT-d ring form: an injected ITE stops the ring at the entry with CONS written back', () => {
    const u = new InvSession()
    const v = vtdNest(u)
    u.write(`iommu/${DMAR0}/inject_qi_error`, 'ITE')
    const r = u.err(`HWPT_INVALIDATE_RING hwpt_id=${v.nested} q_cons=0x3 entry=all entry=all`, 'EIO', /entry 3: .*reported ITE/, false)
    assert.equal(r.written, 'q_cons=0x3')
  })
})
