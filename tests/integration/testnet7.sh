#!/bin/sh
# testnet/up.sh 7: a 7-node network (f = 2) in a temporary TESTNET_DIR comes
# up; a bexload run of a few hundred transactions commits on all 7 nodes,
# which then report the same height, block hash and state root; the primary
# is killed (SIGKILL) and the other 6 elect a new one and keep committing:
# a second bexload run commits on all 6 with equal roots. The nodes are
# killed by pid and the directory removed whatever happens.
. "$(dirname "$0")/lib.sh"

load=$it_root/$B/tests/tools/bexload
it_tn_setup testnet7 "$load"
count=300
case $B in
*/san) count=100 ;;
esac

fail() {
    echo "FAIL: $*"
    for log in "$TESTNET_DIR"/node*/bexd.log; do
        [ -f "$log" ] || continue
        echo "---- $log"
        tail -n 15 "$log"
    done
    exit 1
}

# rpc URL METHOD: the JSON-RPC response of METHOD (no params).
rpc() {
    curl -sS -m 2 -H 'Content-Type: application/json' \
        --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":{}}" "$1/" 2>/dev/null
}
# field JSON NAME: a number, boolean or string value of "NAME".
field() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\" *: *\"\{0,1\}\([0-9a-z_]*\).*/\1/p"
}

# agree URL...: polls until every node reports the same height (at least
# $min_height), block hash and state root; fails after 30 s.
agree() {
    _deadline=$(($(date +%s) + 30))
    while :; do
        _seen=""
        _ok=1
        for _u in "$@"; do
            _s=$(rpc "$_u" status)
            _h=$(field "$_s" height)
            _line="$_h $(field "$_s" block_hash) $(field "$_s" state_root)"
            if [ -z "$_h" ] || [ "$_h" -lt "$min_height" ]; then
                _ok=0
            elif [ -z "$_seen" ]; then
                _seen=$_line
            elif [ "$_line" != "$_seen" ]; then
                _ok=0
            fi
        done
        if [ "$_ok" -eq 1 ] && [ -n "$_seen" ]; then
            agreed=$_seen
            return 0
        fi
        [ "$(date +%s)" -lt "$_deadline" ] || fail "the nodes do not agree at height >= $min_height: last seen $_line"
        sleep 0.2
    done
}

# loaded FILE: the bexload run that printed FILE submitted at least $count
# transactions (its first run also registers the resource) and none was
# rejected.
loaded() {
    _sub=$(sed -n 's/.*"submitted": \([0-9]*\).*/\1/p' "$1")
    _rej=$(sed -n 's/.*"rejected": \([0-9]*\).*/\1/p' "$1")
    [ "${_sub:-0}" -ge "$count" ] && [ "${_rej:-1}" -eq 0 ] || fail "bexload: $(cat "$1")"
}

it_tn_up 7 || fail "testnet/up.sh 7"
urls=$(B=$B sh "$it_root/testnet/status.sh" --urls)
n=$(printf '%s\n' "$urls" | grep -c .)
[ "$n" -eq 7 ] || fail "status.sh lists $n nodes, not 7"
k=0
for u in $urls; do
    [ "$(field "$(rpc "$u" status)" peers_connected)" = 6 ] || fail "node$k is not connected to its 6 peers"
    k=$((k + 1))
done
echo "testnet7: 7 nodes up, each connected to 6 peers"

BEX_PASSPHRASE=$(cat "$TESTNET_DIR/passphrase")
export BEX_PASSPHRASE
key=$TESTNET_DIR/agencies/city.traffic/officer1.key
all=$(printf '%s\n' "$urls" | paste -sd, -)
"$load" --node "$all" --key "$key" --agency city.traffic --count "$count" --wait --timeout 60 >"$IT_DIR/load1.out" ||
    fail "bexload over 7 nodes: $(cat "$IT_DIR/load1.out")"
loaded "$IT_DIR/load1.out"
committed=$(field "$(rpc "$(printf '%s\n' "$urls" | head -n 1)" status)" committed_txs)
[ "${committed:-0}" -ge "$count" ] || fail "node0 committed ${committed:-0} transactions, not $count"
min_height=1
# shellcheck disable=SC2086 # one URL per word
agree $urls
h1=${agreed%% *}
echo "testnet7: $count transactions committed on all 7 nodes, at height $h1 with equal roots ($(cat "$IT_DIR/load1.out"))"

# Kill the primary of the current view.
primary=$(field "$(rpc "$(printf '%s\n' "$urls" | head -n 1)" status)" primary)
case $primary in
'' | *[!0-9]*) fail "node0 reports no primary" ;;
esac
pid=$(cat "$TESTNET_DIR/node$primary/bexd.pid") || fail "no pid file for node$primary"
kill -s KILL "$pid" || fail "cannot kill node$primary (pid $pid)"
deadline=$(($(date +%s) + 10))
while kill -0 "$pid" 2>/dev/null && [ -n "$(tr -d '\0' <"/proc/$pid/cmdline" 2>/dev/null)" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "node$primary (pid $pid) survives SIGKILL"
    sleep 0.1
done
echo "testnet7: killed the primary, node$primary (pid $pid)"

rest=$(printf '%s\n' "$urls" | sed "$((primary + 1))d")
others=$(printf '%s\n' "$rest" | paste -sd, -)
"$load" --node "$others" --key "$key" --agency city.traffic --count "$count" --wait --timeout 60 >"$IT_DIR/load2.out" ||
    fail "bexload over the 6 remaining nodes: $(cat "$IT_DIR/load2.out")"
loaded "$IT_DIR/load2.out"
min_height=$((h1 + 1))
# shellcheck disable=SC2086
agree $rest
view=$(field "$(rpc "$(printf '%s\n' "$rest" | head -n 1)" status)" view)
[ "${view:-0}" -ge 1 ] || fail "the remaining nodes are still in view ${view:-?}"
echo "testnet7: the 6 remaining nodes moved to view $view and committed $count more, at height ${agreed%% *} with equal roots"
