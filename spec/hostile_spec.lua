-- Hostile app code against the sandbox: each attack is its own named regression test. It must
-- be contained (1011 or a harmless answer, one log line naming the app and file:line), and a
-- well-behaved client is served before and after; at the end the server exits 0 on SIGTERM.
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"
local line_of = helpers.line_of

-- ---- the hostile app -------------------------------------------------------------------------

-- Each attack spans the lines from "A.NAME = function" to "end -- /NAME"; the log line of its
-- failure must name one of them.
local HOSTILE = [=[
local tostring = tostring -- the dispatcher's own, whatever the attacks do to the global
local app = {}
local A = {}

A.string_dump = function(conn)
    return string.dump(function() end)
end -- /string_dump

A.method_dump = function(conn)
    return (""):dump()
end -- /method_dump

A.load_mode_b = function(conn)
    return load("return 1", "=chunk", "b", {})
end -- /load_mode_b

A.load_bytecode = function(conn)
    local f = assert(load("\27LuaT\0\25\147\13\10\26\10\4\8\8", "=bin", "t", {}))
    return f()
end -- /load_bytecode

A.string_metatable = function(conn)
    local mt = getmetatable("")
    return mt.__index
end -- /string_metatable

A.string_metatable_rawset = function(conn)
    rawset(getmetatable(""), "__index", { upper = function() return "pwned" end })
end -- /string_metatable_rawset

A.debug = function(conn)
    return debug.getinfo(1)
end -- /debug

A.io = function(conn)
    return io.open("/etc/passwd"):read("a")
end -- /io

A.os_execute = function(conn)
    return os.execute("touch /tmp/moonwire-hostile-was-here")
end -- /os_execute

A.os_exit = function(conn)
    os.exit(3)
end -- /os_exit

A.package = function(conn)
    return package.loadlib("libc.so.6", "system")
end -- /package

A.require_io = function(conn)
    return require("io")
end -- /require_io

A.require_passwd = function(conn)
    return require("../../etc/passwd")
end -- /require_passwd

A.rawset_string = function(conn)
    rawset(string, "upper", function() return "pwned" end)
    local seen = ("abc"):upper()
    rawset(string, "upper", nil)
    return seen .. " " .. string.upper("abc")
end -- /rawset_string

A.rawset_string_keep = function(conn)
    rawset(string, "upper", function() return "pwned" end)
    return ("abc"):upper() .. " " .. string.upper("abc")
end -- /rawset_string_keep

A.string_upper = function(conn)
    return string.upper("abc")
end -- /string_upper

A.pairs_string = function(conn)
    local _, lib = pairs(string)
    local orig = lib.upper
    lib.upper = function() return "pwned" end
    local seen = ("abc"):upper()
    lib.upper = orig
    return seen
end -- /pairs_string

A.pairs_mw = function(conn)
    local _, api = pairs(mw)
    local orig = api.subscribers
    api.subscribers = function() return -42 end
    local seen = mw.subscribers("nobody")
    api.subscribers = orig
    return tostring(seen)
end -- /pairs_mw

A.rawset_mw = function(conn)
    rawset(mw, "subscribers", function() return -42 end)
    return tostring(mw.subscribers("nobody"))
end -- /rawset_mw

A.unrawset_mw = function(conn)
    rawset(mw, "subscribers", nil)
    return tostring(mw.subscribers("nobody"))
end -- /unrawset_mw

A.subscribers = function(conn)
    return tostring(mw.subscribers("nobody"))
end -- /subscribers

A.globals = function(conn)
    _G.hostile_global = "set by the hostile app"
    _G.print = nil
    _G.tostring = function() return "pwned" end
    return "globals set"
end -- /globals

A.globals_after = function(conn)
    return tostring(hostile_global) .. " " .. type(print) .. " " .. _G.tostring(42)
end -- /globals_after

A.coroutine_pingpong = function(conn)
    local ping, pong
    ping = coroutine.wrap(function() while true do pong() coroutine.yield() end end)
    pong = coroutine.wrap(function() while true do coroutine.yield() end end)
    while true do ping() end
end -- /coroutine_pingpong

A.coroutine_catch = function(conn)
    local co = coroutine.wrap(function()
        while true do pcall(function() while true do end end) end
    end)
    while true do pcall(co) end
end -- /coroutine_catch

A.coroutine_resume_catch = function(conn)
    while true do coroutine.resume(coroutine.create(function() while true do end end)) end
end -- /coroutine_resume_catch

-- The watchdog arms the main thread's hook only, so each coroutine is hooked when made: one
-- parked by an earlier message and spinning in a later one must be stopped too.
local parked
A.coroutine_park = function(conn)
    parked = coroutine.create(function() coroutine.yield() while true do end end)
    coroutine.resume(parked)
    return coroutine.status(parked)
end -- /coroutine_park

A.coroutine_spin_later = function(conn)
    local ok = coroutine.resume(parked)
    return ok
end -- /coroutine_spin_later

A.slow_library_calls = function(conn)
    local n = 0
    for _ = 1, 100000 do n = n + #string.rep("ab", 1 << 20) end -- ~30 s, few instructions
    return n
end -- /slow_library_calls

A.coroutine_wrap_recursion = function(conn)
    local function dive() return coroutine.wrap(dive)() end
    return dive()
end -- /coroutine_wrap_recursion

A.deep_recursion = function(conn)
    local function r(n) return 1 + r(n + 1) end
    return r(1)
end -- /deep_recursion

A.concat_bomb = function(conn)
    local s = "xxxxxxxxxxxxxxxx"
    while true do s = s .. s end
end -- /concat_bomb

A.rep_bomb = function(conn)
    return #string.rep("x", 2^40)
end -- /rep_bomb

A.table_bomb = function(conn)
    local t = {}
    for i = 1, math.maxinteger do t[i] = { i, i, i, i } end
end -- /table_bomb

A.error_table = function(conn)
    error({ code = 42 })
end -- /error_table

A.error_tostring_loop = function(conn)
    error(setmetatable({}, { __tostring = function() while true do end end,
                             __name = "evil\nforged: line" }))
end -- /error_tostring_loop

A.error_newline = function(conn)
    error("first line\nforged: second line " .. string.rep("y", 5000))
end -- /error_newline

A.xpcall_loop = function(conn)
    return xpcall(function() error("inner") end, function(m) while true do end end)
end -- /xpcall_loop

A.gc_metamethod = function(conn)
    return setmetatable({}, { __gc = function() while true do end end })
end -- /gc_metamethod

A.gc_placeholder = function(conn)
    local mt = { __gc = false }
    local o = setmetatable({}, mt)
    mt.__gc = function() while true do end end
    return o
end -- /gc_placeholder

A.gc_late = function(conn)
    local mt = {}
    local o = setmetatable({}, mt)
    mt.__gc = function() while true do end end
    o = nil
    for i = 1, 200000 do local garbage = { i } end
    return "no finalizer ran"
end -- /gc_late

A.pcall_spin = function(conn)
    while true do pcall(function() while true do end end) end
end -- /pcall_spin

A.os_date = function(conn)
    local calls = {
        function() return os.date("%Ez") end,
        function() return os.date("%") end,
        function() return os.date("%Q") end,
        function() return os.date("*t", 2^62) end,
        function() return os.date("!%c", math.maxinteger) end,
        function() return os.date("%c", -2^60) end,
        function() return os.date("%c", 0/0) end,
        function() return os.time({ year = 2^40, month = 1, day = 1 }) end,
        function() return os.time({ year = "x" }) end,
        function() return os.difftime(nil) end,
    }
    local raised = 0
    for _, f in ipairs(calls) do
        if not pcall(f) then raised = raised + 1 end
    end
    local long = os.date(string.rep("%c", 2000))
    return raised .. " of " .. #calls .. " raised; long " .. tostring(#long > 2000)
end -- /os_date

A.load_env = function(conn)
    local env = {}
    local a, b, c, d, e = load("return _G, string, getmetatable, mw, require", "=c", "t", env)()
    local same = load("return _ENV", "=c", "t", env)() == env
    load("leaked = 1", "=c", "t", env)()
    return table.concat({ tostring(a), tostring(b), tostring(c), tostring(d), tostring(e),
                          tostring(same), tostring(env.leaked), tostring(leaked),
                          tostring(getmetatable(_ENV)) }, " ")
end -- /load_env

A.load_reader = function(conn)
    return load(function() return nil end, "=r", "t", {})
end -- /load_reader

A.mw_write = function(conn)
    mw.publish = nil
end -- /mw_write

A.mw_json_write = function(conn)
    mw.json.decode = function() return "pwned" end
end -- /mw_json_write

A.collectgarbage_stop = function(conn)
    collectgarbage("stop")
end -- /collectgarbage_stop

A.conn_write = function(conn)
    conn.id = 1
end -- /conn_write

A.spin_timer = function(conn)
    mw.state.spinner = mw.every(5, function() while true do end end)
    return "armed"
end -- /spin_timer

A.disarm = function(conn)
    return tostring(mw.state.spinner:cancel())
end -- /disarm

A.pattern_backtrack = function(conn)
    return (string.rep("a", 5000)):find(".-.-.-.-b")
end -- /pattern_backtrack

A.rep_loop = function(conn)
    for i = 1, math.maxinteger do local s = string.rep("x", 1 << 20) end
end -- /rep_loop

A.subscribe_loop = function(conn)
    for i = 1, math.maxinteger do conn:subscribe("topic-" .. i) end
end -- /subscribe_loop

-- Ignores backpressure: 256 sends of 1 MiB to a client that does not read.
A.send_flood = function(conn)
    local s, results = string.rep("x", 1 << 20), {}
    for i = 1, 256 do
        local ok, err = conn:send(s)
        local k = tostring(ok) .. "," .. tostring(err)
        results[k] = (results[k] or 0) + 1
    end
    local out = {}
    for k, n in pairs(results) do out[#out + 1] = k .. "=" .. n end
    table.sort(out)
    mw.log("info", "send_flood results " .. table.concat(out, " "))
end -- /send_flood

function app.message(conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "echo" then
        conn:send(arg)
    else
        local r = A[cmd](conn)
        conn:send(tostring(r))
    end
end

return app
]=]

-- A second app, mounted at /other: what it sees of the shared libraries.
local OTHER = [[
local app = {}
function app.message(conn, data)
    conn:send(("abc"):upper() .. " " .. tostring(hostile_global) .. " " .. type(print)
        .. " " .. tostring(42) .. " " .. mw.subscribers("nobody") .. " " .. data)
end
return app
]]

local CONFIG = [[
sandbox = { instructions = 2000000, memory = 16 << 20 }
apps = { ["/other"] = "@OTHER@" }
]]

-- ---- helpers ---------------------------------------------------------------------------------

-- The lines of attack name in HOSTILE.
local function range_of(name)
    return line_of(HOSTILE, "A." .. name .. " = function"), line_of(HOSTILE, "end -- /" .. name)
end

local function lines_of(text)
    local t = {}
    for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
    return t
end

-- Runs fn with a fresh hostile server (for attacks that may wedge it); kills it afterwards.
local function with_own_server(fn)
    local hdir = server.app_dir { ["app.lua"] = HOSTILE }
    local odir = server.app_dir { ["app.lua"] = OTHER }
    local srv = server.start { app = hdir, config = CONFIG:gsub("@OTHER@", odir) }
    finally(function()
        if not srv.status then
            srv:signal("TERM")
            if not srv:wait_exit(1) then srv:kill() end
        end
        pcall(srv.stop, srv)
        server.remove(hdir)
        server.remove(odir)
    end)
    fn(srv, hdir)
end

describe("hostile handlers", function()
    local srv, dir, odir, other

    setup(function()
        dir = server.app_dir { ["app.lua"] = HOSTILE }
        odir = server.app_dir { ["app.lua"] = OTHER }
        srv = server.start { app = dir, config = CONFIG:gsub("@OTHER@", odir) }
        other = assert(ws.connect(srv.port, { path = "/well-behaved" }))
    end)
    teardown(function()
        other:abort()
        srv:stop() -- already stopped by the last test, unless it failed first
        server.remove(dir)
        server.remove(odir)
        os.remove("/tmp/moonwire-hostile-was-here")
    end)

    local function served(word)
        local got, kind, code = other:echo("echo " .. word)
        assert.are.equal(word, got, "the well-behaved client (" .. tostring(kind) .. " "
            .. tostring(code) .. ")")
    end

    -- The log lines that name the hostile app, after the first `skip` lines of the log.
    local function app_lines(skip)
        local out = {}
        for i, l in ipairs(lines_of(srv:log())) do
            if i > skip and l:find("app " .. dir .. ": ", 1, true) then out[#out + 1] = l end
        end
        return out
    end

    -- Sends attack name; expects close 1011 and one log line naming the app, one of the
    -- attack's lines and every plain-text needle given.
    local function fails(name, ...)
        served("before " .. name)
        local skip = #lines_of(srv:log())
        local c = assert(ws.connect(srv.port))
        c:send_text(name)
        local code, reason = c:expect_close(10)
        assert.are.equal(1011, code, "close code (" .. tostring(reason) .. ")")
        c:send_close(1011)
        c:abort()
        local deadline = socket.gettime() + 3
        while #app_lines(skip) == 0 and socket.gettime() < deadline do socket.sleep(0.01) end
        local lines = app_lines(skip)
        assert.are.equal(1, #lines, "log lines naming the app:\n" .. table.concat(lines, "\n"))
        local line = lines[1]
        local first, last = range_of(name)
        if name == "xpcall_loop" then last = line_of(HOSTILE, "return app") end
        local named = false
        for n in line:gmatch(dir:gsub("%p", "%%%0") .. "/app%.lua:(%d+):") do
            n = tonumber(n)
            if n >= first and n <= last then named = true end
        end
        assert.is_true(named, "the line names app.lua:" .. first .. "-" .. last .. ":\n" .. line)
        for _, needle in ipairs { ... } do
            assert.is_truthy(line:find(needle, 1, true), "'" .. needle .. "' in:\n" .. line)
        end
        served("after " .. name)
        return line
    end

    -- Sends attack name; returns its answer (the handler did not fail).
    local function answers(name)
        served("before " .. name)
        local c = assert(ws.connect(srv.port))
        local got, kind, code = c:echo(name)
        c:abort()
        served("after " .. name)
        return got, kind, code
    end

    local function reload()
        local _, before = srv:log():gsub("reloaded %(version", "")
        srv:signal("HUP")
        local deadline = socket.gettime() + 5
        repeat
            local _, n = srv:log():gsub("reloaded %(version", "")
            if n > before then return end
            socket.sleep(0.01)
        until socket.gettime() > deadline
        error("no reload logged")
    end

    local BUDGET = "instruction budget exceeded (2000000 instructions)"

    it("string.dump is nil", function() fails("string_dump", "field 'dump'") end)
    it("(''):dump is nil", function() fails("method_dump", "method 'dump'") end)
    it("load with mode 'b' raises", function() fails("load_mode_b", "only text chunks") end)
    it("load refuses a binary chunk ('\\27Lua') in mode 't'", function()
        fails("load_bytecode", "binary chunk")
    end)
    it("load refuses a reader function (text chunks only)", function()
        fails("load_reader", "bad argument #1 to 'load'")
    end)
    it("getmetatable('') gives nothing to index", function()
        fails("string_metatable", "boolean value")
    end)
    it("the string metatable cannot be rawset", function()
        fails("string_metatable_rawset", "bad argument #1 to 'rawset'")
    end)
    it("debug is not reachable", function() fails("debug", "global 'debug'") end)
    it("io is not reachable", function() fails("io", "global 'io'") end)
    it("os.execute is not reachable (and ran nothing)", function()
        fails("os_execute", "field 'execute'")
        assert.is_nil(io.open("/tmp/moonwire-hostile-was-here"), "a file was created")
    end)
    it("os.exit is not reachable; the server lives on", function()
        fails("os_exit", "field 'exit'")
        assert.is_true(os.execute("kill -0 " .. srv.pid), "the server process is alive")
    end)
    it("package is not reachable", function() fails("package", "global 'package'") end)
    it("require 'io' finds no module", function()
        fails("require_io", "module 'io' is not available in moonwire's sandbox")
    end)
    it("require '../../etc/passwd' is a bad module name", function()
        fails("require_passwd", "bad module name '../../etc/passwd'")
    end)

    it("rawset on the read-only string table cannot change ('').upper", function()
        assert.are.equal("ABC ABC", (answers("rawset_string")))
    end)

    it("pairs(string) does not hand out the real string library", function()
        -- Refusing (1011) or handing out something harmless are both fine; "pwned" is not.
        local got, kind, code = answers("pairs_string")
        assert.is_true(got == "ABC" or (kind == "close" and code == 1011),
            "('abc'):upper() after writing to what pairs(string) returned: "
            .. tostring(got or code))
    end)

    it("pairs(mw) does not hand out the real mw table", function()
        local got, kind, code = answers("pairs_mw")
        assert.is_true(got == "0" or (kind == "close" and code == 1011),
            "mw.subscribers after writing to what pairs(mw) returned: " .. tostring(got or code))
    end)

    it("rawset(mw, ...) does not outlive a reload (mw is shared by every version)", function()
        local got = answers("rawset_mw")
        finally(function() answers("unrawset_mw") end)
        reload()
        assert.are.equal("0", (answers("subscribers")),
            "the next version's mw.subscribers (got " .. tostring(got) .. " in the first)")
    end)

    it("rawset on string does not outlive a reload nor reach another app", function()
        -- It shadows string.upper in this version's own environment, no further.
        assert.are.equal("ABC pwned", (answers("rawset_string_keep")))
        local o = assert(ws.connect(srv.port, { path = "/other" }))
        assert.are.equal("ABC nil function 42 0 x", (o:echo("x")), "another app")
        o:close()
        reload()
        assert.are.equal("ABC", (answers("string_upper")), "after a reload")
    end)

    it("setting _G fields changes nothing beyond the app, and a reload restores them",
        function()
            assert.are.equal("globals set", (answers("globals")))
            local o = assert(ws.connect(srv.port, { path = "/other" }))
            assert.are.equal("ABC nil function 42 0 y", (o:echo("y")), "another app")
            o:close()
            reload()
            assert.are.equal("nil function 42", (answers("globals_after")), "after a reload")
        end)

    it("infinite coroutine ping-pong is stopped", function()
        -- By the budget, or, on a loaded machine under the sanitizers (every resume is slow
        -- there), by the time limit first: either is the stop this test is about.
        local line = fails("coroutine_pingpong", "exceeded")
        assert.is_truthy(line:find(BUDGET, 1, true) or line:find("time limit exceeded", 1, true),
                         line)
    end)
    it("a coroutine that catches the budget error is stopped", function()
        fails("coroutine_catch", BUDGET)
    end)
    it("coroutine.resume catching the budget error is stopped", function()
        fails("coroutine_resume_catch", BUDGET)
    end)
    it("a coroutine parked by one message and spinning in a later one is stopped", function()
        assert.are.equal("suspended", (answers("coroutine_park")))
        fails("coroutine_spin_later", BUDGET)
    end)
    it("slow library calls with few instructions are stopped by the time limit", function()
        local t0 = socket.gettime()
        fails("slow_library_calls", "time limit exceeded (1.0 seconds)")
        local took = socket.gettime() - t0
        assert.is_true(took < 4, ("stopped after %.1f s"):format(took))
    end)
    it("coroutine.wrap recursion fails cleanly", function()
        -- Each coroutine.wrap level prefixes a position, so the log line is cut before the
        -- reason ("C stack overflow"); it still names the app and the line.
        fails("coroutine_wrap_recursion")
    end)

    it("deep recursion fails cleanly", function()
        local line = fails("deep_recursion")
        assert.is_truthy(line:find("stack overflow", 1, true)
            or line:find("memory limit exceeded", 1, true), line)
    end)

    it("s = s .. s in a loop hits the memory cap", function()
        fails("concat_bomb", "ran out of memory", "memory limit exceeded")
    end)

    it("string.rep('x', 2^40) fails without allocating it", function()
        local line = fails("rep_bomb")
        assert.is_truthy(line:find("memory limit exceeded", 1, true)
            or line:find("resulting string too large", 1, true), line)
    end)

    it("a table growth bomb is stopped", function()
        local line = fails("table_bomb")
        assert.is_truthy(line:find("memory limit exceeded", 1, true)
            or line:find(BUDGET, 1, true), line)
    end)

    it("error with a table value is logged", function()
        fails("error_table", "error object is a table value")
    end)

    it("error with a looping __tostring (and a forged __name) neither hangs nor forges lines",
        function()
            local line = fails("error_tostring_loop")
            assert.is_truthy(line:find("error object is a", 1, true), line)
            assert.is_nil(srv:log():find("\nforged", 1, true), "a forged log line")
        end)

    it("an error message with a newline stays on one log line", function()
        fails("error_newline", "first line forged: second line")
        assert.is_nil(srv:log():find("\nforged", 1, true), "a forged log line")
    end)

    it("xpcall with a looping message handler is stopped", function()
        -- xpcall returns the budget error as a value; the stop lands at the caller's next
        -- instruction, in app.message, so the dispatcher's lines count as well.
        fails("xpcall_loop", BUDGET)
    end)

    it("setmetatable with __gc is refused", function()
        fails("gc_metamethod", "__gc metamethods are not allowed")
    end)
    it("setmetatable with a __gc placeholder (false) is refused", function()
        fails("gc_placeholder", "__gc metamethods are not allowed")
    end)
    it("__gc added to a metatable after setmetatable never runs", function()
        assert.are.equal("no finalizer ran", (answers("gc_late")))
    end)

    it("pcall(while true) inside while true is stopped", function()
        fails("pcall_spin", BUDGET)
    end)

    it("os.date / os.time with absurd arguments raise, never crash", function()
        assert.are.equal("10 of 10 raised; long true", (answers("os_date")))
    end)

    it("load with an env cannot reach the real globals", function()
        assert.are.equal("nil nil nil nil nil true 1 nil nil", (answers("load_env")))
    end)

    it("mw is read-only: mw.publish = nil raises", function()
        fails("mw_write", "read-only")
    end)
    it("mw.json is read-only", function() fails("mw_json_write", "read-only") end)
    it("collectgarbage('stop') is refused", function()
        fails("collectgarbage_stop", 'only "count"')
    end)
    it("conn fields cannot be set", function() fails("conn_write", "cannot be set") end)

    it("a spinning every-timer is stopped at each tick, logged, and can be cancelled",
        function()
            local skip = #lines_of(srv:log())
            assert.are.equal("armed", (answers("spin_timer")))
            local deadline = socket.gettime() + 5
            while #app_lines(skip) < 3 and socket.gettime() < deadline do socket.sleep(0.02) end
            local lines = app_lines(skip)
            assert.is_true(#lines >= 3, #lines .. " timer failures logged")
            local first, last = range_of("spin_timer")
            for _, l in ipairs(lines) do
                assert.is_truthy(l:find("timer callback ran out of instructions", 1, true), l)
                local n = tonumber(l:match("/app%.lua:(%d+):"))
                assert.is_true(n and n >= first and n <= last, l)
            end
            served("while a timer spins")
            assert.are.equal("true", (answers("disarm")))
        end)

    it("after all of that, the server serves new clients of both apps", function()
        local c = assert(ws.connect(srv.port))
        assert.are.equal("fine", (c:echo("echo fine")))
        c:close()
        local o = assert(ws.connect(srv.port, { path = "/other" }))
        assert.are.equal("ABC nil function 42 0 z", (o:echo("z")))
        o:close()
        served("at the end")
    end)

    it("then exits 0 on SIGTERM with no sanitizer report", function()
        other:close()
        assert.are.equal(0, srv:stop(), "exit status") -- raises on a sanitizer report
    end)
end)

-- C functions run no Lua instructions, so the count hook never sees the work they do, and
-- what they allocate outside Lua is not under the memory cap. These attacks get their own
-- server each: if one wedges the event loop, only that test fails.
describe("hostile handlers that work inside C functions", function()
    local function stays_responsive(attack)
        with_own_server(function(srv)
            local other = assert(ws.connect(srv.port, { timeout = 3 }))
            assert.are.equal("before", (other:echo("echo before")))
            local c = assert(ws.connect(srv.port))
            c:send_text(attack)
            socket.sleep(0.2)
            local t0 = socket.gettime()
            local got = other:echo("echo during")
            local waited = socket.gettime() - t0
            c:abort()
            other:abort()
            assert.are.equal("during", got, string.format("a well-behaved client waited %.1f s "
                .. "and got no answer while '%s' ran", waited, attack))
        end)
    end

    it("catastrophic pattern backtracking (string.find) is stopped", function()
        stays_responsive("pattern_backtrack")
    end)

    it("a loop of 1 MiB string.rep calls is stopped", function()
        stays_responsive("rep_loop")
    end)

    it("a runaway conn:subscribe loop is stopped", function()
        -- Each subscribe scans the connection's own topics: the loop is quadratic in C.
        stays_responsive("subscribe_loop")
    end)

    it("an app that ignores backpressure cannot queue without bound", function()
        with_own_server(function(srv)
            local other = assert(ws.connect(srv.port, { timeout = 3 }))
            local c = assert(ws.connect(srv.port))
            c:send_text("send_flood") -- and never read
            local results = srv:wait_log("send_flood results ([^\n]*)", 5)
            local code = c:expect_close(0) -- a close frame is first in line if one was sent
            c:abort()
            assert.are.equal("fine", (other:echo("echo fine")), "the server still serves")
            other:abort()
            if results then
                -- Past send_buffer (4 MiB), send only queues: 64 MiB more is plenty.
                local queued = tonumber(results:match("false,backpressure=(%d+)") or 0)
                assert.is_true(queued <= 64, "the app queued " .. queued .. " MiB past "
                    .. "send_buffer for a client that reads nothing (" .. results .. ")")
            else
                assert.are.equal(1011, code, "the flood neither finished nor failed")
            end
        end)
    end)
end)
