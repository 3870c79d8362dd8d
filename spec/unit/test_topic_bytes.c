/* Tests for the memory the topics of one app take (core/topics.h: bytes and max_bytes): the
 * count matches what the table holds after every change, it goes back to the buckets alone
 * when every member has left, and a subscription that would pass max_bytes is refused with
 * TOPIC_E_FULL without changing anything, until members leave and make room. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "topics.h"

struct member {
    struct topic_set set;
    unsigned id;
};

/* What the table should count, summed from what it holds: the buckets, each topic with its
 * name and member array, and the reference arrays of the given members. */
static size_t held_bytes(const struct topic_table *t, const struct member *m, size_t n)
{
    size_t bytes = t->nbuckets * sizeof *t->buckets;
    for (size_t b = 0; b < t->nbuckets; b++)
        for (const struct topic *tp = t->buckets[b]; tp; tp = tp->next)
            bytes += sizeof *tp + tp->name_len + tp->cap * sizeof *tp->members;
    for (size_t i = 0; i < n; i++) bytes += m[i].set.cap * sizeof *m[i].set.refs;
    return bytes;
}

static int name_of(char *buf, size_t cap, const char *prefix, unsigned k)
{
    return snprintf(buf, cap, "%s-%u", prefix, k);
}

Test(topic_bytes, counted_through_subscribes_unsubscribes_and_leaving)
{
    struct topic_table t = { 0 };
    struct member m[8] = { { .id = 0 } };
    char name[64];

    /* Labelled steps; after each, the count must match what the table holds. */
    for (unsigned i = 0; i < 8; i++) {
        for (unsigned k = 0; k < 40; k++) {
            int n = name_of(name, sizeof name, k % 3 ? "shared" : "own", k % 3 ? k : k * 8 + i);
            cr_assert_geq(topic_subscribe(&t, &m[i].set, &m[i], name, (size_t)n), 0);
        }
        cr_expect_eq(t.bytes, held_bytes(&t, m, 8), "after member %u subscribed", i);
    }
    for (unsigned k = 0; k < 40; k += 2) {
        int n = name_of(name, sizeof name, "shared", k);
        topic_unsubscribe(&t, &m[3].set, name, (size_t)n);
    }
    cr_expect_eq(t.bytes, held_bytes(&t, m, 8), "after unsubscribing half of member 3's");
    for (unsigned i = 0; i < 8; i++) {
        topic_leave_all(&t, &m[i].set);
        cr_expect_eq(t.bytes, held_bytes(&t, m, 8), "after member %u left", i);
    }
    cr_expect_eq(t.count, 0);
    cr_expect_eq(t.bytes, t.nbuckets * sizeof *t.buckets, "only the buckets are left");
    topic_table_free(&t);
    cr_expect_eq(t.bytes, 0);
}

Test(topic_bytes, past_max_bytes_refused_without_change_until_room_is_made)
{
    struct topic_table t = { .max_bytes = 16 << 10 };
    struct member a = { .id = 1 }, b = { .id = 2 };
    char name[300];
    memset(name, 'n', sizeof name);

    /* Long names until the table is full. */
    unsigned taken = 0;
    int rc;
    for (;;) {
        int n = snprintf(name + 200, 32, "-%u", taken);
        rc = topic_subscribe(&t, &a.set, &a, name, 200 + (size_t)n);
        if (rc != 1) break;
        taken++;
    }
    cr_expect_eq(rc, TOPIC_E_FULL, "refused with TOPIC_E_FULL, not %d", rc);
    cr_expect(taken > 10 && taken < 80, "%u topics of ~200 bytes in 16 KiB", taken);
    cr_expect_leq(t.bytes, t.max_bytes);
    cr_expect_eq(t.bytes, held_bytes(&t, &a, 1));

    /* Refused again, by another member too, with nothing changed. */
    size_t bytes = t.bytes, count = t.count;
    uint32_t cap = b.set.cap;
    int n = snprintf(name + 200, 32, "-%s", "another");
    cr_expect_eq(topic_subscribe(&t, &b.set, &b, name, 200 + (size_t)n), TOPIC_E_FULL);
    cr_expect_eq(t.bytes, bytes, "bytes changed by a refused subscription");
    cr_expect_eq(t.count, count, "topics changed by a refused subscription");
    cr_expect_eq(b.set.cap, cap, "the refused member's set grew");
    cr_expect_null(topic_find(&t, name, 200 + (size_t)n));

    /* A duplicate needs nothing new: still answered 0, not refused. */
    n = snprintf(name + 200, 32, "-%u", 0u);
    cr_expect_eq(topic_subscribe(&t, &a.set, &a, name, 200 + (size_t)n), 0, "duplicate");

    /* When a member leaves, its topics' memory is free for others. */
    topic_leave_all(&t, &a.set);
    n = snprintf(name + 200, 32, "-%s", "another");
    cr_expect_eq(topic_subscribe(&t, &b.set, &b, name, 200 + (size_t)n), 1, "after a left");
    cr_expect_eq(t.bytes, held_bytes(&t, &b, 1));
    topic_leave_all(&t, &b.set);
    topic_table_free(&t);
}

Test(topic_bytes, a_limit_smaller_than_the_first_buckets_refuses_at_once)
{
    struct topic_table t = { .max_bytes = 100 };
    struct member a = { .id = 1 };
    cr_expect_eq(topic_subscribe(&t, &a.set, &a, "x", 1), TOPIC_E_FULL);
    cr_expect_eq(t.bytes, 0);
    cr_expect_eq(t.nbuckets, 0);
    cr_expect_null(a.set.refs);
    topic_table_free(&t);
}
