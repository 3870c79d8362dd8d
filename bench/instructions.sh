#!/bin/sh
# Instructions the server spends per message, counted by callgrind: a measure of a change's
# cost that, unlike messages per second, does not move with the machine's noise.
#
#   bench/instructions.sh BINARY [BINARY...]
#
# For each binary: echo (4 connections x 4 in flight x 32 B, 2 s) and fan-out (200 subscribers,
# 40 publishes/s, 32 B, 3 s) under callgrind, and an idle start and stop to subtract; prints
# user-space instructions per echoed message and per delivered message (the server logs only
# warnings, so per-connection log lines do not count as message cost). Needs valgrind and
# build/wsload (make build/wsload). Slow (valgrind): about a minute per binary.
set -eu
cd "$(dirname "$0")/.."
WSLOAD=${WSLOAD:-build/wsload}
tmp=$(mktemp -d /tmp/moonwire-ir.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT

# run BIN APP OUTNAME [wsload args...]: total instructions of the server for that load.
run() {
    bin=$1 app=$2 name=$3
    shift 3
    # A free port picked here: with --log-level warn the server does not log the one it got.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.cg" "$bin" \
        -c bench/moonwire-bench.conf.lua --log-level warn --port "$port" "$app" \
        >"$tmp/$name.log" 2>&1 &
    pid=$!
    up=
    for _ in $(seq 1 200); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close()" \
            2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    [ -n "$up" ] || { echo "server did not start: $tmp/$name.log" >&2; exit 1; }
    if [ $# -gt 0 ]; then
        "$WSLOAD" "$@" --url "ws://127.0.0.1:$port/" --quiet >"$tmp/$name.result"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    sed -n 's/^summary: *//p' "$tmp/$name.cg"
}

field() { sed -n "s/.*[ ]$1=\([0-9]*\).*/\1/p" "$2"; }

for bin in "$@"; do
    idle=$(run "$bin" examples/echo idle)
    echo_ir=$(run "$bin" examples/echo echo echo --conns 4 --depth 4 --size 32 --warmup 0 \
        --duration 2)
    echoed=$(( $(field msgs "$tmp/echo.result") ))
    fan_ir=$(run "$bin" bench/apps/pubsub fan broadcast --subscribers 200 --size 32 --rate 40 \
        --warmup 0 --duration 3)
    delivered=$(( $(field deliveries "$tmp/fan.result") ))
    echo "$bin: $(( (echo_ir - idle) / echoed )) instructions per echoed message" \
        "($echoed messages); $(( (fan_ir - idle) / delivered )) per delivered message" \
        "($delivered deliveries)"
done
