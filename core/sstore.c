/* The process-wide store behind mw.shared: see sstore.h. */
#include "sstore.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sstore_entry {
    struct sstore_entry *next;
    uint64_t hash;
    unsigned ns;
    double expires;            /* monotonic seconds; 0: never */
    enum sstore_type type;
    int64_t i;
    double d;
    size_t vlen;               /* SSTORE_STRING: bytes of the value, after the key */
    size_t klen;
    size_t size;               /* what it counts against the cap */
    char bytes[];              /* the key, then a string value */
};

static uint64_t hash_of(unsigned ns, const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ ((uint64_t)ns * 0x9E3779B97F4A7C15ULL);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 31);
}

void sstore_init(struct sstore *st, size_t cap)
{
    memset(st, 0, sizeof *st);
    st->cap = cap;
    for (size_t i = 0; i < SSTORE_STRIPES; i++) pthread_mutex_init(&st->stripes[i].lock, NULL);
}

void sstore_free(struct sstore *st)
{
    for (size_t i = 0; i < SSTORE_STRIPES; i++) {
        struct sstore_stripe *s = &st->stripes[i];
        for (size_t b = 0; b < s->nbuckets; b++)
            for (struct sstore_entry *e = s->buckets[b], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        free(s->buckets);
        s->buckets = NULL;
        s->nbuckets = s->count = 0;
        pthread_mutex_destroy(&s->lock);
    }
    st->bytes = 0;
}

size_t sstore_bytes(const struct sstore *st)
{
    return __atomic_load_n(&st->bytes, __ATOMIC_RELAXED);
}

static bool expired(const struct sstore_entry *e, double now)
{
    return e->expires > 0 && now >= e->expires;
}

/* The link to the entry for key in s (locked): *link is NULL when there is none. */
static struct sstore_entry **find(struct sstore_stripe *s, uint64_t h, unsigned ns,
                                  const char *key, size_t klen)
{
    if (!s->nbuckets) return NULL;
    struct sstore_entry **p = &s->buckets[(h / SSTORE_STRIPES) & (s->nbuckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->ns == ns && (*p)->klen == klen &&
            memcmp((*p)->bytes, key, klen) == 0)
            break;
    return p;
}

static void unlink_entry(struct sstore *st, struct sstore_stripe *s, struct sstore_entry **link)
{
    struct sstore_entry *e = *link;
    *link = e->next;
    s->count--;
    __atomic_sub_fetch(&st->bytes, e->size, __ATOMIC_RELAXED);
    free(e);
}

static int grow(struct sstore_stripe *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 16;
    struct sstore_entry **b = calloc(n, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (struct sstore_entry *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            struct sstore_entry **slot = &b[(e->hash / SSTORE_STRIPES) & (n - 1)];
            e->next = *slot;
            *slot = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

/* Frees the expired entries of every stripe, one stripe locked at a time (the caller holds
 * none: two locks held at once could deadlock). */
static void sweep(struct sstore *st, double now)
{
    for (size_t i = 0; i < SSTORE_STRIPES; i++) {
        struct sstore_stripe *s = &st->stripes[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->nbuckets; b++)
            for (struct sstore_entry **p = &s->buckets[b]; *p;) {
                if (expired(*p, now)) unlink_entry(st, s, p);
                else p = &(*p)->next;
            }
        pthread_mutex_unlock(&s->lock);
    }
}

/* Reserves size bytes against the cap. */
static bool reserve(struct sstore *st, size_t size)
{
    size_t before = __atomic_fetch_add(&st->bytes, size, __ATOMIC_RELAXED);
    if (!st->cap || before + size <= st->cap) return true;
    __atomic_sub_fetch(&st->bytes, size, __ATOMIC_RELAXED);
    return false;
}

/* An entry for key holding v. */
static struct sstore_entry *entry_new(uint64_t h, unsigned ns, const char *key, size_t klen,
                                      const struct sstore_value *v, double expires)
{
    size_t vlen = v->type == SSTORE_STRING ? v->len : 0;
    struct sstore_entry *e = malloc(sizeof *e + klen + vlen);
    if (!e) return NULL;
    e->next = NULL;
    e->hash = h;
    e->ns = ns;
    e->expires = expires;
    e->type = v->type;
    e->i = v->i;
    e->d = v->d;
    e->klen = klen;
    e->vlen = vlen;
    e->size = sizeof *e + klen + vlen;
    memcpy(e->bytes, key, klen);
    if (vlen) memcpy(e->bytes + klen, v->s, vlen);
    return e;
}

int sstore_get(struct sstore *st, unsigned ns, const char *key, size_t klen, double now,
               struct sstore_value *out, char **buf)
{
    memset(out, 0, sizeof *out);
    *buf = NULL;
    uint64_t h = hash_of(ns, key, klen);
    struct sstore_stripe *s = &st->stripes[h % SSTORE_STRIPES];
    int rc = SSTORE_OK;
    pthread_mutex_lock(&s->lock);
    struct sstore_entry **p = find(s, h, ns, key, klen);
    if (p && *p && expired(*p, now)) {
        unlink_entry(st, s, p);
    } else if (p && *p) {
        const struct sstore_entry *e = *p;
        out->type = e->type;
        out->i = e->i;
        out->d = e->d;
        if (e->type == SSTORE_STRING) {
            *buf = malloc(e->vlen ? e->vlen : 1);
            if (!*buf) {
                out->type = SSTORE_NONE;
                rc = SSTORE_E_NOMEM;
            } else {
                memcpy(*buf, e->bytes + e->klen, e->vlen);
                out->s = *buf;
                out->len = e->vlen;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int set_once(struct sstore *st, unsigned ns, const char *key, size_t klen,
                    const struct sstore_value *v, double ttl, bool only_new, double now)
{
    uint64_t h = hash_of(ns, key, klen);
    struct sstore_stripe *s = &st->stripes[h % SSTORE_STRIPES];
    int rc = SSTORE_OK;
    pthread_mutex_lock(&s->lock);
    struct sstore_entry **p = find(s, h, ns, key, klen);
    if (p && *p && expired(*p, now)) unlink_entry(st, s, p);
    if (p && *p && only_new) {
        rc = SSTORE_E_EXISTS;
    } else if (v->type == SSTORE_NONE) {
        if (p && *p) unlink_entry(st, s, p);
    } else {
        /* A value replacing another needs room only for what it adds. */
        size_t old = p && *p ? (*p)->size : 0;
        struct sstore_entry *e = entry_new(h, ns, key, klen, v, ttl > 0 ? now + ttl : 0);
        size_t need = e && e->size > old ? e->size - old : 0;
        if (!e) {
            rc = SSTORE_E_NOMEM;
        } else if (!reserve(st, need)) {
            free(e);
            rc = SSTORE_E_FULL;
        } else if (!old && s->count >= s->nbuckets && grow(s) < 0) {
            __atomic_sub_fetch(&st->bytes, need, __ATOMIC_RELAXED);
            free(e);
            rc = SSTORE_E_NOMEM;
        } else {
            p = find(s, h, ns, key, klen); /* the growth moved things */
            if (*p) {
                struct sstore_entry *gone = *p;
                e->next = gone->next;
                *p = e;
                /* Reserved need = max(0, new - old); the change is new - old. */
                __atomic_sub_fetch(&st->bytes, old + need - e->size, __ATOMIC_RELAXED);
                free(gone);
            } else {
                *p = e;
                s->count++;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sstore_set(struct sstore *st, unsigned ns, const char *key, size_t klen,
               const struct sstore_value *v, double ttl, bool only_new, double now)
{
    int rc = set_once(st, ns, key, klen, v, ttl, only_new, now);
    if (rc != SSTORE_E_FULL) return rc;
    /* Full: free what has expired (no lock held), then once more. */
    sweep(st, now);
    return set_once(st, ns, key, klen, v, ttl, only_new, now);
}

int sstore_incr(struct sstore *st, unsigned ns, const char *key, size_t klen,
                const struct sstore_value *by, double ttl, double now, struct sstore_value *out)
{
    uint64_t h = hash_of(ns, key, klen);
    struct sstore_stripe *s = &st->stripes[h % SSTORE_STRIPES];
    memset(out, 0, sizeof *out);
    int rc = SSTORE_OK;
    pthread_mutex_lock(&s->lock);
    struct sstore_entry **p = find(s, h, ns, key, klen);
    if (p && *p && expired(*p, now)) unlink_entry(st, s, p);
    struct sstore_entry *e = p ? *p : NULL;
    if (e && e->type != SSTORE_INTEGER && e->type != SSTORE_NUMBER) {
        rc = SSTORE_E_NOT_NUMBER;
    } else if (e) {
        /* In place: the entry's size does not change. */
        if (e->type == SSTORE_INTEGER && by->type == SSTORE_INTEGER) {
            int64_t r;
            if (__builtin_add_overflow(e->i, by->i, &r)) rc = SSTORE_E_OVERFLOW;
            else e->i = r;
        } else {
            double a = e->type == SSTORE_INTEGER ? (double)e->i : e->d;
            e->d = a + (by->type == SSTORE_INTEGER ? (double)by->i : by->d);
            e->type = SSTORE_NUMBER;
        }
        out->type = e->type;
        out->i = e->i;
        out->d = e->d;
    } else {
        pthread_mutex_unlock(&s->lock);
        /* Missing: set it to `by` unless another thread got there first, then try again. */
        int set = sstore_set(st, ns, key, klen, by, ttl, true, now);
        if (set == SSTORE_E_EXISTS) return sstore_incr(st, ns, key, klen, by, ttl, now, out);
        if (set == SSTORE_OK) *out = *by;
        return set;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}
