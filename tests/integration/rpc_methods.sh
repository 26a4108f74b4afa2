#!/bin/sh
# Node RPC, happy path, through curl: every JSON-RPC method of RPC.md (status,
# peers, account.nonce, tx.submit, tx.submit_batch, tx.get, tx.wait,
# block.get, state.query for the list and get queries of every contract,
# contract.list, history), GET /health and GET /metrics. Transactions are
# signed by tests/tools/txsign and submitted as hex; one verification goes
# through bexctl (its claim is sealed to the owner).
. "$(dirname "$0")/lib.sh"

it_setup rpc_methods
it_net 4
it_start_all
U0=$(it_url 0)
U1=$(it_url 1)
T=city.traffic
P=city.police
RES=$T/plates

# call URL METHOD PARAMS: the response; jt WHAT JSON FILTER: a failure unless
# the jq FILTER holds on JSON.
call() {
    it_rpc "$1" "$2" "$3" 2>&1
}
jt() {
    if ! printf '%s\n' "$2" | jq -e "$3" >/dev/null 2>&1; then
        it_fail "$1: ($3) does not hold on: $(printf '%s' "$2" | head -c 800)"
        return 1
    fi
}

# ---- status and peers
r=$(call "$U0" status '{}')
jt "status has every field" "$r" '.result | [has("chain_id", "node_index", "agency", "node_key", "height", "view",
    "primary", "view_active", "last_block_time_ms", "state_root", "block_hash", "peers_connected", "peers_total",
    "mempool_txs", "mempool_bytes", "catching_up", "view_changes", "committed_txs", "version")] | all'
jt "status values" "$r" '.jsonrpc == "2.0" and .id == 1 and (.result | .chain_id == "bex-testnet" and
    .node_index == 0 and .agency == "city.traffic" and (.node_key | test("^0[23][0-9a-f]{64}$")) and
    .height == 0 and .view == 0 and .primary == 0 and .view_active == true and
    (.state_root | test("^[0-9a-f]{64}$")) and (.block_hash | test("^[0-9a-f]{64}$")) and
    .peers_connected == 3 and .peers_total == 3 and .mempool_txs == 0 and .catching_up == false and
    .committed_txs == 0 and (.version | type == "string"))'
r=$(call "$(it_url 3)" status '{}')
jt "node3's status" "$r" '.result | .node_index == 3 and .agency == "city.health"'

r=$(call "$U0" peers '{}')
jt "peers" "$r" '.result.peers | length == 3 and (map(.index) == [1, 2, 3]) and
    (map(.agency) == ["city.police", "city.tax", "city.health"]) and
    all(.[]; .connected == true and (.address | test("^127\\.0\\.0\\.1:[0-9]+$")) and .bytes_in > 0 and .bytes_out > 0)'
jt "peer addresses are the genesis addresses" "$r" "[.result.peers[].address] == $(jq -c '[.nodes[1:][].address]' "$IT_NET/genesis.json")"

# ---- account.nonce, tx.submit, tx.get, tx.wait
r=$(call "$U0" account.nonce "{\"agency\":\"$T\"}")
jt "account.nonce before any tx" "$r" ".result == {\"agency\": \"$T\", \"last_committed\": 0, \"next\": 1}"

resource="{\"resource\": {\"id\": \"$RES\", \"title\": \"Registered vehicles\", \"share_type\": \"SHARE_UNCONDITIONAL\",
  \"update_cycle\": \"daily\", \"fields\": [{\"name\": \"owner\", \"type\": \"FIELD_STRING\"},
  {\"name\": \"colour\", \"type\": \"FIELD_ENUM\", \"enum_values\": [\"red\", \"blue\"]}]}}"
set -- $(it_sign $T 1 catalog register "$resource")
reg_id=$1
r=$(call "$U0" tx.submit "{\"tx\":\"$2\"}")
jt "tx.submit" "$r" ".result == {\"id\": \"$reg_id\"}"
r=$(call "$U0" account.nonce "{\"agency\":\"$T\"}")
jt "account.nonce counts the pending or committed tx" "$r" '.result.next == 2'
r=$(call "$U0" tx.get "{\"id\":\"$reg_id\"}")
jt "tx.get right after submit" "$r" ".result | .id == \"$reg_id\" and (.status == \"pending\" or .status == \"committed\")
    and .sender == \"$T\" and .nonce == 1 and .contract == \"catalog\" and .method == \"register\""
r=$(call "$U1" tx.wait "{\"id\":\"$reg_id\",\"timeout_ms\":10000}")
jt "tx.wait on another node" "$r" ".result | .id == \"$reg_id\" and .status == \"committed\" and .height >= 1 and
    .index == 0 and .code == 0 and .code_name == \"OK\" and .sender == \"$T\" and .nonce == 1 and
    .contract == \"catalog\" and .method == \"register\" and .args.resource.id == \"$RES\" and
    (.events | type == \"array\") and (.result | test(\"^[0-9a-f]*$\")) and (.message | type == \"string\")"
reg_height=$(printf '%s' "$r" | jq .result.height)
r=$(call "$U0" tx.get "{\"id\":\"$reg_id\"}")
jt "tx.get once committed" "$r" ".result | .status == \"committed\" and .height == $reg_height and .code == 0"

# ---- tx.submit_batch: three plaintext records (AB-002 twice, versions 1 and
# 2), a non-string and a non-hex entry
hexkey() {
    printf '%s' "$1" | od -An -tx1 | tr -d ' \n'
}
key2=$(hexkey AB-002)
batch=""
ids=""
n=2
for kv in AB-002:1 AB-003:1 AB-002:2; do
    set -- $(it_sign $T $n record publish "{\"resource\": \"$RES\", \"key\": \"$(hexkey "${kv%:*}")\",
        \"version\": ${kv#*:}, \"fields\": [{\"name\": \"owner\", \"plaintext\": \"Owner $n\"}, {\"name\": \"colour\", \"plaintext\": \"red\"}]}")
    ids="$ids $1"
    batch="$batch\"$2\","
    n=$((n + 1))
done
r=$(call "$U0" tx.submit_batch "{\"txs\":[${batch}17,\"zz\"]}")
jt "tx.submit_batch" "$r" "(.result.results | length == 5) and
    ([.result.results[0:3][].id] == $(printf '%s\n' $ids | jq -R . | jq -sc .)) and
    (.result.results[3].error | .code == -32602 and .reason == \"EINVAL\") and
    (.result.results[4].error | .code == -32602 and .reason == \"EDECODE\")"
last_id=${ids##* }
r=$(call "$U0" tx.wait "{\"id\":\"$last_id\"}")
jt "the batch commits" "$r" '.result | .status == "committed" and .code == 0 and .nonce == 4'
r=$(call "$U1" account.nonce "{\"agency\":\"$T\"}")
jt "account.nonce after the batch" "$r" ".result == {\"agency\": \"$T\", \"last_committed\": 4, \"next\": 5}"
it_wait 10 "node1 commits the batch" it_height_above 1 "$reg_height" || true

# ---- block.get
r=$(call "$U0" block.get "{\"height\":$reg_height}")
jt "block.get" "$r" ".result | .height == $reg_height and (.hash | test(\"^[0-9a-f]{64}$\")) and
    (.prev_hash | test(\"^[0-9a-f]{64}$\")) and (.state_root | test(\"^[0-9a-f]{64}$\")) and .time_ms > 0 and
    .view == 0 and .proposer == 0 and .null == false and (.txs | index(\"$reg_id\") != null) and
    (.cert | .view == 0 and .seq >= $reg_height and (.digest | test(\"^[0-9a-f]{64}$\")) and
     (.votes | length >= 3 and all(.[]; (.replica | type == \"number\") and (.sig | test(\"^[0-9a-f]+$\")))))"
hash=$(printf '%s' "$r" | jq -r .result.hash)
r=$(call "$U1" block.get "{\"height\":$reg_height}")
jt "node1 has the same block" "$r" ".result.hash == \"$hash\""
r=$(call "$U0" block.get '{"height":0}')
jt "the genesis block" "$r" ".result | .height == 0 and (.hash | test(\"^[0-9a-f]{64}$\"))"
g=$(printf '%s' "$r" | jq -r .result.hash)
r=$(call "$U0" block.get '{"height":1}')
jt "block 1 links to the genesis block" "$r" ".result.prev_hash == \"$g\""
tip=$(it_status 0 height)
r=$(call "$U0" block.get "{\"height\":$tip}")
jt "the tip's block is the status's" "$r" ".result.hash == \"$(it_status 0 block_hash)\" and
    .result.state_root == \"$(it_status 0 state_root)\""

# ---- one sealed record (bexctl seals every value to the owner), a grant
# (UNCONDITIONAL: active on request) and an access to the sealed record by
# the police, answered by the owner's node
"$BEXCTL" --node "$U0" --key "$(it_key $T)" --enc-key "$IT_NET/agencies/$T/enc.key" record publish "$RES" \
    --key SEALED-1 --field owner=Ann --field colour=blue >"$IT_DIR/publish.out" 2>&1 ||
    it_fail "bexctl record publish: $(cat "$IT_DIR/publish.out")"
sealed=$(hexkey SEALED-1)
pn=$(it_next_nonce "$U1" $P)
expiry=$(($(it_now_ms) + 86400000))
set -- $(it_sign $P "$pn" grant request "{\"resource\": \"$RES\", \"fields\": [\"owner\", \"colour\"], \"mode\": \"MODE_READ\",
    \"purpose\": \"traffic enforcement\", \"expiry_ms\": $expiry}")
grant_tx=$1
r=$(call "$U1" tx.submit "{\"tx\":\"$2\"}")
jt "grant request submitted" "$r" ".result.id == \"$grant_tx\""
r=$(call "$U1" tx.wait "{\"id\":\"$grant_tx\"}")
jt "grant request committed" "$r" '.result | .code == 0 and .contract == "grant" and .method == "request"'
set -- $(it_sign $P $((pn + 1)) access request "{\"resource\": \"$RES\", \"record_key\": \"$sealed\", \"purpose\": \"stop 17\"}")
access_tx=$1
call "$U1" tx.submit "{\"tx\":\"$2\"}" >/dev/null
r=$(call "$U1" tx.wait "{\"id\":\"$access_tx\"}")
jt "access request committed" "$r" '.result | .code == 0 and .contract == "access" and .method == "request"'

# ---- a verification, through bexctl (the claim is sealed to the owner)
"$BEXCTL" --node "$U1" --key "$(it_key $P)" --timeout 30 verify "$RES" SEALED-1 colour blue \
    --purpose "plate check" >"$IT_DIR/verify.out" 2>&1 || it_fail "bexctl verify: $(cat "$IT_DIR/verify.out")"
it_eq "bexctl verify" "$(cat "$IT_DIR/verify.out")" yes

# ---- the records in clear: an access is released (no keys to wrap), a
# verification compares the claim with the value
"$BEXCTL" --node "$U1" --key "$(it_key $P)" --enc-key "$IT_NET/agencies/$P/enc.key" --timeout 20 access "$RES" AB-003 \
    --purpose "read in clear" >"$IT_DIR/access.out" 2>&1 || it_fail "bexctl access to a record in clear: $(cat "$IT_DIR/access.out")"
it_match "access to a record in clear" "$(cat "$IT_DIR/access.out")" "^owner: +Owner 3$"
it_match "access to a record in clear: colour" "$(cat "$IT_DIR/access.out")" "^colour: +red$"
for claim in red:yes blue:no; do
    "$BEXCTL" --node "$U1" --key "$(it_key $P)" --timeout 20 verify "$RES" AB-003 colour "${claim%:*}" \
        >"$IT_DIR/verify.out" 2>&1 || it_fail "bexctl verify in clear: $(cat "$IT_DIR/verify.out")"
    it_eq "verify '${claim%:*}' against a field in clear" "$(cat "$IT_DIR/verify.out")" "${claim#*:}"
done

# ---- state.query: the list and get queries of every contract
q() { # q CONTRACT QUERY ARGS-JSON: the state.query response from node1
    call "$U1" state.query "{\"contract\":\"$1\",\"query\":\"$2\",\"args\":$3}"
}
r=$(q agency list '{}')
jt "agency list" "$r" '[.result.agencies[].id] == ["city.health", "city.police", "city.tax", "city.traffic"]'
r=$(q agency get '{"id":"city.police"}')
jt "agency get" "$r" '.result | .id == "city.police" and .threshold == 2 and (.officer_keys | length == 3)'
r=$(call "$U1" state.query '{"contract":"agency","query":"list"}')
jt "a query without args" "$r" '.result.agencies | length == 4'
r=$(q catalog list "{\"owner\":\"$T\"}")
jt "catalog list" "$r" ".result.resources | length == 1 and .[0].id == \"$RES\" and .[0].version == 1"
r=$(q catalog get "{\"id\":\"$RES\"}")
jt "catalog get" "$r" ".result | .id == \"$RES\" and .owner == \"$T\" and .share_type == \"SHARE_UNCONDITIONAL\" and
    .status == \"RESOURCE_ACTIVE\" and (.fields | length == 2)"
r=$(q grant list "{\"consumer\":\"$P\"}")
jt "grant list" "$r" ".result.grants | length == 1 and .[0].status == \"GRANT_ACTIVE\" and .[0].resource == \"$RES\""
gid=$(printf '%s' "$r" | jq .result.grants[0].id)
r=$(q grant get "{\"id\":$gid}")
jt "grant get" "$r" ".result | .id == $gid and .consumer == \"$P\" and .owner == \"$T\" and .mode == \"MODE_READ\""
r=$(q record list "{\"resource\":\"$RES\"}")
jt "record list" "$r" '.result.records | length == 3'
r=$(q record get "{\"resource\":\"$RES\",\"key\":\"$key2\"}")
jt "record get" "$r" ".result | .key == \"$key2\" and .version == 2 and .owner == \"$T\" and
    ([.fields[] | {name, plaintext}] == [{\"name\": \"owner\", \"plaintext\": \"Owner 4\"}, {\"name\": \"colour\", \"plaintext\": \"red\"}])"
r=$(q record get "{\"resource\":\"$RES\",\"key\":\"$sealed\"}")
jt "record get of a sealed record" "$r" '.result | .version == 1 and all(.fields[]; .sealed.ciphertext != null and .plaintext == null)'
r=$(q access list "{\"consumer\":\"$P\"}")
jt "access list" "$r" ".result.accesses | length == 2 and ([.[].record_key] | sort == ([\"$sealed\", \"$(hexkey AB-003)\"] | sort))"
aid=$(printf '%s' "$r" | jq ".result.accesses[] | select(.record_key == \"$sealed\") | .id")
jt "access list: the purpose" "$r" ".result.accesses[] | select(.id == $aid) | .purpose == \"stop 17\""
# The owner's node answers the access by itself.
access_closed() {
    r=$(q access get "{\"id\":$aid}")
    printf '%s' "$r" | jq -e '.result.status == "ACCESS_RELEASED" or .result.status == "ACCESS_DENIED"' >/dev/null
}
it_wait 20 "the owner's node answers access $aid" access_closed || true
jt "access get" "$r" ".result | .id == $aid and .consumer == \"$P\" and .owner == \"$T\" and .grant_id == $gid and
    .status == \"ACCESS_RELEASED\" and ([.keys[].field] | sort == [\"colour\", \"owner\"])"
r=$(q verify list "{\"consumer\":\"$P\"}")
jt "verify list" "$r" '.result.verifications | length == 3'
vid=$(printf '%s' "$r" | jq ".result.verifications[] | select(.record_key == \"$sealed\") | .id")
r=$(q verify get "{\"id\":$vid}")
jt "verify get (answered yes)" "$r" ".result | .id == $vid and .field == \"colour\" and .status == \"VERIFY_ANSWERED\" and .match == true"
# The whole trail, newest first, one entry per tx.
r=$(q audit query '{"limit":500}')
jt "audit query" "$r" '[.result.entries[].action] | .[-1] == "catalog.register" and index("grant.request") != null and
    index("access.request") != null and index("access.release") != null and index("record.publish") != null and
    index("verify.request") != null and index("verify.answer") != null'
jt "audit entries are newest first" "$r" '[.result.entries[].height] | . == (sort | reverse)'
printf '%s' "$r" >"$IT_DIR/trail.json"
r=$(q audit query '{"limit":2}')
jt "audit query, one page" "$r" '.result | (.entries | length == 2) and .next_cursor != ""'
cursor=$(printf '%s' "$r" | jq -r .result.next_cursor)
r=$(q audit query "{\"limit\":500,\"cursor\":\"$cursor\"}")
jt "audit query, the next page" "$r" '.result | (.entries | length > 2) and .next_cursor == ""'
# The filters by resource, by record key and by acting agency list exactly
# the entries of the whole trail that match.
# filtered ARGS SELECT: the tx ids state.query lists for ARGS = the trail's that SELECT keeps.
filtered() {
    got=$(q audit query "$1" | jq -r '[.result.entries[].tx_id] | join(" ")')
    want=$(jq -r "[.result.entries[] | select($2) | .tx_id] | join(\" \")" "$IT_DIR/trail.json")
    [ -n "$want" ] || it_fail "audit filter $1: nothing in the trail matches"
    it_eq "audit query $1" "$got" "$want"
}
filtered "{\"resource\":\"$RES\"}" ".resource == \"$RES\""
filtered "{\"resource\":\"$RES\",\"record_key\":\"$sealed\"}" ".resource == \"$RES\" and .record_key == \"$sealed\""
filtered "{\"agency\":\"$P\"}" ".actor == \"$P\""
filtered "{\"agency\":\"$T\"}" ".actor == \"$T\""
"$BEXCTL" --node "$U1" --json audit --resource "$RES" --limit 500 >"$IT_DIR/cli.json" 2>&1 || it_fail "bexctl audit --resource"
it_eq "bexctl audit --resource" "$(jq -r '[.entries[].tx_id] | join(" ")' "$IT_DIR/cli.json")" \
    "$(jq -r "[.result.entries[] | select(.resource == \"$RES\") | .tx_id] | join(\" \")" "$IT_DIR/trail.json")"

# ---- contract.list
r=$(call "$U0" contract.list '{}')
jt "contract.list: methods" "$r" '[.result.methods[] | "\(.contract).\(.name)"] | sort == ["access.deny", "access.release",
    "access.request", "catalog.register", "catalog.update", "catalog.withdraw", "grant.approve", "grant.escalate",
    "grant.reject", "grant.request", "grant.revoke", "record.publish", "record.share_index", "verify.answer", "verify.request"]'
jt "contract.list: queries" "$r" '[.result.queries[] | "\(.contract).\(.name)"] | sort == ["access.get", "access.list",
    "agency.get", "agency.list", "audit.query", "catalog.get", "catalog.list", "grant.get", "grant.list",
    "record.get", "record.index_key", "record.list", "verify.get", "verify.list"]'
jt "contract.list: argument types" "$r" 'all(.result.methods[], .result.queries[]; .args | startswith("bex."))'

# ---- history
r=$(call "$U0" history "{\"key\":\"catalog/r/$RES\"}")
jt "history of the resource" "$r" ".result | .more == false and (.entries | length == 1) and .entries[0].tx_id == \"$reg_id\" and
    .entries[0].height == $reg_height and .entries[0].index == 0"
hk="record/d/$RES/$key2"
r=$(call "$U0" history "{\"key\":\"$hk\",\"limit\":1}")
jt "history of a record, first page" "$r" ".result | .more == true and (.entries | length == 1) and .entries[0].tx_id == \"$last_id\""
bh=$(printf '%s' "$r" | jq .result.entries[0].height)
bi=$(printf '%s' "$r" | jq .result.entries[0].index)
r=$(call "$U0" history "{\"key\":\"$hk\",\"limit\":10,\"before_height\":$bh,\"before_index\":$bi}")
first_id=$(echo $ids | cut -d ' ' -f 1)
jt "history of a record, next page" "$r" ".result | .more == false and (.entries | length == 1) and .entries[0].tx_id == \"$first_id\""
r=$(call "$U0" history '{"key":"no/such/key"}')
jt "history of an unknown key" "$r" '.result == {"entries": [], "more": false}'

# ---- GET /health and GET /metrics
h0=$(call "$U0" status '{}' | jq .result.height)
code=$(curl -sS -o "$IT_DIR/health" -w '%{http_code}' "$U0/health")
it_eq "GET /health" "$code" 200
jt "health body" "$(cat "$IT_DIR/health")" ".status == \"ok\" and (.reason | type) == \"string\" and
    (.height | type) == \"number\" and .height >= $h0 and .height >= 1 and .view == 0"
curl -sS -D "$IT_DIR/metrics.h" -o "$IT_DIR/metrics" "$U0/metrics" || it_fail "GET /metrics"
it_match "metrics content type" "$(cat "$IT_DIR/metrics.h")" "^Content-Type: text/plain"
m=$(cat "$IT_DIR/metrics")
st=$(call "$U0" status '{}')
for line in "^bex_height $(printf '%s' "$st" | jq .result.height)\$" "^bex_view 0\$" \
    "^bex_committed_txs_total $(printf '%s' "$st" | jq .result.committed_txs)\$" "^bex_mempool_txs 0\$" \
    "^bex_peers_connected 3\$" '^bex_rejected_txs_total\{reason="ESIG"\} 0$' '^bex_rejected_txs_total\{reason="ENONCE"\} 0$' \
    '^bex_commit_latency_seconds_bucket\{le="\+Inf"\} [1-9][0-9]*$' '^bex_commit_latency_seconds_sum [0-9.e+-]+$' \
    '^bex_commit_latency_seconds_count [1-9][0-9]*$' '^# TYPE bex_commit_latency_seconds histogram$' \
    '^# TYPE bex_height gauge$' '^# TYPE bex_committed_txs_total counter$'; do
    it_match "metrics line" "$m" "$line"
done
# The latency buckets are cumulative and end with the count.
printf '%s\n' "$m" | awk '/^bex_commit_latency_seconds_bucket/ { if ($2 < prev) bad = 1; prev = $2; last = $2 }
    /^bex_commit_latency_seconds_count/ { if ($2 != last) bad = 1 } END { exit bad }' ||
    it_fail "latency histogram buckets are not cumulative"
it_done
