-- The echo example (examples/echo/app.lua) in the real runtime.
--   build/moonwire test examples/echo/spec
local t = require "moonwire.test"

describe("echo app", function()
    local server

    before_each(function()
        server = t.start() -- examples/echo
    end)

    after_each(function()
        server:stop()
    end)

    it("sends every message back with its type, in order", function()
        local c = assert(server:connect())
        c:send("hello")
        c:send_binary("\0\255\1")
        c:send("")
        assert.same({ "hello", false }, { c:receive() })
        assert.same({ "\0\255\1", true }, { c:receive() })
        assert.same({ "", false }, { c:receive() })
        assert.is_nil(c:receive())
    end)

    it("echoes a message of 1 MiB whole", function()
        local c = server:connect()
        local big = string.rep("0123456789abcdef", 65536)
        c:send(big)
        local got = c:receive()
        assert.equal(#big, #got)
        assert.is_true(got == big)
    end)

    it("keeps clients apart", function()
        local a, b = server:connect(), server:connect()
        a:send("for a")
        assert.equal("for a", a:receive())
        assert.is_nil(b:receive())
    end)

    it("closes with 1009 past limits.max_message, as the server would", function()
        server:stop()
        server = t.start(nil, { config = { limits = { max_message = "64K" } } })
        local c = server:connect()
        c:send(string.rep("x", 64 * 1024))
        assert.equal(64 * 1024, #c:receive())
        c:send(string.rep("x", 64 * 1024 + 1))
        assert.is_true(c.closed)
        assert.equal(1009, c.close_code)
    end)

    it("closes with 1007 for text that is not UTF-8", function()
        local c = server:connect()
        c:send("\xff\xfe")
        assert.is_true(c.closed)
        assert.equal(1007, c.close_code)
    end)

    it("answers the client's close with the same code", function()
        local c = server:connect()
        c:close(1000, "done")
        assert.is_true(c.closed)
        assert.equal(1000, c.close_code)
    end)
end)
