# Shared by the shell tests: usage check of the mount point argument ($M) and
# TAP reporting. Each check prints "ok N - ..."; the first failure prints
# "not ok N - ..." with what was seen and exits 1 (2 for bad usage). The plan
# line "1..N" comes last, on any exit, so `prove` can read the result.
set -u
export LC_ALL=C

if [ $# -ne 1 ]; then
  echo "usage: $0 MOUNT_POINT" >&2
  exit 2
fi
M=$(cd "$1" 2>/dev/null && pwd -P) || { echo "not ok - $1 is not a directory"; exit 1; }
n=0
trap 'echo "1..$n"' EXIT

ok() { n=$((n + 1)); echo "ok $n - $*"; }
fail() { n=$((n + 1)); echo "not ok $n - $*"; exit 1; }
# check DESCRIPTION COMMAND...: runs the command, ok if it succeeds
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
# same VALUE EXPECTED DESCRIPTION
same() { if [ "$1" = "$2" ]; then ok "$3"; else fail "$3: got '$1', expected '$2'"; fi; }
# gone PATH: waits until PATH no longer exists. close() returns before the
# server has handled the RELEASE the kernel queued for it, so a closed
# context's directory goes a moment later: wait for that state, never a time.
# The bound (20 s) only turns a lost RELEASE into a failure instead of a hang.
gone() { local end=$((SECONDS + 20)); while [ -e "$1" ]; do [ "$SECONDS" -lt "$end" ] || return 1; done; }
