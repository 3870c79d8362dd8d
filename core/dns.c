/* Non-blocking name resolution on the loop (see dns.h): c-ares' sockets are watched by ev_io
 * watchers it asks for through its socket-state callback, its timeouts by one ev_timer re-armed
 * after every call into it. Each lookup is a dns_query the caller may forget at any time; the
 * query itself lives until c-ares has answered (or been destroyed), because c-ares cannot drop
 * one lookup alone. */
#include "dns.h"

#include <arpa/inet.h>
#include <ares.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

struct dns_io {
    ev_io w;
    struct dns *d;
};

struct dns_query {
    struct dns *d;
    dns_done done;    /* NULL once cancelled */
    void *ud;
    bool in_ares;     /* c-ares still holds it: its callback will free it */
    ev_timer deliver; /* hands a ready answer to done from the loop */
    struct dns_result res;
    char detail[400]; /* non-empty: the lookup failed */
    char host[256];   /* the name asked (cut short when longer: then only for messages) */
    uint16_t port;
    struct dns_query *prev, *next;
};

struct dns {
    struct ev_loop *loop;
    ares_channel channel;
    bool destroying;
    ev_timer timer;
    struct dns_io **ios; /* one per socket c-ares uses (a few) */
    size_t nios, capios;
    struct dns_query *queries; /* every live query */
};

/* ares_library_init is process-wide and, in this c-ares, not thread-safe: run it once. It is
 * never undone (ares_library_cleanup would break other loops' resolvers). */
static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status;

static void library_init(void)
{
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static void arm_timer(struct dns *d)
{
    struct timeval tv;
    struct timeval *t = ares_timeout(d->channel, NULL, &tv);
    ev_timer_stop(d->loop, &d->timer);
    if (t) {
        ev_timer_set(&d->timer, (double)t->tv_sec + (double)t->tv_usec / 1e6, 0.);
        ev_timer_start(d->loop, &d->timer);
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dns *d = container_of(w, struct dns, timer);
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(d);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct dns *d = container_of(w, struct dns_io, w)->d;
    int fd = w->fd;
    ares_process_fd(d->channel, (revents & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (revents & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    arm_timer(d);
}

/* c-ares opens, changes interest in, or closes one of its sockets. */
static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns *d = data;
    if (d->destroying) return;
    size_t i = 0;
    while (i < d->nios && d->ios[i]->w.fd != fd) i++;
    int events = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);
    if (i < d->nios) {
        ev_io_stop(d->loop, &d->ios[i]->w);
        if (!events) {
            free(d->ios[i]);
            d->ios[i] = d->ios[--d->nios];
            return;
        }
        ev_io_set(&d->ios[i]->w, fd, events);
        ev_io_start(d->loop, &d->ios[i]->w);
        return;
    }
    if (!events) return;
    if (d->nios == d->capios) {
        size_t cap = d->capios ? d->capios * 2 : 4;
        struct dns_io **ios = realloc(d->ios, cap * sizeof *ios);
        if (!ios) return; /* the lookup then times out in c-ares: its timer still runs */
        d->ios = ios;
        d->capios = cap;
    }
    struct dns_io *io = malloc(sizeof *io);
    if (!io) return;
    io->d = d;
    ev_io_init(&io->w, on_io, fd, events);
    ev_io_start(d->loop, &io->w);
    d->ios[d->nios++] = io;
}

struct dns *dns_new(struct ev_loop *loop, double timeout, char *err, size_t errlen)
{
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares did not start: %s", ares_strerror(library_status));
        return NULL;
    }
    struct dns *d = calloc(1, sizeof *d);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->loop = loop;
    ev_timer_init(&d->timer, on_timer, 0., 0.);
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = d;
    o.timeout = timeout > 0 ? (int)(timeout * 1000) : 2000;
    o.tries = 2;
    int st = ares_init_options(&d->channel, &o,
                               ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (st != ARES_SUCCESS) {
        snprintf(err, errlen, "c-ares did not start (reading /etc/resolv.conf): %s",
                 ares_strerror(st));
        free(d);
        return NULL;
    }
    return d;
}

static void unlink_query(struct dns_query *q)
{
    if (q->prev) q->prev->next = q->next;
    else q->d->queries = q->next;
    if (q->next) q->next->prev = q->prev;
    q->prev = q->next = NULL;
}

void dns_free(struct dns *d)
{
    if (!d) return;
    /* Queries c-ares no longer holds are ours to free; the others are freed by their callbacks,
     * which ares_destroy runs with ARES_EDESTRUCTION. */
    struct dns_query *q = d->queries, *next;
    for (; q; q = next) {
        next = q->next;
        q->done = NULL;
        if (!q->in_ares) {
            ev_timer_stop(d->loop, &q->deliver);
            unlink_query(q);
            free(q);
        }
    }
    d->destroying = true;
    ares_destroy(d->channel);
    for (size_t i = 0; i < d->nios; i++) {
        ev_io_stop(d->loop, &d->ios[i]->w);
        free(d->ios[i]);
    }
    free(d->ios);
    ev_timer_stop(d->loop, &d->timer);
    free(d);
}

static void on_deliver(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct dns_query *q = container_of(w, struct dns_query, deliver);
    dns_done done = q->done;
    void *ud = q->ud;
    unlink_query(q);
    /* Copied out so the query can go before done runs: done may free the resolver. */
    struct dns_result res;
    char detail[sizeof q->detail];
    bool failed = q->detail[0] != '\0';
    if (failed) memcpy(detail, q->detail, sizeof detail);
    else res = q->res;
    free(q);
    if (done) done(ud, failed ? NULL : &res, failed ? detail : NULL);
}

/* Schedules delivery on the next loop turn: done never runs inside dns_resolve or inside
 * c-ares' own processing, where a new lookup or dns_free would be unsafe. */
static void deliver_soon(struct dns_query *q)
{
    ev_timer_set(&q->deliver, 0., 0.);
    ev_timer_start(q->d->loop, &q->deliver);
}

static bool is_localhost(const char *host)
{
    size_t n = strlen(host);
    if (n && host[n - 1] == '.') n--;
    static const char name[] = "localhost";
    size_t t = sizeof name - 1;
    return n >= t && strncasecmp(host + n - t, name, t) == 0 && (n == t || host[n - t - 1] == '.');
}

/* RFC 6761: "localhost" and names below it are the loopback addresses. /etc/hosts says so on
 * most machines, and is asked first; this answers when it does not (some containers). */
static void loopback(struct dns_query *q, uint16_t port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)&q->res.addrs[0];
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&q->res.addrs[1];
    memset(q->res.addrs, 0, 2 * sizeof q->res.addrs[0]);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_addr = in6addr_loopback;
    q->res.count = 2;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    struct dns_query *q = arg;
    q->in_ares = false;
    if (!q->done || status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
        /* Forgotten, or the resolver is going: nobody waits for this answer. */
        ares_freeaddrinfo(ai);
        unlink_query(q);
        free(q);
        return;
    }
    if (status == ARES_SUCCESS && ai) {
        for (struct ares_addrinfo_node *n = ai->nodes; n && q->res.count < DNS_MAX_ADDRS;
             n = n->ai_next) {
            if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
                n->ai_addrlen > sizeof q->res.addrs[0])
                continue;
            memcpy(&q->res.addrs[q->res.count++], n->ai_addr, n->ai_addrlen);
        }
    }
    ares_freeaddrinfo(ai);
    if (q->res.count == 0 && is_localhost(q->host)) loopback(q, q->port);
    if (q->res.count == 0 && !q->detail[0]) {
        const char *why =
            status == ARES_SUCCESS ? "no IPv4 or IPv6 address" : ares_strerror(status);
        snprintf(q->detail, sizeof q->detail, "could not resolve %s: %s", q->host, why);
    }
    deliver_soon(q);
}

static bool under_invalid(const char *host)
{
    size_t n = strlen(host);
    if (n && host[n - 1] == '.') n--;
    static const char tld[] = "invalid";
    size_t t = sizeof tld - 1;
    return n >= t && strncasecmp(host + n - t, tld, t) == 0 && (n == t || host[n - t - 1] == '.');
}

static bool literal(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        return true;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return true;
    }
    return false;
}

struct dns_query *dns_resolve(struct dns *d, const char *host, uint16_t port, dns_done done,
                              void *ud)
{
    struct dns_query *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->d = d;
    q->done = done;
    q->ud = ud;
    snprintf(q->host, sizeof q->host, "%s", host);
    q->port = port;
    ev_timer_init(&q->deliver, on_deliver, 0., 0.);
    q->next = d->queries;
    if (q->next) q->next->prev = q;
    d->queries = q;

    if (literal(host, port, &q->res.addrs[0])) {
        q->res.count = 1;
        deliver_soon(q);
        return q;
    }
    if (under_invalid(host)) {
        snprintf(q->detail, sizeof q->detail,
                 "could not resolve %s: names under .invalid never resolve (RFC 6761)", q->host);
        deliver_soon(q);
        return q;
    }
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct ares_addrinfo_hints hints = {
        .ai_flags = ARES_AI_NUMERICSERV | ARES_AI_ENVHOSTS,
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
    };
    q->in_ares = true;
    /* The answer may come at once (from /etc/hosts): on_addrinfo only schedules delivery. */
    ares_getaddrinfo(d->channel, host, service, &hints, on_addrinfo, q);
    arm_timer(d);
    return q;
}

void dns_cancel(struct dns_query *q)
{
    if (!q) return;
    q->done = NULL;
    if (!q->in_ares) {
        ev_timer_stop(q->d->loop, &q->deliver);
        unlink_query(q);
        free(q);
    }
}
