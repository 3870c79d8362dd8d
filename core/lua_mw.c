/* The `mw` module apps see: publish/subscribers (fan-out in C), timers, JSON, the clock, the
 * log, app state that survives reloads, and the list of connections.
 *
 * Apps get a read-only view of it, made afresh for every version of their code, so no version
 * can replace a function for the next one; mw.state is the one table they write, and it is the
 * same table for every version. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>

#include "conn.h"
#include "log.h"
#include "lua_app.h"
#include "util.h"

/* ---- publish ------------------------------------------------------------------------------- */

/* mw.publish(topic, data [, binary]) -> receivers. The frame is built once into a shared
 * buffer; every subscriber's queue takes a reference to it (pubsub.c). */
static int mw_publish(lua_State *L)
{
    struct lb_app *app = lb_app_of(L);
    size_t tlen, len;
    const char *topic = luaL_checklstring(L, 1, &tlen);
    const char *data = luaL_checklstring(L, 2, &len);
    bool binary = lua_toboolean(L, 3);
    if (!binary && !lb_valid_text(app, data, len))
        return luaL_error(L, "mw.publish: text is not valid UTF-8; publish bytes as binary "
                             "with mw.publish(topic, data, true)");
    size_t sent;
    if (ps_publish(&app->ps, topic, tlen, data, len, binary, &sent) == PS_E_NOMEM)
        return luaL_error(L, "mw.publish: out of memory for a %d-byte message", (int)len);
    lua_pushinteger(L, (lua_Integer)sent);
    return 1;
}

/* mw.subscribers(topic) -> the number of connections subscribed to it. */
static int mw_subscribers(lua_State *L)
{
    size_t len;
    const char *topic = luaL_checklstring(L, 1, &len);
    lua_pushinteger(L, (lua_Integer)ps_subscribers(&lb_app_of(L)->ps, topic, len));
    return 1;
}

/* ---- timers -------------------------------------------------------------------------------- */

/* A timer is a userdata that embeds its libev watcher. While pending, the registry holds it and
 * its callback, so neither can be collected; cancelling or firing (one-shot) lets go of both. */
struct lb_timer {
    ev_timer watcher;
    struct lb_app *app;
    struct lb_timer *prev, *next; /* the app's pending timers */
    int self_ref;
    int fn_ref;
    uint32_t generation;          /* the version of the code that made it */
    bool pending;
};

static const char timer_meta[] = "moonwire.timer";

static void timer_stop(lua_State *L, struct lb_timer *t)
{
    if (!t->pending) return;
    t->pending = false;
    ev_timer_stop(t->app->env->loop, &t->watcher);
    if (t->prev) t->prev->next = t->next;
    else t->app->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
}

/* Trampoline for a timer that fired: calls fn(timer). */
static int run_timer(lua_State *L)
{
    struct lb_timer *t = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    if (!ev_is_active(&t->watcher)) timer_stop(L, t); /* one-shot: done (the stack keeps both) */
    lua_call(L, 1, 0);
    return 0;
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_timer *t = container_of(w, struct lb_timer, watcher);
    lb_run(t->app, run_timer, t, "timer callback");
}

static int start_timer(lua_State *L, bool repeat)
{
    struct lb_app *app = lb_app_of(L);
    lua_Number ms = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!(ms >= (repeat ? 1 : 0)) || isinf(ms))
        return luaL_error(L, "mw.%s: the interval must be %s milliseconds", repeat ? "every"
                                                                                   : "after",
                          repeat ? "a number of at least 1" : "a number of 0 or more");
    struct lb_timer *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    luaL_setmetatable(L, timer_meta);
    t->app = app;
    t->generation = app->timer_generation;
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    double s = ms / 1000.0;
    ev_timer_init(&t->watcher, on_timer, s, repeat ? s : 0.);
    ev_timer_start(app->env->loop, &t->watcher);
    t->pending = true;
    t->next = app->timers;
    if (app->timers) app->timers->prev = t;
    app->timers = t;
    return 1;
}

/* mw.after(ms, fn) -> timer: fn(timer) runs once, ms from now. */
static int mw_after(lua_State *L) { return start_timer(L, false); }
/* mw.every(ms, fn) -> timer: fn(timer) runs every ms until cancelled. */
static int mw_every(lua_State *L) { return start_timer(L, true); }

/* timer:cancel() -> true when it was still pending. */
static int timer_cancel(lua_State *L)
{
    struct lb_timer *t = luaL_checkudata(L, 1, timer_meta);
    bool was = t->pending;
    timer_stop(L, t);
    lua_pushboolean(L, was);
    return 1;
}

/* Collected: only unreferenced timers are, so it is no longer pending, except when the whole
 * state closes (app shutdown), where stopping the watcher matters. */
static int timer_gc(lua_State *L)
{
    struct lb_timer *t = luaL_checkudata(L, 1, timer_meta);
    if (t->pending) {
        ev_timer_stop(t->app->env->loop, &t->watcher);
        t->pending = false;
    }
    return 0;
}

static int timer_tostring(lua_State *L)
{
    struct lb_timer *t = luaL_checkudata(L, 1, timer_meta);
    lua_pushfstring(L, "timer (%s)", t->pending ? "pending" : "done");
    return 1;
}

void lb_cancel_timers(struct lb_app *app, uint32_t generation)
{
    lua_State *L = app->sb.L;
    struct lb_timer *t = app->timers;
    while (t) {
        struct lb_timer *next = t->next;
        if (t->generation == generation) timer_stop(L, t);
        t = next;
    }
}

static void register_timer_type(lua_State *L)
{
    static const luaL_Reg methods[] = { { "cancel", timer_cancel }, { NULL, NULL } };
    luaL_newmetatable(L, timer_meta);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, timer_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, timer_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* ---- JSON ---------------------------------------------------------------------------------- */

/* lua-cjson 2.1 decodes every number as a float, so an id of 5 would print as "5.0": turn
 * floats that hold whole numbers (exactly representable, |n| < 2^53) back into integers, in
 * values and keys' values alike. Depth is bounded by cjson's decode_max_depth. */
static void integers_in(lua_State *L, int t)
{
    t = lua_absindex(L, t);
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            integers_in(L, -1);
        } else if (lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Number n = lua_tonumber(L, -1);
            if (n == floor(n) && fabs(n) < 9007199254740992.0) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, (lua_Integer)n);
                lua_rawset(L, t); /* replaces the value of an existing key: allowed mid-walk */
            }
        }
        lua_pop(L, 1);
    }
}

/* mw.json.decode(s) -> value | nil, message. Bad JSON from a client is an expected failure, so
 * it does not raise; running out of memory still does. Upvalue 1: cjson.decode. */
static int json_decode(lua_State *L)
{
    luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    int rc = lua_pcall(L, 1, 1, 0);
    if (rc == LUA_OK) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            integers_in(L, -1);
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            lua_Number n = lua_tonumber(L, -1);
            if (n == floor(n) && fabs(n) < 9007199254740992.0) {
                lua_pop(L, 1);
                lua_pushinteger(L, (lua_Integer)n);
            }
        }
        return 1;
    }
    if (rc == LUA_ERRMEM) return lua_error(L);
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
}

/* Pushes mw.json: encode, decode and null from lua-cjson, strict about numbers. */
static void push_json(lua_State *L)
{
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    int cjson = lua_gettop(L);
    /* Standard JSON only: no NaN, Infinity or hexadecimal numbers in either direction. */
    lua_getfield(L, cjson, "decode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    lua_createtable(L, 0, 3);
    lua_getfield(L, cjson, "encode");
    lua_setfield(L, -2, "encode");
    lua_getfield(L, cjson, "decode");
    lua_pushcclosure(L, json_decode, 1);
    lua_setfield(L, -2, "decode");
    lua_getfield(L, cjson, "null");
    lua_setfield(L, -2, "null");
    lua_remove(L, cjson);
}

/* ---- after_load ---------------------------------------------------------------------------- */

/* mw.after_load(fn): while a main chunk is loading, fn runs once it has succeeded: right after
 * it on the first load, after the swap on a hot reload (before app.reload), never when the load
 * fails. When nothing is loading, fn runs at once. It gives libraries a commit point: what they
 * change in mw.state there cannot be left half-done by a reload that fails later in the main
 * chunk. */
static int mw_after_load(lua_State *L)
{
    struct lb_app *app = lb_app_of(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (!app->loading) {
        lua_settop(L, 1);
        lua_call(L, 0, 0);
        return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->after_load_ref);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

/* ---- the rest ------------------------------------------------------------------------------ */

static int mw_now(lua_State *L)
{
    lua_pushnumber(L, ev_now(lb_app_of(L)->env->loop));
    return 1;
}

static int mw_log(lua_State *L)
{
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    int level = luaL_checkoption(L, 1, NULL, levels);
    sb_log_values(L, 2, ' ', (enum log_level)level);
    return 0;
}

/* mw.connections() -> the app's open connections, as an array of conn objects. */
static int mw_connections(lua_State *L)
{
    struct lb_app *app = lb_app_of(L);
    lua_newtable(L);
    lua_Integer n = 0;
    const struct conn_loop *cl = app->env->conns;
    for (struct conn *c = conn_first(cl); c; c = conn_next(cl, c)) {
        if (conn_handler_ctx(c) != app || !conn_is_established(c)) continue;
        lb_push_conn(app, c);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

void lb_push_api(struct lb_app *app)
{
    lua_State *L = app->sb.L;
    static const luaL_Reg api[] = {
        { "publish", mw_publish },
        { "subscribers", mw_subscribers },
        { "after", mw_after },
        { "every", mw_every },
        { "now", mw_now },
        { "log", mw_log },
        { "connections", mw_connections },
        { "after_load", mw_after_load },
        { NULL, NULL },
    };
    register_timer_type(L);
    luaL_newlib(L, api);
    push_json(L);
    lua_setfield(L, -2, "json");
    lua_newtable(L);
    lua_setfield(L, -2, "state");
    /* Apps never see this table: each environment gets a read-only view of it (sandbox.c). */
}
