/* In-memory pub/sub history: see history.h. */
#include "history.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct hist_topic {
    struct hist_topic *next;              /* in its bucket */
    struct hist_topic *lru_prev, *lru_next;
    const struct hist_rule *rule;
    struct hist_entry **ring;             /* rule->size slots */
    uint32_t first, count;                /* the oldest entry's slot, entries held */
    uint64_t top;                         /* the last offset given (0: none) */
    char epoch[HIST_EPOCH_LEN + 1];
    double last_at;                       /* the last publication (or the creation) */
    size_t bytes;                         /* what this stream takes of the store */
    unsigned ns;
    size_t name_len;
    char name[];
};

void history_init(struct history *h, size_t max_bytes)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    h->max_bytes = max_bytes;
}

static void topic_free(struct hist_topic *t)
{
    for (uint32_t i = 0; i < t->count; i++) free(t->ring[(t->first + i) % t->rule->size]);
    free(t->ring);
    free(t);
}

void history_free(struct history *h)
{
    for (size_t b = 0; b < h->nbuckets; b++)
        for (struct hist_topic *t = h->buckets[b], *n; t; t = n) {
            n = t->next;
            topic_free(t);
        }
    free(h->buckets);
    pthread_mutex_destroy(&h->lock);
    memset(h, 0, sizeof *h);
}

int history_add_rule(struct history *h, const char *prefix, size_t len, uint32_t size, double ttl)
{
    if (h->nrules >= HIST_MAX_RULES || len >= HIST_MAX_PREFIX) return -1;
    struct hist_rule *r = &h->rules[h->nrules++];
    memcpy(r->prefix, prefix, len);
    r->prefix[len] = 0;
    r->prefix_len = len;
    r->size = size ? size : 1;
    r->ttl = ttl;
    return 0;
}

const struct hist_rule *history_rule(const struct history *h, const char *topic, size_t len)
{
    const struct hist_rule *best = NULL;
    for (size_t i = 0; i < h->nrules; i++) {
        const struct hist_rule *r = &h->rules[i];
        if (r->prefix_len <= len && memcmp(r->prefix, topic, r->prefix_len) == 0 &&
            (!best || r->prefix_len > best->prefix_len))
            best = r;
    }
    return best;
}

void history_lock(struct history *h) { pthread_mutex_lock(&h->lock); }
void history_unlock(struct history *h) { pthread_mutex_unlock(&h->lock); }

static uint64_t hash(unsigned ns, const char *s, size_t len)
{
    uint64_t x = 1469598103934665603ull ^ ns;
    for (size_t i = 0; i < len; i++) x = (x ^ (unsigned char)s[i]) * 1099511628211ull;
    return x;
}

static struct hist_topic **slot_of(struct history *h, unsigned ns, const char *name, size_t len)
{
    struct hist_topic **p = &h->buckets[hash(ns, name, len) & (h->nbuckets - 1)];
    while (*p && !((*p)->ns == ns && (*p)->name_len == len && memcmp((*p)->name, name, len) == 0))
        p = &(*p)->next;
    return p;
}

static void lru_unlink(struct history *h, struct hist_topic *t)
{
    if (t->lru_prev) t->lru_prev->lru_next = t->lru_next;
    else h->lru_head = t->lru_next;
    if (t->lru_next) t->lru_next->lru_prev = t->lru_prev;
    else h->lru_tail = t->lru_prev;
    t->lru_prev = t->lru_next = NULL;
}

static void lru_append(struct history *h, struct hist_topic *t)
{
    t->lru_prev = h->lru_tail;
    t->lru_next = NULL;
    if (h->lru_tail) h->lru_tail->lru_next = t;
    else h->lru_head = t;
    h->lru_tail = t;
}

/* Drops a stream: its history is lost (a new one gets a new epoch). */
static void topic_remove(struct history *h, struct hist_topic *t)
{
    struct hist_topic **p = slot_of(h, t->ns, t->name, t->name_len);
    *p = t->next;
    lru_unlink(h, t);
    h->bytes -= t->bytes;
    h->ntopics--;
    h->lost++;
    topic_free(t);
}

void history_new_epoch(char *out)
{
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz234567";
    unsigned char r[HIST_EPOCH_LEN];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* No entropy source: the clock still differs from one start to the next. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uintptr_t)out;
        for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ull + 1)
            r[i] = (unsigned char)(x >> 33);
    }
    for (size_t i = 0; i < HIST_EPOCH_LEN; i++) out[i] = digits[r[i] & 31];
    out[HIST_EPOCH_LEN] = 0;
}

/* Drops the oldest entries past their ttl. */
static void expire_entries(struct history *h, struct hist_topic *t, double now)
{
    while (t->count) {
        struct hist_entry *e = t->ring[t->first];
        if (e->at + t->rule->ttl > now) break;
        size_t sz = sizeof *e + e->len;
        t->bytes -= sz;
        h->bytes -= sz;
        free(e);
        t->ring[t->first] = NULL;
        t->first = (t->first + 1) % t->rule->size;
        t->count--;
    }
}

/* Streams nobody published to for their ttl are gone, two at most per call (the LRU's head is
 * the stalest), so that a store of many idle topics shrinks as others are used. */
static void expire_topics(struct history *h, double now, const struct hist_topic *keep)
{
    for (int i = 0; i < 2; i++) {
        struct hist_topic *t = h->lru_head;
        if (!t || t == keep || t->last_at + t->rule->ttl > now) return;
        topic_remove(h, t);
    }
}

static int grow(struct history *h)
{
    size_t n = h->nbuckets ? h->nbuckets * 2 : 64;
    struct hist_topic **b = calloc(n, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < h->nbuckets; i++)
        for (struct hist_topic *t = h->buckets[i], *next; t; t = next) {
            next = t->next;
            size_t k = hash(t->ns, t->name, t->name_len) & (n - 1);
            t->next = b[k];
            b[k] = t;
        }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = n;
    return 0;
}

/* Evicts streams (least recently published first, never keep) until need more bytes fit.
 * Returns whether they do. */
static bool make_room(struct history *h, size_t need, const struct hist_topic *keep)
{
    while (h->max_bytes && h->bytes + need > h->max_bytes) {
        struct hist_topic *t = h->lru_head;
        if (t == keep) t = t->lru_next;
        if (!t) return false;
        topic_remove(h, t);
    }
    return true;
}

/* The stream of ns's topic, created when create is set and there is none. */
static struct hist_topic *find(struct history *h, unsigned ns, const char *name, size_t len,
                               const struct hist_rule *rule, double now, bool create)
{
    if (h->nbuckets) {
        struct hist_topic *t = *slot_of(h, ns, name, len);
        if (t) {
            expire_entries(h, t, now);
            if (t->count || t->last_at + rule->ttl > now) return t;
            topic_remove(h, t); /* everything expired: it starts again in a new epoch */
        }
    }
    if (!create) return NULL;
    if (h->ntopics + 1 > h->nbuckets / 2 && grow(h) < 0) return NULL;
    size_t sz = sizeof(struct hist_topic) + len + (size_t)rule->size * sizeof(void *);
    if (!make_room(h, sz, NULL)) return NULL;
    struct hist_topic *t = calloc(1, sizeof *t + len);
    struct hist_entry **ring = calloc(rule->size, sizeof *ring);
    if (!t || !ring) {
        free(t);
        free(ring);
        return NULL;
    }
    t->rule = rule;
    t->ring = ring;
    t->ns = ns;
    t->name_len = len;
    memcpy(t->name, name, len);
    t->last_at = now;
    t->bytes = sz;
    history_new_epoch(t->epoch);
    struct hist_topic **p = slot_of(h, ns, name, len);
    t->next = *p;
    *p = t;
    lru_append(h, t);
    h->ntopics++;
    h->bytes += sz;
    return t;
}

int history_append(struct history *h, unsigned ns, const char *topic, size_t len,
                   const void *data, size_t data_len, bool binary, double now,
                   struct hist_pos *pos)
{
    const struct hist_rule *rule = history_rule(h, topic, len);
    if (!rule) return HIST_E_NORULE;
    size_t esz = sizeof(struct hist_entry) + data_len;
    if (h->max_bytes && esz > h->max_bytes / 2) return HIST_E_FULL;
    expire_topics(h, now, NULL);
    struct hist_topic *t = find(h, ns, topic, len, rule, now, true);
    if (!t) return HIST_E_NOMEM;
    struct hist_entry *old = t->count == rule->size ? t->ring[t->first] : NULL;
    size_t freed = old ? sizeof *old + old->len : 0;
    if (esz > freed && !make_room(h, esz - freed, t)) {
        /* This stream alone is past the store's size: it gives up its oldest entries. */
        while (t->count > 1 && h->max_bytes && h->bytes + esz - freed > h->max_bytes) {
            struct hist_entry *e = t->ring[t->first];
            if (e == old) break;
            size_t s = sizeof *e + e->len;
            t->bytes -= s;
            h->bytes -= s;
            free(e);
            t->ring[t->first] = NULL;
            t->first = (t->first + 1) % rule->size;
            t->count--;
        }
        if (h->max_bytes && h->bytes + esz - freed > h->max_bytes) return HIST_E_FULL;
    }
    struct hist_entry *e = malloc(esz);
    if (!e) return HIST_E_NOMEM;
    e->offset = t->top + 1;
    e->at = now;
    e->len = (uint32_t)data_len;
    e->binary = binary;
    memcpy(e->data, data, data_len);
    if (old) {
        free(old);
        t->first = (t->first + 1) % rule->size;
        t->count--;
    }
    t->ring[(t->first + t->count) % rule->size] = e;
    t->count++;
    t->bytes += esz - freed;
    h->bytes += esz - freed;
    t->top = e->offset;
    t->last_at = now;
    lru_unlink(h, t);
    lru_append(h, t);
    pos->offset = t->top;
    memcpy(pos->epoch, t->epoch, sizeof pos->epoch);
    return 0;
}

int history_read(struct history *h, unsigned ns, const char *topic, size_t len, bool since_given,
                 uint64_t since, const char *epoch, double now, struct hist_range *out)
{
    memset(out, 0, sizeof *out);
    const struct hist_rule *rule = history_rule(h, topic, len);
    if (!rule) return HIST_E_NORULE;
    struct hist_topic *t = find(h, ns, topic, len, rule, now, false);
    if (!t) {
        /* An empty stream for a read must not evict streams that hold publications (a client
         * subscribing to many new topics would wipe everyone's history): when it does not fit,
         * the answer has no position (offset 0, epoch "") and is not a recovery. */
        size_t sz = sizeof(struct hist_topic) + len + (size_t)rule->size * sizeof(void *);
        if (h->max_bytes && h->bytes + sz > h->max_bytes) {
            out->recovered = !since_given;
            return 0;
        }
        t = find(h, ns, topic, len, rule, now, true);
        if (!t) return HIST_E_NOMEM;
    }
    out->top.offset = t->top;
    memcpy(out->top.epoch, t->epoch, sizeof out->top.epoch);
    uint64_t oldest = t->count ? t->ring[t->first]->offset : t->top + 1;
    uint32_t from = 0;
    if (since_given) {
        bool same_epoch = !epoch || strcmp(epoch, t->epoch) == 0;
        /* Everything after since is held when since is not past the top and the entry after it
         * is still here (or there is none after it). */
        if (!same_epoch || since > t->top || since + 1 < oldest) return 0;
        from = (uint32_t)(since + 1 - oldest);
    }
    out->recovered = true;
    size_t n = t->count > from ? t->count - from : 0;
    if (!n) return 0;
    out->entries = calloc(n, sizeof *out->entries);
    if (!out->entries) {
        out->recovered = false;
        return HIST_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const struct hist_entry *e = t->ring[(t->first + from + i) % rule->size];
        struct hist_entry *c = malloc(sizeof *c + e->len);
        if (!c) {
            out->count = i;
            history_range_free(out);
            return HIST_E_NOMEM;
        }
        memcpy(c, e, sizeof *c + e->len);
        out->entries[i] = c;
    }
    out->count = n;
    return 0;
}

void history_range_free(struct hist_range *r)
{
    for (size_t i = 0; i < r->count; i++) free(r->entries[i]);
    free(r->entries);
    r->entries = NULL;
    r->count = 0;
}
