#!/bin/sh
# The local testnet with the real bexd: up.sh lays out and starts 4 nodes, a
# transaction that two officers of city.traffic sign commits on every node,
# a stopped node comes back with its data, and down.sh stops them all. The
# network lives in a temporary TESTNET_DIR, never in testnet/run.
set -u
B=${B:-build}
root=$(pwd -P)
work=$(mktemp -d /tmp/bex-testnet-up-XXXXXX)
export TESTNET_DIR="$work/run" B
BEXCTL=$root/$B/bexctl
failures=0

# Stops every node still running, even if down.sh is broken: any process
# whose command line names a config of this test's network.
cleanup() {
    BEX_DOWN_TIMEOUT=5 sh "$root/testnet/down.sh" >/dev/null 2>&1
    for p in /proc/[0-9]*; do
        case $(tr '\0' ' ' 2>/dev/null <"$p/cmdline") in
        *"$TESTNET_DIR/node"*) kill -s KILL "${p#/proc/}" 2>/dev/null ;;
        esac
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
check() { # check WHAT WANT_RC GOT_RC
    [ "$2" -eq "$3" ] || fail "$1: exit $3, want $2:
$(cat "$work/out")"
}
contains() { # contains WHAT TEXT
    grep -q -- "$2" "$work/out" || fail "$1: '$2' not in:
$(cat "$work/out")"
}
alive() { kill -0 "$1" 2>/dev/null && [ -n "$(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline")" ]; }
pid_of() { cat "$TESTNET_DIR/node$1/bexd.pid" 2>/dev/null; }
url_of() { sh "$root/testnet/status.sh" --urls | sed -n "$(($1 + 1))p"; }

# wait_height H: polls status.sh until every node reports height >= H.
wait_height() {
    _deadline=$(($(date +%s) + 30))
    while :; do
        sh "$root/testnet/status.sh" >"$work/out" 2>&1
        _low=$(awk -v h="$1" 'NR > 1 && !($4 ~ /^[0-9]+$/ && $4 >= h)' "$work/out" | wc -l)
        [ "$_low" -eq 0 ] && return 0
        [ "$(date +%s)" -ge "$_deadline" ] && return 1
        sleep 0.2
    done
}

BEX_UP_TIMEOUT=60 sh "$root/testnet/up.sh" >"$work/out" 2>&1
check "up.sh" 0 $?
contains "up.sh" "4 nodes up"
sh "$root/testnet/status.sh" >"$work/out" 2>&1
check "status.sh" 0 $?
[ "$(grep -c ' 3/3 *ok$' "$work/out")" -eq 4 ] || fail "not every node is healthy with 3 peers:
$(cat "$work/out")"

# Two of the three officer keys init wrote meet city.traffic's threshold.
cat >"$work/resource.json" <<'EOF'
{"id": "city.traffic/plates", "title": "Registered vehicles", "share_type": "SHARE_CONDITIONAL",
 "share_conditions": "law enforcement", "update_cycle": "daily",
 "fields": [{"name": "owner", "type": "FIELD_STRING"}, {"name": "insured", "type": "FIELD_STRING", "sensitive": true}],
 "roles": [{"role": "police", "read": true, "verify": true}]}
EOF
keys=$TESTNET_DIR/agencies/city.traffic
"$BEXCTL" --node "$(url_of 0)" --passphrase-file "$TESTNET_DIR/passphrase" --key "$keys/officer1.key" \
    --key "$keys/officer3.key" catalog register "$work/resource.json" >"$work/out" 2>&1
check "catalog register signed by two officers" 0 $?
contains "catalog register" "committed at height"
wait_height 1 || fail "not every node reached height 1:
$(cat "$work/out")"
"$BEXCTL" --node "$(url_of 3)" catalog list >"$work/out" 2>&1
check "catalog list on node3" 0 $?
contains "node3 holds the resource" "city.traffic/plates"

# A stopped node restarts with its data; the others are left alone.
p0=$(pid_of 0)
p2=$(pid_of 2)
kill -s TERM -- "-$p2"
n=0
while alive "$p2" && [ "$n" -lt 100 ]; do
    sleep 0.1
    n=$((n + 1))
done
alive "$p2" && fail "node2 did not stop on SIGTERM"
BEX_UP_TIMEOUT=60 sh "$root/testnet/up.sh" >"$work/out" 2>&1
check "up.sh restarting node2" 0 $?
contains "node0 left alone" "node0: already running (pid $p0)"
contains "one node started" "started 1 node(s)"
contains "node2 kept its blocks" "node2: health 200, height [1-9]"

sh "$root/testnet/down.sh" >"$work/out" 2>&1
check "down.sh" 0 $?
for k in 0 1 2 3; do
    contains "down.sh stops node$k" "node$k: stopping"
done
alive "$p0" && fail "node0 (pid $p0) still runs after down.sh"
grep -q "ERROR\|Sanitizer" "$TESTNET_DIR"/node*/bexd.log && fail "a node logged an error:
$(grep -h "ERROR\|Sanitizer" "$TESTNET_DIR"/node*/bexd.log | head -20)"

[ "$failures" -eq 0 ] && echo "testnet up: ok"
[ "$failures" -eq 0 ]
