/* moonwire test (see testkit.h): Busted in a Lua state of the host, and moonwire.testkit, the C
 * half of the harness. A kit server is a loop context (struct worker) of its own with a virtual
 * clock for the apps' timers; nothing here runs in the live server, which never sets a clock
 * or a log sink.
 *
 * The loop is never left to block: the spec's side turns it (EVRUN_NOWAIT) until nothing moves,
 * reading what the connections wrote to the clients' ends of their socketpairs in between
 * (scripts/moonwire/test.lua). Real time still passes for what measures it (rate limits, the
 * sandbox's time limit, the connections' timeouts), as it does in the server. */
#include "testkit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "config.h"
#include "log.h"
#include "lua_bridge.h"
#include "history.h"
#include "sstore.h"
#include "worker.h"

static const char server_meta[] = "moonwire.testkit.server";
static const char client_meta[] = "moonwire.testkit.client";

/* Where t.start's apps find "moonwire.*" (set once by testkit_main). */
static char scripts[1024] = "scripts";

struct kit_server {
    struct config *cfg;
    struct worker *w;
    struct ev_loop *loop;
    struct lb_clock clock;
    struct lb_stub stub;     /* the apps' outbound calls go to outbound_ref */
    struct sstore store;     /* mw.shared, as the server has one */
    struct history history;  /* pub/sub history, as the server has one */
    int outbound_ref;        /* registry: function(kind, request_json) -> answer_json */
    lua_State *host;         /* the thread of the spec running a server method now */
    bool running;            /* started and not stopped */
    enum log_level level;
    unsigned next_port;      /* the clients' source ports, for log lines */
    /* What the server logged, a line each: "LEVEL text". */
    char **lines;
    size_t nlines, cap;
};

struct kit_client {
    int fd;                  /* the client's end; -1 once closed */
};

/* ---- the log: lines logged while a server works are that server's --------------------------- */

static struct kit_server *current;

static bool keep_line(void *ud, enum log_level level, const char *text)
{
    (void)ud;
    struct kit_server *s = current;
    if (!s) return false; /* not during a kit call: stderr, as usual */
    if (s->nlines == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        char **lines = realloc(s->lines, cap * sizeof *lines);
        if (!lines) return false;
        s->lines = lines;
        s->cap = cap;
    }
    size_t len = strlen(text) + strlen(log_level_name(level)) + 2;
    char *line = malloc(len);
    if (!line) return false;
    snprintf(line, len, "%s %s", log_level_name(level), text);
    s->lines[s->nlines++] = line;
    return true;
}

/* Every call that can run the server's code goes between enter and leave. */
static struct kit_server *enter(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    if (!s->running) luaL_error(L, "this server was stopped (server:stop())");
    current = s;
    s->host = L;
    log_set_level(s->level);
    return s;
}

/* lb_stub's call: hands the app's outbound request to the spec's function, in the spec's
 * thread that is running the server now (inside one of its methods). */
static char *kit_outbound(void *ud, const char *kind, const char *req, size_t len, char **err)
{
    struct kit_server *s = ud;
    lua_State *L = s->host;
    if (!L || s->outbound_ref == LUA_NOREF) {
        *err = strdup("outbound calls are not answered here");
        return NULL;
    }
    struct kit_server *was = current;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->outbound_ref);
    lua_pushstring(L, kind);
    lua_pushlstring(L, req, len);
    int rc = lua_pcall(L, 2, 1, 0);
    current = was;
    log_set_level(s->level);
    size_t n = 0;
    const char *text = lua_tolstring(L, -1, &n);
    char *copy = text ? strndup(text, n) : NULL;
    lua_pop(L, 1);
    if (rc != LUA_OK || !copy) {
        *err = copy ? copy : strdup("the outbound stub gave no answer");
        return NULL;
    }
    return copy;
}

static void leave(void) { current = NULL; }

static void stop(struct kit_server *s)
{
    if (s->running) {
        struct kit_server *was = current;
        current = s;
        worker_destroy(s->w);
        ev_loop_destroy(s->loop);
        sstore_free(&s->store);
        history_free(&s->history);
        current = was;
        s->running = false;
    }
    free(s->w);
    free(s->cfg);
    s->w = NULL;
    s->cfg = NULL;
}

/* ---- testkit.new(app, config_file|nil, log_level, outbound) -> server | nil, message --------- */

static int kit_new(lua_State *L)
{
    const char *app = luaL_checkstring(L, 1);
    const char *config_file = luaL_optstring(L, 2, NULL);
    enum log_level level;
    if (log_parse_level(luaL_optstring(L, 3, "info"), &level) < 0)
        return luaL_error(L, "log_level must be debug, info, warn or error");
    if (strlen(app) >= sizeof ((struct cfg_app *)0)->dir)
        return luaL_error(L, "the app's path is too long");

    struct kit_server *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->outbound_ref = LUA_NOREF;
    luaL_setmetatable(L, server_meta);
    if (lua_isfunction(L, 4)) {
        lua_pushvalue(L, 4);
        s->outbound_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    s->level = level;
    s->next_port = 40000;
    s->cfg = calloc(1, sizeof *s->cfg);
    s->w = calloc(1, sizeof *s->w);
    if (!s->cfg || !s->w) return luaL_error(L, "out of memory");
    cfg_defaults(s->cfg);
    char err[8192];
    if (config_file && cfg_load_file(s->cfg, config_file, err, sizeof err) < 0) {
        luaL_pushfail(L);
        lua_pushstring(L, err);
        return 2;
    }
    /* One app, on every path: the one under test. */
    s->cfg->napps = 1;
    snprintf(s->cfg->apps[0].path, sizeof s->cfg->apps[0].path, "/");
    snprintf(s->cfg->apps[0].dir, sizeof s->cfg->apps[0].dir, "%s", app);
    snprintf(s->cfg->scripts_dir, sizeof s->cfg->scripts_dir, "%s", scripts);

    s->loop = ev_loop_new(EVFLAG_AUTO);
    if (!s->loop) return luaL_error(L, "cannot start an event loop (libev found no backend)");
    current = s;
    log_set_level(level);
    if (worker_init(s->w, s->loop, s->cfg, err, sizeof err) < 0) {
        leave();
        ev_loop_destroy(s->loop);
        luaL_pushfail(L);
        lua_pushstring(L, err);
        return 2;
    }
    s->running = true;
    /* The apps' timers and mw.now follow this clock; it starts at the real time. Their
     * outbound calls go to the spec's stubs (server:stub), never to the network. */
    s->clock.now = ev_time();
    s->w->env.clock = &s->clock;
    s->stub = (struct lb_stub){ kit_outbound, s };
    s->w->env.stub = &s->stub;
    sstore_init(&s->store, s->cfg->limits.shared_memory);
    s->w->env.shared = &s->store;
    history_init(&s->history, s->cfg->limits.history_memory);
    for (size_t i = 0; i < s->cfg->nhistory; i++)
        history_add_rule(&s->history, s->cfg->history[i].prefix,
                         strlen(s->cfg->history[i].prefix), s->cfg->history[i].size,
                         s->cfg->history[i].ttl);
    s->w->env.history = &s->history;
    int rc = worker_load_apps(s->w, err, sizeof err);
    leave();
    if (rc < 0) {
        stop(s);
        luaL_pushfail(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/* ---- the server ------------------------------------------------------------------------------ */

/* server:connect(ip) -> client | nil, message: a socketpair whose server end the server takes
 * as if its listener had accepted it from ip (admission applies). */
static int server_connect(lua_State *L)
{
    struct kit_server *s = enter(L);
    const char *ip = luaL_checkstring(L, 2);
    union conn_addr peer;
    memset(&peer, 0, sizeof peer);
    uint16_t port = htons((uint16_t)s->next_port);
    s->next_port = s->next_port == 65535 ? 40000 : s->next_port + 1;
    if (inet_pton(AF_INET, ip, &peer.in4.sin_addr) == 1) {
        peer.in4.sin_family = AF_INET;
        peer.in4.sin_port = port;
    } else if (inet_pton(AF_INET6, ip, &peer.in6.sin6_addr) == 1) {
        peer.in6.sin6_family = AF_INET6;
        peer.in6.sin6_port = port;
    } else {
        leave();
        return luaL_error(L, "ip: '%s' is not an IPv4 or IPv6 address", ip);
    }
    struct kit_client *k = lua_newuserdatauv(L, sizeof *k, 0);
    k->fd = -1;
    luaL_setmetatable(L, client_meta);
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        leave();
        luaL_pushfail(L);
        lua_pushfstring(L, "socketpair: %s", strerror(errno));
        return 2;
    }
    k->fd = fds[1];
    struct conn *c = srv_adopt(&s->w->srv, fds[0], &peer, NULL);
    leave();
    if (!c) {
        luaL_pushfail(L);
        lua_pushliteral(L, "dropped by admission (too many connections from this address)");
        return 2;
    }
    return 1;
}

/* server:turn() -> busy: turns the loop once without blocking; busy when the connection layer
 * still has output to flush or connections to sweep, or the number of connections changed. */
static int server_turn(lua_State *L)
{
    struct kit_server *s = enter(L);
    struct conn_loop *cl = &s->w->srv.conns;
    size_t before = conn_count(cl);
    ev_run(s->loop, EVRUN_NOWAIT);
    leave();
    lua_pushboolean(L, cl->dirty_head || cl->pending_head || conn_count(cl) != before);
    return 1;
}

/* server:run_timer(until) -> ran: runs the app timer due first if it is due by until. */
static int server_run_timer(lua_State *L)
{
    struct kit_server *s = enter(L);
    double until = luaL_checknumber(L, 2);
    bool ran = lb_clock_run_next(&s->clock, s->w->apps, s->w->napps, until);
    leave();
    lua_pushboolean(L, ran);
    return 1;
}

static int server_now(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    lua_pushnumber(L, s->clock.now);
    return 1;
}

/* server:set_now(t): moves the clock forward to t (never back). */
static int server_set_now(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    double t = luaL_checknumber(L, 2);
    if (t > s->clock.now) s->clock.now = t;
    return 0;
}

/* server:reload(): what SIGHUP does. */
static int server_reload(lua_State *L)
{
    struct kit_server *s = enter(L);
    log_info("reloading %zu app%s; connections stay open", s->w->napps,
             s->w->napps == 1 ? "" : "s");
    worker_reload(s->w, NULL);
    leave();
    return 0;
}

/* server:log([from]) -> the lines logged, from the from-th on (default 1). */
static int server_log(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    lua_Integer from = luaL_optinteger(L, 2, 1);
    if (from < 1) from = 1;
    lua_newtable(L);
    for (size_t i = (size_t)from - 1, n = 1; i < s->nlines; i++, n++) {
        lua_pushstring(L, s->lines[i]);
        lua_rawseti(L, -2, (lua_Integer)n);
    }
    return 1;
}

/* server:connections() -> how many connections the server holds (any state). */
static int server_connections(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    lua_pushinteger(L, s->running ? (lua_Integer)conn_count(&s->w->srv.conns) : 0);
    return 1;
}

/* server:timers() -> the app's pending timers (mw.after, mw.every). */
static int server_timers(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    size_t n = 0;
    for (size_t i = 0; s->running && i < s->w->napps; i++) n += lb_app_timers(s->w->apps[i]);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* server:stop(): frees every connection (their apps hear the close), then the apps. The log
 * stays readable. */
static int server_stop(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    stop(s);
    return 0;
}

static int server_gc(lua_State *L)
{
    struct kit_server *s = luaL_checkudata(L, 1, server_meta);
    stop(s);
    luaL_unref(L, LUA_REGISTRYINDEX, s->outbound_ref);
    s->outbound_ref = LUA_NOREF;
    for (size_t i = 0; i < s->nlines; i++) free(s->lines[i]);
    free(s->lines);
    s->lines = NULL;
    s->nlines = s->cap = 0;
    return 0;
}

/* ---- the client's end of a socketpair -------------------------------------------------------- */

static struct kit_client *check_client(lua_State *L)
{
    struct kit_client *k = luaL_checkudata(L, 1, client_meta);
    if (k->fd < 0) luaL_error(L, "this client's socket is closed");
    return k;
}

/* client:write(bytes [, from]) -> how many of bytes, from the from-th on, the socket took. */
static int client_write(lua_State *L)
{
    struct kit_client *k = check_client(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer from = luaL_optinteger(L, 3, 1);
    luaL_argcheck(L, from >= 1 && (size_t)from <= len + 1, 3, "out of range");
    size_t off = (size_t)from - 1;
    ssize_t w = off < len ? send(k->fd, data + off, len - off, MSG_NOSIGNAL) : 0;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        luaL_pushfail(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushinteger(L, w < 0 ? 0 : (lua_Integer)w);
    return 1;
}

/* client:read() -> the bytes there ("" when none yet), or nil once the server has closed. */
static int client_read(lua_State *L)
{
    struct kit_client *k = check_client(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        char *p = luaL_prepbuffsize(&b, 65536);
        ssize_t n = read(k->fd, p, 65536);
        if (n > 0) {
            luaL_addsize(&b, (size_t)n);
            continue;
        }
        if (n == 0 && luaL_bufflen(&b) == 0) {
            luaL_pushresult(&b);
            luaL_pushfail(L);
            return 1;
        }
        break; /* EAGAIN, or the end after some bytes (the next read says it) */
    }
    luaL_pushresult(&b);
    return 1;
}

/* client:unread() -> bytes the client wrote that the server has not read yet (about: the
 * socket's accounting). */
static int client_unread(lua_State *L)
{
    struct kit_client *k = check_client(L);
    int n = 0;
    if (ioctl(k->fd, SIOCOUTQ, &n) < 0) n = 0;
    lua_pushinteger(L, n);
    return 1;
}

/* client:shutdown(): no more bytes from the client (FIN). */
static int client_shutdown(lua_State *L)
{
    struct kit_client *k = check_client(L);
    shutdown(k->fd, SHUT_WR);
    return 0;
}

static int client_close(lua_State *L)
{
    struct kit_client *k = luaL_checkudata(L, 1, client_meta);
    if (k->fd >= 0) close(k->fd);
    k->fd = -1;
    return 0;
}

/* ---- the module ------------------------------------------------------------------------------ */

static void new_type(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}

static int luaopen_testkit(lua_State *L)
{
    static const luaL_Reg server_methods[] = {
        { "connect", server_connect }, { "turn", server_turn },
        { "run_timer", server_run_timer }, { "now", server_now },
        { "set_now", server_set_now }, { "reload", server_reload },
        { "log", server_log }, { "connections", server_connections },
        { "timers", server_timers },
        { "stop", server_stop }, { NULL, NULL },
    };
    static const luaL_Reg client_methods[] = {
        { "write", client_write }, { "read", client_read }, { "unread", client_unread },
        { "shutdown", client_shutdown }, { "close", client_close }, { NULL, NULL },
    };
    new_type(L, server_meta, server_methods, server_gc);
    new_type(L, client_meta, client_methods, client_close);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, kit_new);
    lua_setfield(L, -2, "new");
    lb_push_json(L);
    lua_setfield(L, -2, "json");
    return 1;
}

/* ---- moonwire test --------------------------------------------------------------------------- */

static int traceback(lua_State *L)
{
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* Busted's runner, as its own `busted` command starts it; "@moonwire test" names the command
 * in its help and errors. It ends the process itself (os.exit) with the specs' status. */
static const char runner[] =
    "local ok, run = pcall(require, 'busted.runner')\n"
    "if not ok then\n"
    "  io.stderr:write('moonwire test: cannot load Busted (', tostring(run):match('[^\\n]*'),\n"
    "    '): install the Debian package lua-busted (apt-get install lua-busted)\\n')\n"
    "  os.exit(1)\n"
    "end\n"
    "run({ standalone = false })\n";

int testkit_main(int argc, char **argv, const char *scripts_dir)
{
    snprintf(scripts, sizeof scripts, "%s", scripts_dir);
    /* A client that goes away while the server writes must cost an EPIPE, as in the server. */
    signal(SIGPIPE, SIG_IGN);
    log_set_sink(keep_line, NULL);
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "moonwire test: out of memory\n");
        return 1;
    }
    luaL_openlibs(L);
    /* moonwire.testkit is built in; moonwire.test and the rest come from the scripts folder,
     * ahead of what the Lua installation offers. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_testkit);
    lua_setfield(L, -2, "moonwire.testkit");
    lua_pop(L, 1);
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", scripts_dir, scripts_dir,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    /* Busted reads its arguments from arg, as the lua command sets it. */
    lua_createtable(L, argc, 1);
    lua_pushliteral(L, "moonwire test");
    lua_rawseti(L, -2, 0);
    for (int i = 1; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, traceback);
    int status = 0;
    if (luaL_loadbufferx(L, runner, sizeof runner - 1, "@moonwire test", "t") != LUA_OK ||
        lua_pcall(L, 0, 0, -2) != LUA_OK) {
        fprintf(stderr, "moonwire test: %s\n", lua_tostring(L, -1));
        status = 1;
    }
    lua_close(L);
    return status;
}
