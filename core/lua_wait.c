/* What a handler can wait for: mw.sleep, and mw.http.request (outbound HTTP).
 *
 * Each suspends the run that calls it (lua_task.c) with lua_yieldk and resumes it from the
 * loop when its answer is in: the loop serves everyone else meanwhile. They work in every
 * handler but app.reload, and in timer callbacks; in the main chunk, app.reload or a coroutine
 * the app made, they raise, saying so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "http_client.h"
#include "history.h"
#include "lua_app.h"
#include "redis.h"
#include "lpresence.h"
#include "rnode.h"
#include "util.h"

/* The run on L that may wait, or raises naming fname and where it can be used. */
static struct lb_task *waitable(lua_State *L, const char *fname)
{
    struct lb_task *t = lb_task_running(lb_app_of(L), L);
    if (!t)
        luaL_error(L, "%s can wait only in handlers and timer callbacks, not in the main "
                      "chunk, app.reload or a coroutine the app makes (here it would block the "
                      "server)", fname);
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

struct lb_sleeper {
    ev_timer timer;
    struct lb_task *task;
    struct ev_loop *loop;
    /* On a virtual clock (moonwire test) the sleeper waits in the clock's list instead. */
    struct lb_clock *clock;
    double due;
    uint64_t seq;
    struct lb_sleeper *prev, *next;
};

static void sleep_cancel(void *ud)
{
    struct lb_sleeper *s = ud;
    if (s->clock) {
        if (s->prev) s->prev->next = s->next;
        else s->clock->sleepers = s->next;
        if (s->next) s->next->prev = s->prev;
    } else {
        ev_timer_stop(s->loop, &s->timer);
    }
    free(s);
}

static void sleep_done(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_sleeper *s = container_of(w, struct lb_sleeper, timer);
    struct lb_task *t = s->task;
    free(s);
    lb_task_resume(t, 0);
}

struct lb_sleeper *lb_clock_first_sleeper(struct lb_clock *clock, double until)
{
    struct lb_sleeper *first = NULL;
    for (struct lb_sleeper *s = clock->sleepers; s; s = s->next)
        if (s->due <= until && (!first || lb_sleeper_before(s, first->due, first->seq)))
            first = s;
    return first;
}

bool lb_sleeper_before(const struct lb_sleeper *s, double due, uint64_t seq)
{
    return s->due < due || (s->due == due && s->seq < seq);
}

void lb_clock_wake(struct lb_clock *clock, struct lb_sleeper *s)
{
    if (s->due > clock->now) clock->now = s->due;
    struct lb_task *t = s->task;
    sleep_cancel(s);
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
    struct lb_sleeper *s = calloc(1, sizeof *s);
    if (!s) return luaL_error(L, "mw.sleep: out of memory");
    s->task = t;
    s->loop = app->env->loop;
    struct lb_clock *clock = app->env->clock;
    if (clock) {
        s->clock = clock;
        s->due = clock->now + ms / 1000.0;
        s->seq = ++clock->seq;
        s->next = clock->sleepers;
        if (clock->sleepers) clock->sleepers->prev = s;
        clock->sleepers = s;
    } else {
        ev_timer_init(&s->timer, sleep_done, ms / 1000.0, 0.);
        ev_timer_start(s->loop, &s->timer);
    }
    lb_task_waits_for(t, sleep_cancel, s);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, waited);
}

/* ---- mw.http.request ----------------------------------------------------------------------- */

/* Header fields one request may carry. */
#define MAX_REQUEST_HEADERS 64

/* One request in flight for a run, and then its answer, until the run has taken it: the
 * answer is turned into Lua values by the run itself (in waited_http, inside its protected
 * slice), so that a memory error there is the handler's, not the server's. */
struct outbound {
    struct hc_call *call;
    struct lb_task *task;
    struct lb_app *app;
    /* the answer */
    const struct hc_response *res;
    const char *reason, *detail;
};

static void http_cancel(void *ud)
{
    struct outbound *o = ud;
    hc_cancel(o->call);
    o->app->http_in_flight--;
    free(o);
}

/* The request's end, from the loop: the run resumes and reads the answer (it is valid during
 * this callback only, which is when the resumed slice runs). */
static void http_done(void *ud, const struct hc_response *res, const char *reason,
                      const char *detail)
{
    struct outbound *o = ud;
    o->app->http_in_flight--;
    o->res = res;
    o->reason = reason;
    o->detail = detail;
    lua_State *co = o->task->co;
    lua_pushlightuserdata(co, o); /* on the stack's reserve: cannot fail */
    lb_task_resume(o->task, 1);
    free(o);
}

/* Continuation of mw.http.request: the answer as res, or nil, reason, detail. */
static int waited_http(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct outbound *o = lua_touserdata(L, -1);
    lua_settop(L, 0);
    const struct hc_response *res = o->res;
    if (!res) {
        luaL_pushfail(L);
        lua_pushstring(L, o->reason);
        lua_pushstring(L, o->detail);
        return 3;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, res->status);
    lua_setfield(L, -2, "status");
    lua_createtable(L, 0, (int)res->nheaders);
    for (size_t i = 0; i < res->nheaders; i++) {
        const char *name = res->headers[2 * i], *value = res->headers[2 * i + 1];
        /* A name that comes more than once (set-cookie, the only one the client keeps apart)
         * becomes a list of its values. */
        int t = lua_getfield(L, -1, name);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushstring(L, value);
            lua_setfield(L, -2, name);
            continue;
        }
        if (t == LUA_TSTRING) {
            lua_createtable(L, 2, 0);
            lua_insert(L, -2);
            lua_rawseti(L, -2, 1);
            lua_pushvalue(L, -1);
            lua_setfield(L, -3, name);
        }
        lua_pushstring(L, value);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
        lua_pop(L, 1);
    }
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, res->body, res->body_len);
    lua_setfield(L, -2, "body");
    return 1;
}

/* The string field k of table 1, or def when absent; raises when it is not a string. */
static const char *opt_string(lua_State *L, const char *k, const char *def, size_t *len)
{
    int t = lua_getfield(L, 1, k);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        if (len) *len = def ? strlen(def) : 0;
        return def;
    }
    if (t != LUA_TSTRING)
        luaL_error(L, "mw.http.request: %s must be a string (it is a %s)", k,
                   lua_typename(L, t));
    return lua_tolstring(L, -1, len); /* stays on the stack until the request is made */
}

/* Pushes cjson's function `name` (the app's state loaded cjson for mw.json). */
static void push_cjson(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, name);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* Under moonwire test: the spec's stub answers at once (nothing waits). */
static int stubbed_request(lua_State *L, const struct lb_stub *stub)
{
    push_cjson(L, "encode");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    size_t len;
    const char *req = lua_tolstring(L, -1, &len);
    char *err = NULL;
    char *answer = stub->call(stub->ud, "http", req, len, &err);
    if (!answer) {
        lua_pushstring(L, err ? err : "the outbound stub failed");
        free(err);
        return lua_error(L);
    }
    /* mw.json.decode: whole numbers as integers, as the app would see them. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, lb_app_of(L)->api_ref);
    lua_getfield(L, -1, "json");
    lua_getfield(L, -1, "decode");
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_pushstring(L, answer);
    free(answer);
    lua_call(L, 1, 1);
    if (lua_getfield(L, -1, "res") == LUA_TTABLE) return 1;
    luaL_pushfail(L);
    lua_getfield(L, -3, "err");
    lua_getfield(L, -4, "detail");
    return 3;
}

/* mw.http.request{ url =, method = "GET", headers = {}, body = nil, timeout = seconds }
 *   -> { status =, headers =, body = } | nil, reason, detail */
static int mw_http_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    struct lb_app *app = lb_app_of(L);
    struct lb_task *t = waitable(L, "mw.http.request");
    if (app->env->stub) return stubbed_request(L, app->env->stub);
    struct hc_request req = { 0 };
    req.url = opt_string(L, "url", NULL, NULL);
    if (!req.url) return luaL_error(L, "mw.http.request: url is required, like url = "
                                       "\"https://api.example.com/x\"");
    req.method = opt_string(L, "method", "GET", NULL);
    req.body = opt_string(L, "body", NULL, &req.body_len);
    int tt = lua_getfield(L, 1, "timeout");
    if (tt != LUA_TNIL) {
        int isnum;
        lua_Number s = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(s > 0) || isinf(s))
            return luaL_error(L, "mw.http.request: timeout must be a number of seconds above 0");
        req.timeout = s;
    }
    lua_pop(L, 1);
    const char *headers[2 * MAX_REQUEST_HEADERS];
    size_t n = 0;
    if (lua_getfield(L, 1, "headers") != LUA_TNIL) {
        int ht = lua_gettop(L);
        luaL_argexpected(L, lua_istable(L, ht), 1, "headers as a table");
        lua_pushnil(L);
        while (lua_next(L, ht)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                return luaL_error(L, "mw.http.request: headers are { [\"Name\"] = \"value\" }, "
                                     "both strings");
            if (n == 2 * MAX_REQUEST_HEADERS)
                return luaL_error(L, "mw.http.request: at most %d headers", MAX_REQUEST_HEADERS);
            headers[n++] = lua_tostring(L, -2);
            headers[n++] = lua_tostring(L, -1);
            lua_pop(L, 1); /* the key stays: the table keeps both strings alive */
        }
    }
    req.headers = headers;
    req.nheaders = n / 2;
    if (app->http_in_flight >= app->env->http_max_in_flight) {
        luaL_pushfail(L);
        lua_pushliteral(L, "limit");
        lua_pushfstring(L, "the app has %I requests in flight already, as many as "
                           "outbound.max_in_flight allows; try again later or raise it",
                        (lua_Integer)app->http_in_flight);
        return 3;
    }
    struct outbound *o = calloc(1, sizeof *o);
    if (!o) return luaL_error(L, "mw.http.request: out of memory");
    o->task = t;
    o->app = app;
    if (!(o->call = hc_request(app->env->http, &req, http_done, o))) {
        free(o);
        return luaL_error(L, "mw.http.request: out of memory");
    }
    app->http_in_flight++;
    lb_task_waits_for(t, http_cancel, o);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, waited_http);
}

/* ---- mw.redis.call ------------------------------------------------------------------------ */

struct redis_call {
    struct lb_task *task;
    struct lb_app *app;
    struct rds_cmd *cmd;
    const redisReply *reply;
    const char *err;
};

static void redis_cancel(void *ud)
{
    struct redis_call *c = ud;
    rds_cancel(c->cmd);
    c->app->redis_in_flight--;
    free(c);
}

static void redis_done(void *ud, const redisReply *reply, const char *err)
{
    struct redis_call *c = ud;
    c->app->redis_in_flight--;
    c->reply = reply;
    c->err = err;
    lua_pushlightuserdata(c->task->co, c);
    lb_task_resume(c->task, 1);
    free(c);
}

/* A reply as Lua: strings and statuses as strings, integers, nil (false inside an array, as
 * Redis' own Lua does), arrays as lists (nested at most 8 deep, as hiredis reads them), an
 * error inside an array as { err = text }. */
static void push_reply(lua_State *L, const redisReply *r, bool nested)
{
    luaL_checkstack(L, 4, "mw.redis.call: reply nested too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS: lua_pushlstring(L, r->str, r->len); break;
    case REDIS_REPLY_INTEGER: lua_pushinteger(L, (lua_Integer)r->integer); break;
    case REDIS_REPLY_ARRAY:
        lua_createtable(L, (int)r->elements, 0);
        for (size_t i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], true);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    default:
        if (nested) lua_pushboolean(L, 0);
        else lua_pushnil(L);
    }
}

/* Continuation of mw.redis.call: the value, or nil, reason. */
static int waited_redis(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct redis_call *c = lua_touserdata(L, -1);
    lua_settop(L, 0);
    if (!c->reply) {
        luaL_pushfail(L);
        if (strcmp(c->err, "timeout") == 0)
            lua_pushliteral(L, "timeout: Redis did not answer in time");
        else if (strcmp(c->err, "unavailable") == 0)
            lua_pushliteral(L, "unavailable: not connected to Redis (it is down or unreachable;"
                               " moonwire reconnects by itself)");
        else if (strcmp(c->err, "lost") == 0)
            lua_pushliteral(L, "lost: the connection to Redis broke before the answer (the "
                               "command may have run)");
        else lua_pushstring(L, c->err);
        return 2;
    }
    if (c->reply->type == REDIS_REPLY_ERROR) {
        luaL_pushfail(L);
        lua_pushlstring(L, c->reply->str, c->reply->len);
        return 2;
    }
    push_reply(L, c->reply, false);
    return 1;
}

/* mw.redis.call(command, arg...) -> the reply | nil, reason. Waits. The command goes to the
 * shard of its first argument (the key), on the worker's pipelined connection. */
static int mw_redis_call(lua_State *L)
{
    struct lb_app *app = lb_app_of(L);
    int argc = lua_gettop(L);
    if (argc < 1) return luaL_error(L, "mw.redis.call needs a command, like "
                                       "mw.redis.call(\"GET\", \"key\")");
    if (argc > 1024) return luaL_error(L, "mw.redis.call: at most 1023 arguments");
    const char *argv[1024];
    size_t lens[1024];
    for (int i = 1; i <= argc; i++) {
        int t = lua_type(L, i);
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            return luaL_error(L, "mw.redis.call: argument %d is a %s; give strings or numbers",
                              i, lua_typename(L, t));
        argv[i - 1] = lua_tolstring(L, i, &lens[i - 1]); /* numbers become strings in place */
    }
    struct lb_task *t = waitable(L, "mw.redis.call");
    struct rnode *node = app->env->redis;
    if (!node)
        return luaL_error(L, "mw.redis.call: no Redis is configured (add redis = "
                             "\"redis://host:port\" to the config, or --redis URL)");
    if (app->redis_in_flight >= app->env->redis_max_in_flight) {
        luaL_pushfail(L);
        lua_pushfstring(L, "limit: the app has %I calls waiting for Redis, as many as "
                           "redis.max_in_flight allows; try again later or raise it",
                        (lua_Integer)app->redis_in_flight);
        return 2;
    }
    struct rds *conn = argc > 1 ? rnode_command_conn(node, argv[1], lens[1])
                                : rnode_command_conn(node, "", 0);
    struct redis_call *c = calloc(1, sizeof *c);
    if (!c) return luaL_error(L, "mw.redis.call: out of memory");
    c->task = t;
    c->app = app;
    if (!(c->cmd = rds_command(conn, argc, argv, lens, app->env->redis_timeout, redis_done, c))) {
        free(c);
        return luaL_error(L, "mw.redis.call: out of memory");
    }
    app->redis_in_flight++;
    lb_task_waits_for(t, redis_cancel, c);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, waited_redis);
}

/* ---- mw.history when history lives in Redis ------------------------------------------------ */

struct history_read {
    struct lb_task *task;
    struct lb_app *app;
    struct rds_cmd *cmd;
    const redisReply *reply;
    const char *err;
    bool since_given;
    uint64_t since;
    char epoch[HIST_EPOCH_LEN + 1]; /* "": none given */
};

static void history_cancel(void *ud)
{
    struct history_read *h = ud;
    rds_cancel(h->cmd);
    h->app->redis_in_flight--;
    free(h);
}

static void history_done(void *ud, const redisReply *reply, const char *err)
{
    struct history_read *h = ud;
    h->app->redis_in_flight--;
    h->reply = reply;
    h->err = err;
    lua_pushlightuserdata(h->task->co, h);
    lb_task_resume(h->task, 1);
    free(h);
}

/* Continuation: the same table as the memory history gives, or nil, reason. */
static int waited_history(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct history_read *h = lua_touserdata(L, -1);
    lua_settop(L, 0);
    const redisReply *r = h->reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        luaL_pushfail(L);
        if (h->err && strcmp(h->err, "unavailable") == 0)
            lua_pushliteral(L, "redis unavailable: history lives in Redis, which is not "
                               "connected now (try again later)");
        else if (h->err) lua_pushstring(L, h->err);
        else if (r && r->type == REDIS_REPLY_ERROR) lua_pushlstring(L, r->str, r->len);
        else lua_pushliteral(L, "redis: an unexpected answer to the history read");
        return 2;
    }
    const redisReply *ep = r->element[0], *list = r->element[2];
    uint64_t top = (uint64_t)r->element[1]->integer;
    bool recovered = true;
    if (h->since_given) {
        bool same = !h->epoch[0] || (ep->len == strlen(h->epoch) &&
                                      memcmp(ep->str, h->epoch, ep->len) == 0);
        uint64_t first = 0;
        if (list->elements && list->element[0]->type == REDIS_REPLY_ARRAY &&
            list->element[0]->elements == 2 && list->element[0]->element[0]->type ==
                                                   REDIS_REPLY_STRING)
            first = strtoull(list->element[0]->element[0]->str, NULL, 10);
        recovered = same && h->since <= top &&
                    (list->elements ? first == h->since + 1 : h->since == top);
    }
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, (lua_Integer)top);
    lua_setfield(L, -2, "offset");
    lua_pushlstring(L, ep->str, ep->len);
    lua_setfield(L, -2, "epoch");
    lua_pushboolean(L, recovered);
    lua_setfield(L, -2, "recovered");
    lua_createtable(L, recovered ? (int)list->elements : 0, 0);
    for (size_t i = 0; recovered && i < list->elements; i++) {
        const redisReply *e = list->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements < 2)
            continue;
        lua_createtable(L, 0, 3);
        if (rnode_entry_binary(e->element[1])) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "binary");
        }
        lua_pushinteger(L, (lua_Integer)strtoull(e->element[0]->str, NULL, 10));
        lua_setfield(L, -2, "offset");
        const redisReply *d = e->element[1]->element[1];
        lua_pushlstring(L, d->str ? d->str : "", d->len);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    lua_setfield(L, -2, "publications");
    return 1;
}

int lb_history_redis(lua_State *L, const char *topic, size_t len, bool since_given,
                     uint64_t since, const char *epoch)
{
    struct lb_app *app = lb_app_of(L);
    struct lb_task *t = waitable(L, "mw.history (with history in Redis)");
    if (app->redis_in_flight >= app->env->redis_max_in_flight) {
        luaL_pushfail(L);
        lua_pushliteral(L, "limit: as many calls wait for Redis as redis.max_in_flight allows");
        return 2;
    }
    struct history_read *h = calloc(1, sizeof *h);
    if (!h) return luaL_error(L, "mw.history: out of memory");
    h->task = t;
    h->app = app;
    h->since_given = since_given;
    h->since = since;
    if (epoch) snprintf(h->epoch, sizeof h->epoch, "%s", epoch);
    char s[24];
    snprintf(s, sizeof s, "%llu", (unsigned long long)since);
    h->cmd = rnode_history_read(app->env->redis, app, topic, len, since_given ? s : NULL,
                                history_done, h);
    if (!h->cmd) {
        free(h);
        return luaL_error(L, "mw.history: out of memory");
    }
    app->redis_in_flight++;
    lb_task_waits_for(t, history_cancel, h);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, waited_history);
}

/* ---- mw.presence, mw.presence_list -------------------------------------------------------- */

struct presence_read {
    struct lb_task *task;
    struct lb_app *app;
    struct rds_cmd *cmd;
    const redisReply *reply;
    const char *err;
    bool list;
};

static void presence_cancel(void *ud)
{
    struct presence_read *p = ud;
    rds_cancel(p->cmd);
    p->app->redis_in_flight--;
    free(p);
}

static void presence_done(void *ud, const redisReply *reply, const char *err)
{
    struct presence_read *p = ud;
    p->app->redis_in_flight--;
    p->reply = reply;
    p->err = err;
    lua_pushlightuserdata(p->task->co, p);
    lb_task_resume(p->task, 1);
    free(p);
}

static int waited_presence(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    struct presence_read *p = lua_touserdata(L, -1);
    lua_settop(L, 0);
    const redisReply *r = p->reply;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        luaL_pushfail(L);
        if (p->err && strcmp(p->err, "unavailable") == 0)
            lua_pushliteral(L, "redis unavailable: presence lives in Redis, which is not "
                               "connected now (try again later)");
        else if (p->err) lua_pushstring(L, p->err);
        else if (r && r->type == REDIS_REPLY_ERROR) lua_pushlstring(L, r->str, r->len);
        else lua_pushliteral(L, "redis: an unexpected answer to the presence read");
        return 2;
    }
    if (!p->list) {
        lua_pushinteger(L, (lua_Integer)(r->elements / 2));
        return 1;
    }
    lua_createtable(L, (int)(r->elements / 2), 0);
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, r->element[i]->str ? r->element[i]->str : "", r->element[i]->len);
        lua_setfield(L, -2, "id");
        lua_pushlstring(L, r->element[i + 1]->str ? r->element[i + 1]->str : "",
                        r->element[i + 1]->len);
        lua_setfield(L, -2, "info");
        lua_rawseti(L, -2, (lua_Integer)(i / 2 + 1));
    }
    return 1;
}

/* The node's own presence entries, copied out of the table's lock into a Lua userdata (a Lua
 * error must not happen while the lock is held): "id_len info_len id info", one after another. */
struct pres_copy {
    char *buf;
    size_t len, cap, n;
    bool overflow;
};

static void copy_entry(void *ud, const char *id, size_t id_len, const char *info,
                       size_t info_len)
{
    struct pres_copy *pc = ud;
    size_t need = 2 * sizeof(size_t) + id_len + info_len;
    if (pc->len + need > pc->cap) pc->overflow = true;
    if (pc->overflow) return;
    if (pc->buf) {
        memcpy(pc->buf + pc->len, &id_len, sizeof id_len);
        memcpy(pc->buf + pc->len + sizeof id_len, &info_len, sizeof info_len);
        memcpy(pc->buf + pc->len + 2 * sizeof(size_t), id, id_len);
        memcpy(pc->buf + pc->len + 2 * sizeof(size_t) + id_len, info, info_len);
    }
    pc->len += need;
    pc->n++;
}

static int local_presence_list(lua_State *L, unsigned ns, const char *topic, size_t len)
{
    struct pres_copy pc = { .cap = SIZE_MAX };
    lpres_each(ns, topic, len, copy_entry, &pc); /* measures */
    for (;;) {
        size_t cap = pc.len + pc.len / 4 + 256; /* room for a few joining meanwhile */
        pc = (struct pres_copy){ .buf = lua_newuserdatauv(L, cap, 0), .cap = cap };
        lpres_each(ns, topic, len, copy_entry, &pc);
        if (!pc.overflow) break;
        lua_pop(L, 1); /* more joined than the room: measure again */
        pc = (struct pres_copy){ .cap = SIZE_MAX };
        lpres_each(ns, topic, len, copy_entry, &pc);
    }
    lua_createtable(L, (int)pc.n, 0);
    size_t at = 0;
    for (size_t i = 0; i < pc.n; i++) {
        size_t il, fl;
        memcpy(&il, pc.buf + at, sizeof il);
        memcpy(&fl, pc.buf + at + sizeof il, sizeof fl);
        const char *id = pc.buf + at + 2 * sizeof(size_t);
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, id, il);
        lua_setfield(L, -2, "id");
        lua_pushlstring(L, id + il, fl);
        lua_setfield(L, -2, "info");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        at += 2 * sizeof(size_t) + il + fl;
    }
    return 1;
}

static int presence(lua_State *L, bool list, const char *fname)
{
    struct lb_app *app = lb_app_of(L);
    size_t len;
    const char *topic = lb_check_topic(L, 1, &len, fname);
    if (!app->env->redis) {
        /* This node alone: the process's table answers at once. */
        if (!list) {
            lua_pushinteger(L, (lua_Integer)lpres_each(app->shared_ns, topic, len, NULL, NULL));
            return 1;
        }
        return local_presence_list(L, app->shared_ns, topic, len);
    }
    struct lb_task *t = waitable(L, fname);
    if (app->redis_in_flight >= app->env->redis_max_in_flight) {
        luaL_pushfail(L);
        lua_pushliteral(L, "limit: as many calls wait for Redis as redis.max_in_flight allows");
        return 2;
    }
    struct presence_read *p = calloc(1, sizeof *p);
    if (!p) return luaL_error(L, "%s: out of memory", fname);
    p->task = t;
    p->app = app;
    p->list = list;
    if (!(p->cmd = rnode_presence_read(app->env->redis, app, topic, len, presence_done, p))) {
        free(p);
        return luaL_error(L, "%s: out of memory", fname);
    }
    app->redis_in_flight++;
    lb_task_waits_for(t, presence_cancel, p);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, waited_presence);
}

/* mw.presence(topic) -> connections present in topic on every node | nil, reason. Waits. */
static int mw_presence(lua_State *L) { return presence(L, false, "mw.presence"); }
/* mw.presence_list(topic) -> { { id =, info = }, ... } | nil, reason. Waits. */
static int mw_presence_list(lua_State *L) { return presence(L, true, "mw.presence_list"); }

void lb_push_waits(lua_State *L, int api)
{
    api = lua_absindex(L, api);
    lua_pushcfunction(L, mw_sleep);
    lua_setfield(L, api, "sleep");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, mw_http_request);
    lua_setfield(L, -2, "request");
    lua_setfield(L, api, "http");
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, mw_redis_call);
    lua_setfield(L, -2, "call");
    lua_setfield(L, api, "redis");
    lua_pushcfunction(L, mw_presence);
    lua_setfield(L, api, "presence");
    lua_pushcfunction(L, mw_presence_list);
    lua_setfield(L, api, "presence_list");
}
