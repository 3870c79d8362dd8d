-- The probe: an app through which the specs of the shipped libraries (scripts/spec) run code
-- inside the real sandbox, with the real mw, real connections and the virtual clock of
-- `moonwire test`. Clients connect with ?name=NAME and are C.NAME in the code's environment.
-- Every text message from the client named "driver" is {"code": "...", "args": [{"v": ...}]}:
-- the code runs as a function of the args, and its results come back as
-- {"ok": true, "results": [{"v": ...}, ...]}, or {"ok": false, "err": "..."} when it raises.
--
-- The environment lives in mw.state, so what the code keeps in globals outlives a hot reload,
-- as a room does; each version of this code sets rooms and router to its own copy of the
-- libraries and runs mw.state.on_load (code, like a new version's main chunk would run it).
-- Messages from other clients go to on_message(conn, data, is_binary) and closes to
-- on_close(conn, code, reason) when the code has defined them.
local json = mw.json
local state = mw.state

state.env = state.env or { C = {} }
local env = state.env
setmetatable(env, { __index = _ENV })
env.rooms = require "moonwire.rooms"
env.router = require "moonwire.router"
env.version = (env.version or 0) + 1
if state.on_load then assert(load(state.on_load, "=on_load", "t", env))() end

local function pack(...)
    local out = {}
    for i = 1, select("#", ...) do out[i] = { v = (select(i, ...)) } end
    return out
end

local function args_of(list)
    local out = {}
    for i, a in ipairs(list or {}) do out[i] = a.v end
    return table.unpack(out, 1, #(list or {}))
end

local app = {}

function app.upgrade(req)
    local name = req.query:match("name=([%w_]+)")
    if not name then return false, 400, "connect with ?name=NAME" end
    return true, { data = { name = name } }
end

function app.open(conn)
    env.C[conn.data.name] = conn
end

function app.message(conn, data, is_binary)
    if conn.data.name ~= "driver" then
        if env.on_message then env.on_message(conn, data, is_binary) end
        return
    end
    local request = json.decode(data)
    local fn, err = load(request.code, "=probe", "t", env)
    local reply
    if not fn then
        reply = { ok = false, err = err }
    else
        local results = pack(pcall(fn, args_of(request.args)))
        if results[1].v then
            table.remove(results, 1)
            reply = { ok = true, results = results }
        else
            reply = { ok = false, err = tostring(results[2].v) }
        end
    end
    conn:send(json.encode(reply))
end

function app.close(conn, code, reason)
    if env.on_close then env.on_close(conn, code, reason) end
end

return app
