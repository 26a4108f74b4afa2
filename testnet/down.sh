#!/bin/sh
# Stops the local testnet: sends SIGTERM to the process group of every node
# that testnet/up.sh recorded as running, waits for them to exit, and sends
# SIGKILL to those still running after the deadline. The network and its
# data stay unless --wipe, which then deletes testnet/run.
#
# usage: testnet/down.sh [--wipe]
#
# Environment: TESTNET_DIR (default testnet/run), BEX_DOWN_TIMEOUT (seconds
# before SIGKILL, default 10).
set -u
# shellcheck source=testnet/common.sh
. "$(dirname -- "$0")/common.sh"

usage() {
    echo "usage: testnet/down.sh [--wipe]   (--wipe deletes $(tn_show "$TESTNET_DIR") after stopping)"
}

wipe=0
for arg in "$@"; do
    case $arg in
    --wipe) wipe=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
done
timeout=${BEX_DOWN_TIMEOUT:-10}
case $timeout in
'' | *[!0-9]*)
    echo "down.sh: BEX_DOWN_TIMEOUT must be a number of seconds" >&2
    exit 2
    ;;
esac

if [ ! -d "$TESTNET_DIR" ]; then
    echo "down.sh: no testnet in $(tn_show "$TESTNET_DIR")"
    exit 0
fi

# signal SIG PID: the node's process group (up.sh made it a session leader),
# or the process alone should it not lead a group.
signal() {
    kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null
}

# Every nodeK directory counts, not only those of agencies.txt, so even a
# half-made network is stopped.
running=""
for dir in "$TESTNET_DIR"/node*; do
    [ -f "$dir/bexd.pid" ] || continue
    k=${dir##*/node}
    case $k in
    '' | *[!0-9]*) continue ;;
    esac
    if pid=$(tn_node_pid "$k"); then
        echo "node$k: stopping (pid $pid)"
        signal TERM "$pid"
        running="$running $k:$pid"
    else
        echo "node$k: not running (stale pid file removed)"
        rm -f "$dir/bexd.pid"
    fi
done

# still K:PID...: prints those still alive.
still() {
    for kp in "$@"; do
        if tn_alive "${kp#*:}"; then
            printf '%s ' "$kp"
        fi
    done
}

failed=0
if [ -n "$running" ]; then
    deadline=$(($(tn_now) + timeout))
    # shellcheck disable=SC2086
    while left=$(still $running) && [ -n "$left" ] && [ "$(tn_now)" -lt "$deadline" ]; do
        sleep 0.1
    done
    if [ -n "$left" ]; then
        for kp in $left; do
            echo "node${kp%%:*}: still running after ${timeout}s, sending SIGKILL"
            signal KILL "${kp#*:}"
        done
        deadline=$(($(tn_now) + 5))
        # shellcheck disable=SC2086
        while left=$(still $left) && [ -n "$left" ] && [ "$(tn_now)" -lt "$deadline" ]; do
            sleep 0.1
        done
    fi
    for kp in $running; do
        k=${kp%%:*}
        case " $left " in
        *" $kp "*)
            echo "down.sh: node$k (pid ${kp#*:}) does not exit" >&2
            failed=1
            ;;
        *) rm -f "$TESTNET_DIR/node$k/bexd.pid" ;;
        esac
    done
    [ "$failed" -eq 0 ] && echo "down.sh: stopped"
fi

if [ "$wipe" -eq 1 ]; then
    if [ "$failed" -ne 0 ]; then
        echo "down.sh: not wiping $(tn_show "$TESTNET_DIR") while a node runs" >&2
    elif [ -e "$TESTNET_DIR/genesis.json" ] || [ -e "$TESTNET_DIR/passphrase" ] || [ -d "$TESTNET_DIR/node0" ]; then
        rm -rf "$TESTNET_DIR"
        echo "down.sh: deleted $(tn_show "$TESTNET_DIR")"
    else
        echo "down.sh: $(tn_show "$TESTNET_DIR") does not look like a testnet; not deleting it" >&2
        failed=1
    fi
fi
exit "$failed"
