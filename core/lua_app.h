/* Internal to the Lua bridge (lua_bridge.c, lua_conn.c, lua_mw.c): the app record and the
 * helpers the three share. Nothing outside them includes this. */
#ifndef MOONWIRE_LUA_APP_H
#define MOONWIRE_LUA_APP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "app_metrics.h"
#include "lua_bridge.h"
#include "pubsub.h"
#include "sandbox.h"

struct lb_timer;
struct lb_task;
struct lane;

/* Series (label combinations) of mw.metrics per app. */
#define LB_MAX_SERIES 1000

/* How an app's timer callbacks share the loop (lua_mw.c): timers that come due while others
 * wait, or while the app has used its share or its slice of the turn, queue here in the order
 * they came due, and `resume` runs them later. */
struct lb_timer_queue {
    ev_timer resume;         /* runs queued timers: next turn, or when the share allows */
    struct lb_timer *head, *tail;
    double share;            /* fraction of each second (sandbox.timer_share); 0: no cap */
    double balance;          /* seconds of callback time the app may still use (a bucket) */
    double refilled;         /* when balance was last topped up (monotonic seconds) */
    unsigned turn;           /* the loop iteration turn_spent counts */
    double turn_spent;       /* seconds of timer callbacks in that iteration */
};

/* Where names_ref (the interned handler names) holds the keys moonwire.v1 reads raw. */
enum { LB_NAME_SUBSCRIBE = 8, LB_NAME_PUBLISH = 9, LB_NAME_CHANNELS = 10, LB_NAME_HEARTBEAT = 11 };

struct lb_app {
    struct sandbox sb;
    const struct lb_env *env;
    char *name;          /* as given: "examples/chat" */
    char *dir;           /* the folder require looks in */
    char *file;          /* the main chunk */
    char *public_dir;    /* static files, or NULL */
    char *scripts_dir;
    int handlers_ref;    /* registry: the table the main chunk returned */
    int names_ref;       /* registry: the handler names as Lua strings, by enum lb_handler,
                          * then the LB_NAME_ keys */
    int api_ref;         /* registry: the mw module (shared by every version of the code) */
    uint32_t generation; /* version of the code; a reload makes the next */
    uint32_t timer_generation; /* stamped on new timers: the version being run or loaded */
    int after_load_ref;  /* registry: functions mw.after_load collected while loading */
    bool loading;        /* a main chunk is running (first load or reload) */
    struct pubsub ps;
    struct lb_timer *timers; /* pending timers, to cancel those of an old version */
    struct lb_timer_queue due;
    double topic_warned;     /* when running out of topic memory was last logged */
    struct lb_stats stats;
    struct am_registry metrics; /* mw.metrics: survives reloads */
    /* Taken around every change to metrics, and by the admin thread reading them, when the
     * app is one of several workers' copies (env->threaded); never with one worker. */
    pthread_mutex_t metrics_lock;
    /* The text of the message being handled, which the frame reader has found valid UTF-8
     * and run_messages keeps alive on the stack (so no other string can have this address);
     * NULL between messages. Sending it on skips the check (lb_valid_text). */
    const char *valid_text;
    /* Runs that can wait (lua_task.c): the coroutine the next one borrows, the runs waiting
     * now, and the one whose slice runs. */
    struct lb_task *spare;
    struct lb_task *waiting;
    size_t nwaiting;
    struct lb_task *running;
    double wait_timeout;     /* seconds a run may take in all (sandbox.wait_timeout); 0: none */
    struct lane *lanes;      /* connections whose handler waits (lua_bridge.c) */
    size_t http_in_flight;   /* mw.http.request calls waiting */
    size_t redis_in_flight;  /* mw.redis.call calls waiting */
    unsigned shared_ns;       /* its keys in mw.shared (lb_limits.index) */
    int workers;              /* app.workers: 1 pins it to one worker, 0 when not set */
    /* A reload in two steps (lb_app_reload_prepare): the new version's handlers and its
     * app.workers, loaded but not yet swapped in. */
    int staged_ref;
    int staged_workers;
    ev_timer heartbeat;       /* moonwire.v1's heartbeat, while it has v1 connections */
    double heartbeat_interval;
};

/* The app that owns L (any thread of it). */
struct lb_app *lb_app_of(lua_State *L);

/* What a call into the app is: for its log line on failure ("message handler"; the connection
 * and the close code it gets, when there is one) and its statistics (its kind, and how many
 * messages it handled, to time them one by one). */
struct lb_what {
    const char *what;
    enum lb_kind kind;
    size_t count;        /* 0 counts as 1 */
    struct conn *c;      /* NULL: not about a connection */
    unsigned closes_with; /* the close code c gets when the call fails; 0: none */
};

/* Runs fn(ud) in the app's state under sb_call, timed. On failure logs one line naming the app,
 * what failed, why, and the connection with its close code, and returns how it failed; SB_OK
 * otherwise. */
enum sb_status lb_call(struct lb_app *app, lua_CFunction fn, void *ud, const struct lb_what *w);
/* lb_call's result as 0, or -1 for any failure. */
int lb_run(struct lb_app *app, lua_CFunction fn, void *ud, const struct lb_what *w);
/* How a call failed, for log lines: "ran out of instructions". */
const char *lb_failure_text(enum sb_status st);

/* The topic name at argument arg, its length in *len. Raises, naming the function (fname,
 * "mw.publish") and limits.max_topic_length, when it is not a string or is longer. */
const char *lb_check_topic(lua_State *L, int arg, size_t *len, const char *fname);

/* Whether the Lua string data (len bytes) is valid UTF-8: without looking when it is the
 * message being handled. */
bool lb_valid_text(struct lb_app *app, const char *data, size_t len);

/* mw.history's answer when history lives in Redis (lua_wait.c): waits, then returns what
 * mw.history returns. */
int lb_history_redis(lua_State *L, const char *topic, size_t len, bool since_given,
                     uint64_t since, const char *epoch);

/* ---- runs that can wait (lua_task.c) -------------------------------------------------------- */

/* How a run that waited ended (SB_OK, or how it failed: its line is logged already). */
typedef void (*lb_finished)(struct lb_task *t, enum sb_status st);

struct lb_task {
    struct lb_app *app;
    lua_State *co;            /* the coroutine it runs on */
    int co_ref;               /* registry: keeps co */
    void *ctx;                /* the caller's context: its own until the run waits, then a copy */
    size_t ctx_size;
    bool ctx_owned;
    struct lb_what w;         /* what it is, for a failure's line (w.c NULL once it waits) */
    uint64_t conn_id;         /* the connection it runs for, 0: none */
    char ip[46];              /* its address, kept when the run starts waiting */
    lb_finished finished;
    ev_timer wait;            /* sandbox.wait_timeout */
    double began;             /* when it started waiting (loop time) */
    double busy;              /* seconds its slices ran */
    bool failed;              /* its coroutine died by an error: not to be reused */
    void (*cancel)(void *);   /* what stops what it waits for; set by what it waits on */
    void *cancel_ud;
    struct lb_task *prev, *next; /* the app's waiting runs */
};

/* Runs fn (a trampoline, given t as its light userdata: lb_task_ctx(t) is ctx) on a coroutine,
 * so that the handler it calls (with lua_callk and a continuation reading lb_task_ctx) can
 * wait. Returns SB_OK with *waiting NULL when it finished, SB_OK with *waiting the run when it
 * waits (ctx has been copied: the caller's may go; `finished` runs when it ends), or how it
 * failed, logged as lb_call does. */
enum sb_status lb_call_async(struct lb_app *app, lua_CFunction fn, void *ctx, size_t ctx_size,
                             const struct lb_what *w, lb_finished finished,
                             struct lb_task **waiting);
void *lb_task_ctx(const struct lb_task *t);
/* The run whose slice is running on thread L, or NULL (L is not a run's coroutine: the main
 * chunk, an upgrade handler, a coroutine the app made). */
struct lb_task *lb_task_running(struct lb_app *app, lua_State *L);
/* Before yielding to wait: what cancels the wait (on wait_timeout, shutdown). */
void lb_task_waits_for(struct lb_task *t, void (*cancel)(void *), void *ud);
/* Continues t with nvalues values pushed on its coroutine (what it waited for). */
void lb_task_resume(struct lb_task *t, int nvalues);
/* Logs a failure of t as lb_call logs one. */
void lb_task_log_failure(struct lb_app *app, const struct lb_task *t, enum sb_status st,
                         const char *why);
/* Abandons every waiting run (app shutdown): their waits are cancelled, nothing more runs. */
void lb_tasks_free(struct lb_app *app);
/* lua_bridge.c: drops what waits in the connections' lanes (app shutdown). */
void lb_lanes_free(struct lb_app *app);

/* lua_conn.c: the conn object. */
void lb_conn_register(lua_State *L);
/* Pushes c's conn object onto L (a thread of c's app), making it on first use. */
void lb_push_conn(lua_State *L, struct conn *c);
/* The connection behind the conn object at idx (one lb_push_conn pushed), or NULL once it is
 * gone or closing. */
struct conn *lb_conn_at(lua_State *L, int idx);
/* Seeds c's conn.data with the table on top of the stack (popped). */
void lb_conn_set_data(lua_State *L, struct conn *c);
/* Releases c's conn object before c is freed; it then answers nil, "closed". */
void lb_forget(struct lb_app *app, struct conn *c);
/* Empties c's conn.data (the next read of it makes a new, empty table). */
void lb_conn_clear_data(struct lb_app *app, struct conn *c);

/* lua_metrics.c: pushes the mw.metrics table. */
void lb_push_metrics(lua_State *L);

/* lua_crypto.c: sets mw.crypto, mw.base64, mw.hex and mw.jwt in the mw table at api (which
 * already holds mw.json). */
void lb_push_crypto(lua_State *L, int api);

/* lua_wait.c: sets mw.sleep and mw.http in the mw table at api. */
void lb_push_waits(lua_State *L, int api);
/* On a virtual clock: the handler in mw.sleep due first (by due time, then by when it began to
 * sleep) at or before until, or NULL; whether it is due before a timer due at (due, seq); and
 * waking it (the clock moves to its due time). */
struct lb_sleeper *lb_clock_first_sleeper(struct lb_clock *clock, double until);
bool lb_sleeper_before(const struct lb_sleeper *s, double due, uint64_t seq);
void lb_clock_wake(struct lb_clock *clock, struct lb_sleeper *s);
/* lua_shared.c: sets mw.shared in the mw table at api. */
void lb_push_shared(lua_State *L, int api);

/* lua_mw.c: the mw module. */
void lb_push_api(struct lb_app *app);
/* Cancels every pending timer made by code of the given generation. */
void lb_cancel_timers(struct lb_app *app, uint32_t generation);
/* Sets up the app's timer queue with its share (sandbox.timer_share); lb_timers_stop stops
 * its watcher before the app is freed. */
void lb_timers_init(struct lb_app *app, double share);
void lb_timers_stop(struct lb_app *app);

#endif
