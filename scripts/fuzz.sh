#!/bin/sh
# Runs the libFuzzer targets that `make fuzz` built, one after the other, and
# reports per target: executions (and per second), coverage, corpus growth
# and crashes. Usage: scripts/fuzz.sh [NAME...] (default: every built target)
#
#   FB            build directory of the clang build (build/fuzz)
#   FUZZ_SECONDS  seconds per target (60)
#   FUZZ_MERGE    1: merge inputs that add coverage into tests/fuzz/corpus/NAME
#
# New inputs go to $FB/corpus/NAME, so the committed seed corpus changes only
# with FUZZ_MERGE=1. Crashes, leaks, timeouts and OOMs are saved under
# $FB/crashes/NAME/ with the command that reproduces them; `make test`
# replays that directory too until it is emptied. Exits 1 when any target
# found a crash.
set -u
FB=${FB:-build/fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_MERGE=${FUZZ_MERGE:-0}

if [ $# -eq 0 ]; then
    set -- $(ls "$FB/bin" 2>/dev/null)
fi
[ $# -gt 0 ] || { echo "fuzz: no targets built under $FB/bin (run make fuzz)"; exit 2; }

# A define in the target source, or a default: FUZZ_MAX_LEN and FUZZ_TIMEOUT.
option() {
    v=$(sed -n "s/^#define $2 \\([0-9][0-9]*\\).*/\\1/p" "tests/fuzz/$1_fuzz.c" | head -1)
    echo "${v:-$3}"
}

crashed=""
mkdir -p "$FB/logs"
for name in "$@"; do
    bin=$FB/bin/$name
    seeds=tests/fuzz/corpus/$name
    work=$FB/corpus/$name
    crashes=$FB/crashes/$name
    log=$FB/logs/$name.log
    if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
        echo "fuzz: $name: missing $bin or $seeds"
        crashed="$crashed $name"
        continue
    fi
    mkdir -p "$work" "$crashes"
    max_len=$(option "$name" FUZZ_MAX_LEN 4096)
    timeout=$(option "$name" FUZZ_TIMEOUT 10)
    dict=""
    [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
    ls "$crashes" >"$FB/logs/$name.before"

    "$bin" -max_total_time="$FUZZ_SECONDS" -max_len="$max_len" -timeout="$timeout" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/" $dict "$work" "$seeds" >"$log" 2>&1
    rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    added=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
    cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*corp: \([0-9]*\).*/cov \1 ft \2 corpus \3/p')
    echo "fuzz: $name: ${execs:-?} execs (${rate:-?}/s), ${cov:-cov ?}, ${added:-0} new inputs, exit $rc"

    new=$(ls "$crashes" | grep -E '^(crash|leak|timeout|oom)-' | grep -vxF -f "$FB/logs/$name.before")
    if [ -n "$new" ] || [ "$rc" -ne 0 ]; then
        crashed="$crashed $name"
        grep -E 'ERROR|^fuzz: |assertion|SUMMARY' "$log" | head -5 | sed 's/^/     /'
        for f in $new; do
            echo "     saved $crashes/$f"
            echo "     reproduce: $bin $crashes/$f"
            echo "     or without clang: make test (replays $crashes), or build/tests/fuzz/${name}_replay $crashes/$f"
        done
        [ -n "$new" ] || echo "     no input saved; see $log"
    fi

    if [ "$FUZZ_MERGE" = 1 ]; then
        n0=$(ls "$seeds" | wc -l)
        "$bin" -merge=1 -max_len="$max_len" -timeout="$timeout" "$seeds" "$work" >>"$log" 2>&1
        echo "     merged into $seeds: $n0 -> $(ls "$seeds" | wc -l) inputs"
    fi
done

if [ -n "$crashed" ]; then
    echo "fuzz: failures in:$crashed"
    exit 1
fi
echo "fuzz: no crashes"
