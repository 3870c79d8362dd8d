/* The Lua `conn` object. It holds the connection's id and table slot, never a pointer: every
 * method looks the connection up again and answers nil, "closed" once it is gone, however long
 * the app kept the object. Each connection has one cached userdata, made when the connection
 * first reaches Lua and released when it is freed, so dispatching a message builds no table. */
#include <arpa/inet.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"
#include "log.h"
#include "lua_app.h"
#include "lua_channels.h"
#include "lpresence.h"
#include "rnode.h"
#include "utf8.h"
#include "ws_close.h"

static const char conn_meta[] = "moonwire.conn";

_Static_assert(CONN_NO_REF == LUA_NOREF, "CONN_NO_REF must match Lua's LUA_NOREF");

struct lb_conn {
    uint64_t id;
    uint32_t slot;
};

/* The conn object at index 1, checked against the metatable each method holds as upvalue 1:
 * luaL_checkudata would look the metatable up in the registry by name on every call. Raises
 * when the argument is not a conn (a misuse, such as conn.send() instead of conn:send()). */
static struct lb_conn *to_conn(lua_State *L)
{
    struct lb_conn *u = lua_touserdata(L, 1);
    if (!u || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        luaL_typeerror(L, 1, "conn");
    lua_pop(L, 1);
    return u;
}

/* The connection behind the conn object at index 1, or NULL once it is gone. */
static struct conn *check_conn(lua_State *L)
{
    struct lb_conn *u = to_conn(L);
    struct conn *c = conn_find(lb_app_of(L)->env->conns, u->slot, u->id);
    return c && conn_is_open(c) ? c : NULL;
}

struct conn *lb_conn_at(lua_State *L, int idx)
{
    struct lb_conn *u = lua_touserdata(L, idx);
    if (!u) return NULL;
    struct conn *c = conn_find(lb_app_of(L)->env->conns, u->slot, u->id);
    return c && conn_is_open(c) ? c : NULL;
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
    if (!binary && !lb_valid_text(lb_app_of(L), data, len))
        return luaL_error(L, "conn:send: text is not valid UTF-8; send bytes as binary "
                             "with conn:send(data, true)");
    if (!c) return closed_result(L);
    /* A moonwire.v1 client tells app messages from the protocol's by their envelope. */
    int rc = c->envelope ? lb_ch_send_message(c, data, len, binary)
                         : conn_send_message(c, data, len, binary);
    if (rc != CONN_CLOSED) lb_app_of(L)->stats.messages_out++;
    switch (rc) {
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
    if (!utf8_valid(reason, len))
        return luaL_error(L, "conn:close: the reason is not valid UTF-8");
    if (!c) return closed_result(L);
    conn_close(c, (unsigned)code, reason, len); /* a long reason is cut at 123 bytes */
    lua_pushboolean(L, 1);
    return 1;
}

/* conn:subscribe(topic) -> true | false (already) | nil, "closed" | nil, "too many subscriptions"
 * | nil, "topic memory full". A name longer than limits.max_topic_length raises. */
static int conn_subscribe(lua_State *L)
{
    struct conn *c = check_conn(L);
    size_t len;
    const char *topic = lb_check_topic(L, 2, &len, "conn:subscribe");
    if (!c) return closed_result(L);
    struct lb_app *app = lb_app_of(L);
    int rc = ps_subscribe(&app->ps, c, topic, len);
    if (rc == PS_E_LIMIT || rc == PS_E_FULL) {
        luaL_pushfail(L);
        if (rc == PS_E_LIMIT) {
            lua_pushliteral(L, "too many subscriptions");
            return 2;
        }
        /* Past sandbox.topic_memory: the app's clients have named too many topics. Say so in
         * the log, once a second at most, since every refusal here is the same story. */
        double now = ev_now(app->env->loop);
        if (now - app->topic_warned >= 1) {
            app->topic_warned = now;
            log_warn("app %s: conn:subscribe refused: the app's topics use %zu bytes of C "
                     "memory, and sandbox.topic_memory allows %zu", app->name,
                     app->ps.topics.bytes, app->ps.topics.max_bytes);
        }
        lua_pushliteral(L, "topic memory full");
        return 2;
    }
    if (rc < 0) return luaL_error(L, "conn:subscribe: out of memory");
    if (lua_istable(L, 3) && lua_getfield(L, 3, "presence") != LUA_TNIL) {
        /* { presence = info }: this connection shows in mw.presence(topic) on every node. */
        size_t ilen;
        const char *info = lua_tolstring(L, -1, &ilen);
        if (!info || lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "conn:subscribe: presence must be a string (encode a table "
                                 "with mw.json.encode)");
        if (!app->env->redis) {
            /* This node alone: in the process's table, left with the connection. */
            if (lpres_join(app->shared_ns, c, conn_id(c), topic, len, info, ilen) < 0)
                return luaL_error(L, "conn:subscribe: out of memory");
        } else if (rnode_presence_join(app->env->redis, app, c, conn_id(c), topic, len, info, ilen) < 0)
            return luaL_error(L, "conn:subscribe: out of memory");
    }
    lua_pushboolean(L, rc);
    return 1;
}

/* conn:unsubscribe(topic) -> true | false (was not) | nil, "closed" */
static int conn_unsubscribe(lua_State *L)
{
    struct conn *c = check_conn(L);
    size_t len;
    const char *topic = lb_check_topic(L, 2, &len, "conn:unsubscribe");
    if (!c) return closed_result(L);
    lua_pushboolean(L, ps_unsubscribe(&lb_app_of(L)->ps, c, topic, len));
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
    struct lb_conn *u = lua_touserdata(L, 1); /* a metamethod: a conn, by construction */
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
    struct conn *c = conn_find(lb_app_of(L)->env->conns, u->slot, u->id);
    if (!c) { /* gone: only id and data remain, and it is not open */
        if (strcmp(key, "open") != 0) return 0;
        lua_pushboolean(L, 0);
        return 1;
    }
    if (strcmp(key, "ip") == 0) {
        char ip[INET6_ADDRSTRLEN];
        conn_format_ip(c, ip, sizeof ip);
        lua_pushstring(L, ip);
    } else if (strcmp(key, "path") == 0) {
        lua_pushstring(L, conn_path(c));
    } else if (strcmp(key, "protocol") == 0) {
        lua_pushstring(L, conn_protocol(c)); /* nil without one */
    } else if (strcmp(key, "open") == 0) {
        lua_pushboolean(L, conn_is_open(c));
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

void lb_conn_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "send", conn_send },
        { "close", conn_close_method },
        { "subscribe", conn_subscribe },
        { "unsubscribe", conn_unsubscribe },
        { NULL, NULL },
    };
    luaL_newmetatable(L, conn_meta);
    lua_newtable(L);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, methods, 1); /* each method holds the metatable, for to_conn */
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
void lb_push_conn(lua_State *L, struct conn *c)
{
    int ref = conn_handler_ref(c);
    if (ref != CONN_NO_REF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        return;
    }
    struct lb_conn *u = lua_newuserdatauv(L, sizeof *u, 1);
    u->id = conn_id(c);
    u->slot = conn_slot(c);
    luaL_setmetatable(L, conn_meta);
    lua_pushvalue(L, -1);
    conn_set_handler_ref(c, luaL_ref(L, LUA_REGISTRYINDEX));
}

void lb_forget(struct lb_app *app, struct conn *c)
{
    int ref = conn_handler_ref(c);
    if (ref == CONN_NO_REF) return;
    luaL_unref(app->sb.L, LUA_REGISTRYINDEX, ref);
    conn_set_handler_ref(c, CONN_NO_REF);
}

void lb_conn_clear_data(struct lb_app *app, struct conn *c)
{
    int ref = conn_handler_ref(c);
    if (ref == CONN_NO_REF) return;
    lua_State *L = app->sb.L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushnil(L);
    lua_setiuservalue(L, -2, 1);
    lua_pop(L, 1);
}

void lb_conn_set_data(lua_State *L, struct conn *c)
{
    lb_push_conn(L, c);
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, 1);
    lua_pop(L, 1);
}
