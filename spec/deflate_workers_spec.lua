-- Issue 16 with several workers: a publish reaches subscribers on every worker, each worker
-- compressing it once with its own streams (zlib state is never shared between threads), and
-- every subscriber, compressed or not, gets the message intact. Also in TSAN_SPECS.
local server = require "server"
local ws = require "ws_client"

local PYTHON = "/usr/bin/python3"
local SCRIPT = "spec/support/deflate_check.py"

local APP = [[
local app = {}
function app.message(conn, data)
    if data == "sub" then
        conn:subscribe("t")
        conn:send("subscribed")
    elseif data:sub(1, 4) == "pub:" then
        mw.publish("t", data:sub(5))
    end
end
return app
]]

local function metric(port, name)
    local req = ("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"):format(port)
    local resp = assert(ws.http(port, req, { timeout = 5 }))
    return tonumber(resp.body:match("\n" .. name .. " (%S+)"))
end

describe("permessage-deflate with 2 workers", function()
    it("compresses a publish at most once per worker, and every subscriber gets it", function()
        local dir = server.app_dir { ["app.lua"] = APP }
        local srv = server.start { app = dir, config = "workers = 2\nadmin = { port = 0 }\n" ..
            "deflate = true\n" }
        local admin = srv:admin_port()
        local before = metric(admin, "moonwire_deflate_compressions_total")
        local cmd = ("timeout 120 %s %s %d fanout 200 2>&1"):format(PYTHON, SCRIPT, srv.port)
        local p = io.popen(cmd)
        local out = p:read("a")
        p:close()
        assert.truthy(out:find("received=200", 1, true), out)
        local n = metric(admin, "moonwire_deflate_compressions_total") - before
        assert.is_true(n >= 1 and n <= 2, "compressions: " .. n)
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)
end)
