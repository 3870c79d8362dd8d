/* Listeners, accepting, the connection table, the sweep, and signals. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "lua_bridge.h"
#include "tls.h"

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents);
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents);
static void on_shutdown_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents);
static void on_housekeeping(struct ev_loop *loop, ev_timer *w, int revents);

int srv_init(struct server *srv, struct ev_loop *loop, const struct config *cfg)
{
    memset(srv, 0, sizeof *srv);
    srv->loop = loop;
    srv->cfg = cfg;
    ev_prepare_init(&srv->before_block, on_prepare);
    ev_prepare_start(loop, &srv->before_block);
    ev_signal_init(&srv->sigterm, on_signal, SIGTERM);
    ev_signal_init(&srv->sigint, on_signal, SIGINT);
    ev_signal_init(&srv->sighup, on_signal, SIGHUP);
    ev_signal_start(loop, &srv->sigterm);
    ev_signal_start(loop, &srv->sigint);
    ev_signal_start(loop, &srv->sighup);
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
    /* A peer that resets while we write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

double srv_now(const struct server *srv) { return ev_now(srv->loop); }

/* ---- the connection table ------------------------------------------------------------------ */

int srv_attach(struct server *srv, struct conn *c)
{
    if (srv->nfree == 0) {
        uint32_t n = srv->nslots ? srv->nslots * 2 : 1024;
        struct conn **slots = realloc(srv->slots, n * sizeof *slots);
        if (!slots) return -1;
        srv->slots = slots;
        uint32_t *free_slots = realloc(srv->free_slots, n * sizeof *free_slots);
        if (!free_slots) return -1;
        srv->free_slots = free_slots;
        /* Push new slots so that the lowest comes out first. */
        for (uint32_t i = n; i > srv->nslots; i--) {
            srv->slots[i - 1] = NULL;
            srv->free_slots[srv->nfree++] = i - 1;
        }
        srv->nslots = n;
    }
    c->slot = srv->free_slots[--srv->nfree];
    c->id = ++srv->next_id;
    srv->slots[c->slot] = c;
    srv->nconns++;
    return 0;
}

void srv_detach(struct server *srv, struct conn *c)
{
    srv->slots[c->slot] = NULL;
    srv->free_slots[srv->nfree++] = c->slot;
    srv->nconns--;
}

struct conn *srv_find_conn(const struct server *srv, uint32_t slot, uint64_t id)
{
    if (slot >= srv->nslots) return NULL;
    struct conn *c = srv->slots[slot];
    return c && c->id == id ? c : NULL;
}

static struct conn *conn_from(const struct server *srv, uint32_t slot)
{
    for (; slot < srv->nslots; slot++)
        if (srv->slots[slot]) return srv->slots[slot];
    return NULL;
}

struct conn *srv_first_conn(const struct server *srv) { return conn_from(srv, 0); }

struct conn *srv_next_conn(const struct server *srv, const struct conn *c)
{
    return conn_from(srv, c->slot + 1);
}

int srv_mount(struct server *srv, const char *path, struct lb_app *app)
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
    m->app = app;
    return 0;
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
static void reload_certificates(struct server *srv)
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

void srv_reload(struct server *srv, struct lb_app *only)
{
    for (size_t i = 0; i < srv->nmounts; i++)
        if (!only || srv->mounts[i].app == only) lb_app_reload(srv->mounts[i].app);
    if (!only) reload_certificates(srv);
}

/* ---- the sweep ----------------------------------------------------------------------------- */

void srv_schedule(struct server *srv, struct conn *c)
{
    if (c->pending) return;
    c->pending = true;
    c->next_pending = NULL;
    if (srv->pending_tail) srv->pending_tail->next_pending = c;
    else srv->pending_head = c;
    srv->pending_tail = c;
}

void srv_mark_dirty(struct server *srv, struct conn *c)
{
    if (c->dirty) return;
    c->dirty = true;
    c->next_dirty = srv->dirty_head;
    srv->dirty_head = c;
}

static void flush_dirty(struct server *srv)
{
    struct conn *c;
    while ((c = srv->dirty_head)) {
        srv->dirty_head = c->next_dirty;
        c->dirty = false;
        conn_flush(c);
    }
}

/* Frees DEAD connections and runs app.close: the one place where that happens, outside every
 * connection callback. Work it causes (an app.close that closes or sends to another
 * connection) joins the lists and is handled in the same turn. */
static void sweep(struct server *srv)
{
    /* Work on a snapshot: what is scheduled meanwhile waits for the next round, after the next
     * flush, so a connection kept because it still had output to flush comes back. */
    struct conn *c = srv->pending_head;
    srv->pending_head = srv->pending_tail = NULL;
    while (c) {
        struct conn *next = c->next_pending;
        /* Still marked pending while swept, so it cannot be queued twice meanwhile. */
        if (!conn_sweep(c)) {
            c->pending = false;
            if (c->state == CONN_DEAD) srv_schedule(srv, c);
        }
        c = next;
    }
}

/* Runs just before the loop blocks: write out what this turn queued, then sweep. A connection
 * still waiting to be flushed is not freed (conn_sweep keeps it); the next round frees it. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    struct server *srv = container_of(w, struct server, before_block);
    while (srv->dirty_head || srv->pending_head) {
        flush_dirty(srv);
        sweep(srv);
    }
    if (srv->draining && srv->nconns == 0) ev_break(loop, EVBREAK_ALL);
}

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
    const char *why;
    struct ip_entry *ip;
};

/* Decides what to do with a new connection from peer, before any memory is spent on it. */
static struct admission admit(struct server *srv, const union conn_addr *peer)
{
    const struct cfg_limits *lim = &srv->cfg->limits;
    struct admission a = { ADMIT, 0, NULL, NULL };
    if (lim->max_connections && srv->nconns >= lim->max_connections + REFUSAL_SLACK) {
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
    if (lim->per_ip && a.ip->conns >= lim->per_ip)
        a.why = "too many connections from your address; close some first";
    else if (rate > 0 && !bucket_take(&a.ip->connects, rate, burst, 1, now))
        a.why = "too many new connections from your address; slow down";
    else if (lim->max_connections && srv->counted >= lim->max_connections) {
        a.status = 503;
        a.why = "the server is full; try again later";
    }
    if (!a.why) return a;
    a.verdict = a.ip->refusing >= REFUSALS_PER_ADDRESS ? DROP : REFUSE;
    return a;
}

void srv_release(struct server *srv, struct conn *c)
{
    if (!c->ip) return;
    if (c->counted) {
        c->ip->conns--;
        srv->counted--;
    } else {
        c->ip->refusing--;
    }
    c->ip = NULL;
}

void srv_count_refusal(struct server *srv, int status) { srv->refused[status == 503]++; }

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
                ev_timer_set(&srv->accept_pause, 0.1, 0.);
                ev_timer_start(loop, &srv->accept_pause);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_warn("accept on %s failed: %s", l->name, strerror(errno));
            }
            return;
        }
        struct admission a = admit(srv, &peer);
        if (a.verdict == DROP) {
            srv_count_refusal(srv, a.status);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = conn_new(srv, fd, &peer, l->tls);
        if (!c) {
            log_warn("out of memory: dropped a new connection");
            continue;
        }
        c->ip = a.ip;
        if (a.verdict == REFUSE) {
            a.ip->refusing++;
            conn_refuse(c, a.status, a.why);
        } else {
            c->counted = true;
            a.ip->conns++;
            srv->counted++;
        }
    }
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct server *srv = container_of(w, struct server, accept_pause);
    if (srv->draining) return;
    for (size_t k = 0; k < srv->nlisteners; k++) ev_io_start(loop, &srv->listeners[k].io);
}

static int open_listener(struct server *srv, const struct cfg_listen *cl, char *err, size_t errlen)
{
    struct tls_context *tls = NULL;
    if (cl->ntls && !(tls = tls_context_new(cl->tls, cl->ntls, err, errlen))) return -1;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    char port[16];
    snprintf(port, sizeof port, "%d", cl->port);
    int rc = getaddrinfo(cl->host, port, &hints, &res);
    if (rc != 0) {
        tls_context_unref(tls);
        snprintf(err, errlen, "cannot listen on %s:%d: %s", cl->host, cl->port, gai_strerror(rc));
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
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 4096) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        tls_context_unref(tls);
        snprintf(err, errlen, "cannot listen on %s:%d: %s%s", cl->host, cl->port,
                 strerror(saved),
                 saved == EADDRINUSE ? " (another process uses this port; pick another with "
                                       "--port)"
                                     : "");
        return -1;
    }

    struct listener *l = &srv->listeners[srv->nlisteners++];
    l->srv = srv;
    l->cfg = cl;
    l->fd = fd;
    l->tls = tls;
    /* Report the real port: with port 0 the kernel picked one, and scripts read it from here. */
    union conn_addr a;
    socklen_t alen = sizeof a;
    getsockname(fd, &a.sa, &alen);
    int real_port = ntohs(a.sa.sa_family == AF_INET6 ? a.in6.sin6_port : a.in4.sin_port);
    bool v6 = a.sa.sa_family == AF_INET6;
    snprintf(l->name, sizeof l->name, "%s%s%s:%d", v6 ? "[" : "", cl->host, v6 ? "]" : "",
             real_port);
    ev_io_init(&l->io, on_accept, fd, EV_READ);
    ev_io_start(srv->loop, &l->io);
    log_info("listening on %s://%s/", tls ? "wss" : "ws", l->name);
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

/* ---- lifecycle ----------------------------------------------------------------------------- */

void srv_drain(struct server *srv)
{
    if (srv->draining) return;
    srv->draining = true;
    close_listeners(srv);
    log_info("shutting down: closing %zu connection%s with 1001 (shutdown_timeout %gs)",
             srv->nconns, srv->nconns == 1 ? "" : "s", srv->cfg->limits.shutdown_timeout);
    for (uint32_t i = 0; i < srv->nslots; i++) {
        struct conn *c = srv->slots[i];
        if (c && c->state == CONN_OPEN) conn_close(c, 1001, "going away", 10);
    }
    double t = srv->cfg->limits.shutdown_timeout;
    ev_timer_set(&srv->shutdown_timer, t > 0 ? t : 0.001, 0.);
    ev_timer_start(srv->loop, &srv->shutdown_timer);
}

static void abort_all(struct server *srv)
{
    for (uint32_t i = 0; i < srv->nslots; i++) {
        struct conn *c = srv->slots[i];
        if (c && c->state != CONN_DEAD) conn_abort(c);
    }
}

static void on_shutdown_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct server *srv = container_of(w, struct server, shutdown_timer);
    if (srv->nconns)
        log_warn("shutdown_timeout passed with %zu connection%s still open; dropping them",
                 srv->nconns, srv->nconns == 1 ? "" : "s");
    abort_all(srv);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    if (w->signum == SIGHUP) {
        struct server *srv = container_of(w, struct server, sighup);
        log_info("SIGHUP: reloading %zu app%s; connections stay open", srv->nmounts,
                 srv->nmounts == 1 ? "" : "s");
        srv_reload(srv, NULL);
        return;
    }
    struct server *srv = container_of(w, struct server, sigterm);
    if (w->signum == SIGINT) srv = container_of(w, struct server, sigint);
    if (srv->draining) {
        log_info("second %s: dropping every connection now", strsignal(w->signum));
        abort_all(srv);
        return;
    }
    srv_drain(srv);
}

void srv_run(struct server *srv) { ev_run(srv->loop, 0); }

void srv_destroy(struct server *srv)
{
    close_listeners(srv);
    abort_all(srv);
    /* One last turn frees what abort_all left, app.close included. */
    on_prepare(srv->loop, &srv->before_block, 0);
    ev_prepare_stop(srv->loop, &srv->before_block);
    ev_signal_stop(srv->loop, &srv->sigterm);
    ev_signal_stop(srv->loop, &srv->sigint);
    ev_signal_stop(srv->loop, &srv->sighup);
    ev_timer_stop(srv->loop, &srv->shutdown_timer);
    ev_timer_stop(srv->loop, &srv->housekeeping);
    free(srv->slots);
    free(srv->free_slots);
    srv->slots = NULL;
    srv->free_slots = NULL;
    ip_table_free(&srv->ips);
}
