#!/bin/sh
# bexd test 4: strangers at the peer-to-peer port are refused and leave the
# network unharmed, while it is under load:
#   - a TLS 1.3 client presenting a fresh Ed25519 key that genesis does not
#     list (openssl s_client), and one presenting no certificate at all;
#   - plain TCP clients sending garbage (an HTTP request, random bytes, a
#     huge frame length), and one that connects and says nothing;
#   - twenty garbage clients at once.
# Each is disconnected, the node logs the refusal, every node stays up and
# connected to all its peers, and the load commits on all four.
. "$(dirname "$0")/lib.sh"

it_setup node_refuse
command -v openssl >/dev/null 2>&1 || it_die "this test needs openssl"
it_net 4
it_start_all

openssl genpkey -algorithm ed25519 -out "$IT_DIR/intruder.key" 2>"$IT_DIR/openssl.err" &&
    openssl req -new -x509 -key "$IT_DIR/intruder.key" -subj /CN=intruder -days 1 \
        -out "$IT_DIR/intruder.crt" 2>>"$IT_DIR/openssl.err" ||
    it_die "openssl cannot make a key: $(cat "$IT_DIR/openssl.err")"

h0=$(it_status 0 height)
it_load_bg 1 "$(it_scale 2000)" "$IT_DIR/load.out" --batch 50 --rate "$(it_scale 400)" --wait --timeout 40

# log_has K PATTERN: node K's log has a line matching PATTERN.
log_has() {
    grep -Eq -- "$2" "$(it_logfile "$1")"
}

# An Ed25519 key that genesis does not list: the TLS handshake fails.
p2p0=$(it_p2p 0)
timeout 15 openssl s_client -connect "$p2p0" -tls1_3 -cert "$IT_DIR/intruder.crt" -key "$IT_DIR/intruder.key" \
    -ign_eof </dev/null >"$IT_DIR/sclient.out" 2>&1
rc=$?
[ "$rc" -ne 124 ] || it_fail "the node kept the unlisted TLS key's link open for 15 s"
[ "$rc" -ne 0 ] || it_fail "openssl s_client with an unlisted key succeeded: $(tail -5 "$IT_DIR/sclient.out")"
it_match "s_client sees the refusal" "$(cat "$IT_DIR/sclient.out")" "alert|handshake failure|error"
it_wait 10 "node0 logs the unlisted key" log_has 0 "inbound 127\.0\.0\.1:[0-9]+: certificate key is not listed.*\(bad_key\)" ||
    it_log "node0 log: $(tail -5 "$(it_logfile 0)")"

# No client certificate at all: the node requires one.
timeout 15 openssl s_client -connect "$(it_p2p 2)" -tls1_3 -ign_eof </dev/null >"$IT_DIR/sclient2.out" 2>&1
rc=$?
[ "$rc" -ne 124 ] || it_fail "the node kept a link without a certificate open for 15 s"
[ "$rc" -ne 0 ] || it_fail "openssl s_client without a certificate succeeded"
it_wait 10 "node2 logs the missing certificate" log_has 2 "inbound 127\.0\.0\.1:[0-9]+: .*\(handshake\)" ||
    it_log "node2 log: $(tail -5 "$(it_logfile 2)")"

# Plain TCP garbage.
p2p3=$(it_p2p 3)
"$RAWTCP" --connect "$p2p3" --text 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' --wait-close 10000 \
    2>"$IT_DIR/raw1.err"
it_eq "an HTTP request at the p2p port is dropped ($(cat "$IT_DIR/raw1.err"))" $? 0
"$RAWTCP" --connect "$p2p3" --garbage 65536 --wait-close 10000 2>"$IT_DIR/raw2.err"
it_eq "64 KiB of garbage is dropped ($(cat "$IT_DIR/raw2.err"))" $? 0
"$RAWTCP" --connect "$p2p3" --hex ffffffff16030100 --garbage 300 --wait-close 10000 2>"$IT_DIR/raw3.err"
it_eq "a huge frame length is dropped ($(cat "$IT_DIR/raw3.err"))" $? 0
it_wait 10 "node3 logs the failed handshakes" log_has 3 "inbound 127\.0\.0\.1:[0-9]+: TLS handshake.*\(handshake\)" ||
    it_log "node3 log: $(tail -5 "$(it_logfile 3)")"

# Twenty garbage clients at once, and one that says nothing (dropped after
# the handshake deadline).
"$RAWTCP" --connect "$(it_p2p 1)" --wait-close 30000 2>"$IT_DIR/silent.err" &
silent=$!
it_bg "$silent"
i=0
pids=""
while [ "$i" -lt 20 ]; do
    "$RAWTCP" --connect "$(it_p2p $((i % 4)))" --garbage $((1000 + i * 997)) --wait-close 10000 2>"$IT_DIR/flood.$i.err" &
    pids="$pids $!"
    it_bg "$!"
    i=$((i + 1))
done
closed=0
for p in $pids; do
    wait "$p" && closed=$((closed + 1))
done
it_eq "garbage clients dropped" "$closed" 20
wait "$silent"
it_eq "a silent client is dropped ($(cat "$IT_DIR/silent.err"))" $? 0
it_wait 10 "node1 logs the silent client" log_has 1 "no TLS handshake within" || true

# The network is unharmed: the load finishes and commits everywhere, every
# node is up and connected to all its peers.
it_reap "$IT_LOAD_PID" || it_fail "the load failed: $(cat "$IT_DIR/load.out")"
it_log "load: $(tr '\n' ' ' <"$IT_DIR/load.out")"
it_wait 20 "all four agree after the load" it_same_tip 0 1 2 3 || it_show_tips
for k in 0 1 2 3; do
    it_running "$k" || it_fail "node$k exited"
    it_connected "$k" || it_fail "node$k lost a peer: $(it_status "$k" peers_connected)"
done
h1=$(it_status 0 height)
[ "$h1" -gt "$h0" ] || it_fail "no block committed during the test (height $h0 -> $h1)"
grep -h "inbound 127" "$IT_NET"/node*/bexd.log | sed 's/^[^ ]* /  /' | sort | uniq -c | sort -rn | head -8
it_done
