#!/usr/bin/env bash
# Nested translation on Intel VT-d, set up from a shell through iommufs.
#
#   examples/nested-vtd.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# This is what a VMM does to give a guest a virtual VT-d for a passed-through
# PCI device: the host owns the second stage (guest physical -> host
# physical), the guest owns the first stage (its own page tables, whose root
# it wrote into a PASID entry of its virtual VT-d). Every step is one request
# line written to dev/iommu; the reply is one line, "ok key=value..." or
# "err ERRNO message". The script stops (exit 1) at the first "err".
#
# Unlike SMMUv3 (see nested-smmuv3.sh), VT-d has no vIOMMU object in iommufd
# and so no vDEVICE: the nested HWPT is allocated directly on the
# second-stage HWPT.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu

# The device we pass through: 0000:02:00.0, behind the VT-d unit dmar0.
PCI=0000:02:00.0
DMAR=dmar0

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
echo "domains in use on $DMAR before: $(cat "$mnt/sys/class/iommu/$DMAR/intel-iommu/domains_used")"

# 1. Bind the device to our iommufd (VFIO_DEVICE_BIND_IOMMUFD on its VFIO cdev).
#    The device gets an object ID in our context: dev_id.
req "DEVICE_BIND pci=$PCI"
dev=$(get out_devid)

# 2. What can this VT-d unit do? cap_reg and ecap_reg are the raw CAP and ECAP
#    registers; the VMM builds its virtual VT-d's registers from them. Flag 1
#    is erratum 772415: read-only mappings are refused under a nest parent.
req "GET_HW_INFO dev_id=$dev"

# 3. An IOAS: the I/O address space that will be the guest physical address
#    space. Map 256 MiB of "guest RAM" at guest physical 0x40000000. Because
#    of the erratum above, the mapping must be WRITEABLE.
req "IOAS_ALLOC"
ioas=$(get out_ioas_id)
req "IOAS_MAP ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x7f0000000000 length=0x10000000 iova=0x40000000"

# 4. The second-stage domain: a paging HWPT on the IOAS, with NEST_PARENT so
#    that nested (first-stage) HWPTs can sit on top of it.
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
s2=$(get out_hwpt_id)

# 5. Attach the device to the second stage: until the guest programs its own
#    page tables, its DMA is translated by the second stage only. This takes
#    a domain ID on dmar0 (intel-iommu/domains_used goes up).
req "DEVICE_ATTACH dev_id=$dev pt_id=$s2"

# 6. The nested HWPT, on the second-stage HWPT: the guest's first-stage page
#    table root (a guest physical address, 0x40002000) and its address width
#    (48 = 4-level paging; 57 would need 5-level support, CAP.FL5LP).
req "HWPT_ALLOC dev_id=$dev pt_id=$s2 data_type=VTD_S1 data.pgtbl_addr=0x40002000 data.addr_width=48"
nested=$(get out_hwpt_id)

# 7. Attach the device to the nested HWPT: its PASID entry becomes a
#    "nested" entry (guest first-stage pointer + host second stage).
req "DEVICE_ATTACH dev_id=$dev pt_id=$nested"

# What we built, as the debug tree shows it (while fd 3 is still open).
echo
echo "== $debug/objects"
cat "$debug/objects"
echo "== $debug/$s2.hwpt_paging"
cat "$debug/$s2.hwpt_paging"
echo "== $debug/$nested.hwpt_nested"
cat "$debug/$nested.hwpt_nested"
echo "== $mnt/sys/kernel/debug/iommufd/iommu/$DMAR/pasid_table"
cat "$mnt/sys/kernel/debug/iommufd/iommu/$DMAR/pasid_table"
echo "== $mnt/sys/class/iommu/$DMAR/intel-iommu/domains_used"
cat "$mnt/sys/class/iommu/$DMAR/intel-iommu/domains_used"

# Closing the descriptor destroys the context and everything in it, and
# frees the device for the next user. close() returns before the server has
# handled the close, so wait for the context's directory to go (a run right
# after this one binds the same device).
exec 3>&-
until [ ! -e "$debug" ]; do :; done
