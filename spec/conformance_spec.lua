-- RFC 6455 conformance of the server, organised like the Autobahn testsuite: 1 framing,
-- 2 pings and pongs, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close,
-- 9 limits and sizes, 10 masking. Each bad input must get its RFC answer (the close code the
-- server sends, then the TCP close), each good one its echo.
local ws = require "ws_client"
local server = require "server"

local op = ws.op
local srv

-- Small limits make section 9 quick: a 1 MiB message cap and a short close timeout.
local CONFIG = [[
limits = { max_message = 1 << 20, close_timeout = 2 }
]]

local function connect()
    local c = assert(ws.connect(srv.port))
    return c
end

-- Sends bytes and expects the server to fail the connection with code, then close TCP.
local function expect_failure(c, code)
    local got, reason = c:expect_close()
    assert.are.equal(code, got, "close code (reason: " .. tostring(reason) .. ")")
    assert.is_true(c:wait_tcp_close(3), "the server closes TCP after the close frame")
    c:abort()
end

local function fails_with(code, ...)
    local c = connect()
    for _, f in ipairs { ... } do
        if type(f) == "string" then c:send_raw(f) else c:send_frame(f) end
    end
    expect_failure(c, code)
end

setup(function() srv = server.start { app = "examples/echo", config = CONFIG } end)
teardown(function() assert.are.equal(0, srv:stop()) end)

describe("1 framing", function()
    for _, size in ipairs { 0, 1, 125, 126, 127, 65535, 65536, 100000 } do
        it("echoes a " .. size .. "-byte text message", function()
            local c = connect()
            local msg = string.rep("*", size)
            local got, opcode = c:echo(msg)
            assert.are.equal(msg, got)
            assert.are.equal(op.text, opcode)
            c:close()
        end)
        it("echoes a " .. size .. "-byte binary message", function()
            local c = connect()
            local msg = string.rep("\0\255", size // 2) .. (size % 2 == 1 and "\7" or "")
            local got, opcode = c:echo(msg, true)
            assert.are.equal(msg, got)
            assert.are.equal(op.binary, opcode)
            c:close()
        end)
    end

    it("echoes frames sent one byte at a time", function()
        local c = connect()
        local bytes = ws.frame { opcode = op.text, payload = "byte by byte" }
        for i = 1, #bytes do c:send_raw(bytes:sub(i, i)) end
        assert.are.equal("byte by byte", c:recv_message())
        c:close()
    end)

    it("echoes many messages sent in one write, in order", function()
        local c = connect()
        local parts = {}
        for i = 1, 100 do parts[i] = ws.frame { opcode = op.text, payload = "m" .. i } end
        c:send_raw(table.concat(parts))
        for i = 1, 100 do assert.are.equal("m" .. i, c:recv_message()) end
        c:close()
    end)

    it("sends unmasked frames with the shortest length encoding", function()
        local c = connect()
        for _, size in ipairs { 125, 126, 65536 } do
            c:send_binary(string.rep("x", size))
            local f = c:recv_frame()
            assert.is_false(f.masked)
            assert.are.equal(size, #f.payload)
        end
        c:close()
    end)
end)

describe("2 pings and pongs", function()
    it("answers a ping with a pong carrying the same payload", function()
        local c = connect()
        c:ping("hello")
        local f = c:recv_frame()
        assert.are.same({ op.pong, "hello" }, { f.opcode, f.payload })
        c:close()
    end)

    it("answers a ping with an empty payload and one with 125 bytes", function()
        local c = connect()
        for _, p in ipairs { "", string.rep("\1", 125) } do
            c:ping(p)
            local f = c:recv_frame()
            assert.are.same({ op.pong, p }, { f.opcode, f.payload })
        end
        c:close()
    end)

    it("fails a ping with 126 bytes with 1002", function()
        fails_with(1002, { opcode = op.ping, payload = string.rep("x", 126) })
    end)

    it("ignores unsolicited pongs", function()
        local c = connect()
        c:send_frame { opcode = op.pong, payload = "unasked" }
        assert.are.equal("after", c:echo("after"))
        c:close()
    end)

    it("answers ten pings in a row, in order", function()
        local c = connect()
        for i = 1, 10 do c:ping("p" .. i) end
        for i = 1, 10 do assert.are.equal("p" .. i, c:recv_frame().payload) end
        c:close()
    end)

    it("answers a ping sent one byte at a time", function()
        local c = connect()
        local bytes = ws.frame { opcode = op.ping, payload = "slow" }
        for i = 1, #bytes do c:send_raw(bytes:sub(i, i)) end
        assert.are.equal("slow", c:recv_frame().payload)
        c:close()
    end)
end)

describe("3 reserved bits", function()
    for _, rsv in ipairs { 1, 2, 3, 4, 5, 6, 7 } do
        it("fails a text frame with RSV=" .. rsv .. " with 1002", function()
            fails_with(1002, { opcode = op.text, payload = "x", rsv = rsv })
        end)
    end

    it("echoes a good frame, then fails the one with reserved bits", function()
        local c = connect()
        c:send_text("good")
        c:send_frame { opcode = op.text, payload = "bad", rsv = 1 }
        assert.are.equal("good", c:recv_message())
        expect_failure(c, 1002)
    end)

    it("fails a ping with reserved bits with 1002", function()
        fails_with(1002, { opcode = op.ping, payload = "x", rsv = 4 })
    end)
end)

describe("4 opcodes", function()
    for _, code in ipairs { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 } do
        it("fails reserved opcode " .. code .. " with 1002", function()
            fails_with(1002, { opcode = code, payload = "x" })
        end)
    end

    it("echoes a good frame, then fails a reserved opcode", function()
        local c = connect()
        c:send_text("first")
        c:send_frame { opcode = 5 }
        assert.are.equal("first", c:recv_message())
        expect_failure(c, 1002)
    end)
end)

describe("5 fragmentation", function()
    it("echoes a message in three fragments as one message", function()
        local c = connect()
        c:send_frame { opcode = op.text, payload = "frag", fin = false }
        c:send_frame { opcode = op.continuation, payload = "men", fin = false }
        c:send_frame { opcode = op.continuation, payload = "ted" }
        local got, opcode = c:recv_message()
        assert.are.same({ "fragmented", op.text }, { got, opcode })
        c:close()
    end)

    it("echoes a binary message in 100 fragments", function()
        local c = connect()
        local parts = {}
        for i = 1, 100 do
            parts[i] = string.char(i)
            c:send_frame { opcode = i == 1 and op.binary or op.continuation,
                           payload = parts[i], fin = i == 100 }
        end
        local got, opcode = c:recv_message()
        assert.are.same({ table.concat(parts), op.binary }, { got, opcode })
        c:close()
    end)

    it("answers a ping between fragments, then delivers the message", function()
        local c = connect()
        c:send_frame { opcode = op.text, payload = "one ", fin = false }
        c:ping("between")
        c:send_frame { opcode = op.continuation, payload = "message" }
        local f = c:recv_frame()
        assert.are.same({ op.pong, "between" }, { f.opcode, f.payload })
        assert.are.equal("one message", c:recv_message())
        c:close()
    end)

    it("accepts empty fragments at the start, middle and end", function()
        local c = connect()
        c:send_frame { opcode = op.text, payload = "", fin = false }
        c:send_frame { opcode = op.continuation, payload = "ab", fin = false }
        c:send_frame { opcode = op.continuation, payload = "", fin = false }
        c:send_frame { opcode = op.continuation, payload = "cd", fin = false }
        c:send_frame { opcode = op.continuation, payload = "" }
        assert.are.equal("abcd", c:recv_message())
        c:close()
    end)

    it("echoes a message made only of empty fragments as an empty message", function()
        local c = connect()
        c:send_frame { opcode = op.text, payload = "", fin = false }
        c:send_frame { opcode = op.continuation, payload = "" }
        assert.are.equal("", c:recv_message())
        c:close()
    end)

    it("fails a continuation without a message to continue with 1002", function()
        fails_with(1002, { opcode = op.continuation, payload = "orphan" })
    end)

    it("fails a new data frame inside a fragmented message with 1002", function()
        fails_with(1002, { opcode = op.text, payload = "a", fin = false },
            { opcode = op.text, payload = "b" })
    end)

    it("fails a fragmented ping with 1002", function()
        fails_with(1002, { opcode = op.ping, payload = "x", fin = false })
    end)

    it("fails a fragmented close with 1002", function()
        fails_with(1002, { opcode = op.close, payload = "\3\232", fin = false })
    end)

    it("delivers nothing of a message whose last fragment breaks the rules", function()
        local c = connect()
        c:send_frame { opcode = op.text, payload = "never", fin = false }
        c:send_frame { opcode = op.binary, payload = "delivered" }
        local code, _, before = c:expect_close()
        assert.are.equal(1002, code)
        assert.are.equal(0, #before)
        c:abort()
    end)
end)

describe("6 UTF-8", function()
    local valid = {
        ["ASCII"] = "Hello-µ@ßöäüàá-UTF-8!!",
        ["2-byte"] = "\xC2\x80\xDF\xBF",
        ["3-byte"] = "\xE0\xA0\x80\xEF\xBF\xBF",
        ["4-byte"] = "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF",
        ["κόσμε"] = "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5",
    }
    for name, text in pairs(valid) do
        it("echoes valid UTF-8: " .. name, function()
            local c = connect()
            assert.are.equal(text, c:echo(text))
            c:close()
        end)
        it("echoes valid UTF-8 split into one-byte fragments: " .. name, function()
            local c = connect()
            for i = 1, #text do
                c:send_frame { opcode = i == 1 and op.text or op.continuation,
                               payload = text:sub(i, i), fin = i == #text }
            end
            assert.are.equal(text, c:recv_message())
            c:close()
        end)
    end

    local invalid = {
        ["overlong slash"] = "\xC0\xAF",
        ["overlong 3-byte"] = "\xE0\x80\xAF",
        ["surrogate"] = "\xED\xA0\x80",
        ["above U+10FFFF"] = "\xF4\x90\x80\x80",
        ["byte FF"] = "a\xFF",
        ["lone continuation"] = "\x80",
        ["truncated at the end"] = "abc\xE2\x82",
    }
    for name, text in pairs(invalid) do
        it("fails invalid UTF-8 with 1007: " .. name, function()
            fails_with(1007, { opcode = op.text, payload = text })
        end)
    end

    it("fails at the first invalid byte, before the message ends", function()
        local c = connect()
        -- The first fragment is already invalid; the message never finishes.
        c:send_frame { opcode = op.text, payload = "ok so far \xED\xA0\x80", fin = false }
        expect_failure(c, 1007)
    end)

    it("fails an invalid byte in a later fragment with 1007", function()
        fails_with(1007, { opcode = op.text, payload = "good", fin = false },
            { opcode = op.continuation, payload = "\xC3", fin = false },
            { opcode = op.continuation, payload = "(" })
    end)

    it("does not check binary messages", function()
        local c = connect()
        assert.are.equal("\xFF\xC0\xED\xA0\x80", c:echo("\xFF\xC0\xED\xA0\x80", true))
        c:close()
    end)
end)

describe("7 close", function()
    it("answers a close with a close echoing the code, then closes TCP", function()
        local c = connect()
        local code, _, closed = c:close(1000, "bye")
        assert.are.equal(1000, code)
        assert.is_true(closed)
    end)

    it("answers an empty close with an empty close", function()
        local c = connect()
        c:send_frame { opcode = op.close, payload = "" }
        local code, reason = c:expect_close()
        assert.is_nil(code)
        assert.are.equal("", reason)
        assert.is_true(c:wait_tcp_close(3))
    end)

    for _, code in ipairs { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                            1014, 3000, 3999, 4000, 4999 } do
        it("echoes valid close code " .. code, function()
            local c = connect()
            assert.are.equal(code, (c:close(code)))
        end)
    end

    for _, code in ipairs { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
                            65535 } do
        it("fails invalid close code " .. code .. " with 1002", function()
            fails_with(1002, { opcode = op.close, payload = string.pack(">I2", code) })
        end)
    end

    it("fails a 1-byte close payload with 1002", function()
        fails_with(1002, { opcode = op.close, payload = "\3" })
    end)

    it("fails a close reason that is not UTF-8 with 1007", function()
        fails_with(1007, { opcode = op.close, payload = "\3\232\xFF\xFE" })
    end)

    it("accepts a close with a 123-byte reason", function()
        local c = connect()
        assert.are.equal(1000, (c:close(1000, string.rep("r", 123))))
    end)

    it("delivers nothing after the close frame", function()
        local c = connect()
        c:send_raw(ws.frame { opcode = op.close, payload = "\3\232" } ..
            ws.frame { opcode = op.text, payload = "too late" })
        local code, _, before = c:expect_close()
        assert.are.equal(1000, code)
        assert.are.equal(0, #before)
        assert.is_true(c:wait_tcp_close(3))
    end)

    it("delivers messages sent before the close frame", function()
        local c = connect()
        c:send_raw(ws.frame { opcode = op.text, payload = "in time" } ..
            ws.frame { opcode = op.close, payload = "\3\232" })
        local code, _, before = c:expect_close()
        assert.are.equal(1000, code)
        assert.are.equal(1, #before)
        assert.are.equal("in time", before[1].payload)
    end)
end)

describe("9 limits and sizes", function()
    it("echoes a message of exactly max_message bytes", function()
        local c = connect()
        local msg = string.rep("\1", 1 << 20)
        c:send_frame { opcode = op.binary, payload = msg, key = "\0\0\0\0" }
        assert.are.equal(msg, c:recv_message(10))
        c:close()
    end)

    it("fails a frame claiming more than max_message with 1009 before its payload", function()
        -- Only the header: the server must refuse from the declared length alone.
        fails_with(1009, ws.frame { opcode = op.binary, len = 64 << 20 }:sub(1, 14))
    end)

    it("fails a fragmented message that grows past max_message with 1009", function()
        local half = string.rep("x", (1 << 19) + 1)
        fails_with(1009, { opcode = op.binary, payload = half, fin = false, key = "\0\0\0\0" },
            { opcode = op.continuation, payload = half, key = "\0\0\0\0" })
    end)

    it("fails a 64-bit length with the most significant bit set with 1002", function()
        fails_with(1002, string.char(0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4))
    end)

    it("fails a 16-bit length used for 100 bytes with 1002", function()
        fails_with(1002, { opcode = op.text, payload = string.rep("a", 100), len_size = 2 })
    end)

    it("fails a 64-bit length used for 1000 bytes with 1002", function()
        fails_with(1002, { opcode = op.text, payload = string.rep("a", 1000), len_size = 8 })
    end)

    it("echoes messages of many sizes on one connection", function()
        local c = connect()
        for _, size in ipairs { 0, 10, 125, 126, 4095, 4096, 65535, 65536, 262144 } do
            local msg = string.rep("z", size)
            assert.are.equal(msg, c:echo(msg, true))
        end
        c:close()
    end)
end)

describe("10 masking", function()
    it("fails an unmasked client frame with 1002", function()
        fails_with(1002, { opcode = op.text, payload = "naked", masked = false })
    end)

    it("accepts an all-zero masking key", function()
        local c = connect()
        c:send_frame { opcode = op.text, payload = "zero key", key = "\0\0\0\0" }
        assert.are.equal("zero key", c:recv_message())
        c:close()
    end)

    it("unmasks a payload split across reads at every offset", function()
        local c = connect()
        local bytes = ws.frame { opcode = op.text, payload = "0123456789abcdef", key = "\1\2\3\4" }
        c:send_raw(bytes:sub(1, 9))
        require("socket").sleep(0.05)
        c:send_raw(bytes:sub(10, 13))
        require("socket").sleep(0.05)
        c:send_raw(bytes:sub(14))
        assert.are.equal("0123456789abcdef", c:recv_message())
        c:close()
    end)
end)
