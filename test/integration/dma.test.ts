/**
 * DMA through a mounted iommufs: the DMA port per device, IOAS_MAP_FILE
 * path=, memory behind mappings (a file, none), the host driver's own
 * commands, the sanitizer's files, and examples/dma-smmuv3.sh, all driven
 * by bash against real FUSE.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { sh, withMount } from '../helpers/mount'
import { iommufs } from '../helpers/cli'
import { PACKAGE_ROOT } from '../../src/util/paths'

const SMMU = 'smmu3.0x0000000009050000'
const DBG = 'sys/kernel/debug/iommufd'

/** Bash helpers: r LINE (a dev/iommu request on fd 3), port BDF LINE (one DMA request, its reply). */
const LIB = `
set -u
exec 3<>dev/iommu
r() { echo "$1" >&3; read -r -u 3 x; echo "$x"; }
port() { exec 4<>${DBG}/dma/$1; echo "$2" >&4 2>/dev/null; echo "rc=$?"; cat <&4; exec 4>&-; }
`

describe('DMA port through the mount', () => {
  let dir: string
  let file: string
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dma-it-'))
    file = path.join(dir, 'ram')
    const b = Buffer.alloc(0x2000)
    b.write('file bytes!', 0)
    fs.writeFileSync(file, b)
  })
  after(() => fs.rmSync(dir, { recursive: true, force: true }))

  it('a stage-1 domain: bare user_va aborts, a mapped file is read and written, unmap issues the TLBI and the next DMA faults', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `cd ${m.dir}; ${LIB}
r "DEVICE_BIND pci=0000:00:02.0"; r "IOAS_ALLOC"
r "IOAS_MAP ioas_id=2 flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x7f0000000000 length=0x2000 iova=0x10000"
r "DEVICE_ATTACH dev_id=1 pt_id=2"
echo "== bare"; port 0000:00:02.0 "read iova=0x10000 len=4"
r "IOAS_MAP_FILE ioas_id=2 flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0x1000 length=0x2000 iova=0x20000"
r "IOAS_MAP_FILE ioas_id=2 flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x2000 iova=0x20000"
echo "== file"; port 0000:00:02.0 "read iova=0x20000 len=11"
echo "== write"; port 0000:00:02.0 "write iova=0x20004 data=4142"
r "IOAS_UNMAP ioas_id=2 iova=0x20000 length=0x2000"
echo "== after unmap"; port 0000:00:02.0 "read iova=0x20000 len=11"
echo "== cmdq"; cat ${DBG}/iommu/${SMMU}/cmdq
echo "== findings"; cat ${DBG}/iommu/${SMMU}/findings`,
      )
      assert.equal(r.code, 0, r.stderr)
      const part = (name: string): string => r.stdout.split(`== ${name}\n`)[1].split('\n==')[0]
      assert.match(part('bare'), /^rc=0\nabort no memory behind this mapping\nrequest read sid=0x10 pasid=none iova=0x10000 len=4\n/)
      assert.match(r.stdout, /^err EINVAL start=0x1000 length=0x2000: beyond the end of the file \(0x2000 bytes\)$/m)
      assert.match(part('file'), /^rc=0\nok read sid=0x10 pasid=none iova=0x20000 len=11\n/)
      assert.match(part('file'), /^walk s1 level=3 table=0x[0-9a-f]+ addr=0x[0-9a-f]+ desc=0x[0-9a-f]{16}$/m)
      assert.match(part('file'), /^data 66696c6520627974657321$/m)
      assert.match(part('write'), /^rc=0\nok write sid=0x10 pasid=none iova=0x20004 len=2\nout iova=0x20004 pa=0x[0-9a-f]+ len=2 perms=priv:rwx user:rwx via=tlb\n/)
      assert.equal(fs.readFileSync(file).subarray(0, 11).toString(), 'fileABytes!')
      assert.match(part('after unmap'), /^rc=0\nfault F_TRANSLATION\(0x10\) sid=0x10 input=0x20000 s2=0 class=IN rnw=1 pnu=0 ind=0 reason="stage 1 level 3: invalid descriptor"\nevent 0000001000000010 0000020800000000 0000000000020000 0000000000000000\n/)
      // the host driver's commands, in the kernel's order: the CD table's first leaf (2-level for the device's 20 PASID bits), CD then STE on attach,
      // the ATC flushed as ATS comes on; on unmap the range TLBI and a sync, then the device's ATC over the range and a sync
      const cmds = part('cmdq').split('\n').filter((l) => /^ +\d+\t/.test(l)).map((l) => l.split('\t')[3])
      assert.deepEqual(cmds, [
        'CFGI_CD sid=0x10',
        'SYNC cs=2',
        // the entry writer: the CD's other words, then word 0 with V
        'CFGI_CD sid=0x10 leaf=1',
        'SYNC cs=2',
        'CFGI_CD sid=0x10 leaf=1',
        'SYNC cs=2',
        // the STE (arm_smmu_write_ste): abort -> S1 sets words 1-2, then word 0, then PREFETCH_CFG
        'CFGI_STE sid=0x10 leaf=1',
        'SYNC cs=2',
        'CFGI_STE sid=0x10 leaf=1',
        'SYNC cs=2',
        'PREFETCH_CFG sid=0x10',
        'ATC_INV sid=0x10 size=52',
        'SYNC cs=2',
        'TLBI_NH_VA asid=1 scale=1 leaf=1 ttl=3 tg=1 addr=0x20000',
        'SYNC cs=2',
        'ATC_INV sid=0x10 size=1 addr=0x20000',
        'SYNC cs=2',
      ])
      assert.match(part('findings'), /^sanitizer: mode=report findings=0$/m)
    })
  })

  it('bad requests: EINVAL naming the field, E2BIG over 1 MiB, a VT-d device nobody attached faults (root entry not present); the write fails and the reply says why', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `cd ${m.dir}; ${LIB}
port 0000:00:02.0 "read iova=0x20000 lenx=1"
port 0000:00:02.0 "read iova=0x20000 len=0x100001"
port 0000:00:02.0 "write iova=0x0 data=abc"
port 0000:00:02.0 "peek iova=0x0"
port 0000:02:00.0 "read iova=0 len=1"
port 0000:00:02.0 "read iova=0x1000 len=4"`,
      )
      assert.equal(r.code, 0, r.stderr)
      assert.equal(
        r.stdout.split('\nwalk ')[0],
        [
          'rc=1',
          'err EINVAL lenx: not a field of read (fields: iova, len, pasid, priv, exec, ats)',
          'rc=1',
          'err E2BIG len=0x100001: at most 1048576 bytes per request',
          'rc=1',
          'err EINVAL data: an even number of hex digits',
          'rc=1',
          'err EINVAL "peek": expected read, write or translate',
          'rc=0',
          'fault FR=0x39 (root entry not present) sid=02:00.0 pasid=none addr=0x0 DMA Read recorded=1 reason="root entry 2 (lower) not present"',
          'frcd 0000000000000000 c000003900000200',
          'request read sid=0x200 pasid=none iova=0x0 len=1',
        ].join('\n'),
      )
      assert.match(r.stdout, /^walk root table=0x[0-9a-f]+ addr=0x[0-9a-f]+ desc=0x0000000000000000\nrc=0\n/m)
      // an unowned stream has the abort STE the driver wrote at probe: terminated, no event recorded
      assert.match(
        r.stdout,
        /^rc=0\nfault C_BAD_STE\(0x04\) sid=0x10 input=0x1000 rnw=1 pnu=0 ind=0 recorded=0 reason="STE.Config = abort: terminated without an event"\nevent 0000001000000004 0000000000000000 0000000000000000 0000000000000000\nrequest read sid=0x10 pasid=none iova=0x1000 len=4\n/m,
      )
    })
  })

  it('dirty tracking on an SMMUv3 stage-1 domain: writes set the dirty state, GET_DIRTY_BITMAP reports and cleans it (NO_CLEAR keeps it), with the TLBI that lets later writes dirty again', async () => {
    await withMount(async (m) => {
      const r = await sh(
        `cd ${m.dir}; ${LIB}
r "DEVICE_BIND pci=0000:00:01.0"; r "IOAS_ALLOC"; r "HWPT_ALLOC dev_id=1 pt_id=2 flags=DIRTY_TRACKING"
r "IOAS_MAP_FILE ioas_id=2 flags=FIXED_IOVA|READABLE|WRITEABLE path=${file} start=0 length=0x2000 iova=0x100000"
r "DEVICE_ATTACH dev_id=1 pt_id=3"
bm() { r "HWPT_GET_DIRTY_BITMAP hwpt_id=3 iova=0x100000 length=0x2000 page_size=0x1000 \${1:-}"; }
bm; r "HWPT_SET_DIRTY_TRACKING hwpt_id=3 flags=ENABLE"; bm
port 0000:00:01.0 "write iova=0x101010 data=01" | sed -n 2p
bm flags=NO_CLEAR; bm; bm
port 0000:00:01.0 "write iova=0x101010 data=02" | sed -n 2p
bm
cat ${DBG}/iommu/${SMMU}/findings`,
      )
      assert.equal(r.code, 0, r.stderr)
      assert.equal(
        r.stdout,
        [
          'ok out_devid=1',
          'ok out_ioas_id=2',
          'ok out_hwpt_id=3',
          'ok iova=0x100000',
          'ok pt_id=3',
          // writable pages are born dirty (DBM with AP[2] clear); enabling cleans everything first
          'ok data=0x3',
          'ok',
          'ok data=0x0',
          'ok write sid=0x8 pasid=none iova=0x101010 len=1',
          'ok data=0x2',
          'ok data=0x2',
          'ok data=0x0',
          'ok write sid=0x8 pasid=none iova=0x101010 len=1',
          'ok data=0x2',
          'sanitizer: mode=report findings=0',
          '',
        ].join('\n'),
      )
    })
  })

  it('the sanitizer mode file: report by default, strict and off accepted, anything else EINVAL', async () => {
    await withMount(async (m) => {
      const f = `${DBG}/iommu/${SMMU}/sanitizer`
      const r = await sh(`cd ${m.dir}; cat ${f}; echo strict > ${f}; cat ${f}; echo off > ${f}; cat ${f}; echo loud > ${f}; echo "rc=$?"; cat ${f}`)
      assert.equal(r.stdout, 'report findings=0\nstrict findings=0\noff findings=0\nrc=1\noff findings=0\n')
      assert.match(r.stderr, /Invalid argument/)
    })
  })

  it('mount --sanitizer strict starts every SMMU in strict mode; an unknown mode is a usage error', async () => {
    await withMount(
      async (m) => {
        const r = await sh(`cat ${m.dir}/${DBG}/iommu/${SMMU}/sanitizer ${m.dir}/${DBG}/iommu/smmu3.0x0000000009060000/sanitizer`)
        assert.equal(r.stdout, 'strict findings=0\nstrict findings=0\n')
      },
      { args: ['--sanitizer', 'strict'] },
    )
    const bad = await sh(`node ${path.join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js')} mount ${dir}/nowhere --sanitizer loud`)
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /--sanitizer loud: expected off, report, strict/)
  })

  it('examples/dma-vtd.sh: first-stage tables by printf, a stale IOTLB entry found and named, P_IOTLB fixes it, a read-only write faults 0x85; a freed table invalidated with IH = 1 leaves a stale paging-structure entry, IH = 0 drops it', async () => {
    await withMount(async (m) => {
      const r = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'dma-vtd.sh')} ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      assert.match(r.stdout, /^finding 1: IOTLB; sid=0x200; ssid=none; iova=0x1000; cached: nested did=2 out=0x[0-9a-f]+ priv:rwx user:rwx since=\d+; now: out=0x[0-9a-f]+ priv:rwx user:rwx; changed: fs level=1 addr=0x[0-9a-f]+ old=0x0000000040010067 new=0x0000000040011067; fix: P_IOTLB did=2 pasid=0 addr=0x1000 am=0 ih=1$/m)
      assert.match(r.stdout, /^00011000: 7061 6765 2042 3a20 444d 4121 .*page B: DMA!/m)
      assert.match(r.stdout, /^fault FR=0x85 \(no write permission\) sid=02:00.0 pasid=none addr=0x2000 DMA Write recorded=1 /m)
      assert.match(r.stdout, /\tP_IOTLB did=2 pasid=0 gran=page-selective addr=0x1000 am=0 ih=1\n/)
      assert.match(
        r.stdout,
        /^finding 2: PDE; sid=0x200; ssid=none; iova=0x1000; cached: nested level=2 iova=0x0 next=0x40003000 gave out=0x[0-9a-f]+ priv:rwx user:rwx since=\d+; now: FR=0x71 \(first-stage entry not present\) .*; changed: fs level=2 addr=0x[0-9a-f]+ old=0x0000000040003027 new=0x0000000000000000; fix: P_IOTLB did=2 pasid=0 addr=0x1000 am=0 ih=0$/m,
      )
      const walkCache = r.stdout.split('/walk_cache\n')[1].split('\n> ')[0]
      assert.equal(
        walkCache.replace(/since=\d+/g, 'since=N'),
        'dmar0: paging-structure caches 3/256 hits=3 misses=1\n' +
          'did=2 pasid=0x0 nested level=4 iova=0x0 size=0x8000000000 next=0x40001000 rw user since=N\n' +
          'did=2 pasid=0x0 nested level=3 iova=0x0 size=0x40000000 next=0x40002000 rw user since=N\n' +
          'did=2 pasid=0x0 nested level=2 iova=0x0 size=0x200000 next=0x40003000 rw user since=N',
      )
      assert.match(r.stdout, /\tP_IOTLB did=2 pasid=0 gran=page-selective addr=0x1000 am=0 ih=0\n/)
      assert.match(r.stdout, /^fault FR=0x71 \(first-stage entry not present\) sid=02:00.0 pasid=none addr=0x1000 DMA Read recorded=1 reason="first-stage level 2 entry at 0x[0-9a-f]+ not present"$/m)
    })
  })

  it('examples/dma-smmuv3.sh: guest tables by printf, a stale TLB found and named, the TLBI fixes it', async () => {
    await withMount(async (m) => {
      const r = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'dma-smmuv3.sh')} ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      assert.match(r.stdout, /^finding 1: TLB; sid=0x8; ssid=none; iova=0x1000; cached: S12 out=0x[0-9a-f]+ priv:rwx user:rwx since=\d+; now: out=0x[0-9a-f]+ priv:rwx user:rwx; changed: s1 level=3 addr=0x[0-9a-f]+ old=0x0000000040010f47 new=0x0000000040011f47; fix: TLBI_NH_VA vmid=1 asid=1 addr=0x1000 leaf$/m)
      assert.match(r.stdout, /^00011000: 7061 6765 2042 3a20 444d 4121 .*page B: DMA!/m)
      const trace = fs.existsSync(m.path(`${DBG}/trace`)) ? fs.readFileSync(m.path(`${DBG}/trace`), 'utf8') : ''
      const json = trace.split('\n').filter((l) => l.includes('sanitizer.json '))
      assert.equal(json.length, 1)
      assert.equal(JSON.parse(json[0].split('sanitizer.json ')[1]).command, 'TLBI_NH_VA vmid=1 asid=1 addr=0x1000 leaf')
      // again on the same mount: the new nest parent (and its vIOMMU) gets VMID 1 back, flushed when the first one's last stream left, so no stale entry answers
      const again = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'dma-smmuv3.sh')} ${m.dir}`)
      assert.equal(again.code, 0, `${again.stderr}\n${again.stdout}`)
      assert.match(again.stdout, /^00011000: 7061 6765 2042 3a20 444d 4121 .*page B: DMA!/m)
      assert.match(fs.readFileSync(m.path(`${DBG}/iommu/smmu3.0x0000000009050000/cmdq`), 'utf8'), /TLBI_S12_VMALL vmid=1/)
    })
  })

  it('examples/c/dma: a program\'s malloc\'d memory read and written by the device, with real ioctl() and under the shim alike', async () => {
    await withMount(async (m) => {
      const bin = path.join(PACKAGE_ROOT, 'dist', 'examples', 'c', 'dma')
      const steps = 'VFIO_DEVICE_BIND_IOMMUFD: ok out_devid=1\nIOMMU_IOAS_ALLOC: ok out_ioas_id=2\nIOMMU_IOAS_MAP: ok iova=0x100000\nVFIO_DEVICE_ATTACH_IOMMUFD_PT: ok pt_id=3\n'
      const ns = await iommufs(['exec', '--mount', m.dir, '--namespace', '--', bin])
      assert.equal(ns.code, 0, ns.stdout + ns.stderr)
      assert.equal(
        ns.stdout,
        `${steps}IOMMUFS_DMA read: ok status=OK data="written by the program"\nIOMMUFS_DMA write: ok status=OK the program now reads "written by the device"\nIOMMUFS_DMA unmapped: ok status=FAULT event=0x800000010\n`,
      )
      const shim = await iommufs(['exec', '--mount', m.dir, '--', bin])
      assert.equal(shim.code, 0, shim.stdout + shim.stderr)
      assert.equal(shim.stdout, ns.stdout)
    })
  })
})
