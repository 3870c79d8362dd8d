-- Specs for scripts/moonwire/rooms.lua, run inside the real runtime by `moonwire test`: the
-- code runs in the sandbox of the probe app (probe/app.lua) with the real mw, real connections
-- (clients named a, b, c... are C.a, C.b, C.c there) and the virtual clock. Definitions,
-- membership and topics, broadcasts, the tick loop, destruction, and hot reloads (records
-- kept, ticks resumed with the new code, never twice, old callbacks never called).
--   build/moonwire test scripts/spec
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local probe = dofile(HERE .. "/probe.lua")

-- Helpers every case has in the sandbox. Conns are compared by name (C.a is "a").
local PRELUDE = [[
function name(conn) return conn.data.name end
function names(list)
    local out = {}
    for i, c in ipairs(list) do out[i] = name(c) end
    return out
end
function ids(list)
    local out = {}
    for i, x in ipairs(list) do out[i] = x.id end
    return out
end
-- Records every callback of a kind as { name, ... } in calls, for asserting order and args.
function recording_kind(calls, extra)
    local def = {
        init = function(room, options)
            calls[#calls + 1] = { "init", room.id, options }
            room.state.players = 0
        end,
        join = function(room, conn, info)
            calls[#calls + 1] = { "join", room.id, name(conn), info }
        end,
        leave = function(room, conn, reason)
            calls[#calls + 1] = { "leave", room.id, name(conn), reason }
        end,
        message = function(room, conn, msg)
            calls[#calls + 1] = { "message", room.id, name(conn), msg }
        end,
        close = function(room) calls[#calls + 1] = { "close", room.id } end,
    }
    for k, v in pairs(extra or {}) do def[k] = v end
    return def
end
-- The names of the recorded calls, in order.
function call_names(calls)
    local out = {}
    for i, c in ipairs(calls) do out[i] = c[1] end
    return out
end
calls = {}
]]

describe("moonwire.rooms", function()
    local p

    local function run(code, ...) return p:run(code, ...) end

    -- Asserts that code raises an error whose message matches pattern.
    local function raises(pattern, code)
        local ok, err = p:try(code)
        assert.is_false(ok, "expected an error matching " .. pattern)
        assert.matches(pattern, tostring(err))
    end

    -- Whether client hears what is published to topic (what it had received is dropped).
    local function hears(client, topic)
        client:receive_all()
        run("mw.publish(..., 'are you there?')", topic)
        return #client:receive_all() == 1
    end

    before_each(function()
        p = probe.start()
        run(PRELUDE)
    end)

    after_each(function()
        local errors = p:errors()
        p:stop()
        if not p.errors_expected then assert.are.same({}, errors, "nothing logged an error") end
    end)

    describe("define", function()
        it("returns the kind's name", function()
            assert.are.equal("match", run([[return rooms.define("match", {})]]))
        end)

        -- label, the arguments to define (code), part of the error message
        local misuse = {
            { "no table", '"match", nil', "expected a table" },
            { "a string instead of a table", '"match", "tick"', "expected a table" },
            { "kind not a string", "7, {}", "kind must be a non%-empty string" },
            { "empty kind", '"", {}', "kind must be a non%-empty string" },
            { "tick_rate negative", '"m", { tick_rate = -1 }', "tick_rate must be a positive" },
            { "tick_rate a string", '"m", { tick_rate = "20" }', "tick_rate must be a number" },
            { "tick_rate NaN", '"m", { tick_rate = 0 / 0 }', "tick_rate must be a positive" },
            { "tick_rate infinite", '"m", { tick_rate = math.huge }', "at most 1000" },
            { "tick_rate past 1000", '"m", { tick_rate = 1001 }', "at most 1000" },
            { "max_members 0", '"m", { max_members = 0 }', "max_members must be a positive int" },
            { "max_members fractional", '"m", { max_members = 2.5 }', "max_members must be" },
            { "max_members a string", '"m", { max_members = "8" }', "max_members must be a num" },
            { "auto_close not a boolean", '"m", { auto_close = 1 }', "auto_close must be a bool" },
            { "a callback not a function", '"m", { tick = true }', "tick must be a function" },
            { "unknown field (typo)", '"m", { tickrate = 20 }', "unknown field 'tickrate'" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                raises(case[3], "rooms.define(" .. case[2] .. ")")
            end)
        end

        it("raises with the caller's position, not the library's", function()
            raises("^probe:2:", '\nrooms.define("match")')
        end)

        it("accepts tick_rate 0 and nil as 'no tick loop'", function()
            run([[
                rooms.define("a", { tick_rate = 0, tick = function() error("ticked") end })
                rooms.define("b", {})
                rooms.create("a")
                rooms.create("b")
            ]])
            assert.are.equal(0, p.server:timers())
            p.server:advance(5000)
        end)
    end)

    describe("create, get, find_or_create, list", function()
        before_each(function() run([[rooms.define("match", {})]]) end)

        it("numbers default ids per kind, skipping taken ids", function()
            assert.are.same({ "match-2", "match-1", "match-3", "lobby-1" }, run([[
                rooms.define("lobby", {})
                return { rooms.create("match", "match-2").id, rooms.create("match").id,
                         rooms.create("match").id, rooms.create("lobby").id }
            ]]))
        end)

        it("gives a new room its id, kind, an empty state and tick 0", function()
            assert.are.same({ "m", "match", {}, 0, 0, "room m (match)" }, run([[
                local room = rooms.create("match", "m")
                return { room.id, room.kind, room.state, room.tick, room:size(), tostring(room) }
            ]]))
        end)

        it("refuses a taken id with nil, \"exists\"", function()
            assert.are.same({ true, "exists", true }, run([[
                local first = rooms.create("match", "m")
                local room, err = rooms.create("match", "m")
                return { room == nil, err, first == rooms.get("m") }
            ]]))
        end)

        it("calls init with the room and the options (an empty table when none)", function()
            assert.are.same({ "init", true, {}, 0 }, run([[
                rooms.define("game", recording_kind(calls))
                local opts = { map = "dust" }
                local a = rooms.create("game", "a", opts)
                rooms.create("game", "b")
                return { calls[1][1], calls[1][3] == opts, calls[2][3], a.state.players }
            ]]))
        end)

        it("lets init replace room.state", function()
            assert.are.same({ score = 7 }, run([[
                rooms.define("game", { init = function(room) room.state = { score = 7 } end })
                return rooms.create("game").state
            ]]))
        end)

        it("makes no room when init raises", function()
            run([[rooms.define("bad", { tick_rate = 10, init = function() error("boom") end })]])
            raises("boom", [[rooms.create("bad", "x")]])
            assert.is_true(run([[return rooms.get("x") == nil]]))
            assert.are.equal(0, p.server:timers())
        end)

        -- label, the arguments to create (code), part of the error message
        local misuse = {
            { "unknown kind", '"nope"', "unknown kind 'nope'" },
            { "kind not a string", "5", "kind must be a string" },
            { "number id", '"match", 42', "id must be a non%-empty string" },
            { "empty id", '"match", ""', "id must be a non%-empty string" },
        }
        for _, case in ipairs(misuse) do
            it("create raises on misuse: " .. case[1], function()
                raises(case[3], "rooms.create(" .. case[2] .. ")")
            end)
        end

        it("get returns the same room, or nil", function()
            assert.are.same({ true, true, true }, run([[
                local room = rooms.create("match", "m")
                return { room == rooms.get("m"), rooms.get("other") == nil,
                         rooms.get(nil) == nil }
            ]]))
        end)

        it("find_or_create finds, creates, and refuses another kind's id", function()
            assert.are.same({ true, 1, true, "wrong kind" }, run([[
                rooms.define("lobby", {})
                local room = rooms.find_or_create("match", "m", {})
                local same = room == rooms.find_or_create("match", "m")
                local none, err = rooms.find_or_create("lobby", "m")
                return { same, #rooms.list(), none == nil, err }
            ]]))
            raises("rooms.find_or_create: id must be a non%-empty string",
                   [[rooms.find_or_create("match")]])
            raises("unknown kind", [[rooms.find_or_create("nope", "n")]])
        end)

        it("list returns every room, or one kind's, sorted by id", function()
            assert.are.same({ { "a", "b", "c" }, { "a", "c" }, {} }, run([[
                rooms.define("lobby", {})
                rooms.create("match", "c")
                rooms.create("lobby", "b")
                rooms.create("match", "a")
                return { ids(rooms.list()), ids(rooms.list("match")), rooms.list("none") }
            ]]))
            raises("", [[rooms.list(1)]])
        end)
    end)

    describe("join and leave", function()
        local a, b, c

        before_each(function()
            a, b, c = p:client("a"), p:client("b"), p:client("c")
            run([[
                rooms.define("match", recording_kind(calls, { max_members = 2 }))
                room = rooms.create("match", "m")
            ]])
        end)

        it("adds members in join order and subscribes them to the room's topic", function()
            assert.are.same({ true, true, { "b", "a" }, 2, true, false, 2,
                              { "join", "m", "b", { name = "bob" } } }, run([[
                local joined_b = room:join(C.b, { name = "bob" })
                local joined_a = room:join(C.a)
                return { joined_b, joined_a, names(room:members()), room:size(), room:has(C.a),
                         room:has(C.c), mw.subscribers("room:m"), calls[2] }
            ]]))
            assert.is_true(hears(a, "room:m"))
            assert.is_false(hears(c, "room:m"))
        end)

        it("refuses a second join with \"already a member\"", function()
            assert.are.same({ true, "already a member", 1 }, run([[
                room:join(C.a)
                local ok, err = room:join(C.a)
                return { ok == nil, err, room:size() }
            ]]))
        end)

        it("refuses joins past max_members with \"full\", and takes one after a leave", function()
            assert.are.same({ true, true, true, "full" }, run([[
                local ok_a, ok_b = room:join(C.a), room:join(C.b)
                local ok, err = room:join(C.c)
                return { ok_a, ok_b, ok == nil, err }
            ]]))
            assert.is_false(hears(c, "room:m"))
            assert.are.same({ true, { "b", "c" } }, run([[
                room:leave(C.a)
                return { room:join(C.c), names(room:members()) }
            ]]))
        end)

        it("refuses a closed conn with \"closed\"", function()
            a:close()
            assert.are.same({ true, "closed" }, run([[
                local ok, err = room:join(C.a)
                return { ok == nil, err }
            ]]))
        end)

        -- label, what the join callback returns (code), the reason join gives
        local refusals = {
            { "false and a reason", 'false, "banned"', "banned" },
            { "nil and a reason", 'nil, "wrong password"', "wrong password" },
            { "false alone", "false", "refused" },
        }
        for _, case in ipairs(refusals) do
            it("lets the join callback refuse with " .. case[1], function()
                assert.are.same({ true, case[3], false, {} }, run([[
                    rooms.define("gated", { join = function() return ]] .. case[2] .. [[ end })
                    local gated = rooms.create("gated", "g")
                    local ok, err = gated:join(C.a)
                    return { ok == nil, err, gated:has(C.a), rooms.of(C.a) }
                ]]))
                assert.is_false(hears(a, "room:g"))
            end)
        end

        it("runs the join callback before the joiner is a member", function()
            assert.are.same({ true, { has = false, size = 1, receivers = 1 } }, run([[
                local seen
                rooms.define("gated", {
                    join = function(r, conn)
                        seen = { has = r:has(conn), size = r:size(),
                                 receivers = r:broadcast("someone is joining") }
                        r:send(conn, "welcome")
                    end,
                })
                local gated = rooms.create("gated", "g")
                gated:join(C.a)
                return { gated:join(C.b), seen }
            ]]))
            assert.are.same({ "welcome", "someone is joining" }, a:receive_all())
            assert.are.same({ "welcome" }, b:receive_all())
        end)

        it("checks again after the join callback (it destroyed the room)", function()
            assert.are.same({ true, "destroyed", 0 }, run([[
                rooms.define("fragile", { join = function(r) r:destroy() end })
                local fragile = rooms.create("fragile", "f")
                local ok, err = fragile:join(C.a)
                return { ok == nil, err, mw.subscribers("room:f") }
            ]]))
        end)

        it("checks again after the join callback (it filled the room)", function()
            assert.are.same({ true, "full", { "b" } }, run([[
                rooms.define("small", {
                    max_members = 1,
                    join = function(r, conn) if conn == C.a then r:join(C.b) end end,
                })
                local small = rooms.create("small", "s")
                local ok, err = small:join(C.a)
                return { ok == nil, err, names(small:members()) }
            ]]))
        end)

        it("refuses joins to a destroyed room with \"destroyed\"", function()
            assert.are.same({ true, "destroyed" }, run([[
                room:destroy()
                local ok, err = room:join(C.a)
                return { ok == nil, err }
            ]]))
        end)

        it("leave removes the member, unsubscribes it and calls leave with \"left\"", function()
            assert.are.same({ true, { "b" }, false, { "leave", "m", "a", "left" } }, run([[
                room:join(C.a)
                room:join(C.b)
                return { room:leave(C.a), names(room:members()), room:has(C.a), calls[#calls] }
            ]]))
            assert.is_false(hears(a, "room:m"))
            assert.is_true(hears(b, "room:m"))
        end)

        it("leave passes a given reason and answers false for a non-member", function()
            assert.are.same({ true, { "leave", "m", "a", "kicked" }, false, false, true }, run([[
                room:join(C.a)
                room:join(C.b)
                local left = room:leave(C.a, "kicked")
                local last = calls[#calls]
                local before = #calls
                return { left, last, room:leave(C.a), room:leave(C.c), #calls == before }
            ]]))
        end)

        it("keeps join order when a member in the middle leaves and rejoins", function()
            p:client("d")
            assert.are.same({ "a", "c", "d", "b" }, run([[
                rooms.define("big", {})
                local big = rooms.create("big", "big")
                for _, conn in ipairs({ C.a, C.b, C.c, C.d }) do big:join(conn) end
                big:leave(C.b)
                big:join(C.b)
                return names(big:members())
            ]]))
        end)

        -- label, the call (code), part of the error message
        local misuse = {
            { "join without a conn", "room:join()", "room:join: expected a conn" },
            { "join with a string", 'room:join("x")', "room:join: expected a conn" },
            { "leave with a number", "room:leave(3)", "room:leave: expected a conn" },
            { "leave with a bad reason", "room:leave(C.a, 5)", "reason must be a string" },
            { "has without a conn", "room:has()", "room:has: expected a conn" },
            { "broadcast a table", "room:broadcast({})", "data must be a string" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                raises(case[3], case[2])
            end)
        end
    end)

    describe("auto_close and destroy", function()
        before_each(function()
            p:client("a")
            p:client("b")
        end)

        it("destroys a room when its last member leaves (auto_close default)", function()
            assert.are.same({ true, true, { "init", "join", "join", "leave", "leave", "close" } },
                            run([[
                rooms.define("match", recording_kind(calls, { tick_rate = 10 }))
                local room = rooms.create("match", "m")
                room:join(C.a)
                room:join(C.b)
                room:leave(C.a)
                local kept = room == rooms.get("m")
                room:leave(C.b)
                return { kept, rooms.get("m") == nil, call_names(calls) }
            ]]))
            assert.are.equal(0, p.server:timers())
        end)

        it("keeps an empty room with auto_close = false", function()
            assert.are.same({ true, { "init", "join", "leave" } }, run([[
                rooms.define("lobby", recording_kind(calls, { auto_close = false }))
                local room = rooms.create("lobby", "l")
                room:join(C.a)
                room:leave(C.a)
                return { room == rooms.get("l"), call_names(calls) }
            ]]))
        end)

        it("does not close a room nobody has joined yet", function()
            run([[rooms.define("match", {}); rooms.create("match", "m")]])
            p.server:advance(1000)
            assert.is_true(run([[return rooms.get("m") ~= nil]]))
        end)

        it("destroy leaves everyone (\"closed\", join order), stops the tick, calls close",
           function()
            run([[
                ticks = 0
                rooms.define("match", recording_kind(calls, {
                    tick_rate = 10, tick = function() ticks = ticks + 1 end,
                }))
                room = rooms.create("match", "m")
                room:join(C.b)
                room:join(C.a)
            ]])
            p.server:advance(100)
            assert.are.same({ true, { "leave", "m", "b", "closed" },
                              { "leave", "m", "a", "closed" }, { "close", "m" }, 6, true, {}, 0,
                              0 }, run([[
                return { room:destroy(), calls[4], calls[5], calls[6], #calls,
                         rooms.get("m") == nil, rooms.of(C.a), mw.subscribers("room:m"),
                         room:size() }
            ]]))
            p.server:advance(1000)
            assert.are.same({ 1, false, 6 }, run([[return { ticks, room:destroy(), #calls }]]))
            assert.are.equal(0, p.server:timers())
        end)

        it("has updated the books before leave and close callbacks run", function()
            assert.are.same({ 0, 0, "gone" }, run([[
                local seen = {}
                rooms.define("match", {
                    leave = function(room) seen[#seen + 1] = room:size() end,
                    close = function(room)
                        seen[#seen + 1] = rooms.get(room.id) == nil and "gone" or "still there"
                    end,
                })
                local room = rooms.create("match", "m")
                room:join(C.a)
                room:join(C.b)
                room:destroy()
                return seen
            ]]))
        end)

        it("frees the id for a new room", function()
            assert.is_true(run([[
                rooms.define("match", {})
                rooms.create("match", "m"):destroy()
                return rooms.create("match", "m") ~= nil
            ]]))
        end)
    end)

    describe("closed connections", function()
        local a, b

        before_each(function()
            a, b = p:client("a"), p:client("b")
            p:client("c")
            run([[
                rooms.define("match", recording_kind(calls, { max_members = 2 }))
                room = rooms.create("match", "m")
                room:join(C.a)
                room:join(C.b)
            ]])
            a:close(1001)
        end)

        it("members, size and broadcast skip a member whose conn closed", function()
            assert.are.same({ { "b" }, 1, 1 }, run([[
                return { names(room:members()), room:size(), room:broadcast("hi") }
            ]]))
            assert.are.same({ "hi" }, b:receive_all())
            assert.are.same({}, a:receive_all())
        end)

        it("keeps it on the books (has) until leave_all, which calls leave", function()
            assert.are.same({ true, 1, { "leave", "m", "a", "closed" }, false }, run([[
                local had = room:has(C.a)
                local n = rooms.leave_all(C.a)
                return { had, n, calls[#calls], room:has(C.a) }
            ]]))
        end)

        it("does not count it against max_members", function()
            assert.are.same({ true, { "b", "c" } }, run([[
                return { room:join(C.c), names(room:members()) }
            ]]))
        end)

        it("auto_close destroys the room when the last open member leaves", function()
            assert.are.same({ true, { "leave", "m", "a", "closed" }, { "close", "m" } }, run([[
                room:leave(C.b)
                return { rooms.get("m") == nil, calls[#calls - 1], calls[#calls] }
            ]]))
        end)

        it("room:send to it answers nil, \"closed\"", function()
            assert.are.same({ true, "closed" }, run([[
                local ok, err = room:send(C.a, "x")
                return { ok == nil, err }
            ]]))
        end)
    end)

    describe("rooms.of and rooms.leave_all", function()
        before_each(function()
            p:client("a")
            p:client("b")
            run([[rooms.define("match", recording_kind(calls))]])
        end)

        it("of lists the rooms a conn is in, sorted by id", function()
            assert.are.same({ { "r1", "r3" }, { "r2" }, { "r3" } }, run([[
                local r3, r1, r2 = rooms.create("match", "r3"), rooms.create("match", "r1"),
                    rooms.create("match", "r2")
                r3:join(C.a)
                r1:join(C.a)
                r2:join(C.b)
                local of_a, of_b = ids(rooms.of(C.a)), ids(rooms.of(C.b))
                r1:leave(C.a)
                return { of_a, of_b, ids(rooms.of(C.a)) }
            ]]))
            raises("rooms.of: expected a conn, got string", [[rooms.of("a")]])
        end)

        it("leave_all leaves every room with \"closed\" and returns the count", function()
            assert.are.same({ 2, {}, true, { "b" }, { "r1 closed", "r2 closed" }, 0 }, run([[
                local r1, r2, r3 = rooms.create("match", "r1"), rooms.create("match", "r2"),
                    rooms.create("match", "r3")
                r1:join(C.a)
                r2:join(C.a)
                r2:join(C.b)
                r3:join(C.b)
                local n = rooms.leave_all(C.a)
                local leaves = {}
                for _, call in ipairs(calls) do
                    if call[1] == "leave" then leaves[#leaves + 1] = call[2] .. " " .. call[4] end
                end
                -- r1 is gone: its last member left.
                return { n, rooms.of(C.a), rooms.get("r1") == nil, names(r2:members()), leaves,
                         rooms.leave_all(C.a) }
            ]]))
        end)

        it("leave_all passes a given reason", function()
            assert.are.same({ "leave", "r1", "a", "banned" }, run([[
                rooms.create("match", "r1"):join(C.a)
                rooms.leave_all(C.a, "banned")
                return calls[#calls - 1]
            ]]))
        end)
    end)

    describe("broadcast, send and deliver", function()
        local a, b, outsider

        before_each(function()
            a, b, outsider = p:client("a"), p:client("b"), p:client("outsider")
            run([[
                rooms.define("match", recording_kind(calls))
                room = rooms.create("match", "m")
                room:join(C.a)
                room:join(C.b)
            ]])
        end)

        it("broadcast reaches exactly the members, through the room's topic", function()
            assert.are.equal(2, run([[return room:broadcast("state 1")]]))
            assert.are.same({ "state 1" }, a:receive_all())
            assert.are.same({ "state 1" }, b:receive_all())
            assert.are.same({}, outsider:receive_all())
            run([[C.outsider:subscribe("room:m")]])
            assert.are.equal(3, run([[return room:broadcast("state 2")]]))
            assert.are.same({ "state 2" }, outsider:receive_all())
        end)

        it("broadcast passes the binary flag", function()
            run([[room:broadcast("\0\1\2", true)]])
            assert.are.same({ "\0\1\2", true }, { a:receive() })
        end)

        it("broadcast no longer reaches a member that left", function()
            assert.are.equal(1, run([[room:leave(C.a); return room:broadcast("x")]]))
            assert.are.same({}, a:receive_all())
        end)

        it("broadcast on a destroyed room reaches nobody and publishes nothing", function()
            run([[C.outsider:subscribe("room:m")]])
            assert.are.equal(0, run([[room:destroy(); return room:broadcast("x")]]))
            assert.are.same({}, outsider:receive_all())
        end)

        it("send forwards conn:send's answer", function()
            assert.is_true(run([[return room:send(C.outsider, "hello")]]))
            assert.are.same({ "hello" }, outsider:receive_all())
        end)

        it("send answers false, \"backpressure\" past limits.send_buffer", function()
            p:stop()
            p = probe.start { limits = { send_buffer = "64K" } }
            run(PRELUDE)
            p:client("a")
            assert.are.same({ false, "backpressure" }, { run([[
                rooms.define("match", {})
                local room = rooms.create("match", "m")
                room:join(C.a)
                C.a:send(string.rep("x", 4 * 1024 * 1024))
                return room:send(C.a, "x")
            ]]) })
        end)

        it("deliver calls the message callback for a member", function()
            local want = { true, { "message", "m", "a", { type = "move", x = 1 } }, true }
            assert.are.same(want, run([[
                local msg = { type = "move", x = 1 }
                local ok = room:deliver(C.a, msg)
                return { ok, calls[#calls], calls[#calls][4] == msg }
            ]]))
        end)

        it("deliver refuses a non-member and a destroyed room", function()
            assert.are.same({ true, "not a member", true, true, "destroyed" }, run([[
                local before = #calls
                local ok, err = room:deliver(C.outsider, {})
                local unchanged = #calls == before
                room:destroy()
                local ok2, err2 = room:deliver(C.a, {})
                return { ok == nil, err, unchanged, ok2 == nil, err2 }
            ]]))
        end)

        it("deliver without a message callback is a no-op that answers true", function()
            assert.is_true(run([[
                rooms.define("quiet", {})
                local quiet = rooms.create("quiet")
                quiet:join(C.a)
                return quiet:deliver(C.a, {})
            ]]))
        end)
    end)

    describe("the tick loop", function()
        it("ticks at tick_rate with a fixed dt and counts room.tick", function()
            run([[
                seen = {}
                t0 = mw.now()
                rooms.define("match", {
                    tick_rate = 20,
                    tick = function(room, tick, dt)
                        seen[#seen + 1] = { tick = tick, dt = dt, at = mw.now() - t0,
                                            field = room.tick }
                    end,
                })
                room = rooms.create("match", "m")
            ]])
            p.server:advance(49)
            assert.are.equal(0, run([[return #seen]]))
            p.server:advance(1)
            local seen = run([[return seen]])
            assert.are.equal(1, #seen)
            assert.are.same({ 1, 0.05, 1 }, { seen[1].tick, seen[1].dt, seen[1].field })
            assert.is_true(math.abs(seen[1].at - 0.05) < 1e-6)
            p.server:advance(950)
            seen = run([[return seen]])
            assert.are.equal(20, #seen)
            assert.are.equal(20, run([[return room.tick]]))
            for i, s in ipairs(seen) do
                assert.are.equal(i, s.tick)
                assert.are.equal(0.05, s.dt)
                assert.are.equal(i, s.field)
            end
        end)

        -- tick_rate, ticks after one second (dt is 1 / tick_rate, compared in the sandbox:
        -- JSON would round it)
        local rates = { { 1, 1 }, { 4, 4 }, { 10, 10 }, { 60, 60 }, { 1000, 1000 } }
        for _, case in ipairs(rates) do
            it("ticks " .. case[2] .. " times a second at tick_rate " .. case[1], function()
                run([[
                    n, rate = 0, ...
                    rooms.define("match", { tick_rate = rate, tick = function(_, _, d)
                        n, dt = n + 1, d
                    end })
                    rooms.create("match")
                ]], case[1])
                -- Half a millisecond more: n * (1000 / rate) may round just past 1000.
                p.server:advance(1000.5)
                assert.are.same({ case[2], true }, { run([[return n, dt == 1 / rate]]) })
            end)
        end

        it("ticks with nobody in the room and without a tick callback", function()
            run([[rooms.define("match", { tick_rate = 10 }); room = rooms.create("match", "m")]])
            p.server:advance(1000)
            assert.are.equal(10, run([[return room.tick]]))
        end)

        it("gives each room its own loop, ticking in creation order", function()
            run([[
                order = {}
                rooms.define("match", { tick_rate = 10, tick = function(room, tick)
                    order[#order + 1] = room.id .. ":" .. tick
                end })
                rooms.create("match", "b")
                rooms.create("match", "a")
            ]])
            assert.are.equal(2, p.server:timers())
            p.server:advance(200)
            assert.are.same({ "b:1", "a:1", "b:2", "a:2" }, run([[return order]]))
        end)

        it("keeps ticking after a tick callback raises (the server logs it)", function()
            run([[
                n = 0
                rooms.define("match", { tick_rate = 10, tick = function(_, tick)
                    n = n + 1
                    if tick == 2 then error("bad tick") end
                end })
                room = rooms.create("match")
            ]])
            p.server:advance(500)
            assert.are.same({ 5, 5 }, { run([[return n, room.tick]]) })
            local errors = p:errors()
            assert.are.equal(1, #errors)
            assert.matches("bad tick", errors[1])
            p.errors_expected = true
        end)

        it("stops when the tick callback destroys the room", function()
            run([[
                n = 0
                rooms.define("match", { tick_rate = 10, tick = function(room, tick)
                    n = n + 1
                    if tick == 3 then room:destroy() end
                end })
                rooms.create("match")
            ]])
            p.server:advance(1000)
            assert.are.equal(3, run([[return n]]))
            assert.are.equal(0, p.server:timers())
        end)

        it("redefining without a reload restarts the loop once, at the new rate", function()
            run([[
                counts = { v1 = 0, v2 = 0 }
                rooms.define("match", { tick_rate = 10, tick = function()
                    counts.v1 = counts.v1 + 1
                end })
                room = rooms.create("match", "m")
            ]])
            p.server:advance(300)
            run([[
                rooms.define("match", { tick_rate = 20, tick = function()
                    counts.v2 = counts.v2 + 1
                end })
            ]])
            assert.are.equal(1, p.server:timers())
            p.server:advance(1000)
            assert.are.same({ { v1 = 3, v2 = 20 }, 23 }, { run([[return counts, room.tick]]) })
            run([[rooms.define("match", {})]])
            assert.are.equal(0, p.server:timers())
        end)
    end)

    describe("hot reload", function()
        -- define_version(r, v, extra): defines "match" as version v of the app would, counting
        -- its callbacks in log[v].
        local DEFINE_VERSION = [[
            log = {}
            function define_version(r, v, extra)
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
        ]]

        -- A hot reload whose new main chunk requires the library again (rooms, in the probe)
        -- and runs on_load (code) after it: what a new version of an app does.
        local function reload(on_load)
            run("mw.state.on_load = ...", on_load)
            p.server:reload()
        end

        -- The new version defines the kind again, as version v (extra: code of a table).
        local function reload_version(v, extra)
            reload(("define_version(rooms, %q, %s)"):format(v, extra or "nil"))
        end

        local function reloaded()
            return p.server:logged("reloaded") ~= nil
        end

        before_each(function()
            run(DEFINE_VERSION)
            p:client("a")
            p:client("b")
        end)

        it("loads a new copy of the module (module-level locals are new)", function()
            run([[old_rooms = rooms]])
            reload_version("v2")
            assert.is_true(reloaded())
            assert.is_true(run([[return rooms ~= old_rooms]]))
        end)

        it("keeps the room, its state, tick count, members and subscriptions", function()
            run([[
                define_version(rooms, "v1")
                room = rooms.create("match", "m")
                room:join(C.a)
                room:join(C.b)
                room.state.score = 5
            ]])
            p.server:advance(300)
            reload_version("v2")
            assert.are.same({ true, 5, 3, { "a", "b" }, 2, { "m" }, { "m" } }, run([[
                local same = rooms.get("m")
                return { room == same, same.state.score, same.tick, names(same:members()),
                         mw.subscribers("room:m"), ids(rooms.of(C.a)), ids(rooms.list("match")) }
            ]]))
        end)

        it("resumes ticking with the new callback, continuing the count", function()
            run([[define_version(rooms, "v1"); room = rooms.create("match", "m")]])
            p.server:advance(1000)
            reload_version("v2")
            p.server:advance(500)
            assert.are.same({ 10, 5, 15, "v2" }, run([[
                return { log.v1.tick, log.v2.tick, room.tick, room.state.last }
            ]]))
        end)

        it("never calls the old version's callbacks again", function()
            run([[
                define_version(rooms, "v1")
                room = rooms.create("match", "m")
                room:join(C.a)
            ]])
            p.server:advance(200)
            run([[
                v1_before = {}
                for k, n in pairs(log.v1) do v1_before[k] = n end
            ]])
            reload_version("v2")
            run([[
                room:join(C.b)
                room:deliver(C.a, { type = "move" })
                room:leave(C.a)
            ]])
            p.server:advance(1000)
            -- b is the last member: auto_close destroys the room.
            assert.are.same({ true, { init = 0, join = 1, leave = 2, message = 1, tick = 10,
                                      close = 1 } }, run([[
                rooms.leave_all(C.b)
                local same = true
                for k, n in pairs(log.v1) do same = same and v1_before[k] == n end
                return { same, log.v2 }
            ]]))
        end)

        it("also hands over rooms held in mw.state by the app", function()
            run([[
                define_version(rooms, "v1")
                mw.state.lobby = rooms.create("match", "lobby")
            ]])
            reload_version("v2")
            assert.are.same({ 0, 1 }, run([[
                mw.state.lobby:join(C.a)
                return { log.v1.join, log.v2.join }
            ]]))
        end)

        it("keeps exactly one timer per room after many reloads", function()
            run([[
                define_version(rooms, "v1")
                rooms.create("match", "m1")
                rooms.create("match", "m2")
                rooms.define("still", {})
                rooms.create("still", "s")
            ]])
            for v = 2, 6 do
                -- "still" is defined again too, as a new version's code would.
                reload(("define_version(rooms, %q); rooms.define('still', {})"):format("v" .. v))
                p.server:advance(100)
                assert.are.equal(2, p.server:timers())
            end
            p.server:advance(900)
            -- v6 ticked m1 and m2 once after its reload and 9 more times each since; each
            -- room ticked once per version before that.
            assert.are.same({ 20, { 2, 2, 2, 2 }, 0, 14 }, run([[
                return { log.v6.tick, { log.v2.tick, log.v3.tick, log.v4.tick, log.v5.tick },
                         log.v1.tick, rooms.get("m1").tick }
            ]]))
        end)

        it("stays with the old code when the new main chunk raises after define", function()
            run([[
                define_version(rooms, "v1")
                room = rooms.create("match", "m")
                room:join(C.a)
            ]])
            p.server:advance(300)
            reload([[define_version(rooms, "v2"); error("a typo further down the new app.lua")]])
            assert.truthy(p.server:logged("a typo further down the new app.lua"))
            p.server:advance(500)
            -- The old version's loop goes on, alone; the failed version never ticked or got the
            -- room's members.
            assert.are.same({ 8, 0, 8, true }, run([[
                return { log.v1.tick, log.v2.tick, room.tick, room:has(C.a) }
            ]]))
            assert.are.equal(1, p.server:timers())
            -- A later good reload hands the room over as usual.
            reload_version("v3")
            p.server:advance(200)
            assert.are.equal(2, run([[return log.v3.tick]]))
            assert.are.equal(1, p.server:timers())
            -- The failed reload logged its error; nothing else did.
            assert.are.equal(1, #p:errors())
            p.errors_expected = true
        end)

        it("retires a tick timer that is no longer the room's, whoever forgot it", function()
            -- Defense in depth, so this pokes the record: a timer the room no longer points at
            -- (as if a cancel had been lost) must not tick it.
            assert.are.same({ 0, false }, (function()
                run([[
                    define_version(rooms, "v1")
                    room = rooms.create("match", "m")
                    forgotten = room._timer
                    room._timer = { cancel = function() return false end }
                ]])
                p.server:advance(100)
                return run([[
                    local tick = room.tick
                    room._timer = nil
                    return { tick, forgotten:cancel() }
                ]])
            end)())
        end)

        it("does not tick a kind's rooms until the new code defines the kind", function()
            run([[define_version(rooms, "v1"); room = rooms.create("match", "m")]])
            reload("-- the new version defines no kind")
            p.server:advance(1000)
            assert.are.same({ 0, true }, run([[return { room.tick, room == rooms.get("m") }]]))
            raises("rooms.create: unknown kind 'match' %(call rooms.define first%)",
                   [[rooms.create("match")]])
            run([[define_version(rooms, "v2")]])
            p.server:advance(1000)
            assert.are.equal(10, run([[return room.tick]]))
        end)

        it("applies a new max_members and tick_rate to existing rooms", function()
            assert.are.same({ true, "full" }, run([[
                define_version(rooms, "v1", { max_members = 1 })
                room = rooms.create("match", "m")
                room:join(C.a)
                local ok, err = room:join(C.b)
                return { ok == nil, err }
            ]]))
            reload_version("v2", "{ max_members = 2, tick_rate = 20 }")
            assert.is_true(run([[return room:join(C.b)]]))
            p.server:advance(1000)
            assert.are.equal(20, run([[return room.tick]]))
        end)

        it("continues default ids after a reload", function()
            run([[
                define_version(rooms, "v1", { tick_rate = 0 })
                rooms.create("match")
                rooms.create("match")
            ]])
            reload_version("v2", "{ tick_rate = 0 }")
            assert.are.equal("match-3", run([[return rooms.create("match").id]]))
        end)

        it("keeps rooms.of and leave_all working across versions", function()
            run([[
                define_version(rooms, "v1")
                rooms.create("match", "m1"):join(C.a)
                rooms.create("match", "m2"):join(C.a)
            ]])
            reload_version("v2")
            assert.are.same({ 2, {}, 2, 0 }, run([[
                return { rooms.leave_all(C.a), rooms.list(), log.v2.close, log.v1.close }
            ]]))
        end)
    end)

    describe("the sandbox", function()
        it("runs the module in the sandbox's environment", function()
            assert.are.same({ true, true, true, true, true, true, false }, run([[
                return { io == nil, debug == nil, package == nil, dofile == nil,
                         loadfile == nil, os.exit == nil, (pcall(function() string.foo = 1 end)) }
            ]]))
        end)

        it("leaves no globals behind", function()
            p:client("a")
            local before = run([[
                local names = {}
                for k in pairs(getmetatable(_ENV).__index) do names[#names + 1] = k end
                table.sort(names)
                return names
            ]])
            run([[rooms.define("match", { tick_rate = 10 }); rooms.create("match"):join(C.a)]])
            p.server:advance(100)
            assert.are.same(before, run([[
                local names = {}
                for k in pairs(getmetatable(_ENV).__index) do names[#names + 1] = k end
                table.sort(names)
                return names
            ]]))
        end)
    end)
end)
