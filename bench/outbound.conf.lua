-- moonwire configuration for bench/outbound.sh: as moonwire-bench.conf.lua (no rate limits for
-- a local load generator), plus room for every connection's request to be in flight at once.
limits = {
    per_ip              = 0,
    connects_per_second = 0,
    messages_per_second = 0,
    bytes_per_second    = 0,
    idle_timeout        = 900,
}

outbound = {
    "127.0.0.1",
    max_in_flight = 10000,
    timeout       = 5,
}
