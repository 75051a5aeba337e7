/**
 * The arithmetic of pinned-page charges (src/iommufd/pages.ts) and page
 * identities (src/memory/pages.ts), without FUSE: npinned counts each page of
 * a set once, charges land on the owner's mm and user by mode, and a move
 * past RLIMIT_MEMLOCK is ENOMEM and changes no owner.
 */
import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { eventually } from '../helpers/cli'
import { ErrnoError } from '../../src/util/errno'
import { PinnedPages, changeProcess, charges, describeCharges, npinned, statusWithCharges } from '../../src/iommufd/pages'
import { PageResolver, devName, pageOf, sameKey } from '../../src/memory/pages'
import { processCreds } from '../../src/util/proc-status'

describe('pinned-page accounting', () => {
  it('npinned: overlapping and repeated stretches of one set count each page once; sets are apart', () => {
    const a = new PinnedPages(true)
    const b = new PinnedPages(false)
    const n = npinned([
      { pages: a, first: 0n, last: 3n },
      { pages: a, first: 2n, last: 5n },
      { pages: a, first: 10n, last: 10n },
      { pages: b, first: 2n, last: 3n },
      { pages: a, first: 0n, last: 1n },
    ])
    assert.equal(n.get(a), 7n)
    assert.equal(n.get(b), 2n)
  })

  it('charges: every mode adds to the owner mm\'s pinned_vm; user mode to the user, mm mode to the mm\'s locked_vm; unowned sets to nobody', () => {
    const counts = new Map<PinnedPages, bigint>([
      [new PinnedPages(true, { pid: 10, uid: 5, mode: 'user' }), 3n],
      [new PinnedPages(true, { pid: 10, uid: 5, mode: 'mm' }), 2n],
      [new PinnedPages(false, { pid: 11, uid: 5, mode: 'none' }), 4n],
      [new PinnedPages(false), 9n],
    ])
    const c = charges(counts)
    assert.deepEqual([...c.mm], [
      [10, { pinned: 5n, locked: 2n }],
      [11, { pinned: 4n, locked: 0n }],
    ])
    assert.deepEqual([...c.user], [[5, 3n]])
    assert.equal(
      describeCharges(c),
      'pid 10: pinned_vm=5 locked_vm=2 (VmPin 20 kB, VmLck 8 kB)\npid 11: pinned_vm=4 locked_vm=0 (VmPin 16 kB, VmLck 0 kB)\nuid 5: locked_vm=3\n',
    )
  })

  it('statusWithCharges: VmPin and VmLck of the charged thread group grow by its charges in kB, in the kernel\'s layout; other processes\' text is unchanged', () => {
    const status = (tgid: number): string => `Name:\tprog\nTgid:\t${tgid}\nPid:\t${tgid + 1}\nVmLck:\t       4 kB\nVmPin:\t       0 kB\nVmRSS:\t    1024 kB\n`
    const c = charges(new Map([[new PinnedPages(true, { pid: 10, uid: 5, mode: 'mm' }), 3n]]))
    assert.equal(statusWithCharges(status(10), c), 'Name:\tprog\nTgid:\t10\nPid:\t11\nVmLck:\t      16 kB\nVmPin:\t      12 kB\nVmRSS:\t    1024 kB\n')
    assert.equal(statusWithCharges(status(12), c), status(12))
  })

  it('changeProcess: the caller takes every set; past its RLIMIT_MEMLOCK it is ENOMEM and no owner changes', () => {
    const me = processCreds(process.pid)!
    const limit = me.memlock ?? 0n
    const small = new PinnedPages(true, { pid: 1, uid: me.uid + 1, mode: 'user' })
    const counts = new Map([[small, 1n]])
    changeProcess(counts, process.pid, counts)
    assert.deepEqual(small.owner, { pid: me.tgid, uid: me.uid, mode: 'user' })
    if (me.memlock === undefined) return
    // one page more than the limit allows, owned elsewhere
    const big = new PinnedPages(true, { pid: 1, uid: me.uid + 1, mode: 'user' })
    const huge = new Map([[big, limit / 4096n + 1n]])
    assert.throws(() => changeProcess(huge, process.pid, huge), (e: unknown) => e instanceof ErrnoError && e.errno === 'ENOMEM' && /RLIMIT_MEMLOCK/.test(e.message))
    assert.deepEqual(big.owner, { pid: 1, uid: me.uid + 1, mode: 'user' })
  })

  it('changeProcess: an mm-mode charge past RLIMIT_MEMLOCK is ENOMEM whatever the caller\'s CAP_IPC_LOCK; pages charged to no one stay with their process', async () => {
    // the caller: a process of this user (and its capabilities) whose RLIMIT_MEMLOCK is 16 pages
    const caller = spawn('prlimit', ['--memlock=65536:65536', 'sleep', '60'], { stdio: 'ignore' })
    try {
      const pid = caller.pid!
      await eventually(async () => processCreds(pid)?.memlock === 65536n, 'the caller runs with its limit')
      const me = processCreds(pid)!
      const free = new PinnedPages(true, { pid: 1, uid: 0, mode: 'none' })
      changeProcess(new Map([[free, 1n << 40n]]), pid, new Map([[free, 1n << 40n]]))
      assert.deepEqual(free.owner, { pid: 1, uid: 0, mode: 'none' })
      const mm = new PinnedPages(true, { pid: 1, uid: me.uid, mode: 'mm' })
      const over = new Map([[mm, 17n]])
      assert.throws(() => changeProcess(over, pid, over), (e: unknown) => e instanceof ErrnoError && e.errno === 'ENOMEM' && /process \d+ would lock 17 pages/.test(e.message))
      assert.deepEqual(mm.owner, { pid: 1, uid: me.uid, mode: 'mm' })
    } finally {
      caller.kill('SIGKILL')
    }
  })

  it('page identity: an unknown process\'s bytes are their addresses; pages start at 4 KiB; st_dev prints as maps prints it', () => {
    const r = new PageResolver()
    assert.deepEqual(r.ofProcess(undefined, 0x1234n), { space: 'va', at: 0x1234n })
    assert.deepEqual(pageOf({ space: 'va', at: 0x1234n }), { space: 'va', at: 0x1000n })
    assert.ok(sameKey({ space: 'x', at: 1n }, { space: 'x', at: 1n }))
    // glibc's dev_t split: major 0x103, minor 0x4567 -> "103:4567"
    assert.equal(devName((0x103n << 8n) | 0x67n | (0x45n << 12n << 8n)), '103:4567')
  })
})
