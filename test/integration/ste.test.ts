/**
 * The SMMUv3 host driver's STE and CD writes through a mounted iommufs, as
 * the Linux driver makes them (arm_smmu_write_entry with the STE's used and
 * update-safe bits, arm_smmu_attach_dev / _attach_dev_ste / _set_pasid /
 * _blocking_set_dev_pasid): examples/ste-smmuv3.sh from bash, and a device
 * without the PCI ATS capability (the topology's per-device `ats: false`).
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { sh, withMount } from '../helpers/mount'
import { DEFAULT_TOPOLOGY, PACKAGE_ROOT } from '../../src/util/paths'

const S = 'SYNC cs=2'
/** arm_smmu_write_ste for stream 0x8: `steps` CFGI_STE (leaf) + CMD_SYNC pairs, then PREFETCH_CFG. */
const ste = (steps: number, sid = '0x8'): string[] => [...Array.from({ length: steps }, () => [`CFGI_STE sid=${sid} leaf=1`, S]).flat(), `PREFETCH_CFG sid=${sid}`]
/** arm_smmu_write_cd_entry: `steps` CFGI_CD (leaf) + CMD_SYNC pairs for SSID `ssid`. */
const cd = (steps: number, ssid?: string): string[] => Array.from({ length: steps }, () => [ssid ? `CFGI_CD ssid=${ssid} sid=0x8 leaf=1` : 'CFGI_CD sid=0x8 leaf=1', S]).flat()
const ATC_ALL = ['ATC_INV sid=0x8 size=52', S]
const ZERO = ',0x0000000000000000'
/** What each bash session below starts with (in the mount's directory): the SMMU's debug directory, dev/iommu on fd 3, r REQUEST [KEY] (the reply, KEY's value in $v), port PCI REQUEST (one DMA request). */
const SHELL = `SMMU=sys/kernel/debug/iommufd/iommu/smmu3.0x0000000009050000
exec 3<>dev/iommu
r() { echo "$1" >&3; read -r -u 3 x; echo "< $x"; v=$(echo "$x" | grep -o "$2=[0-9x]*" | cut -d= -f2 || true); }
port() { exec 4<>sys/kernel/debug/iommufd/dma/$1; echo "$2" >&4 || true; cat <&4; exec 4>&-; }`

describe('SMMUv3 STE writes through the mount', () => {
  it('examples/ste-smmuv3.sh: each RID transition sends the entry writer\'s CFGI_STE steps, CD 0 is cleared off stage 1, identity with a PASID is S1DSS = bypass', async () => {
    await withMount(async (m) => {
      const r = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'ste-smmuv3.sh')} ${m.dir}`)
      assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
      assert.equal(r.stderr, '')
      const out = r.stdout
      /** One step's lines: its commands, the STE line and words, the CD table, the RID's domain. */
      const step = (title: string): { cmds: string[]; ste: string; words: string; cds: string[]; rid: string } => {
        const at = out.indexOf(`== ${title}\n`)
        assert.ok(at >= 0, `no step "${title}"`)
        const rows = out.slice(at).split('\n').slice(1)
        const lines = rows.slice(0, rows.findIndex((l) => !l.startsWith('  ')))
        const of = (p: string): string[] => lines.filter((l) => l.startsWith(`  ${p}`)).map((l) => l.slice(p.length + 2))
        return { cmds: of('cmd '), ste: lines.filter((l) => l.startsWith('  sid='))[0]?.slice(2), words: of('ste=')[0], cds: of('cd_table '), rid: of('rid_domain ')[0] }
      }
      const asid1 = ['TLBI_NH_ASID asid=1', S]
      // abort -> S1: the leaf of SSIDs 0..1023, CD 0 (words 1-7, then word 0), the STE (words 1-2, then word 0: hitless,
      // only word 0's used bits change), then ATS enabled with the whole ATC flushed (arm_smmu_enable_ats)
      const s1 = step('abort -> S1')
      assert.deepEqual(s1.cmds, ['CFGI_CD sid=0x8', S, ...cd(2), ...ste(2), ...ATC_ALL])
      assert.equal(s1.ste, 'sid=0x8 config=s1-translate asid=1 ats=1')
      // V, Config 5, S1Fmt 2, S1CDMax 20; S1DSS = SSID0, CIR/COR WBRA, CSH ISH, S1STALLD (the SMMU can stall,
      // IDR0.STALL_MODEL = 0, and the master does not), EATS = 1
      assert.match(s1.words, /^0xa0000010000040[0-9a-f]{2},0x00000000180000d6,0x0000000000000000,/)
      // S1 -> blocked (arm_smmu_attach_dev_ste): word 0 (Config), then word 1 cleared; ATS off (the whole ATC);
      // then CD 0 cleared (V first, then the rest), then the domain's ASID flushed as it goes
      const blocked = step('S1 -> blocked')
      assert.deepEqual(blocked.cmds, [...ste(2), ...ATC_ALL, ...cd(2), ...asid1])
      assert.equal(blocked.words, `0x0000000000000001${ZERO.repeat(7)}`)
      assert.deepEqual(blocked.cds, [])
      assert.equal(blocked.rid, 'blocked')
      assert.deepEqual(step('blocked -> S1').cmds, [...cd(2), ...ste(2), ...ATC_ALL])
      // S1 -> S2 (arm_smmu_attach_dev, stage 2): Config and the VMID both change, a breaking update (V cleared,
      // words 1-7, word 0); CD 0 cleared before the commit's ATC flush
      const s2 = step('S1 -> S2')
      assert.deepEqual(s2.cmds, [...ste(3), ...cd(2), ...ATC_ALL, ...asid1])
      // Config 6; word 1: EATS = 1 (the device and the SMMU have ATS); word 2: VMID 1, S2T0SZ 16, S2SL0 2, IR0/OR0 WB,
      // SH0 ISH, 4K, S2PS 48 bits, S2AA64, S2PTW, S2R; word 3: S2TTB
      assert.equal(s2.ste, 'sid=0x8 config=s2-translate vmid=1 ats=1')
      assert.match(s2.words, /^0x000000000000000d,0x0000000012000000,0x044d359000000001,0x0000001[0-9a-f]{8}0,/)
      assert.deepEqual(s2.cds, [])
      // S2 -> S1: CD 0 first, then again a breaking STE update (Config, and VMID 1 -> 0)
      assert.deepEqual(step('S2 -> S1').cmds, [...cd(2), ...ste(3), ...ATC_ALL, 'TLBI_S12_VMALL vmid=1', S])
      assert.deepEqual(step('PASID 5 on S1').cmds, [...cd(2, '0x5'), 'ATC_INV ssv=1 ssid=0x5 sid=0x8 size=52', S])
      // with PASID 5 in use the blocked RID keeps the CD table: only S1DSS changes (one step); ATS stays on for the PASIDs
      const term = step('S1 -> blocked, PASID 5 in use')
      assert.deepEqual(term.cmds, [...ste(1), ...ATC_ALL, ...cd(2), ...asid1])
      assert.match(term.words, /^0xa0000010000040[0-9a-f]{2},0x00000000180000d4,/)
      assert.deepEqual(term.cds.map((l) => l.split(' ')[0]), ['sid=0x8', 'ssid=0x5'])
      assert.match(term.cds[0], / s1dss=terminate$/)
      // identity with PASID 5 in use (arm_smmu_attach_dev_identity): S1DSS = bypass in one step, ATS on
      const id = step('blocked -> identity, PASID 5 in use')
      assert.deepEqual(id.cmds, [...ste(1), ...ATC_ALL])
      assert.equal(id.ste, 'sid=0x8 config=bypass ats=1')
      assert.match(id.words, /^0xa0000010000040[0-9a-f]{2},0x00000000180000d5,/)
      assert.match(id.cds[0], / s1dss=bypass$/)
      assert.equal(id.rid, 'identity')
      // DMA: PASID 5 through its CD, no PASID straight to the physical address
      assert.match(out, /^\$ read iova=0x100000 len=8 pasid=5\nok read .*\n(walk .*\n)*walk cd .*\n(walk s1 .*\n)+out iova=0x100000 pa=0x[0-9a-f]+ .*via=walk\ndata 7061736964203521$/m)
      assert.match(out, /^\$ read iova=0x8000000000 len=8\nok read sid=0x8 pasid=none iova=0x8000000000 len=8\nout iova=0x8000000000 pa=0x8000000000 len=8 perms=priv:rwx user:rwx via=walk\ndata 7269642064617461$/m)
      // the last PASID out of the identity RID: CD 5 and its ATC entries, then the identity domain's own STE (bypass,
      // word 0 then word 1), ATS off
      const last = step('identity, the last PASID out')
      assert.deepEqual(last.cmds, [...cd(2, '0x5'), 'ATC_INV ssv=1 ssid=0x5 sid=0x8 size=52', S, ...ste(2), ...ATC_ALL, 'TLBI_NH_ASID asid=2', S])
      assert.equal(last.words, `0x0000000000000009${ZERO.repeat(7)}`)
      assert.deepEqual(step('identity -> blocked').cmds, ste(1))
      assert.match(out, /^identity over HWPT \d+: refused$/m)
      assert.match(out, /^report findings=0$/m)
    })
  })

  it('a device without ATS (ats: false): GET_HW_INFO says so, its STE never has EATS, no ATC_INV is sent for it, its DMA port refuses translation requests', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ste-ats-'))
    try {
      const topology = path.join(dir, 'no-ats.yaml')
      const text = fs.readFileSync(DEFAULT_TOPOLOGY, 'utf8').replace('stream_id: 0x10, vendor: 0x15b3, device: 0x101e }', 'stream_id: 0x10, vendor: 0x15b3, device: 0x101e, ats: false }')
      assert.match(text, /ats: false/)
      fs.writeFileSync(topology, text)
      await withMount(
        async (m) => {
          const r = await sh(`set -eu
cd ${m.dir}
${SHELL}
truncate -s 4K ${dir}/ram
for pci in 0000:00:01.0 0000:00:02.0; do
  r "DEVICE_BIND pci=$pci" out_devid; dev=$v
  r "GET_HW_INFO dev_id=$dev" out_capabilities
  r "IOAS_ALLOC" out_ioas_id; ioas=$v
  r "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=${dir}/ram start=0 length=0x1000 iova=0x100000" x
  n=$(grep -c $'^ *[0-9]\\+\\t' $SMMU/cmdq || true)
  r "DEVICE_ATTACH dev_id=$dev pt_id=$ioas" x
  echo "== port $pci"; port $pci "translate iova=0x100000"
  r "IOAS_UNMAP ioas_id=$ioas iova=0x100000 length=0x1000" x
  echo "== cmdq $pci"; grep $'^ *[0-9]\\+\\t' $SMMU/cmdq | tail -n +$(( n + 1 )) | cut -f4
done
echo "== stream_table"; cat $SMMU/stream_table
`)
          assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
          /** The lines after "== NAME", up to the next heading or request reply. */
          const part = (name: string): string => {
            const rows = r.stdout.split(`== ${name}\n`)[1].split('\n')
            return rows.slice(0, rows.findIndex((l) => l.startsWith('== ') || l.startsWith('< ') || l === '')).join('\n')
          }
          // out_capabilities: DIRTY_TRACKING (1), and PCI_ATS_NOT_SUPPORTED (8) for the device without ATS only
          const caps = [...r.stdout.matchAll(/out_capabilities=(0x[0-9a-f]+|\d+)/g)].map((x) => Number(x[1]))
          assert.deepEqual(caps, [1, 9])
          const cds = (sid: string): string[] => [`CFGI_CD sid=${sid}`, S, ...Array.from({ length: 2 }, () => [`CFGI_CD sid=${sid} leaf=1`, S]).flat()]
          const tlbi = (asid: number): string[] => [`TLBI_NH_VA asid=${asid} leaf=1 ttl=3 tg=1 addr=0x100000`, S]
          // with ATS: the whole ATC flushed as ATS comes on, and the unmapped page's ATC entries after the TLBI
          assert.deepEqual(part('cmdq 0000:00:01.0').split('\n'), [...cds('0x8'), ...ste(2), ...ATC_ALL, ...tlbi(1), 'ATC_INV sid=0x8 addr=0x100000', S])
          // without: EATS = 0, and no ATC_INV after the STE or after the unmap's TLBI
          assert.deepEqual(part('cmdq 0000:00:02.0').split('\n'), [...cds('0x10'), ...ste(2, '0x10'), ...tlbi(2)])
          // word 1: S1STALLD on both (neither master stalls), EATS only with ATS
          assert.match(part('stream_table'), /^sid=0x8 config=s1-translate asid=1 ats=1\n {2}ste=0x[0-9a-f]{16},0x00000000180000d6,/m)
          assert.match(part('stream_table'), /^sid=0x10 config=s1-translate asid=2 ats=0\n {2}ste=0x[0-9a-f]{16},0x00000000080000d6,/m)
          assert.match(part('port 0000:00:01.0'), /^ok translate sid=0x8 /)
          assert.match(part('port 0000:00:02.0'), /^err EINVAL translate: 0000:00:02\.0 has no ATS capability \(topology: ats: false\); it sends no translation requests$/m)
        },
        { topology },
      )
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a nest parent attached directly gets EATS; an IOAS unmap sends ATC_INV for it (the range) and for a nested ATS device on that parent (the whole ATC), latest attach first', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ste-s2ats-'))
    try {
      await withMount(async (m) => {
        const r = await sh(`set -eu
cd ${m.dir}
${SHELL}
n=0
cmds() { echo "== $1"; grep $'^ *[0-9]\\+\\t' $SMMU/cmdq | tail -n +$(( n + 1 )) | cut -f4; n=$(grep -c $'^ *[0-9]\\+\\t' $SMMU/cmdq || true); }
printf 'stage 2!' > ${dir}/ram; truncate -s 8K ${dir}/ram
r "DEVICE_BIND pci=0000:00:01.0" out_devid; dev=$v
r "DEVICE_BIND pci=0000:00:02.0" out_devid; dev2=$v
r "IOAS_ALLOC" out_ioas_id; ioas=$v
r "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=${dir}/ram start=0 length=0x1000 iova=0x100000" x
r "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=${dir}/ram start=0x1000 length=0x1000 iova=0x101000" x
r "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT" out_hwpt_id; s2=$v
n=$(grep -c $'^ *[0-9]\\+\\t' $SMMU/cmdq || true)
r "DEVICE_ATTACH dev_id=$dev pt_id=$s2" x
cmds attach
echo "== stream_table"; grep -A1 '^sid=0x8 ' $SMMU/stream_table
echo "== translate"; port 0000:00:01.0 "translate iova=0x100000"
echo "== atc"; cat $SMMU/atc
echo "== read"; port 0000:00:01.0 "read iova=0x100000 len=8 ats"
r "IOAS_UNMAP ioas_id=$ioas iova=0x101000 length=0x1000" x
cmds unmap1
r "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev2 hwpt_id=$s2" out_viommu_id; viommu=$v
r "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev2 virt_id=0x10" x
# the guest's STE: S1 translate through a CD table at IPA 0x200000, EATS = 1
r "HWPT_ALLOC dev_id=$dev2 pt_id=$viommu data_type=ARM_SMMUV3 data.ste=0x20000b,0x10000000" out_hwpt_id; nested=$v
r "DEVICE_ATTACH dev_id=$dev2 pt_id=$nested" x
cmds nested
r "IOAS_UNMAP ioas_id=$ioas iova=0x100000 length=0x1000" x
cmds unmap2
echo "== atc after"; cat $SMMU/atc
echo "== translate after"; port 0000:00:01.0 "translate iova=0x100000"
`)
        assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
        /** The lines after "== NAME", up to the next heading or request reply. */
        const part = (name: string): string[] => {
          const rows = r.stdout.split(`== ${name}\n`)[1].split('\n')
          return rows.slice(0, rows.findIndex((l) => l.startsWith('== ') || l.startsWith('< ') || l === ''))
        }
        // arm_smmu_make_s2_domain_ste with ats_enabled: abort -> S2 in two steps, then ATS on (the whole ATC flushed)
        assert.deepEqual(part('attach'), [...ste(2), ...ATC_ALL])
        // word 1: EATS = 1 (0x10000000), next to the stage-2 words
        assert.deepEqual(part('stream_table'), ['sid=0x8 config=s2-translate vmid=1 ats=1', '  ste=0x000000000000000d,0x0000000012000000,0x044d359000000001,0x0000001000000000' + ZERO.repeat(4)])
        // the translation request is answered through stage 2 and fills the ATC; an ATS read then hits it
        assert.match(part('translate').join('\n'), /^ok translate sid=0x8 pasid=none iova=0x100000 len=0\n(walk .*\n)+out iova=0x100000 pa=0x8000000000 len=1 perms=priv:rwx user:rwx via=walk\nats pa=0x8000000000 size=0x1000 /)
        assert.match(part('atc')[1], /^sid=0x8 pasid=none addr=0x100000 size=0x1000 out=0x8000000000 /)
        assert.deepEqual(part('read').slice(1), ['out iova=0x100000 pa=0x8000000000 len=8 perms=priv:rwx user:rwx via=atc', 'data 7374616765203221'])
        // arm_smmu_tlb_inv_range_domain: S2_IPA + NH_ALL, then arm_smmu_atc_inv_domain: the RID's range
        assert.deepEqual(part('unmap1'), ['TLBI_S2_IPA vmid=1 leaf=1 ttl=3 tg=1 addr=0x101000', 'TLBI_NH_ALL vmid=1', S, 'ATC_INV sid=0x8 addr=0x101000', S])
        // the nested domain's guest enabled ATS: its STE gets EATS, ATS comes on
        assert.deepEqual(part('nested'), [...ste(2, '0x10'), 'ATC_INV sid=0x10 size=52', S])
        // the parent's one VMID (its vIOMMU's too), then the device list latest first: the nested device's whole ATC (nested_ats_flush), the RID's range
        assert.deepEqual(part('unmap2'), [
          'TLBI_S2_IPA vmid=1 leaf=1 ttl=3 tg=1 addr=0x100000',
          'TLBI_NH_ALL vmid=1',
          S,
          'ATC_INV sid=0x10 size=52',
          'ATC_INV sid=0x8 addr=0x100000',
          S,
        ])
        // the ATC_INV dropped the entry: the next translation request walks and faults
        assert.deepEqual(part('atc after'), ['ATC: 0/64'])
        assert.match(part('translate after')[0], /^fault F_TRANSLATION\(0x10\) sid=0x8 input=0x100000 s2=1 /)
      })
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
