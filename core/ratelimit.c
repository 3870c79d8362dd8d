/* Token buckets, refilled lazily: only when a bucket is used does it catch up with the time
 * that passed, so an idle bucket costs nothing. */
#include "ratelimit.h"

void bucket_init(struct bucket *b, double burst, double now)
{
    b->tokens = burst;
    b->stamp = now;
}

static void refill(struct bucket *b, double rate, double burst, double now)
{
    /* A clock that steps backwards must not drain the bucket: count no time then. */
    if (now > b->stamp) b->tokens += (now - b->stamp) * rate;
    /* Capped even when no time passed: a burst lowered since the bucket was filled (a reloaded
     * configuration) holds at once, so a request above it is refused as the header promises. */
    if (b->tokens > burst) b->tokens = burst;
    b->stamp = now;
}

bool bucket_take(struct bucket *b, double rate, double burst, double n, double now)
{
    if (rate <= 0) return true;
    refill(b, rate, burst, now);
    if (b->tokens < n) return false;
    b->tokens -= n;
    return true;
}

double bucket_charge(struct bucket *b, double rate, double burst, double n, double now)
{
    refill(b, rate, burst, now);
    b->tokens -= n;
    return b->tokens >= 0 ? 0 : -b->tokens / rate;
}
