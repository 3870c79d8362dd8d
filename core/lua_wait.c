/* What a handler can wait for: mw.sleep, and mw.http.request (outbound HTTP).
 *
 * Each suspends the run that calls it (lua_task.c) with lua_yieldk and resumes it from the
 * loop when its answer is in: the loop serves everyone else meanwhile. They work in any
 * handler that runs on a coroutine (open, message, close, drain) and in timer callbacks; in the
 * main chunk, app.upgrade, app.http, app.reload or a coroutine the app made, they raise,
 * saying so. */
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_app.h"
#include "util.h"

/* The run on L that may wait, or raises naming fname and where it can be used. */
static struct lb_task *waitable(lua_State *L, const char *fname)
{
    struct lb_task *t = lb_task_running(lb_app_of(L), L);
    if (!t)
        luaL_error(L, "%s can wait only in app.open, app.message, app.close, app.drain and "
                      "timer callbacks, outside coroutines the app makes (here it would block "
                      "the server)", fname);
    return t;
}

/* Continuation of a wait: whatever the resumer pushed is the result. */
static int waited(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

/* ---- mw.sleep ------------------------------------------------------------------------------ */

struct sleeper {
    ev_timer timer;
    struct lb_task *task;
    struct ev_loop *loop;
};

static void sleep_cancel(void *ud)
{
    struct sleeper *s = ud;
    ev_timer_stop(s->loop, &s->timer);
    free(s);
}

static void sleep_done(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct sleeper *s = container_of(w, struct sleeper, timer);
    struct lb_task *t = s->task;
    free(s);
    lb_task_resume(t, 0);
}

/* mw.sleep(ms): the handler waits ms milliseconds while the server goes on. */
static int mw_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    if (!(ms >= 0) || isinf(ms)) return luaL_error(L, "mw.sleep: give a number of milliseconds, "
                                                      "0 or more");
    struct lb_task *t = waitable(L, "mw.sleep");
    struct lb_app *app = lb_app_of(L);
    struct sleeper *s = malloc(sizeof *s);
    if (!s) return luaL_error(L, "mw.sleep: out of memory");
    s->task = t;
    s->loop = app->env->loop;
    ev_timer_init(&s->timer, sleep_done, ms / 1000.0, 0.);
    ev_timer_start(s->loop, &s->timer);
    lb_task_waits_for(t, sleep_cancel, s);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, waited);
}

void lb_push_waits(lua_State *L, int api)
{
    api = lua_absindex(L, api);
    lua_pushcfunction(L, mw_sleep);
    lua_setfield(L, api, "sleep");
}
