/* Tests for token buckets (core/ratelimit.h): a bucket starts full, refills at its rate up to its
 * burst, refuses what it cannot cover without consuming anything, ignores a clock that steps
 * back, and charges into debt with the exact wait. A seeded random run checks the promise that
 * matters to a server: over any window of T seconds, no more than burst + rate * T is granted. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <criterion/criterion.h>

#include "ratelimit.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The values in these tests are chosen to be exact in binary (halves, quarters, small integers),
 * so most comparisons are exact; near() is for the few that go through a division by 3 and the
 * like. */
static bool near(double a, double b)
{
    double d = a > b ? a - b : b - a;
    double scale = b < 0 ? -b : b;
    return d <= 1e-9 * (scale > 1 ? scale : 1);
}

/* How many tokens b would hold at now, without touching b: a request for nothing refills a copy
 * (it is granted or refused, but either way the copy is brought up to date). */
static double tokens_at(const struct bucket *b, double rate, double burst, double now)
{
    struct bucket copy = *b;
    (void)bucket_take(&copy, rate, burst, 0, now);
    return copy.tokens;
}

/* ---- Basic behaviour ------------------------------------------------------------------------ */

Test(ratelimit, starts_full)
{
    static const double bursts[] = { 0.5, 1, 2.5, 5, 1000 };
    for (size_t i = 0; i < N(bursts); i++) {
        double burst = bursts[i];
        struct bucket b;
        bucket_init(&b, burst, 10);
        cr_expect_eq(tokens_at(&b, 1, burst, 10), burst, "burst %g: not full at start", burst);
        /* The whole burst at once, at the very moment of creation. */
        cr_expect(bucket_take(&b, 1, burst, burst, 10), "burst %g: whole burst refused", burst);
        cr_expect_not(bucket_take(&b, 1, burst, 0.001, 10), "burst %g: more than the burst",
                      burst);
    }
}

Test(ratelimit, takes_until_empty_then_refuses)
{
    struct bucket b;
    bucket_init(&b, 5, 0);
    for (int i = 0; i < 5; i++)
        cr_expect(bucket_take(&b, 1, 5, 1, 0), "take %d of 5 refused", i + 1);
    cr_expect_not(bucket_take(&b, 1, 5, 1, 0), "sixth token granted from an empty bucket");
    cr_expect_not(bucket_take(&b, 1, 5, 1, 0), "granted after a refusal");
    cr_expect_eq(b.tokens, 0, "an empty bucket holds %g tokens", b.tokens);
}

/* A refusal takes nothing: a smaller request right after it gets all that was there. */
Test(ratelimit, refusal_consumes_nothing)
{
    struct bucket b;
    bucket_init(&b, 5, 0);
    cr_expect(bucket_take(&b, 1, 5, 2, 0), "first 2 refused");
    cr_expect(bucket_take(&b, 1, 5, 2, 0), "second 2 refused");
    cr_expect_not(bucket_take(&b, 1, 5, 2, 0), "2 granted with 1 left");
    cr_expect_eq(b.tokens, 1, "refusal changed the bucket: %g tokens, want 1", b.tokens);
    cr_expect(bucket_take(&b, 1, 5, 1, 0), "the last token refused after a refusal");
    cr_expect_not(bucket_take(&b, 1, 5, 0.5, 0), "granted from an empty bucket");
}

/* "false leaves the bucket unchanged but refilled to now". */
Test(ratelimit, refusal_still_refills_to_now)
{
    struct bucket b;
    bucket_init(&b, 4, 0);
    cr_expect(bucket_take(&b, 2, 4, 4, 0), "whole burst refused");
    cr_expect_not(bucket_take(&b, 2, 4, 3, 1), "3 granted with 2 refilled");
    cr_expect_eq(b.tokens, 2, "after the refusal: %g tokens, want 2", b.tokens);
    cr_expect_eq(b.stamp, 1, "after the refusal: stamp %g, want 1", b.stamp);
    /* The time up to the refusal is not counted twice. */
    cr_expect_eq(tokens_at(&b, 2, 4, 1), 2, "time before the refusal counted again");
}

Test(ratelimit, refills_at_the_rate_capped_at_burst)
{
    static const struct {
        double dt;
        double want;
    } cases[] = {
        { 0, 0 }, { 0.125, 0.5 }, { 0.25, 1 }, { 0.5, 2 }, { 1, 4 }, { 1.5, 6 },
        { 1.75, 7 }, { 2, 8 }, { 2.25, 8 }, { 3, 8 }, { 1000, 8 },
    };
    /* Rate 4 per second, burst 8, emptied at t = 100. */
    struct bucket b;
    bucket_init(&b, 8, 100);
    cr_assert(bucket_take(&b, 4, 8, 8, 100), "whole burst refused");
    for (size_t i = 0; i < N(cases); i++) {
        double got = tokens_at(&b, 4, 8, 100 + cases[i].dt);
        cr_expect_eq(got, cases[i].want, "after %g s: %g tokens, want %g", cases[i].dt, got,
                     cases[i].want);
    }
    /* And the refill is what a real request can take, no more. */
    cr_expect_not(bucket_take(&b, 4, 8, 1.5, 100.25), "1.5 granted after 0.25 s at rate 4");
    cr_expect(bucket_take(&b, 4, 8, 1, 100.25), "1 refused after 0.25 s at rate 4");
    cr_expect_not(bucket_take(&b, 4, 8, 0.25, 100.25), "granted again at the same time");
}

/* Requests and rates below one token: nothing rounds to whole tokens. */
Test(ratelimit, fractional_tokens)
{
    struct bucket b;
    bucket_init(&b, 1, 0);
    cr_expect(bucket_take(&b, 0.5, 1, 1, 0), "the one token refused");
    cr_expect_not(bucket_take(&b, 0.5, 1, 1, 1), "1 granted with 0.5 refilled");
    cr_expect(bucket_take(&b, 0.5, 1, 0.5, 1), "0.5 refused with 0.5 refilled");
    cr_expect(bucket_take(&b, 0.5, 1, 0.25, 1.5), "0.25 refused with 0.25 refilled");
    cr_expect_not(bucket_take(&b, 0.5, 1, 0.125, 1.5), "0.125 granted from an empty bucket");
    cr_expect(bucket_take(&b, 0.5, 1, 0.125, 1.75), "0.125 refused with 0.125 refilled");
    /* A burst below one token still works in its own units. */
    struct bucket small;
    bucket_init(&small, 0.25, 0);
    cr_expect_not(bucket_take(&small, 1, 0.25, 1, 0), "1 granted from a burst of 0.25");
    cr_expect(bucket_take(&small, 1, 0.25, 0.25, 0), "0.25 refused from a burst of 0.25");
    cr_expect_not(bucket_take(&small, 1, 0.25, 1, 1000), "1 granted from a burst of 0.25");
}

/* Rate 0 switches the limit off: every request is granted, however large or frequent. */
Test(ratelimit, rate_zero_is_unlimited)
{
    struct bucket b;
    bucket_init(&b, 1, 0);
    for (int i = 0; i < 1000; i++) {
        if (!bucket_take(&b, 0, 1, 1, 0)) {
            cr_expect(false, "rate 0: take %d refused", i);
            break;
        }
    }
    cr_expect(bucket_take(&b, 0, 1, 1e9, 0), "rate 0: a request far above the burst refused");
    cr_expect(bucket_take(&b, 0, 0, 1, 0), "rate 0, burst 0: refused");
    cr_expect(bucket_take(&b, 0, 1, 1, -50), "rate 0: refused with the clock stepped back");
}

/* A request larger than the burst can never be met, however long the bucket rests. */
Test(ratelimit, more_than_burst_is_never_granted)
{
    struct bucket b;
    bucket_init(&b, 3, 0);
    cr_expect_not(bucket_take(&b, 1, 3, 3.5, 0), "3.5 granted from a full burst of 3");
    cr_expect_not(bucket_take(&b, 1, 3, 3.5, 1e6), "3.5 granted after a long rest");
    cr_expect_not(bucket_take(&b, 1e6, 3, 4, 2e6), "4 granted at a huge rate");
    cr_expect(bucket_take(&b, 1, 3, 3, 2e6), "exactly the burst refused");
}

/* The burst is an argument of every call so that a reloaded configuration applies to existing
 * buckets. A lowered burst must hold at once, even with no time passed since the bucket was
 * filled under the old one: otherwise a request above the new burst would be granted. */
Test(ratelimit, lowered_burst_applies_at_once)
{
    struct bucket b;
    bucket_init(&b, 10, 0);
    cr_expect_not(bucket_take(&b, 1, 5, 8, 0), "8 granted under a burst of 5 (same time)");
    cr_expect_not(bucket_take(&b, 1, 5, 5.5, 0), "5.5 granted under a burst of 5 (same time)");
    cr_expect(bucket_take(&b, 1, 5, 5, 0), "5 refused under a burst of 5");
    cr_expect_not(bucket_take(&b, 1, 5, 0.5, 0), "more than the new burst granted in all");

    struct bucket c;
    bucket_init(&c, 10, 0);
    cr_expect_not(bucket_take(&c, 1, 5, 8, 1), "8 granted under a burst of 5 (1 s later)");
    double left = bucket_charge(&c, 1, 5, 0, 1);
    cr_expect_eq(left, 0, "charge of nothing: wait %g", left);
    cr_expect_leq(c.tokens, 5, "charge kept %g tokens under a burst of 5", c.tokens);
}

/* The server's clock may step back (the wall clock is corrected). Stepping back must neither
 * drain the bucket (negative time times the rate) nor add to it. */
Test(ratelimit, clock_stepping_back_neither_drains_nor_adds)
{
    static const double back[] = { 100, 99.999, 50, 0, -1e9 };
    for (size_t i = 0; i < N(back); i++) {
        struct bucket b;
        bucket_init(&b, 10, 100);
        cr_assert(bucket_take(&b, 1, 10, 4, 100), "first 4 refused");
        /* 6 left at t = 100; at an earlier time there are still 6, no fewer, no more. */
        double t = back[i];
        cr_expect_eq(tokens_at(&b, 1, 10, t), 6, "at %g: %g tokens, want 6", t,
                     tokens_at(&b, 1, 10, t));
        cr_expect_not(bucket_take(&b, 1, 10, 6.5, t), "at %g: 6.5 granted from 6", t);
        cr_expect(bucket_take(&b, 1, 10, 6, t), "at %g: the 6 left were drained", t);
        cr_expect_not(bucket_take(&b, 1, 10, 0.001, t), "at %g: granted from empty", t);
    }
    /* Time counts again from the reading after the step: a second after it brings one token
     * (the alternative, waiting for the clock to pass the old reading, could stall a bucket for
     * as long as the clock stepped back). */
    struct bucket b;
    bucket_init(&b, 2, 100);
    cr_assert(bucket_take(&b, 1, 2, 2, 100), "whole burst refused");
    cr_expect_not(bucket_take(&b, 1, 2, 1, 40), "a token granted by stepping back");
    cr_expect_not(bucket_take(&b, 1, 2, 1, 40.5), "a token after half a second");
    cr_expect(bucket_take(&b, 1, 2, 1, 41), "no token a second after the step");
}

/* However long a bucket rests, it holds exactly its burst: not one token more, and not a little
 * less from rounding. */
Test(ratelimit, long_idle_refills_to_exactly_burst)
{
    static const double rates[] = { 0.01, 1, 3, 1e6 };
    static const double bursts[] = { 1, 7.5, 100 };
    static const double idle[] = { 1e5, 1e7, 1e12 };
    for (size_t r = 0; r < N(rates); r++)
        for (size_t k = 0; k < N(bursts); k++)
            for (size_t i = 0; i < N(idle); i++) {
                double rate = rates[r], burst = bursts[k];
                struct bucket b;
                bucket_init(&b, burst, 0);
                cr_assert(bucket_take(&b, rate, burst, burst, 0), "whole burst refused");
                double got = tokens_at(&b, rate, burst, idle[i]);
                cr_expect_eq(got, burst, "rate %g burst %g idle %g: %.17g tokens", rate, burst,
                             idle[i], got);
                cr_expect(bucket_take(&b, rate, burst, burst, idle[i]),
                          "rate %g burst %g idle %g: whole burst refused", rate, burst, idle[i]);
            }
}

/* ---- Charging into debt --------------------------------------------------------------------- */

Test(ratelimit, charge_within_tokens_is_free)
{
    struct bucket b;
    bucket_init(&b, 5, 0);
    double w = bucket_charge(&b, 1, 5, 3, 0);
    cr_expect_eq(w, 0, "charge 3 of 5: wait %g", w);
    w = bucket_charge(&b, 1, 5, 2, 0);
    cr_expect_eq(w, 0, "charge to exactly empty: wait %g", w);
    cr_expect_eq(b.tokens, 0, "after charging the whole burst: %g tokens", b.tokens);
    w = bucket_charge(&b, 1, 5, 1, 0);
    cr_expect_eq(w, 1, "charge 1 from empty at rate 1: wait %g, want 1", w);
}

/* The wait is exact: at now + wait the bucket is at zero, not before. */
Test(ratelimit, charge_returns_the_exact_wait_and_the_debt_is_repaid)
{
    struct bucket b;
    bucket_init(&b, 4, 0);
    double w = bucket_charge(&b, 2, 4, 10, 0);
    cr_expect_eq(w, 3, "6 in debt at rate 2: wait %g, want 3", w);
    cr_expect_eq(b.tokens, -6, "debt not kept: %g tokens", b.tokens);
    /* Repaid as time passes: each reading of the wait is what is left of it. */
    w = bucket_charge(&b, 2, 4, 0, 1);
    cr_expect_eq(w, 2, "1 s later: wait %g, want 2", w);
    w = bucket_charge(&b, 2, 4, 0, 2.5);
    cr_expect_eq(w, 0.5, "2.5 s later: wait %g, want 0.5", w);
    cr_expect_not(bucket_take(&b, 2, 4, 0.5, 2.75), "granted while still in debt");
    w = bucket_charge(&b, 2, 4, 0, 3);
    cr_expect_eq(w, 0, "at the promised time: wait %g, want 0", w);
    cr_expect_not(bucket_take(&b, 2, 4, 0.25, 3), "granted with nothing left after the debt");
    cr_expect(bucket_take(&b, 2, 4, 1, 3.5), "refused half a second after the debt");
}

/* More debt while already in debt adds up: the wait covers all of it. */
Test(ratelimit, charge_table)
{
    static const struct {
        const char *name;
        double rate, burst;
        struct {
            double t, n, want_wait;
        } steps[6];
        size_t nsteps;
    } cases[] = {
        { "rate 4: a quarter second per token", 4, 4,
          { { 0, 4, 0 }, { 0, 1, 0.25 }, { 0, 1, 0.5 }, { 0.5, 0, 0 }, { 0.5, 4, 1 } }, 5 },
        { "debt far beyond the burst is not forgiven", 10, 5,
          { { 0, 100, 9.5 }, { 9, 0, 0.5 }, { 9.5, 0, 0 }, { 100, 5, 0 } }, 4 },
        { "a refill before the charge is capped at the burst", 1, 2,
          { { 0, 2, 0 }, { 50, 3, 1 }, { 51, 0, 0 } }, 3 },
        { "rate 3: thirds", 3, 1,
          { { 0, 2, 1.0 / 3 }, { 0, 1, 2.0 / 3 }, { 1.0 / 3, 0, 1.0 / 3 } }, 3 },
        { "slow rate, small charges", 0.25, 1,
          { { 0, 1, 0 }, { 0, 0.5, 2 }, { 1, 0.25, 2 }, { 4, 0, 0 } }, 4 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct bucket b;
        bucket_init(&b, cases[i].burst, cases[i].steps[0].t);
        for (size_t s = 0; s < cases[i].nsteps; s++) {
            double t = cases[i].steps[s].t, n = cases[i].steps[s].n;
            double want = cases[i].steps[s].want_wait;
            double w = bucket_charge(&b, cases[i].rate, cases[i].burst, n, t);
            cr_expect(near(w, want), "%s: step %zu (charge %g at %g): wait %.17g, want %.17g",
                      cases[i].name, s + 1, n, t, w, want);
        }
    }
}

/* ---- Scenarios ------------------------------------------------------------------------------ */

enum verdict { END, GRANT, REFUSE };

struct step {
    double t;
    double n;
    enum verdict want;
};

struct scenario {
    const char *name;
    double rate, burst;
    double start;            /* bucket_init time */
    struct step steps[12];   /* up to the first END */
};

static const struct scenario scenarios[] = {
    { "burst of 3, then one per second", 1, 3, 0,
      { { 0, 1, GRANT }, { 0, 1, GRANT }, { 0, 1, GRANT }, { 0, 1, REFUSE }, { 0.5, 1, REFUSE },
        { 1, 1, GRANT }, { 1, 1, REFUSE }, { 3, 2, GRANT }, { 3, 1, REFUSE } } },
    { "bigger requests wait longer", 2, 4, 0,
      { { 0, 4, GRANT }, { 0.5, 2, REFUSE }, { 1, 2, GRANT }, { 1.5, 1, GRANT },
        { 1.5, 0.5, REFUSE }, { 2.5, 2, GRANT } } },
    { "a refused request consumes nothing", 1, 2, 0,
      { { 0, 2, GRANT }, { 0.5, 1, REFUSE }, { 1, 1, GRANT }, { 1, 0.5, REFUSE },
        { 1.5, 0.5, GRANT } } },
    { "more than the burst, full or not", 1, 2, 0,
      { { 0, 3, REFUSE }, { 0, 2.0000001, REFUSE }, { 0, 2, GRANT }, { 100, 2.5, REFUSE },
        { 100, 2, GRANT } } },
    { "asking for nothing is always granted", 1, 1, 0,
      { { 0, 1, GRANT }, { 0, 0, GRANT }, { 0, 0, GRANT }, { 0, 0.001, REFUSE } } },
    { "a long rest is capped at the burst", 10, 5, 0,
      { { 0, 5, GRANT }, { 100, 5, GRANT }, { 100, 1, REFUSE }, { 100.125, 1, GRANT },
        { 100.125, 1, REFUSE } } },
    { "the clock steps back: nothing gained, nothing lost", 1, 2, 10,
      { { 10, 1, GRANT }, { 5, 1, GRANT }, { 5, 0.5, REFUSE }, { 6, 1, GRANT },
        { 6, 1, REFUSE } } },
    { "rate 0: no limit", 0, 1, 0,
      { { 0, 5, GRANT }, { 0, 5, GRANT }, { 0, 1e12, GRANT }, { -3, 1, GRANT } } },
    { "slow rate in quarters", 0.25, 1, 0,
      { { 0, 1, GRANT }, { 2, 1, REFUSE }, { 4, 1, GRANT }, { 4.5, 0.125, GRANT },
        { 4.5, 0.125, REFUSE }, { 5, 0.125, GRANT } } },
    { "a bucket created late starts full", 1, 3, 1000,
      { { 1000, 3, GRANT }, { 1000.5, 1, REFUSE }, { 1001, 1, GRANT } } },
    { "many small takes in one instant", 8, 1, 0,
      { { 0, 0.25, GRANT }, { 0, 0.25, GRANT }, { 0, 0.25, GRANT }, { 0, 0.25, GRANT },
        { 0, 0.25, REFUSE }, { 0.03125, 0.25, GRANT }, { 0.03125, 0.25, REFUSE } } },
};

Test(ratelimit, scenario_table)
{
    for (size_t i = 0; i < N(scenarios); i++) {
        const struct scenario *sc = &scenarios[i];
        struct bucket b;
        bucket_init(&b, sc->burst, sc->start);
        for (size_t s = 0; s < N(sc->steps) && sc->steps[s].want != END; s++) {
            const struct step *st = &sc->steps[s];
            bool got = bucket_take(&b, sc->rate, sc->burst, st->n, st->t);
            if (got != (st->want == GRANT)) {
                cr_expect(false, "%s: step %zu (%g at %g) %s", sc->name, s + 1, st->n, st->t,
                          got ? "granted, want refused" : "refused, want granted");
                break; /* the rest of the scenario depends on this step */
            }
        }
    }
}

/* ---- Properties ----------------------------------------------------------------------------- */

static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double random_unit(uint64_t *s)
{
    return (double)(next_random(s) >> 11) * 0x1p-53;
}

#define EVENTS 3000

/* A random run of requests at non-decreasing times, mostly bunched (many at one instant, many
 * within a refill), sometimes after a long rest, of sizes from tiny to above the burst. Then
 * every window between two grants is checked: the tokens granted at times inside [t_i, t_j]
 * never exceed burst + rate * (t_j - t_i). The maximum over all windows is reached at grant
 * times, so checking those pairs checks every window. */
static void check_window_bound(double rate, double burst, uint64_t seed)
{
    static double when[EVENTS], prefix[EVENTS + 1];
    uint64_t s = seed;
    struct bucket b;
    double t = 1000 * random_unit(&s);
    bucket_init(&b, burst, t);
    size_t granted = 0;
    prefix[0] = 0;
    for (size_t i = 0; i < EVENTS; i++) {
        double r = random_unit(&s);
        if (r < 0.3) {
            /* same instant */
        } else if (r < 0.9) {
            t += random_unit(&s) / rate;
        } else if (r < 0.98) {
            t += 5 * random_unit(&s) * burst / rate;
        } else {
            t += 1000 * random_unit(&s);
        }
        double q = random_unit(&s);
        double n = q < 0.5 ? burst * random_unit(&s) * 0.1
                   : q < 0.95 ? burst * random_unit(&s) : burst * (1 + random_unit(&s));
        if (bucket_take(&b, rate, burst, n, t)) {
            when[granted] = t;
            prefix[granted + 1] = prefix[granted] + n;
            granted++;
        }
    }
    cr_expect_gt(granted, EVENTS / 20, "rate %g burst %g seed %llu: only %zu of %d granted",
                 rate, burst, (unsigned long long)seed, granted, EVENTS);
    for (size_t i = 0; i < granted; i++) {
        for (size_t j = i; j < granted; j++) {
            double got = prefix[j + 1] - prefix[i];
            double bound = burst + rate * (when[j] - when[i]);
            if (got > bound + 1e-9 * (bound > 1 ? bound : 1)) {
                cr_expect(false, "rate %g burst %g seed %llu: %.17g granted in [%.17g, %.17g],"
                          " bound %.17g", rate, burst, (unsigned long long)seed, got, when[i],
                          when[j], bound);
                return;
            }
        }
    }
}

Test(ratelimit, no_window_grants_more_than_burst_plus_rate_times_length)
{
    static const struct {
        double rate, burst;
    } configs[] = {
        { 1, 1 }, { 10, 5 }, { 0.5, 20 }, { 1000, 1 }, { 3.7, 2.3 }, { 0.01, 0.5 },
    };
    for (size_t c = 0; c < N(configs); c++)
        for (uint64_t seed = 1; seed <= 6; seed++)
            check_window_bound(configs[c].rate, configs[c].burst, seed * 7919 + c);
}

/* The other side of the bound: a client that asks all the time gets the whole rate, so the
 * limiter is not stricter than configured. One token every 1/100 s for 100 s, at 10 per second
 * with a burst of 5: 5 + 10 * 100 granted (give or take the last token still refilling). */
Test(ratelimit, saturating_demand_gets_the_full_rate)
{
    struct bucket b;
    bucket_init(&b, 5, 0);
    size_t granted = 0;
    for (int i = 0; i <= 10000; i++)
        if (bucket_take(&b, 10, 5, 1, i / 100.0)) granted++;
    cr_expect(granted >= 1004 && granted <= 1005, "%zu granted, want 1005", granted);
}

/* After waiting the time bucket_charge returns, the bucket is out of debt (never short by more
 * than rounding), and not a moment earlier by a noticeable amount. */
Test(ratelimit, charge_wait_is_always_enough_and_not_too_long)
{
    uint64_t s = 42;
    for (int run = 0; run < 200; run++) {
        double rate = 0.1 + 100 * random_unit(&s), burst = 0.5 + 50 * random_unit(&s);
        struct bucket b;
        double t = 0;
        bucket_init(&b, burst, t);
        for (int i = 0; i < 50; i++) {
            t += random_unit(&s) * burst / rate;
            double w = bucket_charge(&b, rate, burst, 2 * burst * random_unit(&s), t);
            if (w < 0) {
                cr_expect(false, "run %d step %d: negative wait %g", run, i, w);
                return;
            }
            if (w == 0) continue;
            double at = tokens_at(&b, rate, burst, t + w);
            double before = tokens_at(&b, rate, burst, t + w * 0.99);
            if (at < -1e-9 * burst || before >= 0) {
                cr_expect(false, "run %d step %d: wait %g leaves %g tokens (%g at 99%%)", run, i,
                          w, at, before);
                return;
            }
        }
    }
}
