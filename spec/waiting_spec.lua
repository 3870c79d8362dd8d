-- Handlers that wait (mw.sleep here; mw.http.request in outbound_spec.lua): one connection's
-- messages stay in order and one at a time, other connections go on, a close waits behind the
-- run that waits, a reload lets old runs finish, sandbox.wait_timeout ends a run that waits too
-- long, and the budget counts per slice.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"

local APP = [[
local app = {}

function app.message(conn, data)
    local cmd, arg = data:match("^(%w+):?(.*)$")
    if cmd == "slow" then
        mw.sleep(tonumber(arg))
        conn:send("slow " .. arg)
    elseif cmd == "later" then
        -- Sleeps, then reports what conn:send answers once the connection has gone.
        mw.sleep(tonumber(arg))
        local ok, err = conn:send("late")
        mw.log("info", "send after wait:", tostring(ok), tostring(err))
        mw.state.after_wait = tostring(ok) .. " " .. tostring(err)
    elseif cmd == "state" then
        conn:send(tostring(mw.state.after_wait))
    elseif cmd == "version" then
        mw.sleep(tonumber(arg))
        conn:send("version " .. VERSION)
    elseif cmd == "spin" then
        -- Most of a budget before the wait and most of one after: each slice has its own.
        local n = 0
        for i = 1, 600000 do n = n + i end
        mw.sleep(10)
        for i = 1, 600000 do n = n + i end
        conn:send("spun")
    elseif cmd == "yield" then
        coroutine.yield()
    elseif cmd == "cosleep" then
        coroutine.wrap(function() mw.sleep(1) end)()
    elseif cmd == "trap" then
        -- A __close that would loop forever, in the handler and in a coroutine of its own,
        -- both stopped by the budget: it must never run with the budget's hook off.
        local x <close> = setmetatable({}, { __close = function() while true do end end })
        coroutine.wrap(function()
            local y <close> = setmetatable({}, { __close = function() while true do end end })
            while true do end
        end)()
    else
        conn:send(data)
    end
end

function app.close(conn, code)
    mw.log("info", "app.close ran for", conn.id, code)
end

function app.upgrade(req)
    if req.query == "sleep" then
        mw.sleep(100)
        return true, { data = { slept = true } }
    end
    if req.query == "sleep-refuse" then
        mw.sleep(10)
        return false, 401, "not after sleeping"
    end
    return true
end

function app.open(conn)
    if conn.data.slept then conn:send("slept before open") end
end

function app.http(req)
    local ms = tonumber(req.query:match("ms=(%d+)") or "0")
    mw.sleep(ms)
    return 200, "waited " .. ms .. " for " .. req.path .. (req.body ~= "" and " " .. req.body or "")
end

return app
]]

local function now() return socket.gettime() end

local function connect(srv, query)
    return assert(ws.connect(srv.port, query and { path = "/?" .. query } or nil))
end

describe("handlers that wait", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = "VERSION = 1\n" .. APP }
        srv = server.start {
            app = dir,
            config = "sandbox = { wait_timeout = 0.5, instructions = 1000000 }",
        }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("keeps one connection's messages in order while its handler waits", function()
        local c = connect(srv)
        c:send_text("slow:150")
        c:send_text("first after")
        c:send_text("slow:10")
        c:send_text("last")
        assert.are.equal("slow 150", c:recv_message(3))
        assert.are.equal("first after", c:recv_message(3))
        assert.are.equal("slow 10", c:recv_message(3))
        assert.are.equal("last", c:recv_message(3))
        c:close()
    end)

    it("serves other connections while one handler waits", function()
        local a, b = connect(srv), connect(srv)
        local t0 = now()
        a:send_text("slow:400")
        assert.are.equal("quick", b:echo("quick"))
        assert.is_true(now() - t0 < 0.3, "b answered while a's handler waited")
        assert.are.equal("slow 400", a:recv_message(3))
        a:close()
        b:close()
    end)

    it("loses nothing when hundreds of messages queue behind a wait", function()
        local c = connect(srv)
        c:send_text("slow:200")
        for i = 1, 300 do c:send_text("m" .. i) end
        assert.are.equal("slow 200", c:recv_message(3))
        for i = 1, 300 do assert.are.equal("m" .. i, c:recv_message(3)) end
        c:close()
    end)

    it("answers conn:send with nil, closed after the connection went, then runs app.close",
       function()
        local c = connect(srv)
        c:send_text("later:200")
        socket.sleep(0.05)
        c:abort()
        assert.truthy(srv:wait_log("send after wait: nil closed", 3))
        local log = srv:log()
        local sent_at = log:find("send after wait: nil closed", 1, true)
        local closed_at = log:find("app.close ran for", sent_at, true)
        assert.truthy(closed_at, "app.close runs after the run that waited")
        local d = connect(srv)
        assert.are.equal("nil closed", d:echo("state"))
        d:close()
    end)

    it("ends a run that waits past sandbox.wait_timeout with 1011 and a log line", function()
        local c = connect(srv)
        local t0 = now()
        c:send_text("slow:5000")
        local code = c:expect_close(3)
        assert.are.equal(1011, code)
        assert.is_true(now() - t0 < 2, "closed at about wait_timeout")
        assert.truthy(srv:wait_log("message handler ran out of time: it waited longer than " ..
                                   "sandbox.wait_timeout %(0.5 s%) %(conn %d+ [%d.]+, closed " ..
                                   "with 1011%)", 2))
    end)

    it("gives each slice of a run its own instruction budget", function()
        local c = connect(srv)
        assert.are.equal("spun", c:echo("spin"))
        c:close()
    end)

    it("refuses coroutine.yield outside a coroutine with 1011", function()
        local c = connect(srv)
        c:send_text("yield")
        assert.are.equal(1011, c:expect_close(3))
        assert.truthy(srv:wait_log("coroutine.yield was called outside a coroutine", 2))
    end)

    it("stops a handler whose __close methods would loop after a budget stop", function()
        local c = connect(srv)
        c:send_text("trap")
        assert.are.equal(1011, c:expect_close(5))
        local d = connect(srv)
        assert.are.equal("still here", d:echo("still here"))
        d:close()
    end)

    it("lets app.upgrade wait, then accepts with its data, while others are served", function()
        local other = connect(srv)
        local t0 = now()
        local c = connect(srv, "sleep")
        assert.is_true(now() - t0 >= 0.09, "the handshake waited for app.upgrade")
        assert.are.equal("slept before open", c:recv_message(3))
        assert.are.equal("meanwhile", other:echo("meanwhile"))
        c:close()
        other:close()
    end)

    it("lets app.upgrade wait, then refuse", function()
        local res = ws.http(srv.port, ws.request { path = "/?sleep-refuse",
                                                   key = "dGhlIHNhbXBsZSBub25jZQ==" })
        assert.are.equal(401, res.status)
        assert.truthy(res.body:find("not after sleeping", 1, true), res.body)
    end)

    it("lets app.http wait, and answers pipelined requests in order", function()
        local res = ws.http(srv.port, "POST /a?ms=150 HTTP/1.1\r\nHost: x\r\n" ..
                                      "Content-Length: 5\r\n\r\nhello" ..
                                      "GET /b?ms=0 HTTP/1.1\r\nHost: x\r\n" ..
                                      "Connection: close\r\n\r\n")
        assert.are.equal(200, res.status)
        local first = res.raw:find("waited 150 for /a hello", 1, true)
        local second = res.raw:find("waited 0 for /b", 1, true)
        assert.truthy(first and second and first < second, res.raw)
    end)

    it("says where mw.sleep cannot wait: in a coroutine the app made", function()
        local c = connect(srv)
        c:send_text("cosleep")
        assert.are.equal(1011, c:expect_close(3))
        assert.truthy(srv:wait_log("mw.sleep can wait only in handlers and timer callbacks", 2))
    end)

    it("lets a run of the old code finish after a hot reload", function()
        local c = connect(srv)
        c:send_text("version:300")
        socket.sleep(0.05)
        helpers.write_file(dir .. "/app.lua", "VERSION = 2\n" .. APP)
        srv:signal("HUP")
        assert.truthy(srv:wait_log("reloaded", 3))
        assert.are.equal("version 1", c:recv_message(3))
        c:send_text("version:0")
        assert.are.equal("version 2", c:recv_message(3))
        c:close()
    end)
end)

describe("timers that wait", function()
    local srv
    setup(function()
        srv = server.start { app = server.app_dir { ["app.lua"] = [[
            local runs, overlap, active = 0, 0, 0
            mw.every(20, function()
                active = active + 1
                if active > 1 then overlap = overlap + 1 end
                runs = runs + 1
                mw.sleep(100)
                active = active - 1
            end)
            return { message = function(conn)
                conn:send(runs .. " " .. overlap)
            end }
        ]] } }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("never starts a repeating timer again while its last run waits", function()
        socket.sleep(0.6)
        local c = assert(ws.connect(srv.port))
        local runs, overlap = c:echo("?"):match("^(%d+) (%d+)$")
        assert.are.equal("0", overlap)
        assert.is_true(tonumber(runs) >= 3 and tonumber(runs) <= 7, "runs: " .. runs)
        c:close()
    end)
end)
