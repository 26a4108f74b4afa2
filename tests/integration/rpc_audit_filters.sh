#!/bin/sh
# The audit trail's filters (state.query audit.query by resource, by record
# key and by acting agency, and bexctl audit --resource/--key/--agency) list
# every entry that matches, the same as filtering the whole trail.
#
. "$(dirname "$0")/lib.sh"

it_setup rpc_audit_filters
it_net 4
it_start_all
U=$(it_url 1)
T=city.traffic
P=city.police
RES=$T/open

cat >"$IT_DIR/res.json" <<EOF
{"id": "$RES", "title": "Open data", "share_type": "SHARE_UNCONDITIONAL", "update_cycle": "daily",
 "fields": [{"name": "owner", "type": "FIELD_STRING"}, {"name": "colour", "type": "FIELD_ENUM", "enum_values": ["red", "blue"]}]}
EOF
ctl() {
    "$BEXCTL" --node "$U" "$@" >"$IT_DIR/out" 2>&1 || it_die "bexctl $*: $(cat "$IT_DIR/out")"
}
ctl --key "$(it_key $T)" catalog register "$IT_DIR/res.json"
for k in AB-1 AB-2 AB-3; do
    ctl --key "$(it_key $T)" --enc-key "$IT_NET/agencies/$T/enc.key" record publish "$RES" --key "$k" \
        --field owner=Ann --field colour=red
done
ctl --key "$(it_key $P)" grant request "$RES" --fields owner,colour --purpose enforcement --expires 30
ctl --key "$(it_key $P)" --enc-key "$IT_NET/agencies/$P/enc.key" access "$RES" AB-1 --purpose "stop 17"
ctl --key "$(it_key $P)" verify "$RES" AB-1 colour red
ctl --key "$(it_key $P)" verify "$RES" AB-2 colour blue

# query ARGS: the actions of the audit entries state.query lists for ARGS.
query() {
    it_rpc_result "$U" state.query "{\"contract\":\"audit\",\"query\":\"query\",\"args\":$1}" '[.entries[].tx_id] | join(" ")'
}
# expected JQ-SELECT: the same filter applied to the whole trail.
expected() {
    it_rpc_result "$U" state.query '{"contract":"audit","query":"query","args":{"limit":500}}' "[.entries[] | select($1) | .tx_id] | join(\" \")"
}
key1=$(printf AB-1 | od -An -tx1 | tr -d ' \n')
all=$(expected true)
it_log "the whole trail: $(echo $all | wc -w) entries"
[ "$(echo $all | wc -w)" -ge 11 ] || it_fail "the whole trail has only $(echo $all | wc -w) entries"
it_eq "audit by resource" "$(query "{\"resource\":\"$RES\"}")" "$(expected ".resource == \"$RES\"")"
it_eq "audit by record key" "$(query "{\"resource\":\"$RES\",\"record_key\":\"$key1\"}")" \
    "$(expected ".resource == \"$RES\" and .record_key == \"$key1\"")"
it_eq "audit by agency $P" "$(query "{\"agency\":\"$P\"}")" "$(expected ".actor == \"$P\"")"
it_eq "audit by agency $T" "$(query "{\"agency\":\"$T\"}")" "$(expected ".actor == \"$T\"")"

"$BEXCTL" --node "$U" --json audit --resource "$RES" >"$IT_DIR/cli.json" 2>&1 || it_fail "bexctl audit --resource"
it_eq "bexctl audit --resource" "$(jq -r '[.entries[].tx_id] | join(" ")' "$IT_DIR/cli.json")" \
    "$(expected ".resource == \"$RES\"")"
it_done
