#!/bin/sh
# bexd test 2: the primary is killed with SIGKILL while the network is under
# load; the other three change view and keep committing (the load finishes
# on them); the killed node, restarted, catches up to the same height, state
# root and block hash, and takes part again (a second load commits on all
# four). Prints how long the view change took: from the kill to the proposal
# time of the first block of the new view (block time, on the same clock),
# and when the test saw a block certified in the new view (an upper bound:
# the test polls through curl on a busy machine); and the catch-up time of
# the restarted node.
. "$(dirname "$0")/lib.sh"

it_setup node_viewchange
count=$(it_scale 3000)
rate=$(it_scale 600)
it_net 4
it_start_all

v0=$(it_status 0 view)
p=$(it_status 0 primary)
s=$(((p + 1) % 4))
others=""
for k in 0 1 2 3; do
    [ "$k" -eq "$p" ] || others="$others $k"
done
it_log "view $v0, primary node$p; load goes to node$s at $rate tx/s"

it_load_bg "$s" "$count" "$IT_DIR/load1.out" --batch 50 --rate "$rate" --wait --timeout 50
it_wait 20 "the load commits a first block" it_height_above "$s" 1 || exit 1

h_kill=$(it_status "$s" height)
t_kill=$(it_now_ms)
it_kill "$p"
it_log "SIGKILLed the primary node$p at height $h_kill"

# Polls node s until a block above h_kill carries a commit certificate of a
# later view: the first block committed after the view change.
vc_committed() {
    st=$(it_rpc_result "$(it_url "$s")" status '{}' '"\(.view) \(.height)"' 2>/dev/null) || return 1
    view=${st% *}
    height=${st#* }
    [ "$view" -gt "$v0" ] && [ "$height" -gt "$checked" ] || return 1
    vc_height=$(it_blocks "$s" $((checked + 1)) "$height" .cert.view |
        awk -v v0="$v0" '$2 ~ /^[0-9]+$/ && $2 > v0 { print $1; exit }')
    checked=$height
    [ -n "$vc_height" ]
}
checked=$h_kill
vc_height=""
it_wait 30 "a block committed in a view after $v0" vc_committed || exit 1
seen_ms=$(($(it_now_ms) - t_kill))
v1=$(it_status "$s" view)
# The first block proposed in the new view (a block re-proposed by the new
# view keeps its old proposal).
first_new=""
for h in $(seq "$vc_height" "$(it_status "$s" height)"); do
    b=$(it_rpc_result "$(it_url "$s")" block.get "{\"height\":$h}" '"\(.view) \(.time_ms) \(.cert.view)"')
    set -- $b
    if [ "$1" -gt "$v0" ]; then
        [ "$3" -gt "$v0" ] || it_fail "block $h proposed in view $1 but certified in view $3"
        first_new=$h
        vc_ms=$(($2 - t_kill))
        break
    fi
done
[ -n "$first_new" ] || it_die "no block proposed after view $v0"
it_log "node$s: view $v1; first block committed in it: $vc_height; first proposed in it: $first_new"
for k in $others; do
    [ "$(it_status "$k" primary)" != "$p" ] || it_fail "node$k still names the dead node$p primary"
    [ "$(it_status "$k" view_changes)" -ge 1 ] || it_fail "node$k counts no view change"
done

# The survivors finish the load.
it_reap "$IT_LOAD_PID" || it_fail "the load did not finish without the primary: $(cat "$IT_DIR/load1.out")"
it_log "load: $(cat "$IT_DIR/load1.out" | tr '\n' ' ')"
# shellcheck disable=SC2086
it_wait 20 "the survivors agree" it_same_tip $others || exit 1
h_after=$(it_status "$s" height)
[ "$h_after" -gt "$vc_height" ] || it_fail "no block after the view change's first (height $h_after)"

# The killed node restarts with its data and catches up with an idle network.
t_restart=$(it_now_ms)
it_start "$p"
it_wait 40 "the restarted node$p catches up" it_same_tip 0 1 2 3 || {
    it_show_tips
    exit 1
}
catchup_ms=$(($(it_now_ms) - t_restart))
it_show_tips

# And takes part again: a second load commits on all four. (Whether it also
# rejoins the others' view: node_rejoin_view.sh.pending.)
it_wait 20 "node$p reconnects" it_connected "$p" || exit 1
it_load "$s" "$(it_scale 300)" --batch 100 --wait --timeout 30 >"$IT_DIR/load2.out" 2>&1 ||
    it_fail "second load: $(cat "$IT_DIR/load2.out")"
it_wait 20 "all four agree after the second load" it_same_tip 0 1 2 3 || it_show_state

echo "FIGURE node_viewchange: view change $vc_ms ms (SIGKILL of primary node$p to the proposal of" \
    "block $first_new in view $v1; the test saw it committed after $seen_ms ms);" \
    "restarted node caught up in $catchup_ms ms"
it_done
