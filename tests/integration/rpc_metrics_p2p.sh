#!/bin/sh
# GET /metrics reports the node's peer-to-peer traffic: bex_p2p_bytes_in and
# bex_p2p_bytes_out reach at least the sums of bytes_in and bytes_out that
# the peers RPC lists (read just before; the node refreshes the gauges every
# tick, so the test polls briefly), and they grow with traffic. It also
# reports the persister: every block is one batch of it, so its batches are
# at least the height, and at least its commits.
. "$(dirname "$0")/lib.sh"

it_setup rpc_metrics_p2p
it_net 4
it_start_all
U=$(it_url 0)
it_load 0 200 --wait --timeout 20 >"$IT_DIR/load.out" 2>&1 || it_die "bexload: $(cat "$IT_DIR/load.out")"

# Sets bin and bout from GET /metrics.
read_metrics() {
    m=$(curl -sS "$U/metrics")
    bin=$(printf '%s\n' "$m" | sed -n 's/^bex_p2p_bytes_in //p')
    bout=$(printf '%s\n' "$m" | sed -n 's/^bex_p2p_bytes_out //p')
    bin=${bin%.*}
    bout=${bout%.*}
}

# Succeeds once both gauges are at least $1 and $2.
metrics_reach() {
    read_metrics
    [ "${bin:-0}" -ge "$1" ] && [ "${bout:-0}" -ge "$2" ]
}

sums=$(it_rpc_result "$U" peers '{}' '"\([.peers[].bytes_in] | add) \([.peers[].bytes_out] | add)"')
sin=${sums% *}
sout=${sums#* }
[ "$sin" -gt 0 ] && [ "$sout" -gt 0 ] || it_die "peers lists no traffic: $sums"
it_wait 5 "bex_p2p_bytes_in >= $sin and bex_p2p_bytes_out >= $sout" metrics_reach "$sin" "$sout"
it_log "peers: in+out $sums; metrics: in $bin, out $bout"
first_in=$bin
first_out=$bout

it_load 0 50 --wait --timeout 20 >"$IT_DIR/load2.out" 2>&1 || it_die "bexload: $(cat "$IT_DIR/load2.out")"
it_wait 5 "the gauges grow with traffic" metrics_reach $((first_in + 1)) $((first_out + 1))
it_log "after 50 more txs: in $bin, out $bout"

# Succeeds once the persister's counters account for every block (refreshed every second).
store_counts() {
    m=$(curl -sS "$U/metrics")
    commits=$(printf '%s\n' "$m" | sed -n 's/^bex_store_commits_total //p')
    batches=$(printf '%s\n' "$m" | sed -n 's/^bex_store_batches_total //p')
    height=$(printf '%s\n' "$m" | sed -n 's/^bex_height //p')
    held=$(printf '%s\n' "$m" | sed -n 's/^bex_consensus_sends_held //p')
    commits=${commits%.*}
    batches=${batches%.*}
    height=${height%.*}
    [ -n "$held" ] && [ "${height:-0}" -ge 1 ] && [ "${commits:-0}" -ge 1 ] &&
        [ "${batches:-0}" -ge "$height" ] && [ "$batches" -ge "$commits" ]
}
it_wait 5 "bex_store_batches_total >= bex_height and >= bex_store_commits_total >= 1" store_counts
it_log "persister: $commits commits carried $batches batches (height $height, $held sends held)"
it_done
