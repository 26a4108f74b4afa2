#!/bin/sh
# What `make demo` runs once the build is done: a fresh local testnet
# (testnet/up.sh), then the sharing scenarios (testnet/demo.sh). The demo
# needs a chain of its own, so a network already in TESTNET_DIR is wiped
# first. The network keeps running afterwards; testnet/down.sh stops it.
#
# Environment: B (build directory), TESTNET_DIR (default testnet/run).
set -u
# shellcheck source=testnet/common.sh
. "$(dirname -- "$0")/common.sh"

if [ -d "$TESTNET_DIR" ]; then
    echo "make demo: replacing the network in $(tn_show "$TESTNET_DIR") with a fresh one"
    sh "$tn_root/testnet/down.sh" --wipe >/dev/null || {
        echo "make demo: testnet/down.sh --wipe failed; stop the network by hand" >&2
        exit 1
    }
fi
log=$(mktemp /tmp/bex-demo-up-XXXXXX) || exit 1
t0=$(tn_now)
echo "make demo: starting a 4-node network (testnet/up.sh)"
if ! sh "$tn_root/testnet/up.sh" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "make demo: the network did not come up" >&2
    exit 1
fi
rm -f "$log"
echo "make demo: network up in $(($(tn_now) - t0))s"
echo
exec sh "$tn_root/testnet/demo.sh"
