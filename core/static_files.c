/* Static file lookup. Deliberately strict: these are an app's own assets, named by its own
 * pages, so anything unusual in a path is more likely an attack than a need. */
#include "static_files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes rel into out (cap bytes) and checks every segment. Returns 0 or 400. */
static int decode_path(const char *rel, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = rel[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_value(rel[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(rel[i + 2]) : -1;
            if (hi < 0 || lo < 0) return 400;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || c == '\\') return 400;
        if (n + 1 >= cap) return 400;
        out[n++] = c;
    }
    out[n] = '\0';
    /* Segment by segment: "." and ".." never name anything here, and hidden files
     * (".env", ".git") are not served. */
    for (const char *seg = out; *seg;) {
        while (*seg == '/') seg++;
        if (*seg == '.') return 404;
        const char *slash = strchr(seg, '/');
        seg = slash ? slash : seg + strlen(seg);
    }
    return 0;
}

static bool inside(const char *real_root, const char *real_path)
{
    size_t n = strlen(real_root);
    return strncmp(real_root, real_path, n) == 0 && real_path[n] == '/';
}

int sf_open(const char *root, const char *rel, size_t len, struct sf_file *f)
{
    char decoded[PATH_MAX];
    int rc = decode_path(rel, len, decoded, sizeof decoded);
    if (rc) return rc;

    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, decoded) >= sizeof path) return 400;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        if (n + sizeof "/index.html" > sizeof path) return 400;
        memcpy(path + n, "/index.html", sizeof "/index.html");
    }

    char real_root[PATH_MAX], real_path[PATH_MAX];
    if (!realpath(root, real_root) || !realpath(path, real_path)) return 404;
    if (!inside(real_root, real_path)) return 404;

    int fd = open(real_path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) return errno == EACCES ? 403 : 404;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 403;
    }
    f->fd = fd;
    f->size = st.st_size;
    f->mtime = st.st_mtime;
    f->type = sf_content_type(real_path);
    return 0;
}

const char *sf_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        { "html", "text/html; charset=utf-8" },
        { "htm", "text/html; charset=utf-8" },
        { "css", "text/css; charset=utf-8" },
        { "js", "text/javascript; charset=utf-8" },
        { "mjs", "text/javascript; charset=utf-8" },
        { "json", "application/json" },
        { "map", "application/json" },
        { "txt", "text/plain; charset=utf-8" },
        { "md", "text/markdown; charset=utf-8" },
        { "xml", "application/xml" },
        { "svg", "image/svg+xml" },
        { "png", "image/png" },
        { "jpg", "image/jpeg" },
        { "jpeg", "image/jpeg" },
        { "gif", "image/gif" },
        { "webp", "image/webp" },
        { "ico", "image/x-icon" },
        { "wasm", "application/wasm" },
        { "woff", "font/woff" },
        { "woff2", "font/woff2" },
        { "mp3", "audio/mpeg" },
        { "ogg", "audio/ogg" },
        { "wav", "audio/wav" },
        { "mp4", "video/mp4" },
        { "webm", "video/webm" },
        { "pdf", "application/pdf" },
    };
    const char *dot = strrchr(name, '.');
    const char *slash = strrchr(name, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    return "application/octet-stream";
}

void sf_etag(const struct sf_file *f, char *out, size_t cap)
{
    snprintf(out, cap, "\"%llx-%llx\"", (unsigned long long)f->size,
             (unsigned long long)f->mtime);
}
