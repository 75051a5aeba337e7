import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { promises as fsp } from 'node:fs'
import * as path from 'node:path'
import { CLI, Exit, iommufs, lazyUnmount, makeTempDir, waitExit } from '../helpers/cli'
import { sh } from '../helpers/mount'

/** A foreground `iommufs mount DIR ARGS` as a user starts it (no READY line): its stderr once it has exited. */
async function foreground(args: string[], whileMounted: (dir: string) => Promise<void>): Promise<{ stderr: string; exit: Exit | undefined }> {
  const dir = await makeTempDir()
  const child = spawn(process.execPath, [CLI, 'mount', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, IOMMUFS_READY_LINE: '' } })
  // 'close' comes after stderr has drained
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })))
  let out = ''
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d))
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d
        if (out.includes('; Ctrl-C to unmount\n')) resolve()
      })
      child.on('exit', () => reject(new Error(`server exited: ${err}`)))
    })
    await whileMounted(dir)
    child.kill('SIGTERM')
    const exit = await waitExit(exited, 10000)
    return { stderr: err, exit }
  } finally {
    child.kill('SIGKILL')
    await lazyUnmount(dir)
    await fsp.rm(dir, { recursive: true, force: true })
  }
}

const REQUEST = 'exec 3<>dev/iommu; echo IOAS_ALLOC >&3; read -u 3 r; echo "$r"'

describe('the foreground mount', () => {
  it('prints no request lines on stderr without -v', async () => {
    const r = await foreground([], async (dir) => assert.equal((await sh(REQUEST, { cwd: dir })).stdout, 'ok out_ioas_id=1\n'))
    assert.deepEqual(r.exit, { code: 0, signal: null })
    assert.doesNotMatch(r.stderr, /IOAS_ALLOC/)
    assert.match(r.stderr, /^iommufs: SIGTERM, unmounting /m)
  })

  it('with -v prints every request and reply, each line with the seconds since the mount and the requesting pid', async () => {
    const r = await foreground(['-v'], async (dir) => assert.equal((await sh(REQUEST, { cwd: dir })).stdout, 'ok out_ioas_id=1\n'))
    // the libfuse3 transport names the requesting process; fuse-native cannot
    assert.match(r.stderr, /^\[\s*\d+\]\s+\d+\.\d{6} pid \d+ ctx1: IOAS_ALLOC -> ok out_ioas_id=1$/m)
  })

  it('--record writes the session as a recording that replays clean', async () => {
    const tmp = await makeTempDir()
    try {
      const rec = path.join(tmp, 'rec.sh')
      await foreground(['--record', rec], async (dir) => assert.equal((await sh(REQUEST, { cwd: dir })).code, 0))
      const text = await fsp.readFile(rec, 'utf8')
      assert.match(text, /^open 3 dev\/iommu\nsend 3 'IOAS_ALLOC' 'ok out_ioas_id=1'\nclose 3\necho "replay: all replies matched" >&2\n$/m)
      const p = await iommufs(['replay', rec])
      assert.deepEqual([p.code, p.stderr], [0, 'replay: all replies matched\n'])
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true })
    }
  })
})
