#!/bin/sh
# Replay: node4 of a 5-node network (f = 1) runs bexd-byz with
# BEX_BYZ=replay and re-sends frames it captured earlier (txs, HELLOs, votes,
# proposals of the other nodes) to random peers, about 300 a second. Under
# load the honest nodes commit everything and agree; their engines count the
# stale votes as duplicates, refuse a node's own votes played back to it
# (bex_pbft_dropped_total{reason="non_member"}), and old proposals are
# refused as out of reach, with at most one warning a second in the log.
. "$(dirname "$0")/byz_lib.sh"

it_setup byz_replay
byz_net 5 4 replay
byz_load 1500 500 5
byz_expect_sent replay
byz_expect_metric 'bex_pbft_dropped_total{reason="non_member"}'
byz_expect_metric 'bex_pbft_dropped_total{reason="duplicate"}'
for k in $BYZ_HONEST; do
    secs=$(($(it_now_ms) - IT_T0))
    w=$(grep -c "refused a proposal" "$(it_logfile "$k")")
    [ "$w" -le $((secs / 1000 + 2)) ] || it_fail "node$k logged $w proposal refusals in $((secs / 1000)) s"
done
byz_show_faults
it_done
