/* Fuzz target for the moonwire.v1 envelope parser (core/channels.h). Beyond not crashing or
 * reading past the input (a guard copy): an accepted envelope has a known op, ids in range,
 * strings that lie inside the input and unescape to no more bytes than they take, to valid
 * UTF-8 when the input was; and writing the unescaped data as a JSON string and parsing it
 * back gives the same bytes. An error always says why. */
#include "fuzz.h"

#include "channels.h"

static bool inside(const struct ch_str *s, const char *buf, size_t len)
{
    return !s->len || (s->p >= buf && s->p + s->len <= buf + len);
}

static bool valid_utf8(const char *p, size_t len)
{
    struct ref_utf8 u = { 0, 0, 0 };
    for (size_t i = 0; i < len; i++)
        if (!ref_utf8_byte(&u, (uint8_t)p[i])) return false;
    return ref_utf8_at_boundary(&u);
}

static void check_string(const struct ch_str *s, const char *buf, size_t len, bool utf8)
{
    FUZZ_CHECK(inside(s, buf, len), "a string points outside the input");
    char *out = malloc(s->len + 1);
    FUZZ_CHECK(out, "out of memory");
    size_t n = ch_unescape(s, out);
    FUZZ_CHECK(n <= s->len, "unescaping grew %zu bytes to %zu", s->len, n);
    if (utf8) FUZZ_CHECK(valid_utf8(out, n), "unescaped text is not valid UTF-8");
    /* Round trip through the writer. */
    size_t jl = ch_json_length(out, n);
    char *env = malloc(jl + 8);
    FUZZ_CHECK(env, "out of memory");
    memcpy(env, "[\"m\",", 5);
    size_t w = ch_json_write(env + 5, out, n);
    FUZZ_CHECK(w == jl, "ch_json_write wrote %zu, ch_json_length said %zu", w, jl);
    env[5 + w] = ']';
    struct ch_request back;
    const char *why = NULL;
    if (utf8) {
        FUZZ_CHECK(ch_parse(env, w + 6, &back, &why) == 0, "a written string does not parse: %s",
                   why);
        char *again = malloc(n + 1);
        FUZZ_CHECK(again, "out of memory");
        size_t m = ch_unescape(&back.data, again);
        FUZZ_CHECK(m == n && memcmp(again, out, n) == 0, "round trip changed the string");
        free(again);
    }
    free(env);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)fuzz_guard_copy(0, data, size);
    bool utf8 = valid_utf8(buf, size);
    struct ch_request req;
    const char *why = NULL;
    int rc = ch_parse(buf, size, &req, &why);
    if (rc) {
        FUZZ_CHECK(rc == CH_MALFORMED || rc == CH_UNKNOWN_OP, "rc %d", rc);
        FUZZ_CHECK(why && *why, "an error without a reason");
        FUZZ_CHECK(req.id <= CH_MAX_INTEGER, "id out of range");
        return 0;
    }
    FUZZ_CHECK(req.op == 's' || req.op == 'u' || req.op == 'p' || req.op == 'm', "op %d",
               req.op);
    if (req.op != 'm') {
        FUZZ_CHECK(req.id >= 1 && req.id <= CH_MAX_INTEGER, "id %llu",
                   (unsigned long long)req.id);
        check_string(&req.topic, buf, size, utf8);
    } else {
        FUZZ_CHECK(req.id == 0, "a message with an id");
    }
    if (req.op == 'p' || req.op == 'm') check_string(&req.data, buf, size, utf8);
    if (req.has_since) {
        FUZZ_CHECK(req.op == 's', "recovery on op %c", req.op);
        FUZZ_CHECK(req.since <= CH_MAX_INTEGER, "offset out of range");
        FUZZ_CHECK(!req.epoch.escaped && req.epoch.len <= CH_MAX_EPOCH, "epoch");
        FUZZ_CHECK(inside(&req.epoch, buf, size), "epoch outside the input");
    }
    return 0;
}
