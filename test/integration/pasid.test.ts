/**
 * SMMUv3 PASIDs through a mounted iommufs: examples/pasid-smmuv3.sh (bash:
 * attach, replace, detach, the commands in cmdq, the CD table, DMA with a
 * SubstreamID, a PASID in a second CD leaf, the errnos) and test/c/pasid
 * (the same through the kernel's uAPI under the shim).
 */
import { strict as assert } from 'node:assert'
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
      // ATS comes on with the stage-1 STE: the whole ATC is flushed first; each PASID set then flushes its SSID's entries
      assert.deepEqual(block('RID attach'), ['CFGI_CD sid=0x8', S, 'CFGI_CD sid=0x8 leaf=1', S, 'CFGI_STE sid=0x8 leaf=1', S, 'ATC_INV sid=0x8 size=52', S])
      assert.deepEqual(block('PASID 5 attach'), ['CFGI_CD ssid=0x5 sid=0x8 leaf=1', S, atc('0x5'), S])
      assert.deepEqual(block('PASID 0x12345 attach'), ['CFGI_CD ssid=0x12345 sid=0x8', S, 'CFGI_CD ssid=0x12345 sid=0x8 leaf=1', S, atc('0x12345'), S])
      assert.deepEqual(block('PASID 5 replace'), ['CFGI_CD ssid=0x5 sid=0x8 leaf=1', S, atc('0x5'), S])
      assert.deepEqual(block('detach'), ['CFGI_CD ssid=0x5 sid=0x8 leaf=1', S, atc('0x5'), S, 'CFGI_CD ssid=0x12345 sid=0x8 leaf=1', S, atc('0x12345'), S, 'TLBI_NH_ASID asid=2', S])
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
})
