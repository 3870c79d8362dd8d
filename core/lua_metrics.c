/* mw.metrics: an app's own Prometheus metrics, kept in C by its registry (app_metrics.h) so
 * they outlive hot reloads; defining one again with the same name returns the one that exists.
 *
 *   local joins = mw.metrics.counter("joins", "Rooms joined", { "room" })
 *   joins:inc(1, { "lobby" })                 -- or { room = "lobby" }
 *   local players = mw.metrics.gauge("players", "Players online")
 *   players:set(12)
 *   local tick = mw.metrics.histogram("tick_seconds", "Tick time", { 0.001, 0.01, 0.1 })
 *   tick:observe(0.004)
 *
 * Misuse (a bad name, the wrong labels, a counter going down, the series cap) raises, naming
 * the metric and what to do. */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "app_metrics.h"
#include "lua_app.h"

static const char metric_meta[] = "moonwire.metric";

/* What a metric object holds: its index in the app's registry. */
struct lb_metric {
    int index;
};

static struct am_metric *metric_of(lua_State *L, struct lb_metric **out)
{
    struct lb_metric *m = luaL_checkudata(L, 1, metric_meta);
    if (out) *out = m;
    return lb_app_of(L)->metrics.metrics[m->index];
}

/* Reads label values at index idx: nil (no labels), an array in the order the labels were
 * defined, or a table by label name. Values are strings or numbers. */
static size_t label_values(lua_State *L, int idx, const struct am_metric *m,
                           const char **values)
{
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t n = 0;
    for (size_t i = 0; i < m->nlabels; i++) {
        int t = lua_rawgeti(L, idx, (lua_Integer)i + 1);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            t = lua_getfield(L, idx, m->labels[i]);
        }
        if (t != LUA_TSTRING && t != LUA_TNUMBER)
            luaL_error(L, "mw.metrics: %s needs a value for its label '%s' (labels: give them "
                          "in order, or by name)", m->name, m->labels[i]);
        values[n++] = lua_tostring(L, -1); /* kept alive on the stack until we return */
    }
    return n;
}

static int update(lua_State *L, double v, bool set)
{
    struct lb_metric *u;
    struct am_metric *m = metric_of(L, &u);
    const char *values[AM_MAX_LABELS];
    size_t n = label_values(L, 3, m, values);
    if (n != m->nlabels)
        return luaL_error(L, "mw.metrics: %s has %d label(s); pass their values as the last "
                             "argument", m->name, (int)m->nlabels);
    struct lb_app *app = lb_app_of(L);
    bool threaded = app->env->threaded;
    if (threaded) pthread_mutex_lock(&app->metrics_lock);
    int rc = am_update(&app->metrics, u->index, values, n, v, set);
    if (threaded) pthread_mutex_unlock(&app->metrics_lock);
    if (rc == AM_E_CAP)
        return luaL_error(L, "mw.metrics: %s: the app has %d series already, the cap; label "
                             "values must come from a small set (never user ids or topics)",
                          m->name, (int)app->metrics.max_series);
    if (rc < 0) return luaL_error(L, "mw.metrics: %s %s", m->name, am_error(rc));
    return 0;
}

/* metric:inc([n [, labels]]) for counters and gauges. */
static int metric_inc(lua_State *L)
{
    struct am_metric *m = metric_of(L, NULL);
    if (m->type == AM_HISTOGRAM)
        return luaL_error(L, "mw.metrics: %s is a histogram: use :observe(value)", m->name);
    return update(L, luaL_optnumber(L, 2, 1), false);
}

/* gauge:set(v [, labels]) */
static int metric_set(lua_State *L)
{
    struct am_metric *m = metric_of(L, NULL);
    if (m->type != AM_GAUGE)
        return luaL_error(L, "mw.metrics: %s is not a gauge: only gauges can be set", m->name);
    return update(L, luaL_checknumber(L, 2), true);
}

/* histogram:observe(v [, labels]) */
static int metric_observe(lua_State *L)
{
    struct am_metric *m = metric_of(L, NULL);
    if (m->type != AM_HISTOGRAM)
        return luaL_error(L, "mw.metrics: %s is not a histogram: use :inc or :set", m->name);
    return update(L, luaL_checknumber(L, 2), false);
}

static int metric_tostring(lua_State *L)
{
    struct am_metric *m = metric_of(L, NULL);
    static const char *const types[] = { "counter", "gauge", "histogram" };
    lua_pushfstring(L, "metric %s (%s)", m->name, types[m->type]);
    return 1;
}

/* Reads an array of strings (label names) at idx into out. */
static size_t string_list(lua_State *L, int idx, const char **out, size_t max, const char *what)
{
    if (lua_isnoneornil(L, idx)) return 0;
    luaL_checktype(L, idx, LUA_TTABLE);
    size_t n = (size_t)lua_rawlen(L, idx);
    if (n > max) luaL_error(L, "mw.metrics: at most %d %s", (int)max, what);
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
            luaL_error(L, "mw.metrics: %s must be strings", what);
        out[i] = lua_tostring(L, -1);
    }
    return n;
}

static int define(lua_State *L, enum am_type type)
{
    const char *name = luaL_checkstring(L, 1);
    const char *help = luaL_optstring(L, 2, "");
    int labels_at = type == AM_HISTOGRAM ? 4 : 3;
    double bounds[HIST_MAX_BUCKETS];
    size_t nbounds = 0;
    if (type == AM_HISTOGRAM) {
        luaL_checktype(L, 3, LUA_TTABLE);
        nbounds = (size_t)lua_rawlen(L, 3);
        if (nbounds == 0 || nbounds > HIST_MAX_BUCKETS)
            return luaL_error(L, "mw.metrics.histogram: %s needs 1 to %d bucket bounds, like "
                                 "{ 0.001, 0.01, 0.1 }", name, HIST_MAX_BUCKETS);
        for (size_t i = 0; i < nbounds; i++) {
            lua_rawgeti(L, 3, (lua_Integer)i + 1);
            int isnum;
            bounds[i] = lua_tonumberx(L, -1, &isnum);
            if (!isnum) return luaL_error(L, "mw.metrics.histogram: bucket bounds are numbers");
            lua_pop(L, 1);
        }
    }
    const char *labels[AM_MAX_LABELS];
    size_t nlabels = string_list(L, labels_at, labels, AM_MAX_LABELS, "label names");
    struct lb_app *app = lb_app_of(L);
    bool threaded = app->env->threaded;
    if (threaded) pthread_mutex_lock(&app->metrics_lock);
    int rc = am_define(&app->metrics, type, name, help, labels, nlabels, bounds, nbounds);
    if (threaded) pthread_mutex_unlock(&app->metrics_lock);
    if (rc < 0) return luaL_error(L, "mw.metrics: '%s' %s", name, am_error(rc));
    struct lb_metric *u = lua_newuserdatauv(L, sizeof *u, 0);
    u->index = rc;
    luaL_setmetatable(L, metric_meta);
    return 1;
}

static int mw_counter(lua_State *L) { return define(L, AM_COUNTER); }
static int mw_gauge(lua_State *L) { return define(L, AM_GAUGE); }
static int mw_histogram(lua_State *L) { return define(L, AM_HISTOGRAM); }

void lb_push_metrics(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "inc", metric_inc }, { "set", metric_set }, { "observe", metric_observe },
        { NULL, NULL },
    };
    luaL_newmetatable(L, metric_meta);
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, metric_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    static const luaL_Reg api[] = {
        { "counter", mw_counter }, { "gauge", mw_gauge }, { "histogram", mw_histogram },
        { NULL, NULL },
    };
    luaL_newlib(L, api);
}
