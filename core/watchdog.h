/* The watchdog: notices a call into Lua that runs for more than a tick, so the sandbox can turn
 * on its instruction counter only then.
 *
 * Lua's count hook makes the VM stop at every instruction (luaG_traceexec), which costs app
 * code 70 to 90% of its speed. Nearly every call is over in microseconds, so the sandbox runs
 * calls without the hook and lets this watchdog arm it for the rare one that lasts: a POSIX
 * timer signals the main thread every WD_TICK_NS while calls keep coming, and when the signal
 * handler finds the same call in progress at two ticks in a row it calls the sandbox's
 * on_overrun, which sets the hook. lua_sethook is made for that: the standalone interpreter
 * calls it from its SIGINT handler, and the VM rechecks for hooks at every jump and call.
 *
 * Everything runs on the main thread (the handler interrupts it), so there is no thread to
 * schedule, no lock and no atomic read-modify-write: wd_begin, wd_renew and wd_end are plain
 * stores to volatile variables. The handler disarms the timer after a couple of ticks in which
 * no call ran, so an idle server takes no signals; the next call re-arms it (one
 * timer_settime). A busy server takes one signal a millisecond and no system call. */
#ifndef MOONWIRE_WATCHDOG_H
#define MOONWIRE_WATCHDOG_H

#include <signal.h>

#define WD_TICK_NS 1000000L /* 1 ms: a call is noticed after one to two ticks */

struct wd_state {
    volatile sig_atomic_t call;  /* the running call's number; 0 while none runs */
    volatile sig_atomic_t armed; /* the timer ticks; the handler clears it when it disarms */
    volatile sig_atomic_t next;  /* the number of the last call begun */
};
extern struct wd_state wd_state;

/* Creates the timer and installs the signal handler; on_overrun runs in the handler while a
 * call has been running for more than a tick (again at each tick until wd_end), so it must be
 * async-signal-safe. Idempotent. Returns 0, or -1 with errno set. */
int wd_start(void (*on_overrun)(void));

/* Starts the ticks again (wd_begin calls it when the timer is disarmed). */
void wd_arm(void);

static inline int wd_number(void)
{
    int n = wd_state.next + 1;
    if (n <= 0) n = 1;
    wd_state.next = n;
    return n;
}

/* A call begins; returns the number of the call it interrupts (0: none), for wd_end. The call
 * is stored before armed is read: a handler that disarms in between has seen no call, and
 * this then sees armed cleared and re-arms. */
static inline int wd_begin(void)
{
    int outer = wd_state.call;
    wd_state.call = wd_number();
    if (!wd_state.armed) wd_arm();
    return outer;
}

/* The running call is followed by a new one (sb_restart): the watch starts over. */
static inline void wd_renew(void) { wd_state.call = wd_number(); }

/* The call ends; outer is what wd_begin returned (a nested call gives the watch back). */
static inline void wd_end(int outer) { wd_state.call = outer; }

#endif
