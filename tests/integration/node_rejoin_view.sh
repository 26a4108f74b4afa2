#!/bin/sh
# A replica that comes back (restarted after a crash, or resumed after a
# pause) rejoins the others' view, not only their chain: afterwards the
# network again tolerates one faulty replica. Two cases:
#   1. the primary of view 0 is killed, the others move to view 1; it is
#      restarted with its data and catches up; it must move to view 1 too;
#   2. a backup is paused (SIGSTOP) under load long enough for its request
#      timer to expire, then resumed; it must end in the others' view.
# Each time one other backup is then stopped: the three left, the returned
# replica among them, must still commit (the test prints how long it took).
#
. "$(dirname "$0")/lib.sh"

it_setup node_rejoin_view
it_net 4
it_start_all

same_view() { # same_view K L
    [ "$(it_status "$1" view)" = "$(it_status "$2" view)" ]
}
# still_live DOWN LOADER: with node DOWN stopped, a load through LOADER commits.
still_live() {
    it_stop "$1"
    _t=$(it_now_ms)
    it_load "$2" 200 --batch 100 --wait --timeout 20 >"$IT_DIR/live.out" 2>&1 ||
        it_fail "with node$1 stopped the other three do not commit: $(tail -n 2 "$IT_DIR/live.out" | tr '\n' ' ')"
    it_log "with node$1 stopped, 200 txs committed in $(($(it_now_ms) - _t)) ms (view $(it_status "$2" view))"
    it_start "$1"
    it_wait 30 "node$1 back" it_same_tip 0 1 2 3 || true
}

# ---- 1. a restarted primary
p=$(it_status 0 primary)
s=$(((p + 1) % 4))
it_load_bg "$s" 1500 "$IT_DIR/load1.out" --batch 50 --rate 500 --wait --timeout 40
it_wait 20 "the load commits" it_height_above "$s" 2 || exit 1
it_kill "$p"
it_reap "$IT_LOAD_PID" || it_fail "load without the primary: $(cat "$IT_DIR/load1.out")"
it_start "$p"
it_wait 40 "node$p catches up" it_same_tip 0 1 2 3 || exit 1
it_wait 15 "the restarted node$p joins view $(it_status "$s" view)" same_view "$p" "$s" ||
    it_log "views: node$p $(it_status "$p" view), node$s $(it_status "$s" view); node$p's log: $(grep -h consensus "$(it_logfile "$p")" | tail -2 | tr '\n' '|')"
still_live $(((p + 2) % 4)) "$s"

# ---- 2. a paused backup
p=$(it_status "$s" primary)
s=$(((p + 1) % 4))
b=$(((p + 2) % 4))
it_load_bg "$s" 2000 "$IT_DIR/load2.out" --batch 50 --rate 400 --wait --timeout 40
it_wait 20 "the load commits" it_height_above "$s" "$(it_status "$s" height)" || exit 1
it_signal "$b" STOP
t0=$(it_now_ms)
while [ $(($(it_now_ms) - t0)) -lt 3000 ]; do
    sleep 0.1
done
it_signal "$b" CONT
it_reap "$IT_LOAD_PID" || it_fail "load with node$b paused: $(cat "$IT_DIR/load2.out")"
it_wait 40 "node$b catches up" it_same_tip 0 1 2 3 || exit 1
it_wait 15 "the resumed node$b is in the others' view" same_view "$b" "$s" ||
    it_log "views: node$b $(it_status "$b" view), node$s $(it_status "$s" view); node$b's log: $(grep -h consensus "$(it_logfile "$b")" | tail -2 | tr '\n' '|')"
still_live $(((p + 3) % 4)) "$s"
it_done
