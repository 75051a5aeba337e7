/**
 * Events through a mounted iommufs: the vEVENTQ's file read raw and decoded
 * from bash, poll() readiness, the kernel's read rules on the descriptor,
 * the C example (a process sleeping in poll() woken by another process's
 * faulting DMA) under the shim, its clear refusal under exec --namespace,
 * and examples/events.sh.
 */
import { strict as assert } from 'node:assert'
import * as path from 'node:path'
import { sh, withMount } from '../helpers/mount'
import { iommufs } from '../helpers/cli'
import { PACKAGE_ROOT } from '../../src/util/paths'

const SMMU = 'smmu3.0x0000000009050000'
const DBG = 'sys/kernel/debug/iommufd'
const EVENTS = path.join(PACKAGE_ROOT, 'dist', 'examples', 'c', 'events')

/** A nested device (vSID 0x42, guest STE with S1CDMax = 0) and its vIOMMU's vEVENTQ of depth $DEPTH; fd 5 reads the queue. */
const SETUP = (depth: number) => `
set -u
exec 3<>dev/iommu
r() { echo "$1" >&3; read -r -u 3 x; echo "$x"; }
port() { exec 4<>${DBG}/dma/$1; echo "$2" >&4; cat <&4 >/dev/null; exec 4>&-; }
ready() { if read -t 0 -u 5; then echo readable; else echo empty; fi; }
r "DEVICE_BIND pci=0000:00:01.0" >/dev/null; r "IOAS_ALLOC" >/dev/null
r "HWPT_ALLOC dev_id=1 pt_id=2 flags=NEST_PARENT" >/dev/null; r "DEVICE_ATTACH dev_id=1 pt_id=3" >/dev/null
r "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=1 hwpt_id=3" >/dev/null; r "VDEVICE_ALLOC viommu_id=4 dev_id=1 virt_id=0x42" >/dev/null
r "HWPT_ALLOC dev_id=1 pt_id=4 data_type=ARM_SMMUV3 data.ste=0x4000000b,0x0" >/dev/null; r "DEVICE_ATTACH dev_id=1 pt_id=6" >/dev/null
r "VEVENTQ_ALLOC viommu_id=4 type=ARM_SMMUV3 veventq_depth=${depth}"
q=${DBG}/1/7.veventq
exec 5<$q/queue
`

describe('events through the mount', () => {
  it('bash: the reply names the queue; poll() readiness follows the queue; read(2) gets the raw record, events the decoded one', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `cd ${m.dir}; ${SETUP(8)}
ready
port 0000:00:01.0 "read iova=0x1000 len=4 pasid=1"
ready
echo "== events"; cat $q/events
echo "== raw"; xxd -p <&5
ready
echo "== write"; echo x >&5 2>/dev/null; echo "rc=$?"; (echo x > $q/queue) 2>&1 | sed 's/.*: //'`,
      )
      assert.equal(r.code, 0, r.stderr)
      const [head, events, raw, write] = r.stdout.split(/== \w+\n/)
      assert.equal(head, 'ok out_veventq_id=7 out_veventq_fd=7 path=sys/kernel/debug/iommufd/1/7.veventq/queue\nempty\nreadable\n')
      assert.equal(events, 'seq=0 event=0x8 vsid=0x42 evt=0x0000004200001008,0x0000000000000000,0x0000000000000000,0x0000000000000000\n')
      // header {flags 0, sequence 0}, then evt[0..3] little-endian: C_BAD_SUBSTREAMID, SSV, SSID 1, vSID 0x42; RnW; the address
      assert.equal(raw.replace(/\nempty\n$/, '').replace(/\n/g, ''), '0000000000000000' + '0810000042000000' + '0000000000000000' + '0000000000000000' + '0000000000000000')
      assert.match(raw, /\nempty\n$/)
      // fd 5 is read-only; the file opened for writing takes no write (the kernel's queue has no write op)
      assert.equal(write, 'rc=1\nInvalid argument\n')
    })
  })

  it('bad reads change nothing: too small for a record reads 0; overflow leaves LOST_EVENTS at the tail', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `cd ${m.dir}; ${SETUP(2)} >/dev/null
for i in 1 2 3 4; do port 0000:00:01.0 "read iova=0x1000 len=4 pasid=1"; done
echo "small=$(dd bs=39 count=1 status=none <&5 | wc -c)"
echo "== events"; cat $q/events
echo "== read"; dd bs=4096 count=1 status=none <&5 | xxd -p -c 8
echo "== after"; cat $q/events; ready
echo "== trace"; grep -c 'LOST_EVENTS (queue full)' ${DBG}/trace`,
      )
      assert.equal(r.code, 0, r.stderr)
      const [head, events, read, after, trace] = r.stdout.split(/== \w+\n/)
      assert.match(head, /\nsmall=0\n$/)
      assert.match(events, /^seq=0 event=0x8 vsid=0x42 .*\nseq=1 event=0x8 .*\nseq=3 LOST_EVENTS\n$/)
      const lines = read.trim().split('\n')
      assert.equal(lines.length, 11, '40 + 40 + 8 bytes')
      assert.deepEqual([lines[0], lines[5], lines[10]], ['0000000000000000', '0000000001000000', '0100000003000000'])
      assert.equal(after, 'empty\n')
      assert.equal(trace, '2\n')
    })
  })

  it('examples/c/events under the shim: poll() and epoll_wait() sleep until another process\'s DMA faults; the record carries vSID 0x42', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', EVENTS])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      for (const line of [
        'IOMMU_VEVENTQ_ALLOC: ok out_veventq_id=7 out_veventq_fd=',
        'poll before the fault: 0\n',
        'read of an empty queue: 0\n',
        'pread: -1 ESPIPE\n',
        'poll: 1 revents=POLLIN\n',
        'read of 39 bytes: -1 Invalid argument\n',
        'read: 40 bytes\n',
        'header: flags=0x0 sequence=0\n',
        'evt: 0x0000004200001008 0x0000000000000000 0x0000000000000000 0x0000000000000000\n',
        'poll after the read: 0\n',
        'epoll_wait before the fault: 0\n',
        'epoll_wait: 1 events=EPOLLIN\n',
        'read: 40 bytes, sequence=1\n',
        'events: ok\n',
      ]) assert.ok(r.stdout.includes(line), `${line}\n${r.stdout}`)
      assert.match(r.stdout, /^child: DMA port: fault C_BAD_SUBSTREAMID\(0x08\) sid=0x8 ssid=0x1 /m)
      const trace = await sh(`cat ${m.path(`${DBG}/trace`)}`)
      assert.match(trace.stdout, new RegExp(`${SMMU.replace(/\./g, '\\.')}: eventq: event 0x8 sid=0x8 -> vEVENTQ 7 of vIOMMU 4 vsid=0x42 sequence=0\\n`))
    })
  })

  it('examples/c/events under exec --namespace: the supervisor sends VEVENTQ_ALLOC as a frame and installs the queue file; poll, epoll and reads work on it', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', EVENTS])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /\nIOMMU_VEVENTQ_ALLOC: ok out_veventq_id=7 out_veventq_fd=\d+\n/)
      assert.match(r.stdout, /\nepoll_wait: 1 events=EPOLLIN\n/)
      assert.match(r.stdout, /\nevents: ok\n$/)
      // the program's other ioctls are real ones; this one alone came as the supervisor's frame
      const trace = (await sh(`cat ${m.path(`${DBG}/trace`)}`)).stdout
      assert.match(trace, /frame IOMMU_VEVENTQ_ALLOC -> ok/)
      assert.match(trace, /ioctl IOMMU_VDEVICE_ALLOC -> ok/)
    })
  })

  it('examples/events.sh: vEVENTQ raw and decoded, LOST_EVENTS, the physical event queue masked, VT-d fault registers', async () => {
    await withMount(async (m) => {
      const r = await sh(`bash ${path.join(PACKAGE_ROOT, 'examples', 'events.sh')} ${m.dir}`)
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^poll: nothing waiting\n\$ read iova=0x1000 len=4 pasid=1\nfault C_BAD_SUBSTREAMID\(0x08\) .*\npoll: readable\n/m)
      assert.match(r.stdout, /^00000000: 00000000 00000000 08100000 42000000 {2}\.{12}B\.{3}$/m)
      assert.match(r.stdout, /^seq=4 LOST_EVENTS$/m)
      assert.match(r.stdout, /^a 39-byte read returns 0 bytes\na 4096-byte read returns 88 bytes/m)
      assert.match(r.stdout, /^ irq: masked\tpending: 1\trecorded: 6\tlost: 0$/m)
      assert.match(r.stdout, /^ {4}0\t0000000000002000\tc000003900000200\tFR=0x39 \(root entry not present\)/m)
      assert.match(r.stdout, /^fault_status: 0x00000002 PPF$/m)
      assert.match(r.stdout, /dmar0: dmar_fault: FRCD0 \[DMA Read NO_PASID\] Request device \[02:00\.0\] fault addr 0x2000 \[fault reason 0x39\] root entry not present$/m)
    })
  })
})
