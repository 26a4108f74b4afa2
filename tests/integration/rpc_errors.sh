#!/bin/sh
# Node RPC, bad input, through curl and raw TCP: malformed JSON, a wrong
# JSON-RPC version, unknown methods, parameters of the wrong type, bad
# batches, unknown paths and HTTP methods, a body over the limit (413), a
# half-sent request (closed after the request timeout), garbage instead of
# HTTP, tampered signed transactions (every byte flipped in turn: all
# rejected), a replayed one (ENONCE), a wrong chain, an unknown sender, a
# foreign key, unknown ids, tx.wait's timeout, a nonce far ahead (pending
# without setting off view changes, committed once the gap is filled). The
# node keeps serving and committing throughout, counts the rejections in
# /metrics, and /health says 503 once it cannot reach a quorum.
. "$(dirname "$0")/lib.sh"

it_setup rpc_errors
it_net 4
it_start_all
U=$(it_url 0)
ADDR=$(it_rpcaddr 0)
H=city.health

# The half-sent requests run in the background while the rest goes on: the
# server drops them after request_timeout_ms (10 s) without an answer.
"$RAWTCP" --connect "$ADDR" --wait-close 20000 --show \
    --text 'POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"jsonrpc":' \
    >"$IT_DIR/half1.out" 2>"$IT_DIR/half1.err" &
half1=$!
it_bg "$half1"
"$RAWTCP" --connect "$ADDR" --wait-close 20000 --show --text 'POST / HTTP/1.1\r\nHost: x\r\nContent-Le' \
    >"$IT_DIR/half2.out" 2>"$IT_DIR/half2.err" &
half2=$!
it_bg "$half2"
t_half=$(it_now_ms)

# post BODY: "HTTP-STATUS RESPONSE-BODY" of a POST / with BODY.
post() {
    printf '%s' "$1" >"$IT_DIR/body"
    _code=$(curl -sS -o "$IT_DIR/resp" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$IT_DIR/body" "$U/")
    printf '%s %s\n' "$_code" "$(cat "$IT_DIR/resp")"
}
# expect WHAT BODY JQ: the answer is HTTP 200 and the jq test JQ holds on its body.
expect() {
    _a=$(post "$2")
    if [ "${_a%% *}" != 200 ] || ! printf '%s\n' "${_a#* }" | jq -e "$3" >/dev/null 2>&1; then
        it_fail "$1: ($3) does not hold on: $(printf '%s' "$_a" | head -c 600)"
    fi
}
# err WHAT BODY CODE [PARAM]: a JSON-RPC error CODE (with data.param PARAM).
err() {
    if [ $# -ge 4 ]; then
        expect "$1" "$2" ".error.code == $3 and .error.data.param == \"$4\" and (.error.message | length > 0)"
    else
        expect "$1" "$2" ".error.code == $3 and (.error.message | length > 0)"
    fi
}
req() { # req METHOD PARAMS: a request body
    printf '{"jsonrpc":"2.0","id":7,"method":"%s","params":%s}' "$1" "$2"
}
zero=0000000000000000000000000000000000000000000000000000000000000000

# ---- JSON and JSON-RPC
expect "malformed JSON" '{"jsonrpc":"2.0",' '.error.code == -32700 and .id == null'
expect "not JSON at all" 'hello' '.error.code == -32700'
expect "wrong version" '{"jsonrpc":"1.0","id":1,"method":"status"}' '.error.code == -32600 and .id == 1'
expect "no version" '{"id":1,"method":"status"}' '.error.code == -32600'
expect "method not a string" '{"jsonrpc":"2.0","id":1,"method":5}' '.error.code == -32600'
expect "a request that is a number" '5' '.error.code == -32600'
expect "unknown method" "$(req no.such.method '{}')" '.error.code == -32601 and .id == 7'
expect "rpc.* is reserved" "$(req rpc.discover '{}')" '.error.code == -32601'
expect "empty batch" '[]' '.error.code == -32600'
big_batch=$(jq -nc '[range(101) | {jsonrpc: "2.0", id: ., method: "status"}]')
expect "a batch over 100" "$big_batch" '.error.code == -32600'
expect "a mixed batch" '[{"jsonrpc":"2.0","id":1,"method":"status"},{"jsonrpc":"2.0","id":2,"method":"nope"},5]' \
    'length == 3 and (.[0].result.node_index == 0) and .[1].error.code == -32601 and .[2].error.code == -32600'
a=$(post '{"jsonrpc":"2.0","method":"status"}')
it_eq "a notification gets no answer" "$a" "204 "

# ---- parameters
err "params by position" "$(req status '[]')" -32602
err "unknown parameter" "$(req status '{"bogus":1}')" -32602 bogus
err "agency not a string" "$(req account.nonce '{"agency":5}')" -32602 agency
err "agency missing" "$(req account.nonce '{}')" -32602 agency
err "height a word" "$(req block.get '{"height":"x"}')" -32602 height
err "height negative" "$(req block.get '{"height":-1}')" -32602 height
err "height fractional" "$(req block.get '{"height":1.5}')" -32602 height
err "id not hex" "$(req tx.get '{"id":"zz"}')" -32602 id
err "id too short" "$(req tx.get "{\"id\":\"${zero#0}\"}")" -32602 id
err "id a number" "$(req tx.get '{"id":12}')" -32602 id
err "tx a number" "$(req tx.submit '{"tx":5}')" -32602 tx
err "tx missing" "$(req tx.submit '{}')" -32602 tx
err "txs a string" "$(req tx.submit_batch '{"txs":"x"}')" -32602 txs
err "timeout_ms over 60000" "$(req tx.wait "{\"id\":\"$zero\",\"timeout_ms\":70000}")" -32602 timeout_ms
err "timeout_ms a string" "$(req tx.wait "{\"id\":\"$zero\",\"timeout_ms\":\"soon\"}")" -32602 timeout_ms
err "history limit 0" "$(req history '{"key":"x","limit":0}')" -32602 limit
err "history limit 501" "$(req history '{"key":"x","limit":501}')" -32602 limit
err "history key missing" "$(req history '{}')" -32602 key
err "state.query args not an object" "$(req state.query '{"contract":"agency","query":"list","args":5}')" -32602 args
err "state.query contract missing" "$(req state.query '{"query":"list"}')" -32602 contract
expect "state.query unknown field" "$(req state.query '{"contract":"agency","query":"list","args":{"bogus":1}}')" \
    '.error.code == -32602 and .error.data.reason == "EDECODE"'
expect "state.query unknown query" "$(req state.query '{"contract":"agency","query":"drop"}')" \
    '.error.code == -32601 or .error.code == -32602'
expect "tx not hex" "$(req tx.submit '{"tx":"xyz"}')" \
    '.error.code == -32602 and .error.data.param == "tx" and .error.data.reason == "EDECODE"'
expect "txs element not hex or not a string" "$(req tx.submit_batch '{"txs":["xyz",5]}')" \
    '[.result.results[].error | .code == -32602 and .param == "txs"] == [true, true]'
expect "tx not a bex.Tx" "$(req tx.submit '{"tx":"00ff"}')" '.error.code == -32001 and .error.data.reason == "EDECODE"'

# ---- not found
expect "tx.get of an unknown id" "$(req tx.get "{\"id\":\"$zero\"}")" '.error.code == -32004'
expect "tx.wait of an unknown id" "$(req tx.wait "{\"id\":\"$zero\",\"timeout_ms\":100}")" '.error.code == -32004'
expect "block.get above the tip" "$(req block.get '{"height":99999}')" '.error.code == -32004'
expect "account.nonce of an unknown agency" "$(req account.nonce '{"agency":"city.nobody"}')" '.error.code == -32004'
expect "state.query of a missing object" "$(req state.query '{"contract":"agency","query":"get","args":{"id":"city.nobody"}}')" \
    '.error.code == -32004'

# ---- HTTP
code=$(curl -sS -o /dev/null -w '%{http_code}' "$U/nope")
it_eq "GET /nope" "$code" 404
code=$(curl -sS -o /dev/null -D "$IT_DIR/h405" -w '%{http_code}' -X PUT --data x "$U/")
it_eq "PUT /" "$code" 405
it_match "405 names the allowed method" "$(cat "$IT_DIR/h405")" "^Allow: .*POST"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST --data x "$U/health")
it_eq "POST /health" "$code" 405
# A body over rpc_body_bytes_max (4 MiB): 413 from its Content-Length.
head -c 5000000 /dev/zero | tr '\0' 'a' | sed 's/^/{"jsonrpc":"2.0","id":1,"method":"status","params":{"x":"/; s/$/"}}/' \
    >"$IT_DIR/big.json"
code=$(curl -sS -o "$IT_DIR/big.out" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$IT_DIR/big.json" "$U/")
it_eq "a 5 MB body" "$code" 413
# Garbage instead of HTTP: 400 and the connection closed.
"$RAWTCP" --connect "$ADDR" --garbage 3000 --show --wait-close 5000 >"$IT_DIR/garbage.out" 2>"$IT_DIR/garbage.err"
it_eq "garbage at the RPC port is closed ($(cat "$IT_DIR/garbage.err"))" $? 0
it_match "garbage at the RPC port gets 400" "$(head -c 200 "$IT_DIR/garbage.out")" "^HTTP/1.1 400"

# ---- transactions
next=$(it_next_nonce "$U" $H)
it_eq "city.health's next nonce" "$next" 1
set -- $(it_sign $H 1 catalog register "{\"resource\": {\"id\": \"$H/beds\", \"title\": \"Hospital beds\",
    \"share_type\": \"SHARE_UNCONDITIONAL\", \"fields\": [{\"name\": \"free\", \"type\": \"FIELD_INT\"}]}}")
good_id=$1
good=$2
# Every byte flipped in turn, all in one batch: each is rejected.
jq -nc --arg h "$good" '
    def flip($i): ($h[2 * $i: 2 * $i + 2] | explode) as $d
        | ([$d[] | if . >= 97 then . - 87 else . - 48 end]) as $v
        | (($v[0] * 16 + $v[1]) as $b | [(if $b % 2 == 0 then $b + 1 else $b - 1 end)] | .[0]) as $f
        | ("0123456789abcdef" | split("")) as $x
        | $h[0: 2 * $i] + $x[($f / 16 | floor)] + $x[$f % 16] + $h[2 * $i + 2:];
    {jsonrpc: "2.0", id: 1, method: "tx.submit_batch", params: {txs: [range($h | length / 2) as $i | flip($i)]}}' \
    >"$IT_DIR/tampered.json"
ntx=$((${#good} / 2))
r=$(curl -sS -H 'Content-Type: application/json' --data-binary @"$IT_DIR/tampered.json" "$U/")
printf '%s\n' "$r" | jq -c '[.result.results[] | (.error.reason // "ACCEPTED")] | group_by(.) | map({(.[0]): length}) | add' \
    >"$IT_DIR/tampered.reasons"
it_log "$ntx tampered copies: $(cat "$IT_DIR/tampered.reasons")"
printf '%s\n' "$r" | jq -e --argjson n "$ntx" '.result.results | length == $n and
    all(.[]; .error.code == -32001 and (.error.reason | IN("ESIG", "EDECODE", "ECHAIN", "EUNKNOWN")))' >/dev/null ||
    it_fail "a tampered tx was not rejected as it should be: $(cat "$IT_DIR/tampered.reasons")"
nsig=$(printf '%s\n' "$r" | jq '[.result.results[] | select(.error.reason == "ESIG")] | length')
ndec=$(printf '%s\n' "$r" | jq '[.result.results[] | select(.error.reason == "EDECODE")] | length')
[ "$nsig" -gt $((ntx / 3)) ] || it_fail "only $nsig of $ntx tampered copies failed the signature check"
[ "$ndec" -ge 1 ] || it_fail "no tampered copy failed to decode"
# The last byte is in the signature: ESIG, also through tx.submit alone.
expect "the signature tampered" "$(req tx.submit "{\"tx\":\"$(jq -r '.params.txs[-1]' "$IT_DIR/tampered.json")\"}")" \
    '.error.code == -32001 and .error.data.reason == "ESIG"'
it_eq "nothing tampered reached the mempool" "$(it_status 0 mempool_txs)" 0
it_eq "the nonce did not move" "$(it_next_nonce "$U" $H)" 1

# The original is accepted and commits; sent again it is a replay.
expect "the untampered tx" "$(req tx.submit "{\"tx\":\"$good\"}")" ".result.id == \"$good_id\""
expect "it commits" "$(req tx.wait "{\"id\":\"$good_id\"}")" '.result.code == 0'
expect "replayed after its commit" "$(req tx.submit "{\"tx\":\"$good\"}")" \
    '.error.code == -32001 and .error.data.reason == "ENONCE"'
r=$(it_rpc "$(it_url 2)" tx.submit "{\"tx\":\"$good\"}")
printf '%s\n' "$r" | jq -e '.error.code == -32001 and .error.data.reason == "ENONCE"' >/dev/null ||
    it_fail "replay at node2: $r"
r=$(it_rpc "$U" tx.submit_batch "{\"txs\":[\"$good\"]}")
printf '%s\n' "$r" | jq -e '.result.results[0].error | .code == -32001 and .reason == "ENONCE"' >/dev/null ||
    it_fail "replay in a batch: $r"

# Signed for another chain, by an unknown sender, with another agency's key.
set -- $("$TXSIGN" --key "$(it_key $H)" --chain other-chain --sender $H --nonce 2 --contract catalog --method withdraw \
    --args "{\"id\": \"$H/beds\", \"reason\": \"x\"}")
expect "another chain" "$(req tx.submit "{\"tx\":\"$2\"}")" '.error.code == -32001 and .error.data.reason == "ECHAIN"'
set -- $("$TXSIGN" --key "$(it_key $H)" --chain bex-testnet --sender city.nobody --nonce 1 --contract catalog \
    --method withdraw --args "{\"id\": \"$H/beds\", \"reason\": \"x\"}")
expect "an unknown sender" "$(req tx.submit "{\"tx\":\"$2\"}")" '.error.code == -32001 and .error.data.reason == "EUNKNOWN"'
set -- $("$TXSIGN" --key "$(it_key city.police)" --chain bex-testnet --sender $H --nonce 2 --contract catalog \
    --method withdraw --args "{\"id\": \"$H/beds\", \"reason\": \"x\"}")
expect "another agency's key" "$(req tx.submit "{\"tx\":\"$2\"}")" '.error.code == -32001 and .error.data.reason == "ESIG"'

# A nonce far ahead waits in the mempool: tx.get says pending, tx.wait
# times out, and since no primary can propose it, it must not set off view
# changes (checked below, seconds later).
set -- $(it_sign $H 9 catalog register "{\"resource\": {\"id\": \"$H/beds9\", \"title\": \"Beds\",
    \"share_type\": \"SHARE_UNCONDITIONAL\", \"fields\": [{\"name\": \"free\", \"type\": \"FIELD_INT\"}]}}")
gap_id=$1
t_gap=$(it_now_ms)
expect "a future nonce is accepted" "$(req tx.submit "{\"tx\":\"$2\"}")" ".result.id == \"$1\""
expect "it is pending" "$(req tx.get "{\"id\":\"$1\"}")" '.result.status == "pending" and .result.nonce == 9'
t0=$(it_now_ms)
expect "tx.wait times out" "$(req tx.wait "{\"id\":\"$1\",\"timeout_ms\":500}")" '.error.code == -32008'
waited=$(($(it_now_ms) - t0))
[ "$waited" -ge 450 ] && [ "$waited" -lt 5000 ] || it_fail "tx.wait with timeout_ms 500 answered after $waited ms"

# ---- the half-sent requests: dropped after the request timeout, unanswered
wait "$half1"
it_eq "a half-sent body is closed ($(cat "$IT_DIR/half1.err"))" $? 0
wait "$half2"
it_eq "half-sent headers are closed ($(cat "$IT_DIR/half2.err"))" $? 0
for f in half1 half2; do
    ms=$(sed -n 's/^rawtcp: closed after \([0-9]*\) ms.*/\1/p' "$IT_DIR/$f.err")
    [ -n "$ms" ] && [ "$ms" -ge 9000 ] && [ "$ms" -le 16000 ] ||
        it_fail "$f: closed after '$ms' ms, want about 10000 (request_timeout_ms)"
    [ ! -s "$IT_DIR/$f.out" ] || it_nomatch "$f gets no 200" "$(cat "$IT_DIR/$f.out")" "^HTTP/1.1 200"
done
it_log "half-sent requests: $(cat "$IT_DIR/half1.err" "$IT_DIR/half2.err" | tr '\n' ' ')"

# ---- still serving and committing; the rejections are counted
set -- $(it_sign $H 2 catalog withdraw "{\"id\": \"$H/beds\", \"reason\": \"closed\"}")
expect "a tx after all that" "$(req tx.submit "{\"tx\":\"$2\"}")" ".result.id == \"$1\""
expect "it commits" "$(req tx.wait "{\"id\":\"$1\"}")" '.result.code == 0'

# The nonce-9 tx sits in the mempools for 3.5 s (three view timeouts and
# more): no view change. Filling the gap commits it.
while [ $(($(it_now_ms) - t_gap)) -lt 3500 ]; do
    sleep 0.1
done
it_log "the nonce-9 tx has waited $(($(it_now_ms) - t_gap)) ms"
for k in 0 1 2 3; do
    it_eq "node$k: view changes with a nonce gap pending" "$(it_status "$k" view_changes)" 0
done
for n in 3 4 5 6 7 8; do
    set -- $(it_sign $H $n catalog register "{\"resource\": {\"id\": \"$H/beds$n\", \"title\": \"Beds\",
        \"share_type\": \"SHARE_UNCONDITIONAL\", \"fields\": [{\"name\": \"free\", \"type\": \"FIELD_INT\"}]}}")
    expect "nonce $n" "$(req tx.submit "{\"tx\":\"$2\"}")" ".result.id == \"$1\""
done
expect "the nonce-9 tx commits once the gap is filled" "$(req tx.wait "{\"id\":\"$gap_id\"}")" \
    '.result.code == 0 and .result.nonce == 9'
m=$(curl -sS "$U/metrics")
it_match "ESIG rejections counted" "$m" "^bex_rejected_txs_total\\{reason=\"ESIG\"\\} $((nsig + 2))\$"
it_match "EDECODE rejections counted" "$m" "^bex_rejected_txs_total\\{reason=\"EDECODE\"\\} [1-9]"
it_match "ENONCE rejections counted" "$m" "^bex_rejected_txs_total\\{reason=\"ENONCE\"\\} 2\$"
it_match "HTTP 413 counted" "$m" '^bex_rpc_http_responses_total\{status="413"\} 1$'
it_match "timeouts counted" "$m" '^bex_rpc_timeouts_total [1-9]'
for k in 0 1 2 3; do
    it_running "$k" || it_fail "node$k exited"
done

# ---- GET /health says 503 once the node cannot reach a quorum
it_stop 3
it_stop 2
health_503() {
    [ "$(curl -sS -o "$IT_DIR/health" -w '%{http_code}' "$U/health")" = 503 ]
}
it_wait 15 "node0's /health answers 503 with two peers gone" health_503 &&
    jq -e '.status == "unavailable" and (.reason | test("connected to 2 of 4"))' "$IT_DIR/health" >/dev/null ||
    it_fail "/health without a quorum: $(cat "$IT_DIR/health")"
expect "status still answers" "$(req status '{}')" '.result.peers_connected == 1'
it_done
