-- The chat example (examples/chat/app.lua) in the real runtime, through its protocol: hello,
-- rooms, presence, history, the lobby's room list, limits and a hot reload.
--   build/moonwire test examples/chat/spec
local t = require "moonwire.test"

local server

before_each(function()
    server = t.start() -- examples/chat, the app above this folder
end)

after_each(function()
    server:stop()
end)

-- Every message waiting for client, decoded.
local function inbox(client)
    local out = {}
    for _, text in ipairs(client:receive_all()) do out[#out + 1] = t.json.decode(text) end
    return out
end

local function types(messages)
    local out = {}
    for i, m in ipairs(messages) do out[i] = m.type end
    return out
end

-- A client that said hello as name, its welcome read; client.id is its connection id.
local function user(name)
    local client = assert(server:connect())
    client:send_json { type = "hello", name = name }
    local welcome = client:receive_json()
    assert(welcome and welcome.type == "welcome", "no welcome for " .. name)
    client.id = welcome.id
    return client
end

describe("chat app", function()
    it("asks for hello before anything else", function()
        local c = server:connect()
        for _, msg in ipairs {
            { type = "join", room = "general" },
            { type = "say", room = "general", text = "hi" },
            { type = "leave", room = "general" },
        } do
            c:send_json(msg)
            assert.same({ { type = "error", error = "say hello first" } }, inbox(c))
        end
        c:send_json { type = "hello", name = "ada" }
        assert.same({}, inbox(c)[1].rooms) -- the join made no room ({} and [] decode alike)
    end)

    it("welcomes with id, cleaned name and the rooms that exist", function()
        local a = user("ada")
        a:send_json { type = "join", room = "general" }
        local b = server:connect()
        b:send_json { type = "hello", name = "  bo  " }
        local welcome = b:receive_json()
        assert.is_number(welcome.id)
        assert.not_equal(a.id, welcome.id)
        assert.same({ type = "welcome", id = welcome.id, name = "bo",
                      rooms = { { name = "general", members = 1 } } }, welcome)
        -- bo is in the lobby: the next change of the room list reaches him.
        a:send_json { type = "join", room = "other" }
        server:advance(250)
        assert.same({ "rooms" }, types(inbox(b)))
    end)

    it("refuses a bad name and a second hello", function()
        local c = server:connect()
        c:send_json { type = "hello", name = "a\27b" }
        assert.same({ { type = "error", error = "name contains control characters" } }, inbox(c))
        c:send_json { type = "hello", name = "ok" }
        assert.equal("welcome", inbox(c)[1].type)
        c:send_json { type = "hello", name = "again" }
        assert.same({ { type = "error", error = "you already said hello" } }, inbox(c))
    end)

    it("joined lists the members; the others get presence, the joiner does not", function()
        local a, b = user("ada"), user("bo")
        a:send_json { type = "join", room = "general" }
        assert.same({ { type = "joined", room = "general",
                        members = { { id = a.id, name = "ada" } }, history = {} } }, inbox(a))
        b:send_json { type = "join", room = "general" }
        assert.same({ { type = "presence", room = "general", event = "join",
                        user = { id = b.id, name = "bo" } } }, inbox(a))
        local got = inbox(b)
        assert.same({ "joined" }, types(got))
        assert.same({ { id = a.id, name = "ada" }, { id = b.id, name = "bo" } }, got[1].members)
    end)

    it("joining a room again is a harmless refresh", function()
        local a = user("ada")
        a:send_json { type = "join", room = "general" }
        inbox(a)
        a:send_json { type = "join", room = "general" }
        local got = inbox(a)
        assert.same({ "joined" }, types(got))
        assert.equal(1, #got[1].members)
    end)

    it("refuses bad room names", function()
        local a = user("ada")
        a:send_json { type = "join", room = "no spaces" }
        local got = inbox(a)
        assert.equal("error", got[1].type)
        assert.truthy(got[1].error:find("1 to 32"))
    end)

    it("say fans out one message to the room, sender included", function()
        local a, b, c = user("ada"), user("bo"), user("cy")
        a:send_json { type = "join", room = "general" }
        b:send_json { type = "join", room = "general" }
        inbox(a)
        inbox(b)
        a:send_json { type = "say", room = "general", text = "  hello\nthere  " }
        local want = { type = "message", room = "general", from = { id = a.id, name = "ada" },
                       text = "hello\nthere", ts = os.time() }
        for _, client in ipairs { a, b } do
            local got = inbox(client)
            assert.equal(1, #got)
            assert.is_true(math.abs(got[1].ts - want.ts) <= 1)
            got[1].ts = want.ts
            assert.same(want, got[1])
        end
        assert.same({}, inbox(c))
    end)

    it("refuses say from outside the room and bad text", function()
        local a, b = user("ada"), user("bo")
        a:send_json { type = "join", room = "general" }
        inbox(a)
        b:send_json { type = "say", room = "general", text = "hi" }
        assert.same({ { type = "error", error = "you are not in this room", room = "general" } },
                    inbox(b))
        a:send_json { type = "say", room = "general", text = "   " }
        assert.same({ { type = "error", error = "text is empty", room = "general" } }, inbox(a))
        a:send_json { type = "say", room = "general", text = string.rep("x", 2001) }
        assert.equal("error", inbox(a)[1].type)
        a:send_json { type = "say", room = "general" }
        assert.same({ { type = "error", error = "missing field 'text'" } }, inbox(a))
    end)

    it("newcomers get the last 50 messages, oldest first", function()
        local a, b = user("ada"), user("bo")
        a:send_json { type = "join", room = "general" }
        for i = 1, 60 do a:send_json { type = "say", room = "general", text = "m" .. i } end
        b:send_json { type = "join", room = "general" }
        local history = inbox(b)[1].history
        assert.equal(50, #history)
        assert.equal("m11", history[1].text)
        assert.equal("m60", history[50].text)
        assert.same({ id = a.id, name = "ada" }, history[50].from)
    end)

    it("leave answers left and tells the others", function()
        local a, b = user("ada"), user("bo")
        a:send_json { type = "join", room = "general" }
        b:send_json { type = "join", room = "general" }
        inbox(a)
        inbox(b)
        b:send_json { type = "leave", room = "general" }
        assert.same({ { type = "left", room = "general" } }, inbox(b))
        assert.same({ { type = "presence", room = "general", event = "leave",
                        user = { id = b.id, name = "bo" } } }, inbox(a))
        b:send_json { type = "leave", room = "general" }
        assert.same({ { type = "error", error = "you are not in this room", room = "general" } },
                    inbox(b))
    end)

    it("a disconnect leaves every room with a presence leave", function()
        local a, b = user("ada"), user("bo")
        for _, room in ipairs { "one", "two" } do
            a:send_json { type = "join", room = room }
            b:send_json { type = "join", room = room }
        end
        inbox(a)
        b:close(1001)
        local got = inbox(a)
        assert.same({ "presence", "presence" }, types(got))
        assert.same({ "leave", "leave" }, { got[1].event, got[2].event })
        assert.same({ "one", "two" }, { got[1].room, got[2].room })
        assert.same({ id = b.id, name = "bo" }, got[1].user)
    end)

    it("the lobby hears the room list once per burst; empty rooms close", function()
        local a, watcher = user("ada"), user("watcher")
        a:send_json { type = "join", room = "one" }
        a:send_json { type = "join", room = "two" }
        server:advance(249)
        assert.same({}, inbox(watcher))
        server:advance(1)
        assert.same({ { type = "rooms", rooms = { { name = "one", members = 1 },
                                                  { name = "two", members = 1 } } } },
                    inbox(watcher))
        a:drop()
        server:advance(250)
        local got = inbox(watcher)
        assert.equal(1, #got)
        assert.equal("rooms", got[1].type)
        assert.same({}, got[1].rooms)
    end)

    it("one connection can be in at most 10 rooms", function()
        local a = user("ada")
        for i = 1, 10 do a:send_json { type = "join", room = "r" .. i } end
        assert.equal(10, #inbox(a))
        a:send_json { type = "join", room = "r11" }
        local got = inbox(a)
        assert.same({ "error" }, types(got))
        assert.equal("r11", got[1].room)
    end)

    it("answers binary messages and bad JSON with an error", function()
        local a = server:connect()
        a:send_binary("\1\2")
        assert.same({ { type = "error", error = "binary messages are not supported" } }, inbox(a))
        a:send("{nope")
        assert.same({ { type = "error", error = "invalid JSON" } }, inbox(a))
        assert.is_false(a.closed)
    end)

    it("serves its page, and answers the announcement endpoint as configured", function()
        local status, body, headers = server:request { path = "/" }
        assert.equal(200, status)
        assert.truthy(headers["content-type"]:find("text/html", 1, true))
        assert.truthy(body:find("<title>moonwire chat</title>", 1, true))
        -- ANNOUNCE_SECRET is unset in the example: announcements are off.
        status, body = server:request { method = "POST", path = "/api/announce", body = "hi" }
        assert.equal(403, status)
        assert.truthy(body:find("announcements are off", 1, true))
        status = server:request { path = "/api/announce" }
        assert.equal(405, status)
        status = server:request { method = "POST", path = "/api/nothing" }
        assert.equal(404, status)
    end)

    it("a hot reload keeps rooms, names and history, and sends the room list", function()
        local a, b = user("ada"), user("bo")
        a:send_json { type = "join", room = "general" }
        a:send_json { type = "say", room = "general", text = "before" }
        server:advance(1000)
        inbox(a)
        inbox(b)
        server:reload()
        assert.truthy(server:logged("reloaded"))
        assert.same({ { type = "rooms", rooms = { { name = "general", members = 1 } } } },
                    inbox(b))
        b:send_json { type = "join", room = "general" }
        local got = inbox(b)[1]
        assert.equal("before", got.history[1].text)
        assert.same({ { id = a.id, name = "ada" }, { id = b.id, name = "bo" } }, got.members)
        a:send_json { type = "say", room = "general", text = "after" }
        assert.equal("after", inbox(b)[1].text)
    end)
end)
