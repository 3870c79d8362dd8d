-- Issue 10, item 7: no global bound on memory held for clients. Many connections each leaving
-- an unfinished fragmented message just under max_message pinned max_message each (at the
-- defaults one address could pin 16 GB). Now what unfinished messages hold is bounded per
-- address (limits.max_buffered_per_ip, close 1009) and in all (limits.max_buffered, close
-- 1013), and everyone else is served. Scaled down here: 1 MiB messages, 4 MiB per address,
-- 8 MiB in all.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"

local op = ws.op
local MiB = 1 << 20

local CONFIG = [[
limits = {
    max_message = 1 << 20,
    max_buffered_per_ip = 4 << 20,
    max_buffered = 8 << 20,
    messages_per_second = 0,
}
]]

local function rss_kib(pid)
    local f = io.open("/proc/" .. pid .. "/status")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return tonumber(s:match("VmRSS:%s*(%d+)"))
end

-- A connection from source that sends the first 900 KB of a message and stops there: the
-- server must keep them (a 1 MiB buffer) until the message is finished or the client goes.
local function pin(port, source)
    local c, err = ws.connect(port, { source = source })
    if not c then return nil, err end
    c:send_frame { opcode = op.text, fin = false, payload = ("p"):rep(900 * 1000) }
    return c
end

-- The connection's fate within timeout: "open" (no frame came) or the close code.
local function fate(c, timeout)
    local f, err = c:recv_frame(timeout)
    if not f then return err == "timeout" and "open" or err end
    if f.opcode == op.close then return (string.unpack(">I2", f.payload)), f.payload:sub(3) end
    return "frame " .. f.opcode
end

describe("buffers of unfinished messages", function()
    local srv, app

    setup(function()
        app = server.app_dir { ["app.lua"] = [[
            local app = {}
            function app.message(conn, data) conn:send(#data > 64 and ("#" .. #data) or data) end
            return app
        ]] }
        srv = server.start { app = app, config = CONFIG }
    end)

    teardown(function()
        if srv then srv:stop() end
        server.remove(app)
    end)

    it("one address pinning unfinished messages is closed with 1009 past its share; "
        .. "others are served", function()
        local bystander = assert(ws.connect(srv.port, { source = "127.0.0.42" }))
        local held, closed = {}, {}
        for i = 1, 8 do
            local c = assert(pin(srv.port, "127.0.0.41"))
            held[i] = c
            assert.are.equal("hello " .. i, bystander:echo("hello " .. i))
        end
        for i, c in ipairs(held) do
            local code, reason = fate(c, 0.5)
            if code ~= "open" then
                assert.are.equal(1009, code, "connection " .. i)
                assert.truthy(reason:find("max_buffered_per_ip", 1, true), reason)
                closed[#closed + 1] = i
            end
        end
        -- 4 MiB for the address: four 1 MiB buffers, the other four refused.
        assert.are.equal(4, #closed, "closed: " .. table.concat(closed, ","))
        assert.truthy(srv:wait_log("closing with 1009: your address has too much in unfinished "
            .. "messages", 2))
        -- The bystander's own address still has its whole share: a 1 MB fragmented message.
        bystander:send_frame { opcode = op.text, fin = false, payload = ("a"):rep(500000) }
        bystander:send_frame { opcode = op.continuation, payload = ("b"):rep(500000) }
        assert.are.equal("#1000000", bystander:recv_message())
        for _, c in ipairs(held) do c:abort() end
        bystander:close()
    end)

    it("many addresses together are closed with 1013 past max_buffered; RSS stays bounded, "
        .. "the bystander is served", function()
        local before = rss_kib(srv.pid)
        local bystander = assert(ws.connect(srv.port, { source = "127.0.0.52" }))
        local held = {}
        local t0 = socket.gettime()
        for a = 1, 4 do
            for k = 1, 3 do
                held[#held + 1] = assert(pin(srv.port, "127.0.0.6" .. a))
                local t = socket.gettime()
                assert.are.equal("ping", bystander:echo("ping"))
                assert.is_true(socket.gettime() - t < 1.0, "the bystander waited too long")
            end
        end
        local open, too_many = 0, 0
        for _, c in ipairs(held) do
            local code, reason = fate(c, 0.3)
            if code == "open" then
                open = open + 1
            else
                assert.are.equal(1013, code)
                assert.truthy(reason:find("try again later", 1, true), reason)
                too_many = too_many + 1
            end
        end
        -- 12 connections want 12 MiB; 8 MiB are allowed in all.
        assert.are.equal(8, open)
        assert.are.equal(4, too_many)
        local after = rss_kib(srv.pid)
        assert.is_true(after - before < 40 * 1024,
            ("RSS grew by %d KiB for 8 MiB of buffers"):format(after - before))
        for _, c in ipairs(held) do c:abort() end
        -- Once they are gone, the budget is free again.
        socket.sleep(0.2)
        local again = assert(pin(srv.port, "127.0.0.61"))
        assert.are.equal("open", fate(again, 0.3))
        again:abort()
        assert.are.equal("pong", bystander:echo("pong"))
        bystander:close()
        assert.is_true(socket.gettime() - t0 < 20)
    end)
end)
