/* The outbound client's response parser (core/http_response.c): a table of responses, each fed
 * whole and then one byte at a time (every split point must give the same result), with the
 * input ending at a guard page so an over-read crashes. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "http_response.h"

struct want {
    int result;           /* HR_DONE, or the error */
    int status;
    const char *body;
    const char *fields;   /* "name=value|name=value" in order, NULL: don't check */
    bool keep_alive;
    int eof_result;       /* when result is HR_NEED_MORE: what hr_eof then gives */
};

static const struct {
    const char *label, *input;
    bool head;
    size_t max;
    struct want w;
} cases[] = {
    { "content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello", false, 100,
      { HR_DONE, 200, "hello", "content-length=5|x-a=1", true, 0 } },
    { "names lower-cased, values trimmed, repeats joined, set-cookie kept apart",
      "HTTP/1.1 200 OK\r\nX-Dup: a\r\nContent-Length: 0\r\nx-dup:b  \r\nSet-Cookie: s=1\r\n"
      "Set-Cookie: t=2\r\n\r\n", false, 100,
      { HR_DONE, 200, "", "x-dup=a, b|content-length=0|set-cookie=s=1|set-cookie=t=2", true, 0 } },
    { "chunked with extension and trailer",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n"
      "0\r\nX-T: 1\r\n\r\n", false, 100, { HR_DONE, 200, "hello world", NULL, true, 0 } },
    { "chunked, upper-case hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
      "A\r\n0123456789\r\n0\r\n\r\n", false, 100, { HR_DONE, 200, "0123456789", NULL, true, 0 } },
    { "until close", "HTTP/1.1 200 OK\r\n\r\nall of it", false, 100,
      { HR_NEED_MORE, 200, "all of it", NULL, false, HR_DONE } },
    { "HTTP/1.0 does not keep alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false,
      100, { HR_DONE, 200, "ok", NULL, false, 0 } },
    { "connection: close", "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\n"
      "Content-Length: 0\r\n\r\n", false, 100, { HR_DONE, 200, "", NULL, false, 0 } },
    { "HEAD: no body despite Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
      true, 100, { HR_DONE, 200, "", NULL, true, 0 } },
    { "204 has no body", "HTTP/1.1 204 No Content\r\n\r\n", false, 100,
      { HR_DONE, 204, "", "", true, 0 } },
    { "304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, 100,
      { HR_DONE, 304, "", NULL, true, 0 } },
    { "100 continue skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
      "Content-Length: 1\r\n\r\nx", false, 100,
      { HR_DONE, 201, "x", "content-length=1", true, 0 } },
    { "no reason phrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, 100,
      { HR_DONE, 200, "", NULL, true, 0 } },
    { "repeated equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
      "\r\nok", false, 100, { HR_DONE, 200, "ok", NULL, true, 0 } },
    { "body exactly at the cap", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour", false, 4,
      { HR_DONE, 200, "four", NULL, true, 0 } },
    { "length over the cap", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 4,
      { HR_ERR_TOO_LARGE, 0, NULL, NULL, false, 0 } },
    { "chunks over the cap", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
      "3\r\n", false, 4, { HR_ERR_TOO_LARGE, 0, NULL, NULL, false, 0 } },
    { "huge chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "fffffffffffffffffffff\r\n", false, 100, { HR_ERR_TOO_LARGE, 0, NULL, NULL, false, 0 } },
    { "until close over the cap", "HTTP/1.1 200 OK\r\n\r\n12345", false, 4,
      { HR_ERR_TOO_LARGE, 0, NULL, NULL, false, 0 } },
    { "not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "bad status", "HTTP/1.1 2x0 OK\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "101 unasked", "HTTP/1.1 101 Switching Protocols\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "folded field", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "field without colon", "HTTP/1.1 200 OK\r\nX a\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "bare LF line", "HTTP/1.1 200 OK\r\nX: a\n\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "differing lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
      false, 100, { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, 100,
      { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "chunk without size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nx\r\n",
      false, 100, { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "chunk data without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1\r\nab", false, 100, { HR_ERR_PROTOCOL, 0, NULL, NULL, false, 0 } },
    { "cut in the body", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, 100,
      { HR_NEED_MORE, 200, NULL, NULL, true, HR_ERR_INCOMPLETE } },
    { "cut in the head", "HTTP/1.1 200 OK\r\nContent-Le", false, 100,
      { HR_NEED_MORE, 0, NULL, NULL, false, HR_ERR_INCOMPLETE } },
    { "both framings: chunked wins, no reuse", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
      "Transfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n", false, 100,
      { HR_DONE, 200, "z", NULL, false, 0 } },
};

static void check_fields(const struct hr *p, const char *want, const char *label)
{
    char got[512] = "";
    for (size_t i = 0; i < p->nfields; i++) {
        char one[160];
        snprintf(one, sizeof one, "%s%s=%s", i ? "|" : "", p->fields[2 * i], p->fields[2 * i + 1]);
        strncat(got, one, sizeof got - strlen(got) - 1);
    }
    cr_expect_str_eq(got, want, "%s: fields", label);
}

static void check(const struct hr *p, int r, const struct want *w, const char *label,
                  const char *how)
{
    cr_expect_eq(r, w->result, "%s (%s): result %d, error %s", label, how, r,
                 p->error ? p->error : "-");
    if (w->result == HR_DONE || (w->result == HR_NEED_MORE && w->eof_result == HR_DONE)) {
        cr_expect_eq(p->status, w->status, "%s (%s): status", label, how);
        if (w->body) {
            cr_expect_eq(p->body_len, strlen(w->body), "%s (%s): body length", label, how);
            if (p->body_len == strlen(w->body))
                cr_expect_str_eq(p->body, w->body, "%s (%s): body", label, how);
        }
        if (w->fields) check_fields(p, w->fields, label);
        cr_expect_eq(p->keep_alive, w->keep_alive, "%s (%s): keep-alive", label, how);
    }
}

Test(http_response, table_whole_and_byte_by_byte)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].input);
        struct guard g;
        const char *in = (const char *)guard_copy(&g, cases[i].input, len);

        struct hr p;
        hr_init(&p, cases[i].head, cases[i].max);
        size_t used;
        int r = hr_feed(&p, in, len, &used);
        if (r == HR_NEED_MORE && cases[i].w.eof_result) {
            int e = hr_eof(&p);
            cr_expect_eq(e, cases[i].w.eof_result, "%s: eof gives %d", cases[i].label, e);
            if (e == HR_DONE) r = HR_NEED_MORE; /* compared below as the table says */
        }
        check(&p, r, &cases[i].w, cases[i].label, "whole");
        hr_free(&p);

        hr_init(&p, cases[i].head, cases[i].max);
        r = HR_NEED_MORE;
        for (size_t k = 0; k < len && r == HR_NEED_MORE; k++) {
            r = hr_feed(&p, in + k, 1, &used);
            cr_assert(used <= 1);
        }
        if (r == HR_NEED_MORE && cases[i].w.eof_result) {
            int e = hr_eof(&p);
            cr_expect_eq(e, cases[i].w.eof_result, "%s: eof (bytes) gives %d", cases[i].label, e);
        }
        check(&p, r, &cases[i].w, cases[i].label, "byte by byte");
        hr_free(&p);
        guard_free(&g);
    }
}

Test(http_response, bytes_after_the_response_are_left)
{
    const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
    struct hr p;
    hr_init(&p, false, 100);
    size_t used;
    cr_assert_eq(hr_feed(&p, in, sizeof in - 1, &used), HR_DONE);
    cr_expect_eq(used, strlen("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
    hr_free(&p);
}

Test(http_response, body_memory_stays_at_the_cap)
{
    /* A body read until close, fed in 64 KiB pieces: the parser refuses the piece that would
     * pass the cap, and its buffer never grew past cap + 1. */
    struct hr p;
    size_t cap = 1 << 20;
    hr_init(&p, false, cap);
    size_t used;
    const char head[] = "HTTP/1.1 200 OK\r\n\r\n";
    cr_assert_eq(hr_feed(&p, head, sizeof head - 1, &used), HR_NEED_MORE);
    static char piece[65536];
    memset(piece, 'x', sizeof piece);
    int r = HR_NEED_MORE;
    size_t fed = 0;
    while (r == HR_NEED_MORE && fed < 64 * cap) {
        r = hr_feed(&p, piece, sizeof piece, &used);
        fed += sizeof piece;
    }
    cr_expect_eq(r, HR_ERR_TOO_LARGE);
    cr_expect_leq(fed, cap + sizeof piece);
    cr_expect_leq(p.body_cap, cap + 1);
    hr_free(&p);
}
