-- JSON message routing for moonwire apps: decode a client's message, check its "type" and its
-- fields against a small schema, and call the handler registered for that type. Bad input is
-- expected from clients, so it gets an error reply ({"type":"error","error":"<reason>"}), never
-- a raise.
--
-- Decisions where the contract (issue 3) left room:
--   * More reasons than the contract lists: "missing field 'room'" (a required field is absent or
--     null) and "field 'type' must be a string" (type present but not a string; absent or null
--     is "missing type").
--   * Fields are checked in name order, so the reason for a message with several faults is
--     always the same. A JSON array is "expected a JSON object"; `[]` decodes like `{}`
--     (lua-cjson cannot tell them apart) and so is "missing type".
--   * An optional field sent as null is removed from msg, so handlers only ever see nil for it
--     (mw.json.null is truthy and would slip through `if msg.limit then`).
--   * A handler may answer like any expected failure, `return nil, "reason"` (or false,
--     "reason"): dispatch then sends the error reply and returns nil, reason. So a handler can
--     end with `return room:join(conn)` and the client learns it was "full".
--   * An unknown type is echoed at most 60 characters long, and not at all ("?") if it is not
--     valid UTF-8 (binary frames are not checked), since conn:send raises on such text.
--   * r:on raises when the type already has a handler (a duplicate is almost always a slip);
--     it returns the router, so calls can be chained.
--   * router.encode/send: fields is copied (not changed); the type argument wins over a "type"
--     key in fields.

local mw = require "moonwire"

local error, type, pairs, ipairs, setmetatable = error, type, pairs, ipairs, setmetatable
local sort = table.sort
local utf8_len, utf8_offset = utf8.len, utf8.offset
local json = mw.json
local encode, decode, null = json.encode, json.decode, json.null

local M = {}

local Router = {}
Router.__index = Router

-- The Lua type names a schema may ask for.
local TYPES = { string = true, number = true, boolean = true, table = true }

local MAX_ECHO = 60 -- characters of an unknown type quoted back to the client

-- Returns a new router with no handlers.
function M.new()
    return setmetatable({ _routes = {} }, Router)
end

-- Turns { room = "string", ["limit?"] = "number" } into an array of { name, type, optional },
-- sorted by name so checks always run in the same order. Raises on a bad schema.
local function compile_schema(msg_type, schema)
    local fields, seen = {}, {}
    if schema == nil then return fields end
    if type(schema) ~= "table" then
        error("router:on: schema for '" .. msg_type .. "' must be a table or nil", 3)
    end
    for key, want in pairs(schema) do
        if type(key) ~= "string" or key == "" or key == "?" then
            error("router:on: schema keys for '" .. msg_type .. "' must be field names", 3)
        end
        if not TYPES[want] then
            error("router:on: field '" .. key .. "' of '" .. msg_type .. "' must be checked as "
                  .. "\"string\", \"number\", \"boolean\" or \"table\"", 3)
        end
        local name, optional = key, false
        if key:sub(-1) == "?" then name, optional = key:sub(1, -2), true end
        if seen[name] then
            error("router:on: field '" .. name .. "' of '" .. msg_type .. "' is in the schema "
                  .. "twice", 3)
        end
        seen[name] = true
        fields[#fields + 1] = { name = name, type = want, optional = optional }
    end
    sort(fields, function(a, b) return a.name < b.name end)
    return fields
end

-- Registers handler(conn, msg) for messages whose "type" is msg_type, with an optional schema
-- (field -> "string" | "number" | "boolean" | "table"; a name ending in "?" is optional).
-- Returns the router. Raises on bad arguments or a type that already has a handler.
function Router:on(msg_type, handler, schema)
    if type(msg_type) ~= "string" or msg_type == "" then
        error("router:on: type must be a non-empty string", 2)
    end
    if type(handler) ~= "function" then
        error("router:on: handler for '" .. msg_type .. "' must be a function", 2)
    end
    if self._routes[msg_type] then
        error("router:on: type '" .. msg_type .. "' already has a handler", 2)
    end
    self._routes[msg_type] = { handler = handler, fields = compile_schema(msg_type, schema) }
    return self
end

-- A client-chosen string made safe to quote in a reply: valid UTF-8 and short.
local function quotable(s)
    local n = utf8_len(s)
    if n == nil then return "?" end
    if n > MAX_ECHO then s = s:sub(1, utf8_offset(s, MAX_ECHO + 1) - 1) .. "..." end
    return s
end

-- Replies to conn with an error message and returns nil, reason. A conn that has closed cannot
-- be told; that is not the caller's problem.
local function refuse(conn, reason)
    conn:send(encode({ type = "error", error = reason }))
    return nil, reason
end

-- Checks msg against the compiled fields. Returns nil if it passes, else the reason.
local function check_fields(msg, fields)
    for _, f in ipairs(fields) do
        local v = msg[f.name]
        if v == nil or v == null then
            if not f.optional then return "missing field '" .. f.name .. "'" end
            msg[f.name] = nil
        elseif type(v) ~= f.type then
            return "field '" .. f.name .. "' must be a " .. f.type
        end
    end
    return nil
end

-- Decodes data (a JSON text), checks its type and schema and calls the handler with (conn,
-- msg). Returns true, or nil, reason after replying {"type":"error","error":reason} to conn.
-- Raises only on misuse (data not a string); a handler that raises is not caught.
function Router:dispatch(conn, data)
    if type(data) ~= "string" then error("router:dispatch: data must be a string", 2) end
    local msg, err = decode(data)
    if msg == nil and err ~= nil then return refuse(conn, "invalid JSON") end
    if type(msg) ~= "table" or msg[1] ~= nil then
        return refuse(conn, "expected a JSON object")
    end
    local msg_type = msg.type
    if msg_type == nil or msg_type == null then return refuse(conn, "missing type") end
    if type(msg_type) ~= "string" then return refuse(conn, "field 'type' must be a string") end
    local route = self._routes[msg_type]
    if not route then return refuse(conn, "unknown type '" .. quotable(msg_type) .. "'") end
    local why = check_fields(msg, route.fields)
    if why then return refuse(conn, why) end
    local ok, reason = route.handler(conn, msg)
    if (ok == nil or ok == false) and type(reason) == "string" then
        return refuse(conn, reason)
    end
    return true
end

-- Returns the JSON text of { type = msg_type, ...fields } (for mw.publish or room:broadcast).
-- Raises on a bad type or fields, or on values JSON cannot hold.
function M.encode(msg_type, fields)
    if type(msg_type) ~= "string" then error("router.encode: type must be a string", 2) end
    if fields ~= nil and type(fields) ~= "table" then
        error("router.encode: fields must be a table or nil", 2)
    end
    local out = {}
    if fields then
        for k, v in pairs(fields) do out[k] = v end
    end
    out.type = msg_type
    return encode(out)
end

-- Sends { type = msg_type, ...fields } as JSON to conn. Returns what conn:send returns:
-- true | false, "backpressure" | nil, "closed".
function M.send(conn, msg_type, fields)
    if type(msg_type) ~= "string" then error("router.send: type must be a string", 2) end
    if fields ~= nil and type(fields) ~= "table" then
        error("router.send: fields must be a table or nil", 2)
    end
    return conn:send(M.encode(msg_type, fields))
end

return M
