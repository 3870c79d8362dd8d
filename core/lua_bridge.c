/* Apps and their handlers. A Lua `conn` holds the connection's id and table slot, never a
 * pointer: every method looks the connection up again and answers nil, "closed" once it is gone,
 * however long the app kept the object. Each connection has one cached userdata, made when the
 * connection first reaches Lua and released when the connection is freed, so dispatching a
 * message builds no table and allocates nothing but the message string. */
#include "lua_bridge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"
#include "log.h"
#include "sandbox.h"
#include "server.h"
#include "utf8.h"
#include "ws_close.h"

struct lb_app {
    struct sandbox sb;
    struct server *srv;
    char *name;       /* as given: "examples/chat" */
    char *dir;        /* the folder require looks in */
    char *file;       /* the main chunk */
    char *scripts_dir;
    int handlers_ref; /* registry: the table app.lua returned */
    int api_ref;      /* registry: the mw module table */
};

static const char *const handler_names[] = { "upgrade", "open", "message", "close", "drain",
                                             "reload", NULL };

static const char conn_meta[] = "moonwire.conn";

_Static_assert(LB_NO_REF == LUA_NOREF, "LB_NO_REF must match Lua's LUA_NOREF");

struct lb_conn {
    uint64_t id;
    uint32_t slot;
};

static struct lb_app *app_of(lua_State *L)
{
    return container_of(sb_of(L), struct lb_app, sb);
}

/* ---- conn objects -------------------------------------------------------------------------- */

/* The connection behind the conn object at index 1, or NULL once it is gone. Raises when the
 * argument is not a conn (a misuse, such as conn.send() instead of conn:send()). */
static struct conn *check_conn(lua_State *L)
{
    struct lb_conn *u = luaL_checkudata(L, 1, conn_meta);
    struct conn *c = srv_find_conn(app_of(L)->srv, u->slot, u->id);
    return c && c->state == CONN_OPEN ? c : NULL;
}

static int closed_result(lua_State *L)
{
    luaL_pushfail(L);
    lua_pushliteral(L, "closed");
    return 2;
}

/* conn:send(data [, binary]) -> true | false, "backpressure" | nil, "closed" */
static int conn_send(lua_State *L)
{
    struct conn *c = check_conn(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    bool binary = lua_toboolean(L, 3);
    if (!binary) {
        uint32_t st = UTF8_ACCEPT;
        if (!utf8_validate(&st, (const uint8_t *)data, len) || !utf8_complete(st))
            return luaL_error(L, "conn:send: text is not valid UTF-8; send bytes as binary "
                                 "with conn:send(data, true)");
    }
    if (!c) return closed_result(L);
    switch (conn_send_message(c, data, len, binary)) {
    case CONN_SENT: lua_pushboolean(L, 1); return 1;
    case CONN_BACKPRESSURE:
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "backpressure");
        return 2;
    default: return closed_result(L);
    }
}

/* conn:close([code [, reason]]) -> true | nil, "closed" */
static int conn_close_method(lua_State *L)
{
    struct conn *c = check_conn(L);
    lua_Integer code = luaL_optinteger(L, 2, WS_CLOSE_NORMAL);
    size_t len = 0;
    const char *reason = luaL_optlstring(L, 3, "", &len);
    if (code < 0 || code > 0xFFFF || !ws_close_code_is_valid((unsigned)code))
        return luaL_error(L, "conn:close: %I is not a close code an endpoint may send "
                             "(use 1000-1003, 1007-1014 or 3000-4999)", code);
    uint32_t st = UTF8_ACCEPT;
    if (!utf8_validate(&st, (const uint8_t *)reason, len) || !utf8_complete(st))
        return luaL_error(L, "conn:close: the reason is not valid UTF-8");
    if (!c) return closed_result(L);
    conn_close(c, (unsigned)code, reason, len); /* a long reason is cut at 123 bytes */
    lua_pushboolean(L, 1);
    return 1;
}

/* conn.data: a table of the app's own, made on first use. */
static void push_data(lua_State *L, int ud)
{
    if (lua_getiuservalue(L, ud, 1) == LUA_TTABLE) return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, ud, 1);
}

/* __index: methods first (upvalue 1), then the fields. */
static int conn_index(lua_State *L)
{
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
    struct lb_conn *u = luaL_checkudata(L, 1, conn_meta);
    const char *key = lua_tostring(L, 2);
    if (!key) return 0;
    if (strcmp(key, "id") == 0) {
        lua_pushinteger(L, (lua_Integer)u->id);
        return 1;
    }
    if (strcmp(key, "data") == 0) {
        push_data(L, 1);
        return 1;
    }
    struct conn *c = srv_find_conn(app_of(L)->srv, u->slot, u->id);
    if (!c) return 0; /* gone: only id and data remain */
    if (strcmp(key, "ip") == 0) {
        char ip[INET6_ADDRSTRLEN];
        conn_format_ip(c, ip, sizeof ip);
        lua_pushstring(L, ip);
    } else if (strcmp(key, "path") == 0) {
        lua_pushstring(L, c->path);
    } else if (strcmp(key, "protocol") == 0) {
        lua_pushstring(L, c->protocol); /* nil without one */
    } else if (strcmp(key, "open") == 0) {
        lua_pushboolean(L, c->state == CONN_OPEN);
    } else {
        return 0;
    }
    return 1;
}

static int conn_newindex(lua_State *L)
{
    const char *key = lua_tostring(L, 2);
    if (key && strcmp(key, "data") == 0) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_settop(L, 3);
        lua_setiuservalue(L, 1, 1);
        return 0;
    }
    return luaL_error(L, "conn.%s cannot be set; keep your own values in conn.data",
                      key ? key : "?");
}

static int conn_tostring(lua_State *L)
{
    struct lb_conn *u = luaL_checkudata(L, 1, conn_meta);
    lua_pushfstring(L, "conn %I", (lua_Integer)u->id);
    return 1;
}

static void register_conn_type(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "send", conn_send },
        { "close", conn_close_method },
        { NULL, NULL },
    };
    luaL_newmetatable(L, conn_meta);
    luaL_newlib(L, methods);
    lua_pushcclosure(L, conn_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, conn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* Pushes c's conn object, making it on first use. */
static void push_conn(struct lb_app *app, struct conn *c)
{
    lua_State *L = app->sb.L;
    if (c->lua_ref != LB_NO_REF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->lua_ref);
        return;
    }
    struct lb_conn *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->id = c->id;
    u->slot = c->slot;
    luaL_setmetatable(L, conn_meta);
    lua_pushvalue(L, -1);
    c->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void lb_forget(struct lb_app *app, struct conn *c)
{
    if (c->lua_ref == LB_NO_REF) return;
    luaL_unref(app->sb.L, LUA_REGISTRYINDEX, c->lua_ref);
    c->lua_ref = LB_NO_REF;
}

/* ---- the mw module ------------------------------------------------------------------------- */

static int mw_now(lua_State *L)
{
    lua_pushnumber(L, srv_now(app_of(L)->srv));
    return 1;
}

static int mw_log(lua_State *L)
{
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
    int level = luaL_checkoption(L, 1, NULL, levels);
    sb_log_values(L, 2, ' ', (enum log_level)level);
    return 0;
}

static void push_api(lua_State *L)
{
    static const luaL_Reg api[] = {
        { "now", mw_now },
        { "log", mw_log },
        { NULL, NULL },
    };
    luaL_newlib(L, api);
}

/* ---- calling handlers ---------------------------------------------------------------------- */

/* Every entry into an app's state is a C trampoline run by sb_call, so that everything that
 * allocates (the message string, the conn object, the request table) happens inside the
 * protected call: an app near its memory limit gets a clean memory error, never a panic. */
enum call_kind { CALL_OPEN, CALL_MESSAGE, CALL_CLOSE, CALL_DRAIN, CALL_UPGRADE };

struct call {
    enum call_kind kind;
    const char *handler;
    struct lb_app *app;
    struct conn *c;
    const uint8_t *data; /* message, or close reason */
    size_t len;
    bool binary;
    unsigned code;
    const struct http_request *req;
    const struct hs_upgrade *up;
    struct lb_verdict *verdict;
};

static void push_request(lua_State *L, struct conn *c, const struct http_request *req,
                         const struct hs_upgrade *up);
static void read_verdict(struct lb_app *app, struct conn *c, const struct http_request *req,
                         struct lb_verdict *v);

/* Pushes handler name of the app, or returns false (pushing nothing) when it has none. */
static bool push_handler(struct lb_app *app, const char *name)
{
    lua_State *L = app->sb.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, app->handlers_ref);
    int t = lua_getfield(L, -1, name);
    lua_remove(L, -2);
    if (t == LUA_TFUNCTION) return true;
    lua_pop(L, 1);
    return false;
}

static int run_handler(lua_State *L)
{
    struct call *k = lua_touserdata(L, 1);
    lua_settop(L, 0);
    if (!push_handler(k->app, k->handler)) return 0;
    if (k->kind == CALL_UPGRADE) {
        push_request(L, k->c, k->req, k->up);
        lua_call(L, 1, 3);
        read_verdict(k->app, k->c, k->req, k->verdict);
        return 0;
    }
    push_conn(k->app, k->c);
    switch (k->kind) {
    case CALL_MESSAGE:
        lua_pushlstring(L, (const char *)k->data, k->len);
        lua_pushboolean(L, k->binary);
        lua_call(L, 3, 0);
        break;
    case CALL_CLOSE:
        lua_pushinteger(L, k->code);
        lua_pushlstring(L, (const char *)k->data, k->len);
        lua_call(L, 3, 0);
        break;
    default: lua_call(L, 1, 0); break;
    }
    return 0;
}

static const char *const status_words[] = { "ok", "failed", "ran out of instructions",
                                            "ran out of memory" };

/* Runs the call. Returns 0, or -1 after logging the failure. */
static int dispatch(struct call *k)
{
    lua_State *L = k->app->sb.L;
    lua_pushcfunction(L, run_handler);
    lua_pushlightuserdata(L, k);
    char err[1024];
    enum sb_status st = sb_call(&k->app->sb, 1, 0, err, sizeof err);
    if (st == SB_OK) return 0;
    log_error("app %s: %s handler %s: %s", k->app->name, k->handler, status_words[st], err);
    return -1;
}

int lb_open(struct lb_app *app, struct conn *c)
{
    struct call k = { .kind = CALL_OPEN, .handler = "open", .app = app, .c = c };
    return dispatch(&k);
}

int lb_message(struct lb_app *app, struct conn *c, const uint8_t *data, size_t len, bool binary)
{
    struct call k = { .kind = CALL_MESSAGE, .handler = "message", .app = app, .c = c,
                      .data = data, .len = len, .binary = binary };
    return dispatch(&k);
}

void lb_close(struct lb_app *app, struct conn *c, unsigned code, const char *reason,
              size_t reason_len)
{
    struct call k = { .kind = CALL_CLOSE, .handler = "close", .app = app, .c = c,
                      .data = (const uint8_t *)reason, .len = reason_len, .code = code };
    dispatch(&k);
}

void lb_drain(struct lb_app *app, struct conn *c)
{
    struct call k = { .kind = CALL_DRAIN, .handler = "drain", .app = app, .c = c };
    dispatch(&k);
}

/* ---- the upgrade hook ---------------------------------------------------------------------- */

/* Pushes the request table app.upgrade receives. Header names are lower-cased; repeated
 * fields are joined with ", " as HTTP allows for lists. */
static void push_request(lua_State *L, struct conn *c, const struct http_request *req,
                         const struct hs_upgrade *up)
{
    lua_createtable(L, 0, 7);
    lua_pushlstring(L, up->path, up->path_len);
    lua_setfield(L, -2, "path");
    lua_pushlstring(L, up->query, up->query_len);
    lua_setfield(L, -2, "query");
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    lua_pushstring(L, ip);
    lua_setfield(L, -2, "ip");
    if (up->origin) {
        lua_pushlstring(L, up->origin, up->origin_len);
        lua_setfield(L, -2, "origin");
    }

    lua_createtable(L, 0, (int)req->num_headers);
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        char name[256];
        size_t n = h->name_len < sizeof name ? h->name_len : sizeof name - 1;
        for (size_t k = 0; k < n; k++)
            name[k] = (char)(h->name[k] >= 'A' && h->name[k] <= 'Z' ? h->name[k] + 32 : h->name[k]);
        lua_pushlstring(L, name, n);
        if (lua_getfield(L, -2, lua_tostring(L, -1)) == LUA_TSTRING) {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value, h->value_len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value, h->value_len);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");

    lua_newtable(L);
    size_t pos = 0, len;
    const char *p;
    for (int i = 1; http_list_next(req, "Sec-WebSocket-Protocol", &pos, &p, &len); i++) {
        lua_pushlstring(L, p, len);
        lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "protocols");
}

static void refuse(struct lb_verdict *v, int status, const char *reason)
{
    v->status = status;
    snprintf(v->reason, sizeof v->reason, "%s", reason);
}

/* Reads the handler's three results: true [, {protocol=, data=}], or
 * false [, status [, reason]]. */
static void read_verdict(struct lb_app *app, struct conn *c, const struct http_request *req,
                         struct lb_verdict *v)
{
    lua_State *L = app->sb.L;
    int base = lua_gettop(L) - 3;
    if (!lua_toboolean(L, base + 1)) {
        if (lua_isnil(L, base + 1))
            log_warn("app %s: upgrade handler returned nothing, which refuses the connection; "
                     "return true to accept", app->name);
        lua_Integer status = 403;
        if (!lua_isnil(L, base + 2)) {
            int isnum;
            status = lua_tointegerx(L, base + 2, &isnum);
            if (!isnum || status < 400 || status > 599) {
                log_error("app %s: upgrade handler refused with status %s; use a number from "
                          "400 to 599", app->name, luaL_tolstring(L, base + 2, NULL));
                refuse(v, 500, "internal error");
                return;
            }
        }
        const char *reason = lua_type(L, base + 3) == LUA_TSTRING ? lua_tostring(L, base + 3)
                                                                  : "refused by the application";
        refuse(v, (int)status, reason);
        return;
    }
    if (lua_type(L, base + 2) != LUA_TTABLE) return;
    if (lua_getfield(L, base + 2, "protocol") == LUA_TSTRING) {
        size_t len;
        const char *p = lua_tolstring(L, -1, &len);
        if (!hs_protocol_offered(req, p, len) || len >= sizeof v->protocol) {
            log_error("app %s: upgrade handler picked subprotocol '%s', which the client did "
                      "not offer", app->name, p);
            refuse(v, 500, "internal error");
            return;
        }
        memcpy(v->protocol, p, len);
        v->protocol_len = len;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, base + 2, "data") == LUA_TTABLE) {
        push_conn(app, c);
        lua_insert(L, -2);
        lua_setiuservalue(L, -2, 1);
    }
}

void lb_upgrade(struct lb_app *app, struct conn *c, const struct http_request *req,
                const struct hs_upgrade *up, struct lb_verdict *v)
{
    memset(v, 0, sizeof *v);
    struct call k = { .kind = CALL_UPGRADE, .handler = "upgrade", .app = app, .c = c,
                      .req = req, .up = up, .verdict = v };
    if (dispatch(&k) < 0) refuse(v, 500, "internal error");
}

/* ---- loading ------------------------------------------------------------------------------- */

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* Finds the main chunk: path itself, or path/app.lua for a folder. */
static int locate(struct lb_app *app, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot open app %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        app->dir = strdup(path);
        app->file = join(path, "app.lua");
        if (app->file && stat(app->file, &st) != 0) {
            snprintf(err, errlen, "%s is a folder without app.lua; an app folder needs one",
                     path);
            return -1;
        }
    } else {
        const char *slash = strrchr(path, '/');
        app->dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        app->file = strdup(path);
    }
    if (!app->dir || !app->file) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Checks what the main chunk returned (at the top of the stack): a table whose handler
 * fields are functions. Raises otherwise. */
static void check_handlers(struct lb_app *app, lua_State *L)
{
    if (lua_type(L, -1) != LUA_TTABLE)
        luaL_error(L, "%s must return a table of handlers (it returned %s)", app->file,
                   luaL_typename(L, -1));
    for (const char *const *h = handler_names; *h; h++) {
        int t = lua_getfield(L, -1, *h);
        lua_pop(L, 1);
        if (t != LUA_TNIL && t != LUA_TFUNCTION)
            luaL_error(L, "%s: handler '%s' must be a function (it is a %s)", app->file, *h,
                       lua_typename(L, t));
    }
    /* A misspelt handler would silently never run: point it out. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION) {
            const char *k = lua_tostring(L, -2);
            bool known = false;
            for (const char *const *h = handler_names; *h && !known; h++)
                known = strcmp(k, *h) == 0;
            if (!known)
                log_warn("app %s: %s returns a function '%s', which is not a handler "
                         "(handlers: upgrade, open, message, close, drain, reload)",
                         app->name, app->file, k);
        }
        lua_pop(L, 1);
    }
}

/* Trampoline: sets up the state and runs the main chunk in a fresh environment. */
static int run_load(lua_State *L)
{
    struct lb_app *app = lua_touserdata(L, 1);
    lua_settop(L, 0);
    register_conn_type(L);
    push_api(L);
    lua_pushvalue(L, -1);
    app->api_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    sb_push_env(&app->sb, -1);
    if (sb_load_file(&app->sb, app->file, -1) != 0) return lua_error(L);
    lua_call(L, 0, 1);
    check_handlers(app, L);
    app->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

struct lb_app *lb_app_load(struct server *srv, const char *path, const char *scripts_dir,
                           const struct lb_limits *limits, char *err, size_t errlen)
{
    struct lb_app *app = calloc(1, sizeof *app);
    if (!app) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    app->srv = srv;
    app->handlers_ref = app->api_ref = LUA_NOREF;
    app->name = strdup(path);
    app->scripts_dir = strdup(scripts_dir);
    if (!app->name || !app->scripts_dir) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (locate(app, path, err, errlen) < 0) goto fail;

    app->sb.name = app->name;
    app->sb.app_dir = app->dir;
    app->sb.scripts_dir = app->scripts_dir;
    app->sb.mem_limit = limits->memory;
    app->sb.budget = limits->instructions;
    if (sb_open(&app->sb) < 0) {
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        goto fail;
    }
    lua_pushcfunction(app->sb.L, run_load);
    lua_pushlightuserdata(app->sb.L, app);
    if (sb_call(&app->sb, 1, 0, err, errlen) != SB_OK) goto fail;
    return app;

fail:
    lb_app_free(app);
    return NULL;
}

void lb_app_free(struct lb_app *app)
{
    if (!app) return;
    sb_close(&app->sb);
    free(app->name);
    free(app->dir);
    free(app->file);
    free(app->scripts_dir);
    free(app);
}

const char *lb_app_name(const struct lb_app *app) { return app->name; }
