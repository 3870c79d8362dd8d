-- Game: authoritative state sync. The server runs the simulation (sim.lua) 20 times a second in
-- one match room; clients send inputs and draw what the server says. Page: public/index.html.
--   build/moonwire examples/game
--
-- Protocol: JSON text messages, each an object with a "type". Player ids are strings.
--
-- client -> server
--   {"type":"join","name":"ada"}
--       name: 1-16 characters once trimmed, no control characters. Answered by snapshot, or an
--       error (e.g. the arena is full: 16 players).
--   {"type":"input","dx":1,"dy":0,"seq":12}
--       dx, dy: -1, 0 or 1 (left/up is -1); held until the next input. seq (optional): an
--       integer >= 0 that grows with each input; an input whose seq is not above the last one
--       is ignored. Send it when the keys change, not every frame.
--   {"type":"leave"}
--       Answered by left. Closing the connection leaves too.
--
-- server -> client
--   {"type":"snapshot","you":"7","tick_rate":20,"tick":118,"width":800,"height":600,
--    "radius":12,"players":[{"id":"7","name":"ada","x":80,"y":75,"vx":0,"vy":0,
--    "color":"#e6194b"}]}
--       The whole state, sent to a player on joining; players in join order. x, y: the centre
--       in pixels (integers; y grows downwards; players are discs of the given radius kept
--       inside the arena); vx, vy: the movement of the last tick.
--   {"type":"delta","tick":119,"moved":{"7":{"x":85,"y":75,"vx":5,"vy":0}},
--    "added":[{...a player as in snapshot...}],"removed":["4"]}
--       What changed since the previous delta, the same message for everyone in the match.
--       Fields with nothing to say are left out; a delta with no changes is sent only once a
--       second (so the tick shown keeps moving). Apply in this order: removed, added, moved;
--       applying is idempotent (a player already present is replaced, unknown ids ignored),
--       which is what lets a player who just joined apply the next delta to its snapshot.
--   {"type":"left"}
--   {"type":"error","error":"reason"}

local rooms = require "moonwire.rooms"
local router = require "moonwire.router"
local sim = require "sim"

local ipairs, next, tostring, type = ipairs, next, tostring, type
local mw, table_concat = mw, table.concat
local find, reverse, sub = string.find, string.reverse, string.sub
local utf8_len, utf8_codes, tointeger = utf8.len, utf8.codes, math.tointeger

-- Every player in one Lua state, also with --workers N: the matches live in mw.state.
local app = { workers = 1 }

local KIND = "match"
local MATCH = "arena"           -- the one default match everybody joins
local TICK_RATE = 20
local MAX_PLAYERS = 16
local MAX_NAME = 16

-- ---- helpers ---------------------------------------------------------------------------------

-- Replies with an error. Returns nothing, so `return fail(...)` in a handler does not make the
-- router send a second error (it does for a handler returning nil, "reason").
local function fail(conn, reason)
    router.send(conn, "error", { error = reason })
end

-- Strings, so that lua-cjson writes delta.moved as a JSON object keyed by id (integer keys
-- would make it try an array).
local function player_id(conn)
    return tostring(conn.id)
end

-- Trimmed with two plain searches: a pattern with "%s*$" would backtrack over inner spaces.
local function clean_name(s)
    if type(s) ~= "string" or #s > 4 * MAX_NAME then return nil, "name is too long" end
    local first = find(s, "%S")
    if not first then return nil, "name is empty" end
    s = sub(s, first, #s - find(reverse(s), "%S") + 1)
    local n = utf8_len(s)
    if not n then return nil, "name is not valid UTF-8" end
    if n > MAX_NAME then return nil, "name is too long (at most " .. MAX_NAME .. " characters)" end
    for _, c in utf8_codes(s) do
        -- Controls, and the bidi and line-separator code points that would disturb how the
        -- other names are drawn.
        if c < 0x20 or (c >= 0x7F and c <= 0x9F) or (c >= 0x202A and c <= 0x202E)
                or (c >= 0x2066 and c <= 0x2069) or c == 0x2028 or c == 0x2029 then
            return nil, "name contains control characters"
        end
    end
    return s
end

-- The match conn plays in, or nil.
local function match_of(conn)
    local room = rooms.get(MATCH)
    if room and room.kind == KIND and room:has(conn) then return room end
    return nil
end

-- Empty parts are left out: smaller, and lua-cjson would write an empty list as {} anyway.
local function encode_delta(delta)
    return router.encode("delta", {
        tick = delta.tick,
        moved = next(delta.moved) ~= nil and delta.moved or nil,
        added = #delta.added > 0 and delta.added or nil,
        removed = #delta.removed > 0 and delta.removed or nil,
    })
end

-- ---- the match -------------------------------------------------------------------------------

-- room.state holds the world and the snapshot the last delta brought clients to. Both are plain
-- data, so a hot reload keeps the match running with the new code (and app.reload, at the end,
-- gives it sim.lua's new tuning).
rooms.define(KIND, {
    tick_rate = TICK_RATE,
    max_members = MAX_PLAYERS,

    init = function(room)
        if not room.state then room.state = {} end
        room.state.world = sim.new()
        room.state.last = sim.snapshot(room.state.world)
    end,

    -- The player enters the world now and reaches the others in the next delta's added.
    join = function(room, conn, info)
        local ok, err = sim.add_player(room.state.world, player_id(conn), info.name)
        if not ok then return false, err end
        return true
    end,

    -- Whatever the reason (left, closed, kicked, room destroyed), the next delta removes it.
    leave = function(room, conn)
        sim.remove_player(room.state.world, player_id(conn))
    end,

    -- input was validated by the input handler.
    message = function(room, conn, input)
        sim.set_input(room.state.world, player_id(conn), input.dx, input.dy)
    end,

    -- One delta per tick, encoded once and fanned out by the C core to every member.
    tick = function(room)
        local state = room.state
        sim.step(state.world)
        local delta = sim.delta(state.last, state.world)
        state.last = sim.snapshot(state.world)
        if sim.is_empty(delta) and delta.tick % TICK_RATE ~= 0 then return end
        room:broadcast(encode_delta(delta))
    end,
})

-- ---- requests --------------------------------------------------------------------------------

local requests = router.new()

requests:on("join", function(conn, msg)
    if match_of(conn) then return fail(conn, "you are already playing") end
    local name, err = clean_name(msg.name)
    if not name then return fail(conn, err) end
    local room, why = rooms.find_or_create(KIND, MATCH)
    local ok = false
    if room then ok, why = room:join(conn, { name = name }) end
    if not ok then
        if why == "full" then why = "the arena is full (" .. MAX_PLAYERS .. " players)" end
        return fail(conn, tostring(why))
    end
    local snapshot = sim.snapshot(room.state.world)
    router.send(conn, "snapshot", {
        you = player_id(conn), tick_rate = TICK_RATE, tick = snapshot.tick,
        width = snapshot.width, height = snapshot.height, radius = snapshot.radius,
        players = snapshot.players,
    })
end, { name = "string" })

requests:on("input", function(conn, msg)
    local room = match_of(conn)
    if not room then return fail(conn, "join first") end
    local dx, dy = tointeger(msg.dx), tointeger(msg.dy)
    if not (dx and dy and dx >= -1 and dx <= 1 and dy >= -1 and dy <= 1) then
        return fail(conn, "dx and dy must be -1, 0 or 1")
    end
    if msg.seq ~= nil then
        local seq = tointeger(msg.seq)
        if not seq or seq < 0 then return fail(conn, "seq must be an integer >= 0") end
        -- A stale or repeated input must not undo a newer one.
        local last = conn.data.seq
        if last and seq <= last then return end
        conn.data.seq = seq
    end
    room:deliver(conn, { dx = dx, dy = dy })
end, { dx = "number", dy = "number", ["seq?"] = "number" })

requests:on("leave", function(conn)
    local room = match_of(conn)
    if not room then return fail(conn, "you are not playing") end
    room:leave(conn, "left")
    router.send(conn, "left", {})
end)

-- ---- handlers --------------------------------------------------------------------------------

-- The page talks through moonwire.js, over moonwire.v1 (docs/protocol.md): defining
-- app.subscribe turns it on. Joining a match subscribes the connection here; subscribes from
-- clients are refused.
function app.subscribe()
    return false, "join a match with a join message"
end

function app.message(conn, data, is_binary)
    if is_binary then return fail(conn, "binary messages are not supported") end
    requests:dispatch(conn, data)
end

function app.close(conn)
    rooms.leave_all(conn, "closed")
end

-- Live tuning. A hot reload keeps every match running (its world is plain data in room.state)
-- but a world holds its own copy of the tuning it started with, so editing sim.lua's constants
-- alone would only reach matches started afterwards. app.reload runs in the new code, with the
-- new sim.lua already loaded: it hands every running match the new tuning, between two ticks.
-- Try it: `build/moonwire --watch examples/game`, play, change M.SPEED in sim.lua, save.
function app.reload()
    for _, room in ipairs(rooms.list(KIND)) do
        local changes = sim.retune(room.state.world, sim.tuning())
        if #changes > 0 then
            mw.log("info", "match " .. room.id .. " retuned: " .. table_concat(changes, ", "))
        end
    end
end

return app
