# Shared by the outside conformance checks (conform-*.sh MOUNT_POINT): the
# mount point ($M, the debug tree $D), one "NAME: ok" or "NAME: FAIL got X
# want Y" line per check (the callers print the "# N checks, F failed"
# summary and exit 1 on any failure), exit 2 for bad usage or a setup step
# that failed, requests on dev/iommu (fd 3) and DMA through a device's port.
set -u
export LC_ALL=C
if [ $# -ne 1 ]; then echo "usage: $0 MOUNT_POINT" >&2; exit 2; fi
M=$(cd "$1" 2>/dev/null && pwd -P) || { echo "setup: FAIL got '$1' want a directory"; exit 2; }
D=$M/sys/kernel/debug/iommufd
fails=0 checks=0

# expect NAME GOT WANT
expect() {
  checks=$((checks + 1))
  if [ "$2" = "$3" ]; then echo "$1: ok"; else echo "$1: FAIL got $2 want $3"; fails=$((fails + 1)); fi
}
die() { echo "setup: FAIL got $* want success"; exit 2; }

# req LINE: one request on dev/iommu (fd 3); the reply in $reply. req_ok: it must succeed.
req() { echo "$1" >&3 2>/dev/null; IFS= read -r -u 3 reply || die "no reply to $1"; }
req_ok() { req "$1"; [[ $reply == ok* ]] || die "$1: $reply"; }
# get KEY: the value of KEY=... in $reply
get() { local re="(^| )$1=([^ ]*)"; [[ $reply =~ $re ]] && echo "${BASH_REMATCH[2]}"; }
# errno: the errno name of $reply ("ok" when it succeeded)
errno() { if [[ $reply == ok* ]]; then echo ok; else set -- $reply; echo "$2"; fi; }

# dma PCI REQUEST: the reply of the device's DMA port in $dma
dma() {
  exec 4<>"$D/dma/$1" || die "open dma/$1"
  echo "$2" >&4 || die "dma $2"
  dma=$(cat <&4)
  exec 4>&-
}
# data: the bytes a read returned, as text ("-" when the DMA did not complete)
data() { local h; h=$(sed -n 's/^data //p' <<<"$dma"); if [ -n "$h" ]; then printf '%s' "$h" | xxd -r -p; else echo -n "-"; fi; }
# status: the first word of the reply and, for a fault, its name (F_PERMISSION(0x13), FR=0x85)
status() { local l=${dma%%$'\n'*}; set -- $l; if [ "$1" = fault ]; then echo "fault $2"; else echo "$1"; fi; }
# evt: the 4 event words (SMMUv3) / frcd: the 2 fault record words (VT-d)
evt() { sed -n 's/^event //p' <<<"$dma"; }
frcd() { sed -n 's/^frcd //p' <<<"$dma"; }
via() { sed -n 's/^out .* via=\([a-z_]*\).*/\1/p' <<<"$dma" | head -1; }
