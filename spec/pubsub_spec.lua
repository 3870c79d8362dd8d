-- Pub/sub: conn:subscribe / conn:unsubscribe, mw.publish and mw.subscribers. Who gets a
-- publish (exactly the subscribers: not others, not after unsubscribe or close), binary and
-- invalid text, and a fan-out of 200 messages to 1,000 subscribers, each once and in order.
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"

-- Commands in, answers out. "/sub/TOPIC" connections subscribe in app.open (the mass test).
local APP = [=[
local app = {}

function app.open(conn)
    local topic = conn.path:match("^/sub/(.+)$")
    if topic then conn:subscribe(topic) end
end

function app.message(conn, data, is_binary)
    local cmd, arg = data:match("^(%S+) ?(.*)$")
    if cmd == "sub" then
        conn:send("sub " .. tostring(conn:subscribe(arg)))
    elseif cmd == "unsub" then
        conn:send("unsub " .. tostring(conn:unsubscribe(arg)))
    elseif cmd == "pub" then -- pub TOPIC TEXT
        local topic, text = arg:match("^(%S+) (.*)$")
        conn:send("pub " .. mw.publish(topic, text))
    elseif cmd == "pubnul" then -- topics are byte strings: "a\0b" is not "a"
        conn:send("pubnul " .. mw.publish(arg .. "\0b", "nul"))
    elseif cmd == "subnul" then
        conn:send("subnul " .. tostring(conn:subscribe(arg .. "\0b")))
    elseif cmd == "pubbin" then
        conn:send("pubbin " .. mw.publish(arg, "\0\1\2\255", true))
    elseif cmd == "pubbad" then -- invalid UTF-8 as text, caught
        local ok, err = pcall(mw.publish, arg, "ok\255\254")
        conn:send("pubbad " .. tostring(ok) .. " " .. tostring(err))
    elseif cmd == "pubbad-raise" then -- the same, uncaught: the handler fails
        mw.publish(arg, "bad\192")
    elseif cmd == "pubempty" then
        conn:send("pubempty " .. mw.publish(arg, ""))
    elseif cmd == "count" then
        conn:send("count " .. mw.subscribers(arg))
    elseif cmd == "id" then
        conn:send("id " .. conn.id)
    elseif cmd == "close-and-count" then -- subscribers right after conn:close in a handler
        conn:close(4000, "bye")
        mw.log("info", "after close: subscribers " .. mw.subscribers(arg)
            .. " publish " .. mw.publish(arg, "after close"))
    elseif cmd == "sub-after-close" then
        conn:close()
        local a, b = conn:subscribe(arg)
        local c, d = conn:unsubscribe(arg)
        mw.log("info", "sub after close:", a, b, c, d)
    elseif cmd == "mass" then -- the publisher of the fan-out test: "mass TOPIC N"
        local topic, n = arg:match("^(%S+) (%S+)$")
        local receivers = mw.publish(topic, n)
        conn:send("sent " .. n .. " " .. receivers)
    else
        conn:send(data, is_binary)
    end
end

function app.close(conn, code)
    mw.log("info", "pubsub closed " .. conn.id .. " " .. code)
end

return app
]=]

local function connect(srv, path)
    return assert(ws.connect(srv.port, { path = path }))
end

-- Sends a command and returns the answer.
local function ask(c, cmd)
    local got, kind, code = c:echo(cmd)
    assert(got, "no answer to " .. cmd .. ": " .. tostring(kind) .. " " .. tostring(code))
    return got
end

-- Asserts that c receives nothing (no frame) within timeout seconds.
local function silent(c, what, timeout)
    local f, err = c:recv_frame(timeout or 0.2)
    assert.is_nil(f, what .. ": got " .. (f and ("'" .. f.payload .. "'") or ""))
    assert.are.equal("timeout", err)
end

local function expect_message(c, want, opcode)
    local got, op = c:recv_message(3)
    assert.are.same({ want, opcode or ws.op.text }, { got, op })
end

describe("pub/sub", function()
    local srv, dir

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP }
        srv = server.start { app = dir }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    describe("conn:subscribe and conn:unsubscribe", function()
        it("subscribe returns true, then false for a topic it already has", function()
            local c = connect(srv)
            assert.are.equal("sub true", ask(c, "sub rv"))
            assert.are.equal("sub false", ask(c, "sub rv"))
            assert.are.equal("count 1", ask(c, "count rv"))
            c:close()
        end)

        it("unsubscribe returns true once, then false; false for a topic never joined",
            function()
                local c = connect(srv)
                assert.are.equal("unsub false", ask(c, "unsub never"))
                assert.are.equal("sub true", ask(c, "sub rv2"))
                assert.are.equal("unsub true", ask(c, "unsub rv2"))
                assert.are.equal("unsub false", ask(c, "unsub rv2"))
                assert.are.equal("count 0", ask(c, "count rv2"))
                assert.are.equal("sub true", ask(c, "sub rv2"), "subscribing again works")
                c:close()
            end)

        it("return nil, 'closed' after conn:close in the same handler", function()
            local c = connect(srv)
            c:send_text("sub-after-close gone")
            assert.are.equal(1000, (c:expect_close()))
            c:send_close(1000)
            c:abort()
            assert.is_truthy(srv:wait_log("sub after close: nil closed nil closed", 3),
                srv:log():match("[^\n]*sub after close[^\n]*"))
        end)
    end)

    describe("mw.subscribers", function()
        it("is 0 for a topic nobody joined", function()
            local c = connect(srv)
            assert.are.equal("count 0", ask(c, "count nobody-here"))
            c:close()
        end)

        it("counts subscribers as they join, leave and close", function()
            local a, b, c = connect(srv), connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub counted"))
            assert.are.equal("count 1", ask(c, "count counted"))
            assert.are.equal("sub true", ask(b, "sub counted"))
            assert.are.equal("count 2", ask(c, "count counted"))
            assert.are.equal("unsub true", ask(a, "unsub counted"))
            assert.are.equal("count 1", ask(c, "count counted"))
            b:close()
            assert.are.equal("count 0", ask(c, "count counted"), "a closed conn does not count")
            a:close()
            c:close()
        end)
    end)

    describe("mw.publish", function()
        it("returns 0 for a topic nobody is subscribed to", function()
            local c = connect(srv)
            assert.are.equal("pub 0", ask(c, "pub nobody hello"))
            c:close()
        end)

        it("reaches exactly the subscribers, the publisher too when subscribed", function()
            local a, b, other, pub = connect(srv), connect(srv), connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub exact"))
            assert.are.equal("sub true", ask(b, "sub exact"))
            assert.are.equal("sub true", ask(other, "sub exact-other"))
            assert.are.equal("pub 2", ask(pub, "pub exact one"))
            expect_message(a, "one")
            expect_message(b, "one")
            silent(other, "a subscriber of another topic")
            -- The publisher subscribes: it gets the publish before its own answer.
            assert.are.equal("sub true", ask(pub, "sub exact"))
            pub:send_text("pub exact two")
            expect_message(pub, "two")
            expect_message(pub, "pub 3")
            expect_message(a, "two")
            expect_message(b, "two")
            silent(other, "a subscriber of another topic")
            for _, c in ipairs { a, b, other, pub } do c:close() end
        end)

        it("does not reach a connection after it unsubscribed", function()
            local a, b = connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub unsubbed"))
            assert.are.equal("sub true", ask(b, "sub unsubbed"))
            assert.are.equal("unsub true", ask(a, "unsub unsubbed"))
            b:send_text("pub unsubbed hi")
            expect_message(b, "hi") -- b is a subscriber: the publish comes before the answer
            expect_message(b, "pub 1")
            silent(a, "an unsubscribed connection")
            a:close()
            b:close()
        end)

        it("does not reach a connection after its close handshake", function()
            local a, b = connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub closing"))
            assert.are.equal("sub true", ask(b, "sub closing"))
            assert.are.same({ 1000, "", true }, { a:close(1000) })
            b:send_text("pub closing after")
            expect_message(b, "after")
            expect_message(b, "pub 1")
            b:close()
        end)

        it("does not reach a connection that vanished without a close frame", function()
            local a, b = connect(srv), connect(srv)
            local id = ask(a, "id"):match("%d+")
            assert.are.equal("sub true", ask(a, "sub vanish"))
            assert.are.equal("sub true", ask(b, "sub vanish"))
            assert.are.equal("count 2", ask(b, "count vanish"))
            a:abort()
            assert.is_truthy(srv:wait_log("pubsub closed " .. id .. " 1006", 3), "app.close ran")
            b:send_text("pub vanish after")
            expect_message(b, "after")
            expect_message(b, "pub 1")
            assert.are.equal("count 1", ask(b, "count vanish"))
            b:close()
        end)

        it("does not count, nor send to, a conn closed earlier in the same handler",
            function()
                local a, b = connect(srv), connect(srv)
                assert.are.equal("sub true", ask(a, "sub sameturn"))
                assert.are.equal("sub true", ask(b, "sub sameturn"))
                a:send_text("close-and-count sameturn")
                local code, _, before = a:expect_close()
                assert.are.equal(4000, code)
                assert.are.equal(0, #before, "nothing after conn:close reaches the closer")
                a:send_close(4000)
                a:abort()
                expect_message(b, "after close")
                -- The contract: "Subscriptions end when the connection closes".
                assert.is_truthy(srv:wait_log("after close: subscribers %d+ publish %d+", 3))
                local subs, sent = srv:log():match("after close: subscribers (%d+) publish (%d+)")
                assert.are.equal("1", sent, "publish skips the closed conn")
                assert.are.equal("1", subs, "mw.subscribers agrees with mw.publish")
                b:close()
            end)

        it("sends binary with mw.publish(topic, data, true)", function()
            local a, pub = connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub bin"))
            assert.are.equal("pubbin 1", ask(pub, "pubbin bin"))
            expect_message(a, "\0\1\2\255", ws.op.binary)
            a:close()
            pub:close()
        end)

        it("sends an empty message", function()
            local a, pub = connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub empty"))
            assert.are.equal("pubempty 1", ask(pub, "pubempty empty"))
            expect_message(a, "")
            a:close()
            pub:close()
        end)

        it("raises for invalid UTF-8 as text and sends nothing", function()
            local a, pub = connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub badtext"))
            local got = ask(pub, "pubbad badtext")
            assert.is_truthy(got:match("^pubbad false .*not valid UTF%-8"), got)
            silent(a, "a subscriber, after a refused publish")
            a:close()
            pub:close()
        end)

        it("fails the handler (1011) for uncaught invalid UTF-8; subscribers get nothing",
            function()
                local a, pub = connect(srv), connect(srv)
                assert.are.equal("sub true", ask(a, "sub badtext2"))
                pub:send_text("pubbad-raise badtext2")
                assert.are.equal(1011, (pub:expect_close()))
                pub:abort()
                assert.is_truthy(srv:wait_log("mw.publish: text is not valid UTF%-8", 3))
                silent(a, "a subscriber, after a failed publish")
                assert.are.equal("still", ask(a, "still"))
                a:close()
            end)

        it("treats topics as exact byte strings (case, spaces, NUL)", function()
            local a, b, pub = connect(srv), connect(srv), connect(srv)
            assert.are.equal("sub true", ask(a, "sub Case"))
            assert.are.equal("subnul true", ask(b, "subnul Case"))
            assert.are.equal("pub 0", ask(pub, "pub case x"))
            assert.are.equal("pub 1", ask(pub, "pub Case y"))
            expect_message(a, "y")
            assert.are.equal("pubnul 1", ask(pub, "pubnul Case"))
            expect_message(b, "nul")
            silent(a, "'Case' after a publish to 'Case\\0b'")
            silent(b, "'Case\\0b' after a publish to 'Case'")
            for _, c in ipairs { a, b, pub } do c:close() end
        end)
    end)
end)

-- ---- fan-out to 1,000 subscribers ------------------------------------------------------------

-- The bytes a subscriber must receive: unmasked text frames "1".."n", then "end".
local function expected_stream(n)
    local parts = {}
    for i = 1, n do
        local s = tostring(i)
        parts[#parts + 1] = string.char(0x81, #s) .. s
    end
    parts[#parts + 1] = "\x81\x03end"
    return table.concat(parts)
end

-- Decodes a stream of small unmasked frames, for a readable failure message.
local function describe_stream(bytes)
    local out, pos = {}, 1
    while pos + 1 <= #bytes and #out < 12 do
        local len = bytes:byte(pos + 1) & 0x7F
        out[#out + 1] = bytes:sub(pos + 2, pos + 1 + len)
        pos = pos + 2 + len
    end
    return table.concat(out, ",") .. (pos <= #bytes and ",..." or "")
end

describe("fan-out to 1,000 subscribers", function()
    local SUBSCRIBERS, N = 1000, 200
    local srv, dir
    local subs = {}

    setup(function()
        dir = server.app_dir { ["app.lua"] = APP }
        -- 1,001 connections from one address: above the default per_ip (1000), which is a
        -- defence against one client, not what this test is about.
        srv = server.start { app = dir, config = "limits = { per_ip = 0 }\n" }
    end)
    teardown(function()
        for _, c in ipairs(subs) do c:abort() end
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("delivers N = 200 publishes to each of 1,000 subscribers exactly once, in order",
        function()
            for i = 1, SUBSCRIBERS do
                local c, err = ws.connect(srv.port, { path = "/sub/mass" })
                assert(c, "subscriber " .. i .. ": " .. tostring(err))
                subs[i] = c
            end
            local pub = connect(srv, "/publisher")
            assert.are.equal("count " .. SUBSCRIBERS, ask(pub, "count mass"))

            local t0 = socket.gettime()
            local batch = {}
            for i = 1, N do batch[i] = ws.frame { payload = "mass mass " .. i } end
            assert(pub:send_raw(table.concat(batch)))
            for i = 1, N do
                local got = pub:recv_message(10)
                assert.are.equal("sent " .. i .. " " .. SUBSCRIBERS, got,
                    "the publisher's answer " .. i .. " (publish returns the receivers)")
            end
            assert.are.equal("sent end " .. SUBSCRIBERS, (pub:echo("mass mass end")))

            local want = expected_stream(N)
            for i, c in ipairs(subs) do
                c.sock:settimeout(10)
                local got, err, partial = c.sock:receive(#want)
                if got ~= want then
                    error(string.format("subscriber %d got %s (%s); wanted 1..%d,end", i,
                        describe_stream(got or partial or ""), tostring(err), N))
                end
            end
            -- Nothing after "end": no duplicate, no stray frame.
            for i, c in ipairs(subs) do
                c.sock:settimeout(0)
                local extra, err, partial = c.sock:receive(1)
                assert.is_true(extra == nil and err == "timeout" and partial == "",
                    "subscriber " .. i .. " got bytes after the last message")
            end
            local elapsed = socket.gettime() - t0
            assert.is_true(elapsed < 20, "fan-out took " .. elapsed .. " s")

            -- A subscribed publisher is one more receiver.
            assert.are.equal("sub true", ask(pub, "sub mass"))
            pub:send_text("mass mass 0")
            expect_message(pub, "0")
            expect_message(pub, "sent 0 " .. (SUBSCRIBERS + 1))
            pub:close()
        end)
end)
