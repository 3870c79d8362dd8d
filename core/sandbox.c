/* Sandboxed Lua states for apps.
 *
 * Containment rests on five things. (1) An allow list: an app's globals are a fresh table holding
 * only safe functions and read-only proxies of the safe libraries; the state's real global table
 * and library tables are never reachable from app code. (2) The shared string metatable is
 * locked and indexes a copy of the string library without string.dump, so ("").dump finds
 * nothing. (3) A count hook charges a callback for the instructions it runs and checks its
 * time and memory; once a callback is over a limit the hook re-arms itself to fire on every
 * instruction, so a pcall in the app that catches the error is interrupted again at its next
 * instruction, until the callback unwinds. The hook slows Lua down by 70 to 90%, so the main
 * thread runs without it until the watchdog (watchdog.h) finds a callback still running after
 * a tick (1 to 2 ms), or the callback passes its memory limit; coroutines, which the watchdog
 * cannot see, count from their first instruction. The time limit counts from the watchdog's
 * notice, backdated by the tick and a half a callback has run by then on average; once it has
 * passed, the watchdog makes the hook of the running thread fire at its very next
 * instruction, however long the one in progress takes. Work done inside one C library call is
 * paid for too: Lua patterns (lpattern.c) and the library functions whose work the memory cap
 * does not bound (sandbox_lib.c) charge the budget as they go, and `load` takes chunks of at
 * most max_load bytes, fed to the parser in pieces it pays for. (4) Lua runs
 * some app code with hooks off: an xpcall message handler called for an error the hook raised,
 * and __gc finalizers. The sandbox's xpcall skips the app's handler once a callback is being
 * stopped, and its setmetatable refuses __gc, so no app code ever runs unbudgeted. (5) A byte-counting allocator refuses growth past
 * a hard cap (never a shrink, which Lua requires to succeed). */
#include "sandbox.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "log.h"
#include "lpattern.h"
#include "sandbox_lib.h"
#include "smallpool.h"
#include "watchdog.h"

/* The hook runs every HOOK_STEP instructions: cheap, and at most that far past the budget. */
#define HOOK_STEP 1000

/* load hands the parser a chunk this many bytes at a time, paying for each piece. */
#define LOAD_PIECE 1024

static const char libs_key = 'L'; /* registry: the state's private library tables */

static void set_hook(struct sandbox *sb, lua_State *L, int count);

/* ---- memory -------------------------------------------------------------------------------- */

/* Records the innermost Lua function running on the main thread, for the log line of a refused
 * allocation: Lua runs no message handler for memory errors, so this is the only moment the
 * location is known. Safe inside the allocator: at every allocation point Lua 5.4 keeps its
 * call chain and saved pc consistent (they are what an error would report), and reading them
 * allocates nothing. Code in a coroutine is reported at the main thread's resume call. */
static void note_refusal(struct sandbox *sb, size_t nsize)
{
    sb->mem_refused = nsize;
    sb->mem_where[0] = '\0';
    if (!sb->calling) return;
    lua_Debug ar;
    lua_State *T = sb->base;
    for (int level = 0; lua_getstack(T, level, &ar); level++) {
        if (lua_getinfo(T, "Sl", &ar) && ar.currentline > 0) {
            snprintf(sb->mem_where, sizeof sb->mem_where, "%s:%d: ", ar.short_src,
                     ar.currentline);
            return;
        }
    }
}

/* Moves a block to a new size: within the pool's class it stays, between pool and malloc it
 * is copied. NULL when out of memory, the old block then still valid. */
static void *resize_block(struct sandbox *sb, void *ptr, size_t old, size_t nsize)
{
    bool was_small = ptr && old <= SP_MAX, small = nsize <= SP_MAX;
    if (was_small && small && sp_class(old) == sp_class(nsize)) return ptr;
    if (!small && ptr && !was_small) return realloc(ptr, nsize);
    void *p = small ? sp_alloc(&sb->pool, nsize) : malloc(nsize);
    if (!p || !ptr) return p;
    memcpy(p, ptr, old < nsize ? old : nsize);
    if (was_small) sp_free(&sb->pool, ptr, old);
    else free(ptr);
    return p;
}

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sandbox *sb = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize tells the object type, not a size */
    if (nsize == 0) {
        if (old && old <= SP_MAX) sp_free(&sb->pool, ptr, old);
        else free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old && sb->mem_hard && sb->mem_used - old + nsize > sb->mem_hard) {
        note_refusal(sb, nsize);
        return NULL;
    }
    void *p = resize_block(sb, ptr, old, nsize);
    if (!p) {
        if (nsize <= old) return ptr; /* a failed shrink keeps the larger block */
        note_refusal(sb, nsize);
        return NULL;
    }
    sb->mem_used = sb->mem_used - old + nsize;
    /* Past the limit in a callback: let the hook judge at the next instruction. */
    if (sb->mem_limit && sb->mem_used > sb->mem_limit && sb->calling && !sb->hooked)
        set_hook(sb, sb->base, 1);
    return p;
}

/* ---- instruction budget and time limit ---------------------------------------------------- */

/* The time limit exists for work the instruction count cannot see: one Lua instruction can
 * compare or copy a long string, one call can run a C library function for long. The coarse
 * clock costs a few nanoseconds; the hook reads it every HOOK_STEP instructions, the watchdog
 * at every tick, and the library functions each time they pay for their work. */
static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t limit_ns(const struct sandbox *sb) { return (int64_t)(sb->time_limit * 1e9); }

struct sandbox *sb_of(lua_State *L) { return *(struct sandbox **)lua_getextraspace(L); }

static void sb_hook(lua_State *L, lua_Debug *ar);

/* Sets (count > 0) or clears the count hook of thread L, which is sb->L or one of its
 * coroutines (sb->hooked follows the hook of sb->base, the callback's thread). The watchdog's
 * signal handler stays off while this runs. */
static void set_hook(struct sandbox *sb, lua_State *L, int count)
{
    sb->setting_hook = 1;
    atomic_signal_fence(memory_order_seq_cst);
    if (count) lua_sethook(L, sb_hook, LUA_MASKCOUNT, count);
    else lua_sethook(L, NULL, 0, 0);
    if (L == sb->base) sb->hooked = count > 0;
    atomic_signal_fence(memory_order_seq_cst);
    sb->setting_hook = 0;
}

/* The watchdog's signal handler, at every tick while a callback runs: the callback has lasted
 * a tick, so count from now; and once its deadline has passed, stop it at the next instruction.
 * The hook at HOOK_STEP would see the deadline only a thousand instructions later, and one
 * instruction can take long (a < between two 30 MB strings of zero bytes takes 0.2 s, as Lua
 * compares them with strcoll a NUL-separated segment at a time): a 1 s limit became 48 s. So
 * the thread that runs (sb->current: the main thread or the coroutine it resumed) gets a hook
 * at every instruction, which is harmless at this point, as the callback is about to end. Only
 * async-signal-safe work here: clock_gettime, lua_sethook (made for this, as lua.c's SIGINT
 * handler shows), and plain stores. */
static void on_overrun(void *ctx)
{
    struct sb_runtime *rt = ctx;
    struct sandbox *sb = rt->running;
    if (!sb) return;
    int64_t deadline = atomic_load_explicit(&sb->deadline_ns, memory_order_relaxed);
    if (sb->time_limit && !deadline) {
        /* It began one to two ticks ago. */
        deadline = monotonic_ns() - WD_TICK_NS * 3 / 2 + limit_ns(sb);
        atomic_store_explicit(&sb->deadline_ns, deadline, memory_order_relaxed);
    }
    if (sb->setting_hook) return; /* the next tick will do */
    if (deadline && monotonic_ns() > deadline) {
        lua_State *running = sb->current;
        lua_sethook(running, sb_hook, LUA_MASKCOUNT, 1);
        if (running == sb->base) sb->hooked = 1;
        return;
    }
    if (sb->hooked) return;
    sb->hooked = 1;
    lua_sethook(sb->base, sb_hook, LUA_MASKCOUNT, HOOK_STEP);
}

/* Pushes "file:line: " for the innermost function at stack level `level` or above that has a
 * current line, or "" when none has. luaL_where looks at one level only, and the work being
 * stopped may run in a C function called by another (table.concat as an __index of the table
 * table.concat reads): the app's author needs the line of Lua code that started it. */
static void push_where(lua_State *L, int level)
{
    lua_Debug ar;
    for (; lua_getstack(L, level, &ar); level++) {
        if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
            lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
            return;
        }
    }
    lua_pushliteral(L, "");
}

/* Stops the running callback: from now on every instruction raises (so a pcall in the app that
 * catches this error is interrupted again at once), and this raises the first time. level: the
 * stack level whose file:line the message names. */
static void stop_running(lua_State *L, struct sandbox *sb, int level)
{
    set_hook(sb, L, 1);
    if (L != sb->base) set_hook(sb, sb->base, 1); /* the callback's thread too, when L is a
                                                   * coroutine it resumed */
    push_where(L, level);
    if (sb->stop == SB_BUDGET)
        lua_pushfstring(L, "instruction budget exceeded (%I instructions)",
                        (lua_Integer)sb->budget);
    else if (sb->stop == SB_TIME)
        lua_pushfstring(L, "time limit exceeded (%f seconds)", (lua_Number)sb->time_limit);
    else
        lua_pushfstring(L, "memory limit exceeded (%I bytes in use, limit %I)",
                        (lua_Integer)sb->mem_used, (lua_Integer)sb->mem_limit);
    lua_concat(L, 2);
    lua_error(L);
}

/* Charges work to the running callback and decides whether it must stop. */
static void charge(struct sandbox *sb, uint64_t work)
{
    sb->used += work;
    if (sb->budget && sb->used > sb->budget) sb->stop = SB_BUDGET;
    int64_t deadline = atomic_load_explicit(&sb->deadline_ns, memory_order_relaxed);
    if (deadline && monotonic_ns() > deadline) sb->stop = SB_TIME;
}

static void sb_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *sb = sb_of(L);
    if (!sb->stop) {
        /* Coroutines keep the per-instruction hook of an earlier stop, and the memory check
         * arms it for the next instruction: put it back at the normal step. */
        set_hook(sb, L, HOOK_STEP);
        charge(sb, HOOK_STEP);
        if (sb->mem_limit && sb->mem_used > sb->mem_limit) {
            /* Garbage is no reason to stop anyone: collect, then judge what is alive. */
            lua_gc(L, LUA_GCCOLLECT);
            if (sb->mem_used > sb->mem_limit) sb->stop = SB_MEMORY;
        }
        if (!sb->stop) return;
    }
    stop_running(L, sb, 0); /* level 0 in a hook: the Lua function running */
}

/* Work done inside one C call is charged here: Lua patterns (lpattern.c) and the library
 * functions of sandbox_lib.c pay for their steps, one step as one instruction (a step costs
 * about as much as a few), and load pays for the bytes it parses. So a pattern that
 * backtracks for hours, or a table.move over 2^50 keys, is stopped like a loop, by the budget
 * or the deadline. Called from inside those functions: level 1 and above is the Lua code that
 * called them. */
static bool charge_library(lua_State *L, size_t steps)
{
    struct sandbox *sb = sb_of(L);
    if (!sb->stop) charge(sb, steps);
    if (sb->stop) stop_running(L, sb, 1);
    return true;
}

/* sandbox_lib.c's coroutine functions report here. A new coroutine counts from its first
 * instruction (the watchdog arms the hook of the running thread only, and only once a call has
 * lasted); a thread about to run becomes the one the watchdog stops at the deadline, and one
 * that runs after a stop stops at its next instruction, as stop_running does for the thread
 * that was running and the main one. */
static void thread_made(lua_State *L, lua_State *co) { set_hook(sb_of(L), co, HOOK_STEP); }

static void thread_runs(lua_State *L, lua_State *to)
{
    struct sandbox *sb = sb_of(L);
    sb->current = to;
    if (sb->stop) set_hook(sb, to, 1);
}

static bool stopping(lua_State *L) { return sb_of(L)->stop != SB_OK; }

static const struct sblib_host library_host = {
    .charge = charge_library,
    .thread_made = thread_made,
    .thread_runs = thread_runs,
    .stopping = stopping,
};

/* ---- library functions with sandbox rules -------------------------------------------------- */

void sb_log_values(lua_State *L, int first, char sep, enum log_level level)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = first; i <= n; i++) {
        if (i > first) luaL_addchar(&b, sep);
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_msg(level, "app %s: %s", sb_of(L)->name, lua_tostring(L, -1));
}

/* print: one log line per call, arguments separated by tabs as in the standalone interpreter. */
static int sb_print(lua_State *L)
{
    sb_log_values(L, 1, '\t', LOG_INFO);
    return 0;
}

/* A chunk handed to the parser a piece at a time. */
struct chunk_reader {
    const char *s;
    size_t left;
};

/* The parser does all its work inside one C call, and some of it grows faster than the chunk:
 * every `or` of a long `a or {} or {} ...` walks the jump list built so far, and a label
 * resolves each pending goto by shifting the rest of the list. max_load bounds the chunk; the
 * pieces let the budget and the deadline stop a parse between them. A charge that stops the
 * callback raises here, inside the protected parser: load then returns the error, and the
 * hook stops the callback at its next instruction. */
static const char *read_piece(lua_State *L, void *ud, size_t *size)
{
    struct chunk_reader *r = ud;
    *size = r->left < LOAD_PIECE ? r->left : LOAD_PIECE;
    if (*size == 0) return NULL;
    charge_library(L, *size);
    const char *piece = r->s;
    r->s += *size;
    r->left -= *size;
    return piece;
}

/* load(chunk [, chunkname [, mode [, env]]]): text chunks only, and the environment must be
 * given, so loaded code can never see the state's real globals. A chunk over max_load bytes
 * is refused like a chunk that does not compile: nil and a message (with one log line per
 * callback, as a pcall may hide the refusal from the app's own log). */
static int sb_load(lua_State *L)
{
    struct sandbox *sb = sb_of(L);
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "=(load)");
    const char *mode = luaL_optstring(L, 3, "t");
    if (strcmp(mode, "t") != 0)
        return luaL_error(L, "load: only text chunks (mode \"t\") are allowed in moonwire");
    luaL_checktype(L, 4, LUA_TTABLE);
    if (sb->max_load && len > sb->max_load) {
        luaL_pushfail(L);
        lua_pushfstring(L, "load: the chunk is %I bytes, more than sandbox.max_load (%I); "
                        "parsing time grows faster than the size of a chunk, so moonwire "
                        "limits it: raise sandbox.max_load to load larger ones",
                        (lua_Integer)len, (lua_Integer)sb->max_load);
        if (!sb->load_refused) {
            sb->load_refused = true;
            push_where(L, 1);
            log_warn("app %s: %s%s", sb->name, lua_tostring(L, -1), lua_tostring(L, -2));
            lua_pop(L, 1);
        }
        return 2;
    }
    struct chunk_reader r = { s, len };
    if (lua_load(L, read_piece, &r, name, "t") != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushvalue(L, 4);
    lua_setupvalue(L, -2, 1);
    return 1;
}

/* setmetatable without finalizers: Lua runs __gc with hooks off, so a finalizer could loop
 * forever outside the budget. An object is marked for finalization only if its metatable has a
 * __gc field when set, so refusing such metatables here closes the door for good. */
static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in moonwire "
                                 "(finalizers would run outside the instruction budget)");
        lua_pop(L, 1);
    }
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* The message handler xpcall installs: the app's own (upvalue 1), unless the callback is being
 * stopped. Lua calls message handlers for errors raised by the budget hook while hooks are
 * off, so running app code here then would escape the budget; the error goes on unchanged. */
static int guarded_handler(lua_State *L)
{
    if (sb_of(L)->stop) return 1;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int finish_xpcall(lua_State *L, int status, lua_KContext extra)
{
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - (int)extra;
}

/* xpcall(f, msgh, ...) with msgh wrapped by guarded_handler. */
static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, guarded_handler, 1);
    lua_replace(L, 2);
    lua_pushboolean(L, 1); /* the first result on success */
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2);   /* f, handler, true, f, args... */
    int status = lua_pcallk(L, n - 2, LUA_MULTRET, 2, 2, finish_xpcall);
    return finish_xpcall(L, status, 2);
}

static int sb_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is allowed in moonwire");
    int kb = lua_gc(L, LUA_GCCOUNT), bytes = lua_gc(L, LUA_GCCOUNTB);
    lua_pushnumber(L, (lua_Number)kb + (lua_Number)bytes / 1024);
    return 1;
}

/* require(name) for the app's own modules (app folder) and moonwire's (scripts folder).
 * Upvalues: 1 the environment, 2 the table of loaded modules. Module names are dotted words, so
 * no name can climb out of those folders. */
static int sb_require(lua_State *L)
{
    struct sandbox *sb = sb_of(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_settop(L, 1);
    if (lua_getfield(L, lua_upvalueindex(2), name) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    if (len == 0 || len > 200 || name[0] == '.' || strstr(name, ".."))
        return luaL_error(L, "require: bad module name '%s'", name);
    char rel[256];
    for (size_t i = 0; i <= len; i++) {
        char ch = name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.' || ch == 0;
        if (!ok) return luaL_error(L, "require: bad module name '%s'", name);
        rel[i] = ch == '.' ? '/' : ch;
    }
    const char *base = strncmp(name, "moonwire.", 9) == 0 ? sb->scripts_dir : sb->app_dir;
    char path[1024];
    const char *forms[] = { "%s/%s.lua", "%s/%s/init.lua" };
    FILE *f = NULL;
    for (size_t i = 0; i < 2 && !f; i++) {
        snprintf(path, sizeof path, forms[i], base, rel);
        f = fopen(path, "r");
    }
    if (!f) {
        /* Libraries people reach for out of habit: name what moonwire offers instead. */
        static const char *const instead[][2] = {
            { "cjson", "mw.json" },           { "dkjson", "mw.json" },
            { "json", "mw.json" },            { "socket", "mw.after, mw.every and mw.now" },
            { "lfs", "nothing: apps do not touch files" },
            { "io", "nothing: apps do not touch files" },
            { "os", "the os table (time, clock, date)" },
            { "crypto", "mw.crypto" },        { "openssl", "mw.crypto and mw.jwt" },
            { "jwt", "mw.jwt" },              { "base64", "mw.base64" },
        };
        for (size_t i = 0; i < sizeof instead / sizeof instead[0]; i++) {
            size_t n = strlen(instead[i][0]);
            if (strncmp(name, instead[i][0], n) == 0 && (name[n] == '\0' || name[n] == '.'))
                return luaL_error(L, "require: module '%s' is not available in moonwire's "
                                     "sandbox; use %s", name, instead[i][1]);
        }
        return luaL_error(L, "require: module '%s' not found (looked in %s)", name, base);
    }
    fclose(f);
    if (sb_load_file(sb, path, lua_upvalueindex(1)) != 0) return lua_error(L);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, lua_upvalueindex(2), name);
    return 1;
}

/* ---- building environments ----------------------------------------------------------------- */

static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      luaL_tolstring(L, 2, NULL));
}

/* The iterator pairs(proxy) returns: next over the table behind the proxy (upvalue 1), which
 * never leaves C. Handing out that table as the iteration state, as a plain next would need,
 * would give the app the table the proxy exists to protect. */
static int readonly_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

/* __pairs: pairs(proxy) walks the table behind it, so `for k, v in pairs(string)` works. */
static int readonly_pairs(lua_State *L)
{
    luaL_getmetafield(L, 1, "__index");
    lua_pushcclosure(L, readonly_next, 1);
    lua_pushvalue(L, 1); /* the state: the proxy itself, harmless */
    lua_pushnil(L);
    return 3;
}

void sb_push_readonly(lua_State *L, int t)
{
    t = lua_absindex(L, t);
    lua_newtable(L);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, t);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, readonly_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* Copies the named fields of the table at src into a new table and pushes it. */
static void push_subset(lua_State *L, int src, const char *const *names)
{
    src = lua_absindex(L, src);
    lua_newtable(L);
    for (; *names; names++) {
        lua_getfield(L, src, *names);
        lua_setfield(L, -2, *names);
    }
}

static const char *const base_allowed[] = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
    "rawlen", "rawset", "select", "tonumber", "tostring", "type", "_VERSION", NULL,
};
static const char *const os_allowed[] = { "clock", "date", "difftime", "time", NULL };
static const char *const libs_proxied[] = { "string", "table", "math", "utf8", "coroutine", "os",
                                            NULL };

/* Pushes this environment's view of the app API (the table at api): a read-only proxy of a
 * fresh copy, with nested tables (mw.json) proxied afresh too, except "state", which is the one
 * table every version shares on purpose. Fresh per environment, so what one version of the
 * code does to its view with rawset is gone after a reload. */
static void push_api_view(lua_State *L, int api)
{
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, api)) {
        if (lua_type(L, -1) == LUA_TTABLE &&
            !(lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "state") == 0)) {
            sb_push_readonly(L, -1);
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
    sb_push_readonly(L, -1);
    lua_remove(L, -2);
}

void sb_push_env(struct sandbox *sb, int api_index)
{
    lua_State *L = sb->L;
    api_index = lua_absindex(L, api_index);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &libs_key);
    int libs = lua_gettop(L);

    lua_getfield(L, libs, "_G");
    push_subset(L, -1, base_allowed);
    lua_remove(L, -2);
    int env = lua_gettop(L);

    for (const char *const *lib = libs_proxied; *lib; lib++) {
        lua_getfield(L, libs, *lib);
        sb_push_readonly(L, -1);
        lua_setfield(L, env, *lib);
        lua_pop(L, 1);
    }
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");
    push_api_view(L, api_index);
    int api = lua_gettop(L);
    lua_pushvalue(L, api);
    lua_setfield(L, env, "mw");

    static const luaL_Reg sandboxed[] = {
        { "print", sb_print },
        { "load", sb_load },
        { "collectgarbage", sb_collectgarbage },
        { "setmetatable", sb_setmetatable },
        { "xpcall", sb_xpcall },
        { NULL, NULL },
    };
    lua_pushvalue(L, env);
    luaL_setfuncs(L, sandboxed, 0);
    lua_pop(L, 1);

    /* require, with this environment's own table of loaded modules. */
    lua_pushvalue(L, env);
    lua_newtable(L);
    lua_pushvalue(L, api);
    lua_setfield(L, -2, "moonwire");
    lua_pushcclosure(L, sb_require, 2);
    lua_setfield(L, env, "require");

    lua_pop(L, 1); /* api */
    lua_remove(L, libs);
}

/* ---- the state ----------------------------------------------------------------------------- */

/* Opens the safe standard libraries privately (not as globals) and locks the string metatable. */
static int open_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        { "_G", luaopen_base },         { "string", luaopen_string },
        { "table", luaopen_table },     { "math", luaopen_math },
        { "utf8", luaopen_utf8 },       { "coroutine", luaopen_coroutine },
        { "os", luaopen_os },           { NULL, NULL },
    };
    lua_newtable(L);
    int t = lua_gettop(L);
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(L, l->name, l->func, 0);
        lua_setfield(L, t, l->name);
    }
    /* The real global table holds base functions that must not exist for apps at all. */
    static const char *const banned[] = { "dofile", "loadfile", "load", "require", "print",
                                          "collectgarbage", "setmetatable", "xpcall", NULL };
    for (const char *const *b = banned; *b; b++) {
        lua_pushnil(L);
        lua_setglobal(L, *b);
    }

    /* string without dump, and with moonwire's pattern functions, whose steps the budget
     * sees; the functions whose work the memory cap does not bound, and the coroutine
     * functions, in versions that report to the sandbox; os narrowed to the clock
     * functions. */
    lua_getfield(L, t, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lpat_install(L);
    lua_pop(L, 1);
    sblib_install(L, t, &library_host);
    lua_getfield(L, t, "os");
    push_subset(L, -1, os_allowed);
    lua_setfield(L, t, "os");
    lua_pop(L, 1);

    /* Every string shares one metatable; apps must neither reach nor change it. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_getfield(L, t, "string");
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_rawsetp(L, LUA_REGISTRYINDEX, &libs_key);
    return 0;
}

/* Every call into an app's state is protected (sb_call); reaching this is a moonwire bug. */
static int sb_panic(lua_State *L)
{
    log_error("app %s: Lua error outside a protected call (a moonwire bug; please report "
              "it): %s", sb_of(L)->name, lua_tostring(L, -1));
    abort();
}

int sb_open(struct sandbox *sb)
{
    sb->mem_used = 0;
    sb->mem_hard = 0; /* opening the libraries must not count against the cap */
    lua_State *L = lua_newstate(sb_alloc, sb);
    if (!L) return -1;
    *(struct sandbox **)lua_getextraspace(L) = sb;
    sb->L = L;
    sb->current = sb->base = L;
    lua_atpanic(L, sb_panic);
    lua_gc(L, LUA_GCGEN, 0, 0);
    lpat_set_charge(L, charge_library);
    lua_pushcfunction(L, open_libs);
    int rc = lua_pcall(L, 0, 0, 0);
    sb->mem_hard = sb->mem_limit ? sb->mem_limit + sb->mem_limit / 8 : 0;
    if (rc != LUA_OK) {
        lua_close(L);
        sp_destroy(&sb->pool);
        sb->L = NULL;
        return -1;
    }
    return 0;
}

int sb_runtime_start(struct sb_runtime *rt, char *err, size_t errlen)
{
    rt->running = NULL;
    rt->lazy_hook = false;
    if (wd_start(&rt->wd, on_overrun, rt) < 0) {
        snprintf(err, errlen, "cannot start the sandbox watchdog (%s): Lua code runs with the "
                 "instruction counter always on, at about half speed", strerror(errno));
        return -1;
    }
    rt->lazy_hook = true;
    return 0;
}

void sb_runtime_stop(struct sb_runtime *rt)
{
    wd_stop(&rt->wd);
    rt->lazy_hook = false;
}

void sb_close(struct sandbox *sb)
{
    if (sb->L) lua_close(sb->L);
    sp_destroy(&sb->pool);
    sb->L = NULL;
}

int sb_load_file(struct sandbox *sb, const char *path, int env_index)
{
    lua_State *L = sb->L;
    env_index = lua_absindex(L, env_index);
    /* luaL_loadfilex names the chunk "@path", so errors read "examples/chat/app.lua:12: ...". */
    if (luaL_loadfilex(L, path, "t") != LUA_OK) return -1;
    lua_pushvalue(L, env_index);
    lua_setupvalue(L, -2, 1);
    return 0;
}

/* ---- calls --------------------------------------------------------------------------------- */

/* Message handler: the error as text plus a traceback. Runs in C, so the budget cannot stop
 * it, and converts without calling the app's __tostring (which could misbehave again). */
static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_getmetafield(L, 1, "__name") == LUA_TSTRING)
            msg = lua_pushfstring(L, "(error object is a %s value)", lua_tostring(L, -1));
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Turns "msg\nstack traceback:\n\tf:1: in ...\n\t..." into one line:
 * "msg [f:1: in ... < g:2: in ...]", dropping the C frames, which say nothing to app authors. */
static void condense(const char *tb, char *out, size_t cap)
{
    const char *marker = strstr(tb, "\nstack traceback:");
    size_t mlen = marker ? (size_t)(marker - tb) : strlen(tb);
    size_t n;
    /* A very long message (each level of a runaway recursion adds a position) keeps both
     * ends: where it started and what finally went wrong. */
    if (mlen > 600)
        n = (size_t)snprintf(out, cap, "%.300s ... %.*s", tb, 200, tb + mlen - 200);
    else
        n = (size_t)snprintf(out, cap, "%.*s", (int)mlen, tb);
    if (!marker || n >= cap) return;
    const char *p = marker + strlen("\nstack traceback:");
    int frames = 0;
    while (*p && n < cap) {
        while (*p == '\n' || *p == '\t') p++;
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len && strncmp(p, "[C]", 3) != 0 && frames < 6) {
            n += (size_t)snprintf(out + n, cap - n, "%s%.*s", frames ? " < " : " [", (int)len, p);
            frames++;
        }
        p += len;
    }
    if (frames && n < cap) snprintf(out + n, cap - n, "]");
}

/* Garbage an earlier callback left (a stopped one can leave a lot) must not count against the
 * next: over the limit, collect before it starts. From C, where no stale stack slot keeps it
 * alive: a hook at the first instruction of a Lua function would find that function's unused
 * registers still holding what a deeper frame of an earlier callback left there. */
static void collect_if_over(struct sandbox *sb)
{
    if (sb->mem_limit && sb->mem_used > sb->mem_limit) lua_gc(sb->L, LUA_GCCOLLECT);
}

/* A callback starts: a fresh budget, and a deadline (without the watchdog; with it, on_overrun
 * sets the deadline once the callback has lasted). */
static void start_budget(struct sandbox *sb)
{
    collect_if_over(sb);
    sb->used = 0;
    sb->load_refused = false;
    int64_t deadline = !sb->rt->lazy_hook && sb->time_limit ? monotonic_ns() + limit_ns(sb) : 0;
    atomic_store_explicit(&sb->deadline_ns, deadline, memory_order_relaxed);
}

void sb_restart(struct sandbox *sb)
{
    start_budget(sb);
    if (!sb->rt->lazy_hook) return;
    wd_renew(&sb->rt->wd);
    if (sb->hooked) set_hook(sb, sb->base, 0);
}

/* Where a callback's traceback comes from after lua_resume failed: the coroutine's stack is
 * kept until it is reset, so the traceback is taken there, in a protected call on the main
 * thread (it allocates). */
static int resume_traceback(lua_State *L)
{
    lua_State *co = lua_touserdata(L, 1);
    const char *msg = lua_tostring(co, -1);
    if (!msg) {
        if (luaL_getmetafield(co, -1, "__name") == LUA_TSTRING)
            msg = lua_pushfstring(L, "(error object is a %s value)", lua_tostring(co, -1));
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(co, -1));
    }
    luaL_traceback(L, co, msg, 0);
    return 1;
}

/* Runs the function below nargs arguments on thread T (sb->L, or a coroutine for resume),
 * with the budget, the watchdog and the hooks of a callback around it. Returns Lua's status
 * (LUA_OK, LUA_YIELD for a resume that yielded, or an error) and sets *st to the sandbox's
 * reason for stopping it, if any. */
static int run_protected(struct sandbox *sb, lua_State *T, int nargs, int nresults, int base,
                         bool resume, int *nres, enum sb_status *st)
{
    start_budget(sb);
    sb->stop = SB_OK;
    sb->calling = true;
    lua_State *outer_current = sb->current, *outer_base = sb->base;
    bool outer_hooked = sb->hooked;
    sb->current = sb->base = T;
    sb->hooked = false;
    struct sb_runtime *rt = sb->rt;
    struct sandbox *outer_sb = rt->running;
    int outer = 0;
    bool lazy = rt->lazy_hook;
    if (lazy) {
        rt->running = sb;
        outer = wd_begin(&rt->wd);
        if (rt->wd.failed) {
            /* Without ticks nothing would ever arm the hook: count this call and every later
             * one from the first instruction, and say so once. */
            log_error("the sandbox watchdog's timer could not be armed (%s); Lua code runs "
                      "with the instruction counter always on from now, at about half speed",
                      strerror(errno));
            rt->lazy_hook = false;
            wd_end(&rt->wd, outer);
            rt->running = outer_sb;
            lazy = false;
            if (sb->time_limit)
                atomic_store_explicit(&sb->deadline_ns, monotonic_ns() + limit_ns(sb),
                                      memory_order_relaxed);
        }
    }
    /* A coroutine may keep the per-instruction hook of an earlier stop: each slice starts
     * with the hook the mode wants. */
    if (!lazy || resume) set_hook(sb, T, lazy ? 0 : HOOK_STEP);
    int rc = resume ? lua_resume(T, sb->L, nargs, nres) : lua_pcall(T, nargs, nresults, base);
    if (lazy) {
        wd_end(&rt->wd, outer);
        rt->running = outer_sb;
        if (sb->hooked) set_hook(sb, T, 0);
    }
    sb->current = outer_current;
    sb->base = outer_base;
    sb->hooked = outer_hooked;
    sb->calling = false;
    *st = sb->stop;
    sb->stop = SB_OK;
    return rc;
}

/* The reason and the log-ready line for a failed call; msg is the traceback or error text. */
static enum sb_status failure(struct sandbox *sb, int rc, enum sb_status st, const char *msg,
                              char *err, size_t errlen)
{
    if (st == SB_OK) st = rc == LUA_ERRMEM ? SB_MEMORY : SB_ERROR;
    if (rc == LUA_ERRMEM) {
        /* Lua runs no message handler for memory errors, so there is no traceback: say where
         * (note_refusal), what was refused, and against what limit. */
        snprintf(err, errlen, "%smemory limit exceeded: an allocation of %zu bytes was refused "
                 "with %zu bytes in use (limit %zu)", sb->mem_where, sb->mem_refused,
                 sb->mem_used, sb->mem_limit);
    } else {
        condense(msg ? msg : "(no message)", err, errlen);
    }
    return st;
}

enum sb_status sb_call(struct sandbox *sb, int nargs, int nresults, char *err, size_t errlen)
{
    lua_State *L = sb->L;
    int base = lua_gettop(L) - nargs; /* the function */
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    enum sb_status st;
    int nres;
    int rc = run_protected(sb, L, nargs, nresults, base, false, &nres, &st);
    if (rc == LUA_OK) {
        lua_remove(L, base);
        return SB_OK;
    }
    st = failure(sb, rc, st, lua_tostring(L, -1), err, errlen);
    lua_settop(L, base - 1);
    return st;
}

enum sb_status sb_resume(struct sandbox *sb, lua_State *co, int nargs, int *nresults,
                         bool *yielded, char *err, size_t errlen)
{
    enum sb_status st;
    *yielded = false;
    *nresults = 0;
    int rc = run_protected(sb, co, nargs, 0, 0, true, nresults, &st);
    if (rc == LUA_OK) return SB_OK;
    if (rc == LUA_YIELD) {
        *yielded = true;
        return SB_OK;
    }
    const char *msg = NULL;
    lua_State *L = sb->L;
    int top = lua_gettop(L);
    if (rc != LUA_ERRMEM) {
        lua_pushcfunction(L, resume_traceback);
        lua_pushlightuserdata(L, co);
        msg = lua_pcall(L, 1, 1, 0) == LUA_OK ? lua_tostring(L, -1) : lua_tostring(co, -1);
    }
    st = failure(sb, rc, st, msg, err, errlen);
    lua_settop(L, top);
    return st;
}

void sb_reset_thread(struct sandbox *sb, lua_State *co)
{
    /* Its to-be-closed variables' __close methods run now: app code, so under a budget and a
     * deadline of its own, counted from the first instruction. */
    start_budget(sb);
    if (sb->time_limit)
        atomic_store_explicit(&sb->deadline_ns, monotonic_ns() + limit_ns(sb),
                              memory_order_relaxed);
    sb->stop = SB_OK;
    bool was_calling = sb->calling;
    lua_State *outer_current = sb->current, *outer_base = sb->base;
    sb->calling = true;
    sb->current = sb->base = co;
    set_hook(sb, co, HOOK_STEP);
    lua_resetthread(co);
    set_hook(sb, co, 0);
    sb->current = outer_current;
    sb->base = outer_base;
    sb->calling = was_calling;
    sb->stop = SB_OK;
}
