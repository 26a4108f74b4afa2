#!/bin/sh
# Installs the Debian packages bex needs, only those that are missing.
# Exit status: 0 when everything is present afterwards, 1 otherwise.
set -u

PKGS="libsecp256k1-dev liblmdb-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler
libssl-dev libjansson-dev libhttp-parser-dev libcmocka-dev pkg-config curl"
[ "${BEX_DEPS_EXTRA:-}" ] && PKGS="$PKGS $BEX_DEPS_EXTRA"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: apt-get not found; install these packages by hand:$missing" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "deps.sh: not root; install these packages by hand:$missing" >&2
        echo "  apt-get install$missing" >&2
        exit 1
    fi
else
    SUDO=""
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || { echo "deps.sh: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null || {
    echo "deps.sh: apt-get install failed for:$missing" >&2; exit 1; }
echo "deps.sh: installed$missing"
