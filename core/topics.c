/* Topics: a chained hash table of topic names (FNV-1a), each with an array of members. */
#include "topics.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_name(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static struct topic **slot_of(const struct topic_table *t, uint64_t hash, const char *name,
                              size_t len)
{
    struct topic **p = &t->buckets[hash & (t->nbuckets - 1)];
    for (; *p; p = &(*p)->next)
        if ((*p)->hash == hash && (*p)->name_len == len && memcmp((*p)->name, name, len) == 0)
            break;
    return p;
}

const struct topic *topic_find(const struct topic_table *t, const char *name, size_t len)
{
    if (!t->nbuckets) return NULL;
    return *slot_of(t, hash_name(name, len), name, len);
}

/* Doubles the bucket array when topics outnumber buckets, if max_bytes allows. Failure is
 * harmless once there are buckets: chains grow. */
static void maybe_grow(struct topic_table *t)
{
    if (t->nbuckets && t->count < t->nbuckets) return;
    size_t n = t->nbuckets ? t->nbuckets * 2 : 64;
    size_t more = (n - t->nbuckets) * sizeof *t->buckets;
    if (t->max_bytes && t->bytes + more > t->max_bytes) return;
    struct topic **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct topic *tp = t->buckets[i];
        while (tp) {
            struct topic *next = tp->next;
            tp->next = b[tp->hash & (n - 1)];
            b[tp->hash & (n - 1)] = tp;
            tp = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    t->bytes += more;
}

/* What growing a full array of cap entries of elem bytes adds: it doubles, or starts at 4. */
static size_t growth(uint32_t cap, size_t elem) { return (cap ? cap : 4) * elem; }

static bool grow_array(struct topic_table *t, void **arr, uint32_t *cap, size_t elem)
{
    uint32_t n = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, n * elem);
    if (!p) return false;
    t->bytes += growth(*cap, elem);
    *arr = p;
    *cap = n;
    return true;
}

int topic_subscribe(struct topic_table *t, struct topic_set *set, void *member, const char *name,
                    size_t len)
{
    /* A member has few topics: a scan of its own set is the cheapest duplicate check. */
    for (uint32_t i = 0; i < set->count; i++) {
        const struct topic *tp = set->refs[i].topic;
        if (tp->name_len == len && memcmp(tp->name, name, len) == 0) return 0;
    }

    maybe_grow(t);
    if (!t->nbuckets) return t->max_bytes ? TOPIC_E_FULL : TOPIC_E_NOMEM;
    uint64_t h = hash_name(name, len);
    struct topic **slot = slot_of(t, h, name, len);
    struct topic *tp = *slot;

    /* Everything this subscription may allocate, checked against max_bytes before any of it. */
    size_t need = set->count == set->cap ? growth(set->cap, sizeof *set->refs) : 0;
    if (!tp) need += sizeof *tp + len + growth(0, sizeof *tp->members);
    else if (tp->count == tp->cap) need += growth(tp->cap, sizeof *tp->members);
    if (t->max_bytes && (need > t->max_bytes || t->bytes > t->max_bytes - need))
        return TOPIC_E_FULL;

    if (set->count == set->cap &&
        !grow_array(t, (void **)&set->refs, &set->cap, sizeof *set->refs))
        return TOPIC_E_NOMEM;
    if (!tp) {
        tp = malloc(sizeof *tp + len);
        if (!tp) return TOPIC_E_NOMEM;
        memset(tp, 0, sizeof *tp);
        tp->hash = h;
        tp->name_len = len;
        memcpy(tp->name, name, len);
        *slot = tp;
        t->count++;
        t->bytes += sizeof *tp + len;
    }
    if (tp->count == tp->cap &&
        !grow_array(t, (void **)&tp->members, &tp->cap, sizeof *tp->members)) {
        if (tp->count == 0) { /* just made: undo */
            *slot = tp->next;
            t->count--;
            t->bytes -= sizeof *tp + len;
            free(tp);
        }
        return TOPIC_E_NOMEM;
    }
    tp->members[tp->count] = (struct topic_member){ .member = member, .set = set, .ref = set->count };
    set->refs[set->count] = (struct topic_ref){ tp, tp->count };
    tp->count++;
    set->count++;
    return 1;
}

/* Removes reference r of set (its topic's member entry included), by swapping in the last
 * entries on both sides and fixing the back-references of what moved. */
static void remove_ref(struct topic_table *t, struct topic_set *set, uint32_t r)
{
    struct topic *tp = set->refs[r].topic;
    uint32_t i = set->refs[r].index;

    tp->count--;
    if (i != tp->count) {
        tp->members[i] = tp->members[tp->count];
        const struct topic_member *moved = &tp->members[i];
        moved->set->refs[moved->ref].index = i;
    }
    set->count--;
    if (r != set->count) {
        set->refs[r] = set->refs[set->count];
        const struct topic_ref *moved = &set->refs[r];
        moved->topic->members[moved->index].ref = r;
    }
    if (tp->count == 0) {
        struct topic **slot = slot_of(t, tp->hash, tp->name, tp->name_len);
        *slot = tp->next;
        t->count--;
        t->bytes -= sizeof *tp + tp->name_len + tp->cap * sizeof *tp->members;
        free(tp->members);
        free(tp);
    }
}

int topic_unsubscribe(struct topic_table *t, struct topic_set *set, const char *name, size_t len)
{
    for (uint32_t r = 0; r < set->count; r++) {
        const struct topic *tp = set->refs[r].topic;
        if (tp->name_len == len && memcmp(tp->name, name, len) == 0) {
            remove_ref(t, set, r);
            return 1;
        }
    }
    return 0;
}

void topic_leave_all(struct topic_table *t, struct topic_set *set)
{
    while (set->count) remove_ref(t, set, set->count - 1);
    t->bytes -= set->cap * sizeof *set->refs;
    free(set->refs);
    memset(set, 0, sizeof *set);
}

void topic_table_free(struct topic_table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct topic *tp = t->buckets[i];
        while (tp) {
            struct topic *next = tp->next;
            free(tp->members);
            free(tp);
            tp = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof *t);
}
