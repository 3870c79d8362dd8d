-- Outbound benchmark (bench/outbound.sh): every message makes one HTTP request to the local
-- nginx backend the script starts, then answers. The answer is the message itself when the
-- backend said 200, so that wsload can check every reply (order, content, nothing lost), and
-- "status N" or the error otherwise, which wsload counts as a corrupt reply: a run with a
-- failed request is reported as failed, not quietly faster.
-- The backend's port is fixed here because an app reads no environment; outbound.sh refuses
-- to run when the port is taken.
local BACKEND = "http://127.0.0.1:28081/small.txt"

local app = {}

function app.message(conn, data, is_binary)
    local res, err = mw.http.request { url = BACKEND, timeout = 5 }
    if res and res.status == 200 then
        conn:send(data, is_binary)
    else
        conn:send(res and ("status " .. res.status) or ("error " .. tostring(err)))
    end
end

return app
