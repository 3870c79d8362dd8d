-- Small helpers the specs share: text searching, waiting on a server's log, writing files.
local socket = require "socket"

local M = {}

-- The number of the first line of src that contains needle (plain text); raises without one.
function M.line_of(src, needle)
    local n = 0
    for line in (src .. "\n"):gmatch("(.-)\n") do
        n = n + 1
        if line:find(needle, 1, true) then return n end
    end
    error("no line holds " .. needle)
end

-- How many times text holds needle (plain text).
function M.count(text, needle)
    local n, at = 0, 1
    while true do
        local s, e = text:find(needle, at, true)
        if not s then return n end
        n, at = n + 1, e + 1
    end
end

-- Waits until srv's log holds needle (plain text) at least n times (default 1); false after
-- timeout seconds (default 5).
function M.wait_for(srv, needle, n, timeout)
    local deadline = socket.gettime() + (timeout or 5)
    repeat
        if M.count(srv:log(), needle) >= (n or 1) then return true end
        socket.sleep(0.01)
    until socket.gettime() > deadline
    return false
end

-- The whole file at path, or nil when it cannot be read.
function M.read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

-- The resident memory of process pid, in KiB (VmRSS of /proc/PID/status).
function M.rss_kib(pid)
    local status = M.read_file("/proc/" .. pid .. "/status") or ""
    return assert(tonumber(status:match("VmRSS:%s*(%d+)")), "VmRSS in /proc/" .. pid .. "/status")
end

-- s quoted for sh.
function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Writes path whole, through a rename, so a server watching the folder never reads half.
function M.write_file(path, text)
    local tmp = path .. ".tmp"
    local f = assert(io.open(tmp, "wb"))
    f:write(text)
    f:close()
    assert(os.rename(tmp, path))
end

-- The samples of a Prometheus scrape: { ['name{labels}'] = value }. With one_app, every app
-- label reads "app" (specs that run a single app whose name comes from its folder).
function M.metric_samples(body, one_app)
    local t = {}
    for line in body:gmatch("[^\n]+") do
        if line:sub(1, 1) ~= "#" then
            local key, value = line:match("^(%S+) (%S+)$")
            if key then
                if one_app then key = key:gsub('app="[^"]*"', 'app="app"') end
                t[key] = tonumber(value) or (value == "+Inf" and math.huge) or nil
            end
        end
    end
    return t
end

return M
