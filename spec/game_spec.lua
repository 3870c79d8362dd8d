-- The game example (examples/game, 20 ticks a second) served by the real server, with live
-- players: snapshots, the delta stream and its tick numbers, movement checked against sim.lua,
-- late joiners, leaving, input errors, one shared message per tick, and a hot reload mid-match.
local cjson = require "cjson"
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"

-- The repository's root, from this file's path, so the spec runs from any working directory.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/.."
package.path = ROOT .. "/examples/game/?.lua;" .. package.path
local sim = require "sim"

local SPEED = sim.SPEED
local TICK_RATE = 20 -- app.lua; an unchanged world still gets a delta when tick % 20 == 0
local WAIT = 5       -- seconds for a message that must come (ASan on a loaded machine)
local QUIET = 0.4    -- seconds of silence that show a message did not come

local function now() return socket.gettime() end

-- ---- a player with an inbox ------------------------------------------------------------------

-- The state a client draws, from a snapshot message; sim.apply moves it along by a delta.
local function state_of(snap)
    return { tick = snap.tick, width = snap.width, height = snap.height, radius = snap.radius,
             players = snap.players }
end

-- Deltas arrive 20 times a second whatever a test is waiting for, so a player keeps what it
-- has read but not yet asked for in an inbox; expectations pick the first message that matches.
-- Every message is kept as { msg = decoded, raw = the text as sent }. Like a real client, a
-- player also rebuilds the match as it reads: .state from its snapshot on, moved along by
-- each delta (sim.apply), and .at[tick], the state after that tick's delta.
local Player = {}
Player.__index = Player

local players = {} -- every player a test opened, closed after the test

local function connect(srv)
    local p = setmetatable({ ws = assert(ws.connect(srv.port, { timeout = WAIT })), inbox = {} },
        Player)
    players[#players + 1] = p
    return p
end

local function matches(msg, want)
    if type(want) == "function" then return want(msg) end
    for k, v in pairs(want) do
        if msg[k] ~= v then return false end
    end
    return true
end

local function show(want)
    return type(want) == "table" and cjson.encode(want) or tostring(want)
end

function Player:send(msg)
    assert(self.ws:send_text(type(msg) == "table" and cjson.encode(msg) or msg))
end

-- Reads one message into the inbox; nil on a timeout. Raises if the connection ended: no test
-- here expects the server to close a player's connection.
function Player:read(timeout)
    local data, err, code = self.ws:recv_message(timeout)
    if not data then
        if err == "timeout" then return nil end
        error("the server ended the connection: " .. tostring(err) .. " " .. tostring(code), 2)
    end
    local msg = assert(cjson.decode(data))
    if msg.type == "snapshot" then
        self.state, self.at = state_of(msg), {}
    elseif msg.type == "delta" and self.state then
        self.state = sim.apply(self.state, msg)
        self.at[msg.tick] = self.state
    end
    local item = { msg = msg, raw = data }
    self.inbox[#self.inbox + 1] = item
    return item
end

-- The first message matching want (and its raw text), read within timeout; fails if none.
function Player:expect(want, timeout)
    local deadline = now() + (timeout or WAIT)
    while true do
        for i, item in ipairs(self.inbox) do
            if matches(item.msg, want) then
                table.remove(self.inbox, i)
                return item.msg, item.raw
            end
        end
        local left = deadline - now()
        if left <= 0 then break end
        self:read(left)
    end
    local seen = {}
    for i, item in ipairs(self.inbox) do seen[i] = item.raw end
    error("no message like " .. show(want) .. " within " .. (timeout or WAIT) .. " s; unread: "
        .. table.concat(seen, "\n  "), 2)
end

-- The next delta, in the order they came.
function Player:delta(timeout)
    return self:expect({ type = "delta" }, timeout)
end

-- Drops deltas until one matches want within timeout, and returns that one.
function Player:skip_to(want, timeout)
    local deadline = now() + (timeout or WAIT)
    while now() < deadline do
        local d, raw = self:delta()
        if matches(d, want) then return d, raw end
    end
    error("no delta like " .. show(want) .. " within " .. (timeout or WAIT) .. " s", 2)
end

-- Reads for `wait` seconds, then fails if any unread message matches want.
function Player:none(want, wait, why)
    local deadline = now() + (wait or QUIET)
    while self:read(math.max(deadline - now(), 0.02)) or now() < deadline do end
    for _, item in ipairs(self.inbox) do
        assert.is_falsy(matches(item.msg, want), (why or "unexpected message") .. ": " .. item.raw)
    end
end

-- Sends msg and expects an error reply with this reason.
function Player:refused(msg, reason)
    self:send(msg)
    assert.are.equal(reason, self:expect { type = "error" }.error, "the error for " .. show(msg))
end

-- Joins the match. Returns the player (with .id, .name) and the snapshot.
local function join(srv, name)
    local p = connect(srv)
    p:send { type = "join", name = name }
    local snap = p:expect { type = "snapshot" }
    p.id, p.name = snap.you, name
    return p, snap
end

-- Joins an arena nobody is in (the previous test's players left): a new world at tick 0.
local function join_fresh(srv, name)
    local p, snap = join(srv, name)
    assert.are.same({ 0, 1 }, { snap.tick, #snap.players },
        "a fresh arena (tick, players): did an earlier test's player stay in the match?")
    return p, snap
end

-- Waits for the delta that brings p into the match (its own arrival, in added). An input sent
-- after it shows in moved from the next step on; one sent before may show in added instead.
function Player:arrived()
    local id = self.id
    return self:skip_to(function(m)
        for _, p in ipairs(m.added or {}) do
            if p.id == id then return true end
        end
        return false
    end)
end

local function find(list, id)
    for _, p in ipairs(list) do
        if p.id == id then return p end
    end
    return nil
end

-- The position part of a player, as deltas carry it.
local function pos(p) return { x = p.x, y = p.y, vx = p.vx, vy = p.vy } end

-- The first delta that moves player id (and matches more(d), if given).
local function moving(id, more)
    return function(m)
        return m.type == "delta" and m.moved ~= nil and m.moved[id] ~= nil
            and (more == nil or more(m.moved[id]))
    end
end

local function close_all()
    for _, p in ipairs(players) do pcall(function() p.ws:close() end) end
    players = {}
end

-- ---- specs -----------------------------------------------------------------------------------

describe("the game example", function()
    local srv
    setup(function() srv = server.start { app = "examples/game" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)
    after_each(close_all)

    it("answers join with a snapshot: you, tick_rate, the arena, and the players with you",
        function()
            local a, sa = join_fresh(srv, "  ada ")
            local world = sim.new()
            local x1, y1 = sim.spawn_point(world, 1)
            assert.are.equal("string", type(sa.you))
            assert.are.same({ TICK_RATE, sim.WIDTH, sim.HEIGHT, sim.RADIUS },
                { sa.tick_rate, sa.width, sa.height, sa.radius })
            assert.are.same({ { id = a.id, name = "ada", x = x1, y = y1, vx = 0, vy = 0,
                                color = sim.COLORS[1] } }, sa.players)
            local b, sb = join(srv, "bo")
            assert.are_not.equal(a.id, b.id)
            assert.is_true(sb.tick >= sa.tick, "the tick does not go back")
            local x2, y2 = sim.spawn_point(world, 2)
            assert.are.same({ a.id, b.id }, { sb.players[1].id, sb.players[2].id },
                "players in join order")
            assert.are.same({ id = b.id, name = "bo", x = x2, y = y2, vx = 0, vy = 0,
                              color = sim.COLORS[2] }, sb.players[2])
        end)

    it("sends the joiner's own arrival in the next delta, then one a second while nothing "
        .. "changes", function()
        local a, snap = join_fresh(srv, "ada")
        local d = a:delta()
        assert.are.equal(snap.tick + 1, d.tick, "the tick right after the snapshot")
        assert.are.same({ snap.players[1] }, d.added)
        assert.is_nil(d.moved)
        assert.is_nil(d.removed)
        -- Nothing changes now: only the deltas of ticks 20, 40, ... come, and they are empty.
        local first = a:delta(WAIT)
        assert.are.equal(0, first.tick % TICK_RATE, "an idle delta at tick " .. first.tick)
        assert.are.same({ type = "delta", tick = first.tick }, first)
        local second = a:delta(WAIT)
        assert.are.same({ type = "delta", tick = first.tick + TICK_RATE }, second)
        -- Movement makes a delta for every tick again, numbered one after the other.
        a:send { type = "input", dx = 1, dy = 0 }
        local prev = a:skip_to(moving(a.id)).tick
        for _ = 1, 10 do
            local next_delta = a:delta()
            assert.are.equal(prev + 1, next_delta.tick, "consecutive ticks while moving")
            prev = next_delta.tick
        end
    end)

    it("moves a player by exactly sim.SPEED per tick along x, then y, until the wall stops it",
        function()
            local a, snap = join_fresh(srv, "ada")
            local me, r = a.id, snap.radius
            local cur = pos(snap.players[1])
            -- Checks that delta d moves me one step from cur with (vx, vy); returns its tick.
            local function step(d, vx, vy, label)
                local want = { x = cur.x + vx, y = cur.y + vy, vx = vx, vy = vy }
                assert.are.same(want, d.moved and d.moved[me], label .. " at tick " .. d.tick)
                cur = want
                return d.tick
            end

            a:arrived()
            a:send { type = "input", dx = 1, dy = 0, seq = 1 }
            local tick = step(a:skip_to(moving(me)), SPEED, 0, "the first step right")
            for _ = 1, 15 do
                local d = a:delta()
                assert.are.equal(tick + 1, d.tick, "a delta every tick")
                tick = step(d, SPEED, 0, "right")
            end

            -- Down: the steps go on right until the input lands, then down; never a gap.
            a:send { type = "input", dx = 0, dy = 1, seq = 2 }
            local down = 0
            while down < 10 do
                local d = a:delta()
                assert.are.equal(tick + 1, d.tick, "a delta every tick")
                local m = d.moved and d.moved[me] or {}
                if down == 0 and m.vx == SPEED then
                    tick = step(d, SPEED, 0, "right, before the input lands")
                else
                    tick = step(d, 0, SPEED, "down")
                    down = down + 1
                end
            end

            -- Up until the wall: y falls by SPEED a tick, the last step is cut at the radius,
            -- then one delta reports the stop and the player drops out of the deltas.
            a:send { type = "input", dx = 0, dy = -1, seq = 3 }
            local up = false
            while cur.y > r do
                local d = a:delta()
                assert.are.equal(tick + 1, d.tick, "a delta every tick")
                local m = d.moved and d.moved[me] or {}
                if not up and m.vy == SPEED then
                    tick = step(d, 0, SPEED, "down, before the input lands")
                else
                    up = true
                    tick = step(d, 0, math.max(r, cur.y - SPEED) - cur.y, "up")
                end
            end
            assert.are.equal(-3, cur.vy, "from y = 15 the last step is 3 px to y = radius 12")
            local d = a:delta()
            assert.are.equal(tick + 1, d.tick)
            step(d, 0, 0, "stopped at the wall")
            local idle = a:delta()
            assert.are.equal(0, idle.tick % TICK_RATE, "after the stop only idle deltas")
            assert.is_nil(idle.moved)
        end)

    it("gives the same inputs the same trajectory in two sessions, and sim.lua's", function()
        -- One session: a fresh arena, one input, every step until the walls stop the player.
        -- Returns the steps (from the first tick that moved), the spawn point and the id.
        local function session(name)
            local p, snap = join_fresh(srv, name)
            local start = pos(snap.players[1])
            p:arrived()
            p:send { type = "input", dx = -1, dy = -1, seq = 1 }
            local d = p:skip_to(moving(p.id))
            local t1, steps = d.tick, {}
            while true do
                assert.are.equal(t1 + #steps, d.tick, "one delta per tick while moving")
                local m = assert(d.moved and d.moved[p.id], "moved in every delta")
                steps[#steps + 1] = pos(m)
                if m.vx == 0 and m.vy == 0 then break end
                assert.is_true(#steps < 40, "the walls stop the player")
                d = p:delta()
            end
            p:send { type = "leave" }
            p:expect { type = "left" }
            p.ws:close()
            return steps, start, p.id
        end
        local one, start1, id1 = session("ada")
        local two, start2, id2 = session("bo")
        assert.are_not.equal(id1, id2, "two players")
        assert.are.same(start1, start2, "the same spawn point")
        assert.are.same(one, two)

        -- And the simulation itself, run here, agrees step by step.
        local world = sim.new()
        sim.add_player(world, "p", "p")
        sim.set_input(world, "p", -1, -1)
        local want = {}
        repeat
            sim.step(world)
            local p = world.players.p
            want[#want + 1] = pos(p)
        until p.vx == 0 and p.vy == 0
        assert.are.same(want, one)
        assert.are.equal(15, #one, "from (80, 75): 14 steps to (12, 12), then the stop")
    end)

    it("shows a second player in the first's deltas, and its snapshot matches the first's "
        .. "state rebuilt from deltas", function()
        local a = join_fresh(srv, "ada")
        -- a moves, so every tick has a delta, and rebuilds the match tick by tick.
        a:send { type = "input", dx = 1, dy = 1, seq = 1 }
        a:skip_to(moving(a.id))
        local b, snap_b = join(srv, "bo")
        local t = snap_b.tick
        local first_b = b:delta()
        assert.are.equal(t + 1, first_b.tick, "b's first delta is the tick after its snapshot")
        local d = a:skip_to(function(m) return m.tick >= t + 1 end)
        assert.are.equal(t + 1, d.tick, "a delta every tick")

        -- That delta adds b, for a as for b: one message for everyone.
        local b_then = find(snap_b.players, b.id)
        assert.are.same({ b_then }, d.added)
        assert.are.same(d, first_b)
        local x2, y2 = sim.spawn_point(sim.new(), 2)
        assert.are.same({ x2, y2, "bo" }, { b_then.x, b_then.y, b_then.name })
        -- b's snapshot, without b, is the state a rebuilt for its tick; one tick on, the two
        -- rebuilt states are the same.
        local without_b = state_of(snap_b)
        without_b.players = { find(snap_b.players, a.id) }
        assert.are.same(assert(a.at[t], "a has the state of tick " .. t), without_b)
        assert.are.same(a.at[t + 1], b.at[t + 1])
        assert.are.equal(2, #b.at[t + 1].players)
    end)

    it("answers leave with left and removes the player in the very next delta", function()
        local a = join_fresh(srv, "ada")
        local b = join(srv, "bo")
        a:send { type = "input", dx = 1, dy = 0 }
        a:skip_to(moving(a.id))
        b:skip_to(moving(a.id))
        b:send { type = "leave" }
        assert.are.same({ type = "left" }, b:expect { type = "left" })
        -- b had a delta for every tick until it left; the one after its last removes it.
        local last = 0
        for tick in pairs(b.at) do last = math.max(last, tick) end
        local d = a:skip_to(function(m) return m.removed ~= nil end)
        assert.are.same({ b.id }, d.removed)
        assert.are.equal(last + 1, d.tick, "removed in the delta right after b's last")
        assert.is_nil(find(a.state.players, b.id))
        b.inbox = {}
        b:none({ type = "delta" }, QUIET, "a delta after leaving")
        b:refused({ type = "input", dx = 1, dy = 0 }, "join first")
        b:refused({ type = "leave" }, "you are not playing")
        -- b may come back: a new player at the next spawn point.
        b:send { type = "join", name = "bo again" }
        local snap = b:expect { type = "snapshot" }
        local x3, y3 = sim.spawn_point(sim.new(), 3)
        assert.are.same({ x3, y3, "bo again" },
            { snap.players[2].x, snap.players[2].y, snap.players[2].name })
    end)

    it("removes a player whose socket drops without a close frame", function()
        local a = join_fresh(srv, "ada")
        local c = join(srv, "cy")
        a:skip_to(function() return find(a.state.players, c.id) ~= nil end)
        c.ws:abort()
        local d = a:skip_to(function(m) return m.removed ~= nil end)
        assert.are.same({ c.id }, d.removed)
        assert.are.same({ a.id }, { a.state.players[1].id, a.state.players[2] })
        local b, snap = join(srv, "bo")
        assert.are.same({ a.id, b.id }, { snap.players[1].id, snap.players[2].id,
                                          snap.players[3] })
    end)

    it("answers bad input, bad joins and input before joining with errors, and goes on",
        function()
            local p = connect(srv)
            p:refused({ type = "input", dx = 1, dy = 0 }, "join first")
            p:refused({ type = "leave" }, "you are not playing")
            p:refused({ type = "join", name = "   " }, "name is empty")
            p:refused({ type = "join", name = string.rep("n", 17) },
                "name is too long (at most 16 characters)")
            p:refused({ type = "join", name = "a\tb" }, "name contains control characters")
            p:refused({ type = "join" }, "missing field 'name'")
            p:refused({ type = "wave" }, "unknown type 'wave'")
            p:refused("{oops", "invalid JSON")
            assert(p.ws:send_binary("{}"))
            assert.are.equal("binary messages are not supported",
                p:expect { type = "error" }.error)
            p:send { type = "join", name = "ada" }
            local snap = p:expect { type = "snapshot" }
            assert.are.same({ 0, 1 }, { snap.tick, #snap.players }, "a fresh arena")
            p.id = snap.you
            local axes = "dx and dy must be -1, 0 or 1"
            p:refused({ type = "input", dx = 5, dy = 0 }, axes)
            p:refused({ type = "input", dx = 0, dy = -2 }, axes)
            p:refused({ type = "input", dx = 0.5, dy = 0 }, axes)
            p:refused({ type = "input", dx = 1 }, "missing field 'dy'")
            p:refused({ type = "input", dy = 1 }, "missing field 'dx'")
            p:refused({ type = "input", dx = "1", dy = 0 }, "field 'dx' must be a number")
            p:refused({ type = "input", dx = 1, dy = 0, seq = -1 },
                "seq must be an integer >= 0")
            p:refused({ type = "input", dx = 1, dy = 0, seq = 1.5 },
                "seq must be an integer >= 0")
            p:refused({ type = "join", name = "twice" }, "you are already playing")
            -- None of those moved the player; a good input does, and a stale seq is ignored.
            p:none(moving(p.id), QUIET, "a refused input moved the player")
            p:send { type = "input", dx = 1, dy = 0, seq = 5 }
            local d = p:skip_to(moving(p.id))
            assert.are.same({ snap.players[1].x + SPEED, SPEED },
                { d.moved[p.id].x, d.moved[p.id].vx })
            p:send { type = "input", dx = -1, dy = 0, seq = 4 }
            p:send { type = "input", dx = 0, dy = 0, seq = 5 }
            p:none(function(m)
                return m.type == "delta" and m.moved and m.moved[p.id]
                    and m.moved[p.id].vx ~= SPEED
            end, QUIET, "an input with a seq not above the last one changed the direction")
            p:send { type = "input", dx = 0, dy = 0, seq = 6 }
            p:skip_to(moving(p.id, function(m) return m.vx == 0 end))
        end)

    it("sends each tick's delta once, as the same bytes to every player", function()
        local a = join_fresh(srv, "ada")
        local b, c = join(srv, "bo"), join(srv, "cy")
        a:send { type = "input", dx = 1, dy = 0 }
        b:send { type = "input", dx = 0, dy = 1 }
        local start = a:skip_to(moving(b.id)).tick + 1
        local stop = start + 20
        local raws = {}
        for i, p in ipairs { a, b, c } do
            raws[i] = {}
            local prev
            repeat
                local d, raw = p:delta()
                if prev then assert.is_true(d.tick > prev, "ticks only go up, none twice") end
                prev = d.tick
                if d.tick >= start then raws[i][d.tick] = raw end
            until d.tick >= stop
        end
        for tick = start, stop do
            assert.is_string(raws[1][tick], "a got the delta of tick " .. tick)
            assert.are.equal(raws[1][tick], raws[2][tick], "a and b, tick " .. tick)
            assert.are.equal(raws[1][tick], raws[3][tick], "a and c, tick " .. tick)
        end
    end)
end)

describe("the game example across a hot reload (live tuning)", function()
    local srv, dir
    before_each(function()
        dir = server.tmpdir()
        assert(os.execute("cp -R '" .. ROOT .. "/examples/game/.' " .. dir))
        srv = server.start { app = dir }
    end)
    after_each(function()
        close_all()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    -- Rewrites a file of the app's copy, replacing old (plain text) once.
    local function edit(file, old, new)
        local path = dir .. "/" .. file
        local f = assert(io.open(path, "rb"))
        local text = f:read("a")
        f:close()
        local at = assert(text:find(old, 1, true), file .. " holds " .. old)
        f = assert(io.open(path, "wb"))
        f:write(text:sub(1, at - 1) .. new .. text:sub(at + #old))
        f:close()
    end

    it("keeps players, positions and ticks going with no gap, runs the new code, and gives the "
        .. "running match sim.lua's new speed", function()
        local a = join_fresh(srv, "ada")
        local b = join(srv, "bo")
        a:send { type = "input", dx = 1, dy = 0 }
        local d = a:skip_to(moving(a.id))
        for _ = 1, 3 do
            local next_delta = a:delta()
            assert.are.equal(d.tick + 1, next_delta.tick)
            assert.is_nil(next_delta.version, "the code as shipped has no version marker")
            d = next_delta
        end
        local tick, x = d.tick, d.moved[a.id].x

        -- The new code marks its deltas, and its sim.lua tunes another speed.
        edit("app.lua", "tick = delta.tick,", "tick = delta.tick, version = 2,")
        edit("sim.lua", "M.SPEED = 5 ", "M.SPEED = 7 ")
        srv:signal("HUP")
        assert.is_truthy(srv:wait_log("app [^\n]- reloaded %(version 2%)", WAIT),
            "the app reloaded:\n" .. srv:log())
        assert.is_truthy(srv:wait_log("match arena retuned: speed 5 %-> 7", WAIT),
            "app.reload retuned the running match:\n" .. srv:log())

        -- Live tuning: the running match moves at the new speed from the first tick of the new
        -- code on (app.reload ran between two ticks); a keeps going right all along.
        local new = 0
        while new < 10 do
            d = a:delta()
            assert.are.equal(tick + 1, d.tick, "no tick lost or repeated across the reload")
            local m = d.moved and d.moved[a.id] or {}
            if d.version == nil then
                assert.are.equal(0, new, "an old-code delta after a new-code one")
                assert.are.same({ x + SPEED, SPEED }, { m.x, m.vx },
                    "a's old step, tick " .. d.tick)
            else
                assert.are.equal(2, d.version)
                assert.are.same({ x + 7, 7 }, { m.x, m.vx }, "a's retuned step, tick " .. d.tick)
                new = new + 1
            end
            tick, x = d.tick, m.x
        end

        -- b was kept too, with the same stream; a newcomer sees everyone where a does.
        assert.are.equal(2, b:skip_to { tick = tick }.version)
        assert.are.same(a.at[tick], b.at[tick])
        local c, snap_c = join(srv, "cy")
        local t = snap_c.tick
        a:skip_to(function(m) return m.tick >= t + 1 end)
        local others = state_of(snap_c)
        others.players = { snap_c.players[1], snap_c.players[2] }
        assert.are.same(assert(a.at[t], "a has the state of tick " .. t), others)
        assert.are.same({ a.id, b.id, c.id }, { snap_c.players[1].id, snap_c.players[2].id,
                                                snap_c.players[3].id })
        local x3, y3 = sim.spawn_point(sim.new(), 3)
        assert.are.same({ x3, y3 }, { snap_c.players[3].x, snap_c.players[3].y },
            "the world's join count survived the reload")
        c:skip_to { tick = t + 1 }
        assert.are.same(a.at[t + 1], c.at[t + 1])

        -- A match started by the new code uses its speed.
        for _, p in ipairs { a, b, c } do
            p:send { type = "leave" }
            p:expect { type = "left" }
        end
        local fresh = join_fresh(srv, "dee")
        fresh:arrived()
        fresh:send { type = "input", dx = 1, dy = 0, seq = 1 }
        d = fresh:skip_to(moving(fresh.id))
        local x0 = sim.spawn_point(sim.new(), 1)
        assert.are.same({ x0 + 7, 7 }, { d.moved[fresh.id].x, d.moved[fresh.id].vx })
        assert.are.equal(2, d.version)
    end)
end)
