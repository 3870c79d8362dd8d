-- The host side of the probe app (probe/app.lua): starts it under `moonwire test` and runs code
-- inside its sandbox.
--   local probe = dofile(HERE .. "/probe.lua")
--   local p = probe.start()                       -- the app, and its driver client
--   local a = p:client("a")                       -- C.a in the code
--   assert.equal(1, p:run("return rooms.create('match', ...).tick", "m"))
local t = require "moonwire.test"

local HERE = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local M = {}

local Probe = {}
Probe.__index = Probe

-- Starts the probe app (with config settings, as t.start takes them).
function M.start(config)
    local server = t.start(HERE .. "/probe", { config = config })
    local driver = assert(server:connect { query = "name=driver" })
    return setmetatable({ server = server, driver = driver }, Probe)
end

-- Runs code in the app's sandbox as a function of the arguments (JSON values); returns its
-- results. Raises with the code's error when it raises.
function Probe:run(code, ...)
    local args = {}
    for i = 1, select("#", ...) do args[i] = { v = (select(i, ...)) } end
    self.driver:send(t.json.encode { code = code, args = args })
    local reply = self.driver:receive_json()
    if not reply then
        error(("the probe did not answer (closed: %s, code %s): see server:log()"):format(
            tostring(self.driver.closed), tostring(self.driver.close_code)), 2)
    end
    if not reply.ok then error(reply.err, 2) end
    local out = {}
    for i, r in ipairs(reply.results) do out[i] = r.v end
    return table.unpack(out, 1, #reply.results)
end

-- pcall of run: false and the error message, or true and the results.
function Probe:try(code, ...)
    return pcall(self.run, self, code, ...)
end

-- A client named name, which the code sees as C[name].
function Probe:client(name)
    return assert(self.server:connect { query = "name=" .. name })
end

-- The lines logged at error level.
function Probe:errors()
    local out = {}
    for _, line in ipairs(self.server:log()) do
        if line:find("^error ") then out[#out + 1] = line end
    end
    return out
end

function Probe:stop()
    self.server:stop()
end

return M
