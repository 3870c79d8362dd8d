/* The Redis engine of one worker: see rnode.h. */
#include "rnode.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <ev.h>

#include "dns.h"
#include "log.h"
#include "lua_bridge.h"
#include "outq.h"
#include "pubsub.h"
#include "redis.h"
#include "util.h"
#include "ws_frame.h"

#define HEADER 16      /* node id (8), flags (1), reserved (7) */
#define FLAG_BINARY 1
#define FLAG_HISTORY 2 /* the header is followed by "<offset> <epoch> " */
#define BATCH 512      /* channels per (UN)SUBSCRIBE */

/* ---- process-wide: the node id, readiness, counters ---------------------------------------- */

static pthread_once_t id_once = PTHREAD_ONCE_INIT;
static unsigned char node_id[8];
static char node_hex[17];
static int down_total; /* atomic: connections of every worker that are not up */
static struct rnode_stats totals; /* each field atomic */

static void make_id(void)
{
    if (getrandom(node_id, sizeof node_id, 0) != (ssize_t)sizeof node_id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)ts.tv_sec;
        memcpy(node_id, &x, sizeof node_id);
    }
    for (int i = 0; i < 8; i++) snprintf(node_hex + 2 * i, 3, "%02x", node_id[i]);
}

const char *rnode_node_id(void)
{
    pthread_once(&id_once, make_id);
    return node_hex;
}

bool rnode_all_up(void) { return __atomic_load_n(&down_total, __ATOMIC_RELAXED) == 0; }

#define COUNT(field) __atomic_add_fetch(&totals.field, 1, __ATOMIC_RELAXED)

void rnode_stats_read(struct rnode_stats *out)
{
    out->published = __atomic_load_n(&totals.published, __ATOMIC_RELAXED);
    out->received = __atomic_load_n(&totals.received, __ATOMIC_RELAXED);
    out->echoes_dropped = __atomic_load_n(&totals.echoes_dropped, __ATOMIC_RELAXED);
    out->publish_failed = __atomic_load_n(&totals.publish_failed, __ATOMIC_RELAXED);
    out->resubscribes = __atomic_load_n(&totals.resubscribes, __ATOMIC_RELAXED);
    out->probes = __atomic_load_n(&totals.probes, __ATOMIC_RELAXED);
    out->reconnects = __atomic_load_n(&totals.reconnects, __ATOMIC_RELAXED);
    out->gap_fills = __atomic_load_n(&totals.gap_fills, __ATOMIC_RELAXED);
}

uint32_t rnode_jump(uint64_t key, uint32_t n)
{
    int64_t b = -1, j = 0;
    while (j < (int64_t)n) {
        b = j;
        key = key * 2862933555777941757ull + 1;
        j = (int64_t)((double)(b + 1) * ((double)(1ll << 31) / (double)((key >> 33) + 1)));
    }
    return (uint32_t)b;
}

static uint64_t fnv(const char *s, size_t len)
{
    uint64_t x = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) x = (x ^ (unsigned char)s[i]) * 1099511628211ull;
    return x;
}

bool rnode_entry_binary(const redisReply *fields)
{
    for (size_t i = 2; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == 1 && k->str[0] == 'b') return true;
    }
    return false;
}

/* ---- the worker's engine ------------------------------------------------------------------- */

struct rnode;

struct shard {
    struct rnode *n;
    struct rds *cmd, *sub;
    bool cmd_up, sub_up;
    bool ever_up;        /* the subscriber has been up once: later ups are resubscribes */
    char run_id[64];     /* the server's (INFO server) since the command connection came up */
};

/* A channel this worker wants (local subscribers) or still holds (lingering). */
struct chan {
    struct chan *next;
    struct rport *port;
    unsigned shard;
    bool local;          /* this worker has subscribers */
    bool subscribed;     /* SUBSCRIBE sent on the current subscriber connection */
    double linger_until; /* when !local: unsubscribe after this */
    bool confirmed;      /* Redis said "subscribe" for it on the current connection */
    struct rnode_wait *waits; /* told when confirmed (rnode_when_subscribed) */
    /* History topics: where this worker's subscribers are (the last offset delivered, in
     * epoch), and while a gap is being filled from the stream, what arrived meanwhile. */
    char epoch[HIST_EPOCH_LEN + 1];
    uint64_t last;
    bool filling;        /* a read of the stream is on its way, or due again (retry) */
    bool retry;          /* the last read failed: on_flush reads again */
    bool refill;         /* resubscribed: read the stream once Redis confirms the SUBSCRIBE */
    bool placing;        /* the topic's offset is being read: SUBSCRIBE waits for it */
    unsigned tries;
    struct held *held, *held_tail;
    size_t nheld, held_bytes;
    bool overflow;       /* past MAX_HELD(_BYTES): nothing more is held; the stream is read again */
    size_t topic_off;    /* the topic starts here in name */
    size_t len;
    char name[];
};

struct rnode_wait {
    struct rnode_wait *next;
    struct chan *chan;
    void (*ready)(void *ud);
    void *ud;
};

/* A history publication that arrived while its topic's gap was being filled. */
struct held {
    struct held *next;
    struct hist_pos pos;
    bool binary;
    size_t len;
    char data[];
};
#define MAX_HELD 100000
#define MAX_HELD_BYTES ((size_t)8 << 20)

struct rport {
    struct rnode *n;
    struct lb_app *app;
    struct pubsub *ps;
    unsigned index;
    char path[256];
    size_t path_len;
    const struct ps_engine *inner;
    void *inner_ctx;
};

/* A connection's presence in a topic, kept to refresh it and to remove it when it leaves. */
struct pres {
    struct pres *next;
    struct rport *port;
    struct conn *c;
    char field[64];      /* <node>:<worker>:<conn id> */
    size_t field_len;
    char *info;
    size_t info_len;
    size_t topic_len;
    char topic[];
};

struct rnode {
    struct ev_loop *loop;
    struct cfg_redis cfg;
    unsigned worker;
    struct dns *dns;
    struct shard shards[CFG_MAX_REDIS_SHARDS];
    unsigned nshards;
    struct chan **buckets;
    size_t nbuckets, nchans;
    struct rport ports[CFG_MAX_APPS];
    size_t nports;
    ev_timer flush;      /* (un)subscribes, batched: soon after a change, and each second */
    ev_timer probe;
    ev_timer presence;   /* refreshes the entries and the node's lease */
    struct pres **pres;
    size_t npres_buckets, npres;
    double next_refresh;
    char node_chan[128];
    size_t node_chan_len;
};

static void fill_gap(struct chan *c);
static void place(struct chan *c);
static int history_keys(const struct rport *p, const char *topic, size_t len, char *meta,
                        char *stream, size_t cap);

static int chan_name(const struct rnode *n, const struct rport *p, const char *topic, size_t len,
                     char *out, size_t cap, size_t *topic_off)
{
    int h = snprintf(out, cap, "%s:t:%s:", n->cfg.prefix, p->path);
    if (h < 0 || (size_t)h + len > cap) return -1;
    memcpy(out + h, topic, len);
    *topic_off = (size_t)h;
    return h + (int)len;
}

static unsigned shard_of(const struct rnode *n, const char *key, size_t len)
{
    return n->nshards > 1 ? rnode_jump(fnv(key, len), n->nshards) : 0;
}

static struct chan **chan_slot(struct rnode *n, const char *name, size_t len)
{
    struct chan **c = &n->buckets[fnv(name, len) & (n->nbuckets - 1)];
    while (*c && !((*c)->len == len && memcmp((*c)->name, name, len) == 0)) c = &(*c)->next;
    return c;
}

static int chans_grow(struct rnode *n)
{
    size_t nb = n->nbuckets ? n->nbuckets * 2 : 64;
    struct chan **b = calloc(nb, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < n->nbuckets; i++)
        for (struct chan *c = n->buckets[i], *next; c; c = next) {
            next = c->next;
            size_t k = fnv(c->name, c->len) & (nb - 1);
            c->next = b[k];
            b[k] = c;
        }
    free(n->buckets);
    n->buckets = b;
    n->nbuckets = nb;
    return 0;
}

static void flush_soon(struct rnode *n)
{
    if (ev_is_active(&n->flush) && ev_timer_remaining(n->loop, &n->flush) < 0.02) return;
    ev_timer_stop(n->loop, &n->flush);
    ev_timer_set(&n->flush, 0.005, 1.);
    ev_timer_start(n->loop, &n->flush);
}

/* Sends `cmd` for names[0..count) on shard s, BATCH at a time. */
static void send_batched(struct shard *s, const char *cmd, const char **names, size_t *lens,
                         size_t count)
{
    const char *argv[BATCH + 1];
    size_t alen[BATCH + 1];
    for (size_t i = 0; i < count; i += BATCH) {
        size_t k = count - i < BATCH ? count - i : BATCH;
        argv[0] = cmd;
        alen[0] = strlen(cmd);
        for (size_t j = 0; j < k; j++) {
            argv[j + 1] = names[i + j];
            alen[j + 1] = lens[i + j];
        }
        rds_command(s->sub, (int)k + 1, argv, alen, 0, NULL, NULL);
    }
}

/* Brings Redis in line with what this worker wants: SUBSCRIBE channels with local subscribers
 * not yet subscribed, UNSUBSCRIBE those whose linger is over. */
static void on_flush(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct rnode *n = container_of(t, struct rnode, flush);
    double now = ev_now(loop);
    for (unsigned si = 0; si < n->nshards; si++) {
        struct shard *s = &n->shards[si];
        if (!s->sub_up) continue;
        size_t cap = 64, nsub = 0, nun = 0;
        const char **sub = malloc(cap * sizeof *sub), **un = malloc(cap * sizeof *un);
        size_t *sublen = malloc(cap * sizeof *sublen), *unlen = malloc(cap * sizeof *unlen);
        if (!sub || !un || !sublen || !unlen) goto next;
        for (size_t b = 0; b < n->nbuckets; b++)
            for (struct chan **pc = &n->buckets[b]; *pc;) {
                struct chan *c = *pc;
                if (c->shard != si) {
                    pc = &c->next;
                    continue;
                }
                if (c->retry && s->cmd_up) fill_gap(c);
                bool drop_it = !c->local && c->linger_until <= now;
                if (c->local && !c->subscribed && c->placing) {
                    pc = &c->next; /* SUBSCRIBE once the topic's offset is known */
                    continue;
                }
                if ((c->local && !c->subscribed) || (drop_it && c->subscribed)) {
                    if (nsub == cap || nun == cap) {
                        cap *= 2;
                        const char **s1 = realloc(sub, cap * sizeof *sub);
                        if (s1) sub = s1;
                        const char **u1 = realloc(un, cap * sizeof *un);
                        if (u1) un = u1;
                        size_t *s2 = realloc(sublen, cap * sizeof *sublen);
                        if (s2) sublen = s2;
                        size_t *u2 = realloc(unlen, cap * sizeof *unlen);
                        if (u2) unlen = u2;
                        if (!s1 || !u1 || !s2 || !u2) goto send; /* the rest: next time */
                    }
                    if (c->local) {
                        sub[nsub] = c->name;
                        sublen[nsub++] = c->len;
                        c->subscribed = true;
                    } else {
                        /* The name must outlive the send: it is sent before c is freed. */
                        un[nun] = c->name;
                        unlen[nun++] = c->len;
                        c->subscribed = false;
                        c->confirmed = false;
                        pc = &c->next;
                        continue;
                    }
                }
                if (drop_it && !c->subscribed && !c->filling && !c->placing) {
                    *pc = c->next;
                    n->nchans--;
                    free(c);
                    continue;
                }
                pc = &c->next;
            }
    send:
        if (nsub) send_batched(s, "SUBSCRIBE", sub, sublen, nsub);
        if (nun) send_batched(s, "UNSUBSCRIBE", un, unlen, nun);
    next:
        free(sub);
        free(un);
        free(sublen);
        free(unlen);
    }
}

static void shard_state(bool *flag, bool up)
{
    if (*flag == up) return;
    *flag = up;
    __atomic_add_fetch(&down_total, up ? -1 : 1, __ATOMIC_RELAXED);
}

/* INFO server's run_id: it changes whenever Redis starts, so history written before a restart
 * from an older snapshot is not taken for the current one. */
static void got_info(void *ud, const redisReply *r, const char *err)
{
    struct shard *s = ud;
    if (err) return; /* the connection is gone again */
    /* The shard counts as up from here (its run_id known, or Redis would not say). */
    shard_state(&s->cmd_up, true);
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "run_id:") : NULL;
    if (!p) {
        log_warn("redis: INFO server gave no run_id: history topics cannot be published "
                 "(does the user lack the INFO command?)");
        return;
    }
    p += 7;
    size_t n = strcspn(p, "\r\n");
    if (n == 0 || n >= sizeof s->run_id) return;
    memcpy(s->run_id, p, n);
    s->run_id[n] = 0;
}

static void cmd_state(void *ud, bool up)
{
    struct shard *s = ud;
    s->run_id[0] = 0;
    if (!up) {
        shard_state(&s->cmd_up, false);
        COUNT(reconnects);
        return;
    }
    const char *argv[] = { "INFO", "server" };
    rds_command(s->cmd, 2, argv, (size_t[]){ 4, 6 }, s->n->cfg.timeout, got_info, s);
}

static void sub_state(void *ud, bool up)
{
    struct shard *s = ud;
    struct rnode *n = s->n;
    shard_state(&s->sub_up, up);
    unsigned si = (unsigned)(s - n->shards);
    if (!up) {
        COUNT(reconnects);
        for (size_t b = 0; b < n->nbuckets; b++)
            for (struct chan *c = n->buckets[b]; c; c = c->next)
                if (c->shard == si) c->subscribed = c->confirmed = false;
        return;
    }
    /* The node channel (probes), then every channel wanted, in batches. */
    const char *argv[] = { "SUBSCRIBE", n->node_chan };
    rds_command(s->sub, 2, argv, (size_t[]){ 9, n->node_chan_len }, 0, NULL, NULL);
    if (s->ever_up) {
        COUNT(resubscribes);
        /* What was published while the subscriber was away: read back for history topics, once
         * each channel's SUBSCRIBE is confirmed (on_push). */
        for (size_t b = 0; b < n->nbuckets; b++)
            for (struct chan *c = n->buckets[b]; c; c = c->next)
                if (c->shard == si && c->epoch[0]) c->refill = true;
    }
    for (size_t b = 0; b < n->nbuckets; b++)
        for (struct chan *c = n->buckets[b]; c; c = c->next)
            if (c->shard == si && c->local && !c->epoch[0]) place(c);
    s->ever_up = true;
    flush_soon(n);
}

/* Redis confirmed the SUBSCRIBE of channel name: the waiters go on. */
static void confirmed(struct rnode *n, const char *name, size_t len)
{
    struct chan *c = n->nbuckets ? *chan_slot(n, name, len) : NULL;
    if (!c || !c->subscribed) return;
    c->confirmed = true;
    while (c->waits) {
        struct rnode_wait *w = c->waits;
        c->waits = w->next;
        void (*ready)(void *) = w->ready;
        void *ud = w->ud;
        free(w);
        ready(ud);
    }
}

static void deliver(struct chan *c, const struct hist_pos *pos, const char *data, size_t len,
                    bool binary)
{
    struct obuf *frame = obuf_new(WS_FRAME_MAX_SERVER_HEADER + len);
    if (!frame) return;
    frame->len = ws_frame_build_header(frame->data, true, 0, binary ? WS_OP_BINARY : WS_OP_TEXT,
                                       len);
    memcpy(frame->data + frame->len, data, len);
    frame->len += len;
    size_t sent;
    ps_deliver(c->port->ps, c->name + c->topic_off, c->len - c->topic_off, frame, pos, &sent);
    lb_app_delivered(c->port->app, sent);
    obuf_unref(frame);
}



/* What came before pos on c's topic is lost for this node's subscribers (a new epoch: Redis
 * restarted without the data; or a hole the stream no longer holds): moonwire.v1 subscribers
 * are told to go on from just before pos (["R"], ps_history_lost). */
static void lost(struct chan *c, const struct hist_pos *pos)
{
    struct hist_pos before = *pos;
    before.offset = pos->offset ? pos->offset - 1 : 0;
    ps_history_lost(c->port->ps, c->name + c->topic_off, c->len - c->topic_off, &before);
}

/* A history publication in offset order: the next one is delivered, an older one (already
 * delivered) dropped, a newer one means the ones between were lost on the way (a reconnect,
 * Redis' output buffer limit): they are read from the stream first. A new epoch starts over. */
static void in_order(struct chan *c, const struct hist_pos *pos, const char *data, size_t len,
                     bool binary)
{
    if (!c->epoch[0] || strcmp(c->epoch, pos->epoch) != 0) {
        if (c->epoch[0]) lost(c, pos);
        memcpy(c->epoch, pos->epoch, sizeof c->epoch);
        c->last = pos->offset;
        deliver(c, pos, data, len, binary);
        return;
    }
    if (pos->offset <= c->last) return; /* a duplicate: delivered already */
    if (pos->offset == c->last + 1) {
        c->last = pos->offset;
        deliver(c, pos, data, len, binary);
        return;
    }
    fill_gap(c);
}

static void hold(struct chan *c, const struct hist_pos *pos, const char *data, size_t len,
                 bool binary)
{
    /* Past the limits (or out of memory) nothing more is held until the fill is done: what
     * is not held is in the stream, which filled() reads again. */
    if (c->overflow) return;
    if (c->nheld >= MAX_HELD || len > MAX_HELD_BYTES - c->held_bytes) {
        c->overflow = true;
        return;
    }
    struct held *h = malloc(sizeof *h + len);
    if (!h) {
        c->overflow = true;
        return;
    }
    h->next = NULL;
    h->pos = *pos;
    h->binary = binary;
    h->len = len;
    memcpy(h->data, data, len);
    if (c->held_tail) c->held_tail->next = h;
    else c->held = h;
    c->held_tail = h;
    c->nheld++;
    c->held_bytes += len;
}

static void stored_arrived(struct chan *c, const struct hist_pos *pos, const char *data,
                           size_t len, bool binary)
{
    if (c->filling) {
        hold(c, pos, data, len, binary);
        return;
    }
    bool gap = c->epoch[0] && strcmp(c->epoch, pos->epoch) == 0 && pos->offset > c->last + 1;
    if (gap) hold(c, pos, data, len, binary);
    in_order(c, pos, data, len, binary);
}

/* The stream's entries after the last delivered: each in order, then what was held. */
static void filled(void *ud, const redisReply *r, const char *err)
{
    struct chan *c = ud;
    bool ok = r && r->type == REDIS_REPLY_ARRAY;
    if (!ok && !(err && strcmp(err, "closed") == 0) && ++c->tries < 50) {
        /* Redis is not there now (the command connection is coming back too): read again
         * soon, holding what arrives meanwhile. */
        c->retry = true;
        struct rnode *n = c->port->n;
        ev_timer_stop(n->loop, &n->flush);
        ev_timer_set(&n->flush, 0.1, 1.);
        ev_timer_start(n->loop, &n->flush);
        return;
    }
    c->tries = 0;
    c->filling = false;
    struct held *h = c->held;
    c->held = c->held_tail = NULL;
    c->nheld = c->held_bytes = 0;
    bool over = c->overflow;
    c->overflow = false;
    if (err && strcmp(err, "closed") == 0) {
        /* Shutting down: the apps are gone; nothing is delivered. */
        while (h) {
            struct held *next = h->next;
            free(h);
            h = next;
        }
        return;
    }
    if (r && r->type == REDIS_REPLY_ARRAY) {
        COUNT(gap_fills);
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements < 2)
                continue;
            struct hist_pos pos;
            pos.offset = strtoull(e->element[0]->str, NULL, 10);
            memcpy(pos.epoch, c->epoch, sizeof pos.epoch);
            if (pos.offset <= c->last) continue;
            /* Past a hole the stream no longer has (trimmed): the subscribers see the gap in
             * the offsets, and moonwire.v1 ones are told to resync. */
            if (pos.offset > c->last + 1) lost(c, &pos);
            c->last = pos.offset;
            const redisReply *d = e->element[1]->element[1];
            deliver(c, &pos, d->str ? d->str : "", d->len, rnode_entry_binary(e->element[1]));
        }
    }
    while (h) {
        struct held *next = h->next;
        if (!c->filling) {
            /* Still missing after the read (the stream lost them, or the read failed): what is
             * here is delivered rather than held for ever; the offsets show the gap. */
            if (h->pos.offset > c->last + 1 && strcmp(h->pos.epoch, c->epoch) == 0) {
                lost(c, &h->pos);
                c->last = h->pos.offset - 1;
            }
            in_order(c, &h->pos, h->data, h->len, h->binary);
        } else {
            hold(c, &h->pos, h->data, h->len, h->binary);
        }
        free(h);
        h = next;
    }
    /* What was not held came after the held: it is in the stream. */
    if (over && ok && !c->filling) fill_gap(c);
}

static void fill_gap(struct chan *c)
{
    if (c->filling && !c->retry) return;
    struct rport *p = c->port;
    struct rnode *n = p->n;
    char meta[1100], stream[1100], from[32];
    int kl = history_keys(p, c->name + c->topic_off, c->len - c->topic_off, meta, stream,
                          sizeof meta);
    if (kl < 0) return;
    struct shard *s = &n->shards[c->shard];
    snprintf(from, sizeof from, "(%llu-0", (unsigned long long)c->last);
    c->filling = true;
    c->retry = false;
    if (!rds_command(s->cmd, 4, (const char *[]){ "XRANGE", stream, from, "+" },
                     (size_t[]){ 6, (size_t)kl, strlen(from), 1 }, n->cfg.timeout, filled, c))
        c->filling = false;
}

/* A message from Redis: delivered to this worker's subscribers unless it is our own echo. */
static void on_push(void *ud, const redisReply *r)
{
    struct shard *s = ud;
    struct rnode *n = s->n;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return;
    const redisReply *kind = r->element[0], *ch = r->element[1], *msg = r->element[2];
    if (kind->type == REDIS_REPLY_STRING && kind->len == 9 &&
        memcmp(kind->str, "subscribe", 9) == 0 && ch->type == REDIS_REPLY_STRING) {
        confirmed(n, ch->str, ch->len);
        /* Live again on this channel: what was published before now is in the stream. */
        struct chan *c = n->nbuckets ? *chan_slot(n, ch->str, ch->len) : NULL;
        if (c && c->refill) {
            c->refill = false;
            fill_gap(c);
        }
        return;
    }
    if (kind->type != REDIS_REPLY_STRING || kind->len != 7 || memcmp(kind->str, "message", 7))
        return;
    if (ch->type != REDIS_REPLY_STRING || msg->type != REDIS_REPLY_STRING) return;
    if (ch->len == n->node_chan_len && memcmp(ch->str, n->node_chan, ch->len) == 0) return;
    if (msg->len < HEADER) return;
    bool stored = msg->str[8] & FLAG_HISTORY;
    /* Our own plain publishes were delivered here already; stored ones are delivered from
     * here, in the order Redis gave their offsets. */
    if (!stored && memcmp(msg->str, node_id, sizeof node_id) == 0) {
        COUNT(echoes_dropped);
        return;
    }
    struct chan *c = n->nbuckets ? *chan_slot(n, ch->str, ch->len) : NULL;
    if (!c) return; /* unsubscribed meanwhile */
    const char *data = msg->str + HEADER;
    size_t len = msg->len - HEADER;
    bool binary = msg->str[8] & FLAG_BINARY;
    struct hist_pos pos = { 0 };
    if (stored) {
        /* "<offset> <epoch> " */
        const char *sp = memchr(data, ' ', len);
        if (!sp) return;
        pos.offset = strtoull(data, NULL, 10);
        const char *ep = sp + 1, *end = memchr(ep, ' ', len - (size_t)(ep - data));
        if (!end || end - ep > HIST_EPOCH_LEN) return;
        memcpy(pos.epoch, ep, (size_t)(end - ep));
        pos.epoch[end - ep] = 0;
        len -= (size_t)(end + 1 - data);
        data = end + 1;
    }
    COUNT(received);
    if (stored) stored_arrived(c, &pos, data, len, binary);
    else deliver(c, NULL, data, len, binary);
}

static void on_probe(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct rnode *n = container_of(t, struct rnode, probe);
    double every = n->cfg.probe_interval;
    for (unsigned i = 0; i < n->nshards; i++) {
        struct shard *s = &n->shards[i];
        if (!s->sub_up) continue;
        double idle = rds_idle(s->sub);
        if (idle >= 2.5 * every) {
            rds_reconnect(s->sub, "no probe came back on the subscriber connection (a "
                                  "half-open link, or Redis stopped sending)");
            continue;
        }
        if (idle >= every && s->cmd_up) {
            const char *argv[] = { "PUBLISH", n->node_chan, "probe" };
            rds_command(s->cmd, 3, argv, (size_t[]){ 7, n->node_chan_len, 5 }, every, NULL,
                        NULL);
            COUNT(probes);
        }
    }
}

static void on_presence(struct ev_loop *loop, ev_timer *t, int revents);

struct rnode *rnode_new(struct ev_loop *loop, const struct cfg_redis *cfg, unsigned worker,
                        char *err, size_t errlen)
{
    rnode_node_id();
    struct rnode *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->loop = loop;
    n->cfg = *cfg;
    n->worker = worker;
    char why[300];
    if (!(n->dns = dns_new(loop, 2, why, sizeof why))) {
        snprintf(err, errlen, "redis: %s", why);
        free(n);
        return NULL;
    }
    n->node_chan_len = (size_t)snprintf(n->node_chan, sizeof n->node_chan, "%s:node:%s:%u",
                                        cfg->prefix, node_hex, worker);
    ev_timer_init(&n->flush, on_flush, 1., 1.);
    ev_timer_start(loop, &n->flush);
    ev_timer_init(&n->probe, on_probe, cfg->probe_interval / 2, cfg->probe_interval / 2);
    ev_timer_start(loop, &n->probe);
    ev_timer_init(&n->presence, on_presence, cfg->node_lease / 3, cfg->node_lease / 3);
    n->nshards = (unsigned)cfg->nshards;
    for (unsigned i = 0; i < n->nshards; i++) {
        struct shard *s = &n->shards[i];
        s->n = n;
        struct rds_config rc = { 0 };
        if (rds_parse_url(cfg->shards[i], &rc.addr, why, sizeof why) < 0) {
            snprintf(err, errlen, "redis: %s", why);
            rnode_free(n);
            return NULL;
        }
        if (cfg->password[0]) rc.password = n->cfg.password;
        rc.connect_timeout = cfg->connect_timeout;
        rc.backoff_min = cfg->backoff_min;
        rc.backoff_max = cfg->backoff_max;
        rc.max_pending = cfg->max_pending;
        rc.max_reply = cfg->max_reply;
        snprintf(rc.name, sizeof rc.name, "mw:%s:%u", node_hex, worker);
        __atomic_add_fetch(&down_total, 2, __ATOMIC_RELAXED);
        s->cmd = rds_new(loop, n->dns, &rc, &(struct rds_callbacks){ cmd_state, NULL, s });
        rc.subscriber = true;
        s->sub = rds_new(loop, n->dns, &rc, &(struct rds_callbacks){ sub_state, on_push, s });
        if (!s->cmd || !s->sub) {
            snprintf(err, errlen, "out of memory");
            rnode_free(n);
            return NULL;
        }
    }
    return n;
}

void rnode_free(struct rnode *n)
{
    if (!n) return;
    ev_timer_stop(n->loop, &n->flush);
    ev_timer_stop(n->loop, &n->probe);
    ev_timer_stop(n->loop, &n->presence);
    for (size_t b = 0; b < n->npres_buckets; b++)
        for (struct pres *e = n->pres[b], *next; e; e = next) {
            next = e->next;
            free(e->info);
            free(e);
        }
    free(n->pres);
    for (unsigned i = 0; i < CFG_MAX_REDIS_SHARDS; i++) {
        struct shard *s = &n->shards[i];
        if (!s->n) continue;
        int down = (s->cmd && !s->cmd_up) + (s->sub && !s->sub_up);
        down += (!s->cmd) + (!s->sub);
        __atomic_sub_fetch(&down_total, down, __ATOMIC_RELAXED);
        s->cmd_up = s->sub_up = false;
        rds_free(s->cmd);
        rds_free(s->sub);
    }
    for (size_t b = 0; b < n->nbuckets; b++)
        for (struct chan *c = n->buckets[b], *next; c; c = next) {
            next = c->next;
            while (c->waits) {
                struct rnode_wait *w = c->waits;
                c->waits = w->next;
                free(w);
            }
            free(c);
        }
    free(n->buckets);
    dns_free(n->dns);
    free(n);
}

struct rds *rnode_command_conn(struct rnode *n, const char *key, size_t len)
{
    return n->shards[shard_of(n, key, len)].cmd;
}

/* ---- the engine hooks ---------------------------------------------------------------------- */

static void rp_first(void *ctx, const char *topic, size_t len)
{
    struct rport *p = ctx;
    struct rnode *n = p->n;
    if (p->inner && p->inner->first_subscriber)
        p->inner->first_subscriber(p->inner_ctx, topic, len);
    char buf[1024];
    size_t off;
    int nl = chan_name(n, p, topic, len, buf, sizeof buf, &off);
    if (nl < 0) {
        log_warn("redis: topic %.*s is too long for a channel name: it stays on this node",
                 (int)(len < 100 ? len : 100), topic);
        return;
    }
    if (n->nchans + 1 > n->nbuckets && chans_grow(n) < 0) return;
    struct chan **slot = chan_slot(n, buf, (size_t)nl);
    struct chan *c = *slot;
    if (!c) {
        if (!(c = calloc(1, sizeof *c + (size_t)nl))) return;
        c->port = p;
        c->len = (size_t)nl;
        c->topic_off = off;
        memcpy(c->name, buf, (size_t)nl);
        c->shard = shard_of(n, buf + strlen(n->cfg.prefix) + 3,
                            (size_t)nl - strlen(n->cfg.prefix) - 3);
        c->next = *slot;
        *slot = c;
        n->nchans++;
    }
    c->local = true;
    if (!c->subscribed) {
        place(c);
        flush_soon(n);
    }
}

static void rp_last(void *ctx, const char *topic, size_t len)
{
    struct rport *p = ctx;
    struct rnode *n = p->n;
    if (p->inner && p->inner->last_subscriber)
        p->inner->last_subscriber(p->inner_ctx, topic, len);
    char buf[1024];
    size_t off;
    int nl = chan_name(n, p, topic, len, buf, sizeof buf, &off);
    if (nl < 0 || !n->nbuckets) return;
    struct chan *c = *chan_slot(n, buf, (size_t)nl);
    if (!c) return;
    c->local = false;
    c->linger_until = ev_now(n->loop) + n->cfg.linger;
    if (n->cfg.linger == 0) flush_soon(n);
}

static void rp_changed(void *ctx, const char *topic, size_t len, int delta, size_t local)
{
    struct rport *p = ctx;
    if (p->inner && p->inner->changed) p->inner->changed(p->inner_ctx, topic, len, delta, local);
}

static size_t rp_subscribers(void *ctx, const char *topic, size_t len)
{
    struct rport *p = ctx;
    if (p->inner && p->inner->subscribers)
        return p->inner->subscribers(p->inner_ctx, topic, len);
    const struct topic *t = topic_find(&p->ps->topics, topic, len);
    return t ? t->count : 0;
}

static void published(void *ud, const redisReply *r, const char *err)
{
    (void)ud;
    if (err || (r && r->type == REDIS_REPLY_ERROR)) COUNT(publish_failed);
}

/* PUBLISH of the frame's payload behind our header. Returns 0, or -1 when Redis is not up. */
static int to_redis(struct rport *p, const char *topic, size_t len, struct obuf *frame)
{
    struct rnode *n = p->n;
    char name[1024];
    size_t off;
    int nl = chan_name(n, p, topic, len, name, sizeof name, &off);
    if (nl < 0) return -1;
    struct shard *s = &n->shards[shard_of(n, name + strlen(n->cfg.prefix) + 3,
                                          (size_t)nl - strlen(n->cfg.prefix) - 3)];
    if (!s->cmd_up) {
        COUNT(publish_failed);
        return -1;
    }
    size_t plen;
    const char *payload = ps_frame_payload(frame, &plen);
    char *msg = malloc(HEADER + plen);
    if (!msg) return -1;
    memcpy(msg, node_id, sizeof node_id);
    memset(msg + 8, 0, HEADER - 8);
    if ((frame->data[0] & 0x0f) == WS_OP_BINARY) msg[8] = FLAG_BINARY;
    memcpy(msg + HEADER, payload, plen);
    const char *argv[] = { "PUBLISH", name, msg };
    struct rds_cmd *c = rds_command(s->cmd, 3, argv, (size_t[]){ 7, (size_t)nl, HEADER + plen },
                                    n->cfg.timeout, published, NULL);
    free(msg);
    if (!c) return -1;
    COUNT(published);
    return 0;
}

static int rp_publish(void *ctx, const char *topic, size_t len, struct obuf *frame)
{
    struct rport *p = ctx;
    int rc = 0;
    if (p->inner && p->inner->publish && p->inner->publish(p->inner_ctx, topic, len, frame) < 0)
        rc = -1;
    if (to_redis(p, topic, len, frame) < 0) rc = -1;
    return rc;
}

static int rp_publish_history(void *ctx, const char *topic, size_t len, struct obuf *frame,
                              const struct hist_pos *pos)
{
    struct rport *p = ctx;
    int rc = p->inner->publish_history(p->inner_ctx, topic, len, frame, pos);
    if (to_redis(p, topic, len, frame) < 0) rc = -1;
    return rc;
}

/* ---- history in Redis ---------------------------------------------------------------------- */

/* KEYS: meta hash, stream, channel. ARGV: header, data, size, ttl, run_id, a new epoch, "1"
 * for a binary publication (the entry's field b, so it is read back as binary).
 * A new epoch (the stream deleted, offsets from 1) when there is no meta or it was written
 * under another run_id (Redis restarted, maybe from an older snapshot). */
static const char publish_script[] =
    "local m = redis.call('HMGET', KEYS[1], 'e', 'r')\n"
    "local epoch = m[1]\n"
    "if not epoch or (ARGV[5] ~= '' and m[2] ~= ARGV[5]) then\n"
    "  epoch = ARGV[6]\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', ARGV[5])\n"
    "end\n"
    "local off = redis.call('HINCRBY', KEYS[1], 'o', 1)\n"
    "if ARGV[7] == '1' then\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], off .. '-0', 'd', ARGV[2], 'b', '1')\n"
    "else\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], off .. '-0', 'd', ARGV[2])\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[4] * 2 + 60)\n"
    "redis.call('PUBLISH', KEYS[3], ARGV[1] .. off .. ' ' .. epoch .. ' ' .. ARGV[2])\n"
    "return off\n";

/* KEYS: meta hash, stream. ARGV: run_id, a new epoch, since ("" for all, "-" for none), ttl.
 * Returns { epoch, top offset, XRANGE entries after since }. */
static const char read_script[] =
    "local m = redis.call('HMGET', KEYS[1], 'e', 'r', 'o')\n"
    "local epoch, top = m[1], tonumber(m[3] or 0)\n"
    "if not epoch or (ARGV[1] ~= '' and m[2] ~= ARGV[1]) then\n"
    "  epoch, top = ARGV[2], 0\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0, 'r', ARGV[1])\n"
    "  redis.call('EXPIRE', KEYS[1], ARGV[4] * 2 + 60)\n"
    "end\n"
    "if ARGV[3] == '-' then return { epoch, top, {} } end\n"
    "local from = ARGV[3] == '' and '-' or ('(' .. ARGV[3] .. '-0')\n"
    "return { epoch, top, redis.call('XRANGE', KEYS[2], from, '+') }\n";

/* The meta and stream keys of a history topic: <prefix>:h:<path>:<topic>:m and :s. */
static int history_keys(const struct rport *p, const char *topic, size_t len, char *meta,
                        char *stream, size_t cap)
{
    int n = snprintf(meta, cap, "%s:h:%s:%.*s:m", p->n->cfg.prefix, p->path, (int)len, topic);
    if (n < 0 || (size_t)n >= cap) return -1;
    memcpy(stream, meta, (size_t)n);
    stream[n - 1] = 's';
    stream[n] = 0;
    return n;
}

/* The topic's position (epoch, offset) read when this worker took its first subscriber: the
 * channel is subscribed after it, and once Redis confirms the SUBSCRIBE what was published
 * since is read from the stream, so nothing published after the subscribe is missed. */
static void placed(void *ud, const redisReply *r, const char *err)
{
    struct chan *c = ud;
    c->placing = false;
    if (err && strcmp(err, "closed") == 0) return;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len <= HIST_EPOCH_LEN &&
        r->element[1]->type == REDIS_REPLY_INTEGER && !c->epoch[0]) {
        memcpy(c->epoch, r->element[0]->str, r->element[0]->len);
        c->epoch[r->element[0]->len] = 0;
        c->last = (uint64_t)r->element[1]->integer;
        c->refill = true;
    }
    /* Failed (Redis is away): subscribed without a position, live from its confirmation. */
    flush_soon(c->port->n);
}

static void place(struct chan *c)
{
    struct rport *p = c->port;
    struct rnode *n = p->n;
    if (c->placing || c->epoch[0] || !p->ps->history) return;
    const char *topic = c->name + c->topic_off;
    size_t len = c->len - c->topic_off;
    const struct hist_rule *rule = history_rule(p->ps->history, topic, len);
    struct shard *s = &n->shards[c->shard];
    char meta[1100], stream[1100], ttl[24], epoch[HIST_EPOCH_LEN + 1];
    int kl = history_keys(p, topic, len, meta, stream, sizeof meta);
    if (!rule || kl < 0 || !s->cmd_up) return;
    snprintf(ttl, sizeof ttl, "%.0f", rule->ttl < 1 ? 1 : rule->ttl);
    history_new_epoch(epoch);
    const char *argv[] = { "EVAL", read_script, "2", meta, stream, s->run_id, epoch, "-", ttl };
    size_t lens[] = { 4, sizeof read_script - 1, 1, (size_t)kl, (size_t)kl, strlen(s->run_id),
                      strlen(epoch), 1, strlen(ttl) };
    c->placing = rds_command(s->cmd, 9, argv, lens, n->cfg.timeout, placed, c) != NULL;
}

static void stored(void *ud, const redisReply *r, const char *err)
{
    (void)ud;
    if (err || (r && r->type == REDIS_REPLY_ERROR)) {
        COUNT(publish_failed);
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn("redis: storing a history publication failed: %.*s",
                     (int)(r->len < 200 ? r->len : 200), r->str);
    }
}

static int rp_publish_stored(void *ctx, const char *topic, size_t len, struct obuf *frame)
{
    struct rport *p = ctx;
    struct rnode *n = p->n;
    const struct hist_rule *rule = history_rule(p->ps->history, topic, len);
    char name[1024], meta[1100], stream[1100];
    size_t off;
    int nl = chan_name(n, p, topic, len, name, sizeof name, &off);
    int kl = history_keys(p, topic, len, meta, stream, sizeof meta);
    if (nl < 0 || kl < 0 || !rule) return -1;
    struct shard *s = &n->shards[shard_of(n, name + strlen(n->cfg.prefix) + 3,
                                          (size_t)nl - strlen(n->cfg.prefix) - 3)];
    if (!s->cmd_up || !s->run_id[0]) {
        COUNT(publish_failed);
        return -1;
    }
    size_t plen;
    const char *payload = ps_frame_payload(frame, &plen);
    char header[HEADER];
    memcpy(header, node_id, sizeof node_id);
    memset(header + 8, 0, HEADER - 8);
    header[8] = FLAG_HISTORY | ((frame->data[0] & 0x0f) == WS_OP_BINARY ? FLAG_BINARY : 0);
    char size[24], ttl[24], epoch[HIST_EPOCH_LEN + 1];
    snprintf(size, sizeof size, "%u", rule->size);
    snprintf(ttl, sizeof ttl, "%.0f", rule->ttl < 1 ? 1 : rule->ttl);
    history_new_epoch(epoch);
    bool binary = header[8] & FLAG_BINARY;
    const char *argv[] = { "EVAL", publish_script, "3", meta, stream, name, header, payload,
                           size, ttl, s->run_id, epoch, binary ? "1" : "0" };
    size_t lens[] = { 4, sizeof publish_script - 1, 1, (size_t)kl, (size_t)kl, (size_t)nl,
                      HEADER, plen, strlen(size), strlen(ttl), strlen(s->run_id),
                      strlen(epoch), 1 };
    if (!rds_command(s->cmd, 13, argv, lens, n->cfg.timeout, stored, NULL)) return -1;
    COUNT(published);
    return 0;
}

struct rds_cmd *rnode_history_read(struct rnode *n, struct lb_app *app, const char *topic,
                                   size_t len, const char *since, rds_done done, void *ud)
{
    struct rport *p = NULL;
    for (size_t i = 0; i < n->nports; i++)
        if (n->ports[i].app == app) p = &n->ports[i];
    if (!p) return NULL;
    const struct hist_rule *rule = history_rule(p->ps->history, topic, len);
    char name[1024], meta[1100], stream[1100];
    size_t off;
    int nl = chan_name(n, p, topic, len, name, sizeof name, &off);
    int kl = history_keys(p, topic, len, meta, stream, sizeof meta);
    if (!rule) return NULL;
    if (nl < 0 || kl < 0)
        return rds_fail(n->shards[0].cmd, "the topic is too long for a Redis key: shorten it or "
                        "lower limits.max_topic_length", done, ud);
    struct shard *s = &n->shards[shard_of(n, name + strlen(n->cfg.prefix) + 3,
                                          (size_t)nl - strlen(n->cfg.prefix) - 3)];
    char ttl[24], epoch[HIST_EPOCH_LEN + 1];
    snprintf(ttl, sizeof ttl, "%.0f", rule->ttl < 1 ? 1 : rule->ttl);
    history_new_epoch(epoch);
    const char *rid = s->cmd_up && s->run_id[0] ? s->run_id : NULL;
    const char *argv[] = { "EVAL", read_script, "2", meta, stream, rid ? rid : "", epoch,
                           since ? since : "", ttl };
    size_t lens[] = { 4, sizeof read_script - 1, 1, (size_t)kl, (size_t)kl,
                      rid ? strlen(rid) : 0, strlen(epoch), since ? strlen(since) : 0,
                      strlen(ttl) };
    /* Without the run_id the script cannot tell a restart: Redis is not there yet. */
    if (!rid) return rds_fail(s->cmd, "unavailable", done, ud);
    return rds_command(s->cmd, 9, argv, lens, n->cfg.timeout, done, ud);
}

int rnode_when_subscribed(struct rnode *n, struct lb_app *app, const char *topic, size_t len,
                          void (*ready)(void *ud), void *ud, struct rnode_wait **wait)
{
    *wait = NULL;
    struct rport *p = NULL;
    for (size_t i = 0; i < n->nports; i++)
        if (n->ports[i].app == app) p = &n->ports[i];
    if (!p) return -1;
    char buf[1024];
    size_t off;
    int nl = chan_name(n, p, topic, len, buf, sizeof buf, &off);
    struct chan *c = nl >= 0 && n->nbuckets ? *chan_slot(n, buf, (size_t)nl) : NULL;
    if (!c) return -1;
    if (c->confirmed) return 1;
    struct rnode_wait *w = calloc(1, sizeof *w);
    if (!w) return -1;
    w->chan = c;
    w->ready = ready;
    w->ud = ud;
    w->next = c->waits;
    c->waits = w;
    *wait = w;
    return 0;
}

void rnode_wait_cancel(struct rnode_wait *w)
{
    if (!w) return;
    for (struct rnode_wait **pw = &w->chan->waits; *pw; pw = &(*pw)->next)
        if (*pw == w) {
            *pw = w->next;
            break;
        }
    free(w);
}

/* ---- presence ------------------------------------------------------------------------------ */

static size_t pres_hash(const struct conn *c, const char *topic, size_t len)
{
    return (size_t)(fnv(topic, len) ^ ((uintptr_t)c * 0x9E3779B97F4A7C15ull));
}

static struct pres **pres_slot(struct rnode *n, const struct conn *c, const char *topic,
                               size_t len)
{
    struct pres **p = &n->pres[pres_hash(c, topic, len) & (n->npres_buckets - 1)];
    while (*p && !((*p)->c == c && (*p)->topic_len == len && !memcmp((*p)->topic, topic, len)))
        p = &(*p)->next;
    return p;
}

static int pres_grow(struct rnode *n)
{
    size_t nb = n->npres_buckets ? n->npres_buckets * 2 : 64;
    struct pres **b = calloc(nb, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < n->npres_buckets; i++)
        for (struct pres *e = n->pres[i], *next; e; e = next) {
            next = e->next;
            size_t k = pres_hash(e->c, e->topic, e->topic_len) & (nb - 1);
            e->next = b[k];
            b[k] = e;
        }
    free(n->pres);
    n->pres = b;
    n->npres_buckets = nb;
    return 0;
}

/* The presence keys of a topic: <prefix>:p:<path>:<topic> (a hash: field -> node|info) and
 * ...:z (a sorted set: field -> when it expires, unix seconds). */
static int presence_keys(const struct rport *p, const char *topic, size_t len, char *hash,
                         char *zset, size_t cap)
{
    int n = snprintf(hash, cap, "%s:p:%s:%.*s", p->n->cfg.prefix, p->path, (int)len, topic);
    if (n < 0 || (size_t)n + 2 >= cap) return -1;
    memcpy(zset, hash, (size_t)n);
    memcpy(zset + n, ":z", 3);
    return n;
}

static struct shard *topic_shard(struct rnode *n, const struct rport *p, const char *topic,
                                 size_t len)
{
    char key[1100];
    int k = snprintf(key, sizeof key, "%s:%.*s", p->path, (int)len, topic);
    if (k < 0 || (size_t)k >= sizeof key) k = (int)sizeof key - 1;
    return &n->shards[shard_of(n, key, (size_t)k)];
}

/* HSET + ZADD (+ EXPIRE) of one entry, pipelined. */
static void pres_send(struct rnode *n, const struct pres *e)
{
    struct shard *s = topic_shard(n, e->port, e->topic, e->topic_len);
    if (!s->cmd_up) return; /* the next refresh */
    char hash[1200], zset[1200];
    int kl = presence_keys(e->port, e->topic, e->topic_len, hash, zset, sizeof hash);
    if (kl < 0) return;
    size_t vlen = 17 + e->info_len;
    char *value = malloc(vlen);
    if (!value) return;
    memcpy(value, node_hex, 16);
    value[16] = '|';
    memcpy(value + 17, e->info, e->info_len);
    char score[32], ttl[24];
    snprintf(score, sizeof score, "%.3f", ev_time() + n->cfg.presence_ttl);
    snprintf(ttl, sizeof ttl, "%.0f", n->cfg.presence_ttl * 2 + 1);
    rds_command(s->cmd, 4, (const char *[]){ "HSET", hash, e->field, value },
                (size_t[]){ 4, (size_t)kl, e->field_len, vlen }, n->cfg.timeout, NULL, NULL);
    rds_command(s->cmd, 4, (const char *[]){ "ZADD", zset, score, e->field },
                (size_t[]){ 4, (size_t)kl + 2, strlen(score), e->field_len }, n->cfg.timeout,
                NULL, NULL);
    rds_command(s->cmd, 3, (const char *[]){ "EXPIRE", hash, ttl },
                (size_t[]){ 6, (size_t)kl, strlen(ttl) }, n->cfg.timeout, NULL, NULL);
    rds_command(s->cmd, 3, (const char *[]){ "EXPIRE", zset, ttl },
                (size_t[]){ 6, (size_t)kl + 2, strlen(ttl) }, n->cfg.timeout, NULL, NULL);
    free(value);
}

static void lease(struct rnode *n)
{
    char key[128], ex[24];
    int kl = snprintf(key, sizeof key, "%s:node:%s", n->cfg.prefix, node_hex);
    snprintf(ex, sizeof ex, "%lld", (long long)(n->cfg.node_lease * 1000));
    for (unsigned i = 0; i < n->nshards; i++)
        if (n->shards[i].cmd_up)
            rds_command(n->shards[i].cmd, 5, (const char *[]){ "SET", key, "1", "PX", ex },
                        (size_t[]){ 3, (size_t)kl, 1, 2, strlen(ex) }, n->cfg.timeout, NULL,
                        NULL);
}

/* Every third of the lease: the node's lease; every third of presence_ttl: the entries. */
static void on_presence(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct rnode *n = container_of(t, struct rnode, presence);
    lease(n);
    double now = ev_now(loop);
    if (now < n->next_refresh) return;
    n->next_refresh = now + n->cfg.presence_ttl / 3;
    for (size_t b = 0; b < n->npres_buckets; b++)
        for (struct pres *e = n->pres[b]; e; e = e->next) pres_send(n, e);
}

int rnode_presence_join(struct rnode *n, struct lb_app *app, struct conn *c, uint64_t conn_id,
                        const char *topic, size_t len, const char *info, size_t info_len)
{
    struct rport *p = NULL;
    for (size_t i = 0; i < n->nports; i++)
        if (n->ports[i].app == app) p = &n->ports[i];
    if (!p) return -1;
    if (n->npres + 1 > n->npres_buckets && pres_grow(n) < 0) return -1;
    struct pres **slot = pres_slot(n, c, topic, len);
    struct pres *e = *slot;
    if (!e) {
        if (!(e = calloc(1, sizeof *e + len))) return -1;
        e->port = p;
        e->c = c;
        e->topic_len = len;
        memcpy(e->topic, topic, len);
        e->field_len = (size_t)snprintf(e->field, sizeof e->field, "%s:%u:%llu", node_hex,
                                        n->worker, (unsigned long long)conn_id);
        e->next = *slot;
        *slot = e;
        n->npres++;
    }
    char *copy = malloc(info_len ? info_len : 1);
    if (!copy) return -1;
    memcpy(copy, info, info_len);
    free(e->info);
    e->info = copy;
    e->info_len = info_len;
    pres_send(n, e);
    if (!ev_is_active(&n->presence)) {
        lease(n);
        ev_timer_start(n->loop, &n->presence);
    }
    return 0;
}

static void rp_left(void *ctx, struct conn *c, const char *topic, size_t len)
{
    struct rport *p = ctx;
    struct rnode *n = p->n;
    if (p->inner && p->inner->left) p->inner->left(p->inner_ctx, c, topic, len);
    if (!n->npres) return;
    struct pres **slot = pres_slot(n, c, topic, len);
    struct pres *e = *slot;
    if (!e) return;
    *slot = e->next;
    n->npres--;
    struct shard *s = topic_shard(n, p, topic, len);
    char hash[1200], zset[1200];
    int kl = presence_keys(p, topic, len, hash, zset, sizeof hash);
    if (kl >= 0 && s->cmd_up) {
        rds_command(s->cmd, 3, (const char *[]){ "HDEL", hash, e->field },
                    (size_t[]){ 4, (size_t)kl, e->field_len }, n->cfg.timeout, NULL, NULL);
        rds_command(s->cmd, 3, (const char *[]){ "ZREM", zset, e->field },
                    (size_t[]){ 4, (size_t)kl + 2, e->field_len }, n->cfg.timeout, NULL, NULL);
    }
    free(e->info);
    free(e);
}

/* KEYS: hash, zset. ARGV: now (unix seconds), the node lease key prefix. Drops entries past
 * their expiry or whose node has no lease (it died), returns field, info, field, info... */
static const char presence_script[] =
    "local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])\n"
    "for _, f in ipairs(gone) do\n"
    "  redis.call('HDEL', KEYS[1], f)\n"
    "  redis.call('ZREM', KEYS[2], f)\n"
    "end\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "local out, alive = {}, {}\n"
    "for i = 1, #all, 2 do\n"
    "  local v = all[i + 1]\n"
    "  local node = string.match(v, '^([^|]*)|') or ''\n"
    "  if alive[node] == nil then\n"
    "    alive[node] = redis.call('EXISTS', ARGV[2] .. node) == 1\n"
    "  end\n"
    "  if alive[node] then\n"
    "    out[#out + 1] = all[i]\n"
    "    out[#out + 1] = string.sub(v, #node + 2)\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[1], all[i])\n"
    "    redis.call('ZREM', KEYS[2], all[i])\n"
    "  end\n"
    "end\n"
    "return out\n";

struct rds_cmd *rnode_presence_read(struct rnode *n, struct lb_app *app, const char *topic,
                                    size_t len, rds_done done, void *ud)
{
    struct rport *p = NULL;
    for (size_t i = 0; i < n->nports; i++)
        if (n->ports[i].app == app) p = &n->ports[i];
    if (!p) return NULL;
    char hash[1200], zset[1200], now[32], lease_prefix[128];
    int kl = presence_keys(p, topic, len, hash, zset, sizeof hash);
    if (kl < 0) return NULL;
    struct shard *s = topic_shard(n, p, topic, len);
    snprintf(now, sizeof now, "%.3f", ev_time());
    int ll = snprintf(lease_prefix, sizeof lease_prefix, "%s:node:", n->cfg.prefix);
    const char *argv[] = { "EVAL", presence_script, "2", hash, zset, now, lease_prefix };
    size_t lens[] = { 4, sizeof presence_script - 1, 1, (size_t)kl, (size_t)kl + 2, strlen(now),
                      (size_t)ll };
    return rds_command(s->cmd, 7, argv, lens, n->cfg.timeout, done, ud);
}

static const struct ps_engine redis_engine = {
    .first_subscriber = rp_first, .last_subscriber = rp_last, .publish = rp_publish,
    .changed = rp_changed, .subscribers = rp_subscribers, .publish_stored = rp_publish_stored,
    .left = rp_left,
};
/* Over an engine that carries history publications itself (the workers' bus). */
static const struct ps_engine redis_engine_history = {
    .first_subscriber = rp_first, .last_subscriber = rp_last, .publish = rp_publish,
    .changed = rp_changed, .subscribers = rp_subscribers,
    .publish_history = rp_publish_history, .publish_stored = rp_publish_stored,
    .left = rp_left,
};

int rnode_attach(struct rnode *n, struct lb_app *app, unsigned index, const char *path)
{
    if (n->nports >= CFG_MAX_APPS) return -1;
    struct pubsub *ps = lb_app_pubsub(app);
    struct rport *p = &n->ports[n->nports++];
    p->n = n;
    p->app = app;
    p->ps = ps;
    p->index = index;
    snprintf(p->path, sizeof p->path, "%s", path);
    p->path_len = strlen(p->path);
    p->inner = ps->engine;
    p->inner_ctx = ps->engine_ctx;
    ps_set_engine(ps, p->inner && p->inner->publish_history ? &redis_engine_history
                                                            : &redis_engine, p);
    return 0;
}
