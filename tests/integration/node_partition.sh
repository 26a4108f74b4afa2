#!/bin/sh
# bexd test 5: one node is cut off (SIGSTOP) for a while under load and then
# resumed (SIGCONT), first a backup, then the primary (which wakes up in a
# view the others have left). The others keep committing while it sleeps; it
# catches up and ends in the others' view; and no committed block differs
# anywhere: block.get's hash of every height is the same on every node, and
# no tx is in two blocks.
. "$(dirname "$0")/lib.sh"

it_setup node_partition
rate=$(it_scale 400)
it_net 4
it_start_all

# same_view K L: nodes K and L are in the same view.
same_view() {
    [ "$(it_status "$1" view)" = "$(it_status "$2" view)" ]
}

# cut_off K LOADER: under a load submitted to node LOADER, stops node K until
# the others have committed 10 more blocks and 3 s have passed, resumes it
# and waits until all four agree.
cut_off() {
    it_load_bg "$2" "$(it_scale 2400)" "$IT_DIR/load.$1.out" --batch 50 --rate "$rate" --wait --timeout 50
    it_wait 20 "the load commits" it_height_above "$2" "$(it_status "$2" height)" || exit 1
    h_stop=$(it_status "$2" height)
    t_stop=$(it_now_ms)
    it_signal "$1" STOP
    it_log "node$1 stopped at height $h_stop (view $(it_status "$2" view))"
    it_wait 30 "the others commit 10 blocks without node$1" it_height_above "$2" $((h_stop + 10)) || {
        it_show_state
        exit 1
    }
    while [ $(($(it_now_ms) - t_stop)) -lt 3000 ]; do
        sleep 0.1
    done
    h_cont=$(it_status "$2" height)
    it_signal "$1" CONT
    it_log "node$1 resumed; the others are at height $h_cont (view $(it_status "$2" view))"
    t_cont=$(it_now_ms)
    it_reap "$IT_LOAD_PID" || it_fail "the load failed: $(cat "$IT_DIR/load.$1.out")"
    it_wait 40 "node$1 catches up" it_same_tip 0 1 2 3 || {
        it_show_state
        exit 1
    }
    it_log "node$1 caught up in $(($(it_now_ms) - t_cont)) ms after SIGCONT; load: $(tail -n 1 "$IT_DIR/load.$1.out")"
    it_wait 15 "node$1 is in the others' view" same_view "$1" "$2" ||
        it_log "views: node$1 $(it_status "$1" view), node$2 $(it_status "$2" view)"
    it_running "$1" || it_die "node$1 exited"
}

p=$(it_status 0 primary)
b=$(((p + 2) % 4))
cut_off "$b" $(((p + 1) % 4))
p=$(it_status 0 primary)
cut_off "$p" $(((p + 1) % 4))
it_show_tips

# Every height on every node: the same block hash.
height=$(it_status 0 height)
for k in 0 1 2 3; do
    it_blocks "$k" 0 "$height" >"$IT_DIR/blocks.$k"
    grep -q ERROR "$IT_DIR/blocks.$k" && it_fail "node$k: $(grep ERROR "$IT_DIR/blocks.$k" | head -3)"
    it_eq "node$k: blocks listed" "$(wc -l <"$IT_DIR/blocks.$k")" $((height + 1))
    [ "$k" -eq 0 ] || cmp -s "$IT_DIR/blocks.0" "$IT_DIR/blocks.$k" ||
        it_fail "node$k's blocks differ from node0's: $(diff "$IT_DIR/blocks.0" "$IT_DIR/blocks.$k" | head -6 | tr '\n' '|')"
done
it_no_dup_txs 0 "$height"
# And each block links to the one before it.
it_blocks 2 1 "$height" .prev_hash >"$IT_DIR/prev.2"
awk 'NR == FNR { hash[$1] = $2; next } $2 != hash[$1 - 1] { print "block " $1 " does not link to " ($1 - 1); bad = 1 }
     END { exit bad }' "$IT_DIR/blocks.0" "$IT_DIR/prev.2" || it_fail "the chain does not link"
it_log "$((height + 1)) blocks (0..$height) identical on all 4 nodes, view $(it_status 0 view)"
it_done
