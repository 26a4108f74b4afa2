#!/bin/sh
# A node whose disk fills: node 3 of a 4-node network keeps its data on a
# small tmpfs (we run as root) while records with large plaintext fields
# arrive. It must log the store error, answer /health with 503 and the
# reason, keep serving status, state.query and block.get, refuse tx.submit
# and stop at its height while the other three keep committing. With room
# again (the tmpfs remounted larger) and restarted it must catch up to the
# same height, state root and block hash, with a whole chain (no
# half-written block) and every tx the RPC acknowledged.
#
# Where no filesystem can be mounted the test says SKIPPED for the tmpfs and
# runs the same checks with node 3 under RLIMIT_FSIZE instead (writes past
# the limit fail with EFBIG; bexd itself ignores SIGXFSZ, so the shell does
# not), restarting it without the limit. Either way the store error must say
# the disk is full. DISKFULL_MODE=fsize chooses that way even where mounting works.
set -u
sk_root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd -P)
# shellcheck source=scripts/soak_lib.sh
. "$sk_root/scripts/soak_lib.sh"

sk_setup diskfull
sk_init 4 || exit 1
data=$TESTNET_DIR/node3/data
mode=${DISKFULL_MODE:-tmpfs}
if [ "$mode" = tmpfs ]; then
    mkdir -p "$data"
    mv "$data" "$data.orig"
    mkdir "$data"
    if why=$(mount -t tmpfs -o size=12m bex-diskfull "$data" 2>&1); then
        sk_mounted "$data"
        cp -a "$data.orig/." "$data/"
        echo "node3 data on a 12 MiB tmpfs"
    else
        echo "SKIPPED tmpfs: cannot mount a filesystem here ($why); testing with RLIMIT_FSIZE instead"
        rmdir "$data"
        mv "$data.orig" "$data"
        mode=fsize
    fi
fi
k=0
while [ "$k" -lt 3 ]; do
    sk_start "$k" || exit 1
    k=$((k + 1))
done
if [ "$mode" = fsize ]; then
    # 12 MiB for every file node 3 writes, in the units of this shell's ulimit -f.
    unit=$(sh -c 'ulimit -f 1; grep "Max file size" /proc/self/limits' | awk '{ print $4 }')
    case $unit in
    '' | *[!0-9]*) unit=512 ;;
    esac
    SK_PRE="ulimit -f $((12 * 1024 * 1024 / unit))"
    echo "node3 runs with a file size limit of 12 MiB (ulimit -f $((12 * 1024 * 1024 / unit)))"
fi
sk_start 3 || exit 1
SK_PRE=""
if [ "$mode" = fsize ]; then
    grep "Max file size" "/proc/$(sk_pid 3)/limits"
fi
sk_wait 60 sk_all_healthy || {
    echo "FAIL: the network did not come up"
    sk_tail 3
    exit 1
}

rate=60
sk_san && rate=30
"$SOAKLOAD" run --testnet "$TESTNET_DIR" --seconds 25 --rate "$rate" --value-bytes 30000 --window 32 \
    --drain 30 --acked "$SK_WORK/acked.txt" >"$SK_WORK/run.json" 2>"$SK_WORK/load.log" &
load=$!
sk_track "$load"

if sk_wait 40 sk_refusing 3; then
    sk_check_refusal 3 'disk full'
    pid=$(sk_pid 3) || sk_fail "node3 is not running while its disk is full"
else
    sk_fail "node3 did not report a full disk within 40s (data: $(du -sh "$data" | cut -f 1))"
    sk_tail 3
fi
wait "$load"
echo "load: $(cat "$SK_WORK/run.json")"

sk_signal 3 TERM 10
if [ "$mode" = tmpfs ]; then
    mount -o remount,size=256m "$data" || sk_fail "cannot grow the tmpfs"
fi
sk_start 3 || sk_fail "node3 did not restart"
sk_check_recovery 3 "$SK_WORK/acked.txt"

if [ "$sk_failures" -ne 0 ]; then
    sk_tail 3 30
    echo "node_diskfull ($mode): $sk_failures failures"
    exit 1
fi
echo "node_diskfull ($mode): ok"
