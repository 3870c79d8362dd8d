-- moonwire.test: specs for a moonwire app, run inside the real runtime by `moonwire test`
-- (docs/testing.md). The app is loaded as the server loads it (the same sandbox, the same C mw
-- module, the same JSON, the same limits); clients connect through the real connection layer
-- over socketpairs, and the apps' timers follow a virtual clock that only server:advance moves.
--
--   local t = require "moonwire.test"
--   local server = t.start("path/to/app", { config = { limits = { max_message = "64K" } } })
--   local alice = server:connect { path = "/", query = "room=a" }   -- app.upgrade, app.open
--   alice:send_json { type = "join" }                              -- app.message
--   assert.same({ type = "joined" }, alice:receive_json())
--   server:advance(50)                                             -- timers due by then run
--   alice:close(1000)                                              -- app.close
--   server:stop()
--
-- Every call that makes the server work (connect, send, close, advance, reload) returns once
-- the server has done all it can: its loop is turned without blocking until nothing moves.
-- This runs in `moonwire test`'s own Lua state (not a sandbox), with the C half in
-- moonwire.testkit (core/testkit.c).
local kit = require "moonwire.testkit"

local byte, char, concat = string.byte, string.char, table.concat
local pack, unpack = string.pack, string.unpack

local M = {}

-- The JSON apps get (mw.json): whole numbers decode as integers, json.null is JSON's null.
M.json = kit.json
local json = kit.json

-- Turns of the loop after which a server that keeps moving is called stuck.
local MAX_TURNS = 100000

-- ---- configuration: a table of settings, as a config file would set them -------------------

local function lua_value(v, indent)
    local tv = type(v)
    if tv == "string" then return ("%q"):format(v) end
    if tv == "number" then
        if math.type(v) == "integer" then return tostring(v) end
        if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
        return ("%.17g"):format(v)
    end
    if tv == "boolean" then return tostring(v) end
    if tv ~= "table" then error("config: a " .. tv .. " cannot be a setting", 0) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b)
        if type(a) == type(b) and type(a) ~= "boolean" then return a < b end
        return type(a) == "number"
    end)
    local inner = indent .. "  "
    local out = {}
    for _, k in ipairs(keys) do
        local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k
            or "[" .. lua_value(k, inner) .. "]"
        out[#out + 1] = inner .. key .. " = " .. lua_value(v[k], inner) .. ",\n"
    end
    return "{\n" .. concat(out) .. indent .. "}"
end

-- The config file for a table of settings, or nil, message.
local function config_file(settings)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    local keys = {}
    for k in pairs(settings) do
        if type(k) ~= "string" then
            f:close()
            os.remove(path)
            return nil, "config: settings are named by strings (limits = {...})"
        end
        keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
        local ok, text = pcall(lua_value, settings[k], "")
        if not ok then
            f:close()
            os.remove(path)
            return nil, text
        end
        f:write(k, " = ", text, "\n")
    end
    f:close()
    return path
end

-- ---- finding the app of a spec ---------------------------------------------------------------

local function exists(path)
    local f = io.open(path, "r")
    if f then f:close() end
    return f ~= nil
end

local function parent_of(dir)
    if dir == "/" then return nil end
    local last = dir:match("[^/]+$")
    if last == ".." then return dir .. "/.." end
    if dir == "." then return ".." end
    local parent = dir:match("^(.*)/[^/]+$")
    if parent == nil then return "." end
    return parent == "" and "/" or parent
end

-- The nearest folder holding app.lua at or above the folder of the spec file that called t.start
-- (through pcall or helpers too): NAME/ for the usual layout, NAME/app.lua with
-- NAME/spec/*_spec.lua.
local function app_of_spec()
    local here = debug.getinfo(1, "S").source
    local file
    for level = 2, 64 do
        local info = debug.getinfo(level, "S")
        if not info then break end
        if info.source ~= here and info.source:sub(1, 1) == "@" then
            file = info.source:sub(2)
            break
        end
    end
    local dir = file and (file:match("^(.*)/[^/]*$") or ".")
    for _ = 1, 32 do
        if not dir then break end
        if exists(dir .. "/app.lua") then return dir end
        dir = parent_of(dir)
    end
    return nil
end

-- ---- WebSocket frames ------------------------------------------------------------------------

local OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

-- payload masked with key (4 bytes), 8 bytes at a time.
local function mask(payload, key)
    local n = #payload
    local k4 = unpack("<I4", key)
    local k8 = k4 | (k4 << 32)
    local out, words = {}, n // 8
    for i = 0, words - 1 do
        out[i + 1] = pack("<i8", unpack("<i8", payload, i * 8 + 1) ~ k8)
    end
    local kb = { byte(key, 1, 4) }
    for i = words * 8 + 1, n do
        out[#out + 1] = char(byte(payload, i) ~ kb[(i - 1) % 4 + 1])
    end
    return concat(out)
end

-- A client's frame (masked, as RFC 6455 requires of clients), whole (FIN set).
local function client_frame(opcode, payload)
    local len = #payload
    local head
    if len < 126 then
        head = pack(">BB", 0x80 | opcode, 0x80 | len)
    elseif len < 65536 then
        head = pack(">BBI2", 0x80 | opcode, 0x80 | 126, len)
    else
        head = pack(">BBI8", 0x80 | opcode, 0x80 | 127, len)
    end
    local key = pack("<I4", math.random(0, 0xFFFFFFFF))
    return head .. key .. mask(payload, key)
end

-- ---- the client ------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

-- Sends bytes as the socket takes them; what it cannot take yet waits for the next turns.
function Client:_write(bytes)
    self.out[#self.out + 1] = bytes
    self:_flush()
end

-- Writes what waits, as far as the socket takes it. Returns true when something was written.
function Client:_flush()
    local moved = false
    while self.sock and #self.out > 0 do
        local chunk = self.out[1]
        local n = self.sock:write(chunk, self.out_pos)
        if not n then -- the server's end is gone
            self.out, self.out_pos = {}, 1
            return true
        end
        if n == 0 then break end
        moved = true
        self.out_pos = self.out_pos + n
        if self.out_pos > #chunk then
            table.remove(self.out, 1)
            self.out_pos = 1
        end
    end
    return moved
end

local function close_socket(self)
    if self.sock then
        self.sock:close()
        self.sock = nil
    end
    self.server.live[self] = nil
end

-- The close handshake is over (or the socket ended): the client is closed.
local function mark_closed(self, code, reason)
    if not self.closed then
        self.closed = true
        self.close_code = code
        self.close_reason = reason or ""
    end
end

function Client:_on_frame(opcode, fin, payload)
    if opcode == OP_TEXT or opcode == OP_BINARY then
        self.fragments = { payload }
        self.fragment_binary = opcode == OP_BINARY
    elseif opcode == OP_CONT and self.fragments then
        self.fragments[#self.fragments + 1] = payload
    elseif opcode == OP_CLOSE then
        local code, reason = 1005, ""
        if #payload >= 2 then code, reason = unpack(">I2", payload), payload:sub(3) end
        if not self.closing then
            -- The server closed first: answer as a browser does, then end our side.
            self.closing = true
            self:_write(client_frame(OP_CLOSE, #payload >= 2 and pack(">I2", code) or ""))
        end
        mark_closed(self, code, reason)
        if self.sock then self.sock:shutdown() end
        return
    elseif opcode == OP_PING then
        self:_write(client_frame(OP_PONG, payload))
        return
    elseif opcode == OP_PONG then
        return
    else
        error(("moonwire.test: the server sent a frame with opcode %d"):format(opcode))
    end
    if fin and self.fragments then
        local data = concat(self.fragments)
        self.inbox[#self.inbox + 1] = { data = data, binary = self.fragment_binary }
        self.fragments = nil
    end
end

-- Takes the whole frames at the start of the input.
function Client:_parse()
    local buf, pos = self.buf, self.pos
    while #buf - pos + 1 >= 2 do
        local b1, b2 = byte(buf, pos, pos + 1)
        local len, at = b2 & 0x7F, pos + 2
        if b2 & 0x80 ~= 0 then error("moonwire.test: the server sent a masked frame") end
        if len == 126 then
            if #buf - pos + 1 < 4 then break end
            len, at = unpack(">I2", buf, pos + 2), pos + 4
        elseif len == 127 then
            if #buf - pos + 1 < 10 then break end
            len, at = unpack(">I8", buf, pos + 2), pos + 10
        end
        if #buf - at + 1 < len then break end
        pos = at + len
        self:_on_frame(b1 & 0x0F, b1 & 0x80 ~= 0, buf:sub(at, at + len - 1))
    end
    if pos > #buf then
        self.buf, self.pos = "", 1
    else
        self.buf, self.pos = buf, pos
    end
end

-- Reads what arrived, writes what waits. Returns true when something moved.
function Client:_pump()
    if not self.sock then return false end
    local moved = self:_flush()
    local data = self.sock:read()
    if data == nil then -- the server closed the socket
        mark_closed(self, 1006, "")
        close_socket(self)
        return true
    end
    if #data > 0 then
        moved = true
        self.buf = self.pos > 1 and self.buf:sub(self.pos) .. data or self.buf .. data
        self.pos = 1
        if self.open then self:_parse() end
    end
    if self.sock then
        local unread = self.sock:unread()
        if unread ~= self.unread then
            self.unread = unread
            moved = true
        end
    end
    return moved
end

local function check_open(self, what)
    if self.closed or self.closing then
        error(("client:%s: the client is closed (close code %s)"):format(what,
            tostring(self.close_code)), 3)
    end
end

-- client:send(text): a text message; app.message runs.
function Client:send(text)
    if type(text) ~= "string" then error("client:send: the message must be a string", 2) end
    check_open(self, "send")
    self:_write(client_frame(OP_TEXT, text))
    self.server:settle()
end

-- client:send_binary(bytes): a binary message.
function Client:send_binary(bytes)
    if type(bytes) ~= "string" then error("client:send_binary: the message must be a string", 2) end
    check_open(self, "send_binary")
    self:_write(client_frame(OP_BINARY, bytes))
    self.server:settle()
end

-- client:send_json(value): value as JSON text (mw.json.encode).
function Client:send_json(value)
    check_open(self, "send_json")
    self:send(json.encode(value))
end

-- client:receive() -> data, is_binary: the next message the app sent this client, in order;
-- nil when there is none.
function Client:receive()
    local m = table.remove(self.inbox, 1)
    if not m then return nil end
    return m.data, m.binary
end

-- client:receive_json() -> the next message decoded as JSON (as mw.json.decode does); nil when
-- there is none. A message that is not JSON raises, naming it.
function Client:receive_json()
    local data = self:receive()
    if data == nil then return nil end
    local value, err = json.decode(data)
    if value == nil and err then
        error(("client:receive_json: the app sent something that is not JSON (%s): %q"):format(
            err, #data > 200 and data:sub(1, 200) .. "..." or data), 2)
    end
    return value
end

-- client:receive_all() -> every message waiting, as an array of strings (oldest first).
function Client:receive_all()
    local all = {}
    for i, m in ipairs(self.inbox) do all[i] = m.data end
    self.inbox = {}
    return all
end

-- client:close([code [, reason]]): the close handshake (default 1000); app.close runs.
function Client:close(code, reason)
    if self.closed or self.closing then return end
    code = code or 1000
    reason = reason or ""
    if math.type(code) ~= "integer" then error("client:close: the code must be an integer", 2) end
    self.closing = true
    self:_write(client_frame(OP_CLOSE, pack(">I2", code) .. reason))
    self.server:settle()
end

-- client:drop(): the socket goes away without a close handshake (a lost network); app.close
-- hears 1006.
function Client:drop()
    if not self.sock then return end
    mark_closed(self, 1006, "")
    close_socket(self)
    self.server:settle()
end

-- ---- the server ------------------------------------------------------------------------------

local Server = {}
Server.__index = Server

-- Turns the loop until nothing moves (two quiet turns in a row), running the app timers due now
-- (mw.after(0, fn)) as the server would in its next turn.
function Server:settle()
    local quiet = 0
    for _ = 1, MAX_TURNS do
        local busy = self.kit:turn()
        for client in pairs(self.live) do
            if client:_pump() then busy = true end
        end
        if busy then
            quiet = 0
        else
            quiet = quiet + 1
            if quiet >= 2 then
                if not self.kit:run_timer(self.kit:now()) then return end
                quiet = 0
            end
        end
    end
    error(("moonwire.test: the server was still busy after %d turns of its loop (a timer of 0 ms "
        .. "that keeps making another?)"):format(MAX_TURNS), 3)
end

-- A client on the socket sock of server: what it sends waits in out, what it receives in buf
-- (from pos on) until whole frames go to inbox.
local function new_client(server, sock)
    local client = setmetatable({
        server = server, sock = sock, out = {}, out_pos = 1, buf = "", pos = 1, inbox = {},
        open = false, closed = false, closing = false, unread = 0,
    }, Client)
    server.live[client] = true
    return client
end

local KEY = "dGhlIHNhbXBsZSBub25jZQ=="      -- RFC 6455's example key ...
local ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" -- ... and the answer it must get

local function query_string(q)
    if q == nil then return "" end
    if type(q) == "string" then return q end
    if type(q) ~= "table" then error("connect: query must be a string or a table", 3) end
    local keys, out = {}, {}
    for k in pairs(q) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local function esc(s)
        return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(byte(c)) end))
    end
    for _, k in ipairs(keys) do out[#out + 1] = esc(k) .. "=" .. esc(q[k]) end
    return concat(out, "&")
end

-- server:connect{path=, query=, headers=, protocols=, ip=} -> client, or nil, status, reason
-- when the upgrade is refused (app.upgrade, admission, origin...).
function Server:connect(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("server:connect: takes a table of options", 2) end
    local path = opts.path or "/"
    local query = query_string(opts.query)
    local headers = opts.headers or {}
    local sock, err = self.kit:connect(opts.ip or "127.0.0.1")
    if not sock then return nil, nil, err end
    local client = new_client(self, sock)

    local lines = { ("GET %s%s HTTP/1.1"):format(path, query ~= "" and "?" .. query or "") }
    local given = {}
    for name, value in pairs(headers) do
        given[name:lower()] = true
        lines[#lines + 1] = name .. ": " .. tostring(value)
    end
    local function default(name, value)
        if not given[name:lower()] then lines[#lines + 1] = name .. ": " .. value end
    end
    default("Host", "localhost")
    default("Upgrade", "websocket")
    default("Connection", "Upgrade")
    default("Sec-WebSocket-Key", KEY)
    default("Sec-WebSocket-Version", "13")
    if opts.protocols then
        default("Sec-WebSocket-Protocol", concat(opts.protocols, ", "))
    end
    client:_write(concat(lines, "\r\n") .. "\r\n\r\n")
    self:settle()

    local head_end = client.buf:find("\r\n\r\n", 1, true)
    if not head_end then
        close_socket(client)
        return nil, nil, "the server closed the connection without answering"
    end
    local head = client.buf:sub(1, head_end - 1)
    local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
    local fields = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        fields[name:lower()] = value
    end
    client.status, client.headers = status, fields
    client.buf, client.pos = client.buf, head_end + 4
    if status ~= 101 then
        local body = client.buf:sub(head_end + 4)
        local len = tonumber(fields["content-length"] or "")
        if len then body = body:sub(1, len) end
        close_socket(client)
        self:settle()
        return nil, status, (body:gsub("\n$", "")) -- the reason, as the app gave it
    end
    if fields["sec-websocket-accept"] ~= ACCEPT then
        error("moonwire.test: the server answered the upgrade with a wrong Sec-WebSocket-Accept")
    end
    client.protocol = fields["sec-websocket-protocol"]
    client.open = true
    client:_parse()
    return client
end

-- server:request{method=, path=, query=, headers=, body=, ip=} -> status, body, headers: a
-- plain HTTP request on its own connection (app.http, static files from public/, the 426 of a
-- WebSocket-only path), answered as the server answers it.
function Server:request(opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("server:request: takes a table of options", 2) end
    local body = opts.body or ""
    if type(body) ~= "string" then error("server:request: body must be a string", 2) end
    local sock, err = self.kit:connect(opts.ip or "127.0.0.1")
    if not sock then return nil, err end
    local client = new_client(self, sock)
    local query = query_string(opts.query)
    local lines = { ("%s %s%s HTTP/1.1"):format(opts.method or "GET", opts.path or "/",
        query ~= "" and "?" .. query or "") }
    local given = {}
    for name, value in pairs(opts.headers or {}) do
        given[name:lower()] = true
        lines[#lines + 1] = name .. ": " .. tostring(value)
    end
    if not given.host then lines[#lines + 1] = "Host: localhost" end
    if not given["content-length"] and (#body > 0 or opts.method and opts.method ~= "GET"
        and opts.method ~= "HEAD") then
        lines[#lines + 1] = "Content-Length: " .. #body
    end
    if not given.connection then lines[#lines + 1] = "Connection: close" end
    client:_write(concat(lines, "\r\n") .. "\r\n\r\n" .. body)
    self:settle()
    local data = client.buf
    close_socket(client)
    self:settle()
    local head_end = data:find("\r\n\r\n", 1, true)
    if not head_end then return nil, "the server closed the connection without answering" end
    local head = data:sub(1, head_end - 1)
    local fields = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
        fields[name:lower()] = value
    end
    local content = data:sub(head_end + 4)
    local len = tonumber(fields["content-length"] or "")
    if len then content = content:sub(1, len) end
    return tonumber(head:match("^HTTP/1%.1 (%d%d%d)")), content, fields
end

-- server:advance(ms): moves the virtual clock ms milliseconds on, running every app timer
-- (mw.after, mw.every) that comes due on the way, in order, each at its time.
function Server:advance(ms)
    if type(ms) ~= "number" or not (ms >= 0) or ms == math.huge then
        error("server:advance: ms must be a number of milliseconds, 0 or more", 2)
    end
    local target = self.kit:now() + ms / 1000
    self:settle()
    while self.kit:run_timer(target) do self:settle() end
    self.kit:set_now(target)
    self:settle()
end

-- server:now() -> the virtual clock, in seconds: what mw.now returns to the app.
function Server:now() return self.kit:now() end

-- server:reload(): what SIGHUP does: the app's code is loaded again; connections stay.
function Server:reload()
    self.kit:reload()
    self:settle()
end

-- server:log([from]) -> the lines the server logged (from the from-th on), each
-- "LEVEL text": "error app ...: message handler failed ...".
function Server:log(from) return self.kit:log(from) end

-- server:logged(pattern) -> the first line logged that matches the Lua pattern, or nil.
function Server:logged(pattern)
    for _, line in ipairs(self.kit:log()) do
        if line:find(pattern) then return line end
    end
    return nil
end

-- server:connections() -> how many connections the server holds.
function Server:connections() return self.kit:connections() end

-- server:timers() -> how many app timers are pending (mw.after, mw.every).
function Server:timers() return self.kit:timers() end

-- ---- outbound calls ----------------------------------------------------------------------
-- A spec answers the app's outbound calls (mw.http.request) with stubs, never with the
-- network: the call crosses into this state as (kind, request as JSON) and gets
-- server:_outbound's answer back as JSON (core/testkit.c, kit_outbound).

-- server:stub(kind, fn): fn(request) answers the app's outbound calls of kind ("http"): it
-- gets the table the app gave mw.http.request and returns what the app's call returns, a
-- response { status =, headers =, body = } or nil, reason [, detail]. fn nil removes it.
function Server:stub(kind, fn)
    if type(kind) ~= "string" then error("server:stub: kind must be a string (\"http\")", 2) end
    if fn ~= nil and type(fn) ~= "function" then
        error("server:stub: the stub must be a function (or nil to remove it)", 2)
    end
    self.stubs[kind] = fn
end

-- The answer of kind's stub to request. Raises, naming what to do, when the spec set none: an
-- app under test never reaches the network.
function Server:_outbound(kind, request)
    local fn = self.stubs[kind]
    if not fn then
        error(("the app made an outbound %s call and the spec set no stub for it: "
            .. "server:stub(%q, function(request) return response end)"):format(kind, kind), 0)
    end
    return fn(request)
end

-- server:stop(): every connection is dropped (the app hears its closes), then the app.
function Server:stop()
    for client in pairs(self.live) do
        mark_closed(client, 1006, "")
        close_socket(client)
    end
    self.kit:stop()
end

-- ---- t.start ---------------------------------------------------------------------------------

-- t.start([app] [, {config = settings | "file.conf.lua", log_level = "info"}]) -> server.
-- app: a folder holding app.lua, or a Lua file; by default the folder above the calling spec
-- that holds app.lua. config: settings as a config file sets them (limits, sandbox, origins,
-- require_origin, log), checked as the server checks them. Raises when the app does not load.
function M.start(app, opts)
    if type(app) == "table" and opts == nil then app, opts = nil, app end
    opts = opts or {}
    if app == nil then
        app = app_of_spec()
        if not app then
            error("t.start: no app given, and no app.lua in a folder above this spec", 2)
        end
    end
    if type(app) ~= "string" then error("t.start: app must be a path", 2) end
    local file, tmp
    if type(opts.config) == "string" then
        file = opts.config
    elseif type(opts.config) == "table" then
        local err
        tmp, err = config_file(opts.config)
        if not tmp then error("t.start: " .. err, 2) end
        file = tmp
    elseif opts.config ~= nil then
        error("t.start: config must be a table of settings or a config file's path", 2)
    end
    local server
    local function outbound(kind, request)
        local res, reason, detail = server:_outbound(kind, json.decode(request))
        if res ~= nil then
            if type(res) ~= "table" then
                error("the " .. kind .. " stub returned a " .. type(res) .. "; return a response"
                      .. " table { status =, headers =, body = } or nil, reason", 0)
            end
            return json.encode { res = res }
        end
        return json.encode { err = reason or "stubbed", detail = detail or "" }
    end
    local k, err = kit.new(app, file, opts.log_level, outbound)
    if tmp then os.remove(tmp) end
    if not k then
        if tmp then err = err:gsub(tmp:gsub("%p", "%%%0"), "config") end
        error("t.start: " .. err, 2)
    end
    server = setmetatable({ kit = k, live = {}, stubs = {} }, Server)
    server:settle()
    return server
end

return M
