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
. "$(dirname "$0")/lib.sh"

scan=$it_root/$B/tests/tools/plainscan
it_tn_setup demo "$scan"

fail() {
    echo "FAIL: $*"
    exit 1
}

it_tn_up || fail "testnet/up.sh"
t0=$(date +%s)
B=$B sh "$it_root/testnet/demo.sh" >"$IT_DIR/demo.out" 2>&1
rc=$?
t1=$(date +%s)
cat "$IT_DIR/demo.out"
[ "$rc" -eq 0 ] || fail "testnet/demo.sh exited $rc"
grep -q '^demo: all 8 steps behaved as described' "$IT_DIR/demo.out" || fail "the demo did not report its 8 steps"
echo "demo_e2e: the demo took $((t1 - t0))s"

B=$B sh "$it_root/testnet/down.sh" >"$IT_DIR/down.out" 2>&1 || {
    cat "$IT_DIR/down.out"
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
} | sort -u >"$IT_DIR/absent.txt"
# What is stored in clear: the keys of the UNCONDITIONAL records.
{
    values "$data/credit-ratings.jsonl" key
    values "$data/epidemic-daily.jsonl" key
} | sort -u >"$IT_DIR/present.txt"
n_absent=$(wc -l <"$IT_DIR/absent.txt")
n_present=$(wc -l <"$IT_DIR/present.txt")
[ "$n_absent" -gt 900 ] || fail "only $n_absent values to look for: the demo's data is missing"
[ "$n_present" -gt 200 ] || fail "only $n_present clear values: the demo's data is missing"

envs=$(find "$TESTNET_DIR" -name data.mdb | sed 's,/data.mdb$,,' | sort)
n_envs=$(printf '%s\n' "$envs" | grep -c .)
[ "$n_envs" -eq 4 ] || fail "$n_envs LMDB stores under $TESTNET_DIR, not 4: $envs"
# shellcheck disable=SC2086 # one directory per word
"$scan" --absent "$IT_DIR/absent.txt" --present "$IT_DIR/present.txt" $envs || fail "plainscan"

# The node logs must not hold them either.
if grep -F -f "$IT_DIR/absent.txt" "$TESTNET_DIR"/node*/bexd.log; then
    fail "a node log holds a sealed value (above)"
fi

B=$B sh "$it_root/testnet/down.sh" --wipe >"$IT_DIR/down.out" 2>&1 || {
    cat "$IT_DIR/down.out"
    fail "testnet/down.sh --wipe"
}
[ ! -e "$TESTNET_DIR" ] || fail "testnet/down.sh --wipe left $TESTNET_DIR"
echo "demo_e2e: ok ($n_absent sealed values absent and $n_present clear values found in $n_envs stores)"
