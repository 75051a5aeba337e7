#!/usr/bin/env bash
# DMA through a nested SMMUv3, with guest page tables built by printf in a file.
#
#   examples/dma-smmuv3.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# A VMM gives a guest a virtual SMMU; the guest writes its stage-1 tables
# (a context descriptor and four levels of page tables) into its RAM. Here the
# guest RAM is a plain file: we write the tables with printf, map the file
# into the IOAS with IOAS_MAP_FILE path=, and let the device do DMA through
# its DMA port (sys/kernel/debug/iommufd/dma/<pci>). Then we change a page
# table entry WITHOUT invalidating: the next DMA still uses the SMMU's TLB,
# and the stale-TLB sanitizer reports it, naming the command that was
# missing. We send that invalidation, and the DMA reaches the new page.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu
PCI=0000:00:01.0
SMMU=smmu3.0x0000000009050000
dbg=$mnt/sys/kernel/debug/iommufd

ram=$(mktemp /tmp/guest-ram.XXXXXX)
trap 'rm -f "$ram"' EXIT
truncate -s 2M "$ram"

ram_base=0x40000000   # the guest RAM file holds IPA/GPA 0x40000000 up (put64, examples/lib.sh)

# The guest's stage 1: CD at IPA 0x40000000, tables at 0x40001000 (L0) .. 0x40004000 (L3),
# VA 0x1000 -> page A at IPA 0x40010000. Page B at 0x40011000 waits for later.
CD=0x40000000
put64 $CD $(( 16 | (1 << 30) | (1 << 31) | (5 << 32) | (1 << 41) | (1 << 45) | (1 << 46) | (1 << 48) ))  # T0SZ=16 EPD1 V IPS=48b AA64 R A ASID=1
put64 $(( CD + 8 )) 0x40001000                                   # TTB0
put64 $(( CD + 24 )) 0xf404ff44                                  # MAIR
put64 0x40001000 $(( 0x40002000 | 3 ))                           # L0[0] -> L1
put64 0x40002000 $(( 0x40003000 | 3 ))                           # L1[0] -> L2
put64 0x40003000 $(( 0x40004000 | 3 ))                           # L2[0] -> L3
PAGE=$(( 0x800 | 0x400 | 0x300 | 0x40 | 0x4 | 3 ))               # nG AF SH=inner AP[1]=user AttrIndx=1 page
put64 $(( 0x40004000 + 8 )) $(( 0x40010000 | PAGE ))              # L3[1]: VA 0x1000 -> page A
printf 'page A: hello' | dd of="$ram" bs=1 seek=$(( 0x10000 )) conv=notrunc status=none
printf 'page B: world' | dd of="$ram" bs=1 seek=$(( 0x11000 )) conv=notrunc status=none

exec 3<>"$mnt/dev/iommu"

req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
# the guest RAM: the file, at guest physical 0x40000000
req "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x200000 iova=0x40000000"
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
s2=$(get out_hwpt_id)
req "DEVICE_ATTACH dev_id=$dev pt_id=$s2"
req "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2"
viommu=$(get out_viommu_id)
req "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=0x10"
# the guest's STE: V, Config=S1 translate, S1ContextPtr = the CD's IPA
req "HWPT_ALLOC dev_id=$dev pt_id=$viommu data_type=ARM_SMMUV3 data.ste=$(printf '0x%x' $(( CD | (5 << 1) | 1 ))),0x0"
nested=$(get out_hwpt_id)
req "DEVICE_ATTACH dev_id=$dev pt_id=$nested"

# 1. DMA: every stage-1 descriptor fetch is itself translated by stage 2
dma $PCI "read iova=0x1000 len=13"
[[ $dma == ok* && $dma == *"data 706167652041"* ]] || die "first read did not reach page A"

# 2. the guest remaps VA 0x1000 to page B, and forgets to invalidate
put64 $(( 0x40004000 + 8 )) $(( 0x40011000 | PAGE ))
dma $PCI "read iova=0x1000 len=13"
[[ $dma == *"finding"* ]] || die "no sanitizer finding for the stale TLB entry"
echo "== $dbg/iommu/$SMMU/findings"
cat "$dbg/iommu/$SMMU/findings"

# 3. the invalidation the finding names, as the guest's vSMMU would pass it on (vSID, its ASID)
req "HWPT_INVALIDATE hwpt_id=$viommu cmd=TLBI_NH_VA,asid=1,addr=0x1000,leaf"
dma $PCI "read iova=0x1000 len=13"
[[ $dma == ok* && $dma == *"data 706167652042"* && $dma != *finding* ]] || die "after the TLBI the read should reach page B"

# 4. a write lands in the file
dma $PCI "write iova=0x1008 data=$(printf 'DMA!' | xxd -p)"
xxd -s $(( 0x11000 )) -l 16 "$ram"
echo "== the physical command queue (the kernel's CFGIs on attach, the converted guest TLBI)"
cat "$dbg/iommu/$SMMU/cmdq"
exec 3>&-
