-- Issue 13, the apps' side of worker threads: an app pinned with app.workers = 1 serves every
-- connection in one Lua state (connections accepted by other workers are handed over after
-- their request head), a reload switches every worker or none, and what apps count with
-- mw.metrics is summed over the workers.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"

local function get(port, path)
    local req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n")
        :format(path, port)
    local resp = assert(ws.http(port, req, { timeout = 5 }))
    return resp.status, resp.body
end

local function samples(body) return helpers.metric_samples(body, true) end

-- Polls /metrics until check(samples) is true (workers copy their figures every 100 ms).
local function wait_metrics(srv, check, timeout)
    local deadline = socket.gettime() + (timeout or 5)
    local s, body
    repeat
        local status
        status, body = get(srv:admin_port(), "/metrics")
        assert.are.equal(200, status)
        s = samples(body)
        if check(s) then return s, body end
        socket.sleep(0.05)
    until socket.gettime() > deadline
    return s, body
end

local function worker_sum(s, name, from)
    local total = 0
    for i = from or 0, 3 do total = total + (s[('%s{worker="%d"}'):format(name, i)] or 0) end
    return total
end

-- One Lua state counts its connections; every answer says how many it has seen.
local PINNED = [[
local app = { workers = 1 }
local opened = 0
function app.upgrade(req) return true end
function app.open(conn) opened = opened + 1 end
function app.message(conn, data)
    if data == "count" then conn:send(tostring(opened)) else conn:send("echo " .. data) end
end
function app.http(req) return 200, "opened " .. opened end
return app
]]

-- The same without the pin: each worker counts its own.
local FREE = (PINNED:gsub("{ workers = 1 }", "{}"))

describe("an app pinned with app.workers = 1, with 4 workers", function()
    local dir, free, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = PINNED }
        free = server.app_dir { ["app.lua"] = FREE }
        srv = server.start {
            app = dir,
            config = ('workers = 4\nadmin = { port = 0 }\napps = { ["/free"] = %q }\n')
                :format(free),
        }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
        server.remove(free)
    end)

    it("sees every connection in one Lua state; others hand theirs over unnoticed", function()
        local N = 40
        local clients = {}
        for i = 1, N do
            -- A frame in the same write as the request: it goes over with the request head.
            local frame = ws.frame { opcode = ws.op.text, payload = "first " .. i }
            clients[i] = assert(ws.connect(srv.port, { extra = frame }))
            assert.are.equal("echo first " .. i, clients[i]:recv_message())
        end
        for _, c in ipairs(clients) do
            c:send_text("count")
            assert.are.equal(tostring(N), c:recv_message())
        end
        -- Plain HTTP to its path is served by the same state too.
        local status, body = get(srv.port, "/")
        assert.are.equal(200, status)
        assert.are.equal("opened " .. N, body)
        -- The pinned app is the second (the config's /free comes first): worker 1 owns it.
        local s = wait_metrics(srv, function(m)
            return m['moonwire_worker_connections{worker="1"}'] == N
                and worker_sum(m, "moonwire_worker_accepted_total") >= N + 1
        end)
        -- All open on worker 1, though the kernel gave some of them to the other workers,
        -- which handed them over.
        assert.are.equal(N, s['moonwire_worker_connections{worker="1"}'])
        assert.are.equal(N, worker_sum(s, "moonwire_worker_connections")) -- none elsewhere
        assert.is_true(worker_sum(s, "moonwire_worker_accepted_total")
            - s['moonwire_worker_accepted_total{worker="1"}'] > 0,
            "no connection landed on another worker: nothing was handed over")
        -- Accepted once each, wherever they were served.
        assert.are.equal(N + 1, s["moonwire_connections_accepted_total"]) -- and the HTTP request
        for _, c in ipairs(clients) do c:close() end
    end)

    it("hands over a kept-alive connection whose next request is for the pinned app", function()
        -- Two pipelined requests in one write: the first for /free, served where the kernel
        -- put the connection; the second for the pinned app, served by its worker.
        for _ = 1, 8 do
            local req = ("GET /free HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                .. "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            local resp = assert(ws.http(srv.port, req, { timeout = 5 }))
            local statuses, bodies = {}, {}
            for status, body in resp.raw:gmatch("HTTP/1%.1 (%d+).-\r\n\r\n(opened %d+)") do
                statuses[#statuses + 1] = tonumber(status)
                bodies[#bodies + 1] = body
            end
            assert.are.same({ 200, 200 }, statuses, resp.raw)
            assert.are.same({ "opened 0", "opened 0" }, bodies, resp.raw)
        end
    end)

    it("leaves an unpinned app on every worker, each with its own state", function()
        local clients = {}
        for i = 1, 40 do clients[i] = assert(ws.connect(srv.port, { path = "/free" })) end
        local most = 0
        for _, c in ipairs(clients) do
            c:send_text("count")
            most = math.max(most, tonumber((c:recv_message())))
        end
        assert.is_true(most < 40, "one state saw all 40 connections of the unpinned app")
        for _, c in ipairs(clients) do c:close() end
    end)
end)

describe("app.workers", function()
    it("refuses anything but 1 when the app loads, saying what it may be", function()
        for _, value in ipairs { "2", "'one'", "true", "1.5" } do
            local dir = server.app_dir {
                ["app.lua"] = "return { workers = " .. value .. ", message = function() end }",
            }
            local srv = server.start { app = dir, args = { "--workers", "2" }, expect_fail = true }
            assert.are_not.equal(0, srv.status)
            assert.truthy(srv:log():find("app.workers must be 1 (every connection of the app "
                .. "served by one worker, in one Lua state) or left out", 1, true), srv:log())
            server.remove(srv.dir)
            server.remove(dir)
        end
    end)

    it("cannot pin an app reached over TLS with several workers: says so at start", function()
        local dir = server.app_dir { ["app.lua"] = PINNED }
        local pem, key = dir .. "/cert.pem", dir .. "/cert.key"
        assert(os.execute(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
            .. "-keyout %s -out %s -days 1 -subj /CN=localhost >/dev/null 2>&1"):format(key, pem)))
        local srv = server.start {
            app = dir, args = { "--workers", "2", "--tls-cert", pem, "--tls-key", key },
            expect_fail = true,
        }
        assert.are_not.equal(0, srv.status)
        assert.truthy(srv:log():find("sets app.workers = 1, but a listener speaks TLS and a TLS "
            .. "connection cannot move between worker threads", 1, true), srv:log())
        server.remove(srv.dir)
        -- --check says so too.
        local check = server.start {
            app = dir, expect_fail = true,
            args = { "--check", "--workers", "2", "--tls-cert", pem, "--tls-key", key },
        }
        assert.are_not.equal(0, check.status)
        assert.truthy(check:log():find("cannot move between worker threads", 1, true), check:log())
        server.remove(check.dir)
        server.remove(dir)
    end)
end)

local VERSIONED = [[
local app = {}
function app.upgrade(req) return true end
function app.message(conn, data) conn:send("v1") end
return app
]]

describe("SIGHUP with 4 workers", function()
    local dir, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = VERSIONED }
        srv = server.start { app = dir, config = "workers = 4\nadmin = { port = 0 }\n" }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    -- Connections on every worker (or 5 s).
    local function spread_clients(n)
        local clients = {}
        for i = 1, n do clients[i] = assert(ws.connect(srv.port)) end
        wait_metrics(srv, function(m)
            for i = 0, 3 do
                if (m[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) == 0 then
                    return false
                end
            end
            return true
        end)
        return clients
    end

    local function versions(clients)
        local seen = {}
        for _, c in ipairs(clients) do
            c:send_text("which")
            local v = c:recv_message()
            seen[v] = (seen[v] or 0) + 1
        end
        return seen
    end

    it("switches no worker when the new code fails on one, and logs the error once", function()
        local clients = spread_clients(40)
        -- Fails on one worker only: the first to run it takes the one ticket mw.shared has.
        helpers.write_file(dir .. "/app.lua", VERSIONED:gsub('"v1"', '"v2"'):gsub(
            "local app = {}", 'local app = {}\nif mw.shared.add("ticket", 1) then '
                .. 'error("this worker fails to load") end', 1))
        srv:signal("HUP")
        local s = wait_metrics(srv, function(m)
            return m['moonwire_reloads_total{app="app",result="failed"}'] == 4
        end)
        assert.are.equal(4, s['moonwire_reloads_total{app="app",result="failed"}'])
        assert.are.equal(0, s['moonwire_reloads_total{app="app",result="ok"}'])
        assert.are.same({ v1 = 40 }, versions(clients))
        local log = srv:log()
        local _, failures = log:gsub("reload failed", "")
        assert.are.equal(1, failures, log)
        assert.truthy(log:find("so no worker switched; the previous version keeps running: "
            .. ".-this worker fails to load"), log)
        -- A good reload then switches all four.
        helpers.write_file(dir .. "/app.lua", (VERSIONED:gsub('"v1"', '"v3"')))
        srv:signal("HUP")
        wait_metrics(srv, function(m)
            return m['moonwire_reloads_total{app="app",result="ok"}'] == 4
        end)
        assert.are.same({ v3 = 40 }, versions(clients))
        for _, c in ipairs(clients) do c:close() end
    end)

    it("switches every worker on a good reload, several in a row", function()
        local clients = spread_clients(40)
        for v = 2, 4 do
            helpers.write_file(dir .. "/app.lua", (VERSIONED:gsub('"v1"', '"v' .. v .. '"')))
            srv:signal("HUP")
        end
        -- Signals may coalesce; whatever ran last must be v4 on every worker.
        local deadline = socket.gettime() + 5
        local seen
        repeat
            seen = versions(clients)
            if seen.v4 == 40 then break end
            socket.sleep(0.05)
        until socket.gettime() > deadline
        assert.are.same({ v4 = 40 }, seen)
        assert.is_nil(srv:log():find("reload failed", 1, true))
        for _, c in ipairs(clients) do c:close() end
    end)
end)

local cjson = require "cjson"

local OBSERVED = [[
local app = {}
local hits = mw.metrics.counter("hits", "Messages seen.", { "kind" })
local online = mw.metrics.gauge("online", "Connections open.")
local sizes = mw.metrics.histogram("sizes", "Message sizes.", { 4, 16, 64 })
function app.upgrade(req) return true end
function app.open(conn) online:inc() end
function app.close(conn) online:dec() end
function app.message(conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "hit" then
        hits:inc(1, { "a" })
        sizes:observe(#data)
        conn:send("ok")
    elseif cmd == "sub" then
        assert(conn:subscribe(arg))
        conn:send("ok")
    elseif cmd == "busy" then -- keeps this worker's loop from turning for a while
        local t = os.clock()
        while os.clock() - t < tonumber(arg) do end
        conn:send("ok")
    end
end
return app
]]

describe("metrics and the dashboard with 4 workers", function()
    local dir, srv

    before_each(function()
        dir = server.app_dir { ["app.lua"] = OBSERVED }
        srv = server.start {
            app = dir,
            config = "workers = 4\nadmin = { port = 0 }\n"
                .. "sandbox = { instructions = 0, time_limit = 30 }\n",
        }
    end)

    after_each(function()
        if srv then srv:stop() end
        server.remove(dir)
    end)

    -- n connections, once the metrics show every worker has some.
    local function spread_clients(n)
        local clients = {}
        for i = 1, n do clients[i] = assert(ws.connect(srv.port)) end
        local m = wait_metrics(srv, function(s)
            for i = 0, 3 do
                if (s[('moonwire_worker_connections{worker="%d"}'):format(i)] or 0) == 0 then
                    return false
                end
            end
            return true
        end)
        for i = 0, 3 do
            assert.is_true(m[('moonwire_worker_connections{worker="%d"}'):format(i)] > 0,
                "worker " .. i .. " got none of " .. n .. " connections")
        end
        return clients
    end

    local function ask(c, text)
        c:send_text(text)
        return c:recv_message(10)
    end

    it("sums what every worker's copy counts with mw.metrics, in a valid exposition", function()
        local clients = spread_clients(40)
        for _, c in ipairs(clients) do
            for _ = 1, 3 do assert.are.equal("ok", ask(c, "hit")) end
        end
        local s, body = wait_metrics(srv, function(m)
            return m['moonwire_app_hits_total{app="app",kind="a"}'] == 120
        end)
        assert.are.equal(120, s['moonwire_app_hits_total{app="app",kind="a"}'])
        assert.are.equal(40, s['moonwire_app_online{app="app"}'])
        assert.are.equal(120, s['moonwire_app_sizes_count{app="app"}'])
        assert.are.equal(120, s['moonwire_app_sizes_bucket{app="app",le="4"}']) -- "hit" is 3
        assert.are.equal(360, s['moonwire_app_sizes_sum{app="app"}'])
        -- One family each, whatever the number of workers.
        local _, families = body:gsub("# TYPE moonwire_app_hits_total counter", "")
        assert.are.equal(1, families)
        -- The totals without a worker label sum the per-worker series.
        assert.are.equal(s["moonwire_connections_accepted_total"],
            worker_sum(s, "moonwire_worker_accepted_total"))
        assert.are.equal(s['moonwire_connections{app="app"}'],
            worker_sum(s, "moonwire_worker_connections"))
        local tmp = os.tmpname()
        helpers.write_file(tmp, body)
        local ok = os.execute("promtool check metrics < " .. tmp .. " > " .. tmp .. ".out 2>&1")
        local out = helpers.read_file(tmp .. ".out")
        os.remove(tmp)
        os.remove(tmp .. ".out")
        assert.is_true(ok == true or ok == 0, "promtool: " .. tostring(out))
        for _, c in ipairs(clients) do c:close() end
    end)

    it("shows the busiest topics of all workers; each worker's worst lag restarts", function()
        local clients = spread_clients(24)
        for i, c in ipairs(clients) do
            assert.are.equal("ok", ask(c, "sub " .. (i <= 20 and "hot" or "cold")))
        end
        -- Each client's loop stalls once: every worker lags 0.3 s (the clients are spread).
        for _, c in ipairs(clients) do c:send_text("busy 0.3") end
        for _, c in ipairs(clients) do assert.are.equal("ok", c:recv_message(20)) end
        local s = wait_metrics(srv, function(m)
            for i = 0, 3 do
                if (m[('moonwire_worker_loop_lag_max_seconds{worker="%d"}'):format(i)] or 0) < 0.25
                then return false end
            end
            return true
        end)
        for i = 0, 3 do
            local lag = s[('moonwire_worker_loop_lag_max_seconds{worker="%d"}'):format(i)]
            assert.is_true(lag >= 0.25)
        end
        -- The dashboard's feed: topics counted over all workers.
        local feed = assert(ws.connect(srv:admin_port(), { path = "/ws" }))
        local snap = cjson.decode((feed:recv_message(5)))
        assert.are.equal("snapshot", snap.type)
        local topics = {}
        for _, t in ipairs(snap.topics) do topics[t.topic] = t.subscribers end
        assert.are.same({ hot = 20, cold = 4 }, topics)
        assert.are.equal("hot", snap.topics[1].topic)
        -- Two snapshots later every worker's worst lag is this second's, not the stall's.
        feed:recv_message(5)
        feed:recv_message(5)
        s = wait_metrics(srv, function(m)
            for i = 0, 3 do
                if m[('moonwire_worker_loop_lag_max_seconds{worker="%d"}'):format(i)] >= 0.25 then
                    return false
                end
            end
            return true
        end, 3)
        for i = 0, 3 do
            local lag = s[('moonwire_worker_loop_lag_max_seconds{worker="%d"}'):format(i)]
            assert.is_true(lag < 0.25, "worker " .. i .. "'s worst lag did not start again")
        end
        feed:close()
        for _, c in ipairs(clients) do c:close() end
    end)
end)
