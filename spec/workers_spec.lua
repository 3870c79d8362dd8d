-- Issue 13: worker threads. The server started with workers = 4 on loopback: connections spread
-- over the workers (per-worker series in /metrics), one port guard against a second server,
-- SIGHUP reloads the app in every worker, SIGTERM drains them all with 1001.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"

local function get(port, path)
    local req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"):format(path, port)
    local resp = assert(ws.http(port, req, { timeout = 5 }))
    return resp.status, resp.body
end

local function samples(body) return helpers.metric_samples(body, true) end

-- Polls /metrics until check(samples) is true (workers copy their figures every 100 ms).
local spread_any
local function wait_metrics(srv, check, timeout)
    local deadline = socket.gettime() + (timeout or 5)
    local s
    repeat
        local status, body = get(srv:admin_port(), "/metrics")
        assert.are.equal(200, status)
        s = samples(body)
        if check(s) then return s end
        socket.sleep(0.05)
    until socket.gettime() > deadline
    return s
end

local PUBSUB = [[
local app = {}
function app.upgrade(req) return true end
function app.message(conn, data)
    local cmd, a, b, c = data:match("^(%S+) ?(%S*) ?(%S*) ?(%S*)$")
    if cmd == "sub" then
        assert(conn:subscribe(a))
        conn:send("subscribed")
    elseif cmd == "count" then
        conn:send(tostring(mw.subscribers(a)))
    elseif cmd == "burst" then -- burst TOPIC ID N: N publishes "ID:i", in order
        for i = 1, tonumber(c) do mw.publish(a, b .. ":" .. i) end
        conn:send("sent")
    end
end
return app
]]

local ECHO = [[
local app = {}
function app.upgrade(req) return true end
function app.message(conn, data)
    if data == "version" then conn:send("v1") else conn:send(data) end
end
return app
]]

-- n connections, checked open with an echo each.
local function connect_many(port, n)
    local clients = {}
    for i = 1, n do
        local c = assert(ws.connect(port))
        clients[i] = c
    end
    for i, c in ipairs(clients) do
        c:send_text("hi " .. i)
        assert.are.equal("hi " .. i, c:recv_message())
    end
    return clients
end

describe("workers = 4", function()
    local dir, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = ECHO }
        srv = server.start {
            app = dir,
            config = "workers = 4\nadmin = { port = 0 }\n",
        }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    it("runs four loops and spreads connections over all of them", function()
        assert.truthy(srv:wait_log("4 workers, each with its own loop"))
        srv:admin_port()
        local clients = connect_many(srv.port, 80)
        local s = wait_metrics(srv, function(m)
            local total = 0
            for i = 0, 3 do total = total + (m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) end
            -- Each worker's figures are a copy up to 100 ms old: wait for all to be current.
            return total == 80 and m['moonwire_connections{app="app"}'] == 80
        end)
        assert.are.equal(4, s["moonwire_workers"])
        local total = 0
        for i = 0, 3 do
            local n = s[('moonwire_worker_connections{worker="%d"}'):format(i)]
            assert.is_true(n > 0, "worker " .. i .. " got no connection of 80")
            total = total + n
        end
        assert.are.equal(80, total)
        -- The app's series sum every worker's copy.
        assert.are.equal(80, s['moonwire_connections{app="app"}'])
        assert.are.equal(80, s["moonwire_connections_accepted_total"])
        for _, c in ipairs(clients) do c:close() end
        -- The log names the worker.
        assert.truthy(srv:log():find("worker=3", 1, true))
    end)

    it("refuses a second server on the same port instead of sharing it", function()
        for _, workers in ipairs { "4", "1" } do
            local second = server.start {
                app = dir, args = { "--port", tostring(srv.port), "--workers", workers },
                expect_fail = true,
            }
            assert.are_not.equal(0, second.status)
            assert.truthy(second:log():find("Address already in use", 1, true), second:log())
            server.remove(second.dir)
        end
        -- The first still serves.
        local c = assert(ws.connect(srv.port))
        assert.are.equal("x", c:echo("x"))
        c:close()
    end)

    it("reloads the app in every worker on SIGHUP", function()
        local clients = connect_many(srv.port, 40)
        wait_metrics(srv, function(m)
            for i = 0, 3 do
                if (m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) == 0 then
                    return false
                end
            end
            return true
        end)
        helpers.write_file(dir .. "/app.lua", (ECHO:gsub('"v1"', '"v2"')))
        srv:signal("HUP")
        local s = wait_metrics(srv, function(m)
            return m['moonwire_reloads_total{app="app",result="ok"}'] == 4
        end)
        assert.are.equal(4, s['moonwire_reloads_total{app="app",result="ok"}'])
        for _, c in ipairs(clients) do
            c:send_text("version")
            assert.are.equal("v2", c:recv_message())
        end
        for _, c in ipairs(clients) do c:close() end
    end)

    it("drains every worker on SIGTERM: each client gets 1001, then the process exits 0", function()
        local clients = connect_many(srv.port, 40)
        srv:signal("TERM")
        for _, c in ipairs(clients) do
            local code = c:expect_close(5)
            assert.are.equal(1001, code)
            c:close(1001)
        end
        assert.are.equal(0, srv:wait_exit(10))
        assert.truthy(srv:log():find("stopped", 1, true))
    end)
end)

-- Per-worker connection counts from /metrics, once every worker has at least one (or 5 s).
local function spread(srv, total)
    return wait_metrics(srv, function(m)
        local sum = 0
        for i = 0, 3 do
            local n = m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0
            if n == 0 then return false end
            sum = sum + n
        end
        return sum == total
    end)
end

describe("pub/sub across 4 workers", function()
    local dir, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = PUBSUB }
        srv = server.start { app = dir, config = "workers = 4\nadmin = { port = 0 }\n" }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    it("delivers every publish to every subscriber on every worker, in order, once", function()
        local SUBS, PUBS, EACH = 100, 8, 125
        local subs = {}
        for i = 1, SUBS do
            subs[i] = assert(ws.connect(srv.port))
            subs[i]:send_text("sub news")
            assert.are.equal("subscribed", subs[i]:recv_message())
        end
        local pubs = {}
        for i = 1, PUBS do pubs[i] = assert(ws.connect(srv.port)) end
        local m = spread(srv, SUBS + PUBS)
        for i = 0, 3 do
            assert.is_true((m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) > 0,
                "worker " .. i .. " has no connection")
        end
        -- mw.subscribers counts every worker's subscribers, asked on any worker.
        for _, p in ipairs(pubs) do
            p:send_text("count news")
            assert.are.equal(tostring(SUBS), p:recv_message())
        end
        for i, p in ipairs(pubs) do p:send_text(("burst news p%d %d"):format(i, EACH)) end
        for _, p in ipairs(pubs) do assert.are.equal("sent", p:recv_message(10)) end
        for s, c in ipairs(subs) do
            local next_of = {}
            for _ = 1, PUBS * EACH do
                local msg = assert(c:recv_message(10), "subscriber " .. s .. " is missing messages")
                local who, n = msg:match("^(p%d+):(%d+)$")
                n = tonumber(n)
                assert.are.equal((next_of[who] or 0) + 1, n,
                    ("subscriber %d: %s out of order or twice"):format(s, msg))
                next_of[who] = n
            end
            for i = 1, PUBS do assert.are.equal(EACH, next_of["p" .. i]) end
        end
        -- Nothing more arrives: none twice.
        for _, c in ipairs(subs) do assert.is_nil(c:recv_message(0.01)) end
        local s = wait_metrics(srv, function(x)
            return x['moonwire_deliveries_total{app="app"}'] == SUBS * PUBS * EACH
        end)
        assert.are.equal(SUBS * PUBS * EACH, s['moonwire_deliveries_total{app="app"}'])
        for i = 0, 3 do
            assert.are.equal(0, s[('moonwire_worker_queue_dropped_total{worker="%d"}'):format(i)])
        end
        for _, c in ipairs(subs) do c:close() end
        for _, c in ipairs(pubs) do c:close() end
    end)

    it("forgets a topic on a worker when its last subscriber there leaves", function()
        local a = assert(ws.connect(srv.port))
        a:send_text("sub t")
        assert.are.equal("subscribed", a:recv_message())
        local b = assert(ws.connect(srv.port))
        b:send_text("count t")
        assert.are.equal("1", b:recv_message())
        a:close()
        local deadline = socket.gettime() + 5
        local n
        repeat
            b:send_text("count t")
            n = b:recv_message()
        until n == "0" or socket.gettime() > deadline
        assert.are.equal("0", n)
        b:close()
    end)
end)

-- /metrics once the workers' connections add up to total (or 5 s).
spread_any = function(srv, total)
    return wait_metrics(srv, function(m)
        local sum = 0
        for i = 0, 3 do sum = sum + (m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) end
        return sum == total
    end)
end

describe("limits across 4 workers", function()
    local dir, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = ECHO }
        srv = server.start {
            app = dir,
            config = "workers = 4\nadmin = { port = 0 }\n"
                .. "limits = { max_connections = 10, per_ip = 4 }\n",
        }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    it("holds per_ip and max_connections for the process, not per worker", function()
        local open = {}
        local function try(source)
            local c, err, resp = ws.connect(srv.port, { source = source })
            if c then
                assert.are.equal("x", c:echo("x"))
                open[#open + 1] = c
                return 101
            end
            return resp and resp.status, err
        end
        -- 127.0.0.1: four, then 429.
        for i = 1, 4 do assert.are.equal(101, try("127.0.0.1"), "connection " .. i) end
        assert.are.equal(429, try("127.0.0.1"))
        assert.are.equal(429, try("127.0.0.1"))
        -- Two more addresses: 4 + 2 more reach max_connections = 10, then 503.
        for i = 1, 4 do assert.are.equal(101, try("127.0.0.2"), "connection " .. i) end
        for i = 1, 2 do assert.are.equal(101, try("127.0.0.3"), "connection " .. i) end
        assert.are.equal(503, try("127.0.0.3"))
        assert.are.equal(503, try("127.0.0.4"))
        -- The ten landed on more than one worker, so the limits really were shared.
        local m = spread_any(srv, 10)
        local busy = 0
        for i = 0, 3 do
            if (m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) > 0 then
                busy = busy + 1
            end
        end
        assert.is_true(busy > 1, "all ten connections landed on one worker")
        -- A connection that ends gives its place back, whichever worker had it.
        for _ = 1, 3 do table.remove(open, 1):close() end
        local deadline = socket.gettime() + 5
        local status
        repeat
            status = try("127.0.0.1")
        until status == 101 or socket.gettime() > deadline
        assert.are.equal(101, status)
        for _, c in ipairs(open) do c:close() end
    end)
end)

local SHARED = [[
local app = {}
function app.upgrade(req) return true end
local function show(...)
    local out = {}
    for i = 1, select("#", ...) do out[i] = tostring((select(i, ...))) end
    return table.concat(out, " ")
end
function app.message(conn, data)
    local cmd, a, b = data:match("^(%S+) ?(%S*) ?(.*)$")
    if cmd == "incr" then
        for _ = 1, tonumber(a) do assert(mw.shared.incr("hits")) end
        conn:send("done")
    elseif cmd == "get" then
        local v = mw.shared.get(a)
        conn:send(math.type(v) and math.type(v) .. " " .. v or show(type(v), v))
    elseif cmd == "set" then
        conn:send(show(mw.shared.set(a, b)))
    elseif cmd == "setn" then
        conn:send(show(mw.shared.set(a, tonumber(b))))
    elseif cmd == "setttl" then
        conn:send(show(mw.shared.set(a, "soon", tonumber(b))))
    elseif cmd == "add" then
        conn:send(show(mw.shared.add(a, b)))
    elseif cmd == "incrby" then
        conn:send(show(mw.shared.incr(a, tonumber(b))))
    elseif cmd == "delete" then
        conn:send(show(mw.shared.delete(a)))
    elseif cmd == "big" then
        conn:send(show(mw.shared.set(a, string.rep("x", tonumber(b)))))
    elseif cmd == "table" then
        conn:send(show(pcall(mw.shared.set, a, {})))
    elseif cmd == "longkey" then
        conn:send(show(mw.shared.get(string.rep("k", 2000))))
    end
end
return app
]]

describe("mw.shared with 4 workers", function()
    local dir, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = SHARED }
        srv = server.start {
            app = dir,
            config = ('workers = 4\nadmin = { port = 0 }\nlimits = { shared_memory = 8192 }\n'
                .. 'apps = { ["/other"] = %q }\n'):format(dir),
        }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    it("adds up incr from every worker exactly", function()
        local clients = {}
        for i = 1, 24 do clients[i] = assert(ws.connect(srv.port)) end
        spread(srv, 24)
        for _, c in ipairs(clients) do c:send_text("incr 250") end
        for _, c in ipairs(clients) do assert.are.equal("done", c:recv_message(20)) end
        for _, c in ipairs(clients) do
            c:send_text("get hits")
            assert.are.equal("integer 6000", c:recv_message())
        end
        -- Another app has its own keys.
        local other = assert(ws.connect(srv.port, { path = "/other" }))
        other:send_text("get hits")
        assert.are.equal("nil nil", other:recv_message())
        other:close()
        for _, c in ipairs(clients) do c:close() end
    end)

    it("gets, sets, adds, increments, deletes and expires; says why it cannot", function()
        local a = assert(ws.connect(srv.port))
        local b = assert(ws.connect(srv.port))
        local function ask(c, text)
            c:send_text(text)
            return c:recv_message()
        end
        assert.are.equal("true", ask(a, "set name moon wire"))
        assert.are.equal("string moon wire", ask(b, "get name"))
        assert.are.equal("true", ask(a, "setn pi 3.5"))
        assert.are.equal("float 3.5", ask(b, "get pi"))
        assert.are.equal("nil exists", ask(b, "add name other"))
        assert.are.equal("true", ask(b, "add fresh yes"))
        assert.are.equal("nil not a number", ask(a, "incrby name 1"))
        assert.are.equal("4.5", ask(a, "incrby pi 1"))
        assert.are.equal("7", ask(a, "incrby count 7")) -- an integer: not "7.0"
        assert.are.equal("true", ask(b, "delete name"))
        assert.are.equal("nil nil", ask(a, "get name"))
        assert.are.equal("true", ask(a, "setttl short 0.2"))
        assert.are.equal("string soon", ask(b, "get short"))
        socket.sleep(0.4)
        assert.are.equal("nil nil", ask(b, "get short"))
        assert.truthy(ask(a, "big huge 10000"):find("^nil no memory: mw.shared is full %(limits.shared_memory%)"))
        assert.truthy(ask(a, "table t"):find("^false .*values are strings, numbers or booleans"))
        assert.truthy(ask(a, "longkey"):find("^nil the key must be 1 to 1024 bytes"))
        a:close()
        b:close()
    end)
end)

describe("mw.shared with one worker", function()
    it("is there too, the same API", function()
        local dir = server.app_dir { ["app.lua"] = SHARED }
        local srv = server.start { app = dir }
        local c = assert(ws.connect(srv.port))
        c:send_text("incr 3")
        assert.are.equal("done", c:recv_message())
        c:send_text("get hits")
        assert.are.equal("integer 3", c:recv_message())
        c:close()
        srv:stop()
        server.remove(dir)
    end)
end)

describe("a drain of 2000 connections over 4 workers", function()
    it("closes every one with 1001, then the process exits 0", function()
        local dir = server.app_dir { ["app.lua"] = ECHO }
        local srv = server.start {
            app = dir,
            config = "workers = 4\nadmin = { port = 0 }\n"
                .. "limits = { per_ip = 5000, shutdown_timeout = 60 }\n",
        }
        local N = 2000
        local clients = {}
        for i = 1, N do clients[i] = assert(ws.connect(srv.port, { timeout = 10 })) end
        local m = spread(srv, N)
        for i = 0, 3 do
            assert.is_true((m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) > 0,
                "worker " .. i .. " has none of the " .. N .. " connections")
        end
        srv:signal("TERM")
        local deadline = socket.gettime() + 60
        local codes = {}
        for i, c in ipairs(clients) do
            local code, err = c:expect_close(math.max(1, deadline - socket.gettime()))
            codes[tostring(code or err)] = (codes[tostring(code or err)] or 0) + 1
            if code then c:send_close(1001) end
            if i % 100 == 0 then assert.is_true(socket.gettime() < deadline, "too slow") end
        end
        assert.are.same({ ["1001"] = N }, codes)
        for _, c in ipairs(clients) do c.sock:close() end
        assert.are.equal(0, srv:wait_exit(30))
        assert.is_nil(srv:sanitizer_report())
        server.remove(srv.dir)
        server.remove(dir)
    end)
end)
