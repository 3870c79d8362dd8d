/* The watchdog: notices a call into Lua that runs for more than a tick, so the sandbox can turn
 * on its instruction counter only then.
 *
 * Lua's count hook makes the VM stop at every instruction (luaG_traceexec), which costs app
 * code 70 to 90% of its speed. Nearly every call is over in microseconds, so the sandbox runs
 * calls without the hook and lets a watchdog arm it for the rare one that lasts: a POSIX timer
 * signals the loop's thread every WD_TICK_NS while calls keep coming, and when the signal
 * handler finds the same call in progress at two ticks in a row it calls on_overrun, which sets
 * the hook. lua_sethook is made for that: the standalone interpreter calls it from its SIGINT
 * handler, and the VM rechecks for hooks at every jump and call.
 *
 * One watchdog per loop context. Its timer signals the thread that started it, and the signal
 * carries the watchdog's address (sigev_value), so several loop contexts, on one thread or on
 * many, each have their own without any process-wide state. Everything a watchdog touches
 * runs on its thread (the handler interrupts it), so there is no lock and no atomic
 * read-modify-write: wd_begin, wd_renew and wd_end are plain stores to volatile variables. The
 * handler disarms the timer after a couple of ticks in which no call ran, so an idle server
 * takes no signals; the next call re-arms it (one timer_settime). A busy server takes one
 * signal a millisecond and no system call.
 *
 * The one process-wide thing is the signal's disposition (SIGRTMIN -> the tick handler), which
 * POSIX keeps per process; every watchdog installs the same handler, so doing it again is
 * harmless. */
#ifndef MOONWIRE_WATCHDOG_H
#define MOONWIRE_WATCHDOG_H

#include <signal.h>
#include <stdbool.h>
#include <time.h>

#define WD_TICK_NS 1000000L /* 1 ms: a call is noticed after one to two ticks */

struct watchdog {
    volatile sig_atomic_t call;  /* the running call's number; 0 while none runs */
    volatile sig_atomic_t armed; /* the timer ticks; the handler clears it when it disarms */
    volatile sig_atomic_t next;  /* the number of the last call begun */
    volatile sig_atomic_t failed; /* arming the timer failed (wd_begin cannot report it) */
    /* The handler's own: the call seen at the last tick, the number the next call would have
     * had then, and the idle ticks in a row. */
    int seen, seen_next, idle;
    void (*overrun)(void *ctx);
    void *ctx;
    timer_t timer;
    bool started;
};

/* Creates wd's timer, signalling the calling thread, and installs the signal handler;
 * on_overrun(ctx) runs in the handler while a call has been running for more than a tick
 * (again at each tick until wd_end), so it must be async-signal-safe. Returns 0, or -1 with
 * errno set (nothing is left started). */
int wd_start(struct watchdog *wd, void (*on_overrun)(void *ctx), void *ctx);

/* Deletes the timer. Safe on a watchdog that never started. */
void wd_stop(struct watchdog *wd);

/* Starts the ticks again (wd_begin calls it when the timer is disarmed). Returns 0, or -1 with
 * errno when the kernel refused (the watchdog then notices nothing: the caller must fall back
 * to counting every call). */
int wd_arm(struct watchdog *wd);

static inline int wd_number(struct watchdog *wd)
{
    int n = wd->next + 1;
    if (n <= 0) n = 1;
    wd->next = n;
    return n;
}

/* A call begins; returns the number of the call it interrupts (0: none), for wd_end. The call
 * is stored before armed is read: a handler that disarms in between has seen no call, and
 * this then sees armed cleared and re-arms. A failed re-arm sets wd->failed. */
static inline int wd_begin(struct watchdog *wd)
{
    int outer = wd->call;
    wd->call = wd_number(wd);
    if (!wd->armed && wd_arm(wd) < 0) wd->failed = 1;
    return outer;
}

/* The running call is followed by a new one (sb_restart): the watch starts over. */
static inline void wd_renew(struct watchdog *wd) { wd->call = wd_number(wd); }

/* The call ends; outer is what wd_begin returned (a nested call gives the watch back). */
static inline void wd_end(struct watchdog *wd, int outer) { wd->call = outer; }

#endif
