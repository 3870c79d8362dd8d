-- Several apps in one server (config `apps`): routing by longest mount path, isolation of
-- globals, mw.state, topics, connections, budgets and memory; reloads of every app; and each
-- app's public/ folder served as static files (redirects, types, ETags, HEAD, no traversal).
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"
local count, wait_for, write_file = helpers.count, helpers.wait_for, helpers.write_file

-- One app; NAME and VERSION are filled in per mount.
local APP = [=[
local NAME, VERSION = "@NAME@", @VERSION@
local app = {}

function app.message(conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "who" then
        conn:send(NAME .. " v" .. VERSION .. " " .. conn.path)
    elseif cmd == "set" then
        shared_global = NAME
        mw.state.owner = NAME
        conn:send("set")
    elseif cmd == "get" then
        conn:send(tostring(shared_global) .. " " .. tostring(mw.state.owner))
    elseif cmd == "sub" then
        conn:send("sub " .. tostring(conn:subscribe(arg)))
    elseif cmd == "pub" then
        conn:send("pub " .. mw.publish(arg, NAME .. " says hi"))
    elseif cmd == "count" then
        conn:send("count " .. mw.subscribers(arg))
    elseif cmd == "id" then
        conn:send(tostring(conn.id))
    elseif cmd == "conns" then
        local ids = {}
        for _, c in ipairs(mw.connections()) do ids[#ids + 1] = c.id end
        table.sort(ids)
        conn:send(table.concat(ids, ","))
    elseif cmd == "spin" then
        while true do end
    elseif cmd == "hog" then
        local t = {}
        for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end
    elseif cmd == "hold" then
        mw.state.big = string.rep("h", tonumber(arg))
        conn:send("held " .. #mw.state.big)
    elseif cmd == "alloc" then
        local s = string.rep("y", tonumber(arg))
        conn:send("alloc " .. #s)
    end
end

return app
]=]

local function app_source(name, version)
    return (APP:gsub("@NAME@", name):gsub("@VERSION@", tostring(version or 1)))
end

local INDEX_A = "<!doctype html><title>A</title><p>app a</p>\n"
local INDEX_B = "<!doctype html><title>B</title><p>app b</p>\n"
local SUB_A = "<p>a's sub folder</p>\n"
local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR" .. string.rep("\0\255", 40)
-- 1 MiB + 3 bytes, every 4 KiB block different: more than one read of the file.
local BIG = (function()
    local t = {}
    for i = 1, 256 do t[i] = string.pack(">I4", i) .. string.rep(string.char(i % 256), 4092) end
    return table.concat(t) .. "end"
end)()

describe("several apps in one server", function()
    local srv, a_dir, b_dir, c_dir, secret_dir

    setup(function()
        a_dir = server.app_dir {
            ["app.lua"] = app_source("A"),
            ["public/index.html"] = INDEX_A,
            ["public/style.css"] = "p { color: red }\n",
            ["public/app.js"] = "console.log('a')\n",
            ["public/data.json"] = '{"a":1}\n',
            ["public/img.png"] = PNG,
            ["public/noext"] = "plain bytes\n",
            ["public/UPPER.HTML"] = "<p>upper</p>\n",
            ["public/my file.txt"] = "spaced name\n",
            ["public/big.bin"] = BIG,
            ["public/sub/index.html"] = SUB_A,
            ["public/.hidden"] = "secret dotfile\n",
            ["public/.git/config"] = "[core]\n",
        }
        b_dir = server.app_dir { ["app.lua"] = app_source("B"),
                                 ["public/index.html"] = INDEX_B }
        c_dir = server.app_dir { ["app.lua"] = app_source("C") } -- no public/
        secret_dir = server.app_dir { ["secret.txt"] = "outside every public folder\n" }
        os.execute("ln -s " .. secret_dir .. "/secret.txt " .. a_dir .. "/public/link.txt")
        os.execute("ln -s " .. secret_dir .. " " .. a_dir .. "/public/linkdir")
        os.execute("ln -s " .. b_dir .. "/public/index.html " .. a_dir .. "/public/b.html")
        srv = server.start { config = string.format([[
sandbox = { instructions = 2000000, memory = 16 << 20 }
apps = { ["/a"] = %q, ["/b"] = %q, ["/a/deep"] = %q }
]], a_dir, b_dir, c_dir) }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        for _, d in ipairs { a_dir, b_dir, c_dir, secret_dir } do server.remove(d) end
    end)

    local function connect(path)
        local c, err, resp = ws.connect(srv.port, { path = path })
        assert(c, "connect " .. path .. ": " .. tostring(err))
        return c, resp
    end

    local function ask(c, cmd)
        local got, kind, code = c:echo(cmd)
        assert(got, "no answer to " .. cmd .. ": " .. tostring(kind) .. " " .. tostring(code))
        return got
    end

    local function who(path)
        local c = connect(path)
        local got = ask(c, "who")
        c:close()
        return got
    end

    -- A plain HTTP request; returns the response.
    local function http(method, path, headers)
        local req = method .. " " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            .. table.concat(headers or {}) .. "\r\n"
        return assert(ws.http(srv.port, req))
    end

    describe("routing", function()
        it("sends /a and /a/x to app A, /b to app B", function()
            assert.are.equal("A v1 /a", who("/a"))
            assert.are.equal("A v1 /a/x/y", who("/a/x/y"))
            assert.are.equal("B v1 /b", who("/b"))
            assert.are.equal("B v1 /b/", who("/b/"))
        end)

        it("picks the longest mount path: /a/deep and below go to app C", function()
            assert.are.equal("C v1 /a/deep", who("/a/deep"))
            assert.are.equal("C v1 /a/deep/er", who("/a/deep/er"))
            assert.are.equal("A v1 /a/deeper", who("/a/deeper"), "/a/deeper is not under /a/deep")
        end)

        it("does not serve /ab with the app at /a: 404 for an upgrade", function()
            for _, path in ipairs { "/ab", "/", "/c", "/A", "/bb/x" } do
                local c, err, resp = ws.connect(srv.port, { path = path })
                assert.is_nil(c, path .. " was accepted")
                assert.are.equal(404, resp and resp.status, path .. ": " .. tostring(err))
            end
        end)

        it("answers a plain GET of an unmounted path with 404", function()
            for _, path in ipairs { "/ab", "/", "/nothing/here" } do
                local r = http("GET", path)
                assert.are.equal(404, r.status, "GET " .. path)
            end
        end)
    end)

    describe("isolation", function()
        it("keeps globals and mw.state per app", function()
            local a, b = connect("/a"), connect("/b")
            assert.are.equal("set", ask(a, "set"))
            assert.are.equal("A A", ask(a, "get"))
            assert.are.equal("nil nil", ask(b, "get"), "B sees none of A's globals or state")
            assert.are.equal("set", ask(b, "set"))
            assert.are.equal("A A", ask(a, "get"), "B's writes do not reach A")
            a:close()
            b:close()
        end)

        it("keeps topics per app: A's publish to 'news' does not reach B's subscriber",
            function()
                local a1, a2, b1 = connect("/a"), connect("/a"), connect("/b")
                assert.are.equal("sub true", ask(a1, "sub news"))
                assert.are.equal("sub true", ask(b1, "sub news"))
                assert.are.equal("count 1", ask(a2, "count news"))
                assert.are.equal("pub 1", ask(a2, "pub news"))
                assert.are.equal("A says hi", (a1:recv_message(3)))
                assert.are.same({ nil, "timeout" }, { b1:recv_frame(0.3) }, "B's subscriber")
                assert.are.equal("count 1", ask(b1, "count news"))
                b1:send_text("pub news")
                assert.are.equal("B says hi", (b1:recv_message(3)))
                assert.are.equal("pub 1", (b1:recv_message(3)))
                assert.are.same({ nil, "timeout" }, { a1:recv_frame(0.3) }, "A's subscriber")
                for _, c in ipairs { a1, a2, b1 } do c:close() end
            end)

        it("lists only the app's own connections in mw.connections()", function()
            local a1, a2, b1 = connect("/a/one"), connect("/a/two"), connect("/b")
            local ids = { tonumber(ask(a1, "id")), tonumber(ask(a2, "id")) }
            table.sort(ids)
            assert.are.equal(ids[1] .. "," .. ids[2], ask(a1, "conns"))
            assert.are.equal(ask(b1, "id"), ask(b1, "conns"))
            for _, c in ipairs { a1, a2, b1 } do c:close() end
        end)

        it("keeps B serving while A spins in an infinite loop", function()
            local b = connect("/b")
            assert.are.equal("B v1 /b", ask(b, "who"))
            local a = connect("/a")
            a:send_text("spin")
            assert.are.equal(1011, (a:expect_close(10)))
            a:abort()
            assert.is_true(wait_for(srv, "app " .. a_dir .. ": message handler ran out of "
                .. "instructions"))
            assert.are.equal("B v1 /b", ask(b, "who"))
            b:close()
        end)

        it("keeps B serving, with its own memory, while A hits its memory cap", function()
            local b, a = connect("/b"), connect("/a")
            -- 7 MiB each: two of them would not fit under one 16 MiB cap.
            assert.are.equal("held 7340032", ask(a, "hold 7340032"), "A holds 7 MiB")
            assert.are.equal("held 7340032", ask(b, "hold 7340032"), "B holds 7 MiB")
            a:send_text("hog")
            assert.are.equal(1011, (a:expect_close(10)))
            a:abort()
            assert.is_true(wait_for(srv, "app " .. a_dir .. ": message handler ran out of "
                .. "memory"))
            assert.are.equal("alloc 1048576", ask(b, "alloc 1048576"), "B still allocates")
            assert.are.equal("held 0", ask(b, "hold 0"))
            local a2 = connect("/a")
            assert.are.equal("held 0", ask(a2, "hold 0"), "A is served again")
            a2:close()
            b:close()
        end)
    end)

    describe("reloads", function()
        it("SIGHUP reloads every app", function()
            local a, b, c = connect("/a"), connect("/b"), connect("/a/deep")
            write_file(a_dir .. "/app.lua", app_source("A", 2))
            write_file(b_dir .. "/app.lua", app_source("B", 2))
            write_file(c_dir .. "/app.lua", app_source("C", 2))
            srv:signal("HUP")
            for _, d in ipairs { a_dir, b_dir, c_dir } do
                assert.is_true(wait_for(srv, "app " .. d .. " reloaded (version 2)"), d)
            end
            assert.are.equal("A v2 /a", ask(a, "who"))
            assert.are.equal("B v2 /b", ask(b, "who"))
            assert.are.equal("C v2 /a/deep", ask(c, "who"))
            for _, x in ipairs { a, b, c } do x:close() end
        end)

        it("keeps both serving when A's new version has a syntax error", function()
            local a, b = connect("/a"), connect("/b")
            write_file(a_dir .. "/app.lua", "local app = {\nreturn app\n")
            write_file(b_dir .. "/app.lua", app_source("B", 3))
            srv:signal("HUP")
            assert.is_true(wait_for(srv, "app " .. b_dir .. " reloaded (version 3)"))
            assert.is_true(wait_for(srv, "app " .. a_dir .. ": reload failed, the previous "
                .. "version keeps running: " .. a_dir .. "/app.lua:2:"))
            assert.are.equal("A v2 /a", ask(a, "who"), "A keeps its previous version")
            assert.are.equal("B v3 /b", ask(b, "who"), "B has its new version")
            assert.are.equal("A v2 /a/new", who("/a/new"))
            a:close()
            b:close()
            write_file(a_dir .. "/app.lua", app_source("A", 3))
        end)
    end)

    describe("static files", function()
        it("serves each app's public/index.html for its folder", function()
            local r = http("GET", "/a/")
            assert.are.equal(200, r.status)
            assert.are.equal(INDEX_A, r.body)
            assert.are.equal("text/html; charset=utf-8", r.headers["content-type"])
            assert.are.equal(tostring(#INDEX_A), r.headers["content-length"])
            assert.are.equal("no-cache", r.headers["cache-control"])
            assert.is_truthy(r.headers["etag"])
            local rb = http("GET", "/b/")
            assert.are.equal(200, rb.status)
            assert.are.equal(INDEX_B, rb.body)
            assert.are.equal(INDEX_A, http("GET", "/a/index.html").body)
            assert.are.equal(SUB_A, http("GET", "/a/sub/").body)
        end)

        it("redirects /a to /a/ with 301", function()
            for _, p in ipairs { "/a", "/b" } do
                local r = http("GET", p)
                assert.are.equal(301, r.status, p)
                assert.are.equal(p .. "/", r.headers["location"])
            end
        end)

        it("sends content types by extension", function()
            local types = {
                ["/a/style.css"] = "text/css; charset=utf-8",
                ["/a/app.js"] = "text/javascript; charset=utf-8",
                ["/a/data.json"] = "application/json",
                ["/a/img.png"] = "image/png",
                ["/a/noext"] = "application/octet-stream",
                ["/a/UPPER.HTML"] = "text/html; charset=utf-8",
            }
            for path, want in pairs(types) do
                local r = http("GET", path)
                assert.are.equal(200, r.status, path)
                assert.are.equal(want, r.headers["content-type"], path)
            end
            assert.are.equal(PNG, http("GET", "/a/img.png").body, "binary bytes unchanged")
        end)

        it("serves a 1 MiB file whole", function()
            local r = http("GET", "/a/big.bin")
            assert.are.equal(200, r.status)
            assert.are.equal(tostring(#BIG), r.headers["content-length"])
            assert.are.equal(#BIG, #r.body)
            assert.is_true(r.body == BIG, "the body differs from the file")
        end)

        it("decodes percent-escapes and ignores the query", function()
            local r = http("GET", "/a/my%20file.txt")
            assert.are.equal(200, r.status)
            assert.are.equal("spaced name\n", r.body)
            local q = http("GET", "/a/style.css?v=3")
            assert.are.equal(200, q.status)
            assert.are.equal("text/css; charset=utf-8", q.headers["content-type"])
        end)

        it("answers HEAD with the headers and no body", function()
            local r = http("HEAD", "/a/")
            assert.are.equal(200, r.status)
            assert.are.equal(tostring(#INDEX_A), r.headers["content-length"])
            assert.are.equal("", r.body)
        end)

        it("answers If-None-Match with the current ETag with 304 and no body", function()
            local etag = http("GET", "/a/style.css").headers["etag"]
            assert.is_truthy(etag)
            local r = http("GET", "/a/style.css", { "If-None-Match: " .. etag .. "\r\n" })
            assert.are.equal(304, r.status)
            assert.are.equal("", r.body)
            local r2 = http("GET", "/a/style.css", { "If-None-Match: \"stale\"\r\n" })
            assert.are.equal(200, r2.status)
            assert.are.equal("p { color: red }\n", r2.body)
            -- A changed file gets a new ETag: the old one no longer matches.
            write_file(a_dir .. "/public/style.css", "p { color: rebeccapurple }\n")
            local r3 = http("GET", "/a/style.css", { "If-None-Match: " .. etag .. "\r\n" })
            assert.are.equal(200, r3.status)
            assert.are.equal("p { color: rebeccapurple }\n", r3.body)
            assert.are_not.equal(etag, r3.headers["etag"])
        end)

        it("answers 404 for a missing file", function()
            assert.are.equal(404, http("GET", "/a/missing.html").status)
            assert.are.equal(404, http("GET", "/b/style.css").status, "a's files are not b's")
        end)

        it("answers 404 to path traversal, hidden files and symlinks out of the folder",
            function()
                local paths = {
                    "/a/../b/index.html", "/a/%2e%2e/%2e%2e/etc/passwd",
                    "/a/%2E%2E/b/public/index.html", "/a/..%2f..%2fetc%2fpasswd",
                    "/a/sub/../index.html", "/a/./index.html", "/a/.hidden", "/a/%2ehidden",
                    "/a/.git/config", "/a/link.txt", "/a/linkdir/secret.txt", "/a/b.html",
                    "/b/..%2f..%2f" .. secret_dir:gsub("^/", "") .. "/secret.txt",
                }
                for _, p in ipairs(paths) do
                    local r = http("GET", p)
                    assert.are.equal(404, r.status, "GET " .. p)
                    assert.is_nil((r.body or ""):find("outside every public", 1, true), p)
                    assert.is_nil((r.body or ""):find("app b", 1, true), p)
                end
            end)

        it("refuses NUL and backslashes in a path", function()
            for _, p in ipairs { "/a/index.html%00.png", "/a/..%5c..%5cetc%5cpasswd" } do
                local status = http("GET", p).status
                assert.is_true(status == 400 or status == 404, p .. ": " .. tostring(status))
            end
        end)

        it("answers 426 for a plain GET of an app without public/", function()
            local r = http("GET", "/a/deep/")
            assert.are.equal(426, r.status)
        end)

        it("still upgrades WebSocket requests on a path with static files", function()
            assert.is_truthy(who("/a/"):match("^A v%d /a/$"))
        end)
    end)
end)

describe("--watch with several apps", function()
    it("reloads only the app whose folder changed", function()
        local a_dir = server.app_dir { ["app.lua"] = app_source("A") }
        local b_dir = server.app_dir { ["app.lua"] = app_source("B") }
        local srv = server.start { args = { "--watch" }, config = string.format(
            'apps = { ["/a"] = %q, ["/b"] = %q }\n', a_dir, b_dir) }
        finally(function()
            srv:stop()
            server.remove(a_dir)
            server.remove(b_dir)
        end)
        local a = assert(ws.connect(srv.port, { path = "/a" }))
        local b = assert(ws.connect(srv.port, { path = "/b" }))
        local f = assert(io.open(a_dir .. "/app.lua", "wb"))
        f:write(app_source("A", 2))
        f:close()
        assert.is_true(wait_for(srv, "app " .. a_dir .. " reloaded (version 2)", 1, 3))
        assert.are.equal("A v2 /a", (a:echo("who")))
        assert.are.equal("B v1 /b", (b:echo("who")))
        assert.are.equal(0, count(srv:log(), "app " .. b_dir .. " reloaded"))
        assert.is_truthy(srv:log():find("files changed: reloading " .. a_dir, 1, true))
        a:close()
        b:close()
    end)
end)
