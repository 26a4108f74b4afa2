#!/bin/sh
# bexctl against a real network, happy path, every command with and without
# --json: status, peers, agency, catalog (register, update, withdraw, list,
# show), grant (request in read and verify mode, approve and reject by two
# officers, revoke, list, show), record (publish one and a JSON Lines file,
# list, show), access, verify, audit, query, tx, block and help. The sharing
# scenario: city.traffic offers CONDITIONAL violation records, city.police
# asks, traffic's officers approve, traffic publishes, police reads exactly
# the granted fields and checks an ID number it may only verify.
. "$(dirname "$0")/lib.sh"

it_setup cli_commands
it_net 4
it_start_all
U0=$(it_url 0)
U1=$(it_url 1)
T=city.traffic
P=city.police
RES=$T/violations
A=$IT_NET/agencies
TK="--key $A/$T/officer1.key"
TK2="$TK --key $A/$T/officer2.key"
PK="--key $A/$P/officer1.key"
PENC="--enc-key $A/$P/enc.key"
TENC="--enc-key $A/$T/enc.key"
OUT=$IT_DIR/out
ERR=$IT_DIR/err

# ctl WHAT ARGS...: runs bexctl (stdout in $OUT, stderr in $ERR); a failure
# unless it exits 0 with nothing on stderr.
ctl() {
    _what=$1
    shift
    "$BEXCTL" "$@" >"$OUT" 2>"$ERR"
    _rc=$?
    if [ "$_rc" -ne 0 ]; then
        it_fail "$_what: bexctl $*: exit $_rc: $(head -c 400 "$ERR")"
        return 1
    fi
    [ ! -s "$ERR" ] || it_fail "$_what: stderr: $(head -c 400 "$ERR")"
}
# ctl_e WHAT ARGS...: ctl that lets the command say something on stderr.
ctl_e() {
    _what=$1
    shift
    "$BEXCTL" "$@" >"$OUT" 2>"$ERR" || it_fail "$_what: bexctl $*: exit $?: $(head -c 400 "$ERR")"
}
out() {
    cat "$OUT"
}
# js WHAT JQ: the output is one JSON document and JQ holds on it.
js() {
    jq -e "$2" "$OUT" >/dev/null 2>&1 || it_fail "$1: ($2) does not hold on: $(head -c 600 "$OUT")"
}

# ---- status, peers
ctl "status" --node "$U0" status
it_match "status: chain" "$(out)" "^chain_id: +bex-testnet$"
it_match "status: agency" "$(out)" "^agency: +city.traffic$"
it_match "status: peers" "$(out)" "^peers_connected: +3$"
it_match "status: readable time" "$(out)" "^last_block_time: +20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9:]{8}Z$"
ctl "status --json" --node "$U1" --json status
js "status --json" '.chain_id == "bex-testnet" and .node_index == 1 and .agency == "city.police" and .peers_connected == 3'
ctl "status, --json after the command" --node "$U1" status --json
js "status --json after" '.node_index == 1'
ctl "peers" --node "$U0" peers
it_match "peers: header" "$(out)" "^INDEX +AGENCY +ADDRESS +CONNECTED +BYTES IN +BYTES OUT$"
it_eq "peers: rows" "$(grep -c ' true ' "$OUT")" 3
it_match "peers: node3" "$(out)" "^3 +city.health +127.0.0.1:[0-9]+ +true +[0-9]+ +[0-9]+$"
ctl "peers --json" --node "$U0" --json peers
js "peers --json" '.peers | length == 3 and all(.[]; .connected)'

# ---- agency
ctl "agency list" --node "$U0" agency list
it_match "agency list: header" "$(out)" "^ID +NAME +ROLES +OFFICERS$"
it_match "agency list: police" "$(out)" "^city.police +City Public Security Bureau +police +2 of 3$"
it_eq "agency list: rows" "$(grep -c '^city\.' "$OUT")" 4
ctl "agency list --json" --node "$U0" --json agency list
js "agency list --json" '[.agencies[].id] == ["city.health", "city.police", "city.tax", "city.traffic"] and .more == false'
ctl "agency show" --node "$U0" agency show city.police
it_match "agency show" "$(out)" "^threshold: +2$"
it_match "agency show: enc key" "$(out)" "^enc_key: +0[23][0-9a-f]{64}$"
ctl "agency show --json" --node "$U0" --json agency show city.tax
js "agency show --json" '.id == "city.tax" and (.officer_keys | length == 3)'

# ---- catalog
cat >"$IT_DIR/violations.json" <<EOF
{"id": "$RES", "title": "Traffic violations", "share_type": "SHARE_CONDITIONAL",
 "share_conditions": "law enforcement only", "update_cycle": "realtime",
 "fields": [{"name": "plate", "type": "FIELD_STRING"}, {"name": "time", "type": "FIELD_STRING"},
            {"name": "place", "type": "FIELD_STRING"}, {"name": "violation", "type": "FIELD_STRING"},
            {"name": "fine", "type": "FIELD_DECIMAL"}, {"name": "owner_id", "type": "FIELD_STRING", "sensitive": true}],
 "roles": [{"role": "police", "read": true, "verify": true}]}
EOF
ctl "catalog register" --node "$U0" $TK catalog register "$IT_DIR/violations.json"
it_match "catalog register: committed" "$(out)" "^tx [0-9a-f]{64} committed at height [0-9]+$"
it_match "catalog register: the resource" "$(out)" "^id: +$RES$"
it_match "catalog register: version" "$(out)" "^version: +1$"
jq '.title = "Traffic violations (all districts)"' "$IT_DIR/violations.json" >"$IT_DIR/violations2.json"
ctl "catalog update --json" --node "$U0" $TK --json catalog update "$IT_DIR/violations2.json"
js "catalog update --json" '.status == "committed" and .code == 0 and .method == "update" and
    .outcome.version == 2 and .outcome.title == "Traffic violations (all districts)"'
printf '{"id": "%s/old", "title": "Old data", "share_type": "SHARE_UNCONDITIONAL", "fields": [{"name": "x", "type": "FIELD_INT"}]}' \
    "$T" | ctl "catalog register from stdin" --node "$U0" $TK catalog register -
ctl "catalog withdraw" --node "$U0" $TK catalog withdraw "$T/old" --reason "no longer kept"
it_match "catalog withdraw" "$(out)" "^status: +RESOURCE_WITHDRAWN$"
ctl "catalog list" --node "$U1" catalog list
it_match "catalog list: header" "$(out)" "^ID +TITLE +SHARE +FIELDS +VERSION +STATUS$"
it_match "catalog list: violations" "$(out)" "^$RES +Traffic violations \\(all districts\\) +CONDITIONAL +plate,time,place,violation,fine,owner_id\\* +2 +ACTIVE$"
it_match "catalog list: withdrawn" "$(out)" "^$T/old +Old data +UNCONDITIONAL +x +2 +WITHDRAWN$"
ctl "catalog list --share --json" --node "$U1" --json catalog list --owner $T --share conditional
js "catalog list --share conditional" "[.resources[].id] == [\"$RES\"]"
ctl "catalog show" --node "$U1" catalog show "$RES"
it_match "catalog show" "$(out)" "^share_conditions: +law enforcement only$"
ctl "catalog show --json" --node "$U1" --json catalog show "$RES"
js "catalog show --json" '.version == 2 and (.fields | length == 6) and .fields[5].sensitive == true'

# ---- grants: read (one rejected, then one approved), verify (approved,
# later revoked); one live grant per consumer and mode
ctl "grant request (to reject)" --node "$U1" $PK grant request "$RES" --fields place --purpose "curiosity" --expires 1
it_match "grant request: pending" "$(out)" "^status: +GRANT_PENDING$"
g_rej=$(sed -n 's/^grant_id: *//p' "$OUT")
ctl "grant reject" --node "$U0" $TK2 grant reject "$g_rej" --reason "no stated case"
it_match "grant reject" "$(out)" "^status: +GRANT_REJECTED$"
ctl "grant request (read)" --node "$U1" $PK grant request "$RES" --fields plate,time,place,violation,fine \
    --purpose "case 2026-17" --expires 30
g_read=$(sed -n 's/^grant_id: *//p' "$OUT")
ctl "grant request (verify) --json" --node "$U1" $PK --json grant request "$RES" --fields owner_id --mode verify \
    --purpose "identity check" --expires 7d
js "grant request --json" '.outcome.status == "GRANT_PENDING" and .args.mode == "MODE_VERIFY"'
g_verify=$(jq .outcome.grant_id "$OUT")
ctl "grant list --status pending" --node "$U0" grant list --owner $T --status pending
it_match "grant list: header" "$(out)" "^ID +RESOURCE +CONSUMER +MODE +STATUS +FIELDS +EXPIRES$"
it_eq "grant list: pending rows" "$(grep -c ' PENDING ' "$OUT")" 2
ctl "grant approve" --node "$U0" $TK2 grant approve "$g_read" --reason "case file 17 attached"
it_match "grant approve" "$(out)" "^status: +GRANT_ACTIVE$"
ctl "grant approve --json" --node "$U0" $TK2 --json grant approve "$g_verify"
js "grant approve --json" ".outcome == {\"grant_id\": $g_verify, \"status\": \"GRANT_ACTIVE\"} and (.signers | length == 2)"
ctl "grant show" --node "$U1" grant show "$g_read"
it_match "grant show: fields" "$(out)" "^fields: +plate, time, place, violation, fine$"
it_match "grant show: reason" "$(out)" "^reason: +case file 17 attached$"
ctl "grant show --json" --node "$U1" --json grant show "$g_rej"
js "grant show --json" '.status == "GRANT_REJECTED" and .reason == "no stated case" and (.approvals | length == 2)'
ctl "grant list --consumer --json" --node "$U1" --json grant list --consumer $P
js "grant list --consumer" "[.grants[] | {id, status}] | sort_by(.id) == [{\"id\": $g_rej, \"status\": \"GRANT_REJECTED\"},
    {\"id\": $g_read, \"status\": \"GRANT_ACTIVE\"}, {\"id\": $g_verify, \"status\": \"GRANT_ACTIVE\"}]"

# ---- records: one by hand, twenty from a JSON Lines file
ctl "record publish" --node "$U0" $TK $TENC record publish "$RES" --key 京A12345 --field plate=京A12345 \
    --field "time=2026-03-01 08:15" --field "place=东城区长安街" --field violation=闯红灯 --field fine=200 \
    --field owner_id=110101198001010016
it_match "record publish" "$(out)" "^version: +1$"
sh "$it_root/testnet/gen-violations.sh" 20 11 >"$IT_DIR/violations.jsonl"
ctl "record publish --file" --node "$U0" $TK $TENC record publish "$RES" --file "$IT_DIR/violations.jsonl"
it_match "record publish --file" "$(out)" "^published 20 of 20 records to $RES \\(0 failed\\)$"
ctl "record list" --node "$U1" record list "$RES"
it_match "record list: header" "$(out)" "^KEY +VERSION +HEIGHT +PUBLISHED +FIELDS$"
it_eq "record list: rows (hashed keys)" "$(grep -Ec '^[0-9a-f]{64} +1 ' "$OUT")" 21
ctl "record list --json" --node "$U1" --json record list "$RES"
js "record list --json" '.records | length == 21 and all(.[]; all(.fields[]; .sealed != null))'
key=$(head -n 1 "$IT_DIR/violations.jsonl" | jq -r .key)
id=$(head -n 1 "$IT_DIR/violations.jsonl" | jq -r .fields.owner_id)
place=$(head -n 1 "$IT_DIR/violations.jsonl" | jq -r .fields.place)
ctl "record show" --node "$U0" $TENC record show "$RES" "$key"
it_match "record show: key" "$(out)" "^key: +$key$"
it_match "record show: owner_id opened" "$(out)" "^owner_id: +$id$"
ctl "record show --json" --node "$U0" $TENC --json record show "$RES" 京A12345
js "record show --json" '[.. | strings] | index("110101198001010016") != null and index("闯红灯") != null'

# ---- access: exactly the granted fields; verify: yes and no
ctl "access" --node "$U1" $PK $PENC access "$RES" "$key" --purpose "case 2026-17"
it_match "access: released" "$(out)" "^access [0-9]+ released by $T under grant $g_read"
it_match "access: place" "$(out)" "^place: +$place$"
it_nomatch "access: no owner_id" "$(out)" "owner_id|$id"
it_eq "access: five fields" "$(grep -Ec '^(plate|time|place|violation|fine): ' "$OUT")" 5
ctl "access --json" --node "$U1" $PK $PENC --json access "$RES" 京A12345 --purpose "case 2026-17"
js "access --json" '[.. | strings] | index("闯红灯") != null and index("110101198001010016") == null'
ctl "verify yes" --node "$U1" $PK $PENC verify "$RES" "$key" owner_id "$id" --purpose "identity check"
it_eq "verify the right id" "$(out)" yes
ctl "verify no --json" --node "$U1" $PK $PENC --json verify "$RES" 京A12345 owner_id 110101198001010024
js "verify --json" ".match == false and .field == \"owner_id\" and .grant_id == $g_verify"
echo 110101198001010016 | ctl "verify, value from stdin" --node "$U1" $PK $PENC verify "$RES" 京A12345 owner_id -
it_eq "verify from stdin" "$(out)" yes
ctl "grant revoke" --node "$U0" $TK2 grant revoke "$g_verify" --reason "case closed"
it_match "grant revoke" "$(out)" "^status: +GRANT_REVOKED$"

# ---- audit, query, tx, block
ctl_e "audit" --node "$U1" audit --limit 5
it_match "audit: header" "$(out)" "^TIME +HEIGHT +ACTOR +ACTION +RESOURCE +KEY +GRANT +RESULT +DETAIL$"
it_match "audit: the revoke first" "$(sed -n 2p "$OUT")" " city.traffic +grant.revoke +$RES .* OK "
it_eq "audit: five rows" "$(($(wc -l <"$OUT") - 1))" 5
it_eq "audit: there are more" "$(cat "$ERR")" "bexctl audit: showing the first 5; there are more"
ctl "audit --json --since" --node "$U1" --json audit --since 1h --limit 500
js "audit --json" '(.entries | length >= 33) and .more == false and ([.entries[].action] | index("access.release") != null)'
ctl "query" --node "$U1" query grant list "{\"consumer\": \"$P\", \"status\": \"GRANT_ACTIVE\"}"
js "query grant list" "[.grants[].id] == [$g_read]"
ctl "query record index_key" --node "$U1" query record index_key "{\"resource\": \"$RES\", \"consumer\": \"$P\"}"
js "query record index_key" ".consumer == \"$P\" and (.wrapped_index_key | length > 0)"
ctl "query catalog get" --node "$U1" query catalog get "{\"id\": \"$RES\"}"
js "query catalog get" '.version == 2'
"$BEXCTL" --node "$U1" --json audit --limit 1 >"$OUT" 2>"$ERR"
tx=$(jq -r '.entries[0].tx_id' "$OUT")
h=$(jq -r '.entries[0].height' "$OUT")
ctl "tx" --node "$U1" tx "$tx"
it_match "tx: committed" "$(out)" "^status: +committed$"
it_match "tx: method" "$(out)" "^method: +revoke$"
it_match "tx: args" "$(out)" "^args: +\\{\"grant_id\":$g_verify,\"reason\":\"case closed\"\\}$"
ctl "tx --json (upper case id)" --node "$U1" --json tx "$(echo "$tx" | tr a-f A-F)"
js "tx --json" ".id == \"$tx\" and .height == $h and .code == 0 and .sender == \"$T\" and (.signers | length == 2)"
ctl "block" --node "$U1" block "$h"
it_match "block: height" "$(out)" "^height: +$h$"
it_match "block: certificate" "$(out)" "^cert: +view [0-9]+, [34] votes$"
it_match "block: the tx, executed here" "$(out)" "^  $tx  receipt 0$"
ctl "block --json" --node "$U1" --json block "$h"
js "block --json" ".height == $h and (.txs | index(\"$tx\") != null) and (.cert.votes | length >= 3)"
ctl "block 0" --node "$U1" block 0
it_match "block 0" "$(out)" "^height: +0$"

# ---- help
ctl "help" help
for c in status peers tx block agency catalog grant record access verify audit query keygen testnet help; do
    it_match "help lists $c" "$(out)" "^  $c "
done
it_match "help: exit codes" "$(out)" "exit codes: 0 ok, 1 failure, 2 usage, 3 tx rejected or failed, 4 node unreachable"
for c in status peers tx block agency catalog grant record access verify audit query; do
    ctl "help $c" help "$c"
    it_match "help $c" "$(out)" "^usage: bexctl .*$c"
    ctl "$c --help" "$c" --help
    it_match "$c --help" "$(out)" "^usage: bexctl .*$c"
done
ctl "--help" --help
it_match "--help" "$(out)" "^usage: bexctl \\[GLOBAL OPTIONS\\] COMMAND"
it_done
