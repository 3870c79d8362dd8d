-- moonwire configuration for `make bench`'s compressed scenarios (bench/run.lua), shared mode:
--   build/moonwire -c bench/moonwire-bench-deflate-shared.conf.lua --port N examples/echo
-- The limits of bench/moonwire-bench.conf.lua (no rate limits, no per-address cap, 64 MiB of
-- queue per client), with permessage-deflate on: the defaults of docs/configuration.md
-- (level 3, window_bits 11, min_size 64, 64M of zlib memory) in "shared" mode.

limits = {
    max_message         = 16 << 20,
    max_connections     = 200000,
    per_ip              = 0,
    connects_per_second = 0,
    messages_per_second = 0,
    bytes_per_second    = 0,
    handshake_timeout   = 30,
    idle_timeout        = 900,
    send_buffer         = 64 << 20,
    max_send_buffer     = 256 << 20,
    max_subscriptions   = 1000,
    shutdown_timeout    = 2,
}

sandbox = {
    memory = 1 << 30,
}

deflate = { mode = "shared" }
