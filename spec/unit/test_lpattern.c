/* Tests for Lua patterns with a step budget (core/lpattern.h). The core is differential: every
 * case runs through Lua 5.4's own string.find/match/gmatch/gsub and through lpattern's, in the
 * same state, and all results (or the error message) must be the same. A table of hand-written
 * cases covers each feature and corner of the manual; a seeded generator adds tens of thousands
 * of random patterns and subjects. Then the budget itself: runaway patterns stop, deep
 * recursion raises, and plain searches are paid for. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lpattern.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the differential harness --------------------------------------------------------------- */

/* Loaded into every test state. Defines check(name, ...) and check_src(name, src), which call
 * Lua's function and lpattern's (string.x<name>) and return nil when the results agree, or a
 * description of both. Results are compared as text: each value with its type (so 1 and "1"
 * differ, and integers from floats), errors by message, with the function name in "bad argument"
 * messages left out (Lua's is string.find, ours string.xfind). gmatch is compared by the list of
 * everything its iterator returns, up to 1000 calls, and one call after the end. */
static const char harness_lua[] =
    "local real = { find = string.find, match = string.match, gmatch = string.gmatch,\n"
    "               gsub = string.gsub }\n"
    "local mine = { find = string.xfind, match = string.xmatch, gmatch = string.xgmatch,\n"
    "               gsub = string.xgsub }\n"
    "local fmt, rep, sgsub = string.format, string.rep, string.gsub\n"
    "local concat, pack, unpack = table.concat, table.pack, table.unpack\n"
    "local mtype = math.type\n"
    "local function ser(v)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return fmt('%q', v) end\n"
    "  if t == 'number' then return (mtype(v) or '?') .. ':' .. tostring(v) end\n"
    "  if t == 'table' then\n"
    "    local parts = {}\n"
    "    for i = 1, v.n or #v do parts[i] = ser(v[i]) end\n"
    "    return '{' .. concat(parts, ',') .. '}'\n"
    "  end\n"
    "  return tostring(v)\n"
    "end\n"
    "SER = ser\n"
    "local function gmatch_all(gmatch)\n"
    "  return function(...)\n"
    "    local it, out = gmatch(...), {}\n"
    "    for _ = 1, 1000 do\n"
    "      local r = pack(it())\n"
    "      out[#out + 1] = r\n"
    "      if r[1] == nil then break end\n"
    "    end\n"
    "    out[#out + 1] = pack(it())\n"
    "    return out\n"
    "  end\n"
    "end\n"
    "real.gmatch, mine.gmatch = gmatch_all(real.gmatch), gmatch_all(mine.gmatch)\n"
    "local function result(f, ...)\n"
    "  local r = pack(pcall(f, ...))\n"
    "  if not r[1] then\n"
    "    if type(r[2]) ~= 'string' then return 'error object: ' .. type(r[2]) end\n"
    "    return 'error: ' .. sgsub(r[2], \"to '[^']*'\", '')\n"
    "  end\n"
    "  local parts = {}\n"
    "  for i = 2, r.n do parts[#parts + 1] = ser(r[i]) end\n"
    "  return 'ok: ' .. concat(parts, ', ')\n"
    "end\n"
    "local function describe(...)\n"
    "  local t = pack(...)\n"
    "  for i = 1, t.n do t[i] = ser(t[i]) end\n"
    "  return concat(t, ', ', 1, t.n)\n"
    "end\n"
    "function check(name, ...)\n"
    "  local a, b = result(real[name], ...), result(mine[name], ...)\n"
    "  if a ~= b then\n"
    "    return fmt('%s(%s)\\n    lua:      %s\\n    lpattern: %s', name, describe(...), a, b)\n"
    "  end\n"
    "end\n"
    /* The arguments are evaluated once for each side, so a replacement function with state (a
     * call counter) starts afresh for both. */
    "function check_src(name, src)\n"
    "  local args = assert(load('return ' .. src, '=args', 't'))\n"
    "  local a, b = result(real[name], args()), result(mine[name], args())\n"
    "  if a ~= b then\n"
    "    return fmt('%s(%s)\\n    lua:      %s\\n    lpattern: %s', name, src, a, b)\n"
    "  end\n"
    "end\n"
    /* Every byte once, for the class tests. */
    "local all = {}\n"
    "for i = 0, 255 do all[#all + 1] = string.char(i) end\n"
    "ALL = concat(all)\n"
    /* Replacement values for the random gsub cases. The function answers differently by its
     * arguments: keep the match, a number, a string built from every argument, an error. */
    "REPL_TABLE = { a = 'A', b = false, c = 7, ab = 'AB', abc = {}, [''] = 'E', [1] = 'one',\n"
    "               [2] = 2.5, ['('] = true }\n"
    "function REPL_FUNC(...)\n"
    "  local a, n = ..., select('#', ...)\n"
    "  if a == 'a' then return nil end\n"
    "  if a == 'b' then return false end\n"
    "  if a == 'cc' then return {} end\n"
    "  if type(a) == 'number' then return a * 10 end\n"
    "  if n > 1 then return '<' .. describe(...) .. '>' end\n"
    "  return '[' .. tostring(a) .. ']'\n"
    "end\n";

static const luaL_Reg mine_funcs[] = {
    { "xfind", lpat_find },
    { "xmatch", lpat_match },
    { "xgmatch", lpat_gmatch },
    { "xgsub", lpat_gsub },
    { NULL, NULL },
};

/* A state with the standard libraries, lpattern's functions next to Lua's in the string table,
 * and the harness loaded. */
static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    cr_assert_not_null(L);
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    luaL_setfuncs(L, mine_funcs, 0);
    lua_pop(L, 1);
    int rc = luaL_loadbufferx(L, harness_lua, sizeof harness_lua - 1, "=harness", "t");
    if (rc == LUA_OK) rc = lua_pcall(L, 0, 0, 0);
    cr_assert_eq(rc, LUA_OK, "harness: %s", lua_tostring(L, -1));
    return L;
}

/* Runs check_src(name, src) and returns whether both sides agreed, reporting the difference. */
static bool agree_src(lua_State *L, const char *label, const char *name, const char *src)
{
    lua_getglobal(L, "check_src");
    lua_pushstring(L, name);
    lua_pushstring(L, src);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        cr_expect(false, "%s: harness error: %s", label, lua_tostring(L, -1));
        lua_pop(L, 1);
        return false;
    }
    bool same = lua_isnil(L, -1);
    cr_expect(same, "%s: %s", label, same ? "" : lua_tostring(L, -1));
    lua_pop(L, 1);
    return same;
}

/* ---- hand-written cases --------------------------------------------------------------------- */

struct src_case {
    const char *label;
    const char *func;  /* find, match, gmatch or gsub */
    const char *args;  /* Lua expressions, evaluated in the test state */
};

static const struct src_case cases[] = {
    /* init: positive, zero, negative, past either end, huge, and how it is converted */
    { "init 1", "find", "'hello', 'l', 1" },
    { "init 0 counts as 1", "find", "'hello', 'l', 0" },
    { "init -1, last byte", "find", "'hello', 'l', -1" },
    { "init -2", "find", "'hello', 'l', -2" },
    { "init -5, the first byte", "find", "'hello', 'h', -5" },
    { "init -6, before the start", "find", "'hello', 'h', -6" },
    { "init -100", "find", "'hello', 'h', -100" },
    { "init 5, the last byte", "find", "'hello', 'o', 5" },
    { "init #s + 1: only empty matches", "find", "'hello', '', 6" },
    { "init #s + 1, pattern", "find", "'hello', 'x*', 6" },
    { "init #s + 2: fail", "find", "'hello', '', 7" },
    { "init #s + 2, pattern: fail", "find", "'hello', 'x*', 7" },
    { "init maxinteger", "find", "'hello', '', math.maxinteger" },
    { "init mininteger", "find", "'hello', 'h', math.mininteger" },
    { "init on empty subject 0", "find", "'', '', 0" },
    { "init on empty subject 1", "find", "'', '', 1" },
    { "init on empty subject 2", "find", "'', '', 2" },
    { "init on empty subject -1", "find", "'', '', -1" },
    { "init integral float", "find", "'hello', 'l', 4.0" },
    { "init numeric string", "find", "'hello', 'l', '4'" },
    { "init 1.5 is an error", "find", "'hello', 'l', 1.5" },
    { "init not a number", "find", "'hello', 'l', 'x'" },
    { "init nil is 1", "find", "'hello', 'h', nil" },
    { "match init #s + 1", "match", "'hello', '()', 6" },
    { "match init #s + 2", "match", "'hello', '()', 7" },
    { "match init negative", "match", "'hello', '(.)', -3" },
    { "match init past end, no error for a bad pattern", "match", "'hello', '%', 7" },
    { "gmatch init 3", "gmatch", "'hello', '.', 3" },
    { "gmatch init -2", "gmatch", "'hello', '.', -2" },
    { "gmatch init 0", "gmatch", "'hello', '.', 0" },
    { "gmatch init -10", "gmatch", "'hello', '.', -10" },
    { "gmatch init #s + 1", "gmatch", "'hello', '()', 6" },
    { "gmatch init #s + 2", "gmatch", "'hello', '()', 7" },
    { "gmatch init huge", "gmatch", "'hello', '()', math.maxinteger" },
    { "gmatch init bad", "gmatch", "'hello', '.', 1.5" },

    /* arguments */
    { "number subject", "find", "12345, '3'" },
    { "number pattern", "find", "12345, 34" },
    { "float subject", "match", "1.5, '%d'" },
    { "nil subject", "find", "nil, 'a'" },
    { "table subject", "match", "{}, 'a'" },
    { "missing pattern", "find", "'a'" },
    { "gmatch missing pattern", "gmatch", "'a'" },
    { "gsub missing replacement", "gsub", "'a', 'a'" },
    { "gsub boolean replacement", "gsub", "'a', 'a', true" },
    { "gsub nil replacement", "gsub", "'a', 'a', nil" },
    { "gsub bad n is reported before bad replacement", "gsub", "'a', 'a', true, {}" },
    { "gsub n not a number", "gsub", "'a', 'a', 'b', 'x'" },
    { "gsub number subject unchanged", "gsub", "12345, 'x', 'y'" },
    { "gsub number subject", "gsub", "12345, '%d', '<%0>'" },
    { "gsub number pattern and replacement", "gsub", "1231, 1, 9" },

    /* plain find */
    { "plain flag", "find", "'a.b', '.', 1, true" },
    { "plain flag off", "find", "'a.b', '.', 1, false" },
    { "plain flag truthy number", "find", "'a.b', '.', 1, 0" },
    { "plain '%'", "find", "'a%b', '%', 1, true" },
    { "'%' without plain is malformed", "find", "'a%b', '%'" },
    { "plain '^' is not an anchor", "find", "'x^a', '^a', 1, true" },
    { "plain '^' at start", "find", "'abc', '^a', 1, true" },
    { "plain empty", "find", "'abc', '', 1, true" },
    { "plain empty at #s + 1", "find", "'abc', '', 4, true" },
    { "plain empty past end", "find", "'abc', '', 5, true" },
    { "plain longer than subject", "find", "'aaa', 'aaaa', 1, true" },
    { "plain at the very end", "find", "'abcabc', 'bc', 3, true" },
    { "plain repeated prefix", "find", "'aaab', 'aab', 1, true" },
    { "plain NUL", "find", "'a\\0b', '\\0'" },
    { "plain NUL in needle", "find", "'a\\0b\\0c', 'b\\0c'" },
    { "plain high bytes", "find", "'x\\255\\254y', '\\254y'" },
    { "plain near misses, then found", "find",
      "('a'):rep(1000) .. 'b', ('a'):rep(50) .. 'b', 1, true" },
    { "plain near misses, not found", "find", "('a'):rep(1000), ('a'):rep(50) .. 'b', 1, true" },
    { "plain near misses, found at the end", "find", "('ab'):rep(300) .. 'abb', 'abb', 1, true" },
    { "plain near misses, found early", "find", "('aab'):rep(300), 'aab', 5, true" },
    { "no specials: ']'", "find", "'a]b', ']'" },
    { "no specials: ')'", "find", "'a)b', ')'" },
    { "no specials: not found", "find", "'abc', 'abd'" },
    { "no specials with init", "find", "'abcabc', 'abc', 2" },

    /* anchors */
    { "anchor matches", "find", "'abc', '^a'" },
    { "anchor fails", "find", "'abc', '^b'" },
    { "anchor with init", "find", "'abc', '^b', 2" },
    { "anchor alone", "find", "'abc', '^', 2" },
    { "anchor alone on empty", "find", "'', '^'" },
    { "anchor and end", "find", "'abc', '^abc$'" },
    { "both anchors on empty", "find", "'', '^$'" },
    { "both anchors on non-empty", "find", "'abc', '^$'" },
    { "end anchor", "find", "'abc', 'c$'" },
    { "end anchor fails", "find", "'abc', 'b$'" },
    { "end anchor alone", "find", "'abc', '$', 2" },
    { "'$' in the middle is literal", "match", "'a$b', 'a$b'" },
    { "'$' before ')' is literal", "match", "'a$', '(a$)'" },
    { "'^' in the middle is literal", "match", "'a^b', '.^.'" },
    { "'^^'", "find", "'^a', '^^'" },
    { "'$$'", "find", "'a$', '$$'" },
    { "match anchored capture", "match", "'abc', '^(a)'" },

    /* character classes against every byte, and sets */
    { "%a", "gsub", "ALL, '%a', ''" },
    { "%A", "gsub", "ALL, '%A', ''" },
    { "%c", "gsub", "ALL, '%c', ''" },
    { "%C", "gsub", "ALL, '%C', ''" },
    { "%d", "gsub", "ALL, '%d', ''" },
    { "%D", "gsub", "ALL, '%D', ''" },
    { "%g", "gsub", "ALL, '%g', ''" },
    { "%G", "gsub", "ALL, '%G', ''" },
    { "%l", "gsub", "ALL, '%l', ''" },
    { "%L", "gsub", "ALL, '%L', ''" },
    { "%p", "gsub", "ALL, '%p', ''" },
    { "%P", "gsub", "ALL, '%P', ''" },
    { "%s", "gsub", "ALL, '%s', ''" },
    { "%S", "gsub", "ALL, '%S', ''" },
    { "%u", "gsub", "ALL, '%u', ''" },
    { "%U", "gsub", "ALL, '%U', ''" },
    { "%w", "gsub", "ALL, '%w', ''" },
    { "%W", "gsub", "ALL, '%W', ''" },
    { "%x", "gsub", "ALL, '%x', ''" },
    { "%X", "gsub", "ALL, '%X', ''" },
    { "%z, NUL, undocumented but kept", "gsub", "ALL, '%z', ''" },
    { "%Z", "gsub", "ALL, '%Z', ''" },
    { "%b as a class letter? no: balance", "find", "'xay', '%bxy'" },
    { "%e stands for itself", "gsub", "ALL, '%e', ''" },
    { "'.'", "gsub", "ALL, '.', ''" },
    { "[%a] in a set", "gsub", "ALL, '[%a]', ''" },
    { "[^%a]", "gsub", "ALL, '[^%a]', ''" },
    { "[%A%d]", "gsub", "ALL, '[%A%d]', ''" },
    { "%. escapes", "gsub", "'a.b%c[d]e(f)g-h*i+j?k^l$m', '%.', '_'" },
    { "escapes of every magic character", "gsub",
      "'a.b%c[d]e(f)g-h*i+j?k^l$m', '[%%%[%]%(%)%-%*%+%?%^%$]', '_'" },
    { "%% in a pattern", "find", "'100%', '%d+%%'" },
    { "% before space", "find", "'a b', '% '" },
    { "% before NUL", "find", "'a\\0b', '%\\0'" },
    { "% before a high byte", "find", "'a\\200b', '%\\200'" },
    { "set", "gsub", "'abcdef', '[ace]', '_'" },
    { "complement set", "gsub", "'abcdef', '[^ace]', '_'" },
    { "range", "gsub", "'abcdef', '[b-d]', '_'" },
    { "complement range", "gsub", "'abcdef', '[^b-d]', '_'" },
    { "'-' at the end of a set", "gsub", "'a-b', '[a-]', '_'" },
    { "'-' at the start of a set", "gsub", "'a-b', '[-a]', '_'" },
    { "']' first in a set", "gsub", "'a]b', '[]]', '_'" },
    { "']' first in a complement", "gsub", "'a]b', '[^]]', '_'" },
    { "']' first, then more", "gsub", "'a]b', '[]a]', '_'" },
    { "escaped ']'", "gsub", "'a]b', '[%]]', '_'" },
    { "'[' in a set", "gsub", "'a[b', '[[]', '_'" },
    { "'^' not first in a set", "gsub", "'a^b', '[a^]', '_'" },
    { "class then '-' is literal", "gsub", "'a-z9', '[%a-z]', '_'" },
    { "range ending in '%'", "gsub", "ALL, '[!-%]]', ''" },
    { "range to '%%'", "gsub", "'a%b', '[a-%%]', '_'" },
    { "set with class and range", "gsub", "'a-z09_', '[0-7%l%-]', '_'" },
    { "[%w_]", "gsub", "'a_b-c', '[%w_]', '_'" },
    { "empty range z-a", "gsub", "'abcz', '[z-a]', '_'" },
    { "single-byte range", "gsub", "'abc', '[b-b]', '_'" },
    { "range of control bytes", "gsub", "ALL, '[\\0-\\31]', ''" },
    { "range of high bytes", "gsub", "ALL, '[\\128-\\255]', ''" },
    { "complement of NUL", "gsub", "'a\\0b', '[^\\0]', '_'" },
    { "escaped '-' in a range position", "gsub", "'a-z', '[a%-z]', '_'" },
    { "'%' escape at set end", "gsub", "'a%b', '[a%%]', '_'" },
    { "set missing ']'", "find", "'a', '['" },
    { "set missing ']' after item", "find", "'a', '[a'" },
    { "complement missing ']'", "find", "'a', '[^'" },
    { "'[]' is unfinished", "find", "'a', '[]'" },
    { "'[^]' is unfinished", "find", "'a', '[^]'" },
    { "set ending in '%'", "find", "'a', '[%'" },
    { "set ending in 'a%'", "find", "'a', '[a%'" },
    { "set '[%]' is unfinished", "find", "'a', '[%]'" },
    { "pattern ending in '%'", "find", "'a', 'a%'" },
    { "malformed item never reached", "find", "'b', 'a['" },
    { "malformed item reached", "find", "'a', 'a['" },
    { "malformed item after an optional item", "find", "'b', 'a?['" },

    /* quantifiers */
    { "*", "match", "'aaab', 'a*'" },
    { "* zero", "match", "'baaa', 'a*'" },
    { "+", "match", "'aaab', 'a+'" },
    { "+ none", "find", "'bbb', 'a+'" },
    { "- lazy", "match", "'aaab', 'a-b'" },
    { "- lazy empty", "match", "'aaab', 'a-'" },
    { "?", "match", "'ab', 'a?b'" },
    { "? zero", "match", "'b', 'a?b'" },
    { "? backtracks", "match", "'aaa', 'a?a?a?aaa'" },
    { ".- with end anchor", "match", "'abc', '.-$'" },
    { "trim", "match", "'  hi there  ', '^%s*(.-)%s*$'" },
    { "* on empty", "find", "'', 'x*'" },
    { "+ on empty", "find", "'', 'x+'" },
    { "- on empty", "find", "'', 'x-'" },
    { "? on empty", "find", "'', 'x?'" },
    { "greedy then literal", "match", "'aaaab', '(a*)(a)b'" },
    { "greedy set", "match", "'abab-x', '[ab]*b'" },
    { "number", "match", "'pi is 3.14159!', '%d+%.?%d*'" },
    { "'*' first is literal", "find", "'a*b', '*b'" },
    { "'**'", "match", "'***b', '**'" },
    { "'+' first is literal", "find", "'a+b', '+'" },
    { "'-' first is literal", "find", "'a-b', '-b'" },
    { "'?' first is literal", "find", "'a?b', '?b'" },
    { "'a**'", "match", "'aa**', 'a**'" },
    { "quantified escape", "match", "'%%%x', '%%+'" },
    { "quantified set", "match", "'abcabc!', '[a-c]+'" },
    { "quantified dot greedy", "match", "'<a><b>', '<.*>'" },
    { "quantified dot lazy", "match", "'<a><b>', '<.->'" },
    { "quantifier after capture is literal", "match", "'a-', '(a)-'" },
    { "quantifier after '%b' is literal", "match", "'()*', '%b()*'" },
    { "quantifier after back-reference is literal", "match", "'aa*', '(a)%1*'" },
    { "quantified NUL", "match", "'\\0\\0\\0x', '\\0*'" },

    /* captures */
    { "three captures", "match", "'abc', '(a)(b)(c)'" },
    { "nested captures", "match", "'abc', '((a)(b))'" },
    { "nested inner", "match", "'abc', '(a(b)c)'" },
    { "find with captures", "find", "'xabcx', '(a)(b)(c)'" },
    { "position capture alone", "match", "'abc', '()'" },
    { "position captures around", "find", "'abc', '()b()'" },
    { "position capture nested", "match", "'abc', '(()b)'" },
    { "position capture at end", "match", "'abc', 'c()'" },
    { "captures around quantifiers", "match", "'aab  c', '(a*(.)%w(%s*))'" },
    { "empty capture", "match", "'abc', '(x*)'" },
    { "capture of lazy", "match", "'key=val;', '(.-)=(.-);'" },
    { "unfinished capture", "find", "'a', '(a'" },
    { "unfinished capture never matched", "find", "'b', '(a'" },
    { "unfinished nested", "find", "'a', '((a)'" },
    { "'(' alone", "match", "'abc', '('" },
    { "'(()' unfinished", "find", "'a', '(()'" },
    { "invalid pattern capture", "find", "'a', '%a)'" },
    { "extra ')'", "find", "'a', '(a))'" },
    { "')' never reached", "find", "'b', 'a)'" },
    { "32 captures", "match", "('a'):rep(32), ('(a)'):rep(32)" },
    { "33 captures", "match", "('a'):rep(33), ('(a)'):rep(33)" },
    { "32 position captures", "find", "'', ('()'):rep(32)" },
    { "33 position captures", "find", "'', ('()'):rep(33)" },

    /* back-references */
    { "back-reference", "match", "'abab', '(ab)%1'" },
    { "back-reference fails", "find", "'abac', '(ab)%1'" },
    { "back-reference of greedy", "match", "'aaaaba', '(a*)b%1'" },
    { "quoted string", "match", "[[say \"hi 'there'\" now]], '([\"\\'])(.-)%1'" },
    { "doubled letter", "find", "'abccd', '(.)%1'" },
    { "back-reference to a position capture never matches", "find", "'aaa', '()%1'" },
    { "back-reference to an empty capture", "find", "'abc', '(x*)%1b'" },
    { "back-reference without captures", "find", "'a', '%1'" },
    { "back-reference to an open capture", "find", "'aa', '(a%1)'" },
    { "%0 in a pattern", "find", "'a', '%0'" },
    { "back-reference past the captures", "find", "'aa', '(a)%2'" },
    { "two back-references", "match", "'abba', '(a)(b)%2%1'" },
    { "word repeated", "match", "'the the cat', '(%w+) %1'" },
    { "%9 with nine captures", "match", "('abcdefghii'), '(a)(b)(c)(d)(e)(f)(g)(h)(i)%9'" },
    { "back-reference at end of subject", "find", "'abca', '(a)bc%1%1'" },
    { "back-reference to NUL", "find", "'x\\0\\0', '(\\0)%1'" },

    /* %b */
    { "balanced", "match", "'f(a(b)c)d', '%b()'" },
    { "balanced twice", "gsub", "'(a)(b)((c))', '%b()', '_'" },
    { "balanced unclosed", "find", "'((a)', '%b()'" },
    { "balanced extra close", "match", "'())', '%b()'" },
    { "balanced same delimiters", "match", "'aaa', '%baa'" },
    { "balanced reversed", "match", "')a(', '%b)('" },
    { "balanced at end", "find", "'x(', '%b()'" },
    { "balanced on empty", "find", "'', '%b()'" },
    { "balanced NUL delimiters", "match", "'\\0x\\1', '%b\\0\\1'" },
    { "balanced then more", "match", "'[a][b]c', '%b[]%b[](.)'" },
    { "balanced missing both", "find", "'a', '%b'" },
    { "balanced missing one", "find", "'a', '%b('" },
    { "balanced quantifier is literal", "match", "'(a)+', '%b()+'" },

    /* %f */
    { "frontier words", "gsub", "'THE (quick) fox', '%f[%a]%a+', 'X'" },
    { "frontier at start", "find", "'abc', '%f[%a]'" },
    { "frontier at end", "find", "'abc', '%f[%W]'" },
    { "frontier of NUL at end", "find", "'abc', '%f[\\0]'" },
    { "frontier not at end for [^\\0]", "find", "'abc', '%f[^\\0]'" },
    { "frontier on empty", "find", "'', '%f[%w]'" },
    { "frontier complement at end", "find", "'ab ', '%f[^%s]$'" },
    { "frontier of whole words", "gmatch", "'the cat and the hat', '%f[%w]%w+%f[%W]'" },
    { "frontier in middle", "find", "'aaBB', '%f[%u]'" },
    { "frontier missing '['", "find", "'a', '%f'" },
    { "frontier with a letter", "find", "'a', '%fa'" },
    { "frontier set unfinished", "find", "'a', '%f[a'" },
    { "frontier of set with NUL in subject", "find", "'a\\0b', '%f[%z]'" },
    { "frontier with init", "find", "'ab cd', '%f[%w]', 2" },

    /* gmatch */
    { "gmatch words", "gmatch", "'one two  three', '%a+'" },
    { "gmatch pairs", "gmatch", "'a=1, b=2', '(%w+)=(%w+)'" },
    { "gmatch '^' is literal", "gmatch", "'aaa', '^a'" },
    { "gmatch '^' literal matches", "gmatch", "'^a^a', '^a'" },
    { "gmatch empty pattern", "gmatch", "'abc', ''" },
    { "gmatch empty subject", "gmatch", "'', ''" },
    { "gmatch empty matches after a match skipped", "gmatch", "'a,b,,c', '([^,]*)'" },
    { "gmatch b*", "gmatch", "'abc', 'b*'" },
    { "gmatch positions", "gmatch", "'abc', '()'" },
    { "gmatch end anchor", "gmatch", "'abc', '.$'" },
    { "gmatch malformed raises at the first call", "gmatch", "'abc', '%'" },
    { "gmatch unfinished capture", "gmatch", "'abc', '(a'" },
    { "gmatch number subject", "gmatch", "123, '%d'" },

    /* gsub: empty matches, counts and n */
    { "gsub empty pattern", "gsub", "'abc', '', '-'" },
    { "gsub %w*", "gsub", "'abc', '%w*', '-'" },
    { "gsub %w* with spaces", "gsub", "'hello world', '%w*', 'X'" },
    { "gsub b*", "gsub", "'abc', 'b*', '-'" },
    { "gsub empty fields", "gsub", "';a;;b;', '[^;]*', 'x'" },
    { "gsub on empty", "gsub", "'', '', 'x'" },
    { "gsub on empty, no match", "gsub", "'', 'a', 'x'" },
    { "gsub n = 0", "gsub", "'abc', '', '-', 0" },
    { "gsub n = 1", "gsub", "'abc', '', '-', 1" },
    { "gsub n = 2", "gsub", "'abc', '%w', '-', 2" },
    { "gsub n negative", "gsub", "'abc', '%w', '-', -1" },
    { "gsub n large", "gsub", "'abc', '%w', '-', 100" },
    { "gsub n float", "gsub", "'abc', '%w', '-', 2.0" },
    { "gsub n string", "gsub", "'abc', '%w', '-', '2'" },
    { "gsub n 2.5", "gsub", "'abc', '%w', '-', 2.5" },
    { "gsub n maxinteger", "gsub", "'abc', '%w', '-', math.maxinteger" },
    { "gsub n mininteger", "gsub", "'abc', '%w', '-', math.mininteger" },
    { "gsub n nil", "gsub", "'abc', '%w', '-', nil" },
    { "gsub anchored", "gsub", "'hello world', '^h', 'H'" },
    { "gsub anchored only once", "gsub", "'aaa', '^a', 'b'" },
    { "gsub anchored, no match", "gsub", "'hello', '^l', 'L'" },
    { "gsub anchored empty", "gsub", "'abc', '^', '>'" },
    { "gsub anchored greedy", "gsub", "'abc def', '^%w*', 'x'" },
    { "gsub anchored on empty", "gsub", "'', '^', 'x'" },
    { "gsub anchored both", "gsub", "'abc', '^$', 'x'" },
    { "gsub end anchor", "gsub", "'hello', '$', '<'" },
    { "gsub '(' unfinished, template without captures", "gsub", "'abc', '(', 'x'" },
    { "gsub '(' unfinished, %1", "gsub", "'abc', '(', '%1'" },

    /* gsub: replacement strings */
    { "template %0", "gsub", "'hello world', 'o', '[%0]'" },
    { "template %1 %0 %%", "gsub", "'hello world', '(o)', '[%1%0%%]'" },
    { "template %1 without captures is the match", "gsub", "'abc', '%w', '<%1>'" },
    { "template %2 without captures", "gsub", "'abc', '%w', '%2'" },
    { "template %2 with one capture", "gsub", "'abc', '(b)', '%2'" },
    { "template position captures", "gsub", "'abc', '()b()', '%1-%2'" },
    { "template swap", "gsub", "'hello world', '(%w+) (%w+)', '%2 %1'" },
    { "template '%' at end", "gsub", "'abc', 'b', 'x%'" },
    { "template '%x'", "gsub", "'abc', 'b', '%x'" },
    { "template bad escape with no match", "gsub", "'abc', 'z', '%'" },
    { "template %%%%", "gsub", "'a', 'a', '%%%%'" },
    { "template with NUL", "gsub", "'abc', 'b', 'x\\0y'" },
    { "template %9 with nine captures", "gsub",
      "'abcdefghi', '(a)(b)(c)(d)(e)(f)(g)(h)(i)', '%9%8%7%6%5%4%3%2%1'" },
    { "template %1 with an unfinished capture", "gsub", "'abc', '(b', '%1'" },
    { "replacement integer", "gsub", "'abc', 'b', 42" },
    { "replacement float", "gsub", "'abc', 'b', 1.5" },
    { "replacement empty string", "gsub", "'abc', 'b', ''" },

    /* gsub: tables */
    { "table string", "gsub", "'abc', '%w', { a = 'A' }" },
    { "table number values", "gsub", "'abc', '%w', { a = 1, b = 2.5 }" },
    { "table false and true", "gsub", "'abc', '%w', { a = false, b = true }" },
    { "table table value", "gsub", "'abc', '%w', { a = {} }" },
    { "table by first capture", "gsub", "'k1=v1 k2=v2', '(%w+)=(%w+)', { k1 = 'X' }" },
    { "table by position capture", "gsub", "'abc', '()b', { [2] = 'two' }" },
    { "table with __index", "gsub",
      "'$name is $age', '%$(%w+)', setmetatable({}, { __index = function(_, k) "
      "return k:upper() end })" },
    { "table with nothing found", "gsub", "'abc', '%w', {}" },
    { "table with unfinished capture", "gsub", "'abc', '(b', {}" },

    /* gsub: functions */
    { "function upper", "gsub", "'hello', '%w', string.upper" },
    { "function all captures", "gsub", "'k1=v1 k2=v2', '(%w+)=(%w+)', "
      "function(k, v) return v .. '=' .. k end" },
    { "function position captures", "gsub", "'abc', '()(%w)()', "
      "function(a, b, c) return a .. b .. c end" },
    { "function returns nothing", "gsub", "'abc', '%w', function() end" },
    { "function returns false", "gsub", "'abc', '%w', function() return false end" },
    { "function returns integer", "gsub", "'abc', '%w', function() return 7 end" },
    { "function returns float", "gsub", "'abc', '%w', function() return 0.5 end" },
    { "function returns table", "gsub", "'abc', '%w', function() return {} end" },
    { "function returns true", "gsub", "'abc', '%w', function() return true end" },
    { "function returns two values", "gsub", "'abc', '%w', function() return 'x', 'y' end" },
    { "function raises", "gsub", "'abc', 'b', function() error('boom') end" },
    { "function raises a table", "gsub", "'abc', 'b', function() error({}) end" },
    { "function counts its calls", "gsub",
      "'a b c d', '%w', (function() local n = 0 return function(c) n = n + 1 "
      "if n % 2 == 0 then return c:upper() end end end)()" },
    { "function calls gsub again", "gsub",
      "'ab', '%w', function(c) return string.xgsub(c .. c, '.', '%0-') end" },
    { "function on empty matches", "gsub", "'abc', '', function() return '|' end" },
    { "function with n", "gsub", "'abcd', '%w', function(c) return c:upper() end, 2" },
    { "function with unfinished capture", "gsub", "'abc', '(b', function() end" },

    /* embedded NUL and high bytes */
    { "%z is NUL", "find", "'a\\0bz', '%z'" },
    { "%Z is not NUL", "gsub", "'a\\0bz', '%Z', '_'" },
    { "NUL in a set", "find", "'a\\0b', '[\\0]'" },
    { "NUL class run", "match", "'\\0\\0\\1', '(%c*)'" },
    { "NUL then letters", "match", "'\\0abc', '.-(%a+)'" },
    { "NUL at end anchored", "find", "'x\\0y', '\\0y$'" },
    { "NUL replaced", "gsub", "'a\\0b\\0c', '\\0', '|'" },
    { "high bytes replaced", "gsub", "'\\255\\254\\128a', '[\\128-\\255]', 'x'" },
    { "UTF-8 is not %a", "match", "'caf\\195\\169', '%a+'" },
    { "high byte is %W", "find", "'\\255', '%W'" },
    { "NUL is %c", "find", "'\\0', '%c'" },
    { "capture of NUL", "match", "'ab\\0cd', 'b(.)c'" },
    { "range with NUL", "gsub", "'\\0a\\1b', '[\\0-a]', '.'" },
    { "pattern with NUL after '%b'", "find", "'x\\0y', '%b\\0y'" },
    { "gmatch over NULs", "gmatch", "'\\0a\\0\\0b', '[^\\0]*'" },

    /* recursion depth: each matched "a?" nests one call of the matcher */
    { "198 optional items", "find", "('a'):rep(198), ('a?'):rep(198)" },
    { "199 optional items", "find", "('a'):rep(199), ('a?'):rep(199)" },
    { "200 optional items", "find", "('a'):rep(200), ('a?'):rep(200)" },
    { "201 optional items", "find", "('a'):rep(201), ('a?'):rep(201)" },
    { "300 optional items", "find", "('a'):rep(300), ('a?'):rep(300)" },
    { "300 optional items not taken", "find", "('b'):rep(300), ('a?'):rep(300)" },
    { "deep captures and quantifiers", "match",
      "('a'):rep(250), ('(a*)'):rep(30) .. ('a?'):rep(180)" },
    { "many lazy items", "match", "('ab'):rep(100), ('.-b'):rep(100)" },
    { "many lazy items, too deep", "match", "('ab'):rep(201), ('.-b'):rep(201)" },
    { "gsub too complex", "gsub", "('a'):rep(300), ('a?'):rep(300), 'x'" },
    { "gmatch too complex", "gmatch", "('a'):rep(300), ('a?'):rep(300)" },
};

Test(lpattern, hand_written_cases_agree_with_lua)
{
    lua_State *L = new_state();
    size_t failed = 0;
    for (size_t i = 0; i < N(cases); i++)
        if (!agree_src(L, cases[i].label, cases[i].func, cases[i].args)) failed++;
    cr_assert_eq(failed, 0, "%zu of %zu cases differ from Lua", failed, N(cases));
    lua_close(L);
}

/* Every pattern in the hand-written table also through the other three functions, on a few
 * subjects: the table was written for one function, but the pattern corners apply to all. */
Test(lpattern, hand_written_patterns_through_every_function)
{
    lua_State *L = new_state();
    static const char *const funcs[] = { "find", "match", "gmatch", "gsub" };
    static const char *const subjects[] = { "''", "'abcabc'", "'a(b)c[d]%e'", "'aaab ba'",
                                            "'\\0x\\255 z'" };
    size_t failed = 0, run = 0;
    for (size_t i = 0; i < N(cases); i++) {
        /* the pattern is the second argument; rebuild calls around it */
        char src[512];
        snprintf(src, sizeof src, "select(2, %s)", cases[i].args);
        lua_getglobal(L, "load");
        lua_pushfstring(L, "return %s", src);
        lua_call(L, 1, 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        for (size_t f = 0; f < N(funcs); f++) {
            for (size_t s = 0; s < N(subjects); s++) {
                char args[640];
                if (strcmp(funcs[f], "gsub") == 0)
                    snprintf(args, sizeof args, "%s, %s, '<%%0>'", subjects[s], src);
                else
                    snprintf(args, sizeof args, "%s, %s", subjects[s], src);
                run++;
                if (!agree_src(L, cases[i].label, funcs[f], args)) failed++;
            }
        }
    }
    cr_assert_gt(run, 1000);
    cr_assert_eq(failed, 0, "%zu of %zu calls differ from Lua", failed, run);
    lua_close(L);
}

/* ---- random patterns ------------------------------------------------------------------------ */

/* xorshift64*: fast, seeded, the same sequence on every machine. */
struct rng {
    uint64_t state;
};

static uint64_t rng_next(struct rng *r)
{
    r->state ^= r->state >> 12;
    r->state ^= r->state << 25;
    r->state ^= r->state >> 27;
    return r->state * 0x2545F4914F6CDD1DULL;
}

static unsigned rng_below(struct rng *r, unsigned n) { return (unsigned)(rng_next(r) >> 33) % n; }

static char rng_pick(struct rng *r, const char *chars, size_t n)
{
    return chars[rng_below(r, (unsigned)n)];
}

#define PICK(r, lit) rng_pick((r), (lit), sizeof(lit) - 1)

/* A pattern under construction. Subjects are short and the greedy and lazy quantifiers few, so
 * that Lua's own matcher (which has no budget) finishes every case quickly. */
struct gen {
    char buf[160];
    size_t len;
    int loops;  /* '*', '+' and '-' so far */
};

static void put(struct gen *g, char c)
{
    if (g->len < sizeof g->buf) g->buf[g->len++] = c;
}

static void gen_set(struct rng *r, struct gen *g)
{
    put(g, '[');
    if (rng_below(r, 4) == 0) put(g, '^');
    unsigned n = 1 + rng_below(r, 3);
    for (unsigned i = 0; i < n; i++) {
        switch (rng_below(r, 6)) {
        case 0:
            put(g, PICK(r, "ab"));
            put(g, '-');
            put(g, PICK(r, "bc"));
            break;
        case 1:
            put(g, '%');
            put(g, PICK(r, "adswpAS]%-"));
            break;
        case 2:
            put(g, PICK(r, "]-^(\0"));
            break;
        default:
            put(g, PICK(r, "abc"));
            break;
        }
    }
    put(g, ']');
}

static void gen_class(struct rng *r, struct gen *g)
{
    unsigned k = rng_below(r, 100);
    if (k < 45) {
        put(g, PICK(r, "abc"));
    } else if (k < 55) {
        put(g, '.');
    } else if (k < 70) {
        put(g, '%');
        put(g, PICK(r, "acdglpsuwxACDGLPSUWXz"));
    } else if (k < 78) {
        put(g, '%');
        put(g, PICK(r, "%.[]()-*+?^$ \0"));
    } else if (k < 94) {
        gen_set(r, g);
    } else {
        put(g, PICK(r, " ]\0\377A1"));
    }
}

static void gen_items(struct rng *r, struct gen *g, int depth);

static void gen_item(struct rng *r, struct gen *g, int depth)
{
    unsigned k = rng_below(r, 100);
    if (k < 58) {
        gen_class(r, g);
        if (rng_below(r, 5) < 2) {
            char q = PICK(r, "*+-?");
            if (q != '?' && g->loops >= 4) q = '?';
            if (q != '?') g->loops++;
            put(g, q);
        }
    } else if (k < 70 && depth < 3) {
        put(g, '(');
        gen_items(r, g, depth + 1);
        put(g, ')');
    } else if (k < 74) {
        put(g, '(');
        put(g, ')');
    } else if (k < 80) {
        put(g, '%');
        put(g, 'b');
        put(g, PICK(r, "a(b"));
        put(g, PICK(r, "a)b"));
    } else if (k < 86) {
        put(g, '%');
        put(g, 'f');
        gen_set(r, g);
    } else if (k < 93) {
        put(g, '%');
        put(g, PICK(r, "11223340"));
    } else if (k < 96) {
        put(g, PICK(r, "$^"));
    } else {
        gen_class(r, g);
    }
}

static void gen_items(struct rng *r, struct gen *g, int depth)
{
    unsigned n = rng_below(r, depth ? 3 : 6);
    for (unsigned i = 0; i < n; i++) gen_item(r, g, depth);
}

/* A random pattern: optional anchors around random items; one in ten is then damaged (cut
 * short, or a magic character inserted) so that errors are compared too. */
static void gen_pattern(struct rng *r, struct gen *g)
{
    g->len = 0;
    g->loops = 0;
    if (rng_below(r, 7) == 0) put(g, '^');
    gen_items(r, g, 0);
    if (rng_below(r, 7) == 0) put(g, '$');
    unsigned damage = rng_below(r, 20);
    if (damage == 0 && g->len > 0) {
        g->len = rng_below(r, (unsigned)g->len);
    } else if (damage == 1 && g->len < sizeof g->buf) {
        size_t at = rng_below(r, (unsigned)g->len + 1);
        memmove(g->buf + at + 1, g->buf + at, g->len - at);
        g->buf[at] = PICK(r, "^$()%.[]*+-?");
        g->len++;
    }
}

/* A random subject of up to 12 bytes, mostly from the pattern's own alphabet, plus bytes of the
 * pattern itself, so that its literals and delimiters have something to match. */
static size_t gen_subject(struct rng *r, const struct gen *g, char *buf)
{
    size_t len = rng_below(r, 13);
    for (size_t i = 0; i < len; i++) {
        unsigned k = rng_below(r, 10);
        if (k < 6 || g->len == 0)
            buf[i] = PICK(r, "abc");
        else if (k < 9)
            buf[i] = g->buf[rng_below(r, (unsigned)g->len)];
        else
            buf[i] = PICK(r, "()[]%-. \0\377A1z");
    }
    return len;
}

static void push_init(struct rng *r, lua_State *L)
{
    unsigned k = rng_below(r, 10);
    if (k < 4)
        lua_pushnil(L);
    else if (k < 9)
        lua_pushinteger(L, (lua_Integer)rng_below(r, 31) - 15);
    else
        lua_pushinteger(L, rng_below(r, 2) ? LUA_MAXINTEGER : LUA_MININTEGER);
}

static void push_replacement(struct rng *r, lua_State *L)
{
    static const char *const templates[] = { "", "x", "%0", "%1", "%2", "[%1|%2]", "%%",
                                             "%",  "%a", "<%0>%3", "%9", "%1%1" };
    switch (rng_below(r, 6)) {
    case 0: lua_getglobal(L, "REPL_TABLE"); break;
    case 1: lua_getglobal(L, "REPL_FUNC"); break;
    case 2: lua_pushinteger(L, 7); break;
    default: lua_pushstring(L, templates[rng_below(r, (unsigned)N(templates))]); break;
    }
}

/* Calls check(name, args...) with the nargs values on the stack; returns whether the two agreed
 * and reports the first few differences. */
static bool agree(lua_State *L, const char *name, int nargs, size_t *reported)
{
    lua_getglobal(L, "check");
    lua_pushstring(L, name);
    lua_rotate(L, -(nargs + 2), 2);
    if (lua_pcall(L, nargs + 1, 1, 0) != LUA_OK) {
        cr_expect(false, "harness error: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return false;
    }
    bool same = lua_isnil(L, -1);
    if (!same && (*reported)++ < 20) cr_expect(false, "random case: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return same;
}

#define RANDOM_PATTERNS 20000
#define SUBJECTS_PER_PATTERN 3

Test(lpattern, random_patterns_agree_with_lua, .timeout = 600)
{
    lua_State *L = new_state();
    struct rng r = { 0x6d6f6f6e77697265ULL }; /* "moonwire" */
    struct gen g;
    char subj[16];
    size_t cases_run = 0, failed = 0, reported = 0;
    for (int i = 0; i < RANDOM_PATTERNS; i++) {
        gen_pattern(&r, &g);
        for (int j = 0; j < SUBJECTS_PER_PATTERN; j++) {
            size_t ls = gen_subject(&r, &g, subj);

            lua_pushlstring(L, subj, ls);
            lua_pushlstring(L, g.buf, g.len);
            push_init(&r, L);
            lua_pushboolean(L, rng_below(&r, 8) == 0);
            failed += !agree(L, "find", 4, &reported);

            lua_pushlstring(L, subj, ls);
            lua_pushlstring(L, g.buf, g.len);
            push_init(&r, L);
            failed += !agree(L, "match", 3, &reported);

            lua_pushlstring(L, subj, ls);
            lua_pushlstring(L, g.buf, g.len);
            push_init(&r, L);
            failed += !agree(L, "gmatch", 3, &reported);

            lua_pushlstring(L, subj, ls);
            lua_pushlstring(L, g.buf, g.len);
            push_replacement(&r, L);
            if (rng_below(&r, 4) == 0)
                lua_pushinteger(L, (lua_Integer)rng_below(&r, 5) - 1);
            else
                lua_pushnil(L);
            failed += !agree(L, "gsub", 4, &reported);
            cases_run += 4;
        }
    }
    cr_log_info("lpattern: %zu random calls compared with Lua", cases_run);
    cr_assert_eq(failed, 0, "%zu of %zu random calls differ from Lua", failed, cases_run);
    lua_close(L);
}

/* Plain find on longer subjects of two letters: needles that nearly match everywhere, so the
 * search switches from memchr and memcmp to memmem at every possible point. */
Test(lpattern, random_plain_finds_agree_with_lua)
{
    lua_State *L = new_state();
    struct rng r = { 0x706c61696eULL }; /* "plain" */
    char subj[80], needle[12];
    size_t failed = 0, reported = 0, run = 0;
    for (int i = 0; i < 20000; i++) {
        size_t ls = rng_below(&r, 80), ln = rng_below(&r, 12);
        for (size_t j = 0; j < ls; j++) subj[j] = rng_below(&r, 6) ? 'a' : 'b';
        for (size_t j = 0; j < ln; j++) needle[j] = rng_below(&r, 4) ? 'a' : 'b';
        lua_pushlstring(L, subj, ls);
        lua_pushlstring(L, needle, ln);
        push_init(&r, L);
        lua_pushboolean(L, 1);
        failed += !agree(L, "find", 4, &reported);
        run++;
    }
    cr_assert_eq(failed, 0, "%zu of %zu plain finds differ from Lua", failed, run);
    lua_close(L);
}

/* ---- the budget ----------------------------------------------------------------------------- */

/* A charge function that counts, and refuses past a limit (0: never). */
static size_t steps_total, steps_calls, steps_largest, steps_limit;

static bool count_steps(lua_State *L, size_t steps)
{
    (void)L;
    steps_total += steps;
    steps_calls++;
    if (steps > steps_largest) steps_largest = steps;
    return steps_limit == 0 || steps_total <= steps_limit;
}

static void meter_reset(lua_State *L, size_t limit)
{
    steps_total = steps_calls = steps_largest = 0;
    steps_limit = limit;
    lpat_set_charge(L, count_steps);
}

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the Lua chunk src and returns its error message (NULL if it ran to the end). The message
 * stays on the stack until the state is closed. */
static const char *run_lua(lua_State *L, const char *src)
{
    if (luaL_loadstring(L, src) != LUA_OK) return lua_tostring(L, -1);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) return lua_tostring(L, -1);
    return NULL;
}

struct runaway_case {
    const char *label;
    const char *src;
};

/* Each would run for hours in Lua's matcher; with a budget of 10 million steps they must stop
 * within a fraction of a second. */
static const struct runaway_case runaways[] = {
    { "find, lazy chain", "string.xfind(('a'):rep(5000), '.-.-.-.-b')" },
    { "match, greedy chain", "string.xmatch(('a'):rep(5000), '.*.*.*.*b')" },
    { "gsub", "string.xgsub(('a'):rep(5000), '.-.-.-.-b', 'x')" },
    { "gmatch", "for _ in string.xgmatch(('a'):rep(5000), '.-.-.-.-b') do end" },
    { "captures", "string.xfind(('a'):rep(5000), '(.-)(.-)(.-)(.-)b')" },
    { "back-reference", "string.xfind(('a'):rep(100000), '(a*)%1b')" },
    { "optional items", "string.xfind(('a'):rep(10000), ('a?'):rep(40) .. 'b')" },
    { "balance", "string.xfind(('('):rep(100000), '%b()')" },
};

Test(lpattern, budget_stops_runaway_patterns)
{
    for (size_t i = 0; i < N(runaways); i++) {
        lua_State *L = new_state();
        meter_reset(L, 10u * 1000 * 1000);
        double t0 = seconds_now();
        const char *err = run_lua(L, runaways[i].src);
        double took = seconds_now() - t0;
        cr_expect_not_null(err, "%s: should have been stopped", runaways[i].label);
        if (err)
            cr_expect(strstr(err, "pattern matching exceeded the instruction budget") != NULL,
                      "%s: unexpected error: %s", runaways[i].label, err);
        cr_expect_gt(steps_total, steps_limit, "%s", runaways[i].label);
        /* Well under a second without sanitizers; ASan makes the steps several times slower. */
        cr_expect_lt(took, 10.0, "%s: took %.2f s", runaways[i].label, took);
        lua_close(L);
    }
}

Test(lpattern, charge_is_paid_in_small_instalments)
{
    lua_State *L = new_state();
    meter_reset(L, 2u * 1000 * 1000);
    cr_assert_not_null(run_lua(L, "string.xfind(('a'):rep(5000), '.-.-.-.-b')"));
    cr_expect_gt(steps_calls, 2u * 1000 * 1000 / (2 * LPAT_CHARGE_EVERY));
    cr_expect_leq(steps_largest, 2 * LPAT_CHARGE_EVERY, "one instalment of %zu steps",
                  steps_largest);
    lua_close(L);
}

/* The charge function may raise its own error (the sandbox does, with its own message). */
static bool raise_at_once(lua_State *L, size_t steps)
{
    (void)steps;
    return luaL_error(L, "budget says no") != 0;
}

Test(lpattern, charge_function_may_raise)
{
    lua_State *L = new_state();
    lpat_set_charge(L, raise_at_once);
    const char *err = run_lua(L, "string.xfind(('a'):rep(5000), '.-.-.-.-b')");
    cr_assert_not_null(err);
    cr_expect(strstr(err, "budget says no") != NULL, "error: %s", err);
    /* Every call pays something, even one that returns at once. */
    err = run_lua(L, "string.xmatch('a', 'a')");
    cr_assert_not_null(err);
    cr_expect(strstr(err, "budget says no") != NULL, "error: %s", err);
    lua_close(L);
}

Test(lpattern, no_charge_function_charges_nothing)
{
    lua_State *L = new_state();
    lpat_set_charge(L, NULL);
    cr_expect_null(run_lua(L, "assert(string.xfind(('a'):rep(1000) .. 'b', '.-b') == 1)"));
    lua_close(L);
}

/* Deep recursion raises "pattern too complex" instead of overflowing the C stack, also under
 * ASan's larger frames, and the state stays usable. */
Test(lpattern, deep_recursion_raises)
{
    lua_State *L = new_state();
    meter_reset(L, 0);
    static const char *const deep[] = {
        "string.xfind(('a'):rep(100000), ('a?'):rep(100000))",
        "string.xmatch(('a'):rep(100000), ('.-a'):rep(50000))",
        "string.xgsub(('a'):rep(10000), ('(a?)'):rep(30) .. ('a?'):rep(9000), '')",
        "for _ in string.xgmatch(('ab'):rep(5000), ('a?b?'):rep(5000)) do end",
    };
    for (size_t i = 0; i < N(deep); i++) {
        const char *err = run_lua(L, deep[i]);
        cr_expect_not_null(err, "%s", deep[i]);
        if (err) cr_expect(strstr(err, "pattern too complex") != NULL, "error: %s", err);
    }
    cr_expect_null(run_lua(L, "assert(string.xmatch('key=val', '(%w+)=(%w+)') == 'key')"));
    lua_close(L);
}

/* Plain searches run in memmem, outside the step loop; they are charged by the bytes they may
 * have looked at, whether they find the text or not. */
Test(lpattern, plain_find_is_charged)
{
    lua_State *L = new_state();
    meter_reset(L, 0);
    cr_assert_null(run_lua(L, "S = ('a'):rep(1000000)"));
    cr_assert_null(run_lua(L, "assert(string.xfind(S, 'b', 1, true) == nil)"));
    cr_expect_geq(steps_total, 1000000u);
    meter_reset(L, 0);
    cr_assert_null(run_lua(L, "assert(string.xfind(S .. 'b', 'ab') == 1000000)"));
    cr_expect_geq(steps_total, 1000000u);
    /* A pattern search over the same subject is charged for at least a step per position. */
    meter_reset(L, 0);
    cr_assert_null(run_lua(L, "assert(string.xfind(S, '%d') == nil)"));
    cr_expect_geq(steps_total, 1000000u);
    lua_close(L);
}

/* A finite but long-running plain search (many near misses) is stopped by the same limit after
 * at most one pass over the subject. */
Test(lpattern, plain_find_over_budget_raises)
{
    lua_State *L = new_state();
    meter_reset(L, 1000);
    const char *err = run_lua(L, "string.xfind(('a'):rep(100000), ('a'):rep(500) .. 'b', 1, true)");
    cr_assert_not_null(err);
    cr_expect(strstr(err, "exceeded the instruction budget") != NULL, "error: %s", err);
    lua_close(L);
}

/* gmatch pays at the end of each call of its iterator, not only when the loop ends. */
Test(lpattern, gmatch_pays_per_iteration)
{
    lua_State *L = new_state();
    meter_reset(L, 0);
    cr_assert_null(run_lua(L, "IT = string.xgmatch('a b c', '%a')"));
    size_t before = steps_total;
    cr_assert_null(run_lua(L, "assert(IT() == 'a')"));
    cr_expect_gt(steps_total, before);
    before = steps_total;
    cr_assert_null(run_lua(L, "assert(IT() == 'b')"));
    cr_expect_gt(steps_total, before);
    lua_close(L);
}

/* ---- installation --------------------------------------------------------------------------- */

Test(lpattern, install_sets_the_four_functions)
{
    lua_State *L = luaL_newstate();
    lua_newtable(L);
    int top = lua_gettop(L);
    lpat_install(L);
    cr_expect_eq(lua_gettop(L), top);
    static const char *const names[] = { "find", "match", "gmatch", "gsub" };
    static const lua_CFunction funcs[] = { lpat_find, lpat_match, lpat_gmatch, lpat_gsub };
    for (size_t i = 0; i < N(names); i++) {
        lua_getfield(L, -1, names[i]);
        cr_expect_eq(lua_tocfunction(L, -1), funcs[i], "%s", names[i]);
        lua_pop(L, 1);
    }
    lua_close(L);
}

/* The string metatable indexes the table the functions were installed in, so method calls on
 * strings reach them too, and an iterator may run on another coroutine than its maker. */
Test(lpattern, method_calls_and_coroutines)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    lpat_install(L);
    lua_pop(L, 1);
    meter_reset(L, 0);
    cr_expect_null(run_lua(L, "assert(('hello'):find('l+') == 3)\n"
                              "local it = ('a1b2'):gmatch('%d')\n"
                              "local co = coroutine.wrap(function() return it() end)\n"
                              "assert(co() == '1' and it() == '2' and it() == nil)\n"
                              "assert(select(2, ('aaa'):gsub('a', 'b')) == 3)"));
    cr_expect_gt(steps_total, 0u);
    lua_close(L);
}
