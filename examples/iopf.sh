#!/usr/bin/env bash
# IOPF from a shell: a DMA that misses waits in a fault queue until we map the page and answer.
#
#   examples/iopf.sh [MOUNT]      (MOUNT defaults to ./mount, where `make mount` mounts)
#
# For an SMMUv3 device (the transaction stalls: CD.S = 1) and a VT-d device
# (its PRI sends a page request), in turn:
#   1. a fault queue (FAULT_QUEUE_ALLOC) and a paging HWPT that uses it
#      (HWPT_ALLOC flags=FAULT_ID_VALID), the device attached;
#   2. a DMA read of an IOVA nothing maps: the port answers "pending dma=N";
#   3. the page request record (struct iommu_hwpt_pgfault, 40 bytes) read with
#      dd from the queue file, its fields decoded with od;
#   4. the page mapped (IOAS_MAP_FILE), the response (struct
#      iommu_hwpt_page_response: cookie, code SUCCESS) written with printf;
#   5. "result dma=N" on the port: the DMA was retried and read the page.
# Then the errors the kernel gives (a response of the wrong size: ESPIPE; an
# unknown or already answered cookie: EINVAL), an INVALID response (the DMA
# fails with its fault), and a DMA still pending when the iommufd is closed:
# destroying the HWPT answers it INVALID, as the kernel does.
set -euo pipefail

mnt=${1:-./mount}
source "$(dirname "$0")/lib.sh"
need "$mnt" dev/iommu
dbg=$mnt/sys/kernel/debug/iommufd

ram=$(mktemp /tmp/iopf-ram.XXXXXX)
rec=$(mktemp /tmp/iopf-rec.XXXXXX)
trap 'rm -f "$ram" "$rec"' EXIT
truncate -s 16K "$ram"
printf 'page one: hello' | dd of="$ram" bs=1 seek=$(( 0x1000 )) conv=notrunc status=none
printf 'page two: world' | dd of="$ram" bs=1 seek=$(( 0x2000 )) conv=notrunc status=none

# u32 OFFSET / u64 OFFSET: a little-endian field of the record in $rec.
u32() { od -An -tu4 -j "$1" -N4 "$rec" | tr -d ' '; }
u64() { printf '0x%x' "$(od -An -tu8 -j "$1" -N8 "$rec" | tr -d ' ')"; }
le32() { local v=$1 i; for i in 0 1 2 3; do printf '\\x%02x' $(( (v >> (8 * i)) & 0xff )); done; }
# respond COOKIE CODE: one struct iommu_hwpt_page_response written to the queue (dd: no O_TRUNC, one write).
respond() { printf "$(le32 "$1")$(le32 "$2")" | dd of="$queue" bs=8 iflag=fullblock conv=notrunc status=none; }

for pci in 0000:00:01.0 0000:02:00.0; do
  echo "=== $pci"
  exec 3<>"$mnt/dev/iommu"
  req "CONTEXT"
  ctx=$(get path)
  req "DEVICE_BIND pci=$pci"
  dev=$(get out_devid)
  req "IOAS_ALLOC"
  ioas=$(get out_ioas_id)
  req "FAULT_QUEUE_ALLOC"
  fault=$(get out_fault_id)
  queue=$mnt$ctx/$fault.fault/queue
  req "HWPT_ALLOC dev_id=$dev pt_id=$ioas flags=FAULT_ID_VALID fault_id=$fault"
  hwpt=$(get out_hwpt_id)
  req "DEVICE_ATTACH dev_id=$dev pt_id=$hwpt"

  # 1. a read of IOVA 0x101000: nothing maps it, so the device's request is held
  dma $pci "read iova=0x101000 len=15"
  [[ $dma == "pending dma="* ]] || die "the DMA should be pending"
  id=${dma#pending dma=}; id=${id%% *}

  # 2. the page request record
  dd if="$queue" of="$rec" bs=40 count=1 status=none
  [ "$(stat -c %s "$rec")" = 40 ] || die "no 40-byte record in $queue"
  cookie=$(u32 36)
  echo "record: flags=$(u32 0) dev_id=$(u32 4) pasid=$(u32 8) grpid=$(u32 12) perm=$(u32 16) addr=$(u64 24) length=$(u32 32) cookie=$cookie"
  [ "$(u32 4)" = "$dev" ] && [ "$(u64 24)" = 0x101000 ] && [ "$(u32 16)" = 1 ] || die "unexpected record"

  # 3. bad responses change nothing: a 7-byte write, a cookie nobody waits for
  if printf 'xxxxxxx' | dd of="$queue" bs=7 conv=notrunc status=none 2>/dev/null; then die "a 7-byte response should be ESPIPE"; fi
  if respond 99 0 2>/dev/null; then die "cookie 99 should be EINVAL"; fi
  echo "bad responses refused (a 7-byte write: Illegal seek; cookie 99: Invalid argument)"

  # 4. the fix: map the page; then SUCCESS
  req "IOAS_MAP_FILE ioas_id=$ioas flags=FIXED_IOVA|READABLE|WRITEABLE path=$ram start=0x1000 length=0x1000 iova=0x101000"
  respond "$cookie" 0
  if respond "$cookie" 0 2>/dev/null; then die "an answered cookie should be EINVAL"; fi
  dma $pci "result dma=$id"
  [[ $dma == "done dma=$id"*"data 70616765206f6e653a2068656c6c6f"* ]] || die "the retried DMA should read page one"

  # 5. INVALID: the DMA ends in its fault
  dma $pci "read iova=0x102000 len=15"
  id=${dma#pending dma=}; id=${id%% *}
  dd if="$queue" of="$rec" bs=40 count=1 status=none
  respond "$(u32 36)" 1
  dma $pci "result dma=$id"
  [[ $dma == "done dma=$id"$'\n'"fault "* ]] || die "an INVALID response should fail the DMA"

  # 6. a DMA pending when the iommufd closes: the HWPT's end answers it INVALID
  dma $pci "read iova=0x103000 len=15"
  id=${dma#pending dma=}; id=${id%% *}
  echo "== $mnt$ctx/$fault.fault/info"
  cat "$mnt$ctx/$fault.fault/info"
  exec 3>&-
  until [ ! -e "$mnt$ctx" ]; do :; done
  dma $pci "result dma=$id"
  [[ $dma == "done dma=$id"$'\n'"fault "* ]] || die "closing the iommufd should end the pending DMA with its fault"
done
