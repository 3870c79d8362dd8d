/* The client end of a socketpair for tests that drive real connections without a network: send
 * an upgrade request and masked frames, read the response head and server frames. The tests
 * run the server's loop between steps (ev_run with EVRUN_NOWAIT), so the client end is
 * non-blocking and every read says how much was there. */
#ifndef MOONWIRE_SOCKPEER_H
#define MOONWIRE_SOCKPEER_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ev.h>

#include "conn.h"

/* A socketpair: fds[0] for the server (non-blocking, as accept4 gives it), fds[1] the client. */
static inline void peer_pair(int fds[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0,
                 "socketpair: %s", strerror(errno));
}

/* A loopback address to present the connection as. */
static inline union conn_addr peer_addr(void)
{
    union conn_addr a;
    memset(&a, 0, sizeof a);
    a.in4.sin_family = AF_INET;
    a.in4.sin_port = htons(40000);
    a.in4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

/* Turns the loop n times without blocking: reads, callbacks, then the flush before blocking. */
static inline void peer_pump(struct ev_loop *loop, int n)
{
    for (int i = 0; i < n; i++) ev_run(loop, EVRUN_NOWAIT);
}

static inline void peer_write(int fd, const void *p, size_t len)
{
    const uint8_t *b = p;
    while (len) {
        ssize_t w = write(fd, b, len);
        cr_assert_gt(w, 0, "client write: %s", strerror(errno));
        b += w;
        len -= (size_t)w;
    }
}

static const char peer_upgrade_request[] =
    "GET /chat HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

/* Writes a masked client frame into out (room for len + 14 bytes); returns its size. fin: the
 * last frame of its message. */
static inline size_t peer_fragment(uint8_t *out, bool fin, unsigned opcode, const void *payload,
                                   size_t len)
{
    static const uint8_t key[4] = { 0x12, 0x34, 0x56, 0x78 };
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xFFFF) {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    } else {
        out[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) out[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + n, key, 4);
    n += 4;
    for (size_t i = 0; i < len; i++) out[n + i] = ((const uint8_t *)payload)[i] ^ key[i % 4];
    return n + len;
}

/* A whole message in one frame. */
static inline size_t peer_frame(uint8_t *out, unsigned opcode, const void *payload, size_t len)
{
    return peer_fragment(out, true, opcode, payload, len);
}

static inline void peer_send(int fd, unsigned opcode, const void *payload, size_t len)
{
    uint8_t buf[512];
    cr_assert_lt(len, sizeof buf - 14);
    peer_write(fd, buf, peer_frame(buf, opcode, payload, len));
}

/* Reads what is there (up to cap bytes), pumping the loop while nothing is. Returns the count,
 * 0 at the end of the stream. */
static inline size_t peer_read(int fd, struct ev_loop *loop, void *buf, size_t cap)
{
    for (int tries = 0; tries < 200; tries++) {
        ssize_t n = read(fd, buf, cap);
        if (n >= 0) return (size_t)n;
        cr_assert(errno == EAGAIN, "client read: %s", strerror(errno));
        peer_pump(loop, 1);
    }
    cr_assert_fail("the server sent nothing");
    return 0;
}

/* Reads the response head (and nothing after it) into head; returns its length. */
static inline size_t peer_read_head(int fd, struct ev_loop *loop, char *head, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        size_t got = peer_read(fd, loop, head + n, 1);
        cr_assert_eq(got, 1, "the connection ended inside the response head");
        n++;
        head[n] = '\0';
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) return n;
    }
    cr_assert_fail("response head too long");
    return 0;
}

/* Reads exactly len bytes. */
static inline void peer_read_exact(int fd, struct ev_loop *loop, void *buf, size_t len)
{
    uint8_t *b = buf;
    while (len) {
        size_t got = peer_read(fd, loop, b, len);
        cr_assert_gt(got, 0, "the connection ended with %zu bytes still expected", len);
        b += got;
        len -= got;
    }
}

/* Reads one unmasked server frame: returns its opcode, the payload in buf (cap bytes) and its
 * length in *len. */
static inline unsigned peer_read_frame(int fd, struct ev_loop *loop, uint8_t *buf, size_t cap,
                                       size_t *len)
{
    uint8_t h[10];
    peer_read_exact(fd, loop, h, 2);
    cr_assert_eq(h[1] & 0x80, 0, "server frames are not masked");
    uint64_t n = h[1] & 0x7F;
    if (n == 126) {
        peer_read_exact(fd, loop, h + 2, 2);
        n = (uint64_t)h[2] << 8 | h[3];
    } else if (n == 127) {
        peer_read_exact(fd, loop, h + 2, 8);
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | h[2 + i];
    }
    cr_assert_leq(n, cap, "a %llu-byte frame does not fit the test's buffer",
                  (unsigned long long)n);
    peer_read_exact(fd, loop, buf, (size_t)n);
    *len = (size_t)n;
    return h[0] & 0x0F;
}

/* The close code of a close frame's payload. */
static inline unsigned peer_close_code(const uint8_t *p, size_t len)
{
    return len >= 2 ? (unsigned)p[0] << 8 | p[1] : 1005;
}

#endif
