/* One connection to Redis on the loop, owned here rather than by hiredis' async API (which in
 * Debian's 0.14 has no connect or command timeouts, resolves names with a blocking
 * getaddrinfo, cannot reconnect and turns keepalive off): hiredis only builds commands
 * (redisFormatCommandArgv) and parses replies (its redisReader).
 *
 * The connection keeps itself up: it resolves the host (dns.c), connects without blocking
 * within connect_timeout, turns on TCP keepalive, sends AUTH, SELECT and CLIENT SETNAME, and
 * after any failure tries again after a full-jitter backoff (a random delay between 0 and
 * min(backoff_max, backoff_min * 2^attempt)), so that a fleet of nodes does not reconnect in
 * step. `state` reports each change (up after the handshake, down at a loss).
 *
 * Commands are pipelined: each is written at once and its reply is matched in order. Each has a
 * timeout: past it the caller hears "timeout" and the reply, when it comes, is dropped; a
 * connection that has read nothing since such a command was written is taken as dead and
 * reconnected. While the connection is being made, commands wait in its output buffer (at most
 * max_pending bytes); while it is down (between tries) they fail at once: "unavailable".
 *
 * A subscriber connection (subscriber = true) hands every reply after the handshake to `push`
 * instead (messages, (un)subscribe confirmations, pongs). */
#ifndef MOONWIRE_REDIS_H
#define MOONWIRE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

struct ev_loop;
struct dns;
struct rds;

/* A redis://[user:password@]host[:port][/db] URL, read. */
struct rds_addr {
    char host[256];
    uint16_t port;
    char user[128];
    char password[256];
    int db;
};

/* Reads url into a. Returns 0, or -1 with the reason in err. */
int rds_parse_url(const char *url, struct rds_addr *a, char *err, size_t errlen);

struct rds_config {
    struct rds_addr addr;
    const char *password;      /* overrides addr.password when not NULL */
    char name[64];             /* CLIENT SETNAME; "": none */
    double connect_timeout;    /* seconds */
    double backoff_min, backoff_max;
    size_t max_pending;        /* bytes of commands waiting to be written */
    size_t max_reply;          /* bytes one reply may take while it is read */
    bool subscriber;
};

/* The end of a command: reply (valid during the call only; an error reply is a reply), or
 * reply NULL and err one of "timeout", "unavailable" (not connected), "lost" (the connection
 * broke: the command may or may not have run), "closed" (rds_free), "no_memory". */
typedef void (*rds_done)(void *ud, const redisReply *reply, const char *err);

struct rds_callbacks {
    void (*state)(void *ud, bool up);                    /* optional */
    void (*push)(void *ud, const redisReply *reply);     /* subscriber connections */
    void *ud;
};

/* Starts a connection on loop (it connects at once). cfg is copied. Returns NULL only when out
 * of memory. */
struct rds *rds_new(struct ev_loop *loop, struct dns *dns, const struct rds_config *cfg,
                    const struct rds_callbacks *cb);
/* Fails every pending command with "closed" and frees the connection. Not from inside one of
 * its own callbacks. */
void rds_free(struct rds *r);

bool rds_up(const struct rds *r);
/* Seconds (loop time) since bytes last came in on the connection. */
double rds_idle(const struct rds *r);
/* Drops the connection and tries again (after the backoff): a liveness check failed. */
void rds_reconnect(struct rds *r, const char *why);

struct rds_cmd;
/* Sends a command (argv[0] is its name). done is called exactly once, from the loop and never
 * before rds_command returns, unless rds_cancel comes first. timeout <= 0: none. Returns a
 * handle valid until done runs, or NULL when out of memory. */
struct rds_cmd *rds_command(struct rds *r, int argc, const char **argv, const size_t *lens,
                            double timeout, rds_done done, void *ud);
/* A command that fails with why (a string that lives on) from the loop, as rds_command's do. */
struct rds_cmd *rds_fail(struct rds *r, const char *why, rds_done done, void *ud);
/* Forgets a command: its done is not called (its reply is dropped when it comes). */
void rds_cancel(struct rds_cmd *c);

/* Counters of one connection. */
struct rds_stats {
    uint64_t connects;      /* handshakes completed */
    uint64_t failures;      /* connections lost or that failed to come up */
    uint64_t commands;
    uint64_t timeouts;
};
const struct rds_stats *rds_stats(const struct rds *r);

#endif
