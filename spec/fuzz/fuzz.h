/* Shared pieces of the fuzz targets: a check that aborts with a message, guard-page copies, the
 * split plan that lets the fuzzer choose how an input is chopped, and a reference UTF-8 decoder.
 *
 * Every target is one .c file defining LLVMFuzzerTestOneInput. It is linked with libFuzzer by
 * `make fuzz` (clang) and with replay.c by `make test` (gcc), so nothing here may depend on
 * either: plain C11 plus POSIX mmap. */
#ifndef MOONWIRE_SPEC_FUZZ_H
#define MOONWIRE_SPEC_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a crash: libFuzzer saves the input, the replay runner names it. */
#define FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* ---- Guard copies ---------------------------------------------------------------------------
 * A copy placed so that it ends exactly where a PROT_NONE page begins: reading one byte past it
 * is a SIGSEGV even without ASan, and even where ASan would see a read inside a larger block.
 * Mappings are kept per slot and reused (a syscall per input would halve the fuzzing speed);
 * each slot holds one live copy, so a target uses one slot per buffer it needs at once. */

#define FUZZ_GUARD_SLOTS 4

struct fuzz_guard_slot {
    uint8_t *map;
    size_t rw; /* readable bytes before the guard page */
};

static inline uint8_t *fuzz_guard_copy(unsigned slot, const void *src, size_t len)
{
    static struct fuzz_guard_slot slots[FUZZ_GUARD_SLOTS];
    struct fuzz_guard_slot *g = &slots[slot];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (!g->map || len > g->rw) {
        if (g->map) munmap(g->map, g->rw + page);
        size_t rw = (len + page - 1) / page * page;
        if (rw < 16 * page) rw = 16 * page;
        void *m = mmap(NULL, rw + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        FUZZ_CHECK(m != MAP_FAILED, "guard: mmap of %zu bytes failed", rw + page);
        g->map = m;
        g->rw = rw;
        FUZZ_CHECK(mprotect(g->map + rw, page, PROT_NONE) == 0, "guard: mprotect failed");
    }
    uint8_t *p = g->map + g->rw - len;
    if (len) memcpy(p, src, len);
    return p;
}

/* ---- Split plans ----------------------------------------------------------------------------
 * The targets read a few bytes at the front of the input as a plan for chopping the rest, so
 * libFuzzer mutates the chunking like any other input byte and keeps chunkings that reach new
 * code. A plan byte below 0x80 is a piece of 1..128 bytes, one above is 1..2033 bytes in steps
 * of 16; the plan repeats. */

#define FUZZ_PLAN_LEN 8

struct fuzz_plan {
    uint8_t sizes[FUZZ_PLAN_LEN];
    size_t next;
};

static inline void fuzz_plan_init(struct fuzz_plan *fp, const uint8_t plan[FUZZ_PLAN_LEN])
{
    memcpy(fp->sizes, plan, FUZZ_PLAN_LEN);
    fp->next = 0;
}

static inline size_t fuzz_plan_piece(struct fuzz_plan *fp, size_t left)
{
    unsigned b = fp->sizes[fp->next++ % FUZZ_PLAN_LEN];
    size_t n = b & 0x80 ? ((size_t)(b & 0x7F) << 4) + 1 : (size_t)b + 1;
    return n < left ? n : left;
}

/* ---- Reference UTF-8 ------------------------------------------------------------------------
 * Written from RFC 3629 section 3 rather than from Unicode table 3-7 (which core/utf8.c
 * follows), so the two can disagree. A lead byte announces a length and carries the top bits of
 * the code point; after each byte, the code points still reachable from the bits so far form
 * an interval, and the byte is rejected when that interval holds no scalar value of this length:
 * that is the "first byte that can no longer belong to well-formed text" of core/utf8.h. */

struct ref_utf8 {
    unsigned len;  /* length of the sequence in progress; 0 between characters */
    unsigned got;  /* bytes of it seen */
    uint32_t bits; /* the code point bits so far */
};

static inline bool ref_utf8_byte(struct ref_utf8 *u, uint8_t b)
{
    if (u->len == 0) {
        if (b < 0x80) return true;
        if ((b & 0xE0) == 0xC0) u->len = 2, u->bits = b & 0x1Fu;
        else if ((b & 0xF0) == 0xE0) u->len = 3, u->bits = b & 0x0Fu;
        else if ((b & 0xF8) == 0xF0) u->len = 4, u->bits = b & 0x07u;
        else return false; /* a continuation byte, or 11111xxx */
        u->got = 1;
    } else {
        if ((b & 0xC0) != 0x80) return false;
        u->bits = u->bits << 6 | (b & 0x3Fu);
        u->got++;
    }
    unsigned left = 6 * (u->len - u->got);
    uint32_t lo = u->bits << left, hi = lo | ((1u << left) - 1);
    uint32_t min = u->len == 2 ? 0x80 : u->len == 3 ? 0x800 : 0x10000;
    if (lo < min) lo = min;
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi) return false;                     /* overlong, or above U+10FFFF */
    if (lo >= 0xD800 && hi <= 0xDFFF) return false; /* only surrogates left */
    if (u->got == u->len) u->len = u->got = 0;
    return true;
}

static inline bool ref_utf8_at_boundary(const struct ref_utf8 *u) { return u->len == 0; }

/* Close codes that may appear on the wire, listed from RFC 6455 section 7.4 and the IANA
 * registry (1012-1014 registered later; 1004-1006 and 1015 reserved). */
static inline bool ref_close_code_valid(unsigned code)
{
    switch (code) {
    case 1000: case 1001: case 1002: case 1003:
    case 1007: case 1008: case 1009: case 1010: case 1011: case 1012: case 1013: case 1014:
        return true;
    default:
        return code >= 3000 && code < 5000;
    }
}

#endif
