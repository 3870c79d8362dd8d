-- mw.http.request against real servers started here on loopback: Debian's nginx (plain and
-- TLS with a certificate made here), a server that never answers, a 1 GiB file, and a burst of
-- 1000 requests while other connections keep echoing.
local socket = require "socket"
local cjson = require "cjson"
local ws = require "ws_client"
local server = require "server"
local nginx = require "nginx"
local helpers = require "helpers"

-- Each message is a JSON request for mw.http.request; the answer goes back as JSON. A message
-- { burst = N, url = U } starts N requests at once, from timers (one connection's messages run
-- one at a time, timers do not), and each sends back "ok STATUS" or "fail REASON".
local APP = [[
local app = {}

function app.message(conn, data)
    local cmd = mw.json.decode(data)
    if cmd.burst then
        for _ = 1, cmd.burst do
            mw.after(0, function()
                local res, err = mw.http.request { url = cmd.url }
                conn:send(res and ("ok " .. res.status) or ("fail " .. err))
            end)
        end
        return
    end
    if cmd.echo then return conn:send(cmd.echo) end
    local t0 = mw.now()
    local res, err, detail = mw.http.request(cmd)
    local out = { took = mw.now() - t0 }
    if res then
        out.status, out.body, out.type = res.status, res.body, res.headers["content-type"]
        out.cookies = res.headers["set-cookie"]
    else
        out.err, out.detail = err, detail
    end
    conn:send(mw.json.encode(out))
end

-- Asks an "auth service" (nginx: a file exists for a good token) before accepting.
function app.upgrade(req)
    local auth = req.headers["x-auth"]
    if not auth then return true end
    local res, err = mw.http.request { url = auth }
    if not res then return false, 503, "auth service: " .. err end
    if res.status ~= 200 then return false, 401, "bad token" end
    return true, { data = { who = res.body } }
end

function app.open(conn)
    if conn.data.who then conn:send("welcome " .. conn.data.who) end
end

return app
]]

local function ask(c, req)
    c:send_text(cjson.encode(req))
    local text = assert(c:recv_message(15))
    return cjson.decode(text)
end

-- A socket that listens and never accepts: connections queue in the kernel, nothing answers.
local function hung_server()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    return s, tonumber(port)
end

describe("mw.http.request", function()
    local ng, srv, app_dir, hung, hung_port
    setup(function()
        ng = nginx.start {
            files = { ["x.txt"] = "hello from nginx\n", ["token-good"] = "ada\n" },
            big = { ["big"] = "1G" },
            tls = true,
            extra = 'location = /cookies { add_header Set-Cookie "a=1"; ' ..
                    'add_header Set-Cookie "b=2"; return 200 "c"; }',
        }
        hung, hung_port = hung_server()
        app_dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start {
            app = app_dir,
            config = string.format([[
                outbound = { ca = %q, max_response = "1M", max_in_flight = 2000 }
                sandbox = { wait_timeout = 3 }
            ]], ng.ca),
        }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        ng:stop()
        hung:close()
        server.remove(app_dir)
    end)

    local function url(path) return "http://127.0.0.1:" .. ng.port .. path end

    it("gets a file from nginx: status, headers and body", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = url("/x.txt") })
        assert.are.equal(200, r.status)
        assert.are.equal("hello from nginx\n", r.body)
        assert.are.equal("text/plain", r.type)
        assert.are.equal(404, ask(c, { url = url("/none") }).status)
        c:close()
    end)

    it("sends the method, headers and body it is given", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = url("/method"), method = "POST", body = "12345",
                           headers = { ["X-Test"] = "yes" } })
        assert.are.equal(200, r.status)
        assert.are.equal("POST yes 5", r.body)
        c:close()
    end)

    it("gives a header that came more than once as a list", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = url("/cookies") })
        assert.are.same({ "a=1", "b=2" }, r.cookies)
        c:close()
    end)

    it("reuses its keep-alive connection for requests one after another", function()
        local c = assert(ws.connect(srv.port))
        for i = 1, 20 do
            assert.are.equal(200, ask(c, { url = url("/x.txt?reuse=" .. i) }).status)
        end
        assert.are.equal(20, ng:requests("^/x%.txt%?reuse="))
        assert.are.equal(1, ng:connections("^/x%.txt%?reuse="),
            "20 requests, one after another, on one connection")
        c:close()
    end)

    it("verifies TLS: a certificate it trusts for the name asked", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = "https://localhost:" .. ng.tls_port .. "/x.txt" })
        assert.are.equal(200, r.status)
        assert.are.equal("hello from nginx\n", r.body)
        c:close()
    end)

    it("refuses TLS when the certificate does not name the host", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = "https://127.0.0.1:" .. ng.tls_port .. "/x.txt" })
        assert.are.equal("tls", r.err)
        assert.truthy(r.detail:find("127.0.0.1", 1, true), r.detail)
        c:close()
    end)

    it("times out against a server that never answers", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = "http://127.0.0.1:" .. hung_port .. "/", timeout = 0.3 })
        assert.are.equal("timeout", r.err)
        assert.is_true(r.took >= 0.25 and r.took < 2, "took " .. r.took)
        c:close()
    end)

    it("reports refused, dns and forbidden destinations", function()
        local c = assert(ws.connect(srv.port))
        assert.are.equal("refused", ask(c, { url = "http://127.0.0.1:" .. nginx.free_port() }).err)
        assert.are.equal("dns", ask(c, { url = "http://nothing.invalid/" }).err)
        local r = ask(c, { url = "http://169.254.169.254/latest/meta-data/" })
        assert.are.equal("forbidden", r.err)
        assert.truthy(r.detail:find("outbound", 1, true), r.detail)
        assert.are.equal("invalid", ask(c, { url = "ftp://example.com/" }).err)
        c:close()
    end)

    it("stops reading a 1 GiB response at outbound.max_response, with little memory", function()
        local c = assert(ws.connect(srv.port))
        local before = helpers.rss_kib(srv.pid)
        local r = ask(c, { url = url("/big") })
        assert.are.equal("too_large", r.err)
        assert.is_true(r.took < 2, "took " .. r.took)
        local grew = helpers.rss_kib(srv.pid) - before
        assert.is_true(grew < 16 * 1024, "RSS grew by " .. grew .. " KiB")
        c:close()
    end)

    it("lets app.upgrade ask another service before it decides", function()
        local c = assert(ws.connect(srv.port, { headers = { "X-Auth: " .. url("/token-good") } }))
        assert.are.equal("welcome ada\n", c:recv_message(5))
        c:close()
        local res = ws.http(srv.port, ws.request { key = "dGhlIHNhbXBsZSBub25jZQ==",
                                                   headers = { "X-Auth: " .. url("/token-bad") } })
        assert.are.equal(401, res.status)
    end)

    it("ends a handler that waits past sandbox.wait_timeout with 1011", function()
        local c = assert(ws.connect(srv.port))
        c:send_text(cjson.encode { url = "http://127.0.0.1:" .. hung_port .. "/", timeout = 60 })
        assert.are.equal(1011, c:expect_close(6))
        assert.truthy(srv:wait_log("waited longer than sandbox.wait_timeout", 2))
    end)

    it("runs 1000 requests from 100 connections while other connections keep echoing", function()
        local echoers = {}
        for i = 1, 5 do echoers[i] = assert(ws.connect(srv.port)) end
        local callers = {}
        for i = 1, 100 do callers[i] = assert(ws.connect(srv.port)) end
        local before = ng:requests("^/x%.txt%?burst$")
        for _, c in ipairs(callers) do
            c:send_text(cjson.encode { burst = 10, url = url("/x.txt?burst") })
        end
        -- Echoes go on meanwhile.
        local slowest = 0
        for round = 1, 20 do
            for i, e in ipairs(echoers) do
                local t0 = socket.gettime()
                local text = "e" .. round .. i
                assert.are.equal(text, e:echo(cjson.encode { echo = text }))
                slowest = math.max(slowest, socket.gettime() - t0)
            end
        end
        local ok = 0
        for _, c in ipairs(callers) do
            for _ = 1, 10 do
                local m = c:recv_message(20)
                if m == "ok 200" then ok = ok + 1 end
            end
            c:close()
        end
        for _, e in ipairs(echoers) do e:close() end
        assert.are.equal(1000, ok)
        assert.are.equal(1000, ng:requests("^/x%.txt%?burst$") - before)
        print(string.format("# 1000 requests: slowest echo meanwhile %.3f s", slowest))
        assert.is_true(slowest < 1, "an echo waited " .. slowest .. " s")
    end)
end)

describe("mw.http.request limits", function()
    local srv, hung, hung_port
    setup(function()
        hung, hung_port = hung_server()
        srv = server.start {
            app = server.app_dir { ["app.lua"] = APP },
            config = 'outbound = { max_in_flight = 3, "127.0.0.1" }',
        }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        hung:close()
    end)

    it("answers nil, limit past outbound.max_in_flight", function()
        local cs = {}
        for i = 1, 3 do
            cs[i] = assert(ws.connect(srv.port))
            cs[i]:send_text(cjson.encode { url = "http://127.0.0.1:" .. hung_port, timeout = 2 })
        end
        socket.sleep(0.2)
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = "http://127.0.0.1:" .. hung_port })
        assert.are.equal("limit", r.err)
        assert.truthy(r.detail:find("outbound.max_in_flight", 1, true))
        for i = 1, 3 do
            local m, why = cs[i]:recv_message(5)
            assert.truthy(m, why)
            assert.are.equal("timeout", cjson.decode(m).err)
        end
        c:close()
    end)

    it("refuses destinations the outbound list does not name", function()
        local c = assert(ws.connect(srv.port))
        local r = ask(c, { url = "http://127.0.0.2:" .. hung_port })
        assert.are.equal("forbidden", r.err)
        c:close()
    end)
end)

describe("outbound in the config", function()
    it("refuses a bad entry at start, naming it", function()
        local srv = server.start { app = "examples/echo", expect_fail = true,
                                   config = 'outbound = { "10.0.0.0/33" }' }
        assert.are_not.equal(0, srv.status)
        assert.truthy(srv:log():find("10.0.0.0/33", 1, true), srv:log())
        server.remove(srv.dir)
    end)

    it("refuses a CA file it cannot read at start", function()
        local srv = server.start { app = "examples/echo", expect_fail = true,
                                   config = 'outbound = { ca = "/nonexistent/ca.pem" }' }
        assert.are_not.equal(0, srv.status)
        assert.truthy(srv:log():find("/nonexistent/ca.pem", 1, true), srv:log())
        server.remove(srv.dir)
    end)
end)
