-- moonwire configuration: the built-in defaults, written out.
--
-- This file is Lua that sets globals, run in an empty sandbox. Use it with
--   build/moonwire -c conf/moonwire.conf.lua examples/echo
-- Any key not listed here is an error naming this file and the line, so a typo never passes
-- silently. Command-line flags (--host, --port, --max-message) override what is set here.
-- Sizes are bytes (16 << 20 is 16 MiB); times are seconds and may have fractions.

-- Where to accept connections. One table per address; host defaults to 127.0.0.1 (loopback
-- only). Use "0.0.0.0" or "::" to accept from other machines. port = 0 picks a free port and
-- logs which. Add tls = { cert = "cert.pem", key = "key.pem" } to serve wss:// (a list of such
-- tables: several certificates, chosen by SNI; the first is the default).
listen = {
    { host = "127.0.0.1", port = 8080 },
}

-- Apps mounted at paths, each in its own sandbox (own globals, state, topics, memory cap).
-- Each serves WebSocket upgrades and its public/ folder for its path and everything below it.
-- The APP given on the command line is mounted at "/" as well. By default there are none;
-- to serve both examples from one server:
--   apps = { ["/chat"] = "examples/chat", ["/game"] = "examples/game" }

-- Origins allowed to open a WebSocket (browsers send the page's origin). By default (no
-- origins) only pages served from the same host and port may connect; list exact origins or
-- wildcards like "https://*.example.com", or { "*" } for any. Clients without an Origin field
-- (not browsers) are allowed unless require_origin = true.
--   origins = { "https://example.com", "https://*.example.com" }
require_origin = false

-- Limits protect a server exposed to the internet. 0 turns a limit off (except max_message,
-- from 1 to 1G, and max_header_bytes, which always apply). Sizes may also be written "16M".
limits = {
    max_message       = 16 << 20, -- bytes in one message, after reassembly of fragments.
                                  -- A frame whose declared length would pass it is refused
                                  -- with close code 1009 before any of it is buffered.
    max_header_bytes  = 16 << 10, -- bytes of the whole upgrade request (431 past it).
    max_headers       = 100,      -- header fields in it (431 past it).
    max_http_body     = 1 << 20,  -- bytes in the body of a plain request to an app.http
                                  -- handler (413 past it; 1 to 1 << 30).
    max_connections   = 100000,   -- connections in total (503 past it).
    per_ip            = 1000,     -- open connections from one address, or one IPv6 /64 (429).
    connects_per_second = 0,      -- new connections per second from one address (429).
    messages_per_second = 1000,   -- per connection, a token bucket ...
    burst             = 2000,     -- ... of this size (1008 past it) ...
    throttle          = false,    -- ... or, when true, reading pauses until the rate allows.
    bytes_per_second  = 0,        -- per connection; reading pauses to hold the rate.
    handshake_timeout = 5,        -- seconds from accept to a complete upgrade request (408).
    idle_timeout      = 60,       -- seconds without any traffic before the server pings; as
                                  -- long again without an answer and it closes with 1001.
    close_timeout     = 5,        -- seconds to wait for the peer's close frame or FIN after
                                  -- the server closed; then the socket is dropped.
    send_buffer       = 4 << 20,  -- bytes queued for a slow reader before conn:send reports
                                  -- backpressure and the server stops reading from it.
    max_send_buffer   = 16 << 20, -- bytes queued past which the reader is dropped with 1008
                                  -- "slow consumer".
    max_subscriptions = 1000,     -- topics one connection may be subscribed to.
    max_topic_length  = 256,      -- bytes in a topic name; longer ones raise an error.
    max_buffered      = 256 << 20, -- bytes all clients may hold in unfinished incoming messages
                                  -- (1013 "try again later" for the one that passes it) ...
    max_buffered_per_ip = 64 << 20, -- ... and the clients of one address (1009). Keep it at
                                  -- least max_message.
    max_queued        = 1 << 30,  -- bytes in every send queue together; past it, clients that
                                  -- do not keep up (past send_buffer) are dropped.
    shared_memory     = 64 << 20, -- bytes mw.shared may hold (every app and worker together).
    history_memory    = 64 << 20, -- bytes the history of every app may hold together; past it
                                  -- the topics published to least recently lose theirs.
    shutdown_timeout  = 5,        -- seconds SIGTERM/SIGINT wait for clients to finish the
                                  -- close handshake before exiting.
}

-- The Lua sandbox every app runs in.
sandbox = {
    instructions = 10000000,      -- Lua instructions one callback may run before it is stopped
                                  -- (pcall inside the app cannot catch this).
    memory       = 64 << 20,      -- bytes the app's Lua state may hold.
    time_limit   = 1,             -- seconds one callback may take (wall clock), for work the
                                  -- instruction count cannot see.
    max_load     = 16 << 10,      -- bytes of one chunk given to load; parse time grows with
                                  -- the square of a chunk's size (~25 ms at most at 16 KiB).
    topic_memory = 64 << 20,      -- bytes of C memory the app's topics may take; past it
                                  -- conn:subscribe answers nil, "topic memory full".
    timer_share  = 0.5,           -- fraction of each second the app's timer callbacks may
                                  -- run; past it its timers wait (late, never dropped).
    wait_timeout = 30,            -- seconds one handler run may take, its waits (mw.http,
                                  -- mw.sleep) included; then it fails as if it had raised.
}

-- Where mw.http.request may go (docs/configuration.md#outbound). Without a list: anywhere but
-- link-local addresses (cloud metadata). Uncomment to restrict it:
-- outbound = {
--     "api.example.com", "10.1.0.0/16",
--     ca = "/etc/moonwire/internal-ca.pem",  -- a private CA, besides the system's
--     max_response = "16M", max_in_flight = 100, timeout = 10,
-- }

-- The admin listener: Prometheus metrics at /metrics, /livez and /readyz probes, and a live
-- dashboard at / (docs/operations.md). Off by default; it is its own address, never the
-- WebSocket listeners'. With a token, every request needs "Authorization: Bearer TOKEN".
--   admin = { host = "127.0.0.1", port = 9090, token = "a long random string" }

-- Logging: an access line per upgrade and per close (access), as text or one JSON object per
-- line (format = "json").
log = {
    access = true,
    format = "text",
}
