/**
 * A KVM-owned stage 2 (src/kvm, src/iommufd/kvm-hwpt.ts), in-process: dev/kvm
 * requests, the HWPT that imports a VM's table, DMA walking it on SMMUv3 and
 * VT-d, the vendor drivers' importer hooks invalidating directly on every
 * change that can have been cached, the dropped-notification switch and the
 * sanitizer's finding, and bad input changing nothing.
 */
import { strict as assert } from 'node:assert'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { DEV, DMAR0, IommuBench, SMMU0, dumpWorld, parseOk } from '../helpers/iommufd'
import { deviceDma } from '../../src/iommufd/dma'
import { formatDmaReply } from '../../src/uapi/dma-text'
import { kvmRequest } from '../../src/uapi/kvm-text'
import { KvmSession } from '../../src/kvm/kvm'
import { ErrnoError } from '../../src/util/errno'
import { World } from '../../src/iommufd/world'

/** A dev/kvm open in-process. */
class KvmBench {
  readonly s: KvmSession

  constructor(readonly world: World) {
    this.s = world.kvm.open()
  }

  send(line: string): string {
    try {
      return kvmRequest(this.world.kvm, this.s, line, process.pid)
    } catch (e) {
      if (e instanceof ErrnoError) return `err ${e.errno} ${e.message}`
      throw e
    }
  }

  ok(line: string): Record<string, string> {
    return parseOk(this.send(line))
  }

  /** Everything KVM and iommufd hold, as text. */
  dump(): string {
    return [...this.world.kvm.vms.values()].map((v) => v.describe() + v.dumpStage2()).join('') + dumpWorld(this.world)
  }

  err(line: string, errno: string, message: RegExp): void {
    const before = this.dump()
    const r = this.send(line)
    assert.match(r, new RegExp(`^err ${errno} `), `${line} -> ${r}`)
    assert.match(r, message, `${line} -> ${r}`)
    assert.equal(this.dump(), before, `${line} failed but changed the state`)
  }

  close(): void {
    this.world.kvm.close(this.s)
  }
}

function dma(world: World, bdf: string, line: 'read' | 'write', iova: bigint, data?: Buffer): string {
  const req = line === 'read' ? { op: 'read' as const, iova, len: 16 } : { op: 'write' as const, iova, len: data!.length, data }
  return formatDmaReply(req, deviceDma(world, bdf, req))
}

/** The queue's rows issued on KVM's behalf: "decoded command" per row. */
function kvmRows(queue: string, source: string): string[] {
  return queue
    .split('\n')
    .filter((l) => l.endsWith(`[${source}]`))
    .map((l) => l.split('\t').slice(-2)[0])
}

describe('KVM-owned stage 2', () => {
  let dir: string
  let ram: string
  let t: IommuBench
  let k: KvmBench
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-unit-'))
    ram = path.join(dir, 'ram')
    const b = Buffer.alloc(0x10000)
    b.write('page one', 0x1000)
    b.write('page two', 0x2000)
    fs.writeFileSync(ram, b)
    t = new IommuBench()
    k = new KvmBench(t.world)
  })
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

  /** A VM with 64 KiB of the file at GPA 0, exported, imported by a HWPT the device is attached to. */
  function setup(bdf: string, pgtable: 'arm64' | 'ept'): { vm: string; dev: number; hwpt: number } {
    const vm = k.ok(`CREATE_VM pgtable=${pgtable}`).vm
    k.ok(`MAP vm=${vm} gpa=0x0 size=0x10000 path=${ram}`)
    const fd = k.ok(`CREATE_TDP_FD vm=${vm}`).fd
    const dev = t.bind(bdf)
    const hwpt = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=0 data_type=IOMMUFS_KVM fd=${fd}`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${hwpt}`)
    return { vm, dev, hwpt }
  }

  it('SMMUv3: DMA walks the VMSAv8-64 stage 2 KVM wrote (40-bit IPA, concatenated level-1 start), STE Config = S2', () => {
    const { hwpt } = setup(DEV.smmu0a, 'arm64')
    const r = dma(t.world, DEV.smmu0a, 'read', 0x1000n)
    assert.match(r, /^ok read sid=0x8 /)
    assert.match(r, /^walk s2 level=1 /m)
    assert.match(r, /^data 70616765206f6e65/m)
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x1000n), /via=tlb$/m)
    // the STE is the kernel's stage-2 STE pointing at KVM's root: S2T0SZ 24 (40 bits), SL0 1 (level 1)
    const info = new Map(t.ctx.objects.find(hwpt)!.describe())
    assert.equal(info.get('kvm'), 'vm1')
    assert.equal(info.get('flags'), 'NEST_PARENT')
    assert.equal(info.get('importer'), `SMMUv3 driver, hwpt ${hwpt}`)
    // EATS as the attach's ats_enabled: the device and the SMMU have ATS
    assert.match(t.hw(SMMU0, 'stream_table'), /^sid=0x8 config=s2-translate vmid=1 ats=1\n {2}ste=0x[0-9a-f]{16},0x0000000010000000,/m)
  })

  it('SMMUv3: a zap makes the driver issue S2_IPA + NH_ALL + SYNC directly, attributed to KVM, and the next DMA faults at stage 2 with no finding', () => {
    const { vm } = setup(DEV.smmu0a, 'arm64')
    dma(t.world, DEV.smmu0a, 'read', 0x1000n)
    assert.equal(k.ok(`ZAP vm=${vm} gpa=0x1000 size=0x1000`).zapped, '1')
    // then arm_smmu_atc_inv_domain: the ATS device attached to the parent, for the range
    const rows = ['TLBI_S2_IPA vmid=1 scale=1 tg=1 addr=0x1000', 'TLBI_NH_ALL vmid=1', 'SYNC cs=2', 'ATC_INV sid=0x8 addr=0x1000', 'SYNC cs=2']
    assert.deepEqual(kvmRows(t.hw(SMMU0, 'cmdq'), `kvm vm${vm}`), rows)
    const trace = t.world.trace.recent().join('\n')
    const line = `kvm: vm1: invalidate gpa=0x1000 size=0x1000 -> SMMUv3 driver, hwpt 2: smmu3.0x0000000009050000: ${rows.join('; ')}`
    assert.ok(trace.split('\n').some((l) => l.endsWith(line)), trace)
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x1000n), /^fault F_TRANSLATION\(0x10\) sid=0x8 input=0x1000 s2=1 class=IN /)
    assert.match(t.hw(SMMU0, 'findings'), /^sanitizer: mode=report findings=0$/m)
  })

  it('SMMUv3: with the notification dropped (fault injection) the stale TLB entry is the sanitizer\'s finding, naming TLBI_S2_IPA', () => {
    const { vm } = setup(DEV.smmu0a, 'arm64')
    dma(t.world, DEV.smmu0a, 'read', 0x2000n)
    const before = t.hw(SMMU0, 'cmdq')
    t.world.kvm.vms.get(Number(vm))!.debugFiles().drop_invalidate.store!('1')
    k.ok(`ZAP vm=${vm} gpa=0x2000 size=0x1000`)
    assert.equal(t.hw(SMMU0, 'cmdq'), before, 'a dropped notification issues nothing')
    assert.match(t.world.trace.recent().join('\n'), /kvm: vm1: invalidate gpa=0x2000 size=0x1000 DROPPED by fault injection \(drop_invalidate, 0 left\)/)
    const r = dma(t.world, DEV.smmu0a, 'read', 0x2000n)
    assert.match(r, /via=tlb$/m)
    assert.match(r, /^finding 1: TLB; sid=0x8; ssid=none; iova=0x2000; cached: S2 .*fix: TLBI_S2_IPA vmid=1 addr=0x2000 leaf$/m)
    assert.match(t.hw(SMMU0, 'findings'), /^sanitizer: mode=report findings=1$/m)
  })

  it('SMMUv3: write-protect (dirty logging) invalidates, and a DMA write faults with F_PERMISSION at stage 2; rw again lets it through', () => {
    const { vm } = setup(DEV.smmu0a, 'arm64')
    assert.match(dma(t.world, DEV.smmu0a, 'write', 0x3000n, Buffer.from('ab')), /^ok write /)
    k.ok(`PROTECT vm=${vm} gpa=0x0 size=0x10000 perm=r`)
    assert.deepEqual(kvmRows(t.hw(SMMU0, 'cmdq'), `kvm vm${vm}`), ['TLBI_S2_IPA vmid=1 scale=4 tg=1', 'TLBI_NH_ALL vmid=1', 'SYNC cs=2', 'ATC_INV sid=0x8 size=4', 'SYNC cs=2'])
    assert.match(dma(t.world, DEV.smmu0a, 'write', 0x3000n, Buffer.from('cd')), /^fault F_PERMISSION\(0x13\) sid=0x8 input=0x3000 s2=1 class=IN rnw=0 /)
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x3000n), /^ok read /)
    k.ok(`PROTECT vm=${vm} gpa=0x0 size=0x10000 perm=rw`)
    assert.match(dma(t.world, DEV.smmu0a, 'write', 0x3000n, Buffer.from('cd')), /^ok write /)
    assert.equal(fs.readFileSync(ram).subarray(0x3000, 0x3002).toString(), 'cd')
  })

  it('SMMUv3: the KVM HWPT is a nest parent: a vIOMMU on it, and a zap invalidates with the vIOMMU\'s VMID, which is the stage 2\'s', () => {
    const { vm, dev, hwpt } = setup(DEV.smmu0a, 'arm64')
    const viommu = t.id(`VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=${dev} hwpt_id=${hwpt}`, 'out_viommu_id')
    t.ok(`VDEVICE_ALLOC viommu_id=${viommu} dev_id=${dev} virt_id=0x10`)
    // a guest bypass STE: stage 2 only, with the vIOMMU's VMID
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${viommu} data_type=ARM_SMMUV3 data.ste=0x9,0x0`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x1000n), /^data 70616765206f6e65/m)
    k.ok(`ZAP vm=${vm} gpa=0x1000 size=0x1000`)
    const rows = kvmRows(t.hw(SMMU0, 'cmdq'), `kvm vm${vm}`)
    // the device now translates only under the vIOMMU, whose VMID is the KVM stage 2's (1): the one to invalidate
    assert.deepEqual(rows, ['TLBI_S2_IPA vmid=1 scale=1 tg=1 addr=0x1000', 'TLBI_NH_ALL vmid=1', 'SYNC cs=2'])
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x1000n), /^fault F_TRANSLATION\(0x10\) /)
  })

  it('VT-d: DMA walks KVM\'s EPT as a second-stage table (AW 2); a zap gets IOTLB PSI + device-TLB flush + wait, attributed to KVM; write-protect faults 0x85', () => {
    const { vm } = setup(DEV.vtdA, 'ept')
    assert.match(dma(t.world, DEV.vtdA, 'read', 0x1000n), /^data 70616765206f6e65/m)
    assert.match(t.hw(DMAR0, 'pasid_table'), /pgtt=second-stage did=2/)
    k.ok(`ZAP vm=${vm} gpa=0x1000 size=0x1000`)
    assert.deepEqual(kvmRows(t.hw(DMAR0, 'invalidation_queue'), `kvm vm${vm}`), [
      'IOTLB gran=page-selective did=2 addr=0x1000 am=0 ih=1',
      'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x1000 s=0',
      'WAIT sw=1 if=0 fn=0 status_data=2 status_addr=0x100010008',
    ])
    assert.match(dma(t.world, DEV.vtdA, 'read', 0x1000n), /^fault FR=0x86 /)
    k.ok(`PROTECT vm=${vm} gpa=0x2000 size=0x1000 perm=r`)
    assert.match(dma(t.world, DEV.vtdA, 'write', 0x2000n, Buffer.from('x')), /^fault FR=0x85 \(no write permission\)/)
    assert.match(t.hw(DMAR0, 'findings'), /^sanitizer: mode=report findings=0$/m)
  })

  it('VT-d: the KVM HWPT is a nest parent: a nested HWPT on it (PGTT=3 over KVM\'s EPT), and a zap invalidates the nested DID with a full device-TLB flush', () => {
    const vm = k.ok('CREATE_VM pgtable=ept').vm
    k.ok(`MAP vm=${vm} gpa=0x0 size=0x10000 path=${ram}`)
    const fd = k.ok(`CREATE_TDP_FD vm=${vm}`).fd
    const dev = t.bind(DEV.vtdA)
    const parent = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=0 data_type=IOMMUFS_KVM fd=${fd}`, 'out_hwpt_id')
    const nested = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=${parent} data_type=VTD_S1 pgtbl_addr=0x0 addr_width=48`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${nested}`)
    assert.match(t.hw(DMAR0, 'pasid_table'), /pgtt=nested did=2 flptr=0x0 addr_width=48/)
    k.ok(`ZAP vm=${vm} gpa=0x1000 size=0x1000`)
    assert.deepEqual(kvmRows(t.hw(DMAR0, 'invalidation_queue'), `kvm vm${vm}`).slice(0, 2), [
      'IOTLB gran=page-selective did=2 addr=0x1000 am=0 ih=1',
      'DEV_IOTLB sid=02:00.0 qdep=0 addr=0x7ffffffffffff000 s=1',
    ])
  })

  it('VT-d: a dropped notification leaves a stale IOTLB entry the sanitizer names', () => {
    const { vm } = setup(DEV.vtdA, 'ept')
    dma(t.world, DEV.vtdA, 'read', 0x2000n)
    t.world.kvm.vms.get(Number(vm))!.dropNotifications = 1
    k.ok(`ZAP vm=${vm} gpa=0x2000 size=0x1000`)
    assert.match(dma(t.world, DEV.vtdA, 'read', 0x2000n), /^finding 1: IOTLB; sid=0x200; .*fix: IOTLB did=2 addr=0x2000 am=0 ih=1$/m)
  })

  it('lifetimes: closing dev/kvm keeps a VM an IOMMU domain imports; destroying the domain unregisters the importer and the VM goes', () => {
    const { vm, dev, hwpt } = setup(DEV.smmu0a, 'arm64')
    k.close()
    assert.ok(t.world.kvm.vms.has(Number(vm)))
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x1000n), /^ok read /)
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    t.ok(`DESTROY id=${hwpt}`)
    assert.equal(t.world.kvm.vms.size, 0)
    assert.match(t.world.trace.recent().join('\n'), /kvm: vm1: importer unregistered: SMMUv3 driver, hwpt 2\n.*kvm: vm1: destroyed/)
  })

  it('destroying the importing HWPT leaves KVM\'s table to KVM: a new HWPT imports it again and DMA walks it', () => {
    const { vm, dev, hwpt } = setup(DEV.smmu0a, 'arm64')
    t.ok(`DEVICE_DETACH dev_id=${dev}`)
    t.ok(`DESTROY id=${hwpt}`)
    assert.match(t.world.kvm.vms.get(Number(vm))!.dumpStage2(), /^gpa 0x0-0xffff -> pa 0x[0-9a-f]+ rw$/m)
    const again = t.id(`HWPT_ALLOC dev_id=${dev} pt_id=0 data_type=IOMMUFS_KVM fd=1`, 'out_hwpt_id')
    t.ok(`DEVICE_ATTACH dev_id=${dev} pt_id=${again}`)
    assert.match(dma(t.world, DEV.smmu0a, 'read', 0x1000n), /^data 70616765206f6e65/m)
  })

  it('a VM nobody imports goes with its opener: memslot windows, files and table pages are all given back', () => {
    const mem = t.world.machine.memory
    const pages = mem.ramPages
    const vm = k.ok('CREATE_VM pgtable=ept').vm
    k.ok(`MAP vm=${vm} gpa=0x40000000 size=0x10000 path=${ram}`)
    assert.ok(mem.ramPages > pages)
    assert.match(mem.dump(), /file .*ram \+0x0/)
    k.close()
    assert.equal(t.world.kvm.vms.size, 0)
    assert.equal(mem.ramPages, pages)
    assert.equal(mem.dump(), '')
  })

  it('bad input: errno and a message naming the field, nothing changed', () => {
    const vm = k.ok('CREATE_VM').vm
    k.ok(`MAP vm=${vm} gpa=0x0 size=0x10000 path=${ram}`)
    k.err('BOGUS vm=1', 'ENOTTY', /"BOGUS": not a dev\/kvm request/)
    k.err('CREATE_VM pgtable=riscv', 'EINVAL', /pgtable=riscv/)
    k.err('CREATE_VM ipa_bits=60', 'EINVAL', /ipa_bits=60: 32 to 48/)
    k.err(`MAP vm=9 gpa=0x0 size=0x1000 path=${ram}`, 'ENOENT', /vm=9: no VM/)
    k.err(`MAP vm=${vm} gpa=0x100 size=0x1000 path=${ram}`, 'EINVAL', /gpa=0x100: not 4K-aligned/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x0 path=${ram}`, 'EINVAL', /size=0x0/)
    k.err(`MAP vm=${vm} gpa=0x8000 size=0x1000 path=${ram}`, 'EEXIST', /overlaps the memslot at 0x0/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x1000 path=${dir}/missing`, 'EBADF', /path=.*missing: ENOENT/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x1000 path=${ram} offset=0x10000`, 'EINVAL', /size=0x1000: offset \+ size is beyond the end of .* \(0x10000 bytes\)/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x2000000 path=${ram}`, 'E2BIG', /size=0x2000000: at most 0x400000 bytes per memslot/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x1000`, 'EINVAL', /path\/userspace_addr: give exactly one/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x1000 path=${ram} perm=w`, 'EINVAL', /perm=w: r or rw/)
    k.err(`MAP vm=${vm} gpa=0x10000000000 size=0x1000 path=${ram}`, 'EINVAL', /beyond the VM's 40-bit guest-physical space/)
    k.err(`MAP vm=${vm} gpa=0x100000 size=0x1000 path=${ram} colour=red`, 'EINVAL', /colour: not a field of MAP/)
    k.err(`ZAP vm=${vm} gpa=0x0 size=0x1000000000`, 'E2BIG', /size=0x1000000000: at most 0x400000 bytes in one request/)
    k.err(`PROTECT vm=${vm} gpa=0x0 size=0x2000000 perm=r`, 'E2BIG', /size=0x2000000: at most 0x400000 bytes in one request/)
    k.err(`UNMAP vm=${vm} gpa=0x0 size=0x1000`, 'EINVAL', /cuts the memslot at 0x0 \(size 0x10000\)/)
    k.err(`UNMAP vm=${vm} gpa=0x100000 size=0x1000`, 'ENOENT', /no memslot there/)
    k.err(`PROTECT vm=${vm} gpa=0x0 size=0x1000`, 'EINVAL', /perm: missing/)
    k.err(`CREATE_TDP_FD vm=${vm} as_id=1`, 'EINVAL', /as_id=1: only address space 0/)
    k.err(`CREATE_TDP_FD vm=${vm} mode=1`, 'EINVAL', /mode=1: must be 0/)
    k.err(`CREATE_TDP_FD vm=${vm} pad=2`, 'EINVAL', /pad=2: must be 0/)
    const fd = k.ok(`CREATE_TDP_FD vm=${vm}`).fd
    k.err(`CREATE_TDP_FD vm=${vm}`, 'EEXIST', /already exported \(fd=1\)/)
    // another opener does not see this VM
    const other = new KvmBench(t.world)
    other.err(`ZAP vm=${vm} gpa=0x0 size=0x1000`, 'ENOENT', /vm=1: no VM with that ID on this dev\/kvm descriptor/)
    // the HWPT side
    const smmuDev = t.bind(DEV.smmu0a)
    const vtdDev = t.bind(DEV.vtdA)
    t.err(`HWPT_ALLOC dev_id=${smmuDev} pt_id=0 data_type=IOMMUFS_KVM fd=7`, 'EBADF', /fd=7: no exported KVM stage 2/)
    t.err(`HWPT_ALLOC dev_id=${vtdDev} pt_id=0 data_type=IOMMUFS_KVM fd=${fd}`, 'EINVAL', /fd=1: vm1's stage 2 is arm64; dmar0 walks second-stage \(EPT-compatible\) tables/)
    t.err(`HWPT_ALLOC dev_id=${smmuDev} pt_id=0 flags=DIRTY_TRACKING data_type=IOMMUFS_KVM fd=${fd}`, 'EOPNOTSUPP', /flags=0x2: a KVM stage 2 takes NEST_PARENT only/)
    t.err(`HWPT_ALLOC dev_id=${smmuDev} pt_id=0 data_type=IOMMUFS_KVM`, 'EINVAL', /^data_len=0: iommu_hwpt_kvm_info is 8 bytes$/)
    t.err(`HWPT_ALLOC dev_id=${smmuDev} pt_id=0 data_type=IOMMUFS_KVM data_len=4 fd=${fd}`, 'EINVAL', /^data_len=4: iommu_hwpt_kvm_info is 8 bytes$/)
    assert.equal(t.world.kvm.vms.get(Number(vm))!.importers.size, 0)
  })
})
