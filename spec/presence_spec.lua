-- Presence without Redis (issue 14): conn:subscribe(topic, { presence = info }) on one node,
-- two workers: mw.presence and mw.presence_list count every worker's connections, and an entry
-- leaves with its connection (unsubscribe, close).
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"

local APP = [[
local app = {}
function app.upgrade(req) return true end
function app.message(conn, data)
    local cmd, a, b = data:match("^(%S+) ?(%S*) ?(.*)$")
    if cmd == "here" then
        assert(conn:subscribe(a, { presence = b }))
        conn:send("here")
    elseif cmd == "gone" then
        conn:unsubscribe(a)
        conn:send("gone")
    elseif cmd == "who" then
        local infos, ids = {}, {}
        for _, e in ipairs(mw.presence_list(a)) do
            infos[#infos + 1] = e.info
            ids[e.id] = true
        end
        table.sort(infos)
        local nids = 0
        for _ in pairs(ids) do nids = nids + 1 end
        conn:send(mw.presence(a) .. ":" .. table.concat(infos, ",") .. ":" .. nids)
    end
end
return app
]]

local function command(c, text)
    assert(c:send_text(text))
    return c:recv_message(5)
end

describe("presence without redis", function()
    local dir, srv
    before_each(function()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir, config = "workers = 2\n" }
    end)
    after_each(function()
        srv:stop()
        server.remove(dir)
    end)

    it("counts every worker's connections and forgets those that leave", function()
        local cs, names = {}, {}
        for i = 1, 8 do
            cs[i] = assert(ws.connect(srv.port))
            names[i] = "u" .. i
            assert.are.equal("here", command(cs[i], "here room " .. names[i]))
        end
        assert.are.equal("here", command(cs[1], "here other x"))
        table.sort(names)
        local want = "8:" .. table.concat(names, ",") .. ":8"
        -- Every connection, whichever worker serves it, sees the same list.
        for i = 1, 8 do assert.are.equal(want, command(cs[i], "who room")) end
        assert.are.equal("1:x:1", command(cs[5], "who other"))
        assert.are.equal("gone", command(cs[2], "gone room"))
        cs[3]:close()
        local deadline, got = socket.gettime() + 5
        repeat
            got = command(cs[1], "who room")
            if got:sub(1, 2) == "6:" then break end
            socket.sleep(0.02)
        until socket.gettime() > deadline
        assert.are.equal("6:u1,u4,u5,u6,u7,u8:6", got)
        cs[1]:close()
        deadline = socket.gettime() + 5
        repeat
            got = command(cs[5], "who other")
            if got:sub(1, 2) == "0:" then break end
            socket.sleep(0.02)
        until socket.gettime() > deadline
        assert.are.equal("0::0", got)
        for i = 4, 8 do cs[i]:close() end
        cs[2]:close()
    end)
end)
