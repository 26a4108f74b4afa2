#!/bin/sh
# No transaction is listed in two blocks, also across a view change that
# re-proposes the old view's last, prepared but uncommitted, block.
# Each round: under load, the primary and one backup are paused together
# right after the first batch reaches the mempool (the two left can prepare
# the primary's block but not commit it); the backup is resumed, the others
# change view and the new primary re-proposes that block; then the old
# primary is resumed. Up to five rounds, every block of every node checked.
#
. "$(dirname "$0")/lib.sh"

it_setup node_dup_txs
it_net 4
it_start_all

# has_mempool K: node K holds submitted txs.
has_mempool() {
    [ "$(it_status "$1" mempool_txs)" -gt 0 ]
}
round=1
while [ "$round" -le 5 ]; do
    p=$(it_status 1 primary)
    s=$(((p + 1) % 4))
    o=$(((p + 3) % 4))
    it_load_bg "$s" 1000 "$IT_DIR/load.out" --batch 500 --wait --timeout 60
    it_wait 10 "the load reaches node$s" has_mempool "$s" || exit 1
    sleep 0.05
    it_signal "$p" STOP
    it_signal "$o" STOP
    sleep 1.5
    it_signal "$o" CONT
    sleep 1.5
    it_signal "$p" CONT
    it_reap "$IT_LOAD_PID" || it_fail "round $round: the load failed: $(cat "$IT_DIR/load.out")"
    it_wait 40 "all four agree" it_same_tip 0 1 2 3 || it_show_tips
    h=$(it_status "$s" height)
    it_log "round $round: primary $p paused with node$o; height $h, view $(it_status "$s" view)"
    for k in 0 1 2 3; do
        it_no_dup_txs "$k" "$h" || break
    done
    [ "$IT_FAILURES" -eq 0 ] || break
    round=$((round + 1))
done
it_done
