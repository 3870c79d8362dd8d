/* The virtual clock of moonwire test (lb_env.clock, lb_clock_run_next): app timers run when the
 * clock reaches them, in order, ties in the order they were scheduled, mw.now follows the
 * clock, and real time passing moves nothing. Timer callbacks report through mw.log, read
 * here through the log sink. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "log.h"
#include "worker.h"

/* Timers made by the main chunk: a (once at 30 ms), b (every 20 ms), c (once at 20 ms, made
 * after b: due together, it runs after b). Each logs its name and mw.now() - start in ms. */
static const char app_source[] =
    "local start = mw.now()\n"
    "local function say(name)\n"
    "    mw.log('info', ('fired %s %.0f'):format(name, (mw.now() - start) * 1000))\n"
    "end\n"
    "mw.after(30, function() say('a') end)\n"
    "mw.every(20, function() say('b') end)\n"
    "mw.after(20, function() say('c') end)\n"
    "return {}\n";

static char app_dir[] = "/tmp/moonwire-clock-XXXXXX";
static char fired[512];

static bool keep(void *ud, enum log_level level, const char *text)
{
    (void)ud;
    (void)level;
    if (strncmp(text, "app ", 4) != 0) return false;
    const char *f = strstr(text, "fired ");
    if (f) {
        size_t n = strlen(fired);
        snprintf(fired + n, sizeof fired - n, "%s%s", n ? "," : "", f + 6);
    }
    return true;
}

static void write_app(void)
{
    cr_assert_not_null(mkdtemp(app_dir));
    char path[256];
    snprintf(path, sizeof path, "%s/app.lua", app_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(app_source, f);
    fclose(f);
    log_set_sink(keep, NULL);
}

static void remove_app(void)
{
    log_set_sink(NULL, NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/app.lua", app_dir);
    unlink(path);
    rmdir(app_dir);
}

Test(clock, timers_follow_the_virtual_clock_in_order, .init = write_app, .fini = remove_app)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    struct worker *w = calloc(1, sizeof *w);
    cr_assert(cfg && w);
    cfg_defaults(cfg);
    snprintf(cfg->scripts_dir, sizeof cfg->scripts_dir, "scripts");
    snprintf(cfg->apps[0].path, sizeof cfg->apps[0].path, "/");
    snprintf(cfg->apps[0].dir, sizeof cfg->apps[0].dir, "%s", app_dir);
    cfg->napps = 1;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char err[1024];
    cr_assert_eq(worker_init(w, loop, cfg, err, sizeof err), 0, "%s", err);
    struct lb_clock clock = { .now = 1000.0 };
    w->env.clock = &clock;
    cr_assert_eq(worker_load_apps(w, err, sizeof err), 0, "%s", err);
    cr_expect_eq(lb_app_timers(w->apps[0]), 3);

    /* Real time passing and the loop turning run nothing: the timers wait for the clock. */
    struct timespec pause = { 0, 40 * 1000 * 1000 };
    nanosleep(&pause, NULL);
    ev_run(loop, EVRUN_NOWAIT);
    cr_expect_str_eq(fired, "");

    /* Up to 19 ms: nothing is due. */
    cr_expect_not(lb_clock_run_next(&clock, w->apps, w->napps, 1000.019));
    /* Up to 45 ms, one at a time: b and c at 20 (b was scheduled first), a at 30, b at 40. */
    int ran = 0;
    while (lb_clock_run_next(&clock, w->apps, w->napps, 1000.045)) ran++;
    cr_expect_eq(ran, 4);
    cr_expect_str_eq(fired, "b 20,c 20,a 30,b 40");
    cr_expect_float_eq(clock.now, 1000.040, 1e-9);
    /* The one-shot timers are done; b repeats. */
    cr_expect_eq(lb_app_timers(w->apps[0]), 1);

    worker_destroy(w);
    ev_loop_destroy(loop);
    free(w);
    free(cfg);
}
