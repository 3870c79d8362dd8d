/* Internal to the Lua bridge (lua_bridge.c, lua_conn.c, lua_mw.c): the app record and the
 * helpers the three share. Nothing outside them includes this. */
#ifndef MOONWIRE_LUA_APP_H
#define MOONWIRE_LUA_APP_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>

#include "lua_bridge.h"
#include "pubsub.h"
#include "sandbox.h"

struct lb_timer;

struct lb_app {
    struct sandbox sb;
    const struct lb_env *env;
    char *name;          /* as given: "examples/chat" */
    char *dir;           /* the folder require looks in */
    char *file;          /* the main chunk */
    char *public_dir;    /* static files, or NULL */
    char *scripts_dir;
    int handlers_ref;    /* registry: the table the main chunk returned */
    int names_ref;       /* registry: the handler names as Lua strings, by enum lb_handler */
    int api_ref;         /* registry: the mw module (shared by every version of the code) */
    uint32_t generation; /* version of the code; a reload makes the next */
    uint32_t timer_generation; /* stamped on new timers: the version being run or loaded */
    int after_load_ref;  /* registry: functions mw.after_load collected while loading */
    bool loading;        /* a main chunk is running (first load or reload) */
    struct pubsub ps;
    struct lb_timer *timers; /* pending timers, to cancel those of an old version */
    /* The text of the message being handled, which the frame reader has found valid UTF-8
     * and run_messages keeps alive on the stack (so no other string can have this address);
     * NULL between messages. Sending it on skips the check (lb_valid_text). */
    const char *valid_text;
};

/* The app that owns L (any thread of it). */
struct lb_app *lb_app_of(lua_State *L);

/* Runs fn(ud) in the app's state under sb_call. On failure logs one line naming the app and
 * what (e.g. "message handler") and returns -1. */
int lb_run(struct lb_app *app, lua_CFunction fn, void *ud, const char *what);

/* Whether the Lua string data (len bytes) is valid UTF-8: without looking when it is the
 * message being handled. */
bool lb_valid_text(struct lb_app *app, const char *data, size_t len);

/* lua_conn.c: the conn object. */
void lb_conn_register(lua_State *L);
void lb_push_conn(struct lb_app *app, struct conn *c);
/* Seeds c's conn.data with the table on top of the stack (popped). */
void lb_conn_set_data(struct lb_app *app, struct conn *c);
/* Releases c's conn object before c is freed; it then answers nil, "closed". */
void lb_forget(struct lb_app *app, struct conn *c);

/* lua_mw.c: the mw module. */
void lb_push_api(struct lb_app *app);
/* Cancels every pending timer made by code of the given generation. */
void lb_cancel_timers(struct lb_app *app, uint32_t generation);

#endif
