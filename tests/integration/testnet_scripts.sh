#!/bin/sh
# testnet/up.sh, status.sh and down.sh against stand-in nodes: the real
# bexctl lays out the network, and small scripts play bexd (one that runs
# until signalled, one that ignores SIGTERM, one that fails at start, and,
# when python3 is there, one that serves GET /health and the status RPC).
# The network lives in a temporary TESTNET_DIR, never in testnet/run.
set -u
B=${B:-build}
root=$(pwd -P)
work=$(mktemp -d /tmp/bex-testnet-it-XXXXXX)
fakeb=$work/build
export TESTNET_DIR="$work/run"
failures=0
bystander=""

# Stops every stand-in still running, even if down.sh is broken: any
# process whose command line names a config of this test's network.
cleanup() {
    B=$fakeb BEX_DOWN_TIMEOUT=1 sh "$root/testnet/down.sh" >/dev/null 2>&1
    for p in /proc/[0-9]*; do
        case $(tr '\0' ' ' 2>/dev/null <"$p/cmdline") in
        *"$TESTNET_DIR/node"*) kill -s KILL "${p#/proc/}" 2>/dev/null ;;
        esac
    done
    [ -n "$bystander" ] && kill "$bystander" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
check() { # check WHAT WANT_RC GOT_RC
    [ "$2" -eq "$3" ] || fail "$1: exit $3, want $2 (output: $(tr '\n' '|' <"$work/out"))"
}
contains() { # contains WHAT TEXT
    grep -q -- "$2" "$work/out" || fail "$1: '$2' not in: $(tr '\n' '|' <"$work/out")"
}
up() { B=$fakeb sh "$root/testnet/up.sh" "$@" >"$work/out" 2>&1; }
down() { B=$fakeb sh "$root/testnet/down.sh" "$@" >"$work/out" 2>&1; }
status() { B=$fakeb sh "$root/testnet/status.sh" "$@" >"$work/out" 2>&1; }
pid_of() { cat "$TESTNET_DIR/node$1/bexd.pid" 2>/dev/null; }
# alive PID: true while PID runs; an exited, unreaped process reads an empty command line.
alive() { kill -0 "$1" 2>/dev/null && [ -n "$(tr -d '\0' 2>/dev/null <"/proc/$1/cmdline")" ]; }
# stop_node K: stops node K behind the scripts' back and waits until it is gone.
stop_node() {
    _p=$(pid_of "$1")
    _n=0
    kill -s TERM -- "-$_p"
    while alive "$_p" && [ "$_n" -lt 50 ]; do
        sleep 0.1
        _n=$((_n + 1))
    done
    alive "$_p" && kill -s KILL -- "-$_p"
}

# fake NAME: makes the stand-in called NAME the bexd of the build.
fake() {
    cp "$work/$1" "$fakeb/bexd"
    chmod +x "$fakeb/bexd"
}

mkdir -p "$fakeb"
ln -s "$root/$B/bexctl" "$fakeb/bexctl"
cat >"$work/sleeper" <<'EOF'
#!/bin/sh
trap 'exit 0' TERM
while :; do sleep 1; done
EOF
cat >"$work/stubborn" <<'EOF'
#!/bin/sh
trap '' TERM
while :; do sleep 1; done
EOF
cat >"$work/broken" <<'EOF'
#!/bin/sh
echo "stand-in bexd: cannot open $2" >&2
exit 1
EOF

# ---- arguments
up 3; check "up.sh 3" 2 $?
up 17; check "up.sh 17" 2 $?
up four; check "up.sh four" 2 $?
up 4 5; check "up.sh 4 5" 2 $?
down --bogus; check "down.sh --bogus" 2 $?
status --bogus; check "status.sh --bogus" 2 $?
status; check "status.sh without a network" 1 $?
contains "status.sh without a network" "no testnet"
down; check "down.sh without a network" 0 $?
up; check "up.sh without bexd" 1 $?
contains "up.sh without bexd" "is not built"
[ -e "$TESTNET_DIR" ] && fail "argument errors created $TESTNET_DIR"

# ---- a node that fails at start fails up.sh at once, with its log
fake broken
BEX_UP_TIMEOUT=30 up; check "up.sh with a failing node" 1 $?
contains "up.sh creates the network" "creating a 4-node network"
contains "failing node reported" "node[0-3] exited"
contains "its log is shown" "stand-in bexd: cannot open"
[ -f "$TESTNET_DIR/genesis.json" ] || fail "up.sh did not create the network"
[ "$(wc -l <"$TESTNET_DIR/agencies.txt")" -eq 4 ] || fail "agencies.txt does not list 4 nodes"
up 5; check "up.sh 5 over a 4-node network" 1 $?
contains "node count mismatch" "holds a 4-node network"

# ---- nodes without RPC: up.sh times out, leaves them running, down.sh stops them
fake sleeper
BEX_UP_TIMEOUT=2 up; check "up.sh timeout" 1 $?
contains "timeout reported" "not up after 2s"
contains "state per node" "node3: health 000"
for k in 0 1 2 3; do
    pid=$(pid_of $k)
    { [ -n "$pid" ] && alive "$pid"; } || fail "node$k is not running after up.sh"
done
status; check "status.sh with nodes down" 3 $?
contains "status.sh header" "^node  agency"
contains "status.sh row" "^2 *city.tax *$(pid_of 2) *- *- *-/3 *down"
status --urls; check "status.sh --urls" 0 $?
[ "$(grep -c '^http://127.0.0.1:[0-9]*$' "$work/out")" -eq 4 ] || fail "status.sh --urls: $(cat "$work/out")"

# node3 dies and its pid is reused by some other process: the pid file is
# stale, and that process is left alone.
stop_node 3
sleep 60 &
bystander=$!
echo "$bystander" >"$TESTNET_DIR/node3/bexd.pid"
p0=$(pid_of 0)
status; check "status.sh with a stale pid" 3 $?
contains "status.sh: a stale pid is dead" "^3 *city.health *dead "
down; check "down.sh" 0 $?
contains "down.sh stops node0" "node0: stopping (pid $p0)"
contains "down.sh skips a stale pid" "node3: not running (stale pid file removed)"
alive "$bystander" || fail "down.sh killed a process that is not a node"
alive "$p0" && fail "node0 (pid $p0) still runs after down.sh"
ls "$TESTNET_DIR"/node*/bexd.pid >/dev/null 2>&1 && fail "pid files left after down.sh"
[ -f "$TESTNET_DIR/genesis.json" ] || fail "down.sh without --wipe removed the network"

# ---- a node that ignores SIGTERM gets SIGKILL after the deadline
fake stubborn
BEX_UP_TIMEOUT=1 up; check "up.sh with stubborn nodes" 1 $?
p2=$(pid_of 2)
BEX_DOWN_TIMEOUT=1 down; check "down.sh with stubborn nodes" 0 $?
contains "SIGKILL" "node2: still running after 1s, sending SIGKILL"
alive "$p2" && fail "stubborn node2 (pid $p2) survived down.sh"

# ---- nodes that answer: up.sh waits until all see their peers
if command -v python3 >/dev/null 2>&1; then
    cat >"$work/rpc.py" <<'EOF'
import json, os, socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

config = sys.argv[sys.argv.index("--config") + 1]
with open(config) as f:
    cfg = json.load(f)
with open(os.path.join(os.path.dirname(config), cfg["genesis"])) as f:
    genesis = json.load(f)
me = cfg["node_index"]

def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)

p2p = socket.socket()
p2p.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
p2p.bind(addr(cfg["listen"]))
p2p.listen(16)

def serve_p2p():
    while True:
        p2p.accept()[0].close()

def peers():
    n = 0
    for i, node in enumerate(genesis["nodes"]):
        try:
            if i != me:
                socket.create_connection(addr(node["address"]), timeout=0.5).close()
                n += 1
        except OSError:
            pass
    return n

class Handler(BaseHTTPRequestHandler):
    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self.reply(200, {"status": "ok", "height": 0})
        else:
            self.reply(404, {})

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if req.get("method") != "status":
            self.reply(200, {"jsonrpc": "2.0", "id": req.get("id"), "error": {"code": -32601, "message": "?"}})
            return
        result = {"chain_id": genesis["chain_id"], "node_index": me, "height": 0, "view": 7,
                  "view_active": True, "peers_connected": peers(), "peers_total": len(genesis["nodes"]) - 1}
        self.reply(200, {"jsonrpc": "2.0", "id": req.get("id"), "result": result})

    def log_message(self, *args):
        pass

threading.Thread(target=serve_p2p, daemon=True).start()
print("stand-in bexd: node %d serving" % me, flush=True)
ThreadingHTTPServer(addr(cfg["rpc"]), Handler).serve_forever()
EOF
    printf '#!/bin/sh\nexec python3 %s/rpc.py "$@"\n' "$work" >"$work/answering"
    fake answering
    BEX_UP_TIMEOUT=30 up; check "up.sh with answering nodes" 0 $?
    contains "up.sh reports the nodes" "node3: health 200, height 0, peers 3/3"
    contains "up.sh points at the logs" "logs: .*/nodeK/bexd.log"
    contains "up.sh suggests bexctl status" "bexctl --node http://127.0.0.1:[0-9]* status$"
    contains "up.sh suggests agency list" "bexctl --node http://127.0.0.1:[0-9]* agency list$"
    contains "up.sh suggests catalog list" "bexctl --node http://127.0.0.1:[0-9]* catalog list$"
    status; check "status.sh with answering nodes" 0 $?
    contains "status.sh row" "^1 *city.police *$(pid_of 1) *0 *7 *3/3 *ok$"

    # Re-running up.sh leaves running nodes alone and restarts a stopped one.
    p0=$(pid_of 0)
    p1=$(pid_of 1)
    stop_node 1
    status; check "status.sh with node1 stopped" 3 $?
    contains "status.sh shows node1 dead" "^1 *city.police *dead *- *- *-/3 *down$"
    BEX_UP_TIMEOUT=30 up; check "up.sh restarts node1" 0 $?
    contains "node0 left alone" "node0: already running (pid $p0)"
    contains "one node started" "started 1 node(s)"
    [ "$(pid_of 0)" = "$p0" ] || fail "node0 was restarted"
    [ "$(pid_of 1)" != "$p1" ] || fail "node1 was not restarted"
    down; check "down.sh with answering nodes" 0 $?
    alive "$p0" && fail "node0 (pid $p0) still runs after down.sh"
else
    echo "skipped: nodes that answer (no python3)"
fi

down --wipe; check "down.sh --wipe" 0 $?
[ -e "$TESTNET_DIR" ] && fail "down.sh --wipe left $TESTNET_DIR"
mkdir -p "$TESTNET_DIR/precious"
down --wipe; check "down.sh --wipe on a directory that is not a testnet" 1 $?
[ -d "$TESTNET_DIR/precious" ] || fail "down.sh --wipe deleted a directory that is not a testnet"

[ "$failures" -eq 0 ] && echo "testnet scripts: ok"
[ "$failures" -eq 0 ]
