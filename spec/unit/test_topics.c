/* Tests for pub/sub membership (core/topics.h): subscribe and unsubscribe results, topics that
 * appear and vanish with their members, names that differ only after a NUL or share a bucket,
 * growth to thousands of members and topics, and a long random run checked against a plain
 * model, with every back-reference between topics and sets verified along the way. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "topics.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal with its length, embedded NULs included. */
#define LIT(s) s, sizeof(s) - 1

/* A connection as the server has one: the set is embedded in the member it belongs to. */
struct member {
    struct topic_set set;
    unsigned id;
};

/* ---- Invariants ----------------------------------------------------------------------------- */

/* Checks the whole table: every topic sits in the bucket of its hash, can be found by its name,
 * has members, and each member entry points at a set reference that points straight back.
 * Returns false (after a failed expectation naming ctx) at the first inconsistency. */
static bool table_ok(const struct topic_table *t, const char *ctx)
{
    if (t->nbuckets == 0) {
        if (t->count != 0 || t->buckets != NULL) {
            cr_expect(false, "%s: no buckets but count %zu", ctx, t->count);
            return false;
        }
        return true;
    }
    if ((t->nbuckets & (t->nbuckets - 1)) != 0) {
        cr_expect(false, "%s: %zu buckets, not a power of two", ctx, t->nbuckets);
        return false;
    }
    size_t topics = 0;
    for (size_t b = 0; b < t->nbuckets; b++) {
        for (const struct topic *tp = t->buckets[b]; tp; tp = tp->next) {
            topics++;
            if ((tp->hash & (t->nbuckets - 1)) != b) {
                cr_expect(false, "%s: topic '%.*s' in bucket %zu, not its hash's", ctx,
                          (int)tp->name_len, tp->name, b);
                return false;
            }
            if (topic_find(t, tp->name, tp->name_len) != tp) {
                cr_expect(false, "%s: topic '%.*s' not found by its own name", ctx,
                          (int)tp->name_len, tp->name);
                return false;
            }
            if (tp->count == 0 || tp->count > tp->cap) {
                cr_expect(false, "%s: topic '%.*s' has %u members of %u", ctx,
                          (int)tp->name_len, tp->name, tp->count, tp->cap);
                return false;
            }
            for (uint32_t i = 0; i < tp->count; i++) {
                const struct topic_member *m = &tp->members[i];
                if (!m->set || m->ref >= m->set->count || m->set->refs[m->ref].topic != tp ||
                    m->set->refs[m->ref].index != i) {
                    cr_expect(false, "%s: topic '%.*s' member %u: broken back-reference", ctx,
                              (int)tp->name_len, tp->name, i);
                    return false;
                }
            }
        }
    }
    if (topics != t->count) {
        cr_expect(false, "%s: %zu topics in the buckets, count says %zu", ctx, topics, t->count);
        return false;
    }
    return true;
}

/* Checks one set: each reference points at a member entry of this set that points back. */
static bool set_ok(const struct topic_set *s, const char *ctx)
{
    if (s->count > s->cap || (s->cap && !s->refs)) {
        cr_expect(false, "%s: set with %u refs of %u", ctx, s->count, s->cap);
        return false;
    }
    for (uint32_t r = 0; r < s->count; r++) {
        const struct topic_ref *ref = &s->refs[r];
        if (!ref->topic || ref->index >= ref->topic->count ||
            ref->topic->members[ref->index].set != s || ref->topic->members[ref->index].ref != r) {
            cr_expect(false, "%s: set ref %u: broken back-reference", ctx, r);
            return false;
        }
    }
    return true;
}

static bool set_is_empty_and_free(const struct topic_set *s)
{
    return s->refs == NULL && s->count == 0 && s->cap == 0;
}

/* ---- Single subscriptions ------------------------------------------------------------------- */

Test(topics, subscribe_then_duplicate_then_unsubscribe_twice)
{
    struct topic_table t = { 0 };
    struct member a = { .id = 1 }, b = { .id = 2 };

    cr_expect_null(topic_find(&t, LIT("news")), "found a topic in an empty table");
    cr_expect_eq(topic_unsubscribe(&t, &a.set, LIT("news")), 0, "unsubscribed from nothing");

    cr_expect_eq(topic_subscribe(&t, &a.set, &a, LIT("news")), 1, "first subscribe");
    cr_expect_eq(topic_subscribe(&t, &a.set, &a, LIT("news")), 0, "duplicate subscribe");
    const struct topic *tp = topic_find(&t, LIT("news"));
    cr_assert_not_null(tp, "topic not found after subscribe");
    cr_expect_eq(tp->count, 1, "duplicate added a second entry: %u members", tp->count);
    cr_expect_eq(tp->members[0].member, &a, "member pointer not kept");
    cr_expect_eq(tp->members[0].set, &a.set, "set pointer not kept");
    cr_expect_eq(tp->name_len, 4);
    cr_expect(memcmp(tp->name, "news", 4) == 0, "name not copied");
    cr_expect_eq(a.set.count, 1, "set has %u refs", a.set.count);
    cr_expect_eq(t.count, 1);

    cr_expect_eq(topic_subscribe(&t, &b.set, &b, LIT("news")), 1, "second member");
    cr_expect_eq(topic_find(&t, LIT("news"))->count, 2);
    cr_expect(table_ok(&t, "two members"));

    /* b was never on "other": nothing changes. */
    cr_expect_eq(topic_unsubscribe(&t, &b.set, LIT("other")), 0, "unsubscribed from a stranger");

    cr_expect_eq(topic_unsubscribe(&t, &a.set, LIT("news")), 1, "first unsubscribe");
    cr_expect_eq(topic_unsubscribe(&t, &a.set, LIT("news")), 0, "second unsubscribe");
    tp = topic_find(&t, LIT("news"));
    cr_assert_not_null(tp, "topic vanished while b is still on it");
    cr_expect_eq(tp->count, 1);
    cr_expect_eq(tp->members[0].member, &b, "the wrong member was removed");
    cr_expect_eq(a.set.count, 0);
    cr_expect(table_ok(&t, "after a left") && set_ok(&a.set, "a") && set_ok(&b.set, "b"));

    cr_expect_eq(topic_unsubscribe(&t, &b.set, LIT("news")), 1, "last member leaves");
    cr_expect_null(topic_find(&t, LIT("news")), "topic outlived its last member");
    cr_expect_eq(t.count, 0, "table still counts %zu topics", t.count);
    cr_expect(table_ok(&t, "all gone"));

    /* It can come back. */
    cr_expect_eq(topic_subscribe(&t, &b.set, &b, LIT("news")), 1, "resubscribe");
    cr_expect_not_null(topic_find(&t, LIT("news")));

    topic_leave_all(&t, &a.set);
    topic_leave_all(&t, &b.set);
    topic_table_free(&t);
}

/* Names that are prefixes of each other, differ only after a NUL, or are empty: each is its own
 * topic. Every name is read from a guard page, so reading past its length (a strlen, say)
 * crashes the test. */
Test(topics, names_are_byte_strings_of_their_length)
{
    static const struct {
        const char *label;
        const char *name;
        size_t len;
    } names[] = {
        { "empty", LIT("") },
        { "NUL", LIT("\0") },
        { "two NULs", LIT("\0\0") },
        { "n", LIT("n") },
        { "n NUL", LIT("n\0") },
        { "n NUL a", LIT("n\0a") },
        { "n NUL b (same length as n NUL a)", LIT("n\0b") },
        { "na (same length as n NUL a, minus one)", LIT("na") },
        { "abc", LIT("abc") },
        { "abcd (abc is a prefix)", LIT("abcd") },
        { "bacd (same bytes as abcd, reordered)", LIT("bacd") },
        { "high bytes", LIT("\xff\xfe\x80") },
    };
    struct topic_table t = { 0 };
    struct member m = { .id = 1 };

    for (size_t i = 0; i < N(names); i++) {
        struct guard g;
        const char *p = guard_copy_str(&g, names[i].name, names[i].len);
        cr_expect_eq(topic_subscribe(&t, &m.set, &m, p, names[i].len), 1, "%s: subscribe",
                     names[i].label);
        cr_expect_eq(topic_subscribe(&t, &m.set, &m, p, names[i].len), 0, "%s: duplicate",
                     names[i].label);
        guard_free(&g);
    }
    cr_expect_eq(t.count, N(names), "%zu topics, want %zu", t.count, N(names));
    cr_expect_eq(m.set.count, N(names));

    for (size_t i = 0; i < N(names); i++) {
        struct guard g;
        const char *p = guard_copy_str(&g, names[i].name, names[i].len);
        const struct topic *tp = topic_find(&t, p, names[i].len);
        cr_assert_not_null(tp, "%s: not found", names[i].label);
        cr_expect_eq(tp->name_len, names[i].len, "%s: length", names[i].label);
        cr_expect(memcmp(tp->name, names[i].name, names[i].len) == 0, "%s: bytes",
                  names[i].label);
        cr_expect_eq(tp->count, 1, "%s: %u members", names[i].label, tp->count);
        guard_free(&g);
    }
    cr_expect(table_ok(&t, "all names") && set_ok(&m.set, "set"));

    /* Removing one name leaves its look-alikes alone. */
    for (size_t i = 0; i < N(names); i += 2) {
        struct guard g;
        const char *p = guard_copy_str(&g, names[i].name, names[i].len);
        cr_expect_eq(topic_unsubscribe(&t, &m.set, p, names[i].len), 1, "%s: unsubscribe",
                     names[i].label);
        cr_expect_eq(topic_unsubscribe(&t, &m.set, p, names[i].len), 0, "%s: unsubscribe again",
                     names[i].label);
        guard_free(&g);
    }
    for (size_t i = 0; i < N(names); i++) {
        const struct topic *tp = topic_find(&t, names[i].name, names[i].len);
        if (i % 2 == 0)
            cr_expect_null(tp, "%s: still there after its member left", names[i].label);
        else
            cr_expect_not_null(tp, "%s: removed with a look-alike", names[i].label);
    }
    cr_expect(table_ok(&t, "half removed") && set_ok(&m.set, "set"));

    topic_leave_all(&t, &m.set);
    topic_table_free(&t);
}

/* Names of equal length whose hashes land in the same bucket share one chain; removing the
 * chain's head, middle and tail must leave the others findable. The table's own hash is read
 * from the topics, so the test does not depend on which hash function is used. */
Test(topics, names_sharing_a_bucket)
{
    struct topic_table t = { 0 };
    struct member m = { .id = 1 };

    /* One topic at a time, so the table keeps its first size and every hash is read under the
     * same mask. */
    enum { CANDIDATES = 4000, WANT = 6 };
    char names[WANT][8];
    size_t found = 0;
    uint64_t mask = 0, bucket = 0;
    for (unsigned i = 0; i < CANDIDATES && found < WANT; i++) {
        char name[8];
        snprintf(name, sizeof name, "c%04u", i);
        cr_assert_eq(topic_subscribe(&t, &m.set, &m, name, 5), 1);
        const struct topic *tp = topic_find(&t, name, 5);
        cr_assert_not_null(tp);
        if (found == 0) {
            mask = t.nbuckets - 1;
            bucket = tp->hash & mask;
        }
        if ((tp->hash & mask) == bucket) memcpy(names[found++], name, sizeof name);
        cr_assert_eq(topic_unsubscribe(&t, &m.set, name, 5), 1);
    }
    cr_assert_eq(found, WANT, "only %zu of %d names share a bucket", found, WANT);
    cr_assert_eq(t.nbuckets - 1, mask, "the table grew while only one topic was in it");

    for (size_t i = 0; i < WANT; i++)
        cr_expect_eq(topic_subscribe(&t, &m.set, &m, names[i], 5), 1, "%s", names[i]);
    size_t chain = 0;
    for (const struct topic *tp = t.buckets[bucket]; tp; tp = tp->next) chain++;
    cr_expect_eq(chain, WANT, "chain of %zu topics, want %d", chain, WANT);
    cr_expect(table_ok(&t, "one long chain"));

    /* Remove the chain's head, then its tail, then one from the middle. */
    bool gone[WANT] = { false };
    for (int round = 0; round < 3; round++) {
        const struct topic *pick = t.buckets[bucket];
        if (round == 1)
            while (pick->next) pick = pick->next;
        else if (round == 2)
            pick = pick->next;
        char name[8] = { 0 };
        memcpy(name, pick->name, 5);
        cr_expect_eq(topic_unsubscribe(&t, &m.set, name, 5), 1, "round %d: %s", round, name);
        for (size_t i = 0; i < WANT; i++)
            if (memcmp(names[i], name, 5) == 0) gone[i] = true;
        for (size_t i = 0; i < WANT; i++) {
            const struct topic *tp = topic_find(&t, names[i], 5);
            if (gone[i])
                cr_expect_null(tp, "round %d: %s still found", round, names[i]);
            else
                cr_expect_not_null(tp, "round %d: %s lost", round, names[i]);
        }
        cr_expect(table_ok(&t, "chain shrinking") && set_ok(&m.set, "set"));
    }

    topic_leave_all(&t, &m.set);
    cr_expect_eq(t.count, 0);
    topic_table_free(&t);
}

/* ---- Leaving everything and freeing the table ------------------------------------------------ */

Test(topics, leave_all_removes_member_everywhere_and_frees_set)
{
    struct topic_table t = { 0 };
    struct member a = { .id = 1 }, b = { .id = 2 };

    /* A zeroed set owns nothing and leaving from it changes nothing. */
    topic_leave_all(&t, &a.set);
    cr_expect(set_is_empty_and_free(&a.set), "leave_all on a fresh set");
    cr_expect_eq(t.count, 0);

    static const char *const mine[] = { "alone-1", "shared-1", "alone-2", "shared-2", "alone-3",
                                        "shared-3", "alone-4", "alone-5", "alone-6" };
    for (size_t i = 0; i < N(mine); i++) {
        cr_expect_eq(topic_subscribe(&t, &a.set, &a, mine[i], strlen(mine[i])), 1);
        if (strncmp(mine[i], "shared", 6) == 0)
            cr_expect_eq(topic_subscribe(&t, &b.set, &b, mine[i], strlen(mine[i])), 1);
    }
    cr_expect_eq(topic_subscribe(&t, &b.set, &b, LIT("only-b")), 1);
    cr_expect_gt(a.set.cap, 4, "the set never grew (cap %u)", a.set.cap);
    cr_expect_eq(t.count, N(mine) + 1);

    topic_leave_all(&t, &a.set);
    cr_expect(set_is_empty_and_free(&a.set), "set keeps refs %p, count %u, cap %u",
              (void *)a.set.refs, a.set.count, a.set.cap);
    cr_expect_eq(t.count, 4, "%zu topics left, want the 3 shared and only-b", t.count);
    for (size_t i = 0; i < N(mine); i++) {
        const struct topic *tp = topic_find(&t, mine[i], strlen(mine[i]));
        if (strncmp(mine[i], "shared", 6) == 0) {
            cr_assert_not_null(tp, "%s: lost b", mine[i]);
            cr_expect_eq(tp->count, 1, "%s: %u members", mine[i], tp->count);
            cr_expect_eq(tp->members[0].member, &b, "%s: a is still a member", mine[i]);
        } else {
            cr_expect_null(tp, "%s: outlived its only member", mine[i]);
        }
    }
    cr_expect(table_ok(&t, "after leave_all") && set_ok(&b.set, "b"));

    /* A second leave_all is harmless, and the set can subscribe again. */
    topic_leave_all(&t, &a.set);
    cr_expect(set_is_empty_and_free(&a.set));
    cr_expect_eq(topic_subscribe(&t, &a.set, &a, LIT("shared-1")), 1, "rejoin");
    cr_expect_eq(topic_find(&t, LIT("shared-1"))->count, 2);
    cr_expect(table_ok(&t, "after rejoin") && set_ok(&a.set, "a") && set_ok(&b.set, "b"));

    topic_leave_all(&t, &a.set);
    topic_leave_all(&t, &b.set);
    cr_expect_eq(t.count, 0, "topics left after everyone left: %zu", t.count);
    topic_table_free(&t);
}

Test(topics, table_free_zeroes_and_table_is_reusable)
{
    struct topic_table t = { 0 };
    topic_table_free(&t); /* a table that never had a topic */
    cr_expect(t.buckets == NULL && t.nbuckets == 0 && t.count == 0);

    struct member m[3] = { { .id = 0 }, { .id = 1 }, { .id = 2 } };
    for (unsigned i = 0; i < 3; i++)
        for (unsigned k = 0; k < 100; k++) {
            char name[16];
            int n = snprintf(name, sizeof name, "t%u", k);
            cr_assert_eq(topic_subscribe(&t, &m[i].set, &m[i], name, (size_t)n), 1);
        }
    /* The members go first, as the contract asks; their sets are simply dropped. */
    for (unsigned i = 0; i < 3; i++) {
        free(m[i].set.refs);
        memset(&m[i].set, 0, sizeof m[i].set);
    }
    topic_table_free(&t);
    cr_expect(t.buckets == NULL && t.nbuckets == 0 && t.count == 0, "table not zeroed");
    cr_expect_null(topic_find(&t, LIT("t1")), "found a topic in a freed table");

    cr_expect_eq(topic_subscribe(&t, &m[0].set, &m[0], LIT("t1")), 1, "reuse after free");
    cr_expect(table_ok(&t, "reused"));
    topic_leave_all(&t, &m[0].set);
    topic_table_free(&t);
}

/* ---- Many members, many topics --------------------------------------------------------------- */

/* A permutation of 0..n-1 from a seeded generator (splitmix64), so failures reproduce. */
static uint64_t next_random(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static unsigned random_below(uint64_t *s, unsigned n)
{
    return (unsigned)(next_random(s) % n);
}

static void shuffle(unsigned *a, unsigned n, uint64_t *seed)
{
    for (unsigned i = n; i > 1; i--) {
        unsigned j = random_below(seed, i);
        unsigned tmp = a[i - 1];
        a[i - 1] = a[j];
        a[j] = tmp;
    }
}

Test(topics, thousands_of_members_on_one_topic)
{
    enum { MEMBERS = 5000 };
    struct topic_table t = { 0 };
    struct member *m = calloc(MEMBERS, sizeof *m);
    unsigned *order = calloc(MEMBERS, sizeof *order);
    cr_assert(m && order);

    for (unsigned i = 0; i < MEMBERS; i++) {
        m[i].id = i;
        order[i] = i;
        cr_assert_eq(topic_subscribe(&t, &m[i].set, &m[i], LIT("big")), 1, "member %u", i);
        /* A second topic for some, so that sets hold more than one ref. */
        if (i % 7 == 0) cr_assert_eq(topic_subscribe(&t, &m[i].set, &m[i], LIT("small")), 1);
    }
    const struct topic *big = topic_find(&t, LIT("big"));
    cr_assert_not_null(big);
    cr_expect_eq(big->count, MEMBERS);
    cr_expect_eq(topic_find(&t, LIT("small"))->count, (MEMBERS + 6) / 7);
    cr_expect(table_ok(&t, "all subscribed"));

    /* Every member appears exactly once. */
    bool *seen = calloc(MEMBERS, sizeof *seen);
    cr_assert(seen);
    for (uint32_t i = 0; i < big->count; i++) {
        const struct member *who = big->members[i].member;
        size_t id = (size_t)(who - m);
        cr_assert_lt(id, MEMBERS, "entry %u is not one of ours", i);
        cr_expect_not(seen[id], "member %zu twice", id);
        seen[id] = true;
        cr_expect_eq(big->members[i].set, &m[id].set, "entry %u: wrong set", i);
    }

    /* Leave in a scrambled order: each removal moves the last entry into the hole. */
    uint64_t seed = 42;
    shuffle(order, MEMBERS, &seed);
    for (unsigned k = 0; k < MEMBERS; k++) {
        unsigned i = order[k];
        cr_assert_eq(topic_unsubscribe(&t, &m[i].set, LIT("big")), 1, "member %u", i);
        if (k + 1 < MEMBERS) {
            big = topic_find(&t, LIT("big"));
            cr_assert_not_null(big, "topic gone with %u members left", MEMBERS - k - 1);
            cr_assert_eq(big->count, MEMBERS - k - 1);
        }
        if (k % 250 == 0) {
            cr_assert(table_ok(&t, "leaving big"));
            cr_assert(set_ok(&m[i].set, "a member that left"));
        }
    }
    cr_expect_null(topic_find(&t, LIT("big")), "topic outlived its last member");
    cr_expect_eq(topic_find(&t, LIT("small"))->count, (MEMBERS + 6) / 7, "small lost members");
    cr_expect(table_ok(&t, "big gone"));

    for (unsigned i = 0; i < MEMBERS; i++) {
        topic_leave_all(&t, &m[i].set);
        if (!set_is_empty_and_free(&m[i].set)) cr_expect(false, "member %u: set not freed", i);
    }
    cr_expect_eq(t.count, 0);
    topic_table_free(&t);
    free(seen);
    free(order);
    free(m);
}

Test(topics, thousands_of_topics_grow_the_buckets)
{
    enum { TOPICS = 5000 };
    struct topic_table t = { 0 };
    struct member a = { .id = 1 }, b = { .id = 2 };
    char name[32];

    for (unsigned k = 0; k < TOPICS; k++) {
        int n = snprintf(name, sizeof name, "topic-%u", k);
        cr_assert_eq(topic_subscribe(&t, &a.set, &a, name, (size_t)n), 1, "%s", name);
        if (k % 2 == 0) cr_assert_eq(topic_subscribe(&t, &b.set, &b, name, (size_t)n), 1);
        if (k % 1000 == 999) cr_assert(table_ok(&t, "growing"));
    }
    size_t first_buckets = 64; /* what a table starts with; it must have doubled since */
    cr_expect_gt(t.nbuckets, first_buckets, "buckets never grew: %zu", t.nbuckets);
    cr_expect_geq(t.nbuckets, t.count, "%zu topics in %zu buckets", t.count, t.nbuckets);
    cr_expect_eq(t.count, TOPICS);
    cr_expect_eq(a.set.count, TOPICS);
    cr_expect_eq(b.set.count, (TOPICS + 1) / 2);
    cr_expect(table_ok(&t, "all topics") && set_ok(&a.set, "a") && set_ok(&b.set, "b"));

    /* Every topic survived the rehashes with its members. */
    for (unsigned k = 0; k < TOPICS; k++) {
        int n = snprintf(name, sizeof name, "topic-%u", k);
        const struct topic *tp = topic_find(&t, name, (size_t)n);
        if (!tp || tp->count != (k % 2 == 0 ? 2u : 1u))
            cr_expect(false, "%s: %s", name, tp ? "wrong member count" : "lost");
    }
    cr_expect_null(topic_find(&t, LIT("topic-5000")));

    /* a leaves: only b's topics remain, each with b alone. */
    topic_leave_all(&t, &a.set);
    cr_expect(set_is_empty_and_free(&a.set));
    cr_expect_eq(t.count, (TOPICS + 1) / 2);
    for (unsigned k = 0; k < TOPICS; k++) {
        int n = snprintf(name, sizeof name, "topic-%u", k);
        const struct topic *tp = topic_find(&t, name, (size_t)n);
        bool ok = k % 2 == 0 ? tp && tp->count == 1 && tp->members[0].member == &b : tp == NULL;
        if (!ok) cr_expect(false, "%s after a left", name);
    }
    cr_expect(table_ok(&t, "a left") && set_ok(&b.set, "b"));

    topic_leave_all(&t, &b.set);
    cr_expect_eq(t.count, 0);
    cr_expect(table_ok(&t, "everyone left"));
    topic_table_free(&t);
}

/* ---- Random operations against a model ------------------------------------------------------- */

enum { MODEL_MEMBERS = 40, MODEL_TOPICS = 300 };

struct model {
    bool on[MODEL_MEMBERS][MODEL_TOPICS];
    char names[MODEL_TOPICS][16];
    size_t lens[MODEL_TOPICS];
};

/* Topic names: mostly short "t<k>", with some that differ only after a NUL and some of equal
 * length, so that both kinds of look-alike are in the table together. */
static void model_names(struct model *md)
{
    for (unsigned k = 0; k < MODEL_TOPICS; k++) {
        if (k % 10 == 3) { /* "x\0<k>": same prefix, NUL inside */
            int n = snprintf(md->names[k] + 2, sizeof md->names[k] - 2, "%u", k);
            md->names[k][0] = 'x';
            md->names[k][1] = '\0';
            md->lens[k] = (size_t)n + 2;
        } else {
            int n = snprintf(md->names[k], sizeof md->names[k], "t%03u", k);
            md->lens[k] = (size_t)n;
        }
    }
}

/* Compares the table with the model, topic by topic and set by set. */
static bool model_matches(const struct model *md, const struct topic_table *t,
                          const struct member *m, const char *ctx)
{
    if (!table_ok(t, ctx)) return false;
    size_t topics = 0;
    for (unsigned k = 0; k < MODEL_TOPICS; k++) {
        unsigned want = 0;
        for (unsigned i = 0; i < MODEL_MEMBERS; i++) want += md->on[i][k];
        const struct topic *tp = topic_find(t, md->names[k], md->lens[k]);
        if (want == 0) {
            if (tp) {
                cr_expect(false, "%s: topic %u exists without members", ctx, k);
                return false;
            }
            continue;
        }
        topics++;
        if (!tp || tp->count != want) {
            cr_expect(false, "%s: topic %u has %u members, want %u", ctx, k, tp ? tp->count : 0,
                      want);
            return false;
        }
        bool seen[MODEL_MEMBERS] = { false };
        for (uint32_t e = 0; e < tp->count; e++) {
            const struct member *who = tp->members[e].member;
            ptrdiff_t i = who - m;
            if (i < 0 || i >= MODEL_MEMBERS || !md->on[i][k] || seen[i] ||
                tp->members[e].set != &m[i].set) {
                cr_expect(false, "%s: topic %u entry %u is wrong", ctx, k, e);
                return false;
            }
            seen[i] = true;
        }
    }
    if (topics != t->count) {
        cr_expect(false, "%s: %zu topics, model has %zu", ctx, t->count, topics);
        return false;
    }
    for (unsigned i = 0; i < MODEL_MEMBERS; i++) {
        unsigned want = 0;
        for (unsigned k = 0; k < MODEL_TOPICS; k++) want += md->on[i][k];
        if (!set_ok(&m[i].set, ctx)) return false;
        if (m[i].set.count != want) {
            cr_expect(false, "%s: member %u has %u topics, want %u", ctx, i, m[i].set.count,
                      want);
            return false;
        }
    }
    return true;
}

static void run_random(uint64_t seed, unsigned ops)
{
    struct model *md = calloc(1, sizeof *md);
    struct member *m = calloc(MODEL_MEMBERS, sizeof *m);
    cr_assert(md && m);
    model_names(md);
    struct topic_table t = { 0 };
    char ctx[64];
    uint64_t s = seed;

    for (unsigned op = 0; op < ops; op++) {
        unsigned i = random_below(&s, MODEL_MEMBERS);
        unsigned k = random_below(&s, MODEL_TOPICS);
        unsigned what = random_below(&s, 100);
        snprintf(ctx, sizeof ctx, "seed %llu op %u", (unsigned long long)seed, op);
        if (what < 48) {
            int rc = topic_subscribe(&t, &m[i].set, &m[i], md->names[k], md->lens[k]);
            int want = md->on[i][k] ? 0 : 1;
            if (rc != want)
                cr_assert_eq(rc, want, "%s: subscribe %u to %u returned %d", ctx, i, k, rc);
            md->on[i][k] = true;
        } else if (what < 96) {
            int rc = topic_unsubscribe(&t, &m[i].set, md->names[k], md->lens[k]);
            int want = md->on[i][k] ? 1 : 0;
            if (rc != want)
                cr_assert_eq(rc, want, "%s: unsubscribe %u from %u returned %d", ctx, i, k, rc);
            md->on[i][k] = false;
        } else {
            topic_leave_all(&t, &m[i].set);
            if (!set_is_empty_and_free(&m[i].set))
                cr_assert_fail("%s: leave_all of %u kept memory", ctx, i);
            memset(md->on[i], 0, sizeof md->on[i]);
        }
        if (op % 1000 == 999 && !model_matches(md, &t, m, ctx)) break;
    }
    snprintf(ctx, sizeof ctx, "seed %llu end", (unsigned long long)seed);
    cr_expect(model_matches(md, &t, m, ctx));

    for (unsigned i = 0; i < MODEL_MEMBERS; i++) topic_leave_all(&t, &m[i].set);
    cr_expect_eq(t.count, 0, "topics left after everyone left");
    topic_table_free(&t);
    free(m);
    free(md);
}

Test(topics, random_operations_match_model)
{
    static const uint64_t seeds[] = { 1, 0x5eed, 20240601 };
    for (size_t i = 0; i < N(seeds); i++) run_random(seeds[i], 100000);
}
