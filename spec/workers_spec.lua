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

-- The samples of a scrape, { ['name{labels}'] = value }; the one app's label reads "app".
local function samples(body)
    local t = {}
    for line in body:gmatch("[^\n]+") do
        if line:sub(1, 1) ~= "#" then
            local key, value = line:match("^(%S+) (%S+)$")
            if key then t[(key:gsub('app="[^"]*"', 'app="app"'))] = tonumber(value) end
        end
    end
    return t
end

-- Polls /metrics until check(samples) is true (workers copy their figures every 100 ms).
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
            return total == 80
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
