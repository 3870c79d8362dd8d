/* The server: one libev loop, its listeners, the table of connections, the apps they are routed
 * to, and the process lifecycle (signals, drain on shutdown).
 *
 * Before the loop blocks, the server flushes every connection that queued output during the
 * turn and sweeps the connections that closed (see on_prepare). It also owns the loop-wide read
 * buffer every connection reads into (64 KiB), so an idle connection needs none of its own. */
#ifndef MOONWIRE_SERVER_H
#define MOONWIRE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "lua_bridge.h"
#include "ip_table.h"
#include "origin.h"
#include "util.h"

struct conn;
struct lb_app;
struct tls_context;
struct watch;

#define SRV_READ_BUFFER (64 * 1024)
/* Whole messages of one read handed to the app in one call (lb_messages). */
#define SRV_BATCH 256

/* An app mounted at a path prefix. */
struct mount {
    char path[256]; /* "/chat", or "/" for every path */
    size_t len;
    struct lb_app *app;
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
    struct mount mounts[CFG_MAX_APPS + 1];
    size_t nmounts;

    /* Admission (see admit in server.c): the origin policy, the per-address table and how
     * many connections count against the limits. */
    struct origin_policy origins;
    struct origin_pattern origin_patterns[CFG_MAX_ORIGINS];
    struct ip_table ips;
    size_t counted;
    ev_timer housekeeping;     /* once a second: refusal summary, expired addresses */
    uint64_t refused[2];       /* refusals since the last summary: 429, 503 */
    struct watch *watch;       /* --watch: reloads apps whose files change */

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

    /* Connections with work for the sweep (app.close to call, memory to free), and connections
     * with output to flush; both are handled before the loop blocks. */
    struct conn *pending_head;
    struct conn *pending_tail;
    struct conn *dirty_head;
    ev_prepare before_block;

    ev_signal sigterm;
    ev_signal sigint;
    ev_signal sighup;
    ev_timer shutdown_timer;
    bool draining;

    uint8_t rbuf[SRV_READ_BUFFER];
    struct lb_message batch[SRV_BATCH]; /* of the connection being read; into rbuf */
    size_t nbatch;
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

/* Mounts app at path ("/" for every path). Returns 0, or -1 when the path is taken or the
 * table is full. */
int srv_mount(struct server *srv, const char *path, struct lb_app *app);

/* The mount serving a request path: the longest mount path that is the request path or a
 * parent of it ("/chat" serves "/chat" and "/chat/x", not "/chatroom"). NULL when none does. */
const struct mount *srv_route(const struct server *srv, const char *path, size_t len);

/* Reloads every app and every listener's TLS certificates (SIGHUP), or only the app given
 * (--watch). */
void srv_reload(struct server *srv, struct lb_app *only);

/* Counts a refusal (429 or 503) for the once-a-second summary line. */
void srv_count_refusal(struct server *srv, int status);

/* Gives back what c counted against the connection limits (conn_free). */
void srv_release(struct server *srv, struct conn *c);

/* Gives c a slot and an id. Returns 0, or -1 when out of memory. */
int srv_attach(struct server *srv, struct conn *c);
void srv_detach(struct server *srv, struct conn *c);

/* The connection in slot with id, or NULL when it is gone. */
struct conn *srv_find_conn(const struct server *srv, uint32_t slot, uint64_t id);

/* Puts c on the pending list for the next sweep (once). */
void srv_schedule(struct server *srv, struct conn *c);

/* Puts c on the list of connections to flush before the loop blocks (once). */
void srv_mark_dirty(struct server *srv, struct conn *c);

/* The loop's time in seconds (cached per iteration), and the loop itself. */
double srv_now(const struct server *srv);
static inline struct ev_loop *srv_loop(const struct server *srv) { return srv->loop; }

/* Iterates the connections: srv_first_conn, then srv_next_conn until NULL. */
struct conn *srv_first_conn(const struct server *srv);
struct conn *srv_next_conn(const struct server *srv, const struct conn *c);

#endif
