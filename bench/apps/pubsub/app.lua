-- pubsub, the benchmark's broadcast app: every connection is subscribed to "bench" when it
-- opens, and every message received is published to "bench" with the same type.
local app = {}

function app.open(c)
    c:subscribe("bench")
end

function app.message(c, d, b)
    mw.publish("bench", d, b)
end

return app
