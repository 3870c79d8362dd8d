/* History of publications for the topics an app names in the config's history rules, kept in
 * process memory for every worker and app together (the memory engine of pub/sub history).
 *
 * Each history topic has a stream: a ring of its last `size` publications, each with an offset
 * (1, 2, 3... one more than the one before) and the time it was published, and an epoch: a
 * short random string chosen when the stream is created. A stream that is lost (expired after
 * ttl without publications, or evicted when the store is full) is created again with a new
 * epoch and offsets from 1, so a client that holds (offset, epoch) can tell its position is gone
 * rather than skip silently what it missed.
 *
 * One mutex guards the store. history_append and history_read need it held (history_lock): a
 * publisher keeps it while it hands the publication on, so that the order of offsets is the
 * order in which every worker receives them. The rules are fixed at init and read without it.
 *
 * Memory is bounded by max_bytes (entries, names and streams): past it, the streams published
 * to least recently are evicted first. */
#ifndef MOONWIRE_HISTORY_H
#define MOONWIRE_HISTORY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_EPOCH_LEN 8
#define HIST_MAX_RULES 64
#define HIST_MAX_PREFIX 128

/* Where a publication stands in its topic's stream. offset 0: not a history publication. */
struct hist_pos {
    uint64_t offset;
    char epoch[HIST_EPOCH_LEN + 1]; /* NUL-terminated */
};

struct hist_rule {
    char prefix[HIST_MAX_PREFIX]; /* topics starting with this; "" matches every topic */
    size_t prefix_len;
    uint32_t size;                /* publications kept (at least 1) */
    double ttl;                   /* seconds a publication is kept */
};

struct hist_entry {
    uint64_t offset;
    double at;
    uint32_t len;
    bool binary;
    char data[];
};

struct hist_topic;

struct history {
    pthread_mutex_t lock;
    struct hist_rule rules[HIST_MAX_RULES];
    size_t nrules;
    struct hist_topic **buckets;
    size_t nbuckets;
    size_t ntopics;
    size_t bytes;
    size_t max_bytes;
    struct hist_topic *lru_head, *lru_tail; /* least recently published first */
    uint64_t lost;                          /* streams lost (expired or evicted) */
};

/* Results besides 0. */
enum {
    HIST_E_NOMEM = -1, /* out of memory */
    HIST_E_FULL = -2,  /* one publication is larger than the whole store */
    HIST_E_NORULE = -3, /* the topic has no history rule */
};

void history_init(struct history *h, size_t max_bytes);
void history_free(struct history *h);

/* Adds a rule (before any other use). The longest matching prefix wins. Returns 0, or -1 when
 * there are HIST_MAX_RULES already or the prefix is too long. */
int history_add_rule(struct history *h, const char *prefix, size_t len, uint32_t size, double ttl);

/* The rule for topic, or NULL (plain topic). Lock-free; constant time without rules. */
const struct hist_rule *history_rule(const struct history *h, const char *topic, size_t len);

void history_lock(struct history *h);
void history_unlock(struct history *h);

/* Appends a publication to app ns's topic (lock held), giving it the next offset: *pos says
 * which, and in which epoch. now: monotonic seconds. Returns 0, HIST_E_NORULE, HIST_E_FULL or
 * HIST_E_NOMEM (nothing stored then). */
int history_append(struct history *h, unsigned ns, const char *topic, size_t len,
                   const void *data, size_t data_len, bool binary, double now,
                   struct hist_pos *pos);

/* What history_read found: the publications after `since`, each a copy (free with
 * history_range_free), and where the stream stands. */
struct hist_range {
    struct hist_entry **entries;
    size_t count;
    struct hist_pos top;   /* the stream's last offset (0: none yet) and its epoch */
    bool recovered;        /* every publication after since is here, in the epoch asked for */
};

/* Reads app ns's topic (lock held), creating its (empty) stream when there is none so that its
 * epoch holds from now on; when that stream does not fit in max_bytes, nothing is evicted for it
 * and the answer has no position (top offset 0, epoch ""). With since_given: the publications after since when they are all
 * still held and epoch (when not NULL) is the stream's, else none and recovered = false.
 * Without: every publication held, recovered = true. Returns 0, HIST_E_NORULE or HIST_E_NOMEM. */
int history_read(struct history *h, unsigned ns, const char *topic, size_t len, bool since_given,
                 uint64_t since, const char *epoch, double now, struct hist_range *out);
void history_range_free(struct hist_range *r);

/* A new random epoch: HIST_EPOCH_LEN characters and a NUL into out. */
void history_new_epoch(char *out);

#endif
