#!/usr/bin/env bash
# Conformance of DMA translation, caches, invalidation and fault records
# against the architectures (SMMUv3, VT-d), checked from outside as a vIOMMU
# writer would: guest page tables written with printf into a file mapped as
# guest RAM, DMA through the device's port, invalidations through
# HWPT_INVALIDATE (array form) and a vCMDQ, and the replies, event and fault
# records, dirty bitmaps and queue dumps read back.
#   usage: conform-xlate.sh MOUNT_POINT
# Prints "NAME: ok" or "NAME: FAIL got X want Y" for each check; exits 1 if
# any failed (2 for bad usage or a setup step that failed).
. "$(dirname "$0")/conform-lib.sh"
TMP=$(mktemp -d /tmp/conform-xlate.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

# rd PCI IOVA [ATTRS]: a 4-byte read; prints the data, or the status when it faulted
rd() { dma "$1" "read iova=$2 len=4 ${3:-}"; local s; s=$(status); if [ "$s" = ok ]; then data; else echo "$s"; fi; }

# put64 ADDR VALUE into the guest RAM file $ram (offset 0 = guest physical $ram_base)
put64() {
  local off=$(( $1 - ram_base )) v=$2 bytes='' i
  for i in 0 1 2 3 4 5 6 7; do bytes+=$(printf '\\x%02x' $(( (v >> (8 * i)) & 0xff ))); done
  printf "$bytes" | dd of="$ram" bs=1 seek=$off conv=notrunc status=none
}
# mark ADDR: a 4-byte marker "Pnnn" at ADDR naming its page (ADDR - ram_base) / 4K, as %03x
mark() { printf 'P%03x' $(( ($1 - ram_base) >> 12 )) | dd of="$ram" bs=1 seek=$(( $1 - ram_base )) conv=notrunc status=none; }
name() { printf 'P%03x' $(( ($1 - ram_base) >> 12 )); }

# nest_parent PCI [FLAGS]: a new context on fd 3 with PCI bound, an IOAS mapping $ram at 0x40000000 and $ro
# at 0x40800000 (FLAGS, READABLE by default), and a nest parent over it: $dev, $ioas, $s2
nest_parent() {
  exec 3<>"$M/dev/iommu" || die "open dev/iommu"
  req_ok "DEVICE_BIND pci=$1"; dev=$(get out_devid)
  req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
  req_ok "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0 length=0x800000 iova=0x40000000"
  req_ok "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|${2:-READABLE} path=$ro start=0 length=0x1000 iova=0x40800000"
  req_ok "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"; s2=$(get out_hwpt_id)
}
# dirty_domain PCI: a new context on fd 3 with PCI attached to a DIRTY_TRACKING domain whose IOAS maps
# $buf at 0x100000: $dev, $ioas, $hwpt
dirty_domain() {
  exec 3<>"$M/dev/iommu" || die "open dev/iommu"
  req_ok "DEVICE_BIND pci=$1"; dev=$(get out_devid)
  req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
  req_ok "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=DIRTY_TRACKING"; hwpt=$(get out_hwpt_id)
  req_ok "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$buf start=0 length=0x4000 iova=0x100000"
  req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$hwpt"
}

# ===================================================================================================
# SMMUv3: 0000:00:01.0 (StreamID 0x8) on smmu3.0x0000000009050000, nested under a vIOMMU (vSID 0x10)
# ===================================================================================================
PCI=0000:00:01.0
S=$D/iommu/smmu3.0x0000000009050000
ram=$TMP/smmu-ram; truncate -s 8M "$ram"; ram_base=0x40000000
ro=$TMP/smmu-ro; truncate -s 4K "$ro"; printf 'Q000' | dd of="$ro" conv=notrunc status=none

# Stage-1 descriptors: table, 4K page and block as Linux writes them (nG AF SH=inner AP[1]=EL0 AttrIndx=1)
T=3; PG=$(( 0x800 | 0x400 | 0x300 | 0x40 | 0x4 | 3 )); BLK=$(( PG & ~2 ))
NG=0x800 AF=0x400 APRO=0x80 APUSER=0x40 PXN=$(( 1 << 53 )) UXN=$(( 1 << 54 ))
CD_ASID1=$(( 16 | (1 << 30) | (1 << 31) | (5 << 32) | (1 << 41) | (1 << 45) | (1 << 46) ))  # T0SZ=16 EPD1 V IPS=48 AA64 R A
cd() { put64 $1 $(( CD_ASID1 | ($2 << 48) )); put64 $(( $1 + 8 )) $3; put64 $(( $1 + 24 )) 0xf404ff44; }
cd 0x40000000 1 0x40001000                           # CD 0: ASID 1, TTB0 = L0 below
put64 0x40001000 $(( 0x40002000 | T ))               # L0[0]
put64 0x40002000 $(( 0x40003000 | T ))               # L1[0] -> L2
put64 0x40002008 $(( 0x40000000 | BLK ))             # L1[1]: VA 0x40000000, 1G block -> IPA 0x40000000
put64 0x40003000 $(( 0x40004000 | T ))               # L2[0] -> L3
put64 0x40003008 $(( 0x40200000 | BLK ))             # L2[1]: VA 0x200000, 2M block -> IPA 0x40200000
put64 0x40003010 $(( 0x40900000 | T ))               # L2[2]: VA 0x400000, table at an IPA stage 2 does not map
put64 0x40003018 $(( 0x40005000 | T ))               # L2[3]: VA 0x600000 -> L3' at 0x40005000
put64 0x40003020 $(( 0x40400000 | BLK ))             # L2[4]: VA 0x800000, 2M block -> IPA 0x40400000
l3() { put64 $(( 0x40004000 + 8 * $1 )) $2; }        # L3 index (VA >> 12) of VA 0..2M
l3 1 $(( 0x40010000 | PG ))                          # 0x1000 read/write
l3 2 $(( 0x40011000 | PG | APRO ))                   # 0x2000 read-only
l3 3 $(( 0x40012000 | (PG & ~APUSER) ))              # 0x3000 privileged only
l3 4 $(( 0x40013000 | PG | UXN ))                    # 0x4000 unprivileged execute never
l3 5 $(( 0x40014000 | PG | PXN ))                    # 0x5000 privileged execute never
l3 6 $(( 0x40015000 | (PG & ~AF) ))                  # 0x6000 AF = 0
l3 7 0                                               # 0x7000 invalid
l3 8 $(( 0x40017000 | (PG & ~NG) ))                  # 0x8000 global
for i in 9 10 11 12 13 14; do l3 $i $(( (0x4000f000 + i * 0x1000) | PG )); done   # 0x9000-0xe000 -> 0x40018000-0x4001d000
l3 16 $(( 0x40a00000 | PG ))                         # 0x10000 -> an IPA stage 2 does not map
l3 17 $(( 0x40800000 | PG ))                         # 0x11000 -> the read-only second file
put64 0x40005000 $(( 0x40030000 | PG ))              # L3'[0]: VA 0x600000
put64 0x40006000 $(( 0x40031000 | PG ))              # L3''[0], linked later
# a second tree for ASID 2: VA 0x1000 -> 0x40040000
put64 0x40007000 $(( 0x40008000 | T )); put64 0x40008000 $(( 0x40009000 | T )); put64 0x40009000 $(( 0x4000a000 | T ))
put64 0x4000a008 $(( 0x40040000 | PG ))
for a in 0x40010000 0x40011000 0x40012000 0x40013000 0x40014000 0x40015000 0x40017000 0x40018000 0x40019000 0x4001a000 \
  0x4001b000 0x4001c000 0x4001d000 0x40020000 0x40021000 0x40022000 0x40023000 0x40024000 0x40025000 0x40026000 0x40027000 \
  0x40028000 0x40029000 0x4002a000 0x40030000 0x40031000 0x40040000 0x40201000 0x40400000 0x40600000; do mark $a; done

nest_parent $PCI
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$s2"

# ---- stage 2 alone (the nest parent attached directly): IPA = IOVA ----
ste=$(sed -n 's/^  ste=//p' "$S/stream_table" | head -1)
IFS=, read -r _ w1 w2 w3 _ <<<"$ste"
expect smmu.s2.ste.dw2 "$w2" 0x044d359000000001     # VMID 1, S2T0SZ 16, SL0 2 (L0), WBWA ISH, TG 4K, PS 48, AA64, PTW, R
expect smmu.s2.ste.s2fwb $(( (w1 >> 25) & 1 )) 1     # IDR3.FWB: a nest parent's STE has S2FWB (arm_smmu_make_s2_domain_ste)
dma $PCI "read iova=0x40010000 len=4"
expect smmu.s2.read "$(data)" P010
expect smmu.s2.levels "$(sed -n 's/^walk s2 level=\([0-9]\).*/\1/p' <<<"$dma" | tr -d '\n')" 012   # 2M block at level 2
leaf=$(sed -n 's/^walk s2 level=2 .*desc=\(0x[0-9a-f]*\).*/\1/p' <<<"$dma")
expect smmu.s2.leaf.type $(( leaf & 3 )) 1                 # block
expect smmu.s2.leaf.s2ap $(( (leaf >> 6) & 3 )) 3          # read + write
expect smmu.s2.leaf.af $(( (leaf >> 10) & 1 )) 1
expect smmu.s2.leaf.xn $(( (leaf >> 53) & 3 )) 0           # iommufd maps without IOMMU_NOEXEC
expect smmu.s2.leaf.memattr $(( (leaf >> 2) & 15 )) 6      # FWB: Normal WB is MemAttr 0b0110
dma $PCI "read iova=0x40010000 len=4 priv exec"
expect smmu.s2.exec "$(status)" ok
dma $PCI "write iova=0x40800000 data=00"
expect smmu.s2.ro.write "$(status)" "fault F_PERMISSION(0x13)"
expect smmu.s2.ro.write.event "$(evt)" "0000000800000013 0000028000000000 0000000040800000 0000000040800000"
dma $PCI "read iova=0x40c00000 len=4"
expect smmu.s2.unmapped.event "$(evt)" "0000000800000010 0000028800000000 0000000040c00000 0000000040c00000"

# ---- nested: the guest's STE (S1 translate, CD at IPA 0x40000000) under a vIOMMU ----
req_ok "VIOMMU_ALLOC type=ARM_SMMUV3 dev_id=$dev hwpt_id=$s2"; viommu=$(get out_viommu_id)
req_ok "VDEVICE_ALLOC viommu_id=$viommu dev_id=$dev virt_id=0x10"
req_ok "VEVENTQ_ALLOC viommu_id=$viommu type=ARM_SMMUV3 veventq_depth=64"; veventq=$(get out_veventq_id)
req_ok "CONTEXT"; ctx=$(get id)
# vste CDPTR [DW0-EXTRA [DW1]]: a nested HWPT with that guest STE, attached (replacing the last)
vste() {
  req_ok "HWPT_ALLOC dev_id=$dev pt_id=$viommu data_type=ARM_SMMUV3 data.ste=$(printf '0x%x' $(( $1 | (5 << 1) | 1 | ${2:-0} ))),${3:-0}"
  req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$(get out_hwpt_id)"
}
inv() { req "HWPT_INVALIDATE hwpt_id=$viommu cmd=$1"; [[ $reply == ok* ]] || die "$1: $reply"; }
vste 0x40000000
vevents() { grep -c '^seq=' "$D/$ctx/$veventq.veventq/events"; }

dma $PCI "read iova=0x1000 len=4"
expect smmu.s1.page "$(data)" P010
expect smmu.s1.levels "$(sed -n 's/^walk s1 level=\([0-9]\).*/\1/p' <<<"$dma" | tr -d '\n')" 0123
expect smmu.s1.cd.via.s2 "$(grep -A1 '^walk cd ' <<<"$dma" | sed -n 2p | cut -d' ' -f2)" s2   # the CD's IPA is translated by stage 2
# stage 2 for the CD, 4 tables and the output; the CD's IPA hits the stage-2 entry the direct phase cached under
# the same VMID (a vIOMMU's is its parent's, and the move to nested flushed nothing), so 5 walks
expect smmu.s1.each.table.via.s2 "$(grep -c '^walk s2 level=0' <<<"$dma")" 5
dma $PCI "read iova=0x1000 len=4"
expect smmu.tlb.hit "$(via)" tlb
expect smmu.s1.block2m "$(rd $PCI 0x201000)" P201
expect smmu.s1.block1g "$(rd $PCI 0x40010000)" P010
expect smmu.s12.size "$(grep -E '^ *S12 ' "$S/tlb" | grep -o 'addr=0x40000000 size=0x[0-9a-f]*')" "addr=0x40000000 size=0x200000"   # the smaller leaf of the two stages
expect smmu.ap.ro.read "$(rd $PCI 0x2000)" P011
dma $PCI "write iova=0x2000 data=00"
expect smmu.ap.ro.write "$(evt)" "0000000800000013 0000020000000000 0000000000002000 0000000000000000"
dma $PCI "read iova=0x3000 len=4"
expect smmu.ap.priv.only.user "$(evt)" "0000000800000013 0000020800000000 0000000000003000 0000000000000000"
expect smmu.ap.priv.only.priv "$(rd $PCI 0x3000 priv)" P012
dma $PCI "read iova=0x4000 len=4 exec"
expect smmu.uxn.user.exec "$(evt)" "0000000800000013 0000020c00000000 0000000000004000 0000000000000000"
expect smmu.uxn.priv.exec "$(rd $PCI 0x4000 'priv exec')" P013
dma $PCI "read iova=0x5000 len=4 priv exec"
expect smmu.pxn.priv.exec "$(evt)" "0000000800000013 0000020e00000000 0000000000005000 0000000000000000"
expect smmu.pxn.user.exec "$(rd $PCI 0x5000 exec)" P014
dma $PCI "read iova=0x6000 len=4"
expect smmu.af0 "$(evt)" "0000000800000012 0000020800000000 0000000000006000 0000000000000000"
dma $PCI "read iova=0x7000 len=4"
expect smmu.s1.invalid "$(evt)" "0000000800000010 0000020800000000 0000000000007000 0000000000000000"
n0=$(vevents)
dma $PCI "read iova=0x10000 len=4"
expect smmu.s2.in "$(evt)" "0000000800000010 0000028800000000 0000000000010000 0000000040a00000"
dma $PCI "read iova=0x400000 len=4"
expect smmu.s2.tt "$(evt)" "0000000800000010 0000018800000000 0000000000400000 0000000040900000"
dma $PCI "write iova=0x11000 data=00"
expect smmu.s2.ro.nested "$(evt)" "0000000800000013 0000028000000000 0000000000011000 0000000040800000"
expect smmu.veventq.s2.not.forwarded "$(vevents)" "$n0"
expect smmu.veventq.forwarded "$(sed -n 1p "$D/$ctx/$veventq.veventq/events")" \
  "seq=0 event=0x13 vsid=0x10 evt=0x0000001000000013,0x0000020000000000,0x0000000000002000,0x0000000000000000"

# ---- invalidation: a stale entry keeps translating until the command that covers it ----
l3 1 $(( 0x40020000 | PG ))
expect smmu.stale.leaf "$(rd $PCI 0x1000)" P010
inv TLBI_NH_VA,asid=2,addr=0x1000,leaf
expect smmu.nh_va.other.asid "$(rd $PCI 0x1000)" P010
inv TLBI_NH_VA,asid=1,addr=0x2000,leaf
expect smmu.nh_va.other.page "$(rd $PCI 0x1000)" P010
inv TLBI_NH_VA,asid=1,addr=0x1000,leaf
expect smmu.nh_va.leaf "$(rd $PCI 0x1000)" P020
expect smmu.global.read "$(rd $PCI 0x8000)" P017
l3 8 $(( 0x40021000 | (PG & ~NG) ))
inv TLBI_NH_ASID,asid=1
expect smmu.nh_asid.keeps.global "$(rd $PCI 0x8000)" P017
inv TLBI_NH_VA,asid=9,addr=0x8000,leaf
expect smmu.nh_va.global.any.asid "$(rd $PCI 0x8000)" P021
rd $PCI 0x1000 >/dev/null; l3 1 $(( 0x40022000 | PG ))
inv TLBI_NH_ASID,asid=2
expect smmu.nh_asid.other "$(rd $PCI 0x1000)" P020
inv TLBI_NH_ASID,asid=1
expect smmu.nh_asid "$(rd $PCI 0x1000)" P022
l3 8 $(( 0x40023000 | (PG & ~NG) ))
inv TLBI_NH_ALL
expect smmu.nh_all.global "$(rd $PCI 0x8000)" P023
# range: (NUM+1) * 2^SCALE pages of TG from addr
for a in 0x9000 0xa000 0xb000 0xc000 0xd000 0xe000; do rd $PCI $a >/dev/null; done
for i in 9 10 11 12 13 14; do l3 $i $(( (0x4001b000 + i * 0x1000) | PG )); done   # -> 0x40024000-0x40029000
inv TLBI_NH_VA,asid=1,addr=0x9000,tg=1,num=1,scale=1,ttl=3,leaf
got=''; for a in 0x9000 0xa000 0xb000 0xc000 0xd000 0xe000; do got+="$(rd $PCI $a) "; done
expect smmu.range.num1.scale1 "$got" "P024 P025 P026 P027 P01c P01d "
inv TLBI_NH_VA,asid=1,addr=0xc000,tg=2,num=0,scale=0,ttl=3,leaf
expect smmu.range.other.tg "$(rd $PCI 0xd000)" P01c
inv TLBI_NH_VA,asid=1,addr=0xd000,tg=1,num=1,scale=0,ttl=3,leaf
expect smmu.range.num1 "$(rd $PCI 0xd000) $(rd $PCI 0xe000)" "P028 P029"
l3 9 $(( 0x4002a000 | PG ))
req "HWPT_INVALIDATE hwpt_id=$viommu cmd=TLBI_NH_VA,asid=1,addr=0x9000,tg=1,num=0,scale=0,ttl=0"
expect smmu.range.reserved.drops.nothing "$(rd $PCI 0x9000)" P024
inv TLBI_NH_VA,asid=1,addr=0x9000,leaf
expect smmu.range.after.plain "$(rd $PCI 0x9000)" P02a
# TTL names the leaf's level: a 2M block (level 2) is not reached by TTL 3; any address in the block reaches it
expect smmu.block.read "$(rd $PCI 0x800000)" P400
put64 0x40003020 $(( 0x40600000 | BLK ))
inv TLBI_NH_VA,asid=1,addr=0x800000,tg=1,num=0,scale=0,ttl=3,leaf
expect smmu.ttl.other.level "$(rd $PCI 0x800000)" P400
inv TLBI_NH_VA,asid=1,addr=0x9ff000,leaf
expect smmu.block.any.address "$(rd $PCI 0x800000)" P600
# Leaf = 1 keeps the walk cache (the L2 table descriptor); Leaf = 0 drops it
expect smmu.walk.read "$(rd $PCI 0x600000)" P030
put64 0x40003018 $(( 0x40006000 | T ))
inv TLBI_NH_VA,asid=1,addr=0x600000,leaf
expect smmu.walk.leaf.keeps.table "$(rd $PCI 0x600000)" P030
inv TLBI_NH_VA,asid=1,addr=0x600000
expect smmu.walk.nonleaf "$(rd $PCI 0x600000)" P031
# CFGI_CD: the CD is cached until it; the TLB entries of the old ASID stay
rd $PCI 0x1000 >/dev/null
cd 0x40000000 2 0x40007000
expect smmu.cd.stale "$(rd $PCI 0x1000)" P022
inv CFGI_CD,sid=0x10,ssid=0,leaf
expect smmu.cfgi_cd "$(rd $PCI 0x1000)" P040
expect smmu.cfgi_cd.keeps.tlb "$(grep -c 'asid=1 addr=0x1000 ' "$S/tlb")" 1
# CFGI_STE (the host's, when a new nested HWPT replaces the STE): TLB entries are not configuration
cd 0x40000040 1 0x40007000
vste 0x40000040
expect smmu.cfgi_ste.keeps.tlb "$(rd $PCI 0x1000)" P022
inv TLBI_NH_ASID,asid=1
expect smmu.after.ste.nh_asid "$(rd $PCI 0x1000)" P040
# the host's stage-2 unmap: TLBI_S2_IPA then TLBI_NH_ALL (the combined entries), so nothing stale remains
l3 17 $(( 0x40800000 | PG )); put64 0x4000a000 0; put64 0x4000a088 $(( 0x40800000 | PG ))
expect smmu.s2.unmap.before "$(rd $PCI 0x11000)" Q000
req_ok "IOAS_UNMAP ioas_id=$ioas iova=0x40800000 length=0x1000"
dma $PCI "read iova=0x11000 len=4"
expect smmu.s2.unmap.after "$(evt)" "0000000800000010 0000028800000000 0000000000011000 0000000040800000"
expect smmu.s2.unmap.cmds "$(grep -o 'TLBI_[A-Z0-9_]* vmid=1[^	]*' "$S/cmdq" | tail -2 | cut -d' ' -f1 | tr '\n' ' ')" "TLBI_S2_IPA TLBI_NH_ALL "
# the reserved range form on a queue: CERROR_ILL, CONS stays on it
req_ok "VCMDQ_ALLOC viommu_id=$viommu log2size=3"; Q=$D/$ctx/$(get out_vcmdq_id).vcmdq
echo "TLBI_NH_VA asid=1 addr=0x9000 tg=1" >"$Q/cmd"
expect smmu.vcmdq.range.reserved "$(printf '0x%08x' $(( $(cat "$Q/cons") )))" 0x01000000

# ---- the ATC: only ATC_INV drops what a translation request put there ----
cd 0x40000100 3 0x40001000                           # CD: ASID 3, the first tree
vste 0x40000100 0 $(( 1 << 28 ))                     # EATS = 1
dma $PCI "translate iova=0x1000"
expect smmu.ats.translate "$(status)" ok
dma $PCI "read iova=0x1000 len=4 ats"
expect smmu.ats.hit "$(data) $(via)" "P022 atc"
l3 1 $(( 0x40020000 | PG ))
inv TLBI_NH_VA,asid=3,addr=0x1000,leaf
dma $PCI "read iova=0x1000 len=4 ats"
expect smmu.atc.kept.by.tlbi "$(data) $(via)" "P022 atc"
expect smmu.tlbi.reaches.tlb "$(rd $PCI 0x1000)" P020
inv ATC_INV,sid=0x10,addr=0x1000,size=0
dma $PCI "read iova=0x1000 len=4 ats"
expect smmu.atc_inv "$(data)" P020
# ---- HTTU in the guest's tables: CD.HA sets AF, CD.HD turns writable-clean writable-dirty ----
desc() { xxd -s $(( $1 - ram_base )) -l 8 -e "$ram" | cut -d' ' -f2; }
cd 0x40000140 4 0x40001000; put64 0x40000140 $(( CD_ASID1 | (4 << 48) | (1 << 42) | (1 << 43) ))   # HD HA
l3 18 $(( 0x4001e000 | PG | APRO | (1 << 51) ))       # 0x12000 writable-clean (DBM, AP[2] = 1)
vste 0x40000140
expect smmu.httu.af "$(rd $PCI 0x6000) $(( 0x$(desc 0x40004030) >> 10 & 1 ))" "P015 1"
dma $PCI "write iova=0x12000 data=00"
expect smmu.httu.dirty "$(status) $(( 0x$(desc 0x40004090) >> 7 & 1 ))" "ok 0"
dma $PCI "write iova=0x2000 data=00"
expect smmu.httu.ro.stays.ro "$(status)" "fault F_PERMISSION(0x13)"
# ---- F_ADDR_SIZE: a stage-1 output beyond CD.IPS (32 bits) ----
put64 0x40000180 $(( (CD_ASID1 & ~(7 << 32)) | (5 << 48) )); put64 0x40000188 0x40001000; put64 0x40000198 0xf404ff44
l3 19 $(( 0x100000000 | PG ))                         # 0x13000 -> IPA 4G
vste 0x40000180
dma $PCI "read iova=0x13000 len=4"
expect smmu.addr.size "$(evt)" "0000000800000011 0000020800000000 0000000000013000 0000000000000000"
# ---- S1DSS = bypass: no SubstreamID, stage 1 bypassed, stage 2 still translates ----
vste 0x40000000 $(( 1 << 59 )) 1
expect smmu.s1dss.bypass "$(rd $PCI 0x40010000)" P010
# ---- a 2-level CD table (4K leaves of 64 CDs): an invalid L1CD is C_BAD_SUBSTREAMID; NH_VAA; CFGI_CD_ALL ----
put64 0x40000200 $(( 0x4000b000 | 1 )); put64 0x40000208 0   # L1CD[0] -> leaf, L1CD[1] invalid
cd 0x4000b040 6 0x40001000                                 # SSID 1: ASID 6
vste 0x40000200 $(( (7 << 59) | (1 << 4) ))                # S1CDMax = 7, S1Fmt = 1
expect smmu.cd2l.ssid1 "$(rd $PCI 0x1000 pasid=1)" P020
dma $PCI "read iova=0x1000 len=4 pasid=65"
expect smmu.cd2l.bad.l1cd "$(status) $(evt)" "fault C_BAD_SUBSTREAMID(0x08) 0000000800041008 0000000000000000 0000000000000000 0000000000000000"
l3 1 $(( 0x40021000 | PG ))
inv TLBI_NH_VA,asid=7,addr=0x1000,leaf
expect smmu.nh_va.asid.nonglobal "$(rd $PCI 0x1000 pasid=1)" P020
inv TLBI_NH_VAA,addr=0x1000,leaf
expect smmu.nh_vaa "$(rd $PCI 0x1000 pasid=1)" P021
cd 0x4000b040 7 0x40007000                                 # SSID 1: ASID 7, the second tree
expect smmu.cd2l.cd.stale "$(rd $PCI 0x1000 pasid=1)" P021
inv CFGI_CD_ALL,sid=0x10
expect smmu.cfgi_cd_all "$(rd $PCI 0x1000 pasid=1)" P040

# ---- configuration faults ----
vste 0x40b00000
dma $PCI "read iova=0x1000 len=4"
expect smmu.cd.fetch.s2 "$(evt)" "0000000800000010 0000008800000000 0000000000001000 0000000040b00000"
vste 0x40000080
dma $PCI "read iova=0x1000 len=4"
expect smmu.bad.cd "$(status) $(evt)" "fault C_BAD_CD(0x0a) 000000080000000a 0000000000000000 0000000000000000 0000000000000000"
dma $PCI "read iova=0x1000 len=4 pasid=1"
expect smmu.bad.substream.s1cdmax0 "$(status) $(evt)" "fault C_BAD_SUBSTREAMID(0x08) 0000000800001008 0000000000000000 0000000000000000 0000000000000000"
vste 0x40000000 $(( 1 << 59 )) 0                    # S1CDMax = 1 (two CDs), S1DSS = 0 (terminate)
dma $PCI "read iova=0x1000 len=4"
expect smmu.stream.disabled "$(status) $(evt)" "fault F_STREAM_DISABLED(0x06) 0000000800000006 0000000000000000 0000000000000000 0000000000000000"
expect smmu.ssid1 "$(rd $PCI 0x1000 pasid=1)" P040
dma $PCI "read iova=0x1000 len=4 pasid=2"
expect smmu.bad.substream.range "$(status) $(evt)" "fault C_BAD_SUBSTREAMID(0x08) 0000000800002008 0000000000000000 0000000000000000 0000000000000000"
# a guest STE with V = 0 becomes the abort STE: terminated, no event recorded (C_BAD_STE is the host's own STE only)
recorded() { sed -n 's/.*recorded: \([0-9]*\).*/\1/p' "$S/eventq"; }
n0=$(recorded)
req_ok "HWPT_ALLOC dev_id=$dev pt_id=$viommu data_type=ARM_SMMUV3 data.ste=0x0,0x0"
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$(get out_hwpt_id)"
dma $PCI "read iova=0x1000 len=4"
expect smmu.guest.ste.invalid "$(grep -o 'recorded=[01]' <<<"$dma") $(recorded)" "recorded=0 $n0"
# ---- CD fields: R = 0 terminates silently; illegal CDs are C_BAD_CD; AFFD; the TTB0 range and EPD1 ----
cdw() { put64 $1 $2; put64 $(( $1 + 8 )) $3; put64 $(( $1 + 24 )) 0xf404ff44; vste $1; dma $PCI "read iova=${4:-0x1000} len=4"; }
n0=$(recorded)
cdw 0x40000300 $(( (CD_ASID1 & ~(1 << 45)) | (9 << 48) )) 0x40001000 0x7000
expect smmu.cd.r0.silent "$(status) $(grep -o 'recorded=0' <<<"$dma") $(recorded)" "fault F_TRANSLATION(0x10) recorded=0 $n0"
cdw 0x40000340 $(( (CD_ASID1 & ~(1 << 46)) | (9 << 48) )) 0x40001000
expect smmu.cd.a0.illegal "$(status)" "fault C_BAD_CD(0x0a)"           # IDR0.TERM_MODEL = 1
cdw 0x40000380 $(( (CD_ASID1 & ~63) | 40 | (9 << 48) )) 0x40001000
expect smmu.cd.t0sz40.illegal "$(status)" "fault C_BAD_CD(0x0a)"        # at most 39 without IDR3.STT
cdw 0x400003c0 $(( CD_ASID1 | (3 << 6) | (9 << 48) )) 0x40001000
expect smmu.cd.tg0.reserved "$(status)" "fault C_BAD_CD(0x0a)"
cdw 0x40000400 $(( (CD_ASID1 & ~(7 << 32)) | (9 << 48) )) 0x100000000
expect smmu.cd.ttb0.beyond.ips "$(status)" "fault C_BAD_CD(0x0a)"
l3 20 $(( 0x40015000 | (PG & ~AF) ))                 # 0x14000: AF = 0
cdw 0x40000440 $(( CD_ASID1 | (1 << 35) | (10 << 48) )) 0x40001000 0x14000
expect smmu.cd.affd "$(data)" P015
dma $PCI "read iova=0xffff000000001000 len=4"
expect smmu.cd.epd1 "$(evt)" "0000000800000010 0000020800000000 ffff000000001000 0000000000000000"
dma $PCI "read iova=0x1000000000000 len=4"
expect smmu.cd.t0sz.range "$(evt)" "0000000800000010 0000020800000000 0001000000000000 0000000000000000"
# ---- table attributes: APTable, XNTable, PXNTable restrict everything below; APTable read-only is no DBM candidate ----
mark 0x4001f000
put64 0x40003028 $(( 0x4000c000 | T | (1 << 62) ))   # L2[5]: VA 0xa00000, APTable read-only
put64 0x4000c000 $(( 0x4001f000 | PG | APRO | (1 << 51) )); put64 0x4000c008 $(( 0x4001f000 | PG ))
put64 0x40003030 $(( 0x4000d000 | T | (1 << 60) ))   # L2[6]: VA 0xc00000, XNTable
put64 0x4000d000 $(( 0x4001f000 | PG ))
put64 0x40003038 $(( 0x4000e000 | T | (1 << 59) ))   # L2[7]: VA 0xe00000, PXNTable
put64 0x4000e000 $(( 0x4001f000 | PG ))
put64 0x40003040 $(( 0x4000f000 | T | (1 << 61) ))   # L2[8]: VA 0x1000000, APTable no EL0
put64 0x4000f000 $(( 0x4001f000 | PG ))
vste 0x40000140                                      # ASID 4, HA|HD
dma $PCI "write iova=0xa01000 data=00"
expect smmu.aptable.ro "$(status)" "fault F_PERMISSION(0x13)"
dma $PCI "write iova=0xa00000 data=00"
expect smmu.aptable.ro.no.dbm "$(status) $(( 0x$(desc 0x4000c000) >> 7 & 1 ))" "fault F_PERMISSION(0x13) 1"
expect smmu.aptable.ro.read "$(rd $PCI 0xa01000)" P01f
expect smmu.xntable.user "$(rd $PCI 0xc00000 exec)" "fault F_PERMISSION(0x13)"
expect smmu.xntable.priv "$(rd $PCI 0xc00000 'priv exec')" "fault F_PERMISSION(0x13)"
expect smmu.pxntable.priv "$(rd $PCI 0xe00000 'priv exec')" "fault F_PERMISSION(0x13)"
expect smmu.pxntable.user "$(rd $PCI 0xe00000 exec)" P01f
expect smmu.aptable.el0.user "$(rd $PCI 0x1000000)" "fault F_PERMISSION(0x13)"
expect smmu.aptable.el0.priv "$(rd $PCI 0x1000000 priv)" P01f
# ---- a 64KB granule (TG0 = 1): three levels, and range TLBIs reach it only with TG = 64KB ----
mark 0x40131000; mark 0x40141000
put64 0x40100000 $(( 0x40110000 | T )); put64 0x40110000 $(( 0x40120000 | T )); put64 0x40120008 $(( 0x40130000 | PG ))
cdw 0x40000480 $(( CD_ASID1 | (1 << 6) | (11 << 48) )) 0x40100000 0x11000
expect smmu.g64k.read "$(data) $(sed -n 's/^walk s1 level=\([0-9]\).*/\1/p' <<<"$dma" | tr -d '\n')" "P131 123"
put64 0x40120008 $(( 0x40140000 | PG ))
inv TLBI_NH_VA,asid=11,addr=0x10000,tg=1,num=0,scale=0,ttl=3,leaf
expect smmu.g64k.tg4k.misses "$(rd $PCI 0x11000)" P131
inv TLBI_NH_VA,asid=11,addr=0x10000,tg=3,num=0,scale=0,ttl=3,leaf
expect smmu.g64k.tg64k "$(rd $PCI 0x11000)" P141
# ---- S1DSS = SSID0: traffic without a SubstreamID uses CD 0; SubstreamID 0 itself is refused ----
vste 0x40000000 $(( 1 << 59 )) 2
expect smmu.s1dss.ssid0 "$(rd $PCI 0x1000)" P040
dma $PCI "read iova=0x1000 len=4 pasid=0"
expect smmu.s1dss.ssid0.pasid0 "$(status) $(evt)" "fault F_STREAM_DISABLED(0x06) 0000000800000006 0000000000000000 0000000000000000 0000000000000000"
# ---- external aborts: IPA 0x40c00000 maps a user_va a shell cannot back (docs/dma.md), so reading it aborts ----
req_ok "IOAS_MAP ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE user_va=0x10000 length=0x1000 iova=0x40c00000"
vste 0x40c00000
dma $PCI "read iova=0x1000 len=4"
IFS=' ' read -r e0 e1 e2 e3 <<<"$(evt)"
expect smmu.cd.fetch.abort "$(status) $e0 $e1 $e2 $(( 0x$e3 != 0 && (0x$e3 & 7) == 0 ))" "fault F_CD_FETCH(0x09) 0000000800000009 0000000000000000 0000000000000000 1"
put64 0x40003048 $(( 0x40c00000 | T ))              # L2[9]: VA 0x1200000 -> L3 at the aborting IPA
cd 0x40000500 12 0x40001000; vste 0x40000500
dma $PCI "read iova=0x1200000 len=4"
IFS=' ' read -r e0 e1 e2 e3 <<<"$(evt)"
expect smmu.walk.abort "$(status) $e0 $e1 $e2 $(( 0x$e3 != 0 && (0x$e3 & 7) == 0 ))" "fault F_WALK_EABT(0x0b) 000000080000000b 0000010800000000 0000000001200000 1"
# commands a vIOMMU does not take, as arm_vsmmu_convert_user_cmd refuses them
for c in TLBI_S12_VMALL CFGI_STE,sid=0x10 TLBI_S2_IPA,addr=0x1000; do
  req "HWPT_INVALIDATE hwpt_id=$viommu cmd=$c"
  expect "smmu.viommu.refuses.${c%%,*}" "${reply%% entry*}" "err EIO"
done
exec 3>&-

# ---- a stage-1 domain the host builds (Linux's io-pgtable), with dirty tracking: 0000:00:02.0 (StreamID 0x10) ----
PCI2=0000:00:02.0
buf=$TMP/smmu-buf; truncate -s 16K "$buf"
dirty_domain $PCI2
bitmap() { req_ok "HWPT_GET_DIRTY_BITMAP hwpt_id=$hwpt iova=0x100000 length=0x4000 page_size=0x1000 ${1:-}"; get data; }
dma $PCI2 "read iova=0x100000 len=4 priv exec"
expect smmu.host.s1.levels "$(sed -n 's/^walk s1 level=\([0-9]\).*/\1/p' <<<"$dma" | tr -d '\n')" 0123
leaf=$(sed -n 's/^walk s1 level=3 .*desc=\(0x[0-9a-f]*\).*/\1/p' <<<"$dma")
expect smmu.host.s1.leaf.attrs $(printf '0x%x' $(( leaf & 0xfff8000000000fff ))) 0x8000000000f47   # DBM nG AF ISH AP[1] AttrIndx 1, no XN
expect smmu.host.s1.exec "$(status)" ok
expect smmu.dirty.born.dirty "$(bitmap)" 0xf
req_ok "HWPT_SET_DIRTY_TRACKING hwpt_id=$hwpt flags=ENABLE"
expect smmu.dirty.enable.clears "$(bitmap)" 0x0
dma $PCI2 "write iova=0x101000 data=01"; dma $PCI2 "write iova=0x103000 data=01"
expect smmu.dirty.httu.clears.ap2 $(( ($(sed -n 's/^walk s1 level=3 .*desc=\(0x[0-9a-f]*\).*/\1/p' <<<"$dma") >> 7) & 1 )) 0
rd $PCI2 0x102000 >/dev/null
expect smmu.dirty.no_clear "$(bitmap flags=NO_CLEAR)" 0xa
expect smmu.dirty.report "$(bitmap)" 0xa
expect smmu.dirty.cleared "$(bitmap)" 0x0
dma $PCI2 "write iova=0x101000 data=02"
expect smmu.dirty.again "$(bitmap)" 0x2
exec 3>&-

# ===================================================================================================
# VT-d: 0000:02:00.0 on dmar0, nested (PGTT = 3): x86-64 first-stage tables in guest RAM
# ===================================================================================================
PCI=0000:02:00.0
ram=$TMP/vtd-ram; truncate -s 8M "$ram"; ram_base=0x40000000
printf 'Q000' | dd of="$ro" conv=notrunc status=none
TB=$(( 0x1 | 0x2 | 0x4 | 0x20 ))        # P RW U/S A: a table entry as Linux writes it
LF=$(( TB | 0x40 ))                     # a writable leaf (D set)
RW=0x2 US=0x4 PS=0x80 XD=$(( 1 << 63 ))
put64 0x40000000 $(( 0x40001000 | TB ))             # PML4[0]
put64 0x40001000 $(( 0x40002000 | TB ))             # PDPT[0]
put64 0x40002000 $(( 0x40003000 | TB ))             # PD[0] -> PT
put64 0x40002008 $(( 0x40200000 | LF | PS ))        # PD[1]: VA 0x200000, 2M page
put64 0x40002010 $(( 0x40900000 | TB ))             # PD[2]: VA 0x400000, a PT at a GPA the second stage does not map
pt() { put64 $(( 0x40003000 + 8 * $1 )) $2; }
pt 1 $(( 0x40010000 | LF ))
pt 2 $(( 0x40011000 | (LF & ~RW) ))                 # read-only
pt 3 $(( 0x40012000 | (LF & ~US) ))                 # supervisor only
pt 4 $(( 0x40013000 | LF | XD ))
pt 5 0                                              # not present
pt 6 $(( 0x40a00000 | LF ))                         # output GPA the second stage does not map
for i in 7 8 9 10; do pt $i $(( (0x40010000 + i * 0x1000) | LF )); done   # 0x7000-0xa000 -> 0x40017000-0x4001a000
pt 11 $(( 0x40800000 | LF ))                        # the second file
for a in 0x40010000 0x40011000 0x40012000 0x40013000 0x40017000 0x40018000 0x40019000 0x4001a000 0x40020000 \
  0x40027000 0x40028000 0x40029000 0x4002a000 0x40201000; do mark $a; done

# a VT-d nest parent holds no read-only entry (ERRATA_772415_SPR17): over a read-only mapping it cannot be
# made (filling it fails), and a read-only map into its IOAS is refused
exec 3<>"$M/dev/iommu" || die "open dev/iommu"
req_ok "DEVICE_BIND pci=$PCI"; dev=$(get out_devid)
req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
req_ok "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE path=$ro start=0 length=0x1000 iova=0x40800000"
req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=NEST_PARENT"
expect vtd.ss.nest.parent.over.ro "$(errno)" EINVAL
nest_parent $PCI "READABLE|WRITEABLE"
req "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE path=$ro start=0 length=0x1000 iova=0x40900000"
expect vtd.ss.ro.map.refused "$(errno)" EINVAL
req_ok "HWPT_ALLOC dev_id=$dev pt_id=$s2 data_type=VTD_S1 data.pgtbl_addr=0x40000000 data.addr_width=48 data.flags=SRE"; nested=$(get out_hwpt_id)
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$nested"
vinv() { req "HWPT_INVALIDATE hwpt_id=$nested entry=$1"; [[ $reply == ok* ]] || die "entry $1: $reply"; }
fr() { local l=${dma%%$'\n'*}; set -- $l; echo "$2"; }

dma $PCI "read iova=0x1000 len=4"
expect vtd.fs.page "$(data)" P010
expect vtd.fs.levels "$(sed -n 's/^walk fs level=\([0-9]\).*/\1/p' <<<"$dma" | tr -d '\n')" 4321
expect vtd.iotlb.hit "$(rd $PCI 0x1000 >/dev/null; dma $PCI 'read iova=0x1000 len=4'; via)" iotlb
expect vtd.fs.2m "$(rd $PCI 0x201000)" P201
expect vtd.fs.ro.read "$(rd $PCI 0x2000)" P011
dma $PCI "write iova=0x2000 data=00"
expect vtd.fs.ro.write "$(fr) $(frcd)" "FR=0x85 0000000000002000 8000008500000200"   # FI, SID 02:00.0, FR, T = 0 (write), F
dma $PCI "read iova=0x3000 len=4"
expect vtd.fs.us.user "$(fr) $(frcd)" "FR=0x81 0000000000003000 c000008100000200"    # T = 1 (read)
expect vtd.fs.us.priv "$(rd $PCI 0x3000 priv)" P012
dma $PCI "read iova=0x1000 len=4 exec"
expect vtd.exec.no.ere "$(fr)" FR=0x5c
dma $PCI "read iova=0x5000 len=4"
expect vtd.fs.not.present "$(fr) $(frcd)" "FR=0x71 0000000000005000 c000007100000200"
dma $PCI "read iova=0x800000000000 len=4"
expect vtd.non.canonical "$(fr)" FR=0x80
dma $PCI "read iova=0x6000 len=4"
expect vtd.ss.output.unmapped "$(fr)" FR=0x86
expect vtd.ss.read "$(rd $PCI 0xb000)" Q000
# supervisor writes honour R/W only with WPE; R/W = 0 in a table entry makes everything below read-only
dma $PCI "write iova=0x2000 data=50 priv"
expect vtd.wpe0.priv.write "$(status)" ok
put64 0x40002018 $(( 0x40008000 | (TB & ~RW) )); put64 0x40008000 $(( 0x40013000 | LF ))   # PD[3]: VA 0x600000
dma $PCI "write iova=0x600000 data=00"
expect vtd.fs.table.rw0 "$(fr)" FR=0x85
expect vtd.fs.table.rw0.read "$(rd $PCI 0x600000)" P013
put64 0x40001008 $(( 0x40000000 | LF | PS ))      # PDPT[1]: VA 0x40000000, a 1G page
expect vtd.fs.1g "$(rd $PCI 0x40010000)" P010
# requests with a PASID: no PASID-table entry 0x59, no directory entry 0x51; the record has PP and PV
dma $PCI "read iova=0x1000 len=4 pasid=1"
expect vtd.pasid.entry.absent "$(fr) $(frcd)" "FR=0x59 0000000000001000 c000015980000200"
dma $PCI "read iova=0x1000 len=4 pasid=0x40"
expect vtd.pasid.dir.absent "$(fr)" FR=0x51
# first-stage A/D: the unit sets A on a leaf it uses and D on one written (through the second stage)
pt 12 $(( 0x4001b000 | 0x1 | RW | US )); pt 13 $(( 0x4001c000 | 0x1 | RW | US ))   # no A, no D
dma $PCI "write iova=0xc000 data=00"
expect vtd.fs.ad.write "$(status) $(( 0x$(desc 0x40003060) & 0x60 ))" "ok 96"
dma $PCI "read iova=0xd000 len=4"
expect vtd.fs.ad.read "$(status) $(( 0x$(desc 0x40003068) & 0x60 ))" "ok 32"
# the device TLB (ATS): a P_IOTLB from the guest's invalidation comes with the device-TLB flush
dma $PCI "read iova=0x1000 len=4 ats"
expect vtd.devtlb.fill "$(data)" P010

# ---- invalidation: {addr, npages, LEAF} becomes P_IOTLB with the aligned ADDR/AM Linux computes ----
pt 1 $(( 0x40020000 | LF ))
expect vtd.stale.leaf "$(rd $PCI 0x1000)" P010
dma $PCI "read iova=0x1000 len=4 ats"
expect vtd.devtlb.stale "$(data) $(via)" "P010 dev_tlb"
vinv addr=0x2000,npages=1,leaf
expect vtd.p_iotlb.other.page "$(rd $PCI 0x1000)" P010
vinv addr=0x1000,npages=1,leaf
expect vtd.p_iotlb.page "$(rd $PCI 0x1000)" P020
dma $PCI "read iova=0x1000 len=4 ats"
expect vtd.devtlb.flushed "$(data)" P020
for a in 0x7000 0x8000 0x9000 0xa000; do rd $PCI $a >/dev/null; done
for i in 7 8 9 10; do pt $i $(( (0x40020000 + i * 0x1000) | LF )); done   # -> 0x40027000-0x4002a000
vinv addr=0x8000,npages=2,leaf
expect vtd.p_iotlb.am1 "$(rd $PCI 0x7000) $(rd $PCI 0x8000) $(rd $PCI 0x9000) $(rd $PCI 0xa000)" "P017 P028 P029 P01a"
vinv addr=0x9000,npages=2,leaf           # pages 9-10 are not 2-page aligned: AM 2 over 0x8000-0xbfff
expect vtd.p_iotlb.am.aligned "$(rd $PCI 0x7000) $(rd $PCI 0xa000)" "P017 P02a"
expect vtd.p_iotlb.desc "$(grep -o 'P_IOTLB [^	]*' "$D/iommu/dmar0/invalidation_queue" | tail -1 | cut -d' ' -f4-)" \
  "gran=page-selective addr=0x8000 am=2 ih=1"
vinv all
expect vtd.p_iotlb.all "$(rd $PCI 0x7000)" P027
IQ=$D/iommu/dmar0/invalidation_queue
lastq() { grep -o "$1 [^	]*" "$IQ" | tail -${2:-1}; }
expect vtd.p_iotlb.all.desc "$(lastq P_IOTLB | cut -d' ' -f4)" gran=all-in-pasid
did=$(lastq P_IOTLB | sed 's/.*did=\([0-9]*\).*/\1/')
# the second stage changed by the host (IOAS_UNMAP): an IOTLB invalidation with the nested DID drops the nested entry
expect vtd.ss.unmap.before "$(rd $PCI 0xb000)" Q000
req_ok "IOAS_UNMAP ioas_id=$ioas iova=0x40800000 length=0x1000"
dma $PCI "read iova=0xb000 len=4"
expect vtd.ss.unmap.after "$(fr)" FR=0x86
# Linux's nest-parent flush: IOTLB PSI with the nested domain's DID, then the whole device TLB
expect vtd.ss.unmap.desc "$(grep -o 'IOTLB gran=page-selective did=[0-9]* addr=0x40800000 [^	]*' "$IQ" | tail -1) / $(lastq DEV_IOTLB)" \
  "IOTLB gran=page-selective did=$did addr=0x40800000 am=0 ih=1 / DEV_IOTLB sid=02:00.0 qdep=0 addr=0x7ffffffffffff000 s=1"
# qi_flush_iotlb asks for read and write draining (DR b7, DW b6) where CAP.DRD and CAP.DWD offer it, as dmar0's do
expect vtd.ss.unmap.drain "$(grep -P '\tIOTLB gran=page-selective' "$IQ" | tail -1 | cut -f2)" "$(printf '%016x' $(( did << 16 | 0xc0 | 0x30 | 2 )))"
# a freed page table invalidated with IH = 1 (LEAF) keeps the paging-structure entry; IH = 0 drops it
put64 0x40002000 0
vinv addr=0x1000,npages=1,leaf
expect vtd.ih1.keeps.pde "$(rd $PCI 0x1000)" P020
vinv addr=0x1000,npages=1
expect vtd.ih0.drops.pde "$(rd $PCI 0x1000)" "fault FR=0x71"
# a new first-stage root (the VMM replaces the nested HWPT): the PASID entry changes, PC with the old DID drops the cached one
put64 0x40004000 $(( 0x40005000 | TB )); put64 0x40005000 $(( 0x40006000 | TB )); put64 0x40006000 $(( 0x40007000 | TB ))
put64 0x40007008 $(( 0x40029000 | LF ))
req_ok "HWPT_ALLOC dev_id=$dev pt_id=$s2 data_type=VTD_S1 data.pgtbl_addr=0x40004000 data.addr_width=48 data.flags=SRE"
req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$(get out_hwpt_id)"
expect vtd.replace.new.root "$(rd $PCI 0x1000)" P029
expect vtd.replace.pc "$(grep -o 'PC [^	]*' "$IQ" | tail -1)" "PC gran=pasid did=$did pasid=0"
exec 3>&-

# ---- second-stage dirty tracking (SSADE): 0000:02:01.0 on a DIRTY_TRACKING domain ----
PCI2=0000:02:01.0
truncate -s 0 "$buf"; truncate -s 16K "$buf"
dirty_domain $PCI2
dma $PCI2 "read iova=0x100000 len=4"
leaf=$(sed -n 's/^walk ss level=1 .*desc=\(0x[0-9a-f]*\).*/\1/p' <<<"$dma")
expect vtd.ss.leaf.rw.clean $(( leaf & 0x3ff )) 3
expect vtd.dirty.not.born.dirty "$(bitmap)" 0x0
req_ok "HWPT_SET_DIRTY_TRACKING hwpt_id=$hwpt flags=ENABLE"
dma $PCI2 "write iova=0x101000 data=01"
expect vtd.dirty.ssade.sets.ad "$(sed -n 's/^walk ss level=1 .*updated=\(0x[0-9a-f]*\).*/\1/p' <<<"$dma")" 0x300
dma $PCI2 "write iova=0x103000 data=01"; rd $PCI2 0x102000 >/dev/null
expect vtd.dirty.no_clear "$(bitmap flags=NO_CLEAR)" 0xa
expect vtd.dirty.report "$(bitmap)" 0xa
expect vtd.dirty.cleared "$(bitmap)" 0x0
dma $PCI2 "write iova=0x101000 data=02"
expect vtd.dirty.again "$(bitmap)" 0x2
exec 3>&-

echo "# $checks checks, $fails failed"
[ "$fails" -eq 0 ]
