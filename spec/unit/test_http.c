/* Tests for the HTTP/1.1 request head parser and its helpers (core/http.h): good and malformed
 * heads as labelled tables, every head fed as growing prefixes with the scan state carried, the
 * size and field-count limits, and the list and lookup helpers the handshake relies on. */
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "http.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_HEADERS 16
#define MAX_LEN 8192

/* A parse whose input (and header array) sit on guard pages, kept mapped while the result is
 * examined, since the result points into the input. */
struct parse {
    struct guard in, hdrs;
    const char *buf;
    struct http_request req;
    const char *why;
    int rc;
};

static void parse_free(struct parse *p)
{
    guard_free(&p->in);
    guard_free(&p->hdrs);
}

/* The header array ends at a guard page too: writing a field past max_headers crashes. */
static void parse_setup(struct parse *p, const char *raw, size_t len, size_t max_headers)
{
    memset(p, 0, sizeof *p);
    p->buf = guard_copy_str(&p->in, raw, len);
    guard_seal(&p->in);
    static const struct http_header none[MAX_HEADERS + 1];
    cr_assert_leq(max_headers, MAX_HEADERS + 1);
    p->req.headers = (struct http_header *)guard_copy(&p->hdrs, none,
                                                      max_headers * sizeof none[0]);
    p->req.max_headers = max_headers;
}

static int parse_once(struct parse *p, const char *raw, size_t len, size_t max_len,
                      size_t max_headers)
{
    parse_setup(p, raw, len, max_headers);
    struct http_scan scan = { 0 };
    p->rc = http_parse_request(p->buf, len, max_len, &scan, &p->req, &p->why);
    return p->rc;
}

static bool span_is(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ---- Heads that parse ----------------------------------------------------------------------- */

struct field {
    const char *name; /* NULL ends the list */
    const char *value;
};

struct good_case {
    const char *name;
    const char *raw;
    const char *method;
    const char *target;
    int minor;
    struct field fields[8];
};

static const struct good_case good[] = {
    { "minimal GET", "GET / HTTP/1.1\r\n\r\n", "GET", "/", 1, { { 0 } } },
    { "RFC 6455 upgrade request",
      "GET /chat HTTP/1.1\r\n"
      "Host: server.example.com\r\n"
      "Upgrade: websocket\r\n"
      "Connection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Origin: http://example.com\r\n"
      "Sec-WebSocket-Protocol: chat, superchat\r\n"
      "Sec-WebSocket-Version: 13\r\n"
      "\r\n",
      "GET", "/chat", 1,
      { { "Host", "server.example.com" },
        { "Upgrade", "websocket" },
        { "Connection", "Upgrade" },
        { "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==" },
        { "Origin", "http://example.com" },
        { "Sec-WebSocket-Protocol", "chat, superchat" },
        { "Sec-WebSocket-Version", "13" } } },
    { "HTTP/1.0", "GET /index.html HTTP/1.0\r\nHost: a\r\n\r\n", "GET", "/index.html", 0,
      { { "Host", "a" } } },
    { "HTTP/1.9 is still 1.x", "GET / HTTP/1.9\r\n\r\n", "GET", "/", 9, { { 0 } } },
    { "other method and a query", "PATCH /a/b?c=d&e=%20f HTTP/1.1\r\nHost: h\r\n\r\n", "PATCH",
      "/a/b?c=d&e=%20f", 1, { { "Host", "h" } } },
    { "method of every token character",
      "A1!#$%&'*+-.^_`|~z / HTTP/1.1\r\n\r\n", "A1!#$%&'*+-.^_`|~z", "/", 1, { { 0 } } },
    { "value trimmed of spaces and tabs", "GET / HTTP/1.1\r\nX:  \t a b \t \r\n\r\n", "GET", "/",
      1, { { "X", "a b" } } },
    { "no blank after the colon", "GET / HTTP/1.1\r\nHost:example.com\r\n\r\n", "GET", "/", 1,
      { { "Host", "example.com" } } },
    { "empty value", "GET / HTTP/1.1\r\nX-Empty:\r\n\r\n", "GET", "/", 1, { { "X-Empty", "" } } },
    { "value of blanks only", "GET / HTTP/1.1\r\nX-Blank: \t \r\n\r\n", "GET", "/", 1,
      { { "X-Blank", "" } } },
    { "tab inside a value", "GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", "GET", "/", 1,
      { { "X", "a\tb" } } },
    { "obs-text in a value", "GET / HTTP/1.1\r\nX: caf\xC3\xA9\r\n\r\n", "GET", "/", 1,
      { { "X", "caf\xC3\xA9" } } },
    { "field name of every token character",
      "GET / HTTP/1.1\r\nX-a_b.c!#$%&'*+^`|~9: v\r\n\r\n", "GET", "/", 1,
      { { "X-a_b.c!#$%&'*+^`|~9", "v" } } },
    { "colon inside a value", "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "GET", "/", 1,
      { { "Host", "example.com:8080" } } },
    { "repeated field kept twice", "GET / HTTP/1.1\r\nA: 1\r\nA: 2\r\n\r\n", "GET", "/", 1,
      { { "A", "1" }, { "A", "2" } } },
    { "obs-text in the target", "GET /caf\xC3\xA9 HTTP/1.1\r\n\r\n", "GET", "/caf\xC3\xA9", 1,
      { { 0 } } },
};

/* Absolute-form targets (RFC 7230 section 5.3.2): target holds the URI whole, authority its
 * host[:port], resource what follows (path and query, possibly empty). */
struct absolute_case {
    struct good_case head;
    const char *authority;
    const char *resource;
};

static const struct absolute_case absolute[] = {
    { { "absolute-form http",
        "GET http://example.com/chat HTTP/1.1\r\nHost: example.com\r\n\r\n", "GET",
        "http://example.com/chat", 1, { { "Host", "example.com" } } },
      "example.com", "/chat" },
    { { "absolute-form ws with a port and a query",
        "GET ws://example.com:8080/chat?room=1&u=a HTTP/1.1\r\nHost: h\r\n\r\n", "GET",
        "ws://example.com:8080/chat?room=1&u=a", 1, { { "Host", "h" } } },
      "example.com:8080", "/chat?room=1&u=a" },
    { { "absolute-form https with the default port",
        "GET https://example.com:443/ HTTP/1.1\r\n\r\n", "GET", "https://example.com:443/", 1,
        { { 0 } } },
      "example.com:443", "/" },
    { { "absolute-form wss", "GET wss://chat.example.com/a/b HTTP/1.1\r\n\r\n", "GET",
        "wss://chat.example.com/a/b", 1, { { 0 } } },
      "chat.example.com", "/a/b" },
    { { "absolute-form, upper-case scheme", "GET HTTP://Example.COM/x HTTP/1.1\r\n\r\n", "GET",
        "HTTP://Example.COM/x", 1, { { 0 } } },
      "Example.COM", "/x" },
    { { "absolute-form, mixed-case wss scheme", "GET WsS://a:1/ HTTP/1.1\r\n\r\n", "GET",
        "WsS://a:1/", 1, { { 0 } } },
      "a:1", "/" },
    { { "absolute-form, empty path", "GET http://example.com HTTP/1.1\r\n\r\n", "GET",
        "http://example.com", 1, { { 0 } } },
      "example.com", "" },
    { { "absolute-form, empty path with a query", "GET ws://example.com?x=1 HTTP/1.1\r\n\r\n",
        "GET", "ws://example.com?x=1", 1, { { 0 } } },
      "example.com", "?x=1" },
    { { "absolute-form, IPv6 literal and port", "GET ws://[::1]:8080/chat HTTP/1.1\r\n\r\n",
        "GET", "ws://[::1]:8080/chat", 1, { { 0 } } },
      "[::1]:8080", "/chat" },
    { { "absolute-form, IPv6 literal without a port",
        "GET http://[2001:DB8::a:1]/ HTTP/1.1\r\n\r\n", "GET", "http://[2001:DB8::a:1]/", 1,
        { { 0 } } },
      "[2001:DB8::a:1]", "/" },
    { { "absolute-form, IPv4-mapped IPv6 literal",
        "GET http://[::ffff:127.0.0.1]:80/ HTTP/1.1\r\n\r\n", "GET",
        "http://[::ffff:127.0.0.1]:80/", 1, { { 0 } } },
      "[::ffff:127.0.0.1]:80", "/" },
    { { "absolute-form, IPv4 address", "GET ws://127.0.0.1:9001/ HTTP/1.1\r\n\r\n", "GET",
        "ws://127.0.0.1:9001/", 1, { { 0 } } },
      "127.0.0.1:9001", "/" },
    { { "absolute-form, ports 65535 and 1",
        "GET http://a:65535/?p=http://a:1/ HTTP/1.1\r\n\r\n", "GET",
        "http://a:65535/?p=http://a:1/", 1, { { 0 } } },
      "a:65535", "/?p=http://a:1/" },
    { { "absolute-form, port 1", "GET ws://a:1 HTTP/1.1\r\n\r\n", "GET", "ws://a:1", 1,
        { { 0 } } },
      "a:1", "" },
    { { "absolute-form, host of every reg-name character",
        "GET http://a-b.c_d~e!$&'()*+,;=%7E9/ HTTP/1.1\r\n\r\n", "GET",
        "http://a-b.c_d~e!$&'()*+,;=%7E9/", 1, { { 0 } } },
      "a-b.c_d~e!$&'()*+,;=%7E9", "/" },
    { { "absolute-form, '@' and '//' in the path", "GET http://a/b@c//d HTTP/1.1\r\n\r\n",
        "GET", "http://a/b@c//d", 1, { { 0 } } },
      "a", "/b@c//d" },
    { { "absolute-form with another method", "OPTIONS http://a/ HTTP/1.1\r\n\r\n", "OPTIONS",
        "http://a/", 1, { { 0 } } },
      "a", "/" },
    { { "absolute-form over HTTP/1.0", "GET http://a/x HTTP/1.0\r\n\r\n", "GET", "http://a/x",
        0, { { 0 } } },
      "a", "/x" },
};

#define N_GOOD (N(good) + N(absolute))

/* Good head i of both tables. */
static const struct good_case *good_at(size_t i)
{
    return i < N(good) ? &good[i] : &absolute[i - N(good)].head;
}

/* The absolute-form case c belongs to, or NULL for an origin-form one. */
static const struct absolute_case *absolute_of(const struct good_case *c)
{
    for (size_t i = 0; i < N(absolute); i++)
        if (c == &absolute[i].head) return &absolute[i];
    return NULL;
}

static void check_good_result(const struct good_case *c, struct parse *p, size_t head_len,
                              const char *how)
{
    cr_expect_eq(p->rc, (int)head_len, "%s%s: returned %d, want %zu (%s)", c->name, how, p->rc,
                 head_len, p->rc < 0 && p->why ? p->why : "");
    if (p->rc != (int)head_len) return;
    const struct http_request *r = &p->req;
    cr_expect(span_is(r->method, r->method_len, c->method), "%s%s: method", c->name, how);
    cr_expect(span_is(r->target, r->target_len, c->target), "%s%s: target", c->name, how);
    const struct absolute_case *a = absolute_of(c);
    if (a) {
        cr_expect(r->authority && span_is(r->authority, r->authority_len, a->authority),
                  "%s%s: authority \"%.*s\", want \"%s\"", c->name, how, (int)r->authority_len,
                  r->authority ? r->authority : "", a->authority);
        cr_expect(r->authority >= r->target &&
                      r->authority + r->authority_len <= r->target + r->target_len,
                  "%s%s: authority outside the target", c->name, how);
    } else {
        cr_expect_null(r->authority, "%s%s: authority set for an origin-form target", c->name,
                       how);
    }
    const char *resource = a ? a->resource : c->target;
    cr_expect(span_is(r->resource, r->resource_len, resource),
              "%s%s: resource \"%.*s\", want \"%s\"", c->name, how, (int)r->resource_len,
              r->resource, resource);
    /* The resource ends the target. */
    cr_expect(r->resource + r->resource_len == r->target + r->target_len,
              "%s%s: resource does not end the target", c->name, how);
    cr_expect_eq(r->minor_version, c->minor, "%s%s: minor version %d", c->name, how,
                 r->minor_version);
    size_t n = 0;
    while (n < N(c->fields) && c->fields[n].name) n++;
    cr_expect_eq(r->num_headers, n, "%s%s: %zu fields, want %zu", c->name, how, r->num_headers,
                 n);
    for (size_t i = 0; i < n && i < r->num_headers; i++) {
        const struct http_header *h = &r->headers[i];
        cr_expect(span_is(h->name, h->name_len, c->fields[i].name), "%s%s: field %zu name",
                  c->name, how, i);
        cr_expect(span_is(h->value, h->value_len, c->fields[i].value),
                  "%s%s: field %zu value \"%.*s\", want \"%s\"", c->name, how, i,
                  (int)h->value_len, h->value, c->fields[i].value);
        /* Results point into the caller's buffer, inside the head. */
        cr_expect(h->name >= p->buf && h->value + h->value_len <= p->buf + head_len,
                  "%s%s: field %zu points outside the head", c->name, how, i);
    }
}

Test(http, good_heads)
{
    for (size_t i = 0; i < N_GOOD; i++) {
        const struct good_case *c = good_at(i);
        size_t len = strlen(c->raw);
        struct parse p;
        parse_once(&p, c->raw, len, MAX_LEN, MAX_HEADERS);
        check_good_result(c, &p, len, "");
        parse_free(&p);
    }
}

/* The bytes after the head belong to the next protocol: the return value is the head length,
 * whatever follows (a WebSocket frame, a pipelined request, a stray LF). */
Test(http, bytes_after_the_head_not_consumed)
{
    static const char *const tails[] = {
        "\x81\x85\x37\xFA\x21\x3D\x7F\x9F\x4D\x51\x58",
        "GET /next HTTP/1.1\r\n\r\n",
        "\n\n\n",
        "x",
    };
    char buf[1024];
    for (size_t i = 0; i < N_GOOD; i++) {
        const struct good_case *c = good_at(i);
        for (size_t t = 0; t < N(tails); t++) {
            size_t head = strlen(c->raw), tail = strlen(tails[t]);
            cr_assert_lt(head + tail, sizeof buf);
            memcpy(buf, c->raw, head);
            memcpy(buf + head, tails[t], tail);
            struct parse p;
            parse_once(&p, buf, head + tail, MAX_LEN, MAX_HEADERS);
            check_good_result(c, &p, head, " + tail");
            parse_free(&p);
        }
    }
}

/* Growing prefixes with the same struct http_scan, two ways: the same buffer passed with a
 * growing length (how a server calls it), and each prefix on its own guard page (so that not
 * even one byte past the prefix is read). Every prefix short of the head needs more; the
 * complete head gives the one-shot result. */
Test(http, good_heads_fed_as_growing_prefixes)
{
    static const char tail[] = "\x81\x80\x01\x02\x03\x04";
    char buf[1024];
    for (size_t i = 0; i < N_GOOD; i++) {
        const struct good_case *c = good_at(i);
        size_t head = strlen(c->raw);
        memcpy(buf, c->raw, head);
        memcpy(buf + head, tail, sizeof tail - 1);
        size_t total = head + sizeof tail - 1;

        /* Same buffer. */
        struct parse p;
        parse_setup(&p, buf, total, MAX_HEADERS);
        struct http_scan scan = { 0 };
        size_t k;
        for (k = 0; k <= total; k++) {
            p.rc = http_parse_request(p.buf, k, MAX_LEN, &scan, &p.req, &p.why);
            if (p.rc != HTTP_NEED_MORE) break;
        }
        cr_expect_eq(k, head, "%s, same buffer: complete at %zu bytes, want %zu", c->name, k,
                     head);
        check_good_result(c, &p, head, ", same buffer");
        parse_free(&p);

        /* A fresh guard copy per prefix. */
        memset(&scan, 0, sizeof scan);
        int rc = HTTP_NEED_MORE;
        for (k = 0; k <= total && rc == HTTP_NEED_MORE; k++) {
            parse_setup(&p, buf, k, MAX_HEADERS);
            rc = p.rc = http_parse_request(p.buf, k, MAX_LEN, &scan, &p.req, &p.why);
            if (rc == HTTP_NEED_MORE) parse_free(&p);
        }
        cr_expect_eq(k - 1, head, "%s, guarded prefixes: complete at %zu bytes", c->name, k - 1);
        if (rc != HTTP_NEED_MORE) {
            check_good_result(c, &p, head, ", guarded prefixes");
            parse_free(&p);
        }
    }
}

/* ---- Heads that are refused ----------------------------------------------------------------- */

struct bad_case {
    const char *name;
    const char *raw;
    size_t len; /* 0: strlen(raw); set for inputs holding NUL */
    int want;
};
/* A literal and its length, for inputs that hold NUL. */
#define RAW(s) s, sizeof(s) - 1

static const struct bad_case bad[] = {
    /* Line endings. */
    { "bare LF ends the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "bare LF ends a field line", "GET / HTTP/1.1\r\nHost: a\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "bare LF as the blank line", "GET / HTTP/1.1\r\nHost: a\r\n\n", 0, HTTP_E_BAD_REQUEST },
    { "bare LFs only", "GET / HTTP/1.1\n\n", 0, HTTP_E_BAD_REQUEST },
    { "LF first", "\nGET / HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "stray CR in a value", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "stray CR in the request line", "GET /\r HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "CR CR LF", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "stray CR ending a field name", "GET / HTTP/1.1\r\nHost\r: a\r\n\r\n", 0,
      HTTP_E_BAD_REQUEST },
    { "empty head", "\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    /* Request line. */
    { "empty method", " / HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "method with a non-token character", "GE(T / HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "method with a NUL", RAW("GE\0T / HTTP/1.1\r\n\r\n"), HTTP_E_BAD_REQUEST },
    { "missing target", "GET HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "two spaces after the method", "GET  / HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "control character in the target", "GET /a\x01z HTTP/1.1\r\n\r\n", 0,
      HTTP_E_BAD_REQUEST },
    { "DEL in the target", "GET /a\x7Fz HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "tab in the target", "GET /a\tb HTTP/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "missing version", "GET /\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "missing version after a space", "GET / \r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "lower-case protocol name", "GET / http/1.1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "version without minor", "GET / HTTP/1\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "two-digit minor", "GET / HTTP/1.10\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "space after the version", "GET / HTTP/1.1 \r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "letter as the minor", "GET / HTTP/1.x\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "HTTP/2.0", "GET / HTTP/2.0\r\n\r\n", 0, HTTP_E_VERSION },
    { "HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 0, HTTP_E_VERSION },
    { "HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 0, HTTP_E_VERSION },
    /* Field lines. */
    { "space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "tab before the colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "obs-fold with a space", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "obs-fold with a tab", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "first field line starts with a space", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 0,
      HTTP_E_BAD_REQUEST },
    { "no colon", "GET / HTTP/1.1\r\nHost a\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "empty field name", "GET / HTTP/1.1\r\n: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "non-token character in a name", "GET / HTTP/1.1\r\nX(y): a\r\n\r\n", 0,
      HTTP_E_BAD_REQUEST },
    { "non-ASCII in a name", "GET / HTTP/1.1\r\nX\xC3\xA9: a\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "control character in a value", "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", 0,
      HTTP_E_BAD_REQUEST },
    { "escape in a value", "GET / HTTP/1.1\r\nX: \x1B[0m\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "DEL in a value", "GET / HTTP/1.1\r\nX: a\x7F\r\n\r\n", 0, HTTP_E_BAD_REQUEST },
    { "NUL in a value", RAW("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), HTTP_E_BAD_REQUEST },
    { "bad field after good ones", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC : 3\r\n\r\n", 0,
      HTTP_E_BAD_REQUEST },
};

/* Targets in neither origin- nor absolute-form, and absolute-form targets that are malformed or
 * that a WebSocket server has no use for: each refused with 400 and a reason that says why. */
struct bad_target_case {
    struct bad_case head;
    const char *why; /* words the reason must contain */
};

static const struct bad_target_case bad_targets[] = {
    { { "asterisk-form target", "OPTIONS * HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "must be a path or an absolute URI" },
    { { "authority-form target", "CONNECT a:443 HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "scheme" },
    { { "relative target", "GET chat HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "must be a path or an absolute URI" },
    { { "target starting with a colon", "GET :a HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "must be a path or an absolute URI" },
    { { "scheme starting with a digit", "GET 1http://a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "must be a path or an absolute URI" },
    { { "absolute-form, ftp scheme", "GET ftp://a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "scheme must be http, https, ws or wss" },
    { { "absolute-form, file scheme", "GET file:///etc/passwd HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "scheme" },
    { { "absolute-form, scheme longer than http", "GET httpx://a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "scheme" },
    { { "absolute-form, scheme that is a prefix of ws", "GET w://a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "scheme" },
    { { "absolute-form, no // after the scheme", "GET http:/a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "without an authority" },
    { { "absolute-form, scheme and colon only", "GET http: HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "without an authority" },
    { { "absolute-form, empty authority", "GET http:///chat HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "without an authority" },
    { { "absolute-form, nothing after //", "GET ws:// HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "without an authority" },
    { { "absolute-form, query right after //", "GET ws://?a HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "without an authority" },
    { { "absolute-form, user info", "GET http://user@a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "user info" },
    { { "absolute-form, user and password", "GET ws://u:p@a:80/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "user info" },
    { { "absolute-form, empty user info", "GET ws://@a/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "user info" },
    { { "absolute-form, fragment", "GET http://a/chat#top HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "fragment" },
    { { "absolute-form, fragment after a query", "GET ws://a/?q=1# HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "fragment" },
    { { "absolute-form, fragment right after the host", "GET ws://a#x HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "fragment" },
    { { "absolute-form, control character in the host", "GET http://a\x01z/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "request target" },
    { { "absolute-form, DEL in the path", "GET http://a/\x7F HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "request target" },
    { { "absolute-form, NUL in the host", RAW("GET http://a\0b/ HTTP/1.1\r\n\r\n"),
        HTTP_E_BAD_REQUEST }, "request target" },
    { { "absolute-form, port without a host", "GET http://:80/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, empty port", "GET http://a:/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, port 0", "GET http://a:0/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, port 65536", "GET http://a:65536/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, port of six digits", "GET http://a:000080/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, letter in the port", "GET http://a:8o/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, two ports", "GET http://a:80:80/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, unclosed IPv6 literal", "GET http://[::1/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, empty IPv6 literal", "GET http://[]:80/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, junk after an IPv6 literal", "GET http://[::1]x/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, non-hex in an IPv6 literal", "GET http://[::g]/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, bracket inside a host", "GET http://a[1]/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, short escape in the host", "GET http://a%2/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, bad escape in the host", "GET http://a%zz/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, obs-text in the host", "GET http://caf\xC3\xA9/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
    { { "absolute-form, backslash in the host", "GET http://a\\b/ HTTP/1.1\r\n\r\n", 0,
        HTTP_E_BAD_REQUEST }, "host or port" },
};

#define N_BAD (N(bad) + N(bad_targets))

/* Bad head i of both tables. */
static const struct bad_case *bad_at(size_t i)
{
    return i < N(bad) ? &bad[i] : &bad_targets[i - N(bad)].head;
}

/* The words the reason for c must contain, or NULL when any reason will do. */
static const char *reason_of(const struct bad_case *c)
{
    for (size_t i = 0; i < N(bad_targets); i++)
        if (c == &bad_targets[i].head) return bad_targets[i].why;
    return NULL;
}

Test(http, bad_heads)
{
    for (size_t i = 0; i < N_BAD; i++) {
        const struct bad_case *c = bad_at(i);
        size_t len = c->len ? c->len : strlen(c->raw);
        struct parse p;
        int rc = parse_once(&p, c->raw, len, MAX_LEN, MAX_HEADERS);
        cr_expect_eq(rc, c->want, "%s: returned %d, want %d", c->name, rc, c->want);
        if (rc < 0 && rc != HTTP_NEED_MORE)
            cr_expect_not_null(p.why, "%s: no reason given", c->name);
        const char *why = reason_of(c);
        if (why)
            cr_expect(p.why && strstr(p.why, why), "%s: reason \"%s\" does not say \"%s\"",
                      c->name, p.why ? p.why : "(none)", why);
        parse_free(&p);
    }
}

/* Fed as growing prefixes, a bad head needs more until the parser can tell, then fails with the
 * same error; it is never accepted on the way. */
Test(http, bad_heads_fed_as_growing_prefixes)
{
    for (size_t i = 0; i < N_BAD; i++) {
        const struct bad_case *c = bad_at(i);
        size_t len = c->len ? c->len : strlen(c->raw);
        struct http_scan scan = { 0 };
        int rc = HTTP_NEED_MORE;
        size_t k;
        for (k = 0; k <= len && rc == HTTP_NEED_MORE; k++) {
            struct parse p;
            parse_setup(&p, c->raw, k, MAX_HEADERS);
            rc = http_parse_request(p.buf, k, MAX_LEN, &scan, &p.req, &p.why);
            parse_free(&p);
        }
        cr_expect_eq(rc, c->want, "%s: growing prefixes gave %d at %zu bytes, want %d", c->name,
                     rc, k - 1, c->want);
    }
}

/* The header promises linear time for a head trickled in byte by byte: the search resumes where
 * it stopped instead of starting over. Checked two ways while the head is incomplete: the resume
 * point keeps up with the bytes received (but for the last three, since a "\r\n\r\n" may be
 * split across calls), and the pages already searched are made inaccessible, so a search that
 * starts over faults. They are opened again for the call that completes the head, which must
 * then parse all of it. */
Test(http, scan_resumes_where_it_stopped)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    static char raw[3 * 4096 + 100];
    size_t len = 0;
    len += (size_t)snprintf(raw, sizeof raw, "GET /chat HTTP/1.1\r\nHost: example.com\r\n");
    while (len + 1012 < sizeof raw - 2) {
        memcpy(raw + len, "X-Filler: ", 10);
        memset(raw + len + 10, 'v', 1000);
        memcpy(raw + len + 1010, "\r\n", 2);
        len += 1012;
    }
    memcpy(raw + len, "\r\n", 2);
    len += 2;
    cr_assert_gt(len, 2 * page, "the head must span several pages");

    struct http_scan scan = { 0 };
    struct parse p;
    parse_setup(&p, raw, len, MAX_HEADERS);
    uintptr_t first_page = (uintptr_t)p.in.map;
    uintptr_t closed_to = first_page;
    size_t last_pos = 0;
    for (size_t k = 0; k < len; k++) {
        int rc = http_parse_request(p.buf, k, sizeof raw, &scan, &p.req, &p.why);
        cr_assert_eq(rc, HTTP_NEED_MORE, "prefix of %zu bytes: returned %d", k, rc);
        cr_expect_geq(scan.pos, last_pos, "prefix of %zu bytes: resume point went back", k);
        cr_expect(scan.pos <= k && scan.pos + 3 >= k,
                  "prefix of %zu bytes: resumes at %zu, not near the end", k, scan.pos);
        last_pos = scan.pos;
        /* Close every whole page below the resume point, less the 3 bytes it may look back. */
        uintptr_t keep = (uintptr_t)p.buf + (scan.pos >= 3 ? scan.pos - 3 : 0);
        uintptr_t upto = keep / page * page;
        if (upto > closed_to) {
            cr_assert_eq(mprotect((void *)first_page, upto - first_page, PROT_NONE), 0);
            closed_to = upto;
        }
    }
    cr_assert_gt(closed_to, first_page, "no page was closed: the test proves nothing");
    cr_assert_eq(mprotect((void *)first_page, closed_to - first_page, PROT_READ), 0);
    cr_expect_eq(http_parse_request(p.buf, len, sizeof raw, &scan, &p.req, &p.why), (int)len);
    parse_free(&p);
}

/* A bare LF is answered when it arrives, not when the client's timeout runs out: the head is
 * never complete, so waiting for the blank line would wait forever. */
Test(http, bare_lf_refused_on_arrival)
{
    static const char raw[] = "GET / HTTP/1.1\nHost: a\n";
    size_t lf = (size_t)(strchr(raw, '\n') - raw);
    struct http_scan scan = { 0 };
    for (size_t k = 0; k <= lf + 1; k++) {
        struct parse p;
        parse_setup(&p, raw, k, MAX_HEADERS);
        int rc = http_parse_request(p.buf, k, MAX_LEN, &scan, &p.req, &p.why);
        int want = k <= lf ? HTTP_NEED_MORE : HTTP_E_BAD_REQUEST;
        cr_expect_eq(rc, want, "prefix of %zu bytes: returned %d, want %d", k, rc, want);
        parse_free(&p);
    }
}

/* ---- Limits ------------------------------------------------------------------------------- */

Test(http, head_size_limit)
{
    static const char head[] = "GET /chat HTTP/1.1\r\nHost: example.com\r\nX: 0123456789\r\n\r\n";
    size_t n = sizeof head - 1;
    const struct {
        const char *name;
        size_t len;     /* bytes of head given */
        size_t max_len;
        int want;       /* 0: the head length */
    } cases[] = {
        { "head of exactly max_len", n, n, 0 },
        { "head one under max_len", n, n + 1, 0 },
        { "head one over, terminator beyond the limit", n, n - 1, HTTP_E_TOO_LARGE },
        { "head far over, terminator beyond the limit", n, 20, HTTP_E_TOO_LARGE },
        { "max_len bytes received, no terminator yet", n - 1, n - 1, HTTP_E_TOO_LARGE },
        { "max_len bytes of a long field line", n - 4, n - 4, HTTP_E_TOO_LARGE },
        { "one byte short of max_len, no terminator", n - 2, n - 1, HTTP_NEED_MORE },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct parse p;
        int rc = parse_once(&p, head, cases[i].len, cases[i].max_len, MAX_HEADERS);
        int want = cases[i].want ? cases[i].want : (int)n;
        cr_expect_eq(rc, want, "%s: returned %d, want %d", cases[i].name, rc, want);
        parse_free(&p);
    }
}

/* Trickled in a byte at a time, a head over the limit is refused as soon as max_len bytes are in,
 * with or without more after them. */
Test(http, head_size_limit_trickled)
{
    char raw[9000];
    static const char start[] = "GET / HTTP/1.1\r\nX-Long: ";
    memcpy(raw, start, sizeof start - 1);
    memset(raw + sizeof start - 1, 'v', sizeof raw - (sizeof start - 1));
    memcpy(raw + sizeof raw - 4, "\r\n\r\n", 4);
    size_t max_len = 8192;
    struct http_scan scan = { 0 };
    struct parse p;
    parse_setup(&p, raw, sizeof raw, MAX_HEADERS);
    int rc = HTTP_NEED_MORE;
    size_t k;
    for (k = 0; k <= sizeof raw && rc == HTTP_NEED_MORE; k++)
        rc = http_parse_request(p.buf, k, max_len, &scan, &p.req, &p.why);
    cr_expect_eq(rc, HTTP_E_TOO_LARGE, "returned %d", rc);
    cr_expect_eq(k - 1, max_len, "refused at %zu bytes, want %zu", k - 1, max_len);
    parse_free(&p);

    /* The whole 9000-byte head in one call. */
    parse_once(&p, raw, sizeof raw, max_len, MAX_HEADERS);
    cr_expect_eq(p.rc, HTTP_E_TOO_LARGE, "whole: returned %d", p.rc);
    parse_free(&p);
    /* And with a limit it fits in. */
    parse_once(&p, raw, sizeof raw, sizeof raw, MAX_HEADERS);
    cr_expect_eq(p.rc, (int)sizeof raw, "limit %zu: returned %d", sizeof raw, p.rc);
    parse_free(&p);
}

Test(http, field_count_limit)
{
    static const struct {
        const char *name;
        const char *raw;
        size_t max_headers;
        int want; /* 0: the head length */
    } cases[] = {
        { "3 fields, room for 3", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 3, 0 },
        { "3 fields, room for 2", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 2,
          HTTP_E_TOO_LARGE },
        { "3 fields, room for 1", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 1,
          HTTP_E_TOO_LARGE },
        { "no fields, room for none", "GET / HTTP/1.1\r\n\r\n", 0, 0 },
        { "1 field, room for none", "GET / HTTP/1.1\r\nA: 1\r\n\r\n", 0, HTTP_E_TOO_LARGE },
        { "17 fields, room for 16",
          "GET / HTTP/1.1\r\nA:1\r\nB:1\r\nC:1\r\nD:1\r\nE:1\r\nF:1\r\nG:1\r\nH:1\r\nI:1\r\n"
          "J:1\r\nK:1\r\nL:1\r\nM:1\r\nN:1\r\nO:1\r\nP:1\r\nQ:1\r\n\r\n",
          16, HTTP_E_TOO_LARGE },
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t len = strlen(cases[i].raw);
        struct parse p;
        /* The header array holds exactly max_headers entries before its guard page. */
        int rc = parse_once(&p, cases[i].raw, len, MAX_LEN, cases[i].max_headers);
        int want = cases[i].want ? cases[i].want : (int)len;
        cr_expect_eq(rc, want, "%s: returned %d, want %d", cases[i].name, rc, want);
        if (rc < 0) cr_expect_not_null(p.why, "%s: no reason given", cases[i].name);
        parse_free(&p);
    }
}

/* ---- Helpers ---------------------------------------------------------------------------- */

static const char helper_head[] =
    "GET / HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "Connection: keep-alive, Upgrade\r\n"
    "X-Dup: one\r\n"
    "x-dup: two\r\n"
    "Accept: , a ,, b\t,\r\n"
    "Accept: c\r\n"
    "X-Empty:\r\n"
    "Accept: ,\r\n"
    "Upgrade: websocket\r\n"
    "Conn: upgrade\r\n"
    "\r\n";

Test(http, find_header)
{
    struct parse p;
    cr_assert_gt(parse_once(&p, helper_head, sizeof helper_head - 1, MAX_LEN, MAX_HEADERS), 0);
    static const struct {
        const char *name;
        int want;
        const char *value;
    } cases[] = {
        { "Host", 1, "example.com" },
        { "host", 1, "example.com" },
        { "HOST", 1, "example.com" },
        { "X-Dup", -1, NULL },  /* twice, with different case */
        { "Accept", -1, NULL }, /* three lines */
        { "X-Empty", 1, "" },
        { "Missing", 0, NULL },
        { "Hos", 0, NULL },     /* a prefix of a name is not the name */
        { "Hostx", 0, NULL },
        { "Conn", 1, "upgrade" },
        { "", 0, NULL },
    };
    for (size_t i = 0; i < N(cases); i++) {
        const char *v = NULL;
        size_t len = 0;
        int rc = http_find_header(&p.req, cases[i].name, &v, &len);
        cr_expect_eq(rc, cases[i].want, "\"%s\": returned %d, want %d", cases[i].name, rc,
                     cases[i].want);
        if (rc == 1 && cases[i].value)
            cr_expect(span_is(v, len, cases[i].value), "\"%s\": value \"%.*s\"", cases[i].name,
                      (int)len, v);
    }
    parse_free(&p);
}

Test(http, list_contains)
{
    struct parse p;
    cr_assert_gt(parse_once(&p, helper_head, sizeof helper_head - 1, MAX_LEN, MAX_HEADERS), 0);
    static const struct {
        const char *field;
        const char *token;
        bool want;
    } cases[] = {
        { "Connection", "upgrade", true },     /* "keep-alive, Upgrade" */
        { "Connection", "Upgrade", true },
        { "Connection", "UPGRADE", true },
        { "connection", "upgrade", true },     /* field names are case-insensitive too */
        { "Connection", "keep-alive", true },
        { "Connection", "keep", false },       /* whole elements only */
        { "Connection", "alive", false },
        { "Connection", "upgrad", false },
        { "Connection", "close", false },
        { "Connection", "keep-alive, Upgrade", false },
        { "Accept", "a", true },               /* empty elements and blanks skipped */
        { "Accept", "b", true },
        { "Accept", "c", true },               /* on a later line of the same field */
        { "Accept", "", false },
        { "Accept", "d", false },
        { "Conn", "upgrade", true },
        { "Conn", "keep-alive", false },       /* only lines of the field asked for */
        { "Upgrade", "websocket", true },
        { "Missing", "x", false },
        { "X-Empty", "", false },
    };
    for (size_t i = 0; i < N(cases); i++) {
        bool got = http_list_contains(&p.req, cases[i].field, cases[i].token);
        cr_expect_eq(got, cases[i].want, "%s contains \"%s\": %d", cases[i].field,
                     cases[i].token, got);
    }
    parse_free(&p);
}

/* The list spread over several lines of one field, split from the others. */
Test(http, list_contains_across_lines)
{
    static const char head[] = "GET / HTTP/1.1\r\n"
                               "Connection: keep-alive\r\n"
                               "Host: h\r\n"
                               "Connection: Upgrade\r\n"
                               "\r\n";
    struct parse p;
    cr_assert_gt(parse_once(&p, head, sizeof head - 1, MAX_LEN, MAX_HEADERS), 0);
    cr_expect(http_list_contains(&p.req, "Connection", "upgrade"), "upgrade on the second line");
    cr_expect(http_list_contains(&p.req, "Connection", "keep-alive"), "keep-alive on the first");
    cr_expect_not(http_list_contains(&p.req, "Connection", "h"), "Host value leaked in");
    parse_free(&p);
}

Test(http, list_next_iterates_every_element)
{
    struct parse p;
    cr_assert_gt(parse_once(&p, helper_head, sizeof helper_head - 1, MAX_LEN, MAX_HEADERS), 0);
    static const char *const want[] = { "a", "b", "c" };
    size_t pos = 0, len, n = 0;
    const char *elem;
    while (http_list_next(&p.req, "accept", &pos, &elem, &len)) {
        cr_assert_lt(n, N(want), "more elements than expected: \"%.*s\"", (int)len, elem);
        cr_expect(span_is(elem, len, want[n]), "element %zu: \"%.*s\", want \"%s\"", n, (int)len,
                  elem, want[n]);
        n++;
    }
    cr_expect_eq(n, N(want), "%zu elements, want %zu", n, N(want));
    /* At the end it stays at the end. */
    cr_expect_not(http_list_next(&p.req, "accept", &pos, &elem, &len), "element after the end");
    pos = 0;
    cr_expect_not(http_list_next(&p.req, "X-Empty", &pos, &elem, &len), "empty field");
    pos = 0;
    cr_expect_not(http_list_next(&p.req, "Missing", &pos, &elem, &len), "missing field");
    parse_free(&p);
}

Test(http, token_equals)
{
    static const struct {
        const char *s;
        size_t len;
        const char *lit;
        bool want;
    } cases[] = {
        { "websocket", 9, "websocket", true },
        { "WebSocket", 9, "websocket", true },
        { "WEBSOCKET", 9, "websocket", true },
        { "websockets", 10, "websocket", false },
        { "websocket", 8, "websocket", false }, /* counted string shorter */
        { "websocketX", 9, "websocket", true }, /* only len bytes count */
        { "", 0, "", true },
        { "a", 1, "", false },
        { "13", 2, "13", true },
        { "1\0", 2, "1", false },
    };
    for (size_t i = 0; i < N(cases); i++) {
        bool got = http_token_equals(cases[i].s, cases[i].len, cases[i].lit);
        cr_expect_eq(got, cases[i].want, "case %zu: \"%.*s\" vs \"%s\": %d", i,
                     (int)cases[i].len, cases[i].s, cases[i].lit, got);
    }
}

Test(http, status_text)
{
    static const struct {
        int status;
        const char *want;
    } cases[] = {
        { 101, "Switching Protocols" }, { 200, "OK" },
        { 400, "Bad Request" },         { 404, "Not Found" },
        { 405, "Method Not Allowed" },  { 426, "Upgrade Required" },
        { 431, "Request Header Fields Too Large" },
        { 505, "HTTP Version Not Supported" },
        { 299, "Error" },               { 0, "Error" },
        { -400, "Error" },
    };
    for (size_t i = 0; i < N(cases); i++)
        cr_expect_str_eq(http_status_text(cases[i].status), cases[i].want, "status %d",
                         cases[i].status);
}

/* ---- The guard page itself ------------------------------------------------------------- */

/* The harness must really fault on an over-read, or every guarded test above proves nothing.
 * The fault is caught by a handler of our own rather than left to Criterion, so the test reads
 * the same with and without ASan (whose own handler would otherwise report it first). */
static void exit_on_fault(int sig)
{
    (void)sig;
    _exit(77);
}

static void catch_faults(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_on_fault;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

Test(guard, read_past_the_copy_faults, .exit_code = 77)
{
    struct guard g;
    const volatile uint8_t *p = guard_copy(&g, "abc", 3);
    cr_expect_eq(p[2], 'c');
    catch_faults();
    (void)p[3];
}

Test(guard, write_to_a_sealed_copy_faults, .exit_code = 77)
{
    struct guard g;
    volatile uint8_t *p = guard_copy(&g, "abc", 3);
    p[0] = 'x';
    guard_seal(&g);
    catch_faults();
    p[0] = 'y';
}

/* An empty copy is the guard page itself. */
Test(guard, empty_copy_faults, .exit_code = 77)
{
    struct guard g;
    const volatile uint8_t *p = guard_copy(&g, "", 0);
    catch_faults();
    (void)p[0];
}
