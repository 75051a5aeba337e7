/**
 * What DMA reaches (src/memory): a mapped file (held open, a read past its
 * end aborts), a live process's memory (and what happens once it exits),
 * no memory at all, and the host physical address space that joins them.
 */
import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { FileBacking, NoBacking, ProcessBacking, isAbort } from '../../src/memory/backing'
import { PhysicalMemory } from '../../src/memory/physical'
import { readMaps } from '../../src/memory/pages'

describe('memory behind mappings', () => {
  let dir: string
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mem-'))))
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('no memory: every access is the external abort "no memory behind this mapping"', () => {
    const b = new NoBacking()
    assert.deepEqual(b.read(), { abort: 'no memory behind this mapping' })
    assert.deepEqual(b.write(), { abort: 'no memory behind this mapping' })
  })

  it('a file: reads and writes by offset; past the end (after a truncate) both abort and change nothing; the last release closes it', () => {
    const f = path.join(dir, 'ram')
    fs.writeFileSync(f, Buffer.from('0123456789abcdef'))
    const b = FileBacking.open(f)
    assert.equal((b.read(4n, 4) as Buffer).toString(), '4567')
    assert.equal(b.write(0n, Buffer.from('XY')), undefined)
    assert.equal(fs.readFileSync(f, 'utf8').slice(0, 4), 'XY23')
    assert.equal(b.size(), 16n)
    fs.truncateSync(f, 8)
    assert.match((b.read(6n, 4) as { abort: string }).abort, /beyond the end of the file at 0x8/)
    // regression: a write there grew the file back, with a hole up to it
    assert.match((b.write(6n, Buffer.from('abcd')) as { abort: string }).abort, /beyond the end of the file at 0x8$/)
    assert.match((b.write(12n, Buffer.from('ab')) as { abort: string }).abort, /beyond the end of the file at 0xc$/)
    assert.equal(fs.readFileSync(f, 'utf8'), 'XY234567', 'nothing written, the size kept')
    b.hold()
    b.release()
    assert.equal(b.open, true, 'a second mapping still holds it')
    b.release()
    assert.equal(b.open, false)
    assert.match((b.read(0n, 1) as { abort: string }).abort, /released/)
  })

  it('a process: its memory by virtual address; unmapped ranges are found for the EFAULT at map time; once it exits, DMA aborts', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' })
    try {
      const pid = child.pid!
      // the first mapping of the program is its ELF header
      const first = fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')[0]
      const start = BigInt(`0x${first.split('-')[0]}`)
      const b = ProcessBacking.open(pid)
      const head = b.read(start, 4)
      assert.ok(!isAbort(head))
      assert.deepEqual(head, Buffer.from([0x7f, 0x45, 0x4c, 0x46]))
      assert.equal(ProcessBacking.pinProblem(pid, start, 0x1000n), undefined)
      assert.deepEqual(ProcessBacking.pinProblem(pid, 0x1000n, 0x1000n), { at: 0x1000n, served: false })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
      const after = b.read(start, 4)
      assert.ok(isAbort(after), 'a DMA after the process exited is an external abort')
      assert.match(after.abort, /^pid \d+: /)
      b.release()
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('the physical space: table RAM and windows; a read across both; holes abort with the address', () => {
    const m = new PhysicalMemory()
    const ram = m.alloc(0x2000)
    assert.equal(m.ramPages, 2)
    const f = path.join(dir, 'w')
    fs.writeFileSync(f, Buffer.from('window!!'))
    const w = m.map(8n, FileBacking.open(f))
    assert.equal((m.read(w, 8) as Buffer).toString(), 'window!!')
    assert.equal(m.write64(ram + 0xff8n, 0x1122334455667788n), undefined)
    assert.equal(m.read64(ram + 0xff8n), 0x1122334455667788n)
    assert.deepEqual(m.read(w + 8n, 1), { abort: `no memory at physical address 0x${(w + 8n).toString(16)}` })
    m.unmap(w)?.backing.release()
    assert.ok(isAbort(m.read(w, 1)))
    m.free(ram, 0x2000)
    assert.equal(m.ramPages, 0)
  })
})

describe('a process\'s maps', () => {
  it('read for a span: exactly the mappings overlapping it, in order, as the whole read has them', async () => {
    // a sleeping process: its maps hold still (this one's change as V8 allocates)
    const child = spawn('sleep', ['30'], { stdio: 'ignore' })
    try {
      await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject))
      // once it waits in nanosleep it has exec'd and mapped all it will
      while (!fs.readFileSync(`/proc/${child.pid}/wchan`, 'utf8').includes('nanosleep')) await new Promise((r) => setImmediate(r))
      const all = readMaps(child.pid!)!
      assert.ok(all.length > 4)
      const m = Math.floor(all.length / 2)
      // from inside one mapping to the first byte of the next
      assert.deepEqual(readMaps(child.pid!, { from: all[m].start + 1n, to: all[m + 1].start + 1n }), [all[m], all[m + 1]])
      // a span ending where a mapping starts leaves it out; one before every mapping finds none
      assert.deepEqual(readMaps(child.pid!, { from: all[m].start, to: all[m].end }), [all[m]])
      assert.deepEqual(readMaps(child.pid!, { from: 0n, to: all[0].start }), [])
      // a span past 2^64 runs to the last mapping
      assert.deepEqual(readMaps(child.pid!, { from: all[all.length - 1].start, to: 1n << 70n }), [all[all.length - 1]])
    } finally {
      child.kill()
    }
  })
})
