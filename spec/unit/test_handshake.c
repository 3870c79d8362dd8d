/* Tests for the WebSocket opening handshake (core/handshake.h): which parsed requests are valid
 * upgrades and which error each broken one gets, the accept key against the RFC 6455 sample,
 * subprotocol matching, and the 101 response. Requests go through the real HTTP parser. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "handshake.h"
#include "http.h"
#include "origin.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_HEADERS 32

/* The pieces of the RFC 6455 section 1.3 sample request, to build variants from. */
#define LINE "GET /chat HTTP/1.1\r\n"
#define HOST "Host: server.example.com\r\n"
#define UPGRADE "Upgrade: websocket\r\n"
#define CONNECTION "Connection: Upgrade\r\n"
#define KEY_VALUE "dGhlIHNhbXBsZSBub25jZQ=="
#define KEY "Sec-WebSocket-Key: " KEY_VALUE "\r\n"
#define VERSION "Sec-WebSocket-Version: 13\r\n"
#define ORIGIN "Origin: http://example.com\r\n"
#define END "\r\n"
#define ACCEPT_VALUE "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* A request parsed from a guard-page copy, kept mapped while hs_check_request's results (which
 * point into it) are examined. */
struct request {
    struct guard g;
    struct http_request req;
    struct http_header headers[MAX_HEADERS];
    const char *buf;
    size_t len;
};

static void request_parse(struct request *r, const char *raw)
{
    memset(r, 0, sizeof *r);
    r->len = strlen(raw);
    r->buf = guard_copy_str(&r->g, raw, r->len);
    guard_seal(&r->g);
    r->req.headers = r->headers;
    r->req.max_headers = MAX_HEADERS;
    struct http_scan scan = { 0 };
    const char *why = NULL;
    int rc = http_parse_request(r->buf, r->len, 8192, &scan, &r->req, &why);
    cr_assert_eq(rc, (int)r->len, "test request does not parse: %d (%s)\n%s", rc,
                 why ? why : "", raw);
}

static void request_free(struct request *r) { guard_free(&r->g); }

static bool span_is(const char *s, size_t len, const char *want)
{
    return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

struct check_case {
    const char *name;
    const char *raw;
    int want;
};

static const struct check_case checks[] = {
    /* Valid upgrades. */
    { "RFC 6455 sample", LINE HOST UPGRADE CONNECTION KEY ORIGIN VERSION END, 0 },
    { "minimal upgrade", LINE HOST UPGRADE CONNECTION KEY VERSION END, 0 },
    { "fields in another order", LINE VERSION KEY CONNECTION UPGRADE HOST END, 0 },
    { "field names in lower case",
      LINE "host: a\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
           "sec-websocket-key: " KEY_VALUE "\r\nsec-websocket-version: 13\r\n" END, 0 },
    { "field names in upper case",
      LINE "HOST: a\r\nUPGRADE: websocket\r\nCONNECTION: Upgrade\r\n"
           "SEC-WEBSOCKET-KEY: " KEY_VALUE "\r\nSEC-WEBSOCKET-VERSION: 13\r\n" END, 0 },
    { "Upgrade token in mixed case", LINE HOST "Upgrade: WebSocket\r\n" CONNECTION KEY VERSION END,
      0 },
    { "Upgrade token in upper case", LINE HOST "Upgrade: WEBSOCKET\r\n" CONNECTION KEY VERSION END,
      0 },
    { "Connection token in lower case", LINE HOST UPGRADE "Connection: upgrade\r\n" KEY VERSION END,
      0 },
    { "Connection token in upper case", LINE HOST UPGRADE "Connection: UPGRADE\r\n" KEY VERSION END,
      0 },
    { "Connection: keep-alive, Upgrade (Firefox)",
      LINE HOST UPGRADE "Connection: keep-alive, Upgrade\r\n" KEY VERSION END, 0 },
    { "Connection list over two lines",
      LINE HOST UPGRADE "Connection: keep-alive\r\nConnection: Upgrade\r\n" KEY VERSION END, 0 },
    { "Upgrade list with another protocol first",
      LINE HOST "Upgrade: h2c, websocket\r\n" CONNECTION KEY VERSION END, 0 },
    { "another valid key", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" VERSION END, 0 },
    { "key with + and /", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: ++++////AAAAzzzz0000gg==\r\n" VERSION END, 0 },
    /* Method. */
    { "POST", "POST /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, HS_E_METHOD },
    /* HEAD is a plain request (static files); only GET upgrades. */
    { "HEAD, even asking for an upgrade",
      "HEAD /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, HS_NOT_UPGRADE },
    { "plain HEAD", "HEAD / HTTP/1.1\r\n" HOST END, HS_NOT_UPGRADE },
    { "PUT without upgrade fields", "PUT / HTTP/1.1\r\n" HOST END, HS_E_METHOD },
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
    { "get in lower case", "get /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END,
      HS_E_METHOD },
    { "GETX", "GETX /chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, HS_E_METHOD },
    /* Not an upgrade at all. */
    { "plain GET", LINE HOST END, HS_NOT_UPGRADE },
    { "plain GET with Connection: keep-alive", LINE HOST "Connection: keep-alive\r\n" END,
      HS_NOT_UPGRADE },
    { "missing Upgrade, other fields present", LINE HOST CONNECTION KEY VERSION END,
      HS_NOT_UPGRADE },
    { "Upgrade to another protocol", LINE HOST "Upgrade: h2c\r\n" CONNECTION KEY VERSION END,
      HS_NOT_UPGRADE },
    { "Upgrade: websockets", LINE HOST "Upgrade: websockets\r\n" CONNECTION KEY VERSION END,
      HS_NOT_UPGRADE },
    { "plain GET over HTTP/1.0", "GET / HTTP/1.0\r\n" HOST END, HS_NOT_UPGRADE },
    /* HTTP/1.0 may leave Host out of plain requests; HTTP/1.1 and upgrades may not. */
    { "plain GET over HTTP/1.0 without Host", "GET / HTTP/1.0\r\n" END, HS_NOT_UPGRADE },
    { "plain GET over HTTP/1.1 without Host", "GET / HTTP/1.1\r\n" END, HS_E_BAD_REQUEST },
    /* Connection. */
    { "missing Connection", LINE HOST UPGRADE KEY VERSION END, HS_E_BAD_REQUEST },
    { "Connection without upgrade", LINE HOST UPGRADE "Connection: keep-alive\r\n" KEY VERSION END,
      HS_E_BAD_REQUEST },
    { "Connection: upgraded", LINE HOST UPGRADE "Connection: upgraded\r\n" KEY VERSION END,
      HS_E_BAD_REQUEST },
    { "Connection: websocket", LINE HOST UPGRADE "Connection: websocket\r\n" KEY VERSION END,
      HS_E_BAD_REQUEST },
    { "upgrade token in another field", LINE HOST UPGRADE "Connexion: Upgrade\r\n" KEY VERSION END,
      HS_E_BAD_REQUEST },
    /* Version. */
    { "version missing", LINE HOST UPGRADE CONNECTION KEY END, HS_E_VERSION },
    { "version 8", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 8\r\n" END,
      HS_E_VERSION },
    { "version 12", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 12\r\n" END,
      HS_E_VERSION },
    { "version 14", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 14\r\n" END,
      HS_E_VERSION },
    { "version 013", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 013\r\n" END,
      HS_E_VERSION },
    { "version 131", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 131\r\n" END,
      HS_E_VERSION },
    { "version empty", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version:\r\n" END,
      HS_E_VERSION },
    { "version list 13, 8", LINE HOST UPGRADE CONNECTION KEY "Sec-WebSocket-Version: 13, 8\r\n" END,
      HS_E_VERSION },
    { "version twice", LINE HOST UPGRADE CONNECTION KEY VERSION VERSION END, HS_E_VERSION },
    /* Key. */
    { "key missing", LINE HOST UPGRADE CONNECTION VERSION END, HS_E_BAD_REQUEST },
    { "key twice", LINE HOST UPGRADE CONNECTION KEY KEY VERSION END, HS_E_BAD_REQUEST },
    { "key twice, different values", LINE HOST UPGRADE CONNECTION KEY
      "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key empty", LINE HOST UPGRADE CONNECTION "Sec-WebSocket-Key:\r\n" VERSION END,
      HS_E_BAD_REQUEST },
    { "key of 23 characters", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key of 25 characters", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key of 28 characters (20 bytes)", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAAAA==\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key with a character outside base64", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key with a space inside", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ==\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key with URL-safe alphabet", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ-_==\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key without padding (18 bytes)", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key with one pad character (17 bytes)", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA=\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key with a pad character inside", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNh=XBsZSBub25jZQ==\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key with three pad characters", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ===\r\n" VERSION END, HS_E_BAD_REQUEST },
    { "key of pad characters only", LINE HOST UPGRADE CONNECTION
      "Sec-WebSocket-Key: ========================\r\n" VERSION END, HS_E_BAD_REQUEST },
    /* Host. */
    { "Host missing", LINE UPGRADE CONNECTION KEY VERSION END, HS_E_BAD_REQUEST },
    { "Host twice", LINE HOST HOST UPGRADE CONNECTION KEY VERSION END, HS_E_BAD_REQUEST },
    { "Host twice, different case", LINE HOST "host: other\r\n" UPGRADE CONNECTION KEY VERSION END,
      HS_E_BAD_REQUEST },
    /* An upgrade needs HTTP/1.1. */
    { "upgrade over HTTP/1.0",
      "GET /chat HTTP/1.0\r\n" HOST UPGRADE CONNECTION KEY VERSION END, HS_E_BAD_REQUEST },
    /* Absolute-form targets (RFC 7230 section 5.3.2) upgrade like origin-form ones; the Host
     * field is still required (RFC 7230 section 5.4), though its value is then ignored. */
    { "absolute-form http target",
      "GET http://server.example.com/chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END,
      0 },
    { "absolute-form ws target with a port",
      "GET ws://server.example.com:80/chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END,
      0 },
    { "absolute-form wss target, upper-case scheme, empty path",
      "GET WSS://server.example.com HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 0 },
    { "absolute-form target naming another host than Host",
      "GET ws://other.example/chat HTTP/1.1\r\n" HOST UPGRADE CONNECTION KEY VERSION END, 0 },
    { "absolute-form target without a Host field",
      "GET ws://server.example.com/chat HTTP/1.1\r\n" UPGRADE CONNECTION KEY VERSION END,
      HS_E_BAD_REQUEST },
    { "absolute-form target with two Host fields",
      "GET ws://server.example.com/chat HTTP/1.1\r\n" HOST HOST UPGRADE CONNECTION KEY VERSION
      END, HS_E_BAD_REQUEST },
    { "absolute-form target, plain GET", "GET http://server.example.com/ HTTP/1.1\r\n" HOST END,
      HS_NOT_UPGRADE },
    { "absolute-form target, plain GET over HTTP/1.0 without Host",
      "GET http://server.example.com/ HTTP/1.0\r\n" END, HS_NOT_UPGRADE },
    { "absolute-form target, POST", "POST ws://server.example.com/ HTTP/1.1\r\n" HOST UPGRADE
      CONNECTION KEY VERSION END, HS_E_METHOD },
};

Test(handshake, check_request_table)
{
    for (size_t i = 0; i < N(checks); i++) {
        const struct check_case *c = &checks[i];
        struct request r;
        request_parse(&r, c->raw);
        struct hs_upgrade up;
        const char *why = NULL;
        int rc = hs_check_request(&r.req, &up, &why);
        cr_expect_eq(rc, c->want, "%s: returned %d, want %d (%s)", c->name, rc, c->want,
                     rc < 0 && why ? why : "");
        if (rc < 0) cr_expect_not_null(why, "%s: no reason given", c->name);
        if (rc == 0) {
            cr_expect_not_null(up.key, "%s: no key", c->name);
            if (up.key)
                cr_expect(up.key >= r.buf && up.key + HS_KEY_LEN <= r.buf + r.len,
                          "%s: key does not point into the request", c->name);
        }
        request_free(&r);
    }
}

Test(handshake, valid_upgrade_fills_every_field)
{
    struct request r;
    request_parse(&r, LINE HOST UPGRADE CONNECTION KEY ORIGIN VERSION END);
    struct hs_upgrade up;
    const char *why = NULL;
    cr_assert_eq(hs_check_request(&r.req, &up, &why), 0);
    cr_expect(up.key && memcmp(up.key, KEY_VALUE, HS_KEY_LEN) == 0, "key");
    cr_expect(span_is(up.path, up.path_len, "/chat"), "path");
    cr_expect_eq(up.query_len, 0, "query of a target without '?'");
    cr_expect(span_is(up.host, up.host_len, "server.example.com"), "host");
    cr_expect(span_is(up.origin, up.origin_len, "http://example.com"), "origin");
    request_free(&r);
}

Test(handshake, origin_absent_is_null)
{
    struct request r;
    request_parse(&r, LINE HOST UPGRADE CONNECTION KEY VERSION END);
    struct hs_upgrade up;
    const char *why = NULL;
    cr_assert_eq(hs_check_request(&r.req, &up, &why), 0);
    cr_expect_null(up.origin, "origin set without an Origin field");
    request_free(&r);
}

Test(handshake, path_and_query_split)
{
    static const struct {
        const char *target;
        const char *path;
        const char *query;
    } cases[] = {
        { "/", "/", "" },
        { "/chat", "/chat", "" },
        { "/chat?room=1", "/chat", "room=1" },
        { "/chat?room=1&user=a", "/chat", "room=1&user=a" },
        { "/?x", "/", "x" },
        { "/chat?", "/chat", "" },
        { "/a?b?c", "/a", "b?c" },
        { "/a/b/c?q=%20", "/a/b/c", "q=%20" },
    };
    for (size_t i = 0; i < N(cases); i++) {
        char raw[512];
        /* Both for a valid upgrade and for a plain GET, which gets path and query too. */
        for (int upgrade = 0; upgrade < 2; upgrade++) {
            snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\n%s%s", cases[i].target,
                     HOST, upgrade ? UPGRADE CONNECTION KEY VERSION END : END);
            struct request r;
            request_parse(&r, raw);
            struct hs_upgrade up;
            const char *why = NULL;
            int rc = hs_check_request(&r.req, &up, &why);
            cr_expect_eq(rc, upgrade ? 0 : HS_NOT_UPGRADE, "%s: returned %d", cases[i].target,
                         rc);
            cr_expect(span_is(up.path, up.path_len, cases[i].path), "%s: path \"%.*s\"",
                      cases[i].target, (int)up.path_len, up.path ? up.path : "");
            cr_expect_eq(up.query_len, strlen(cases[i].query), "%s: query length %zu",
                         cases[i].target, up.query_len);
            if (up.query_len)
                cr_expect(span_is(up.query, up.query_len, cases[i].query),
                          "%s: query \"%.*s\"", cases[i].target, (int)up.query_len, up.query);
            if (!upgrade)
                cr_expect(span_is(up.host, up.host_len, "server.example.com"),
                          "%s: host of a plain GET", cases[i].target);
            request_free(&r);
        }
    }
}

/* With an absolute target, path and query come from the URI (an empty path is "/"), and host is
 * the URI's authority whatever the Host field says (RFC 7230 section 5.4). */
Test(handshake, absolute_target_gives_path_query_and_host)
{
    static const struct {
        const char *name;
        const char *target;
        const char *host_field; /* NULL: none (HTTP/1.0 plain GETs only) */
        const char *path;
        const char *query;
        const char *host;
    } cases[] = {
        { "http", "http://server.example.com/chat", "server.example.com", "/chat", "",
          "server.example.com" },
        { "ws with a port and a query", "ws://server.example.com:8080/chat?room=1&u=a",
          "server.example.com:8080", "/chat", "room=1&u=a", "server.example.com:8080" },
        { "https, root", "https://example.com/", "example.com", "/", "", "example.com" },
        { "wss, deep path", "wss://example.com:443/a/b/c?x", "example.com:443", "/a/b/c", "x",
          "example.com:443" },
        { "upper-case scheme, case kept in host and path", "WSS://Example.COM/Chat",
          "example.com", "/Chat", "", "Example.COM" },
        { "empty path is /", "http://example.com", "example.com", "/", "", "example.com" },
        { "empty path with a query", "ws://example.com?room=2", "example.com", "/", "room=2",
          "example.com" },
        { "empty path with an empty query", "ws://example.com?", "example.com", "/", "",
          "example.com" },
        { "IPv6 literal and port", "ws://[::1]:8080/chat", "[::1]:8080", "/chat", "",
          "[::1]:8080" },
        { "IPv6 literal without a port", "http://[2001:db8::1]/?a=b", "[2001:db8::1]", "/",
          "a=b", "[2001:db8::1]" },
        { "Host field of another host is ignored", "ws://a.example:9000/x", "b.example:80",
          "/x", "", "a.example:9000" },
        { "Host field of another port is ignored", "ws://127.0.0.1:9001/", "127.0.0.1:9002", "/",
          "", "127.0.0.1:9001" },
        { "a URI in the query is not the authority", "http://a.example/?next=http://b.example/",
          "c.example", "/", "next=http://b.example/", "a.example" },
        { "HTTP/1.0 without a Host field", "http://example.com/old", NULL, "/old", "",
          "example.com" },
    };
    for (size_t i = 0; i < N(cases); i++) {
        /* Both for a valid upgrade and for a plain GET (static files get the same path). */
        for (int upgrade = 0; upgrade < 2; upgrade++) {
            if (upgrade && !cases[i].host_field) continue; /* upgrades need HTTP/1.1 */
            char raw[512], host[256] = "";
            if (cases[i].host_field)
                snprintf(host, sizeof host, "Host: %s\r\n", cases[i].host_field);
            snprintf(raw, sizeof raw, "GET %s HTTP/1.%d\r\n%s%s", cases[i].target,
                     cases[i].host_field ? 1 : 0, host,
                     upgrade ? UPGRADE CONNECTION KEY VERSION END : END);
            struct request r;
            request_parse(&r, raw);
            cr_assert_not_null(r.req.authority, "%s: no authority", cases[i].name);
            struct hs_upgrade up;
            const char *why = NULL;
            int rc = hs_check_request(&r.req, &up, &why);
            const char *how = upgrade ? "upgrade" : "plain GET";
            cr_expect_eq(rc, upgrade ? 0 : HS_NOT_UPGRADE, "%s, %s: returned %d (%s)",
                         cases[i].name, how, rc, rc < 0 && why ? why : "");
            cr_expect(span_is(up.path, up.path_len, cases[i].path), "%s, %s: path \"%.*s\"",
                      cases[i].name, how, (int)up.path_len, up.path ? up.path : "");
            cr_expect(up.query && up.query_len == strlen(cases[i].query) &&
                          memcmp(up.query, cases[i].query, up.query_len) == 0,
                      "%s, %s: query \"%.*s\"", cases[i].name, how, (int)up.query_len,
                      up.query ? up.query : "");
            cr_expect(span_is(up.host, up.host_len, cases[i].host), "%s, %s: host \"%.*s\"",
                      cases[i].name, how, (int)up.host_len, up.host ? up.host : "");
            /* The host is the authority inside the target, not a copy or the Host field. */
            cr_expect(up.host == r.req.authority && up.host > r.buf &&
                          up.host + up.host_len < r.buf + r.len,
                      "%s, %s: host does not point at the target's authority", cases[i].name,
                      how);
            request_free(&r);
        }
    }
}

/* What the origin check (core/origin.h, by default: Origin's host[:port] must be the request's)
 * is given for an absolute target: the target's authority, not the Host field. A page served by
 * the host in the target may connect; one served by the host in the Host field may not. */
Test(handshake, origin_compared_with_the_absolute_target_authority)
{
    static const struct {
        const char *name;
        const char *target;
        const char *host_field;
        const char *origin;
        bool allowed;
    } cases[] = {
        { "origin of the target's host", "ws://foreign.example/chat", "127.0.0.1:9001",
          "http://foreign.example", true },
        { "origin of the target's host and port", "http://foreign.example:8080/",
          "127.0.0.1:9001", "http://foreign.example:8080", true },
        { "origin of the Host field's host", "ws://foreign.example/chat", "127.0.0.1:9001",
          "http://127.0.0.1:9001", false },
        { "origin of the target's host on another port", "ws://127.0.0.1:9001/", "127.0.0.1:9001",
          "http://127.0.0.1:9002", false },
        { "origin of the target's IPv6 literal", "ws://[::1]:9001/", "localhost:9001",
          "http://[::1]:9001", true },
        { "origin of the target's host, any case", "WS://Foreign.Example/", "127.0.0.1",
          "HTTP://FOREIGN.example", true },
        { "same host in both, as in origin-form", "ws://127.0.0.1:9001/", "127.0.0.1:9001",
          "http://127.0.0.1:9001", true },
    };
    const struct origin_policy same_host = { 0 };
    for (size_t i = 0; i < N(cases); i++) {
        char raw[512];
        snprintf(raw, sizeof raw, "GET %s HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\n%s",
                 cases[i].target, cases[i].host_field, cases[i].origin,
                 UPGRADE CONNECTION KEY VERSION END);
        struct request r;
        request_parse(&r, raw);
        struct hs_upgrade up;
        const char *why = NULL;
        cr_assert_eq(hs_check_request(&r.req, &up, &why), 0, "%s: %s", cases[i].name,
                     why ? why : "");
        bool got = origin_allowed(&same_host, up.origin, up.origin_len, up.host, up.host_len);
        cr_expect_eq(got, cases[i].allowed, "%s: allowed %d, want %d (host \"%.*s\")",
                     cases[i].name, got, cases[i].allowed, (int)up.host_len, up.host);
        request_free(&r);
    }
}

Test(handshake, accept_key)
{
    static const struct {
        const char *key;
        const char *accept;
    } cases[] = {
        { KEY_VALUE, ACCEPT_VALUE }, /* RFC 6455 section 1.3 */
        { "x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk=" },
        { "AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI=" },
    };
    for (size_t i = 0; i < N(cases); i++) {
        /* The key is read from a guard page: exactly HS_KEY_LEN bytes, no NUL after it. */
        struct guard g;
        const char *key = guard_copy_str(&g, cases[i].key, HS_KEY_LEN);
        char out[HS_ACCEPT_LEN + 1];
        memset(out, '#', sizeof out);
        hs_accept_key(key, out);
        cr_expect_str_eq(out, cases[i].accept, "key %s", cases[i].key);
        guard_free(&g);
    }
}

Test(handshake, protocol_offered)
{
    struct request r;
    request_parse(&r, LINE HOST UPGRADE CONNECTION KEY VERSION
                  "Sec-WebSocket-Protocol: chat, superchat\r\n"
                  "Sec-WebSocket-Protocol:  v2.json.example ,\r\n"
                  "sec-websocket-protocol: mqtt\r\n"
                  "X-Not-Protocol: other\r\n" END);
    static const struct {
        const char *protocol;
        size_t len;
        bool want;
    } cases[] = {
        { "chat", 4, true },
        { "superchat", 9, true },
        { "v2.json.example", 15, true }, /* second line, blanks and empty element around it */
        { "mqtt", 4, true },             /* field name in lower case */
        { "chatty", 4, true },           /* only len bytes count: "chat" */
        { "Chat", 4, false },            /* subprotocols are case-sensitive */
        { "CHAT", 4, false },
        { "SuperChat", 9, false },
        { "cha", 3, false },             /* whole elements only */
        { "hat", 3, false },
        { "chat, superchat", 15, false },
        { "other", 5, false },           /* a value of another field */
        { "", 0, false },
    };
    for (size_t i = 0; i < N(cases); i++) {
        bool got = hs_protocol_offered(&r.req, cases[i].protocol, cases[i].len);
        cr_expect_eq(got, cases[i].want, "\"%.*s\": %d", (int)cases[i].len, cases[i].protocol,
                     got);
    }
    request_free(&r);

    request_parse(&r, LINE HOST UPGRADE CONNECTION KEY VERSION END);
    cr_expect_not(hs_protocol_offered(&r.req, "chat", 4), "offered without the field");
    request_free(&r);
}

#define RESPONSE_HEAD                                                                        \
    "HTTP/1.1 101 Switching Protocols\r\n"                                                   \
    "Upgrade: websocket\r\n"                                                                 \
    "Connection: Upgrade\r\n"                                                                \
    "Sec-WebSocket-Accept: " ACCEPT_VALUE "\r\n"

Test(handshake, build_response)
{
    static const struct {
        const char *name;
        const char *protocol;
        size_t protocol_len;
        const char *extra; /* header lines */
        const char *want;
    } cases[] = {
        { "plain", NULL, 0, NULL, RESPONSE_HEAD "\r\n" },
        { "with a subprotocol", "chat", 4, NULL,
          RESPONSE_HEAD "Sec-WebSocket-Protocol: chat\r\n\r\n" },
        { "subprotocol given by length", "chat, superchat", 4, NULL,
          RESPONSE_HEAD "Sec-WebSocket-Protocol: chat\r\n\r\n" },
        { "with extra header lines", NULL, 0,
          "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n",
          RESPONSE_HEAD "Sec-WebSocket-Extensions: permessage-deflate; "
                        "server_no_context_takeover\r\n\r\n" },
        { "with both", "mqtt", 4, "Set-Cookie: session=abc\r\nX-Node: 3\r\n",
          RESPONSE_HEAD "Sec-WebSocket-Protocol: mqtt\r\n"
                        "Set-Cookie: session=abc\r\nX-Node: 3\r\n\r\n" },
    };
    for (size_t i = 0; i < N(cases); i++) {
        char out[512];
        size_t n = hs_build_response(out, sizeof out, KEY_VALUE, cases[i].protocol,
                                     cases[i].protocol_len, cases[i].extra);
        size_t want_len = strlen(cases[i].want);
        cr_expect_eq(n, want_len, "%s: length %zu, want %zu", cases[i].name, n, want_len);
        cr_expect(n == want_len && memcmp(out, cases[i].want, n) == 0,
                  "%s: got\n%.*s\nwant\n%s", cases[i].name, (int)n, out, cases[i].want);

        /* Every cap too small gives 0 and writes nothing past cap (the buffer ends at a guard
         * page); a cap with room for the response (and its terminating NUL) gives it. */
        for (size_t cap = 0; cap < want_len; cap++) {
            static const char zeros[512] = { 0 };
            struct guard g;
            char *small = (char *)guard_copy(&g, zeros, cap);
            size_t got = hs_build_response(small, cap, KEY_VALUE, cases[i].protocol,
                                           cases[i].protocol_len, cases[i].extra);
            cr_expect_eq(got, 0, "%s: cap %zu gave %zu", cases[i].name, cap, got);
            guard_free(&g);
        }
        struct guard g;
        char *exact = (char *)guard_copy(&g, out, want_len + 1);
        cr_expect_eq(hs_build_response(exact, want_len + 1, KEY_VALUE, cases[i].protocol,
                                       cases[i].protocol_len, cases[i].extra),
                     want_len, "%s: cap of length + 1", cases[i].name);
        guard_free(&g);
    }
}

/* The response to a parsed request: the key hs_check_request found gives the RFC's accept. */
Test(handshake, request_to_response)
{
    struct request r;
    request_parse(&r, LINE HOST UPGRADE CONNECTION KEY VERSION
                  "Sec-WebSocket-Protocol: chat, superchat\r\n" END);
    struct hs_upgrade up;
    const char *why = NULL;
    cr_assert_eq(hs_check_request(&r.req, &up, &why), 0);
    cr_assert(hs_protocol_offered(&r.req, "superchat", 9));
    char out[512];
    size_t n = hs_build_response(out, sizeof out, up.key, "superchat", 9, NULL);
    static const char want[] = RESPONSE_HEAD "Sec-WebSocket-Protocol: superchat\r\n\r\n";
    cr_expect(n == sizeof want - 1 && memcmp(out, want, n) == 0, "got\n%.*s", (int)n, out);
    request_free(&r);
}
