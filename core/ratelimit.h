/* Token buckets: a rate with a burst. Pure: the time is an argument, so the limiter can be
 * tested and reasoned about without a clock. Used for messages and bytes per connection and
 * for new connections per address. */
#ifndef MOONWIRE_RATELIMIT_H
#define MOONWIRE_RATELIMIT_H

#include <stdbool.h>

/* A bucket holds up to `burst` tokens and gains `rate` tokens per second. 16 bytes, so every
 * connection can afford two. */
struct bucket {
    double tokens;
    double stamp; /* when tokens was last brought up to date, in seconds */
};

/* Starts a bucket full (a new client may burst at once). */
void bucket_init(struct bucket *b, double burst, double now);

/* Takes n tokens at time now if the bucket holds them. Returns true when it did; false leaves
 * the bucket unchanged but refilled to now. rate 0 means no limit (always true). A burst
 * smaller than n can never be met: such a request is refused. */
bool bucket_take(struct bucket *b, double rate, double burst, double n, double now);

/* Takes n tokens even if that leaves the bucket in debt (negative), and returns how many seconds
 * from now until it is out of debt: 0 when it had enough. For throttling: pause the source for
 * that long instead of refusing. rate must be above 0. */
double bucket_charge(struct bucket *b, double rate, double burst, double n, double now);

#endif
