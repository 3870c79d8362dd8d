/* Size-classed free lists for the small blocks of one Lua state.
 *
 * Lua frees and resizes every block with its size (lua_Alloc's osize), so a block needs no
 * header and freeing it is a push on its class's list. Each message makes a short string and
 * the collector frees it soon after: through malloc that pair cost about 400 instructions,
 * through the pool about 20. Blocks are carved from 64 KiB slabs that go back to the system
 * only when the pool is destroyed, so a state keeps the most small-block memory it ever held
 * (its memory limit bounds that). Single-threaded, like the state it serves. */
#ifndef MOONWIRE_SMALLPOOL_H
#define MOONWIRE_SMALLPOOL_H

#include <stddef.h>

#define SP_GRAIN 16u                        /* sizes round up to this; blocks align to it */
#define SP_MAX 256u                         /* larger blocks are not the pool's */
#define SP_CLASSES (SP_MAX / SP_GRAIN)
#define SP_SLAB (64u * 1024u)

struct sp_slab;

struct smallpool {
    void *free[SP_CLASSES];  /* class i: free blocks of (i + 1) * SP_GRAIN bytes, linked */
    char *cur, *end;         /* the unused rest of the newest slab */
    struct sp_slab *slabs;   /* every slab, newest first */
    size_t slab_bytes;       /* what the slabs hold in all */
};

/* The class of a size in 1..SP_MAX: sizes of one class share blocks. */
static inline unsigned sp_class(size_t size) { return (unsigned)((size - 1) / SP_GRAIN); }

/* A block of size bytes (1..SP_MAX), aligned to SP_GRAIN, or NULL when out of memory. */
void *sp_alloc(struct smallpool *p, size_t size);

/* Gives back a block that sp_alloc returned for a size of the same class. */
void sp_free(struct smallpool *p, void *block, size_t size);

/* Frees every slab: all blocks become invalid. The pool is empty and usable again. */
void sp_destroy(struct smallpool *p);

#endif
