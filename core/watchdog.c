/* The watchdog's timer and signal handler: see watchdog.h. */
#include "watchdog.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Ticks in a row that find no call running and none begun since the tick before, after which
 * the timer is disarmed. Few: a server that handles a message and waits (one publish every
 * 20 ms) would otherwise be woken by a tick after each; not one: re-arming costs a
 * timer_settime, which in a VM is a trap to the hypervisor. */
#define IDLE_TICKS 2

static int set_timer(struct watchdog *wd, long ns)
{
    struct itimerspec its = { .it_interval = { 0, ns }, .it_value = { 0, ns } };
    return timer_settime(wd->timer, 0, &its, NULL);
}

int wd_arm(struct watchdog *wd)
{
    wd->armed = 1;
    if (set_timer(wd, WD_TICK_NS) == 0) return 0;
    wd->armed = 0;
    return -1;
}

static void disarm(struct watchdog *wd)
{
    wd->armed = 0;
    set_timer(wd, 0); /* timer_settime is async-signal-safe */
}

static void on_tick(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    /* Only our timers send SIGRTMIN with a value; anything else (a stray kill) is ignored. */
    if (si->si_code != SI_TIMER) return;
    struct watchdog *wd = si->si_value.sival_ptr;
    if (!wd || !wd->started) return;
    int saved = errno;
    int now = wd->call, next = wd->next;
    bool began = next != wd->seen_next;
    wd->seen_next = next;
    if (now == 0) {
        wd->seen = 0;
        if (began) wd->idle = 0;
        else if (++wd->idle >= IDLE_TICKS) {
            wd->idle = 0;
            disarm(wd);
        }
    } else {
        wd->idle = 0;
        if (now == wd->seen) wd->overrun(wd->ctx); /* the same call as a tick ago */
        wd->seen = now;
    }
    errno = saved;
}

int wd_start(struct watchdog *wd, void (*on_overrun)(void *ctx), void *ctx)
{
    memset(wd, 0, sizeof *wd);
    wd->overrun = on_overrun;
    wd->ctx = ctx;
    struct sigaction sa = { .sa_sigaction = on_tick, .sa_flags = SA_RESTART | SA_SIGINFO };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN, &sa, NULL) < 0) return -1;
    /* To this thread, whatever threads a library may start; the value says which watchdog. */
    struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN,
                            .sigev_value.sival_ptr = wd };
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &wd->timer) < 0) return -1;
    wd->started = true;
    return 0;
}

void wd_stop(struct watchdog *wd)
{
    if (!wd->started) return;
    /* Deleting the timer also discards a tick already queued for it (Linux frees the timer's
     * preallocated signal), so the handler cannot see this watchdog after it is gone. */
    wd->started = false;
    timer_delete(wd->timer);
}
