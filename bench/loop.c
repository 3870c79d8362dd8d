/* wsload's connections and event loop: see loop.h. */
#include "loop.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Connections between connect() and a completed handshake at any time: enough to open
 * thousands a second, few enough that the server's accept backlog never overflows. */
#define MAX_PENDING 256
#define OPEN_TIMEOUT_NS (10 * NS_PER_S)
#define CLOSE_WAIT_NS (5 * NS_PER_S) /* how long to wait for the server's close frames */

/* ---- small helpers ------------------------------------------------------------------------ */

int64_t loop_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

_Noreturn void loop_die(const char *what)
{
    fprintf(stderr, "wsload: %s\n", what);
    exit(1);
}

void *loop_xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) loop_die("out of memory");
    return p;
}

/* Masks come from xorshift64*, not a cryptographic source: RFC 6455 wants masks a page script
 * cannot predict, which matters for browsers behind proxies, not for a load generator, and a
 * syscall per frame would cost more than the rest of the frame. */
void loop_random_mask(struct run *r, uint8_t mask[4])
{
    r->rng ^= r->rng >> 12;
    r->rng ^= r->rng << 25;
    r->rng ^= r->rng >> 27;
    uint32_t m = (uint32_t)((r->rng * 0x2545F4914F6CDD1Du) >> 32);
    memcpy(mask, &m, 4);
}

/* Prints one error detail, up to LOOP_MAX_REPORTED of them a run. */
void loop_report(struct run *r, const char *fmt, ...)
{
    if (r->reported >= LOOP_MAX_REPORTED) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("wsload: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (++r->reported == LOOP_MAX_REPORTED)
        fputs("wsload: (further errors only counted)\n", stderr);
}

/* ---- connection output -------------------------------------------------------------------- */

/* Room for n more bytes at the end of the output buffer. */
uint8_t *loop_out_reserve(struct conn *c, size_t n)
{
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len >= n) return c->out + c->out_len;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= n) return c->out + c->out_len;
    }
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap - c->out_len < n) cap *= 2;
    c->out = loop_xrealloc(c->out, cap);
    c->out_cap = cap;
    return c->out + c->out_len;
}

void loop_mark_dirty(struct run *r, struct conn *c)
{
    if (c->dirty) return;
    c->dirty = true;
    r->dirty[r->ndirty++] = c;
}

/* Queues one masked frame. */
static void queue_frame(struct run *r, struct conn *c, unsigned op, const uint8_t *p, size_t n)
{
    uint8_t mask[4];
    loop_random_mask(r, mask);
    uint8_t *dst = loop_out_reserve(c, n + WSC_MAX_HEADER);
    size_t h = wsc_put_header(dst, op, true, n, mask);
    wsc_mask_copy(dst + h, p, n, mask);
    c->out_len += h + n;
    loop_mark_dirty(r, c);
}

/* ---- permessage-deflate (RFC 7692) ---------------------------------------------------------- */

/* Every compressed message ends in an empty stored block, 00 00 ff ff, that goes unsent. */
static const uint8_t deflate_tail[4] = { 0x00, 0x00, 0xff, 0xff };

/* The generator compresses fast (level 1): its core is the scarcer one. */
#define WSLOAD_DEFLATE_LEVEL 1

static z_stream *zstream_new(void)
{
    z_stream *z = calloc(1, sizeof *z);
    if (!z) loop_die("out of memory");
    return z;
}

/* Compresses p[0..n) as one message into r->zbuf; returns the compressed length. */
static size_t deflate_message(struct run *r, struct conn *c, const uint8_t *p, size_t n)
{
    if (!c->zout) {
        c->zout = zstream_new();
        /* The server may cap our window (client_max_window_bits); 9 is zlib's least. */
        if (deflateInit2(c->zout, WSLOAD_DEFLATE_LEVEL, Z_DEFLATED, -c->pmd.client_window_bits,
                         8, Z_DEFAULT_STRATEGY) != Z_OK)
            loop_die("deflateInit2 failed");
    }
    z_stream *z = c->zout;
    z->next_in = (Bytef *)(uintptr_t)p;
    z->avail_in = (uInt)n;
    z->next_out = r->zbuf;
    z->avail_out = (uInt)r->zbuf_cap;
    /* zbuf holds deflateBound of the largest message plus room for the flush marker, so
     * one call consumes everything. */
    if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0)
        loop_die("deflate failed (output buffer too small?)");
    size_t len = r->zbuf_cap - z->avail_out;
    if (len < 4 || memcmp(r->zbuf + len - 4, deflate_tail, 4) != 0)
        loop_die("deflate output does not end in 00 00 ff ff");
    if (c->pmd.client_no_context) deflateReset(z);
    return len - 4;
}

/* Inflates a compressed message into r->ibuf. Returns its length, or -1 (reported) when it is
 * not valid deflate data or longer than any message sent. */
static long inflate_message(struct run *r, struct conn *c, const uint8_t *p, size_t n)
{
    bool pure = c->pmd.server_no_context; /* the output depends on these bytes alone */
    r->rx_compressed++;
    r->rx_wire_bytes += n;
    if (pure && r->zlast_ok && n == r->zlast_len && memcmp(p, r->zlast, n) == 0) {
        r->rx_plain_bytes += r->ibuf_len;
        return (long)r->ibuf_len;
    }
    r->zlast_ok = false;
    if (!c->zin) {
        c->zin = zstream_new();
        if (inflateInit2(c->zin, -15) != Z_OK) loop_die("inflateInit2 failed");
    }
    z_stream *z = c->zin;
    z->next_out = r->ibuf;
    z->avail_out = (uInt)(r->max_payload + 1);
    const uint8_t *parts[2] = { p, deflate_tail };
    size_t lens[2] = { n, 4 };
    for (int i = 0; i < 2; i++) {
        z->next_in = (Bytef *)(uintptr_t)parts[i];
        z->avail_in = (uInt)lens[i];
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            loop_report(r, "connection %u: compressed message does not inflate: %s", c->id,
                        z->msg ? z->msg : "zlib error");
            return -1;
        }
        if (z->avail_out == 0) {
            loop_report(r, "connection %u: compressed message inflates past %zu bytes, more "
                        "than any message sent", c->id, r->max_payload);
            return -1;
        }
    }
    r->ibuf_len = r->max_payload + 1 - z->avail_out;
    r->rx_plain_bytes += r->ibuf_len;
    if (pure) {
        inflateReset(z);
        if (n <= r->zbuf_cap) {
            memcpy(r->zlast, p, n);
            r->zlast_len = n;
            r->zlast_ok = true;
        }
    }
    return (long)r->ibuf_len;
}

void loop_send_data(struct run *r, struct conn *c, const uint8_t *p, size_t n)
{
    bool compress = c->pmd.offered;
    if (compress) {
        n = deflate_message(r, c, p, n);
        p = r->zbuf;
    }
    uint8_t mask[4];
    loop_random_mask(r, mask);
    uint8_t *dst = loop_out_reserve(c, n + WSC_MAX_HEADER);
    size_t h = wsc_put_header(dst, r->data_op, true, n, mask);
    if (compress) dst[0] |= WSC_RSV1;
    wsc_mask_copy(dst + h, p, n, mask);
    c->out_len += h + n;
    loop_mark_dirty(r, c);
}

/* A data message complete in p[0..n), compressed when rsv1: hands it to the mode. */
static void deliver(struct run *r, struct conn *c, const uint8_t *p, size_t n, unsigned op,
                    bool rsv1, int64_t now)
{
    if (rsv1) {
        long len = inflate_message(r, c, p, n);
        if (len < 0) {
            r->corrupt++;
            return;
        }
        p = r->ibuf;
        n = (size_t)len;
    }
    r->on_message(r, c, p, n, op, now);
}

static void queue_close(struct run *r, struct conn *c, unsigned code)
{
    uint8_t body[2] = { (uint8_t)(code >> 8), (uint8_t)code };
    queue_frame(r, c, WSC_OP_CLOSE, body, 2);
}

/* Closes the socket for good. The struct stays: connections live in one array for the run. */
static void conn_drop(struct run *r, struct conn *c)
{
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) r->pending--;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = CS_CLOSED;
    if (c->zout) deflateEnd(c->zout);
    if (c->zin) inflateEnd(c->zin);
    free(c->zout);
    free(c->zin);
    c->zout = c->zin = NULL;
}

static void conn_fail(struct run *r, struct conn *c, const char *fmt, ...)
{
    if (c->state == CS_CLOSED) return;
    if (r->reported < LOOP_MAX_REPORTED) {
        char msg[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        loop_report(r, "connection %u: %s", c->id, msg);
    }
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) r->failed_open++;
    else if (c->state == CS_CLOSING) r->close_failures++;
    else r->conn_errors++;
    conn_drop(r, c);
}

/* Writes what the connection has queued: once a turn, as one write. */
static void conn_flush(struct run *r, struct conn *c)
{
    if (c->stamped < c->sent) {
        /* Send times are taken here, just before the write, not when the frame was queued:
         * the turn's other work would otherwise count as latency. */
        int64_t t = loop_now_ns();
        for (uint64_t s = c->stamped; s < c->sent; s++) c->stamps[s & r->ring_mask] = t;
        c->stamped = c->sent;
    }
    size_t left = c->out_len - c->out_off;
    if (!left) return;
    ssize_t n = write(c->fd, c->out + c->out_off, left);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_fail(r, c, "write: %s", strerror(errno));
            return;
        }
        n = 0;
    }
    c->out_off += (size_t)n;
    /* What the kernel refused waits for the EPOLLOUT edge that comes when room frees up. */
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
}

void loop_flush(struct run *r)
{
    for (uint32_t i = 0; i < r->ndirty; i++) {
        struct conn *c = r->dirty[i];
        c->dirty = false;
        if (c->state >= CS_HANDSHAKE && c->state <= CS_CLOSING) conn_flush(r, c);
    }
    r->ndirty = 0;
}

/* ---- frames in ------------------------------------------------------------------------------ */

static void control_frame(struct run *r, struct conn *c, unsigned op, const uint8_t *p, size_t n)
{
    if (op == WSC_OP_PING) {
        /* Once our close is sent, nothing more goes out; the server's close ends it anyway. */
        if (c->state == CS_CLOSING) return;
        r->pings++;
        queue_frame(r, c, WSC_OP_PONG, p, n);
        return;
    }
    if (op != WSC_OP_CLOSE) return; /* a pong: we never ping */
    if (c->state == CS_CLOSING) { /* the answer to ours: a clean close */
        conn_drop(r, c);
        return;
    }
    unsigned code = n >= 2 ? (unsigned)(p[0] << 8 | p[1]) : 1005;
    int rlen = n > 2 ? (int)(n - 2) : 0;
    loop_report(r, "connection %u: server closed it (%u %.*s)", c->id, code, rlen,
                (const char *)p + 2);
    r->conn_errors++;
    /* Answer at once and drop: nothing more will be read from it. */
    queue_close(r, c, code == 1005 ? 1000 : code);
    ssize_t ignored = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    (void)ignored;
    conn_drop(r, c);
}

/* Handles every complete frame in buf[0..len). Returns the bytes used (a partial frame at the
 * end is left), or -1 when the connection failed. */
static long parse_frames(struct run *r, struct conn *c, const uint8_t *buf, size_t len,
                         int64_t now)
{
    size_t pos = 0;
    while (pos < len) {
        struct wsc_frame f;
        int h = wsc_parse_header(buf + pos, len - pos, &f);
        if (h == WSC_NEED_MORE) break;
        if (h < 0) {
            conn_fail(r, c, "bad frame: %s", wsc_strerror(h));
            return -1;
        }
        if (f.len > r->max_payload) {
            conn_fail(r, c, "frame of %llu bytes, more than any message sent",
                      (unsigned long long)f.len);
            return -1;
        }
        if (len - pos - (size_t)h < f.len) break;
        const uint8_t *p = buf + pos + h;
        size_t n = (size_t)f.len;
        pos += (size_t)h + n;
        /* RSV1 marks the first frame of a compressed data message, nothing else. */
        if (f.rsv1 && (!c->pmd.offered || (f.opcode & 0x08) || f.opcode == WSC_OP_CONTINUATION)) {
            conn_fail(r, c, "bad frame: RSV1 set %s", c->pmd.offered ? "on a control or "
                      "continuation frame" : "without permessage-deflate");
            return -1;
        }

        if (f.opcode & 0x08) {
            control_frame(r, c, f.opcode, p, n);
            if (c->state == CS_CLOSED) return -1;
        } else if (f.opcode == WSC_OP_CONTINUATION || !f.fin) {
            /* Fragments: rare from a server, so assembled in a buffer of their own. */
            if ((f.opcode == WSC_OP_CONTINUATION) != c->in_frag) {
                conn_fail(r, c, "continuation frame out of place");
                return -1;
            }
            if (!c->in_frag) {
                if (!c->frag) c->frag = loop_xrealloc(NULL, r->max_payload);
                c->frag_op = f.opcode;
                c->frag_rsv1 = f.rsv1;
                c->frag_len = 0;
                c->in_frag = true;
            }
            if (c->frag_len + n > r->max_payload) {
                conn_fail(r, c, "fragmented message longer than any message sent");
                return -1;
            }
            memcpy(c->frag + c->frag_len, p, n);
            c->frag_len += n;
            if (f.fin) {
                c->in_frag = false;
                deliver(r, c, c->frag, c->frag_len, c->frag_op, c->frag_rsv1, now);
            }
        } else {
            if (c->in_frag) {
                conn_fail(r, c, "new message inside a fragmented one");
                return -1;
            }
            deliver(r, c, p, n, f.opcode, f.rsv1, now);
        }
    }
    return (long)pos;
}

/* ---- connection lifecycle ------------------------------------------------------------------- */

static void conn_start(struct run *r, struct conn *c)
{
    c->state = CS_CONNECTING;
    c->deadline = loop_now_ns() + OPEN_TIMEOUT_NS;
    r->pending++;
    c->fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(r, c, "socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (r->o.src_first) {
        /* Bind the source address but let connect() pick the port, so ports are shared
         * between source addresses and one address never runs out. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        uint32_t span = r->o.src_last - r->o.src_first + 1;
        struct sockaddr_in src = { .sin_family = AF_INET };
        src.sin_addr.s_addr = htonl(r->o.src_first + c->id % span);
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0) {
            conn_fail(r, c, "bind: %s", strerror(errno));
            return;
        }
    }
    if (connect(c->fd, (struct sockaddr *)&r->addr, r->addrlen) < 0 && errno != EINPROGRESS) {
        conn_fail(r, c, "connect: %s", strerror(errno));
        return;
    }
    /* Edge-triggered, registered once for good: level-triggered epoll polls every socket
     * that was ready again on the next wait, which cost a tenth of the generator's time with
     * a thousand subscribers. The price: each readable edge must be read dry (conn_readable),
     * and output the kernel refused is retried on the next writable edge. The first writable
     * edge says the connect finished. */
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c };
    if (epoll_ctl(r->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        conn_fail(r, c, "epoll_ctl: %s", strerror(errno));
        return;
    }
}

/* The TCP connection is up: send the upgrade request. */
static void conn_connected(struct run *r, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_fail(r, c, "connect: %s", strerror(err));
        return;
    }
    uint8_t rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) loop_die("RAND_bytes failed");
    wsc_make_key(c->key, rnd);
    /* Built on the stack and copied, so the output buffer starts at the request's size: it
     * is all that 100,000 idle connections will ever send. */
    char req[1536];
    const char *offer = r->o.deflate == DEFLATE_CONTEXT ? WSC_OFFER_CONTEXT
                        : r->o.deflate == DEFLATE_NO_CONTEXT ? WSC_OFFER_NO_CONTEXT : NULL;
    size_t n = wsc_build_request(req, sizeof req, r->host, r->path, c->key, offer);
    if (!n) loop_die("the upgrade request does not fit in 1536 bytes (path too long?)");
    memcpy(loop_out_reserve(c, n), req, n);
    c->out_len += n;
    c->state = CS_HANDSHAKE;
    loop_mark_dirty(r, c);
}

static void stash_keep(struct conn *c, const uint8_t *p, size_t n)
{
    c->stash_len = n;
    if (!n) return;
    if (n > c->stash_cap) {
        size_t cap = c->stash_cap ? c->stash_cap : 256;
        while (cap < n) cap *= 2;
        c->stash = loop_xrealloc(c->stash, cap);
        c->stash_cap = cap;
    }
    memcpy(c->stash, p, n);
}

/* Reads into the shared buffer behind what was left last time, and handles what came. Returns
 * true when the read filled the buffer: there may be more, and with edge-triggered epoll no
 * new event will say so. A shorter read emptied the socket's receive queue. */
static bool conn_read_once(struct run *r, struct conn *c)
{
    size_t have = c->stash_len;
    if (have) memcpy(r->rbuf, c->stash, have);
    size_t room = r->rbuf_cap - have;
    ssize_t n = read(c->fd, r->rbuf + have, room);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return false;
        if (n == 0) conn_fail(r, c, "the server closed the connection without a close frame");
        else conn_fail(r, c, "read: %s", strerror(errno));
        return false;
    }
    int64_t now = loop_now_ns();
    size_t len = have + (size_t)n, pos = 0;
    if (c->state == CS_HANDSHAKE) {
        c->pmd = (struct wsc_pmd){ .offered = r->o.deflate != DEFLATE_OFF };
        int rc = wsc_check_response((const char *)r->rbuf, len, c->key,
                                    c->pmd.offered ? &c->pmd : NULL);
        if (rc == WSC_NEED_MORE) {
            stash_keep(c, r->rbuf, len);
            return (size_t)n == room;
        }
        if (rc < 0) {
            conn_fail(r, c, "handshake: %s", wsc_strerror(rc));
            return false;
        }
        pos = (size_t)rc;
        c->state = CS_OPEN;
        r->pending--;
    }
    long used = parse_frames(r, c, r->rbuf + pos, len - pos, now);
    if (used < 0) return false;
    stash_keep(c, r->rbuf + pos + (size_t)used, len - pos - (size_t)used);
    return (size_t)n == room;
}

static void conn_readable(struct run *r, struct conn *c)
{
    while (conn_read_once(r, c) && c->state != CS_CLOSED) continue;
}

/* Starts the closing handshake (close 1000); the server's close frame ends it. */
static void conn_close(struct run *r, struct conn *c)
{
    if (c->state != CS_OPEN) return;
    queue_close(r, c, 1000);
    c->state = CS_CLOSING;
}

/* ---- the event loop ------------------------------------------------------------------------- */

void loop_turn(struct run *r, int64_t timeout_ns)
{
    if (timeout_ns < 0) timeout_ns = 0;
    int n;
    if (!r->no_pwait2) {
        struct timespec ts = { timeout_ns / NS_PER_S, timeout_ns % NS_PER_S };
        n = epoll_pwait2(r->ep, r->events, LOOP_MAX_EVENTS, &ts, NULL);
        if (n < 0 && errno == ENOSYS) r->no_pwait2 = true;
    }
    if (r->no_pwait2)
        n = epoll_wait(r->ep, r->events, LOOP_MAX_EVENTS, (int)((timeout_ns + 999999) / 1000000));
    if (n < 0 && errno != EINTR) loop_die("epoll_wait failed");
    for (int i = 0; i < n; i++) {
        struct conn *c = r->events[i].data.ptr;
        uint32_t ev = r->events[i].events;
        if (c->state == CS_CLOSED) continue; /* dropped earlier in this turn */
        if (c->state == CS_CONNECTING) {
            conn_connected(r, c);
            continue;
        }
        if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) conn_readable(r, c);
        if ((ev & EPOLLOUT) && c->state != CS_CLOSED && c->out_len > c->out_off)
            loop_mark_dirty(r, c);
    }
    if (r->on_turn) r->on_turn(r);
    loop_flush(r);
}

/* Opens connections [first, last) with at most MAX_PENDING in progress. Returns how many
 * failed. */
uint32_t loop_open_range(struct run *r, uint32_t first, uint32_t last)
{
    uint64_t failed_before = r->failed_open;
    r->next_to_open = first;
    int64_t next_scan = loop_now_ns() + NS_PER_S / 10;
    for (;;) {
        while (r->next_to_open < last && r->pending < MAX_PENDING)
            conn_start(r, &r->conns[r->next_to_open++]);
        if (r->next_to_open == last && r->pending == 0) break;
        int64_t now = loop_now_ns();
        if (now >= next_scan) {
            for (uint32_t i = first; i < r->next_to_open; i++) {
                struct conn *c = &r->conns[i];
                if ((c->state == CS_CONNECTING || c->state == CS_HANDSHAKE) && now > c->deadline)
                    conn_fail(r, c, "no handshake within %lld s", OPEN_TIMEOUT_NS / NS_PER_S);
            }
            next_scan = now + NS_PER_S / 10;
        }
        loop_turn(r, next_scan - now);
    }
    return (uint32_t)(r->failed_open - failed_before);
}

/* Closes every open connection cleanly and waits up to CLOSE_WAIT_NS for the server's close
 * frames; connections that do not finish count as close failures. */
void loop_close_all(struct run *r)
{
    for (uint32_t i = 0; i < r->nconns; i++) conn_close(r, &r->conns[i]);
    loop_flush(r);
    int64_t end = loop_now_ns() + CLOSE_WAIT_NS;
    uint32_t i = 0;
    for (;;) {
        while (i < r->nconns && r->conns[i].state != CS_CLOSING) i++;
        if (i == r->nconns) return;
        int64_t now = loop_now_ns();
        if (now >= end) break;
        loop_turn(r, end - now);
    }
    for (; i < r->nconns; i++)
        if (r->conns[i].state == CS_CLOSING)
            conn_fail(r, &r->conns[i], "no close frame from the server");
}
