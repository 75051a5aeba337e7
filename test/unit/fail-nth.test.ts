/**
 * A fail-nth sweep, after the kernel's iommufd_fail_nth: each command
 * sequence runs with a failure injected at fallible step 1, 2, 3, ... of its
 * last command (object allocation, ID insertion, page table, mapping and
 * queue allocation, copies from and to the user), until a run injects
 * nothing. Each time the command must fail with that step's errno, leave the
 * whole world exactly as before, and once every context is closed, no ID,
 * VMID, domain or device ownership may be left behind. A failed copy of the
 * struct back to the caller is the exception the kernel makes: the command
 * answers EFAULT and keeps its effect, or takes it back by unbinding or
 * detaching (KEEPS_EFFECT, UNDONE_BY).
 */
import { strict as assert } from 'node:assert'
import { World } from '../../src/iommufd/world'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { ErrnoError } from '../../src/util/errno'
import { failNth, fallible, taskFailNth } from '../../src/util/fail-nth'
import { unbind } from '../../src/iommufd/device'
import { IommuBench, defaultMachine, dumpWorld } from '../helpers/iommufd'

const SMMU_NEST = [
  'DEVICE_BIND pci=0000:00:01.0',
  'IOAS_ALLOC',
  'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT',
  'DEVICE_ATTACH dev_id=1 pt_id=3',
  'VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3',
]
const VTD_NEST = ['DEVICE_BIND pci=0000:02:00.0', 'IOAS_ALLOC', 'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT', 'DEVICE_ATTACH dev_id=1 pt_id=3']

/** [name, setup lines, the command swept] */
const SEQUENCES: [string, string[], string][] = [
  ['IOAS_ALLOC', [], 'IOAS_ALLOC'],
  ['DEVICE_BIND', [], 'DEVICE_BIND pci=0000:00:01.0'],
  ['IOAS_MAP', ['IOAS_ALLOC'], 'IOAS_MAP ioas_id=1 user_va=0x100000 length=0x2000 flags=READABLE|WRITEABLE'],
  ['IOAS_MAP fixed', ['IOAS_ALLOC'], 'IOAS_MAP ioas_id=1 user_va=0x100000 iova=0x40000 length=0x2000 flags=FIXED_IOVA|READABLE'],
  ['IOAS_UNMAP', ['IOAS_ALLOC', 'IOAS_MAP ioas_id=1 user_va=0x100000 iova=0x40000 length=0x2000 flags=FIXED_IOVA|READABLE'], 'IOAS_UNMAP ioas_id=1 iova=0x40000 length=0x2000'],
  ['IOAS_COPY', ['IOAS_ALLOC', 'IOAS_ALLOC', 'IOAS_MAP ioas_id=1 user_va=0x100000 iova=0x40000 length=0x2000 flags=FIXED_IOVA|READABLE'], 'IOAS_COPY dst_ioas_id=2 src_ioas_id=1 length=0x2000 src_iova=0x40000 flags=READABLE'],
  ['IOAS_ALLOW_IOVAS', ['IOAS_ALLOC'], 'IOAS_ALLOW_IOVAS ioas_id=1 allowed_iovas=0x10000,0x1ffff,0x40000,0x4ffff'],
  ['IOAS_IOVA_RANGES', ['IOAS_ALLOC'], 'IOAS_IOVA_RANGES ioas_id=1'],
  ['HWPT_ALLOC paging', ['DEVICE_BIND pci=0000:00:01.0', 'IOAS_ALLOC'], 'HWPT_ALLOC dev_id=1 pt_id=2'],
  ['HWPT_ALLOC nest parent', ['DEVICE_BIND pci=0000:00:01.0', 'IOAS_ALLOC'], 'HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT'],
  ['DEVICE_ATTACH', ['DEVICE_BIND pci=0000:00:01.0', 'IOAS_ALLOC'], 'DEVICE_ATTACH dev_id=1 pt_id=2'],
  ['GET_HW_INFO', ['DEVICE_BIND pci=0000:00:01.0'], 'GET_HW_INFO dev_id=1'],
  ['VIOMMU_ALLOC', SMMU_NEST.slice(0, 4), SMMU_NEST[4]],
  ['VDEVICE_ALLOC', SMMU_NEST, 'VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x10'],
  ['HWPT_ALLOC nested SMMUv3', SMMU_NEST, 'HWPT_ALLOC dev_id=1 pt_id=4 data.ste=0x1,0x0'],
  ['VCMDQ_ALLOC', SMMU_NEST, 'VCMDQ_ALLOC viommu_id=4 log2size=4'],
  ['VEVENTQ_ALLOC', SMMU_NEST, 'VEVENTQ_ALLOC viommu_id=4 type=ARM_SMMUV3 veventq_depth=4'],
  ['HWPT_ALLOC nested VT-d', VTD_NEST, 'HWPT_ALLOC dev_id=1 pt_id=3 data.pgtbl_addr=0x1000 data.addr_width=48'],
  ['HWPT_INVALIDATE', SMMU_NEST, 'HWPT_INVALIDATE hwpt_id=4 cmd=TLBI_NH_ALL'],
  ['DESTROY', ['IOAS_ALLOC'], 'DESTROY id=1'],
  ['OPTION', ['IOAS_ALLOC'], 'OPTION option_id=HUGE_PAGES op=GET object_id=1'],
]

/**
 * Commands whose effect the kernel keeps when only the struct's copy back to
 * the caller fails: they answer EFAULT with the world as after a success.
 * Every other command takes its effect back (an object made is destroyed, a
 * bind or attach undone), so the world is as before.
 */
const KEEPS_EFFECT = new Set(['IOAS_MAP', 'IOAS_MAP fixed', 'IOAS_UNMAP', 'IOAS_COPY', 'HWPT_INVALIDATE'])

/**
 * Commands the kernel takes back with an operation that itself reaches the
 * hardware (a bind is unbound, an attach detached, a vIOMMU destroyed): a failed copy-out leaves
 * the world as the command followed by that operation does.
 */
const UNDONE_BY: Record<string, (t: IommuBench) => void> = {
  DEVICE_BIND: (t) => unbind(t.ctx, t.ctx.device(1)),
  DEVICE_ATTACH: (t) => assert.match(t.send('DEVICE_DETACH dev_id=1'), /^ok/),
  // the vIOMMU is destroyed, and its VMID flushed on the way out (arm_vsmmu_destroy)
  VIOMMU_ALLOC: (t) => assert.match(t.send(`DESTROY id=${t.ctx.objects.objects().filter((o) => o.type === 'viommu').pop()!.id}`), /^ok/),
}

/** Runs `lines` on a fresh world; returns it with the bench. */
function setUp(lines: string[]): IommuBench {
  const t = new IommuBench(new World(defaultMachine()))
  for (const l of lines) assert.match(t.send(l), /^ok/, l)
  return t
}

describe('fail-nth: every fallible step of each command fails cleanly', () => {
  const points: string[] = []
  /** Commands whose struct copy-out was swept (kept: the effect stays, as in the kernel). */
  const copyOuts: string[] = []
  after(() => {
    // how many fallible steps each command path has (printed for the record)
    process.stdout.write(`      fallible steps per command: ${points.join(', ')}\n`)
    process.stdout.write(`      struct copy-out swept: ${copyOuts.join(', ')}\n`)
  })

  for (const [name, setup, cmd] of SEQUENCES) {
    it(`${name}: fails with the step's errno at each point, leaves the world as it was, and leaks nothing`, () => {
      // what closing everything leaves after the setup alone (the queues keep the commands they issued)
      const closeAll = (t: IommuBench): string => {
        for (const ctx of [...t.world.contexts.values()]) t.world.close(ctx)
        return dumpWorld(t.world)
      }
      const pristine = closeAll(setUp(setup))
      let n = 1
      for (; ; n++) {
        const t = setUp(setup)
        const before = t.dump()
        failNth.arm(n)
        let reply: string
        let fired: string | undefined
        try {
          reply = t.send(cmd)
        } finally {
          fired = failNth.disarm().fired
        }
        if (!fired) {
          assert.match(reply, /^ok/, `${cmd} with nothing injected`)
          break
        }
        assert.match(reply, new RegExp(`^err (ENOMEM|EFAULT) ${fired} failed \\(fault injected at point ${n}\\)`), `${cmd}, point ${n} (${fired})`)
        if (fired === 'copy to user' && KEEPS_EFFECT.has(name)) {
          const done = setUp(setup)
          assert.match(done.send(cmd), /^ok/)
          assert.equal(t.dump(), done.dump(), `${cmd}: point ${n} (${fired}): the kernel keeps the command's effect`)
          assert.equal(closeAll(t), closeAll(done), `${cmd}: point ${n} (${fired}) leaked something once closed`)
          copyOuts.push(`${name} (kept)`)
          continue
        }
        if (fired === 'copy to user') copyOuts.push(name)
        const undo = UNDONE_BY[name]
        if (fired === 'copy to user' && undo) {
          const done = setUp(setup)
          assert.match(done.send(cmd), /^ok/)
          undo(done)
          assert.equal(t.dump(), done.dump(), `${cmd}: point ${n} (${fired}): taken back as the kernel does`)
          assert.equal(closeAll(t), closeAll(done), `${cmd}: point ${n} (${fired}) leaked something once closed`)
          continue
        }
        assert.equal(t.dump(), before, `${cmd}: point ${n} (${fired}) failed but changed the world`)
        // closing everything must give back every ID, VMID, domain and device
        assert.equal(closeAll(t), pristine, `${cmd}: point ${n} (${fired}) leaked something once closed`)
      }
      // DESTROY has none: the kernel neither allocates nor writes anything back there
      points.push(`${name} ${n - 1}`)
    })
  }
})

describe('fail-nth per thread (/proc/.../task/TID/fail-nth)', () => {
  it('the Nth counted step of the thread\'s own requests fails, and the count then reads 0', () => {
    taskFailNth.set(process.pid, 2)
    assert.equal(taskFailNth.get(process.pid), 2)
    taskFailNth.as(process.pid, () => fallible('copy from user'))
    assert.equal(taskFailNth.get(process.pid), 1)
    assert.throws(() => taskFailNth.as(process.pid, () => fallible('copy to user')), (e: unknown) => e instanceof ErrnoError && e.errno === 'EFAULT' && /fail-nth of thread/.test(e.message))
    assert.equal(taskFailNth.get(process.pid), 0)
  })

  it('a count belongs to its thread, not its number: once the thread is gone the number reads 0 and its steps count nothing (the kernel gives TIDs out again)', async () => {
    for (const look of ['read', 'request'] as const) {
      const child = spawn('sleep', ['30'])
      const tid = child.pid!
      taskFailNth.set(tid, 1)
      assert.equal(taskFailNth.get(tid), 1)
      child.kill()
      await once(child, 'exit')
      if (look === 'read') assert.equal(taskFailNth.get(tid), 0)
      else {
        taskFailNth.as(tid, () => fallible('copy from user'))
        assert.equal(taskFailNth.get(tid), 0)
      }
    }
  })
})
