/* moonwire.v1 on an app's connections: internal to the Lua bridge (lua_bridge.c, lua_conn.c);
 * see lua_channels.c and docs/protocol.md. */
#ifndef MOONWIRE_LUA_CHANNELS_H
#define MOONWIRE_LUA_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

struct lb_app;
struct conn;
struct conn_verdict;

/* Whether the app speaks moonwire.v1: app.channels is true (or a table), or app.subscribe is a
 * function. Reads raw: never raises. */
bool lb_ch_enabled(struct lb_app *app);
/* After app.upgrade accepted (or when there is none): offers moonwire.v1 as the subprotocol
 * when the app speaks it and picked none. */
void lb_ch_offer(struct lb_app *app, struct conn_verdict *v);
/* A connection opened: when it speaks moonwire.v1, marks it and sends the welcome envelope
 * (heartbeat interval), and runs the app's heartbeat. */
void lb_ch_open(struct lb_app *app, struct conn *c);
/* Stops the heartbeat (the app is being freed). */
void lb_ch_stop(struct lb_app *app);

/* conn:send on a v1 connection: ["m", data] for text, 'm' and the bytes for binary. Returns
 * what conn_send_message returns. */
int lb_ch_send_message(struct conn *c, const char *data, size_t len, bool binary);

/* Results of lb_ch_prepare. */
enum {
    LB_CH_DONE,    /* handled here (an answer or an error is sent); nothing pushed */
    LB_CH_MESSAGE, /* an app message: pushed data (4) and is_binary (5) for app.message */
    LB_CH_ASK,     /* pushed app.subscribe or app.publish (4), its arguments after conn (5, 6)
                    * and the request (7 to 10): call 4 with conn, 5, 6 for two results, then
                    * lb_ch_answer */
};

/* Reads one message of a v1 connection c, with the app's stack at 3 (the conn at 3). */
int lb_ch_prepare(lua_State *L, struct lb_app *app, struct conn *c, const void *data,
                  size_t len, bool binary);
/* Acts on what app.subscribe / app.publish returned (at 11 and 12); c NULL when gone. */
void lb_ch_answer(lua_State *L, struct lb_app *app, struct conn *c);

#endif
