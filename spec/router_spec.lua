-- Unit specs for scripts/moonwire/router.lua against the fake mw (spec/support/fake_mw.lua):
-- dispatch to handlers, schema checks, the exact error reply for each kind of bad input, and
-- router.encode / router.send.
local fake_mw = require "fake_mw"
local cjson = require "cjson"

-- Asserts that fn(...) raises an error whose message matches pattern (Lua pattern).
local function raises(pattern, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, "expected an error matching " .. pattern)
    assert.matches(pattern, tostring(err))
end

describe("moonwire.router", function()
    local fake, router, r, conn, calls

    before_each(function()
        fake = fake_mw.new()
        router = fake:require "moonwire.router"
        conn = fake:conn()
        calls = {}
        r = router.new()
        r:on("say", function(c, msg)
            calls[#calls + 1] = { c, msg }
        end, { room = "string", text = "string", ["limit?"] = "number" })
        r:on("move", function(c, msg)
            calls[#calls + 1] = { c, msg }
        end, { x = "number", y = "number", run = "boolean", ["path?"] = "table" })
        r:on("ping", function(c, msg)
            calls[#calls + 1] = { c, msg }
        end)
    end)

    -- The error replies conn was sent, as reasons.
    local function replies()
        local out = {}
        for i, msg in ipairs(fake:sent_json(conn)) do
            assert.are.equal("error", msg.type)
            out[i] = msg.error
        end
        return out
    end

    describe("dispatch", function()
        it("calls the type's handler with the conn and the decoded message", function()
            assert.is_true(r:dispatch(conn, '{"type":"say","room":"lobby","text":"hi"}'))
            assert.are.equal(1, #calls)
            assert.are.equal(conn, calls[1][1])
            assert.are.same({ type = "say", room = "lobby", text = "hi" }, calls[1][2])
            assert.are.same({}, fake:sent(conn))
        end)

        it("calls a handler registered without a schema for any fields", function()
            assert.is_true(r:dispatch(conn, '{"type":"ping","n":1,"extra":[1,2]}'))
            assert.are.same({ type = "ping", n = 1, extra = { 1, 2 } }, calls[1][2])
        end)

        it("passes fields the schema does not name through", function()
            assert.is_true(r:dispatch(conn, '{"type":"say","room":"a","text":"b","mood":"ok"}'))
            assert.are.equal("ok", calls[1][2].mood)
        end)

        it("accepts every schema type", function()
            assert.is_true(r:dispatch(conn,
                '{"type":"move","x":1.5,"y":-2,"run":false,"path":[[0,0],[1,1]]}'))
            assert.are.same({ type = "move", x = 1.5, y = -2, run = false,
                              path = { { 0, 0 }, { 1, 1 } } }, calls[1][2])
        end)

        it("accepts an optional field left out", function()
            assert.is_true(r:dispatch(conn, '{"type":"say","room":"a","text":"b"}'))
            assert.is_nil(calls[1][2].limit)
        end)

        it("removes an optional field sent as null, so the handler sees nil", function()
            assert.is_true(r:dispatch(conn, '{"type":"say","room":"a","text":"b","limit":null}'))
            assert.is_nil(calls[1][2].limit)
        end)

        it("routes each type to its own handler, on each router separately", function()
            local other, seen = router.new(), {}
            other:on("say", function() seen[#seen + 1] = "other say" end)
            r:dispatch(conn, '{"type":"ping"}')
            other:dispatch(conn, '{"type":"say"}')
            assert.are.equal(1, #calls)
            assert.are.equal("ping", calls[1][2].type)
            assert.are.same({ "other say" }, seen)
        end)

        -- label, data, the reason replied and returned
        local bad = {
            { "invalid JSON", '{"type":', "invalid JSON" },
            { "not JSON at all", "hello", "invalid JSON" },
            { "empty message", "", "invalid JSON" },
            { "trailing garbage", '{"type":"ping"} x', "invalid JSON" },
            { "a JSON array", '[{"type":"ping"}]', "expected a JSON object" },
            { "a JSON string", '"ping"', "expected a JSON object" },
            { "a JSON number", "42", "expected a JSON object" },
            { "a JSON boolean", "true", "expected a JSON object" },
            { "JSON null", "null", "expected a JSON object" },
            { "no type", '{"text":"hi"}', "missing type" },
            { "an empty object", "{}", "missing type" },
            { "type null", '{"type":null}', "missing type" },
            { "type a number", '{"type":5}', "field 'type' must be a string" },
            { "type an object", '{"type":{}}', "field 'type' must be a string" },
            { "unknown type", '{"type":"shout"}', "unknown type 'shout'" },
            { "empty type", '{"type":""}', "unknown type ''" },
            { "required field missing", '{"type":"say","text":"hi"}', "missing field 'room'" },
            { "required field null", '{"type":"say","room":null,"text":"hi"}',
              "missing field 'room'" },
            { "string field a number", '{"type":"say","room":"a","text":5}',
              "field 'text' must be a string" },
            { "number field a string", '{"type":"move","x":"1","y":2,"run":true}',
              "field 'x' must be a number" },
            { "boolean field a number", '{"type":"move","x":1,"y":2,"run":1}',
              "field 'run' must be a boolean" },
            { "table field a string", '{"type":"move","x":1,"y":2,"run":true,"path":"n"}',
              "field 'path' must be a table" },
            { "optional field of the wrong type", '{"type":"say","room":"a","text":"b",'
              .. '"limit":"ten"}', "field 'limit' must be a number" },
            -- Several faults: the first field by name decides, every time.
            { "several faults", '{"type":"move","y":"2","x":"1"}', "missing field 'run'" },
            { "several faults, types", '{"type":"move","y":"2","x":"1","run":true}',
              "field 'x' must be a number" },
        }
        for _, case in ipairs(bad) do
            it("replies and returns \"" .. case[3] .. "\" for " .. case[1], function()
                local ok, err = r:dispatch(conn, case[2])
                assert.is_nil(ok)
                assert.are.equal(case[3], err)
                assert.are.same({ case[3] }, replies())
                assert.are.equal(0, #calls, "no handler ran")
            end)
        end

        it("sends the error reply as a text frame of exactly type and error", function()
            r:dispatch(conn, "nope")
            local frame = fake:sent(conn)[1]
            assert.is_false(frame.binary)
            assert.are.same({ type = "error", error = "invalid JSON" }, cjson.decode(frame.data))
        end)

        it("quotes at most 60 characters of an unknown type", function()
            local long = string.rep("é", 100)
            local _, err = r:dispatch(conn, '{"type":"' .. long .. '"}')
            assert.are.equal("unknown type '" .. string.rep("é", 60) .. "...'", err)
            assert.are.same({ err }, replies())
        end)

        it("does not quote an unknown type that is not UTF-8 (from a binary frame)", function()
            local _, err = r:dispatch(conn, '{"type":"\255\254"}')
            assert.are.equal("unknown type '?'", err)
            assert.are.same({ err }, replies())
        end)

        it("replies with the handler's reason when it answers nil, reason", function()
            r:on("join", function() return nil, "full" end)
            r:on("part", function() return false, "not in that room" end)
            assert.are.same({ nil, "full" }, { r:dispatch(conn, '{"type":"join"}') })
            assert.are.same({ nil, "not in that room" }, { r:dispatch(conn, '{"type":"part"}') })
            assert.are.same({ "full", "not in that room" }, replies())
        end)

        it("returns true when the handler answers anything else", function()
            r:on("a", function() return false end)
            r:on("b", function() return true, "ignored" end)
            r:on("c", function() return nil, 42 end)
            for _, t in ipairs({ "a", "b", "c" }) do
                assert.is_true(r:dispatch(conn, '{"type":"' .. t .. '"}'))
            end
            assert.are.same({}, fake:sent(conn))
        end)

        it("lets a handler's error through (the server logs it)", function()
            r:on("boom", function() error("handler failed") end)
            raises("handler failed", r.dispatch, r, conn, '{"type":"boom"}')
        end)

        it("still answers nil, reason when the conn has closed", function()
            conn:close()
            assert.are.same({ nil, "invalid JSON" }, { r:dispatch(conn, "{") })
            assert.are.same({}, fake:sent(conn))
        end)

        it("raises when data is not a string", function()
            raises("router:dispatch: data must be a string", r.dispatch, r, conn, nil)
            raises("router:dispatch: data must be a string", r.dispatch, r, conn, {})
        end)
    end)

    describe("on", function()
        it("returns the router, so calls chain", function()
            local x = router.new()
            assert.are.equal(x, x:on("a", function() end):on("b", function() end))
        end)

        -- label, args to on, part of the error message
        local misuse = {
            { "type not a string", { 5, function() end }, "type must be a non%-empty string" },
            { "empty type", { "", function() end }, "type must be a non%-empty string" },
            { "no handler", { "a" }, "handler for 'a' must be a function" },
            { "schema not a table", { "a", function() end, "x" }, "must be a table or nil" },
            { "unknown type name", { "a", function() end, { n = "integer" } },
              "field 'n' of 'a' must be checked as" },
            { "type name not a string", { "a", function() end, { n = true } },
              "field 'n' of 'a' must be checked as" },
            { "schema key not a string", { "a", function() end, { "string" } },
              "schema keys for 'a' must be field names" },
            { "a field twice", { "a", function() end, { n = "number", ["n?"] = "number" } },
              "field 'n' of 'a' is in the schema twice" },
            { "a type registered twice", { "say", function() end },
              "type 'say' already has a handler" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                raises(case[3], r.on, r, table.unpack(case[2], 1, 3))
            end)
        end

        it("raises with the caller's position", function()
            raises("router_spec.lua:%d+: router:on", function() r:on(1, print) end)
        end)
    end)

    describe("encode and send", function()
        it("encode gives the JSON of type plus fields", function()
            local text = router.encode("chat", { from = "ann", text = "hi", n = 2 })
            assert.are.same({ type = "chat", from = "ann", text = "hi", n = 2 },
                            cjson.decode(text))
        end)

        it("encode without fields gives just the type", function()
            assert.are.equal('{"type":"tick"}', router.encode("tick"))
        end)

        it("encode copies fields without changing them, and the type argument wins", function()
            local fields = { type = "spoof", a = 1 }
            assert.are.same({ type = "real", a = 1 },
                            cjson.decode(router.encode("real", fields)))
            assert.are.same({ type = "spoof", a = 1 }, fields)
        end)

        it("encode output can be published to a room's topic", function()
            local b = fake:conn()
            b:subscribe("room:1")
            assert.are.equal(1, fake.mw.publish("room:1", router.encode("state", { t = 1 })))
            assert.are.same({ { type = "state", t = 1 } }, fake:sent_json(b))
        end)

        it("send sends the encoded message and returns conn:send's answer", function()
            assert.is_true(router.send(conn, "welcome", { id = conn.id }))
            assert.are.same({ { type = "welcome", id = conn.id } }, fake:sent_json(conn))
            fake:set_backpressure(conn, true)
            assert.are.same({ false, "backpressure" }, { router.send(conn, "x") })
            conn:close()
            assert.are.same({ nil, "closed" }, { router.send(conn, "x") })
        end)

        -- label, function, args, part of the error message
        local misuse = {
            { "encode without a type", "encode", { nil }, "router.encode: type must be a str" },
            { "encode with string fields", "encode", { "a", "b" }, "fields must be a table" },
            { "encode a function", "encode", { "a", { f = print } }, "" },
            { "send without a type", "send", { "conn", 1 }, "router.send: type must be a str" },
            { "send with string fields", "send", { "conn", "a", "b" }, "fields must be a table" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                local args = case[3]
                if args[1] == "conn" then args = { conn, args[2], args[3] } end
                raises(case[4], router[case[2]], table.unpack(args, 1, 3))
            end)
        end
    end)
end)
