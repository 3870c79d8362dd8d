-- Rooms (matches, lobbies) for moonwire apps: members in join order, one pub/sub topic per room
-- for broadcasts, and an optional fixed-rate tick loop. Room records live in mw.state so they
-- survive a hot reload; callbacks are looked up by kind from the code that is running now.
--
-- How a hot reload plays out: the server re-runs app.lua in a fresh environment, so this file is
-- loaded again with empty module-level tables, while mw.state (and so every room, its state and
-- its members) is kept. The app's main chunk calls rooms.define again, and once the new code has
-- loaded successfully (mw.after_load) a kind's existing rooms are handed over to it: their
-- metatable is set to this version's methods and their tick loop is restarted with the new
-- callbacks (the server has cancelled the old version's timers by then). If the new code fails
-- to load, the hand-over never happens and the rooms tick on with the old code. A tick timer only
-- ever ticks a room while it is the room's current timer, so a room never ticks twice per period
-- even if some cancel was missed.
--
-- Decisions where the contract (issue 3) left room:
--   * Room ids are non-empty strings (rooms.get(42) and rooms.get("42") would otherwise differ).
--   * create passes `options or {}` to init. init runs before the room is registered (rooms.get
--     does not see it yet); if init raises, create raises and no room exists.
--   * The join callback runs before the conn is added: it is a gate. It refuses by returning
--     false (or nil) plus a reason; during it the joiner is not in room:members() and does not
--     get room:broadcast (greet it with room:send). Everything is checked again after it.
--   * More reasons: join -> nil, "closed" (the conn is closed), nil, "destroyed" (the room is);
--     deliver -> nil, "not a member" | nil, "destroyed"; find_or_create -> nil, "wrong kind"
--     when the id is taken by a room of another kind.
--   * A member whose connection closed stays on the books until room:leave/rooms.leave_all
--     (so its leave callback still runs): has() is true for it, but members(), size(), the
--     max_members check and auto_close only count open connections.
--   * room:send works for any conn (member or not); deliver ignores what the message callback
--     returns. Internals are _fields of the room table (_members, _order, _timer, _destroyed):
--     apps must leave them alone, and a room is not JSON-encodable (it holds conns).
--   * auto_close destroys a room when its last open member leaves; a room nobody ever joined
--     stays until destroyed.
--   * A kind the new code does not define again keeps its rooms (get/list see them) but they
--     do not tick, and their methods run the last definition they had.
--   * define rejects unknown fields (typos like tickrate) and tick_rate above 1000 (mw.every
--     needs ms >= 1).
--   * rooms.list and rooms.of sort by id with plain string order ("m-10" < "m-2").
--   * Rooms created while a reload's main chunk runs belong to the new code at once; if that
--     chunk then fails, they stay in mw.state without a tick loop until defined again.

local mw = require "moonwire"

local error, type, pairs, ipairs, next, tostring, setmetatable =
    error, type, pairs, ipairs, next, tostring, setmetatable
local sort, remove = table.sort, table.remove
local floor, huge = math.floor, math.huge

local M = {}

local STATE_KEY = "moonwire.rooms"
local FORMAT = 1 -- bump if the shape of the records below changes

-- What define accepts: field -> Lua type.
local FIELDS = {
    tick_rate = "number", max_members = "number", auto_close = "boolean",
    init = "function", join = "function", leave = "function", message = "function",
    tick = "function", close = "function",
}

-- This version's definitions, kind -> normalized copy of what define was given. Module-level on
-- purpose: a reload starts it empty, so only the new code's callbacks can be found.
local defs = {}

local Room = {}
local room_meta = {
    __index = Room,
    __tostring = function(room) return "room " .. room.id .. " (" .. room.kind .. ")" end,
}

-- The shared records, in mw.state:
--   rooms    id -> room (the room table the app holds; internals are its _fields)
--   counters kind -> last number used for a default id (kept so ids are never reused)
--   by_conn  conn id -> { room id -> true }, so rooms.of/leave_all need not scan every room
-- A room holds id, kind, state, tick, and _members (conn id -> conn), _order (conn ids in join
-- order), _timer (its tick timer or nil), _destroyed.
local function store()
    local s = mw.state[STATE_KEY]
    if s == nil then
        s = { format = FORMAT, rooms = {}, counters = {}, by_conn = {} }
        mw.state[STATE_KEY] = s
    elseif type(s) ~= "table" or s.format ~= FORMAT then
        error("moonwire.rooms: mw.state['" .. STATE_KEY .. "'] holds something else", 3)
    end
    return s
end

local function by_id(a, b) return a.id < b.id end

local function topic_of(room) return "room:" .. room.id end

local function is_open(conn) return conn.open ~= false end

-- Raises unless conn looks like a moonwire conn (userdata in the server, tables in specs).
local function check_conn(conn, where)
    local t = type(conn)
    if (t ~= "userdata" and t ~= "table") or type(conn.id) ~= "number" then
        error(where .. ": expected a conn, got " .. t, 3)
    end
end

local function check_reason(reason, where)
    if reason ~= nil and type(reason) ~= "string" then
        error(where .. ": reason must be a string or nil", 3)
    end
end

-- The definition this version has for room's kind; raises if it has none.
local function def_of(room)
    local def = defs[room.kind]
    if not def then
        error("moonwire.rooms: kind '" .. tostring(room.kind) .. "' is not defined (call "
              .. "rooms.define before using its rooms)", 3)
    end
    return def
end

local function open_count(room)
    local n, members = 0, room._members
    for _, cid in ipairs(room._order) do
        if is_open(members[cid]) then n = n + 1 end
    end
    return n
end

-- Takes conn off room's books: members, order, the by-conn index and the room's topic. No user
-- code runs here, so the records are consistent before any callback sees them.
local function remove_member(room, conn)
    local cid = conn.id
    room._members[cid] = nil
    local order = room._order
    for i = 1, #order do
        if order[i] == cid then
            remove(order, i)
            break
        end
    end
    local by_conn = store().by_conn
    local set = by_conn[cid]
    if set then
        set[room.id] = nil
        if next(set) == nil then by_conn[cid] = nil end
    end
    -- A closed conn answers nil, "closed": its subscriptions already ended with it.
    conn:unsubscribe(topic_of(room))
end

local function stop_ticking(room)
    local timer = room._timer
    room._timer = nil
    if timer then timer:cancel() end
end

-- (Re)starts room's tick loop for def: every 1000 / tick_rate ms, room.tick goes up by one and
-- the tick callback gets (room, room.tick, 1 / tick_rate). The previous timer is cancelled first,
-- so a room has at most one.
local function start_ticking(room, def)
    stop_ticking(room)
    local rate = def.tick_rate
    if not rate then return end
    local dt = 1 / rate
    local timer
    timer = mw.every(1000 / rate, function()
        -- A timer that is no longer the room's (the room was redefined or destroyed, and some
        -- cancel was missed) retires instead of ticking with stale code.
        if room._timer ~= timer or room._destroyed then
            timer:cancel()
            return
        end
        local n = room.tick + 1
        room.tick = n
        local current = defs[room.kind]
        if current and current.tick then current.tick(room, n, dt) end
    end)
    room._timer = timer
end

local function destroy(room)
    if room._destroyed then return false end
    local def = def_of(room)
    room._destroyed = true
    stop_ticking(room)
    local s = store()
    if s.rooms[room.id] == room then s.rooms[room.id] = nil end
    -- Bookkeeping first, callbacks after: a leave or close callback that raises cannot leave a
    -- half-destroyed room behind.
    local gone = {}
    for i, cid in ipairs(room._order) do gone[i] = room._members[cid] end
    for _, conn in ipairs(gone) do remove_member(room, conn) end
    if def.leave then
        for _, conn in ipairs(gone) do def.leave(room, conn, "closed") end
    end
    if def.close then def.close(room) end
    return true
end

-- ---- rooms -----------------------------------------------------------------------------------

-- Defines (or redefines) a kind of room; see the contract for the fields. Redefining hands every
-- existing room of the kind to these callbacks and restarts its tick loop (a reload cancelled the
-- old one). Returns kind. Raises on a bad kind or definition.
function M.define(kind, def)
    if type(kind) ~= "string" or kind == "" then
        error("rooms.define: kind must be a non-empty string", 2)
    end
    if type(def) ~= "table" then
        error("rooms.define: expected a table of options and callbacks for '" .. kind .. "'", 2)
    end
    for field, value in pairs(def) do
        local want = FIELDS[field]
        if not want then
            error("rooms.define: unknown field '" .. tostring(field) .. "' in '" .. kind .. "'", 2)
        end
        if type(value) ~= want then
            error("rooms.define: " .. field .. " must be a " .. want .. " in '" .. kind .. "'", 2)
        end
    end
    local rate = def.tick_rate
    if rate == 0 then
        rate = nil
    elseif rate ~= nil and not (rate > 0 and rate <= 1000) then -- also refuses NaN
        error("rooms.define: tick_rate must be a positive number of ticks per second, at most "
              .. "1000 (nil or 0: no tick loop) in '" .. kind .. "'", 2)
    end
    local max = def.max_members
    if max ~= nil and not (max >= 1 and max < huge and floor(max) == max) then
        error("rooms.define: max_members must be a positive integer in '" .. kind .. "'", 2)
    end
    local d = {
        tick_rate = rate, max_members = max, auto_close = def.auto_close ~= false,
        init = def.init, join = def.join, leave = def.leave, message = def.message,
        tick = def.tick, close = def.close,
    }
    defs[kind] = d
    -- The existing rooms move to this code only once it has loaded for good.
    mw.after_load(function()
        if defs[kind] ~= d then return end -- defined again since: that definition hands over
        for _, room in ipairs(M.list(kind)) do
            setmetatable(room, room_meta)
            start_ticking(room, d)
        end
    end)
    return kind
end

-- Creates a room of a defined kind. id defaults to "<kind>-<n>". Returns the room, or nil,
-- "exists" if id is taken. Raises on an unknown kind or a bad id, and if init raises.
function M.create(kind, id, options)
    if type(kind) ~= "string" then error("rooms.create: kind must be a string", 2) end
    local def = defs[kind]
    if not def then
        error("rooms.create: unknown kind '" .. kind .. "' (call rooms.define first)", 2)
    end
    local s = store()
    if id == nil then
        local n = s.counters[kind] or 0
        repeat
            n = n + 1
            id = kind .. "-" .. n
        until s.rooms[id] == nil
        s.counters[kind] = n
    elseif type(id) ~= "string" or id == "" then
        error("rooms.create: id must be a non-empty string or nil", 2)
    elseif s.rooms[id] ~= nil then
        return nil, "exists"
    end
    local room = setmetatable({
        id = id, kind = kind, state = {}, tick = 0, _members = {}, _order = {},
    }, room_meta)
    if def.init then
        if options == nil then options = {} end
        def.init(room, options)
        -- init may have made another room with this id (say, of another kind); never
        -- overwrite a registered room, which would orphan it and its tick loop.
        if s.rooms[id] ~= nil then return nil, "exists" end
    end
    s.rooms[id] = room
    start_ticking(room, def)
    return room
end

-- Returns the room with this id, or nil.
function M.get(id)
    return store().rooms[id]
end

-- Returns the room with this id if it is of kind, else creates it. Returns the room, or nil,
-- "wrong kind" when id belongs to a room of another kind. Raises like create.
function M.find_or_create(kind, id, options)
    if type(id) ~= "string" or id == "" then
        error("rooms.find_or_create: id must be a non-empty string", 2)
    end
    local room = store().rooms[id]
    if room == nil then return M.create(kind, id, options) end
    if room.kind ~= kind then return nil, "wrong kind" end
    return room
end

-- Returns an array of every room (of kind, if given), sorted by id.
function M.list(kind)
    if kind ~= nil and type(kind) ~= "string" then
        error("rooms.list: kind must be a string or nil", 2)
    end
    local out = {}
    for _, room in pairs(store().rooms) do
        if kind == nil or room.kind == kind then out[#out + 1] = room end
    end
    sort(out, by_id)
    return out
end

-- Returns an array of the rooms conn is a member of, sorted by id.
function M.of(conn)
    check_conn(conn, "rooms.of")
    local s = store()
    local out = {}
    for rid in pairs(s.by_conn[conn.id] or {}) do
        local room = s.rooms[rid]
        if room and room._members[conn.id] then out[#out + 1] = room end
    end
    sort(out, by_id)
    return out
end

-- Makes conn leave every room it is in (reason defaults to "closed"; call it from app.close).
-- Returns the number of rooms left.
function M.leave_all(conn, reason)
    check_conn(conn, "rooms.leave_all")
    check_reason(reason, "rooms.leave_all")
    local n = 0
    for _, room in ipairs(M.of(conn)) do
        if room:leave(conn, reason or "closed") then n = n + 1 end
    end
    return n
end

-- ---- room methods ----------------------------------------------------------------------------

-- Adds conn to the room (info goes to the join callback). Returns true, or nil and a reason:
-- "full", "already a member", "closed" (conn), "destroyed" (room) or the join callback's own.
function Room:join(conn, info)
    check_conn(conn, "room:join")
    local def = def_of(self)
    local cid = conn.id
    -- Checked before the callback (so it only sees joins that can succeed) and again after it,
    -- since it may have joined others, closed the conn or destroyed the room.
    local function refusal()
        if self._destroyed then return "destroyed" end
        if not is_open(conn) then return "closed" end
        if self._members[cid] then return "already a member" end
        if def.max_members and open_count(self) >= def.max_members then return "full" end
    end
    local why = refusal()
    if why then return nil, why end
    if def.join then
        local ok, reason = def.join(self, conn, info)
        if ok == false or (ok == nil and reason ~= nil) then
            return nil, reason ~= nil and tostring(reason) or "refused"
        end
        why = refusal()
        if why then return nil, why end
    end
    self._members[cid] = conn
    self._order[#self._order + 1] = cid
    local by_conn = store().by_conn
    local set = by_conn[cid]
    if not set then
        set = {}
        by_conn[cid] = set
    end
    set[self.id] = true
    conn:subscribe(topic_of(self))
    return true
end

-- Removes conn from the room and calls the leave callback with reason (default "left"); then,
-- with auto_close, destroys the room if no open member is left. Returns true, or false if conn
-- was not a member.
function Room:leave(conn, reason)
    check_conn(conn, "room:leave")
    check_reason(reason, "room:leave")
    if not self._members[conn.id] then return false end
    local def = def_of(self)
    remove_member(self, conn)
    if def.leave then def.leave(self, conn, reason or "left") end
    if def.auto_close and not self._destroyed and open_count(self) == 0 then destroy(self) end
    return true
end

-- Returns true if conn is on the room's books (also after its connection closed, until it
-- leaves).
function Room:has(conn)
    check_conn(conn, "room:has")
    return self._members[conn.id] ~= nil
end

-- Returns an array of the members whose connection is open, in join order.
function Room:members()
    local out, members = {}, self._members
    for _, cid in ipairs(self._order) do
        local conn = members[cid]
        if is_open(conn) then out[#out + 1] = conn end
    end
    return out
end

-- Returns the number of members whose connection is open.
function Room:size()
    return open_count(self)
end

-- Publishes data to every member (the room's topic, "room:" .. id). Returns the number of
-- connections it was sent to (0 once the room is destroyed).
function Room:broadcast(data, binary)
    if type(data) ~= "string" then error("room:broadcast: data must be a string", 2) end
    if self._destroyed then return 0 end
    return mw.publish(topic_of(self), data, binary)
end

-- Sends data to one conn (member or not, e.g. a greeting from the join callback). Returns what
-- conn:send returns: true | false, "backpressure" | nil, "closed".
function Room:send(conn, data, binary)
    check_conn(conn, "room:send")
    return conn:send(data, binary)
end

-- Hands msg from conn to the kind's message callback (for routers). Returns true, or nil,
-- "not a member" | nil, "destroyed".
function Room:deliver(conn, msg)
    check_conn(conn, "room:deliver")
    if self._destroyed then return nil, "destroyed" end
    if not self._members[conn.id] then return nil, "not a member" end
    local def = def_of(self)
    if def.message then def.message(self, conn, msg) end
    return true
end

-- Leaves every member (reason "closed"), stops the tick loop, calls the close callback and
-- forgets the room. Returns true, or false if it was already destroyed.
function Room:destroy()
    return destroy(self)
end

return M
