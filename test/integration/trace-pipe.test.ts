/** The live trace on a real mount, read with cat, head and python from bash, and with fs.readFile. */
import { strict as assert } from 'node:assert'
import { promises as fsp } from 'node:fs'
import { sh, withMount } from '../helpers/mount'

const PIPE = 'sys/kernel/debug/iommufd/trace_pipe'
/**
 * Waits (no sleep) until process $1 is blocked in read(2) on trace_pipe:
 * /proc/PID/syscall then says "0 FD ..." with FD open on trace_pipe.
 */
const UNTIL_READING = [
  'until_reading() {',
  '  local s',
  '  until s=$(cat /proc/$1/syscall 2>/dev/null) && set -- "$1" $s && [ "$2" = 0 ] && [[ $(readlink /proc/$1/fd/$(($3))) == */trace_pipe ]]; do',
  '    [ -d /proc/$1 ] || return 1',
  '    set -- "$1"',
  '  done',
  '}',
].join('\n')

describe('sys/kernel/debug/iommufd/trace_pipe', () => {
  it('the trace, past 4096 bytes, says size 0 as a debugfs file does, so fs.readFile reads it all (as cat does)', async () => {
    await withMount(async (m) => {
      const r = await sh('exec 3<>dev/iommu; for i in $(seq 60); do echo IOAS_ALLOC >&3; read -u 3 r; done; exec 3>&-; stat -c %s sys/kernel/debug/iommufd/trace', { cwd: m.dir })
      assert.equal(r.stdout, '0\n', r.stderr)
      const whole = await m.cat('sys/kernel/debug/iommufd/trace')
      assert.ok(whole.length > 4096, `${whole.length} bytes`)
      assert.equal(await fsp.readFile(m.path('sys/kernel/debug/iommufd/trace'), 'utf8'), whole)
    })
  })

  it('streams the lines emitted after it opened, as they come', async () => {
    await withMount(async (m) => {
      const r = await sh(
        [
          // before the reader opens: not shown (close() queues RELEASE before it returns, and requests are answered in order)
          'exec 4<>dev/iommu; echo IOAS_ALLOC >&4; read -u 4 r; exec 4>&-',
          // the shell opens trace_pipe itself, so the stream has begun before the next line runs
          `exec 5<${PIPE}; head -n 4 <&5 > /tmp/trace_pipe.$$ & reader=$!; exec 5<&-`,
          'exec 3<>dev/iommu',
          'echo IOAS_ALLOC >&3; read -u 3 r',
          'echo "DESTROY id=1" >&3; read -u 3 r',
          'exec 3>&-',
          'wait $reader; echo "head exit $?"',
          'cat /tmp/trace_pipe.$$; rm -f /tmp/trace_pipe.$$',
        ].join('\n'),
        { cwd: m.dir },
      )
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.trim().split('\n')
      assert.equal(lines[0], 'head exit 0')
      assert.deepEqual(
        lines.slice(1).map((l) => l.replace(/^\[\s*\d+\]\s+\d+\.\d{6} (pid \d+ )?/, '')),
        ['ctx2: opened', 'ctx2: IOAS_ALLOC -> ok out_ioas_id=1', 'ctx2: DESTROY id=1 -> ok', 'ctx2: closed: all objects destroyed'],
      )
    })
  })

  it('a read with nothing new waits; Ctrl-C (SIGINT) ends cat at once', async () => {
    await withMount(async (m) => {
      // cat replaces this shell, so $$ is cat's pid; the helper signals it once it blocks in read
      const r = await sh(`${UNTIL_READING}\n( until_reading $$; kill -INT $$ ) &\nexec cat ${PIPE}`, { cwd: m.dir })
      assert.equal(r.code, 130, r.stderr)
      assert.equal(r.stdout, '')
    })
  })

  it('a signal handled by the reader makes the waiting read return EINTR', async () => {
    await withMount(async (m) => {
      const py = [
        'import os, signal',
        'class Interrupted(Exception): pass',
        'def handler(*_): raise Interrupted()',
        'signal.signal(signal.SIGUSR1, handler)',
        `fd = os.open("${PIPE}", os.O_RDONLY)`,
        'try:',
        '    os.read(fd, 4096)',
        '    print("read returned")',
        'except Interrupted:',
        '    print("interrupted")',
        'os.close(fd)',
        'print("closed")',
      ].join('\n')
      const r = await sh(`${UNTIL_READING}\n( until_reading $$; kill -USR1 $$ ) &\nexec python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'interrupted\nclosed\n')
    })
  })

  it('poll() says not readable until a line comes, then readable', async () => {
    await withMount(async (m) => {
      const py = [
        'import os, select',
        `fd = os.open("${PIPE}", os.O_RDONLY)`,
        'p = select.poll()',
        'p.register(fd, select.POLLIN)',
        'print("before", p.poll(0))',
        'ctl = os.open("dev/iommu", os.O_RDWR)',
        'os.write(ctl, b"IOAS_ALLOC\\n")',
        'print("after", [(f == fd, ev & select.POLLIN) for f, ev in p.poll(-1)])',
        'print(os.read(fd, 4096).decode().count("\\n"), "lines")',
      ].join('\n')
      const r = await sh(`python3 -c '${py}'`, { cwd: m.dir })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, 'before []\nafter [(True, 1)]\n2 lines\n')
    })
  })
})
