/* Prometheus text exposition (version 0.0.4) and the two kinds of value the server keeps for it
 * besides plain counters: histograms with fixed buckets, and a growing text buffer to write a
 * scrape into.
 *
 * Pure: no I/O, no clock, no globals. Histograms are plain structs that one thread writes; a
 * scrape reads them (a value a few observations old is fine for monitoring). */
#ifndef MOONWIRE_METRICS_H
#define MOONWIRE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- histograms ---------------------------------------------------------------------------- */

#define HIST_MAX_BUCKETS 24

/* Upper bounds in increasing order (the +Inf bucket is implied), then the counts per bucket
 * (not cumulative: the exposition adds them up), their sum and count. */
struct histogram {
    const double *bounds;
    uint32_t nbounds;
    uint64_t buckets[HIST_MAX_BUCKETS + 1];
    uint64_t count;
    double sum;
};

/* Bucket bounds for durations, 10 us to 10 s (the handler and loop-lag histograms). */
extern const double hist_seconds_bounds[];
extern const uint32_t hist_seconds_nbounds;

/* Prepares h with bounds (nbounds <= HIST_MAX_BUCKETS, increasing; not copied: it must outlive
 * h). */
void hist_init(struct histogram *h, const double *bounds, uint32_t nbounds);

/* Records n observations of value v (n > 1: a batch of equal values, such as the average time
 * of each message of a batch). */
void hist_observe(struct histogram *h, double v, uint64_t n);

/* The value below which a fraction q (0..1) of the observations fall, interpolated within its
 * bucket as Prometheus' histogram_quantile does; 0 without observations. For the dashboard. */
double hist_quantile(const struct histogram *h, double q);

/* Adds src's observations to dst (same bounds): sums over workers. */
void hist_merge(struct histogram *dst, const struct histogram *src);

/* ---- the exposition ------------------------------------------------------------------------ */

/* A growing text buffer. Starts zeroed; failed is set (and writes stop) when out of memory. */
struct mbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
};

void mb_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mb_free(struct mbuf *b);

/* A label: name="value", the value escaped as the format requires (\\, \", \n). */
struct label {
    const char *name;
    const char *value;
};

/* Writes the # HELP and # TYPE lines of a family (type: "counter", "gauge", "histogram"). Help
 * text has backslashes and newlines escaped. */
void metrics_family(struct mbuf *b, const char *name, const char *type, const char *help);

/* Writes one sample: name{labels} value. Integral values print without a fraction. */
void metrics_sample(struct mbuf *b, const char *name, const struct label *labels, size_t nlabels,
                    double value);

/* Writes a histogram's series: name_bucket{labels,le="..."} (cumulative, ending with +Inf),
 * name_sum and name_count. */
void metrics_histogram(struct mbuf *b, const char *name, const struct label *labels,
                       size_t nlabels, const struct histogram *h);

/* True when name is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), or (label) a valid label
 * name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"). */
bool metrics_valid_name(const char *name, size_t len, bool label);

#endif
