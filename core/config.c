/* Config file loading. The file runs in its own throwaway Lua state, in an environment whose
 * __newindex accepts only known top-level keys and remembers the line of each assignment, so
 * errors found later, in nested tables, can still point at the right line. */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "http.h"
#include "origin.h"
#include "outbound.h"
#include "redis.h"
#include "util.h"

int cfg_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-' || *s == ' ') return -1;
    int shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
    }
    if (*end == 'i' && end[1] == 'B') end += 2; /* KiB, MiB, GiB */
    else if (*end == 'B' && shift) end++;
    if (*end || v > (UINT64_MAX >> shift)) return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

void cfg_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen[0].host, sizeof cfg->listen[0].host, "127.0.0.1");
    snprintf(cfg->admin.host, sizeof cfg->admin.host, "127.0.0.1");
    cfg->log.access = true;
    cfg->listen[0].port = 8080;
    cfg->nlisten = 1;
    cfg->limits = (struct cfg_limits){
        .max_message = 16 << 20,
        .max_header_bytes = 16 << 10,
        .max_headers = 100,
        .max_http_body = 1 << 20,
        .max_connections = 100000,
        .per_ip = 1000,
        .connects_per_second = 0,
        .messages_per_second = 1000,
        .burst = 2000,
        .bytes_per_second = 0,
        .throttle = false,
        .handshake_timeout = 5,
        .idle_timeout = 60,
        .close_timeout = 5,
        .send_buffer = 4 << 20,
        .max_send_buffer = 16 << 20,
        .max_subscriptions = 1000,
        .max_topic_length = 256,
        .max_buffered = 256 << 20,
        .max_buffered_per_ip = 64 << 20,
        .max_queued = (size_t)1 << 30,
        .shutdown_timeout = 5,
        .shared_memory = 64 << 20,
        .history_memory = 64 << 20,
    };
    cfg->sandbox = (struct cfg_sandbox){ .instructions = 10000000, .memory = 64 << 20,
                                          .time_limit = 1, .topic_memory = 64 << 20,
                                          .timer_share = 0.5, .wait_timeout = 30 };
    /* Parsing a chunk this size takes at most ~25 ms (docs/configuration.md). */
    cfg->sandbox.max_load = 16 << 10;
    cfg->deflate = (struct cfg_deflate){ .enabled = false, .context = false, .level = 3,
                                         .window_bits = 11, .min_size = 64,
                                         .memory = 64 << 20 };
    cfg->outbound.max_response = 16 << 20;
    cfg->outbound.max_in_flight = 100;
    cfg->outbound.timeout = 10;
    cfg->redis = (struct cfg_redis){ .prefix = "mw", .connect_timeout = 2, .timeout = 5,
                                     .probe_interval = 5, .backoff_min = 0.1,
                                     .backoff_max = 5, .linger = 5, .max_pending = 8 << 20,
                                     .max_in_flight = 10000, .presence_ttl = 60,
                                     .node_lease = 15 };
    cfg->workers = 1;
}

/* ---- typed fields -------------------------------------------------------------------------- */

enum field_type { F_U64, F_SIZE, F_DOUBLE, F_BOOL };

struct field {
    const char *name;
    enum field_type type;
    size_t offset;
    double min; /* smallest allowed value other than 0 (which turns a limit off) */
    bool zero_ok;
    double max; /* largest allowed value; 0: none */
};

#define LIMIT(n, t, min, z) { #n, t, offsetof(struct cfg_limits, n), min, z, 0 }
#define LIMIT_UPTO(n, t, min, max) { #n, t, offsetof(struct cfg_limits, n), min, false, max }
static const struct field limit_fields[] = {
    LIMIT_UPTO(max_message, F_U64, 1, (double)CFG_MAX_MESSAGE),
    LIMIT(max_header_bytes, F_SIZE, 512, false),
    LIMIT_UPTO(max_headers, F_SIZE, 8, HTTP_MAX_HEADER_FIELDS),
    /* Kept whole in the connection until the handler runs: bounded, and well under 4 GiB. */
    LIMIT_UPTO(max_http_body, F_SIZE, 1, 1 << 30),
    LIMIT(max_connections, F_SIZE, 1, true),
    LIMIT(per_ip, F_SIZE, 1, true),
    LIMIT(connects_per_second, F_DOUBLE, 0, true),
    LIMIT(messages_per_second, F_DOUBLE, 0, true),
    LIMIT(burst, F_DOUBLE, 1, false),
    LIMIT(bytes_per_second, F_DOUBLE, 1, true),
    LIMIT(throttle, F_BOOL, 0, true),
    LIMIT(handshake_timeout, F_DOUBLE, 0, true),
    LIMIT(idle_timeout, F_DOUBLE, 0, true),
    LIMIT(close_timeout, F_DOUBLE, 0, true),
    LIMIT(send_buffer, F_SIZE, 1, true),
    LIMIT(max_send_buffer, F_SIZE, 1, true),
    LIMIT(max_subscriptions, F_SIZE, 1, true),
    LIMIT(max_topic_length, F_SIZE, 1, true),
    LIMIT(max_buffered, F_SIZE, 1, true),
    LIMIT(max_buffered_per_ip, F_SIZE, 1, true),
    LIMIT(max_queued, F_SIZE, 1, true),
    LIMIT(shared_memory, F_SIZE, 1024, true),
    LIMIT(history_memory, F_SIZE, 1024, true),
    LIMIT(shutdown_timeout, F_DOUBLE, 0, true),
    { NULL, 0, 0, 0, false, 0 },
};
#define SANDBOX(n, t, min) { #n, t, offsetof(struct cfg_sandbox, n), min, true, 0 }
static const struct field sandbox_fields[] = {
    SANDBOX(instructions, F_U64, 1000),
    SANDBOX(memory, F_SIZE, 1 << 20),
    SANDBOX(time_limit, F_DOUBLE, 0.001),
    SANDBOX(max_load, F_SIZE, 1),
    SANDBOX(topic_memory, F_SIZE, 64 << 10),
    { "timer_share", F_DOUBLE, offsetof(struct cfg_sandbox, timer_share), 0.01, true, 1 },
    SANDBOX(wait_timeout, F_DOUBLE, 0.01),
    { NULL, 0, 0, 0, false, 0 },
};

static const char *const top_keys[] = { "listen", "apps", "origins", "require_origin", "limits",
                                        "sandbox", "admin", "log", "outbound", "workers",
                                        "deflate", "history", "redis", NULL };

#define OUTBOUND(n, t, min, max) { #n, t, offsetof(struct cfg_outbound, n), min, false, max }
static const struct field outbound_fields[] = {
    OUTBOUND(max_response, F_SIZE, 1, 1 << 30),
    OUTBOUND(max_in_flight, F_SIZE, 1, 100000),
    OUTBOUND(timeout, F_DOUBLE, 0.001, 3600),
    { NULL, 0, 0, 0, false, 0 },
};

/* The mistakes found in one file, reported together in the order of their lines. */
#define MAX_MISTAKES 16

struct mistake {
    long line;
    char text[480];
};

struct loader {
    lua_State *L;
    const char *path;
    char *err;
    size_t errlen;
    struct mistake mistakes[MAX_MISTAKES];
    size_t nmistakes;
    size_t more;             /* mistakes past MAX_MISTAKES */
};

/* Records a mistake at line. */
static void note_mistake(struct loader *ld, long line, const char *fmt, va_list ap)
{
    if (ld->nmistakes == MAX_MISTAKES) {
        ld->more++;
        return;
    }
    struct mistake *m = &ld->mistakes[ld->nmistakes++];
    m->line = line;
    int n = snprintf(m->text, sizeof m->text, "%s:%ld: ", ld->path, line);
    if (n > 0 && (size_t)n < sizeof m->text)
        vsnprintf(m->text + n, sizeof m->text - (size_t)n, fmt, ap);
}

static void mistakef(struct loader *ld, long line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    note_mistake(ld, line, fmt, ap);
    va_end(ap);
}

/* Finds where a setting is written, for error messages. Lua reports the line where an
 * assignment ends, which for a table spread over several lines is its closing brace; the
 * source says better. Returns the line of "key =" inside the statement "top = ..." that ends at
 * end_line (or of "top =" itself when key is NULL), or end_line when the text does not say. */
static long locate(const char *path, const char *top, const char *key, long end_line)
{
    FILE *f = fopen(path, "r");
    if (!f) return end_line;
    char line[1024];
    long n = 0, start = 0, found = 0;
    size_t toplen = strlen(top), keylen = key ? strlen(key) : 0;
    while (n < end_line && fgets(line, sizeof line, f)) {
        n++;
        const char *p = line + strspn(line, " \t");
        if (strncmp(p, top, toplen) == 0 && p[toplen + strspn(p + toplen, " \t")] == '=') {
            start = n; /* the statement (re)starts here */
            found = 0;
        }
        if (!key || !start || found) continue;
        for (const char *k = strstr(line, key); k; k = strstr(k + 1, key)) {
            bool word = (k == line || !(k[-1] == '_' || (k[-1] >= 'a' && k[-1] <= 'z') ||
                                        (k[-1] >= 'A' && k[-1] <= 'Z')));
            const char *after = k + keylen;
            after += strspn(after, " \t");
            if (word && *after == '=' && after[1] != '=') {
                found = n;
                break;
            }
        }
    }
    fclose(f);
    return found ? found : start ? start : end_line;
}

/* Formats "path:line: message" for setting key (NULL for the whole value) of top-level top. */
static int failf(struct loader *ld, const char *top, const char *key, const char *fmt, ...)
{
    lua_State *L = ld->L;
    lua_getfield(L, LUA_REGISTRYINDEX, "moonwire.config.lines");
    lua_getfield(L, -1, top);
    long line = locate(ld->path, top, key, (long)lua_tointeger(L, -1));
    lua_pop(L, 2);
    va_list ap;
    va_start(ap, fmt);
    note_mistake(ld, line, fmt, ap);
    va_end(ap);
    return -1;
}

static void list_names(const struct field *f, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (; f->name && n < cap; f++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", f->name);
}

/* Reads the field named name (f, its description) from the value at the top of the stack
 * into base. Returns 0, or -1 after recording the mistake. Leaves the stack as it was. */
static int read_field(struct loader *ld, const char *key, const char *name,
                      const struct field *f, void *base)
{
    lua_State *L = ld->L;
    char *p = (char *)base + f->offset;
    if (f->type == F_BOOL) {
        if (lua_type(L, -1) != LUA_TBOOLEAN)
            return failf(ld, key, name, "%s.%s must be true or false", key, name);
        *(bool *)(void *)p = lua_toboolean(L, -1);
        return 0;
    }
    int isnum;
    double v = lua_tonumberx(L, -1, &isnum);
    uint64_t size;
    /* Sizes may be written as on the command line: "16M". */
    if ((f->type == F_SIZE || f->type == F_U64) && lua_type(L, -1) == LUA_TSTRING) {
        if (cfg_parse_size(lua_tostring(L, -1), &size) < 0)
            return failf(ld, key, name, "%s.%s must be a number, or a size like \"16M\" "
                         "(K, M, G)", key, name);
        v = (double)size;
    } else if (!isnum || lua_type(L, -1) != LUA_TNUMBER || isnan(v) || v < 0) {
        return failf(ld, key, name, "%s.%s must be a number, 0 or more", key, name);
    }
    if (v == 0 && !f->zero_ok) return failf(ld, key, name, "%s.%s cannot be 0", key, name);
    if (v != 0 && v < f->min)
        return failf(ld, key, name, "%s.%s must be at least %.15g", key, name, f->min);
    if (f->max && v > f->max)
        return failf(ld, key, name, "%s.%s must be at most %.15g", key, name, f->max);
    switch (f->type) {
    case F_BOOL: break;
    case F_DOUBLE: *(double *)(void *)p = v; break;
    case F_U64:
    case F_SIZE:
        if (v != floor(v) || v > 9e15)
            return failf(ld, key, name, "%s.%s must be a whole number", key, name);
        if (f->type == F_U64) *(uint64_t *)(void *)p = (uint64_t)v;
        else *(size_t *)(void *)p = (size_t)v;
        break;
    }
    return 0;
}

/* Reads a table of fields (limits, sandbox) at the top of the stack into base: every field,
 * so that one run reports every mistake. */
static int read_fields(struct loader *ld, const char *key, const struct field *fields, void *base)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1)) return failf(ld, key, NULL, "%s must be a table", key);
    int rc = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const struct field *f = fields;
        while (f->name && (!name || strcmp(f->name, name) != 0)) f++;
        if (!f->name) {
            char known[512];
            list_names(fields, known, sizeof known);
            rc = failf(ld, key, name, "%s.%s is not a known setting (known: %s)", key,
                       name ? name : luaL_tolstring(L, -2, NULL), known);
            if (!name) lua_pop(L, 1); /* luaL_tolstring's result */
        } else if (read_field(ld, key, name, f, base) < 0) {
            rc = -1;
        }
        lua_pop(L, 1);
    }
    return rc;
}

/* A listener's tls: { cert = "...", key = "..." }, or a list of them for SNI. */
static int read_tls(struct loader *ld, struct cfg_listen *l, size_t i)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1))
        return failf(ld, "listen", "tls", "listen[%zu].tls must be { cert = \"cert.pem\", key = "
                     "\"key.pem\" } or a list of such tables", i);
    bool list = lua_rawlen(L, -1) > 0;
    size_t n = list ? (size_t)lua_rawlen(L, -1) : 1;
    if (n > CFG_MAX_CERTS)
        return failf(ld, "listen", "tls", "listen[%zu].tls: at most %d certificates", i,
                     CFG_MAX_CERTS);
    for (size_t k = 1; k <= n; k++) {
        if (list) lua_rawgeti(L, -1, (lua_Integer)k);
        else lua_pushvalue(L, -1);
        struct cfg_tls *t = &l->tls[k - 1];
        if (!lua_istable(L, -1))
            return failf(ld, "listen", "tls", "listen[%zu].tls[%zu] must be a table", i, k);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *f = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if ((strcmp(f, "cert") != 0 && strcmp(f, "key") != 0) ||
                lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= sizeof t->cert)
                return failf(ld, "listen", f, "listen[%zu].tls: %s is not a known setting, or "
                             "not a file name (known: cert, key)", i, f);
            snprintf(strcmp(f, "cert") == 0 ? t->cert : t->key, sizeof t->cert, "%s",
                     lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        if (!t->cert[0] || !t->key[0])
            return failf(ld, "listen", "tls", "listen[%zu].tls needs both cert and key", i);
        lua_pop(L, 1);
    }
    l->ntls = n;
    return 0;
}

static int read_listen(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1)) return failf(ld, "listen", NULL, "listen must be a list of tables");
    size_t n = (size_t)lua_rawlen(L, -1);
    if (n == 0) return failf(ld, "listen", NULL, "listen must hold at least one { port = N }");
    if (n > CFG_MAX_LISTEN)
        return failf(ld, "listen", NULL, "listen holds %zu entries; at most %d are supported", n,
                     CFG_MAX_LISTEN);
    for (size_t i = 1; i <= n; i++) {
        struct cfg_listen *l = &cfg->listen[i - 1];
        memset(l, 0, sizeof *l);
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (!lua_istable(L, -1))
            return failf(ld, "listen", NULL, "listen[%zu] must be a table like { port = 8080 }", i);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "host") != 0 && strcmp(k, "port") != 0 && strcmp(k, "tls") != 0)
                return failf(ld, "listen", k, "listen[%zu].%s is not a known setting (known: "
                             "host, port, tls)", i, k);
            lua_pop(L, 1);
        }
        int ht = lua_getfield(L, -1, "host");
        const char *host = ht == LUA_TNIL ? "127.0.0.1" : ht == LUA_TSTRING ? lua_tostring(L, -1)
                                                                            : NULL;
        if (!host || strlen(host) >= sizeof l->host)
            return failf(ld, "listen", "host", "listen[%zu].host must be an address string", i);
        snprintf(l->host, sizeof l->host, "%s", host);
        lua_pop(L, 1);
        lua_getfield(L, -1, "port");
        int isint;
        lua_Integer port = lua_tointegerx(L, -1, &isint);
        if (!isint || port < 0 || port > 65535)
            return failf(ld, "listen", "port", "listen[%zu].port must be a number from 0 to 65535",
                         i);
        l->port = (int)port;
        lua_pop(L, 1);
        if (lua_getfield(L, -1, "tls") != LUA_TNIL && read_tls(ld, l, i) < 0) return -1;
        lua_pop(L, 2);
    }
    cfg->nlisten = n;
    return 0;
}

/* origins = { "https://example.com", ... } or { "*" }, wildcards as the host's first label.
 * Each is checked here, so a typo is an error at start, not a refused browser later. */
static int read_origins(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1))
        return failf(ld, "origins", NULL, "origins must be a list like { \"https://example.com\" }");
    size_t n = (size_t)lua_rawlen(L, -1);
    if (n > CFG_MAX_ORIGINS)
        return failf(ld, "origins", NULL, "origins: at most %d entries", CFG_MAX_ORIGINS);
    cfg->norigins = 0;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        const char *o = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        const char *why = "an origin must be a string";
        struct origin_pattern pat;
        if (!o || strlen(o) >= sizeof cfg->origins[0] ||
            (strcmp(o, "*") != 0 && origin_parse_pattern(o, &pat, &why) < 0))
            return failf(ld, "origins", NULL, "origins[%zu] %s%s%s: %s", i, o ? "'" : "",
                         o ? o : "", o ? "'" : "", o && strlen(o) >= sizeof cfg->origins[0]
                                                      ? "too long" : why);
        snprintf(cfg->origins[cfg->norigins++], sizeof cfg->origins[0], "%s", o);
        lua_pop(L, 1);
    }
    return 0;
}

/* apps = { ["/chat"] = "examples/chat", ... }: paths are absolute and unique (a table makes
 * them unique); mounted in order of their paths, so the result does not depend on hashing. */
static int read_apps(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1))
        return failf(ld, "apps", NULL, "apps must be a table like { [\"/chat\"] = "
                     "\"examples/chat\" }");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            return failf(ld, "apps", NULL, "apps maps paths to app folders, both strings, like "
                         "[\"/chat\"] = \"examples/chat\"");
        const char *path = lua_tostring(L, -2), *dir = lua_tostring(L, -1);
        if (path[0] != '/' || strchr(path, '?') || strchr(path, ' ') ||
            (strlen(path) > 1 && path[strlen(path) - 1] == '/'))
            return failf(ld, "apps", NULL, "apps: '%s' is not a mount path: start it with '/' "
                         "and end it without one, like \"/chat\"", path);
        if (cfg->napps == CFG_MAX_APPS)
            return failf(ld, "apps", NULL, "apps: at most %d apps can be mounted", CFG_MAX_APPS);
        struct cfg_app *a = &cfg->apps[cfg->napps++];
        if (strlen(path) >= sizeof a->path || strlen(dir) >= sizeof a->dir)
            return failf(ld, "apps", NULL, "apps: '%s' is too long", path);
        snprintf(a->path, sizeof a->path, "%s", path);
        snprintf(a->dir, sizeof a->dir, "%s", dir);
        lua_pop(L, 1);
    }
    /* Insertion sort by path: a handful of entries. */
    for (size_t i = 1; i < cfg->napps; i++)
        for (size_t j = i; j > 0 && strcmp(cfg->apps[j - 1].path, cfg->apps[j].path) > 0; j--) {
            struct cfg_app tmp = cfg->apps[j];
            cfg->apps[j] = cfg->apps[j - 1];
            cfg->apps[j - 1] = tmp;
        }
    return 0;
}

/* admin = { host = "127.0.0.1", port = 9090, token = "..." }: the admin listener. */
static int read_admin(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1))
        return failf(ld, "admin", NULL, "admin must be a table like { port = 9090 }");
    struct cfg_admin *a = &cfg->admin;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "port") == 0) {
            int isint;
            lua_Integer port = lua_tointegerx(L, -1, &isint);
            if (!isint || port < 0 || port > 65535)
                return failf(ld, "admin", k, "admin.port must be a number from 0 to 65535");
            a->port = (int)port;
        } else if (strcmp(k, "host") == 0 || strcmp(k, "token") == 0) {
            char *dst = k[0] == 'h' ? a->host : a->token;
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= sizeof a->host ||
                lua_rawlen(L, -1) == 0)
                return failf(ld, "admin", k, "admin.%s must be a non-empty string", k);
            snprintf(dst, sizeof a->host, "%s", lua_tostring(L, -1));
        } else {
            return failf(ld, "admin", k, "admin.%s is not a known setting (known: host, port, "
                         "token)", k);
        }
        lua_pop(L, 1);
    }
    if (lua_getfield(L, -1, "port") == LUA_TNIL)
        return failf(ld, "admin", NULL, "admin needs a port, like admin = { port = 9090 }");
    lua_pop(L, 1);
    a->enabled = true;
    return 0;
}

/* log = { access = true, format = "text" | "json" }. */
static int read_log(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1))
        return failf(ld, "log", NULL, "log must be a table like { format = \"json\" }");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "access") == 0) {
            if (lua_type(L, -1) != LUA_TBOOLEAN)
                return failf(ld, "log", k, "log.access must be true or false");
            cfg->log.access = lua_toboolean(L, -1);
        } else if (strcmp(k, "format") == 0) {
            const char *f = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            if (strcmp(f, "text") != 0 && strcmp(f, "json") != 0)
                return failf(ld, "log", k, "log.format must be \"text\" or \"json\"");
            cfg->log.json = strcmp(f, "json") == 0;
        } else {
            return failf(ld, "log", k, "log.%s is not a known setting (known: access, format)",
                         k);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* outbound = { "api.example.com", "*.example.org", "10.1.0.0/16", ca = "ca.pem",
 * max_response = "16M", max_in_flight = 100, timeout = 10 }: the list part says where
 * mw.http.request may go, checked now with the same rules the client applies. */
static int read_outbound(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    if (!lua_istable(L, -1))
        return failf(ld, "outbound", NULL, "outbound must be a table like { \"api.example.com\", "
                     "\"10.1.0.0/16\" }");
    struct cfg_outbound *o = &cfg->outbound;
    size_t n = (size_t)lua_rawlen(L, -1);
    if (n > CFG_MAX_OUTBOUND)
        return failf(ld, "outbound", NULL, "outbound: at most %d entries", CFG_MAX_OUTBOUND);
    const char *list[CFG_MAX_OUTBOUND];
    o->nentries = 0;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= sizeof o->entries[0] ||
            lua_rawlen(L, -1) == 0)
            return failf(ld, "outbound", NULL, "outbound[%zu] must be a host name, \"*.domain\", "
                         "an address or a CIDR block, as a string", i);
        snprintf(o->entries[o->nentries], sizeof o->entries[0], "%s", lua_tostring(L, -1));
        list[o->nentries] = o->entries[o->nentries];
        o->nentries++;
        lua_pop(L, 1);
    }
    char why[300];
    struct outbound_policy *p = outbound_parse(list, o->nentries, why, sizeof why);
    if (!p) return failf(ld, "outbound", NULL, "outbound: %s", why);
    outbound_free(p);
    /* The named settings. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TNUMBER) { /* the list, read above */
            lua_pop(L, 1);
            continue;
        }
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "ca") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= sizeof o->ca ||
                lua_rawlen(L, -1) == 0)
                return failf(ld, "outbound", k, "outbound.ca must be the path of a PEM file");
            snprintf(o->ca, sizeof o->ca, "%s", lua_tostring(L, -1));
        } else {
            const struct field *f = outbound_fields;
            while (f->name && strcmp(f->name, k) != 0) f++;
            if (!f->name)
                return failf(ld, "outbound", k, "outbound.%s is not a known setting (known: ca, "
                             "max_response, max_in_flight, timeout, and a list of destinations)",
                             k);
            if (read_field(ld, "outbound", k, f, o) < 0) return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

#define DEFLATE(n, t, min, max) { #n, t, offsetof(struct cfg_deflate, n), min, true, max }
static const struct field deflate_fields[] = {
    DEFLATE(min_size, F_SIZE, 0, 1 << 30),
    DEFLATE(memory, F_SIZE, 0, 0),
    { NULL, 0, 0, 0, false, 0 },
};

/* deflate = true | false | { mode = "shared" | "context", level = 1..9, window_bits = 9..15,
 * min_size = BYTES, memory = BYTES }. */
static int read_deflate(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    struct cfg_deflate *d = &cfg->deflate;
    if (lua_type(L, -1) == LUA_TBOOLEAN) {
        d->enabled = lua_toboolean(L, -1);
        return 0;
    }
    if (!lua_istable(L, -1))
        return failf(ld, "deflate", NULL, "deflate must be true, false or a table like "
                     "{ mode = \"shared\" }");
    d->enabled = true;
    int rc = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        int isint = 0;
        lua_Integer n = lua_tointegerx(L, -1, &isint);
        bool num = lua_type(L, -1) == LUA_TNUMBER && isint;
        if (strcmp(k, "mode") == 0) {
            const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            if (strcmp(m, "shared") != 0 && strcmp(m, "context") != 0)
                rc = failf(ld, "deflate", k, "deflate.mode must be \"shared\" (no zlib state "
                           "per connection) or \"context\" (a small window per connection)");
            else d->context = strcmp(m, "context") == 0;
        } else if (strcmp(k, "level") == 0) {
            if (!num || n < 1 || n > 9)
                rc = failf(ld, "deflate", k, "deflate.level must be a whole number from 1 "
                           "(fastest) to 9 (smallest)");
            else d->level = (int)n;
        } else if (strcmp(k, "window_bits") == 0) {
            if (!num || n < 9 || n > 15)
                rc = failf(ld, "deflate", k, "deflate.window_bits must be a whole number from "
                           "9 (512-byte window) to 15 (32 KiB)");
            else d->window_bits = (int)n;
        } else {
            const struct field *f = deflate_fields;
            while (f->name && strcmp(f->name, k) != 0) f++;
            if (!f->name)
                rc = failf(ld, "deflate", k, "deflate.%s is not a known setting (known: mode, "
                           "level, window_bits, min_size, memory)", k);
            else if (read_field(ld, "deflate", k, f, d) < 0)
                rc = -1;
        }
        lua_pop(L, 1);
    }
    return rc;
}

/* history = { ["room:"] = { size = 100, ttl = 300 }, ... }: a prefix ("" for every topic), the
 * publications kept per topic and for how long. */
static int read_history(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    static const char example[] = "history = { [\"room:\"] = { size = 100, ttl = 300 } }";
    if (!lua_istable(L, -1))
        return failf(ld, "history", NULL, "history must be a table like %s", example);
    cfg->nhistory = 0;
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_rawlen(L, -2) >= sizeof cfg->history[0].prefix)
            return failf(ld, "history", NULL, "history's keys must be topic prefixes (strings "
                         "under 128 bytes), as in %s", example);
        const char *k = lua_tostring(L, -2);
        if (cfg->nhistory >= CFG_MAX_HISTORY)
            return failf(ld, "history", k, "history: at most %d prefixes", CFG_MAX_HISTORY);
        if (!lua_istable(L, -1))
            return failf(ld, "history", k, "history[\"%s\"] must be a table like "
                         "{ size = 100, ttl = 300 }", k);
        struct cfg_history *h = &cfg->history[cfg->nhistory];
        snprintf(h->prefix, sizeof h->prefix, "%s", k);
        h->size = 100;
        h->ttl = 300;
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            const char *f = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            int isnum = 0;
            double v = lua_tonumberx(L, -1, &isnum);
            if (strcmp(f, "size") == 0 && isnum && v >= 1 && v <= 1000000 && v == (unsigned)v)
                h->size = (unsigned)v;
            else if (strcmp(f, "ttl") == 0 && isnum && v > 0 && v <= 86400 * 30)
                h->ttl = v;
            else
                return failf(ld, "history", k, "history[\"%s\"].%s: size must be a whole "
                             "number from 1 to 1000000 and ttl seconds up to 30 days (no other "
                             "settings)", k, f);
            lua_pop(L, 1);
        }
        cfg->nhistory++;
        lua_pop(L, 1);
    }
    return 0;
}

#define REDIS(n, t, min, max) { #n, t, offsetof(struct cfg_redis, n), min, false, max }
static const struct field redis_fields[] = {
    REDIS(connect_timeout, F_DOUBLE, 0.01, 600),
    REDIS(timeout, F_DOUBLE, 0.001, 3600),
    REDIS(probe_interval, F_DOUBLE, 0.05, 3600),
    { "linger", F_DOUBLE, offsetof(struct cfg_redis, linger), 0, true, 3600 },
    REDIS(max_pending, F_SIZE, 1024, (double)(1ull << 32)),
    REDIS(max_reply, F_SIZE, 1024, (double)(1ull << 32)),
    REDIS(max_in_flight, F_SIZE, 1, 1000000),
    REDIS(presence_ttl, F_DOUBLE, 1, 86400),
    REDIS(node_lease, F_DOUBLE, 0.3, 3600),
    { NULL, 0, 0, 0, false, 0 },
};

static int redis_url(struct loader *ld, const char *k, struct config *cfg)
{
    lua_State *L = ld->L;
    struct rds_addr a;
    char why[600];
    if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= sizeof cfg->redis.shards[0])
        return failf(ld, "redis", k, "redis: a shard must be a URL like "
                     "\"redis://127.0.0.1:6379\"");
    if (rds_parse_url(lua_tostring(L, -1), &a, why, sizeof why) < 0)
        return failf(ld, "redis", k, "redis: %s", why);
    if (cfg->redis.nshards >= CFG_MAX_REDIS_SHARDS)
        return failf(ld, "redis", k, "redis: at most %d shards", CFG_MAX_REDIS_SHARDS);
    snprintf(cfg->redis.shards[cfg->redis.nshards++], sizeof cfg->redis.shards[0], "%s",
             lua_tostring(L, -1));
    return 0;
}

/* redis = "redis://..." or { url = ... | shards = { ... }, password, prefix, timeouts... } */
static int read_redis(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    struct cfg_redis *r = &cfg->redis;
    r->nshards = 0;
    r->enabled = true;
    if (lua_type(L, -1) == LUA_TSTRING) return redis_url(ld, NULL, cfg);
    if (!lua_istable(L, -1))
        return failf(ld, "redis", NULL, "redis must be a URL like \"redis://127.0.0.1:6379\" or "
                     "a table like { url = \"redis://127.0.0.1:6379\", prefix = \"mw\" }");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
        if (strcmp(k, "url") == 0) {
            if (redis_url(ld, k, cfg) < 0) return -1;
        } else if (strcmp(k, "shards") == 0) {
            if (!lua_istable(L, -1))
                return failf(ld, "redis", k, "redis.shards must be a list of redis:// URLs");
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
                lua_rawgeti(L, -1, i);
                if (redis_url(ld, k, cfg) < 0) return -1;
                lua_pop(L, 1);
            }
        } else if (strcmp(k, "password") == 0 || strcmp(k, "prefix") == 0) {
            char *dst = k[1] == 'a' ? r->password : r->prefix;
            size_t cap = k[1] == 'a' ? sizeof r->password : sizeof r->prefix;
            if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= cap ||
                (k[1] == 'r' && lua_rawlen(L, -1) == 0))
                return failf(ld, "redis", k, "redis.%s must be a string under %zu bytes", k, cap);
            snprintf(dst, cap, "%s", lua_tostring(L, -1));
        } else if (strcmp(k, "backoff") == 0) {
            if (!lua_istable(L, -1))
                return failf(ld, "redis", k, "redis.backoff must be { min = 0.1, max = 5 }");
            lua_getfield(L, -1, "min");
            lua_getfield(L, -2, "max");
            double lo = luaL_optnumber(L, -2, r->backoff_min), hi = luaL_optnumber(L, -1,
                                                                                  r->backoff_max);
            lua_pop(L, 2);
            if (!(lo > 0) || hi < lo || hi > 3600)
                return failf(ld, "redis", k, "redis.backoff: 0 < min <= max <= 3600 seconds");
            r->backoff_min = lo;
            r->backoff_max = hi;
        } else {
            const struct field *f = redis_fields;
            while (f->name && strcmp(f->name, k) != 0) f++;
            if (!f->name)
                return failf(ld, "redis", k, "redis.%s is not a known setting (known: url, shards, "
                             "password, prefix, connect_timeout, timeout, probe_interval, "
                             "linger, backoff, max_pending, max_reply, max_in_flight, presence_ttl, "
                             "node_lease)", k);
            if (read_field(ld, "redis", k, f, r) < 0) return -1;
        }
        lua_pop(L, 1);
    }
    if (!r->nshards)
        return failf(ld, "redis", NULL, "redis needs url = \"redis://host:port\" or shards = "
                     "{ ... }");
    return 0;
}

/* workers = N (1 to CFG_MAX_WORKERS) or "auto". */
static int read_workers(struct loader *ld, struct config *cfg)
{
    lua_State *L = ld->L;
    int isint = 0;
    lua_Integer n = lua_tointegerx(L, -1, &isint);
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
        cfg->workers = 0;
        return 0;
    }
    if (lua_type(L, -1) != LUA_TNUMBER || !isint || n < 1 || n > CFG_MAX_WORKERS)
        return failf(ld, "workers", NULL, "workers must be a whole number from 1 to %d, or "
                     "\"auto\" (one per CPU this process may use)", CFG_MAX_WORKERS);
    cfg->workers = (size_t)n;
    return 0;
}

void cfg_resolve_workers(struct config *cfg)
{
    if (cfg->workers) return;
    cpu_set_t set;
    int n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    if (n < 1) n = 1;
    cfg->workers = n > CFG_MAX_WORKERS ? CFG_MAX_WORKERS : (size_t)n;
}

/* __newindex of the config environment: known keys only, remembering where each was set. */
static int config_set(lua_State *L)
{
    const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
    const char *const *k = top_keys;
    while (*k && (!key || strcmp(*k, key) != 0)) k++;
    lua_Debug ar;
    long line = 0;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar)) line = ar.currentline;
    if (!*k) {
        /* Noted, and the file runs on: every mistake is reported in one run. */
        struct loader *ld = lua_touserdata(L, lua_upvalueindex(2));
        mistakef(ld, key ? locate(ld->path, key, NULL, line) : line,
                 "unknown setting '%s' (known: listen, apps, origins, require_origin, limits, "
                 "sandbox, admin, log, outbound, workers, deflate, history, redis)",
                 key ? key : luaL_tolstring(L, 2, NULL));
        return 0;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "moonwire.config.lines");
    lua_pushinteger(L, line);
    lua_setfield(L, -2, key);
    lua_pop(L, 1);
    lua_settop(L, 3);
    lua_rawset(L, lua_upvalueindex(1));
    return 0;
}

static int load(lua_State *L)
{
    struct loader *ld = lua_touserdata(L, 1);
    struct config *cfg = lua_touserdata(L, 2);
    lua_settop(L, 0);

    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "moonwire.config.lines");
    lua_newtable(L); /* 1: values */
    lua_newtable(L); /* 2: environment */
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, ld);
    lua_pushcclosure(L, config_set, 2);
    lua_setfield(L, -2, "__newindex");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, 2);

    if (luaL_loadfilex(L, ld->path, "t") != LUA_OK) {
        snprintf(ld->err, ld->errlen, "%s", lua_tostring(L, -1));
        return 0;
    }
    lua_pushvalue(L, 2);
    lua_setupvalue(L, -2, 1);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        snprintf(ld->err, ld->errlen, "%s", lua_tostring(L, -1));
        return 0;
    }

    /* Every setting is read, each reporting its first mistake (limits and sandbox: each
     * field's), so one run lists them all. */
    if (lua_getfield(L, 1, "listen") != LUA_TNIL) read_listen(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "apps") != LUA_TNIL) read_apps(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "origins") != LUA_TNIL) read_origins(ld, cfg);
    lua_settop(L, 2);
    int t = lua_getfield(L, 1, "require_origin");
    if (t != LUA_TNIL) {
        if (t != LUA_TBOOLEAN) failf(ld, "require_origin", NULL,
                                     "require_origin must be true or false");
        else cfg->require_origin = lua_toboolean(L, -1);
    }
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "limits") != LUA_TNIL)
        read_fields(ld, "limits", limit_fields, &cfg->limits);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "sandbox") != LUA_TNIL)
        read_fields(ld, "sandbox", sandbox_fields, &cfg->sandbox);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "admin") != LUA_TNIL) read_admin(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "log") != LUA_TNIL) read_log(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "outbound") != LUA_TNIL) read_outbound(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "workers") != LUA_TNIL) read_workers(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "deflate") != LUA_TNIL) read_deflate(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "history") != LUA_TNIL) read_history(ld, cfg);
    lua_settop(L, 2);
    if (lua_getfield(L, 1, "redis") != LUA_TNIL) read_redis(ld, cfg);
    lua_pushboolean(L, ld->nmistakes == 0);
    return 1;
}

int cfg_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    lua_State *L = luaL_newstate();
    if (!L) {
        snprintf(err, errlen, "%s: out of memory", path);
        return -1;
    }
    struct loader ld = { .L = L, .path = path, .err = err, .errlen = errlen };
    err[0] = '\0';
    lua_pushcfunction(L, load);
    lua_pushlightuserdata(L, &ld);
    lua_pushlightuserdata(L, cfg);
    int rc = lua_pcall(L, 2, 1, 0);
    bool ok = rc == LUA_OK && lua_toboolean(L, -1) && ld.nmistakes == 0;
    if (rc != LUA_OK && !err[0]) snprintf(err, errlen, "%s: %s", path, lua_tostring(L, -1));
    if (ld.nmistakes && !err[0]) {
        /* In the order of their lines (a handful: insertion sort), one a line. */
        for (size_t i = 1; i < ld.nmistakes; i++)
            for (size_t j = i; j > 0 && ld.mistakes[j - 1].line > ld.mistakes[j].line; j--) {
                struct mistake tmp = ld.mistakes[j];
                ld.mistakes[j] = ld.mistakes[j - 1];
                ld.mistakes[j - 1] = tmp;
            }
        size_t n = 0;
        for (size_t i = 0; i < ld.nmistakes && n < errlen; i++)
            n += (size_t)snprintf(err + n, errlen - n, "%s%s", i ? "\n" : "",
                                  ld.mistakes[i].text);
        if (ld.more && n < errlen)
            snprintf(err + n, errlen - n, "\n(and %zu more)", ld.more);
    }
    lua_close(L);
    return ok ? 0 : -1;
}
