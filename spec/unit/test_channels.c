/* Tests for the moonwire.v1 envelopes (core/channels.h): a table of client envelopes, each
 * parsed from the end of a guard page (an over-read crashes), with what it must give: the op,
 * id, topic, data, recovery position, or the error code. Then unescaping, JSON string writing,
 * and the publication frames, text and binary. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "channels.h"
#include "guard.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct env_case {
    const char *name;
    const char *text;
    int rc;             /* 0, CH_MALFORMED or CH_UNKNOWN_OP */
    char op;
    uint64_t id;
    const char *topic;  /* unescaped; NULL: not checked */
    const char *data;
    bool has_since;
    uint64_t since;
    const char *epoch;
};

static const struct env_case cases[] = {
    { "subscribe", "[\"s\",1,\"chat\"]", 0, 's', 1, "chat", NULL, false, 0, NULL },
    { "subscribe with spaces", " [ \"s\" , 7 , \"a b\" ] ", 0, 's', 7, "a b", NULL, false, 0,
      NULL },
    { "subscribe with offset and epoch", "[\"s\",2,\"t\",{\"o\":41,\"e\":\"ab12cd34\"}]", 0,
      's', 2, "t", NULL, true, 41, "ab12cd34" },
    { "subscribe with an empty object", "[\"s\",2,\"t\",{}]", 0, 's', 2, "t", NULL, true, 0,
      "" },
    { "subscribe ignores unknown scalar keys", "[\"s\",2,\"t\",{\"x\":true,\"o\":3,\"y\":null,"
      "\"z\":-1.5e3,\"w\":\"q\"}]", 0, 's', 2, "t", NULL, true, 3, "" },
    { "largest id", "[\"s\",9007199254740991,\"t\"]", 0, 's', 9007199254740991ULL, "t", NULL,
      false, 0, NULL },
    { "unsubscribe", "[\"u\",3,\"chat\"]", 0, 'u', 3, "chat", NULL, false, 0, NULL },
    { "publish", "[\"p\",4,\"chat\",\"hi\"]", 0, 'p', 4, "chat", "hi", false, 0, NULL },
    { "message", "[\"m\",\"hello\"]", 0, 'm', 0, NULL, "hello", false, 0, NULL },
    { "message with escapes", "[\"m\",\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\"]", 0, 'm',
      0, NULL, "a\"b\\c/d\n\xc3\xa9\xf0\x9f\x98\x80", false, 0, NULL },
    { "empty message", "[\"m\",\"\"]", 0, 'm', 0, NULL, "", false, 0, NULL },
    { "escaped topic", "[\"u\",3,\"a\\tb\"]", 0, 'u', 3, "a\tb", NULL, false, 0, NULL },

    { "empty text", "", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "not an array", "{\"s\":1}", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "unterminated array", "[\"s\",1,\"t\"", CH_MALFORMED, 0, 1, NULL, NULL, false, 0, NULL },
    { "unterminated string", "[\"m\",\"abc]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "op not a string", "[1,2]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "unknown op", "[\"x\",5,\"t\"]", CH_UNKNOWN_OP, 0, 5, NULL, NULL, false, 0, NULL },
    { "unknown long op", "[\"subscribe\",1]", CH_UNKNOWN_OP, 0, 1, NULL, NULL, false, 0, NULL },
    { "id zero", "[\"s\",0,\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "id negative", "[\"s\",-1,\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "id fractional", "[\"s\",1.5,\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "id with exponent", "[\"s\",1e3,\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "id too large", "[\"s\",9007199254740992,\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false,
      0, NULL },
    { "id leading zero", "[\"s\",01,\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "id a string", "[\"s\",\"1\",\"t\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "topic missing", "[\"s\",1]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0, NULL },
    { "topic not a string", "[\"s\",1,2]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0, NULL },
    { "publish without data", "[\"p\",1,\"t\"]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0,
      NULL },
    { "publish data an object", "[\"p\",1,\"t\",{}]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0,
      NULL },
    { "message data a number", "[\"m\",5]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "extra element", "[\"u\",1,\"t\",2]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0, NULL },
    { "trailing text", "[\"m\",\"a\"]x", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "raw control character", "[\"m\",\"a\nb\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0,
      NULL },
    { "bad escape", "[\"m\",\"\\x\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "short unicode escape", "[\"m\",\"\\u12\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0,
      NULL },
    { "lone high surrogate", "[\"m\",\"\\ud800\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0,
      NULL },
    { "lone low surrogate", "[\"m\",\"\\udc00\"]", CH_MALFORMED, 0, 0, NULL, NULL, false, 0,
      NULL },
    { "backslash at the end", "[\"m\",\"\\", CH_MALFORMED, 0, 0, NULL, NULL, false, 0, NULL },
    { "recovery not an object", "[\"s\",1,\"t\",5]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0,
      NULL },
    { "recovery offset negative", "[\"s\",1,\"t\",{\"o\":-2}]", CH_MALFORMED, 0, 1, NULL, NULL,
      false, 0, NULL },
    { "recovery epoch a number", "[\"s\",1,\"t\",{\"e\":2}]", CH_MALFORMED, 0, 1, NULL, NULL,
      false, 0, NULL },
    { "recovery epoch too long", "[\"s\",1,\"t\",{\"e\":\"0123456789012345678901234567890123"
      "\"}]", CH_MALFORMED, 0, 1, NULL, NULL, false, 0, NULL },
    { "recovery nested value", "[\"s\",1,\"t\",{\"x\":[1]}]", CH_MALFORMED, 0, 1, NULL, NULL,
      false, 0, NULL },
    { "recovery unterminated", "[\"s\",1,\"t\",{\"o\":1", CH_MALFORMED, 0, 1, NULL, NULL,
      false, 0, NULL },
};

static char *unesc(const struct ch_str *s, char *buf)
{
    size_t n = ch_unescape(s, buf);
    buf[n] = '\0';
    return buf;
}

Test(channels, envelopes)
{
    for (size_t i = 0; i < N(cases); i++) {
        const struct env_case *tc = &cases[i];
        size_t len = strlen(tc->text);
        struct guard g;
        const char *p = guard_copy_str(&g, tc->text, len);
        struct ch_request req;
        const char *why = NULL;
        int rc = ch_parse(p, len, &req, &why);
        cr_expect_eq(rc, tc->rc, "%s: rc %d, expected %d (%s)", tc->name, rc, tc->rc,
                     why ? why : "");
        cr_expect(rc == 0 || (why && *why), "%s: an error says why", tc->name);
        cr_expect_eq(req.id, tc->id, "%s: id %llu", tc->name, (unsigned long long)req.id);
        if (rc) {
            guard_free(&g);
            continue;
        }
        char buf[256];
        cr_expect_eq(req.op, tc->op, "%s: op %c", tc->name, req.op);
        if (tc->topic)
            cr_expect_str_eq(unesc(&req.topic, buf), tc->topic, "%s: topic", tc->name);
        if (tc->data)
            cr_expect_str_eq(unesc(&req.data, buf), tc->data, "%s: data", tc->name);
        cr_expect_eq(req.has_since, tc->has_since, "%s: has_since", tc->name);
        if (tc->has_since) {
            cr_expect_eq(req.since, tc->since, "%s: since", tc->name);
            cr_expect_str_eq(unesc(&req.epoch, buf), tc->epoch, "%s: epoch", tc->name);
        }
        guard_free(&g);
    }
}

Test(channels, json_strings_round_trip)
{
    static const char *const texts[] = { "", "plain", "q\"b\\s", "\n\r\t\b\f",
                                         "\x01\x1f\x7f", "caf\xc3\xa9" };
    for (size_t i = 0; i < N(texts); i++) {
        size_t len = strlen(texts[i]);
        char json[128], env[160], back[128];
        size_t n = ch_json_write(json, texts[i], len);
        cr_expect_eq(n, ch_json_length(texts[i], len), "%zu: length", i);
        int m = snprintf(env, sizeof env, "[\"m\",%.*s]", (int)n, json);
        struct ch_request req;
        const char *why = NULL;
        cr_assert_eq(ch_parse(env, (size_t)m, &req, &why), 0, "%zu: %s", i, why ? why : "");
        size_t k = ch_unescape(&req.data, back);
        cr_expect(k == len && memcmp(back, texts[i], len) == 0, "%zu: round trip", i);
    }
    char out[16];
    cr_expect_eq(ch_json_write(out, "\x01", 1), 8);
    cr_expect(memcmp(out, "\"\\u0001\"", 8) == 0);
}

/* The payload of a server frame (unmasked, one fragment). */
static const uint8_t *payload(const struct obuf *b, size_t *len, unsigned *op)
{
    *op = b->data[0] & 0x0F;
    size_t n = b->data[1] & 0x7F, h = 2;
    if (n == 126) {
        n = (size_t)b->data[2] << 8 | b->data[3];
        h = 4;
    }
    *len = n;
    cr_assert_eq(h + n, b->len, "the frame's length matches its buffer");
    return b->data + h;
}

Test(channels, publication_frames)
{
    struct obuf *b = ch_publication_frame("chat", 4, 42, "ab12cd34", "say \"hi\"", 8, false);
    cr_assert(b);
    size_t len;
    unsigned op;
    const uint8_t *p = payload(b, &len, &op);
    const char *want = "[\"p\",\"chat\",42,\"ab12cd34\",\"say \\\"hi\\\"\"]";
    cr_expect_eq(op, 1);
    cr_expect(len == strlen(want) && memcmp(p, want, len) == 0, "got %.*s", (int)len, p);
    obuf_unref(b);

    b = ch_publication_frame("t", 1, 0, NULL, "x", 1, false);
    p = payload(b, &len, &op);
    want = "[\"p\",\"t\",0,\"\",\"x\"]";
    cr_expect(len == strlen(want) && memcmp(p, want, len) == 0, "got %.*s", (int)len, p);
    obuf_unref(b);

    /* Long enough for the 16-bit length form. */
    char big[300];
    memset(big, 'a', sizeof big);
    b = ch_publication_frame("t", 1, 1, "e", big, sizeof big, false);
    p = payload(b, &len, &op);
    cr_expect_eq(len, sizeof "[\"p\",\"t\",1,\"e\",\"\"]" - 1 + sizeof big);
    obuf_unref(b);

    static const uint8_t bin[] = { 0, 1, 2, 0xFF };
    b = ch_publication_frame("ab", 2, 258, "ep", bin, sizeof bin, true);
    p = payload(b, &len, &op);
    static const uint8_t want_bin[] = { 'p', 0, 2, 'a', 'b', 0, 0, 0, 0, 0, 0, 1, 2, 2, 'e',
                                        'p', 0, 1, 2, 0xFF };
    cr_expect_eq(op, 2);
    cr_expect(len == sizeof want_bin && memcmp(p, want_bin, len) == 0);
    obuf_unref(b);
}

Test(channels, heartbeat_frame)
{
    cr_expect_eq(ch_heartbeat_frame[0], 0x81);
    cr_expect_eq(ch_heartbeat_frame[1], sizeof ch_heartbeat_frame - 2);
    cr_expect(memcmp(ch_heartbeat_frame + 2, "[\"h\"]", 5) == 0);
}
