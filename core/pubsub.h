/* Pub/sub for one app: which connections are subscribed to which topics, and the fan-out of a
 * message framed once into a shared buffer that every subscriber's queue references.
 *
 * An engine carries topics beyond this process (other workers, other nodes through Redis). It
 * is told when a topic gets its first local subscriber and loses its last (so it subscribes
 * upstream only while someone here listens), and it is handed every publish, already framed,
 * to send on. Messages that arrive from it are delivered here with ps_deliver. Without an
 * engine (the default) topics are local to the app.
 *
 * History topics (the config's history rules, core/history.h): a publish on one is appended to
 * the process's history first, which gives it an offset and the stream's epoch (a struct
 * hist_pos), and every delivery of it carries that position: ps_deliver's pos. A protocol that
 * frames publications itself (e.g. an envelope ["p", topic, offset, epoch, data]) finds the
 * payload with ps_frame_payload and the position in pos. Offsets give one order for the
 * process: the history lock is held from the offset's assignment until the publication is in
 * every worker's inbox (publish_history), and with such an engine the publisher's own
 * subscribers get it through its inbox too, so every worker delivers in offset order. Plain
 * topics take none of this: one rule lookup (nothing without rules) is their only extra cost. */
#ifndef MOONWIRE_PUBSUB_H
#define MOONWIRE_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>

#include "counters.h"
#include "history.h"
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
    /* Optional. Carries a history publication (at pos) to every subscriber of the process,
     * this worker's included, in offset order: called with the history lock held, it must
     * only queue. Without it, ps_publish delivers locally and calls publish. Returns 0 or -1. */
    int (*publish_history)(void *ctx, const char *topic, size_t len, struct obuf *frame,
                           const struct hist_pos *pos);
    /* Optional. The engine keeps history itself, for every node (Redis): it stores a history
     * publication, which gives its offset, and delivers it to every subscriber, this worker's
     * included, in offset order (ps_deliver with its pos) once stored. The process's memory
     * history is not used then. Returns 0, or -1 when it cannot (nothing is sent). */
    int (*publish_stored)(void *ctx, const char *topic, size_t len, struct obuf *frame);
    /* Optional. c leaves topic (unsubscribe, or the end of c), before it is gone: what the
     * engine keeps per connection and topic (presence) goes with it. */
    void (*left)(void *ctx, struct conn *c, const char *topic, size_t len);
};

struct pubsub {
    struct topic_table topics;
    const struct ps_engine *engine; /* NULL: local only */
    void *engine_ctx;
    struct counters *counters;
    size_t max_subscriptions;       /* per connection; 0: no limit */
    struct history *history;        /* the process's history (NULL: none) */
    unsigned history_ns;            /* the app's namespace in it */
};

/* Results of ps_subscribe and ps_publish besides counts. */
enum {
    PS_E_LIMIT = -1,  /* the connection has max_subscriptions topics already */
    PS_E_NOMEM = -2,  /* out of memory: nothing changed */
    PS_E_REMOTE = -3, /* published locally, but the engine failed to carry it further */
    PS_E_FULL = -4,   /* the app's topics would take more than max_topic_bytes */
    PS_E_HISTORY = -5, /* a history topic's publication could not be stored: nothing sent */
    PS_E_STORE = -6,   /* the engine that keeps history could not take it: nothing sent */
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
/* ps_unsubscribe, but c's presence on topic (local and the engine's) stays: c subscribes again
 * at once (a moonwire.v1 subscribe the app's handler had done itself). If that fails, end the
 * presence with ps_presence_left. */
int ps_unsubscribe_keep_presence(struct pubsub *ps, struct conn *c, const char *topic,
                                 size_t len);
void ps_presence_left(struct pubsub *ps, struct conn *c, const char *topic, size_t len);
/* Ends every subscription of c (its WebSocket ended). */
void ps_leave_all(struct pubsub *ps, struct conn *c);

/* Subscribers of topic: the engine's count when it keeps one (every worker), else local. */
size_t ps_subscribers(const struct pubsub *ps, const char *topic, size_t len);

/* Frames data once as a text or binary message and queues it to every local subscriber, then
 * hands it to the engine. Returns 0 with the local receivers in *sent; PS_E_REMOTE when the
 * engine failed (*sent still counts the local ones); PS_E_NOMEM when out of memory (nothing
 * was sent locally). On a history topic, *pos (when not NULL) gets the publication's position
 * (offset 0 on a plain topic), the local receivers may get it a moment later (through the
 * inbox) and PS_E_HISTORY means it was not stored, so not sent either. */
int ps_publish(struct pubsub *ps, const char *topic, size_t len, const void *data,
               size_t data_len, bool binary, size_t *sent, struct hist_pos *pos);

/* Queues a frame (built once, e.g. by the engine) to every local subscriber. pos: where the
 * publication stands in its history (NULL on a plain topic). Subscribers that speak
 * moonwire.v1 get its envelope instead, ["p", topic, offset, epoch, data], framed once
 * (channels.h); a subscriber whose recovery sent this offset already gets nothing. Returns 0 with the receivers in
 * *sent, or PS_E_NOMEM when nothing was sent. */
int ps_deliver(struct pubsub *ps, const char *topic, size_t len, struct obuf *frame,
               const struct hist_pos *pos, size_t *sent);

/* Delivery of c's subscription to topic skips publications at or below offset in epoch from
 * now on (what a moonwire.v1 recovery has sent it already); publications in another epoch are
 * delivered. */
void ps_skip_to(struct pubsub *ps, struct conn *c, const char *topic, size_t len,
                uint64_t offset, const char *epoch);

/* Holding a subscriber's publications (moonwire.v1 recovery from an engine's history: the
 * range is read asynchronously while live publications keep coming). */
struct ps_hold_ops {
    /* A publication for the held member: frame is its plain frame (take a reference to keep
     * it), pos its position (NULL on a plain topic). It must not send or unsubscribe. */
    void (*deliver)(void *hold, struct obuf *frame, const struct hist_pos *pos);
    /* The member leaves the topic (unsubscribe, the end of the connection) while held. */
    void (*end)(void *hold);
};
/* From now on publications for c's subscription to topic go to ops->deliver(hold) instead of
 * c; ops NULL: sent to c again (end is not called). Returns false when c is not subscribed. */
bool ps_hold(struct pubsub *ps, struct conn *c, const char *topic, size_t len,
             const struct ps_hold_ops *ops, void *hold);

/* The engine found that topic's history was lost while this process listened (a new epoch, or
 * a gap in the offsets it could not fill): every moonwire.v1 subscriber (not held) is sent
 * ["R", topic, {"o": pos->offset, "e": pos->epoch}] (continue from there: the publications
 * after pos follow). Returns how many were told. */
size_t ps_history_lost(struct pubsub *ps, const char *topic, size_t len,
                       const struct hist_pos *pos);

/* The payload of a frame built here (a server frame: unmasked, one fragment), and its length. */
const char *ps_frame_payload(const struct obuf *frame, size_t *len);

#endif
