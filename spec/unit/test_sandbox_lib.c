/* Tests for the library functions that pay for their work (core/sandbox_lib.h). The core is
 * differential: each case is a snippet of Lua run twice in one state, once with Lua 5.4's own
 * string, table and coroutine functions and once with sandbox_lib's, and the two outcomes
 * (results, or error message) must be the same. Then the meter: the work Lua's versions do
 * without bound (2^50 moves, shifts or reads, comparisons of long strings) is charged in small
 * instalments and stopped when the host says so; the coroutine functions report every thread
 * switch. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "sandbox_lib.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a host that counts ---------------------------------------------------------------------- */

/* What the host saw: work charged (refused past work_limit; 0: never), instalments, coroutines
 * made, and the threads reported running, as a string of letters: 'c' a coroutine, 'L' the
 * thread that called. */
static size_t work_total, work_calls, work_largest, work_limit, threads_made;
static char switches[64];

static bool count_work(lua_State *L, size_t work)
{
    (void)L;
    work_total += work;
    work_calls++;
    if (work > work_largest) work_largest = work;
    return work_limit == 0 || work_total <= work_limit;
}

static void made(lua_State *L, lua_State *co)
{
    (void)L;
    (void)co;
    threads_made++;
}

static void runs(lua_State *L, lua_State *to)
{
    size_t n = strlen(switches);
    if (n + 1 < sizeof switches) {
        switches[n] = to == L ? 'L' : 'c';
        switches[n + 1] = '\0';
    }
}

static void host_reset(size_t limit)
{
    work_total = work_calls = work_largest = threads_made = 0;
    work_limit = limit;
    switches[0] = '\0';
}

static const struct sblib_host counting_host = { count_work, made, runs, NULL };

/* ---- the differential harness --------------------------------------------------------------- */

/* check(src) runs the chunk src with (S, T, C) = Lua's string, table and coroutine libraries,
 * then with MINE's, and returns nil when both outcomes agree, or a description of both. An
 * outcome is "ok: " and the results serialized (tables by their sorted pairs), or "error: " and
 * the message. */
static const char harness_lua[] =
    "local fmt, concat, sort, pack = string.format, table.concat, table.sort, table.pack\n"
    "local function ser(v, depth)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return fmt('%q', v) end\n"
    "  if t == 'number' then return (math.type(v) or '?') .. ':' .. tostring(v) end\n"
    "  if t == 'table' and (depth or 0) < 3 then\n"
    "    local keys = {}\n"
    "    for k in next, v do keys[#keys + 1] = k end\n"
    "    sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "    local parts = {}\n"
    "    for i, k in ipairs(keys) do\n"
    "      parts[i] = ser(k, 3) .. '=' .. ser(rawget(v, k), (depth or 0) + 1)\n"
    "    end\n"
    "    return '{' .. concat(parts, ',') .. '}'\n"
    "  end\n"
    "  if t == 'table' or t == 'function' or t == 'thread' then return t end\n"
    "  return tostring(v)\n"
    "end\n"
    "local REAL = { string, table, coroutine, os }\n"
    "local function outcome(src, libs)\n"
    "  local f = assert(load(src, '=case', 't'))\n"
    "  local r = pack(pcall(f, libs[1], libs[2], libs[3], libs[4]))\n"
    "  if not r[1] then\n"
    "    if type(r[2]) ~= 'string' then return 'error object: ' .. ser(r[2]) end\n"
    "    return 'error: ' .. r[2]\n"
    "  end\n"
    "  local parts = {}\n"
    "  for i = 2, r.n do parts[#parts + 1] = ser(r[i]) end\n"
    "  return 'ok: ' .. concat(parts, ', ')\n"
    "end\n"
    "function check(src)\n"
    "  local a, b = outcome(src, REAL), outcome(src, MINE)\n"
    "  if a ~= b then\n"
    "    return fmt('%s\\n    lua:         %s\\n    sandbox_lib: %s', src, a, b)\n"
    "  end\n"
    "end\n";

/* A state with the standard libraries, MINE = { string, table, coroutine, os } copies of them
 * with sandbox_lib installed, and the harness. */
static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    cr_assert_not_null(L);
    luaL_openlibs(L);
    lua_createtable(L, 4, 4);
    static const char *const libs[] = { "string", "table", "coroutine", "os" };
    for (int i = 0; i < 4; i++) {
        lua_newtable(L);
        lua_getglobal(L, libs[i]);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        }
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, libs[i]);
        lua_rawseti(L, -2, i + 1);
    }
    sblib_install(L, -1, &counting_host);
    lua_setglobal(L, "MINE");
    int rc = luaL_loadbufferx(L, harness_lua, sizeof harness_lua - 1, "=harness", "t");
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, 0);
    cr_assert_eq(rc, LUA_OK, "harness: %s", lua_tostring(L, -1));
    host_reset(0);
    return L;
}

struct agree_case {
    const char *label;
    const char *src; /* a chunk; (S, T, C, O) = ... are the string, table, coroutine and os
                      * libraries */
};

#define LIBS "local S, T, C, O = ... "

static const struct agree_case cases[] = {
    /* string.rep */
    { "rep", LIBS "return S.rep('ab', 3)" },
    { "rep with sep", LIBS "return S.rep('ab', 3, ', ')" },
    { "rep once with sep", LIBS "return S.rep('ab', 1, ', ')" },
    { "rep twice with sep", LIBS "return S.rep('ab', 2, '-')" },
    { "rep 0", LIBS "return S.rep('ab', 0)" },
    { "rep negative", LIBS "return S.rep('ab', -5, 'x')" },
    { "rep min integer", LIBS "return S.rep('ab', math.mininteger)" },
    { "rep empty, sep", LIBS "return S.rep('', 4, 'xy')" },
    { "rep s, empty sep", LIBS "return S.rep('xy', 4, '')" },
    { "rep empty, empty sep, many", LIBS "return S.rep('', 1000, '')" },
    { "rep empty 5", LIBS "return S.rep('', 5)" },
    { "rep many", LIBS "return #S.rep('abc', 100000, '--')" },
    { "rep odd counts", LIBS "local t = {} for n = 1, 40 do t[n] = S.rep('a', n, 'bc') end "
                             "return table.concat(t, '|')" },
    { "rep with zeros", LIBS "return S.rep('a\\0b', 5, '\\0')" },
    { "rep too large", LIBS "return S.rep('x', 1 << 40)" },
    { "rep too large with sep", LIBS "return S.rep('x', 1 << 30, 'yy')" },
    { "rep overflowing length", LIBS "return S.rep('xx', math.maxinteger)" },
    { "rep float count", LIBS "return S.rep('x', 3.0)" },
    { "rep fractional count", LIBS "return S.rep('x', 2.5)" },
    { "rep string count", LIBS "return S.rep('x', '3')" },
    { "rep number subject", LIBS "return S.rep(12, 3)" },
    { "rep no count", LIBS "return S.rep('x')" },
    { "rep table subject", LIBS "return S.rep({}, 3)" },
    { "rep table sep", LIBS "return S.rep('x', 3, {})" },
    { "rep as a method", LIBS "local s = 'ab' return s.rep(s, 2)" },

    /* table.insert */
    { "insert at end", LIBS "local t = {1, 2} T.insert(t, 3) return t" },
    { "insert at 1", LIBS "local t = {1, 2, 3} T.insert(t, 1, 0) return t" },
    { "insert in the middle", LIBS "local t = {1, 2, 3} T.insert(t, 2, 'x') return t" },
    { "insert at #t + 1", LIBS "local t = {1, 2} T.insert(t, 3, 'x') return t" },
    { "insert at #t + 2", LIBS "local t = {1, 2} T.insert(t, 4, 'x') return t" },
    { "insert at 0", LIBS "local t = {1, 2} T.insert(t, 0, 'x') return t" },
    { "insert at -1", LIBS "local t = {1, 2} T.insert(t, -1, 'x') return t" },
    { "insert into empty at 1", LIBS "local t = {} T.insert(t, 1, 'x') return t" },
    { "insert nil", LIBS "local t = {1} T.insert(t, nil) return t" },
    { "insert with no value", LIBS "local t = {1} T.insert(t) return t" },
    { "insert with 4 arguments", LIBS "local t = {1} T.insert(t, 1, 2, 3) return t" },
    { "insert float position", LIBS "local t = {1, 2} T.insert(t, 1.0, 'x') return t" },
    { "insert bad position", LIBS "local t = {1, 2} T.insert(t, 1.5, 'x') return t" },
    { "insert into a string", LIBS "T.insert('abc', 'x')" },
    { "insert with __len", LIBS
      "local t = setmetatable({1, 2, 3}, { __len = function() return 5 end }) "
      "T.insert(t, 2, 'x') return t" },
    { "insert with __index and __newindex", LIBS
      "local log, store = {}, {10, 20, 30} "
      "local p = setmetatable({}, { __len = function() return #store end, "
      "  __index = function(_, k) log[#log + 1] = 'r' .. k return store[k] end, "
      "  __newindex = function(_, k, v) log[#log + 1] = 'w' .. k store[k] = v end }) "
      "T.insert(p, 1, 5) return store, log" },
    { "insert into a userdata", LIBS "return T.insert(io.stdout, 1)" },
    { "insert into a proxy without __newindex", LIBS
      "return T.insert(setmetatable({}, {}), 1)" },

    /* table.remove */
    { "remove last", LIBS "local t = {1, 2, 3} return T.remove(t), t" },
    { "remove first", LIBS "local t = {1, 2, 3} return T.remove(t, 1), t" },
    { "remove middle", LIBS "local t = {1, 2, 3} return T.remove(t, 2), t" },
    { "remove #t + 1", LIBS "local t = {1, 2, 3} return T.remove(t, 4), t" },
    { "remove #t + 2", LIBS "local t = {1, 2, 3} return T.remove(t, 5), t" },
    { "remove 0 from empty", LIBS "local t = {} return T.remove(t, 0), t" },
    { "remove from empty", LIBS "local t = {} return T.remove(t), t" },
    { "remove -1 from empty", LIBS "local t = {} return T.remove(t, -1), t" },
    { "remove 0 from non-empty", LIBS "local t = {1} return T.remove(t, 0), t" },
    { "remove with holes", LIBS "local t = {1, nil, 3} return T.remove(t, 1), t" },
    { "remove with __len", LIBS
      "local t = setmetatable({1, 2, 3, 4}, { __len = function() return 2 end }) "
      "return T.remove(t, 1), t" },
    { "remove bad position", LIBS "return T.remove({1}, 'x')" },

    /* table.move */
    { "move to another table", LIBS "return T.move({1, 2, 3}, 1, 3, 2, {})" },
    { "move up, overlapping", LIBS "return T.move({1, 2, 3, 4, 5}, 1, 3, 2)" },
    { "move down, overlapping", LIBS "return T.move({1, 2, 3, 4, 5}, 2, 5, 1)" },
    { "move onto itself", LIBS "return T.move({1, 2, 3}, 1, 3, 1)" },
    { "move empty range", LIBS "return T.move({1, 2, 3}, 3, 1, 1, {})" },
    { "move negative indices", LIBS "return T.move({[-2] = 'a', [-1] = 'b'}, -2, -1, 1, {})" },
    { "move too many", LIBS "return T.move({}, -1, math.maxinteger, 1, {})" },
    { "move wrap around", LIBS "return T.move({}, 1, 10, math.maxinteger, {})" },
    { "move to the largest index", LIBS "return T.move({'x'}, 1, 1, math.maxinteger, {})" },
    { "move from mininteger", LIBS "return T.move({}, math.mininteger, math.mininteger + 2, 1, {})" },
    { "move with a nil destination", LIBS "return T.move({1, 2}, 1, 2, 3, nil)" },
    { "move to a non-table", LIBS "return T.move({1, 2}, 1, 2, 3, 'x')" },
    { "move from a non-table", LIBS "return T.move('x', 1, 2, 3, {})" },
    { "move bad arguments", LIBS "return T.move({}, 1.5, 2, 3)" },
    { "move missing arguments", LIBS "return T.move({}, 1, 2)" },
    { "move between proxies", LIBS
      "local log = {} "
      "local src = setmetatable({}, { __index = function(_, k) log[#log + 1] = 'r' .. k "
      "  return k * 10 end }) "
      "local dst = setmetatable({}, { __newindex = function(t, k, v) log[#log + 1] = 'w' .. k "
      "  rawset(t, k, v) end }) "
      "T.move(src, 1, 4, 3, dst) return dst, log" },
    { "move to an equal table (__eq)", LIBS
      "local mt = { __eq = function() return true end } "
      "local a, b = setmetatable({1, 2, 3, 4}, mt), setmetatable({}, mt) "
      "return T.move(a, 1, 3, 2, b), a" },

    /* table.concat */
    { "concat", LIBS "return T.concat({1, 2, 3})" },
    { "concat sep", LIBS "return T.concat({'a', 'b', 'c'}, ', ')" },
    { "concat range", LIBS "return T.concat({'a', 'b', 'c', 'd'}, '-', 2, 3)" },
    { "concat one", LIBS "return T.concat({'a', 'b'}, '-', 2, 2)" },
    { "concat empty range", LIBS "return T.concat({'a', 'b'}, '-', 3, 2)" },
    { "concat empty table", LIBS "return T.concat({})" },
    { "concat numbers", LIBS "return T.concat({1, 2.5, -3}, ' ')" },
    { "concat nil inside", LIBS "return T.concat({'a', nil, 'c'}, '', 1, 3)" },
    { "concat table inside", LIBS "return T.concat({'a', {}, 'c'})" },
    { "concat past the end", LIBS "return T.concat({'a'}, '', 1, 2)" },
    { "concat number sep", LIBS "return T.concat({'a', 'b'}, 0)" },
    { "concat with __index", LIBS
      "return T.concat(setmetatable({}, { __index = function(_, k) return k end, "
      "  __len = function() return 4 end }), '+')" },
    { "concat with a C __index", LIBS
      "return T.concat(setmetatable({}, { __index = T.concat }), ',', 1, 3)" },
    { "concat with zeros", LIBS "return T.concat({'a\\0', '\\0b'}, '\\0')" },

    /* table.unpack */
    { "unpack", LIBS "return T.unpack({1, 2, 3})" },
    { "unpack range", LIBS "return T.unpack({1, 2, 3, 4}, 2, 3)" },
    { "unpack empty range", LIBS "return T.unpack({1, 2, 3}, 3, 2)" },
    { "unpack holes", LIBS "return T.unpack({1, nil, 3}, 1, 4)" },
    { "unpack negative", LIBS "return T.unpack({[-1] = 'a', [0] = 'b'}, -1, 0)" },
    { "unpack too many", LIBS "return T.unpack({}, 1, 1e7)" },
    { "unpack whole range", LIBS "return T.unpack({}, math.mininteger, math.maxinteger)" },
    { "unpack near maxinteger", LIBS
      "return T.unpack({}, math.maxinteger - 2, math.maxinteger)" },
    { "unpack a string", LIBS "return T.unpack('abc')" },
    { "unpack with __index", LIBS
      "return T.unpack(setmetatable({}, { __index = function(_, k) return k * 2 end }), 1, 3)" },
    { "unpack with __len", LIBS
      "return T.unpack(setmetatable({}, { __len = function() return 2 end }))" },
    { "unpack nil", LIBS "return T.unpack(nil)" },

    /* table.sort */
    { "sort numbers", LIBS "local t = {5, 2, 8, 1, 9, 3} T.sort(t) return t" },
    { "sort strings", LIBS "local t = {'b', 'a', 'd', 'c', 'ab', ''} T.sort(t) return t" },
    { "sort strings with zeros", LIBS
      "local t = {'a\\0b', 'a\\0a', 'a', 'a\\0', '\\0', '', 'a\\0\\0', 'b\\0'} "
      "T.sort(t) return t" },
    { "sort bytes above 127", LIBS
      "local t = {'\\200', 'z', '\\255a', '\\255', 'A', '\\127'} T.sort(t) return t" },
    { "sort mixed numbers", LIBS "local t = {3, 1.5, -2, 2^53, 0, -0.0, 1e300} T.sort(t) return t" },
    { "sort descending", LIBS
      "local t = {5, 2, 8, 1, 9, 3} T.sort(t, function(a, b) return a > b end) return t" },
    { "sort with ties by a key", LIBS
      "local t = {} for i = 1, 60 do t[i] = { k = i % 7, i = i } end "
      "T.sort(t, function(a, b) return a.k < b.k end) "
      "local out = {} for i, v in ipairs(t) do out[i] = v.i end return out" },
    { "sort mixed types", LIBS "local t = {1, 'a', 2} T.sort(t) return t" },
    { "sort invalid order function", LIBS
      "local t = {} for i = 1, 20 do t[i] = i end "
      "T.sort(t, function(a, b) return true end) return t" },
    { "sort bad order function", LIBS "T.sort({3, 2, 1}, 'x')" },
    { "sort one", LIBS "local t = {1} T.sort(t, 'x') return t" },
    { "sort empty", LIBS "local t = {} T.sort(t) return t" },
    { "sort two", LIBS "local t = {2, 1} T.sort(t) return t" },
    { "sort three", LIBS "local t = {3, 1, 2} T.sort(t) return t" },
    { "sort too big", LIBS
      "T.sort(setmetatable({}, { __len = function() return math.maxinteger end }))" },
    { "sort with __lt", LIBS
      "local mt = { __lt = function(a, b) return a.v < b.v end } local t = {} "
      "for i = 1, 30 do t[i] = setmetatable({ v = (i * 7) % 31 }, mt) end T.sort(t) "
      "local out = {} for i, v in ipairs(t) do out[i] = v.v end return out" },
    { "sort a proxy", LIBS
      "local store = {4, 1, 3, 2} "
      "local p = setmetatable({}, { __len = function() return #store end, "
      "  __index = store, __newindex = store }) T.sort(p) return store" },
    { "sort many numbers", LIBS
      "local t, x = {}, 1 for i = 1, 5000 do x = (x * 1103515245 + 12345) % 2^31 t[i] = x end "
      "T.sort(t) for i = 2, #t do assert(t[i - 1] <= t[i]) end return t[1], t[5000]" },
    { "sort many strings", LIBS
      "local t, x = {}, 1 for i = 1, 3000 do x = (x * 1103515245 + 12345) % 2^31 "
      "  t[i] = tostring(x):rep(i % 3 + 1, '\\0') end "
      "T.sort(t) return table.concat(t, '|')" },
    { "sort long equal prefixes", LIBS
      "local p = ('\\0'):rep(10000) local t = {p .. 'b', p .. 'a', p, p .. '\\0', p .. 'a'} "
      "T.sort(t) local out = {} for i, s in ipairs(t) do out[i] = #s .. s:sub(-1) end "
      "return out" },

    /* os.date, at fixed times (the current one could change between the two runs) */
    { "date UTC", LIBS "return O.date('!%Y-%m-%d %H:%M:%S', 1000000000)" },
    { "date local", LIBS "return O.date('%Y-%m-%d %H:%M:%S %z %Z', 1000000000)" },
    { "date every conversion", LIBS
      "local out = {} for c in ('aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%'):gmatch('.') do "
      "  out[#out + 1] = O.date('!%' .. c, 1234567890) end "
      "for _, c in ipairs { 'Ec', 'EC', 'Ex', 'EX', 'Ey', 'EY', 'Od', 'Oe', 'OH', 'OI', 'Om', "
      "  'OM', 'OS', 'Ou', 'OU', 'OV', 'Ow', 'OW', 'Oy' } do "
      "  out[#out + 1] = O.date('!%' .. c, 1234567890) end return out" },
    { "date long format", LIBS "return O.date(('!%c %Ey|%n|x'):rep(3000), 1234567890)" },
    { "date long format, local", LIBS "return O.date(('%c|'):rep(500), 1234567890)" },
    { "date this year", LIBS "return O.date('%Y')" },
    { "date default format", LIBS "return O.date(nil, 86400)" },
    { "date table", LIBS "return O.date('*t', 1234567890)" },
    { "date UTC table", LIBS "return O.date('!*t', 1234567890)" },
    { "date *tx is text", LIBS "return O.date('*tx', 1234567890)" },
    { "date ! alone", LIBS "return O.date('!', 1234567890)" },
    { "date empty", LIBS "return O.date('', 1234567890)" },
    { "date with zeros", LIBS "return O.date('a\\0%Y\\0', 1234567890)" },
    { "date lone %", LIBS "return O.date('%', 0)" },
    { "date lone % after text", LIBS "return O.date('abc%', 0)" },
    { "date %E alone", LIBS "return O.date('%E', 0)" },
    { "date invalid, with the rest", LIBS "return O.date('%Y %Ez and more', 0)" },
    { "date invalid %Q", LIBS "return O.date(('x'):rep(5000) .. '%Q', 0)" },
    { "date float time", LIBS "return O.date('!%c', 1e9)" },
    { "date fractional time", LIBS "return O.date('!%c', 1.5)" },
    { "date string time", LIBS "return O.date('!%c', '86400')" },
    { "date bad time", LIBS "return O.date('!%c', 'x')" },
    { "date nan", LIBS "return O.date('%c', 0/0)" },
    { "date huge", LIBS "return O.date('!%c', math.maxinteger)" },
    { "date huge table", LIBS "return O.date('*t', 2^62)" },
    { "date very negative", LIBS "return O.date('%c', -2^60)" },
    { "date number format", LIBS "return O.date(12, 0)" },
    { "date table format", LIBS "return O.date({}, 0)" },

    /* coroutines */
    { "resume and yield", LIBS
      "local co = C.create(function(a, b) local c = C.yield(a + b) return c * 2 end) "
      "local r1 = { C.resume(co, 1, 2) } local r2 = { C.resume(co, 10) } "
      "local r3 = { C.resume(co) } return r1, r2, r3, C.status(co)" },
    { "resume an error", LIBS
      "local co = C.create(function() error('boom') end) return C.resume(co)" },
    { "resume an error object", LIBS
      "local co = C.create(function() error({ 1 }) end) return C.resume(co)" },
    { "resume not a coroutine", LIBS "return C.resume(42)" },
    { "resume the running coroutine", LIBS
      "local co co = C.create(function() return C.resume(co) end) return C.resume(co)" },
    { "resume a normal coroutine", LIBS
      "local a, b a = C.create(function() return C.resume(b) end) "
      "b = C.create(function() return C.resume(a) end) return C.resume(a)" },
    { "create needs a function", LIBS "return C.create(1)" },
    { "wrap", LIBS
      "local f = C.wrap(function(x) while true do x = C.yield(x * 2) end end) "
      "return f(1), f(2), f(3)" },
    { "wrap an error", LIBS "local f = C.wrap(function() error('boom') end) return f()" },
    { "wrap an error without position", LIBS
      "local f = C.wrap(function() error('boom', 0) end) return f()" },
    { "wrap an error object", LIBS "local f = C.wrap(function() error({}) end) return f()" },
    { "wrap dead", LIBS "local f = C.wrap(function() end) f() return f()" },
    { "wrap needs a function", LIBS "return C.wrap('x')" },
    { "wrap closes to-be-closed variables on error", LIBS
      "local log = {} local f = C.wrap(function() "
      "  local x <close> = setmetatable({}, { __close = function(_, e) log[#log + 1] = "
      "    tostring(e) end }) error('boom') end) "
      "return pcall(f), log" },
    { "close suspended with tbc", LIBS
      "local log = {} local co = C.create(function() "
      "  local x <close> = setmetatable({}, { __close = function() log[#log + 1] = 'closed' "
      "  end }) C.yield() end) C.resume(co) return C.close(co), C.status(co), log" },
    { "close with an error in __close", LIBS
      "local co = C.create(function() "
      "  local x <close> = setmetatable({}, { __close = function() error('in close') end }) "
      "  C.yield() end) C.resume(co) return C.close(co)" },
    { "close dead after error", LIBS
      "local co = C.create(function() error('x') end) C.resume(co) return C.close(co)" },
    { "close running", LIBS
      "local co co = C.create(function() return C.close(co) end) return C.resume(co)" },
    { "close main", LIBS "return C.close(C.running())" },
    { "close not a coroutine", LIBS "return C.close({})" },
    { "nested coroutines", LIBS
      "local inner = C.wrap(function() C.yield(1) C.yield(2) end) "
      "local outer = C.wrap(function() C.yield(inner()) C.yield(inner()) end) "
      "return outer(), outer()" },
    { "too many arguments to resume", LIBS
      "local co = C.create(function(...) return select('#', ...) end) "
      "return C.resume(co, table.unpack({}, 1, 999990))" },
};

Test(sandbox_lib, cases_agree_with_lua)
{
    lua_State *L = new_state();
    for (size_t i = 0; i < N(cases); i++) {
        lua_getglobal(L, "check");
        lua_pushstring(L, cases[i].src);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            cr_expect(false, "%s: harness error: %s", cases[i].label, lua_tostring(L, -1));
        } else {
            cr_expect(lua_isnil(L, -1), "%s: %s", cases[i].label, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    lua_close(L);
}

/* ---- the meter ------------------------------------------------------------------------------ */

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the Lua chunk src with MINE's libraries as (S, T, C, O) and returns its error message
 * (NULL if it ran to the end). The message stays on the stack until the state is closed. */
static const char *run_mine(lua_State *L, const char *src)
{
    if (luaL_loadstring(L, src) != LUA_OK) return lua_tostring(L, -1);
    lua_getglobal(L, "MINE");
    for (int i = 1; i <= 4; i++) lua_geti(L, -i, i);
    lua_remove(L, -5);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) return lua_tostring(L, -1);
    return NULL;
}

struct runaway_case {
    const char *label;
    const char *src;
    const char *what; /* the function named in the error */
};

/* Each would run for days in Lua's version, allocating nothing. */
static const struct runaway_case runaways[] = {
    { "move 2^50 absent keys", LIBS "T.move({}, 1, 1 << 50, 1, {})", "table.move" },
    { "move within one table", LIBS "T.move({}, 1, 1 << 50, 2)", "table.move" },
    { "insert under a lying __len", LIBS
      "T.insert(setmetatable({}, { __len = function() return 1 << 50 end }), 1, 'x')",
      "table.insert" },
    { "remove under a lying __len", LIBS
      "T.remove(setmetatable({}, { __len = function() return 1 << 50 end }), 1)",
      "table.remove" },
    { "concat through a C __index", LIBS
      "T.concat(setmetatable({}, { __index = T.concat }), '', 1, 1 << 50)", "table.concat" },
    { "sort of long strings of zero bytes", LIBS
      "local a, b = ('\\0'):rep(1 << 20), ('\\0'):rep(1 << 20) local t = {} "
      "for i = 1, 10000 do t[i] = i % 2 == 0 and a or b end T.sort(t)", "table.sort" },
    { "sort with a C order function", LIBS
      "local t = {} for i = 1, 1e6 do t[i] = i end T.sort(t, rawequal)", "table.sort" },
    { "date with 4 million conversions", LIBS "O.date(('%n'):rep(1 << 22))", "os.date" },
};

Test(sandbox_lib, the_host_stops_runaway_library_calls)
{
    for (size_t i = 0; i < N(runaways); i++) {
        lua_State *L = new_state();
        host_reset(1000u * 1000);
        double t0 = seconds_now();
        const char *err = run_mine(L, runaways[i].src);
        double took = seconds_now() - t0;
        cr_expect_not_null(err, "%s: should have been stopped", runaways[i].label);
        if (err) {
            char want[128];
            snprintf(want, sizeof want, "%s: the work exceeded the instruction budget",
                     runaways[i].what);
            cr_expect(strstr(err, want) != NULL, "%s: unexpected error: %s", runaways[i].label,
                      err);
        }
        cr_expect_gt(work_total, work_limit, "%s", runaways[i].label);
        cr_expect_leq(work_largest, 2 * SBLIB_CHARGE_EVERY + 4096 / 64,
                      "%s: one instalment of %zu units", runaways[i].label, work_largest);
        /* A million units is well under a second; ASan slows the table accesses down. */
        cr_expect_lt(took, 10.0, "%s: took %.2f s", runaways[i].label, took);
        lua_close(L);
    }
}

Test(sandbox_lib, empty_rep_costs_nothing)
{
    lua_State *L = new_state();
    host_reset(1);
    double t0 = seconds_now();
    cr_expect_null(run_mine(L, LIBS "assert(S.rep('', math.maxinteger) == '') "
                                    "assert(S.rep('', math.maxinteger, '') == '')"));
    cr_expect_lt(seconds_now() - t0, 1.0);
    lua_close(L);
}

/* Comparing two long strings is paid for by the bytes compared, so a few comparisons of 1 MiB
 * strings cost as much as many of short ones. */
Test(sandbox_lib, sort_pays_for_the_bytes_compared)
{
    lua_State *L = new_state();
    cr_assert_null(run_mine(L, LIBS "local t = {} for i = 1, 100 do t[i] = tostring(i) end "
                                    "T.sort(t)"));
    size_t short_strings = work_total;
    cr_expect_gt(short_strings, 100);
    cr_expect_lt(short_strings, 2000);
    host_reset(0);
    cr_assert_null(run_mine(L, LIBS "local a, b = ('\\0'):rep(1 << 20), ('\\0'):rep(1 << 20) "
                                    "T.sort({a, b, a})"));
    cr_expect_geq(work_total, 2 * (1u << 20) / 64, "two full comparisons at least: %zu",
                  work_total);
    /* The same string object twice costs one unit, however long. */
    host_reset(0);
    cr_assert_null(run_mine(L, LIBS "local a = ('\\0'):rep(1 << 20) T.sort({a, a})"));
    cr_expect_leq(work_total, 4);
    lua_close(L);
}

/* The host may raise its own error (the sandbox does, with its own message), and leave out the
 * thread callbacks. */
static bool raise_at_once(lua_State *L, size_t work)
{
    (void)work;
    return luaL_error(L, "budget says no") != 0;
}

Test(sandbox_lib, the_charge_function_may_raise)
{
    lua_State *L = luaL_newstate();
    cr_assert_not_null(L);
    luaL_openlibs(L);
    lua_pushglobaltable(L);
    const struct sblib_host host = { raise_at_once, NULL, NULL, NULL };
    sblib_install(L, -1, &host);
    lua_pop(L, 1);
    int rc = luaL_loadstring(L, "table.move({}, 1, 1 << 50, 1, {})");
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, 0);
    cr_assert_eq(rc, LUA_ERRRUN, "%d: %s", rc, lua_tostring(L, -1));
    cr_expect(strstr(lua_tostring(L, -1), "budget says no") != NULL, "error: %s",
              lua_tostring(L, -1));
    lua_pop(L, 1);
    cr_expect_eq(luaL_dostring(L, "local f = coroutine.wrap(function() coroutine.yield(1) end) "
                                  "assert(f() == 1) local co = coroutine.create(print) "
                                  "assert(coroutine.close(co))"),
                 LUA_OK, "%s", lua_tostring(L, -1));
    lua_close(L);
}

struct switch_case {
    const char *label;
    const char *src;
    size_t made;
    const char *switches; /* 'c': a coroutine about to run; 'L': its resumer again */
};

static const struct switch_case switch_cases[] = {
    { "resume twice", LIBS "local co = C.create(function() C.yield() end) C.resume(co) "
                           "C.resume(co)", 1, "cLcL" },
    { "resume a dead coroutine", LIBS "local co = C.create(function() end) C.resume(co) "
                                      "C.resume(co)", 1, "cLcL" },
    { "wrap that fails, then closes", LIBS "local f = C.wrap(function() error('x') end) "
                                           "pcall(f)", 1, "cLcL" },
    { "close runs __close in the coroutine", LIBS
      "local co = C.create(function() "
      "  local x <close> = setmetatable({}, { __close = function() end }) C.yield() end) "
      "C.resume(co) C.close(co)", 1, "cLcL" },
    { "nested", LIBS "local inner = C.wrap(function() C.yield() end) "
                     "local outer = C.wrap(function() inner() end) outer()", 2, "ccLL" },
    { "bad arguments switch nothing", LIBS "pcall(C.resume, 1) pcall(C.close, {}) "
                                           "pcall(C.wrap, 1)", 0, "" },
};

Test(sandbox_lib, coroutines_report_every_switch)
{
    lua_State *L = new_state();
    for (size_t i = 0; i < N(switch_cases); i++) {
        host_reset(0);
        const char *err = run_mine(L, switch_cases[i].src);
        cr_expect_null(err, "%s: %s", switch_cases[i].label, err);
        cr_expect_eq(threads_made, switch_cases[i].made, "%s: %zu coroutines made",
                     switch_cases[i].label, threads_made);
        cr_expect_str_eq(switches, switch_cases[i].switches, "%s: switches %s",
                         switch_cases[i].label, switches);
    }
    lua_close(L);
}
