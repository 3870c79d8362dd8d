-- moonwire configuration for `make bench` (bench/run.lua):
--   build/moonwire -c bench/moonwire-bench.conf.lua --port N examples/echo
-- The defaults protect a server on the internet; a load generator on the same machine would
-- trip them (1000 messages/s per connection, 1000 connections per address). These are the
-- same allowances the Bun and Node anchors get: no rate limits, no per-address cap, a long
-- idle timeout, 64 MiB of queue per client before backpressure. The listen address comes from
-- the command line (--port).

limits = {
    max_message         = 16 << 20,
    max_connections     = 200000,   -- room for the 100,000 idle connections scenario
    per_ip              = 0,        -- off: the generator connects from few addresses
    connects_per_second = 0,
    messages_per_second = 0,        -- off: each echo connection sends as fast as it can
    bytes_per_second    = 0,
    handshake_timeout   = 30,       -- 100,000 connections arrive in a burst
    idle_timeout        = 900,      -- like Bun's idleTimeout: 900
    send_buffer         = 64 << 20, -- like Bun's backpressureLimit
    max_send_buffer     = 256 << 20,
    max_subscriptions   = 1000,
    shutdown_timeout    = 2,
}

sandbox = {
    memory = 1 << 30,               -- each app's Lua state: room for 100,000 connections' objects
}
