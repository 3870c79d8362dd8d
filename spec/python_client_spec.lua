-- The server against a client nobody here wrote: Debian's python3-websockets (10.4, asyncio
-- API). A Python script embedded below talks to the server and prints key=value lines, which
-- the spec checks: a 1 MiB binary echo, a non-ASCII text echo, a ping, and both close directions.
local server = require "server"

-- /usr/bin/python3 explicitly: the python3 on PATH may be another one, without websockets.
local PYTHON = "/usr/bin/python3"

-- The same text as TEXT in the script: accents, a symbol, a dash, an emoji, Cyrillic.
local TEXT = "h\u{E9}llo w\u{F6}rld \u{263A} \u{2014} \u{1F319} \u{43C}\u{438}\u{440}"

local SCRIPT = [[
import asyncio, hashlib, os, sys
import websockets

TEXT = "h\u00e9llo w\u00f6rld \u263a \u2014 \U0001f319 \u043c\u0438\u0440"

async def run(port, mode):
    out = {}
    uri = "ws://127.0.0.1:%d/python" % port
    async with websockets.connect(uri, max_size=None, open_timeout=5, close_timeout=5) as ws:
        if mode == "binary":
            data = os.urandom(1 << 20)
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), 10)
            out["type"] = type(got).__name__
            out["length"] = len(got)
            out["equal"] = got == data
            out["sent_sha256"] = hashlib.sha256(data).hexdigest()
            out["got_sha256"] = hashlib.sha256(got).hexdigest()
        elif mode == "text":
            await ws.send(TEXT)
            got = await asyncio.wait_for(ws.recv(), 5)
            out["type"] = type(got).__name__
            out["equal"] = got == TEXT
            out["got_hex"] = got.encode("utf-8").hex()
        elif mode == "ping":
            pong = await ws.ping(b"python ping")
            await asyncio.wait_for(pong, 5)
            out["pong"] = True
        elif mode == "close":
            await ws.close(code=1000, reason="done")
            out["close_code"] = ws.close_code
        elif mode == "server-close":
            await ws.send("please close")
            try:
                out["unexpected"] = await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosedOK:
                out["closed_ok"] = True
            except websockets.ConnectionClosed:
                out["closed_ok"] = False
            out["close_code"] = ws.close_code
            out["close_reason"] = ws.close_reason
    for key in sorted(out):
        print("%s=%s" % (key, out[key]))
    print("done=True")

asyncio.run(run(int(sys.argv[1]), sys.argv[2]))
]]

-- Echo, and a server-side close on request.
local APP = [[
local app = {}
function app.message(conn, data, is_binary)
    if data == "please close" then
        conn:close(1000, "as asked")
    else
        conn:send(data, is_binary)
    end
end
return app
]]

local srv, app_dir, script_dir, script

setup(function()
    app_dir = server.app_dir { ["app.lua"] = APP }
    script_dir = server.app_dir { ["ws_check.py"] = SCRIPT }
    script = script_dir .. "/ws_check.py"
    srv = server.start { app = app_dir }
end)

teardown(function()
    assert.are.equal(0, srv:stop())
    server.remove(app_dir)
    server.remove(script_dir)
end)

-- Runs the script in a mode; returns its key=value lines as a table (and the raw output).
local function python(mode)
    local cmd = string.format("PYTHONIOENCODING=utf-8 timeout 30 %s %s %d %s 2>&1", PYTHON,
        script, srv.port, mode)
    local p = io.popen(cmd)
    local output = p:read("a")
    local ok, _, code = p:close()
    assert.is_true(ok, "the script failed (status " .. tostring(code) .. "):\n" .. output)
    local result = {}
    for key, value in output:gmatch("([%w_]+)=([^\n]*)") do result[key] = value end
    assert.are.equal("True", result.done, output)
    return result, output
end

local function hex(s)
    return (s:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

describe("python3-websockets", function()
    it("gets a 1 MiB binary message back byte for byte", function()
        local r, output = python("binary")
        assert.are.equal("bytes", r.type, output)
        assert.are.equal(tostring(1 << 20), r.length)
        assert.are.equal("True", r.equal)
        assert.are.equal(r.sent_sha256, r.got_sha256)
    end)

    it("gets a non-ASCII text message back as the same text", function()
        local r, output = python("text")
        assert.are.equal("str", r.type, output)
        assert.are.equal("True", r.equal)
        assert.are.equal(hex(TEXT), r.got_hex)
    end)

    it("gets a pong for its ping", function()
        assert.are.equal("True", python("ping").pong)
    end)

    it("closes with 1000 and sees the server's close code 1000", function()
        local r, output = python("close")
        assert.are.equal("1000", r.close_code, output)
    end)

    it("sees a close the app makes: 1000 with the app's reason, as a clean close", function()
        local r, output = python("server-close")
        assert.is_nil(r.unexpected, output)
        assert.are.equal("True", r.closed_ok, output)
        assert.are.equal("1000", r.close_code)
        assert.are.equal("as asked", r.close_reason)
    end)
end)
