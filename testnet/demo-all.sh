#!/bin/sh
echo "make demo: the local testnet is not built yet (see the open issues)." >&2
exit 1
