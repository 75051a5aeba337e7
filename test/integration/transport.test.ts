/**
 * The FUSE transport: request order, caching per file kind, the threads
 * that warm other CPUs while the server busy-polls, and the fuse-native
 * fallback backend. Real mounts, driven from bash.
 */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { PACKAGE_ROOT } from '../../src/util/paths'
import { CLI, eventually, iommufsMountPoints, run } from '../helpers/cli'
import { sh, withMount } from '../helpers/mount'

const ATTR_FRESH = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'attr-fresh')
const THREAD_TEXT = path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'thread-text')
/** A Python thread that runs each step given to `do` and returns its result: steps on named threads, in order. */
const PY_THREAD = [
  'class T(threading.Thread):',
  '    def __init__(self): super().__init__(daemon=True); self.q = queue.Queue(); self.r = queue.Queue(); self.start()',
  '    def run(self):',
  '        while True: self.r.put(self.q.get()())',
  '    def do(self, f): self.q.put(f); return self.r.get()',
]

/** The iommufs mounts at or below `dir` in /proc/mounts: [source, mount point relative to dir]. */
async function mountsUnder(dir: string): Promise<string[][]> {
  const text = await fsp.readFile('/proc/mounts', 'utf8')
  return text
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'fuse.iommufs' && (f[1] === dir || f[1].startsWith(`${dir}/`)))
    .map((f) => [f[0], path.relative(dir, f[1]) || '.'])
}

/** SCHED_IDLE, as /proc/PID/task/TID/stat's policy field (the 41st) says it. */
const SCHED_IDLE = 5

/** The server's threads: state, scheduling policy and the CPUs each may run on. */
async function threadsOf(pid: number): Promise<{ state: string; policy: number; cpus: string }[]> {
  const tids = await fsp.readdir(`/proc/${pid}/task`)
  return Promise.all(
    tids.map(async (tid) => {
      const stat = await fsp.readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      // the fields after the command name, which may hold spaces: state is the 3rd field, policy the 41st
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const status = await fsp.readFile(`/proc/${pid}/task/${tid}/status`, 'utf8')
      return { state: rest[0], policy: Number(rest[41 - 3]), cpus: /^Cpus_allowed_list:\s*(\S+)$/m.exec(status)![1] }
    }),
  )
}

/** The CPUs in a Cpus_allowed_list ("0-1,4"). */
function cpuList(list: string): number[] {
  return list.split(',').flatMap((r) => {
    const [lo, hi] = r.split('-').map(Number)
    return Array.from({ length: (hi ?? lo) - lo + 1 }, (_, i) => lo + i)
  })
}

/** 300 text transactions from bash on one descriptor, back to back: the server lingers between them. */
const TRANSACTIONS = 'exec 3<>dev/iommu; for i in $(seq 300); do echo CONTEXT >&3; read -r r <&3; done; echo "$r"'

const DOMAINS_USED = 'sys/class/iommu/dmar0/intel-iommu/domains_used'
const VTD_DEV = '0000:02:00.0'
const CAP = 'sys/class/iommu/dmar0/intel-iommu/cap'

describe('FUSE transport (libfuse3 backend)', () => {
  it('close() then a check of the context directory, 200 times, with no waiting: the directory is always gone', async () => {
    await withMount(async (m) => {
      // close() queues RELEASE before it returns and the server answers in queue order,
      // so the stat after it is answered once the context is destroyed
      const r = await sh(
        `stale=0
for i in $(seq 200); do
  exec 3<>dev/iommu
  echo CONTEXT >&3; read -u 3 reply
  ctx=\${reply#ok id=}; ctx=\${ctx%% *}
  [ -d sys/kernel/debug/iommufd/$ctx ] || echo "context $ctx has no directory while open"
  exec 3>&-
  [ ! -e sys/kernel/debug/iommufd/$ctx ] || stale=$((stale + 1))
done
echo "last $ctx stale $stale"`,
        { cwd: m.dir },
      )
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'last 200 stale 0\n')
    })
  })

  it('is mounted as a machine is: the root, sysfs at sys/ and debugfs at sys/kernel/debug, one mount to the commands, unmounted as one', async () => {
    await withMount(async (m) => {
      assert.deepEqual(await mountsUnder(m.dir), [
        ['iommufs', '.'],
        ['sysfs', 'sys'],
        ['debugfs', 'sys/kernel/debug'],
      ])
      // the commands that look for "the" mount see one (iommufs exec picks it, unmount takes it whole)
      assert.deepEqual((await iommufsMountPoints()).filter((p) => p.startsWith(m.dir)), [m.dir])
      // a mount point shows as an empty directory in the session above it
      const r = await sh(`ls; ls sys; ls sys/kernel; head -c 4 sys/kernel/debug/iommufd/server`, { cwd: m.dir })
      assert.equal(r.stdout, 'dev\nsys\nbus\nclass\nkernel\ndebug\niommu_groups\npid ')
      const u = await run(process.execPath, [CLI, 'unmount', m.dir])
      assert.equal(u.code, 0, u.stderr)
      assert.deepEqual(await mountsUnder(m.dir), [])
    })
  })

  it('a value the model changes is never stale through cat, nor for a C program re-reading one descriptor at offset 0 and opening anew, 200 times each way', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `cat ${DOMAINS_USED}
exec 3<>dev/iommu
echo DEVICE_BIND pci=${VTD_DEV} >&3; read -u 3 r
echo IOAS_ALLOC >&3; read -u 3 r
echo DEVICE_ATTACH dev_id=1 pt_id=2 >&3; read -u 3 r
cat ${DOMAINS_USED}
echo DEVICE_DETACH dev_id=1 >&3; read -u 3 r
cat ${DOMAINS_USED}
exec 3>&-
${ATTR_FRESH} . 200`,
        { cwd: m.dir },
      )
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, '0\n1\n0\nfirst 0\nstale 0\nlast 0\n')
    })
  })

  it('a value the model changes is never stale: a new read and a re-read of the same fd at offset 0 see it at once', async () => {
    await withMount(async (m) => {
      // fd 4 stays open on domains_used across the change; `read` from it after a rewind is pread(fd, 0)
      const py = [
        'import os',
        `du = os.open("${DOMAINS_USED}", os.O_RDONLY)`,
        'print("fd", os.pread(du, 4096, 0).decode().strip())',
        'ctl = os.open("dev/iommu", os.O_RDWR)',
        'def req(line):',
        '    os.write(ctl, (line + "\\n").encode())',
        '    return os.pread(ctl, 4096, 0).decode().strip()',
        `req("DEVICE_BIND pci=${VTD_DEV}")`,
        'req("IOAS_ALLOC")',
        'objs = os.open("sys/kernel/debug/iommufd/" + req("CONTEXT").split()[1][3:] + "/objects", os.O_RDONLY)',
        'print("objects", os.pread(objs, 4096, 0).decode().splitlines()[0])',
        'print(req("DEVICE_ATTACH dev_id=1 pt_id=2"))',
        'print("fd", os.pread(du, 4096, 0).decode().strip())',
        `print("new", open("${DOMAINS_USED}").read().strip())`,
        'print("objects", os.pread(objs, 4096, 0).decode().splitlines()[0])',
        'print(req("DEVICE_DETACH dev_id=1"))',
        'print("fd", os.pread(du, 4096, 0).decode().strip())',
        `print("new", open("${DOMAINS_USED}").read().strip())`,
      ].join('\n')
      const r = await sh(`python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.split('\n')
      assert.deepEqual(lines.slice(0, 8), [
        'fd 0',
        'objects context 1: 2 objects',
        'ok pt_id=3',
        'fd 1',
        'new 1',
        'objects context 1: 3 objects',
        'ok',
        'fd 0',
      ])
      assert.equal(lines[8], 'new 0')
    })
  })

  it('a feature file the kernel caches reads the same through every path: cat, pread at 0, a second open', async () => {
    await withMount(async (m) => {
      const r = await sh(`a=$(cat ${CAP}); b=$(cat ${CAP}); exec 3<${CAP}; read -u 3 c; echo "$a $b $c $(stat -c %s ${CAP})"`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      const [a, b, c, size] = r.stdout.trim().split(' ')
      assert.match(a, /^[0-9a-f]+$/)
      assert.deepEqual([b, c, Number(size)], [a, a, a.length + 1])
    })
  })

  it('a sysfs attribute, read with no OPEN: 1-byte reads give the whole value, poll() says readable, ioctl() ENOTTY; a write EACCES (at open with O_TRUNC, as `>` opens)', async () => {
    await withMount(async (m) => {
      const py = [
        'import os, select, fcntl, errno',
        `fd = os.open("${DOMAINS_USED}", os.O_RDONLY)`,
        'text = b""',
        'while True:',
        '    c = os.read(fd, 1)',
        '    if not c: break',
        '    text += c',
        'print("bytes", text)',
        'p = select.poll(); p.register(fd, select.POLLIN)',
        'print("poll", [ev & select.POLLIN for _, ev in p.poll(0)])',
        'try: fcntl.ioctl(fd, 0x3b80)',
        'except OSError as e: print("ioctl", errno.errorcode[e.errno])',
        'os.close(fd)',
        `try: os.open("${DOMAINS_USED}", os.O_WRONLY | os.O_TRUNC)`,
        'except OSError as e: print("truncating open", errno.errorcode[e.errno])',
        // sysfs has no OPEN to refuse: the open succeeds and the write is refused
        `fd = os.open("${DOMAINS_USED}", os.O_WRONLY | os.O_APPEND)`,
        'try: os.write(fd, b"1\\n")',
        'except OSError as e: print("write", errno.errorcode[e.errno])',
        'os.close(fd)',
        `print("after", open("${DOMAINS_USED}").read().strip())`,
      ].join('\n')
      const r = await sh(`python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, "bytes b'0\\n'\npoll [1]\nioctl ENOTTY\ntruncating open EACCES\nwrite EACCES\nafter 0\n")
    })
  })

  it("a transaction's reply is read alike by the thread that wrote and by another thread of the process, and a second write replaces it", async () => {
    await withMount(async (m) => {
      const py = [
        'import os, threading',
        'fd = os.open("dev/iommu", os.O_RDWR)',
        'got = []',
        'def other(): got.append(os.pread(fd, 4096, 0).decode().strip())',
        'os.write(fd, b"IOAS_ALLOC\\n")',
        'print("writer", os.pread(fd, 4096, 0).decode().strip())',
        't = threading.Thread(target=other); t.start(); t.join()',
        'print("other", got[0])',
        'os.write(fd, b"IOAS_ALLOC\\n")',
        't = threading.Thread(target=other); t.start(); t.join()',
        'print("other", got[1])',
        'print("writer", os.read(fd, 4096).decode().strip())',
      ].join('\n')
      const r = await sh(`python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'writer ok out_ioas_id=1\nother ok out_ioas_id=1\nother ok out_ioas_id=2\nwriter ok out_ioas_id=2\n')
    })
  })

  it("two threads' transactions at once: each reads its own reply until a read has reached its end, then the latest", async () => {
    await withMount(async (m) => {
      // each step runs on the named thread, in this order
      const py = [
        'import os, queue, threading',
        'fd = os.open("dev/iommu", os.O_RDWR)',
        ...PY_THREAD,
        'a, b, c = T(), T(), T()',
        'w = lambda: os.pwrite(fd, b"IOAS_ALLOC\\n", 0)',
        'r = lambda: os.pread(fd, 4096, 0).decode().strip()',
        'a.do(w); b.do(w)',
        'print("a", a.do(r)); print("b", b.do(r))',
        'a.do(w); print("a", a.do(r))',
        'b.do(w); print("a", a.do(r)); print("c", c.do(r))',
      ].join('\n')
      const r = await sh(`python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'a ok out_ioas_id=1\nb ok out_ioas_id=2\na ok out_ioas_id=3\na ok out_ioas_id=4\nc ok out_ioas_id=4\n')
    })
  })

  it("a reply read to its end stays read though an ioctl() and 300 other descriptors' replies came between: the next write's reply is what any thread reads", async () => {
    await withMount(async (m) => {
      // the binding keeps each descriptor's last reply in a slot shared by every 256th descriptor
      const py = [
        'import fcntl, os, queue, struct, threading',
        ...PY_THREAD,
        'a, b = T(), T()',
        'x = os.open("dev/iommu", os.O_RDWR)',
        'w = lambda fd: (lambda: os.pwrite(fd, b"IOAS_ALLOC\\n", 0))',
        'r = lambda fd: (lambda: os.pread(fd, 4096, 0).decode().strip())',
        'a.do(w(x)); print("a", a.do(r(x)))',
        'alloc = bytearray(struct.pack("<III", 12, 0, 0)); fcntl.ioctl(x, 0x3b81, alloc); print("ioctl", struct.unpack("<III", alloc)[2])',
        'others = [os.open("dev/iommu", os.O_RDWR) for i in range(300)]',
        'print("others", len({a.do(w(fd)) and a.do(r(fd)) for fd in others}))',
        'b.do(w(x)); print("a", a.do(r(x)))',
      ].join('\n')
      const r = await sh(`python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'a ok out_ioas_id=1\nioctl 2\nothers 1\na ok out_ioas_id=3\n')
    })
  })

  it('while it lingers it warms each other CPU with a SCHED_IDLE thread pinned there (2 to 8 CPUs), all asleep once it stops; IOMMUFS_WARM=0 starts none', async () => {
    for (const warm of ['1', '0']) {
      await withMount(
        async (m) => {
          const r = await sh(TRANSACTIONS, { cwd: m.dir })
          assert.match(r.stdout, /^ok /, r.stderr)
          const main = (await fsp.readFile(`/proc/${m.pid}/status`, 'utf8')).match(/^Cpus_allowed_list:\s*(\S+)$/m)![1]
          const cpus = cpuList(main)
          const expected = warm === '1' && cpus.length >= 2 && cpus.length <= 8 ? cpus : []
          const warmers = (await threadsOf(m.pid)).filter((t) => t.policy === SCHED_IDLE)
          assert.deepEqual(warmers.map((t) => Number(t.cpus)).sort((a, b) => a - b), expected, `IOMMUFS_WARM=${warm}, server CPUs ${main}`)
          // lingering ends 100 µs after the last request at most, and the warmers with it
          await eventually(async () => (await threadsOf(m.pid)).filter((t) => t.policy === SCHED_IDLE).every((t) => t.state === 'S'), 'every warmer asleep')
        },
        { env: { IOMMUFS_WARM: warm } },
      )
    }
  })

  it('thread-text.c: two threads in transactions at once on one descriptor, 0 crossed replies', async () => {
    await withMount(async (m) => {
      const r = await sh(`${THREAD_TEXT} dev/iommu 500`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(r.stdout, 'threads=2 iterations=500 crossed=0\n')
    })
  })
})

describe('FUSE transport (fuse-native fallback)', () => {
  it('serves the feature tree and a dev/iommu transaction', async () => {
    await withMount(
      async (m) => {
        const r = await sh(
          // the server has libfuse2 loaded, not libfuse3
          `cat sys/class/iommu/dmar0/intel-vtd/model; exec 3<>dev/iommu; echo IOAS_ALLOC >&3; read -u 3 r; echo "$r"
grep -o 'libfuse3\\?\\.so\\.[0-9]' /proc/${m.pid}/maps | sort -u`,
          { cwd: m.dir },
        )
        assert.equal(r.code, 0, r.stderr)
        assert.equal(r.stdout, '1\nok out_ioas_id=1\nlibfuse.so.2\n')
        // one session: sysfs and debugfs are not mounts of their own on this backend
        assert.deepEqual(await mountsUnder(m.dir), [['iommufs', '.']])
      },
      { args: ['--backend', 'fuse-native'] },
    )
  })

  it('a trace_pipe read with nothing new ends with EOF (no interrupt could reach a waiting read)', async () => {
    await withMount(
      async (m) => {
        const r = await sh('cat sys/kernel/debug/iommufd/trace_pipe; echo "cat exit $?"', { cwd: m.dir })
        assert.equal(r.stdout, 'cat exit 0\n')
      },
      { args: ['--backend', 'fuse-native'] },
    )
  })
})
