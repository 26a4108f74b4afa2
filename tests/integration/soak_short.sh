#!/bin/sh
# PENDING (session 1): fails intermittently on a real node bug: after a view
# change nulls in-flight proposals, a later block executes a sender's higher
# nonces first and they get ENONCE receipts (bug A in the session note).
# Re-enable with the fix; make soak (scripts/soak.sh) reports the same.
# The short form of the crash soak (scripts/soak.sh): 30 s of load on a
# 4-node testnet with a random node killed (SIGKILL) and restarted every few
# seconds; then every node must agree and hold every acknowledged tx exactly
# once. Passes when soak.sh does and at least 3 kills were survived.
set -u
root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd -P)
B=${B:-build}
rate=150
case $B in
*/san | san) rate=60 ;;
esac
out=$(mktemp /tmp/bex-soak-short-XXXXXX)
trap 'rm -f "$out"' EXIT
B=$B SOAK_SECONDS=30 SOAK_RATE=$rate SOAK_GAP_MS="800 2000" SOAK_DOWN_MS="300 1500" \
    sh "$root/scripts/soak.sh" >"$out" 2>&1
rc=$?
cat "$out"
survived=$(sed -n 's/^soak: kills survived: \([0-9]*\) of.*/\1/p' "$out")
if [ "$rc" -ne 0 ]; then
    echo "FAIL: scripts/soak.sh exited with $rc"
    exit 1
fi
if [ "${survived:-0}" -lt 3 ]; then
    echo "FAIL: only ${survived:-0} kills survived, want at least 3"
    exit 1
fi
echo "soak_short: ok"
