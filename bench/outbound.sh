#!/bin/bash
# bench/outbound.sh: handlers that make one outbound HTTP request per message (issue 12).
#   bench/outbound.sh            (make bench-outbound; also part of make bench)
# On loopback: Debian's nginx serves a small file as the backend (keep-alive, no access log);
# moonwire runs bench/apps/outbound (one mw.http.request per WebSocket message, reply after
# it) driven by build/wsload; OpenResty-style nginx (Debian's libnginx-mod-http-lua) runs a
# Lua handler per HTTP request doing ngx.location.capture to a proxy_pass location with
# upstream keep-alive to the same backend, driven by wrk. The baselines without the outbound
# call: moonwire's examples/echo, and a Lua handler that only answers 200. The same anchor
# also speaks WebSocket with Debian's lua-nginx-websocket (lua-resty-websocket), driven by
# wsload like moonwire: echo, and echo after the request. The servers run on
# CPU $SERVER_CPU, the backend and the load generators on CPU $LOAD_CPU. Rounds alternate the
# order of the four runs; medians go to the summary, every run's line to $WORK/runs.txt.
# Env: CONNS (50) concurrent connections/requests, ROUNDS (5), SECONDS_RUN (5), SERVER_CPU (0),
# LOAD_CPU (1). Ports 28081 (backend: fixed in bench/apps/outbound/app.lua), 28090, 28091.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-50} ROUNDS=${ROUNDS:-5} SECS=${SECONDS_RUN:-5}
SERVER_CPU=${SERVER_CPU:-0} LOAD_CPU=${LOAD_CPU:-1}
BACKEND_PORT=28081 MW_PORT=28090 OR_PORT=28091
MOONWIRE=build/moonwire WSLOAD=build/wsload
LUA_MOD=/usr/lib/nginx/modules/ngx_http_lua_module.so
NDK_MOD=/usr/lib/nginx/modules/ndk_http_module.so

for f in "$MOONWIRE" "$WSLOAD"; do
    [ -x "$f" ] || { echo "outbound: $f is missing: run make all build/wsload" >&2; exit 1; }
done
for f in /usr/sbin/nginx "$LUA_MOD" "$NDK_MOD" /usr/share/lua/5.1/nginx/websocket/server.lua \
         /usr/bin/wrk /usr/bin/taskset; do
    [ -e "$f" ] || { echo "outbound: $f is missing: make deps-bench installs nginx," \
        "libnginx-mod-http-lua, lua-nginx-websocket and wrk" >&2; exit 1; }
done
for p in $BACKEND_PORT $MW_PORT $OR_PORT; do
    if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
        echo "outbound: port $p is in use on 127.0.0.1: stop what listens there" >&2; exit 1
    fi
done

WORK=$(mktemp -d /tmp/moonwire-outbound.XXXXXX)
chmod 755 "$WORK"   # the backend's workers (www-data when run as root) read www/
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { # port, pid: up to 5 s for something to listen
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    echo "outbound: nothing listens on port $1 (logs in $WORK)" >&2; exit 1
}

# ---- the backend: a 100-byte file, keep-alive, no access log ---------------------------------
mkdir -p "$WORK/www" "$WORK/backend" "$WORK/openresty"
head -c 100 /dev/zero | tr '\0' 'x' >"$WORK/www/small.txt"
cat >"$WORK/backend/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $WORK/backend/nginx.pid; error_log $WORK/backend/error.log;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
    client_body_temp_path $WORK/backend; proxy_temp_path $WORK/backend;
    fastcgi_temp_path $WORK/backend; uwsgi_temp_path $WORK/backend; scgi_temp_path $WORK/backend;
    server { listen 127.0.0.1:$BACKEND_PORT; root $WORK/www; }
}
CONF
taskset -c "$LOAD_CPU" nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" \
    >"$WORK/backend/out.log" 2>&1 &
PIDS+=($!); wait_port $BACKEND_PORT $!

# ---- OpenResty-style: nginx + lua module, one worker ------------------------------------------
cat >"$WORK/openresty/nginx.conf" <<CONF
load_module $NDK_MOD; load_module $LUA_MOD;
daemon off; worker_processes 1; pid $WORK/openresty/nginx.pid;
error_log $WORK/openresty/error.log;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 1000000; keepalive_timeout 60s;
    client_body_temp_path $WORK/openresty; proxy_temp_path $WORK/openresty;
    fastcgi_temp_path $WORK/openresty; uwsgi_temp_path $WORK/openresty;
    scgi_temp_path $WORK/openresty;
    upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 100; }
    init_by_lua_block {
        local server = require "nginx.websocket.server"
        function ws_serve(outbound)
            local wb, err = server:new { timeout = 30000, max_payload_len = 65536 }
            if not wb then ngx.log(ngx.ERR, err) return ngx.exit(444) end
            while true do
                local data, typ = wb:recv_frame()
                if not data then
                    if wb.fatal then break end
                elseif typ == "close" then wb:send_close() break
                elseif typ == "ping" then wb:send_pong(data)
                elseif typ == "text" or typ == "binary" then
                    local ok = true
                    if outbound then
                        local res = ngx.location.capture("/backend/small.txt")
                        ok = res.status == 200
                        if not ok then wb:send_text("status " .. res.status) end
                    end
                    if ok then
                        if typ == "text" then wb:send_text(data) else wb:send_binary(data) end
                    end
                end
            end
        end
    }
    server {
        listen 127.0.0.1:$OR_PORT;
        location = /plain { content_by_lua_block { ngx.say(200) } }
        location = /out {
            content_by_lua_block {
                local res = ngx.location.capture("/backend/small.txt")
                if res.status ~= 200 then ngx.status = 502 end
                ngx.say(res.status)
            }
        }
        # The same over WebSocket: Debian's lua-nginx-websocket (lua-resty-websocket) frames
        # the messages in Lua on cosockets; /ws echoes, /ws-out makes the request first.
        location = /ws { content_by_lua_block { ws_serve(false) } }
        location = /ws-out { content_by_lua_block { ws_serve(true) } }
        location /backend/ {
            internal;
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
taskset -c "$SERVER_CPU" nginx -p "$WORK/openresty" -c "$WORK/openresty/nginx.conf" \
    >"$WORK/openresty/out.log" 2>&1 &
PIDS+=($!); wait_port $OR_PORT $!
curl -sS "http://127.0.0.1:$OR_PORT/out" >"$WORK/openresty/check.txt" 2>&1; grep -q "^200$" "$WORK/openresty/check.txt" || [ "$(command -v curl)" = "" ] || {
    echo "outbound: OpenResty's /out failed (logs in $WORK/openresty)" >&2; exit 1; }

# ---- one run of each kind; each prints "rps p50_us p99_us" ------------------------------------
to_us() { # wrk's "1.23ms" / "456.00us" / "1.01s"
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /ms$/) n *= 1000; else if (v ~ /us$/) n *= 1;
        else if (v ~ /s$/) n *= 1000000; printf "%.1f", n }'
}
wsload_run() { # url: prints "rps p50 p99"
    local out
    out=$(timeout -k 5 $((SECS + 20)) "$WSLOAD" echo --url "$1" \
        --conns "$CONNS" --depth 1 --size 32 --warmup 1 --duration "$SECS" --cpu "$LOAD_CPU" \
        --quiet 2>&1) || { echo "outbound: wsload failed against $1: $out" >&2; return 1; }
    echo "$out" | awk '/^RESULT/ { for (i = 1; i <= NF; i++) { split($i, kv, "=");
        v[kv[1]] = kv[2] } print v["msgs_per_sec"], v["p50_us"], v["p99_us"] }'
}
run_moonwire() { # app dir
    taskset -c "$SERVER_CPU" "$MOONWIRE" -c bench/outbound.conf.lua --port $MW_PORT "$1" \
        >"$WORK/moonwire.log" 2>&1 &
    local pid=$! rc=0; wait_port $MW_PORT $pid
    wsload_run "ws://127.0.0.1:$MW_PORT/" || rc=1
    kill $pid; wait $pid 2>/dev/null || true
    return $rc
}
run_openresty() { # location
    local url="http://127.0.0.1:$OR_PORT$1"
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null 2>&1   # warm-up
    local out
    out=$(timeout -k 5 $((SECS + 20)) taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" \
        --latency "$url" 2>&1)
    if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
        echo "outbound: wrk saw errors on $1: $out" >&2; exit 1; fi
    local rps p50 p99
    rps=$(echo "$out" | awk '/^Requests\/sec:/ { printf "%.0f", $2 }')
    p50=$(to_us "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
    p99=$(to_us "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
    echo "$rps $p50 $p99"
}

KINDS=(mw-echo mw-out or-plain or-out orws-echo orws-out)
echo "outbound bench: $ROUNDS round(s) x ${SECS}s, $CONNS connections x 1 in flight;" \
     "servers on CPU $SERVER_CPU, backend and load on CPU $LOAD_CPU; logs in $WORK"
for round in $(seq "$ROUNDS"); do
    order=("${KINDS[@]}")
    if [ $((round % 2)) = 0 ]; then order=(orws-out orws-echo or-out or-plain mw-out mw-echo); fi
    for k in "${order[@]}"; do
        case $k in
            mw-echo) r=$(run_moonwire examples/echo) ;;
            mw-out) r=$(run_moonwire bench/apps/outbound) ;;
            or-plain) r=$(run_openresty /plain) ;;
            or-out) r=$(run_openresty /out) ;;
            orws-echo) r=$(wsload_run "ws://127.0.0.1:$OR_PORT/ws") ;;
            orws-out) r=$(wsload_run "ws://127.0.0.1:$OR_PORT/ws-out") ;;
        esac
        echo "$round $k $r" | tee -a "$WORK/runs.txt"
    done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
med() { awk -v k="$1" -v c="$2" '$2 == k { print $c }' "$WORK/runs.txt" | median; }
echo
echo "medians of $ROUNDS round(s) ($(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)):"
printf '| server | requests/s | p50 (µs) | p99 (µs) | baseline req/s | baseline p99 (µs) | p99 added (µs) |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for s in mw:mw-out:mw-echo:moonwire orws:orws-out:orws-echo:OpenResty_WebSocket \
         or:or-out:or-plain:OpenResty_HTTP; do
    IFS=: read -r _ out base name <<<"$s"; name=${name//_/ }
    printf '| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n' "$name" "$(med $out 3)" \
        "$(med $out 4)" "$(med $out 5)" "$(med $base 3)" "$(med $base 5)" \
        "$(awk -v a="$(med $out 5)" -v b="$(med $base 5)" 'BEGIN { print a - b }')"
done
