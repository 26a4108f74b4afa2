#!/bin/sh
# make bench / make bench-scale: throughput and latency of a local bex
# network (method and results: docs/bench.md).
#
# usage: scripts/bench.sh [--scale]
#
# First the microbenchmarks (build/tests/bench/micro) print what one
# transaction costs this machine and the bound that sets. Then, for every
# node count, offered rate and run: a fresh testnet (a copy, with empty
# data, of one layout that bexctl testnet init makes per node count, so the
# transactions signed for the first run serve the later ones), started with
# testnet/up.sh, one bexbench run against it, the testnet stopped and
# deleted. Last, the medians of all runs next to the targets. Everything
# lands in $BENCH_OUT (default build/bench):
#   micro.json                 the microbenchmarks and the bound
#   runs/nN-rR-K.json, .png    one report and chart per run (R = 0: as fast
#                              as accepted), with node logs on failure
#   nN-rR.png                  the chart of the last run of each configuration
#   summary.json               the medians per configuration
#   perf-nN-rR.txt             with BENCH_PERF=1: perf report of one node
#
# Environment:
#   B               build directory (default build; -O2 builds only for numbers)
#   BENCH_SECONDS   measured seconds per run (default 60)
#   BENCH_WARMUP    warm-up seconds before the window (default 10)
#   BENCH_RATE      offered tx/s, 0 = as fast as accepted; a list runs each
#                   (default "0 5000": the throughput and the latency target)
#   BENCH_RUNS      runs per configuration; the summary takes medians (default 1)
#   BENCH_NODES     node counts (default 4; --scale: "4 7 10")
#   BENCH_OUT       output directory (default $B/bench)
#   BENCH_PERF      1: perf record (DWARF call graphs, 199 Hz) one node over
#                   the window of each configuration's first run (needs perf)
#   BENCH_PERF_NODE which node perf records (default 1, a backup in view 0)
#   BENCH_ARGS      more options for bexbench run (e.g. "--inflight 4000")
#   BENCH_VIEW_TIMEOUT_MS  sets consensus.view_timeout_ms in the genesis of
#                   the benchmark's networks (default: bexctl testnet init's)
#   BENCH_MAP_SIZE_MB  sets map_size_mb of every node (default: the
#                   testnet's 1024, about half a million txs); a node
#                   doubles its map as the store fills, up to 16 times this
set -u

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd -P)
B=${B:-build}
case $B in
/*) bdir=$B ;;
*) bdir=$root/$B ;;
esac
export B
out=${BENCH_OUT:-$bdir/bench}
secs=${BENCH_SECONDS:-60}
warmup=${BENCH_WARMUP:-10}
rates=${BENCH_RATE:-"0 5000"}
runs=${BENCH_RUNS:-1}
nodes_list=${BENCH_NODES:-4}
perf=${BENCH_PERF:-0}
perf_node=${BENCH_PERF_NODE:-1}
extra=${BENCH_ARGS:-}
view_timeout=${BENCH_VIEW_TIMEOUT_MS:-}
map_mb=${BENCH_MAP_SIZE_MB:-}

case ${1:-} in
--scale) nodes_list=${BENCH_NODES:-"4 7 10"} ;;
'') ;;
-h | --help)
    sed -n '2,/^set -u/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: scripts/bench.sh [--scale]" >&2
    exit 2
    ;;
esac

for v in "$secs" "$warmup" "$runs" $rates $nodes_list ${view_timeout:+"$view_timeout"} ${map_mb:+"$map_mb"}; do
    case $v in
    '' | *[!0-9]*)
        echo "bench.sh: BENCH_SECONDS, BENCH_WARMUP, BENCH_RUNS, BENCH_RATE, BENCH_NODES, BENCH_VIEW_TIMEOUT_MS and BENCH_MAP_SIZE_MB take whole numbers" >&2
        exit 2
        ;;
    esac
done

bexctl=$bdir/bexctl
bexbench=$bdir/tests/tools/bexbench
micro=$bdir/tests/bench/micro
for bin in "$bdir/bexd" "$bexctl" "$bexbench" "$micro"; do
    if [ ! -x "$bin" ]; then
        echo "bench.sh: $bin is not built: run make bench" >&2
        exit 1
    fi
done
case $B in
*san*) echo "bench.sh: warning: $B is a sanitizer build; its numbers mean little" >&2 ;;
esac

# Each invocation replaces the results of the one before (keep them with BENCH_OUT).
rm -rf "$out/runs" "$out"/n*-r*.png "$out"/perf-n*-r* "$out/summary.json" "$out/micro.json"
mkdir -p "$out/runs" || exit 1
net=""
tpl=""
# stop_net: stops and deletes the network of the current run.
stop_net() {
    if [ -n "$net" ] && [ -d "$net" ]; then
        TESTNET_DIR=$net/net "$root/testnet/down.sh" >/dev/null 2>&1
        rm -rf "$net"
    fi
    net=""
}
cleanup() {
    stop_net
    [ -n "$tpl" ] && rm -rf "$tpl"
    tpl=""
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "bench.sh: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $B; window ${secs}s after ${warmup}s warm-up; rates: $rates; nodes: $nodes_list; $runs run(s) each${view_timeout:+; view timeout $view_timeout ms}${map_mb:+; LMDB map $map_mb MiB}"
"$micro" --out "$out/micro.json" --dir "$out" || exit 1

# set_number FILE KEY VALUE: sets the number of "KEY" in a JSON file made by bexctl testnet init.
set_number() {
    sed "s/\"$2\": *[0-9]*/\"$2\": $3/" "$1" >"$1.tmp" && mv "$1.tmp" "$1" &&
        grep -q "\"$2\": $3\([^0-9]\|\$\)" "$1" || {
        echo "bench.sh: cannot set $2 in $1" >&2
        return 1
    }
}

reports=""
failed=0
for n in $nodes_list; do
    # One layout (keys, genesis, ports) per node count: every run starts a
    # fresh copy of it with empty data, so the transactions signed for the
    # first run serve the later ones (bexbench --cache).
    tpl=$(mktemp -d "$out/tpl.XXXXXX") || exit 1
    if ! "$bexctl" testnet init --dir "$tpl/net" --nodes "$n" >"$tpl/init.log" 2>&1; then
        echo "bench.sh: bexctl testnet init failed:" >&2
        tail -n 30 "$tpl/init.log" >&2
        exit 1
    fi
    if [ -n "$view_timeout" ]; then
        set_number "$tpl/net/genesis.json" view_timeout_ms "$view_timeout" || exit 1
    fi
    if [ -n "$map_mb" ]; then
        for conf in "$tpl"/net/node*/node.json; do
            set_number "$conf" map_size_mb "$map_mb" || exit 1
        done
    fi
    for rate in $rates; do
        k=1
        while [ "$k" -le "$runs" ]; do
            name=n$n-r$rate-$k
            echo
            echo "==== $n nodes, $([ "$rate" -eq 0 ] && echo 'as fast as accepted' || echo "$rate tx/s offered"), run $k of $runs"
            net=$(mktemp -d "$out/net.XXXXXX") || exit 1
            if ! cp -a "$tpl/net" "$net/net" || ! TESTNET_DIR=$net/net "$root/testnet/up.sh" >"$net/up.log" 2>&1; then
                echo "bench.sh: the $n-node testnet did not come up:" >&2
                tail -n 30 "$net/up.log" >&2
                exit 1
            fi
            set --
            if [ "$perf" = 1 ] && [ "$k" -eq 1 ]; then
                if command -v perf >/dev/null 2>&1; then
                    ppid=$(cat "$net/net/node$perf_node/bexd.pid")
                    set -- --exec-at-window "perf record -F 199 --call-graph dwarf,8192 -p $ppid -o '$out/perf-n$n-r$rate.data' -- sleep \$BENCH_WINDOW_S >'$out/perf-n$n-r$rate.log' 2>&1"
                else
                    echo "bench.sh: perf is not installed; no profile" >&2
                fi
            fi
            # shellcheck disable=SC2086 # BENCH_ARGS is a list of options
            if "$bexbench" run --testnet "$net/net" --out "$out/runs/$name.json" --png "$out/runs/$name.png" \
                --seconds "$secs" --warmup "$warmup" --rate "$rate" --label "$name" --cache "$tpl/txs.cache" \
                "$@" $extra; then
                reports="$reports $out/runs/$name.json"
                cp "$out/runs/$name.png" "$out/n$n-r$rate.png"
            else
                failed=$((failed + 1))
                echo "bench.sh: run $name failed; node logs in $out/runs/$name.logs" >&2
                mkdir -p "$out/runs/$name.logs"
                for log in "$net"/net/node*/bexd.log; do
                    cp "$log" "$out/runs/$name.logs/$(basename "$(dirname "$log")").log"
                done
            fi
            vc=$(cat "$net"/net/node*/bexd.log | grep -c "view change to view")
            echo "  (node logs: $vc view-change lines)"
            stop_net
            if [ -f "$out/perf-n$n-r$rate.data" ] && [ "$k" -eq 1 ] && [ "$perf" = 1 ]; then
                # Inclusive time per function (callers included), then self time per library.
                perf report -i "$out/perf-n$n-r$rate.data" --stdio --children --sort sym -g none \
                    --percent-limit 0.5 >"$out/perf-n$n-r$rate.txt" 2>/dev/null
                perf report -i "$out/perf-n$n-r$rate.data" --stdio --no-children --sort dso -g none \
                    >"$out/perf-n$n-r$rate.dso.txt" 2>/dev/null
                echo "  profile of node$perf_node: $out/perf-n$n-r$rate.txt"
            fi
            k=$((k + 1))
        done
    done
    rm -rf "$tpl"
    tpl=""
done

if [ -z "$reports" ]; then
    echo "bench.sh: no run completed" >&2
    exit 1
fi
# shellcheck disable=SC2086 # one argument per report
"$bexbench" summary --micro "$out/micro.json" --out "$out/summary.json" $reports || exit 1
echo
echo "bench.sh: results in $out (summary.json, micro.json, runs/, n*-r*.png); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$failed" -eq 0 ]
