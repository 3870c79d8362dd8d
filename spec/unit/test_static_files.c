/* Tests for static file lookup (core/static_files.h) against a real folder made for each test:
 * which request paths are served, which are refused with which status (escapes by "..",
 * encodings of it, symbolic links and hidden files among them), that the returned descriptor
 * reads the right file, and the Content-Type and ETag helpers. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "static_files.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal with its length, embedded NULs included. */
#define LIT(s) s, sizeof(s) - 1

#define HTML "text/html; charset=utf-8"
#define CSS "text/css; charset=utf-8"
#define JS "text/javascript; charset=utf-8"
#define TEXT "text/plain; charset=utf-8"
#define OCTETS "application/octet-stream"

/* ---- The public folder ---------------------------------------------------------------------- */

/* The folder under test, a folder outside it, and a sibling whose name starts with the folder's
 * own name (a prefix check on the path alone would let it in). */
static char root[64], outside[64], sibling[80];

static const struct {
    const char *path;
    const char *content;
} files[] = {
    { "index.html", "<p>root index</p>\n" },
    { "a.css", "body { color: red }\n" },
    { "hello world.txt", "hello, world\n" },
    { "100%.txt", "one hundred per cent\n" },
    { "sub/index.html", "<p>sub index</p>\n" },
    { "sub/app.js", "console.log(1);\n" },
    { "sub/.env", "SECRET=sub\n" },
    { ".hidden", "hidden\n" },
    { ".git/config", "[core]\n" },
    { "dir.d/file", "no extension here\n" },
    { "empty-file.txt", "" },
    { "noread.txt", "not for you\n" },
};

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0, "create %s: %s", path, strerror(errno));
    size_t len = strlen(content);
    cr_assert_eq(write(fd, content, len), (ssize_t)len, "write %s", path);
    close(fd);
}

static void make_dir(const char *dir, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s: %s", path, strerror(errno));
}

static void make_link(const char *target, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, name);
    cr_assert_eq(symlink(target, path), 0, "symlink %s: %s", path, strerror(errno));
}

static void setup(void)
{
    strcpy(root, "/tmp/mw-sf-XXXXXX");
    strcpy(outside, "/tmp/mw-sf-out-XXXXXX");
    cr_assert_not_null(mkdtemp(root), "mkdtemp: %s", strerror(errno));
    cr_assert_not_null(mkdtemp(outside), "mkdtemp: %s", strerror(errno));
    snprintf(sibling, sizeof sibling, "%s-sibling", root);
    cr_assert_eq(mkdir(sibling, 0755), 0);

    make_dir(root, "sub");
    make_dir(root, ".git");
    make_dir(root, "dir.d");
    make_dir(root, "empty");
    for (size_t i = 0; i < N(files); i++) write_file(root, files[i].path, files[i].content);
    write_file(outside, "secret.txt", "outside secret\n");
    write_file(outside, "index.html", "<p>outside index</p>\n");
    write_file(sibling, "secret.txt", "sibling secret\n");

    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fifo", root);
    cr_assert_eq(mkfifo(path, 0644), 0, "mkfifo: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/noread.txt", root);
    cr_assert_eq(chmod(path, 0), 0);

    make_link("a.css", "link-inside.css");
    make_link("sub", "sub-link");
    make_link("../a.css", "sub/up.css"); /* inside, by way of .. */
    make_link("does-not-exist", "dangling");
    snprintf(path, sizeof path, "%s/secret.txt", outside);
    make_link(path, "escape");
    make_link(outside, "escape-dir");
    snprintf(path, sizeof path, "../%s/secret.txt", outside + strlen("/tmp/"));
    make_link(path, "escape-rel");
    snprintf(path, sizeof path, "%s/secret.txt", sibling);
    make_link(path, "prefix-escape");
    make_link("/", "to-slash");
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    const char *dirs[] = { root, outside, sibling };
    for (size_t i = 0; i < N(dirs); i++)
        if (dirs[i][0]) nftw(dirs[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(static_files, .init = setup, .fini = teardown);

/* ---- Helpers --------------------------------------------------------------------------------- */

/* Open descriptors, to catch one leaked on an error path. */
static int count_fds(void)
{
    int n = 0;
    for (int fd = 0; fd < 1024; fd++) n += fcntl(fd, F_GETFD) != -1;
    return n;
}

static const char *content_of(const char *path)
{
    for (size_t i = 0; i < N(files); i++)
        if (strcmp(files[i].path, path) == 0) return files[i].content;
    cr_assert_fail("no file %s in the layout", path);
    return NULL;
}

/* Opens rel (copied to a guard page, without a terminating NUL) and checks the result: the
 * status, and for a success the descriptor's flags, size, mtime, type and content. */
static void check_open(const char *label, const char *base, const char *rel, size_t len,
                       int want_status, const char *want_file, const char *want_type)
{
    int fds = count_fds();
    struct guard g;
    const char *p = guard_copy_str(&g, rel, len);
    guard_seal(&g);
    struct sf_file f = { .fd = -1 };
    int rc = sf_open(base, p, len, &f);
    guard_free(&g);
    cr_expect_eq(rc, want_status, "%s: status %d, want %d", label, rc, want_status);
    if (rc == 0) {
        cr_expect_geq(f.fd, 0, "%s: no descriptor", label);
        int fl = fcntl(f.fd, F_GETFL);
        cr_expect_eq(fl & O_ACCMODE, O_RDONLY, "%s: not opened read-only", label);
        cr_expect(fcntl(f.fd, F_GETFD) & FD_CLOEXEC, "%s: descriptor survives exec", label);
        if (want_status == 0) {
            const char *want = content_of(want_file);
            size_t want_len = strlen(want);
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s", root, want_file);
            struct stat st;
            cr_assert_eq(stat(path, &st), 0);
            cr_expect_eq(f.size, (off_t)want_len, "%s: size %lld, want %zu", label,
                         (long long)f.size, want_len);
            cr_expect_eq(f.mtime, st.st_mtime, "%s: wrong mtime", label);
            cr_expect_str_eq(f.type, want_type, "%s: type %s, want %s", label, f.type,
                             want_type);
            char got[256];
            ssize_t n = pread(f.fd, got, sizeof got, 0);
            cr_expect_eq(n, (ssize_t)want_len, "%s: read %zd bytes, want %zu", label, n,
                         want_len);
            if (n == (ssize_t)want_len)
                cr_expect(memcmp(got, want, want_len) == 0, "%s: read %.*s, want %s", label,
                          (int)n, got, want);
        }
        close(f.fd);
    }
    cr_expect_eq(count_fds(), fds, "%s: descriptors leaked", label);
}

/* ---- Path resolution ------------------------------------------------------------------------- */

struct open_case {
    const char *name;
    const char *rel;
    size_t len;
    int status;       /* 0 for served */
    const char *file; /* when served: the layout file whose bytes come back */
    const char *type;
};

static const struct open_case opens[] = {
    /* Served */
    { "empty path: the folder's index", LIT(""), 0, "index.html", HTML },
    { "slash: the folder's index", LIT("/"), 0, "index.html", HTML },
    { "the index by name", LIT("/index.html"), 0, "index.html", HTML },
    { "subfolder with slash: its index", LIT("/sub/"), 0, "sub/index.html", HTML },
    { "subfolder without slash: its index", LIT("/sub"), 0, "sub/index.html", HTML },
    { "file in a subfolder", LIT("/sub/app.js"), 0, "sub/app.js", JS },
    { "doubled slashes", LIT("//sub//app.js"), 0, "sub/app.js", JS },
    { "css", LIT("/a.css"), 0, "a.css", CSS },
    { "percent-encoded space", LIT("/hello%20world.txt"), 0, "hello world.txt", TEXT },
    { "raw space", LIT("/hello world.txt"), 0, "hello world.txt", TEXT },
    { "lowercase escapes", LIT("/%61%2ecss"), 0, "a.css", CSS },
    { "uppercase escapes", LIT("/%61%2Ecss"), 0, "a.css", CSS },
    { "escape at the very end", LIT("/a.cs%73"), 0, "a.css", CSS },
    { "encoded percent sign", LIT("/100%25.txt"), 0, "100%.txt", TEXT },
    { "empty file", LIT("/empty-file.txt"), 0, "empty-file.txt", TEXT },
    { "dot in a folder name only", LIT("/dir.d/file"), 0, "dir.d/file", OCTETS },
    { "symlink to a file inside", LIT("/link-inside.css"), 0, "a.css", CSS },
    { "symlink to a folder inside", LIT("/sub-link/app.js"), 0, "sub/app.js", JS },
    { "symlink to a folder inside: its index", LIT("/sub-link/"), 0, "sub/index.html", HTML },
    { "symlink inside by way of ..", LIT("/sub/up.css"), 0, "a.css", CSS },

    /* No such file */
    { "missing file", LIT("/nope.txt"), 404, NULL, NULL },
    { "missing file in a subfolder", LIT("/sub/nope.js"), 404, NULL, NULL },
    { "missing folder", LIT("/nope/"), 404, NULL, NULL },
    { "file used as a folder", LIT("/a.css/"), 404, NULL, NULL },
    { "file used as a folder, with a name", LIT("/a.css/x"), 404, NULL, NULL },
    { "folder without index, with slash", LIT("/empty/"), 404, NULL, NULL },
    { "folder without index, without slash", LIT("/empty"), 404, NULL, NULL },
    { "dangling symlink", LIT("/dangling"), 404, NULL, NULL },

    /* Outside the folder: refused as if missing */
    { "dot dot", LIT("/.."), 404, NULL, NULL },
    { "dot dot slash", LIT("/../"), 404, NULL, NULL },
    { "dot dot, then a name", LIT("/../x"), 404, NULL, NULL },
    { "dot dot to the outside folder", LIT("/../mw-sf-out/secret.txt"), 404, NULL, NULL },
    { "encoded dot dot", LIT("/%2e%2e/x"), 404, NULL, NULL },
    { "encoded dot dot, uppercase, twice", LIT("/%2E%2E/%2E%2E/etc/passwd"), 404, NULL, NULL },
    { "half-encoded dot dot", LIT("/.%2e/x"), 404, NULL, NULL },
    { "dot dot inside, back to a real file", LIT("/sub/../a.css"), 404, NULL, NULL },
    { "dot dot behind encoded slashes", LIT("/sub%2f..%2fa.css"), 404, NULL, NULL },
    { "dot dot at the end", LIT("/sub/.."), 404, NULL, NULL },
    { "dot segment", LIT("/./a.css"), 404, NULL, NULL },
    { "dot segment in a subfolder", LIT("/sub/./app.js"), 404, NULL, NULL },
    { "lone dot", LIT("/."), 404, NULL, NULL },
    { "hidden file", LIT("/.hidden"), 404, NULL, NULL },
    { "encoded hidden file", LIT("/%2ehidden"), 404, NULL, NULL },
    { "hidden file in a subfolder", LIT("/sub/.env"), 404, NULL, NULL },
    { "file in a hidden folder", LIT("/.git/config"), 404, NULL, NULL },
    { "symlink to a file outside", LIT("/escape"), 404, NULL, NULL },
    { "relative symlink to a file outside", LIT("/escape-rel"), 404, NULL, NULL },
    { "symlink to a folder outside: its index", LIT("/escape-dir/"), 404, NULL, NULL },
    { "symlink to a folder outside: a file", LIT("/escape-dir/secret.txt"), 404, NULL, NULL },
    { "symlink into a folder named like ours", LIT("/prefix-escape"), 404, NULL, NULL },
    { "symlink to /", LIT("/to-slash/etc/passwd"), 404, NULL, NULL },

    /* Not a regular file */
    { "fifo", LIT("/fifo"), 403, NULL, NULL },

    /* Malformed */
    { "encoded NUL", LIT("/x%00y"), 400, NULL, NULL },
    { "encoded NUL after a real name", LIT("/a.css%00.txt"), 400, NULL, NULL },
    { "raw NUL", LIT("/a.css\0"), 400, NULL, NULL },
    { "raw NUL inside", LIT("/a\0.css"), 400, NULL, NULL },
    { "escape cut after one digit", LIT("/a%2"), 400, NULL, NULL },
    { "escape cut after the percent", LIT("/a%"), 400, NULL, NULL },
    { "lone percent", LIT("/%"), 400, NULL, NULL },
    { "escape with non-hex digits", LIT("/a%zz"), 400, NULL, NULL },
    { "escape with a bad first digit", LIT("/a%g0"), 400, NULL, NULL },
    { "escape with a bad second digit", LIT("/a%0g"), 400, NULL, NULL },
    { "escape of a percent sign without digits", LIT("/%%41"), 400, NULL, NULL },
    { "backslash", LIT("/sub\\app.js"), 400, NULL, NULL },
    { "backslash dot dot", LIT("/..\\a.css"), 400, NULL, NULL },
    { "encoded backslash", LIT("/sub%5capp.js"), 400, NULL, NULL },
    { "encoded backslash, uppercase", LIT("/%5C"), 400, NULL, NULL },
};

Test(static_files, open_table)
{
    for (size_t i = 0; i < N(opens); i++) {
        const struct open_case *c = &opens[i];
        check_open(c->name, root, c->rel, c->len, c->status, c->file, c->type);
    }
}

/* The folder given in other spellings still serves, and still confines. */
Test(static_files, root_spellings)
{
    char with_slash[PATH_MAX], via_link[PATH_MAX], dotted[PATH_MAX];
    snprintf(with_slash, sizeof with_slash, "%s/", root);
    snprintf(dotted, sizeof dotted, "%s/./sub/..", root);
    snprintf(via_link, sizeof via_link, "%s/root-link", outside);
    cr_assert_eq(symlink(root, via_link), 0);

    const char *bases[] = { with_slash, dotted, via_link };
    for (size_t i = 0; i < N(bases); i++) {
        check_open(bases[i], bases[i], LIT("/a.css"), 0, "a.css", CSS);
        check_open(bases[i], bases[i], LIT("/"), 0, "index.html", HTML);
        check_open(bases[i], bases[i], LIT("/escape"), 404, NULL, NULL);
        check_open(bases[i], bases[i], LIT("/%2e%2e/x"), 404, NULL, NULL);
    }

    /* A relative root resolves against the working directory. */
    cr_assert_eq(chdir("/tmp"), 0);
    check_open("relative root", root + strlen("/tmp/"), LIT("/sub/app.js"), 0, "sub/app.js", JS);

    /* A root that does not exist has no files. */
    char missing[PATH_MAX];
    snprintf(missing, sizeof missing, "%s/no-such-folder", root);
    check_open("missing root", missing, LIT("/a.css"), 404, NULL, NULL);
    check_open("missing root, its index", missing, LIT("/"), 404, NULL, NULL);
}

/* Paths longer than any file name the system takes: refused, never overrun. */
Test(static_files, very_long_paths)
{
    static const struct {
        const char *name;
        const char *unit;
        size_t units;
    } cases[] = {
        { "one long name", "a", 5000 },
        { "many short segments", "/a", 5000 },
        { "long name just under PATH_MAX", "a", PATH_MAX - 1 },
        { "many escapes", "%41", 3000 },
        { "dot dot, many times", "/..", 3000 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t ulen = strlen(cases[i].unit), len = 1 + ulen * cases[i].units;
        char *rel = malloc(len);
        cr_assert_not_null(rel);
        rel[0] = '/';
        for (size_t k = 0; k < cases[i].units; k++) memcpy(rel + 1 + k * ulen, cases[i].unit, ulen);
        int fds = count_fds();
        struct guard g;
        const char *p = guard_copy_str(&g, rel, len);
        guard_seal(&g);
        struct sf_file f = { .fd = -1 };
        int rc = sf_open(root, p, len, &f);
        guard_free(&g);
        cr_expect(rc == 400 || rc == 404, "%s: status %d", cases[i].name, rc);
        if (rc == 0) close(f.fd);
        cr_expect_eq(count_fds(), fds, "%s: descriptors leaked", cases[i].name);
        free(rel);
    }
}

/* Takes the capabilities that let root read any file out of the effective set (or puts them
 * back), so root is held to a file's permission bits like everyone else. */
static bool set_dac_override(bool on)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    if (syscall(SYS_capget, &hdr, data) != 0) return false;
    uint32_t bits = (1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH);
    if (on)
        data[0].effective |= bits & data[0].permitted;
    else
        data[0].effective &= ~bits;
    return syscall(SYS_capset, &hdr, data) == 0;
}

/* A file its owner may not read is forbidden, not missing: it is there, the server just may
 * not read it. Root reads everything, so as root the test first gives up that power. */
Test(static_files, unreadable_file_is_forbidden)
{
    if (geteuid() == 0 && !set_dac_override(false))
        cr_skip_test("running as root and cannot drop CAP_DAC_OVERRIDE: %s", strerror(errno));
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/noread.txt", root);
    int probe = open(path, O_RDONLY);
    if (probe >= 0) {
        close(probe);
        if (geteuid() == 0) set_dac_override(true);
        cr_skip_test("permission bits are not enforced here");
    }
    check_open("unreadable file", root, LIT("/noread.txt"), 403, NULL, NULL);
    /* Still readable files are unaffected. */
    check_open("readable file", root, LIT("/a.css"), 0, "a.css", CSS);
    if (geteuid() == 0) cr_expect(set_dac_override(true), "could not restore capabilities");
}

/* ---- Content-Type ---------------------------------------------------------------------------- */

Test(static_files, content_type_table)
{
    static const struct {
        const char *name;
        const char *type;
    } cases[] = {
        { "index.html", HTML },
        { "page.htm", HTML },
        { "UPPER.HTML", HTML },
        { "Mixed.HtMl", HTML },
        { "a.css", CSS },
        { "app.js", JS },
        { "mod.mjs", JS },
        { "data.json", "application/json" },
        { "app.js.map", "application/json" },
        { "notes.txt", TEXT },
        { "readme.md", "text/markdown; charset=utf-8" },
        { "feed.xml", "application/xml" },
        { "logo.svg", "image/svg+xml" },
        { "a.png", "image/png" },
        { "a.jpg", "image/jpeg" },
        { "a.JPEG", "image/jpeg" },
        { "a.gif", "image/gif" },
        { "a.webp", "image/webp" },
        { "favicon.ico", "image/x-icon" },
        { "mod.wasm", "application/wasm" },
        { "f.woff", "font/woff" },
        { "f.woff2", "font/woff2" },
        { "s.mp3", "audio/mpeg" },
        { "s.ogg", "audio/ogg" },
        { "s.wav", "audio/wav" },
        { "v.mp4", "video/mp4" },
        { "v.webm", "video/webm" },
        { "doc.pdf", "application/pdf" },
        { "/srv/app/public/sub/app.js", JS },
        { "/srv/app.d/public/app.js", JS },
        /* Defaults */
        { "Makefile", OCTETS },
        { "", OCTETS },
        { "file.", OCTETS },
        { "archive.tar.gz", OCTETS },
        { "page.html5", OCTETS },
        { "page.xhtml", OCTETS },
        { "a.j", OCTETS },
        { "dir.d/file", OCTETS },
        { "/srv/app.css/public/file", OCTETS },
        { "dir.html/", OCTETS },
        { "name.css.bak", OCTETS },
    };
    for (size_t i = 0; i < N(cases); i++) {
        const char *t = sf_content_type(cases[i].name);
        cr_expect_str_eq(t, cases[i].type, "'%s': %s, want %s", cases[i].name, t,
                         cases[i].type);
    }
}

/* ---- ETag ------------------------------------------------------------------------------------ */

static void etag_of(const struct sf_file *f, char *out, size_t cap)
{
    memset(out, 0, cap);
    sf_etag(f, out, cap);
    size_t n = strlen(out);
    cr_expect(n >= 2 && out[0] == '"' && out[n - 1] == '"', "ETag %s is not quoted", out);
}

Test(static_files, etag_follows_size_and_mtime)
{
    static const struct {
        const char *name;
        off_t size;
        time_t mtime;
    } cases[] = {
        { "base", 100, 1700000000 },
        { "one byte more", 101, 1700000000 },
        { "one second later", 100, 1700000001 },
        { "both changed", 101, 1700000001 },
        { "size and mtime swapped", 1700000000, 100 },
        { "empty file at the epoch", 0, 0 },
        { "huge file", (off_t)1 << 40, 1700000000 },
    };
    char tags[N(cases)][64];
    for (size_t i = 0; i < N(cases); i++) {
        struct sf_file f = { .fd = -1, .size = cases[i].size, .mtime = cases[i].mtime };
        etag_of(&f, tags[i], sizeof tags[i]);
        char again[64];
        etag_of(&f, again, sizeof again);
        cr_expect_str_eq(tags[i], again, "%s: not stable", cases[i].name);
        for (size_t k = 0; k < i; k++)
            cr_expect_str_neq(tags[i], tags[k], "%s and %s share ETag %s", cases[i].name,
                              cases[k].name, tags[i]);
    }
}

/* A small buffer gets a cut, terminated tag, and nothing past its end is written: the buffer
 * ends at a guard page. */
Test(static_files, etag_fits_its_buffer)
{
    struct sf_file f = { .fd = -1, .size = (off_t)1 << 40, .mtime = 1700000000 };
    char full[64];
    etag_of(&f, full, sizeof full);
    for (size_t cap = 1; cap <= strlen(full) + 1; cap++) {
        static const char zeros[64];
        struct guard g;
        char *out = (char *)guard_copy(&g, zeros, cap);
        sf_etag(&f, out, cap);
        cr_expect_eq(out[cap - 1], '\0', "cap %zu: not terminated", cap);
        cr_expect(strncmp(out, full, cap - 1) == 0, "cap %zu: %s is not a prefix of %s", cap,
                  out, full);
        guard_free(&g);
    }
}

/* The tag of a real file changes when it is rewritten with another size, or touched. */
Test(static_files, etag_of_real_file_changes)
{
    struct sf_file f;
    char before[64], after[64];
    cr_assert_eq(sf_open(root, LIT("/a.css"), &f), 0);
    etag_of(&f, before, sizeof before);
    close(f.fd);

    write_file(root, "a.css", "body { color: blue; }\n"); /* another size */
    cr_assert_eq(sf_open(root, LIT("/a.css"), &f), 0);
    etag_of(&f, after, sizeof after);
    close(f.fd);
    cr_expect_str_neq(before, after, "size changed, ETag %s did not", after);

    /* Same size, another mtime. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/a.css", root);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    struct timespec times[2] = { st.st_atim, st.st_mtim };
    times[1].tv_sec -= 3600;
    cr_assert_eq(utimensat(AT_FDCWD, path, times, 0), 0);
    memcpy(before, after, sizeof before);
    cr_assert_eq(sf_open(root, LIT("/a.css"), &f), 0);
    cr_expect_eq(f.mtime, times[1].tv_sec);
    etag_of(&f, after, sizeof after);
    close(f.fd);
    cr_expect_str_neq(before, after, "mtime changed, ETag %s did not", after);
}
