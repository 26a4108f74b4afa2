# Sourced by testnet/up.sh, down.sh and status.sh; not run by itself.
#
# B is the build directory (default build; build/san for sanitizer builds),
# relative to the repository root unless absolute. TESTNET_DIR is where the
# network lives (default testnet/run, ignored by git). A network is there when
# TESTNET_DIR/genesis.json and agencies.txt exist ("bexctl testnet init").

tn_root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd -P)
B=${B:-build}
case $B in
/*) tn_build=$B ;;
*) tn_build=$tn_root/$B ;;
esac
# shellcheck disable=SC2034 # used by the scripts that source this file
BEXD=$tn_build/bexd
# shellcheck disable=SC2034
BEXCTL=$tn_build/bexctl
TESTNET_DIR=${TESTNET_DIR:-$tn_root/testnet/run}
case $TESTNET_DIR in
/*) ;;
*) TESTNET_DIR=$(pwd -P)/$TESTNET_DIR ;;
esac
tn_tab=$(printf '\t')

tn_has_network() {
    [ -f "$TESTNET_DIR/genesis.json" ] && [ -f "$TESTNET_DIR/agencies.txt" ]
}

# Prints one line per node, "INDEX<TAB>AGENCY<TAB>RPC_URL", from agencies.txt.
tn_nodes() {
    while IFS=$tn_tab read -r id _name index url; do
        case $id in
        '' | '#'*) continue ;;
        esac
        printf '%s\t%s\t%s\n' "$index" "$id" "$url"
    done <"$TESTNET_DIR/agencies.txt"
}

tn_count() {
    tn_nodes | wc -l | tr -d ' '
}

# A path for messages: relative to the repository root when it is inside it.
tn_show() {
    case $1 in
    "$tn_root"/*) printf '%s\n' "${1#"$tn_root"/}" ;;
    *) printf '%s\n' "$1" ;;
    esac
}

# tn_alive PID: succeeds while PID runs; a zombie (exited, not yet reaped:
# its command line reads empty) counts as exited.
tn_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/cmdline" ] || return 0
    [ -n "$(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline")" ]
}

# Prints the pid of node K and succeeds when that node runs: its pid file
# names a live process whose command line names this node's config (bexd,
# or the shell that up.sh starts it from, just before its exec). A pid file
# naming any other process is stale: the pid was reused.
tn_node_pid() {
    _f=$TESTNET_DIR/node$1/bexd.pid
    [ -f "$_f" ] || return 1
    _pid=$(cat "$_f" 2>/dev/null) || return 1
    case $_pid in
    '' | *[!0-9]*) return 1 ;;
    esac
    [ "$_pid" -gt 1 ] || return 1
    tn_alive "$_pid" || return 1
    if [ -r "/proc/$_pid/cmdline" ]; then
        _cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$_pid/cmdline")
        case $_cmd in
        *" $TESTNET_DIR/node$1/node.json"*) ;;
        *) return 1 ;;
        esac
    fi
    printf '%s\n' "$_pid"
}

# tn_rpc URL METHOD: prints the JSON-RPC response of METHOD (no params).
tn_rpc() {
    curl -sS -m 2 -H 'Content-Type: application/json' \
        --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":{}}" "$1/" 2>/dev/null
}

# tn_health URL: prints the HTTP status of GET /health (000: no answer).
tn_health() {
    curl -s -o /dev/null -m 2 -w '%{http_code}' "$1/health" 2>/dev/null || true
}

# tn_field JSON NAME: prints the number or boolean of "NAME" in JSON, or nothing.
tn_field() {
    printf '%s\n' "$1" | sed -n "s/.*\"$2\" *: *\([0-9a-z][0-9a-z]*\).*/\1/p"
}

tn_now() {
    date +%s
}
