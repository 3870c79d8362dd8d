-- The chat example (examples/chat) served by the real server, driven by several live clients:
-- hello, rooms, presence, messages and history, the throttled room list, every error reply,
-- a hot reload (SIGHUP) with people in rooms, and the static page.
local cjson = require "cjson"
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"

local WAIT = 5      -- seconds for a message that must come (ASan on a loaded machine)
local QUIET = 0.4   -- seconds of silence that show a message did not come
local HISTORY = 50  -- messages a room keeps (app.lua)
local ROOM_ERROR = "room names are 1 to 32 characters of A-Z a-z 0-9 _ -"

local function now() return socket.gettime() end

-- ---- a client with an inbox ------------------------------------------------------------------

-- Messages come in whatever order the server interleaves them (room lists arrive on their own
-- timer), so a client keeps what it has read but not yet asked for in an inbox, and each
-- expectation picks the first message that matches a pattern.
local Client = {}
Client.__index = Client

local clients = {} -- every client a test opened, closed after the test

local function connect(srv)
    local c = setmetatable({ ws = assert(ws.connect(srv.port, { timeout = WAIT })), inbox = {} },
        Client)
    clients[#clients + 1] = c
    return c
end

-- Whether msg holds every field of want (nested tables compared the same way).
local function matches(msg, want)
    if type(want) == "function" then return want(msg) end
    for k, v in pairs(want) do
        if type(v) == "table" then
            if type(msg[k]) ~= "table" or not matches(msg[k], v) then return false end
        elseif msg[k] ~= v then
            return false
        end
    end
    return true
end

local function show(want)
    return type(want) == "table" and cjson.encode(want) or tostring(want)
end

-- Sends a table as JSON, or a string as it is.
function Client:send(msg)
    assert(self.ws:send_text(type(msg) == "table" and cjson.encode(msg) or msg))
end

-- Reads one message into the inbox. Returns it, or nil on a timeout; raises if the
-- connection ended (no test here expects the server to close a chat connection).
function Client:read(timeout)
    local data, err, code = self.ws:recv_message(timeout)
    if not data then
        if err == "timeout" then return nil end
        error("the server ended the connection: " .. tostring(err) .. " " .. tostring(code), 2)
    end
    local msg = assert(cjson.decode(data))
    self.inbox[#self.inbox + 1] = msg
    return msg
end

-- Removes and returns the first message in the inbox that matches want, or nil.
function Client:take(want)
    for i, msg in ipairs(self.inbox) do
        if matches(msg, want) then
            table.remove(self.inbox, i)
            return msg
        end
    end
    return nil
end

-- The first message matching want, read within timeout; fails the test if none comes.
function Client:expect(want, timeout)
    local deadline = now() + (timeout or WAIT)
    while true do
        local msg = self:take(want)
        if msg then return msg end
        local left = deadline - now()
        if left <= 0 then break end
        self:read(left)
    end
    local seen = {}
    for i, m in ipairs(self.inbox) do seen[i] = cjson.encode(m) end
    error("no message like " .. show(want) .. " within " .. (timeout or WAIT) .. " s; unread: "
        .. table.concat(seen, "\n  "), 2)
end

-- Reads into the inbox for `wait` seconds and then until nothing more is waiting.
function Client:drain(wait)
    local deadline = now() + (wait or 0)
    while self:read(math.max(deadline - now(), 0.02)) or now() < deadline do end
end

-- Reads for `wait` seconds, then fails if any unread message matches want.
function Client:none(want, wait, why)
    self:drain(wait or QUIET)
    local msg = self:take(want)
    assert.is_nil(msg, (why or "unexpected message") .. ": " .. (msg and cjson.encode(msg) or ""))
end

-- Drops unread messages that match want (say, room lists a test does not look at).
function Client:discard(want)
    while self:take(want) do end
end

-- expect for room lists: also drops the older lists read before the match.
function Client:expect_list(want)
    local msg = self:expect(want)
    self:discard { type = "rooms" }
    return msg
end

function Client:user() return { id = self.id, name = self.name } end

function Client:abort() self.ws:abort() end

-- Connects and says hello. Returns the client (with .id and .name) and the welcome.
local function hello(srv, name)
    local c = connect(srv)
    c:send { type = "hello", name = name }
    local welcome = c:expect { type = "welcome" }
    c.id, c.name = welcome.id, welcome.name
    return c, welcome
end

function Client:join(room)
    self:send { type = "join", room = room }
    return self:expect { type = "joined", room = room }
end

function Client:say(room, text)
    self:send { type = "say", room = room, text = text }
end

-- Sends msg and expects the error reply; also checks its room field (nil: must be absent).
function Client:refused(msg, reason, room)
    self:send(msg)
    local got = self:expect { type = "error" }
    assert.are.equal(reason, got.error, "the error for " .. show(msg))
    assert.are.equal(room, got.room, "the room of the error for " .. show(msg))
end

-- After errors: the connection still answers a message in the room.
function Client:still_talks(room)
    local text = "still here " .. math.random(1e6)
    self:say(room, text)
    local msg = self:expect { type = "message", room = room, text = text }
    assert.are.same(self:user(), msg.from)
end

-- Room names unique to each test, so room lists and presence never mix tests up.
local rooms_made = 0
local function new_room(tag)
    rooms_made = rooms_made + 1
    return (tag or "room") .. "-" .. rooms_made
end

-- The entry of room name in a room list, or nil.
local function listed(list, name)
    for _, entry in ipairs(list) do
        if entry.name == name then return entry end
    end
    return nil
end

-- A room-list message whose list shows room name with n members (n = nil: not listed).
local function rooms_with(name, n)
    return function(msg)
        if msg.type ~= "rooms" then return false end
        local entry = listed(msg.rooms, name)
        if n == nil then return entry == nil end
        return entry ~= nil and entry.members == n
    end
end

local function close_all()
    for _, c in ipairs(clients) do pcall(c.abort, c) end
    clients = {}
end

local function assert_sorted(list)
    for i = 2, #list do
        assert.is_true(list[i - 1].name < list[i].name,
            "sorted by name: " .. list[i - 1].name .. " before " .. list[i].name)
    end
end

-- ---- specs -----------------------------------------------------------------------------------

describe("the chat example", function()
    local srv
    setup(function() srv = server.start { app = "examples/chat" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)
    after_each(close_all)

    describe("hello", function()
        it("answers with welcome: a numeric id, the trimmed name and the sorted room list",
            function()
                local a, wa = hello(srv, "  ada\t ")
                assert.are.equal("ada", wa.name)
                assert.are.equal("number", type(wa.id))
                local room_z, room_a = new_room("zz"), new_room("aa")
                a:join(room_z)
                a:join(room_a)
                local b, wb = hello(srv, "bo")
                assert.are_not.equal(wa.id, wb.id, "each connection has its own id")
                assert.are.same({ name = room_z, members = 1 }, listed(wb.rooms, room_z))
                assert.are.same({ name = room_a, members = 1 }, listed(wb.rooms, room_a))
                assert_sorted(wb.rooms)
                assert.are.equal("bo", b.name)
            end)
    end)

    describe("rooms and presence", function()
        it("answers join with joined: the members in join order, the joiner last, and history",
            function()
                local room = new_room()
                local a, b, c = hello(srv, "ada"), hello(srv, "bo"), hello(srv, "cy")
                local ja = a:join(room)
                assert.are.same({ a:user() }, ja.members)
                assert.are.same({}, ja.history)
                assert.are.same({ a:user(), b:user() }, b:join(room).members)
                assert.are.same({ a:user(), b:user(), c:user() }, c:join(room).members)
            end)

        it("tells the members already there about a joiner, and not the joiner itself",
            function()
                local room = new_room()
                local a, b, c = hello(srv, "ada"), hello(srv, "bo"), hello(srv, "cy")
                local outsider = hello(srv, "dee")
                a:join(room)
                b:join(room)
                local p = a:expect { type = "presence", room = room, event = "join" }
                assert.are.same(b:user(), p.user)
                c:join(room)
                for _, member in ipairs { a, b } do
                    p = member:expect { type = "presence", room = room, event = "join",
                                        user = { id = c.id } }
                    assert.are.same(c:user(), p.user)
                end
                for _, x in ipairs { a, b, c } do
                    x:none({ type = "presence", user = { id = x.id } }, QUIET,
                        "presence about oneself")
                end
                outsider:none({ type = "presence" }, 0, "presence outside the room")
            end)

        it("answers a repeated join with joined again and tells nobody", function()
            local room = new_room()
            local a, b = hello(srv, "ada"), hello(srv, "bo")
            a:join(room)
            b:join(room)
            a:expect { type = "presence", event = "join", user = { id = b.id } }
            local again = b:join(room)
            assert.are.same({ a:user(), b:user() }, again.members)
            a:none({ type = "presence" }, QUIET, "a refresh is not a join")
        end)

        it("sends say to every member, the sender included, with from, text and ts; not to "
            .. "others", function()
            local room, other = new_room(), new_room("other")
            local a, b, c = hello(srv, "ada"), hello(srv, "bo"), hello(srv, "cy")
            local d = hello(srv, "dee")
            a:join(room)
            b:join(room)
            c:join(room)
            d:join(other)
            b:say(room, "hello, room")
            for _, x in ipairs { a, b, c } do
                local m = x:expect { type = "message", room = room }
                assert.are.same(b:user(), m.from)
                assert.are.equal("hello, room", m.text)
                assert.are.equal("number", type(m.ts))
                assert.is_true(math.abs(m.ts - os.time()) <= 5, "ts is the server's Unix time")
            end
            d:none({ type = "message" }, QUIET, "a message reached a non-member")
            -- And the other room's messages stay there.
            d:say(other, "elsewhere")
            d:expect { type = "message", room = other, text = "elsewhere" }
            for _, x in ipairs { a, b, c } do
                x:none({ type = "message" }, 0.1, "another room's message")
            end
        end)

        it("cleans a message's text: trimmed, CR LF made LF, inner tabs and breaks kept",
            function()
                local room = new_room()
                local a = hello(srv, "ada")
                a:join(room)
                a:say(room, "  one\r\ntwo\tthree\n ")
                assert.are.equal("one\ntwo\tthree", a:expect { type = "message" }.text)
            end)

        it("answers leave with left and tells the others; the leaver can no longer say",
            function()
                local room = new_room()
                local a, b, c = hello(srv, "ada"), hello(srv, "bo"), hello(srv, "cy")
                a:join(room)
                b:join(room)
                c:join(room)
                b:send { type = "leave", room = room }
                assert.are.same({ type = "left", room = room }, b:expect { type = "left" })
                for _, x in ipairs { a, c } do
                    local p = x:expect { type = "presence", event = "leave", room = room }
                    assert.are.same(b:user(), p.user)
                end
                b:none({ type = "presence", event = "leave" }, QUIET, "the leaver's own leave")
                b:refused({ type = "say", room = room, text = "still?" },
                    "you are not in this room", room)
                b:refused({ type = "leave", room = room }, "you are not in this room", room)
                a:say(room, "after b")
                c:expect { type = "message", text = "after b" }
                b:none({ type = "message" }, QUIET, "a message after leaving")
                -- Whoever joins now sees a and c only.
                assert.are.same({ a:user(), c:user(), b:user() }, b:join(room).members)
            end)

        it("tells the others in every room when a member's socket drops with no close frame",
            function()
                local r1, r2 = new_room("one"), new_room("two")
                local a, b, c = hello(srv, "ada"), hello(srv, "bo"), hello(srv, "cy")
                a:join(r1)
                a:join(r2)
                b:join(r1)
                b:join(r2)
                c:join(r2)
                b:abort()
                for _, room in ipairs { r1, r2 } do
                    local p = a:expect { type = "presence", event = "leave", room = room }
                    assert.are.same(b:user(), p.user)
                end
                local p = c:expect { type = "presence", event = "leave", room = r2 }
                assert.are.same(b:user(), p.user)
                c:none({ type = "presence", room = r1 }, 0, "presence of a room c is not in")
                local d = hello(srv, "dee")
                assert.are.same({ a:user(), c:user(), d:user() }, d:join(r2).members)
            end)

        it("closes a room when its last member leaves: off the list, its history gone",
            function()
                local room = new_room()
                local a, b = hello(srv, "ada"), hello(srv, "bo")
                local watcher = hello(srv, "eve")
                a:join(room)
                b:join(room)
                a:say(room, "remember me")
                watcher:expect_list(rooms_with(room, 2))
                a:send { type = "leave", room = room }
                a:expect { type = "left" }
                watcher:expect_list(rooms_with(room, 1))
                b:abort()
                watcher:expect_list(rooms_with(room, nil))
                local _, w = hello(srv, "late")
                assert.is_nil(listed(w.rooms, room), "a closed room is not in welcome")
                local again = a:join(room)
                assert.are.same({ a:user() }, again.members)
                assert.are.same({}, again.history, "a new room with the same name starts empty")
            end)
    end)

    describe("history", function()
        it("gives a late joiner the room's messages, oldest first", function()
            local room = new_room()
            local a, b = hello(srv, "ada"), hello(srv, "bo")
            a:join(room)
            b:join(room)
            -- Each message is seen through before the next: two sockets have no order.
            for _, step in ipairs { { a, "first" }, { b, "second" }, { a, "third" } } do
                step[1]:say(room, step[2])
                step[1]:expect { type = "message", text = step[2] }
            end
            local c = hello(srv, "cy")
            local h = c:join(room).history
            assert.are.equal(3, #h)
            local seen = {}
            for i, entry in ipairs(h) do
                seen[i] = { entry.from.id, entry.from.name, entry.text }
                assert.is_true(math.abs(entry.ts - os.time()) <= 5, "history keeps ts")
            end
            assert.are.same({ { a.id, "ada", "first" }, { b.id, "bo", "second" },
                              { a.id, "ada", "third" } }, seen)
        end)

        it("keeps only the room's last " .. HISTORY .. " messages", function()
            local room = new_room()
            local a = hello(srv, "ada")
            a:join(room)
            local burst = {}
            for i = 1, HISTORY + 7 do
                burst[i] = ws.frame { payload = cjson.encode {
                    type = "say", room = room, text = "m" .. i } }
            end
            assert(a.ws:send_raw(table.concat(burst)))
            a:expect { type = "message", text = "m" .. (HISTORY + 7) }
            local h = hello(srv, "bo"):join(room).history
            assert.are.equal(HISTORY, #h)
            for i, entry in ipairs(h) do
                assert.are.equal("m" .. (i + 7), entry.text)
            end
        end)
    end)

    describe("errors (each answered, the connection kept)", function()
        it("refuses everything but hello before hello, then accepts hello", function()
            local room = new_room()
            local c = connect(srv)
            c:refused({ type = "join", room = room }, "say hello first")
            c:refused({ type = "say", room = room, text = "hi" }, "say hello first")
            c:refused({ type = "leave", room = room }, "say hello first")
            c:send { type = "hello", name = "finally" }
            assert.are.equal("finally", c:expect { type = "welcome" }.name)
            c:join(room)
        end)

        it("refuses bad names and a second hello", function()
            local c = connect(srv)
            local cases = {
                { "", "name is empty" },
                { " \t ", "name is empty" },
                { string.rep("n", 25), "name is too long (at most 24 characters)" },
                { "a\tb", "name contains control characters" },
                { "a\nb", "name contains control characters" },
                { "evil\u{202E}", "name contains control characters" },
            }
            for _, case in ipairs(cases) do
                c:refused({ type = "hello", name = case[1] }, case[2])
            end
            c:refused({ type = "hello", name = 42 }, "field 'name' must be a string")
            c:refused({ type = "hello" }, "missing field 'name'")
            c:send { type = "hello", name = string.rep("\u{E9}", 24) }
            local w = c:expect { type = "welcome" }
            assert.are.equal(string.rep("\u{E9}", 24), w.name, "24 characters are fine")
            c:refused({ type = "hello", name = "again" }, "you already said hello")
        end)

        it("refuses bad room names", function()
            local a = hello(srv, "ada")
            for _, bad in ipairs { "", "has space", "caf\u{E9}", "a/b", "dot.ted",
                                   string.rep("r", 33) } do
                a:refused({ type = "join", room = bad }, ROOM_ERROR)
                a:refused({ type = "say", room = bad, text = "x" }, ROOM_ERROR)
            end
            a:refused({ type = "join", room = 7 }, "field 'room' must be a string")
            a:refused({ type = "join" }, "missing field 'room'")
            local longest = (new_room("longest") .. string.rep("x", 32)):sub(1, 32)
            a:join(longest)
            a:still_talks(longest)
        end)

        it("refuses empty, too long and control-character texts, naming the room", function()
            local room = new_room()
            local a = hello(srv, "ada")
            a:join(room)
            a:refused({ type = "say", room = room, text = "" }, "text is empty", room)
            a:refused({ type = "say", room = room, text = " \n\t " }, "text is empty", room)
            a:refused({ type = "say", room = room, text = string.rep("t", 2001) },
                "text is too long (at most 2000 characters)", room)
            a:refused({ type = "say", room = room, text = "back\rspace" },
                "text contains control characters", room)
            a:refused({ type = "say", room = room, text = "bell\a" },
                "text contains control characters", room)
            a:refused({ type = "say", room = room }, "missing field 'text'")
            a:say(room, string.rep("t", 2000))
            assert.are.equal(2000, #a:expect { type = "message", room = room }.text)
            a:still_talks(room)
        end)

        it("refuses say and leave in a room one is not in", function()
            local room, elsewhere = new_room(), new_room("elsewhere")
            local a, b = hello(srv, "ada"), hello(srv, "bo")
            b:join(elsewhere)
            a:join(room)
            a:refused({ type = "say", room = elsewhere, text = "hi" },
                "you are not in this room", elsewhere)
            a:refused({ type = "leave", room = elsewhere }, "you are not in this room",
                elsewhere)
            b:none({ type = "message" }, QUIET, "the refused say reached the room")
            a:still_talks(room)
        end)

        it("answers unknown types, invalid JSON, non-objects and missing types", function()
            local room = new_room()
            local a = hello(srv, "ada")
            a:join(room)
            a:refused({ type = "dance" }, "unknown type 'dance'")
            a:refused("{\"type\": \"say\", ", "invalid JSON")
            a:refused("not json at all", "invalid JSON")
            a:refused("[1, 2]", "expected a JSON object")
            a:refused("\"hello\"", "expected a JSON object")
            a:refused("{\"room\": \"x\"}", "missing type")
            a:refused("{\"type\": 5}", "field 'type' must be a string")
            a:still_talks(room)
        end)

        it("refuses a binary frame", function()
            local room = new_room()
            local a = hello(srv, "ada")
            a:join(room)
            assert(a.ws:send_binary(cjson.encode { type = "say", room = room, text = "bin" }))
            a:expect { type = "error", error = "binary messages are not supported" }
            a:none({ type = "message", text = "bin" }, QUIET, "the binary say was delivered")
            a:still_talks(room)
        end)
    end)

    describe("the page", function()
        it("serves GET / as text/html: a page that connects with moonwire.js on its own path",
            function()
                local resp = assert(ws.http(srv.port,
                    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"))
                assert.are.equal(200, resp.status)
                assert.matches("^text/html", resp.headers["content-type"])
                assert.is_truthy(resp.body:find("<html", 1, true), "an HTML page")
                assert.is_truthy(resp.body:find("new Moonwire(socketUrl())", 1, true),
                    "the page's script connects with moonwire.js")
                assert.is_truthy(resp.body:find('src="/_moonwire/moonwire.global.js"', 1, true),
                    "and loads it from the server")
            end)
    end)
end)

describe("the chat example's room list", function()
    -- A server for each test: no other test's rooms can change the list while these count.
    local srv
    before_each(function() srv = server.start { app = "examples/chat" } end)
    after_each(function()
        close_all()
        assert.are.equal(0, srv:stop())
    end)

    it("reaches everyone who said hello, and nobody who did not", function()
        local a, b = hello(srv, "ada"), hello(srv, "bo")
        local silent = connect(srv)
        a:join("general")
        for _, x in ipairs { a, b } do
            local msg = x:expect { type = "rooms" }
            assert.are.same({ { name = "general", members = 1 } }, msg.rooms)
        end
        b:join("general")
        b:join("random")
        for _, x in ipairs { a, b } do
            x:expect(function(m)
                return m.type == "rooms" and #m.rooms == 2
                    and listed(m.rooms, "general").members == 2
            end)
        end
        silent:none({}, QUIET, "a connection without hello got a message")
        silent:send { type = "hello", name = "cy" }
        local w = silent:expect { type = "welcome" }
        assert.are.same({ { name = "general", members = 2 }, { name = "random", members = 1 } },
            w.rooms)
        b:abort()
        local msg = silent:expect_list(rooms_with("random", nil))
        assert.are.same({ { name = "general", members = 1 } }, msg.rooms)
    end)

    it("sends a burst of changes as one list, about 250 ms after the first", function()
        local a, b = hello(srv, "ada"), hello(srv, "bo")
        a:join("base")
        a:expect_list(rooms_with("base", 1))
        b:expect_list(rooms_with("base", 1))
        a:none({ type = "rooms" }, 0, "the list came twice for one change")
        b:none({ type = "rooms" }, QUIET, "the list came twice for one change")
        -- Five changes in one write: the server handles them back to back.
        local burst = {}
        for i, msg in ipairs {
            { type = "join", room = "base" }, { type = "join", room = "burst-1" },
            { type = "join", room = "burst-2" }, { type = "leave", room = "burst-2" },
            { type = "join", room = "burst-3" },
        } do burst[i] = ws.frame { payload = cjson.encode(msg) } end
        local t0 = now()
        assert(b.ws:send_raw(table.concat(burst)))
        local list = a:expect { type = "rooms" }
        local after = now() - t0
        assert.is_true(after >= 0.2, "the list came " .. after .. " s after the burst")
        assert.are.same({ { name = "base", members = 2 }, { name = "burst-1", members = 1 },
                          { name = "burst-3", members = 1 } }, list.rooms)
        a:none({ type = "rooms" }, 0.6, "a second list for the same burst")
        b:expect { type = "left", room = "burst-2" }
        assert.are.same(list.rooms, b:expect { type = "rooms" }.rooms)
        b:none({ type = "rooms" }, 0, "b got a second list for the same burst")
    end)
end)

describe("the chat example across a hot reload (SIGHUP)", function()
    local srv
    setup(function() srv = server.start { app = "examples/chat" } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)
    after_each(close_all)

    it("keeps rooms, members, history and presence working, and sends the list again",
        function()
            local a, b = hello(srv, "ada"), hello(srv, "bo")
            a:join("lounge")
            b:join("lounge")
            a:say("lounge", "before the reload")
            b:expect { type = "message", text = "before the reload" }
            a:expect_list(rooms_with("lounge", 2))
            b:expect_list(rooms_with("lounge", 2))
            a:none({ type = "rooms" }, QUIET, "a list with nothing changed")
            b:none({ type = "rooms" }, 0, "a list with nothing changed")

            srv:signal("HUP")
            assert.is_truthy(srv:wait_log("app [^\n]- reloaded %(version 2%)", WAIT),
                "the app reloaded:\n" .. srv:log())
            for _, x in ipairs { a, b } do
                local list = x:expect { type = "rooms" }
                assert.are.same({ { name = "lounge", members = 2 } }, list.rooms)
            end

            b:say("lounge", "after the reload")
            for _, x in ipairs { a, b } do
                assert.are.same(b:user(), x:expect { type = "message",
                                                      text = "after the reload" }.from)
            end
            local c = hello(srv, "cy")
            local joined = c:join("lounge")
            assert.are.same({ a:user(), b:user(), c:user() }, joined.members)
            assert.are.equal(2, #joined.history)
            assert.are.equal("before the reload", joined.history[1].text)
            for _, x in ipairs { a, b } do
                x:expect { type = "presence", event = "join", user = { id = c.id } }
            end
            b:send { type = "leave", room = "lounge" }
            b:expect { type = "left", room = "lounge" }
            for _, x in ipairs { a, c } do
                x:expect { type = "presence", event = "leave", user = { id = b.id } }
            end
            c:abort()
            a:expect { type = "presence", event = "leave", user = { id = c.id } }
            a:expect_list(rooms_with("lounge", 1))
        end)
end)

-- Sign-in with a JWT (JWT_SECRET set in a copy of the app): tokens made by another
-- implementation, python3-jwt, the way a login backend would make them.
describe("the chat example with JWT_SECRET set", function()
    local helpers = require "helpers"
    local SECRET = "login-backend-secret-0123456789abcdef"
    local PYTHON = "/usr/bin/python3"
    -- sign SECRET CLAIMS_JSON [none]: an HS256 token, or an unsigned `alg: none` one.
    local PY = [[
import json, sys, time
import jwt
claims = json.loads(sys.argv[2])
for k in ("exp", "iat"):
    if k in claims: claims[k] = int(time.time()) + claims[k]
if len(sys.argv) > 3:
    print(jwt.encode(claims, None, algorithm="none"))
else:
    print(jwt.encode(claims, sys.argv[1], algorithm="HS256"))
]]
    local srv, dir, py

    -- A token; exp and iat in claims are seconds from now.
    local function token(claims, secret, alg_none)
        local cmd = table.concat({ PYTHON, py, helpers.shell_quote(secret or SECRET),
            helpers.shell_quote(cjson.encode(claims)), alg_none and "none" or "" }, " ")
        local p = assert(io.popen(cmd .. " 2>&1"))
        local out = p:read("a")
        assert(p:close(), cmd .. " failed: " .. out)
        return (out:gsub("%s+$", ""))
    end

    -- The handshake's answer: the client, or nil and the refusal's status and body.
    local function upgrade(opts)
        opts.timeout = WAIT
        local c, err, resp = ws.connect(srv.port, opts)
        if c then
            local client = setmetatable({ ws = c, inbox = {} }, Client)
            clients[#clients + 1] = client
            return client
        end
        assert(resp and resp.status, "the handshake failed: " .. tostring(err))
        return nil, resp.status, (resp.body or ""):gsub("\n$", "")
    end

    setup(function()
        dir = server.tmpdir()
        assert(os.execute("cp -R examples/chat/. " .. helpers.shell_quote(dir)))
        local src = helpers.read_file(dir .. "/app.lua")
        local set, n = src:gsub("\nlocal JWT_SECRET = nil\n",
            ("\nlocal JWT_SECRET = %q\n"):format(SECRET))
        assert.are.equal(1, n, "app.lua holds `local JWT_SECRET = nil`")
        helpers.write_file(dir .. "/app.lua", set)
        py = dir .. "/sign.py"
        helpers.write_file(py, PY)
        srv = server.start { app = dir }
    end)
    teardown(function()
        close_all()
        if srv then assert.are.equal(0, srv:stop()) end
        server.remove(dir)
    end)

    it("accepts a valid token in the query, a Bearer field or a cookie; its name wins", function()
        local ways = {
            function(t) return { path = "/?room=x&token=" .. t } end,
            function(t) return { headers = { "Authorization: Bearer " .. t } } end,
            function(t) return { headers = { "Cookie: theme=dark; token=" .. t } } end,
        }
        for i, way in ipairs(ways) do
            local name = "ada " .. i
            local c = assert(upgrade(way(token { name = name, sub = "u" .. i, exp = 600 })))
            -- hello's own name is ignored: the token says who this is.
            c:send { type = "hello", name = "mallory" }
            local welcome = c:expect { type = "welcome" }
            assert.are.equal(name, welcome.name)
            c:send { type = "hello" }
            assert.are.equal("you already said hello", c:expect { type = "error" }.error)
        end
        -- No name claim: sub is the name. And hello may leave out the name.
        local c = assert(upgrade { path = "/?token=" .. token { sub = "bo", exp = 600 } })
        c:send { type = "hello" }
        assert.are.equal("bo", c:expect { type = "welcome" }.name)
        c:join("lounge")
    end)

    it("refuses with 401 and the reason: missing, expired, wrong secret, alg none, no exp, "
        .. "a bad name", function()
        local cases = {
            { {}, "missing" },
            { { path = "/?token=" }, "missing" },
            { { path = "/?token=" .. token { name = "ada", exp = -120 } }, "expired" },
            { { path = "/?token=" .. token({ name = "ada", exp = 600 }, "another-secret") },
              "bad_signature" },
            { { path = "/?token=" .. token({ name = "ada", exp = 600 }, nil, true) },
              "unsupported_algorithm" },
            { { headers = { "Authorization: Bearer not.a.token" } }, "malformed" },
            { { path = "/?token=" .. token { name = "ada" } }, "no_expiry" },
            { { path = "/?token=" .. token { name = "a\1b", exp = 600 } },
              "bad_name: name contains control characters" },
            { { path = "/?token=" .. token { exp = 600 } }, "bad_name: name must be a string" },
        }
        for _, case in ipairs(cases) do
            local c, status, body = upgrade(case[1])
            assert.is_nil(c, case[2] .. ": the upgrade was accepted")
            assert.are.same({ 401, case[2] }, { status, body }, case[2])
        end
        -- Within the leeway (30 s), a token that just expired still works.
        assert(upgrade { path = "/?token=" .. token { name = "ada", exp = -5 } })
    end)
end)

describe("the chat example without JWT_SECRET", function()
    local srv
    setup(function() srv = server.start { app = "examples/chat" } end)
    teardown(function() close_all() assert.are.equal(0, srv:stop()) end)

    it("ignores tokens and takes hello's name, as always", function()
        local c = setmetatable({ ws = assert(ws.connect(srv.port, {
            timeout = WAIT, path = "/?token=whatever",
            headers = { "Authorization: Bearer x.y.z" } })), inbox = {} }, Client)
        clients[#clients + 1] = c
        c:send { type = "hello" }
        assert.are.equal("missing field 'name'", c:expect { type = "error" }.error)
        c:send { type = "hello", name = "ada" }
        assert.are.equal("ada", c:expect { type = "welcome" }.name)
    end)
end)
