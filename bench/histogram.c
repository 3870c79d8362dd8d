/* Log-bucketed histogram: see histogram.h for the bucket layout and its error bound. */
#include "histogram.h"

#include <math.h>
#include <string.h>

void hist_reset(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

/* The smallest value in bucket b and the bucket's width: the inverse of hist_bucket. */
static void bucket_range(uint32_t b, uint64_t *low, uint64_t *width)
{
    if (b < 2 * HIST_SUB) {
        *low = b;
        *width = 1;
        return;
    }
    unsigned shift = b / HIST_SUB - 1;
    uint64_t top = b - (uint64_t)shift * HIST_SUB;
    *low = top << shift;
    *width = (uint64_t)1 << shift;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->total == 0) return 0;
    if (q >= 1.0) return h->max;
    double want = ceil(q * (double)h->total);
    uint64_t rank = want < 1.0 ? 1 : (uint64_t)want;
    uint64_t seen = 0;
    for (uint32_t b = 0; b < HIST_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen < rank) continue;
        uint64_t low, width;
        bucket_range(b, &low, &width);
        uint64_t v = low + (width - 1) / 2;
        if (v > h->max) v = h->max;
        if (v < h->min) v = h->min;
        return v;
    }
    return h->max;
}
