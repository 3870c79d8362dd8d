/* A latency histogram with logarithmic buckets, for wsload.
 *
 * Values (nanoseconds, or any unsigned count) below 256 have a bucket each; above that, every
 * power of two is split into 128 equal sub-buckets, so a bucket is never wider than 1/128 of
 * the values in it and a reported percentile is within 0.4% of a value that was recorded.
 * Recording is a count-leading-zeros, a shift and an increment: cheap enough for millions of
 * samples a second. The whole range of uint64_t is covered; nothing is ever clamped. */
#ifndef WSLOAD_HISTOGRAM_H
#define WSLOAD_HISTOGRAM_H

#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
/* Exact buckets for 0..2*HIST_SUB-1, then HIST_SUB per octave up to bit 63: the largest value,
 * with shift 63 - HIST_SUB_BITS, lands in bucket (64 - HIST_SUB_BITS + 1) * HIST_SUB - 1. */
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
    uint64_t total;
    uint64_t min, max;
    uint64_t counts[HIST_BUCKETS];
};

/* The bucket a value falls in. Exposed only so hist_record can be inlined. */
static inline uint32_t hist_bucket(uint64_t v)
{
    if (v < 2 * HIST_SUB) return (uint32_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (uint32_t)(shift * HIST_SUB + (v >> shift));
}

static inline void hist_record(struct hist *h, uint64_t v)
{
    h->counts[hist_bucket(v)]++;
    h->total++;
    if (v > h->max) h->max = v;
    if (v < h->min) h->min = v;
}

/* Empties the histogram (it is a plain struct: zeroing it the first time is also fine, except
 * for min, which hist_reset sets to the largest value). */
void hist_reset(struct hist *h);

/* The value at quantile q (0 < q <= 1) of what was recorded: the middle of the bucket holding
 * the ceil(q * total)-th smallest sample, clamped to the exact min and max. 0 when empty. */
uint64_t hist_quantile(const struct hist *h, double q);

#endif
