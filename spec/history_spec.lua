-- Issue 14 (history, memory engine): topics named by the config's history rules keep their last
-- publications with offsets 1, 2, 3... and an epoch; mw.history reads them after an offset, or
-- says recovered = false when that range is gone. With several workers, every subscriber of
-- the process receives a history topic's publications in the one order of their offsets.
local cjson = require "cjson"
local ws = require "ws_client"
local server = require "server"

local APP = [[
local app = {}
function app.upgrade(req) return true end
function app.message(conn, data)
    local cmd, a, b, c = data:match("^(%S+) ?(%S*) ?(%S*) ?(%S*)$")
    if cmd == "sub" then
        assert(conn:subscribe(a))
        conn:send("subscribed")
    elseif cmd == "pub" then
        local n, err = mw.publish(a, b)
        conn:send(err and ("err " .. err) or "ok")
    elseif cmd == "burst" then -- burst TOPIC ID N
        for i = 1, tonumber(c) do mw.publish(a, b .. ":" .. i) end
        conn:send("sent")
    elseif cmd == "hist" then
        local h, err = mw.history(a, tonumber(b), c ~= "" and c or nil)
        conn:send(h and mw.json.encode(h) or ("err " .. err))
    end
end
return app
]]

local function hist(c, topic, since, epoch)
    c:send_text(("hist %s %s %s"):format(topic, since or "", epoch or ""))
    local reply = c:recv_message()
    if reply:sub(1, 4) == "err " then return nil, reply:sub(5) end
    return cjson.decode(reply)
end

local function command(c, text)
    c:send_text(text)
    return c:recv_message()
end

for _, workers in ipairs { 1, 4 } do
    describe("history with workers = " .. workers, function()
        local dir, srv

        before_each(function()
            dir = server.app_dir { ["app.lua"] = APP }
            srv = server.start {
                app = dir,
                config = ('workers = %d\nhistory = { ["room:"] = { size = 5, ttl = 60 }, ' ..
                          '["room:big:"] = { size = 1000, ttl = 60 } }\n'):format(workers),
            }
        end)

        after_each(function()
            if srv then srv:stop() end
            server.remove(dir)
        end)

        it("gives offsets from 1 and reads after an offset while the range is held", function()
            local c = assert(ws.connect(srv.port))
            local empty = assert(hist(c, "room:1"))
            assert.are.equal(0, empty.offset)
            assert.are.equal(8, #empty.epoch)
            assert.is_true(empty.recovered)
            for i = 1, 8 do assert.are.equal("ok", command(c, "pub room:1 m" .. i)) end
            local all = assert(hist(c, "room:1"))
            assert.are.equal(8, all.offset)
            assert.are.equal(empty.epoch, all.epoch, "a read fixes the epoch of a new stream")
            assert.are.equal(5, #all.publications, "size = 5 keeps the last five")
            for i, p in ipairs(all.publications) do
                assert.are.equal(3 + i, p.offset)
                assert.are.equal("m" .. (3 + i), p.data)
            end
            local after6 = assert(hist(c, "room:1", 6, all.epoch))
            assert.is_true(after6.recovered)
            assert.are.same({ 7, 8 }, { after6.publications[1].offset,
                                        after6.publications[2].offset })
            local gone = assert(hist(c, "room:1", 2, all.epoch))
            assert.is_false(gone.recovered, "offset 3 was trimmed")
            assert.are.equal(0, #gone.publications)
            assert.are.equal(8, gone.offset)
            local other = assert(hist(c, "room:1", 6, "aaaaaaaa"))
            assert.is_false(other.recovered, "another epoch")
            local none, err = hist(c, "lobby")
            assert.is_nil(none)
            assert.truthy(err:find("has no history", 1, true), err)
            c:close()
        end)

        it("delivers one order to every subscriber, the order of the offsets", function()
            local subs = {}
            for i = 1, 6 do
                subs[i] = assert(ws.connect(srv.port))
                assert.are.equal("subscribed", command(subs[i], "sub room:big:x"))
            end
            local pubs = {}
            for i = 1, 4 do pubs[i] = assert(ws.connect(srv.port)) end
            -- Four publishers at once, likely on different workers.
            for i, p in ipairs(pubs) do p:send_text(("burst room:big:x p%d 100"):format(i)) end
            for _, p in ipairs(pubs) do assert.are.equal("sent", p:recv_message()) end
            local seqs = {}
            for i, s in ipairs(subs) do
                seqs[i] = {}
                for k = 1, 400 do seqs[i][k] = assert(s:recv_message(5)) end
            end
            local h = assert(hist(pubs[1], "room:big:x"))
            assert.are.equal(400, h.offset)
            local order = {}
            for k, p in ipairs(h.publications) do
                assert.are.equal(k, p.offset)
                order[k] = p.data
            end
            for i = 1, #subs do assert.are.same(order, seqs[i]) end
            -- Each publisher's own messages keep their order.
            for i = 1, 4 do
                local last = 0
                for _, d in ipairs(order) do
                    local who, n = d:match("^p(%d):(%d+)$")
                    if tonumber(who) == i then
                        assert.are.equal(last + 1, tonumber(n))
                        last = tonumber(n)
                    end
                end
                assert.are.equal(100, last)
            end
            for _, c in ipairs(subs) do c:close() end
            for _, c in ipairs(pubs) do c:close() end
        end)
    end)
end

describe("history config", function()
    it("refuses a bad rule and says how to write one", function()
        local dir = server.app_dir { ["app.lua"] = APP }
        local srv = server.start {
            app = dir, expect_fail = true,
            config = 'history = { ["room:"] = { size = 0 } }\n',
        }
        assert.are_not.equal(0, srv.status)
        assert.truthy(srv:log():find("size must be a whole number", 1, true), srv:log())
        server.remove(srv.dir)
        server.remove(dir)
    end)
end)
