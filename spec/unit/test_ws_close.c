/* Tests for close codes and payloads (core/ws_close.h): which codes may be on the wire, how a
 * received payload is judged, and how a reason is cut to fit without splitting a character. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "utf8.h"
#include "ws_close.h"
#include "ws_frame.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct code_case {
    const char *name;
    unsigned code;
    bool valid;
};

/* Every range edge of RFC 6455 7.4 and the IANA registry, from both sides. */
static const struct code_case codes[] = {
    { "0", 0, false },
    { "1", 1, false },
    { "999, just below the defined range", 999, false },
    { "1000 normal closure", 1000, true },
    { "1001 going away", 1001, true },
    { "1002 protocol error", 1002, true },
    { "1003 unsupported data", 1003, true },
    { "1004 reserved", 1004, false },
    { "1005 no status, never sent", 1005, false },
    { "1006 abnormal closure, never sent", 1006, false },
    { "1007 invalid payload data", 1007, true },
    { "1008 policy violation", 1008, true },
    { "1009 message too big", 1009, true },
    { "1010 mandatory extension", 1010, true },
    { "1011 internal error", 1011, true },
    { "1012 service restart", 1012, true },
    { "1013 try again later", 1013, true },
    { "1014 bad gateway", 1014, true },
    { "1015 TLS handshake, never sent", 1015, false },
    { "1016, first unassigned", 1016, false },
    { "1100, unassigned", 1100, false },
    { "2000, unassigned", 2000, false },
    { "2999, last before registered", 2999, false },
    { "3000, first registered", 3000, true },
    { "3999, last registered", 3999, true },
    { "4000, first private", 4000, true },
    { "4999, last private", 4999, true },
    { "5000, above every range", 5000, false },
    { "65535, largest 16-bit", 65535, false },
    { "65536, beyond 16 bits", 65536, false },
    { "65536 + 1000, would wrap to 1000 in 16 bits", 66536, false },
    { "UINT_MAX", 0xFFFFFFFFu, false },
};

Test(ws_close, code_table)
{
    for (size_t i = 0; i < N(codes); i++) {
        const struct code_case *c = &codes[i];
        cr_expect_eq(ws_close_code_is_valid(c->code), c->valid, "%s: %s", c->name,
                     c->valid ? "rejected" : "accepted");
    }
}

/* The ranges of the contract, checked over every 16-bit code and a bit beyond. */
Test(ws_close, code_ranges_exhaustive)
{
    for (unsigned code = 0; code < 70000; code++) {
        bool want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                    (code >= 3000 && code <= 4999);
        if (ws_close_code_is_valid(code) != want)
            cr_expect_eq(ws_close_code_is_valid(code), want, "code %u", code);
    }
}

#define MAX_PAYLOAD WS_CONTROL_MAX_PAYLOAD

struct parse_case {
    const char *name;
    uint8_t payload[MAX_PAYLOAD];
    size_t len;
    int want_rc;
    unsigned want_code;       /* when want_rc is 0 */
    size_t want_reason_len;   /* when want_rc is 0; the reason is payload + 2 */
};

static const struct parse_case parses[] = {
    { "empty payload: no status", { 0 }, 0, 0, WS_CLOSE_NO_STATUS, 0 },
    { "1-byte payload", { 0x03 }, 1, WS_E_PROTOCOL, 0, 0 },
    { "1000, no reason", { 0x03, 0xE8 }, 2, 0, 1000, 0 },
    { "1000 with reason", { 0x03, 0xE8, 'b', 'y', 'e' }, 5, 0, 1000, 3 },
    { "1001 going away", { 0x03, 0xE9 }, 2, 0, 1001, 0 },
    { "1007", { 0x03, 0xEF }, 2, 0, 1007, 0 },
    { "1014", { 0x03, 0xF6 }, 2, 0, 1014, 0 },
    { "3000", { 0x0B, 0xB8 }, 2, 0, 3000, 0 },
    { "4999 with reason", { 0x13, 0x87, 'x' }, 3, 0, 4999, 1 },
    { "reason with 2-, 3- and 4-byte characters",
      { 0x0F, 0xA0, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80 }, 11, 0, 4000, 9 },
    { "0", { 0x00, 0x00 }, 2, WS_E_PROTOCOL, 0, 0 },
    { "999", { 0x03, 0xE7 }, 2, WS_E_PROTOCOL, 0, 0 },
    { "1004", { 0x03, 0xEC }, 2, WS_E_PROTOCOL, 0, 0 },
    { "1005 sent on the wire", { 0x03, 0xED }, 2, WS_E_PROTOCOL, 0, 0 },
    { "1006 sent on the wire", { 0x03, 0xEE }, 2, WS_E_PROTOCOL, 0, 0 },
    { "1015 sent on the wire", { 0x03, 0xF7 }, 2, WS_E_PROTOCOL, 0, 0 },
    { "1016", { 0x03, 0xF8 }, 2, WS_E_PROTOCOL, 0, 0 },
    { "2999", { 0x0B, 0xB7 }, 2, WS_E_PROTOCOL, 0, 0 },
    { "5000", { 0x13, 0x88 }, 2, WS_E_PROTOCOL, 0, 0 },
    { "65535", { 0xFF, 0xFF }, 2, WS_E_PROTOCOL, 0, 0 },
    { "invalid code with a reason", { 0x03, 0xED, 'o', 'k' }, 4, WS_E_PROTOCOL, 0, 0 },
    { "reason with byte FF", { 0x03, 0xE8, 'a', 0xFF }, 4, WS_E_INVALID_DATA, 0, 0 },
    { "reason with a lone continuation", { 0x03, 0xE8, 0x80 }, 3, WS_E_INVALID_DATA, 0, 0 },
    { "reason with a surrogate", { 0x03, 0xE8, 0xED, 0xA0, 0x80 }, 5, WS_E_INVALID_DATA, 0, 0 },
    { "reason with an overlong", { 0x03, 0xE8, 0xC0, 0xAF }, 4, WS_E_INVALID_DATA, 0, 0 },
    /* A reason is whole text: ending inside a character is as bad as a wrong byte. */
    { "reason truncated inside a character", { 0x03, 0xE8, 'a', 0xE2, 0x82 }, 5,
      WS_E_INVALID_DATA, 0, 0 },
};

static void check_parse(const char *name, const uint8_t *payload, size_t len, int want_rc,
                        unsigned want_code, size_t want_reason_len)
{
    struct guard g;
    const uint8_t *p = guard_copy(&g, payload, len);
    guard_seal(&g);
    unsigned code = 12345;
    const uint8_t *reason = NULL;
    size_t reason_len = 9999;
    const char *why = NULL;
    int rc = ws_close_parse(p, len, &code, &reason, &reason_len, &why);
    cr_expect_eq(rc, want_rc, "%s: returned %d, want %d", name, rc, want_rc);
    if (rc == 0 && want_rc == 0) {
        cr_expect_eq(code, want_code, "%s: code %u, want %u", name, code, want_code);
        cr_expect_eq(reason_len, want_reason_len, "%s: reason of %zu bytes, want %zu", name,
                     reason_len, want_reason_len);
        /* The reason points into the payload, right after the code. */
        if (len >= 2)
            cr_expect_eq(reason, p + 2, "%s: reason does not point after the code", name);
    } else if (rc < 0) {
        cr_expect_not_null(why, "%s: no reason given for the error", name);
    }
    guard_free(&g);
}

Test(ws_close, parse_table)
{
    for (size_t i = 0; i < N(parses); i++) {
        const struct parse_case *c = &parses[i];
        check_parse(c->name, c->payload, c->len, c->want_rc, c->want_code, c->want_reason_len);
    }
}

/* The largest payload a control frame allows: the code and 123 bytes of reason. */
Test(ws_close, parse_longest_payload)
{
    uint8_t p[MAX_PAYLOAD];
    p[0] = 0x03, p[1] = 0xE8;
    memset(p + 2, 'r', sizeof p - 2);
    check_parse("125-byte payload", p, sizeof p, 0, 1000, WS_CLOSE_MAX_REASON);
    /* A bad byte at the very end of the longest reason is still found. */
    p[MAX_PAYLOAD - 1] = 0xFF;
    check_parse("125-byte payload, last byte FF", p, sizeof p, WS_E_INVALID_DATA, 0, 0);
}

/* Every code, through a 2-byte payload: the parse agrees with ws_close_code_is_valid. */
Test(ws_close, parse_agrees_with_code_rules)
{
    for (unsigned code = 0; code <= 0xFFFF; code++) {
        uint8_t p[2] = { (uint8_t)(code >> 8), (uint8_t)code };
        unsigned got = 0;
        const uint8_t *reason;
        size_t reason_len;
        const char *why;
        int rc = ws_close_parse(p, 2, &got, &reason, &reason_len, &why);
        int want = ws_close_code_is_valid(code) ? 0 : WS_E_PROTOCOL;
        if (rc != want) cr_expect_eq(rc, want, "code %u: returned %d", code, rc);
        if (rc == 0 && got != code) cr_expect_eq(got, code, "code %u parsed as %u", code, got);
    }
}

struct build_case {
    const char *name;
    unsigned code;
    const char *reason;
    size_t reason_len;
    size_t want_len;    /* whole payload */
};

Test(ws_close, build_simple)
{
    static const struct build_case cases[] = {
        { "code 0: empty payload", 0, "", 0, 0 },
        { "code 0 with a reason: still empty", 0, "ignored", 7, 0 },
        { "1000 without reason", 1000, "", 0, 2 },
        { "1001 with reason", 1001, "going away", 10, 12 },
        { "4999 with reason", 4999, "x", 1, 3 },
        { "1011 with a reason of 2-byte characters", 1011, "\xC3\xA9\xC3\xA9", 4, 6 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        const struct build_case *c = &cases[i];
        uint8_t out[MAX_PAYLOAD];
        memset(out, 0xEE, sizeof out);
        size_t n = ws_close_build(out, c->code, c->reason, c->reason_len);
        cr_expect_eq(n, c->want_len, "%s: length %zu, want %zu", c->name, n, c->want_len);
        if (c->code == 0) {
            cr_expect_eq(out[0], 0xEE, "%s: wrote into out", c->name);
            continue;
        }
        cr_expect_eq(out[0], c->code >> 8, "%s: code high byte", c->name);
        cr_expect_eq(out[1], c->code & 0xFF, "%s: code low byte", c->name);
        cr_expect(memcmp(out + 2, c->reason, n - 2) == 0, "%s: reason bytes", c->name);
    }
}

/* Reasons around the 123-byte limit made of ASCII filler and one character at the end: the cut
 * falls before a character that would not fit whole. */
Test(ws_close, build_truncates_at_character_boundary)
{
    static const struct {
        const char *name;
        size_t filler;
        const char *tail;
        size_t tail_len;
        size_t want_reason;
    } cases[] = {
        { "123 ASCII bytes: fits exactly", 123, "", 0, 123 },
        { "124 ASCII bytes: cut to 123", 124, "", 0, 123 },
        { "300 ASCII bytes: cut to 123", 300, "", 0, 123 },
        { "121 + 2-byte char = 123: fits", 121, "\xC3\xA9", 2, 123 },
        { "122 + 2-byte char = 124: char dropped", 122, "\xC3\xA9", 2, 122 },
        { "120 + 3-byte char = 123: fits", 120, "\xE2\x82\xAC", 3, 123 },
        { "121 + 3-byte char = 124: char dropped", 121, "\xE2\x82\xAC", 3, 121 },
        { "122 + 3-byte char = 125: char dropped", 122, "\xE2\x82\xAC", 3, 122 },
        { "119 + 4-byte char = 123: fits", 119, "\xF0\x9F\x98\x80", 4, 123 },
        { "120 + 4-byte char = 124: char dropped", 120, "\xF0\x9F\x98\x80", 4, 120 },
        { "122 + 4-byte char = 126: char dropped", 122, "\xF0\x9F\x98\x80", 4, 122 },
        { "123 + 4-byte char: char beyond the limit", 123, "\xF0\x9F\x98\x80", 4, 123 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        char reason[400];
        memset(reason, 'a', cases[i].filler);
        memcpy(reason + cases[i].filler, cases[i].tail, cases[i].tail_len);
        size_t reason_len = cases[i].filler + cases[i].tail_len;

        /* out is exactly one control payload before the guard page. */
        static const uint8_t fill[MAX_PAYLOAD] = { 0 };
        struct guard g;
        uint8_t *out = guard_copy(&g, fill, sizeof fill);
        size_t n = ws_close_build(out, 1000, reason, reason_len);
        cr_expect_eq(n, 2 + cases[i].want_reason, "%s: payload %zu bytes, want %zu",
                     cases[i].name, n, 2 + cases[i].want_reason);
        cr_expect_leq(n, MAX_PAYLOAD, "%s: longer than a control payload", cases[i].name);
        cr_expect(memcmp(out + 2, reason, n - 2) == 0, "%s: reason bytes", cases[i].name);
        guard_free(&g);
    }
}

/* Reasons made only of multi-byte characters, long enough to need cutting. */
Test(ws_close, build_truncates_multibyte_runs)
{
    static const struct {
        const char *name;
        const char *ch;
        size_t ch_len;
        size_t count;
        size_t want_reason;
    } cases[] = {
        { "62 x 2-byte (124 bytes): 61 fit", "\xC3\xA9", 2, 62, 122 },
        { "41 x 3-byte (123 bytes): all fit", "\xE2\x82\xAC", 3, 41, 123 },
        { "42 x 3-byte (126 bytes): 41 fit", "\xE2\x82\xAC", 3, 42, 123 },
        { "31 x 4-byte (124 bytes): 30 fit", "\xF0\x9F\x98\x80", 4, 31, 120 },
        { "100 x 4-byte: 30 fit", "\xF0\x9F\x98\x80", 4, 100, 120 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        char reason[400];
        size_t len = 0;
        for (size_t k = 0; k < cases[i].count; k++, len += cases[i].ch_len)
            memcpy(reason + len, cases[i].ch, cases[i].ch_len);
        uint8_t out[MAX_PAYLOAD];
        size_t n = ws_close_build(out, 1001, reason, len);
        cr_expect_eq(n, 2 + cases[i].want_reason, "%s: payload %zu bytes, want %zu",
                     cases[i].name, n, 2 + cases[i].want_reason);
        /* And the result is a payload a peer accepts: valid code, whole UTF-8. */
        unsigned code;
        const uint8_t *r;
        size_t rlen;
        const char *why = NULL;
        cr_expect_eq(ws_close_parse(out, n, &code, &r, &rlen, &why), 0, "%s: not parseable (%s)",
                     cases[i].name, why ? why : "");
    }
}

/* build then parse gives back every valid code and the reason. */
Test(ws_close, build_then_parse_round_trip)
{
    static const char reason[] = "bye \xC3\xA9";
    for (unsigned code = 1000; code < 5000; code++) {
        if (!ws_close_code_is_valid(code)) continue;
        uint8_t out[MAX_PAYLOAD];
        size_t n = ws_close_build(out, code, reason, sizeof reason - 1);
        unsigned got = 0;
        const uint8_t *r = NULL;
        size_t rlen = 0;
        const char *why = NULL;
        int rc = ws_close_parse(out, n, &got, &r, &rlen, &why);
        if (rc != 0 || got != code || rlen != sizeof reason - 1 ||
            memcmp(r, reason, rlen) != 0)
            cr_expect(false, "code %u: round trip gave rc %d code %u reason of %zu bytes", code,
                      rc, got, rlen);
    }
}
