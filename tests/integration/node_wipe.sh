#!/bin/sh
# bexd test 3: a node wiped of its data directory (stopped, data/ removed,
# restarted) rejoins and catches up from its peers: the same height, state
# root and block hash, every block the same as its peers', and it takes part
# in later commits. The network is idle while it catches up, so nothing but
# the node's own start makes it fetch. Prints the catch-up time.
. "$(dirname "$0")/lib.sh"

it_setup node_wipe
it_net 4
it_start_all

it_load 0 "$(it_scale 1000)" --batch 100 --wait --timeout 30 >"$IT_DIR/load1.out" 2>&1 ||
    it_die "first load: $(cat "$IT_DIR/load1.out")"
it_stop 3 || exit 1
rm -rf "$IT_NET/node3/data"
[ ! -e "$IT_NET/node3/data" ] || it_die "node3/data is still there"
it_log "node3 stopped and wiped"

# The others commit more while it is gone.
it_load 1 "$(it_scale 1000)" --batch 100 --wait --timeout 30 >"$IT_DIR/load2.out" 2>&1 ||
    it_die "second load: $(cat "$IT_DIR/load2.out")"
it_wait 20 "nodes 0-2 agree" it_same_tip 0 1 2 || exit 1
height=$(it_status 0 height)
it_log "nodes 0-2 at height $height; restarting node3 with no data"

t0=$(it_now_ms)
it_start 3
it_wait 45 "the wiped node3 catches up" it_same_tip 0 1 2 3 || {
    it_show_tips
    exit 1
}
catchup_ms=$(($(it_now_ms) - t0))
it_show_tips
[ -d "$IT_NET/node3/data" ] || it_fail "node3 made no data directory"
[ "$(it_status 3 catching_up)" = false ] || it_fail "node3 still says it is catching up"

it_blocks 0 0 "$height" >"$IT_DIR/blocks.0"
it_blocks 3 0 "$height" >"$IT_DIR/blocks.3"
it_eq "blocks 0..$height of node0" "$(wc -l <"$IT_DIR/blocks.0")" $((height + 1))
grep -q ERROR "$IT_DIR/blocks.3" && it_fail "node3: $(grep ERROR "$IT_DIR/blocks.3" | head -3)"
cmp -s "$IT_DIR/blocks.0" "$IT_DIR/blocks.3" || it_fail "node3's blocks differ from node0's: $(diff "$IT_DIR/blocks.0" "$IT_DIR/blocks.3" | head -5)"

# The receipts came along with the blocks: the last tx of the second load.
last=$(it_rpc_result "$(it_url 0)" block.get "{\"height\":$height}" '.txs[-1]')
it_eq "node3's receipt of the last tx" "$(it_rpc_result "$(it_url 3)" tx.get "{\"id\":\"$last\"}" '"\(.status) \(.code) \(.height)"')" "committed 0 $height"
it_eq "node3's record list" \
    "$(it_rpc_result "$(it_url 3)" state.query '{"contract":"record","query":"list","args":{"resource":"city.police/load","limit":5}}' '.records | length')" 5

# It takes part again: its own agency's load commits everywhere.
it_wait 20 "node3 connected" it_connected 3 || exit 1
it_load 3 "$(it_scale 300)" --batch 100 --wait --timeout 30 >"$IT_DIR/load3.out" 2>&1 ||
    it_fail "load through node3: $(cat "$IT_DIR/load3.out")"
it_wait 20 "all four agree at the end" it_same_tip 0 1 2 3 || it_show_tips

echo "FIGURE node_wipe: the wiped node caught up $height blocks in $catchup_ms ms"
it_done
