-- Issue 16: permessage-deflate (RFC 7692). The negotiation header by header over real
-- handshakes, in both modes and off; frames with RSV1 where it is not allowed; 5000 random
-- messages echoed byte-identical through python3-websockets in both modes; mixed subscribers
-- (shared, context, none) receiving interleaved publishes and direct sends, hash compared; a
-- publish to 1000 subscribers compressed once (the metrics counter); a 100 MB zip bomb closed
-- with 1009 without the memory; the RSS of idle connections in each mode.
local socket = require "socket"
local ws = require "ws_client"
local server = require "server"

local PYTHON = "/usr/bin/python3"
local SCRIPT = "spec/support/deflate_check.py"

-- Echo on /echo; on /mixed: "sub" subscribes to "t", "pub:X" publishes X, "dm:X" sends X to
-- every connection of the app directly.
local APP = [[
local app = {}
local conns = {}
function app.open(conn) conns[conn.id] = conn end
function app.close(conn) conns[conn.id] = nil end
function app.message(conn, data, is_binary)
    if conn.path == "/mixed" then
        if data == "sub" then
            conn:subscribe("t")
            conn:send("subscribed")
        elseif data:sub(1, 4) == "pub:" then
            mw.publish("t", data:sub(5))
        elseif data:sub(1, 3) == "dm:" then
            local m = data:sub(4)
            for _, c in pairs(conns) do c:send(m) end
        end
        return
    end
    conn:send(data, is_binary)
end
return app
]]

-- Runs the script; returns its key=value lines as a table (and the raw output).
local function python(port, ...)
    local args = { ... }
    for i, a in ipairs(args) do args[i] = "'" .. tostring(a):gsub("'", "'\\''") .. "'" end
    local cmd = string.format("PYTHONIOENCODING=utf-8 timeout 120 %s %s %d %s 2>&1", PYTHON,
        SCRIPT, port, table.concat(args, " "))
    local p = io.popen(cmd)
    local output = p:read("a")
    local ok, _, code = p:close()
    assert.is_true(ok, "the script failed (status " .. tostring(code) .. "):\n" .. output)
    local result = {}
    for key, value in output:gmatch("([%w_]+)=([^\n]*)") do result[key] = value end
    assert.are.equal("True", result.done, output)
    return result, output
end

local function get(port, path)
    local req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"):format(path, port)
    local resp = assert(ws.http(port, req, { timeout = 5 }))
    return resp.status, resp.body
end

local function metric(port, name)
    local _, body = get(port, "/metrics")
    return tonumber(body:match("\n" .. name .. " (%S+)"))
end

local app_dir
setup(function() app_dir = server.app_dir { ["app.lua"] = APP } end)
teardown(function() server.remove(app_dir) end)

local function start(deflate, extra)
    return server.start { app = app_dir, config = "workers = 1\nadmin = { port = 0 }\n" ..
        "limits = { max_message = \"1M\" }\n" .. (deflate and ("deflate = " .. deflate .. "\n")
        or "") .. (extra or "") }
end

local SHARED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

-- offer(s) -> answer in shared mode (window_bits 11), in context mode (11); "none": declined.
local MATRIX = {
    { "Chromium's offer", { "permessage-deflate; client_max_window_bits" }, SHARED,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "a bare offer", { "permessage-deflate" }, SHARED,
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
    { "no offer", {}, "none", "none" },
    { "another extension", { "x-webkit-deflate-frame" }, "none", "none" },
    { "client_max_window_bits=10", { "permessage-deflate; client_max_window_bits=10" }, SHARED,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=10" },
    { "server_max_window_bits=10", { "permessage-deflate; server_max_window_bits=10" },
      SHARED .. "; server_max_window_bits=10",
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=10" },
    { "server_no_context_takeover", { "permessage-deflate; server_no_context_takeover" }, SHARED,
      SHARED },
    { "server_max_window_bits=8: declined", { "permessage-deflate; server_max_window_bits=8" },
      "none", "none" },
    { "server_max_window_bits=16: declined", { "permessage-deflate; server_max_window_bits=16" },
      "none", "none" },
    { "a duplicate: declined", { "permessage-deflate; client_max_window_bits; " ..
      "client_max_window_bits" }, "none", "none" },
    { "an unknown parameter: declined", { "permessage-deflate; foo=1" }, "none", "none" },
    { "a value on a flag: declined", { "permessage-deflate; server_no_context_takeover=1" },
      "none", "none" },
    { "a declined offer, then a good one", { "permessage-deflate; foo, permessage-deflate; " ..
      "client_max_window_bits" }, SHARED,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "two header lines, the first declined", { "permessage-deflate; server_max_window_bits=8",
      "permessage-deflate" }, SHARED,
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
}

describe("permessage-deflate", function()
    it("is off by default: every offer is declined", function()
        local srv = start(nil)
        for _, case in ipairs(MATRIX) do
            local r = python(srv.port, "handshake", table.unpack(case[2]))
            assert.are.equal("101", r.status, case[1])
            assert.are.equal("none", r.extensions, case[1])
        end
        assert.are.equal(0, srv:stop())
    end)

    for col, mode in ipairs { "shared", "context" } do
        it("answers each offer as RFC 7692 section 7 says (" .. mode .. " mode)", function()
            local srv = start("{ mode = \"" .. mode .. "\", window_bits = 11 }")
            for _, case in ipairs(MATRIX) do
                local r = python(srv.port, "handshake", table.unpack(case[2]))
                assert.are.equal("101", r.status, case[1])
                assert.are.equal(case[2 + col], r.extensions, case[1])
            end
            assert.are.equal(0, srv:stop())
        end)
    end

    it("refuses RSV1 on control and continuation frames (1002), broken data (1002) and "
       .. "inflated text that is not UTF-8 (1007)", function()
        local srv = start("true")
        for kind, code in pairs { control = "1002", continuation = "1002", garbage = "1002",
                                  badutf8 = "1007" } do
            local r, out = python(srv.port, "badframe", kind)
            assert.are.equal(SHARED, r.extensions, out)
            assert.are.equal(code, r.close_code, kind .. ":\n" .. out)
        end
        assert.are.equal(0, srv:stop())
    end)

    for _, mode in ipairs { "shared", "context" } do
        it("echoes 5000 random messages byte-identical (" .. mode .. " mode)", function()
            local srv = start("{ mode = \"" .. mode .. "\" }")
            local r, out = python(srv.port, "roundtrip", 5000, mode == "shared" and 1 or 2)
            assert.are.equal("permessage-deflate", r.extensions, out)
            assert.are.equal("5000", r.ok, out)
            assert.is_true(metric(srv:admin_port(), "moonwire_deflate_compressions_total") > 0)
            assert.are.equal(0, srv:stop())
        end)
    end

    it("keeps shared, context and plain subscribers byte-exact through interleaved publishes "
       .. "and direct sends", function()
        local srv = start("{ mode = \"context\" }")
        local r, out = python(srv.port, "mixed", 600, 7)
        assert.are.equal("permessage-deflate", r.ext_context, out)
        assert.are.equal("permessage-deflate", r.ext_shared, out)
        assert.are.equal("none", r.ext_plain, out)
        assert.are.equal("10", r.match_context, out)
        assert.are.equal("10", r.match_shared, out)
        assert.are.equal("10", r.match_plain, out)
        assert.are.equal(0, srv:stop())
    end)

    it("compresses a publish to 1000 subscribers once", function()
        local srv = start("true", "limits = { max_message = \"1M\", per_ip = 2000, " ..
            "max_connections = 2000, connects_per_second = 0 }\n")
        local admin = srv:admin_port()
        local before = metric(admin, "moonwire_deflate_compressions_total")
        local r, out = python(srv.port, "fanout", 1000)
        assert.are.equal("1000", r.received, out)
        assert.are.equal(before + 1, metric(admin, "moonwire_deflate_compressions_total"))
        assert.are.equal(0, srv:stop())
    end)

    it("closes a 100 MB zip bomb with 1009, its memory growing by less than 4 MiB", function()
        local srv = start("true")
        local admin = srv:admin_port()
        local r, out = python(srv.port, "bomb", srv.pid)
        assert.are.equal("101", r.status, out)
        assert.is_true(tonumber(r.compressed_bytes) < 200000, out)
        assert.are.equal("1009", r.close_code, out)
        assert.is_true(tonumber(r.hwm_growth_kib) < 4096, out)
        assert.are.equal(1, metric(admin, "moonwire_inflate_limit_closes_total"))
        assert.are.equal(0, srv:stop())
    end)

    it("costs an idle connection in shared mode no more than without compression", function()
        local figures = {}
        for _, case in ipairs {
            { "off", nil, "permessage-deflate; client_max_window_bits" },
            { "shared", "true", "permessage-deflate; client_max_window_bits" },
            { "context", "{ mode = \"context\" }", "permessage-deflate; client_max_window_bits" },
        } do
            local srv = start(case[2], "limits = { max_message = \"1M\", per_ip = 2000, " ..
                "max_connections = 2000, connects_per_second = 0 }\n")
            -- A first round warms the allocator and the connection table.
            python(srv.port, "idle", 500, srv.pid, case[3])
            local r, out = python(srv.port, "idle", 1000, srv.pid, case[3])
            figures[case[1]] = tonumber(r.per_conn_bytes)
            if case[2] then assert.is_nil(r.unanswered, out)
            else assert.are.equal("1000", r.unanswered, out) end
            assert.are.equal(0, srv:stop())
        end
        print(("\n# idle bytes per connection: off %d, shared %d, context %d"):format(
            figures.off, figures.shared, figures.context))
        assert.is_true(figures.shared <= figures.off + 1024,
            ("shared %d vs off %d"):format(figures.shared, figures.off))
        -- Context mode allocates nothing until a message is compressed or inflated.
        assert.is_true(figures.context <= figures.off + 1024,
            ("context %d vs off %d"):format(figures.context, figures.off))
    end)

    it("costs a context-mode connection tens of KB once it has compressed and inflated",
       function()
        local srv = start("{ mode = \"context\" }", "limits = { max_message = \"1M\", " ..
            "per_ip = 2000, max_connections = 2000, connects_per_second = 0 }\n")
        local admin = srv:admin_port()
        local r, out = python(srv.port, "busy", 500, srv.pid, admin)
        local per_conn = tonumber(r.zlib_bytes) / 500
        local after = metric(admin, "moonwire_deflate_memory_bytes")
        print(("\n# context mode after one message each: zlib %d bytes per connection, RSS %d "
            .. "bytes per connection; zlib %d bytes once they closed"):format(per_conn,
            tonumber(r.per_conn_bytes), after))
        -- Window 11: a 22 KB deflater and a 9 KB inflater (zlib's own formula), give or take.
        assert.is_true(per_conn > 20 * 1024 and per_conn <= 40 * 1024, out)
        assert.is_true(after < 256 * 1024, "the connections' streams were freed: " .. after)
        assert.are.equal(0, srv:stop())
    end)

    it("gives new connections shared mode once the memory budget is used", function()
        local srv = start("{ mode = \"context\", memory = 1 }")
        local r = python(srv.port, "handshake", "permessage-deflate; client_max_window_bits")
        assert.are.equal(SHARED, r.extensions)
        assert.are.equal(0, srv:stop())
    end)

    it("serves the chat example to Chromium with compression on, both ways", function()
        local chromium = require "chromium"
        local browser_path, no_browser = chromium.available()
        if not browser_path then
            pending(no_browser)
            return
        end
        for _, mode in ipairs { "shared", "context" } do
            local srv = server.start { app = "examples/chat", config = "workers = 1\n" ..
                "admin = { port = 0 }\ndeflate = { mode = \"" .. mode .. "\" }\n" }
            local admin = srv:admin_port()
            local browser = chromium.start()
            local ok, err = pcall(function()
                local page = browser:new_page()
                local url = ("http://127.0.0.1:%d/"):format(srv.port)
                page:navigate(url)
                page:eval("localStorage.clear(), true")
                page:navigate(url)
                page:eval([[document.getElementById('name-input').value = 'ada',
                            document.getElementById('name-form').requestSubmit(), true]])
                page:wait_for("document.getElementById('room-title').textContent === " ..
                    "'# general'", 10)
                local text = ("compressed hello from chromium, " .. mode .. " mode; "):rep(8) .. "end"
                page:eval(([[document.getElementById('say-input').value = %q,
                             document.getElementById('say-form').requestSubmit(), true]])
                    :format(text))
                page:wait_for(("document.getElementById('messages').textContent.includes(%q)")
                    :format(text), 10)
                assert.are.same({}, page:errors())
            end)
            browser:stop()
            local inflated = metric(admin, "moonwire_inflations_total")
            local compressed = metric(admin, "moonwire_deflate_compressions_total")
            assert.are.equal(0, srv:stop())
            assert.is_true(ok, tostring(err))
            assert.is_true(inflated >= 1, mode .. ": nothing came compressed from Chromium")
            assert.is_true(compressed >= 1, mode .. ": nothing went compressed to Chromium")
        end
    end)

    it("explains a bad deflate setting", function()
        for setting, want in pairs {
            ['{ mode = "fast" }'] = "deflate.mode must be",
            ['{ level = 10 }'] = "deflate.level must be",
            ['{ window_bits = 8 }'] = "deflate.window_bits must be",
            ['{ speed = 1 }'] = "deflate.speed is not a known setting",
            ['"yes"'] = "deflate must be true, false or a table",
        } do
            local srv = server.start { app = app_dir, config = "deflate = " .. setting .. "\n",
                                       expect_fail = true }
            assert.are_not.equal(0, srv.status)
            assert.truthy(srv:log():find(want, 1, true), srv:log())
            server.remove(srv.dir)
        end
    end)
end)
