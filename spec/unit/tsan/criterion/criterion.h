/* The part of Criterion's API the threaded unit tests use (Test, cr_assert...), for the
 * ThreadSanitizer build (build/unit-tests-tsan) only.
 *
 * Criterion itself cannot run under ThreadSanitizer: it maps its shared arena at a fixed
 * address that TSan reserves, and aborts at start ("Could not initialize inheritable arena",
 * Snaipe/Criterion#274, open). The Makefile puts this folder first on the include path of
 * that build, so the same test sources (spec/unit/test_bus.c, ...) run unchanged under TSan;
 * spec/unit/tsan/runner.c runs them one after another and prints TAP. */
#ifndef MOONWIRE_TSAN_CRITERION_H
#define MOONWIRE_TSAN_CRITERION_H

#include <stdio.h>
#include <string.h>

struct tsan_test {
    const char *suite, *name;
    void (*fn)(void);
    struct tsan_test *next;
};

void tsan_register(struct tsan_test *t);
/* Reports a failed assertion (file:line and the message) and ends the test. */
void tsan_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

#define Test(suite_, name_)                                                                 \
    static void suite_##_##name_(void);                                                    \
    static struct tsan_test suite_##_##name_##_entry = { #suite_, #name_, suite_##_##name_, \
                                                          NULL };                           \
    __attribute__((constructor)) static void suite_##_##name_##_register(void)             \
    {                                                                                       \
        tsan_register(&suite_##_##name_##_entry);                                           \
    }                                                                                       \
    static void suite_##_##name_(void)

#define cr_assert(cond, ...)                                                                \
    do {                                                                                    \
        if (!(cond)) tsan_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                 \
    } while (0)
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)

#endif
