-- The game example's simulation: players moving on a fixed arena, one fixed step per tick.
-- Pure and deterministic (no mw, no clock, no randomness, integer arithmetic only): the same
-- joins and inputs give the same states, so the server owns the truth and tests can replay it.
--
-- A world is plain data (no metatables, no functions), so it can live in room.state across hot
-- reloads and the reloaded code keeps working on it. Player ids are opaque keys chosen by the
-- caller (the app uses strings, which JSON keeps as object keys); they must never be reused.
local M = {}

local ipairs, pairs, next, tostring, type = ipairs, pairs, next, tostring, type
local max, min, tointeger, table_remove = math.max, math.min, math.tointeger, table.remove

M.WIDTH = 800
M.HEIGHT = 600
M.RADIUS = 12      -- players are discs; their centres stay this far from the walls
-- Tuning: a running match takes these up at the next hot reload (sim.retune, called by app.lua's
-- app.reload), so a game can be tuned live: edit, save, `kill -HUP` (or run with --watch).
M.SPEED = 5        -- pixels per tick along each axis (100 px/s at 20 ticks per second)

-- Distinct on dark and light backgrounds; given out in join order.
M.COLORS = {
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
    "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff",
}

-- Spawn points: the centres of a 5 x 4 grid over the arena. Consecutive joiners take every 7th
-- cell (7 and 20 are coprime, so all 20 are used before any repeats) to land far apart; later
-- rounds shift by a diameter so that nobody spawns exactly on top of an earlier player.
local GRID_COLS, GRID_ROWS = 5, 4
local GRID_STRIDE = 7

-- ---- worlds and players ----------------------------------------------------------------------

-- options: width, height, speed, radius (integers; defaults above). They are stored in the
-- world (plain data, kept across reloads). A reload changes the tuning of a world already
-- running only through sim.retune; the arena's size and the radius stay what clients were told
-- in their snapshot.
function M.new(options)
    options = options or {}
    return {
        tick = 0,
        width = options.width or M.WIDTH,
        height = options.height or M.HEIGHT,
        speed = options.speed or M.SPEED,
        radius = options.radius or M.RADIUS,
        joins = 0,        -- players ever added: the join number of the next one, minus one
        players = {},     -- id -> player
        order = {},       -- ids in join order: every walk over players uses it, for determinism
    }
end

local function clamp(v, lo, hi)
    return max(lo, min(hi, v))
end

-- Where the n-th player to join (1-based) appears.
function M.spawn_point(world, n)
    local cells = GRID_COLS * GRID_ROWS
    local cell = ((n - 1) * GRID_STRIDE) % cells
    local round = (n - 1) // cells
    local cell_w, cell_h = world.width // GRID_COLS, world.height // GRID_ROWS
    local shift = (round % 4) * 2 * world.radius
    local r = world.radius
    local x = (cell % GRID_COLS) * cell_w + cell_w // 2 + shift
    local y = (cell // GRID_COLS) * cell_h + cell_h // 2 + shift
    return clamp(x, r, world.width - r), clamp(y, r, world.height - r)
end

-- Adds a player, standing still at its spawn point. Returns the player, or nil, reason.
function M.add_player(world, id, name)
    if id == nil then error("sim.add_player: id is nil", 2) end
    if world.players[id] then return nil, "already playing" end
    world.joins = world.joins + 1
    local n = world.joins
    local x, y = M.spawn_point(world, n)
    local player = {
        id = id, name = name, x = x, y = y, vx = 0, vy = 0,
        color = M.COLORS[(n - 1) % #M.COLORS + 1],
        dx = 0, dy = 0,   -- the input: not part of snapshots, clients only see its effect
    }
    world.players[id] = player
    world.order[#world.order + 1] = id
    return player
end

-- Returns true, or false when there was no such player.
function M.remove_player(world, id)
    if not world.players[id] then return false end
    world.players[id] = nil
    local order = world.order
    for i = 1, #order do
        if order[i] == id then
            table_remove(order, i)
            break
        end
    end
    return true
end

-- -1, 0 or 1 as an integer (JSON numbers may arrive as floats), else nil.
local function axis(v)
    v = type(v) == "number" and tointeger(v) or nil
    if v == -1 or v == 0 or v == 1 then return v end
    return nil
end

-- Sets the direction a player moves in from the next step on, until changed.
-- Returns true, or nil, reason.
function M.set_input(world, id, dx, dy)
    local player = world.players[id]
    if not player then return nil, "no such player" end
    dx, dy = axis(dx), axis(dy)
    if not dx or not dy then return nil, "dx and dy must be -1, 0 or 1" end
    player.dx, player.dy = dx, dy
    return true
end

-- ---- live tuning -----------------------------------------------------------------------------

-- The world fields a running match may change, each from the constant of this file above.
local TUNABLE = { { "speed", "SPEED" } }

-- The tuning this version of the file sets: { speed = M.SPEED }.
function M.tuning()
    local tuning = {}
    for _, t in ipairs(TUNABLE) do tuning[t[1]] = M[t[2]] end
    return tuning
end

-- Gives a running world new tuning (fields left out keep their value). Returns the changes as
-- text, in TUNABLE's order ({ "speed 5 -> 7" }), empty when nothing changed. Raises before
-- changing anything on a value that is not an integer >= 0: the step uses integers only.
function M.retune(world, tuning)
    for _, t in ipairs(TUNABLE) do
        local v = tuning[t[1]]
        if v ~= nil and not (type(v) == "number" and tointeger(v) and v >= 0) then
            error("sim.retune: " .. t[1] .. " must be an integer >= 0, not " .. tostring(v)
                .. " (check M." .. t[2] .. " in sim.lua)", 2)
        end
    end
    local changes = {}
    for _, t in ipairs(TUNABLE) do
        local field = t[1]
        local v = tuning[field]
        if v ~= nil then v = tointeger(v) end
        if v ~= nil and v ~= world[field] then
            changes[#changes + 1] = field .. " " .. tostring(world[field]) .. " -> " .. v
            world[field] = v
        end
    end
    return changes
end

-- ---- the step --------------------------------------------------------------------------------

-- Advances the world one tick: each player moves speed pixels along each axis it pushes on
-- (so diagonals are faster, as in many arcade games; it keeps every coordinate an integer),
-- then is clamped to the arena. vx, vy record the movement actually made, so a player pushing
-- into a wall reads as still and drops out of the deltas.
function M.step(world)
    local speed, r = world.speed, world.radius
    local right, bottom = world.width - r, world.height - r
    for _, id in ipairs(world.order) do
        local p = world.players[id]
        local x = clamp(p.x + p.dx * speed, r, right)
        local y = clamp(p.y + p.dy * speed, r, bottom)
        p.vx, p.vy = x - p.x, y - p.y
        p.x, p.y = x, y
    end
    world.tick = world.tick + 1
end

-- ---- what clients see ------------------------------------------------------------------------

local function public(p)
    return { id = p.id, name = p.name, x = p.x, y = p.y, vx = p.vx, vy = p.vy, color = p.color }
end

-- The full state a client needs: { tick, width, height, radius, players = { player... } } with
-- players in join order. A fresh table: later steps do not change it.
function M.snapshot(world)
    local players = {}
    for i, id in ipairs(world.order) do players[i] = public(world.players[id]) end
    return { tick = world.tick, width = world.width, height = world.height,
             radius = world.radius, players = players }
end

-- What changed since prev (a snapshot; nil means "nothing yet"):
--   { tick, moved = { [id] = { x, y, vx, vy } }, added = { player... }, removed = { id... } }
-- moved: players in both whose position or velocity changed (unchanged players are left out);
-- added: full players, in join order; removed: ids, in prev's order.
function M.delta(prev, world)
    local before = {}
    local prev_players = prev and prev.players or {}
    for _, p in ipairs(prev_players) do before[p.id] = p end
    local moved, added, removed = {}, {}, {}
    for _, id in ipairs(world.order) do
        local p, old = world.players[id], before[id]
        if not old then
            added[#added + 1] = public(p)
        elseif old.x ~= p.x or old.y ~= p.y or old.vx ~= p.vx or old.vy ~= p.vy then
            moved[id] = { x = p.x, y = p.y, vx = p.vx, vy = p.vy }
        end
    end
    for _, p in ipairs(prev_players) do
        if not world.players[p.id] then removed[#removed + 1] = p.id end
    end
    return { tick = world.tick, moved = moved, added = added, removed = removed }
end

function M.is_empty(delta)
    return next(delta.moved) == nil and #delta.added == 0 and #delta.removed == 0
end

-- Applies a delta to a snapshot and returns the new snapshot (the input is not changed): what
-- a client does, written once here so the specs can check it. Idempotent on purpose: a late
-- joiner's snapshot may already hold players the next delta adds, or lack ones it removes.
function M.apply(snapshot, delta)
    local gone = {}
    for _, id in ipairs(delta.removed or {}) do gone[id] = true end
    local players, by_id = {}, {}
    for _, p in ipairs(snapshot.players) do
        if not gone[p.id] then
            local copy = public(p)
            players[#players + 1] = copy
            by_id[copy.id] = copy
        end
    end
    for _, p in ipairs(delta.added or {}) do
        local copy = public(p)
        local at = by_id[p.id]
        if at then
            for i = 1, #players do
                if players[i] == at then players[i] = copy end
            end
        else
            players[#players + 1] = copy
        end
        by_id[p.id] = copy
    end
    for id, m in pairs(delta.moved or {}) do
        local p = by_id[id]
        if p then p.x, p.y, p.vx, p.vy = m.x, m.y, m.vx, m.vy end
    end
    return { tick = delta.tick, width = snapshot.width, height = snapshot.height,
             radius = snapshot.radius, players = players }
end

return M
