-- A raw-frame WebSocket client for specs, over LuaSocket.
--
-- Unlike a browser or a library client, it sends exactly what a test asks for: unmasked frames,
-- reserved bits, bad lengths, fragments with pings between them, bytes one at a time. It also
-- checks the server's side of the handshake (the accept key) itself.
local socket = require "socket"
local mime = require "mime"
local sha1 = require "sha1"

local M = {}
local client = {}
client.__index = client

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
M.DEFAULT_TIMEOUT = 5

M.op = { continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10 }

local function random_bytes(n)
    local t = {}
    for i = 1, n do t[i] = string.char(math.random(0, 255)) end
    return table.concat(t)
end

-- XOR data with a 4-byte mask, eight bytes at a time (64-bit integers).
function M.mask(data, key)
    if key == "\0\0\0\0" then return data end
    local k8 = string.unpack("<i8", key .. key)
    local out, n = {}, #data
    local i = 1
    while i + 7 <= n do
        out[#out + 1] = string.pack("<i8", string.unpack("<i8", data, i) ~ k8)
        i = i + 8
    end
    for j = i, n do
        local kb = key:byte((j - 1) % 4 + 1)
        out[#out + 1] = string.char(data:byte(j) ~ kb)
    end
    return table.concat(out)
end

-- Builds one frame. f: opcode, payload, fin (default true), rsv (bits 0..7 as in RSV1=4, RSV2=2,
-- RSV3=1), masked (default true), key (4 bytes), len_size (force 0, 2 or 8 extended length
-- bytes), len (claim this payload length instead of #payload).
function M.frame(f)
    local payload = f.payload or ""
    local fin = f.fin ~= false
    local b0 = (fin and 0x80 or 0) | ((f.rsv or 0) << 4) | (f.opcode or M.op.text)
    local len = f.len or #payload
    local size = f.len_size or (len < 126 and 0 or len < 65536 and 2 or 8)
    local mbit = f.masked == false and 0 or 0x80
    local hdr
    if size == 0 then
        hdr = string.char(b0, mbit | len)
    elseif size == 2 then
        hdr = string.char(b0, mbit | 126) .. string.pack(">I2", len)
    else
        hdr = string.char(b0, mbit | 127) .. string.pack(">i8", len)
    end
    if f.masked == false then return hdr .. payload end
    local key = f.key or random_bytes(4)
    return hdr .. key .. M.mask(payload, key)
end

-- Parses an HTTP response head. Returns { status, reason, headers (lower-case names) }.
local function parse_head(head)
    local status_line, rest = head:match("^(.-)\r\n(.*)$")
    local status, reason = (status_line or head):match("^HTTP/1%.1 (%d%d%d) ?(.*)$")
    local headers = {}
    for name, value in (rest or ""):gmatch("([^:\r\n]+):[ \t]*([^\r\n]*)\r\n") do
        headers[name:lower()] = value
    end
    return { status = tonumber(status), reason = reason, headers = headers }
end

local function connect_tcp(port, host, timeout, source)
    local sock = socket.tcp()
    if source then
        local ok, err = sock:bind(source, 0)
        if not ok then
            sock:close()
            return nil, "bind " .. source .. ": " .. tostring(err)
        end
    end
    sock:settimeout(timeout or M.DEFAULT_TIMEOUT)
    local ok, err = sock:connect(host or "127.0.0.1", port)
    if not ok then return nil, err end
    sock:setoption("tcp-nodelay", true)
    return sock
end

-- Sends raw bytes as an HTTP request and reads the whole answer until the server closes.
-- Returns { status, reason, headers, body, closed }.
function M.http(port, request, opts)
    opts = opts or {}
    local sock, err = connect_tcp(port, opts.host, opts.timeout)
    if not sock then return nil, err end
    local ok, serr = sock:send(request)
    if not ok and serr ~= "closed" then return nil, serr end
    local data, rerr, partial = sock:receive("*a")
    sock:close()
    data = data or partial
    local head, body = data:match("^(.-\r\n)\r\n(.*)$")
    if not head then return { raw = data, err = rerr } end
    local resp = parse_head(head)
    resp.body = body
    resp.raw = data
    return resp
end

-- Builds an upgrade request. opts: path, host, key, version, protocols (list), origin,
-- headers (list of "Name: value" lines), method.
function M.request(opts)
    local lines = {
        string.format("%s %s HTTP/1.1", opts.method or "GET", opts.path or "/"),
        "Host: " .. (opts.host or "127.0.0.1"),
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: " .. opts.key,
        "Sec-WebSocket-Version: " .. (opts.version or "13"),
    }
    if opts.protocols then
        lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(opts.protocols, ", ")
    end
    if opts.origin then lines[#lines + 1] = "Origin: " .. opts.origin end
    for _, h in ipairs(opts.headers or {}) do lines[#lines + 1] = h end
    return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

function M.accept_for(key)
    return (mime.b64(sha1.binary(key .. GUID)))
end

-- Opens a WebSocket. Returns a client, or nil, err, response (for a refused handshake the
-- response holds status, headers and body). opts as for M.request, plus timeout, extra (bytes
-- sent right behind the request, in the same write), source (a loopback address to connect
-- from, such as "127.0.0.7") and address (the address to connect to; default 127.0.0.1).
function M.connect(port, opts)
    opts = opts or {}
    local sock, err = connect_tcp(port, opts.address, opts.timeout, opts.source)
    if not sock then return nil, err end
    local key = opts.key or mime.b64(random_bytes(16))
    local req = M.request(setmetatable({ key = key }, { __index = opts }))
    sock:send(req .. (opts.extra or ""))
    local lines = {}
    while true do
        local line, rerr = sock:receive("*l")
        if not line then
            sock:close()
            return nil, "handshake: " .. tostring(rerr), parse_head(table.concat(lines, "\r\n"))
        end
        if line == "" then break end
        lines[#lines + 1] = line
    end
    local resp = parse_head(table.concat(lines, "\r\n") .. "\r\n")
    if resp.status ~= 101 then
        local len = tonumber(resp.headers["content-length"] or 0)
        resp.body = len > 0 and sock:receive(len) or ""
        sock:close()
        return nil, "refused with " .. tostring(resp.status), resp
    end
    if resp.headers["sec-websocket-accept"] ~= M.accept_for(key) then
        sock:close()
        return nil, "bad Sec-WebSocket-Accept", resp
    end
    return setmetatable({ sock = sock, response = resp, timeout = opts.timeout, buf = "" }, client)
end

-- Splits "ws://host:port/path?query" into host, port (default 80) and path (default "/").
-- Returns nil for anything else (wss:// included: this client speaks plain TCP only).
function M.parse_url(url)
    local host, port, path = url:match("^ws://([^/:]+):(%d+)(/?.*)$")
    if not host then
        host, path = url:match("^ws://([^/:]+)(/?.*)$")
        port = host and 80
    end
    if not host then return nil end
    return host, tonumber(port), path ~= "" and path or "/"
end

-- Opens the WebSocket at url (ws://host:port/path), as M.connect does with the address, Host
-- header and path taken from the url (opts may still override them).
function M.connect_url(url, opts)
    local host, port, path = M.parse_url(url)
    if not host then return nil, "not a ws:// url: " .. tostring(url) end
    local merged = { address = host, host = host .. ":" .. port, path = path }
    for k, v in pairs(opts or {}) do merged[k] = v end
    return M.connect(port, merged)
end

function client:send_raw(bytes)
    local ok, err = self.sock:send(bytes)
    if not ok then return nil, err end
    return true
end

function client:send_frame(f) return self:send_raw(M.frame(f)) end
function client:send_text(s) return self:send_frame { opcode = M.op.text, payload = s } end
function client:send_binary(s) return self:send_frame { opcode = M.op.binary, payload = s } end
function client:ping(s) return self:send_frame { opcode = M.op.ping, payload = s or "" } end

function client:send_close(code, reason)
    local payload = code and (string.pack(">I2", code) .. (reason or "")) or ""
    return self:send_frame { opcode = M.op.close, payload = payload }
end

-- Reads exactly n bytes. On a timeout the bytes read so far stay in self.buf for the next
-- call (LuaSocket hands partial data back only once).
local function read_exact(self, n, timeout)
    local deadline = socket.gettime() + (timeout or self.timeout or M.DEFAULT_TIMEOUT)
    local buf = self.buf or ""
    while #buf < n do
        local left = deadline - socket.gettime()
        if left <= 0 then
            self.buf = buf
            return nil, "timeout"
        end
        self.sock:settimeout(left)
        local data, err, partial = self.sock:receive(n - #buf)
        buf = buf .. (data or partial or "")
        if not data and err ~= "timeout" then
            self.buf = buf
            return nil, err
        end
    end
    self.buf = buf:sub(n + 1)
    return buf:sub(1, n)
end

-- Reads one frame. Returns { fin, rsv, opcode, masked, payload }, or nil, "timeout" / "closed".
function client:recv_frame(timeout)
    -- Peek the whole header before consuming it, so a timeout never splits a frame.
    local h, err = read_exact(self, 2, timeout)
    if not h then return nil, err end
    local b0, b1 = h:byte(1, 2)
    local len7 = b1 & 0x7F
    local ext = len7 == 126 and 2 or len7 == 127 and 8 or 0
    local mlen = b1 & 0x80 ~= 0 and 4 or 0
    local rest, rerr = read_exact(self, ext + mlen, timeout)
    if not rest then
        self.buf = h .. self.buf
        return nil, rerr
    end
    local len = ext == 2 and string.unpack(">I2", rest) or ext == 8 and string.unpack(">i8", rest)
        or len7
    local key = mlen > 0 and rest:sub(ext + 1) or nil
    local payload, perr = read_exact(self, len, timeout)
    if not payload then
        self.buf = h .. rest .. self.buf
        return nil, perr
    end
    if key then payload = M.mask(payload, key) end
    return {
        fin = b0 & 0x80 ~= 0,
        rsv = (b0 >> 4) & 7,
        opcode = b0 & 0x0F,
        masked = b1 & 0x80 ~= 0,
        payload = payload,
    }
end

-- Reads a whole data message, answering nothing and skipping pongs. Returns payload, opcode;
-- for a close frame: nil, "close", code, reason; or nil, "timeout" / "closed". Fragments read
-- before a timeout are kept for the next call, so polling with short timeouts loses nothing.
-- Frames of any size are read (the 64-bit length included); the whole payload is held in
-- memory.
function client:recv_message(timeout)
    local parts, opcode = self.fragments or {}, self.fragments_opcode
    self.fragments, self.fragments_opcode = nil, nil
    while true do
        local f, err = self:recv_frame(timeout)
        if not f then
            if err == "timeout" and #parts > 0 then
                self.fragments, self.fragments_opcode = parts, opcode
            end
            return nil, err
        end
        if f.opcode == M.op.close then
            local code = #f.payload >= 2 and string.unpack(">I2", f.payload) or nil
            return nil, "close", code, f.payload:sub(3)
        elseif f.opcode == M.op.pong or f.opcode == M.op.ping then -- luacheck: ignore
        else
            opcode = opcode or f.opcode
            parts[#parts + 1] = f.payload
            if f.fin then return table.concat(parts), opcode end
        end
    end
end

-- Sends a message and returns the echo (for echo-app specs).
function client:echo(data, binary)
    if binary then self:send_binary(data) else self:send_text(data) end
    return self:recv_message()
end

-- Waits for the server's close frame. Returns code (nil for an empty close), reason, and the
-- frames of other kinds that came before it.
function client:expect_close(timeout)
    local others = {}
    while true do
        local f, err = self:recv_frame(timeout)
        if not f then return nil, err, others end
        if f.opcode == M.op.close then
            local code = #f.payload >= 2 and string.unpack(">I2", f.payload) or nil
            return code, f.payload:sub(3), others
        end
        others[#others + 1] = f
    end
end

-- True when the server closes the TCP connection within timeout (reads and drops any bytes).
function client:wait_tcp_close(timeout)
    local deadline = socket.gettime() + (timeout or M.DEFAULT_TIMEOUT)
    self.buf = ""
    while socket.gettime() < deadline do
        self.sock:settimeout(deadline - socket.gettime())
        local _, err, partial = self.sock:receive(4096)
        if err == "closed" then return true end
        if err == "timeout" and (not partial or #partial == 0) then return false end
    end
    return false
end

-- Full close handshake from the client side. Returns the server's code and reason, and
-- whether the server then closed TCP.
function client:close(code, reason)
    self:send_close(code or 1000, reason)
    local rcode, rreason = self:expect_close()
    local closed = self:wait_tcp_close(2)
    self.sock:close()
    return rcode, rreason, closed
end

function client:abort() self.sock:close() end

return M
