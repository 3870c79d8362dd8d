/* A loop context: everything one event loop needs, owned in one place. The loop, the counters,
 * the sandbox runtime (watchdog and the running call), the server (listeners, admission,
 * connections, mounts) and the apps mounted on it, each in its own Lua state.
 *
 * Nothing here is shared with another worker, so several can live in one process, one per
 * thread or (in tests) several on one thread. The order of worker_init, then the apps, then
 * listening, is the order a thread per core will follow: the watchdog must be started on the
 * thread that runs the Lua calls, before the first of them (the apps' main chunks). */
#ifndef MOONWIRE_WORKER_H
#define MOONWIRE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "counters.h"
#include "lua_bridge.h"
#include "metrics.h"
#include "sandbox.h"
#include "server.h"

struct hc;
struct outbound_policy;
struct workers;

/* What the admin listener reads of a worker: its counters and its apps' statistics, copied.
 * With several workers each one copies its own into worker.view (under view_lock) every
 * 100 ms, on its own thread, so the admin thread never reads what another thread writes. */
struct worker_view {
    struct counters counters;
    size_t connections;       /* public connections (not the admin listener's) */
    size_t all_connections;   /* every connection, with the admin listener's */
    size_t files;
    size_t queued_bytes;
    struct histogram loop_lag;
    double lag_max;
    double heartbeat;
    bool draining;
    size_t nlisteners;
    size_t napps;
    struct lb_stats apps[CFG_MAX_APPS];
    size_t memory[CFG_MAX_APPS], timers[CFG_MAX_APPS], topics[CFG_MAX_APPS];
};

struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    struct counters counters;
    struct sb_runtime rt;
    struct lb_env env;
    struct server srv;
    struct lb_app *apps[CFG_MAX_APPS];
    size_t napps;
    struct hc *http;                  /* outbound HTTP (mw.http.request) */
    struct rnode *redis;              /* the Redis engine (config redis), or NULL */
    struct outbound_policy *outbound; /* where it may go (the config's outbound list) */

    /* Is the loop turning? A 100 ms timer records how late it runs (the loop was busy with
     * something else meanwhile) and stamps the heartbeat /livez reads. */
    ev_timer lag_timer;
    double lag_due;           /* when the timer should run (ev_now based) */
    struct histogram loop_lag;
    double lag_max;           /* the worst since the admin's last snapshot */
    /* One of several workers: the admin asks for lag_max to start again by bumping the number
     * lag_epoch points to (atomic); the lag timer compares it with the last it saw. */
    const unsigned *lag_epoch;
    unsigned lag_seen;
    volatile double heartbeat; /* unix time of the last tick */

    /* One of several workers (workers.h); NULL when alone. id counts from 0; worker 0 runs on
     * the main thread, with the admin listener and the signals. */
    struct workers *group;
    unsigned id;
    ev_async wake;            /* other threads ask something of this worker (workers.c) */
    pthread_mutex_t view_lock;
    struct worker_view *view; /* the last copy (group only) */
};

/* Copies what the admin reads of w into v (on w's thread). */
void worker_view_of(const struct worker *w, struct worker_view *v);

/* Prepares w on loop with cfg (which must outlive it), on the thread that will run the loop:
 * starts the sandbox watchdog (a failure is logged as an error: Lua then runs with the
 * instruction counter always on) and the server, without listeners. Returns 0, or -1 with a
 * message in err. */
int worker_init(struct worker *w, struct ev_loop *loop, const struct config *cfg, char *err,
                size_t errlen);

/* Loads the config's apps, each in its own sandbox, and mounts them. Returns 0, or -1 with a
 * message naming the app in err. */
int worker_load_apps(struct worker *w, char *err, size_t errlen);

/* With a redis config: starts this worker's Redis engine (worker id `id`) and puts it under
 * every app's pub/sub, over the engine the app has (call after workers_connect_apps). Returns
 * 0, or -1 with the reason in err. */
int worker_connect_redis(struct worker *w, unsigned id, char *err, size_t errlen);

/* Reloads every app and the listeners' certificates (SIGHUP), or only the app given. */
void worker_reload(struct worker *w, struct lb_app *only);

/* Frees everything: connections first (their apps hear the close), then the apps. */
void worker_destroy(struct worker *w);

#endif
