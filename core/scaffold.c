/* moonwire new (see scaffold.h). The templates are plain files with {{name}} where the app's
 * name goes, so they can be read, run and tested like any app. */
#include "scaffold.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The files of an app, relative to both the template folder and the new app. */
static const char *const files[] = { "app.lua", "public/index.html", "spec/app_spec.lua" };
static const char *const folders[] = { "", "/public", "/spec" };

/* Reads a whole (small) file. Returns it, NUL-terminated, or NULL with errno set. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) {
            free(buf);
            buf = NULL;
            errno = ENOMEM;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* Writes text to path with every {{name}} replaced by name. Returns 0, or -1 with errno set. */
static int write_filled(const char *path, const char *text, const char *name)
{
    FILE *f = fopen(path, "wx"); /* never over a file that exists */
    if (!f) return -1;
    static const char mark[] = "{{name}}";
    for (const char *p = text, *m; *p; p = m + sizeof mark - 1) {
        m = strstr(p, mark);
        if (!m) {
            fputs(p, f);
            break;
        }
        fwrite(p, 1, (size_t)(m - p), f);
        fputs(name, f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int scaffold_main(int argc, char **argv, const char *scripts_dir)
{
    if (argc != 2 || argv[1][0] == '-' || !argv[1][0]) {
        fprintf(stderr, "usage: moonwire new NAME\n"
                        "creates the folder NAME with app.lua, public/index.html and "
                        "spec/app_spec.lua\n");
        return 2;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", argv[1]);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dir[--dl] = '\0';
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    struct stat st;
    if (stat(dir, &st) == 0) {
        fprintf(stderr, "moonwire new: %s already exists; nothing was changed (pick another "
                        "name, or move it away first)\n", dir);
        return 1;
    }
    /* Every template first, so a broken installation leaves nothing half made. */
    char *text[3] = { NULL, NULL, NULL };
    char path[2200];
    int status = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        snprintf(path, sizeof path, "%s/templates/app/%s", scripts_dir, files[i]);
        text[i] = read_all(path, &len);
        if (!text[i]) {
            fprintf(stderr, "moonwire new: cannot read the template %s: %s (is moonwire "
                            "installed with its scripts folder?)\n", path, strerror(errno));
            status = 1;
            goto out;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", dir, folders[i]);
        if (mkdir(path, 0777) < 0) {
            fprintf(stderr, "moonwire new: cannot create %s: %s\n", path, strerror(errno));
            status = 1;
            goto out;
        }
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (write_filled(path, text[i], name) < 0) {
            fprintf(stderr, "moonwire new: cannot write %s: %s\n", path, strerror(errno));
            status = 1;
            goto out;
        }
        printf("created %s\n", path);
    }
    printf("\nrun it:   moonwire %s   (then open http://127.0.0.1:8080/)\n"
           "test it:  moonwire test %s/spec\n", dir, dir);
out:
    for (size_t i = 0; i < 3; i++) free(text[i]);
    return status;
}
