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
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

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

/* Opening without leaving root. openat2 with RESOLVE_BENEATH makes the kernel refuse any path
 * that would leave the folder ("..", absolute symbolic links, links pointing out), with no gap
 * between a check and the open. Kernels before 5.6 (or a seccomp filter) lack it; then the
 * file's real path is checked against the folder's, which is as strict but leaves a small race
 * open to someone who can already write into the folder. */
#define OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)

static int open_beneath(int rootfd, const char *rel)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (__u64)OPEN_FLAGS;
    how.resolve = (__u64)(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    return (int)syscall(SYS_openat2, rootfd, rel, &how, sizeof how);
}

static bool inside(const char *real_root, const char *real_path)
{
    size_t n = strlen(real_root);
    return strncmp(real_root, real_path, n) == 0 && real_path[n] == '/';
}

static int open_checked(const char *root, const char *rel)
{
    char path[PATH_MAX], real_root[PATH_MAX], real_path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", root, rel) >= sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if (!realpath(root, real_root) || !realpath(path, real_path)) return -1;
    if (!inside(real_root, real_path)) {
        errno = EXDEV;
        return -1;
    }
    return open(real_path, OPEN_FLAGS);
}

/* Opens rel (relative, decoded) under root; -1 with errno on failure. */
static int open_under(const char *root, int rootfd, const char *rel)
{
    static bool no_openat2;
    if (!no_openat2) {
        int fd = open_beneath(rootfd, rel);
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM)) return fd;
        no_openat2 = true; /* not here: use the fallback from now on */
    }
    return open_checked(root, rel);
}

/* The HTTP status for a failed open. */
static int status_of(int err) { return err == EACCES ? 403 : err == ENAMETOOLONG ? 400 : 404; }

int sf_open(const char *root, const char *rel, size_t len, struct sf_file *f)
{
    char decoded[PATH_MAX];
    int rc = decode_path(rel, len, decoded, sizeof decoded);
    if (rc) return rc;
    const char *name = decoded + strspn(decoded, "/");
    if (!*name) name = ".";

    int rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) return 404;
    int fd = open_under(root, rootfd, name);
    struct stat st;
    char index[PATH_MAX];
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        fd = -1;
        if ((size_t)snprintf(index, sizeof index, "%s/index.html", name) < sizeof index) {
            name = index;
            fd = open_under(root, rootfd, name);
        } else {
            errno = ENAMETOOLONG;
        }
    }
    int err = errno;
    close(rootfd);
    if (fd < 0) return status_of(err);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return 403;
    }
    f->fd = fd;
    f->size = st.st_size;
    f->mtime = st.st_mtime;
    f->mtime_nsec = st.st_mtim.tv_nsec;
    f->type = sf_content_type(name); /* the name asked for, not where a link leads */
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
    /* Nanoseconds too: two edits of the same size within a second must not share an ETag. */
    snprintf(out, cap, "\"%llx-%llx-%lx\"", (unsigned long long)f->size,
             (unsigned long long)f->mtime, (unsigned long)f->mtime_nsec);
}
