/* Apps: loading and hot-reloading the main chunk, and running its handlers.
 *
 * Every entry into an app's state is a C trampoline run by lb_run (sb_call underneath), so that
 * everything that allocates (the message string, the conn object, the request table) happens
 * inside the protected call: an app near its memory limit gets a clean memory error, never a
 * panic. After any handler the connection may have changed (the handler may have closed it):
 * callers re-check before touching it. */
#include "lua_bridge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"
#include "log.h"
#include "lua_app.h"
#include "lua_channels.h"
#include "util.h"
#include "utf8.h"

/* The handlers, in the order of enum call_kind below, then those moonwire.v1 calls
 * (lua_channels.c). */
static const char *const handler_names[] = { "open", "message", "close", "drain", "upgrade",
                                             "reload", "http", "subscribe", "publish", NULL };
_Static_assert(LB_NAME_PUBLISH == 9, "handler_names follows the LB_NAME_ indices");

struct lb_app *lb_app_of(lua_State *L) { return container_of(sb_of(L), struct lb_app, sb); }

static const char *const status_words[] = { "ok", "failed", "ran out of instructions",
                                            "ran out of memory", "ran out of time" };

const char *lb_failure_text(enum sb_status st) { return status_words[st]; }

const char *const lb_kind_names[LB_KINDS] = { "upgrade", "open", "message", "close", "drain",
                                              "timer", "reload", "http" };

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Two clock reads per call, not per message: a batch of messages is one call, and each of its
 * messages counts as the batch's average. */
enum sb_status lb_call(struct lb_app *app, lua_CFunction fn, void *ud, const struct lb_what *w)
{
    lua_State *L = app->sb.L;
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    char err[1024];
    double began = monotonic_s();
    enum sb_status st = sb_call(&app->sb, 1, 0, err, sizeof err);
    size_t n = w->count ? w->count : 1;
    hist_observe(&app->stats.seconds[w->kind], (monotonic_s() - began) / (double)n, n);
    app->valid_text = NULL; /* a handler that raised left it set */
    if (st == SB_OK) return SB_OK;
    app->env->counters->handler_failures[st - SB_ERROR]++;
    app->stats.failures[st - SB_ERROR]++;
    if (!w->c) {
        log_error("app %s: %s %s: %s", app->name, w->what, status_words[st], err);
        return st;
    }
    /* The connection and what it gets, at the end: the line starts as every failure does. */
    char ip[INET6_ADDRSTRLEN], then[48] = "";
    conn_format_ip(w->c, ip, sizeof ip);
    if (w->closes_with) snprintf(then, sizeof then, ", closed with %u", w->closes_with);
    log_error("app %s: %s %s: %s (conn %llu %s%s)", app->name, w->what, status_words[st], err,
              (unsigned long long)conn_id(w->c), ip, then);
    return st;
}

int lb_run(struct lb_app *app, lua_CFunction fn, void *ud, const struct lb_what *w)
{
    return lb_call(app, fn, ud, w) == SB_OK ? 0 : -1;
}

const char *lb_check_topic(lua_State *L, int arg, size_t *len, const char *fname)
{
    const char *topic = luaL_checklstring(L, arg, len);
    size_t max = lb_app_of(L)->env->max_topic_length;
    if (max && *len > max)
        luaL_error(L, "%s: the topic name is %I bytes, longer than limits.max_topic_length "
                      "(%I)", fname, (lua_Integer)*len, (lua_Integer)max);
    return topic;
}

/* ---- handlers ------------------------------------------------------------------------------ */

enum call_kind { CALL_OPEN, CALL_MESSAGE, CALL_CLOSE, CALL_DRAIN, CALL_UPGRADE, CALL_RELOAD,
                 CALL_HTTP };
_Static_assert(CALL_HTTP == 6, "handler_names follows enum call_kind");

/* What a handler call needs, handed to the trampoline as a light userdata. */
struct call {
    enum call_kind kind;
    const char *what;    /* for the log: "message handler" */
    struct lb_app *app;
    struct conn *c;
    const struct conn_message *msgs; /* messages */
    size_t nmsgs;
    const uint8_t *data; /* close reason */
    size_t len;
    unsigned code;
    int previous_ref;    /* reload: the previous version's handlers */
    const struct http_request *req;
    const struct hs_upgrade *up;
    struct conn_verdict *verdict;
    struct conn_response *response; /* http */
    size_t next;         /* messages: the next to hand over */
    struct lane *lane;   /* the connection's queue, for a run from it (or that waits) */
    int conn_ref;        /* close from a lane: the conn object (the connection is gone) */
    uint64_t conn_id;    /* upgrade, http: to find the connection again after a wait */
    uint32_t slot;
};

/* A connection whose handler waits (lua_task.c): what came for it meanwhile, in order, run
 * one at a time once the waiting run ends. */
struct lane_item {
    struct lane_item *next;
    enum call_kind kind; /* CALL_MESSAGE, CALL_DRAIN or CALL_CLOSE */
    bool binary;
    uint16_t code;       /* close */
    int conn_ref;        /* close: the conn object, which the connection handed over */
    size_t len;
    uint8_t data[];      /* the message, or the close reason */
};

struct lane {
    struct lb_app *app;
    struct conn *c;      /* NULL once the connection is freed */
    struct lb_task *task; /* the run that waits; NULL while the next is being started */
    struct lane_item *head, *tail;
    size_t bytes;        /* queued message bytes */
    size_t count;
    bool holding;        /* reading from c is held back */
    struct lane *prev, *next; /* the app's lanes */
};

/* Past either, reading from the connection pauses until its queue is worked off. */
#define LANE_HOLD_BYTES (256 * 1024)
#define LANE_HOLD_COUNT 64

static void push_request(lua_State *L, struct conn *c, const struct http_request *req,
                         const struct hs_upgrade *up);
static void read_verdict(struct lb_app *app, lua_State *L, struct conn *c,
                         const struct http_request *req, struct conn_verdict *v);
static void push_http_request(lua_State *L, struct call *k);
static void read_http_results(lua_State *L, struct call *k);

/* Pushes the app's handler for kind, or returns false (pushing nothing) when it has none. It is
 * looked up on every call (an app may replace one at run time), by a key interned once: a
 * lookup by C string would hash and compare the name every time. */
static bool push_handler(lua_State *L, struct lb_app *app, enum call_kind kind)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->names_ref);
    lua_rawgeti(L, -1, kind + 1);
    lua_remove(L, -2);
    int t = lua_gettable(L, -2);
    lua_remove(L, -2);
    if (t == LUA_TFUNCTION) return true;
    lua_pop(L, 1);
    return false;
}

bool lb_valid_text(struct lb_app *app, const char *data, size_t len)
{
    return data == app->valid_text || utf8_valid(data, len);
}

/* The messages of one read, in one run: its setup is paid once, while each message gets the
 * whole budget (sb_restart). The handler is still looked up for each message (the previous one
 * may have replaced it), from the handlers table and key kept on the stack: 1 handlers, 2 key,
 * 3 conn, and 4 the message, for app->valid_text. A message whose handler waits ends the
 * run's loop: the rest of the read has gone to the connection's lane (next == nmsgs). */
static int next_messages(lua_State *L, struct lb_task *t);

static int after_message(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    lua_settop(L, 3);
    return next_messages(L, (struct lb_task *)ctx);
}

/* After app.subscribe or app.publish waited: its answer, then the read's next messages. */
static int after_ask(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct lb_task *t = (struct lb_task *)ctx;
    struct call *k = lb_task_ctx(t);
    lb_ch_answer(L, k->app, lb_conn_at(L, 3));
    lua_settop(L, 3);
    return next_messages(L, t);
}

/* One message of a moonwire.v1 connection: an envelope, handled in C or by the app's
 * handler for it (app.message, app.subscribe, app.publish). */
static void next_envelope(lua_State *L, struct lb_task *t, const struct conn_message *m)
{
    struct call *k = lb_task_ctx(t);
    struct lb_app *app = k->app;
    int r = lb_ch_prepare(L, app, k->c, m->data, m->len, m->binary);
    if (r == LB_CH_MESSAGE) {
        lua_pushvalue(L, 2);
        if (lua_gettable(L, 1) != LUA_TFUNCTION) return;
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 5);
        lua_callk(L, 3, 0, (lua_KContext)t, after_message);
    } else if (r == LB_CH_ASK) {
        lua_pushvalue(L, 4);
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 5);
        lua_pushvalue(L, 6);
        lua_callk(L, 3, 2, (lua_KContext)t, after_ask);
        lb_ch_answer(L, app, lb_conn_at(L, 3));
    }
}

static int next_messages(lua_State *L, struct lb_task *t)
{
    struct call *k = lb_task_ctx(t);
    struct lb_app *app = k->app;
    while (k->next < k->nmsgs && conn_is_open(k->c)) {
        const struct conn_message *m = &k->msgs[k->next];
        if (k->c->envelope) {
            if (k->next++) sb_restart(&app->sb);
            app->stats.messages_in++;
            next_envelope(L, t, m);
            lua_settop(L, 3);
            k = lb_task_ctx(t);
            continue;
        }
        const char *text = lua_pushlstring(L, (const char *)m->data, m->len);
        lua_pushvalue(L, 2);
        if (lua_gettable(L, 1) != LUA_TFUNCTION) break;
        lua_pushvalue(L, 3);
        lua_pushvalue(L, 4);
        lua_pushboolean(L, m->binary);
        if (k->next++) sb_restart(&app->sb);
        app->stats.messages_in++;
        app->valid_text = m->binary ? NULL : text;
        lua_callk(L, 3, 0, (lua_KContext)t, after_message);
        app->valid_text = NULL;
        lua_settop(L, 3);
        k = lb_task_ctx(t);
    }
    return 0;
}

static int run_messages(lua_State *L, struct lb_task *t)
{
    struct call *k = lb_task_ctx(t);
    struct lb_app *app = k->app;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->names_ref);
    lua_rawgeti(L, 2, CALL_MESSAGE + 1);
    lua_replace(L, 2);
    lb_push_conn(L, k->c);
    return next_messages(L, t);
}

static int after_call(lua_State *L, int status, lua_KContext ctx)
{
    (void)L;
    (void)status;
    (void)ctx;
    return 0;
}

/* After app.upgrade, on the run's coroutine: its four results into the verdict. After a wait
 * the connection is looked up again (it may be gone) and the request is no longer at hand:
 * the connection layer checks the subprotocol then. */
static int after_upgrade(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct call *k = lb_task_ctx((struct lb_task *)ctx);
    struct conn *c = k->c ? k->c : conn_find(k->app->env->conns, k->slot, k->conn_id);
    if (k->verdict) read_verdict(k->app, L, c, k->req, k->verdict);
    return 0;
}

static int after_http(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    struct call *k = lb_task_ctx((struct lb_task *)ctx);
    if (k->response) read_http_results(L, k);
    return 0;
}

/* Trampoline of the handlers: on the run's coroutine, with the run as argument. */
static int run_waitable(lua_State *L)
{
    struct lb_task *t = lua_touserdata(L, 1);
    struct call *k = lb_task_ctx(t);
    lua_settop(L, 0);
    if (k->kind == CALL_MESSAGE) return run_messages(L, t);
    if (!push_handler(L, k->app, k->kind)) return 0;
    if (k->kind == CALL_UPGRADE) {
        push_request(L, k->c, k->req, k->up);
        lua_callk(L, 1, 4, (lua_KContext)t, after_upgrade);
        return after_upgrade(L, LUA_OK, (lua_KContext)t);
    }
    if (k->kind == CALL_HTTP) {
        push_http_request(L, k);
        lua_callk(L, 1, 3, (lua_KContext)t, after_http);
        return after_http(L, LUA_OK, (lua_KContext)t);
    }
    if (k->conn_ref != LUA_NOREF) lua_rawgeti(L, LUA_REGISTRYINDEX, k->conn_ref);
    else lb_push_conn(L, k->c);
    if (k->kind == CALL_CLOSE) {
        lua_pushinteger(L, k->code);
        lua_pushlstring(L, (const char *)k->data, k->len);
        lua_callk(L, 3, 0, 0, after_call);
    } else {
        lua_callk(L, 1, 0, 0, after_call);
    }
    return 0;
}

/* Trampoline of app.reload, a plain call: a reload does not wait. */
static int run_handler(lua_State *L)
{
    struct call *k = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (!push_handler(L, k->app, k->kind)) return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, k->previous_ref);
    lua_call(L, 1, 0);
    return 0;
}

static const enum lb_kind kind_of[] = { [CALL_OPEN] = LB_KIND_OPEN,
                                        [CALL_MESSAGE] = LB_KIND_MESSAGE,
                                        [CALL_CLOSE] = LB_KIND_CLOSE,
                                        [CALL_DRAIN] = LB_KIND_DRAIN,
                                        [CALL_UPGRADE] = LB_KIND_UPGRADE,
                                        [CALL_RELOAD] = LB_KIND_RELOAD,
                                        /* Timed with the upgrades: both answer requests. */
                                        [CALL_HTTP] = LB_KIND_HTTP };

static struct lb_what what_of(const struct call *k)
{
    /* A failed open or message handler closes its connection with 1011 (conn.c); a failed
     * upgrade or http handler answers 500. */
    unsigned closes_with = k->kind == CALL_OPEN || k->kind == CALL_MESSAGE ? 1011
                           : k->kind == CALL_UPGRADE || k->kind == CALL_HTTP ? 500
                                                                          : 0;
    return (struct lb_what){ k->what, kind_of[k->kind], k->nmsgs, k->c, closes_with };
}

static int dispatch(struct call *k)
{
    struct lb_what w = what_of(k);
    return lb_run(k->app, run_handler, k, &w);
}

/* ---- the connection callbacks (lb_conn_handler) -------------------------------------------- */

/* A handler failed for c, which the connection layer now closes with 1011. What the app kept
 * for c goes at once, not when the connection is freed: a client that never answers the close
 * frame would otherwise keep it for close_timeout, and a handler stopped at the memory cap
 * would leave the app at its cap, failing every other connection's handlers meanwhile.
 * app.close still runs, with an empty conn.data. Garbage left by the failed call goes too. */
static int failed(struct lb_app *app, struct conn *c)
{
    lb_conn_clear_data(app, c);
    struct sandbox *sb = &app->sb;
    if (sb->mem_limit && sb->mem_used > sb->mem_limit) lua_gc(sb->L, LUA_GCCOLLECT);
    return -1;
}

/* ---- runs that wait, and the lane of their connection -------------------------------------- */

static void lane_next(struct lane *lane);

static struct lane *lane_of(struct lb_app *app, struct conn *c)
{
    struct lane *lane = conn_handler_data(c);
    if (lane) return lane;
    if (!(lane = calloc(1, sizeof *lane))) return NULL;
    lane->app = app;
    lane->c = c;
    lane->next = app->lanes;
    if (app->lanes) app->lanes->prev = lane;
    app->lanes = lane;
    conn_set_handler_data(c, lane);
    return lane;
}

static void lane_free(struct lane *lane)
{
    struct lb_app *app = lane->app;
    while (lane->head) {
        struct lane_item *it = lane->head;
        lane->head = it->next;
        if (it->conn_ref != LUA_NOREF) luaL_unref(app->sb.L, LUA_REGISTRYINDEX, it->conn_ref);
        free(it);
    }
    if (lane->prev) lane->prev->next = lane->next;
    else app->lanes = lane->next;
    if (lane->next) lane->next->prev = lane->prev;
    if (lane->c) {
        if (lane->holding) conn_hold_input(lane->c, false);
        conn_set_handler_data(lane->c, NULL);
    }
    free(lane);
}

/* Queues an event for c behind the run that waits. Returns false when out of memory (the
 * event is then lost: the caller closes the connection). */
static bool lane_push(struct lane *lane, enum call_kind kind, const void *data, size_t len,
                      bool binary, unsigned code)
{
    struct lane_item *it = malloc(sizeof *it + len);
    if (!it) return false;
    it->next = NULL;
    it->kind = kind;
    it->binary = binary;
    it->code = (uint16_t)code;
    it->conn_ref = LUA_NOREF;
    it->len = len;
    if (len) memcpy(it->data, data, len);
    if (lane->tail) lane->tail->next = it;
    else lane->head = it;
    lane->tail = it;
    if (kind == CALL_MESSAGE) {
        lane->bytes += len;
        lane->count++;
    }
    if (!lane->holding && lane->c && (lane->bytes > LANE_HOLD_BYTES ||
                                      lane->count > LANE_HOLD_COUNT)) {
        lane->holding = true;
        conn_hold_input(lane->c, true);
    }
    return true;
}

static void lane_finished(struct lb_task *t, enum sb_status st);

/* Starts k as a run that may wait. A run that waits takes c's lane (made now if need be), so
 * that what comes for c next waits its turn. Returns 0, or -1 when it failed. */
static int start(struct call *k)
{
    struct lb_what w = what_of(k);
    struct lb_task *t;
    enum sb_status st = lb_call_async(k->app, run_waitable, k, sizeof *k, &w, lane_finished, &t);
    if (!t) return st == SB_OK ? 0 : -1;
    struct call *kept = lb_task_ctx(t);
    /* The rest of a read's messages point into the read buffer: they go to the lane. */
    struct lane *lane = k->lane;
    if (!lane && k->c && !(lane = lane_of(k->app, k->c))) {
        conn_close(k->c, 1011, "out of memory", 13);
        return 0;
    }
    kept->lane = lane;
    if (!lane) return 0; /* a close with its connection gone: nothing follows it */
    lane->task = t;
    for (size_t i = kept->next; i < kept->nmsgs; i++) {
        const struct conn_message *m = &kept->msgs[i];
        if (!lane_push(lane, CALL_MESSAGE, m->data, m->len, m->binary, 0)) {
            conn_close(lane->c, 1011, "out of memory", 13);
            break;
        }
    }
    kept->nmsgs = kept->next; /* the run's loop ends when it resumes */
    kept->msgs = NULL;
    kept->c = NULL;           /* it may be gone by then */
    return 0;
}

/* A run of c that waited has ended: on failure c closes with 1011 as at once, then c's next
 * queued event runs. */
static void lane_finished(struct lb_task *t, enum sb_status st)
{
    struct call *k = lb_task_ctx(t);
    struct lane *lane = k->lane;
    if (!lane) return;
    lane->task = NULL;
    if (st != SB_OK && lane->c && (k->kind == CALL_OPEN || k->kind == CALL_MESSAGE) &&
        conn_is_open(lane->c)) {
        failed(lane->app, lane->c);
        conn_close(lane->c, 1011, "internal error", 14);
    }
    lane_next(lane);
}

/* Runs c's queued events in order until one waits or none is left; an empty lane goes. */
static void lane_next(struct lane *lane)
{
    struct lb_app *app = lane->app;
    while (!lane->task && lane->head) {
        struct lane_item *it = lane->head;
        if (!(lane->head = it->next)) lane->tail = NULL;
        if (it->kind == CALL_MESSAGE) {
            lane->bytes -= it->len;
            lane->count--;
        }
        if (lane->holding && lane->c && lane->bytes <= LANE_HOLD_BYTES / 2 &&
            lane->count <= LANE_HOLD_COUNT / 2) {
            lane->holding = false;
            conn_hold_input(lane->c, false);
        }
        struct conn *c = lane->c;
        struct conn_message m = { it->data, it->len, it->binary };
        struct call k = { .kind = it->kind, .app = app, .c = c, .lane = lane,
                          .conn_ref = LUA_NOREF };
        if (it->kind == CALL_CLOSE) {
            k.what = "close handler";
            k.code = it->code;
            k.data = it->data;
            k.len = it->len;
            k.conn_ref = it->conn_ref;
            k.c = NULL;
            start(&k);
            /* It has the conn object on its stack if it waits. */
            luaL_unref(app->sb.L, LUA_REGISTRYINDEX, it->conn_ref);
            app->stats.connections--;
        } else if (c && conn_is_open(c)) {
            k.what = it->kind == CALL_MESSAGE ? "message handler" : "drain handler";
            k.msgs = &m;
            k.nmsgs = it->kind == CALL_MESSAGE ? 1 : 0;
            if (start(&k) < 0 && it->kind == CALL_MESSAGE && conn_is_open(c)) {
                failed(app, c);
                conn_close(c, 1011, "internal error", 14);
            }
        }
        free(it);
    }
    if (!lane->task && !lane->head) lane_free(lane);
}

void lb_lanes_free(struct lb_app *app)
{
    while (app->lanes) lane_free(app->lanes);
}

/* ---- the connection callbacks (lb_conn_handler) -------------------------------------------- */

static int on_open(void *ctx, struct conn *c)
{
    ((struct lb_app *)ctx)->stats.connections++;
    lb_ch_open(ctx, c);
    struct call k = { .kind = CALL_OPEN, .what = "open handler", .app = ctx, .c = c,
                      .conn_ref = LUA_NOREF };
    return start(&k) < 0 ? failed(ctx, c) : 0;
}

static int on_messages(void *ctx, struct conn *c, const struct conn_message *msgs, size_t n)
{
    struct lane *lane = conn_handler_data(c);
    if (lane) {
        /* A run of c waits: these wait behind it. */
        for (size_t i = 0; i < n; i++)
            if (!lane_push(lane, CALL_MESSAGE, msgs[i].data, msgs[i].len, msgs[i].binary, 0))
                return failed(ctx, c);
        return 0;
    }
    struct call k = { .kind = CALL_MESSAGE, .what = "message handler", .app = ctx, .c = c,
                      .msgs = msgs, .nmsgs = n, .conn_ref = LUA_NOREF };
    return start(&k) < 0 ? failed(ctx, c) : 0;
}

/* app.close is the last the app hears of c: its conn object (and conn.data with it) is let go
 * now rather than when c is freed, up to close_timeout later; an app that kept the object
 * keeps it, and it answers nil, "closed". While a run of c waits, the close waits behind it,
 * holding the conn object (and conn.data) for it. */
static void on_close(void *ctx, struct conn *c, unsigned code, const char *reason,
                     size_t reason_len)
{
    struct lb_app *app = ctx;
    struct lane *lane = conn_handler_data(c);
    if (lane && lane_push(lane, CALL_CLOSE, reason, reason_len, false, code)) {
        lane->tail->conn_ref = conn_handler_ref(c);
        conn_set_handler_ref(c, CONN_NO_REF);
        return;
    }
    struct call k = { .kind = CALL_CLOSE, .what = "close handler", .app = ctx, .c = c,
                      .data = (const uint8_t *)reason, .len = reason_len, .code = code,
                      .conn_ref = LUA_NOREF };
    start(&k);
    app->stats.connections--;
    lb_forget(app, c);
}

static void on_drain(void *ctx, struct conn *c)
{
    struct lane *lane = conn_handler_data(c);
    if (lane) {
        lane_push(lane, CALL_DRAIN, NULL, 0, false, 0);
        return;
    }
    struct call k = { .kind = CALL_DRAIN, .what = "drain handler", .app = ctx, .c = c,
                      .conn_ref = LUA_NOREF };
    start(&k);
}

/* Subscriptions end with the WebSocket, at once: mw.subscribers must not count it. */
static void on_ended(void *ctx, struct conn *c)
{
    struct lb_app *app = ctx;
    ps_leave_all(&app->ps, c);
}

static void on_gone(void *ctx, struct conn *c)
{
    struct lb_app *app = ctx;
    ps_leave_all(&app->ps, c);
    lb_forget(app, c);
    struct lane *lane = conn_handler_data(c);
    if (lane) {
        lane->c = NULL;
        conn_set_handler_data(c, NULL);
    }
}

static void on_upgrade(void *ctx, struct conn *c, const struct http_request *req,
                       const struct hs_upgrade *up, struct conn_verdict *v);
static int on_http(void *ctx, struct conn *c, const struct http_request *req,
                   const struct hs_upgrade *up, struct conn_response *resp);
static bool serves_http(void *ctx);

const struct conn_handler lb_conn_handler = {
    .http = on_http, .serves_http = serves_http, .upgrade = on_upgrade, .open = on_open,
    .messages = on_messages, .ended = on_ended, .close = on_close, .drain = on_drain,
    .gone = on_gone,
};

/* ---- the upgrade hook ---------------------------------------------------------------------- */

/* Pushes the cookies of the request's Cookie fields (RFC 6265 section 5.4: "a=1; b=2") as a
 * table, name -> value, the first of a repeated name winning. Values keep their quotes. */
static void push_cookies(lua_State *L, const struct http_request *req)
{
    lua_newtable(L);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!http_token_equals(h->name, h->name_len, "Cookie")) continue;
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            while (p < stop && (*p == ' ' || *p == '\t')) p++;
            if (eq && eq > p) {
                const char *name_end = eq;
                while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t')) name_end--;
                const char *v = eq + 1, *v_end = stop;
                while (v < v_end && (*v == ' ' || *v == '\t')) v++;
                while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) v_end--;
                lua_pushlstring(L, p, (size_t)(name_end - p));
                if (lua_rawget(L, -2) == LUA_TNIL) {
                    lua_pop(L, 1);
                    lua_pushlstring(L, p, (size_t)(name_end - p));
                    lua_pushlstring(L, v, (size_t)(v_end - v));
                    lua_rawset(L, -3);
                } else {
                    lua_pop(L, 1);
                }
            }
            p = semi ? semi + 1 : end;
        }
    }
}

/* Pushes the request table app.upgrade receives. Header names are lower-cased; repeated
 * fields are joined with ", " as HTTP allows for lists. */
static void push_request(lua_State *L, struct conn *c, const struct http_request *req,
                         const struct hs_upgrade *up)
{
    lua_createtable(L, 0, 7);
    lua_pushlstring(L, up->path, up->path_len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, up->query, up->query_len);
    lua_setfield(L, -2, "query");
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "ip");
    if (up->origin) {
        lua_pushlstring(L, up->origin, up->origin_len);
        lua_setfield(L, -2, "origin");
    }

    lua_createtable(L, 0, (int)req->num_headers);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        char name[256];
        size_t n = h->name_len < sizeof name ? h->name_len : sizeof name - 1;
        for (size_t k = 0; k < n; k++)
            name[k] = (char)(h->name[k] >= 'A' && h->name[k] <= 'Z' ? h->name[k] + 32 : h->name[k]);
        lua_pushlstring(L, name, n);
        if (lua_getfield(L, -2, lua_tostring(L, -1)) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");

    lua_newtable(L);
    size_t pos = 0, len;
    const char *p;
    for (int i = 1; http_list_next(req, "Sec-WebSocket-Protocol", &pos, &p, &len); i++) {
        lua_pushlstring(L, p, len);
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "protocols");

    push_cookies(L, req);
    lua_setfield(L, -2, "cookies");
}

static void refuse(struct conn_verdict *v, int status, const char *reason)
{
    v->status = status;
    snprintf(v->reason, sizeof v->reason, "%s", reason);
}

/* Header fields the handshake itself writes: an app may not set them. */
static bool reserved_header(const char *name, size_t len)
{
    static const char *const names[] = { "Upgrade", "Connection", "Content-Length",
                                         "Content-Type", "Transfer-Encoding",
                                         "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol",
                                         "Sec-WebSocket-Extensions", "Sec-WebSocket-Version",
                                         NULL };
    for (const char *const *n = names; *n; n++)
        if (http_token_equals(name, len, *n)) return true;
    return false;
}

/* Whether an app's header field can be sent as it is: the name a token (RFC 9110 5.6.2), the
 * value free of control characters but tab, so no field can smuggle a line break in. */
static bool header_field_ok(const char *k, size_t klen, const char *val, size_t vlen)
{
    bool ok = k && val && klen > 0;
    for (size_t i = 0; ok && i < klen; i++)
        ok = k[i] > 0x20 && k[i] < 0x7F && !strchr("\"(),/:;<=>?@[\\]{}", k[i]);
    for (size_t i = 0; ok && i < vlen; i++)
        ok = val[i] == '\t' || ((unsigned char)val[i] >= 0x20 && val[i] != 0x7F);
    return ok;
}

/* Formats the table at index t ({ ["WWW-Authenticate"] = "Bearer", ... }) into v->headers as
 * "Name: value" lines. Names must be tokens, values free of control characters (no header
 * injection), and none of the handshake's own fields. Returns false after logging. */
static bool format_headers(struct lb_app *app, lua_State *L, int t, struct conn_verdict *v)
{
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t klen = 0, vlen = 0;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
        const char *val = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vlen) : NULL;
        bool ok = header_field_ok(k, klen, val, vlen);
        if (!ok || reserved_header(k, klen)) {
            log_error("app %s: upgrade handler returned a header the server cannot send (%s); "
                      "headers are { [\"Name\"] = \"value\" } without control characters, and "
                      "not the handshake's own fields", app->name, k ? k : "a non-string name");
            lua_pop(L, 2);
            return false;
        }
        int w = snprintf(v->headers + n, sizeof v->headers - n, "%s: %s\r\n", k, val);
        if (w < 0 || (size_t)w >= sizeof v->headers - n) {
            log_error("app %s: upgrade handler returned more header text than fits (%zu bytes)",
                      app->name, sizeof v->headers - 1);
            lua_pop(L, 2);
            return false;
        }
        n += (size_t)w;
        lua_pop(L, 1);
    }
    return true;
}

/* Reads the handler's results: true [, { protocol =, data =, headers = }], or
 * false [, status [, reason [, headers]]]. */
static void read_verdict(struct lb_app *app, lua_State *L, struct conn *c,
                         const struct http_request *req, struct conn_verdict *v)
{
    int base = lua_gettop(L) - 4;
    if (!lua_toboolean(L, base + 1)) {
        if (lua_isnil(L, base + 1))
            log_warn("app %s: upgrade handler returned nothing, which refuses the connection; "
                     "return true to accept", app->name);
        lua_Integer status = 403;
        if (!lua_isnil(L, base + 2)) {
            int isnum;
            status = lua_tointegerx(L, base + 2, &isnum);
            if (!isnum || status < 400 || status > 599) {
                log_error("app %s: upgrade handler refused with status %s; use a number from "
                          "400 to 599", app->name, luaL_tolstring(L, base + 2, NULL));
                refuse(v, 500, "internal error");
                return;
            }
        }
        const char *reason = lua_type(L, base + 3) == LUA_TSTRING ? lua_tostring(L, base + 3)
                                                                  : "refused by the application";
        refuse(v, (int)status, reason);
        if (lua_type(L, base + 4) == LUA_TTABLE && !format_headers(app, L, base + 4, v)) {
            v->headers[0] = '\0';
            refuse(v, 500, "internal error");
        }
        return;
    }
    if (lua_type(L, base + 2) != LUA_TTABLE) return;
    if (lua_getfield(L, base + 2, "protocol") == LUA_TSTRING) {
        size_t len;
        const char *p = lua_tolstring(L, -1, &len);
        if ((req && !hs_protocol_offered(req, p, len)) || len >= sizeof v->protocol) {
            log_error("app %s: upgrade handler picked subprotocol '%s', which the client did "
                      "not offer", app->name, p);
            refuse(v, 500, "internal error");
            return;
        }
        memcpy(v->protocol, p, len);
        v->protocol_len = len;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, base + 2, "headers") == LUA_TTABLE &&
        !format_headers(app, L, lua_gettop(L), v)) {
        v->headers[0] = '\0';
        refuse(v, 500, "internal error");
        return;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, base + 2, "data") == LUA_TTABLE && c) lb_conn_set_data(L, c);
    else lua_pop(L, 1);
}

static void answer_finished(struct lb_task *t, enum sb_status st);

/* Runs app.upgrade or app.http for c. When it waits, the request's pointers go (they point into
 * a buffer that does not last), the answer gets memory of its own, and the connection hears
 * CONN_WAIT; answer_finished gives it the answer. Returns how the run went, or CONN_WAIT. */
static int start_answer(struct call *k)
{
    struct lb_what w = what_of(k);
    struct lb_task *t;
    enum sb_status st = lb_call_async(k->app, run_waitable, k, sizeof *k, &w, answer_finished,
                                      &t);
    if (!t) return st == SB_OK ? 0 : -1;
    struct call *kept = lb_task_ctx(t);
    kept->c = NULL;
    kept->req = NULL;
    kept->up = NULL;
    if (k->kind == CALL_UPGRADE) kept->verdict = calloc(1, sizeof *kept->verdict);
    else kept->response = calloc(1, sizeof *kept->response);
    return CONN_WAIT;
}

/* A run of app.upgrade or app.http that waited has ended: its connection gets the answer (a
 * failure answers 500, as at once), unless it is gone. */
static void answer_finished(struct lb_task *t, enum sb_status st)
{
    struct call *k = lb_task_ctx(t);
    struct conn *c = conn_find(k->app->env->conns, k->slot, k->conn_id);
    if (k->kind == CALL_UPGRADE) {
        struct conn_verdict *v = k->verdict ? k->verdict : calloc(1, sizeof *v);
        k->verdict = NULL;
        if (v && st != SB_OK) {
            memset(v, 0, sizeof *v);
            refuse(v, 500, "internal error");
            v->failed = true;
        }
        if (v) lb_ch_offer(k->app, v);
        if (c && v) conn_answer(c, v);
        else if (c) conn_abort(c); /* no memory for an answer */
        else free(v);
        return;
    }
    struct conn_response *r = k->response ? k->response : calloc(1, sizeof *r);
    k->response = NULL;
    if (r && st != SB_OK) {
        free(r->body);
        memset(r, 0, sizeof *r);
        r->status = 500;
        r->body = strdup("internal error\n");
        r->body_len = r->body ? strlen(r->body) : 0;
    }
    if (c && r) {
        conn_answer(c, r);
    } else {
        if (r) free(r->body);
        free(r);
        if (c) conn_abort(c);
    }
}

static void on_upgrade(void *ctx, struct conn *c, const struct http_request *req,
                       const struct hs_upgrade *up, struct conn_verdict *v)
{
    struct call k = { .kind = CALL_UPGRADE, .what = "upgrade handler", .app = ctx, .c = c,
                      .req = req, .up = up, .verdict = v, .conn_ref = LUA_NOREF,
                      .conn_id = conn_id(c), .slot = conn_slot(c) };
    int rc = start_answer(&k);
    if (rc == CONN_WAIT) {
        v->status = CONN_WAIT;
    } else if (rc < 0) {
        refuse(v, 500, "internal error");
        v->failed = true;
    } else {
        lb_ch_offer(ctx, v);
    }
}

/* ---- plain HTTP (app.http) ------------------------------------------------------------------ */

/* Whether the app defines app.http now. Runs outside any protected call, so it reads raw and
 * pushes only what exists (the interned key): nothing here can raise. */
static bool serves_http(void *ctx)
{
    struct lb_app *app = ctx;
    lua_State *L = app->sb.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        return false;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->names_ref);
    lua_rawgeti(L, -1, CALL_HTTP + 1);
    lua_remove(L, -2);
    bool has = lua_rawget(L, -2) == LUA_TFUNCTION;
    lua_pop(L, 2);
    return has;
}

/* Header fields the server writes itself for an HTTP response: an app may not set them. */
static bool reserved_http_header(const char *name, size_t len)
{
    static const char *const names[] = { "Connection", "Content-Length", "Transfer-Encoding",
                                         "Keep-Alive", "Upgrade", "X-Content-Type-Options",
                                         NULL };
    for (const char *const *n = names; *n; n++)
        if (http_token_equals(name, len, *n)) return true;
    return false;
}

/* Formats the headers table at index t into resp->text, Content-Type apart (it replaces the
 * default). Raises, which fails the handler (500 and the failure's log line), on a name that
 * is not a token, a value with control characters (no header injection), a field the server
 * writes itself, or more text than fits. */
static void format_http_headers(lua_State *L, int t, struct conn_response *resp)
{
    size_t n = 0, cap = sizeof resp->text;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t klen = 0, vlen = 0;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
        const char *val = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &vlen) : NULL;
        bool ok = header_field_ok(k, klen, val, vlen);
        if (!ok || reserved_http_header(k, klen))
            luaL_error(L, "http handler returned a header the server cannot send (%s); headers "
                          "are { [\"Name\"] = \"value\" } without control characters, and not "
                          "Connection, Content-Length, Transfer-Encoding, Keep-Alive or Upgrade",
                       k ? k : "a non-string name");
        /* Content-Type goes at the end of text, the other lines from its start. */
        bool type = http_token_equals(k, klen, "Content-Type");
        size_t need = type ? vlen + 1 : klen + vlen + 4;
        if (n + need >= cap)
            luaL_error(L, "http handler returned more header text than fits (%d bytes)",
                       (int)sizeof resp->text);
        if (type) {
            cap -= vlen + 1;
            memcpy(resp->text + cap, val, vlen + 1);
            resp->content_type = resp->text + cap;
        } else {
            n += (size_t)snprintf(resp->text + n, cap - n, "%s: %s\r\n", k, val);
        }
        lua_pop(L, 1);
    }
    resp->headers = n ? resp->text : NULL;
}

/* Calls app.http (on the stack) with the request table and reads what it returns:
 * status, body [, headers], or body [, headers] for 200. A table body is sent as JSON. Every
 * check raises before the body is copied, so nothing is left to free when one fails. */
static void push_http_request(lua_State *L, struct call *k)
{
    push_request(L, k->c, k->req, k->up);
    lua_pushlstring(L, k->req->method, k->req->method_len);
    lua_setfield(L, -2, "method");
    size_t blen;
    const char *body = conn_request_body(k->c, &blen);
    lua_pushlstring(L, body, blen);
    lua_setfield(L, -2, "body");
}

static void read_http_results(lua_State *L, struct call *k)
{
    struct conn_response *resp = k->response;
    int base = 1; /* the handler's three results, at 1 to 3 (the stack was cleared) */
    if (lua_type(L, base) == LUA_TNUMBER) {
        int isnum;
        lua_Integer status = lua_tointegerx(L, base, &isnum);
        if (!isnum || status < 100 || status > 599)
            luaL_error(L, "http handler returned status %s; use a number from 100 to 599",
                       luaL_tolstring(L, base, NULL));
        resp->status = (int)status;
    } else if (lua_isnil(L, base)) {
        luaL_error(L, "http handler returned nothing; return status, body [, headers]");
    } else {
        resp->status = 200; /* body [, headers]: move them to 2 and 3 */
        lua_settop(L, 2);
        lua_pushnil(L);
        lua_insert(L, 1);
    }
    if (lua_type(L, base + 2) == LUA_TTABLE) format_http_headers(L, base + 2, resp);
    else if (!lua_isnil(L, base + 2))
        luaL_error(L, "http handler returned headers as a %s; use a table",
                   luaL_typename(L, base + 2));
    int bt = lua_type(L, base + 1);
    if (bt == LUA_TTABLE) {
        /* cjson, loaded by mw.json into this state. */
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        if (lua_getfield(L, -1, "cjson") != LUA_TTABLE || lua_getfield(L, -1, "encode") !=
                                                              LUA_TFUNCTION)
            luaL_error(L, "http handler returned a table, but JSON is not available");
        lua_pushvalue(L, base + 1);
        lua_call(L, 1, 1);
        lua_replace(L, base + 1);
        if (!resp->content_type) resp->content_type = "application/json";
    } else if (bt != LUA_TSTRING && bt != LUA_TNIL) {
        luaL_error(L, "http handler returned a body of type %s; use a string or a table",
                   lua_typename(L, bt));
    }
    size_t len = 0;
    const char *p = bt == LUA_TNIL ? "" : lua_tolstring(L, base + 1, &len);
    if (len && !(resp->body = malloc(len))) luaL_error(L, "out of memory for the response");
    if (len) memcpy(resp->body, p, len);
    resp->body_len = len;
}

static int on_http(void *ctx, struct conn *c, const struct http_request *req,
                   const struct hs_upgrade *up, struct conn_response *resp)
{
    if (!serves_http(ctx)) return -1;
    struct call k = { .kind = CALL_HTTP, .what = "http handler", .app = ctx, .c = c,
                      .req = req, .up = up, .response = resp, .conn_ref = LUA_NOREF,
                      .conn_id = conn_id(c), .slot = conn_slot(c) };
    int rc = start_answer(&k);
    if (rc == CONN_WAIT) return CONN_WAIT;
    if (rc < 0) {
        free(resp->body);
        memset(resp, 0, sizeof *resp);
        resp->status = 500;
        resp->body = strdup("internal error\n");
        resp->body_len = resp->body ? strlen(resp->body) : 0;
    }
    return 0;
}

/* ---- loading and reloading ----------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* Finds the main chunk: path itself, or path/app.lua for a folder. */
static int locate(struct lb_app *app, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot open app %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        app->dir = strdup(path);
        app->file = join(path, "app.lua");
        if (app->file && stat(app->file, &st) != 0) {
            snprintf(err, errlen, "%s is a folder without app.lua; an app folder needs one",
                     path);
            return -1;
        }
    } else {
        const char *slash = strrchr(path, '/');
        app->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        app->file = strdup(path);
    }
    if (!app->dir || !app->file) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* A public/ folder next to app.lua holds the app's static files. */
    char *pub = join(app->dir, "public");
    if (pub && stat(pub, &st) == 0 && S_ISDIR(st.st_mode)) app->public_dir = pub;
    else free(pub);
    return 0;
}

/* Checks what the main chunk returned (at the top of the stack): a table whose handler
 * fields are functions. Raises otherwise. */
static void check_handlers(struct lb_app *app, lua_State *L)
{
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "%s must return a table of handlers (it returned %s)", app->file,
                   luaL_typename(L, -1));
    for (const char *const *h = handler_names; *h; h++) {
        int t = lua_getfield(L, -1, *h);
        lua_pop(L, 1);
        if (t != LUA_TNIL && t != LUA_TFUNCTION)
            luaL_error(L, "%s: handler '%s' must be a function (it is a %s)", app->file, *h,
                       lua_typename(L, t));
    }
    /* A misspelt handler would silently never run: point it out. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION) {
            const char *k = lua_tostring(L, -2);
            bool known = false;
            for (const char *const *h = handler_names; *h && !known; h++)
                known = strcmp(k, *h) == 0;
            if (!known)
                log_warn("app %s: %s returns a function '%s', which is not a handler "
                         "(handlers: upgrade, open, message, close, drain, reload, http, subscribe, "
                         "publish)",
                         app->name, app->file, k);
        }
        lua_pop(L, 1);
    }
    /* app.workers: 1 pins the app to one worker; anything else would be silently ignored. */
    int t = lua_getfield(L, -1, "workers");
    if (t != LUA_TNIL && !(lua_isinteger(L, -1) && lua_tointeger(L, -1) == 1))
        luaL_error(L, "%s: app.workers must be 1 (every connection of the app served by one "
                      "worker, in one Lua state) or left out (each worker serves its own "
                      "connections), not %s", app->file, luaL_tolstring(L, -1, NULL));
    lua_pop(L, 1);
}

/* app.workers of the checked handlers table at the top of the stack: 1 or 0 (not set). */
static int pinned_workers(lua_State *L)
{
    int t = lua_getfield(L, -1, "workers");
    lua_pop(L, 1);
    return t == LUA_TNIL ? 0 : 1;
}

/* Runs the main chunk in a fresh environment and leaves what it returned, checked, on the
 * stack. Collects what it hands mw.after_load in a new list (the previous one is dropped: a
 * failed load's functions never run). */
static void run_main_chunk(struct lb_app *app, lua_State *L)
{
    lua_newtable(L);
    if (app->after_load_ref == LUA_NOREF) app->after_load_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else lua_rawseti(L, LUA_REGISTRYINDEX, app->after_load_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->api_ref);
    sb_push_env(&app->sb, -1);
    if (sb_load_file(&app->sb, app->file, -1) != 0) lua_error(L);
    app->loading = true;
    lua_call(L, 0, 1);
    app->loading = false;
    check_handlers(app, L);
}

/* Trampoline: runs what the main chunk gave mw.after_load, in order, then forgets them. */
static int run_after_load(lua_State *L)
{
    struct lb_app *app = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->after_load_ref);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_call(L, 0, 0);
    }
    lua_newtable(L);
    lua_rawseti(L, LUA_REGISTRYINDEX, app->after_load_ref);
    return 0;
}

/* Trampoline: sets up a new state and runs the first version of the code. */
static int run_load(lua_State *L)
{
    struct lb_app *app = lua_touserdata(L, 1);
    lua_settop(L, 0);
    lua_createtable(L, 6, 0);
    for (int i = 0; handler_names[i]; i++) {
        lua_pushstring(L, handler_names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    /* Keys lua_channels.c reads outside protected calls, interned here once. */
    lua_pushliteral(L, "channels");
    lua_rawseti(L, -2, LB_NAME_CHANNELS);
    lua_pushliteral(L, "heartbeat");
    lua_rawseti(L, -2, LB_NAME_HEARTBEAT);
    app->names_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lb_conn_register(L);
    lb_push_api(app);
    app->api_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    run_main_chunk(app, L);
    app->workers = pinned_workers(L);
    app->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Trampoline: runs the new version of the code and keeps what it returned, checked, aside
 * (app->staged_ref) for lb_app_reload_commit. */
static int run_stage(lua_State *L)
{
    struct lb_app *app = lua_touserdata(L, 1);
    lua_settop(L, 0);
    run_main_chunk(app, L);
    app->staged_workers = pinned_workers(L);
    app->staged_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Trampoline: swaps the staged handlers in; the previous ones go to a new reference for
 * app.reload. */
static int run_swap(lua_State *L)
{
    struct call *k = lua_touserdata(L, 1);
    struct lb_app *app = k->app;
    lua_settop(L, 0);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    k->previous_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->staged_ref);
    lua_rawseti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    return 0;
}

int lb_app_reload_prepare(struct lb_app *app, char *err, size_t errlen)
{
    if (app->staged_ref != LUA_NOREF) lb_app_reload_abort(app); /* never two at once */
    lua_State *L = app->sb.L;
    /* Timers the new main chunk starts belong to the new version. */
    app->timer_generation = app->generation + 1;
    lua_pushcfunction(L, run_stage);
    lua_pushlightuserdata(L, app);
    enum sb_status st = sb_call(&app->sb, 1, 0, err, errlen);
    app->loading = false; /* the chunk may have raised while loading */
    if (st != SB_OK) {
        app->staged_ref = LUA_NOREF;
        lb_cancel_timers(app, app->generation + 1);
        app->timer_generation = app->generation;
        app->stats.reloads_failed++;
        return -1;
    }
    return 0;
}

bool lb_app_reload_staged(const struct lb_app *app) { return app->staged_ref != LUA_NOREF; }
int lb_app_staged_workers(const struct lb_app *app) { return app->staged_workers; }
int lb_app_workers(const struct lb_app *app) { return app->workers; }

void lb_app_reload_abort(struct lb_app *app)
{
    if (app->staged_ref == LUA_NOREF) return;
    luaL_unref(app->sb.L, LUA_REGISTRYINDEX, app->staged_ref);
    app->staged_ref = LUA_NOREF;
    lb_cancel_timers(app, app->generation + 1);
    app->timer_generation = app->generation;
    app->stats.reloads_failed++;
}

int lb_app_reload_commit(struct lb_app *app)
{
    if (app->staged_ref == LUA_NOREF) return -1;
    lua_State *L = app->sb.L;
    uint32_t old = app->generation;
    struct call k = { .kind = CALL_RELOAD, .what = "reload handler",
                      .app = app, .previous_ref = LUA_NOREF };
    lua_pushcfunction(L, run_swap);
    lua_pushlightuserdata(L, &k);
    char err[256];
    if (sb_call(&app->sb, 1, 0, err, sizeof err) != SB_OK) {
        log_error("app %s: reload failed, the previous version keeps running: %s", app->name,
                  err);
        lb_app_reload_abort(app);
        return -1;
    }
    luaL_unref(L, LUA_REGISTRYINDEX, app->staged_ref);
    app->staged_ref = LUA_NOREF;
    app->workers = app->staged_workers;
    lb_cancel_timers(app, old);
    app->generation = old + 1;
    app->stats.reloads_ok++;
    struct lb_what after = { "after_load function", LB_KIND_RELOAD, 1, NULL, 0 };
    lb_run(app, run_after_load, app, &after);
    dispatch(&k);
    luaL_unref(L, LUA_REGISTRYINDEX, k.previous_ref);
    log_notable(LOG_INFO, "app %s reloaded (version %u)", app->name, app->generation + 1);
    return 0;
}

int lb_app_reload(struct lb_app *app)
{
    char err[1024];
    if (lb_app_reload_prepare(app, err, sizeof err) < 0) {
        log_error("app %s: reload failed, the previous version keeps running: %s", app->name,
                  err);
        return -1;
    }
    return lb_app_reload_commit(app);
}

struct lb_app *lb_app_load(const struct lb_env *env, const char *path, const char *scripts_dir,
                           const struct lb_limits *limits, char *err, size_t errlen)
{
    struct lb_app *app = calloc(1, sizeof *app);
    if (!app) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->env = env;
    app->shared_ns = limits->index;
    for (int i = 0; i < LB_KINDS; i++)
        hist_init(&app->stats.seconds[i], hist_seconds_bounds, hist_seconds_nbounds);
    am_init(&app->metrics, LB_MAX_SERIES);
    pthread_mutex_init(&app->metrics_lock, NULL);
    lb_timers_init(app, limits->timer_share);
    ps_init(&app->ps, env->counters, env->max_subscriptions, limits->topic_memory);
    app->ps.history = env->history;
    app->ps.history_ns = limits->index;
    app->handlers_ref = app->api_ref = app->after_load_ref = app->names_ref = LUA_NOREF;
    app->staged_ref = LUA_NOREF;
    app->name = strdup(path);
    app->scripts_dir = strdup(scripts_dir);
    if (!app->name || !app->scripts_dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (locate(app, path, err, errlen) < 0) goto fail;

    app->sb.rt = env->rt;
    app->sb.name = app->name;
    app->sb.app_dir = app->dir;
    app->sb.scripts_dir = app->scripts_dir;
    app->sb.mem_limit = limits->memory;
    app->sb.budget = limits->instructions;
    app->sb.time_limit = limits->time_limit;
    app->sb.max_load = limits->max_load;
    app->wait_timeout = limits->wait_timeout;
    if (sb_open(&app->sb) < 0) {
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        goto fail;
    }
    lua_pushcfunction(app->sb.L, run_load);
    lua_pushlightuserdata(app->sb.L, app);
    if (sb_call(&app->sb, 1, 0, err, errlen) != SB_OK) goto fail;
    lua_pushcfunction(app->sb.L, run_after_load);
    lua_pushlightuserdata(app->sb.L, app);
    if (sb_call(&app->sb, 1, 0, err, errlen) != SB_OK) goto fail;
    return app;

fail:
    lb_app_free(app);
    return NULL;
}

void lb_app_free(struct lb_app *app)
{
    if (!app) return;
    /* Closing the state runs the timers' __gc, which stops their watchers. */
    lb_timers_stop(app);
    lb_ch_stop(app);
    lb_tasks_free(app);
    lb_lanes_free(app);
    sb_close(&app->sb);
    ps_free(&app->ps);
    am_free(&app->metrics);
    pthread_mutex_destroy(&app->metrics_lock);
    free(app->name);
    free(app->dir);
    free(app->file);
    free(app->public_dir);
    free(app->scripts_dir);
    free(app);
}

const char *lb_app_name(const struct lb_app *app) { return app->name; }

/* ---- statistics ---------------------------------------------------------------------------- */

const struct lb_stats *lb_app_stats(const struct lb_app *app) { return &app->stats; }
struct pubsub *lb_app_pubsub(struct lb_app *app) { return &app->ps; }
void lb_app_delivered(struct lb_app *app, size_t n) { app->stats.deliveries += n; }
size_t lb_app_memory(const struct lb_app *app) { return app->sb.mem_used; }
size_t lb_app_topics(const struct lb_app *app) { return app->ps.topics.count; }

size_t lb_app_busiest_topics(const struct lb_app *app, struct lb_topic_count *out, size_t n)
{
    size_t have = 0;
    const struct topic_table *t = &app->ps.topics;
    for (size_t b = 0; b < t->nbuckets && n; b++) {
        for (const struct topic *tp = t->buckets[b]; tp; tp = tp->next) {
            if (have == n && tp->count <= out[n - 1].subscribers) continue;
            size_t at = have < n ? have++ : n - 1;
            out[at] = (struct lb_topic_count){ tp->name, tp->name_len, tp->count };
            for (; at > 0 && out[at].subscribers > out[at - 1].subscribers; at--) {
                struct lb_topic_count x = out[at];
                out[at] = out[at - 1];
                out[at - 1] = x;
            }
        }
    }
    return have;
}

void lb_write_app_metrics(struct lb_app *const *apps, size_t n, struct mbuf *b)
{
    struct am_registry *regs[CFG_MAX_APPS];
    const char *names[CFG_MAX_APPS];
    if (n > CFG_MAX_APPS) n = CFG_MAX_APPS;
    for (size_t i = 0; i < n; i++) {
        regs[i] = &apps[i]->metrics;
        names[i] = apps[i]->name;
    }
    am_write(regs, names, n, b);
}
int lb_app_merge_metrics(struct lb_app *app, struct am_registry *into)
{
    if (app->env->threaded) pthread_mutex_lock(&app->metrics_lock);
    int rc = am_merge(into, &app->metrics);
    if (app->env->threaded) pthread_mutex_unlock(&app->metrics_lock);
    return rc < 0 ? -1 : 0;
}

const char *lb_app_dir(const struct lb_app *app) { return app->dir; }
const char *lb_app_public_dir(const struct lb_app *app) { return app->public_dir; }
