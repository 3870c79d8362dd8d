/* Tests for the in-memory history (core/history.h): offsets one by one from 1, the ring keeping
 * the last `size`, reads after an offset (recovered or not), the epoch changing when a stream is
 * lost (ttl, eviction), namespaces, the longest prefix rule, and the byte cap. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "history.h"

#define T(s) (s), strlen(s)

static struct hist_pos add(struct history *h, const char *topic, const char *data, double now)
{
    struct hist_pos p;
    cr_assert_eq(history_append(h, 0, T(topic), T(data), false, now, &p), 0);
    return p;
}

Test(history, offsets_count_from_one_in_one_epoch)
{
    struct history h;
    history_init(&h, 1 << 20);
    cr_assert_eq(history_add_rule(&h, T("room:"), 3, 60), 0);
    struct hist_pos a = add(&h, "room:1", "a", 0), b = add(&h, "room:1", "b", 1);
    cr_assert_eq(a.offset, 1);
    cr_assert_eq(b.offset, 2);
    cr_assert_str_eq(a.epoch, b.epoch);
    cr_assert_eq(strlen(a.epoch), HIST_EPOCH_LEN);
    struct hist_pos other = add(&h, "room:2", "x", 1);
    cr_assert_eq(other.offset, 1, "each topic has its own offsets");
    struct hist_pos p;
    cr_assert_eq(history_append(&h, 0, T("lobby"), T("x"), false, 0, &p), HIST_E_NORULE);
    history_free(&h);
}

Test(history, read_after_an_offset)
{
    struct history h;
    history_init(&h, 1 << 20);
    history_add_rule(&h, T("room:"), 3, 60);
    struct hist_pos p = { 0 };
    for (int i = 1; i <= 5; i++) {
        char d[16];
        snprintf(d, sizeof d, "m%d", i);
        p = add(&h, "room:1", d, i);
    }
    struct hist_range r;
    /* 3 kept: 3, 4, 5. After 2: all of them are here. */
    cr_assert_eq(history_read(&h, 0, T("room:1"), true, 2, p.epoch, 6, &r), 0);
    cr_assert(r.recovered);
    cr_assert_eq(r.count, 3);
    cr_assert_eq(r.entries[0]->offset, 3);
    cr_assert_eq(memcmp(r.entries[2]->data, "m5", 2), 0);
    cr_assert_eq(r.top.offset, 5);
    history_range_free(&r);
    /* After 4: one. After 5: none, recovered. */
    history_read(&h, 0, T("room:1"), true, 4, p.epoch, 6, &r);
    cr_assert(r.recovered && r.count == 1 && r.entries[0]->offset == 5);
    history_range_free(&r);
    history_read(&h, 0, T("room:1"), true, 5, NULL, 6, &r);
    cr_assert(r.recovered && r.count == 0);
    /* After 1: offset 2 is gone. */
    history_read(&h, 0, T("room:1"), true, 1, p.epoch, 6, &r);
    cr_assert(!r.recovered && r.count == 0);
    cr_assert_eq(r.top.offset, 5);
    /* Another epoch, or an offset past the top: not recovered. */
    history_read(&h, 0, T("room:1"), true, 4, "zzzzzzzz", 6, &r);
    cr_assert(!r.recovered);
    history_read(&h, 0, T("room:1"), true, 9, p.epoch, 6, &r);
    cr_assert(!r.recovered);
    /* No offset: everything held. */
    history_read(&h, 0, T("room:1"), false, 0, NULL, 6, &r);
    cr_assert(r.recovered && r.count == 3);
    history_range_free(&r);
    history_free(&h);
}

Test(history, a_read_fixes_the_epoch_of_an_empty_stream)
{
    struct history h;
    history_init(&h, 1 << 20);
    history_add_rule(&h, T(""), 10, 60);
    struct hist_range r;
    history_read(&h, 0, T("t"), true, 0, NULL, 0, &r);
    cr_assert(r.recovered);
    cr_assert_eq(r.top.offset, 0);
    struct hist_pos p = add(&h, "t", "a", 1);
    cr_assert_str_eq(p.epoch, r.top.epoch);
    history_read(&h, 0, T("t"), true, 0, r.top.epoch, 2, &r);
    cr_assert(r.recovered && r.count == 1);
    history_range_free(&r);
    history_free(&h);
}

Test(history, expired_entries_go_and_a_lost_stream_gets_a_new_epoch)
{
    struct history h;
    history_init(&h, 1 << 20);
    history_add_rule(&h, T(""), 10, 5);
    struct hist_pos a = add(&h, "t", "a", 0);
    add(&h, "t", "b", 3);
    struct hist_range r;
    history_read(&h, 0, T("t"), true, 0, a.epoch, 6, &r);
    cr_assert(!r.recovered, "offset 1 expired at 5");
    history_read(&h, 0, T("t"), true, 1, a.epoch, 6, &r);
    cr_assert(r.recovered && r.count == 1);
    history_range_free(&r);
    /* Everything expired: the stream starts again, elsewhere in time. */
    struct hist_pos c = add(&h, "t", "c", 20);
    cr_assert_eq(c.offset, 1);
    cr_assert_str_neq(c.epoch, a.epoch);
    history_read(&h, 0, T("t"), true, 2, a.epoch, 20, &r);
    cr_assert(!r.recovered);
    history_free(&h);
}

Test(history, namespaces_and_longest_prefix)
{
    struct history h;
    history_init(&h, 1 << 20);
    history_add_rule(&h, T("a"), 1, 60);
    history_add_rule(&h, T("ab"), 7, 60);
    cr_assert_eq(history_rule(&h, T("abc"))->size, 7);
    cr_assert_eq(history_rule(&h, T("ax"))->size, 1);
    cr_assert_null(history_rule(&h, T("b")));
    struct hist_pos p, q;
    history_append(&h, 1, T("ab"), T("x"), false, 0, &p);
    history_append(&h, 2, T("ab"), T("y"), true, 0, &q);
    cr_assert_eq(p.offset, 1);
    cr_assert_eq(q.offset, 1, "another app's topic of the same name is another stream");
    struct hist_range r;
    history_read(&h, 2, T("ab"), false, 0, NULL, 0, &r);
    cr_assert(r.count == 1 && r.entries[0]->binary && r.entries[0]->data[0] == 'y');
    history_range_free(&r);
    history_free(&h);
}

Test(history, the_byte_cap_evicts_the_least_recently_published)
{
    struct history h;
    history_init(&h, 8192);
    history_add_rule(&h, T(""), 100, 60);
    char big[1000];
    memset(big, 'x', sizeof big);
    struct hist_pos first, p;
    cr_assert_eq(history_append(&h, 0, T("old"), big, sizeof big, false, 0, &first), 0);
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%d", i % 5);
        cr_assert_eq(history_append(&h, 0, name, strlen(name), big, sizeof big, false, 1, &p), 0);
        cr_assert_leq(h.bytes, 8192);
    }
    cr_assert_gt(h.lost, 0);
    struct hist_range r;
    history_read(&h, 0, T("old"), true, 0, first.epoch, 2, &r);
    cr_assert(!r.recovered, "the stream published to first was evicted");
    cr_assert_str_neq(r.top.epoch, first.epoch);
    /* One publication larger than half the store is refused. */
    char *huge = calloc(1, 5000);
    cr_assert_eq(history_append(&h, 0, T("t1"), huge, 5000, false, 3, &p), HIST_E_FULL);
    free(huge);
    history_free(&h);
}

Test(history, reading_new_topics_does_not_evict_published_streams)
{
    struct history h;
    history_init(&h, 8192);
    history_add_rule(&h, T(""), 100, 60);
    struct hist_pos first;
    cr_assert_eq(history_append(&h, 0, T("real"), "x", 1, false, 0, &first), 0);
    /* Each empty stream costs about 100 pointers: 50 of them do not fit in 8 KiB. */
    struct hist_range r;
    for (int i = 0; i < 50; i++) {
        char name[16];
        snprintf(name, sizeof name, "e%d", i);
        cr_assert_eq(history_read(&h, 0, name, strlen(name), true, 0, "abcdefgh", 1, &r), 0);
        cr_assert(!r.recovered);
        history_range_free(&r);
        cr_assert_leq(h.bytes, 8192);
    }
    cr_assert_eq(h.lost, 0, "no stream was evicted for a read");
    cr_assert_eq(history_read(&h, 0, T("real"), true, 0, first.epoch, 2, &r), 0);
    cr_assert(r.recovered, "the published stream is still there");
    cr_assert_str_eq(r.top.epoch, first.epoch);
    cr_assert_eq(r.count, 1);
    history_range_free(&r);
    /* Without since, a read that does not fit answers recovered with no position. */
    cr_assert_eq(history_read(&h, 0, T("zz"), false, 0, NULL, 2, &r), 0);
    cr_assert(r.recovered);
    cr_assert_eq(r.top.offset, 0);
    cr_assert_str_eq(r.top.epoch, "");
    history_free(&h);
}
