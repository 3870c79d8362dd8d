/* The bridge between connections and a Lua app: loads the app into its sandbox, runs its
 * handlers (upgrade, open, message, close, drain) and gives it the `conn` objects and the
 * `mw` module.
 *
 * Every call into Lua goes through sb_call: traceback, budget, classified failure, one log
 * line naming the app, the handler and the file:line. After any call the connection may have
 * changed state (the handler may close it): callers re-check before touching it.
 *
 * The Lua side is the layer above connections and pub/sub: it reaches connections only
 * through the functions of conn.h, and connections reach it only through lb_conn_handler. */
#ifndef MOONWIRE_LUA_BRIDGE_H
#define MOONWIRE_LUA_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "conn.h"
#include "counters.h"
#include "metrics.h"
#include "sandbox.h"

struct lb_app;
struct hc;

/* A clock of its own for the apps' timers and mw.now: moonwire test's virtual clock, which
 * moves only when the spec advances it (lb_clock_run_next). A loop context without one (the
 * server) runs app timers as libev timers on the loop's clock. */
struct lb_sleeper;
struct lb_clock {
    double now;    /* seconds, what mw.now returns */
    uint64_t seq;  /* stamps timers as they are scheduled: of two due together, the first runs */
    struct lb_sleeper *sleepers; /* handlers in mw.sleep, woken by lb_clock_run_next too */
};
struct pubsub;
struct sstore;
struct history;
struct rnode;

/* What the apps of one loop context share: its loop, its connections, its sandbox runtime
 * (watchdog) and its counters. Owned by the loop context; must outlive its apps. */
struct lb_env {
    struct ev_loop *loop;
    struct conn_loop *conns;
    struct sb_runtime *rt;
    struct counters *counters;
    size_t max_subscriptions; /* per connection (limits.max_subscriptions) */
    size_t max_topic_length;  /* bytes in a topic name (limits.max_topic_length); 0: none */
    struct hc *http;          /* outbound HTTP for mw.http.request (core/http_client.h) */
    size_t http_max_in_flight; /* requests one app may have waiting (outbound.max_in_flight) */
    struct lb_clock *clock;   /* NULL: the loop's clock (the server); else a virtual clock */
    const struct lb_stub *stub; /* NULL: the network (the server); else moonwire test's stubs */
    struct sstore *shared;    /* mw.shared: the process's store (NULL: none) */
    bool threaded;            /* one of several workers: the admin thread reads the apps'
                               * mw.metrics (lb_app_merge_metrics), under their lock */
    struct history *history;  /* pub/sub history: the process's (NULL: none) */
    struct rnode *redis;      /* mw.redis.call's connections (NULL: no redis configured) */
    double redis_timeout;     /* seconds for a call that names none */
    size_t redis_max_in_flight; /* calls one app may have waiting */
};

/* moonwire test answers the apps' outbound calls itself. call gets the kind ("http") and the
 * request (the table given to mw.http.request) as JSON text, and returns the answer as
 * malloc'd JSON text: { "res": {...} } or { "err": reason, "detail": text }; or NULL with a
 * malloc'd message in *err, which the app's call raises. */
struct lb_stub {
    char *(*call)(void *ud, const char *kind, const char *req, size_t len, char **err);
    void *ud;
};

struct lb_limits {
    uint64_t instructions; /* per callback; 0: none */
    size_t memory;         /* bytes for the app's Lua state; 0: no cap */
    double time_limit;     /* seconds per callback; 0: none */
    size_t topic_memory;   /* bytes of C memory for the app's topics; 0: no cap */
    double timer_share;    /* fraction of each second its timer callbacks may run; 0: no cap */
    size_t max_load;       /* bytes of one chunk given to load; 0: no limit */
    double wait_timeout;   /* seconds a handler run may take, waits included; 0: none */
    unsigned index;        /* the app's place in the config: its namespace in mw.shared */
};

/* Loads the app at path (a Lua file, or a folder holding app.lua) and runs its main chunk.
 * scripts_dir: where require finds "moonwire.*" modules. Returns the app, or NULL with a
 * message in err (a syntax error with file:line, a missing file, a chunk that does not return a
 * table of handlers...). */
struct lb_app *lb_app_load(const struct lb_env *env, const char *path, const char *scripts_dir,
                           const struct lb_limits *limits, char *err, size_t errlen);
void lb_app_free(struct lb_app *app);

/* Runs the app's main chunk again, in a fresh environment of the same state (SIGHUP, --watch).
 * Only when it loads and returns good handlers are they swapped in: connections, conn.data,
 * subscriptions and mw.state carry over, the old version's timers are cancelled, and
 * app.reload(previous) runs. Otherwise the old version keeps serving. Logs either outcome;
 * returns 0 or -1. */
int lb_app_reload(struct lb_app *app);

/* lb_app_reload in two steps, for a reload that must succeed in every worker or in none.
 * prepare runs the new main chunk and keeps its handlers aside, nothing swapped: returns 0, or
 * -1 with why in err (nothing logged; the previous version keeps serving). Then either commit
 * (swaps them in, runs app.reload, logs the new version; -1 only when out of memory, logged) or
 * abort (forgets them, and the timers the new chunk started). A prepare while one is staged
 * aborts that one first. */
int lb_app_reload_prepare(struct lb_app *app, char *err, size_t errlen);
int lb_app_reload_commit(struct lb_app *app);
void lb_app_reload_abort(struct lb_app *app);
bool lb_app_reload_staged(const struct lb_app *app);

/* app.workers: 1 when the app asks to be served by one worker only (every connection in one Lua
 * state), 0 when it does not; of the running version, and of the one staged by a prepare. */
int lb_app_workers(const struct lb_app *app);
int lb_app_staged_workers(const struct lb_app *app);

/* With a virtual clock (env->clock): runs the one pending timer of apps[0..n) that comes due
 * first, if it is due by `until` (seconds on the clock), moving the clock to when it was due.
 * Timers due together run in the order they were scheduled. The timer share and the slice of
 * a loop turn do not apply (they measure the loop's real time); a repeating timer stopped by a
 * limit is cancelled as in the server, counting its streak on the virtual clock. Returns true
 * when a timer ran. */
bool lb_clock_run_next(struct lb_clock *clock, struct lb_app *const *apps, size_t n,
                       double until);

/* Pushes a table like mw.json (encode, decode that returns whole numbers as integers, null),
 * for a Lua state other than an app's (moonwire test decodes what apps send with it). */
void lb_push_json(lua_State *L);

/* The app's name in log lines (the path it was loaded from), its folder, and its static files
 * folder (NULL without a public/ folder). */
const char *lb_app_name(const struct lb_app *app);
const char *lb_app_dir(const struct lb_app *app);
const char *lb_app_public_dir(const struct lb_app *app);

/* ---- what an app has done, for metrics and the dashboard --------------------------------- */

/* The kinds of call into an app that are timed and counted. */
enum lb_kind { LB_KIND_UPGRADE, LB_KIND_OPEN, LB_KIND_MESSAGE, LB_KIND_CLOSE, LB_KIND_DRAIN,
               LB_KIND_TIMER, LB_KIND_RELOAD, LB_KIND_HTTP, LB_KINDS };
extern const char *const lb_kind_names[LB_KINDS]; /* "upgrade", "open", "message", ... */

/* Kept by the Lua side as it works (plain counters, the loop's thread only). */
struct lb_stats {
    uint64_t connections;            /* open: app.open ran, app.close not yet */
    uint64_t messages_in;            /* messages handed to app.message */
    uint64_t messages_out;           /* sent with conn:send */
    uint64_t publishes;              /* mw.publish calls */
    uint64_t deliveries;             /* local receivers of those */
    uint64_t failures[CTR_FAILURES]; /* calls stopped, by how */
    uint64_t reloads_ok, reloads_failed;
    /* Seconds per call (per message for app.message: a batch counts as its average). */
    struct histogram seconds[LB_KINDS];
};

const struct lb_stats *lb_app_stats(const struct lb_app *app);
/* The app's topics (a worker connects them to the other workers' copies of the app). */
struct pubsub *lb_app_pubsub(struct lb_app *app);
/* Counts n deliveries of a publish that came from another worker's copy of the app. */
void lb_app_delivered(struct lb_app *app, size_t n);
size_t lb_app_memory(const struct lb_app *app); /* bytes its Lua state holds */
size_t lb_app_timers(const struct lb_app *app); /* pending timers */
size_t lb_app_topics(const struct lb_app *app); /* topics with a subscriber */

/* A topic and how many subscribe to it. name points into the app's topic table: valid until
 * the table changes. */
struct lb_topic_count {
    const char *name;
    size_t len;
    size_t subscribers;
};

/* Fills out with up to n of the app's topics with the most subscribers, most first. Walks every
 * topic: for the dashboard's once-a-second snapshot, not for the message path. */
size_t lb_app_busiest_topics(const struct lb_app *app, struct lb_topic_count *out, size_t n);

/* Writes the metrics the apps defined with mw.metrics (moonwire_app_*) into b. */
void lb_write_app_metrics(struct lb_app *const *apps, size_t n, struct mbuf *b);

/* Adds what the app defined with mw.metrics to into (am_merge), from any thread when its loop
 * context is threaded (lb_env.threaded). Returns 0, or -1 when out of memory. */
struct am_registry;
int lb_app_merge_metrics(struct lb_app *app, struct am_registry *into);

/* How connections reach an app: mount it with this table and the app as context. The
 * callbacks run app.upgrade (which refuses with 500 and a log line when it fails or picks a
 * subprotocol the client did not offer), app.open, app.message for each message of a batch
 * (one protected call for the batch; the budget applies to each message on its own; delivery
 * stops when the connection stops being open), app.close and app.drain; "ended" ends the
 * connection's subscriptions and "gone" releases its conn object (which then answers
 * nil, "closed"). */
extern const struct conn_handler lb_conn_handler;

#endif
