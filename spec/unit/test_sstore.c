/* Tests for the store behind mw.shared (core/sstore.h): get/set/add/incr/delete of strings,
 * integers, numbers and booleans; expiry; namespaces; the byte cap (expired entries make room,
 * live ones are never evicted); and incr from four threads at once adding up exactly (also
 * under ThreadSanitizer: build/unit-tests-tsan). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "sstore.h"

static struct sstore_value str(const char *s)
{
    return (struct sstore_value){ .type = SSTORE_STRING, .s = s, .len = strlen(s) };
}
static struct sstore_value integer(int64_t i)
{
    return (struct sstore_value){ .type = SSTORE_INTEGER, .i = i };
}

/* The value of key (ns 0) at now, with a string copied into a static buffer. */
static struct sstore_value get(struct sstore *st, const char *key, double now)
{
    static char text[256];
    struct sstore_value v;
    char *buf;
    cr_assert_eq(sstore_get(st, 0, key, strlen(key), now, &v, &buf), SSTORE_OK);
    if (buf) {
        cr_assert_lt(v.len, sizeof text);
        memcpy(text, buf, v.len);
        text[v.len] = '\0';
        v.s = text;
        free(buf);
    }
    return v;
}

static int set(struct sstore *st, const char *key, struct sstore_value v, double ttl, double now)
{
    return sstore_set(st, 0, key, strlen(key), &v, ttl, false, now);
}

Test(sstore, values_of_each_type)
{
    struct sstore st;
    sstore_init(&st, 0);
    cr_assert_eq(get(&st, "a", 0).type, SSTORE_NONE);
    cr_assert_eq(set(&st, "a", str("hello"), 0, 0), SSTORE_OK);
    struct sstore_value v = get(&st, "a", 0);
    cr_assert_eq(v.type, SSTORE_STRING);
    cr_assert_str_eq(v.s, "hello");
    cr_assert_eq(set(&st, "a", integer(42), 0, 0), SSTORE_OK, "a new type replaces the old");
    v = get(&st, "a", 0);
    cr_assert_eq(v.type, SSTORE_INTEGER);
    cr_assert_eq(v.i, 42);
    struct sstore_value d = { .type = SSTORE_NUMBER, .d = 1.5 };
    cr_assert_eq(set(&st, "d", d, 0, 0), SSTORE_OK);
    cr_assert_eq(get(&st, "d", 0).d, 1.5);
    struct sstore_value b = { .type = SSTORE_BOOLEAN, .i = 1 };
    cr_assert_eq(set(&st, "b", b, 0, 0), SSTORE_OK);
    cr_assert_eq(get(&st, "b", 0).type, SSTORE_BOOLEAN);
    /* Deleting. */
    struct sstore_value none = { .type = SSTORE_NONE };
    cr_assert_eq(set(&st, "a", none, 0, 0), SSTORE_OK);
    cr_assert_eq(get(&st, "a", 0).type, SSTORE_NONE);
    /* Namespaces: the same key in another is another value. */
    struct sstore_value other = str("other");
    cr_assert_eq(sstore_set(&st, 1, "b", 1, &other, 0, false, 0), SSTORE_OK);
    cr_assert_eq(get(&st, "b", 0).type, SSTORE_BOOLEAN);
    sstore_free(&st);
}

Test(sstore, add_incr_and_expiry)
{
    struct sstore st;
    sstore_init(&st, 0);
    struct sstore_value one = integer(1), out;
    cr_assert_eq(sstore_set(&st, 0, "k", 1, &one, 0, true, 0), SSTORE_OK);
    cr_assert_eq(sstore_set(&st, 0, "k", 1, &one, 0, true, 0), SSTORE_E_EXISTS);
    struct sstore_value five = integer(5);
    cr_assert_eq(sstore_incr(&st, 0, "k", 1, &five, 0, 0, &out), SSTORE_OK);
    cr_assert_eq(out.type, SSTORE_INTEGER);
    cr_assert_eq(out.i, 6);
    /* Missing: counts from 0. */
    cr_assert_eq(sstore_incr(&st, 0, "n", 1, &five, 0, 0, &out), SSTORE_OK);
    cr_assert_eq(out.i, 5);
    struct sstore_value half = { .type = SSTORE_NUMBER, .d = 0.5 };
    cr_assert_eq(sstore_incr(&st, 0, "n", 1, &half, 0, 0, &out), SSTORE_OK);
    cr_assert_eq(out.type, SSTORE_NUMBER);
    cr_assert_eq(out.d, 5.5);
    cr_assert_eq(set(&st, "s", str("x"), 0, 0), SSTORE_OK);
    cr_assert_eq(sstore_incr(&st, 0, "s", 1, &five, 0, 0, &out), SSTORE_E_NOT_NUMBER);
    struct sstore_value max = integer(INT64_MAX);
    cr_assert_eq(sstore_incr(&st, 0, "k", 1, &max, 0, 0, &out), SSTORE_E_OVERFLOW);
    /* Expiry: gone at 10 + 2, and add works again. */
    cr_assert_eq(set(&st, "e", str("soon"), 2, 10), SSTORE_OK);
    cr_assert_eq(get(&st, "e", 11.9).type, SSTORE_STRING);
    cr_assert_eq(get(&st, "e", 12).type, SSTORE_NONE);
    cr_assert_eq(sstore_set(&st, 0, "e", 1, &one, 0, true, 12), SSTORE_OK);
    /* incr of a missing key with a ttl sets the expiry; of an existing one keeps it. */
    cr_assert_eq(sstore_incr(&st, 0, "t", 1, &one, 5, 100, &out), SSTORE_OK);
    cr_assert_eq(sstore_incr(&st, 0, "t", 1, &one, 50, 101, &out), SSTORE_OK);
    cr_assert_eq(out.i, 2);
    cr_assert_eq(get(&st, "t", 105).type, SSTORE_NONE);
    sstore_free(&st);
}

Test(sstore, the_cap_holds_and_expired_entries_make_room)
{
    struct sstore st;
    sstore_init(&st, 4096);
    char key[32];
    int stored = 0;
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        int rc = set(&st, key, str("0123456789abcdef0123456789abcdef"), 1, 0);
        if (rc == SSTORE_OK) stored++;
        else cr_assert_eq(rc, SSTORE_E_FULL);
        cr_assert_leq(sstore_bytes(&st), 4096);
    }
    cr_assert_gt(stored, 10);
    cr_assert_lt(stored, 1000);
    /* Full of live entries: refused, nothing evicted. */
    cr_assert_eq(set(&st, "more", str("0123456789abcdef0123456789abcdef0123456789abcdef"), 0,
                     0.5),
                 SSTORE_E_FULL);
    cr_assert_eq(get(&st, "key-0", 0.5).type, SSTORE_STRING);
    /* Once they have expired, a write that needs the room frees them. */
    cr_assert_eq(set(&st, "more", str("0123456789abcdef0123456789abcdef0123456789abcdef"), 0, 2),
                 SSTORE_OK);
    cr_assert_lt(sstore_bytes(&st), 1024);
    /* Replacing a value with one no larger needs no room. */
    for (int i = 0; sstore_bytes(&st) < 3900 && i < 1000; i++) {
        snprintf(key, sizeof key, "live-%d", i);
        set(&st, key, str("0123456789"), 0, 2);
    }
    cr_assert_eq(set(&st, "more", str("y"), 0, 2), SSTORE_OK);
    sstore_free(&st);
}

#define THREADS 4
#define INCRS 20000

static void *incr_many(void *arg)
{
    struct sstore *st = arg;
    struct sstore_value one = integer(1), out;
    char key[16];
    for (int i = 0; i < INCRS; i++) {
        snprintf(key, sizeof key, "k%d", i % 7);
        cr_assert_eq(sstore_incr(st, 0, "total", 5, &one, 0, 0, &out), SSTORE_OK);
        sstore_incr(st, 0, key, strlen(key), &one, 0, 0, &out);
    }
    return NULL;
}

Test(sstore, incr_from_threads_is_exact)
{
    struct sstore st;
    sstore_init(&st, 1 << 20);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, incr_many, &st);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    cr_assert_eq(get(&st, "total", 0).i, THREADS * INCRS);
    int64_t sum = 0;
    char key[16];
    for (int k = 0; k < 7; k++) {
        snprintf(key, sizeof key, "k%d", k);
        sum += get(&st, key, 0).i;
    }
    cr_assert_eq(sum, THREADS * INCRS);
    sstore_free(&st);
}
