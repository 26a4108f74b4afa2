#!/bin/sh
# Starts the local testnet: creates it first if testnet/run holds none
# ("bexctl testnet init"), then starts every node that is not running, each
# in its own session, and waits until the network is up: every node healthy
# and either past height 0 or connected to all its peers (an idle network
# commits nothing). Nodes already running are left alone, stopped ones
# restart with their data.
#
# usage: testnet/up.sh [N]     N nodes, 4 to 16 (default 4), for a new network
#
# Environment: B (build directory, default build; e.g. B=build/san),
# TESTNET_DIR (default testnet/run), BEX_UP_TIMEOUT (seconds, default 60).
set -u
# shellcheck source=testnet/common.sh
. "$(dirname -- "$0")/common.sh"

usage() {
    echo "usage: testnet/up.sh [N]   (N nodes, 4 to 16, default 4; B=build/san for a sanitizer build)"
}

timeout=${BEX_UP_TIMEOUT:-60}
case $timeout in
'' | *[!0-9]*)
    echo "up.sh: BEX_UP_TIMEOUT must be a number of seconds" >&2
    exit 2
    ;;
esac
want=""
case $# in
0) ;;
1)
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    '' | *[!0-9]*)
        usage >&2
        exit 2
        ;;
    esac
    if [ "$1" -lt 4 ] || [ "$1" -gt 16 ]; then
        echo "up.sh: N must be from 4 to 16" >&2
        exit 2
    fi
    want=$1
    ;;
*)
    usage >&2
    exit 2
    ;;
esac

for bin in "$BEXD" "$BEXCTL"; do
    if [ ! -x "$bin" ]; then
        echo "up.sh: $(tn_show "$bin") is not built: run make (make SAN=1 with B=build/san)" >&2
        exit 1
    fi
done

if tn_has_network; then
    n=$(tn_count)
    if [ -n "$want" ] && [ "$want" -ne "$n" ]; then
        echo "up.sh: $(tn_show "$TESTNET_DIR") holds a $n-node network; run testnet/down.sh --wipe to start over with $want" >&2
        exit 1
    fi
else
    n=${want:-4}
    echo "up.sh: creating a $n-node network in $(tn_show "$TESTNET_DIR")"
    "$BEXCTL" testnet init --dir "$TESTNET_DIR" --nodes "$n" || exit 1
fi

# tail_logs [LINES]: the end of every node's log, for a failure report.
tail_logs() {
    k=0
    while [ "$k" -lt "$n" ]; do
        log=$TESTNET_DIR/node$k/bexd.log
        echo "---- node$k: $(tn_show "$log")"
        if [ -f "$log" ]; then
            tail -n "${1:-20}" "$log"
        else
            echo "(no log)"
        fi
        k=$((k + 1))
    done
}

# start K: starts node K in a new session (so down.sh can signal its whole
# process group); the process writes its own pid, which stays bexd's pid
# across the exec.
start() {
    dir=$TESTNET_DIR/node$1
    rm -f "$dir/bexd.pid" "$dir/bexd.pid.tmp"
    echo "==== $(date '+%Y-%m-%d %H:%M:%S') up.sh starts node$1" >>"$dir/bexd.log"
    # shellcheck disable=SC2016 # $$ and $1..$3 belong to the inner shell.
    setsid sh -c 'echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && exec "$2" --config "$3"' \
        sh "$dir/bexd.pid" "$BEXD" "$dir/node.json" </dev/null >>"$dir/bexd.log" 2>&1 &
}

k=0
started=0
while [ "$k" -lt "$n" ]; do
    if pid=$(tn_node_pid "$k"); then
        echo "node$k: already running (pid $pid)"
    else
        start "$k"
        started=$((started + 1))
    fi
    k=$((k + 1))
done

# Wait for each started node to record its pid.
deadline=$(($(tn_now) + 5))
k=0
while [ "$k" -lt "$n" ]; do
    if [ -f "$TESTNET_DIR/node$k/bexd.pid" ]; then
        k=$((k + 1))
    elif [ "$(tn_now)" -ge "$deadline" ]; then
        echo "up.sh: node$k did not start" >&2
        tail_logs >&2
        exit 1
    else
        sleep 0.1
    fi
done
[ "$started" -gt 0 ] && echo "up.sh: started $started node(s); waiting up to ${timeout}s for the network"

# Poll until every node is healthy and has committed a block or sees all
# its peers; a node that exits meanwhile fails the start at once.
peers_all=$((n - 1))
deadline=$(($(tn_now) + timeout))
while :; do
    ready=0
    state=""
    for line in $(tn_nodes | tr '\t' '|'); do
        k=${line%%|*}
        url=${line##*|}
        if ! tn_node_pid "$k" >/dev/null; then
            echo "up.sh: node$k exited" >&2
            tail_logs 40 >&2
            exit 1
        fi
        health=$(tn_health "$url")
        status=$(tn_rpc "$url" status)
        height=$(tn_field "$status" height)
        peers=$(tn_field "$status" peers_connected)
        state="$state
  node$k: health ${health:-000}, height ${height:--}, peers ${peers:--}/$peers_all"
        if [ "$health" = 200 ] && [ -n "$height" ] && [ -n "$peers" ] &&
            { [ "$height" -ge 1 ] || [ "$peers" -ge "$peers_all" ]; }; then
            ready=$((ready + 1))
        fi
    done
    [ "$ready" -eq "$n" ] && break
    if [ "$(tn_now)" -ge "$deadline" ]; then
        echo "up.sh: the network is not up after ${timeout}s:$state" >&2
        tail_logs >&2
        echo "up.sh: the nodes are still running; testnet/down.sh stops them" >&2
        exit 1
    fi
    sleep 0.2
done

url0=$(tn_nodes | head -n 1 | cut -f 3)
agency0=$(tn_nodes | head -n 1 | cut -f 2)
run=$(tn_show "$TESTNET_DIR")
bexctl=$(tn_show "$BEXCTL")
echo "up.sh: $n nodes up:$state"
echo "logs:      $run/nodeK/bexd.log"
echo "keystores: $run/agencies/ID/officer1.key .. officer3.key (threshold 2) and enc.key;"
echo "           every key opens with --passphrase-file $run/passphrase"
echo "agencies:  $run/agencies.txt (id, name, node, RPC URL); testnet/status.sh shows the nodes"
echo "try:"
echo "  $bexctl --node $url0 status"
echo "  $bexctl --node $url0 agency list"
echo "  $bexctl --node $url0 catalog list"
echo "and to act as $agency0 (two officers sign):"
printf '  %s --node %s --passphrase-file %s/passphrase \\\n' "$bexctl" "$url0" "$run"
echo "      --key $run/agencies/$agency0/officer1.key --key $run/agencies/$agency0/officer2.key catalog register FILE.json"
