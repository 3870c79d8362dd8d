/* The Lua sandbox an app runs in: its own lua_State with a memory cap, an instruction budget per
 * callback that pcall inside the app cannot swallow, and environments built from an allow list.
 *
 * Knows nothing of connections or the server: lua_bridge.c puts the app API on top. */
#ifndef MOONWIRE_SANDBOX_H
#define MOONWIRE_SANDBOX_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "log.h"
#include "smallpool.h"
#include "watchdog.h"

/* Why the running callback is being stopped (or SB_OK while it may run). */
enum sb_status {
    SB_OK = 0,
    SB_ERROR,        /* the code raised an error */
    SB_BUDGET,       /* stopped by the instruction budget */
    SB_MEMORY,       /* stopped by the memory limit */
    SB_TIME,         /* stopped by the time limit */
};

struct sandbox;

/* What the sandboxes of one loop context share: the watchdog, and which of them runs a call
 * now (the watchdog's signal handler reads it). One per loop context, so two loops in one
 * process, or on two threads, never see each other's calls. */
struct sb_runtime {
    struct watchdog wd;
    struct sandbox *volatile running; /* NULL between calls */
    bool lazy_hook;                   /* the watchdog runs: calls start without the hook */
};

/* Starts rt's watchdog on the calling thread (the loop's). Returns 0; or -1 with the reason in
 * err, in which case every call runs with the instruction counter on from its first
 * instruction (safe, at about half speed), and the caller should say so as an error. */
int sb_runtime_start(struct sb_runtime *rt, char *err, size_t errlen);
void sb_runtime_stop(struct sb_runtime *rt);

struct sandbox {
    lua_State *L;
    struct sb_runtime *rt;   /* the loop context's; set before sb_open */
    const char *name;        /* the app's name, for log lines */
    const char *app_dir;     /* require looks here first ... */
    const char *scripts_dir; /* ... and here for "moonwire.*" modules */
    /* Memory: a callback that takes the state past mem_limit is stopped at its next budget
     * check, with the line it was running; the allocator refuses outright only past
     * mem_hard (mem_limit + 1/8), which bounds what a single allocation can reach. */
    size_t mem_used;         /* what Lua asked for and has not freed */
    size_t mem_limit;        /* bytes; 0: no limit */
    size_t mem_hard;
    size_t mem_refused;      /* size of the last allocation refused ... */
    char mem_where[160];     /* ... and the file:line that asked, when known */
    struct smallpool pool;   /* blocks of up to SP_MAX bytes; larger ones come from malloc */
    bool calling;            /* inside sb_call: app code may be running */
    uint64_t budget;         /* instructions per callback; 0: no budget */
    double time_limit;       /* seconds per callback; 0: none */
    size_t max_load;         /* bytes of one chunk given to load; 0: no limit */
    bool load_refused;       /* a refusal by max_load was logged in this callback */
    /* When the running callback must be done (monotonic clock, ns); 0: not known yet. With the
     * watchdog, it is set when the callback has run for a tick (a clock read per callback
     * would cost more than the rest of the watch), so it is exact to a tick or so. */
    _Atomic int64_t deadline_ns;
    uint64_t used;           /* instructions counted in this callback (in steps of the hook) */
    /* The callback thread's count hook is on only for a callback that has run for a tick
     * (watchdog.h), over its memory limit or being stopped; coroutines always have it. */
    volatile sig_atomic_t hooked;      /* the hook of base is on */
    /* The thread running app code: L, or a coroutine it resumed (sandbox_lib.c reports each
     * switch). Once the deadline has passed, the watchdog hooks this one at every
     * instruction. */
    lua_State *volatile current;
    /* The thread the callback runs on: L for sb_call, the coroutine for sb_resume. Its hook is
     * the one `hooked` follows and the watchdog turns on. */
    lua_State *volatile base;
    volatile sig_atomic_t setting_hook; /* the signal handler must keep off the hook */
    uint8_t stop;            /* SB_BUDGET, SB_MEMORY or SB_TIME: every instruction raises until
                              * unwound */
};

/* Creates sb->L. Fill rt, name, dirs and limits first. Returns 0, or -1 when out of memory. */
int sb_open(struct sandbox *sb);
void sb_close(struct sandbox *sb);

/* The sandbox that owns L (any thread of it). */
struct sandbox *sb_of(lua_State *L);

/* Pushes a new environment: the allowed globals, read-only library proxies, the table at index
 * api_index as the global "mw" (and the module "moonwire"), and require/load/print bound to
 * it. Each app version gets its own, so a reload starts from clean globals. */
void sb_push_env(struct sandbox *sb, int api_index);

/* Pushes a read-only proxy of the table at index t: reads and pairs() reach the table, writes
 * raise, and the proxy's metatable is locked. */
void sb_push_readonly(lua_State *L, int t);

/* Logs the values from stack index first on, joined by sep and converted like tostring, as
 * one line at level naming the app. For print and mw.log. */
void sb_log_values(lua_State *L, int first, char sep, enum log_level level);

/* Loads the Lua text file at path as a function whose _ENV is the table at env_index.
 * Returns 0 with the function pushed, or -1 with an error message pushed. */
int sb_load_file(struct sandbox *sb, const char *path, int env_index);

/* Inside sb_call: gives what runs next a fresh budget and time limit, as if a new call started
 * (for several callbacks run in one protected call). */
void sb_restart(struct sandbox *sb);

/* Calls the function below nargs arguments under the budget, with a traceback handler, keeping
 * nresults results. On failure, pushes nothing and writes one log-ready line into err: the
 * error with its file:line and a condensed traceback. */
enum sb_status sb_call(struct sandbox *sb, int nargs, int nresults, char *err, size_t errlen);

/* Starts or continues a callback that may wait: resumes coroutine co (a thread of sb->L) with
 * the nargs values on top of its stack (a first start: the function below them), under the
 * budget and time limit of one callback, which each resumption gets afresh. Returns SB_OK with
 * *yielded true when it yielded (the yielded values on co's stack), SB_OK with *yielded false
 * and *nresults results on co's stack when it finished, or how it failed, with the same line
 * in err as sb_call. A failed co is dead: drop it, never close or reuse it (an error raised by
 * the budget's hook leaves its hooks off for good, so its __close methods, or anything else,
 * would run unbudgeted); its to-be-closed variables stay unclosed, as for any coroutine that
 * died by an error and is never closed. */
enum sb_status sb_resume(struct sandbox *sb, lua_State *co, int nargs, int *nresults,
                         bool *yielded, char *err, size_t errlen);

/* Abandons what suspended coroutine co was running (a run that waited too long): closes its
 * to-be-closed variables under a budget of their own, and leaves co ready for another call. */
void sb_reset_thread(struct sandbox *sb, lua_State *co);

#endif
