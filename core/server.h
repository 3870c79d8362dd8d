/* The server: one libev loop, its listeners, the table of connections, the apps they are routed
 * to, and the process lifecycle (signals, drain on shutdown).
 *
 * Also owns two loop-wide buffers: the read buffer every connection reads into (64 KiB, so an
 * idle connection needs none of its own) and the cork buffer that batches the replies of the
 * connection being processed. */
#ifndef MOONWIRE_SERVER_H
#define MOONWIRE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "util.h"

struct conn;
struct lb_app;

#define SRV_READ_BUFFER (64 * 1024)

struct listener {
    struct server *srv;
    int fd;
    ev_io io;
    char name[300]; /* "127.0.0.1:8080", for log lines */
};

struct server {
    struct ev_loop *loop;
    const struct config *cfg;
    struct lb_app *app;        /* served on every path */

    struct listener listeners[CFG_MAX_LISTEN];
    size_t nlisteners;
    ev_timer accept_pause;     /* out of file descriptors: retry accepting shortly */

    /* Connections by slot; ids are never reused, slots are. */
    struct conn **slots;
    uint32_t nslots;
    uint32_t *free_slots;
    uint32_t nfree;
    uint64_t next_id;
    size_t nconns;

    /* Connections with work for the sweep (app.close to call, memory to free). */
    struct conn *pending_head;
    struct conn *pending_tail;
    ev_prepare sweep;

    ev_signal sigterm;
    ev_signal sigint;
    ev_signal sighup;
    ev_timer shutdown_timer;
    bool draining;

    struct conn *corked;       /* whose input is being processed */
    size_t cork_len;
    uint8_t cork[SRV_READ_BUFFER];
    uint8_t rbuf[SRV_READ_BUFFER];
};

/* Prepares srv on loop with cfg (which must outlive it). Returns 0, or -1 when out of memory. */
int srv_init(struct server *srv, struct ev_loop *loop, const struct config *cfg);

/* Opens every listener of the config. Returns 0, or -1 with a message in err (address in use,
 * permission denied...). Logs each address it listens on, with the real port when 0 was asked. */
int srv_listen(struct server *srv, char *err, size_t errlen);

/* Runs the loop until a drain finishes. */
void srv_run(struct server *srv);

/* Closes listeners and frees every connection (after srv_run returns). */
void srv_destroy(struct server *srv);

/* Stops accepting and closes every connection with 1001, giving them shutdown_timeout. */
void srv_drain(struct server *srv);

/* The app for a request path, or NULL. */
struct lb_app *srv_route(struct server *srv, const char *path, size_t len);

/* Gives c a slot and an id. Returns 0, or -1 when out of memory. */
int srv_attach(struct server *srv, struct conn *c);
void srv_detach(struct server *srv, struct conn *c);

/* The connection in slot with id, or NULL when it is gone. */
struct conn *srv_find_conn(const struct server *srv, uint32_t slot, uint64_t id);

/* Puts c on the pending list for the next sweep (once). */
void srv_schedule(struct server *srv, struct conn *c);

/* Writes out the corked replies (conn.c). */
void srv_flush_cork(struct server *srv);

/* The loop's time in seconds (cached per iteration). */
double srv_now(const struct server *srv);

#endif
