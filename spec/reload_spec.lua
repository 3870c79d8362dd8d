-- Hot reload (SIGHUP and --watch): 20 reloads under continuous traffic lose, repeat or reorder
-- nothing; conn.data, mw.state and subscriptions persist; old timers stop; app.reload runs once
-- per reload. A broken new version (syntax, runtime, bad return) leaves the old one serving.
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"
local line_of, count, wait_for = helpers.line_of, helpers.count, helpers.wait_for
local write_file = helpers.write_file

-- ---- helpers ---------------------------------------------------------------------------------

local function connect(srv) return assert(ws.connect(srv.port)) end

local function ask(c, cmd)
    local got, kind, code = c:echo(cmd)
    assert(got, "no answer to " .. cmd .. ": " .. tostring(kind) .. " " .. tostring(code))
    return got
end

-- ---- the versioned app -----------------------------------------------------------------------

-- Version VERSION of the app. Replies "VERSION:n:count" to "n N"; an `every` timer sends
-- "tick vVERSION" to connections that asked for ticks; app.reload records the previous
-- version's handlers table.
local function versioned(version)
    return ([=[
local VERSION = @V@
local app = { version = VERSION }
mw.state.loads = (mw.state.loads or 0) + 1

mw.every(20, function()
    for _, c in ipairs(mw.connections()) do
        if c.data.ticks then c:send("tick v" .. VERSION) end
    end
end)

function app.message(conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "n" then
        conn.data.count = (conn.data.count or 0) + 1
        conn:send(VERSION .. ":" .. arg .. ":" .. conn.data.count)
    elseif cmd == "ticks" then
        conn.data.ticks = true
        conn:send("ticking")
    elseif cmd == "sub" then
        conn:send("sub " .. tostring(conn:subscribe(arg)))
    elseif cmd == "pub" then
        conn:send("pub " .. mw.publish("room", VERSION .. ":" .. arg))
    elseif cmd == "set" then
        mw.state.kept = arg
        conn:send("set")
    elseif cmd == "state" then
        local prev = mw.state.previous or {}
        conn:send("loads=" .. mw.state.loads .. " reloads=" .. (mw.state.reload_calls or 0)
            .. " kept=" .. tostring(mw.state.kept) .. " previous=" .. table.concat(prev, ","))
    elseif cmd == "version" then
        conn:send("v" .. VERSION)
    end
end

function app.reload(previous)
    mw.state.reload_calls = (mw.state.reload_calls or 0) + 1
    mw.state.previous = mw.state.previous or {}
    local ok = type(previous) == "table" and previous ~= app and type(previous.message) ==
        "function"
    table.insert(mw.state.previous, ok and tostring(previous.version) or "bad")
end

return app
]=]):gsub("@V@", tostring(version))
end

-- Reads tick frames until timeout; returns their payloads.
local function read_ticks(c, seconds)
    local ticks, deadline = {}, socket.gettime() + seconds
    while true do
        local left = deadline - socket.gettime()
        if left <= 0 then return ticks end
        local got = c:recv_message(left)
        if got then ticks[#ticks + 1] = got end
    end
end

-- Checks that tick versions never go back, returns the last one.
local function tick_versions(ticks)
    local last = 0
    for i, t in ipairs(ticks) do
        local v = tonumber(t:match("^tick v(%d+)$"))
        assert(v, "not a tick: " .. t)
        assert(v >= last, "tick " .. i .. " is from v" .. v .. " after one from v" .. last
            .. ": an old version's timer still runs")
        last = v
    end
    return last
end

describe("SIGHUP 20 times under traffic", function()
    local RELOADS, BURST = 20, 100
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = versioned(1) }
        -- Bursts of 100 as fast as the client can send: above the default per-connection
        -- message rate, a defence this test is not about.
        srv = server.start { app = dir, config = "limits = { messages_per_second = 0 }\n" }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("drops, repeats and reorders nothing, and keeps state, subscriptions and counts",
        function()
            local traffic, listener, ticker = connect(srv), connect(srv), connect(srv)
            assert.are.equal("sub true", ask(listener, "sub room"))
            assert.are.equal("ticking", ask(ticker, "ticks"))
            assert.are.equal("set", ask(traffic, "set before-reloads"))
            local first_ticks = read_ticks(ticker, 0.15)
            assert.is_true(#first_ticks > 0, "version 1's timer ticks")
            assert.are.equal(1, tick_versions(first_ticks))

            local n, last_version, versions_seen = 0, 0, {}
            -- Sends messages n+from .. n+to (n counts the replies read so far).
            local function burst(from, to)
                local frames = {}
                for i = from, to do frames[#frames + 1] = ws.frame { payload = "n " .. (n + i) } end
                assert(traffic:send_raw(table.concat(frames)))
            end
            local function read_burst()
                for _ = 1, BURST do
                    n = n + 1
                    local got, kind, code = traffic:recv_message(5)
                    assert(got, "reply " .. n .. ": " .. tostring(kind) .. " " .. tostring(code))
                    local v, num, cnt = got:match("^(%d+):(%d+):(%d+)$")
                    assert(v, "unexpected reply " .. got)
                    v, num, cnt = tonumber(v), tonumber(num), tonumber(cnt)
                    assert(num == n, "reply " .. n .. " answers message " .. num)
                    assert(cnt == n, "conn.data.count is " .. cnt .. " at message " .. n)
                    assert(v >= last_version, "reply " .. n .. " from v" .. v .. " after v"
                        .. last_version)
                    last_version = v
                    versions_seen[v] = true
                end
            end

            -- Half a burst before the signal and half right behind it, so that messages are
            -- in flight while the server reloads.
            for version = 2, RELOADS + 1 do
                burst(1, BURST // 2)
                write_file(dir .. "/app.lua", versioned(version))
                srv:signal("HUP")
                burst(BURST // 2 + 1, BURST)
                read_burst()
                assert.is_true(wait_for(srv, "reloaded (version " .. version .. ")", 1, 5),
                    "reload " .. (version - 1) .. " is logged")
            end
            burst(1, BURST)
            read_burst()
            assert.are.equal(RELOADS + 1, last_version, "the last replies come from the last "
                .. "version")
            local distinct = 0
            for _ in pairs(versions_seen) do distinct = distinct + 1 end
            assert.is_true(distinct >= 10, "replies came from " .. distinct .. " versions")
            assert.are.same({ nil, "timeout" }, { traffic:recv_frame(0.2) }, "no extra replies")
            assert.are.equal(0, count(srv:log(), "reload failed"))

            -- mw.state kept; app.reload ran once per reload, given the previous handlers.
            local previous = {}
            for v = 1, RELOADS do previous[v] = tostring(v) end
            assert.are.equal("loads=" .. (RELOADS + 1) .. " reloads=" .. RELOADS
                .. " kept=before-reloads previous=" .. table.concat(previous, ","),
                ask(traffic, "state"))

            -- The subscription made under version 1 still gets publishes.
            assert.are.equal("pub 1", ask(traffic, "pub after"))
            assert.are.equal((RELOADS + 1) .. ":after", (listener:recv_message(3)))

            -- Old timers stopped: tick versions never go back, and end with the last one.
            local ticks = read_ticks(ticker, 0.3)
            assert.is_true(#ticks > 0)
            assert.are.equal(RELOADS + 1, tick_versions(ticks))
            local late = read_ticks(ticker, 0.2)
            assert.is_true(#late > 0, "the last version's timer keeps ticking")
            for _, t in ipairs(late) do assert.are.equal("tick v" .. (RELOADS + 1), t) end

            for _, c in ipairs { traffic, listener, ticker } do
                assert.are.equal(1000, (c:close()), "the connection is still open")
            end
        end)
end)

describe("SIGHUP and app timers", function()
    it("stops version 1's every-timer and starts version 2's", function()
        local dir = server.app_dir { ["app.lua"] = versioned(1) }
        local srv = server.start { app = dir }
        finally(function()
            srv:stop()
            server.remove(dir)
        end)
        local ticker = connect(srv)
        assert.are.equal("ticking", ask(ticker, "ticks"))
        local before = read_ticks(ticker, 0.2)
        assert.is_true(#before >= 2, #before .. " ticks in 0.2 s")
        write_file(dir .. "/app.lua", versioned(2))
        srv:signal("HUP")
        assert.is_true(wait_for(srv, "reloaded (version 2)"))
        local after = read_ticks(ticker, 0.4)
        -- Ticks of version 1 may still be in flight; none may come after one of version 2.
        local seen_v2 = false
        for _, t in ipairs(after) do
            if t == "tick v2" then seen_v2 = true
            else
                assert.are.equal("tick v1", t)
                assert.is_false(seen_v2, "a tick of version 1 after one of version 2")
            end
        end
        assert.is_true(seen_v2, "version 2's timer ticks")
        assert.are.equal("tick v2", after[#after])
        ticker:close()
    end)
end)

-- ---- broken new versions ---------------------------------------------------------------------

local GOOD = [[
local app = {}
mw.every(20, function()
    for _, c in ipairs(mw.connections()) do
        if c.data.ticks then c:send("tick v1") end
    end
end)
function app.message(conn, data)
    if data == "ticks" then conn.data.ticks = true end
    conn:send("v1 " .. data)
end
return app
]]

local GOOD2 = [[
local app = {}
function app.message(conn, data) conn:send("v2 " .. data) end
function app.reload(previous) mw.log("info", "v2 reload ran") end
return app
]]

local SYNTAX = "local app = {}\n\nlocal x = = 1\nreturn app\n"
local RUNTIME = "local app = {}\nlocal t = nil\nlocal y = t.field -- boom\nreturn app\n"
local RAISES = "local app = {}\nerror('no database')\nreturn app\n"
local NUMBER = "return 42\n"
local NOT_FUNCTION = "return { message = 'hello' }\n"
-- Starts a timer, then fails: the timer must not outlive the failed load.
local TIMER_THEN_FAIL = [[
mw.every(10, function()
    for _, c in ipairs(mw.connections()) do c:send("tick from a failed load") end
end)
mw.state.marker = "half loaded"
error("fails after starting a timer")
]]

describe("a reload to a broken app.lua", function()
    local srv, dir, c

    setup(function()
        dir = server.app_dir { ["app.lua"] = GOOD }
        srv = server.start { app = dir }
        c = connect(srv)
    end)
    teardown(function()
        c:close()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    -- Writes text as app.lua, sends SIGHUP, expects the failure with needle in the log, and
    -- checks that the old version still answers the same connection and a new one.
    local function keeps_old(text, needle)
        local before = count(srv:log(), "reload failed")
        write_file(dir .. "/app.lua", text)
        srv:signal("HUP")
        assert.is_true(wait_for(srv, "reload failed", before + 1), "the failure is logged")
        local line = "" -- the latest failure
        for l in srv:log():gmatch("[^\n]*reload failed[^\n]*") do line = l end
        assert.is_truthy(line:find("app " .. dir .. ": reload failed, the previous version "
            .. "keeps running: ", 1, true), line)
        assert.is_truthy(line:find((needle:gsub("DIR", dir)), 1, true), line)
        assert.are.equal("v1 same", ask(c, "same"), "the open connection is served by v1")
        local d = connect(srv)
        assert.are.equal("v1 new", ask(d, "new"), "a new connection is served by v1")
        d:close()
    end

    it("with a syntax error: names file:line and keeps the old version", function()
        keeps_old(SYNTAX, "DIR/app.lua:3:")
    end)

    it("raising in the main chunk: names file:line and keeps the old version", function()
        keeps_old(RUNTIME, "DIR/app.lua:" .. line_of(RUNTIME, "boom") .. ":")
    end)

    it("calling error in the main chunk: names file:line and the message", function()
        keeps_old(RAISES, "DIR/app.lua:2: no database")
    end)

    it("returning a number: says it must return a table", function()
        keeps_old(NUMBER, "DIR/app.lua must return a table of handlers (it returned number)")
    end)

    it("returning a handler that is not a function: names it", function()
        keeps_old(NOT_FUNCTION, "handler 'message' must be a function (it is a string)")
    end)

    it("starting a timer before failing: that timer is cancelled", function()
        keeps_old(TIMER_THEN_FAIL, "DIR/app.lua:5: fails after starting a timer")
        assert.are.same({ nil, "timeout" }, { c:recv_frame(0.2) }, "no tick from the failed load")
    end)

    it("keeps the old version's timers running after the failed reloads", function()
        local ticker = connect(srv)
        assert.are.equal("v1 ticks", ask(ticker, "ticks"))
        local ticks = read_ticks(ticker, 0.2)
        assert.is_true(#ticks >= 2, #ticks .. " ticks in 0.2 s")
        for _, t in ipairs(ticks) do assert.are.equal("tick v1", t) end
        ticker:abort()
    end)

    it("is followed by a good reload that works and runs app.reload once", function()
        write_file(dir .. "/app.lua", GOOD2)
        srv:signal("HUP")
        assert.is_true(wait_for(srv, "v2 reload ran"))
        assert.are.equal("v2 same", ask(c, "same"))
        socket.sleep(0.1)
        assert.are.equal(1, count(srv:log(), "v2 reload ran"))
    end)
end)

describe("a timer started by app.reload", function()
    it("belongs to the new version and keeps running", function()
        local v2 = "local app = {}\n"
            .. "function app.message(conn, d) conn:send('v2 ' .. d) end\n"
            .. "function app.reload(previous)\n"
            .. "    mw.every(20, function()\n"
            .. "        for _, c in ipairs(mw.connections()) do c:send('from reload') end\n"
            .. "    end)\n"
            .. "end\n"
            .. "return app\n"
        local dir = server.app_dir { ["app.lua"] = GOOD }
        local srv = server.start { app = dir }
        finally(function()
            srv:stop()
            server.remove(dir)
        end)
        local c = connect(srv)
        assert.are.equal("v1 x", ask(c, "x"))
        write_file(dir .. "/app.lua", v2)
        srv:signal("HUP")
        assert.is_true(wait_for(srv, "reloaded (version 2)"))
        socket.sleep(0.1)
        local ticks = read_ticks(c, 0.3)
        assert.is_true(#ticks >= 3, #ticks .. " ticks in 0.3 s")
        for _, t in ipairs(ticks) do assert.are.equal("from reload", t) end
        c:close()
    end)
end)

describe("a failing app.reload handler", function()
    it("is logged with file:line; the new version stays", function()
        local bad_reload = "local app = {}\n"
            .. "function app.message(conn, d) conn:send('v2 ' .. d) end\n"
            .. "function app.reload(previous)\n    error('reload hook broke')\nend\n"
            .. "return app\n"
        local dir = server.app_dir { ["app.lua"] = GOOD }
        local srv = server.start { app = dir }
        finally(function()
            srv:stop()
            server.remove(dir)
        end)
        local c = connect(srv)
        assert.are.equal("v1 x", ask(c, "x"))
        write_file(dir .. "/app.lua", bad_reload)
        srv:signal("HUP")
        assert.is_true(wait_for(srv, "reload handler failed: " .. dir .. "/app.lua:4: reload "
            .. "hook broke"), srv:log())
        assert.are.equal("v2 y", ask(c, "y"))
        c:close()
    end)
end)

-- ---- --watch ---------------------------------------------------------------------------------

local WATCHED = [[
local util = require "util"
local app = {}
function app.message(conn, data) conn:send("@V@ " .. util.word .. " " .. data) end
return app
]]

describe("--watch", function()
    local srv, dir, c

    setup(function()
        dir = server.app_dir { ["app.lua"] = WATCHED:gsub("@V@", "w1"),
                               ["util.lua"] = "return { word = 'alpha' }\n",
                               ["notes.txt"] = "not Lua\n" }
        srv = server.start { app = dir, args = { "--watch" } }
        c = connect(srv)
    end)
    teardown(function()
        c:close()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    -- Polls until the answer to "x" is want, for up to 2 s. Returns the last answer.
    local function becomes(want)
        local deadline, got = socket.gettime() + 2, nil
        repeat
            got = ask(c, "x")
            if got == want then return got end
            socket.sleep(0.05)
        until socket.gettime() > deadline
        return got
    end

    -- Edits like an editor: truncate and write in place.
    local function edit(name, text)
        local f = assert(io.open(dir .. "/" .. name, "wb"))
        f:write(text)
        f:close()
    end

    it("reloads when app.lua changes, without SIGHUP, within 2 s", function()
        assert.are.equal("w1 alpha x", ask(c, "x"))
        edit("app.lua", (WATCHED:gsub("@V@", "w2")))
        assert.are.equal("w2 alpha x", becomes("w2 alpha x"))
        assert.is_truthy(srv:log():find("files changed: reloading " .. dir, 1, true))
    end)

    it("reloads when a required module changes", function()
        edit("util.lua", "return { word = 'beta' }\n")
        assert.are.equal("w2 beta x", becomes("w2 beta x"))
    end)

    it("keeps the old code on a broken edit and logs file:line", function()
        local before = count(srv:log(), "reload failed")
        edit("app.lua", "local app = {}\nfunction app.message(conn, data)\n  conn:send(\nend\n"
            .. "return app\n")
        assert.is_true(wait_for(srv, "reload failed", before + 1, 2), "the failure is logged")
        assert.is_truthy(srv:log():find("reload failed, the previous version keeps running: "
            .. dir .. "/app.lua:4:", 1, true), srv:log():match("[^\n]*reload failed[^\n]*"))
        assert.are.equal("w2 beta x", ask(c, "x"))
        edit("app.lua", (WATCHED:gsub("@V@", "w3")))
        assert.are.equal("w3 beta x", becomes("w3 beta x"), "a fixed edit reloads")
    end)

    it("does not reload for a file that is not Lua", function()
        local before = count(srv:log(), "files changed")
        edit("notes.txt", "still not Lua\n")
        socket.sleep(0.5)
        assert.are.equal(before, count(srv:log(), "files changed"))
    end)

    it("reloads once for a burst of edits (the quiet period)", function()
        local before = count(srv:log(), "files changed")
        for i = 1, 5 do
            edit("util.lua", "return { word = 'burst" .. i .. "' }\n")
            socket.sleep(0.01)
        end
        assert.are.equal("w3 burst5 x", becomes("w3 burst5 x"))
        socket.sleep(0.3)
        assert.are.equal(before + 1, count(srv:log(), "files changed"))
    end)
end)
