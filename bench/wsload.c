/* wsload: moonwire's benchmark load generator. Three modes (echo, broadcast, connect) as the
 * benchmark contract defines them, each ending in one RESULT line; this file holds the modes,
 * their measurements and the command line. The connections and the event loop are in loop.c,
 * the payload format and its checks in payload.c, the latency histogram in histogram.c. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "loop.h"

#define DRAIN_NS (2 * NS_PER_S)  /* how long to wait for in-flight messages at the end */
#define SETTLE_NS (NS_PER_S / 5) /* connect: pause before reading the server's RSS */
#define READ_CHUNK (256 * 1024)
#define PUB_OUT_MAX (4u << 20)   /* publisher bytes queued before it stops adding more */

/* ---- messages by role ----------------------------------------------------------------------- */

/* Says why a message failed its check: rc is 1 for the wrong opcode, 0 when its header names
 * another connection (conn) or a sequence not sent yet (seq), else a PL_E_* code. Broadcast
 * messages pass conn = c->id: they name no connection. */
static void report_bad(struct run *r, const struct conn *c, int rc, unsigned op,
                       const uint8_t *p, size_t n, uint32_t conn, uint64_t seq)
{
    if (r->reported >= LOOP_MAX_REPORTED) return;
    bool bcast = c->role != ROLE_ECHO;
    if (rc == 1)
        loop_report(r, "connection %u: message with opcode %u, sent %u", c->id, op,
                    r->data_op);
    else if (rc == 0 && conn != c->id)
        loop_report(r, "connection %u: got connection %u's message (sequence %llu)", c->id, conn,
                    (unsigned long long)seq);
    else if (rc == 0)
        loop_report(r, "connection %u: sequence %llu was never sent", c->id,
                    (unsigned long long)seq);
    else
        loop_report(r, "connection %u: message expected as sequence %llu corrupt (%s, %zu "
                    "bytes, first bad byte %zu)", c->id, (unsigned long long)c->track.next,
                    pl_strerror(rc), n, pl_first_difference(&r->pat, p, n, bcast));
}

static void echo_send(struct run *r, struct conn *c)
{
    size_t size = r->o.size;
    uint8_t mask[4];
    loop_random_mask(r, mask);
    uint8_t *dst = loop_out_reserve(c, size + WSC_MAX_HEADER);
    size_t h = wsc_put_header(dst, r->data_op, true, size, mask);
    /* The header is a multiple of 4 bytes, so the body's mask phase starts over at 0. */
    pl_echo_header(dst + h, c->id, c->sent, mask);
    wsc_mask_copy(dst + h + PL_ECHO_HEADER, pl_body(&r->pat, c->id, c->sent),
                  size - PL_ECHO_HEADER, mask);
    c->out_len += h + size;
    c->sent++;
    r->outstanding++;
    loop_mark_dirty(r, c);
}

static void echo_message(struct run *r, struct conn *c, const uint8_t *p, size_t n, unsigned op,
                         int64_t now)
{
    uint32_t id = 0;
    uint64_t seq = 0;
    int rc = op == r->data_op ? pl_echo_check(&r->pat, p, n, r->o.size, &id, &seq) : 1;
    bool ok = rc == 0 && id == c->id && seq < c->sent;
    if (!ok) {
        r->corrupt++;
        report_bad(r, c, rc, op, p, n, id, seq);
        /* Count it in place of the one expected, so one bad message is one error, not also
         * a loss at the end. */
        seq = c->track.next;
    }
    switch (pl_seq_track(&c->track, seq)) {
    case PL_SEQ_DUPLICATE:
        r->duplicated++;
        loop_report(r, "connection %u: sequence %llu echoed twice", c->id,
                    (unsigned long long)seq);
        return;
    case PL_SEQ_LATE:
        r->reordered++;
        loop_report(r, "connection %u: sequence %llu echoed out of order", c->id,
                    (unsigned long long)seq);
        break;
    default:
        break;
    }
    r->outstanding--;
    if (r->measuring) {
        r->msgs++;
        r->bytes += n;
        if (ok && c->sent - seq <= r->ring_mask + 1)
            hist_record(r->hist, (uint64_t)(now - c->stamps[seq & r->ring_mask]));
    }
    if (r->sending) echo_send(r, c);
}

static void pub_send(struct run *r, struct conn *c)
{
    size_t size = r->o.size;
    uint8_t mask[4];
    loop_random_mask(r, mask);
    uint8_t *dst = loop_out_reserve(c, size + WSC_MAX_HEADER);
    size_t h = wsc_put_header(dst, r->data_op, true, size, mask);
    uint64_t t = (uint64_t)loop_now_ns();
    pl_bcast_header(dst + h, r->published, t, mask);
    wsc_mask_copy(dst + h + PL_BCAST_HEADER, pl_body(&r->pat, r->published, t),
                  size - PL_BCAST_HEADER, mask);
    c->out_len += h + size;
    r->published++;
    if (r->measuring) r->pub_measured++;
    loop_mark_dirty(r, c);
}

/* Publishes what is due: at --rate, what the clock says; with --window, enough to have that
 * many publishes in flight. */
static void pub_pump(struct run *r)
{
    struct conn *c = r->publisher;
    if (!r->sending || !c || c->state != CS_OPEN) return;
    uint64_t target;
    if (r->o.rate > 0)
        target = (uint64_t)((double)(loop_now_ns() - r->pub_t0) * r->o.rate / 1e9) + 1;
    else
        target = r->completed + r->o.window;
    while (r->published < target && c->out_len - c->out_off < PUB_OUT_MAX) pub_send(r, c);
}

/* A subscriber's or the publisher's copy of a publish. */
static void bcast_message(struct run *r, struct conn *c, const uint8_t *p, size_t n,
                          unsigned op, int64_t now)
{
    uint64_t seq = 0, sent_ns = 0;
    int rc = op == r->data_op ? pl_bcast_check(&r->pat, p, n, r->o.size, &seq, &sent_ns) : 1;
    bool ok = rc == 0 && seq < r->published;
    if (!ok) {
        r->corrupt++;
        report_bad(r, c, rc, op, p, n, c->id, seq);
        seq = c->track.next;
    }
    /* The publisher's own copies are checked too, but are not deliveries: what goes wrong
     * with them counts as an error, not as lost or duplicated. */
    bool pub = c->role == ROLE_PUB;
    int t = pl_seq_track(&c->track, seq);
    if (t == PL_SEQ_DUPLICATE) {
        if (pub) r->pub_errors++;
        else r->duplicated++;
        loop_report(r, "connection %u: sequence %llu delivered twice", c->id,
                    (unsigned long long)seq);
        return;
    }
    if (t == PL_SEQ_LATE) {
        if (pub) r->pub_errors++;
        else r->reordered++;
        loop_report(r, "connection %u: sequence %llu delivered out of order", c->id,
                    (unsigned long long)seq);
    }
    if (pub) {
        /* Completed: everything up to the newest copy back, so one lost publish shrinks
         * nothing and stalls nothing. */
        r->completed = c->track.next;
        return;
    }
    r->sub_unique++;
    if (r->measuring) {
        r->msgs++;
        r->bytes += n;
        if (ok) hist_record(r->hist, (uint64_t)(now - (int64_t)sent_ns));
    }
}

/* connect mode: data messages are not expected, only counted. */
static void idle_message(struct run *r, struct conn *c, const uint8_t *p, size_t n, unsigned op,
                         int64_t now)
{
    (void)c, (void)p, (void)n, (void)op, (void)now;
    r->unexpected++;
}

/* Runs the loop until `until`, or until done(r) is true when done is given. */
static void run_until(struct run *r, int64_t until, bool (*done)(struct run *))
{
    for (;;) {
        if (done && done(r)) return;
        int64_t now = loop_now_ns();
        if (now >= until) return;
        int64_t wake = until;
        if (r->sending && r->publisher && r->o.rate > 0) {
            /* The next publish is due when the clock passes published / rate. */
            int64_t due = r->pub_t0 + (int64_t)((double)r->published * 1e9 / r->o.rate);
            if (due < wake) wake = due;
        }
        loop_turn(r, wake - now);
    }
}

/* ---- measurement ---------------------------------------------------------------------------- */

/* CPU time this process used (user + system): gen_cpu is its growth over the wall time. */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

struct window {
    int64_t t0, t1;
    double cpu0, cpu1;
};

static void window_start(struct run *r, struct window *w)
{
    r->msgs = r->bytes = r->pub_measured = 0;
    hist_reset(r->hist);
    r->measuring = true;
    w->t0 = loop_now_ns();
    w->cpu0 = cpu_seconds();
}

static void window_end(struct run *r, struct window *w)
{
    r->measuring = false;
    w->t1 = loop_now_ns();
    w->cpu1 = cpu_seconds();
}

static double window_seconds(const struct window *w)
{
    return (double)(w->t1 - w->t0) / 1e9;
}

static double window_cpu(const struct window *w)
{
    double wall = window_seconds(w);
    return wall > 0 ? (w->cpu1 - w->cpu0) / wall : 0;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* Prints the latency line and appends the percentile keys to the RESULT line in res. */
static void latency_report(struct run *r, char *res, size_t cap)
{
    struct hist *h = r->hist;
    double p50 = us(hist_quantile(h, 0.50)), p90 = us(hist_quantile(h, 0.90));
    double p99 = us(hist_quantile(h, 0.99)), p999 = us(hist_quantile(h, 0.999));
    double max = us(h->max);
    if (!r->o.quiet)
        printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  "
               "(%llu samples)\n", p50, p90, p99, p999, max, (unsigned long long)h->total);
    size_t used = strlen(res);
    snprintf(res + used, cap - used,
             " p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f", p50, p90, p99,
             p999, max);
}

static void cpu_report(struct run *r, double cpu)
{
    if (r->o.quiet) return;
    printf("  generator cpu: %.2f of a core\n", cpu);
    if (cpu >= 0.90)
        printf("  GENERATOR-BOUND: wsload used %.0f%% of its core; this run measured the "
               "generator, not the server\n", cpu * 100);
}

static bool echo_drained(struct run *r)
{
    return r->outstanding == 0;
}

static bool bcast_drained(struct run *r)
{
    return r->sub_unique >= r->published * r->o.conns && r->completed >= r->published;
}

/* ---- modes ---------------------------------------------------------------------------------- */

static int run_echo(struct run *r)
{
    struct options *o = &r->o;
    if (!o->quiet)
        printf("wsload echo: %s, %u connections x %u in flight x %zu bytes %s, "
               "warm-up %.1f s, measured %.1f s\n", o->url, o->conns, o->depth, o->size,
               o->binary ? "binary" : "text", o->warmup, o->duration);
    int64_t t = loop_now_ns();
    uint32_t failed = loop_open_range(r, 0, r->nconns);
    if (!o->quiet)
        printf("  connected %u of %u in %.3f s\n", r->nconns - failed, r->nconns,
               (double)(loop_now_ns() - t) / 1e9);

    /* A run with connections missing measures something else: report it and stop. */
    struct window w = { 0 };
    if (!failed) {
        r->sending = true;
        for (uint32_t i = 0; i < r->nconns; i++)
            for (uint32_t d = 0; d < o->depth; d++) echo_send(r, &r->conns[i]);
        loop_flush(r);
        run_until(r, loop_now_ns() + (int64_t)(o->warmup * 1e9), NULL);
        window_start(r, &w);
        run_until(r, w.t0 + (int64_t)(o->duration * 1e9), NULL);
        window_end(r, &w);
        r->sending = false;
        run_until(r, loop_now_ns() + DRAIN_NS, echo_drained);
    }
    loop_close_all(r);

    uint64_t lost = 0;
    for (uint32_t i = 0; i < r->nconns; i++) lost += r->conns[i].sent - r->conns[i].track.unique;
    uint64_t errors = r->corrupt + r->duplicated + r->reordered + lost + r->conn_errors +
                      r->failed_open + r->close_failures;
    double secs = window_seconds(&w), cpu = window_cpu(&w);
    double rate = secs > 0 ? (double)r->msgs / secs : 0;
    double mbps = secs > 0 ? (double)r->bytes / secs / 1e6 : 0;
    if (!o->quiet) {
        printf("  echoed %llu messages in %.3f s: %.0f msgs/s, %.2f MB/s of payload echoed\n",
               (unsigned long long)r->msgs, secs, rate, mbps);
    }
    char res[512];
    snprintf(res, sizeof res, "RESULT mode=echo conns=%u depth=%u size=%zu binary=%d seconds=%.3f "
             "msgs=%llu msgs_per_sec=%.0f mbytes_per_sec=%.2f", o->conns, o->depth, o->size,
             o->binary, secs, (unsigned long long)r->msgs, rate, mbps);
    latency_report(r, res, sizeof res);
    if (!o->quiet)
        printf("  checks: %llu corrupt, %llu lost, %llu duplicated, %llu reordered, "
               "%llu failed opens, %llu connection errors, %llu unclean closes\n",
               (unsigned long long)r->corrupt, (unsigned long long)lost,
               (unsigned long long)r->duplicated, (unsigned long long)r->reordered,
               (unsigned long long)r->failed_open, (unsigned long long)r->conn_errors,
               (unsigned long long)r->close_failures);
    cpu_report(r, cpu);
    printf("%s errors=%llu gen_cpu=%.2f gen_bound=%d\n", res, (unsigned long long)errors, cpu,
           cpu >= 0.90);
    return errors ? 1 : 0;
}

static void parse_url(struct run *r, const char *url);

static int run_broadcast(struct run *r)
{
    struct options *o = &r->o;
    if (!o->quiet) {
        printf("wsload broadcast: %s, %u subscribers + 1 publisher, %zu bytes %s, ", o->url,
               o->conns, o->size, o->binary ? "binary" : "text");
        if (o->rate > 0) printf("%.0f publishes/s", o->rate);
        else printf("%u publishes in flight", o->window);
        printf(", warm-up %.1f s, measured %.1f s\n", o->warmup, o->duration);
    }
    /* Subscribers first: the server subscribes each on open, so once they are all open, every
     * publish reaches all of them. */
    int64_t t = loop_now_ns();
    uint32_t failed = loop_open_range(r, 0, o->conns);
    /* --publish-url: the publisher on another server (another node of a cluster). */
    if (o->publish_url) parse_url(r, o->publish_url);
    failed += loop_open_range(r, o->conns, o->conns + 1);
    if (!o->quiet)
        printf("  connected %u of %u in %.3f s\n", r->nconns - failed, r->nconns,
               (double)(loop_now_ns() - t) / 1e9);

    struct window w = { 0 };
    if (!failed) {
        r->publisher = &r->conns[o->conns];
        r->sending = true;
        r->pub_t0 = loop_now_ns();
        pub_pump(r);
        loop_flush(r);
        run_until(r, loop_now_ns() + (int64_t)(o->warmup * 1e9), NULL);
        window_start(r, &w);
        run_until(r, w.t0 + (int64_t)(o->duration * 1e9), NULL);
        window_end(r, &w);
        r->sending = false;
        run_until(r, loop_now_ns() + DRAIN_NS, bcast_drained);
    }
    loop_close_all(r);

    uint64_t lost = 0;
    for (uint32_t i = 0; i < o->conns; i++) {
        uint64_t got = r->conns[i].track.unique;
        lost += got < r->published ? r->published - got : 0;
    }
    struct conn *pc = &r->conns[o->conns];
    if (pc->track.unique < r->published) r->pub_errors += r->published - pc->track.unique;
    uint64_t errors = r->corrupt + r->reordered + r->pub_errors + r->conn_errors +
                      r->failed_open + r->close_failures;
    double secs = window_seconds(&w), cpu = window_cpu(&w);
    double rate = secs > 0 ? (double)r->msgs / secs : 0;
    if (!o->quiet)
        printf("  published %llu in %.3f s (%.0f/s); %llu deliveries: %.0f deliveries/s\n",
               (unsigned long long)r->pub_measured, secs,
               secs > 0 ? (double)r->pub_measured / secs : 0, (unsigned long long)r->msgs, rate);
    char res[512];
    snprintf(res, sizeof res, "RESULT mode=broadcast subscribers=%u size=%zu seconds=%.3f "
             "publishes=%llu deliveries=%llu deliveries_per_sec=%.0f", o->conns, o->size, secs,
             (unsigned long long)r->pub_measured, (unsigned long long)r->msgs, rate);
    latency_report(r, res, sizeof res);
    if (!o->quiet)
        printf("  checks: %llu lost, %llu duplicated, %llu reordered, %llu corrupt, "
               "%llu wrong publisher copies, %llu failed opens, %llu connection errors, "
               "%llu unclean closes\n",
               (unsigned long long)lost, (unsigned long long)r->duplicated,
               (unsigned long long)r->reordered, (unsigned long long)r->corrupt,
               (unsigned long long)r->pub_errors,
               (unsigned long long)r->failed_open, (unsigned long long)r->conn_errors,
               (unsigned long long)r->close_failures);
    cpu_report(r, cpu);
    printf("%s lost=%llu duplicated=%llu errors=%llu gen_cpu=%.2f gen_bound=%d\n", res,
           (unsigned long long)lost, (unsigned long long)r->duplicated,
           (unsigned long long)errors, cpu, cpu >= 0.90);
    return errors || lost || r->duplicated ? 1 : 0;
}

/* The server's resident set in kB, from /proc/PID/status; -1 when it cannot be read. */
static long read_rss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static int run_connect(struct run *r)
{
    struct options *o = &r->o;
    if (!o->quiet) {
        printf("wsload connect: %s, %u idle connections", o->url, o->conns);
        if (o->src_first) {
            struct in_addr a = { htonl(o->src_first) }, b = { htonl(o->src_last) };
            char sa[INET_ADDRSTRLEN], sb[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &a, sa, sizeof sa);
            inet_ntop(AF_INET, &b, sb, sizeof sb);
            printf(" from %s-%s", sa, sb);
        }
        printf(", held %.1f s\n", o->hold);
    }
    uint64_t rss_errors = 0;
    long before = 0, after = 0;
    if (o->server_pid && (before = read_rss_kb(o->server_pid)) < 0) {
        loop_report(r, "cannot read VmRSS of process %ld", o->server_pid);
        rss_errors++;
        before = 0;
    }
    struct window w;
    w.t0 = loop_now_ns();
    w.cpu0 = cpu_seconds();
    uint32_t failed = loop_open_range(r, 0, r->nconns);
    window_end(r, &w);
    run_until(r, loop_now_ns() + SETTLE_NS, NULL);
    if (o->server_pid && (after = read_rss_kb(o->server_pid)) < 0) {
        loop_report(r, "cannot read VmRSS of process %ld", o->server_pid);
        rss_errors++;
        after = 0;
    }
    uint32_t open = r->nconns - failed;
    double per_conn = open ? (double)(after - before) * 1024.0 / open : 0;
    double secs = window_seconds(&w), cpu = window_cpu(&w);
    if (!o->quiet) {
        printf("  connected %u of %u in %.3f s (%.0f/s)\n", open, r->nconns, secs,
               secs > 0 ? open / secs : 0);
        if (o->server_pid)
            printf("  server RSS: %ld kB before, %ld kB after: %.0f bytes per connection\n",
                   before, after, per_conn);
    }
    run_until(r, loop_now_ns() + (int64_t)(o->hold * 1e9), NULL);
    loop_close_all(r);
    uint64_t errors = r->failed_open + r->conn_errors + r->close_failures + rss_errors;
    if (!o->quiet)
        printf("  checks: %llu failed opens, %llu connection errors, %llu unclean closes, "
               "%llu unexpected messages, %llu pings answered\n",
               (unsigned long long)r->failed_open, (unsigned long long)r->conn_errors,
               (unsigned long long)r->close_failures, (unsigned long long)r->unexpected,
               (unsigned long long)r->pings);
    cpu_report(r, cpu);
    printf("RESULT mode=connect conns=%u seconds=%.3f rss_before_kb=%ld rss_after_kb=%ld "
           "rss_per_conn_bytes=%.0f errors=%llu gen_cpu=%.2f gen_bound=%d\n", o->conns, secs,
           before, after, per_conn, (unsigned long long)errors, cpu, cpu >= 0.90);
    return errors ? 1 : 0;
}

/* ---- command line --------------------------------------------------------------------------- */

static const char usage_text[] =
    "usage:\n"
    "  wsload echo      --url ws://HOST:PORT/PATH [--conns N] [--depth D] [--size BYTES]\n"
    "                   [--binary] [--warmup SECONDS] [--duration SECONDS]\n"
    "  wsload broadcast --url URL [--subscribers N] [--size BYTES] [--binary]\n"
    "                   [--rate MSGS_PER_SEC | --window W] [--warmup SECONDS]\n"
    "                   [--duration SECONDS] [--publish-url URL (the publisher's server)]\n"
    "  wsload connect   --url URL [--conns N] [--sources A.B.C.D-A.B.C.E] [--server-pid PID]\n"
    "                   [--hold SECONDS]\n"
    "  common: [--cpu N] (pin to CPU N)  [--quiet] (only the RESULT line)\n"
    "\n"
    "defaults: echo 100 connections x 16 in flight x 32 bytes, text; broadcast 100 subscribers,\n"
    "32 bytes, window 16; warm-up 1 s, duration 5 s; connect 1000 connections, hold 1 s.\n"
    "Sizes take a K or M suffix (KiB, MiB); echo needs >= 12 bytes, broadcast >= 20.\n"
    "Exit status: 0 success, 1 errors (or lost/duplicated messages), 2 usage error.\n";

static void usage_error(const char *fmt, const char *arg)
{
    fputs("wsload: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n", stderr);
    fputs(usage_text, stderr);
    exit(2);
}

static uint64_t parse_count(const char *s, const char *opt, uint64_t min, uint64_t max,
                            bool suffix)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    unsigned shift = 0;
    if (suffix && (*end == 'K' || *end == 'k')) shift = 10, end++;
    else if (suffix && (*end == 'M' || *end == 'm')) shift = 20, end++;
    if (errno || end == s || *end || s[0] == '-' || v > (max >> shift) || v << shift < min)
        usage_error("bad value for %s", opt);
    return v << shift;
}

static double parse_seconds(const char *s, const char *opt, double min)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= min) || v > 1e7) usage_error("bad value for %s", opt);
    return v;
}

static uint32_t parse_ipv4(const char *s, size_t n)
{
    char buf[INET_ADDRSTRLEN];
    struct in_addr a;
    if (n >= sizeof buf) usage_error("bad address in --sources: %s", s);
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, &a) != 1) usage_error("bad address in --sources: %s", s);
    return ntohl(a.s_addr);
}

/* Splits ws://host[:port][/path] into the run's address, Host field and path. */
static void parse_url(struct run *r, const char *url)
{
    if (strncmp(url, "ws://", 5) != 0)
        usage_error("--url must start with ws:// (wss:// is not supported): %s", url);
    const char *h = url + 5, *slash = strchr(h, '/');
    size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
    if (hlen == 0 || hlen >= sizeof r->host) usage_error("bad host in --url %s", url);
    memcpy(r->host, h, hlen);
    r->host[hlen] = '\0';
    snprintf(r->path, sizeof r->path, "%s", slash ? slash : "/");

    char name[280], port[16] = "80";
    const char *colon;
    if (r->host[0] == '[') {
        const char *close = strchr(r->host, ']');
        if (!close) usage_error("bad host in --url %s", url);
        snprintf(name, sizeof name, "%.*s", (int)(close - r->host - 1), r->host + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = strrchr(r->host, ':');
        snprintf(name, sizeof name, "%.*s", (int)(colon ? colon - r->host : (long)hlen), r->host);
    }
    if (colon) snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(name, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "wsload: cannot resolve %s port %s: %s\n", name, port, gai_strerror(rc));
        exit(2);
    }
    memcpy(&r->addr, ai->ai_addr, ai->ai_addrlen);
    r->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
}

enum { OPT_URL = 256, OPT_CONNS, OPT_DEPTH, OPT_SIZE, OPT_BINARY, OPT_WARMUP, OPT_DURATION,
       OPT_SUBS, OPT_RATE, OPT_WINDOW, OPT_SOURCES, OPT_PID, OPT_HOLD, OPT_CPU, OPT_QUIET,
       OPT_PUB_URL };

/* Which modes each option applies to (bit per mode), so a misplaced option is an error. */
#define M_E (1 << MODE_ECHO)
#define M_B (1 << MODE_BROADCAST)
#define M_C (1 << MODE_CONNECT)

static void parse_args(struct run *r, int argc, char **argv)
{
    static const struct option longopts[] = {
        { "url", required_argument, NULL, OPT_URL },
        { "conns", required_argument, NULL, OPT_CONNS },
        { "depth", required_argument, NULL, OPT_DEPTH },
        { "size", required_argument, NULL, OPT_SIZE },
        { "binary", no_argument, NULL, OPT_BINARY },
        { "warmup", required_argument, NULL, OPT_WARMUP },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "subscribers", required_argument, NULL, OPT_SUBS },
        { "rate", required_argument, NULL, OPT_RATE },
        { "window", required_argument, NULL, OPT_WINDOW },
        { "sources", required_argument, NULL, OPT_SOURCES },
        { "server-pid", required_argument, NULL, OPT_PID },
        { "hold", required_argument, NULL, OPT_HOLD },
        { "cpu", required_argument, NULL, OPT_CPU },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "publish-url", required_argument, NULL, OPT_PUB_URL },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    static const int applies[] = {
        [OPT_URL - OPT_URL] = M_E | M_B | M_C, [OPT_CONNS - OPT_URL] = M_E | M_C,
        [OPT_DEPTH - OPT_URL] = M_E, [OPT_SIZE - OPT_URL] = M_E | M_B,
        [OPT_BINARY - OPT_URL] = M_E | M_B, [OPT_WARMUP - OPT_URL] = M_E | M_B,
        [OPT_DURATION - OPT_URL] = M_E | M_B, [OPT_SUBS - OPT_URL] = M_B,
        [OPT_RATE - OPT_URL] = M_B, [OPT_WINDOW - OPT_URL] = M_B,
        [OPT_SOURCES - OPT_URL] = M_C, [OPT_PID - OPT_URL] = M_C, [OPT_HOLD - OPT_URL] = M_C,
        [OPT_CPU - OPT_URL] = M_E | M_B | M_C, [OPT_QUIET - OPT_URL] = M_E | M_B | M_C,
        [OPT_PUB_URL - OPT_URL] = M_B,
    };
    struct options *o = &r->o;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        exit(argc < 2 ? 2 : 0);
    }
    if (!strcmp(argv[1], "echo")) o->mode = MODE_ECHO;
    else if (!strcmp(argv[1], "broadcast")) o->mode = MODE_BROADCAST;
    else if (!strcmp(argv[1], "connect")) o->mode = MODE_CONNECT;
    else usage_error("unknown mode %s (echo, broadcast or connect)", argv[1]);

    o->conns = o->mode == MODE_CONNECT ? 1000 : 100;
    o->depth = 16;
    o->size = 32;
    o->warmup = 1;
    o->duration = 5;
    o->hold = 1;
    o->cpu = -1;
    bool window_set = false;
    int opt;
    optind = 2;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            exit(0);
        }
        if (opt < OPT_URL) usage_error("%s", "bad option");
        if (!(applies[opt - OPT_URL] & (1 << o->mode)))
            usage_error("option --%s does not apply to this mode", longopts[opt - OPT_URL].name);
        switch (opt) {
        case OPT_URL: o->url = optarg; break;
        case OPT_CONNS:
        case OPT_SUBS:
            o->conns = (uint32_t)parse_count(optarg, "--conns/--subscribers", 1, PL_MAX_CONN_ID,
                                             false);
            break;
        case OPT_DEPTH: o->depth = (uint32_t)parse_count(optarg, "--depth", 1, 1 << 20, false);
            break;
        case OPT_SIZE: o->size = parse_count(optarg, "--size", 1, 256u << 20, true); break;
        case OPT_BINARY: o->binary = true; break;
        case OPT_WARMUP: o->warmup = parse_seconds(optarg, "--warmup", 0); break;
        case OPT_DURATION: o->duration = parse_seconds(optarg, "--duration", 0.001); break;
        case OPT_HOLD: o->hold = parse_seconds(optarg, "--hold", 0); break;
        case OPT_RATE: o->rate = parse_seconds(optarg, "--rate", 0.001); break;
        case OPT_WINDOW:
            o->window = (uint32_t)parse_count(optarg, "--window", 1, 1 << 20, false);
            window_set = true;
            break;
        case OPT_PID: o->server_pid = (long)parse_count(optarg, "--server-pid", 1, 1 << 30, false);
            break;
        case OPT_CPU: o->cpu = (int)parse_count(optarg, "--cpu", 0, CPU_SETSIZE - 1, false); break;
        case OPT_QUIET: o->quiet = true; break;
        case OPT_PUB_URL: o->publish_url = optarg; break;
        case OPT_SOURCES: {
            const char *dash = strchr(optarg, '-');
            o->src_first = parse_ipv4(optarg, dash ? (size_t)(dash - optarg) : strlen(optarg));
            o->src_last = dash ? parse_ipv4(dash + 1, strlen(dash + 1)) : o->src_first;
            if (o->src_first == 0 || o->src_last < o->src_first)
                usage_error("bad --sources range %s", optarg);
            break;
        }
        }
    }
    if (optind < argc) usage_error("unexpected argument %s", argv[optind]);
    if (!o->url) usage_error("%s", "--url is required");
    if (o->rate > 0 && window_set) usage_error("%s", "--rate and --window exclude each other");
    if (o->mode == MODE_BROADCAST && !window_set && o->rate == 0) o->window = 16;
    if (o->mode == MODE_ECHO && o->size < PL_ECHO_HEADER)
        usage_error("%s", "echo needs --size >= 12 (the header naming connection and sequence)");
    if (o->mode == MODE_BROADCAST && o->size < PL_BCAST_HEADER)
        usage_error("%s", "broadcast needs --size >= 20 (the header with sequence and time)");
    if (o->mode == MODE_CONNECT) o->size = 0;
    /* Round robin over the sources: each address carries conns / span connections, and the
     * kernel has fewer than 50,000 ephemeral ports per address and destination. */
    if (o->src_first && o->conns / (o->src_last - o->src_first + 1) >= 50000)
        usage_error("%s", "--sources: too few addresses for --conns (50,000 per address at most)");
}

/* ---- main ----------------------------------------------------------------------------------- */

/* Every connection is a descriptor: take what the hard limit allows. */
static void raise_fd_limit(uint32_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < (rlim_t)need + 32) {
        fprintf(stderr, "wsload: %u connections need %u file descriptors, the limit is %llu "
                "(raise ulimit -n)\n", need, need + 32, (unsigned long long)rl.rlim_cur);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    static struct run run;
    struct run *r = &run;
    parse_args(r, argc, argv);
    struct options *o = &r->o;
    parse_url(r, o->url);
    if (o->src_first && r->addr.ss_family != AF_INET)
        usage_error("%s", "--sources needs an IPv4 server address");

    if (o->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((size_t)o->cpu, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) {
            fprintf(stderr, "wsload: cannot pin to CPU %d: %s\n", o->cpu, strerror(errno));
            exit(2);
        }
    }
    signal(SIGPIPE, SIG_IGN);

    r->nconns = o->conns + (o->mode == MODE_BROADCAST);
    raise_fd_limit(r->nconns);
    r->data_op = o->binary ? WSC_OP_BINARY : WSC_OP_TEXT;
    /* Frames bigger than anything we send are refused; control frames (125) always fit. */
    r->max_payload = o->size > 65536 ? o->size : 65536;
    r->rbuf_cap = 2 * (r->max_payload + WSC_MAX_HEADER);
    if (r->rbuf_cap < READ_CHUNK) r->rbuf_cap = READ_CHUNK;
    r->rbuf = loop_xrealloc(NULL, r->rbuf_cap);
    r->conns = calloc(r->nconns, sizeof *r->conns);
    r->dirty = calloc(r->nconns, sizeof *r->dirty);
    r->hist = loop_xrealloc(NULL, sizeof *r->hist);
    if (!r->conns || !r->dirty) loop_die("out of memory");
    hist_reset(r->hist);
    size_t header = o->mode == MODE_BROADCAST ? PL_BCAST_HEADER : PL_ECHO_HEADER;
    if (pl_pattern_init(&r->pat, o->size > header ? o->size - header : 0, o->binary) < 0)
        loop_die("out of memory");
    if (RAND_bytes((unsigned char *)&r->rng, sizeof r->rng) != 1 || !r->rng)
        r->rng = 88172645463325252u; /* xorshift must not start at 0 */

    uint64_t ring = 1;
    while (o->mode == MODE_ECHO && ring < o->depth) ring <<= 1;
    r->ring_mask = ring - 1;
    int64_t *stamps = NULL;
    if (o->mode == MODE_ECHO)
        stamps = loop_xrealloc(NULL, (size_t)ring * r->nconns * sizeof *stamps);
    for (uint32_t i = 0; i < r->nconns; i++) {
        struct conn *c = &r->conns[i];
        c->id = i;
        c->fd = -1;
        c->role = o->mode == MODE_ECHO ? ROLE_ECHO : o->mode == MODE_CONNECT ? ROLE_IDLE
                  : i < o->conns ? ROLE_SUB : ROLE_PUB;
        if (stamps) c->stamps = stamps + (size_t)ring * i;
    }
    r->on_message = o->mode == MODE_ECHO ? echo_message
                    : o->mode == MODE_BROADCAST ? bcast_message : idle_message;
    r->on_turn = o->mode == MODE_BROADCAST ? pub_pump : NULL;
    r->ep = epoll_create1(EPOLL_CLOEXEC);
    if (r->ep < 0) loop_die("epoll_create1 failed");

    fflush(stdout);
    int rc = o->mode == MODE_ECHO ? run_echo(r) : o->mode == MODE_BROADCAST ? run_broadcast(r)
             : run_connect(r);
    fflush(stdout);
    return rc;
}
