/**
 * A KVM-owned stage 2 through a mounted iommufs: examples/kvm.sh (bash,
 * SMMUv3 and VT-d), the compiled C example under the ioctl shim (its own heap
 * as guest memory, a real IOMMU_HWPT_ALLOC importing the VM's table), and
 * dev/kvm's errors and lifetime as a shell sees them.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { sh, withMount } from '../helpers/mount'
import { iommufs } from '../helpers/cli'
import { PACKAGE_ROOT } from '../../src/util/paths'

const SMMU = 'smmu3.0x0000000009050000'
const DBG = 'sys/kernel/debug/iommufd'

describe('KVM-owned stage 2 through the mount', () => {
  it('examples/kvm.sh: DMA through KVM\'s table, the direct invalidation in cmdq / invalidation_queue and the trace, write-protect faults, a dropped notification is a finding, on SMMUv3 and VT-d', async () => {
    await withMount(async (m) => {
      const r = await sh(`${path.join(PACKAGE_ROOT, 'examples', 'kvm.sh')} ${m.dir}`)
      assert.equal(r.code, 0, r.stderr + r.stdout)
      const [smmu, vtd] = r.stdout.split('\n=== ').slice(1)
      assert.match(smmu, /^ {2}ok out_hwpt_id=2$/m)
      assert.match(smmu, /out iova=0x1000 pa=0x[0-9a-f]+ len=16 perms=priv:rw- user:rw- via=walk\n {2}data 67756573742070616765206f6e652e2e\n/)
      assert.match(smmu, /via=tlb\n/)
      // arm_smmu_tlb_inv_range_domain, then arm_smmu_atc_inv_domain for the ATS device attached to the parent
      assert.match(smmu, /\tTLBI_S2_IPA vmid=1 scale=1 tg=1 addr=0x1000\t\[kvm vm1\]\n.*\tTLBI_NH_ALL vmid=1\t\[kvm vm1\]\n.*\tSYNC cs=2\t\[kvm vm1\]\n.*\tATC_INV sid=0x8 addr=0x1000\t\[kvm vm1\]\n.*\tSYNC cs=2\t\[kvm vm1\]\n/)
      assert.match(smmu, /^kvm: vm1: invalidate gpa=0x1000 size=0x1000 -> SMMUv3 driver, hwpt 2: smmu3\.0x0000000009050000: TLBI_S2_IPA vmid=1 scale=1 tg=1 addr=0x1000; TLBI_NH_ALL vmid=1; SYNC cs=2; ATC_INV sid=0x8 addr=0x1000; SYNC cs=2$/m)
      assert.match(smmu, /^ {2}fault F_TRANSLATION\(0x10\) sid=0x8 input=0x1000 s2=1 class=IN rnw=1 /m)
      assert.match(smmu, /^ {2}fault F_PERMISSION\(0x13\) sid=0x8 input=0x2000 s2=1 class=IN rnw=0 /m)
      assert.match(smmu, /^kvm: vm1: invalidate gpa=0x2000 size=0x1000 DROPPED by fault injection \(drop_invalidate, 0 left\)$/m)
      assert.match(smmu, /^ {2}finding 1: TLB; sid=0x8; ssid=none; iova=0x2000; .*fix: TLBI_S2_IPA vmid=1 addr=0x2000 leaf$/m)
      assert.match(smmu, /^sanitizer: mode=report findings=1$/m)

      assert.match(vtd, /^dmar0 \(0000:02:00\.0\), KVM stage 2 format ept ===/)
      assert.match(vtd, /via=iotlb\n {2}data 67756573742070616765206f6e652e2e\n/)
      assert.match(vtd, /\tIOTLB gran=page-selective did=2 addr=0x1000 am=0 ih=1\t\[kvm vm2\]\n.*\tDEV_IOTLB sid=02:00\.0 qdep=0 addr=0x1000 s=0\t\[kvm vm2\]\n.*\tWAIT .*\t\[kvm vm2\]\n/)
      assert.match(vtd, /^kvm: vm2: invalidate gpa=0x1000 size=0x1000 -> VT-d driver, hwpt 3: dmar0: IOTLB gran=page-selective did=2 addr=0x1000 am=0 ih=1; DEV_IOTLB sid=02:00\.0 qdep=0 addr=0x1000 s=0; WAIT$/m)
      assert.match(vtd, /^ {2}fault FR=0x86 \(no read permission\) sid=02:00\.0 pasid=none addr=0x1000 DMA Read/m)
      assert.match(vtd, /^ {2}fault FR=0x85 \(no write permission\) sid=02:00\.0 pasid=none addr=0x2000 DMA Write/m)
      assert.match(vtd, /^ {2}finding 1: IOTLB; sid=0x200; .*fix: IOTLB did=2 addr=0x2000 am=0 ih=1$/m)
      assert.match(vtd, /^sanitizer: mode=report findings=1$/m)
    })
  })

  it('examples/c/kvm: a VM over the program\'s heap, a real IOMMU_HWPT_ALLOC with IOMMU_HWPT_DATA_IOMMUFS_KVM, DMA both ways, zap and write-protect fault', async () => {
    const bin = path.join(PACKAGE_ROOT, 'dist', 'examples', 'c', 'kvm')
    assert.ok(fs.existsSync(bin), `${bin} is built by make build`)
    await withMount(async (m) => {
      const r = await iommufs(['exec', '--mount', m.dir, '--', bin, m.dir])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.match(r.stdout, /^kvm CREATE_VM pgtable=arm64 -> ok vm=1 pgtable=arm64 ipa_bits=40 /m)
      assert.match(r.stdout, /^kvm MAP vm=1 gpa=0x0 size=0x2000 userspace_addr=0x[0-9a-f]+ -> ok vm=1 gpa=0x0 size=0x2000 pa=0x[0-9a-f]+ perm=rw$/m)
      assert.match(r.stdout, /^IOMMU_HWPT_ALLOC: ok out_hwpt_id=2$/m)
      assert.match(r.stdout, /^IOMMUFS_DMA read gpa 0x0: ok status=OK data="guest memory of the program"$/m)
      assert.match(r.stdout, /^IOMMUFS_DMA write gpa 0x1000: ok status=OK the program reads "written by the device"$/m)
      // event word 0: StreamID 0x8, F_TRANSLATION (0x10); then F_PERMISSION (0x13)
      assert.match(r.stdout, /^IOMMUFS_DMA read after zap: ok status=FAULT event=0x800000010$/m)
      assert.match(r.stdout, /^IOMMUFS_DMA write after write-protect: ok status=FAULT event=0x800000013$/m)
      assert.match(r.stdout, /^IOMMU_HWPT_ALLOC fd=999: err EBADF$/m)
      const cmdq = fs.readFileSync(m.path(`${DBG}/iommu/${SMMU}/cmdq`), 'utf8')
      // two invalidations, each S2_IPA + NH_ALL + SYNC and the ATS device's ATC_INV + SYNC
      assert.equal(cmdq.split('\n').filter((l) => l.endsWith('\t[kvm vm1]')).length, 10, cmdq)
    })
  })

  it('dev/kvm from bash: a bad request fails the write with its errno and the reply names the field; closing the descriptor destroys its VMs', async () => {
    await withMount(async (m) => {
      const r = await sh(`cd ${m.dir}
exec 5<>dev/kvm
q() { echo "$1" >&5 2>/dev/null; echo "rc=$?"; read -r -u 5 x; echo "$x"; }
q "CREATE_VM pgtable=ept"
q "MAP vm=1 gpa=0x0 size=0x1000 path=/nonexistent"
q "ZAP vm=1 gpa=0x0 size=0x10"
q "INFO vm=1"
ls sys/kernel/debug/kvm
cat sys/kernel/debug/kvm/vm1/info
echo x > sys/kernel/debug/kvm/vm1/drop_invalidate 2>/dev/null; echo "store rc=$?"
exec 5>&-
until [ -z "$(ls sys/kernel/debug/kvm)" ]; do :; done
echo gone`)
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.split('\n')
      assert.deepEqual(lines.slice(0, 8), [
        'rc=0',
        'ok vm=1 pgtable=ept ipa_bits=48 root=0x1000000000 path=/sys/kernel/debug/kvm/vm1',
        'rc=1',
        'err EBADF path=/nonexistent: ENOENT',
        'rc=1',
        'err EINVAL size=0x10: a nonzero multiple of 4K',
        'rc=0',
        'ok vm=1 pgtable=ept ipa_bits=48 root=0x1000000000 memslots=0 tdp_fd=- importers=0 drop_invalidate=0',
      ])
      assert.equal(lines[8], 'vm1')
      assert.match(r.stdout, /^pgtable: ept \(4-level, 48-bit GPA; a VT-d second-stage table\)$/m)
      assert.match(r.stdout, /^store rc=1$/m)
      assert.match(r.stdout, /^gone$/m)
    })
  })
})
