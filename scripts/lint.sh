#!/bin/sh
# Keeps the module boundaries of STYLE.md true: consensus/ is a pure state
# machine and contracts/ is deterministic.
set -u
bad=0
check() {
    dir=$1 pattern=$2 what=$3
    hits=$(grep -nE "$pattern" "$dir"/*.c "$dir"/*.h 2>/dev/null)
    if [ -n "$hits" ]; then
        echo "lint: $dir must not use $what:"
        echo "$hits" | sed 's/^/  /'
        bad=1
    fi
}
check consensus '#include *<(uv|lmdb|openssl/[a-z_]+|pthread|sys/socket|time|sys/time)\.h>' "I/O, clock or crypto headers"
check consensus '\b(time|rand|srand|random|gettimeofday|clock_gettime|malloc|calloc|realloc|free|printf|fprintf)\(' "clock, randomness, allocation or printing"
check contracts '#include *<(uv|lmdb|pthread|sys/socket|time|sys/time|math)\.h>' "I/O, clock or math headers"
check contracts '\b(time|rand|srand|random|gettimeofday|clock_gettime|fopen|printf|fprintf)\(' "clock, randomness or I/O"
check contracts '\b(float|double)\b' "floating point"
[ $bad -eq 0 ] && echo "lint: ok"
exit $bad
