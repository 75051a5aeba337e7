#!/usr/bin/env bash
# A walk-through of guest TLB/ATC invalidation on a nested ARM SMMUv3, with
# nothing but bash and the files of an iommufs mount:
#
#   1. the nesting setup a VMM makes for one assigned device,
#   2. HWPT_INVALIDATE, the kernel's array form,
#   3. HWPT_INVALIDATE_RING, the ring form of the first uAPI drafts, with
#      the draft's own wrap-around example,
#   4. a software command queue (vCMDQ) that behaves like the guest's SMMU
#      command queue registers, with an illegal command and the recovery,
#
# and after each step, what reached the physical SMMU's command queue.
#
#   usage: examples/ring-invalidation.sh [MOUNT_POINT]     (default ./mount)
#   e.g.:  node dist/src/cli/main.js mount mount --daemon && examples/ring-invalidation.sh
#
# Every step checks its result; the script stops with exit status 1 at the
# first one that does not behave as described (2: no mount there).
set -u
export LC_ALL=C

M=${1:-./mount}
[ -e "$M/dev/iommu" ] || { echo "$M: not an iommufs mount (no dev/iommu); mount one with: iommufs mount $M --daemon" >&2; exit 2; }
DBG=$M/sys/kernel/debug/iommufd
SMMU=smmu3.0x0000000009050000            # the first SMMUv3 of the default machine
CMDQ=$DBG/iommu/$SMMU/cmdq               # its command queue, as the host driver filled it

say() { printf '\n== %s\n' "$*"; }
die() { echo "FAILED: $*" >&2; exit 1; }
# expect ACTUAL WANTED WHAT
expect() { [ "$1" = "$2" ] || die "$3: got '$1', expected '$2'"; }

# dev/iommu speaks one text request per line and answers one line per request,
# on the same descriptor: each open() is a new iommufd context.
exec 3<>"$M/dev/iommu" || die "open $M/dev/iommu"
# req REQUEST...: prints the request and its reply; the reply is in $reply
req() {
  echo "$*" >&3
  IFS= read -r -u 3 reply
  printf '  > %s\n  < %s\n' "$*" "$reply"
}
# field NAME: the value of NAME=... in the last reply
field() { sed -n "s/.* $1=\([^ )]*\).*/\1/p" <<<"$reply"; }
# must REQUEST...: a request that has to succeed
must() { req "$@"; [[ $reply == ok* ]] || die "$1 failed"; }
# show_cmdq N: the last N commands the SMMU received (index, the two words, decoded)
show_cmdq() { echo "  physical queue ($SMMU), last $1:"; tail -n "$1" "$CMDQ" | sed 's/^/    /'; }
issued() { sed -n 's/.*Issued: \([0-9]*\).*/\1/p' "$CMDQ"; }

# ---------------------------------------------------------------------------
say "1. nesting setup: device 0000:00:01.0 (StreamID 0x8) seen by the guest as vSID 0x10"
must CONTEXT; ctx=$(field id)                                  # this context's debug directory is $DBG/$ctx
must DEVICE_BIND pci=0000:00:01.0; dev=$(field out_devid)      # VFIO cdev bind
must IOAS_ALLOC; ioas=$(field out_ioas_id)                     # the guest physical address space
must HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT; s2=$(field out_hwpt_id)   # stage 2
must DEVICE_ATTACH dev_id=$dev pt_id=$s2
must VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2; viommu=$(field out_viommu_id)
must VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=0x10  # vSID 0x10 -> the device
vmid=$(sed -n 's/^vmid: //p' "$DBG/$ctx/$viommu.viommu")
echo "  vIOMMU $viommu owns VMID $vmid on $SMMU; $(grep vsid_map "$DBG/$ctx/$viommu.viommu")"
expect "$vmid" 1 "the vIOMMU's VMID (its nest parent's, as arm_vsmmu_init takes it)"

# ---------------------------------------------------------------------------
say "2. HWPT_INVALIDATE (array form): guest commands go to the vIOMMU, not to a HWPT"
# The guest's commands as it wrote them: a TLBI by VA (its VMID field is ignored)
# and an ATC invalidation for vSID 0x10. The kernel fills in the VMID and swaps
# the vSID for the physical StreamID, then closes the batch with CMD_SYNC.
must HWPT_INVALIDATE hwpt_id=$viommu cmd=TLBI_NH_VA,asid=1,addr=0x1000,leaf cmd=ATC_INV,sid=0x10
expect "$(field entry_num)" 2 "entries handled"
show_cmdq 3
expect "$(tail -n 3 "$CMDQ" | cut -f4 | paste -sd '|')" "TLBI_NH_VA vmid=$vmid asid=1 leaf=1 addr=0x1000|ATC_INV sid=0x8|SYNC cs=2" "what reached the SMMU"

# Some commands are not the guest's to send through the vIOMMU: CFGI_STE (a new
# STE means a new nested HWPT) and CMD_SYNC (the VMM completes syncs itself).
# entry_num says how many were handled: here the failing one is entry 1, and,
# as in the kernel, the entry before it was converted but never issued.
before=$(issued)
req HWPT_INVALIDATE hwpt_id=$viommu cmd=TLBI_NH_ALL cmd=CFGI_STE,sid=0x10
[[ $reply == "err EIO "*"(written back: entry_num=1)" ]] || die "CFGI_STE through the vIOMMU"
expect "$(issued)" "$before" "nothing issued for a refused array"

# ---------------------------------------------------------------------------
say "3. HWPT_INVALIDATE_RING: the draft's wrap-around example"
# 16 entries (4 index bits; bit 4 is the wrap flag). The guest produced entries
# in slots 0xf, 0x0 and 0x1: CONS = 0xf. With PROD = 0x11 (slot 1, wrap flag
# set), entries are consumed from CONS up to, not including, PROD: slots 0xf
# and 0x0. CONS comes back as 0x11 (docs/extensions.md explains why slot 0x1
# is not included, although the draft's comment lists it).
must HWPT_INVALIDATE_RING hwpt_id=$viommu q_index_bits=4 q_cons=0xf q_prod=0x11 cmd=TLBI_NH_ASID,asid=15 cmd=TLBI_NH_ASID,asid=16 cmd=TLBI_NH_ASID,asid=17
expect "$(field q_cons)" 0x11 "CONS after PROD 0x11"
show_cmdq 3
expect "$(tail -n 3 "$CMDQ" | cut -f4 | paste -sd '|')" "TLBI_NH_ASID vmid=$vmid asid=15|TLBI_NH_ASID vmid=$vmid asid=16|SYNC cs=2" "slots 0xf and 0x0"
# PROD 0x12 takes slot 0x1 as well.
must HWPT_INVALIDATE_RING hwpt_id=$viommu q_index_bits=4 q_cons=0xf q_prod=0x12 cmd=TLBI_NH_ASID,asid=15 cmd=TLBI_NH_ASID,asid=16 cmd=TLBI_NH_ASID,asid=17
expect "$(field q_cons)" 0x12 "CONS after PROD 0x12"

# On an error CONS stops on the failing entry and carries the SMMU's error code
# in bits 30:24 (CERROR_ILL = 1): a VMM copies that into the guest's CMDQ_CONS.
req HWPT_INVALIDATE_RING hwpt_id=$viommu q_index_bits=4 q_cons=0xf cmd=TLBI_NH_ALL cmd=CFGI_STE,sid=0x10 cmd=TLBI_NH_ALL
cons=$(field q_cons)
expect "$cons" 0x1000010 "CONS on slot 0x0 (wrap flag set) with ERR"
echo "  CONS index $((cons & 0x1f)) (slot $((cons & 0xf)), wrap $(((cons >> 4) & 1))), ERR $(((cons >> 24) & 0x7f)) = CERROR_ILL"

# ---------------------------------------------------------------------------
say "4. a vCMDQ: the guest's command queue as register files"
must VCMDQ_ALLOC viommu_id=$viommu log2size=3; q=$(field out_vcmdq_id)
Q=$DBG/$ctx/$q.vcmdq
echo "  $Q: $(ls "$Q" | tr '\n' ' ')"
# The queue memory is the file `ring` (8 entries of 16 bytes): write commands
# there as raw little-endian bytes, then ring the doorbell by writing PROD.
le64() { local i; for ((i = 0; i < 8; i++)); do printf '\\x%02x' $((($1 >> (8 * i)) & 0xff)); done; }
put() { printf "$(le64 "$2")$(le64 0)" | dd of="$Q/ring" bs=16 seek="$1" conv=notrunc status=none || die "dd into slot $1"; }
put 0 $(((0x10 << 32) | 0x40))   # ATC_INV, vSID 0x10
put 1 $(((0x10 << 32) | 0x03))   # CFGI_STE, vSID 0x10: illegal here
put 2 $(((3 << 48) | 0x11))      # TLBI_NH_ASID, asid 3
before=$(issued)
echo 3 >"$Q/prod"
echo "  after PROD=3: CONS $(cat "$Q/cons"), GERROR $(cat "$Q/gerror"), GERRORN $(cat "$Q/gerrorn")"
expect "$(cat "$Q/cons")" 0x01000001 "the queue halts on slot 1 with CERROR_ILL"
expect "$(cat "$Q/gerror")" 0x00000001 "GERROR.CMDQ_ERR toggled"
sed 's/^/    /' "$Q/entries"
show_cmdq 2
expect "$(issued)" $((before + 2)) "only slot 0 (and a CMD_SYNC) went out"

# Recovery, as the Linux SMMUv3 driver does it: overwrite the illegal command
# with a CMD_SYNC, then acknowledge the error by writing GERROR's value to
# GERRORN. The queue resumes at CONS.
printf '\x46\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0' | dd of="$Q/ring" bs=16 seek=1 conv=notrunc status=none
cat "$Q/gerror" >"$Q/gerrorn"
echo "  after the fix and GERRORN: CONS $(cat "$Q/cons"), GERRORN $(cat "$Q/gerrorn")"
expect "$(cat "$Q/cons")" 0x00000003 "resumed up to PROD"
show_cmdq 2
expect "$(tail -n 2 "$CMDQ" | cut -f4 | paste -sd '|')" "TLBI_NH_ASID vmid=$vmid asid=3|SYNC cs=2" "slot 2 after the resume"

# The `cmd` file does the encoding for you: one symbolic command per line,
# written at PROD, doorbell included.
echo "ATC_INV sid=0x10 size=1" >"$Q/cmd"
expect "$(cat "$Q/cons")" 0x00000004 "CONS after the cmd helper"

say "the whole physical queue"
cat "$CMDQ"
echo
echo "all steps behaved as described"

# Close the context and wait for it to go (the server handles a close after
# close() returns), so that a run right after this one finds the device free.
exec 3>&-
until [ ! -e "$DBG/$ctx" ]; do :; done
