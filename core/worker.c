/* A loop context: see worker.h. */
#include "worker.h"

#include <stdio.h>
#include <string.h>

#include "log.h"

int worker_init(struct worker *w, struct ev_loop *loop, const struct config *cfg, char *err,
                size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->loop = loop;
    w->cfg = cfg;
    char why[300];
    if (sb_runtime_start(&w->rt, why, sizeof why) < 0) log_error("%s", why);
    if (srv_init(&w->srv, loop, cfg, &w->counters) < 0) {
        snprintf(err, errlen, "out of memory");
        sb_runtime_stop(&w->rt);
        return -1;
    }
    w->env = (struct lb_env){ .loop = loop, .conns = &w->srv.conns, .rt = &w->rt,
                              .counters = &w->counters,
                              .max_subscriptions = cfg->limits.max_subscriptions,
                              .max_topic_length = cfg->limits.max_topic_length };
    return 0;
}

int worker_load_apps(struct worker *w, char *err, size_t errlen)
{
    const struct config *cfg = w->cfg;
    struct lb_limits limits = { cfg->sandbox.instructions, cfg->sandbox.memory,
                                cfg->sandbox.time_limit, cfg->sandbox.topic_memory,
                                cfg->sandbox.timer_share, cfg->sandbox.max_load };
    for (size_t i = 0; i < cfg->napps; i++) {
        const struct cfg_app *a = &cfg->apps[i];
        char why[1024];
        struct lb_app *app = lb_app_load(&w->env, a->dir, cfg->scripts_dir, &limits, why,
                                         sizeof why);
        if (!app) {
            snprintf(err, errlen, "app %s (for %s): %s", a->dir, a->path, why);
            return -1;
        }
        w->apps[w->napps++] = app;
        if (srv_mount(&w->srv, a->path, &lb_conn_handler, app, lb_app_public_dir(app)) < 0) {
            snprintf(err, errlen, "app %s: cannot mount it at %s (the path is taken)", a->dir,
                     a->path);
            return -1;
        }
    }
    return 0;
}

void worker_reload(struct worker *w, struct lb_app *only)
{
    for (size_t i = 0; i < w->napps; i++)
        if (!only || w->apps[i] == only) lb_app_reload(w->apps[i]);
    if (!only) srv_reload_certificates(&w->srv);
}

void worker_destroy(struct worker *w)
{
    srv_destroy(&w->srv);
    for (size_t i = 0; i < w->napps; i++) lb_app_free(w->apps[i]);
    w->napps = 0;
    sb_runtime_stop(&w->rt);
}
