#!/bin/sh
# Prints the MB/s table of the last `cargo bench -p resilis-core --bench decode`
# run from criterion's estimates (median time per pass over the corpus,
# which shrugs off the noise of a shared machine better than the mean).
# Usage: sh core/benches/mbps.sh [criterion dir]
dir=${1:-${CARGO_TARGET_DIR:-target}/criterion}
for group in resp3_mixed resp2_mixed resp2_hgetall_13mb resp3_map_13mb; do
    [ -d "$dir/$group" ] || continue
    echo "$group"
    for bench in "$dir/$group"/*/new; do
        name=$(sed -n 's/.*"function_id":"\([^"]*\)".*/\1/p' "$bench/benchmark.json")
        bytes=$(sed -n 's/.*"Bytes":\([0-9]*\).*/\1/p' "$bench/benchmark.json")
        ns=$(sed -n 's/.*"median":{[^}]*},"point_estimate":\([0-9.e+-]*\).*/\1/p' "$bench/estimates.json")
        awk -v n="$name" -v b="$bytes" -v t="$ns" 'BEGIN { printf "  %-32s %9.1f MB/s\n", n, b / t * 1000 }'
    done
done
