-- The HTTP/1.1 upgrade (RFC 6455 section 4): what a valid request gets back, how each bad one
-- is refused (a status, a body that explains, Connection: close, then EOF), the header limits,
-- the app.upgrade hook and subprotocols, and handshake_timeout.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"
local line_of = helpers.line_of

local op = ws.op

-- The sample handshake of RFC 6455 section 1.3.
local RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
local RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

-- The fields of a valid upgrade request, in order.
local FIELDS = {
    { "Host", "127.0.0.1" },
    { "Upgrade", "websocket" },
    { "Connection", "Upgrade" },
    { "Sec-WebSocket-Key", RFC_KEY },
    { "Sec-WebSocket-Version", "13" },
}

-- Builds a request head. opts: line (the request line), set (field name -> value, or false to
-- leave the field out), add (extra "Name: value" lines after the standard ones), eol.
local function request(opts)
    opts = opts or {}
    local set = opts.set or {}
    local lines = { opts.line or "GET / HTTP/1.1" }
    for _, f in ipairs(FIELDS) do
        local value = set[f[1]]
        if value == nil then value = f[2] end
        if value then lines[#lines + 1] = f[1] .. ": " .. value end
    end
    for _, l in ipairs(opts.add or {}) do lines[#lines + 1] = l end
    local eol = opts.eol or "\r\n"
    return table.concat(lines, eol) .. eol .. eol
end

-- A valid request of exactly size bytes, padded with an X-Pad field.
local function request_of_size(size)
    local pad = size - #request { add = { "X-Pad: " } }
    assert(pad > 0)
    return request { add = { "X-Pad: " .. string.rep("p", pad) } }
end

local function tcp(port)
    local sock = assert(socket.connect("127.0.0.1", port))
    sock:setoption("tcp-nodelay", true)
    sock:settimeout(3)
    return sock
end

-- Parses "Name: value" lines into a table with lower-case names; repeated fields are joined
-- with ", " (RFC 9110 section 5.3).
local function parse_fields(lines)
    local headers = {}
    for i = 2, #lines do
        local name, value = lines[i]:match("^([^:]+):[ \t]*(.-)[ \t]*$")
        name = name:lower()
        headers[name] = headers[name] and headers[name] .. ", " .. value or value
    end
    return headers
end

-- Reads a response head. Returns { status, status_line, headers }, or nil, err.
local function read_head(sock)
    local lines = {}
    while true do
        local line, err = sock:receive("*l")
        if not line then return nil, err end
        if line == "" then break end
        lines[#lines + 1] = line
    end
    return { status = tonumber(lines[1]:match("^HTTP/1%.1 (%d%d%d) ")), status_line = lines[1],
             headers = parse_fields(lines) }
end

-- Sends bytes as one write, or a list of pieces with a pause after each, and reads the answer
-- until the server closes. Returns { status, headers, body, raw, closed, elapsed }.
local function exchange(port, bytes, pause)
    local sock = tcp(port)
    local t0 = socket.gettime()
    for _, piece in ipairs(type(bytes) == "table" and bytes or { bytes }) do
        sock:send(piece)
        if pause then socket.sleep(pause) end
    end
    local data, err, partial = sock:receive("*a")
    local resp = { closed = data ~= nil, err = err, elapsed = socket.gettime() - t0 }
    sock:close()
    resp.raw = data or partial
    local head, body = resp.raw:match("^(.-)\r\n\r\n(.*)$")
    if not head then return resp end
    local lines = {}
    for line in (head .. "\r\n"):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
    resp.status = tonumber(lines[1]:match("^HTTP/1%.1 (%d%d%d) "))
    resp.headers = parse_fields(lines)
    resp.body = body
    return resp
end

local function has_token(list, token)
    for elem in (list or ""):gmatch("[^,%s]+") do
        if elem:lower() == token:lower() then return true end
    end
    return false
end

-- An error answer: the status, the fields, a body with `explains` in it (any case), sent with
-- Connection: close, and then the server closes the connection.
local function assert_refused(resp, status, explains, fields)
    assert.are.equal(status, resp.status, "status of the answer:\n" .. tostring(resp.raw))
    assert.is_true(has_token(resp.headers.connection, "close"), "Connection: close")
    assert.are.equal(1, select(2, tostring(resp.raw):lower():gsub("\r\nconnection:", "")),
        "one Connection field")
    assert.is_true(resp.closed, "the server closes the connection after the answer")
    assert.are.equal(#resp.body, tonumber(resp.headers["content-length"]), "Content-Length")
    assert.is_truthy(resp.body:lower():find(explains:lower(), 1, true),
        "the body explains (" .. explains .. "): " .. resp.body)
    for name, value in pairs(fields or {}) do
        assert.are.equal(value, resp.headers[name:lower()], name)
    end
end

-- Sends a request (one write, or pieces), expects a 101 for RFC_KEY and an echo of a frame.
-- Returns the response head.
local function assert_upgrades(port, bytes, pause)
    local sock = tcp(port)
    for _, piece in ipairs(type(bytes) == "table" and bytes or { bytes }) do
        sock:send(piece)
        if pause then socket.sleep(pause) end
    end
    local resp, err = read_head(sock)
    assert.is_truthy(resp, "a response head: " .. tostring(err))
    assert.are.equal(101, resp.status, resp.status_line)
    assert.are.equal(RFC_ACCEPT, resp.headers["sec-websocket-accept"])
    -- Server frames are unmasked and use the shortest length: 0x81 0x04 "ping".
    sock:send(ws.frame { opcode = op.text, payload = "ping" })
    assert.are.equal("\x81\x04ping", sock:receive(6))
    sock:close()
    return resp
end

describe("a valid upgrade", function()
    local srv
    setup(function() srv = server.start { app = "examples/echo" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("answers the RFC 6455 sample key with its sample accept value", function()
        local resp = assert_upgrades(srv.port, request())
        assert.are.equal("HTTP/1.1 101 Switching Protocols", resp.status_line)
        assert.are.equal("websocket", resp.headers.upgrade:lower())
        assert.is_true(has_token(resp.headers.connection, "upgrade"))
        assert.is_nil(resp.headers["sec-websocket-protocol"])
        assert.is_nil(resp.headers["sec-websocket-extensions"])
    end)

    it("computes the accept value for a random key (checked by ws_client)", function()
        local c = assert(ws.connect(srv.port))
        assert.are.equal(101, c.response.status)
        assert.are.equal("hello", c:echo("hello"))
        c:close()
        local k = assert(ws.connect(srv.port, { key = RFC_KEY }))
        assert.are.equal(RFC_ACCEPT, k.response.headers["sec-websocket-accept"])
        k:close()
    end)

    it("treats field names and Upgrade/Connection values case-insensitively", function()
        assert_upgrades(srv.port, table.concat {
            "GET / HTTP/1.1\r\n",
            "HOST: 127.0.0.1\r\n",
            "upgrade: WebSocket\r\n",
            "connection: keep-alive, Upgrade\r\n",
            "sec-websocket-key: ", RFC_KEY, "\r\n",
            "SEC-WEBSOCKET-VERSION: 13\r\n",
            "\r\n" })
    end)

    it("reads Connection as a token list spread over several fields", function()
        assert_upgrades(srv.port, request {
            set = { Connection = "keep-alive" }, add = { "Connection: UPGRADE" } })
        assert_upgrades(srv.port, request { set = { Connection = "  keep-alive ,upgrade  " } })
    end)

    it("ignores blanks around field values", function()
        assert_upgrades(srv.port, request {
            set = { ["Sec-WebSocket-Key"] = "\t" .. RFC_KEY .. "  ", Upgrade = " websocket\t" } })
    end)

    it("accepts the absolute-form request target (RFC 7230 5.3.2)", function()
        local authority = "127.0.0.1:" .. srv.port
        for _, target in ipairs { "http://" .. authority .. "/", "ws://" .. authority .. "/?x=1",
                                  "WSS://" .. authority, "https://" .. authority .. "?x=1" } do
            assert_upgrades(srv.port, request { line = "GET " .. target .. " HTTP/1.1" })
        end
    end)

    it("compares Origin with an absolute target's authority, not with Host (RFC 7230 5.4)",
        function()
            local this = "127.0.0.1:" .. srv.port
            -- The target names another host and the page comes from it: the same host, though
            -- the Host field names this server.
            assert_upgrades(srv.port, request {
                line = "GET http://foreign.example/ HTTP/1.1", set = { Host = this },
                add = { "Origin: http://foreign.example" } })
            -- The page comes from the host in the Host field, which an absolute target overrides.
            local resp = exchange(srv.port, request {
                line = "GET ws://foreign.example/ HTTP/1.1", set = { Host = this },
                add = { "Origin: http://" .. this } })
            assert_refused(resp, 403, "origin http://" .. this .. " is not allowed")
            -- The authority's port counts as a Host field's port would.
            resp = exchange(srv.port, request {
                line = "GET ws://" .. this .. "/ HTTP/1.1", set = { Host = this },
                add = { "Origin: http://127.0.0.1:" .. (srv.port + 1) } })
            assert_refused(resp, 403, "is not allowed")
            assert_upgrades(srv.port, request {
                line = "GET ws://" .. this .. "/ HTTP/1.1", set = { Host = "elsewhere.example" },
                add = { "Origin: http://" .. this } })
        end)

    it("upgrades a request split into many TCP segments", function()
        local req = request()
        local pieces = {}
        for i = 1, 40 do pieces[i] = req:sub(i, i) end
        pieces[#pieces + 1] = req:sub(41, 90)
        pieces[#pieces + 1] = req:sub(91, #req - 3)
        pieces[#pieces + 1] = req:sub(#req - 2, #req - 1) -- split inside the final CRLF CRLF
        pieces[#pieces + 1] = req:sub(#req)
        assert_upgrades(srv.port, pieces, 0.005)
    end)

    it("processes frames sent in the same write right behind the request", function()
        local c = assert(ws.connect(srv.port, { extra = ws.frame { payload = "early" } ..
            ws.frame { opcode = op.binary, payload = "\0\1\2" } }))
        assert.are.same({ "early", op.text }, { c:recv_message() })
        assert.are.same({ "\0\1\2", op.binary }, { c:recv_message() })
        c:close()
    end)

    it("processes frames that arrive with the last piece of a split request", function()
        local req = request()
        local big = string.rep("b", 40000) -- more than the room left in the kept head
        local sock = tcp(srv.port)
        sock:send(req:sub(1, 20))
        socket.sleep(0.05)
        sock:send(req:sub(21) .. ws.frame { payload = "small" } ..
            ws.frame { opcode = op.binary, payload = big })
        local resp = assert(read_head(sock))
        assert.are.equal(101, resp.status)
        assert.are.equal("\x81\x05small", sock:receive(7))
        local hdr = sock:receive(4)
        assert.are.equal("\x82\x7e", hdr:sub(1, 2))
        assert.are.equal(40000, string.unpack(">I2", hdr, 3))
        assert.are.equal(big, sock:receive(40000))
        sock:close()
    end)

    it("accepts a head of exactly max_header_bytes (16 KiB by default)", function()
        assert_upgrades(srv.port, request_of_size(16384))
    end)

    it("accepts 100 header fields", function()
        local add = {}
        for i = 1, 100 - #FIELDS do add[i] = "X-Field-" .. i .. ": " .. i end
        assert_upgrades(srv.port, request { add = add })
    end)
end)

describe("a bad request", function()
    local srv
    setup(function() srv = server.start { app = "examples/echo" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    local many = {}
    for i = 1, 101 - #FIELDS do many[i] = "X-Field-" .. i .. ": " .. i end
    local other_key = "AAECAwQFBgcICQoLDA0ODw=="

    -- label, request, status, a word of the explanation, fields the answer must carry
    local cases = {
        { "POST gets 405 with Allow: GET, HEAD", request { line = "POST / HTTP/1.1" }, 405,
          "GET", { Allow = "GET, HEAD" } },
        { "a lower-case method gets 405", request { line = "get / HTTP/1.1" }, 405, "GET" },
        { "a plain GET gets 426 with Upgrade: websocket and one Connection field",
          "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 426, "WebSocket",
          { Upgrade = "websocket", Connection = "Upgrade, close" } },
        { "Upgrade: h2c gets 426", request { set = { Upgrade = "h2c" } }, 426, "WebSocket",
          { Upgrade = "websocket" } },
        { "Sec-WebSocket-Version 8 gets 426 naming version 13",
          request { set = { ["Sec-WebSocket-Version"] = "8" } }, 426, "13",
          { ["Sec-WebSocket-Version"] = "13" } },
        { "a missing Sec-WebSocket-Version gets 426 naming version 13",
          request { set = { ["Sec-WebSocket-Version"] = false } }, 426, "13",
          { ["Sec-WebSocket-Version"] = "13" } },
        { "a missing Sec-WebSocket-Key gets 400",
          request { set = { ["Sec-WebSocket-Key"] = false } }, 400, "Sec-WebSocket-Key" },
        { "a key that is base64 of 5 bytes gets 400",
          request { set = { ["Sec-WebSocket-Key"] = "c2hvcnQ=" } }, 400, "Sec-WebSocket-Key" },
        { "a key that is base64 of 17 bytes gets 400",
          request { set = { ["Sec-WebSocket-Key"] = "AAECAwQFBgcICQoLDA0ODxA=" } }, 400,
          "Sec-WebSocket-Key" },
        { "a 24-character key outside the base64 alphabet gets 400",
          request { set = { ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZ!==" } }, 400,
          "Sec-WebSocket-Key" },
        { "a key of 24 '=' gets 400",
          request { set = { ["Sec-WebSocket-Key"] = string.rep("=", 24) } }, 400,
          "Sec-WebSocket-Key" },
        { "two Sec-WebSocket-Key fields get 400",
          request { add = { "Sec-WebSocket-Key: " .. other_key } }, 400, "Sec-WebSocket-Key" },
        { "a missing Host gets 400", request { set = { Host = false } }, 400, "Host" },
        { "two Host fields get 400", request { add = { "Host: example.com" } }, 400, "Host" },
        { "Connection without upgrade gets 400",
          request { set = { Connection = "keep-alive" } }, 400, "Connection" },
        { "an HTTP/1.0 upgrade gets 400", request { line = "GET / HTTP/1.0" }, 400,
          "HTTP/1.1" },
        { "HTTP/2.0 gets 505", request { line = "GET / HTTP/2.0" }, 505, "HTTP/1" },
        { "a request line without a version gets 400", request { line = "GET /" }, 400,
          "request line" },
        { "a request line with two blanks gets 400", request { line = "GET  / HTTP/1.1" }, 400,
          "request line" },
        { "a request line with a trailing word gets 400",
          request { line = "GET / HTTP/1.1 extra" }, 400, "request line" },
        { "a target that is not a path gets 400", request { line = "GET chat HTTP/1.1" }, 400,
          "path" },
        { "an asterisk-form target gets 400", request { line = "OPTIONS * HTTP/1.1" }, 400,
          "path" },
        { "an absolute target with an ftp scheme gets 400",
          request { line = "GET ftp://127.0.0.1/ HTTP/1.1" }, 400, "scheme" },
        { "an absolute target without a host gets 400",
          request { line = "GET ws:///chat HTTP/1.1" }, 400, "authority" },
        { "an absolute target with user info gets 400",
          request { line = "GET http://user:pass@127.0.0.1/ HTTP/1.1" }, 400, "user info" },
        { "an absolute target with a fragment gets 400",
          request { line = "GET http://127.0.0.1/#top HTTP/1.1" }, 400, "fragment" },
        { "an absolute target with a port over 65535 gets 400",
          request { line = "GET ws://127.0.0.1:65536/ HTTP/1.1" }, 400, "port" },
        { "an absolute target still needs a Host field",
          request { line = "GET ws://127.0.0.1/ HTTP/1.1", set = { Host = false } }, 400, "Host" },
        { "lines ending in a bare LF get 400", request { eol = "\n" }, 400, "LF" },
        { "one bare LF among CRLF lines gets 400",
          request():gsub("\r\nUpgrade", "\nUpgrade"), 400, "LF" },
        { "a blank before the colon gets 400", request { add = { "X-Spaced : 1" } }, 400,
          "field name" },
        { "an obs-fold continuation line gets 400", request { add = { "X-Folded: a", " b" } },
          400, "folding" },
        { "a control character in a value gets 400", request { add = { "X-Ctl: a\1b" } }, 400,
          "control" },
        { "a head over 16 KiB gets 431",
          request { add = { "X-Big: " .. string.rep("a", 17000) } }, 431, "max_header_bytes" },
        { "a head one byte over 16 KiB gets 431", request_of_size(16385), 431,
          "max_header_bytes" },
        { "101 header fields get 431", request { add = many }, 431, "too many" },
    }
    for _, case in ipairs(cases) do
        local label, req, status, explains, fields = table.unpack(case)
        it(label, function()
            local resp = exchange(srv.port, req)
            assert_refused(resp, status, explains, fields)
            -- Answered at once, not at handshake_timeout (5 s).
            assert.is_true(resp.elapsed < 2, "answered after " .. resp.elapsed .. " s")
        end)
    end

    it("answers a head over 16 KiB sent in pieces with 431", function()
        local req = request { add = { "X-Big: " .. string.rep("a", 20000) } }
        local pieces = {}
        for i = 1, #req, 3000 do pieces[#pieces + 1] = req:sub(i, i + 2999) end
        assert_refused(exchange(srv.port, pieces, 0.01), 431, "max_header_bytes")
    end)

    it("answers a bare LF at once, before the head is complete", function()
        local sock = tcp(srv.port)
        sock:send("GET / HTTP/1.1\nHost: 127.0.0.1\n") -- no blank line yet
        sock:settimeout(2)
        local line = sock:receive("*l")
        assert.are.equal("HTTP/1.1 400 Bad Request", line)
        sock:close()
    end)

    it("logs each refusal with its status", function()
        exchange(srv.port, request { line = "DELETE / HTTP/1.1" })
        assert.is_truthy(srv:wait_log("refused with 405: [^\n]*GET", 3))
    end)

    it("still serves after all these refusals", function()
        local c = assert(ws.connect(srv.port))
        assert.are.equal("fine", c:echo("fine"))
        c:close()
    end)
end)

describe("max_header_bytes = 1024", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { max_header_bytes = 1024 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("accepts a head of exactly 1024 bytes", function()
        assert_upgrades(srv.port, request_of_size(1024))
    end)

    it("answers a head of 1025 bytes with 431", function()
        assert_refused(exchange(srv.port, request_of_size(1025)), 431, "max_header_bytes")
    end)

    it("answers a head of 1025 bytes sent in two pieces with 431", function()
        local req = request_of_size(1025)
        assert_refused(exchange(srv.port, { req:sub(1, 600), req:sub(601) }, 0.05), 431,
            "max_header_bytes")
    end)

    it("answers a head that never ends with 431 once it passes 1024 bytes", function()
        local resp = exchange(srv.port, "GET / HTTP/1.1\r\nX-Long: " .. string.rep("x", 2000))
        assert_refused(resp, 431, "max_header_bytes")
    end)

    it("processes a frame behind a 1000-byte head sent in pieces", function()
        local req = request_of_size(1000)
        local sock = tcp(srv.port)
        sock:send(req:sub(1, 500))
        socket.sleep(0.05)
        sock:send(req:sub(501) .. ws.frame { payload = string.rep("z", 300) })
        assert.are.equal(101, assert(read_head(sock)).status)
        local hdr = sock:receive(4)
        assert.are.equal("\x81\x7e\x01\x2c", hdr)
        assert.are.equal(string.rep("z", 300), sock:receive(300))
        sock:close()
    end)
end)

-- The app behind the upgrade hook tests: the query picks what the hook does.
local HOOK_APP = [[
local app = {}

function app.upgrade(req)
    local mode = req.query:match("^%w+") or ""
    if mode == "pick" then
        return true, { protocol = req.query:match("pick=([%w.]+)") }
    elseif mode == "unoffered" then
        return true, { protocol = "v9" }
    elseif mode == "refuse" then
        return false, 401, "bad token"
    elseif mode == "status" then
        return false, 200, "not an error status"
    elseif mode == "nothing" then
        return
    elseif mode == "raise" then
        error("upgrade hook exploded")
    elseif mode == "seed" then
        local names = {}
        for name in pairs(req.headers) do names[#names + 1] = name end
        table.sort(names)
        return true, { data = {
            path = req.path, query = req.query, ip = req.ip, origin = tostring(req.origin),
            custom = req.headers["x-custom"], upper = tostring(req.headers["X-Custom"]),
            repeated = req.headers["x-repeated"], names = table.concat(names, ","),
            protocols = table.concat(req.protocols, "|"), count = #req.protocols } }
    elseif mode == "describe" then
        return false, 400, req.path .. " " .. req.query .. " " .. req.ip .. " " ..
            tostring(req.origin) .. " " .. req.headers.host .. " " ..
            table.concat(req.protocols, "|")
    end
    return true
end

function app.message(conn, data)
    if data == "protocol" then
        conn:send(tostring(conn.protocol))
    else
        conn:send(tostring(conn.data[data]))
    end
end

return app
]]

describe("app.upgrade", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = HOOK_APP }
        srv = server.start { app = dir }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    local function refused(path, extra)
        local opts = { key = RFC_KEY, path = path }
        for k, v in pairs(extra or {}) do opts[k] = v end
        return exchange(srv.port, ws.request(opts))
    end

    it("picks an offered subprotocol: 101 with Sec-WebSocket-Protocol", function()
        local c = assert(ws.connect(srv.port,
            { path = "/?pick=chat.v2", protocols = { "chat.v1", "chat.v2" } }))
        assert.are.equal("chat.v2", c.response.headers["sec-websocket-protocol"])
        c:close()
    end)

    it("shows the picked subprotocol to the app as conn.protocol", function()
        local c = assert(ws.connect(srv.port,
            { path = "/?pick=chat.v1", protocols = { "chat.v1", "chat.v2" } }))
        assert.are.equal("chat.v1", c.response.headers["sec-websocket-protocol"])
        assert.are.equal("chat.v1", (c:echo("protocol")), "conn.protocol in app.message")
        c:close()
    end)

    it("accepts with true alone: no Sec-WebSocket-Protocol though the client offers one",
        function()
            local c = assert(ws.connect(srv.port, { path = "/", protocols = { "chat.v1" } }))
            assert.is_nil(c.response.headers["sec-websocket-protocol"])
            assert.are.equal("nil", (c:echo("protocol")), "conn.protocol in app.message")
            c:close()
        end)

    it("answers 500 and logs when the hook picks a subprotocol the client did not offer",
        function()
            assert_refused(refused("/?unoffered", { protocols = { "v1", "v2" } }), 500,
                "internal error")
            assert.is_truthy(srv:wait_log("error +app [^\n]*picked subprotocol 'v9'", 3))
        end)

    it("answers 500 when the hook picks a subprotocol and the client offered none", function()
        assert_refused(refused("/?pick=chat.v1"), 500, "internal error")
    end)

    it("refuses with the hook's status and reason: 401 \"bad token\"", function()
        local resp = refused("/?refuse")
        assert_refused(resp, 401, "bad token")
        assert.is_truthy(srv:wait_log("refused with 401: bad token", 3))
    end)

    it("answers 500 and logs when the hook refuses with a status outside 400-599", function()
        assert_refused(refused("/?status"), 500, "internal error")
        assert.is_truthy(srv:wait_log("error +app [^\n]*refused with status 200", 3))
    end)

    it("refuses with 403 and a warning when the hook returns nothing", function()
        assert_refused(refused("/?nothing"), 403, "refused")
        assert.is_truthy(srv:wait_log("warn +app [^\n]*upgrade handler returned nothing", 3))
    end)

    it("answers 500 and logs file:line when the hook raises", function()
        local resp = refused("/?raise")
        assert_refused(resp, 500, "internal error")
        assert.is_falsy(resp.body:find("exploded", 1, true), "the error stays in the log")
        local line = line_of(HOOK_APP, "upgrade hook exploded")
        assert.is_truthy(srv:wait_log("error +app [^\n]*upgrade[^\n]*app%.lua:" .. line ..
            ": upgrade hook exploded", 3), srv:log())
    end)

    it("seeds conn.data with path, query, ip, origin, lower-case headers and protocols",
        function()
            local c = assert(ws.connect(srv.port, {
                path = "/room/7?seed&user=ann", origin = "http://127.0.0.1",
                protocols = { "chat.v1", "chat.v2" },
                headers = { "X-Custom: Value 1", "X-Repeated: a", "X-Repeated: b",
                            "Sec-WebSocket-Protocol: chat.v3" } }))
            local expect = {
                path = "/room/7", query = "seed&user=ann", ip = "127.0.0.1",
                origin = "http://127.0.0.1", custom = "Value 1", upper = "nil",
                repeated = "a, b", protocols = "chat.v1|chat.v2|chat.v3", count = "3",
                names = "connection,host,origin,sec-websocket-key,sec-websocket-protocol,"
                    .. "sec-websocket-version,upgrade,x-custom,x-repeated",
            }
            local keys = {}
            for key in pairs(expect) do keys[#keys + 1] = key end
            table.sort(keys)
            for _, key in ipairs(keys) do
                local got, err, code, reason = c:echo(key)
                assert.are.equal(expect[key], got, string.format("req.%s (%s %s %s)", key,
                    tostring(err), tostring(code), tostring(reason)))
            end
            c:close()
        end)

    it("sees the request in a refusal reason built from it", function()
        local resp = refused("/a/b?describe&x=1", { origin = "http://127.0.0.1",
                                                     protocols = { "p1", "p2" } })
        assert_refused(resp, 400, "/a/b describe&x=1 127.0.0.1 http://127.0.0.1 127.0.0.1 p1|p2")
    end)

    it("sees no origin and no protocols when the client sends none", function()
        local resp = refused("/?describe")
        assert_refused(resp, 400, "/ describe 127.0.0.1 nil 127.0.0.1 \n")
    end)
end)

describe("an app without an upgrade hook", function()
    local srv, dir
    setup(function()
        dir = server.app_dir { ["app.lua"] = [[
            return { message = function(conn) conn:send(tostring(conn.protocol)) end }
        ]] }
        srv = server.start { app = dir }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("accepts without Sec-WebSocket-Protocol even when the client offers one", function()
        local c = assert(ws.connect(srv.port, { protocols = { "chat.v1", "chat.v2" } }))
        assert.is_nil(c.response.headers["sec-websocket-protocol"])
        assert.are.equal("nil", (c:echo("protocol?")), "conn.protocol in app.message")
        c:close()
    end)
end)

describe("handshake_timeout = 0.3", function()
    local srv
    setup(function()
        srv = server.start { app = "examples/echo",
                             config = "limits = { handshake_timeout = 0.3 }" }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("answers half a request with 408 and closes within ~1 s", function()
        local half = request():sub(1, 40)
        local resp = exchange(srv.port, half)
        assert_refused(resp, 408, "handshake_timeout")
        assert.is_true(resp.elapsed > 0.2 and resp.elapsed < 1.5, "after " .. resp.elapsed)
    end)

    it("answers a client that sends nothing with 408", function()
        local resp = exchange(srv.port, "")
        assert_refused(resp, 408, "handshake_timeout")
        assert.is_true(resp.elapsed < 1.5, "after " .. resp.elapsed)
    end)

    it("does not restart the deadline for a client that trickles bytes", function()
        local req = request()
        local sock = tcp(srv.port)
        local t0, got = socket.gettime(), ""
        for i = 1, #req - 4 do
            sock:send(req:sub(i, i))
            sock:settimeout(0.05)
            local data, err, partial = sock:receive("*a")
            got = got .. (data or partial or "")
            if data or err == "closed" or socket.gettime() - t0 > 3 then break end
        end
        sock:close()
        local elapsed = socket.gettime() - t0
        assert.are.equal("HTTP/1.1 408 ", got:sub(1, 13))
        assert.is_true(elapsed < 1.5, "after " .. elapsed)
    end)

    it("serves other clients while one handshake hangs", function()
        local slow = tcp(srv.port)
        local t0 = socket.gettime()
        slow:send(request():sub(1, 30))
        local c = assert(ws.connect(srv.port))
        assert.are.equal("meanwhile", c:echo("meanwhile"))
        local data = slow:receive("*a")
        assert.is_truthy(data, "the slow client's connection is closed")
        assert.are.equal("HTTP/1.1 408 ", data:sub(1, 13))
        assert.is_true(socket.gettime() - t0 < 1.5)
        slow:close()
        assert.are.equal("still here", c:echo("still here"))
        c:close()
    end)

    it("does not cut an open WebSocket at handshake_timeout", function()
        local c = assert(ws.connect(srv.port))
        socket.sleep(0.6)
        assert.are.equal("later", c:echo("later"))
        c:close()
    end)
end)
