# Sourced by the byzantine tests (tests/integration/byz_*.sh); not run by
# itself. It adds to lib.sh a network in which one node runs bexd-byz, the
# deliberately faulty build of bexd (node/node_byz.h), with the misbehaviours
# named in BEX_BYZ, and the checks every such test makes:
#
#     . "$(dirname "$0")/byz_lib.sh"
#     it_setup NAME
#     byz_net 5 4 replay        # 5 nodes, node4 runs bexd-byz with BEX_BYZ=replay
#     byz_load                  # load through the honest nodes, they agree and commit
#     byz_sum_metric 'bex_pbft_dropped_total{reason="duplicate"}'
#     it_done
. "$(dirname "$0")/lib.sh"

BEXD_BYZ=$it_build/bexd-byz
BYZ_NODE=""
BYZ_HONEST=""

# byz_start K KINDS [CLOCK_OFFSET_MS]: starts node K as bexd-byz (recorded like it_start).
byz_start() {
    [ -x "$BEXD_BYZ" ] || it_die "$BEXD_BYZ is not built (make builds it)"
    echo "==== $(date -u '+%H:%M:%S') test starts node$1 as bexd-byz ($2, offset ${3:-0})" >>"$IT_NET/node$1/bexd.log"
    BEX_BYZ=$2 BEX_CLOCK_OFFSET_MS=${3:-0} "$BEXD_BYZ" --config "$IT_NET/node$1/node.json" \
        >>"$IT_NET/node$1/bexd.log" 2>&1 &
    eval "IT_PID_$1=$!"
    IT_PIDS="$IT_PIDS $!"
}

# byz_honest_connected: every honest node answers and sees every other honest node.
byz_honest_connected() {
    for _k in $BYZ_HONEST; do
        it_running "$_k" || it_die "node$_k exited"
        _c=$(it_rpc_result "$(it_url "$_k")" status '{}' .peers_connected 2>/dev/null) || return 1
        [ -n "$_c" ] && [ "$_c" -ge $((IT_N - 2)) ] || return 1
    done
}

# byz_net N K KINDS [CLOCK_OFFSET_MS]: lays out an N-node network (it_net)
# and starts it with byz_start_net.
byz_net() {
    it_net "$1"
    byz_start_net "$2" "$3" "${4:-0}"
}

# byz_start_net K KINDS [CLOCK_OFFSET_MS]: starts the network of it_net, node
# K as bexd-byz with BEX_BYZ=KINDS and the others honest; waits until the
# honest nodes are connected to each other and node K said what it does.
byz_start_net() {
    BYZ_NODE=$1
    BYZ_HONEST=""
    for _k in $(it_all); do
        if [ "$_k" -eq "$1" ]; then
            byz_start "$_k" "$2" "${3:-0}"
        else
            it_start "$_k"
            BYZ_HONEST="$BYZ_HONEST $_k"
        fi
    done
    it_wait 30 "the honest nodes connected to each other" byz_honest_connected || exit 1
    _kinds=$2
    it_wait 10 "bexd-byz announcing its misbehaviours" \
        grep -q "deliberately faulty node for tests: misbehaviours ${_kinds:-none}" "$(it_logfile "$1")" || exit 1
    it_log "$IT_N nodes up, node$1 is bexd-byz (BEX_BYZ=$2, clock offset ${3:-0} ms)"
}

# byz_honest_urls: the RPC URLs of the honest nodes, comma-separated.
byz_honest_urls() {
    _u=""
    for _k in $BYZ_HONEST; do
        _u="$_u${_u:+,}$(it_url "$_k")"
    done
    echo "$_u"
}

# byz_first_honest: the lowest honest node index.
byz_first_honest() {
    set -- $BYZ_HONEST
    echo "$1"
}

# byz_all_alive: no node has exited (bexd-byz included: a crash there is a bug too).
byz_all_alive() {
    for _k in $BYZ_HONEST; do
        it_running "$_k" || it_fail "honest node$_k exited"
    done
    it_running "$BYZ_NODE" || it_fail "bexd-byz (node$BYZ_NODE) exited"
}

# byz_load [COUNT] [RATE] [MIN_BLOCKS]: bexload offers COUNT txs (scaled
# under SAN) at RATE tx/s to the honest nodes and waits until all of them
# committed every tx and agree on height, block hash and state root; then
# checks that the honest chain grew by MIN_BLOCKS blocks at least, that the
# honest nodes report the same tip and that none of them died. Sets
# BYZ_H0, BYZ_H1 (heights before and after) and BYZ_LOAD_MS.
byz_load() {
    _n=$(it_scale "${1:-1500}")
    _r=$(it_scale "${2:-500}")
    _min=${3:-5}
    _k=$(byz_first_honest)
    BYZ_H0=$(it_status "$_k" height) || it_die "node$_k does not answer"
    _t0=$(it_now_ms)
    "$BEXLOAD" --node "$(byz_honest_urls)" --key "$(it_key "$(it_agency "$_k")")" --agency "$(it_agency "$_k")" \
        --count "$_n" --batch 50 --rate "$_r" --wait --timeout $((40 * IT_SLOW)) >"$IT_DIR/load.out" 2>&1 ||
        it_die "bexload on the honest nodes: $(tail -c 600 "$IT_DIR/load.out")"
    BYZ_LOAD_MS=$(($(it_now_ms) - _t0))
    # shellcheck disable=SC2086 # BYZ_HONEST is a list of node indices
    it_wait 10 "the honest nodes on the same tip" it_same_tip $BYZ_HONEST || it_show_tips
    BYZ_H1=$(it_status "$_k" height)
    it_log "load of $_n txs committed on every honest node in $BYZ_LOAD_MS ms: height $BYZ_H0 -> $BYZ_H1," \
        "view $(it_status "$_k" view)"
    [ "$BYZ_H1" -ge $((BYZ_H0 + _min)) ] || it_fail "the honest chain grew by $((BYZ_H1 - BYZ_H0)) blocks, want >= $_min"
    byz_all_alive
}

# byz_metric K SERIES: the value of one /metrics series of node K (0 if absent).
byz_metric() {
    _v=$(curl -sS -m 10 "$(it_url "$1")/metrics" | awk -v s="$2" '$1 == s && !f { print $2; f = 1 }')
    echo "${_v:-0}" | cut -d. -f1
}

# byz_sum_metric SERIES: the sum of SERIES over the honest nodes.
byz_sum_metric() {
    _s=0
    for _k in $BYZ_HONEST; do
        _s=$((_s + $(byz_metric "$_k" "$1")))
    done
    echo "$_s"
}

byz_metric_positive() {
    [ "$(byz_sum_metric "$1")" -gt 0 ]
}

# byz_expect_metric SERIES: at least one honest node counted something in
# SERIES (waits up to 5 s: the node refreshes these once a second).
byz_expect_metric() {
    it_wait 5 "honest nodes counting $1" byz_metric_positive "$1" || return 1
    it_log "honest nodes: $1 = $(byz_sum_metric "$1") (sum)"
}

# byz_sent KIND: how many misbehaving messages of KIND node BYZ_NODE reported sending (its last report).
byz_sent() {
    _v=$(grep -o "$1=[0-9]*" "$(it_logfile "$BYZ_NODE")" | tail -1)
    echo "${_v#*=}" | grep . || echo 0
}

# byz_expect_sent KIND: the faulty node did misbehave (reported at least one message of KIND).
byz_sent_positive() {
    [ "$(byz_sent "$1")" -gt 0 ]
}
byz_expect_sent() {
    it_wait 5 "node$BYZ_NODE reporting $1 messages sent" byz_sent_positive "$1" || return 1
    it_log "node$BYZ_NODE (bexd-byz) sent $(byz_sent "$1") $1 messages"
}

# byz_show_faults: what the honest nodes counted, for the test's log.
byz_show_faults() {
    for _k in $BYZ_HONEST; do
        echo "  node$_k: $(curl -sS -m 10 "$(it_url "$_k")/metrics" |
            awk '/^bex_(pbft_dropped|p2p_disconnects|proposals_refused)_total\{/ && $2 != "0" { printf "%s=%s ", $1, $2 }')"
    done
}
