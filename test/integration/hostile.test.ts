/**
 * What a hostile user of a mount can do to the others: each case is an
 * attack that once held the server, crashed it or left state behind, run
 * through a real mount; afterwards the mount still answers and the trace has
 * no handler bug.
 */
import { strict as assert } from 'node:assert'
import { closeSync, openSync, writeSync } from 'node:fs'
import { sh, withMount, TestMount } from '../helpers/mount'
import { LIMITS } from '../../src/util/limits'

/** The mount answers a new context, and no handler bug reached the trace. */
async function stillWell(m: TestMount): Promise<void> {
  const r = await sh(`exec 3<>${m.path('dev/iommu')}; echo IOAS_ALLOC >&3; read -r -u 3 r; echo "$r"`)
  assert.equal(r.stdout, 'ok out_ioas_id=1\n', r.stderr)
  assert.doesNotMatch(await m.cat('sys/kernel/debug/iommufd/trace'), / bug: /)
}

describe('hostile users', function () {
  this.timeout(60000)

  it('one write of more than 64 request lines is E2BIG and runs none of them, on dev/iommu and a DMA port (regression: a 1 MiB write of CONTEXT lines held every user for 0.8 s)', async () => {
    await withMount(async (m) => {
      const r = await sh(`cd ${m.dir}
exec 3<>dev/iommu
echo CONTEXT >&3; read -r -u 3 r; ctx=\${r##*path=/}
t=$(mktemp); trap 'rm -f $t' EXIT
lines() { for i in $(seq $2); do echo "$1"; done > $t; cat $t; }   # cat sends a small file in one write
lines IOAS_ALLOC 65 >&3 && echo wrote
grep -c ioas "$ctx/objects" || true
lines IOAS_ALLOC 64 >&3 && echo wrote 64
grep -c ioas "$ctx/objects"
exec 4<>sys/kernel/debug/iommufd/dma/0000:00:01.0
lines 'translate iova=0x1000' 65 >&4 && echo wrote
read -r -u 4 r; echo "dma: $r"`)
      assert.equal(
        r.stdout,
        '0\nwrote 64\n64\ndma: err E2BIG more than 64 request lines in one write; send them in several writes\n',
      )
      assert.equal(r.stderr, 'cat: write error: Argument list too long\ncat: write error: Argument list too long\n')
      await stillWell(m)
    })
  })

  it('a DMA write past the end of a mapped file truncated since is an external abort and leaves the file as it is (regression: it grew the file back, as a read there aborted)', async () => {
    await withMount(async (m) => {
      const r = await sh(`cd ${m.dir}; ram=$(mktemp); trap 'rm -f $ram' EXIT; truncate -s 8K $ram
exec 3<>dev/iommu 4<>sys/kernel/debug/iommufd/dma/0000:00:02.0
req() { echo "$1" >&3; read -r -u 3 r; echo "$r"; }
req "DEVICE_BIND pci=0000:00:02.0"; req IOAS_ALLOC
req "IOAS_MAP_FILE ioas_id=2 flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x2000 iova=0x20000"
req "DEVICE_ATTACH dev_id=1 pt_id=2"
truncate -s 4K $ram
echo "write iova=0x21008 data=4142" >&4; read -r -u 4 r; echo "$r"
echo "write iova=0x20008 data=4142" >&4; read -r -u 4 r; echo "$r"
stat -c %s $ram`)
      assert.equal(r.stdout.split('\n').slice(0, 4).join('\n'), 'ok out_devid=1\nok out_ioas_id=2\nok iova=0x20000\nok pt_id=3', r.stderr)
      assert.match(r.stdout, /\nabort file \/[^:]+: beyond the end of the file at 0x1008\nok write sid=0x10 pasid=none iova=0x20008 len=2\n4096\n$/)
      await stillWell(m)
    })
  })
  it('descriptors each holding an unfinished 16 MiB frame: past the server-wide bound the write is ENOMEM and the mount serves on; closing gives the room back', async () => {
    await withMount(async (m) => {
      const start = Buffer.alloc(16 << 20)
      start.writeUInt32LE(0x464d4f49, 0) // a frame header ("IOMF", version 1) announcing the largest frame
      start.writeUInt16LE(1, 4)
      start.writeUInt32LE(LIMITS.frame.max, 8)
      start.writeUInt32LE(0x3b81, 12)
      const fits = LIMITS.pendingBytes.max / (16 << 20)
      const fds = Array.from({ length: fits + 1 }, () => openSync(m.path('dev/iommu'), 'r+'))
      try {
        for (const fd of fds.slice(0, fits)) assert.equal(writeSync(fd, start), 16 << 20)
        assert.throws(() => writeSync(fds[fits], start), /ENOMEM/)
        await stillWell(m)
        // with the libfuse3 backend the close's RELEASE is served before the next request: its frame no longer counts
        closeSync(fds.shift()!)
        assert.equal(writeSync(fds[fits - 1], start), 16 << 20)
      } finally {
        for (const fd of fds) closeSync(fd)
      }
    })
  })

  it(`trace_pipe is open at most ${LIMITS.tracePipeReaders.max} times at once; the next open is ENFILE, a close makes room (regression: 300 waiting readers made each request cost the server 8 ms, every line waking each)`, async () => {
    await withMount(async (m) => {
      const pipe = m.path('sys/kernel/debug/iommufd/trace_pipe')
      const fds = Array.from({ length: LIMITS.tracePipeReaders.max }, () => openSync(pipe, 'r'))
      try {
        assert.throws(() => openSync(pipe, 'r'), /ENFILE/)
        closeSync(fds.pop()!)
        fds.push(openSync(pipe, 'r'))
        await stillWell(m)
      } finally {
        for (const fd of fds) closeSync(fd)
      }
    })
  })
})
