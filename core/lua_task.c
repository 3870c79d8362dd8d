/* Handler runs that can wait (mw.http.request): each runs on a coroutine of the app's state,
 * resumed under the sandbox's limits one slice at a time.
 *
 * A run that never waits costs what a protected call costs: it borrows the app's spare
 * coroutine, and gives it back when it returns. A run that waits keeps its coroutine (and a
 * copy of its caller's context, which lived on the caller's stack), the spare is replaced on
 * the next run, and the run is resumed later by whatever it waited for. Each slice has the
 * whole instruction budget and time limit of a callback; the run as a whole has
 * sandbox.wait_timeout of wall-clock time, after which it is abandoned like a failed call.
 * When a run ends, after waiting or not, its caller hears of it through `finished` (its
 * connection moves on to its next message, a timer re-arms). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"
#include "log.h"
#include "lua_app.h"
#include "util.h"

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_wait_timeout(struct ev_loop *loop, ev_timer *w, int revents);

/* A task with a fresh coroutine, or NULL when the state has no memory for one. Outside a
 * protected call, so the thread is made in one. */
static int make_thread(lua_State *L)
{
    lua_newthread(L);
    return 1;
}

static struct lb_task *task_new(struct lb_app *app)
{
    struct lb_task *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    lua_State *L = app->sb.L;
    lua_pushcfunction(L, make_thread);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        free(t);
        return NULL;
    }
    t->co = lua_tothread(L, -1);
    t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->app = app;
    ev_timer_init(&t->wait, on_wait_timeout, 0., 0.);
    return t;
}

static void task_free(struct lb_task *t)
{
    luaL_unref(t->app->sb.L, LUA_REGISTRYINDEX, t->co_ref);
    free(t);
}

static void unlink_waiting(struct lb_task *t)
{
    struct lb_app *app = t->app;
    if (t->prev) t->prev->next = t->next;
    else app->waiting = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    app->nwaiting--;
}

/* A run is over: its coroutine becomes the spare (one is enough), its context copy goes. */
static void retire(struct lb_task *t)
{
    struct lb_app *app = t->app;
    lua_settop(t->co, 0);
    if (t->ctx_owned) free(t->ctx);
    t->ctx = NULL;
    t->ctx_owned = false;
    t->cancel = NULL;
    t->finished = NULL;
    if (!app->spare && !t->failed && lua_status(t->co) == LUA_OK) app->spare = t;
    else task_free(t); /* a failed one's coroutine is dead (sb_resume) */
}

void lb_task_log_failure(struct lb_app *app, const struct lb_task *t, enum sb_status st,
                         const char *why)
{
    if (!t->w.c && !t->conn_id) {
        log_error("app %s: %s %s: %s", app->name, t->w.what, lb_failure_text(st), why);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    if (t->w.c) conn_format_ip(t->w.c, ip, sizeof ip);
    else snprintf(ip, sizeof ip, "%s", t->ip);
    char then[48] = "";
    if (t->w.closes_with) snprintf(then, sizeof then, ", closed with %u", t->w.closes_with);
    log_error("app %s: %s %s: %s (conn %llu %s%s)", app->name, t->w.what, lb_failure_text(st),
              why, (unsigned long long)t->conn_id, ip, then);
}

/* Runs one slice of t: nargs values on top of its coroutine (the first: the trampoline and its
 * argument). Returns how it went; *waits says it yielded to wait. */
static enum sb_status run_slice(struct lb_task *t, int nargs, bool *waits)
{
    struct lb_app *app = t->app;
    struct lb_task *outer = app->running;
    app->running = t;
    t->cancel = NULL;
    char err[1024];
    int nres;
    double began = monotonic_s();
    enum sb_status st = sb_resume(&app->sb, t->co, nargs, &nres, waits, err, sizeof err);
    t->busy += monotonic_s() - began;
    app->running = outer;
    app->valid_text = NULL; /* a handler that raised or waits left it set */
    if (st == SB_OK && *waits && !t->cancel) {
        /* Yielded, but not to wait for something: coroutine.yield outside any coroutine of
         * its own, which a plain call would have refused. */
        sb_reset_thread(&app->sb, t->co);
        t->failed = true;
        *waits = false;
        st = SB_ERROR;
        snprintf(err, sizeof err, "coroutine.yield was called outside a coroutine (attempt "
                 "to yield from outside a coroutine)");
    }
    if (st != SB_OK) {
        t->failed = true;
        app->env->counters->handler_failures[st - SB_ERROR]++;
        app->stats.failures[st - SB_ERROR]++;
        lb_task_log_failure(app, t, st, err);
    }
    if (!*waits) {
        size_t n = t->w.count ? t->w.count : 1;
        hist_observe(&app->stats.seconds[t->w.kind], t->busy / (double)n, n);
    }
    return st;
}

enum sb_status lb_call_async(struct lb_app *app, lua_CFunction fn, void *ctx, size_t ctx_size,
                             const struct lb_what *w, lb_finished finished,
                             struct lb_task **waiting)
{
    *waiting = NULL;
    struct lb_task *t = app->spare;
    if (!t && !(t = task_new(app))) {
        /* No memory for a coroutine: the app is at its limit. Run it as a plain call, which
         * reports the memory error as any call would (and cannot wait). */
        struct lb_task plain = { .app = app, .ctx = ctx, .ctx_size = ctx_size, .w = *w };
        return lb_call(app, fn, &plain, w);
    }
    app->spare = NULL;
    t->ctx = ctx;
    t->ctx_size = ctx_size;
    t->w = *w;
    t->conn_id = w->c ? conn_id(w->c) : 0;
    t->finished = finished;
    t->busy = 0;
    t->failed = false;
    lua_pushcfunction(t->co, fn);
    lua_pushlightuserdata(t->co, t);
    bool waits;
    enum sb_status st = run_slice(t, 1, &waits);
    if (!waits) {
        retire(t);
        return st;
    }
    /* It waits: its context must outlive the caller's frame, and its connection is known by
     * id from now on. */
    void *copy = malloc(ctx_size);
    if (!copy) {
        /* Cannot keep it: abandon the run as failed. */
        if (t->cancel) t->cancel(t->cancel_ud);
        sb_reset_thread(&app->sb, t->co);
        lb_task_log_failure(app, t, SB_MEMORY, "out of memory to keep a waiting handler");
        retire(t);
        return SB_MEMORY;
    }
    memcpy(copy, ctx, ctx_size);
    t->ctx = copy;
    t->ctx_owned = true;
    if (w->c) conn_format_ip(w->c, t->ip, sizeof t->ip);
    t->w.c = NULL;
    t->began = ev_now(app->env->loop);
    if (app->wait_timeout > 0) {
        ev_timer_set(&t->wait, app->wait_timeout, 0.);
        ev_timer_start(app->env->loop, &t->wait);
    }
    t->next = app->waiting;
    if (app->waiting) app->waiting->prev = t;
    app->waiting = t;
    app->nwaiting++;
    *waiting = t;
    return SB_OK;
}

/* The end of a run that waited: tell its caller, then let the coroutine go. */
static void finish(struct lb_task *t, enum sb_status st)
{
    ev_timer_stop(t->app->env->loop, &t->wait);
    unlink_waiting(t);
    lb_finished fn = t->finished;
    if (fn) fn(t, st);
    retire(t);
}

void lb_task_resume(struct lb_task *t, int nvalues)
{
    bool waits;
    enum sb_status st = run_slice(t, nvalues, &waits);
    if (!waits) finish(t, st);
}

/* sandbox.wait_timeout passed while t waited: stop waiting, and end the run as failed. */
static void on_wait_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_task *t = container_of(w, struct lb_task, wait);
    struct lb_app *app = t->app;
    if (t->cancel) t->cancel(t->cancel_ud);
    t->cancel = NULL;
    sb_reset_thread(&app->sb, t->co);
    char why[128];
    snprintf(why, sizeof why, "it waited longer than sandbox.wait_timeout (%g s)",
             app->wait_timeout);
    app->env->counters->handler_failures[SB_TIME - SB_ERROR]++;
    app->stats.failures[SB_TIME - SB_ERROR]++;
    lb_task_log_failure(app, t, SB_TIME, why);
    size_t n = t->w.count ? t->w.count : 1;
    hist_observe(&app->stats.seconds[t->w.kind], t->busy / (double)n, n);
    finish(t, SB_TIME);
}

void *lb_task_ctx(const struct lb_task *t) { return t->ctx; }

struct lb_task *lb_task_running(struct lb_app *app, lua_State *L)
{
    struct lb_task *t = app->running;
    return t && t->co == L ? t : NULL;
}

void lb_task_waits_for(struct lb_task *t, void (*cancel)(void *), void *ud)
{
    t->cancel = cancel;
    t->cancel_ud = ud;
}

void lb_tasks_free(struct lb_app *app)
{
    while (app->waiting) {
        struct lb_task *t = app->waiting;
        if (t->cancel) t->cancel(t->cancel_ud);
        ev_timer_stop(app->env->loop, &t->wait);
        unlink_waiting(t);
        if (t->ctx_owned) free(t->ctx);
        free(t); /* its coroutine goes with the state */
    }
    free(app->spare);
    app->spare = NULL;
}
