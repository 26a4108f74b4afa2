#!/bin/sh
# A node whose LMDB map fills: node 3 of a 4-node network runs with the
# smallest map (map_size_mb 16) that may not grow (map_size_max_mb 16) while
# records with large plaintext fields arrive. It must log the store error, answer /health with 503 and the
# reason, keep serving status, state.query and block.get, refuse tx.submit
# and stop at its height while the other three keep committing. Restarted
# with a larger map it must catch up to the same height, state root and block
# hash, with a whole chain (no half-written block) and every tx the RPC
# acknowledged. A refusing node sees every proposal as out of reach: its log
# must stay rate-limited (a few such lines per 10 s, not one per proposal).
# Node 2 starts with the same small map but may grow it (the default
# maximum, 16 x map_size_mb): it must grow the map and keep up.
set -u
sk_root=$(CDPATH='' cd -- "$(dirname -- "$0")/../.." && pwd -P)
# shellcheck source=scripts/soak_lib.sh
. "$sk_root/scripts/soak_lib.sh"

sk_setup mapfull
started=$(sk_now)
sk_init 4 || exit 1
cfg=$TESTNET_DIR/node3/node.json
sed -i 's/"map_size_mb": *[0-9]*/"map_size_mb": 16, "map_size_max_mb": 16/' "$cfg"
grep -q '"map_size_mb": 16, "map_size_max_mb": 16' "$cfg" || {
    echo "FAIL: cannot set map_size_mb in $cfg"
    exit 1
}
cfg2=$TESTNET_DIR/node2/node.json
sed -i 's/"map_size_mb": *[0-9]*/"map_size_mb": 16/' "$cfg2"
grep -q '"map_size_mb": 16' "$cfg2" || {
    echo "FAIL: cannot set map_size_mb in $cfg2"
    exit 1
}
for k in 0 1 2 3; do
    sk_start "$k" || exit 1
done
sk_wait 60 sk_all_healthy || {
    echo "FAIL: the network did not come up"
    sk_tail 3
    exit 1
}

# About 30 KB of plaintext per record: the 16 MiB map holds a few hundred.
rate=60
sk_san && rate=30
"$SOAKLOAD" run --testnet "$TESTNET_DIR" --seconds 25 --rate "$rate" --value-bytes 30000 --window 32 \
    --drain 30 --acked "$SK_WORK/acked.txt" >"$SK_WORK/run.json" 2>"$SK_WORK/load.log" &
load=$!
sk_track "$load"

if sk_wait 40 sk_refusing 3; then
    sk_check_refusal 3 'map full|MAPFULL|map'
else
    sk_fail "node3 did not report a full map within 40s (data: $(du -sh "$TESTNET_DIR/node3/data" | cut -f 1))"
    sk_tail 3
fi
wait "$load"
echo "load: $(cat "$SK_WORK/run.json")"
grep -q 'store: map grown from 16 to 32 MiB' "$TESTNET_DIR/node2/bexd.log" ||
    sk_fail "node2 did not grow its map ($(du -sh "$TESTNET_DIR/node2/data" | cut -f 1) of data)"
if sk_refusing 2; then
    sk_fail "node2 refused writes although its map may grow"
    sk_tail 2
fi
[ "$(sk_health 2)" = 200 ] || sk_fail "node2 is not healthy after growing its map"

sk_signal 3 TERM 10
sed -i 's/"map_size_mb": *16, "map_size_max_mb": 16/"map_size_mb": 256/' "$cfg"
sk_start 3 || sk_fail "node3 did not restart"
sk_check_recovery 3 "$SK_WORK/acked.txt"

# At most 5 lines per 10 s window for each of the two runs of node 3.
invalid=$(grep -c 'invalid proposal' "$TESTNET_DIR/node3/bexd.log")
allowed=$((5 * (($(sk_now) - started) / 10 + 2)))
echo "node3 logged $invalid invalid-proposal lines (at most $allowed allowed)"
[ "$invalid" -le "$allowed" ] || sk_fail "node3 logged $invalid invalid-proposal lines, more than $allowed"

if [ "$sk_failures" -ne 0 ]; then
    sk_tail 3 30
    echo "node_mapfull: $sk_failures failures"
    exit 1
fi
echo "node_mapfull: ok"
