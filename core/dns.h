/* Name resolution that never blocks the loop: c-ares driven by libev watchers (its sockets
 * become ev_io watchers through its socket-state callback, its retry clock one ev_timer).
 *
 * Why c-ares and not glibc's getaddrinfo_a: getaddrinfo_a runs each lookup on a helper thread
 * and reports through a signal or yet another thread, so the loop would need a pipe or eventfd
 * bridge, and a lookup in progress cannot be cancelled (gai_cancel answers EAI_NOTCANCELED),
 * which leaves a thread writing into a request its owner wants to free. c-ares runs on the
 * loop's own thread, lets us drop interest in a lookup at any time, and reads /etc/hosts
 * ("localhost" and the machine's own names) before asking DNS, as the C library does.
 *
 * Names under ".invalid" fail at once without a query (RFC 6761 reserves them to never
 * resolve), IP literals are answered without one, and "localhost" is the loopback addresses
 * when the hosts file does not say otherwise. /etc/resolv.conf is read once, by dns_new. The
 * environment variable CARES_HOSTS, when set, names the hosts file read instead of /etc/hosts
 * (c-ares' own setting; the tests use it to give names several addresses). */
#ifndef MOONWIRE_DNS_H
#define MOONWIRE_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct ev_loop;
struct dns;
struct dns_query;

/* At most this many addresses of one name are kept (the first ones, in c-ares' order, which
 * follows RFC 6724's preferences). */
#define DNS_MAX_ADDRS 16

struct dns_result {
    size_t count; /* 1..DNS_MAX_ADDRS */
    struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* AF_INET or AF_INET6, port set */
};

/* The answer to one lookup: res on success (valid during the call only), or res NULL and
 * detail a sentence naming the host and what went wrong (valid during the call only). */
typedef void (*dns_done)(void *ud, const struct dns_result *res, const char *detail);

/* A resolver on loop. Returns it, or NULL with the reason in err (c-ares could not start: no
 * memory, or an unreadable /etc/resolv.conf). timeout: seconds a server has to answer one try
 * (two tries per server). */
struct dns *dns_new(struct ev_loop *loop, double timeout, char *err, size_t errlen);

/* Stops every lookup (their callbacks are not called) and frees the resolver. Not from inside
 * a dns_done callback. */
void dns_free(struct dns *d);

/* Resolves host (a name, or an IP literal without brackets) for a TCP connection to port.
 * Returns a handle, or NULL when out of memory. done is called exactly once, always from the
 * loop and never before dns_resolve returns, unless dns_cancel comes first; the handle is
 * invalid once done has been called. */
struct dns_query *dns_resolve(struct dns *d, const char *host, uint16_t port, dns_done done,
                              void *ud);

/* Forgets a lookup: its done is not called. (c-ares cannot stop one lookup alone; the answer,
 * when it comes, is dropped.) */
void dns_cancel(struct dns_query *q);

#endif
