-- {{name}}: a moonwire app. Every client joins one room; what one says, everyone hears.
--   moonwire {{name}}              serves it (and public/) at http://127.0.0.1:8080/
--   moonwire test {{name}}/spec    runs its specs in the real runtime
-- The handlers, conn and mw: docs/lua-api.md. Specs: docs/testing.md.
local app = {}

local ROOM = "everyone"

-- Every WebSocket upgrade asks here first: return true to accept, or a status and a reason
-- (403, "not allowed") to refuse.
function app.upgrade(req)
    return true
end

function app.open(conn)
    conn:subscribe(ROOM)
    conn:send(mw.json.encode { type = "welcome", id = conn.id, online = mw.subscribers(ROOM) })
end

-- Clients send {"text": "..."}; everyone in the room gets {"type": "said", "from": id, ...}.
function app.message(conn, data)
    local msg = mw.json.decode(data)
    if type(msg) ~= "table" or type(msg.text) ~= "string" or msg.text == "" then
        conn:send(mw.json.encode { type = "error", error = 'send {"text": "..."}' })
        return
    end
    mw.publish(ROOM, mw.json.encode { type = "said", from = conn.id, text = msg.text:sub(1, 500) })
end

function app.close(conn, code, reason)
    mw.publish(ROOM, mw.json.encode { type = "left", id = conn.id })
end

return app
