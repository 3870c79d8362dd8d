/* The outbound HTTP/1.1 client (see http_client.h): calls, connections and the idle pool.
 *
 * A call owns its request bytes, its parser and at most one connection at a time; a connection
 * serves one call, or sits idle in the pool with a watcher that notices the server closing it
 * and a timer that closes it after idle_timeout. Every failure reaches the caller through
 * call_fail: inside hc_request (and DNS answers) it is deferred to the next loop turn, so done
 * never runs inside the caller's own call. Connections are only freed from this file's own
 * watcher callbacks or from the caller's calls, never while a callback up the stack still holds
 * them: done always runs last, after the call is off its connection. */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns.h"
#include "http_request.h"
#include "http_response.h"
#include "outbound.h"
#include "util.h"

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_ACTIVE, CONN_IDLE };

struct hc_conn {
    struct hc *c;
    int fd;
    SSL *ssl;           /* NULL for http:// */
    bool read_wants_write; /* SSL_read asked for writability */
    enum conn_state state;
    ev_io io;
    ev_timer timer; /* while connecting: the attempt's limit; while idle: idle_timeout */
    /* The pool key: scheme, host, port. */
    bool tls;
    char *host;
    uint16_t port;
    struct hc_call *call;          /* the call it serves; NULL when idle */
    struct hc_conn *prev, *next;   /* in the idle list */
};

struct hc_call {
    struct hc *c;
    hc_done done;
    void *ud;
    struct hreq out; /* the request: where to, and its bytes */
    size_t req_sent;
    enum outbound_name verdict;
    struct dns_query *dns;
    struct dns_result addrs;
    size_t next_addr;
    struct hc_conn *conn;
    bool reused, retried;
    bool defer, in_done;
    const char *phase;
    struct hr resp;
    ev_timer timeout;
    double timeout_s;
    ev_timer soon; /* runs a deferred failure */
    const char *fail_reason;
    char fail_detail[320];
    char connect_error[160];  /* the last address that failed, and why */
    char forbidden_why[256];  /* the last address the policy refused, and why */
    bool tried_connect;
    struct hc_call *prev, *next;
};

struct hc {
    struct ev_loop *loop;
    struct hc_config cfg;
    char *ca_file;
    SSL_CTX *ssl;
    struct dns *dns;
    struct hc_conn *idle; /* newest first */
    struct hc_call *calls;
    struct hc_stats stats;
};

static void conn_io(struct ev_loop *loop, ev_io *w, int revents);
static void call_connect_next(struct hc_call *call);
static void call_resolve(struct hc_call *call);
static void conn_drive(struct hc_conn *conn);

void hc_config_defaults(struct hc_config *cfg)
{
    *cfg = (struct hc_config){
        .max_response = 8u << 20,
        /* As many as an app may have in flight by default (outbound.max_in_flight): with
         * fewer, a burst of answers closes connections that the next requests, a moment later,
         * open again; 8 made 6 of 10 requests connect anew at 50 in flight (bench/outbound.sh). */
        .max_idle_per_host = 100,
        .idle_timeout = 30.,
        .timeout = 30.,
        .attempt_timeout = 1.,
    };
}

/* ---- connections ------------------------------------------------------------------------ */

static void conn_close(struct hc_conn *conn)
{
    struct hc *c = conn->c;
    if (conn->state == CONN_IDLE) {
        if (conn->prev) conn->prev->next = conn->next;
        else c->idle = conn->next;
        if (conn->next) conn->next->prev = conn->prev;
        c->stats.idle--;
    }
    if (conn->call) conn->call->conn = NULL;
    ev_io_stop(c->loop, &conn->io);
    ev_timer_stop(c->loop, &conn->timer);
    if (conn->ssl) SSL_free(conn->ssl); /* no close_notify: it could block or fail; TCP ends */
    close(conn->fd);
    free(conn->host);
    free(conn);
}

static void conn_want(struct hc_conn *conn, int events)
{
    if ((conn->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&conn->io)) return;
    ev_io_stop(conn->c->loop, &conn->io);
    ev_io_set(&conn->io, conn->fd, events);
    ev_io_start(conn->c->loop, &conn->io);
}

/* Reads into buf: > 0 bytes, 0 at the end of the stream, -1 with errno (EAGAIN: not now). */
static ssize_t conn_read(struct hc_conn *conn, char *buf, size_t len)
{
    if (!conn->ssl) {
        ssize_t n;
        do n = recv(conn->fd, buf, len, 0);
        while (n < 0 && errno == EINTR);
        return n;
    }
    ERR_clear_error();
    int n = SSL_read(conn->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0) return n;
    conn->read_wants_write = false;
    switch (SSL_get_error(conn->ssl, n)) {
    case SSL_ERROR_WANT_WRITE:
        conn->read_wants_write = true;
        /* fall through */
    case SSL_ERROR_WANT_READ:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0) errno = ECONNRESET;
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

static ssize_t conn_write(struct hc_conn *conn, const char *buf, size_t len)
{
    if (!conn->ssl) {
        ssize_t n;
        do n = send(conn->fd, buf, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
    }
    ERR_clear_error();
    int n = SSL_write(conn->ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0) return n;
    switch (SSL_get_error(conn->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (errno == 0) errno = ECONNRESET;
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

/* ---- ending a call ---------------------------------------------------------------------- */

static void call_unlink(struct hc_call *call)
{
    struct hc *c = call->c;
    if (call->prev) call->prev->next = call->next;
    else c->calls = call->next;
    if (call->next) call->next->prev = call->prev;
    c->stats.in_flight--;
}

/* Stops everything the call has going and frees it (done is not called here). */
static void call_free(struct hc_call *call)
{
    struct hc *c = call->c;
    ev_timer_stop(c->loop, &call->timeout);
    ev_timer_stop(c->loop, &call->soon);
    if (call->conn) conn_close(call->conn);
    if (call->dns) dns_cancel(call->dns);
    hr_free(&call->resp);
    hreq_free(&call->out);
    free(call);
}

static void call_finish(struct hc_call *call, const struct hc_response *res, const char *reason,
                        const char *detail)
{
    struct hc *c = call->c;
    ev_timer_stop(c->loop, &call->timeout);
    ev_timer_stop(c->loop, &call->soon);
    if (call->conn) conn_close(call->conn);
    if (call->dns) {
        dns_cancel(call->dns);
        call->dns = NULL;
    }
    call_unlink(call);
    if (reason) c->stats.failures++;
    call->in_done = true;
    call->done(call->ud, res, reason, detail);
    call_free(call);
}

static void call_fail(struct hc_call *call, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_fail(struct hc_call *call, const char *reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->fail_detail, sizeof call->fail_detail, fmt, ap);
    va_end(ap);
    call->fail_reason = reason;
    if (call->conn) conn_close(call->conn);
    if (call->defer) {
        ev_timer_stop(call->c->loop, &call->timeout);
        ev_timer_set(&call->soon, 0., 0.);
        ev_timer_start(call->c->loop, &call->soon);
        return;
    }
    call_finish(call, NULL, reason, call->fail_detail);
}

static void on_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hc_call *call = container_of(w, struct hc_call, soon);
    call_finish(call, NULL, call->fail_reason, call->fail_detail);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hc_call *call = container_of(w, struct hc_call, timeout);
    call_fail(call, "timeout", "no answer from %s port %u within %g s (%s)", call->out.host,
              (unsigned)call->out.port, call->timeout_s, call->phase);
}

/* The response is complete: the connection goes back to the pool if it can carry another
 * request, and the caller gets the response. */
static void call_succeed(struct hc_call *call, bool reusable)
{
    struct hc *c = call->c;
    struct hc_conn *conn = call->conn;
    call->conn = NULL;
    conn->call = NULL;
    reusable = reusable && call->resp.keep_alive && !call->out.close &&
               call->req_sent == call->out.len && c->cfg.idle_timeout > 0 &&
               !(conn->ssl && SSL_pending(conn->ssl));
    unsigned same = 0;
    for (struct hc_conn *i = c->idle; i && reusable; i = i->next)
        if (i->tls == conn->tls && i->port == conn->port && strcmp(i->host, conn->host) == 0)
            same++;
    if (reusable && same < c->cfg.max_idle_per_host) {
        conn->state = CONN_IDLE;
        conn->prev = NULL;
        conn->next = c->idle;
        if (c->idle) c->idle->prev = conn;
        c->idle = conn;
        c->stats.idle++;
        conn_want(conn, EV_READ);
        ev_timer_set(&conn->timer, c->cfg.idle_timeout, 0.);
        ev_timer_start(c->loop, &conn->timer);
    } else {
        conn_close(conn);
    }
    struct hr *p = &call->resp;
    struct hc_response res = {
        .status = p->status,
        .headers = (const char *const *)p->fields,
        .nheaders = p->nfields,
        .body = p->body,
        .body_len = p->body_len,
    };
    call_finish(call, &res, NULL, NULL);
}

/* The connection broke (reason, detail). A pooled connection that broke before any byte of the
 * answer most likely was closed by the server while idle: the request goes again, once, on a
 * fresh connection. */
static void call_broken(struct hc_call *call, const char *reason, const char *detail)
{
    if (call->reused && !call->retried && !hr_started(&call->resp)) {
        call->retried = true;
        call->reused = false;
        conn_close(call->conn);
        call_resolve(call);
        return;
    }
    call_fail(call, reason, "%s port %u: %s", call->out.host, (unsigned)call->out.port, detail);
}

/* ---- the request on a connection -------------------------------------------------------- */

/* Starts the call's request on conn: now, or (inside hc_request, where the response must not
 * complete) when the loop finds the socket writable. */
static void conn_begin_request(struct hc_conn *conn, bool now)
{
    struct hc_call *call = conn->call;
    conn->state = CONN_ACTIVE;
    call->req_sent = 0;
    hr_free(&call->resp);
    hr_init(&call->resp, call->out.head_request, call->c->cfg.max_response);
    call->phase = "sending the request";
    if (now) conn_drive(conn);
    else conn_want(conn, EV_READ | EV_WRITE);
}

static const char *hr_reason(int r)
{
    switch (r) {
    case HR_ERR_TOO_LARGE:
        return "too_large";
    case HR_ERR_NO_MEMORY:
        return "no_memory";
    case HR_ERR_INCOMPLETE:
        return "reset";
    default:
        return "protocol";
    }
}

/* Writes what is left of the request, then reads what the server sent (it may answer before
 * the request is all sent, with an error, and close). */
static void conn_drive(struct hc_conn *conn)
{
    struct hc_call *call = conn->call;
    char detail[160];
    while (call->req_sent < call->out.len) {
        ssize_t n =
            conn_write(conn, call->out.bytes + call->req_sent, call->out.len - call->req_sent);
        if (n > 0) {
            call->req_sent += (size_t)n;
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        snprintf(detail, sizeof detail, "sending the request failed: %s", strerror(errno));
        call_broken(call, "reset", detail);
        return;
    }
    if (call->req_sent == call->out.len) call->phase = "waiting for the answer";

    char buf[16384];
    for (int turns = 0; turns < 16; turns++) {
        ssize_t n = conn_read(conn, buf, sizeof buf);
        if (n > 0) {
            size_t used;
            int r = hr_feed(&call->resp, buf, (size_t)n, &used);
            if (r == HR_DONE) {
                call_succeed(call, used == (size_t)n);
                return;
            }
            if (r != HR_NEED_MORE) {
                call_fail(call, hr_reason(r), "%s port %u: %s", call->out.host,
                          (unsigned)call->out.port,
                          r == HR_ERR_TOO_LARGE ? "the response body is larger than max_response"
                                                : call->resp.error);
                return;
            }
            continue;
        }
        if (n == 0) {
            int r = hr_eof(&call->resp);
            if (r == HR_DONE) {
                call_succeed(call, false);
                return;
            }
            call_broken(call, "reset", call->resp.error);
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        snprintf(detail, sizeof detail, "reading the answer failed: %s",
                 errno == EPROTO ? "TLS error" : strerror(errno));
        call_broken(call, "reset", detail);
        return;
    }
    int events = EV_READ;
    if (call->req_sent < call->out.len || conn->read_wants_write) events |= EV_WRITE;
    conn_want(conn, events);
    /* After 16 reads the loop serves others; what TLS already holds, the socket will not
     * announce: come back next turn. */
    if (conn->ssl && SSL_has_pending(conn->ssl)) ev_feed_event(conn->c->loop, &conn->io, EV_READ);
}

/* ---- connecting ------------------------------------------------------------------------- */

static void tls_failed(struct hc_conn *conn, int ssl_err)
{
    struct hc_call *call = conn->call;
    long v = SSL_get_verify_result(conn->ssl);
    unsigned long e = ERR_peek_last_error();
    char why[200];
    if (v != X509_V_OK) {
        snprintf(why, sizeof why, "the certificate did not verify: %s",
                 X509_verify_cert_error_string(v));
    } else if (e) {
        char text[160];
        ERR_error_string_n(e, text, sizeof text);
        snprintf(why, sizeof why, "the handshake failed: %s", text);
    } else {
        bool sys = ssl_err == SSL_ERROR_SYSCALL && errno;
        snprintf(why, sizeof why, "the server closed the connection during the handshake%s%s",
                 sys ? ": " : "", sys ? strerror(errno) : "");
    }
    call_fail(call, "tls", "%s port %u: %s (a private CA can be trusted with outbound.ca in "
              "the config)", call->out.host, (unsigned)call->out.port, why);
}

static void conn_handshake(struct hc_conn *conn)
{
    ERR_clear_error();
    int r = SSL_connect(conn->ssl);
    if (r == 1) {
        conn_begin_request(conn, true);
        return;
    }
    int e = SSL_get_error(conn->ssl, r);
    if (e == SSL_ERROR_WANT_READ) conn_want(conn, EV_READ);
    else if (e == SSL_ERROR_WANT_WRITE) conn_want(conn, EV_WRITE);
    else tls_failed(conn, e);
}

static bool is_ip_literal(const char *host)
{
    unsigned char a[16];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static int conn_start_tls(struct hc_conn *conn)
{
    struct hc_call *call = conn->call;
    conn->ssl = SSL_new(conn->c->ssl);
    if (!conn->ssl || !SSL_set_fd(conn->ssl, conn->fd)) return -1;
    SSL_set_connect_state(conn->ssl);
    if (is_ip_literal(call->out.host)) {
        /* No SNI for an address (RFC 6066); the certificate must name the address. */
        if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), call->out.host)) return -1;
    } else {
        SSL_set_hostflags(conn->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (!SSL_set_tlsext_host_name(conn->ssl, call->out.host) ||
            !SSL_set1_host(conn->ssl, call->out.host))
            return -1;
    }
    conn->state = CONN_HANDSHAKE;
    call->phase = "in the TLS handshake";
    return 0;
}

static void describe(const struct sockaddr_storage *ss, char *out, size_t len)
{
    char a[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a, sizeof a);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a, sizeof a);
    snprintf(out, len, "%s", a);
}

static void conn_connected(struct hc_conn *conn)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == EINPROGRESS) return; /* spurious */
    struct hc_call *call = conn->call;
    ev_timer_stop(conn->c->loop, &conn->timer);
    if (err) {
        char addr[INET6_ADDRSTRLEN];
        describe(&call->addrs.addrs[call->next_addr - 1], addr, sizeof addr);
        snprintf(call->connect_error, sizeof call->connect_error, "%s: %s", addr,
                 strerror(err));
        conn_close(conn);
        call_connect_next(call);
        return;
    }
    if (!conn->tls) {
        conn_begin_request(conn, true);
        return;
    }
    if (conn_start_tls(conn) < 0) {
        call_fail(call, "no_memory", "%s: could not start TLS", call->out.host);
        return;
    }
    conn_handshake(conn);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hc_conn *conn = container_of(w, struct hc_conn, timer);
    if (conn->state != CONN_CONNECTING) {
        conn_close(conn); /* idle too long */
        return;
    }
    /* This address did not accept in time and another is left: try that one. */
    struct hc_call *call = conn->call;
    char addr[INET6_ADDRSTRLEN];
    describe(&call->addrs.addrs[call->next_addr - 1], addr, sizeof addr);
    snprintf(call->connect_error, sizeof call->connect_error, "%s: no answer within %g s", addr,
             conn->c->cfg.attempt_timeout);
    conn_close(conn);
    call_connect_next(call);
}

/* An idle connection became readable: the server closed it (or sent what it should not). A
 * TLS 1.3 server may still send a session ticket, which SSL_read takes without data. */
static void idle_readable(struct hc_conn *conn)
{
    if (conn->ssl) {
        char b[512];
        ERR_clear_error();
        int n = SSL_read(conn->ssl, b, sizeof b);
        if (n <= 0 && SSL_get_error(conn->ssl, n) == SSL_ERROR_WANT_READ) return;
    }
    conn_close(conn);
}

static void conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    struct hc_conn *conn = container_of(w, struct hc_conn, io);
    switch (conn->state) {
    case CONN_CONNECTING:
        conn_connected(conn);
        break;
    case CONN_HANDSHAKE:
        conn_handshake(conn);
        break;
    case CONN_ACTIVE:
        conn_drive(conn);
        break;
    case CONN_IDLE:
        idle_readable(conn);
        break;
    }
}

/* Tries the next resolved address the policy allows; fails the call when none is left. */
static void call_connect_next(struct hc_call *call)
{
    struct hc *c = call->c;
    call->phase = "connecting";
    while (call->next_addr < call->addrs.count) {
        const struct sockaddr_storage *ss = &call->addrs.addrs[call->next_addr++];
        char addr[INET6_ADDRSTRLEN];
        describe(ss, addr, sizeof addr);
        if (!outbound_check_address(c->cfg.policy, call->verdict, (const struct sockaddr *)ss,
                                    call->forbidden_why, sizeof call->forbidden_why))
            continue;
        call->tried_connect = true;
        int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(call->connect_error, sizeof call->connect_error, "%s: %s", addr,
                     strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        socklen_t len = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6);
        if (connect(fd, (const struct sockaddr *)ss, len) < 0 && errno != EINPROGRESS) {
            snprintf(call->connect_error, sizeof call->connect_error, "%s: %s", addr,
                     strerror(errno));
            close(fd);
            continue;
        }
        struct hc_conn *conn = calloc(1, sizeof *conn);
        char *host = strdup(call->out.host);
        if (!conn || !host) {
            free(conn);
            free(host);
            close(fd);
            call_fail(call, "no_memory", "out of memory connecting to %s", call->out.host);
            return;
        }
        *conn = (struct hc_conn){
            .c = c, .fd = fd, .state = CONN_CONNECTING, .tls = call->out.tls, .host = host,
            .port = call->out.port, .call = call,
        };
        ev_io_init(&conn->io, conn_io, fd, EV_WRITE);
        ev_timer_init(&conn->timer, on_timer, 0., 0.);
        ev_io_start(c->loop, &conn->io);
        if (call->next_addr < call->addrs.count && c->cfg.attempt_timeout > 0) {
            ev_timer_set(&conn->timer, c->cfg.attempt_timeout, 0.);
            ev_timer_start(c->loop, &conn->timer);
        }
        call->conn = conn;
        c->stats.connections_opened++;
        /* The connect error below is overwritten if this address works out. */
        snprintf(call->connect_error, sizeof call->connect_error, "%s: connecting", addr);
        return;
    }
    if (!call->tried_connect && call->forbidden_why[0]) {
        call_fail(call, "forbidden", "%s: %s", call->out.host, call->forbidden_why);
        return;
    }
    call_fail(call, "refused", "could not connect to %s port %u (%s)", call->out.host,
              (unsigned)call->out.port, call->connect_error);
}

static void on_resolved(void *ud, const struct dns_result *res, const char *detail)
{
    struct hc_call *call = ud;
    call->dns = NULL;
    if (!res) {
        call_fail(call, "dns", "%s", detail);
        return;
    }
    call->addrs = *res;
    call->next_addr = 0;
    call->tried_connect = false;
    call_connect_next(call);
}

static void call_resolve(struct hc_call *call)
{
    call->phase = "resolving the name";
    call->dns = dns_resolve(call->c->dns, call->out.host, call->out.port, on_resolved, call);
    if (!call->dns) call_fail(call, "no_memory", "out of memory resolving %s", call->out.host);
}

/* Takes an idle connection to the call's scheme, host and port that still looks alive. */
static struct hc_conn *pool_take(struct hc *c, const struct hc_call *call)
{
    struct hc_conn *conn = c->idle, *next;
    for (; conn; conn = next) {
        next = conn->next;
        if (conn->tls != call->out.tls || conn->port != call->out.port ||
            strcmp(conn->host, call->out.host) != 0)
            continue;
        /* The server may have closed it since the loop last looked. */
        char b;
        ssize_t n = recv(conn->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) ||
            (n > 0 && !conn->ssl)) {
            conn_close(conn);
            continue;
        }
        if (conn->prev) conn->prev->next = conn->next;
        else c->idle = conn->next;
        if (conn->next) conn->next->prev = conn->prev;
        conn->prev = conn->next = NULL;
        c->stats.idle--;
        ev_timer_stop(c->loop, &conn->timer);
        conn->state = CONN_ACTIVE;
        return conn;
    }
    return NULL;
}

/* ---- the client ------------------------------------------------------------------------- */

struct hc_call *hc_request(struct hc *c, const struct hc_request *req, hc_done done, void *ud)
{
    struct hc_call *call = calloc(1, sizeof *call);
    if (!call) return NULL;
    call->c = c;
    call->done = done;
    call->ud = ud;
    call->phase = "starting";
    hr_init(&call->resp, false, c->cfg.max_response);
    call->timeout_s = req->timeout > 0 ? req->timeout : c->cfg.timeout;
    ev_timer_init(&call->timeout, on_timeout, call->timeout_s, 0.);
    ev_timer_init(&call->soon, on_soon, 0., 0.);
    ev_timer_start(c->loop, &call->timeout);
    call->next = c->calls;
    if (call->next) call->next->prev = call;
    c->calls = call;
    c->stats.requests++;
    c->stats.in_flight++;

    /* Nothing below may call done: failures wait for the next loop turn. */
    call->defer = true;
    char err[200];
    if (hreq_build(&call->out, req->method, req->url, req->headers, req->nheaders, req->body,
                   req->body_len, err, sizeof err) < 0) {
        call_fail(call, "invalid", "%s (url %.120s)", err, req->url ? req->url : "");
    } else if ((call->verdict = outbound_check_name(c->cfg.policy, call->out.host)) ==
               OUTBOUND_NAME_REFUSED) {
        outbound_explain_name(call->out.host, call->forbidden_why, sizeof call->forbidden_why);
        call_fail(call, "forbidden", "%s", call->forbidden_why);
    } else {
        struct hc_conn *conn = pool_take(c, call);
        if (conn) {
            c->stats.connections_reused++;
            call->reused = true;
            call->conn = conn;
            conn->call = call;
            conn_begin_request(conn, false);
        } else {
            call_resolve(call);
        }
    }
    call->defer = false;
    return call;
}

void hc_cancel(struct hc_call *call)
{
    if (!call || call->in_done) return;
    call_unlink(call);
    call_free(call);
}

void hc_get_stats(const struct hc *c, struct hc_stats *out)
{
    *out = c->stats;
}

struct hc *hc_new(struct ev_loop *loop, const struct hc_config *cfg, char *err, size_t errlen)
{
    struct hc *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->cfg = *cfg;
    if (cfg->ca_file && !(c->ca_file = strdup(cfg->ca_file))) goto oom;
    c->cfg.ca_file = c->ca_file;

    c->ssl = SSL_CTX_new(TLS_client_method());
    if (!c->ssl) goto oom;
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    /* A server that ends TLS without close_notify ends the stream: bodies framed by length or
     * chunks still detect truncation; one read until close cannot, as with any client. */
    SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Pooled connections sit idle most of their lives: release their record buffers then. */
    SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(c->ssl, alpn, sizeof alpn - 1);
    if (!SSL_CTX_set_default_verify_paths(c->ssl)) {
        snprintf(err, errlen, "OpenSSL could not use the system's CA store");
        goto fail;
    }
    if (c->ca_file && !SSL_CTX_load_verify_locations(c->ssl, c->ca_file, NULL)) {
        char text[160];
        ERR_error_string_n(ERR_get_error(), text, sizeof text);
        snprintf(err, errlen, "could not read the CA file %s (PEM certificates): %s",
                 c->ca_file, text);
        goto fail;
    }
    ERR_clear_error();
    c->dns = dns_new(loop, 2., err, errlen);
    if (!c->dns) goto fail;
    return c;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    SSL_CTX_free(c->ssl);
    free(c->ca_file);
    free(c);
    return NULL;
}

void hc_free(struct hc *c)
{
    if (!c) return;
    while (c->calls) {
        struct hc_call *call = c->calls;
        call_unlink(call);
        call_free(call);
    }
    while (c->idle) conn_close(c->idle);
    dns_free(c->dns);
    SSL_CTX_free(c->ssl);
    free(c->ca_file);
    free(c);
}
