#!/bin/sh
# A transaction whose nonce is ahead of its sender's next one waits in the
# mempool (tx.submit accepts it, tx.get says pending) and commits once the
# gap is filled. Meanwhile it must not disturb consensus: the primary cannot
# propose it, so the backups must not take it for a request the primary
# ignores: no view change, and other senders' txs commit as usual.
#
. "$(dirname "$0")/lib.sh"

it_setup node_nonce_gap
it_net 4
it_start_all
U=$(it_url 0)
H=city.health

set -- $(it_sign $H 5 catalog register "{\"resource\": {\"id\": \"$H/beds5\", \"title\": \"Beds\",
    \"share_type\": \"SHARE_UNCONDITIONAL\", \"fields\": [{\"name\": \"free\", \"type\": \"FIELD_INT\"}]}}")
gap_id=$1
r=$(it_rpc "$U" tx.submit "{\"tx\":\"$2\"}")
printf '%s\n' "$r" | jq -e ".result.id == \"$gap_id\"" >/dev/null || it_die "the nonce-5 tx is refused: $r"
it_eq "the nonce-5 tx is pending" "$(it_rpc_result "$U" tx.get "{\"id\":\"$gap_id\"}" .status)" pending

# Five seconds (five view timeouts) without a view change, while city.tax's
# txs commit.
no_view_change() {
    for k in 0 1 2 3; do
        v=$(it_status "$k" view_changes)
        [ "$v" = 0 ] || {
            it_fail "node$k changed view $v times over a tx it cannot propose: $(grep -h 'view change' "$(it_logfile "$k")" | head -3 | tr '\n' '|')"
            return 0
        }
    done
    return 1
}
t0=$(it_now_ms)
n=1
while [ $(($(it_now_ms) - t0)) -lt 5000 ]; do
    set -- $(it_sign city.tax $n catalog register "{\"resource\": {\"id\": \"city.tax/r$n\", \"title\": \"R\",
        \"share_type\": \"SHARE_UNCONDITIONAL\", \"fields\": [{\"name\": \"v\", \"type\": \"FIELD_INT\"}]}}")
    it_rpc "$U" tx.submit "{\"tx\":\"$2\"}" >/dev/null
    t1=$(it_now_ms)
    r=$(it_rpc "$U" tx.wait "{\"id\":\"$1\",\"timeout_ms\":10000}")
    printf '%s\n' "$r" | jq -e '.result.code == 0' >/dev/null || it_fail "city.tax's tx $n: $r"
    [ $(($(it_now_ms) - t1)) -lt 900 ] || it_fail "city.tax's tx $n took $(($(it_now_ms) - t1)) ms to commit"
    no_view_change && break
    n=$((n + 1))
    sleep 0.5
done

# Filling the gap commits all five.
for nonce in 1 2 3 4; do
    set -- $(it_sign $H $nonce catalog register "{\"resource\": {\"id\": \"$H/beds$nonce\", \"title\": \"Beds\",
        \"share_type\": \"SHARE_UNCONDITIONAL\", \"fields\": [{\"name\": \"free\", \"type\": \"FIELD_INT\"}]}}")
    it_rpc "$U" tx.submit "{\"tx\":\"$2\"}" >/dev/null
done
r=$(it_rpc "$U" tx.wait "{\"id\":\"$gap_id\",\"timeout_ms\":10000}")
printf '%s\n' "$r" | jq -e '.result.code == 0 and .result.nonce == 5' >/dev/null || it_fail "the nonce-5 tx after the gap is filled: $r"
it_done
