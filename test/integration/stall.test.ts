/**
 * No request may stall the other users of a mount: while one client sends the
 * worst request of each kind (the largest struct, buffer, array and frame
 * iommufs accepts, and the ones just past each limit), another keeps reading
 * a feature file. Every read must succeed with the right value, and every
 * worst request must get its answer. Nothing here measures time.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { decodeReply, encodeRequest, FRAME_HEADER, FRAME_MAGIC, FRAME_VERSION, FrameKind } from '../../src/uapi/frame'
import { LIMITS } from '../../src/util/limits'
import { ioctlOf, structBytes } from '../helpers/iommufd'
import { sh, withMount } from '../helpers/mount'

const MODEL = 'sys/class/iommu/dmar0/intel-vtd/model'

type FileHandle = Awaited<ReturnType<typeof fsp.open>>

/** Writes `req` and reads the whole reply back (a reply is at most a few KiB here). */
async function exchange(fh: FileHandle, req: Buffer): Promise<Buffer> {
  assert.equal((await fh.write(req, 0, req.length, 0)).bytesWritten, req.length)
  const buf = Buffer.alloc(1 << 16)
  const { bytesRead } = await fh.read(buf, 0, buf.length, 0)
  return buf.subarray(0, bytesRead)
}

async function line(fh: FileHandle, text: string): Promise<string> {
  return (await exchange(fh, Buffer.from(`${text}\n`))).toString('utf8').trimEnd()
}

/** One frame; returns the reply's errno name ('ok' for success) and message. */
async function frame(fh: FileHandle, name: string, values: Record<string, bigint>, buffers = new Map<bigint, Buffer | 'fault'>(), struct?: Buffer): Promise<string> {
  const io = ioctlOf(name)
  const r = decodeReply(await exchange(fh, encodeRequest({ cmd: io.cmd, target: 0, struct: struct ?? structBytes(io, values), buffers })))
  return `${r.errnoName ?? 'ok'} ${r.message}`.trim()
}

describe('no request stalls the other users of the mount', function () {
  this.timeout(120000)

  it('a reader of a feature file gets every value right while another client sends the worst request of each kind, and each gets its errno', async () => {
    await withMount(async (m) => {
      const stop = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'iommufs-stall-')), 'stop')
      // the reader counts its reads until the stop file appears; any failed or wrong read ends it with status 1
      const reader = sh(`n=0; while [ ! -e ${stop} ]; do v=$(cat ${m.path(MODEL)}) || exit 1; [ "$v" = 1 ] || { echo "read '$v'"; exit 1; }; n=$((n+1)); done; echo $n`)
      const answers: [string, string][] = []
      const fh = await fsp.open(m.path('dev/iommu'), 'r+')
      try {
        assert.equal(await line(fh, 'DEVICE_BIND pci=0000:00:01.0'), 'ok out_devid=1')
        assert.equal(await line(fh, 'IOAS_ALLOC'), 'ok out_ioas_id=2')
        assert.equal(await line(fh, 'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT'), 'ok out_hwpt_id=3')
        assert.match(await line(fh, 'DEVICE_ATTACH dev_id=1 pt_id=3'), /^ok/)
        assert.equal(await line(fh, 'VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3'), 'ok out_viommu_id=4')

        // text
        answers.push(['size=0xffffffff', await line(fh, 'IOAS_ALLOC size=0xffffffff')])
        answers.push(['largest size', await line(fh, `IOAS_ALLOC size=${LIMITS.structSize.max}`)])
        answers.push(['long line', await line(fh, `IOAS_ALLOC ${'#'.repeat(LIMITS.line.max + 1)}`)])
        answers.push(['ring 2^31', await line(fh, 'HWPT_INVALIDATE_RING hwpt_id=4 q_index_bits=31 cmd=TLBI_NH_ALL')])
        answers.push(['ring 2^13', await line(fh, 'HWPT_INVALIDATE_RING hwpt_id=4 q_index_bits=13 cmd=TLBI_NH_ALL')])

        // frames
        const big = Buffer.alloc(LIMITS.structSize.max)
        big.writeUInt32LE(big.length, 0)
        answers.push(['largest frame', await frame(fh, 'IOAS_ALLOC', {}, undefined, big)])
        const header = Buffer.alloc(FRAME_HEADER)
        header.writeUInt32LE(FRAME_MAGIC, 0)
        header.writeUInt16LE(FRAME_VERSION, 4)
        header.writeUInt16LE(FrameKind.REQUEST, 6)
        header.writeUInt32LE(LIMITS.frame.max + 1, 8)
        answers.push(['oversized frame', await fh.write(header, 0, header.length, 0).then(() => 'written', (e: NodeJS.ErrnoException) => e.code ?? String(e))])
        const ranges = (n: number): Buffer => {
          const b = Buffer.alloc(n * 16)
          for (let i = 0; i < n; i++) {
            b.writeBigUInt64LE(0x100000000n + BigInt(n - i) * 0x10000n, i * 16)
            b.writeBigUInt64LE(0x100000000n + BigInt(n - i) * 0x10000n + 0xfffn, i * 16 + 8)
          }
          return b
        }
        const allow = (n: number, data: Buffer): Promise<string> => frame(fh, 'IOAS_ALLOW_IOVAS', { ioas_id: 2n, num_iovas: BigInt(n), allowed_iovas: 0x1000n }, new Map([[0x1000n, data]]))
        answers.push(['allow 2^20 ranges', await allow(1 << 20, Buffer.alloc(LIMITS.userBuffer.max))])
        answers.push(['allow the most ranges', await allow(LIMITS.allowedIovas.max, ranges(LIMITS.allowedIovas.max))])
        const cmds = (n: number): Buffer => {
          const b = Buffer.alloc(n * 16)
          for (let i = 0; i < n; i++) b.writeBigUInt64LE(0x10n, i * 16) // TLBI_NH_ALL
          return b
        }
        const inv = (n: number): Promise<string> => frame(fh, 'HWPT_INVALIDATE', { hwpt_id: 4n, data_uptr: 0x1000n, data_type: 1n, entry_len: 16n, entry_num: BigInt(n) }, new Map([[0x1000n, cmds(n)]]))
        answers.push(['invalidate 2^19', await inv(1 << 19)])
        answers.push(['invalidate 4096', await inv(LIMITS.invalidateEntries.max)])
      } finally {
        await fh.close()
        await fsp.writeFile(stop, '')
      }
      const r = await reader
      await fsp.rm(path.dirname(stop), { recursive: true })
      assert.equal(r.code, 0, `the reader failed: ${r.stdout}${r.stderr}`)
      assert.ok(Number(r.stdout) >= 1, r.stdout)

      const got = Object.fromEntries(answers)
      assert.match(got['size=0xffffffff'], /^err EFAULT size=4294967295: iommufs carries at most 17825760 struct bytes/)
      assert.equal(got['largest size'], 'ok out_ioas_id=5')
      assert.equal(got['long line'], 'err EMSGSIZE request line longer than 4096 bytes')
      assert.match(got['ring 2^31'], /^err ENOMEM q_uptr: a 34359738368-byte buffer is more than iommufs accepts/)
      assert.match(got['ring 2^13'], /^err EINVAL q_index_bits=13: iommufs takes rings of at most 4096 entries/)
      assert.equal(got['largest frame'], 'ok')
      assert.equal(got['oversized frame'], 'EMSGSIZE')
      assert.equal(got['allow 2^20 ranges'], 'ENOMEM num_iovas=1048576: iommufs takes at most 1024 ranges')
      assert.equal(got['allow the most ranges'], 'ok')
      assert.equal(got['invalidate 2^19'], 'EINVAL entry_num=524288: iommufs takes at most 4096 entries per call')
      assert.equal(got['invalidate 4096'], 'ok')
    })
  })
})
