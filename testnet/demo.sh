#!/bin/sh
# The bex demo: four agencies of a city share data through a running local
# testnet (testnet/up.sh), each acting through bexctl on its own node, under
# the rules the chain enforces:
#   1. Traffic shares vehicle violation records with Police (CONDITIONAL);
#   2. Tax and Health are refused those records;
#   3. Tax publishes enterprise credit ratings (UNCONDITIONAL);
#   4. Health publishes epidemic daily figures that every agency reads;
#   5. a resource that is not shared (NONE) refuses every request;
#   6. Tax checks a vehicle owner's id number without seeing it (VERIFY);
#   7. Traffic revokes Police's grant;
#   8. the audit trail of the violation records.
# Every action prints one line and is checked; the first one that does not
# behave as described stops the demo with a message naming its step (exit 1).
# The generated data and the verify claims are left in $TESTNET_DIR/demo/.
#
# usage: testnet/demo.sh     (on a fresh network: testnet/up.sh first)
#
# Environment: B (build directory), TESTNET_DIR (default testnet/run),
# BEX_DEMO_SEED (seed of the generated data, default 2026).
set -u
# shellcheck source=testnet/common.sh
. "$(dirname -- "$0")/common.sh"

seed=${BEX_DEMO_SEED:-2026}
case $seed in
'' | *[!0-9]*)
    echo "demo.sh: BEX_DEMO_SEED must be a number" >&2
    exit 2
    ;;
esac
[ $# -eq 0 ] || {
    echo "usage: testnet/demo.sh   (after testnet/up.sh; see testnet/README.md)" >&2
    exit 2
}
if [ ! -x "$BEXCTL" ]; then
    echo "demo.sh: $(tn_show "$BEXCTL") is not built: run make" >&2
    exit 1
fi
if ! tn_has_network; then
    echo "demo.sh: no network in $(tn_show "$TESTNET_DIR"): run testnet/up.sh first" >&2
    exit 1
fi
BEX_PASSPHRASE=$(cat "$TESTNET_DIR/passphrase") || exit 1
export BEX_PASSPHRASE
data=$TESTNET_DIR/demo
mkdir -p "$data" || exit 1
errf=$data/.stderr
started_ms=$(date +%s%3N)

VIOLATIONS=city.traffic/violations
CREDIT=city.tax/credit-ratings
EPIDEMIC=city.health/epidemic-daily
PATIENTS=city.health/patient-records

# ------------------------------------------------------------------ helpers

step=0
step_title=""

# begin N TITLE: starts step N.
begin() {
    step=$1
    step_title=$2
    printf '\n%s. %s\n' "$1" "$2"
}

# ok TEXT [HEIGHTS]: one line of what happened, with the heights it committed at.
ok() {
    if [ -n "${2:-}" ]; then
        printf '  \342\234\223 %s   [%s]\n' "$1" "$2"
    else
        printf '  \342\234\223 %s\n' "$1"
    fi
}

# fail TEXT: the step did not behave; says which step and what bexctl said.
fail() {
    printf '  \342\234\227 %s\n' "$1" >&2
    if [ -n "${err:-}" ]; then
        printf '%s\n' "$err" | sed 's/^/    /' >&2
    fi
    printf 'demo: step %s (%s) failed\n' "$step" "$step_title" >&2
    exit 1
}

# The agencies, from agencies.txt: URL of the node and a short name
# ("city.traffic" -> "Traffic").
url_of() {
    awk -F '\t' -v id="$1" '$1 == id { print $4; exit }' "$TESTNET_DIR/agencies.txt"
}
short_of() {
    _s=${1#*.}
    printf '%s%s\n' "$(printf '%s' "$_s" | cut -c1 | tr '[:lower:]' '[:upper:]')" "$(printf '%s' "$_s" | cut -c2-)"
}
officer() { printf '%s\n' "$TESTNET_DIR/agencies/$1/officer$2.key"; }
enc() { printf '%s\n' "$TESTNET_DIR/agencies/$1/enc.key"; }

# run AGENCY ARGS...: runs "bexctl --json ARGS" against AGENCY's own node.
# Sets out (standard output), err (standard error) and rc (exit status).
run() {
    _url=$(url_of "$1")
    shift
    out=$("$BEXCTL" --node "$_url" --json "$@" 2>"$errf")
    rc=$?
    err=$(cat "$errf")
}

# jv NAME: the top-level value of "NAME" in $out (bexctl indents by two
# spaces), quotes and trailing comma removed.
jv() {
    printf '%s\n' "$out" | sed -n "s/^  \"$1\": \(.*\)\$/\1/p" | head -n 1 | sed 's/,$//; s/^"\(.*\)"$/\1/'
}

# outcome NAME: a value of the "outcome" object of a receipt.
outcome() {
    printf '%s\n' "$out" | sed -n '/^  "outcome": {/,/^  }/p' | sed -n "s/^    \"$1\": \(.*\)\$/\1/p" |
        head -n 1 | sed 's/,$//; s/^"\(.*\)"$/\1/'
}

# heights LO HI: "height LO", or "heights LO-HI" when they differ.
heights() {
    if [ "$1" = "$2" ]; then
        printf 'height %s\n' "$1"
    else
        printf 'heights %s-%s\n' "$1" "$2"
    fi
}

# receipt: the outcome of the last run's transaction, for messages.
receipt() {
    if [ -n "$(jv code_name)" ]; then
        printf '%s %s\n' "$(jv code_name)" "$(jv message)"
    else
        printf 'no receipt\n'
    fi
}

# committed WHAT: the last run committed a transaction that succeeded.
committed() {
    if [ "$rc" -ne 0 ] || [ "$(jv code_name)" != OK ]; then
        fail "$1: bexctl exited $rc, $(receipt)"
    fi
    err=""
}

# refused WHAT [CODE]: the last run committed a transaction that the
# contract refused with CODE (default EREFUSED); bexctl exits 3.
refused() {
    if [ "$rc" -ne 3 ] || [ "$(jv code_name)" != "${2:-EREFUSED}" ]; then
        fail "$1: ${2:-EREFUSED} expected, bexctl exited $rc, $(receipt)"
    fi
    err=""
}

# field_of FILE KEY NAME: the value of field NAME of record KEY in a JSONL file
# of the generators (flat string values without quotes inside).
field_of() {
    grep -F "{\"key\":\"$2\"," "$1" | head -n 1 | sed -n "s/.*\"$3\":\"\([^\"]*\)\".*/\1/p"
}

# released NAME: the value of field NAME in the last access result.
released() {
    printf '%s\n' "$access_out" | sed -n '/^  "fields": {/,/^  }/p' | sed -n "s/^    \"$1\": \"\(.*\)\",\{0,1\}\$/\1/p"
}

# released_names: the names of the fields released in the last access, comma-separated.
released_names() {
    printf '%s\n' "$access_out" | sed -n '/^  "fields": {/,/^  }/p' | sed -n 's/^    "\([^"]*\)": .*/\1/p' | paste -sd, -
}

# access_check AGENCY RESOURCE KEY FILE FIELDS PURPOSE: AGENCY reads record
# KEY and must see exactly FIELDS (comma-separated), equal to the values
# generated in FILE. Sets access_out (the result), access_id, req_height
# and rel_height (the heights of the request and of the owner's release).
access_check() {
    run "$1" --key "$(officer "$1" 1)" --enc-key "$(enc "$1")" access "$2" "$3" --purpose "$6"
    [ "$rc" -eq 0 ] || fail "$(short_of "$1") reads $3 of $2: bexctl exited $rc, $(receipt)"
    err=""
    access_out=$out
    access_id=$(jv access_id)
    [ "$(released_names)" = "$5" ] ||
        fail "$(short_of "$1") was released fields $(released_names) of $3, not exactly $5"
    for _f in $(printf '%s' "$5" | tr ',' ' '); do
        _want=$(field_of "$4" "$3" "$_f")
        _got=$(released "$_f")
        [ -n "$_want" ] && [ "$_got" = "$_want" ] ||
            fail "$(short_of "$1") read $_f of $3 as \"$_got\", published as \"$_want\""
    done
    audit_rows "$2"
    _req=$(row_of "$rows" access.request "$access_id")
    _rel=$(row_of "$rows" access.release "$access_id")
    [ -n "$_req" ] && [ -n "$_rel" ] || fail "access $access_id is not in the audit trail as requested and released"
    req_height=$(printf '%s' "$_req" | cut -f 1)
    rel_height=$(printf '%s' "$_rel" | cut -f 1)
    access_key_hash=$(printf '%s' "$_req" | cut -f 6)
}

# audit_rows RESOURCE: sets rows to the audit trail of RESOURCE as read from
# Traffic's node, oldest first, one tab-separated line per entry: height,
# time_ms, tx_id, actor, action, record_key, grant_id, access_id, code,
# detail.
audit_rows() {
    run city.traffic audit --resource "$1" --limit 10000
    [ "$rc" -eq 0 ] || fail "the audit trail of $1 cannot be read: exit $rc"
    err=""
    rows=$(printf '%s\n' "$out" | awk '
        /^    \{/ { split("", e) }
        /^      "/ {
            line = $0
            sub(/^      "/, "", line)
            k = line; sub(/".*/, "", k)
            v = line; sub(/^[^"]*": /, "", v); sub(/,$/, "", v)
            if (v ~ /^".*"$/) v = substr(v, 2, length(v) - 2)
            # An empty field would vanish when read back with IFS=tab.
            e[k] = v == "" ? "-" : v
        }
        /^    \}/ {
            print e["height"] "\t" e["time_ms"] "\t" e["tx_id"] "\t" e["actor"] "\t" e["action"] "\t" \
                e["record_key"] "\t" e["grant_id"] "\t" e["access_id"] "\t" e["code"] "\t" e["detail"]
        }' | tac)
}

# publish AGENCY RESOURCE FILE: AGENCY publishes every record of the JSONL
# FILE to RESOURCE; each must be published and in the audit trail. Sets
# count and at (the heights they committed at, "heights 6-9").
publish() {
    count=$(wc -l <"$3" | tr -d ' ')
    [ "$count" -gt 0 ] || fail "no records were generated in $3"
    run "$1" --key "$(officer "$1" 1)" --enc-key "$(enc "$1")" record publish "$2" --file "$3"
    if [ "$rc" -ne 0 ] || [ "$(jv published)" != "$count" ] || [ "$(jv failed)" != 0 ]; then
        fail "$(short_of "$1") publishes $count records to $2: bexctl exited $rc, $(jv published) published, $(jv failed) failed"
    fi
    err=""
    audit_rows "$2"
    _pub=$(printf '%s\n' "$rows" | awk -F '\t' '$5 == "record.publish" && $9 == 0 { n++; if (!lo) lo = $1; hi = $1 }
        END { print n + 0, lo, hi }')
    [ "${_pub%% *}" = "$count" ] || fail "the audit trail of $2 holds ${_pub%% *} publications, not $count"
    # shellcheck disable=SC2086 # two numbers
    at=$(heights ${_pub#* })
}

# row_of ROWS ACTION ACCESS_ID: the first audit row of ACTION about that
# access or verification id.
row_of() {
    printf '%s\n' "$1" | awk -F '\t' -v a="$2" -v id="$3" '$5 == a && $8 == id { print; exit }'
}

# officers_of AGENCY KEY...: "officer1, officer2" for signer public keys.
officers_of() {
    _a=$1
    shift
    _names=""
    for _pk in "$@"; do
        for _n in 1 2 3; do
            if grep -q "\"public_key\": *\"$_pk\"" "$(officer "$_a" "$_n")"; then
                _names="$_names${_names:+, }officer$_n"
            fi
        done
    done
    printf '%s\n' "$_names"
}

# signers: the public keys that signed the transaction of the last run.
signers() {
    printf '%s\n' "$out" | sed -n '/^  "signers": \[/,/^  \]/p' | sed -n 's/^    "\([0-9a-f]*\)",\{0,1\}$/\1/p'
}

# hex TEXT: TEXT's bytes in lowercase hex.
hex() {
    printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'
}

# unique_keys: keeps the first record of every key of a JSONL stream.
unique_keys() {
    awk -F '"' '!seen[$4]++'
}

# --------------------------------------------------------- the network

for id in city.traffic city.police city.tax city.health; do
    if [ -z "$(url_of "$id")" ]; then
        echo "demo.sh: $(tn_show "$TESTNET_DIR") has no agency $id" >&2
        exit 1
    fi
done
run city.traffic status
if [ "$rc" -ne 0 ]; then
    echo "demo.sh: the node of city.traffic does not answer ($err): run testnet/up.sh" >&2
    exit 1
fi
chain=$(jv chain_id)
height0=$(jv height)
run city.traffic catalog show "$VIOLATIONS"
case $rc in
5) ;;
0)
    echo "demo.sh: $VIOLATIONS exists already: the demo needs a fresh network" >&2
    echo "  testnet/down.sh --wipe && testnet/up.sh && testnet/demo.sh   (or: make demo)" >&2
    exit 1
    ;;
*)
    echo "demo.sh: cannot read the catalog: $err" >&2
    exit 1
    ;;
esac
n_nodes=$(tn_count)
echo "bex demo: agencies share data under rules the chain enforces and audits"
echo "network: $n_nodes nodes on 127.0.0.1, chain $chain at height $height0 ($(tn_show "$TESTNET_DIR"))"
while IFS=$tn_tab read -r id name index url; do
    case $id in
    city.traffic | city.police | city.tax | city.health)
        printf '  %-8s %-28s %-13s node%s  %s\n' "$(short_of "$id")" "$name" "$id" "$index" "$url"
        ;;
    esac
done <"$TESTNET_DIR/agencies.txt"

# ------------------------------------------- 1. violation records (CONDITIONAL)

begin 1 "Traffic shares vehicle violation records with Police (CONDITIONAL)"
cat >"$data/violations.json" <<'EOF'
{"id": "city.traffic/violations", "title": "Vehicle violation records",
 "share_type": "SHARE_CONDITIONAL",
 "share_conditions": "for law enforcement; each request approved by two officers",
 "update_cycle": "daily",
 "fields": [{"name": "plate", "type": "FIELD_STRING"},
            {"name": "time", "type": "FIELD_STRING"},
            {"name": "place", "type": "FIELD_STRING"},
            {"name": "violation", "type": "FIELD_STRING"},
            {"name": "fine", "type": "FIELD_STRING"},
            {"name": "owner_id", "type": "FIELD_STRING", "sensitive": true}],
 "roles": [{"role": "police", "read": true, "verify": true},
           {"role": "tax", "read": false, "verify": true}]}
EOF
run city.traffic --key "$(officer city.traffic 1)" catalog register "$data/violations.json"
committed "Traffic registers $VIOLATIONS"
h=$(jv height)
run city.police catalog show "$VIOLATIONS"
[ "$rc" -eq 0 ] && [ "$(jv share_type)" = SHARE_CONDITIONAL ] ||
    fail "Police's node does not show $VIOLATIONS as CONDITIONAL"
printf '%s\n' "$out" | grep -A 2 '"name": "owner_id"' | grep -q '"sensitive": true' ||
    fail "Police's node does not show owner_id as sensitive"
ok "Traffic registered \"Vehicle violation records\": CONDITIONAL, owner_id sensitive, read grants for the police role only" "height $h"

run city.police --key "$(officer city.police 1)" grant request "$VIOLATIONS" \
    --fields plate,time,place,violation --purpose "traffic enforcement" --expires 90
committed "Police requests plate, time, place, violation"
grant_police=$(outcome grant_id)
[ "$(outcome status)" = GRANT_PENDING ] || fail "Police's grant is $(outcome status), not pending"
ok "Police requested plate, time, place, violation for \"traffic enforcement\": grant $grant_police pending" \
    "height $(jv height)"

run city.traffic --key "$(officer city.traffic 1)" grant approve "$grant_police" --reason "one officer alone"
refused "one Traffic officer approves grant $grant_police" ETHRESHOLD
ok "one Traffic officer alone cannot approve it: ETHRESHOLD" "height $(jv height)"

run city.traffic --key "$(officer city.traffic 1)" --key "$(officer city.traffic 2)" grant approve "$grant_police" \
    --reason "law enforcement; owner id withheld"
committed "two Traffic officers approve grant $grant_police"
[ "$(outcome status)" = GRANT_ACTIVE ] || fail "grant $grant_police is $(outcome status) after approval"
# shellcheck disable=SC2046 # one public key per word
approvers=$(officers_of city.traffic $(signers))
[ "$approvers" = "officer1, officer2" ] || fail "grant $grant_police was signed by \"$approvers\""
ok "Traffic approved grant $grant_police with two officers ($approvers; 2 of 3 needed)" "height $(jv height)"

sh "$tn_root/testnet/gen-violations.sh" 300 "$seed" | unique_keys >"$data/violations.jsonl" || fail "generating records"
publish city.traffic "$VIOLATIONS" "$data/violations.jsonl"
ok "Traffic published $count generated records: every field sealed, every plate hashed" "$at"

# The plate Police looks up: one in the middle of the file.
plate=$(sed -n 42p "$data/violations.jsonl" | cut -d '"' -f 4)
access_check city.police "$VIOLATIONS" "$plate" "$data/violations.jsonl" plate,time,place,violation \
    "traffic enforcement: case 2026-1187"
plate_hash=$access_key_hash
ok "Police read $plate, exactly the granted fields: $(released time), $(released place), $(released violation)" \
    "$(heights "$req_height" "$rel_height")"

run city.police query access get "{\"id\": $access_id}"
keys=$(printf '%s\n' "$out" | sed -n 's/^      "field": "\(.*\)",\{0,1\}$/\1/p' | paste -sd, -)
[ "$rc" -eq 0 ] && [ "$keys" = plate,time,place,violation ] ||
    fail "access $access_id carries keys for \"$keys\", not plate,time,place,violation"
ok "Traffic's node released keys for $(printf '%s' "$keys" | sed 's/,/, /g') only: fine and owner_id stay sealed"

run city.police --key "$(officer city.police 1)" grant request "$VIOLATIONS" \
    --fields owner_id --purpose "identify the vehicle owner" --expires 90
refused "Police requests to read owner_id"
ok "Police asked to read owner_id as well: refused ($(jv message))" "height $(jv height)"

# ------------------------------------------------ 2. who may not read them

begin 2 "Tax and Health may not read the violation records"
run city.tax --key "$(officer city.tax 1)" grant request "$VIOLATIONS" \
    --fields plate,fine --purpose "tax deduction audit of paid fines" --expires 90
refused "Tax requests to read plate and fine"
ok "Tax asked to read plate, fine: refused ($(jv message))" "height $(jv height)"
run city.health --key "$(officer city.health 1)" grant request "$VIOLATIONS" \
    --fields owner_id --purpose "contact tracing" --expires 90
refused "Health requests owner_id"
ok "Health asked for owner_id: refused ($(jv message))" "height $(jv height)"

# ------------------------------------------ 3. credit ratings (UNCONDITIONAL)

begin 3 "Tax publishes enterprise credit ratings for every agency (UNCONDITIONAL)"
cat >"$data/credit-ratings.json" <<'EOF'
{"id": "city.tax/credit-ratings", "title": "Enterprise credit ratings",
 "share_type": "SHARE_UNCONDITIONAL", "update_cycle": "yearly",
 "fields": [{"name": "credit_code", "type": "FIELD_STRING"},
            {"name": "company", "type": "FIELD_STRING"},
            {"name": "rating", "type": "FIELD_ENUM", "enum_values": ["A", "B", "M", "C", "D"]},
            {"name": "year", "type": "FIELD_STRING"},
            {"name": "assessed", "type": "FIELD_STRING"}]}
EOF
run city.tax --key "$(officer city.tax 1)" catalog register "$data/credit-ratings.json"
committed "Tax registers $CREDIT"
ok "Tax registered \"Enterprise credit ratings\": UNCONDITIONAL" "height $(jv height)"
sh "$tn_root/testnet/gen-credit.sh" 120 "$seed" | unique_keys >"$data/credit-ratings.jsonl" || fail "generating ratings"
publish city.tax "$CREDIT" "$data/credit-ratings.jsonl"
ok "Tax published $count ratings (unified social credit codes, company names)" "$at"
i=7
for who in city.police city.traffic; do
    run "$who" --key "$(officer "$who" 1)" grant request "$CREDIT" \
        --fields credit_code,company,rating,year --purpose "vetting of contractors" --expires 365
    committed "$(short_of "$who") requests $CREDIT"
    g=$(outcome grant_id)
    [ "$(outcome status)" = GRANT_ACTIVE ] || fail "$(short_of "$who")'s grant $g is $(outcome status), not active"
    hg=$(jv height)
    code=$(sed -n "${i}p" "$data/credit-ratings.jsonl" | cut -d '"' -f 4)
    access_check "$who" "$CREDIT" "$code" "$data/credit-ratings.jsonl" credit_code,company,rating,year \
        "vetting of contractors"
    ok "$(short_of "$who") got grant $g at once, no approval, and read $code: $(released company), rating $(released rating) ($(released year))" \
        "$(heights "$hg" "$rel_height")"
    i=$((i + 31))
done

# ----------------------------------------- 4. epidemic figures (UNCONDITIONAL)

begin 4 "Health publishes epidemic daily figures and every agency reads them"
cat >"$data/epidemic-daily.json" <<'EOF'
{"id": "city.health/epidemic-daily", "title": "Epidemic daily figures by district",
 "share_type": "SHARE_UNCONDITIONAL", "update_cycle": "daily",
 "fields": [{"name": "date", "type": "FIELD_STRING"},
            {"name": "district", "type": "FIELD_STRING"},
            {"name": "new_confirmed", "type": "FIELD_STRING"},
            {"name": "new_asymptomatic", "type": "FIELD_STRING"},
            {"name": "in_hospital", "type": "FIELD_STRING"},
            {"name": "recovered", "type": "FIELD_STRING"}]}
EOF
run city.health --key "$(officer city.health 1)" catalog register "$data/epidemic-daily.json"
committed "Health registers $EPIDEMIC"
ok "Health registered \"Epidemic daily figures by district\": UNCONDITIONAL" "height $(jv height)"
sh "$tn_root/testnet/gen-epidemic.sh" 7 "$(date -u -d yesterday +%Y-%m-%d)" "$seed" >"$data/epidemic-daily.jsonl" ||
    fail "generating figures"
publish city.health "$EPIDEMIC" "$data/epidemic-daily.jsonl"
ok "Health published $count figures: 16 districts, 7 days" "$at"
i=$((count - 15))
for who in city.traffic city.police city.tax; do
    run "$who" --key "$(officer "$who" 1)" grant request "$EPIDEMIC" \
        --fields date,district,new_confirmed,in_hospital --purpose "daily situation report" --expires 30
    committed "$(short_of "$who") requests $EPIDEMIC"
    [ "$(outcome status)" = GRANT_ACTIVE ] || fail "$(short_of "$who")'s grant is $(outcome status), not active"
    hg=$(jv height)
    key=$(sed -n "${i}p" "$data/epidemic-daily.jsonl" | cut -d '"' -f 4)
    access_check "$who" "$EPIDEMIC" "$key" "$data/epidemic-daily.jsonl" date,district,new_confirmed,in_hospital \
        "daily situation report"
    ok "$(short_of "$who") read $(released district), $(released date): new confirmed $(released new_confirmed), in hospital $(released in_hospital)" \
        "$(heights "$hg" "$rel_height")"
    i=$((i + 5))
done

# ------------------------------------------------- 5. not shared (NONE)

begin 5 "Health keeps patient records unshared (NONE), as the law requires"
basis="Basic Medical and Health Care Law, art. 92: personal health information is confidential"
# The same resource twice: without a legal basis first, then with it.
patients_json() {
    cat <<EOF
{"id": "$PATIENTS", "title": "Patient medical records",
 "share_type": "SHARE_NONE", "update_cycle": "real time", "legal_basis": "$1",
 "fields": [{"name": "patient_id", "type": "FIELD_STRING", "sensitive": true},
            {"name": "name", "type": "FIELD_STRING"},
            {"name": "diagnosis", "type": "FIELD_STRING"},
            {"name": "hospital", "type": "FIELD_STRING"},
            {"name": "admitted", "type": "FIELD_STRING"}]}
EOF
}
patients_json "" >"$data/patient-records-no-basis.json"
patients_json "$basis" >"$data/patient-records.json"
run city.health --key "$(officer city.health 1)" catalog register "$data/patient-records-no-basis.json"
refused "Health registers $PATIENTS as NONE without a legal basis" EINVAL
ok "Health's first registration, NONE without a legal basis, was refused: $(jv message)" "height $(jv height)"
run city.health --key "$(officer city.health 1)" catalog register "$data/patient-records.json"
committed "Health registers $PATIENTS"
ok "Health registered \"Patient medical records\": NONE, legal basis: $basis" "height $(jv height)"
sh "$tn_root/testnet/gen-patients.sh" 20 "$seed" | unique_keys >"$data/patient-records.jsonl" || fail "generating patients"
publish city.health "$PATIENTS" "$data/patient-records.jsonl"
ok "Health published $count patient records, sealed, keyed by hashed id numbers" "$at"
run city.police --key "$(officer city.police 1)" grant request "$PATIENTS" \
    --fields name,diagnosis --purpose "criminal investigation" --expires 30
refused "Police requests $PATIENTS"
ok "Police asked to read name, diagnosis: refused ($(jv message | sed 's/:.*//'))" "height $(jv height)"
run city.tax --key "$(officer city.tax 1)" grant request "$PATIENTS" --mode verify \
    --fields patient_id --purpose "medical expense deduction check" --expires 30
refused "Tax requests to verify patient_id"
ok "Tax asked to verify patient_id: refused ($(jv message | sed 's/:.*//'))" "height $(jv height)"

# ------------------------------------------ 6. verify without reading (VERIFY)

begin 6 "Tax checks a vehicle owner's id number without seeing it (verify-only grant)"
run city.tax --key "$(officer city.tax 1)" grant request "$VIOLATIONS" --mode verify \
    --fields owner_id --purpose "vehicle purchase tax: check the declared owner" --expires 90
committed "Tax requests a verify-only grant on owner_id"
grant_tax=$(outcome grant_id)
[ "$(outcome status)" = GRANT_PENDING ] || fail "Tax's grant is $(outcome status), not pending"
ok "Tax requested a verify-only grant on owner_id: grant $grant_tax pending" "height $(jv height)"
run city.traffic --key "$(officer city.traffic 2)" --key "$(officer city.traffic 3)" grant approve "$grant_tax" \
    --reason "yes/no answers only"
committed "Traffic approves grant $grant_tax"
[ "$(outcome status)" = GRANT_ACTIVE ] || fail "grant $grant_tax is $(outcome status) after approval"
# shellcheck disable=SC2046
ok "Traffic approved grant $grant_tax ($(officers_of city.traffic $(signers)))" "height $(jv height)"

vplate=$(sed -n 100p "$data/violations.jsonl" | cut -d '"' -f 4)
right=$(field_of "$data/violations.jsonl" "$vplate" owner_id)
wrong=$(sed -n 101p "$data/violations.jsonl" | sed -n 's/.*"owner_id":"\([^"]*\)".*/\1/p')
[ -n "$right" ] && [ -n "$wrong" ] && [ "$right" != "$wrong" ] || fail "no two owner id numbers to check"
printf '%s\n%s\n' "$right" "$wrong" >"$data/verify-claims.txt"
vtxs=""
for claim in "$right" "$wrong"; do
    want=yes
    [ "$claim" = "$wrong" ] && want=no
    run city.tax --key "$(officer city.tax 1)" --enc-key "$(enc city.tax)" \
        verify "$VIOLATIONS" "$vplate" owner_id "$claim" --purpose "vehicle purchase tax: declared owner"
    [ "$rc" -eq 0 ] || fail "Tax verifies owner_id of $vplate: bexctl exited $rc, $(receipt)"
    err=""
    got=no
    [ "$(jv match)" = true ] && got=yes
    [ "$got" = "$want" ] || fail "Traffic's node answered $got for the $([ $want = yes ] && echo right || echo wrong) number"
    vid=$(jv verify_id)
    audit_rows "$VIOLATIONS"
    vreq=$(row_of "$rows" verify.request "$vid")
    vans=$(row_of "$rows" verify.answer "$vid")
    [ -n "$vreq" ] && [ -n "$vans" ] || fail "verification $vid is not in the audit trail as asked and answered"
    vtxs="$vtxs $(printf '%s' "$vreq" | cut -f 3)"
    ok "Is $claim the owner id of $vplate? Traffic's node answered $got" \
        "$(heights "$(printf '%s' "$vreq" | cut -f 1)" "$(printf '%s' "$vans" | cut -f 1)")"
done
vplate_hash=$(printf '%s' "$vreq" | cut -f 6)
for tx in $vtxs; do
    run city.tax tx "$tx"
    [ "$rc" -eq 0 ] || fail "the verify request $tx cannot be read back"
    err=""
    for claim in "$right" "$wrong"; do
        case $out in
        *"$claim"* | *"$(hex "$claim")"*) fail "the verify request $tx holds $claim in clear" ;;
        esac
    done
done
run city.tax query verify get "{\"id\": $vid}"
case $out in
*"$right"* | *"$wrong"* | *"$(hex "$right")"* | *"$(hex "$wrong")"*) fail "verification $vid holds a claim in clear" ;;
esac
ok "neither number is on chain in clear: each claim went sealed to Traffic's key"

# ----------------------------------------------------------- 7. revocation

begin 7 "Traffic revokes Police's grant"
run city.traffic --key "$(officer city.traffic 1)" grant revoke "$grant_police" --reason "case 2026-1187 closed"
committed "Traffic revokes grant $grant_police"
[ "$(outcome status)" = GRANT_REVOKED ] || fail "grant $grant_police is $(outcome status) after revocation"
ok "Traffic revoked grant $grant_police: \"case 2026-1187 closed\"" "height $(jv height)"
run city.police --key "$(officer city.police 1)" --enc-key "$(enc city.police)" \
    access "$VIOLATIONS" "$plate" --purpose "traffic enforcement: case 2026-1187"
refused "Police reads $plate after the revocation"
ok "Police asked for $plate again: refused ($(jv message))" "height $(jv height)"

# -------------------------------------------------------- 8. the audit trail

begin 8 "The audit trail of the violation records, as every node holds it"
audit_rows "$VIOLATIONS"
# Every kind of entry the steps above made must be there.
for want in catalog.register:0 grant.request:0 grant.approve:0 grant.approve:19 record.publish:0 \
    record.share_index:0 access.request:0 access.release:0 verify.request:0 verify.answer:0 grant.revoke:0 \
    grant.request:18 access.request:18; do
    printf '%s\n' "$rows" | awk -F '\t' -v a="${want%:*}" -v c="${want#*:}" '$5 == a && $9 == c { f = 1 } END { exit !f }' ||
        fail "the audit trail has no $want entry"
done
n_rows=$(printf '%s\n' "$rows" | wc -l | tr -d ' ')
# The same trail from Police's node: every node holds the same audit.
out_t=$out
run city.police audit --resource "$VIOLATIONS" --limit 10000
[ "$out" = "$out_t" ] || fail "Police's node holds another audit trail than Traffic's"
err=""
printf '  %-7s %-19s %-8s %s\n' HEIGHT "TIME (UTC)" AGENCY WHAT
# The key ids of approving officers read as the keystores that hold them.
names=""
for n in 1 2 3; do
    kid=$(sed -n 's/.*"key_id": *"\([0-9a-f]\{16\}\).*/\1/p' "$(officer city.traffic "$n")")
    names="${names}s/$kid/officer$n/g;"
done
pub_n=0
flush_pub() {
    if [ "$pub_n" -gt 0 ]; then
        printf '  %-7s %-19s %-8s %s\n' "$pub_lo-$pub_hi" "$pub_time" Traffic "published $pub_n records, sealed"
        pub_n=0
    fi
}
printf '%s\n' "$rows" | {
    while IFS=$tn_tab read -r height time_ms _tx actor action key grant access code detail; do
        when=$(date -u -d "@$((time_ms / 1000))" '+%Y-%m-%d %H:%M:%S')
        # One line for every run of publications.
        if [ "$action" = record.publish ] && [ "$code" = 0 ]; then
            if [ "$pub_n" -eq 0 ]; then
                pub_lo=$height
                pub_time=$when
            fi
            pub_n=$((pub_n + 1))
            pub_hi=$height
            continue
        fi
        flush_pub
        record=$key
        [ "$key" = "$plate_hash" ] && record=$plate
        [ "$key" = "$vplate_hash" ] && record=$vplate
        case $action:$code in
        catalog.register:0) what="registered the resource" ;;
        grant.request:0) what="requested grant $grant ($(printf '%s' "${detail##* GRANT_}" | tr '[:upper:]' '[:lower:]'))" ;;
        grant.approve:0) what="approved grant $grant ($(printf '%s' "${detail#approved by }" | sed 's/,/, /g'))" ;;
        grant.revoke:0) what="revoked grant $grant: ${detail#*: }" ;;
        record.share_index:0) what="shared the record index key with $(short_of "${detail##* }") (grant $grant)" ;;
        access.request:0) what="asked for $record (access $access)" ;;
        access.release:0) what="${detail% *} $(short_of "${detail##* }") (access $access)" ;;
        verify.request:0) what="asked whether owner_id of $record is a claimed number (verification $access)" ;;
        verify.answer:0) what="$detail (verification $access)" ;;
        access.request:18) what="asked for $record: REFUSED, $detail" ;;
        *:0) what="$action: $detail" ;;
        *:18) what="${action#*.} REFUSED: $detail" ;;
        *:19) what="${action#*.} failed (ETHRESHOLD): $detail" ;;
        *) what="${action#*.} failed (code $code): $detail" ;;
        esac
        printf '  %-7s %-19s %-8s %s\n' "$height" "$when" "$(short_of "$actor")" "$what"
    done
    flush_pub
} | sed "$names"
ok "$n_rows entries, the same on Police's node as on Traffic's; nothing left out, refusals included"

# ------------------------------------------------------------------ the end

ended_ms=$(date +%s%3N)
run_s=$(((ended_ms - started_ms + 500) / 1000))
run=$(tn_show "$TESTNET_DIR")
bexctl=$(tn_show "$BEXCTL")
echo
echo "demo: all 8 steps behaved as described, in ${run_s}s; the network keeps running (testnet/down.sh stops it)"
echo "logs:      $run/nodeK/bexd.log (K = 0..$((n_nodes - 1)))"
echo "keystores: $run/agencies/ID/officer1.key .. officer3.key (2 of 3 sign), enc.key (opens released fields)"
echo "data:      $run/demo/*.jsonl (what the agencies published)"
echo "try next (export BEX_PASSPHRASE=\$(cat $run/passphrase) first):"
echo "  $bexctl --node $(url_of city.police) audit --agency city.police"
echo "  $bexctl --node $(url_of city.tax) grant list --owner city.traffic"
epi_key=$(tail -n 1 "$data/epidemic-daily.jsonl" | cut -d '"' -f 4)
echo "  $bexctl --node $(url_of city.police) --key $run/agencies/city.police/officer1.key --enc-key $run/agencies/city.police/enc.key access $EPIDEMIC '$epi_key' --purpose 'road checkpoints'"
