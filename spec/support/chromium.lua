-- Headless Chromium for specs, driven over the DevTools protocol with our own ws_client.
--
-- A spec opens a page, loads a URL, runs JavaScript in it, resizes it, takes screenshots and
-- reads back what the page logged as an error. Every wait is bounded; stop() leaves nothing
-- behind (the browser runs in its own process group, with a throwaway profile folder).
--
--   local chromium = require "chromium"
--   if not chromium.available() then pending("no chromium") return end
--   local b = chromium.start()                 -- raises with the reason when it cannot start
--   local page = b:new_page()                  -- a fresh tab; Runtime, Page and Log enabled
--   page:navigate("http://127.0.0.1:8080/")    -- returns after the load event
--   page:eval("document.title")                -- the value (JSON-like, as a Lua value)
--   page:wait_for("window.ready === true", 5)  -- polls until truthy; returns the value
--   page:set_viewport(390, 844, 3, true)       -- width, height (CSS px), DPR, mobile
--   page:screenshot("/tmp/x.png")              -- PNG of the viewport ({ full_page = true })
--   page:errors()                              -- list of error texts the page produced
--   page:call("Emulation.setEmulatedMedia", { features = { ... } })  -- any DevTools method
--   b:stop()
--
-- Options of chromium.start: bin (default $CHROMIUM, else chromium, chromium-browser,
-- google-chrome on PATH), args (extra command-line flags), timeout (seconds to wait for the
-- DevTools endpoint, default 20), call_timeout (default for each protocol call, default 10).
--
-- Values: page:eval returns what JSON.stringify would give, decoded by lua-cjson: objects and
-- arrays become tables, numbers are floats, undefined is nil, and a null inside an object or
-- array is cjson.null. An exception thrown (or a promise rejected) raises a Lua error that
-- holds its description.
--
-- Errors (page:errors): console.error and console.assert calls, uncaught exceptions and
-- unhandled rejections, and the browser's own error entries (Log.entryAdded), which include
-- every failed resource load ("Failed to load resource: ... 404 (Not Found)") and failed
-- WebSocket connections, each followed by its URL. page:console() has every console message
-- with its level, for diagnostics.
--
-- Events: page:on(method, fn) calls fn(params) for each event of that method received while
-- the page is driven (during calls and waits); page:wait_event(method, timeout, pred) waits for
-- the next one (pred optional) and returns its params.
local cjson = require("cjson").new()
local mime = require "mime"
local socket = require "socket"
local ws = require "ws_client"
local helpers = require "helpers"

local M = {}
local browser = {}
browser.__index = browser
local page = {}
page.__index = page

M.DEFAULT_CALL_TIMEOUT = 10
M.DEFAULT_START_TIMEOUT = 20

local shell_quote = helpers.shell_quote
local read_file = helpers.read_file


local function command_path(name)
    local p = io.popen("command -v " .. shell_quote(name) .. " 2>/dev/null")
    local path = p:read("l")
    p:close()
    return path ~= "" and path or nil
end

-- The browser binary: opts.bin, $CHROMIUM, or the first of the usual names on PATH. Returns
-- the path, or nil and why not.
function M.available(opts)
    local want = (opts and opts.bin) or os.getenv("CHROMIUM")
    if want then
        local path = command_path(want)
        if path then return path end
        return nil, "chromium: " .. want .. " is not an executable"
    end
    for _, name in ipairs { "chromium", "chromium-browser", "google-chrome" } do
        local path = command_path(name)
        if path then return path end
    end
    return nil, "chromium: no browser found (install the Debian package chromium, or set "
        .. "CHROMIUM to its path)"
end

-- One HTTP request to the DevTools endpoint. Returns the decoded JSON body (or the body as
-- it is, when it is not JSON). The endpoint keeps the connection open, so the body is read by
-- its Content-Length.
local function devtools_http(self, method, path)
    local function fail(why) error("chromium: " .. method .. " " .. path .. ": " .. why, 3) end
    local sock = socket.tcp()
    sock:settimeout(self.call_timeout)
    local ok, err = sock:connect("127.0.0.1", self.port)
    if not ok then sock:close() fail(tostring(err)) end
    sock:send(string.format("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
        method, path, self.port))
    local status, length, line = nil, nil, nil
    repeat
        line, err = sock:receive("*l")
        if not line then sock:close() fail(tostring(err)) end
        status = status or tonumber(line:match("^HTTP/1%.%d (%d+)"))
        length = length or tonumber(line:lower():match("^content%-length:%s*(%d+)"))
    until line == ""
    local body = length and length > 0 and sock:receive(length) or ""
    sock:close()
    if status ~= 200 then fail("answered " .. tostring(status) .. ": " .. tostring(body)) end
    local decoded_ok, value = pcall(cjson.decode, body or "")
    return decoded_ok and value or body
end

-- Starts a headless browser. Returns it; raises with the reason (and the browser's stderr)
-- when it is missing or does not come up within opts.timeout seconds.
function M.start(opts)
    opts = opts or {}
    local bin, why = M.available(opts)
    if not bin then error(why, 2) end
    local p = io.popen("mktemp -d /tmp/moonwire-chromium.XXXXXX")
    local dir = p:read("l")
    p:close()
    assert(dir and dir:match("^/tmp/moonwire%-chromium%."), "mktemp failed")
    local self = setmetatable({
        dir = dir, profile = dir .. "/profile", stderr_path = dir .. "/stderr",
        status_path = dir .. "/status", pages = {},
        call_timeout = opts.call_timeout or M.DEFAULT_CALL_TIMEOUT,
    }, browser)
    local argv = { bin, "--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--remote-debugging-port=0",
        "--user-data-dir=" .. self.profile, "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--metrics-recording-only", "--password-store=basic", "--use-mock-keychain",
        "--hide-scrollbars", "--mute-audio" }
    for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
    argv[#argv + 1] = "about:blank"
    local quoted = {}
    for i, a in ipairs(argv) do quoted[i] = shell_quote(a) end
    -- setsid puts the browser and every process it forks (zygote, renderers, GPU, crashpad)
    -- in a process group of their own, so stop() can end all of them by the group's id. The
    -- shell waits for it and records its exit status, as spec/support/server.lua does.
    local script = string.format(
        "setsid %s >/dev/null 2>%s </dev/null & echo $!; wait $!; echo $? >%s",
        table.concat(quoted, " "), shell_quote(self.stderr_path), shell_quote(self.status_path))
    self.pipe = io.popen("sh -c " .. shell_quote(script) .. " 2>/dev/null")
    self.pid = tonumber(self.pipe:read("l"))

    local deadline = socket.gettime() + (opts.timeout or M.DEFAULT_START_TIMEOUT)
    while true do
        local err = read_file(self.stderr_path) or ""
        local url = err:match("DevTools listening on (ws://%S+)")
        if url then
            self.browser_url = url
            self.port = tonumber(url:match("^ws://[^/]-:(%d+)/"))
            break
        end
        if read_file(self.status_path) or socket.gettime() > deadline then
            local exited = read_file(self.status_path) ~= nil
            self:stop()
            error((exited and "chromium exited at start" or "chromium did not open its "
                .. "DevTools endpoint in time") .. ":\n" .. err:sub(-3000), 2)
        end
        socket.sleep(0.02)
    end
    return self
end

-- Whether the browser process is still running.
function browser:running()
    return self.pid ~= nil and read_file(self.status_path) == nil
end

-- Opens a new tab and connects to it. Returns the page.
function browser:new_page()
    local target = devtools_http(self, "PUT", "/json/new?about:blank")
    if type(target) ~= "table" or not target.webSocketDebuggerUrl then
        error("chromium: /json/new gave no webSocketDebuggerUrl: " .. tostring(target), 2)
    end
    local conn, err = ws.connect_url(target.webSocketDebuggerUrl, { timeout = self.call_timeout })
    if not conn then error("chromium: cannot connect to the page: " .. tostring(err), 2) end
    local pg = setmetatable({
        browser = self, id = target.id, conn = conn, next_id = 0, results = {},
        handlers = {}, console_messages = {}, error_texts = {},
        call_timeout = self.call_timeout,
    }, page)
    self.pages[#self.pages + 1] = pg
    pg:on("Runtime.consoleAPICalled", function(p) pg:_console(p) end)
    pg:on("Runtime.exceptionThrown", function(p) pg:_exception(p) end)
    pg:on("Log.entryAdded", function(p) pg:_log_entry(p) end)
    pg:on("Page.loadEventFired", function() pg.loaded = true end)
    pg:call("Runtime.enable")
    pg:call("Page.enable")
    pg:call("Log.enable")
    return pg
end

-- Ends the browser and every process it started, and removes its profile. Safe to call twice.
function browser:stop()
    for _, pg in ipairs(self.pages) do
        if pg.conn then pcall(pg.conn.abort, pg.conn) pg.conn = nil end
    end
    self.pages = {}
    if self.pid then
        -- The whole group: a renderer that outlived the browser would keep the profile busy.
        -- Alive: any process of the group that is not a zombie (init reaps those in its own
        -- time; they hold no memory, ports or files).
        local function group_alive()
            local p = io.popen("ps -e -o pgid=,stat= 2>/dev/null")
            local out = p:read("a")
            p:close()
            for pgid, stat in out:gmatch("(%d+)%s+(%S+)") do
                if tonumber(pgid) == self.pid and not stat:match("^Z") then return true end
            end
            return false
        end
        local function wait_gone(seconds)
            local deadline = socket.gettime() + seconds
            while group_alive() do
                if socket.gettime() > deadline then return false end
                socket.sleep(0.02)
            end
            return true
        end
        -- SIGKILL at once: the profile is thrown away, so nothing needs saving, and a polite
        -- SIGTERM or Browser.close costs one to two seconds per spec.
        os.execute("kill -KILL -" .. self.pid .. " 2>/dev/null")
        wait_gone(5)
        local deadline = socket.gettime() + 5
        while not read_file(self.status_path) and socket.gettime() < deadline do
            socket.sleep(0.02)
        end
        self.pid = nil
    end
    if self.pipe then self.pipe:close() self.pipe = nil end
    if self.dir then
        os.execute("rm -rf " .. shell_quote(self.dir))
        self.dir = nil
    end
end

-- ---- a page ----------------------------------------------------------------------------------

local function remote_text(obj)
    if obj == nil then return "" end
    if obj.type == "string" then return obj.value end
    if obj.type == "number" and type(obj.value) == "number" then
        return string.format("%.14g", obj.value)
    end
    if obj.value ~= nil and obj.value ~= cjson.null then return tostring(obj.value) end
    return obj.description or obj.unserializableValue or obj.type or "?"
end

function page:_console(p)
    local parts = {}
    for i, arg in ipairs(p.args or {}) do parts[i] = remote_text(arg) end
    local text = table.concat(parts, " ")
    self.console_messages[#self.console_messages + 1] = { level = p.type, text = text }
    if p.type == "error" or p.type == "assert" then
        local frame = p.stackTrace and p.stackTrace.callFrames and p.stackTrace.callFrames[1]
        if frame and frame.url and frame.url ~= "" then
            text = string.format("%s (%s:%d)", text, frame.url, math.floor(frame.lineNumber + 1))
        end
        self.error_texts[#self.error_texts + 1] = "console." .. p.type .. ": " .. text
    end
end

function page:_exception(p)
    local d = p.exceptionDetails or {}
    local text = d.exception and d.exception.description or d.text or "exception"
    if d.url and d.url ~= "" then
        text = string.format("%s (%s:%d)", text, d.url, math.floor((d.lineNumber or 0) + 1))
    end
    self.error_texts[#self.error_texts + 1] = "uncaught: " .. text
end

function page:_log_entry(p)
    local e = p.entry or {}
    self.console_messages[#self.console_messages + 1] = { level = e.level, text = e.text }
    if e.level == "error" then
        local text = e.text or "?"
        if e.url and e.url ~= "" then text = text .. " (" .. e.url .. ")" end
        self.error_texts[#self.error_texts + 1] = (e.source or "browser") .. ": " .. text
    end
end

-- Registers fn(params) for every event named method. Returns fn (to pass to off).
function page:on(method, fn)
    local list = self.handlers[method]
    if not list then
        list = {}
        self.handlers[method] = list
    end
    list[#list + 1] = fn
    return fn
end

function page:off(method, fn)
    for i, f in ipairs(self.handlers[method] or {}) do
        if f == fn then table.remove(self.handlers[method], i) return end
    end
end

-- Reads and dispatches one message, waiting until deadline (a socket.gettime() value).
-- Returns true when one was read, false on timeout; raises when the connection ended.
function page:_pump(deadline)
    if not self.conn then error("chromium: the page is closed", 3) end
    local left = math.max(deadline - socket.gettime(), 0.001)
    local data, err = self.conn:recv_message(left)
    if not data then
        if err == "timeout" then return false end
        error("chromium: the DevTools connection ended: " .. tostring(err), 3)
    end
    local msg = cjson.decode(data)
    if msg.id then
        self.results[math.floor(msg.id)] = msg
    elseif msg.method then
        for _, fn in ipairs(self.handlers[msg.method] or {}) do fn(msg.params or {}) end
    end
    return true
end

-- Calls a DevTools method (https://chromedevtools.github.io/devtools-protocol/) and returns its
-- result table; raises with the protocol's error, or after timeout seconds.
function page:call(method, params, timeout)
    self.next_id = self.next_id + 1
    local id = self.next_id
    local ok, err = self.conn:send_text(cjson.encode { id = id, method = method,
                                                       params = params or {} })
    if not ok then error("chromium: " .. method .. ": " .. tostring(err), 2) end
    local deadline = socket.gettime() + (timeout or self.call_timeout)
    while not self.results[id] do
        if not self:_pump(deadline) and socket.gettime() >= deadline then
            error(string.format("chromium: %s: no answer within %g s", method,
                timeout or self.call_timeout), 2)
        end
    end
    local msg = self.results[id]
    self.results[id] = nil
    if msg.error then
        error(string.format("chromium: %s: %s %s", method, tostring(msg.error.message),
            msg.error.data and tostring(msg.error.data) or ""), 2)
    end
    return msg.result
end

-- Reads and dispatches events for `seconds` (default 0: what has already arrived).
function page:pump(seconds)
    local deadline = socket.gettime() + (seconds or 0)
    while self:_pump(deadline) and socket.gettime() < deadline + 0.05 do end
end

-- Waits for the next event named method (for which pred(params) is true, when given). Returns
-- its params; raises after timeout seconds (default the call timeout).
function page:wait_event(method, timeout, pred)
    local got
    local fn = self:on(method, function(p)
        if got == nil and (not pred or pred(p)) then got = p end
    end)
    local deadline = socket.gettime() + (timeout or self.call_timeout)
    local ok, err = pcall(function()
        while got == nil do
            if not self:_pump(deadline) and socket.gettime() >= deadline then
                error(string.format("chromium: no %s event within %g s", method,
                    timeout or self.call_timeout), 0)
            end
        end
    end)
    self:off(method, fn)
    if not ok then error(err, 2) end
    return got
end

-- Loads url and waits for its load event (timeout seconds, default the call timeout). Raises
-- when the browser cannot load it at all (connection refused, DNS); an HTTP error status is
-- not an error here: it shows in page:errors() for the page's resources.
function page:navigate(url, timeout)
    timeout = timeout or self.call_timeout
    self.loaded = false
    local result = self:call("Page.navigate", { url = url }, timeout)
    if result.errorText and result.errorText ~= "" then
        error("chromium: cannot load " .. url .. ": " .. result.errorText, 2)
    end
    local deadline = socket.gettime() + timeout
    while not self.loaded do
        if not self:_pump(deadline) and socket.gettime() >= deadline then
            error(string.format("chromium: %s did not finish loading within %g s", url, timeout), 2)
        end
    end
    return result
end

local function exception_text(d)
    return d.exception and (d.exception.description or remote_text(d.exception)) or d.text
        or "exception"
end

-- Evaluates a JavaScript expression in the page (a promise is awaited). Returns its value;
-- raises with the exception's description when it throws.
function page:eval(js, timeout)
    local r = self:call("Runtime.evaluate", { expression = js, returnByValue = true,
        awaitPromise = true, userGesture = true }, timeout)
    if r.exceptionDetails then
        error("chromium: eval threw: " .. exception_text(r.exceptionDetails), 2)
    end
    local v = r.result and r.result.value
    if v == cjson.null then return nil end
    return v
end

-- Polls a JavaScript expression every `interval` seconds (default 0.05) until it is truthy, and
-- returns its value. An expression that throws counts as false. Raises after timeout seconds
-- (default 5), with the last value or exception.
function page:wait_for(js, timeout, interval)
    timeout = timeout or 5
    local deadline = socket.gettime() + timeout
    local last
    while true do
        local ok, v = pcall(self.eval, self, js, math.max(deadline - socket.gettime(), 1))
        if ok and v ~= nil and v ~= false and v ~= 0 and v ~= "" then return v end
        last = ok and tostring(v) or v
        if socket.gettime() >= deadline then
            error(string.format("chromium: timed out after %g s waiting for %s (last: %s)",
                timeout, js, tostring(last)), 2)
        end
        -- Read what arrived meanwhile (console errors...) while waiting.
        self:_pump(math.min(socket.gettime() + (interval or 0.05), deadline))
    end
end

-- Emulates a device: width and height in CSS pixels, device pixel ratio (default 1), mobile
-- (meta viewport, overlay scrollbars; default false). Returns once the page has laid itself
-- out and run its resize handlers (two animation frames).
function page:set_viewport(width, height, dpr, mobile)
    self:call("Emulation.setDeviceMetricsOverride", { width = width, height = height,
        deviceScaleFactor = dpr or 1, mobile = mobile and true or false })
    self:call("Emulation.setTouchEmulationEnabled", { enabled = mobile and true or false })
    self:eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
end

-- Saves a PNG screenshot of the viewport to path. opts.full_page: the whole page instead;
-- opts.clip: only { x, y, width, height } (CSS pixels, from the top of the page). Returns path
-- and the PNG's size in bytes.
function page:screenshot(path, opts)
    opts = opts or {}
    local params = { format = "png" }
    if opts.clip then
        params.captureBeyondViewport = true
        params.clip = { x = opts.clip.x, y = opts.clip.y, width = opts.clip.width,
                        height = opts.clip.height, scale = 1 }
    elseif opts.full_page then
        local m = self:call("Page.getLayoutMetrics")
        local size = m.cssContentSize or m.contentSize
        params.captureBeyondViewport = true
        params.clip = { x = 0, y = 0, width = size.width, height = size.height, scale = 1 }
    end
    local r = self:call("Page.captureScreenshot", params, opts.timeout or 30)
    local png = mime.unb64(r.data)
    local f = assert(io.open(path, "wb"))
    f:write(png)
    f:close()
    return path, #png
end

-- The errors the page produced so far, as texts (see the top of this file).
function page:errors()
    local out = {}
    for i, e in ipairs(self.error_texts) do out[i] = e end
    return out
end

-- Every console and log message so far: { level = "log" | "warning" | "error" | ..., text }.
function page:console()
    local out = {}
    for i, m in ipairs(self.console_messages) do out[i] = m end
    return out
end

-- Forgets the errors and messages collected so far.
function page:clear_errors()
    self.error_texts, self.console_messages = {}, {}
end

-- Closes the tab.
function page:close()
    if self.conn then
        pcall(self.conn.abort, self.conn)
        self.conn = nil
    end
    pcall(devtools_http, self.browser, "GET", "/json/close/" .. self.id)
end

-- PNG width and height in pixels, read from a PNG file's header (nil if not a PNG).
function M.png_size(path)
    local s = read_file(path)
    if not s or s:sub(1, 8) ~= "\137PNG\r\n\26\n" then return nil end
    return (string.unpack(">I4", s, 17)), (string.unpack(">I4", s, 21))
end

return M
