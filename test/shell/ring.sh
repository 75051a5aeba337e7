#!/usr/bin/env bash
# Drives a vIOMMU's software command queue (vCMDQ) with plain shell tools:
# raw little-endian commands written into `ring` with printf + dd, the
# doorbell rung by writing `prod`, and the results read from `cons`,
# `gerror` and the physical SMMU's queue dump.
#   usage: ring.sh MOUNT_POINT
# Prints one "ok ..." line per check; on the first failure prints "not ok ..."
# with what was seen and exits 1 (2 for bad usage).
. "$(dirname "$0")/lib.sh"
# has TEXT REGEX DESCRIPTION
has() { if grep -Eq -- "$2" <<<"$1"; then ok "$3"; else fail "$3: no line matching /$2/ in:"$'\n'"$1"; fi; }

# one request on the dev/iommu descriptor (fd 3), the reply in $reply
req() {
  echo "$*" >&3 || fail "write $1"
  IFS= read -r -u 3 reply || fail "no reply to $1"
}
# req_ok REQUEST... ; the value of out field $FIELD of the reply goes to $out
req_ok() {
  req "$@"
  case $reply in ok*) ;; *) fail "$1: $reply" ;; esac
  out=$(sed -n "s/.* ${FIELD:-none}=\([^ ]*\).*/\1/p" <<<"$reply")
}

# le64 VALUE: the 8 bytes of VALUE, little endian, as printf escapes
le64() {
  local v=$1 i s=''
  for ((i = 0; i < 8; i++)); do s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 0xff))); done
  printf '%s' "$s"
}
# put SLOT WORD0 [WORD1]: one 16-byte command into ring slot SLOT
put() {
  printf "$(le64 "$2")$(le64 "${3:-0}")" | dd of="$Q/ring" bs=16 seek="$1" conv=notrunc status=none || fail "dd slot $1"
}
# doorbell VALUE: write PROD
doorbell() { echo "$1" >"$Q/prod" || fail "write $1 to prod"; }
# at K: the physical queue slot of the K-th command issued since the start (the queue has 256 entries)
at() { echo $(((before + $1) % 256)); }
issued() { sed -n 's/.*Issued: \([0-9]*\).*/\1/p' "$CMDQ"; }

SMMU=smmu3.0x0000000009050000
CMDQ=$M/sys/kernel/debug/iommufd/iommu/$SMMU/cmdq
D=$M/sys/kernel/debug/iommufd

# ---- setup: a vIOMMU on 0000:00:01.0 (StreamID 0x8) with vSID 0x10, and a vCMDQ of 8 entries ----
exec 3<>"$M/dev/iommu" || fail "open dev/iommu"
FIELD=id req_ok CONTEXT; ctx=$out
FIELD=out_devid req_ok DEVICE_BIND pci=0000:00:01.0; dev=$out
FIELD=out_ioas_id req_ok IOAS_ALLOC; ioas=$out
FIELD=out_hwpt_id req_ok HWPT_ALLOC dev_id="$dev" pt_id="$ioas" flags=NEST_PARENT; parent=$out
req_ok DEVICE_ATTACH dev_id="$dev" pt_id="$parent"
FIELD=out_viommu_id req_ok VIOMMU_ALLOC type=ARM_SMMUV3 dev_id="$dev" hwpt_id="$parent"; viommu=$out
FIELD=out_vdevice_id req_ok VDEVICE_ALLOC viommu_id="$viommu" dev_id="$dev" virt_id=0x10
FIELD=out_vcmdq_id req_ok VCMDQ_ALLOC viommu_id="$viommu" log2size=3; vcmdq=$out
ok "context $ctx: vIOMMU $viommu, vCMDQ $vcmdq"
vmid=$(sed -n 's/^vmid: //p' "$D/$ctx/$viommu.viommu")
same "$vmid" 1 "the vIOMMU's VMID (its nest parent's)"
same "$(sed -n 's/^vsid_map: //p' "$D/$ctx/$viommu.viommu")" '0x10->0x8' "vsid_map"

Q=$D/$ctx/$vcmdq.vcmdq
same "$(ls "$Q" | tr '\n' ' ')" "cmd cons entries gerror gerrorn info prod ring " "ls $ctx/$vcmdq.vcmdq"
same "$(stat -c %s "$Q/ring")" 128 "ring is 8 * 16 bytes"
same "$(cat "$Q/cons")" 0x00000000 "cons starts at 0"
before=$(issued)

# ---- a batch: TLBI_NH_ASID asid=5 (0x11) and ATC_INV for vSID 0x10 (0x40), then the doorbell ----
put 0 $(((5 << 48) | 0x11))
put 1 $(((0x10 << 32) | 0x40))
same "$(od -An -tx1 -N32 "$Q/ring" | tr -s ' \n' ' ')" " 11 00 00 00 00 00 05 00 00 00 00 00 00 00 00 00 40 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 " "ring holds the raw commands"
same "$(issued)" "$before" "nothing consumed before the doorbell"
doorbell 2
same "$(cat "$Q/cons")" 0x00000002 "cons follows prod"
same "$(issued)" $((before + 3)) "two commands and a CMD_SYNC reached the SMMU"
q=$(cat "$CMDQ")
has "$q" "^ +$(at 1)"$'\t'"0000000800000040"$'\t'"0000000000000000"$'\t'"ATC_INV sid=0x8\$" "cmdq: ATC_INV left with the physical StreamID 0x8"
has "$q" "^ +$(at 0)"$'\t'"0005000${vmid}00000011"$'\t'".*TLBI_NH_ASID vmid=$vmid asid=5\$" "cmdq: TLBI_NH_ASID carries VMID $vmid"
has "$q" "^ +$(at 2)"$'\t'"0000000000002046"$'\t'".*SYNC cs=2\$" "cmdq: the batch is closed by CMD_SYNC"
has "$(cat "$Q/entries")" "^ +1  0000001000000040 0000000000000000  consumed  ATC_INV sid=0x10\$" "entries: slot 1 consumed, as the guest wrote it"

# ---- an illegal command in the middle of a batch: CFGI_STE (0x03) in slot 3 ----
put 2 0x10                       # TLBI_NH_ALL
put 3 $(((0x10 << 32) | 0x03))   # CFGI_STE sid=0x10: not accepted through a vIOMMU
put 4 $(((6 << 48) | 0x11))      # TLBI_NH_ASID asid=6
doorbell 5
cons=$(cat "$Q/cons")
same "$cons" 0x01000003 "cons stops on the illegal command"
same "$(((cons >> 24) & 0x7f))" 1 "CONS.ERR is CERROR_ILL"
same "$(cat "$Q/gerror")" 0x00000001 "gerror: CMDQ_ERR toggled"
same "$(cat "$Q/gerrorn")" 0x00000000 "gerrorn not yet acknowledged"
same "$(issued)" $((before + 5)) "only the command before it (and a CMD_SYNC) was issued"
q=$(cat "$CMDQ")
has "$q" "^ +$(at 3)"$'\t'".*TLBI_NH_ALL vmid=$vmid\$" "cmdq: slot 2 went out"
has "$(tail -n 1 <<<"$q")" "^ +$(at 4)"$'\t'".*SYNC cs=2\$" "cmdq: the batch's CMD_SYNC is the last command; slot 4 did not go out"
e=$(cat "$Q/entries")
has "$e" "^ +3  0000001000000003 0000000000000000  ERROR +CFGI_STE sid=0x10\$" "entries: slot 3 is the error"
has "$e" "^ +4  .*pending +TLBI_NH_ASID asid=6\$" "entries: slot 4 is pending"
has "$(cat "$Q/info")" "^last_error: CERROR_ILL at index 3" "info: last_error"

# ---- halted: the doorbell consumes nothing ----
put 5 $(((7 << 48) | 0x11))      # TLBI_NH_ASID asid=7
doorbell 6
same "$(cat "$Q/cons")" 0x01000003 "halted: cons does not move"
same "$(issued)" $((before + 5)) "halted: nothing issued"

# ---- the fix: overwrite the failing entry with CMD_SYNC, acknowledge through GERRORN ----
put 3 0x46
cat "$Q/gerror" >"$Q/gerrorn" || fail "write gerrorn"
same "$(cat "$Q/gerrorn")" 0x00000001 "gerrorn matches gerror"
same "$(cat "$Q/cons")" 0x00000006 "resumed: cons reaches prod, ERR cleared"
same "$(issued)" $((before + 8)) "resumed: slots 4 and 5 and a CMD_SYNC were issued"
q=$(cat "$CMDQ")
has "$q" "^ +$(at 5)"$'\t'".*TLBI_NH_ASID vmid=$vmid asid=6\$" "cmdq: slot 4 after the resume"
has "$q" "^ +$(at 6)"$'\t'".*TLBI_NH_ASID vmid=$vmid asid=7\$" "cmdq: slot 5 after the resume"
has "$(cat "$Q/info")" "^halted: 0\$" "info: not halted"
has "$(cat "$D/trace")" "vcmdq $vcmdq halted: CERROR_ILL at index 3" "trace: the halt"

# ---- across the end of the ring: slots 6, 7, then 0 with the wrap flag ----
put 6 $(((8 << 48) | 0x11))
put 7 $(((9 << 48) | 0x11))
put 0 $(((10 << 48) | 0x11))
doorbell 0x9
same "$(cat "$Q/cons")" 0x00000009 "cons wraps: index 1, wrap flag set"
has "$(cat "$CMDQ")" "TLBI_NH_ASID vmid=$vmid asid=10\$" "cmdq: slot 0 of the second lap"

# ---- the cmd helper ----
echo "ATC_INV sid=0x10 size=1" >"$Q/cmd" || fail "write cmd"
same "$(cat "$Q/prod") $(cat "$Q/cons")" "0x0000000a 0x0000000a" "cmd appends at prod and rings"

# ---- refused writes ----
# PROD bits above the wrap flag are RES0 (SMMU_CMDQ_PROD): 0x2a is PROD 0xa, which is CONS: nothing to consume
echo 0x2a >"$Q/prod" || fail "prod 0x2a (bit 5 is RES0) refused"
same "$(cat "$Q/prod")" 0x0000000a "prod 0x2a is PROD 0xa: bits above the wrap flag have no effect"
err=$(dd if=/dev/zero of="$Q/ring" bs=16 seek=8 count=1 conv=notrunc status=none 2>&1) && fail "a write past the end of ring succeeded"
has "$err" "File too large" "writing past the end of ring: EFBIG"
same "$(cat "$Q/cons")" 0x0000000a "cons unchanged by those writes"

# ---- closing dev/iommu destroys the context and its queue ----
exec 3>&-
gone "$D/$ctx" && ok "the context directory is gone after close" || fail "$D/$ctx still exists 20 s after close"

echo "# $n checks passed"
