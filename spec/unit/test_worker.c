/* Two loop contexts (core/worker.h) in one process, on one thread, each with its own event
 * loop, serving its own socketpair connections with the same Lua app: neither sees the other's
 * connections, Lua state, counters or running call. This is what a thread per core relies on:
 * everything a loop needs lives in its context, nothing in process-wide statics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "sockpeer.h"
#include "worker.h"

/* An app that counts the messages it saw in mw.state and answers each with the count, and
 * spins forever on "spin" (the sandbox must stop that call, and only that one). */
static const char app_source[] =
    "local app = {}\n"
    "function app.message(conn, data)\n"
    "    if data == 'spin' then while true do end end\n"
    "    mw.state.n = (mw.state.n or 0) + 1\n"
    "    conn:send(data .. ':' .. mw.state.n .. ':' .. #mw.connections() .. ':' .. conn.id)\n"
    "end\n"
    "return app\n";

struct side {
    struct ev_loop *loop;
    struct worker w;
    int fds[2];
};

static char app_dir[] = "/tmp/moonwire-unit-XXXXXX";

static void write_app(void)
{
    cr_assert_not_null(mkdtemp(app_dir));
    char path[256];
    snprintf(path, sizeof path, "%s/app.lua", app_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(app_source, f);
    fclose(f);
}

static void remove_app(void)
{
    char path[256];
    snprintf(path, sizeof path, "%s/app.lua", app_dir);
    unlink(path);
    rmdir(app_dir);
}

static struct config *make_config(void)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    cr_assert_not_null(cfg);
    cfg_defaults(cfg);
    cfg->sandbox.time_limit = 0.2;
    snprintf(cfg->scripts_dir, sizeof cfg->scripts_dir, "scripts");
    snprintf(cfg->apps[0].path, sizeof cfg->apps[0].path, "/");
    snprintf(cfg->apps[0].dir, sizeof cfg->apps[0].dir, "%s", app_dir);
    cfg->napps = 1;
    return cfg;
}

static void side_start(struct side *s, const struct config *cfg)
{
    s->loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(s->loop);
    char err[1024];
    cr_assert_eq(worker_init(&s->w, s->loop, cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(worker_load_apps(&s->w, err, sizeof err), 0, "%s", err);
}

/* A new client connection on this side, upgraded. */
static int side_connect(struct side *s)
{
    peer_pair(s->fds);
    union conn_addr a = peer_addr();
    cr_assert_not_null(srv_adopt(&s->w.srv, s->fds[0], &a, NULL));
    peer_write(s->fds[1], peer_upgrade_request, sizeof peer_upgrade_request - 1);
    char head[1024];
    peer_read_head(s->fds[1], s->loop, head, sizeof head);
    cr_assert(strncmp(head, "HTTP/1.1 101 ", 13) == 0, "response: %s", head);
    return s->fds[1];
}

/* Sends text and returns the answer (a text frame) in out. */
static void ask(struct side *s, int fd, const char *text, char *out, size_t cap)
{
    peer_send(fd, WS_OP_TEXT, text, strlen(text));
    size_t len;
    cr_assert_eq(peer_read_frame(fd, s->loop, (uint8_t *)out, cap - 1, &len), WS_OP_TEXT);
    out[len] = '\0';
}

static void side_stop(struct side *s, int fd)
{
    close(fd);
    worker_destroy(&s->w);
    ev_loop_destroy(s->loop);
}

Test(worker, two_loop_contexts_in_one_process_share_nothing, .init = write_app,
     .fini = remove_app)
{
    struct config *cfg = make_config();
    struct side a, b;
    side_start(&a, cfg);
    side_start(&b, cfg);
    int fa = side_connect(&a);
    int fb = side_connect(&b);

    char reply[256];
    ask(&a, fa, "x", reply, sizeof reply);
    cr_expect_str_eq(reply, "x:1:1:1");
    ask(&a, fa, "y", reply, sizeof reply);
    cr_expect_str_eq(reply, "y:2:1:1");
    /* b's app is another Lua state: its own mw.state, its own one connection, ids from 1. */
    ask(&b, fb, "z", reply, sizeof reply);
    cr_expect_str_eq(reply, "z:1:1:1");
    cr_expect_eq(a.w.counters.messages_in, 2);
    cr_expect_eq(b.w.counters.messages_in, 1);
    cr_expect_eq(a.w.counters.opened, 1);
    cr_expect_eq(b.w.counters.opened, 1);

    /* A runaway call on b is stopped by b's sandbox (1011), and a goes on answering. */
    peer_send(fb, WS_OP_TEXT, "spin", 4);
    uint8_t payload[128];
    size_t len;
    cr_expect_eq(peer_read_frame(fb, b.loop, payload, sizeof payload, &len), WS_OP_CLOSE);
    cr_expect_eq(peer_close_code(payload, len), 1011);
    cr_expect_eq(b.w.counters.handler_failures[CTR_FAILED_TIME] +
                     b.w.counters.handler_failures[CTR_FAILED_BUDGET],
                 1);
    cr_expect_eq(a.w.counters.handler_failures[CTR_FAILED_TIME], 0);
    cr_expect_null(a.w.rt.running, "a has no call running");
    ask(&a, fa, "w", reply, sizeof reply);
    cr_expect_str_eq(reply, "w:3:1:1");

    side_stop(&a, fa);
    side_stop(&b, fb);
    free(cfg);
}
