-- The Lua side of the core: handler order, the conn object, conn:send and conn:close, handler
-- failures, apps that fail to load, and the sandbox (allow list, instruction budget, memory
-- cap). Each sandbox rule is a named probe that the app runs and answers over the socket.
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"
local line_of, count, wait_for = helpers.line_of, helpers.count, helpers.wait_for

-- ---- helpers ---------------------------------------------------------------------------------

-- Expects the server to close c with code, answers the close, and expects the TCP close.
local function expect_closed_with(c, code, reason)
    local got, why = c:expect_close()
    assert.are.equal(code, got, "close code (reason: " .. tostring(why) .. ")")
    if reason then assert.are.equal(reason, why) end
    c:send_close(1000)
    assert.is_true(c:wait_tcp_close(3), "the server closes TCP after the close frame")
    c:abort()
end

-- Starts a server that is expected to exit at once; kills it if it did not.
local function start_failing(opts)
    opts.expect_fail = true
    local srv = server.start(opts)
    if not srv.status then srv:kill() end
    return srv
end

-- Stops a server that may be stuck in app code: SIGTERM, then SIGKILL after a short wait.
-- Returns the exit status and whether SIGTERM alone was enough.
local function stop_quick(srv)
    local drained = true
    if not srv.status then
        srv:signal("TERM")
        if not srv:wait_exit(2) then
            drained = false
            srv:kill()
        end
    end
    return srv:stop(), drained
end

-- True when a fresh client gets an echo of "ping?" within timeout seconds.
local function serves(srv, timeout)
    local c = ws.connect(srv.port, { timeout = timeout or 2 })
    if not c then return false end
    local got = c:echo("ping?")
    c:abort()
    return got == "ping?"
end

-- ---- the API app -----------------------------------------------------------------------------

local API_APP = [=[
-- Commands in, answers out; every event is logged for the order test.
local util = require "util"
local app = {}
secret = "s3" -- a global of the app, for the load probes
local kept    -- a conn kept after its connection ended

local function try(f, ...)
    local ok, err = pcall(f, ...)
    return tostring(ok) .. " " .. tostring(err)
end

local probes = {
    io = function() return tostring(io) end,
    os_execute = function() return tostring(os.execute) end,
    os_exit = function() return tostring(os.exit) end,
    os_getenv = function() return tostring(os.getenv) end,
    os_time = function() return math.type(os.time()) end,
    debug = function() return tostring(debug) end,
    package = function() return tostring(package) end,
    dofile = function() return tostring(dofile) end,
    loadfile = function() return tostring(loadfile) end,
    string_dump = function() return tostring(string.dump) end,
    method_dump = function() return tostring(("").dump) end,
    load_binary = function()
        local f, err = load("\27LuaT\0\25\147\13\10\26\10", "=bin", "t", {})
        return tostring(f) .. " " .. tostring(err)
    end,
    load_mode_b = function() return try(load, "return 1", "=c", "b", {}) end,
    load_mode_bt = function() return try(load, "return 1", "=c", "bt", {}) end,
    load_no_env = function() return try(load, "return 1") end,
    load_env = function() return tostring(load("return x * 2", "=c", "t", { x = 21 })()) end,
    load_isolated = function()
        local a, b, c = load("return secret, mw, require", "=c", "t", {})()
        return tostring(a) .. " " .. tostring(b) .. " " .. tostring(c)
    end,
    load_given = function() return load("return secret", "=c", "t", _ENV)() end,
    string_meta = function() return tostring(getmetatable("")) end,
    string_methods = function() return ("abc"):upper() .. ("x"):rep(3) end,
    library_meta = function() return try(setmetatable, string, nil) end,
    readonly = function() return try(function() string.upper = nil end) end,
    readonly_after = function() return string.upper("still there") end,
    gc_collect = function() return try(collectgarbage, "collect") end,
    gc_default = function() return try(collectgarbage) end,
    gc_count = function()
        local n = collectgarbage("count")
        return math.type(n) .. " " .. tostring(n > 0)
    end,
    require_util = function()
        return tostring(util.answer) .. " " .. tostring(require("util") == util)
    end,
    require_up = function() return try(require, "../x") end,
    require_os = function() return try(require, "os") end,
    require_cjson = function() return try(require, "cjson") end,
    print = function()
        print("printed", 42, nil)
        return "done"
    end,
}

function app.open(conn)
    mw.log("info", "event open", conn, conn.path)
    if conn.path == "/fail-open" then error("open refused on purpose") end
end

function app.message(conn, data, is_binary)
    mw.log("info", "event message", conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "probe" then
        conn:send(probes[arg]())
    elseif cmd == "echo" then
        conn:send(arg)
    elseif cmd == "id" then
        conn:send(math.type(conn.id) .. " " .. conn.id)
    elseif cmd == "tostring" then
        conn:send(tostring(conn))
    elseif cmd == "count" then
        conn.data.n = (conn.data.n or 0) + 1
        conn:send(tostring(conn.data.n))
    elseif cmd == "path" then
        conn:send(conn.path)
    elseif cmd == "binary" then
        conn:send("\0\1\2\255", true)
    elseif cmd == "text" then
        conn:send("h\u{E9}llo \u{263A}")
    elseif cmd == "bad-utf8" then
        conn:send("\255\254")
    elseif cmd == "kick" then
        conn:close(4000, "kicked")
    elseif cmd == "bye" then
        conn:close()
    elseif cmd == "close-1006" then
        conn:close(1006)
    elseif cmd == "boom" then
        error("boom")
    elseif cmd == "keep" then
        kept = conn
        conn:send("kept " .. conn.id)
    elseif cmd == "use-kept" then
        local ok, err = kept:send("late")
        conn:send(tostring(ok) .. " " .. tostring(err) .. " " .. tostring(kept.id))
    end
end

function app.close(conn, code, reason)
    mw.log("info", "event close", conn, code, reason, "n=" .. tostring(conn.data.n))
end

return app
]=]

local UTIL = [[
return { answer = 42 }
]]

describe("an app", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = API_APP, ["util.lua"] = UTIL }
        srv = server.start { app = dir }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    local function connect(path)
        return assert(ws.connect(srv.port, { path = path }))
    end

    -- Sends a command and returns the answer.
    local function ask(c, cmd)
        local got, kind, code = c:echo(cmd)
        assert(got, "no answer to " .. cmd .. ": " .. tostring(kind) .. " " .. tostring(code))
        return got
    end

    describe("handlers", function()
        it("calls open, message and close in that order", function()
            local c = connect("/order")
            local id = ask(c, "id"):match("%d+")
            assert.are.equal("1", ask(c, "count"))
            assert.are.equal(1000, (c:close(1000, "bye")))
            local conn = "event close conn " .. id .. " 1000 bye n=1"
            assert.is_true(wait_for(srv, conn), "the close handler ran")
            local log = srv:log()
            local open = log:find("event open conn " .. id .. " /order", 1, true)
            local message = log:find("event message conn " .. id .. " count", 1, true)
            local close = log:find(conn, 1, true)
            assert.is_truthy(open, "open was called")
            assert.is_truthy(message, "message was called")
            assert.is_true(open < message and message < close, "open < message < close")
        end)

        it("passes close the code and reason of a close the app made", function()
            local c = connect()
            local id = ask(c, "id"):match("%d+")
            c:send_text("kick")
            expect_closed_with(c, 4000, "kicked")
            assert.is_true(wait_for(srv, "event close conn " .. id .. " 4000 kicked"))
        end)
    end)

    describe("conn", function()
        it("has an integer id, distinct for two connections", function()
            local a, b = connect(), connect()
            local ta, ida = ask(a, "id"):match("^(%S+) (%d+)$")
            local tb, idb = ask(b, "id"):match("^(%S+) (%d+)$")
            assert.are.same({ "integer", "integer" }, { ta, tb })
            assert.are_not.equal(ida, idb)
            a:close()
            b:close()
        end)

        it("prints as 'conn N'", function()
            local c = connect()
            local id = ask(c, "id"):match("%d+")
            assert.are.equal("conn " .. id, ask(c, "tostring"))
            c:close()
        end)

        it("keeps conn.data between messages of one connection, not across connections", function()
            local a = connect()
            local answers = { ask(a, "count"), ask(a, "count"), ask(a, "count") }
            assert.are.same({ "1", "2", "3" }, answers)
            local b = connect()
            assert.are.equal("1", ask(b, "count"))
            assert.are.equal("4", ask(a, "count"))
            a:close()
            b:close()
        end)

        it("has the request path, without the query, as conn.path", function()
            local c = connect("/room/42?user=ann")
            assert.are.equal("/room/42", ask(c, "path"))
            c:close()
        end)

        it("answers nil, 'closed' to a send on a conn whose connection ended", function()
            local a = connect()
            local id = ask(a, "keep"):match("kept (%d+)")
            a:close()
            assert.is_true(wait_for(srv, "event close conn " .. id .. " "))
            local b = connect()
            assert.are.equal("nil closed " .. id, ask(b, "use-kept"))
            b:close()
        end)
    end)

    describe("conn:send", function()
        it("sends binary with conn:send(data, true)", function()
            local c = connect()
            c:send_text("binary")
            local got, opcode = c:recv_message()
            assert.are.same({ "\0\1\2\255", ws.op.binary }, { got, opcode })
            c:close()
        end)

        it("sends text with conn:send(data)", function()
            local c = connect()
            c:send_text("text")
            local got, opcode = c:recv_message()
            assert.are.same({ "h\u{E9}llo \u{263A}", ws.op.text }, { got, opcode })
            c:close()
        end)

        it("raises for invalid UTF-8 sent as text: the handler fails with 1011", function()
            local c = connect()
            local before = count(srv:log(), "not valid UTF-8")
            c:send_text("bad-utf8")
            expect_closed_with(c, 1011)
            assert.is_true(wait_for(srv, "not valid UTF-8", before + 1))
        end)
    end)

    describe("conn:close", function()
        it("sends the code and reason given", function()
            local c = connect()
            c:send_text("kick")
            expect_closed_with(c, 4000, "kicked")
        end)

        it("sends 1000 without arguments", function()
            local c = connect()
            c:send_text("bye")
            expect_closed_with(c, 1000, "")
        end)

        it("raises for a code an endpoint may not send (1006): the handler fails with 1011",
            function()
                local c = connect()
                c:send_text("close-1006")
                expect_closed_with(c, 1011)
                assert.is_true(wait_for(srv, "1006 is not a close code"))
            end)
    end)

    describe("handler failures", function()
        it("log the error with file:line, close that connection with 1011, serve the others",
            function()
                local other = connect()
                assert.are.equal("before", ask(other, "echo before"))
                local c = connect()
                c:send_text("boom")
                expect_closed_with(c, 1011)
                local where = dir .. "/app.lua:" .. line_of(API_APP, 'error("boom")') .. ": boom"
                assert.is_true(wait_for(srv, where), "the log holds " .. where)
                assert.are.equal("after", ask(other, "echo after"))
                other:close()
            end)

        it("close the connection with 1011 when app.open fails", function()
            local c = connect("/fail-open")
            expect_closed_with(c, 1011)
            local where = dir .. "/app.lua:" .. line_of(API_APP, "open refused on purpose")
            assert.is_true(wait_for(srv, "open handler failed: " .. where))
        end)
    end)

    describe("sandbox", function()
        -- { name, probe, expected answer (string) or Lua pattern (table) }
        local cases = {
            { "io is nil", "io", "nil" },
            { "os.execute is nil", "os_execute", "nil" },
            { "os.exit is nil", "os_exit", "nil" },
            { "os.getenv is nil", "os_getenv", "nil" },
            { "os.time is still there", "os_time", "integer" },
            { "debug is nil", "debug", "nil" },
            { "package is nil", "package", "nil" },
            { "dofile is nil", "dofile", "nil" },
            { "loadfile is nil", "loadfile", "nil" },
            { "string.dump is nil", "string_dump", "nil" },
            { "(''):dump is nil", "method_dump", "nil" },
            { "load refuses a binary chunk", "load_binary", { "^nil .*binary chunk" } },
            { "load raises for mode 'b'", "load_mode_b", { "^false .*only text chunks" } },
            { "load raises for mode 'bt'", "load_mode_bt", { "^false .*only text chunks" } },
            { "load without an env raises", "load_no_env", { "^false .*table expected" } },
            { "load with an env runs in it", "load_env", "42" },
            { "load's env does not see the app's globals", "load_isolated", "nil nil nil" },
            { "load sees the app's globals when given them", "load_given", "s3" },
            { "getmetatable('') is false", "string_meta", "false" },
            { "string methods still work", "string_methods", "ABCxxx" },
            { "library tables cannot get a new metatable", "library_meta",
              { "^false .*protected metatable" } },
            { "string.upper = nil raises", "readonly", { "^false .*read%-only" } },
            { "string.upper survives the attempt", "readonly_after", "STILL THERE" },
            { "collectgarbage('collect') raises", "gc_collect", { "^false .*only \"count\"" } },
            { "collectgarbage() raises", "gc_default", { "^false .*only \"count\"" } },
            { "collectgarbage('count') is a number", "gc_count", "float true" },
            { "require finds a module in the app folder", "require_util", "42 true" },
            { "require '../x' fails", "require_up", { "^false .*bad module name '%.%./x'" } },
            { "require 'os' fails, pointing to the os table",
              "require_os", { "^false .*module 'os' is not available.*use the os table" } },
            { "require 'cjson' fails, pointing to mw.json",
              "require_cjson", { "^false .*module 'cjson' is not available.*use mw%.json" } },
        }
        for _, case in ipairs(cases) do
            local name, probe, want = case[1], case[2], case[3]
            it(name, function()
                local c = connect()
                local got = ask(c, "probe " .. probe)
                if type(want) == "table" then
                    assert.is_truthy(got:match(want[1]), "answer: " .. got)
                else
                    assert.are.equal(want, got)
                end
                c:close()
            end)
        end

        it("print writes a log line", function()
            local c = connect()
            assert.are.equal("done", ask(c, "probe print"))
            assert.is_true(wait_for(srv, "app " .. dir .. ": printed 42 nil"))
            c:close()
        end)
    end)
end)

describe("an app that does not load", function()
    local function fails_with(files, ...)
        local dir = server.app_dir(files)
        local srv = start_failing { app = dir }
        local log = srv:log()
        srv:stop()
        server.remove(dir)
        assert.are.equal(1, srv.status, "exit status; log:\n" .. log)
        for _, text in ipairs { ... } do
            assert.is_truthy(log:find((text:gsub("DIR", dir)), 1, true), "log:\n" .. log)
        end
    end

    it("with a syntax error: exits 1 naming the file and line", function()
        fails_with({ ["app.lua"] = "local app = {}\n\nlocal x = = 1\nreturn app\n" },
            "DIR/app.lua:3:", "unexpected symbol")
    end)

    it("that raises while loading: exits 1 naming the file and line", function()
        fails_with({ ["app.lua"] = "local app = {}\nerror('no database')\nreturn app\n" },
            "DIR/app.lua:2: no database")
    end)

    it("that returns a number: exits 1 saying it must return a table", function()
        fails_with({ ["app.lua"] = "return 42\n" },
            "DIR/app.lua must return a table of handlers (it returned number)")
    end)

    it("that returns nothing: exits 1 saying it must return a table", function()
        fails_with({ ["app.lua"] = "local app = {}\n" }, "must return a table of handlers")
    end)

    it("with a handler that is not a function: exits 1 naming it", function()
        fails_with({ ["app.lua"] = "return { message = 'hello' }\n" },
            "handler 'message' must be a function (it is a string)")
    end)

    it("at a missing path: exits 1 saying so", function()
        local srv = start_failing { app = "/nonexistent/moonwire-app" }
        local log = srv:log()
        srv:stop()
        assert.are.equal(1, srv.status)
        assert.is_truthy(log:find("cannot open app /nonexistent/moonwire-app", 1, true), log)
    end)

    it("in a folder without app.lua: exits 1 saying so", function()
        fails_with({ ["util.lua"] = UTIL }, "DIR is a folder without app.lua")
    end)

    it("given as a Lua file rather than a folder loads", function()
        local dir = server.app_dir { ["main.lua"] = API_APP, ["util.lua"] = UTIL }
        local srv = server.start { app = dir .. "/main.lua" }
        local c = assert(ws.connect(srv.port))
        assert.are.equal("42 true", c:echo("probe require_util"))
        c:close()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)
end)

-- ---- instruction budget ----------------------------------------------------------------------

local SPIN_APP = [[
local app = {}
function app.message(conn, data)
    if data == "spin" then
        while true do end -- spin
    elseif data == "spin-pcall" then
        while true do pcall(function() while true do end end) end -- spin-pcall
    elseif data == "spin-coroutine" then
        while true do pcall(coroutine.wrap(function() while true do end end)) end
    elseif data == "spin-xpcall-handler" then
        xpcall(error, function() while true do end end)
    elseif data == "spin-finalizer" then
        setmetatable({}, { __gc = function() while true do end end })
        for i = 1, 1e5 do local garbage = { i } end
    elseif data == "finalizer-at-exit" then
        -- A sandbox may refuse __gc: then there is nothing left for lua_close to run.
        pcall(function()
            kept = setmetatable({}, { __gc = function() while true do end end })
        end)
        conn:send("kept")
    elseif data == "work" then
        local n = 0
        for i = 1, 300000 do n = n + i end
        conn:send(tostring(n))
    else
        conn:send(data)
    end
end
return app
]]

local SPIN_CONFIG = "sandbox = { instructions = 1000000 }\n"

describe("the instruction budget", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = SPIN_APP }
        srv = server.start { app = dir, config = SPIN_CONFIG }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    local function stops(cmd, marker)
        local other = assert(ws.connect(srv.port))
        assert.are.equal("before", other:echo("before"))
        local before = count(srv:log(), "instruction budget exceeded")
        local c = assert(ws.connect(srv.port))
        c:send_text(cmd)
        expect_closed_with(c, 1011)
        assert.is_true(wait_for(srv, "instruction budget exceeded (1000000 instructions)",
            before + 1))
        if marker then
            local where = dir .. "/app.lua:" .. line_of(SPIN_APP, marker) .. ":"
            assert.is_truthy(srv:log():find(where .. " instruction budget", 1, true),
                "the log names " .. where)
        end
        assert.are.equal("after", other:echo("after"))
        other:close()
    end

    it("stops an infinite loop with 1011 and logs file:line", function()
        stops("spin", "-- spin")
    end)

    it("stops an infinite loop that pcall keeps catching", function()
        stops("spin-pcall", "-- spin-pcall")
    end)

    it("stops an infinite loop in a coroutine resumed under pcall", function()
        stops("spin-coroutine")
    end)

    it("is charged per callback, not per connection", function()
        local c = assert(ws.connect(srv.port))
        -- Three calls of about 600k instructions each: over the budget together, not alone.
        for _ = 1, 3 do assert.are.equal(tostring(300000 * 300001 // 2), c:echo("work")) end
        c:close()
    end)
end)

-- Code that Lua 5.4 runs with hooks disabled: an xpcall message handler called for the
-- budget's own error (it runs inside the count hook) and __gc finalizers. Each test has its
-- own server, so a hang fails that test alone, quickly.
describe("the instruction budget, in code Lua runs without hooks", function()
    local function with_server(body)
        local dir = server.app_dir { ["app.lua"] = SPIN_APP }
        local srv = server.start { app = dir, config = SPIN_CONFIG }
        finally(function()
            stop_quick(srv)
            server.remove(dir)
        end)
        body(srv)
    end

    local function answered(srv, cmd)
        local c = assert(ws.connect(srv.port, { timeout = 1 }))
        c:send_text(cmd)
        local got, kind, code = c:recv_message(1)
        c:abort()
        return got, kind, code
    end

    it("stops an infinite loop in an xpcall message handler", function()
        with_server(function(srv)
            local _, kind, code = answered(srv, "spin-xpcall-handler")
            assert.are.same({ "close", 1011 }, { kind, code })
            assert.is_true(serves(srv), "the server still serves others")
            local status, drained = stop_quick(srv)
            assert.is_true(drained, "SIGTERM stops the server")
            assert.are.equal(0, status)
        end)
    end)

    it("survives an infinite loop in a __gc finalizer", function()
        with_server(function(srv)
            local _, kind = answered(srv, "spin-finalizer")
            assert.are_not.equal("timeout", kind, "the handler ends")
            assert.is_true(serves(srv), "the server still serves others")
        end)
    end)

    it("lets the server exit on SIGTERM with a looping finalizer left for lua_close",
        function()
            with_server(function(srv)
                assert.are.equal("kept", (answered(srv, "finalizer-at-exit")))
                local status, drained = stop_quick(srv)
                assert.is_true(drained, "SIGTERM stops the server")
                assert.are.equal(0, status)
            end)
        end)
end)

-- ---- memory cap ------------------------------------------------------------------------------

local HOG_APP = [[
local app = {}
function app.message(conn, data)
    if data == "hog-table" then
        local t = {}
        for i = 1, 1e8 do t[i] = string.rep("x", 100) .. i end -- hog-table
    elseif data == "hog-rep" then
        local s = string.rep("x", 1 << 30) -- hog-rep
    else
        conn:send(data)
    end
end
return app
]]

describe("the memory cap", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = HOG_APP }
        srv = server.start { app = dir, config = "sandbox = { memory = 8 << 20 }\n" }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    local function stops(cmd)
        local other = assert(ws.connect(srv.port))
        assert.are.equal("before", other:echo("before"))
        local before = count(srv:log(), "ran out of memory")
        local c = assert(ws.connect(srv.port))
        c:send_text(cmd)
        expect_closed_with(c, 1011)
        assert.is_true(wait_for(srv, "ran out of memory", before + 1))
        assert.is_truthy(srv:log():find("memory limit exceeded", 1, true))
        assert.are.equal("after", other:echo("after"))
        other:close()
        assert.is_true(serves(srv), "a new client is served")
    end

    it("stops a handler that fills a table, with 1011", function() stops("hog-table") end)

    it("stops a handler asking for a 1 GiB string, with 1011", function() stops("hog-rep") end)

    it("logs a memory failure with the app's file:line (DESIGN 5)", function()
        local c = assert(ws.connect(srv.port))
        c:send_text("hog-rep")
        expect_closed_with(c, 1011)
        local where = dir .. "/app.lua:" .. line_of(HOG_APP, "-- hog-rep")
        local line = srv:log():match("[^\n]*ran out of memory[^\n]*") or ""
        assert.is_true(wait_for(srv, where, 1, 1), "the log names " .. where .. ":\n" .. line)
    end)
end)

describe("the memory cap, against a message bigger than it", function()
    it("fails that connection and keeps serving", function()
        local srv = server.start { app = "examples/echo",
                                   config = "sandbox = { memory = 8 << 20 }\n" }
        finally(function() stop_quick(srv) end)
        local c = assert(ws.connect(srv.port))
        c:send_frame { opcode = ws.op.binary, payload = string.rep("y", 9 << 20),
                       key = "\0\0\0\0" }
        local code = c:expect_close()
        c:abort()
        assert.is_true(code == 1011 or code == 1009, "close code: " .. tostring(code))
        assert.is_true(serves(srv), "the server still serves others")
        local status = stop_quick(srv)
        assert.are.equal(0, status)
    end)
end)
