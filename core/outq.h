/* Outgoing bytes a connection could not write yet.
 *
 * A queue of references to buffers. A buffer may be shared: a message published to a topic is
 * framed once into one buffer, and every subscriber whose socket is full queues a reference to it
 * instead of a copy. Small private writes are appended to the tail buffer when it is not shared,
 * so a stream of small frames does not become a stream of small allocations. An empty queue owns
 * no memory, so an idle connection pays only for the struct. */
#ifndef MOONWIRE_OUTQ_H
#define MOONWIRE_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* A reference-counted byte buffer. One that other worker threads reference too (a publish
 * handed to them, bus.c) is marked xthread before it is handed over: its count then changes
 * with atomic operations, and it is never appended to. */
struct obuf {
    uint32_t refs;
    bool xthread;
    size_t len;
    size_t cap;
    uint8_t data[];
};

/* Returns a new buffer with room for cap bytes, len 0 and one reference, or NULL. */
struct obuf *obuf_new(size_t cap);
static inline struct obuf *obuf_ref(struct obuf *b)
{
    if (b->xthread) __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED);
    else b->refs++;
    return b;
}
void obuf_unref(struct obuf *b);

/* Frees the calling thread's spare buffers and rings (kept per thread for reuse): a worker
 * thread calls it before it ends. */
void outq_free_spares(void);

struct outq_entry {
    struct obuf *buf;
    size_t off; /* bytes of buf already written */
};

struct outq {
    struct outq_entry *ring; /* NULL while empty and never used */
    uint32_t head;
    uint32_t count;
    uint32_t cap;            /* a power of two */
    size_t bytes;            /* unwritten bytes in the queue */
};

static inline int outq_empty(const struct outq *q) { return q->count == 0; }

/* Appends a reference to b[off..len). Returns 0, or -1 when out of memory (nothing queued). */
int outq_push(struct outq *q, struct obuf *b, size_t off);

/* Appends a copy of p[0..len), into the tail buffer when it is private and has room.
 * Returns 0, or -1 when out of memory (nothing queued). */
int outq_append(struct outq *q, const void *p, size_t len);

/* Fills up to max iovecs from the head of the queue. Returns how many. */
int outq_iov(const struct outq *q, struct iovec *iov, int max);

/* Drops the first n unwritten bytes (n <= q->bytes), releasing finished buffers. */
void outq_consume(struct outq *q, size_t n);

/* Drops everything and frees the ring. */
void outq_clear(struct outq *q);

#endif
