/* The per-address table: chained hashing over a short fixed-size key. */
#include "ip_table.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct ip_key ip_key_of(const struct sockaddr *sa)
{
    struct ip_key k;
    memset(&k, 0, sizeof k);
    k.family = (uint8_t)sa->sa_family;
    if (sa->sa_family == AF_INET6)
        memcpy(k.bytes, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 8);
    else
        memcpy(k.bytes, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    return k;
}

static uint64_t hash_key(const struct ip_key *k)
{
    uint64_t h = 0xcbf29ce484222325ull ^ k->family;
    for (size_t i = 0; i < sizeof k->bytes; i++) h = (h ^ k->bytes[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static bool grow(struct ip_table *t)
{
    size_t n = t->nbuckets ? t->nbuckets * 2 : 256;
    struct ip_entry **b = calloc(n, sizeof *b);
    if (!b) return false;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct ip_entry *e = t->buckets[i];
        while (e) {
            struct ip_entry *next = e->next;
            size_t j = hash_key(&e->key) & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return true;
}

struct ip_entry *ip_table_get(struct ip_table *t, const struct ip_key *key, bool create,
                              double burst, double now)
{
    if (t->nbuckets) {
        for (struct ip_entry *e = t->buckets[hash_key(key) & (t->nbuckets - 1)]; e; e = e->next)
            if (memcmp(&e->key, key, sizeof *key) == 0) return e;
    }
    if (!create) return NULL;
    if (t->count >= t->nbuckets && !grow(t) && !t->nbuckets) return NULL;
    struct ip_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->key = *key;
    bucket_init(&e->connects, burst, now);
    size_t j = hash_key(key) & (t->nbuckets - 1);
    e->next = t->buckets[j];
    t->buckets[j] = e;
    t->count++;
    return e;
}

size_t ip_table_expire(struct ip_table *t, double rate, double burst, double now)
{
    size_t freed = 0;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct ip_entry **p = &t->buckets[i];
        while (*p) {
            struct ip_entry *e = *p;
            /* As the bucket itself does, count no time when the clock stepped back: a full
             * bucket has refilled by any time, and negative time must not empty it. */
            double idle = now > e->connects.stamp ? now - e->connects.stamp : 0;
            bool refilled = rate <= 0 || e->connects.tokens + idle * rate >= burst;
            if (e->conns == 0 && e->refusing == 0 && refilled) {
                *p = e->next;
                free(e);
                t->count--;
                freed++;
            } else {
                p = &e->next;
            }
        }
    }
    return freed;
}

void ip_table_free(struct ip_table *t)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct ip_entry *e = t->buckets[i];
        while (e) {
            struct ip_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(t->buckets);
    memset(t, 0, sizeof *t);
}
