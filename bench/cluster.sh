#!/bin/sh
# Two nodes through Redis (issue 14): broadcast from a publisher on node A to subscribers on
# node B, against the same broadcast within one node without Redis. bench/apps/pubsub, driven
# by build/wsload broadcast (every message carries its sequence and send time: wsload counts
# lost, duplicated and reordered deliveries and measures latency).
#
#   bench/cluster.sh                     SUBS=100 RATE=2000 SIZE=64 SECS=4 bench/cluster.sh
#
# Publishes at a fixed RATE: with a window, the publisher (subscribed on its own node, where
# its copy arrives at once) would run ahead of node B and measure the queue, not the path.
# Prints one line per scenario: deliveries per second, publishes, p50/p99 latency.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-build/moonwire}
WSLOAD=${WSLOAD:-build/wsload}
SUBS=${SUBS:-100}
RATE=${RATE:-2000}
SIZE=${SIZE:-64}
SECS=${SECS:-4}
tmp=$(mktemp -d /tmp/moonwire-cluster.XXXXXX)
pids=""
trap 'for p in $pids; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1)).close()" \
            2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on $1" >&2
    return 1
}
node() { # port [args...]
    port=$1
    shift
    "$BIN" -c bench/moonwire-bench.conf.lua --log-level warn --port "$port" "$@" \
        bench/apps/pubsub >"$tmp/node$port.log" 2>&1 &
    pids="$pids $!"
    wait_port "$port"
}
report() { # label file
    awk -v label="$1" '/RESULT/ { r = $0 } END {
        n = split(r, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
        printf "%-28s deliveries_per_sec=%s publishes=%s p50_us=%s p99_us=%s errors=%s\n",
               label, v["deliveries_per_sec"], v["publishes"], v["p50_us"], v["p99_us"],
               v["errors"] }' "$2"
}

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
pids="$pids $!"
wait_port "$rport"

# One node, no Redis.
a=$(free_port)
node "$a"
"$WSLOAD" broadcast --url "ws://127.0.0.1:$a/" --subscribers "$SUBS" --rate "$RATE" \
    --size "$SIZE" --duration "$SECS" --quiet >"$tmp/one" 2>&1 || true
report "one node" "$tmp/one"

# Two nodes through Redis: subscribers on B, the publisher on A.
a=$(free_port)
b=$(free_port)
node "$a" --redis "redis://127.0.0.1:$rport"
node "$b" --redis "redis://127.0.0.1:$rport"
sleep 0.3
"$WSLOAD" broadcast --url "ws://127.0.0.1:$b/" --publish-url "ws://127.0.0.1:$a/" \
    --subscribers "$SUBS" --rate "$RATE" --size "$SIZE" --duration "$SECS" --quiet \
    >"$tmp/two" 2>&1 || true
report "two nodes through Redis" "$tmp/two"
