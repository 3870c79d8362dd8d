-- Chat: people pick a name, join rooms, see who is in each room and talk. `make run` serves it
-- with its page (public/index.html) at http://127.0.0.1:8080/; by hand: build/moonwire
-- examples/chat. Rooms and presence come from moonwire.rooms, dispatch from moonwire.router.
--
-- Protocol: JSON text messages, each an object with a "type".
--
-- client -> server
--   {"type":"hello","name":"ada"}
--       The first message. name: 1-24 characters once trimmed, no control characters. Names
--       need not be unique. Answered by welcome; anything else before it gets an error.
--       With JWT_SECRET set (below), name may be left out: the token's name is used, always.
--   {"type":"join","room":"general"}
--       room: 1-32 characters of A-Z a-z 0-9 _ - (case matters). Creates the room if needed.
--       Answered by joined (also when already a member: a harmless refresh) or an error.
--   {"type":"leave","room":"general"}
--       Answered by left, or an error when not a member.
--   {"type":"say","room":"general","text":"hi"}
--       text: 1-2000 characters once trimmed; line breaks and tabs are kept. Needs membership.
--       Everyone in the room, the sender included, gets it as a message.
--
-- server -> client
--   {"type":"welcome","id":7,"name":"ada","rooms":[{"name":"general","members":3}]}
--       Your connection id, your name as the server cleaned it, and the rooms that exist now
--       (sorted by name; members is a count).
--   {"type":"rooms","rooms":[{"name":"general","members":3}]}
--       The same list, sent after it changed (at most every 250 ms) to everyone who said hello.
--       Rooms close when their last member leaves.
--   {"type":"joined","room":"general","members":[{"id":7,"name":"ada"}],
--    "history":[{"from":{"id":3,"name":"bo"},"text":"hi","ts":1700000000}]}
--       You are in. members: in join order, you included. history: the room's last 50
--       messages, oldest first.
--   {"type":"presence","room":"general","event":"join","user":{"id":9,"name":"cy"}}
--   {"type":"presence","room":"general","event":"leave","user":{"id":9,"name":"cy"}}
--       Someone entered or left the room (said leave, disconnected, or was removed).
--   {"type":"message","room":"general","from":{"id":7,"name":"ada"},"text":"hi","ts":1700000000}
--       ts: Unix time in seconds, from the server's clock.
--   {"type":"left","room":"general"}
--   {"type":"error","error":"reason"}
--       Also carries "room" when the error is about one (e.g. a refused join).
--   {"type":"announcement","room":"general","text":"maintenance at 18:00","ts":1700000000}
--       From the operators (HTTP, below), once in every room you are in.
--
-- HTTP, for a backend: POST /api/announce (below the mount: /chat/api/announce when mounted
-- at /chat; `make run` mounts it at /) with the header X-Announce-Secret: ANNOUNCE_SECRET and
-- the announcement's text as the body (1-2000 characters) sends it to every room. Answers
-- 200 {"rooms":N,"delivered":M}, 401 for a wrong secret, 403 while ANNOUNCE_SECRET (below)
-- is unset, 400 for a bad text. Keep the secret out of version control and send it over TLS:
--   curl -H 'X-Announce-Secret: ...' --data 'maintenance at 18:00' \
--        http://127.0.0.1:8080/api/announce
--
-- Sign-in with a JSON Web Token: with JWT_SECRET (below) set, a connection must bring a token
-- signed with it (HS256) from the login backend, in the query (`ws://host/?token=...`), in an
-- `Authorization: Bearer ...` field or in a cookie named `token`. The token must carry `exp`
-- (30 s of clock skew allowed) and a `name` claim (or else `sub`) that is a valid name (as
-- for hello): it becomes the user's name, whatever hello says. Anything else is refused before
-- the WebSocket opens, with 401 and the reason as the body (missing, expired, bad_signature,
-- unsupported_algorithm for `alg: none`, no_expiry, bad_name: ...). The page passes on a
-- `?token=` from its own address; a cookie reaches the server by itself. While JWT_SECRET is
-- nil, anyone connects and picks a name.
--
-- For clients: an empty list may arrive as {} (lua-cjson cannot tell an empty array from an
-- empty object), so read anything that is not an array as empty. Presence may name you, or a
-- room you are not (or no longer) in: ignore what does not apply.

local rooms = require "moonwire.rooms"
local router = require "moonwire.router"
local validate = require "validate"

local mw, os_time = mw, os.time
local ipairs, table_remove, table_sort = ipairs, table.remove, table.sort

local app = {}

local KIND = "chat"
local LOBBY = "lobby"             -- topic of everyone who said hello: room list updates
local MAX_MEMBERS = 200           -- per room
local MAX_ROOMS_PER_USER = 10     -- bounds how many rooms one connection can keep alive
local MAX_LISTED = 100            -- rooms in a list; the busiest win
local HISTORY = 50                -- messages a room remembers for people who join later
local LIST_DELAY_MS = 250
-- The shared secret a backend sends to announce (see HTTP above); nil turns announcements off.
-- Set it here, a long random string, before serving.
local ANNOUNCE_SECRET = nil
-- The secret the login backend signs users' tokens with (see sign-in above); nil lets anyone in
-- with the name they choose. Like ANNOUNCE_SECRET: long, random, out of version control.
local JWT_SECRET = nil
local JWT_LEEWAY = 30             -- seconds of clock skew allowed between backend and server

-- ---- helpers ---------------------------------------------------------------------------------

-- Replies with an error. Returns nothing, so `return fail(...)` in a handler does not make the
-- router send a second error (it does for a handler returning nil, "reason").
local function fail(conn, reason, room)
    router.send(conn, "error", { error = reason, room = room })
end

-- The room remembers its members' names by id: the leave callback may run while the connection
-- is closing, and the room should not depend on what a closing conn still answers.
local function user_of(room, conn)
    return { id = conn.id, name = room.state.names[conn.id] }
end

local function members_of(room)
    local list = {}
    for i, member in ipairs(room:members()) do list[i] = user_of(room, member) end
    return list
end

local function presence(room, conn, event)
    return router.encode("presence", { room = room.id, event = event, user = user_of(room, conn) })
end

local function by_name(a, b) return a.name < b.name end

local function by_size(a, b)
    if a.members ~= b.members then return a.members > b.members end
    return a.name < b.name
end

local function room_list()
    local list = {}
    for _, room in ipairs(rooms.list(KIND)) do
        list[#list + 1] = { name = room.id, members = room:size() }
    end
    if #list > MAX_LISTED then
        table_sort(list, by_size)
        for i = #list, MAX_LISTED + 1, -1 do list[i] = nil end
    end
    table_sort(list, by_name)
    return list
end

-- Membership changes come in bursts (a reconnecting client rejoins all its rooms, a closing one
-- leaves them all), so the lobby gets one list per burst rather than one per change. A hot
-- reload cancels a pending timer; app.reload sends the list instead.
local pending_list

local function publish_room_list()
    pending_list = nil
    mw.publish(LOBBY, router.encode("rooms", { rooms = room_list() }))
end

local function room_list_changed()
    if not pending_list then pending_list = mw.after(LIST_DELAY_MS, publish_room_list) end
end

local function send_joined(conn, room)
    router.send(conn, "joined", {
        room = room.id, members = members_of(room), history = room.state.history,
    })
end

-- ---- the room kind ---------------------------------------------------------------------------

rooms.define(KIND, {
    max_members = MAX_MEMBERS,

    init = function(room)
        if not room.state then room.state = {} end
        room.state.names = {}       -- conn id -> name
        room.state.history = {}     -- { from, text, ts }, oldest first
    end,

    -- Runs before the newcomer is a member, so the presence goes to the others only; the
    -- newcomer learns the whole list from joined.
    join = function(room, conn)
        room.state.names[conn.id] = conn.data.name
        room:broadcast(presence(room, conn, "join"))
        room_list_changed()
        return true
    end,

    leave = function(room, conn)
        room:broadcast(presence(room, conn, "leave"))
        room.state.names[conn.id] = nil
        room_list_changed()
    end,

    -- text was validated by the say handler.
    message = function(room, conn, text)
        local entry = { from = user_of(room, conn), text = text, ts = os_time() }
        local history = room.state.history
        history[#history + 1] = entry
        if #history > HISTORY then table_remove(history, 1) end
        room:broadcast(router.encode("message", {
            room = room.id, from = entry.from, text = text, ts = entry.ts,
        }))
    end,

    close = function()
        room_list_changed()
    end,
})

-- ---- requests --------------------------------------------------------------------------------

local requests = router.new()

-- Everything but hello needs a name: presence and messages say who is talking.
local function named(handler)
    return function(conn, msg)
        if not conn.data.name then return fail(conn, "say hello first") end
        return handler(conn, msg)
    end
end

-- The room a request names, when conn is in it; else nil after telling the client why.
local function member_room(conn, room_name)
    local name, err = validate.room(room_name)
    if not name then return fail(conn, err) end
    local room = rooms.get(name)
    if not room or room.kind ~= KIND or not room:has(conn) then
        return fail(conn, "you are not in this room", name)
    end
    return room
end

requests:on("hello", function(conn, msg)
    if conn.data.name then return fail(conn, "you already said hello") end
    -- A signed-in user's name is the token's (app.upgrade checked it); the client's is ignored.
    local name, err = conn.data.token_name, nil
    if not name then name, err = validate.name(msg.name) end
    if not name then return fail(conn, err) end
    conn.data.name = name
    conn:subscribe(LOBBY)
    router.send(conn, "welcome", { id = conn.id, name = name, rooms = room_list() })
end, { [JWT_SECRET and "name?" or "name"] = "string" })   -- signed in: the token names you

requests:on("join", named(function(conn, msg)
    local name, err = validate.room(msg.room)
    if not name then return fail(conn, err) end
    local room = rooms.get(name)
    if room and room.kind ~= KIND then return fail(conn, "no such room", name) end
    if room and room:has(conn) then return send_joined(conn, room) end
    if #rooms.of(conn) >= MAX_ROOMS_PER_USER then
        return fail(conn, "you are in too many rooms (at most " .. MAX_ROOMS_PER_USER .. ")", name)
    end
    room = rooms.find_or_create(KIND, name)
    local ok, why = room:join(conn)
    if not ok then
        return fail(conn, why == "full" and "this room is full" or tostring(why), name)
    end
    send_joined(conn, room)
end), { room = "string" })

requests:on("leave", named(function(conn, msg)
    local room = member_room(conn, msg.room)
    if not room then return end
    local name = room.id
    room:leave(conn, "left")
    router.send(conn, "left", { room = name })
end), { room = "string" })

requests:on("say", named(function(conn, msg)
    local room = member_room(conn, msg.room)
    if not room then return end
    local text, err = validate.text(msg.text)
    if not text then return fail(conn, err, room.id) end
    room:deliver(conn, text)
end), { room = "string", text = "string" })

-- ---- handlers --------------------------------------------------------------------------------

-- Sign-in (see the top): defined only with a secret, so that without one every upgrade is
-- accepted exactly as before.
if JWT_SECRET then
    -- HS256 only: listing the one algorithm the backend uses is what keeps a token from
    -- choosing how it is checked (`none`, or a public key passed off as an HMAC secret).
    local AUTH = { keys = JWT_SECRET, algorithms = { "HS256" }, leeway = JWT_LEEWAY }

    local function token_of(req)
        return ("&" .. req.query):match("&token=([^&]+)")
            or (req.headers.authorization or ""):match("^[Bb]earer +(%S+)$")
            or req.cookies.token
    end

    function app.upgrade(req)
        local claims, why = mw.jwt.verify(token_of(req), AUTH)
        if not claims then return false, 401, why end
        -- Without exp a leaked token would work forever.
        if type(claims.exp) ~= "number" then return false, 401, "no_expiry" end
        local claimed = claims.name
        if claimed == nil then claimed = claims.sub end
        local name, err = validate.name(claimed)
        if not name then return false, 401, "bad_name: " .. err end
        return true, { data = { token_name = name } }
    end
end

-- The page talks through moonwire.js, over moonwire.v1 (docs/protocol.md): defining
-- app.subscribe turns it on. The page never subscribes by itself (joining a room subscribes it
-- here), so every subscribe from a client is refused.
function app.subscribe()
    return false, "join rooms with a join message"
end

function app.message(conn, data, is_binary)
    if is_binary then return fail(conn, "binary messages are not supported") end
    requests:dispatch(conn, data)
end

-- Leaving every room tells the others (presence leave) and closes rooms left empty.
function app.close(conn)
    rooms.leave_all(conn, "closed")
end

function app.reload()
    publish_room_list()
end

-- POST .../api/announce: an announcement from a backend to every room.
function app.http(req)
    if not req.path:find("/api/announce$") then return 404, "not found" end
    if req.method ~= "POST" then return 405, "POST only", { Allow = "POST" } end
    if not ANNOUNCE_SECRET then return 403, "announcements are off: set ANNOUNCE_SECRET" end
    -- Compared in constant time: a plain ~= would tell an attacker how much of a guess matched.
    local given = req.headers["x-announce-secret"]
    if not given or not mw.crypto.equal(given, ANNOUNCE_SECRET) then
        return 401, "wrong secret"
    end
    local text, err = validate.text(req.body)
    if not text then return 400, err end
    local ts, n, delivered = os_time(), 0, 0
    for _, room in ipairs(rooms.list(KIND)) do
        n = n + 1
        delivered = delivered + room:broadcast(router.encode("announcement", {
            room = room.id, text = text, ts = ts,
        }))
    end
    mw.log("info", "announcement to", n, "rooms")
    return 200, { rooms = n, delivered = delivered }
end

return app
