/* The watchdog's timer and signal handler: see watchdog.h. */
#include "watchdog.h"

#include <errno.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

/* Ticks without a call before the timer is disarmed. */
#define IDLE_TICKS 10

struct wd_state wd_state;

static void (*overrun)(void);
static timer_t timer;
static bool started;
/* The handler's own: the call seen at the last tick, and the ticks since one was seen. */
static int seen, idle;

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

void wd_disarm(void)
{
    wd_state.armed = 0;
    set_timer(0);
}

static void on_tick(int sig)
{
    (void)sig;
    int saved = errno;
    int now = wd_state.call;
    if (now == 0) {
        seen = 0;
        if (++idle >= IDLE_TICKS) {
            idle = 0;
            wd_disarm(); /* timer_settime is async-signal-safe */
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
