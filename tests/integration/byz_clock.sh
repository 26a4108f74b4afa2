#!/bin/sh
# Clock skew: node0, the primary of view 0 in a 4-node network, runs
# bexd-byz with its wall clock shifted (BEX_CLOCK_OFFSET_MS), honest
# otherwise. The backups refuse a proposal whose time is more than
# limits.clock_skew_max_ms from their clock (ahead; or behind, for a fresh
# proposal of the current view) and count it in
# bex_proposals_refused_total{reason="clock"}; the view changes and the
# network goes on under an honest primary.
#  +1 h (default limit, 10 s): no block ever carries node0's time: every
#        committed block's time is within a few seconds of real time.
#  -1 h (limit set to 2 s in every node.json): node0 stamps the last block's
#        time (block time never goes back) until that falls 2 s behind, then
#        it is deposed; block times never decrease, never precede the
#        genesis, and the last one is close to real time again.
# All four nodes agree in both cases. Prints the heights, views, refusals
# and the range of block times.
. "$(dirname "$0")/byz_lib.sh"

it_setup byz_clock
slack=5000

# block_times FROM TO: "height time_ms" of node 1's blocks FROM..TO.
block_times() {
    it_blocks 1 "$1" "$2" .time_ms >"$IT_DIR/times"
    grep -q ERROR "$IT_DIR/times" && it_fail "block.get failed: $(grep ERROR "$IT_DIR/times" | head -3)"
}

# ---- +1 hour
t0=$(it_now_ms)
byz_net 4 0 "" 3600000
byz_load 1000 400 3
t1=$(it_now_ms)
it_wait 10 "node0 on the same tip as the others" it_same_tip 0 1 2 3 || it_show_tips
byz_expect_metric 'bex_proposals_refused_total{reason="clock"}'
view=$(it_status 1 view)
[ "$view" -gt 0 ] || it_fail "still in view 0 under the primary whose clock is an hour ahead"
block_times 1 "$BYZ_H1"
bad=$(awk -v lo=$((t0 - slack)) -v hi=$((t1 + slack)) '$2 < lo || $2 > hi' "$IT_DIR/times" | wc -l)
it_log "+1 h: height $BYZ_H1 in view $view; block times from $(($(sort -k2n "$IT_DIR/times" | head -1 | cut -d' ' -f2) - t0))" \
    "to $(($(sort -k2n "$IT_DIR/times" | tail -1 | cut -d' ' -f2) - t0)) ms after the test started; $bad outside real time"
[ "$bad" -eq 0 ] || it_fail "$bad blocks carry a time more than $slack ms outside the real time of the test"
byz_all_alive

# ---- -1 hour, on a fresh network
for k in 0 1 2 3; do
    it_kill "$k"
done
rm -rf "$IT_NET"
skew=2000
it_net 4
for k in 0 1 2 3; do
    jq ".limits.clock_skew_max_ms = $skew" "$IT_NET/node$k/node.json" >"$IT_DIR/node.json" &&
        mv "$IT_DIR/node.json" "$IT_NET/node$k/node.json" || it_die "cannot set limits.clock_skew_max_ms"
done
byz_start_net 0 "" -3600000
genesis_ms=$(jq -r .genesis_time_ms "$IT_NET/genesis.json")
byz_load 1000 400 3
t1=$(it_now_ms)
it_wait 10 "node0 on the same tip as the others" it_same_tip 0 1 2 3 || it_show_tips
byz_expect_metric 'bex_proposals_refused_total{reason="clock"}'
view=$(it_status 1 view)
[ "$view" -gt 0 ] || it_fail "still in view 0 under the primary whose clock is an hour behind"
block_times 1 "$BYZ_H1"
last=$(tail -1 "$IT_DIR/times" | cut -d' ' -f2)
[ "$last" -ge $((t1 - skew - slack)) ] || it_fail "the last block's time is $((t1 - last)) ms behind real time"
back=$(awk 'NR > 1 && $2 < prev { n++ } { prev = $2 } END { print n + 0 }' "$IT_DIR/times")
out=$(awk -v lo="$genesis_ms" -v hi=$((t1 + slack)) '$2 < lo || $2 > hi' "$IT_DIR/times" | wc -l)
it_log "-1 h: height $BYZ_H1 in view $view; block times from genesis +$(($(sort -k2n "$IT_DIR/times" |
    head -1 | cut -d' ' -f2) - genesis_ms)) to +$(($(sort -k2n "$IT_DIR/times" | tail -1 | cut -d' ' -f2) - genesis_ms)) ms"
[ "$back" -eq 0 ] || it_fail "block time went back $back times"
[ "$out" -eq 0 ] || it_fail "$out blocks carry a time before the genesis or in the future"
byz_all_alive
it_done
