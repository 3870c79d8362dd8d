/* Tests for the bus between workers (core/bus.h): topic interest (which workers, how many
 * subscribers) follows subscribes and unsubscribes; a publish goes only to the other workers
 * with subscribers, by reference; a full inbox (slots or bytes) drops for that worker only and
 * counts it; frames are released once every worker has let go. Threads: four publishers into
 * one inbox keep each publisher's order and lose nothing when there is room, and count exactly
 * what they drop when there is not (also run under ThreadSanitizer: build/unit-tests-tsan). */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "bus.h"

static struct obuf *frame_of(const char *text)
{
    size_t len = strlen(text);
    struct obuf *f = obuf_new(len + 1);
    cr_assert_not_null(f);
    memcpy(f->data, text, len + 1); /* NUL-terminated for sscanf, not counted */
    f->len = len;
    return f;
}

Test(bus, interest_follows_subscribers)
{
    struct bus bus;
    cr_assert_eq(bus_init(&bus, 4, 16, 1 << 20), 0);
    cr_assert_eq(bus_workers(&bus, 0, "t", 1), 0);
    /* Worker 1 gets two subscribers, worker 3 one; app 1's "t" is another topic. */
    cr_assert_eq(bus_interest(&bus, 0, "t", 1, 1, 1, 1), 0);
    cr_assert_eq(bus_interest(&bus, 0, "t", 1, 1, 1, 2), 0);
    cr_assert_eq(bus_interest(&bus, 0, "t", 1, 3, 1, 1), 0);
    cr_assert_eq(bus_interest(&bus, 1, "t", 1, 2, 1, 1), 0);
    cr_assert_eq(bus_workers(&bus, 0, "t", 1), (1u << 1) | (1u << 3));
    cr_assert_eq(bus_subscribers(&bus, 0, "t", 1), 3);
    cr_assert_eq(bus_workers(&bus, 1, "t", 1), 1u << 2);
    cr_assert_eq(bus_subscribers(&bus, 0, "tt", 2), 0);
    /* Worker 1's two leave: only worker 3 stays. */
    bus_interest(&bus, 0, "t", 1, 1, -1, 1);
    cr_assert_eq(bus_workers(&bus, 0, "t", 1), (1u << 1) | (1u << 3));
    bus_interest(&bus, 0, "t", 1, 1, -1, 0);
    cr_assert_eq(bus_workers(&bus, 0, "t", 1), 1u << 3);
    cr_assert_eq(bus_subscribers(&bus, 0, "t", 1), 1);
    bus_interest(&bus, 0, "t", 1, 3, -1, 0);
    cr_assert_eq(bus_workers(&bus, 0, "t", 1), 0);
    cr_assert_eq(bus_subscribers(&bus, 0, "t", 1), 0);
    /* Many topics: the stripes' tables grow. */
    char name[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "topic-%d", i);
        cr_assert_eq(bus_interest(&bus, 0, name, (size_t)n, (unsigned)(i % 4), 1, 1), 0);
    }
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "topic-%d", i);
        cr_assert_eq(bus_workers(&bus, 0, name, (size_t)n), 1u << (i % 4), "%s", name);
    }
    bus_free(&bus);
}

Test(bus, busiest_counts_every_worker_and_cuts_long_names_at_a_character)
{
    struct bus bus;
    cr_assert_eq(bus_init(&bus, 4, 16, 1 << 20), 0);
    /* "hot": 2 on worker 0 and 3 on worker 2; "warm" (app 1): 4 on worker 1; "cold": 1. */
    bus_interest(&bus, 0, "hot", 3, 0, 1, 2);
    bus_interest(&bus, 0, "hot", 3, 0, 1, 2);
    for (int i = 0; i < 3; i++) bus_interest(&bus, 0, "hot", 3, 2, 1, (size_t)i + 1);
    for (int i = 0; i < 4; i++) bus_interest(&bus, 1, "warm", 4, 1, 1, (size_t)i + 1);
    bus_interest(&bus, 0, "cold", 4, 3, 1, 1);
    /* A name longer than the copy, with a two-byte character across the cut. */
    char longname[300];
    memset(longname, 'x', sizeof longname);
    longname[255] = (char)0xC3;
    longname[256] = (char)0xA9;
    bus_interest(&bus, 0, longname, sizeof longname, 3, 1, 1);
    bus_interest(&bus, 0, "gone", 4, 3, 1, 1);
    bus_interest(&bus, 0, "gone", 4, 3, -1, 0);
    struct bus_topic_count top[3];
    cr_assert_eq(bus_busiest(&bus, top, 3), 3);
    cr_assert_eq(top[0].subscribers, 5);
    cr_assert(top[0].len == 3 && memcmp(top[0].name, "hot", 3) == 0);
    cr_assert_eq(top[0].app, 0);
    cr_assert(top[1].len == 4 && memcmp(top[1].name, "warm", 4) == 0);
    cr_assert_eq(top[1].app, 1);
    cr_assert_eq(top[2].subscribers, 1);
    struct bus_topic_count all[8];
    size_t n = bus_busiest(&bus, all, 8);
    cr_assert_eq(n, 4, "a topic without subscribers is not shown");
    bool cut = false;
    for (size_t i = 0; i < n; i++)
        if (all[i].len > 4) cut = all[i].len == 255 && all[i].name[254] == 'x';
    cr_assert(cut, "the long name is cut before the character that does not fit");
    bus_free(&bus);
}

static unsigned woken[4];
static void on_wake(void *ctx, unsigned w)
{
    (void)ctx;
    woken[w]++;
}

Test(bus, publish_goes_to_other_workers_with_subscribers_by_reference)
{
    struct bus bus;
    cr_assert_eq(bus_init(&bus, 4, 16, 1 << 20), 0);
    memset(woken, 0, sizeof woken);
    bus.wake = on_wake;
    for (unsigned w = 0; w < 4; w++) bus_interest(&bus, 7, "news", 4, w, 1, 1);
    struct obuf *f = frame_of("hello");
    size_t dropped;
    /* From worker 2: workers 0, 1 and 3, not 2 itself. */
    cr_assert_eq(bus_publish(&bus, 2, 7, "news", 4, f, &dropped), 3);
    cr_assert_eq(dropped, 0);
    cr_assert(f->xthread, "a frame handed to other threads is marked");
    cr_assert_eq(f->refs, 2, "the publisher's and the message's: %u", f->refs);
    cr_assert_eq(woken[0] + woken[1] + woken[3], 3);
    cr_assert_eq(woken[2], 0);
    cr_assert_null(bus_pop(&bus, 2));
    for (unsigned w = 0; w < 4; w++) {
        if (w == 2) continue;
        struct bus_msg *m = bus_pop(&bus, w);
        cr_assert_not_null(m, "worker %u got nothing", w);
        cr_assert_eq(m->frame, f, "by reference, not a copy");
        cr_assert_eq(m->app, 7);
        cr_assert_eq(m->topic_len, 4);
        cr_assert_eq(memcmp(m->topic, "news", 4), 0);
        cr_assert_null(bus_pop(&bus, w));
        bus_msg_unref(m);
    }
    cr_assert_eq(f->refs, 1, "every worker let go: %u", f->refs);
    obuf_unref(f);
    /* No subscriber elsewhere: nothing is sent. */
    f = frame_of("x");
    cr_assert_eq(bus_publish(&bus, 2, 8, "news", 4, f, &dropped), 0);
    cr_assert(!f->xthread);
    obuf_unref(f);
    bus_free(&bus);
}

Test(bus, a_full_inbox_drops_for_that_worker_only)
{
    struct bus bus;
    cr_assert_eq(bus_init(&bus, 3, 4, 1 << 20), 0);
    bus_interest(&bus, 0, "t", 1, 1, 1, 1);
    bus_interest(&bus, 0, "t", 1, 2, 1, 1);
    size_t dropped;
    for (int i = 0; i < 10; i++) {
        struct obuf *f = frame_of("m");
        /* Worker 2 keeps reading; worker 1 does not. */
        bus_publish(&bus, 0, 0, "t", 1, f, &dropped);
        cr_assert_eq(dropped, i < 4 ? 0u : 1u, "publish %d dropped %zu", i, dropped);
        struct bus_msg *m = bus_pop(&bus, 2);
        cr_assert_not_null(m);
        bus_msg_unref(m);
        obuf_unref(f);
    }
    cr_assert_eq(bus_dropped(&bus, 1), 6);
    cr_assert_eq(bus_dropped(&bus, 2), 0);
    cr_assert_eq(bus_dropped_since(&bus, 1), 6);
    cr_assert_eq(bus_dropped_since(&bus, 1), 0, "counted once");
    /* The byte budget: 10 bytes fit, not 11. */
    struct bus small;
    cr_assert_eq(bus_init(&small, 2, 16, 10), 0);
    bus_interest(&small, 0, "t", 1, 1, 1, 1);
    struct obuf *a = frame_of("0123456789"), *b = frame_of("x");
    cr_assert_eq(bus_publish(&small, 0, 0, "t", 1, a, &dropped), 1);
    cr_assert_eq(bus_publish(&small, 0, 0, "t", 1, b, &dropped), 0);
    cr_assert_eq(dropped, 1);
    struct bus_msg *m = bus_pop(&small, 1);
    bus_msg_unref(m);
    cr_assert_eq(bus_publish(&small, 0, 0, "t", 1, b, &dropped), 1, "room again once read");
    obuf_unref(a);
    obuf_unref(b);
    bus_free(&small); /* frees what is still queued */
    bus_free(&bus);   /* the 4 messages worker 1 never read */
}

/* ---- threads ------------------------------------------------------------------------------- */

#define PRODUCERS 4
#define PER_PRODUCER 20000

struct producer {
    struct bus *bus;
    unsigned id; /* worker 1..PRODUCERS */
    size_t dropped;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    char text[32];
    for (int i = 0; i < PER_PRODUCER; i++) {
        snprintf(text, sizeof text, "%u:%d", p->id, i);
        struct obuf *f = frame_of(text);
        size_t d;
        bus_publish(p->bus, p->id, 0, "t", 1, f, &d);
        p->dropped += d;
        obuf_unref(f);
    }
    return NULL;
}

/* Worker 0 reads while PRODUCERS workers publish to it. Returns what it received. */
static size_t run_threads(size_t slots, size_t *dropped)
{
    struct bus bus;
    cr_assert_eq(bus_init(&bus, PRODUCERS + 1, slots, (size_t)1 << 30), 0);
    bus_interest(&bus, 0, "t", 1, 0, 1, 1);
    pthread_t th[PRODUCERS];
    struct producer p[PRODUCERS];
    for (unsigned i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){ &bus, i + 1, 0 };
        pthread_create(&th[i], NULL, produce, &p[i]);
    }
    int next[PRODUCERS + 1] = { 0 };
    size_t got = 0, total_dropped = 0;
    unsigned done = 0;
    for (;;) {
        struct bus_msg *m = bus_pop(&bus, 0);
        if (!m) {
            if (done == PRODUCERS) {
                /* Joined: every push has finished, the ring holds the rest. */
                if (!(m = bus_pop(&bus, 0))) break;
            } else {
                /* Join whoever has finished, without blocking the reading. */
                for (unsigned i = 0; i < PRODUCERS; i++)
                    if (th[i] && pthread_tryjoin_np(th[i], NULL) == 0) {
                        th[i] = 0;
                        done++;
                    }
                continue;
            }
        }
        unsigned who;
        int n;
        cr_assert_eq(sscanf((const char *)m->frame->data, "%u:%d", &who, &n), 2);
        cr_assert(n >= next[who], "producer %u: %d after %d (out of order or twice)", who, n,
                  next[who]);
        if (slots >= PER_PRODUCER * PRODUCERS)
            cr_assert_eq(n, next[who], "producer %u: %d lost", who, next[who]);
        next[who] = n + 1;
        got++;
        bus_msg_unref(m);
    }
    for (unsigned i = 0; i < PRODUCERS; i++) total_dropped += p[i].dropped;
    cr_assert_eq(bus_dropped(&bus, 0), total_dropped);
    *dropped = total_dropped;
    bus_free(&bus);
    return got;
}

Test(bus, threads_keep_each_publishers_order_and_lose_nothing_with_room)
{
    size_t dropped;
    size_t got = run_threads(131072, &dropped);
    cr_assert_eq(dropped, 0);
    cr_assert_eq(got, (size_t)PRODUCERS * PER_PRODUCER);
}

Test(bus, threads_count_exactly_what_a_small_inbox_drops)
{
    size_t dropped;
    size_t got = run_threads(64, &dropped);
    cr_assert_eq(got + dropped, (size_t)PRODUCERS * PER_PRODUCER, "got %zu, dropped %zu", got,
                 dropped);
}
