/* Tests for the per-address table (core/ip_table.h): how socket addresses become keys (IPv4 by
 * address, IPv6 by /64), finding and creating entries, growth to thousands of entries with
 * stable pointers, which entries expiry frees (only those without connections whose bucket has
 * refilled), and freeing the table. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "ip_table.h"
#include "ratelimit.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Keys ----------------------------------------------------------------------------------- */

static struct sockaddr_in sin_of(const char *addr, uint16_t port)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    cr_assert_eq(inet_pton(AF_INET, addr, &sin.sin_addr), 1, "bad test address %s", addr);
    return sin;
}

static struct sockaddr_in6 sin6_of(const char *addr, uint16_t port, uint32_t scope)
{
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    sin6.sin6_flowinfo = htonl(scope * 7);
    sin6.sin6_scope_id = scope;
    cr_assert_eq(inet_pton(AF_INET6, addr, &sin6.sin6_addr), 1, "bad test address %s", addr);
    return sin6;
}

/* ip_key_of on a copy of the address that ends at a guard page: the key of an IPv4 address must
 * come from the sockaddr_in alone, never from bytes where an IPv6 address would be. */
static struct ip_key key_guarded(const void *sa, size_t len)
{
    struct guard g;
    const void *copy = guard_copy(&g, sa, len);
    guard_seal(&g);
    struct ip_key k = ip_key_of(copy);
    guard_free(&g);
    return k;
}

static struct ip_key key_v4(const char *addr, uint16_t port)
{
    struct sockaddr_in sin = sin_of(addr, port);
    return key_guarded(&sin, sizeof sin);
}

static struct ip_key key_v6(const char *addr, uint16_t port, uint32_t scope)
{
    struct sockaddr_in6 sin6 = sin6_of(addr, port, scope);
    return key_guarded(&sin6, sizeof sin6);
}

static bool same_key(const struct ip_key *a, const struct ip_key *b)
{
    return memcmp(a, b, sizeof *a) == 0;
}

Test(ip_table, ipv4_key_is_the_address)
{
    static const struct {
        const char *addr;
        uint8_t want[4];
    } cases[] = {
        { "192.0.2.1", { 192, 0, 2, 1 } },
        { "0.0.0.0", { 0, 0, 0, 0 } },
        { "255.255.255.255", { 255, 255, 255, 255 } },
        { "10.20.30.40", { 10, 20, 30, 40 } },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct ip_key k = key_v4(cases[i].addr, 80);
        cr_expect_eq(k.family, AF_INET, "%s: family %u", cases[i].addr, k.family);
        cr_expect(memcmp(k.bytes, cases[i].want, 4) == 0, "%s: wrong address bytes",
                  cases[i].addr);
        static const uint8_t zero[4] = { 0 };
        cr_expect(memcmp(k.bytes + 4, zero, 4) == 0, "%s: bytes after the address not zero",
                  cases[i].addr);
    }
}

Test(ip_table, ipv6_key_is_the_64_bit_prefix)
{
    struct ip_key k = key_v6("2001:db8:a:b:c:d:e:f", 443, 0);
    static const uint8_t want[8] = { 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0a, 0x00, 0x0b };
    cr_expect_eq(k.family, AF_INET6, "family %u", k.family);
    cr_expect(memcmp(k.bytes, want, 8) == 0, "key is not the first 8 bytes of the address");
}

struct pair_case {
    const char *name;
    int family_a;
    const char *a;
    uint16_t port_a;
    uint32_t scope_a;
    int family_b;
    const char *b;
    uint16_t port_b;
    uint32_t scope_b;
    bool same;
};

static const struct pair_case pairs[] = {
    { "IPv4: same address, other port", AF_INET, "192.0.2.1", 1000, 0, AF_INET, "192.0.2.1",
      2000, 0, true },
    { "IPv4: last byte differs", AF_INET, "192.0.2.1", 80, 0, AF_INET, "192.0.2.2", 80, 0,
      false },
    { "IPv4: first byte differs", AF_INET, "192.0.2.1", 80, 0, AF_INET, "193.0.2.1", 80, 0,
      false },
    { "IPv4: middle bytes differ", AF_INET, "10.0.0.1", 80, 0, AF_INET, "10.1.0.1", 80, 0,
      false },
    { "IPv4: neighbours at the top", AF_INET, "255.255.255.255", 80, 0, AF_INET,
      "255.255.255.254", 80, 0, false },
    { "IPv6: same /64, other interface id", AF_INET6, "2001:db8:1:2::1", 80, 0, AF_INET6,
      "2001:db8:1:2::2", 80, 0, true },
    { "IPv6: same /64, interface ids at both ends", AF_INET6, "2001:db8:1:2::", 80, 0, AF_INET6,
      "2001:db8:1:2:ffff:ffff:ffff:ffff", 80, 0, true },
    { "IPv6: same address, other port, flow and scope", AF_INET6, "2001:db8::1", 1, 1,
      AF_INET6, "2001:db8::1", 2, 2, true },
    { "IPv6: last bit of the /64 differs", AF_INET6, "2001:db8:1:2::1", 80, 0, AF_INET6,
      "2001:db8:1:3::1", 80, 0, false },
    { "IPv6: byte 6 differs", AF_INET6, "2001:db8:1:2::", 80, 0, AF_INET6, "2001:db8:1:102::",
      80, 0, false },
    { "IPv6: /48 differs", AF_INET6, "2001:db8:1::", 80, 0, AF_INET6, "2001:db8:2::", 80, 0,
      false },
    { "IPv6: first byte differs", AF_INET6, "2001:db8::", 80, 0, AF_INET6, "3001:db8::", 80, 0,
      false },
    { "IPv6: loopback and ::2 share ::/64", AF_INET6, "::1", 80, 0, AF_INET6, "::2", 80, 0,
      true },
    /* The same bytes under the two families: 1.2.3.4 and 102:304:: both give 01 02 03 04 0 0 0
     * 0; only the family tells them apart. */
    { "IPv4 and IPv6 with the same leading bytes", AF_INET, "1.2.3.4", 80, 0, AF_INET6,
      "102:304::", 80, 0, false },
    { "0.0.0.0 and ::", AF_INET, "0.0.0.0", 80, 0, AF_INET6, "::", 80, 0, false },
};

static struct ip_key key_of_case(int family, const char *addr, uint16_t port, uint32_t scope)
{
    return family == AF_INET ? key_v4(addr, port) : key_v6(addr, port, scope);
}

/* Two addresses share an entry exactly when their keys are equal: checked both on the keys and
 * through a table. */
Test(ip_table, which_addresses_share_an_entry)
{
    for (size_t i = 0; i < N(pairs); i++) {
        const struct pair_case *c = &pairs[i];
        struct ip_key a = key_of_case(c->family_a, c->a, c->port_a, c->scope_a);
        struct ip_key b = key_of_case(c->family_b, c->b, c->port_b, c->scope_b);
        cr_expect_eq(same_key(&a, &b), c->same, "%s: keys %s", c->name,
                     c->same ? "differ" : "are equal");

        struct ip_table t = { 0 };
        struct ip_entry *ea = ip_table_get(&t, &a, true, 5, 0);
        struct ip_entry *eb = ip_table_get(&t, &b, true, 5, 0);
        cr_assert(ea && eb, "%s: entry not created", c->name);
        cr_expect_eq(ea == eb, c->same, "%s: %s", c->name,
                     c->same ? "two entries for one client" : "one entry for two clients");
        cr_expect_eq(t.count, c->same ? 1u : 2u, "%s: %zu entries", c->name, t.count);
        ip_table_free(&t);
    }
}

/* ---- Finding and creating ------------------------------------------------------------------- */

Test(ip_table, get_without_create_on_an_empty_table)
{
    struct ip_table t = { 0 };
    struct ip_key k = key_v4("192.0.2.1", 80);
    cr_expect_null(ip_table_get(&t, &k, false, 5, 0), "found an entry in an empty table");
    cr_expect_eq(t.count, 0, "count %zu after a failed lookup", t.count);
    cr_expect_null(t.buckets, "a lookup allocated buckets");
    cr_expect_eq(t.nbuckets, 0, "a lookup made %zu buckets", t.nbuckets);
    cr_expect_eq(ip_table_expire(&t, 1, 5, 100), 0, "expired entries of an empty table");
    ip_table_free(&t);
}

Test(ip_table, create_then_find)
{
    struct ip_table t = { 0 };
    struct ip_key k = key_v6("2001:db8::1", 80, 0);
    struct ip_entry *e = ip_table_get(&t, &k, true, 5, 10);
    cr_assert_not_null(e, "entry not created");
    cr_expect(same_key(&e->key, &k), "entry has another key");
    cr_expect_eq(e->conns, 0, "new entry has %u connections", e->conns);
    cr_expect_eq(t.count, 1, "count %zu", t.count);
    cr_expect(t.nbuckets > 0 && (t.nbuckets & (t.nbuckets - 1)) == 0,
              "%zu buckets: not a power of two", t.nbuckets);
    /* The connects bucket starts full at the given time: the whole burst at once, no more. */
    cr_expect(bucket_take(&e->connects, 1, 5, 5, 10), "new entry's bucket not full");
    cr_expect_not(bucket_take(&e->connects, 1, 5, 0.5, 10), "new entry's bucket over full");

    cr_expect_eq(ip_table_get(&t, &k, false, 5, 10), e, "not found again");
    struct ip_key other = key_v6("2001:db8:0:1::1", 80, 0);
    cr_expect_null(ip_table_get(&t, &other, false, 5, 10), "found a key never added");
    cr_expect_eq(t.count, 1, "a lookup changed the count to %zu", t.count);
    ip_table_free(&t);
}

/* Getting an entry that exists, with create set, returns it as it is: a client that reconnects
 * does not get a fresh bucket or lose its connection count. */
Test(ip_table, create_on_an_existing_entry_changes_nothing)
{
    struct ip_table t = { 0 };
    struct ip_key k = key_v4("198.51.100.7", 80);
    struct ip_entry *e = ip_table_get(&t, &k, true, 3, 0);
    cr_assert_not_null(e);
    e->conns = 2;
    cr_assert(bucket_take(&e->connects, 1, 3, 3, 0), "burst refused");
    struct ip_entry *again = ip_table_get(&t, &k, true, 100, 50);
    cr_expect_eq(again, e, "a second entry for the same key");
    cr_expect_eq(t.count, 1, "count %zu", t.count);
    cr_expect_eq(e->conns, 2, "connections reset to %u", e->conns);
    cr_expect_not(bucket_take(&e->connects, 1, 3, 0.5, 0), "bucket refilled by a second get");
    ip_table_free(&t);
}

/* ---- Growth --------------------------------------------------------------------------------- */

#define MANY 6000

/* The i-th of MANY distinct keys: IPv4 addresses for even i, IPv6 /64s for odd i. */
static struct ip_key many_key(size_t i)
{
    if (i % 2 == 0) {
        struct sockaddr_in sin;
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        uint32_t a = 0x0A000000u + (uint32_t)i * 257u;
        sin.sin_addr.s_addr = htonl(a);
        return ip_key_of((const struct sockaddr *)(const void *)&sin);
    }
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr.s6_addr[0] = 0x20;
    sin6.sin6_addr.s6_addr[1] = 0x01;
    sin6.sin6_addr.s6_addr[6] = (uint8_t)(i >> 8);
    sin6.sin6_addr.s6_addr[7] = (uint8_t)i;
    sin6.sin6_addr.s6_addr[15] = (uint8_t)(i * 31); /* outside the /64: must not matter */
    return ip_key_of((const struct sockaddr *)(const void *)&sin6);
}

/* Walks every chain: the number of entries and the longest chain. */
static size_t walk(const struct ip_table *t, size_t *longest)
{
    size_t total = 0;
    *longest = 0;
    for (size_t b = 0; b < t->nbuckets; b++) {
        size_t chain = 0;
        for (const struct ip_entry *e = t->buckets[b]; e; e = e->next) chain++;
        total += chain;
        if (chain > *longest) *longest = chain;
    }
    return total;
}

Test(ip_table, thousands_of_entries_grow_the_table)
{
    static struct ip_entry *made[MANY];
    struct ip_table t = { 0 };
    for (size_t i = 0; i < MANY; i++) {
        struct ip_key k = many_key(i);
        made[i] = ip_table_get(&t, &k, true, 5, (double)i);
        cr_assert_not_null(made[i], "entry %zu not created", i);
        made[i]->conns = (uint32_t)i; /* a tag to recognise it by */
        if (t.count != i + 1) cr_assert_eq(t.count, i + 1, "count %zu after %zu", t.count, i + 1);
    }
    cr_expect(t.nbuckets > 0 && (t.nbuckets & (t.nbuckets - 1)) == 0,
              "%zu buckets: not a power of two", t.nbuckets);
    size_t longest;
    size_t total = walk(&t, &longest);
    cr_expect_eq(total, (size_t)MANY, "%zu entries in the chains, want %d", total, MANY);
    /* Growth keeps lookups short: a table that never grew would have chains of dozens. */
    cr_expect_geq(t.nbuckets, (size_t)MANY / 2, "only %zu buckets for %d entries", t.nbuckets,
                  MANY);
    cr_expect_leq(longest, 16, "a chain of %zu entries", longest);
    /* Every entry is found where it was made: growth moved no entry in memory. */
    for (size_t i = 0; i < MANY; i++) {
        struct ip_key k = many_key(i);
        struct ip_entry *e = ip_table_get(&t, &k, false, 5, 0);
        if (e != made[i] || e->conns != (uint32_t)i || !same_key(&e->key, &k)) {
            cr_expect(false, "entry %zu: found %p, made %p", i, (void *)e, (void *)made[i]);
            break;
        }
    }
    /* And creating any of them again adds nothing. */
    for (size_t i = 0; i < MANY; i += 97) {
        struct ip_key k = many_key(i);
        cr_expect_eq(ip_table_get(&t, &k, true, 5, 0), made[i], "entry %zu made twice", i);
    }
    cr_expect_eq(t.count, (size_t)MANY, "count %zu", t.count);
    ip_table_free(&t);
}

/* ---- Expiry --------------------------------------------------------------------------------- */

struct expire_case {
    const char *name;
    double rate, burst;
    double created;     /* the entry is made full at this time */
    double taken;       /* tokens then taken, at the same time */
    uint32_t conns;
    double now;         /* ip_table_expire time */
    bool freed;
};

static const struct expire_case expires[] = {
    { "unused, no connection", 2, 4, 0, 0, 0, 0, true },
    { "unused, a connection open", 2, 4, 0, 0, 1, 0, false },
    { "unused, many connections open", 2, 4, 0, 0, UINT32_MAX, 1e9, false },
    { "emptied, half refilled", 2, 4, 0, 4, 0, 1, false },
    { "emptied, a quarter token short", 2, 4, 0, 4, 0, 1.875, false },
    { "emptied, exactly refilled", 2, 4, 0, 4, 0, 2, true },
    { "emptied, long since refilled", 2, 4, 0, 4, 0, 1000, true },
    { "emptied, refilled, a connection open", 2, 4, 0, 4, 1, 1000, false },
    { "one token used, not yet back", 2, 4, 0, 1, 0, 0.25, false },
    { "one token used, back", 2, 4, 0, 1, 0, 0.5, true },
    { "fractions: short", 0.5, 1, 10, 0.25, 0, 10.25, false },
    { "fractions: back", 0.5, 1, 10, 0.25, 0, 10.5, true },
    { "slow rate, emptied an hour ago", 0.001, 4, 0, 4, 0, 3600, false },
    { "slow rate, emptied long enough ago", 0.001, 4, 0, 4, 0, 4001, true },
    { "rate 0: emptied, no connection", 0, 4, 0, 4, 0, 0, true },
    { "rate 0: a connection open", 0, 4, 0, 4, 1, 1e9, false },
    { "rate 0: unused, no connection", 0, 4, 0, 0, 0, 0, true },
    /* A full bucket has refilled by any time, even one before it was filled (the clock stepped
     * back); one that is not full has not, as long as no time is seen to pass. */
    { "clock stepped back, full bucket", 2, 4, 100, 0, 0, 50, true },
    { "clock stepped back, used bucket", 2, 4, 100, 1, 0, 50, false },
    { "clock stepped back a long way, full bucket", 2, 4, 100, 0, 0, -1e9, true },
};

Test(ip_table, expire_table)
{
    for (size_t i = 0; i < N(expires); i++) {
        const struct expire_case *c = &expires[i];
        struct ip_table t = { 0 };
        struct ip_key k = key_v4("203.0.113.9", 80);
        struct ip_entry *e = ip_table_get(&t, &k, true, c->burst, c->created);
        cr_assert_not_null(e, "%s: not created", c->name);
        /* Taken as the server takes them; no time passes, so the rate plays no part here. */
        if (c->taken > 0)
            cr_assert(bucket_take(&e->connects, 1, c->burst, c->taken, c->created),
                      "%s: could not take %g", c->name, c->taken);
        e->conns = c->conns;
        size_t n = ip_table_expire(&t, c->rate, c->burst, c->now);
        cr_expect_eq(n, c->freed ? 1u : 0u, "%s: %zu freed", c->name, n);
        struct ip_entry *found = ip_table_get(&t, &k, false, c->burst, c->now);
        cr_expect_eq(found != NULL, !c->freed, "%s: entry %s", c->name,
                     found ? "still there" : "gone");
        cr_expect_eq(t.count, c->freed ? 0u : 1u, "%s: count %zu", c->name, t.count);
        ip_table_free(&t);
    }
}

/* Expiry over a full table: entries to keep and to free interleaved in every chain, so that
 * unlinking from the head, the middle and the end of chains is all exercised. */
Test(ip_table, expire_frees_exactly_the_idle_refilled_entries)
{
    static struct ip_entry *made[MANY];
    static bool want_freed[MANY];
    const double rate = 4, burst = 2;
    struct ip_table t = { 0 };
    size_t want_total = 0;
    for (size_t i = 0; i < MANY; i++) {
        struct ip_key k = many_key(i);
        made[i] = ip_table_get(&t, &k, true, burst, 0);
        cr_assert_not_null(made[i]);
        /* Three kinds: idle and untouched (freed at t = 0.25), idle but emptied at t = 0 (not
         * yet refilled at 0.25: 1 token of 2), and connected (kept). */
        switch (i % 3) {
        case 0:
            want_freed[i] = true;
            break;
        case 1:
            cr_assert(bucket_take(&made[i]->connects, rate, burst, burst, 0));
            want_freed[i] = false;
            break;
        default:
            made[i]->conns = 1;
            want_freed[i] = false;
            break;
        }
        want_total += want_freed[i];
    }
    size_t n = ip_table_expire(&t, rate, burst, 0.25);
    cr_expect_eq(n, want_total, "%zu freed, want %zu", n, want_total);
    cr_expect_eq(t.count, MANY - want_total, "count %zu, want %zu", t.count, MANY - want_total);
    size_t longest;
    cr_expect_eq(walk(&t, &longest), t.count, "chains and count disagree");
    for (size_t i = 0; i < MANY; i++) {
        struct ip_key k = many_key(i);
        struct ip_entry *e = ip_table_get(&t, &k, false, burst, 0.25);
        if (want_freed[i] ? e != NULL : e != made[i]) {
            cr_expect(false, "entry %zu (kind %zu): %s", i, i % 3,
                      e ? "kept, or moved" : "freed");
            break;
        }
    }
    cr_expect_eq(ip_table_expire(&t, rate, burst, 0.25), 0, "a second pass freed more");

    /* Half a second later the emptied ones have refilled; the connected ones stay. */
    n = ip_table_expire(&t, rate, burst, 0.5);
    cr_expect_eq(n, (MANY + 1) / 3, "%zu freed at 0.5", n);
    cr_expect_eq(t.count, MANY / 3, "count %zu at 0.5", t.count);

    /* A freed address comes back with a fresh, full bucket. */
    struct ip_key k0 = many_key(0);
    struct ip_entry *back = ip_table_get(&t, &k0, true, burst, 10);
    cr_assert_not_null(back);
    cr_expect_eq(back->conns, 0, "a new entry with %u connections", back->conns);
    cr_expect(bucket_take(&back->connects, rate, burst, burst, 10), "not full on its return");
    ip_table_free(&t);
}

/* ---- Freeing -------------------------------------------------------------------------------- */

Test(ip_table, free_empties_the_table_and_leaves_it_usable)
{
    struct ip_table t = { 0 };
    ip_table_free(&t); /* an empty table too */
    cr_expect(t.buckets == NULL && t.nbuckets == 0 && t.count == 0, "empty table not zeroed");
    for (size_t i = 0; i < 1000; i++) {
        struct ip_key k = many_key(i);
        cr_assert_not_null(ip_table_get(&t, &k, true, 1, 0));
    }
    ip_table_free(&t);
    cr_expect(t.buckets == NULL && t.nbuckets == 0 && t.count == 0, "table not zeroed");
    struct ip_key k = many_key(1);
    cr_expect_null(ip_table_get(&t, &k, false, 1, 0), "found an entry after free");
    struct ip_entry *e = ip_table_get(&t, &k, true, 1, 0);
    cr_expect_not_null(e, "table not usable after free");
    cr_expect_eq(t.count, 1, "count %zu after reuse", t.count);
    ip_table_free(&t);
    ip_table_free(&t); /* twice is harmless */
    cr_expect(t.buckets == NULL && t.count == 0, "table not zeroed after a second free");
}
