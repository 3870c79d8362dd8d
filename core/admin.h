/* The admin listener: what operators see of a running server. GET /metrics (Prometheus text
 * format), /livez and /readyz (probes, ?verbose lists the checks), / (the dashboard page,
 * built into the binary) and /ws (the dashboard's live feed: one JSON snapshot a second).
 *
 * Above the worker: it reads the worker's counters and its apps' statistics, never their
 * connections, so a scrape costs the same with ten connections or a hundred thousand. It is
 * mounted on the worker's server as the handler of the admin listener (server.h), which skips
 * admission and lives through a drain, so probes can say "draining" until the end. With a
 * token, every request needs "Authorization: Bearer TOKEN" (or ?token=TOKEN, for the page and
 * its WebSocket, which a browser cannot give headers); without one, 401. */
#ifndef MOONWIRE_ADMIN_H
#define MOONWIRE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "config.h"
#include "metrics.h"

struct worker;
struct conn;

#define ADMIN_MAX_VIEWERS 16

struct admin {
    struct worker *w;
    const struct cfg_admin *cfg;
    double started;              /* process start (unix seconds) */
    ev_timer tick;               /* once a second: the dashboard's snapshot */
    struct conn *viewers[ADMIN_MAX_VIEWERS];
    size_t nviewers;
    /* For the dashboard's "over the last second" figures: the loop lag and each app's message
     * handler histogram as they were at the last snapshot. */
    struct histogram lag_before;
    struct histogram handler_before[CFG_MAX_APPS];
    size_t base_fds;             /* descriptors that are not connections' (at start) */
};

/* Opens the admin listener of cfg on w's server and starts the dashboard's tick. Returns 0,
 * or -1 with a message in err (address in use...). */
int admin_start(struct admin *a, struct worker *w, const struct cfg_admin *cfg, double started,
                char *err, size_t errlen);

/* Stops the tick (the server closes the listener and its connections). */
void admin_stop(struct admin *a);

/* Writes the whole Prometheus exposition of w into b (what GET /metrics answers). */
void admin_write_metrics(const struct admin *a, struct mbuf *b);

#endif
