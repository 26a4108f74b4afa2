#!/bin/sh
# Byzantine primary: node0, the primary of view 0 in a 5-node network (f = 1),
# runs bexd-byz with BEX_BYZ=equivocate and sends two different blocks
# (PRE-PREPAREs with different digests) for the same seq to different
# backups. Neither block can gather a quorum, so the honest nodes change view
# and go on without it: under load they commit everything, agree on height,
# block hash and state root, and no block of their chain was proposed by
# node0. Prints the heights, the view reached and the engine's drop counters.
. "$(dirname "$0")/byz_lib.sh"

it_setup byz_equivocate
byz_net 5 0 equivocate
byz_load 1500 500 5
k=$(byz_first_honest)
view=$(it_status "$k" view)
[ "$view" -gt 0 ] || it_fail "the honest nodes are still in view 0 of the equivocating primary"
it_blocks "$k" 1 "$BYZ_H1" .proposer >"$IT_DIR/proposers"
by0=$(awk '$2 == 0' "$IT_DIR/proposers" | wc -l)
it_log "honest view $view; blocks 1..$BYZ_H1 proposed by node0: $by0;" \
    "node0 equivocated at $(grep -c 'byz: equivocating' "$(it_logfile 0)") seqs"
byz_expect_sent equivocate
[ "$by0" -eq 0 ] || it_fail "$by0 committed blocks were proposed by the equivocating node0"
grep -q ERROR "$IT_DIR/proposers" && it_fail "block.get failed: $(grep ERROR "$IT_DIR/proposers" | head -3)"
byz_show_faults
it_done
