-- Unit specs for scripts/moonwire/rooms.lua against the fake mw (spec/support/fake_mw.lua):
-- definitions, membership and topics, broadcasts, the tick loop, destruction, and hot reloads
-- (records kept, ticks resumed with the new code, never twice, old callbacks never called).
local fake_mw = require "fake_mw"

-- The ids of a list of conns or rooms, for comparing order (fake conns are proxies that a deep
-- compare cannot tell apart).
local function ids(list)
    local out = {}
    for i, x in ipairs(list) do out[i] = x.id end
    return out
end

-- Asserts that fn(...) raises an error whose message matches pattern (Lua pattern).
local function raises(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
end

-- Records every callback of a kind as { name, ... } in calls, for asserting order and args.
local function recording_kind(calls, extra)
    local def = {
        init = function(room, options)
            calls[#calls + 1] = { "init", room.id, options }
            room.state.players = 0
        end,
        join = function(room, conn, info)
            calls[#calls + 1] = { "join", room.id, conn.id, info }
        end,
        leave = function(room, conn, reason)
            calls[#calls + 1] = { "leave", room.id, conn.id, reason }
        end,
        message = function(room, conn, msg)
            calls[#calls + 1] = { "message", room.id, conn.id, msg }
        end,
        close = function(room)
            calls[#calls + 1] = { "close", room.id }
        end,
    }
    for k, v in pairs(extra or {}) do def[k] = v end
    return def
end

-- The names of the recorded calls, in order.
local function names(calls)
    local out = {}
    for i, c in ipairs(calls) do out[i] = c[1] end
    return out
end

describe("moonwire.rooms", function()
    local fake, mw, rooms

    before_each(function()
        fake = fake_mw.new()
        mw = fake.mw
        rooms = fake:require "moonwire.rooms"
    end)

    after_each(function()
        assert.are.same({}, fake.errors, "no timer callback raised")
    end)

    describe("define", function()
        it("returns the kind's name", function()
            assert.are.equal("match", rooms.define("match", {}))
        end)

        -- label, kind, definition, part of the error message
        local misuse = {
            { "no table", "match", nil, "expected a table" },
            { "a string instead of a table", "match", "tick", "expected a table" },
            { "kind not a string", 7, {}, "kind must be a non%-empty string" },
            { "empty kind", "", {}, "kind must be a non%-empty string" },
            { "tick_rate negative", "m", { tick_rate = -1 }, "tick_rate must be a positive" },
            { "tick_rate a string", "m", { tick_rate = "20" }, "tick_rate must be a number" },
            { "tick_rate NaN", "m", { tick_rate = 0 / 0 }, "tick_rate must be a positive" },
            { "tick_rate infinite", "m", { tick_rate = math.huge }, "at most 1000" },
            { "tick_rate past 1000", "m", { tick_rate = 1001 }, "at most 1000" },
            { "max_members 0", "m", { max_members = 0 }, "max_members must be a positive int" },
            { "max_members fractional", "m", { max_members = 2.5 }, "max_members must be" },
            { "max_members a string", "m", { max_members = "8" }, "max_members must be a num" },
            { "auto_close not a boolean", "m", { auto_close = 1 }, "auto_close must be a bool" },
            { "a callback not a function", "m", { tick = true }, "tick must be a function" },
            { "unknown field (typo)", "m", { tickrate = 20 }, "unknown field 'tickrate'" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                local ok, err = pcall(rooms.define, case[2], case[3])
                assert.is_false(ok)
                assert.matches(case[4], err)
            end)
        end

        it("raises with the caller's position, not the library's", function()
            local ok, err = pcall(function() rooms.define("match") end)
            assert.is_false(ok)
            assert.matches("rooms_spec.lua:%d+:", err)
        end)

        it("accepts tick_rate 0 and nil as 'no tick loop'", function()
            rooms.define("a", { tick_rate = 0, tick = function() error("ticked") end })
            rooms.define("b", {})
            rooms.create("a")
            rooms.create("b")
            assert.are.equal(0, fake:pending_timers())
            fake:advance(5000)
        end)
    end)

    describe("create, get, find_or_create, list", function()
        before_each(function() rooms.define("match", {}) end)

        it("numbers default ids per kind, skipping taken ids", function()
            rooms.define("lobby", {})
            assert.are.equal("match-2", rooms.create("match", "match-2").id)
            assert.are.equal("match-1", rooms.create("match").id)
            assert.are.equal("match-3", rooms.create("match").id)
            assert.are.equal("lobby-1", rooms.create("lobby").id)
        end)

        it("gives a new room its id, kind, an empty state and tick 0", function()
            local room = rooms.create("match", "m")
            assert.are.equal("m", room.id)
            assert.are.equal("match", room.kind)
            assert.are.same({}, room.state)
            assert.are.equal(0, room.tick)
            assert.are.equal(0, room:size())
            assert.are.equal("room m (match)", tostring(room))
        end)

        it("refuses a taken id with nil, \"exists\"", function()
            local first = rooms.create("match", "m")
            local room, err = rooms.create("match", "m")
            assert.is_nil(room)
            assert.are.equal("exists", err)
            assert.are.equal(first, rooms.get("m"))
        end)

        it("calls init with the room and the options (an empty table when none)", function()
            local calls = {}
            rooms.define("game", recording_kind(calls))
            local opts = { map = "dust" }
            local a = rooms.create("game", "a", opts)
            rooms.create("game", "b")
            assert.are.equal("init", calls[1][1])
            assert.are.equal(opts, calls[1][3])
            assert.are.same({}, calls[2][3])
            assert.are.equal(0, a.state.players)
        end)

        it("lets init replace room.state", function()
            rooms.define("game", { init = function(room) room.state = { score = 7 } end })
            assert.are.same({ score = 7 }, rooms.create("game").state)
        end)

        it("makes no room when init raises", function()
            rooms.define("bad", { tick_rate = 10, init = function() error("boom") end })
            assert.has_error(function() rooms.create("bad", "x") end)
            assert.is_nil(rooms.get("x"))
            assert.are.equal(0, fake:pending_timers())
        end)

        -- label, args, part of the error message
        local misuse = {
            { "unknown kind", { "nope" }, "unknown kind 'nope'" },
            { "kind not a string", { 5 }, "kind must be a string" },
            { "number id", { "match", 42 }, "id must be a non%-empty string" },
            { "empty id", { "match", "" }, "id must be a non%-empty string" },
        }
        for _, case in ipairs(misuse) do
            it("create raises on misuse: " .. case[1], function()
                local ok, err = pcall(rooms.create, table.unpack(case[2]))
                assert.is_false(ok)
                assert.matches(case[3], err)
            end)
        end

        it("get returns the same room, or nil", function()
            local room = rooms.create("match", "m")
            assert.are.equal(room, rooms.get("m"))
            assert.is_nil(rooms.get("other"))
            assert.is_nil(rooms.get(nil))
        end)

        it("find_or_create finds, creates, and refuses another kind's id", function()
            rooms.define("lobby", {})
            local room = rooms.find_or_create("match", "m", {})
            assert.are.equal(room, rooms.find_or_create("match", "m"))
            assert.are.equal(1, #rooms.list())
            local none, err = rooms.find_or_create("lobby", "m")
            assert.is_nil(none)
            assert.are.equal("wrong kind", err)
            raises("rooms.find_or_create: id must be a non%-empty string",
                   rooms.find_or_create, "match")
            assert.has_error(function() rooms.find_or_create("nope", "n") end)
        end)

        it("list returns every room, or one kind's, sorted by id", function()
            rooms.define("lobby", {})
            rooms.create("match", "c")
            rooms.create("lobby", "b")
            rooms.create("match", "a")
            assert.are.same({ "a", "b", "c" }, ids(rooms.list()))
            assert.are.same({ "a", "c" }, ids(rooms.list("match")))
            assert.are.same({}, rooms.list("none"))
            assert.has_error(function() rooms.list(1) end)
        end)
    end)

    describe("join and leave", function()
        local calls, room, a, b, c

        before_each(function()
            calls = {}
            rooms.define("match", recording_kind(calls, { max_members = 2 }))
            room = rooms.create("match", "m")
            a, b, c = fake:conn(), fake:conn(), fake:conn()
        end)

        it("adds members in join order and subscribes them to the room's topic", function()
            assert.is_true(room:join(b, { name = "bob" }))
            assert.is_true(room:join(a))
            assert.are.same({ b.id, a.id }, ids(room:members()))
            assert.are.equal(2, room:size())
            assert.is_true(room:has(a))
            assert.is_false(room:has(c))
            assert.is_true(fake:subscribed(a, "room:m"))
            assert.is_false(fake:subscribed(c, "room:m"))
            assert.are.equal(2, mw.subscribers("room:m"))
            assert.are.same({ "join", "m", b.id, { name = "bob" } }, calls[2])
        end)

        it("refuses a second join with \"already a member\"", function()
            room:join(a)
            local ok, err = room:join(a)
            assert.is_nil(ok)
            assert.are.equal("already a member", err)
            assert.are.equal(1, room:size())
        end)

        it("refuses joins past max_members with \"full\", and takes one after a leave", function()
            assert.is_true(room:join(a))
            assert.is_true(room:join(b))
            local ok, err = room:join(c)
            assert.is_nil(ok)
            assert.are.equal("full", err)
            assert.is_false(fake:subscribed(c, "room:m"))
            room:leave(a)
            assert.is_true(room:join(c))
            assert.are.same({ b.id, c.id }, ids(room:members()))
        end)

        it("refuses a closed conn with \"closed\"", function()
            a:close()
            local ok, err = room:join(a)
            assert.is_nil(ok)
            assert.are.equal("closed", err)
        end)

        -- label, what the join callback returns, the reason join gives
        local refusals = {
            { "false and a reason", { false, "banned" }, "banned" },
            { "nil and a reason", { nil, "wrong password" }, "wrong password" },
            { "false alone", { false }, "refused" },
        }
        for _, case in ipairs(refusals) do
            it("lets the join callback refuse with " .. case[1], function()
                rooms.define("gated", {
                    join = function() return table.unpack(case[2], 1, 2) end,
                })
                local gated = rooms.create("gated", "g")
                local ok, err = gated:join(a)
                assert.is_nil(ok)
                assert.are.equal(case[3], err)
                assert.is_false(gated:has(a))
                assert.is_false(fake:subscribed(a, "room:g"))
                assert.are.same({}, rooms.of(a))
            end)
        end

        it("runs the join callback before the joiner is a member", function()
            local seen
            rooms.define("gated", {
                join = function(r, conn)
                    seen = { has = r:has(conn), size = r:size(),
                             receivers = r:broadcast("someone is joining") }
                    r:send(conn, "welcome")
                end,
            })
            local gated = rooms.create("gated", "g")
            gated:join(a)
            assert.is_true(gated:join(b))
            assert.are.same({ has = false, size = 1, receivers = 1 }, seen)
            assert.are.same({ "someone is joining", "welcome" },
                            { fake:sent(a)[2].data, fake:sent(b)[1].data })
        end)

        it("checks again after the join callback (it destroyed the room)", function()
            rooms.define("fragile", { join = function(r) r:destroy() end })
            local fragile = rooms.create("fragile", "f")
            local ok, err = fragile:join(a)
            assert.is_nil(ok)
            assert.are.equal("destroyed", err)
            assert.are.equal(0, mw.subscribers("room:f"))
        end)

        it("checks again after the join callback (it filled the room)", function()
            rooms.define("small", {
                max_members = 1,
                join = function(r, conn) if conn == a then r:join(b) end end,
            })
            local small = rooms.create("small", "s")
            local ok, err = small:join(a)
            assert.is_nil(ok)
            assert.are.equal("full", err)
            assert.are.same({ b.id }, ids(small:members()))
        end)

        it("refuses joins to a destroyed room with \"destroyed\"", function()
            room:destroy()
            local ok, err = room:join(a)
            assert.is_nil(ok)
            assert.are.equal("destroyed", err)
        end)

        it("leave removes the member, unsubscribes it and calls leave with \"left\"", function()
            room:join(a)
            room:join(b)
            assert.is_true(room:leave(a))
            assert.are.same({ b.id }, ids(room:members()))
            assert.is_false(room:has(a))
            assert.is_false(fake:subscribed(a, "room:m"))
            assert.are.same({ "leave", "m", a.id, "left" }, calls[#calls])
        end)

        it("leave passes a given reason and answers false for a non-member", function()
            room:join(a)
            room:join(b)
            assert.is_true(room:leave(a, "kicked"))
            assert.are.same({ "leave", "m", a.id, "kicked" }, calls[#calls])
            local before = #calls
            assert.is_false(room:leave(a))
            assert.is_false(room:leave(c))
            assert.are.equal(before, #calls)
        end)

        it("keeps join order when a member in the middle leaves and rejoins", function()
            rooms.define("big", {})
            local big = rooms.create("big", "big")
            local d = fake:conn()
            for _, conn in ipairs({ a, b, c, d }) do big:join(conn) end
            big:leave(b)
            big:join(b)
            assert.are.same({ a.id, c.id, d.id, b.id }, ids(big:members()))
        end)

        -- label, method, args, part of the error message
        local misuse = {
            { "join without a conn", "join", {}, "room:join: expected a conn" },
            { "join with a string", "join", { "x" }, "room:join: expected a conn" },
            { "leave with a number", "leave", { 3 }, "room:leave: expected a conn" },
            { "leave with a bad reason", "leave", { "conn", 5 }, "reason must be a string" },
            { "has without a conn", "has", {}, "room:has: expected a conn" },
            { "broadcast a table", "broadcast", { {} }, "data must be a string" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                local args = case[3]
                if args[1] == "conn" then args = { a, args[2] } end
                local ok, err = pcall(room[case[2]], room, table.unpack(args, 1, 2))
                assert.is_false(ok)
                assert.matches(case[4], err)
            end)
        end
    end)

    describe("auto_close and destroy", function()
        local calls, a, b

        before_each(function()
            calls = {}
            a, b = fake:conn(), fake:conn()
        end)

        it("destroys a room when its last member leaves (auto_close default)", function()
            rooms.define("match", recording_kind(calls, { tick_rate = 10 }))
            local room = rooms.create("match", "m")
            room:join(a)
            room:join(b)
            room:leave(a)
            assert.are.equal(room, rooms.get("m"))
            room:leave(b)
            assert.is_nil(rooms.get("m"))
            assert.are.same({ "init", "join", "join", "leave", "leave", "close" }, names(calls))
            assert.are.equal(0, fake:pending_timers())
        end)

        it("keeps an empty room with auto_close = false", function()
            rooms.define("lobby", recording_kind(calls, { auto_close = false }))
            local room = rooms.create("lobby", "l")
            room:join(a)
            room:leave(a)
            assert.are.equal(room, rooms.get("l"))
            assert.are.same({ "init", "join", "leave" }, names(calls))
        end)

        it("does not close a room nobody has joined yet", function()
            rooms.define("match", {})
            rooms.create("match", "m")
            fake:advance(1000)
            assert.is_not_nil(rooms.get("m"))
        end)

        it("destroy leaves everyone (\"closed\", join order), stops the tick, calls close",
           function()
            local ticks = 0
            rooms.define("match", recording_kind(calls, {
                tick_rate = 10, tick = function() ticks = ticks + 1 end,
            }))
            local room = rooms.create("match", "m")
            room:join(b)
            room:join(a)
            fake:advance(100)
            assert.is_true(room:destroy())
            assert.are.same({ "leave", "m", b.id, "closed" }, calls[4])
            assert.are.same({ "leave", "m", a.id, "closed" }, calls[5])
            assert.are.same({ "close", "m" }, calls[6])
            assert.are.equal(6, #calls)
            assert.is_nil(rooms.get("m"))
            assert.are.same({}, rooms.of(a))
            assert.are.equal(0, mw.subscribers("room:m"))
            assert.are.equal(0, room:size())
            fake:advance(1000)
            assert.are.equal(1, ticks)
            assert.are.equal(0, fake:pending_timers())
            assert.is_false(room:destroy())
            assert.are.equal(6, #calls)
        end)

        it("has updated the books before leave and close callbacks run", function()
            local seen = {}
            rooms.define("match", {
                leave = function(room) seen[#seen + 1] = room:size() end,
                close = function(room)
                    seen[#seen + 1] = rooms.get(room.id) == nil and "gone" or "still there"
                end,
            })
            local room = rooms.create("match", "m")
            room:join(a)
            room:join(b)
            room:destroy()
            assert.are.same({ 0, 0, "gone" }, seen)
        end)

        it("frees the id for a new room", function()
            rooms.define("match", {})
            rooms.create("match", "m"):destroy()
            assert.is_not_nil(rooms.create("match", "m"))
        end)
    end)

    describe("closed connections", function()
        local calls, room, a, b, c

        before_each(function()
            calls = {}
            rooms.define("match", recording_kind(calls, { max_members = 2 }))
            room = rooms.create("match", "m")
            a, b, c = fake:conn(), fake:conn(), fake:conn()
            room:join(a)
            room:join(b)
            a:close(1001)
        end)

        it("members, size and broadcast skip a member whose conn closed", function()
            assert.are.same({ b.id }, ids(room:members()))
            assert.are.equal(1, room:size())
            assert.are.equal(1, room:broadcast("hi"))
            assert.are.equal(1, #fake:sent(b))
            assert.are.equal(0, #fake:sent(a))
        end)

        it("keeps it on the books (has) until leave_all, which calls leave", function()
            assert.is_true(room:has(a))
            assert.are.equal(1, rooms.leave_all(a))
            assert.are.same({ "leave", "m", a.id, "closed" }, calls[#calls])
            assert.is_false(room:has(a))
        end)

        it("does not count it against max_members", function()
            assert.is_true(room:join(c))
            assert.are.same({ b.id, c.id }, ids(room:members()))
        end)

        it("auto_close destroys the room when the last open member leaves", function()
            room:leave(b)
            assert.is_nil(rooms.get("m"))
            assert.are.same({ "leave", "m", a.id, "closed" }, calls[#calls - 1])
            assert.are.same({ "close", "m" }, calls[#calls])
        end)

        it("room:send to it answers nil, \"closed\"", function()
            local ok, err = room:send(a, "x")
            assert.is_nil(ok)
            assert.are.equal("closed", err)
        end)
    end)

    describe("rooms.of and rooms.leave_all", function()
        local calls, a, b

        before_each(function()
            calls = {}
            rooms.define("match", recording_kind(calls))
            a, b = fake:conn(), fake:conn()
        end)

        it("of lists the rooms a conn is in, sorted by id", function()
            local r3, r1, r2 = rooms.create("match", "r3"), rooms.create("match", "r1"),
                rooms.create("match", "r2")
            r3:join(a)
            r1:join(a)
            r2:join(b)
            assert.are.same({ "r1", "r3" }, ids(rooms.of(a)))
            assert.are.same({ "r2" }, ids(rooms.of(b)))
            r1:leave(a)
            assert.are.same({ "r3" }, ids(rooms.of(a)))
            raises("rooms.of: expected a conn, got string", rooms.of, "a")
        end)

        it("leave_all leaves every room with \"closed\" and returns the count", function()
            local r1, r2, r3 = rooms.create("match", "r1"), rooms.create("match", "r2"),
                rooms.create("match", "r3")
            r1:join(a)
            r2:join(a)
            r2:join(b)
            r3:join(b)
            assert.are.equal(2, rooms.leave_all(a))
            assert.are.same({}, rooms.of(a))
            assert.is_nil(rooms.get("r1")) -- its last member left
            assert.are.same({ b.id }, ids(r2:members()))
            local leaves = {}
            for _, call in ipairs(calls) do
                if call[1] == "leave" then leaves[#leaves + 1] = call[2] .. " " .. call[4] end
            end
            assert.are.same({ "r1 closed", "r2 closed" }, leaves)
            assert.are.equal(0, rooms.leave_all(a))
        end)

        it("leave_all passes a given reason", function()
            rooms.create("match", "r1"):join(a)
            rooms.leave_all(a, "banned")
            assert.are.same({ "leave", "r1", a.id, "banned" }, calls[#calls - 1])
        end)
    end)

    describe("broadcast, send and deliver", function()
        local calls, room, a, b, outsider

        before_each(function()
            calls = {}
            rooms.define("match", recording_kind(calls))
            room = rooms.create("match", "m")
            a, b, outsider = fake:conn(), fake:conn(), fake:conn()
            room:join(a)
            room:join(b)
        end)

        it("broadcast reaches exactly the members, through the room's topic", function()
            assert.are.equal(2, room:broadcast("state 1"))
            assert.are.same({ topic = "room:m", data = "state 1", binary = false, receivers = 2 },
                            fake.published[1])
            assert.are.equal("state 1", fake:sent(a)[1].data)
            assert.are.equal("state 1", fake:sent(b)[1].data)
            assert.are.equal(0, #fake:sent(outsider))
        end)

        it("broadcast passes the binary flag", function()
            room:broadcast("\0\1\2", true)
            assert.is_true(fake.published[1].binary)
            assert.is_true(fake:sent(a)[1].binary)
        end)

        it("broadcast no longer reaches a member that left", function()
            room:leave(a)
            assert.are.equal(1, room:broadcast("x"))
            assert.are.equal(0, #fake:sent(a))
        end)

        it("broadcast on a destroyed room reaches nobody and publishes nothing", function()
            room:destroy()
            assert.are.equal(0, room:broadcast("x"))
            assert.are.equal(0, #fake.published)
        end)

        it("send forwards conn:send's answer", function()
            assert.is_true(room:send(outsider, "hello"))
            assert.are.equal("hello", fake:sent(outsider)[1].data)
            fake:set_backpressure(a, true)
            assert.are.same({ false, "backpressure" }, { room:send(a, "x") })
        end)

        it("deliver calls the message callback for a member", function()
            local msg = { type = "move", x = 1 }
            assert.is_true(room:deliver(a, msg))
            assert.are.same({ "message", "m", a.id, msg }, calls[#calls])
            assert.are.equal(msg, calls[#calls][4])
        end)

        it("deliver refuses a non-member and a destroyed room", function()
            local before = #calls
            assert.are.same({ nil, "not a member" }, { room:deliver(outsider, {}) })
            assert.are.equal(before, #calls)
            room:destroy()
            assert.are.same({ nil, "destroyed" }, { room:deliver(a, {}) })
        end)

        it("deliver without a message callback is a no-op that answers true", function()
            rooms.define("quiet", {})
            local quiet = rooms.create("quiet")
            quiet:join(a)
            assert.is_true(quiet:deliver(a, {}))
        end)
    end)

    describe("the tick loop", function()
        it("ticks at tick_rate with a fixed dt and counts room.tick", function()
            local seen = {}
            rooms.define("match", {
                tick_rate = 20,
                tick = function(room, tick, dt)
                    seen[#seen + 1] = { tick = tick, dt = dt, at = mw.now(), field = room.tick }
                end,
            })
            local room = rooms.create("match", "m")
            fake:advance(49)
            assert.are.equal(0, #seen)
            fake:advance(1)
            assert.are.same({ { tick = 1, dt = 0.05, at = 0.05, field = 1 } }, seen)
            fake:advance(950)
            assert.are.equal(20, #seen)
            assert.are.equal(20, room.tick)
            for i, s in ipairs(seen) do
                assert.are.equal(i, s.tick)
                assert.are.equal(0.05, s.dt)
                assert.are.equal(i, s.field)
            end
        end)

        -- tick_rate, ticks after one second, dt
        local rates = { { 1, 1, 1 }, { 4, 4, 0.25 }, { 10, 10, 0.1 }, { 60, 60, 1 / 60 },
                        { 1000, 1000, 0.001 } }
        for _, case in ipairs(rates) do
            it("ticks " .. case[2] .. " times a second at tick_rate " .. case[1], function()
                local n, dt = 0, nil
                rooms.define("match", { tick_rate = case[1], tick = function(_, _, d)
                    n, dt = n + 1, d
                end })
                rooms.create("match")
                -- Half a millisecond more: n * (1000 / rate) may round just past 1000.
                fake:advance(1000.5)
                assert.are.equal(case[2], n)
                assert.are.equal(case[3], dt)
            end)
        end

        it("ticks with nobody in the room and without a tick callback", function()
            rooms.define("match", { tick_rate = 10 })
            local room = rooms.create("match", "m")
            fake:advance(1000)
            assert.are.equal(10, room.tick)
        end)

        it("gives each room its own loop, ticking in creation order", function()
            local order = {}
            rooms.define("match", { tick_rate = 10, tick = function(room, tick)
                order[#order + 1] = room.id .. ":" .. tick
            end })
            rooms.create("match", "b")
            rooms.create("match", "a")
            assert.are.equal(2, fake:pending_timers())
            fake:advance(200)
            assert.are.same({ "b:1", "a:1", "b:2", "a:2" }, order)
        end)

        it("keeps ticking after a tick callback raises (the server logs it)", function()
            local n = 0
            rooms.define("match", { tick_rate = 10, tick = function(_, tick)
                n = n + 1
                if tick == 2 then error("bad tick") end
            end })
            local room = rooms.create("match")
            fake:advance(500)
            assert.are.equal(5, n)
            assert.are.equal(5, room.tick)
            assert.are.equal(1, #fake.errors)
            assert.matches("bad tick", fake.errors[1])
            assert.are.equal("error", fake.logs[1].level)
            fake.errors = {}
        end)

        it("stops when the tick callback destroys the room", function()
            local n = 0
            rooms.define("match", { tick_rate = 10, tick = function(room, tick)
                n = n + 1
                if tick == 3 then room:destroy() end
            end })
            rooms.create("match")
            fake:advance(1000)
            assert.are.equal(3, n)
            assert.are.equal(0, fake:pending_timers())
        end)

        it("redefining without a reload restarts the loop once, at the new rate", function()
            local counts = { v1 = 0, v2 = 0 }
            rooms.define("match", { tick_rate = 10, tick = function()
                counts.v1 = counts.v1 + 1
            end })
            local room = rooms.create("match", "m")
            fake:advance(300)
            rooms.define("match", { tick_rate = 20, tick = function()
                counts.v2 = counts.v2 + 1
            end })
            assert.are.equal(1, fake:pending_timers())
            fake:advance(1000)
            assert.are.same({ v1 = 3, v2 = 20 }, counts)
            assert.are.equal(23, room.tick)
            rooms.define("match", {})
            assert.are.equal(0, fake:pending_timers())
        end)
    end)

    describe("hot reload", function()
        -- Defines "match" as version `v` of the app would, counting its callbacks in log[v].
        local function define_version(r, log, v, extra)
            log[v] = { init = 0, join = 0, leave = 0, message = 0, tick = 0, close = 0 }
            local def = {
                tick_rate = 10,
                init = function() log[v].init = log[v].init + 1 end,
                join = function() log[v].join = log[v].join + 1 end,
                leave = function() log[v].leave = log[v].leave + 1 end,
                message = function() log[v].message = log[v].message + 1 end,
                tick = function(room)
                    log[v].tick = log[v].tick + 1
                    room.state.last = v
                end,
                close = function() log[v].close = log[v].close + 1 end,
            }
            for k, value in pairs(extra or {}) do def[k] = value end
            r.define("match", def)
        end

        -- The new version's main chunk: require the library again and define the kind again.
        local function reload(log, v, extra, opts)
            return fake:reload(function(f)
                local r = f:require "moonwire.rooms"
                define_version(r, log, v, extra)
                return r
            end, opts)
        end

        local log, a, b

        before_each(function()
            log = {}
            a, b = fake:conn(), fake:conn()
        end)

        it("loads a new copy of the module (module-level locals are new)", function()
            local again = reload(log, "v2")
            assert.are_not.equal(rooms, again)
        end)

        it("keeps the room, its state, tick count, members and subscriptions", function()
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            room:join(a)
            room:join(b)
            room.state.score = 5
            fake:advance(300)
            local rooms2 = reload(log, "v2")
            local same = rooms2.get("m")
            assert.are.equal(room, same)
            assert.are.equal(5, same.state.score)
            assert.are.equal(3, same.tick)
            assert.are.same({ a.id, b.id }, ids(same:members()))
            assert.are.equal(2, mw.subscribers("room:m"))
            assert.are.same({ "m" }, ids(rooms2.of(a)))
            assert.are.same({ "m" }, ids(rooms2.list("match")))
        end)

        it("resumes ticking with the new callback, continuing the count", function()
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            fake:advance(1000)
            reload(log, "v2")
            fake:advance(500)
            assert.are.equal(10, log.v1.tick)
            assert.are.equal(5, log.v2.tick)
            assert.are.equal(15, room.tick)
            assert.are.equal("v2", room.state.last)
        end)

        it("never calls the old version's callbacks again", function()
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            room:join(a)
            fake:advance(200)
            local v1_before = {}
            for k, n in pairs(log.v1) do v1_before[k] = n end
            local rooms2 = reload(log, "v2")
            room:join(b)
            room:deliver(a, { type = "move" })
            room:leave(a)
            fake:advance(1000)
            rooms2.leave_all(b) -- the last member: auto_close destroys the room
            assert.are.same(v1_before, log.v1)
            assert.are.same({ init = 0, join = 1, leave = 2, message = 1, tick = 10, close = 1 },
                            log.v2)
        end)

        it("also hands over rooms held in mw.state by the app", function()
            define_version(rooms, log, "v1")
            mw.state.lobby = rooms.create("match", "lobby")
            reload(log, "v2")
            mw.state.lobby:join(a)
            assert.are.equal(0, log.v1.join)
            assert.are.equal(1, log.v2.join)
        end)

        it("keeps exactly one timer per room after many reloads", function()
            define_version(rooms, log, "v1")
            rooms.create("match", "m1")
            rooms.create("match", "m2")
            rooms.define("still", {})
            rooms.create("still", "s")
            for v = 2, 6 do
                reload(log, "v" .. v, nil)
                fake:advance(100)
                assert.are.equal(2, fake:pending_timers())
            end
            fake:advance(900)
            -- v6 ticked m1 and m2 once after its reload and 9 more times each since; each
            -- room ticked once per version before that.
            assert.are.equal(2 * 10, log.v6.tick)
            for v = 2, 5 do assert.are.equal(2, log["v" .. v].tick) end
            assert.are.equal(0, log.v1.tick)
            assert.are.equal(14, rooms.get("m1").tick)
        end)

        it("stays with the old code when the new main chunk raises after define", function()
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            room:join(a)
            fake:advance(300)
            assert.has_error(function()
                fake:reload(function(f)
                    define_version(f:require "moonwire.rooms", log, "v2")
                    error("a typo further down the new app.lua")
                end)
            end, "a typo further down the new app.lua")
            fake:advance(500)
            -- The old version's loop goes on, alone; the failed version never ticked or got the
            -- room's members.
            assert.are.equal(8, log.v1.tick)
            assert.are.equal(0, log.v2.tick)
            assert.are.equal(8, room.tick)
            assert.are.equal(1, fake:pending_timers())
            assert.is_true(room:has(a))
            -- A later good reload hands the room over as usual.
            reload(log, "v3")
            fake:advance(200)
            assert.are.equal(2, log.v3.tick)
            assert.are.equal(1, fake:pending_timers())
        end)

        it("never ticks twice even if the server missed cancelling an old timer", function()
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            fake:advance(100)
            reload(log, "v2", nil, { keep_timers = true })
            fake:advance(1000)
            assert.are.equal(1, log.v1.tick)
            assert.are.equal(10, log.v2.tick)
            assert.are.equal(11, room.tick)
            assert.are.equal(1, fake:pending_timers())
        end)

        it("retires a tick timer that is no longer the room's, whoever forgot it", function()
            -- Defense in depth, so this pokes the record: a timer the room no longer points at
            -- (as if a cancel had been lost) must not tick it.
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            local forgotten = room._timer
            room._timer = { cancel = function() return false end }
            fake:advance(100)
            assert.are.equal(0, room.tick)
            assert.is_false(forgotten.pending)
            room._timer = nil
        end)

        it("does not tick a kind's rooms until the new code defines the kind", function()
            define_version(rooms, log, "v1")
            local room = rooms.create("match", "m")
            local rooms2 = fake:reload(function(f) return f:require "moonwire.rooms" end)
            fake:advance(1000)
            assert.are.equal(0, room.tick)
            assert.are.equal(room, rooms2.get("m"))
            raises("rooms.create: unknown kind 'match' %(call rooms.define first%)",
                   rooms2.create, "match")
            define_version(rooms2, log, "v2")
            fake:advance(1000)
            assert.are.equal(10, room.tick)
        end)

        it("applies a new max_members and tick_rate to existing rooms", function()
            define_version(rooms, log, "v1", { max_members = 1 })
            local room = rooms.create("match", "m")
            room:join(a)
            assert.are.same({ nil, "full" }, { room:join(b) })
            reload(log, "v2", { max_members = 2, tick_rate = 20 })
            assert.is_true(room:join(b))
            fake:advance(1000)
            assert.are.equal(20, room.tick)
        end)

        it("continues default ids after a reload", function()
            define_version(rooms, log, "v1", { tick_rate = 0 })
            rooms.create("match")
            rooms.create("match")
            local rooms2 = reload(log, "v2", { tick_rate = 0 })
            assert.are.equal("match-3", rooms2.create("match").id)
        end)

        it("keeps rooms.of and leave_all working across versions", function()
            define_version(rooms, log, "v1")
            rooms.create("match", "m1"):join(a)
            rooms.create("match", "m2"):join(a)
            local rooms2 = reload(log, "v2")
            assert.are.equal(2, rooms2.leave_all(a))
            assert.are.same({}, rooms2.list())
            assert.are.equal(2, log.v2.close)
            assert.are.equal(0, log.v1.close)
        end)
    end)

    describe("the sandbox", function()
        it("loads the module in an environment holding only the sandbox's globals", function()
            local env = fake.env
            for _, name in ipairs({ "io", "debug", "package", "dofile", "loadfile" }) do
                assert.is_nil(env[name], name)
            end
            assert.is_nil(env.os.exit)
            assert.has_error(function() env.string.foo = 1 end)
            -- The module was loaded through that environment's require, with the fake mw.
            assert.are.equal(rooms, fake.loaded["moonwire.rooms"])
        end)

        it("leaves no globals behind", function()
            local names = {}
            for k in pairs(fake.env) do names[#names + 1] = k end
            table.sort(names)
            rooms.define("match", { tick_rate = 10 })
            rooms.create("match"):join(fake:conn())
            fake:advance(100)
            local after = {}
            for k in pairs(fake.env) do after[#after + 1] = k end
            table.sort(after)
            assert.are.same(names, after)
        end)
    end)
end)
