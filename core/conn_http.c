/* The HTTP side of a connection: reading the request head, the upgrade to WebSocket, and the
 * answers that end a connection instead: errors, refusals (connection limits) and static files
 * from the app's public/ folder, streamed a piece at a time. conn.c owns the rest of the
 * connection's life. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "conn_internal.h"
#include "handshake.h"
#include "http.h"
#include "log.h"
#include "pmd.h"
#include "builtin_files.h"
#include "static_files.h"
#include "util.h"
#include "ws_close.h"

/* A static file on its way out: conn_flush reads the next piece whenever the queue empties, so
 * a large file never sits in memory. */
struct sf_stream {
    int fd;
    off_t off;
    off_t end;
};

#define FILE_CHUNK (64 * 1024)

void conn_end_file(struct conn *c)
{
    if (!c->file) return;
    c->cl->files--;
    close(c->file->fd);
    free(c->file);
    c->file = NULL;
}


/* Seconds since the connection was accepted, to the millisecond. */
static double elapsed(const struct conn *c)
{
    return (double)(int64_t)((ev_now(c->cl->loop) - c->started) * 1000) / 1000;
}

/* Clears a route, but not its text buffer: 400 bytes zeroed for every request add up. */
static void route_init(struct conn_route *r)
{
    r->handler = NULL;
    r->ctx = NULL;
    r->public_dir = NULL;
    r->mount_len = 0;
    r->why = "";
    r->reason = CTR_REFUSED_ERROR;
    r->headers = NULL;
    r->text[0] = '\0';
}

/* ---- HTTP answers -------------------------------------------------------------------------- */

/* Answers the request with a status and a one-line explanation, then lingers. */
static void respond(struct conn *c, int status, const char *why, const char *headers)
{
    char buf[2048];
    /* headers may carry their own Connection field (426 says "Upgrade, close"): one field. */
    bool own = headers && strstr(headers, "Connection:");
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "%s"
                     "\r\n"
                     "%s\n",
                     status, http_status_text(status), strlen(why) + 1,
                     own ? "" : "Connection: close\r\n", headers ? headers : "", why);
    if (n < 0 || (size_t)n >= sizeof buf) n = snprintf(buf, sizeof buf,
        "HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status,
        http_status_text(status));
    c->state = CONN_LINGER;
    conn_write(c, buf, (size_t)n);
    if (c->state != CONN_DEAD) conn_linger(c);
}

static bool is_head(const struct http_request *req)
{
    return req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
}

/* True when lines ("Name: value\r\n"...) has a field called name. */
static bool has_field(const char *lines, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = lines; p && *p; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') return true;
    return false;
}

/* Answers with a handler's response, then lingers, or with keep stays in HANDSHAKE for the
 * next request. HEAD gets the headers alone, with the Content-Length the body would have had. */
static void respond_with(struct conn *c, struct conn_response *r, bool head_only, bool keep)
{
    char head[2048];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "X-Content-Type-Options: nosniff\r\n"
                     "%s"
                     "%s\r\n",
                     r->status, http_status_text(r->status),
                     r->content_type ? r->content_type : "text/plain; charset=utf-8",
                     r->body_len,
                     has_field(r->headers, "Cache-Control") ? "" : "Cache-Control: no-store\r\n",
                     keep ? "" : "Connection: close\r\n", r->headers ? r->headers : "");
    if (n < 0 || (size_t)n >= sizeof head) {
        free(r->body);
        respond(c, 500, "response headers too long", NULL);
        return;
    }
    if (!keep) c->state = CONN_LINGER;
    conn_write(c, head, (size_t)n);
    if (c->state != CONN_DEAD && !head_only && r->body_len) conn_write(c, r->body, r->body_len);
    free(r->body);
    if (c->state == CONN_LINGER) conn_linger(c);
}

/* respond, with a log line and a count: a refused request is news for the operator. */
void conn_respond_error(struct conn *c, int status, const char *why, const char *headers,
                        enum ctr_refusal reason)
{
    if (status == 408 && c->requests && !c->head_len) {
        /* A kept-alive connection that sent no next request: the usual end, not news. */
        c->state = CONN_LINGER;
        conn_linger(c);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    struct log_field f[] = {
        { "event", "refuse", 0 },
        { "status", NULL, status },
        { "seconds", NULL, elapsed(c) },
    };
    log_fields(LOG_INFO, f, ARRAY_LEN(f), CONN_FMT ": refused with %d: %s", CONN_ARGS(c, ip),
               status, why);
    c->cl->counters->refused[reason]++;
    respond(c, status, why, headers);
}

static char *dup_range(const char *p, size_t len)
{
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* Answers a connection that was admitted only to be told why not (too many connections). The
 * server counted it when it decided, and logs a summary, not a line each: under a flood, a
 * line each would be a second flood. */
static void refuse(struct conn *c)
{
    respond(c, c->refuse_status, c->refuse_why, "Retry-After: 1\r\n");
}

/* ---- static files -------------------------------------------------------------------------- */

/* Queues the next piece of the file; at its end, lets go of it. Returns false on a read error
 * (the connection is then dropped: its headers promised a length it cannot have). */
bool conn_feed_file(struct conn *c)
{
    struct sf_stream *f = c->file;
    if (f->off >= f->end) {
        conn_end_file(c);
        conn_shut_write_if_done(c);
        return true;
    }
    size_t want = (size_t)(f->end - f->off) < FILE_CHUNK ? (size_t)(f->end - f->off) : FILE_CHUNK;
    uint8_t *buf = c->cl->rbuf; /* free here: reads are done with it by now */
    ssize_t n = pread(f->fd, buf, want, f->off);
    size_t before = c->outq.bytes;
    int appended = n > 0 ? outq_append(&c->outq, buf, (size_t)n) : -1;
    conn_queue_changed(c, before);
    if (appended < 0) {
        conn_drop(c, n < 0 ? strerror(errno) : "a static file shrank while being sent");
        return false;
    }
    f->off += n;
    return true;
}

/* Formats an HTTP date (RFC 9110 IMF-fixdate). */
static void http_date(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Sends the file of public_dir for the request's path below the mount. Returns 0 when it
 * answered (the file, 304, or 301 to the mount's folder), or the status a missing (404) or
 * refused (403, 400) file deserves, without answering. */
static int serve_file(struct conn *c, const struct http_request *req,
                      const struct hs_upgrade *up, const struct conn_route *r)
{
    /* "/chat" -> "/chat/": relative links in the page must resolve below the mount. */
    size_t mlen = r->mount_len;
    if (up->path_len == mlen && mlen) {
        char loc[300];
        snprintf(loc, sizeof loc, "Location: %.*s/\r\n", (int)up->path_len, up->path);
        respond(c, 301, "moved to the folder", loc);
        return 0;
    }
    struct sf_file f;
    int status = sf_open(r->public_dir, up->path + mlen, up->path_len - mlen, &f);
    if (status) return status;
    char etag[64], date[64], head[768];
    sf_etag(&f, etag, sizeof etag);
    http_date(f.mtime, date, sizeof date);
    const char *inm;
    size_t inm_len;
    bool fresh = http_find_header(req, "If-None-Match", &inm, &inm_len) == 1 &&
                 inm_len == strlen(etag) && memcmp(inm, etag, inm_len) == 0;
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %lld\r\n"
                     "Last-Modified: %s\r\n"
                     "ETag: %s\r\n"
                     "Cache-Control: no-cache\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "Connection: close\r\n\r\n",
                     fresh ? "304 Not Modified" : "200 OK", f.type,
                     fresh ? 0LL : (long long)f.size, date, etag);
    c->state = CONN_LINGER;
    conn_write(c, head, (size_t)n);
    if (c->state == CONN_DEAD || fresh || is_head(req) || f.size == 0) {
        close(f.fd);
    } else if (!(c->file = malloc(sizeof *c->file))) {
        close(f.fd);
        conn_drop(c, "out of memory for a static file");
        return 0;
    } else {
        *c->file = (struct sf_stream){ f.fd, 0, f.size };
        c->cl->files++;
    }
    if (c->state != CONN_DEAD) conn_linger(c);
    return 0;
}

/* Answers a missing or refused static file. Routine for a file server: no log line above
 * debug. */
static void respond_no_file(struct conn *c, const struct hs_upgrade *up, int status)
{
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    log_debug(CONN_FMT ": %d for %.*s", CONN_ARGS(c, ip), status, (int)up->path_len, up->path);
    respond(c, status, status == 404 ? "no such file" : status == 403 ? "forbidden" : "bad path",
            NULL);
}

static void method_not_allowed(struct conn *c)
{
    conn_respond_error(c, 405, "only GET is allowed", "Allow: GET, HEAD\r\n",
                       CTR_REFUSED_BAD_REQUEST);
}

/* Results of read_body and serve_plain besides 0 and -1 (answered). */
#define WANT_BODY 1
#define KEPT 2 /* answered, and the connection waits for its next request */
#define WAITING 3 /* the handler answers later (conn_answer): the request is kept */
#define ELSEWHERE 4 /* another loop serves the request: hand the connection over */

/* The answer that came later, moved into resp: its pointers into its own text follow it. */
static void take_response(struct conn *c, struct conn_response *resp)
{
    struct conn_response *a = c->answer;
    *resp = *a;
    const char *lo = a->text, *hi = a->text + sizeof a->text;
    if (a->content_type >= lo && a->content_type < hi)
        resp->content_type = resp->text + (a->content_type - lo);
    if (a->headers >= lo && a->headers < hi) resp->headers = resp->text + (a->headers - lo);
    free(a);
    c->answer = NULL;
}

/* The handler will answer later: hold reading (the request and what came after it are kept
 * by read_request), and leave the time to the handler's own limit (sandbox.wait_timeout), not
 * handshake_timeout. */
static int await_handler(struct conn *c, bool http)
{
    c->awaiting = true;
    c->answer_http = http;
    conn_hold_input(c, true);
    conn_arm_timer(c, 0);
    return WAITING;
}

/* Requests one connection may make (keep-alive); the answer to the last says close. */
#define MAX_REQUESTS 100

/* Whether the connection stays open after answering req: HTTP/1.1 keeps connections unless
 * the client says close (RFC 9112 section 9.3). HTTP/1.0 closes. */
static bool keep_alive(const struct conn *c, const struct http_request *req)
{
    return req->minor_version >= 1 && !http_list_contains(req, "Connection", "close") &&
           c->requests + 1 < MAX_REQUESTS && !c->refuse_status;
}

/* Finds the body of a request for the handler's http in buf, the head_len bytes of the head
 * followed by have bytes. Returns 0 with c->body set when all of it is there; WANT_BODY with
 * c->request_len set when more must come first; -1 after answering a body we do not take:
 * chunked (411), a bad or repeated Content-Length (400), past max_http_body (413, before
 * reading it: a client that waits for 100-continue sends nothing more). */
static int read_body(struct conn *c, const struct http_request *req, const char *buf,
                     size_t head_len, size_t have)
{
    const char *v;
    size_t vlen;
    if (http_find_header(req, "Transfer-Encoding", &v, &vlen) != 0) {
        conn_respond_error(c, 411, "send a Content-Length: chunked bodies are not accepted",
                           NULL, CTR_REFUSED_BAD_REQUEST);
        return -1;
    }
    int n = http_find_header(req, "Content-Length", &v, &vlen);
    uint64_t len = 0;
    bool ok = n >= 0 && (n == 0 || (vlen > 0 && vlen <= 12));
    for (size_t i = 0; ok && n == 1 && i < vlen; i++) {
        ok = v[i] >= '0' && v[i] <= '9';
        len = len * 10 + (uint64_t)(v[i] - '0');
    }
    if (!ok) {
        conn_respond_error(c, 400, "bad Content-Length", NULL, CTR_REFUSED_BAD_REQUEST);
        return -1;
    }
    if (len > conn_limits(c)->max_http_body) {
        conn_respond_error(c, 413, "request body too large", NULL, CTR_REFUSED_BAD_REQUEST);
        return -1;
    }
    c->request_len = (uint32_t)(head_len + len); /* where a next request would start */
    if (have < len) return WANT_BODY;
    c->body = buf + head_len;
    c->body_len = (size_t)len;
    return 0;
}

/* Answers a plain request (not an upgrade): get_or_head says whether it is a GET or HEAD,
 * buf holds its head_len bytes of head and have bytes after them. An app that serves HTTP
 * (serves_http) gets every method, with its body, unless a static file answers a GET or HEAD;
 * without, a GET or HEAD is answered from the app's public/ folder when it has one, else 426
 * (this address speaks WebSocket), and other methods 405. Returns -1 once answered, or
 * WANT_BODY while the body is still to come (called again once it is in). */
/* A file compiled into the binary (builtin_files.h), on any path of any listener. */
static int serve_builtin(struct conn *c, const struct http_request *req,
                         const struct builtin_file *f)
{
    c->cl->counters->http_requests++;
    bool keep = keep_alive(c, req);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "Cache-Control: public, max-age=300\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "Access-Control-Allow-Origin: *\r\n"
                     "%s\r\n",
                     f->type, *f->len, keep ? "" : "Connection: close\r\n");
    if (!keep) c->state = CONN_LINGER;
    conn_write(c, head, (size_t)n);
    if (c->state != CONN_DEAD && !is_head(req)) conn_write(c, f->data, *f->len);
    if (c->state == CONN_LINGER) {
        conn_linger(c);
        return -1;
    }
    return c->state == CONN_HANDSHAKE ? KEPT : -1;
}

static int serve_plain(struct conn *c, const struct http_request *req, const struct hs_upgrade *up,
                       bool get_or_head, const char *buf, size_t head_len, size_t have)
{
    const struct builtin_file *bf = get_or_head ? builtin_find(up->path, up->path_len) : NULL;
    if (bf) return serve_builtin(c, req, bf);
    struct conn_loop *cl = c->cl;
    struct conn_route r;
    route_init(&r);
    int status = cl->host->route(cl->host_ctx, c, up, false, &r);
    if (status == CONN_ROUTE_ELSEWHERE) return ELSEWHERE;
    bool app_http = !status && r.handler && r.handler->http && r.handler->serves_http &&
                    r.handler->serves_http(r.ctx);
    if (!get_or_head && !app_http) {
        method_not_allowed(c);
        return -1;
    }
    if (c->refuse_status) {
        refuse(c);
        return -1;
    }
    /* Not again once its body is in, nor when read again with its handler's late answer. */
    if (!c->request_len && !c->answer) cl->counters->http_requests++;
    if (status) {
        respond(c, status, r.why, r.headers);
        return -1;
    }
    if (app_http) {
        if (get_or_head && r.public_dir) {
            status = serve_file(c, req, up, &r);
            if (status == 0) return -1;
            if (status != 404) {
                respond_no_file(c, up, status);
                return -1;
            }
        }
        int rc = read_body(c, req, buf, head_len, have);
        if (rc) return rc;
        struct conn_response resp;
        if (c->answer) {
            take_response(c, &resp); /* it waited, and has answered */
            rc = 0;
        } else {
            memset(&resp, 0, sizeof resp);
            rc = r.handler->http(r.ctx, c, req, up, &resp);
        }
        c->body = NULL;
        c->body_len = 0;
        if (rc == CONN_WAIT && c->state == CONN_HANDSHAKE) return await_handler(c, true);
        if (c->state != CONN_HANDSHAKE) {
            free(resp.body);
            return -1;
        }

        if (rc == 0) {
            bool keep = keep_alive(c, req);
            respond_with(c, &resp, is_head(req), keep);
            return keep && c->state == CONN_HANDSHAKE ? KEPT : -1;
        }
        if (!get_or_head) {
            method_not_allowed(c);
            return -1;
        }
    } else if (r.handler && r.handler->http) {
        struct conn_response resp;
        memset(&resp, 0, sizeof resp);
        if (r.handler->http(r.ctx, c, req, up, &resp) == 0) {
            respond_with(c, &resp, is_head(req), false);
            return -1;
        }
    }
    if (!r.public_dir) {
        conn_respond_error(c, 426, "this address serves WebSocket; connect with a WebSocket client",
                           "Upgrade: websocket\r\nConnection: Upgrade, close\r\n",
                           CTR_REFUSED_BAD_REQUEST);
        return -1;
    }
    status = serve_file(c, req, up, &r);
    if (status) respond_no_file(c, up, status);
    return -1;
}

/* ---- the upgrade --------------------------------------------------------------------------- */

/* Zlib memory a context-mode connection may come to hold (a window-11 deflater and inflater
 * measured 22 KB + 9 KB; a window-15 pair is about 310 KB): the budget is checked against it. */
static size_t context_cost(int window_bits)
{
    return ((size_t)1 << (window_bits + 2)) * 2 + ((size_t)1 << (window_bits + 1)) + 16384;
}

/* permessage-deflate (RFC 7692): takes the first acceptable offer and writes the answer's
 * header line into out (nothing when disabled or when no offer is acceptable: the connection
 * goes on uncompressed). In context mode past the memory budget, the connection gets what
 * shared mode gives instead. */
static void negotiate_deflate(struct conn *c, const struct http_request *req, char *out,
                              size_t cap)
{
    const struct cfg_deflate *d = c->cl->deflate;
    c->pmd = 0;
    if (!d || !d->enabled) return;
    struct pmd_policy p = { d->context, d->window_bits };
    if (p.context && d->memory && pmdz_memory() + context_cost(d->window_bits) > d->memory)
        p.context = false;
    struct pmd_agreement a;
    char value[200];
    if (!pmd_negotiate(req, &p, &a, value, sizeof value)) return;
    int n = snprintf(out, cap, "Sec-WebSocket-Extensions: %s\r\n", value);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return;
    }
    c->pmd = (uint8_t)(CONN_PMD_ON | (a.server_context ? CONN_PMD_SERVER_CONTEXT : 0) |
                       (a.client_context ? CONN_PMD_CLIENT_CONTEXT : 0));
    c->pmd_server_bits = (uint8_t)a.server_window_bits;
    c->pmd_client_bits = (uint8_t)a.client_window_bits;
}

/* Handles a complete request head, the first head_len bytes of buf_len in buf. Returns 0 when
 * the connection is now an open WebSocket, WANT_BODY when a plain request waits for its body,
 * -1 otherwise (answered). */
static int upgrade(struct conn *c, const struct http_request *req, const char *buf,
                   size_t head_len, size_t buf_len)
{
    struct hs_upgrade up;
    const char *why = NULL;
    int rc = hs_check_request(req, &up, &why);
    switch (rc) {
    case 0: break;
    case HS_NOT_UPGRADE: return serve_plain(c, req, &up, true, buf, head_len, buf_len - head_len);
    case HS_E_METHOD: {
        /* Not GET or HEAD: only an app's http may take it. Its target and Host are read as a
         * HEAD's would be (a HEAD is never an upgrade); a bad one keeps the 405. */
        struct http_request as_head = *req;
        as_head.method = "HEAD";
        as_head.method_len = 4;
        if (hs_check_request(&as_head, &up, &why) == HS_NOT_UPGRADE)
            return serve_plain(c, req, &up, false, buf, head_len, buf_len - head_len);
        method_not_allowed(c);
        return -1;
    }
    case HS_E_VERSION:
        conn_respond_error(c, 426, why, "Sec-WebSocket-Version: 13\r\n",
                           CTR_REFUSED_BAD_REQUEST);
        return -1;
    default: conn_respond_error(c, -rc, why, NULL, CTR_REFUSED_BAD_REQUEST); return -1;
    }
    if (c->refuse_status) {
        refuse(c);
        return -1;
    }
    /* The server's policy: draining, origins, which app serves the path. */
    struct conn_loop *cl = c->cl;
    struct conn_route r;
    route_init(&r);
    int status = cl->host->route(cl->host_ctx, c, &up, true, &r);
    if (status == CONN_ROUTE_ELSEWHERE) return ELSEWHERE;
    if (status) {
        conn_respond_error(c, status, r.why, r.headers, r.reason);
        return -1;
    }
    c->handler = r.handler;
    c->handler_ctx = r.ctx;
    free(c->path); /* a request read again after its handler waited */
    c->path = dup_range(up.path, up.path_len);
    if (!c->path) {
        conn_respond_error(c, 503, "the server is out of memory", NULL, CTR_REFUSED_ERROR);
        return -1;
    }

    struct conn_verdict v;
    if (c->answer) {
        v = *(struct conn_verdict *)c->answer; /* it waited, and has decided */
        free(c->answer);
        c->answer = NULL;
        if (v.protocol_len && !hs_protocol_offered(req, v.protocol, v.protocol_len)) {
            log_error("the upgrade handler for %s picked subprotocol '%.*s', which the client "
                      "did not offer", c->path, (int)v.protocol_len, v.protocol);
            memset(&v, 0, sizeof v);
            v.status = 500;
            v.failed = true;
            snprintf(v.reason, sizeof v.reason, "internal error");
        }
    } else {
        memset(&v, 0, sizeof v);
        c->handler->upgrade(c->handler_ctx, c, req, &up, &v);
        if (v.status == CONN_WAIT && c->state == CONN_HANDSHAKE) return await_handler(c, false);
    }
    if (v.status) {
        conn_respond_error(c, v.status, v.reason, v.headers[0] ? v.headers : NULL,
                           v.failed ? CTR_REFUSED_ERROR : CTR_REFUSED_AUTH);
        return -1;
    }
    if (!v.protocol_len && v.fallback_protocol[0]) {
        size_t flen = strnlen(v.fallback_protocol, sizeof v.fallback_protocol);
        if (hs_protocol_offered(req, v.fallback_protocol, flen)) {
            memcpy(v.protocol, v.fallback_protocol, flen);
            v.protocol_len = flen;
        }
    }
    if (v.protocol_len && !(c->protocol = dup_range(v.protocol, v.protocol_len))) {
        conn_respond_error(c, 503, "the server is out of memory", NULL, CTR_REFUSED_ERROR);
        return -1;
    }

    char extra[sizeof v.headers + 256];
    size_t extra_len = (size_t)snprintf(extra, sizeof extra, "%s", v.headers);
    negotiate_deflate(c, req, extra + extra_len, sizeof extra - extra_len);
    char resp[1536 + 256];
    size_t n = hs_build_response(resp, sizeof resp, up.key, c->protocol, v.protocol_len,
                                 extra[0] ? extra : NULL);
    c->state = CONN_OPEN;
    ws_reader_init(&c->reader, conn_limits(c)->max_message, c->pmd ? WS_RSV1 : 0);
    conn_write(c, resp, n);
    if (c->state != CONN_OPEN) return -1;
    conn_arm_timer(c, conn_limits(c)->idle_timeout);
    cl->counters->opened++;
    if (cl->access_log && log_enabled(LOG_INFO)) {
        char ip[INET6_ADDRSTRLEN];
        conn_format_ip(c, ip, sizeof ip);
        struct log_field f[] = {
            { "event", "upgrade", 0 },
            { "path", c->path, 0 },
            { "status", NULL, 101 },
            { "seconds", NULL, elapsed(c) },
        };
        log_fields(LOG_INFO, f, ARRAY_LEN(f), CONN_FMT ": upgraded %s%s%s", CONN_ARGS(c, ip),
                   c->path, c->protocol ? " with " : "", c->protocol ? c->protocol : "");
    }

    c->app_open = true;
    if (c->handler->open(c->handler_ctx, c) < 0)
        conn_close(c, WS_CLOSE_INTERNAL_ERROR, "internal error", 14);
    return c->state == CONN_OPEN ? 0 : -1;
}

/* Collects the request head; once complete, upgrades and passes any bytes after the head on
 * to the frame reader (a client may send frames right behind its request). */
/* Keeps bytes of an unfinished request head, in a buffer that starts small and doubles up to
 * max_header_bytes: ten thousand clients sending half a request each must not cost ten
 * thousand times the limit. Returns how many of data were kept (all, or what fits under max),
 * or -1 when out of memory. */
/* The buffer counts against the server's bounds on what unfinished requests and messages pin
 * (conn_host.buffering: max_buffered, max_buffered_per_ip), like a message arriving in pieces:
 * a request body may be up to max_http_body. Past a bound the request is answered 503 and the
 * result is -2. */
static ssize_t keep_head(struct conn *c, const uint8_t *data, size_t len, size_t max)
{
    size_t want = c->head_len + len < max ? c->head_len + len : max;
    if (want > c->head_cap) {
        size_t cap = c->head_cap ? c->head_cap : 1024;
        while (cap < want) cap *= 2;
        if (cap > max) cap = max;
        struct conn_loop *cl = c->cl;
        const char *why = "";
        if (cl->host->buffering(cl->host_ctx, c, c->head_cap, cap, &why)) {
            conn_respond_error(c, 503, why, "Retry-After: 1\r\n", CTR_REFUSED_LIMIT);
            return -2;
        }
        char *p = realloc(c->head, cap);
        if (!p) {
            cl->host->buffering(cl->host_ctx, c, cap, c->head_cap, &why);
            return -1;
        }
        c->head = p;
        c->head_cap = (uint32_t)cap;
    }
    size_t used = want - c->head_len;
    if (used) memcpy(c->head + c->head_len, data, used);
    c->head_len = (uint32_t)want;
    return (ssize_t)used;
}

/* After a kept-alive answer: what followed the request (pipelined requests, in buf after
 * its end and in data after used) becomes the kept head of the next one, and the connection
 * has handshake_timeout again to send it. Returns KEPT, or -1 when it was dropped. */
static int next_request(struct conn *c, const char *buf, size_t buf_len, const uint8_t *data,
                        size_t used, size_t len)
{
    size_t end = c->request_len;
    size_t rest1 = buf_len - end, rest2 = c->head && used < len ? len - used : 0;
    char *next = NULL;
    if (rest1 + rest2 && !(next = malloc(rest1 + rest2))) {
        conn_drop(c, "out of memory for the next request");
        return -1;
    }
    if (rest1) memcpy(next, buf + end, rest1);
    if (rest2) memcpy(next + rest1, data + used, rest2);
    conn_release_head(c);
    const char *why;
    c->cl->host->buffering(c->cl->host_ctx, c, 0, rest1 + rest2, &why); /* already held */
    c->head = next;
    c->head_len = c->head_cap = (uint32_t)(rest1 + rest2);
    c->head_scan = c->request_len = 0;
    c->requests++;
    conn_arm_timer(c, conn_limits(c)->handshake_timeout);
    return KEPT;
}

/* Another loop serves the request (an app pinned to one worker): everything read from the
 * start of the request, buf[0..buf_len) and then what of data was not kept (data + used), goes
 * over with the socket; the client notices nothing. */
static void hand_over(struct conn *c, const char *buf, size_t buf_len, const uint8_t *data,
                      size_t used, size_t len)
{
    if (c->outq.bytes && !c->file) conn_flush(c); /* a kept-alive answer, written at once */
    if (c->state != CONN_HANDSHAKE) return;
    if (c->outq.bytes || c->file) {
        /* A pipelined request behind an answer the socket cannot take yet: the socket cannot
         * change hands with output of this loop's in it (rare: clients seldom pipeline). */
        conn_respond_error(c, 503, "send this request again on a new connection",
                           "Retry-After: 0\r\n", CTR_REFUSED_LIMIT);
        return;
    }
    size_t rest = c->head && used < len ? len - used : 0;
    uint8_t *all = malloc(buf_len + rest ? buf_len + rest : 1);
    if (!all) {
        conn_respond_error(c, 503, "the server is out of memory", NULL, CTR_REFUSED_ERROR);
        return;
    }
    memcpy(all, buf, buf_len);
    if (rest) memcpy(all + buf_len, data + used, rest);
    const char *why = "the server cannot take this connection now; try again later";
    int status = c->cl->host->hand_over(c->cl->host_ctx, c, all, buf_len + rest, &why);
    free(all);
    if (status) conn_respond_error(c, status, why, "Retry-After: 1\r\n", CTR_REFUSED_LIMIT);
}

/* Takes one read's bytes (or none, to parse what is kept) for the request being received.
 * Returns KEPT when a request was answered and the connection waits for the next, whose
 * start may already be kept in c->head. */
static int read_request(struct conn *c, uint8_t *data, size_t len)
{
    const struct cfg_limits *lim = conn_limits(c);
    size_t max = lim->max_header_bytes;
    const char *buf = (const char *)data;
    size_t buf_len = len, used = len;
    if (c->request_len) {
        /* The head is in and its body comes: keep it up to its announced end (bytes past it
         * are the next request's). */
        /* (All of it may be kept already, and more: a request read again after its handler
         * waited, with what came after it.) */
        ssize_t kept = c->head_len >= c->request_len ? 0
                                                      : keep_head(c, data, len, c->request_len);
        if (kept < 0) {
            if (kept == -1) conn_drop(c, "out of memory for the request body");
            conn_release_head(c);
            return -1;
        }
        if (c->head_len < c->request_len) return -1;
        used = (size_t)kept;
        buf = c->head;
        buf_len = c->head_len;
    } else if (c->head) {
        /* An earlier piece is kept: append what the head can still need. */
        ssize_t kept = len ? keep_head(c, data, len, max) : 0;
        if (kept < 0) {
            if (kept == -1) conn_drop(c, "out of memory for the request head");
            conn_release_head(c);
            return -1;
        }
        used = (size_t)kept;
        buf = c->head;
        buf_len = c->head_len;
    }

    struct http_header headers[HTTP_MAX_HEADER_FIELDS];
    struct http_request req = { .headers = headers, .max_headers = lim->max_headers };
    struct http_scan scan = { c->head_scan };
    const char *why = NULL;
    int rc = http_parse_request(buf, buf_len, max, &scan, &req, &why);
    if (rc == HTTP_NEED_MORE) {
        c->head_scan = (uint32_t)scan.pos;
        /* len < max here, or the parser would have said 431: all of it is kept. */
        ssize_t kept = c->head ? 0 : keep_head(c, data, len, max);
        if (kept == -1) conn_drop(c, "out of memory for the request head");
        if (kept < 0) conn_release_head(c);
        return -1;
    }
    int done = -1;
    if (rc < 0) {
        conn_respond_error(c, -rc, why, NULL, CTR_REFUSED_BAD_REQUEST);
    } else if ((done = upgrade(c, &req, buf, (size_t)rc, buf_len)) == WANT_BODY) {
        /* Keep all of the request so far (the head may be in data alone, or in part) and
         * wait for the rest of the body, within what is left of handshake_timeout. */
        ssize_t kept = 0;
        if (!c->head) kept = keep_head(c, data, len, c->request_len);
        else if (used < len) kept = keep_head(c, data + used, len - used, c->request_len);
        if (kept == -1) conn_drop(c, "out of memory for the request body");
        if (kept < 0) conn_release_head(c);
        c->head_scan = 0;
        return -1;
    } else if (done == KEPT) {
        return next_request(c, buf, buf_len, data, used, len);
    } else if (done == ELSEWHERE) {
        hand_over(c, buf, buf_len, data, used, len);
    } else if (done == WAITING) {
        /* Keep all of it, the request and whatever came after, to read again once the handler
         * has answered (conn_answer). */
        ssize_t kept = 0;
        if (!c->head) kept = keep_head(c, data, len, len);
        else if (used < len) kept = keep_head(c, data + used, len - used, c->head_len + len - used);
        if (kept == -1) conn_drop(c, "out of memory for the request");
        if (kept < 0) conn_release_head(c);
        c->head_scan = 0;
        return -1;
    } else if (done == 0) {
        /* Frames that came with the head: first the rest of the kept buffer, then the rest of
         * this read that was not appended to it. */
        uint8_t *rest = (uint8_t *)buf + rc;
        size_t rest_len = buf_len - (size_t)rc;
        if (rest_len) conn_read_frames(c, rest, rest_len);
        if (c->head && used < len && c->state == CONN_OPEN)
            conn_read_frames(c, data + used, len - used);
    }
    /* Whatever the outcome, the head is done with: a refused client lingering for
     * close_timeout must not keep 16 KiB. */
    conn_release_head(c);
    return -1;
}

void conn_release_head(struct conn *c)
{
    if (c->head_cap) {
        const char *why;
        c->cl->host->buffering(c->cl->host_ctx, c, c->head_cap, 0, &why);
    }
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = c->head_scan = c->request_len = 0;
}

void conn_read_head(struct conn *c, uint8_t *data, size_t len)
{
    /* Pipelined requests are answered in order, one loop turn each at most MAX_REQUESTS. */
    while (read_request(c, data, len) == KEPT && c->state == CONN_HANDSHAKE && c->head_len) {
        data = NULL;
        len = 0;
    }
}

void conn_answer(struct conn *c, void *answer)
{
    if (c->state != CONN_HANDSHAKE || !c->awaiting || c->answer) {
        if (answer && c->answer_http) free(((struct conn_response *)answer)->body);
        free(answer);
        return;
    }
    c->awaiting = false;
    c->answer = answer;
    conn_hold_input(c, false);
    conn_arm_timer(c, conn_limits(c)->handshake_timeout);
    conn_read_head(c, NULL, 0);
}
