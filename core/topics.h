/* Pub/sub membership for one app: which members (connections) are subscribed to which topics.
 *
 * Both directions are kept: each topic has an array of members, each member a set of
 * references to its topics, and each side knows where it sits in the other. Subscribing,
 * unsubscribing and a member leaving all its topics cost O(1) per topic; a publish walks a
 * plain array. Pure: no I/O, no Lua; members are opaque pointers. */
#ifndef MOONWIRE_TOPICS_H
#define MOONWIRE_TOPICS_H

#include <stddef.h>
#include <stdint.h>

struct topic;

/* Where one of a member's topics keeps it: the topic and the member's index in it. */
struct topic_ref {
    struct topic *topic;
    uint32_t index;
};

/* A member's topics. Embed one per member, zeroed; it owns no memory until the first
 * subscription and none after topic_leave_all. */
struct topic_set {
    struct topic_ref *refs;
    uint32_t count;
    uint32_t cap;
};

/* An entry of a topic's member array. */
struct ps_hold_ops;

struct topic_member {
    void *member;
    struct topic_set *set;
    uint32_t ref; /* index of this topic in set->refs */
    /* History topics: publications at or below this offset in epoch skip_epoch are not
     * delivered to this member (moonwire.v1 recovery sent them already); 0 for all. A
     * publication in another epoch (the history was dropped and offsets start again) is
     * always delivered. */
    uint64_t skip_to;
    char skip_epoch[8 + 1]; /* HIST_EPOCH_LEN + 1, NUL-terminated */
    /* While not NULL, publications for this member go to hold_ops->deliver(hold, ...) instead
     * of being sent (a moonwire.v1 recovery from Redis buffers them; pubsub.h ps_hold). */
    const struct ps_hold_ops *hold_ops;
    void *hold;
};

struct topic {
    struct topic *next; /* hash chain */
    uint64_t hash;
    struct topic_member *members;
    uint32_t count;
    uint32_t cap;
    size_t name_len;
    char name[];
};

/* All topics of one app. Zero it to start (max_bytes may then be set); topic_table_free
 * releases it. */
struct topic_table {
    struct topic **buckets;
    size_t nbuckets; /* a power of two, or 0 before the first topic */
    size_t count;    /* topics with at least one member */
    /* What the table's members cost in memory: the buckets, each topic with its name and its
     * member array, and the members' reference arrays. Topic names come from clients, so this
     * is bounded: a subscription that would take bytes past max_bytes is refused. */
    size_t bytes;
    size_t max_bytes; /* 0: no bound */
};

/* Results of topic_subscribe besides 0 and 1. */
enum {
    TOPIC_E_NOMEM = -1, /* out of memory */
    TOPIC_E_FULL = -2,  /* it would take the table's bytes past max_bytes */
};

/* Subscribes member (whose set is set) to the topic name[0..len).
 * Returns 1 when subscribed, 0 when it already was, TOPIC_E_NOMEM or TOPIC_E_FULL (nothing
 * changed either way). */
int topic_subscribe(struct topic_table *t, struct topic_set *set, void *member, const char *name,
                    size_t len);

/* Unsubscribes the member of set from the topic. Returns 1, or 0 when it was not subscribed.
 * A topic left without members is freed. */
int topic_unsubscribe(struct topic_table *t, struct topic_set *set, const char *name, size_t len);

/* Unsubscribes the member of set from every topic and frees the set's memory. */
void topic_leave_all(struct topic_table *t, struct topic_set *set);

/* The topic with that name, or NULL when nobody is subscribed. Its members array is valid until
 * the next change to the table. */
const struct topic *topic_find(const struct topic_table *t, const char *name, size_t len);

/* Frees every topic and the table's buckets; sets are left pointing at freed topics, so call it
 * only when their members are gone too. */
void topic_table_free(struct topic_table *t);

#endif
