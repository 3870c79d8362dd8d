/* Connection state machine: reads, WebSocket messages, the close handshake, timers, and the
 * write path. The HTTP phase (request head, upgrade, error answers, static files) is in
 * conn_http.c.
 *
 * Writing: everything sent during one turn of the event loop collects in the connection's queue,
 * and the server flushes each connection that has something with one writev before the loop
 * blocks again (conn_flush). Sixteen pipelined messages answered, or a hundred messages
 * published to a topic, cost one syscall per receiver, not one per message. A large payload
 * with nothing queued ahead of it goes out at once instead, uncopied. Only what the kernel
 * refuses stays queued, for when the socket is writable again. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_internal.h"
#include "log.h"
#include "tls.h"
#include "utf8.h"
#include "util.h"
#include "ws_close.h"


static void on_io(struct ev_loop *loop, ev_io *w, int revents);
static void conn_read(struct conn *c);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void flush_messages(struct conn *c);
static void schedule(struct conn *c);
static void release_message(struct conn *c);
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents);

/* ---- the table ----------------------------------------------------------------------------- */

int conn_loop_init(struct conn_loop *cl, struct ev_loop *loop, const struct cfg_limits *limits,
                   struct counters *counters, const struct conn_host *host, void *host_ctx)
{
    memset(cl, 0, offsetof(struct conn_loop, batch));
    cl->loop = loop;
    cl->limits = limits;
    cl->counters = counters;
    cl->host = host;
    cl->host_ctx = host_ctx;
    cl->access_log = true;
    ev_prepare_init(&cl->before_block, on_prepare);
    ev_prepare_start(loop, &cl->before_block);
    return 0;
}

/* Gives c a slot and an id. Returns 0, or -1 when out of memory. */
static int attach(struct conn_loop *cl, struct conn *c)
{
    if (cl->nfree == 0) {
        uint32_t n = cl->nslots ? cl->nslots * 2 : 1024;
        struct conn **slots = realloc(cl->slots, n * sizeof *slots);
        if (!slots) return -1;
        cl->slots = slots;
        uint32_t *free_slots = realloc(cl->free_slots, n * sizeof *free_slots);
        if (!free_slots) return -1;
        cl->free_slots = free_slots;
        /* Push new slots so that the lowest comes out first. */
        for (uint32_t i = n; i > cl->nslots; i--) {
            cl->slots[i - 1] = NULL;
            cl->free_slots[cl->nfree++] = i - 1;
        }
        cl->nslots = n;
    }
    c->slot = cl->free_slots[--cl->nfree];
    c->id = ++cl->next_id;
    cl->slots[c->slot] = c;
    cl->count++;
    return 0;
}

static void detach(struct conn_loop *cl, struct conn *c)
{
    cl->slots[c->slot] = NULL;
    cl->free_slots[cl->nfree++] = c->slot;
    cl->count--;
}

struct conn *conn_find(const struct conn_loop *cl, uint32_t slot, uint64_t id)
{
    if (slot >= cl->nslots) return NULL;
    struct conn *c = cl->slots[slot];
    return c && c->id == id ? c : NULL;
}

static struct conn *conn_from(const struct conn_loop *cl, uint32_t slot)
{
    for (; slot < cl->nslots; slot++)
        if (cl->slots[slot]) return cl->slots[slot];
    return NULL;
}

struct conn *conn_first(const struct conn_loop *cl) { return conn_from(cl, 0); }

struct conn *conn_next(const struct conn_loop *cl, const struct conn *c)
{
    return conn_from(cl, c->slot + 1);
}

/* ---- one connection's life ----------------------------------------------------------------- */

struct conn *conn_new(struct conn_loop *cl, int fd, const union conn_addr *peer,
                      struct tls_context *tls)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->cl = cl;
    tio_init_tcp(&c->tr, fd);
    if ((tls && tls_attach(&c->tr, tls) < 0) || attach(cl, c) < 0) {
        c->tr.ops->close(&c->tr);
        free(c);
        return NULL;
    }
    c->peer = *peer;
    c->handler_ref = CONN_NO_REF;
    c->state = CONN_HANDSHAKE;
    c->last_rx = c->started = ev_now(cl->loop);
    ev_io_init(&c->io, on_io, fd, EV_READ);
    ev_init(&c->timer, on_timer);
    const struct cfg_limits *lim = cl->limits;
    bucket_init(&c->messages, lim->burst, c->last_rx);
    bucket_init(&c->bytes, lim->bytes_per_second, c->last_rx);
    ev_io_start(cl->loop, &c->io);
    conn_arm_timer(c, lim->handshake_timeout);
    return c;
}

void conn_refuse(struct conn *c, int status, const char *why)
{
    c->refuse_status = (uint16_t)status;
    c->refuse_why = why;
    double t = conn_limits(c)->handshake_timeout;
    conn_arm_timer(c, t > 0 && t < 2 ? t : 2);
}

/* Frees a DEAD connection: only the sweep calls this. */
static void conn_free(struct conn *c)
{
    struct conn_loop *cl = c->cl;
    conn_end_file(c);
    release_message(c);
    if (c->z) {
        pmdz_conn_free(c->z);
        free(c->z);
    }
    if (c->handler) c->handler->gone(c->handler_ctx, c);
    detach(cl, c);
    conn_release_head(c);
    cl->host->freed(cl->host_ctx, c);
    free(c->path);
    free(c->protocol);
    if (c->answer && c->answer_http) free(((struct conn_response *)c->answer)->body);
    free(c->answer);
    free(c->close_reason);
    size_t queued = c->outq.bytes;
    outq_clear(&c->outq);
    conn_queue_changed(c, queued);
    free(c);
}

void conn_format_ip(const struct conn *c, char *buf, size_t len)
{
    const void *a = c->peer.sa.sa_family == AF_INET6 ? (const void *)&c->peer.in6.sin6_addr
                                                     : (const void *)&c->peer.in4.sin_addr;
    if (!inet_ntop(c->peer.sa.sa_family, a, buf, (socklen_t)len)) snprintf(buf, len, "?");
}


/* Why the transport failed, for conn_drop. A TLS failure also gets a log line of its own: it
 * is the operator's only clue to a client that cannot speak TLS with us. */
static const char *transport_error(struct conn *c)
{
    if (errno != EPROTO || !c->tr.error) return strerror(errno);
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    log_info(CONN_FMT ": TLS %s: %s", CONN_ARGS(c, ip),
             tls_handshake_done(&c->tr) ? "error" : "handshake failed", c->tr.error);
    return c->tr.error;
}

/* One watcher serves the state's deadline and the end of a throttling pause: it is armed for
 * whichever comes first, and on_timer sorts out which it was. */
static void rearm(struct conn *c)
{
    struct ev_loop *loop = c->cl->loop;
    ev_timer_stop(loop, &c->timer);
    double next = c->deadline;
    if (c->throttle_until > 0 && (next <= 0 || c->throttle_until < next)) next = c->throttle_until;
    if (next <= 0) return;
    double after = next - ev_now(loop);
    ev_timer_set(&c->timer, after > 1e-4 ? after : 1e-4, 0.);
    ev_timer_start(loop, &c->timer);
}

void conn_arm_timer(struct conn *c, double after)
{
    c->deadline = after > 0 ? ev_now(c->cl->loop) + after : 0;
    rearm(c);
}

/* ---- the WebSocket ends: what the app hears ------------------------------------------------ */

/* Records why the WebSocket ended and owes the app its close callback. Only the first end
 * counts: a close frame we send after the peer's does not change the reported code. */
static void ws_ended(struct conn *c, unsigned code, const char *reason, size_t reason_len)
{
    if (!c->app_open || c->notify_close || c->close_code) return;
    c->close_code = (uint16_t)code;
    if (reason_len) {
        c->close_reason = malloc(reason_len + 1);
        if (c->close_reason) {
            memcpy(c->close_reason, reason, reason_len);
            c->close_reason[reason_len] = '\0';
        }
    }
    c->notify_close = true;
    c->cl->counters->closed[ctr_close_index(code)]++;
    /* Memberships end with the WebSocket, at once: mw.subscribers must not count it. */
    c->handler->ended(c->handler_ctx, c);
    schedule(c);
}

/* The access line of a WebSocket's end: how, after how long, and how much it said. */
static void log_close(struct conn *c, const char *reason)
{
    if (!log_enabled(LOG_INFO)) return;
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    struct log_field f[] = {
        { "event", "close", 0 },
        { "path", c->path ? c->path : "", 0 },
        { "code", NULL, c->close_code },
        { "reason", reason, 0 },
        { "messages_in", NULL, (double)c->messages_in },
        { "messages_out", NULL, (double)c->messages_out },
        { "seconds", NULL, (double)(int64_t)((ev_now(c->cl->loop) - c->started) * 1000) / 1000 },
    };
    log_fields(LOG_INFO, f, ARRAY_LEN(f), CONN_FMT ": closed with %u", CONN_ARGS(c, ip),
               c->close_code);
}

/* The sweep's work for this connection: the handler's close if owed, then the free if DEAD.
 * Returns true when c was freed. */
static bool conn_sweep(struct conn *c)
{
    if (c->notify_close) {
        c->notify_close = false;
        c->app_open = false;
        const char *r = c->close_reason ? c->close_reason : "";
        if (c->cl->access_log) log_close(c, r);
        c->handler->close(c->handler_ctx, c, c->close_code, r, strlen(r));
    }
    /* Checked after app.close, which may have changed the state. A connection still on the
     * flush list must stay until the flush has passed it. */
    if (c->state != CONN_DEAD || c->dirty) return false;
    conn_free(c);
    return true;
}

/* Puts c on the pending list for the next sweep (once). */
static void schedule(struct conn *c)
{
    struct conn_loop *cl = c->cl;
    if (c->pending) return;
    c->pending = true;
    c->next_pending = NULL;
    if (cl->pending_tail) cl->pending_tail->next_pending = c;
    else cl->pending_head = c;
    cl->pending_tail = c;
}

/* Puts c on the list of connections to flush before the loop blocks (once). */
static void mark_dirty(struct conn *c)
{
    struct conn_loop *cl = c->cl;
    if (c->dirty) return;
    c->dirty = true;
    c->next_dirty = cl->dirty_head;
    cl->dirty_head = c;
}

static void flush_dirty(struct conn_loop *cl)
{
    struct conn *c;
    while ((c = cl->dirty_head)) {
        cl->dirty_head = c->next_dirty;
        c->dirty = false;
        conn_flush(c);
    }
}

/* Frees DEAD connections and runs the handlers' close: the one place where that happens,
 * outside every connection callback. Work it causes (a close handler that closes or sends to
 * another connection) joins the lists and is handled in the same turn. */
static void sweep(struct conn_loop *cl)
{
    /* Work on a snapshot: what is scheduled meanwhile waits for the next round, after the next
     * flush, so a connection kept because it still had output to flush comes back. */
    struct conn *c = cl->pending_head;
    cl->pending_head = cl->pending_tail = NULL;
    while (c) {
        struct conn *next = c->next_pending;
        /* Still marked pending while swept, so it cannot be queued twice meanwhile. */
        if (!conn_sweep(c)) {
            c->pending = false;
            if (c->state == CONN_DEAD) schedule(c);
        }
        c = next;
    }
}

/* Writes out what this turn queued, then sweeps. A connection still waiting to be flushed is
 * not freed (conn_sweep keeps it); the next round frees it. */
void conn_loop_settle(struct conn_loop *cl)
{
    while (cl->dirty_head || cl->pending_head) {
        flush_dirty(cl);
        sweep(cl);
    }
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_loop_settle(container_of(w, struct conn_loop, before_block));
}

void conn_loop_destroy(struct conn_loop *cl)
{
    for (uint32_t i = 0; i < cl->nslots; i++) {
        struct conn *c = cl->slots[i];
        if (c && c->state != CONN_DEAD) conn_abort(c);
    }
    /* One last round frees what that left, the handlers' close included. */
    conn_loop_settle(cl);
    ev_prepare_stop(cl->loop, &cl->before_block);
    pmdz_loop_free(&cl->z);
    free(cl->slots);
    free(cl->free_slots);
    cl->slots = NULL;
    cl->free_slots = NULL;
    cl->nslots = cl->nfree = 0;
}

/* ---- writing ------------------------------------------------------------------------------- */

void conn_shut_write_if_done(struct conn *c)
{
    if (c->wr_shut || !outq_empty(&c->outq) || c->file) return;
    if (c->state != CONN_CLOSING && c->state != CONN_LINGER) return;
    /* Our last frame or response is out: send FIN, keep reading until the peer's. */
    c->tr.ops->shutdown(&c->tr);
    c->wr_shut = true;
}

/* Points the connection's one watcher at what it waits for: reading unless paused, writing
 * while output is blocked, and whatever a TLS operation that returned EAGAIN needs (a read
 * that waits for writability, a write that waits for readability). One watcher instead of two
 * saves 48 bytes on every connection. */
static void update_io(struct conn *c)
{
    if (c->state == CONN_DEAD) return;
    int want = 0;
    if (!c->paused || (c->tr.wants & IO_WRITE_WANTS_READ)) want |= EV_READ;
    if (c->write_blocked || (c->tr.wants & IO_READ_WANTS_WRITE)) want |= EV_WRITE;
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == want) return;
    struct ev_loop *loop = c->cl->loop;
    ev_io_stop(loop, &c->io);
    ev_io_modify(&c->io, want);
    if (want) ev_io_start(loop, &c->io);
}

static void pause_reading(struct conn *c, uint8_t why)
{
    if ((why & PAUSE_BACKPRESSURE) && !(c->paused & PAUSE_BACKPRESSURE))
        c->cl->counters->backpressure_pauses++;
    c->paused |= why;
    update_io(c);
}

/* Ends one reason for a pause; reading starts again when none is left. Input the TLS layer
 * already holds would never wake the watcher, so it gets an event of its own. */
static void resume_reading(struct conn *c, uint8_t why)
{
    if (!(c->paused & why)) return;
    c->paused &= (uint8_t)~why;
    if (c->paused || c->state == CONN_DEAD) return;
    update_io(c);
    if (c->tr.ops->pending(&c->tr)) ev_feed_event(c->cl->loop, &c->io, EV_READ);
}

void conn_hold_input(struct conn *c, bool hold)
{
    if (hold) pause_reading(c, PAUSE_HANDLER);
    else resume_reading(c, PAUSE_HANDLER);
}

/* Stops reading for wait seconds (or longer, if a pause already runs longer). */
static void throttle_for(struct conn *c, double wait)
{
    pause_reading(c, PAUSE_THROTTLE);
    double until = ev_now(c->cl->loop) + wait;
    if (until <= c->throttle_until) return;
    c->throttle_until = until;
    rearm(c);
}

static void conn_fail(struct conn *c, unsigned code, const char *why);

/* Pauses reading while the queue is past send_buffer, so a client that sends without reading
 * cannot make the server buffer without bound. Past max_send_buffer the client is a slow
 * consumer (it does not read, or too slowly for what the app sends it): it is closed with 1008
 * and its queue dropped, so neither it nor an app that ignores backpressure can exhaust
 * memory. */
static void check_backpressure(struct conn *c)
{
    const struct cfg_limits *lim = conn_limits(c);
    if (lim->max_send_buffer && c->outq.bytes > lim->max_send_buffer &&
        c->state == CONN_OPEN) {
        /* The close frame goes behind what is queued (cutting a frame short would leave the
         * client a broken stream, not a close code); from here on sends are refused, so the
         * queue cannot grow, and close_timeout bounds how long it is kept. */
        char ip[INET6_ADDRSTRLEN];
        conn_format_ip(c, ip, sizeof ip);
        log_info(CONN_FMT ": closing with 1008: slow consumer (%zu bytes queued, "
                 "max_send_buffer %zu)", CONN_ARGS(c, ip), c->outq.bytes, lim->max_send_buffer);
        c->cl->counters->slow_consumer_closes++;
        conn_close(c, WS_CLOSE_POLICY, "slow consumer", 13);
        return;
    }
    /* Past max_queued for all connections together, a connection that is itself behind (past
     * send_buffer) is dropped at once, its queue freed: a polite close would keep the queue
     * for close_timeout, and the memory is what has run out. Connections that keep up are
     * never dropped for it. */
    if (lim->max_queued && c->cl->queued_bytes > lim->max_queued &&
        c->outq.bytes > lim->send_buffer && c->state == CONN_OPEN) {
        char ip[INET6_ADDRSTRLEN];
        conn_format_ip(c, ip, sizeof ip);
        log_info(CONN_FMT ": dropped: slow consumer while the send queues of all connections "
                 "passed max_queued (%zu bytes; its own: %zu)", CONN_ARGS(c, ip), lim->max_queued,
                 c->outq.bytes);
        c->cl->counters->slow_consumer_closes++;
        conn_drop(c, "send queues full");
        return;
    }
    if (lim->send_buffer && c->outq.bytes > lim->send_buffer && c->state == CONN_OPEN)
        pause_reading(c, PAUSE_BACKPRESSURE);
}

static int queue_iov(struct conn *c, const struct iovec *iov, int n, size_t skip)
{
    size_t before = c->outq.bytes;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        if (outq_append(&c->outq, (const uint8_t *)iov[i].iov_base + skip, len - skip) < 0) {
            rc = -1;
            break;
        }
        skip = 0;
    }
    conn_queue_changed(c, before);
    return rc;
}

/* Payloads this big go out at once when nothing is queued ahead of them: copying them into
 * the queue would cost more than the syscall saved by waiting. */
#define DIRECT_WRITE_MIN (16 * 1024)

/* Queues iov for the flush before the loop blocks; see the top of this file. */
static void conn_writev(struct conn *c, struct iovec *iov, int n)
{
    if (c->state == CONN_DEAD || c->wr_shut) return;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    size_t done = 0;
    if (total >= DIRECT_WRITE_MIN && outq_empty(&c->outq) && !c->file) {
        ssize_t w = c->tr.ops->writev(&c->tr, iov, n);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_drop(c, transport_error(c));
            return;
        }
        done = w > 0 ? (size_t)w : 0;
        c->cl->counters->bytes_out += done;
        if (done == total) {
            conn_shut_write_if_done(c);
            return;
        }
    }
    if (queue_iov(c, iov, n, done) < 0) {
        conn_drop(c, "out of memory for the send queue");
        return;
    }
    mark_dirty(c);
    check_backpressure(c);
}

void conn_write(struct conn *c, const void *p, size_t len)
{
    struct iovec iov = { (void *)p, len };
    conn_writev(c, &iov, 1);
}

static void send_frame(struct conn *c, unsigned opcode, const void *payload, size_t len)
{
    uint8_t hdr[WS_FRAME_MAX_SERVER_HEADER];
    size_t hl = ws_frame_build_header(hdr, true, 0, opcode, len);
    struct iovec iov[2] = { { hdr, hl }, { (void *)payload, len } };
    conn_writev(c, iov, 2);
}

static void send_close_frame(struct conn *c, unsigned code, const char *reason, size_t len)
{
    uint8_t payload[WS_CONTROL_MAX_PAYLOAD];
    size_t n = ws_close_build(payload, code, reason, len);
    send_frame(c, WS_OP_CLOSE, payload, n);
}

/* ---- permessage-deflate: sending ---------------------------------------------------------- */

/* Whether a message of len bytes goes compressed to c. */
static bool worth_compressing(const struct conn *c, size_t len)
{
    return c->pmd && len > 0 && len >= c->cl->deflate->min_size;
}

/* The connection's own streams (context mode), made on first use. */
static struct pmdz_conn *conn_z(struct conn *c)
{
    if (!c->z) c->z = calloc(1, sizeof *c->z);
    return c->z;
}

/* Compresses a message for c alone: with its own deflater when it keeps context, else with the
 * loop's for its window. Returns the frame, or NULL to send it plain. */
static struct obuf *compress_for(struct conn *c, unsigned opcode, const void *data, size_t len)
{
    struct conn_loop *cl = c->cl;
    if (!(c->pmd & CONN_PMD_SERVER_CONTEXT)) {
        z_stream *s = pmdz_loop_deflater(&cl->z, c->pmd_server_bits);
        struct obuf *b = s ? pmdz_frame(s, true, opcode, data, len) : NULL;
        if (b) cl->counters->deflate_compressions++;
        return b;
    }
    struct pmdz_conn *z = conn_z(c);
    if (z && !z->def) z->def = pmdz_deflater_new(c->pmd_server_bits, cl->z.level);
    if (!z || !z->def) return NULL; /* plain: the client's window is untouched */
    struct obuf *b = pmdz_frame(z->def, false, opcode, data, len);
    if (!b) {
        /* The stream took data the client will never see: start again from an empty window,
         * which can only make back-references the client has. */
        pmdz_deflater_free(z->def);
        z->def = NULL;
        return NULL;
    }
    z->used = true;
    cl->counters->deflate_compressions++;
    return b;
}

int conn_send_message(struct conn *c, const void *data, size_t len, bool binary)
{
    if (c->state != CONN_OPEN) return CONN_CLOSED;
    unsigned opcode = binary ? WS_OP_BINARY : WS_OP_TEXT;
    if (worth_compressing(c, len)) {
        struct obuf *b = compress_for(c, opcode, data, len);
        if (b) {
            int rc = conn_send_shared(c, b);
            obuf_unref(b);
            if (rc != CONN_CLOSED) c->cl->counters->messages_out++;
            return rc;
        }
    }
    send_frame(c, opcode, data, len);
    if (c->state != CONN_OPEN) return CONN_CLOSED;
    c->cl->counters->messages_out++;
    c->messages_out++;
    size_t limit = conn_limits(c)->send_buffer;
    if (limit && c->outq.bytes > limit) {
        c->want_drain = true;
        return CONN_BACKPRESSURE;
    }
    return CONN_SENT;
}

int conn_send_shared(struct conn *c, struct obuf *frame)
{
    if (c->state != CONN_OPEN) return CONN_CLOSED;
    size_t before = c->outq.bytes;
    int pushed = outq_push(&c->outq, frame, 0);
    conn_queue_changed(c, before);
    if (pushed < 0) {
        conn_drop(c, "out of memory for the send queue");
        return CONN_CLOSED;
    }
    mark_dirty(c);
    check_backpressure(c);
    if (c->state != CONN_OPEN) return CONN_CLOSED; /* past max_send_buffer */
    c->messages_out++;
    size_t limit = conn_limits(c)->send_buffer;
    if (limit && c->outq.bytes > limit) {
        c->want_drain = true;
        return CONN_BACKPRESSURE;
    }
    return CONN_SENT;
}

/* A publish: every receiver with the same server window shares one compressed frame, made
 * with the loop's deflater without context. A receiver whose own deflater keeps context is
 * told what its client's inflater just saw (pmdz_sync), so its next own message cannot refer
 * to bytes the client does not have, nor miss ones it does. See docs/design.md. */
int conn_send_fanout(struct conn *c, struct conn_fanout *f)
{
    if (!c->pmd || c->state != CONN_OPEN) return conn_send_shared(c, f->plain);
    size_t off = pmdz_payload_offset(f->plain);
    const uint8_t *payload = f->plain->data + off;
    size_t len = f->plain->len - off;
    if (!worth_compressing(c, len)) return conn_send_shared(c, f->plain);
    unsigned w = c->pmd_server_bits & 15;
    if (!f->tried[w]) {
        f->tried[w] = true;
        z_stream *s = pmdz_loop_deflater(&c->cl->z, (int)w);
        unsigned opcode = f->plain->data[0] & 0x0F;
        f->packed[w] = s ? pmdz_frame(s, true, opcode, payload, len) : NULL;
        if (f->packed[w]) c->cl->counters->deflate_compressions++;
    }
    if (!f->packed[w]) return conn_send_shared(c, f->plain);
    if ((c->pmd & CONN_PMD_SERVER_CONTEXT) && c->z && c->z->def &&
        pmdz_sync(c->z->def, payload, len) < 0) {
        pmdz_deflater_free(c->z->def); /* a fresh one is always in step */
        c->z->def = NULL;
    }
    return conn_send_shared(c, f->packed[w]);
}

void conn_fanout_done(struct conn_fanout *f)
{
    for (size_t i = 0; i < sizeof f->packed / sizeof f->packed[0]; i++)
        if (f->packed[i]) obuf_unref(f->packed[i]);
    memset(f->packed, 0, sizeof f->packed);
}

void conn_flush(struct conn *c)
{
    for (;;) {
        if (outq_empty(&c->outq)) {
            if (!c->file) break;
            if (!conn_feed_file(c)) return;
            if (outq_empty(&c->outq)) break;
        }
        struct iovec iov[64];
        int n = outq_iov(&c->outq, iov, 64);
        ssize_t done = c->tr.ops->writev(&c->tr, iov, n);
        if (done < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                /* The kernel is full: the rest waits for the socket to be writable (or, for
                 * TLS in the middle of a handshake message, readable). */
                c->write_blocked = !(c->tr.wants & IO_WRITE_WANTS_READ);
                update_io(c);
                return;
            }
            conn_drop(c, transport_error(c));
            return;
        }
        c->cl->counters->bytes_out += (uint64_t)done;
        outq_consume(&c->outq, (size_t)done);
        c->cl->queued_bytes -= (size_t)done;
    }
    if (c->state == CONN_DEAD) return;
    if (c->write_blocked) {
        c->write_blocked = false;
        update_io(c);
    }
    conn_shut_write_if_done(c);

    size_t limit = conn_limits(c)->send_buffer;
    if (c->outq.bytes <= limit / 2) resume_reading(c, PAUSE_BACKPRESSURE);
    if (c->want_drain && c->state == CONN_OPEN) {
        c->want_drain = false;
        c->handler->drain(c->handler_ctx, c);
    }
}

/* ---- ending the connection ----------------------------------------------------------------- */

/* The socket is gone or must go now: no close handshake. */
void conn_drop(struct conn *c, const char *why)
{
    if (c->state == CONN_DEAD) return;
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    if (c->state == CONN_OPEN)
        log_debug(CONN_FMT ": connection lost (%s)", CONN_ARGS(c, ip), why);
    ws_ended(c, WS_CLOSE_ABNORMAL, "", 0);
    struct ev_loop *loop = c->cl->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    c->tr.ops->close(&c->tr);
    c->state = CONN_DEAD;
    size_t queued = c->outq.bytes;
    outq_clear(&c->outq);
    conn_queue_changed(c, queued);
    conn_end_file(c);
    schedule(c);
}

void conn_abort(struct conn *c) { conn_drop(c, "server shutting down"); }

int conn_give_away(struct conn *c)
{
    if (c->state != CONN_HANDSHAKE || c->tr.tls || c->app_open) return -1;
    int fd = c->tr.fd;
    /* The watcher goes first: this loop must not touch the socket once another has it. */
    struct ev_loop *loop = c->cl->loop;
    ev_io_stop(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    c->tr.fd = -1; /* closing the transport now closes nothing */
    c->tr.ops->close(&c->tr);
    c->state = CONN_DEAD;
    size_t queued = c->outq.bytes;
    outq_clear(&c->outq);
    conn_queue_changed(c, queued);
    conn_end_file(c);
    schedule(c);
    return fd;
}

/* Nothing more to say: flush, half-close, and wait (bounded) for the peer's FIN. */
void conn_linger(struct conn *c)
{
    c->state = CONN_LINGER;
    release_message(c);
    /* Whatever paused it, reading must go on: the peer's FIN is what ends the linger. */
    c->throttle_until = 0;
    resume_reading(c, PAUSE_BACKPRESSURE | PAUSE_THROTTLE | PAUSE_HANDLER);
    conn_arm_timer(c, conn_limits(c)->close_timeout);
    conn_shut_write_if_done(c);
}

void conn_close(struct conn *c, unsigned code, const char *reason, size_t reason_len)
{
    if (c->state != CONN_OPEN) return;
    ws_ended(c, code ? code : WS_CLOSE_NO_STATUS, reason, reason_len);
    c->state = CONN_CLOSING;
    send_close_frame(c, code, reason, reason_len);
    if (c->state == CONN_DEAD) return;
    release_message(c);
    /* Messages are no longer taken, so a handler holds nothing back: the peer's close frame
     * must be read. */
    resume_reading(c, PAUSE_HANDLER);
    conn_arm_timer(c, conn_limits(c)->close_timeout);
    conn_shut_write_if_done(c);
}

/* Fails the WebSocket connection (RFC 6455 7.1.7) for a protocol or policy violation: say why in
 * a close frame and stop reading frames. */
static void conn_fail(struct conn *c, unsigned code, const char *why)
{
    flush_messages(c); /* what came before the violation is delivered */
    char ip[INET6_ADDRSTRLEN];
    conn_format_ip(c, ip, sizeof ip);
    log_info(CONN_FMT ": closing with %u: %s", CONN_ARGS(c, ip), code, why);
    bool say = c->state == CONN_OPEN;
    ws_ended(c, code, why, strlen(why));
    if (say) send_close_frame(c, code, why, strlen(why));
    if (c->state != CONN_DEAD) conn_linger(c);
}

/* ---- WebSocket input ----------------------------------------------------------------------- */

/* The reader's callbacks return this: go on while frames still matter. In CLOSING the reader
 * keeps going, to find the peer's close frame among the data it now discards. */
static int reader_should_stop(const struct conn *c) { return c->state >= CONN_LINGER; }

/* Charges one message (or ping) to the connection's rate. Returns false when the connection
 * was closed for going over it; with throttle, it is let through and reading pauses until the
 * rate allows (TCP then pushes back on the client). */
static bool within_rate(struct conn *c)
{
    const struct cfg_limits *lim = conn_limits(c);
    if (lim->messages_per_second <= 0) return true;
    double now = ev_now(c->cl->loop);
    if (lim->throttle) {
        double wait = bucket_charge(&c->messages, lim->messages_per_second, lim->burst, 1, now);
        if (wait > 0) throttle_for(c, wait);
        return true;
    }
    if (bucket_take(&c->messages, lim->messages_per_second, lim->burst, 1, now)) return true;
    conn_fail(c, WS_CLOSE_POLICY, "message rate limit exceeded");
    return false;
}

/* Whole messages that arrive in one read wait in the server's batch (they point into the read
 * buffer) and reach the app in one call at the end of the read: the cost of entering Lua is
 * paid once per read, not once per message. Anything that changes the connection or the order
 * of its output (a close frame, a ping's pong, a protocol error, a message assembled from
 * fragments) delivers the batch first. */
static void flush_messages(struct conn *c)
{
    struct conn_loop *cl = c->cl;
    size_t n = cl->nbatch;
    if (!n) return;
    cl->nbatch = 0;
    if (c->state == CONN_OPEN && c->handler->messages(c->handler_ctx, c, cl->batch, n) < 0)
        conn_close(c, WS_CLOSE_INTERNAL_ERROR, "internal error", 14);
}

static void deliver(struct conn *c, const uint8_t *data, size_t len, bool binary, bool batch)
{
    if (!within_rate(c)) return;
    struct conn_loop *cl = c->cl;
    cl->counters->messages_in++;
    c->messages_in++;
    cl->batch[cl->nbatch++] = (struct conn_message){ data, len, binary };
    if (!batch || cl->nbatch == CONN_BATCH) flush_messages(c);
}

/* ---- messages arriving in pieces ---------------------------------------------------------- */

/* A message that does not arrive whole in one read is gathered in a buffer of the connection's
 * own, which grows by doubling. What those buffers hold in all, and for the clients of one
 * address, is bounded by the server (conn_host.buffering): max_message alone would let many
 * connections each pin a message just under it. */

/* Tells the server the buffer is gone (its bytes are no longer pinned). */
static void give_back_message_room(struct conn *c)
{
    if (!c->msg_cap) return;
    struct conn_loop *cl = c->cl;
    const char *why;
    cl->host->buffering(cl->host_ctx, c, c->msg_cap, 0, &why);
    c->msg_cap = 0;
}

static void release_message(struct conn *c)
{
    free(c->msg);
    c->msg = NULL;
    c->msg_len = 0;
    give_back_message_room(c);
}

/* Makes room for need bytes. Returns false when the connection was failed instead (over a
 * bound: 1009 or 1013 as the server says; out of memory: 1011). */
static bool grow_message(struct conn *c, size_t need)
{
    size_t cap = c->msg_cap ? c->msg_cap : 4096;
    while (cap < need) cap *= 2;
    struct conn_loop *cl = c->cl;
    const char *why = "";
    int code = cl->host->buffering(cl->host_ctx, c, c->msg_cap, cap, &why);
    if (code) {
        conn_fail(c, (unsigned)code, why);
        return false;
    }
    uint8_t *p = realloc(c->msg, cap);
    if (!p) {
        cl->host->buffering(cl->host_ctx, c, cap, c->msg_cap, &why);
        conn_fail(c, WS_CLOSE_INTERNAL_ERROR, "out of memory for a fragmented message");
        return false;
    }
    c->msg = p;
    c->msg_cap = cap;
    return true;
}

/* ---- permessage-deflate: receiving -------------------------------------------------------- */

/* Inflates a whole compressed message and delivers it (after the batch before it). The output
 * stops growing one byte past max_message, whatever the input expands to: a zip bomb costs at
 * most max_message plus zlib's window. */
static void inflate_deliver(struct conn *c, const uint8_t *data, size_t len, bool binary)
{
    struct conn_loop *cl = c->cl;
    z_stream *s;
    if (c->pmd & CONN_PMD_CLIENT_CONTEXT) {
        struct pmdz_conn *z = conn_z(c);
        if (z && !z->inf) z->inf = pmdz_inflater_new(c->pmd_client_bits);
        s = z ? z->inf : NULL;
    } else {
        s = pmdz_loop_inflater(&cl->z);
    }
    if (!s) {
        conn_fail(c, WS_CLOSE_INTERNAL_ERROR, "out of memory for inflating a message");
        return;
    }
    uint8_t *out = NULL;
    ssize_t n = pmdz_inflate(s, data, len, conn_limits(c)->max_message, &out);
    if (n < 0) {
        if (n == PMDZ_E_TOO_BIG) cl->counters->inflate_limit_closes++;
        conn_fail(c, (unsigned)-n,
                  n == PMDZ_E_TOO_BIG ? "message larger than max_message once inflated"
                  : n == PMDZ_E_DATA  ? "invalid compressed data (permessage-deflate)"
                                      : "out of memory for inflating a message");
        return;
    }
    cl->inflated += (size_t)n;
    cl->counters->inflations++;
    if (!binary && !utf8_valid(out, (size_t)n)) {
        free(out);
        conn_fail(c, WS_CLOSE_INVALID_DATA, "text message is not valid UTF-8");
        return;
    }
    flush_messages(c);
    deliver(c, out ? out : (const uint8_t *)"", (size_t)n, binary, false);
    free(out);
}

static int on_data(void *ud, unsigned opcode, uint8_t *data, size_t len, bool first, bool last)
{
    struct conn *c = ud;
    if (c->state != CONN_OPEN) return 0; /* after our close frame, data is discarded */
    bool binary = opcode == WS_OP_BINARY;
    if (first && last && c->reader.compressed) {
        inflate_deliver(c, data, len, binary);
        return reader_should_stop(c);
    }
    if (first && last) {
        /* The common case: the whole message sits in the read buffer. No copy. */
        deliver(c, data, len, binary, true);
        return reader_should_stop(c);
    }
    if (c->msg_len + len > c->msg_cap && !grow_message(c, c->msg_len + len)) return 1;
    memcpy(c->msg + c->msg_len, data, len);
    c->msg_len += len;
    if (!last) return 0;
    /* Hand the buffer over before the call, so a handler that closes the connection cannot free
     * it underneath, and an idle connection keeps no message buffer. */
    uint8_t *msg = c->msg;
    size_t msg_len = c->msg_len;
    c->msg = NULL;
    c->msg_len = 0;
    give_back_message_room(c);
    if (c->reader.compressed) {
        inflate_deliver(c, msg, msg_len, binary);
    } else {
        flush_messages(c);
        deliver(c, msg, msg_len, binary, false);
    }
    free(msg);
    return reader_should_stop(c);
}

static int on_control(void *ud, unsigned opcode, uint8_t *data, size_t len)
{
    struct conn *c = ud;
    switch (opcode) {
    case WS_OP_PING:
        /* Pings count against the message rate: each costs a pong. */
        flush_messages(c);
        if (c->state == CONN_OPEN && within_rate(c)) send_frame(c, WS_OP_PONG, data, len);
        return reader_should_stop(c);
    case WS_OP_PONG:
        c->ping_sent = false;
        return 0;
    default: { /* WS_OP_CLOSE, already validated by the reader */
        flush_messages(c);
        unsigned code = len >= 2 ? (unsigned)data[0] << 8 | data[1] : WS_CLOSE_NO_STATUS;
        if (c->state == CONN_OPEN) {
            ws_ended(c, code, len > 2 ? (const char *)data + 2 : "", len > 2 ? len - 2 : 0);
            /* Echo the code (RFC 6455 5.5.1), or an empty close for an empty one. */
            c->state = CONN_CLOSING;
            send_close_frame(c, code == WS_CLOSE_NO_STATUS ? 0 : code, "", 0);
        }
        if (c->state != CONN_DEAD) conn_linger(c);
        return 1;
    }
    }
}

static const struct ws_reader_callbacks reader_callbacks = { on_data, on_control };

void conn_read_frames(struct conn *c, uint8_t *data, size_t len)
{
    ssize_t n = ws_reader_feed(&c->reader, data, len, &reader_callbacks, c);
    if (n < 0) conn_fail(c, (unsigned)-n, c->reader.error); /* delivers the batch first */
    else flush_messages(c);
}

/* ---- the read side ------------------------------------------------------------------------- */

static void process_input(struct conn *c, uint8_t *data, size_t len)
{
    switch (c->state) {
    case CONN_HANDSHAKE: conn_read_head(c, data, len); break;
    case CONN_OPEN:
    case CONN_CLOSING: conn_read_frames(c, data, len); break;
    default: break; /* LINGER: discard until the peer's FIN */
    }
}

/* Inflated bytes after which a connection's read gives the others a turn (what one read has
 * already brought in is still inflated: at most 64 KiB of input, each message capped at
 * max_message). */
#define INFLATE_PER_TURN (4u << 20)

/* Reads until the socket is empty, but gives other connections a turn after 1 MiB, or after
 * INFLATE_PER_TURN inflated. */
static void conn_read(struct conn *c)
{
    struct conn_loop *s = c->cl;
    s->inflated = 0;
    for (int round = 0; round < 16; round++) {
        ssize_t n = c->tr.ops->read(&c->tr, s->rbuf, sizeof s->rbuf);
        if (n > 0) {
            s->counters->bytes_in += (uint64_t)n;
            c->last_rx = ev_now(s->loop);
            double rate = conn_limits(c)->bytes_per_second;
            if (rate > 0 && c->state != CONN_LINGER) {
                double wait = bucket_charge(&c->bytes, rate, rate, (double)n, c->last_rx);
                if (wait > 0) throttle_for(c, wait);
            }
            process_input(c, s->rbuf, (size_t)n);
            if (c->state == CONN_DEAD || c->paused) return;
            if (s->inflated >= INFLATE_PER_TURN) break;
            if ((size_t)n < sizeof s->rbuf && !c->tr.ops->pending(&c->tr)) return;
            continue;
        }
        if (n == 0) {
            conn_drop(c, "the peer closed the connection");
            return;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (c->tr.wants & IO_READ_WANTS_WRITE) update_io(c);
        } else {
            conn_drop(c, transport_error(c));
        }
        return;
    }
    /* Out of turns with input left: come back next loop turn, even if the rest sits in the
     * TLS buffer where epoll cannot see it. */
    if (c->tr.ops->pending(&c->tr)) ev_feed_event(s->loop, &c->io, EV_READ);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct conn *c = container_of(w, struct conn, io);
    if (revents & EV_WRITE) {
        if (c->tr.wants & IO_READ_WANTS_WRITE) {
            /* A TLS read was waiting for this: read first. */
            c->tr.wants &= (uint8_t)~IO_READ_WANTS_WRITE;
            conn_read(c);
            if (c->state == CONN_DEAD) return;
        }
        conn_flush(c);
        if (c->state == CONN_DEAD) return;
    }
    if (revents & EV_READ) {
        if (c->tr.wants & IO_WRITE_WANTS_READ) {
            /* A TLS write was waiting for this: let the queue go first. */
            c->tr.wants &= (uint8_t)~IO_WRITE_WANTS_READ;
            conn_flush(c);
            if (c->state == CONN_DEAD) return;
        }
        conn_read(c);
    }
}

/* ---- timers -------------------------------------------------------------------------------- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = container_of(w, struct conn, timer);
    const struct cfg_limits *lim = conn_limits(c);
    double now = ev_now(loop);
    if (c->throttle_until > 0 && now >= c->throttle_until) {
        c->throttle_until = 0;
        resume_reading(c, PAUSE_THROTTLE);
    }
    if (c->deadline <= 0 || now < c->deadline) {
        rearm(c);
        return;
    }
    c->deadline = 0;
    char ip[INET6_ADDRSTRLEN];
    switch (c->state) {
    case CONN_HANDSHAKE:
        if (!tls_handshake_done(&c->tr)) {
            /* No HTTP answer is possible before TLS is up. */
            conn_format_ip(c, ip, sizeof ip);
            log_info(CONN_FMT ": TLS handshake did not complete within handshake_timeout",
                     CONN_ARGS(c, ip));
            c->cl->counters->refused[CTR_REFUSED_TIMEOUT]++;
            conn_drop(c, "TLS handshake timeout");
        } else if (c->refuse_status) {
            conn_drop(c, "refused connection sent no request");
        } else {
            conn_respond_error(c, 408, "the upgrade request did not complete within "
                                       "handshake_timeout", NULL, CTR_REFUSED_TIMEOUT);
        }
        break;
    case CONN_OPEN: {
        /* A context deflater that compressed nothing since the last check is freed: dropping
         * our own context is always safe (a fresh one refers to nothing). */
        if (c->z && c->z->def) {
            if (c->z->used) {
                c->z->used = false;
            } else {
                pmdz_deflater_free(c->z->def);
                c->z->def = NULL;
            }
        }
        /* last_rx is updated on every read; the timer is only re-armed here, lazily, so busy
         * connections cost no timer operations per message (libev's recommended pattern). */
        double idle = now - c->last_rx;
        double timeout = lim->idle_timeout;
        if (idle < timeout) {
            c->ping_sent = false;
            conn_arm_timer(c, timeout - idle);
        } else if (!c->ping_sent) {
            c->ping_sent = true;
            send_frame(c, WS_OP_PING, "", 0);
            if (c->state == CONN_OPEN) conn_arm_timer(c, timeout);
        } else {
            conn_format_ip(c, ip, sizeof ip);
            log_info(CONN_FMT ": closing: no answer to a ping within idle_timeout",
                     CONN_ARGS(c, ip));
            conn_close(c, WS_CLOSE_GOING_AWAY, "idle timeout", 12);
        }
        break;
    }
    default:
        /* CLOSING or LINGER past close_timeout: the peer will not finish; stop waiting. */
        conn_drop(c, "close_timeout passed");
        break;
    }
}
