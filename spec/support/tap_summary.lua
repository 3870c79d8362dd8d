-- Adds up the TAP files of a test run and prints the final line: "N passed, M failed".
-- A suite counts as failed once more when it exited with an error but reported no failing test
-- (a crash, a spec file that did not load), and for every planned test that never reported.
local dir = assert(arg[1], "usage: tap_summary.lua RESULTS_DIR")

local passed, failed, notes = 0, 0, {}
-- Every suite leaves a .status file; its .tap may be missing if it could not even start.
local p = io.popen("ls " .. dir .. "/*.status 2>/dev/null")
for status_path in p:lines() do
    local name = status_path:match("([^/]+)%.status$")
    local ok, bad, plan = 0, 0, nil
    local tap = io.open(dir .. "/" .. name .. ".tap")
    local lines = tap and tap:lines() or function() return nil end
    for line in lines do
        if line:match("^ok[ %d]") or line == "ok" then
            ok = ok + 1
        elseif line:match("^not ok") then
            bad = bad + 1
            notes[#notes + 1] = name .. ": " .. line
        else
            local n = line:match("^1%.%.(%d+)")
            if n then plan = tonumber(n) end
        end
    end
    if plan and ok + bad < plan then
        notes[#notes + 1] = string.format("%s: %d of %d planned tests never reported", name,
            plan - ok - bad, plan)
        bad = bad + (plan - ok - bad)
    end
    if tap then tap:close() end
    local sf = io.open(status_path)
    local status = sf and tonumber(sf:read("a")) or 0
    if sf then sf:close() end
    if status ~= 0 and bad == 0 then
        notes[#notes + 1] = string.format("%s: exited with status %d without a failing test", name,
            status)
        bad = 1
    end
    passed, failed = passed + ok, failed + bad
end
p:close()

if #notes > 0 then
    print("\nfailures:")
    for _, n in ipairs(notes) do print("  " .. n) end
end
print(string.format("%d passed, %d failed", passed, failed))
os.exit(failed == 0 and passed > 0 and 0 or 1)
