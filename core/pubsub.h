/* Pub/sub for one app: which connections are subscribed to which topics, and the fan-out of a
 * message framed once into a shared buffer that every subscriber's queue references.
 *
 * An engine carries topics beyond this process (other workers, other nodes through Redis). It
 * is told when a topic gets its first local subscriber and loses its last (so it subscribes
 * upstream only while someone here listens), and it is handed every publish, already framed,
 * to send on. Messages that arrive from it are delivered here with ps_deliver. Without an
 * engine (the default) topics are local to the app. */
#ifndef MOONWIRE_PUBSUB_H
#define MOONWIRE_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "counters.h"
#include "outq.h"
#include "topics.h"

struct conn;

struct ps_engine {
    /* topic[0..len) got its first local subscriber. */
    void (*first_subscriber)(void *ctx, const char *topic, size_t len);
    /* topic[0..len) is about to lose its last local subscriber (the name is valid only during
     * the call). */
    void (*last_subscriber)(void *ctx, const char *topic, size_t len);
    /* Sends a publish beyond this process: frame is the whole WebSocket frame (take a reference
     * to keep it). Returns 0, or -1 when that part failed (the local part has happened). */
    int (*publish)(void *ctx, const char *topic, size_t len, struct obuf *frame);
    /* Optional. topic[0..len) gained (delta +1) or lost (-1) a local subscriber, leaving
     * `local` (the name is valid only during the call): other workers count them. */
    void (*changed)(void *ctx, const char *topic, size_t len, int delta, size_t local);
    /* Optional. Subscribers of topic everywhere the engine knows of (mw.subscribers). */
    size_t (*subscribers)(void *ctx, const char *topic, size_t len);
};

struct pubsub {
    struct topic_table topics;
    const struct ps_engine *engine; /* NULL: local only */
    void *engine_ctx;
    struct counters *counters;
    size_t max_subscriptions;       /* per connection; 0: no limit */
};

/* Results of ps_subscribe and ps_publish besides counts. */
enum {
    PS_E_LIMIT = -1,  /* the connection has max_subscriptions topics already */
    PS_E_NOMEM = -2,  /* out of memory: nothing changed */
    PS_E_REMOTE = -3, /* published locally, but the engine failed to carry it further */
    PS_E_FULL = -4,   /* the app's topics would take more than max_topic_bytes */
};

/* max_topic_bytes bounds the memory of the app's topics (see struct topic_table); 0: none. */
void ps_init(struct pubsub *ps, struct counters *counters, size_t max_subscriptions,
             size_t max_topic_bytes);
void ps_set_engine(struct pubsub *ps, const struct ps_engine *engine, void *ctx);
/* Frees every topic; call it only when no connection is subscribed any more. */
void ps_free(struct pubsub *ps);

/* Subscribes c. Returns 1 when subscribed, 0 when it already was, PS_E_LIMIT, PS_E_FULL or
 * PS_E_NOMEM. */
int ps_subscribe(struct pubsub *ps, struct conn *c, const char *topic, size_t len);
/* Returns 1 when c was subscribed (and now is not), 0 otherwise. */
int ps_unsubscribe(struct pubsub *ps, struct conn *c, const char *topic, size_t len);
/* Ends every subscription of c (its WebSocket ended). */
void ps_leave_all(struct pubsub *ps, struct conn *c);

/* Subscribers of topic: the engine's count when it keeps one (every worker), else local. */
size_t ps_subscribers(const struct pubsub *ps, const char *topic, size_t len);

/* Frames data once as a text or binary message and queues it to every local subscriber, then
 * hands it to the engine. Returns 0 with the local receivers in *sent; PS_E_REMOTE when the
 * engine failed (*sent still counts the local ones); PS_E_NOMEM when out of memory (nothing
 * was sent locally). */
int ps_publish(struct pubsub *ps, const char *topic, size_t len, const void *data,
               size_t data_len, bool binary, size_t *sent);

/* Queues a frame (built once, e.g. by the engine) to every local subscriber. Returns 0 with the
 * receivers in *sent, or PS_E_NOMEM when nothing was sent. */
int ps_deliver(struct pubsub *ps, const char *topic, size_t len, struct obuf *frame,
               size_t *sent);

#endif
