-- The moonwire.v1 subprotocol (docs/protocol.md) over real sockets: who gets it, the welcome
-- and heartbeat, subscribe / unsubscribe / publish / app messages with their answers, every
-- error code (malformed envelopes, unknown ops, refused subscribes and publishes, floods past
-- the limits), and recovery on a history topic: the missed publications in order, then live,
-- with no gap and no duplicate at the boundary; recovered = false once the range is gone.
local ws = require "ws_client"
local server = require "server"
local cjson = require "cjson"
local socket = require "socket"

local APP = [=[
local app = { channels = { heartbeat = 0.3 } }

function app.subscribe(conn, topic, info)
    if topic:match("^secret") then return false, "secret topics need a key" end
    if topic == "slow" then mw.sleep(0.05) end
    if topic == "boom" then error("boom") end
    if topic:match("^pres") then assert(conn:subscribe(topic, { presence = "me" })) end
    if info then mw.log("info", "recover " .. topic .. " " .. info.offset .. " " .. info.epoch) end
    return true
end

function app.publish(conn, topic, data)
    if topic:match("^ro") then return false end
    return true
end

function app.open(conn)
    local topic = conn.path:match("^/sub/(.+)$")
    if topic then conn:subscribe(topic) end
end

function app.message(conn, data, is_binary)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "pub" then -- pub TOPIC N: publishes 1..N
        local topic, n = arg:match("^(%S+) (%d+)$")
        for i = 1, tonumber(n) do mw.publish(topic, tostring(i)) end
        conn:send("published " .. n)
    elseif cmd == "pubbin" then
        mw.publish(arg, "\0\1\255", true)
    elseif cmd == "who" then -- who TOPIC: mw.presence and the infos
        local infos = {}
        for _, e in ipairs(mw.presence_list(arg)) do infos[#infos + 1] = e.info end
        conn:send("who " .. mw.presence(arg) .. " " .. table.concat(infos, ","))
    else
        conn:send("echo " .. data, is_binary)
    end
end

return app
]=]

-- An app that does not enable channels: moonwire.v1 is not chosen for it.
local PLAIN = [=[
return { message = function(conn, data) conn:send(data) end }
]=]

local CONFIG = [[
history = { ["h:"] = { size = 20, ttl = 600 }, ["x:"] = { size = 20, ttl = 0.3 } }
limits = { max_subscriptions = 5 }
]]

local function connect(srv, path, protocols)
    return assert(ws.connect(srv.port, { path = path,
                                          protocols = protocols or { "moonwire.v1" } }))
end

-- The next text envelope, decoded, skipping heartbeats unless asked for.
local function recv(c, keep_heartbeats, timeout)
    local deadline = socket.gettime() + (timeout or 3)
    while true do
        local data, op = c:recv_message(math.max(0.01, deadline - socket.gettime()))
        assert(data, "no envelope: " .. tostring(op))
        if op == ws.op.binary then return { binary = data } end
        local env = cjson.decode(data)
        if keep_heartbeats or env[1] ~= "h" then return env end
    end
end

local function send(c, env) c:send_text(type(env) == "string" and env or cjson.encode(env)) end

local function open_v1(srv, path)
    local c = connect(srv, path)
    assert.are.equal("moonwire.v1", c.response.headers["sec-websocket-protocol"])
    local w = recv(c)
    assert.are.same("W", w[1])
    return c, w
end

describe("moonwire.v1", function()
    local srv, dir, plain_dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP }
        plain_dir = server.app_dir { ["app.lua"] = PLAIN }
        srv = server.start { config = CONFIG .. string.format(
            "apps = { [\"/\"] = %q, [\"/plain\"] = %q }", dir, plain_dir) }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
        server.remove(plain_dir)
    end)

    describe("the handshake", function()
        it("is chosen for an app with channels, and welcomes with the heartbeat interval",
            function()
                local c, w = open_v1(srv)
                assert.are.same({ "W", { v = 1, hb = 300 } }, w)
                c:close()
            end)

        it("is not chosen when the client does not offer it: plain messages as before",
            function()
                local c = connect(srv, "/", {})
                assert.is_nil(c.response.headers["sec-websocket-protocol"])
                c:send_text("hello")
                assert.are.equal("echo hello", (c:recv_message(3)))
                c:close()
            end)

        it("is not chosen by an app without channels", function()
            local c = connect(srv, "/plain")
            assert.is_nil(c.response.headers["sec-websocket-protocol"])
            c:send_text("[\"m\",\"x\"]")
            assert.are.equal("[\"m\",\"x\"]", (c:recv_message(3)))
            c:close()
        end)
    end)

    describe("app messages", function()
        it("reach app.message unwrapped, and conn:send comes back wrapped", function()
            local c = open_v1(srv)
            send(c, { "m", "hi \"there\"\n" })
            assert.are.same({ "m", "echo hi \"there\"\n" }, recv(c))
            c:close()
        end)

        it("binary: 'm' and the bytes, both ways", function()
            local c = open_v1(srv)
            c:send_binary("m\0\1\2")
            local data, op = c:recv_message(3)
            assert.are.same({ "mecho \0\1\2", ws.op.binary }, { data, op })
            c:close()
        end)
    end)

    describe("subscribe and publish", function()
        it("answers S and delivers mw.publish as envelopes, in order", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "news" })
            assert.are.same({ "S", 1, { recovered = true } }, recv(c))
            send(c, { "m", "pub news 3" })
            for i = 1, 3 do assert.are.same({ "p", "news", 0, "", tostring(i) }, recv(c)) end
            assert.are.same({ "m", "published 3" }, recv(c))
            c:close()
        end)

        it("binary publications carry a binary header", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "bin" })
            recv(c)
            send(c, { "m", "pubbin bin" })
            local got = recv(c)
            assert.are.equal("p\0\3bin" .. string.rep("\0", 8) .. "\0" .. "\0\1\255", got.binary)
            c:close()
        end)

        it("a plain subscriber of the same topic still gets the bare message", function()
            local v1 = open_v1(srv)
            local raw = connect(srv, "/sub/mixed", {})
            send(v1, { "s", 1, "mixed" })
            recv(v1)
            send(v1, { "p", 2, "mixed", "from v1" })
            assert.are.same({ "p", "mixed", 0, "", "from v1" }, recv(v1))
            assert.are.same({ "from v1", ws.op.text }, { raw:recv_message(3) })
            raw:close()
            v1:close()
        end)

        it("keeps the presence app.subscribe set with conn:subscribe", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "pres-a" })
            assert.are.same({ "S", 1, { recovered = true } }, recv(c))
            send(c, { "m", "who pres-a" })
            assert.are.same({ "m", "who 1 me" }, recv(c))
            send(c, { "m", "pub pres-a 1" })
            assert.are.same({ "p", "pres-a", 0, "", "1" }, recv(c))
            assert.are.same({ "m", "published 1" }, recv(c))
            send(c, { "u", 2, "pres-a" }) -- not answered
            send(c, { "m", "who pres-a" })
            assert.are.same({ "m", "who 0 " }, recv(c))
            c:close()
        end)

        it("client publishes reach subscribers when app.publish allows them", function()
            local a, b = open_v1(srv), open_v1(srv)
            send(b, { "s", 1, "lobby" })
            recv(b)
            send(a, { "p", 7, "lobby", "hello" })
            assert.are.same({ "p", "lobby", 0, "", "hello" }, recv(b))
            a:close()
            b:close()
        end)

        it("unsubscribe stops delivery", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "u1" })
            recv(c)
            send(c, { "u", 2, "u1" })
            send(c, { "m", "pub u1 1" })
            assert.are.same({ "m", "published 1" }, recv(c))
            c:close()
        end)

        it("app.subscribe may wait; the envelopes after it keep their order", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "slow" })
            send(c, { "m", "after" })
            assert.are.same({ "S", 1, { recovered = true } }, recv(c))
            assert.are.same({ "m", "echo after" }, recv(c))
            c:close()
        end)
    end)

    describe("errors", function()
        local cases = {
            { "not JSON", "nope", { "E", 0, 100 } },
            { "not an array", "{\"s\":1}", { "E", 0, 100 } },
            { "unknown op", "[\"x\",9,\"t\"]", { "E", 9, 101 } },
            { "id zero", "[\"s\",0,\"t\"]", { "E", 0, 100 } },
            { "id fractional", "[\"s\",1.5,\"t\"]", { "E", 0, 100 } },
            { "extra element", "[\"u\",4,\"t\",1]", { "E", 4, 100 } },
            { "empty topic", "[\"s\",5,\"\"]", { "E", 5, 102 } },
            { "long topic", "[\"s\",6,\"" .. string.rep("t", 300) .. "\"]", { "E", 6, 102 } },
            { "refused subscribe", "[\"s\",7,\"secret-1\"]", { "E", 7, 103,
                                                               "secret topics need a key" } },
            { "refused publish", "[\"p\",8,\"ro-1\",\"x\"]", { "E", 8, 104 } },
            { "binary without 'm'", nil, { "E", 0, 101 } },
        }
        for _, case in ipairs(cases) do
            it(case[1] .. " gets error " .. case[3][3] .. " and the connection stays", function()
                local c = open_v1(srv)
                if case[2] then c:send_text(case[2]) else c:send_binary("x") end
                local e = recv(c)
                assert.are.same(case[3], { e[1], e[2], e[3], case[3][4] and e[4] or nil })
                assert.are.equal("string", type(e[4]))
                send(c, { "m", "still" })
                assert.are.same({ "m", "echo still" }, recv(c))
                c:close()
            end)
        end

        it("subscribing twice gets 107", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "twice" })
            recv(c)
            send(c, { "s", 2, "twice" })
            assert.are.same({ "E", 2, 107 }, { table.unpack(recv(c), 1, 3) })
            c:close()
        end)

        it("a flood of subscribes past limits.max_subscriptions gets 105 for each extra one",
            function()
                local c = open_v1(srv)
                for i = 1, 50 do send(c, { "s", i, "flood-" .. i }) end
                local ok, refused = 0, 0
                for _ = 1, 50 do
                    local e = recv(c)
                    if e[1] == "S" then ok = ok + 1
                    else
                        assert.are.same({ "E", 105 }, { e[1], e[3] })
                        refused = refused + 1
                    end
                end
                assert.are.same({ 5, 45 }, { ok, refused })
                send(c, { "m", "alive" })
                assert.are.same({ "m", "echo alive" }, recv(c))
                c:close()
            end)

        it("a failing app.subscribe closes with 1011, as a failing app.message does", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "boom" })
            assert.are.equal(1011, (c:expect_close(3)))
            c:abort()
        end)
    end)

    describe("heartbeat", function()
        it("sends [\"h\"] every interval to an idle connection", function()
            local c = open_v1(srv)
            local t0 = socket.gettime()
            assert.are.same({ "h" }, recv(c, true, 2))
            assert.are.same({ "h" }, recv(c, true, 2))
            assert.is_true(socket.gettime() - t0 < 1.5)
            c:close()
        end)
    end)

    describe("recovery on a history topic", function()
        it("a fresh subscribe gets the position, no replay", function()
            local c = open_v1(srv)
            send(c, { "m", "pub h:a 3" })
            recv(c)
            send(c, { "s", 1, "h:a" })
            local s = recv(c)
            assert.are.same({ "S", 1, true, 3 }, { s[1], s[2], s[3].recovered, s[3].o })
            assert.are.equal(8, #s[3].e)
            send(c, { "m", "pub h:a 1" })
            assert.are.same({ "p", "h:a", 4, s[3].e, "1" }, recv(c))
            c:close()
        end)

        it("a subscriber keeps getting publications after the history starts a new epoch",
            function()
                -- Subscribed at offset 3; the stream expires (ttl 0.3) and starts again at 1.
                local p = open_v1(srv)
                send(p, { "m", "pub x:a 3" })
                recv(p)
                local c = open_v1(srv)
                send(c, { "s", 1, "x:a" })
                local s = recv(c)
                assert.are.same({ "S", 1, true, 3 }, { s[1], s[2], s[3].recovered, s[3].o })
                socket.sleep(0.6)
                send(p, { "m", "pub x:a 2" })
                local p1, p2 = recv(c), recv(c)
                assert.are.same({ "p", "x:a", 1, "1" }, { p1[1], p1[2], p1[3], p1[5] })
                assert.are.same({ "p", "x:a", 2, "2" }, { p2[1], p2[2], p2[3], p2[5] })
                assert.are_not.equal(s[3].e, p1[4])
                p:close()
                c:close()
            end)

        it("sends what was missed in order, then live, no gap and no duplicate", function()
            local c = open_v1(srv)
            send(c, { "s", 1, "h:b" })
            local s = recv(c)
            local epoch = s[3].e
            send(c, { "m", "pub h:b 5" })
            for i = 1, 5 do assert.are.same({ "p", "h:b", i, epoch, tostring(i) }, recv(c)) end
            recv(c) -- published 5
            c:close()
            -- Missed while away: offsets 6..12 (data "1".."7").
            local p = open_v1(srv)
            send(p, { "m", "pub h:b 7" })
            recv(p)
            local r = open_v1(srv)
            send(r, { "s", 1, "h:b", { o = 5, e = epoch } })
            assert.are.same({ "S", 1, { recovered = true, o = 12, e = epoch } }, recv(r))
            for i = 6, 12 do
                assert.are.same({ "p", "h:b", i, epoch, tostring(i - 5) }, recv(r))
            end
            send(p, { "m", "pub h:b 1" }) -- offset 13, live
            assert.are.same({ "p", "h:b", 13, epoch, "1" }, recv(r))
            assert.is_truthy(srv:wait_log("recover h:b 5 " .. epoch, 3))
            p:close()
            r:close()
        end)

        it("recovered = false, with the current position, when the range is gone", function()
            local p = open_v1(srv)
            send(p, { "s", 1, "h:c" })
            local epoch = recv(p)[3].e
            send(p, { "m", "pub h:c 40" }) -- size 20: 1..20 are gone
            for _ = 1, 41 do recv(p) end
            local r = open_v1(srv)
            send(r, { "s", 1, "h:c", { o = 3, e = epoch } })
            assert.are.same({ "S", 1, { recovered = false, o = 40, e = epoch } }, recv(r))
            send(p, { "m", "pub h:c 1" })
            assert.are.same({ "p", "h:c", 41, epoch, "1" }, recv(r), "live follows at once")
            p:close()
            r:close()
        end)

        it("at the boundaries: from the top sends nothing but live; from 0 sends it all; " ..
            "past the top is not recovered", function()
            local p = open_v1(srv)
            send(p, { "s", 1, "h:e" })
            local epoch = recv(p)[3].e
            send(p, { "m", "pub h:e 4" })
            for _ = 1, 5 do recv(p) end
            local top = open_v1(srv)
            send(top, { "s", 1, "h:e", { o = 4, e = epoch } })
            assert.are.same({ "S", 1, { recovered = true, o = 4, e = epoch } }, recv(top))
            local all = open_v1(srv)
            send(all, { "s", 1, "h:e", { o = 0, e = epoch } })
            assert.are.same({ "S", 1, { recovered = true, o = 4, e = epoch } }, recv(all))
            for i = 1, 4 do assert.are.same({ "p", "h:e", i, epoch, tostring(i) }, recv(all)) end
            local past = open_v1(srv)
            send(past, { "s", 1, "h:e", { o = 9, e = epoch } })
            local s = recv(past)
            assert.are.same({ "S", 1, false, 4 }, { s[1], s[2], s[3].recovered, s[3].o })
            send(p, { "m", "pub h:e 1" })
            for _, c in ipairs { top, all, past } do
                assert.are.same({ "p", "h:e", 5, epoch, "1" }, recv(c))
            end
            for _, c in ipairs { p, top, all, past } do c:close() end
        end)

        it("recovered = false for an epoch that is not the stream's", function()
            local r = open_v1(srv)
            send(r, { "s", 1, "h:d", { o = 0, e = "zzzzzzzz" } })
            local s = recv(r)
            assert.are.same({ "S", 1, false }, { s[1], s[2], s[3].recovered })
            assert.are_not.equal("zzzzzzzz", s[3].e)
            r:close()
        end)
    end)
end)

-- With the Redis engine keeping history, the publications carry Redis's offsets and a client
-- recovers from Redis (more in spec/channels_redis_spec.lua: two nodes, Redis restarts).
describe("moonwire.v1 with history in Redis", function()
    local redis = require "redis"
    local rd, srv, dir

    setup(function()
        rd = redis.start()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir, config = CONFIG .. 'redis = "' .. rd:url() .. '"\n' }
    end)
    teardown(function()
        if srv then assert.are.equal(0, srv:stop()) end
        if rd then rd:stop() end
        server.remove(dir)
    end)

    it("delivers Redis's offsets in order; a client recovers from them", function()
        local c = open_v1(srv)
        send(c, { "s", 1, "h:r" })
        assert.are.same({ "S", 1, { recovered = true } }, recv(c))
        socket.sleep(0.5) -- the node's SUBSCRIBE reaches Redis (docs/scaling.md)
        send(c, { "m", "pub h:r 3" })
        local epoch
        for i = 1, 3 do
            local p = recv(c)
            if p[1] == "m" then p = recv(c) end
            epoch = epoch or p[4]
            assert.are.same({ "p", "h:r", i, epoch, tostring(i) }, p)
        end
        local r = open_v1(srv)
        send(r, { "s", 1, "h:r", { o = 1, e = epoch } })
        assert.are.same({ "S", 1, { recovered = true, o = 3, e = epoch } }, recv(r))
        assert.are.same({ "p", "h:r", 2, epoch, "2" }, recv(r))
        assert.are.same({ "p", "h:r", 3, epoch, "3" }, recv(r))
        c:close()
        r:close()
    end)
end)
