/* Several workers in one process: worker 0 on the main thread (with the signals and the admin
 * listener), the others each on a thread of their own with its own libev loop. Each worker has
 * its own listening sockets (SO_REUSEPORT: the kernel spreads new connections over them), its
 * own copy of every app (Lua states, timers, watchdog) and its own connections.
 *
 * The main thread asks things of the workers (reload, drain, stop) through an ev_async each:
 * a bit in an atomic word says what, the wakeup says when. Nothing else crosses threads here;
 * the admin listener reads each worker's copy of its figures (worker.view). */
#ifndef MOONWIRE_WORKERS_H
#define MOONWIRE_WORKERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "config.h"
#include "worker.h"

/* One app of one worker, as the pub/sub engine that connects it to the other workers. */
struct worker_port {
    struct workers *g;
    unsigned worker;
    unsigned app;
};

/* What the process keeps for each worker besides the worker itself. */
struct worker_ext {
    struct worker_port ports[CFG_MAX_APPS];
    ev_timer drops;            /* once a second: log what the bus dropped for this worker */
    bool reload_certs;         /* the reload round under way includes the certificates */
};

/* Connections handed over to one worker (an app pinned with app.workers = 1): a list under a
 * mutex, taken once per connection, never per message. */
struct handoff_queue {
    pthread_mutex_t lock;
    struct srv_handoff *head, *tail;
    unsigned count;            /* atomic: queued or reserved */
};

struct workers {
    struct config *cfg;
    size_t n;
    struct worker *w[CFG_MAX_WORKERS]; /* w[0] is the main thread's */
    pthread_t threads[CFG_MAX_WORKERS];
    bool started[CFG_MAX_WORKERS];     /* threads running (joined by workers_stop) */
    unsigned commands[CFG_MAX_WORKERS]; /* atomic: WK_* bits not yet seen */
    /* atomic: the worker's loop runs (set just before its ev_run, its wakeup started; cleared
     * when ev_run returns). Only then does another thread touch its loop (a wakeup) or hand it
     * a connection: a worker still loading its apps has neither a loop to wake nor one that
     * turns. */
    unsigned ready[CFG_MAX_WORKERS];
    uint64_t reload[CFG_MAX_WORKERS];   /* atomic: apps to reload (bit i: app i) */
    bool drain_told[CFG_MAX_WORKERS];   /* the worker reported the end of its drain */
    unsigned draining_left;            /* atomic: workers whose drain is not over */
    struct worker_ext ext[CFG_MAX_WORKERS];
    struct bus bus;                    /* pub/sub across workers */
    struct limits_shared limits;       /* connection limits across workers */
    struct sstore *shared;             /* mw.shared (the process's, set by its owner) */
    struct handoff_queue handoffs[CFG_MAX_WORKERS];
    unsigned lag_epoch;                /* atomic: bumped to restart every worker's lag_max */

    /* SIGHUP and --watch: a reload round prepares the apps in every worker, then worker 0
     * commits each app that prepared everywhere and aborts the others (all or nothing).
     * reload_busy and reload_queued are worker 0's (a request during a round waits for its
     * end); round_left counts the workers yet to report; failed and the texts are under lock. */
    bool reload_busy;
    uint64_t reload_queued;
    unsigned round_left;
    uint64_t round_failed;             /* apps that failed to prepare on some worker */
    uint64_t round_abort;              /* what worker 0 decided (read after WK_FINISH) */
    char round_err[CFG_MAX_APPS][512]; /* why, the first worker's to fail, per app */
    unsigned round_worker[CFG_MAX_APPS];
    struct history *history;           /* pub/sub history (the process's, set by its owner) */

    /* Start-up: each thread reports whether its apps loaded and it listens. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t reported;
    bool failed;
    char err[1024];
};

/* Prepares g for cfg->workers workers, main (already set up with worker_init on the main
 * thread's loop) being worker 0. Returns 0, or -1 when out of memory. */
int workers_init(struct workers *g, struct config *cfg, struct worker *main);

/* Makes w worker id of g: its listeners share their port, its drain reports to g, its figures
 * are copied for the admin. Call on w's thread after worker_init, before loading the apps. */
void workers_attach(struct workers *g, struct worker *w, unsigned id);

/* Connects w's apps (loaded) to the other workers' copies: publishes reach their subscribers,
 * mw.subscribers counts them, and an app pinned with app.workers = 1 is served by its one
 * worker (app index modulo the workers), connections reaching another being handed over after
 * their request head. Call on w's thread once its apps are loaded. Returns 0, or -1 with why
 * in err: a pinned app cannot be served when a listener speaks TLS (a TLS session cannot move
 * between threads). */
int workers_connect_apps(struct workers *g, struct worker *w, char *err, size_t errlen);

/* What workers_connect_apps refuses, for --check (which starts no worker): 0, or -1 with why in
 * err when an app of w (loaded) is pinned while cfg has several workers and a TLS listener. */
int workers_check_pins(const struct config *cfg, const struct worker *w, char *err,
                       size_t errlen);

/* Starts workers 1..n-1, each loading the apps and listening on its thread, and waits until
 * every one has. Returns 0, or -1 with the first failure in err (the started ones are stopped
 * again). */
int workers_spawn(struct workers *g, char *err, size_t errlen);

/* Reloads app index `app` (or every app and the certificates when app < 0) on every worker. */
void workers_reload(struct workers *g, int app);

/* SIGTERM: every worker drains; the main loop ends when all are done. A second call drops every
 * connection at once. */
void workers_drain(struct workers *g);

/* Ends the other workers' loops and waits for their threads (each frees its own worker).
 * Worker 0 stays for the caller: workers_detach, worker_destroy, then workers_free. */
void workers_stop(struct workers *g);

/* Marks w's loop as running (ready, on w's thread just before its ev_run: the other workers
 * hand it connections and wake it from then on) or as ended (ready false, once ev_run
 * returned). Commands and publishes sent while it was not ready are served by its first turn. */
void workers_set_ready(struct workers *g, struct worker *w, bool ready);

/* Stops what workers_attach started on w (on its thread, before worker_destroy). */
void workers_detach(struct workers *g, struct worker *w);

/* Frees what g holds (after workers_stop and worker 0's worker_destroy). */
void workers_free(struct workers *g);

/* Every worker's worst loop lag starts again (within its next 100 ms tick). Any thread. */
void workers_reset_lag_max(struct workers *g);

/* What the metrics show of each worker on its own (the worker label). */
struct worker_figures {
    uint64_t dropped;          /* publishes from other workers dropped: its inbox was full */
    size_t connections;
    uint64_t accepted;
    double lag_max;
};

/* Sums what the admin reads of every worker into v (each worker's last copy; the calling
 * thread's own worker, `self`, read live), and when each is not NULL, fills each[0..n). */
void workers_view(struct workers *g, const struct worker *self, struct worker_view *v,
                  struct worker_figures *each);

#endif
