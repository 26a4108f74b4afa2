#!/bin/sh
# bexctl against a real network: four bexd processes on loopback (one per
# agency), a CONDITIONAL resource, records published one by one and from a
# JSON-lines file, a 2-of-3 approval, the owner node's automatic index key
# share, release and verify answers, revocation, the audit trail, and a
# write that still commits with one node down. Exit codes are checked
# throughout. Every wait polls up to a deadline; the processes are killed
# on exit.
set -u
B=${B:-build}
ROOT=$(pwd)
BEXCTL=$ROOT/$B/bexctl
BEXD=$ROOT/$B/bexd
dir=$(mktemp -d /tmp/bex-cli-flow-XXXXXX)
pids=""
failures=0

cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# run WANT_RC WHAT ARGS...: runs bexctl, output in $dir/out, checks the exit code.
run() {
    want=$1
    what=$2
    shift 2
    "$BEXCTL" "$@" >"$dir/out" 2>"$dir/err"
    got=$?
    if [ "$got" -ne "$want" ]; then
        fail "$what: exit $got, want $want"
        sed 's/^/  out: /' "$dir/out" | head -20
        sed 's/^/  err: /' "$dir/err" | head -20
    fi
}

has() { # has WHAT TEXT: the last output contains TEXT
    grep -q -- "$2" "$dir/out" || { fail "$1: '$2' not in the output"; sed 's/^/  /' "$dir/out" | head -20; }
}

lacks() {
    ! grep -q -- "$2" "$dir/out" || fail "$1: '$2' is in the output"
}

# until_ok SECONDS ARGS...: retries a bexctl command until it exits 0.
until_ok() {
    limit=$(($(date +%s) + $1))
    shift
    while ! "$BEXCTL" "$@" >"$dir/out" 2>"$dir/err"; do
        if [ "$(date +%s)" -ge "$limit" ]; then
            return 1
        fi
        sleep 0.2
    done
    return 0
}

command -v openssl >/dev/null || { echo "cli_flow: openssl is needed to make TLS keys"; exit 1; }

# ---- the network: keys, genesis, node configs ----
export BEX_PASSPHRASE=pw
printf 'pw\n' >"$dir/pass"
key() { "$BEXCTL" keygen --out "$1" --scrypt-log2n 10 | sed -n 's/^public_key: //p'; }
tls() {
    openssl genpkey -algorithm ed25519 -aes-256-cbc -pass pass:pw -out "$1" 2>/dev/null &&
        openssl pkey -in "$1" -passin pass:pw -pubout -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n'
}

# Free ports: bexctl testnet init picks them (the kernel chooses each, with
# all eight sockets open at once, so they are distinct and not in use by
# other networks on this machine). Only its ports are used; its keys and
# configs are removed.
"$BEXCTL" testnet init --dir "$dir/ports" --nodes 4 --json >"$dir/ports.json" 2>"$dir/ports.err" || {
    echo "FAIL: bexctl testnet init could not pick ports: $(cat "$dir/ports.err")"
    exit 1
}
rm -rf "$dir/ports"
i=0
for pair in $(jq -r '.nodes[] | "\(.p2p | sub(".*:"; "")),\(.rpc | sub(".*:"; ""))"' "$dir/ports.json"); do
    printf '%s\n' "$pair" | grep -qE '^[0-9]+,[0-9]+$' || {
        echo "FAIL: bexctl testnet init gave no ports: $(cat "$dir/ports.json")"
        exit 1
    }
    eval "p2p_$i=${pair%,*} rpc_$i=${pair#*,}"
    i=$((i + 1))
done
[ "$i" -eq 4 ] || { echo "FAIL: bexctl testnet init gave $i nodes' ports: $(cat "$dir/ports.json")"; exit 1; }
ids="city.traffic city.police city.tax state.health"
roles="traffic police finance health"
agencies=""
nodes=""
i=0
for id in $ids; do
    n="$dir/n$i"
    eval "p2p=\$p2p_$i rpc=\$rpc_$i"
    mkdir -p "$n"
    role=$(echo "$roles" | cut -d' ' -f$((i + 1)))
    officers=""
    count=1
    [ "$id" = city.traffic ] && count=3
    k=0
    while [ "$k" -lt "$count" ]; do
        pub=$(key "$n/officer$k.key") || exit 1
        officers="$officers${officers:+, }\"$pub\""
        k=$((k + 1))
    done
    threshold=1
    [ "$id" = city.traffic ] && threshold=2
    enc=$(key "$n/enc.key")
    node=$(key "$n/node.key")
    tlspub=$(tls "$n/tls.pem") || { echo "cli_flow: cannot make a TLS key"; exit 1; }
    agencies="$agencies${agencies:+,
}    {\"id\": \"$id\", \"name\": \"$id\", \"roles\": [\"$role\"], \"officers\": [$officers], \"threshold\": $threshold, \"enc_key\": \"$enc\"}"
    nodes="$nodes${nodes:+,
}    {\"agency\": \"$id\", \"node_key\": \"$node\", \"tls_key\": \"$tlspub\", \"address\": \"127.0.0.1:$p2p\"}"
    cat >"$n/node.json" <<EOF
{"genesis": "../genesis.json", "node_index": $i, "data_dir": "data", "listen": "127.0.0.1:$p2p",
 "rpc": "127.0.0.1:$rpc", "node_key": "node.key", "tls_key": "tls.pem", "enc_key": "enc.key",
 "passphrase_file": "../pass", "log_level": "warn"}
EOF
    i=$((i + 1))
done
cat >"$dir/genesis.json" <<EOF
{"chain_id": "bex-cli-flow", "genesis_time_ms": $(date +%s)000,
 "agencies": [
$agencies
 ],
 "nodes": [
$nodes
 ]}
EOF

for i in 0 1 2 3; do
    "$BEXD" --config "$dir/n$i/node.json" 2>"$dir/n$i/log" &
    pids="$pids $!"
done
N0="http://127.0.0.1:$rpc_0"
N1="http://127.0.0.1:$rpc_1"
N2="http://127.0.0.1:$rpc_2"
N3="http://127.0.0.1:$rpc_3"
for url in "$N0" "$N1" "$N2" "$N3"; do
    if ! until_ok 20 --node "$url" status; then
        echo "FAIL: node $url did not come up"
        for i in 0 1 2 3; do sed "s/^/  n$i: /" "$dir/n$i/log" | tail -5; done
        exit 1
    fi
done
start=$(date +%s)

T0="--key $dir/n0/officer0.key"
T01="--key $dir/n0/officer0.key --key $dir/n0/officer1.key"
TE="--enc-key $dir/n0/enc.key"
P0="--key $dir/n1/officer0.key"
PE="--enc-key $dir/n1/enc.key"
X0="--key $dir/n2/officer0.key"
VEH=city.traffic/vehicles

# ---- reading the network ----
run 0 "status" --node "$N0" status
has "status" "chain_id: *bex-cli-flow"
run 0 "agency list" --node "$N1" agency list
has "agency list" "city.traffic *city.traffic *traffic *2 of 3"
has "agency list" "state.health"
run 0 "peers" --node "$N0" peers
has "peers" "city.police"

# ---- the owner offers a resource and publishes ----
cat >"$dir/vehicles.json" <<EOF
{"id": "$VEH", "title": "Registered vehicles", "share_type": "SHARE_CONDITIONAL",
 "share_conditions": "law enforcement", "update_cycle": "daily",
 "fields": [{"name": "owner", "type": "FIELD_STRING"},
            {"name": "colour", "type": "FIELD_ENUM", "enum_values": ["red", "blue", "silver"]},
            {"name": "insured", "type": "FIELD_STRING", "sensitive": true}],
 "roles": [{"role": "police", "read": true, "verify": true}]}
EOF
# shellcheck disable=SC2086
run 0 "catalog register" --node "$N0" $T0 catalog register "$dir/vehicles.json"
has "catalog register" "committed at height"
run 3 "catalog register twice" --node "$N0" $T0 catalog register "$dir/vehicles.json"
grep -q "EEXIST" "$dir/err" || fail "catalog register twice: no EEXIST in '$(cat "$dir/err")'"
run 0 "catalog show on another node" --node "$N2" catalog show "$VEH"
has "catalog show" "insured *STRING *yes (verify only)"

run 0 "record publish" --node "$N0" $T0 $TE record publish "$VEH" --key AB-123-CD \
    --field "owner=Jane Q. Public" --field colour=silver --field insured=policy-7781
has "record publish" "version: *1"
i=0
: >"$dir/records.jsonl"
while [ "$i" -lt 300 ]; do
    echo "{\"key\": \"PL-$i\", \"fields\": {\"owner\": \"Owner $i\", \"colour\": \"red\"}}" >>"$dir/records.jsonl"
    i=$((i + 1))
done
t=$(date +%s)
run 0 "record publish --file" --node "$N0" $T0 $TE record publish "$VEH" --file "$dir/records.jsonl"
has "record publish --file" "published 300 of 300 records"
echo "  300 records in $(($(date +%s) - t)) s"
run 0 "record list" --node "$N1" --json record list "$VEH"
[ "$(grep -c '"key":' "$dir/out")" -eq 301 ] || fail "record list: $(grep -c '"key":' "$dir/out") records, want 301"
lacks "record list" "AB-123-CD"
run 0 "record show" --node "$N0" $T0 $TE record show "$VEH" AB-123-CD
has "record show" "insured: *policy-7781"

# ---- a consumer asks, the owner's officers decide ----
run 0 "grant request" --node "$N1" $P0 grant request "$VEH" --fields owner,colour --purpose "case 2024-117" \
    --expires 30
has "grant request" "grant_id: 1"
has "grant request" "GRANT_PENDING"
run 0 "grant request verify" --node "$N1" $P0 grant request "$VEH" --fields insured --mode verify \
    --purpose "roadside checks" --expires 1
run 3 "approve with one officer" --node "$N0" $T0 grant approve 1
grep -q "ETHRESHOLD" "$dir/err" || fail "approve with one officer: no ETHRESHOLD"
run 0 "approve with two officers" --node "$N0" $T01 grant approve 1
has "approve" "GRANT_ACTIVE"
run 0 "approve 2" --node "$N0" $T01 grant approve 2
run 0 "grant list" --node "$N2" grant list --consumer city.police --status active
has "grant list" "READ *ACTIVE"
has "grant list" "VERIFY *ACTIVE"
until_ok 20 --node "$N1" query record index_key "{\"resource\": \"$VEH\", \"consumer\": \"city.police\"}" ||
    fail "the owner's node did not share the index key"

# ---- access and verify, answered by the owner's node ----
run 0 "access" --node "$N1" $P0 $PE access "$VEH" AB-123-CD --purpose "case 2024-117"
has "access" "released by city.traffic under grant 1"
has "access" "owner: *Jane Q. Public"
has "access" "colour: *silver"
lacks "access" "policy-7781"
run 0 "access a batch record" --node "$N2" $P0 $PE --json access "$VEH" PL-299 --purpose "case 2024-117"
has "access --json" '"owner": "Owner 299"'
run 3 "access unknown record" --node "$N1" $P0 $PE access "$VEH" ZZ-000 --purpose p
run 0 "verify yes" --node "$N1" $P0 $PE verify "$VEH" AB-123-CD insured policy-7781
[ "$(cat "$dir/out")" = yes ] || fail "verify yes: got '$(cat "$dir/out")'"
echo policy-0000 | "$BEXCTL" --node "$N1" $P0 $PE verify "$VEH" AB-123-CD insured - >"$dir/out" 2>"$dir/err" ||
    fail "verify no: exit $?"
[ "$(cat "$dir/out")" = no ] || fail "verify no: got '$(cat "$dir/out")'"
run 5 "tax has no index key" --node "$N2" $X0 --enc-key "$dir/n2/enc.key" access "$VEH" AB-123-CD --purpose p

# ---- revocation and the audit trail ----
run 0 "revoke" --node "$N0" $T01 grant revoke 1 --reason "case closed"
run 3 "access after revoke" --node "$N1" $P0 $PE access "$VEH" AB-123-CD --purpose p
grep -q "EREFUSED" "$dir/err" || fail "access after revoke: no EREFUSED"
run 0 "audit" --node "$N2" audit --limit 400
has "audit" "city.police *access.request *city.traffic/vehicles .* OK"
has "audit" "city.traffic *access.release"
has "audit" "city.traffic *verify.answer .* answered no"
has "audit" "city.traffic *record.share_index"
has "audit" "city.traffic *grant.revoke"
has "audit" "city.police *access.request .* EREFUSED"
run 0 "audit since" --node "$N2" --json audit --since 1h --limit 1
has "audit since" '"more": true'

# ---- one node down: f = 1, writes still commit ----
stopped=$(echo $pids | cut -d' ' -f4)
kill "$stopped"
# SIGTERM lets the node finish its loop: wait until it is gone.
wait "$stopped" 2>/dev/null
run 4 "stopped node" --node "$N3" status
run 0 "write with a node down" --node "$N2" $P0 grant request "$VEH" --fields owner --purpose audit \
    --expires 1 --timeout 60
run 0 "tx of that write" --node "$N0" tx "$(sed -n 's/^tx \([0-9a-f]*\) committed.*/\1/p' "$dir/out")"
has "tx" "grant"

echo "  scenario took $(($(date +%s) - start)) s"
if [ "$failures" -ne 0 ]; then
    for i in 0 1 2 3; do sed "s/^/  n$i: /" "$dir/n$i/log" | tail -5; done
    exit 1
fi
echo "bexctl against bexd: ok"
