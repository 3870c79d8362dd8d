-- Plain HTTP on an app's path (app.http): the request table, what a handler returns (status,
-- body, headers; a table sent as JSON), HEAD, request bodies (in pieces, past max_http_body,
-- chunked), handler failures and refused headers, precedence of static files, apps without
-- app.http, and the issue's example: a backend publishing to WebSocket clients.
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"

local APP = [=[
local app = {}
local SECRET = "backend-secret"

function app.open(conn) conn:subscribe("news") end
function app.message(conn, data) conn:send(data) end

function app.http(req)
    if req.path == "/echo" then
        return 200, req.method .. " " .. req.path .. " ?" .. req.query .. " ip=" .. req.ip
            .. " accept=" .. tostring(req.headers["accept"]) .. " body=" .. #req.body
            .. " cookie=" .. tostring(req.cookies.session)
    elseif req.path == "/json" then
        local t = mw.json.decode(req.body)
        t.seen = true
        return 200, t
    elseif req.path == "/table" then
        return { ok = true, n = 3 }
    elseif req.path == "/headers" then
        return 201, "made", { ["X-Thing"] = "yes", ["Content-Type"] = "text/csv",
                              ["Cache-Control"] = "max-age=5" }
    elseif req.path == "/inject" then
        return 200, "x", { ["X-Bad"] = "a\r\nSet-Cookie: stolen=1" }
    elseif req.path == "/length" then
        return 200, "x", { ["Content-Length"] = "99" }
    elseif req.path == "/boom" then
        error("boom in http")
    elseif req.path == "/bad-status" then
        return 42, "x"
    elseif req.path == "/api/publish" then
        if req.method ~= "POST" then return 405, "POST only", { Allow = "POST" } end
        if req.headers["x-secret"] ~= SECRET then return 401, "wrong secret" end
        local n = mw.publish("news", req.body)
        return 200, { delivered = n }
    end
    return 404, "no route for " .. req.path
end

return app
]=]

local PLAIN_APP = [=[
local app = {}
function app.message(conn, data) conn:send(data) end
return app
]=]

-- A request with a body (Content-Length set), or none. It asks for Connection: close (ws.http
-- reads until the server closes) unless keep is true.
local function request(method, path, body, headers, keep)
    local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
    for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
    if body then lines[#lines + 1] = "Content-Length: " .. #body end
    if not keep then lines[#lines + 1] = "Connection: close" end
    return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

-- Reads one response from sock: { status, headers (lower-case names), body }, or nil, err.
local function read_response(sock, head_only)
    local status_line, err = sock:receive("*l")
    if not status_line then return nil, err end
    local headers = {}
    while true do
        local line = assert(sock:receive("*l"))
        if line == "" then break end
        local name, value = line:match("^([^:]+):%s*(.*)$")
        headers[name:lower()] = value
    end
    local len = tonumber(headers["content-length"] or 0)
    local body = (len > 0 and not head_only) and assert(sock:receive(len)) or ""
    return { status = tonumber(status_line:match("^HTTP/1%.1 (%d+)")), headers = headers,
             body = body }
end

local function tcp(port)
    local sock = socket.tcp()
    sock:settimeout(3)
    assert(sock:connect("127.0.0.1", port))
    return sock
end

describe("app.http", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP, ["public/hello.txt"] = "static hello\n",
                               ["public/echo"] = "static echo wins\n" }
        srv = server.start { app = dir, config = "limits = { max_http_body = 100, "
                                                 .. "handshake_timeout = 1 }" }
    end)

    teardown(function()
        srv:stop()
        server.remove(dir)
    end)

    it("gets a GET with its query, headers, address and cookies", function()
        local r = ws.http(srv.port, request("GET", "/echo?a=1&b=2", nil,
                                            { "Accept: text/plain", "Cookie: session=abc" }))
        -- public/echo exists: the static file wins for GET
        assert.are.equal(200, r.status)
        assert.are.equal("static echo wins\n", r.body)
        r = ws.http(srv.port, request("POST", "/echo?a=1&b=2", "xyz",
                                      { "Accept: text/plain", "Cookie: session=abc" }))
        assert.are.equal(200, r.status)
        assert.are.equal("POST /echo ?a=1&b=2 ip=127.0.0.1 accept=text/plain body=3 cookie=abc",
                         r.body)
        assert.are.equal("text/plain; charset=utf-8", r.headers["content-type"])
        assert.are.equal("no-store", r.headers["cache-control"])
    end)

    it("serves GET from app.http when public/ has no such file", function()
        local r = ws.http(srv.port, request("GET", "/table"))
        assert.are.equal(200, r.status)
        assert.are.equal("application/json", r.headers["content-type"])
        local t = require("cjson").decode(r.body)
        assert.are.same({ ok = true, n = 3 }, t)
    end)

    it("keeps static files first for GET", function()
        local r = ws.http(srv.port, request("GET", "/hello.txt"))
        assert.are.equal(200, r.status)
        assert.are.equal("static hello\n", r.body)
    end)

    it("echoes a POSTed JSON body as JSON", function()
        local r = ws.http(srv.port, request("POST", "/json", '{"name":"ada","n":7}',
                                            { "Content-Type: application/json" }))
        assert.are.equal(200, r.status)
        assert.are.equal("application/json", r.headers["content-type"])
        assert.are.same({ name = "ada", n = 7, seen = true }, require("cjson").decode(r.body))
    end)

    it("reads a body that arrives in pieces", function()
        local sock = socket.tcp()
        sock:settimeout(3)
        assert(sock:connect("127.0.0.1", srv.port))
        local body = '{"pieces":[1,2,3]}'
        local req = request("PUT", "/json", body)
        local cut = #req - #body
        sock:send(req:sub(1, cut - 5))
        socket.sleep(0.05)
        sock:send(req:sub(cut - 4, cut + 4))
        socket.sleep(0.05)
        sock:send(req:sub(cut + 5))
        local data = sock:receive("*a")
        sock:close()
        assert.truthy(data:match("^HTTP/1.1 200 "), data)
        assert.truthy(data:match("\r\nConnection: close\r\n"), data)
        local got = data:match("\r\n\r\n(.*)$")
        assert.are.same({ pieces = { 1, 2, 3 }, seen = true }, require("cjson").decode(got))
    end)

    it("sends the handler's headers, Content-Type and Cache-Control included", function()
        local r = ws.http(srv.port, request("DELETE", "/headers"))
        assert.are.equal(201, r.status)
        assert.are.equal("made", r.body)
        assert.are.equal("yes", r.headers["x-thing"])
        assert.are.equal("text/csv", r.headers["content-type"])
        assert.are.equal("max-age=5", r.headers["cache-control"])
        assert.are.equal(1, select(2, r.raw:gsub("[Cc]ache%-[Cc]ontrol:", "")))
    end)

    it("answers HEAD with the headers and the body's length, without the body", function()
        local r = ws.http(srv.port, request("HEAD", "/headers"))
        assert.are.equal(201, r.status)
        assert.are.equal("4", r.headers["content-length"])
        assert.are.equal("", r.body)
    end)

    it("refuses a header with a line break (500 and a log line): no header injection",
       function()
        local r = ws.http(srv.port, request("GET", "/inject"))
        assert.are.equal(500, r.status)
        assert.is_nil(r.headers["set-cookie"])
        assert.truthy(srv:wait_log("http handler failed: [^\n]*header the server cannot send"))
        r = ws.http(srv.port, request("GET", "/length"))
        assert.are.equal(500, r.status)
        assert.truthy(srv:wait_log("cannot send %(Content%-Length%)"))
    end)

    it("answers 500 with a log line naming the connection when the handler fails", function()
        local r = ws.http(srv.port, request("OPTIONS", "/boom"))
        assert.are.equal(500, r.status)
        assert.are.equal("internal error\n", r.body)
        assert.truthy(srv:wait_log("http handler failed: [^\n]*boom in http[^\n]*%(conn %d+ "
                                   .. "127%.0%.0%.1, closed with 500%)"))
        r = ws.http(srv.port, request("GET", "/bad-status"))
        assert.are.equal(500, r.status)
        assert.truthy(srv:wait_log("returned status 42"))
    end)

    it("answers 413 past max_http_body without reading the body", function()
        local r = ws.http(srv.port, request("POST", "/json", string.rep("x", 101)))
        assert.are.equal(413, r.status)
        assert.are.equal("request body too large\n", r.body)
        r = ws.http(srv.port, request("POST", "/echo", string.rep("x", 100)))
        assert.are.equal(200, r.status)
    end)

    it("refuses a chunked body with 411", function()
        local r = ws.http(srv.port, "POST /json HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          .. "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        assert.are.equal(411, r.status)
    end)

    it("keeps the connection for the next request (keep-alive) until told to close", function()
        local sock = tcp(srv.port)
        sock:send(request("POST", "/json", '{"a":1}', nil, true))
        local r = assert(read_response(sock))
        assert.are.equal(200, r.status)
        assert.is_nil(r.headers["connection"])
        assert.are.same({ a = 1, seen = true }, require("cjson").decode(r.body))
        sock:send(request("GET", "/headers", nil, nil, true))
        r = assert(read_response(sock))
        assert.are.equal(201, r.status)
        assert.are.equal("made", r.body)
        sock:send(request("GET", "/table"))
        r = assert(read_response(sock))
        assert.are.equal(200, r.status)
        assert.are.equal("close", r.headers["connection"])
        assert.are.equal("closed", select(2, sock:receive(1)))
        sock:close()
    end)

    it("answers pipelined requests in order", function()
        local sock = tcp(srv.port)
        sock:send(request("POST", "/json", '{"n":1}', nil, true)
                  .. request("HEAD", "/headers", nil, nil, true)
                  .. request("PUT", "/json", '{"n":2}', nil, true)
                  .. request("GET", "/table"))
        local r = assert(read_response(sock))
        assert.are.same({ n = 1, seen = true }, require("cjson").decode(r.body))
        r = assert(read_response(sock, true))
        assert.are.equal(201, r.status)
        assert.are.equal("4", r.headers["content-length"])
        r = assert(read_response(sock))
        assert.are.same({ n = 2, seen = true }, require("cjson").decode(r.body))
        r = assert(read_response(sock))
        assert.are.same({ ok = true, n = 3 }, require("cjson").decode(r.body))
        assert.are.equal("closed", select(2, sock:receive(1)))
        sock:close()
    end)

    it("answers at most 100 requests on one connection", function()
        local sock = tcp(srv.port)
        sock:send(string.rep(request("GET", "/table", nil, nil, true), 101))
        local n, last = 0, nil
        while true do
            local r = read_response(sock)
            if not r then break end
            n, last = n + 1, r
        end
        sock:close()
        assert.are.equal(100, n)
        assert.are.equal("close", last.headers["connection"])
    end)

    it("closes an idle kept-alive connection after handshake_timeout, without a 408", function()
        local sock = tcp(srv.port)
        sock:send(request("GET", "/table", nil, nil, true))
        assert.are.equal(200, assert(read_response(sock)).status)
        local t0 = socket.gettime()
        assert.are.equal("closed", select(2, sock:receive(1)))
        assert.is_true(socket.gettime() - t0 > 0.5)
        sock:close()
        assert.is_nil(srv:log():match("refused with 408"))
    end)

    it("still upgrades WebSocket requests on the same path", function()
        local c = assert(ws.connect(srv.port, { path = "/anything" }))
        assert.are.equal("hi", c:echo("hi"))
        c:close()
    end)

    it("lets a backend publish to WebSocket subscribers with a shared secret", function()
        local c = assert(ws.connect(srv.port, { path = "/" }))
        assert.are.equal("sync", c:echo("sync")) -- open has run: subscribed
        local r = ws.http(srv.port, request("POST", "/api/publish", "wrong",
                                            { "X-Secret: nope" }))
        assert.are.equal(401, r.status)
        r = ws.http(srv.port, request("POST", "/api/publish", "breaking news",
                                      { "X-Secret: backend-secret" }))
        assert.are.equal(200, r.status)
        assert.are.same({ delivered = 1 }, require("cjson").decode(r.body))
        assert.are.equal("breaking news", c:recv_message())
        r = ws.http(srv.port, request("GET", "/api/publish"))
        assert.are.equal(405, r.status)
        assert.are.equal("POST", r.headers["allow"])
        c:close()
    end)
end)

describe("an app without app.http", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = PLAIN_APP }
        srv = server.start { app = dir }
    end)

    teardown(function()
        srv:stop()
        server.remove(dir)
    end)

    it("answers as before: 426 for GET, 405 for other methods", function()
        local r = ws.http(srv.port, request("GET", "/x"))
        assert.are.equal(426, r.status)
        r = ws.http(srv.port, request("POST", "/x", "body"))
        assert.are.equal(405, r.status)
        assert.are.equal("GET, HEAD", r.headers["allow"])
        assert.are.equal("only GET is allowed\n", r.body)
    end)
end)

describe("the chat example's announcements (POST /api/announce)", function()
    local srv, off, dir
    local cjson = require "cjson"

    -- Reads messages until one of type t; returns it decoded.
    local function recv_type(c, t)
        for _ = 1, 20 do
            local data = assert(c:recv_message())
            local msg = cjson.decode(data)
            if msg.type == t then return msg end
        end
        error("no " .. t .. " message")
    end

    setup(function()
        dir = server.tmpdir()
        os.execute("cp -r examples/chat/. " .. helpers.shell_quote(dir))
        local src = helpers.read_file(dir .. "/app.lua")
        local set, n = src:gsub("\nlocal ANNOUNCE_SECRET = nil\n",
                                '\nlocal ANNOUNCE_SECRET = "ops-secret"\n')
        assert.are.equal(1, n)
        helpers.write_file(dir .. "/app.lua", set)
        srv = server.start { app = dir }
        off = server.start { app = "examples/chat" }
    end)

    teardown(function()
        srv:stop()
        off:stop()
        server.remove(dir)
    end)

    it("publishes an announcement to every room, with the shared secret only", function()
        local c = assert(ws.connect(srv.port))
        c:send_text('{"type":"hello","name":"ada"}')
        recv_type(c, "welcome")
        c:send_text('{"type":"join","room":"general"}')
        recv_type(c, "joined")
        local r = ws.http(srv.port, request("POST", "/api/announce", "hi all",
                                            { "X-Announce-Secret: guess" }))
        assert.are.equal(401, r.status)
        r = ws.http(srv.port, request("GET", "/api/announce"))
        assert.are.equal(405, r.status)
        r = ws.http(srv.port, request("POST", "/api/announce", "maintenance at 18:00",
                                      { "X-Announce-Secret: ops-secret" }))
        assert.are.equal(200, r.status)
        assert.are.same({ rooms = 1, delivered = 1 }, cjson.decode(r.body))
        local msg = recv_type(c, "announcement")
        assert.are.equal("general", msg.room)
        assert.are.equal("maintenance at 18:00", msg.text)
        -- the page is still served
        r = ws.http(srv.port, request("GET", "/"))
        assert.are.equal(200, r.status)
        assert.truthy(r.headers["content-type"]:find("text/html"))
        c:close()
    end)

    it("is off (403) while ANNOUNCE_SECRET is unset", function()
        local r = ws.http(off.port, request("POST", "/api/announce", "hi",
                                            { "X-Announce-Secret: " }))
        assert.are.equal(403, r.status)
    end)
end)
