#!/usr/bin/env bash
# Conformance of the KVM-shared stage 2, the HW queue allocation and the
# command queue register files, checked from outside with the facts of the
# KVM TDP-sharing RFC and its review, the merged IOMMU_HW_QUEUE_ALLOC
# (Tegra241 CMDQV) uAPI and the SMMUv3 circular-queue rules (IHI 0070 §3.5,
# SMMU_CMDQ_PROD/CONS, SMMU_GERROR): dev/kvm and dev/iommu driven with echo,
# guest memory written with printf, queue slots with dd, and the physical
# queues, DMA replies, event and fault records read back.
#   usage: conform-kvm.sh MOUNT_POINT
# Prints "NAME: ok" or "NAME: FAIL got X want Y" for each check; exits 1 if
# any failed (2 for bad usage or a setup step that failed).
. "$(dirname "$0")/conform-lib.sh"
K=$M/sys/kernel/debug/kvm
S=$D/iommu/smmu3.0x0000000009050000
V=$D/iommu/dmar0
TMP=$(mktemp -d /tmp/conform-kvm.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# kreq LINE: one request on dev/kvm (fd 5), the reply in $reply
kreq() { echo "$1" >&5 2>/dev/null; IFS= read -r -u 5 reply || die "no reply to $1"; }
kreq_ok() { kreq "$1"; [[ $reply == ok* ]] || die "$1: $reply"; }

# Physical queues: mark the position, then the decoded commands sent since, joined with " | "
issued() { sed -n 's/.*Issued: \([0-9]*\).*/\1/p' "$S/cmdq"; }
mark_smmu() { smmu_mark=$(issued); }
sent_smmu() { # the decoded text of the commands issued since mark_smmu, without the [kvm vmN] note
  local n=$(( $(issued) - smmu_mark ))
  if [ "$n" -le 0 ]; then echo "-"; return; fi
  tail -n "$n" "$S/cmdq" | cut -f4 | paste -sd '|' | sed 's/|/ | /g'
}
sent_smmu_src() { local n=$(( $(issued) - smmu_mark )); [ "$n" -gt 0 ] && tail -n "$n" "$S/cmdq" | cut -f5 | sort -u | paste -sd ','; }
mark_vtd() { vtd_mark=$(grep -c '^ *[0-9]' "$V/invalidation_queue"); }
sent_vtd() {
  local n=$(( $(grep -c '^ *[0-9]' "$V/invalidation_queue") - vtd_mark ))
  if [ "$n" -le 0 ]; then echo "-"; return; fi
  grep '^ *[0-9]' "$V/invalidation_queue" | tail -n "$n" | cut -f7 | paste -sd '|' | sed 's/|/ | /g'
}

# Guest RAM: a file whose 4K pages carry a marker "Pnnn" (nnn = page number)
ram=$TMP/ram; truncate -s 64K "$ram"
for p in $(seq 0 15); do printf 'P%03x' "$p" | dd of="$ram" bs=1 seek=$((p * 4096)) conv=notrunc status=none; done
page() { printf 'P%03x' "$1"; }

exec 3<>"$M/dev/iommu" 2>/dev/null || die "open dev/iommu"
exec 5<>"$M/dev/kvm" 2>/dev/null || die "open dev/kvm"

# =====================================================================================
# KVM: the RFC's VM ioctl KVM_CREATE_TDP_FD {as_id, mode, fd, pad} (kvm-and-queues §1.2)
# =====================================================================================
kreq "CREATE_VM"
expect kvm.vm.default "$(get pgtable) $(get ipa_bits)" "arm64 40"
vm=$(get vm); root=$(get root)
kreq "CREATE_VM ipa_bits=31"; expect kvm.vm.ipa_bits.31 "$(errno)" EINVAL
kreq "CREATE_VM ipa_bits=49"; expect kvm.vm.ipa_bits.49 "$(errno)" EINVAL
kreq_ok "MAP vm=$vm gpa=0x0 size=0x10000 path=$ram"
kreq "MAP vm=$vm gpa=0x8000 size=0x1000 path=$ram"; expect kvm.map.overlap "$(errno)" EEXIST
kreq "CREATE_TDP_FD vm=$vm as_id=1"; expect kvm.tdp_fd.as_id.1 "$(errno)" EINVAL
kreq "CREATE_TDP_FD vm=$vm mode=1"; expect kvm.tdp_fd.mode.1 "$(errno)" EINVAL
kreq "CREATE_TDP_FD vm=$vm pad=1"; expect kvm.tdp_fd.pad.1 "$(errno)" EINVAL
kreq "CREATE_TDP_FD vm=$vm"; expect kvm.tdp_fd.first "$(errno)" ok
fd=$(get fd)
kreq "CREATE_TDP_FD vm=$vm"; expect kvm.tdp_fd.second "$(errno)" EEXIST   # one export per address space

# =====================================================================================
# IOMMU_HWPT_ALLOC with the RFC's struct iommu_hwpt_kvm_info {fd} (8 bytes) on SMMUv3
# =====================================================================================
PCI=0000:00:01.0
req_ok "DEVICE_BIND pci=$PCI"; dev=$(get out_devid)
req "HWPT_ALLOC dev_id=$dev pt_id=0 flags=NEST_PARENT data_type=IOMMUFS_KVM data=$fd,0"
expect kvm.hwpt.data_len.16 "$(errno)" EINVAL
req "HWPT_ALLOC dev_id=$dev pt_id=0 flags=NEST_PARENT data_type=IOMMUFS_KVM data=@0 data_len=8"
expect kvm.hwpt.data_uptr.0 "$(errno)" EINVAL
req "HWPT_ALLOC dev_id=$dev pt_id=0 flags=NEST_PARENT data_type=IOMMUFS_KVM data_len=0"
expect kvm.hwpt.data_len.0 "$(errno)" EINVAL
req "HWPT_ALLOC dev_id=$dev pt_id=0 flags=NEST_PARENT data_type=IOMMUFS_KVM fd=$((fd + 100))"
expect kvm.hwpt.fd.unknown "$(errno)" EBADF
req "HWPT_ALLOC dev_id=$dev pt_id=0 flags=NEST_PARENT|DIRTY_TRACKING data_type=IOMMUFS_KVM fd=$fd"
expect kvm.hwpt.flags.dirty "$(errno)" EOPNOTSUPP
req "HWPT_ALLOC dev_id=$dev pt_id=0 __reserved=1 data_type=IOMMUFS_KVM fd=$fd"
expect kvm.hwpt.reserved "$(errno)" EOPNOTSUPP
req "HWPT_ALLOC dev_id=999 pt_id=0 data_type=IOMMUFS_KVM fd=$fd"
expect kvm.hwpt.dev_id.unknown "$(errno)" ENOENT
kreq_ok "CREATE_VM pgtable=ept"; vm_ept=$(get vm)
kreq_ok "CREATE_TDP_FD vm=$vm_ept"; fd_ept=$(get fd)
req "HWPT_ALLOC dev_id=$dev pt_id=0 data_type=IOMMUFS_KVM fd=$fd_ept"
expect kvm.hwpt.smmu.ept "$(errno)" EINVAL                                # the table format is the IOMMU's
# Data type 3 is IOMMU_HWPT_DATA_AMD_GUEST in mainline, not the RFC's KVM type: an SMMUv3
# paging domain takes no user data.
req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas data_type=3 data=$fd"
expect kvm.hwpt.type3.is.amd_guest "$(errno)" EOPNOTSUPP
# pt_id is ignored: no IOAS or parent is involved
req "HWPT_ALLOC dev_id=$dev pt_id=12345 data_type=IOMMUFS_KVM fd=$fd"
expect kvm.hwpt.pt_id.ignored "$(errno)" ok
hwpt=$(get out_hwpt_id)
kreq_ok "INFO vm=$vm"
expect kvm.importer.registered "$(get importers)" 1
req "DEVICE_ATTACH dev_id=$dev pt_id=$hwpt"; expect kvm.attach "$(errno)" ok

# ---- the STE: stage 2 translate, S2TTB = KVM's root, S2T0SZ = 64 - 40, SL0 = 1 (two concatenated level-1 tables)
ste=$(grep -A1 '^sid=0x8 ' "$S/stream_table" | sed -n 's/^  ste=//p')
IFS=, read -r w0 w1 w2 w3 _ <<<"$ste"
expect kvm.ste.config $(( (w0 >> 1) & 7 )) 6
expect kvm.ste.s2ttb "$(printf '0x%x' $(( w3 & 0xffffffffffff0 )))" "$root"
expect kvm.ste.s2t0sz $(( (w2 >> 32) & 0x3f )) 24
expect kvm.ste.s2sl0 $(( (w2 >> 38) & 3 )) 1
expect kvm.ste.s2aa64 $(( (w2 >> 51) & 1 )) 1
vmid=$(( w2 & 0xffff ))
expect kvm.ste.vmid.nonzero $(( vmid != 0 )) 1

# ---- DMA walks KVM's table, then the TLB
dma $PCI "read iova=0x1000 len=4"; expect kvm.smmu.dma.walk "$(data) $(via)" "$(page 1) walk"
dma $PCI "read iova=0x1000 len=4"; expect kvm.smmu.dma.tlb "$(data) $(via)" "$(page 1) tlb"
dma $PCI "write iova=0x3000 data=5a5a5a5a"
expect kvm.smmu.dma.write.reaches.ram "$(dd if="$ram" bs=1 skip=$((0x3000)) count=4 status=none | xxd -p)" 5a5a5a5a

# ---- KVM zaps one page: the driver's importer hook, before ZAP returns (review: the driver
# invalidates directly): TLBI_S2_IPA by VMID over the range (Linux's non-leaf single page is a
# two-page range: NUM 0, SCALE 1), TLBI_NH_ALL (a nest parent), CMD_SYNC, then ATC_INV, CMD_SYNC.
dma $PCI "read iova=0x8000 len=4"
mark_smmu
kreq_ok "ZAP vm=$vm gpa=0x1000 size=0x1000"
expect kvm.smmu.zap.cmds "$(sent_smmu)" \
  "TLBI_S2_IPA vmid=$vmid scale=1 tg=1 addr=0x1000 | TLBI_NH_ALL vmid=$vmid | SYNC cs=2 | ATC_INV sid=0x8 addr=0x1000 | SYNC cs=2"
expect kvm.smmu.zap.source "$(sent_smmu_src)" "[kvm vm$vm]"
dma $PCI "read iova=0x1000 len=4"
expect kvm.smmu.zap.no.stale "$(status)" "fault F_TRANSLATION(0x10)"
expect kvm.smmu.zap.event "$(evt)" "0000000800000010 0000028800000000 0000000000001000 0000000000001000"
dma $PCI "read iova=0x8000 len=4"; expect kvm.smmu.zap.others.kept "$(data) $(via)" "$(page 8) tlb"

# three pages at 0x5000: one range command of 3 pages (NUM 2, SCALE 0), ATC_INV of the aligned
# 16K span holding them (addr 0x4000, size 2)
mark_smmu
kreq_ok "ZAP vm=$vm gpa=0x5000 size=0x3000"
expect kvm.smmu.zap3.cmds "$(sent_smmu)" \
  "TLBI_S2_IPA vmid=$vmid num=2 tg=1 addr=0x5000 | TLBI_NH_ALL vmid=$vmid | SYNC cs=2 | ATC_INV sid=0x8 size=2 addr=0x4000 | SYNC cs=2"

# Zapping what is not present, adding leaves (PREFAULT, MAP) and giving rights back tell no one.
mark_smmu
kreq_ok "PREFAULT vm=$vm gpa=0x0 size=0x10000"
expect kvm.smmu.prefault.pages "$(get pages)" 4
expect kvm.smmu.prefault.silent "$(sent_smmu)" "-"
dma $PCI "read iova=0x1000 len=4"; expect kvm.smmu.prefault.dma "$(data)" "$(page 1)"

# ---- write-protect (dirty logging): the hook invalidates; a DMA write faults, a read goes on
dma $PCI "write iova=0x4000 data=01"
mark_smmu
kreq_ok "PROTECT vm=$vm gpa=0x4000 size=0x1000 perm=r"
expect kvm.smmu.protect.cmds "$(sent_smmu | cut -d' ' -f1)" "TLBI_S2_IPA"
expect kvm.smmu.protect.has.sync "$(sent_smmu | grep -c 'SYNC')" 1
dma $PCI "write iova=0x4000 data=02"
expect kvm.smmu.protect.write "$(status)" "fault F_PERMISSION(0x13)"
expect kvm.smmu.protect.event.s2 $(( (0x$(evt | cut -d' ' -f2) >> 39) & 1 )) 1
dma $PCI "read iova=0x4000 len=1"; expect kvm.smmu.protect.read "$(status)" ok
mark_smmu
kreq_ok "PROTECT vm=$vm gpa=0x4000 size=0x1000 perm=rw"
expect kvm.smmu.unprotect.silent "$(sent_smmu)" "-"
dma $PCI "write iova=0x4000 data=03"; expect kvm.smmu.unprotect.write "$(status)" ok

# ---- a dropped notification: the stale translation stays until the right command; the
# sanitizer names the command that was missing
dma $PCI "read iova=0x9000 len=4"
echo 1 >"$K/vm$vm/drop_invalidate" || die "drop_invalidate"
mark_smmu
kreq_ok "ZAP vm=$vm gpa=0x9000 size=0x1000"
expect kvm.smmu.drop.silent "$(sent_smmu)" "-"
fix="fix: TLBI_S2_IPA vmid=$vmid addr=0x9000"; seen=$(grep -c "$fix" "$S/findings")
dma $PCI "read iova=0x9000 len=4"
expect kvm.smmu.drop.stale "$(data) $(via)" "$(page 9) tlb"
expect kvm.smmu.drop.finding $(( $(grep -c "$fix" "$S/findings") - seen )) 1
expect kvm.smmu.drop.disarmed "$(cat "$K/vm$vm/drop_invalidate")" 0

# ---- a vIOMMU on the KVM stage 2 (the review: TLBI_NH_ALL too when nested): a guest STE with
# stage 1 bypassed translates by the vIOMMU's VMID, and KVM's zap reaches that VMID at once
req_ok "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$hwpt"; kviommu=$(get out_viommu_id)
req_ok "VDEVICE_ALLOC viommu_id=$kviommu dev_id=$dev virt_id=0x10"; kvdev=$(get out_vdevice_id)
req_ok "HWPT_ALLOC dev_id=$dev pt_id=$kviommu data_type=ARM_SMMUV3 ste=0x9,0"; knested=$(get out_hwpt_id)   # V, Config = S1 bypass
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$knested"
nvmid=$(( $(grep -A1 '^sid=0x8 ' "$S/stream_table" | sed -n 's/^  ste=[^,]*,[^,]*,\([^,]*\),.*/\1/p') & 0xffff ))
expect kvm.nested.s2ttb "$(printf '0x%x' $(( $(grep -A1 '^sid=0x8 ' "$S/stream_table" | sed -n 's/^  ste=[^,]*,[^,]*,[^,]*,\([^,]*\),.*/\1/p') & 0xffffffffffff0 )))" "$root"
dma $PCI "read iova=0xa000 len=4"; dma $PCI "read iova=0xa000 len=4"
expect kvm.nested.dma.tlb "$(data) $(via)" "$(page 10) tlb"
mark_smmu
kreq_ok "ZAP vm=$vm gpa=0xa000 size=0x1000"
# (no ATC_INV: the guest's STE did not enable ATS)
expect kvm.nested.zap.cmds "$(sent_smmu)" "TLBI_S2_IPA vmid=$nvmid scale=1 tg=1 addr=0xa000 | TLBI_NH_ALL vmid=$nvmid | SYNC cs=2"
dma $PCI "read iova=0xa000 len=4"; expect kvm.nested.zap.no.stale "$(status)" "fault F_TRANSLATION(0x10)"
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$hwpt"
req_ok "DESTROY id=$knested"; req_ok "DESTROY id=$kvdev"; req_ok "DESTROY id=$kviommu"

# dev/kvm's own checks: 4K-aligned ranges, at most 4 MiB a request, a known VM, rights r or rw
kreq "ZAP vm=$vm gpa=0x1001 size=0x1000"; expect kvm.zap.gpa.unaligned "$(errno)" EINVAL
kreq "ZAP vm=$vm gpa=0x1000 size=0x800"; expect kvm.zap.size.unaligned "$(errno)" EINVAL
kreq "ZAP vm=$vm gpa=0x0 size=0x800000"; expect kvm.zap.size.big "$(errno)" E2BIG
kreq "ZAP vm=9999 gpa=0x0 size=0x1000"; expect kvm.zap.vm.unknown "$(errno)" ENOENT
kreq "PROTECT vm=$vm gpa=0x0 size=0x1000 perm=x"; expect kvm.protect.perm "$(errno)" EINVAL

# ---- UNMAP removes the memslots of the range: leaves cleared, importers told
mark_smmu
kreq_ok "UNMAP vm=$vm gpa=0x0 size=0x10000"
expect kvm.smmu.unmap.first "$(sent_smmu | cut -d' ' -f1)" "TLBI_S2_IPA"
dma $PCI "read iova=0x2000 len=4"; expect kvm.smmu.unmap.dma "$(status)" "fault F_TRANSLATION(0x10)"

# ---- lifetime: the HWPT keeps the VM (the TDP fd's reference) after dev/kvm closes
req "DESTROY id=$hwpt"; expect kvm.hwpt.destroy.attached "$(errno)" EBUSY
exec 5>&-
req_ok "CONTEXT"            # a round trip on dev/iommu: dev/kvm's close has been handled
expect kvm.vm.kept.by.importer "$(test -d "$K/vm$vm" && echo yes || echo no)" yes
expect kvm.vm.ept.gone "$(test -d "$K/vm$vm_ept" && echo yes || echo no)" no
req_ok "DEVICE_DETACH dev_id=$dev"
req "DESTROY id=$hwpt"; expect kvm.hwpt.destroy "$(errno)" ok
expect kvm.vm.gone.with.importer "$(test -d "$K/vm$vm" && echo yes || echo no)" no
exec 3>&-

# =====================================================================================
# The same on VT-d: an EPT walked as a second-stage table; IOTLB PSI by DID (IH = 1), the
# device TLB, the wait descriptor
# =====================================================================================
exec 3<>"$M/dev/iommu" 2>/dev/null || die "open dev/iommu"
exec 5<>"$M/dev/kvm" 2>/dev/null || die "open dev/kvm"
PCI2=0000:02:00.0
kreq_ok "CREATE_VM pgtable=ept"; vm=$(get vm); root=$(get root)
expect kvm.vtd.vm.ipa_bits "$(get ipa_bits)" 48
kreq_ok "MAP vm=$vm gpa=0x0 size=0x10000 path=$ram"
kreq_ok "CREATE_TDP_FD vm=$vm"; fd=$(get fd)
kreq_ok "CREATE_VM"; vm_arm=$(get vm); kreq_ok "CREATE_TDP_FD vm=$vm_arm"; fd_arm=$(get fd)
req_ok "DEVICE_BIND pci=$PCI2"; dev=$(get out_devid)
req "HWPT_ALLOC dev_id=$dev pt_id=0 data_type=IOMMUFS_KVM fd=$fd_arm"
expect kvm.hwpt.vtd.arm64 "$(errno)" EINVAL
req_ok "HWPT_ALLOC dev_id=$dev pt_id=0 data_type=IOMMUFS_KVM fd=$fd"; hwpt=$(get out_hwpt_id)
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$hwpt"
did=$(sed -n 's/^rid=02:00.0 pasid=0 .*pgtt=second-stage did=\([0-9]*\).*/\1/p' "$V/pasid_table")
dma $PCI2 "read iova=0x1000 len=4"; expect kvm.vtd.dma.walk "$(data)" "$(page 1)"
# the RID_PASID entry (translation §4.1): PGTT 2, AW 2 (4-level), SSPTPTR = KVM's root; snooping
# forced, PGSNP (the RFC: KVM's table is the CPU's); the EPT leaf: RWX, SNP (bit 11) clear, KVM's
# present bit moved to 59 (the RFC)
pw() { sed -n "s/^walk pasid word=$1 .*desc=\(0x[0-9a-f]*\).*/\1/p" <<<"$dma"; }
w0=$(pw 0); w1=$(pw 1)
expect kvm.vtd.pasid.pgtt $(( (w0 >> 6) & 7 )) 2
expect kvm.vtd.pasid.aw $(( (w0 >> 2) & 7 )) 2
expect kvm.vtd.pasid.ssptptr "$(printf '0x%x' $(( w0 & ~0xfff )))" "$root"
expect kvm.vtd.pasid.pgsnp $(( (w1 >> 24) & 1 )) 1
leaf=$(sed -n 's/^walk ss level=1 .*desc=\(0x[0-9a-f]*\).*/\1/p' <<<"$dma")
expect kvm.vtd.leaf.rwx $(( leaf & 7 )) 7
expect kvm.vtd.leaf.snp $(( (leaf >> 11) & 1 )) 0
expect kvm.vtd.leaf.present59 $(( (leaf >> 59) & 1 )) 1
dma $PCI2 "read iova=0x1000 len=4"; expect kvm.vtd.dma.iotlb "$(via)" iotlb
mark_vtd
kreq_ok "ZAP vm=$vm gpa=0x1000 size=0x3000"
# PSI: 3 pages from pfn 1 -> the aligned 16K block at 0 (AM 2); the device TLB's size-encoded
# address for the same 16K (0x1000 | S); then a wait descriptor
sent=$(sent_vtd)
expect kvm.vtd.zap.iotlb "$(cut -d'|' -f1 <<<"$sent" | xargs)" "IOTLB gran=page-selective did=$did addr=0x0 am=2 ih=1"
expect kvm.vtd.zap.devtlb "$(cut -d'|' -f2 <<<"$sent" | xargs)" "DEV_IOTLB sid=02:00.0 qdep=0 addr=0x1000 s=1"
expect kvm.vtd.zap.wait "$(cut -d'|' -f3 <<<"$sent" | xargs | cut -d' ' -f1)" WAIT
dma $PCI2 "read iova=0x1000 len=4"; expect kvm.vtd.zap.no.stale "$(status)" "fault FR=0x86"
mark_vtd
kreq_ok "PROTECT vm=$vm gpa=0x0 size=0x10000 perm=r"
expect kvm.vtd.protect.iotlb "$(sent_vtd | cut -d'|' -f1 | xargs)" "IOTLB gran=page-selective did=$did addr=0x0 am=4 ih=1"
dma $PCI2 "write iova=0x4000 data=00"; expect kvm.vtd.protect.write "$(status)" "fault FR=0x85"
expect kvm.vtd.protect.frcd "$(frcd)" "0000000000004000 8000008500000200"
mark_vtd
kreq_ok "PROTECT vm=$vm gpa=0x0 size=0x10000 perm=rw"
kreq_ok "PREFAULT vm=$vm gpa=0x0 size=0x10000"
expect kvm.vtd.adds.silent "$(sent_vtd)" "-"
dma $PCI2 "read iova=0x2000 len=4"
echo 1 >"$K/vm$vm/drop_invalidate" || die "drop_invalidate"
kreq_ok "ZAP vm=$vm gpa=0x2000 size=0x1000"
fix="fix: IOTLB did=$did addr=0x2000 am=0 ih=1"; seen=$(grep -c "$fix" "$V/findings")
dma $PCI2 "read iova=0x2000 len=4"; expect kvm.vtd.drop.stale "$(data) $(via)" "$(page 2) iotlb"
expect kvm.vtd.drop.finding $(( $(grep -c "$fix" "$V/findings") - seen )) 1
# a nested domain on KVM's stage 2: PGTT 3 keeps PGSNP; a zap flushes by the nested domain's DID
req_ok "HWPT_ALLOC dev_id=$dev pt_id=$hwpt data_type=VTD_S1 pgtbl_addr=0x8000 addr_width=48"; vnested=$(get out_hwpt_id)
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$vnested"
ndid=$(sed -n 's/^rid=02:00.0 pasid=0 .*did=\([0-9]*\).*/\1/p' "$V/pasid_table")
dma $PCI2 "read iova=0x1000 len=4"
w0=$(pw 0); w1=$(pw 1)
expect kvm.vtd.nested.pgtt $(( (w0 >> 6) & 7 )) 3
expect kvm.vtd.nested.pgsnp $(( (w1 >> 24) & 1 )) 1
mark_vtd
kreq_ok "ZAP vm=$vm gpa=0x3000 size=0x1000"
expect kvm.vtd.nested.zap.iotlb "$(sent_vtd | cut -d'|' -f1 | xargs)" "IOTLB gran=page-selective did=$ndid addr=0x3000 am=0 ih=1"
# VT-d has no vIOMMU type, so no HW queue either; nor does it report Tegra241 hw_info
req "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$hwpt"; expect hwq.vtd.viommu "$(errno)" EOPNOTSUPP
req "VIOMMU_ALLOC type=TEGRA241_CMDQV dev_id=$dev hwpt_id=$hwpt"; expect hwq.vtd.viommu.tegra241 "$(errno)" EOPNOTSUPP
req "GET_HW_INFO dev_id=$dev flags=INPUT_TYPE in_data_type=TEGRA241_CMDQV"; expect hwq.vtd.hw_info.tegra241 "$(errno)" EOPNOTSUPP
req "HW_QUEUE_ALLOC viommu_id=$vnested type=TEGRA241_CMDQV index=0 nesting_parent_iova=0x0 length=0x1000"
expect hwq.vtd.nested.not.viommu "$(errno)" ENOENT
req_ok "DEVICE_DETACH dev_id=$dev"
req_ok "DESTROY id=$vnested"
req_ok "DESTROY id=$hwpt"
kreq_ok "INFO vm=$vm"; expect kvm.importer.unregistered "$(get importers)" 0
exec 3>&- 5>&-

# =====================================================================================
# IOMMU_HW_QUEUE_ALLOC (uapi §3.21, §7.3, §4.8): the core's checks in order; an SMMUv3
# without CMDQV has no HW queue type, no Tegra241 vIOMMU and no Tegra241 hw_info
# =====================================================================================
exec 3<>"$M/dev/iommu" 2>/dev/null || die "open dev/iommu"
req_ok "DEVICE_BIND pci=$PCI"; dev=$(get out_devid)
req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
req_ok "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x10000 iova=0x40000000"
req_ok "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"; s2=$(get out_hwpt_id)
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$s2"
req "VIOMMU_ALLOC type=TEGRA241_CMDQV dev_id=$dev hwpt_id=$s2"; expect hwq.viommu.tegra241 "$(errno)" EOPNOTSUPP
req "GET_HW_INFO dev_id=$dev flags=INPUT_TYPE in_data_type=TEGRA241_CMDQV"; expect hwq.hw_info.tegra241 "$(errno)" EOPNOTSUPP
req_ok "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2"; viommu=$(get out_viommu_id)
hwq() { req "HW_QUEUE_ALLOC $1"; errno; }
Q0="type=TEGRA241_CMDQV index=0 nesting_parent_iova=0x40000000 length=0x1000"
expect hwq.flags "$(hwq "viommu_id=$viommu flags=1 $Q0")" EOPNOTSUPP
expect hwq.type.default "$(hwq "viommu_id=$viommu type=DEFAULT index=0 nesting_parent_iova=0x40000000 length=0x1000")" EOPNOTSUPP
expect hwq.length.0 "$(hwq "viommu_id=$viommu type=TEGRA241_CMDQV index=0 nesting_parent_iova=0x40000000 length=0")" EINVAL
expect hwq.overflow "$(hwq "viommu_id=$viommu type=TEGRA241_CMDQV index=0 nesting_parent_iova=0xffffffffffffffff length=2")" EOVERFLOW
expect hwq.last.byte.no.overflow "$(hwq "viommu_id=$viommu type=TEGRA241_CMDQV index=0 nesting_parent_iova=0xffffffffffffffff length=1")" EOPNOTSUPP
expect hwq.viommu.unknown "$(hwq "viommu_id=9999 $Q0")" ENOENT
expect hwq.viommu.not.viommu "$(hwq "viommu_id=$ioas $Q0")" ENOENT
expect hwq.order.flags.before.viommu "$(hwq "viommu_id=9999 flags=1 $Q0")" EOPNOTSUPP
expect hwq.order.length.before.viommu "$(hwq "viommu_id=9999 type=TEGRA241_CMDQV index=0 nesting_parent_iova=0x40000000 length=0")" EINVAL
expect hwq.order.overflow.before.viommu "$(hwq "viommu_id=9999 type=TEGRA241_CMDQV index=0 nesting_parent_iova=0xfffffffffffff000 length=0x2000")" EOVERFLOW
expect hwq.smmuv3.no.type "$(hwq "viommu_id=$viommu $Q0")" EOPNOTSUPP
expect hwq.size.short "$(hwq "size=36 viommu_id=$viommu $Q0")" EINVAL
# the core accepts any nonzero vEVENTQ type (uapi §7.4): a Tegra241 one on an SMMUv3 vIOMMU
req "VEVENTQ_ALLOC viommu_id=$viommu type=TEGRA241_CMDQV veventq_depth=4"; expect hwq.veventq.tegra241.type "$(errno)" ok

# The core's pin and the driver's index rules, on the selftest's mock vIOMMU (the only HW queue
# type this machine has; kernel selftest constants: type 0xdeadbeef, queues 0..1)
exec 6<>"$M/dev/iommu" 2>/dev/null || die "open dev/iommu"
req6() { echo "$1" >&6 2>/dev/null; IFS= read -r -u 6 reply || die "no reply to $1"; }
req6 "IOAS_ALLOC"; mioas=$(get out_ioas_id)
req6 "TEST_CMD op=MOCK_DOMAIN id=$mioas"
[[ $reply =~ payload=0x([0-9a-f]*),0x([0-9a-f]*) ]] || die "MOCK_DOMAIN: $reply"
midev=$(( 0x${BASH_REMATCH[2]} ))
req6 "HWPT_ALLOC dev_id=$midev pt_id=$mioas flags=NEST_PARENT"; mparent=$(get out_hwpt_id)
req6 "VIOMMU_ALLOC type=SELFTEST dev_id=$midev hwpt_id=$mparent"; mviommu=$(get out_viommu_id)
truncate -s 4K "$TMP/a" "$TMP/b"
req6 "IOAS_MAP_FILE ioas_id=$mioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x10000 iova=0x1000000"
req6 "IOAS_MAP_FILE ioas_id=$mioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$TMP/a start=0 length=0x1000 iova=0x2000000"
req6 "IOAS_MAP_FILE ioas_id=$mioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$TMP/b start=0 length=0x1000 iova=0x2001000"
mhwq() { req6 "HW_QUEUE_ALLOC viommu_id=$mviommu type=SELFTEST $1"; }
req6 "HW_QUEUE_ALLOC viommu_id=$mviommu type=TEGRA241_CMDQV index=0 nesting_parent_iova=0x1000000 length=0x1000"; expect hwq.mock.type.other "$(errno)" EOPNOTSUPP
mhwq "index=0 nesting_parent_iova=0x3000000 length=0x1000"; expect hwq.mock.unmapped "$(errno)" ENOENT
mhwq "index=0 nesting_parent_iova=0x100f000 length=0x2000"; expect hwq.mock.partly.mapped "$(errno)" ENOENT
mhwq "index=0 nesting_parent_iova=0x2000000 length=0x2000"; expect hwq.mock.not.contiguous "$(errno)" EFAULT
mhwq "index=2 nesting_parent_iova=0x1000000 length=0x1000"; expect hwq.mock.index.out.of.range "$(errno)" EINVAL
mhwq "index=1 nesting_parent_iova=0x1000000 length=0x1000"; expect hwq.mock.index.1.first "$(errno)" EIO
mhwq "index=0 nesting_parent_iova=0x1000000 length=0x1000"; expect hwq.mock.index.0 "$(errno)" ok
mq0=$(get out_hw_queue_id)
mhwq "index=0 nesting_parent_iova=0x1001000 length=0x1000"; expect hwq.mock.index.0.again "$(errno)" EEXIST
mhwq "index=1 nesting_parent_iova=0x1001000 length=0x1000"; expect hwq.mock.index.1 "$(errno)" ok
mq1=$(get out_hw_queue_id)
req6 "IOAS_UNMAP ioas_id=$mioas iova=0x1000000 length=0x10000"; expect hwq.mock.pinned.unmap "$(errno)" EBUSY
req6 "DESTROY id=$mq0"; expect hwq.mock.destroy.ascending "$(errno)" EBUSY
req6 "DESTROY id=$mviommu"; expect hwq.mock.viommu.held "$(errno)" EBUSY
req6 "DESTROY id=$mq1"; expect hwq.mock.destroy.1 "$(errno)" ok
req6 "DESTROY id=$mq0"; expect hwq.mock.destroy.0 "$(errno)" ok
req6 "IOAS_UNMAP ioas_id=$mioas iova=0x1000000 length=0x10000"; expect hwq.mock.unpinned.unmap "$(errno)" ok
exec 6>&-

# =====================================================================================
# The vCMDQ: an SMMUv3 command queue as register files (PROD, CONS, GERROR, GERRORN) over
# the guest's vIOMMU, with the SMMU circular-queue rules (IHI 0070 §3.5, §6.3.27/28)
# =====================================================================================
req_ok "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=0x10"
req "VCMDQ_ALLOC viommu_id=$viommu log2size=0"; expect vcmdq.log2size.0 "$(errno)" EINVAL
req "VCMDQ_ALLOC viommu_id=$viommu log2size=9"; expect vcmdq.log2size.above.cmdqs "$(errno)" EINVAL   # IDR1.CMDQS = 8
req "VCMDQ_ALLOC viommu_id=9999 log2size=2"; expect vcmdq.viommu.unknown "$(errno)" ENOENT
req "VCMDQ_ALLOC viommu_id=$viommu log2size=2 flags=1"; expect vcmdq.flags "$(errno)" EOPNOTSUPP
req_ok "VCMDQ_ALLOC viommu_id=$viommu log2size=2"; vq=$(get out_vcmdq_id)
req_ok "CONTEXT"; ctx=$(get id)
Q=$D/$ctx/$vq.vcmdq
vmid=$(sed -n 's/^vmid: //p' "$D/$ctx/$viommu.viommu")
regs() { echo "$(cat "$Q/prod") $(cat "$Q/cons") $(cat "$Q/gerror") $(cat "$Q/gerrorn")"; }
expect vcmdq.reset "$(regs)" "0x00000000 0x00000000 0x00000000 0x00000000"
expect vcmdq.ring.size "$(stat -c %s "$Q/ring")" 64
printf '%016d' 0 | dd of="$Q/ring" bs=16 seek=4 conv=notrunc status=none 2>/dev/null
expect vcmdq.ring.past.end $? 1

le64() { local i s=''; for ((i = 0; i < 8; i++)); do s+=$(printf '\\x%02x' $((($1 >> (8 * i)) & 0xff))); done; printf '%s' "$s"; }
put() { printf "$(le64 "$2")$(le64 "${3:-0}")" | dd of="$Q/ring" bs=16 seek="$1" conv=notrunc status=none || die "dd slot $1"; }
prod() { echo "$1" >"$Q/prod" 2>/dev/null; }
NH_ASID() { echo $(( 0x11 | ($1 << 48) )); }          # CMD_TLBI_NH_ASID, ASID [63:48]

# 3 commands: PROD 3 (index 3, wrap 0)
put 0 "$(NH_ASID 1)"; put 1 "$(NH_ASID 2)"; put 2 "$(NH_ASID 3)"
mark_smmu; prod 3
expect vcmdq.consume.cons "$(cat "$Q/cons")" 0x00000003
expect vcmdq.consume.cmds "$(sent_smmu)" "TLBI_NH_ASID vmid=$vmid asid=1 | TLBI_NH_ASID vmid=$vmid asid=2 | TLBI_NH_ASID vmid=$vmid asid=3 | SYNC cs=2"
# wrap: slots 3, 0, 1 -> PROD 0x6 (index 2, wrap 1)
put 3 "$(NH_ASID 4)"; put 0 "$(NH_ASID 5)"; put 1 "$(NH_ASID 6)"
mark_smmu; prod 0x6
expect vcmdq.wrap.cons "$(cat "$Q/cons")" 0x00000006
expect vcmdq.wrap.order "$(sent_smmu)" "TLBI_NH_ASID vmid=$vmid asid=4 | TLBI_NH_ASID vmid=$vmid asid=5 | TLBI_NH_ASID vmid=$vmid asid=6 | SYNC cs=2"
# a full queue: PROD on CONS's index with the other wrap (4 entries: slots 2, 3, 0, 1)
put 2 "$(NH_ASID 7)"; put 3 "$(NH_ASID 8)"; put 0 "$(NH_ASID 9)"; put 1 "$(NH_ASID 10)"
mark_smmu; prod 0x2
expect vcmdq.full.cons "$(cat "$Q/cons")" 0x00000002
expect vcmdq.full.count "$(sent_smmu | grep -o 'TLBI_NH_ASID' | wc -l)" 4
# bits [19:QS+1] of PROD are RES0: a value there has no other effect (§6.3.27)
put 2 "$(NH_ASID 11)"
mark_smmu; prod $(( 0x3 | 0x100 )); expect vcmdq.prod.res0.accepted $? 0
expect vcmdq.prod.res0.cons "$(( $(cat "$Q/cons") & 0x7 ))" 3
expect vcmdq.prod.res0.cmds "$(sent_smmu)" "TLBI_NH_ASID vmid=$vmid asid=11 | SYNC cs=2"
# PROD == CONS: empty, nothing consumed
mark_smmu; prod 0x3; expect vcmdq.empty "$(sent_smmu)" "-"

# VMID and SID substitution: the guest's VMID field is ignored, a vSID is replaced by the pSID
put 3 $(( 0x12 | (0x55 << 32) | (1 << 48) )) $(( 0x1000 | 1 ))   # TLBI_NH_VA vmid=0x55 asid=1 leaf
put 0 $(( 0x40 | (0x10 << 32) ))                                    # ATC_INV vSID 0x10
put 1 $(( 0x05 | (0x10 << 32) ))                                    # CFGI_CD vSID 0x10 ssid 0
mark_smmu; prod 0x6
expect vcmdq.subst.cons "$(cat "$Q/cons")" 0x00000006
expect vcmdq.subst.cmds "$(sent_smmu | sed 's/ | SYNC cs=2//g')" \
  "TLBI_NH_VA vmid=$vmid asid=1 leaf=1 addr=0x1000 | ATC_INV sid=0x8 | CFGI_CD sid=0x8"

# An unknown vSID is an error, not another device's SID: CONS stops on it with CERROR_ILL
put 2 $(( 0x40 | (0x11 << 32) ))                                    # ATC_INV vSID 0x11: no vDEVICE
put 3 "$(NH_ASID 12)"
mark_smmu; prod 0x0
expect vcmdq.vsid.unknown.cons "$(cat "$Q/cons")" 0x01000006
expect vcmdq.vsid.unknown.gerror "$(cat "$Q/gerror") $(cat "$Q/gerrorn")" "0x00000001 0x00000000"
expect vcmdq.vsid.unknown.nothing.after "$(sent_smmu | grep -c 'asid=12')" 0
# while GERROR.CMDQ_ERR != GERRORN.CMDQ_ERR, PROD writes consume nothing
mark_smmu; prod 0x0; expect vcmdq.halted.prod "$(sent_smmu) $(cat "$Q/cons")" "- 0x01000006"
# recovery: replace the failing entry by CMD_SYNC, acknowledge (GERRORN = GERROR): CONS resumes
put 2 0x46
mark_smmu; cat "$Q/gerror" >"$Q/gerrorn"
expect vcmdq.resume.cons "$(cat "$Q/cons")" 0x00000000
expect vcmdq.resume.cmds "$(sent_smmu | grep -o 'TLBI_NH_ASID [^|]*' | xargs)" "TLBI_NH_ASID vmid=$vmid asid=12"
# an illegal opcode, then the second error toggles GERROR.CMDQ_ERR back (0 != GERRORN 1)
put 0 0x7f; mark_smmu; prod 0x1
expect vcmdq.ill.opcode.cons "$(cat "$Q/cons")" 0x01000000
expect vcmdq.ill.toggle "$(cat "$Q/gerror") $(cat "$Q/gerrorn")" "0x00000000 0x00000001"
put 0 0x46; cat "$Q/gerror" >"$Q/gerrorn"
expect vcmdq.ill.resume "$(cat "$Q/cons")" 0x00000001
# commands that are not the guest's (stage-2 and STE commands) are CERROR_ILL
put 1 $(( 0x03 | (0x10 << 32) )); prod 0x2                          # CFGI_STE
expect vcmdq.ill.cfgi_ste "$(cat "$Q/cons")" 0x01000001
put 1 0x46; cat "$Q/gerror" >"$Q/gerrorn"
put 2 $(( 0x2a | (1 << 32) )) 0x1000; prod 0x3                      # TLBI_S2_IPA
expect vcmdq.ill.tlbi_s2_ipa "$(cat "$Q/cons")" 0x01000002
put 2 0x46; cat "$Q/gerror" >"$Q/gerrorn"
expect vcmdq.recovered "$(cat "$Q/cons") $(cat "$Q/gerror") $(cat "$Q/gerrorn")" "0x00000003 0x00000000 0x00000000"
# CMD_SYNC completes after the earlier commands of the queue: CONS passes it
put 3 "$(NH_ASID 13)"; put 0 0x46
mark_smmu; prod 0x5
expect vcmdq.sync.cons "$(cat "$Q/cons")" 0x00000005
expect vcmdq.sync.after "$(sent_smmu)" "TLBI_NH_ASID vmid=$vmid asid=13 | SYNC cs=2"
# an abort (CERROR_ABT, 2) and an ATC invalidation timeout on the CMD_SYNC (CERROR_ATC_INV_SYNC, 3)
echo ABT >"$S/inject_cerror" || die "inject_cerror"
put 1 "$(NH_ASID 14)"; prod 0x6
expect vcmdq.abt.cons "$(cat "$Q/cons")" 0x02000005
cat "$Q/gerror" >"$Q/gerrorn"
expect vcmdq.abt.retry "$(cat "$Q/cons")" 0x00000006
echo ATC_INV_SYNC >"$S/inject_cerror" || die "inject_cerror"
put 2 $(( 0x40 | (0x10 << 32) )); put 3 0x46; prod 0x0
expect vcmdq.atc_inv_sync.cons "$(cat "$Q/cons")" 0x03000007
cat "$Q/gerror" >"$Q/gerrorn"
expect vcmdq.atc_inv_sync.resume "$(cat "$Q/cons")" 0x00000000

# destroy order: the queue keeps its vIOMMU
req "DESTROY id=$viommu"; expect vcmdq.viommu.busy "$(errno)" EBUSY
req "DESTROY id=$vq"; expect vcmdq.destroy "$(errno)" ok
exec 3>&-

echo "# $checks checks, $fails failed"
[ "$fails" -eq 0 ]
