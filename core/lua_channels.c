/* moonwire.v1 on an app's connections (docs/protocol.md): which connections speak it, what
 * their envelopes ask for (subscribe, unsubscribe, publish, app messages), the answers and
 * errors they get, and the heartbeat.
 *
 * lua_bridge.c runs the envelopes of a read in its message run (so that app.subscribe and
 * app.publish may wait like app.message, in the connection's order): lb_ch_prepare reads one
 * and either handles it here or leaves the app's handler to call, and lb_ch_answer acts on what
 * the handler returned. The envelope parser itself is pure (channels.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "channels.h"
#include "conn.h"
#include "history.h"
#include "log.h"
#include "lua_app.h"
#include "lua_channels.h"
#include "pubsub.h"
#include "redis.h"
#include "rnode.h"
#include "util.h"
#include "ws_frame.h"

#define DEFAULT_HEARTBEAT 25.0

/* ---- what the app declares ------------------------------------------------------------------ */

/* app[key] read raw and pushed, key one of the LB_NAME_ names interned at load: outside any
 * protected call, so nothing here may allocate (which could raise at the memory cap). */
static int raw_field(lua_State *L, struct lb_app *app, int key)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return LUA_TNIL;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->names_ref);
    lua_rawgeti(L, -1, key);
    lua_remove(L, -2);
    int t = lua_rawget(L, -2);
    lua_remove(L, -2);
    return t;
}

bool lb_ch_enabled(struct lb_app *app)
{
    lua_State *L = app->sb.L;
    int t = raw_field(L, app, LB_NAME_CHANNELS);
    bool on = (t == LUA_TBOOLEAN && lua_toboolean(L, -1)) || t == LUA_TTABLE;
    lua_pop(L, 1);
    if (on) return true;
    on = raw_field(L, app, LB_NAME_SUBSCRIBE) == LUA_TFUNCTION;
    lua_pop(L, 1);
    return on;
}

/* app.channels.heartbeat, in seconds (25 by default; at least 0.05). */
static double heartbeat_of(struct lb_app *app)
{
    lua_State *L = app->sb.L;
    double hb = DEFAULT_HEARTBEAT;
    if (raw_field(L, app, LB_NAME_CHANNELS) == LUA_TTABLE) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, app->names_ref);
        lua_rawgeti(L, -1, LB_NAME_HEARTBEAT);
        lua_remove(L, -2);
        if (lua_rawget(L, -2) == LUA_TNUMBER) hb = lua_tonumber(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return hb < 0.05 ? 0.05 : hb > 3600 ? 3600 : hb;
}

void lb_ch_offer(struct lb_app *app, struct conn_verdict *v)
{
    if (v->status == 0 && !v->protocol_len && lb_ch_enabled(app))
        memcpy(v->fallback_protocol, CH_PROTOCOL, CH_PROTOCOL_LEN + 1);
}

/* ---- sending -------------------------------------------------------------------------------- */

/* The longest reason sent in an error: cut on a character boundary. */
#define MAX_REASON 200

static void send_text(struct conn *c, const char *p, size_t n)
{
    if (conn_is_open(c)) conn_send_message(c, p, n, false);
}

/* ["E", id, code, reason] */
static void send_error(struct conn *c, uint64_t id, int code, const char *reason, size_t len)
{
    if (len > MAX_REASON) {
        len = MAX_REASON;
        while (len && ((unsigned char)reason[len] & 0xC0) == 0x80) len--;
    }
    char buf[64 + 6 * MAX_REASON];
    int n = snprintf(buf, sizeof buf, "[\"E\",%llu,%d,", (unsigned long long)id, code);
    size_t m = (size_t)n + ch_json_write(buf + n, reason, len);
    buf[m++] = ']';
    send_text(c, buf, m);
}

static void send_error_str(struct conn *c, uint64_t id, int code, const char *reason)
{
    send_error(c, id, code, reason, strlen(reason));
}

int lb_ch_send_message(struct conn *c, const char *data, size_t len, bool binary)
{
    if (binary) {
        /* 'm' and the bytes: one frame, built in pieces through the queue would be two. */
        char local[512];
        char *buf = len < sizeof local ? local : malloc(len + 1);
        if (!buf) return CONN_CLOSED;
        buf[0] = 'm';
        memcpy(buf + 1, data, len);
        int rc = conn_send_message(c, buf, len + 1, true);
        if (buf != local) free(buf);
        return rc;
    }
    size_t need = 6 + ch_json_length(data, len);
    char local[1024];
    char *buf = need <= sizeof local ? local : malloc(need);
    if (!buf) return CONN_CLOSED;
    memcpy(buf, "[\"m\",", 5);
    size_t n = 5 + ch_json_write(buf + 5, data, len);
    buf[n++] = ']';
    int rc = conn_send_message(c, buf, n, false);
    if (buf != local) free(buf);
    return rc;
}

/* ---- the heartbeat -------------------------------------------------------------------------- */

/* Every interval, ["h"] to each of the app's v1 connections, framed once: a client that hears
 * nothing for longer than the interval it was told (plus a margin) knows the connection is
 * dead, which browsers cannot see from pings. Sent whatever the traffic: a timer per
 * connection would cost more than one shared frame per interval. */
static void heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lb_app *app = container_of(w, struct lb_app, heartbeat);
    struct obuf *frame = obuf_new(sizeof ch_heartbeat_frame);
    if (!frame) return;
    memcpy(frame->data, ch_heartbeat_frame, sizeof ch_heartbeat_frame);
    frame->len = sizeof ch_heartbeat_frame;
    size_t n = 0;
    struct conn_loop *cl = app->env->conns;
    for (struct conn *c = conn_first(cl); c; c = conn_next(cl, c))
        if (c->envelope && conn_handler_ctx(c) == app && conn_is_open(c)) {
            conn_send_shared(c, frame);
            n++;
        }
    obuf_unref(frame);
    if (!n) ev_timer_stop(app->env->loop, &app->heartbeat);
}

void lb_ch_open(struct lb_app *app, struct conn *c)
{
    const char *p = conn_protocol(c);
    if (!p || strcmp(p, CH_PROTOCOL) != 0) return;
    c->envelope = true;
    double hb = heartbeat_of(app);
    if (!ev_is_active(&app->heartbeat) || app->heartbeat_interval != hb) {
        app->heartbeat_interval = hb;
        ev_timer_stop(app->env->loop, &app->heartbeat);
        ev_timer_init(&app->heartbeat, heartbeat, hb, hb);
        ev_timer_start(app->env->loop, &app->heartbeat);
    }
    char buf[64];
    int n = snprintf(buf, sizeof buf, "[\"W\",{\"v\":1,\"hb\":%lld}]",
                     (long long)(hb * 1000 + 0.5));
    send_text(c, buf, (size_t)n);
}

void lb_ch_stop(struct lb_app *app)
{
    if (app->env && app->env->loop) ev_timer_stop(app->env->loop, &app->heartbeat);
}

/* ---- requests ------------------------------------------------------------------------------- */

/* Pushes s's text, unescaped. */
static void push_str(lua_State *L, const struct ch_str *s)
{
    if (!s->escaped) {
        lua_pushlstring(L, s->p, s->len);
        return;
    }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, s->len);
    luaL_pushresultsize(&b, ch_unescape(s, out));
}

static bool topic_ok(struct lb_app *app, struct conn *c, uint64_t id, size_t len)
{
    size_t max = app->env->max_topic_length;
    if (len && (!max || len <= max)) return true;
    char why[120];
    if (!len) snprintf(why, sizeof why, "a topic name cannot be empty");
    else snprintf(why, sizeof why, "the topic name is %zu bytes, longer than the server's "
                                   "limit (%zu)", len, max);
    send_error_str(c, id, CH_BAD_TOPIC, why);
    return false;
}

static bool subscribed_to(struct conn *c, const char *topic, size_t len)
{
    const struct topic_set *set = conn_topics(c);
    for (uint32_t i = 0; i < set->count; i++) {
        const struct topic *t = set->refs[i].topic;
        if (t->name_len == len && memcmp(t->name, topic, len) == 0) return true;
    }
    return false;
}

static void send_subscribed(struct conn *c, uint64_t id, bool recovered, const struct hist_pos *top)
{
    char buf[128];
    int n;
    if (top)
        n = snprintf(buf, sizeof buf, "[\"S\",%llu,{\"recovered\":%s,\"o\":%llu,\"e\":\"%s\"}]",
                     (unsigned long long)id, recovered ? "true" : "false",
                     (unsigned long long)top->offset, top->epoch);
    else
        n = snprintf(buf, sizeof buf, "[\"S\",%llu,{\"recovered\":%s}]",
                     (unsigned long long)id, recovered ? "true" : "false");
    send_text(c, buf, (size_t)n);
}

static bool subscribe_or_say(struct lb_app *app, struct conn *c, uint64_t id, const char *topic,
                             size_t len)
{
    int rc = ps_subscribe(&app->ps, c, topic, len);
    if (rc >= 0) return true;
    if (rc == PS_E_LIMIT) {
        char why[120];
        snprintf(why, sizeof why, "this connection has %zu subscriptions, the server's limit "
                                  "(limits.max_subscriptions)", app->ps.max_subscriptions);
        send_error_str(c, id, CH_TOO_MANY_SUBSCRIPTIONS, why);
    } else if (rc == PS_E_FULL) {
        send_error_str(c, id, CH_TOO_MANY_SUBSCRIPTIONS,
                       "the app's topics use all the memory the server allows them");
    } else {
        send_error_str(c, id, CH_INTERNAL, "the server is out of memory");
    }
    return false;
}

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- recovery from the history in Redis ----------------------------------------------------

 * A subscribe with a position on a topic whose history Redis keeps: c is subscribed at once
 * and its publications held (buffered here, ps_hold) while the topic's channel is made sure
 * of (rnode_when_subscribed: after it, every publication comes live) and the range after the
 * position is read (one EVAL, answered on the loop). Then the answer, the range, the buffered
 * publications past it, in offset order and each once, and c goes live. When the buffer
 * overflowed, the range after what was sent is read again before going live. */
#define RECOVERY_BUFFER 1024

struct held {
    struct obuf *frame;
    struct hist_pos pos;
};

struct recovery {
    struct lb_app *app;
    struct conn *c;
    uint64_t id;
    uint64_t since;       /* the client's position: its offset... */
    char epoch[HIST_EPOCH_LEN + 1]; /* ...and epoch */
    uint64_t last;        /* sent up to here (once answered) */
    bool answered;        /* ["S", ...] went out */
    bool overflow;        /* held publications were dropped: read again */
    bool busy, ended;     /* in read_done; the member left meanwhile */
    struct rnode_wait *wait;
    ev_timer confirm;     /* the wait for Redis's SUBSCRIBE confirmation is bounded */
    struct rds_cmd *cmd;
    struct held *held;
    size_t nheld, capheld;
    size_t len;
    char topic[];
};

static void recovery_free(struct recovery *r)
{
    ev_timer_stop(r->app->env->loop, &r->confirm);
    for (size_t i = 0; i < r->nheld; i++) obuf_unref(r->held[i].frame);
    free(r->held);
    free(r);
}

static void hold_deliver(void *ud, struct obuf *frame, const struct hist_pos *pos)
{
    struct recovery *r = ud;
    if (!pos) return; /* a plain publication cannot be on this topic */
    if (r->nheld == r->capheld) {
        size_t cap = r->capheld ? r->capheld * 2 : 16;
        struct held *h = cap <= RECOVERY_BUFFER ? realloc(r->held, cap * sizeof *h) : NULL;
        if (!h) {
            r->overflow = true;
            return;
        }
        r->held = h;
        r->capheld = cap;
    }
    obuf_ref(frame);
    r->held[r->nheld++] = (struct held){ frame, *pos };
}

static void hold_end(void *ud)
{
    struct recovery *r = ud;
    if (r->busy) {
        r->ended = true;
        return;
    }
    rnode_wait_cancel(r->wait);
    if (r->cmd) rds_cancel(r->cmd);
    recovery_free(r);
}

static const struct ps_hold_ops recovery_ops = { hold_deliver, hold_end };

/* Sends one publication of the recovery to c; false when c is gone. */
static bool recovery_send(struct recovery *r, uint64_t offset, const char *epoch, const void *data,
                          size_t len, bool binary)
{
    struct obuf *f = ch_publication_frame(r->topic, r->len, offset, epoch, data, len, binary);
    if (!f) {
        conn_close(r->c, 1011, "out of memory", 13);
        return false;
    }
    int rc = conn_send_shared(r->c, f);
    obuf_unref(f);
    return rc != CONN_CLOSED && !r->ended;
}

static void recovery_read(void *ud);

/* The range read: { epoch, top, [[id, [field, data, ...]], ...] } or a failure. */
static void read_done(void *ud, const redisReply *rep, const char *err)
{
    struct recovery *r = ud;
    r->cmd = NULL;
    r->busy = true;
    struct conn *c = r->c;
    uint64_t top = 0;
    bool ok = !err && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
              rep->element[0]->type == REDIS_REPLY_STRING &&
              rep->element[0]->len <= HIST_EPOCH_LEN &&
              rep->element[1]->type == REDIS_REPLY_INTEGER &&
              rep->element[2]->type == REDIS_REPLY_ARRAY;
    char ep[HIST_EPOCH_LEN + 1] = "";
    if (ok) {
        memcpy(ep, rep->element[0]->str, rep->element[0]->len);
        ep[rep->element[0]->len] = 0;
        top = (uint64_t)rep->element[1]->integer;
    }
    const redisReply *entries = ok ? rep->element[2] : NULL;
    /* Every entry after the asked position is there, in this epoch. */
    uint64_t from = r->answered ? r->last : r->since;
    bool whole = ok && strcmp(ep, r->epoch) == 0 && from <= top &&
                 entries->elements == top - from;
    for (size_t i = 0; whole && i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        whole = e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                e->element[0]->type == REDIS_REPLY_STRING &&
                strtoull(e->element[0]->str, NULL, 10) == from + 1 + i &&
                e->element[1]->type == REDIS_REPLY_ARRAY && e->element[1]->elements >= 2 &&
                e->element[1]->element[1]->type == REDIS_REPLY_STRING;
    }
    if (!r->answered) {
        r->answered = true;
        if (ok) {
            struct hist_pos p = { .offset = top };
            memcpy(p.epoch, ep, sizeof ep);
            send_subscribed(c, r->id, whole, &p);
        } else {
            /* Redis did not answer: the client is told it was not recovered (and resyncs). */
            log_warn("moonwire.v1: recovering %.*s from Redis failed: %s", (int)(r->len < 100 ? r->len : 100),
                     r->topic, err ? err : "an unexpected reply");
            send_subscribed(c, r->id, false, NULL);
        }
        r->last = ok ? top : 0;
    } else if (!whole && ok) {
        /* The range after what was sent is gone now: the client goes on from the top. */
        memcpy(r->epoch, ep, sizeof ep);
        r->last = top;
        char buf[64 + 2 * HIST_EPOCH_LEN];
        size_t tl = ch_json_length(r->topic, r->len);
        char *msg = malloc(tl + sizeof buf + 8);
        if (msg) {
            size_t n = 5;
            memcpy(msg, "[\"R\",", 5);
            n += ch_json_write(msg + n, r->topic, r->len);
            n += (size_t)snprintf(msg + n, sizeof buf, ",{\"o\":%llu,\"e\":\"%s\"}]",
                                  (unsigned long long)top, ep);
            send_text(c, msg, n);
            free(msg);
        }
    }
    bool alive = conn_is_open(c) && !r->ended;
    for (size_t i = 0; alive && whole && i < entries->elements; i++) {
        const redisReply *fields = entries->element[i]->element[1];
        const redisReply *d = fields->element[1];
        alive = recovery_send(r, from + 1 + i, ep, d->str, d->len, rnode_entry_binary(fields));
    }
    if (whole) r->last = top;
    if (alive && r->overflow) {
        /* Publications were dropped from the buffer: read what follows the last sent again. */
        r->overflow = false;
        for (size_t i = 0; i < r->nheld; i++) obuf_unref(r->held[i].frame);
        r->nheld = 0;
        r->busy = false;
        recovery_read(r);
        return;
    }
    /* The held publications past what was sent, then live. */
    const char *last_epoch = ep;
    for (size_t i = 0; alive && i < r->nheld; i++) {
        const struct held *h = &r->held[i];
        if (strcmp(h->pos.epoch, ep) == 0 && h->pos.offset <= r->last) continue;
        size_t dl;
        const char *d = ps_frame_payload(h->frame, &dl);
        bool binary = (h->frame->data[0] & 0x0F) == WS_OP_BINARY;
        alive = recovery_send(r, h->pos.offset, h->pos.epoch, d, dl, binary);
        r->last = h->pos.offset;
        last_epoch = h->pos.epoch;
    }
    if (!r->ended) {
        /* Publications up to last may still be on their way on the subscriber connection
         * (another socket than the read's): they are skipped for c. A new epoch resets it
         * (ps_history_lost). */
        ps_hold(&r->app->ps, c, r->topic, r->len, NULL, NULL);
        ps_skip_to(&r->app->ps, c, r->topic, r->len, r->last, last_epoch);
    }
    recovery_free(r);
}

static void recovery_read(void *ud)
{
    struct recovery *r = ud;
    r->wait = NULL;
    ev_timer_stop(r->app->env->loop, &r->confirm);
    char since[24];
    snprintf(since, sizeof since, "%llu", (unsigned long long)(r->answered ? r->last : r->since));
    r->cmd = rnode_history_read(r->app->env->redis, r->app, r->topic, r->len, since, read_done, r);
    if (!r->cmd) read_done(r, NULL, "out of memory");
}

/* Redis has not confirmed the topic's subscription in time (it is down, or slow): the client
 * is answered recovered = false without a position (it resyncs) and goes live. */
static void confirm_late(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct recovery *r = container_of(t, struct recovery, confirm);
    rnode_wait_cancel(r->wait);
    r->wait = NULL;
    read_done(r, NULL, "Redis did not confirm the topic's subscription in time");
}

/* Starts the recovery of c's subscription (made just now) from (since, epoch). */
static void recover_from_redis(struct lb_app *app, struct conn *c, uint64_t id, const char *topic,
                               size_t len, uint64_t since, const char *epoch)
{
    struct recovery *r = calloc(1, sizeof *r + len);
    if (!r) {
        send_error_str(c, id, CH_INTERNAL, "the server is out of memory");
        return;
    }
    r->app = app;
    r->c = c;
    r->id = id;
    r->since = since;
    snprintf(r->epoch, sizeof r->epoch, "%s", epoch ? epoch : "");
    r->len = len;
    memcpy(r->topic, topic, len);
    ps_hold(&app->ps, c, topic, len, &recovery_ops, r);
    int w = rnode_when_subscribed(app->env->redis, app, topic, len, recovery_read, r, &r->wait);
    ev_timer_init(&r->confirm, confirm_late,
                  app->env->redis_timeout > 0 ? app->env->redis_timeout : 5.0, 0.);
    if (w == 1) recovery_read(r);
    else if (w < 0) read_done(r, NULL, "the topic has no channel in Redis");
    else ev_timer_start(app->env->loop, &r->confirm);
}

/* Subscribes c and answers ["S", id, {...}]. On a history topic, with a position to recover
 * from: the publications after it, in order, right behind the answer, when they are all still
 * held in that epoch (recovered true), else none (recovered false: the client resyncs). The
 * read and the subscription happen under the history lock, so no publication falls between
 * them: those after the read's top come live (every worker's inbox is fed under the same
 * lock, after the subscription counted), and those at or below it that are already on their
 * way are skipped for c (ps_skip_to): no gap, no duplicate. */
static void subscribe(struct lb_app *app, struct conn *c, uint64_t id, const char *topic,
                      size_t len, bool has_since, uint64_t since, const char *epoch)
{
    struct history *h = app->ps.history;
    /* An engine that keeps history itself (Redis) holds the positions; recovering from it is
     * not built yet: such topics answer as plain ones (no position; a client recovering is
     * told recovered = false and resyncs), which is honest, never a silent gap. */
    bool engine_history = app->ps.engine && app->ps.engine->publish_stored;
    if (engine_history && app->env->redis && has_since && h && h->nrules &&
        history_rule(h, topic, len)) {
        if (subscribe_or_say(app, c, id, topic, len))
            recover_from_redis(app, c, id, topic, len, since, epoch);
        return;
    }
    if (engine_history || !h || !h->nrules || !history_rule(h, topic, len)) {
        /* A topic without history keeps no position: a client asking to recover one cannot. */
        if (subscribe_or_say(app, c, id, topic, len)) send_subscribed(c, id, !has_since, NULL);
        return;
    }
    struct hist_range r;
    history_lock(h);
    int hr = history_read(h, app->ps.history_ns, topic, len, has_since, since,
                          epoch && *epoch ? epoch : NULL, monotonic_now(), &r);
    if (hr < 0) {
        history_unlock(h);
        send_error_str(c, id, CH_INTERNAL, "the server is out of memory");
        return;
    }
    bool ok = subscribe_or_say(app, c, id, topic, len);
    if (ok) ps_skip_to(&app->ps, c, topic, len, r.top.offset, r.top.epoch);
    history_unlock(h);
    if (ok) {
        bool recovered = !has_since || r.recovered;
        send_subscribed(c, id, recovered, r.top.epoch[0] ? &r.top : NULL);
        for (size_t i = 0; has_since && r.recovered && i < r.count && conn_is_open(c); i++) {
            const struct hist_entry *e = r.entries[i];
            struct obuf *f = ch_publication_frame(topic, len, e->offset, r.top.epoch, e->data,
                                                  e->len, e->binary);
            if (!f) {
                conn_close(c, 1011, "out of memory", 13);
                break;
            }
            conn_send_shared(c, f);
            obuf_unref(f);
        }
    }
    history_range_free(&r);
}

/* The app's handler at index 4 and its two arguments at 5 and 6; the request at 7 (id), 8
 * (op), 9 (since or nil), 10 (epoch or nil). */
static int ask(lua_State *L, int handler_type, const struct ch_request *req)
{
    (void)handler_type;
    lua_pushinteger(L, (lua_Integer)req->id);
    lua_pushinteger(L, req->op);
    if (req->has_since) {
        lua_pushinteger(L, (lua_Integer)req->since);
        push_str(L, &req->epoch);
    } else {
        lua_pushnil(L);
        lua_pushnil(L);
    }
    return LB_CH_ASK;
}

int lb_ch_prepare(lua_State *L, struct lb_app *app, struct conn *c, const void *data,
                  size_t len, bool binary)
{
    if (binary) {
        const char *p = data;
        if (!len || p[0] != 'm') {
            send_error_str(c, 0, CH_UNKNOWN_OP, "a binary frame must start with 'm' (an app "
                                                "message)");
            return LB_CH_DONE;
        }
        lua_pushlstring(L, p + 1, len - 1);
        lua_pushboolean(L, 1);
        return LB_CH_MESSAGE;
    }
    struct ch_request req;
    const char *why;
    int rc = ch_parse(data, len, &req, &why);
    if (rc) {
        send_error_str(c, req.id, rc, why);
        return LB_CH_DONE;
    }
    if (req.op == 'm') {
        push_str(L, &req.data);
        lua_pushboolean(L, 0);
        return LB_CH_MESSAGE;
    }
    if (!topic_ok(app, c, req.id, req.topic.len)) return LB_CH_DONE;
    push_str(L, &req.topic); /* at 4 for now */
    size_t tlen;
    const char *topic = lua_tolstring(L, -1, &tlen);
    if (req.op == 'u') {
        ps_unsubscribe(&app->ps, c, topic, tlen);
        lua_pop(L, 1);
        return LB_CH_DONE;
    }
    if (req.op == 's') {
        if (subscribed_to(c, topic, tlen)) {
            lua_pop(L, 1);
            send_error_str(c, req.id, CH_ALREADY_SUBSCRIBED, "already subscribed to this topic "
                                                             "on this connection");
            return LB_CH_DONE;
        }
        if (raw_field(L, app, LB_NAME_SUBSCRIBE) != LUA_TFUNCTION) {
            lua_pop(L, 1);
            int ct = raw_field(L, app, LB_NAME_CHANNELS);
            bool open_to_all = (ct == LUA_TBOOLEAN && lua_toboolean(L, -1)) || ct == LUA_TTABLE;
            lua_pop(L, 2);
            if (!open_to_all) {
                send_error_str(c, req.id, CH_SUBSCRIBE_DENIED, "this app takes no subscriptions "
                               "(it has no app.subscribe and app.channels is not true)");
                return LB_CH_DONE;
            }
            push_str(L, &req.topic);
            topic = lua_tolstring(L, -1, &tlen);
            char epoch[CH_MAX_EPOCH + 1];
            size_t el = ch_unescape(&req.epoch, epoch);
            epoch[el] = '\0';
            subscribe(app, c, req.id, topic, tlen, req.has_since, req.since, epoch);
            lua_pop(L, 1);
            return LB_CH_DONE;
        }
        lua_insert(L, -2); /* 4 handler, 5 topic */
        if (req.has_since) {
            lua_createtable(L, 0, 2);
            lua_pushinteger(L, (lua_Integer)req.since);
            lua_setfield(L, -2, "offset");
            push_str(L, &req.epoch);
            lua_setfield(L, -2, "epoch");
        } else {
            lua_pushnil(L);
        }
        return ask(L, LUA_TFUNCTION, &req);
    }
    /* 'p' */
    if (raw_field(L, app, LB_NAME_PUBLISH) != LUA_TFUNCTION) {
        lua_pop(L, 2);
        send_error_str(c, req.id, CH_PUBLISH_DENIED, "this app takes no publications from "
                                                     "clients (it has no app.publish)");
        return LB_CH_DONE;
    }
    lua_insert(L, -2);
    push_str(L, &req.data);
    return ask(L, LUA_TFUNCTION, &req);
}

void lb_ch_answer(lua_State *L, struct lb_app *app, struct conn *c)
{
    /* 4 handler, 5 topic, 6 info or data, 7 id, 8 op, 9 since, 10 epoch, 11 and 12 results */
    if (!c || !conn_is_open(c)) return;
    uint64_t id = (uint64_t)lua_tointeger(L, 7);
    int op = (int)lua_tointeger(L, 8);
    size_t tlen, elen = 0;
    const char *topic = lua_tolstring(L, 5, &tlen);
    if (!lua_toboolean(L, 11)) {
        size_t rlen = 0;
        const char *reason = lua_type(L, 12) == LUA_TSTRING ? lua_tolstring(L, 12, &rlen) : NULL;
        if (!reason || !lb_valid_text(app, reason, rlen)) {
            reason = op == 's' ? "the app refused this subscription"
                               : "the app refused this publication";
            rlen = strlen(reason);
        }
        send_error(c, id, op == 's' ? CH_SUBSCRIBE_DENIED : CH_PUBLISH_DENIED, reason, rlen);
        return;
    }
    if (op == 's') {
        /* The handler may have subscribed c itself (conn:subscribe). */
        /* It subscribes again (the answer and any recovery come first), keeping the presence
         * the handler may have set (conn:subscribe(topic, { presence = info })). */
        bool was = subscribed_to(c, topic, tlen);
        if (was) ps_unsubscribe_keep_presence(&app->ps, c, topic, tlen);
        const char *epoch = lua_type(L, 10) == LUA_TSTRING ? lua_tolstring(L, 10, &elen) : "";
        subscribe(app, c, id, topic, tlen, !lua_isnil(L, 9), (uint64_t)lua_tointeger(L, 9),
                  epoch);
        if (was && !subscribed_to(c, topic, tlen))
            ps_presence_left(&app->ps, c, topic, tlen);
        return;
    }
    size_t dlen;
    const char *data = lua_tolstring(L, 6, &dlen);
    size_t sent;
    int rc = ps_publish(&app->ps, topic, tlen, data, dlen, false, &sent, NULL);
    app->stats.publishes++;
    if (rc == PS_E_NOMEM) send_error_str(c, id, CH_INTERNAL, "the server is out of memory");
    else if (rc == PS_E_HISTORY)
        send_error_str(c, id, CH_HISTORY, "the topic's history could not store this "
                                          "publication (limits.history_memory)");
}
