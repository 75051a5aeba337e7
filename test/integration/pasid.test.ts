/**
 * SMMUv3 PASIDs through a mounted iommufs: examples/pasid-smmuv3.sh (bash:
 * attach, replace, detach, the commands in cmdq, the CD table, DMA with a
 * SubstreamID, a PASID in a second CD leaf, the errnos) and test/c/pasid
 * (the same through the kernel's uAPI under the shim).
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { sh, withMount } from '../helpers/mount'
import { iommufs } from '../helpers/cli'
import { PACKAGE_ROOT } from '../../src/util/paths'

describe('SMMUv3 PASIDs through the mount', () => {
  it('examples/pasid-smmuv3.sh: CD table and CFGI_CD by SSID, DMA through PASID 5 and 0x12345, replace, detach, errnos, zero findings', async () => {
    await withMount(async (m) => {
      const r = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'pasid-smmuv3.sh')} ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      const out = r.stdout
      assert.match(out, /^max_pasid_log2=20$/m)
      /** The commands shown under "== cmdq: TITLE...". */
      const block = (title: string): string[] => {
        const at = out.indexOf(`== cmdq: ${title}`)
        assert.ok(at >= 0, `no cmdq block "${title}"`)
        const rows = out.slice(at).split('\n').slice(1)
        return rows.slice(0, rows.findIndex((l) => !l.startsWith('  '))).map((l) => l.split('\t').pop()!)
      }
      const S = 'SYNC cs=2'
      const atc = (ssid: string): string => `ATC_INV ssv=1 ssid=${ssid} sid=0x8 size=52`
      // the entry writer's steps for one CD: 2 to make or clear it, 3 to replace it
      const cd = (ssid: string, times: number): string[] => Array.from({ length: times }, () => [`CFGI_CD ssid=${ssid} sid=0x8 leaf=1`, S]).flat()
      // ATS comes on with the stage-1 STE: the whole ATC is flushed first; each PASID set then flushes its SSID's entries
      // abort -> S1 STE: words 1-2, then word 0 (two CFGI_STE + SYNC), then PREFETCH_CFG
      const ste = ['CFGI_STE sid=0x8 leaf=1', S, 'CFGI_STE sid=0x8 leaf=1', S, 'PREFETCH_CFG sid=0x8']
      assert.deepEqual(block('RID attach'), ['CFGI_CD sid=0x8', S, 'CFGI_CD sid=0x8 leaf=1', S, 'CFGI_CD sid=0x8 leaf=1', S, ...ste, 'ATC_INV sid=0x8 size=52', S])
      assert.deepEqual(block('PASID 5 attach'), [...cd('0x5', 2), atc('0x5'), S])
      assert.deepEqual(block('PASID 0x12345 attach'), ['CFGI_CD ssid=0x12345 sid=0x8', S, ...cd('0x12345', 2), atc('0x12345'), S])
      assert.deepEqual(block('PASID 5 replace'), [...cd('0x5', 3), atc('0x5'), S])
      assert.deepEqual(block('detach'), [...cd('0x5', 2), atc('0x5'), S, ...cd('0x12345', 2), atc('0x12345'), S, 'TLBI_NH_ASID asid=2', S])
      assert.match(out, /^sid=0x8 ctx=0x[0-9a-f]+ s1cdmax=20 s1fmt=2 s1dss=ssid0\n {2}ssid=0x0 cd=0x[0-9a-f]+ asid=1 .*\n {2}ssid=0x5 cd=0x[0-9a-f]+ asid=2 /m)
      // PASID 0x12345: L1 entry 0x48 of the CD table, 8 bytes each
      const ctx = BigInt(/ ctx=(0x[0-9a-f]+) /.exec(out)![1])
      assert.match(out, new RegExp(`^\\$ read iova=0x100000 len=8 pasid=0x12345\nok read .*\nwalk l1cd table=0x${ctx.toString(16)} addr=0x${(ctx + 0x48n * 8n).toString(16)} `, 'm'))
      assert.match(out, /^\$ read iova=0x100000 len=8 pasid=5\nfault C_BAD_CD\(0x0a\) sid=0x8 ssid=0x5 /m)
      assert.match(out, /^< err EINVAL pasid=1048576: 0000:00:01.0 takes PASIDs 1\.\.1048575$/m)
      assert.match(out, /^< err EOPNOTSUPP flags=NEST_PARENT\|PASID: /m)
      assert.match(out, /^report findings=0$/m)
    })
  })

  it('test/c/pasid: the kernel uAPI under the shim', async () => {
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', path.join(PACKAGE_ROOT, 'dist', 'test', 'c', 'pasid')])
      assert.equal(r.code, 0, r.stderr + r.stdout)
      assert.deepEqual(r.stdout.trim().split('\n'), [
        'bind: ok out_devid=1',
        'hw_info: ok out_max_pasid_log2=20',
        'domain_a: ok ioas=2 hwpt=3',
        'domain_b: ok ioas=4 hwpt=5',
        'attach_rid: ok',
        'attach_pasid7: ok pt_id=5',
        'dma_pasid7: status=OK data="buffer B"',
        'dma_rid: status=OK data="buffer A"',
        'attach_pasid0x12345: ok pt_id=5',
        'dma_pasid0x12345: status=OK data="buffer B"',
        'replace_pasid7: ok pt_id=3',
        'dma_pasid7: status=OK data="buffer A"',
        'detach_pasid7: ok',
        // CD 7 is cleared: C_BAD_CD
        'dma_pasid7: status=FAULT',
        'attach_past_width: err EINVAL',
        'attach_short_argsz: err EINVAL',
        'attach_ioas: err EINVAL',
        'nest_parent_pasid: err EOPNOTSUPP',
        'dma_past_width: err EINVAL',
      ])
    })
  })

  it('a guest CD table with SubstreamIDs (nested, from bash): CD 5 rewritten without CFGI_CD is a finding naming ssid=0x5; the guest\'s CFGI_CD for SSID 5 leaves none', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pasid-it-'))
    try {
      await withMount(async (m) => {
        const script = `
set -eu
cd ${m.dir}
ram=${dir}/ram
truncate -s 1M $ram
# put64 IPA VALUE into guest RAM (IPA 0x40000000 = file offset 0)
put64() { local off=$(( $1 - 0x40000000 )) v=$2 b='' i; for i in 0 1 2 3 4 5 6 7; do b+=$(printf '\\\\x%02x' $(( (v >> (8 * i)) & 0xff ))); done; printf "$b" | dd of=$ram bs=1 seek=$off conv=notrunc status=none; }
CD0=$(( 16 | (1 << 30) | (1 << 31) | (5 << 32) | (1 << 41) | (1 << 45) | (1 << 46) ))
# a linear CD table of 16 CDs at IPA 0x40000000; CD 5 (ASID 1) -> tables at 0x40001000.., VA 0x1000 -> 0x40010000
put64 $(( 0x40000000 + 5 * 64 )) $(( CD0 | (1 << 48) )); put64 $(( 0x40000000 + 5 * 64 + 8 )) 0x40001000; put64 $(( 0x40000000 + 5 * 64 + 24 )) 0xf404ff44
put64 0x40001000 $(( 0x40002000 | 3 )); put64 0x40002000 $(( 0x40003000 | 3 )); put64 0x40003000 $(( 0x40004000 | 3 ))
put64 $(( 0x40004000 + 8 )) $(( 0x40010000 | 0xf47 ))
printf 'ssid 5 page' | dd of=$ram bs=1 seek=$(( 0x10000 )) conv=notrunc status=none
exec 3<>dev/iommu
r() { echo "$1" >&3; read -r -u 3 x; echo "$x" >&2; v=$(echo "$x" | grep -o "$2=[0-9]*" | cut -d= -f2 || true); }
port() { exec 4<>sys/kernel/debug/iommufd/dma/0000:00:01.0; echo "$1" >&4; cat <&4; exec 4>&-; }
r "DEVICE_BIND pci=0000:00:01.0" out_devid; dev=$v
r "IOAS_ALLOC" out_ioas_id; ioas=$v
r "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x100000 iova=0x40000000" x
r "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT" out_hwpt_id; s2=$v
r "DEVICE_ATTACH dev_id=$dev pt_id=$s2" x
r "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2" out_viommu_id; viommu=$v
r "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=0x10" x
# the guest STE: S1 translate, S1CDMax = 4 (16 CDs, linear), S1DSS = bypass
r "HWPT_ALLOC dev_id=$dev pt_id=$viommu data_type=ARM_SMMUV3 data.ste=$(printf '0x%x' $(( 0x40000000 | (4 << 59) | (5 << 1) | 1 ))),0x1" out_hwpt_id; nested=$v
r "DEVICE_ATTACH dev_id=$dev pt_id=$nested" x
echo "== first"; port "read iova=0x1000 len=11 pasid=5"
# the guest gives CD 5 another ASID and sends no CFGI_CD
put64 $(( 0x40000000 + 5 * 64 )) $(( CD0 | (2 << 48) ))
echo "== stale"; port "read iova=0x1000 len=11 pasid=5"
r "HWPT_INVALIDATE hwpt_id=$viommu cmd=CFGI_CD,sid=0x10,ssid=5,leaf" x
echo "== fixed"; port "read iova=0x1000 len=11 pasid=5"
echo "== sanitizer"; cat sys/kernel/debug/iommufd/iommu/smmu3.0x0000000009050000/sanitizer
`
        const r = await sh(script)
        assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
        const part = (name: string): string => r.stdout.split(`== ${name}\n`)[1].split('\n==')[0]
        assert.match(part('first'), /^ok read sid=0x8 pasid=5 iova=0x1000 len=11\n/)
        assert.match(part('first'), /^data 7373696420352070616765$/m)
        assert.match(part('stale'), /^finding 1: CD; sid=0x8; ssid=0x5; iova=0x1000; .*; fix: CFGI_CD sid=0x8 ssid=0x5 leaf$/m)
        assert.match(part('fixed'), /^ok read sid=0x8 pasid=5 /)
        assert.doesNotMatch(part('fixed'), /^finding/m)
        assert.match(part('sanitizer'), /^report findings=1$/m)
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
