/* The bus between worker threads: pub/sub across workers.
 *
 * Two parts, neither doing I/O:
 *
 * - Interest: for each app (by index) and topic, which workers have local subscribers (a
 *   64-bit mask) and how many subscribers there are in all. Workers update it when a topic
 *   gains or loses a local subscriber; a publish reads it to find the workers to send to.
 *   Striped mutexes: a lookup takes one stripe's lock for a few instructions.
 *
 * - Inboxes: one bounded multi-producer, single-consumer ring per worker (Vyukov's bounded
 *   queue: a producer claims a slot with one compare-and-swap, the consumer takes slots in
 *   order with plain loads and stores). No lock on either side. A publish is framed once into
 *   a bus_msg that every target's ring references; each target delivers the frame by reference
 *   to its own subscribers. A producer's messages keep their order in each ring, so order is
 *   kept per publisher and topic. A full ring (slots, or the byte budget) drops the message for
 *   that worker only and counts it: the publisher never waits. */
#ifndef MOONWIRE_BUS_H
#define MOONWIRE_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "history.h"
#include "outq.h"

/* One publish on its way to other workers. */
struct bus_msg {
    uint32_t refs;       /* atomic: one per ring holding it, plus the publisher's while sending */
    uint32_t app;        /* the app's index in the config: the same app in every worker */
    struct obuf *frame;  /* the whole WebSocket frame, marked xthread */
    struct hist_pos pos; /* a history publication's position (offset 0: a plain topic) */
    size_t topic_len;
    char topic[];
};

struct bus_slot {
    size_t seq; /* atomic: the turn this slot is ready for */
    struct bus_msg *msg;
};

struct bus_inbox {
    struct bus_slot *slots;
    size_t mask;
    _Alignas(64) size_t head;  /* atomic: the next slot producers claim */
    _Alignas(64) size_t tail;  /* the consumer's next slot (its thread only) */
    size_t bytes;              /* atomic: frame bytes queued */
    uint64_t dropped;          /* atomic: messages dropped because the ring was full */
    uint64_t dropped_logged;   /* the consumer's: what it has logged of dropped */
};

#define BUS_STRIPES 64

struct bus_topic;

struct bus_stripe {
    pthread_mutex_t lock;
    struct bus_topic **buckets;
    size_t nbuckets;
    size_t count;
};

struct bus {
    size_t nworkers;
    size_t max_bytes; /* per inbox */
    struct bus_inbox inbox[CFG_MAX_WORKERS];
    struct bus_stripe stripes[BUS_STRIPES];
    /* Called after a message was queued for worker (from the publisher's thread). */
    void (*wake)(void *ctx, unsigned worker);
    void *wake_ctx;
};

/* Prepares bus for nworkers (at most CFG_MAX_WORKERS), each inbox with `slots` slots (a power of
 * two) and at most max_bytes of frames. Returns 0, or -1 when out of memory. */
int bus_init(struct bus *bus, size_t nworkers, size_t slots, size_t max_bytes);
/* Frees the bus and every message still queued. No thread may use it any more. */
void bus_free(struct bus *bus);

/* worker's local subscribers of app's topic changed by delta (+1 or -1), leaving `local`.
 * Returns 0, or -1 when out of memory (the topic is then not known to other workers). */
int bus_interest(struct bus *bus, unsigned app, const char *topic, size_t len, unsigned worker,
                 int delta, size_t local);
/* Subscribers of app's topic on every worker. */
size_t bus_subscribers(struct bus *bus, unsigned app, const char *topic, size_t len);
/* A topic and its subscribers on every worker, copied (names longer than name are cut). */
struct bus_topic_count {
    unsigned app;
    size_t subscribers;
    size_t len;
    char name[256];
};

/* Fills out with up to n topics of every app with the most subscribers over all workers, most
 * first. Locks the stripes one after another: for the dashboard's snapshot, not a hot path. */
size_t bus_busiest(struct bus *bus, struct bus_topic_count *out, size_t n);

/* The workers with subscribers to app's topic. */
uint64_t bus_workers(struct bus *bus, unsigned app, const char *topic, size_t len);

/* Sends frame (marked xthread here) to every worker but `from` with subscribers to app's topic.
 * Returns how many workers it was queued to; *dropped says how many rings were full. */
size_t bus_publish(struct bus *bus, unsigned from, unsigned app, const char *topic, size_t len,
                   struct obuf *frame, size_t *dropped);
/* from = BUS_EVERYONE: the publisher's own worker is sent it too (history publications, which
 * every worker must deliver in the order of their offsets). */
#define BUS_EVERYONE CFG_MAX_WORKERS
/* bus_publish with the publication's position in its history (NULL: plain). */
size_t bus_publish_at(struct bus *bus, unsigned from, unsigned app, const char *topic,
                      size_t len, struct obuf *frame, const struct hist_pos *pos,
                      size_t *dropped);

/* The next message for worker (its own thread only), or NULL. Release it with bus_msg_unref. */
struct bus_msg *bus_pop(struct bus *bus, unsigned worker);
void bus_msg_unref(struct bus_msg *m);

/* Messages dropped for worker since the last call (its own thread only). */
uint64_t bus_dropped_since(struct bus *bus, unsigned worker);
/* Messages dropped for worker in all (any thread). */
uint64_t bus_dropped(const struct bus *bus, unsigned worker);

#endif
