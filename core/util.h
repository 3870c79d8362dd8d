/* Small helpers every module may use. */
#ifndef MOONWIRE_UTIL_H
#define MOONWIRE_UTIL_H

#include <stddef.h>

/* The struct that embeds member at ptr: watchers live inside their owner (libev style). */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
