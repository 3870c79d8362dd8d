/* The watchdog thread: see watchdog.h. */
#include "watchdog.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Idle ticks (no call running) before the thread parks. */
#define PARK_AFTER 10

struct wd_shared wd_shared;

static void (*overrun)(void);
static pthread_t main_thread;
static bool started;

static long futex(atomic_int *word, int op, int val)
{
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

void wd_unpark(void)
{
    atomic_store(&wd_shared.parked, 0);
    futex(&wd_shared.parked, FUTEX_WAKE_PRIVATE, 1);
}

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    if (atomic_load_explicit(&wd_shared.call, memory_order_relaxed)) overrun();
    errno = saved;
}

static void *watch(void *arg)
{
    (void)arg;
    unsigned seen = 0;
    int idle = 0;
    const struct timespec tick = { 0, WD_TICK_NS };
    for (;;) {
        nanosleep(&tick, NULL);
        unsigned now = atomic_load(&wd_shared.call);
        if (now == 0) {
            seen = 0;
            if (++idle < PARK_AFTER) continue;
            /* Park, unless a call began meanwhile: wd_renew stores the call, then reads
             * parked; this stores parked, then reads the call, so one of the two sees the
             * other (both sequentially consistent). */
            idle = 0;
            atomic_store(&wd_shared.parked, 1);
            if (atomic_load(&wd_shared.call) == 0) futex(&wd_shared.parked, FUTEX_WAIT_PRIVATE, 1);
            atomic_store(&wd_shared.parked, 0);
            continue;
        }
        idle = 0;
        /* The same call as a tick ago: it has run for more than a tick. */
        if (now == seen) pthread_kill(main_thread, SIGRTMIN);
        seen = now;
    }
    return NULL;
}

int wd_start(void (*on_overrun)(void))
{
    if (started) return 0;
    overrun = on_overrun;
    main_thread = pthread_self();
    struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGRTMIN, &sa, NULL) < 0) return -1;
    /* The thread takes no signals: SIGTERM, SIGHUP and the rest are the main thread's. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    pthread_detach(t);
    started = true;
    return 0;
}
