-- The dashboard (core/admin/dashboard.html) in headless Chromium, served by the real server's
-- admin listener: it loads without a single error, receives snapshots, follows a scripted load
-- on the chat example, and lays itself out on a phone and on a laptop with no horizontal
-- overflow and no overlapping cards. Screenshots go to a temporary folder, removed afterwards,
-- or to $MOONWIRE_SCREENSHOTS (a folder, kept) to look at them.
local chromium = require "chromium"
local server = require "server"
local socket = require "socket"
local ws = require "ws_client"
local cjson = require "cjson"

local CLIENTS = 5
local PER_CLIENT_RATE = 10  -- messages a second from each client
local LOAD_SECONDS = 3.2

-- Every visible .card: none may overlap another, or stick out of the viewport sideways.
local LAYOUT_JS = [[
(() => {
    const cards = [...document.querySelectorAll('.card')].filter(e => {
        const r = e.getBoundingClientRect(), cs = getComputedStyle(e);
        return r.width > 0 && r.height > 0 && cs.display !== 'none' && cs.visibility !== 'hidden';
    });
    const name = e => e.id || e.querySelector('.label, h2')?.textContent || e.className;
    const overlaps = [], outside = [];
    cards.forEach((a, i) => {
        const ra = a.getBoundingClientRect();
        if (ra.left < -0.5 || ra.right > innerWidth + 0.5) outside.push(name(a));
        cards.slice(i + 1).forEach(b => {
            const rb = b.getBoundingClientRect();
            const x = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
            const y = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
            if (x > 0.5 && y > 0.5) overlaps.push(name(a) + ' / ' + name(b));
        });
    });
    return { cards: cards.length, overlaps, outside,
             scrollWidth: document.documentElement.scrollWidth, innerWidth };
})()
]]

-- True once every chart's canvas is backed by its CSS size times the device pixel ratio.
local CANVASES_SIZED_JS = [[
[...document.querySelectorAll('canvas')].every(c =>
    c.clientWidth > 0 &&
    c.width === Math.round(c.clientWidth * devicePixelRatio) &&
    c.height === Math.round(c.clientHeight * devicePixelRatio))
]]

local function text_of(page, id)
    return page:eval(("document.getElementById(%q).textContent"):format(id))
end

local function number_in(text)
    return tonumber((text or ""):match("^%s*([%d.]+)"))
end

local browser_path, no_browser = chromium.available()

describe("the dashboard", function()
    if not browser_path then
        pending(no_browser)
        return
    end

    local srv, browser, page, shots, keep_shots
    local clients = {}

    setup(function()
        srv = server.start { app = "examples/chat", args = { "--admin", "0" } }
        keep_shots = os.getenv("MOONWIRE_SCREENSHOTS")
        if keep_shots then
            shots = keep_shots
            os.execute("mkdir -p '" .. shots:gsub("'", "'\\''") .. "'")
        else
            shots = server.tmpdir()
        end
        browser = chromium.start()
        page = browser:new_page()
    end)

    teardown(function()
        for _, c in ipairs(clients) do pcall(c.abort, c) end
        if browser then browser:stop() end
        if shots and not keep_shots then server.remove(shots) end
        if srv then assert.are.equal(0, srv:stop()) end
    end)

    local function dashboard_url() return ("http://127.0.0.1:%d/"):format(srv:admin_port()) end

    it("is served by the admin listener as one HTML page", function()
        local resp = assert(ws.http(srv:admin_port(), "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            .. "Connection: close\r\n\r\n"))
        assert.are.equal(200, resp.status)
        assert.matches("^text/html", resp.headers["content-type"] or "")
        assert.truthy(resp.body:find("moonwireDashboard", 1, true))
    end)

    it("loads without errors and receives a snapshot every second", function()
        page:set_viewport(1280, 800, 1, false)
        page:navigate(dashboard_url())
        page:wait_for("window.moonwireDashboard && window.moonwireDashboard.snapshots >= 2", 4)
        -- The first comes on open and the next at the server's once-a-second tick, whenever
        -- that falls; from there, two more take about two seconds (a loaded machine delays a
        -- tick, and libev then runs the next one sooner: hence the margin).
        local t0 = socket.gettime()
        page:wait_for("window.moonwireDashboard.snapshots >= 4", 5)
        assert.is_true(socket.gettime() - t0 >= 1.2, "snapshots come once a second, not faster")
        local last = page:eval("window.moonwireDashboard.last")
        assert.are.equal("snapshot", last.type)
        assert.are.equal(0, last.connections)
        assert.are.equal("0", text_of(page, "connections"))
        assert.are.equal("live", page:eval("window.moonwireDashboard.state"))
        assert.truthy(text_of(page, "version"):find(last.version, 1, true))
        assert.are.same({}, page:errors())
    end)

    it("follows the load: connections, and messages in and out per second", function()
        for i = 1, CLIENTS do
            local c = assert(ws.connect(srv.port))
            clients[i] = c
            assert(c:send_text(cjson.encode { type = "hello", name = "load" .. i }))
            assert(c:send_text(cjson.encode { type = "join", room = "dashboard" }))
        end
        -- Exactly the chat clients: the dashboard's own socket is not a connection of an app.
        page:wait_for("document.getElementById('connections').textContent === '" .. CLIENTS .. "'",
            3)
        assert.are.equal(CLIENTS, page:eval("window.moonwireDashboard.last.connections"))

        -- A steady rate from every client; the page's rate is read at the end, from a snapshot
        -- whose whole second lay inside the load.
        local interval = 1 / PER_CLIENT_RATE
        local start = socket.gettime()
        local sent, tick = 0, 0
        while socket.gettime() - start < LOAD_SECONDS do
            for _, c in ipairs(clients) do
                assert(c:send_text(cjson.encode { type = "say", room = "dashboard",
                                                  text = "message " .. sent }))
                sent = sent + 1
            end
            tick = tick + 1
            local wait = start + tick * interval - socket.gettime()
            if wait > 0 then socket.sleep(wait) end
        end
        local rate_sent = sent / (socket.gettime() - start)
        local rates = page:eval("window.moonwireDashboard.rates")
        assert.is_true(rates.messages_in > rate_sent * 0.6 and rates.messages_in < rate_sent * 1.5,
            ("the page's rate in (%.1f/s) follows the rate sent (%.1f/s)")
                :format(rates.messages_in, rate_sent))
        -- Each message goes to everyone in the room.
        assert.is_true(rates.messages_out > rates.messages_in * 2,
            ("out (%.1f/s) is a multiple of in (%.1f/s)"):format(rates.messages_out,
                rates.messages_in))
        local shown = number_in(text_of(page, "rate-in"))
        assert.is_true(shown and shown > rate_sent * 0.6 and shown < rate_sent * 1.5,
            "#rate-in shows the rate: " .. tostring(text_of(page, "rate-in")))
        assert.matches("/s$", text_of(page, "rate-in"))
        assert.matches("/s$", text_of(page, "rate-out"))

        for _, c in ipairs(clients) do c:abort() end
        clients = {}
        page:wait_for("document.getElementById('connections').textContent === '0'", 4)
        assert.are.same({}, page:errors())
    end)

    local function check_layout(what, width, height, dpr, mobile)
        page:set_viewport(width, height, dpr, mobile)
        page:wait_for(CANVASES_SIZED_JS, 3)
        local layout = page:eval(LAYOUT_JS)
        assert.are.equal(width, layout.innerWidth)
        assert.is_true(layout.cards >= 10, "the cards are there")
        assert.is_true(layout.scrollWidth <= layout.innerWidth,
            ("%s: no horizontal overflow (scrollWidth %d, width %d)"):format(what,
                layout.scrollWidth, layout.innerWidth))
        assert.are.same({}, layout.overlaps, what .. ": cards that overlap")
        assert.are.same({}, layout.outside, what .. ": cards outside the viewport")
        local path = shots .. "/dashboard-" .. what .. ".png"
        page:screenshot(path)
        local w, h = chromium.png_size(path)
        assert.are.equal(math.floor(width * dpr), w)
        assert.are.equal(math.floor(height * dpr), h)
        page:screenshot(shots .. "/dashboard-" .. what .. "-full.png", { full_page = true })
    end

    it("lays out on a phone (390x844 CSS px, 3x)", function()
        check_layout("phone", 390, 844, 3, true)
    end)

    it("lays out on a laptop (1280x800)", function()
        check_layout("laptop", 1280, 800, 1, false)
        assert.are.same({}, page:errors())
    end)
end)
