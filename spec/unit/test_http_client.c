/* The outbound HTTP client (core/http_client.c) against servers this test runs on loopback, on
 * threads with plain blocking sockets (and OpenSSL for https), a thread per connection: what
 * each server does is a handler below. The client runs on a loop of its own in the test's
 * thread; every wait is bounded. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <ev.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http_client.h"
#include "outbound.h"

/* ---- the test server -------------------------------------------------------------------- */

struct sconn {
    int fd;
    SSL *ssl;
};

struct srv;
typedef void (*srv_handler)(struct srv *s, struct sconn *c, int index);

#define SRV_MAX_CONNS 16

struct srv {
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_bool stop;
    srv_handler handler;
    SSL_CTX *tls;
    bool until_close; /* big_handler: no Content-Length */
    atomic_int accepted, requests, peer_closed;
    atomic_long sent;
    pthread_mutex_t lock;    /* over last_request */
    char last_request[4096]; /* read after srv_stop */
    pthread_t conns[SRV_MAX_CONNS];
    int nconns;
};

/* One connection, on its own thread. */
struct srv_conn {
    struct srv *s;
    int fd, index;
};

static ssize_t s_read(struct sconn *c, char *b, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, b, (int)n);
        return r > 0 ? r : (SSL_get_error(c->ssl, r) == SSL_ERROR_ZERO_RETURN ? 0 : -1);
    }
    return recv(c->fd, b, n, 0);
}

static bool s_write(struct sconn *c, const char *b, size_t n)
{
    while (n) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, b, (int)n) : send(c->fd, b, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

static bool s_print(struct sconn *c, const char *text)
{
    return s_write(c, text, strlen(text));
}

/* Reads one request (head and Content-Length body) into buf; returns its length, 0 when the
 * peer closed (or the read timed out). */
static size_t read_request(struct srv *s, struct sconn *c, char *buf, size_t cap)
{
    size_t len = 0;
    for (;;) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        if (end) {
            size_t head = (size_t)(end + 4 - buf), body = 0;
            buf[len < cap ? len : cap - 1] = '\0';
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (cl && cl < end) body = strtoul(cl + 17, NULL, 10);
            if (len >= head + body) {
                size_t keep = head + body < sizeof s->last_request - 1 ? head + body
                                                                       : sizeof s->last_request - 1;
                pthread_mutex_lock(&s->lock);
                memcpy(s->last_request, buf, keep);
                s->last_request[keep] = '\0';
                pthread_mutex_unlock(&s->lock);
                s->requests++;
                return head + body;
            }
        }
        if (len == cap - 1) return 0;
        ssize_t n = s_read(c, buf + len, cap - 1 - len);
        if (n <= 0) {
            if (n == 0) s->peer_closed++;
            return 0;
        }
        len += (size_t)n;
    }
}

static void *srv_conn_main(void *arg)
{
    struct srv_conn *sc = arg;
    struct srv *s = sc->s;
    struct sconn c = { .fd = sc->fd };
    if (s->tls) {
        c.ssl = SSL_new(s->tls);
        SSL_set_fd(c.ssl, c.fd);
        if (SSL_accept(c.ssl) != 1) goto out;
    }
    s->handler(s, &c, sc->index);
out:
    if (c.ssl) SSL_free(c.ssl);
    close(c.fd);
    free(sc);
    return NULL;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    while (!s->stop) {
        struct pollfd p = { .fd = s->lfd, .events = POLLIN };
        if (poll(&p, 1, 20) <= 0) continue;
        int fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        struct timeval tv = { .tv_sec = 3 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        struct srv_conn *sc = malloc(sizeof *sc);
        cr_assert_not_null(sc);
        *sc = (struct srv_conn){ .s = s, .fd = fd, .index = s->accepted++ };
        cr_assert_lt(s->nconns, SRV_MAX_CONNS);
        cr_assert_eq(pthread_create(&s->conns[s->nconns++], NULL, srv_conn_main, sc), 0);
    }
    for (int i = 0; i < s->nconns; i++) pthread_join(s->conns[i], NULL);
    return NULL;
}

/* Starts a server on addr (an IPv4 or IPv6 loopback address) and port (0: the kernel's
 * choice), with a thread per connection. Returns false when it cannot bind there. */
static bool srv_start_on(struct srv *s, srv_handler h, SSL_CTX *tls, const char *addr,
                         uint16_t port)
{
    bool v6 = strchr(addr, ':') != NULL;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    s->handler = h;
    s->tls = tls;
    s->lfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->lfd, 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        cr_assert_eq(inet_pton(AF_INET6, addr, &a->sin6_addr), 1);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        cr_assert_eq(inet_pton(AF_INET, addr, &a->sin_addr), 1);
        len = sizeof *a;
    }
    if (bind(s->lfd, (struct sockaddr *)&ss, len) < 0) {
        close(s->lfd);
        return false;
    }
    cr_assert_eq(listen(s->lfd, 16), 0);
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&ss, &len), 0);
    s->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                       : ((struct sockaddr_in *)&ss)->sin_port);
    cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
    return true;
}

static void srv_start(struct srv *s, srv_handler h, SSL_CTX *tls)
{
    cr_assert(srv_start_on(s, h, tls, "127.0.0.1", 0));
}

static void srv_stop(struct srv *s)
{
    s->stop = true;
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* Waits, up to 3 s, until handlers have seen n connections closed by the client. */
static void srv_wait_closed(struct srv *s, int n)
{
    for (int i = 0; i < 300 && s->peer_closed < n; i++) usleep(10000);
}

/* ---- handlers --------------------------------------------------------------------------- */

/* 200 for every request on the connection; the body repeats the request line and body. */
static void echo_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192], resp[9000];
    size_t n;
    while ((n = read_request(s, c, req, sizeof req)) > 0) {
        char *eol = strstr(req, "\r\n");
        char *body = strstr(req, "\r\n\r\n") + 4;
        int blen = (int)(eol - req) + 1 + (int)(req + n - body);
        int h = snprintf(resp, sizeof resp,
                         "HTTP/1.1 200 OK\r\nX-Dup: a\r\nSet-Cookie: a=1\r\nX-DUP: b\r\n"
                         "Set-Cookie: b=2\r\nContent-Length: %d\r\n\r\n%.*s\n",
                         blen, (int)(eol - req), req);
        memcpy(resp + h, body, (size_t)(req + n - body)); /* the body may hold NULs */
        if (strncmp(req, "HEAD ", 5) == 0) /* the head only, with the length a GET would get */
            h = (int)(strstr(resp, "\r\n\r\n") + 4 - resp);
        else
            h += (int)(req + n - body);
        if (!s_write(c, resp, (size_t)h)) return;
    }
}

static void close_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192];
    if (read_request(s, c, req, sizeof req))
        s_print(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye");
}

static void chunked_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192];
    while (read_request(s, c, req, sizeof req))
        if (!s_print(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"))
            return;
}

/* Claims 1 GiB (or says nothing and sends until close), then sends 64 KiB pieces until the
 * client goes or 256 MiB are out. */
static void big_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192];
    if (!read_request(s, c, req, sizeof req)) return;
    if (!s_print(c, s->until_close ? "HTTP/1.1 200 OK\r\n\r\n"
                                   : "HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n"))
        return;
    static char piece[65536];
    memset(piece, 'x', sizeof piece);
    while (s->sent < 256L << 20 && !s->stop && s_write(c, piece, sizeof piece))
        s->sent += (long)sizeof piece;
}

/* Reads the request and never answers, until the client closes or the test ends. */
static void hang_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192];
    if (!read_request(s, c, req, sizeof req)) return;
    while (!s->stop) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        if (poll(&p, 1, 20) > 0) {
            char b[64];
            if (recv(c->fd, b, sizeof b, 0) <= 0) {
                s->peer_closed++;
                return;
            }
        }
    }
}

/* The first connection answers one request, then takes the second and closes without a word
 * (the race of a server closing an idle connection just as the client reuses it). */
static void stale_handler(struct srv *s, struct sconn *c, int index)
{
    char req[8192];
    if (index > 0) {
        echo_handler(s, c, index);
        return;
    }
    if (!read_request(s, c, req, sizeof req)) return;
    s_print(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
    read_request(s, c, req, sizeof req);
}

/* Answers one request with keep-alive, then closes the connection at once. */
static void idle_close_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192];
    if (read_request(s, c, req, sizeof req))
        s_print(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
}

/* ---- the client side -------------------------------------------------------------------- */

struct result {
    int calls; /* how many times done ran */
    int status;
    char reason[32];
    char detail[400];
    char body[8192];
    size_t body_len;
    char headers[1024]; /* "name=value\n" ... */
};

static void on_done(void *ud, const struct hc_response *res, const char *reason,
                    const char *detail)
{
    struct result *r = ud;
    r->calls++;
    if (!res) {
        cr_assert_not_null(reason);
        cr_assert_not_null(detail);
        snprintf(r->reason, sizeof r->reason, "%s", reason);
        snprintf(r->detail, sizeof r->detail, "%s", detail);
        return;
    }
    cr_assert_null(reason);
    r->status = res->status;
    r->body_len = res->body_len;
    cr_assert_eq(res->body[res->body_len], '\0');
    snprintf(r->body, sizeof r->body, "%s", res->body);
    r->headers[0] = '\0';
    for (size_t i = 0; i < res->nheaders; i++) {
        char one[256];
        snprintf(one, sizeof one, "%s=%s\n", res->headers[2 * i], res->headers[2 * i + 1]);
        strncat(r->headers, one, sizeof r->headers - strlen(r->headers) - 1);
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* Runs the loop until r's done has run or seconds pass. */
static void run_until(struct ev_loop *loop, const struct result *r, double seconds)
{
    ev_timer tick; /* keeps ev_run(EVRUN_ONCE) from sleeping past the deadline */
    ev_timer_init(&tick, on_tick, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    ev_now_update(loop);
    double end = ev_now(loop) + seconds;
    while (r->calls == 0 && ev_now(loop) < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
}

static void run_for(struct ev_loop *loop, double seconds)
{
    struct result never = { 0 };
    run_until(loop, &never, seconds);
}

static struct ev_loop *loop;

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    loop = ev_loop_new(EVFLAG_AUTO);
}

static void teardown(void)
{
    ev_loop_destroy(loop);
}

TestSuite(http_client, .init = setup, .fini = teardown);

static struct hc *client(const struct hc_config *cfg)
{
    struct hc_config def;
    hc_config_defaults(&def);
    char err[256] = "";
    struct hc *c = hc_new(loop, cfg ? cfg : &def, err, sizeof err);
    cr_assert_not_null(c, "hc_new: %s", err);
    return c;
}

/* One request, run to its end (5 s at most). */
static void fetch(struct hc *c, struct hc_request *req, struct result *r)
{
    memset(r, 0, sizeof *r);
    struct hc_call *call = hc_request(c, req, on_done, r);
    cr_assert_not_null(call);
    cr_assert_eq(r->calls, 0, "done ran inside hc_request");
    run_until(loop, r, 5.);
    cr_assert_eq(r->calls, 1, "done ran %d times for %s", r->calls, req->url);
}

static void get(struct hc *c, const char *url, struct result *r)
{
    struct hc_request req = { .url = url };
    fetch(c, &req, r);
}

static struct hc_stats stats(struct hc *c)
{
    struct hc_stats st;
    hc_get_stats(c, &st);
    return st;
}

/* ---- tests ------------------------------------------------------------------------------ */

Test(http_client, get_and_post_round_trip)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/path/x?q=1&r=2#frag", s.port);
    const char *headers[] = { "X-Test", "one", "Accept", "text/plain" };
    struct hc_request req = { .url = url, .headers = headers, .nheaders = 2 };
    struct result r;
    fetch(c, &req, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_str_eq(r.body, "GET /path/x?q=1&r=2 HTTP/1.1\n");
    cr_expect(strstr(r.headers, "x-dup=a, b\n") != NULL, "%s", r.headers);
    cr_expect(strstr(r.headers, "set-cookie=a=1\nset-cookie=b=2\n") != NULL, "%s", r.headers);

    req = (struct hc_request){ .method = "POST", .url = url, .body = "hello\0world",
                               .body_len = 11 };
    fetch(c, &req, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(r.body_len, strlen("POST /path/x?q=1&r=2 HTTP/1.1\n") + 11);
    cr_expect(memcmp(r.body + r.body_len - 11, "hello", 5) == 0);
    hc_free(c);
    srv_stop(&s);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%u\r\n", s.port);
    cr_expect(strstr(s.last_request, host) != NULL, "%s", s.last_request);
    cr_expect(strstr(s.last_request, "\r\nContent-Length: 11\r\n") != NULL);
    cr_expect(strstr(s.last_request, "\r\nUser-Agent: moonwire\r\n") != NULL);
}

Test(http_client, keep_alive_reuses_the_connection)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://localhost:%u/", s.port); /* localhost: /etc/hosts */
    struct result r;
    for (int i = 0; i < 3; i++) {
        get(c, url, &r);
        cr_expect_eq(r.status, 200, "request %d: %s %s", i, r.reason, r.detail);
        cr_expect_eq(stats(c).idle, 1u);
    }
    struct hc_stats st = stats(c);
    cr_expect_eq(st.requests, 3);
    cr_expect_eq(st.connections_opened, 1);
    cr_expect_eq(st.connections_reused, 2);
    cr_expect_eq(st.failures, 0);
    cr_expect_eq(st.in_flight, 0u);
    hc_free(c);
    srv_stop(&s);
    cr_expect_eq(s.accepted, 1);
    cr_expect_eq(s.requests, 3);
}

Test(http_client, connection_close_is_honoured)
{
    struct srv s;
    srv_start(&s, close_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "bye");
    cr_expect_eq(stats(c).idle, 0u);
    get(c, url, &r);
    cr_expect_eq(r.status, 200);
    cr_expect_eq(stats(c).connections_opened, 2);
    cr_expect_eq(stats(c).connections_reused, 0);
    hc_free(c);
    srv_stop(&s);
}

Test(http_client, chunked_response)
{
    struct srv s;
    srv_start(&s, chunked_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_str_eq(r.body, "hello, world");
    get(c, url, &r);
    cr_expect_str_eq(r.body, "hello, world");
    cr_expect_eq(stats(c).connections_reused, 1, "a chunked response leaves the connection usable");
    hc_free(c);
    srv_stop(&s);
}

static void too_large(bool until_close)
{
    struct srv s;
    srv_start(&s, big_handler, NULL);
    s.until_close = until_close;
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.max_response = 1 << 20;
    struct hc *c = client(&cfg);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/big", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "too_large", "%s", r.detail);
    cr_expect(strstr(r.detail, "max_response") != NULL, "%s", r.detail);
    cr_expect_eq(stats(c).idle, 0u, "the connection is closed");
    hc_free(c);
    srv_stop(&s);
    /* The client stopped reading at the cap: the server could only fill the socket buffers. */
    cr_expect_lt(s.sent, 64L << 20, "the server sent %ld bytes", (long)s.sent);
}

Test(http_client, too_large_by_content_length)
{
    too_large(false);
}

Test(http_client, too_large_until_close)
{
    too_large(true);
}

Test(http_client, timeout_against_a_server_that_never_answers)
{
    struct srv s;
    srv_start(&s, hang_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct hc_request req = { .url = url, .timeout = 1. };
    ev_now_update(loop);
    double t0 = ev_now(loop);
    struct result r = { 0 };
    cr_assert_not_null(hc_request(c, &req, on_done, &r));
    for (int i = 0; i < 100 && s.requests == 0; i++) run_for(loop, 0.01);
    cr_assert_eq(r.calls, 0, "ended before the server had the request: %s", r.detail);
    run_until(loop, &r, 5.);
    ev_now_update(loop);
    double took = ev_now(loop) - t0;
    cr_expect_str_eq(r.reason, "timeout");
    cr_expect(strstr(r.detail, "within 1 s (waiting for the answer)") != NULL, "%s", r.detail);
    cr_expect(took >= 0.95 && took < 3., "took %g s", took);
    cr_expect_eq(stats(c).failures, 1);
    hc_free(c);
    srv_wait_closed(&s, 1);
    srv_stop(&s);
    cr_expect_eq(s.peer_closed, 1, "the client closed the connection");
}

Test(http_client, refused_on_a_closed_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, len), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listening, now closed: nothing answers on that port */
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", ntohs(a.sin_port));
    struct result r;
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "refused");
    cr_expect(strstr(r.detail, "refused") != NULL, "%s", r.detail);
    hc_free(c);
}

Test(http_client, dns_failure)
{
    struct hc *c = client(NULL);
    struct result r;
    get(c, "http://nothing.invalid/", &r);
    cr_expect_str_eq(r.reason, "dns");
    cr_expect(strstr(r.detail, "nothing.invalid") != NULL, "%s", r.detail);
    hc_free(c);
}

Test(http_client, forbidden_by_policy)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL);
    char err[200];
    const char *const cidr[] = { "10.0.0.0/8" };
    struct outbound_policy *p = outbound_parse(cidr, 1, err, sizeof err);
    cr_assert_not_null(p);
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.policy = p;
    struct hc *c = client(&cfg);
    char url[128];
    struct result r;
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "forbidden");
    cr_expect(strstr(r.detail, "outbound = {") != NULL, "%s", r.detail);
    snprintf(url, sizeof url, "http://localhost:%u/", s.port); /* resolved, then refused */
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "forbidden", "%s", r.detail);
    hc_free(c);
    outbound_free(p);

    const char *const names[] = { "api.example.com", "127.0.0.0/8" };
    p = outbound_parse(names, 1, err, sizeof err);
    cfg.policy = p;
    c = client(&cfg);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "forbidden");
    cr_expect(strstr(r.detail, "localhost is not in the outbound list") != NULL, "%s", r.detail);
    hc_free(c);
    outbound_free(p);

    p = outbound_parse(names, 2, err, sizeof err); /* now 127/8 is listed */
    cfg.policy = p;
    c = client(&cfg);
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    hc_free(c);
    outbound_free(p);
    srv_stop(&s);
    cr_expect_eq(s.accepted, 1, "refused destinations were never connected to");
}

Test(http_client, link_local_refused)
{
    struct hc *c = client(NULL);
    static const char *const urls[] = {
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]:8080/",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        struct result r;
        get(c, urls[i], &r);
        cr_expect_str_eq(r.reason, "forbidden", "%s: %s", urls[i], r.detail);
        cr_expect(strstr(r.detail, "link-local") != NULL, "%s", r.detail);
    }
    cr_expect_eq(stats(c).connections_opened, 0);
    hc_free(c);
}

Test(http_client, invalid_requests_fail_from_the_loop)
{
    struct hc *c = client(NULL);
    const char *crlf[] = { "X-A", "1\r\nX-Injected: 2" };
    const char *badname[] = { "X A", "1" };
    const char *framing[] = { "Content-Length", "3" };
    const struct {
        struct hc_request req;
        const char *says;
    } cases[] = {
        { { .url = "ftp://example.com/" }, "http:// or https://" },
        { { .url = "http://" }, "no host" },
        { { .url = "http://exa mple.com/" }, "' '" },
        { { .url = "http://x:0/" }, "port" },
        { { .url = "http://x:65536/" }, "port" },
        { { .url = "http://[::1/" }, "']'" },
        { { .url = "http://user:pw@x/" }, "Authorization" },
        { { .url = "http://x/a b" }, "percent-encode" },
        { { .url = "http://x/", .method = "GE T" }, "token" },
        { { .url = "http://x/", .headers = crlf, .nheaders = 1 }, "CR or LF" },
        { { .url = "http://x/", .headers = badname, .nheaders = 1 }, "token" },
        { { .url = "http://x/", .headers = framing, .nheaders = 1 }, "leave it out" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct result r;
        struct hc_request req = cases[i].req;
        fetch(c, &req, &r);
        cr_expect_str_eq(r.reason, "invalid", "%s", req.url);
        cr_expect(strstr(r.detail, cases[i].says) != NULL, "%s: %s", req.url, r.detail);
    }
    hc_free(c);
}

Test(http_client, ipv6_literal)
{
    struct srv s;
    if (!srv_start_on(&s, echo_handler, NULL, "::1", 0)) cr_skip_test("no IPv6 loopback here");
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://[::1]:%u/six", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    hc_free(c);
    srv_stop(&s);
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: [::1]:%u\r\n", s.port);
    cr_expect(strstr(s.last_request, host) != NULL, "%s", s.last_request);
}

Test(http_client, stale_pooled_connection_is_retried)
{
    struct srv s;
    srv_start(&s, stale_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_str_eq(r.body, "first");
    get(c, url, &r); /* sent on the pooled connection, which the server closes unanswered */
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect(strncmp(r.body, "GET / HTTP/1.1", 14) == 0, "%s", r.body);
    struct hc_stats st = stats(c);
    cr_expect_eq(st.connections_reused, 1);
    cr_expect_eq(st.connections_opened, 2);
    cr_expect_eq(st.failures, 0);
    hc_free(c);
    srv_stop(&s);
    cr_expect_eq(s.requests, 3, "the request was sent twice");
}

Test(http_client, idle_connection_closed_by_the_server_is_dropped)
{
    struct srv s;
    srv_start(&s, idle_close_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_str_eq(r.body, "ok");
    for (int i = 0; i < 100 && stats(c).idle; i++) run_for(loop, 0.02);
    cr_expect_eq(stats(c).idle, 0u, "the pool noticed the close");
    get(c, url, &r);
    cr_expect_str_eq(r.body, "ok");
    cr_expect_eq(stats(c).connections_opened, 2);
    hc_free(c);
    srv_stop(&s);
}

Test(http_client, idle_timeout_closes_pooled_connections)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL);
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.idle_timeout = 0.1;
    struct hc *c = client(&cfg);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_eq(stats(c).idle, 1u);
    run_for(loop, 0.3);
    cr_expect_eq(stats(c).idle, 0u);
    srv_wait_closed(&s, 1);
    cr_expect_eq(s.peer_closed, 1);
    hc_free(c);
    srv_stop(&s);
}

Test(http_client, cancel)
{
    struct srv s;
    srv_start(&s, hang_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct hc_request req = { .url = url, .timeout = 1.5 };
    struct result r = { 0 };
    struct hc_call *call = hc_request(c, &req, on_done, &r);
    for (int i = 0; i < 100 && s.requests == 0; i++) run_for(loop, 0.01);
    cr_assert_eq(s.requests, 1, "%d %s %s", r.calls, r.reason, r.detail);
    cr_assert_eq(r.calls, 0, "the call is still waiting: %s %s", r.reason, r.detail);
    hc_cancel(call);
    cr_expect_eq(stats(c).in_flight, 0u);
    run_for(loop, 1.7); /* past the timeout it had */
    cr_expect_eq(r.calls, 0, "done ran after hc_cancel");
    srv_wait_closed(&s, 1);
    cr_expect_eq(s.peer_closed, 1, "the connection was closed");

    /* Cancelled while resolving, and right after hc_request. */
    call = hc_request(c, &(struct hc_request){ .url = "http://localhost:1/" }, on_done, &r);
    hc_cancel(call);
    call = hc_request(c, &(struct hc_request){ .url = "bad" }, on_done, &r);
    hc_cancel(call);
    run_for(loop, 0.1);
    cr_expect_eq(r.calls, 0);
    hc_free(c);
    srv_stop(&s);
}

Test(http_client, free_with_calls_in_flight)
{
    struct srv s;
    srv_start(&s, hang_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct result r = { 0 };
    hc_request(c, &(struct hc_request){ .url = url }, on_done, &r);
    for (int i = 0; i < 100 && s.requests == 0; i++) run_for(loop, 0.01);
    hc_request(c, &(struct hc_request){ .url = "http://localhost:1/" }, on_done, &r);
    hc_request(c, &(struct hc_request){ .url = "http://nothing.invalid/" }, on_done, &r);
    hc_request(c, &(struct hc_request){ .url = "bad" }, on_done, &r);
    cr_expect_eq(stats(c).in_flight, 4u);
    hc_free(c);
    run_for(loop, 0.1);
    cr_expect_eq(r.calls, 0, "no callback after hc_free");
    srv_wait_closed(&s, 1);
    srv_stop(&s);
    cr_expect_eq(s.peer_closed, 1);
}

/* ---- TLS -------------------------------------------------------------------------------- */

/* A self-signed certificate for san ("DNS:localhost,IP:127.0.0.1"), written as PEM to path,
 * and a server context that presents it. */
static SSL_CTX *make_tls(const char *san, char *path, size_t pathlen)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    cr_assert_not_null(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"moonwire test",
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    cr_assert_not_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    cr_assert(X509_sign(x, key, EVP_sha256()) > 0);

    snprintf(path, pathlen, "/tmp/moonwire-hc-ca-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    PEM_write_X509(f, x);
    fclose(f);

    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    cr_assert(SSL_CTX_use_certificate(ctx, x) == 1);
    cr_assert(SSL_CTX_use_PrivateKey(ctx, key) == 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}

Test(http_client, tls_with_a_trusted_certificate)
{
    char ca[64];
    SSL_CTX *tls = make_tls("DNS:localhost,IP:127.0.0.1", ca, sizeof ca);
    struct srv s;
    srv_start(&s, echo_handler, tls);
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.ca_file = ca;
    struct hc *c = client(&cfg);
    char url[128];
    struct result r;
    snprintf(url, sizeof url, "https://localhost:%u/secure", s.port);
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_str_eq(r.body, "GET /secure HTTP/1.1\n");
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_eq(stats(c).connections_reused, 1, "TLS connections are pooled too");
    snprintf(url, sizeof url, "https://127.0.0.1:%u/by-address", s.port);
    get(c, url, &r); /* the certificate names the address: verified as an IP */
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    hc_free(c);
    srv_stop(&s);
    SSL_CTX_free(tls);
    unlink(ca);
}

Test(http_client, tls_failures)
{
    char ca[64];
    SSL_CTX *tls = make_tls("DNS:wrong.example", ca, sizeof ca);
    struct srv s;
    srv_start(&s, echo_handler, tls);
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.ca_file = ca;
    struct hc *c = client(&cfg);
    char url[128];
    struct result r;
    snprintf(url, sizeof url, "https://localhost:%u/", s.port);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "tls");
    cr_expect(strstr(r.detail, "hostname mismatch") != NULL, "%s", r.detail);
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", s.port);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "tls");
    cr_expect(strstr(r.detail, "IP address mismatch") != NULL, "%s", r.detail);
    hc_free(c);

    c = client(NULL); /* without the CA file the certificate is a stranger */
    snprintf(url, sizeof url, "https://localhost:%u/", s.port);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "tls");
    cr_expect(strstr(r.detail, "self-signed") != NULL, "%s", r.detail);
    hc_free(c);
    srv_stop(&s);
    SSL_CTX_free(tls);
    unlink(ca);

    char err[256];
    struct hc_config bad;
    hc_config_defaults(&bad);
    bad.ca_file = "/nonexistent/ca.pem";
    cr_expect_null(hc_new(loop, &bad, err, sizeof err));
    cr_expect(strstr(err, "/nonexistent/ca.pem") != NULL, "%s", err);
}

/* done starts the next request itself (as a Lua handler resumed by it will): the connection
 * the first one left in the pool serves the second. */
struct chain {
    struct hc *c;
    const char *url;
    struct result first, second;
};

static void on_first(void *ud, const struct hc_response *res, const char *reason,
                     const char *detail)
{
    struct chain *ch = ud;
    on_done(&ch->first, res, reason, detail);
    cr_assert_eq(stats(ch->c).idle, 1u, "the connection is back in the pool before done");
    cr_assert_not_null(hc_request(ch->c, &(struct hc_request){ .url = ch->url, .method = "HEAD" },
                                  on_done, &ch->second));
}

Test(http_client, done_may_start_the_next_request)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL);
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", s.port);
    struct chain ch = { .c = c, .url = url };
    cr_assert_not_null(hc_request(c, &(struct hc_request){ .url = url }, on_first, &ch));
    run_until(loop, &ch.second, 5.);
    cr_expect_eq(ch.first.status, 200);
    cr_expect_eq(ch.second.status, 200, "%s %s", ch.second.reason, ch.second.detail);
    cr_expect_eq(ch.second.body_len, 0, "HEAD: no body, though the answer has a length");
    cr_expect(strstr(ch.second.headers, "content-length=") != NULL);
    cr_expect_eq(stats(c).connections_opened, 1);
    cr_expect_eq(stats(c).connections_reused, 1);
    hc_free(c);
    srv_stop(&s);
}

/* ---- several addresses (a hosts file of the test's own, through CARES_HOSTS) ------------- */

static char hosts_path[64];

static void use_hosts(const char *text)
{
    if (hosts_path[0]) unlink(hosts_path);
    snprintf(hosts_path, sizeof hosts_path, "/tmp/moonwire-hc-hosts-XXXXXX");
    int fd = mkstemp(hosts_path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("CARES_HOSTS", hosts_path, 1);
}

Test(http_client, each_address_is_tried_in_turn)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL); /* on 127.0.0.1 only: 127.0.0.3 and .4 refuse */
    use_hosts("127.0.0.3 multi.test\n127.0.0.4 multi.test\n127.0.0.1 multi.test\n");
    struct hc *c = client(NULL);
    char url[128];
    snprintf(url, sizeof url, "http://multi.test:%u/", s.port);
    struct result r;
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_eq(stats(c).connections_opened, 3, "two refused, the third answered");
    hc_free(c);

    use_hosts("127.0.0.3 multi.test\n127.0.0.4 multi.test\n");
    c = client(NULL);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "refused");
    cr_expect(strstr(r.detail, "127.0.0.4") != NULL, "names the last address: %s", r.detail);
    hc_free(c);
    srv_stop(&s);
    unlink(hosts_path);
}

Test(http_client, policy_judges_the_resolved_addresses)
{
    struct srv s;
    srv_start(&s, echo_handler, NULL);
    /* A name pointing at the metadata address (DNS rebinding does this) is refused at connect
     * time, though the name itself is allowed. */
    use_hosts("169.254.169.254 rebind.test\n127.0.0.3 two.test\n127.0.0.1 two.test\n");
    struct hc *c = client(NULL);
    char url[128];
    struct result r;
    snprintf(url, sizeof url, "http://rebind.test:%u/", s.port);
    get(c, url, &r);
    cr_expect_str_eq(r.reason, "forbidden");
    cr_expect(strstr(r.detail, "169.254.169.254 is a link-local address") != NULL, "%s",
              r.detail);
    cr_expect_eq(stats(c).connections_opened, 0);
    hc_free(c);

    /* Of two addresses, the one outside the listed block is skipped, not connected to. */
    char err[200];
    const char *const only[] = { "127.0.0.1/32" };
    struct outbound_policy *p = outbound_parse(only, 1, err, sizeof err);
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.policy = p;
    c = client(&cfg);
    snprintf(url, sizeof url, "http://two.test:%u/", s.port);
    get(c, url, &r);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_eq(stats(c).connections_opened, 1);
    hc_free(c);
    outbound_free(p);
    srv_stop(&s);
    unlink(hosts_path);
}

/* An address whose listen queue is full swallows connection attempts (the SYN is dropped, as
 * by a firewall): after attempt_timeout the next address gets its turn. */
Test(http_client, an_address_that_does_not_answer_is_left_for_the_next)
{
    int hole = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    cr_assert_eq(bind(hole, (struct sockaddr *)&a, len), 0);
    cr_assert_eq(listen(hole, 0), 0);
    cr_assert_eq(getsockname(hole, (struct sockaddr *)&a, &len), 0);
    int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* takes the only place */
    cr_assert_eq(connect(filler, (struct sockaddr *)&a, len), 0);

    struct srv s;
    if (!srv_start_on(&s, echo_handler, NULL, "127.0.0.2", ntohs(a.sin_port)))
        cr_skip_test("cannot listen on 127.0.0.2 here");
    use_hosts("127.0.0.1 slow.test\n127.0.0.2 slow.test\n");
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.attempt_timeout = 0.2;
    struct hc *c = client(&cfg);
    char url[128];
    snprintf(url, sizeof url, "http://slow.test:%u/", s.port);
    ev_now_update(loop);
    double t0 = ev_now(loop);
    struct result r;
    get(c, url, &r);
    ev_now_update(loop);
    cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
    cr_expect_geq(ev_now(loop) - t0, 0.18, "the first address had its 0.2 s");
    cr_expect_eq(stats(c).connections_opened, 2);

    /* With one address left, it gets the whole timeout, and the timeout is what fails. */
    use_hosts("127.0.0.1 slow.test\n");
    get(c, url, &r); /* pooled: the working address */
    cr_expect_eq(r.status, 200);
    hc_free(c);
    c = client(&cfg);
    struct hc_request req = { .url = url, .timeout = 0.5 };
    fetch(c, &req, &r);
    cr_expect_str_eq(r.reason, "timeout", "%s", r.detail);
    cr_expect(strstr(r.detail, "connecting") != NULL, "%s", r.detail);
    hc_free(c);
    srv_stop(&s);
    close(filler);
    close(hole);
    unlink(hosts_path);
}

/* 3 MiB in one response, for each request on the connection: many reads, many TLS records. */
static void large_handler(struct srv *s, struct sconn *c, int index)
{
    (void)index;
    char req[8192];
    static char body[3 << 20];
    memset(body, 'y', sizeof body);
    while (read_request(s, c, req, sizeof req)) {
        char head[100];
        snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", sizeof body);
        if (!s_print(c, head) || !s_write(c, body, sizeof body)) return;
    }
}

static void large_body(bool tls)
{
    char ca[64] = "";
    SSL_CTX *ctx = tls ? make_tls("DNS:localhost", ca, sizeof ca) : NULL;
    struct srv s;
    srv_start(&s, large_handler, ctx);
    struct hc_config cfg;
    hc_config_defaults(&cfg);
    cfg.ca_file = tls ? ca : NULL;
    struct hc *c = client(&cfg);
    char url[128];
    snprintf(url, sizeof url, "%s://localhost:%u/", tls ? "https" : "http", s.port);
    for (int i = 0; i < 2; i++) {
        struct result r;
        get(c, url, &r);
        cr_expect_eq(r.status, 200, "%s %s", r.reason, r.detail);
        cr_expect_eq(r.body_len, (size_t)3 << 20);
    }
    cr_expect_eq(stats(c).connections_opened, 1);
    hc_free(c);
    srv_stop(&s);
    if (ctx) {
        SSL_CTX_free(ctx);
        unlink(ca);
    }
}

Test(http_client, large_body)
{
    large_body(false);
}

Test(http_client, large_body_over_tls)
{
    large_body(true);
}
