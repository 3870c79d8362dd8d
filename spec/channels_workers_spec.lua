-- moonwire.v1 with workers = 4 (also run under ThreadSanitizer: Makefile TSAN_SPECS): v1
-- subscribers spread over the workers see a history topic's publications from publishers on
-- every worker in one gap-free offset order, and a subscriber that recovers on whichever worker
-- gets every offset after its position exactly once while publishing goes on.
local ws = require "ws_client"
local server = require "server"
local cjson = require "cjson"
local socket = require "socket"

local APP = [=[
local app = { channels = true }
function app.message(conn, data)
    local topic, n = data:match("^pub (%S+) (%d+)$")
    for i = 1, tonumber(n) do mw.publish(topic, tostring(i)) end
    conn:send("published")
end
return app
]=]

local function open_v1(srv)
    local c = assert(ws.connect(srv.port, { protocols = { "moonwire.v1" }, timeout = 5 }))
    local data = c:recv_message(5)
    assert.are.equal("W", cjson.decode(data)[1])
    return c
end

local function recv(c)
    local deadline = socket.gettime() + 5
    while true do
        local data, err = c:recv_message(math.max(0.01, deadline - socket.gettime()))
        assert(data, "no envelope: " .. tostring(err))
        local env = cjson.decode(data)
        if env[1] ~= "h" then return env end
    end
end

-- Reads publications until offset `last`, asserting each offset is the one after the previous.
local function expect_offsets(c, from, last, what)
    local want = from
    while want <= last do
        local env = recv(c)
        if env[1] == "p" then
            assert.are.equal(want, env[3], what)
            want = want + 1
        end
    end
end

describe("moonwire.v1 with workers = 4", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir, config = [[
workers = 4
history = { ["h:"] = { size = 10000, ttl = 600 } }
]] }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("every subscriber sees one gap-free offset order from publishers on every worker",
        function()
            local subs, pubs = {}, {}
            for i = 1, 8 do
                subs[i] = open_v1(srv)
                subs[i]:send_text(cjson.encode { "s", 1, "h:one" })
                assert.are.equal("S", recv(subs[i])[1])
            end
            for i = 1, 4 do pubs[i] = open_v1(srv) end
            for i = 1, 4 do pubs[i]:send_text('["m","pub h:one 250"]') end
            for i = 1, 8 do expect_offsets(subs[i], 1, 1000, "subscriber " .. i) end
            for _, c in ipairs(subs) do c:close() end
            for _, c in ipairs(pubs) do c:close() end
        end)

    it("a subscriber recovering on any worker gets every later offset once, while " ..
        "publishing goes on", function()
            local pub = open_v1(srv)
            for round = 1, 6 do
                local c = open_v1(srv)
                c:send_text(cjson.encode { "s", 1, "h:two" })
                local s = recv(c)
                local pos, epoch = s[3].o, s[3].e
                pub:send_text('["m","pub h:two 30"]')
                expect_offsets(c, pos + 1, pos + 30, "round " .. round .. " live")
                c:abort()
                -- Missed while away, then recovered while more is being published.
                pub:send_text('["m","pub h:two 40"]')
                local r = open_v1(srv)
                r:send_text(cjson.encode { "s", 2, "h:two", { o = pos + 30, e = epoch } })
                pub:send_text('["m","pub h:two 40"]')
                local got = recv(r)
                assert.are.same({ "S", true }, { got[1], got[3].recovered }, "round " .. round)
                expect_offsets(r, pos + 31, pos + 110, "round " .. round .. " recovered")
                r:close()
            end
            pub:close()
        end)
end)
