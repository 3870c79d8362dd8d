/* Guard-page buffers for parser tests.
 *
 * ASan catches reads past a heap block, but not past a buffer inside a larger one, and not at
 * all in the build without sanitizers. So parser inputs are copied to the very end of a
 * read-write mapping that is followed by a PROT_NONE page: reading even one byte past the input
 * kills the test with SIGSEGV, which Criterion reports as a crash of that test. */
#ifndef MOONWIRE_SPEC_GUARD_H
#define MOONWIRE_SPEC_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

struct guard {
    uint8_t *map;   /* the whole mapping: readable pages, then the guard page */
    size_t map_len;
    uint8_t *data;  /* the copy; data + len is the first byte of the guard page */
    size_t len;
};

/* Copies src[0..len) so that it ends exactly where the guard page begins and returns the copy.
 * The copy is writable (the frame reader unmasks in place). len 0 is allowed: the returned
 * pointer is then the guard page itself, so any access crashes. Free with guard_free. */
static inline uint8_t *guard_copy(struct guard *g, const void *src, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    /* At least one readable page, so that an empty input still has a mapping in front. */
    size_t rw = len == 0 ? page : (len + page - 1) / page * page;
    g->map_len = rw + page;
    void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED, "guard: mmap of %zu bytes failed", g->map_len);
    g->map = m;
    cr_assert_eq(mprotect(g->map + rw, page, PROT_NONE), 0, "guard: mprotect failed");
    g->data = g->map + rw - len;
    g->len = len;
    if (len) memcpy(g->data, src, len);
    return g->data;
}

/* The same for text: the copy has no terminating NUL, so a parser that runs on to find one
 * crashes too. */
static inline const char *guard_copy_str(struct guard *g, const char *s, size_t len)
{
    return (const char *)guard_copy(g, s, len);
}

/* Makes the copy read-only as well, for code that takes a const pointer: a write through it
 * then crashes instead of silently changing the input. */
static inline void guard_seal(struct guard *g)
{
    cr_assert_eq(mprotect(g->map, g->map_len - (size_t)sysconf(_SC_PAGESIZE), PROT_READ), 0,
                 "guard: mprotect failed");
}

static inline void guard_free(struct guard *g)
{
    if (g->map) munmap(g->map, g->map_len);
    memset(g, 0, sizeof *g);
}

#endif
