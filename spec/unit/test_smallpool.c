/* Tests for the small-block pool (core/smallpool.h): blocks are aligned, sized to their class
 * and never overlap while live; a freed block is reused by its own class only; a slab's tail
 * is not lost; destroy leaves an empty, usable pool. A long random run keeps a pattern in every
 * live block and checks none was overwritten. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "smallpool.h"

Test(smallpool, classes_round_up_to_the_grain)
{
    cr_assert_eq(sp_class(1), 0);
    cr_assert_eq(sp_class(SP_GRAIN), 0);
    cr_assert_eq(sp_class(SP_GRAIN + 1), 1);
    cr_assert_eq(sp_class(SP_MAX), SP_CLASSES - 1);
}

Test(smallpool, blocks_are_aligned_and_disjoint)
{
    struct smallpool p = { 0 };
    enum { N = 3000 }; /* several slabs */
    static uint8_t *blocks[N];
    static size_t sizes[N];
    for (size_t i = 0; i < N; i++) {
        sizes[i] = 1 + (i * 37) % SP_MAX;
        blocks[i] = sp_alloc(&p, sizes[i]);
        cr_assert_not_null(blocks[i]);
        cr_assert_eq((uintptr_t)blocks[i] % SP_GRAIN, 0, "block %zu is not aligned", i);
        memset(blocks[i], (int)(i & 0xFF), sizes[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < sizes[i]; j++)
            cr_assert_eq(blocks[i][j], (uint8_t)(i & 0xFF), "block %zu was overwritten", i);
    cr_assert_gt(p.slab_bytes, SP_SLAB, "%zu blocks fit in one slab?", (size_t)N);
    sp_destroy(&p);
    cr_assert_eq(p.slab_bytes, 0);
    cr_assert_null(p.slabs);
}

Test(smallpool, a_freed_block_is_reused_by_its_class_only)
{
    struct smallpool p = { 0 };
    void *a = sp_alloc(&p, 40);
    sp_free(&p, a, 40);
    void *other = sp_alloc(&p, 100); /* another class: a fresh block */
    cr_assert_neq(other, a);
    void *again = sp_alloc(&p, 33); /* 33 and 40 share a class */
    cr_assert_eq(again, a, "a freed block of the class was not reused");
    sp_destroy(&p);
}

Test(smallpool, the_tail_of_a_full_slab_serves_smaller_classes)
{
    struct smallpool p = { 0 };
    /* Fill the first slab with SP_MAX blocks but for less than one block, then ask for one
     * more: a new slab starts, and the old tail must come back as smaller blocks. */
    size_t fit = SP_SLAB / SP_MAX;
    for (size_t i = 0; i < fit - 1; i++) cr_assert_not_null(sp_alloc(&p, SP_MAX));
    void *tail = sp_alloc(&p, SP_MAX - SP_GRAIN); /* leaves SP_GRAIN bytes */
    cr_assert_not_null(tail);
    cr_assert_eq(p.slab_bytes, SP_SLAB);
    void *next = sp_alloc(&p, SP_MAX);
    cr_assert_eq(p.slab_bytes, 2 * SP_SLAB, "a second slab should have started");
    void *small = sp_alloc(&p, SP_GRAIN);
    cr_assert_eq((char *)small, (char *)tail + SP_MAX - SP_GRAIN,
                 "the first slab's last grain was lost");
    (void)next;
    sp_destroy(&p);
}

Test(smallpool, destroy_leaves_a_usable_pool)
{
    struct smallpool p = { 0 };
    for (int i = 0; i < 100; i++) sp_alloc(&p, 64);
    sp_destroy(&p);
    void *b = sp_alloc(&p, 64);
    cr_assert_not_null(b);
    cr_assert_eq(p.slab_bytes, SP_SLAB);
    sp_destroy(&p);
}

Test(smallpool, random_churn_keeps_every_live_block_intact)
{
    struct smallpool p = { 0 };
    enum { SLOTS = 512, STEPS = 200000 };
    static uint8_t *blocks[SLOTS];
    static size_t sizes[SLOTS];
    uint64_t x = 88172645463325252ull; /* xorshift64 */
    for (int step = 0; step < STEPS; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t i = (size_t)(x % SLOTS);
        if (blocks[i]) {
            for (size_t j = 0; j < sizes[i]; j++)
                cr_assert_eq(blocks[i][j], (uint8_t)(i * 7 + j),
                             "step %d: block %zu byte %zu was overwritten", step, i, j);
            sp_free(&p, blocks[i], sizes[i]);
            blocks[i] = NULL;
        } else {
            sizes[i] = 1 + (size_t)((x >> 20) % SP_MAX);
            blocks[i] = sp_alloc(&p, sizes[i]);
            cr_assert_not_null(blocks[i]);
            for (size_t j = 0; j < sizes[i]; j++) blocks[i][j] = (uint8_t)(i * 7 + j);
        }
    }
    /* At most SLOTS blocks of SP_MAX were live at once: the pool must not have kept growing. */
    cr_assert_leq(p.slab_bytes, 4 * SP_SLAB, "%zu bytes of slabs for %d live blocks",
                  p.slab_bytes, SLOTS);
    sp_destroy(&p);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>

/* In the sanitizer build a free block is poisoned: a use after free inside a Lua state is
 * still reported. */
Test(smallpool, free_blocks_are_poisoned_under_asan)
{
    struct smallpool p = { 0 };
    uint8_t *b = sp_alloc(&p, 48);
    cr_assert_not(__asan_address_is_poisoned(b + 47), "a live block is poisoned");
    cr_assert(__asan_address_is_poisoned(b + 48), "the slab's unused rest is not poisoned");
    sp_free(&p, b, 48);
    cr_assert(__asan_address_is_poisoned(b), "a freed block is not poisoned");
    cr_assert(__asan_address_is_poisoned(b + 47), "a freed block is not poisoned");
    sp_destroy(&p);
}
#endif
