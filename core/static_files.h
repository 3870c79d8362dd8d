/* Static files: an app's public/ folder served for plain GET and HEAD requests on its path.
 *
 * Maps a request path to a file without ever leaving the folder: the path is percent-decoded
 * and checked segment by segment (no "..", no NUL, no backslash), then the file's real path
 * (symbolic links resolved) must still lie inside the folder. */
#ifndef MOONWIRE_STATIC_FILES_H
#define MOONWIRE_STATIC_FILES_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct sf_file {
    int fd;           /* open for reading; the caller closes it */
    off_t size;
    time_t mtime;
    long mtime_nsec;
    const char *type; /* Content-Type */
};

/* Opens the file for rel, the request path below the mount ("" or "/" for the folder itself,
 * "/js/app.js"; percent-encoded, without the query), under the folder root. A folder serves its
 * index.html. Returns 0 with *f filled, or the HTTP status to answer: 400 for a malformed path,
 * 404 when there is no such file (also for anything outside root: its existence is not
 * revealed), 403 for something that is not a regular file. */
int sf_open(const char *root, const char *rel, size_t len, struct sf_file *f);

/* The Content-Type for a file name, by its extension; application/octet-stream by default. */
const char *sf_content_type(const char *name);

/* Writes the ETag of a file (size and modification time) into out, quoted. */
void sf_etag(const struct sf_file *f, char *out, size_t cap);

#endif
