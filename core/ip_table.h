/* What the server knows per client address: how many connections it has open, and its bucket of
 * new connections per second. Keyed by the IPv4 address, or by the /64 prefix of an IPv6 one
 * (one subscriber usually holds a whole /64, so per-address limits on single IPv6 addresses
 * would be no limit at all). Pure apart from malloc: the time is an argument. */
#ifndef MOONWIRE_IP_TABLE_H
#define MOONWIRE_IP_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ratelimit.h"

struct ip_key {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t bytes[8];
};

struct ip_entry {
    struct ip_entry *next;
    struct ip_key key;
    uint32_t conns;          /* open connections */
    uint32_t refusing;       /* connections held only to be told why they are refused */
    size_t buffered;         /* bytes its connections hold in unfinished incoming messages */
    struct bucket connects;  /* new connections per second */
};

struct ip_table {
    struct ip_entry **buckets;
    size_t nbuckets; /* a power of two, or 0 */
    size_t count;
};

/* The key for a socket address (AF_INET or AF_INET6). */
struct ip_key ip_key_of(const struct sockaddr *sa);

/* The entry for key, made (with a full connects bucket of burst, at now) when missing and
 * create is set. NULL when missing and not created, or out of memory. */
struct ip_entry *ip_table_get(struct ip_table *t, const struct ip_key *key, bool create,
                              double burst, double now);

/* Frees the entries that have no open connection and whose bucket has refilled by now (rate 0:
 * any without connections, counted or being refused): keeping them longer would only remember
 * a client that has gone;
 * dropping them earlier would let a client reset its bucket by leaving. Returns how many. */
size_t ip_table_expire(struct ip_table *t, double rate, double burst, double now);

void ip_table_free(struct ip_table *t);

#endif
