/* The watchdog's timer and signal handler: see watchdog.h. */
#include "watchdog.h"

#include <errno.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

/* Ticks in a row that find no call running and none begun since the tick before, after which
 * the timer is disarmed. Few: a server that handles a message and waits (one publish every
 * 20 ms) would otherwise be woken by a tick after each; not one: re-arming costs a
 * timer_settime, which in a VM is a trap to the hypervisor. */
#define IDLE_TICKS 2

struct wd_state wd_state;

static void (*overrun)(void);
static timer_t timer;
static bool started;
/* The handler's own: the call seen at the last tick, the number the next call would have
 * had then, and the idle ticks in a row. */
static int seen, seen_next, idle;

static void set_timer(long ns)
{
    struct itimerspec its = { .it_interval = { 0, ns }, .it_value = { 0, ns } };
    timer_settime(timer, 0, &its, NULL);
}

void wd_arm(void)
{
    wd_state.armed = 1;
    set_timer(WD_TICK_NS);
}

static void disarm(void)
{
    wd_state.armed = 0;
    set_timer(0);
}

static void on_tick(int sig)
{
    (void)sig;
    int saved = errno;
    int now = wd_state.call, next = wd_state.next;
    bool began = next != seen_next;
    seen_next = next;
    if (now == 0) {
        seen = 0;
        if (began) idle = 0;
        else if (++idle >= IDLE_TICKS) {
            idle = 0;
            disarm(); /* timer_settime is async-signal-safe */
        }
    } else {
        idle = 0;
        if (now == seen) overrun(); /* the same call as a tick ago */
        seen = now;
    }
    errno = saved;
}

int wd_start(void (*on_overrun)(void))
{
    if (started) return 0;
    overrun = on_overrun;
    struct sigaction sa = { .sa_handler = on_tick, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN, &sa, NULL) < 0) return -1;
    /* To this thread, whatever threads a library may start. */
    struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGRTMIN };
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer) < 0) {
        int e = errno;
        signal(SIGRTMIN, SIG_DFL);
        errno = e;
        return -1;
    }
    started = true;
    return 0;
}
