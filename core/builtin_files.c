/* Files compiled into the binary: see builtin_files.h. */
#include "builtin_files.h"

#include <string.h>

extern const unsigned char client_moonwire_js[];
extern const size_t client_moonwire_js_len;
extern const unsigned char client_moonwire_global_js[];
extern const size_t client_moonwire_global_js_len;
extern const unsigned char client_moonwire_d_ts[];
extern const size_t client_moonwire_d_ts_len;

static const struct builtin_file files[] = {
    { BUILTIN_PREFIX "moonwire.js", "text/javascript; charset=utf-8", client_moonwire_js,
      &client_moonwire_js_len },
    { BUILTIN_PREFIX "moonwire.global.js", "text/javascript; charset=utf-8",
      client_moonwire_global_js, &client_moonwire_global_js_len },
    { BUILTIN_PREFIX "moonwire.d.ts", "application/typescript; charset=utf-8",
      client_moonwire_d_ts, &client_moonwire_d_ts_len },
};

const struct builtin_file *builtin_find(const char *path, size_t len)
{
    size_t plen = sizeof BUILTIN_PREFIX - 1;
    if (len <= plen || memcmp(path, BUILTIN_PREFIX, plen) != 0) return NULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (strlen(files[i].path) == len && memcmp(files[i].path, path, len) == 0)
            return &files[i];
    return NULL;
}
