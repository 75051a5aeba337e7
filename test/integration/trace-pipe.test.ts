/** The live trace on a real mount, read with cat from bash. */
import { strict as assert } from 'node:assert'
import { sh, withMount } from '../helpers/mount'

describe('sys/kernel/debug/iommufd/trace_pipe', () => {
  it('streams the lines emitted after it opened, as they come, and ends after a quiet second', async () => {
    await withMount(async (m) => {
      const r = await sh(
        [
          'exec 4<>dev/iommu; echo IOAS_ALLOC >&4; read -u 4 r; exec 4>&-', // before the reader opens: not shown
          // close() returns before the server handles RELEASE: wait for the state, so its line is not shown either
          'until [ ! -e sys/kernel/debug/iommufd/1 ]; do :; done',
          // the shell opens trace_pipe itself, so the stream has begun before the next line runs
          'exec 5<sys/kernel/debug/iommufd/trace_pipe; cat <&5 > /tmp/trace_pipe.$$ & reader=$!; exec 5<&-',
          'exec 3<>dev/iommu',
          'echo IOAS_ALLOC >&3; read -u 3 r',
          'echo "DESTROY id=1" >&3; read -u 3 r',
          'exec 3>&-',
          'wait $reader; echo "cat exit $?"',
          'cat /tmp/trace_pipe.$$; rm -f /tmp/trace_pipe.$$',
        ].join('\n'),
        { cwd: m.dir },
      )
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.trim().split('\n')
      assert.equal(lines[0], 'cat exit 0')
      assert.deepEqual(
        lines.slice(1).map((l) => l.replace(/^\[\s*\d+\] /, '')),
        ['ctx2: opened', 'ctx2: IOAS_ALLOC -> ok out_ioas_id=1', 'ctx2: DESTROY id=1 -> ok', 'ctx2: closed: all objects destroyed'],
      )
    })
  })
})
