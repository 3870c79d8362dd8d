/* Metrics an app defines for itself (mw.metrics): counters, gauges and histograms with labels,
 * exported as moonwire_app_<name>{app="...", <labels>}.
 *
 * A registry per app holds them in C, outside the app's Lua state, so a hot reload finds them
 * again (defining a metric with the same name returns the one that exists) and their values
 * carry over. The number of series (label combinations) is capped per app, because every
 * series costs memory and scrape time for as long as the process lives, and an app that uses
 * a user id as a label value would otherwise grow without bound.
 *
 * Pure: no Lua, no I/O. */
#ifndef MOONWIRE_APP_METRICS_H
#define MOONWIRE_APP_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

#define AM_MAX_LABELS 8
#define AM_MAX_NAME 128

enum am_type { AM_COUNTER, AM_GAUGE, AM_HISTOGRAM };

struct am_series {
    struct am_series *next;
    char **values;           /* one per label */
    double value;            /* counter, gauge */
    struct histogram hist;   /* histogram */
};

struct am_metric {
    char name[AM_MAX_NAME];  /* as given: "rooms_joined" (exported with moonwire_app_) */
    char *help;
    enum am_type type;
    size_t nlabels;
    char *labels[AM_MAX_LABELS];
    double bounds[HIST_MAX_BUCKETS];
    uint32_t nbounds;
    struct am_series *series;
    size_t nseries;
};

struct am_registry {
    struct am_metric **metrics;
    size_t count;
    size_t cap;
    size_t series;           /* over every metric */
    size_t max_series;       /* the cap */
};

/* Results besides an index or 0. */
enum {
    AM_E_NAME = -1,      /* not a valid metric or label name */
    AM_E_CONFLICT = -2,  /* the name exists with another type, labels or buckets */
    AM_E_BUCKETS = -3,   /* buckets not increasing, or too many */
    AM_E_LABELS = -4,    /* wrong number of label values */
    AM_E_CAP = -5,       /* the app has max_series series already */
    AM_E_NEGATIVE = -6,  /* a counter can only go up */
    AM_E_NOMEM = -7,
};

void am_init(struct am_registry *r, size_t max_series);
void am_free(struct am_registry *r);

/* Finds or defines a metric. Returns its index (>= 0), or AM_E_NAME, AM_E_CONFLICT,
 * AM_E_BUCKETS or AM_E_NOMEM. bounds/nbounds: histograms only. Redefining with the same type,
 * labels (and buckets) returns the existing index; help may differ (the first is kept). */
int am_define(struct am_registry *r, enum am_type type, const char *name, const char *help,
              const char *const *labels, size_t nlabels, const double *bounds, size_t nbounds);

/* Adds delta (counter: >= 0) to, sets (gauge, set true), or observes v (histogram) in the
 * series of metric index with the label values given. Returns 0, or AM_E_LABELS, AM_E_CAP,
 * AM_E_NEGATIVE or AM_E_NOMEM. */
int am_update(struct am_registry *r, int index, const char *const *values, size_t nvalues,
              double v, bool set);

/* Adds every series of from to into (with max_series 0: no cap), defining what into lacks:
 * counters and gauges add up, histograms merge. A metric whose name into has with another shape
 * is left out. Returns 0, or AM_E_NOMEM (into then holds part of from). Several workers' copies
 * of an app are exported as one this way. */
int am_merge(struct am_registry *into, const struct am_registry *from);

/* A sentence for an AM_E_ result. */
const char *am_error(int rc);

/* Writes the metrics of every registry (one per app, named by apps[i]) into b, one family per
 * name: HELP and TYPE once, then every app's series. A registry whose metric has the name
 * with another type than the first one seen is left out of that family. */
void am_write(struct am_registry *const *regs, const char *const *apps, size_t n,
              struct mbuf *b);

#endif
