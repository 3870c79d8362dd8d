/* Files every moonwire serves whatever its apps: the moonwire.js client (docs/client.md),
 * compiled into the binary from core/client/ by the Makefile (build/gen/client_js.c).
 *
 *   /_moonwire/moonwire.js         the ES module
 *   /_moonwire/moonwire.global.js  the same as a plain script: sets globalThis.Moonwire
 *   /_moonwire/moonwire.d.ts       its TypeScript declarations */
#ifndef MOONWIRE_BUILTIN_FILES_H
#define MOONWIRE_BUILTIN_FILES_H

#include <stddef.h>

#define BUILTIN_PREFIX "/_moonwire/"

struct builtin_file {
    const char *path;
    const char *type;
    const unsigned char *data;
    const size_t *len;
};

/* The built-in file at path[0..len) (without the query), or NULL. */
const struct builtin_file *builtin_find(const char *path, size_t len);

#endif
