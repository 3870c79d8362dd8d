/* Tests for the connection layer (core/conn.h) on its own: real connections over socketpairs,
 * a stub server (struct conn_host) and a stub app (struct conn_handler) that record what they
 * are told. No server, no Lua: what the connection promises the layers above is checked at the
 * seam itself. Each test runs the loop without blocking (EVRUN_NOWAIT), so the prepare watcher
 * that flushes and sweeps runs as it would before the loop blocks. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conn.h"
#include "conn_internal.h"
#include "sockpeer.h"

/* ---- the stubs ------------------------------------------------------------------------------- */

struct stub {
    struct ev_loop *loop;
    struct cfg_limits limits;
    struct counters counters;
    struct conn_loop cl;
    int fds[2];
    struct conn *c;

    /* What the callbacks saw. */
    int routes, upgrades, opens, batches, messages, ended, closes, drains, gones, freed;
    unsigned close_code;
    char received[1024]; /* messages joined with '|' */
    size_t sizes[16];    /* batch sizes, in order */

    /* What they do. */
    int refuse_with;     /* route refuses with this status */
    bool close_in_batch; /* the messages callback closes the connection with 4001 */
    size_t flood;        /* the open callback sends this many 16 KiB messages */
    int last_send;       /* what the last of them returned */
    size_t buffer_limit; /* buffering refuses past this many bytes (0: never) */
    size_t buffered, buffered_peak;
    bool elsewhere;      /* route says another loop serves the request */
    int handed_fd;       /* what hand_over took (-1: nothing) */
    char handed[2048];   /* the bytes it was given */
    size_t handed_len;
};

static int stub_route(void *ctx, struct conn *c, const struct hs_upgrade *up, bool upgrade,
                      struct conn_route *r);
static void stub_freed(void *ctx, struct conn *c)
{
    (void)c;
    ((struct stub *)ctx)->freed++;
}
static int stub_buffering(void *ctx, struct conn *c, size_t before, size_t after,
                          const char **why)
{
    (void)c;
    struct stub *s = ctx;
    if (after > before && s->buffer_limit && s->buffered + (after - before) > s->buffer_limit) {
        *why = "the stub holds too much";
        return 1013;
    }
    s->buffered = s->buffered - before + after;
    if (s->buffered > s->buffered_peak) s->buffered_peak = s->buffered;
    return 0;
}
/* Takes the socket and the bytes as a worker handing the connection over would. */
static int stub_hand_over(void *ctx, struct conn *c, const uint8_t *bytes, size_t len,
                          const char **why)
{
    (void)why;
    struct stub *s = ctx;
    cr_assert_leq(len, sizeof s->handed);
    memcpy(s->handed, bytes, len);
    s->handed_len = len;
    s->handed_fd = conn_give_away(c);
    return 0;
}
static const struct conn_host stub_host = { stub_route, stub_freed, stub_buffering,
                                            stub_hand_over };

static void on_upgrade(void *ctx, struct conn *c, const struct http_request *req,
                       const struct hs_upgrade *up, struct conn_verdict *v)
{
    (void)c;
    (void)req;
    (void)up;
    (void)v; /* zeroed: accept */
    ((struct stub *)ctx)->upgrades++;
}

static int on_open(void *ctx, struct conn *c)
{
    struct stub *s = ctx;
    s->opens++;
    static uint8_t big[16 * 1024];
    for (size_t i = 0; i < s->flood; i++) s->last_send = conn_send_message(c, big, sizeof big, true);
    return 0;
}

static int on_messages(void *ctx, struct conn *c, const struct conn_message *msgs, size_t n)
{
    struct stub *s = ctx;
    if (s->batches < 16) s->sizes[s->batches] = n;
    s->batches++;
    for (size_t i = 0; i < n && conn_is_open(c); i++) {
        s->messages++;
        size_t used = strlen(s->received);
        snprintf(s->received + used, sizeof s->received - used, "%s%.*s", used ? "|" : "",
                 (int)msgs[i].len, (const char *)msgs[i].data);
        if (s->close_in_batch) conn_close(c, 4001, "enough", 6);
    }
    return 0;
}

static void on_ended(void *ctx, struct conn *c)
{
    (void)c;
    ((struct stub *)ctx)->ended++;
}

static void on_close(void *ctx, struct conn *c, unsigned code, const char *reason, size_t len)
{
    (void)c;
    (void)reason;
    (void)len;
    struct stub *s = ctx;
    s->closes++;
    s->close_code = code;
}

static void on_drain(void *ctx, struct conn *c)
{
    (void)c;
    ((struct stub *)ctx)->drains++;
}

static void on_gone(void *ctx, struct conn *c)
{
    struct stub *s = ctx;
    s->gones++;
    if (s->c == c) s->c = NULL;
}

static const struct conn_handler stub_handler = {
    .upgrade = on_upgrade, .open = on_open, .messages = on_messages, .ended = on_ended,
    .close = on_close, .drain = on_drain, .gone = on_gone,
};

static int stub_route(void *ctx, struct conn *c, const struct hs_upgrade *up, bool upgrade,
                      struct conn_route *r)
{
    (void)c;
    (void)up;
    (void)upgrade;
    struct stub *s = ctx;
    s->routes++;
    if (s->elsewhere) return CONN_ROUTE_ELSEWHERE;
    if (s->refuse_with) {
        r->why = "refused by the stub";
        r->reason = CTR_REFUSED_NOT_FOUND;
        return s->refuse_with;
    }
    r->handler = &stub_handler;
    r->ctx = s;
    return 0;
}

static void stub_start(struct stub *s)
{
    memset(s, 0, sizeof *s);
    s->handed_fd = -1;
    s->loop = ev_loop_new(EVFLAG_AUTO);
    cr_assert_not_null(s->loop);
    s->limits = (struct cfg_limits){ .max_message = 1 << 20, .max_header_bytes = 16384,
                                     .max_headers = 64, .handshake_timeout = 5,
                                     .idle_timeout = 60, .close_timeout = 5,
                                     .send_buffer = 64 * 1024, .max_send_buffer = 64 << 20 };
    conn_loop_init(&s->cl, s->loop, &s->limits, &s->counters, &stub_host, s);
    peer_pair(s->fds);
    union conn_addr a = peer_addr();
    s->c = conn_new(&s->cl, s->fds[0], &a, NULL);
    cr_assert_not_null(s->c);
}

static void stub_stop(struct stub *s)
{
    conn_loop_destroy(&s->cl);
    ev_loop_destroy(s->loop);
    close(s->fds[1]);
}

/* Sends the upgrade request and reads the 101. */
static void stub_open(struct stub *s)
{
    peer_write(s->fds[1], peer_upgrade_request, sizeof peer_upgrade_request - 1);
    char head[1024];
    peer_read_head(s->fds[1], s->loop, head, sizeof head);
    cr_assert(strncmp(head, "HTTP/1.1 101 ", 13) == 0, "response: %s", head);
    cr_assert_eq(s->opens, 1);
}

/* ---- the tests ------------------------------------------------------------------------------- */

Test(conn, handshake_reaches_the_handler_and_opens)
{
    struct stub s;
    stub_start(&s);
    cr_expect_eq(conn_count(&s.cl), 1);
    stub_open(&s);
    cr_expect_eq(s.routes, 1);
    cr_expect_eq(s.upgrades, 1);
    cr_expect(conn_is_established(s.c));
    cr_expect_str_eq(conn_path(s.c), "/chat");
    cr_expect_eq(conn_find(&s.cl, conn_slot(s.c), conn_id(s.c)), s.c);
    cr_expect_null(conn_find(&s.cl, conn_slot(s.c), conn_id(s.c) + 1), "a stale id finds nothing");
    cr_expect_eq(s.counters.opened, 1);
    cr_expect_gt(s.counters.bytes_in, 100);
    stub_stop(&s);
    cr_expect_eq(s.gones, 1, "destroying the loop frees the connection");
    cr_expect_eq(s.freed, 1);
}

Test(conn, a_refused_route_is_answered_and_counted)
{
    struct stub s;
    stub_start(&s);
    s.refuse_with = 404;
    peer_write(s.fds[1], peer_upgrade_request, sizeof peer_upgrade_request - 1);
    char head[1024];
    peer_read_head(s.fds[1], s.loop, head, sizeof head);
    cr_expect(strncmp(head, "HTTP/1.1 404 ", 13) == 0, "response: %s", head);
    cr_expect_eq(s.upgrades, 0);
    cr_expect_eq(s.counters.refused[CTR_REFUSED_NOT_FOUND], 1);
    stub_stop(&s);
}

Test(conn, a_request_served_elsewhere_hands_over_its_socket_and_bytes_unanswered)
{
    struct stub s;
    stub_start(&s);
    s.elsewhere = true;
    /* The request head in two pieces (the first kept), a frame right behind the second. */
    size_t half = 20;
    peer_write(s.fds[1], peer_upgrade_request, half);
    peer_pump(s.loop, 2);
    cr_assert_eq(s.handed_fd, -1, "not before the head is complete");
    uint8_t frame[64];
    size_t n = peer_frame(frame, WS_OP_TEXT, "hello", 5);
    uint8_t rest[1024];
    size_t rest_len = sizeof peer_upgrade_request - 1 - half;
    memcpy(rest, peer_upgrade_request + half, rest_len);
    memcpy(rest + rest_len, frame, n);
    peer_write(s.fds[1], rest, rest_len + n);
    peer_pump(s.loop, 3);
    cr_assert_eq(s.handed_fd, s.fds[0], "the socket itself goes over");
    cr_expect_eq(s.handed_len, sizeof peer_upgrade_request - 1 + n, "head and frame, all of it");
    cr_expect(memcmp(s.handed, peer_upgrade_request, sizeof peer_upgrade_request - 1) == 0);
    cr_expect(memcmp(s.handed + sizeof peer_upgrade_request - 1, frame, n) == 0);
    cr_expect_eq(s.upgrades, 0, "nothing of the request was handled here");
    cr_expect_eq(s.freed, 1, "the connection ended here");
    cr_expect_eq(s.gones, 0, "no handler heard of it");
    cr_expect_eq(conn_count(&s.cl), 0);
    char buf[16];
    cr_expect_eq(read(s.fds[1], buf, sizeof buf), -1, "nothing was answered");
    cr_expect_eq(errno, EAGAIN);
    cr_expect_neq(fcntl(s.fds[0], F_GETFD), -1, "the socket is still open");

    /* Another loop serves it from the bytes: the client gets its 101 and its frame is read. */
    struct stub t;
    memset(&t, 0, sizeof t);
    t.loop = ev_loop_new(EVFLAG_AUTO);
    t.limits = s.limits;
    conn_loop_init(&t.cl, t.loop, &t.limits, &t.counters, &stub_host, &t);
    union conn_addr a = peer_addr();
    struct conn *c = conn_new(&t.cl, s.handed_fd, &a, NULL);
    cr_assert_not_null(c);
    conn_read_head(c, (uint8_t *)s.handed, s.handed_len);
    char head[1024];
    peer_read_head(s.fds[1], t.loop, head, sizeof head);
    cr_expect(strncmp(head, "HTTP/1.1 101 ", 13) == 0, "response: %s", head);
    peer_pump(t.loop, 2);
    cr_expect_str_eq(t.received, "hello");
    conn_loop_destroy(&t.cl);
    ev_loop_destroy(t.loop);
    stub_stop(&s);
}

Test(conn, the_messages_of_one_read_arrive_as_one_batch_in_order)
{
    struct stub s;
    stub_start(&s);
    stub_open(&s);
    uint8_t buf[256];
    size_t n = peer_frame(buf, WS_OP_TEXT, "one", 3);
    n += peer_frame(buf + n, WS_OP_TEXT, "two", 3);
    n += peer_frame(buf + n, WS_OP_BINARY, "three", 5);
    peer_write(s.fds[1], buf, n);
    peer_pump(s.loop, 3);
    cr_expect_eq(s.batches, 1, "one call for the whole read, not one per message");
    cr_expect_eq(s.sizes[0], 3);
    cr_expect_str_eq(s.received, "one|two|three");
    cr_expect_eq(s.counters.messages_in, 3);
    stub_stop(&s);
}

Test(conn, a_close_handshake_reports_the_code_then_frees)
{
    struct stub s;
    stub_start(&s);
    stub_open(&s);
    const uint8_t close_payload[] = { 0x03, 0xE8, 'b', 'y', 'e' }; /* 1000 "bye" */
    peer_send(s.fds[1], WS_OP_CLOSE, close_payload, sizeof close_payload);
    uint8_t payload[128];
    size_t len;
    unsigned op = peer_read_frame(s.fds[1], s.loop, payload, sizeof payload, &len);
    cr_expect_eq(op, WS_OP_CLOSE);
    cr_expect_eq(peer_close_code(payload, len), 1000, "the code is echoed");
    cr_expect_eq(s.ended, 1);
    cr_expect_eq(s.closes, 1);
    cr_expect_eq(s.close_code, 1000);
    cr_expect_eq(s.counters.closed[ctr_close_index(1000)], 1);
    /* The server half-closed; our FIN ends the linger and the connection is freed. */
    cr_expect_eq(peer_read(s.fds[1], s.loop, payload, sizeof payload), 0, "FIN after the close");
    shutdown(s.fds[1], SHUT_WR);
    peer_pump(s.loop, 3);
    cr_expect_eq(s.gones, 1);
    cr_expect_eq(s.freed, 1);
    cr_expect_eq(conn_count(&s.cl), 0);
    stub_stop(&s);
}

Test(conn, a_peer_that_vanishes_is_reported_as_1006_and_freed)
{
    struct stub s;
    stub_start(&s);
    stub_open(&s);
    close(s.fds[1]);
    s.fds[1] = socket(AF_UNIX, SOCK_STREAM, 0); /* for stub_stop to close */
    peer_pump(s.loop, 3);
    cr_expect_eq(s.ended, 1);
    cr_expect_eq(s.closes, 1);
    cr_expect_eq(s.close_code, 1006);
    cr_expect_eq(s.gones, 1);
    cr_expect_eq(s.freed, 1);
    cr_expect_eq(conn_count(&s.cl), 0);
    stub_stop(&s);
}

Test(conn, backpressure_pauses_reading_and_the_drain_resumes_it)
{
    struct stub s;
    stub_start(&s);
    /* 64 messages of 16 KiB: far past send_buffer (64 KiB) and what the socket takes. */
    int small = 16 * 1024;
    setsockopt(s.fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(s.fds[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    s.flood = 64;
    stub_open(&s);
    peer_pump(s.loop, 3);
    cr_expect_eq(s.last_send, CONN_BACKPRESSURE, "sends report backpressure");
    cr_expect(s.c->paused & PAUSE_BACKPRESSURE, "reading is paused");
    cr_expect_eq(s.counters.backpressure_pauses, 1);
    /* While paused, a message from the client waits in the socket. */
    peer_send(s.fds[1], WS_OP_TEXT, "late", 4);
    peer_pump(s.loop, 3);
    cr_expect_eq(s.messages, 0, "nothing is read while paused");
    /* The client reads everything: the queue empties, the app hears drain, reading resumes. */
    uint8_t payload[16 * 1024];
    for (int i = 0; i < 64; i++) {
        size_t len;
        cr_assert_eq(peer_read_frame(s.fds[1], s.loop, payload, sizeof payload, &len),
                     WS_OP_BINARY);
        cr_assert_eq(len, sizeof payload);
    }
    peer_pump(s.loop, 3);
    cr_expect_eq(s.drains, 1);
    cr_expect_eq(s.c->paused, 0);
    cr_expect_str_eq(s.received, "late", "the waiting message is read after the pause");
    cr_expect_eq(s.counters.messages_out, 64);
    cr_expect_geq(s.counters.bytes_out, 64u * 16 * 1024);
    stub_stop(&s);
}

Test(conn, message_buffers_are_reported_and_bounded_by_the_host)
{
    struct stub s;
    stub_start(&s);
    s.buffer_limit = 8192;
    stub_open(&s);
    static uint8_t piece[3000], buf[3100];
    memset(piece, 'x', sizeof piece);
    /* 3000 + 3000 bytes fit (4096, then 8192 bytes of buffer); the whole message is handed
     * over and the buffer given back. */
    peer_write(s.fds[1], buf, peer_fragment(buf, false, WS_OP_TEXT, piece, sizeof piece));
    peer_write(s.fds[1], buf, peer_fragment(buf, true, WS_OP_CONTINUATION, piece, sizeof piece));
    peer_pump(s.loop, 3);
    cr_expect_eq(s.messages, 1);
    cr_expect_eq(s.buffered_peak, 8192);
    cr_expect_eq(s.buffered, 0, "the buffer is given back once the message is delivered");
    /* A third piece would need 16 KiB: refused, closed with the host's code and reason. */
    for (int i = 0; i < 3; i++)
        peer_write(s.fds[1], buf, peer_fragment(buf, false, i ? WS_OP_CONTINUATION : WS_OP_TEXT,
                                                piece, sizeof piece));
    uint8_t payload[128];
    size_t len;
    cr_expect_eq(peer_read_frame(s.fds[1], s.loop, payload, sizeof payload, &len), WS_OP_CLOSE);
    cr_expect_eq(peer_close_code(payload, len), 1013);
    cr_expect(len > 2 && memmem(payload, len, "holds too much", 14), "the reason is the host's");
    cr_expect_eq(s.messages, 1);
    cr_expect_eq(s.buffered, 0, "a failed connection gives its buffer back at once");
    stub_stop(&s);
}

Test(conn, a_callback_may_close_the_connection_inside_a_batch)
{
    struct stub s;
    stub_start(&s);
    s.close_in_batch = true;
    stub_open(&s);
    uint8_t buf[256];
    size_t n = peer_frame(buf, WS_OP_TEXT, "a", 1);
    n += peer_frame(buf + n, WS_OP_TEXT, "b", 1);
    n += peer_frame(buf + n, WS_OP_TEXT, "c", 1);
    peer_write(s.fds[1], buf, n);
    uint8_t payload[128];
    size_t len;
    cr_expect_eq(peer_read_frame(s.fds[1], s.loop, payload, sizeof payload, &len), WS_OP_CLOSE);
    cr_expect_eq(peer_close_code(payload, len), 4001);
    cr_expect_str_eq(s.received, "a", "nothing after the close reaches the app");
    cr_expect_eq(s.batches, 1);
    /* More frames after our close are discarded; the peer's close ends it. */
    peer_send(s.fds[1], WS_OP_TEXT, "d", 1);
    const uint8_t close_payload[] = { 0x0F, 0xA1 }; /* 4001 */
    peer_send(s.fds[1], WS_OP_CLOSE, close_payload, sizeof close_payload);
    shutdown(s.fds[1], SHUT_WR);
    peer_pump(s.loop, 5);
    cr_expect_str_eq(s.received, "a");
    cr_expect_eq(s.closes, 1);
    cr_expect_eq(s.close_code, 4001);
    cr_expect_eq(s.freed, 1);
    stub_stop(&s);
}
