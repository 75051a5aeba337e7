# What the example scripts share; each sources it after `set -euo pipefail`.
# Messages name the script that failed.

# need MOUNT NODE: stop (status 2) unless MOUNT/NODE exists, i.e. iommufs is mounted at MOUNT.
need() {
  [ -e "$1/$2" ] && return
  echo "${0##*/}: $1/$2 not found; is iommufs mounted there? (make mount)" >&2
  exit 2
}

# die MESSAGE: stop with status 1.
die() { echo "${0##*/}: $*" >&2; exit 1; }

# req LINE [ERRNO]: one request on dev/iommu (file descriptor 3); the reply
# goes to $reply and both are shown. It must succeed, or fail with ERRNO
# when that is given; anything else stops the script.
req() {
  echo "$1" >&3
  IFS= read -r -u 3 reply
  printf '> %s\n< %s\n' "$1" "$reply"
  if [ $# -gt 1 ]; then
    [[ $reply == "err $2 "* ]] || die "expected $2 for: $1"
  else
    case $reply in err*) die "request failed: $1" ;; esac
  fi
}

# get KEY: the value of KEY=... in the last reply.
get() {
  local re="(^| )$1=([^ ]*)"
  [[ $reply =~ $re ]] || die "no $1 in: $reply"
  echo "${BASH_REMATCH[2]}"
}

# dma PCI REQUEST: one request on the device's DMA port
# (sys/kernel/debug/iommufd/dma/PCI under $mnt); the reply goes to $dma and is shown.
dma() {
  exec 4<>"$mnt/sys/kernel/debug/iommufd/dma/$1"
  echo "$2" >&4
  dma=$(cat <&4)
  exec 4>&-
  printf '$ %s\n%s\n' "$2" "$dma"
}

# new_commands FIELDS: the commands the SMMU $SMMU (debug tree $dbg) has
# received since the last call, its cmdq lines as `cut -f FIELDS` shows them,
# into $commands (empty when none). The first call only counts what is there.
new_commands() {
  local all
  all=$(grep $'^ *[0-9]\+\t' "$dbg/iommu/$SMMU/cmdq" | cut -f"$1" || true)
  commands=$(printf '%s\n' "$all" | tail -n +$(( ${commands_seen:-0} + 1 )))
  commands_seen=$(printf '%s\n' "$all" | grep -c . || true)
}

# put64 ADDR VALUE: a little-endian 64-bit word into the file $ram, whose
# offset 0 is address $ram_base (the guest RAM the examples build tables in).
put64() {
  local off=$(( $1 - ram_base )) v=$2 bytes='' i
  for i in 0 1 2 3 4 5 6 7; do bytes+=$(printf '\\x%02x' $(( (v >> (8 * i)) & 0xff ))); done
  printf "$bytes" | dd of="$ram" bs=1 seek=$off conv=notrunc status=none
}
