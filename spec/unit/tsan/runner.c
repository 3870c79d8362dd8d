/* Runs the tests registered through spec/unit/tsan/criterion/criterion.h, one after another
 * in this process (under ThreadSanitizer), printing TAP to stdout and to --tap=FILE when
 * given. Exits 1 when a test failed; TSan's own reports make it exit 66. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "criterion/criterion.h"

static struct tsan_test *first, **last = &first;
static jmp_buf failed;
static char why[1024];

void tsan_register(struct tsan_test *t)
{
    *last = t;
    last = &t->next;
}

void tsan_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    int n = snprintf(why, sizeof why, "%s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why + n, sizeof why - (size_t)n, fmt, ap);
    va_end(ap);
    /* Said at once: threads the test started may still run and crash after the jump. */
    fprintf(stderr, "%s\n", why);
    longjmp(failed, 1);
}

int main(int argc, char **argv)
{
    static FILE *tap;
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--tap=", 6) == 0 && !(tap = fopen(argv[i] + 6, "w"))) {
            perror(argv[i] + 6);
            return 2;
        }
    int count = 0;
    volatile int bad = 0;
    for (struct tsan_test *t = first; t; t = t->next) count++;
    printf("1..%d\n", count);
    if (tap) fprintf(tap, "1..%d\n", count);
    volatile int i = 0;
    for (struct tsan_test *volatile t = first; t; t = t->next) {
        i++;
        why[0] = '\0';
        volatile int ok = setjmp(failed) == 0;
        if (ok) t->fn();
        const char *verdict = ok && !why[0] ? "ok" : "not ok";
        if (!(ok && !why[0])) bad++;
        printf("%s %d - %s::%s%s%s\n", verdict, i, t->suite, t->name, why[0] ? "\n# " : "", why);
        if (tap)
            fprintf(tap, "%s %d - %s::%s%s%s\n", verdict, i, t->suite, t->name,
                    why[0] ? "\n# " : "", why);
    }
    if (tap) fclose(tap);
    return bad ? 1 : 0;
}
