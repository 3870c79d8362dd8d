-- A throwaway redis-server for specs: on a free loopback port, no persistence unless asked,
-- its own directory. redis-cli runs commands against it.
local socket = require "socket"

local M = {}
local redis = {}
redis.__index = redis

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A port nobody listens on now (the kernel's pick for port 0).
function M.free_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

-- opts: port (default: a free one), args (extra redis-server arguments, a string), dir.
function M.start(opts)
    opts = opts or {}
    local self = setmetatable({}, redis)
    self.port = opts.port or M.free_port()
    self.dir = opts.dir or os.tmpname() .. ".redis"
    os.execute("mkdir -p " .. sh_quote(self.dir))
    self.args = opts.args or '--save "" --appendonly no'
    self:launch()
    return self
end

function redis:launch()
    local cmd = ("cd %s && redis-server --port %d --bind 127.0.0.1 --dir %s %s " ..
                 ">%s/redis.log 2>&1 </dev/null & echo $!"):format(
        sh_quote(self.dir), self.port, sh_quote(self.dir), self.args, sh_quote(self.dir))
    local p = io.popen(cmd)
    self.pid = tonumber(p:read("l"))
    p:close()
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline do
        local c = socket.tcp()
        c:settimeout(0.2)
        if c:connect("127.0.0.1", self.port) then
            c:close()
            if self:cli("PING") == "PONG" then return end
        else
            c:close()
        end
        socket.sleep(0.02)
    end
    error("redis-server did not start on port " .. self.port)
end

function redis:url() return "redis://127.0.0.1:" .. self.port end

-- Runs redis-cli with the arguments; returns its output without the last newline.
function redis:cli(...)
    local args = {}
    for i, a in ipairs { ... } do args[i] = sh_quote(a) end
    local p = io.popen(("redis-cli -p %d %s 2>&1"):format(self.port, table.concat(args, " ")))
    local out = p:read("a")
    p:close()
    return (out:gsub("\n$", ""))
end

-- Subscribers of channel, by PUBSUB NUMSUB.
function redis:numsub(channel)
    local out = self:cli("PUBSUB", "NUMSUB", channel)
    return tonumber(out:match("\n(%d+)$")) or 0
end

function redis:kill9()
    os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
    -- Wait until the port is free again.
    local deadline = socket.gettime() + 5
    while socket.gettime() < deadline do
        local c = socket.tcp()
        c:settimeout(0.1)
        local ok = c:connect("127.0.0.1", self.port)
        c:close()
        if not ok then return end
        socket.sleep(0.02)
    end
end

function redis:restart() self:launch() end

function redis:stop()
    self:kill9()
    os.execute("rm -rf " .. sh_quote(self.dir))
end

return M
