-- moonwire test and moonwire new (docs/testing.md): the binary runs specs written with
-- moonwire.test on small app folders written here, and its exit status and output say how they
-- went. Each inner spec checks one part of the harness (refusals, close codes, a handler's
-- failure and its log line, timers on the virtual clock, reload, config, publishes); the outer
-- spec checks that all of them ran and passed, and that a failing one fails the command.
local server = require "server"
local helpers = require "helpers"
local chromium = require "chromium"

local BIN = os.getenv("MOONWIRE_BIN") or "build/moonwire"
local q = helpers.shell_quote

-- Runs `moonwire ARGS` in folder dir; returns its output (stdout and stderr) and exit status.
local function run(dir, args)
    local p = io.popen("cd " .. q(dir) .. " && timeout 60 " .. q(BIN) .. " " .. args
        .. " 2>&1 </dev/null")
    local out = p:read("a")
    local _, _, code = p:close()
    assert.is_falsy(out:find("Sanitizer", 1, true), out)
    return out, code
end

local function has(out, text) return out:find(text, 1, true) ~= nil end

local root
setup(function()
    root = server.tmpdir()
    -- The binary as an absolute path: the commands run in the temporary folder.
    if BIN:sub(1, 1) ~= "/" then
        local p = io.popen("pwd")
        BIN = p:read("l") .. "/" .. BIN
        p:close()
    end
end)
teardown(function() server.remove(root) end)

-- Writes files { ["app.lua"] = "...", ["spec/x_spec.lua"] = "..." } under root/name.
local function app(name, files)
    local dir = root .. "/" .. name
    for path, text in pairs(files) do
        local full = dir .. "/" .. path
        os.execute("mkdir -p " .. q(full:match("^(.*)/")))
        helpers.write_file(full, text)
    end
    return dir
end

-- The test app: it echoes, and a few messages make it do what the inner specs check.
local APP = [[
local app = {}
local hits = 0

function app.upgrade(req)
    if req.query == "deny" then return false, 403, "no entry" end
    return true, { data = { name = req.headers["x-name"] or "anon" } }
end

function app.open(conn)
    conn:subscribe("all")
    conn:send(mw.json.encode { type = "hello", name = conn.data.name, n = 5 })
end

function app.message(conn, data, is_binary)
    if data == "boom" then error("kaboom") end
    if data == "bye" then return conn:close(4000, "see you") end
    if data == "shout" then return mw.publish("all", "everyone!") end
    if data == "now" then return conn:send(tostring(mw.now())) end
    if data == "later" then
        mw.after(100, function() conn:send("after 100") end)
        mw.every(40, function(timer)
            hits = hits + 1
            conn:send("every " .. hits)
            if hits == 3 then timer:cancel() end
        end)
        return
    end
    if data == "soon" then return mw.after(0, function() conn:send("at once") end) end
    if data:sub(1, 5) == "here " then
        conn:subscribe("room", { presence = data:sub(6) })
        return conn:send("here")
    end
    if data == "who" then
        local infos = {}
        for _, e in ipairs(mw.presence_list("room")) do infos[#infos + 1] = e.info end
        table.sort(infos)
        return conn:send(mw.presence("room") .. ":" .. table.concat(infos, ","))
    end
    if data == "gone" then
        conn:unsubscribe("room")
        return conn:send("gone")
    end
    if data == "fetch" then
        local res, err = mw.http.request { url = "https://api.example.com/x", method = "POST" }
        return conn:send(res and (res.status .. " " .. res.body) or ("fail " .. err))
    end
    if data == "nap" then
        mw.sleep(500)
        return conn:send("woke")
    end
    conn:send(data, is_binary)
end

function app.close(conn, code, reason)
    mw.log("info", "app.close " .. conn.data.name .. " " .. code)
end

function app.http(req)
    return 200, "you asked " .. req.method .. " " .. req.path .. " " .. req.body
end

return app
]]

local INNER = [[
local t = require "moonwire.test"

describe("the harness", function()
    local server
    before_each(function() server = t.start() end)
    after_each(function() server:stop() end)

    it("runs app.upgrade and app.open, and decodes JSON as mw.json does", function()
        local c = assert(server:connect { headers = { ["X-Name"] = "ann" } })
        local hello = c:receive_json()
        assert.same({ type = "hello", name = "ann", n = 5 }, hello)
        assert.equal("integer", math.type(hello.n))
        assert.is_nil(c:receive())
    end)

    it("echoes text and binary in order", function()
        local c = server:connect()
        c:receive()
        c:send("one")
        c:send_binary("\0\1\2")
        c:send(string.rep("x", 100000))
        assert.equal("one", c:receive())
        local data, binary = c:receive()
        assert.equal("\0\1\2", data)
        assert.is_true(binary)
        assert.equal(100000, #c:receive())
    end)

    it("returns nil, status and reason when app.upgrade refuses", function()
        local c, status, reason = server:connect { query = "deny" }
        assert.is_nil(c)
        assert.equal(403, status)
        assert.equal("no entry", reason)
    end)

    it("sees the close code the app sends, and app.close hears the client's", function()
        local c = server:connect { headers = { ["X-Name"] = "bob" } }
        c:send("bye")
        assert.is_true(c.closed)
        assert.equal(4000, c.close_code)
        assert.equal("see you", c.close_reason)
        local d = server:connect { headers = { ["X-Name"] = "cy" } }
        d:close(1001)
        assert.truthy(server:logged("app%.close bob 4000"))
        assert.truthy(server:logged("app%.close cy 1001"))
        local e = server:connect { headers = { ["X-Name"] = "di" } }
        e:drop()
        assert.truthy(server:logged("app%.close di 1006"))
    end)

    it("closes with 1011 and logs the line when a handler fails", function()
        local c = server:connect()
        c:send("boom")
        assert.is_true(c.closed)
        assert.equal(1011, c.close_code)
        local line = server:logged("message handler failed")
        assert.truthy(line:find("^error app .*app%.lua:%d+: kaboom"), line)
        assert.truthy(line:find("closed with 1011", 1, true), line)
    end)

    it("answers a plain request through app.http", function()
        local status, body = server:request { method = "POST", path = "/x", body = "data" }
        assert.equal(200, status)
        assert.equal("you asked POST /x data", body)
    end)

    it("delivers a publish to every subscriber", function()
        local a, b = server:connect(), server:connect()
        a:receive(); b:receive()
        a:send("shout")
        assert.equal("everyone!", a:receive())
        assert.equal("everyone!", b:receive())
    end)

    it("keeps presence on the node alone, without Redis", function()
        local a, b = server:connect(), server:connect()
        a:receive(); b:receive()
        a:send("here ann")
        assert.equal("here", a:receive())
        b:send("here bob")
        assert.equal("here", b:receive())
        a:send("who")
        assert.equal("2:ann,bob", a:receive())
        b:send("gone")
        assert.equal("gone", b:receive())
        a:send("who")
        assert.equal("1:ann", a:receive())
    end)

    it("runs timers on the virtual clock as server:advance moves it", function()
        local c = server:connect()
        c:receive()
        local before = server:now()
        c:send("now")
        assert.equal(tostring(before), c:receive())
        c:send("later")
        assert.is_nil(c:receive())
        server:advance(39)
        assert.is_nil(c:receive())
        server:advance(1)
        assert.equal("every 1", c:receive())
        server:advance(60)
        assert.same({ "every 2", "after 100" }, c:receive_all())
        server:advance(1000)
        assert.same({ "every 3" }, c:receive_all())
        c:send("now")
        assert.equal(tostring(before + 1.1), c:receive())
        c:send("soon")
        assert.equal("at once", c:receive())
    end)

    it("reloads the app's code as SIGHUP does, keeping connections", function()
        local c = server:connect()
        c:receive()
        local path = "app.lua"
        local f = assert(io.open(path))
        local code = f:read("a")
        f:close()
        f = assert(io.open(path, "w"))
        f:write((code:gsub("conn:send%(data, is_binary%)", "conn:send('v2 ' .. data)")))
        f:close()
        server:reload()
        f = assert(io.open(path, "w"))
        f:write(code)
        f:close()
        c:send("x")
        assert.equal("v2 x", c:receive())
        assert.truthy(server:logged("reloaded"))
    end)

    it("answers mw.http.request with the spec's stub", function()
        local c = server:connect()
        c:receive()
        local seen
        server:stub("http", function(request)
            seen = request
            return { status = 201, headers = { ["content-type"] = "text/plain" }, body = "made" }
        end)
        c:send("fetch")
        assert.equal("201 made", c:receive())
        assert.same({ url = "https://api.example.com/x", method = "POST" }, seen)
        server:stub("http", function() return nil, "timeout" end)
        c:send("fetch")
        assert.equal("fail timeout", c:receive())
    end)

    it("fails the handler, naming the stub to set, when the spec set none", function()
        local c = server:connect()
        c:receive()
        c:send("fetch")
        assert.is_true(c.closed)
        assert.equal(1011, c.close_code)
        assert.truthy(server:logged('server:stub%("http"'))
    end)

    it("wakes mw.sleep on the virtual clock", function()
        local c = server:connect()
        c:receive()
        c:send("nap")
        c:send("next")
        assert.is_nil(c:receive())
        server:advance(499)
        assert.is_nil(c:receive())
        server:advance(1)
        assert.equal("woke", c:receive())
        assert.equal("next", c:receive())
    end)
end)

describe("t.start", function()
    it("applies config settings with the server's checks", function()
        local server = t.start(nil, { config = { limits = { max_message = "1K" } } })
        local c = server:connect()
        c:receive()
        c:send(string.rep("y", 2000))
        assert.is_true(c.closed)
        assert.equal(1009, c.close_code)
        server:stop()
        local ok, err = pcall(t.start, nil, { config = { limits = { max_mesage = 5 } } })
        assert.is_false(ok)
        assert.truthy(err:find("config:%d+: limits%.max_mesage"), err)
    end)

    it("keeps the spec's stubs for outbound calls, and names a missing one", function()
        local server = t.start()
        server:stub("http", function(request) return { status = 200, body = request.url } end)
        assert.same({ status = 200, body = "https://example.com/" },
                    server:_outbound("http", { url = "https://example.com/" }))
        server:stub("http", nil)
        local ok, err = pcall(server._outbound, server, "http", {})
        assert.is_false(ok)
        assert.truthy(err:find('server:stub("http"', 1, true), err)
        server:stop()
    end)

    it("raises with the file and line when the app does not load", function()
        local ok, err = pcall(t.start, "broken")
        assert.is_false(ok)
        assert.truthy(err:find("broken/app.lua:2:", 1, true), err)
    end)
end)
]]

describe("moonwire test", function()
    it("runs the specs inside the runtime and exits 0 when they pass", function()
        local dir = app("good", {
            ["app.lua"] = APP,
            ["spec/harness_spec.lua"] = INNER,
            ["broken/app.lua"] = "local app = {}\nfunction app.open(conn) conn:send( end\n"
                .. "return app\n",
        })
        local out, code = run(dir, "test -o TAP")
        assert.equal(0, code, out)
        assert.truthy(has(out, "1..16"), out)
        assert.falsy(has(out, "not ok"), out)
        assert.truthy(has(out, "ok 16 - t.start raises with the file and line"), out)
    end)

    it("exits 1 and names the failing spec when one fails", function()
        local dir = app("bad", {
            ["app.lua"] = APP,
            ["spec/fails_spec.lua"] = [[
local t = require "moonwire.test"
it("expects the wrong echo", function()
    local server = t.start()
    local c = server:connect()
    c:receive()
    c:send("ping")
    assert.equal("pong", c:receive())
end)
]],
        })
        local out, code = run(dir, "test spec/fails_spec.lua")
        assert.equal(1, code, out)
        assert.truthy(has(out, "0 successes / 1 failure"), out)
        assert.truthy(has(out, "fails_spec.lua:7"), out)
        assert.truthy(has(out, "Expected objects to be equal"), out)
    end)

    it("says what to do when the folder has no specs", function()
        local out, code = run(root, "test nowhere")
        assert.not_equal(0, code)
        assert.truthy(has(out, "nowhere"), out)
    end)
end)

describe("moonwire new", function()
    it("creates an app whose own specs pass", function()
        local out, code = run(root, "new hello")
        assert.equal(0, code, out)
        for _, file in ipairs { "hello/app.lua", "hello/public/index.html",
                                "hello/spec/app_spec.lua" } do
            assert.truthy(has(out, "created " .. file), out)
            assert.truthy(helpers.read_file(root .. "/" .. file))
        end
        assert.truthy(helpers.read_file(root .. "/hello/public/index.html"):find(
            "new WebSocket", 1, true))
        out, code = run(root, "test hello/spec -o TAP")
        assert.equal(0, code, out)
        assert.truthy(has(out, "1..5"), out)
        assert.falsy(has(out, "not ok"), out)
    end)

    it("creates a page that connects and talks to the app in a browser", function()
        local browser_path, no_browser = chromium.available()
        if not browser_path then
            pending(no_browser)
            return
        end
        local out, code = run(root, "new page")
        assert.equal(0, code, out)
        local srv = server.start { app = root .. "/page" }
        local browser = chromium.start()
        local ok, err = pcall(function()
            local page = browser:new_page()
            page:navigate(("http://127.0.0.1:%d/"):format(srv.port))
            page:wait_for("document.getElementById('status').textContent === 'connected'", 5)
            assert.truthy(page:eval("document.getElementById('log').textContent")
                :find("1 online", 1, true))
            page:eval("document.getElementById('text').value = 'hello from the page'")
            page:eval("document.getElementById('say').requestSubmit()")
            page:wait_for("document.getElementById('log').textContent"
                .. ".includes(': hello from the page')", 5)
            assert.same({}, page:errors())
        end)
        browser:stop()
        assert.equal(0, srv:stop())
        assert(ok, err)
    end)

    it("refuses a folder that exists, changing nothing", function()
        os.execute("mkdir -p " .. q(root .. "/taken"))
        local out, code = run(root, "new taken")
        assert.equal(1, code)
        assert.truthy(has(out, "taken already exists"), out)
        local p = io.popen("ls -A " .. q(root .. "/taken"))
        assert.equal("", p:read("a"))
        p:close()
    end)
end)
