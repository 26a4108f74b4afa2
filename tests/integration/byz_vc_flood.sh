#!/bin/sh
# View-change flood: node4 of a 5-node network (f = 1) runs bexd-byz with
# BEX_BYZ=vc_flood and broadcasts a correctly signed VIEW-CHANGE for an ever
# higher view 50 times a second. One replica cannot move the others (joining
# a higher view takes f + 1 of them) and each engine keeps one VIEW-CHANGE
# per replica: under load the honest nodes commit everything, agree, and
# stay in the views of their own timeouts, far below the flooded ones.
. "$(dirname "$0")/byz_lib.sh"

it_setup byz_vc_flood
byz_net 5 4 vc_flood
byz_load 1500 500 5
byz_expect_sent vc_flood
sent=$(byz_sent vc_flood)
[ "$sent" -ge 20 ] || it_fail "node4 flooded only $sent VIEW-CHANGEs"
for k in $BYZ_HONEST; do
    v=$(it_status "$k" view)
    it_log "node$k: view $v, $(it_status "$k" view_changes) view changes started (node4 flooded up to view >= $sent)"
    [ "$v" -le 2 ] || it_fail "node$k moved to view $v: the flood drove it"
done
byz_show_faults
it_done
