#!/usr/bin/env bash
# PASIDs on an SMMUv3 device: two domains, the RID on one and PASID 5 on the
# other, DMA with and without a SubstreamID, a PASID past 1023 (a second
# 64 KiB leaf of the 2-level CD table), replace, detach, and the errnos.
#
#   examples/pasid-smmuv3.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# Each step shows the commands the host driver model sent (cmdq) and the CD
# table the SMMU reads (cd_table), as the Linux driver builds them.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu
PCI=0000:00:01.0
SMMU=smmu3.0x0000000009050000
dbg=$mnt/sys/kernel/debug/iommufd

# the device's memory: page 0 for the RID's domain, page 1 for PASID 5's
ram=$(mktemp /tmp/pasid-ram.XXXXXX)
trap 'rm -f "$ram"' EXIT
truncate -s 8K "$ram"
printf 'rid data' | dd of="$ram" bs=1 seek=0 conv=notrunc status=none
printf 'pasid 5!' | dd of="$ram" bs=1 seek=4096 conv=notrunc status=none

exec 3<>"$mnt/dev/iommu"
# cmds TITLE: the commands sent since the last call
new_commands 2-
cmds() {
  new_commands 2-
  echo "== cmdq: $1"
  [ -z "$commands" ] || printf '%s\n' "$commands" | sed 's/^/  /'
}

req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)
req "GET_HW_INFO dev_id=$dev"
echo "max_pasid_log2=$(get out_max_pasid_log2)"
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
req "IOAS_ALLOC"
ioas2=$(get out_ioas_id)
req "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x1000 iova=0x100000"
req "IOAS_MAP_FILE ioas_id=$ioas2 flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0x1000 length=0x1000 iova=0x100000"
# domains a PASID may use are allocated with flags=PASID (the RID's too, once PASIDs are in use)
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=PASID"
rid=$(get out_hwpt_id)
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas2 flags=PASID"
other=$(get out_hwpt_id)

req "DEVICE_ATTACH dev_id=$dev pt_id=$rid"
cmds "RID attach: the CD table's first leaf, CD 0, the STE, then ATS on (the whole ATC flushed first)"
req "DEVICE_ATTACH dev_id=$dev pt_id=$other flags=PASID pasid=5"
cmds "PASID 5 attach: its CD, CFGI_CD for SSID 5, and the ATC entries of SSID 5"
echo "== cd_table"
cat "$dbg/iommu/$SMMU/cd_table"

dma $PCI "read iova=0x100000 len=8 pasid=5"
[[ $dma == *"data 7061736964203521"* ]] || die "PASID 5 did not read its own page"
dma $PCI "read iova=0x100000 len=8"
[[ $dma == *"data 7269642064617461"* ]] || die "the RID did not read its own page"

# a PASID in another 64 KiB leaf of the CD table (SSIDs 0x12000..0x123ff)
req "DEVICE_ATTACH dev_id=$dev pt_id=$other flags=PASID pasid=0x12345"
cmds "PASID 0x12345 attach: a new leaf (CFGI_CD leaf=0), then its CD"
dma $PCI "read iova=0x100000 len=8 pasid=0x12345"
[[ $dma == *"walk l1cd"* && $dma == *"data 7061736964203521"* ]] || die "PASID 0x12345 did not read through its leaf"

# replace: attaching an attached PASID again moves it to the other domain
req "DEVICE_ATTACH dev_id=$dev pt_id=$rid flags=PASID pasid=5"
cmds "PASID 5 replace: its CD rewritten"
dma $PCI "read iova=0x100000 len=8 pasid=5"
[[ $dma == *"data 7269642064617461"* ]] || die "PASID 5 did not follow its new domain"

req "DEVICE_DETACH dev_id=$dev flags=PASID pasid=5"
req "DEVICE_DETACH dev_id=$dev flags=PASID pasid=0x12345"
cmds "detach: each CD cleared with CFGI_CD, its SSID's ATC entries dropped; the ASID no PASID or RID uses any more flushed"
dma $PCI "read iova=0x100000 len=8 pasid=5"
[[ $dma == fault\ C_BAD_CD* ]] || die "a detached PASID should fault C_BAD_CD"

# what Linux refuses
req "DEVICE_ATTACH dev_id=$dev pt_id=$other flags=PASID pasid=0x100000" EINVAL
req "DEVICE_ATTACH dev_id=$dev pt_id=$ioas flags=PASID pasid=5" EINVAL
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT|PASID" EOPNOTSUPP
echo "== findings"
cat "$dbg/iommu/$SMMU/sanitizer"
exec 3>&-
