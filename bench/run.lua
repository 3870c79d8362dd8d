#!/usr/bin/env lua5.4
-- bench/run.lua: the side-by-side comparison `make bench` runs (issue 5).
--
--   lua5.4 bench/run.lua          (make builds build/moonwire and build/wsload and installs
--                                  bench/anchors first; this script builds nothing)
--
-- For every round, every scenario, and every server in turn (moonwire, Bun, Node ws), it starts
-- a fresh server pinned to one CPU (taskset), waits for its ready line, runs build/wsload
-- pinned to another CPU, reads wsload's RESULT line and stops the server. Medians over the
-- rounds go to bench/results/<date>.md, with the machine and the versions; the throughput
-- against connection count sweep goes to <date>.dat and, through gnuplot (bench/plot.gp),
-- <date>.png; every RESULT line to <date>.runs.txt.
--
-- Environment (all optional):
--   BENCH_SECONDS=5      measured seconds per run        BENCH_WARMUP=1  warm-up seconds
--   BENCH_ROUNDS=3       rounds (medians over them)      BENCH_NAME=<date>  output file stem
--   BENCH_SERVERS=moonwire,moonwire_ctx,bun,node         BENCH_SCENARIOS=id,id (default all)
--                        (moonwire_ctx: moonwire in deflate's context mode; it and Bun with
--                        perMessageDeflate run in the compressed scenarios, echo_deflate and
--                        fanout_deflate, where moonwire runs in shared mode and Node not at all)
--   BENCH_BIG=1          the 100,000 idle connections scenario (skipped, with the reason,
--                        when the open-files limit cannot hold it); 0 skips it
--   BENCH_SERVER_CPU=0   BENCH_GEN_CPU=1                 BENCH_OUT=bench/results
--   BENCH_WORKERS=1      moonwire's --workers; give the server as many CPUs
--                        (BENCH_WORKERS=4 BENCH_SERVER_CPU=0-3 BENCH_GEN_CPU=4-7)
--   WSLOAD=build/wsload  NODE=node                       (other binaries, for testing)
--   BENCH_BASELINE=path  another moonwire binary (an older build) run as server "baseline",
--                        alternating with build/moonwire; the report gains a table of moonwire
--                        against it. `make bench-against REV=<git rev>` builds one and runs it.
-- A quick smoke run: BENCH_SECONDS=1 BENCH_ROUNDS=1 lua5.4 bench/run.lua
--
-- Exit status: 0 when every moonwire run completed cleanly (the targets are reported, not
-- enforced), 1 when a moonwire run failed (server did not start or died, wsload reported
-- errors, lost or duplicated messages), 2 when something needed is missing.

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function capture(cmd)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    local ok, how, code = p:close()
    if how == "signal" then code = 128 + code end
    return out, ok and 0 or code
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function env(name, default)
    local v = os.getenv(name)
    if v == nil or v == "" then return default end
    return v
end

local function envnum(name, default)
    local v = tonumber(env(name, tostring(default)))
    if not v or v <= 0 then
        io.stderr:write(("bench: %s must be a positive number\n"):format(name))
        os.exit(2)
    end
    return v
end

local function sleep(s) os.execute("sleep " .. s) end

local function read_file(path)
    local f = io.open(path, "r")
    if not f then return nil end
    local s = f:read("a")
    f:close()
    return s
end

local function write_file(path, s)
    local f = assert(io.open(path, "w"))
    f:write(s)
    f:close()
end

local function log(fmt, ...)
    io.stdout:write(os.date("!%H:%M:%S "), fmt:format(...), "\n")
    io.stdout:flush()
end

-- ---- where things are ------------------------------------------------------------------------

local script_dir = (arg and arg[0] or "bench/run.lua"):match("^(.*)/[^/]*$") or "."
local ROOT = trim(capture("cd " .. q(script_dir .. "/..") .. " && pwd"))

local SECONDS  = envnum("BENCH_SECONDS", 5)
local WARMUP   = envnum("BENCH_WARMUP", 1)
local ROUNDS   = math.floor(envnum("BENCH_ROUNDS", 3))
local SRV_CPU  = env("BENCH_SERVER_CPU", "0")
local WORKERS  = math.floor(envnum("BENCH_WORKERS", 1))
local GEN_CPU  = env("BENCH_GEN_CPU", "1")
local OUT      = env("BENCH_OUT", ROOT .. "/bench/results")
local DATE     = os.date("!%Y-%m-%d")
local STEM     = env("BENCH_NAME", DATE)
local BIG      = env("BENCH_BIG", "1") ~= "0"

local MOONWIRE = ROOT .. "/build/moonwire"
local WSLOAD   = env("WSLOAD", ROOT .. "/build/wsload")
local BUN      = ROOT .. "/bench/anchors/node_modules/.bin/bun"
local NODE     = env("NODE", "node")
local SOURCES  = "127.0.0.2-127.0.0.254"
local BASELINE = env("BENCH_BASELINE", nil)

-- ---- servers ---------------------------------------------------------------------------------

-- cmd(sc) is the command line for scenario sc: its app ("echo" or "pubsub"), compressed or not
-- (sc.deflate). The compressed scenarios run moonwire in both deflate modes and Bun with
-- perMessageDeflate; deflate_only servers run in them alone, no_deflate ones never.
local function moonwire_app(sc)
    return sc.app == "echo" and "examples/echo" or "bench/apps/pubsub"
end

local SERVERS = {
    { id = "moonwire", name = "moonwire",
      cmd = function(sc)
          local conf = sc.deflate and "bench/moonwire-bench-deflate-shared.conf.lua"
              or "bench/moonwire-bench.conf.lua"
          return q(MOONWIRE) .. " -c " .. conf .. " --port 0 --workers " .. WORKERS .. " "
              .. moonwire_app(sc)
      end,
      ready = "listening on ws://[%d.]+:(%d+)/" },
    { id = "moonwire_ctx", name = "moonwire (context)", deflate_only = true,
      cmd = function(sc)
          return q(MOONWIRE) .. " -c bench/moonwire-bench-deflate-context.conf.lua --port 0 "
              .. "--workers " .. WORKERS .. " " .. moonwire_app(sc)
      end,
      ready = "listening on ws://[%d.]+:(%d+)/" },
    BASELINE and { id = "baseline", name = "moonwire (baseline)", no_deflate = true,
      cmd = function(sc)
          return q(BASELINE) .. " -c bench/moonwire-bench.conf.lua --port 0 " .. moonwire_app(sc)
      end,
      ready = "listening on ws://[%d.]+:(%d+)/" } or false,
    { id = "bun", name = "Bun",
      cmd = function(sc)
          return q(BUN) .. " bench/anchors/bun_" .. sc.app .. ".js 0"
              .. (sc.deflate and " deflate" or "")
      end,
      ready = "ready (%d+)" },
    { id = "node", name = "Node ws", no_deflate = true,
      cmd = function(sc) return q(NODE) .. " bench/anchors/node_" .. sc.app .. ".js 0" end,
      ready = "ready (%d+)" },
}

-- Whether server srv takes part in scenario sc.
local function runs_in(srv, sc)
    if sc.deflate then return not srv.no_deflate end
    return not srv.deflate_only
end

-- ---- scenarios -------------------------------------------------------------------------------
-- metrics: key in the RESULT line, label, better = "higher"/"lower", fmt, and the advantage
-- moonwire must have over Bun and over ws (x; 1 = at least as good). info = shown, not judged.

local TIMED = function() return ("--warmup %g --duration %g"):format(WARMUP, SECONDS) end

local SCENARIOS = {
    { id = "echo_throughput", app = "echo", mode = "echo",
      title = "Echo throughput: 100 connections x 16 in flight x 32 B text",
      args = function() return "--conns 100 --depth 16 --size 32 " .. TIMED() end,
      sweep = 100,
      metrics = {
          { key = "msgs_per_sec", label = "messages/s", better = "higher", fmt = "int",
            bun = 1.3, ws = 10 },
          { key = "p99_us", label = "p99 round trip (us)", better = "lower", fmt = "us",
            info = true },
      } },
    { id = "echo_latency", app = "echo", mode = "echo",
      title = "Echo latency: 100 connections x 1 in flight x 32 B text",
      args = function() return "--conns 100 --depth 1 --size 32 " .. TIMED() end,
      metrics = {
          { key = "p50_us", label = "p50 round trip (us)", better = "lower", fmt = "us",
            bun = 1, ws = 1 },
          { key = "p99_us", label = "p99 round trip (us)", better = "lower", fmt = "us",
            bun = 1, ws = 1 },
          { key = "msgs_per_sec", label = "messages/s", better = "higher", fmt = "int",
            info = true },
      } },
    { id = "echo_64k", app = "echo", mode = "echo",
      title = "Echo large messages: 10 connections x 4 in flight x 64 KiB binary",
      args = function() return "--conns 10 --depth 4 --size 65536 --binary " .. TIMED() end,
      metrics = {
          { key = "mbytes_per_sec", label = "MB/s (echoed payload)", better = "higher",
            fmt = "f1", bun = 1.3, ws = 1 },
          { key = "p99_us", label = "p99 round trip (us)", better = "lower", fmt = "us",
            info = true },
      } },
    { id = "fanout", app = "pubsub", mode = "broadcast",
      title = "Fan-out: 1 publisher, 1,000 subscribers, 32 B, 8 publishes in flight",
      args = function() return "--subscribers 1000 --size 32 --window 8 " .. TIMED() end,
      metrics = {
          { key = "deliveries_per_sec", label = "deliveries/s", better = "higher",
            fmt = "int", bun = 1, ws = 1 },
          { key = "p99_us", label = "p99 delivery latency (us)", better = "lower", fmt = "us",
            bun = 1, ws = 1 },
          { key = "lost", label = "lost (sum over rounds)", better = "lower", fmt = "int",
            sum = true, zero = true },
          { key = "duplicated", label = "duplicated (sum over rounds)", better = "lower",
            fmt = "int", sum = true, zero = true },
      } },
    { id = "fanout_rate", app = "pubsub", mode = "broadcast",
      title = "Fan-out latency at a fixed rate: 1,000 subscribers, 50 publishes/s "
          .. "(50,000 deliveries/s), 32 B",
      args = function() return "--subscribers 1000 --size 32 --rate 50 " .. TIMED() end,
      metrics = {
          { key = "p50_us", label = "p50 delivery latency (us)", better = "lower", fmt = "us",
            bun = 1, ws = 1 },
          { key = "p99_us", label = "p99 delivery latency (us)", better = "lower", fmt = "us",
            bun = 1, ws = 1 },
          { key = "lost", label = "lost (sum over rounds)", better = "lower", fmt = "int",
            sum = true, zero = true },
          { key = "duplicated", label = "duplicated (sum over rounds)", better = "lower",
            fmt = "int", sum = true, zero = true },
      } },
    -- Compressed (permessage-deflate, issue 16): 1 KiB chat messages in JSON, wsload offering
    -- what browsers offer. moonwire runs in both deflate modes, Bun with perMessageDeflate.
    -- RSS per connection: the server's growth from before connecting to the end of the
    -- measured window, over the connections (compression state, queues and heap included).
    -- The memory target: "a fraction of Bun's", taken as at most half.
    { id = "echo_deflate", app = "echo", mode = "echo", deflate = true,
      title = "Compressed echo: 1,000 connections x 1 in flight x 1 KiB JSON, permessage-deflate",
      args = function(pid)
          return ("--conns 1000 --depth 1 --size 1K --json --deflate --server-pid %d %s")
              :format(pid, TIMED())
      end,
      metrics = {
          { key = "msgs_per_sec", label = "messages/s", better = "higher", fmt = "int",
            bun = 1 },
          { key = "rss_per_conn_bytes", label = "server RSS per connection (bytes)",
            better = "lower", fmt = "int", bun = 2 },
          { key = "p99_us", label = "p99 round trip (us)", better = "lower", fmt = "us",
            info = true },
          { key = "server_us_per_msg", label = "server CPU per message (us, approx.)",
            better = "lower", fmt = "f1", info = true },
          { key = "compression_ratio", label = "compression ratio (received)",
            better = "higher", fmt = "f2", info = true },
      } },
    { id = "fanout_deflate", app = "pubsub", mode = "broadcast", deflate = true,
      title = "Compressed fan-out: 1 publisher, 1,000 subscribers, 1 KiB JSON, 8 publishes in "
          .. "flight, permessage-deflate",
      args = function(pid)
          return ("--subscribers 1000 --size 1K --json --deflate --window 8 --server-pid %d %s")
              :format(pid, TIMED())
      end,
      metrics = {
          { key = "deliveries_per_sec", label = "deliveries/s", better = "higher",
            fmt = "int", bun = 1 },
          { key = "rss_per_conn_bytes", label = "server RSS per connection (bytes)",
            better = "lower", fmt = "int", bun = 2 },
          { key = "p99_us", label = "p99 delivery latency (us)", better = "lower", fmt = "us",
            info = true },
          { key = "server_us_per_msg", label = "server CPU per message (us, approx.)",
            better = "lower", fmt = "f1", info = true },
          { key = "compression_ratio", label = "compression ratio (received)",
            better = "higher", fmt = "f2", info = true },
          { key = "lost", label = "lost (sum over rounds)", better = "lower", fmt = "int",
            sum = true, zero = true },
          { key = "duplicated", label = "duplicated (sum over rounds)", better = "lower",
            fmt = "int", sum = true, zero = true },
      } },
    { id = "idle_10k", app = "echo", mode = "connect", conns = 10000,
      title = "10,000 idle connections",
      args = function(pid)
          return ("--conns 10000 --sources %s --server-pid %d --hold 1"):format(SOURCES, pid)
      end,
      metrics = {
          { key = "rss_per_conn_bytes", label = "server RSS per connection (bytes)",
            better = "lower", fmt = "int", bun = 1, ws = 1 },
          { key = "rss_after_kb", label = "server RSS with them open (KiB)", better = "lower",
            fmt = "int", info = true },
          { key = "seconds", label = "time to connect all (s)", better = "lower", fmt = "f2",
            info = true },
      } },
    { id = "idle_100k", app = "echo", mode = "connect", conns = 100000, big = true,
      title = "100,000 idle connections (source addresses " .. SOURCES .. ")",
      args = function(pid)
          return ("--conns 100000 --sources %s --server-pid %d --hold 2"):format(SOURCES, pid)
      end,
      metrics = {
          { key = "rss_after_kb", label = "server RSS with them open (KiB)", better = "lower",
            fmt = "int", bun = 1, ws = 1 },
          { key = "rss_per_conn_bytes", label = "server RSS per connection (bytes)",
            better = "lower", fmt = "int", info = true },
          { key = "seconds", label = "time to connect all (s)", better = "lower", fmt = "f2",
            info = true },
      } },
}

-- The throughput against connection count sweep (the plot): the 100-connection point is
-- echo_throughput itself.
local SWEEP = { 1, 10, 100, 1000 }
for _, n in ipairs(SWEEP) do
    if n ~= 100 then
        SCENARIOS[#SCENARIOS + 1] = {
            id = "sweep_" .. n, app = "echo", mode = "echo", sweep = n,
            title = ("Sweep: %d connection%s x 16 in flight x 32 B text"):format(n,
                n == 1 and "" or "s"),
            args = function()
                return ("--conns %d --depth 16 --size 32 %s"):format(n, TIMED())
            end,
            metrics = {
                { key = "msgs_per_sec", label = "messages/s", better = "higher", fmt = "int",
                  info = true },
            } }
    end
end

-- ---- filters and preconditions ---------------------------------------------------------------

local function set_of(list)
    if not list then return nil end
    local s = {}
    for w in list:gmatch("[^,%s]+") do s[w] = true end
    return s
end

local want_servers = set_of(os.getenv("BENCH_SERVERS"))
local want_scen = set_of(os.getenv("BENCH_SCENARIOS"))
local servers, scenarios, skipped = {}, {}, {}
for _, s in ipairs(SERVERS) do
    if s and (not want_servers or want_servers[s.id]) then servers[#servers + 1] = s end
end

local nofile = tonumber(trim(capture("ulimit -Hn"))) or math.huge
for _, sc in ipairs(SCENARIOS) do
    if not want_scen or want_scen[sc.id] then
        if sc.big and not BIG then
            skipped[#skipped + 1] = sc.title .. ": skipped (BENCH_BIG=0)"
        elseif sc.conns and nofile < sc.conns + 1000 then
            skipped[#skipped + 1] = ("%s: skipped: the open-files limit here is %d (ulimit -Hn), "
                .. "fewer than the %d descriptors the server and wsload each need; raise it "
                .. "(as root with CAP_SYS_RESOURCE, or LimitNOFILE=) to run it"):format(
                sc.title, nofile, sc.conns + 1000)
        else
            scenarios[#scenarios + 1] = sc
        end
    end
end

local function need_exec(path, what)
    if os.execute("test -x " .. q(path)) ~= true then
        io.stderr:write(("bench: %s is missing (%s); run `make bench`\n"):format(path, what))
        os.exit(2)
    end
end
need_exec(WSLOAD, "the load generator: make -C bench")
for _, s in ipairs(servers) do
    if s.id == "moonwire" or s.id == "moonwire_ctx" then need_exec(MOONWIRE, "make") end
    if s.id == "baseline" then need_exec(BASELINE, "BENCH_BASELINE") end
    if s.id == "bun" then need_exec(BUN, "npm install in bench/anchors") end
end
if os.execute("command -v taskset >/dev/null") ~= true then
    io.stderr:write("bench: taskset (util-linux) is missing\n")
    os.exit(2)
end

local WORK = trim(capture("mktemp -d /tmp/moonwire-bench.XXXXXX"))

-- ---- processes -------------------------------------------------------------------------------

-- Alive and not a zombie (a server whose parent shell exited may wait unreaped).
local function alive(pid)
    local st = read_file("/proc/" .. pid .. "/stat")
    if not st then return false end
    local state = st:match("%) (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
end

-- Starts CMD in ROOT on SRV_CPU with the open-files limit raised to the hard limit; the pid
-- returned is the server's own (sh and taskset exec it).
local function spawn(cmd, logfile)
    local inner = ("cd %s && ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec taskset -c %s %s")
        :format(q(ROOT), SRV_CPU, cmd)
    local out = capture(("sh -c %s >%s 2>&1 </dev/null & echo $!"):format(q(inner),
        q(logfile)))
    return tonumber(trim(out))
end

local function stop(pid)
    if not alive(pid) then return end
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    for _ = 1, 100 do
        if not alive(pid) then return end
        sleep(0.1)
    end
    os.execute("kill -KILL " .. pid .. " 2>/dev/null")
    for _ = 1, 20 do
        if not alive(pid) then return end
        sleep(0.1)
    end
end

local CLK_TCK = tonumber(trim(capture("getconf CLK_TCK"))) or 100

-- Seconds since boot (10 ms resolution) and a process's CPU seconds (all threads, user+sys).
local function uptime()
    return tonumber((read_file("/proc/uptime") or ""):match("^(%S+)")) or 0
end
local function cpu_seconds(pid)
    local st = read_file("/proc/" .. pid .. "/stat")
    if not st then return nil end
    local fields = {}
    for f in st:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = f end
    -- after the command: state is field 3, utime 14 and stime 15 of the whole line
    return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
end

-- The machine's steal time (a virtual machine's CPUs taken by the host), in seconds.
local function steal_seconds()
    local line = (read_file("/proc/stat") or ""):match("^cpu%s+([^\n]+)")
    if not line then return 0 end
    local v = {}
    for n in line:gmatch("%d+") do v[#v + 1] = tonumber(n) end
    return (v[8] or 0) / CLK_TCK
end

-- The share of all CPUs busy over SECONDS (from /proc/stat): other work on the machine
-- competes with the server and the generator for their cores.
local function cpu_ticks()
    local line = (read_file("/proc/stat") or ""):match("^cpu%s+([^\n]+)") or ""
    local v, total = {}, 0
    for n in line:gmatch("%d+") do v[#v + 1] = tonumber(n); total = total + tonumber(n) end
    return total, (v[4] or 0) + (v[5] or 0)
end
local function busy_share(secs)
    local t0, i0 = cpu_ticks()
    sleep(secs)
    local t1, i1 = cpu_ticks()
    if t1 <= t0 then return 0 end
    return 1 - (i1 - i0) / (t1 - t0)
end

local function start_server(srv, sc, logfile)
    local pid = spawn(srv.cmd(sc), logfile)
    if not pid then return nil, "could not start" end
    for _ = 1, 400 do -- up to 20 s
        local text = read_file(logfile) or ""
        local port = text:match(srv.ready)
        if port then return pid, tonumber(port) end
        if not alive(pid) then
            return nil, "exited before it was ready: " .. trim(text):sub(-400)
        end
        sleep(0.05)
    end
    stop(pid)
    return nil, "no ready line within 20 s"
end

local function parse_result(out)
    local line
    for l in out:gmatch("[^\n]+") do
        if l:match("^RESULT ") then line = l end
    end
    if not line then return nil end
    local r = { _line = line }
    for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
    return r
end

-- ---- one run ---------------------------------------------------------------------------------

local runs_txt = {}
local results = {} -- results[scenario id][server id] = { run, run, ... }
local failures = {}
local moonwire_failed = false
local runno = 0

local function run_one(round, sc, srv)
    runno = runno + 1
    local tag = ("%s-%s-r%d"):format(sc.id, srv.id, round)
    local slog = ("%s/%s.server.log"):format(WORK, tag)
    local pid, port = start_server(srv, sc, slog)
    local rec = { ok = false }
    if not pid then
        rec.why = "server: " .. port
    else
        local limit = math.floor(WARMUP + SECONDS + 60 + (sc.conns or 0) / 500)
        local cmd = ("cd %s && sh -c %s 2>&1"):format(q(ROOT), q(("ulimit -n \"$(ulimit -Hn)\" "
            .. "2>/dev/null; exec timeout -k 5 %d taskset -c %s %s %s --url "
            .. "ws://127.0.0.1:%d/ %s --cpu %s"):format(limit, GEN_CPU, q(WSLOAD), sc.mode,
            port, sc.args(pid), GEN_CPU)))
        local t0, c0 = uptime(), cpu_seconds(pid)
        local out, code = capture(cmd)
        local t1, c1 = uptime(), cpu_seconds(pid)
        write_file(("%s/%s.wsload.log"):format(WORK, tag), out)
        local died = not alive(pid)
        stop(pid)
        local r = parse_result(out)
        if r then
            rec = r
            if c0 and c1 and t1 > t0 then
                rec.server_cpu = (c1 - c0) / (t1 - t0)
                r._line = r._line .. (" server_cpu=%.2f"):format(rec.server_cpu)
                -- Server CPU per message sent or delivered: less noisy than the rate on a
                -- machine shared with other work (approximate: the CPU time also covers
                -- connecting, warm-up and closing).
                local rate = tonumber(r.msgs_per_sec or r.deliveries_per_sec)
                if rate and rate > 0 then
                    rec.server_us_per_msg = rec.server_cpu * 1e6 / rate
                    r._line = r._line .. (" server_us_per_msg=%.2f"):format(rec.server_us_per_msg)
                end
            end
            rec.ok = code == 0 and not died
            if died then rec.why = "the server died during the run"
            elseif code ~= 0 then
                rec.why = ("wsload exit %d (errors=%s lost=%s duplicated=%s)"):format(code,
                    tostring(r.errors), tostring(r.lost or 0), tostring(r.duplicated or 0))
            end
        else
            rec.why = ("no RESULT line (wsload exit %d%s): %s"):format(code,
                died and ", the server died" or "", trim(out):sub(-300):gsub("\n", " | "))
        end
        runs_txt[#runs_txt + 1] = ("round=%d scenario=%s server=%s status=%s %s"):format(
            round, sc.id, srv.id, rec.ok and "ok" or "FAILED", r and r._line or "(no RESULT)")
    end
    if not rec.ok then
        failures[#failures + 1] = ("round %d, %s, %s: %s (logs: %s/%s.*)"):format(round, sc.id,
            srv.name, rec.why or "?", WORK, tag)
        if srv.id == "moonwire" or srv.id == "moonwire_ctx" then moonwire_failed = true end
    end
    results[sc.id] = results[sc.id] or {}
    results[sc.id][srv.id] = results[sc.id][srv.id] or {}
    table.insert(results[sc.id][srv.id], rec)
    local m = sc.metrics[1]
    log("%-16s %-9s round %d/%d: %s%s", sc.id, srv.id, round, ROUNDS,
        rec[m.key] ~= nil and (m.key .. "=" .. tostring(rec[m.key])) or "-",
        rec.ok and (rec.gen_bound == 1 and " (generator-bound)" or "") or ("  FAILED: "
            .. tostring(rec.why)))
end

-- ---- versions and the machine ----------------------------------------------------------------

local function first_line(cmd)
    local out = capture(cmd .. " 2>/dev/null")
    return trim(out:match("[^\n]*") or "")
end

local cpuinfo = read_file("/proc/cpuinfo") or ""
local ncpu = select(2, cpuinfo:gsub("\nprocessor%s*:", "")) + (cpuinfo:match("^processor") and 1
    or 0)
local machine = {
    cpu = trim(cpuinfo:match("model name%s*:%s*([^\n]+)") or "unknown"),
    cpus = ncpu,
    mem = (function()
        local kb = tonumber((read_file("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)"))
        return kb and ("%.1f GiB"):format(kb / 1048576) or "?"
    end)(),
    kernel = first_line("uname -r"),
    os = ((read_file("/etc/os-release") or ""):match('PRETTY_NAME="([^"]+)"')) or "?",
    nofile = nofile,
}
local versions = {
    moonwire = first_line(q(MOONWIRE) .. " --version"),
    baseline = BASELINE and first_line(q(BASELINE) .. " --version") or nil,
    lua = first_line("dpkg-query -W -f='${Version}' liblua5.4-0"),
    bun = first_line(q(BUN) .. " --version"),
    node = first_line(q(NODE) .. " --version"),
    ws = ((read_file(ROOT .. "/bench/anchors/node_modules/ws/package.json") or "")
        :match('"version"%s*:%s*"([^"]+)"')) or "?",
    bufferutil = ((read_file(ROOT .. "/bench/anchors/node_modules/bufferutil/package.json") or "")
        :match('"version"%s*:%s*"([^"]+)"')) or "not installed",
    wsload_cc = first_line("cc --version"),
}

-- ---- the runs --------------------------------------------------------------------------------

log("moonwire bench: %d round(s) x %d scenario(s) x %d server(s), %gs + %gs warm-up each; "
    .. "server on CPU %s, wsload on CPU %s; logs in %s", ROUNDS, #scenarios, #servers, SECONDS,
    WARMUP, SRV_CPU, GEN_CPU, WORK)
for _, s in ipairs(skipped) do log("%s", s) end
local busy_before = busy_share(2)
if busy_before > 0.05 then
    log("warning: the machine is not idle (%.0f%% of the CPUs busy before the bench started); "
        .. "other work competes with the servers and wsload and makes the numbers noisy",
        100 * busy_before)
end
local started, steal0, up0 = os.time(), steal_seconds(), uptime()
for round = 1, ROUNDS do
    for _, sc in ipairs(scenarios) do
        for _, srv in ipairs(servers) do
            if runs_in(srv, sc) then run_one(round, sc, srv) end
        end
    end
end
local elapsed = os.time() - started
local steal_pct = 100 * (steal_seconds() - steal0) / math.max(0.01, (uptime() - up0)
    * machine.cpus)

-- ---- medians and the report ------------------------------------------------------------------

local function median(vals)
    if #vals == 0 then return nil end
    table.sort(vals)
    local n = #vals
    if n % 2 == 1 then return vals[(n + 1) // 2] end
    return (vals[n // 2] + vals[n // 2 + 1]) / 2
end

-- The median (or sum) of a metric over the clean runs, how many runs it is over, and how many
-- of them were generator-bound.
local function stat(sc, srv, m)
    local runs = results[sc.id] and results[sc.id][srv.id] or {}
    local vals, bound, n = {}, 0, 0
    for _, r in ipairs(runs) do
        if (r.ok or (m.sum and r[m.key] ~= nil)) and type(r[m.key]) == "number" then
            vals[#vals + 1] = r[m.key]
            n = n + 1
            if r.gen_bound == 1 then bound = bound + 1 end
        end
    end
    if #vals == 0 then return nil, 0, 0, #runs end
    if m.sum then
        local s = 0
        for _, v in ipairs(vals) do s = s + v end
        return s, n, bound, #runs
    end
    return median(vals), n, bound, #runs
end

local function commas(n)
    local s = ("%d"):format(math.floor(n + 0.5))
    local neg = s:sub(1, 1) == "-" and "-" or ""
    s = s:gsub("^-", "")
    return neg .. s:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

local function fmtv(v, f)
    if v == nil then return "—" end
    if f == "int" then return commas(v) end
    if f == "us" then return v >= 100 and commas(v) or ("%.1f"):format(v) end
    if f == "f1" then return ("%.1f"):format(v) end
    if f == "f2" then return ("%.2f"):format(v) end
    return tostring(v)
end

-- moonwire's advantage: > 1 means moonwire is better, whichever way the metric points.
local function advantage(mw, other, m)
    if not mw or not other or m.zero then return nil end
    if m.better == "higher" then return other > 0 and mw / other or nil end
    if mw <= 0 then return other > 0 and math.huge or 1 end
    return other / mw
end

local function fmt_adv(a)
    if a == nil then return "—" end
    if a == math.huge then return "∞" end
    return ("%.2f×"):format(a)
end

local by_id = {}
for _, s in ipairs(servers) do by_id[s.id] = s end
local has = { moonwire = by_id.moonwire, moonwire_ctx = by_id.moonwire_ctx, bun = by_id.bun,
    node = by_id.node }

local md = {}
local function out(s) md[#md + 1] = s or "" end

-- The compressed scenarios get a section of their own (three servers, other columns); pout
-- writes the parts about the others, left out when only compressed ones ran.
local plain, compressed = {}, {}
for _, sc in ipairs(scenarios) do
    table.insert(sc.deflate and compressed or plain, sc)
end
local function pout(s) if #plain > 0 then out(s) end end

out(("# moonwire benchmark, %s"):format(DATE))
out()
if ROUNDS < 3 or SECONDS < 5 then
    out(("**A smoke run (%d round(s) of %g s): it shows the harness works, the numbers are not a "
        .. "record.** Run `make bench` with the defaults (3 rounds of 5 s) for that."):format(
        ROUNDS, SECONDS))
    out()
end
out(("Generated by `make bench` (bench/run.lua) at %s UTC in %d min %d s: %d round(s), %g s "
    .. "measured after %g s of warm-up per run, medians over the rounds. Each server runs alone, "
    .. "pinned to CPU %s (`taskset -c %s`), freshly started for every run; the load generator "
    .. "(build/wsload) is pinned to CPU %s. Servers alternate within each scenario (moonwire, Bun, "
    .. "Node ws; the compressed ones: moonwire shared, moonwire context, Bun), round after round.")
    :format(os.date("!%Y-%m-%d %H:%M"), elapsed // 60,
    elapsed % 60, ROUNDS, SECONDS, WARMUP, SRV_CPU, SRV_CPU, GEN_CPU))
out()
out("## Machine")
out()
out(("- CPU: %s, %d logical CPU(s)"):format(machine.cpu, machine.cpus))
out(("- memory: %s; kernel %s; %s"):format(machine.mem, machine.kernel, machine.os))
out(("- open-files hard limit: %s"):format(tostring(machine.nofile)))
out(("- CPU time stolen by the hypervisor during the bench: %.1f%% (from /proc/stat; high "
    .. "values make the numbers noisy)"):format(steal_pct))
out(("- CPUs busy before the bench started (other work on the machine): %.0f%%%s"):format(
    100 * busy_before, busy_before > 0.05 and " — **not idle: these numbers are noisy**"
    or ""))
out()
out("## Versions")
out()
out(("- %s (Lua handlers; liblua5.4 %s), config bench/moonwire-bench.conf.lua"):format(
    versions.moonwire, versions.lua))
out(("- Bun %s (Bun.serve websocket, uWebSockets; bench/anchors/bun_*.js)"):format(versions.bun))
if #compressed > 0 then
    out(("- zlib %s (moonwire and wsload: Debian's libz; Bun has its own)"):format(
        first_line("dpkg-query -W -f='${Version}' zlib1g")))
end
out(("- Node %s with ws %s (bufferutil %s; bench/anchors/node_*.js)"):format(versions.node,
    versions.ws, versions.bufferutil))
out()

-- Summary: every judged metric.
pout("## Summary")
pout()
pout("Advantage = how many times better moonwire is (higher throughput, or lower latency / "
    .. "memory); the target is the advantage the issue asks for (1.00× = at least as good).")
pout()
pout("| scenario | metric | moonwire | Bun | Node ws | vs Bun (target) | vs ws (target) | |")
pout("|---|---|---:|---:|---:|---:|---:|---|")
local verdicts = { met = 0, missed = 0 }
local notes = {}
local function cell(sc, srv_id, m)
    if not has[srv_id] then return nil, "n/a" end
    local v, n, bound, total = stat(sc, has[srv_id], m)
    local s = fmtv(v, m.fmt)
    if v ~= nil and bound > 0 then s = s .. " †" end
    if v ~= nil and n < total and not m.sum then s = s .. (" (%d/%d)"):format(n, total) end
    if v == nil and total > 0 then s = "failed" end
    return v, s
end
for _, sc in ipairs(plain) do
    for _, m in ipairs(sc.metrics) do
        if not m.info then
            local mw, mws = cell(sc, "moonwire", m)
            local bun, buns = cell(sc, "bun", m)
            local node, nodes = cell(sc, "node", m)
            local ab, aw = advantage(mw, bun, m), advantage(mw, node, m)
            local ok = true
            local judged = false
            if ab and m.bun then judged = true; ok = ok and ab >= m.bun end
            if aw and m.ws then judged = true; ok = ok and aw >= m.ws end
            if m.zero and mw then judged = true; ok = mw == 0 end
            local verdict = judged and (ok and "met" or "**missed**") or ""
            if judged then verdicts[ok and "met" or "missed"] = verdicts[ok and "met" or "missed"]
                + 1 end
            pout(("| %s | %s | %s | %s | %s | %s (%s) | %s (%s) | %s |"):format(sc.id, m.label,
                mws, buns, nodes, fmt_adv(ab), m.zero and "moonwire: 0" or m.bun
                and ("≥ %.2f×"):format(m.bun) or "—", fmt_adv(aw), m.zero and "moonwire: 0"
                or m.ws and ("≥ %.2f×"):format(m.ws) or "—", verdict))
        end
    end
end
pout()
pout(("Targets met: %d, missed: %d. † = generator-bound in at least one round (wsload used "
    .. ">= 90%% of its core): that number measures wsload as much as the server, the server may be "
    .. "faster. (k/n) = median over the k of n rounds that completed cleanly."):format(
    verdicts.met, verdicts.missed))
pout()

-- Against an older build of moonwire, when one ran (BENCH_BASELINE).
if by_id.baseline and by_id.moonwire then
    out("## moonwire against the baseline build")
    out()
    out(("Baseline: `%s` (%s), alternating with build/moonwire in every round. Ratio = how "
        .. "many times better this build is (1.00× = the same; under 1 = worse)."):format(
        BASELINE, versions.baseline or "?"))
    out()
    out("| scenario | metric | moonwire | baseline | ratio |")
    out("|---|---|---:|---:|---:|")
    for _, sc in ipairs(plain) do
        for _, m in ipairs(sc.metrics) do
            if not m.zero then
                local mw, mws = cell(sc, "moonwire", m)
                local base, bases = stat(sc, by_id.baseline, m), nil
                bases = fmtv(base, m.fmt)
                out(("| %s | %s | %s | %s | %s |"):format(sc.id, m.label, mws, bases,
                    fmt_adv(advantage(mw, base, m))))
            end
        end
    end
    out()
end

-- The compressed scenarios: both of moonwire's deflate modes against Bun.
if #compressed > 0 then
    out("## Compressed (permessage-deflate, issue 16)")
    out()
    out("wsload offers what browsers offer (`permessage-deflate; client_max_window_bits`), "
        .. "compresses every message it sends (zlib level 1) and inflates every compressed one "
        .. "it receives before checking it. moonwire: `deflate = { mode = \"shared\" }` "
        .. "(bench/moonwire-bench-deflate-shared.conf.lua) and `mode = \"context\"` "
        .. "(…-context.conf.lua), the other settings at their defaults; Bun: `perMessageDeflate: "
        .. "true` (bench/anchors/bun_*.js with `deflate`). RSS per connection = the server's "
        .. "RSS growth from before connecting to the end of the measured window, divided by the "
        .. "connections. Advantage as above; the memory target (a fraction of Bun's) is taken "
        .. "as at most half.")
    local met, missed = 0, 0
    for _, sc in ipairs(compressed) do
        out()
        out(("### %s (`%s`)"):format(sc.title, sc.id))
        out()
        out(("`wsload %s %s`"):format(sc.mode, (sc.args(0):gsub("%-%-server%-pid 0",
            "--server-pid PID"):gsub("%s+$", ""))))
        out()
        out("| metric | moonwire shared | moonwire context | Bun | shared vs Bun | "
            .. "context vs Bun | target | |")
        out("|---|---:|---:|---:|---:|---:|---:|---|")
        for _, m in ipairs(sc.metrics) do
            local sh, shs = cell(sc, "moonwire", m)
            local cx, cxs = cell(sc, "moonwire_ctx", m)
            local _, buns = cell(sc, "bun", m)
            local bun = has.bun and stat(sc, has.bun, m) or nil
            local as, ac = advantage(sh, bun, m), advantage(cx, bun, m)
            local verdict = ""
            -- judged over the modes that ran
            if not m.info and (m.zero or as or ac) then
                local ok
                if m.zero then ok = (sh or 0) == 0 and (cx or 0) == 0
                else ok = (not as or as >= m.bun) and (not ac or ac >= m.bun) end
                verdict = ok and "met" or "**missed**"
                if ok then met = met + 1 else missed = missed + 1 end
            end
            out(("| %s | %s | %s | %s | %s | %s | %s | %s |"):format(m.label, shs, cxs, buns,
                fmt_adv(as), fmt_adv(ac), m.info and "—" or m.zero and "moonwire: 0"
                or ("≥ %.2f×"):format(m.bun), verdict))
        end
        local c = {}
        for _, id in ipairs({ "moonwire", "moonwire_ctx", "bun" }) do
            if has[id] then
                local sv = stat(sc, has[id], { key = "server_cpu" })
                local gv = stat(sc, has[id], { key = "gen_cpu" })
                c[#c + 1] = ("%s %s / %s"):format(has[id].name, sv and ("%.2f"):format(sv) or "—",
                    gv and ("%.2f"):format(gv) or "—")
            end
        end
        out()
        out("CPU used (medians, 1.00 = a full core), server / wsload: " .. table.concat(c, ", "))
    end
    out()
    out(("Compressed targets (both moonwire modes against Bun) met: %d, missed: %d."):format(met,
        missed))
    out()
end

-- Per-scenario detail.
pout("## Scenarios")
for _, sc in ipairs(plain) do
    pout()
    pout(("### %s (`%s`)"):format(sc.title, sc.id))
    pout()
    pout(("`wsload %s %s`"):format(sc.mode, (sc.args(0):gsub("%-%-server%-pid 0",
        "--server-pid PID"):gsub("%s+$", ""))))
    pout()
    pout("| metric | moonwire | Bun | Node ws | moonwire vs Bun | moonwire vs ws |")
    pout("|---|---:|---:|---:|---:|---:|")
    for _, m in ipairs(sc.metrics) do
        local mw, mws = cell(sc, "moonwire", m)
        local bun, buns = cell(sc, "bun", m)
        local node, nodes = cell(sc, "node", m)
        pout(("| %s | %s | %s | %s | %s | %s |"):format(m.label, mws, buns, nodes,
            fmt_adv(advantage(mw, bun, m)), fmt_adv(advantage(mw, node, m))))
    end
    -- the generator's load, so a reader can see how close to bound it was
    local g = {}
    for _, id in ipairs({ "moonwire", "bun", "node" }) do
        if has[id] then
            local v = stat(sc, has[id], { key = "gen_cpu" })
            g[#g + 1] = ("%s %s"):format(has[id].name, v and ("%.2f"):format(v) or "—")
        end
    end
    local c = {}
    for _, id in ipairs({ "moonwire", "bun", "node" }) do
        if has[id] then
            local v = stat(sc, has[id], { key = "server_cpu" })
            c[#c + 1] = ("%s %s"):format(has[id].name, v and ("%.2f"):format(v) or "—")
        end
    end
    pout()
    pout("CPU used (medians, 1.00 = a full core) by the server while wsload ran (connecting "
        .. "and warm-up included): " .. table.concat(c, ", ") .. "; by wsload: "
        .. table.concat(g, ", "))
end
pout()

-- Sweep
local dat = { "# echo throughput (messages/s, medians) against connections; 16 in flight x 32 B",
    "# conns moonwire bun node" }
local sweep_rows = {}
for _, n in ipairs(SWEEP) do
    local sc
    for _, s in ipairs(scenarios) do if s.sweep == n then sc = s end end
    if sc then
        local m = { key = "msgs_per_sec" }
        local row = { n }
        for _, id in ipairs({ "moonwire", "bun", "node" }) do
            local v = has[id] and stat(sc, has[id], m) or nil
            row[#row + 1] = v and ("%.0f"):format(v) or "NaN"
        end
        dat[#dat + 1] = table.concat(row, " ")
        sweep_rows[#sweep_rows + 1] = row
    end
end
pout("## Throughput against connections")
pout()
if #sweep_rows > 0 then
    pout("Echo, 16 messages in flight per connection, 32 B text; messages/s (medians). Data: "
        .. ("`%s.dat`; plot: `%s.png`."):format(STEM, STEM))
    pout()
    pout("| connections | moonwire | Bun | Node ws |")
    pout("|---:|---:|---:|---:|")
    for _, row in ipairs(sweep_rows) do
        local c = {}
        for i = 2, 4 do c[#c + 1] = row[i] == "NaN" and "—" or commas(tonumber(row[i])) end
        pout(("| %d | %s |"):format(row[1], table.concat(c, " | ")))
    end
    pout()
    pout(("![throughput against connections](%s.png)"):format(STEM))
else
    pout("(not run)")
end
pout()

if #skipped > 0 or #failures > 0 then
    out("## Skipped and failed runs")
    out()
    for _, s in ipairs(skipped) do out("- " .. s) end
    for _, f in ipairs(failures) do out("- " .. f) end
    out()
end
out(("Every RESULT line: `%s.runs.txt`."):format(STEM))

os.execute("mkdir -p " .. q(OUT))
local base = OUT .. "/" .. STEM
write_file(base .. ".md", table.concat(md, "\n") .. "\n")
write_file(base .. ".runs.txt", table.concat(runs_txt, "\n") .. "\n")
if #sweep_rows > 0 then
    write_file(base .. ".dat", table.concat(dat, "\n") .. "\n")
    if os.execute("command -v gnuplot >/dev/null") == true then
        local cmd = ("gnuplot -e %s %s"):format(q(("datafile='%s'; outfile='%s'; subtitle='%s'")
            :format(base .. ".dat", base .. ".png", ("%s, %s; %s"):format(machine.cpu, DATE,
            "server on 1 core, wsload on another"):gsub("'", ""))), q(ROOT .. "/bench/plot.gp"))
        if os.execute(cmd) ~= true then log("gnuplot failed: no %s.png", STEM) end
    else
        log("gnuplot is not installed: no %s.png (apt-get install gnuplot-nox)", STEM)
    end
end

log("wrote %s.md%s (%d min %d s)", base, #sweep_rows > 0 and ", .dat, .png" or "",
    elapsed // 60, elapsed % 60)
if #failures > 0 then
    log("%d run(s) failed:", #failures)
    for _, f in ipairs(failures) do log("  %s", f) end
else
    os.execute("rm -rf " .. q(WORK))
end
os.exit(moonwire_failed and 1 or 0)
