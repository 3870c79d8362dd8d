/* Output queue: a ring of (buffer, offset) pairs.
 *
 * A busy connection empties its queue at every flush and fills it again in the next turn of the
 * loop; freeing the chunk and the ring each time, and allocating them again, cost more than the
 * frames themselves (16 KiB allocations take malloc's slow path). So chunks and small rings go
 * back to small free lists, bounded, instead of to malloc. The lists are per thread: a loop
 * runs on one thread, so it never waits for another to reach its spares, and a buffer freed on
 * another thread than the one that made it simply joins that thread's spares. */
#include "outq.h"

#include <stdlib.h>
#include <string.h>

/* Private tail buffers are at least this big, so many small frames share one allocation. The
 * first buffer of an empty queue is small: most connections queue a little at a time (the 101
 * response, a few frames a turn), and a burst of new connections must not hold 16 KiB each. */
#define OUTQ_CHUNK 16384
#define OUTQ_FIRST 2048
#define RING_MIN 8
/* At most this many spare chunks (1 MiB) and rings are kept. */
#define POOL_MAX 64

static _Thread_local struct obuf *spare_chunks[POOL_MAX];
static _Thread_local size_t nspare_chunks;
static _Thread_local struct obuf *spare_firsts[POOL_MAX];
static _Thread_local size_t nspare_firsts;
static _Thread_local struct outq_entry *spare_rings[POOL_MAX];
static _Thread_local size_t nspare_rings;

struct obuf *obuf_new(size_t cap)
{
    struct obuf *b;
    if (cap == OUTQ_CHUNK && nspare_chunks) {
        b = spare_chunks[--nspare_chunks];
    } else if (cap == OUTQ_FIRST && nspare_firsts) {
        b = spare_firsts[--nspare_firsts];
    } else {
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
    }
    b->refs = 1;
    b->xthread = false;
    b->len = 0;
    b->cap = cap;
    return b;
}

void obuf_unref(struct obuf *b)
{
    if (b->xthread ? __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0 : --b->refs != 0)
        return;
    if (b->cap == OUTQ_CHUNK && nspare_chunks < POOL_MAX) spare_chunks[nspare_chunks++] = b;
    else if (b->cap == OUTQ_FIRST && nspare_firsts < POOL_MAX) spare_firsts[nspare_firsts++] = b;
    else free(b);
}

void outq_free_spares(void)
{
    while (nspare_chunks) free(spare_chunks[--nspare_chunks]);
    while (nspare_firsts) free(spare_firsts[--nspare_firsts]);
    while (nspare_rings) free(spare_rings[--nspare_rings]);
}

static void ring_free(struct outq_entry *ring, uint32_t cap)
{
    if (cap == RING_MIN && nspare_rings < POOL_MAX) spare_rings[nspare_rings++] = ring;
    else free(ring);
}

static int grow(struct outq *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : RING_MIN;
    struct outq_entry *ring = cap == RING_MIN && nspare_rings ? spare_rings[--nspare_rings]
                                                              : malloc(cap * sizeof *ring);
    if (!ring) return -1;
    /* Unwrap the old ring into the start of the new one. */
    for (uint32_t i = 0; i < q->count; i++) ring[i] = q->ring[(q->head + i) & (q->cap - 1)];
    if (q->ring) ring_free(q->ring, q->cap);
    q->ring = ring;
    q->head = 0;
    q->cap = cap;
    return 0;
}

int outq_push(struct outq *q, struct obuf *b, size_t off)
{
    /* An entry without bytes would keep the queue non-empty with nothing to write, and a flush
     * that writes 0 bytes and consumes 0 bytes would never get past it. */
    if (off == b->len) return 0;
    if (q->count == q->cap && grow(q) < 0) return -1;
    struct outq_entry *e = &q->ring[(q->head + q->count) & (q->cap - 1)];
    e->buf = obuf_ref(b);
    e->off = off;
    q->count++;
    q->bytes += b->len - off;
    return 0;
}

int outq_append(struct outq *q, const void *p, size_t len)
{
    if (len == 0) return 0; /* as in outq_push: never queue an empty entry */
    if (q->count) {
        struct obuf *tail = q->ring[(q->head + q->count - 1) & (q->cap - 1)].buf;
        /* Only a buffer nobody else references may grow: a shared one is someone's frame. */
        if (!tail->xthread && tail->refs == 1 && tail->cap - tail->len >= len) {
            memcpy(tail->data + tail->len, p, len);
            tail->len += len;
            q->bytes += len;
            return 0;
        }
    }
    size_t chunk = q->count ? OUTQ_CHUNK : OUTQ_FIRST;
    struct obuf *b = obuf_new(len > chunk ? len : chunk);
    if (!b) return -1;
    memcpy(b->data, p, len);
    b->len = len;
    int rc = outq_push(q, b, 0);
    obuf_unref(b); /* the queue holds its own reference, or none on failure */
    return rc;
}

int outq_iov(const struct outq *q, struct iovec *iov, int max)
{
    int n = 0;
    for (uint32_t i = 0; i < q->count && n < max; i++) {
        const struct outq_entry *e = &q->ring[(q->head + i) & (q->cap - 1)];
        iov[n].iov_base = e->buf->data + e->off;
        iov[n].iov_len = e->buf->len - e->off;
        n++;
    }
    return n;
}

void outq_consume(struct outq *q, size_t n)
{
    q->bytes -= n;
    while (n && q->count) {
        struct outq_entry *e = &q->ring[q->head];
        size_t left = e->buf->len - e->off;
        if (n < left) {
            e->off += n;
            return;
        }
        n -= left;
        obuf_unref(e->buf);
        q->head = (q->head + 1) & (q->cap - 1);
        q->count--;
    }
    /* An idle connection should not keep a ring around. */
    if (q->count == 0) outq_clear(q);
}

void outq_clear(struct outq *q)
{
    for (uint32_t i = 0; i < q->count; i++) obuf_unref(q->ring[(q->head + i) & (q->cap - 1)].buf);
    if (q->ring) ring_free(q->ring, q->cap);
    memset(q, 0, sizeof *q);
}
