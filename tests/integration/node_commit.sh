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

# Every node counts exactly the txs of the run, and holds the same blocks.
for k in 0 1 2 3; do
    it_eq "node$k: committed_txs" "$(it_status "$k" committed_txs)" $((count + 1))
    it_block_hashes "$k" 1 "$height" >"$IT_DIR/blocks.$k"
    [ "$(wc -l <"$IT_DIR/blocks.$k")" -eq "$height" ] || it_fail "node$k: not $height blocks"
    grep -q ERROR "$IT_DIR/blocks.$k" && it_fail "node$k: block.get failed: $(grep ERROR "$IT_DIR/blocks.$k" | head -3)"
    [ "$k" -eq 0 ] || cmp -s "$IT_DIR/blocks.0" "$IT_DIR/blocks.$k" || it_fail "node$k: blocks differ from node0's"
done

# The blocks hold exactly the txs of the run, each once (node_dup_txs.sh
# provokes the view change that once made a tx appear twice), each committed
# with code 0 at the height and index where the block has it.
it_no_dup_txs 1 "$height"
it_eq "txs in the blocks" "$(wc -l <"$IT_DIR/txs.1")" $((count + 1))
awk '!seen[$2]++' "$IT_DIR/txs.1" >"$IT_DIR/txs.first"
it_eq "distinct txs in the blocks" "$(wc -l <"$IT_DIR/txs.first")" $((count + 1))
awk '{ print $2 }' "$IT_DIR/txs.first" | while read -r id; do
    printf '{"jsonrpc":"2.0","id":"%s","method":"tx.get","params":{"id":"%s"}}\n' "$id" "$id"
done | jq -s -c '_nwise(100)' | while read -r batch; do
    printf '%s' "$batch" | curl -sS -m 30 -H 'Content-Type: application/json' --data @- "$(it_url 2)/" |
        jq -r 'if type == "array" then .[] | "\(.result.height) \(.id) \(.result.status) \(.result.code)" else "batch error \(.)" end'
done >"$IT_DIR/receipts"
awk '{ print $1, $2, "committed", 0 }' "$IT_DIR/txs.first" >"$IT_DIR/receipts.want"
cmp -s "$IT_DIR/receipts" "$IT_DIR/receipts.want" ||
    it_fail "receipts (height id status code) differ from the blocks: $(diff "$IT_DIR/receipts.want" "$IT_DIR/receipts" | head -5 | tr '\n' '|')"
last=$(tail -n 1 "$IT_DIR/txs.1" | cut -d ' ' -f 2)
receipt=$(it_rpc_result "$(it_url 3)" tx.get "{\"id\":\"$last\"}" '"\(.status) \(.code) \(.contract).\(.method) \(.sender)"')
it_eq "receipt of the last tx on node3" "$receipt" "committed 0 record.publish city.traffic"

tps=$(printf '%s' "$load" | jq .tps)
echo "FIGURE node_commit: $((count + 1)) txs committed on 4 nodes at $tps tx/s (height $height)"
it_done
