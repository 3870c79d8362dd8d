-- The example apps' pages in headless Chromium, served by the real server, measured rather than
-- looked at: element boxes (getBoundingClientRect), what is on top at a point
-- (elementFromPoint), the labels the game page computes and the canvas pixels it draws.
--   chat, phone (390x844): the messages get the width, rooms and members are drawers that open
--     from the room bar; the name screen shows no connection state ("offline") before a name
--   chat, laptop (1366x768): the three columns as before, no drawer buttons
--   game: a player at the top-left corner keeps its name inside the arena (drawn below it)
-- and neither page logs an error (a 404, for /favicon.ico or anything else, would be one).
-- Screenshots go to a temporary folder, removed afterwards, or to $MOONWIRE_SCREENSHOTS.
local chromium = require "chromium"
local server = require "server"
local ws = require "ws_client"
local cjson = require "cjson"

local WAIT = 5

local browser_path, no_browser = chromium.available()

-- The box of the element with this id, in CSS pixels, plus whether it is shown at all.
local function box(page, id)
    return page:eval(([[
(() => {
    const e = document.getElementById(%q);
    const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom, width: r.width,
             height: r.height, shown: r.width > 0 && r.height > 0 && cs.display !== 'none' &&
             cs.visibility !== 'hidden' };
})()]]):format(id))
end

-- Whether the element with this id is what a tap at its centre reaches (nothing covers it).
local function reachable(page, id)
    return page:eval(([[
(() => {
    const e = document.getElementById(%q), r = e.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return r.width > 0 && hit !== null && (hit === e || e.contains(hit));
})()]]):format(id))
end

local function click(page, id)
    page:eval(("document.getElementById(%q).click(), true"):format(id))
end

-- Resolves after two animation frames: layout and drawing have caught up.
local FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"

local function screenshots()
    local keep = os.getenv("MOONWIRE_SCREENSHOTS")
    if keep then
        os.execute("mkdir -p '" .. keep:gsub("'", "'\\''") .. "'")
        return keep, true
    end
    return server.tmpdir(), false
end

-- A fresh visitor: nothing remembered from an earlier test (names, rooms).
local function fresh_visit(page, url)
    page:navigate(url)
    page:eval("localStorage.clear(), true")
    page:navigate(url)
end

describe("the chat page", function()
    if not browser_path then
        pending(no_browser)
        return
    end

    local srv, browser, page, shots, keep
    local others = {}

    setup(function()
        srv = server.start { app = "examples/chat" }
        shots, keep = screenshots()
        browser = chromium.start()
        page = browser:new_page()
    end)

    teardown(function()
        for _, c in ipairs(others) do pcall(c.abort, c) end
        if browser then browser:stop() end
        if shots and not keep then server.remove(shots) end
        if srv then assert.are.equal(0, srv:stop()) end
    end)

    local function url() return ("http://127.0.0.1:%d/"):format(srv.port) end

    -- Someone else in #general, so that the members list has more than the page's user.
    local function other(name)
        local c = assert(ws.connect(srv.port, { timeout = WAIT }))
        others[#others + 1] = c
        assert(c:send_text(cjson.encode { type = "hello", name = name }))
        assert(c:send_text(cjson.encode { type = "join", room = "general" }))
        return c
    end

    it("shows the name screen with no connection state, then goes in once named", function()
        page:set_viewport(390, 844, 3, true)
        fresh_visit(page, url())
        assert.is_true(box(page, "name-screen").shown)
        assert.is_false(box(page, "status").shown, "the connection state on the name screen")
        page:pump(0.6)
        local text = page:eval("document.body.innerText")
        assert.is_nil(text:lower():find("offline", 1, true), "the name screen says: " .. text)
        assert.is_nil(text:lower():find("connecting", 1, true), "the name screen says: " .. text)
        page:screenshot(shots .. "/chat-phone-name.png")

        other("bo")
        page:eval([[document.getElementById('name-input').value = 'ada',
                    document.getElementById('name-form').requestSubmit(), true]])
        page:wait_for("document.getElementById('room-title').textContent === '# general'", WAIT)
        assert.is_true(box(page, "status").shown, "the connection state, once in")
        assert.are.equal("online", page:eval("document.getElementById('status').textContent"))
        assert.are.same({}, page:errors())
    end)

    it("gives the messages the width of a phone; rooms and members open as drawers", function()
        page:set_viewport(390, 844, 3, true)
        page:wait_for("document.querySelectorAll('#member-list li').length === 2", WAIT)
        local width = page:eval("innerWidth")
        assert.are.equal(390, width)
        local messages = box(page, "messages")
        assert.is_true(messages.width >= 0.8 * width,
            ("the messages are %.0f px wide of %d"):format(messages.width, width))
        assert.is_true(page:eval("document.documentElement.scrollWidth") <= width,
            "no horizontal overflow")
        assert.is_false(box(page, "rooms-pane").shown, "the rooms drawer starts closed")
        assert.is_false(box(page, "members-pane").shown, "the members drawer starts closed")
        assert.is_true(reachable(page, "say-input"), "the message box is free to type in")
        assert.is_true(reachable(page, "members-toggle"))
        assert.is_true(reachable(page, "rooms-toggle"))
        assert.are.equal("2", page:eval(
            "document.getElementById('members-toggle-count').textContent"))

        -- Members: the toggle slides them in, whole and on top; the backdrop closes them.
        click(page, "members-toggle")
        page:wait_for([[(() => { const r = document.getElementById('members-pane')
            .getBoundingClientRect(); return r.left >= 0 && r.right <= innerWidth + 0.5 &&
            r.width > 200; })()]], WAIT)
        local members = box(page, "members-pane")
        assert.is_true(members.shown)
        assert.is_true(reachable(page, "member-list"), "the members list is on top")
        local names = page:eval(
            "[...document.querySelectorAll('#member-list li')].map(li => li.textContent)")
        assert.are.same({ "ada(you)", "bo" }, names)
        assert.are.equal("true", page:eval(
            "document.getElementById('members-toggle').getAttribute('aria-expanded')"))
        page:screenshot(shots .. "/chat-phone-members.png")
        click(page, "backdrop")
        page:wait_for("getComputedStyle(document.getElementById('members-pane')).visibility"
            .. " === 'hidden'", WAIT)
        assert.is_true(reachable(page, "say-input"))

        -- Rooms: the drawer holds the list and the join form; joining closes it.
        click(page, "rooms-toggle")
        page:wait_for([[(() => { const r = document.getElementById('rooms-pane')
            .getBoundingClientRect(); return r.left >= -0.5 && r.width > 200; })()]], WAIT)
        assert.is_true(reachable(page, "join-input"))
        assert.is_true(reachable(page, "room-list"))
        page:screenshot(shots .. "/chat-phone-rooms.png")
        page:eval([[document.getElementById('join-input').value = 'phones',
                    document.getElementById('join-form').requestSubmit(), true]])
        page:wait_for("document.getElementById('room-title').textContent === '# phones'", WAIT)
        page:wait_for("getComputedStyle(document.getElementById('rooms-pane')).visibility"
            .. " === 'hidden'", WAIT)
        assert.is_true(reachable(page, "say-input"))
        page:screenshot(shots .. "/chat-phone.png")
        assert.are.same({}, page:errors())
    end)

    it("keeps the three columns on a laptop (1366x768), with no drawer buttons", function()
        page:set_viewport(1366, 768, 1, false)
        page:eval(FRAMES)
        local rooms, chat, members = box(page, "rooms-pane"), box(page, "chat-pane"),
            box(page, "members-pane")
        assert.is_true(rooms.shown and chat.shown and members.shown)
        assert.are.same({ 0, 220 }, { rooms.left, rooms.width })
        assert.are.same({ 1366, 200 }, { members.right, members.width })
        assert.are.same({ 220, 1166 }, { chat.left, chat.right })
        assert.is_false(box(page, "rooms-toggle").shown)
        assert.is_false(box(page, "members-toggle").shown)
        assert.is_true(reachable(page, "member-list"))
        assert.is_true(reachable(page, "join-input"))
        assert.is_true(page:eval("document.documentElement.scrollWidth") <= 1366)
        page:screenshot(shots .. "/chat-laptop.png")
        assert.are.same({}, page:errors())
    end)
end)

describe("the chat page with JWT_SECRET set", function()
    if not browser_path then
        pending(no_browser)
        return
    end
    local helpers = require "helpers"
    local SECRET = "pages-spec-secret-0123456789abcdef"
    local srv, dir, browser, page

    setup(function()
        dir = server.tmpdir()
        assert(os.execute("cp -R examples/chat/. " .. helpers.shell_quote(dir)))
        local src = helpers.read_file(dir .. "/app.lua")
        local set, n = src:gsub("\nlocal JWT_SECRET = nil\n",
            ("\nlocal JWT_SECRET = %q\n"):format(SECRET))
        assert.are.equal(1, n)
        helpers.write_file(dir .. "/app.lua", set)
        srv = server.start { app = dir }
        browser = chromium.start()
        page = browser:new_page()
    end)

    teardown(function()
        if browser then browser:stop() end
        if srv then assert.are.equal(0, srv:stop()) end
        server.remove(dir)
    end)

    it("passes ?token= on to its socket and goes in under the token's name, no name asked",
        function()
            -- Made by python3-jwt, as a login backend would.
            local p = assert(io.popen("/usr/bin/python3 -c " .. helpers.shell_quote(
                "import jwt, sys, time; print(jwt.encode({'name': 'Grace', 'exp': "
                .. "int(time.time()) + 600}, sys.argv[1], algorithm='HS256'))") .. " "
                .. helpers.shell_quote(SECRET)))
            local token = p:read("l")
            assert(p:close() and token, "python3-jwt made a token")
            page:set_viewport(1366, 768, 1, false)
            local url = ("http://127.0.0.1:%d/"):format(srv.port)
            fresh_visit(page, url .. "?token=" .. token)
            page:wait_for("document.getElementById('room-title').textContent === '# general'",
                WAIT)
            assert.is_false(box(page, "name-screen").shown)
            assert.are.equal("signed in as Grace",
                page:eval("document.getElementById('me').textContent"))
            assert.are.same({}, page:errors())
        end)
end)

describe("the game page", function()
    if not browser_path then
        pending(no_browser)
        return
    end

    local srv, browser, page, shots, keep, bo

    setup(function()
        srv = server.start { app = "examples/game" }
        shots, keep = screenshots()
        browser = chromium.start()
        page = browser:new_page()
    end)

    teardown(function()
        if bo then pcall(bo.abort, bo) end
        if browser then browser:stop() end
        if shots and not keep then server.remove(shots) end
        if srv then assert.are.equal(0, srv:stop()) end
    end)

    it("keeps a name inside the arena when its player is at the top edge: below the disc",
        function()
            page:set_viewport(1366, 768, 1, false)
            fresh_visit(page, ("http://127.0.0.1:%d/"):format(srv.port))
            page:eval([[document.getElementById('name-input').value = 'ada',
                        document.getElementById('join-form').requestSubmit(), true]])
            page:wait_for("window.moonwireGame.you !== null", WAIT)
            -- Another player, standing at its spawn point away from every edge.
            bo = assert(ws.connect(srv.port, { timeout = WAIT }))
            assert(bo:send_text(cjson.encode { type = "join", name = "bo" }))
            page:wait_for("window.moonwireGame.players.size === 2", WAIT)

            -- Up and left until the walls stop the player in the corner.
            page:eval([[for (const code of ['ArrowUp', 'ArrowLeft'])
                dispatchEvent(new KeyboardEvent('keydown', { code })), true]])
            page:wait_for([[(() => { const g = window.moonwireGame, p = g.players.get(g.you);
                return p.x === g.radius && p.y === g.radius && p.fromX === p.x &&
                p.fromY === p.y; })()]], WAIT)
            page:eval(FRAMES)
            local r = page:eval("window.moonwireGame.radius")
            local w, h = page:eval("window.moonwireGame.width"),
                page:eval("window.moonwireGame.height")
            local mine = page:eval([[(() => { const g = window.moonwireGame;
                return g.labels.get(g.you); })()]])
            assert.is_true(mine.below, "the label went below the disc")
            assert.are.equal(r + r + 4, mine.top)
            assert.is_true(mine.left >= 0 and mine.right <= w and mine.bottom <= h,
                "the label is inside the arena: " .. cjson.encode(mine))

            -- And it is drawn there: bright text pixels fill the box the page computed.
            local lit = page:eval(([[(() => {
                const c = document.getElementById('arena'), g = window.moonwireGame;
                const s = c.width / g.width, l = %s;
                const x = Math.floor(l.left * s), y = Math.floor(l.top * s);
                const d = c.getContext('2d').getImageData(x, y,
                    Math.ceil((l.right - l.left) * s), Math.ceil((l.bottom - l.top) * s)).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4)
                    if (d[i] > 180 && d[i + 1] > 180 && d[i + 2] > 180) n++;
                return n;
            })()]]):format(cjson.encode(mine)))
            assert.is_true(lit >= 30, "text pixels in the label's box: " .. tostring(lit))

            -- A player away from the edges keeps its name above it, as always.
            local other = page:eval([[(() => { const g = window.moonwireGame;
                for (const [id, p] of g.players) if (id !== g.you)
                    return { label: g.labels.get(id), y: p.y };
            })()]])
            assert.is_false(other.label.below)
            assert.are.equal(other.y - r - 4 - 13, other.label.top)
            page:screenshot(shots .. "/game-corner.png")
            page:eval([[for (const code of ['ArrowUp', 'ArrowLeft'])
                dispatchEvent(new KeyboardEvent('keyup', { code })), true]])
            assert.are.same({}, page:errors())
        end)
end)
