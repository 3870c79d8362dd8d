/* Lua 5.4 pattern matching (string.find, match, gmatch, gsub) that can be stopped.
 *
 * Lua's own matcher backtracks inside one C call, where the instruction-count hook never fires:
 * ("a"):rep(5000):find(".-.-.-.-b") runs for hours and freezes the event loop. These functions
 * behave exactly like Lua 5.4.4's on every input but charge their work to a callback as they go,
 * so the sandbox can end a runaway match like any other runaway code. Knows nothing of the
 * sandbox: the callback is the only way out. */
#ifndef MOONWIRE_LPATTERN_H
#define MOONWIRE_LPATTERN_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

/* Captures per pattern and nesting of the matcher's recursion, as in Lua 5.4.4. Deeper
 * recursion raises "pattern too complex" instead of growing the C stack. */
#define LPAT_MAXCAPTURES 32
#define LPAT_MAXDEPTH 200

/* The matchers call the charge function after about this many steps, and once more with the
 * remainder before each call (and each call of a gmatch iterator) returns, so many small calls
 * are paid for too. Only a call that raises leaves its last few steps unpaid. */
#define LPAT_CHARGE_EVERY 4096

/* Called with the number of steps done since the previous call (always > 0). A step is one
 * basic unit of matching work: one attempt to match a pattern item at a subject position, one
 * subject byte scanned by a quantifier, %b or a plain search, one byte compared by a
 * back-reference. Returns true to let the matcher go on. It may raise a Lua error itself (for
 * example the sandbox's own budget message); if it returns false, the matcher raises
 * "pattern matching exceeded the instruction budget". Either way the error unwinds through the
 * matcher safely: it holds no memory or state that needs releasing. The function runs inside
 * any of the four Lua functions below, on the thread that called them, possibly while gsub has a
 * luaL_Buffer open: it must leave the stack as it found it (or raise). Subject and pattern are
 * anchored on the stack, so it may run the garbage collector. */
typedef bool (*lpat_charge_fn)(lua_State *L, size_t steps);

/* Sets the charge function of state L (all its threads); NULL (the default) charges nothing.
 * Set it before the state runs a pattern. May raise a memory error (call it protected, or
 * while the state has no memory limit). */
void lpat_set_charge(lua_State *L, lpat_charge_fn charge);

/* The four functions, as lua_CFunctions with the arguments, results and error messages of Lua
 * 5.4.4's: lpat_find(s, pattern [, init [, plain]]), lpat_match(s, pattern [, init]),
 * lpat_gmatch(s, pattern [, init]) (returns an iterator), and lpat_gsub(s, pattern, repl [, n])
 * (returns the new string and the number of substitutions). Like Lua's, they also accept the
 * undocumented class "%z" (the NUL byte). Errors are raised with lua_error: bad arguments,
 * malformed patterns, "pattern too complex", and whatever the charge function or a gsub
 * replacement function raises. */
int lpat_find(lua_State *L);
int lpat_match(lua_State *L);
int lpat_gmatch(lua_State *L);
int lpat_gsub(lua_State *L);

/* Stores the four functions under the names "find", "match", "gmatch" and "gsub" in the table at
 * the top of the stack (a copy of the string library), replacing Lua's. Leaves the stack as it
 * was. */
void lpat_install(lua_State *L);

#endif
