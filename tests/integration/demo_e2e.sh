#!/bin/sh
# make demo end to end: a fresh 4-node testnet in a temporary TESTNET_DIR
# (testnet/up.sh), the whole demo on it (testnet/demo.sh), then, with the
# nodes stopped, a scan of every database of every node's LMDB store
# (build/tests/tools/plainscan) for the plaintext of every value the demo
# published to its CONDITIONAL and NONE resources and of its verify claims:
# none may be there. The scan must find, in the same stores, the values that
# are stored in clear (the keys of the UNCONDITIONAL resources), or it proves
# nothing. The node logs are searched for the same values. Finally
# testnet/down.sh --wipe; the nodes are killed by pid and the directory
# removed whatever happens.
set -u
B=${B:-build}
root=$(pwd -P)
work=$(mktemp -d /tmp/bex-demo-it-XXXXXX) || exit 1
export TESTNET_DIR="$work/run"
scan=$root/$B/tests/tools/plainscan

# Stops every node of this network, even if down.sh fails: SIGKILL to each
# pid recorded by up.sh, then removes the temporary directory.
cleanup() {
    BEX_DOWN_TIMEOUT=5 B=$B sh "$root/testnet/down.sh" >/dev/null 2>&1
    for f in "$TESTNET_DIR"/node*/bexd.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null)
        case $pid in
        '' | *[!0-9]*) ;;
        *) kill -s KILL "$pid" 2>/dev/null ;;
        esac
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    exit 1
}

[ -x "$scan" ] || fail "$scan is not built (make test builds it)"
B=$B sh "$root/testnet/up.sh" >"$work/up.out" 2>&1 || {
    cat "$work/up.out"
    fail "testnet/up.sh"
}
t0=$(date +%s)
B=$B sh "$root/testnet/demo.sh" >"$work/demo.out" 2>&1
rc=$?
t1=$(date +%s)
cat "$work/demo.out"
[ "$rc" -eq 0 ] || fail "testnet/demo.sh exited $rc"
grep -q '^demo: all 8 steps behaved as described' "$work/demo.out" || fail "the demo did not report its 8 steps"
echo "demo_e2e: the demo took $((t1 - t0))s"

B=$B sh "$root/testnet/down.sh" >"$work/down.out" 2>&1 || {
    cat "$work/down.out"
    fail "testnet/down.sh"
}

# values FILE NAME...: the values of fields NAME of a JSONL file of the demo.
data=$TESTNET_DIR/demo
values() {
    _f=$1
    shift
    for _n in "$@"; do
        sed -n "s/.*\"$_n\":\"\([^\"]*\)\".*/\1/p" "$_f"
    done
}
# What must not be stored: every value of the CONDITIONAL violation records
# (plates are also their keys) but the fines, too short to look for (3
# bytes match sealed bytes by chance); every value of the NONE patient
# records (patient ids are their keys) but the admission dates, which the
# epidemic figures (UNCONDITIONAL) hold in clear in their keys; the claims
# of the verify requests.
{
    values "$data/violations.jsonl" plate time place violation owner_id
    values "$data/patient-records.jsonl" patient_id name diagnosis hospital
    cat "$data/verify-claims.txt"
} | sort -u >"$work/absent.txt"
# What is stored in clear: the keys of the UNCONDITIONAL records.
{
    values "$data/credit-ratings.jsonl" key
    values "$data/epidemic-daily.jsonl" key
} | sort -u >"$work/present.txt"
n_absent=$(wc -l <"$work/absent.txt")
n_present=$(wc -l <"$work/present.txt")
[ "$n_absent" -gt 900 ] || fail "only $n_absent values to look for: the demo's data is missing"
[ "$n_present" -gt 200 ] || fail "only $n_present clear values: the demo's data is missing"

envs=$(find "$TESTNET_DIR" -name data.mdb | sed 's,/data.mdb$,,' | sort)
n_envs=$(printf '%s\n' "$envs" | grep -c .)
[ "$n_envs" -eq 4 ] || fail "$n_envs LMDB stores under $TESTNET_DIR, not 4: $envs"
# shellcheck disable=SC2086 # one directory per word
"$scan" --absent "$work/absent.txt" --present "$work/present.txt" $envs || fail "plainscan"

# The node logs must not hold them either.
if grep -F -f "$work/absent.txt" "$TESTNET_DIR"/node*/bexd.log; then
    fail "a node log holds a sealed value (above)"
fi

B=$B sh "$root/testnet/down.sh" --wipe >"$work/down.out" 2>&1 || {
    cat "$work/down.out"
    fail "testnet/down.sh --wipe"
}
[ ! -e "$TESTNET_DIR" ] || fail "testnet/down.sh --wipe left $TESTNET_DIR"
echo "demo_e2e: ok ($n_absent sealed values absent and $n_present clear values found in $n_envs stores)"
