/* An app's own metrics: see app_metrics.h. */
#include "app_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void am_init(struct am_registry *r, size_t max_series)
{
    memset(r, 0, sizeof *r);
    r->max_series = max_series;
}

static void free_series(struct am_series *s, size_t nlabels)
{
    for (size_t i = 0; i < nlabels; i++) free(s->values[i]);
    free(s->values);
    free(s);
}

static void free_metric(struct am_metric *m)
{
    while (m->series) {
        struct am_series *next = m->series->next;
        free_series(m->series, m->nlabels);
        m->series = next;
    }
    for (size_t i = 0; i < m->nlabels; i++) free(m->labels[i]);
    free(m->help);
    free(m);
}

void am_free(struct am_registry *r)
{
    for (size_t i = 0; i < r->count; i++) free_metric(r->metrics[i]);
    free(r->metrics);
    memset(r, 0, sizeof *r);
}

const char *am_error(int rc)
{
    switch (rc) {
    case AM_E_NAME: return "is not a valid name (letters, digits and _, not starting with a digit)";
    case AM_E_CONFLICT: return "exists already with another type, labels or buckets";
    case AM_E_BUCKETS: return "needs 1 to 24 buckets in increasing order";
    case AM_E_LABELS: return "was given the wrong number of label values";
    case AM_E_CAP: return "would pass the app's cap on series (label combinations)";
    case AM_E_NEGATIVE: return "is a counter, which only goes up";
    case AM_E_NOMEM: return "could not be stored (out of memory)";
    default: return "failed";
    }
}

static bool same_shape(const struct am_metric *m, enum am_type type, const char *const *labels,
                       size_t nlabels, const double *bounds, size_t nbounds)
{
    if (m->type != type || m->nlabels != nlabels) return false;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(m->labels[i], labels[i]) != 0) return false;
    if (type != AM_HISTOGRAM) return true;
    if (m->nbounds != nbounds) return false;
    for (size_t i = 0; i < nbounds; i++)
        if (m->bounds[i] != bounds[i]) return false;
    return true;
}

int am_define(struct am_registry *r, enum am_type type, const char *name, const char *help,
              const char *const *labels, size_t nlabels, const double *bounds, size_t nbounds)
{
    size_t len = strlen(name);
    /* Exported as moonwire_app_<name>: no colons (reserved for recording rules). */
    if (len == 0 || len >= AM_MAX_NAME || !metrics_valid_name(name, len, true) ||
        nlabels > AM_MAX_LABELS)
        return AM_E_NAME;
    for (size_t i = 0; i < nlabels; i++) {
        if (!metrics_valid_name(labels[i], strlen(labels[i]), true) ||
            strcmp(labels[i], "app") == 0 || strcmp(labels[i], "le") == 0)
            return AM_E_NAME;
        for (size_t k = 0; k < i; k++)
            if (strcmp(labels[k], labels[i]) == 0) return AM_E_NAME;
    }
    if (type == AM_HISTOGRAM) {
        if (nbounds == 0 || nbounds > HIST_MAX_BUCKETS) return AM_E_BUCKETS;
        for (size_t i = 1; i < nbounds; i++)
            if (!(bounds[i] > bounds[i - 1])) return AM_E_BUCKETS;
    }
    for (size_t i = 0; i < r->count; i++) {
        if (strcmp(r->metrics[i]->name, name) != 0) continue;
        return same_shape(r->metrics[i], type, labels, nlabels, bounds, nbounds)
                   ? (int)i
                   : AM_E_CONFLICT;
    }
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        struct am_metric **p = realloc(r->metrics, cap * sizeof *p);
        if (!p) return AM_E_NOMEM;
        r->metrics = p;
        r->cap = cap;
    }
    struct am_metric *m = calloc(1, sizeof *m);
    if (!m) return AM_E_NOMEM;
    memcpy(m->name, name, len + 1);
    m->type = type;
    m->help = strdup(help ? help : "");
    bool ok = m->help != NULL;
    for (size_t i = 0; i < nlabels && ok; i++) {
        m->labels[i] = strdup(labels[i]);
        ok = m->labels[i] != NULL;
        if (ok) m->nlabels = i + 1;
    }
    if (!ok) {
        free_metric(m);
        return AM_E_NOMEM;
    }
    for (size_t i = 0; i < nbounds && type == AM_HISTOGRAM; i++) m->bounds[i] = bounds[i];
    m->nbounds = type == AM_HISTOGRAM ? (uint32_t)nbounds : 0;
    r->metrics[r->count++] = m;
    return (int)(r->count - 1);
}

static struct am_series *find_series(struct am_metric *m, const char *const *values)
{
    for (struct am_series *s = m->series; s; s = s->next) {
        size_t i = 0;
        while (i < m->nlabels && strcmp(s->values[i], values[i]) == 0) i++;
        if (i == m->nlabels) return s;
    }
    return NULL;
}

/* The series of m with the label values given, made when missing (NULL: out of memory, or the
 * cap; *rc says which). */
static struct am_series *get_series(struct am_registry *r, struct am_metric *m,
                                    const char *const *values, int *rc)
{
    struct am_series *s = find_series(m, values);
    if (s) return s;
    *rc = AM_E_CAP;
    if (r->max_series && r->series >= r->max_series) return NULL;
    *rc = AM_E_NOMEM;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->values = calloc(m->nlabels ? m->nlabels : 1, sizeof *s->values);
    bool ok = s->values != NULL;
    for (size_t i = 0; ok && i < m->nlabels; i++) ok = (s->values[i] = strdup(values[i]));
    if (!ok) {
        if (s->values)
            for (size_t i = 0; i < m->nlabels; i++) free(s->values[i]);
        free(s->values);
        free(s);
        return NULL;
    }
    if (m->type == AM_HISTOGRAM) hist_init(&s->hist, m->bounds, m->nbounds);
    s->next = m->series;
    m->series = s;
    m->nseries++;
    r->series++;
    return s;
}

int am_update(struct am_registry *r, int index, const char *const *values, size_t nvalues,
              double v, bool set)
{
    struct am_metric *m = r->metrics[index];
    if (nvalues != m->nlabels) return AM_E_LABELS;
    if (m->type == AM_COUNTER && v < 0) return AM_E_NEGATIVE;
    int rc;
    struct am_series *s = get_series(r, m, values, &rc);
    if (!s) return rc;
    switch (m->type) {
    case AM_COUNTER: s->value += v; break;
    case AM_GAUGE: s->value = set ? v : s->value + v; break;
    case AM_HISTOGRAM: hist_observe(&s->hist, v, 1); break;
    }
    return 0;
}

int am_merge(struct am_registry *into, const struct am_registry *from)
{
    for (size_t i = 0; i < from->count; i++) {
        const struct am_metric *m = from->metrics[i];
        int index = am_define(into, m->type, m->name, m->help, (const char *const *)m->labels,
                              m->nlabels, m->bounds, m->nbounds);
        if (index == AM_E_NOMEM) return AM_E_NOMEM;
        if (index < 0) continue; /* another shape under the same name: left out */
        struct am_metric *d = into->metrics[index];
        /* Oldest first, so the merged series keep the order of the first registry. */
        const struct am_series *order[1024];
        size_t n = 0;
        for (const struct am_series *s = m->series; s && n < 1024; s = s->next) order[n++] = s;
        while (n--) {
            const struct am_series *s = order[n];
            int rc;
            struct am_series *t = get_series(into, d, (const char *const *)s->values, &rc);
            if (!t) return rc;
            if (m->type == AM_HISTOGRAM) hist_merge(&t->hist, &s->hist);
            else t->value += s->value;
        }
    }
    return 0;
}

static const char *const type_names[] = { "counter", "gauge", "histogram" };

static void write_series(const struct am_metric *m, const char *full, const char *app,
                         struct mbuf *b)
{
    /* Oldest first: the list is newest first, so walk it into an array. */
    const struct am_series *order[1024];
    size_t n = 0;
    for (const struct am_series *s = m->series; s && n < 1024; s = s->next) order[n++] = s;
    while (n--) {
        const struct am_series *s = order[n];
        struct label l[AM_MAX_LABELS + 1] = { { "app", app } };
        for (size_t i = 0; i < m->nlabels; i++)
            l[i + 1] = (struct label){ m->labels[i], s->values[i] };
        if (m->type == AM_HISTOGRAM) metrics_histogram(b, full, l, m->nlabels + 1, &s->hist);
        else metrics_sample(b, full, l, m->nlabels + 1, s->value);
    }
}

void am_write(struct am_registry *const *regs, const char *const *apps, size_t n,
              struct mbuf *b)
{
    for (size_t a = 0; a < n; a++) {
        for (size_t i = 0; i < regs[a]->count; i++) {
            const struct am_metric *m = regs[a]->metrics[i];
            /* Written with the first app that has the name. */
            bool seen = false;
            for (size_t e = 0; e < a && !seen; e++)
                for (size_t k = 0; k < regs[e]->count && !seen; k++)
                    seen = strcmp(regs[e]->metrics[k]->name, m->name) == 0;
            if (seen) continue;
            /* Counters are exported with _total, as the format's conventions want. */
            size_t len = strlen(m->name);
            bool add_total = m->type == AM_COUNTER &&
                             !(len > 6 && strcmp(m->name + len - 6, "_total") == 0);
            char full[AM_MAX_NAME + 32];
            snprintf(full, sizeof full, "moonwire_app_%.*s%s", AM_MAX_NAME, m->name,
                     add_total ? "_total" : "");
            metrics_family(b, full, type_names[m->type], m->help);
            write_series(m, full, apps[a], b);
            for (size_t e = a + 1; e < n; e++)
                for (size_t k = 0; k < regs[e]->count; k++) {
                    const struct am_metric *o = regs[e]->metrics[k];
                    if (strcmp(o->name, m->name) == 0 && o->type == m->type)
                        write_series(o, full, apps[e], b);
                }
        }
    }
}
