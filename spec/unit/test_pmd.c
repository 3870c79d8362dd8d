/* Tests for permessage-deflate negotiation (core/pmd.h): the RFC 7692 section 7 matrix, header
 * by header, in both modes, including Chromium's real offer and offers that must be declined
 * (the next one is then tried). Offers go through the real HTTP parser. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "http.h"
#include "pmd.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Negotiates over a request carrying the given Sec-WebSocket-Extensions lines (separated by
 * '\n' in ext) and returns the answer, or "" when declined. */
static const char *negotiate(const char *ext, bool context, int window_bits)
{
    static char raw[2048], answer[256];
    int n = snprintf(raw, sizeof raw, "GET / HTTP/1.1\r\nHost: x\r\n");
    const char *line = ext;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        n += snprintf(raw + n, sizeof raw - (size_t)n, "Sec-WebSocket-Extensions: %.*s\r\n",
                      (int)len, line);
        line += len + (end ? 1 : 0);
    }
    n += snprintf(raw + n, sizeof raw - (size_t)n, "\r\n");
    struct http_header headers[16];
    struct http_request req = { .headers = headers, .max_headers = 16 };
    struct http_scan scan = { 0 };
    const char *why;
    cr_assert_eq(http_parse_request(raw, (size_t)n, sizeof raw, &scan, &req, &why), n);
    struct pmd_policy p = { context, window_bits };
    struct pmd_agreement a;
    if (!pmd_negotiate(&req, &p, &a, answer, sizeof answer)) return "";
    return answer;
}

#define SHARED_ANSWER "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

struct ncase {
    const char *label;
    const char *offer;
    const char *shared; /* answer in shared mode (window 15) */
    const char *context; /* answer in context mode (window 11) */
};

static const struct ncase cases[] = {
    { "Chromium's offer", "permessage-deflate; client_max_window_bits", SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "bare offer", "permessage-deflate", SHARED_ANSWER,
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
    { "no extension header", "", "", "" },
    { "another extension only", "x-webkit-deflate-frame", "", "" },
    { "another extension first", "foo; bar=1, permessage-deflate", SHARED_ANSWER,
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
    { "client_max_window_bits with value", "permessage-deflate; client_max_window_bits=10",
      SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=10" },
    { "client_max_window_bits above ours", "permessage-deflate; client_max_window_bits=15",
      SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "client_max_window_bits quoted", "permessage-deflate; client_max_window_bits=\"12\"",
      SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10",
      SHARED_ANSWER "; server_max_window_bits=10",
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=10" },
    { "server_max_window_bits=15", "permessage-deflate; server_max_window_bits=15",
      SHARED_ANSWER "; server_max_window_bits=15",
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
    { "server_no_context_takeover", "permessage-deflate; server_no_context_takeover",
      SHARED_ANSWER, SHARED_ANSWER },
    { "client_no_context_takeover + client_max_window_bits",
      "permessage-deflate; client_no_context_takeover; client_max_window_bits", SHARED_ANSWER,
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
    { "all four", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                  "server_max_window_bits=9; client_max_window_bits=9",
      SHARED_ANSWER "; server_max_window_bits=9", SHARED_ANSWER "; server_max_window_bits=9" },
    { "blanks around", "  permessage-deflate ;  client_max_window_bits = 12 ", SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "upper case name", "PerMessage-Deflate; Client_Max_Window_Bits", SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    /* Declined offers. */
    { "server_max_window_bits=8 (zlib cannot)", "permessage-deflate; server_max_window_bits=8",
      "", "" },
    { "server_max_window_bits=16", "permessage-deflate; server_max_window_bits=16", "", "" },
    { "server_max_window_bits=7", "permessage-deflate; server_max_window_bits=7", "", "" },
    { "server_max_window_bits leading zero", "permessage-deflate; server_max_window_bits=09",
      "", "" },
    { "server_max_window_bits without value", "permessage-deflate; server_max_window_bits", "",
      "" },
    { "client_max_window_bits=16", "permessage-deflate; client_max_window_bits=16", "", "" },
    { "client_max_window_bits=abc", "permessage-deflate; client_max_window_bits=abc", "", "" },
    { "client_max_window_bits empty quoted", "permessage-deflate; client_max_window_bits=\"\"",
      "", "" },
    { "unterminated quote", "permessage-deflate; client_max_window_bits=\"12", "", "" },
    { "duplicate parameter", "permessage-deflate; client_max_window_bits; client_max_window_bits",
      "", "" },
    { "duplicate no_context_takeover",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover", "", "" },
    { "unknown parameter", "permessage-deflate; foo", "", "" },
    { "value on no_context_takeover", "permessage-deflate; client_no_context_takeover=1", "",
      "" },
    { "empty parameter", "permessage-deflate;", "", "" },
    { "garbage after name", "permessage-deflate x", "", "" },
    /* Declined first offer, next one taken. */
    { "bad offer then good", "permessage-deflate; server_max_window_bits=8, permessage-deflate",
      SHARED_ANSWER,
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=11" },
    { "two header lines, first bad",
      "permessage-deflate; foo=1\npermessage-deflate; client_max_window_bits", SHARED_ANSWER,
      "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11" },
    { "two good offers: the first wins",
      "permessage-deflate; server_max_window_bits=10, permessage-deflate",
      SHARED_ANSWER "; server_max_window_bits=10",
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=10" },
};

Test(pmd, matrix)
{
    for (size_t i = 0; i < N(cases); i++) {
        const struct ncase *t = &cases[i];
        cr_expect_str_eq(negotiate(t->offer, false, 15), t->shared, "shared: %s", t->label);
        cr_expect_str_eq(negotiate(t->offer, true, 11), t->context, "context: %s", t->label);
    }
}

/* The answer never names client_max_window_bits unless it was offered. */
Test(pmd, client_max_window_bits_only_when_offered)
{
    static const char *const offers[] = {
        "permessage-deflate", "permessage-deflate; server_max_window_bits=12",
        "permessage-deflate; server_no_context_takeover", "permessage-deflate; client_no_context_takeover",
    };
    for (size_t i = 0; i < N(offers); i++)
        for (int mode = 0; mode < 2; mode++)
            cr_expect_null(strstr(negotiate(offers[i], mode, 11), "client_max_window_bits"),
                           "%s (mode %d)", offers[i], mode);
}

struct pcase {
    const char *label;
    const char *offer;
    int rc;
    int smwb, cmwb;
    bool snct, cnct;
};

static const struct pcase parse_cases[] = {
    { "bare", "permessage-deflate", PMD_OK, 0, 0, false, false },
    { "cmwb without value", "permessage-deflate; client_max_window_bits", PMD_OK, 0, -1, false,
      false },
    { "cmwb value", "permessage-deflate;client_max_window_bits=8", PMD_OK, 0, 8, false, false },
    { "smwb value", "permessage-deflate; server_max_window_bits=15", PMD_OK, 15, 0, false,
      false },
    { "both no-context", "permessage-deflate; server_no_context_takeover; "
                         "client_no_context_takeover", PMD_OK, 0, 0, true, true },
    { "other", "foo", PMD_OTHER, 0, 0, false, false },
    { "no name", "; foo", PMD_E_SYNTAX, 0, 0, false, false },
    { "unknown", "permessage-deflate; x=1", PMD_E_UNKNOWN, 0, 0, false, false },
    { "dup", "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
      PMD_E_DUPLICATE, 0, 0, false, false },
    { "bad value", "permessage-deflate; server_max_window_bits=1a", PMD_E_VALUE, 0, 0, false,
      false },
    { "value on flag", "permessage-deflate; server_no_context_takeover=true", PMD_E_VALUE, 0, 0,
      false, false },
    { "quoted escape", "permessage-deflate; client_max_window_bits=\"1\\2\"", PMD_E_VALUE, 0, 0,
      false, false },
};

Test(pmd, parse)
{
    for (size_t i = 0; i < N(parse_cases); i++) {
        const struct pcase *t = &parse_cases[i];
        struct pmd_offer o;
        const char *why = NULL;
        int rc = pmd_parse_offer(t->offer, strlen(t->offer), &o, &why);
        cr_expect_eq(rc, t->rc, "%s: rc %d (%s)", t->label, rc, why ? why : "");
        if (rc != PMD_OK) {
            cr_expect_not_null(why, "%s: a reason", t->label);
            continue;
        }
        cr_expect_eq(o.server_max_window_bits, t->smwb, "%s", t->label);
        cr_expect_eq(o.client_max_window_bits, t->cmwb, "%s", t->label);
        cr_expect_eq(o.server_no_context_takeover, t->snct, "%s", t->label);
        cr_expect_eq(o.client_no_context_takeover, t->cnct, "%s", t->label);
    }
}

Test(pmd, agreement)
{
    struct pmd_offer o = { .client_max_window_bits = -1 };
    struct pmd_policy ctx = { true, 11 }, shared = { false, 15 };
    struct pmd_agreement a;
    cr_assert(pmd_accept(&o, &ctx, &a));
    cr_expect(a.server_context && a.client_context);
    cr_expect_eq(a.server_window_bits, 11);
    cr_expect_eq(a.client_window_bits, 11);
    cr_assert(pmd_accept(&o, &shared, &a));
    cr_expect(!a.server_context && !a.client_context);
    cr_expect_eq(a.client_window_bits, 15);
    o.server_max_window_bits = 8;
    cr_expect(!pmd_accept(&o, &shared, &a));
    char out[8];
    o.server_max_window_bits = 0;
    pmd_accept(&o, &ctx, &a);
    cr_expect_eq(pmd_format_answer(out, sizeof out, &o, &a), 0, "too small a buffer");
}
