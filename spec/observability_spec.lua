-- Issue 11: see inside a running server. The admin listener's /metrics checked by Prometheus'
-- own promtool and moved by a scripted scenario by exactly the expected amounts; histogram
-- invariants; mw.metrics with its series cap and across a reload; the token; /readyz during a
-- drain; /livez while a handler blocks the loop; access lines and JSON logs.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"

-- GET path on the admin listener. Returns status, body, headers.
local function get(port, path, headers)
    local req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"):format(path, port,
        table.concat(headers or {}, ""))
    local resp = assert(ws.http(port, req, { timeout = 5 }))
    return resp.status, resp.body, resp.headers
end

local function samples(body) return helpers.metric_samples(body) end

local function promtool_check(body, dir)
    local path = dir .. "/scrape.txt"
    local f = assert(io.open(path, "w"))
    f:write(body)
    f:close()
    local p = io.popen("promtool check metrics < " .. path .. " 2>&1; echo \"rc=$?\"")
    local out = p:read("a")
    p:close()
    return out
end

local APP = [[
local app = {}
local joins = mw.metrics.counter("joins", "Rooms joined.", { "room" })
local players = mw.metrics.gauge("players", "Players online.")
local tick = mw.metrics.histogram("tick_seconds", "Tick time.", { 0.001, 0.01, 0.1 })
function app.open(conn) players:inc(1) end
function app.close(conn) players:inc(-1) end
function app.message(conn, data)
    if data == "fail" then error("failing on purpose") end
    if data == "spin" then local t = os.clock() while os.clock() - t < 12 do end end
    if data:match("^join ") then joins:inc(1, { data:sub(6) }) end
    if data == "tick" then tick:observe(0.005) end
    if data == "many" then
        for i = 1, 1100 do
            local ok, err = pcall(joins.inc, joins, 1, { "r" .. i })
            if not ok then conn:send("cap: " .. tostring(err)) return end
        end
        conn:send("no cap")
        return
    end
    conn:send(data)
end
return app
]]

describe("the admin listener", function()
    local dir, srv, admin

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir, args = { "--admin", "0" } }
        admin = tonumber(srv:wait_log("admin listening on http://127%.0%.0%.1:(%d+)/", 5))
        assert(admin, "no admin listening line in the log:\n" .. srv:log())
    end)

    teardown(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    it("serves /metrics that promtool accepts, with every family the issue names", function()
        local status, body, headers = get(admin, "/metrics")
        assert.are.equal(200, status)
        assert.truthy(headers["content-type"]:find("text/plain; version=0.0.4", 1, true))
        local out = promtool_check(body, dir)
        assert.truthy(out:find("rc=0", 1, true), "promtool check metrics:\n" .. out)
        for _, family in ipairs {
            "moonwire_connections", "moonwire_connections_accepted_total",
            "moonwire_handshakes_refused_total", "moonwire_messages_received_total",
            "moonwire_messages_sent_total", "moonwire_bytes_received_total",
            "moonwire_bytes_sent_total", "moonwire_closes_total",
            "moonwire_slow_consumer_closes_total", "moonwire_backpressure_pauses_total",
            "moonwire_handler_seconds", "moonwire_handler_failures_total",
            "moonwire_lua_memory_bytes", "moonwire_reloads_total", "moonwire_timers",
            "moonwire_publishes_total", "moonwire_deliveries_total", "moonwire_topics",
            "moonwire_send_queue_bytes", "moonwire_loop_lag_seconds", "moonwire_build_info",
            "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
            "process_start_time_seconds" } do
            assert.truthy(body:find("\n# TYPE " .. family .. " ", 1, true)
                or body:find("^# TYPE " .. family .. " "), "missing family " .. family)
        end
        assert.is_nil(body:find("127.0.0.1", 1, true), "no addresses in labels")
    end)

    it("moves each counter by exactly what a scripted scenario did", function()
        local app = dir
        local before = samples((select(2, get(admin, "/metrics"))))
        local function delta(after, key) return (after[key] or 0) - (before[key] or 0) end
        -- 3 connections, 10 messages echoed by each
        local clients = {}
        for i = 1, 3 do clients[i] = assert(ws.connect(srv.port)) end
        for _, c in ipairs(clients) do
            for k = 1, 10 do assert.are.equal("m" .. k, c:echo("m" .. k)) end
        end
        -- 2 refused for their origin
        for _ = 1, 2 do
            local c, err = ws.connect(srv.port, { origin = "https://evil.example" })
            assert.is_nil(c)
            assert.are.equal("refused with 403", err)
        end
        -- a failing handler: 1011
        local f = assert(ws.connect(srv.port))
        f:send_text("fail")
        assert.are.equal(1011, (f:expect_close()))
        f:abort()
        for _, c in ipairs(clients) do c:close() end
        -- a reload
        srv:signal("HUP")
        assert.truthy(srv:wait_log("reloaded %(version 2%)", 5))
        socket.sleep(0.3)
        local after = samples((select(2, get(admin, "/metrics"))))
        local a = '{app="' .. app .. '"}'
        assert.are.equal(30 + 1, delta(after, "moonwire_messages_received_total" .. a))
        assert.are.equal(30, delta(after, "moonwire_messages_sent_total" .. a))
        assert.are.equal(2, delta(after, 'moonwire_handshakes_refused_total{reason="origin"}'))
        assert.are.equal(1, delta(after, 'moonwire_handler_failures_total{app="' .. app
            .. '",kind="error"}'))
        assert.are.equal(1, delta(after, 'moonwire_closes_total{code="1011"}'))
        assert.are.equal(3, delta(after, 'moonwire_closes_total{code="1000"}'))
        assert.are.equal(1, delta(after, 'moonwire_reloads_total{app="' .. app
            .. '",result="ok"}'))
        assert.are.equal(0, after["moonwire_connections" .. a])
        assert.are.equal(0, after["moonwire_app_players" .. a], "the app's gauge went back")
        -- every histogram: cumulative buckets, +Inf equal to _count
        local body = select(2, get(admin, "/metrics"))
        local series = {}
        for name, labels, value in body:gmatch("\n([%w_]+)_bucket{(.-)} (%S+)") do
            local base = labels:gsub(',?le="[^"]*"', "")
            local key = name .. "{" .. base .. "}"
            series[key] = series[key] or {}
            table.insert(series[key], { le = labels:match('le="([^"]*)"'), v = tonumber(value) })
        end
        assert.is_true(next(series) ~= nil)
        for key, buckets in pairs(series) do
            for i = 2, #buckets do
                assert.is_true(buckets[i].v >= buckets[i - 1].v, key .. " is not cumulative")
            end
            assert.are.equal("+Inf", buckets[#buckets].le, key)
            local name, labels = key:match("^(.-){(.*)}$")
            local count = body:match("\n" .. name:gsub("%p", "%%%0") .. "_count"
                .. (labels ~= "" and ("{" .. labels:gsub("%p", "%%%0") .. "}") or "") .. " (%S+)")
            assert.are.equal(buckets[#buckets].v, tonumber(count), key .. ": +Inf and _count")
        end
    end)

    it("exports the app's own metrics, which survive a reload", function()
        local c = assert(ws.connect(srv.port))
        assert.are.equal("join lobby", c:echo("join lobby"))
        assert.are.equal("join lobby", c:echo("join lobby"))
        assert.are.equal("tick", c:echo("tick"))
        local s = samples((select(2, get(admin, "/metrics"))))
        local key = 'moonwire_app_joins_total{app="' .. dir .. '",room="lobby"}'
        assert.are.equal(2, s[key])
        assert.are.equal(1, s['moonwire_app_tick_seconds_bucket{app="' .. dir .. '",le="0.01"}'])
        srv:signal("HUP")
        assert.truthy(srv:wait_log("reloaded %(version 3%)", 5))
        assert.are.equal("join lobby", c:echo("join lobby"))
        s = samples((select(2, get(admin, "/metrics"))))
        assert.are.equal(3, s[key], "the same counter after the reload")
        c:close()
    end)

    it("caps an app at 1000 series with an error naming the cap", function()
        local c = assert(ws.connect(srv.port))
        c:send_text("many")
        local reply = c:recv_message()
        assert.truthy(reply:find("^cap: .*1000 series already, the cap"), reply)
        c:close()
        local body = select(2, get(admin, "/metrics"))
        local n = select(2, body:gsub("\nmoonwire_app_", "\n"))
        assert.is_true(n <= 1000 + 20, "series: " .. n)
    end)

    it("answers /livez and /readyz, with ?verbose listing the checks; 404 elsewhere", function()
        assert.are.equal(200, (get(admin, "/livez")))
        local status, body = get(admin, "/readyz?verbose")
        assert.are.equal(200, status)
        assert.truthy(body:find("[+]apps ok", 1, true), body)
        assert.truthy(body:find("[+]draining ok", 1, true), body)
        assert.are.equal(404, (get(admin, "/nope")))
    end)

    it("is not served on the WebSocket listener", function()
        local resp = assert(ws.http(srv.port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
        assert.are_not.equal(200, resp.status)
    end)
end)

describe("the admin listener with a token", function()
    it("answers 401 without it and 200 with it, as a header or in the query", function()
        local conf = 'admin = { port = 0, token = "s3cret" }\n'
        local srv = server.start { app = "examples/echo", config = conf }
        local admin = tonumber(srv:wait_log("admin listening on http://127%.0%.0%.1:(%d+)/", 5))
        local status, _, headers = get(admin, "/metrics")
        assert.are.equal(401, status)
        assert.truthy(headers["www-authenticate"]:find("Bearer", 1, true))
        assert.are.equal(401, (get(admin, "/metrics", { "Authorization: Bearer wrong\r\n" })))
        assert.are.equal(200, (get(admin, "/metrics", { "Authorization: Bearer s3cret\r\n" })))
        assert.are.equal(200, (get(admin, "/livez?token=s3cret")))
        srv:stop()
    end)
end)

describe("probes", function()
    it("/readyz answers 503 from the first moment of a SIGTERM drain", function()
        local conf = "limits = { shutdown_timeout = 3 }\n"
        local srv = server.start { app = "examples/echo", config = conf, args = { "--admin", "0" } }
        local admin = tonumber(srv:wait_log("admin listening on http://127%.0%.0%.1:(%d+)/", 5))
        -- a client that never answers the close frame keeps the drain going
        local c = assert(ws.connect(srv.port))
        assert.are.equal(200, (get(admin, "/readyz")))
        srv:signal("TERM")
        assert.truthy(srv:wait_log("shutting down", 2))
        local status, body = get(admin, "/readyz?verbose")
        assert.are.equal(503, status)
        assert.truthy(body:find("[-]draining failed", 1, true), body)
        assert.are.equal(200, (get(admin, "/livez")), "alive while draining")
        c:abort()
        assert.are.equal(0, srv:wait_exit(10))
        srv:stop()
    end)

    it("/livez gives no answer, or 503, while a handler blocks the loop", function()
        local dir = server.app_dir { ["app.lua"] = APP }
        local conf = "sandbox = { instructions = 1e15, time_limit = 60 }\n"
        local srv = server.start { app = dir, config = conf, args = { "--admin", "0" } }
        local admin = tonumber(srv:wait_log("admin listening on http://127%.0%.0%.1:(%d+)/", 5))
        assert.are.equal(200, (get(admin, "/livez")))
        local c = assert(ws.connect(srv.port))
        c:send_text("spin")
        socket.sleep(0.5)
        local req = ("GET /livez HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"):format(admin)
        local resp = ws.http(admin, req, { timeout = 3 })
        assert.is_true(resp == nil or resp.status == nil or resp.status == 503,
            "a stuck loop must not look alive")
        c:abort()
        srv:kill()
        server.remove(dir)
    end)
end)

describe("logs", function()
    it("write an access line per upgrade, refusal and close", function()
        local srv = server.start { app = "examples/echo" }
        local c = assert(ws.connect(srv.port, { path = "/room" }))
        c:close(1000)
        assert.is_nil((ws.connect(srv.port, { origin = "https://evil.example" })))
        assert.truthy(srv:wait_log("conn %d+ 127%.0%.0%.1: upgraded /room event=upgrade "
            .. "path=/room status=101 seconds=[%d.]+", 2))
        assert.truthy(srv:wait_log("conn %d+ 127%.0%.0%.1: closed with 1000 event=close "
            .. "path=/room code=1000 reason= messages_in=0 messages_out=0 seconds=[%d.]+", 2))
        assert.truthy(srv:wait_log("conn %d+ 127%.0%.0%.1: refused with 403: [^\n]* "
            .. "event=refuse status=403 seconds=[%d.]+", 2))
        srv:stop()
    end)

    it("are one JSON object per line with log = { format = 'json' }, and access can be off",
        function()
            local srv = server.start { app = "examples/echo",
                                       config = 'log = { format = "json", access = false }\n' }
            local c = assert(ws.connect(srv.port))
            c:close(1000)
            assert.is_nil((ws.connect(srv.port, { origin = "https://evil.example" })))
            socket.sleep(0.2)
            local json = require "cjson"
            local n = 0
            for line in srv:log():gmatch("[^\n]+") do
                local ok, obj = pcall(json.decode, line)
                assert.is_true(ok, "not JSON: " .. line)
                assert.truthy(obj.time and obj.level and obj.msg, line)
                if obj.msg:find("refused with 403", 1, true) then
                    n = n + 1
                    assert.are.equal("127.0.0.1", obj.ip)
                    assert.is_number(obj.conn)
                    assert.are.equal(403, obj.status)
                end
                assert.is_nil(obj.msg:find("upgraded", 1, true), "access lines are off")
            end
            assert.are.equal(1, n)
            srv:stop()
        end)
end)
