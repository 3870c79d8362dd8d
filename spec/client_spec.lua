-- moonwire.js against the real server (node runs it; its unit tests with a fake WebSocket are
-- client/test, run by spec/run-tests): the files served at /_moonwire/, and end to end, a
-- subscription to a history topic receiving exactly 1..5000 in order while its connection is
-- cut five times (dropped, and frozen so that only the heartbeat can tell).
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"
local socket = require "socket"

local APP = [=[
local app = { channels = { heartbeat = 0.2 } }
function app.message(conn, data)
    if data == "ban me" then return conn:close(4001, "banned") end
    if data == "drop me" then return conn:close(1012, "restart") end
    if data:match("^q%d$") then return conn:send("echo " .. data) end
    local cut = tonumber(data:match("^startcut (%d+)$"))
    if cut then -- 1..cut on h:page, 1,000 a second; every 0.7 s, five times, every client cut
        local i, cuts = 0, 0
        mw.every(10, function(timer)
            for _ = 1, 10 do
                i = i + 1
                mw.publish("h:page", tostring(i))
                if i >= cut then timer:cancel() return end
            end
        end)
        mw.every(700, function(timer)
            cuts = cuts + 1
            for _, c in ipairs(mw.connections()) do c:close(1011, "cut") end
            if cuts == 5 then timer:cancel() end
        end)
        return
    end
    local n = tonumber(data:match("^start (%d+)$"))
    if not n then return end
    local i = 0
    mw.every(10, function(timer) -- 500 a second, steadily
        for _ = 1, 5 do
            i = i + 1
            mw.publish("h:feed", tostring(i))
            if i >= n then timer:cancel() return end
        end
    end)
end
return app
]=]

-- The browser's page: subscribes, then asks for 1..5000 with five cuts by the server.
local PAGE = [=[
<!doctype html><title>moonwire.js</title>
<script type="module">
import { Moonwire } from "/_moonwire/moonwire.js";
window.got = []; window.resyncs = 0; window.opens = 0;
const mw = new Moonwire(`ws://${location.host}/`, { minDelay: 50, maxDelay: 400 });
mw.on("state", (s) => { if (s === "open") window.opens++; });
const sub = mw.subscribe("h:page", (d) => window.got.push(+d));
sub.on("resync", () => window.resyncs++);
let started = false;
sub.on("subscribed", () => { if (!started) { started = true; mw.send("startcut 5000"); } });
</script>
]=]

local CONFIG = [[history = { ["h:"] = { size = 5000, ttl = 600 } }]]

-- node with a WebSocket: node 22 has one, node 20 behind a flag; nil without.
local function node_command()
    for _, flags in ipairs { "", "--experimental-websocket " } do
        local p = io.popen("node " .. flags .. "-e 'process.exit(typeof WebSocket == \"function\" ? 0 : 1)' 2>/dev/null")
        p:read("a")
        if p:close() then return "node " .. flags end
    end
end

local function get(port, path)
    return ws.http(port, "GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
end

describe("moonwire.js", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP, ["public/index.html"] = PAGE }
        srv = server.start { app = dir, config = CONFIG }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("is served at /_moonwire/moonwire.js, byte for byte core/client/moonwire.js", function()
        local r = assert(get(srv.port, "/_moonwire/moonwire.js"))
        assert.are.equal(200, r.status)
        assert.are.equal("text/javascript; charset=utf-8", r.headers["content-type"])
        assert.are.equal(helpers.read_file("core/client/moonwire.js"), r.body)
        local d = assert(get(srv.port, "/_moonwire/moonwire.d.ts"))
        assert.are.equal(helpers.read_file("core/client/moonwire.d.ts"), d.body)
    end)

    it("has a plain-script build that sets globalThis.Moonwire", function()
        local r = assert(get(srv.port, "/_moonwire/moonwire.global.js"))
        assert.are.equal(200, r.status)
        local file = srv.dir .. "/global.js"
        helpers.write_file(file, r.body)
        local p = io.popen("node -e " .. helpers.shell_quote(
            "require('vm').runInThisContext(require('fs').readFileSync(" ..
            string.format("%q", file) .. ", 'utf8')); " ..
            "console.log(typeof Moonwire, typeof Moonwire.backoffDelay)") .. " 2>&1")
        local out = p:read("a")
        p:close()
        assert.are.equal("function function\n", out)
    end)

    it("is under 8 KB gzipped", function()
        local p = io.popen("gzip -9c core/client/moonwire.js | wc -c")
        local size = tonumber(p:read("a"))
        p:close()
        assert.is_true(size < 8192, size .. " bytes")
    end)

    it("through a restart without shared history: 300 clients resync exactly once, then " ..
        "get what follows; their reconnects spread (no 100 ms holds over 15 %)", function()
        local node = node_command()
        if not node then
            pending("node has no WebSocket (node 22, or node 20.10+ with a flag, is needed)")
            return
        end
        local tmp = server.tmpdir() -- the server's own folder goes when it stops
        local state = tmp .. "/herd-state"
        local out_file = tmp .. "/herd-out"
        local cmd = string.format("%sspec/support/client_herd.mjs %s %d 300 %s >%s 2>&1 &", node,
            helpers.shell_quote(os.getenv("PWD") .. "/core/client/moonwire.js"), srv.port,
            helpers.shell_quote(state), helpers.shell_quote(out_file))
        os.execute(cmd)
        local deadline = socket.gettime() + 30
        while not helpers.read_file(state) and socket.gettime() < deadline do socket.sleep(0.05) end
        assert(helpers.read_file(state), "the clients never got ready: " ..
            tostring(helpers.read_file(out_file)))
        local port = srv.port
        assert.are.equal(0, srv:stop())
        srv = server.start { app = dir, config = CONFIG, args = { "--port", tostring(port) } }
        local line
        deadline = socket.gettime() + 60
        repeat
            socket.sleep(0.2)
            line = (helpers.read_file(out_file) or ""):match("({.-})%s*$")
        until line or socket.gettime() > deadline
        assert(line, tostring(helpers.read_file(out_file)))
        server.remove(tmp)
        local r = require("cjson").decode(line)
        assert.are.same({ true, 0, 1, 1 }, { r.ok, r.wrong, r.resync_min, r.resync_max }, line)
        assert.is_true(r.busiest_100ms <= 45, line) -- 15 % of 300
        assert.is_true(r.first_back_ms >= 400, line) -- inside the drain's window (500-5000)
    end)

    it("declares a SIGSTOPped server dead by its heartbeat and comes back after SIGCONT; " ..
        "stops on 4001; queues offline sends in order and reports overflow", function()
        local node = node_command()
        if not node then
            pending("node has no WebSocket (node 22, or node 20.10+ with a flag, is needed)")
            return
        end
        local p = io.popen(string.format("%sspec/support/client_faults.mjs %s %d %d 2>&1", node,
            helpers.shell_quote(os.getenv("PWD") .. "/core/client/moonwire.js"), srv.port, srv.pid))
        local out = p:read("a")
        p:close()
        os.execute("kill -CONT " .. srv.pid .. " 2>/dev/null") -- whatever happened
        local line = out:match("({.-})%s*$")
        assert(line, out)
        local r = require("cjson").decode(line)
        assert.are.same({ true, true, false, true }, { r.opened, r.detected,
            r.open_while_stopped, r.reopened }, line)
        -- heartbeat 0.2 s + margin 0.3 s, from the last heartbeat heard
        assert.is_true(r.detected_ms >= 250 and r.detected_ms < 1500, line)
        assert.are.same({ true, 1 }, { r.banned, r.opens_after_ban }, line)
        assert.are.same({ true, true, true, false }, r.queued, line)
        assert.are.same({ "echo q1", "echo q2", "echo q3" }, r.echoed, line)
        assert.are.same({ "q4" }, r.dropped, line)
        assert.is_false(r.default_send_offline, line)
    end)

    it("in headless Chromium: the page's callback sees exactly 1..5000 in order through " ..
        "five cuts by the server", function()
        local chromium = require "chromium"
        local ok, why = chromium.available()
        if not ok then
            pending(why)
            return
        end
        local b = chromium.start()
        local page = b:new_page()
        local finished, r = pcall(function()
            page:navigate(("http://127.0.0.1:%d/"):format(srv.port))
            page:wait_for("window.got && window.got.length >= 5000", 40)
            socket.sleep(0.3) -- anything extra would show now
            return page:eval("({ n: got.length, inOrder: got.every((v, i) => v === i + 1), " ..
                             "resyncs, opens })")
        end)
        local errors = page:errors()
        b:stop()
        assert(finished, r)
        assert.are.same({ 5000, true, 0 }, { r.n, r.inOrder, r.resyncs })
        assert.is_true(r.opens >= 6, "reconnected after each cut: " .. tostring(r.opens))
        for _, e in ipairs(errors) do
            assert.is_truthy(e:find("WebSocket") or e:find("favicon"), "page error: " .. e)
        end
    end)

    it("receives exactly 1..5000 in order through five cuts (dropped, frozen)", function()
        local node = node_command()
        if not node then
            pending("node has no WebSocket (node 22, or node 20.10+ with a flag, is needed)")
            return
        end
        local cmd = string.format("%sspec/support/client_e2e.mjs %s %d 5000 5 2>&1", node,
            helpers.shell_quote(os.getenv("PWD") .. "/core/client/moonwire.js"), srv.port)
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        local line = out:match("({.-})%s*$")
        assert(line, out)
        local r = require("cjson").decode(line)
        assert.are.same({ true, 5000, -1, 0, 5 }, { r.ok, r.count, r.first_bad, r.resyncs, r.cuts },
            line)
        assert.is_true(r.reconnects >= 6, line) -- each cut was noticed and healed
    end)
end)
