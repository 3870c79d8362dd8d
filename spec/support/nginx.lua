-- Starts Debian's nginx for a spec: on ephemeral loopback ports, from a folder of its own, in
-- the foreground of a background shell, stopped (and its folder removed) by stop().
--
--   local ng = nginx.start { files = { ["x.txt"] = "hello" }, tls = true }
--   ng.port, ng.tls_port, ng.ca (the certificate to trust), ng.root, ng:connections()
--
-- Every request is logged with the serial number of the connection it came on
-- ($connection), so a spec can count the connections a client opened.
local socket = require "socket"
local helpers = require "helpers"
local server = require "server"

local M = {}
local nginx = {}
nginx.__index = nginx

local shell_quote, write_file, read_file = helpers.shell_quote, helpers.write_file,
                                           helpers.read_file

-- A loopback port nothing listens on now (the kernel's choice).
function M.free_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

local BIN = "/usr/sbin/nginx"

-- opts: files (name -> content, served from the root), big (name -> size for sparse files),
-- tls (also listen with TLS, a certificate for "localhost" only, made here), extra (text in
-- the server blocks), http_extra (text in the http block: upstreams, servers of its own).
function M.start(opts)
    opts = opts or {}
    local dir = server.tmpdir()
    local self = setmetatable({ dir = dir, root = dir .. "/www", port = M.free_port() }, nginx)
    os.execute("mkdir -p " .. shell_quote(self.root) .. " " .. shell_quote(dir .. "/tmp") ..
               " && chmod 755 " .. shell_quote(dir) .. " " .. shell_quote(self.root))
    for name, text in pairs(opts.files or {}) do write_file(self.root .. "/" .. name, text) end
    for name, size in pairs(opts.big or {}) do
        os.execute("truncate -s " .. size .. " " .. shell_quote(self.root .. "/" .. name))
    end
    local tls = ""
    if opts.tls then
        self.tls_port = M.free_port()
        self.ca = dir .. "/cert.pem"
        local key = dir .. "/key.pem"
        assert(os.execute("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 " ..
            "-nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost -keyout " ..
            shell_quote(key) .. " -out " .. shell_quote(self.ca) .. " 2>/dev/null"))
        tls = string.format([[
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        root %s;
        %s
    }]], self.tls_port, self.ca, key, self.root, opts.extra or "")
    end
    local t = dir .. "/tmp/"
    write_file(dir .. "/nginx.conf", string.format([[
worker_processes 1;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 8192; }
http {
    log_format conn '$connection $connection_requests $request_uri $status';
    access_log %s/access.log conn;
    client_body_temp_path %sbody;
    proxy_temp_path %sproxy;
    fastcgi_temp_path %sfastcgi;
    uwsgi_temp_path %suwsgi;
    scgi_temp_path %sscgi;
    keepalive_requests 100000;
    keepalive_timeout 60;
    default_type text/plain;
    server {
        listen 127.0.0.1:%d;
        root %s;
        location = /slow { limit_rate 2k; }
        location = /method { return 200 "$request_method $http_x_test $content_length"; }
        %s
    }
%s
%s
}
]], dir, dir, dir, t, t, t, t, t, self.port, self.root, opts.extra or "", tls,
    opts.http_extra or ""))
    local script = string.format("%s -e %s -p %s -c %s >%s 2>&1 </dev/null & echo $!; wait",
        BIN, shell_quote(dir .. "/error.log"), shell_quote(dir), shell_quote(dir .. "/nginx.conf"),
        shell_quote(dir .. "/stdout.log"))
    self.pipe = io.popen("sh -c " .. shell_quote(script))
    self.pid = tonumber(self.pipe:read("l"))
    -- Ready once it answers.
    local deadline = socket.gettime() + 10
    repeat
        local c = socket.tcp()
        c:settimeout(0.2)
        local ok = c:connect("127.0.0.1", self.port)
        c:close()
        if ok then return self end
        socket.sleep(0.02)
    until socket.gettime() > deadline
    error("nginx did not start:\n" .. (read_file(dir .. "/error.log") or "") ..
          (read_file(dir .. "/stdout.log") or ""))
end

-- The connections requests came on (their serial numbers), for requests whose URI matches.
function nginx:connections(uri_pattern)
    local seen, n = {}, 0
    for line in (read_file(self.dir .. "/access.log") or ""):gmatch("[^\n]+") do
        local conn, uri = line:match("^(%d+) %d+ (%S+)")
        if conn and (not uri_pattern or uri:match(uri_pattern)) and not seen[conn] then
            seen[conn] = true
            n = n + 1
        end
    end
    return n
end

-- Requests logged whose URI matches.
function nginx:requests(uri_pattern)
    local n = 0
    for line in (read_file(self.dir .. "/access.log") or ""):gmatch("[^\n]+") do
        local uri = line:match("^%d+ %d+ (%S+)")
        if uri and uri:match(uri_pattern) then n = n + 1 end
    end
    return n
end

function nginx:stop()
    os.execute("kill -QUIT " .. self.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while socket.gettime() < deadline and os.execute("kill -0 " .. self.pid .. " 2>/dev/null") do
        socket.sleep(0.02)
    end
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
    if self.pipe then self.pipe:close() end
    server.remove(self.dir)
end

return M
