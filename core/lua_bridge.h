/* The bridge between connections and a Lua app: loads the app into its sandbox, runs its
 * handlers (upgrade, open, message, close, drain) and gives it the `conn` objects and the
 * `mw` module.
 *
 * Every call into Lua goes through sb_call: traceback, budget, classified failure, one log
 * line naming the app, the handler and the file:line. After any call the connection may have
 * changed state (the handler may close it): callers re-check before touching it. */
#ifndef MOONWIRE_LUA_BRIDGE_H
#define MOONWIRE_LUA_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "handshake.h"
#include "http.h"

struct server;
struct conn;
struct lb_app;

/* conn->lua_ref of a connection that has no Lua object yet (Lua's LUA_NOREF). */
#define LB_NO_REF (-2)

struct lb_limits {
    uint64_t instructions; /* per callback; 0: none */
    size_t memory;         /* bytes for the app's Lua state; 0: no cap */
    double time_limit;     /* seconds per callback; 0: none */
};

/* Loads the app at path (a Lua file, or a folder holding app.lua) and runs its main chunk.
 * scripts_dir: where require finds "moonwire.*" modules. Returns the app, or NULL with a
 * message in err (a syntax error with file:line, a missing file, a chunk that does not return a
 * table of handlers...). */
struct lb_app *lb_app_load(struct server *srv, const char *path, const char *scripts_dir,
                           const struct lb_limits *limits, char *err, size_t errlen);
void lb_app_free(struct lb_app *app);

/* Runs the app's main chunk again, in a fresh environment of the same state (SIGHUP, --watch).
 * Only when it loads and returns good handlers are they swapped in: connections, conn.data,
 * subscriptions and mw.state carry over, the old version's timers are cancelled, and
 * app.reload(previous) runs. Otherwise the old version keeps serving. Logs either outcome;
 * returns 0 or -1. */
int lb_app_reload(struct lb_app *app);

/* The app's name in log lines (the path it was loaded from), its folder, and its static files
 * folder (NULL without a public/ folder). */
const char *lb_app_name(const struct lb_app *app);
const char *lb_app_dir(const struct lb_app *app);
const char *lb_app_public_dir(const struct lb_app *app);

/* What app.upgrade decided. status 0: accept, with protocol (if protocol_len) to answer in
 * Sec-WebSocket-Protocol. Otherwise refuse with status and reason (the response body). Either
 * way, headers holds extra "Name: value\r\n" lines for the response (may be empty). */
struct lb_verdict {
    int status;
    char reason[256];
    char headers[1024];
    char protocol[128];
    size_t protocol_len;
};

/* Runs app.upgrade(req) for a valid upgrade request on c (which has c->app and c->path set).
 * Without an upgrade handler every request is accepted without a subprotocol. A handler that
 * fails, or picks a protocol the client did not offer, refuses with 500 and a log line. */
void lb_upgrade(struct lb_app *app, struct conn *c, const struct http_request *req,
                const struct hs_upgrade *up, struct lb_verdict *v);

/* One message for app.message. */
struct lb_message {
    const uint8_t *data;
    size_t len;
    bool binary;
};

/* Run app.open(conn), and app.message(conn, data, is_binary) for each of n messages in order
 * (one protected call for all: the budget and time limit still apply to each message on its
 * own; delivery stops when the connection stops being open). Return 0, or -1 when a handler
 * failed (already logged; the rest of the messages are not delivered): the caller closes the
 * connection with 1011. */
int lb_open(struct lb_app *app, struct conn *c);
int lb_messages(struct lb_app *app, struct conn *c, const struct lb_message *msgs, size_t n);

/* Run app.close(conn, code, reason) and app.drain(conn). Failures are logged only. */
void lb_close(struct lb_app *app, struct conn *c, unsigned code, const char *reason,
              size_t reason_len);
void lb_drain(struct lb_app *app, struct conn *c);

/* Ends c's subscriptions (when its WebSocket has closed). */
void lb_leave_topics(struct lb_app *app, struct conn *c);

/* Releases the Lua side of c before c is freed; its conn object then answers nil, "closed". */
void lb_forget(struct lb_app *app, struct conn *c);

#endif
