/* --watch: notices when the Lua files of an app change and asks for a reload.
 *
 * inotify on every folder of each watched tree; Lua files written, created, renamed into place
 * (how most editors save) or deleted count as a change. Changes are gathered for a short quiet
 * period, so a save that touches several files, or a `git checkout`, makes one reload. */
#ifndef MOONWIRE_WATCH_H
#define MOONWIRE_WATCH_H

#include <ev.h>

struct watch;

/* Called once per quiet period for each key whose tree changed (key as given to watch_add). */
typedef void (*watch_fn)(void *ud, void *key);

/* Returns a watcher on loop, or NULL with errno set (inotify unavailable). */
struct watch *watch_new(struct ev_loop *loop, watch_fn fn, void *ud);

/* Watches dir and its subfolders (hidden ones and public/ excepted: static files need no
 * reload). Returns 0, or -1 with errno set. */
int watch_add(struct watch *w, const char *dir, void *key);

void watch_free(struct watch *w);

#endif
