/* The admin listener: see admin.h. */
#include "admin.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "lua_bridge.h"
#include "rnode.h"
#include "utf8.h"
#include "util.h"
#include "worker.h"
#include "workers.h"

#ifndef MOONWIRE_VERSION
#define MOONWIRE_VERSION "0.1.0"
#endif

/* The dashboard page (core/admin/dashboard.html), built into the binary (see the Makefile). */
extern const unsigned char admin_dashboard_html[];
extern const size_t admin_dashboard_html_len;

/* A loop that has not turned for this long is not alive (/livez says 503). */
#define LIVENESS_SECONDS 10.0

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- process figures, from /proc ----------------------------------------------------------- */

struct process_stats {
    double cpu_seconds;
    double resident_bytes;
    double open_fds;
    double max_fds;
};

/* Descriptors the process holds, counted in /proc/self/fd. */
static size_t count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n ? n - 1 : 0; /* the directory's own descriptor */
}

/* Past this many connections the descriptors are not counted one by one: the kernel makes
 * /proc/self/fd entry by entry, about 1 us each, which would make a scrape's cost grow with
 * the connections. */
#define COUNT_FDS_BELOW 1000

static void read_process(const struct admin *a, const struct worker_view *v,
                         struct process_stats *p)
{
    memset(p, 0, sizeof *p);
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
        /* Fields after the command name, which may hold spaces: it ends at the last ')'. */
        const char *p2 = strrchr(buf, ')');
        unsigned long utime = 0, stime = 0;
        if (p2 && sscanf(p2 + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                         &stime) == 2 && tick > 0)
            p->cpu_seconds = (double)(utime + stime) / (double)tick;
    }
    f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size = 0, resident = 0;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2) p->resident_bytes = (double)resident *
                                                                            (double)page;
        fclose(f);
    }
    /* Few connections: count what is really open. Many: the descriptors every process of
     * ours has (counted at start, listeners included) plus one per connection and per static
     * file being sent, which is what the server opens. */
    size_t open = v->all_connections + v->files;
    p->open_fds = (double)(open < COUNT_FDS_BELOW ? count_fds() : a->base_fds + open);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) p->max_fds = (double)rl.rlim_cur;
}

/* ---- /metrics ------------------------------------------------------------------------------ */

static const char *const refusal_names[CTR_REFUSALS] = {
    [CTR_REFUSED_ORIGIN] = "origin",       [CTR_REFUSED_AUTH] = "auth",
    [CTR_REFUSED_LIMIT] = "limit",         [CTR_REFUSED_RATE] = "rate",
    [CTR_REFUSED_TIMEOUT] = "timeout",     [CTR_REFUSED_BAD_REQUEST] = "bad_request",
    [CTR_REFUSED_NOT_FOUND] = "not_found", [CTR_REFUSED_DRAINING] = "draining",
    [CTR_REFUSED_ERROR] = "error",
};
static const char *const failure_names[CTR_FAILURES] = { "error", "budget", "memory", "time" };

static void counter(struct mbuf *b, const char *name, const char *help, double v)
{
    metrics_family(b, name, "counter", help);
    metrics_sample(b, name, NULL, 0, v);
}

static void gauge(struct mbuf *b, const char *name, const char *help, double v)
{
    metrics_family(b, name, "gauge", help);
    metrics_sample(b, name, NULL, 0, v);
}

/* What the admin shows: the worker's figures, or with several workers the sum of theirs
 * (each worker's copy of its own; see worker.h). NULL when out of memory; free it. */
static struct worker_view *current_view(const struct admin *a, struct worker_figures *each)
{
    struct worker_view *v = malloc(sizeof *v);
    if (!v) return NULL;
    if (a->w->group) workers_view(a->w->group, a->w, v, each);
    else worker_view_of(a->w, v);
    return v;
}

/* One family with one sample per app, the value read by get. */
static void per_app(struct mbuf *b, const struct worker *w, const struct worker_view *v,
                    const char *name, const char *type, const char *help,
                    double (*get)(const struct worker_view *v, size_t i))
{
    metrics_family(b, name, type, help);
    for (size_t i = 0; i < v->napps; i++) {
        struct label l = { "app", lb_app_name(w->apps[i]) };
        metrics_sample(b, name, &l, 1, get(v, i));
    }
}

static double app_connections(const struct worker_view *v, size_t i)
{
    return (double)v->apps[i].connections;
}
static double app_messages_in(const struct worker_view *v, size_t i)
{
    return (double)v->apps[i].messages_in;
}
static double app_messages_out(const struct worker_view *v, size_t i)
{
    return (double)(v->apps[i].messages_out + v->apps[i].deliveries);
}
static double app_publishes(const struct worker_view *v, size_t i)
{
    return (double)v->apps[i].publishes;
}
static double app_deliveries(const struct worker_view *v, size_t i)
{
    return (double)v->apps[i].deliveries;
}
static double app_memory(const struct worker_view *v, size_t i) { return (double)v->memory[i]; }
static double app_timers(const struct worker_view *v, size_t i) { return (double)v->timers[i]; }
static double app_topics(const struct worker_view *v, size_t i) { return (double)v->topics[i]; }

void admin_write_metrics(const struct admin *a, struct mbuf *b)
{
    const struct worker *w = a->w;
    struct worker_figures each[CFG_MAX_WORKERS];
    struct worker_view *v = current_view(a, each);
    if (!v) {
        b->failed = true;
        return;
    }
    const struct counters *c = &v->counters;

    per_app(b, w, v, "moonwire_connections", "gauge",
            "Open WebSocket connections (app.open ran, app.close not yet).", app_connections);
    counter(b, "moonwire_connections_accepted_total", "TCP connections accepted.",
            (double)c->accepted);
    metrics_family(b, "moonwire_handshakes_refused_total", "counter",
                   "Connections refused before becoming a WebSocket, by reason.");
    for (int i = 0; i < CTR_REFUSALS; i++) {
        struct label l = { "reason", refusal_names[i] };
        metrics_sample(b, "moonwire_handshakes_refused_total", &l, 1, (double)c->refused[i]);
    }
    per_app(b, w, v, "moonwire_messages_received_total", "counter",
            "Messages handed to app.message.", app_messages_in);
    per_app(b, w, v, "moonwire_messages_sent_total", "counter",
            "Messages sent by the app (conn:send, and one per receiver of mw.publish).",
            app_messages_out);
    counter(b, "moonwire_bytes_received_total", "Bytes read from clients (after TLS).",
            (double)c->bytes_in);
    counter(b, "moonwire_bytes_sent_total", "Bytes written to clients (before TLS).",
            (double)c->bytes_out);

    metrics_family(b, "moonwire_closes_total", "counter",
                   "WebSocket connections ended, by the close code the app was told "
                   "(1006: the connection was lost without a close frame).");
    for (unsigned i = 0; i < CTR_CLOSE_CODES; i++) {
        char code[16];
        if (i == CTR_CLOSE_CODES - 1) snprintf(code, sizeof code, "other");
        else snprintf(code, sizeof code, "%u", CTR_CLOSE_FIRST + i);
        if (!c->closed[i] && i != 0 && i != 6) continue; /* 1000 and 1006 always show */
        struct label l = { "code", code };
        metrics_sample(b, "moonwire_closes_total", &l, 1, (double)c->closed[i]);
    }
    counter(b, "moonwire_slow_consumer_closes_total",
            "Connections closed with 1008 for not reading what they were sent.",
            (double)c->slow_consumer_closes);
    counter(b, "moonwire_backpressure_pauses_total",
            "Times reading from a client paused because its send queue was too long.",
            (double)c->backpressure_pauses);

    metrics_family(b, "moonwire_handler_seconds", "histogram",
                   "Time in Lua handlers, per call (per message for app.message).");
    for (size_t i = 0; i < v->napps; i++) {
        const struct lb_stats *s = &v->apps[i];
        for (int k = 0; k < LB_KINDS; k++) {
            if (!s->seconds[k].count && k != LB_KIND_MESSAGE) continue;
            struct label l[] = { { "app", lb_app_name(w->apps[i]) },
                                 { "handler", lb_kind_names[k] } };
            metrics_histogram(b, "moonwire_handler_seconds", l, 2, &s->seconds[k]);
        }
    }
    metrics_family(b, "moonwire_handler_failures_total", "counter",
                   "Handler calls that failed, by kind: error (raised), budget (instructions), "
                   "memory, time.");
    for (size_t i = 0; i < v->napps; i++) {
        const struct lb_stats *s = &v->apps[i];
        for (int k = 0; k < CTR_FAILURES; k++) {
            struct label l[] = { { "app", lb_app_name(w->apps[i]) }, { "kind", failure_names[k] } };
            metrics_sample(b, "moonwire_handler_failures_total", l, 2, (double)s->failures[k]);
        }
    }
    per_app(b, w, v, "moonwire_lua_memory_bytes", "gauge", "Bytes held by the app's Lua state.",
            app_memory);
    metrics_family(b, "moonwire_reloads_total", "counter", "Hot reloads, by result.");
    for (size_t i = 0; i < v->napps; i++) {
        const struct lb_stats *s = &v->apps[i];
        struct label ok[] = { { "app", lb_app_name(w->apps[i]) }, { "result", "ok" } };
        struct label bad[] = { { "app", lb_app_name(w->apps[i]) }, { "result", "failed" } };
        metrics_sample(b, "moonwire_reloads_total", ok, 2, (double)s->reloads_ok);
        metrics_sample(b, "moonwire_reloads_total", bad, 2, (double)s->reloads_failed);
    }
    per_app(b, w, v, "moonwire_timers", "gauge", "Pending mw.after and mw.every timers.",
            app_timers);
    per_app(b, w, v, "moonwire_publishes_total", "counter", "mw.publish calls.", app_publishes);
    per_app(b, w, v, "moonwire_deliveries_total", "counter",
            "Messages mw.publish queued to local subscribers.", app_deliveries);
    per_app(b, w, v, "moonwire_topics", "gauge", "Topics with at least one subscriber.",
            app_topics);
    gauge(b, "moonwire_send_queue_bytes", "Bytes queued for clients, not yet written.",
          (double)v->queued_bytes);
    if (w->cfg->redis.enabled) {
        /* The Redis engine, every worker together (docs/scaling.md). */
        struct rnode_stats rs;
        rnode_stats_read(&rs);
        gauge(b, "moonwire_redis_up", "1 when every connection to Redis of every worker is up.",
              rnode_all_up() ? 1 : 0);
        counter(b, "moonwire_redis_published_total", "Publishes sent to Redis.",
                (double)rs.published);
        counter(b, "moonwire_redis_publish_failures_total",
                "Publishes Redis did not take (down, timeout, error).", (double)rs.publish_failed);
        counter(b, "moonwire_redis_received_total",
                "Messages from other nodes delivered here (per worker that received one).",
                (double)rs.received);
        counter(b, "moonwire_redis_reconnects_total",
                "Connections to Redis lost (each is made again).", (double)rs.reconnects);
        counter(b, "moonwire_redis_resubscribes_total",
                "Subscriber connections that came back and subscribed their channels again.",
                (double)rs.resubscribes);
        counter(b, "moonwire_redis_probes_total",
                "Probes published on a quiet subscriber connection.", (double)rs.probes);
        counter(b, "moonwire_redis_gap_fills_total",
                "History publications missed on the wire and read back from the stream "
                "(reads).", (double)rs.gap_fills);
    }

    metrics_family(b, "moonwire_loop_lag_seconds", "histogram",
                   "How late the event loop ran a 100 ms timer: time the loop was busy.");
    metrics_histogram(b, "moonwire_loop_lag_seconds", NULL, 0, &v->loop_lag);
    if (w->group) {
        /* Each worker on its own: how evenly the kernel spreads connections, which loop lags. */
        size_t n = w->group->n;
        gauge(b, "moonwire_workers", "Worker threads, each with its own loop and apps.",
              (double)n);
        const char *names[] = { "moonwire_worker_connections", "moonwire_worker_accepted_total",
                                "moonwire_worker_loop_lag_max_seconds",
                                "moonwire_worker_queue_dropped_total" };
        const char *types[] = { "gauge", "counter", "gauge", "counter" };
        const char *helps[] = { "Open connections of one worker (not the admin listener's).",
                                "TCP connections one worker accepted.",
                                "The longest one worker's loop lagged since the dashboard's "
                                "last snapshot.",
                                "Publishes from other workers dropped for one worker: its "
                                "inbox was full." };
        for (int f = 0; f < 4; f++) {
            metrics_family(b, names[f], types[f], helps[f]);
            for (size_t i = 0; i < n; i++) {
                char id[24];
                snprintf(id, sizeof id, "%zu", i);
                struct label l = { "worker", id };
                double val = f == 0   ? (double)each[i].connections
                             : f == 1 ? (double)each[i].accepted
                             : f == 2 ? each[i].lag_max
                                      : (double)each[i].dropped;
                metrics_sample(b, names[f], &l, 1, val);
            }
        }
    }
    metrics_family(b, "moonwire_build_info", "gauge", "Always 1; the version is the label.");
    struct label version = { "version", MOONWIRE_VERSION };
    metrics_sample(b, "moonwire_build_info", &version, 1, 1);

    lb_write_app_metrics(w->apps, w->napps, b);

    struct process_stats p;
    read_process(a, v, &p);
    free(v);
    counter(b, "process_cpu_seconds_total", "User and system CPU time spent, in seconds.",
            p.cpu_seconds);
    gauge(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
          p.resident_bytes);
    gauge(b, "process_open_fds", "Number of open file descriptors.", p.open_fds);
    gauge(b, "process_max_fds", "Maximum number of open file descriptors.", p.max_fds);
    gauge(b, "process_start_time_seconds", "Start time of the process since the epoch, in "
          "seconds.", a->started);
}

/* ---- probes -------------------------------------------------------------------------------- */

struct check {
    const char *name;
    bool ok;
    const char *why;
};

/* Answers a probe: 200 "ok" when every check passed, else 503; ?verbose lists them
 * Kubernetes style ("[+]loop ok", "[-]draining failed: ..."). */
static void probe(struct conn_response *r, const struct check *checks, size_t n, bool verbose)
{
    bool all = true;
    struct mbuf b = { 0 };
    for (size_t i = 0; i < n; i++) {
        all = all && checks[i].ok;
        if (!verbose) continue;
        if (checks[i].ok) mb_printf(&b, "[+]%s ok\n", checks[i].name);
        else mb_printf(&b, "[-]%s failed: %s\n", checks[i].name, checks[i].why);
    }
    if (!verbose) mb_printf(&b, "%s\n", all ? "ok" : "not ok");
    else mb_printf(&b, "%s\n", all ? "ok: every check passed" : "not ok");
    r->status = all ? 200 : 503;
    r->body = b.data;
    r->body_len = b.len;
}

static void text(struct conn_response *r, int status, const char *msg);

static void livez(const struct admin *a, struct conn_response *r, bool verbose)
{
    struct worker_view *v = current_view(a, NULL);
    double silent = wall_now() - (v ? v->heartbeat : a->w->heartbeat);
    free(v);
    char why[96];
    snprintf(why, sizeof why, "the event loop has not turned for %.1f s", silent);
    struct check checks[] = { { "loop", silent < LIVENESS_SECONDS, why } };
    probe(r, checks, ARRAY_LEN(checks), verbose);
}

static void readyz(const struct admin *a, struct conn_response *r, bool verbose)
{
    const struct worker *w = a->w;
    struct worker_view *v = current_view(a, NULL);
    if (!v) {
        text(r, 503, "out of memory\n");
        return;
    }
    struct check checks[] = {
        { "apps", v->napps == w->cfg->napps, "not every app is loaded" },
        { "listeners", v->nlisteners > 0 || v->draining, "not listening" },
        { "draining", !v->draining, "the server is shutting down" },
        { "redis", !w->cfg->redis.enabled || rnode_all_up(),
          "a connection to Redis is down (publishes do not reach the other nodes)" },
    };
    free(v);
    probe(r, checks, ARRAY_LEN(checks), verbose);
}

/* ---- requests ------------------------------------------------------------------------------ */

/* Whether the request carries the token: "Authorization: Bearer TOKEN", or ?token=TOKEN (a
 * browser cannot give a WebSocket or a page load headers). Compared in constant time. */
static bool authorized(const struct admin *a, const struct http_request *req,
                       const struct hs_upgrade *up)
{
    const char *token = a->cfg->token;
    if (!token[0]) return true;
    size_t tlen = strlen(token);
    const char *v;
    size_t vlen;
    const char *given = NULL;
    size_t glen = 0;
    if (http_find_header(req, "Authorization", &v, &vlen) == 1 && vlen > 7 &&
        strncasecmp(v, "Bearer ", 7) == 0) {
        given = v + 7;
        glen = vlen - 7;
    } else {
        const char *q = up->query, *end = up->query + up->query_len;
        while (q && q < end) {
            const char *amp = memchr(q, '&', (size_t)(end - q));
            const char *stop = amp ? amp : end;
            if ((size_t)(stop - q) > 6 && memcmp(q, "token=", 6) == 0) {
                given = q + 6;
                glen = (size_t)(stop - q) - 6;
                break;
            }
            q = amp ? amp + 1 : end;
        }
    }
    if (!given || glen != tlen) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < tlen; i++) diff |= (unsigned char)(given[i] ^ token[i]);
    return diff == 0;
}

static bool path_is(const struct hs_upgrade *up, const char *p)
{
    return up->path_len == strlen(p) && memcmp(up->path, p, up->path_len) == 0;
}

static void text(struct conn_response *r, int status, const char *msg)
{
    r->status = status;
    r->body = strdup(msg);
    r->body_len = r->body ? strlen(r->body) : 0;
}

static int on_http(void *ctx, struct conn *c, const struct http_request *req,
                   const struct hs_upgrade *up, struct conn_response *r)
{
    (void)c;
    struct admin *a = ctx;
    if (!authorized(a, req, up)) {
        text(r, 401, "this admin listener needs its token: Authorization: Bearer TOKEN\n");
        r->headers = "WWW-Authenticate: Bearer realm=\"moonwire admin\"\r\n";
        return 0;
    }
    bool verbose = up->query_len >= 7 && memmem(up->query, up->query_len, "verbose", 7);
    if (path_is(up, "/metrics")) {
        struct mbuf b = { 0 };
        admin_write_metrics(a, &b);
        if (b.failed) {
            mb_free(&b);
            text(r, 503, "out of memory for the metrics\n");
            return 0;
        }
        r->status = 200;
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        r->body = b.data;
        r->body_len = b.len;
    } else if (path_is(up, "/livez")) {
        livez(a, r, verbose);
    } else if (path_is(up, "/readyz")) {
        readyz(a, r, verbose);
    } else if (path_is(up, "/")) {
        r->status = 200;
        r->content_type = "text/html; charset=utf-8";
        r->body = malloc(admin_dashboard_html_len);
        if (r->body) memcpy(r->body, admin_dashboard_html, admin_dashboard_html_len);
        r->body_len = r->body ? admin_dashboard_html_len : 0;
    } else {
        text(r, 404, "not found: the admin listener serves /, /metrics, /livez and /readyz\n");
    }
    return 0;
}

/* ---- the dashboard's feed ------------------------------------------------------------------ */

static void on_upgrade(void *ctx, struct conn *c, const struct http_request *req,
                       const struct hs_upgrade *up, struct conn_verdict *v)
{
    (void)c;
    struct admin *a = ctx;
    if (!authorized(a, req, up)) {
        v->status = 401;
        snprintf(v->reason, sizeof v->reason, "this admin listener needs its token (?token=)");
    } else if (!path_is(up, "/ws")) {
        v->status = 404;
        snprintf(v->reason, sizeof v->reason, "the dashboard's feed is at /ws");
    } else if (a->nviewers == ADMIN_MAX_VIEWERS) {
        v->status = 503;
        snprintf(v->reason, sizeof v->reason, "too many dashboards open (%d)", ADMIN_MAX_VIEWERS);
    }
}

static void send_snapshot(struct admin *a, struct conn *c);

static int on_open(void *ctx, struct conn *c)
{
    struct admin *a = ctx;
    a->viewers[a->nviewers++] = c;
    send_snapshot(a, c);
    return 0;
}

static int on_messages(void *ctx, struct conn *c, const struct conn_message *m, size_t n)
{
    (void)ctx;
    (void)c;
    (void)m;
    (void)n;
    return 0; /* the feed only speaks */
}

static void forget_viewer(struct admin *a, struct conn *c)
{
    for (size_t i = 0; i < a->nviewers; i++) {
        if (a->viewers[i] != c) continue;
        a->viewers[i] = a->viewers[--a->nviewers];
        return;
    }
}

static void on_ended(void *ctx, struct conn *c) { forget_viewer(ctx, c); }

static void on_close(void *ctx, struct conn *c, unsigned code, const char *reason, size_t len)
{
    (void)ctx;
    (void)c;
    (void)code;
    (void)reason;
    (void)len;
}

static void on_drain(void *ctx, struct conn *c)
{
    (void)ctx;
    (void)c;
}

static void on_gone(void *ctx, struct conn *c) { forget_viewer(ctx, c); }

static const struct conn_handler admin_handler = {
    .http = on_http, .upgrade = on_upgrade, .open = on_open, .messages = on_messages,
    .ended = on_ended, .close = on_close, .drain = on_drain, .gone = on_gone,
};

/* A JSON string: quotes, backslashes and control characters escaped. Text that is not valid
 * UTF-8 (an app may log any bytes) has its non-ASCII bytes replaced by '?': the snapshot goes
 * out as a WebSocket text message, which must be UTF-8. */
static void json_string(struct mbuf *b, const char *s, size_t len)
{
    bool valid = utf8_valid(s, len);
    mb_printf(b, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') mb_printf(b, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7F) mb_printf(b, "\\u%04x", ch);
        else mb_printf(b, "%c", valid || ch < 0x80 ? ch : '?');
    }
    mb_printf(b, "\"");
}

/* The p50 and p99 of what h observed since before (both then made equal). */
static void interval_quantiles(const struct histogram *h, struct histogram *before, double *p50,
                               double *p99)
{
    struct histogram d = *h;
    for (uint32_t i = 0; i <= d.nbounds; i++) d.buckets[i] -= before->buckets[i];
    d.count -= before->count;
    d.sum -= before->sum;
    *p50 = hist_quantile(&d, 0.5);
    *p99 = hist_quantile(&d, 0.99);
    *before = *h;
}

static void build_snapshot(struct admin *a, struct mbuf *b)
{
    const struct worker *w = a->w;
    struct worker_view *v = current_view(a, NULL);
    if (!v) {
        b->failed = true;
        return;
    }
    const struct counters *c = &v->counters;
    uint64_t refused = 0, failures = 0, connections = 0, in = 0, out = 0;
    for (int i = 0; i < CTR_REFUSALS; i++) refused += c->refused[i];
    for (int i = 0; i < CTR_FAILURES; i++) failures += c->handler_failures[i];
    /* The apps' messages: the loop's counters also count this feed's own snapshots. */
    for (size_t i = 0; i < v->napps; i++) {
        const struct lb_stats *s = &v->apps[i];
        connections += s->connections;
        in += s->messages_in;
        out += s->messages_out + s->deliveries;
    }
    double lag50, lag99;
    interval_quantiles(&v->loop_lag, &a->lag_before, &lag50, &lag99);
    /* Interpolating inside a bucket can overshoot what was seen: never past the worst. */
    if (lag99 > v->lag_max) lag99 = v->lag_max;
    if (lag50 > lag99) lag50 = lag99;
    mb_printf(b, "{\"type\":\"snapshot\",\"time\":%.3f,\"version\":\"%s\",\"started\":%.3f,"
              "\"draining\":%s,\"connections\":%llu,", wall_now(), MOONWIRE_VERSION, a->started,
              v->draining ? "true" : "false", (unsigned long long)connections);
    mb_printf(b, "\"totals\":{\"accepted\":%llu,\"opened\":%llu,\"messages_in\":%llu,"
              "\"messages_out\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"refused\":%llu,"
              "\"handler_failures\":%llu},", (unsigned long long)c->accepted,
              (unsigned long long)c->opened, (unsigned long long)in,
              (unsigned long long)out, (unsigned long long)c->bytes_in,
              (unsigned long long)c->bytes_out, (unsigned long long)refused,
              (unsigned long long)failures);
    mb_printf(b, "\"loop_lag\":{\"p50\":%.6f,\"p99\":%.6f,\"max\":%.6f},\"apps\":[", lag50,
              lag99, v->lag_max);
    for (size_t i = 0; i < v->napps; i++) {
        const struct lb_app *app = w->apps[i];
        const struct lb_stats *s = &v->apps[i];
        double p50, p99;
        interval_quantiles(&s->seconds[LB_KIND_MESSAGE], &a->handler_before[i], &p50, &p99);
        uint64_t fails = 0;
        for (int k = 0; k < CTR_FAILURES; k++) fails += s->failures[k];
        mb_printf(b, "%s{\"name\":", i ? "," : "");
        json_string(b, lb_app_name(app), strlen(lb_app_name(app)));
        mb_printf(b, ",\"path\":");
        json_string(b, w->cfg->apps[i].path, strlen(w->cfg->apps[i].path));
        mb_printf(b, ",\"connections\":%llu,\"messages_in\":%llu,\"messages_out\":%llu,"
                  "\"handler_p50\":%.6f,\"handler_p99\":%.6f,\"lua_memory\":%zu,"
                  "\"timers\":%zu,\"topics\":%zu,\"failures\":%llu,\"reloads\":%llu}",
                  (unsigned long long)s->connections, (unsigned long long)s->messages_in,
                  (unsigned long long)(s->messages_out + s->deliveries), p50, p99,
                  v->memory[i], v->timers[i], v->topics[i],
                  (unsigned long long)fails,
                  (unsigned long long)(s->reloads_ok + s->reloads_failed));
    }
    mb_printf(b, "],\"topics\":[");
    /* The busiest ten over every app, merged from each app's ten. */
    struct lb_topic_count best[10];
    const char *best_app[10];
    size_t nbest = 0;
    for (size_t i = 0; i < w->napps; i++) {
        struct lb_topic_count top[10];
        size_t n = lb_app_busiest_topics(w->apps[i], top, 10);
        for (size_t k = 0; k < n; k++) {
            size_t at = nbest < 10 ? nbest++ : 9;
            if (at == 9 && nbest == 10 && best[9].subscribers >= top[k].subscribers) continue;
            best[at] = top[k];
            best_app[at] = w->cfg->apps[i].path;
            for (; at > 0 && best[at].subscribers > best[at - 1].subscribers; at--) {
                struct lb_topic_count t = best[at];
                best[at] = best[at - 1];
                best[at - 1] = t;
                const char *p = best_app[at];
                best_app[at] = best_app[at - 1];
                best_app[at - 1] = p;
            }
        }
    }
    for (size_t k = 0; k < nbest; k++) {
        mb_printf(b, "%s{\"app\":", k ? "," : "");
        json_string(b, best_app[k], strlen(best_app[k]));
        mb_printf(b, ",\"topic\":");
        json_string(b, best[k].name, best[k].len);
        mb_printf(b, ",\"subscribers\":%zu}", best[k].subscribers);
    }
    mb_printf(b, "],\"events\":[");
    struct log_event ev[20];
    size_t nev = log_recent(ev, ARRAY_LEN(ev));
    for (size_t k = 0; k < nev; k++) {
        mb_printf(b, "%s{\"time\":%.3f,\"level\":\"%s\",\"text\":", k ? "," : "", ev[k].time,
                  log_level_name(ev[k].level));
        json_string(b, ev[k].text, strlen(ev[k].text));
        mb_printf(b, "}");
    }
    mb_printf(b, "]}");
    free(v);
}

static void send_snapshot(struct admin *a, struct conn *c)
{
    struct mbuf b = { 0 };
    build_snapshot(a, &b);
    if (!b.failed) conn_send_message(c, b.data, b.len, false);
    mb_free(&b);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct admin *a = container_of(t, struct admin, tick);
    if (!a->nviewers) return;
    struct mbuf b = { 0 };
    build_snapshot(a, &b);
    a->w->lag_max = 0;
    /* The copy: a send may end a viewer, which removes it from the list. */
    struct conn *viewers[ADMIN_MAX_VIEWERS];
    size_t n = a->nviewers;
    memcpy(viewers, a->viewers, n * sizeof *viewers);
    for (size_t i = 0; i < n && !b.failed; i++) conn_send_message(viewers[i], b.data, b.len, false);
    mb_free(&b);
}

int admin_start(struct admin *a, struct worker *w, const struct cfg_admin *cfg, double started,
                char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    a->w = w;
    a->cfg = cfg;
    a->started = started;
    hist_init(&a->lag_before, w->loop_lag.bounds, w->loop_lag.nbounds);
    for (size_t i = 0; i < CFG_MAX_APPS; i++)
        hist_init(&a->handler_before[i], hist_seconds_bounds, hist_seconds_nbounds);
    if (srv_listen_admin(&w->srv, cfg->host, cfg->port, &admin_handler, a, err, errlen) < 0)
        return -1;
    a->base_fds = count_fds() - (conn_count(&w->srv.conns) + w->srv.conns.files);
    ev_timer_init(&a->tick, on_tick, 1., 1.);
    ev_timer_start(w->loop, &a->tick);
    return 0;
}

void admin_stop(struct admin *a)
{
    if (a->w) ev_timer_stop(a->w->loop, &a->tick);
}
