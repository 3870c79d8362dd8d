/* The plain TCP transport: the socket calls themselves. */
#include "transport.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"

static ssize_t tcp_read(struct conn *c, void *buf, size_t len)
{
    ssize_t n;
    do n = read(c->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static ssize_t tcp_writev(struct conn *c, const struct iovec *iov, int n)
{
    ssize_t w;
    do w = writev(c->fd, iov, n);
    while (w < 0 && errno == EINTR);
    return w;
}

static bool tcp_pending(const struct conn *c)
{
    (void)c;
    return false; /* the kernel's buffer: epoll sees it */
}

static void tcp_shutdown(struct conn *c) { shutdown(c->fd, SHUT_WR); }

static void tcp_close(struct conn *c)
{
    close(c->fd);
    c->fd = -1;
}

const struct transport transport_tcp = { "tcp", tcp_read, tcp_writev, tcp_pending,
                                          tcp_shutdown, tcp_close };
