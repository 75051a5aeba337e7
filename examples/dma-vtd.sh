#!/usr/bin/env bash
# DMA through a nested Intel VT-d unit, with the guest's first-stage tables built by printf in a file.
#
#   examples/dma-vtd.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# A VMM gives a guest a virtual VT-d; the guest writes its first-stage
# (x86-64, 4-level) page tables into its RAM. Here the guest RAM is a plain
# file: we write the tables with printf, map the file into the IOAS with
# IOAS_MAP_FILE path= (the nest parent's second stage), and hand the table's
# address to a nested HWPT (PGTT=3). The device does DMA through its port
# (sys/kernel/debug/iommufd/dma/<pci>); every first-stage table read goes
# through the second stage. Then we change a page-table entry WITHOUT
# invalidating: the next DMA still uses the IOTLB, and the sanitizer reports
# it, naming the P_IOTLB descriptor that was missing. We send the
# invalidation the guest's driver would (HWPT_INVALIDATE), and the DMA
# reaches the new page. Last, the guest frees a whole page table but
# invalidates leaves only: the unit's paging-structure cache still points at
# the old table, and the sanitizer names the IH = 0 invalidation it needed.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu
PCI=0000:02:00.0
DMAR=dmar0
dbg=$mnt/sys/kernel/debug/iommufd

ram=$(mktemp /tmp/guest-ram.XXXXXX)
trap 'rm -f "$ram"' EXIT
truncate -s 2M "$ram"

ram_base=0x40000000   # the guest RAM file holds IPA/GPA 0x40000000 up (put64, examples/lib.sh)

# The guest's first stage: PML4 at GPA 0x40000000, PDPT, PD and PT after it;
# VA 0x1000 -> page A at GPA 0x40010000. Page B at 0x40011000 waits for later.
TABLE=$(( 0x1 | 0x2 | 0x4 | 0x20 ))          # P RW U/S A, as Linux writes table entries
LEAF=$(( TABLE | 0x40 ))                      # and D, for a writable leaf
put64 0x40000000 $(( 0x40001000 | TABLE ))   # PML4[0] -> PDPT
put64 0x40001000 $(( 0x40002000 | TABLE ))   # PDPT[0] -> PD
put64 0x40002000 $(( 0x40003000 | TABLE ))   # PD[0]   -> PT
put64 $(( 0x40003000 + 8 )) $(( 0x40010000 | LEAF ))   # PT[1]: VA 0x1000 -> page A
printf 'page A: hello' | dd of="$ram" bs=1 seek=$(( 0x10000 )) conv=notrunc status=none
printf 'page B: world' | dd of="$ram" bs=1 seek=$(( 0x11000 )) conv=notrunc status=none

exec 3<>"$mnt/dev/iommu"

req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
# the guest RAM: the file, at guest physical 0x40000000 (the second stage)
req "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x200000 iova=0x40000000"
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
s2=$(get out_hwpt_id)
# the guest's first stage: its table root (a GPA) and width
req "HWPT_ALLOC dev_id=$dev pt_id=$s2 data_type=VTD_S1 data.pgtbl_addr=0x40000000 data.addr_width=48"
nested=$(get out_hwpt_id)
req "DEVICE_ATTACH dev_id=$dev pt_id=$nested"

# 1. DMA: root, context, PASID entry (PGTT=3), then each first-stage level read through the second stage
dma $PCI "read iova=0x1000 len=13"
[[ $dma == ok* && $dma == *"data 706167652041"* ]] || die "first read did not reach page A"

# 2. the guest remaps VA 0x1000 to page B, and forgets to invalidate
put64 $(( 0x40003000 + 8 )) $(( 0x40011000 | LEAF ))
dma $PCI "read iova=0x1000 len=13"
[[ $dma == *"finding"*"fix: P_IOTLB"* ]] || die "no sanitizer finding for the stale IOTLB entry"
echo "== $dbg/iommu/$DMAR/findings"
cat "$dbg/iommu/$DMAR/findings"

# 3. the guest's invalidation: {addr 0x1000, npages 1, flags LEAF}; the kernel queues P_IOTLB with the nested DID
req "HWPT_INVALIDATE hwpt_id=$nested data_type=VTD_S1 entry_len=24 entry_num=1 data=0x1000,0x1,0x1"
dma $PCI "read iova=0x1000 len=13"
[[ $dma == ok* && $dma == *"data 706167652042"* && $dma != *finding* ]] || die "after the invalidation the read should reach page B"

# 4. a write lands in the file; a write through a read-only leaf faults with the fault record
dma $PCI "write iova=0x1008 data=$(printf 'DMA!' | xxd -p)"
xxd -s $(( 0x11000 )) -l 16 "$ram"
put64 $(( 0x40003000 + 16 )) $(( 0x40012000 | 0x1 | 0x4 | 0x20 ))   # PT[2]: VA 0x2000, read-only
dma $PCI "write iova=0x2000 data=00"
[[ $dma == "fault FR=0x85"* ]] || die "a write to a read-only page should fault 0x85"

# 5. the guest takes its whole page table away (PD[0] cleared) but invalidates leaves only (LEAF: IH = 1).
#    The IOTLB entry goes; the paging-structure cache still points at the old table, so the walk resumes
#    there and the DMA still reaches page B: the sanitizer names the pointer and the IH = 0 invalidation.
put64 0x40002000 0
req "HWPT_INVALIDATE hwpt_id=$nested data_type=VTD_S1 entry_len=24 entry_num=1 data=0x1000,0x1,0x1"
dma $PCI "read iova=0x1000 len=13"
[[ $dma == ok* && $dma == *"finding"*"PDE"*"ih=0"* ]] || die "no sanitizer finding for the stale paging-structure entry"
echo "== $dbg/iommu/$DMAR/walk_cache"
cat "$dbg/iommu/$DMAR/walk_cache"
# 6. the invalidation a freed table needs: flags 0 (IH = 0) drops the table pointers too; now the DMA faults
req "HWPT_INVALIDATE hwpt_id=$nested data_type=VTD_S1 entry_len=24 entry_num=1 data=0x1000,0x1,0x0"
dma $PCI "read iova=0x1000 len=13"
[[ $dma == "fault FR=0x71"* && $dma != *finding* ]] || die "after the IH = 0 invalidation the read should fault 0x71"
echo "== the invalidation queue (the converted guest invalidations, each followed by a wait descriptor)"
cat "$dbg/iommu/$DMAR/invalidation_queue"
exec 3>&-
