-- The mw API and the conn object as apps use them: timers (order, cancel, failures), mw.json,
-- mw.now, mw.log levels, mw.state, mw.connections, conn.data, methods on a closed conn, and
-- app.drain after backpressure (send_buffer = 64 KiB).
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"
local line_of, count, wait_for = helpers.line_of, helpers.count, helpers.wait_for

local APP = [=[
local app = {}
local kept -- a conn kept after its connection ended

local function show(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    return table.concat(t, " ", 1, t.n)
end

local cmds = {}

function cmds.order(conn)
    mw.after(60, function() conn:send("60") end)
    mw.after(10, function() conn:send("10") end)
    mw.after(35, function() conn:send("35") end)
    mw.after(0.5, function() conn:send("0.5") end)
end

function cmds.cancel(conn)
    local t = mw.after(50, function() conn:send("fired, though cancelled") end)
    local a = t:cancel()
    local b = t:cancel()
    conn:send("cancel " .. show(a, b))
end

function cmds.self(conn)
    local t
    t = mw.after(5, function(x)
        conn:send("self " .. show(rawequal(x, t), tostring(x), x:cancel()))
    end)
    conn:send("pending " .. tostring(t))
end

function cmds.every(conn)
    local n = 0
    mw.every(10, function(t)
        n = n + 1
        conn:send("tick " .. n)
        if n == 3 then conn:send("cancel " .. show(t:cancel(), t:cancel())) end
    end)
end

function cmds.every_error(conn)
    local n = 0
    mw.every(10, function(t)
        n = n + 1
        conn:send("etick " .. n)
        if n == 4 then t:cancel() end
        error("tick " .. n .. " failed") -- every_error
    end)
end

function cmds.bad_timers(conn)
    local f = function() end
    local function err_of(...)
        local ok, err = pcall(...)
        return ok and "accepted" or tostring(err)
    end
    conn:send(table.concat({
        err_of(mw.every, 0.5, f), err_of(mw.every, 0, f), err_of(mw.after, -1, f),
        err_of(mw.after, 0/0, f), err_of(mw.after, math.huge, f), err_of(mw.after, 10, nil),
        err_of(mw.after, "soon", f) }, " | "))
end

function cmds.fraction(conn)
    local t = mw.every(1.5, function(t) t:cancel() conn:send("fraction fired") end)
end

function cmds.json_roundtrip(conn)
    local v = { name = "moon\u{E9}", list = { 1, 2.5, -3, true, false, "x" },
                nested = { deep = { deeper = { "y" } } }, empty = {} }
    local s = mw.json.encode(v)
    local back = mw.json.decode(s)
    conn:send(show(back.name, #back.list, back.list[2], back.list[4], back.list[6],
        back.nested.deep.deeper[1], next(back.empty), mw.json.encode(back.empty)))
end

function cmds.json_bad(conn)
    local out = {}
    for _, s in ipairs { "{", "[1,]", "nul", "", "{\"a\":1}x", "NaN", "[Infinity]", "0x10",
                         string.rep("[", 5000) } do
        local v, err = mw.json.decode(s)
        out[#out + 1] = (v == nil and type(err) == "string" and #err > 0) and "ok"
            or ("bad:" .. tostring(v))
    end
    conn:send(table.concat(out, " "))
end

function cmds.json_null(conn)
    local v = mw.json.decode('{"a":null,"b":[null,1]}')
    conn:send(show(v.a == mw.json.null, v.b[1] == mw.json.null, v.b[2],
        mw.json.encode({ a = mw.json.null }), mw.json.encode({ mw.json.null, 2 })))
end

function cmds.json_encode_bad(conn)
    local cyclic = {}
    cyclic.self = cyclic
    conn:send(show(pcall(mw.json.encode, 0/0)):match("^%S+") .. " "
        .. show(pcall(mw.json.encode, math.huge)):match("^%S+") .. " "
        .. show(pcall(mw.json.encode, { f = print })):match("^%S+") .. " "
        .. show(pcall(mw.json.encode, cyclic)):match("^%S+"))
end

function cmds.now(conn)
    local t = mw.now()
    conn:send(string.format("%s %.6f", math.type(t), t))
end

function cmds.log(conn)
    mw.log("debug", "api-log debug line")
    mw.log("info", "api-log info line", 42, nil, true)
    mw.log("warn", "api-log warn line")
    mw.log("error", "api-log error line")
    conn:send("logged " .. show(pcall(mw.log, "loud", "x")))
end

function cmds.state_set(conn, arg)
    mw.state.value = arg
    conn:send("state set")
end

function cmds.state_get(conn)
    conn:send("state " .. tostring(mw.state.value) .. " " .. tostring(mw.state == mw.state)
        .. " " .. tostring(require("moonwire").state == mw.state))
end

function cmds.state_replace(conn)
    mw.state = {}
end

function cmds.conns(conn)
    local ids = {}
    for _, c in ipairs(mw.connections()) do
        ids[#ids + 1] = math.tointeger(c.id)
        assert(c.open == true)
    end
    table.sort(ids)
    conn:send("conns " .. table.concat(ids, ","))
end

function cmds.id(conn) conn:send("id " .. conn.id) end

function cmds.keep(conn)
    kept = conn
    conn:send("kept")
end

function cmds.use_kept(conn)
    conn:send(show(kept:subscribe("t")) .. " | " .. show(kept:unsubscribe("t")) .. " | "
        .. show(kept:send("x")) .. " | " .. show(kept:close()) .. " | " .. tostring(kept.id)
        .. " | " .. tostring(kept.data.note))
end

function cmds.kept_open(conn)
    conn:send("open " .. math.type(kept.id) .. " " .. tostring(kept.open))
end

function cmds.data_set(conn, arg)
    conn.data = { note = arg }
    conn:send("data set")
end

function cmds.data_get(conn)
    conn:send("data " .. tostring(conn.data.note) .. " " .. tostring(conn.data.seeded))
end

function cmds.data_bad(conn)
    conn:send(show(pcall(function() conn.data = 5 end)):match("^%S+") .. " "
        .. tostring(conn.data.note))
end

-- Sends 64 KiB messages until conn:send reports backpressure (at most 2000 of them).
function cmds.flood(conn)
    local chunk = string.rep("f", 65536)
    local n, ok, err = 0, true, nil
    while ok and n < 2000 do
        n = n + 1
        ok, err = conn:send(chunk)
    end
    conn.data.flooded = n
    conn.data.drains = conn.data.drains or 0
    mw.log("info", "flood: " .. n .. " sends, last " .. show(ok, err))
end

function app.upgrade(req)
    if req.path == "/seeded" then return true, { data = { seeded = "yes" } } end
    return true
end

function app.message(conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    cmds[cmd](conn, arg)
end

function app.drain(conn)
    conn.data.drains = (conn.data.drains or 0) + 1
    mw.log("info", "api drain ran " .. conn.data.drains)
    conn:send("drained " .. tostring(conn.data.flooded) .. " " .. conn.data.drains)
end

function app.close(conn, code)
    mw.log("info", "api closed " .. conn.id .. " " .. code)
end

return app
]=]

describe("the Lua API", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir, config = "limits = { send_buffer = 65536 }" }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    local function connect(path)
        local c = assert(ws.connect(srv.port, { path = path }))
        finally(function() c:abort() end)
        return c
    end

    local function recv(c, timeout)
        local got, kind, code = c:recv_message(timeout or 3)
        assert(got, "no message: " .. tostring(kind) .. " " .. tostring(code))
        return got
    end

    local function ask(c, cmd)
        c:send_text(cmd)
        return recv(c)
    end

    local function quiet(c, seconds)
        assert.are.same({ nil, "timeout" }, { c:recv_frame(seconds or 0.2) }, "no more messages")
    end

    describe("timers", function()
        it("mw.after fires in order of time, fractions of a millisecond included", function()
            local c = connect()
            c:send_text("order")
            assert.are.same({ "0.5", "10", "35", "60" },
                { recv(c), recv(c), recv(c), recv(c) })
            quiet(c)
        end)

        it("timer:cancel() returns true while pending, then false; the fn never runs",
            function()
                local c = connect()
                assert.are.equal("cancel true false", ask(c, "cancel"))
                quiet(c, 0.2)
            end)

        it("passes the timer to fn; a fired one-shot is done (cancel false)", function()
            local c = connect()
            assert.are.equal("pending timer (pending)", ask(c, "self"))
            assert.are.equal("self true timer (done) false", recv(c))
        end)

        it("mw.every repeats until cancelled from its own callback", function()
            local c = connect()
            c:send_text("every")
            assert.are.same({ "tick 1", "tick 2", "tick 3", "cancel true false" },
                { recv(c), recv(c), recv(c), recv(c) })
            quiet(c, 0.1)
        end)

        it("keeps an every-timer running after its callback raises, logging file:line",
            function()
                local c = connect()
                local before = count(srv:log(), "timer callback failed")
                c:send_text("every_error")
                assert.are.same({ "etick 1", "etick 2", "etick 3", "etick 4" },
                    { recv(c), recv(c), recv(c), recv(c) })
                quiet(c, 0.1)
                local where = dir .. "/app.lua:" .. line_of(APP, "-- every_error") .. ": tick "
                assert.is_true(wait_for(srv, "timer callback failed", before + 4))
                for i = 1, 4 do
                    assert.is_truthy(srv:log():find("app " .. dir .. ": timer callback failed: "
                        .. where .. i .. " failed", 1, true), "failure " .. i .. " logged")
                end
                assert.is_truthy(c:echo("id"), "the connection is still open")
            end)

        it("refuses bad intervals and arguments", function()
            local c = connect()
            local got = ask(c, "bad_timers")
            local errs = {}
            for e in (got .. " | "):gmatch("(.-) | ") do errs[#errs + 1] = e end
            assert.are.equal(7, #errs, got)
            local wants = { "mw.every: the interval must be", "mw.every: the interval must be",
                            "mw.after: the interval must be", "mw.after: the interval must be",
                            "mw.after: the interval must be", "function expected",
                            "number expected" }
            for i, want in ipairs(wants) do
                assert.is_truthy(errs[i]:find(want, 1, true), "call " .. i .. ": " .. errs[i])
            end
        end)

        it("accepts a fractional interval for mw.every", function()
            local c = connect()
            c:send_text("fraction")
            assert.are.equal("fraction fired", recv(c))
        end)
    end)

    describe("mw.json", function()
        it("round-trips nested values; an empty table encodes as {}", function()
            local c = connect()
            assert.are.equal("moon\u{E9} 6 2.5 true x y nil {}", ask(c, "json_roundtrip"))
        end)

        it("decode returns nil and a message for invalid JSON (never raises)", function()
            local c = connect()
            assert.are.equal("ok ok ok ok ok ok ok ok ok", ask(c, "json_bad"))
        end)

        it("maps null to mw.json.null both ways", function()
            local c = connect()
            assert.are.equal('true true 1 {"a":null} [null,2]', ask(c, "json_null"))
        end)

        it("encode raises for NaN, infinity, functions and cycles", function()
            local c = connect()
            assert.are.equal("false false false false", ask(c, "json_encode_bad"))
        end)
    end)

    describe("mw.now", function()
        it("is a float that increases with the loop's clock", function()
            local c = connect()
            local t1 = tonumber(ask(c, "now"):match("^float (%S+)$"))
            socket.sleep(0.1)
            local t2 = tonumber(ask(c, "now"):match("^float (%S+)$"))
            assert.is_truthy(t1 and t2)
            assert.is_true(t2 - t1 > 0.05 and t2 - t1 < 2, "difference " .. (t2 - t1))
        end)
    end)

    describe("mw.log", function()
        it("logs at info, warn and error (debug is below the default level)", function()
            local c = connect()
            assert.is_truthy(ask(c, "log"):match("^logged false .*invalid option 'loud'"))
            local log = srv:log()
            assert.is_truthy(log:find("info  app " .. dir .. ": api-log info line 42 nil true",
                1, true), "info line")
            assert.is_truthy(log:find("warn  app " .. dir .. ": api-log warn line", 1, true))
            assert.is_truthy(log:find("error app " .. dir .. ": api-log error line", 1, true))
            assert.is_nil(log:find("api-log debug line", 1, true), "debug is filtered")
        end)
    end)

    describe("mw.state", function()
        it("is one table for every connection, the same as require('moonwire').state",
            function()
                local a, b = connect(), connect()
                assert.are.equal("state set", ask(a, "state_set shared-value"))
                assert.are.equal("state shared-value true true", ask(b, "state_get"))
            end)

        it("cannot be replaced: mw.state = {} raises", function()
            local c = connect()
            c:send_text("state_replace")
            assert.are.equal(1011, (c:expect_close()))
            assert.is_true(wait_for(srv, "read-only table (field 'state')"))
            local d = connect()
            assert.are.equal("state shared-value true true", ask(d, "state_get"))
        end)
    end)

    describe("mw.connections", function()
        it("lists the open connections and drops closed ones", function()
            local a, b = connect(), connect()
            local ida = ask(a, "id"):match("%d+")
            local idb = ask(b, "id"):match("%d+")
            local list = ask(a, "conns")
            assert.is_truthy((list .. ","):find("[ ,]" .. ida .. ","), list)
            assert.is_truthy((list .. ","):find("[ ,]" .. idb .. ","), list)
            b:close()
            assert.is_true(wait_for(srv, "api closed " .. idb .. " "))
            list = ask(a, "conns")
            assert.is_nil((list .. ","):find("[ ,]" .. idb .. ","), list)
        end)
    end)

    describe("conn", function()
        it("answers nil, 'closed' to every method once its connection ended", function()
            local a = connect()
            local id = ask(a, "id"):match("%d+")
            assert.are.equal("data set", ask(a, "data_set remembered"))
            assert.are.equal("kept", ask(a, "keep"))
            a:close()
            assert.is_true(wait_for(srv, "api closed " .. id .. " "))
            local b = connect()
            assert.are.equal("nil closed | nil closed | nil closed | nil closed | "
                .. id .. " | remembered", ask(b, "use_kept"))
        end)

        it("has conn.open == false (a boolean) once its connection ended", function()
            local a = connect()
            local id = ask(a, "id"):match("%d+")
            assert.are.equal("kept", ask(a, "keep"))
            a:close()
            assert.is_true(wait_for(srv, "api closed " .. id .. " "))
            local b = connect()
            assert.are.equal("open integer false", ask(b, "kept_open"))
        end)

        it("takes a new table as conn.data and refuses anything else", function()
            local c = connect()
            assert.are.equal("data nil nil", ask(c, "data_get"))
            assert.are.equal("data set", ask(c, "data_set first"))
            assert.are.equal("data first nil", ask(c, "data_get"))
            assert.are.equal("false first", ask(c, "data_bad"))
        end)

        it("starts with the conn.data app.upgrade seeded", function()
            local c = connect("/seeded")
            assert.are.equal("data nil yes", ask(c, "data_get"))
        end)
    end)

    describe("backpressure and app.drain (send_buffer = 64 KiB)", function()
        it("send returns false, 'backpressure'; app.drain runs once the client reads",
            function()
                local c = connect()
                c:send_text("flood")
                assert.is_true(wait_for(srv, "flood: "), "the flood handler ran")
                local n, last = srv:log():match("flood: (%d+) sends, last ([^\n]*)")
                n = tonumber(n)
                assert.are.equal("false backpressure", last)
                assert.is_true(n > 1 and n < 2000, n .. " sends before backpressure")
                socket.sleep(0.2)
                -- Not read yet: no drain.
                assert.are.equal(0, count(srv:log(), "api drain ran"))
                for i = 1, n do
                    local got = recv(c, 5)
                    assert.are.equal(65536, #got, "message " .. i)
                end
                assert.are.equal("drained " .. n .. " 1", recv(c, 3))
                quiet(c, 0.2)
                -- A second flood drains again.
                c:send_text("flood")
                local m
                for i = 1, 2000 do
                    local got = recv(c, 5)
                    if got:sub(1, 7) == "drained" then
                        m = i - 1
                        assert.are.equal("drained " .. m .. " 2", got)
                        break
                    end
                end
                assert.is_truthy(m, "a second drain")
            end)
    end)
end)
