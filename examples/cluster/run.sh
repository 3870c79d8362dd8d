#!/bin/sh
# make cluster: a redis-server and two moonwire nodes serving the chat example, sharing topics
# through Redis. Open http://127.0.0.1:8081/ and http://127.0.0.1:8082/ side by side (or put
# examples/cluster/nginx.conf in front of them: http://127.0.0.1:8080/). Ctrl-C stops all.
set -e
BIN=${BIN:-build/moonwire}
REDIS_PORT=${REDIS_PORT:-6390}
dir=$(mktemp -d)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    >"$dir/redis.log" 2>&1 &
redis=$!
trap 'kill $redis $a $b 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT INT TERM
sleep 0.3
"$BIN" --port 8081 --admin 9081 --redis "redis://127.0.0.1:$REDIS_PORT" examples/chat &
a=$!
"$BIN" --port 8082 --admin 9082 --redis "redis://127.0.0.1:$REDIS_PORT" examples/chat &
b=$!
echo "redis on $REDIS_PORT; moonwire nodes on http://127.0.0.1:8081/ and :8082/ (admin 9081, 9082)"
wait $a $b
