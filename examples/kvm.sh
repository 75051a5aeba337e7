#!/usr/bin/env bash
# A KVM-owned stage 2 walked by SMMUv3 and VT-d, with KVM's direct invalidation hook (an iommufs extension).
#
#   examples/kvm.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# After the 2023 RFC "Sharing KVM TDP to IOMMU" and its review: KVM keeps the
# VM's stage-2 table in host memory; an IOMMU domain imports it (HWPT_ALLOC
# with data type IOMMUFS_KVM and the fd KVM_CREATE_TDP_FD gave); the IOMMU's
# vendor driver registers with KVM as an importer, so every KVM change the
# hardware may have cached is invalidated by the driver directly (no hop
# through iommufd). For each IOMMU kind: map guest memory (a file), DMA
# through KVM's table, zap a page (the driver's commands appear in cmdq /
# invalidation_queue marked [kvm vmN], and in the trace), write-protect (as
# for dirty logging: a DMA write faults), and a broken hook (fault injection
# drops KVM's notification): the stale translation is the sanitizer's finding.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/kvm
dbg=$mnt/sys/kernel/debug/iommufd

ram=$(mktemp /tmp/kvm-ram.XXXXXX)
trap 'rm -f "$ram"' EXIT
truncate -s 64K "$ram"
printf 'guest page one..' | dd of="$ram" bs=1 seek=4096 conv=notrunc status=none
printf 'guest page two..' | dd of="$ram" bs=1 seek=8192 conv=notrunc status=none

exec 5<>"$mnt/dev/kvm"      # a KVM user: its VMs live while this stays open
exec 3<>"$mnt/dev/iommu"    # an iommufd context
k() { echo "kvm> $1"; echo "$1" >&5 || true; read -r -u 5 reply; echo "  $reply"; }
r() { echo "iommufd> $1"; echo "$1" >&3 || true; read -r -u 3 reply; echo "  $reply"; }
dma() { # dma PCI REQUEST: one DMA through the device's port; the reply without its walk lines
  echo "dma $1> $2"
  exec 4<>"$dbg/dma/$1"
  echo "$2" >&4
  grep -v '^walk' <&4 | sed 's/^/  /'
  exec 4>&-
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$reply"; }

walkthrough() { # walkthrough PCI PGTABLE UNIT QUEUE
  local pci=$1 pgtable=$2 unit=$3 queue=$4 vm fd dev hwpt
  echo
  echo "=== $unit ($pci), KVM stage 2 format $pgtable ==="
  k "CREATE_VM pgtable=$pgtable"; vm=$(field vm)
  k "MAP vm=$vm gpa=0x0 size=0x10000 path=$ram"
  k "CREATE_TDP_FD vm=$vm"; fd=$(field fd)
  r "DEVICE_BIND pci=$pci"; dev=$(field out_devid)
  r "HWPT_ALLOC dev_id=$dev pt_id=0 flags=NEST_PARENT data_type=IOMMUFS_KVM fd=$fd"; hwpt=$(field out_hwpt_id)
  r "DEVICE_ATTACH dev_id=$dev pt_id=$hwpt"
  echo "--- DMA walks KVM's table, then hits the cache"
  dma "$pci" "read iova=0x1000 len=16"
  dma "$pci" "read iova=0x1000 len=16"
  echo "--- KVM zaps GPA 0x1000: the driver's importer hook invalidates at once"
  seen=$(grep -c '\[kvm ' "$dbg/iommu/$unit/$queue" || true)
  k "ZAP vm=$vm gpa=0x1000 size=0x1000"
  # what the driver sent for the zap: the TLB invalidation, and the ATC's for an ATS device
  grep '\[kvm ' "$dbg/iommu/$unit/$queue" | tail -n +$(( seen + 1 ))
  grep "kvm: vm$vm: invalidate" "$dbg/trace" | tail -1 | sed 's/^\[ *[0-9]*\] *[0-9.]* //'
  dma "$pci" "read iova=0x1000 len=16"
  echo "--- write-protect (as for dirty logging): a DMA write faults"
  k "PREFAULT vm=$vm gpa=0x0 size=0x10000"
  k "PROTECT vm=$vm gpa=0x0 size=0x10000 perm=r"
  dma "$pci" "write iova=0x2000 data=4142"
  k "PROTECT vm=$vm gpa=0x0 size=0x10000 perm=rw"
  echo "--- a broken hook: KVM's next notification is dropped (fault injection)"
  dma "$pci" "read iova=0x2000 len=16"
  echo 1 > "$mnt/sys/kernel/debug/kvm/vm$vm/drop_invalidate"
  k "ZAP vm=$vm gpa=0x2000 size=0x1000"
  grep "kvm: vm$vm: invalidate" "$dbg/trace" | tail -1 | sed 's/^\[ *[0-9]*\] *[0-9.]* //'
  dma "$pci" "read iova=0x2000 len=16"
  head -n 1 "$dbg/iommu/$unit/findings"
  r "DEVICE_DETACH dev_id=$dev"
  r "DESTROY id=$hwpt"
}

walkthrough 0000:00:01.0 arm64 smmu3.0x0000000009050000 cmdq
walkthrough 0000:02:00.0 ept dmar0 invalidation_queue
