/* Fuzz target for the outbound client's response parser (core/http_response.h). Beyond not
 * crashing: the input fed whole and fed in the pieces of the split plan gives the same result,
 * status, fields, body and keep-alive, and the same count of bytes used; the body never passes
 * max_body and ends with a NUL; field names are lower-case tokens; hr_eof after "need more"
 * answers done only for a body read until close.
 *
 * Input: [0] flags (bit 0: the request was HEAD), [1] max_body in steps of 64 bytes (0: 64 KiB),
 * then an 8-byte split plan (fuzz.h), then the bytes the server sent. */
#include "fuzz.h"

#include "http_response.h"

struct outcome {
    int r, eof;
    size_t used;
};

static struct outcome run(struct hr *p, const uint8_t *data, size_t len, bool head, size_t max,
                          const uint8_t *plan)
{
    hr_init(p, head, max);
    struct outcome o = { .r = HR_NEED_MORE };
    struct fuzz_plan fp;
    if (plan) fuzz_plan_init(&fp, plan);
    while (o.used < len && o.r == HR_NEED_MORE) {
        size_t n = plan ? fuzz_plan_piece(&fp, len - o.used) : len - o.used;
        const char *piece = (const char *)fuzz_guard_copy(plan ? 1 : 0, data + o.used, n);
        size_t used = 0;
        o.r = hr_feed(p, piece, n, &used);
        FUZZ_CHECK(used <= n, "used %zu of %zu", used, n);
        FUZZ_CHECK(o.r != HR_NEED_MORE || used == n, "need more, but used %zu of %zu", used, n);
        o.used += used;
    }
    o.eof = o.r == HR_NEED_MORE ? hr_eof(p) : 0;
    return o;
}

static void check_result(const struct hr *p, int r, size_t max)
{
    if (r != HR_DONE) return;
    FUZZ_CHECK(p->status >= 100 && p->status <= 999, "status %d", p->status);
    FUZZ_CHECK(p->body_len <= max, "body %zu past max %zu", p->body_len, max);
    FUZZ_CHECK(p->body && p->body[p->body_len] == '\0', "body not NUL-terminated");
    for (size_t i = 0; i < p->nfields; i++) {
        const char *n = p->fields[2 * i];
        FUZZ_CHECK(*n, "empty field name");
        for (; *n; n++)
            FUZZ_CHECK(!(*n >= 'A' && *n <= 'Z') && *n > 0x20 && *n != ':', "bad name char");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 + FUZZ_PLAN_LEN) return 0;
    bool head = data[0] & 1;
    size_t max = data[1] ? (size_t)data[1] * 64 : 65536;
    const uint8_t *plan = data + 2;
    const uint8_t *in = data + 2 + FUZZ_PLAN_LEN;
    size_t len = size - 2 - FUZZ_PLAN_LEN;

    struct hr whole, parts;
    struct outcome a = run(&whole, in, len, head, max, NULL);
    struct outcome b = run(&parts, in, len, head, max, plan);
    int ra = a.r == HR_NEED_MORE ? a.eof : a.r, rb = b.r == HR_NEED_MORE ? b.eof : b.r;
    FUZZ_CHECK(ra == rb, "whole gives %d, pieces %d", ra, rb);
    if (a.r == HR_DONE || b.r == HR_DONE)
        FUZZ_CHECK(a.r == b.r && a.used == b.used, "used %zu whole, %zu in pieces", a.used,
                   b.used);
    if (ra == HR_DONE) {
        check_result(&whole, HR_DONE, max);
        check_result(&parts, HR_DONE, max);
        FUZZ_CHECK(whole.status == parts.status, "status differs");
        FUZZ_CHECK(whole.keep_alive == parts.keep_alive, "keep-alive differs");
        FUZZ_CHECK(whole.body_len == parts.body_len &&
                       memcmp(whole.body, parts.body, whole.body_len) == 0,
                   "body differs");
        FUZZ_CHECK(whole.nfields == parts.nfields, "field count differs");
        for (size_t i = 0; i < 2 * whole.nfields; i++)
            FUZZ_CHECK(strcmp(whole.fields[i], parts.fields[i]) == 0, "field %zu differs", i);
        if (a.r == HR_NEED_MORE)
            FUZZ_CHECK(!whole.keep_alive, "a body read until close left keep-alive on");
    }
    hr_free(&whole);
    hr_free(&parts);
    return 0;
}
