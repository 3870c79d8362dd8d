-- moonwire.v1 recovery from the history kept in Redis (the Redis engine, docs/scaling.md):
-- two moonwire nodes on one real redis-server (the second with two workers; also run under
-- ThreadSanitizer: Makefile TSAN_SPECS). A client that read up to offset k on one node
-- and comes back to the OTHER node with (k, epoch) gets exactly what it missed, in order, then
-- live publications, each once, even while publishing goes on during its recovery; another
-- epoch gives recovered = false once; when Redis restarts (a new run_id: the history is gone)
-- or offsets were lost beyond what the node can fill from the stream, the subscribers are told ["R", topic, {o, e}] once before the
-- publications that follow; with Redis down, a recovery is answered within redis.timeout.
local ws = require "ws_client"
local server = require "server"
local redis = require "redis"
local cjson = require "cjson"
local socket = require "socket"

local APP = [=[
local app = { channels = true }

function app.message(conn, data)
    local topic, n = data:match("^pub (%S+) (%d+)$")
    if topic then
        for i = 1, tonumber(n) do
            local _, why = mw.publish(topic, "m" .. i)
            if why then return conn:send("failed " .. why) end
        end
        conn:send("published " .. n)
    elseif data:match("^pubbin ") then
        local _, why = mw.publish(data:sub(8), "\0\1\255", true)
        conn:send(why and ("failed " .. why) or "published bin")
    end
end

return app
]=]

local CONFIG = 'history = { ["h:"] = { size = 1000, ttl = 600 } }\n'

local function recv(c, timeout)
    local deadline = socket.gettime() + (timeout or 5)
    while true do
        local data, op = c:recv_message(math.max(0.01, deadline - socket.gettime()))
        assert(data, "no envelope: " .. tostring(op))
        local env = cjson.decode(data)
        if env[1] ~= "h" then return env end
    end
end

local function send(c, env) c:send_text(cjson.encode(env)) end

local function open_v1(srv)
    local c = assert(ws.connect(srv.port, { protocols = { "moonwire.v1" } }))
    assert.are.equal("W", recv(c)[1])
    return c
end

-- Publishes n on topic through node srv (an app message; its answer is awaited).
local function publish(srv, topic, n)
    local c = open_v1(srv)
    send(c, { "m", ("pub %s %d"):format(topic, n) })
    local m = recv(c)
    assert.are.same({ "m", "published " .. n }, m)
    c:close()
end

-- Nothing but heartbeats for a while.
local function quiet(c, seconds)
    local data, op = c:recv_message(seconds)
    while data and cjson.decode(data)[1] == "h" do data, op = c:recv_message(seconds) end
    assert.is_nil(data, "unexpected: " .. tostring(data) .. " " .. tostring(op))
end

describe("moonwire.v1 recovery from Redis", function()
    local rd, a, b, dir

    setup(function()
        rd = redis.start()
        dir = server.app_dir { ["app.lua"] = APP }
        local cfg = CONFIG .. 'redis = { url = "' .. rd:url() .. '", backoff = { min = 0.05, max = 0.2 } }\n'
        a = server.start { app = dir, config = cfg }
        b = server.start { app = dir, config = cfg .. "workers = 2\n" } -- recoveries on either
    end)
    teardown(function()
        if a then assert.are.equal(0, a:stop()) end
        if b then assert.are.equal(0, b:stop()) end
        if rd then rd:stop() end
        server.remove(dir)
    end)

    -- Subscribes on srv and reads the first n publications of topic (published on pub_srv);
    -- returns the client and the epoch.
    local function live(srv, topic, n, pub_srv)
        local c = open_v1(srv)
        send(c, { "s", 1, topic })
        assert.are.same({ "S", 1, { recovered = true } }, recv(c))
        local deadline = socket.gettime() + 5
        while rd:numsub("mw:t:/:" .. topic) < 1 and socket.gettime() < deadline do
            socket.sleep(0.02)
        end
        publish(pub_srv or srv, topic, n)
        local epoch
        for i = 1, n do
            local p = recv(c)
            epoch = epoch or p[4]
            assert.are.same({ "p", topic, i, epoch, "m" .. i }, p)
        end
        return c, epoch
    end

    it("a client at offset k that comes back to the other node gets exactly k+1..k+100",
        function()
            local c, epoch = live(a, "h:one", 7)
            c:close()
            publish(a, "h:one", 100)
            local r = open_v1(b)
            send(r, { "s", 1, "h:one", { o = 7, e = epoch } })
            assert.are.same({ "S", 1, { recovered = true, o = 107, e = epoch } }, recv(r))
            for i = 8, 107 do
                assert.are.same({ "p", "h:one", i, epoch, "m" .. (i - 7) }, recv(r))
            end
            quiet(r, 0.3)
            -- and live from there, through b's subscription
            publish(a, "h:one", 2)
            assert.are.same({ "p", "h:one", 108, epoch, "m1" }, recv(r))
            assert.are.same({ "p", "h:one", 109, epoch, "m2" }, recv(r))
            r:close()
        end)

    it("recovers while publishing goes on: every offset once, in order", function()
        local c, epoch = live(a, "h:two", 3)
        c:close()
        publish(a, "h:two", 200)
        -- A publisher on a sends 300 more while the client recovers on b.
        local p = open_v1(a)
        local r = open_v1(b)
        send(r, { "s", 1, "h:two", { o = 3, e = epoch } })
        send(p, { "m", "pub h:two 300" })
        local s = recv(r)
        assert.are.same({ "S", 1, true, epoch }, { s[1], s[2], s[3].recovered, s[3].e })
        assert.is_true(s[3].o >= 203)
        for i = 4, 503 do
            local e = recv(r)
            assert.are.same({ "p", "h:two", i, epoch }, { e[1], e[2], e[3], e[4] })
        end
        quiet(r, 0.3)
        p:close()
        r:close()
    end)

    it("recovers binary publications as binary envelopes", function()
        local c, epoch = live(a, "h:bin", 1)
        c:close()
        local p = open_v1(a)
        send(p, { "m", "pubbin h:bin" })
        assert.are.same({ "m", "published bin" }, recv(p))
        p:close()
        local r = open_v1(b)
        send(r, { "s", 1, "h:bin", { o = 1, e = epoch } })
        assert.are.same({ "S", 1, { recovered = true, o = 2, e = epoch } }, recv(r))
        local data, op = r:recv_message(5)
        assert.are.equal(ws.op.binary, op)
        -- 'p' | u16 topic length | topic | u64 offset | u8 epoch length | epoch | data
        local want = "p\0\5h:bin" .. ("\0"):rep(7) .. "\2" .. string.char(#epoch) .. epoch ..
            "\0\1\255"
        assert.are.equal(want, data)
        r:close()
    end)

    it("says recovered = false once for an epoch that is not the stream's", function()
        local c = live(a, "h:three", 2)
        c:close()
        local r = open_v1(b)
        send(r, { "s", 1, "h:three", { o = 1, e = "zzzzzzzz" } })
        local s = recv(r)
        assert.are.same({ "S", 1, false, 2 }, { s[1], s[2], s[3].recovered, s[3].o })
        assert.are_not.equal("zzzzzzzz", s[3].e)
        quiet(r, 0.3)
        publish(a, "h:three", 1)
        assert.are.same({ "p", "h:three", 3, s[3].e, "m1" }, recv(r))
        r:close()
    end)

    it("past the top is not recovered either", function()
        local c, epoch = live(a, "h:four", 2)
        c:close()
        local r = open_v1(b)
        send(r, { "s", 1, "h:four", { o = 50, e = epoch } })
        assert.are.same({ "S", 1, { recovered = false, o = 2, e = epoch } }, recv(r))
        r:close()
    end)

    it("tells subscribers ['R', topic, {o, e}] when offsets were skipped and the stream does " ..
        "not hold them (a gap the node cannot fill)", function()
        local c, epoch = live(b, "h:six", 3, a)
        -- As if offset 4 had been given and then lost from the stream (trimmed) before b heard
        -- it: b's gap fill reads the stream, finds 5 but not 4.
        assert.are.equal("4", rd:cli("HINCRBY", "mw:h:/:h:six:m", "o", "1"))
        publish(a, "h:six", 1)
        assert.are.same({ "R", "h:six", { o = 4, e = epoch } }, recv(c))
        assert.are.same({ "p", "h:six", 5, epoch, "m1" }, recv(c))
        publish(a, "h:six", 1)
        assert.are.same({ "p", "h:six", 6, epoch, "m1" }, recv(c))
        c:close()
    end)

    it("tells subscribers ['R', topic, {o, e}] once when Redis restarts and the history is gone",
        function()
            local c, epoch = live(b, "h:five", 3, a)
            rd:kill9()
            rd:restart()
            -- The nodes reconnect and subscribe again; a publish then starts a new epoch.
            local deadline = socket.gettime() + 10
            while rd:numsub("mw:t:/:h:five") < 1 and socket.gettime() < deadline do
                socket.sleep(0.05)
            end
            local ok
            repeat
                ok = pcall(publish, a, "h:five", 1)
                if not ok then socket.sleep(0.1) end
            until ok or socket.gettime() > deadline
            local rs = recv(c)
            assert.are.same({ "R", "h:five", 0 }, { rs[1], rs[2], rs[3].o })
            assert.are_not.equal(epoch, rs[3].e)
            assert.are.same({ "p", "h:five", 1, rs[3].e, "m1" }, recv(c))
            publish(a, "h:five", 1)
            assert.are.same({ "p", "h:five", 2, rs[3].e, "m1" }, recv(c))
            c:close()
        end)
end)

describe("moonwire.v1 recovery while Redis is down", function()
    local rd, srv, dir

    setup(function()
        rd = redis.start()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir, config = CONFIG .. 'redis = { url = "' .. rd:url() ..
            '", timeout = 0.5 }\n' }
    end)
    teardown(function()
        if srv then assert.are.equal(0, srv:stop()) end
        if rd then rd:stop() end
        server.remove(dir)
    end)

    it("answers recovered = false (no position) within the timeout, then goes live", function()
        rd:kill9()
        local r = open_v1(srv)
        local t0 = socket.gettime()
        send(r, { "s", 1, "h:down", { o = 3, e = "abcdefgh" } })
        assert.are.same({ "S", 1, { recovered = false } }, recv(r, 3))
        assert.is_true(socket.gettime() - t0 < 2.5)
        rd:restart()
        local deadline = socket.gettime() + 10
        while rd:numsub("mw:t:/:h:down") < 1 and socket.gettime() < deadline do
            socket.sleep(0.05)
        end
        local ok
        repeat
            ok = pcall(publish, srv, "h:down", 1)
            if not ok then socket.sleep(0.1) end
        until ok or socket.gettime() > deadline
        local p = recv(r)
        assert.are.same({ "p", "h:down", 1, "m1" }, { p[1], p[2], p[3], p[5] })
        r:close()
    end)
end)
