-- A fake moonwire for unit specs of the Lua libraries in scripts/: a clock advanced by hand,
-- timers that fire in a fixed order, topics, and fake conns that record what they were sent.
-- Modules are loaded the way the server loads them, so a spec can also simulate a hot reload.
--
--   local fake = require("fake_mw").new()
--   local rooms = fake:require "moonwire.rooms"   -- loaded in a sandbox-like environment
--   local a = fake:conn()                           -- a fake conn (id 1, open)
--   fake:advance(1000)                              -- fires due timers, in order
--   fake:reload()                                   -- new environment, old timers cancelled
--
-- Why modules load in their own environment and not through package.loaded: the server gives
-- every app version a fresh environment with its own table of loaded modules and only the
-- sandbox's globals. Doing the same here means a reload re-runs the module's code exactly as
-- the server would, and a library that reaches for io, debug, package or a writable library
-- table fails its specs instead of failing in production.
local cjson = require "cjson"

local M = {}

local Fake = {}
Fake.__index = Fake

-- ---- where scripts/ is -----------------------------------------------------------------------

-- This file is spec/support/fake_mw.lua; the libraries are in scripts/ two folders up. Found
-- from this file's path so specs work from any working directory.
local function scripts_dir()
    local source = debug.getinfo(1, "S").source
    local here = source:match("^@(.*)/[^/]*$") or "."
    return here .. "/../../scripts"
end
local SCRIPTS = scripts_dir()

-- ---- timers ----------------------------------------------------------------------------------

local Timer = {}
Timer.__index = Timer

-- Returns true if the timer was still pending (it is not any more), false otherwise.
function Timer:cancel()
    if self.pending then
        self.pending = false
        return true
    end
    return false
end

local function check_timer_args(where, ms, fn)
    if type(ms) ~= "number" or not (ms >= 1) or ms == math.huge then
        error(where .. ": ms must be a number >= 1", 3)
    end
    if type(fn) ~= "function" then error(where .. ": expected a function", 3) end
end

-- Creates a pending timer due ms from now (again every ms if repeating). Returns the timer.
function Fake:add_timer(repeating, ms, fn)
    self.timer_seq = self.timer_seq + 1
    local t = setmetatable({
        seq = self.timer_seq, repeating = repeating, interval = ms, fn = fn,
        start = self.clock, fires = 0, due = self.clock + ms, pending = true,
        generation = self.generation,
    }, Timer)
    self.timers[#self.timers + 1] = t
    return t
end

-- The pending timer due first at or before target; ties go to the older timer.
function Fake:next_due(target)
    local best
    for _, t in ipairs(self.timers) do
        if t.pending and t.due <= target and (not best or t.due < best.due) then best = t end
    end
    return best
end

-- Moves the clock forward by ms, firing every timer that falls due on the way, in time order
-- (ties: creation order). Like the server, a callback's error is logged ("error") and kept in
-- fake.errors, and an `every` timer keeps running. Returns the number of callbacks run.
function Fake:advance(ms)
    assert(type(ms) == "number" and ms >= 0, "advance: ms must be a number >= 0")
    assert(not self.advancing, "advance: called from inside a timer callback")
    self.advancing = true
    local target, runs = self.clock + ms, 0
    while true do
        local t = self:next_due(target)
        if not t then break end
        self.clock = t.due
        if t.repeating then
            t.fires = t.fires + 1
            -- From the start time, not the last due time, so fractional periods do not drift.
            t.due = t.start + (t.fires + 1) * t.interval
        else
            t.pending = false
        end
        runs = runs + 1
        local ok, err = pcall(t.fn, t)
        if not ok then
            self.errors[#self.errors + 1] = tostring(err)
            self.mw.log("error", "timer callback failed: " .. tostring(err))
        end
    end
    self.clock = target
    self.advancing = false
    return runs
end

-- Returns the number of timers still pending.
function Fake:pending_timers()
    local n = 0
    for _, t in ipairs(self.timers) do
        if t.pending then n = n + 1 end
    end
    return n
end

-- ---- conns and topics ------------------------------------------------------------------------

local function is_utf8(s) return utf8.len(s) ~= nil end

-- Returns a new open fake conn. Like the server's userdata, only conn.data can be assigned;
-- the recording (what it was sent, how it closed) is read with fake:sent(conn) and friends.
function Fake:conn(opts)
    opts = opts or {}
    self.last_conn_id = self.last_conn_id + 1
    local fake = self
    local c = {
        id = self.last_conn_id, ip = opts.ip or "127.0.0.1", path = opts.path or "/",
        protocol = opts.protocol, open = true, data = opts.data or {},
        sent = {}, topics = {}, closed_with = nil, backpressure = false,
    }
    local methods = {}

    -- true | false, "backpressure" | nil, "closed"; raises on text that is not UTF-8.
    function methods.send(_, data, binary)
        if type(data) ~= "string" then error("conn:send: data must be a string", 2) end
        if not binary and not is_utf8(data) then
            error("conn:send: text must be valid UTF-8 (send bytes as binary)", 2)
        end
        if not c.open then return nil, "closed" end
        c.sent[#c.sent + 1] = { data = data, binary = binary and true or false }
        if c.backpressure then return false, "backpressure" end
        return true
    end

    -- true | nil, "closed"
    function methods.close(_, code, reason)
        if not c.open then return nil, "closed" end
        c.open = false
        c.closed_with = { code = code or 1000, reason = reason }
        for topic in pairs(c.topics) do fake.topics[topic][c.id] = nil end
        c.topics = {}
        return true
    end

    -- true | false (already subscribed) | nil, "closed"
    function methods.subscribe(_, topic)
        if type(topic) ~= "string" then error("conn:subscribe: topic must be a string", 2) end
        if not c.open then return nil, "closed" end
        if c.topics[topic] then return false end
        c.topics[topic] = true
        fake.topics[topic] = fake.topics[topic] or {}
        fake.topics[topic][c.id] = fake.conns[c.id]
        return true
    end

    -- true | false (not subscribed) | nil, "closed"
    function methods.unsubscribe(_, topic)
        if type(topic) ~= "string" then error("conn:unsubscribe: topic must be a string", 2) end
        if not c.open then return nil, "closed" end
        if not c.topics[topic] then return false end
        c.topics[topic] = nil
        fake.topics[topic][c.id] = nil
        return true
    end

    local public = { id = true, ip = true, path = true, protocol = true, open = true,
                     data = true }
    local conn = setmetatable({}, {
        __index = function(_, key)
            if methods[key] then return methods[key] end
            if public[key] then return c[key] end
            return nil
        end,
        __newindex = function(_, key, value)
            if key == "data" and type(value) == "table" then
                c.data = value
            else
                error("conn: field '" .. tostring(key) .. "' cannot be assigned", 2)
            end
        end,
        __tostring = function() return "conn " .. c.id end,
    })
    self.conns[c.id] = conn
    self.records[conn] = c
    return conn
end

-- Returns the frames conn was sent (conn:send and publishes), oldest first: { data, binary }.
function Fake:sent(conn)
    return self.records[conn].sent
end

-- Returns the data of every frame conn was sent, decoded from JSON.
function Fake:sent_json(conn)
    local out = {}
    for i, frame in ipairs(self.records[conn].sent) do out[i] = cjson.decode(frame.data) end
    return out
end

-- Forgets what conn was sent so far.
function Fake:clear_sent(conn)
    self.records[conn].sent = {}
end

-- Returns true if conn is subscribed to topic.
function Fake:subscribed(conn, topic)
    return self.records[conn].topics[topic] == true
end

-- Returns { code, reason } if conn was closed with conn:close, else nil.
function Fake:closed_with(conn)
    return self.records[conn].closed_with
end

-- Makes conn:send answer false, "backpressure" (on) or true again (off).
function Fake:set_backpressure(conn, on)
    self.records[conn].backpressure = on
end

-- The open subscribers of topic, by conn id (a fixed delivery order).
function Fake:subscribers_of(topic)
    local out = {}
    for _, conn in pairs(self.topics[topic] or {}) do out[#out + 1] = conn end
    table.sort(out, function(a, b) return a.id < b.id end)
    return out
end

-- ---- the mw table ----------------------------------------------------------------------------

local LEVELS = { debug = true, info = true, warn = true, error = true }

-- Returns mw.json: lua-cjson, with decode answering nil, message on invalid input.
local function make_json()
    local engine = cjson.new() -- a private instance: settings changes stay here
    return {
        encode = function(value) return engine.encode(value) end,
        -- Invalid JSON from a client is expected: nil, message instead of a raise.
        decode = function(s)
            if type(s) ~= "string" then error("mw.json.decode: expected a string", 2) end
            local ok, value = pcall(engine.decode, s)
            if not ok then return nil, tostring(value) end
            return value
        end,
        null = engine.null,
    }
end

-- Returns the mw table a module sees, wired to fake.
local function make_api(fake)
    local api = { state = fake.state, json = make_json() }

    -- Seconds, from the fake clock.
    function api.now() return fake.clock / 1000 end

    -- Like the server: while fake:reload runs a new main chunk, fn waits for it to succeed;
    -- otherwise (a spec calling a library directly) it runs at once.
    function api.after_load(fn)
        if type(fn) ~= "function" then error("mw.after_load: expected a function", 2) end
        if fake.loading then
            fake.after_load[#fake.after_load + 1] = fn
        else
            fn()
        end
    end

    -- Each returns a timer with :cancel(); fn(timer) runs from fake:advance.
    function api.after(ms, fn)
        check_timer_args("mw.after", ms, fn)
        return fake:add_timer(false, ms, fn)
    end

    function api.every(ms, fn)
        check_timer_args("mw.every", ms, fn)
        return fake:add_timer(true, ms, fn)
    end

    -- Sends data to every open subscriber of topic; records the publish. Returns how many.
    function api.publish(topic, data, binary)
        if type(topic) ~= "string" then error("mw.publish: topic must be a string", 2) end
        if type(data) ~= "string" then error("mw.publish: data must be a string", 2) end
        if not binary and not is_utf8(data) then
            error("mw.publish: text must be valid UTF-8", 2)
        end
        local receivers = fake:subscribers_of(topic)
        for _, conn in ipairs(receivers) do
            local sent = fake.records[conn].sent
            sent[#sent + 1] = { data = data, binary = binary and true or false, topic = topic }
        end
        fake.published[#fake.published + 1] = {
            topic = topic, data = data, binary = binary and true or false,
            receivers = #receivers,
        }
        return #receivers
    end

    -- Returns the number of open conns subscribed to topic.
    function api.subscribers(topic)
        if type(topic) ~= "string" then error("mw.subscribers: topic must be a string", 2) end
        return #fake:subscribers_of(topic)
    end

    -- Records { level, message } in fake.logs, the values joined with spaces. Returns nothing.
    function api.log(level, ...)
        if not LEVELS[level] then error("mw.log: bad level '" .. tostring(level) .. "'", 2) end
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        fake.logs[#fake.logs + 1] = { level = level, message = table.concat(parts, " ") }
    end

    -- Returns the open conns, by id.
    function api.connections()
        local out = {}
        for _, conn in pairs(fake.conns) do
            if conn.open then out[#out + 1] = conn end
        end
        table.sort(out, function(a, b) return a.id < b.id end)
        return out
    end

    return api
end

-- ---- the sandbox-like environment --------------------------------------------------------------

local BASE = { "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
               "rawget", "rawlen", "rawset", "select", "tonumber", "tostring", "type", "xpcall",
               "_VERSION" }

-- A read-only view of lib, like the server's proxies: reads pass through, writes raise.
local function readonly(lib)
    return setmetatable({}, {
        __index = lib,
        __newindex = function(_, key)
            error("attempt to modify a read-only library table (field '" .. tostring(key)
                  .. "')", 2)
        end,
        __pairs = function() return next, lib, nil end,
        __metatable = "locked",
    })
end

-- Starts a new app version: a fresh environment with only the sandbox's globals and its own
-- table of loaded modules ("moonwire" is the fake mw; "moonwire.x" is scripts/moonwire/x.lua).
function Fake:new_env()
    local fake = self
    local env, loaded = {}, { moonwire = self.mw }
    for _, name in ipairs(BASE) do env[name] = _G[name] end
    for _, name in ipairs({ "string", "table", "math", "utf8", "coroutine" }) do
        env[name] = readonly(_G[name])
    end
    env.os = readonly({ time = os.time, clock = os.clock, date = os.date,
                        difftime = os.difftime })
    env._G = env
    env.mw = self.mw
    env.print = function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        fake.mw.log("info", table.concat(parts, "\t"))
    end
    env.setmetatable = function(t, mt)
        if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
            error("setmetatable: __gc metamethods are not allowed in moonwire", 2)
        end
        return setmetatable(t, mt)
    end
    env.load = function(chunk, name, mode, chunk_env)
        if mode ~= "t" then error("load: only text chunks (mode \"t\") are allowed", 2) end
        if type(chunk_env) ~= "table" then error("load: an environment must be given", 2) end
        return load(chunk, name, "t", chunk_env)
    end
    env.collectgarbage = function(opt)
        if opt ~= nil and opt ~= "count" then
            error("collectgarbage: only \"count\" is allowed in moonwire", 2)
        end
        return collectgarbage("count")
    end
    env.require = function(name)
        if type(name) ~= "string" then error("require: expected a module name", 2) end
        if loaded[name] ~= nil then return loaded[name] end
        local base = fake.app_dir
        if name:sub(1, 9) == "moonwire." then base = SCRIPTS end
        if not base then error("require: module '" .. name .. "' not found", 2) end
        local rel = name:gsub("%.", "/")
        local path
        for _, form in ipairs({ "%s/%s.lua", "%s/%s/init.lua" }) do
            local candidate = form:format(base, rel)
            local f = io.open(candidate, "r")
            if f then
                f:close()
                path = candidate
                break
            end
        end
        if not path then error("require: module '" .. name .. "' not found in " .. base, 2) end
        local chunk = assert(loadfile(path, "t", env))
        local result = chunk(name)
        if result == nil then result = true end
        loaded[name] = result
        return result
    end
    self.env, self.loaded = env, loaded
end

-- Loads a module (or returns it) in the current app version's environment, like require in
-- app code. Returns the module.
function Fake:require(name)
    return self.env.require(name)
end

-- Simulates a hot reload the way the server does it: a fresh environment (modules load again
-- with new module-level locals) runs main(fake) as the new version's main chunk. If it succeeds,
-- the old version's timers are cancelled (opts.keep_timers = true keeps them, to prove a library
-- copes with a missed cancel), then what it gave mw.after_load runs, and reload returns what main
-- returned. If it raises, the new version's timers are cancelled, the old environment stays, and
-- reload raises the error. Kept either way: mw.state, conns, conn.data, subscriptions, the clock.
function Fake:reload(main, opts)
    local old_generation, old_env, old_loaded = self.generation, self.env, self.loaded
    self.generation = old_generation + 1
    self:new_env()
    self.loading, self.after_load = true, {}
    local ok, result = pcall(main or function() end, self)
    self.loading = false
    local hooks = self.after_load
    self.after_load = nil
    if not ok then
        for _, t in ipairs(self.timers) do
            if t.generation == self.generation then t.pending = false end
        end
        self.generation, self.env, self.loaded = old_generation, old_env, old_loaded
        error(result, 0)
    end
    if not (opts and opts.keep_timers) then
        for _, t in ipairs(self.timers) do
            if t.generation < self.generation then t.pending = false end
        end
    end
    for _, fn in ipairs(hooks) do fn() end
    return result
end

-- Returns a new fake: clock at 0, no timers, no conns, empty mw.state. opts.app_dir: where
-- require finds the app's own (non-moonwire) modules.
function M.new(opts)
    opts = opts or {}
    local fake = setmetatable({
        clock = 0, timers = {}, timer_seq = 0, generation = 1,
        conns = {}, records = setmetatable({}, { __mode = "k" }), last_conn_id = 0,
        topics = {}, published = {}, logs = {}, errors = {},
        state = {}, app_dir = opts.app_dir,
    }, Fake)
    fake.mw = make_api(fake)
    fake:new_env()
    return fake
end

return M
