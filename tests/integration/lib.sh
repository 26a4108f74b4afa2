# Sourced by the integration tests of the node, its RPC and bexctl
# (tests/integration/node_*.sh, rpc_*.sh, cli_*.sh) and of the testnet
# scripts (demo_e2e.sh, testnet7.sh); not run by itself.
#
# A test does:
#     . "$(dirname "$0")/lib.sh"
#     it_setup NAME          # temp dir, cleanup trap, tools checked
#     it_net 4               # bexctl testnet init in the temp dir (free ports)
#     it_start_all           # start every bexd, wait until all see their peers
#     ...                    # it_rpc, it_wait, it_eq, it_match, it_fail, ...
#     it_done                # prints the verdict and the run time, exits
#
# Everything runs on 127.0.0.1. Every process a test starts (bexd, bexload in
# the background) is recorded by pid and killed with SIGKILL on exit, however
# the test ends; the temp dir is removed unless IT_KEEP=1. On failure the end
# of every node's log is printed first. Conditions are waited for with
# it_wait, which polls every 0.1 s until a deadline; a test sleeps only to let
# time pass on purpose (how long a node stays paused).
#
# Files named *.sh.pending are tests of known bugs: make test skips them; each
# says in its header what fails and how. Run one with sh FILE.
#
# A test of the testnet scripts runs the network as a user does, with
# testnet/up.sh, instead of it_net and it_start_all:
#     it_tn_setup NAME TOOL...  # temp dir, TESTNET_DIR in it, cleanup trap
#     it_tn_up [N] || ...       # testnet/up.sh [N]; its output if it fails
# Its nodes are killed by the pids up.sh recorded and the temp dir removed
# on exit, whatever happens (IT_KEEP does not apply).
#
# Environment: B (build directory, default build; build/san for SAN=1),
# IT_KEEP=1 (keep the temp dir for a post-mortem).

set -u
B=${B:-build}
it_root=$(pwd -P)
case $B in
/*) it_build=$B ;;
*) it_build=$it_root/$B ;;
esac
BEXD=$it_build/bexd
BEXCTL=$it_build/bexctl
BEXLOAD=$it_build/tests/tools/bexload
RAWTCP=$it_build/tests/tools/rawtcp
TXSIGN=$it_build/tests/tools/txsign
# Sanitizer builds run 2-3 times slower (and start much slower): tests scale
# their counts with it_scale, and it_wait's deadlines are tripled.
IT_SAN=0
IT_SLOW=1
case $B in
*san | *san/)
    IT_SAN=1
    IT_SLOW=3
    ;;
esac
IT_DIR=""
IT_NET=""
IT_N=0
IT_PIDS=""
IT_FAILURES=0
IT_NAME=""
IT_T0=0

# ------------------------------------------------------------- basics

it_now_ms() {
    date +%s%3N
}

# it_scale N: N, or a third of it (at least 1) in a sanitizer build.
it_scale() {
    if [ "$IT_SAN" -eq 1 ]; then
        _s=$(($1 / 3))
        [ "$_s" -ge 1 ] || _s=1
        echo "$_s"
    else
        echo "$1"
    fi
}

it_log() {
    echo "[$(($(it_now_ms) - IT_T0)) ms] $*"
}

# it_fail MSG: records a failure and goes on.
it_fail() {
    echo "FAIL: $*"
    IT_FAILURES=$((IT_FAILURES + 1))
}

# it_die MSG: records a failure and ends the test at once.
it_die() {
    echo "FAIL: $*"
    IT_FAILURES=$((IT_FAILURES + 1))
    exit 1
}

# it_eq WHAT GOT WANT: a failure unless GOT = WANT.
it_eq() {
    if [ "$2" != "$3" ]; then
        it_fail "$1: got '$2', want '$3'"
        return 1
    fi
}

# it_match WHAT TEXT PATTERN: a failure unless TEXT matches the grep -E PATTERN.
it_match() {
    if ! printf '%s\n' "$2" | grep -Eq -- "$3"; then
        it_fail "$1: '$3' not in: $(printf '%s' "$2" | head -c 600 | tr '\n' '|')"
        return 1
    fi
}

# it_nomatch WHAT TEXT PATTERN: a failure if TEXT matches PATTERN.
it_nomatch() {
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then
        it_fail "$1: '$3' unexpectedly in: $(printf '%s' "$2" | head -c 600 | tr '\n' '|')"
        return 1
    fi
}

# it_alive PID: true while PID runs (a zombie or a reaped pid is not running).
it_alive() {
    [ -r "/proc/$1/stat" ] || return 1
    _st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$_st" ] && [ "$_st" != Z ] && [ "$_st" != X ]
}

# it_wait SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.1 s until it
# succeeds (returns 0) or SECONDS (times IT_SLOW) pass (prints the failure,
# returns 1).
it_wait() {
    _wt_deadline=$(($(it_now_ms) + $1 * 1000 * IT_SLOW))
    _wt_desc=$2
    shift 2
    while :; do
        if "$@"; then
            return 0
        fi
        if [ "$(it_now_ms)" -ge "$_wt_deadline" ]; then
            it_fail "timed out waiting for: $_wt_desc"
            return 1
        fi
        sleep 0.1
    done
}

# ------------------------------------------------------------- setup and cleanup

it_cleanup() {
    _rc=$?
    trap - EXIT INT TERM
    for _p in $IT_PIDS; do
        kill -s KILL "$_p" 2>/dev/null
    done
    for _p in $IT_PIDS; do
        wait "$_p" 2>/dev/null
    done
    if [ "$_rc" -ne 0 ] || [ "$IT_FAILURES" -ne 0 ]; then
        if [ -n "$IT_NET" ] && [ -d "$IT_NET" ]; then
            for _log in "$IT_NET"/node*/bexd.log; do
                [ -f "$_log" ] || continue
                echo "---- ${_log#"$IT_DIR"/} (last 30 lines)"
                tail -n 30 "$_log"
            done
        fi
        [ "$_rc" -ne 0 ] || _rc=1
    fi
    if [ -n "$IT_DIR" ]; then
        if [ "${IT_KEEP:-0}" = 1 ]; then
            echo "kept $IT_DIR"
        else
            rm -rf "$IT_DIR"
        fi
    fi
    exit "$_rc"
}

# it_setup NAME: the temp dir, the trap, and a check that every tool is there.
it_setup() {
    IT_NAME=$1
    IT_T0=$(it_now_ms)
    for _t in "$BEXD" "$BEXCTL" "$BEXLOAD" "$RAWTCP" "$TXSIGN"; do
        [ -x "$_t" ] || {
            echo "FAIL: $_t is not built (make test builds it)"
            exit 1
        }
    done
    for _t in curl jq; do
        command -v "$_t" >/dev/null 2>&1 || {
            echo "FAIL: the integration tests need $_t"
            exit 1
        }
    done
    IT_DIR=$(mktemp -d "/tmp/bex-it-$1-XXXXXX") || exit 1
    trap it_cleanup EXIT
    trap 'exit 1' INT TERM
}

# it_done: prints the verdict with the run time and ends the test.
it_done() {
    _secs=$(($(it_now_ms) - IT_T0))
    if [ "$IT_FAILURES" -eq 0 ]; then
        echo "PASS $IT_NAME ($((_secs / 1000)).$((_secs % 1000 / 100)) s)"
        exit 0
    fi
    echo "FAIL $IT_NAME: $IT_FAILURES failure(s) ($((_secs / 1000)).$((_secs % 1000 / 100)) s)"
    exit 1
}

# it_bg PID: a background process of the test, killed on exit.
it_bg() {
    IT_PIDS="$IT_PIDS $1"
}

# ------------------------------------------------------------- testnet/up.sh networks

# it_tn_cleanup: stops every node of the network in TESTNET_DIR, even if
# down.sh fails, and removes the temp dir.
it_tn_cleanup() {
    BEX_DOWN_TIMEOUT=5 B=$B sh "$it_root/testnet/down.sh" >/dev/null 2>&1
    # down.sh may be the thing that is broken: SIGKILL each pid up.sh recorded.
    for _f in "$TESTNET_DIR"/node*/bexd.pid; do
        [ -f "$_f" ] || continue
        _pid=$(cat "$_f" 2>/dev/null)
        case $_pid in
        '' | *[!0-9]*) ;;
        *) kill -s KILL "$_pid" 2>/dev/null ;;
        esac
    done
    rm -rf "$IT_DIR"
}

# it_tn_setup NAME TOOL...: fails unless every TOOL is executable; makes the
# temp dir IT_DIR (/tmp/bex-NAME-it-XXXXXX), exports TESTNET_DIR=$IT_DIR/run
# for the testnet scripts, and sets the traps: it_tn_cleanup on exit, and
# SIGINT or SIGTERM exits 1.
it_tn_setup() {
    _name=$1
    shift
    for _t in "$@"; do
        [ -x "$_t" ] || {
            echo "FAIL: $_t is not built (make test builds it)"
            exit 1
        }
    done
    IT_DIR=$(mktemp -d "/tmp/bex-$_name-it-XXXXXX") || exit 1
    export TESTNET_DIR="$IT_DIR/run"
    trap it_tn_cleanup EXIT
    trap 'exit 1' INT TERM
}

# it_tn_up [N]: testnet/up.sh [N] in TESTNET_DIR (it lays out the network on
# free ports, starts every bexd and waits until they are up). When it fails,
# prints its output and returns 1.
it_tn_up() {
    B=$B sh "$it_root/testnet/up.sh" "$@" >"$IT_DIR/up.out" 2>&1 || {
        cat "$IT_DIR/up.out"
        return 1
    }
}

# ------------------------------------------------------------- the network

# it_net N: lays out an N-node network in $IT_DIR/net on free ports and
# exports the passphrase of its keys.
it_net() {
    IT_NET=$IT_DIR/net
    IT_N=$1
    "$BEXCTL" testnet init --dir "$IT_NET" --nodes "$1" >"$IT_DIR/init.log" 2>&1 ||
        it_die "bexctl testnet init: $(cat "$IT_DIR/init.log")"
    BEX_PASSPHRASE=$(cat "$IT_NET/passphrase")
    export BEX_PASSPHRASE
    _k=0
    while [ "$_k" -lt "$1" ]; do
        eval "IT_URL_$_k=$(awk -F '\t' -v k="$_k" '!/^#/ && $3 == k { print $4 }' "$IT_NET/agencies.txt")"
        _k=$((_k + 1))
    done
}

# it_url K: the RPC URL of node K (read once from agencies.txt by it_net).
it_url() {
    eval "echo \${IT_URL_$1:-}"
}

# it_agency K: the agency of node K.
it_agency() {
    awk -F '\t' -v k="$1" '!/^#/ && $3 == k { print $1 }' "$IT_NET/agencies.txt"
}

# it_urls: the RPC URLs of all nodes, comma-separated (for bexload).
it_urls() {
    awk -F '\t' '!/^#/ { printf "%s%s", (n++ ? "," : ""), $4 }' "$IT_NET/agencies.txt"
}

# it_p2p K: HOST:PORT of node K's peer-to-peer listener.
it_p2p() {
    jq -r .listen "$IT_NET/node$1/node.json"
}

# it_rpcaddr K: HOST:PORT of node K's RPC listener.
it_rpcaddr() {
    jq -r .rpc "$IT_NET/node$1/node.json"
}

it_logfile() {
    echo "$IT_NET/node$1/bexd.log"
}

# it_pid K: the pid of node K as started by it_start (empty if never).
it_pid() {
    eval "echo \${IT_PID_$1:-}"
}

# it_start K: starts node K in the background (not in a subshell: the pid is
# recorded in this shell).
it_start() {
    echo "==== $(date -u '+%H:%M:%S') test starts node$1" >>"$IT_NET/node$1/bexd.log"
    "$BEXD" --config "$IT_NET/node$1/node.json" >>"$IT_NET/node$1/bexd.log" 2>&1 &
    eval "IT_PID_$1=$!"
    IT_PIDS="$IT_PIDS $!"
}

# it_signal K SIG: sends SIG to node K.
it_signal() {
    kill -s "$2" "$(it_pid "$1")"
}

# it_kill K: SIGKILLs node K and reaps it.
it_kill() {
    _p=$(it_pid "$1")
    kill -s KILL "$_p" 2>/dev/null
    wait "$_p" 2>/dev/null
    return 0
}

# it_stop K: SIGTERMs node K and waits up to 10 s for it to exit (then SIGKILL).
# Returns 1 if it needed the SIGKILL.
it_stop() {
    _p=$(it_pid "$1")
    kill -s TERM "$_p" 2>/dev/null
    _sd=$(($(it_now_ms) + 10000))
    while it_alive "$_p" && [ "$(it_now_ms)" -lt "$_sd" ]; do
        sleep 0.05
    done
    if it_alive "$_p"; then
        it_fail "node$1 (pid $_p) ignored SIGTERM for 10 s"
        kill -s KILL "$_p" 2>/dev/null
        wait "$_p" 2>/dev/null
        return 1
    fi
    wait "$_p" 2>/dev/null
    return 0
}

# it_running K: true while node K runs.
it_running() {
    _p=$(it_pid "$1")
    [ -n "$_p" ] && it_alive "$_p"
}

# it_connected K: node K answers and is connected to every other node.
it_connected() {
    _c=$(it_rpc_result "$(it_url "$1")" status '{}' .peers_connected 2>/dev/null)
    [ "$_c" = $((IT_N - 1)) ]
}

it_all_connected() {
    _k=0
    while [ "$_k" -lt "$IT_N" ]; do
        it_running "$_k" || it_die "node$_k exited"
        it_connected "$_k" || return 1
        _k=$((_k + 1))
    done
}

# it_start_all: starts every node and waits (30 s) until each sees all peers.
it_start_all() {
    _k=0
    while [ "$_k" -lt "$IT_N" ]; do
        it_start "$_k"
        _k=$((_k + 1))
    done
    it_wait 30 "all $IT_N nodes connected to each other" it_all_connected || exit 1
    it_log "$IT_N nodes up"
}

# ------------------------------------------------------------- RPC

# it_rpc URL METHOD [PARAMS]: prints the JSON-RPC response (params default {}).
it_rpc() {
    curl -sS -m 30 -H 'Content-Type: application/json' \
        --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-\{\}}}" "$1/"
}

# it_rpc_result URL METHOD PARAMS [JQ]: prints .result (through the jq filter
# JQ, raw) and fails when the call fails or answers an error.
it_rpc_result() {
    _r=$(it_rpc "$1" "$2" "$3") || return 1
    printf '%s\n' "$_r" | jq -e 'has("result")' >/dev/null 2>&1 || {
        echo "$2: $_r" >&2
        return 1
    }
    printf '%s\n' "$_r" | jq -r ".result${4:+ | $4}"
}

# it_status K FIELD: one field of node K's status.
it_status() {
    it_rpc_result "$(it_url "$1")" status '{}' ".$2"
}

# it_tip K: "height state_root block_hash" of node K.
it_tip() {
    it_rpc_result "$(it_url "$1")" status '{}' '"\(.height) \(.state_root) \(.block_hash)"'
}

# it_same_tip K...: the nodes report the same height, state root and block hash.
it_same_tip() {
    _first=""
    for _k in "$@"; do
        _t=$(it_tip "$_k" 2>/dev/null) || return 1
        if [ -z "$_first" ]; then
            _first=$_t
        elif [ "$_t" != "$_first" ]; then
            return 1
        fi
    done
    [ -n "$_first" ]
}

# it_all K...: the list 0 .. IT_N-1.
it_all() {
    _k=0
    while [ "$_k" -lt "$IT_N" ]; do
        printf '%s ' "$_k"
        _k=$((_k + 1))
    done
}

# it_show_tips: one line per node, for the test's log.
it_show_tips() {
    for _k in $(it_all); do
        echo "  node$_k: $(it_tip "$_k" 2>&1 | cut -c1-60)..."
    done
}

# it_show_state: the consensus state of every node, for a failure report.
it_show_state() {
    for _k in $(it_all); do
        echo "  node$_k: $(it_rpc_result "$(it_url "$_k")" status '{}' \
            '"height \(.height) view \(.view) primary \(.primary) view_active \(.view_active) catching_up \(.catching_up) mempool \(.mempool_txs) peers \(.peers_connected)"' 2>&1 | head -c 200)"
    done
}

# it_height_above K H: node K's height is above H.
it_height_above() {
    _h=$(it_status "$1" height 2>/dev/null) || return 1
    [ -n "$_h" ] && [ "$_h" -gt "$2" ]
}

# it_blocks K FROM TO [JQ]: prints "height VALUE" for blocks FROM..TO of node
# K, VALUE being JQ applied to block.get's result (default .hash), or
# "height ERROR ..." for a failed call; fetched in JSON-RPC batches of up to
# 100 (the server's batch_max).
it_blocks() {
    _from=$2
    while [ "$_from" -le "$3" ]; do
        _to=$((_from + 99))
        [ "$_to" -le "$3" ] || _to=$3
        jq -nc --argjson a "$_from" --argjson b "$_to" \
            '[range($a; $b + 1) | {jsonrpc: "2.0", id: ., method: "block.get", params: {height: .}}]' |
            curl -sS -m 30 -H 'Content-Type: application/json' --data @- "$(it_url "$1")/" |
            jq -r "if type == \"array\" then sort_by(.id)[] | \"\\(.id) \\(if .result then .result | ${4:-.hash} else \"ERROR \\(.error)\" end)\" else \"$_from ERROR \\(.)\" end" ||
            return 1
        _from=$((_to + 1))
    done
}

# it_block_hashes K FROM TO: "height hash" of blocks FROM..TO of node K.
it_block_hashes() {
    it_blocks "$1" "$2" "$3" .hash
}

# it_load K COUNT [BEXLOAD OPTIONS...]: bexload as node K's agency (officer 1),
# submitting to node K; prints its JSON line (stderr: its progress).
it_load() {
    _lk=$1
    _lc=$2
    shift 2
    "$BEXLOAD" --node "$(it_url "$_lk")" --key "$IT_NET/agencies/$(it_agency "$_lk")/officer1.key" \
        --agency "$(it_agency "$_lk")" --count "$_lc" "$@"
}

# it_load_bg K COUNT OUT [BEXLOAD OPTIONS...]: it_load in the background,
# its output (stdout and stderr) in OUT; sets IT_LOAD_PID (killed on exit).
it_load_bg() {
    _lk=$1
    _lc=$2
    _lo=$3
    shift 3
    "$BEXLOAD" --node "$(it_url "$_lk")" --key "$IT_NET/agencies/$(it_agency "$_lk")/officer1.key" \
        --agency "$(it_agency "$_lk")" --count "$_lc" "$@" >"$_lo" 2>&1 &
    IT_LOAD_PID=$!
    it_bg "$IT_LOAD_PID"
}

# it_reap PID: waits for a background process of the test; returns its exit code.
it_reap() {
    wait "$1"
}

# it_key AGENCY [N]: the keystore of officer N (default 1) of AGENCY.
it_key() {
    echo "$IT_NET/agencies/$1/officer${2:-1}.key"
}

# it_sign AGENCY NONCE CONTRACT METHOD ARGS [OFFICER...]: prints "ID TX" of
# a tx signed by the given officers of AGENCY (default officer 1).
it_sign() {
    _sa=$1
    _sn=$2
    _sc=$3
    _sm=$4
    _sg=$5
    shift 5
    [ $# -gt 0 ] || set -- 1
    _sk=""
    for _o in "$@"; do
        _sk="$_sk --key $(it_key "$_sa" "$_o")"
    done
    # shellcheck disable=SC2086 # _sk is a list of options without blanks in them
    "$TXSIGN" $_sk --chain bex-testnet --sender "$_sa" --nonce "$_sn" --contract "$_sc" --method "$_sm" --args "$_sg"
}

# it_next_nonce URL AGENCY: the agency's next nonce as that node sees it.
it_next_nonce() {
    it_rpc_result "$1" account.nonce "{\"agency\":\"$2\"}" .next
}

# it_block_txs K FROM TO: prints "height txid" for every tx of blocks FROM..TO
# of node K, in chain order.
it_block_txs() {
    it_blocks "$1" "$2" "$3" '.txs | join(" ")' | awk '{ for (i = 2; i <= NF; i++) print $1, $i }'
}

# it_no_dup_txs K TO: no tx id appears twice in blocks 1..TO of node K (a tx
# committed twice); prints each duplicate with its heights and its receipt.
it_no_dup_txs() {
    it_block_txs "$1" 1 "$2" >"$IT_DIR/txs.$1"
    _dups=$(awk '{ print $2 }' "$IT_DIR/txs.$1" | sort | uniq -d)
    [ -z "$_dups" ] && return 0
    it_fail "node$1: $(echo "$_dups" | wc -l) tx ids appear in more than one block of 1..$2"
    for _d in $(echo "$_dups" | head -5); do
        echo "  $_d at heights $(awk -v d="$_d" '$2 == d { printf "%s ", $1 }' "$IT_DIR/txs.$1")," \
            "receipt $(it_rpc_result "$(it_url "$1")" tx.get "{\"id\":\"$_d\"}" '"height \(.height) index \(.index) code \(.code_name) nonce \(.nonce)"')"
    done
    it_blocks "$1" 1 "$2" '"view \(.view) cert view \(.cert.view) proposer \(.proposer) txs \(.txs | length)"' | sed 's/^/  block /'
    return 1
}
