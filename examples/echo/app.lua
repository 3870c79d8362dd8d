-- Echo: every text or binary message goes back to its sender with the same type.
--   build/moonwire --port 9001 examples/echo
local app = {}

function app.message(conn, data, is_binary)
    conn:send(data, is_binary)
end

return app
