-- Issue 14: the Redis engine. Real redis-server instances on free loopback ports (no
-- persistence), two moonwire nodes on each: mw.redis.call (values, errors, 1000 callers at
-- once, timeouts, Redis down), topics across nodes in order, channels subscribed only while
-- someone listens, two shards, kill -9 and restart, CLIENT KILL of the subscriber, /readyz.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local R = require "redis"
local nginx = require "nginx"
local helpers = require "helpers"
local cjson = require "cjson"

local APP = [[
local app = {}
function app.upgrade(req) return true end
local function reply(conn, v, err)
    if type(v) == "table" then v = "[" .. table.concat(v, ",") .. "]" end
    conn:send(tostring(v) .. "|" .. tostring(err))
end
function app.message(conn, data)
    local cmd, a, b = data:match("^(%S+) ?(%S*) ?(.*)$")
    if cmd == "call" then -- call CMD ARGS... (space separated)
        local args = {}
        for w in (a .. " " .. b):gmatch("%S+") do args[#args + 1] = w end
        reply(conn, mw.redis.call(table.unpack(args)))
    elseif cmd == "sub" then
        assert(conn:subscribe(a))
        conn:send("subscribed")
    elseif cmd == "unsub" then
        conn:unsubscribe(a)
        conn:send("unsubscribed")
    elseif cmd == "subpub" then -- subpub TOPIC N: subscribe, then publish "1".."N" at once
        assert(conn:subscribe(a))
        conn:send("subscribed")
        for i = 1, tonumber(b) do mw.publish(a, tostring(i)) end
    elseif cmd == "subbin" then -- subbin TOPIC: subscribe, then publish b1 (binary), t2 (text)
        assert(conn:subscribe(a))
        conn:send("subscribed")
        mw.publish(a, "b1", true)
        mw.publish(a, "t2")
    elseif cmd == "binpub" then -- binpub TOPIC DATA: a binary publication
        local n, err = mw.publish(a, b, true)
        conn:send("pub " .. n .. " " .. tostring(err))
    elseif cmd == "pub" then
        local n, err = mw.publish(a, b)
        conn:send("pub " .. n .. " " .. tostring(err))
    elseif cmd == "burst" then -- burst TOPIC N, or TOPIC N FROM: "FROM".."FROM+N-1"
        local n, from = b:match("^(%d+) ?(%d*)$")
        from = tonumber(from) or 1
        for i = from, from + tonumber(n) - 1 do mw.publish(a, tostring(i)) end
        conn:send("sent")
    elseif cmd == "hist" then -- hist TOPIC, optionally SINCE and EPOCH
        local since, epoch = b:match("^(%S*) ?(%S*)$")
        local h, err = mw.history(a, tonumber(since), epoch ~= "" and epoch or nil)
        conn:send(h and mw.json.encode(h) or ("err " .. err))
    elseif cmd == "here" then -- here TOPIC INFO: subscribe with presence
        assert(conn:subscribe(a, { presence = b }))
        conn:send("here")
    elseif cmd == "who" then
        local list, err = mw.presence_list(a)
        if not list then return conn:send("err " .. err) end
        local infos = {}
        for _, e in ipairs(list) do infos[#infos + 1] = e.info end
        table.sort(infos)
        conn:send(mw.presence(a) .. ":" .. table.concat(infos, ","))
    elseif cmd == "many" then -- many N: N timer runs, each a SET and a GET of its own key
        local n, done, bad = tonumber(a), 0, 0
        for i = 1, n do
            mw.after(0, function()
                local ok = mw.redis.call("SET", "k" .. i, i)
                local v = mw.redis.call("GET", "k" .. i)
                if ok ~= "OK" or v ~= tostring(i) then bad = bad + 1 end
                done = done + 1
                if done == n then conn:send("done " .. bad) end
            end)
        end
    end
end
return app
]]

local function command(c, text, timeout)
    assert(c:send_text(text))
    return c:recv_message(timeout or 5)
end

local function wait_until(check, timeout)
    local deadline = socket.gettime() + (timeout or 5)
    repeat
        if check() then return true end
        socket.sleep(0.02)
    until socket.gettime() > deadline
    return check()
end

local function readyz(srv)
    local port = srv:admin_port()
    local resp = ws.http(port, ("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"), { timeout = 2 })
    return resp and resp.status
end

describe("redis", function()
    local dir, rd, nodes

    local function start_node(config, args)
        local argv = { "--admin", "0" }
        for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
        local srv = server.start { app = dir, config = config, args = argv }
        nodes[#nodes + 1] = srv
        -- Connected to Redis (every connection of every worker) before the test goes on.
        assert(wait_until(function() return readyz(srv) == 200 end), "not ready:\n" .. srv:log())
        return srv
    end

    before_each(function()
        dir = server.app_dir { ["app.lua"] = APP }
        rd = R.start()
        nodes = {}
    end)

    after_each(function()
        for _, n in ipairs(nodes) do n:stop() end
        rd:stop()
        server.remove(dir)
    end)

    describe("mw.redis.call", function()
        it("answers values, nil and errors without raising", function()
            local srv = start_node(nil, { "--redis", rd:url() })
            local c = assert(ws.connect(srv.port))
            assert.are.equal("OK|nil", command(c, "call SET greeting hello"))
            assert.are.equal("hello|nil", command(c, "call GET greeting"))
            assert.are.equal("nil|nil", command(c, "call GET missing"))
            assert.are.equal("3|nil", command(c, "call RPUSH l a b c"))
            assert.are.equal("[a,b,c]|nil", command(c, "call LRANGE l 0 -1"))
            local err = command(c, "call NOSUCHCOMMAND x")
            assert.truthy(err:find("^nil|ERR unknown command"), err)
            assert.are.equal("hello", rd:cli("GET", "greeting"))
            c:close()
        end)

        it("serves 1000 callers waiting at once on one pipelined connection", function()
            local srv = start_node(nil, { "--redis", rd:url() })
            local c = assert(ws.connect(srv.port))
            assert.are.equal("done 0", command(c, "many 1000", 20))
            assert.are.equal("1000", rd:cli("DBSIZE"))
            c:close()
        end)

        it("answers nil and a reason for an aggregate reply over max_reply, then goes on", function()
            local srv = start_node('redis = { url = "' .. rd:url() .. '", max_reply = "4K", ' ..
                                   'backoff = { min = 0.05, max = 0.2 } }\n')
            local items = {}
            for i = 1, 2000 do items[i] = ("item%05d"):format(i) end
            rd:cli("RPUSH", "big", table.unpack(items))
            local c = assert(ws.connect(srv.port))
            local r = command(c, "call LRANGE big 0 -1")
            assert.truthy(r:find("^nil|too large: .*max_reply"), r)
            assert.is_true(wait_until(function() return readyz(srv) == 200 end))
            assert.are.equal("[item00001,item00002]|nil", command(c, "call LRANGE big 0 1"))
            c:close()
        end)

        it("times out, and says Redis is unavailable while it is down", function()
            local srv = start_node('redis = { url = "' .. rd:url() .. '", timeout = 0.3, ' ..
                                   'backoff = { min = 0.05, max = 0.2 } }\n')
            local c = assert(ws.connect(srv.port))
            assert.are.equal("OK|nil", command(c, "call SET k v"))
            local t0 = socket.gettime()
            local r = command(c, "call BLPOP nolist 3")
            assert.truthy(r:find("^nil|timeout"), r)
            assert.is_true(socket.gettime() - t0 < 2)
            rd:kill9()
            assert.is_true(wait_until(function() return readyz(srv) == 503 end))
            r = command(c, "call GET k")
            assert.truthy(r:find("^nil|unavailable") or r:find("^nil|lost"), r)
            local p = command(c, "pub t x")
            assert.truthy(p:find("not carried", 1, true), p)
            rd:restart()
            assert.is_true(wait_until(function() return readyz(srv) == 200 end))
            assert.are.equal("OK|nil", command(c, "call SET k again"))
            c:close()
        end)
    end)

    describe("topics across nodes", function()
        it("carries 1000 publishes from one node to another in order, without echo", function()
            local a = start_node(nil, { "--redis", rd:url() })
            local b = start_node(nil, { "--redis", rd:url(), "--workers", "2" })
            local sub = assert(ws.connect(b.port))
            assert.are.equal("subscribed", command(sub, "sub room"))
            local local_sub = assert(ws.connect(a.port))
            assert.are.equal("subscribed", command(local_sub, "sub room"))
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:room") == 2 end))
            local pub = assert(ws.connect(a.port))
            assert.are.equal("sent", command(pub, "burst room 1000"))
            for i = 1, 1000 do assert.are.equal(tostring(i), sub:recv_message(5)) end
            -- The publisher's node delivered each once (its own echo from Redis dropped).
            for i = 1, 1000 do assert.are.equal(tostring(i), local_sub:recv_message(5)) end
            assert.is_nil(local_sub:recv_message(0.3))
            for _, c in ipairs { sub, local_sub, pub } do c:close() end
        end)

        it("subscribes a channel only while the node has subscribers (plus the linger)", function()
            local a = start_node('redis = { url = "' .. rd:url() .. '", linger = 0.3 }\n')
            local c = assert(ws.connect(a.port))
            socket.sleep(0.2)
            assert.are.equal(0, rd:numsub("mw:t:/:quiet"))
            assert.are.equal("pub 0 nil", command(c, "pub quiet x"))
            assert.are.equal("subscribed", command(c, "sub quiet"))
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:quiet") == 1 end))
            assert.are.equal("unsubscribed", command(c, "unsub quiet"))
            assert.are.equal(1, rd:numsub("mw:t:/:quiet"), "lingers")
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:quiet") == 0 end, 3))
            c:close()
        end)

        it("spreads topics over two shards by jump hash", function()
            local rd2 = R.start()
            local cfg = ('redis = { shards = { "%s", "%s" } }\n'):format(rd:url(), rd2:url())
            local a, b = start_node(cfg), start_node(cfg)
            local sub = assert(ws.connect(b.port))
            for i = 1, 20 do assert.are.equal("subscribed", command(sub, "sub s" .. i)) end
            local on1, on2 = 0, 0
            assert.is_true(wait_until(function()
                on1, on2 = 0, 0
                for i = 1, 20 do
                    on1 = on1 + rd:numsub("mw:t:/:s" .. i)
                    on2 = on2 + rd2:numsub("mw:t:/:s" .. i)
                end
                return on1 + on2 == 20
            end))
            assert.is_true(on1 > 0 and on2 > 0, ("shard 1: %d, shard 2: %d"):format(on1, on2))
            local pub = assert(ws.connect(a.port))
            for i = 1, 20 do command(pub, "pub s" .. i .. " m" .. i) end
            local got = {}
            for _ = 1, 20 do got[assert(sub:recv_message(5))] = true end
            for i = 1, 20 do assert.is_true(got["m" .. i]) end
            sub:close()
            pub:close()
            rd2:stop()
        end)
    end)

    describe("history in Redis", function()
        local HIST = 'history = { ["h:"] = { size = 1000, ttl = 600 } }\n'

        local function hist(c, topic, since, epoch)
            local r = command(c, ("hist %s %s %s"):format(topic, since or "", epoch or ""))
            if r:sub(1, 4) == "err " then return nil, r:sub(5) end
            return cjson.decode(r)
        end

        it("gives one order of offsets to two nodes publishing at once", function()
            local cfg = HIST .. 'redis = "' .. rd:url() .. '"\n'
            local a, b = start_node(cfg), start_node(cfg .. "workers = 2\n")
            local subs = {}
            for i = 1, 4 do
                subs[i] = assert(ws.connect(i % 2 == 0 and a.port or b.port))
                assert.are.equal("subscribed", command(subs[i], "sub h:x"))
            end
            -- Both nodes (b: both workers, most likely) listen before anyone publishes.
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:h:x") >= 2 end))
            socket.sleep(0.1)
            local pa, pb = assert(ws.connect(a.port)), assert(ws.connect(b.port))
            pa:send_text("burst h:x 200")
            pb:send_text("burst h:x 200")
            assert.are.equal("sent", pa:recv_message(5))
            assert.are.equal("sent", pb:recv_message(5))
            local seqs = {}
            for i, s in ipairs(subs) do
                seqs[i] = {}
                for k = 1, 400 do seqs[i][k] = assert(s:recv_message(5)) end
            end
            for i = 2, 4 do assert.are.same(seqs[1], seqs[i]) end
            local ha, hb = assert(hist(pa, "h:x")), assert(hist(pb, "h:x"))
            assert.are.equal(400, ha.offset)
            assert.are.same(ha, hb)
            for k, p in ipairs(ha.publications) do
                assert.are.equal(k, p.offset)
                assert.are.equal(seqs[1][k], p.data)
            end
            local after = assert(hist(pa, "h:x", 390, ha.epoch))
            assert.is_true(after.recovered)
            assert.are.equal(10, #after.publications)
            assert.are.equal(391, after.publications[1].offset)
            for _, c in ipairs(subs) do c:close() end
            pa:close()
            pb:close()
        end)

        it("answers nil and a reason when a topic is too long for a Redis key", function()
            local a = start_node(HIST .. 'redis = "' .. rd:url() .. '"\n' ..
                                 'limits = { max_topic_length = 4096 }\n')
            local c = assert(ws.connect(a.port))
            local h, err = hist(c, "h:" .. ("x"):rep(1100))
            assert.is_nil(h)
            assert.truthy(err:find("too long for a Redis key", 1, true), err)
            assert.are.equal(0, assert(hist(c, "h:short")).offset)
            c:close()
        end)

        it("delivers what is published before Redis confirms the node's SUBSCRIBE", function()
            local a = start_node(HIST .. 'redis = "' .. rd:url() .. '"\n')
            local c = assert(ws.connect(a.port))
            -- The publications reach Redis before the SUBSCRIBE: read back from the stream.
            assert.are.equal("subscribed", command(c, "subpub h:early 50"))
            for i = 1, 50 do assert.are.equal(tostring(i), c:recv_message(5), a:log()) end
            assert.is_nil(c:recv_message(0.3))
            -- Another topic that already has history: only what comes after the subscribe.
            assert.are.equal("pub 0 nil", command(c, "pub h:early2 before"))
            local d = assert(ws.connect(a.port))
            assert.are.equal("subscribed", command(d, "subpub h:early2 20"))
            for i = 1, 20 do assert.are.equal(tostring(i), d:recv_message(5), a:log()) end
            assert.is_nil(d:recv_message(0.3))
            c:close()
            d:close()
        end)

        it("keeps binary = true in the stream: gap fill and mw.history", function()
            local a = start_node(HIST .. 'redis = "' .. rd:url() .. '"\n')
            local c = assert(ws.connect(a.port))
            assert.are.equal("pub 0 nil", command(c, "binpub h:bin b1"))
            assert.are.equal("pub 0 nil", command(c, "pub h:bin t2"))
            local h = assert(hist(c, "h:bin"))
            assert.is_true(h.publications[1].binary)
            assert.is_nil(h.publications[2].binary)
            -- Read back by the node (published before its SUBSCRIBE reached Redis).
            local d = assert(ws.connect(a.port))
            assert.are.equal("subscribed", command(d, "subbin h:bin2"))
            local data, op = d:recv_message(5)
            assert.are.equal("b1", data)
            assert.are.equal(ws.op.binary, op)
            data, op = d:recv_message(5)
            assert.are.equal("t2", data)
            assert.are.equal(ws.op.text, op)
            c:close()
            d:close()
        end)

        it("starts a new epoch when Redis comes back from an older snapshot", function()
            local cfg = HIST .. 'redis = { url = "' .. rd:url() .. '", ' ..
                        'backoff = { min = 0.05, max = 0.2 } }\n'
            local a = start_node(cfg)
            assert.is_true(wait_until(function() return readyz(a) == 200 end))
            local c = assert(ws.connect(a.port))
            for i = 1, 5 do assert.are.equal("pub 0 nil", command(c, "pub h:r m" .. i)) end
            assert.are.equal("OK", rd:cli("SAVE"))
            for i = 6, 10 do assert.are.equal("pub 0 nil", command(c, "pub h:r m" .. i)) end
            local before = assert(hist(c, "h:r"))
            assert.are.equal(10, before.offset)
            rd:kill9()
            assert.is_true(wait_until(function() return readyz(a) == 503 end))
            local p = command(c, "pub h:r lost")
            assert.truthy(p:find("redis unavailable", 1, true), p)
            rd:restart()
            assert.are.equal("1", rd:cli("EXISTS", "mw:h:/:h:r:m"), "the snapshot came back")
            assert.is_true(wait_until(function() return readyz(a) == 200 end))
            local h
            assert.is_true(wait_until(function()
                h = hist(c, "h:r", 10, before.epoch)
                return h ~= nil
            end))
            assert.is_false(h.recovered)
            assert.are_not.equal(before.epoch, h.epoch)
            assert.are.equal(0, h.offset)
            assert.are.equal("pub 0 nil", command(c, "pub h:r new"))
            local now = assert(hist(c, "h:r", 0, h.epoch))
            assert.is_true(now.recovered)
            assert.are.equal(1, now.offset)
            assert.are.equal("new", now.publications[1].data)
            c:close()
        end)
    end)

    describe("behind nginx", function()
        it("runs the example config: clients stay on a node, topics cross", function()
            local conf = assert(helpers.read_file("examples/cluster/nginx.conf"))
            local doc = assert(helpers.read_file("docs/scaling.md"))
            assert.truthy(doc:find(conf, 1, true), "docs/scaling.md shows the tested config")
            local a = start_node(nil, { "--redis", rd:url() })
            local b = start_node(nil, { "--redis", rd:url() })
            local front = nginx.free_port()
            conf = conf:gsub("127%.0%.0%.1:8081", "127.0.0.1:" .. a.port)
                       :gsub("127%.0%.0%.1:8082", "127.0.0.1:" .. b.port)
                       :gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. front)
            local ng = nginx.start { http_extra = conf }
            local clients = {}
            for i = 1, 6 do
                clients[i] = assert(ws.connect(front))
                assert.are.equal("subscribed", command(clients[i], "sub news"))
            end
            -- Sticky: every client from this address is on the same node.
            local on_a = select(2, a:log():gsub("event=upgrade", ""))
            local on_b = select(2, b:log():gsub("event=upgrade", ""))
            assert.is_true((on_a == 6 and on_b == 0) or (on_a == 0 and on_b == 6),
                           ("a: %d, b: %d"):format(on_a, on_b))
            -- A publish on the other node, straight to it, reaches them through Redis.
            local other = assert(ws.connect(on_a == 6 and b.port or a.port))
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:news") == 1 end))
            assert.are.equal("pub 0 nil", command(other, "pub news hello"))
            for i = 1, 6 do assert.are.equal("hello", clients[i]:recv_message(5)) end
            for i = 1, 6 do clients[i]:close() end
            other:close()
            ng:stop()
        end)
    end)

    describe("presence", function()
        it("shows who is in a topic on every node, and forgets a killed node", function()
            local cfg = 'redis = { url = "' .. rd:url() .. '", node_lease = 1 }\n'
            local a, b = start_node(cfg), start_node(cfg .. "workers = 2\n")
            local ca, cb = assert(ws.connect(a.port)), assert(ws.connect(b.port))
            local cb2 = assert(ws.connect(b.port))
            assert.are.equal("here", command(ca, "here lobby alice"))
            assert.are.equal("here", command(cb, "here lobby bob"))
            assert.are.equal("here", command(cb2, "here lobby carol"))
            -- Each node writes its entries on its own connection: both show all three soon.
            assert.is_true(wait_until(function()
                return command(ca, "who lobby") == "3:alice,bob,carol"
            end, 2))
            assert.are.equal("3:alice,bob,carol", command(cb, "who lobby"))
            -- Leaving the topic removes the entry at once.
            assert.are.equal("unsubscribed", command(cb2, "unsub lobby"))
            assert.is_true(wait_until(function()
                return command(ca, "who lobby") == "2:alice,bob"
            end, 2))
            -- kill -9 b: its entries go within the lease (1 s here).
            b:kill()
            local t0 = socket.gettime()
            assert.is_true(wait_until(function()
                return command(ca, "who lobby") == "1:alice"
            end, 3))
            assert.is_true(socket.gettime() - t0 < 2.5)
            ca:close()
        end)
    end)

    describe("gaps", function()
        it("reads back what a frozen subscriber link missed on a history topic", function()
            local proxy = io.popen("exec python3 spec/support/freeze_proxy.py " .. rd.port)
            local pport, ppid = proxy:read("l"):match("^(%d+) (%d+)$")
            local hist = 'history = { ["h:"] = { size = 1000, ttl = 600 } }\n'
            local a = start_node(hist .. 'redis = "' .. rd:url() .. '"\n')
            local b = start_node(hist .. 'redis = { url = "redis://127.0.0.1:' .. pport .. '", ' ..
                                 'probe_interval = 0.3, backoff = { min = 0.05, max = 0.2 } }\n')
            local sub = assert(ws.connect(b.port))
            assert.are.equal("subscribed", command(sub, "sub h:g"))
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:h:g") == 1 end))
            local pub = assert(ws.connect(a.port))
            assert.are.equal("sent", command(pub, "burst h:g 10"))
            for i = 1, 10 do assert.are.equal(tostring(i), sub:recv_message(5)) end
            os.execute("kill -USR1 " .. ppid)
            -- Published while node b hears nothing: it misses them on the wire.
            assert.are.equal("sent", command(pub, "burst h:g 200 11"))
            assert.truthy(b:wait_log("no probe came back", 3), b:log())
            assert.is_true(wait_until(function() return readyz(b) == 200 end))
            assert.are.equal("sent", command(pub, "burst h:g 10 211"))
            -- Every offset once, in order: the missed ones read back from the stream.
            for i = 11, 220 do assert.are.equal(tostring(i), sub:recv_message(5), b:log()) end
            assert.is_nil(sub:recv_message(0.3))
            local m = ws.http(b:admin_port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                              { timeout = 2 }).body
            assert.is_true(tonumber(m:match("\nmoonwire_redis_gap_fills_total (%d+)")) >= 1, m)
            sub:close()
            pub:close()
            os.execute("kill " .. ppid)
            proxy:close()
        end)
    end)

    describe("failures", function()
        it("resubscribes within 2 s after kill -9 and restart", function()
            local cfg = 'redis = { url = "' .. rd:url() .. '", ' ..
                        'backoff = { min = 0.05, max = 0.5 } }\n'
            local a, b = start_node(cfg), start_node(cfg)
            local sub = assert(ws.connect(b.port))
            for i = 1, 5 do assert.are.equal("subscribed", command(sub, "sub r" .. i)) end
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:r5") == 1 end))
            rd:kill9()
            assert.is_true(wait_until(function() return readyz(b) == 503 end))
            rd:restart()
            local t0 = socket.gettime()
            assert.is_true(wait_until(function()
                for i = 1, 5 do if rd:numsub("mw:t:/:r" .. i) ~= 1 then return false end end
                return true
            end, 2))
            assert.is_true(socket.gettime() - t0 < 2)
            assert.is_true(wait_until(function() return readyz(a) == 200 end))
            -- Counted: both connections of the node lost once, its subscriber resubscribed.
            local m = ws.http(b:admin_port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                              { timeout = 2 }).body
            assert.are.equal("2", m:match("\nmoonwire_redis_reconnects_total (%d+)"), m)
            assert.are.equal("1", m:match("\nmoonwire_redis_resubscribes_total (%d+)"), m)
            assert.are.equal("1", m:match("\nmoonwire_redis_up (%d+)"), m)
            local pub = assert(ws.connect(a.port))
            assert.are.equal("pub 0 nil", command(pub, "pub r3 back"))
            assert.are.equal("back", sub:recv_message(5))
            sub:close()
            pub:close()
        end)

        it("finds a frozen link with the probe and connects again", function()
            local proxy = io.popen("exec python3 spec/support/freeze_proxy.py " .. rd.port)
            local pport, ppid = proxy:read("l"):match("^(%d+) (%d+)$")
            local a = start_node('redis = { url = "redis://127.0.0.1:' .. pport .. '", ' ..
                                 'probe_interval = 0.3, backoff = { min = 0.05, max = 0.2 } }\n')
            local b = start_node(nil, { "--redis", rd:url() })
            local sub = assert(ws.connect(a.port))
            assert.are.equal("subscribed", command(sub, "sub f"))
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:f") == 1 end))
            os.execute("kill -USR1 " .. ppid)
            local t0 = socket.gettime()
            assert.truthy(a:wait_log("no probe came back", 3), a:log())
            assert.is_true(socket.gettime() - t0 < 2 * 0.3 * 2.5 + 0.5)
            -- Connected again through the proxy (new connections pass): messages flow.
            local pub = assert(ws.connect(b.port))
            assert.is_true(wait_until(function()
                command(pub, "pub f after")
                return sub:recv_message(0.2) == "after"
            end, 3))
            sub:close()
            pub:close()
            os.execute("kill " .. ppid)
            proxy:close()
        end)

        it("comes back after Redis kills its subscriber connection", function()
            local cfg = 'redis = { url = "' .. rd:url() .. '", ' ..
                        'backoff = { min = 0.05, max = 0.5 } }\n'
            local a, b = start_node(cfg), start_node(cfg)
            local sub = assert(ws.connect(b.port))
            assert.are.equal("subscribed", command(sub, "sub k"))
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:k") == 1 end))
            local killed = rd:cli("CLIENT", "KILL", "TYPE", "pubsub")
            assert.is_true(tonumber(killed) >= 2, killed) -- both nodes' subscribers
            assert.is_true(wait_until(function() return rd:numsub("mw:t:/:k") == 1 end, 2))
            local pub = assert(ws.connect(a.port))
            assert.is_true(wait_until(function()
                command(pub, "pub k again")
                return sub:recv_message(0.2) == "again"
            end, 3))
            sub:close()
            pub:close()
        end)
    end)
end)
