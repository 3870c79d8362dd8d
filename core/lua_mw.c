/* The `mw` module apps see: publish/subscribers (fan-out in C), timers, JSON, the clock, the
 * log, app state that survives reloads, and the list of connections.
 *
 * Apps get a read-only view of it, made afresh for every version of their code, so no version
 * can replace a function for the next one; mw.state is the one table they write, and it is the
 * same table for every version. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lua.h>

#include "conn.h"
#include "history.h"
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
    const char *topic = lb_check_topic(L, 1, &tlen, "mw.publish");
    const char *data = luaL_checklstring(L, 2, &len);
    bool binary = lua_toboolean(L, 3);
    if (!binary && !lb_valid_text(app, data, len))
        return luaL_error(L, "mw.publish: text is not valid UTF-8; publish bytes as binary "
                             "with mw.publish(topic, data, true)");
    size_t sent;
    int rc = ps_publish(&app->ps, topic, tlen, data, len, binary, &sent, NULL);
    if (rc == PS_E_NOMEM)
        return luaL_error(L, "mw.publish: out of memory for a %d-byte message", (int)len);
    app->stats.publishes++;
    app->stats.deliveries += sent;
    lua_pushinteger(L, (lua_Integer)sent);
    if (rc == PS_E_HISTORY) {
        /* Not raised: the app decides (the message was not sent anywhere). */
        lua_pushfstring(L, "history full: a %d-byte message does not fit in limits."
                        "history_memory (raise it, or publish smaller messages)", (int)len);
        return 2;
    }
    if (rc == PS_E_STORE) {
        lua_pushliteral(L, "redis unavailable: a history topic needs Redis to give the "
                           "publication its offset; nothing was sent (try again later)");
        return 2;
    }
    if (rc == PS_E_REMOTE) {
        lua_pushliteral(L, "published here, but not carried to the other nodes (see the log)");
        return 2;
    }
    return 1;
}

static int range_gc(lua_State *L)
{
    history_range_free(lua_touserdata(L, 1));
    return 0;
}

/* mw.history(topic [, since [, epoch]]) -> { epoch =, offset =, recovered =, publications =
 * { { offset =, data =, binary = }, ... } }, or nil, reason when topic has no history rule.
 * With since: the publications after it, when all of them are still held in that epoch
 * (recovered = true), else none (recovered = false); offset and epoch say where the stream is
 * now. Without: every publication held. */
static int mw_history(lua_State *L)
{
    struct lb_app *app = lb_app_of(L);
    size_t tlen;
    const char *topic = lb_check_topic(L, 1, &tlen, "mw.history");
    bool since_given = !lua_isnoneornil(L, 2);
    lua_Integer since = since_given ? luaL_checkinteger(L, 2) : 0;
    if (since < 0) return luaL_argerror(L, 2, "an offset is 0 or more");
    const char *epoch = luaL_optstring(L, 3, NULL);
    struct history *h = app->ps.history;
    if (!h || !history_rule(h, topic, tlen)) {
        luaL_pushfail(L);
        lua_pushfstring(L, "topic '%s' has no history: add a prefix of it to the config's "
                        "history = { [\"prefix\"] = { size = 100, ttl = 300 } }", topic);
        return 2;
    }
    if (app->env->redis)
        return lb_history_redis(L, topic, tlen, since_given, (uint64_t)since, epoch);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    struct hist_range r;
    history_lock(h);
    int rc = history_read(h, app->ps.history_ns, topic, tlen, since_given, (uint64_t)since, epoch,
                          (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, &r);
    history_unlock(h);
    if (rc < 0) return luaL_error(L, "mw.history: out of memory");
    /* Lua may raise while building the table (its memory cap): the copies are then freed by
     * the collector, through this guard. */
    struct hist_range *held = lua_newuserdatauv(L, sizeof *held, 0);
    *held = r;
    if (luaL_newmetatable(L, "moonwire.history_range")) {
        lua_pushcfunction(L, range_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_newtable(L);
    lua_pushinteger(L, (lua_Integer)r.top.offset);
    lua_setfield(L, -2, "offset");
    lua_pushstring(L, r.top.epoch);
    lua_setfield(L, -2, "epoch");
    lua_pushboolean(L, r.recovered);
    lua_setfield(L, -2, "recovered");
    lua_createtable(L, (int)r.count, 0);
    for (size_t i = 0; i < r.count; i++) {
        const struct hist_entry *e = r.entries[i];
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, (lua_Integer)e->offset);
        lua_setfield(L, -2, "offset");
        lua_pushlstring(L, e->data, e->len);
        lua_setfield(L, -2, "data");
        if (e->binary) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "binary");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "publications");
    history_range_free(held);
    return 1;
}

/* mw.subscribers(topic) -> the number of connections subscribed to it. */
static int mw_subscribers(lua_State *L)
{
    size_t len;
    const char *topic = lb_check_topic(L, 1, &len, "mw.subscribers");
    lua_pushinteger(L, (lua_Integer)ps_subscribers(&lb_app_of(L)->ps, topic, len));
    return 1;
}

/* ---- timers -------------------------------------------------------------------------------- */

/* A timer is a userdata that embeds its libev watcher. While pending, the registry holds it and
 * its callback, so neither can be collected; cancelling or firing (one-shot) lets go of both.
 *
 * Timers share the loop with I/O. Every callback has its budget and time limit, but nothing
 * stopped an app from having a hundred timers that each spin to their limit every millisecond:
 * the loop then ran a hundred stopped callbacks back to back between two polls, and every
 * client of every app went unanswered (handshakes timed out with 408). Three rules give each
 * app a fair share:
 *
 * - Yield to I/O: in one turn of the loop an app's timer callbacks run for TURN_SLICE at most
 *   (the first always runs); timers that come due after that wait in the app's queue and run
 *   in the next turn, after the loop has polled. Between two callbacks that run into their
 *   budget, every connection gets its turn.
 * - A share per second: an app's timer callbacks may use `share` (sandbox.timer_share) of the
 *   loop's time, through a token bucket that holds one second's worth. Past it, due timers
 *   wait in the queue until the bucket allows again: late, never dropped (a repeating timer
 *   that missed periods runs once for them, as libev does). One callback stopped at a time
 *   limit of 1 s leaves the app's timers waiting a second or two; I/O runs meanwhile.
 * - Give up on hopeless timers: a repeating timer whose callback a limit stopped
 *   STOPS_TO_CANCEL times in a row, over STREAK_TO_CANCEL seconds at least, is cancelled, with
 *   a log line naming where it was made. Each of its runs costs the whole budget and ends in
 *   nothing. The span spares a timer that a passing burst slowed down, and leaves the app time
 *   to notice (each stop is logged) and cancel or replace it itself.
 *
 * A game's mw.every(50, tick) that takes a few milliseconds is alone in its turn and uses a
 * few percent of each second: no rule ever delays it. Counting time rather than callbacks
 * lets an app run many short callbacks in one turn (a thousand rooms' timers) while a slow
 * one yields at once; timers queue in the order they came due, so none is starved. */
#define TURN_SLICE 0.005
#define STOPS_TO_CANCEL 3
#define STREAK_TO_CANCEL 2.0

struct lb_timer {
    ev_timer watcher;
    struct lb_app *app;
    struct lb_timer *prev, *next; /* the app's pending timers */
    struct lb_timer *due_prev, *due_next; /* the app's queue of timers waiting to run */
    int self_ref;
    int fn_ref;
    uint32_t generation;          /* the version of the code that made it */
    bool pending;
    bool queued;                  /* in the app's queue (its watcher is stopped meanwhile) */
    bool waiting;                 /* its callback waits (mw.http, mw.sleep): it does not fire
                                   * again until that run ends */
    double due;                   /* on a virtual clock: when it runs next (its watcher idles) */
    uint64_t seq;                 /* on a virtual clock: when it was scheduled, for ties */
    unsigned stops;               /* runs in a row that a limit stopped */
    double streak_began;          /* when the first of those runs began (monotonic s) */
    char where[128];              /* where mw.every or mw.after was called: "app.lua:12" */
};

static const char timer_meta[] = "moonwire.timer";

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void unqueue(struct lb_timer *t)
{
    if (!t->queued) return;
    struct lb_timer_queue *q = &t->app->due;
    if (t->due_prev) t->due_prev->due_next = t->due_next;
    else q->head = t->due_next;
    if (t->due_next) t->due_next->due_prev = t->due_prev;
    else q->tail = t->due_prev;
    t->due_prev = t->due_next = NULL;
    t->queued = false;
}

static void timer_stop(lua_State *L, struct lb_timer *t)
{
    if (!t->pending) return;
    t->pending = false;
    ev_timer_stop(t->app->env->loop, &t->watcher);
    unqueue(t);
    if (t->prev) t->prev->next = t->next;
    else t->app->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
}

static int after_timer(lua_State *L, int status, lua_KContext ctx)
{
    (void)L;
    (void)status;
    (void)ctx;
    return 0;
}

/* Trampoline for a timer that fired, on a run that may wait: calls fn(timer). The timer stays
 * on the run's stack, so a run that waits keeps it. */
static int run_timer(lua_State *L)
{
    struct lb_timer *t = *(struct lb_timer **)lb_task_ctx(lua_touserdata(L, 1));
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    lua_pushvalue(L, 1);
    if (t->watcher.repeat <= 0) timer_stop(L, t); /* one-shot: done (the stack keeps both) */
    lua_callk(L, 1, 0, 0, after_timer);
    return 0;
}

/* Whether the app may run a timer callback now: within its share and its slice of this turn. */
static bool may_run(struct lb_app *app, double now)
{
    struct lb_timer_queue *q = &app->due;
    if (q->share > 0) {
        q->balance += (now - q->refilled) * q->share;
        if (q->balance > q->share) q->balance = q->share;
        q->refilled = now;
        if (q->balance <= 0) return false;
    }
    unsigned turn = ev_iteration(app->env->loop);
    if (turn != q->turn) {
        q->turn = turn;
        q->turn_spent = 0;
    }
    return q->turn_spent < TURN_SLICE;
}

/* Arms the queue's watcher when timers wait: for the next turn, or for when the share allows. */
static void wake(struct lb_app *app)
{
    struct lb_timer_queue *q = &app->due;
    if (!q->head || ev_is_active(&q->resume)) return;
    double wait = q->share > 0 && q->balance <= 0 ? -q->balance / q->share + 1e-3 : 0.;
    ev_timer_set(&q->resume, wait, 0.);
    ev_timer_start(app->env->loop, &q->resume);
}

static void enqueue(struct lb_timer *t)
{
    struct lb_timer_queue *q = &t->app->due;
    /* A repeating timer's watcher would fire again meanwhile: it restarts once it has run. */
    ev_timer_stop(t->app->env->loop, &t->watcher);
    t->queued = true;
    t->due_next = NULL;
    t->due_prev = q->tail;
    if (q->tail) q->tail->due_next = t;
    else q->head = t;
    q->tail = t;
    wake(t->app);
}

static void after_run(struct lb_timer *t, enum sb_status st, double streak_at);

/* A run of t's callback that waited has ended. */
static void run_finished(struct lb_task *task, enum sb_status st)
{
    struct lb_timer *t = *(struct lb_timer **)lb_task_ctx(task);
    struct lb_clock *clock = t->app->env->clock;
    t->waiting = false;
    after_run(t, st, clock ? clock->now : monotonic_s());
}

/* Runs t's callback (which began at `began`, monotonic) and charges its time to the app. A
 * limit's stops count their streak from streak_at: began, or the time on a virtual clock. A
 * repeating timer whose previous run still waits skips this turn. */
static void fire(struct lb_timer *t, double began, double streak_at)
{
    struct lb_app *app = t->app;
    struct lb_timer_queue *q = &app->due;
    lua_State *L = app->sb.L;
    if (t->waiting) return;
    /* Holds the timer across the call: its callback may cancel it, which lets go of it. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    struct lb_what w = { "timer callback", LB_KIND_TIMER, 1, NULL, 0 };
    struct lb_task *waits;
    enum sb_status st = lb_call_async(app, run_timer, &t, sizeof t, &w, run_finished, &waits);
    double spent = monotonic_s() - began;
    q->turn_spent += spent;
    if (q->share > 0) q->balance -= spent;
    if (waits) t->waiting = true;
    else after_run(t, st, streak_at);
    lua_pop(L, 1);
}

/* After a run of t's callback: a repeating timer that limits keep stopping is cancelled, and
 * one that waited in the queue restarts. */
static void after_run(struct lb_timer *t, enum sb_status st, double streak_at)
{
    struct lb_app *app = t->app;
    lua_State *L = app->sb.L;
    bool repeating = t->watcher.repeat > 0;
    if (repeating && t->pending) {
        if (st == SB_OK || st == SB_ERROR) {
            t->stops = 0;
        } else if (t->stops++ == 0) {
            t->streak_began = streak_at;
        }
        if (t->stops >= STOPS_TO_CANCEL && streak_at - t->streak_began >= STREAK_TO_CANCEL) {
            log_error("app %s: timer made at %s cancelled: its callback was stopped %u times "
                      "in a row over %.1f s (the last time it %s)", app->name, t->where,
                      t->stops, streak_at - t->streak_began, lb_failure_text(st));
            timer_stop(L, t);
        } else if (app->env->clock) {
            struct lb_clock *clock = app->env->clock;
            t->due = clock->now + t->watcher.repeat;
            t->seq = ++clock->seq;
        } else if (!ev_is_active(&t->watcher)) {
            ev_timer_again(app->env->loop, &t->watcher); /* it waited in the queue */
        }
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_timer *t = container_of(w, struct lb_timer, watcher);
    struct lb_app *app = t->app;
    double now = monotonic_s();
    /* Behind the timers already waiting, if any: they came due first. */
    if (app->due.head || !may_run(app, now)) enqueue(t);
    else fire(t, now, now);
}

/* The queue's watcher: runs waiting timers in order while the app may. */
static void on_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_app *app = container_of(w, struct lb_app, due.resume);
    double now;
    while (app->due.head && may_run(app, now = monotonic_s())) {
        struct lb_timer *t = app->due.head;
        unqueue(t);
        fire(t, now, now);
    }
    wake(app);
}

void lb_timers_init(struct lb_app *app, double share)
{
    struct lb_timer_queue *q = &app->due;
    ev_timer_init(&q->resume, on_resume, 0., 0.);
    q->head = q->tail = NULL;
    q->share = share;
    q->balance = share;
    q->refilled = monotonic_s();
}

void lb_timers_stop(struct lb_app *app) { ev_timer_stop(app->env->loop, &app->due.resume); }

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
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
        snprintf(t->where, sizeof t->where, "%s:%d", ar.short_src, ar.currentline);
    else
        snprintf(t->where, sizeof t->where, "?");
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    double s = ms / 1000.0;
    ev_timer_init(&t->watcher, on_timer, s, repeat ? s : 0.);
    struct lb_clock *clock = app->env->clock;
    if (clock) {
        t->due = clock->now + s; /* lb_clock_run_next runs it; the watcher stays idle */
        t->seq = ++clock->seq;
    } else {
        ev_timer_start(app->env->loop, &t->watcher);
    }
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
        unqueue(t);
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

bool lb_clock_run_next(struct lb_clock *clock, struct lb_app *const *apps, size_t n,
                       double until)
{
    /* Due within a microsecond of until: sums of milliseconds in seconds since 1970 round
     * differently (advance(25) twice against a timer of 50 ms). */
    until += 1e-6;
    struct lb_timer *next = NULL;
    for (size_t i = 0; i < n; i++)
        for (struct lb_timer *t = apps[i]->timers; t; t = t->next)
            if (t->due <= until && !t->waiting &&
                (!next || t->due < next->due || (t->due == next->due && t->seq < next->seq)))
                next = t;
    struct lb_sleeper *s = lb_clock_first_sleeper(clock, until);
    if (s && (!next || lb_sleeper_before(s, next->due, next->seq))) {
        lb_clock_wake(clock, s);
        return true;
    }
    if (!next) return false;
    if (next->due > clock->now) clock->now = next->due;
    fire(next, monotonic_s(), clock->now);
    return true;
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
void lb_push_json(lua_State *L)
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
    const struct lb_env *env = lb_app_of(L)->env;
    lua_pushnumber(L, env->clock ? env->clock->now : ev_now(env->loop));
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
        lb_push_conn(L, c);
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
        { "history", mw_history },
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
    lb_push_metrics(L);
    lua_setfield(L, -2, "metrics");
    lb_push_json(L);
    lua_setfield(L, -2, "json");
    lb_push_crypto(L, -1);
    lb_push_waits(L, -1);
    lb_push_shared(L, -1);
    lua_newtable(L);
    lua_setfield(L, -2, "state");
    /* Apps never see this table: each environment gets a read-only view of it (sandbox.c). */
}

size_t lb_app_timers(const struct lb_app *app)
{
    size_t n = 0;
    for (const struct lb_timer *t = app->timers; t; t = t->next) n++;
    return n;
}
