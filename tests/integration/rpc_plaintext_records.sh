#!/bin/sh
# Records of an UNCONDITIONAL resource may carry plaintext fields (the record
# contract accepts them; bexload publishes such records). An access to such a
# record is answered by the owner's node (released or denied, not left open),
# and a verification of a plaintext field is answered by its value.
#
. "$(dirname "$0")/lib.sh"

it_setup rpc_plaintext_records
it_net 4
it_start_all
U=$(it_url 1)
T=city.traffic
P=city.police
RES=$T/load

# bexload registers the UNCONDITIONAL resource city.traffic/load and publishes
# plaintext records under the keys k-2, k-3, ...
it_load 0 5 --wait --timeout 20 >"$IT_DIR/load.out" 2>&1 || it_die "bexload: $(cat "$IT_DIR/load.out")"
"$BEXCTL" --node "$U" --key "$(it_key $P)" grant request "$RES" --fields data --purpose audit --expires 30 \
    >"$IT_DIR/out" 2>&1 || it_die "grant request: $(cat "$IT_DIR/out")"
value=$(it_rpc_result "$U" state.query "{\"contract\":\"record\",\"query\":\"get\",\"args\":{\"resource\":\"$RES\",\"key\":\"$(printf k-2 | od -An -tx1 | tr -d ' \n')\"}}" '.fields[0].plaintext')
it_log "record k-2 holds '$value'"

"$BEXCTL" --node "$U" --key "$(it_key $P)" --enc-key "$IT_NET/agencies/$P/enc.key" --timeout 15 \
    access "$RES" k-2 --purpose "read a plaintext record" >"$IT_DIR/access.out" 2>&1
rc=$?
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || it_fail "access to a plaintext record: exit $rc, want 0 or 3: $(cat "$IT_DIR/access.out")"
status=$(it_rpc_result "$U" state.query "{\"contract\":\"access\",\"query\":\"get\",\"args\":{\"id\":1}}" .status)
[ "$status" != ACCESS_OPEN ] || it_fail "the access to a plaintext record is still open: $(grep -h 'access' "$(it_logfile 0)" | tail -3)"
it_log "access: exit $rc, $status: $(cat "$IT_DIR/access.out" | tr '\n' ' ')"

"$BEXCTL" --node "$U" --key "$(it_key $P)" --timeout 15 verify "$RES" k-2 data "$value" >"$IT_DIR/verify.out" 2>&1 ||
    it_fail "verify: $(cat "$IT_DIR/verify.out")"
it_eq "verify the right plaintext value" "$(cat "$IT_DIR/verify.out")" yes
"$BEXCTL" --node "$U" --key "$(it_key $P)" --timeout 15 verify "$RES" k-2 data "not $value" >"$IT_DIR/verify.out" 2>&1 ||
    it_fail "verify: $(cat "$IT_DIR/verify.out")"
it_eq "verify a wrong plaintext value" "$(cat "$IT_DIR/verify.out")" no
it_done
