-- Specs for scripts/moonwire/router.lua, run inside the real runtime by `moonwire test` (the
-- code runs in the sandbox of the probe app, probe/app.lua): dispatch to handlers, schema
-- checks, the exact error reply for each kind of bad input, and router.encode / router.send.
--   build/moonwire test scripts/spec
local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local probe = dofile(HERE .. "/probe.lua")
local json = require("moonwire.test").json

-- The router every case starts with, and the calls its handlers saw (conn's name, message).
local SETUP = [[
calls = {}
local function record(c, msg) calls[#calls + 1] = { c.data.name, msg } end
r = router.new()
r:on("say", record, { room = "string", text = "string", ["limit?"] = "number" })
r:on("move", record, { x = "number", y = "number", run = "boolean", ["path?"] = "table" })
r:on("ping", record)
]]

describe("moonwire.router", function()
    local p, a

    before_each(function()
        p = probe.start()
        a = p:client("a")
        p:run(SETUP)
    end)

    after_each(function()
        p:stop()
    end)

    -- r:dispatch(C.a, data): its results.
    local function dispatch(data)
        return p:run("return r:dispatch(C.a, ...)", data)
    end

    -- The error replies a was sent, as reasons.
    local function replies()
        local out = {}
        for i, text in ipairs(a:receive_all()) do
            local msg = json.decode(text)
            assert.are.equal("error", msg.type)
            out[i] = msg.error
        end
        return out
    end

    local function calls() return p:run("return calls") end

    describe("dispatch", function()
        it("calls the type's handler with the conn and the decoded message", function()
            assert.is_true(dispatch('{"type":"say","room":"lobby","text":"hi"}'))
            assert.are.same({ { "a", { type = "say", room = "lobby", text = "hi" } } }, calls())
            assert.is_nil(a:receive())
        end)

        it("calls a handler registered without a schema for any fields", function()
            assert.is_true(dispatch('{"type":"ping","n":1,"extra":[1,2]}'))
            assert.are.same({ type = "ping", n = 1, extra = { 1, 2 } }, calls()[1][2])
        end)

        it("passes fields the schema does not name through", function()
            assert.is_true(dispatch('{"type":"say","room":"a","text":"b","mood":"ok"}'))
            assert.are.equal("ok", calls()[1][2].mood)
        end)

        it("accepts every schema type", function()
            assert.is_true(dispatch(
                '{"type":"move","x":1.5,"y":-2,"run":false,"path":[[0,0],[1,1]]}'))
            assert.are.same({ type = "move", x = 1.5, y = -2, run = false,
                              path = { { 0, 0 }, { 1, 1 } } }, calls()[1][2])
        end)

        it("accepts an optional field left out", function()
            assert.is_true(dispatch('{"type":"say","room":"a","text":"b"}'))
            assert.is_nil(p:run("return calls[1][2].limit"))
        end)

        it("removes an optional field sent as null, so the handler sees nil", function()
            assert.is_true(dispatch('{"type":"say","room":"a","text":"b","limit":null}'))
            assert.is_true(p:run("return calls[1][2].limit == nil"))
        end)

        it("routes each type to its own handler, on each router separately", function()
            assert.are.same({ "other say" }, p:run([[
                local other, seen = router.new(), {}
                other:on("say", function() seen[#seen + 1] = "other say" end)
                r:dispatch(C.a, '{"type":"ping"}')
                other:dispatch(C.a, '{"type":"say"}')
                return seen
            ]]))
            local got = calls()
            assert.are.equal(1, #got)
            assert.are.equal("ping", got[1][2].type)
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
                local ok, err = dispatch(case[2])
                assert.is_nil(ok)
                assert.are.equal(case[3], err)
                assert.are.same({ case[3] }, replies())
                assert.are.same({}, calls(), "no handler ran")
            end)
        end

        it("sends the error reply as a text frame of exactly type and error", function()
            dispatch("nope")
            local data, binary = a:receive()
            assert.is_false(binary)
            assert.are.same({ type = "error", error = "invalid JSON" }, json.decode(data))
        end)

        it("quotes at most 60 characters of an unknown type", function()
            local long = string.rep("é", 100)
            local _, err = dispatch('{"type":"' .. long .. '"}')
            assert.are.equal("unknown type '" .. string.rep("é", 60) .. "...'", err)
            assert.are.same({ err }, replies())
        end)

        it("does not quote an unknown type that is not UTF-8 (from a binary frame)", function()
            local _, err = p:run([[return r:dispatch(C.a, '{"type":"\255\254"}')]])
            assert.are.equal("unknown type '?'", err)
            assert.are.same({ err }, replies())
        end)

        it("replies with the handler's reason when it answers nil, reason", function()
            local got = p:run([[
                r:on("join", function() return nil, "full" end)
                r:on("part", function() return false, "not in that room" end)
                local function answer(data)
                    local ok, err = r:dispatch(C.a, data)
                    return { nil_first = ok == nil, reason = err }
                end
                return { answer('{"type":"join"}'), answer('{"type":"part"}') }
            ]])
            assert.are.same({ { nil_first = true, reason = "full" },
                              { nil_first = true, reason = "not in that room" } }, got)
            assert.are.same({ "full", "not in that room" }, replies())
        end)

        it("returns true when the handler answers anything else", function()
            assert.are.same({ true, true, true }, p:run([[
                r:on("a", function() return false end)
                r:on("b", function() return true, "ignored" end)
                r:on("c", function() return nil, 42 end)
                local out = {}
                for i, t in ipairs({ "a", "b", "c" }) do
                    out[i] = r:dispatch(C.a, '{"type":"' .. t .. '"}')
                end
                return out
            ]]))
            assert.is_nil(a:receive())
        end)

        it("lets a handler's error through (the server logs it)", function()
            local ok, err = p:try([[
                r:on("boom", function() error("handler failed") end)
                return r:dispatch(C.a, '{"type":"boom"}')
            ]])
            assert.is_false(ok)
            assert.matches("handler failed", err)
        end)

        it("still answers nil, reason when the conn has closed", function()
            a:close()
            local ok, err = dispatch("{")
            assert.is_nil(ok)
            assert.are.equal("invalid JSON", err)
            assert.is_nil(a:receive())
        end)

        it("raises when data is not a string", function()
            for _, arg in ipairs { "nil", "{}" } do
                local ok, err = p:try("return r:dispatch(C.a, " .. arg .. ")")
                assert.is_false(ok)
                assert.matches("router:dispatch: data must be a string", err)
            end
        end)
    end)

    describe("on", function()
        it("returns the router, so calls chain", function()
            assert.is_true(p:run([[
                local x = router.new()
                return x == x:on("a", function() end):on("b", function() end)
            ]]))
        end)

        -- label, the arguments to r:on (code), part of the error message
        local misuse = {
            { "type not a string", "5, function() end", "type must be a non%-empty string" },
            { "empty type", '"", function() end', "type must be a non%-empty string" },
            { "no handler", '"a"', "handler for 'a' must be a function" },
            { "schema not a table", '"a", function() end, "x"', "must be a table or nil" },
            { "unknown type name", '"a", function() end, { n = "integer" }',
              "field 'n' of 'a' must be checked as" },
            { "type name not a string", '"a", function() end, { n = true }',
              "field 'n' of 'a' must be checked as" },
            { "schema key not a string", '"a", function() end, { "string" }',
              "schema keys for 'a' must be field names" },
            { "a field twice", '"a", function() end, { n = "number", ["n?"] = "number" }',
              "field 'n' of 'a' is in the schema twice" },
            { "a type registered twice", '"say", function() end',
              "type 'say' already has a handler" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                local ok, err = p:try("r:on(" .. case[2] .. ")")
                assert.is_false(ok)
                assert.matches(case[3], err)
            end)
        end

        it("raises with the caller's position", function()
            local ok, err = p:try("\n\nr:on(1, print)")
            assert.is_false(ok)
            assert.matches("^probe:3: router:on", err)
        end)
    end)

    describe("encode and send", function()
        it("encode gives the JSON of type plus fields", function()
            local text = p:run([[
                return router.encode("chat", { from = "ann", text = "hi", n = 2 })
            ]])
            assert.are.same({ type = "chat", from = "ann", text = "hi", n = 2 }, json.decode(text))
        end)

        it("encode without fields gives just the type", function()
            assert.are.equal('{"type":"tick"}', p:run([[return router.encode("tick")]]))
        end)

        it("encode copies fields without changing them, and the type argument wins", function()
            local text, fields = p:run([[
                local fields = { type = "spoof", a = 1 }
                return router.encode("real", fields), fields
            ]])
            assert.are.same({ type = "real", a = 1 }, json.decode(text))
            assert.are.same({ type = "spoof", a = 1 }, fields)
        end)

        it("encode output can be published to a room's topic", function()
            local b = p:client("b")
            assert.are.equal(1, p:run([[
                C.b:subscribe("room:1")
                return mw.publish("room:1", router.encode("state", { t = 1 }))
            ]]))
            assert.are.same({ type = "state", t = 1 }, b:receive_json())
            assert.is_nil(a:receive())
        end)

        it("send sends the encoded message and returns conn:send's answer", function()
            assert.is_true(p:run([[return router.send(C.a, "welcome", { id = C.a.id })]]))
            local welcome = a:receive_json()
            assert.are.equal("welcome", welcome.type)
            assert.are.equal("integer", math.type(welcome.id))
            a:close()
            local ok, err = p:run([[return router.send(C.a, "x")]])
            assert.is_nil(ok)
            assert.are.equal("closed", err)
        end)

        it("send answers false, \"backpressure\" past limits.send_buffer", function()
            p:stop()
            p = probe.start { limits = { send_buffer = "64K" } }
            p:client("b")
            -- 4 MiB queued in one call: more than the socket takes, past the send buffer.
            assert.are.same({ false, "backpressure" }, { p:run([[
                C.b:send(string.rep("x", 4 * 1024 * 1024))
                return router.send(C.b, "x")
            ]]) })
        end)

        -- label, the call (code), part of the error message
        local misuse = {
            { "encode without a type", "router.encode(nil)", "router.encode: type must be a str" },
            { "encode with string fields", 'router.encode("a", "b")', "fields must be a table" },
            { "encode a function", 'router.encode("a", { f = print })', "" },
            { "send without a type", "router.send(C.a, 1)", "router.send: type must be a str" },
            { "send with string fields", 'router.send(C.a, "a", "b")', "fields must be a table" },
        }
        for _, case in ipairs(misuse) do
            it("raises on misuse: " .. case[1], function()
                local ok, err = p:try(case[2])
                assert.is_false(ok)
                assert.matches(case[3], err)
            end)
        end
    end)
end)
