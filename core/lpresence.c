/* Presence on one node (no Redis): see lpresence.h. */
#include "lpresence.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rnode.h"

#define NBUCKETS 4096 /* by topic: an app's entries of one topic share a chain */

struct entry {
    struct entry *next;
    unsigned app_ns;
    const struct conn *c;
    char id[64];
    size_t id_len;
    char *info;
    size_t info_len;
    size_t topic_len;
    char topic[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *buckets[NBUCKETS];
static size_t count; /* read without the lock as a hint: lpres_left's fast path */

static size_t bucket_of(const char *topic, size_t len)
{
    uint64_t x = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) x = (x ^ (unsigned char)topic[i]) * 1099511628211ull;
    return (size_t)(x & (NBUCKETS - 1));
}

int lpres_join(unsigned app_ns, const struct conn *c, uint64_t conn_id, const char *topic,
               size_t len, const char *info, size_t info_len)
{
    char *copy = malloc(info_len ? info_len : 1);
    if (!copy) return -1;
    memcpy(copy, info, info_len);
    pthread_mutex_lock(&lock);
    struct entry **slot = &buckets[bucket_of(topic, len)];
    struct entry *e = *slot;
    while (e && !(e->c == c && e->topic_len == len && memcmp(e->topic, topic, len) == 0))
        e = e->next;
    if (!e) {
        if (!(e = calloc(1, sizeof *e + len))) {
            pthread_mutex_unlock(&lock);
            free(copy);
            return -1;
        }
        e->app_ns = app_ns;
        e->c = c;
        e->topic_len = len;
        memcpy(e->topic, topic, len);
        e->id_len = (size_t)snprintf(e->id, sizeof e->id, "%s:%llx:%llu", rnode_node_id(),
                                     (unsigned long long)(uintptr_t)c,
                                     (unsigned long long)conn_id);
        e->next = *slot;
        *slot = e;
        __atomic_add_fetch(&count, 1, __ATOMIC_RELAXED);
    }
    free(e->info);
    e->info = copy;
    e->info_len = info_len;
    pthread_mutex_unlock(&lock);
    return 0;
}

void lpres_left(const struct conn *c, const char *topic, size_t len)
{
    if (!__atomic_load_n(&count, __ATOMIC_RELAXED)) return;
    pthread_mutex_lock(&lock);
    for (struct entry **p = &buckets[bucket_of(topic, len)]; *p; p = &(*p)->next) {
        struct entry *e = *p;
        if (e->c == c && e->topic_len == len && memcmp(e->topic, topic, len) == 0) {
            *p = e->next;
            __atomic_sub_fetch(&count, 1, __ATOMIC_RELAXED);
            free(e->info);
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
}

size_t lpres_each(unsigned app_ns, const char *topic, size_t len,
                  void (*each)(void *ud, const char *id, size_t id_len, const char *info,
                               size_t info_len),
                  void *ud)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (struct entry *e = buckets[bucket_of(topic, len)]; e; e = e->next)
        if (e->app_ns == app_ns && e->topic_len == len && memcmp(e->topic, topic, len) == 0) {
            if (each) each(ud, e->id, e->id_len, e->info, e->info_len);
            n++;
        }
    pthread_mutex_unlock(&lock);
    return n;
}
