#!/bin/sh
# bexctl's exit codes against a real network: 0 ok, 1 failure, 2 usage,
# 3 tx rejected (at submit) or failed (in its block), 4 node unreachable,
# 5 not found. Every failure says why in one line on stderr, prefixed with
# the command, and prints nothing on stdout (except --json, which prints the
# failed receipt).
. "$(dirname "$0")/lib.sh"

it_setup cli_exit_codes
it_net 4
it_start_all
U0=$(it_url 0)
U1=$(it_url 1)
T=city.traffic
P=city.police
A=$IT_NET/agencies
TK="--key $A/$T/officer1.key"
TK2="$TK --key $A/$T/officer2.key"
PK="--key $A/$P/officer1.key"
OUT=$IT_DIR/out
ERR=$IT_DIR/err
zero=0000000000000000000000000000000000000000000000000000000000000000

# code WANT WHAT ARGS...: bexctl exits WANT; unless 0, with one line on
# stderr naming the command and nothing on stdout (unless --json is given).
code() {
    _want=$1
    _what=$2
    shift 2
    "$BEXCTL" "$@" >"$OUT" 2>"$ERR"
    _rc=$?
    if [ "$_rc" -ne "$_want" ]; then
        it_fail "$_what: bexctl $*: exit $_rc, want $_want (stderr: $(head -c 300 "$ERR"); stdout: $(head -c 200 "$OUT"))"
        return 1
    fi
    [ "$_want" -ne 0 ] || return 0
    [ "$(wc -l <"$ERR")" -eq 1 ] || it_fail "$_what: want one line on stderr, got: $(cat "$ERR")"
    grep -q '^bexctl' "$ERR" || it_fail "$_what: stderr does not name bexctl: $(cat "$ERR")"
    case " $* " in
    *" --json "*) ;;
    *) [ ! -s "$OUT" ] || it_fail "$_what: output on stdout with exit $_rc: $(head -c 200 "$OUT")" ;;
    esac
}
says() { # says WHAT PATTERN: stderr matches
    it_match "$1" "$(cat "$ERR")" "$2"
}

# ---- 0
code 0 "status" --node "$U0" status
printf '{"id": "%s/plates", "title": "Plates", "share_type": "SHARE_CONDITIONAL", "fields": [{"name": "owner", "type": "FIELD_STRING"}]}' \
    "$T" >"$IT_DIR/res.json"
code 0 "catalog register" --node "$U0" $TK catalog register "$IT_DIR/res.json"
printf '{"id": "%s/open", "title": "Open", "share_type": "SHARE_UNCONDITIONAL", "fields": [{"name": "owner", "type": "FIELD_STRING"}]}' \
    "$T" | code 0 "catalog register from stdin" --node "$U0" $TK catalog register -
code 0 "grant request" --node "$U1" $PK grant request "$T/plates" --fields owner --purpose "case 9" --expires 3
gid=$(sed -n 's/^grant_id: *//p' "$OUT")
[ -n "$gid" ] || it_die "no grant id in: $(cat "$OUT")"

# ---- 2: usage
"$BEXCTL" --node "$U0" >"$OUT" 2>"$ERR"
it_eq "no command: the usage on stderr, exit 2" "$?" 2
it_match "no command: the usage" "$(head -n 1 "$ERR")" "^usage: bexctl"
code 2 "unknown command" --node "$U0" frobnicate
says "unknown command" "unknown command 'frobnicate'"
code 2 "unknown global option" --bogus status
code 2 "unknown option of a command" --node "$U0" status --bogus
code 2 "an extra argument" --node "$U0" status extra
code 2 "tx without an id" --node "$U0" tx
code 2 "tx with a bad id" --node "$U0" tx zz
says "tx with a bad id" "64 hex digits"
code 2 "block with a word" --node "$U0" block x
code 2 "block with a negative height" --node "$U0" block -1
code 2 "query of an unknown query" --node "$U0" query agency drop
code 2 "query with bad JSON" --node "$U0" query agency list '{bad'
code 2 "query with a wrong field" --node "$U0" query agency list '{"bogus": 1}'
code 2 "catalog without a subcommand" --node "$U0" catalog
code 2 "grant approve without --key" --node "$U0" grant approve "$gid"
says "grant approve without --key" "give --key"
code 2 "grant approve with a bad id" --node "$U0" $TK2 grant approve x
code 2 "grant request without --purpose" --node "$U1" $PK grant request "$T/plates" --fields owner --expires 3
code 2 "grant request with a bad mode" --node "$U1" $PK grant request "$T/plates" --fields owner --purpose x --expires 3 --mode write
code 2 "--timeout 0" --timeout 0 --node "$U0" status
code 2 "a node URL that is not one" --node nonsense status
code 2 "audit --key without --resource" --node "$U0" audit --key AB
code 2 "audit with a bad time" --node "$U0" audit --since yesterday
code 2 "help of an unknown command" help frobnicate
code 2 "the same key twice" --node "$U0" $TK $TK grant approve "$gid"

# ---- 1: other failures
code 1 "a missing passphrase file" --node "$U0" --passphrase-file "$IT_DIR/none" $TK2 grant approve "$gid"
BEX_PASSPHRASE=wrong code 1 "a wrong passphrase" --node "$U0" $TK2 grant approve "$gid"
code 1 "a missing keystore" --node "$U0" --key "$IT_DIR/none.key" grant approve "$gid"
code 1 "a missing resource file" --node "$U0" $TK catalog register "$IT_DIR/none.json"

# ---- 3: rejected at submit, or failed in its block
code 3 "a key of another agency (ESIG at submit)" --node "$U0" $TK --agency $P grant approve "$gid"
says "ESIG at submit" "^bexctl grant: transaction rejected: .*\\(ESIG\\)$"
code 3 "one officer short of the threshold" --node "$U0" $TK grant approve "$gid"
says "threshold" "failed at height [0-9]+: E[A-Z]+"
code 3 "a grant on one's own resource" --node "$U0" $TK grant request "$T/plates" --fields owner --purpose x --expires 1
says "own resource" "failed at height [0-9]+: EPERM"
code 3 "a field the resource lacks" --node "$U1" --key "$A/$P/officer2.key" --agency $P grant request "$T/plates" \
    --fields colour --purpose x --expires 1
code 3 "--json: escalating before the deadline" --node "$U1" $PK --json grant escalate "$gid"
jq -e '.status == "committed" and .code != 0 and .method == "escalate"' "$OUT" >/dev/null ||
    it_fail "--json prints the failed receipt: $(head -c 300 "$OUT")"
code 0 "grant reject" --node "$U0" $TK2 grant reject "$gid" --reason "no case"
code 3 "approving a rejected grant" --node "$U0" $TK2 grant approve "$gid"
says "approving a rejected grant" "ESTATE"
code 3 "access without a grant" --node "$U1" $PK --enc-key "$A/$P/enc.key" access "$T/open" AB-1 --purpose x
says "access without a grant" "failed at height [0-9]+: E[A-Z]+"
code 3 "withdrawing another agency's resource" --node "$U1" $PK catalog withdraw "$T/plates" --reason mine

# ---- 5: not found
code 5 "a hashed key without the index key" --node "$U1" $PK --enc-key "$A/$P/enc.key" access "$T/plates" AB-1 --purpose x
says "a hashed key without the index key" "has not shared the index key"
code 5 "an unknown tx" --node "$U0" tx "$zero"
code 5 "a block above the tip" --node "$U0" block 99999
code 5 "an unknown agency" --node "$U0" agency show city.nobody
code 5 "an unknown resource" --node "$U0" catalog show "$T/none"
code 5 "an unknown grant" --node "$U0" grant show 999
code 5 "a query for nothing" --node "$U0" query grant get '{"id": 999}'
code 5 "an unknown record" --node "$U0" --enc-key "$A/$T/enc.key" record show "$T/plates" AB-404
code 5 "--json: an unknown tx" --node "$U0" --json tx "$zero"

# ---- 4: unreachable
code 4 "a closed port" --node http://127.0.0.1:1 status
says "a closed port" "127.0.0.1:1"
code 4 "a closed port, signing" --node http://127.0.0.1:1 $TK2 grant approve "$gid"
it_stop 3
code 4 "a stopped node" --node "$(it_url 3)" status
code 4 "a stopped node, list" --node "$(it_url 3)" catalog list
it_done
