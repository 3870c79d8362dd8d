/* Tests for the Prometheus exposition and histograms (core/metrics.h): bucket placement at and
 * between bounds, cumulative buckets ending in +Inf equal to _count, quantiles, label escaping,
 * number formatting and name validation, as tables of labelled cases. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "metrics.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const double bounds[] = { 0.1, 1, 10 };

struct place_case {
    const char *label;
    double v;
    uint32_t bucket; /* index: 3 is +Inf */
};

static const struct place_case places[] = {
    { "below the first bound", 0.05, 0 },
    { "exactly on a bound (le is inclusive)", 0.1, 0 },
    { "between bounds", 0.5, 1 },
    { "on the last bound", 10, 2 },
    { "past every bound", 11, 3 },
    { "zero", 0, 0 },
};

Test(metrics, observations_land_in_their_bucket)
{
    for (size_t i = 0; i < N(places); i++) {
        struct histogram h;
        hist_init(&h, bounds, 3);
        hist_observe(&h, places[i].v, 2);
        for (uint32_t k = 0; k <= 3; k++)
            cr_expect_eq(h.buckets[k], k == places[i].bucket ? 2u : 0u, "%s: bucket %u",
                         places[i].label, k);
        cr_expect_eq(h.count, 2, "%s", places[i].label);
        cr_expect_float_eq(h.sum, 2 * places[i].v, 1e-12, "%s", places[i].label);
    }
}

Test(metrics, histogram_exposition_is_cumulative_and_ends_at_inf)
{
    struct histogram h;
    hist_init(&h, bounds, 3);
    hist_observe(&h, 0.05, 1);
    hist_observe(&h, 0.5, 2);
    hist_observe(&h, 50, 1);
    struct mbuf b = { 0 };
    struct label l[] = { { "app", "chat" } };
    metrics_histogram(&b, "x_seconds", l, 1, &h);
    cr_assert(!b.failed);
    const char *want = "x_seconds_bucket{app=\"chat\",le=\"0.1\"} 1\n"
                       "x_seconds_bucket{app=\"chat\",le=\"1\"} 3\n"
                       "x_seconds_bucket{app=\"chat\",le=\"10\"} 3\n"
                       "x_seconds_bucket{app=\"chat\",le=\"+Inf\"} 4\n"
                       "x_seconds_sum{app=\"chat\"} 51.049999999999997\n"
                       "x_seconds_count{app=\"chat\"} 4\n";
    cr_expect_str_eq(b.data, want);
    mb_free(&b);
}

Test(metrics, quantiles_interpolate_within_a_bucket)
{
    struct histogram h;
    hist_init(&h, bounds, 3);
    cr_expect_float_eq(hist_quantile(&h, 0.5), 0, 1e-12, "no observations");
    hist_observe(&h, 0.5, 100); /* all in (0.1, 1] */
    cr_expect_float_eq(hist_quantile(&h, 0.5), 0.55, 1e-9);
    cr_expect_float_eq(hist_quantile(&h, 1), 1, 1e-9);
    hist_observe(&h, 100, 100); /* +Inf bucket: reported as the highest bound */
    cr_expect_float_eq(hist_quantile(&h, 0.99), 10, 1e-9);
    struct histogram m;
    hist_init(&m, bounds, 3);
    hist_merge(&m, &h);
    hist_merge(&m, &h);
    cr_expect_eq(m.count, 400);
    cr_expect_eq(m.buckets[1], 200);
}

struct sample_case {
    const char *label;
    double value;
    const char *value_text;
    const char *label_value;
    const char *label_text;
};

static const struct sample_case samples[] = {
    { "an integer", 42, "42", "a", "a" },
    { "a fraction", 0.25, "0.25", "a", "a" },
    { "a large count", 12345678901234.0, "12345678901234", "a", "a" },
    { "infinity", INFINITY, "+Inf", "a", "a" },
    { "a quote and a backslash", 1, "1", "say \"hi\" \\o/", "say \\\"hi\\\" \\\\o/" },
    { "a newline", 1, "1", "two\nlines", "two\\nlines" },
};

Test(metrics, samples_format_values_and_escape_labels)
{
    for (size_t i = 0; i < N(samples); i++) {
        struct mbuf b = { 0 };
        struct label l[] = { { "k", samples[i].label_value } };
        metrics_sample(&b, "m", l, 1, samples[i].value);
        char want[256];
        snprintf(want, sizeof want, "m{k=\"%s\"} %s\n", samples[i].label_text,
                 samples[i].value_text);
        cr_expect_str_eq(b.data, want, "%s", samples[i].label);
        mb_free(&b);
    }
    struct mbuf b = { 0 };
    metrics_sample(&b, "bare", NULL, 0, 3);
    cr_expect_str_eq(b.data, "bare 3\n", "no labels: no braces");
    mb_free(&b);
}

Test(metrics, family_lines_escape_help)
{
    struct mbuf b = { 0 };
    metrics_family(&b, "m_total", "counter", "a \\ b\nc");
    cr_expect_str_eq(b.data, "# HELP m_total a \\\\ b\\nc\n# TYPE m_total counter\n");
    mb_free(&b);
}

Test(metrics, the_buffer_grows_past_its_first_allocation)
{
    struct mbuf b = { 0 };
    for (int i = 0; i < 2000; i++) metrics_sample(&b, "m", NULL, 0, i);
    cr_assert(!b.failed);
    cr_expect_gt(b.cap, 4096u);
    cr_expect(strncmp(b.data + b.len - 7, "m 1999\n", 7) == 0);
    mb_free(&b);
}

struct name_case {
    const char *name;
    bool label;
    bool valid;
};

static const struct name_case names[] = {
    { "requests_total", false, true },
    { "ns:requests", false, true },
    { "_private", false, true },
    { "9lives", false, false },
    { "", false, false },
    { "has space", false, false },
    { "dash-ed", false, false },
    { "room", true, true },
    { "ns:room", true, false },
    { "__reserved", true, false },
    { "r2", true, true },
};

Test(metrics, names_are_validated)
{
    for (size_t i = 0; i < N(names); i++)
        cr_expect_eq(metrics_valid_name(names[i].name, strlen(names[i].name), names[i].label),
                     names[i].valid, "'%s' as a %s name", names[i].name,
                     names[i].label ? "label" : "metric");
}

/* ---- an app's own metrics (core/app_metrics.h) ----------------------------------------------- */

#include "app_metrics.h"

Test(app_metrics, define_returns_the_same_metric_or_says_why_not)
{
    struct am_registry r;
    am_init(&r, 1000);
    const char *room[] = { "room" };
    const char *two[] = { "room", "kind" };
    const double b1[] = { 1, 2 }, b2[] = { 1, 3 }, bad[] = { 2, 1 };
    int c = am_define(&r, AM_COUNTER, "joins", "rooms joined", room, 1, NULL, 0);
    cr_assert_geq(c, 0);
    cr_expect_eq(am_define(&r, AM_COUNTER, "joins", "other help", room, 1, NULL, 0), c,
                 "same name and shape: the same metric (a reload finds it)");
    cr_expect_eq(am_define(&r, AM_GAUGE, "joins", "", room, 1, NULL, 0), AM_E_CONFLICT);
    cr_expect_eq(am_define(&r, AM_COUNTER, "joins", "", two, 2, NULL, 0), AM_E_CONFLICT);
    int h = am_define(&r, AM_HISTOGRAM, "tick_seconds", "", NULL, 0, b1, 2);
    cr_assert_geq(h, 0);
    cr_expect_eq(am_define(&r, AM_HISTOGRAM, "tick_seconds", "", NULL, 0, b2, 2), AM_E_CONFLICT);
    cr_expect_eq(am_define(&r, AM_HISTOGRAM, "x", "", NULL, 0, bad, 2), AM_E_BUCKETS);
    cr_expect_eq(am_define(&r, AM_HISTOGRAM, "x", "", NULL, 0, b1, 0), AM_E_BUCKETS);
    static const char *const bad_names[] = { "", "9x", "a-b", "a:b", "__x" };
    for (size_t i = 0; i < N(bad_names); i++)
        cr_expect_eq(am_define(&r, AM_GAUGE, bad_names[i], "", NULL, 0, NULL, 0), AM_E_NAME,
                     "'%s'", bad_names[i]);
    const char *reserved[] = { "app" };
    cr_expect_eq(am_define(&r, AM_GAUGE, "g", "", reserved, 1, NULL, 0), AM_E_NAME,
                 "the app label is the server's");
    am_free(&r);
}

Test(app_metrics, updates_check_labels_sign_and_the_series_cap)
{
    struct am_registry r;
    am_init(&r, 3);
    const char *room[] = { "room" };
    int c = am_define(&r, AM_COUNTER, "joins", "", room, 1, NULL, 0);
    const char *a[] = { "a" }, *b[] = { "b" }, *cc[] = { "c" }, *d[] = { "d" };
    cr_expect_eq(am_update(&r, c, a, 1, 1, false), 0);
    cr_expect_eq(am_update(&r, c, a, 1, 2, false), 0);
    cr_expect_eq(am_update(&r, c, a, 0, 1, false), AM_E_LABELS);
    cr_expect_eq(am_update(&r, c, a, 1, -1, false), AM_E_NEGATIVE);
    cr_expect_eq(am_update(&r, c, b, 1, 1, false), 0);
    cr_expect_eq(am_update(&r, c, cc, 1, 1, false), 0);
    cr_expect_eq(am_update(&r, c, d, 1, 1, false), AM_E_CAP, "a fourth series passes the cap");
    cr_expect_eq(am_update(&r, c, a, 1, 1, false), 0, "an existing series still counts");
    cr_expect_eq(r.series, 3);
    int g = am_define(&r, AM_GAUGE, "load", "", NULL, 0, NULL, 0);
    cr_expect_eq(am_update(&r, g, NULL, 0, 5, true), AM_E_CAP, "a new metric's series too");
    am_free(&r);
}

Test(app_metrics, families_merge_over_apps_with_an_app_label)
{
    struct am_registry r1, r2;
    am_init(&r1, 100);
    am_init(&r2, 100);
    const char *room[] = { "room" };
    int a = am_define(&r1, AM_COUNTER, "joins", "rooms joined", room, 1, NULL, 0);
    int b = am_define(&r2, AM_COUNTER, "joins", "rooms joined", room, 1, NULL, 0);
    int g = am_define(&r2, AM_GAUGE, "players", "players online", NULL, 0, NULL, 0);
    const char *lobby[] = { "lob\"by" };
    am_update(&r1, a, lobby, 1, 2, false);
    am_update(&r2, b, lobby, 1, 5, false);
    am_update(&r2, g, NULL, 0, 7, true);
    struct am_registry *regs[] = { &r1, &r2 };
    const char *apps[] = { "chat", "game" };
    struct mbuf out = { 0 };
    am_write(regs, apps, 2, &out);
    cr_expect_str_eq(out.data,
                     "# HELP moonwire_app_joins_total rooms joined\n"
                     "# TYPE moonwire_app_joins_total counter\n"
                     "moonwire_app_joins_total{app=\"chat\",room=\"lob\\\"by\"} 2\n"
                     "moonwire_app_joins_total{app=\"game\",room=\"lob\\\"by\"} 5\n"
                     "# HELP moonwire_app_players players online\n"
                     "# TYPE moonwire_app_players gauge\n"
                     "moonwire_app_players{app=\"game\"} 7\n");
    mb_free(&out);
    am_free(&r1);
    am_free(&r2);
}

Test(app_metrics, workers_copies_merge_into_one_registry)
{
    /* Two workers' copies of one app, each counting its own connections. */
    struct am_registry w0, w1, sum;
    am_init(&w0, 100);
    am_init(&w1, 100);
    am_init(&sum, 0);
    const char *room[] = { "room" };
    const double took_bounds[] = { 1, 10 };
    int c0 = am_define(&w0, AM_COUNTER, "joins", "rooms joined", room, 1, NULL, 0);
    int h0 = am_define(&w0, AM_HISTOGRAM, "took", "", NULL, 0, took_bounds, 2);
    int g1 = am_define(&w1, AM_GAUGE, "players", "", NULL, 0, NULL, 0);
    int c1 = am_define(&w1, AM_COUNTER, "joins", "rooms joined", room, 1, NULL, 0);
    int h1 = am_define(&w1, AM_HISTOGRAM, "took", "", NULL, 0, took_bounds, 2);
    int bad = am_define(&w1, AM_GAUGE, "clash", "", NULL, 0, NULL, 0);
    int clash = am_define(&w0, AM_COUNTER, "clash", "", NULL, 0, NULL, 0);
    const char *a[] = { "a" }, *b[] = { "b" };
    am_update(&w0, c0, a, 1, 2, false);
    am_update(&w1, c1, a, 1, 3, false);
    am_update(&w1, c1, b, 1, 1, false);
    am_update(&w1, g1, NULL, 0, 4, true);
    am_update(&w0, h0, NULL, 0, 0.5, false);
    am_update(&w1, h1, NULL, 0, 5, false);
    am_update(&w1, h1, NULL, 0, 50, false);
    am_update(&w0, clash, NULL, 0, 1, false);
    am_update(&w1, bad, NULL, 0, 9, true);
    cr_assert_eq(am_merge(&sum, &w0), 0);
    cr_assert_eq(am_merge(&sum, &w1), 0);
    struct am_registry *regs[] = { &sum };
    const char *apps[] = { "game" };
    struct mbuf out = { 0 };
    am_write(regs, apps, 1, &out);
    cr_expect_str_eq(out.data,
                     "# HELP moonwire_app_joins_total rooms joined\n"
                     "# TYPE moonwire_app_joins_total counter\n"
                     "moonwire_app_joins_total{app=\"game\",room=\"a\"} 5\n"
                     "moonwire_app_joins_total{app=\"game\",room=\"b\"} 1\n"
                     "# HELP moonwire_app_took \n"
                     "# TYPE moonwire_app_took histogram\n"
                     "moonwire_app_took_bucket{app=\"game\",le=\"1\"} 1\n"
                     "moonwire_app_took_bucket{app=\"game\",le=\"10\"} 2\n"
                     "moonwire_app_took_bucket{app=\"game\",le=\"+Inf\"} 3\n"
                     "moonwire_app_took_sum{app=\"game\"} 55.5\n"
                     "moonwire_app_took_count{app=\"game\"} 3\n"
                     "# HELP moonwire_app_clash_total \n"
                     "# TYPE moonwire_app_clash_total counter\n"
                     "moonwire_app_clash_total{app=\"game\"} 1\n"
                     "# HELP moonwire_app_players \n"
                     "# TYPE moonwire_app_players gauge\n"
                     "moonwire_app_players{app=\"game\"} 4\n");
    mb_free(&out);
    am_free(&w0);
    am_free(&w1);
    am_free(&sum);
}
