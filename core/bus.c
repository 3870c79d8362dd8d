/* The bus between worker threads: see bus.h. */
#include "bus.h"

#include <stdlib.h>
#include <string.h>

struct bus_topic {
    struct bus_topic *next;
    uint64_t hash;
    uint32_t app;
    uint64_t workers; /* bit i: worker i has local subscribers */
    size_t total;     /* subscribers on every worker */
    size_t len;
    char name[];
};

static uint64_t hash_of(unsigned app, const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL ^ app;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

int bus_init(struct bus *bus, size_t nworkers, size_t slots, size_t max_bytes)
{
    memset(bus, 0, sizeof *bus);
    bus->nworkers = nworkers;
    bus->max_bytes = max_bytes;
    for (size_t s = 0; s < BUS_STRIPES; s++) pthread_mutex_init(&bus->stripes[s].lock, NULL);
    for (size_t w = 0; w < nworkers; w++) {
        struct bus_inbox *q = &bus->inbox[w];
        q->slots = calloc(slots, sizeof *q->slots);
        if (!q->slots) {
            bus_free(bus);
            return -1;
        }
        q->mask = slots - 1;
        for (size_t i = 0; i < slots; i++) q->slots[i].seq = i;
    }
    return 0;
}

void bus_free(struct bus *bus)
{
    for (size_t w = 0; w < bus->nworkers; w++) {
        if (!bus->inbox[w].slots) continue;
        for (struct bus_msg *m; (m = bus_pop(bus, (unsigned)w));) bus_msg_unref(m);
        free(bus->inbox[w].slots);
        bus->inbox[w].slots = NULL;
    }
    for (size_t s = 0; s < BUS_STRIPES; s++) {
        struct bus_stripe *st = &bus->stripes[s];
        for (size_t b = 0; b < st->nbuckets; b++)
            for (struct bus_topic *t = st->buckets[b], *next; t; t = next) {
                next = t->next;
                free(t);
            }
        free(st->buckets);
        st->buckets = NULL;
        st->nbuckets = st->count = 0;
        pthread_mutex_destroy(&st->lock);
    }
}

/* ---- interest ------------------------------------------------------------------------------ */

static struct bus_stripe *stripe_of(struct bus *bus, uint64_t h)
{
    return &bus->stripes[h % BUS_STRIPES];
}

/* The topic in st (locked), or the slot where it would be linked. */
static struct bus_topic **find(struct bus_stripe *st, uint64_t h, unsigned app, const char *name,
                               size_t len)
{
    if (!st->nbuckets) return NULL;
    struct bus_topic **p = &st->buckets[(h / BUS_STRIPES) & (st->nbuckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == h && (*p)->app == app && (*p)->len == len &&
            memcmp((*p)->name, name, len) == 0)
            break;
    return p;
}

static int grow(struct bus_stripe *st)
{
    size_t n = st->nbuckets ? st->nbuckets * 2 : 16;
    struct bus_topic **b = calloc(n, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < st->nbuckets; i++)
        for (struct bus_topic *t = st->buckets[i], *next; t; t = next) {
            next = t->next;
            struct bus_topic **slot = &b[(t->hash / BUS_STRIPES) & (n - 1)];
            t->next = *slot;
            *slot = t;
        }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
    return 0;
}

int bus_interest(struct bus *bus, unsigned app, const char *topic, size_t len, unsigned worker,
                 int delta, size_t local)
{
    uint64_t h = hash_of(app, topic, len);
    struct bus_stripe *st = stripe_of(bus, h);
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    struct bus_topic **p = find(st, h, app, topic, len);
    struct bus_topic *t = p ? *p : NULL;
    if (!t && delta > 0) {
        if (st->count >= st->nbuckets && grow(st) < 0) goto fail;
        t = calloc(1, sizeof *t + len);
        if (!t) goto fail;
        t->hash = h;
        t->app = app;
        t->len = len;
        memcpy(t->name, topic, len);
        p = find(st, h, app, topic, len);
        t->next = *p;
        *p = t;
        st->count++;
    }
    if (t) {
        t->total = delta > 0 ? t->total + 1 : t->total ? t->total - 1 : 0;
        if (local) t->workers |= (uint64_t)1 << worker;
        else t->workers &= ~((uint64_t)1 << worker);
        if (!t->workers) {
            *p = t->next;
            free(t);
            st->count--;
        }
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
fail:
    pthread_mutex_unlock(&st->lock);
    return -1;
}

size_t bus_subscribers(struct bus *bus, unsigned app, const char *topic, size_t len)
{
    uint64_t h = hash_of(app, topic, len);
    struct bus_stripe *st = stripe_of(bus, h);
    pthread_mutex_lock(&st->lock);
    struct bus_topic **p = find(st, h, app, topic, len);
    size_t n = p && *p ? (*p)->total : 0;
    pthread_mutex_unlock(&st->lock);
    return n;
}

size_t bus_busiest(struct bus *bus, struct bus_topic_count *out, size_t n)
{
    size_t have = 0;
    for (size_t si = 0; si < BUS_STRIPES && n; si++) {
        struct bus_stripe *st = &bus->stripes[si];
        pthread_mutex_lock(&st->lock);
        for (size_t b = 0; b < st->nbuckets; b++) {
            for (const struct bus_topic *t = st->buckets[b]; t; t = t->next) {
                if (!t->total || (have == n && t->total <= out[n - 1].subscribers)) continue;
                size_t at = have < n ? have++ : n - 1;
                struct bus_topic_count *o = &out[at];
                o->app = t->app;
                o->subscribers = t->total;
                /* Cut at a character boundary: the copy is shown as text. */
                size_t len = t->len < sizeof o->name ? t->len : sizeof o->name;
                if (len < t->len)
                    while (len && ((unsigned char)t->name[len] & 0xC0) == 0x80) len--;
                memcpy(o->name, t->name, len);
                o->len = len;
                for (; at > 0 && out[at].subscribers > out[at - 1].subscribers; at--) {
                    struct bus_topic_count x = out[at];
                    out[at] = out[at - 1];
                    out[at - 1] = x;
                }
            }
        }
        pthread_mutex_unlock(&st->lock);
    }
    return have;
}

uint64_t bus_workers(struct bus *bus, unsigned app, const char *topic, size_t len)
{
    uint64_t h = hash_of(app, topic, len);
    struct bus_stripe *st = stripe_of(bus, h);
    pthread_mutex_lock(&st->lock);
    struct bus_topic **p = find(st, h, app, topic, len);
    uint64_t mask = p && *p ? (*p)->workers : 0;
    pthread_mutex_unlock(&st->lock);
    return mask;
}

/* ---- inboxes ------------------------------------------------------------------------------- */

void bus_msg_unref(struct bus_msg *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0) return;
    obuf_unref(m->frame);
    free(m);
}

/* Claims a slot of q for m. Returns false when the ring is full. */
static bool push(struct bus_inbox *q, struct bus_msg *m)
{
    size_t pos = __atomic_load_n(&q->head, __ATOMIC_RELAXED);
    for (;;) {
        struct bus_slot *s = &q->slots[pos & q->mask];
        size_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (__atomic_compare_exchange_n(&q->head, &pos, pos + 1, true, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
                s->msg = m;
                __atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
                return true;
            }
        } else if (dif < 0) {
            return false; /* the consumer has not freed this slot yet: full */
        } else {
            pos = __atomic_load_n(&q->head, __ATOMIC_RELAXED);
        }
    }
}

struct bus_msg *bus_pop(struct bus *bus, unsigned worker)
{
    struct bus_inbox *q = &bus->inbox[worker];
    struct bus_slot *s = &q->slots[q->tail & q->mask];
    size_t seq = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
    /* Empty, or a producer has claimed the slot and not filled it yet (it wakes us after). */
    if (seq != q->tail + 1) return NULL;
    struct bus_msg *m = s->msg;
    __atomic_store_n(&s->seq, q->tail + q->mask + 1, __ATOMIC_RELEASE);
    q->tail++;
    __atomic_sub_fetch(&q->bytes, m->frame->len, __ATOMIC_RELAXED);
    return m;
}

size_t bus_publish(struct bus *bus, unsigned from, unsigned app, const char *topic, size_t len,
                   struct obuf *frame, size_t *dropped)
{
    return bus_publish_at(bus, from, app, topic, len, frame, NULL, dropped);
}

size_t bus_publish_at(struct bus *bus, unsigned from, unsigned app, const char *topic,
                      size_t len, struct obuf *frame, const struct hist_pos *pos,
                      size_t *dropped)
{
    *dropped = 0;
    uint64_t targets = bus_workers(bus, app, topic, len);
    if (from < BUS_EVERYONE) targets &= ~((uint64_t)1 << from);
    if (!targets) return 0;
    struct bus_msg *m = malloc(sizeof *m + len);
    if (!m) {
        *dropped = (size_t)__builtin_popcountll(targets);
        for (unsigned w = 0; targets; w++, targets >>= 1)
            if (targets & 1) __atomic_add_fetch(&bus->inbox[w].dropped, 1, __ATOMIC_RELAXED);
        return 0;
    }
    /* From here other threads may hold the frame: its count changes atomically. */
    frame->xthread = true;
    m->refs = 1; /* ours, while sending */
    m->app = app;
    m->frame = obuf_ref(frame);
    if (pos) m->pos = *pos;
    else m->pos.offset = 0;
    m->topic_len = len;
    memcpy(m->topic, topic, len);
    size_t sent = 0;
    for (unsigned w = 0; targets; w++, targets >>= 1) {
        if (!(targets & 1) || w >= bus->nworkers) continue;
        struct bus_inbox *q = &bus->inbox[w];
        size_t before = __atomic_fetch_add(&q->bytes, frame->len, __ATOMIC_RELAXED);
        __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
        if (before + frame->len > bus->max_bytes || !push(q, m)) {
            __atomic_sub_fetch(&q->bytes, frame->len, __ATOMIC_RELAXED);
            __atomic_sub_fetch(&m->refs, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch(&q->dropped, 1, __ATOMIC_RELAXED);
            (*dropped)++;
            continue;
        }
        sent++;
        if (bus->wake) bus->wake(bus->wake_ctx, w);
    }
    bus_msg_unref(m);
    return sent;
}

uint64_t bus_dropped_since(struct bus *bus, unsigned worker)
{
    struct bus_inbox *q = &bus->inbox[worker];
    uint64_t now = __atomic_load_n(&q->dropped, __ATOMIC_RELAXED);
    uint64_t d = now - q->dropped_logged;
    q->dropped_logged = now;
    return d;
}

uint64_t bus_dropped(const struct bus *bus, unsigned worker)
{
    return __atomic_load_n(&bus->inbox[worker].dropped, __ATOMIC_RELAXED);
}
