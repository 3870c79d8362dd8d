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

local rss_kib = require("helpers").rss_kib

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

-- The send side: what the server queues for clients that do not read is bounded per
-- connection by max_send_buffer, and for all of them together by max_queued: past it, a
-- connection that is itself behind is dropped and its queue freed, and readers go on.
describe("send queues of clients that do not read", function()
    local srv, app

    setup(function()
        app = server.app_dir { ["app.lua"] = [[
            local app = {}
            local chunk = ("q"):rep(256 * 1024)
            function app.message(conn, data)
                local n = tonumber(data:match("^send (%d+)$"))
                if n then
                    for _ = 1, n do conn:send(chunk) end
                    return
                end
                conn:send(data)
            end
            return app
        ]] }
        -- Under AddressSanitizer freed memory waits in a 256 MB quarantine, which would count
        -- in VmRSS as if the server kept it.
        local asan = (os.getenv("ASAN_OPTIONS") or "") .. ":quarantine_size_mb=4"
        srv = server.start { app = app, env = { ASAN_OPTIONS = asan }, config = [[
            limits = { send_buffer = 1 << 20, max_send_buffer = 64 << 20, max_queued = 8 << 20,
                       messages_per_second = 0 }
        ]] }
    end)

    teardown(function()
        if srv then srv:stop() end
        server.remove(app)
    end)

    it("drops the slow readers past max_queued, frees their queues, and serves readers",
        function()
            local function rss() return rss_kib(srv.pid) end
            local before = rss()
            local reader = assert(ws.connect(srv.port, { source = "127.0.0.71" }))
            local slow = {}
            for i = 1, 6 do
                -- a socket that never reads: a small receive buffer fills at once
                local c = assert(ws.connect(srv.port, { source = "127.0.0.72" }))
                c.sock:setoption("keepalive", false)
                c:send_text("send 48") -- 12 MiB each (the kernel takes a few): 8 MiB queued in all
                slow[i] = c
                assert.are.equal("still here " .. i, reader:echo("still here " .. i))
            end
            assert.truthy(srv:wait_log("dropped: slow consumer while the send queues of all "
                .. "connections passed max_queued", 3))
            local dropped = select(2, srv:log():gsub("passed max_queued", ""))
            assert.is_true(dropped >= 1, "dropped " .. dropped)
            -- a client that asks for little is not behind, and is never dropped for it
            local modest = assert(ws.connect(srv.port, { source = "127.0.0.73" }))
            modest:send_text("send 2")
            socket.sleep(0.3)
            assert.are.equal(dropped, select(2, srv:log():gsub("passed max_queued", "")))
            modest:abort()
            -- the reader gets a big answer whole
            reader:send_text("send 8")
            for _ = 1, 8 do assert.are.equal(256 * 1024, #reader:recv_message()) end
            assert.is_true(rss() - before < 48 * 1024, "RSS grew by " .. (rss() - before) .. " KiB")
            for _, c in ipairs(slow) do c:abort() end
            reader:close()
        end)
end)

-- Request bodies for app.http wait in the connection until complete: they count in the same
-- bounds as unfinished messages, so many half-sent bodies cannot pin max_http_body each.
describe("request bodies that do not finish", function()
    it("count against max_buffered_per_ip: past it the request gets 503", function()
        local app = server.app_dir { ["app.lua"] = [[
            local app = {}
            function app.http(req) return 200, "got " .. #req.body end
            return app
        ]] }
        local srv = server.start { app = app, config = [[
            limits = { max_http_body = 4 << 20, max_buffered_per_ip = 4 << 20 }
        ]] }
        local held = {}
        local statuses = {}
        for i = 1, 4 do
            local sock = socket.tcp()
            assert(sock:bind("127.0.0.81", 0))
            sock:settimeout(5)
            assert(sock:connect("127.0.0.1", srv.port))
            sock:send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n"
                .. ("b"):rep(1500000))
            held[i] = sock
            sock:settimeout(0.5)
            local line = sock:receive("*l")
            statuses[i] = line and tonumber(line:match("^HTTP/1%.1 (%d+)")) or "waiting"
        end
        -- 1.5 MB kept in a 2 MiB buffer each: two fit in 4 MiB, the others are refused.
        assert.are.same({ "waiting", "waiting", 503, 503 }, statuses)
        assert.truthy(srv:log():find("refused with 503: your address has too much", 1, true))
        -- another address is served, and a finished body is answered
        local other = socket.tcp()
        assert(other:bind("127.0.0.82", 0))
        other:settimeout(5)
        assert(other:connect("127.0.0.1", srv.port))
        other:send("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n"
            .. "\r\nhello")
        local resp = other:receive("*a")
        assert.truthy(resp:find("^HTTP/1%.1 200") and resp:find("got 5", 1, true), resp)
        for _, s in ipairs(held) do s:close() end
        other:close()
        srv:stop()
        server.remove(app)
    end)
end)
