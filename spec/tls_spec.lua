-- wss://: python3-websockets over TLS with self-signed certificates made here with `openssl`,
-- protocol versions, ciphers, ALPN and SNI checked with `openssl s_client`, certificates
-- reloaded on SIGHUP, plaintext on the TLS port, --tls-cert/--tls-key, and the drain over TLS.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"
local helpers = require "helpers"
local count, write_file = helpers.count, helpers.write_file

-- /usr/bin/python3 explicitly: the python3 on PATH may be another one, without websockets.
local PYTHON = "/usr/bin/python3"

local function now() return socket.gettime() end
local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function run(cmd)
    local p = io.popen(cmd .. " 2>&1")
    local out = p:read("a")
    local ok = p:close()
    return ok, out
end

-- A self-signed P-256 certificate for name (and 127.0.0.1 when ip): dir/base.pem, dir/base.key.
local function make_cert(dir, base, name, ip)
    local san = "DNS:" .. name .. (ip and ",IP:127.0.0.1" or "")
    local ok, out = run(string.format("openssl req -x509 -newkey ec -pkeyopt "
        .. "ec_paramgen_curve:P-256 -nodes -days 2 -keyout %s -out %s -subj /CN=%s "
        .. "-addext subjectAltName=%s", q(dir .. "/" .. base .. ".key"),
        q(dir .. "/" .. base .. ".pem"), name, san))
    assert(ok, "openssl req failed:\n" .. out)
    return dir .. "/" .. base .. ".pem", dir .. "/" .. base .. ".key"
end

-- The SHA-256 fingerprint of a PEM certificate, lower-case hex without colons.
local function fingerprint(pem)
    local ok, out = run("openssl x509 -noout -fingerprint -sha256 -in " .. q(pem))
    assert(ok, out)
    return (assert(out:match("=([%x:]+)")):gsub(":", ""):lower())
end

-- ---- a server on a TLS listener --------------------------------------------------------------

-- spec/support/server.lua waits for a ws:// listener and adds --port (which would replace the
-- config's TLS listener); this starts one whose listener is wss://, with the same interface.
local Server = {}
Server.__index = Server

local read_file = require("helpers").read_file

-- opts: app, config (Lua text), args (flags).
local function start(opts)
    local dir = server.tmpdir()
    local self = setmetatable({ dir = dir, log_path = dir .. "/server.log",
                                status_path = dir .. "/status" }, Server)
    local argv = { q(os.getenv("MOONWIRE_BIN") or "build/moonwire") }
    if opts.config then
        write_file(dir .. "/moonwire.conf.lua", opts.config)
        argv[#argv + 1] = "-c " .. q(dir .. "/moonwire.conf.lua")
    end
    for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = q(a) end
    argv[#argv + 1] = q(opts.app or "examples/echo")
    local script = string.format("%s >%s 2>&1 </dev/null & echo $!; wait $!; echo $? >%s",
        table.concat(argv, " "), q(self.log_path), q(self.status_path))
    self.pipe = io.popen("sh -c " .. q(script))
    self.pid = tonumber(self.pipe:read("l"))
    local deadline = now() + 10
    while now() < deadline do
        local port = self:log():match("listening on wss://[^\n]-:(%d+)/")
        if port then
            self.port = tonumber(port)
            return self
        end
        if read_file(self.status_path) then error("moonwire exited at start:\n" .. self:log()) end
        socket.sleep(0.01)
    end
    self:kill()
    error("moonwire did not start a wss:// listener within 10 s:\n" .. self:log())
end

function Server:log() return read_file(self.log_path) or "" end

function Server:wait_log(pattern, timeout)
    local deadline = now() + (timeout or 5)
    repeat
        local m = self:log():match(pattern)
        if m then return m end
        socket.sleep(0.01)
    until now() > deadline
    return nil
end

function Server:signal(name) os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null") end

function Server:wait_exit(timeout)
    local deadline = now() + (timeout or 10)
    repeat
        local s = read_file(self.status_path)
        if s and s:match("%d") then
            if self.pipe then
                self.pipe:close()
                self.pipe = nil
            end
            self.status = tonumber(s:match("%d+"))
            return self.status
        end
        socket.sleep(0.01)
    until now() > deadline
    return nil
end

function Server:kill()
    self:signal("KILL")
    self:wait_exit(5)
end

-- Stops with SIGTERM; raises on a hang or a sanitizer report. Returns the exit status.
function Server:stop(timeout)
    if not self.status then
        self:signal("TERM")
        if not self:wait_exit(timeout or 15) then
            self:kill()
            error("moonwire did not exit after SIGTERM:\n" .. self:log())
        end
    end
    local log = self:log()
    for _, pat in ipairs { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" } do
        local at = log:find(pat, 1, true)
        if at then error("sanitizer report in the server log:\n" .. log:sub(at, at + 3000)) end
    end
    if self.dir then server.remove(self.dir) end
    self.dir = nil
    return self.status
end

-- ---- clients ------------------------------------------------------------------------------

local TEXT = "h\u{E9}llo over TLS \u{263A}"

local SCRIPT = [[
import asyncio, hashlib, os, ssl, sys
import websockets

TEXT = "h\u00e9llo over TLS \u263a"

def out(key, value):
    print("%s=%s" % (key, value), flush=True)

def context(cafile):
    if cafile == "-":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx

async def connect(port, cafile, name):
    kw = {"ssl": context(cafile), "max_size": None, "open_timeout": 5, "close_timeout": 5}
    if name != "-":
        kw["server_hostname"] = name
    return await websockets.connect("wss://127.0.0.1:%d/" % port, **kw)

def peer(ws, prefix=""):
    obj = ws.transport.get_extra_info("ssl_object")
    out(prefix + "fingerprint", hashlib.sha256(obj.getpeercert(binary_form=True)).hexdigest())
    out(prefix + "version", obj.version())
    out(prefix + "alpn", obj.selected_alpn_protocol())

async def run(port, mode, cafile, name, extra):
    if mode == "echo":
        ws = await connect(port, cafile, name)
        peer(ws)
        await ws.send(TEXT)
        out("text_equal", await asyncio.wait_for(ws.recv(), 10) == TEXT)
        data = os.urandom(1 << 20)
        await ws.send(data)
        got = await asyncio.wait_for(ws.recv(), 30)
        out("binary_length", len(got))
        out("binary_equal", got == data)
        await ws.close(code=1000, reason="done")
        out("close_code", ws.close_code)
    elif mode == "verify":
        try:
            ws = await connect(port, cafile, name)
            out("verified", True)
            await ws.close()
        except ssl.SSLCertVerificationError as e:
            out("verified", False)
            out("verify_error", e.verify_message)
    elif mode == "hold":
        # extra: a file to wait for, then the certificate the next connection must verify with.
        go, new_cafile = extra.split(",")
        ws = await connect(port, cafile, name)
        peer(ws, "first_")
        await ws.send("before")
        out("before", await asyncio.wait_for(ws.recv(), 5))
        out("ready", True)
        for _ in range(500):
            if os.path.exists(go):
                break
            await asyncio.sleep(0.02)
        await ws.send("after")
        out("after", await asyncio.wait_for(ws.recv(), 5))
        ws2 = await connect(port, new_cafile, name)
        peer(ws2, "second_")
        await ws2.send("second")
        out("second", await asyncio.wait_for(ws2.recv(), 5))
        await ws2.close()
        await ws.close()
        out("first_close_code", ws.close_code)
    elif mode == "wait-close":
        ws = await connect(port, cafile, name)
        await ws.send("hello")
        out("hello", await asyncio.wait_for(ws.recv(), 5))
        out("ready", True)
        try:
            out("unexpected", await asyncio.wait_for(ws.recv(), 10))
        except websockets.ConnectionClosed:
            out("close_code", ws.close_code)
            out("close_reason", ws.close_reason)
    out("done", True)

asyncio.run(run(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
]]

local certs, script_path

-- Runs the script (cafile "-": no verification; name "-": no server_hostname). Returns its
-- key=value lines as a table, and the raw output.
local function python(port, mode, cafile, name, extra)
    local ok, output = run(string.format("PYTHONIOENCODING=utf-8 timeout 40 %s %s %d %s %s %s %s",
        PYTHON, q(script_path), port, mode, q(cafile or "-"), q(name or "-"), q(extra or "-")))
    local r = {}
    for key, value in output:gmatch("([%w_]+)=([^\n]*)") do r[key] = value end
    assert.is_true(ok and r.done == "True", "the script failed:\n" .. output)
    return r, output
end

-- Starts the script for an interactive mode; returns the pipe once it printed ready=True, with
-- the lines read so far.
local function python_until_ready(port, mode, cafile, name, extra)
    local p = io.popen(string.format("PYTHONIOENCODING=utf-8 timeout 40 %s %s %d %s %s %s %s 2>&1",
        PYTHON, q(script_path), port, mode, q(cafile or "-"), q(name or "-"), q(extra or "-")))
    local r, lines = {}, {}
    for line in p:lines() do
        lines[#lines + 1] = line
        local key, value = line:match("^([%w_]+)=(.*)$")
        if key then r[key] = value end
        if key == "ready" then return p, r, lines end
    end
    p:close()
    error("the script ended before it was ready:\n" .. table.concat(lines, "\n"))
end

local function python_finish(p, r, lines)
    for line in p:lines() do
        lines[#lines + 1] = line
        local key, value = line:match("^([%w_]+)=(.*)$")
        if key then r[key] = value end
    end
    p:close()
    assert.are.equal("True", r.done, table.concat(lines, "\n"))
    return r, table.concat(lines, "\n")
end

-- openssl s_client with args and no input. Returns its output and exit status, and the
-- negotiated protocol, cipher, ALPN and certificate subject CN it printed.
local function s_client(port, args)
    local p = io.popen(string.format("timeout 10 openssl s_client -connect 127.0.0.1:%d %s "
        .. "</dev/null 2>&1; echo \"exit=$?\"", port, args))
    local out = p:read("a")
    p:close()
    local protocol, cipher = out:match("New, ([^,]+), Cipher is ([^\n]+)")
    return {
        output = out,
        status = tonumber(out:match("exit=(%d+)%s*$")),
        protocol = protocol,
        cipher = cipher,
        alpn = out:match("ALPN protocol: ([^\n]+)") or (out:find("No ALPN negotiated", 1, true)
            and "none"),
        cn = out:match("\nsubject=[^\n]-CN ?= ?([^,/\n]+)"),
    }
end

setup(function()
    local dir = server.tmpdir()
    certs = { dir = dir }
    certs.a_pem, certs.a_key = make_cert(dir, "a", "a.test", true)
    certs.b_pem, certs.b_key = make_cert(dir, "b", "b.test", false)
    certs.a_fp, certs.b_fp = fingerprint(certs.a_pem), fingerprint(certs.b_pem)
    script_path = dir .. "/wss_check.py"
    write_file(script_path, SCRIPT)
end)

teardown(function() server.remove(certs.dir) end)

local function tls_listener(extra)
    return string.format([[
listen = { { host = "127.0.0.1", port = 0, tls = {
    { cert = %q, key = %q }, { cert = %q, key = %q } } } }
%s]], certs.a_pem, certs.a_key, certs.b_pem, certs.b_key, extra or "")
end

-- ---- the specs ----------------------------------------------------------------------------

describe("wss:// with two certificates", function()
    local srv
    setup(function() srv = start { config = tls_listener() } end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("serves python3-websockets: text and 1 MiB binary echoes, close 1000, verified", function()
        local r, output = python(srv.port, "echo", certs.a_pem)
        assert.are.equal(certs.a_fp, r.fingerprint, output)
        assert.are.equal("TLSv1.3", r.version)
        assert.are.equal("http/1.1", r.alpn)
        assert.are.equal("True", r.text_equal)
        assert.are.same({ tostring(1 << 20), "True" }, { r.binary_length, r.binary_equal })
        assert.are.equal("1000", r.close_code)
    end)

    it("fails the verification of a client that trusts another certificate", function()
        local r, output = python(srv.port, "verify", certs.b_pem)
        assert.are.equal("False", r.verified, output)
        local ok = python(srv.port, "verify", certs.a_pem)
        assert.are.equal("True", ok.verified)
    end)

    it("gives a client asking for b.test (SNI) b's certificate, which it verifies", function()
        local r, output = python(srv.port, "echo", certs.b_pem, "b.test")
        assert.are.equal(certs.b_fp, r.fingerprint, output)
        assert.are.equal("True", r.text_equal)
        assert.are.equal("1000", r.close_code)
    end)

    it("picks the certificate by the name openssl s_client asks for", function()
        local cases = { { "-servername a.test", "a.test" }, { "-servername b.test", "b.test" },
                        { "-servername B.TEST", "b.test" }, { "-servername other.test", "a.test" },
                        { "-noservername", "a.test" } }
        for _, case in ipairs(cases) do
            local r = s_client(srv.port, case[1])
            assert.are.equal(0, r.status, case[1] .. ":\n" .. r.output)
            assert.are.equal(case[2], r.cn, case[1] .. ":\n" .. r.output)
        end
    end)

    it("refuses TLS 1.0 and 1.1 clients and logs why", function()
        for _, flag in ipairs { "-tls1", "-tls1_1" } do
            local before = count(srv:log(), "TLS handshake failed: unsupported protocol")
            local r = s_client(srv.port, flag .. " -cipher DEFAULT@SECLEVEL=0")
            assert.are_not.equal(0, r.status, flag .. ":\n" .. r.output)
            assert.are.equal("(NONE)", r.cipher, flag .. ":\n" .. r.output)
            -- The server saw the client's hello: the refusal is its own.
            local deadline = now() + 2
            while count(srv:log(), "TLS handshake failed: unsupported protocol") == before
                and now() < deadline do socket.sleep(0.02) end
            assert.are.equal(before + 1, count(srv:log(),
                "TLS handshake failed: unsupported protocol"), flag .. ": one log line")
        end
    end)

    it("speaks TLS 1.2 and 1.3 with forward-secret AEAD ciphers", function()
        local r12 = s_client(srv.port, "-tls1_2")
        assert.are.equal(0, r12.status, r12.output)
        assert.are.equal("TLSv1.2", r12.protocol)
        assert.is_truthy(r12.cipher:match("^ECDHE%-") and r12.cipher:match("GCM") or
            r12.cipher:match("CHACHA20"), r12.cipher)
        local r13 = s_client(srv.port, "-tls1_3")
        assert.are.equal(0, r13.status, r13.output)
        assert.are.equal("TLSv1.3", r13.protocol)
    end)

    it("refuses a TLS 1.2 client that offers only a CBC cipher", function()
        local r = s_client(srv.port, "-tls1_2 -cipher ECDHE-ECDSA-AES128-SHA")
        assert.are_not.equal(0, r.status, r.output)
        assert.are.equal("(NONE)", r.cipher, r.output)
        assert.is_truthy(srv:wait_log("TLS handshake failed: no shared cipher", 2), srv:log())
    end)

    it("answers ALPN h2,http/1.1 with http/1.1, and h2 alone with no ALPN", function()
        local r = s_client(srv.port, "-alpn h2,http/1.1")
        assert.are.equal(0, r.status, r.output)
        assert.are.equal("http/1.1", r.alpn, r.output)
        r = s_client(srv.port, "-alpn h2")
        assert.are.equal(0, r.status, r.output)
        assert.are.equal("none", r.alpn, r.output)
    end)

    it("closes plaintext ws:// on the TLS port at once, logs one line, serves TLS after",
        function()
            local line = "TLS handshake failed: http request (plain HTTP or ws:// sent to a "
                .. "TLS port)"
            local before = count(srv:log(), line)
            local t0 = now()
            local c, err = ws.connect(srv.port, { timeout = 3 })
            local elapsed = now() - t0
            assert.is_nil(c)
            assert.is_truthy(tostring(err):find("closed", 1, true), err)
            assert.is_true(elapsed < 1, "closed after " .. elapsed .. " s")
            local deadline = now() + 2
            while count(srv:log(), line) == before and now() < deadline do socket.sleep(0.02) end
            socket.sleep(0.2)
            assert.are.equal(before + 1, count(srv:log(), line), "one line for the connection")
            local r = python(srv.port, "echo", certs.a_pem)
            assert.are.equal("True", r.text_equal)
        end)

    it("closes a connection that sends bytes that are not TLS at once", function()
        local sock = assert(socket.connect("127.0.0.1", srv.port))
        sock:settimeout(3)
        local t0 = now()
        sock:send(string.rep("\0\1\2 not TLS ", 50))
        local data, err = sock:receive("*a")
        sock:close()
        assert.is_true(data == "" or err == "closed" or err == "connection reset by peer",
            tostring(err))
        assert.is_true(now() - t0 < 1, "closed after " .. (now() - t0) .. " s")
        assert.is_truthy(srv:wait_log("TLS handshake failed: wrong version number", 2), srv:log())
    end)
end)

describe("wss:// with handshake_timeout = 0.5, close_timeout = 0.5", function()
    local srv
    setup(function()
        srv = start { config = tls_listener(
            "limits = { handshake_timeout = 0.5, close_timeout = 0.5 }") }
    end)
    teardown(function() assert.are.equal(0, srv:stop()) end)

    it("drops 20 clients that never start TLS within ~1 s while serving one that does",
        function()
            local silent = {}
            for i = 1, 20 do silent[i] = assert(socket.connect("127.0.0.1", srv.port)) end
            local t0 = now()
            local r = python(srv.port, "echo", certs.a_pem)
            assert.are.equal("True", r.binary_equal)
            for i, s in ipairs(silent) do
                s:settimeout(math.max(3 - (now() - t0), 0.01))
                local data, err = s:receive("*a")
                s:close()
                assert.is_true(data == "" or err == "closed" or err == "connection reset by peer",
                    "silent client " .. i .. ": " .. tostring(err))
            end
            -- handshake_timeout, then close_timeout for an answer that cannot be sent.
            local elapsed = now() - t0
            assert.is_true(elapsed < 2, "dropped after " .. elapsed .. " s")
        end)
end)

describe("certificates reloaded on SIGHUP", function()
    local srv, dir, live_pem, live_key
    setup(function()
        dir = server.tmpdir()
        live_pem, live_key = dir .. "/live.pem", dir .. "/live.key"
        assert(os.execute(string.format("cp %s %s && cp %s %s", q(certs.a_pem), q(live_pem),
            q(certs.a_key), q(live_key))))
        srv = start { config = string.format(
            'listen = { { port = 0, tls = { cert = %q, key = %q } } }', live_pem, live_key) }
    end)
    teardown(function()
        assert.are.equal(0, srv:stop())
        server.remove(dir)
    end)

    it("gives new connections the new certificate; an open one stays and echoes", function()
        local new_pem, new_key = make_cert(dir, "new", "a.test", true)
        local new_fp = fingerprint(new_pem)
        assert.are_not.equal(certs.a_fp, new_fp)
        local go = dir .. "/go"
        local p, r, lines = python_until_ready(srv.port, "hold", certs.a_pem, nil,
            go .. "," .. new_pem)
        assert.are.equal(certs.a_fp, r.first_fingerprint)
        assert.are.equal("before", r.before)
        assert(os.execute(string.format("cp %s %s.tmp && mv %s.tmp %s && cp %s %s.tmp && "
            .. "mv %s.tmp %s", q(new_pem), q(live_pem), q(live_pem), q(live_pem), q(new_key),
            q(live_key), q(live_key), q(live_key))))
        srv:signal("HUP")
        local reloaded = srv:wait_log("listener [^\n]*: certificates reloaded", 3)
        write_file(go, "")
        r = python_finish(p, r, lines)
        assert.is_truthy(reloaded, srv:log())
        assert.are.equal("after", r.after, "the open connection survived the SIGHUP")
        assert.are.equal(new_fp, r.second_fingerprint, "a new connection sees the new one")
        assert.are.equal("second", r.second)
        assert.are.equal("1000", r.first_close_code)
    end)

    it("keeps the certificate it has when the new files do not load", function()
        local before = fingerprint(live_pem)
        local saved = read_file(live_pem)
        write_file(live_pem, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
            .. "-----END CERTIFICATE-----\n")
        srv:signal("HUP")
        local err = srv:wait_log("listener [^\n]*keeping the certificates it had", 3)
        write_file(live_pem, saved)
        assert.is_truthy(err, srv:log())
        local r = python(srv.port, "verify", live_pem, "a.test")
        assert.are.equal("True", r.verified, "still served with the previous certificate")
        assert.are.equal(before, fingerprint(live_pem))
    end)
end)

describe("--tls-cert and --tls-key", function()
    it("serve wss:// with the given certificate", function()
        local srv = start { args = { "--port", "0", "--tls-cert", certs.b_pem,
                                     "--tls-key", certs.b_key } }
        finally(function() srv:stop() end)
        local r, output = python(srv.port, "echo", certs.b_pem, "b.test")
        assert.are.equal(certs.b_fp, r.fingerprint, output)
        assert.are.equal("True", r.binary_equal)
        assert.are.equal("1000", r.close_code)
        assert.are.equal(0, srv:stop())
    end)

    it("are refused one without the other (exit 2)", function()
        local bin = os.getenv("MOONWIRE_BIN") or "build/moonwire"
        local p = io.popen(string.format("%s --port 0 --tls-cert %s examples/echo 2>&1; "
            .. "echo \"exit=$?\"", q(bin), q(certs.a_pem)))
        local out = p:read("a")
        p:close()
        assert.are.equal("2", out:match("exit=(%d+)"), out)
        assert.is_truthy(out:find("--tls-cert and --tls-key go together", 1, true), out)
    end)
end)

describe("the drain over wss://", function()
    for _, sig in ipairs { "TERM", "INT" } do
        it("SIG" .. sig .. " closes a wss:// client with 1001 \"going away\", exits 0", function()
            local srv = start { config = tls_listener("limits = { shutdown_timeout = 2 }") }
            finally(function() srv:stop() end)
            local p, r, lines = python_until_ready(srv.port, "wait-close", certs.a_pem)
            assert.are.equal("hello", r.hello)
            local t0 = now()
            srv:signal(sig)
            r = python_finish(p, r, lines)
            assert.are.same({ "1001", "going away" }, { r.close_code, r.close_reason })
            assert.is_nil(r.unexpected)
            assert.are.equal(0, srv:wait_exit(4))
            local elapsed = now() - t0
            assert.is_true(elapsed < 2, "exited " .. elapsed .. " s after the signal "
                .. "(the client answered; shutdown_timeout is 2 s)")
            assert.are.equal(0, srv:stop())
        end)
    end
end)
