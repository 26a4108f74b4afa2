#!/bin/sh
# Byzantine voter: node4 of a 5-node network (f = 1) runs bexd-byz with
# BEX_BYZ=conflict_votes: each PREPARE and COMMIT it sends is doubled by a
# correctly signed one for a random digest, and some peers get only the
# false one. Under load the four honest nodes commit everything and agree on
# height, block hash and state root; the engines refuse the second digest of
# node4 for a (view, seq) (bex_pbft_dropped_total{reason="conflict"}).
. "$(dirname "$0")/byz_lib.sh"

it_setup byz_conflict_votes
byz_net 5 4 conflict_votes
byz_load 1500 500 5
byz_expect_sent conflict_votes
byz_expect_metric 'bex_pbft_dropped_total{reason="conflict"}'
byz_show_faults
it_done
