#!/bin/sh
# bexbench against a real 4-node testnet, briefly: a fixed-rate run and an
# as-fast-as-accepted run must commit what they offered, find the nodes in
# agreement, and write a JSON report, a PNG chart and a summary.
set -u
B=${B:-build}
root=$(pwd)
BEXCTL=$root/$B/bexctl
BEXBENCH=$root/$B/tests/tools/bexbench
dir=$(mktemp -d /tmp/bex-bench-XXXXXX)
export TESTNET_DIR=$dir/net
cleanup() {
    B=$B "$root/testnet/down.sh" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
failures=0

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
# num FILE KEY: the number after "KEY": in a report.
num() {
    sed -n "s/^ *\"$2\": \([-0-9.e+]*\),\{0,1\}$/\1/p" "$1" | head -n 1
}

# Sanitizer builds are several times slower: offer less.
rate=300
case $B in
*san*) rate=60 ;;
esac

"$BEXCTL" testnet init --dir "$TESTNET_DIR" --nodes 4 >"$dir/init.log" 2>&1 || {
    cat "$dir/init.log"
    exit 1
}
B=$B BEX_UP_TIMEOUT=60 "$root/testnet/up.sh" >"$dir/up.log" 2>&1 || {
    cat "$dir/up.log"
    exit 1
}

# The first run also writes the signing cache and starts a command when its window opens.
"$BEXBENCH" run --testnet "$TESTNET_DIR" --out "$dir/fixed.json" --png "$dir/fixed.png" --seconds 3 --warmup 1 \
    --rate "$rate" --drain 30 --label smoke --cache "$dir/txs.cache" \
    --exec-at-window "echo \$BENCH_WINDOW_S >'$dir/window'" >"$dir/fixed.out" 2>&1 || fail "fixed-rate run: exit $?"
cat "$dir/fixed.out"
[ -s "$dir/txs.cache" ] || fail "no signing cache written"
[ "$(cat "$dir/window" 2>/dev/null)" = 3 ] || fail "the window command did not run with BENCH_WINDOW_S=3"
# The second run continues the chain: the cached txs carry used nonces, so it must sign anew.
"$BEXBENCH" run --testnet "$TESTNET_DIR" --out "$dir/max.json" --seconds 3 --warmup 1 --rate 0 \
    --presign-rate "$((rate * 10))" --inflight 400 --drain 30 --cache "$dir/txs.cache" >"$dir/max.out" 2>&1 ||
    fail "as-fast-as-accepted run: exit $?"
cat "$dir/max.out"
grep -q "does not fit this network" "$dir/max.out" || fail "a stale signing cache was used"

for r in fixed max; do
    f=$dir/$r.json
    [ -s "$f" ] || {
        fail "$r: no report"
        continue
    }
    grep -q '"agree": true' "$f" || fail "$r: the nodes do not agree"
    [ "$(num "$f" uncommitted_in_window)" = 0 ] || fail "$r: txs offered in the window never committed"
    c=$(num "$f" committed_in_window)
    [ -n "$c" ] && [ "$c" -gt 0 ] || fail "$r: nothing committed in the window ($c)"
    n=$(num "$f" count)
    [ -n "$n" ] && [ "$n" -gt 0 ] || fail "$r: no latency samples"
    grep -q '"peak_rss_mib": [1-9]' "$f" || fail "$r: no peak RSS of a node"
    grep -q '"cpu_s": [0-9]' "$f" || fail "$r: no CPU seconds of a node"
done
# The fixed schedule offers what it was asked: 3 s at the rate, within a fifth.
o=$(num "$dir/fixed.json" offered_tps)
awk -v o="${o:-0}" -v r="$rate" 'BEGIN { exit !(o >= 0.8 * r && o <= 1.2 * r) }' ||
    fail "fixed-rate run offered $o tx/s, asked $rate"
# The second run starts from nonces the first one used: account.nonce must have been honoured.
grep -q "\"rejected\": [1-9]" "$dir/max.json" && fail "the second run had refused txs"

# A PNG: the signature, then an IHDR chunk.
sig=$(od -An -tx1 -N16 "$dir/fixed.png" 2>/dev/null | tr -d ' \n')
[ "$sig" = "89504e470d0a1a0a0000000d49484452" ] || fail "fixed.png is not a PNG ($sig)"

"$BEXBENCH" summary --out "$dir/summary.json" "$dir/fixed.json" "$dir/max.json" >"$dir/summary.out" 2>&1 ||
    fail "summary: exit $?"
grep -q "offered as fast as accepted" "$dir/summary.out" || fail "summary lacks the max-rate group"
grep -q "fixed offered rate" "$dir/summary.out" || fail "summary lacks the fixed-rate group"
grep -q '"committed_tps"' "$dir/summary.json" || fail "summary.json lacks committed_tps"
"$BEXBENCH" run --testnet "$dir/none" --out "$dir/x.json" >"$dir/bad.out" 2>&1 && fail "a missing testnet was accepted"

[ "$failures" -eq 0 ] && echo "bench_smoke: ok"
exit "$failures"
