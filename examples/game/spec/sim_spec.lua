-- The game example, with no server. The simulation (examples/game/sim.lua): spawns, steps,
-- clamping, deltas, and the two properties the protocol rests on: replaying every delta from
-- the start gives a late joiner's snapshot, and the same inputs always give the same states.
-- Plain Lua (the app on the server: game_spec.lua).
--   build/moonwire test examples/game/spec
-- The app's folder, from this file's path, so the spec runs from any working directory.
local APP = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/.."
package.path = APP .. "/?.lua;" .. package.path
local sim = require "sim"

-- ---- helpers ---------------------------------------------------------------------------------

local function world_with(...)
    local world = sim.new()
    for i, name in ipairs { ... } do assert(sim.add_player(world, "p" .. i, name)) end
    return world
end

local function steps(world, n)
    for _ = 1, n do sim.step(world) end
end

local function player(snapshot, id)
    for _, p in ipairs(snapshot.players) do
        if p.id == id then return p end
    end
    return nil
end

local function count_keys(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

-- A scripted session: joins, leaves and inputs at given ticks. Returns the world, the first
-- snapshot and the delta of every tick, as the app makes them.
local SCRIPT = {
    [0] = { join = { "a", "b" }, input = { a = { 1, 0 }, b = { 0, 1 } } },
    [3] = { input = { a = { 1, 1 } } },
    [5] = { join = { "c" }, input = { c = { -1, -1 } } },
    [8] = { leave = { "b" } },
    [9] = { input = { a = { 0, 0 } } },
    [12] = { join = { "d" }, leave = { "c" } },
    [15] = { input = { d = { 0, -1 } } },
}

local function run(script, ticks)
    local world = sim.new()
    local first = sim.snapshot(world)
    local last, deltas = first, {}
    for tick = 0, ticks - 1 do
        local events = script[tick] or {}
        for _, id in ipairs(events.join or {}) do assert(sim.add_player(world, id, id)) end
        for _, id in ipairs(events.leave or {}) do assert(sim.remove_player(world, id)) end
        for id, d in pairs(events.input or {}) do assert(sim.set_input(world, id, d[1], d[2])) end
        sim.step(world)
        deltas[#deltas + 1] = sim.delta(last, world)
        last = sim.snapshot(world)
    end
    return world, first, deltas
end

-- ---- specs -----------------------------------------------------------------------------------

describe("game sim", function()
    describe("spawning", function()
        it("spawn points depend only on the join order", function()
            local a, b = world_with("x", "y", "z"), world_with("ann", "bob", "cy")
            for i = 1, 3 do
                local pa, pb = a.players["p" .. i], b.players["p" .. i]
                assert.same({ pa.x, pa.y, pa.color }, { pb.x, pb.y, pb.color })
            end
        end)

        it("the first 20 joiners get 20 different spawn points inside the arena", function()
            local world, seen = sim.new(), {}
            for n = 1, 20 do
                local x, y = sim.spawn_point(world, n)
                assert.is_true(x >= world.radius and x <= world.width - world.radius)
                assert.is_true(y >= world.radius and y <= world.height - world.radius)
                assert.is_nil(seen[x .. "," .. y], "spawn point of joiner " .. n .. " reused")
                seen[x .. "," .. y] = true
            end
        end)

        it("consecutive joiners spawn far apart (at least 300 px)", function()
            local world = sim.new()
            for n = 1, 19 do
                local x1, y1 = sim.spawn_point(world, n)
                local x2, y2 = sim.spawn_point(world, n + 1)
                local dist = math.sqrt((x2 - x1) ^ 2 + (y2 - y1) ^ 2)
                assert.is_true(dist >= 300, "joiners " .. n .. " and " .. n + 1 .. ": " .. dist)
            end
        end)

        it("later joiners do not land exactly on an earlier one", function()
            local world, seen = sim.new(), {}
            for n = 1, 80 do
                local x, y = sim.spawn_point(world, n)
                assert.is_nil(seen[x .. "," .. y], "spawn point of joiner " .. n .. " reused")
                seen[x .. "," .. y] = true
            end
        end)

        it("join order, not the id, picks the spawn point, even after leaves", function()
            local world = world_with("a", "b")
            sim.remove_player(world, "p1")
            assert(sim.add_player(world, "p3", "c"))
            local x, y = sim.spawn_point(world, 3)
            assert.same({ x, y }, { world.players.p3.x, world.players.p3.y })
        end)

        it("a new player stands still with no input", function()
            local world = world_with("a")
            local p = world.players.p1
            assert.same({ 0, 0, 0, 0 }, { p.vx, p.vy, p.dx, p.dy })
        end)

        it("adding an id twice is refused", function()
            local world = world_with("a")
            assert.same({ nil, "already playing" }, { sim.add_player(world, "p1", "again") })
            assert.equal(1, #world.order)
        end)
    end)

    describe("inputs", function()
        local cases = {
            { label = "-1, 0, 1 are accepted", dx = -1, dy = 1, ok = true },
            { label = "floats equal to integers are accepted (JSON)", dx = 1.0, dy = -1.0,
              ok = true },
            { label = "2 is refused", dx = 2, dy = 0 },
            { label = "0.5 is refused", dx = 0.5, dy = 0 },
            { label = "a string is refused", dx = "1", dy = 0 },
            { label = "nil is refused", dx = 0, dy = nil },
            { label = "NaN is refused", dx = 0 / 0, dy = 0 },
        }
        for _, case in ipairs(cases) do
            it(case.label, function()
                local world = world_with("a")
                local ok, err = sim.set_input(world, "p1", case.dx, case.dy)
                if case.ok then
                    assert.is_true(ok)
                    assert.equal("integer", math.type(world.players.p1.dx))
                else
                    assert.same({ nil, "dx and dy must be -1, 0 or 1" }, { ok, err })
                    assert.same({ 0, 0 }, { world.players.p1.dx, world.players.p1.dy })
                end
            end)
        end

        it("an input for an unknown player is refused", function()
            assert.same({ nil, "no such player" }, { sim.set_input(sim.new(), "nobody", 1, 0) })
        end)
    end)

    describe("stepping", function()
        local directions = {
            { label = "right", dx = 1, dy = 0 }, { label = "left", dx = -1, dy = 0 },
            { label = "down", dx = 0, dy = 1 }, { label = "up", dx = 0, dy = -1 },
            { label = "diagonal", dx = 1, dy = -1 }, { label = "still", dx = 0, dy = 0 },
        }
        for _, d in ipairs(directions) do
            it("moves exactly speed per tick: " .. d.label, function()
                local world = world_with("a")
                local p = world.players.p1
                local x0, y0 = p.x, p.y
                sim.set_input(world, "p1", d.dx, d.dy)
                steps(world, 3)
                assert.equal(x0 + 3 * d.dx * sim.SPEED, p.x)
                assert.equal(y0 + 3 * d.dy * sim.SPEED, p.y)
                assert.same({ d.dx * sim.SPEED, d.dy * sim.SPEED }, { p.vx, p.vy })
                assert.equal(3, world.tick)
            end)
        end

        it("the input holds until changed", function()
            local world = world_with("a")
            local p = world.players.p1
            local x0 = p.x
            sim.set_input(world, "p1", 1, 0)
            steps(world, 2)
            sim.set_input(world, "p1", 0, 0)
            steps(world, 5)
            assert.equal(x0 + 2 * sim.SPEED, p.x)
            assert.same({ 0, 0 }, { p.vx, p.vy })
        end)

        it("coordinates stay integers", function()
            local world = world_with("a", "b")
            sim.set_input(world, "p1", 1.0, -1.0)
            steps(world, 4)
            for _, p in pairs(world.players) do
                assert.same({ "integer", "integer" }, { math.type(p.x), math.type(p.y) })
            end
        end)

        local edges = {
            { label = "left wall", dx = -1, dy = 0, x = sim.RADIUS },
            { label = "right wall", dx = 1, dy = 0, x = sim.WIDTH - sim.RADIUS },
            { label = "top wall", dx = 0, dy = -1, y = sim.RADIUS },
            { label = "bottom wall", dx = 0, dy = 1, y = sim.HEIGHT - sim.RADIUS },
            { label = "corner", dx = 1, dy = 1, x = sim.WIDTH - sim.RADIUS,
              y = sim.HEIGHT - sim.RADIUS },
        }
        for _, e in ipairs(edges) do
            it("clamps at the " .. e.label .. " and then reads as still", function()
                local world = world_with("a")
                local p = world.players.p1
                local x0, y0 = p.x, p.y
                sim.set_input(world, "p1", e.dx, e.dy)
                steps(world, 300)   -- 1500 px: further than any wall
                assert.equal(e.x or x0, p.x)
                assert.equal(e.y or y0, p.y)
                assert.same({ 0, 0 }, { p.vx, p.vy })
            end)
        end

        it("the step that reaches the wall moves only the distance left", function()
            local world = sim.new { width = 100, height = 100, speed = 7, radius = 10 }
            assert(sim.add_player(world, "p1", "a"))
            local p = world.players.p1
            p.x = 85                 -- 5 px from the wall at 90
            sim.set_input(world, "p1", 1, 0)
            sim.step(world)
            assert.same({ 90, 5 }, { p.x, p.vx })
        end)
    end)

    describe("deltas", function()
        it("contain only the players that changed", function()
            local world = world_with("a", "b", "c")
            local before = sim.snapshot(world)
            sim.set_input(world, "p2", 1, 0)
            sim.step(world)
            local d = sim.delta(before, world)
            assert.equal(1, d.tick)
            assert.same({ "p2" }, (function()
                local ids = {}
                for id in pairs(d.moved) do ids[#ids + 1] = id end
                return ids
            end)())
            local p = world.players.p2
            assert.same({ x = p.x, y = p.y, vx = p.vx, vy = p.vy }, d.moved.p2)
            assert.same({}, d.added)
            assert.same({}, d.removed)
        end)

        it("are empty when nothing moved", function()
            local world = world_with("a", "b")
            local before = sim.snapshot(world)
            sim.step(world)
            local d = sim.delta(before, world)
            assert.is_true(sim.is_empty(d))
            assert.equal(1, d.tick)
        end)

        it("list a stop as a change (velocity back to 0), then nothing", function()
            local world = world_with("a")
            sim.set_input(world, "p1", 0, 1)
            sim.step(world)
            local before = sim.snapshot(world)
            sim.set_input(world, "p1", 0, 0)
            sim.step(world)
            local d = sim.delta(before, world)
            assert.same({ 0, 0 }, { d.moved.p1.vx, d.moved.p1.vy })
            before = sim.snapshot(world)
            sim.step(world)
            assert.is_true(sim.is_empty(sim.delta(before, world)))
        end)

        it("list new players in added, in full and in join order", function()
            local world = world_with("a")
            local before = sim.snapshot(world)
            assert(sim.add_player(world, "p2", "b"))
            assert(sim.add_player(world, "p3", "c"))
            sim.step(world)
            local d = sim.delta(before, world)
            assert.equal(2, #d.added)
            assert.same({ "p2", "p3" }, { d.added[1].id, d.added[2].id })
            local p = world.players.p2
            assert.same({ id = "p2", name = "b", x = p.x, y = p.y, vx = 0, vy = 0,
                          color = p.color }, d.added[1])
            assert.is_nil(d.moved.p2)
            assert.equal(0, count_keys(d.moved))
        end)

        it("list players gone since prev in removed, and nowhere else", function()
            local world = world_with("a", "b", "c")
            sim.set_input(world, "p3", 1, 0)
            local before = sim.snapshot(world)
            sim.remove_player(world, "p1")
            sim.remove_player(world, "p3")
            sim.step(world)
            local d = sim.delta(before, world)
            assert.same({ "p1", "p3" }, d.removed)
            assert.equal(0, count_keys(d.moved))
            assert.same({}, d.added)
        end)

        it("from nil (no prev) add everyone", function()
            local world = world_with("a", "b")
            local d = sim.delta(nil, world)
            assert.equal(2, #d.added)
            assert.same({}, d.removed)
        end)

        it("a player who joins and leaves between two deltas never shows", function()
            local world = world_with("a")
            local before = sim.snapshot(world)
            assert(sim.add_player(world, "p2", "b"))
            sim.remove_player(world, "p2")
            sim.step(world)
            assert.is_true(sim.is_empty(sim.delta(before, world)))
        end)

        it("snapshots are copies: stepping does not change an earlier one", function()
            local world = world_with("a")
            local snap = sim.snapshot(world)
            local x = snap.players[1].x
            sim.set_input(world, "p1", 1, 0)
            steps(world, 2)
            assert.equal(x, snap.players[1].x)
            assert.equal(0, snap.tick)
        end)

        it("snapshots hold no input, only what clients see", function()
            local world = world_with("a")
            sim.set_input(world, "p1", 1, 1)
            local p = sim.snapshot(world).players[1]
            assert.is_nil(p.dx)
            assert.is_nil(p.dy)
        end)
    end)

    describe("replay", function()
        it("applying every delta from the start gives the late joiner's snapshot", function()
            local world, first, deltas = run(SCRIPT, 20)
            local state = first
            for _, d in ipairs(deltas) do state = sim.apply(state, d) end
            assert.same(sim.snapshot(world), state)
        end)

        it("holds at every tick, not only at the end", function()
            for ticks = 1, 20 do
                local world, first, deltas = run(SCRIPT, ticks)
                local state = first
                for _, d in ipairs(deltas) do state = sim.apply(state, d) end
                assert.same(sim.snapshot(world), state, "after " .. ticks .. " ticks")
            end
        end)

        it("a snapshot taken between ticks plus the following deltas catches up", function()
            -- What the app does for a late joiner: snapshot at join time (after the join, before
            -- the next tick), then every delta made from the previous tick's snapshot.
            local world = world_with("a", "b")
            sim.set_input(world, "p1", 1, 0)
            sim.step(world)
            local last = sim.snapshot(world)
            assert(sim.add_player(world, "p3", "late"))
            sim.remove_player(world, "p2")
            local joiner = sim.snapshot(world)
            for _ = 1, 5 do
                sim.step(world)
                joiner = sim.apply(joiner, sim.delta(last, world))
                last = sim.snapshot(world)
            end
            assert.same(sim.snapshot(world), joiner)
        end)

        it("applying the same delta twice changes nothing more", function()
            local _, first, deltas = run(SCRIPT, 14)
            local state = first
            for _, d in ipairs(deltas) do state = sim.apply(sim.apply(state, d), d) end
            local once = first
            for _, d in ipairs(deltas) do once = sim.apply(once, d) end
            assert.same(once, state)
        end)

        it("apply leaves its input snapshot alone", function()
            local _, first, deltas = run(SCRIPT, 6)
            local copy = sim.apply(first, { tick = 0 })
            sim.apply(first, deltas[1])
            assert.same(copy, first)
        end)
    end)

    describe("live tuning", function()
        it("sim.tuning is this file's constants; sim.retune gives a running world new ones",
            function()
                assert.same({ speed = sim.SPEED }, sim.tuning())
                local world = world_with("a")
                local p = world.players.p1
                local x0 = p.x
                sim.set_input(world, "p1", 1, 0)
                sim.step(world)
                assert.same({}, sim.retune(world, { speed = sim.SPEED }), "nothing changed")
                assert.same({ "speed " .. sim.SPEED .. " -> 9" }, sim.retune(world, { speed = 9 }))
                sim.step(world)
                assert.same({ x0 + sim.SPEED + 9, 9 }, { p.x, p.vx })
                assert.same({}, sim.retune(world, {}), "a field left out keeps its value")
                assert.equal(9, world.speed)
                assert.same({ "speed 9 -> 3" }, sim.retune(world, { speed = 3.0 }))
                assert.equal(math.type(3), math.type(world.speed), "kept an integer")
            end)

        it("sim.retune refuses a speed that is not an integer >= 0, changing nothing", function()
            local world = world_with("a")
            for _, bad in ipairs { -1, 2.5, "7", true } do
                local ok, err = pcall(sim.retune, world, { speed = bad })
                assert.is_false(ok)
                assert.matches("speed must be an integer >= 0", err)
                assert.equal(sim.SPEED, world.speed)
            end
        end)
    end)

    describe("determinism", function()
        it("the same joins and inputs give the same state at every tick", function()
            local a, b = run(SCRIPT, 25), run(SCRIPT, 25)
            assert.same(sim.snapshot(a), sim.snapshot(b))
            local _, _, da = run(SCRIPT, 25)
            local _, _, db = run(SCRIPT, 25)
            assert.same(da, db)
        end)

        it("players move independently of one another", function()
            local world = run(SCRIPT, 20)
            local alone = run({ [0] = { join = { "a" }, input = { a = { 1, 0 } } },
                                [3] = { input = { a = { 1, 1 } } },
                                [9] = { input = { a = { 0, 0 } } } }, 20)
            -- a joined first in both, so it spawned at the same point and made the same moves.
            assert.same(player(sim.snapshot(alone), "a"), player(sim.snapshot(world), "a"))
        end)

        it("a different input gives a different state", function()
            local script = {}
            for k, v in pairs(SCRIPT) do script[k] = v end
            script[3] = { input = { a = { -1, 0 } } }
            assert.are_not.same(sim.snapshot(run(SCRIPT, 10)), sim.snapshot(run(script, 10)))
        end)
    end)
end)
