#!/usr/bin/env bash
# Checks an iommufs feature tree with plain shell tools.
#   usage: tree.sh MOUNT_POINT
# Prints one "ok ..." line per check; on the first failure prints "not ok ..."
# with what was seen and exits 1 (2 for bad usage).
. "$(dirname "$0")/lib.sh"

check "mount point is a fuse.iommufs mount" grep -q " $M fuse.iommufs " /proc/mounts
check "sys/class/iommu is a directory" test -d "$M/sys/class/iommu"
check "dev is a directory" test -d "$M/dev"

units=$(ls "$M/sys/class/iommu")
[ -n "$units" ] || fail "at least one IOMMU in sys/class/iommu"
ok "IOMMUs: $(echo $units)"

for u in $units; do
  d=$M/sys/class/iommu/$u
  case $u in
    smmu3.0x*)
      [[ $u =~ ^smmu3\.0x[0-9a-f]{16}$ ]] || fail "$u: SMMUv3 name is smmu3.0x<16 hex digits>"
      same "$(cat "$d/arm-smmu-v3/model")" 2 "$u/arm-smmu-v3/model"
      check "$u has no intel-vtd directory" test ! -e "$d/intel-vtd"
      for f in asid_bits sid_bits input_bits output_bits; do
        v=$(cat "$d/arm-smmu-v3/$f") || fail "cat $u/arm-smmu-v3/$f"
        [[ $v =~ ^[0-9]+$ ]] || fail "$u/arm-smmu-v3/$f is decimal: '$v'"
      done
      ok "$u: asid_bits sid_bits input_bits output_bits are decimal"
      idr0=$(cat "$d/arm-smmu-v3/idr0")
      [[ $idr0 =~ ^0x[0-9a-f]{8}$ ]] || fail "$u/arm-smmu-v3/idr0 is 0x%08x: '$idr0'"
      # s1 is IDR0 bit 1, s2 bit 0: the decoded files agree with the raw word
      same "$(cat "$d/arm-smmu-v3/s1")" $(((idr0 >> 1) & 1)) "$u: s1 matches IDR0 bit 1"
      same "$(cat "$d/arm-smmu-v3/s2")" $((idr0 & 1)) "$u: s2 matches IDR0 bit 0"
      idr1=$(cat "$d/arm-smmu-v3/idr1")
      ssid=$(((idr1 >> 6) & 31))
      if [ $ssid -eq 0 ]; then
        check "$u: no ssid_bits file when IDR1.SSIDSIZE is 0" test ! -e "$d/arm-smmu-v3/ssid_bits"
      else
        same "$(cat "$d/arm-smmu-v3/ssid_bits")" $ssid "$u: ssid_bits matches IDR1.SSIDSIZE"
      fi
      ;;
    dmar*)
      same "$(cat "$d/intel-vtd/model")" 1 "$u/intel-vtd/model"
      check "$u has no arm-smmu-v3 directory" test ! -e "$d/arm-smmu-v3"
      for f in cap ecap address; do
        v=$(cat "$d/intel-iommu/$f")
        [[ $v =~ ^[0-9a-f]+$ ]] || fail "$u/intel-iommu/$f is %llx without 0x: '$v'"
      done
      ok "$u: intel-iommu cap ecap address are bare hex"
      v=$(cat "$d/intel-iommu/version")
      [[ $v =~ ^[0-9]+:[0-9]+$ ]] || fail "$u/intel-iommu/version is major:minor: '$v'"
      ok "$u/intel-iommu/version is $v"
      cap=0x$(cat "$d/intel-iommu/cap")
      same "$(cat "$d/intel-iommu/domains_supported")" $((1 << (4 + 2 * (cap & 7)))) "$u: domains_supported is 2^(4+2*CAP.ND)"
      ;;
    *) fail "unexpected IOMMU name $u" ;;
  esac

  for link in "$d"/devices/*; do
    [ -e "$link" ] || continue
    bdf=${link##*/}
    check "$u/devices/$bdf is a symlink" test -L "$link"
    same "$(readlink -f "$link")" "$M/sys/bus/pci/devices/$bdf" "$u/devices/$bdf resolves to the PCI device"
    same "$(readlink -f "$M/sys/bus/pci/devices/$bdf/iommu")" "$d" "$bdf/iommu resolves back to $u"
  done
done

for dev in "$M"/sys/bus/pci/devices/*; do
  bdf=${dev##*/}
  [[ $bdf =~ ^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$ ]] || fail "$bdf is a PCI address"
  for f in vendor device; do
    v=$(cat "$dev/$f")
    [[ $v =~ ^0x[0-9a-f]{4}$ ]] || fail "$bdf/$f is 0x%04x: '$v'"
  done
  g=$(readlink -f "$dev/iommu_group")
  [[ $g == "$M"/sys/kernel/iommu_groups/* ]] || fail "$bdf/iommu_group resolves inside the mount: '$g'"
  check "$bdf is listed in its group ${g##*/}" test -L "$g/devices/$bdf"
done
ok "every PCI device has 0x%04x vendor/device and an iommu_group"

for g in "$M"/sys/kernel/iommu_groups/*; do
  same "$(cat "$g/type")" DMA "group ${g##*/} type"
  while read -r start end type; do
    [[ $start =~ ^0x[0-9a-f]{16}$ && $end =~ ^0x[0-9a-f]{16}$ && -n $type ]] || fail "group ${g##*/} reserved_regions line: '$start $end $type'"
  done <"$g/reserved_regions"
done
ok "every group has type DMA and well-formed reserved_regions"

# every attribute of the sysfs part (not debugfs or dev/): sysfs mode and size,
# readable, one newline-terminated value
files=$(find "$M/sys/class" "$M/sys/bus" "$M/sys/kernel/iommu_groups" -type f) || fail "find -type f"
count=0
for f in $files; do
  s=$(stat -c '%a %s' "$f")
  # a file the kernel caches reports its exact length (the rest 4096, as sysfs does)
  len=$(cat "$f" | wc -c)
  # an IOMMU group's type is 0644, as the kernel's (iommu_group_store_type)
  m=444; case $f in */iommu_groups/*/type) m=644 ;; esac
  [ "$s" = "$m 4096" ] || [ "$s" = "$m $len" ] || fail "stat ${f#"$M"/}: got '$s', expected '$m 4096' or '$m $len'"
  # through a pipe: tail on a file reporting 4096 would seek there
  [ "$(cat "$f" | tail -c 1 | od -An -c | tr -d ' ')" = '\n' ] || fail "${f#"$M"/} ends with a newline"
  [ -n "$(cat "$f")" ] || fail "${f#"$M"/} has a value"
  count=$((count + 1))
done
[ $count -gt 0 ] || fail "the tree has files"
ok "$count attribute files are mode 444 (a group's type 644), size 4096 or exact, newline-terminated"

links=$(find "$M" -type l)
for l in $links; do
  [ -e "$l" ] || fail "symlink ${l#"$M"/} resolves"
  case $(readlink -f "$l") in "$M"/*) ;; *) fail "symlink ${l#"$M"/} stays inside the mount" ;; esac
done
ok "$(echo "$links" | wc -l) symlinks resolve inside the mount"

check "find over the whole tree" find "$M" -fprint /dev/null
check "grep -r over the whole tree" grep -rq . "$M"
same "$(grep -r . "$M/sys/class/iommu" | wc -l)" "$(find "$M/sys/class/iommu" -type f | wc -l)" "grep -r prints one line per attribute"

f=$(find "$M/sys/class/iommu" -type f -name model | head -n 1)
before=$(cat "$f")
if (echo 1 >"$f") 2>/dev/null; then fail "writing ${f#"$M"/} is refused"; fi
same "$(cat "$f")" "$before" "a refused write leaves ${f#"$M"/} unchanged"
check "an unknown name does not exist" test ! -e "$M/sys/class/iommu/no-such-iommu"

echo "# $n checks passed"
