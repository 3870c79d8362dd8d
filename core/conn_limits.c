/* Connection limits across workers: see conn_limits.h. */
#include "conn_limits.h"

#include <string.h>

static double burst_of(double rate) { return rate > 1 ? rate : 1; }

void limits_init(struct limits_shared *l, size_t max_connections, size_t per_ip, double rate)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->lock, NULL);
    l->max_connections = max_connections;
    l->per_ip = per_ip;
    l->rate = rate;
}

void limits_free(struct limits_shared *l)
{
    ip_table_free(&l->ips);
    pthread_mutex_destroy(&l->lock);
}

enum limits_verdict limits_admit(struct limits_shared *l, const struct ip_key *key, double now)
{
    enum limits_verdict v = LIMITS_OK;
    pthread_mutex_lock(&l->lock);
    struct ip_entry *ip = ip_table_get(&l->ips, key, true, burst_of(l->rate), now);
    if (!ip) v = LIMITS_NOMEM;
    else if (l->per_ip && ip->conns >= l->per_ip) v = LIMITS_PER_IP;
    else if (l->rate > 0 && !bucket_take(&ip->connects, l->rate, burst_of(l->rate), 1, now))
        v = LIMITS_RATE;
    else if (l->max_connections && l->counted >= l->max_connections) v = LIMITS_FULL;
    if (v == LIMITS_OK) {
        ip->conns++;
        l->counted++;
    }
    pthread_mutex_unlock(&l->lock);
    return v;
}

void limits_release(struct limits_shared *l, const struct ip_key *key)
{
    pthread_mutex_lock(&l->lock);
    struct ip_entry *ip = ip_table_get(&l->ips, key, false, 0, 0);
    if (ip && ip->conns) ip->conns--;
    if (l->counted) l->counted--;
    pthread_mutex_unlock(&l->lock);
}

void limits_expire(struct limits_shared *l, double now)
{
    pthread_mutex_lock(&l->lock);
    ip_table_expire(&l->ips, l->rate, burst_of(l->rate), now);
    pthread_mutex_unlock(&l->lock);
}

size_t limits_counted(struct limits_shared *l)
{
    pthread_mutex_lock(&l->lock);
    size_t n = l->counted;
    pthread_mutex_unlock(&l->lock);
    return n;
}
