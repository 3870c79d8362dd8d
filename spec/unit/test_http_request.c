/* Outbound requests as bytes (core/http_request.c): a table of requests and the exact bytes,
 * or the refusal, each gives. */
#include <string.h>

#include <criterion/criterion.h>

#include "http_request.h"

static const char *const no_headers[] = { NULL };

static const struct {
    const char *label, *method, *url;
    const char *const *headers;
    size_t nheaders;
    const char *body;
    /* success: */
    const char *bytes, *host;
    unsigned port;
    bool tls, head, close;
    /* failure: what the message says */
    const char *error;
} cases[] = {
    { "plain GET", NULL, "http://Example.COM/a/b?x=1#frag", no_headers, 0, NULL,
      "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: moonwire\r\n\r\n",
      "example.com", 80, false, false, false, NULL },
    { "https, port, no path", "GET", "HTTPS://api.example.com:8443", no_headers, 0, NULL,
      "GET / HTTP/1.1\r\nHost: api.example.com:8443\r\nUser-Agent: moonwire\r\n\r\n",
      "api.example.com", 8443, true, false, false, NULL },
    { "query without path", "GET", "http://h?q", no_headers, 0, NULL,
      "GET /?q HTTP/1.1\r\nHost: h\r\nUser-Agent: moonwire\r\n\r\n", "h", 80, false, false,
      false, NULL },
    { "default port written out", "GET", "https://h:443/", no_headers, 0, NULL,
      "GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: moonwire\r\n\r\n", "h", 443, true, false,
      false, NULL },
    { "IPv6", "GET", "http://[::1]:81/", no_headers, 0, NULL,
      "GET / HTTP/1.1\r\nHost: [::1]:81\r\nUser-Agent: moonwire\r\n\r\n", "::1", 81, false,
      false, false, NULL },
    { "POST with body", "POST", "http://h/p", (const char *const[]){ "X-A", "1" }, 1, "hi",
      "POST /p HTTP/1.1\r\nHost: h\r\nUser-Agent: moonwire\r\nX-A: 1\r\nContent-Length: 2\r\n"
      "\r\nhi", "h", 80, false, false, false, NULL },
    { "POST without body", "POST", "http://h/", no_headers, 0, NULL,
      "POST / HTTP/1.1\r\nHost: h\r\nUser-Agent: moonwire\r\nContent-Length: 0\r\n\r\n", "h", 80,
      false, false, false, NULL },
    { "own Host and User-Agent, Connection: close", "HEAD", "http://10.0.0.1/",
      (const char *const[]){ "host", "v.example", "User-Agent", "x/1", "Connection", "close" }, 3,
      NULL, "HEAD / HTTP/1.1\r\nhost: v.example\r\nUser-Agent: x/1\r\nConnection: close\r\n\r\n",
      "10.0.0.1", 80, false, true, true, NULL },
    { "ftp", "GET", "ftp://h/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "http:// or" },
    { "no host", "GET", "http:///x", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "no host" },
    { "port 0", "GET", "http://h:0/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "port" },
    { "port empty", "GET", "http://h:/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "port" },
    { "port 65536", "GET", "http://h:65536/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "port" },
    { "port junk", "GET", "http://h:80x/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "port" },
    { "bad IPv6", "GET", "http://[::g]/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "IPv6" },
    { "junk after IPv6", "GET", "http://[::1]x/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "garbage" },
    { "userinfo", "GET", "http://u:p@h/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "Authorization" },
    { "space in host", "GET", "http://a b/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "no host name has" },
    { "space in path", "GET", "http://h/a b", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "percent-encode" },
    { "CR in path", "GET", "http://h/a\r\nX: 1", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "percent-encode" },
    { "method not a token", "GE T", "http://h/", no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0,
      "token" },
    { "header name not a token", "GET", "http://h/", (const char *const[]){ "X:A", "1" }, 1,
      NULL, NULL, NULL, 0, 0, 0, 0, "token" },
    { "LF in a value", "GET", "http://h/", (const char *const[]){ "X", "1\nGET /evil" }, 1, NULL,
      NULL, NULL, 0, 0, 0, 0, "CR or LF" },
    { "Transfer-Encoding given", "GET", "http://h/",
      (const char *const[]){ "Transfer-Encoding", "chunked" }, 1, NULL, NULL, NULL, 0, 0, 0, 0,
      "leave it out" },
    { "no URL", "GET", NULL, no_headers, 0, NULL, NULL, NULL, 0, 0, 0, 0, "no URL" },
};

Test(http_request, table)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hreq r;
        char err[256] = "";
        const char *body = cases[i].body;
        int rc = hreq_build(&r, cases[i].method, cases[i].url, cases[i].headers,
                            cases[i].nheaders, body, body ? strlen(body) : 0, err, sizeof err);
        if (cases[i].error) {
            cr_expect_eq(rc, -1, "%s: built", cases[i].label);
            cr_expect(strstr(err, cases[i].error) != NULL, "%s: %s", cases[i].label, err);
            cr_expect_null(r.bytes);
            cr_expect_null(r.host);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: %s", cases[i].label, err);
        cr_expect_eq(r.len, strlen(cases[i].bytes), "%s: length", cases[i].label);
        cr_expect(r.len == strlen(cases[i].bytes) && memcmp(r.bytes, cases[i].bytes, r.len) == 0,
                  "%s: %.*s", cases[i].label, (int)r.len, r.bytes);
        cr_expect_str_eq(r.host, cases[i].host, "%s", cases[i].label);
        cr_expect_eq(r.port, cases[i].port, "%s", cases[i].label);
        cr_expect_eq(r.tls, cases[i].tls, "%s", cases[i].label);
        cr_expect_eq(r.head_request, cases[i].head, "%s", cases[i].label);
        cr_expect_eq(r.close, cases[i].close, "%s", cases[i].label);
        hreq_free(&r);
        hreq_free(&r); /* harmless */
    }
}
