#!/bin/sh
# A replica that comes back is a full member again: it rejoins the others'
# view, and it fetches every block it missed, even when the network is idle.
#   1. The primary is killed under load; the others change view; it is
#      restarted with its data and catches up. It must then be in the
#      others' view, and with another backup stopped the three left (it
#      among them) must still commit.
#   2. A backup is stopped (SIGTERM) while the network is idle; one block is
#      committed without it; it is restarted. The network stays idle: it must
#      still fetch that one block.
# (A backup paused by SIGSTOP and resumed: node_partition.sh.)
#
# Before main's eec6995 and 0719d02: (1) the restarted old primary caught up
# its ledger but then started a view change of its own to view 1 while the
# others were in view 2, and stayed there until they changed view again;
# (2) node.c update_catchup() set a fetch target only for a peer more than
# one block ahead, so a node one block behind stayed there in an idle network.
. "$(dirname "$0")/lib.sh"

it_setup node_rejoin_view
it_net 4
it_start_all

same_view() { # same_view K L
    [ "$(it_status "$1" view)" = "$(it_status "$2" view)" ]
}

# ---- 1. a restarted primary
p=$(it_status 0 primary)
s=$(((p + 1) % 4))
it_load_bg "$s" "$(it_scale 1500)" "$IT_DIR/load1.out" --batch 50 --rate "$(it_scale 500)" --wait --timeout 40
it_wait 20 "the load commits" it_height_above "$s" 2 || exit 1
it_kill "$p"
it_reap "$IT_LOAD_PID" || it_fail "load without the primary: $(cat "$IT_DIR/load1.out")"
it_start "$p"
it_wait 40 "node$p catches up" it_same_tip 0 1 2 3 || exit 1
# The rejoining replica's view change backs off; under sanitizers (it_wait
# triples the deadline) that stretches too.
it_wait 20 "the restarted node$p joins view $(it_status "$s" view)" same_view "$p" "$s" || {
    it_show_state
    it_log "node$p's log: $(grep -h consensus "$(it_logfile "$p")" | tail -3 | tr '\n' '|')"
}
q=$(((p + 2) % 4))
it_stop "$q"
t0=$(it_now_ms)
it_load "$s" "$(it_scale 200)" --batch 100 --wait --timeout 20 >"$IT_DIR/live.out" 2>&1 ||
    it_fail "with node$q stopped, the other three do not commit: $(tail -n 2 "$IT_DIR/live.out" | tr '\n' ' ')"
it_log "with node$q stopped, $(it_scale 200) txs committed in $(($(it_now_ms) - t0)) ms (view $(it_status "$s" view))"
it_start "$q"

# ---- 2. one block missed, an idle network
it_wait 20 "all four agree" it_same_tip 0 1 2 3 || exit 1
b=$(((p + 2) % 4))
it_stop "$b"
h=$(it_status "$s" height)
it_load "$s" 1 --wait --timeout 20 >"$IT_DIR/load2.out" 2>&1 || it_fail "one tx without node$b: $(cat "$IT_DIR/load2.out")"
it_wait 10 "the others agree" it_same_tip $(it_all | tr ' ' '\n' | grep -v "^$b$" | tr '\n' ' ') || exit 1
it_log "node$b stopped at height $h; the others are at $(it_status "$s" height)"
it_start "$b"
it_wait 20 "node$b fetches what it missed" it_same_tip 0 1 2 3 || it_show_state
it_done
