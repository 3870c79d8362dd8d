/* Histograms and the Prometheus text format: see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Powers of ten with 2.5 and 5 between them, 10 us to 10 s: handler calls live at the low end,
 * a stuck loop at the high end. */
const double hist_seconds_bounds[] = { 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3,
                                       2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3,
                                       500e-3, 1, 2.5, 5, 10 };
const uint32_t hist_seconds_nbounds = sizeof hist_seconds_bounds / sizeof hist_seconds_bounds[0];

void hist_init(struct histogram *h, const double *bounds, uint32_t nbounds)
{
    memset(h, 0, sizeof *h);
    h->bounds = bounds;
    h->nbounds = nbounds < HIST_MAX_BUCKETS ? nbounds : HIST_MAX_BUCKETS;
}

void hist_observe(struct histogram *h, double v, uint64_t n)
{
    uint32_t i = 0;
    while (i < h->nbounds && v > h->bounds[i]) i++;
    h->buckets[i] += n;
    h->count += n;
    h->sum += v * (double)n;
}

double hist_quantile(const struct histogram *h, double q)
{
    if (h->count == 0) return 0;
    double rank = q * (double)h->count;
    uint64_t seen = 0;
    for (uint32_t i = 0; i <= h->nbounds; i++) {
        uint64_t before = seen;
        seen += h->buckets[i];
        if ((double)seen < rank || h->buckets[i] == 0) continue;
        /* The +Inf bucket has no upper bound: report the highest finite one. */
        if (i == h->nbounds) return h->nbounds ? h->bounds[h->nbounds - 1] : 0;
        double lo = i ? h->bounds[i - 1] : 0, hi = h->bounds[i];
        return lo + (hi - lo) * (rank - (double)before) / (double)h->buckets[i];
    }
    return h->nbounds ? h->bounds[h->nbounds - 1] : 0;
}

void hist_merge(struct histogram *dst, const struct histogram *src)
{
    for (uint32_t i = 0; i <= dst->nbounds && i <= src->nbounds; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->sum += src->sum;
}

/* ---- the text buffer ----------------------------------------------------------------------- */

void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt,
                          ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->data && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

void mb_free(struct mbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- the exposition ------------------------------------------------------------------------ */

/* Writes s with the escapes of the format: in label values \\, \" and \n; in help text \\ and
 * \n (quote is false). */
static void put_escaped(struct mbuf *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\') mb_printf(b, "\\\\");
        else if (*p == '\n') mb_printf(b, "\\n");
        else if (*p == '"' && quote) mb_printf(b, "\\\"");
        else mb_printf(b, "%c", *p);
    }
}

void metrics_family(struct mbuf *b, const char *name, const char *type, const char *help)
{
    mb_printf(b, "# HELP %s ", name);
    put_escaped(b, help, false);
    mb_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void put_labels(struct mbuf *b, const struct label *labels, size_t n, const char *le)
{
    if (!n && !le) return;
    mb_printf(b, "{");
    for (size_t i = 0; i < n; i++) {
        mb_printf(b, "%s%s=\"", i ? "," : "", labels[i].name);
        put_escaped(b, labels[i].value, true);
        mb_printf(b, "\"");
    }
    if (le) mb_printf(b, "%sle=\"%s\"", n ? "," : "", le);
    mb_printf(b, "}");
}

/* Numbers as Prometheus reads them: integers plainly, others with full precision. */
static void put_value(struct mbuf *b, double v)
{
    if (isnan(v)) mb_printf(b, " NaN\n");
    else if (isinf(v)) mb_printf(b, v > 0 ? " +Inf\n" : " -Inf\n");
    else if (v == floor(v) && fabs(v) < 1e15) mb_printf(b, " %.0f\n", v);
    else mb_printf(b, " %.17g\n", v);
}

void metrics_sample(struct mbuf *b, const char *name, const struct label *labels, size_t nlabels,
                    double value)
{
    mb_printf(b, "%s", name);
    put_labels(b, labels, nlabels, NULL);
    put_value(b, value);
}

void metrics_histogram(struct mbuf *b, const char *name, const struct label *labels,
                       size_t nlabels, const struct histogram *h)
{
    uint64_t cumulative = 0;
    for (uint32_t i = 0; i <= h->nbounds; i++) {
        cumulative += h->buckets[i];
        char le[32];
        if (i == h->nbounds) snprintf(le, sizeof le, "+Inf");
        else snprintf(le, sizeof le, "%g", h->bounds[i]);
        mb_printf(b, "%s_bucket", name);
        put_labels(b, labels, nlabels, le);
        put_value(b, (double)cumulative);
    }
    mb_printf(b, "%s_sum", name);
    put_labels(b, labels, nlabels, NULL);
    put_value(b, h->sum);
    mb_printf(b, "%s_count", name);
    put_labels(b, labels, nlabels, NULL);
    put_value(b, (double)h->count);
}

bool metrics_valid_name(const char *name, size_t len, bool label)
{
    if (len == 0) return false;
    if (label && len >= 2 && name[0] == '_' && name[1] == '_') return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}
