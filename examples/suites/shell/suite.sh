#!/usr/bin/env bash
# A tiny shell test suite in TAP, driving the text protocol of the mount that
# `iommufs run` made ($IOMMUFS_MOUNT). Run it with
#
#   iommufs run -- prove examples/suites/shell/suite.sh     (or: iommufs run -- bash examples/suites/shell/suite.sh)
set -u
M=${IOMMUFS_MOUNT:?run me under iommufs run}
n=0
failed=0
trap 'echo "1..$n"; exit $failed' EXIT
is() { n=$((n + 1)); if [ "$1" = "$2" ]; then echo "ok $n - $3"; else echo "not ok $n - $3: got '$1', expected '$2'"; failed=1; fi; }

is "$(cat "$M/sys/class/iommu/dmar0/intel-vtd/model")" 1 "dmar0 is a VT-d unit"
is "$(cat "$M/sys/kernel/iommu_groups/0/type")" DMA "group 0 translates DMA"

exec 3<>"$M/dev/iommu"
ask() { echo "$1" >&3; IFS= read -r -u 3 reply; echo "$reply"; }
is "$(ask 'DEVICE_BIND pci=0000:00:01.0')" "ok out_devid=1" "bind a device"
is "$(ask 'IOAS_ALLOC')" "ok out_ioas_id=2" "allocate an IOAS"
is "$(ask 'IOAS_ALLOC flags=1')" "err EOPNOTSUPP flags=0x1: unknown bits 0x1" "a bad flag is refused"
ctx=$(ask CONTEXT)
is "$(head -n 1 "$M/${ctx##*path=/}/objects")" "context 1: 2 objects" "the debug tree shows both objects"
exec 3>&-
