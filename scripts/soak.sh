#!/bin/sh
# The crash soak: a 4-node testnet under steady load (tests/tools/soakload,
# one sender per agency, each submitting to its own node and to another when
# its node is down) while a random node is killed with SIGKILL and restarted
# every few seconds. Before each kill every node must be healthy again
# (caught up) within SOAK_RECOVER_S, so no node ever needs manual repair.
#
# At the end the load stops (its senders keep confirming what they sent for
# up to 60 s), every node is stopped and restarted, and once all report the
# same height, state root and block hash, soakload verify walks the chain of
# node 0: every transaction the RPC acknowledged as committed must be in the
# chain exactly once, at the height it was acknowledged at, with its receipt.
# Prints kills survived, transactions committed and the longest stall (the
# longest interval in which no live node's height grew), and exits 0 only
# when every check held.
#
# usage: scripts/soak.sh [SECONDS]      (default SOAK_SECONDS, or 600)
#
# Environment: B (build directory, default build; build/san for SAN=1),
# SOAK_SECONDS, SOAK_RATE (tx/s over all agencies, default 200), SOAK_NODES
# (default 4), SOAK_GAP_MS / SOAK_DOWN_MS ("LO HI": random pause before a
# kill, default "1000 4000", and time a node stays down, default "300 2500"),
# SOAK_RECOVER_S (default 60), SOAK_STALL_MAX_S (longest stall accepted,
# default 60), SOAK_KEEP=1 to keep the work directory.
set -u
sk_root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd -P)
# shellcheck source=scripts/soak_lib.sh
. "$sk_root/scripts/soak_lib.sh"

seconds=${1:-${SOAK_SECONDS:-600}}
rate=${SOAK_RATE:-200}
nodes=${SOAK_NODES:-4}
gap=${SOAK_GAP_MS:-1000 4000}
down=${SOAK_DOWN_MS:-300 2500}
recover=${SOAK_RECOVER_S:-60}
stall_max=${SOAK_STALL_MAX_S:-60}
for v in "$seconds" "$rate" "$nodes" "$recover" "$stall_max" $gap $down; do
    case $v in
    '' | *[!0-9]*)
        echo "usage: scripts/soak.sh [SECONDS]  (SOAK_* settings are whole numbers)" >&2
        exit 2
        ;;
    esac
done

SK_KEEP=${SOAK_KEEP:-0}
sk_setup soak
echo "soak: ${seconds}s, $nodes nodes, $rate tx/s offered, build $B, work directory $SK_WORK"
sk_init "$nodes" || exit 1
k=0
while [ "$k" -lt "$nodes" ]; do
    sk_start "$k" || {
        echo "soak: node$k did not start"
        exit 1
    }
    k=$((k + 1))
done
if ! sk_wait 60 sk_all_healthy; then
    echo "soak: the network did not come up"
    k=0
    while [ "$k" -lt "$nodes" ]; do
        sk_tail "$k"
        k=$((k + 1))
    done
    exit 1
fi

"$SOAKLOAD" run --testnet "$TESTNET_DIR" --seconds "$seconds" --rate "$rate" --acked "$SK_WORK/acked.txt" \
    >"$SK_WORK/run.json" 2>"$SK_WORK/load.log" &
load=$!
sk_track "$load"

# check_others SKIP: every node but SKIP must still run; one that exited by
# itself (a crash, an assertion, a sanitizer report) is a failure, and is
# started again so the soak goes on.
check_others() {
    _k=0
    while [ "$_k" -lt "$nodes" ]; do
        if [ "$_k" != "$1" ] && ! sk_pid "$_k" >/dev/null; then
            sk_fail "node$_k exited by itself"
            sk_tail "$_k" 30
            sk_start "$_k"
        fi
        _k=$((_k + 1))
    done
}

t0=$(sk_now)
end=$((t0 + seconds))
kills=0
survived=0
recover_max_ms=0
# shellcheck disable=SC2086 # gap and down are "LO HI"
while [ "$(sk_now)" -lt "$end" ]; do
    # Wait until every node is healthy (the last one killed has caught up).
    if ! sk_wait "$recover" sk_all_healthy; then
        k=0
        while [ "$k" -lt "$nodes" ]; do
            echo "soak: node$k health $(sk_health "$k") $(sk_health_body "$k")"
            k=$((k + 1))
        done
        sk_fail "the network is not healthy ${recover}s after kill $kills"
        break
    fi
    if [ "$kills" -gt 0 ]; then
        survived=$((survived + 1))
        ms=$(($(sk_now_ms) - t_down))
        [ "$ms" -gt "$recover_max_ms" ] && recover_max_ms=$ms
    fi
    sk_sleep_ms "$(sk_rand $gap)"
    [ "$(sk_now)" -lt "$end" ] || break
    check_others -1
    victim=$(sk_rand 0 $((nodes - 1)))
    kills=$((kills + 1))
    echo "soak: $(($(sk_now) - t0))s kill $kills: node$victim (height $(sk_height "$victim"))" >>"$SK_WORK/kills.log"
    sk_signal "$victim" KILL
    t_down=$(sk_now_ms)
    sk_sleep_ms "$(sk_rand $down)"
    check_others "$victim"
    sk_start "$victim" || sk_fail "node$victim did not restart after kill $kills"
done
# The last kill counts as survived once the network is whole again.
check_others -1
if [ "$kills" -gt "$survived" ]; then
    if sk_wait "$recover" sk_all_healthy; then
        survived=$((survived + 1))
        ms=$(($(sk_now_ms) - t_down))
        [ "$ms" -gt "$recover_max_ms" ] && recover_max_ms=$ms
    else
        sk_fail "the network is not healthy ${recover}s after the last kill"
    fi
fi
wait "$load"
load_rc=$?
cat "$SK_WORK/load.log"
run=$(cat "$SK_WORK/run.json")
echo "soak: load: $run"
[ "$load_rc" -eq 0 ] || sk_fail "soakload run exited with $load_rc"

# Before any restart the nodes must already agree: a node left behind (or in
# a view of its own) while reporting healthy would need a restart to repair.
if ! sk_wait 30 sk_agree; then
    sk_fail "the nodes do not agree 30s after the load (before the final restart):"
    sk_states
fi

# Stop and restart every node; then all must agree and hold every acknowledged tx.
k=0
while [ "$k" -lt "$nodes" ]; do
    sk_signal "$k" TERM 10 || sk_fail "node$k was not running at the end"
    k=$((k + 1))
done
k=0
while [ "$k" -lt "$nodes" ]; do
    sk_start "$k" || sk_fail "node$k did not restart at the end"
    k=$((k + 1))
done
sk_wait "$recover" sk_all_healthy || sk_fail "the nodes are not healthy ${recover}s after the final restart"
verify=$("$SOAKLOAD" verify --testnet "$TESTNET_DIR" --acked "$SK_WORK/acked.txt" --node 0 --timeout "$recover" 2>&1)
verify_rc=$?
echo "soak: verify: $verify"
[ "$verify_rc" -eq 0 ] || sk_fail "soakload verify found a fault (exit $verify_rc)"

# The checker itself must see a loss: an acknowledged id the chain lacks,
# and a real one claimed at another height.
if [ -s "$SK_WORK/acked.txt" ]; then
    {
        cat "$SK_WORK/acked.txt"
        echo "$(printf '%064d' 7) city.soak 1 1 0"
    } >"$SK_WORK/acked-lost.txt"
    awk 'NR == 1 { $4 = $4 + 1 } { print }' "$SK_WORK/acked.txt" >"$SK_WORK/acked-moved.txt"
    bad_lost=$("$SOAKLOAD" verify --testnet "$TESTNET_DIR" --acked "$SK_WORK/acked-lost.txt" --timeout 10 2>/dev/null)
    bad_lost_rc=$?
    bad_moved=$("$SOAKLOAD" verify --testnet "$TESTNET_DIR" --acked "$SK_WORK/acked-moved.txt" --timeout 10 2>/dev/null)
    bad_moved_rc=$?
    if [ "$bad_lost_rc" -ne 1 ] || [ "$(sk_field "$bad_lost" lost)" != 1 ] ||
        [ "$bad_moved_rc" -ne 1 ] || [ "$(sk_field "$bad_moved" moved)" != 1 ]; then
        sk_fail "soakload verify misses a planted fault: $bad_lost / $bad_moved"
    fi
fi

# Faults the nodes reported themselves.
k=0
while [ "$k" -lt "$nodes" ]; do
    log=$TESTNET_DIR/node$k/bexd.log
    if grep -n -E 'assertion failed|Sanitizer|runtime error|store refuses writes' "$log" >"$SK_WORK/bad.txt"; then
        sk_fail "node$k reported a fault:"
        head -n 5 "$SK_WORK/bad.txt" | cut -c 1-300
    fi
    errors=$(grep -c ' ERROR ' "$log")
    [ "$errors" -gt 0 ] && echo "soak: node$k logged $errors ERROR lines, the first: $(grep -m 3 ' ERROR ' "$log" | cut -c 1-200 | tr '\n' '|')"
    k=$((k + 1))
done

acked=$(sk_field "$run" acked)
unconfirmed=$(sk_field "$run" unconfirmed)
stall=$(printf '%s\n' "$run" | sed -n 's/.*"longest_stall_s":\([0-9.]*\).*/\1/p')
stall_at=$(printf '%s\n' "$run" | sed -n 's/.*"longest_stall_end_s":\([0-9.]*\).*/\1/p')
lost=$(sk_field "$verify" lost)
dups=$(sk_field "$verify" duplicate_entries)
failed=$(sk_field "$run" failed_code)
if [ "${unconfirmed:-1}" -ne 0 ]; then
    sk_fail "$unconfirmed signed txs were never confirmed by the node each agency used, although every node ran for the drain:"
    printf '%s\n' "$run" | sed -n 's/.*"stuck":\[\([^]]*\)\].*/\1/p' | sed 's/},{/}\n{/g' | sed 's/^/  /'
fi
if [ "${failed:-1}" -ne 0 ]; then
    # Every tx of the load is valid when offered in nonce order: an error
    # code means the network executed a sender's txs out of order.
    sk_fail "$failed acknowledged txs were executed with an error code, so their nonces were signed anew:"
    awk '$5 != 0 { n[$5]++ } END { for (c in n) printf "  code %s: %d txs\n", c, n[c] }' "$SK_WORK/acked.txt"
    awk '$5 != 0 { print "  e.g. " $2 " nonce " $3 " at height " $4 " (tx " $1 ")" }' "$SK_WORK/acked.txt" | head -n 3
fi
[ "$kills" -gt 0 ] || sk_fail "no node was killed"
if [ -n "$stall" ] && awk -v s="$stall" -v m="$stall_max" 'BEGIN { exit !(s > m) }'; then
    sk_fail "the longest stall (${stall}s) is over ${stall_max}s"
fi
sed 's/^/  /' "$SK_WORK/kills.log" 2>/dev/null | tail -n 5
echo "soak: kills survived: $survived of $kills (longest recovery to all-healthy $((recover_max_ms / 1000)).$(printf '%03d' $((recover_max_ms % 1000)))s)"
echo "soak: transactions committed: ${acked:-?} acknowledged ($(sk_field "$verify" chain_txs) in the chain, height $(sk_field "$verify" height))"
echo "soak: longest stall: ${stall:-?}s (ending ${stall_at:-?}s into the load)"
echo "soak: lost acknowledged transactions: ${lost:-?}; duplicate chain entries (skipped by the ledger): ${dups:-?}; deferred entries (nonce came early, executed later): $(sk_field "$verify" deferred)"
if [ "$sk_failures" -eq 0 ]; then
    echo "soak: PASS"
    exit 0
fi
echo "soak: FAIL ($sk_failures failures; logs in $SK_WORK with SOAK_KEEP=1)"
exit 1
