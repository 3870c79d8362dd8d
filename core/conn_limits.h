/* Connection limits shared by every worker of the process: max_connections, per_ip and
 * connects_per_second count every worker's connections (10 means 10, not 10 per worker).
 *
 * One table of addresses (ip_table.h) and one total behind a mutex, taken when a connection is
 * admitted and when a counted one ends, never per message. Each worker keeps its own table
 * too, for what stays per worker (connections being refused, bytes of unfinished messages). */
#ifndef MOONWIRE_CONN_LIMITS_H
#define MOONWIRE_CONN_LIMITS_H

#include <pthread.h>
#include <stddef.h>

#include "ip_table.h"

struct limits_shared {
    pthread_mutex_t lock;
    struct ip_table ips;
    size_t counted;            /* connections admitted and not yet ended, every worker */
    size_t max_connections;    /* 0: none */
    size_t per_ip;             /* 0: none */
    double rate;               /* new connections per second per address; 0: none */
};

enum limits_verdict {
    LIMITS_OK,       /* admitted: counted until limits_release */
    LIMITS_PER_IP,   /* the address has per_ip connections already */
    LIMITS_RATE,     /* the address connects faster than rate */
    LIMITS_FULL,     /* max_connections reached */
    LIMITS_NOMEM,
};

void limits_init(struct limits_shared *l, size_t max_connections, size_t per_ip, double rate);
void limits_free(struct limits_shared *l);

/* Admits a new connection from key at time now (seconds), counting it, or says why not. */
enum limits_verdict limits_admit(struct limits_shared *l, const struct ip_key *key, double now);

/* A connection limits_admit counted has ended. */
void limits_release(struct limits_shared *l, const struct ip_key *key);

/* Forgets addresses without connections whose bucket has refilled (once a second). */
void limits_expire(struct limits_shared *l, double now);

/* Connections counted now. */
size_t limits_counted(struct limits_shared *l);

#endif
