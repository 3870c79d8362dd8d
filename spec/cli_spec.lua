-- The command line (DESIGN 3) and the config file (DESIGN 4): help and version, bad flags
-- (exit 2), --check, config errors with file:line (exit 1), --max-message, and where the
-- server listens (--port, a port in use, listen from the config, --host ::1).
local ws = require "ws_client"
local server = require "server"
local socket = require "socket"

local BIN = os.getenv("MOONWIRE_BIN") or "build/moonwire"
local ECHO = "examples/echo"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs the binary with args (a shell string) and returns its output (stdout and stderr) and
-- exit status. The timeout guards against a command that starts serving by mistake.
local function run(args)
    local p = io.popen("timeout 10 " .. q(BIN) .. " " .. args .. " 2>&1 </dev/null")
    local out = p:read("a")
    local _, _, code = p:close()
    assert.is_falsy(out:find("Sanitizer", 1, true), out)
    return out, code
end

local function has(out, text) return out:find(text, 1, true) ~= nil end

-- A TCP port that was free a moment ago.
local function free_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

local function ipv6_loopback()
    local s = socket.tcp6 and socket.tcp6()
    if not s then return false end
    local ok = s:bind("::1", 0)
    s:close()
    return ok == 1
end

local tmp
setup(function() tmp = server.tmpdir() end)
teardown(function() server.remove(tmp) end)

-- Writes a config file into the spec's temporary folder; returns its path.
local function conf(name, text)
    local path = tmp .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
end

describe("--help", function()
    it("lists the options and exits 0", function()
        local out, code = run("--help")
        assert.are.equal(0, code)
        assert.is_truthy(out:match("^usage: moonwire"), out)
        for _, opt in ipairs { "--config", "--port", "--host", "--max-message", "--check",
                               "--version", "--help" } do
            assert.is_true(has(out, opt), opt .. " is listed")
        end
    end)

    it("is also -h", function()
        local out, code = run("-h")
        assert.are.equal(0, code)
        assert.are.equal(run("--help"), out)
    end)
end)

describe("--version", function()
    for _, flag in ipairs { "--version", "-v" } do
        it("prints 'moonwire X.Y.Z' and exits 0 (" .. flag .. ")", function()
            local out, code = run(flag)
            assert.are.equal(0, code)
            assert.is_truthy(out:match("^moonwire %d+%.%d+%.%d+\n$"), out)
        end)
    end
end)

describe("bad arguments exit 2", function()
    -- { label, args, texts the message must hold }
    local cases = {
        { "an unknown long option", "--bogus " .. ECHO, { "unknown option '--bogus'" } },
        { "an unknown short option", "-x " .. ECHO, { "unknown option '-x'" } },
        { "an unknown short option grouped with a known one", "-qv " .. ECHO,
          { "unknown option '-q'" } },
        { "--port abc", "--port abc " .. ECHO,
          { "--port needs a number from 0 to 65535, not 'abc'" } },
        { "--port 70000", "--port 70000 " .. ECHO,
          { "--port needs a number from 0 to 65535, not '70000'" } },
        { "--port -1", "--port -1 " .. ECHO, { "--port needs a number", "not '-1'" } },
        { "--port without a value", "--port", { "--port needs a value" } },
        { "--max-message bad", "--max-message bad " .. ECHO,
          { "--max-message needs a size from 1 to 1G", "not 'bad'" } },
        { "--max-message 0 (a server needs a ceiling)", "--max-message 0 " .. ECHO,
          { "--max-message needs a size from 1 to 1G", "not '0'" } },
        { "--max-message past 1G", "--max-message 2G " .. ECHO, { "not '2G'" } },
        { "--max-message 12X", "--max-message 12X " .. ECHO, { "not '12X'" } },
        { "--max-message -5", "--max-message -5 " .. ECHO, { "not '-5'" } },
        { "--workers 0", "--workers 0 " .. ECHO,
          { "--workers needs a number from 1 to 64, or 'auto'", "not '0'" } },
        { "--workers many", "--workers many " .. ECHO, { "--workers needs", "not 'many'" } },
        { "--log-level loud", "--log-level loud " .. ECHO,
          { "--log-level needs debug, info, warn or error" } },
        { "no APP", "", { "no app given", "moonwire examples/echo" } },
        { "two APPs", ECHO .. " other-app", { "only one APP", "'other-app' is extra" } },
    }
    for _, case in ipairs(cases) do
        local label, args, texts = case[1], case[2], case[3]
        it(label, function()
            local out, code = run(args)
            assert.are.equal(2, code, out)
            assert.is_truthy(out:match("^moonwire: "), out)
            for _, text in ipairs(texts) do assert.is_true(has(out, text), out) end
            assert.is_true(has(out, "run 'moonwire --help'"), out)
        end)
    end
end)

describe("--check", function()
    it("says a valid app is valid and exits 0", function()
        local out, code = run("--check " .. ECHO)
        assert.are.equal(0, code, out)
        assert.is_true(has(out, "defaults and 1 app are valid"), out)
    end)

    it("says a valid config and app are valid and exits 0", function()
        local path = conf("good.lua", "limits = { max_message = 1 << 20 }\n")
        local out, code = run("--check -c " .. q(path) .. " " .. ECHO)
        assert.are.equal(0, code, out)
        assert.is_true(has(out, "config " .. path .. " and 1 app are valid"), out)
    end)

    it("reports a broken app with file:line and exits 1", function()
        local broken = "local app = {}\nfunction app.open(\nreturn app\n"
        local dir = server.app_dir { ["app.lua"] = broken }
        local out, code = run("--check " .. q(dir))
        server.remove(dir)
        assert.are.equal(1, code, out)
        assert.is_true(has(out, dir .. "/app.lua:3:"), out)
        assert.is_false(has(out, "valid"), out)
    end)

    it("does not listen", function()
        local port = free_port()
        local out, code = run("--check --port " .. port .. " " .. ECHO)
        assert.are.equal(0, code, out)
        assert.is_false(has(out, "listening on"), out)
    end)
end)

describe("config file errors exit 1 with file:line", function()
    -- { label, file text, texts the message must hold (FILE stands for the path) }
    local cases = {
        { "an unknown top-level key", "-- settings\nlisten = { { port = 0 } }\nx = 1\n",
          { "FILE:3: unknown setting 'x'",
            "(known: listen, apps, origins, require_origin, limits, sandbox, admin, log, "
            .. "outbound, workers, deflate, history, redis)" } },
        { "limits.unknown", "-- settings\nlimits = { max_message = 1024, unknown = 2 }\n",
          { "FILE:2: limits.unknown is not a known setting",
            "(known: max_message, max_header_bytes, ", "shutdown_timeout)" } },
        { "limits.unknown in a table over several lines: the line of the unknown key",
          "-- settings\nlimits = {\n    max_message = 1024,\n    unknown = 2,\n}\n",
          { "FILE:4: limits.unknown is not a known setting" } },
        { "a bad value over several lines: the line of its key",
          "limits = {\n    max_message = 1024,\n    idle_timeout = -1,\n}\n",
          { "FILE:3: limits.idle_timeout must be a number, 0 or more" } },
        { "an unknown top-level key spread over lines: where it starts",
          "listen = { { port = 0 } }\nlimitz = {\n    max_message = 1,\n}\n",
          { "FILE:2: unknown setting 'limitz'" } },
        { "sandbox.unknown", "sandbox = { instructions = 1000, cpu = 1 }\n",
          { "FILE:1: sandbox.cpu is not a known setting (known: instructions, memory, "
            .. "time_limit, max_load, topic_memory, timer_share, wait_timeout)" } },
        { "limits.max_message = 'big'", "\nlimits = { max_message = \"big\" }\n",
          { "FILE:2: limits.max_message must be a number, or a size like \"16M\"" } },
        { "limits.max_message = 0 (a server needs a ceiling)", "limits = { max_message = 0 }\n",
          { "FILE:1: limits.max_message cannot be 0" } },
        { "limits.max_message past 1 GiB", "limits = { max_message = \"2G\" }\n",
          { "FILE:1: limits.max_message must be at most 1073741824" } },
        { "limits = 5", "limits = 5\n", { "FILE:1: limits must be a table" } },
        { "workers = 0", "workers = 0\n",
          { "FILE:1: workers must be a whole number from 1 to 64, or \"auto\"" } },
        { "workers = \"all\"", "\nworkers = \"all\"\n", { "FILE:2: workers must be a whole number" } },
        { "listen = 5", "\n\nlisten = 5\n", { "FILE:3: listen must be a list of tables" } },
        { "listen = {{port = 70000}}", "listen = {{port = 70000}}\n",
          { "FILE:1: listen[1].port must be a number from 0 to 65535" } },
        { "listen = {{host = 5, port = 0}}", "listen = {{host = 5, port = 0}}\n",
          { "FILE:1: listen[1].host must be an address string" } },
        { "listen[1].ssl (not a known key)", "listen = {{port = 0, ssl = {}}}\n",
          { "FILE:1: listen[1].ssl is not a known setting (known: host, port, tls)" } },
        { "listen[1].tls without a key", "listen = {{port = 0, tls = { cert = \"c.pem\" }}}\n",
          { "FILE:1: listen[1].tls needs both cert and key" } },
        { "sandbox.memory below the minimum, named in bytes", "sandbox = { memory = 1000 }\n",
          { "FILE:1: sandbox.memory must be at least 1048576" } },
        { "a Lua syntax error", "limits = {\n    max_message = 1\n\n",
          { "FILE:4:", "'}' expected" } },
        { "a runtime error", "-- settings\nlimits.max_message = 5\n",
          { "FILE:2:", "attempt to index a nil value" } },
    }
    for i, case in ipairs(cases) do
        local label, text, texts = case[1], case[2], case[3]
        it(label, function()
            local path = conf("bad" .. i .. ".lua", text)
            local out, code = run("--check -c " .. q(path) .. " " .. ECHO)
            assert.are.equal(1, code, out)
            for _, t in ipairs(texts) do
                assert.is_true(has(out, (t:gsub("FILE", path))), out)
            end
        end)
    end

    it("several mistakes: every one, a line each, in the order of their lines", function()
        local path = conf("several.lua", "-- settings\nlisten = 5\nx = 1\n"
            .. "limits = { max_message = \"big\", per_ip = -1 }\nsandbox = { cpu = 2 }\n")
        local out, code = run("--check -c " .. q(path) .. " " .. ECHO)
        assert.are.equal(1, code, out)
        local lines = {}
        for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
        local want = {
            path .. ":2: listen must be a list of tables",
            path .. ":3: unknown setting 'x'",
            path .. ":4: limits.",
            path .. ":4: limits.",
            path .. ":5: sandbox.cpu is not a known setting",
        }
        assert.are.equal(#want, #lines, out)
        for i, w in ipairs(want) do
            assert.are.equal("moonwire: " .. w, lines[i]:sub(1, #w + 10), out)
        end
        assert.is_true(has(out, "max_message must be a number"), out)
        assert.is_true(has(out, "per_ip must be a number, 0 or more"), out)
    end)

    it("a missing config file", function()
        local out, code = run("--check -c " .. q(tmp .. "/missing.lua") .. " " .. ECHO)
        assert.are.equal(1, code, out)
        assert.is_true(has(out, "cannot open " .. tmp .. "/missing.lua"), out)
    end)
end)

describe("sizes in the config file", function()
    it("are written as on the command line: max_message = \"1K\"", function()
        local srv = server.start { app = ECHO, config = 'limits = { max_message = "1K" }\n' }
        local c = assert(ws.connect(srv.port))
        assert.are.equal(("a"):rep(1024), c:echo(("a"):rep(1024), true))
        c:send_binary(("a"):rep(1025))
        assert.are.equal(1009, (c:expect_close()))
        c:abort()
        assert.are.equal(0, srv:stop())
    end)
end)

describe("--max-message", function()
    -- { flag value, the limit in bytes }
    for _, case in ipairs { { "1K", 1024 }, { "64K", 65536 }, { "1MiB", 1 << 20 } } do
        local value, limit = case[1], case[2]
        it(value .. ": echoes " .. limit .. " bytes, fails " .. limit + 1 .. " with 1009",
            function()
                local srv = server.start { app = ECHO, args = { "--max-message", value } }
                finally(function() srv:stop() end)
                local c = assert(ws.connect(srv.port))
                local fits = string.rep("a", limit)
                assert.are.equal(fits, c:echo(fits, true))
                c:send_binary(fits .. "b")
                assert.are.equal(1009, (c:expect_close()))
                c:abort()
                assert.are.equal(0, srv:stop())
            end)
    end
end)

-- Starts the server without the --port 0 that server.start adds, so that the config's listen
-- applies. Returns a handle with .ports (one per listener), :log() and :stop().
local function start_with_config(text, nlisten)
    local dir = server.tmpdir()
    local path = dir .. "/moonwire.conf.lua"
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    local log, status = dir .. "/server.log", dir .. "/status"
    local script = string.format("%s -c %s %s >%s 2>&1 </dev/null & echo $!; wait $!; echo $? >%s",
        q(BIN), q(path), ECHO, q(log), q(status))
    local pipe = io.popen("sh -c " .. q(script))
    local h = { pid = tonumber(pipe:read("l")), ports = {} }
    local function read(p)
        local fh = io.open(p)
        if not fh then return nil end
        local s = fh:read("a")
        fh:close()
        return s
    end
    function h.log() return read(log) or "" end
    function h.stop()
        if h.status then return h.status end
        os.execute("kill -TERM " .. h.pid .. " 2>/dev/null")
        local deadline = socket.gettime() + 10
        while not (read(status) or ""):match("%d") and socket.gettime() < deadline do
            socket.sleep(0.01)
        end
        if not (read(status) or ""):match("%d") then
            os.execute("kill -KILL " .. h.pid .. " 2>/dev/null")
        end
        pipe:close()
        local text = h.log()
        h.status = tonumber((read(status) or ""):match("%d+"))
        server.remove(dir)
        assert.is_falsy(text:find("Sanitizer", 1, true), text)
        return h.status
    end
    local deadline = socket.gettime() + 10
    while #h.ports < nlisten and socket.gettime() < deadline do
        h.ports = {}
        for port in h.log():gmatch("listening on ws://[^\n]-:(%d+)/") do
            h.ports[#h.ports + 1] = tonumber(port)
        end
        if read(status) then break end
        socket.sleep(0.01)
    end
    return h
end

describe("listening", function()
    it("--port N listens on port N", function()
        local port = free_port()
        local srv = server.start { app = ECHO, args = { "--port", tostring(port) } }
        finally(function() srv:stop() end)
        assert.are.equal(port, srv.port)
        local c = assert(ws.connect(port))
        assert.are.equal("fixed port", c:echo("fixed port"))
        c:close()
        assert.are.equal(0, srv:stop())
    end)

    it("exits 1 when the port is in use, saying so", function()
        local holder = assert(socket.bind("127.0.0.1", 0))
        local _, port = holder:getsockname()
        local srv = server.start { app = ECHO, args = { "--port", tostring(port) },
                                   expect_fail = true }
        if not srv.status then srv:kill() end
        holder:close()
        local log = srv:log()
        srv:stop()
        assert.are.equal(1, srv.status, log)
        assert.is_true(has(log, "cannot listen on 127.0.0.1:" .. port), log)
        assert.is_true(has(log, "already in use"), log)
    end)

    it("listens where the config's listen says", function()
        local h = start_with_config('listen = { { host = "127.0.0.1", port = 0 } }\n', 1)
        finally(function() h.stop() end)
        assert.are.equal(1, #h.ports, h.log())
        local c = assert(ws.connect(h.ports[1]))
        assert.are.equal("from config", c:echo("from config"))
        c:close()
        assert.are.equal(0, h.stop())
    end)

    it("listens on every entry of the config's listen", function()
        local h = start_with_config('listen = { { host = "127.0.0.1", port = 0 },\n' ..
                                    '           { host = "127.0.0.1", port = 0 } }\n', 2)
        finally(function() h.stop() end)
        assert.are.equal(2, #h.ports, h.log())
        assert.are_not.equal(h.ports[1], h.ports[2])
        for _, port in ipairs(h.ports) do
            local c = assert(ws.connect(port))
            assert.are.equal("port " .. port, c:echo("port " .. port))
            c:close()
        end
        assert.are.equal(0, h.stop())
    end)

    it("lets --port replace the config's listen", function()
        local port = free_port()
        local srv = server.start { app = ECHO, args = { "--port", tostring(port) },
            config = 'listen = { { port = 0 }, { port = 0 } }\n' }
        finally(function() srv:stop() end)
        assert.are.equal(port, srv.port)
        local _, listeners = srv:log():gsub("listening on", "")
        assert.are.equal(1, listeners)
        assert.are.equal(0, srv:stop())
    end)

    -- A WebSocket echo over IPv6, by hand: the spec client only speaks IPv4.
    local function echo_v6(port, msg)
        local sock = socket.tcp6()
        sock:settimeout(5)
        assert(sock:connect("::1", port))
        local key = "dGhlIHNhbXBsZSBub25jZQ=="
        sock:send(ws.request { key = key, host = "[::1]:" .. port })
        local status = sock:receive("*l")
        local accept
        repeat
            local line = sock:receive("*l")
            accept = accept or (line or ""):lower():match("^sec%-websocket%-accept:%s*(%S+)")
        until not line or line == ""
        sock:send(ws.frame { opcode = ws.op.text, payload = msg })
        local head = sock:receive(2) or "\0\0"
        local payload = sock:receive(head:byte(2) & 0x7F)
        sock:close()
        return status, accept, payload
    end

    local v6 = ipv6_loopback()
    local it_v6 = v6 and it or pending
    it_v6("--host ::1 listens on the IPv6 loopback" .. (v6 and "" or " (no IPv6 loopback)"),
        function()
            local srv = server.start { app = ECHO, args = { "--host", "::1" } }
            finally(function() srv:stop() end)
            assert.is_true(has(srv:log(), "listening on ws://[::1]:" .. srv.port .. "/"))
            local status, accept, payload = echo_v6(srv.port, "over IPv6")
            assert.is_truthy(status and status:match("^HTTP/1%.1 101"), status)
            assert.are.equal(ws.accept_for("dGhlIHNhbXBsZSBub25jZQ=="):lower(), accept)
            assert.are.equal("over IPv6", payload)
            assert.are.equal(0, srv:stop())
        end)
end)
