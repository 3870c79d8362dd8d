/* Tests for the output queue (core/outq.h): bytes come out in order however they are consumed,
 * across ring wrap-around and growth; small appends coalesce into a private tail but never into
 * a shared buffer; reference counts follow the queues that hold a buffer; an empty queue owns
 * no memory. A long random run compares the queue with a plain byte string. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "outq.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Helpers --------------------------------------------------------------------------------- */

/* A buffer holding a copy of p[0..len), with room for cap bytes in all. */
static struct obuf *buf_of(const void *p, size_t len, size_t cap)
{
    struct obuf *b = obuf_new(cap);
    cr_assert_not_null(b, "obuf_new(%zu) failed", cap);
    cr_assert_eq(b->refs, 1, "a new buffer has %u references", b->refs);
    cr_assert_eq(b->len, 0);
    cr_assert_eq(b->cap, cap);
    memcpy(b->data, p, len);
    b->len = len;
    return b;
}

/* Everything outq_iov reports, joined. Also checks the invariants that hold between calls: the
 * byte counter is the sum of the iov lengths, no iov is empty, the ring is a power of two that
 * holds the entries, and an empty queue owns no ring. Returns the byte count (joined into out,
 * which has room for cap bytes). */
static size_t queue_bytes(const struct outq *q, uint8_t *out, size_t cap, const char *ctx)
{
    if (q->count == 0) {
        cr_expect(q->ring == NULL && q->cap == 0 && q->head == 0,
                  "%s: empty queue keeps a ring of %u", ctx, q->cap);
        cr_expect_eq(q->bytes, 0, "%s: empty queue counts %zu bytes", ctx, q->bytes);
        cr_expect(outq_empty(q), "%s: outq_empty says no", ctx);
        return 0;
    }
    cr_expect(!outq_empty(q), "%s: outq_empty with %u entries", ctx, q->count);
    cr_expect(q->cap && (q->cap & (q->cap - 1)) == 0, "%s: ring of %u", ctx, q->cap);
    cr_expect_leq(q->count, q->cap, "%s: %u entries in a ring of %u", ctx, q->count, q->cap);
    cr_expect_lt(q->head, q->cap, "%s: head %u in a ring of %u", ctx, q->head, q->cap);

    struct iovec *iov = calloc(q->count, sizeof *iov);
    cr_assert_not_null(iov);
    int n = outq_iov(q, iov, (int)q->count);
    cr_expect_eq(n, (int)q->count, "%s: %d iovecs for %u entries", ctx, n, q->count);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        cr_assert_neq(iov[i].iov_len, 0, "%s: iovec %d is empty", ctx, i);
        cr_assert_leq(total + iov[i].iov_len, cap, "%s: more bytes than expected", ctx);
        memcpy(out + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
    }
    cr_expect_eq(total, q->bytes, "%s: iovecs hold %zu bytes, counter says %zu", ctx, total,
                 q->bytes);
    free(iov);
    return total;
}

/* Checks that the queue holds exactly want[0..len). */
static void expect_queue(const struct outq *q, const void *want, size_t len, const char *ctx)
{
    uint8_t *got = malloc(len + 1);
    cr_assert_not_null(got);
    size_t n = queue_bytes(q, got, len, ctx);
    cr_expect_eq(n, len, "%s: %zu bytes queued, want %zu", ctx, n, len);
    if (n == len && memcmp(got, want, len) != 0) cr_expect(false, "%s: bytes differ", ctx);
    free(got);
}

static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static size_t random_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(next_random(s) % n) : 0;
}

/* ---- Basic behaviour ------------------------------------------------------------------------- */

Test(outq, zeroed_queue_is_empty_and_owns_nothing)
{
    struct outq q = { 0 };
    struct iovec iov[4];
    cr_expect(outq_empty(&q));
    cr_expect_eq(outq_iov(&q, iov, (int)N(iov)), 0, "iovecs from an empty queue");
    outq_consume(&q, 0);
    cr_expect(q.ring == NULL && q.count == 0 && q.bytes == 0, "consume(0) changed the queue");
    outq_clear(&q);
    cr_expect(q.ring == NULL && q.count == 0 && q.cap == 0 && q.bytes == 0);
}

Test(outq, push_keeps_a_reference_from_an_offset)
{
    struct outq q = { 0 };
    struct obuf *b = buf_of("0123456789", 10, 10);
    cr_assert_eq(outq_push(&q, b, 3), 0);
    cr_expect_eq(b->refs, 2, "push took %u references in all", b->refs);
    cr_expect_eq(q.bytes, 7);
    expect_queue(&q, "3456789", 7, "pushed from offset 3");

    struct iovec iov[2];
    cr_assert_eq(outq_iov(&q, iov, 2), 1);
    cr_expect_eq(iov[0].iov_base, b->data + 3, "the iovec is not the buffer itself");

    outq_consume(&q, 7);
    cr_expect_eq(b->refs, 1, "consumed buffer still referenced %u times", b->refs);
    cr_expect(q.ring == NULL && q.count == 0 && q.bytes == 0, "drained queue keeps its ring");
    obuf_unref(b);
}

/* Empty ranges queue nothing. An entry with no bytes would make outq_empty false while there
 * is nothing to write: a flush loop would then write zero bytes, consume zero bytes and spin. */
Test(outq, empty_ranges_queue_nothing)
{
    struct outq q = { 0 };
    struct obuf *b = buf_of("abc", 3, 8);

    cr_expect_eq(outq_append(&q, "", 0), 0);
    cr_expect(outq_empty(&q), "empty append made an entry");
    cr_expect_eq(outq_push(&q, b, 3), 0);
    cr_expect(outq_empty(&q), "push of an exhausted buffer made an entry");
    cr_expect_eq(b->refs, 1, "queue keeps a reference to nothing");
    expect_queue(&q, "", 0, "after empty ranges");

    /* Behind a shared tail, too, where an append cannot coalesce. */
    cr_assert_eq(outq_push(&q, b, 0), 0);
    cr_expect_eq(outq_append(&q, "", 0), 0);
    cr_expect_eq(q.count, 1, "empty append behind a shared tail made an entry");
    expect_queue(&q, "abc", 3, "shared tail, empty append");

    outq_clear(&q);
    cr_expect_eq(b->refs, 1);
    obuf_unref(b);
}

/* ---- Coalescing ------------------------------------------------------------------------------ */

Test(outq, append_coalesces_into_a_private_tail)
{
    struct outq q = { 0 };
    cr_assert_eq(outq_append(&q, "abc", 3), 0);
    cr_assert_eq(q.count, 1);
    struct obuf *tail = q.ring[q.head].buf;
    cr_expect_eq(tail->refs, 1, "the queue's own buffer is shared");
    cr_expect_gt(tail->cap, 3, "no room left to coalesce into");

    /* Small appends land in the same buffer until it is full. */
    char chunk[100];
    memset(chunk, 'x', sizeof chunk);
    size_t room = tail->cap - tail->len;
    size_t appended = 3;
    while (room >= sizeof chunk) {
        cr_assert_eq(outq_append(&q, chunk, sizeof chunk), 0);
        cr_assert_eq(q.count, 1, "a fitting append made a new entry after %zu bytes", appended);
        appended += sizeof chunk;
        room -= sizeof chunk;
    }
    cr_expect_eq(q.ring[q.head].buf, tail);
    cr_expect_eq(tail->len, appended);
    cr_expect_eq(q.bytes, appended);

    /* One more does not fit: a new buffer, and the old one is not overrun. */
    cr_assert_eq(outq_append(&q, chunk, sizeof chunk), 0);
    cr_expect_eq(q.count, 2, "an append that does not fit went into the full tail");
    cr_expect_leq(tail->len, tail->cap, "tail overrun: %zu of %zu", tail->len, tail->cap);

    /* The rest of the first buffer drains in pieces, still coalescing at the new tail. */
    cr_assert_eq(outq_append(&q, "yz", 2), 0);
    cr_expect_eq(q.count, 2);
    outq_consume(&q, appended - 1);
    cr_expect_eq(q.count, 2, "buffer released with a byte left");
    outq_consume(&q, 1);
    cr_expect_eq(q.count, 1, "finished buffer kept");
    cr_expect_eq(q.bytes, sizeof chunk + 2);
    outq_clear(&q);
}

Test(outq, append_larger_than_a_chunk_is_one_entry)
{
    struct outq q = { 0 };
    size_t len = 100000;
    uint8_t *big = malloc(len);
    cr_assert_not_null(big);
    for (size_t i = 0; i < len; i++) big[i] = (uint8_t)(i * 7);
    cr_assert_eq(outq_append(&q, "<", 1), 0);
    cr_assert_eq(outq_append(&q, big, len), 0);
    cr_expect_eq(q.count, 2, "a big append split or merged: %u entries", q.count);
    cr_expect_eq(q.bytes, len + 1);
    struct iovec iov[2];
    cr_assert_eq(outq_iov(&q, iov, 2), 2);
    cr_expect_eq(iov[1].iov_len, len);
    cr_expect(memcmp(iov[1].iov_base, big, len) == 0, "big append bytes differ");
    outq_clear(&q);
    free(big);
}

/* A buffer someone else references is their frame: appending into it would change what the
 * other queues send. Only once every other holder is gone may the queue write into it. */
Test(outq, append_never_writes_into_a_shared_buffer)
{
    struct outq q = { 0 }, other = { 0 };
    /* Lots of spare room, so only the sharing can stop a coalesce. */
    struct obuf *frame = buf_of("FRAME", 5, 4096);

    cr_assert_eq(outq_push(&q, frame, 0), 0);
    cr_assert_eq(outq_push(&other, frame, 0), 0);
    cr_expect_eq(frame->refs, 3);

    cr_assert_eq(outq_append(&q, "mine", 4), 0);
    cr_expect_eq(frame->len, 5, "append wrote into a shared buffer");
    cr_expect(memcmp(frame->data, "FRAME", 5) == 0);
    cr_expect_eq(q.count, 2);
    expect_queue(&q, "FRAMEmine", 9, "q");
    expect_queue(&other, "FRAME", 5, "other");

    /* Shared by two queues, not by the caller: still shared. */
    obuf_unref(frame);
    cr_expect_eq(frame->refs, 2);
    cr_assert_eq(outq_push(&q, frame, 0), 0); /* tail again, now held twice by q */
    cr_expect_eq(frame->refs, 3);
    cr_assert_eq(outq_append(&q, "!", 1), 0);
    cr_expect_eq(frame->len, 5, "append wrote into a buffer held by another queue");
    cr_expect_eq(q.count, 4);
    expect_queue(&q, "FRAMEmineFRAME!", 15, "q, frame twice");
    expect_queue(&other, "FRAME", 5, "other unchanged");

    outq_clear(&q);
    cr_expect_eq(frame->refs, 1, "clear left %u references", frame->refs);
    /* Held by `other` alone now, at its tail: a private buffer it may grow. */
    cr_assert_eq(outq_append(&other, "+tail", 5), 0);
    cr_expect_eq(other.count, 1, "did not coalesce into a buffer only this queue holds");
    expect_queue(&other, "FRAME+tail", 10, "other after coalescing");
    outq_clear(&other);
}

/* ---- Ring wrap-around and growth ------------------------------------------------------------- */

Test(outq, ring_wraps_and_grows_in_order)
{
    struct outq q = { 0 };
    /* Shared single-byte buffers, so each push is its own entry. */
    struct obuf *bytes[64];
    for (size_t i = 0; i < N(bytes); i++) {
        uint8_t c = (uint8_t)('A' + i % 26);
        bytes[i] = buf_of(&c, 1, 1);
    }
    char want[256];
    size_t wlen = 0, next = 0;
    bool wrapped = false, grew_wrapped = false;

    for (int round = 0; round < 40; round++) {
        /* Push a few, consume a few fewer: the head walks round the ring. */
        size_t push = 3 + (size_t)round % 5, take = 2 + (size_t)round % 4;
        for (size_t i = 0; i < push; i++, next++) {
            uint32_t cap = q.cap;
            bool was_wrapped = q.cap && q.head + q.count > q.cap;
            cr_assert_eq(outq_push(&q, bytes[next % N(bytes)], 0), 0);
            if (q.cap != cap && was_wrapped) grew_wrapped = true;
            want[wlen++] = (char)bytes[next % N(bytes)]->data[0];
        }
        if (q.head + q.count > q.cap) wrapped = true;
        cr_assert_leq(take, wlen);
        outq_consume(&q, take);
        memmove(want, want + take, wlen - take);
        wlen -= take;
        char ctx[32];
        snprintf(ctx, sizeof ctx, "round %d", round);
        expect_queue(&q, want, wlen, ctx);
    }
    cr_expect(wrapped, "the ring never wrapped");
    cr_expect(grew_wrapped, "the ring never grew while wrapped");

    outq_consume(&q, wlen);
    expect_queue(&q, "", 0, "drained");
    for (size_t i = 0; i < N(bytes); i++) {
        cr_expect_eq(bytes[i]->refs, 1, "buffer %zu: %u references", i, bytes[i]->refs);
        obuf_unref(bytes[i]);
    }
}

Test(outq, iov_respects_max)
{
    struct outq q = { 0 };
    struct obuf *b = buf_of("0123456789", 10, 10);
    for (size_t i = 0; i < 10; i++) cr_assert_eq(outq_push(&q, b, i), 0);
    cr_expect_eq(q.bytes, 55);

    /* The iovecs sit right before a guard page: writing one too many crashes. */
    for (int max = 0; max <= 10; max++) {
        struct guard g;
        static const struct iovec zero[10];
        struct iovec *iov = (struct iovec *)guard_copy(&g, zero, (size_t)max * sizeof *iov);
        int n = outq_iov(&q, iov, max);
        cr_expect_eq(n, max, "max %d: %d iovecs", max, n);
        for (int i = 0; i < n; i++) {
            cr_expect_eq(iov[i].iov_base, b->data + i, "max %d: iovec %d base", max, i);
            cr_expect_eq(iov[i].iov_len, 10 - (size_t)i, "max %d: iovec %d length", max, i);
        }
        guard_free(&g);
    }
    outq_clear(&q);
    cr_expect_eq(b->refs, 1);
    obuf_unref(b);
}

/* ---- Reference counts ------------------------------------------------------------------------ */

/* One frame published to several subscribers, drained at different speeds. The test keeps its
 * own reference to the end, so refs always equals 1 + the queues still holding the frame. */
Test(outq, shared_buffer_released_by_the_last_queue)
{
    enum { QUEUES = 4 };
    static const char text[] = "a frame published to every subscriber";
    size_t len = sizeof text - 1;
    struct obuf *frame = buf_of(text, len, len);
    struct outq q[QUEUES] = { { 0 } };
    for (int i = 0; i < QUEUES; i++) {
        cr_assert_eq(outq_append(&q[i], "hdr", 3), 0); /* something private in front */
        cr_assert_eq(outq_push(&q[i], frame, 0), 0);
    }
    cr_expect_eq(frame->refs, 1 + QUEUES);

    /* Queue i consumes i + 1 bytes per step; queue 3 is cleared half-way. */
    bool holds[QUEUES] = { true, true, true, true };
    size_t left[QUEUES];
    for (int i = 0; i < QUEUES; i++) left[i] = 3 + len;
    for (int step = 0; step < 64; step++) {
        for (int i = 0; i < QUEUES; i++) {
            if (!holds[i]) continue;
            if (i == 3 && left[i] < len / 2) {
                outq_clear(&q[i]);
                cr_expect(q[i].ring == NULL && q[i].count == 0 && q[i].bytes == 0);
                holds[i] = false;
                continue;
            }
            size_t n = (size_t)i + 1 < left[i] ? (size_t)i + 1 : left[i];
            outq_consume(&q[i], n);
            left[i] -= n;
            if (left[i] == 0) holds[i] = false;
            char ctx[48];
            snprintf(ctx, sizeof ctx, "queue %d step %d", i, step);
            if (holds[i] && left[i] <= len)
                expect_queue(&q[i], text + len - left[i], left[i], ctx);
        }
        uint32_t want = 1;
        for (int i = 0; i < QUEUES; i++) want += holds[i];
        cr_assert_eq(frame->refs, want, "step %d: %u references, want %u", step, frame->refs,
                     want);
    }
    for (int i = 0; i < QUEUES; i++) cr_expect_not(holds[i], "queue %d never finished", i);
    cr_expect_eq(frame->refs, 1, "queues done, %u references left", frame->refs);
    obuf_unref(frame);
}

Test(outq, clear_releases_every_reference)
{
    struct outq q = { 0 };
    struct obuf *a = buf_of("aaaa", 4, 4), *b = buf_of("bb", 2, 2);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(outq_push(&q, i % 3 ? a : b, (size_t)i % 2), 0);
        cr_assert_eq(outq_append(&q, "x", 1), 0);
    }
    cr_expect_gt(q.cap, 8, "the ring never grew");
    outq_consume(&q, 5); /* not at a boundary */
    outq_clear(&q);
    cr_expect(q.ring == NULL && q.count == 0 && q.cap == 0 && q.head == 0 && q.bytes == 0,
              "clear left state behind");
    cr_expect_eq(a->refs, 1, "a: %u references", a->refs);
    cr_expect_eq(b->refs, 1, "b: %u references", b->refs);
    obuf_unref(a);
    obuf_unref(b);
    /* And the queue is usable again. */
    cr_assert_eq(outq_append(&q, "again", 5), 0);
    expect_queue(&q, "again", 5, "after clear");
    outq_clear(&q);
}

/* ---- Random operations against a byte string ------------------------------------------------- */

/* Pushes (shared buffers at random offsets), appends of every size around the chunk size and
 * consumes of random length, including zero, one byte, exactly the head entry and everything;
 * after each step the queue's bytes must be the model's. */
static void run_random(uint64_t seed, unsigned ops)
{
    enum { POOL = 16, MODEL_CAP = 1 << 22 };
    uint8_t *model = malloc(MODEL_CAP), *scratch = malloc(MODEL_CAP);
    cr_assert(model && scratch);
    size_t mlen = 0;
    uint64_t s = seed;
    struct outq q = { 0 };

    /* A pool of shared buffers the test keeps one reference to. */
    struct obuf *pool[POOL];
    for (size_t i = 0; i < POOL; i++) {
        size_t len = 1 + random_below(&s, 3000);
        pool[i] = obuf_new(len + random_below(&s, 100));
        cr_assert_not_null(pool[i]);
        for (size_t k = 0; k < len; k++) pool[i]->data[k] = (uint8_t)next_random(&s);
        pool[i]->len = len;
    }
    uint8_t src[40000];
    for (size_t k = 0; k < sizeof src; k++) src[k] = (uint8_t)next_random(&s);

    char ctx[64];
    for (unsigned op = 0; op < ops; op++) {
        snprintf(ctx, sizeof ctx, "seed %llu op %u", (unsigned long long)seed, op);
        size_t what = random_below(&s, 100);
        if (what < 30 && mlen < MODEL_CAP / 2) {
            struct obuf *b = pool[random_below(&s, POOL)];
            size_t off = random_below(&s, b->len);
            cr_assert_eq(outq_push(&q, b, off), 0, "%s: push", ctx);
            memcpy(model + mlen, b->data + off, b->len - off);
            mlen += b->len - off;
        } else if (what < 60 && mlen < MODEL_CAP / 2) {
            /* Mostly small, sometimes around or past the size of a private chunk. */
            size_t len = random_below(&s, 8) == 0 ? random_below(&s, sizeof src)
                                                  : random_below(&s, 200);
            size_t from = random_below(&s, sizeof src - len + 1);
            cr_assert_eq(outq_append(&q, src + from, len), 0, "%s: append", ctx);
            memcpy(model + mlen, src + from, len);
            mlen += len;
        } else {
            size_t n;
            switch (random_below(&s, 5)) {
            case 0: n = 0; break;
            case 1: n = mlen ? 1 : 0; break;
            case 2: n = mlen; break;
            case 3: { /* exactly the head entry */
                struct iovec iov;
                n = outq_iov(&q, &iov, 1) ? iov.iov_len : 0;
                break;
            }
            default: n = random_below(&s, mlen + 1); break;
            }
            outq_consume(&q, n);
            memmove(model, model + n, mlen - n);
            mlen -= n;
        }
        size_t got = queue_bytes(&q, scratch, MODEL_CAP, ctx);
        if (got != mlen || memcmp(scratch, model, mlen) != 0)
            cr_assert_fail("%s: queue holds %zu bytes, model %zu, or they differ", ctx, got,
                           mlen);
    }
    outq_clear(&q);
    for (size_t i = 0; i < POOL; i++) {
        cr_expect_eq(pool[i]->refs, 1, "seed %llu: pool buffer %zu has %u references",
                     (unsigned long long)seed, i, pool[i]->refs);
        obuf_unref(pool[i]);
    }
    free(scratch);
    free(model);
}

Test(outq, random_operations_match_byte_string)
{
    static const uint64_t seeds[] = { 1, 77, 0xC0FFEE };
    for (size_t i = 0; i < N(seeds); i++) run_random(seeds[i], 20000);
}
