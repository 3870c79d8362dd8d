-- moonwire.js (under node) through a restart of its server when the Redis engine keeps the
-- history: 100 clients on node A, a publisher on node B sending 1..3000 at 500 a second the
-- whole time; A is restarted (drain, new process on the same port) in the middle. Every
-- client's callback sees exactly 1..3000, in order, once, and no resync: what it missed comes
-- from Redis when it subscribes again from its last offset.
local server = require "server"
local redis = require "redis"
local helpers = require "helpers"
local socket = require "socket"

local APP = [=[
local app = { channels = true }
function app.message(conn, data)
    local n = tonumber(data:match("^start (%d+)$"))
    if not n then return end
    local i = 0
    mw.every(10, function(timer) -- 500 a second, steadily
        for _ = 1, 5 do
            i = i + 1
            local _, why = mw.publish("h:feed", tostring(i))
            if why then mw.log("warn", "publish " .. i .. ": " .. why) end
            if i >= n then timer:cancel() return end
        end
    end)
end
return app
]=]

local function node_command()
    for _, flags in ipairs { "", "--experimental-websocket " } do
        local p = io.popen("node " .. flags .. "-e 'process.exit(typeof WebSocket == \"function\" ? 0 : 1)' 2>/dev/null")
        p:read("a")
        if p:close() then return "node " .. flags end
    end
end

describe("moonwire.js with the Redis engine", function()
    local rd, a, b, dir, cfg

    setup(function()
        rd = redis.start()
        dir = server.app_dir { ["app.lua"] = APP }
        cfg = 'history = { ["h:"] = { size = 5000, ttl = 600 } }\nredis = "' .. rd:url() .. '"\n'
        a = server.start { app = dir, config = cfg }
        b = server.start { app = dir, config = cfg }
    end)
    teardown(function()
        if a then assert.are.equal(0, a:stop()) end
        if b then assert.are.equal(0, b:stop()) end
        if rd then rd:stop() end
        server.remove(dir)
    end)

    it("through a restart of the clients' node: 100 clients see exactly 1..3000 in order, " ..
        "no resync", function()
        local node = node_command()
        if not node then
            pending("node has no WebSocket (node 22, or node 20.10+ with a flag, is needed)")
            return
        end
        local tmp = server.tmpdir()
        local state, out_file = tmp .. "/state", tmp .. "/out"
        os.execute(string.format("%sspec/support/client_redis_restart.mjs %s %d %d 100 3000 %s >%s 2>&1 &",
            node, helpers.shell_quote(os.getenv("PWD") .. "/core/client/moonwire.js"), a.port, b.port,
            helpers.shell_quote(state), helpers.shell_quote(out_file)))
        local deadline = socket.gettime() + 30
        while not helpers.read_file(state) and socket.gettime() < deadline do socket.sleep(0.05) end
        assert(helpers.read_file(state), "the clients never got ready: " ..
            tostring(helpers.read_file(out_file)))
        local port = a.port
        assert.are.equal(0, a:stop())
        a = server.start { app = dir, config = cfg, args = { "--port", tostring(port) } }
        local line
        deadline = socket.gettime() + 60
        repeat
            socket.sleep(0.2)
            line = (helpers.read_file(out_file) or ""):match("({.-})%s*$")
        until line or socket.gettime() > deadline
        assert(line, tostring(helpers.read_file(out_file)))
        server.remove(tmp)
        local r = require("cjson").decode(line)
        assert.are.same({ true, 0, 0, 100 }, { r.ok, r.wrong, r.resync_max, r.recovered }, line)
    end)
end)
