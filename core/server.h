/* The server of one loop context: its listeners, admission (origins, connection limits), the
 * connections' owner (a conn_loop), the mounts that say which handler serves which path, and
 * the drain on shutdown.
 *
 * It knows connections only through conn.h and handlers only as tables of callbacks with a
 * context pointer (struct conn_handler): apps are mounted into it from above. */
#ifndef MOONWIRE_SERVER_H
#define MOONWIRE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "conn.h"
#include "counters.h"
#include "ip_table.h"
#include "conn_limits.h"
#include "origin.h"

struct tls_context;

/* A handler mounted at a path prefix. */
struct mount {
    char path[256]; /* "/chat", or "/" for every path */
    size_t len;
    const struct conn_handler *handler;
    void *ctx;
    const char *public_dir; /* static files, or NULL */
    int owner;              /* the worker that serves it (app.workers = 1), or -1: any */
};

/* A connection on its way to the worker that serves its path (an app pinned to one worker):
 * its socket, its peer and what was read of it from the start of its request. It holds its
 * place in the process's connection limits (struct limits_shared), which the receiver keeps. */
struct srv_handoff {
    struct srv_handoff *next;
    int fd;
    union conn_addr peer;
    size_t len;
    uint8_t bytes[];
};

/* How a server of one worker reaches the others to hand connections over. */
struct srv_handoff_ops {
    /* Makes room for one more connection on worker owner's queue. Returns 0, or -1 when the
     * queue is full (the request is answered 503 instead). */
    int (*reserve)(void *ctx, unsigned owner);
    /* Queues h (malloc'd; the owner frees it) on owner's queue, in the room reserved. */
    void (*send)(void *ctx, unsigned owner, struct srv_handoff *h);
    /* Whether worker owner's loop runs, so that it can take a connection now. A worker still
     * starting (loading its apps) is not: its request is answered 503 with Retry-After. */
    bool (*ready)(void *ctx, unsigned owner);
};

struct listener {
    struct server *srv;
    const struct cfg_listen *cfg;
    int fd;
    ev_io io;
    struct tls_context *tls; /* NULL for plain ws:// */
    char name[300];          /* "127.0.0.1:8080", for log lines */
};

struct server {
    struct ev_loop *loop;
    const struct config *cfg;
    struct counters *counters;
    struct mount mounts[CFG_MAX_APPS + 1];
    size_t nmounts;

    /* Admission (see admit in server.c): the origin policy, the per-address table and how
     * many connections count against the limits. */
    struct origin_policy origins;
    struct origin_pattern origin_patterns[CFG_MAX_ORIGINS];
    struct ip_table ips;
    size_t counted;
    size_t buffered;           /* bytes in unfinished incoming messages (max_buffered) */
    ev_timer housekeeping;     /* once a second: refusal summary, expired addresses */
    uint64_t refused[2];       /* refusals since the last summary: 429, 503 */

    struct listener listeners[CFG_MAX_LISTEN];
    size_t nlisteners;
    /* The admin listener (metrics, probes, dashboard): its own mount, outside admission, open
     * until the end, so probes answer during a drain. */
    struct listener admin;
    bool has_admin;
    struct mount admin_mount;
    size_t admin_conns;
    ev_timer accept_pause;     /* out of file descriptors: retry accepting shortly */

    struct conn_loop conns;
    ev_timer shutdown_timer;
    bool draining;

    /* One of several workers: listeners share their port with the other workers'
     * (SO_REUSEPORT); the listening line is logged by the first worker only; the end of the
     * drain is reported to drained(drained_ctx) instead of ending the loop. */
    bool reuseport;
    bool quiet_listen;
    void (*drained)(void *ctx);
    void *drained_ctx;
    /* max_connections, per_ip and connects_per_second across workers; NULL: this server's
     * own counts. */
    struct limits_shared *limits;
    /* One of several workers: its id, and how connections for a mount another worker owns get
     * there (NULL alone: every mount is served here). */
    unsigned worker_id;
    const struct srv_handoff_ops *handoff;
    void *handoff_ctx;
    unsigned handing_to; /* route -> hand_over: the owner route named for the request */
    int epoll_fd;        /* the loop's epoll descriptor (see hand_over in server.c), or -1 */
};

/* Prepares srv on loop with cfg and counters (which must outlive it). Returns 0, or -1 when
 * out of memory. */
int srv_init(struct server *srv, struct ev_loop *loop, const struct config *cfg,
             struct counters *counters);

/* Opens every listener of the config. Returns 0, or -1 with a message in err (address in use,
 * permission denied...). Logs each address it listens on, with the real port when 0 was asked. */
int srv_listen(struct server *srv, char *err, size_t errlen);

/* Before several workers bind one port each with SO_REUSEPORT: binds every listener of cfg
 * once without it, so that a port another process serves fails with "address in use" (with
 * SO_REUSEPORT alone, a second server of the same user would silently share the port and
 * receive part of the connections), and writes the port the kernel picked into each listener
 * asked for port 0. Returns 0, or -1 with a message in err. */
int srv_reserve_ports(struct config *cfg, char *err, size_t errlen);

/* Serves a connected, non-blocking socket as if a listener had accepted it (tests hand it
 * socketpairs). Admission applies. Returns the connection, or NULL when it was dropped. */
struct conn *srv_adopt(struct server *srv, int fd, const union conn_addr *peer,
                       struct tls_context *tls);

/* Serves a connection another worker handed over (struct srv_handoff, which it frees): the
 * request in h->bytes is read as if it had just arrived. Admission is not run again: the
 * connection already holds its place in the process's limits. */
void srv_take(struct server *srv, struct srv_handoff *h);

/* The epoll descriptor of loop (srv.epoll_fd, for handing connections over), or -1 when its
 * backend is not epoll (then nothing of a stopped watcher stays in the kernel). */
int srv_epoll_fd(struct ev_loop *loop);

/* Pins the mount at path to worker owner (-1: any worker serves it). */
void srv_mount_owner(struct server *srv, const char *path, int owner);

/* Closes listeners and frees every connection (their handlers hear the close). */
void srv_destroy(struct server *srv);

/* Stops accepting and closes every connection with 1001, giving them shutdown_timeout; the
 * loop is broken once the last is gone. A second call drops them all at once. */
void srv_drain(struct server *srv);

/* Mounts handler (with ctx, and static files from public_dir when not NULL) at path ("/" for
 * every path). Returns 0, or -1 when the path is taken or the table is full. */
int srv_mount(struct server *srv, const char *path, const struct conn_handler *handler,
              void *ctx, const char *public_dir);

/* The mount serving a request path: the longest mount path that is the request path or a
 * parent of it ("/chat" serves "/chat" and "/chat/x", not "/chatroom"). NULL when none does. */
const struct mount *srv_route(const struct server *srv, const char *path, size_t len);

/* Loads every listener's TLS certificates again (SIGHUP); one that fails keeps its old ones. */
void srv_reload_certificates(struct server *srv);

/* Opens the admin listener on host:port (0: any free port, logged), served by handler with
 * ctx for every path. Its connections skip admission and origin allowlists (upgrades must come
 * from the page's own host) and outlive a drain. Returns 0, or -1 with a message in err. */
int srv_listen_admin(struct server *srv, const char *host, int port,
                     const struct conn_handler *handler, void *ctx, char *err, size_t errlen);

/* Connections that are not the admin listener's (what a drain waits for). */
static inline size_t srv_public_conns(const struct server *srv)
{
    return conn_count(&srv->conns) - srv->admin_conns;
}

#endif
