/* mw.shared: the process-wide store (core/sstore.c) as seen from an app. Every worker's copy
 * of the app sees the same keys; other apps never do (each app is a namespace).
 *
 *   mw.shared.get(key)                 -> value, or nil
 *   mw.shared.set(key, value [, ttl])  -> true, or nil, reason (value nil deletes)
 *   mw.shared.add(key, value [, ttl])  -> true, or nil, "exists" (or another reason)
 *   mw.shared.incr(key [, by [, ttl]]) -> the new number, or nil, reason
 *   mw.shared.delete(key)              -> true
 *
 * Values are strings, numbers (integers stay integers) and booleans. A wrong argument type is
 * a bug in the app and raises; what can happen to correct code (the store is full, the value
 * is not a number) answers nil and the reason. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_app.h"
#include "sstore.h"

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct sstore *store_of(lua_State *L, const char *fn)
{
    struct sstore *st = lb_app_of(L)->env->shared;
    if (!st) luaL_error(L, "%s: mw.shared is not available here", fn);
    return st;
}

/* The key (a string of 1 to SSTORE_MAX_KEY bytes), or NULL after pushing nil, reason. */
static const char *check_key(lua_State *L, size_t *len)
{
    const char *key = luaL_checklstring(L, 1, len);
    if (*len == 0 || *len > SSTORE_MAX_KEY) {
        lua_pushnil(L);
        lua_pushfstring(L, "the key must be 1 to %d bytes", SSTORE_MAX_KEY);
        return NULL;
    }
    return key;
}

static void to_value(lua_State *L, int idx, struct sstore_value *v, const char *fn)
{
    *v = (struct sstore_value){ .type = SSTORE_NONE };
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE: break;
    case LUA_TSTRING:
        v->type = SSTORE_STRING;
        v->s = lua_tolstring(L, idx, &v->len);
        break;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v->type = SSTORE_INTEGER;
            v->i = lua_tointeger(L, idx);
        } else {
            v->type = SSTORE_NUMBER;
            v->d = lua_tonumber(L, idx);
        }
        break;
    case LUA_TBOOLEAN:
        v->type = SSTORE_BOOLEAN;
        v->i = lua_toboolean(L, idx);
        break;
    default:
        luaL_error(L, "%s: values are strings, numbers or booleans, not %s (store a table as "
                      "mw.json.encode(t))", fn, luaL_typename(L, idx));
    }
}

static void push_value(lua_State *L, const struct sstore_value *v)
{
    switch (v->type) {
    case SSTORE_STRING: lua_pushlstring(L, v->s, v->len); break;
    case SSTORE_INTEGER: lua_pushinteger(L, (lua_Integer)v->i); break;
    case SSTORE_NUMBER: lua_pushnumber(L, v->d); break;
    case SSTORE_BOOLEAN: lua_pushboolean(L, v->i != 0); break;
    default: lua_pushnil(L); break;
    }
}

static double check_ttl(lua_State *L, int idx, const char *fn)
{
    double ttl = luaL_optnumber(L, idx, 0);
    if (!(ttl >= 0) || isinf(ttl))
        luaL_error(L, "%s: the expiry is seconds from now (0 or none: never), not %f", fn, ttl);
    return ttl;
}

static int failure(lua_State *L, int rc)
{
    lua_pushnil(L);
    switch (rc) {
    case SSTORE_E_FULL:
        lua_pushliteral(L, "no memory: mw.shared is full (limits.shared_memory)");
        break;
    case SSTORE_E_NOT_NUMBER: lua_pushliteral(L, "not a number"); break;
    case SSTORE_E_EXISTS: lua_pushliteral(L, "exists"); break;
    case SSTORE_E_OVERFLOW: lua_pushliteral(L, "integer overflow"); break;
    default: lua_pushliteral(L, "out of memory"); break;
    }
    return 2;
}

static int shared_get(lua_State *L)
{
    struct sstore *st = store_of(L, "mw.shared.get");
    size_t len;
    const char *key = check_key(L, &len);
    if (!key) return 2;
    struct sstore_value v;
    char *buf;
    int rc = sstore_get(st, lb_app_of(L)->shared_ns, key, len, monotonic_now(), &v, &buf);
    if (rc < 0) return failure(L, rc);
    push_value(L, &v);
    free(buf);
    return 1;
}

static int set_or_add(lua_State *L, bool only_new, const char *fn)
{
    struct sstore *st = store_of(L, fn);
    size_t len;
    const char *key = check_key(L, &len);
    if (!key) return 2;
    luaL_checkany(L, 2);
    struct sstore_value v;
    to_value(L, 2, &v, fn);
    double ttl = check_ttl(L, 3, fn);
    int rc = sstore_set(st, lb_app_of(L)->shared_ns, key, len, &v, ttl, only_new,
                        monotonic_now());
    if (rc < 0) return failure(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int shared_set(lua_State *L) { return set_or_add(L, false, "mw.shared.set"); }
static int shared_add(lua_State *L) { return set_or_add(L, true, "mw.shared.add"); }

static int shared_incr(lua_State *L)
{
    struct sstore *st = store_of(L, "mw.shared.incr");
    size_t len;
    const char *key = check_key(L, &len);
    if (!key) return 2;
    struct sstore_value by = { .type = SSTORE_INTEGER, .i = 1 };
    if (!lua_isnoneornil(L, 2)) {
        luaL_checknumber(L, 2);
        to_value(L, 2, &by, "mw.shared.incr");
    }
    double ttl = check_ttl(L, 3, "mw.shared.incr");
    struct sstore_value out;
    int rc = sstore_incr(st, lb_app_of(L)->shared_ns, key, len, &by, ttl, monotonic_now(), &out);
    if (rc < 0) return failure(L, rc);
    push_value(L, &out);
    return 1;
}

static int shared_delete(lua_State *L)
{
    struct sstore *st = store_of(L, "mw.shared.delete");
    size_t len;
    const char *key = check_key(L, &len);
    if (!key) return 2;
    struct sstore_value none = { .type = SSTORE_NONE };
    sstore_set(st, lb_app_of(L)->shared_ns, key, len, &none, 0, false, monotonic_now());
    lua_pushboolean(L, 1);
    return 1;
}

void lb_push_shared(lua_State *L, int api)
{
    api = lua_absindex(L, api);
    static const luaL_Reg fns[] = {
        { "get", shared_get }, { "set", shared_set }, { "add", shared_add },
        { "incr", shared_incr }, { "delete", shared_delete }, { NULL, NULL },
    };
    luaL_newlib(L, fns);
    lua_setfield(L, api, "shared");
}
