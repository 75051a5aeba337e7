import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { ioctlByName } from '../../src/uapi/ioctls'
import { encode } from '../../src/uapi/layout'
import { FrameKind, decodeReply, encodeRequest } from '../../src/uapi/frame'
import { makeTempDir, PACKAGE_ROOT } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

/** Invalidation (issue 4) on a real mount: the shell test of the vCMDQ, the walk-through example, a ring request as a frame. */
describe('invalidation through the mount', () => {
  describe('test/shell/ring.sh', () => {
    const script = path.join(PACKAGE_ROOT, 'test', 'shell', 'ring.sh')

    it('passes on a real mount, with the checks of the illegal command and the resume', async () => {
      await withMount(async (m) => {
        const r = await sh(`bash ${script} ${m.dir}`)
        assert.equal(r.code, 0, r.stdout + r.stderr)
        assert.equal(r.stderr, '')
        const lines = r.stdout.trim().split('\n')
        assert.equal(lines.pop(), `1..${lines.filter((l) => /^(not )?ok /.test(l)).length}`, 'the TAP plan comes last')
        const checks = lines.filter((l) => !l.startsWith('#'))
        assert.equal(checks.length, 40)
        assert.deepEqual(checks.filter((l) => !l.startsWith('ok ')), [])
        assert.equal(lines[lines.length - 1], '# 40 checks passed')
        for (const want of [
          'ok 1 - context 1: vIOMMU 4, vCMDQ 6',
          'ok 11 - cmdq: ATC_INV left with the physical StreamID 0x8',
          'ok 12 - cmdq: TLBI_NH_ASID carries VMID 1',
          'ok 15 - cons stops on the illegal command',
          'ok 16 - CONS.ERR is CERROR_ILL',
          'ok 17 - gerror: CMDQ_ERR toggled',
          'ok 25 - halted: cons does not move',
          'ok 28 - resumed: cons reaches prod, ERR cleared',
          'ok 34 - cons wraps: index 1, wrap flag set',
          'ok 38 - writing past the end of ring: EFBIG',
        ]) {
          assert.ok(lines.includes(want), `missing: ${want}\n${r.stdout}`)
        }
      })
    })

    it('fails (exit 1, "not ok") on a directory that is not a mount', async () => {
      const dir = await makeTempDir()
      try {
        const r = await sh(`bash ${script} ${dir}`)
        assert.equal(r.code, 1)
        assert.match(r.stdout, /^not ok 1 - open dev\/iommu$/m)
      } finally {
        await fsp.rmdir(dir)
      }
    })
  })

  describe('examples/ring-invalidation.sh', () => {
    const example = path.join(PACKAGE_ROOT, 'examples', 'ring-invalidation.sh')

    it('walks through every step on the default machine and prints the physical queue', async () => {
      await withMount(async (m) => {
        const r = await sh(`bash ${example} ${m.dir}`)
        assert.equal(r.code, 0, r.stdout + r.stderr)
        assert.equal(r.stderr, '')
        const out = r.stdout
        for (const want of [
          '  vIOMMU 4 owns VMID 1 on smmu3.0x0000000009050000; vsid_map: 0x10->0x8',
          '  < ok entry_num=2',
          '  < err EIO entry 1 (CFGI_STE sid=0x10): opcode 0x3 (CFGI_STE) is not accepted through a vIOMMU (written back: entry_num=1)',
          '  < ok q_cons=0x11',
          '  < ok q_cons=0x12',
          '  CONS index 16 (slot 0, wrap 1), ERR 1 = CERROR_ILL',
          '  after PROD=3: CONS 0x01000001, GERROR 0x00000001, GERRORN 0x00000000',
          '  after the fix and GERRORN: CONS 0x00000003, GERRORN 0x00000001',
          'all steps behaved as described',
        ]) {
          assert.ok(out.split('\n').includes(want), `missing line: ${JSON.stringify(want)}\n${out}`)
        }
        // the physical queue: the host driver's STE write on attach (abort -> S2: two CFGI_STE + CMD_SYNC steps, then
        // PREFETCH_CFG) and ATS coming on (the whole ATC), the array form's two commands, then the ring's slots 0xf and 0x0
        assert.match(out, /^ {4}0\t0000000800000003\t0000000000000001\tCFGI_STE sid=0x8 leaf=1$/m)
        assert.match(out, /^ {4}2\t0000000800000003\t0000000000000001\tCFGI_STE sid=0x8 leaf=1$/m)
        assert.match(out, /^ {4}4\t0000000800000001\t0000000000000000\tPREFETCH_CFG sid=0x8$/m)
        assert.match(out, /^ {4}5\t0000000800000040\t0000000000000034\tATC_INV sid=0x8 size=52$/m)
        assert.match(out, /^ {4}7\t0001000100000012\t0000000000001001\tTLBI_NH_VA vmid=1 asid=1 leaf=1 addr=0x1000$/m)
        assert.match(out, /^ {4}8\t0000000800000040\t0000000000000000\tATC_INV sid=0x8$/m)
        assert.match(out, /^ {3}10\t000f000100000011\t0000000000000000\tTLBI_NH_ASID vmid=1 asid=15$/m)
        assert.match(out, /^ {3}11\t0010000100000011\t0000000000000000\tTLBI_NH_ASID vmid=1 asid=16$/m)
        assert.match(out, /^ Entries: 256\tPROD: 0x00000019\tCONS: 0x00000019\tIssued: 25$/m)
      })
    })

    it('exits 2 when the directory is not a mount', async () => {
      const dir = await makeTempDir()
      try {
        const r = await sh(`bash ${example} ${dir}`)
        assert.equal(r.code, 2)
        assert.match(r.stderr, /not an iommufs mount/)
      } finally {
        await fsp.rmdir(dir)
      }
    })
  })

  it("HWPT_INVALIDATE_RING as a binary frame: the draft's example, CONS written back in the reply", async () => {
    await withMount(async (m) => {
      const fh = await fsp.open(m.path('dev/iommu'), 'r+')
      try {
        const text = async (line: string): Promise<string> => {
          await fh.write(Buffer.from(`${line}\n`), 0, undefined, 0)
          const buf = Buffer.alloc(4096)
          const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
          return buf.subarray(0, bytesRead).toString('utf8').trim()
        }
        for (const [line, reply] of [
          ['DEVICE_BIND pci=0000:00:01.0', 'ok out_devid=1'],
          ['IOAS_ALLOC', 'ok out_ioas_id=2'],
          ['HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT', 'ok out_hwpt_id=3'],
          ['DEVICE_ATTACH dev_id=1 pt_id=3', 'ok pt_id=3'],
          ['VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3', 'ok out_viommu_id=4'],
          ['VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10', 'ok out_vdevice_id=5'],
        ]) {
          assert.equal(await text(line), reply, line)
        }
        const io = ioctlByName('HWPT_INVALIDATE_RING')!
        const qAddr = 0x7f0000100000n
        const consAddr = 0x7f0000200000n
        const queue = Buffer.alloc(16 * 16)
        for (let i = 0; i < 16; i++) queue.writeBigUInt64LE(0x11n | (BigInt(0x100 + i) << 48n), i * 16) // TLBI_NH_ASID asid=0x100+i
        queue.writeBigUInt64LE(0x40n | (0x10n << 32n), 0) // slot 0: ATC_INV vSID 0x10
        const cons = Buffer.alloc(4)
        cons.writeUInt32LE(0xf)
        const struct = encode(io.layout, {
          size: 48n,
          hwpt_id: 4n,
          q_uptr: qAddr,
          q_cons_uptr: consAddr,
          q_prod: 0x11n,
          q_index_bits: 4n,
          q_entry_num: 16n,
          q_entry_len: 16n,
          data_type: 1n,
        })
        assert.equal(io.cmd, 0x3bc0)
        const frame = encodeRequest({ cmd: io.cmd, target: 0, struct, buffers: new Map([[qAddr, queue], [consAddr, cons]]) })
        const { bytesWritten } = await fh.write(frame, 0, frame.length, 0)
        assert.equal(bytesWritten, frame.length)
        const buf = Buffer.alloc(64 * 1024)
        const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
        const reply = decodeReply(buf.subarray(0, bytesRead))
        assert.equal(reply.kind, FrameKind.REPLY)
        assert.equal(reply.errno, 0, reply.message)
        assert.deepEqual(
          reply.buffers.map((b) => [b.addr, b.data?.readUInt32LE(0)]),
          [[consAddr, 0x11]],
        )
        const cmdq = await fsp.readFile(m.path('sys/kernel/debug/iommufd/iommu/smmu3.0x0000000009050000/cmdq'), 'utf8')
        // slots 0-4: the host driver's STE write when the device attached (two CFGI_STE + CMD_SYNC steps, PREFETCH_CFG),
        // 5-6: ATS coming on with it (the whole ATC)
        assert.match(cmdq, /^ Entries: 256\tPROD: 0x0000000a\tCONS: 0x0000000a\tIssued: 10$/m)
        assert.match(cmdq, /^ {4}4\t0000000800000001\t0000000000000000\tPREFETCH_CFG sid=0x8$/m)
        assert.match(cmdq, /^ {4}5\t0000000800000040\t0000000000000034\tATC_INV sid=0x8 size=52$/m)
        assert.match(cmdq, /^ {4}7\t010f000100000011\t0000000000000000\tTLBI_NH_ASID vmid=1 asid=271$/m)
        assert.match(cmdq, /^ {4}8\t0000000800000040\t0000000000000000\tATC_INV sid=0x8$/m)
        assert.match(cmdq, /^ {4}9\t0000000000002046\t0000000000000000\tSYNC cs=2$/m)
      } finally {
        await fh.close()
      }
    })
  })
})
