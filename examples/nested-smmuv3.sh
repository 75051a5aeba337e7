#!/usr/bin/env bash
# Nested translation on an ARM SMMUv3, set up from a shell through iommufs.
#
#   examples/nested-smmuv3.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# This is what a VMM (QEMU, cloud-hypervisor...) does to give a guest a virtual
# SMMU for a passed-through PCI device: the host owns stage 2 (guest physical ->
# host physical), the guest owns stage 1 (its own page tables, described by the
# Stream Table Entry it writes in its virtual SMMU). Every step is one request
# line written to dev/iommu; the reply is one line, "ok key=value..." or
# "err ERRNO message". The script stops (exit 1) at the first "err".
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu

# The device we pass through: 0000:00:01.0, behind the first SMMUv3
# (smmu3.0x0000000009050000), with physical StreamID 0x8. The guest will know
# it by the virtual StreamID (vSID) 0x10.
PCI=0000:00:01.0
SMMU=smmu3.0x0000000009050000
VSID=0x10

# Open dev/iommu on file descriptor 3, for reading and writing. Like the
# kernel's /dev/iommu, every open() is a new, empty iommufd context; everything
# we create lives until this descriptor is closed.
exec 3<>"$mnt/dev/iommu"

# req LINE (examples/lib.sh): send one request, read its reply into $reply,
# show both; any "err" reply ends the script with status 1. get KEY takes a
# KEY=value from the reply.

# get NAME: the value of NAME=... in the last reply.

# 0. Where is our context in the debug tree? CONTEXT is an iommufs request
#    (not an ioctl) that answers our context's ID and its debugfs directory.
req "CONTEXT"
debug=$mnt$(get path)

# 1. Bind the device to our iommufd (VFIO_DEVICE_BIND_IOMMUFD on its VFIO cdev).
#    The device gets an object ID in our context: dev_id.
req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)

# 2. What can this SMMU do? The VMM copies these ID registers (idr[0..5],
#    iidr, aidr) into the virtual SMMU it shows the guest.
req "GET_HW_INFO dev_id=$dev"

# 3. An IOAS: the I/O address space that will be the guest physical address
#    space. Map 256 MiB of "guest RAM" at guest physical 0x40000000; the
#    user address is where the VMM's memory would be (iommufs records it only).
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
req "IOAS_MAP ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x7f0000000000 length=0x10000000 iova=0x40000000"

# 4. The stage-2 domain: a paging HWPT on the IOAS, with NEST_PARENT so that
#    nested (stage-1) HWPTs can sit on top of it.
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
s2=$(get out_hwpt_id)

# 5. Attach the device to stage 2: until the guest enables its SMMU, its DMA
#    is translated by stage 2 only (guest physical = IOVA).
req "DEVICE_ATTACH dev_id=$dev pt_id=$s2"

# 6. The vIOMMU: the guest's virtual SMMU on this physical SMMU. It takes a
#    VMID of its own on that SMMU and holds the stage-2 HWPT.
req "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2"
viommu=$(get out_viommu_id)

# 7. The vDEVICE: tells the vIOMMU that the guest calls this device vSID 0x10.
#    Invalidations and events are translated between vSID and pSID with it.
req "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=$VSID"
vdevice=$(get out_vdevice_id)

# 8. The nested HWPT: the two STE words the guest wrote for vSID 0x10 in its
#    stream table. Word 0: V=1 (bit 0), Config=5 "stage 1 translate" (bits 3:1),
#    S1ContextPtr=0x40001000 (the guest's context-descriptor table, a guest
#    physical address, bits 51:6). Word 1: all zero (no ATS, default attributes).
#    The kernel checks that the guest set only the bits it may set.
ste0=$(printf '0x%x' $(( 0x40001000 | (5 << 1) | 1 )))
req "HWPT_ALLOC dev_id=$dev pt_id=$viommu data_type=ARM_SMMUV3 data.ste=$ste0,0x0"
nested=$(get out_hwpt_id)

# 9. Attach the device to the nested HWPT: the physical STE becomes a
#    "nested" STE (guest stage 1 + host stage 2, with the vIOMMU's VMID).
req "DEVICE_ATTACH dev_id=$dev pt_id=$nested"

# What we built, as the debug tree shows it (while fd 3 is still open).
echo
echo "== $debug/objects"
cat "$debug/objects"
echo "== $debug/$viommu.viommu"
cat "$debug/$viommu.viommu"
echo "== $debug/$vdevice.vdevice"
cat "$debug/$vdevice.vdevice"
echo "== $debug/$nested.hwpt_nested"
cat "$debug/$nested.hwpt_nested"
echo "== $mnt/sys/kernel/debug/iommufd/iommu/$SMMU/stream_table"
cat "$mnt/sys/kernel/debug/iommufd/iommu/$SMMU/stream_table"

# Closing the descriptor destroys the context and everything in it, and
# frees the device for the next user. close() returns before the server has
# handled the close, so wait for the context's directory to go (a run right
# after this one binds the same device).
exec 3>&-
until [ ! -e "$debug" ]; do :; done
