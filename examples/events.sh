#!/usr/bin/env bash
# Faults reach userspace: the SMMUv3 event queue, a vIOMMU's vEVENTQ, VT-d fault records.
#
#   examples/events.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# A VMM gives a guest a vSMMU: a nested domain on a vIOMMU, the device known
# to the guest by virtual StreamID 0x42. It allocates the vIOMMU's vEVENTQ
# (the reply names the queue's file) and waits for events. The device then
# faults through the DMA port: the SMMU writes an event record into its
# event queue, the host driver forwards it to the vEVENTQ with the StreamID
# replaced by 0x42, and the queue's file becomes readable (poll). We read it
# decoded (events) and raw (queue), overflow a depth-2 queue to see the
# LOST_EVENTS header, mask the driver's interrupt to watch the physical
# queue fill, and look at a VT-d unit's fault-recording registers.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu
PCI=0000:00:01.0
SMMU=smmu3.0x0000000009050000
dbg=$mnt/sys/kernel/debug/iommufd

exec 3<>"$mnt/dev/iommu"
# dma PCI REQUEST: one request on the device's DMA port; its first line is shown
dma() {
  exec 4<>"$dbg/dma/$1"
  echo "$2" >&4
  local out
  out=$(cat <&4)
  exec 4>&-
  printf '$ %s\n%s\n' "$2" "${out%%$'\n'*}"
}
# ready FD: poll() on the descriptor, as bash's read -t 0 does it
ready() { if read -t 0 -u "$1"; then echo "poll: readable"; else echo "poll: nothing waiting"; fi; }

req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
s2=$(get out_hwpt_id)
req "DEVICE_ATTACH dev_id=$dev pt_id=$s2"
req "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2"
viommu=$(get out_viommu_id)
req "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=0x42"
# the guest's STE: V, Config = S1 translate, CD at IPA 0x40000000, S1CDMax = 0 (no substreams)
req "HWPT_ALLOC dev_id=$dev pt_id=$viommu data_type=ARM_SMMUV3 data.ste=0x4000000b,0x0"
nested=$(get out_hwpt_id)
req "DEVICE_ATTACH dev_id=$dev pt_id=$nested"

# 1. the vEVENTQ: its reply names the file a descriptor would be
req "VEVENTQ_ALLOC viommu_id=$viommu type=ARM_SMMUV3 veventq_depth=2"
q=$mnt/$(get path)
exec 5<"$q"
ready 5

# 2. the device uses a PASID, which the guest's STE does not allow: C_BAD_SUBSTREAMID
dma $PCI "read iova=0x1000 len=4 pasid=1"
ready 5
echo "== $(dirname "$q")/events (decoded; reading it takes nothing)"
cat "$(dirname "$q")/events"
echo "== the record as read(2) gets it: 8-byte header (flags, sequence), then evt[0..3], StreamID 0x8 -> vSID 0x42"
xxd -g 4 <&5
ready 5

# 3. overflow: depth 2, four faults: two events, then one LOST_EVENTS header (sequence 4: 2 and 3 were lost before it)
for i in 1 2 3 4; do dma $PCI "read iova=0x1000 len=4 pasid=1" >/dev/null; done
echo "== events after four more faults"
cat "$(dirname "$q")/events"
grep -q 'seq=4 LOST_EVENTS' "$(dirname "$q")/events" || die "no LOST_EVENTS header"
# a read too small for one record takes nothing (the kernel returns 0), a large one takes all
echo "a 39-byte read returns $(dd bs=39 count=1 status=none <&5 | wc -c) bytes"
echo "a 4096-byte read returns $(dd bs=4096 count=1 status=none <&5 | wc -c) bytes (40 + 40 + 8)"
exec 5<&-

# 4. the physical event queue: with the driver's interrupt masked, records stay between CONS and PROD
echo masked > "$dbg/iommu/$SMMU/eventq_irq"
dma $PCI "read iova=0x1000 len=4 pasid=1"
echo "== $dbg/iommu/$SMMU/eventq"
cat "$dbg/iommu/$SMMU/eventq"
echo enabled > "$dbg/iommu/$SMMU/eventq_irq"
echo "== what the driver did with each record (trace)"
grep -E 'eventq: ' "$dbg/trace" | tail -n 3

# 5. VT-d: a device with no domain faults; its fault record waits in FRCD0 while the interrupt is masked
VTD_PCI=0000:02:00.0
req "DEVICE_BIND pci=$VTD_PCI"
echo masked > "$dbg/iommu/dmar0/fault_irq"
dma $VTD_PCI "read iova=0x2000 len=4"
echo "== $dbg/iommu/dmar0/fault_regs"
head -n 5 "$dbg/iommu/dmar0/fault_regs"
echo "fault_status: $(cat "$dbg/iommu/dmar0/fault_status")"
echo enabled > "$dbg/iommu/dmar0/fault_irq"
grep -E 'dmar_fault: ' "$dbg/trace" | tail -n 2
exec 3>&-
