-- The game example (examples/game/app.lua) in the real runtime: joins, inputs, the 20 Hz tick
-- on the virtual clock, deltas, leaving, the full arena, a late joiner's view, and a hot
-- reload with the match running.
--   build/moonwire test examples/game/spec
local t = require "moonwire.test"

-- The simulation itself, as plain Lua, for its constants and for applying deltas.
local APP = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/.."
package.path = APP .. "/?.lua;" .. package.path
local sim = require "sim"

local TICK_MS = 50

local server

before_each(function()
    server = t.start(APP)
end)

after_each(function()
    server:stop()
end)

local function inbox(client)
    local out = {}
    for _, text in ipairs(client:receive_all()) do out[#out + 1] = t.json.decode(text) end
    return out
end

local function of_type(messages, type_name)
    local out = {}
    for _, m in ipairs(messages) do
        if m.type == type_name then out[#out + 1] = m end
    end
    return out
end

-- A client that joined as name; returns it (client.id: its player id) and its snapshot.
local function player(name)
    local client = assert(server:connect())
    client:send_json { type = "join", name = name }
    local snap = client:receive_json()
    assert(snap and snap.type == "snapshot", "no snapshot for " .. name)
    client.id = snap.you
    return client, snap
end

local function keys(map)
    local out = {}
    for k in pairs(map or {}) do out[#out + 1] = k end
    table.sort(out)
    return out
end

describe("game app", function()
    it("a joiner gets a full snapshot with its own id", function()
        local _, snap = player("  ada ")
        assert.is_string(snap.you)
        assert.same({ 20, 800, 600, 12, 0 },
                    { snap.tick_rate, snap.width, snap.height, snap.radius, snap.tick })
        assert.equal(1, #snap.players)
        assert.same({ id = snap.you, name = "ada", x = snap.players[1].x, y = snap.players[1].y,
                      vx = 0, vy = 0, color = sim.COLORS[1] }, snap.players[1])
    end)

    it("refuses bad names and a second join", function()
        local c = server:connect()
        c:send_json { type = "join", name = "   " }
        assert.same({ { type = "error", error = "name is empty" } }, inbox(c))
        c:send_json { type = "join", name = string.rep("n", 17) }
        assert.equal("error", inbox(c)[1].type)
        c:send_json { type = "join", name = "ok" }
        inbox(c)
        c:send_json { type = "join", name = "ok" }
        assert.same({ { type = "error", error = "you are already playing" } }, inbox(c))
    end)

    it("each tick with changes sends exactly one delta to every player", function()
        local a = player("ada")
        server:advance(TICK_MS)
        inbox(a)
        local b = player("bo")
        a:send_json { type = "input", dx = 1, dy = 0, seq = 1 }
        server:advance(5 * TICK_MS)
        local da, db = inbox(a), inbox(b)
        assert.same(da, db)
        assert.equal(5, #da)
        -- The first delta also adds bo, who joined after the last tick; later ones only move ada.
        assert.equal(1, #da[1].added)
        assert.equal(b.id, da[1].added[1].id)
        for i = 2, 5 do
            assert.is_nil(da[i].added)
            assert.is_nil(da[i].removed)
            assert.same({ a.id }, keys(da[i].moved))
            assert.equal(sim.SPEED, da[i].moved[a.id].vx)
        end
    end)

    it("an idle match sends an empty delta only once a second", function()
        local a = player("ada")
        server:advance(TICK_MS) -- the tick that adds ada for everyone
        inbox(a)
        server:advance(40 * TICK_MS)
        local got = inbox(a)
        assert.equal(2, #got)
        for _, d in ipairs(got) do
            assert.equal(0, d.tick % 20)
            assert.is_nil(d.moved)
        end
    end)

    it("validates inputs, and a refused one moves nobody", function()
        local outsider = server:connect()
        outsider:send_json { type = "input", dx = 1, dy = 0 }
        assert.same({ { type = "error", error = "join first" } }, inbox(outsider))
        local a = player("ada")
        server:advance(TICK_MS)
        inbox(a)
        local cases = {
            { dx = 2, dy = 0, err = "dx and dy must be -1, 0 or 1" },
            { dx = 0.5, dy = 0, err = "dx and dy must be -1, 0 or 1" },
            { dx = "1", dy = 0, err = "field 'dx' must be a number" },
            { dy = 0, err = "missing field 'dx'" },
            { dx = 1, dy = 0, seq = -1, err = "seq must be an integer >= 0" },
            { dx = 1, dy = 0, seq = 1.5, err = "seq must be an integer >= 0" },
        }
        for _, case in ipairs(cases) do
            a:send_json { type = "input", dx = case.dx, dy = case.dy, seq = case.seq }
            assert.same({ { type = "error", error = case.err } }, inbox(a))
        end
        server:advance(TICK_MS)
        assert.same({}, inbox(a)) -- nothing moved: no delta before the idle one
    end)

    it("ignores an input whose seq is not above the last one", function()
        local a = player("ada")
        server:advance(TICK_MS)
        inbox(a)
        a:send_json { type = "input", dx = 1, dy = 0, seq = 5 }
        a:send_json { type = "input", dx = -1, dy = 0, seq = 5 }
        a:send_json { type = "input", dx = 0, dy = 1, seq = 3 }
        assert.same({}, inbox(a))
        server:advance(TICK_MS)
        local moved = inbox(a)[1].moved[a.id]
        assert.same({ sim.SPEED, 0 }, { moved.vx, moved.vy })
        a:send_json { type = "input", dx = 0, dy = 1, seq = 6 }
        server:advance(TICK_MS)
        moved = inbox(a)[1].moved[a.id]
        assert.same({ 0, sim.SPEED }, { moved.vx, moved.vy })
    end)

    it("leave and disconnect show up in the next delta's removed", function()
        local a, b, c = player("ada"), player("bo"), player("cy")
        server:advance(TICK_MS)
        inbox(a)
        inbox(b)
        b:send_json { type = "leave" }
        assert.same({ { type = "left" } }, inbox(b))
        c:close(1001)
        server:advance(TICK_MS)
        local got = inbox(a)
        assert.equal(1, #got)
        table.sort(got[1].removed)
        local want = { b.id, c.id }
        table.sort(want)
        assert.same(want, got[1].removed)
        assert.same({}, inbox(b)) -- no longer a member: no more deltas
    end)

    it("the arena holds 16 players", function()
        for i = 1, 16 do player("p" .. i) end
        local late = server:connect()
        late:send_json { type = "join", name = "late" }
        assert.same({ { type = "error", error = "the arena is full (16 players)" } }, inbox(late))
    end)

    it("the match closes when the last player leaves, and a new one starts at tick 0", function()
        local a = player("ada")
        server:advance(10 * TICK_MS)
        inbox(a)
        a:send_json { type = "leave" }
        server:advance(10 * TICK_MS)
        assert.same({ { type = "left" } }, inbox(a))
        local _, snap = player("bo")
        assert.equal(0, snap.tick)
    end)

    it("a late joiner's snapshot plus the deltas it gets equals the server's world", function()
        local a, b = player("ada"), player("bo")
        a:send_json { type = "input", dx = 1, dy = 1, seq = 1 }
        b:send_json { type = "input", dx = -1, dy = 0, seq = 1 }
        server:advance(7 * TICK_MS)
        local late, state = player("late")
        late:send_json { type = "input", dx = 0, dy = -1, seq = 1 }
        b:send_json { type = "leave" }
        server:advance(3 * TICK_MS)
        a:send_json { type = "input", dx = 0, dy = 0, seq = 2 }
        server:advance(12 * TICK_MS)
        for _, d in ipairs(of_type(inbox(late), "delta")) do state = sim.apply(state, d) end
        -- The truth: the snapshot a new player gets now, less that player.
        local _, truth = player("judge")
        local players = {}
        for _, p in ipairs(truth.players) do
            if p.id ~= truth.you then players[#players + 1] = p end
        end
        assert.same(players, state.players)
        assert.equal(truth.tick, state.tick)
    end)

    it("a hot reload keeps the world and the tick loop runs on with the new code", function()
        local a = player("ada")
        a:send_json { type = "input", dx = 1, dy = 0, seq = 1 }
        server:advance(4 * TICK_MS)
        local last = inbox(a)
        local x, tick = last[#last].moved[a.id].x, last[#last].tick
        server:reload()
        assert.truthy(server:logged("reloaded"))
        server:advance(2 * TICK_MS)
        local got = inbox(a)
        assert.equal(2, #got)
        assert.equal(tick + 2, got[2].tick)
        assert.equal(x + 2 * sim.SPEED, got[2].moved[a.id].x)
        a:send_json { type = "input", dx = 0, dy = 0, seq = 2 }
        assert.same({}, inbox(a))
    end)
end)
