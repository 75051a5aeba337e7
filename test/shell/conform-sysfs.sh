#!/usr/bin/env bash
# Conformance of the sysfs and debugfs trees against the kernel's formats,
# checked from outside with ls, cat, stat, readlink and find, as a VMM or an
# lspci-like script walks /sys:
#   - /sys/class/iommu/dmarN/intel-iommu/* (drivers/iommu/intel: %llx, major:minor,
#     decimal), the same words GET_HW_INFO returns;
#   - /sys/class/iommu/smmu3.0x.../arm-smmu-v3/* decoded from the IDR words;
#   - the links: class/iommu/X/devices/BDF, BDF/iommu, BDF/iommu_group,
#     iommu_groups/N/devices/BDF, class/vfio-dev/vfioN, vfioN/device;
#   - iommu_groups/N/{type,reserved_regions} (drivers/iommu/iommu.c), and the
#     reserved regions are exactly what IOAS_IOVA_RANGES leaves out;
#   - file modes and the errno of writes where the kernel refuses them.
#   usage: conform-sysfs.sh MOUNT_POINT   (a fresh mount: one group's type is left DMA-FQ)
# Prints "NAME: ok" or "NAME: FAIL got X want Y" for each check; exits 1 if
# any failed (2 for bad usage or a setup step that failed).
set -u
export LC_ALL=C
if [ $# -ne 1 ]; then echo "usage: $0 MOUNT_POINT" >&2; exit 2; fi
M=$(cd "$1" 2>/dev/null && pwd -P) || { echo "setup: FAIL got '$1' want a directory"; exit 2; }
S=$M/sys
fails=0 checks=0

# expect NAME GOT WANT
expect() {
  checks=$((checks + 1))
  if [ "$2" = "$3" ]; then echo "$1: ok"; else echo "$1: FAIL got ${2:-<empty>} want ${3:-<empty>}"; fails=$((fails + 1)); fi
}
die() { echo "setup: FAIL got $* want success"; exit 2; }

# req LINE: one request on dev/iommu (fd 3); the reply in $reply. req_ok: it must succeed.
req() { echo "$1" >&3 || die "write $1"; IFS= read -r -u 3 reply || die "no reply to $1"; }
req_ok() { req "$1"; [[ $reply == ok* ]] || die "$1: $reply"; }
get() { local re="(^| )$1=([^ ]*)"; [[ $reply =~ $re ]] && echo "${BASH_REMATCH[2]}"; }
# bind BDF: binds the device to this context once; its device ID in $dev
declare -A devid=()
bind() { if [ -z "${devid[$1]:-}" ]; then req_ok "DEVICE_BIND pci=$1"; devid[$1]=$(get out_devid); fi; dev=${devid[$1]}; }

# names DIR: the entries of DIR, sorted, on one line
names() { ls -1 "$1" 2>&1 | sort | tr '\n' ' ' | sed 's/ $//'; }
mode() { stat -c %a "$1" 2>&1; }
# wr FILE TEXT: the error a write of TEXT gets, as strerror, or "ok"
wr() { local e; e=$( { printf '%s\n' "$2" > "$1"; } 2>&1 ) && echo ok || echo "${e##*: }"; }
# shape FILE: "one-line" when the file is exactly one line ending in a newline
shape() { local n; n=$(wc -l < "$1"); if [ "$n" = 1 ] && [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ]; then echo one-line; else echo "$n-lines"; fi; }
real() { readlink -f "$1"; }
bit() { echo $(( ($1 >> $2) & ((1 << $3) - 1) )); }

exec 3<>"$M/dev/iommu" || die "open dev/iommu"
[ -d "$S/class/iommu" ] || die "ls sys/class/iommu"

# ---- the IOMMU class ----------------------------------------------------
for X in "$S"/class/iommu/*; do
  x=${X##*/}
  [[ $x =~ ^(dmar[0-9]+|smmu3\.0x[0-9a-f]{16})$ ]] && ok=yes || ok=no
  expect "class.$x.name" "$ok" yes
  expect "class.$x.devices.mode" "$(mode "$X/devices")" 755
  for L in "$X"/devices/*; do
    b=${L##*/}
    expect "class.$x.devices.$b.islink" "$( [ -L "$L" ] && echo yes || echo no)" yes
    expect "class.$x.devices.$b.target" "$(real "$L")" "$(real "$S/bus/pci/devices/$b")"
    expect "pci.$b.iommu.back" "$(real "$S/bus/pci/devices/$b/iommu")" "$(real "$X")"
  done
done

# ---- intel-iommu: drivers/iommu/intel/iommu.c's attributes ------------------
for X in "$S"/class/iommu/dmar*; do
  x=${X##*/} I=$X/intel-iommu
  expect "$x.intel-iommu.files" "$(names "$I")" "address cap domains_supported domains_used ecap version"
  for f in address cap domains_supported domains_used ecap version; do
    expect "$x.intel-iommu.$f.mode" "$(mode "$I/$f")" 444
    expect "$x.intel-iommu.$f.newline" "$(shape "$I/$f")" one-line

    expect "$x.intel-iommu.$f.write" "$(wr "$I/$f" 1)" "Permission denied"
  done
  for f in address cap ecap; do
    [[ $(cat "$I/$f") =~ ^[1-9a-f][0-9a-f]*$ ]] && ok=yes || ok=no
    expect "$x.intel-iommu.$f.llx" "$ok" yes
  done
  [[ $(cat "$I/version") =~ ^[0-9]+:[0-9]+$ ]] && ok=yes || ok=no
  expect "$x.intel-iommu.version.format" "$ok" yes
  cap=$((0x$(cat "$I/cap"))) ecap=$((0x$(cat "$I/ecap")))
  expect "$x.intel-iommu.domains_supported" "$(cat "$I/domains_supported")" $((1 << (4 + 2 * (cap & 7))))
  [[ $(cat "$I/domains_used") =~ ^[0-9]+$ ]] && ok=yes || ok=no
  expect "$x.intel-iommu.domains_used.format" "$ok" yes

  # GET_HW_INFO of a device behind this unit returns the same cap and ecap
  set -- "$X"/devices/*; b=${1##*/}
  bind "$b"
  req_ok "GET_HW_INFO dev_id=$dev"
  expect "$x.intel-iommu.cap.hw_info" "$(printf %x "$(get cap_reg)")" "$(cat "$I/cap")"
  expect "$x.intel-iommu.ecap.hw_info" "$(printf %x "$(get ecap_reg)")" "$(cat "$I/ecap")"
  # a paging domain attached to a device takes a domain ID, its detach frees it
  used=$(cat "$I/domains_used")
  req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
  req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$ioas"
  expect "$x.intel-iommu.domains_used.attach" "$(cat "$I/domains_used")" $((used + 1))
  req_ok "DEVICE_DETACH dev_id=$dev"
  expect "$x.intel-iommu.domains_used.detach" "$(cat "$I/domains_used")" "$used"

  # intel-vtd: the decoded features agree with cap/ecap
  V=$X/intel-vtd
  expect "$x.intel-vtd.model" "$(cat "$V/model")" 1
  expect "$x.intel-vtd.nested" "$(cat "$V/nested")" "$(bit $ecap 26 1)"
  expect "$x.intel-vtd.scalable_mode" "$(cat "$V/scalable_mode")" "$(bit $ecap 43 1)"
  expect "$x.intel-vtd.caching_mode" "$(cat "$V/caching_mode")" "$(bit $cap 7 1)"
  expect "$x.intel-vtd.address_width" "$(cat "$V/address_width")" $(( $(bit $cap 16 6) + 1 ))
  if [ "$(bit $ecap 40 1)" = 1 ]; then
    expect "$x.intel-vtd.pasid_bits" "$(cat "$V/pasid_bits")" $(( $(bit $ecap 35 5) + 1 ))
  fi
  for f in "$V"/*; do expect "$x.intel-vtd.${f##*/}.mode" "$(mode "$f")" 444; done
done

# ---- arm-smmu-v3: the feature files against the IDR words ----------------------
oas_bits=(32 36 40 42 44 48 52)
for X in "$S"/class/iommu/smmu3.*; do
  x=${X##*/} A=$X/arm-smmu-v3
  set -- "$X"/devices/*; b=${1##*/}
  bind "$b"
  req_ok "GET_HW_INFO dev_id=$dev"
  IFS=, read -r -a idr <<<"$(get idr)"
  for i in 0 1 2 3 4 5; do
    expect "$x.idr$i" "$(cat "$A/idr$i")" "$(printf 0x%08x "${idr[$i]}")"
  done
  expect "$x.iidr" "$(cat "$A/iidr")" "$(printf 0x%08x "$(get iidr)")"
  expect "$x.aidr" "$(cat "$A/aidr")" "$(printf 0x%08x "$(get aidr)")"
  i0=${idr[0]} i1=${idr[1]} i5=${idr[5]}
  expect "$x.model" "$(cat "$A/model")" 2
  expect "$x.asid_bits" "$(cat "$A/asid_bits")" $(( $(bit $i0 12 1) ? 16 : 8 ))
  expect "$x.vmid_bits" "$(cat "$A/vmid_bits")" $(( $(bit $i0 18 1) ? 16 : 8 ))
  expect "$x.sid_bits" "$(cat "$A/sid_bits")" "$(bit $i1 0 6)"
  if [ "$(bit $i1 6 5)" != 0 ]; then
    expect "$x.ssid_bits" "$(cat "$A/ssid_bits")" "$(bit $i1 6 5)"
  else
    expect "$x.ssid_bits.absent" "$( [ -e "$A/ssid_bits" ] && echo present || echo absent)" absent
  fi
  expect "$x.output_bits" "$(cat "$A/output_bits")" "${oas_bits[$(bit $i5 0 3)]}"
  expect "$x.input_bits" "$(cat "$A/input_bits")" $(( $(bit $i5 10 2) == 1 ? 52 : 48 ))
  expect "$x.btm" "$(cat "$A/btm")" "$( [ "$(bit $i0 5 1)" = 1 ] && echo enabled || echo disabled)"
  h=(none access access+dirty)
  expect "$x.httu" "$(cat "$A/httu")" "${h[$(bit $i0 6 2)]}"
  st=(enabled disabled force)
  expect "$x.stall" "$(cat "$A/stall")" "${st[$(bit $i0 24 2)]}"
  expect "$x.s1" "$(cat "$A/s1")" "$(bit $i0 1 1)"
  expect "$x.s2" "$(cat "$A/s2")" "$(bit $i0 0 1)"
  expect "$x.nesting" "$(cat "$A/nesting")" $(( $(bit $i0 0 1) & $(bit $i0 1 1) ))
  expect "$x.ats" "$(cat "$A/ats")" "$(bit $i0 10 1)"
  expect "$x.pri" "$(cat "$A/pri")" "$(bit $i0 16 1)"
  for f in "$A"/*; do
    expect "$x.${f##*/}.mode" "$(mode "$f")" 444
    expect "$x.${f##*/}.newline" "$(shape "$f")" one-line
  done
  expect "$x.model.write" "$(wr "$A/model" 3)" "Permission denied"
done

# ---- PCI devices, their groups and VFIO nodes --------------------------------
for D in "$S"/bus/pci/devices/*; do
  b=${D##*/}
  for f in vendor device; do
    [[ $(cat "$D/$f") =~ ^0x[0-9a-f]{4}$ ]] && ok=yes || ok=no
    expect "pci.$b.$f.format" "$ok" yes
    expect "pci.$b.$f.mode" "$(mode "$D/$f")" 444
  done
  expect "pci.$b.iommu.islink" "$( [ -L "$D/iommu" ] && echo yes || echo no)" yes
  g=$(real "$D/iommu_group")
  expect "pci.$b.iommu_group.dir" "${g%/*}" "$(real "$S/kernel/iommu_groups")"
  expect "pci.$b.group.devices.back" "$(real "$g/devices/$b")" "$(real "$D")"
  expect "pci.$b.iommu.listed" "$( [ -L "$(real "$D/iommu")/devices/$b" ] && echo yes || echo no)" yes
  set -- "$D"/vfio-dev/vfio*; v=${1##*/}
  expect "pci.$b.vfio-dev.node" "$( [ -e "$M/dev/vfio/devices/$v" ] && echo yes || echo no)" yes
  expect "pci.$b.vfio-dev.class" "$(real "$S/class/vfio-dev/$v")" "$(real "$D/vfio-dev/$v")"
  expect "pci.$b.vfio-dev.device" "$(real "$D/vfio-dev/$v/device")" "$(real "$D")"
done

# ---- IOMMU groups (drivers/iommu/iommu.c) ---------------------------------------
for G in "$S"/kernel/iommu_groups/*; do
  n=${G##*/}
  expect "group.$n.files" "$(names "$G")" "devices reserved_regions type"
  expect "group.$n.reserved_regions.mode" "$(mode "$G/reserved_regions")" 444
  expect "group.$n.type.mode" "$(mode "$G/type")" 644
  expect "group.$n.type" "$(cat "$G/type")" DMA
  expect "group.$n.type.newline" "$(shape "$G/type")" one-line
  expect "group.$n.reserved_regions.write" "$(wr "$G/reserved_regions" x)" "Permission denied"
  # a word the store does not know is EINVAL; a known one, while vfio-pci owns the group, EPERM
  expect "group.$n.type.write.unknown" "$(wr "$G/type" dma)" "Invalid argument"
  expect "group.$n.type.write.identity" "$(wr "$G/type" identity)" "Operation not permitted"
  expect "group.$n.type.write.auto" "$(wr "$G/type" auto)" "Operation not permitted"
  expect "group.$n.type.unchanged" "$(cat "$G/type")" DMA
  bad=0
  while read -r start end type; do
    [[ "$start $end $type" =~ ^0x[0-9a-f]{16}\ 0x[0-9a-f]{16}\ (direct|direct-relaxable|reserved|msi)$ ]] || bad=1
  done < "$G/reserved_regions"
  expect "group.$n.reserved_regions.format" "$bad" 0
  for L in "$G"/devices/*; do
    expect "group.$n.devices.${L##*/}.iommu_group" "$(real "$S/bus/pci/devices/${L##*/}/iommu_group")" "$(real "$G")"
  done

  # IOAS_IOVA_RANGES of an IOAS the group's device is attached to: the holes
  # between its ranges are exactly the group's regions (a relaxable direct one
  # stays mappable), sorted by start
  set -- "$G"/devices/*; b=${1##*/}
  bind "$b"
  req_ok "IOAS_ALLOC"; ioas=$(get out_ioas_id)
  req_ok "DEVICE_ATTACH dev_id=$dev pt_id=$ioas"
  req_ok "IOAS_IOVA_RANGES ioas_id=$ioas num_iovas=16"
  IFS=, read -r -a r <<<"$(get allowed_iovas)"
  holes=''
  for ((i = 1; i + 1 < ${#r[@]}; i += 2)); do
    holes+=$(printf '0x%016x 0x%016x\n' $(( r[i] + 1 )) $(( r[i + 1] - 1 )))$'\n'
  done
  want=$(awk '$3 != "direct-relaxable" { print $1, $2 }' "$G/reserved_regions")
  expect "group.$n.reserved_regions.iova_ranges" "$(printf %s "$holes" | tr '\n' ';')" "$(printf '%s\n' "$want" | tr '\n' ';')"
  req_ok "DEVICE_DETACH dev_id=$dev"
done

# DMA-FQ over DMA only turns the flush queue on, so the kernel takes it with a
# driver bound; going back to DMA is a domain change, EPERM (run on a fresh mount)
expect group.$n.type.write.dma-fq "$(wr "$G/type" DMA-FQ)" ok
expect group.$n.type.dma-fq "$(cat "$G/type")" DMA-FQ
expect group.$n.type.write.dma.back "$(wr "$G/type" DMA)" "Operation not permitted"

# ---- what root may not change (README "Changing the tree", as on Linux) --------
e=$(mkdir "$S/class/iommu/new" 2>&1); expect sysfs.mkdir "${e##*: }" "Operation not permitted"
e=$(rm -f "$S/bus/pci/devices/$b/iommu" 2>&1); expect sysfs.rm.link "${e##*: }" "Operation not permitted"
e=$( { : > "$S/kernel/iommu_groups/new"; } 2>&1); expect sysfs.create "${e##*: }" "Permission denied"
# a debugfs file without a write method: root's open succeeds, the write is EINVAL
expect debugfs.readonly.write "$(wr "$S/kernel/debug/iommufd/server" x)" "Invalid argument"

exec 3>&-
echo "# $checks checks, $fails failed"
[ "$fails" = 0 ]
