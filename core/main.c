/* moonwire: the command line. Reads the configuration (defaults, then the config file, then
 * flags), loads the app, listens, and runs the loop until SIGTERM or SIGINT has drained it. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "admin.h"
#include "config.h"
#include "log.h"
#include "lua_bridge.h"
#include "origin.h"
#include "scaffold.h"
#include "testkit.h"
#include "history.h"
#include "redis.h"
#include "sstore.h"
#include "util.h"
#include "watch.h"
#include "worker.h"
#include "workers.h"

#ifndef MOONWIRE_VERSION
#define MOONWIRE_VERSION "0.1.0"
#endif

static const char usage[] =
    "usage: moonwire [options] [APP]\n"
    "       moonwire test [SPECS...] [busted options]\n"
    "       moonwire new NAME\n"
    "\n"
    "Serves the WebSocket app APP on every path: a Lua file, or a folder holding app.lua\n"
    "(and optionally public/, served as static files). A config file can mount\n"
    "several apps at different paths instead (apps = { [\"/chat\"] = \"...\" }).\n"
    "\n"
    "options:\n"
    "  -c, --config FILE       Lua config file (default: none; built-in defaults)\n"
    "  -p, --port N            listen port (default 8080; 0 picks a free one and logs it)\n"
    "      --host ADDR         listen address (default 127.0.0.1)\n"
    "      --origin LIST       origins allowed to connect, comma-separated, like\n"
    "                          https://example.com,https://*.example.com ('*': any;\n"
    "                          default: only pages served from the same host)\n"
    "      --tls-cert FILE     serve wss:// with this certificate (PEM, may hold the chain)\n"
    "      --tls-key FILE      ... and this private key (PEM); both are needed\n"
    "      --max-message SIZE  largest message accepted, in bytes, or with a K, M or G\n"
    "                          suffix (default 16M, at most 1G)\n"
    "      --watch             reload an app when its Lua files change\n"
    "      --workers N         worker threads, each with its own loop and copy of the\n"
    "                          apps, or 'auto' (one per CPU; default 1)\n"
    "      --redis URL         carry topics across nodes through Redis (redis://host:port)\n"
    "      --admin [HOST:]PORT serve metrics, probes and the dashboard on this address\n"
    "                          (host default 127.0.0.1; off by default)\n"
    "      --check             load the config and the apps, report errors, exit\n"
    "      --log-level LEVEL   debug, info, warn or error (default info)\n"
    "  -v, --version           print the version and exit\n"
    "  -h, --help              print this help and exit\n"
    "\n"
    "signals: SIGHUP reloads every app without closing a connection; SIGTERM or\n"
    "SIGINT stop accepting, close every connection with 1001 and exit within\n"
    "shutdown_timeout (a second one exits at once).\n"
    "\n"
    "examples:\n"
    "  moonwire examples/echo\n"
    "  moonwire --port 9001 examples/echo\n"
    "  moonwire -c conf/moonwire.conf.lua examples/chat\n"
    "\n"
    "commands:\n"
    "  test [SPECS...]         run Busted specs (files or folders; default spec/) inside\n"
    "                          the real runtime, with the moonwire.test module; Busted's\n"
    "                          options follow (-o TAP, --filter ...; test --help lists them)\n"
    "  new NAME                create the folder NAME: app.lua, public/index.html and\n"
    "                          spec/app_spec.lua, ready to run and to test\n"
    "\n"
    "docs/command-line.md, docs/configuration.md, docs/lua-api.md and docs/testing.md have the\n"
    "details.\n";

/* The shipped Lua libraries live in scripts/ next to build/, found from the executable; once
 * installed (make install), in PREFIX/share/moonwire/scripts beside PREFIX/bin. */
static void find_scripts_dir(char *out, size_t cap)
{
    static const char *const places[] = { "../scripts", "../share/moonwire/scripts" };
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        for (size_t i = 0; slash && i < sizeof places / sizeof places[0]; i++) {
            char joined[PATH_MAX + 32], real[PATH_MAX], cwd[PATH_MAX];
            snprintf(joined, sizeof joined, "%s/%s", exe, places[i]);
            struct stat st;
            if (realpath(joined, real) && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
                /* As short as the app's own paths in tracebacks: relative below the working
                 * folder ("scripts/moonwire/rooms.lua:40"), else absolute, never
                 * "build/../scripts". */
                size_t cl = getcwd(cwd, sizeof cwd) ? strlen(cwd) : 0;
                bool below = cl && strncmp(real, cwd, cl) == 0 && real[cl] == '/';
                const char *dir = below ? real + cl + 1 : real;
                size_t len = strlen(dir);
                if (len < cap) {
                    memcpy(out, dir, len + 1);
                    return;
                }
            }
        }
    }
    snprintf(out, cap, "scripts");
}

/* The option getopt just stopped at: "--config" as written, or "-q" even inside a group of
 * short options such as "-qv", where argv says nothing useful. */
static const char *option_name(char **argv, char name[3])
{
    const char *arg = argv[optind - 1];
    if (optopt == 0 || optopt >= 256 || strncmp(arg, "--", 2) == 0) return arg;
    name[0] = '-';
    name[1] = (char)optopt;
    name[2] = '\0';
    return name;
}

/* --admin [HOST:]PORT: the admin listener, replacing the config file's address (its token
 * stays). */
static int set_admin(struct cfg_admin *a, const char *arg)
{
    const char *colon = strrchr(arg, ':');
    const char *port = colon ? colon + 1 : arg;
    char *end;
    long p = strtol(port, &end, 10);
    if (*end || end == port || p < 0 || p > 65535) return -1;
    if (colon) {
        size_t len = (size_t)(colon - arg);
        if (len >= 2 && arg[0] == '[' && arg[len - 1] == ']') { /* [::1]:9090 */
            arg++;
            len -= 2;
        }
        if (len == 0 || len >= sizeof a->host) return -1;
        memcpy(a->host, arg, len);
        a->host[len] = '\0';
    }
    a->port = (int)p;
    a->enabled = true;
    return 0;
}

/* --origin LIST replaces the config file's origins. Each entry is checked like the file's. */
static int set_origins(struct config *cfg, const char *list)
{
    cfg->norigins = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof cfg->origins[0] || cfg->norigins == CFG_MAX_ORIGINS) {
            fprintf(stderr, "moonwire: --origin: '%.*s' is empty or too long (or too many "
                            "origins)\n", (int)len, p);
            return -1;
        }
        char *o = cfg->origins[cfg->norigins];
        memcpy(o, p, len);
        o[len] = '\0';
        struct origin_pattern pat;
        const char *why;
        if (strcmp(o, "*") != 0 && origin_parse_pattern(o, &pat, &why) < 0) {
            fprintf(stderr, "moonwire: --origin: '%s': %s\n", o, why);
            return -1;
        }
        cfg->norigins++;
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

/* Every connection is a file descriptor: take all the kernel allows. When that is fewer than
 * max_connections, say what it means, once: a warning only when it is too few for even a small
 * server (the usual 1024), a note otherwise (20,000 is plenty for most, and a warning at every
 * start would train people to ignore warnings). */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    size_t want = cfg->limits.max_connections + 64;
    if (!cfg->limits.max_connections || rl.rlim_cur >= want) return;
    unsigned long long room = rl.rlim_cur > 64 ? (unsigned long long)rl.rlim_cur - 64 : 0;
    if (rl.rlim_cur < 2048)
        log_warn("the open-files limit is %llu: at most about %llu clients can be connected at "
                 "once (max_connections is %zu); raise it with ulimit -n, or LimitNOFILE= for "
                 "systemd", (unsigned long long)rl.rlim_cur, room, cfg->limits.max_connections);
    else
        log_info("the open-files limit (%llu) allows about %llu clients at once, fewer than "
                 "max_connections (%zu); raise it with ulimit -n to admit more",
                 (unsigned long long)rl.rlim_cur, room, cfg->limits.max_connections);
}

/* The process around the worker: signals and --watch. */
struct process {
    struct worker *w;
    struct workers *group; /* several workers; NULL: w alone */
    struct watch *watch;
    ev_signal sigterm;
    ev_signal sigint;
    ev_signal sighup;
};

static void on_files_changed(void *ud, void *key)
{
    struct process *p = ud;
    struct lb_app *app = key;
    log_info("files changed: reloading %s", app ? lb_app_name(app) : "every app (scripts/)");
    if (!p->group) {
        worker_reload(p->w, app);
        return;
    }
    int index = -1;
    for (size_t i = 0; i < p->w->napps; i++)
        if (p->w->apps[i] == app) index = (int)i;
    workers_reload(p->group, index);
}

/* --watch: each app's folder reloads that app; the shipped scripts/ reload every app. */
static int start_watching(struct process *p)
{
    struct worker *w = p->w;
    p->watch = watch_new(w->loop, on_files_changed, p);
    if (!p->watch) {
        fprintf(stderr, "moonwire: --watch: cannot start inotify: %s\n", strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < w->napps; i++) {
        const char *dir = lb_app_dir(w->apps[i]);
        if (watch_add(p->watch, dir, w->apps[i]) < 0) {
            fprintf(stderr, "moonwire: --watch: cannot watch %s: %s%s\n", dir, strerror(errno),
                    errno == ENOSPC ? " (raise fs.inotify.max_user_watches)" : "");
            return -1;
        }
    }
    if (watch_add(p->watch, w->cfg->scripts_dir, NULL) < 0)
        log_warn("--watch: cannot watch %s: %s; changes there need SIGHUP", w->cfg->scripts_dir,
                 strerror(errno));
    return 0;
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    if (w->signum == SIGHUP) {
        struct process *p = container_of(w, struct process, sighup);
        log_info("SIGHUP: reloading %zu app%s%s; connections stay open", p->w->napps,
                 p->w->napps == 1 ? "" : "s", p->group ? " in every worker" : "");
        if (p->group) workers_reload(p->group, -1);
        else worker_reload(p->w, NULL);
        return;
    }
    struct process *p = w->signum == SIGINT ? container_of(w, struct process, sigint)
                                            : container_of(w, struct process, sigterm);
    if (p->w->srv.draining) log_info("second %s", strsignal(w->signum));
    /* The second time, every connection is dropped at once. */
    if (p->group) workers_drain(p->group);
    else srv_drain(&p->w->srv);
}

static void watch_signals(struct process *p, struct ev_loop *loop)
{
    ev_signal_init(&p->sigterm, on_signal, SIGTERM);
    ev_signal_init(&p->sigint, on_signal, SIGINT);
    ev_signal_init(&p->sighup, on_signal, SIGHUP);
    ev_signal_start(loop, &p->sigterm);
    ev_signal_start(loop, &p->sigint);
    ev_signal_start(loop, &p->sighup);
}

static void unwatch_signals(struct process *p, struct ev_loop *loop)
{
    ev_signal_stop(loop, &p->sigterm);
    ev_signal_stop(loop, &p->sigint);
    ev_signal_stop(loop, &p->sighup);
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "moonwire: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nrun 'moonwire --help' for the options\n");
    exit(2);
}

int main(int argc, char **argv)
{
    enum { OPT_HOST = 256, OPT_MAX_MESSAGE, OPT_CHECK, OPT_LOG_LEVEL, OPT_WATCH, OPT_TLS_CERT,
           OPT_TLS_KEY, OPT_ORIGIN, OPT_ADMIN, OPT_WORKERS, OPT_REDIS };
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "port", required_argument, NULL, 'p' },
        { "host", required_argument, NULL, OPT_HOST },
        { "origin", required_argument, NULL, OPT_ORIGIN },
        { "tls-cert", required_argument, NULL, OPT_TLS_CERT },
        { "tls-key", required_argument, NULL, OPT_TLS_KEY },
        { "max-message", required_argument, NULL, OPT_MAX_MESSAGE },
        { "check", no_argument, NULL, OPT_CHECK },
        { "watch", no_argument, NULL, OPT_WATCH },
        { "admin", required_argument, NULL, OPT_ADMIN },
        { "workers", required_argument, NULL, OPT_WORKERS },
        { "redis", required_argument, NULL, OPT_REDIS },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "version", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* The commands: moonwire test, moonwire new. */
    if (argc >= 2 && (strcmp(argv[1], "test") == 0 || strcmp(argv[1], "new") == 0)) {
        char found[PATH_MAX], scripts[PATH_MAX];
        find_scripts_dir(found, sizeof found);
        /* Absolute: Busted's -C changes the working folder. */
        if (!realpath(found, scripts)) snprintf(scripts, sizeof scripts, "%s", found);
        return argv[1][0] == 't' ? testkit_main(argc - 1, argv + 1, scripts)
                                 : scaffold_main(argc - 1, argv + 1, scripts);
    }
    const char *config_file = NULL, *host = NULL, *tls_cert = NULL, *tls_key = NULL,
               *origins = NULL, *admin = NULL;
    long port = -1, workers = -1;
    const char *redis_url = NULL;
    uint64_t max_message = 0;
    bool have_max_message = false, check = false, watch = false;

    int opt;
    char optname[3];
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:p:vh", options, NULL)) != -1) {
        char *end;
        switch (opt) {
        case 'c': config_file = optarg; break;
        case 'p':
            port = strtol(optarg, &end, 10);
            if (*end || end == optarg || port < 0 || port > 65535)
                usage_error("--port needs a number from 0 to 65535, not '%s'", optarg);
            break;
        case OPT_HOST: host = optarg; break;
        case OPT_ORIGIN: origins = optarg; break;
        case OPT_TLS_CERT: tls_cert = optarg; break;
        case OPT_TLS_KEY: tls_key = optarg; break;
        case OPT_MAX_MESSAGE:
            if (cfg_parse_size(optarg, &max_message) < 0 || max_message == 0 ||
                max_message > CFG_MAX_MESSAGE)
                usage_error("--max-message needs a size from 1 to 1G, like 1048576, 64K or "
                            "16M, not '%s'", optarg);
            have_max_message = true;
            break;
        case OPT_CHECK: check = true; break;
        case OPT_WATCH: watch = true; break;
        case OPT_ADMIN: admin = optarg; break;
        case OPT_REDIS: {
            struct rds_addr a;
            char why[600];
            if (rds_parse_url(optarg, &a, why, sizeof why) < 0) usage_error("--redis: %s", why);
            redis_url = optarg;
            break;
        }
        case OPT_WORKERS:
            if (strcmp(optarg, "auto") == 0) {
                workers = 0;
                break;
            }
            workers = strtol(optarg, &end, 10);
            if (*end || end == optarg || workers < 1 || workers > CFG_MAX_WORKERS)
                usage_error("--workers needs a number from 1 to 64, or 'auto', not '%s'", optarg);
            break;
        case OPT_LOG_LEVEL: {
            enum log_level level;
            if (log_parse_level(optarg, &level) < 0)
                usage_error("--log-level needs debug, info, warn or error, not '%s'", optarg);
            log_set_level(level);
            break;
        }
        case 'v': printf("moonwire %s\n", MOONWIRE_VERSION); return 0;
        case 'h': fputs(usage, stdout); return 0;
        case ':': usage_error("%s needs a value", option_name(argv, optname)); break;
        default: usage_error("unknown option '%s'", option_name(argv, optname)); break;
        }
    }
    if (argc - optind > 1) usage_error("only one APP can be given ('%s' is extra)", argv[optind + 1]);

    /* Large (every listener's certificate paths): on the heap, like the worker. */
    struct config *cfg = calloc(1, sizeof *cfg);
    struct worker *w = calloc(1, sizeof *w);
    if (!cfg || !w) {
        fprintf(stderr, "moonwire: out of memory\n");
        return 1;
    }
    cfg_defaults(cfg);
    int status = 0;
    char err[1024];
    char mistakes[8192];
    if (config_file && cfg_load_file(cfg, config_file, mistakes, sizeof mistakes) < 0) {
        /* One line each, every mistake of the file in the order of its lines. */
        char *save = NULL;
        for (char *line = strtok_r(mistakes, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            fprintf(stderr, "moonwire: %s\n", line);
        status = 1;
        goto out;
    }
    /* Flags win over the file: --host/--port replace the listeners with one. */
    if (host || port >= 0) {
        struct cfg_listen l = cfg->listen[0];
        if (host) snprintf(l.host, sizeof l.host, "%s", host);
        if (port >= 0) l.port = (int)port;
        cfg->listen[0] = l;
        cfg->nlisten = 1;
    }
    if (origins && set_origins(cfg, origins) < 0) {
        status = 2;
        goto out;
    }
    if (!tls_cert != !tls_key)
        usage_error("%s", "--tls-cert and --tls-key go together: give both, or neither");
    if (tls_cert) {
        /* The command line's certificate is the first listener's only one. */
        struct cfg_listen *l = &cfg->listen[0];
        if (strlen(tls_cert) >= sizeof l->tls[0].cert || strlen(tls_key) >= sizeof l->tls[0].key)
            usage_error("%s", "--tls-cert or --tls-key: the path is too long");
        memset(l->tls, 0, sizeof l->tls);
        snprintf(l->tls[0].cert, sizeof l->tls[0].cert, "%s", tls_cert);
        snprintf(l->tls[0].key, sizeof l->tls[0].key, "%s", tls_key);
        l->ntls = 1;
    }
    if (have_max_message) cfg->limits.max_message = max_message;
    if (workers >= 0) cfg->workers = (size_t)workers;
    if (redis_url) {
        /* --redis: one shard, the config's other redis settings kept. */
        cfg->redis.enabled = true;
        cfg->redis.nshards = 1;
        snprintf(cfg->redis.shards[0], sizeof cfg->redis.shards[0], "%s", redis_url);
    }
    cfg_resolve_workers(cfg);
    if (admin && set_admin(&cfg->admin, admin) < 0)
        usage_error("--admin needs a port, or HOST:PORT, like 9090 or 127.0.0.1:9090, not '%s'",
                    admin);
    log_set_json(cfg->log.json);
    if (optind < argc) {
        /* The command line's APP serves every path the config's apps do not. */
        for (size_t i = 0; i < cfg->napps; i++)
            if (strcmp(cfg->apps[i].path, "/") == 0)
                usage_error("%s", "both APP and the config's apps[\"/\"] name an app for /; "
                                  "keep one");
        if (cfg->napps == CFG_MAX_APPS) usage_error("%s", "too many apps");
        struct cfg_app *a = &cfg->apps[cfg->napps++];
        snprintf(a->path, sizeof a->path, "/");
        snprintf(a->dir, sizeof a->dir, "%s", argv[optind]);
    }
    if (!cfg->napps) usage_error("%s", "no app given: try 'moonwire examples/echo'");
    cfg->watch = watch;
    find_scripts_dir(cfg->scripts_dir, sizeof cfg->scripts_dir);

    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (!loop) {
        fprintf(stderr, "moonwire: cannot start the event loop (libev found no backend)\n");
        status = 1;
        goto out;
    }
    /* A peer that resets while we write must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    struct process proc = { .w = w };
    struct admin adm = { 0 };
    bool started = false;
    /* When the process started, for process_start_time_seconds and the dashboard's uptime. */
    struct timespec start_ts;
    clock_gettime(CLOCK_REALTIME, &start_ts);
    struct workers *group = NULL;
    /* mw.shared: one store for the process, whatever the number of workers. */
    struct sstore store;
    sstore_init(&store, cfg->limits.shared_memory);
    /* Pub/sub history: one for the process too, so that offsets have one order. */
    struct history hist;
    history_init(&hist, cfg->limits.history_memory);
    for (size_t i = 0; i < cfg->nhistory; i++)
        history_add_rule(&hist, cfg->history[i].prefix, strlen(cfg->history[i].prefix),
                         cfg->history[i].size, cfg->history[i].ttl);
    if (cfg->workers > 1 && !check) {
        /* Before any worker binds with SO_REUSEPORT: fail like one server would on a port in
         * use, and fix port 0 to one port for every worker. */
        if (srv_reserve_ports(cfg, err, sizeof err) < 0) {
            fprintf(stderr, "moonwire: %s\n", err);
            status = 1;
            goto done;
        }
        group = calloc(1, sizeof *group);
        if (!group || workers_init(group, cfg, w) < 0) {
            fprintf(stderr, "moonwire: out of memory\n");
            status = 1;
            goto done;
        }
        group->shared = &store;
        group->history = &hist;
    }
    if (worker_init(w, loop, cfg, err, sizeof err) < 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        status = 1;
        goto done;
    }
    started = true;
    w->env.shared = &store;
    w->env.history = &hist;
    if (group) {
        workers_attach(group, w, 0);
        proc.group = group;
    }
    if (worker_load_apps(w, err, sizeof err) < 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        status = 1;
        goto done;
    }
    if (group && workers_connect_apps(group, w, err, sizeof err) < 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        status = 1;
        goto done;
    }
    if (check && workers_check_pins(cfg, w, err, sizeof err) < 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        status = 1;
        goto done;
    }
    if (worker_connect_redis(w, 0, err, sizeof err) < 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        status = 1;
        goto done;
    }
    if (check) {
        printf("moonwire: %s%s and %zu app%s are valid\n", config_file ? "config " : "defaults",
               config_file ? config_file : "", cfg->napps, cfg->napps == 1 ? "" : "s");
        goto done;
    }
    if (cfg->watch && start_watching(&proc) < 0) {
        status = 1;
        goto done;
    }
    if (srv_listen(&w->srv, err, sizeof err) < 0) {
        fprintf(stderr, "moonwire: %s\n", err);
        status = 1;
        goto done;
    }
    if (group) {
        /* Its apps are loaded and it listens: clients reach it from now on (its own listen
         * queue waits for its loop like what other workers hand it), while the others start. */
        workers_set_ready(group, w, true);
        if (workers_spawn(group, err, sizeof err) < 0) {
            fprintf(stderr, "moonwire: %s\n", err);
            status = 1;
            goto done;
        }
        log_info("%zu workers, each with its own loop, listeners and copy of every app",
                 cfg->workers);
    }
    raise_fd_limit(cfg);
    if (cfg->admin.enabled &&
        admin_start(&adm, w, &cfg->admin,
                    (double)start_ts.tv_sec + (double)start_ts.tv_nsec / 1e9, err,
                    sizeof err) < 0) {
        fprintf(stderr, "moonwire: admin listener: %s\n", err);
        status = 1;
        goto done;
    }
    for (size_t i = 0; i < w->napps; i++)
        log_info("moonwire %s serving %s at %s%s", MOONWIRE_VERSION, lb_app_name(w->apps[i]),
                 cfg->apps[i].path,
                 lb_app_public_dir(w->apps[i]) ? " (with static files)" : "");
    watch_signals(&proc, loop);
    ev_run(loop, 0);
    if (group) workers_set_ready(group, w, false);
    unwatch_signals(&proc, loop);
    log_info("stopped");
done:
    admin_stop(&adm);
    if (group) {
        workers_stop(group);
        if (started) workers_detach(group, w);
    }
    if (started) worker_destroy(w);
    if (group) {
        workers_free(group);
        free(group);
    }
    sstore_free(&store);
    history_free(&hist);
    watch_free(proc.watch);
    ev_loop_destroy(loop);
out:
    free(w);
    free(cfg);
    return status;
}
