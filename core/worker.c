/* A loop context: see worker.h. */
#include "worker.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "log.h"
#include "outbound.h"
#include "rnode.h"
#include "util.h"

#define LAG_PERIOD 0.1

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs every LAG_PERIOD: how late it ran is the time the loop could not turn. */
static void on_lag_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = container_of(t, struct worker, lag_timer);
    double lag = ev_time() - w->lag_due;
    if (lag < 0) lag = 0;
    if (w->lag_epoch) {
        unsigned epoch = __atomic_load_n(w->lag_epoch, __ATOMIC_RELAXED);
        if (epoch != w->lag_seen) {
            w->lag_seen = epoch;
            w->lag_max = 0; /* the admin's snapshot took the last one */
        }
    }
    hist_observe(&w->loop_lag, lag, 1);
    if (lag > w->lag_max) w->lag_max = lag;
    w->heartbeat = wall_now();
    w->lag_due = ev_now(loop) + LAG_PERIOD;
    if (w->view) {
        pthread_mutex_lock(&w->view_lock);
        worker_view_of(w, w->view);
        pthread_mutex_unlock(&w->view_lock);
    }
    ev_timer_set(t, LAG_PERIOD, 0.);
    ev_timer_start(loop, t);
}

/* The outbound HTTP client of this loop, with the config's policy and CA file. */
static int start_outbound(struct worker *w, char *err, size_t errlen)
{
    const struct cfg_outbound *o = &w->cfg->outbound;
    const char *list[CFG_MAX_OUTBOUND];
    for (size_t i = 0; i < o->nentries; i++) list[i] = o->entries[i];
    char why[256];
    if (!(w->outbound = outbound_parse(list, o->nentries, why, sizeof why))) {
        snprintf(err, errlen, "outbound: %s", why);
        return -1;
    }
    struct hc_config hcfg;
    hc_config_defaults(&hcfg);
    hcfg.max_response = o->max_response;
    hcfg.timeout = o->timeout;
    hcfg.ca_file = o->ca[0] ? o->ca : NULL;
    hcfg.policy = w->outbound;
    if (!(w->http = hc_new(w->loop, &hcfg, why, sizeof why))) {
        snprintf(err, errlen, "outbound HTTP: %s", why);
        outbound_free(w->outbound);
        w->outbound = NULL;
        return -1;
    }
    return 0;
}

void worker_view_of(const struct worker *w, struct worker_view *v)
{
    v->counters = w->counters;
    v->all_connections = conn_count(&w->srv.conns);
    v->connections = srv_public_conns(&w->srv);
    v->files = w->srv.conns.files;
    v->queued_bytes = w->srv.conns.queued_bytes;
    v->loop_lag = w->loop_lag;
    v->lag_max = w->lag_max;
    v->heartbeat = w->heartbeat;
    v->draining = w->srv.draining;
    v->nlisteners = w->srv.nlisteners;
    v->napps = w->napps;
    for (size_t i = 0; i < w->napps; i++) {
        v->apps[i] = *lb_app_stats(w->apps[i]);
        v->memory[i] = lb_app_memory(w->apps[i]);
        v->timers[i] = lb_app_timers(w->apps[i]);
        v->topics[i] = lb_app_topics(w->apps[i]);
    }
}

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
    w->srv.conns.access_log = cfg->log.access;
    hist_init(&w->loop_lag, hist_seconds_bounds, hist_seconds_nbounds);
    w->heartbeat = wall_now();
    w->lag_due = ev_now(loop) + LAG_PERIOD;
    ev_timer_init(&w->lag_timer, on_lag_timer, LAG_PERIOD, 0.);
    ev_timer_start(loop, &w->lag_timer);
    if (start_outbound(w, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s", why);
        ev_timer_stop(loop, &w->lag_timer);
        srv_destroy(&w->srv);
        sb_runtime_stop(&w->rt);
        return -1;
    }
    w->env = (struct lb_env){ .loop = loop, .conns = &w->srv.conns, .rt = &w->rt,
                              .counters = &w->counters,
                              .max_subscriptions = cfg->limits.max_subscriptions,
                              .max_topic_length = cfg->limits.max_topic_length,
                              .http = w->http,
                              .http_max_in_flight = cfg->outbound.max_in_flight };
    return 0;
}

int worker_connect_redis(struct worker *w, unsigned id, char *err, size_t errlen)
{
    if (!w->cfg->redis.enabled) return 0;
    if (!(w->redis = rnode_new(w->loop, &w->cfg->redis, id, err, errlen))) return -1;
    w->env.redis = w->redis;
    w->env.redis_timeout = w->cfg->redis.timeout;
    w->env.redis_max_in_flight = w->cfg->redis.max_in_flight;
    for (size_t i = 0; i < w->napps; i++)
        if (rnode_attach(w->redis, w->apps[i], (unsigned)i, w->cfg->apps[i].path) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    return 0;
}

int worker_load_apps(struct worker *w, char *err, size_t errlen)
{
    const struct config *cfg = w->cfg;
    struct lb_limits limits = { cfg->sandbox.instructions, cfg->sandbox.memory,
                                cfg->sandbox.time_limit, cfg->sandbox.topic_memory,
                                cfg->sandbox.timer_share, cfg->sandbox.max_load,
                                cfg->sandbox.wait_timeout, 0 };
    for (size_t i = 0; i < cfg->napps; i++) {
        const struct cfg_app *a = &cfg->apps[i];
        limits.index = (unsigned)i;
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
    ev_timer_stop(w->loop, &w->lag_timer);
    srv_destroy(&w->srv);
    for (size_t i = 0; i < w->napps; i++) lb_app_free(w->apps[i]);
    w->napps = 0;
    /* After the apps too: their mw.redis.call waits were cancelled as they went. */
    rnode_free(w->redis);
    w->redis = NULL;
    /* After the apps: their waiting requests were cancelled as they went. */
    hc_free(w->http);
    w->http = NULL;
    outbound_free(w->outbound);
    w->outbound = NULL;
    sb_runtime_stop(&w->rt);
}
