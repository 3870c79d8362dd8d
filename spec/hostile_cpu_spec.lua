-- Hostile app code that burns CPU where the instruction counter cannot see it: inside one C
-- library call, inside one long VM instruction, inside the parser of `load`. Each attack runs
-- against a fresh server while a bystander on a second connection does echo round trips; it
-- must end with the attacker closed (1011) within about the time limit, one log line naming the
-- attack's file:line and the reason, every bystander round trip answered, and the server's
-- memory bounded. Before these fixes each of them froze the server for everyone, for good.
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"
local helpers = require "helpers"
local line_of = helpers.line_of

local TIME_LIMIT = 0.5
local MAX_RTT = 1.5             -- seconds a bystander round trip may take while an attack runs
local MAX_RSS_GROWTH = 64 << 10 -- KiB

-- Each attack spans the lines from "A.NAME = function" to "end -- /NAME"; the log line of its
-- failure must name one of them.
local HOSTILE = [=[
local app = {}
local A = {}

-- Lua's string.rep loops n times even when there is nothing to copy.
A.rep_once = function(conn)
    return #(""):rep(math.maxinteger) .. " " .. #(""):rep(math.maxinteger, "")
end -- /rep_once

A.rep_empty = function(conn)
    local n = 0
    while true do n = n + #(""):rep(math.maxinteger) end
end -- /rep_empty

-- 2^50 absent keys: nothing allocated, nothing to see for the count hook.
A.table_move = function(conn)
    return table.move({}, 1, 1 << 50, 1, {})
end -- /table_move

-- __len says 2^50, so inserting at 1 shifts 2^50 elements up (and removing, down).
A.table_insert = function(conn)
    local t = setmetatable({}, { __len = function() return 1 << 50 end })
    table.insert(t, 1, "first")
end -- /table_insert

A.table_remove = function(conn)
    local t = setmetatable({}, { __len = function() return 1 << 50 end })
    return table.remove(t, 1)
end -- /table_remove

-- Every read goes through a C __index that answers "" (table.concat of an empty table).
A.table_concat = function(conn)
    local t = setmetatable({}, { __index = table.concat })
    return #table.concat(t, "", 1, 1 << 50)
end -- /table_concat

-- Two distinct 8 MiB strings of zero bytes: Lua compares them with strcoll, one NUL-separated
-- segment at a time (~50 ms), and a sort of 100,000 of them compares them ~2 million times.
A.table_sort = function(conn)
    local a, b = ("\0"):rep(8 << 20), ("\0"):rep(8 << 20)
    local t = {}
    for i = 1, 100000 do t[i] = i % 2 == 0 and a or b end
    table.sort(t)
end -- /table_sort

-- One < is one instruction of ~50 ms: with a check every thousand instructions, the time limit
-- would be seen ~20 s late.
A.compare_loop = function(conn)
    local a, b, n = ("\0"):rep(8 << 20), ("\0"):rep(8 << 20), 0
    while true do
        if a < b then n = n + 1 end
    end
end -- /compare_loop

A.compare_in_coroutine = function(conn)
    local a, b = ("\0"):rep(8 << 20), ("\0"):rep(8 << 20)
    coroutine.wrap(function()
        while true do
            if a < b then return end
        end
    end)()
end -- /compare_in_coroutine

-- strftime for every 2 bytes of format: 0.45 s in one call for 16 MiB.
A.date_conversions = function(conn)
    return #os.date(("%n"):rep(8 << 20))
end -- /date_conversions

-- Lua 5.4 resolves gotos against a label quadratically: 20 blocks of 32,000 took 29 s.
A.load_gotos = function(conn)
    local block = "do " .. ("goto a "):rep(32000) .. "::a:: end "
    local f = assert(load(block:rep(20), "=gotos", "t", {}))
    return f()
end -- /load_gotos

-- Each `or` walks the jump list built so far: 512 KiB of them parse for 27 s. Under a
-- raised max_load, the parser gets the chunk in pieces, and the time limit stops it between two.
A.load_or_chain = function(conn)
    local f = assert(load("x = a" .. ("or{}"):rep(128 << 10), "=or", "t", {}))
    return "parsed"
end -- /load_or_chain

-- The worst chunk we know of, at a given size: answers "ok|refusal SIZE SECONDS".
A.load_worst = function(conn, size)
    local src = "x = a" .. ("or{}"):rep((tonumber(size) - 5) // 4)
    src = src .. (" "):rep(tonumber(size) - #src)
    local t0 = os.clock()
    local f, err = load(src, "=or", "t", {})
    return (f and "ok" or err) .. " " .. #src .. " " .. string.format("%.4f", os.clock() - t0)
end -- /load_worst

function app.message(conn, data)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "echo" then
        conn:send(arg)
    else
        conn:send(tostring(A[cmd](conn, arg)))
    end
end

return app
]=]

local CONFIG = ([[
sandbox = { time_limit = %s, max_load = 1 << 20 }
]]):format(TIME_LIMIT)

-- ---- helpers ---------------------------------------------------------------------------------

local function range_of(name)
    return line_of(HOSTILE, "A." .. name .. " = function"), line_of(HOSTILE, "end -- /" .. name)
end

local rss_kib = require("helpers").rss_kib

-- Runs fn(srv, dir) with a fresh server running HOSTILE (config: CONFIG unless given); stops
-- it afterwards, whatever happened.
local function with_server(fn, config)
    local dir = server.app_dir { ["app.lua"] = HOSTILE }
    local srv = server.start { app = dir, config = config or CONFIG }
    finally(function()
        if not srv.status then
            srv:signal("TERM")
            if not srv:wait_exit(3) then srv:kill() end
        end
        pcall(srv.stop, srv)
        server.remove(dir)
    end)
    fn(srv, dir)
end

-- The lines of srv's log naming the app in dir and holding needle.
local function app_lines(srv, dir, needle)
    local out = {}
    for l in srv:log():gmatch("[^\n]+") do
        if l:find("app " .. dir .. ": ", 1, true) and l:find(needle, 1, true) then
            out[#out + 1] = l
        end
    end
    return out
end

-- Sends attack name on a new connection while a bystander does echo round trips on another,
-- until the attacker has been closed for a little while. Asserts that every round trip was
-- answered within MAX_RTT, the attacker got 1011 within 3 time limits, the server's RSS grew by
-- less than MAX_RSS_GROWTH, and one log line names one of the attack's lines and one of the
-- reasons given. Returns that line and the seconds until the close.
local function contained(srv, dir, name, reasons)
    local by = assert(ws.connect(srv.port, { timeout = 5 }))
    assert.are.equal("warm", (by:echo("echo warm")))
    local rss0 = rss_kib(srv.pid)
    local c = assert(ws.connect(srv.port))
    local t0 = socket.gettime()
    c:send_text(name)
    local worst, trips, code, reason, closed_after = 0, 0, nil, nil, nil
    while socket.gettime() - t0 < 10 do
        local sent = socket.gettime()
        local got, kind = by:echo("echo " .. trips)
        local rtt = socket.gettime() - sent
        assert.are.equal(tostring(trips), got, string.format(
            "bystander round trip %d during '%s': %s after %.2f s", trips, name, tostring(kind),
            rtt))
        trips = trips + 1
        if rtt > worst then worst = rtt end
        -- Waiting here also paces the bystander well under limits.messages_per_second.
        if not code then
            local k, r = c:expect_close(0.02)
            if k then code, reason, closed_after = k, r, socket.gettime() - t0 end
        else
            socket.sleep(0.02)
        end
        if closed_after and socket.gettime() - t0 > closed_after + 0.3 then break end
    end
    c:abort()
    by:close()
    assert.are.equal(1011, code, "the attacker's close code (" .. tostring(reason) .. ")")
    assert.is_true(closed_after < 3 * TIME_LIMIT, string.format(
        "the attacker was closed after %.2f s (time limit %.1f s)", closed_after, TIME_LIMIT))
    assert.is_true(worst < MAX_RTT, string.format(
        "a bystander round trip took %.2f s while '%s' ran", worst, name))
    local grown = rss_kib(srv.pid) - rss0
    assert.is_true(grown < MAX_RSS_GROWTH, string.format(
        "the server's RSS grew by %d KiB during '%s'", grown, name))

    assert.is_true(helpers.wait_for(srv, "message handler", 1, 3), "no log line of the failure")
    local lines = app_lines(srv, dir, "message handler")
    assert.are.equal(1, #lines, "log lines of the failure:\n" .. table.concat(lines, "\n"))
    local line = lines[1]
    local first, last = range_of(name)
    local n = tonumber(line:match(dir:gsub("%p", "%%%0") .. "/app%.lua:(%d+):"))
    assert.is_true(n ~= nil and n >= first and n <= last,
        "the line names app.lua:" .. first .. "-" .. last .. ":\n" .. line)
    local named = false
    for _, r in ipairs(reasons) do named = named or line:find(r, 1, true) ~= nil end
    assert.is_true(named, "one of '" .. table.concat(reasons, "', '") .. "' in:\n" .. line)
    return line, closed_after
end

local BUDGET = "instruction budget exceeded (10000000 instructions)"
local TIME = ("time limit exceeded (%.1f seconds)"):format(TIME_LIMIT)
local EITHER = { BUDGET, TIME }

-- ---- the attacks -----------------------------------------------------------------------------

describe("work inside one C library call", function()
    it("string.rep of an empty string 2^63 times answers at once, and a loop of them is "
        .. "stopped by the budget", function()
        with_server(function(srv, dir)
            local c = assert(ws.connect(srv.port, { timeout = 2 }))
            local t0 = socket.gettime()
            assert.are.equal("0 0", (c:echo("rep_once")))
            assert.is_true(socket.gettime() - t0 < 0.5, "('').rep(s, 2^63) took long")
            c:close()
            contained(srv, dir, "rep_empty", EITHER)
        end)
    end)

    it("table.move({}, 1, 1 << 50, 1, {}) is stopped by the budget", function()
        with_server(function(srv, dir) contained(srv, dir, "table_move", EITHER) end)
    end)

    it("table.insert at 1 into a table whose __len is 2^50 is stopped by the budget", function()
        with_server(function(srv, dir) contained(srv, dir, "table_insert", EITHER) end)
    end)

    it("table.remove at 1 from a table whose __len is 2^50 is stopped by the budget", function()
        with_server(function(srv, dir) contained(srv, dir, "table_remove", EITHER) end)
    end)

    it("table.concat of 2^50 empty strings read through a C __index is stopped", function()
        with_server(function(srv, dir) contained(srv, dir, "table_concat", EITHER) end)
    end)

    it("table.sort of many long strings of zero bytes is stopped by the budget", function()
        with_server(function(srv, dir) contained(srv, dir, "table_sort", EITHER) end)
    end)

    it("os.date of a format of 8 million conversions is stopped by the budget", function()
        with_server(function(srv, dir) contained(srv, dir, "date_conversions", EITHER) end)
    end)
end)

describe("one long VM instruction", function()
    it("comparing two 8 MiB strings of zero bytes in a loop is stopped at the time limit",
        function()
            with_server(function(srv, dir)
                local _, took = contained(srv, dir, "compare_loop", { TIME })
                assert.is_true(took < TIME_LIMIT + 0.4, ("closed after %.2f s"):format(took))
            end)
        end)

    it("the same loop inside a coroutine is stopped at the time limit too", function()
        with_server(function(srv, dir)
            local _, took = contained(srv, dir, "compare_in_coroutine", { TIME })
            assert.is_true(took < TIME_LIMIT + 0.4, ("closed after %.2f s"):format(took))
        end)
    end)
end)

describe("load of a text chunk", function()
    it("20 blocks of 32,000 gotos are refused by sandbox.max_load, and the refusal is logged",
        function()
            with_server(function(srv, dir)
                local refusal = ("load: the chunk is %d bytes"):format((3 + 7 * 32000 + 10) * 20)
                local line = contained(srv, dir, "load_gotos",
                    { "more than sandbox.max_load (1048576)" })
                assert.is_truthy(line:find(refusal, 1, true), line)
                local warned = app_lines(srv, dir, refusal)
                assert.is_true(#warned >= 2, "a warning line besides the failure:\n"
                    .. table.concat(warned, "\n"))
            end)
        end)

    it("a 512 KiB chain of `or` under a raised max_load is stopped by the time limit while "
        .. "it parses", function()
        with_server(function(srv, dir) contained(srv, dir, "load_or_chain", { TIME }) end)
    end)

    it("by default max_load is 16 KiB, and the worst chunk of that size parses in under "
        .. "a tenth of the default time limit", function()
        with_server(function(srv)
            local c = assert(ws.connect(srv.port, { timeout = 5 }))
            local got = assert(c:echo("load_worst 16384"))
            local verdict, size, secs = got:match("^(%S+) (%d+) ([%d.]+)$")
            assert.are.equal("ok", verdict, got)
            assert.are.equal("16384", size)
            assert.is_true(tonumber(secs) < 0.1, "the worst 16 KiB chunk parsed in " .. secs
                .. " s")
            got = assert(c:echo("load_worst 16385"))
            assert.is_truthy(got:find("load: the chunk is 16385 bytes, more than "
                .. "sandbox.max_load (16384)", 1, true), got)
            c:close()
        end, ("sandbox = { time_limit = %s }"):format(TIME_LIMIT))
    end)
end)
