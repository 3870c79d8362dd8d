-- Starts build/moonwire for a spec on an ephemeral loopback port and stops it afterwards.
--
-- The server binary is $MOONWIRE_BIN (spec/run-tests points it at the sanitizer build) or
-- build/moonwire. Its log goes to a file the spec can read and wait on; stopping it fails the
-- spec if the sanitizers reported anything.
local socket = require "socket"
local helpers = require "helpers"
local write_file = helpers.write_file

local M = {}
local server = {}
server.__index = server

local shell_quote = helpers.shell_quote
local read_file = helpers.read_file


function M.tmpdir()
    local p = io.popen("mktemp -d /tmp/moonwire-spec.XXXXXX")
    local dir = p:read("l")
    p:close()
    return dir
end

-- Writes files { ["app.lua"] = "...", ... } into a new temporary folder and returns its path.
function M.app_dir(files)
    local dir = M.tmpdir()
    for name, text in pairs(files) do
        local sub = name:match("^(.*)/[^/]+$")
        if sub then os.execute("mkdir -p " .. shell_quote(dir .. "/" .. sub)) end
        write_file(dir .. "/" .. name, text)
    end
    return dir
end

-- opts: app (path), config (Lua text for -c), args (extra flags), bin, env (table of
-- variables), expect_fail (do not wait for the listening line: for bad configs).
-- Returns a server with .port, .pid and .log_path.
function M.start(opts)
    local dir = M.tmpdir()
    local self = setmetatable({ dir = dir, log_path = dir .. "/server.log",
                                status_path = dir .. "/status" }, server)
    local argv = { opts.bin or os.getenv("MOONWIRE_BIN") or "build/moonwire" }
    if opts.config then
        local conf = dir .. "/moonwire.conf.lua"
        write_file(conf, opts.config)
        argv[#argv + 1] = "-c"
        argv[#argv + 1] = conf
    end
    if not (opts.args and table.concat(opts.args, " "):find("%-%-port")) then
        argv[#argv + 1] = "--port"
        argv[#argv + 1] = "0"
    end
    for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
    if opts.app then argv[#argv + 1] = opts.app end
    local quoted = {}
    for i, a in ipairs(argv) do quoted[i] = shell_quote(a) end
    local env = ""
    for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. shell_quote(v) .. " " end

    -- The shell waits for the server to record its exit status; the pipe gives us its pid.
    local script = string.format("%s%s >%s 2>&1 </dev/null & echo $!; wait $!; echo $? >%s",
        env, table.concat(quoted, " "), shell_quote(self.log_path), shell_quote(self.status_path))
    self.pipe = io.popen("sh -c " .. shell_quote(script))
    self.pid = tonumber(self.pipe:read("l"))
    if opts.expect_fail then
        self:wait_exit(10)
        return self
    end

    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline do
        local log = read_file(self.log_path) or ""
        local port = log:match("listening on ws://[^\n]-:(%d+)/")
        if port then
            self.port = tonumber(port)
            return self
        end
        if read_file(self.status_path) then
            error("moonwire exited at start:\n" .. log)
        end
        socket.sleep(0.01)
    end
    self:kill()
    error("moonwire did not start listening within 10 s:\n" .. (read_file(self.log_path) or ""))
end

function server:log() return read_file(self.log_path) or "" end

-- The admin listener's port (a server started with --admin or an admin config), read from its
-- "admin listening on http://HOST:PORT/" log line. Waits up to timeout seconds (default 5);
-- raises without the line.
function server:admin_port(timeout)
    if not self.admin_port_number then
        local port = self:wait_log("admin listening on https?://[^\n]-:(%d+)/", timeout)
        if not port then error("no \"admin listening on\" line in the log:\n" .. self:log(), 2) end
        self.admin_port_number = tonumber(port)
    end
    return self.admin_port_number
end

-- Waits until the log matches a Lua pattern. Returns the match, or nil after timeout.
function server:wait_log(pattern, timeout)
    local deadline = socket.gettime() + (timeout or 5)
    repeat
        local m = self:log():match(pattern)
        if m then return m end
        socket.sleep(0.01)
    until socket.gettime() > deadline
    return nil
end

function server:signal(name) os.execute("kill -" .. name .. " " .. self.pid .. " 2>/dev/null") end

-- Waits for the process to exit. Returns its exit status, or nil on timeout.
function server:wait_exit(timeout)
    local deadline = socket.gettime() + (timeout or 10)
    repeat
        local s = read_file(self.status_path)
        if s and s:match("%d") then
            if self.pipe then self.pipe:close() self.pipe = nil end
            self.status = tonumber(s:match("%d+"))
            return self.status
        end
        socket.sleep(0.01)
    until socket.gettime() > deadline
    return nil
end

function server:kill()
    self:signal("KILL")
    self:wait_exit(5)
end

-- Problems the sanitizers or the server itself reported in the log.
function server:sanitizer_report()
    local log = self:log()
    for _, pat in ipairs { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "WARNING: ThreadSanitizer" } do
        local at = log:find(pat, 1, true)
        if at then return log:sub(at, at + 3000) end
    end
    return nil
end

-- Stops the server with SIGTERM (a drain) and returns its exit status. Raises when it does not
-- exit in time or a sanitizer reported an error.
function server:stop(timeout)
    if not self.status then
        self:signal("TERM")
        if not self:wait_exit(timeout or 15) then
            self:kill()
            error("moonwire did not exit after SIGTERM:\n" .. self:log())
        end
    end
    local report = self:sanitizer_report()
    if report then error("sanitizer report in the server log:\n" .. report) end
    M.remove(self.dir)
    return self.status
end

-- Removes a folder made by M.tmpdir or M.app_dir.
function M.remove(dir)
    assert(dir:match("^/tmp/moonwire%-spec%."), "refusing to remove " .. dir)
    os.execute("rm -rf " .. shell_quote(dir))
end

return M
