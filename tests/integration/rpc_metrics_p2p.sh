#!/bin/sh
# GET /metrics reports the node's peer-to-peer traffic: bex_p2p_bytes_in and
# bex_p2p_bytes_out are at least the sums of bytes_in and bytes_out that the
# peers RPC lists (read just before), and they grow with traffic.
#
# PENDING: node/node.c registers the two gauges (n->m.bytes_in, bytes_out)
# but never sets them: they read 0 while peers shows megabytes.
. "$(dirname "$0")/lib.sh"

it_setup rpc_metrics_p2p
it_net 4
it_start_all
U=$(it_url 0)
it_load 0 200 --wait --timeout 20 >"$IT_DIR/load.out" 2>&1 || it_die "bexload: $(cat "$IT_DIR/load.out")"

sums=$(it_rpc_result "$U" peers '{}' '"\([.peers[].bytes_in] | add) \([.peers[].bytes_out] | add)"')
m=$(curl -sS "$U/metrics")
bin=$(printf '%s\n' "$m" | sed -n 's/^bex_p2p_bytes_in //p')
bout=$(printf '%s\n' "$m" | sed -n 's/^bex_p2p_bytes_out //p')
it_log "peers: in+out ${sums}; metrics: in $bin, out $bout"
[ "${bin%.*}" -ge "${sums% *}" ] || it_fail "bex_p2p_bytes_in $bin, below the peers' sum ${sums% *}"
[ "${bout%.*}" -ge "${sums#* }" ] || it_fail "bex_p2p_bytes_out $bout, below the peers' sum ${sums#* }"
it_done
