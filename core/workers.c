/* Worker threads: see workers.h. */
#include "workers.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "outq.h"
#include "pubsub.h"
#include "util.h"

/* What a worker is asked to do (struct workers.commands). */
enum {
    WK_PREPARE = 1,     /* reload round: prepare the apps in reload[id], then report */
    WK_DRAIN = 2,       /* srv_drain (the second time: drop everything) */
    WK_STOP = 4,        /* end the loop */
    WK_ALL_DRAINED = 8, /* worker 0: every worker's drain is over */
    WK_DECIDE = 16,     /* worker 0: every worker has prepared its apps */
    WK_FINISH = 32,     /* reload round: commit what prepared everywhere, abort the rest */
};
/* Connections waiting to be taken by one worker; past this, a request for its pinned app is
 * answered 503 (the worker is far behind). */
#define HANDOFF_MAX 4096
#define RELOAD_ALL ((uint64_t)1 << 63)
/* Each worker's inbox of publishes from the others: at most this many messages, and this many
 * bytes of frames. Past either, a publish is dropped for that worker (counted, logged). */
#define INBOX_SLOTS 16384
#define INBOX_BYTES ((size_t)64 << 20)
/* Messages a wakeup delivers before the loop turns again (then it wakes itself). */
#define INBOX_BATCH 4096

/* Whether worker id's loop runs (struct workers.ready). Sequentially consistent, with the
 * stores of the commands and of ready: either the sender sees ready and wakes the worker, or
 * the worker's first wakeup (workers_set_ready) sees what was sent (no lost wakeup). It is
 * also what orders the read of w->loop after the worker's thread wrote it. */
static bool is_ready(struct workers *g, unsigned id)
{
    return __atomic_load_n(&g->ready[id], __ATOMIC_SEQ_CST) != 0;
}

static void wake(struct workers *g, unsigned id)
{
    if (is_ready(g, id)) ev_async_send(g->w[id]->loop, &g->w[id]->wake);
}

static void tell(struct workers *g, unsigned id, unsigned what)
{
    __atomic_fetch_or(&g->commands[id], what, __ATOMIC_SEQ_CST);
    wake(g, id);
}

/* Publishes from other workers: each delivered, by reference, to this worker's subscribers
 * of the same app. */
static void deliver_inbox(struct workers *g, struct worker *w)
{
    for (int i = 0; i < INBOX_BATCH; i++) {
        struct bus_msg *m = bus_pop(&g->bus, w->id);
        if (!m) return;
        if (m->app < w->napps) {
            size_t sent;
            struct lb_app *app = w->apps[m->app];
            ps_deliver(lb_app_pubsub(app), m->topic, m->topic_len, m->frame,
                       m->pos.offset ? &m->pos : NULL, &sent);
            lb_app_delivered(app, sent);
        }
        bus_msg_unref(m);
    }
    ev_async_send(w->loop, &w->wake); /* more: after the loop has served the rest */
}

static void take_handoffs(struct workers *g, struct worker *w);
static void prepare_round(struct workers *g, struct worker *w);
static void finish_round(struct workers *g, struct worker *w);
static void decide_round(struct workers *g);

static void on_wake(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct worker *w = container_of(a, struct worker, wake);
    struct workers *g = w->group;
    if (w->napps) deliver_inbox(g, w);
    take_handoffs(g, w);
    unsigned what = __atomic_exchange_n(&g->commands[w->id], 0, __ATOMIC_SEQ_CST);
    /* A round's end before the next round's start: both may be waiting. */
    if (what & WK_FINISH) finish_round(g, w);
    if (what & WK_PREPARE) prepare_round(g, w);
    if (what & WK_DECIDE) decide_round(g);
    if (what & WK_DRAIN) srv_drain(&w->srv);
    if (what & WK_ALL_DRAINED) {
        /* Every worker is done: the others end their loops, then this one. */
        for (unsigned i = 1; i < g->n; i++)
            if (g->started[i]) tell(g, i, WK_STOP);
        ev_break(loop, EVBREAK_ALL);
    }
    if (what & WK_STOP) ev_break(loop, EVBREAK_ALL);
}

/* ---- apps pinned to one worker (app.workers = 1) ------------------------------------------- */

static bool any_tls(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].ntls) return true;
    return false;
}

/* A pinned app needs its connections to move to its worker, which a TLS session cannot do. */
static int pin_error(const struct config *cfg, size_t app, int pinned, char *err, size_t errlen)
{
    if (!pinned || cfg->workers < 2 || !any_tls(cfg)) return 0;
    snprintf(err, errlen, "app %s (for %s) sets app.workers = 1, but a listener speaks TLS and "
             "a TLS connection cannot move between worker threads: serve this app over plain "
             "ws:// behind a TLS-terminating proxy, or run with workers = 1",
             cfg->apps[app].dir, cfg->apps[app].path);
    return -1;
}

static int check_pin(struct workers *g, size_t app, int pinned, char *err, size_t errlen)
{
    return pin_error(g->cfg, app, pinned, err, errlen);
}

int workers_check_pins(const struct config *cfg, const struct worker *w, char *err,
                       size_t errlen)
{
    for (size_t i = 0; i < w->napps; i++)
        if (pin_error(cfg, i, lb_app_workers(w->apps[i]), err, errlen) < 0) return -1;
    return 0;
}

/* Each pinned app is served by worker (its index modulo the workers): pinned apps spread. */
static void apply_pins(struct workers *g, struct worker *w)
{
    for (size_t i = 0; i < w->napps; i++)
        srv_mount_owner(&w->srv, g->cfg->apps[i].path,
                        lb_app_workers(w->apps[i]) ? (int)(i % g->n) : -1);
}

static int handoff_reserve(void *ctx, unsigned owner)
{
    struct workers *g = ctx;
    struct handoff_queue *q = &g->handoffs[owner];
    if (__atomic_add_fetch(&q->count, 1, __ATOMIC_RELAXED) > HANDOFF_MAX) {
        __atomic_sub_fetch(&q->count, 1, __ATOMIC_RELAXED);
        return -1;
    }
    return 0;
}

static void handoff_send(void *ctx, unsigned owner, struct srv_handoff *h)
{
    struct workers *g = ctx;
    struct handoff_queue *q = &g->handoffs[owner];
    h->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail) q->tail->next = h;
    else q->head = h;
    q->tail = h;
    pthread_mutex_unlock(&q->lock);
    /* route() handed over only to a ready owner; one that stopped since never takes h
     * (workers_free closes it). */
    wake(g, owner);
}

static bool handoff_ready(void *ctx, unsigned owner)
{
    return is_ready(ctx, owner);
}

static const struct srv_handoff_ops handoff_ops = { handoff_reserve, handoff_send,
                                                    handoff_ready };

/* Connections other workers handed over: each served here from its request on. */
static void take_handoffs(struct workers *g, struct worker *w)
{
    struct handoff_queue *q = &g->handoffs[w->id];
    if (!__atomic_load_n(&q->count, __ATOMIC_RELAXED)) return;
    pthread_mutex_lock(&q->lock);
    struct srv_handoff *h = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->lock);
    while (h) {
        struct srv_handoff *next = h->next;
        __atomic_sub_fetch(&q->count, 1, __ATOMIC_RELAXED);
        srv_take(&w->srv, h);
        h = next;
    }
}

/* ---- reloading every worker, all or nothing ------------------------------------------------- */

static void start_round(struct workers *g, uint64_t apps)
{
    g->reload_busy = true;
    unsigned n = 0;
    for (unsigned i = 0; i < g->n; i++)
        if (!i || g->started[i]) n++;
    pthread_mutex_lock(&g->lock);
    g->round_failed = 0;
    __atomic_store_n(&g->round_left, n, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g->lock);
    for (unsigned i = 0; i < g->n; i++) {
        if (i && !g->started[i]) continue;
        __atomic_fetch_or(&g->reload[i], apps, __ATOMIC_RELEASE);
        tell(g, i, WK_PREPARE);
    }
}

/* Loads the new code of the round's apps beside the running one, and reports which failed (and
 * why, kept for the first worker to fail) to worker 0. Nothing is logged here: the failure is
 * logged once, by worker 0. */
static void prepare_round(struct workers *g, struct worker *w)
{
    uint64_t apps = __atomic_exchange_n(&g->reload[w->id], 0, __ATOMIC_ACQUIRE);
    g->ext[w->id].reload_certs = (apps & RELOAD_ALL) != 0;
    for (size_t i = 0; i < w->napps; i++) {
        if (!(apps & ((uint64_t)1 << i))) continue;
        char why[512];
        int rc = lb_app_reload_prepare(w->apps[i], why, sizeof why);
        if (rc == 0 &&
            check_pin(g, i, lb_app_staged_workers(w->apps[i]), why, sizeof why) < 0) {
            lb_app_reload_abort(w->apps[i]);
            rc = -1;
        }
        if (rc == 0) continue;
        pthread_mutex_lock(&g->lock);
        if (!(g->round_failed & ((uint64_t)1 << i))) {
            snprintf(g->round_err[i], sizeof g->round_err[i], "%s", why);
            g->round_worker[i] = w->id;
        }
        g->round_failed |= (uint64_t)1 << i;
        pthread_mutex_unlock(&g->lock);
    }
    pthread_mutex_lock(&g->lock);
    bool last = __atomic_sub_fetch(&g->round_left, 1, __ATOMIC_ACQ_REL) == 0;
    pthread_mutex_unlock(&g->lock);
    if (last) tell(g, 0, WK_DECIDE);
}

/* Worker 0, once every worker has prepared: an app that failed anywhere switches nowhere. */
static void decide_round(struct workers *g)
{
    struct worker *w0 = g->w[0];
    pthread_mutex_lock(&g->lock);
    uint64_t failed = g->round_failed;
    for (size_t i = 0; i < w0->napps; i++)
        if (failed & ((uint64_t)1 << i))
            log_error("app %s: reload failed on worker %u, so no worker switched; the previous "
                      "version keeps running: %s", lb_app_name(w0->apps[i]), g->round_worker[i],
                      g->round_err[i]);
    pthread_mutex_unlock(&g->lock);
    g->round_abort = failed;
    for (unsigned i = 0; i < g->n; i++)
        if (!i || g->started[i]) tell(g, i, WK_FINISH);
    g->reload_busy = false;
    if (g->reload_queued) {
        uint64_t apps = g->reload_queued;
        g->reload_queued = 0;
        start_round(g, apps);
    }
}

static void finish_round(struct workers *g, struct worker *w)
{
    uint64_t abort = g->round_abort;
    for (size_t i = 0; i < w->napps; i++) {
        if (!lb_app_reload_staged(w->apps[i])) continue;
        if (abort & ((uint64_t)1 << i)) lb_app_reload_abort(w->apps[i]);
        else lb_app_reload_commit(w->apps[i]);
    }
    apply_pins(g, w);
    if (g->ext[w->id].reload_certs) srv_reload_certificates(&w->srv);
    g->ext[w->id].reload_certs = false;
}

/* A worker's last public connection is gone after SIGTERM: when it is the last worker to get
 * there, worker 0 ends the process's loops. */
static void on_drained(void *ctx)
{
    struct worker *w = ctx;
    struct workers *g = w->group;
    if (g->drain_told[w->id]) return; /* a second signal's aborts end here again */
    g->drain_told[w->id] = true;
    if (__atomic_sub_fetch(&g->draining_left, 1, __ATOMIC_ACQ_REL) == 0) tell(g, 0, WK_ALL_DRAINED);
}

/* ---- the pub/sub engine of each app of each worker ----------------------------------------- */

static void port_changed(void *ctx, const char *topic, size_t len, int delta, size_t local)
{
    struct worker_port *p = ctx;
    if (bus_interest(&p->g->bus, p->app, topic, len, p->worker, delta, local) < 0)
        log_warn("out of memory: topic %.*s is not shared with the other workers",
                 (int)(len < 100 ? len : 100), topic);
}

static size_t port_subscribers(void *ctx, const char *topic, size_t len)
{
    struct worker_port *p = ctx;
    return bus_subscribers(&p->g->bus, p->app, topic, len);
}

static int port_publish(void *ctx, const char *topic, size_t len, struct obuf *frame)
{
    struct worker_port *p = ctx;
    size_t dropped;
    bus_publish(&p->g->bus, p->worker, p->app, topic, len, frame, &dropped);
    return 0; /* drops are the target's to count and log */
}

static int port_publish_history(void *ctx, const char *topic, size_t len, struct obuf *frame,
                                const struct hist_pos *pos)
{
    struct worker_port *p = ctx;
    size_t dropped;
    bus_publish_at(&p->g->bus, BUS_EVERYONE, p->app, topic, len, frame, pos, &dropped);
    return 0;
}

static const struct ps_engine port_engine = {
    .publish = port_publish, .changed = port_changed, .subscribers = port_subscribers,
    .publish_history = port_publish_history,
};

static void wake_worker(void *ctx, unsigned worker)
{
    wake(ctx, worker); /* one not ready yet delivers its inbox on its first turn */
}

/* Once a second: what the bus dropped for this worker, in one line. */
static void on_drops(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker_ext *x = container_of(t, struct worker_ext, drops);
    struct workers *g = x->ports[0].g;
    unsigned id = x->ports[0].worker;
    uint64_t n = bus_dropped_since(&g->bus, id);
    if (n)
        log_warn("dropped %llu publish%s from other workers in the last second: this worker's "
                 "inbox was full (it is busier than the others; its subscribers missed them)",
                 (unsigned long long)n, n == 1 ? "" : "es");
}

int workers_connect_apps(struct workers *g, struct worker *w, char *err, size_t errlen)
{
    struct worker_ext *x = &g->ext[w->id];
    for (size_t i = 0; i < w->napps; i++) {
        x->ports[i] = (struct worker_port){ g, w->id, (unsigned)i };
        ps_set_engine(lb_app_pubsub(w->apps[i]), &port_engine, &x->ports[i]);
        if (check_pin(g, i, lb_app_workers(w->apps[i]), err, errlen) < 0) return -1;
    }
    apply_pins(g, w);
    return 0;
}

int workers_init(struct workers *g, struct config *cfg, struct worker *main)
{
    memset(g, 0, sizeof *g);
    g->cfg = cfg;
    g->n = cfg->workers;
    if (bus_init(&g->bus, g->n, INBOX_SLOTS, INBOX_BYTES) < 0) return -1;
    g->bus.wake = wake_worker;
    g->bus.wake_ctx = g;
    limits_init(&g->limits, cfg->limits.max_connections, cfg->limits.per_ip,
                cfg->limits.connects_per_second);
    g->draining_left = (unsigned)g->n;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    for (size_t i = 0; i < CFG_MAX_WORKERS; i++) pthread_mutex_init(&g->handoffs[i].lock, NULL);
    g->w[0] = main;
    for (size_t i = 1; i < g->n; i++)
        if (!(g->w[i] = calloc(1, sizeof *g->w[i]))) return -1;
    return 0;
}

void workers_attach(struct workers *g, struct worker *w, unsigned id)
{
    w->group = g;
    w->id = id;
    w->srv.reuseport = true;
    w->srv.quiet_listen = id != 0;
    w->srv.drained = on_drained;
    w->srv.drained_ctx = w;
    w->srv.limits = &g->limits;
    w->srv.worker_id = id;
    w->srv.handoff = &handoff_ops;
    w->srv.handoff_ctx = g;
    w->srv.epoll_fd = srv_epoll_fd(w->loop);
    w->env.threaded = true;
    w->lag_epoch = &g->lag_epoch;
    w->lag_seen = __atomic_load_n(&g->lag_epoch, __ATOMIC_RELAXED);
    pthread_mutex_init(&w->view_lock, NULL);
    w->view = calloc(1, sizeof *w->view);
    ev_async_init(&w->wake, on_wake);
    ev_async_start(w->loop, &w->wake);
    /* The wakeup alone must not keep a loop alive that has nothing else to do. */
    ev_unref(w->loop);
    struct worker_ext *x = &g->ext[id];
    x->ports[0] = (struct worker_port){ g, id, 0 };
    ev_timer_init(&x->drops, on_drops, 1., 1.);
    ev_timer_start(w->loop, &x->drops);
    ev_unref(w->loop);
    log_set_worker((int)id);
}

static void report(struct workers *g, int rc, const char *err)
{
    pthread_mutex_lock(&g->lock);
    if (rc < 0 && !g->failed) {
        g->failed = true;
        snprintf(g->err, sizeof g->err, "%s", err);
    }
    g->reported++;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

struct start {
    struct workers *g;
    unsigned id;
};

static void *run_worker(void *arg)
{
    struct start *s = arg;
    struct workers *g = s->g;
    unsigned id = s->id;
    free(s);
    struct worker *w = g->w[id];
    /* Signals are the main thread's (its libev loop watches them). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    log_set_worker((int)id);

    char err[1024];
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    if (!loop) {
        report(g, -1, "cannot start an event loop for a worker (libev found no backend)");
        return NULL;
    }
    if (worker_init(w, loop, g->cfg, err, sizeof err) < 0) {
        ev_loop_destroy(loop);
        w->loop = NULL; /* before the report: workers_stop reads it once this thread ended */
        report(g, -1, err);
        return NULL;
    }
    workers_attach(g, w, id);
    w->env.shared = g->shared;
    w->env.history = g->history;
    int rc = worker_load_apps(w, err, sizeof err);
    if (rc == 0) rc = workers_connect_apps(g, w, err, sizeof err);
    if (rc == 0) rc = worker_connect_redis(w, id, err, sizeof err);
    if (rc == 0) rc = srv_listen(&w->srv, err, sizeof err);
    if (rc == 0) {
        pthread_mutex_lock(&w->view_lock);
        worker_view_of(w, w->view);
        pthread_mutex_unlock(&w->view_lock);
    }
    /* Ready before the report, so that once the process says it serves (every worker has
     * reported), no request meets a worker that is starting; a wakeup before ev_run waits. */
    if (rc == 0) workers_set_ready(g, w, true);
    report(g, rc, err);
    if (rc == 0) {
        ev_run(loop, 0);
        workers_set_ready(g, w, false);
    }
    workers_detach(g, w);
    worker_destroy(w);
    /* The loop stays until every thread has ended (workers_stop): a publisher may still wake
     * it. */
    outq_free_spares();
    return NULL;
}

int workers_spawn(struct workers *g, char *err, size_t errlen)
{
    size_t spawned = 0;
    for (unsigned i = 1; i < g->n; i++) {
        struct start *s = malloc(sizeof *s);
        if (!s) break;
        *s = (struct start){ g, i };
        if (pthread_create(&g->threads[i], NULL, run_worker, s) != 0) {
            free(s);
            break;
        }
        g->started[i] = true;
        spawned++;
    }
    pthread_mutex_lock(&g->lock);
    while (g->reported < spawned) pthread_cond_wait(&g->cond, &g->lock);
    bool failed = g->failed || spawned + 1 < g->n;
    if (failed)
        snprintf(err, errlen, "%s", g->failed ? g->err : "cannot start a worker thread");
    pthread_mutex_unlock(&g->lock);
    if (!failed) return 0;
    workers_stop(g);
    return -1;
}

void workers_reload(struct workers *g, int app)
{
    uint64_t apps = app < 0 ? RELOAD_ALL | (((uint64_t)1 << g->cfg->napps) - 1)
                            : (uint64_t)1 << app;
    if (g->reload_busy) {
        g->reload_queued |= apps; /* after the round under way */
        return;
    }
    start_round(g, apps);
}

void workers_drain(struct workers *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (!i || g->started[i]) tell(g, i, WK_DRAIN);
}

void workers_set_ready(struct workers *g, struct worker *w, bool ready)
{
    __atomic_store_n(&g->ready[w->id], ready ? 1u : 0u, __ATOMIC_SEQ_CST);
    /* The first turn serves what was sent before (tell, the bus, handoffs queued). */
    if (ready) ev_async_send(w->loop, &w->wake);
}

void workers_detach(struct workers *g, struct worker *w)
{
    ev_ref(w->loop);
    ev_timer_stop(w->loop, &g->ext[w->id].drops);
    ev_ref(w->loop);
    ev_async_stop(w->loop, &w->wake);
}

void workers_stop(struct workers *g)
{
    for (unsigned i = 1; i < g->n; i++) {
        if (!g->started[i]) continue;
        tell(g, i, WK_STOP);
        pthread_join(g->threads[i], NULL);
        g->started[i] = false;
    }
    for (unsigned i = 1; i < g->n; i++)
        if (g->w[i] && g->w[i]->loop) {
            ev_loop_destroy(g->w[i]->loop);
            g->w[i]->loop = NULL;
        }
}

void workers_free(struct workers *g)
{
    for (unsigned i = 0; i < CFG_MAX_WORKERS; i++) {
        struct handoff_queue *q = &g->handoffs[i];
        for (struct srv_handoff *h = q->head, *next; h; h = next) {
            next = h->next;
            if (h->fd >= 0) close(h->fd);
            free(h);
        }
        q->head = q->tail = NULL;
        pthread_mutex_destroy(&q->lock);
    }
    bus_free(&g->bus);
    limits_free(&g->limits);
    for (unsigned i = 0; i < g->n; i++) {
        if (!g->w[i]) continue;
        free(g->w[i]->view);
        g->w[i]->view = NULL;
        if (i) free(g->w[i]);
        g->w[i] = NULL;
    }
}

void workers_reset_lag_max(struct workers *g)
{
    __atomic_add_fetch(&g->lag_epoch, 1, __ATOMIC_RELAXED);
}

static void add_view(struct worker_view *sum, const struct worker_view *v)
{
    uint64_t *d = (uint64_t *)&sum->counters;
    const uint64_t *s = (const uint64_t *)&v->counters;
    for (size_t k = 0; k < sizeof v->counters / sizeof(uint64_t); k++) d[k] += s[k];
    sum->connections += v->connections;
    sum->all_connections += v->all_connections;
    sum->files += v->files;
    sum->queued_bytes += v->queued_bytes;
    hist_merge(&sum->loop_lag, &v->loop_lag);
    if (v->lag_max > sum->lag_max) sum->lag_max = v->lag_max;
    /* The stalest heartbeat: /livez fails when any loop stops turning. */
    if (!sum->heartbeat || v->heartbeat < sum->heartbeat) sum->heartbeat = v->heartbeat;
    sum->draining = sum->draining || v->draining;
    sum->nlisteners += v->nlisteners;
    if (v->napps < sum->napps) sum->napps = v->napps; /* loaded everywhere */
    for (size_t i = 0; i < v->napps && i < CFG_MAX_APPS; i++) {
        struct lb_stats *a = &sum->apps[i];
        const struct lb_stats *b = &v->apps[i];
        a->connections += b->connections;
        a->messages_in += b->messages_in;
        a->messages_out += b->messages_out;
        a->publishes += b->publishes;
        a->deliveries += b->deliveries;
        for (int k = 0; k < CTR_FAILURES; k++) a->failures[k] += b->failures[k];
        a->reloads_ok += b->reloads_ok;
        a->reloads_failed += b->reloads_failed;
        for (int k = 0; k < LB_KINDS; k++) hist_merge(&a->seconds[k], &b->seconds[k]);
        sum->memory[i] += v->memory[i];
        sum->timers[i] += v->timers[i];
        sum->topics[i] += v->topics[i];
    }
}

void workers_view(struct workers *g, const struct worker *self, struct worker_view *v,
                  struct worker_figures *each)
{
    struct worker_view *one = malloc(sizeof *one);
    memset(v, 0, sizeof *v);
    v->napps = SIZE_MAX;
    hist_init(&v->loop_lag, hist_seconds_bounds, hist_seconds_nbounds);
    for (size_t i = 0; i < CFG_MAX_APPS; i++)
        for (int k = 0; k < LB_KINDS; k++)
            hist_init(&v->apps[i].seconds[k], hist_seconds_bounds, hist_seconds_nbounds);
    for (unsigned i = 0; i < g->n && one; i++) {
        struct worker *w = g->w[i];
        if (!w || !w->view) continue;
        if (w == self) {
            worker_view_of(w, one);
        } else {
            pthread_mutex_lock(&w->view_lock);
            *one = *w->view;
            pthread_mutex_unlock(&w->view_lock);
        }
        add_view(v, one);
        if (each) {
            each[i].dropped = bus_dropped(&g->bus, i);
            each[i].connections = one->connections;
            each[i].accepted = one->counters.accepted;
            each[i].lag_max = one->lag_max;
        }
    }
    if (v->napps == SIZE_MAX) v->napps = 0;
    free(one);
}
