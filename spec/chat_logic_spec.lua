-- The chat example, with no server: its input rules (examples/chat/validate.lua) as labelled
-- cases of input -> cleaned value or reason, then the app (examples/chat/app.lua) and its
-- protocol on the fake mw of spec/support/fake_mw.lua.
-- The repository's root, from this file's path, so the spec runs from any working directory.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/.."
package.path = ROOT .. "/examples/chat/?.lua;" .. package.path
local validate = require "validate"

-- Runs cases { label, input, want = cleaned value } or { label, input, err = reason pattern }.
local function check(fn, cases)
    for _, case in ipairs(cases) do
        it(case.label, function()
            local value, err = fn(case.input)
            if case.err then
                assert.is_nil(value)
                assert.is_string(err)
                assert.truthy(err:find(case.err), "reason: " .. tostring(err))
            else
                assert.is_nil(err)
                assert.equal(case.want, value)
            end
        end)
    end
end

describe("chat validate", function()
    describe("trim", function()
        check(validate.trim, {
            { label = "leaves a clean string alone", input = "ada", want = "ada" },
            { label = "strips spaces, tabs and newlines at both ends",
              input = " \t\nada lovelace \r\n", want = "ada lovelace" },
            { label = "keeps inner white space", input = "a  b", want = "a  b" },
            { label = "gives the empty string for blanks", input = " \t ", want = "" },
            { label = "gives the empty string for the empty string", input = "", want = "" },
        })

        it("is linear: a long run of inner spaces costs no backtracking", function()
            local s = "x" .. string.rep(" ", 200000) .. "y" .. string.rep(" ", 200000)
            local start = os.clock()
            assert.equal(#s - 200000, #validate.trim(s))
            assert.is_true(os.clock() - start < 0.5)
        end)
    end)

    describe("name", function()
        check(validate.name, {
            { label = "a plain name", input = "ada", want = "ada" },
            { label = "is trimmed", input = "  ada  ", want = "ada" },
            { label = "inner spaces are kept", input = "Ada Lovelace", want = "Ada Lovelace" },
            { label = "1 character is enough", input = "x", want = "x" },
            { label = "24 characters are allowed", input = string.rep("a", 24),
              want = string.rep("a", 24) },
            { label = "24 multi-byte characters are allowed (counted as characters)",
              input = string.rep("é", 24), want = string.rep("é", 24) },
            { label = "emoji count as one character each", input = string.rep("🙂", 24),
              want = string.rep("🙂", 24) },
            { label = "25 characters are too long", input = string.rep("a", 25),
              err = "too long" },
            { label = "25 multi-byte characters are too long", input = string.rep("é", 25),
              err = "too long" },
            { label = "far too long is refused before any work", input = string.rep("a", 5000),
              err = "too long" },
            { label = "spaces around 24 characters do not count",
              input = "   " .. string.rep("a", 24) .. "   ", want = string.rep("a", 24) },
            { label = "empty is refused", input = "", err = "empty" },
            { label = "blank is refused", input = "   ", err = "empty" },
            { label = "a newline inside is refused", input = "a\nb", err = "control" },
            { label = "a tab inside is refused", input = "a\tb", err = "control" },
            { label = "NUL is refused", input = "a\0b", err = "control" },
            { label = "ESC is refused", input = "a\27[31mb", err = "control" },
            { label = "DEL is refused", input = "a\127b", err = "control" },
            { label = "a C1 control is refused", input = "a\u{85}b", err = "control" },
            { label = "a bidi override is refused", input = "a\u{202E}b", err = "control" },
            { label = "a bidi isolate is refused", input = "a\u{2067}b", err = "control" },
            { label = "the line separator is refused", input = "a\u{2028}b", err = "control" },
            { label = "invalid UTF-8 is refused", input = "a\xffb", err = "UTF%-8" },
            { label = "a surrogate (CESU from a JSON escape) is refused",
              input = "a\xed\xa0\x80b", err = "UTF%-8" },
            { label = "a number is refused", input = 42, err = "string" },
            { label = "nil is refused", input = nil, err = "string" },
        })
    end)

    describe("room", function()
        check(validate.room, {
            { label = "letters", input = "general", want = "general" },
            { label = "case is kept", input = "General", want = "General" },
            { label = "digits, underscore and dash", input = "team_42-b", want = "team_42-b" },
            { label = "1 character", input = "a", want = "a" },
            { label = "32 characters", input = string.rep("r", 32), want = string.rep("r", 32) },
            { label = "33 characters are too long", input = string.rep("r", 33), err = "1 to 32" },
            { label = "empty is refused", input = "", err = "1 to 32" },
            { label = "a space is refused (no trimming)", input = " general", err = "1 to 32" },
            { label = "a dot is refused", input = "a.b", err = "1 to 32" },
            { label = "a slash is refused", input = "a/b", err = "1 to 32" },
            { label = "a colon is refused", input = "room:x", err = "1 to 32" },
            { label = "non-ASCII letters are refused", input = "café", err = "1 to 32" },
            { label = "NUL is refused", input = "a\0", err = "1 to 32" },
            { label = "a table is refused", input = {}, err = "string" },
        })
    end)

    describe("text", function()
        check(validate.text, {
            { label = "plain text", input = "hello there", want = "hello there" },
            { label = "is trimmed", input = "\n  hello  \n", want = "hello" },
            { label = "line breaks and tabs inside are kept", input = "a\n\tb", want = "a\n\tb" },
            { label = "2000 characters are allowed", input = string.rep("x", 2000),
              want = string.rep("x", 2000) },
            { label = "2000 four-byte characters are allowed", input = string.rep("🙂", 2000),
              want = string.rep("🙂", 2000) },
            { label = "2001 characters are too long", input = string.rep("x", 2001),
              err = "too long" },
            { label = "empty is refused", input = "", err = "empty" },
            { label = "only white space is refused", input = " \n\t ", err = "empty" },
            { label = "CR LF line ends become LF", input = "a\r\nb\r\n\r\nc", want = "a\nb\n\nc" },
            { label = "a lone carriage return is refused", input = "a\rb", err = "control" },
            { label = "NUL is refused", input = "a\0b", err = "control" },
            { label = "ESC is refused", input = "\27[2Jboo", err = "control" },
            { label = "a bidi override is refused", input = "abc\u{202D}def", err = "control" },
            { label = "invalid UTF-8 is refused", input = "\xc3", err = "UTF%-8" },
            { label = "a boolean is refused", input = true, err = "string" },
        })
    end)
end)

-- ---- the app, on the fake server -------------------------------------------------------------

-- examples/chat/app.lua loaded the way the server loads it (a sandbox-like environment with
-- the real moonwire.rooms and moonwire.router), driven through its handlers.
package.path = ROOT .. "/spec/support/?.lua;" .. package.path
local fake_mw = require "fake_mw"

local APP_DIR = ROOT .. "/examples/chat"

local function start()
    local fake = fake_mw.new { app_dir = APP_DIR }
    return fake, fake:require "app"
end

local function say(fake, app, conn, msg)
    app.message(conn, fake.mw.json.encode(msg), false)
end

-- What conn was sent since the last call, decoded.
local function inbox(fake, conn)
    local out = fake:sent_json(conn)
    fake:clear_sent(conn)
    return out
end

local function types(messages)
    local out = {}
    for i, m in ipairs(messages) do out[i] = m.type end
    return out
end

-- A conn that said hello as name (its welcome already read).
local function user(fake, app, name)
    local conn = fake:conn()
    say(fake, app, conn, { type = "hello", name = name })
    local got = inbox(fake, conn)
    assert(got[1] and got[1].type == "welcome", "no welcome for " .. name)
    return conn
end

local function disconnect(app, conn)
    conn:close()
    app.close(conn, 1001, "")
end

describe("chat app", function()
    it("asks for hello before anything else", function()
        local fake, app = start()
        local c = fake:conn()
        for _, msg in ipairs {
            { type = "join", room = "general" },
            { type = "say", room = "general", text = "hi" },
            { type = "leave", room = "general" },
        } do
            say(fake, app, c, msg)
            assert.same({ { type = "error", error = "say hello first" } }, inbox(fake, c))
        end
        assert.is_nil(fake.mw.state["moonwire.rooms"] and next(fake.mw.state["moonwire.rooms"]
            .rooms))
    end)

    it("welcomes with id, cleaned name and the rooms that exist", function()
        local fake, app = start()
        local a = user(fake, app, "ada")
        say(fake, app, a, { type = "join", room = "general" })
        local b = fake:conn()
        say(fake, app, b, { type = "hello", name = "  bo  " })
        assert.same({ { type = "welcome", id = b.id, name = "bo",
                        rooms = { { name = "general", members = 1 } } } }, inbox(fake, b))
        assert.is_true(fake:subscribed(b, "lobby"))
    end)

    it("refuses a bad name and a second hello", function()
        local fake, app = start()
        local c = fake:conn()
        say(fake, app, c, { type = "hello", name = "a\27b" })
        assert.same({ { type = "error", error = "name contains control characters" } },
                    inbox(fake, c))
        say(fake, app, c, { type = "hello", name = "ok" })
        assert.equal("welcome", inbox(fake, c)[1].type)
        say(fake, app, c, { type = "hello", name = "again" })
        assert.same({ { type = "error", error = "you already said hello" } }, inbox(fake, c))
    end)

    it("joined lists the members; the others get presence, the joiner does not", function()
        local fake, app = start()
        local a, b = user(fake, app, "ada"), user(fake, app, "bo")
        say(fake, app, a, { type = "join", room = "general" })
        assert.same({ { type = "joined", room = "general",
                        members = { { id = a.id, name = "ada" } }, history = {} } },
                    inbox(fake, a))
        say(fake, app, b, { type = "join", room = "general" })
        assert.same({ { type = "presence", room = "general", event = "join",
                        user = { id = b.id, name = "bo" } } }, inbox(fake, a))
        local got = inbox(fake, b)
        assert.same({ "joined" }, types(got))
        assert.same({ { id = a.id, name = "ada" }, { id = b.id, name = "bo" } }, got[1].members)
    end)

    it("joining a room again is a harmless refresh", function()
        local fake, app = start()
        local a = user(fake, app, "ada")
        say(fake, app, a, { type = "join", room = "general" })
        inbox(fake, a)
        say(fake, app, a, { type = "join", room = "general" })
        assert.same({ "joined" }, types(inbox(fake, a)))
        assert.equal(1, #fake.mw.state["moonwire.rooms"].rooms.general:members())
    end)

    it("refuses bad room names", function()
        local fake, app = start()
        local a = user(fake, app, "ada")
        say(fake, app, a, { type = "join", room = "no spaces" })
        local got = inbox(fake, a)
        assert.equal("error", got[1].type)
        assert.truthy(got[1].error:find("1 to 32"))
    end)

    it("say fans out one message to the room, sender included", function()
        local fake, app = start()
        local a, b, c = user(fake, app, "ada"), user(fake, app, "bo"), user(fake, app, "cy")
        say(fake, app, a, { type = "join", room = "general" })
        say(fake, app, b, { type = "join", room = "general" })
        inbox(fake, a)
        inbox(fake, b)
        local published = #fake.published
        say(fake, app, a, { type = "say", room = "general", text = "  hello\nthere  " })
        assert.equal(published + 1, #fake.published)
        local want = { type = "message", room = "general", from = { id = a.id, name = "ada" },
                       text = "hello\nthere" }
        for _, conn in ipairs { a, b } do
            local got = inbox(fake, conn)
            assert.equal(1, #got)
            assert.is_number(got[1].ts)
            got[1].ts = nil
            assert.same(want, got[1])
        end
        assert.same({}, inbox(fake, c))
    end)

    it("refuses say from outside the room and bad text", function()
        local fake, app = start()
        local a, b = user(fake, app, "ada"), user(fake, app, "bo")
        say(fake, app, a, { type = "join", room = "general" })
        inbox(fake, a)
        say(fake, app, b, { type = "say", room = "general", text = "hi" })
        assert.same({ { type = "error", error = "you are not in this room", room = "general" } },
                    inbox(fake, b))
        say(fake, app, a, { type = "say", room = "general", text = "   " })
        assert.same({ { type = "error", error = "text is empty", room = "general" } },
                    inbox(fake, a))
        say(fake, app, a, { type = "say", room = "general", text = string.rep("x", 2001) })
        assert.equal("error", inbox(fake, a)[1].type)
        say(fake, app, a, { type = "say", room = "general" })
        assert.same({ { type = "error", error = "missing field 'text'" } }, inbox(fake, a))
    end)

    it("newcomers get the last 50 messages, oldest first", function()
        local fake, app = start()
        local a, b = user(fake, app, "ada"), user(fake, app, "bo")
        say(fake, app, a, { type = "join", room = "general" })
        for i = 1, 60 do say(fake, app, a, { type = "say", room = "general", text = "m" .. i }) end
        say(fake, app, b, { type = "join", room = "general" })
        local history = inbox(fake, b)[1].history
        assert.equal(50, #history)
        assert.equal("m11", history[1].text)
        assert.equal("m60", history[50].text)
        assert.same({ id = a.id, name = "ada" }, history[50].from)
    end)

    it("leave answers left and tells the others", function()
        local fake, app = start()
        local a, b = user(fake, app, "ada"), user(fake, app, "bo")
        say(fake, app, a, { type = "join", room = "general" })
        say(fake, app, b, { type = "join", room = "general" })
        inbox(fake, a)
        inbox(fake, b)
        say(fake, app, b, { type = "leave", room = "general" })
        assert.same({ { type = "left", room = "general" } }, inbox(fake, b))
        assert.same({ { type = "presence", room = "general", event = "leave",
                        user = { id = b.id, name = "bo" } } }, inbox(fake, a))
        say(fake, app, b, { type = "leave", room = "general" })
        assert.same({ { type = "error", error = "you are not in this room", room = "general" } },
                    inbox(fake, b))
    end)

    it("a disconnect leaves every room with a presence leave", function()
        local fake, app = start()
        local a, b = user(fake, app, "ada"), user(fake, app, "bo")
        for _, room in ipairs { "one", "two" } do
            say(fake, app, a, { type = "join", room = room })
            say(fake, app, b, { type = "join", room = room })
        end
        inbox(fake, a)
        disconnect(app, b)
        local got = inbox(fake, a)
        assert.same({ "presence", "presence" }, types(got))
        assert.same({ "leave", "leave" }, { got[1].event, got[2].event })
        assert.same({ "one", "two" }, { got[1].room, got[2].room })
        assert.same({ id = b.id, name = "bo" }, got[1].user)
    end)

    it("the lobby hears the room list once per burst; empty rooms close", function()
        local fake, app = start()
        local a, watcher = user(fake, app, "ada"), user(fake, app, "watcher")
        say(fake, app, a, { type = "join", room = "one" })
        say(fake, app, a, { type = "join", room = "two" })
        fake:advance(249)
        assert.same({}, inbox(fake, watcher))
        fake:advance(1)
        assert.same({ { type = "rooms", rooms = { { name = "one", members = 1 },
                                                  { name = "two", members = 1 } } } },
                    inbox(fake, watcher))
        disconnect(app, a)
        fake:advance(250)
        local got = inbox(fake, watcher)
        assert.equal(1, #got)
        assert.equal("rooms", got[1].type)
        assert.same({}, got[1].rooms)     -- {} and [] decode alike
        assert.is_nil(fake.mw.state["moonwire.rooms"].rooms.one)
    end)

    it("one connection can be in at most 10 rooms", function()
        local fake, app = start()
        local a = user(fake, app, "ada")
        for i = 1, 10 do say(fake, app, a, { type = "join", room = "r" .. i }) end
        assert.equal(10, #inbox(fake, a))
        say(fake, app, a, { type = "join", room = "r11" })
        local got = inbox(fake, a)
        assert.same({ "error" }, types(got))
        assert.equal("r11", got[1].room)
    end)

    it("answers binary messages and bad JSON with an error", function()
        local fake, app = start()
        local a = fake:conn()
        app.message(a, "\1\2", true)
        assert.same({ { type = "error", error = "binary messages are not supported" } },
                    inbox(fake, a))
        app.message(a, "{nope", false)
        assert.same({ { type = "error", error = "invalid JSON" } }, inbox(fake, a))
    end)

    it("a hot reload keeps rooms, names and history, and sends the room list", function()
        local fake, app = start()
        local a, b = user(fake, app, "ada"), user(fake, app, "bo")
        say(fake, app, a, { type = "join", room = "general" })
        say(fake, app, a, { type = "say", room = "general", text = "before" })
        fake:advance(1000)
        inbox(fake, a)
        inbox(fake, b)
        local new_app = fake:reload(function(f) return f:require "app" end)
        new_app.reload(app)
        assert.same({ { type = "rooms", rooms = { { name = "general", members = 1 } } } },
                    inbox(fake, b))
        say(fake, new_app, b, { type = "join", room = "general" })
        local got = inbox(fake, b)[1]
        assert.equal("before", got.history[1].text)
        assert.same({ { id = a.id, name = "ada" }, { id = b.id, name = "bo" } }, got.members)
        say(fake, new_app, a, { type = "say", room = "general", text = "after" })
        assert.equal("after", inbox(fake, b)[1].text)
    end)
end)
