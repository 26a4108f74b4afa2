#!/bin/sh
# bexctl keygen and help: exit codes, messages, file mode, no overwrite.
set -u
B=${B:-build}
BEXCTL=$(pwd)/$B/bexctl
dir=$(mktemp -d /tmp/bex-keygen-XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
failures=0

check() { # check WHAT WANT_RC GOT_RC
    if [ "$2" -ne "$3" ]; then
        echo "FAIL: $1: exit $3, want $2"
        failures=$((failures + 1))
    fi
}
contains() { # contains WHAT FILE TEXT
    if ! grep -q -- "$3" "$2"; then
        echo "FAIL: $1: '$3' not in:"
        sed 's/^/  /' "$2"
        failures=$((failures + 1))
    fi
}

"$BEXCTL" --help >"$dir/out" 2>&1; check "--help" 0 $?
contains "--help lists keygen" "$dir/out" "keygen"
contains "--help lists help" "$dir/out" "help "
"$BEXCTL" help keygen >"$dir/out" 2>&1; check "help keygen" 0 $?
contains "help keygen" "$dir/out" "usage: bexctl keygen --out FILE"
"$BEXCTL" >"$dir/out" 2>&1; check "no command" 2 $?
"$BEXCTL" frobnicate >"$dir/out" 2>&1; check "unknown command" 2 $?
contains "unknown command" "$dir/out" "unknown command 'frobnicate'"
"$BEXCTL" help frobnicate >"$dir/out" 2>&1; check "help unknown" 2 $?
"$BEXCTL" keygen >"$dir/out" 2>&1; check "keygen without --out" 2 $?
contains "keygen without --out" "$dir/out" "--out FILE is required"
"$BEXCTL" keygen --out "$dir/k" --scrypt-log2n 9 >"$dir/out" 2>&1; check "cost too low" 2 $?
"$BEXCTL" keygen --out "$dir/k" --bogus >"$dir/out" 2>&1; check "unknown option" 2 $?
[ ! -e "$dir/k" ] || { echo "FAIL: a usage error created the file"; failures=$((failures + 1)); }

# No terminal and no BEX_PASSPHRASE: a clear failure, not a hang.
(unset BEX_PASSPHRASE; setsid "$BEXCTL" keygen --out "$dir/k" --scrypt-log2n 10 </dev/null >"$dir/out" 2>&1)
check "no passphrase source" 1 $?
contains "no passphrase source" "$dir/out" "BEX_PASSPHRASE"

BEX_PASSPHRASE=pw "$BEXCTL" keygen --out "$dir/k" --scrypt-log2n 10 >"$dir/out" 2>&1; check "keygen" 0 $?
contains "keygen prints the public key" "$dir/out" "^public_key: 0[23][0-9a-f]\{64\}$"
contains "keygen prints the key id" "$dir/out" "^key_id: *[0-9a-f]\{40\}$"
mode=$(stat -c %a "$dir/k")
[ "$mode" = 600 ] || { echo "FAIL: mode $mode, want 600"; failures=$((failures + 1)); }
pub=$(sed -n 's/^public_key: //p' "$dir/out")
contains "file holds the printed key" "$dir/k" "\"public_key\": \"$pub\""
cp "$dir/k" "$dir/k.orig"

BEX_PASSPHRASE=pw "$BEXCTL" keygen --out "$dir/k" --scrypt-log2n 10 >"$dir/out" 2>&1; check "no overwrite" 1 $?
contains "no overwrite" "$dir/out" "already exists; use --force"
cmp -s "$dir/k" "$dir/k.orig" || { echo "FAIL: file changed without --force"; failures=$((failures + 1)); }

BEX_PASSPHRASE=pw "$BEXCTL" keygen --out="$dir/k" --scrypt-log2n=10 --force --json >"$dir/out" 2>&1
check "--force --json" 0 $?
contains "--json" "$dir/out" "^{\"public_key\": \"0[23][0-9a-f]\{64\}\", \"key_id\": \"[0-9a-f]\{40\}\", \"file\": "
cmp -s "$dir/k" "$dir/k.orig" && { echo "FAIL: --force kept the old file"; failures=$((failures + 1)); }

BEX_PASSPHRASE=pw "$BEXCTL" keygen --out "$dir/missing/k" --scrypt-log2n 10 >"$dir/out" 2>&1
check "unwritable path" 1 $?
[ "$(wc -l <"$dir/out")" -eq 1 ] || { echo "FAIL: more than one error line"; failures=$((failures + 1)); }

left=$(ls "$dir" | grep -c tmp)
[ "$left" -eq 0 ] || { echo "FAIL: temporary files left behind"; failures=$((failures + 1)); }

[ "$failures" -eq 0 ] && echo "bexctl keygen: ok"
[ "$failures" -eq 0 ]
