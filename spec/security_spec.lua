-- Attacks on a running server, one `describe` per defence: each performs the attack, checks the
-- exact answer (status, close code, log line) and that a legitimate client is still served
-- during or after it. Connection limits use several loopback source addresses (127.0.0.x).
local socket = require "socket"
local mime = require "mime"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"
local count = helpers.count

local op = ws.op

local function now() return socket.gettime() end

local function random_bytes(n)
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    return table.concat(t)
end

-- ---- clients from a given source address ----------------------------------------------------

-- A TCP connection to the server from source address src (bound before connecting).
local function tcp_from(src, port, timeout)
    local sock = socket.tcp()
    local ok, err = sock:bind(src, 0)
    if not ok then
        sock:close()
        return nil, "bind " .. src .. ": " .. tostring(err)
    end
    sock:settimeout(timeout or 5)
    ok, err = sock:connect("127.0.0.1", port)
    if not ok then
        sock:close()
        return nil, err
    end
    sock:setoption("tcp-nodelay", true)
    return sock
end

-- Reads a response head. Returns { status, status_line, headers (lower-case names) }.
local function read_head(sock)
    local lines = {}
    while true do
        local line, err = sock:receive("*l")
        if not line then return nil, err end
        if line == "" then break end
        lines[#lines + 1] = line
    end
    local headers = {}
    for i = 2, #lines do
        local name, value = lines[i]:match("^([^:]+):[ \t]*(.-)[ \t]*$")
        if name then headers[name:lower()] = value end
    end
    return { status_line = lines[1], status = tonumber((lines[1] or ""):match("^HTTP/1%.1 (%d+)")),
             headers = headers }
end

-- Reads one (unmasked, server) frame: opcode, payload.
local function read_frame(sock, timeout)
    sock:settimeout(timeout or 5)
    local h, err = sock:receive(2)
    if not h then return nil, err end
    local b0, b1 = h:byte(1, 2)
    local len = b1 & 0x7F
    if len >= 126 then
        local ext, eerr = sock:receive(len == 126 and 2 or 8)
        if not ext then return nil, eerr end
        len = string.unpack(len == 126 and ">I2" or ">i8", ext)
    end
    local payload = ""
    if len > 0 then
        payload, err = sock:receive(len)
        if not payload then return nil, err end
    end
    return b0 & 0x0F, payload
end

-- A minimal WebSocket client over a socket bound to a source address, built on ws_client's
-- request and frame builders.
local Client = {}
Client.__index = Client

-- Opens a WebSocket from src. Returns a client, or nil, err, response (status, headers, body)
-- when refused. opts as for ws.request, plus timeout.
local function connect_from(src, port, opts)
    opts = opts or {}
    local sock, err = tcp_from(src, port, opts.timeout)
    if not sock then return nil, err end
    local key = mime.b64(random_bytes(16))
    sock:send(ws.request(setmetatable({ key = key }, { __index = opts })))
    local resp, herr = read_head(sock)
    if not resp then
        sock:close()
        return nil, "handshake: " .. tostring(herr)
    end
    if resp.status ~= 101 then
        local len = tonumber(resp.headers["content-length"] or 0)
        resp.body = len > 0 and sock:receive(len) or ""
        resp.closed = select(2, sock:receive(1)) == "closed"
        sock:close()
        return nil, "refused with " .. tostring(resp.status), resp
    end
    if resp.headers["sec-websocket-accept"] ~= ws.accept_for(key) then
        sock:close()
        return nil, "bad Sec-WebSocket-Accept"
    end
    return setmetatable({ sock = sock, response = resp }, Client)
end

function Client:send_text(s) return self.sock:send(ws.frame { opcode = op.text, payload = s }) end

-- Sends a text message; returns the answer's payload (or nil, err).
function Client:echo(s)
    self:send_text(s)
    local opcode, payload = read_frame(self.sock)
    if not opcode then return nil, payload end
    return payload, opcode
end

-- Closes with 1000 and returns the server's close code.
function Client:close()
    self.sock:send(ws.frame { opcode = op.close, payload = string.pack(">I2", 1000) })
    local code
    repeat
        local opcode, payload = read_frame(self.sock, 2)
        if opcode == op.close then code = string.unpack(">I2", payload) end
    until not opcode or opcode == op.close
    self.sock:close()
    return code
end

function Client:abort() self.sock:close() end

-- ---- helpers --------------------------------------------------------------------------------

-- Sums the per-second summary lines of refused connections. Returns the 429 total, the 503
-- total and the number of summary lines.
local function refusal_totals(log)
    local n429, n503, lines = 0, 0, 0
    for a, b in log:gmatch("warn +refused (%d+) connections? with 429 %(per%-address limits%) "
        .. "and (%d+) with 503 %(server full%) in the last second") do
        n429, n503, lines = n429 + tonumber(a), n503 + tonumber(b), lines + 1
    end
    return n429, n503, lines
end

-- Waits (up to 3 s: the summary is written once a second) until the summary lines add up to
-- at least the given totals. Returns the totals and the number of lines.
local function wait_refusals(srv, n429, n503)
    local deadline = now() + 3
    local a, b, lines
    repeat
        a, b, lines = refusal_totals(srv:log())
        if a >= n429 and b >= n503 then break end
        socket.sleep(0.05)
    until now() > deadline
    return a, b, lines
end

local rss_kib = require("helpers").rss_kib

local function open_fds(pid)
    local p = io.popen("ls /proc/" .. pid .. "/fd | wc -l")
    local n = tonumber(p:read("a"))
    p:close()
    return n
end

-- A refusal as an HTTP answer: status, Retry-After, a body that explains, then the server
-- closes.
local function assert_refusal(resp, status, explains, fields)
    assert.is_truthy(resp, "a refusal, not a failed connection")
    assert.are.equal(status, resp.status, resp.status_line)
    assert.are.equal(#resp.body, tonumber(resp.headers["content-length"]), "Content-Length")
    assert.is_truthy(resp.body:find(explains, 1, true), "body: " .. resp.body)
    assert.are.equal("close", (resp.headers.connection or ""):lower(), "Connection: close")
    assert.is_true(resp.closed, "the server closes the connection after the answer")
    for name, value in pairs(fields or {}) do assert.are.equal(value, resp.headers[name], name) end
end

local ECHO_LOG_APP = [[
local app = {}
function app.upgrade(req)
    mw.log("info", "upgrade hook ran for", tostring(req.origin))
    return true
end
function app.message(conn, data, is_binary) conn:send(data, is_binary) end
return app
]]

-- ---- the limits and their keys --------------------------------------------------------------

describe("limits: every documented limit", function()
    local function read(path)
        local f = assert(io.open(path))
        local s = f:read("a")
        f:close()
        return s
    end

    it("has a key with the documented default in conf/moonwire.conf.lua", function()
        local doc = read("docs/configuration.md")
        local section = assert(doc:match("\n## limits\n(.-)\n## "))
        local documented = {}
        for key, default in section:gmatch("\n| `([%w_]+)` | `([^`]+)`") do
            documented[key] = assert(load("return " .. default))()
        end
        assert.is_true(next(documented) ~= nil, "the limits table in configuration.md")
        local env = {}
        assert(load(read("conf/moonwire.conf.lua"), "conf", "t", env))()
        for key, default in pairs(documented) do
            assert.are.equal(default, env.limits[key], "limits." .. key)
        end
        for key in pairs(env.limits) do
            assert.is_true(documented[key] ~= nil, "limits." .. key .. " is documented")
        end
    end)

    it("is accepted by --check in conf/moonwire.conf.lua", function()
        local bin = os.getenv("MOONWIRE_BIN") or "build/moonwire"
        local p = io.popen(bin .. " --check -c conf/moonwire.conf.lua examples/echo 2>&1")
        local out = p:read("a")
        local ok = p:close()
        assert.is_true(ok, out)
        assert.is_truthy(out:find("are valid", 1, true), out)
    end)
end)

-- ---- origin policy --------------------------------------------------------------------------

describe("origin policy: origins = exact + https://*.example.com", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = ECHO_LOG_APP }
        srv = server.start { app = dir, config = [[
            origins = { "https://example.com", "https://*.example.com", "http://localhost:8080" }
        ]] }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("answers a cross-site origin with 403 before the upgrade hook, and logs it", function()
        local c, err, resp = ws.connect(srv.port, { origin = "https://evil.com" })
        assert.is_nil(c, err)
        assert.are.equal(403, resp.status)
        assert.is_nil(resp.headers["sec-websocket-accept"], "no upgrade")
        assert.are.equal("origin https://evil.com is not allowed to connect here\n", resp.body)
        assert.is_truthy(srv:wait_log("refused with 403: origin https://evil%.com is not "
            .. "allowed to connect here", 2), srv:log())
        assert.is_nil(srv:log():find("upgrade hook ran for https://evil.com", 1, true),
            "the app never saw the refused request")
        local good = assert(ws.connect(srv.port, { origin = "https://example.com" }))
        assert.are.equal("served", good:echo("served"))
        good:close()
    end)

    local refused = {
        "https://example.com.evil.com", "https://evilexample.com", "http://example.com",
        "https://example.com:8443", "https://.example.com", "https://a.example.com.evil.com",
        "http://localhost:8081", "http://localhost", "null", "https://example.com/path",
        "https://user@example.com", "wss://example.com",
    }
    for _, origin in ipairs(refused) do
        it("refuses Origin: " .. origin .. " with 403", function()
            local c, _, resp = ws.connect(srv.port, { origin = origin })
            assert.is_nil(c)
            assert.are.equal(403, resp.status)
        end)
    end

    local allowed = {
        "https://example.com", "https://EXAMPLE.com", "https://example.com:443",
        "https://chat.example.com", "https://a.b.example.com", "http://localhost:8080",
    }
    for _, origin in ipairs(allowed) do
        it("accepts Origin: " .. origin, function()
            local c = assert(ws.connect(srv.port, { origin = origin }))
            assert.are.equal("ok", c:echo("ok"))
            c:close()
        end)
    end

    it("accepts a client without Origin (not a browser) by default", function()
        local c = assert(ws.connect(srv.port))
        assert.are.equal("no origin", c:echo("no origin"))
        c:close()
    end)

    it("answers a flood of 100 cross-site upgrades with 100 403s while serving a client",
        function()
            local good = assert(ws.connect(srv.port, { origin = "https://chat.example.com" }))
            local before = count(srv:log(), "refused with 403: origin https://flood.test")
            for i = 1, 100 do
                local c, _, resp = ws.connect(srv.port, { origin = "https://flood.test" })
                assert.is_nil(c)
                assert.are.equal(403, resp.status)
                if i % 25 == 0 then assert.are.equal("still " .. i, good:echo("still " .. i)) end
            end
            local deadline = now() + 2
            local lines = before
            repeat
                lines = count(srv:log(), "refused with 403: origin https://flood.test")
                if lines < before + 100 then socket.sleep(0.05) end
            until lines >= before + 100 or now() > deadline
            assert.are.equal(before + 100, lines, "one log line per refusal")
            good:close()
        end)
end)

describe("origin policy: the default (same host and port as Host)", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = ECHO_LOG_APP }
        srv = server.start { app = dir }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("accepts a page from the same host and port", function()
        local host = "127.0.0.1:" .. srv.port
        local c = assert(ws.connect(srv.port, { host = host, origin = "http://" .. host }))
        assert.are.equal("same", c:echo("same"))
        c:close()
    end)

    it("refuses another site, another port and the default port with 403", function()
        local host = "127.0.0.1:" .. srv.port
        for _, origin in ipairs { "http://evil.com", "http://127.0.0.1:" .. (srv.port + 1),
                                  "http://127.0.0.1", "http://evil.com:" .. srv.port } do
            local c, _, resp = ws.connect(srv.port, { host = host, origin = origin })
            assert.is_nil(c, origin)
            assert.are.equal(403, resp.status, origin)
        end
        assert.is_truthy(srv:wait_log("refused with 403: origin http://evil%.com is not", 2))
        assert.is_nil(srv:log():find("upgrade hook ran for http://evil", 1, true))
        local c = assert(ws.connect(srv.port, { host = host }))
        assert.are.equal("no origin", c:echo("no origin"))
        c:close()
    end)
end)

describe("origin policy: require_origin = true", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = 'origins = { "https://app.test" } require_origin = true' }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("answers a request without Origin with 403 and serves one with an allowed Origin",
        function()
            local c, _, resp = ws.connect(srv.port)
            assert.is_nil(c)
            assert.are.equal(403, resp.status)
            assert.are.equal("an Origin field is required to connect here\n", resp.body)
            assert.is_truthy(srv:wait_log("refused with 403: an Origin field is required", 2))
            c = assert(ws.connect(srv.port, { origin = "https://app.test" }))
            assert.are.equal("with origin", c:echo("with origin"))
            c:close()
        end)
end)

describe("origin policy: --origin replaces the config's origins", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = 'origins = { "https://config.test" }',
                             args = { "--origin", "https://flag.test,https://*.flag.test" } }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("accepts the flag's origins and refuses the file's with 403", function()
        for _, origin in ipairs { "https://flag.test", "https://sub.flag.test" } do
            local c = assert(ws.connect(srv.port, { origin = origin }))
            assert.are.equal(origin, c:echo(origin))
            c:close()
        end
        local c, _, resp = ws.connect(srv.port, { origin = "https://config.test" })
        assert.is_nil(c)
        assert.are.equal(403, resp.status)
    end)
end)

-- ---- authentication at the handshake --------------------------------------------------------

local AUTH_APP = [[
local app = {}
local SESSIONS = { abc123 = "alice" }

local function unescape(s)
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function app.upgrade(req)
    mw.log("info", "auth attempt", req.path, "query=" .. req.query,
           "session=" .. tostring(req.cookies.session),
           "key=" .. tostring(req.headers["x-api-key"]))
    local echo = req.query:match("echo=([^&]*)")
    if echo then return false, 400, "echoing", { ["X-Echo"] = unescape(echo) } end
    if req.query:match("banned=1") then
        return false, 403, "banned here", { ["X-Ban-Reason"] = "abuse" }
    end
    if req.headers["x-api-key"] == "over-quota" then
        return false, 429, "over quota", { ["Retry-After"] = "7" }
    end
    local user = SESSIONS[req.cookies.session or ""]
    if not user and req.query:match("token=t0ken") then user = "bob" end
    if not user then
        return false, 401, "log in first", { ["WWW-Authenticate"] = 'Bearer realm="chat"' }
    end
    return true, { data = { user = user } }
end

function app.message(conn, data) conn:send(conn.data.user .. ": " .. data) end
return app
]]

describe("auth at the handshake: app.upgrade refuses with any 4xx", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = AUTH_APP }
        srv = server.start { app = dir }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    -- Sends an upgrade request and reads the answer until the server closes (closed: it did
    -- within 3 s).
    local function raw(opts)
        local req = ws.request(setmetatable({ key = "dGhlIHNhbXBsZSBub25jZQ==" },
            { __index = opts }))
        local sock = assert(socket.connect("127.0.0.1", srv.port))
        sock:settimeout(3)
        sock:send(req)
        local data, _, partial = sock:receive("*a")
        sock:close()
        local resp = { raw = data or partial, closed = data ~= nil, headers = {} }
        local head, body = resp.raw:match("^(.-)\r\n\r\n(.*)$")
        assert.is_truthy(head, "a response head: " .. resp.raw)
        resp.status = tonumber(head:match("^HTTP/1%.1 (%d+)"))
        for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
            resp.headers[name:lower()] = value
        end
        resp.body = body
        return resp
    end

    it("answers no credentials with a proper 401: WWW-Authenticate, body, then close", function()
        local resp = raw { path = "/chat" }
        assert.are.equal("HTTP/1.1 401 Unauthorized", resp.raw:match("^[^\r]*"))
        assert.are.equal('Bearer realm="chat"', resp.headers["www-authenticate"])
        assert.are.equal("log in first\n", resp.body)
        assert.are.equal(#resp.body, tonumber(resp.headers["content-length"]))
        assert.are.equal("close", resp.headers.connection:lower())
        assert.is_nil(resp.headers["sec-websocket-accept"])
        assert.is_true(resp.closed, "the server closes after the answer")
        assert.is_truthy(srv:wait_log("refused with 401: log in first", 2))
    end)

    it("refuses with 403 and 429 and the hook's own headers", function()
        local resp = raw { path = "/?banned=1" }
        assert.are.same({ 403, "abuse", "banned here\n" },
            { resp.status, resp.headers["x-ban-reason"], resp.body })
        resp = raw { headers = { "X-Api-Key: over-quota" } }
        assert.are.same({ 429, "7", "over quota\n" },
            { resp.status, resp.headers["retry-after"], resp.body })
        assert.is_truthy(srv:wait_log("refused with 429: over quota", 2))
    end)

    it("sees cookies, headers and the query", function()
        local c = assert(ws.connect(srv.port, { path = "/room?x=1",
            headers = { "Cookie: theme=dark; session=abc123", "X-Api-Key: k1" } }))
        assert.are.equal("alice: hi", c:echo("hi"))
        c:close()
        assert.is_truthy(srv:wait_log("auth attempt /room query=x=1 session=abc123 key=k1", 2),
            srv:log())
        c = assert(ws.connect(srv.port, { path = "/?token=t0ken" }))
        assert.are.equal("bob: hi", c:echo("hi"))
        c:close()
    end)

    it("takes the first of a repeated cookie name: a forged second one changes nothing",
        function()
            local c = assert(ws.connect(srv.port,
                { headers = { "Cookie: session=abc123", "Cookie: session=forged" } }))
            assert.are.equal("alice: first", c:echo("first"))
            c:close()
            local resp = raw { headers = { "Cookie: session=forged; session=abc123" } }
            assert.are.equal(401, resp.status)
        end)

    it("answers 500, not a split response, when the hook puts CR LF in a header", function()
        local resp = raw { path = "/?echo=a%0d%0aSet-Cookie:%20pwned=1" }
        assert.are.equal(500, resp.status, resp.raw)
        assert.is_nil(resp.headers["set-cookie"], "no injected field")
        assert.is_nil(resp.headers["x-echo"])
    end)

    it("answers 200 wrong guesses with 401 while a logged-in client is served", function()
        local alice = assert(ws.connect(srv.port, { headers = { "Cookie: session=abc123" } }))
        for i = 1, 200 do
            local c, _, resp = ws.connect(srv.port,
                { headers = { "Cookie: session=guess" .. i } })
            assert.is_nil(c)
            assert.are.equal(401, resp.status)
            if i % 50 == 0 then assert.are.equal("alice: " .. i, alice:echo(tostring(i))) end
        end
        alice:close()
    end)
end)

-- ---- rate limits per connection -------------------------------------------------------------

describe("messages_per_second = 10, burst = 20", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { messages_per_second = 10, burst = 20 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("closes a flood of 100 messages with 1008 after the burst; others are served", function()
        local good = assert(ws.connect(srv.port))
        local c = assert(ws.connect(srv.port))
        local batch = {}
        for i = 1, 100 do batch[i] = ws.frame { opcode = op.text, payload = "m" .. i } end
        c:send_raw(table.concat(batch))
        local echoes = 0
        local data, kind, code, reason
        repeat
            data, kind, code, reason = c:recv_message(3)
            if data then
                echoes = echoes + 1
                assert.are.equal("m" .. echoes, data)
            end
        until not data
        assert.are.equal("close", kind)
        assert.are.same({ 1008, "message rate limit exceeded" }, { code, reason })
        assert.is_true(echoes >= 20 and echoes <= 22, echoes .. " echoes before the close")
        c:send_close(1008)
        assert.is_true(c:wait_tcp_close(2))
        c:abort()
        assert.is_truthy(srv:wait_log("closing with 1008: message rate limit exceeded", 2))
        assert.are.equal("unaffected", good:echo("unaffected"))
        good:close()
    end)

    it("never closes a client within rate and burst (25 messages at 20/s)", function()
        local c = assert(ws.connect(srv.port))
        for i = 1, 25 do
            assert.are.equal("ok " .. i, c:echo("ok " .. i))
            socket.sleep(0.05)
        end
        local code = c:close()
        assert.are.equal(1000, code)
    end)
end)

describe("messages_per_second = 20, burst = 5, throttle = true", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config =
            "limits = { messages_per_second = 20, burst = 5, throttle = true }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("pauses reading after a burst of 25 instead of closing; others are served", function()
        local good = assert(ws.connect(srv.port))
        local c = assert(ws.connect(srv.port))
        local batch = {}
        for i = 1, 25 do batch[i] = ws.frame { opcode = op.text, payload = "t" .. i } end
        local t0 = now()
        c:send_raw(table.concat(batch))
        for i = 1, 25 do assert.are.equal("t" .. i, c:recv_message(3)) end
        c:send_text("after the burst")
        -- 25 messages against a bucket of 5 at 20/s: no reading for about a second.
        local t1 = now()
        assert.are.equal("good", good:echo("good"))
        assert.is_true(now() - t1 < 0.5, "another client waited " .. (now() - t1) .. " s")
        assert.are.equal("after the burst", c:recv_message(4))
        local waited = now() - t0
        assert.is_true(waited > 0.7 and waited < 3, "the next message waited " .. waited .. " s")
        assert.are.equal("still open", c:echo("still open"))
        assert.are.equal(1000, (c:close()))
        assert.is_nil(srv:log():find("closing with 1008", 1, true), "nobody was closed")
        good:close()
    end)
end)

describe("bytes_per_second = 262144", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { bytes_per_second = 262144 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    local SIZE = 128 * 1024
    local function message(i) return string.rep(string.char(64 + i), SIZE) end

    it("reads 640 KiB at about the rate without closing; another client is not slowed",
        function()
            local good = assert(ws.connect(srv.port))
            local c = assert(ws.connect(srv.port, { timeout = 10 }))
            local frames = {}
            for i = 1, 5 do
                frames[i] = ws.frame { opcode = op.binary, payload = message(i), key = "\0\0\0\0" }
            end
            local data, pos = table.concat(frames), 1
            local t0 = now()
            c.sock:settimeout(0)
            local function push()
                if pos > #data then return end
                local last, _, partial = c.sock:send(data, pos)
                pos = (last or partial) + 1
            end
            push()
            local t1 = now()
            assert.are.equal(message(9), (good:echo(message(9), true)))
            local good_time = now() - t1
            while pos <= #data do
                push()
                socket.sleep(0.01)
                assert.is_true(now() - t0 < 10, "the upload stalled")
            end
            for i = 1, 5 do
                local got = c:recv_message(10)
                assert.is_true(got == message(i), "echo " .. i .. " intact")
            end
            local elapsed = now() - t0
            -- 640 KiB against a bucket of 256 KiB filling at 256 KiB/s: about 1.5 s.
            assert.is_true(elapsed > 1.0 and elapsed < 5, "640 KiB took " .. elapsed .. " s")
            assert.is_true(good_time < 0.5, "the other client waited " .. good_time .. " s")
            assert.are.equal(1000, (c:close()))
            good:close()
        end)
end)

-- ---- connection limits per address and in total ---------------------------------------------

describe("connects_per_second = 5 per address", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { connects_per_second = 5 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("answers new connections past 5 a second with 429; another address is served",
        function()
            local ok, refused = {}, 0
            for _ = 1, 12 do
                local c, _, resp = connect_from("127.0.0.11", srv.port)
                if c then
                    ok[#ok + 1] = c
                else
                    refused = refused + 1
                    assert_refusal(resp, 429, "too many new connections from your address; "
                        .. "slow down", { ["retry-after"] = "1" })
                end
            end
            -- A bucket of 5 that refills at 5/s: 5 at once, perhaps one more while connecting.
            assert.is_true(#ok >= 5 and #ok <= 6, #ok .. " of 12 connected")
            local legit = assert(connect_from("127.0.0.12", srv.port))
            assert.are.equal("other address", legit:echo("other address"))
            legit:close()
            for _, c in ipairs(ok) do assert.are.equal("held", c:echo("held")) end
            local n429, n503, lines = wait_refusals(srv, refused, 0)
            assert.are.same({ refused, 0 }, { n429, n503 }, srv:log())
            assert.is_true(lines <= 2, lines .. " summary lines for " .. refused .. " refusals")
            assert.is_nil(srv:log():find("refused with 429", 1, true), "no line per refusal")
            for _, c in ipairs(ok) do c:close() end
        end)

    it("lets the address connect again after a second", function()
        for _ = 1, 8 do
            local c = connect_from("127.0.0.13", srv.port)
            if c then c:close() end
        end
        local c, err = connect_from("127.0.0.13", srv.port)
        assert.is_nil(c, "the bucket is empty")
        assert.are.equal("refused with 429", err)
        socket.sleep(1.1)
        c = assert(connect_from("127.0.0.13", srv.port))
        assert.are.equal("back", c:echo("back"))
        c:close()
    end)
end)

describe("per_ip = 5", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { per_ip = 5 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("answers a 6th open connection from one address with 429; others are served",
        function()
            local held = {}
            for i = 1, 5 do held[i] = assert(connect_from("127.0.0.21", srv.port)) end
            for _ = 1, 10 do
                local c, _, resp = connect_from("127.0.0.21", srv.port)
                assert.is_nil(c)
                assert_refusal(resp, 429, "too many connections from your address; close some "
                    .. "first", { ["retry-after"] = "1" })
            end
            local legit = assert(connect_from("127.0.0.22", srv.port))
            assert.are.equal("other address", legit:echo("other address"))
            for i, c in ipairs(held) do assert.are.equal("held " .. i, c:echo("held " .. i)) end
            local n429, n503, lines = wait_refusals(srv, 10, 0)
            assert.are.same({ 10, 0 }, { n429, n503 }, srv:log())
            assert.is_true(lines <= 2, lines .. " summary lines for 10 refusals")
            assert.is_nil(srv:log():find("refused with 429", 1, true), "no line per refusal")

            -- Closing one frees its place.
            held[1]:close()
            local again
            local deadline = now() + 2
            repeat
                again = connect_from("127.0.0.21", srv.port)
                if not again then socket.sleep(0.05) end
            until again or now() > deadline
            assert.is_truthy(again, "a place was freed by the close")
            assert.are.equal("again", again:echo("again"))
            again:close()
            for i = 2, 5 do held[i]:close() end
            legit:close()
        end)

    it("counts TCP connections that have sent nothing yet", function()
        local silent = {}
        for i = 1, 5 do silent[i] = assert(tcp_from("127.0.0.23", srv.port)) end
        socket.sleep(0.1)
        local c, err = connect_from("127.0.0.23", srv.port)
        assert.is_nil(c)
        assert.are.equal("refused with 429", err)
        local legit = assert(connect_from("127.0.0.24", srv.port))
        assert.are.equal("fine", legit:echo("fine"))
        legit:close()
        for _, s in ipairs(silent) do s:close() end
    end)
end)

describe("per_ip = 5, max_connections = 100: one address holding many connections", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config =
            "limits = { per_ip = 5, max_connections = 100, handshake_timeout = 30 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("tells the address 429 and still serves other addresses", function()
        -- 5 admitted, then 1125 that wait for their request to be told 429: together past
        -- max_connections + 1024, where the server starts closing new connections at once.
        local socks = {}
        finally(function() for _, s in ipairs(socks) do s:close() end end)
        for i = 1, 1130 do socks[i] = assert(tcp_from("127.0.0.50", srv.port)) end
        socket.sleep(0.2)
        local req = ws.request { key = "dGhlIHNhbXBsZSBub25jZQ==" }
        socks[10]:settimeout(3)
        socks[10]:send(req)
        assert.are.equal("HTTP/1.1 429 Too Many Requests", socks[10]:receive("*l"))
        local c, err = connect_from("127.0.0.51", srv.port, { timeout = 2 })
        assert.is_truthy(c, "a client from another address, with 5 of 100 places taken, was "
            .. "not served (" .. tostring(err) .. "): one address's waiting refusals filled the "
            .. "server-wide allowance of 1024, so per_ip does not bound what one address holds")
        assert.are.equal("other address", c:echo("other address"))
        c:close()
    end)
end)

describe("max_connections = 20", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { max_connections = 20 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    -- Fills the server: one legitimate client, then 19 from the attacker.
    local function fill()
        -- The previous test's clients may still be on their way out.
        local legit, deadline = nil, now() + 2
        repeat
            legit = connect_from("127.0.0.31", srv.port)
            if not legit then socket.sleep(0.05) end
        until legit or now() > deadline
        assert.is_truthy(legit, "room for the legitimate client")
        local held = {}
        for i = 1, 19 do held[i] = assert(connect_from("127.0.0.32", srv.port)) end
        return legit, held
    end

    it("answers the 21st connection with 503 and serves again once there is room", function()
        local legit, held = fill()
        for i = 1, 10 do
            local c, _, resp = connect_from("127.0.0." .. (32 + i % 3), srv.port)
            assert.is_nil(c)
            assert_refusal(resp, 503, "the server is full; try again later",
                { ["retry-after"] = "1" })
        end
        assert.are.equal("during", legit:echo("during"))
        local n429, n503, lines = wait_refusals(srv, 0, 10)
        assert.are.same({ 0, 10 }, { n429, n503 }, srv:log())
        assert.is_true(lines <= 2, lines .. " summary lines for 10 refusals")
        assert.is_nil(srv:log():find("refused with 503", 1, true), "no line per refusal")
        for _, c in ipairs(held) do c:close() end
        local late
        local deadline = now() + 2
        repeat
            late = connect_from("127.0.0.36", srv.port)
            if not late then socket.sleep(0.05) end
        until late or now() > deadline
        assert.is_truthy(late, "room again after the attacker left")
        assert.are.equal("late", late:echo("late"))
        late:close()
        legit:close()
    end)

    it("closes connections at once past max_connections + 1024 waiting refusals", function()
        local legit, held = fill()
        local before = select(2, refusal_totals(srv:log()))
        -- 1024 connections that say nothing: each waits for its request to be told 503. They
        -- come from 64 addresses, 16 each: one address may keep only 16 waiting (see the
        -- per_ip spec), so reaching the server-wide slack takes many.
        local silent = {}
        for i = 1, 1024 do
            silent[i] = assert(tcp_from("127.0.1." .. (1 + (i - 1) // 16), srv.port))
        end
        socket.sleep(0.2)
        local closed_at_once = 0
        for _ = 1, 3 do
            local probe = assert(tcp_from("127.0.0.34", srv.port))
            local t0 = now()
            probe:settimeout(1)
            local data, err = probe:receive(1)
            probe:close()
            assert.is_nil(data, "no answer, just the close")
            if (err == "closed" or err == "connection reset by peer") and now() - t0 < 0.5 then
                closed_at_once = closed_at_once + 1
            end
        end
        assert.are.equal(3, closed_at_once, "probes closed at once")
        local still_open = 0
        for _, s in ipairs(silent) do
            s:settimeout(0)
            local _, err = s:receive(1)
            if err == "timeout" then still_open = still_open + 1 end
        end
        assert.is_true(still_open >= 1000, still_open .. " of the 1024 waiting ones kept")
        assert.are.equal("served", legit:echo("served"))
        local _, n503 = wait_refusals(srv, 0, before + 3)
        assert.is_true(n503 >= before + 3, "the closed ones are counted in the summary")
        for _, s in ipairs(silent) do s:close() end
        for _, c in ipairs(held) do c:close() end
        legit:close()
        local late
        local deadline = now() + 3
        repeat
            late = connect_from("127.0.0.35", srv.port)
            if not late then socket.sleep(0.05) end
        until late or now() > deadline
        assert.is_truthy(late, "served once the flood is gone")
        assert.are.equal("late", late:echo("late"))
        late:close()
    end)
end)

-- ---- slow and hostile clients ---------------------------------------------------------------

describe("slowloris: handshake_timeout = 0.5", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { handshake_timeout = 0.5 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("answers 20 clients trickling their request with 408; others are served", function()
        local req = ws.request { key = "dGhlIHNhbXBsZSBub25jZQ==" }
        local socks = {}
        for i = 1, 20 do socks[i] = assert(tcp_from("127.0.0.41", srv.port)) end
        local t0 = now()
        local pos, legit_time = 1, nil
        -- One byte each every 50 ms for 1.5 s: far from a whole request.
        while now() - t0 < 1.5 do
            for _, s in ipairs(socks) do
                s:settimeout(0)
                s:send(req:sub(pos, pos))
            end
            pos = pos + 1
            if not legit_time and now() - t0 > 0.2 then
                local t1 = now()
                local c = assert(ws.connect(srv.port))
                assert.are.equal("served", c:echo("served"))
                c:close()
                legit_time = now() - t1
            end
            socket.sleep(0.05)
        end
        assert.is_true(pos < #req, "the request was never complete")
        for i, s in ipairs(socks) do
            s:settimeout(3)
            local data, _, partial = s:receive("*a")
            data = data or partial
            s:close()
            assert.are.equal("HTTP/1.1 408 Request Timeout", data:match("^[^\r]*"), "client " .. i)
        end
        assert.is_true(legit_time < 1, "the legitimate client took " .. legit_time .. " s")
        local log = srv:log()
        assert.are.equal(20, count(log, "refused with 408: the upgrade request did not "
            .. "complete within handshake_timeout"))
    end)
end)

describe("idle_timeout = 0.4", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { idle_timeout = 0.4 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("pings 10 silent clients, closes them with 1001, keeps one that answers", function()
        local silent = {}
        for i = 1, 10 do silent[i] = assert(ws.connect(srv.port)) end
        local alive = assert(ws.connect(srv.port))
        local t0 = now()
        local pongs = 0
        while now() - t0 < 1.6 do
            local f = alive:recv_frame(0.05)
            if f and f.opcode == op.ping then
                alive:send_frame { opcode = op.pong, payload = f.payload }
                pongs = pongs + 1
            end
        end
        for i, c in ipairs(silent) do
            local code, reason, before = c:expect_close(2)
            assert.are.same({ 1001, "idle timeout" }, { code, reason }, "client " .. i)
            assert.are.equal(op.ping, before[1] and before[1].opcode, "a ping came first")
            c:abort()
        end
        assert.is_true(pongs >= 2, pongs .. " pings answered")
        assert.are.equal("alive", alive:echo("alive"))
        alive:close()
        assert.are.equal(10, count(srv:log(), "closing: no answer to a ping within idle_timeout"))
    end)
end)

local SLOW_APP = [[
local app = {}
local CHUNK = string.rep("x", 65536)

function app.message(conn, data)
    if data == "fill" then
        -- Sends until conn:send reports backpressure, then one marker.
        local n = 0
        repeat n = n + 1 until conn:send(CHUNK, true) ~= true or n >= 4096
        mw.log("info", "backpressure after", n, "messages")
        conn:send("filled " .. n)
        return
    end
    local flood = tonumber(data:match("^flood (%d+)$"))
    if flood then
        -- Ignores backpressure.
        for i = 1, flood do
            local ok, err = conn:send(CHUNK, true)
            if ok == nil then mw.log("info", "flood stopped at", i, err) return end
        end
        mw.log("info", "flood sent all", flood)
        return
    end
    conn:send(data)
end

function app.drain(conn)
    mw.log("info", "drain", conn.id)
    conn:send("drained")
end
return app
]]

describe("slow readers: send_buffer = 256 KiB, max_send_buffer = 1 MiB", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = SLOW_APP }
        srv = server.start { app = dir,
            config = "limits = { send_buffer = 256 << 10, max_send_buffer = 1 << 20 }" }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("reports backpressure past send_buffer and runs app.drain once the queue empties",
        function()
            local good = assert(ws.connect(srv.port))
            local c = assert(ws.connect(srv.port))
            c:send_text("fill")
            local n = tonumber(srv:wait_log("backpressure after (%d+) messages", 3))
            assert.is_truthy(n, srv:log())
            assert.is_true(n * 65536 > 256 << 10, n .. " messages before backpressure")
            socket.sleep(0.2)
            assert.is_nil(srv:log():find("info +drain"), "no drain while the client reads nothing")
            assert.are.equal("during", good:echo("during"))
            for i = 1, n do
                local data, opcode = c:recv_message(5)
                assert.are.equal(op.binary, opcode, "message " .. i)
                assert.are.equal(65536, #data)
            end
            assert.are.equal("filled " .. n, c:recv_message(5))
            assert.are.equal("drained", c:recv_message(5), "app.drain ran and could send")
            assert.are.equal(1, count(srv:log(), "drain "))
            assert.are.equal(1000, (c:close()))
            good:close()
        end)

    it("closes a client that stops reading with a readable 1008 \"slow consumer\"", function()
        local good = assert(ws.connect(srv.port))
        local c = assert(ws.connect(srv.port, { timeout = 5 }))
        c:send_text("flood 1024") -- 64 MiB if nobody stopped it
        local stopped = tonumber(srv:wait_log("flood stopped at (%d+) closed", 5))
        assert.is_truthy(stopped, "the app's sends fail once the client is dropped:\n"
            .. srv:log():sub(-2000))
        assert.is_true(stopped < 1024, "stopped after " .. stopped .. " of 1024")
        assert.is_truthy(srv:wait_log("closing with 1008: slow consumer", 2))
        assert.are.equal("unaffected", good:echo("unaffected"))
        -- What the client then reads: whole 64 KiB messages, then the close frame.
        local frames = 0
        local code, reason, err
        while true do
            local f, ferr = c:recv_frame(3)
            if not f then
                err = ferr
                break
            end
            if f.opcode == op.close then
                code, reason = string.unpack(">I2", f.payload), f.payload:sub(3)
                break
            end
            assert.are.equal(op.binary, f.opcode, "frame " .. frames + 1)
            assert.is_true(#f.payload == 65536 and not f.payload:find("[^x]"),
                "frame " .. frames + 1 .. " is a whole message")
            frames = frames + 1
        end
        c:abort()
        -- On a failed read, ws_client keeps the unfinished frame in c.buf.
        local inside = code == nil and c.buf:find("\x88\x0f\x03\xf0slow consumer", 1, true)
        assert.are.same({ 1008, "slow consumer" }, { code, reason }, string.format(
            "after %d whole messages the client read %q instead of a close frame%s", frames,
            tostring(err), inside and string.format(": the close frame's bytes came at byte "
            .. "%d of an unfinished %d-byte frame (the unsent rest of a partly written frame "
            .. "was dropped)", inside, #c.buf) or ""))
        good:close()
    end)
end)

describe("frames trickled a byte at a time", function()
    local srv
    setup(function() srv = server.start { app = "examples/echo" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("assembles frames and fragments from 3 interleaved tricklers; others are served",
        function()
            local good = assert(ws.connect(srv.port))
            local clients, streams = {}, {}
            for i = 1, 3 do
                clients[i] = assert(ws.connect(srv.port))
                local text = string.rep(tostring(i), 150) .. " \u{263A}"
                streams[i] = ws.frame { opcode = op.text, payload = text }
                    .. ws.frame { opcode = op.text, payload = "frag-" .. i .. "-", fin = false }
                    .. ws.frame { opcode = op.ping, payload = "p" .. i }
                    .. ws.frame { opcode = op.continuation, payload = "end" }
                clients[i].text = text
            end
            local longest = 0
            for i = 1, 3 do longest = math.max(longest, #streams[i]) end
            for pos = 1, longest do
                for i = 1, 3 do
                    if pos <= #streams[i] then clients[i]:send_raw(streams[i]:sub(pos, pos)) end
                end
                if pos % 100 == 0 then
                    assert.are.equal("during " .. pos, good:echo("during " .. pos))
                end
                socket.sleep(0.001)
            end
            for i, c in ipairs(clients) do
                assert.are.equal(c.text, c:recv_message(3))
                local f = assert(c:recv_frame(3))
                assert.are.same({ op.pong, "p" .. i }, { f.opcode, f.payload })
                assert.are.equal("frag-" .. i .. "-end", c:recv_message(3))
                assert.are.equal(1000, (c:close()))
            end
            good:close()
        end)
end)

describe("frame length claims: max_message = 1 MiB", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { max_message = 1 << 20 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    -- Sends only a frame header claiming len bytes; returns the close code, reason and time.
    local function claim(f)
        local c = assert(ws.connect(srv.port))
        local t0 = now()
        c:send_frame(f)
        local code, reason = c:expect_close(2)
        local elapsed = now() - t0
        c:abort()
        return code, reason, elapsed
    end

    it("closes with 1009 on a 64-bit claim of 2^62 bytes before any payload", function()
        local code, reason, elapsed = claim { opcode = op.binary, len = 1 << 62, len_size = 8 }
        assert.are.same({ 1009, "message larger than max_message" }, { code, reason })
        assert.is_true(elapsed < 1, "answered after " .. elapsed .. " s")
        assert.is_truthy(srv:wait_log("closing with 1009: message larger than max_message", 2))
    end)

    it("closes with 1009 on a claim of max_message + 1 in 8 length bytes", function()
        local code = claim { opcode = op.binary, len = (1 << 20) + 1, len_size = 8 }
        assert.are.equal(1009, code)
    end)

    it("closes with 1009 when a fragment's claim would pass max_message", function()
        local c = assert(ws.connect(srv.port))
        c:send_frame { opcode = op.binary, fin = false, payload = string.rep("a", 700000),
                       key = "\0\0\0\0" }
        c:send_frame { opcode = op.continuation, len = 400000, len_size = 8 }
        local code, reason = c:expect_close(2)
        c:abort()
        assert.are.same({ 1009, "message larger than max_message" }, { code, reason })
    end)

    it("closes with 1002 on a length with the most significant bit set", function()
        local c = assert(ws.connect(srv.port))
        c:send_raw(string.char(0x82, 0xFF) .. string.pack(">I8", 1 << 63) .. "\0\0\0\0")
        local code = c:expect_close(2)
        c:abort()
        assert.are.equal(1002, code)
    end)

    it("still echoes a message of exactly max_message", function()
        local c = assert(ws.connect(srv.port, { timeout = 10 }))
        local data = string.rep("m", 1 << 20)
        c:send_frame { opcode = op.binary, payload = data, key = "\0\0\0\0" }
        assert.is_true(c:recv_message(10) == data, "1 MiB echoed intact")
        assert.are.equal(1000, (c:close()))
    end)
end)

describe("header limits: max_headers = 20, max_header_bytes = 2048", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { max_headers = 20, max_header_bytes = 2048 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    local KEY = "dGhlIHNhbXBsZSBub25jZQ=="
    -- A request with n header fields in all (5 are the upgrade's own).
    local function with_fields(n)
        local extra = {}
        for i = 1, n - 5 do extra[i] = "X-F" .. i .. ": v" end
        return ws.request { key = KEY, headers = extra }
    end
    -- A request of exactly size bytes.
    local function of_size(size)
        local base = #ws.request { key = KEY, headers = { "X-Pad: " } }
        return ws.request { key = KEY, headers = { "X-Pad: " .. string.rep("p", size - base) } }
    end

    local function status(resp) return resp and resp.status end

    it("accepts 20 fields and answers 21 with 431", function()
        local resp = ws.http(srv.port, with_fields(21))
        assert.are.equal(431, status(resp))
        assert.are.equal("too many header fields\n", resp.body)
        assert.is_truthy(srv:wait_log("refused with 431: too many header fields", 2))
        local sock = assert(socket.connect("127.0.0.1", srv.port))
        sock:settimeout(3)
        sock:send(with_fields(20))
        assert.are.equal("HTTP/1.1 101 Switching Protocols", sock:receive("*l"))
        sock:close()
    end)

    it("accepts a 2048-byte head and answers 2049 bytes with 431", function()
        local resp = ws.http(srv.port, of_size(2049))
        assert.are.equal(431, status(resp))
        assert.is_truthy(srv:wait_log("refused with 431: request head larger than "
            .. "max_header_bytes", 2))
        local sock = assert(socket.connect("127.0.0.1", srv.port))
        sock:settimeout(3)
        sock:send(of_size(2048))
        assert.are.equal("HTTP/1.1 101 Switching Protocols", sock:receive("*l"))
        sock:close()
    end)

    it("answers a head that never ends with 431 as soon as it passes the limit", function()
        local sock = assert(socket.connect("127.0.0.1", srv.port))
        sock:settimeout(3)
        sock:send("GET / HTTP/1.1\r\nHost: x\r\n")
        for _ = 1, 4 do sock:send("X-Long: " .. string.rep("a", 500) .. "\r\n") end
        local line = sock:receive("*l")
        sock:close()
        assert.are.equal("HTTP/1.1 431 Request Header Fields Too Large", line)
    end)

    it("answers 100 oversized requests with 431 while serving a client", function()
        local good = assert(ws.connect(srv.port))
        for i = 1, 100 do
            local req = i % 2 == 0 and with_fields(40) or of_size(4000)
            assert.are.equal(431, status(ws.http(srv.port, req)), "request " .. i)
        end
        assert.are.equal("served", good:echo("served"))
        good:close()
    end)
end)

-- ---- many half-open handshakes --------------------------------------------------------------

describe("10,000 half-open handshakes (handshake_timeout = 30)", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo", config = "limits = { handshake_timeout = 30 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("still lets a legitimate client connect and echo within 1 s", function()
        -- Spread over 40 source addresses, 250 each, so per_ip (1000) refuses none of them:
        -- the realistic attack comes from many addresses.
        local req = ws.request { key = "dGhlIHNhbXBsZSBub25jZQ==" }
        local half = req:sub(1, #req // 2)
        local socks = {}
        finally(function() for _, s in ipairs(socks) do s:close() end end)
        local fds_before = open_fds(srv.pid)
        local t0 = now()
        for i = 1, 10000 do
            local s = assert(tcp_from("127.0.0." .. (2 + (i - 1) % 40), srv.port))
            assert(s:send(half))
            socks[i] = s
        end
        local open_time = now() - t0
        -- Until the server has accepted them all.
        local deadline = now() + 10
        while open_fds(srv.pid) < fds_before + 10000 and now() < deadline do socket.sleep(0.05) end
        assert.is_true(open_fds(srv.pid) >= fds_before + 10000, "the server holds them all")
        local rss = rss_kib(srv.pid)

        local t1 = now()
        local c = assert(ws.connect(srv.port, { timeout = 2 }))
        assert.are.equal("through the crowd", c:echo("through the crowd"))
        local legit_time = now() - t1
        c:close()

        local open = 0
        for _, s in ipairs(socks) do
            s:settimeout(0)
            local _, err = s:receive(1)
            if err == "timeout" then open = open + 1 end
        end
        -- Some of them finish their request and are upgraded.
        for i = 1, 10000, 100 do
            socks[i]:settimeout(3)
            socks[i]:send(req:sub(#half + 1))
            assert.are.equal("HTTP/1.1 101 Switching Protocols", socks[i]:receive("*l"))
        end
        print(string.format("\n# 10,000 half-open handshakes: opened in %.2f s, server RSS "
            .. "%.1f MiB, legitimate echo in %.3f s", open_time, rss / 1024, legit_time))
        assert.are.equal(10000, open, "every half-open connection is still held")
        assert.is_true(legit_time < 1, "the legitimate client took " .. legit_time .. " s")
        assert.is_true(rss < 200 * 1024, "server RSS " .. rss .. " KiB with 10,000 held")
        assert.is_nil(srv:log():find("refused", 1, true), "none was refused")

        for _, s in ipairs(socks) do s:close() end
        socks = {}
        deadline = now() + 10
        while open_fds(srv.pid) > fds_before + 10 and now() < deadline do socket.sleep(0.05) end
        assert.is_true(open_fds(srv.pid) <= fds_before + 10, "the server let them all go")
    end)
end)

-- ---- lifecycle under load -------------------------------------------------------------------

describe("SIGINT with open, silent and half-open clients (shutdown_timeout = 1)", function()
    it("closes every WebSocket with 1001 \"going away\" and exits 0 within ~1 s", function()
        local srv = server.start { app = "examples/echo",
                                   config = "limits = { shutdown_timeout = 1 }" }
        finally(function() srv:stop() end)
        local answering, silent, half = {}, {}, {}
        for i = 1, 20 do answering[i] = assert(ws.connect(srv.port)) end
        for i = 1, 10 do silent[i] = assert(ws.connect(srv.port)) end
        for i = 1, 10 do
            half[i] = assert(socket.connect("127.0.0.1", srv.port))
            half[i]:send("GET / HTTP/1.1\r\n")
        end
        socket.sleep(0.1)
        local t0 = now()
        srv:signal("INT")
        for i, c in ipairs(answering) do
            local code, reason = c:expect_close(2)
            assert.are.same({ 1001, "going away" }, { code, reason }, "client " .. i)
            c:send_close(1001)
            assert.is_true(c:wait_tcp_close(1), "the server closes after the handshake")
            c:abort()
        end
        for i, c in ipairs(silent) do
            local code, reason = c:expect_close(2)
            assert.are.same({ 1001, "going away" }, { code, reason }, "silent client " .. i)
        end
        local status = srv:wait_exit(4)
        local elapsed = now() - t0
        assert.are.equal(0, status)
        assert.is_true(elapsed > 0.8 and elapsed < 2.5, "exited after " .. elapsed .. " s")
        assert.is_truthy(srv:log():find("shutdown_timeout passed with 20 connections", 1, true),
            "the silent and half-open ones were dropped at shutdown_timeout")
        for _, s in ipairs(half) do
            s:settimeout(1)
            local data, err = s:receive("*a")
            -- "closed" is LuaSocket's word for an end of stream with no data before it.
            assert.is_true(data == "" or err == "closed",
                "the half-open connection is closed: " .. tostring(err))
            s:close()
        end
        for _, c in ipairs(silent) do c:abort() end
        assert.are.equal(0, srv:stop())
    end)
end)

describe("SIGHUP with open clients and half-open handshakes", function()
    local srv
    setup(function() srv = server.start { app = "examples/echo" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("drops no connection: all 50 echo and 20 handshakes complete", function()
        local clients, half = {}, {}
        for i = 1, 50 do clients[i] = assert(ws.connect(srv.port)) end
        local req = ws.request { key = "dGhlIHNhbXBsZSBub25jZQ==" }
        for i = 1, 20 do
            half[i] = assert(socket.connect("127.0.0.1", srv.port))
            half[i]:send(req:sub(1, 30))
        end
        srv:signal("HUP")
        assert.is_truthy(srv:wait_log("SIGHUP", 3))
        socket.sleep(0.2)
        for i, c in ipairs(clients) do assert.are.equal("after " .. i, c:echo("after " .. i)) end
        for _, s in ipairs(half) do
            s:settimeout(3)
            s:send(req:sub(31))
            assert.are.equal("HTTP/1.1 101 Switching Protocols", s:receive("*l"))
            s:close()
        end
        for _, c in ipairs(clients) do assert.are.equal(1000, (c:close())) end
    end)
end)
