/* The watchdog: notices a call into Lua that runs for more than a tick, so the sandbox can turn
 * on its instruction counter only then.
 *
 * Lua's count hook makes the VM stop at every instruction (luaG_traceexec), which costs app
 * code 70 to 90% of its speed. Nearly every call is over in microseconds, so the sandbox runs
 * calls without the hook and lets this watchdog arm it for the rare one that lasts: a thread
 * wakes every WD_TICK_NS while calls are running and, when it finds the same call in progress
 * at two wake-ups in a row, sends the main thread a signal whose handler (the sandbox's
 * on_overrun) sets the hook. lua_sethook is made for that: the standalone interpreter calls it
 * from its SIGINT handler, and the VM rechecks for hooks at every jump and call. While no call
 * runs for a few ticks, the thread sleeps on a futex until the next call begins.
 *
 * wd_begin and wd_end run on every call, so they are inline and cost one atomic store each,
 * plus one load. */
#ifndef MOONWIRE_WATCHDOG_H
#define MOONWIRE_WATCHDOG_H

#include <stdatomic.h>
#include <stdbool.h>

#define WD_TICK_NS 1000000L /* 1 ms: a call is hooked after one to two ticks */

struct wd_shared {
    atomic_uint call;    /* the running call's number; 0 while none runs */
    atomic_int parked;   /* the thread sleeps until a call begins (futex word) */
    unsigned next;       /* main thread only: the number of the next call */
};
extern struct wd_shared wd_shared;

/* Starts the thread and installs the signal handler; on_overrun runs in the handler, on the
 * main thread, while a call has been running for more than a tick (again at each tick until
 * wd_end). It must be async-signal-safe. Idempotent. Returns 0, or -1 with errno set. */
int wd_start(void (*on_overrun)(void));

/* Wakes the parked thread (wd_begin calls it when needed). */
void wd_unpark(void);

/* The running call is followed by a new one (sb_restart): the watch starts over. */
static inline void wd_renew(void)
{
    if (++wd_shared.next == 0) wd_shared.next = 1;
    atomic_store(&wd_shared.call, wd_shared.next);
    if (atomic_load(&wd_shared.parked)) wd_unpark();
}

/* A call begins; returns the number of the call it interrupts (0: none), for wd_end. */
static inline unsigned wd_begin(void)
{
    unsigned outer = atomic_load_explicit(&wd_shared.call, memory_order_relaxed);
    wd_renew();
    return outer;
}

/* The call ends; outer is what wd_begin returned (a nested call gives the watch back). */
static inline void wd_end(unsigned outer)
{
    atomic_store_explicit(&wd_shared.call, outer, memory_order_relaxed);
}

#endif
