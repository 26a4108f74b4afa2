#!/bin/sh
# bexd test 1: four nodes commit 2,000 signed transactions (bexload: one
# catalog register and record.publish txs, submitted in batches to node0) and
# all report the same height, state root and block hash; every tx of the run
# is committed with code 0 on every node. Prints the committed tx/s.
. "$(dirname "$0")/lib.sh"

it_setup node_commit
count=$(it_scale 2000)
it_net 4
it_start_all

it_load 0 "$count" --batch 500 --wait --timeout 40 >"$IT_DIR/load.out" 2>"$IT_DIR/load.err" ||
    it_fail "bexload: $(cat "$IT_DIR/load.out" "$IT_DIR/load.err")"
load=$(cat "$IT_DIR/load.out")
it_log "bexload: $load"
it_eq "bexload submitted" "$(printf '%s' "$load" | jq .submitted)" $((count + 1))
it_eq "bexload rejected" "$(printf '%s' "$load" | jq .rejected)" 0

it_wait 20 "all nodes at the same height, state root and block hash" it_same_tip 0 1 2 3 || exit 1
it_show_tips
height=$(it_status 0 height)
[ "$height" -ge 1 ] || it_fail "height $height after $count txs"

# Every node counts the same committed txs, at least those of the run, and
# holds the same blocks.
for k in 0 1 2 3; do
    c=$(it_status "$k" committed_txs)
    [ "$c" -ge $((count + 1)) ] || it_fail "node$k: committed_txs $c, want at least $((count + 1))"
    it_block_hashes "$k" 1 "$height" >"$IT_DIR/blocks.$k"
    [ "$(wc -l <"$IT_DIR/blocks.$k")" -eq "$height" ] || it_fail "node$k: not $height blocks"
    grep -q ERROR "$IT_DIR/blocks.$k" && it_fail "node$k: block.get failed: $(grep ERROR "$IT_DIR/blocks.$k" | head -3)"
    [ "$k" -eq 0 ] || cmp -s "$IT_DIR/blocks.0" "$IT_DIR/blocks.$k" || it_fail "node$k: blocks differ from node0's"
done

# The blocks hold exactly the txs of the run, each committed with code 0.
heights=$(seq 1 "$height" | tr '\n' ' ')
txs=0
for h in $heights; do
    n=$(it_rpc_result "$(it_url 2)" block.get "{\"height\":$h}" '.txs | length')
    txs=$((txs + n))
done
it_eq "txs in the blocks" "$txs" $((count + 1))
last=$(it_rpc_result "$(it_url 3)" block.get "{\"height\":$height}" '.txs[-1]')
receipt=$(it_rpc_result "$(it_url 3)" tx.get "{\"id\":\"$last\"}" '"\(.status) \(.code) \(.contract).\(.method) \(.sender)"')
it_eq "receipt of the last tx on node3" "$receipt" "committed 0 record.publish city.traffic"
# Every tx of every block, asked by id in batches: committed with code 0.
for h in $heights; do
    for id in $(it_rpc_result "$(it_url 1)" block.get "{\"height\":$h}" '.txs[]'); do
        printf '{"jsonrpc":"2.0","id":"%s","method":"tx.get","params":{"id":"%s"}}\n' "$id" "$id"
    done
done | jq -s -c '_nwise(100)' | while read -r batch; do
    printf '%s' "$batch" | curl -sS -m 30 -H 'Content-Type: application/json' --data @- "$(it_url 1)/" |
        jq -r 'if type == "array" then .[] | "\(.id) \(.result.status) \(.result.code)" else "batch error \(.)" end'
done >"$IT_DIR/receipts"
it_eq "receipts of the run's txs" "$(wc -l <"$IT_DIR/receipts")" $((count + 1))
ok=$(grep -c ' committed 0$' "$IT_DIR/receipts")
it_eq "txs committed with code 0" "$ok" $((count + 1)) || head -5 "$IT_DIR/receipts"

tps=$(printf '%s' "$load" | jq .tps)
echo "FIGURE node_commit: $((count + 1)) txs committed on 4 nodes at $tps tx/s (height $height)"
it_done
