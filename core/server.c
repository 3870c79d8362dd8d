/* Listeners, admission, accepting, routing requests to mounts, and the drain. */
#include "server.h"

#include "conn_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* docs/protocol.md: a drained moonwire.v1 client comes back at a random time in this window
 * (milliseconds). */
#define DRAIN_REASON_V1 "going away; retry=500-5000"

#include "conn.h"
#include "log.h"
#include "tls.h"
#include "util.h"

static const struct conn_host conn_host_ops;
/* conn->host_tag: which kind of listener a connection came through. */
enum { TAG_PUBLIC = 0, TAG_ADMIN = 1 };
/* Admin connections at once: a dashboard or two and the scrapers, not a crowd. */
#define ADMIN_MAX_CONNS 64
static void on_shutdown_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents);
static void on_housekeeping(struct ev_loop *loop, ev_timer *w, int revents);

/* libev has no call that returns a loop's epoll descriptor, but an ev_embed watcher of a loop
 * watches exactly that descriptor: embedding loop for a moment into a throwaway loop (which
 * never runs) reads it. */
int srv_epoll_fd(struct ev_loop *loop)
{
    if (ev_backend(loop) != EVBACKEND_EPOLL || !(ev_embeddable_backends() & EVBACKEND_EPOLL))
        return -1;
    struct ev_loop *tmp = ev_loop_new(EVBACKEND_POLL | EVFLAG_NOENV);
    if (!tmp) return -1;
    ev_embed e;
    ev_embed_init(&e, NULL, loop);
    ev_embed_start(tmp, &e);
    int fd = e.io.fd;
    ev_embed_stop(tmp, &e);
    ev_loop_destroy(tmp);
    return fd;
}

int srv_init(struct server *srv, struct ev_loop *loop, const struct config *cfg,
             struct counters *counters)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    srv->counters = counters;
    srv->epoll_fd = -1;
    conn_loop_init(&srv->conns, loop, &cfg->limits, counters, &conn_host_ops, srv);
    srv->conns.deflate = &cfg->deflate;
    pmdz_loop_init(&srv->conns.z, cfg->deflate.level);
    ev_init(&srv->shutdown_timer, on_shutdown_timer);
    ev_init(&srv->accept_pause, on_accept_pause);
    ev_timer_init(&srv->housekeeping, on_housekeeping, 1., 1.);
    ev_timer_start(loop, &srv->housekeeping);
    /* The config loader checked every pattern already. */
    for (size_t i = 0; i < cfg->norigins; i++) {
        const char *why;
        if (strcmp(cfg->origins[i], "*") == 0) srv->origins.any = true;
        else if (origin_parse_pattern(cfg->origins[i], &srv->origin_patterns[srv->origins.count],
                                      &why) == 0)
            srv->origins.count++;
    }
    srv->origins.patterns = srv->origin_patterns;
    srv->origins.require_origin = cfg->require_origin;
    return 0;
}

int srv_mount(struct server *srv, const char *path, const struct conn_handler *handler,
              void *ctx, const char *public_dir)
{
    size_t len = strlen(path);
    if (srv->nmounts == sizeof srv->mounts / sizeof srv->mounts[0] ||
        len >= sizeof srv->mounts[0].path)
        return -1;
    for (size_t i = 0; i < srv->nmounts; i++)
        if (strcmp(srv->mounts[i].path, path) == 0) return -1;
    struct mount *m = &srv->mounts[srv->nmounts++];
    memcpy(m->path, path, len + 1);
    m->len = len;
    m->handler = handler;
    m->ctx = ctx;
    m->public_dir = public_dir;
    m->owner = -1;
    return 0;
}

void srv_mount_owner(struct server *srv, const char *path, int owner)
{
    for (size_t i = 0; i < srv->nmounts; i++)
        if (strcmp(srv->mounts[i].path, path) == 0) srv->mounts[i].owner = owner;
}

const struct mount *srv_route(const struct server *srv, const char *path, size_t len)
{
    const struct mount *best = NULL;
    for (size_t i = 0; i < srv->nmounts; i++) {
        const struct mount *m = &srv->mounts[i];
        bool covers = m->len == 1 || (len >= m->len && memcmp(path, m->path, m->len) == 0 &&
                                      (len == m->len || path[m->len] == '/'));
        if (covers && (!best || m->len > best->len)) best = m;
    }
    return best;
}

/* New connections get the new certificates; connections (and handshakes) on the old ones keep
 * theirs, which the context's reference count keeps alive. A certificate that does not load
 * leaves the old one in use. */
void srv_reload_certificates(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++) {
        struct listener *l = &srv->listeners[i];
        if (!l->tls) continue;
        char err[1024];
        struct tls_context *t = tls_context_new(l->cfg->tls, l->cfg->ntls, err, sizeof err);
        if (!t) {
            log_error("listener %s: %s; keeping the certificates it had", l->name, err);
            continue;
        }
        tls_context_unref(l->tls);
        l->tls = t;
        log_info("listener %s: certificates reloaded", l->name);
    }
}

/* ---- what connections ask of the server ----------------------------------------------------- */

/* Who serves this request: refuses while draining, checks the origin of an upgrade, then finds
 * the mount. */
/* Admin listener: one handler for every path; an upgrade must come from a page of its own
 * host (the dashboard), never from another site's page in an operator's browser. */
static const struct origin_policy same_host_only = { NULL, 0, false, false };

static int route_admin(struct server *srv, const struct hs_upgrade *up, bool upgrade,
                       struct conn_route *r)
{
    if (upgrade && !origin_allowed(&same_host_only, up->origin, up->origin_len, up->host,
                                   up->host_len)) {
        r->why = "the admin WebSocket only accepts pages of its own host";
        r->reason = CTR_REFUSED_ORIGIN;
        return 403;
    }
    r->handler = srv->admin_mount.handler;
    r->ctx = srv->admin_mount.ctx;
    return 0;
}

static int route(void *ctx, struct conn *c, const struct hs_upgrade *up, bool upgrade,
                 struct conn_route *r)
{
    struct server *srv = ctx;
    if (c->host_tag == TAG_ADMIN) return route_admin(srv, up, upgrade, r);
    if (upgrade && srv->draining) {
        r->why = "the server is shutting down; try again later";
        r->reason = CTR_REFUSED_DRAINING;
        return 503;
    }
    if (upgrade && !origin_allowed(&srv->origins, up->origin, up->origin_len, up->host,
                                   up->host_len)) {
        if (up->origin)
            snprintf(r->text, sizeof r->text, "origin %.*s is not allowed to connect here",
                     (int)(up->origin_len < 300 ? up->origin_len : 300), up->origin);
        else
            snprintf(r->text, sizeof r->text, "an Origin field is required to connect here");
        r->why = r->text;
        r->reason = CTR_REFUSED_ORIGIN;
        return 403;
    }
    const struct mount *m = srv_route(srv, up->path, up->path_len);
    if (!m) {
        r->why = "no app is mounted at this path";
        r->reason = CTR_REFUSED_NOT_FOUND;
        return 404;
    }
    if (m->owner >= 0 && (unsigned)m->owner != srv->worker_id && srv->handoff &&
        !c->refuse_status && c->host_flag) {
        /* The app is pinned to another worker. A TLS session cannot move between threads
         * (the config loader refuses pinned apps with TLS listeners and several workers: this
         * is the backstop). */
        if (c->tr.tls) {
            r->why = "this app runs on one worker and cannot be reached over TLS here";
            r->reason = CTR_REFUSED_ERROR;
            return 503;
        }
        if (!srv->handoff->ready(srv->handoff_ctx, (unsigned)m->owner)) {
            r->why = "the worker serving this app is starting; try again in a second";
            r->reason = CTR_REFUSED_LIMIT;
            r->headers = "Retry-After: 1\r\n";
            return 503;
        }
        srv->handing_to = (unsigned)m->owner;
        return CONN_ROUTE_ELSEWHERE;
    }
    r->handler = m->handler;
    r->ctx = m->ctx;
    r->public_dir = m->public_dir;
    r->mount_len = m->len == 1 ? 0 : m->len;
    return 0;
}

static void release(struct server *srv, struct conn *c);

/* The drain is over (the last public connection is gone): alone, the loop ends; one worker of
 * several tells the process, which ends every loop once all are done. */
static void drained(struct server *srv)
{
    if (srv->drained) srv->drained(srv->drained_ctx);
    else ev_break(srv->loop, EVBREAK_ALL);
}

/* A connection is gone: give back what it counted against the limits; the drain is over when
 * it was the last. */
static void freed(void *ctx, struct conn *c)
{
    struct server *srv = ctx;
    if (c->host_tag == TAG_ADMIN) srv->admin_conns--;
    release(srv, c);
    if (srv->draining && srv_public_conns(srv) == 0) drained(srv);
}

/* Bounds what unfinished incoming messages pin: max_buffered_per_ip for the clients of one
 * address (so one address cannot take the whole budget), max_buffered for all. A connection
 * past a bound is closed (by the connection layer, with the code and reason returned here);
 * everyone else goes on. */
static int buffering(void *ctx, struct conn *c, size_t before, size_t after, const char **why)
{
    struct server *srv = ctx;
    struct ip_entry *ip = c->host_data;
    const struct cfg_limits *lim = &srv->cfg->limits;
    if (after > before) {
        size_t more = after - before;
        if (lim->max_buffered_per_ip && ip && ip->buffered + more > lim->max_buffered_per_ip) {
            *why = "your address has too much in unfinished messages (max_buffered_per_ip)";
            return 1009;
        }
        if (lim->max_buffered && srv->buffered + more > lim->max_buffered) {
            *why = "the server holds too much in unfinished messages; try again later";
            return 1013;
        }
    }
    srv->buffered = srv->buffered - before + after;
    if (ip) ip->buffered = ip->buffered - before + after;
    return 0;
}

/* The connection goes to the worker that owns its app. It keeps its place in the process's
 * limits (the receiver releases it when it ends); this worker's own count of it ends here. */
static int hand_over(void *ctx, struct conn *c, const uint8_t *bytes, size_t len,
                     const char **why)
{
    struct server *srv = ctx;
    unsigned owner = srv->handing_to;
    struct srv_handoff *h = malloc(sizeof *h + len);
    if (!h) {
        *why = "the server is out of memory";
        return 503;
    }
    if (srv->handoff->reserve(srv->handoff_ctx, owner) < 0) {
        free(h);
        *why = "the worker serving this app has too many connections waiting; try again later";
        return 503;
    }
    struct ip_entry *ip = c->host_data;
    if (ip) {
        ip->conns--;
        srv->counted--;
        c->host_data = NULL; /* freed: nothing to give back here */
    }
    h->peer = c->peer;
    h->len = len;
    memcpy(h->bytes, bytes, len);
    h->fd = conn_give_away(c);
    /* libev's epoll backend forgets a socket whose watcher stopped only lazily, at its next
     * event (it may still call epoll_ctl on it then): once another thread owns the socket and
     * may close it, this loop must not touch it again. Removed from this loop's epoll set now,
     * this loop hears nothing more of it (libev re-adds a socket that reuses the number). */
    if (srv->epoll_fd >= 0 && h->fd >= 0) epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, h->fd, NULL);
    srv->handoff->send(srv->handoff_ctx, owner, h);
    return 0;
}

static const struct conn_host conn_host_ops = { route, freed, buffering, hand_over };

/* ---- admission ----------------------------------------------------------------------------- */

/* Connections over a limit are still accepted, read and answered with a status (429 or 503,
 * with Retry-After), because a client told why can back off, where one whose connection is
 * reset retries at once. Telling them why must not itself be a way in, though: an address gets
 * at most REFUSALS_PER_ADDRESS connections waiting for that answer (each with a short
 * deadline), and past max_connections + REFUSAL_SLACK the server closes new connections at
 * once. */
#define REFUSAL_SLACK 1024
#define REFUSALS_PER_ADDRESS 16

enum verdict { ADMIT, REFUSE, DROP };

struct admission {
    enum verdict verdict;
    int status;
    enum ctr_refusal reason;
    const char *why;
    struct ip_entry *ip;
};

/* Decides what to do with a new connection from peer, before any memory is spent on it. */
static struct admission admit(struct server *srv, const union conn_addr *peer)
{
    const struct cfg_limits *lim = &srv->cfg->limits;
    struct admission a = { ADMIT, 0, CTR_REFUSED_LIMIT, NULL, NULL };
    if (lim->max_connections && conn_count(&srv->conns) >= lim->max_connections + REFUSAL_SLACK) {
        a.verdict = DROP;
        a.status = 503;
        return a;
    }
    double now = ev_now(srv->loop);
    double rate = lim->connects_per_second;
    double burst = rate > 1 ? rate : 1;
    struct ip_key key = ip_key_of(&peer->sa);
    a.ip = ip_table_get(&srv->ips, &key, true, burst, now);
    a.status = 429;
    if (!a.ip) {
        a.verdict = DROP;
        a.status = 503;
        return a;
    }
    if (srv->limits) {
        /* One of several workers: the limits count every worker's connections. */
        switch (limits_admit(srv->limits, &key, now)) {
        case LIMITS_OK: break;
        case LIMITS_PER_IP:
            a.why = "too many connections from your address; close some first";
            break;
        case LIMITS_RATE:
            a.why = "too many new connections from your address; slow down";
            a.reason = CTR_REFUSED_RATE;
            break;
        case LIMITS_FULL:
            a.status = 503;
            a.why = "the server is full; try again later";
            break;
        case LIMITS_NOMEM:
            a.verdict = DROP;
            a.status = 503;
            return a;
        }
    }
    else if (lim->per_ip && a.ip->conns >= lim->per_ip)
        a.why = "too many connections from your address; close some first";
    else if (rate > 0 && !bucket_take(&a.ip->connects, rate, burst, 1, now)) {
        a.why = "too many new connections from your address; slow down";
        a.reason = CTR_REFUSED_RATE;
    }
    else if (lim->max_connections && srv->counted >= lim->max_connections) {
        a.status = 503;
        a.why = "the server is full; try again later";
    }
    if (!a.why) return a;
    a.verdict = a.ip->refusing >= REFUSALS_PER_ADDRESS ? DROP : REFUSE;
    return a;
}

/* A connection's admission record: the address entry it counts against (conn->host_data),
 * either as one of its connections (host_flag) or as one being refused. */
static void release(struct server *srv, struct conn *c)
{
    struct ip_entry *ip = c->host_data;
    if (!ip) return;
    if (c->host_flag) {
        ip->conns--;
        srv->counted--;
        if (srv->limits) limits_release(srv->limits, &ip->key);
    } else {
        ip->refusing--;
    }
    c->host_data = NULL;
}

/* Counts a refusal: for the metrics, and for the once-a-second summary line. */
static void count_refusal(struct server *srv, const struct admission *a)
{
    srv->counters->refused[a->reason]++;
    srv->refused[a->status == 503]++;
}

static void on_housekeeping(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct server *srv = container_of(w, struct server, housekeeping);
    if (srv->refused[0] || srv->refused[1])
        log_warn("refused %llu connection%s with 429 (per-address limits) and %llu with 503 "
                 "(server full) in the last second",
                 (unsigned long long)srv->refused[0], srv->refused[0] == 1 ? "" : "s",
                 (unsigned long long)srv->refused[1]);
    srv->refused[0] = srv->refused[1] = 0;
    double rate = srv->cfg->limits.connects_per_second;
    ip_table_expire(&srv->ips, rate, rate > 1 ? rate : 1, ev_now(loop));
    if (srv->limits) limits_expire(srv->limits, ev_now(loop));
}

/* ---- accepting ----------------------------------------------------------------------------- */

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct listener *l = container_of(w, struct listener, io);
    struct server *srv = l->srv;
    /* Bounded, so a flood of connections cannot starve the ones already open. */
    for (int i = 0; i < 256; i++) {
        union conn_addr peer;
        socklen_t len = sizeof peer;
        int fd = accept4(l->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* The pending connection stays in the backlog and the listener stays readable:
                 * pause instead of spinning. */
                log_warn("cannot accept on %s: out of file descriptors (%s); raise the limit "
                         "with ulimit -n; pausing accepts for 100 ms", l->name, strerror(errno));
                for (size_t k = 0; k < srv->nlisteners; k++)
                    ev_io_stop(loop, &srv->listeners[k].io);
                if (srv->has_admin) ev_io_stop(loop, &srv->admin.io);
                ev_timer_set(&srv->accept_pause, 0.1, 0.);
                ev_timer_start(loop, &srv->accept_pause);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("accept on %s failed: %s", l->name, strerror(errno));
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (l != &srv->admin) {
            srv_adopt(srv, fd, &peer, l->tls);
        } else if (srv->admin_conns >= ADMIN_MAX_CONNS) {
            close(fd);
        } else {
            struct conn *c = conn_new(&srv->conns, fd, &peer, NULL);
            if (!c) continue;
            c->host_tag = TAG_ADMIN;
            srv->admin_conns++;
        }
    }
}

struct conn *srv_adopt(struct server *srv, int fd, const union conn_addr *peer,
                       struct tls_context *tls)
{
    srv->counters->accepted++;
    struct admission a = admit(srv, peer);
    if (a.verdict == DROP) {
        count_refusal(srv, &a);
        close(fd);
        return NULL;
    }
    struct conn *c = conn_new(&srv->conns, fd, peer, tls);
    if (!c) {
        log_warn("out of memory: dropped a new connection");
        if (a.verdict == ADMIT && srv->limits) limits_release(srv->limits, &a.ip->key);
        return NULL;
    }
    c->host_data = a.ip;
    if (a.verdict == REFUSE) {
        count_refusal(srv, &a);
        a.ip->refusing++;
        conn_refuse(c, a.status, a.why);
    } else {
        c->host_flag = true;
        a.ip->conns++;
        srv->counted++;
    }
    return c;
}

void srv_take(struct server *srv, struct srv_handoff *h)
{
    struct ip_key key = ip_key_of(&h->peer.sa);
    double rate = srv->cfg->limits.connects_per_second;
    struct ip_entry *ip = ip_table_get(&srv->ips, &key, true, rate > 1 ? rate : 1,
                                       ev_now(srv->loop));
    struct conn *c = ip && h->fd >= 0 ? conn_new(&srv->conns, h->fd, &h->peer, NULL) : NULL;
    if (!c) {
        if (h->fd >= 0 && !ip) close(h->fd); /* conn_new closes it when it fails */
        log_warn("out of memory: dropped a connection handed over by another worker");
        if (srv->limits) limits_release(srv->limits, &key);
        free(h);
        return;
    }
    c->host_data = ip;
    c->host_flag = true;
    ip->conns++;
    srv->counted++;
    conn_read_head(c, h->bytes, h->len);
    free(h);
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct server *srv = container_of(w, struct server, accept_pause);
    if (srv->has_admin) ev_io_start(loop, &srv->admin.io);
    if (srv->draining) return;
    for (size_t k = 0; k < srv->nlisteners; k++) ev_io_start(loop, &srv->listeners[k].io);
}

/* A listening socket on host:port. Returns it, or -1 with a message in err. */
static int bind_listener(const char *host, int port_number, const char *flag, bool reuseport,
                         char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof port, "%d", port_number);
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port_number, gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        /* Every worker binds its own socket to the port; the kernel spreads new connections
         * over them. srv_reserve_ports checked that no other process serves the port. */
        if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (saved == EADDRINUSE)
            snprintf(err, errlen, "cannot listen on %s:%d: %s (another process uses this port; "
                     "pick another with %s)", host, port_number, strerror(saved), flag);
        else
            snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port_number,
                     strerror(saved));
        return -1;
    }
    return fd;
}

/* Starts accepting on l (bound to fd); names it "host:port" with the real port (with port 0
 * the kernel picked one, and scripts read it from the log). */
static void start_listener(struct server *srv, struct listener *l, int fd, const char *host)
{
    l->srv = srv;
    l->fd = fd;
    union conn_addr a;
    socklen_t alen = sizeof a;
    getsockname(fd, &a.sa, &alen);
    int real_port = ntohs(a.sa.sa_family == AF_INET6 ? a.in6.sin6_port : a.in4.sin_port);
    bool v6 = a.sa.sa_family == AF_INET6;
    snprintf(l->name, sizeof l->name, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
             real_port);
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    ev_io_start(srv->loop, &l->io);
}

static int open_listener(struct server *srv, const struct cfg_listen *cl, char *err, size_t errlen)
{
    struct tls_context *tls = NULL;
    if (cl->ntls && !(tls = tls_context_new(cl->tls, cl->ntls, err, errlen))) return -1;
    int fd = bind_listener(cl->host, cl->port, "--port", srv->reuseport, err, errlen);
    if (fd < 0) {
        tls_context_unref(tls);
        return -1;
    }
    struct listener *l = &srv->listeners[srv->nlisteners++];
    l->cfg = cl;
    l->tls = tls;
    start_listener(srv, l, fd, cl->host);
    /* Both addresses: WebSocket clients need the first, a browser the second (the apps'
     * pages, and app.http). Once for the process, not once per worker. */
    if (!srv->quiet_listen)
        log_info("listening on %s://%s/ (open %s://%s/ in a browser)", tls ? "wss" : "ws",
                 l->name, tls ? "https" : "http", l->name);
    return 0;
}

int srv_listen_admin(struct server *srv, const char *host, int port,
                     const struct conn_handler *handler, void *ctx, char *err, size_t errlen)
{
    int fd = bind_listener(host, port, "--admin", false, err, errlen);
    if (fd < 0) return -1;
    srv->admin_mount = (struct mount){ .path = "/", .len = 1, .handler = handler, .ctx = ctx };
    srv->admin.tls = NULL;
    srv->admin.cfg = NULL;
    start_listener(srv, &srv->admin, fd, host);
    srv->has_admin = true;
    log_info("admin listening on http://%s/", srv->admin.name);
    return 0;
}

int srv_reserve_ports(struct config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct cfg_listen *cl = &cfg->listen[i];
        int fd = bind_listener(cl->host, cl->port, "--port", false, err, errlen);
        if (fd < 0) return -1;
        if (cl->port == 0) {
            union conn_addr a;
            socklen_t alen = sizeof a;
            getsockname(fd, &a.sa, &alen);
            cl->port = ntohs(a.sa.sa_family == AF_INET6 ? a.in6.sin6_port : a.in4.sin_port);
        }
        close(fd);
    }
    return 0;
}

int srv_listen(struct server *srv, char *err, size_t errlen)
{
    for (size_t i = 0; i < srv->cfg->nlisten; i++)
        if (open_listener(srv, &srv->cfg->listen[i], err, errlen) < 0) return -1;
    return 0;
}

static void close_listeners(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++) {
        ev_io_stop(srv->loop, &srv->listeners[i].io);
        close(srv->listeners[i].fd);
        tls_context_unref(srv->listeners[i].tls);
    }
    srv->nlisteners = 0;
    ev_timer_stop(srv->loop, &srv->accept_pause);
}

static void close_admin_listener(struct server *srv)
{
    if (!srv->has_admin) return;
    ev_io_stop(srv->loop, &srv->admin.io);
    close(srv->admin.fd);
    srv->has_admin = false;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static void abort_all(struct server *srv)
{
    for (struct conn *c = conn_first(&srv->conns); c; c = conn_next(&srv->conns, c))
        if (c->state != CONN_DEAD) conn_abort(c);
}

/* Closing a listening socket resets the connections still in its accept queue (with
 * SO_REUSEPORT the kernel does not move them to the other workers' sockets). Accepting them
 * first gives each a proper answer: a 503 for an upgrade, since the server is draining. */
static void accept_queued(struct server *srv)
{
    for (size_t i = 0; i < srv->nlisteners; i++) {
        struct listener *l = &srv->listeners[i];
        for (int k = 0; k < 65536; k++) {
            union conn_addr peer;
            socklen_t len = sizeof peer;
            int fd = accept4(l->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                break;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            srv_adopt(srv, fd, &peer, l->tls);
        }
    }
}

void srv_drain(struct server *srv)
{
    size_t n = srv_public_conns(srv);
    if (srv->draining) {
        log_info("shutting down again: dropping %zu connection%s now", n, n == 1 ? "" : "s");
        abort_all(srv);
        return;
    }
    srv->draining = true;
    accept_queued(srv);
    close_listeners(srv);
    log_info("shutting down: closing %zu connection%s with 1001 (shutdown_timeout %gs)", n,
             n == 1 ? "" : "s", srv->cfg->limits.shutdown_timeout);
    if (n == 0) {
        drained(srv);
        return;
    }
    /* conn_close frees nothing (the sweep does), so the walk stays valid. The admin
     * listener's connections stay: probes say "draining" until the end. */
    for (struct conn *c = conn_first(&srv->conns); c; c = conn_next(&srv->conns, c))
        if (conn_is_open(c) && c->host_tag != TAG_ADMIN) {
            /* A moonwire.v1 client reads when to come back from the reason (browsers see no
             * Retry-After): spread over a window, so a restart brings no herd back. */
            if (c->envelope) conn_close(c, 1001, DRAIN_REASON_V1, sizeof DRAIN_REASON_V1 - 1);
            else conn_close(c, 1001, "going away", 10);
        }
    double t = srv->cfg->limits.shutdown_timeout;
    ev_timer_set(&srv->shutdown_timer, t > 0 ? t : 0.001, 0.);
    ev_timer_start(srv->loop, &srv->shutdown_timer);
}

static void on_shutdown_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct server *srv = container_of(w, struct server, shutdown_timer);
    size_t n = srv_public_conns(srv);
    if (n)
        log_warn("shutdown_timeout passed with %zu connection%s still open; dropping them", n,
                 n == 1 ? "" : "s");
    abort_all(srv);
}

void srv_destroy(struct server *srv)
{
    close_listeners(srv);
    close_admin_listener(srv);
    conn_loop_destroy(&srv->conns);
    ev_timer_stop(srv->loop, &srv->shutdown_timer);
    ev_timer_stop(srv->loop, &srv->housekeeping);
    ip_table_free(&srv->ips);
}
