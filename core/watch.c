/* File watching with inotify, driven by libev. */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* Long enough to gather one save (editors write, rename and touch in a burst), short enough to
 * feel instant. */
#define QUIET_PERIOD 0.15

#define MAX_DIRS 4096
#define MAX_KEYS 64

struct watched_dir {
    int wd;
    void *key;
    char *path;
};

struct watch {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer quiet;
    watch_fn fn;
    void *ud;
    struct watched_dir dirs[MAX_DIRS];
    size_t ndirs;
    void *changed[MAX_KEYS]; /* keys with a change in this quiet period */
    size_t nchanged;
};

static const uint32_t EVENTS = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
                               IN_DELETE | IN_DELETE_SELF;

static bool is_lua_file(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".lua") == 0;
}

static bool skip_dir(const char *name)
{
    return name[0] == '.' || strcmp(name, "public") == 0;
}

static int add_tree(struct watch *w, const char *dir, void *key)
{
    if (w->ndirs == MAX_DIRS) {
        errno = ENOSPC;
        return -1;
    }
    int wd = inotify_add_watch(w->fd, dir, EVENTS | IN_ONLYDIR);
    if (wd < 0) return -1;
    char *path = strdup(dir);
    if (!path) return -1;
    w->dirs[w->ndirs++] = (struct watched_dir){ wd, key, path };

    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || skip_dir(e->d_name)) continue;
        char sub[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= sizeof sub) continue;
        add_tree(w, sub, key);
    }
    closedir(d);
    return 0;
}

static struct watched_dir *find_dir(struct watch *w, int wd)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].wd == wd) return &w->dirs[i];
    return NULL;
}

static void note_change(struct watch *w, void *key)
{
    for (size_t i = 0; i < w->nchanged; i++)
        if (w->changed[i] == key) goto rearm;
    if (w->nchanged < MAX_KEYS) w->changed[w->nchanged++] = key;
rearm:
    ev_timer_stop(w->loop, &w->quiet);
    ev_timer_set(&w->quiet, QUIET_PERIOD, 0.);
    ev_timer_start(w->loop, &w->quiet);
}

static void on_inotify(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = container_of(io, struct watch, io);
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(w->fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
            p += sizeof *ev + ev->len;
            struct watched_dir *d = find_dir(w, ev->wd);
            if (!d) continue;
            if (ev->mask & IN_ISDIR) {
                /* A new folder may soon hold modules: watch it too. */
                if ((ev->mask & (IN_CREATE | IN_MOVED_TO)) && ev->len && !skip_dir(ev->name)) {
                    char sub[PATH_MAX];
                    if ((size_t)snprintf(sub, sizeof sub, "%s/%s", d->path, ev->name) <
                        sizeof sub)
                        add_tree(w, sub, d->key);
                }
                continue;
            }
            if (ev->len && is_lua_file(ev->name)) note_change(w, d->key);
        }
    }
}

static void on_quiet(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct watch *w = container_of(t, struct watch, quiet);
    void *changed[MAX_KEYS];
    size_t n = w->nchanged;
    memcpy(changed, w->changed, n * sizeof changed[0]);
    w->nchanged = 0;
    for (size_t i = 0; i < n; i++) w->fn(w->ud, changed[i]);
}

struct watch *watch_new(struct ev_loop *loop, watch_fn fn, void *ud)
{
    struct watch *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        free(w);
        return NULL;
    }
    w->loop = loop;
    w->fn = fn;
    w->ud = ud;
    ev_io_init(&w->io, on_inotify, w->fd, EV_READ);
    ev_io_start(loop, &w->io);
    ev_init(&w->quiet, on_quiet);
    return w;
}

int watch_add(struct watch *w, const char *dir, void *key) { return add_tree(w, dir, key); }

void watch_free(struct watch *w)
{
    if (!w) return;
    ev_io_stop(w->loop, &w->io);
    ev_timer_stop(w->loop, &w->quiet);
    close(w->fd);
    for (size_t i = 0; i < w->ndirs; i++) free(w->dirs[i].path);
    free(w);
}
