#!/bin/sh
# Shows the nodes of the local testnet: one row per node with its agency,
# its pid (or "dead" when its recorded process is gone, "-" when it was
# never started), and what its RPC reports (height, view, connected peers,
# GET /health). With --urls prints only the RPC URL of each node, one a
# line, for scripts.
#
# usage: testnet/status.sh [--urls]
#
# Exits 0 when every node is healthy, 3 when some node is not, 1 when there
# is no network. Environment: TESTNET_DIR (default testnet/run).
set -u
# shellcheck source=testnet/common.sh
. "$(dirname -- "$0")/common.sh"

usage() {
    echo "usage: testnet/status.sh [--urls]"
}

urls=0
case $# in
0) ;;
1)
    case $1 in
    --urls) urls=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
    ;;
*)
    usage >&2
    exit 2
    ;;
esac

if ! tn_has_network; then
    echo "status.sh: no testnet in $(tn_show "$TESTNET_DIR") (testnet/up.sh makes one)" >&2
    exit 1
fi

if [ "$urls" -eq 1 ]; then
    tn_nodes | cut -f 3
    exit 0
fi

n=$(tn_count)
unhealthy=0
printf '%-5s %-20s %-8s %-8s %-6s %-6s %s\n' node agency pid height view peers health
for line in $(tn_nodes | tr '\t' '|'); do
    k=${line%%|*}
    rest=${line#*|}
    agency=${rest%%|*}
    url=${line##*|}
    if pid=$(tn_node_pid "$k"); then
        :
    elif [ -f "$TESTNET_DIR/node$k/bexd.pid" ]; then
        pid=dead
    else
        pid=-
    fi
    status=$(tn_rpc "$url" status)
    height=$(tn_field "$status" height)
    view=$(tn_field "$status" view)
    peers=$(tn_field "$status" peers_connected)
    code=$(tn_health "$url")
    case $code in
    200) health=ok ;;
    503) health=unavailable ;;
    000 | '') health=down ;;
    *) health="http $code" ;;
    esac
    [ "$code" = 200 ] || unhealthy=1
    printf '%-5s %-20s %-8s %-8s %-6s %-6s %s\n' "$k" "$agency" "$pid" "${height:--}" "${view:--}" \
        "${peers:--}/$((n - 1))" "$health"
done
[ "$unhealthy" -eq 0 ] || exit 3
