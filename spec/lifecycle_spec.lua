-- A WebSocket's life after the upgrade: idle pings and idle_timeout, the close handshake and
-- close_timeout, the code app.close hears, send-queue backpressure, the SIGTERM drain and
-- SIGHUP. Timers are set short (0.3-0.5 s); margins allow for ASan on a loaded machine.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"

local op = ws.op

-- Names connections ("name:x"), closes them on request, and logs what app.close hears:
-- "closed NAME ID CODE [REASON]".
local CLOSE_APP = [[
local app = {}
local names = {}

function app.message(conn, data, is_binary)
    local name = data:match("^name:(.*)$")
    if name then
        names[conn] = name
        conn:send("named " .. name)
    elseif data == "close" then
        conn:close(4000, "bye")
    elseif data == "close-then-send" then
        conn:close()
        local ok, err = conn:send("x")
        mw.log("info", "send after close:", ok, err)
        ok, err = conn:close(4000)
        mw.log("info", "close after close:", ok, err)
    else
        conn:send(data, is_binary)
    end
end

function app.close(conn, code, reason)
    mw.log("info", "closed", names[conn], conn.id, code, "[" .. reason .. "]")
    names[conn] = nil
end

return app
]]

local function now() return socket.gettime() end

local function connect(srv, opts) return assert(ws.connect(srv.port, opts)) end

-- Connects and gives the connection a name the app logs in app.close.
local function named(srv, name)
    local c = connect(srv)
    assert.are.equal("named " .. name, c:echo("name:" .. name))
    return c
end

-- Answers the server's close frame (already read) and waits for the server's TCP close.
local function answer_close(c, code)
    c:send_close(code)
    assert.is_true(c:wait_tcp_close(2), "the server closes TCP after the close handshake")
    c:abort()
end

describe("idle_timeout = 0.3", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { idle_timeout = 0.3 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("pings a silent client after about idle_timeout", function()
        local c = connect(srv)
        local t0 = now()
        local f = assert(c:recv_frame(2))
        local elapsed = now() - t0
        assert.are.equal(op.ping, f.opcode)
        assert.is_true(elapsed > 0.2 and elapsed < 1.2, "ping after " .. elapsed .. " s")
        c:send_frame { opcode = op.pong, payload = f.payload }
        c:close()
    end)

    it("keeps a client that answers each ping open, and pings it again", function()
        local c = connect(srv)
        local pings, deadline = 0, now() + 1.2
        while now() < deadline do
            local f, err = c:recv_frame(math.max(deadline - now(), 0.01))
            if f then
                assert.are.equal(op.ping, f.opcode)
                pings = pings + 1
                c:send_frame { opcode = op.pong, payload = f.payload }
            else
                assert.are.equal("timeout", err)
            end
        end
        assert.is_true(pings >= 2, pings .. " pings in 1.2 s")
        assert.are.equal("still open", c:echo("still open"))
        c:close()
    end)

    it("does not ping a client that keeps sending messages", function()
        local c = connect(srv)
        for i = 1, 10 do
            c:send_text("busy " .. i)
            local f = assert(c:recv_frame(1))
            assert.are.same({ op.text, "busy " .. i }, { f.opcode, f.payload })
            socket.sleep(0.1)
        end
        c:close()
    end)

    it("closes a client that never answers with 1001 within ~1 s, then TCP", function()
        local c = connect(srv)
        local t0 = now()
        local code, reason, before = c:expect_close(3)
        local elapsed = now() - t0
        assert.are.equal(1001, code, "close code (" .. tostring(reason) .. ")")
        assert.is_true(elapsed > 0.4 and elapsed < 1.5, "closed after " .. elapsed .. " s")
        assert.are.equal(1, #before, "one ping came first")
        assert.are.equal(op.ping, before[1].opcode)
        assert.is_true(c:wait_tcp_close(1))
        c:abort()
        assert.is_truthy(srv:wait_log("no answer to a ping within idle_timeout", 2))
    end)
end)

describe("the close handshake, close_timeout = 0.5", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = CLOSE_APP }
        srv = server.start { app = dir, config = "limits = { close_timeout = 0.5 }" }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("sends the app's close 4000 \"bye\" and reports it to app.close", function()
        local c = named(srv, "byeclient")
        c:send_text("close")
        local code, reason, before = c:expect_close()
        assert.are.same({ 4000, "bye", 0 }, { code, reason, #before })
        answer_close(c, code)
        assert.is_truthy(srv:wait_log("closed byeclient %S+ 4000 %[bye%]", 2))
    end)

    it("closes TCP within ~1.5 s when the client never answers the close", function()
        local c = connect(srv)
        c:send_text("close")
        assert.are.equal(4000, c:expect_close())
        local t0 = now()
        -- The server's FIN may come at once (a half close); the full close shows as a reset
        -- when the client writes to the closed socket. Pongs change nothing server-side.
        local reset_after
        while now() - t0 < 3 do
            socket.sleep(0.05)
            c.sock:settimeout(1)
            if not c.sock:send(ws.frame { opcode = op.pong }) then
                reset_after = now() - t0
                break
            end
        end
        c:abort()
        assert.is_truthy(reset_after, "the server closed the socket within 3 s")
        assert.is_true(reset_after > 0.3 and reset_after < 1.5,
            "closed " .. reset_after .. " s after its close frame (close_timeout 0.5)")
    end)

    it("closes TCP at once when the client answers the close", function()
        local c = connect(srv)
        c:send_text("close")
        assert.are.equal(4000, c:expect_close())
        c:send_close(4000)
        local t0 = now()
        assert.is_true(c:wait_tcp_close(1))
        assert.is_true(now() - t0 < 0.4, "TCP closed after " .. (now() - t0) .. " s")
        c:abort()
    end)

    it("reports a client that vanishes without a close frame as 1006", function()
        local c = named(srv, "vanisher")
        c:abort()
        assert.is_truthy(srv:wait_log("closed vanisher %S+ 1006 %[%]", 3), srv:log())
    end)

    it("names the closed connection by its numeric conn.id in app.close", function()
        local c = named(srv, "numbered")
        c:abort()
        assert.is_truthy(srv:wait_log("closed numbered %S+ 1006", 3))
        assert.is_truthy(srv:log():match("closed numbered %d+ 1006"),
            "conn.id is a number: " .. srv:log():match("closed numbered [^\n]*"))
    end)

    it("reports the client's close 4001 \"reason\" to app.close and echoes the code", function()
        local c = named(srv, "closer4001")
        local code, reason, tcp_closed = c:close(4001, "reason")
        assert.are.same({ 4001, true }, { code, tcp_closed })
        assert.are.equal("", reason)
        assert.is_truthy(srv:wait_log("closed closer4001 %S+ 4001 %[reason%]", 3), srv:log())
    end)

    it("reports an empty client close as 1005 and answers with an empty close", function()
        local c = named(srv, "emptycloser")
        c:send_frame { opcode = op.close, payload = "" }
        local f = assert(c:recv_frame())
        assert.are.same({ op.close, "" }, { f.opcode, f.payload })
        assert.is_true(c:wait_tcp_close(2))
        c:abort()
        assert.is_truthy(srv:wait_log("closed emptycloser %S+ 1005 %[%]", 3), srv:log())
    end)

    it("answers conn:send and conn:close after conn:close with nil, \"closed\"", function()
        local c = named(srv, "sendafter")
        c:send_text("close-then-send")
        local code, _, before = c:expect_close()
        assert.are.equal(1000, code)
        assert.are.equal(0, #before, "nothing sent after the close frame")
        answer_close(c, code)
        assert.is_truthy(srv:wait_log("send after close: nil closed", 2), srv:log())
        assert.is_truthy(srv:wait_log("close after close: nil closed", 2))
        assert.is_truthy(srv:wait_log("closed sendafter %S+ 1000 %[%]", 2))
    end)

    it("calls app.close once per connection", function()
        local c = named(srv, "once")
        c:send_text("close")
        assert.are.equal(4000, c:expect_close())
        answer_close(c, 4000)
        assert.is_truthy(srv:wait_log("closed once ", 2))
        socket.sleep(0.2)
        local _, count = srv:log():gsub("closed once ", "")
        assert.are.equal(1, count)
    end)
end)

describe("backpressure, send_buffer = 65536", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { send_buffer = 65536 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    local SIZE = 65536
    local function message(i)
        return string.pack(">I4", i) .. string.rep(string.char(i % 251), SIZE - 4)
    end
    -- A zero masking key keeps the payload as is: no Lua XOR over megabytes.
    local function frame(i)
        return ws.frame { opcode = op.binary, payload = message(i), key = "\0\0\0\0" }
    end

    it("stops reading from a client that does not read, then delivers every echo in order",
        function()
            local c = connect(srv)
            -- Send without reading until writes stop going through: two write attempts in a
            -- row (half a second) that move no byte mean the server no longer reads, rather
            -- than reads slowly.
            c.sock:settimeout(0.25)
            local sent, bytes, stalls = 0, 0, 0
            local pending, pos = frame(1), 1
            while stalls < 2 and bytes < 64 << 20 do
                local last, err, partial = c.sock:send(pending, pos)
                if last then
                    bytes = bytes + last - pos + 1
                    sent, stalls = sent + 1, 0
                    pending, pos = frame(sent + 1), 1
                else
                    assert.are.equal("timeout", err)
                    stalls = partial < pos and stalls + 1 or 0
                    bytes = bytes + partial - pos + 1
                    pos = partial + 1
                end
            end
            assert.are.equal(2, stalls, "the client's writes block before 64 MiB are sent")
            local t_blocked = now()

            -- Read everything while finishing the blocked message.
            local expected, got = sent + 1, 0
            local last, partial
            local deadline = now() + 15
            while got < expected do
                assert(now() < deadline, "only " .. got .. " of " .. expected .. " echoes came")
                if pending then
                    c.sock:settimeout(0)
                    last, _, partial = c.sock:send(pending, pos)
                    if last then pending = nil else pos = partial + 1 end
                end
                local f, err = c:recv_frame(0.05)
                if f then
                    got = got + 1
                    assert.are.same({ op.binary, true, SIZE }, { f.opcode, f.fin, #f.payload })
                    if f.payload ~= message(got) then
                        error(string.format("echo %d carries message %d or is damaged", got,
                            string.unpack(">I4", f.payload)))
                    end
                else
                    assert.are.equal("timeout", err)
                end
            end
            assert.are.same({ nil, "timeout" }, { c:recv_frame(0.2) }, "no extra echoes")
            assert.is_true(bytes > 4 * SIZE, "sent " .. bytes .. " bytes before blocking")
            assert.are.equal("after the flood", c:echo("after the flood"))
            c:close()
        end)
end)

describe("SIGTERM", function()
    -- Each test drains its own server; `finally` stops it even when an assertion fails first.
    local function start(opts)
        local srv = server.start(opts)
        finally(function() srv:stop() end)
        return srv
    end

    it("sends 1001 \"going away\" to every client and exits 0 once they answer", function()
        local srv = start { app = "examples/echo" }
        local a, b = connect(srv), connect(srv)
        assert.are.equal("a", a:echo("a"))
        assert.are.equal("b", b:echo("b"))
        srv:signal("TERM")
        for _, c in ipairs { a, b } do
            local code, reason = c:expect_close(3)
            assert.are.same({ 1001, "going away" }, { code, reason })
        end
        assert.is_nil(srv:wait_exit(0.3), "the server waits for the clients' answers")
        local t0 = now()
        answer_close(a, 1001)
        answer_close(b, 1001)
        assert.are.equal(0, srv:wait_exit(3))
        assert.is_true(now() - t0 < 2, "exited " .. (now() - t0) .. " s after the answers, "
            .. "not at shutdown_timeout (5 s)")
        assert.are.equal(0, srv:stop())
    end)

    it("refuses new connections and exits 0 at shutdown_timeout = 0.5 despite a silent client",
        function()
            local srv = start { app = "examples/echo",
                                config = "limits = { shutdown_timeout = 0.5 }" }
            local c = connect(srv)
            local port = srv.port
            local t0 = now()
            srv:signal("TERM")
            local code, reason = c:expect_close(3)
            assert.are.same({ 1001, "going away" }, { code, reason })
            local probe = socket.tcp()
            probe:settimeout(1)
            local ok, err = probe:connect("127.0.0.1", port)
            probe:close()
            assert.is_nil(ok, "a new connection during the drain is refused")
            assert.are.equal("connection refused", err)
            local status = srv:wait_exit(3)
            local elapsed = now() - t0
            assert.are.equal(0, status)
            assert.is_true(elapsed > 0.4 and elapsed < 2.5, "exited after " .. elapsed .. " s")
            assert.is_true(c:wait_tcp_close(1), "the silent client's connection is closed")
            c:abort()
            assert.is_truthy(srv:log():find("shutdown_timeout passed with 1 connection", 1, true))
            assert.are.equal(0, srv:stop())
        end)

    it("answers an upgrade that completes during the drain with 503", function()
        local srv = start { app = "examples/echo",
                            config = "limits = { shutdown_timeout = 0.5 }" }
        local req = ws.request { key = "dGhlIHNhbXBsZSBub25jZQ==" }
        local sock = assert(socket.connect("127.0.0.1", srv.port))
        sock:settimeout(3)
        sock:send(req:sub(1, 20))
        socket.sleep(0.2) -- accepted before the drain starts
        srv:signal("TERM")
        assert.is_truthy(srv:wait_log("shutting down", 2))
        sock:send(req:sub(21))
        local line = sock:receive("*l")
        sock:close()
        assert.are.equal("HTTP/1.1 503 Service Unavailable", line)
        assert.are.equal(0, srv:wait_exit(3))
        assert.are.equal(0, srv:stop())
    end)

    it("drops every connection at once on a second SIGTERM", function()
        local srv = start { app = "examples/echo" }
        local c = connect(srv)
        srv:signal("TERM")
        assert.are.equal(1001, c:expect_close(3))
        local t0 = now()
        srv:signal("TERM")
        assert.are.equal(0, srv:wait_exit(3))
        assert.is_true(now() - t0 < 1.5, "exited " .. (now() - t0) .. " s after the second")
        c:abort()
        assert.are.equal(0, srv:stop())
    end)
end)

describe("SIGHUP", function()
    local srv
    setup(function() srv = server.start { app = "examples/echo" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("does not drop an open connection", function()
        local c = connect(srv)
        assert.are.equal("before", c:echo("before"))
        srv:signal("HUP")
        assert.is_truthy(srv:wait_log("SIGHUP", 3))
        assert.are.equal("after", c:echo("after"))
        local d = connect(srv)
        assert.are.equal("new", d:echo("new"))
        d:close()
        local code, _, closed = c:close()
        assert.are.same({ 1000, true }, { code, closed })
    end)
end)
