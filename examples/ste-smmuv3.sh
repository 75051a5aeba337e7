#!/usr/bin/env bash
# How the SMMUv3 host driver changes a stream's STE, as the Linux driver's
# entry writer does (arm_smmu_write_entry): for each transition of one
# device's RID (abort, stage 1, stage 2, blocked and identity with a PASID
# in use), the commands it sent (cmdq), the STE words the SMMU now reads
# (stream_table) and the CD table. CD 0 is cleared whenever the RID leaves
# stage 1; with PASIDs in use the identity domain keeps the CD table with
# S1DSS = bypass, so DMA without a PASID bypasses while PASID 5 translates.
#
#   examples/ste-smmuv3.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu
PCI=0000:00:01.0
SMMU=smmu3.0x0000000009050000
dbg=$mnt/sys/kernel/debug/iommufd

ram=$(mktemp /tmp/ste-ram.XXXXXX)
trap 'rm -f "$ram"' EXIT
truncate -s 8K "$ram"
printf 'rid data' | dd of="$ram" bs=1 seek=0 conv=notrunc status=none
printf 'pasid 5!' | dd of="$ram" bs=1 seek=4096 conv=notrunc status=none

exec 3<>"$mnt/dev/iommu"
new_commands 4
# step TITLE: the commands sent since the last step, then the device's STE and CD table
step() {
  new_commands 4
  echo "== $1"
  [ -z "$commands" ] || printf '%s\n' "$commands" | sed 's/^/  cmd /'
  grep -A1 '^sid=0x8 ' "$dbg/iommu/$SMMU/stream_table" | sed 's/^ */  /'
  grep '^sid=0x8 \|^  ssid=' "$dbg/iommu/$SMMU/cd_table" | sed 's/^ */  cd_table /' || true
  echo "  rid_domain $(cat "$dbg/rid_domain/$PCI")"
}

req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
req "IOAS_ALLOC"
ioas2=$(get out_ioas_id)
req "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x1000 iova=0x100000"
req "IOAS_MAP_FILE ioas_id=$ioas2 flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0x1000 length=0x1000 iova=0x100000"
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=PASID"
s1=$(get out_hwpt_id)
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas2 flags=PASID"
other=$(get out_hwpt_id)
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
s2=$(get out_hwpt_id)

req "DEVICE_ATTACH dev_id=$dev pt_id=$s1"
step "abort -> S1"
req "DEVICE_DETACH dev_id=$dev"
step "S1 -> blocked"
req "DEVICE_ATTACH dev_id=$dev pt_id=$s1"
step "blocked -> S1"
req "DEVICE_ATTACH dev_id=$dev pt_id=$s2"
step "S1 -> S2"
req "DEVICE_ATTACH dev_id=$dev pt_id=$s1"
step "S2 -> S1"
req "DEVICE_ATTACH dev_id=$dev pt_id=$other flags=PASID pasid=5"
step "PASID 5 on S1"
req "DEVICE_DETACH dev_id=$dev"
step "S1 -> blocked, PASID 5 in use"
echo identity > "$dbg/rid_domain/$PCI"
step "blocked -> identity, PASID 5 in use"
dma $PCI "read iova=0x100000 len=8 pasid=5"
[[ $dma == *"data 7061736964203521"* ]] || die "PASID 5 did not translate through its CD"
# without a PASID the IOVA is the physical address: the file's first page, where the model's pinning window put it
dma $PCI "read iova=0x8000000000 len=8"
[[ $dma == *"pa=0x8000000000 "* && $dma == *"data 7269642064617461"* ]] || die "traffic without a PASID did not bypass"
req "DEVICE_DETACH dev_id=$dev flags=PASID pasid=5"
step "identity, the last PASID out"
echo blocked > "$dbg/rid_domain/$PCI"
step "identity -> blocked"
req "DEVICE_ATTACH dev_id=$dev pt_id=$s1"
echo identity > "$dbg/rid_domain/$PCI" 2>/dev/null && die "identity over an attached HWPT" || echo "identity over HWPT $s1: refused"
echo "== findings"
cat "$dbg/iommu/$SMMU/sanitizer"
exec 3>&-
