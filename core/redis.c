/* A Redis connection on the loop: see redis.h. */
#include "redis.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <hiredis/read.h>

#include "dns.h"
#include "log.h"
#include "util.h"

enum state { DOWN, RESOLVING, CONNECTING, HANDSHAKE, UP };

struct rds_cmd {
    struct rds *r;
    rds_done done;       /* NULL: cancelled (the reply is still awaited, then dropped) */
    void *ud;
    double deadline;     /* loop time; 0: none */
    double sent;         /* when it was queued (loop time) */
    const char *fail;    /* in the fail queue: why */
    bool handshake;
    struct rds_cmd *next;
};

struct rds {
    struct ev_loop *loop;
    struct dns *dns;
    struct dns_query *query;
    struct rds_config cfg;
    struct rds_callbacks cb;
    enum state state;
    int fd;
    ev_io rio, wio;
    ev_timer timer;      /* connect timeout, or the backoff before the next try */
    ev_timer tick;       /* command timeouts */
    ev_timer later;      /* runs the fail queue */
    unsigned attempt;
    redisReader *reader;
    size_t reply_bytes;  /* fed to the reader since its last complete reply */
    char *out;
    size_t out_len, out_pos, out_cap;
    struct rds_cmd *head, *tail;       /* awaiting replies, in order */
    struct rds_cmd *fail_head, *fail_tail;
    unsigned handshake_left;
    bool closing;
    double last_read;
    struct rds_stats stats;
};

int rds_parse_url(const char *url, struct rds_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->port = 6379;
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "'%s' is not a redis:// URL (like redis://127.0.0.1:6379/0; "
                 "rediss:// is not supported)", url);
        return -1;
    }
    const char *p = url + 8, *at = strchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *ue = colon ? colon : at;
        if ((size_t)(ue - p) >= sizeof a->user ||
            (colon && (size_t)(at - colon - 1) >= sizeof a->password)) {
            snprintf(err, errlen, "the user or password of the Redis URL is too long");
            return -1;
        }
        memcpy(a->user, p, (size_t)(ue - p));
        if (colon) memcpy(a->password, colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (!he) goto bad;
        hs = p + 1;
        p = he + 1;
    } else {
        he = p + strcspn(p, ":/");
        p = he;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof a->host) goto bad;
    memcpy(a->host, hs, (size_t)(he - hs));
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535) goto bad;
        a->port = (uint16_t)port;
        p = end;
    }
    if (*p == '/' && p[1]) {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (*end || db < 0 || db > 1000000) goto bad;
        a->db = (int)db;
    } else if (*p && strcmp(p, "/") != 0) {
        goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not a Redis URL like redis://[:password@]host[:port][/db]",
             url);
    return -1;
}

/* ---- the fail queue: callbacks never run before rds_command returns ------------------------ */

static void fail_later(struct rds *r, struct rds_cmd *c, const char *why)
{
    c->fail = why;
    c->next = NULL;
    if (r->fail_tail) r->fail_tail->next = c;
    else r->fail_head = c;
    r->fail_tail = c;
    if (!ev_is_active(&r->later)) ev_timer_start(r->loop, &r->later);
}

static void on_later(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct rds *r = container_of(t, struct rds, later);
    struct rds_cmd *c = r->fail_head;
    r->fail_head = r->fail_tail = NULL;
    while (c) {
        struct rds_cmd *next = c->next;
        if (c->done) c->done(c->ud, NULL, c->fail);
        free(c);
        c = next;
    }
}

/* ---- connecting ---------------------------------------------------------------------------- */

static void connect_start(struct rds *r);

static void set_state(struct rds *r, enum state s)
{
    bool was_up = r->state == UP;
    r->state = s;
    if (was_up != (s == UP) && r->cb.state) r->cb.state(r->cb.ud, s == UP);
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct rds *r = container_of(t, struct rds, timer);
    if (r->state == DOWN) connect_start(r);
    else rds_reconnect(r, "it did not connect within connect_timeout");
}

static double jitter(double max)
{
    uint32_t x;
    if (getrandom(&x, sizeof x, 0) != (ssize_t)sizeof x) x = (uint32_t)rand();
    return max * ((double)x / 4294967296.0);
}

/* Closes the socket, fails what waited, and schedules the next try. */
/* The reason given to the waiting commands when a reply outgrows max_reply. */
static const char TOO_LARGE[] = "too large: a reply from Redis was larger than redis.max_reply; ask for less "
                                "at once (LRANGE/XRANGE with bounds, HSCAN) or raise redis.max_reply";

static void drop(struct rds *r, const char *why)
{
    if (r->query) {
        dns_cancel(r->query);
        r->query = NULL;
    }
    if (r->fd >= 0) {
        ev_io_stop(r->loop, &r->rio);
        ev_io_stop(r->loop, &r->wio);
        close(r->fd);
        r->fd = -1;
    }
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_stop(r->loop, &r->tick);
    if (r->reader) {
        redisReaderFree(r->reader);
        r->reader = NULL;
    }
    r->out_len = r->out_pos = 0;
    struct rds_cmd *c = r->head;
    r->head = r->tail = NULL;
    while (c) {
        struct rds_cmd *next = c->next;
        if (c->handshake) free(c);
        else fail_later(r, c, why == TOO_LARGE ? TOO_LARGE : "lost");
        c = next;
    }
    if (r->closing) {
        set_state(r, DOWN);
        return;
    }
    bool was = r->state != DOWN;
    if (was) {
        r->stats.failures++;
        if (r->attempt == 0 || r->state == UP)
            log_warn("redis %s:%u%s: %s; trying again", r->cfg.addr.host, r->cfg.addr.port,
                     r->cfg.subscriber ? " (subscriber)" : "", why);
    }
    set_state(r, DOWN);
    double cap = r->cfg.backoff_min * (double)(1u << (r->attempt < 16 ? r->attempt : 16));
    if (cap > r->cfg.backoff_max) cap = r->cfg.backoff_max;
    r->attempt++;
    ev_timer_set(&r->timer, jitter(cap), 0.);
    ev_timer_start(r->loop, &r->timer);
}

void rds_reconnect(struct rds *r, const char *why) { drop(r, why); }

static int out_append(struct rds *r, const char *p, size_t n)
{
    if (r->out_pos && r->out_pos == r->out_len) r->out_len = r->out_pos = 0;
    if (r->out_len + n > r->out_cap) {
        if (r->out_pos) {
            memmove(r->out, r->out + r->out_pos, r->out_len - r->out_pos);
            r->out_len -= r->out_pos;
            r->out_pos = 0;
        }
        if (r->out_len + n > r->out_cap) {
            size_t cap = r->out_cap ? r->out_cap : 4096;
            while (cap < r->out_len + n) cap *= 2;
            char *o = realloc(r->out, cap);
            if (!o) return -1;
            r->out = o;
            r->out_cap = cap;
        }
    }
    memcpy(r->out + r->out_len, p, n);
    r->out_len += n;
    if (r->fd >= 0 && r->state >= HANDSHAKE && !ev_is_active(&r->wio))
        ev_io_start(r->loop, &r->wio);
    return 0;
}

/* Appends a formatted command. Returns 0, or -1 when out of memory. */
static int format_into(struct rds *r, int argc, const char **argv, const size_t *lens)
{
    char *cmd;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0) return -1;
    int rc = out_append(r, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

static void queue(struct rds *r, struct rds_cmd *c)
{
    c->next = NULL;
    if (r->tail) r->tail->next = c;
    else r->head = c;
    r->tail = c;
}

/* -1: out of memory; the caller drops the connection once the waiting commands are queued
 * again, so that drop() fails them rather than leaving them nowhere. */
static int handshake_cmd(struct rds *r, int argc, const char **argv, const size_t *lens)
{
    struct rds_cmd *c = calloc(1, sizeof *c);
    if (!c || format_into(r, argc, argv, lens) < 0) {
        free(c);
        return -1;
    }
    c->r = r;
    c->handshake = true;
    queue(r, c);
    r->handshake_left++;
    return 0;
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_read(struct ev_loop *loop, ev_io *w, int revents);

static void handshake(struct rds *r)
{
    ev_timer_stop(r->loop, &r->timer);
    ev_io_stop(r->loop, &r->wio);
    ev_io_set(&r->wio, r->fd, EV_WRITE);
    ev_io_set(&r->rio, r->fd, EV_READ);
    ev_io_start(r->loop, &r->rio);
    r->reader = redisReaderCreate();
    r->reply_bytes = 0;
    if (!r->reader) {
        drop(r, "out of memory");
        return;
    }
    r->last_read = ev_now(r->loop);
    /* The handshake goes first in the buffer: commands already waiting follow it. */
    char *waiting = NULL;
    size_t wlen = r->out_len - r->out_pos;
    if (wlen) {
        waiting = malloc(wlen);
        if (!waiting) {
            drop(r, "out of memory");
            return;
        }
        memcpy(waiting, r->out + r->out_pos, wlen);
    }
    r->out_len = r->out_pos = 0;
    set_state(r, HANDSHAKE);
    struct rds_cmd *user = r->head;
    r->head = r->tail = NULL;
    r->handshake_left = 0;
    int oom = 0;
    const char *pw = r->cfg.password ? r->cfg.password : r->cfg.addr.password;
    if (pw && *pw) {
        if (r->cfg.addr.user[0]) {
            const char *argv[] = { "AUTH", r->cfg.addr.user, pw };
            oom |= handshake_cmd(r, 3, argv, (size_t[]){ 4, strlen(argv[1]), strlen(pw) });
        } else {
            const char *argv[] = { "AUTH", pw };
            oom |= handshake_cmd(r, 2, argv, (size_t[]){ 4, strlen(pw) });
        }
    }
    if (r->cfg.addr.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->cfg.addr.db);
        const char *argv[] = { "SELECT", db };
        oom |= handshake_cmd(r, 2, argv, (size_t[]){ 6, strlen(db) });
    }
    if (r->cfg.name[0]) {
        const char *argv[] = { "CLIENT", "SETNAME", r->cfg.name };
        oom |= handshake_cmd(r, 3, argv, (size_t[]){ 6, 7, strlen(r->cfg.name) });
    }
    {
        const char *argv[] = { "PING" };
        oom |= handshake_cmd(r, 1, argv, (size_t[]){ 4 });
    }
    /* The waiting commands' replies follow the handshake's. */
    if (r->tail) r->tail->next = user;
    else r->head = user;
    while (r->tail && r->tail->next) r->tail = r->tail->next;
    if (!r->tail) r->tail = user;
    if (oom) {
        free(waiting);
        drop(r, "out of memory");
        return;
    }
    if (wlen) {
        int rc = out_append(r, waiting, wlen);
        free(waiting);
        if (rc < 0) {
            drop(r, "out of memory");
            return;
        }
    }
    ev_timer_set(&r->timer, r->cfg.connect_timeout, 0.);
    ev_timer_start(r->loop, &r->timer);
    if (r->head && !ev_is_active(&r->tick)) ev_timer_start(r->loop, &r->tick);
}

static void on_connected(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct rds *r = container_of(w, struct rds, wio);
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        char why[128];
        snprintf(why, sizeof why, "connect: %s", strerror(err));
        drop(r, why);
        return;
    }
    ev_io_stop(r->loop, &r->wio);
    ev_set_cb(&r->wio, on_write);
    handshake(r);
}

static void resolved(void *ud, const struct dns_result *res, const char *detail)
{
    struct rds *r = ud;
    r->query = NULL;
    if (!res) {
        drop(r, detail);
        return;
    }
    const struct sockaddr_storage *sa = &res->addrs[0];
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        drop(r, strerror(errno));
        return;
    }
    int one = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    r->fd = fd;
    socklen_t slen = sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                               : sizeof(struct sockaddr_in);
    set_state(r, CONNECTING);
    ev_io_init(&r->wio, on_connected, fd, EV_WRITE);
    ev_io_init(&r->rio, on_read, fd, EV_READ);
    if (connect(fd, (const struct sockaddr *)sa, slen) < 0 && errno != EINPROGRESS) {
        char why[128];
        snprintf(why, sizeof why, "connect: %s", strerror(errno));
        drop(r, why);
        return;
    }
    ev_io_start(r->loop, &r->wio);
}

static void connect_start(struct rds *r)
{
    set_state(r, RESOLVING);
    ev_timer_set(&r->timer, r->cfg.connect_timeout, 0.);
    ev_timer_start(r->loop, &r->timer);
    r->query = dns_resolve(r->dns, r->cfg.addr.host, r->cfg.addr.port, resolved, r);
    if (!r->query) drop(r, "out of memory");
}

/* ---- replies ------------------------------------------------------------------------------- */

static void handshake_reply(struct rds *r, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[300];
        snprintf(why, sizeof why, "the handshake (AUTH, SELECT, CLIENT SETNAME) failed: %.*s%s",
                 (int)(reply->len < 200 ? reply->len : 200), reply->str,
                 r->cfg.password || r->cfg.addr.password[0] ? "" : " (is a password needed?)");
        drop(r, why);
        return;
    }
    if (--r->handshake_left == 0) {
        ev_timer_stop(r->loop, &r->timer);
        if (r->attempt > 1)
            log_info("redis %s:%u%s: connected again", r->cfg.addr.host, r->cfg.addr.port,
                     r->cfg.subscriber ? " (subscriber)" : "");
        r->attempt = 0;
        r->stats.connects++;
        set_state(r, UP);
    }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct rds *r = container_of(w, struct rds, rio);
    char buf[16384];
    for (int rounds = 0; rounds < 16; rounds++) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n == 0) {
            drop(r, "Redis closed the connection");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            drop(r, strerror(errno));
            return;
        }
        r->last_read = ev_now(loop);
        if (redisReaderFeed(r->reader, buf, (size_t)n) != REDIS_OK) {
            drop(r, "out of memory");
            return;
        }
        r->reply_bytes += (size_t)n;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(r->reader, &reply) != REDIS_OK) {
                char why[200];
                snprintf(why, sizeof why, "protocol error: %s", r->reader->errstr);
                drop(r, why);
                return;
            }
            if (!reply) break;
            /* What is left unparsed belongs to the replies that follow. */
            r->reply_bytes = r->reader->len - r->reader->pos;
            struct rds_cmd *c = r->head;
            if (c) {
                r->head = c->next;
                if (!r->head) r->tail = NULL;
                if (c->handshake) {
                    handshake_reply(r, reply);
                } else if (c->done) {
                    c->done(c->ud, reply, NULL);
                }
                free(c);
            } else if (r->cfg.subscriber && r->cb.push) {
                r->cb.push(r->cb.ud, reply);
            }
            freeReplyObject(reply);
            if (r->fd < 0) return; /* dropped meanwhile */
        }
        /* hiredis trims its buffer while it builds an aggregate: count the bytes fed since the
         * last complete reply, which bounds the reply tree too. */
        if (r->reply_bytes > r->cfg.max_reply) {
            drop(r, TOO_LARGE);
            return;
        }
        if ((size_t)n < sizeof buf) break;
    }
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct rds *r = container_of(w, struct rds, wio);
    while (r->out_pos < r->out_len) {
        ssize_t n = write(r->fd, r->out + r->out_pos, r->out_len - r->out_pos);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            drop(r, strerror(errno));
            return;
        }
        r->out_pos += (size_t)n;
    }
    r->out_len = r->out_pos = 0;
    ev_io_stop(r->loop, &r->wio);
}

/* Every 100 ms while commands wait: those past their timeout fail. A connection that has read
 * nothing since one of them was sent is dead or frozen: it is dropped. */
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct rds *r = container_of(t, struct rds, tick);
    double now = ev_now(loop);
    bool stale = false;
    for (struct rds_cmd *c = r->head; c; c = c->next) {
        if (c->deadline && c->deadline <= now) {
            /* Commands sent without a callback (probes) count for staleness too. */
            rds_done done = c->done;
            c->done = NULL;
            c->deadline = 0;
            r->stats.timeouts++;
            if (r->last_read < c->sent) stale = true;
            if (done) done(c->ud, NULL, "timeout");
            if (r->fd < 0) return;
        }
    }
    if (stale) {
        drop(r, "no reply within a command's timeout");
        return;
    }
    if (!r->head) ev_timer_stop(loop, t);
}

/* ---- the API ------------------------------------------------------------------------------- */

struct rds *rds_new(struct ev_loop *loop, struct dns *dns, const struct rds_config *cfg,
                    const struct rds_callbacks *cb)
{
    struct rds *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->loop = loop;
    r->dns = dns;
    r->cfg = *cfg;
    if (r->cfg.connect_timeout <= 0) r->cfg.connect_timeout = 2;
    if (r->cfg.backoff_min <= 0) r->cfg.backoff_min = 0.1;
    if (r->cfg.backoff_max < r->cfg.backoff_min) r->cfg.backoff_max = r->cfg.backoff_min;
    if (!r->cfg.max_pending) r->cfg.max_pending = 8 << 20;
    if (!r->cfg.max_reply) r->cfg.max_reply = 64 << 20;
    if (cb) r->cb = *cb;
    r->fd = -1;
    ev_timer_init(&r->timer, on_retry, 0., 0.);
    ev_timer_init(&r->tick, on_tick, 0.1, 0.1);
    ev_timer_init(&r->later, on_later, 0., 0.);
    ev_io_init(&r->rio, on_read, -1, EV_READ);
    ev_io_init(&r->wio, on_write, -1, EV_WRITE);
    connect_start(r);
    return r;
}

void rds_free(struct rds *r)
{
    if (!r) return;
    r->cb.state = NULL;
    r->closing = true;
    drop(r, "closed");
    ev_timer_stop(r->loop, &r->timer);
    for (struct rds_cmd *c = r->fail_head; c; c = c->next)
        if (c->fail && strcmp(c->fail, "lost") == 0) c->fail = "closed";
    on_later(r->loop, &r->later, 0);
    ev_timer_stop(r->loop, &r->later);
    free(r->out);
    free(r);
}

bool rds_up(const struct rds *r) { return r->state == UP; }

double rds_idle(const struct rds *r) { return ev_now(r->loop) - r->last_read; }

const struct rds_stats *rds_stats(const struct rds *r) { return &r->stats; }

struct rds_cmd *rds_command(struct rds *r, int argc, const char **argv, const size_t *lens,
                            double timeout, rds_done done, void *ud)
{
    struct rds_cmd *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->r = r;
    c->done = done;
    c->ud = ud;
    c->sent = ev_now(r->loop);
    c->deadline = timeout > 0 ? c->sent + timeout : 0;
    r->stats.commands++;
    if (r->state == DOWN) {
        fail_later(r, c, "unavailable");
        return c;
    }
    if (r->out_len - r->out_pos > r->cfg.max_pending) {
        fail_later(r, c, "unavailable");
        return c;
    }
    if (format_into(r, argc, argv, lens) < 0) {
        fail_later(r, c, "no_memory");
        return c;
    }
    if (!r->cfg.subscriber) {
        queue(r, c);
        if (!ev_is_active(&r->tick)) ev_timer_start(r->loop, &r->tick);
    } else {
        /* A subscriber's replies are pushes: the command is done once it is written. */
        fail_later(r, c, NULL);
    }
    return c;
}

struct rds_cmd *rds_fail(struct rds *r, const char *why, rds_done done, void *ud)
{
    struct rds_cmd *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->r = r;
    c->done = done;
    c->ud = ud;
    fail_later(r, c, why);
    return c;
}

void rds_cancel(struct rds_cmd *c) { c->done = NULL; }
