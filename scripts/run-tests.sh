#!/bin/sh
# Runs every test of bex and ends with one line: "N passed, N failed".
# B is the build directory (build or build/san); SEEDS the simulator seeds.
set -u
B=${B:-build}
SEEDS=${SEEDS:-200}
pass=0
fail=0
failed=""
log=$B/test-logs
# A test that hangs fails instead of stalling the run (seconds per binary or script).
UNIT_TIMEOUT=${UNIT_TIMEOUT:-600}
IT_TIMEOUT=${IT_TIMEOUT:-600}
mkdir -p "$log"

# A cmocka binary reports each test on a TAP line; a binary that dies before
# reporting counts as one failure.
for t in "$B"/tests/unit/*_test; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$UNIT_TIMEOUT" "$t" >"$log/$name.log" 2>&1
    rc=$?
    p=$(grep -c '^ok ' "$log/$name.log")
    f=$(grep -c '^not ok ' "$log/$name.log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
    fi
    pass=$((pass + p))
    fail=$((fail + f))
    if [ "$f" -ne 0 ]; then
        failed="$failed $name"
        echo "FAIL $name (see $log/$name.log)"
        grep -E '^not ok|ERROR|assert|Sanitizer' "$log/$name.log" | head -20
    else
        echo "ok   $name ($p tests)"
    fi
done

# Each fuzz target's replay binary runs its seed corpus, and the crashes
# `make fuzz` saved for it if any, through the target: one test per target.
for t in "$B"/tests/fuzz/*_replay; do
    [ -x "$t" ] || continue
    name=$(basename "$t" _replay)
    crashes=build/fuzz/crashes/$name
    if [ -d "$crashes" ] && [ -n "$(ls "$crashes")" ]; then
        "$t" "tests/fuzz/corpus/$name" "$crashes" >"$log/fuzz-$name.log" 2>&1
    else
        "$t" "tests/fuzz/corpus/$name" >"$log/fuzz-$name.log" 2>&1
    fi
    if [ $? -eq 0 ]; then
        pass=$((pass + 1))
        n=$(sed -n 's/^replayed \([0-9]*\) inputs$/\1/p' "$log/fuzz-$name.log")
        echo "ok   fuzz/$name ($n inputs)"
    else
        fail=$((fail + 1))
        failed="$failed fuzz/$name"
        echo "FAIL fuzz/$name (see $log/fuzz-$name.log)"
        grep '^replay: ' "$log/fuzz-$name.log" | tail -1
        grep -E '^fuzz: |ERROR|assert|Sanitizer|SUMMARY' "$log/fuzz-$name.log" | head -10
    fi
done

if [ -x "$B/tests/sim/sim" ]; then
    if "$B/tests/sim/sim" --seeds "$SEEDS" >"$log/sim.log" 2>&1; then
        pass=$((pass + 1))
        echo "ok   sim ($SEEDS seeds per configuration)"
        sed 's/^/     /' "$log/sim.log" | tail -5
    else
        fail=$((fail + 1))
        failed="$failed sim"
        echo "FAIL sim (see $log/sim.log)"
        tail -20 "$log/sim.log"
    fi
fi

for t in tests/integration/*.sh; do
    [ -f "$t" ] || continue
    # Shared helpers, sourced by the tests, are not tests themselves.
    case $(basename "$t") in lib.sh | *_lib.sh) continue ;; esac
    name=$(basename "$t" .sh)
    if B=$B timeout -k 10 "$IT_TIMEOUT" sh "$t" >"$log/it-$name.log" 2>&1; then
        pass=$((pass + 1))
        echo "ok   integration/$name"
    else
        fail=$((fail + 1))
        failed="$failed integration/$name"
        echo "FAIL integration/$name (see $log/it-$name.log)"
        tail -20 "$log/it-$name.log"
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
