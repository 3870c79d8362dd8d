#!/bin/sh
# How echo throughput scales with worker threads (issue 13): moonwire with --workers N for each
# N given, pinned to CPUs 0..N-1, driven by G load generators (build/wsload) pinned to the CPUs
# after the server's, each with C connections x D messages in flight of 32 bytes.
#
#   bench/workers.sh [N...]          (default: 1 2 4 8)
#   GENS=6 CONNS=100 DEPTH=16 SECS=4 BIN=build/moonwire bench/workers.sh 1 2 4 8
#
# Prints one line per N: the sum of the generators' messages per second, and their worst p99.
# Needs as many CPUs as the largest N plus GENS; on a 2-core machine it skips every N (there,
# bench/run.lua with BENCH_WORKERS=1 and 2 gives the 1 vs 2 workers figure: bench/RESULTS.md).
# No machine with more cores has run it yet.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/moonwire}
WSLOAD=${WSLOAD:-build/wsload}
GENS=${GENS:-6}
CONNS=${CONNS:-100}
DEPTH=${DEPTH:-16}
SECS=${SECS:-4}
CPUS=$(nproc)
[ $# -gt 0 ] || set -- 1 2 4 8
tmp=$(mktemp -d /tmp/moonwire-workers.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

for n in "$@"; do
    if [ $((n + GENS)) -gt "$CPUS" ]; then
        echo "workers=$n: needs $((n + GENS)) CPUs, this machine has $CPUS; skipped"
        continue
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    taskset -c 0-$((n - 1)) "$BIN" -c bench/moonwire-bench.conf.lua --log-level warn \
        --port "$port" --workers "$n" examples/echo >"$tmp/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" \
            2>/dev/null && break
        sleep 0.05
    done
    g=0
    while [ $g -lt "$GENS" ]; do
        "$WSLOAD" echo --url "ws://127.0.0.1:$port/" --conns "$CONNS" --depth "$DEPTH" \
            --duration "$SECS" --warmup 1 --cpu $((n + g)) --quiet >"$tmp/gen$g" 2>&1 &
        g=$((g + 1))
    done
    while [ "$(grep -l RESULT "$tmp"/gen* 2>/dev/null | wc -l)" -lt "$GENS" ]; do
        kill -0 $pid 2>/dev/null || break
        sleep 0.2
    done
    sleep 0.2
    kill -TERM $pid 2>/dev/null || true
    wait $pid 2>/dev/null || true
    cat "$tmp"/gen* | awk -v n="$n" -v gens="$GENS" '
        /RESULT/ { for (i = 1; i <= NF; i++) { split($i, kv, "=");
                     if (kv[1] == "msgs_per_sec") sum += kv[2];
                     if (kv[1] == "p99_us" && kv[2] > p99) p99 = kv[2];
                     if (kv[1] == "errors") err += kv[2]; } got++ }
        END { printf "workers=%d generators=%d/%d msgs_per_sec=%.0f worst_p99_us=%.0f errors=%d\n",
                     n, got, gens, sum, p99, err }'
    rm -f "$tmp"/gen*
done
