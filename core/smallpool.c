/* Size-classed free lists for one Lua state's small blocks: see smallpool.h. */
#include "smallpool.h"

#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer the pool poisons what the app may not touch (free blocks, the unused
 * rest of a slab), so a use after free inside a Lua state is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct sp_slab {
    struct sp_slab *next;
    alignas(SP_GRAIN) char data[];
};

_Static_assert(SP_MAX % SP_GRAIN == 0, "SP_MAX is a whole number of grains");
_Static_assert(SP_GRAIN >= sizeof(void *), "a free block holds its list link");

void *sp_alloc(struct smallpool *p, size_t size)
{
    unsigned cls = sp_class(size);
    size_t block = (size_t)(cls + 1) * SP_GRAIN;
    void *b = p->free[cls];
    if (b) {
        UNPOISON(b, block);
        memcpy(&p->free[cls], b, sizeof(void *));
        return b;
    }
    if ((size_t)(p->end - p->cur) < block) {
        /* The old slab's tail (less than one block of this class) is given to the classes it
         * can serve, largest first, so no slab memory is lost. */
        while (p->cur && p->end - p->cur >= (ptrdiff_t)SP_GRAIN) {
            size_t left = (size_t)(p->end - p->cur);
            size_t take = left < SP_MAX ? left - left % SP_GRAIN : SP_MAX;
            UNPOISON(p->cur, take);
            sp_free(p, p->cur, take);
            p->cur += take;
        }
        struct sp_slab *s = malloc(sizeof *s + SP_SLAB);
        if (!s) return NULL;
        s->next = p->slabs;
        p->slabs = s;
        p->slab_bytes += SP_SLAB;
        p->cur = s->data;
        p->end = s->data + SP_SLAB;
        POISON(p->cur, SP_SLAB);
    }
    b = p->cur;
    p->cur += block;
    UNPOISON(b, block);
    return b;
}

void sp_free(struct smallpool *p, void *block, size_t size)
{
    unsigned cls = sp_class(size);
    memcpy(block, &p->free[cls], sizeof(void *));
    p->free[cls] = block;
    POISON(block, (size_t)(cls + 1) * SP_GRAIN);
}

void sp_destroy(struct smallpool *p)
{
    struct sp_slab *s = p->slabs;
    while (s) {
        struct sp_slab *next = s->next;
        UNPOISON(s->data, SP_SLAB);
        free(s);
        s = next;
    }
    memset(p, 0, sizeof *p);
}
