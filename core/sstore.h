/* The process-wide store behind mw.shared: keys mapped to strings, numbers or booleans, with
 * an optional expiry, shared by every worker thread (like OpenResty's ngx.shared.DICT).
 *
 * Each key belongs to a namespace (an app's index: apps never see each other's keys). Striped
 * mutexes: an operation locks one stripe for the time of a hash lookup and a copy, so a get,
 * set or incr is atomic across workers. The bytes of every entry (its key, its value and its
 * bookkeeping) count against one cap; a write that would pass it first frees expired entries,
 * and fails when that is not enough (nothing is evicted that has not expired). Pure apart from
 * malloc and the monotonic clock passed in. */
#ifndef MOONWIRE_SSTORE_H
#define MOONWIRE_SSTORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSTORE_STRIPES 64
#define SSTORE_MAX_KEY 1024

enum sstore_type { SSTORE_NONE, SSTORE_STRING, SSTORE_INTEGER, SSTORE_NUMBER, SSTORE_BOOLEAN };

/* A value: a string points into memory the caller owns (set) or the store gave (get). */
struct sstore_value {
    enum sstore_type type;
    int64_t i;     /* SSTORE_INTEGER; SSTORE_BOOLEAN: 0 or 1 */
    double d;      /* SSTORE_NUMBER */
    const char *s; /* SSTORE_STRING */
    size_t len;
};

struct sstore_entry;

struct sstore_stripe {
    pthread_mutex_t lock;
    struct sstore_entry **buckets;
    size_t nbuckets;
    size_t count;
};

struct sstore {
    size_t cap;   /* bytes; 0: no cap */
    size_t bytes; /* atomic: what the entries take */
    struct sstore_stripe stripes[SSTORE_STRIPES];
};

enum {
    SSTORE_OK = 0,
    SSTORE_E_FULL = -1,     /* past the cap, even after freeing expired entries */
    SSTORE_E_NOMEM = -2,
    SSTORE_E_NOT_NUMBER = -3, /* incr on a value that is not a number */
    SSTORE_E_EXISTS = -4,   /* add of a key that holds a value */
    SSTORE_E_OVERFLOW = -5, /* incr past the integers */
};

void sstore_init(struct sstore *st, size_t cap);
void sstore_free(struct sstore *st);

/* Copies the value of key into *out; a string is copied into buf (malloc'd, the caller frees
 * it; NULL otherwise). out->type is SSTORE_NONE when missing or expired. now: monotonic
 * seconds. Returns 0, or SSTORE_E_NOMEM. */
int sstore_get(struct sstore *st, unsigned ns, const char *key, size_t klen, double now,
               struct sstore_value *out, char **buf);

/* Sets key to v (SSTORE_NONE deletes it), expiring ttl seconds after now (ttl <= 0: never).
 * only_new: fail with SSTORE_E_EXISTS when the key holds an unexpired value (add). */
int sstore_set(struct sstore *st, unsigned ns, const char *key, size_t klen,
               const struct sstore_value *v, double ttl, bool only_new, double now);

/* Adds by (an integer, or a number) to key's number, a missing key counting as 0 (and then
 * expiring after ttl when ttl > 0; an existing key keeps its expiry). The result in *out. */
int sstore_incr(struct sstore *st, unsigned ns, const char *key, size_t klen,
                const struct sstore_value *by, double ttl, double now, struct sstore_value *out);

/* Bytes the entries take now. */
size_t sstore_bytes(const struct sstore *st);

#endif
