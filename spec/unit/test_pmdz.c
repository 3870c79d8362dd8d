/* Tests for permessage-deflate's zlib side (core/pmdz.h): frames round-trip through the
 * inflater, the inflater stops one byte past its cap on a zip bomb, compression that does not
 * pay is refused, zlib's memory is counted and given back, and a context deflater told about a
 * shared frame (pmdz_sync) stays in step with a client inflater that kept its window, while one
 * that is not told desynchronises (the failure the sync prevents). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "pmdz.h"

/* Inflates a frame made by pmdz_frame with s; returns the message (malloc'd) and its length. */
static uint8_t *unframe(z_stream *s, const struct obuf *f, ssize_t *n)
{
    size_t off = pmdz_payload_offset(f);
    cr_assert(f->data[0] & 0x40, "RSV1 set");
    uint8_t *out;
    *n = pmdz_inflate(s, f->data + off, f->len - off, 1 << 24, &out);
    return out;
}

Test(pmdz, round_trip_and_memory)
{
    size_t before = pmdz_memory();
    z_stream *d = pmdz_deflater_new(11, 3), *i = pmdz_inflater_new(15);
    cr_assert(d && i);
    cr_expect_gt(pmdz_memory(), before, "zlib's allocations are counted");
    const char *msg = "{\"type\":\"chat\",\"text\":\"hello hello hello hello hello\"}";
    for (int k = 0; k < 3; k++) {
        struct obuf *f = pmdz_frame(d, false, 1, msg, strlen(msg));
        cr_assert_not_null(f);
        ssize_t n;
        uint8_t *out = unframe(i, f, &n);
        cr_assert_eq(n, (ssize_t)strlen(msg));
        cr_expect_arr_eq(out, msg, strlen(msg));
        free(out);
        obuf_unref(f);
    }
    pmdz_deflater_free(d);
    pmdz_inflater_free(i);
    cr_expect_eq(pmdz_memory(), before, "every byte given back");
}

Test(pmdz, incompressible_is_refused_without_context)
{
    uint8_t noise[256];
    uint32_t x = 12345;
    for (size_t k = 0; k < sizeof noise; k++) {
        x = x * 1103515245 + 12345;
        noise[k] = (uint8_t)(x >> 16);
    }
    z_stream *d = pmdz_deflater_new(15, 6);
    cr_expect_null(pmdz_frame(d, true, 2, noise, sizeof noise));
    struct obuf *f = pmdz_frame(d, false, 2, noise, sizeof noise);
    cr_expect_not_null(f, "with context a frame always comes");
    obuf_unref(f);
    pmdz_deflater_free(d);
}

Test(pmdz, zip_bomb_stops_past_the_cap)
{
    size_t big = 8u << 20;
    uint8_t *zeros = calloc(1, big);
    z_stream *d = pmdz_deflater_new(15, 9), *i = pmdz_inflater_new(15);
    struct obuf *f = pmdz_frame(d, true, 2, zeros, big);
    cr_assert_not_null(f);
    cr_expect_lt(f->len, big / 500, "zeros compress about 1000 to 1");
    size_t off = pmdz_payload_offset(f);
    uint8_t *out;
    cr_expect_eq(pmdz_inflate(i, f->data + off, f->len - off, 1 << 20, &out), PMDZ_E_TOO_BIG);
    inflateReset(i);
    ssize_t n = pmdz_inflate(i, f->data + off, f->len - off, big, &out);
    cr_expect_eq(n, (ssize_t)big, "exactly at the cap is allowed");
    free(out);
    static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x00 };
    inflateReset(i);
    cr_expect_eq(pmdz_inflate(i, garbage, sizeof garbage, 1 << 20, &out), PMDZ_E_DATA);
    obuf_unref(f);
    free(zeros);
    pmdz_deflater_free(d);
    pmdz_inflater_free(i);
}

/* m1 through the context deflater, m2 as a shared frame (a fresh stream), m3 through the
 * context deflater again: the client's inflater keeps its window throughout. */
static bool third_arrives_intact(bool sync)
{
    const char *m1 = "{\"tick\":1,\"state\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa one\"}";
    const char *m2 = "{\"tick\":2,\"state\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz two\"}";
    const char *m3 = "{\"tick\":3,\"state\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa one\"}";
    z_stream *ctx = pmdz_deflater_new(11, 6), *shared = pmdz_deflater_new(11, 6);
    z_stream *client = pmdz_inflater_new(11);
    struct obuf *f1 = pmdz_frame(ctx, false, 1, m1, strlen(m1));
    struct obuf *f2 = pmdz_frame(shared, true, 1, m2, strlen(m2));
    if (sync) cr_assert_eq(pmdz_sync(ctx, m2, strlen(m2)), 0);
    struct obuf *f3 = pmdz_frame(ctx, false, 1, m3, strlen(m3));
    ssize_t n1, n2, n3;
    uint8_t *o1 = unframe(client, f1, &n1), *o2 = unframe(client, f2, &n2);
    uint8_t *o3 = unframe(client, f3, &n3);
    cr_assert_eq(n1, (ssize_t)strlen(m1));
    cr_assert_eq(n2, (ssize_t)strlen(m2));
    cr_assert(!memcmp(o2, m2, strlen(m2)));
    bool ok = n3 == (ssize_t)strlen(m3) && !memcmp(o3, m3, strlen(m3));
    free(o1);
    free(o2);
    free(o3);
    obuf_unref(f1);
    obuf_unref(f2);
    obuf_unref(f3);
    pmdz_deflater_free(ctx);
    pmdz_deflater_free(shared);
    pmdz_inflater_free(client);
    return ok;
}

Test(pmdz, shared_frame_keeps_context_in_step_with_sync)
{
    cr_expect(third_arrives_intact(true), "with pmdz_sync");
    cr_expect(!third_arrives_intact(false), "without it, the client inflates garbage");
}
