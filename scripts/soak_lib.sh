# Sourced by scripts/soak.sh and the soak and full-store integration tests
# (tests/integration/soak_short.sh, node_mapfull.sh, node_diskfull.sh); not
# run by itself. Helpers are named sk_*.
#
# sk_setup NAME makes a private work directory (/tmp/bex-NAME-XXXXXX) with
# the testnet in $TESTNET_DIR under it, and installs an EXIT trap that kills
# every bexd started through sk_start (by pid, checked against its command
# line), unmounts what sk_mounted recorded, and removes the directory unless
# SK_KEEP=1. B is the build directory (default build), relative to the
# repository root sk_root, which the sourcing script sets.

B=${B:-build}
case $B in
/*) sk_build=$B ;;
*) sk_build=$sk_root/$B ;;
esac
BEXD=$sk_build/bexd
BEXCTL=$sk_build/bexctl
SOAKLOAD=$sk_build/tests/tools/soakload
SK_WORK=""
sk_failures=0

# sk_san: succeeds for a sanitizer build, which runs 2-3 times slower.
sk_san() {
    case $B in
    */san | san) return 0 ;;
    esac
    return 1
}

sk_setup() {
    for _b in "$BEXD" "$BEXCTL" "$SOAKLOAD"; do
        if [ ! -x "$_b" ]; then
            echo "$1: $_b is not built (make; make SAN=1 for B=build/san)" >&2
            exit 1
        fi
    done
    SK_WORK=$(mktemp -d "/tmp/bex-$1-XXXXXX") || exit 1
    TESTNET_DIR=$SK_WORK/net
    export TESTNET_DIR
    : >"$SK_WORK/pids"
    : >"$SK_WORK/helpers"
    : >"$SK_WORK/mounts"
    trap sk_cleanup EXIT
    trap 'exit 1' INT TERM HUP
}

sk_cleanup() {
    _rc=$?
    if [ -n "$SK_WORK" ] && [ -f "$SK_WORK/pids" ]; then
        while read -r _p; do
            sk_ours "$_p" && kill -s KILL "$_p" 2>/dev/null
        done <"$SK_WORK/pids"
        while read -r _p; do
            sk_alive "$_p" && case $(tr '\0' ' ' <"/proc/$_p/cmdline" 2>/dev/null) in
            *"$SK_WORK"*) kill -s KILL "$_p" 2>/dev/null ;;
            esac
        done <"$SK_WORK/helpers"
        # Wait until the killed nodes have closed their files, then unmount.
        while read -r _p; do
            _n=0
            while ! sk_exited "$_p" && [ "$_n" -lt 50 ]; do
                sleep 0.1
                _n=$((_n + 1))
            done
        done <"$SK_WORK/pids"
        while read -r _m; do
            [ -n "$_m" ] || continue
            _n=0
            until umount "$_m" 2>/dev/null || [ "$_n" -ge 50 ]; do
                sleep 0.1
                _n=$((_n + 1))
            done
            if [ "$_n" -ge 50 ]; then
                echo "cannot unmount $_m; detaching it" >&2
                umount -l "$_m"
            fi
        done <"$SK_WORK/mounts"
        if [ "${SK_KEEP:-0}" = 1 ]; then
            echo "kept $SK_WORK"
        else
            rm -rf "$SK_WORK"
        fi
    fi
    exit "$_rc"
}

# sk_track PID: a helper process (its command line names $SK_WORK) for
# sk_cleanup to kill.
sk_track() {
    echo "$1" >>"$SK_WORK/helpers"
}

# sk_mounted DIR: records a mount point for sk_cleanup to unmount.
sk_mounted() {
    echo "$1" >>"$SK_WORK/mounts"
}

sk_fail() {
    echo "FAIL: $*"
    sk_failures=$((sk_failures + 1))
}

sk_now() {
    date +%s
}

# Milliseconds since the epoch.
sk_now_ms() {
    _t=$(date +%s%N)
    echo $((_t / 1000000))
}

# sk_alive PID: succeeds while PID runs; a zombie (empty command line) counts as exited.
sk_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ -n "$(tr -d '\0' <"/proc/$1/cmdline" 2>/dev/null)" ]
}

# sk_exited PID: PID has exited and closed its files (it is gone or a
# zombie; a process that is exiting may read an empty command line while it
# still holds files open).
sk_exited() {
    kill -0 "$1" 2>/dev/null || return 0
    [ "$(sed -n 's/^[0-9]* (.*) \([A-Z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

# sk_ours PID: PID runs and is a node of this network.
sk_ours() {
    sk_alive "$1" || return 1
    case $(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) in
    *"$TESTNET_DIR/node"*) return 0 ;;
    esac
    return 1
}

# sk_init N: lays out an N-node network in $TESTNET_DIR.
sk_init() {
    "$BEXCTL" testnet init --dir "$TESTNET_DIR" --nodes "$1" >"$SK_WORK/init.log" 2>&1 || {
        cat "$SK_WORK/init.log"
        return 1
    }
    SK_NODES=$1
}

# sk_url K: the RPC URL of node K.
sk_url() {
    awk -F '\t' -v k="$1" '$1 !~ /^#/ && $3 == k { print $4; exit }' "$TESTNET_DIR/agencies.txt"
}

# sk_pid K: prints the pid of node K and succeeds while it runs.
sk_pid() {
    _f=$TESTNET_DIR/node$1/bexd.pid
    [ -f "$_f" ] || return 1
    _pid=$(cat "$_f" 2>/dev/null)
    case $_pid in
    '' | *[!0-9]*) return 1 ;;
    esac
    sk_ours "$_pid" || return 1
    echo "$_pid"
}

# sk_start K: starts node K in its own session, its output appended to
# nodeK/bexd.log. SK_PRE, when set, is shell code run just before the exec
# (e.g. limits). Fails when the node records no pid within 5 s.
sk_start() {
    _d=$TESTNET_DIR/node$1
    rm -f "$_d/bexd.pid" "$_d/bexd.pid.tmp"
    echo "==== $(date '+%Y-%m-%d %H:%M:%S') start node$1" >>"$_d/bexd.log"
    # shellcheck disable=SC2016 # $$ and $1..$3 belong to the inner shell.
    setsid sh -c "${SK_PRE:-:}"'; echo $$ >"$1.tmp" && mv "$1.tmp" "$1" && exec "$2" --config "$3"' \
        sh "$_d/bexd.pid" "$BEXD" "$_d/node.json" </dev/null >>"$_d/bexd.log" 2>&1 &
    _n=0
    while [ ! -f "$_d/bexd.pid" ]; do
        [ "$_n" -ge 50 ] && return 1
        sleep 0.1
        _n=$((_n + 1))
    done
    cat "$_d/bexd.pid" >>"$SK_WORK/pids"
}

# sk_signal K SIG [SECONDS]: sends SIG to node K and waits until it is gone;
# SIGKILL follows after SECONDS (default 10). Fails when it was not running.
sk_signal() {
    _p=$(sk_pid "$1") || return 1
    kill -s "$2" "$_p" 2>/dev/null
    _n=0
    while ! sk_exited "$_p"; do
        if [ "$_n" -ge $((${3:-10} * 10)) ]; then
            echo "node$1 (pid $_p) ignores SIG$2 for ${3:-10}s; sending SIGKILL"
            kill -s KILL "$_p" 2>/dev/null
            _n=0
        fi
        sleep 0.1
        _n=$((_n + 1))
    done
}

# sk_health K: the HTTP status of node K's GET /health (000: no answer).
sk_health() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$(sk_url "$1")/health" 2>/dev/null || true
}

# sk_health_body K: the body of node K's GET /health.
sk_health_body() {
    curl -s -m 2 "$(sk_url "$1")/health" 2>/dev/null || true
}

# sk_rpc K METHOD [PARAMS]: node K's JSON-RPC response (PARAMS a JSON object).
sk_rpc() {
    curl -sS -m 5 -H 'Content-Type: application/json' \
        --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":${3:-{\}}}" "$(sk_url "$1")/" 2>/dev/null
}

# sk_field JSON NAME: the number or boolean of "NAME" in JSON (a name that occurs once).
sk_field() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\" *: *\([0-9a-z][0-9a-z]*\).*/\1/p" | head -n 1
}

# sk_sfield JSON NAME: the string value of "NAME" in JSON (a name that occurs once).
sk_sfield() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\" *: *\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# sk_height K: node K's height, or nothing.
sk_height() {
    sk_field "$(sk_rpc "$1" status)" height
}

# sk_all_healthy: every node answers GET /health with 200.
sk_all_healthy() {
    _k=0
    while [ "$_k" -lt "$SK_NODES" ]; do
        [ "$(sk_health "$_k")" = 200 ] || return 1
        _k=$((_k + 1))
    done
}

# sk_agree: every node answers status with the same height and block hash.
sk_agree() {
    _first=""
    _k=0
    while [ "$_k" -lt "$SK_NODES" ]; do
        _st=$(sk_rpc "$_k" status)
        _hh="$(sk_field "$_st" height) $(sk_sfield "$_st" block_hash)"
        [ -n "$(sk_field "$_st" height)" ] || return 1
        [ "$_k" -eq 0 ] && _first=$_hh
        [ "$_hh" = "$_first" ] || return 1
        _k=$((_k + 1))
    done
}

# sk_states: one line per node: height, view, primary, view_active,
# catching_up, peers and health.
sk_states() {
    _k=0
    while [ "$_k" -lt "$SK_NODES" ]; do
        _st=$(sk_rpc "$_k" status)
        echo "  node$_k: height $(sk_field "$_st" height) hash $(sk_sfield "$_st" block_hash | cut -c 1-12)" \
            "view $(sk_field "$_st" view) primary $(sk_field "$_st" primary) view_active $(sk_field "$_st" view_active)" \
            "catching_up $(sk_field "$_st" catching_up) peers $(sk_field "$_st" peers_connected)" \
            "mempool $(sk_field "$_st" mempool_txs) health $(sk_health "$_k") $(sk_health_body "$_k")"
        _k=$((_k + 1))
    done
}

# sk_wait SECONDS CMD...: runs CMD every 0.2 s until it succeeds; fails after SECONDS.
sk_wait() {
    _deadline=$(($(sk_now) + $1))
    shift
    while ! "$@"; do
        [ "$(sk_now)" -ge "$_deadline" ] && return 1
        sleep 0.2
    done
}

# sk_tail K [LINES]: the end of node K's log.
sk_tail() {
    echo "---- node$1 log:"
    tail -n "${2:-20}" "$TESTNET_DIR/node$1/bexd.log" 2>/dev/null | cut -c 1-400
}

# sk_rand LO HI: a random integer in [LO, HI].
sk_rand() {
    _r=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
    echo $(($1 + _r % ($2 - $1 + 1)))
}

# sk_sleep_ms MS
sk_sleep_ms() {
    sleep "$(($1 / 1000)).$(printf '%03d' $(($1 % 1000)))"
}

# ---------------------------------------------------------------- a full store
# The checks of node_mapfull.sh and node_diskfull.sh, for node K whose store
# fills under the load of soakload (started by the test).

# sk_refusing K: node K's log says its store refuses writes.
sk_refusing() {
    grep -q 'node: store refuses writes' "$TESTNET_DIR/node$1/bexd.log"
}

# sk_check_refusal K WHAT: node K has refused writes (its log says so, naming
# WHAT, an extended regular expression for the cause); checks that its health
# is 503 with the reason, that it still serves status, state.query and
# block.get, refuses tx.submit, stays at its height and that the other nodes
# keep committing.
sk_check_refusal() {
    _k=$1
    _log=$TESTNET_DIR/node$_k/bexd.log
    _line=$(grep -m 1 'node: store refuses writes' "$_log")
    echo "node$_k logged: $(printf '%s' "$_line" | cut -c 1-300)"
    printf '%s\n' "$_line" | grep -q -E "$2" || sk_fail "the store error of node$_k does not name the cause ($2): $_line"
    _h=$(sk_health "$_k")
    _body=$(sk_health_body "$_k")
    echo "node$_k GET /health: $_h $_body"
    [ "$_h" = 503 ] || sk_fail "node$_k /health is $_h, want 503"
    case $_body in
    *'"reason"'*'store refuses writes'*) ;;
    *) sk_fail "node$_k /health does not give the store as the reason: $_body" ;;
    esac
    _st=$(sk_rpc "$_k" status)
    _frozen=$(sk_field "$_st" height)
    [ -n "$_frozen" ] || sk_fail "node$_k does not answer status: $_st"
    _q=$(sk_rpc "$_k" state.query '{"contract":"agency","query":"get","args":{"id":"city.traffic"}}')
    case $_q in
    *'"result"'*city.traffic*) ;;
    *) sk_fail "node$_k does not answer state.query: $(printf '%s' "$_q" | cut -c 1-200)" ;;
    esac
    _b=$(sk_rpc "$_k" block.get "{\"height\":${_frozen:-0}}")
    case $_b in
    *'"result"'*'"hash"'*) ;;
    *) sk_fail "node$_k does not answer block.get at its height ${_frozen:-?}: $(printf '%s' "$_b" | cut -c 1-200)" ;;
    esac
    _s=$(sk_rpc "$_k" tx.submit '{"tx":"00"}')
    case $_s in
    *'refuses writes'*) ;;
    *) sk_fail "node$_k does not refuse tx.submit: $(printf '%s' "$_s" | cut -c 1-200)" ;;
    esac
    # The others keep committing, well past the height node K stopped at.
    _o=$(((_k + 1) % SK_NODES))
    _want=$((${_frozen:-0} + 10))
    if ! sk_wait 30 sk_height_at_least "$_o" "$_want"; then
        sk_fail "node$_o did not reach height $_want while node$_k refused writes (at $(sk_height "$_o"))"
    fi
    _now=$(sk_height "$_k")
    [ "$_now" = "$_frozen" ] || sk_fail "node$_k moved from height $_frozen to $_now while refusing writes"
    echo "node$_k stays at height $_frozen while node$_o reached $(sk_height "$_o")"
}

# sk_height_at_least K H
sk_height_at_least() {
    _hh=$(sk_height "$1")
    [ -n "$_hh" ] && [ "$_hh" -ge "$2" ]
}

# sk_check_recovery K ACKED: node K, restarted with room, must catch up to
# the same height, state root and block hash as the others, hold a whole
# chain (soakload verify walks it), and every acknowledged tx of ACKED.
sk_check_recovery() {
    if ! sk_wait 60 sk_all_healthy; then
        sk_fail "node$1 is not healthy 60s after its restart: $(sk_health_body "$1")"
        sk_tail "$1" 30
        return
    fi
    _v=$("$SOAKLOAD" verify --testnet "$TESTNET_DIR" --acked "$2" --node "$1" --timeout 60 2>&1)
    _rc=$?
    echo "verify on node$1: $_v"
    [ "$_rc" -eq 0 ] || sk_fail "node$1 does not hold the same whole chain after its restart"
    if sed -n '/==== .* start node/h; //!H; ${x;p;}' "$TESTNET_DIR/node$1/bexd.log" | grep -q 'store refuses writes'; then
        sk_fail "node$1 refuses writes again after its restart"
    fi
}
