import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { CLI, Exit, iommufs, iommufsMountPoints, lazyUnmount, makeTempDir, PACKAGE_ROOT, run, spawnServer, waitExit } from '../helpers/cli'

const SUITES = path.join(PACKAGE_ROOT, 'examples', 'suites')
const C_EXAMPLES = path.join(PACKAGE_ROOT, 'dist', 'examples', 'c')

/**
 * Each test gives `iommufs run` its own TMPDIR, so the temporary mount point
 * it makes is known: afterwards nothing may be mounted or left in there.
 */
async function withTmp<T>(fn: (tmp: string, env: NodeJS.ProcessEnv) => Promise<T>): Promise<T> {
  const tmp = await makeTempDir()
  try {
    return await fn(tmp, { TMPDIR: tmp })
  } finally {
    for (const m of (await iommufsMountPoints()).filter((p) => p.startsWith(`${tmp}/`))) await lazyUnmount(m)
    await fsp.rm(tmp, { recursive: true, force: true })
  }
}

async function leftBehind(tmp: string): Promise<{ mounts: string[]; entries: string[] }> {
  return { mounts: (await iommufsMountPoints()).filter((p) => p.startsWith(`${tmp}/`)), entries: await fsp.readdir(tmp) }
}

describe('iommufs run', () => {
  it('gives CMD the mount in IOMMUFS_MOUNT with the shim preloaded, passes its status through, and unmounts', async () => {
    await withTmp(async (tmp, env) => {
      const script = 'echo "$IOMMUFS_MOUNT"; cat "$IOMMUFS_MOUNT/sys/class/iommu/dmar0/intel-vtd/model"; exec 3<>/dev/iommu; echo IOAS_ALLOC >&3; read -u 3 r; echo "$r"; exit 7'
      const r = await iommufs(['run', '--', 'bash', '-c', script], { env })
      assert.equal(r.code, 7, r.stderr)
      assert.equal(r.stderr, '')
      const [mount, ...rest] = r.stdout.split('\n')
      assert.match(mount, new RegExp(`^${tmp}/iommufs-run-\\w+$`))
      assert.deepEqual(rest, ['1', 'ok out_ioas_id=1', ''])
      assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: [] })
    })
  })

  it('--namespace: a static CMD opens /dev/iommu itself, is handed descriptors, its status comes through, and the mount goes', async () => {
    await withTmp(async (tmp, env) => {
      const r = await iommufs(['run', '--namespace', '--', path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'ns-descriptors')], { env })
      assert.equal(r.code, 3, r.stderr)
      assert.equal(r.stderr, '')
      assert.match(r.stdout, /^IOMMU_FAULT_QUEUE_ALLOC: ok out_fault_id=1, a descriptor above the node's: yes, close-on-exec: yes\n/)
      assert.match(r.stdout, /\nIOMMU_DESTROY while a child holds the descriptor: EBUSY\nIOMMU_DESTROY once the child is gone: ok\n/)
      // the environment names the mount there too, and no shim is preloaded
      const shown = await iommufs(['run', '--namespace', '--', 'sh', '-c', 'echo "$IOMMUFS_MOUNT ${LD_PRELOAD:-none}"; test -e /dev/iommu'], { env })
      assert.equal(shown.code, 0, shown.stderr)
      assert.match(shown.stdout, new RegExp(`^${tmp}/iommufs-run-\\w+ none\n$`))
      assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: [] })
    })
  })

  for (const [what, script, code] of [
    ['CMD killed by SIGKILL', 'kill -KILL $$', 128 + 9],
    ['CMD crashing (SIGSEGV)', 'kill -SEGV $$', 128 + 11],
  ] as const) {
    it(`${what}: exit ${code}, nothing left mounted`, async () => {
      await withTmp(async (tmp, env) => {
        const r = await iommufs(['run', '--', 'bash', '-c', `test -e "$IOMMUFS_MOUNT/dev/iommu" && ${script}`], { env })
        assert.equal(r.code, code, r.stderr)
        assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: [] })
      })
    })
  }

  for (const [sig, code] of [
    ['SIGTERM', 128 + 15],
    ['SIGINT', 128 + 2],
  ] as const) {
    it(`run itself getting ${sig} passes it to CMD, unmounts, exits with CMD's status ${code}`, async () => {
      await withTmp(async (tmp, env) => {
        const child = spawn(process.execPath, [CLI, 'run', '--', 'bash', '-c', 'echo "$IOMMUFS_MOUNT"; exec tail -f /dev/null'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
        const exited = new Promise<Exit>((resolve) => child.on('exit', (c, s) => resolve({ code: c, signal: s })))
        let out = ''
        child.stdout.setEncoding('utf8')
        const mount = await new Promise<string>((resolve) =>
          child.stdout.on('data', (d: string) => {
            out += d
            if (out.endsWith('\n')) resolve(out.trim())
          }),
        )
        try {
          assert.ok((await iommufsMountPoints()).includes(mount), 'mounted while CMD runs')
          child.kill(sig)
          assert.deepEqual(await waitExit(exited, 10000), { code, signal: null })
          assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: [] })
        } finally {
          child.kill('SIGKILL')
        }
      })
    })
  }

  it('--keep serves the mount after CMD ends, until SIGTERM; then exits with CMD\'s status and unmounts', async () => {
    await withTmp(async (tmp, env) => {
      const child = spawn(process.execPath, [CLI, 'run', '--keep', '--', 'bash', '-c', 'exit 3'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
      const exited = new Promise<Exit>((resolve) => child.on('exit', (c, s) => resolve({ code: c, signal: s })))
      let err = ''
      child.stderr.setEncoding('utf8')
      const mount = await new Promise<string>((resolve) =>
        child.stderr.on('data', (d: string) => {
          err += d
          const m = /^iommufs: CMD exited with status 3; (\S+) stays mounted until Ctrl-C or SIGTERM$/m.exec(err)
          if (m) resolve(m[1])
        }),
      )
      try {
        assert.ok((await iommufsMountPoints()).includes(mount))
        assert.equal(await fsp.readFile(path.join(mount, 'sys/class/iommu/dmar0/intel-vtd/model'), 'utf8'), '1\n')
        child.kill('SIGTERM')
        assert.deepEqual(await waitExit(exited, 10000), { code: 3, signal: null })
        assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: [] })
      } finally {
        child.kill('SIGKILL')
      }
    })
  })

  it('refuses bad arguments with one line, exit 2, mounting nothing', async () => {
    await withTmp(async (tmp, env) => {
      for (const [args, msg] of [
        [['run'], 'iommufs: no CMD given (usage: iommufs run [options] -- CMD [ARGS...])\n'],
        [['run', '--sanitize', 'loud', '--', 'true'], 'iommufs: --sanitize loud: expected one of off, report, strict\n'],
        [['run', '--', 'no-such-program-iommufs'], 'iommufs: no-such-program-iommufs: no such executable in PATH\n'],
        [['run', '--topology', '/nonexistent.yaml', '--', 'true'], 'iommufs: /nonexistent.yaml: (top level): expected a readable file, got ENOENT\n'],
      ] as const) {
        const r = await iommufs(args, { env })
        assert.equal(r.stderr, msg)
        assert.equal(r.code, msg.includes('readable file') ? 1 : 2, r.stderr)
      }
      assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: [] })
    })
  })

  it('--sanitize: report prints the findings after CMD and keeps its status; strict exits 86; the recording names the mode', async () => {
    await withTmp(async (tmp, env) => {
      const dma = `bash ${path.join(PACKAGE_ROOT, 'examples', 'dma-smmuv3.sh')} "$IOMMUFS_MOUNT" >/dev/null`
      const report = await iommufs(['run', '--sanitize', 'report', '--', 'bash', '-c', dma], { env })
      assert.equal(report.code, 0, report.stderr)
      assert.match(report.stderr, /^iommufs: smmu3\.0x0000000009050000 sanitizer: mode=report findings=1\nfinding 1: TLB; sid=0x8; [^\n]*fix: TLBI_NH_VA [^\n]*\n$/)
      const rec = path.join(tmp, 'rec.sh')
      const strict = await iommufs(['run', '--sanitize', 'strict', '--record', rec, '--', 'bash', '-c', dma], { env })
      assert.equal(strict.code, 86, strict.stderr)
      assert.match(strict.stderr, /^iommufs: smmu3\.0x0000000009050000 sanitizer: mode=strict findings=1\n/)
      assert.match(strict.stderr, /^iommufs: --sanitize strict: 1 finding; CMD exited with status \d+, run exits 86$/m)
      assert.match(await fsp.readFile(rec, 'utf8'), /^# sanitizer: strict$/m)
      const clean = await iommufs(['run', '--sanitize', 'strict', '--', 'true'], { env })
      assert.deepEqual([clean.code, clean.stderr], [0, ''])
    })
  })

  describe('example suites under iommufs run', () => {
    it('C suite with ctest: 3 tests pass', async () => {
      const r = await iommufs(['run', '--', 'ctest', '--test-dir', path.join(SUITES, 'c'), '--output-on-failure'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^100% tests passed, 0 tests failed out of 3$/m)
    })

    it('C suite without ctest: each test by name; an unknown name fails the run', async () => {
      const suite = path.join(PACKAGE_ROOT, 'dist', 'examples', 'suites', 'c', 'suite')
      const ok = await iommufs(['run', '--', 'bash', '-c', `for t in ioas_alloc hw_info errors_change_nothing; do ${suite} $t || exit; done`])
      assert.equal(ok.code, 0, ok.stderr)
      const none = await iommufs(['run', '--', suite, 'nope'])
      assert.equal(none.code, 2)
      assert.equal(none.stderr, 'nope: no such test\n')
    })

    it('shell suite with prove: TAP, all tests successful', async () => {
      const r = await iommufs(['run', '--', 'prove', path.join(SUITES, 'shell', 'suite.sh')])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^Result: PASS$/m)
      assert.match(r.stdout, /Tests=6/)
    })

    it('pytest suite: every test passes', async function () {
      if ((await run('python3', ['-c', 'import pytest'])).code !== 0) this.skip()
      const r = await iommufs(['run', '--', 'python3', '-B', '-m', 'pytest', '-q', '-p', 'no:cacheprovider', path.join(SUITES, 'python')])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^\d+ passed in /m)
    })
  })
})

describe('record and replay', () => {
  for (const ex of ['nested-smmuv3', 'nested-vtd', 'errors', 'fds', 'threads']) {
    it(`a recording of examples/c/${ex} replays clean on a fresh mount`, async () => {
      await withTmp(async (tmp, env) => {
        const rec = path.join(tmp, `${ex}.sh`)
        const r = await iommufs(['run', '--record', rec, '--', path.join(C_EXAMPLES, ex)], { env })
        assert.equal(r.code, 0, r.stdout + r.stderr)
        const text = await fsp.readFile(rec, 'utf8')
        assert.ok((text.match(/^send /gm) ?? []).length >= 5, text)
        const p = await iommufs(['replay', rec], { env })
        assert.equal(p.stderr, 'replay: all replies matched\n')
        assert.equal(p.code, 0)
      })
    })
  }

  it('real ioctl()s (exec --namespace, no shim) are recorded too, and replay clean', async () => {
    await withTmp(async (tmp, env) => {
      const rec = path.join(tmp, 'ns.sh')
      const dir = path.join(tmp, 'mnt')
      await fsp.mkdir(dir)
      const srv = await spawnServer(dir, ['--record', rec])
      try {
        const r = await iommufs(['exec', '--mount', dir, '--namespace', '--', path.join(C_EXAMPLES, 'nested-smmuv3')])
        assert.equal(r.code, 0, r.stdout + r.stderr)
      } finally {
        await srv.stop()
        await fsp.rmdir(dir)
      }
      const text = await fsp.readFile(rec, 'utf8')
      assert.match(text, /^send 4 'DEVICE_BIND iommufd=1' 'ok out_devid=1'$/m)
      const p = await iommufs(['replay', rec], { env })
      assert.deepEqual([p.code, p.stderr], [0, 'replay: all replies matched\n'])
    })
  })

  it('a recording of a shell session keeps its text lines; a changed reply is the first divergence, exit 1', async () => {
    await withTmp(async (tmp, env) => {
      const rec = path.join(tmp, 'rec.sh')
      const s = await iommufs(['run', '--record', rec, '--', 'bash', '-c', 'exec 3<>"$IOMMUFS_MOUNT/dev/iommu"; for l in "IOAS_ALLOC" "DESTROY id=1" "DESTROY id=1"; do echo "$l" >&3; read -u 3 x; done'], { env })
      assert.equal(s.code, 0, s.stderr)
      const text = await fsp.readFile(rec, 'utf8')
      const steps = text.slice(text.indexOf('# ---- steps ----\n') + 18).split('\n')
      assert.deepEqual(steps.slice(0, 5), ['open 3 dev/iommu', "send 3 'IOAS_ALLOC' 'ok out_ioas_id=1'", "send 3 'DESTROY id=1' 'ok'", "send 3 'DESTROY id=1' 'err ENOENT id=1: no such object'", 'close 3'])
      assert.equal((await iommufs(['replay', rec], { env })).code, 0)

      await fsp.writeFile(rec, text.replace("'ok out_ioas_id=1'", "'ok out_ioas_id=5'"))
      const lineNo = text.split('\n').indexOf("send 3 'IOAS_ALLOC' 'ok out_ioas_id=1'") + 1
      const p = await iommufs(['replay', rec], { env })
      assert.equal(p.code, 1)
      assert.equal(p.stderr, `replay: line ${lineNo}: divergence\n  request:  IOAS_ALLOC\n  expected: ok out_ioas_id=5\n  actual:   ok out_ioas_id=1\n`)
      assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: ['rec.sh'] })
    })
  })

  it('a malformed recording is refused with its line number, exit 2, before anything runs', async () => {
    await withTmp(async (tmp, env) => {
      const rec = path.join(tmp, 'rec.sh')
      await iommufs(['run', '--record', rec, '--', 'true'], { env })
      const good = (await fsp.readFile(rec, 'utf8')).replace(/echo "replay: all replies matched" >&2\n$/, '')
      // the first line appended after the steps marker
      const at = good.split('\n').length
      for (const [body, why] of [
        ['send 3 IOAS_ALLOC ok\n', `line ${at}: send 3: descriptor 3 is not open`],
        ['open 3 dev/iommu\nsend 3 IOAS_ALLOC ok\n', `line ${at + 1}: send 3: expected two single-quoted words, the request and the expected reply`],
        ['open 3 dev/iommu\nsend 3 \'IOAS_ALLOC\' \'fine\'\n', `line ${at + 1}: send 3: the expected reply must start with "ok" or "err", got "fine"`],
        ['open 3 /etc/passwd\n', `line ${at}: open 3: expected a node dev/iommu or dev/vfio/devices/vfioN, got "/etc/passwd"`],
        ['rm -rf /tmp/x\n', `line ${at}: expected "open FD NODE", "send FD 'REQUEST' 'REPLY'" or "close FD", got "rm -rf /tmp/x"`],
      ]) {
        await fsp.writeFile(rec, good + body)
        const r = await iommufs(['replay', rec], { env })
        assert.equal(r.stderr, `iommufs: ${rec}: ${why}\n`)
        assert.equal(r.code, 2)
      }
      await fsp.writeFile(rec, 'hello\n')
      assert.equal((await iommufs(['replay', rec], { env })).stderr, `iommufs: ${rec}: line 1: not an iommufs recording (expected "#!/usr/bin/env bash")\n`)
      assert.deepEqual(await leftBehind(tmp), { mounts: [], entries: ['rec.sh'] })
    })
  })
})
